//! Wallet tests that need no service: the file, the encryption at rest, index reservation and
//! the state machine. Purchases are driven by a local issuer key through the same internal
//! steps `buy` uses around its network calls. (Flows against the services: `tests/it/`.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::db;
use crate::vault::aad;
use crate::wallet::{current_key, ChosenKey};
use crate::{Action, KdfParams, LocalState, Wallet, WalletError};
use smpx_core::api::{IssuerKeyInfo, ParamsResponse, Payment};
use smpx_core::crypto::b64;
use smpx_core::crypto::blind::{BlindedMessage, IssuerSecretKey};
use smpx_core::crypto::envelope::HpkeSecretKey;
use smpx_core::crypto::seed::WalletSeed;
use smpx_core::crypto::sign::SigningKey;
use smpx_core::crypto::voucher::commitment;
use smpx_core::{keys, NetworkParams};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

const PASS: &str = "correct horse battery staple";
/// Nothing listens here: a test that reaches the network fails with a service error.
const NOWHERE: &str = "http://127.0.0.1:9";

fn fast() -> KdfParams {
    KdfParams::insecure_for_tests()
}

fn issuer_key() -> &'static IssuerSecretKey {
    static KEY: OnceLock<IssuerSecretKey> = OnceLock::new();
    KEY.get_or_init(|| IssuerSecretKey::generate(2048, &mut rand::rngs::OsRng).unwrap())
}

fn params_now() -> ParamsResponse {
    ParamsResponse {
        params: NetworkParams::default(),
        receipt_key: SigningKey::generate(&mut rand::rngs::OsRng).verifying_key(),
        envelope_key: HpkeSecretKey::generate(&mut rand::rngs::OsRng).public_key(),
        now: NetworkParams::default().epoch + 5 * 86_400,
    }
}

/// The current-period key of issuer "iss" for denomination 10, chosen as `buy` chooses it.
fn chosen_key(p: &ParamsResponse) -> ChosenKey {
    let pk = issuer_key().public_key().unwrap();
    let period = keys::period_at(&p.params, p.now);
    let info = IssuerKeyInfo {
        key_id: hex::encode(pk.key_id().unwrap()),
        issuer_id: "iss".into(),
        denomination: 10,
        period,
        valid_from: keys::period_start(&p.params, period),
        publish_deadline: keys::publish_deadline(&p.params, period),
        public_key: b64::encode(&pk.to_spki().unwrap()),
        published_count: 0,
    };
    current_key(p, "iss", 10, vec![info]).unwrap()
}

/// Runs the local half of a purchase: reserve, blind, store (Buying).
async fn start_purchase(w: &Wallet) -> i64 {
    let p = params_now();
    w.begin_purchase("iss", 10, &chosen_key(&p), p.now)
        .await
        .unwrap()
}

/// Signs the stored blinded message with the issuer key and finishes (Bought).
async fn complete_purchase(w: &Wallet, id: i64) {
    let row = db::voucher(w.pool(), id).await.unwrap();
    let blinded = BlindedMessage(row.blinded_message.unwrap());
    let sig = issuer_key().blind_sign(&blinded).unwrap();
    let rec = w.finish_purchase(id, &sig).await.unwrap();
    assert_eq!(rec.state, LocalState::Bought);
}

fn wallet_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("wallet.db")
}

/// Every byte the wallet left on disk: the database and its WAL / shared-memory files.
fn file_bytes(path: &Path) -> Vec<u8> {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let mut all = Vec::new();
    for entry in std::fs::read_dir(path.parent().unwrap()).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name().to_string_lossy().starts_with(&name) {
            all.extend(std::fs::read(entry.path()).unwrap());
        }
    }
    all
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn create_then_open_roundtrip() {
    let dir = tempfile::tempdir().unwrap();
    let path = wallet_path(&dir);
    let (w, phrase) = Wallet::create_with(&path, PASS, fast()).await.unwrap();
    assert_eq!(phrase.split(' ').count(), 24);
    let id = start_purchase(&w).await;
    complete_purchase(&w, id).await;
    let before = w.vouchers().await.unwrap();
    let seed_before = *w.seed().as_bytes();
    w.close().await;

    let w = Wallet::open(&path, PASS).await.unwrap();
    assert_eq!(w.seed().as_bytes(), &seed_before);
    assert_eq!(
        seed_before,
        *WalletSeed::from_mnemonic(&phrase).unwrap().as_bytes(),
        "the stored seed is the phrase's seed"
    );
    assert_eq!(w.vouchers().await.unwrap(), before);
    assert_eq!(before.len(), 1);
    assert_eq!(before[0].state, LocalState::Bought);
    assert_eq!(w.balance().await.unwrap().bought.count, 1);
    assert!(!format!("{w:?}").contains(&hex::encode(seed_before)));
}

