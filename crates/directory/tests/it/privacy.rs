//! What the directory keeps (issue 13, "Privacy"): after registrations, heartbeats, probe
//! rounds, an attestation, share statements, a withdrawal and the pages being read, its
//! database holds exactly the columns documented below — what operators published, what its
//! probes found and what it signed, nothing about anyone using the relays — and neither a
//! stored value nor any log line (every level, every target) holds the relay's CA private
//! key, the operator's private key or the directory's signing key, in any encoding a program
//! would write them in. On both backends. (The log is this test's thread's: every task the
//! directory runs is there; SQLite's own worker thread, which logs SQL text but never a
//! bound value, is not.)

use crate::support::{Dir, Relay};
use base64::Engine as _;
use smpx_core::crypto::sign::SigningKey;
use smpx_core::directory::wire::attest;
use smpx_testkit::Backend;
use std::cell::RefCell;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

// On a current-thread runtime, so the test's thread runs every task the directory runs (the
// server, its connections, the probe rounds) and its capture holds them all and nothing of
// the other tests running meanwhile.
#[tokio::test]
async fn sqlite_holds_only_what_is_documented() {
    the_database_and_the_logs_hold_only_what_is_documented(Backend::Sqlite).await
}

#[tokio::test]
async fn postgres_holds_only_what_is_documented() {
    the_database_and_the_logs_hold_only_what_is_documented(Backend::Postgres).await
}

/// Every column of the directory's database, with what it holds. A column that is not here
/// fails the test: adding one means saying here (and in ARCHITECTURE.md, "What each party
/// learns") what the directory learns by it.
const COLUMNS: &[(&str, &str)] = &[
    // sqlx's record of the schema migrations applied: versions and checksums of the SQL.
    ("_sqlx_migrations.version", "migration number"),
    ("_sqlx_migrations.description", "migration name"),
    ("_sqlx_migrations.installed_on", "when it was applied"),
    ("_sqlx_migrations.success", "whether it applied"),
    ("_sqlx_migrations.checksum", "checksum of its SQL"),
    ("_sqlx_migrations.execution_time", "how long it took"),
    // Identity attestations handed to the directory by an attester it trusts.
    (
        "directory_attestations.operator_id",
        "the operator attested",
    ),
    (
        "directory_attestations.attester",
        "the attester's public key",
    ),
    (
        "directory_attestations.legal_name",
        "the legal name attested",
    ),
    ("directory_attestations.country", "the country attested"),
    (
        "directory_attestations.issued_at",
        "when the attester signed",
    ),
    (
        "directory_attestations.attestation",
        "the signed attestation",
    ),
    // Proof-of-work challenges the directory handed out (random text, no requester).
    ("directory_challenges.challenge", "the challenge text"),
    ("directory_challenges.issued_at", "when it was handed out"),
    (
        "directory_challenges.expires_at",
        "until when it may be used",
    ),
    (
        "directory_challenges.used_at",
        "when a registration spent it",
    ),
    // The directory's own probes of each relay.
    ("directory_observations.id", "row number"),
    ("directory_observations.fingerprint", "the relay probed"),
    ("directory_observations.at", "when"),
    (
        "directory_observations.up",
        "whether it answered a full round trip",
    ),
    (
        "directory_observations.latency_ms",
        "the round trip's latency",
    ),
    ("directory_observations.stage", "how far the probe got"),
    ("directory_observations.detail", "why it stopped there"),
    // Operators, as keys.
    (
        "directory_operators.operator_id",
        "the id the operator chose",
    ),
    ("directory_operators.operator_key", "its public key"),
    ("directory_operators.first_seen", "its first registration"),
    // Registrations per subnet, for the rate limit: the relay's published address's subnet,
    // not the registrant's IP.
    ("directory_registrations.id", "row number"),
    (
        "directory_registrations.subnet",
        "the registered relay's /24 or /48",
    ),
    ("directory_registrations.at", "when"),
    // Relays, as their operators published them, and their measured state.
    ("directory_relays.fingerprint", "the relay's CA fingerprint"),
    ("directory_relays.address", "its published smpx:// address"),
    ("directory_relays.subnet", "that address's /24 or /48"),
    ("directory_relays.operator_id", "its operator"),
    (
        "directory_relays.region",
        "the region the operator published",
    ),
    ("directory_relays.info", "the relay's published INFO"),
    (
        "directory_relays.metadata",
        "the metadata the operator published",
    ),
    ("directory_relays.registered_at", "its first registration"),
    ("directory_relays.updated_at", "its latest registration"),
    (
        "directory_relays.withdrawn_at",
        "when its operator withdrew it",
    ),
    (
        "directory_relays.heartbeat_seq",
        "the latest heartbeat's number",
    ),
    (
        "directory_relays.heartbeat_at",
        "the latest heartbeat's time",
    ),
    (
        "directory_relays.stability",
        "the rolling weighted uptime and MTBF",
    ),
    ("directory_relays.last_probe_at", "the latest probe's time"),
    (
        "directory_relays.last_probe_up",
        "the latest probe's result",
    ),
    // Share statements the directory signed.
    ("directory_statements.operator_id", "the operator"),
    ("directory_statements.period_start", "the period"),
    ("directory_statements.statement", "the signed statement"),
    // The transparency log of the above: what was published, probed and signed, again.
    ("directory_log.idx", "the entry's position"),
    (
        "directory_log.kind",
        "registration, withdrawal, statement or snapshot",
    ),
    (
        "directory_log.body",
        "the signed request, statement or snapshot",
    ),
    ("directory_log.leaf_hash", "its RFC 6962 leaf hash"),
    ("directory_log.appended_at", "when"),
    ("directory_log_head.id", "the one row"),
    ("directory_log_head.size", "the log's size"),
    ("directory_checkpoints.size", "the tree size signed"),
    ("directory_checkpoints.note", "the signed checkpoint"),
    ("directory_checkpoints.signed_at", "when"),
];

