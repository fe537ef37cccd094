//! The whole v0.1 flow over real sockets: coordinator, issuer and operator as separate
//! service instances (own data directory, database and port), driven by the wallet library
//! exactly as `smpx wallet` drives it — on SQLite and on PostgreSQL.

use smpx_cli::devnet::{Databases, Devnet, DevnetOptions};
use smpx_core::api::*;
use smpx_core::ledger::Totals;
use smpx_core::ErrorCode;
use smpx_http::ApiClient;
use smpx_testkit::{both, db as scratch, Backend};
use smpx_wallet::{LocalState, RedeemOptions, Wallet, WalletError};
use std::time::Duration;

/// Where the tests keep the devnet ceremony between runs (shared with the coordinator's tests).
fn cache_home() -> std::path::PathBuf {
    std::env::temp_dir().join("smpx-test-cache")
}

/// Buys a devnet-paid voucher of `denomination` and publishes it at once: its id.
async fn devnet_voucher(wallet: &Wallet, net: &Devnet, denomination: u64) -> i64 {
    let c = &net.coordinator_url;
    let v = wallet
        .buy(c, &net.issuer_url, denomination, Payment::Devnet)
        .await
        .unwrap();
    wallet.publish(c, v.id, Duration::ZERO).await.unwrap();
    v.id
}

async fn devnet(which: Backend, dir: &std::path::Path) -> Devnet {
    let mut opts = DevnetOptions::new(dir);
    // A small circuit: these tests are about the flow, not the MMR's size.
    opts.params = Some(smpx_core::NetworkParams {
        mmr_levels: 3,
        ..DevnetOptions::default_params()
    });
    opts.ceremony_cache = cache_home().join("smpx");
    opts.progress = false;
    if which == Backend::Postgres {
        opts.databases = Databases {
            coordinator: Some(scratch::postgres().await.unwrap()),
            issuer: Some(scratch::postgres().await.unwrap()),
            operator: Some(scratch::postgres().await.unwrap()),
        };
    }
    Devnet::start(opts).await.unwrap()
}

async fn replay(url: &str) -> (LedgerTotalsResponse, Totals) {
    let c = ApiClient::new(url);
    let t: LedgerTotalsResponse = c.get("/v1/ledger/totals").await.unwrap();
    let page: EntriesPage = c.get("/v1/ledger/entries").await.unwrap();
    (t, Totals::replay(&page.entries).unwrap())
}

both!(buy_publish_redeem_end_to_end);