#[tokio::test]
async fn default_kdf_wallet_opens_and_records_its_params() {
    let dir = tempfile::tempdir().unwrap();
    let path = wallet_path(&dir);
    let (w, _) = Wallet::create(&path, PASS).await.unwrap();
    let kdf: KdfParams =
        serde_json::from_slice(&db::meta(w.pool(), "kdf").await.unwrap().unwrap()).unwrap();
    assert_eq!(kdf, KdfParams::default());
    w.close().await;
    Wallet::open(&path, PASS).await.unwrap();
}

#[tokio::test]
async fn wrong_passphrase_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = wallet_path(&dir);
    let (w, _) = Wallet::create_with(&path, PASS, fast()).await.unwrap();
    w.close().await;
    for wrong in [
        "",
        "correct horse battery stapl",
        "Correct horse battery staple",
    ] {
        let e = Wallet::open(&path, wrong).await.unwrap_err();
        assert!(matches!(e, WalletError::WrongPassphrase), "{wrong:?}: {e}");
        assert!(e.to_string().contains("wrong passphrase"));
    }
    // Still opens with the right one.
    Wallet::open(&path, PASS).await.unwrap();
}

#[tokio::test]
async fn a_wallet_of_the_first_schema_is_migrated_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = wallet_path(&dir);
    let (w, _) = Wallet::create_with(&path, PASS, fast()).await.unwrap();
    let id = start_purchase(&w).await;
    complete_purchase(&w, id).await;
    // Make it a file as the first wallet wrote it: no v0.2 tables, no credit protocol, no
    // schema counter; with a credit recorded.
    for stmt in [
        "DROP TABLE voucher_paths",
        "DROP TABLE mmr_checkpoints",
        "DROP TABLE mmr_leaf_chunks",
        "ALTER TABLE credits DROP COLUMN protocol",
        // Schema 3 (operator credits).
        "DROP TABLE credit_counters",
        "DROP TABLE credit_keysets",
        "DROP TABLE credit_tokens",
        "DROP TABLE credit_spends",
        "DROP TABLE credit_issuances",
        "ALTER TABLE credits DROP COLUMN issued",
        // Schema 4 (chat).
        "DROP TABLE chat_messages",
        "DROP TABLE chat_contacts",
        // Schema 5 (scheduled publishing).
        "ALTER TABLE vouchers DROP COLUMN publish_due_at",
        "DELETE FROM counters WHERE name = 'schema'",
        "DROP TABLE _sqlx_migrations",
        "UPDATE vouchers SET state = 'redeemed'",
    ] {
        sqlx::query(stmt).execute(w.pool()).await.unwrap();
    }
    sqlx::query(
        "INSERT INTO credits (voucher_id, operator_id, credited, receipt, at) \
         VALUES (?, 'op', 5, 'null', 7)",
    )
    .bind(id)
    .execute(w.pool())
    .await
    .unwrap();
    w.close().await;

    let w = Wallet::open(&path, PASS).await.unwrap();
    let credits = w.credits().await.unwrap();
    assert_eq!(credits.len(), 1);
    assert_eq!(credits[0].protocol, 1, "old credits were protocol 1");
    assert_eq!(credits[0].issued.0, 0, "old credits were receipts only");
    assert!(w.credit_tokens(None).await.unwrap().is_empty());
    assert!(w.paths(id).await.unwrap().is_empty());
    let version: i64 = sqlx::query_scalar("SELECT value FROM counters WHERE name = 'schema'")
        .fetch_one(w.pool())
        .await
        .unwrap();
    assert_eq!(version, db::SCHEMA_VERSION);
    // Opening again changes nothing.
    w.close().await;
    let w = Wallet::open(&path, PASS).await.unwrap();
    assert_eq!(w.credits().await.unwrap(), credits);

    // A file from a newer wallet is refused, not misread.
    sqlx::query("UPDATE counters SET value = value + 1 WHERE name = 'schema'")
        .execute(w.pool())
        .await
        .unwrap();
    w.close().await;
    let e = Wallet::open(&path, PASS).await.unwrap_err();
    assert!(e.to_string().contains("newer"), "{e}");
}

