//! `smpx demo` runs the whole lifecycle and exits 0; and what the services learn and write
//! down, checked after that run with every log line on (`--log trace`): no secret of any party appears in any log line, and the
//! issuer's, the operator's and the relay directory's databases hold nothing that names the vouchers as the
//! coordinator knows them (their commitments), so a sale cannot be joined with a publication
//! by a column, nor a redemption at the operator with one.

use std::path::Path;

/// Every secret string in a service home: tokens, credentials, keys (each whole file, and
/// each string value of a JSON file).
fn secrets_in(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let secret_file = [
            "admin-token",
            "key-encryption-key",
            "receipt-key",
            "credit-master-secret",
            // The directory's statement key, the devnet's attester, the relays' operator
            // key and each relay's CA and online TLS keys (PEM: each line on its own).
            "signing-key",
            "attester.key",
            "operator.key",
            "ca.key",
            "server.key",
        ]
        .contains(&name.as_str());
        let secret_json = [
            "keys.json",
            "credentials.json",
            "issuer.json",
            "operator.json",
        ]
        .contains(&name.as_str());
        if secret_file {
            let text = std::fs::read_to_string(&path).unwrap();
            out.push(text.trim().to_owned());
            out.extend(
                text.lines()
                    .filter(|l| !l.starts_with("-----"))
                    .map(|l| l.trim().to_owned()),
            );
        } else if secret_json {
            let v: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            collect_strings(&v, &mut out);
        }
    }
    // A credential `<id>:<secret>`: its secret part alone must not appear either.
    let parts: Vec<String> = out
        .iter()
        .filter_map(|s| s.split_once(':').map(|(_, secret)| secret.to_owned()))
        .collect();
    out.extend(parts);
    // Ids, URLs and flags are not secret; keep what looks like key material.
    out.retain(|s| s.len() >= 32 && !s.contains("://"));
    out
}

fn collect_strings(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|v| collect_strings(v, out)),
        serde_json::Value::Object(o) => o.values().for_each(|v| collect_strings(v, out)),
        _ => {}
    }
}

/// The bytes of a SQLite database and its write-ahead log.
fn database_bytes(db: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(db).unwrap();
    if let Ok(wal) = std::fs::read(db.with_extension("db-wal")) {
        bytes.extend(wal);
    }
    bytes
}

#[tokio::test]
async fn the_demo_succeeds_no_log_holds_a_secret_and_only_the_coordinator_holds_commitments() {
    let dir = tempfile::tempdir().unwrap();
    let keep = dir.path().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_smpx"))
            .args(["--log", "trace", "demo", "--mmr-levels", "3", "--keep"])
            .arg(&keep)
            .env_remove("RUST_LOG")
            // The test ceremony cache the other tests share.
            .env(
                "XDG_CACHE_HOME",
                std::env::temp_dir().join("smpx-test-cache"),
            )
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("conservation holds"), "{stdout}");
    // It ends with a message the free tier refused, delivered over paid capacity.
    assert!(stdout.contains("was refused (QUOTA)"), "{stdout}");
    assert!(
        stdout.contains("over capacity paid for with credits"),
        "{stdout}"
    );
    assert!(stdout.contains("every step succeeded"));
    // Every level was on: the services' request lines are there.
    assert!(
        stderr.lines().filter(|l| l.contains("request")).count() > 10,
        "trace logging was on"
    );

    let devnet = dir.path().join("devnet");
    let mut secrets = Vec::new();
    for service in ["coordinator", "issuer", "operator", "directory"] {
        secrets.extend(secrets_in(&devnet.join(service)));
    }
    secrets.extend(secrets_in(&devnet));
    let relays = dir.path().join("relays");
    secrets.extend(secrets_in(&relays));
    for i in 1..=3 {
        let relay = secrets_in(&relays.join(format!("relay-{i}")));
        assert!(relay.len() >= 2, "relay-{i}'s CA and online keys");
        secrets.extend(relay);
    }
    assert!(
        secrets.len() >= 14,
        "found the secrets to look for: {}",
        secrets.len()
    );
    for s in &secrets {
        assert!(!stderr.contains(s.as_str()), "a secret is in the log");
        assert!(!stdout.contains(s.as_str()), "a secret is in the output");
    }

    // The wallet's recovery phrase: in no log line, not even three of its words in a row.
    let phrase = std::fs::read_to_string(dir.path().join("recovery-phrase")).unwrap();
    let words: Vec<&str> = phrase.split_whitespace().collect();
    assert_eq!(words.len(), 24);
    for run in words.windows(3) {
        let run = run.join(" ");
        assert!(!stderr.contains(&run), "the recovery phrase is in the log");
        assert!(
            !stdout.contains(&run),
            "the recovery phrase is in the output"
        );
    }

    // The demo's vouchers, as the wallet (and the coordinator) name them.
    let wallet = smpx_wallet::Wallet::open(&dir.path().join("wallet.db"), "demo passphrase")
        .await
        .unwrap();
    let vouchers = wallet.vouchers().await.unwrap();
    assert!(!vouchers.is_empty());
    // Neither the issuer nor the operator holds a commitment (ARCHITECTURE.md, "What each
    // party learns": the issuer signs it blinded; the operator forwards a sealed envelope or a
    // proof that names no voucher). The coordinator does, which shows the search finds them.
    let holds = |db: &[u8], commitment: &str| {
        let raw = hex::decode(commitment).unwrap();
        db.windows(raw.len()).any(|w| w == raw.as_slice())
            || db
                .windows(commitment.len())
                .any(|w| w == commitment.as_bytes())
    };
    let coordinator_db = database_bytes(&devnet.join("coordinator").join("coordinator.db"));
    assert!(vouchers
        .iter()
        .any(|v| holds(&coordinator_db, &v.commitment)));
    // Nor does the relay directory, which learns what operators publish and what its probes
    // found, nothing about the wallets that pay.
    for service in ["issuer", "operator", "directory"] {
        let db = database_bytes(&devnet.join(service).join(format!("{service}.db")));
        for v in &vouchers {
            assert!(
                !holds(&db, &v.commitment),
                "the {service}'s database holds a commitment"
            );
        }
    }
}
