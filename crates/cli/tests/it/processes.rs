//! Separate OS processes: several coordinator processes sharing one PostgreSQL database, and
//! a coordinator killed with SIGKILL. Safety must come from the database, not from anything
//! held in one process's memory.

use smpx_core::api::*;
use smpx_core::crypto::b64;
use smpx_core::crypto::blind::IssuerSecretKey;
use smpx_core::issuance::issue_locally;
use smpx_core::redemption::seal_v1;
use smpx_core::ErrorCode;
use smpx_http::{ApiClient, ClientError};
use smpx_testkit::process::Process;
use std::path::Path;
use std::process::Command;

/// A `smpx coordinator run` process on a port it picks; killed when dropped.
struct Proc {
    process: Process,
    url: String,
}

impl Proc {
    /// SIGKILL, then the same command again (same data directory and database).
    fn restart(&mut self) {
        self.process.restart().unwrap();
        self.url = self.process.wait_for_url("coordinator").unwrap();
    }
}

fn smpx() -> Command {
    Command::new(env!("CARGO_BIN_EXE_smpx"))
}

/// `smpx coordinator init --data-dir <dir>` and `extra`, which must succeed.
fn init_with(dir: &Path, extra: &[&std::ffi::OsStr]) {
    let out = smpx()
        .args(["coordinator", "init", "--data-dir"])
        .arg(dir)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn init(dir: &Path) {
    init_with(dir, &[]);
}

/// Starts a coordinator on a port it picks and waits until it says where it listens.
fn coordinator(dir: &Path, db_url: &str) -> Proc {
    let args: Vec<std::ffi::OsString> = vec![
        "coordinator".into(),
        "run".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--data-dir".into(),
        dir.into(),
        "--database-url".into(),
        db_url.into(),
    ];
    let mut process = Process::spawn(env!("CARGO_BIN_EXE_smpx"), args, &[]).unwrap();
    let url = process.wait_for_url("coordinator").unwrap();
    Proc { process, url }
}

/// Two coordinator processes on one data directory (prepared by `init`) and one fresh
/// PostgreSQL database, set up through the first, and the parameters they serve.
struct Pair {
    a: Proc,
    b: Proc,
    s: Setup,
    p: ParamsResponse,
    dir: tempfile::TempDir,
}

async fn two_on_postgres(init: fn(&Path)) -> Pair {
    let db = smpx_testkit::db::postgres().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    let a = coordinator(dir.path(), &db);
    let b = coordinator(dir.path(), &db);
    let s = setup(&a.url, dir.path()).await;
    let p: ParamsResponse = ApiClient::new(&a.url).get("/v1/params").await.unwrap();
    Pair { a, b, s, p, dir }
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
    let issuer_key = IssuerSecretKey::generate(2048, &mut rand::rngs::OsRng).unwrap();
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

/// How many of the racing redemptions won; every other one must be `already_redeemed`.
async fn wins_refusing_the_rest(
    tasks: Vec<tokio::task::JoinHandle<Result<serde_json::Value, ClientError>>>,
) -> usize {
    let mut wins = 0;
    for t in tasks {
        let r = t.await.unwrap();
        if r.is_ok() {
            wins += 1;
        } else {
            assert!(is_code(&r, ErrorCode::AlreadyRedeemed), "{r:?}");
        }
    }
    wins
}

fn is_code(r: &Result<impl std::fmt::Debug, ClientError>, want: ErrorCode) -> bool {
    matches!(r, Err(ClientError::Api { code, .. }) if *code == want)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redemptions_racing_across_processes_on_postgres_exactly_one_wins() {
    let Pair {
        a,
        b,
        s,
        p,
        dir: _dir,
    } = two_on_postgres(init).await;

    // Double publish across processes: one wins.
    let (secret, req) =
        issue_locally(&s.issuer_key, &s.key_id, 10, &mut rand::rngs::OsRng).unwrap();
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
        let env = seal_v1(&p.envelope_key, &secret, 10, "op-1", &mut rand::rngs::OsRng).unwrap();
        let token = s.operator_token.clone();
        tasks.push(tokio::spawn(async move {
            ApiClient::new(url)
                .with_token(token)
                .post::<_, serde_json::Value>(
                    "/v1/redemptions",
                    &ForwardRedemptionRequest {
                        version: 1,
                        envelope: Some(env),
                        zk: None,
                    },
                )
                .await
        }));
    }
    let wins = wins_refusing_the_rest(tasks).await;
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
        let (secret, req) =
            issue_locally(&s.issuer_key, &s.key_id, 10, &mut rand::rngs::OsRng).unwrap();
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
    a.restart();
    let b = a;
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
    let env = seal_v1(
        &p.envelope_key,
        &published[0].0,
        10,
        "op-1",
        &mut rand::rngs::OsRng,
    )
    .unwrap();
    let _: serde_json::Value = ApiClient::new(&b.url)
        .with_token(s.operator_token.clone())
        .post(
            "/v1/redemptions",
            &ForwardRedemptionRequest {
                version: 1,
                envelope: Some(env),
                zk: None,
            },
        )
        .await
        .unwrap();
}

/// A coordinator directory for v0.2 at a small MMR (levels 3): parameters and a finalised
/// local ceremony transcript, as an operator would place them before `coordinator run`.
fn init_v2(dir: &Path) {
    let params = smpx_core::NetworkParams {
        mmr_levels: 3,
        protocol_versions: vec![1, 2],
        ..smpx_core::NetworkParams::default()
    };
    let params_file = dir.join("params-in.json");
    std::fs::write(&params_file, serde_json::to_vec(&params).unwrap()).unwrap();
    init_with(dir, &["--params".as_ref(), params_file.as_os_str()]);
    let t = smpx_zk::ceremony::local_ceremony(3, 1, &smpx_ceremony::Silent).unwrap();
    std::fs::write(
        dir.join(smpx_coordinator::zk::TRANSCRIPT_FILE),
        t.to_bytes().unwrap(),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn zk_appends_and_nullifiers_across_processes_on_postgres() {
    use smpx_core::crypto::{nullifier, FieldBytes};
    use smpx_core::mmr::{Mmr, MmrParams};
    use smpx_core::receipt::{Signed, CHECKPOINT_DOMAIN, PUBLISH_DOMAIN};

    let Pair { a, b, s, p, dir } = two_on_postgres(init_v2).await;
    assert!(
        p.params.protocol_versions.contains(&2),
        "the transcript verified"
    );

    // Publishes alternate between the processes: one MMR, gapless, whichever process appends.
    let mut vouchers = Vec::new();
    let mut id = 0;
    for i in 0..6u64 {
        let url = if i % 2 == 0 { &a.url } else { &b.url };
        let (secret, req) =
            issue_locally(&s.issuer_key, &s.key_id, 10, &mut rand::rngs::OsRng).unwrap();
        let r: Signed<PublishReceipt> = ApiClient::new(url)
            .post("/v1/vouchers", &req)
            .await
            .unwrap();
        r.verify(PUBLISH_DOMAIN, &p.receipt_key).unwrap();
        assert_eq!(r.body.paths[0].leaf_index, i);
        id = r.body.paths[0].mmr.id;
        vouchers.push(secret);
    }
    let cp: Signed<Checkpoint> = ApiClient::new(&a.url)
        .get(&format!("/v1/mmrs/{id}/checkpoint"))
        .await
        .unwrap();
    cp.verify(CHECKPOINT_DOMAIN, &p.receipt_key).unwrap();
    let page: LeavesPage = ApiClient::new(&b.url)
        .get(&format!("/v1/mmrs/{id}/leaves"))
        .await
        .unwrap();
    let mmr = Mmr::from_leaves(
        MmrParams::new(id, 3).unwrap(),
        page.leaves.iter().map(|l| l.to_fr().unwrap()),
    )
    .unwrap();
    assert_eq!(
        (cp.body.size, FieldBytes::from_fr(&mmr.root())),
        (6, cp.body.root)
    );

    // Twelve proofs for one voucher (one nullifier), distinct requests, half to each process.
    let (pk, _) = {
        let t = smpx_ceremony::Transcript::from_bytes(
            &std::fs::read(dir.path().join(smpx_coordinator::zk::TRANSCRIPT_FILE)).unwrap(),
        )
        .unwrap();
        smpx_zk::ceremony::verified_keys(3, &t, &smpx_ceremony::Silent).unwrap()
    };
    let secret = &vouchers[3];
    let public = smpx_zk::RedeemPublic {
        root: mmr.root(),
        nullifier: nullifier(secret).0.to_fr().unwrap(),
        denomination: 10,
        binding: smpx_zk::binding_hash("op-1", 0),
    };
    let witness = smpx_zk::RedeemWitness {
        secret: secret.clone(),
        path: mmr.proof(3).unwrap().circuit_path().unwrap(),
    };
    let mut tasks = Vec::new();
    for i in 0..12 {
        let proof = smpx_zk::prove(&pk, &public, &witness, &mut rand::rngs::OsRng).unwrap();
        let zk = ZkRedemption {
            mmr_id: id,
            root: cp.body.root,
            nullifier: nullifier(secret).0,
            denomination: 10,
            fee: smpx_core::Amount::ZERO,
            proof: proof.to_bytes().to_vec(),
        };
        let url = if i % 2 == 0 {
            a.url.clone()
        } else {
            b.url.clone()
        };
        let token = s.operator_token.clone();
        tasks.push(tokio::spawn(async move {
            ApiClient::new(url)
                .with_token(token)
                .post::<_, serde_json::Value>(
                    "/v1/redemptions",
                    &ForwardRedemptionRequest {
                        version: 2,
                        envelope: None,
                        zk: Some(zk),
                    },
                )
                .await
        }));
    }
    let wins = wins_refusing_the_rest(tasks).await;
    assert_eq!(wins, 1, "exactly one redemption of the nullifier wins");
    // The same voucher under v0.1 through the other process: refused too.
    let env = seal_v1(&p.envelope_key, secret, 10, "op-1", &mut rand::rngs::OsRng).unwrap();
    let v1 = ApiClient::new(&b.url)
        .with_token(s.operator_token.clone())
        .post::<_, serde_json::Value>(
            "/v1/redemptions",
            &ForwardRedemptionRequest {
                version: 1,
                envelope: Some(env),
                zk: None,
            },
        )
        .await;
    assert!(is_code(&v1, ErrorCode::AlreadyRedeemed), "{v1:?}");
    for url in [&a.url, &b.url] {
        let t: LedgerTotalsResponse = ApiClient::new(url).get("/v1/ledger/totals").await.unwrap();
        assert_eq!(
            (t.totals.redeemed.0, t.unredeemed_value.0),
            (10_000_000, 50_000_000)
        );
        assert!(t.conserved);
    }
}