#[tokio::test]
async fn open_reports_missing_and_foreign_files() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.db");
    assert!(matches!(
        Wallet::open(&missing, PASS).await.unwrap_err(),
        WalletError::NoWallet(_)
    ));
    assert!(!missing.exists(), "open must not create a file");
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, b"this is not a database, just some text in a file").unwrap();
    assert!(matches!(
        Wallet::open(&junk, PASS).await.unwrap_err(),
        WalletError::NotAWallet { .. }
    ));
}

#[tokio::test]
async fn create_and_restore_refuse_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let path = wallet_path(&dir);
    let (w, phrase) = Wallet::create_with(&path, PASS, fast()).await.unwrap();
    let seed = *w.seed().as_bytes();
    w.close().await;

    let e = Wallet::create_with(&path, "other", fast())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, WalletError::AlreadyExists(p) if p == &path),
        "{e}"
    );
    let other_phrase = WalletSeed::generate_mnemonic(&mut rand::rngs::OsRng);
    let e = Wallet::restore_with(&path, "other", &other_phrase, fast())
        .await
        .unwrap_err();
    assert!(matches!(e, WalletError::AlreadyExists(_)));
    // The original is intact.
    let w = Wallet::open(&path, PASS).await.unwrap();
    assert_eq!(w.seed().as_bytes(), &seed);
    drop(phrase);

    // Any file counts, not only wallets, and it is left untouched.
    let other = dir.path().join("notes.txt");
    std::fs::write(&other, b"keep me").unwrap();
    assert!(matches!(
        Wallet::create_with(&other, PASS, fast()).await.unwrap_err(),
        WalletError::AlreadyExists(_)
    ));
    assert_eq!(std::fs::read(&other).unwrap(), b"keep me");
}

#[tokio::test]
async fn restore_rejects_a_bad_phrase_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = wallet_path(&dir);
    let e = Wallet::restore_with(&path, PASS, "abandon abandon abandon", fast())
        .await
        .unwrap_err();
    assert!(matches!(e, WalletError::Crypto(_)), "{e}");
    assert!(!path.exists());
}

#[tokio::test]
async fn restore_yields_the_same_secrets_and_commitments() {
    let dir = tempfile::tempdir().unwrap();
    let (orig, phrase) = Wallet::create_with(&dir.path().join("a.db"), PASS, fast())
        .await
        .unwrap();
    // Typed back from paper: extra spaces, a capital.
    let retyped = format!("  {}\n", phrase.replacen(' ', "   ", 3).to_uppercase());
    let restored = Wallet::restore_with(&dir.path().join("b.db"), "another pass", &retyped, fast())
        .await
        .unwrap();
    assert_eq!(orig.seed().as_bytes(), restored.seed().as_bytes());
    for i in [0u64, 1, 2, 17, 1000] {
        let (a, b) = (
            orig.seed().voucher_secret(i),
            restored.seed().voucher_secret(i),
        );
        assert_eq!(a.to_bytes(), b.to_bytes());
        for d in [1, 10, 100] {
            assert_eq!(commitment(&a, d), commitment(&b, d));
        }
    }
    // The vouchers the two wallets would buy at the same index are the same vouchers.
    for _ in 0..2 {
        let ia = start_purchase(&orig).await;
        let ib = start_purchase(&restored).await;
        let (va, vb) = (
            orig.voucher(ia).await.unwrap(),
            restored.voucher(ib).await.unwrap(),
        );
        assert_eq!((va.index, &va.commitment), (vb.index, &vb.commitment));
    }
    // And a different phrase gives different ones.
    let (other, _) = Wallet::create_with(&dir.path().join("c.db"), PASS, fast())
        .await
        .unwrap();
    let io = start_purchase(&other).await;
    let first = orig.vouchers().await.unwrap().remove(0);
    assert_ne!(
        other.voucher(io).await.unwrap().commitment,
        first.commitment
    );
}