async fn buy_publish_redeem_end_to_end(which: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let net = devnet(which, &dir.path().join("net")).await;
    let (wallet, mnemonic) = Wallet::create(&dir.path().join("w.db"), "pw")
        .await
        .unwrap();

    // Pay with a top-up code minted by the issuer's admin.
    let codes: MintCodesResponse = ApiClient::new(&net.issuer_url)
        .with_token(net.issuer_admin_token.clone())
        .post(
            "/v1/admin/topup-codes",
            &MintCodesRequest {
                denomination: 10,
                count: 2,
            },
        )
        .await
        .unwrap();
    let code = codes.codes[0].clone();
    let v = wallet
        .buy(
            &net.coordinator_url,
            &net.issuer_url,
            10,
            Payment::TopupCode { code: code.clone() },
        )
        .await
        .unwrap();
    assert_eq!(v.state, LocalState::Bought);
    let reused = wallet
        .buy(
            &net.coordinator_url,
            &net.issuer_url,
            10,
            Payment::TopupCode { code },
        )
        .await;
    assert!(
        matches!(&reused, Err(WalletError::Service(e)) if e.code() == Some(ErrorCode::PaymentRejected)),
        "{reused:?}"
    );
    // A code for another denomination does not buy a 1.
    let wrong = wallet
        .buy(
            &net.coordinator_url,
            &net.issuer_url,
            1,
            Payment::TopupCode {
                code: codes.codes[1].clone(),
            },
        )
        .await;
    assert!(
        matches!(&wrong, Err(WalletError::Service(e)) if e.code() == Some(ErrorCode::PaymentRejected))
    );

    let v = wallet
        .publish(&net.coordinator_url, v.id, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(v.state, LocalState::Published);
    let credit = redeem(&wallet, &net, v.id).await.unwrap();
    assert_eq!(credit.credited.0, 10_000_000);
    assert_eq!(credit.operator_id, smpx_cli::devnet::OPERATOR_ID);
    assert_eq!(
        wallet.voucher(v.id).await.unwrap().state,
        LocalState::Redeemed
    );

    // A second, devnet-paid voucher stays live.
    devnet_voucher(&wallet, &net, 100).await;

    let (t, replayed) = replay(&net.coordinator_url).await;
    assert!(t.conserved);
    assert_eq!(replayed, t.totals);
    assert_eq!(t.totals.published.0, 110_000_000);
    assert_eq!(t.totals.redeemed.0, 10_000_000);
    assert_eq!(t.totals.paid_to_operators.0, 6_000_000);
    assert_eq!(t.totals.live.0, 100_000_000);

    // The operator's books agree.
    let stats: serde_json::Value = ApiClient::new(&net.operator_url)
        .get("/v1/stats")
        .await
        .unwrap();
    assert_eq!(stats["earned"], 6_000_000);

    // Restoring from the phrase alone finds both vouchers. The one redeemed with a proof
    // still looks published: the coordinator cannot tell which voucher a proof redeemed.
    let restored = Wallet::restore(&dir.path().join("r.db"), "other", &mnemonic)
        .await
        .unwrap();
    let found = restored
        .recover(&net.coordinator_url, 5, &|_| {})
        .await
        .unwrap();
    let mut states: Vec<_> = found.iter().map(|v| (v.denomination, v.state)).collect();
    states.sort_by_key(|s| s.0);
    assert_eq!(
        states,
        vec![(10, LocalState::Published), (100, LocalState::Published)]
    );
    // Redeeming it again is refused by its nullifier, and nothing moves.
    let spent = found.iter().find(|v| v.denomination == 10).unwrap();
    match redeem(&restored, &net, spent.id).await {
        Err(WalletError::Service(e)) => assert_eq!(e.code(), Some(ErrorCode::AlreadyRedeemed)),
        other => panic!("expected already_redeemed, got {other:?}"),
    }
    // And the restored wallet can redeem the live one.
    let live = found.iter().find(|v| v.denomination == 100).unwrap();
    redeem(&restored, &net, live.id).await.unwrap();
    let (t, _) = replay(&net.coordinator_url).await;
    assert_eq!(t.totals.redeemed.0, 110_000_000);

    net.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devnet_restart_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let net = devnet(Backend::Sqlite, &dir.path().join("net")).await;
    let (wallet, _) = Wallet::create(&dir.path().join("w.db"), "pw")
        .await
        .unwrap();
    let v = wallet
        .buy(&net.coordinator_url, &net.issuer_url, 1, Payment::Devnet)
        .await
        .unwrap();
    net.stop().await.unwrap();
    // The voucher was bought before the restart and is published after it.
    let net = devnet(Backend::Sqlite, &dir.path().join("net")).await;
    wallet
        .publish(&net.coordinator_url, v.id, Duration::ZERO)
        .await
        .unwrap();
    redeem(&wallet, &net, v.id).await.unwrap();
    let (t, _) = replay(&net.coordinator_url).await;
    assert_eq!(t.totals.redeemed.0, 1_000_000);
    net.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuer_and_operator_publish_openapi_and_type_their_errors() {
    let dir = tempfile::tempdir().unwrap();
    let net = devnet(Backend::Sqlite, &dir.path().join("net")).await;
    for (url, path) in [
        (&net.issuer_url, "/v1/purchases"),
        (&net.operator_url, "/v1/redeem"),
    ] {
        let doc: serde_json::Value = ApiClient::new(url).get("/openapi.json").await.unwrap();
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from {url}/openapi.json"
        );
    }
    let http = reqwest::Client::new();
    for (url, path) in [
        (&net.issuer_url, "/v1/purchases"),
        (&net.operator_url, "/v1/redeem"),
    ] {
        let r = http
            .post(format!("{url}{path}"))
            .header("content-type", "application/json")
            .body(r#"{"version": 1, "unexpected": true}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400);
        let b: ErrorBody = r.json().await.unwrap();
        assert_eq!(b.error.code, ErrorCode::InvalidRequest);
    }
    // Minting codes needs the issuer's admin token.
    let anon = ApiClient::new(&net.issuer_url)
        .post::<_, MintCodesResponse>(
            "/v1/admin/topup-codes",
            &MintCodesRequest {
                denomination: 1,
                count: 1,
            },
        )
        .await;
    assert_eq!(anon.unwrap_err().code(), Some(ErrorCode::Unauthorized));
    // A purchase under a key id the issuer does not have.
    let bad = ApiClient::new(&net.issuer_url)
        .post::<_, PurchaseResponse>(
            "/v1/purchases",
            &PurchaseRequest {
                denomination: 10,
                key_id: "00".repeat(32),
                blinded_message: smpx_core::crypto::blind::BlindedMessage(vec![1; 256]),
                payment: Payment::Devnet,
            },
        )
        .await;
    assert_eq!(bad.unwrap_err().code(), Some(ErrorCode::UnknownKey));
    net.stop().await.unwrap();
}

/// The `smpx wallet` commands as a user types them, against a running devnet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wallet_commands_from_the_shell() {
    let dir = tempfile::tempdir().unwrap();
    let net = devnet(Backend::Sqlite, &dir.path().join("net")).await;
    let wallet = dir.path().join("home/.smpx/wallet.db");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_smpx"))
            .arg("wallet")
            .arg("--wallet")
            .arg(&wallet)
            .args(["--coordinator", &net.coordinator_url])
            .args(args)
            .env("SMPX_WALLET_PASSPHRASE", "correct horse")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let json = |args: &[&str]| -> serde_json::Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let (ok, out, err) = run(&a);
        assert!(ok, "smpx wallet {args:?} failed: {err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"))
    };
    let init = json(&["init"]);
    assert_eq!(
        init["mnemonic"]
            .as_str()
            .unwrap()
            .split_whitespace()
            .count(),
        24
    );
    let (ok, _, err) = run(&["init"]);
    assert!(
        !ok && err.contains("exists"),
        "init twice must refuse: {err}"
    );

    let bought = json(&[
        "buy",
        "--issuer",
        &net.issuer_url,
        "--denomination",
        "10",
        "--devnet-payment",
    ]);
    let id = bought["id"].as_i64().unwrap().to_string();
    assert_eq!(bought["state"], "bought");
    let (ok, _, err) = run(&["redeem", &id, "--operator", &net.operator_url]);
    assert!(
        !ok && err.contains("publish"),
        "redeem before publish must say why: {err}"
    );
    // The purchase scheduled its publication hours from now: publishing earlier is refused
    // (exit 1, saying when and how to opt out), and a sync has nothing due.
    let due = bought["publish_due_at"].as_u64().unwrap();
    let bought_at = smpx_os::Clock::now(&smpx_os::SystemClock);
    assert!(
        due >= bought_at + 3000 && due <= bought_at + 12 * 3600 + 60,
        "due {due}, bought about {bought_at}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_smpx"))
        .args(["wallet", "--wallet"])
        .arg(&wallet)
        .args(["--coordinator", &net.coordinator_url, "publish", &id])
        .env("SMPX_WALLET_PASSPHRASE", "correct horse")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("scheduled") && err.contains("--no-delay"),
        "{err}"
    );
    let synced = json(&["sync"]);
    assert_eq!(synced["published"], serde_json::json!([]));
    assert_eq!(synced["scheduled"][0]["due_at"], due);
    let published = json(&["publish", &id, "--no-delay"]);
    assert_eq!(published["state"], "published");
    let (ok, out, _) = run(&["sync"]);
    assert!(ok && out.contains("nothing to publish"), "{out}");
    assert_eq!(
        bought["key_published_count"], 0,
        "the first buyer under this key"
    );
    // Alone in its MMRs: listed with an anonymity set of 1, and refused below 100 unless
    // accepted (a local refusal, exit 1, with both MMRs' sets under --json).
    let list = json(&["list"]);
    assert_eq!(list[0]["anonymity"]["chosen"]["size"], 1);
    let (_, table, _) = run(&["list"]);
    assert!(table.contains("anonymity"), "{table}");
    // Without the coordinator the list still works, the set shown as unknown.
    let offline = std::process::Command::new(env!("CARGO_BIN_EXE_smpx"))
        .args(["wallet", "--wallet"])
        .arg(&wallet)
        .args(["--coordinator", "http://127.0.0.1:9", "list"])
        .env("SMPX_WALLET_PASSPHRASE", "correct horse")
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&offline.stdout);
    assert!(offline.status.success(), "{table}");
    assert!(
        table.lines().nth(1).is_some_and(|row| row.contains(" ? ")),
        "{table}"
    );
    let (ok, out, _) = run(&["--json", "redeem", &id, "--operator", &net.operator_url]);
    let refused: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(!ok);
    assert_eq!(refused["error"]["code"], "anonymity_set_too_small");
    assert_eq!(refused["error"]["details"]["threshold"], 100);
    assert_eq!(
        refused["error"]["details"]["anonymity"]["chosen"]["size"],
        1
    );
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(message.contains("--accept-anonymity 1"), "{message}");
    let credit = json(&[
        "redeem",
        &id,
        "--operator",
        &net.operator_url,
        "--accept-anonymity",
        "1",
    ]);
    assert_eq!(credit["credited"], 10_000_000);
    let list = json(&["list"]);
    assert_eq!(list[0]["state"], "redeemed");
    let balance = json(&["balance"]);
    assert_eq!(
        balance["credits"][smpx_cli::devnet::OPERATOR_ID],
        10_000_000
    );

    // Credits: issued at redemption as tokens, spent with change, listed, restored.
    let op = smpx_cli::devnet::OPERATOR_ID;
    assert_eq!(credit["issued"], 10_000_000);
    assert_eq!(balance["credit_tokens"][op], 10_000_000);
    let credits = json(&["credits", "balance"]);
    assert_eq!(credits[0]["operator_id"], op);
    assert_eq!(credits[0]["unspent"], 10_000_000);
    let spent = json(&["credits", "spend", "2.5", "--operator", &net.operator_url]);
    assert_eq!(spent["paid"], 2_500_000);
    assert_eq!(spent["balance"], 7_500_000);
    let tokens = json(&["credits", "list"]);
    let tokens = tokens.as_array().unwrap();
    assert!(tokens.iter().any(|t| t["state"] == "spent"));
    assert!(tokens.iter().any(|t| t["origin"] == "change"));
    assert!(tokens.iter().all(|t| t.get("secret").is_none()));
    let collected = json(&["credits", "collect", "--operator", &net.operator_url]);
    assert_eq!(collected["completed"], 0);
    let restored = json(&[
        "credits",
        "restore",
        "--operator",
        &net.operator_url,
        "--batch",
        "10",
        "--empty-batches",
        "1",
    ]);
    assert_eq!(restored["restored"], 0);
    assert_eq!(restored["balance"], 7_500_000);
    let (ok, out, _) = run(&["credits", "balance"]);
    assert!(ok && out.contains(op) && out.contains("7.500000"), "{out}");
    let (ok, _, err) = run(&["credits", "spend", "100", "--operator", &net.operator_url]);
    assert!(!ok && err.contains("not enough credits"), "{err}");

    // Human output too, and a clear error for bad input.
    let (ok, out, _) = run(&["list"]);
    assert!(ok && out.contains("redeemed"));
    let (ok, _, err) = run(&[
        "buy",
        "--issuer",
        &net.issuer_url,
        "--denomination",
        "7",
        "--devnet-payment",
    ]);
    assert!(!ok && err.contains("denomination"), "{err}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_smpx"))
        .args(["wallet", "--wallet"])
        .arg(&wallet)
        .arg("list")
        .env("SMPX_WALLET_PASSPHRASE", "wrong")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("passphrase"));

    // The ledger command replays the public log.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_smpx"))
        .args(["ledger", "--coordinator", &net.coordinator_url])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("holds"));
    net.stop().await.unwrap();
}