/// Where a test's log lines go.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Sink {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

thread_local! {
    /// The sink of the test capturing on this thread, if one is.
    static CAPTURING: RefCell<Option<Sink>> = const { RefCell::new(None) };
}

/// Writes to this thread's sink.
struct ThreadSink;

impl Write for ThreadSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CAPTURING.with(|c| match &mut *c.borrow_mut() {
            Some(s) => s.write(buf),
            None => Ok(buf.len()),
        })
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Stops capturing on this thread when dropped.
struct Capturing;

impl Drop for Capturing {
    fn drop(&mut self) {
        CAPTURING.with(|c| *c.borrow_mut() = None);
    }
}

/// Sends every event of every target, at every level, with its spans' fields, that this
/// thread records to `sink`, for as long as the guard lives. The subscriber is the
/// process-wide one, asked again at each event whether the thread is capturing (a
/// subscriber set for one thread only would miss the callsites another test's thread
/// registered first, whose interest is then cached as "never").
fn capture_logs(sink: &Sink) -> Capturing {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::Layer as _;
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let capturing = tracing_subscriber::filter::dynamic_filter_fn(|_, _| {
            CAPTURING.with(|c| c.borrow().is_some())
        });
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(|| ThreadSink)
            .with_filter(capturing);
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
            .unwrap();
    });
    CAPTURING.with(|c| *c.borrow_mut() = Some(sink.clone()));
    Capturing
}

/// A secret in each form it could be written in: hex (both cases), base64 (both alphabets).
fn encodings(name: &str, bytes: &[u8]) -> Vec<(String, String)> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    vec![
        (format!("{name} (hex)"), hex::encode(bytes)),
        (format!("{name} (HEX)"), hex::encode_upper(bytes)),
        (
            format!("{name} (base64)"),
            b64.trim_end_matches('=').to_owned(),
        ),
        (format!("{name} (base64url)"), b64url),
    ]
}

/// The relay's CA key, from its PEM file: the PEM's text and the PKCS#8 document in every
/// encoding, and the Ed25519 seed (the document's last 32 bytes) alone.
fn ca_key_forms(relay: &Relay) -> Vec<(String, String)> {
    let pem = std::fs::read_to_string(relay.dir.path().join("ca.key")).unwrap();
    let body: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .concat();
    let der = base64::engine::general_purpose::STANDARD
        .decode(&body)
        .unwrap();
    assert!(der.len() >= 32, "a PKCS#8 Ed25519 key");
    let mut forms = vec![("CA key (PEM)".to_string(), body)];
    forms.extend(encodings("CA key (PKCS#8)", &der));
    // The seed is the OCTET STRING inside the privateKey OCTET STRING (`04 22 04 20 …`);
    // a PKCS#8 v2 key ends with the public key instead, which the certificate publishes.
    let at = der
        .windows(4)
        .position(|w| w == [0x04, 0x22, 0x04, 0x20])
        .expect("an Ed25519 PKCS#8 private key");
    forms.extend(encodings("CA key (seed)", &der[at + 4..at + 36]));
    forms
}