#[tokio::test]
async fn secrets_are_not_in_the_file_in_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let path = wallet_path(&dir);
    let phrase = WalletSeed::generate_mnemonic(&mut rand::rngs::OsRng);
    let w = Wallet::restore_with(&path, PASS, &phrase, fast())
        .await
        .unwrap();
    let seed = *WalletSeed::from_mnemonic(&phrase).unwrap().as_bytes();

    // One voucher left in Buying (its blinding state stored), one Bought (its signature).
    let buying = start_purchase(&w).await;
    let bought = start_purchase(&w).await;
    let bought_row = db::voucher(w.pool(), bought).await.unwrap();
    let blinded = BlindedMessage(bought_row.blinded_message.clone().unwrap());
    let sig = issuer_key().blind_sign(&blinded).unwrap();
    w.finish_purchase(bought, &sig).await.unwrap();

    // The blinding secret of the Buying voucher, decrypted through the wallet's own key.
    let row = db::voucher(w.pool(), buying).await.unwrap();
    let index = row.record.index;
    let state_json = w
        .vault_key()
        .open_known(&aad::blinding(index), row.blinding_enc.as_deref().unwrap())
        .unwrap();
    let state: serde_json::Value = serde_json::from_slice(&state_json).unwrap();
    let inv_b64 = state["inv"].as_str().unwrap().to_owned();
    let randomizer_hex = state["msg_randomizer"].as_str().unwrap().to_owned();
    let inv = b64::decode(&inv_b64).unwrap();
    assert_eq!(inv.len(), 256);
    // The finalized signature of the Bought voucher.
    let sig_row = db::voucher(w.pool(), bought).await.unwrap();
    let sig_json = w
        .vault_key()
        .open_known(
            &aad::signature(sig_row.record.index),
            sig_row.signature_enc.as_deref().unwrap(),
        )
        .unwrap();
    let sig: serde_json::Value = serde_json::from_slice(&sig_json).unwrap();
    let sig_b64 = sig["signature"].as_str().unwrap().to_owned();
    let sig_raw = b64::decode(&sig_b64).unwrap();
    let s = w.seed().voucher_secret(index).to_bytes();
    let commitment_hex = row.record.commitment.clone();
    w.close().await;

    let bytes = file_bytes(&path);
    // Positive control: plaintext columns are found, so the search can see the file.
    assert!(contains(&bytes, commitment_hex.as_bytes()));
    assert!(contains(&bytes, b"smpx-wallet/1"));

    let forbidden: Vec<(&str, Vec<u8>)> = vec![
        ("seed", seed.to_vec()),
        ("seed hex", hex::encode(seed).into_bytes()),
        ("seed half", seed[..32].to_vec()),
        ("phrase", phrase.clone().into_bytes()),
        (
            "phrase words",
            phrase
                .split(' ')
                .take(4)
                .collect::<Vec<_>>()
                .join(" ")
                .into_bytes(),
        ),
        ("passphrase", PASS.as_bytes().to_vec()),
        ("blinding inv", inv.clone()),
        ("blinding inv prefix", inv[..32].to_vec()),
        ("blinding inv b64", inv_b64.into_bytes()),
        ("msg randomizer", hex::decode(&randomizer_hex).unwrap()),
        ("msg randomizer hex", randomizer_hex.into_bytes()),
        ("voucher secret", s.0.to_vec()),
        ("voucher secret hex", s.to_hex().into_bytes()),
        ("signature", sig_raw.clone()),
        ("signature b64", sig_b64.into_bytes()),
    ];
    for (what, needle) in forbidden {
        assert!(
            !contains(&bytes, &needle),
            "{what} is in the wallet file in plaintext"
        );
    }
}

#[tokio::test]
async fn index_reservation_persists_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = wallet_path(&dir);
    let (w, _) = Wallet::create_with(&path, PASS, fast()).await.unwrap();
    assert_eq!(w.next_index().await.unwrap(), 0);
    let a = start_purchase(&w).await;
    let b = start_purchase(&w).await;
    assert_eq!(w.voucher(a).await.unwrap().index, 0);
    assert_eq!(w.voucher(b).await.unwrap().index, 1);
    // A reservation whose purchase never got stored (a crash right after reserving).
    assert_eq!(db::reserve_index(w.pool()).await.unwrap(), 2);
    // Dropped without a clean close, like a killed process.
    drop(w);

    let w = Wallet::open(&path, PASS).await.unwrap();
    assert_eq!(w.next_index().await.unwrap(), 3);
    let c = start_purchase(&w).await;
    assert_eq!(
        w.voucher(c).await.unwrap().index,
        3,
        "index 2 is burned, never reused"
    );
    let indices: Vec<u64> = w
        .vouchers()
        .await
        .unwrap()
        .iter()
        .map(|v| v.index)
        .collect();
    assert_eq!(indices, vec![0, 1, 3]);
}

