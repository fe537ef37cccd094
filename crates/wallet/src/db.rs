//! The wallet file: schema and queries (SQLite through sqlx).
//!
//! Plaintext columns are what listing needs (commitments, denominations, states, times,
//! issuer and operator ids); every secret is an encrypted blob from [`crate::vault`]. Writes
//! that move a voucher between states are compare-and-set on the old state
//! (`UPDATE … WHERE state = ?`), so two processes on one file cannot both apply a transition.

use crate::error::WalletError;
use crate::model::{CreditRecord, LocalState, VoucherRecord};
use sqlx::migrate::{Migrate, MigrateError, Migration, MigrationType, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{ConnectOptions, Executor, Row};
use std::borrow::Cow;
use std::path::Path;
use std::time::Duration;

/// Identifies the file as a wallet of this schema version.
pub(crate) const FORMAT: &[u8] = b"smpx-wallet/1";

const SCHEMA: &[&str] = &[
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value BLOB NOT NULL)",
    "CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL CHECK (value >= 0))",
    "CREATE TABLE vouchers (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        idx INTEGER NOT NULL CHECK (idx >= 0),
        denomination INTEGER NOT NULL CHECK (denomination > 0),
        state TEXT NOT NULL CHECK (state IN ('buying','bought','published','redeemed','expired')),
        issuer_id TEXT NOT NULL,
        key_id TEXT NOT NULL,
        commitment TEXT NOT NULL UNIQUE,
        issuer_key BLOB,
        publish_deadline INTEGER,
        blinded_message BLOB,
        blinding_enc BLOB,
        signature_enc BLOB,
        published_at INTEGER,
        expires_at INTEGER,
        publish_receipt TEXT,
        redeemed_at_operator TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        UNIQUE (idx, denomination)
    )",
    // Sealed redemption envelopes, kept (encrypted: they contain s) from before they are sent
    // until the credit is recorded, so a retry re-sends the identical envelope.
    "CREATE TABLE pending_envelopes (
        voucher_id INTEGER NOT NULL REFERENCES vouchers(id),
        operator_id TEXT NOT NULL,
        envelope_key TEXT NOT NULL,
        envelope_enc BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (voucher_id, operator_id, envelope_key)
    )",
    "CREATE TABLE credits (
        voucher_id INTEGER PRIMARY KEY REFERENCES vouchers(id),
        operator_id TEXT NOT NULL,
        credited INTEGER NOT NULL CHECK (credited >= 0),
        receipt TEXT NOT NULL,
        at INTEGER NOT NULL
    )",
];

