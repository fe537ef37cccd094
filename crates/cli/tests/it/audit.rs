//! `smpx audit` against the test network's coordinator, trusting one directory key: a
//! redemption cleared with the administrator's number is reported as such, one cleared
//! with a posted statement is checked against it, and the audit passes. (Each way a
//! clearing can be wrong is the rule's unit tests, `smpx_core::rules::share_audit`: the
//! coordinator refuses such statements at `POST` already.)

use smpx_coordinator::StatementTaken;
use smpx_core::api::{ParamsResponse, TrustedDirectoriesResponse};
use smpx_core::crypto::sign::SigningKey;
use smpx_core::directory::{period_start, statement_digest, ShareStatement, SHARE_PERIOD_SECS};
use smpx_core::rules::share_audit::{Finding, ShareReport};
use smpx_core::rules::trust::Evaluation;
use smpx_http::{ApiClient, ManualClock};
use smpx_testkit::net::{Network, Options, Service, OPERATOR_ID};
use smpx_testkit::Backend;
use smpx_wallet::{Payment, Protocol, RedeemOptions, Wallet};
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

async fn smpx_audit(coordinator: &str, json: bool) -> Output {
    let mut args = vec![
        "audit".to_owned(),
        "--coordinator".to_owned(),
        coordinator.to_owned(),
    ];
    if json {
        args.push("--json".to_owned());
    }
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_smpx"))
            .args(&args)
            .env_remove("SMPX_COORDINATOR")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

/// Buys, publishes and redeems (v0.1) one voucher at the network's operator.
async fn redeem_one(wallet: &Wallet, net: &Network) {
    let c = &net.coordinator_url;
    let v = wallet
        .buy(c, &net.issuer_url, 10, Payment::Devnet)
        .await
        .unwrap();
    wallet.publish(c, v.id, Duration::ZERO).await.unwrap();
    let v1 = RedeemOptions {
        protocol: Protocol::V1,
        ..RedeemOptions::default()
    };
    wallet
        .redeem_with(c, &net.operator_url, v.id, &v1, &|_| {})
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_rederives_each_share_from_its_statement() {
    let mut opts = Options::new(Backend::Sqlite);
    // Noon of a share period: the statement below holds for every redemption of the test.
    let noon = period_start(opts.params.epoch + SHARE_PERIOD_SECS) + SHARE_PERIOD_SECS / 2;
    let clock = ManualClock::new(noon);
    opts.clock = Arc::new(clock);
    let mut net = Network::start_with(opts).await.unwrap();
    let directory = SigningKey::from_bytes(&[51; 32]);
    std::fs::write(
        net.home(Service::Coordinator)
            .join(smpx_coordinator::CONFIG_FILE),
        serde_json::to_vec(&serde_json::json!({
            "trusted_directories": [directory.verifying_key().to_hex()]
        }))
        .unwrap(),
    )
    .unwrap();
    net.restart(Service::Coordinator).await.unwrap();
    let public = ApiClient::new(&net.coordinator_url);
    let trusted: TrustedDirectoriesResponse = public.get("/v1/trusted-directories").await.unwrap();
    assert_eq!(trusted.keys, [directory.verifying_key()]);

    let dir = tempfile::tempdir().unwrap();
    let (wallet, _) = Wallet::create(&dir.path().join("w.db"), "pw")
        .await
        .unwrap();
    // No statement yet: the administrator's number.
    redeem_one(&wallet, &net).await;

    // A verified operator a year on, up half the time: 7000 × 0.5 = 3500 under the 6000 cap.
    let p: ParamsResponse = public.get("/v1/params").await.unwrap();
    let evaluation = Evaluation {
        verified_identity: true,
        time_on_network_secs: 365 * 86_400,
        relay_uptimes: vec![0.5],
        probation_uptimes: Vec::new(),
    };
    let cap = p.params.max_operator_share_bps;
    let signed = ShareStatement::new("test-directory", OPERATOR_ID, evaluation, cap, p.now)
        .sign(&directory)
        .unwrap();
    let taken: StatementTaken = public.post("/v1/share-statements", &signed).await.unwrap();
    assert_eq!(
        (taken.digest, taken.share_bps),
        (statement_digest(&signed), 3500)
    );
    redeem_one(&wallet, &net).await;
    redeem_one(&wallet, &net).await;

    let out = smpx_audit(&net.coordinator_url, true).await;
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let shares: ShareReport = serde_json::from_value(v["shares"].clone()).unwrap();
    assert_eq!(
        shares,
        ShareReport {
            checked_against_statements: 2,
            cleared_by_administrator: 1,
            ..ShareReport::default()
        }
    );
    assert_eq!(v["ledger"]["conservation_holds"], true);

    let out = smpx_audit(&net.coordinator_url, false).await;
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("redemptions checked against statements    2 (0 lowered"),
        "{text}"
    );
    assert!(
        text.contains("cleared by an administrator's number      1"),
        "{text}"
    );
    assert!(!text.contains("finding"), "{text}");

    // A coordinator that paid the last redemption more than its statement gives (the legs
    // rewritten consistently, so the totals still replay): found, and the audit fails.
    let entries = smpx_cli::audit::ledger_entries(&public).await.unwrap();
    let last = entries.last().unwrap();
    let note = last.redemption.clone().unwrap();
    let (to_operator, to_fund) = smpx_core::ledger::redemption_split(note.value, 3600);
    let db = smpx_store::Db::connect(net.database_url(Service::Coordinator))
        .await
        .unwrap();
    sqlx::query(
        "UPDATE ledger SET share_bps = 3600,
             amount = CASE WHEN to_account = 'network_fund' THEN $1 ELSE $2 END
         WHERE seq >= $3",
    )
    .bind(to_fund.0 as i64)
    .bind(to_operator.0 as i64)
    .bind(last.seq as i64 - 1)
    .execute(db.pool())
    .await
    .unwrap();
    let out = smpx_audit(&net.coordinator_url, true).await;
    assert_eq!(out.status.code(), Some(1));
    let report = serde_json::Deserializer::from_slice(&out.stdout)
        .into_iter::<serde_json::Value>()
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(report["ledger"]["conservation_holds"], true);
    let shares: ShareReport = serde_json::from_value(report["shares"].clone()).unwrap();
    assert_eq!(
        shares.findings,
        [Finding::AboveStatement {
            seq: last.seq - 1,
            digest: statement_digest(&signed),
            share_bps: 3600,
            allowed_bps: 3500
        }]
    );
    let out = smpx_audit(&net.coordinator_url, false).await;
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "finding: entry {}: cleared at 3600 bps",
            last.seq - 1
        )),
        "{text}"
    );
    net.stop().await.unwrap();
}