#[tokio::test]
async fn state_machine_refuses_illegal_transitions() {
    let dir = tempfile::tempdir().unwrap();
    let (w, _) = Wallet::create_with(&wallet_path(&dir), PASS, fast())
        .await
        .unwrap();
    let buying = start_purchase(&w).await;
    let bought = start_purchase(&w).await;
    complete_purchase(&w, bought).await;

    let invalid = |e: WalletError, id: i64, state: LocalState, action: Action| match e {
        WalletError::InvalidState {
            id: i,
            state: s,
            action: a,
        } => {
            assert_eq!((i, s, a), (id, state, action))
        }
        other => panic!("expected InvalidState, got {other}"),
    };
    // Each refusal happens before any network call (NOWHERE would give a service error).
    let zero = Duration::ZERO;
    invalid(
        w.publish(NOWHERE, buying, zero).await.unwrap_err(),
        buying,
        LocalState::Buying,
        Action::Publish,
    );
    invalid(
        w.redeem(NOWHERE, NOWHERE, buying).await.unwrap_err(),
        buying,
        LocalState::Buying,
        Action::Redeem,
    );
    let e = w.redeem(NOWHERE, NOWHERE, bought).await.unwrap_err();
    assert!(e.to_string().contains("not published yet"), "{e}");
    invalid(e, bought, LocalState::Bought, Action::Redeem);
    invalid(
        w.resume_buy(NOWHERE, bought, Payment::Devnet)
            .await
            .unwrap_err(),
        bought,
        LocalState::Bought,
        Action::ResumeBuy,
    );
    // A second blind signature for a finished purchase is refused, and changes nothing.
    let sig = issuer_key()
        .blind_sign(&BlindedMessage(vec![1; 256]))
        .unwrap();
    invalid(
        w.finish_purchase(bought, &sig).await.unwrap_err(),
        bought,
        LocalState::Bought,
        Action::ResumeBuy,
    );
    assert!(matches!(
        w.publish(NOWHERE, 999, zero).await.unwrap_err(),
        WalletError::NotFound(999)
    ));

    // The same refusals for published, redeemed and expired vouchers, whose states are set
    // directly (their legal paths need the services).
    for (state, action_ok) in [
        (LocalState::Published, Action::Publish),
        (LocalState::Redeemed, Action::Publish),
        (LocalState::Expired, Action::Publish),
    ] {
        let id = start_purchase(&w).await;
        complete_purchase(&w, id).await;
        sqlx::query("UPDATE vouchers SET state = ? WHERE id = ?")
            .bind(state.as_str())
            .bind(id)
            .execute(w.pool())
            .await
            .unwrap();
        invalid(
            w.publish(NOWHERE, id, zero).await.unwrap_err(),
            id,
            state,
            action_ok,
        );
        invalid(
            w.resume_buy(NOWHERE, id, Payment::Devnet)
                .await
                .unwrap_err(),
            id,
            state,
            Action::ResumeBuy,
        );
        if state == LocalState::Expired {
            invalid(
                w.redeem(NOWHERE, NOWHERE, id).await.unwrap_err(),
                id,
                state,
                Action::Redeem,
            );
        }
    }
    // A redeemed voucher with its credit recorded cannot be redeemed again.
    let redeemed = w
        .vouchers()
        .await
        .unwrap()
        .into_iter()
        .find(|v| v.state == LocalState::Redeemed)
        .unwrap();
    sqlx::query("INSERT INTO credits (voucher_id, operator_id, credited, receipt, at) VALUES (?, 'op', 1, '{}', 0)")
        .bind(redeemed.id)
        .execute(w.pool())
        .await
        .unwrap();
    invalid(
        w.redeem(NOWHERE, NOWHERE, redeemed.id).await.unwrap_err(),
        redeemed.id,
        LocalState::Redeemed,
        Action::Redeem,
    );
    // The database itself refuses states that do not exist.
    assert!(
        sqlx::query("UPDATE vouchers SET state = 'live' WHERE id = ?")
            .bind(bought)
            .execute(w.pool())
            .await
            .is_err()
    );
    // Only a purchase still in Buying can be abandoned; its index stays spent.
    invalid(
        w.abandon_buy(bought).await.unwrap_err(),
        bought,
        LocalState::Bought,
        Action::AbandonBuy,
    );
    let stuck = start_purchase(&w).await;
    let next = w.next_index().await.unwrap();
    assert_eq!(
        w.abandon_buy(stuck).await.unwrap().state,
        LocalState::Buying
    );
    assert!(matches!(
        w.voucher(stuck).await.unwrap_err(),
        WalletError::NotFound(_)
    ));
    assert_eq!(w.next_index().await.unwrap(), next);
    // Nothing moved the two first vouchers.
    assert_eq!(w.voucher(buying).await.unwrap().state, LocalState::Buying);
    assert_eq!(w.voucher(bought).await.unwrap().state, LocalState::Bought);
}