/// Schema changes after [`SCHEMA`], in order: `MIGRATIONS[k]` takes a file from schema version
/// `k + 1` to `k + 2`. The version is the `schema` counter (absent = 1, the original schema).
/// A new file gets [`SCHEMA`] and then every migration, so old and new files end up alike.
/// Never edit a migration that has shipped: the checksum check refuses files it ran on.
const MIGRATIONS: &[&[&str]] = &[
    // 2: v0.2 redemption. Membership paths from the publish receipt (public: they name the
    // MMR and leaf index, which the commitment in the clear already identifies), the leaf
    // cache of each MMR downloaded for path updates (contiguous chunks of 32-byte leaves,
    // always exactly the leaves `0..size` of the MMR's stored checkpoint, which they were
    // verified against), the latest verified signed checkpoint per MMR (kept to detect a
    // forked view), and the protocol each credit was redeemed with.
    &[
        "CREATE TABLE voucher_paths (
            voucher_id INTEGER NOT NULL REFERENCES vouchers(id),
            mmr_id INTEGER NOT NULL CHECK (mmr_id >= 0),
            leaf_index INTEGER NOT NULL CHECK (leaf_index >= 0),
            proof TEXT NOT NULL,
            PRIMARY KEY (voucher_id, mmr_id)
        )",
        "CREATE TABLE mmr_checkpoints (
            mmr_id INTEGER PRIMARY KEY CHECK (mmr_id >= 0),
            size INTEGER NOT NULL CHECK (size >= 0),
            signed TEXT NOT NULL,
            updated_at INTEGER NOT NULL
        )",
        "CREATE TABLE mmr_leaf_chunks (
            mmr_id INTEGER NOT NULL,
            start INTEGER NOT NULL CHECK (start >= 0),
            leaves BLOB NOT NULL,
            PRIMARY KEY (mmr_id, start)
        )",
        "ALTER TABLE credits ADD COLUMN protocol INTEGER NOT NULL DEFAULT 1 \
         CHECK (protocol IN (1, 2))",
    ],
    // 3: operator credits (blind-signed tokens, `crate::credits`). Per keyset, the next
    // NUT-13 counter (reserved and committed before any output is derived from it); the
    // keysets whose keys were verified against their id; the tokens (the proof — secret,
    // `C`, DLEQ with its blinding factor — sealed; amount, keyset, `Y`, `C`, state and the
    // counter it came from in the clear); spends not finished (inputs and the outputs'
    // counters, no secrets: the outputs are derived again from the seed); the outputs sent
    // with a redemption until its credit is recorded; and the value each credit was issued in.
    &[
        "CREATE TABLE credit_counters (
            keyset_id TEXT PRIMARY KEY,
            next_counter INTEGER NOT NULL CHECK (next_counter >= 0 AND next_counter <= 4294967296)
        )",
        "CREATE TABLE credit_keysets (
            operator_id TEXT NOT NULL,
            keyset_id TEXT NOT NULL,
            final_expiry INTEGER NOT NULL,
            keys TEXT NOT NULL,
            PRIMARY KEY (operator_id, keyset_id)
        )",
        "CREATE TABLE credit_tokens (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            operator_id TEXT NOT NULL,
            keyset_id TEXT NOT NULL,
            amount INTEGER NOT NULL CHECK (amount > 0),
            y TEXT NOT NULL UNIQUE,
            c TEXT NOT NULL,
            proof_enc BLOB NOT NULL,
            counter INTEGER CHECK (counter >= 0),
            final_expiry INTEGER NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('unspent', 'pending', 'spent')),
            spend_id TEXT,
            origin TEXT NOT NULL CHECK (origin IN ('redeem', 'change', 'restore')),
            voucher_id INTEGER,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            CHECK ((state = 'pending') <= (spend_id IS NOT NULL))
        )",
        "CREATE INDEX credit_tokens_by_operator ON credit_tokens (operator_id, state)",
        "CREATE TABLE credit_spends (
            id TEXT PRIMARY KEY,
            operator_id TEXT NOT NULL,
            paid INTEGER NOT NULL CHECK (paid >= 0),
            keyset_id TEXT NOT NULL,
            inputs TEXT NOT NULL,
            outputs TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('pending', 'done', 'cancelled', 'refused')),
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL
        )",
        "CREATE TABLE credit_issuances (
            voucher_id INTEGER NOT NULL REFERENCES vouchers(id),
            operator_id TEXT NOT NULL,
            request_key TEXT NOT NULL,
            keyset_id TEXT NOT NULL,
            outputs TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            PRIMARY KEY (voucher_id, operator_id, request_key)
        )",
        "ALTER TABLE credits ADD COLUMN issued INTEGER NOT NULL DEFAULT 0 CHECK (issued >= 0)",
    ],
    // 4: chat through relays (`crate::chat`). One row per contact: the queue this wallet
    // receives the contact's messages on (relay, ids and the relay's key in the clear; the
    // queue's recipient key, delivery key and this side's end-to-end key sealed), what is
    // known of the contact's queue (relay, sender id, end-to-end public key) and the sealed
    // key that signs SENDs to it. Messages both ways, their text sealed; an incoming one is
    // unique per relay message id, so a message delivered again after a crash (stored but not
    // yet acknowledged) is stored once.
    &[
        "CREATE TABLE chat_contacts (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL UNIQUE,
            role TEXT NOT NULL CHECK (role IN ('inviter', 'acceptor')),
            state TEXT NOT NULL CHECK (state IN ('invited', 'accepted', 'connected')),
            my_relay TEXT NOT NULL,
            my_recipient_id BLOB NOT NULL UNIQUE,
            my_sender_id BLOB NOT NULL,
            my_server_dh BLOB NOT NULL,
            my_e2e_public BLOB NOT NULL,
            my_secrets_enc BLOB NOT NULL,
            peer_relay TEXT,
            peer_sender_id BLOB,
            peer_e2e_public BLOB,
            send_key_enc BLOB,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            CHECK ((state = 'invited') = (peer_sender_id IS NULL))
        )",
        "CREATE TABLE chat_messages (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            contact_id INTEGER NOT NULL REFERENCES chat_contacts(id),
            direction TEXT NOT NULL CHECK (direction IN ('in', 'out')),
            relay_msg_id BLOB,
            text_enc BLOB NOT NULL,
            sent_at INTEGER NOT NULL,
            at INTEGER NOT NULL,
            UNIQUE (contact_id, relay_msg_id)
        )",
    ],
    // 5: scheduled publishing (`smpx_core::rules::publish_delay::Schedule`). When a bought
    // voucher is to be published (unix seconds), drawn at purchase; NULL for vouchers bought
    // before this version (scheduled at the next sync) and for vouchers not to be published
    // by this wallet (recovered, already published).
    &["ALTER TABLE vouchers ADD COLUMN publish_due_at INTEGER CHECK (publish_due_at >= 0)"],
];

