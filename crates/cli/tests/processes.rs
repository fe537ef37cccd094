//! Separate OS processes: several coordinator processes sharing one PostgreSQL database, and
//! a coordinator killed with SIGKILL. Safety must come from the database, not from anything
//! held in one process's memory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use smpx_core::api::*;
use smpx_core::crypto::b64;
use smpx_core::crypto::blind::IssuerSecretKey;
use smpx_core::issuance::issue_locally;
use smpx_core::redemption::seal_v1;
use smpx_core::ErrorCode;
use smpx_http::{ApiClient, ClientError};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A `smpx coordinator run` process; killed when dropped.
struct Proc {
    child: Child,
    url: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn smpx() -> Command {
    Command::new(env!("CARGO_BIN_EXE_smpx"))
}

fn init(dir: &Path) {
    let out = smpx()
        .args(["coordinator", "init", "--data-dir"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts a coordinator on a free port and waits until it says where it listens.
fn coordinator(dir: &Path, db_url: &str) -> Proc {
    let mut child = smpx()
        .args([
            "coordinator",
            "run",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir)
        .args(["--database-url", db_url])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("coordinator exited before listening")
            .unwrap();
        if let Some(url) = line.strip_prefix("coordinator listening on ") {
            break url.trim().to_owned();
        }
    };
    // Keep draining stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Proc { child, url }
}

struct Setup {
    issuer_key: IssuerSecretKey,
    key_id: String,
    operator_token: String,
}

async fn setup(url: &str, dir: &Path) -> Setup {
    let token = std::fs::read_to_string(dir.join("admin-token")).unwrap();
    let admin = ApiClient::new(url).with_token(token.trim());
    let iss: CredentialResponse = admin
        .post(
            "/v1/admin/issuers",
            &AddIssuerRequest {
                id: "iss".into(),
                limit_credits: 1000,
            },
        )
        .await
        .unwrap();
    let op: CredentialResponse = admin
        .post(
            "/v1/admin/operators",
            &AddOperatorRequest {
                id: "op-1".into(),
                share_bps: 5000,
            },
        )
        .await
        .unwrap();
    let issuer_key = IssuerSecretKey::generate(2048).unwrap();
    let p: ParamsResponse = ApiClient::new(url).get("/v1/params").await.unwrap();
    let period = smpx_core::keys::period_at(&p.params, p.now);
    let info: IssuerKeyInfo = ApiClient::new(url)
        .with_token(iss.token)
        .post(
            "/v1/issuer-keys",
            &RegisterKeyRequest {
                denomination: 10,
                period,
                public_key: b64::encode(&issuer_key.public_key().unwrap().to_spki().unwrap()),
            },
        )
        .await
        .unwrap();
    Setup {
        issuer_key,
        key_id: info.key_id,
        operator_token: op.token,
    }
}

fn is_code(r: &Result<impl std::fmt::Debug, ClientError>, want: ErrorCode) -> bool {
    matches!(r, Err(ClientError::Api { code, .. }) if *code == want)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redemptions_racing_across_processes_on_postgres_exactly_one_wins() {
    let db = smpx_store::scratch::postgres().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    let a = coordinator(dir.path(), &db);
    let b = coordinator(dir.path(), &db);
    let s = setup(&a.url, dir.path()).await;
    let p: ParamsResponse = ApiClient::new(&a.url).get("/v1/params").await.unwrap();

    // Double publish across processes: one wins.
    let (secret, req) = issue_locally(&s.issuer_key, &s.key_id, 10).unwrap();
    let (ca, cb) = (ApiClient::new(&a.url), ApiClient::new(&b.url));
    let (ra, rb) = tokio::join!(
        ca.post::<_, serde_json::Value>("/v1/vouchers", &req),
        cb.post::<_, serde_json::Value>("/v1/vouchers", &req),
    );
    assert_eq!(
        [&ra, &rb].iter().filter(|r| r.is_ok()).count(),
        1,
        "exactly one publish wins: {ra:?} {rb:?}"
    );
    assert!(is_code(&ra, ErrorCode::AlreadyPublished) || is_code(&rb, ErrorCode::AlreadyPublished));

    // Twenty redemptions of that voucher, distinct envelopes, half through each process.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let url = if i % 2 == 0 {
            a.url.clone()
        } else {
            b.url.clone()
        };
        let env = seal_v1(&p.envelope_key, &secret, 10, "op-1").unwrap();
        let token = s.operator_token.clone();
        tasks.push(tokio::spawn(async move {
            ApiClient::new(url)
                .with_token(token)
                .post::<_, serde_json::Value>(
                    "/v1/redemptions",
                    &ForwardRedemptionRequest {
                        version: 1,
                        envelope: env,
                    },
                )
                .await
        }));
    }
    let mut wins = 0;
    for t in tasks {
        let r = t.await.unwrap();
        if r.is_ok() {
            wins += 1;
        } else {
            assert!(is_code(&r, ErrorCode::AlreadyRedeemed), "{r:?}");
        }
    }
    assert_eq!(wins, 1, "exactly one redemption wins");
    for url in [&a.url, &b.url] {
        let t: LedgerTotalsResponse = ApiClient::new(url).get("/v1/ledger/totals").await.unwrap();
        assert_eq!(
            t.totals.redeemed.0, 10_000_000,
            "paid once, seen the same by both"
        );
        assert!(t.conserved);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_after_acknowledgement_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    let db = format!("sqlite://{}", dir.path().join("coordinator.db").display());
    let mut a = coordinator(dir.path(), &db);
    let s = setup(&a.url, dir.path()).await;
    let mut published = Vec::new();
    for _ in 0..5 {
        let (secret, req) = issue_locally(&s.issuer_key, &s.key_id, 10).unwrap();
        let _: serde_json::Value = ApiClient::new(&a.url)
            .post("/v1/vouchers", &req)
            .await
            .unwrap();
        published.push((secret, req.commitment));
    }
    let before: LedgerTotalsResponse = ApiClient::new(&a.url)
        .get("/v1/ledger/totals")
        .await
        .unwrap();
    // SIGKILL: no graceful shutdown, no chance to flush anything.
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let b = coordinator(dir.path(), &db);
    let after: LedgerTotalsResponse = ApiClient::new(&b.url)
        .get("/v1/ledger/totals")
        .await
        .unwrap();
    assert_eq!(before, after);
    for (_, c) in &published {
        let v: VoucherStatus = ApiClient::new(&b.url)
            .get(&format!("/v1/vouchers/{}", c.0.to_hex()))
            .await
            .unwrap();
        assert_eq!(v.state, VoucherState::Live);
    }
    // And it serves: the first voucher redeems.
    let p: ParamsResponse = ApiClient::new(&b.url).get("/v1/params").await.unwrap();
    let env = seal_v1(&p.envelope_key, &published[0].0, 10, "op-1").unwrap();
    let _: serde_json::Value = ApiClient::new(&b.url)
        .with_token(s.operator_token.clone())
        .post(
            "/v1/redemptions",
            &ForwardRedemptionRequest {
                version: 1,
                envelope: env,
            },
        )
        .await
        .unwrap();
}