#[tokio::test]
async fn current_key_is_the_registered_one_for_this_period() {
    let p = params_now();
    let good = chosen_key(&p).info;
    let period = good.period;
    // Only keys of other periods / issuers / denominations: none usable.
    let mut old = good.clone();
    old.period = period + 1;
    let mut other_issuer = good.clone();
    other_issuer.issuer_id = "other".into();
    let e = current_key(&p, "iss", 10, vec![old.clone(), other_issuer])
        .err()
        .unwrap();
    assert!(matches!(e, WalletError::NoIssuerKey { .. }), "{e}");
    assert!(current_key(&p, "iss", 10, vec![old, good.clone()]).is_ok());
    // A key whose id is not its hash.
    let mut lying = good.clone();
    lying.key_id = "00".repeat(32);
    assert!(matches!(
        current_key(&p, "iss", 10, vec![lying]).err().unwrap(),
        WalletError::Verification(_)
    ));
    // Two keys for one period: refused rather than picking one.
    assert!(matches!(
        current_key(&p, "iss", 10, vec![good.clone(), good])
            .err()
            .unwrap(),
        WalletError::Verification(_)
    ));
}

/// The flows can run on any executor thread (e.g. inside a spawned task or a server).
#[allow(dead_code, clippy::let_underscore_future)]
fn wallet_and_its_futures_are_send(w: &Wallet) {
    fn send<T: Send>(_: T) {}
    fn sync<T: Send + Sync>(_: &T) {}
    sync(w);
    send(Wallet::create(Path::new(""), ""));
    send(Wallet::restore(Path::new(""), "", ""));
    send(Wallet::open(Path::new(""), ""));
    send(w.buy("", "", 1, Payment::Devnet));
    send(w.resume_buy("", 1, Payment::Devnet));
    send(w.publish("", 1, Duration::ZERO));
    send(w.redeem("", "", 1));
    send(w.redeem_with("", "", 1, &crate::RedeemOptions::default(), &|_| {}));
    send(w.paths(1));
    send(w.refresh(""));
    send(w.recover("", 1, &|_| {}));
    send(w.balance());
}

/// A file written before the wallet used sqlx's migrator (all steps applied, only the
/// `schema` counter says so) opens without running any step again, and its steps are then
/// recorded with their checksums.
#[tokio::test]
async fn a_file_from_before_sqlx_migrations_is_adopted() {
    let dir = tempfile::tempdir().unwrap();
    let path = wallet_path(&dir);
    let (w, _) = Wallet::create_with(&path, PASS, fast()).await.unwrap();
    let id = start_purchase(&w).await;
    complete_purchase(&w, id).await;
    sqlx::query("DROP TABLE _sqlx_migrations")
        .execute(w.pool())
        .await
        .unwrap();
    w.close().await;

    let w = Wallet::open(&path, PASS).await.unwrap();
    let steps: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT version, checksum FROM _sqlx_migrations ORDER BY version")
            .fetch_all(w.pool())
            .await
            .unwrap();
    assert_eq!(
        steps.iter().map(|s| s.0).collect::<Vec<_>>(),
        (2..=db::SCHEMA_VERSION).collect::<Vec<_>>()
    );
    assert!(steps.iter().all(|s| s.1.len() == 48));
    assert_eq!(
        w.vouchers().await.unwrap().len(),
        1,
        "the voucher is still there"
    );
}