/// The schema version this code writes and reads.
pub(crate) const SCHEMA_VERSION: i64 = 1 + MIGRATIONS.len() as i64;

/// Opens the SQLite file at `path` (which must exist).
///
/// WAL with `synchronous=FULL`: a committed write — above all an index reservation — survives
/// a crash or power loss, and a wallet is too small for the cost to matter. `secure_delete`
/// overwrites freed pages, so a blob that is deleted (a used blinding state, a spent envelope)
/// does not linger in the file.
pub(crate) async fn connect(path: &Path) -> Result<SqlitePool, WalletError> {
    let opts = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(false)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true)
        .pragma("secure_delete", "ON")
        .disable_statement_logging();
    Ok(SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(opts)
        .await?)
}

/// Copies the open wallet into `dest`, an empty file the caller created (SQLite's `VACUUM
/// INTO` fills an empty file): every committed write, those still in the `-wal` file too, and
/// nothing half-written.
pub(crate) async fn backup(pool: &SqlitePool, dest: &Path) -> Result<(), WalletError> {
    let name = dest.to_str().ok_or_else(|| {
        WalletError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} is not a UTF-8 path", dest.display()),
        ))
    })?;
    sqlx::query("VACUUM INTO ?")
        .bind(name)
        .execute(pool)
        .await?;
    std::fs::File::open(dest)?.sync_all()?;
    Ok(())
}

/// What a new wallet file starts with.
pub(crate) struct InitialMeta<'a> {
    pub kdf: &'a [u8],
    pub salt: &'a [u8],
    pub key_check: &'a [u8],
    pub seed: &'a [u8],
}