/// Every table and column of the database, as `table.column`, sorted; SQLite's own
/// bookkeeping (`sqlite_%`) aside.
async fn columns(d: &Dir, b: Backend) -> Vec<String> {
    let sql = match b {
        Backend::Sqlite => {
            "SELECT m.name || '.' || p.name AS col FROM sqlite_master m, pragma_table_info(m.name) p \
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'"
        }
        Backend::Postgres => {
            "SELECT table_name || '.' || column_name AS col FROM information_schema.columns \
             WHERE table_schema = current_schema()"
        }
    };
    let mut out: Vec<String> = text_rows(d, sql).await;
    out.sort_unstable();
    out
}

/// The first column of each row, as text (NULLs left out).
async fn text_rows(d: &Dir, sql: &str) -> Vec<String> {
    use sqlx::Row;
    sqlx::query(sql)
        .fetch_all(d.state.store().db().pool())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .filter_map(|r| r.try_get::<Option<String>, _>(0).unwrap())
        .collect()
}

async fn the_database_and_the_logs_hold_only_what_is_documented(b: Backend) {
    let sink = Sink::default();
    let _capturing = capture_logs(&sink);
    let d = Dir::start(b).await;
    let mut relays = [
        Relay::new("op-private", 1, "192.0.2.10"),
        Relay::new("op-private", 1, "192.0.2.11"),
    ];
    let operator = SigningKey::generate(&mut rand::rngs::OsRng);
    for r in &mut relays {
        r.operator = operator.clone();
    }
    for r in &relays {
        let (s, v) = d.register(r).await;
        assert_eq!(s, 200, "{v}");
    }
    let fp = relays[0].fingerprint();
    for seq in 1..=3 {
        let at = d.clock_now();
        let (s, v) = d
            .post(
                &format!("/v1/relays/{fp}/heartbeat"),
                &relays[0].heartbeat(seq, at),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        d.prober.set(&relays[1].fingerprint(), seq != 2, 30);
        d.probe_round().await;
        d.clock.advance(3600);
    }
    let a = attest(
        &d.attester,
        operator.verifying_key(),
        "Private Example GmbH",
        "DE",
        d.clock_now(),
    )
    .unwrap();
    let (s, v) = d
        .post(
            "/v1/operators/op-private/attestations",
            &serde_json::to_value(&a).unwrap(),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    d.probe_round().await;
    assert_eq!(
        smpx_directory::view::issue_statements(&d.state)
            .await
            .unwrap(),
        1
    );
    for path in [
        "/".to_string(),
        format!("/relays/{fp}"),
        "/operators/op-private".into(),
        "/v1/operators/op-private".into(),
        "/v1/statements?operator=op-private".into(),
    ] {
        assert_eq!(d.get(&path).await.0, 200, "{path}");
    }
    let second = relays[1].fingerprint();
    let (s, v) = d
        .post(
            &format!("/v1/relays/{second}/withdraw"),
            &relays[1].withdrawal(d.clock_now()),
        )
        .await;
    assert_eq!(s, 200, "{v}");

    // Exactly the documented columns.
    let mut documented: Vec<String> = COLUMNS.iter().map(|(c, _)| (*c).to_owned()).collect();
    documented.sort_unstable();
    assert_eq!(columns(&d, b).await, documented);
    assert!(COLUMNS.iter().all(|(_, meaning)| !meaning.is_empty()));

    // Every stored value, as text.
    let mut stored = Vec::new();
    for (column, _) in COLUMNS {
        let (table, col) = column.split_once('.').unwrap();
        // SQLite's `quote` writes a blob as X'hex' (a checksum is one); PostgreSQL's text of
        // a bytea is \x-hex.
        let sql = match b {
            Backend::Sqlite => format!("SELECT quote({col}) FROM {table}"),
            Backend::Postgres => format!("SELECT CAST({col} AS TEXT) FROM {table}"),
        };
        stored.extend(text_rows(&d, &sql).await);
    }
    let stored = stored.join("\n");
    // The rows are there (the dump read something): what the operator published, and the
    // attestation.
    assert!(stored.contains(&fp) && stored.contains("Private Example GmbH"));

    let home_key: String = smpx_http::files::load(&d.home.join("signing-key")).unwrap();
    let directory_key = hex::decode(home_key).unwrap();
    let mut secrets = encodings("operator key", &operator.to_bytes());
    secrets.extend(encodings("directory signing key", &directory_key));
    for r in &relays {
        secrets.extend(ca_key_forms(r));
    }
    let log = sink.text();
    // The capture holds this test's requests (the server's request log, at debug), so a
    // secret logged on the way would be in it.
    assert!(
        log.contains(&format!("/v1/relays/{fp}/heartbeat")),
        "the directory's log lines were not captured"
    );
    for (what, text) in &secrets {
        assert!(
            !stored.contains(text.as_str()),
            "the {what} is in the database"
        );
        assert!(!log.contains(text.as_str()), "the {what} is in a log line");
    }
}