/// Expired value is released by the MMR books, and an auditor with only the public endpoints
/// recomputes the bound and finds the release conservative.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_value_is_released_conservatively_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let clock = smpx_http::ManualClock::new(smpx_core::NetworkParams::default().epoch + 3600);
    let mut opts = DevnetOptions::new(&dir.path().join("net"));
    opts.params = Some(smpx_core::NetworkParams {
        mmr_levels: 3,
        ..DevnetOptions::default_params()
    });
    opts.ceremony_cache = cache_home().join("smpx");
    opts.progress = false;
    opts.clock = std::sync::Arc::new(clock.clone());
    let net = Devnet::start(opts).await.unwrap();
    let (wallet, _) = Wallet::create(&dir.path().join("w.db"), "pw")
        .await
        .unwrap();
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(devnet_voucher(&wallet, &net, 10).await);
    }
    redeem(&wallet, &net, ids[0]).await.unwrap();
    let public = ApiClient::new(&net.coordinator_url);
    let before = smpx_cli::audit::check_release(&public).await.unwrap();
    assert_eq!((before.released, before.allowed), (0, 0));
    // Past the expiry of MMR 0 (the only one these vouchers are in).
    let p = net.coordinator.params().clone();
    clock.set(smpx_core::rotation::mmr_expires_at(&p, 0));
    let admin = ApiClient::new(&net.coordinator_url).with_token(net.admin_token.clone());
    let r: ExpireResponse = admin
        .post("/v1/admin/expire", &serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(r.released.0, 20_000_000, "the two unredeemed vouchers");
    let after = smpx_cli::audit::check_release(&public).await.unwrap();
    assert_eq!((after.released, after.allowed), (20_000_000, 20_000_000));
    assert!(after.conservative());
    let (t, replayed) = replay(&net.coordinator_url).await;
    assert_eq!(t.totals, replayed);
    assert!(t.conserved);
    assert_eq!((t.totals.released.0, t.totals.live.0), (20_000_000, 0));
    // And a redemption now is refused: the MMR's roots are retired.
    let late = redeem(&wallet, &net, ids[1]).await;
    assert!(late.is_err(), "{late:?}");
    net.stop().await.unwrap();
}

/// A redemption with the default options, accepting a devnet's tiny anonymity sets (a real
/// wallet refuses below 100).
async fn redeem(
    wallet: &Wallet,
    net: &Devnet,
    id: i64,
) -> Result<smpx_wallet::CreditRecord, WalletError> {
    let small = RedeemOptions {
        accept_anonymity: Some(1),
        ..RedeemOptions::default()
    };
    wallet
        .redeem_with(&net.coordinator_url, &net.operator_url, id, &small, &|_| {})
        .await
}