/// Creates the original schema and the wallet's meta rows in one transaction, then migrates
/// the file like any other (a crash in between leaves a file the next open migrates).
pub(crate) async fn initialize(
    pool: &SqlitePool,
    meta: &InitialMeta<'_>,
) -> Result<(), WalletError> {
    let mut tx = pool.begin().await?;
    for stmt in SCHEMA {
        tx.execute(*stmt).await?;
    }
    for (name, value) in [
        ("format", FORMAT),
        ("kdf", meta.kdf),
        ("salt", meta.salt),
        ("key_check", meta.key_check),
        ("seed", meta.seed),
    ] {
        sqlx::query("INSERT INTO meta (name, value) VALUES (?, ?)")
            .bind(name)
            .bind(value)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query("INSERT INTO counters (name, value) VALUES ('next_index', 0)")
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO counters (name, value) VALUES ('schema', 1)")
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    migrate(pool).await
}

/// Brings an opened wallet file to [`SCHEMA_VERSION`] with sqlx's migrator: `MIGRATIONS[k]`
/// is sqlx version `k + 2`, recorded with the SHA-384 of its SQL, so a migration edited
/// after it ran is refused instead of skipped. A file from a newer wallet (a version above
/// ours) is refused rather than misread; a file from before sqlx's table (only the `schema`
/// counter) is adopted as it is. Two processes opening an old file at once: the loser's
/// migration fails inside its own transaction once the winner has committed, and one more
/// pass finds it applied.
pub(crate) async fn migrate(pool: &SqlitePool) -> Result<(), WalletError> {
    let version: Option<i64> =
        sqlx::query_scalar("SELECT value FROM counters WHERE name = 'schema'")
            .fetch_optional(pool)
            .await?;
    let version = version.unwrap_or(1);
    if version > SCHEMA_VERSION {
        return Err(WalletError::Corrupt(format!(
            "the file has schema version {version}, newer than this wallet's {SCHEMA_VERSION}; \
             use a newer smpx"
        )));
    }
    let migrator = migrator();
    let mut conn = pool.acquire().await?;
    conn.ensure_migrations_table()
        .await
        .map_err(migrate_error)?;
    for m in migrator.iter().filter(|m| m.version <= version) {
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (?, ?, TRUE, ?, 0) ON CONFLICT (version) DO NOTHING",
        )
        .bind(m.version)
        .bind(&*m.description)
        .bind(&*m.checksum)
        .execute(&mut *conn)
        .await?;
    }
    let mut passes = 0;
    loop {
        passes += 1;
        match migrator.run_direct(&mut *conn).await {
            Ok(()) => break,
            Err(MigrateError::ExecuteMigration(..)) if passes < 3 => continue,
            Err(e) => return Err(migrate_error(e)),
        }
    }
    sqlx::query(
        "INSERT INTO counters (name, value) VALUES ('schema', ?) \
         ON CONFLICT (name) DO UPDATE SET value = MAX(value, excluded.value)",
    )
    .bind(SCHEMA_VERSION)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

fn migrator() -> Migrator {
    let migrations = MIGRATIONS
        .iter()
        .enumerate()
        .map(|(k, stmts)| {
            Migration::new(
                k as i64 + 2,
                Cow::Owned(format!("wallet schema {}", k + 2)),
                MigrationType::Simple,
                Cow::Owned(stmts.join(";\n")),
                false,
            )
        })
        .collect::<Vec<_>>();
    Migrator {
        migrations: Cow::Owned(migrations),
        ignore_missing: false,
        // SQLite: sqlx has no lock to take; see `migrate`.
        locking: false,
        no_tx: false,
    }
}

fn migrate_error(e: MigrateError) -> WalletError {
    match e {
        MigrateError::Execute(e) | MigrateError::ExecuteMigration(e, _) => e.into(),
        MigrateError::VersionMismatch(v) => WalletError::Corrupt(format!(
            "schema step {v} of this file was applied with other SQL than this wallet's"
        )),
        other => WalletError::Corrupt(format!("cannot migrate the wallet file: {other}")),
    }
}

pub(crate) async fn meta(pool: &SqlitePool, name: &str) -> Result<Option<Vec<u8>>, sqlx::Error> {
    sqlx::query_scalar("SELECT value FROM meta WHERE name = ?")
        .bind(name)
        .fetch_optional(pool)
        .await
}

/// Takes the next derivation index and commits at once: the index is spent from here on,
/// whatever happens to the purchase, so no crash can make two vouchers share a secret.
pub(crate) async fn reserve_index(pool: &SqlitePool) -> Result<u64, WalletError> {
    let reserved: i64 = sqlx::query_scalar(
        "UPDATE counters SET value = value + 1 WHERE name = 'next_index' RETURNING value - 1",
    )
    .fetch_one(pool)
    .await?;
    to_u64(reserved, "next_index")
}

pub(crate) async fn next_index(pool: &SqlitePool) -> Result<u64, WalletError> {
    let v: i64 = sqlx::query_scalar("SELECT value FROM counters WHERE name = 'next_index'")
        .fetch_one(pool)
        .await?;
    to_u64(v, "next_index")
}

/// Moves `next_index` up to `at_least` (never down).
pub(crate) async fn raise_next_index(pool: &SqlitePool, at_least: u64) -> Result<(), WalletError> {
    sqlx::query("UPDATE counters SET value = MAX(value, ?) WHERE name = 'next_index'")
        .bind(to_i64(at_least)?)
        .execute(pool)
        .await?;
    Ok(())
}

/// A voucher row with its stored (encrypted or public) material.
pub(crate) struct VoucherRow {
    pub record: VoucherRecord,
    /// The issuer key's SPKI DER (public), for finalizing.
    pub issuer_key: Option<Vec<u8>>,
    /// Sent to the issuer; kept to re-send on a resumed purchase.
    pub blinded_message: Option<Vec<u8>>,
    pub blinding_enc: Option<Vec<u8>>,
    pub signature_enc: Option<Vec<u8>>,
    pub has_credit: bool,
}

const VOUCHER_COLUMNS: &str = "v.id, v.idx, v.denomination, v.state, v.issuer_id, v.key_id, \
    v.commitment, v.issuer_key, v.publish_deadline, v.blinded_message, v.blinding_enc, \
    v.signature_enc, v.published_at, v.expires_at, v.redeemed_at_operator, v.publish_due_at, \
    EXISTS (SELECT 1 FROM credits c WHERE c.voucher_id = v.id) AS has_credit";

fn voucher_row(r: &SqliteRow) -> Result<VoucherRow, WalletError> {
    let state: String = r.try_get("state")?;
    let opt_u64 = |name: &str| -> Result<Option<u64>, WalletError> {
        r.try_get::<Option<i64>, _>(name)?
            .map(|v| to_u64(v, name))
            .transpose()
    };
    Ok(VoucherRow {
        record: VoucherRecord {
            id: r.try_get("id")?,
            index: to_u64(r.try_get("idx")?, "index")?,
            denomination: to_u64(r.try_get("denomination")?, "denomination")?,
            state: LocalState::parse(&state)
                .ok_or_else(|| WalletError::Corrupt(format!("unknown voucher state {state:?}")))?,
            issuer_id: r.try_get("issuer_id")?,
            key_id: r.try_get("key_id")?,
            commitment: r.try_get("commitment")?,
            publish_deadline: opt_u64("publish_deadline")?,
            publish_due_at: opt_u64("publish_due_at")?,
            published_at: opt_u64("published_at")?,
            expires_at: opt_u64("expires_at")?,
            redeemed_at_operator: r.try_get("redeemed_at_operator")?,
        },
        issuer_key: r.try_get("issuer_key")?,
        blinded_message: r.try_get("blinded_message")?,
        blinding_enc: r.try_get("blinding_enc")?,
        signature_enc: r.try_get("signature_enc")?,
        has_credit: r.try_get("has_credit")?,
    })
}

pub(crate) async fn voucher(pool: &SqlitePool, id: i64) -> Result<VoucherRow, WalletError> {
    let row = sqlx::query(&format!(
        "SELECT {VOUCHER_COLUMNS} FROM vouchers v WHERE v.id = ?"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?
    .ok_or(WalletError::NotFound(id))?;
    voucher_row(&row)
}

pub(crate) async fn vouchers(pool: &SqlitePool) -> Result<Vec<VoucherRow>, WalletError> {
    sqlx::query(&format!(
        "SELECT {VOUCHER_COLUMNS} FROM vouchers v ORDER BY v.id"
    ))
    .fetch_all(pool)
    .await?
    .iter()
    .map(voucher_row)
    .collect()
}

/// A voucher this wallet is buying.
pub(crate) struct NewPurchase<'a> {
    pub index: u64,
    pub denomination: u64,
    pub issuer_id: &'a str,
    pub key_id: &'a str,
    pub commitment: &'a str,
    pub issuer_key: &'a [u8],
    pub publish_deadline: u64,
    pub blinded_message: &'a [u8],
    pub blinding_enc: &'a [u8],
    pub now: u64,
}

pub(crate) async fn insert_purchase(
    pool: &SqlitePool,
    p: &NewPurchase<'_>,
) -> Result<i64, WalletError> {
    let id = sqlx::query(
        "INSERT INTO vouchers (idx, denomination, state, issuer_id, key_id, commitment, \
         issuer_key, publish_deadline, blinded_message, blinding_enc, created_at, updated_at) \
         VALUES (?, ?, 'buying', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(to_i64(p.index)?)
    .bind(to_i64(p.denomination)?)
    .bind(p.issuer_id)
    .bind(p.key_id)
    .bind(p.commitment)
    .bind(p.issuer_key)
    .bind(to_i64(p.publish_deadline)?)
    .bind(p.blinded_message)
    .bind(p.blinding_enc)
    .bind(to_i64(p.now)?)
    .bind(to_i64(p.now)?)
    .execute(pool)
    .await?
    .last_insert_rowid();
    Ok(id)
}

/// A published voucher found on the coordinator by recovery.
pub(crate) struct RecoveredVoucher<'a> {
    pub index: u64,
    pub denomination: u64,
    pub state: LocalState,
    pub commitment: &'a str,
    pub issuer_id: &'a str,
    pub key_id: &'a str,
    pub published_at: u64,
    pub expires_at: u64,
    pub now: u64,
}

/// Inserts a recovered voucher; `None` if the wallet already has this commitment.
pub(crate) async fn insert_recovered(
    pool: &SqlitePool,
    v: &RecoveredVoucher<'_>,
) -> Result<Option<i64>, WalletError> {
    let done = sqlx::query(
        "INSERT INTO vouchers (idx, denomination, state, issuer_id, key_id, commitment, \
         published_at, expires_at, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
    )
    .bind(to_i64(v.index)?)
    .bind(to_i64(v.denomination)?)
    .bind(v.state.as_str())
    .bind(v.issuer_id)
    .bind(v.key_id)
    .bind(v.commitment)
    .bind(to_i64(v.published_at)?)
    .bind(to_i64(v.expires_at)?)
    .bind(to_i64(v.now)?)
    .bind(to_i64(v.now)?)
    .execute(pool)
    .await?;
    Ok((done.rows_affected() == 1).then(|| done.last_insert_rowid()))
}

/// Buying → Bought: stores the finalized signature and when to publish, and forgets the
/// blinding state, which is no longer needed. False if the voucher was not in `buying` any
/// more.
pub(crate) async fn mark_bought(
    pool: &SqlitePool,
    id: i64,
    signature_enc: &[u8],
    publish_due_at: u64,
    now: u64,
) -> Result<bool, WalletError> {
    let done = sqlx::query(
        "UPDATE vouchers SET state = 'bought', signature_enc = ?, blinding_enc = NULL, \
         blinded_message = NULL, publish_due_at = ?, updated_at = ? \
         WHERE id = ? AND state = 'buying'",
    )
    .bind(signature_enc)
    .bind(to_i64(publish_due_at)?)
    .bind(to_i64(now)?)
    .bind(id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Sets when a bought voucher is to be published. False if it is not `bought` (any more).
pub(crate) async fn set_publish_due(
    pool: &SqlitePool,
    id: i64,
    publish_due_at: u64,
    now: u64,
) -> Result<bool, WalletError> {
    let done = sqlx::query(
        "UPDATE vouchers SET publish_due_at = ?, updated_at = ? WHERE id = ? AND state = 'bought'",
    )
    .bind(to_i64(publish_due_at)?)
    .bind(to_i64(now)?)
    .bind(id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Deletes a voucher that is still `buying`. False if it was not (any more).
pub(crate) async fn delete_buying(pool: &SqlitePool, id: i64) -> Result<bool, WalletError> {
    let done = sqlx::query("DELETE FROM vouchers WHERE id = ? AND state = 'buying'")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// A state change with what the coordinator said about the voucher, compare-and-set on
/// `from`. Publish times are filled in only where unknown. False if the state was not `from`.
pub(crate) struct Transition<'a> {
    pub id: i64,
    pub from: LocalState,
    pub to: LocalState,
    pub published_at: Option<u64>,
    pub expires_at: Option<u64>,
    pub publish_receipt: Option<&'a str>,
    pub now: u64,
}

pub(crate) async fn transition(pool: &SqlitePool, t: &Transition<'_>) -> Result<bool, WalletError> {
    let done = sqlx::query(
        "UPDATE vouchers SET state = ?, \
         published_at = COALESCE(published_at, ?), expires_at = COALESCE(expires_at, ?), \
         publish_receipt = COALESCE(publish_receipt, ?), updated_at = ? \
         WHERE id = ? AND state = ?",
    )
    .bind(t.to.as_str())
    .bind(t.published_at.map(to_i64).transpose()?)
    .bind(t.expires_at.map(to_i64).transpose()?)
    .bind(t.publish_receipt)
    .bind(to_i64(t.now)?)
    .bind(t.id)
    .bind(t.from.as_str())
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Stores a sealed envelope unless one is already stored for this voucher, operator and
/// coordinator key; returns the one that is stored (ours or the earlier one), so concurrent
/// attempts converge on a single envelope.
pub(crate) async fn put_envelope(
    pool: &SqlitePool,
    voucher_id: i64,
    operator_id: &str,
    envelope_key: &str,
    envelope_enc: &[u8],
    now: u64,
) -> Result<Vec<u8>, WalletError> {
    sqlx::query(
        "INSERT INTO pending_envelopes (voucher_id, operator_id, envelope_key, envelope_enc, \
         created_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
    )
    .bind(voucher_id)
    .bind(operator_id)
    .bind(envelope_key)
    .bind(envelope_enc)
    .bind(to_i64(now)?)
    .execute(pool)
    .await?;
    envelope(pool, voucher_id, operator_id, envelope_key)
        .await?
        .ok_or_else(|| WalletError::Corrupt("a stored envelope vanished".into()))
}

pub(crate) async fn envelope(
    pool: &SqlitePool,
    voucher_id: i64,
    operator_id: &str,
    envelope_key: &str,
) -> Result<Option<Vec<u8>>, WalletError> {
    Ok(sqlx::query_scalar(
        "SELECT envelope_enc FROM pending_envelopes \
         WHERE voucher_id = ? AND operator_id = ? AND envelope_key = ?",
    )
    .bind(voucher_id)
    .bind(operator_id)
    .bind(envelope_key)
    .fetch_optional(pool)
    .await?)
}

/// Records a verified credit and marks the voucher redeemed at `operator_id`, in one
/// transaction; the voucher's envelopes are deleted (they are spent). Idempotent: a credit
/// already recorded for the voucher is kept.
///
/// The credit tokens issued for it (already checked against the operator's published keys)
/// are stored in the same transaction, and the outputs kept for the redemption are deleted.
pub(crate) async fn record_credit(
    pool: &SqlitePool,
    credit: &CreditRecord,
    tokens: &[crate::credit_db::NewToken<'_>],
    now: u64,
) -> Result<(), WalletError> {
    let mut tx = pool.begin().await?;
    let fresh = sqlx::query(
        "INSERT INTO credits (voucher_id, operator_id, credited, receipt, at, protocol, issued) \
         VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
    )
    .bind(credit.voucher_id)
    .bind(&credit.operator_id)
    .bind(to_i64(credit.credited.0)?)
    .bind(credit.receipt.to_string())
    .bind(to_i64(credit.at)?)
    .bind(i64::from(credit.protocol))
    .bind(to_i64(credit.issued.0)?)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if fresh {
        for t in tokens {
            crate::credit_db::insert_token(&mut tx, t, now).await?;
        }
    }
    sqlx::query("DELETE FROM credit_issuances WHERE voucher_id = ?")
        .bind(credit.voucher_id)
        .execute(&mut *tx)
        .await?;
    let updated = sqlx::query(
        "UPDATE vouchers SET state = 'redeemed', redeemed_at_operator = ?, updated_at = ? \
         WHERE id = ? AND state IN ('published', 'redeemed')",
    )
    .bind(&credit.operator_id)
    .bind(to_i64(now)?)
    .bind(credit.voucher_id)
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() != 1 {
        return Err(WalletError::Corrupt(format!(
            "voucher {} changed state while its redemption was being recorded",
            credit.voucher_id
        )));
    }
    sqlx::query("DELETE FROM pending_envelopes WHERE voucher_id = ?")
        .bind(credit.voucher_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

pub(crate) async fn credits(pool: &SqlitePool) -> Result<Vec<CreditRecord>, WalletError> {
    let rows = sqlx::query(
        "SELECT voucher_id, operator_id, credited, receipt, at, protocol, issued FROM credits \
         ORDER BY voucher_id",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            let receipt: String = r.try_get("receipt")?;
            Ok(CreditRecord {
                voucher_id: r.try_get("voucher_id")?,
                operator_id: r.try_get("operator_id")?,
                credited: smpx_core::Amount(to_u64(r.try_get("credited")?, "credited")?),
                receipt: serde_json::from_str(&receipt)
                    .map_err(|e| WalletError::Corrupt(format!("stored receipt: {e}")))?,
                at: to_u64(r.try_get("at")?, "credit time")?,
                protocol: u32::try_from(r.try_get::<i64, _>("protocol")?)
                    .map_err(|_| WalletError::Corrupt("credit protocol".into()))?,
                issued: smpx_core::Amount(to_u64(r.try_get("issued")?, "issued")?),
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// v0.2: membership paths, and each MMR's leaf cache and latest verified checkpoint

/// Stores the membership paths of a voucher's publish receipt (one per MMR; an existing row is
/// kept).
pub(crate) async fn put_paths(
    pool: &SqlitePool,
    voucher_id: i64,
    paths: &[smpx_core::mmr::Proof],
) -> Result<(), WalletError> {
    let mut tx = pool.begin().await?;
    for p in paths {
        let json = serde_json::to_string(p)
            .map_err(|e| WalletError::Corrupt(format!("encoding a path: {e}")))?;
        sqlx::query(
            "INSERT INTO voucher_paths (voucher_id, mmr_id, leaf_index, proof) \
             VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(voucher_id)
        .bind(to_i64(p.mmr.id)?)
        .bind(to_i64(p.leaf_index)?)
        .bind(json)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// A voucher's stored membership paths, oldest MMR first.
pub(crate) async fn paths(
    pool: &SqlitePool,
    voucher_id: i64,
) -> Result<Vec<smpx_core::mmr::Proof>, WalletError> {
    let rows = sqlx::query(
        "SELECT mmr_id, leaf_index, proof FROM voucher_paths WHERE voucher_id = ? ORDER BY mmr_id",
    )
    .bind(voucher_id)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            let json: String = r.try_get("proof")?;
            let p: smpx_core::mmr::Proof = serde_json::from_str(&json)
                .map_err(|e| WalletError::Corrupt(format!("stored path: {e}")))?;
            if to_i64(p.mmr.id)? != r.try_get::<i64, _>("mmr_id")?
                || to_i64(p.leaf_index)? != r.try_get::<i64, _>("leaf_index")?
            {
                return Err(WalletError::Corrupt(
                    "a stored path does not match its row".into(),
                ));
            }
            Ok(p)
        })
        .collect()
}

/// What the wallet holds about one MMR: its latest verified signed checkpoint (JSON) and the
/// cached leaves. `leaves` is empty when the cache is not exactly the checkpoint's leaves
/// `0..size` in contiguous chunks (a damaged cache is downloaded again, never trusted).
pub(crate) struct MmrCache {
    pub checkpoint: Option<String>,
    pub size: u64,
    pub leaves: Vec<[u8; 32]>,
}

pub(crate) async fn mmr_cache(pool: &SqlitePool, mmr_id: u64) -> Result<MmrCache, WalletError> {
    let id = to_i64(mmr_id)?;
    let cp = sqlx::query("SELECT size, signed FROM mmr_checkpoints WHERE mmr_id = ?")
        .bind(id)
        .fetch_optional(pool)
        .await?;
    let Some(cp) = cp else {
        return Ok(MmrCache {
            checkpoint: None,
            size: 0,
            leaves: Vec::new(),
        });
    };
    let size = to_u64(cp.try_get("size")?, "checkpoint size")?;
    let signed: String = cp.try_get("signed")?;
    let chunks =
        sqlx::query("SELECT start, leaves FROM mmr_leaf_chunks WHERE mmr_id = ? ORDER BY start")
            .bind(id)
            .fetch_all(pool)
            .await?;
    let mut leaves: Vec<[u8; 32]> = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    let mut intact = true;
    for c in &chunks {
        let start = to_u64(c.try_get("start")?, "chunk start")?;
        let blob: Vec<u8> = c.try_get("leaves")?;
        if start != leaves.len() as u64 || !blob.chunks_exact(32).remainder().is_empty() {
            intact = false;
            break;
        }
        leaves.extend(
            blob.chunks_exact(32)
                .filter_map(|l| <[u8; 32]>::try_from(l).ok()),
        );
    }
    if !intact || leaves.len() as u64 != size {
        tracing::warn!(
            mmr = mmr_id,
            "the MMR leaf cache is damaged; it will be downloaded again"
        );
        leaves.clear();
    }
    Ok(MmrCache {
        checkpoint: Some(signed),
        size,
        leaves,
    })
}

/// Records a verified sync of one MMR, if no other sync got there first (compare-and-set on
/// the stored checkpoint's size being `prior_size`, or absent when `None`): appends the
/// leaves `start..start + new_leaves.len()` (from `start` 0 they replace the whole cache) and
/// stores `signed` as the MMR's checkpoint at `size`. Returns whether it stored.
pub(crate) struct MmrSave<'a> {
    pub mmr_id: u64,
    pub prior_size: Option<u64>,
    pub start: u64,
    pub new_leaves: &'a [[u8; 32]],
    pub size: u64,
    pub signed: &'a str,
    pub now: u64,
}

pub(crate) async fn save_mmr(pool: &SqlitePool, s: &MmrSave<'_>) -> Result<bool, WalletError> {
    let id = to_i64(s.mmr_id)?;
    let mut tx = pool.begin().await?;
    // Write first (takes the write lock), then read what is stored.
    let changed = match s.prior_size {
        None => sqlx::query(
            "INSERT INTO mmr_checkpoints (mmr_id, size, signed, updated_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(to_i64(s.size)?)
        .bind(s.signed)
        .bind(to_i64(s.now)?)
        .execute(&mut *tx)
        .await?
        .rows_affected(),
        Some(prior) => sqlx::query(
            "UPDATE mmr_checkpoints SET size = ?, signed = ?, updated_at = ? \
             WHERE mmr_id = ? AND size = ?",
        )
        .bind(to_i64(s.size)?)
        .bind(s.signed)
        .bind(to_i64(s.now)?)
        .bind(id)
        .bind(to_i64(prior)?)
        .execute(&mut *tx)
        .await?
        .rows_affected(),
    };
    if changed != 1 {
        return Ok(false);
    }
    if s.start == 0 {
        sqlx::query("DELETE FROM mmr_leaf_chunks WHERE mmr_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    if !s.new_leaves.is_empty() {
        let blob: Vec<u8> = s.new_leaves.iter().flatten().copied().collect();
        sqlx::query("INSERT INTO mmr_leaf_chunks (mmr_id, start, leaves) VALUES (?, ?, ?)")
            .bind(id)
            .bind(to_i64(s.start)?)
            .bind(blob)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// Removes a pending (unanswered) redemption request that can never succeed, so the next
/// attempt makes a new one.
pub(crate) async fn delete_envelope(
    pool: &SqlitePool,
    voucher_id: i64,
    operator_id: &str,
    envelope_key: &str,
) -> Result<(), WalletError> {
    sqlx::query(
        "DELETE FROM pending_envelopes WHERE voucher_id = ? AND operator_id = ? \
         AND envelope_key = ?",
    )
    .bind(voucher_id)
    .bind(operator_id)
    .bind(envelope_key)
    .execute(pool)
    .await?;
    Ok(())
}

pub(crate) fn to_u64(v: i64, what: &str) -> Result<u64, WalletError> {
    u64::try_from(v).map_err(|_| WalletError::Corrupt(format!("negative {what}")))
}

/// SQLite integers are signed 64-bit; no wallet value comes near the limit.
pub(crate) fn to_i64(v: u64) -> Result<i64, WalletError> {
    i64::try_from(v)
        .map_err(|_| WalletError::Corrupt(format!("value {v} does not fit the database")))
}