/// The publish delay is the library's policy: an absurd bound is refused before anything
/// happens (it used to overflow in the CLI), and the voucher stays bought.
#[tokio::test]
async fn an_absurd_publish_delay_is_refused_before_anything_happens() {
    use crate::PublishDelay;
    let dir = tempfile::tempdir().unwrap();
    let (w, _) = Wallet::create_with(&wallet_path(&dir), PASS, fast())
        .await
        .unwrap();
    let bought = start_purchase(&w).await;
    complete_purchase(&w, bought).await;
    for absurd in [
        PublishDelay::UpTo(Duration::MAX),
        PublishDelay::Exactly(Duration::from_secs(u64::MAX)),
    ] {
        let e = w.publish(NOWHERE, bought, absurd).await.unwrap_err();
        assert!(matches!(e, WalletError::PublishDelay(_)), "{e}");
        assert!(e.to_string().contains("too long"), "{e}");
    }
    let mut rng = rand::rngs::mock::StepRng::new(0, 1);
    let e = w
        .publish_with_rng(NOWHERE, bought, PublishDelay::UpTo(Duration::MAX), &mut rng)
        .await
        .unwrap_err();
    assert!(matches!(e, WalletError::PublishDelay(_)), "{e}");
    assert_eq!(w.voucher(bought).await.unwrap().state, LocalState::Bought);
}

#[allow(dead_code, clippy::let_underscore_future)]
fn publishing_with_the_default_delay_is_send(w: &Wallet) {
    fn send<T: Send>(_: T) {}
    send(w.publish("", 1, crate::PublishDelay::default()));
    send(w.publish_with_rng(
        "",
        1,
        crate::PublishDelay::default(),
        &mut rand::rngs::OsRng,
    ));
}

/// What a wallet made with `seed` asks the issuer to sign first (the blinded message), how it
/// sealed the blinding state, and its recovery phrase.
async fn first_purchase_with(seed: u64) -> (String, Vec<u8>, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let (w, phrase) = Wallet::create_using(
        &wallet_path(&dir),
        PASS,
        fast(),
        std::sync::Arc::new(smpx_os::ManualClock::new(1_700_000_000)),
        std::sync::Arc::new(smpx_os::SeededEntropy::new(seed)),
    )
    .await
    .unwrap();
    let id = start_purchase(&w).await;
    let row = db::voucher(w.pool(), id).await.unwrap();
    (
        phrase,
        row.blinded_message.unwrap(),
        row.blinding_enc.unwrap(),
    )
}

#[tokio::test]
async fn the_same_seeded_entropy_gives_the_same_phrase_and_purchase_request() {
    let a = first_purchase_with(7).await;
    assert_eq!(a, first_purchase_with(7).await);
    let b = first_purchase_with(8).await;
    assert_ne!(a.0, b.0);
    assert_ne!(a.1, b.1);
    assert_ne!(a.2, b.2);
}

#[tokio::test]
async fn an_injected_clock_stamps_what_the_wallet_records() {
    let dir = tempfile::tempdir().unwrap();
    let clock = smpx_os::ManualClock::new(1_000);
    let (w, _) = Wallet::create_with(&wallet_path(&dir), PASS, fast())
        .await
        .unwrap();
    let w = w.with_clock(std::sync::Arc::new(clock.clone()));
    let id = start_purchase(&w).await;
    clock.set(123_456);
    complete_purchase(&w, id).await;
    let updated_at: i64 = sqlx::query_scalar("SELECT updated_at FROM vouchers WHERE id = ?")
        .bind(id)
        .fetch_one(w.pool())
        .await
        .unwrap();
    assert_eq!(updated_at, 123_456);
}

/// A wallet on a manual clock and seeded entropy, a few days into key period 0.
async fn wallet_at(dir: &tempfile::TempDir, seed: u64) -> (Wallet, smpx_os::ManualClock) {
    let clock = smpx_os::ManualClock::new(params_now().now);
    let (w, _) = Wallet::create_using(
        &wallet_path(dir),
        PASS,
        fast(),
        std::sync::Arc::new(clock.clone()),
        std::sync::Arc::new(smpx_os::SeededEntropy::new(seed)),
    )
    .await
    .unwrap();
    (w, clock)
}

/// A purchase schedules its publication in the default window, stored with the voucher; it
/// is not published before then, unless the caller opts out explicitly.
#[tokio::test]
async fn a_purchase_schedules_its_publication_hours_later() {
    use smpx_core::rules::publish_delay::{Schedule, DEFAULT_WINDOW};
    let dir = tempfile::tempdir().unwrap();
    let (w, clock) = wallet_at(&dir, 3).await;
    let id = start_purchase(&w).await;
    assert_eq!(w.voucher(id).await.unwrap().publish_due_at, None);
    complete_purchase(&w, id).await;
    let now = smpx_os::Clock::now(&clock);
    let due = w.voucher(id).await.unwrap().publish_due_at.unwrap();
    assert!(
        (now + DEFAULT_WINDOW.min.as_secs()..=now + DEFAULT_WINDOW.max.as_secs()).contains(&due),
        "due {due}, bought {now}"
    );

    // Not due: refused, nothing sent (NOWHERE would fail differently), still bought.
    let e = w.publish_if_due(NOWHERE, id).await.unwrap_err();
    assert!(
        matches!(e, WalletError::NotDueYet { id: i, due_at } if i == id && due_at == due),
        "{e}"
    );
    let sync = w.publish_due(NOWHERE).await.unwrap();
    assert!(
        sync.published.is_empty() && sync.failed.is_empty(),
        "{sync:?}"
    );
    assert_eq!(sync.scheduled, vec![crate::Scheduled { id, due_at: due }]);

    // A window below the floor is refused; opting out makes it due at once.
    let short = crate::PublishWindow {
        min: Duration::from_secs(1),
        max: Duration::from_secs(2),
    };
    let e = w
        .schedule_publish(id, Schedule::Window(short))
        .await
        .unwrap_err();
    assert!(matches!(e, WalletError::PublishWindow(_)), "{e}");
    let v = w.schedule_publish(id, Schedule::NoDelay).await.unwrap();
    assert_eq!(v.publish_due_at, Some(now));
    // Due now: the publish is attempted (and fails here, with nobody listening).
    let e = w.publish_if_due(NOWHERE, id).await.unwrap_err();
    assert!(matches!(e, WalletError::Service(_)), "{e}");
    assert_eq!(w.voucher(id).await.unwrap().state, LocalState::Bought);
}

/// Once the clock passes the scheduled times, a sync publishes every due voucher — not in
/// the order they were bought — and keeps the others scheduled; one failing does not stop
/// the rest.
#[tokio::test]
async fn a_sync_publishes_what_is_due_in_random_order() {
    let mut orders = Vec::new();
    for seed in 0..4 {
        let dir = tempfile::tempdir().unwrap();
        let (w, clock) = wallet_at(&dir, seed).await;
        let mut ids = Vec::new();
        for _ in 0..6 {
            let id = start_purchase(&w).await;
            complete_purchase(&w, id).await;
            ids.push(id);
        }
        // One bought later, due later than the others.
        clock.advance(13 * 3600);
        let late = start_purchase(&w).await;
        complete_purchase(&w, late).await;
        let sync = w.publish_due(NOWHERE).await.unwrap();
        // Nobody listens at NOWHERE: every due voucher was tried, in the order listed.
        let tried: Vec<i64> = sync.failed.iter().map(|f| f.id).collect();
        let mut sorted = tried.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, ids, "seed {seed}: every due voucher, once");
        assert!(sync.published.is_empty());
        assert_eq!(sync.scheduled.len(), 1);
        assert_eq!(sync.scheduled[0].id, late);
        for v in w.vouchers().await.unwrap() {
            assert_eq!(
                v.state,
                LocalState::Bought,
                "a failed publish keeps the voucher"
            );
        }
        orders.push(tried);
    }
    assert!(
        orders.iter().any(|o| o.windows(2).any(|p| p[0] > p[1])),
        "always in purchase order: {orders:?}"
    );
    assert!(
        orders.windows(2).any(|p| p[0] != p[1]),
        "the same order for every seed: {orders:?}"
    );
}

/// A voucher bought before schedules existed (no due time) is scheduled at the next sync,
/// not published at once.
#[tokio::test]
async fn an_unscheduled_voucher_is_scheduled_not_published() {
    let dir = tempfile::tempdir().unwrap();
    let (w, _) = wallet_at(&dir, 9).await;
    let id = start_purchase(&w).await;
    complete_purchase(&w, id).await;
    sqlx::query("UPDATE vouchers SET publish_due_at = NULL WHERE id = ?")
        .bind(id)
        .execute(w.pool())
        .await
        .unwrap();
    let sync = w.publish_due(NOWHERE).await.unwrap();
    assert!(sync.failed.is_empty() && sync.published.is_empty());
    assert_eq!(sync.scheduled.len(), 1);
    assert!(w.voucher(id).await.unwrap().publish_due_at.is_some());
}
