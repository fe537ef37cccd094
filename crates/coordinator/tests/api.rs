//! The coordinator over real HTTP: every refusal the v0.1 issue lists gets its typed error,
//! nothing is half-written, and the service keeps serving. Flows that touch money run on
//! SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use rand::RngCore;
use smpx_coordinator::{Coordinator, CoordinatorHome};
use smpx_core::api::*;
use smpx_core::crypto::b64;
use smpx_core::crypto::blind::{IssuerPublicKey, IssuerSecretKey};
use smpx_core::crypto::envelope::Envelope;
use smpx_core::crypto::voucher::VoucherSecret;
use smpx_core::issuance::voucher_message;
use smpx_core::ledger::Totals;
use smpx_core::receipt::{Signed, PUBLISH_DOMAIN, REDEMPTION_DOMAIN};
use smpx_core::redemption::seal_v1;
use smpx_core::{ErrorCode, NetworkParams, DAY};
use smpx_http::{ApiClient, ClientError, ManualClock};
use smpx_store::coordinator::CoordinatorStore;
use smpx_store::scratch::{self, Which};
use smpx_store::Db;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::oneshot;

fn rsa_key(slot: usize) -> IssuerSecretKey {
    static KEYS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    let ders = KEYS.get_or_init(|| {
        (0..2)
            .map(|_| IssuerSecretKey::generate(2048).unwrap().to_der().unwrap())
            .collect()
    });
    IssuerSecretKey::from_der(&ders[slot]).unwrap()
}

struct Net {
    url: String,
    clock: ManualClock,
    params: NetworkParams,
    admin: ApiClient,
    issuer: ApiClient,
    op1: ApiClient,
    op2: ApiClient,
    key: IssuerSecretKey,
    key_id: String,
    op1_token: String,
    db_url: String,
    dir: tempfile::TempDir,
    _db_guard: Option<tempfile::TempDir>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

async fn serve(
    dir: &std::path::Path,
    db_url: &str,
    clock: &ManualClock,
    params: &NetworkParams,
) -> (
    String,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let home = CoordinatorHome::open(dir, Some(params.clone())).unwrap();
    let store = CoordinatorStore::open(Db::connect(db_url).await.unwrap())
        .await
        .unwrap();
    let state = Coordinator::new(store, home, Arc::new(clock.clone()));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(smpx_coordinator::run(
        state,
        l,
        Duration::from_secs(3600),
        async {
            let _ = rx.await;
        },
    ));
    (url, tx, task)
}

impl Net {
    async fn start(which: Which) -> Net {
        let params = NetworkParams {
            voucher_expiry_secs: 10 * DAY,
            ..NetworkParams::default()
        };
        let clock = ManualClock::new(params.epoch + 3600);
        let dir = tempfile::tempdir().unwrap();
        let (db_url, guard) = scratch::database(which).await.unwrap();
        let (url, stop, task) = serve(dir.path(), &db_url, &clock, &params).await;
        let token = std::fs::read_to_string(dir.path().join("admin-token")).unwrap();
        let admin = ApiClient::new(&url).with_token(token);
        let cred: CredentialResponse = admin
            .post(
                "/v1/admin/issuers",
                &AddIssuerRequest {
                    id: "iss".into(),
                    limit_credits: 25,
                },
            )
            .await
            .unwrap();
        let issuer = ApiClient::new(&url).with_token(cred.token);
        let mut ops = Vec::new();
        let mut tokens = Vec::new();
        for (id, share) in [("op-1", 6000), ("op-2", 7000)] {
            let c: CredentialResponse = admin
                .post(
                    "/v1/admin/operators",
                    &AddOperatorRequest {
                        id: id.into(),
                        share_bps: share,
                    },
                )
                .await
                .unwrap();
            ops.push(ApiClient::new(&url).with_token(c.token.clone()));
            tokens.push(c.token);
        }
        let key = rsa_key(0);
        let info: IssuerKeyInfo = issuer
            .post(
                "/v1/issuer-keys",
                &RegisterKeyRequest {
                    denomination: 10,
                    period: 0,
                    public_key: b64::encode(&key.public_key().unwrap().to_spki().unwrap()),
                },
            )
            .await
            .unwrap();
        let op2 = ops.pop().unwrap();
        let op1 = ops.pop().unwrap();
        Net {
            url,
            clock,
            params,
            admin,
            issuer,
            op1,
            op2,
            key,
            key_id: info.key_id,
            op1_token: tokens[0].clone(),
            db_url,
            dir,
            _db_guard: guard,
            stop: Some(stop),
            task: Some(task),
        }
    }

    fn public(&self) -> ApiClient {
        ApiClient::new(&self.url)
    }

    /// A voucher signed by the issuer key (the wallet's and the issuer's work, in-process).
    fn voucher(&self, denomination: u64) -> (VoucherSecret, PublishRequest) {
        smpx_core::issuance::issue_locally(&self.key, &self.key_id, denomination).unwrap()
    }

    async fn publish(&self, req: &PublishRequest) -> Result<Signed<PublishReceipt>, ClientError> {
        self.public().post("/v1/vouchers", req).await
    }

    async fn redeem(
        &self,
        via: &ApiClient,
        env: &Envelope,
    ) -> Result<Signed<RedemptionReceipt>, ClientError> {
        via.post(
            "/v1/redemptions",
            &ForwardRedemptionRequest {
                version: 1,
                envelope: env.clone(),
            },
        )
        .await
    }

    async fn params(&self) -> ParamsResponse {
        self.public().get("/v1/params").await.unwrap()
    }

    async fn totals(&self) -> LedgerTotalsResponse {
        let t: LedgerTotalsResponse = self.public().get("/v1/ledger/totals").await.unwrap();
        let page: EntriesPage = self.public().get("/v1/ledger/entries").await.unwrap();
        assert_eq!(
            Totals::replay(&page.entries).unwrap(),
            t.totals,
            "public log replays to the totals"
        );
        assert!(t.conserved);
        t
    }

    async fn restart(&mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap();
        let (url, stop, task) =
            serve(self.dir.path(), &self.db_url, &self.clock, &self.params).await;
        self.url = url.clone();
        self.stop = Some(stop);
        self.task = Some(task);
        // Re-point the clients at the new port; tokens stay valid (stored hashed).
        let tok = std::fs::read_to_string(self.dir.path().join("admin-token")).unwrap();
        self.admin = ApiClient::new(&url).with_token(tok);
    }
}

fn code(r: Result<impl std::fmt::Debug, ClientError>) -> (ErrorCode, u16) {
    match r {
        Err(ClientError::Api { code, status, .. }) => (code, status),
        other => panic!("expected a typed error, got {other:?}"),
    }
}

macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod sqlite { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::Which::Sqlite).await } )* }
        mod postgres { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::Which::Postgres).await } )* }
    };
}

both!(
    publish_and_redeem_with_receipts,
    bad_publications_are_refused,
    limit_and_whitelist,
    redemption_refusals,
    expiry_and_release,
    restart_loses_nothing,
);

async fn publish_and_redeem_with_receipts(which: Which) {
    let net = Net::start(which).await;
    let p = net.params().await;
    let (s, req) = net.voucher(10);
    let receipt = net.publish(&req).await.unwrap();
    receipt.verify(PUBLISH_DOMAIN, &p.receipt_key).unwrap();
    assert_eq!(receipt.body.commitment, req.commitment);
    assert_eq!(
        receipt.body.expires_at,
        receipt.body.published_at + 10 * DAY
    );
    let status: VoucherStatus = net
        .public()
        .get(&format!("/v1/vouchers/{}", req.commitment.0.to_hex()))
        .await
        .unwrap();
    assert_eq!(status.state, VoucherState::Live);

    let env = seal_v1(&p.envelope_key, &s, 10, "op-1").unwrap();
    let r = net.redeem(&net.op1, &env).await.unwrap();
    r.verify(REDEMPTION_DOMAIN, &p.receipt_key).unwrap();
    assert_eq!(r.body.operator_amount.0, 6_000_000);
    assert_eq!(r.body.fund_amount.0, 4_000_000);
    // A retry of the identical envelope (a lost answer) gets the same receipt, pays nothing.
    let again = net.redeem(&net.op1, &env).await.unwrap();
    assert_eq!(again, r);
    let t = net.totals().await;
    assert_eq!(
        (t.totals.published.0, t.totals.redeemed.0, t.totals.live.0),
        (10_000_000, 10_000_000, 0)
    );
    let ops: Vec<OperatorInfo> = net.public().get("/v1/operators").await.unwrap();
    assert_eq!(
        ops.iter().find(|o| o.id == "op-1").unwrap().earned.0,
        6_000_000
    );
}

async fn bad_publications_are_refused(which: Which) {
    let net = Net::start(which).await;
    let (_, req) = net.voucher(10);

    // Signature by another key, claiming the registered key's id.
    let other = rsa_key(1);
    let pk = other.public_key().unwrap();
    let msg = voucher_message(&req.commitment);
    let (b, st) = pk.blind(&msg).unwrap();
    let forged_sig = pk
        .finalize(&other.blind_sign(&b).unwrap(), &st, &msg)
        .unwrap();
    let forged = PublishRequest {
        signature: forged_sig,
        ..req.clone()
    };
    assert_eq!(
        code(net.publish(&forged).await),
        (ErrorCode::BadSignature, 400)
    );

    // A valid signature over a different commitment.
    let (_, other_req) = net.voucher(10);
    let swapped = PublishRequest {
        signature: other_req.signature.clone(),
        ..req.clone()
    };
    assert_eq!(
        code(net.publish(&swapped).await),
        (ErrorCode::BadSignature, 400)
    );

    // Random bytes as the signature.
    let mut junk = req.clone();
    rand::thread_rng().fill_bytes(&mut junk.signature.signature);
    assert_eq!(
        code(net.publish(&junk).await),
        (ErrorCode::BadSignature, 400)
    );

    // Unknown key id; a key of another denomination; an unsupported denomination.
    let unknown = PublishRequest {
        key_id: "ab".repeat(32),
        ..req.clone()
    };
    assert_eq!(
        code(net.publish(&unknown).await),
        (ErrorCode::UnknownKey, 404)
    );
    let wrong_denom = PublishRequest {
        denomination: 100,
        ..req.clone()
    };
    assert_eq!(
        code(net.publish(&wrong_denom).await).0,
        ErrorCode::InvalidRequest
    );
    let odd = PublishRequest {
        denomination: 7,
        ..req.clone()
    };
    assert_eq!(
        code(net.publish(&odd).await),
        (ErrorCode::UnsupportedDenomination, 400)
    );

    // Nothing was recorded by any of those; the real one still publishes, once.
    assert_eq!(net.totals().await.entries, 0);
    net.publish(&req).await.unwrap();
    assert_eq!(
        code(net.publish(&req).await),
        (ErrorCode::AlreadyPublished, 409)
    );

    // Past the key's publish deadline (period start + 2M).
    let (_, late) = net.voucher(10);
    net.clock
        .set(net.params.epoch + net.params.publish_window_secs);
    assert_eq!(
        code(net.publish(&late).await),
        (ErrorCode::KeyNotValid, 409)
    );
    assert_eq!(net.totals().await.entries, 1);
}

async fn limit_and_whitelist(which: Which) {
    let net = Net::start(which).await;
    // Limit is 25 credits: two 10s fit, the third does not.
    for _ in 0..2 {
        net.publish(&net.voucher(10).1).await.unwrap();
    }
    let (_, third) = net.voucher(10);
    assert_eq!(
        code(net.publish(&third).await),
        (ErrorCode::IssuerLimitExceeded, 409)
    );
    let _: IssuerInfo = net
        .admin
        .post(
            "/v1/admin/issuers/iss/limit",
            &SetLimitRequest { limit_credits: 100 },
        )
        .await
        .unwrap();
    net.publish(&third).await.unwrap();

    // Removed from the whitelist: its vouchers are refused, and it cannot register keys.
    let info: IssuerInfo = net
        .admin
        .post(
            "/v1/admin/issuers/iss/active",
            &serde_json::json!({"active": false}),
        )
        .await
        .unwrap();
    assert!(!info.active);
    assert_eq!(
        code(net.publish(&net.voucher(10).1).await),
        (ErrorCode::IssuerNotWhitelisted, 403)
    );
    let reg = net
        .issuer
        .post::<_, IssuerKeyInfo>(
            "/v1/issuer-keys",
            &RegisterKeyRequest {
                denomination: 1,
                period: 0,
                public_key: b64::encode(b"x"),
            },
        )
        .await;
    assert_eq!(code(reg), (ErrorCode::IssuerNotWhitelisted, 403));
    let t = net.totals().await;
    assert_eq!(t.totals.published.0, 30_000_000);
}

async fn redemption_refusals(which: Which) {
    let net = Net::start(which).await;
    let p = net.params().await;
    let (s, req) = net.voucher(10);
    net.publish(&req).await.unwrap();

    // Sealed for op-1, forwarded by op-2.
    let env = seal_v1(&p.envelope_key, &s, 10, "op-1").unwrap();
    assert_eq!(
        code(net.redeem(&net.op2, &env).await),
        (ErrorCode::OperatorMismatch, 403)
    );
    // No or wrong credential.
    assert_eq!(
        code(net.redeem(&net.public(), &env).await),
        (ErrorCode::Unauthorized, 401)
    );
    let fake = ApiClient::new(&net.url).with_token("op-1:not-the-secret");
    assert_eq!(
        code(net.redeem(&fake, &env).await),
        (ErrorCode::Unauthorized, 401)
    );
    // A secret that does not open the commitment: claim the wrong denomination.
    let wrong = seal_v1(&p.envelope_key, &s, 1, "op-1").unwrap();
    assert_eq!(
        code(net.redeem(&net.op1, &wrong).await),
        (ErrorCode::UnknownVoucher, 404)
    );
    // Tampered ciphertext.
    let mut tampered = env.clone();
    tampered.ciphertext[0] ^= 1;
    assert_eq!(
        code(net.redeem(&net.op1, &tampered).await),
        (ErrorCode::InvalidEnvelope, 400)
    );
    // A voucher never published.
    let (s2, _) = net.voucher(10);
    let unpublished = seal_v1(&p.envelope_key, &s2, 10, "op-1").unwrap();
    assert_eq!(
        code(net.redeem(&net.op1, &unpublished).await),
        (ErrorCode::UnknownVoucher, 404)
    );
    // Unsupported protocol version.
    let v2 = net
        .op1
        .post::<_, Signed<RedemptionReceipt>>(
            "/v1/redemptions",
            &ForwardRedemptionRequest {
                version: 2,
                envelope: env.clone(),
            },
        )
        .await;
    assert_eq!(code(v2), (ErrorCode::UnsupportedVersion, 400));
    assert_eq!(
        net.totals().await.totals.redeemed.0,
        0,
        "none of that moved money"
    );

    // The real redemption, then a second one with a fresh envelope for the same voucher.
    net.redeem(&net.op1, &env).await.unwrap();
    let again = seal_v1(&p.envelope_key, &s, 10, "op-2").unwrap();
    assert_eq!(
        code(net.redeem(&net.op2, &again).await),
        (ErrorCode::AlreadyRedeemed, 409)
    );
    assert_eq!(net.totals().await.totals.redeemed.0, 10_000_000);
}

async fn expiry_and_release(which: Which) {
    let net = Net::start(which).await;
    let p = net.params().await;
    let (s, req) = net.voucher(10);
    net.publish(&req).await.unwrap();
    let (_, req2) = net.voucher(10);
    net.publish(&req2).await.unwrap();
    net.clock.advance(10 * DAY);
    let env = seal_v1(&p.envelope_key, &s, 10, "op-1").unwrap();
    assert_eq!(
        code(net.redeem(&net.op1, &env).await),
        (ErrorCode::VoucherExpired, 410)
    );
    let r: ExpireResponse = net
        .admin
        .post("/v1/admin/expire", &serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!((r.released_count, r.released.0), (2, 20_000_000));
    assert_eq!(
        code(net.redeem(&net.op1, &env).await),
        (ErrorCode::VoucherExpired, 410)
    );
    let t = net.totals().await;
    assert_eq!(
        (
            t.totals.released.0,
            t.totals.network_fund.0,
            t.totals.live.0
        ),
        (20_000_000, 20_000_000, 0)
    );
    // Admin endpoints need the admin token.
    let anon = net
        .public()
        .post::<_, ExpireResponse>("/v1/admin/expire", &serde_json::json!({}))
        .await;
    assert_eq!(code(anon), (ErrorCode::Unauthorized, 401));
}

async fn restart_loses_nothing(which: Which) {
    let mut net = Net::start(which).await;
    let p = net.params().await;
    let (s, req) = net.voucher(10);
    net.publish(&req).await.unwrap();
    let before = net.totals().await;
    net.restart().await;
    let after = net.totals().await;
    assert_eq!(before, after);
    let p2 = net.params().await;
    assert_eq!(p.receipt_key, p2.receipt_key, "keys survive a restart");
    assert_eq!(p.envelope_key, p2.envelope_key);
    // The operator credential issued before the restart still works, at the new address,
    // and the voucher published before it is still redeemable exactly once.
    let env = seal_v1(&p2.envelope_key, &s, 10, "op-1").unwrap();
    let op1 = ApiClient::new(&net.url).with_token(net.op1_token.clone());
    net.redeem(&op1, &env).await.unwrap();
    net.restart().await;
    let op1 = ApiClient::new(&net.url).with_token(net.op1_token.clone());
    let fresh = seal_v1(&p2.envelope_key, &s, 10, "op-1").unwrap();
    assert_eq!(
        code(net.redeem(&op1, &fresh).await),
        (ErrorCode::AlreadyRedeemed, 409)
    );
    assert_eq!(net.totals().await.totals.redeemed.0, 10_000_000);
}

#[tokio::test]
async fn malformed_requests_get_typed_errors() {
    let net = Net::start(Which::Sqlite).await;
    let http = reqwest::Client::new();
    let post = |path: &str, body: Vec<u8>, ct: &str| {
        http.post(format!("{}{path}", net.url))
            .header("content-type", ct.to_owned())
            .body(body)
            .send()
    };
    let check = |resp: reqwest::Response, status: u16, want: &'static str| async move {
        assert_eq!(resp.status().as_u16(), status);
        let b: ErrorBody = resp.json().await.unwrap();
        assert_eq!(b.error.code.as_str(), want);
    };
    check(
        post("/v1/vouchers", b"{not json".to_vec(), "application/json")
            .await
            .unwrap(),
        400,
        "invalid_request",
    )
    .await;
    let (_, req) = net.voucher(10);
    let mut v = serde_json::to_value(&req).unwrap();
    v["surprise"] = serde_json::json!(1);
    check(
        post(
            "/v1/vouchers",
            serde_json::to_vec(&v).unwrap(),
            "application/json",
        )
        .await
        .unwrap(),
        400,
        "invalid_request",
    )
    .await;
    let mut missing = serde_json::to_value(&req).unwrap();
    missing.as_object_mut().unwrap().remove("key_id");
    check(
        post(
            "/v1/vouchers",
            serde_json::to_vec(&missing).unwrap(),
            "application/json",
        )
        .await
        .unwrap(),
        400,
        "invalid_request",
    )
    .await;
    check(
        post("/v1/vouchers", vec![b'a'; 200 * 1024], "application/json")
            .await
            .unwrap(),
        413,
        "body_too_large",
    )
    .await;
    check(
        post(
            "/v1/vouchers",
            serde_json::to_vec(&req).unwrap(),
            "text/plain",
        )
        .await
        .unwrap(),
        415,
        "unsupported_media_type",
    )
    .await;
    check(
        http.get(format!("{}/v1/nothing", net.url))
            .send()
            .await
            .unwrap(),
        404,
        "not_found",
    )
    .await;
    check(
        http.delete(format!("{}/v1/vouchers", net.url))
            .send()
            .await
            .unwrap(),
        405,
        "method_not_allowed",
    )
    .await;
    check(
        http.get(format!("{}/v1/vouchers/zz", net.url))
            .send()
            .await
            .unwrap(),
        400,
        "invalid_request",
    )
    .await;
    check(
        http.get(format!("{}/v1/ledger/entries?after=-1", net.url))
            .send()
            .await
            .unwrap(),
        400,
        "invalid_request",
    )
    .await;
    // Still serving, and nothing recorded.
    net.publish(&req).await.unwrap();
    assert_eq!(net.totals().await.entries, 1);
}

#[tokio::test]
async fn openapi_documents_every_route() {
    let net = Net::start(Which::Sqlite).await;
    let doc: serde_json::Value = net.public().get("/openapi.json").await.unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/v1/params",
        "/v1/issuers",
        "/v1/issuers/{id}",
        "/v1/issuer-keys",
        "/v1/vouchers",
        "/v1/vouchers/{commitment}",
        "/v1/redemptions",
        "/v1/operators",
        "/v1/ledger/totals",
        "/v1/ledger/entries",
        "/v1/admin/issuers",
        "/v1/admin/issuers/{id}/limit",
        "/v1/admin/issuers/{id}/active",
        "/v1/admin/operators",
        "/v1/admin/operators/{id}/share",
        "/v1/admin/expire",
    ] {
        assert!(
            paths.contains_key(p),
            "{p} missing from the OpenAPI document"
        );
    }
    let issuer: Result<IssuerInfo, _> = net.public().get("/v1/issuers/nobody").await;
    assert_eq!(code(issuer), (ErrorCode::NotFound, 404));
    let keys: Vec<IssuerKeyInfo> = net
        .public()
        .get("/v1/issuer-keys?issuer=iss&denomination=10")
        .await
        .unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(
        keys[0].publish_deadline,
        net.params.epoch + net.params.publish_window_secs
    );
    let none: Vec<IssuerKeyInfo> = net
        .public()
        .get("/v1/issuer-keys?denomination=100")
        .await
        .unwrap();
    assert!(none.is_empty());
}

#[tokio::test]
async fn key_registration_rules() {
    let net = Net::start(Which::Sqlite).await;
    let spki = |slot| b64::encode(&rsa_key(slot).public_key().unwrap().to_spki().unwrap());
    let reg = |denomination, period, public_key: String| {
        let issuer = net.issuer.clone();
        async move {
            issuer
                .post::<_, IssuerKeyInfo>(
                    "/v1/issuer-keys",
                    &RegisterKeyRequest {
                        denomination,
                        period,
                        public_key,
                    },
                )
                .await
        }
    };
    // Same key again: an idempotent retry.
    let again = reg(10, 0, spki(0)).await.unwrap();
    assert_eq!(again.key_id, net.key_id);
    // A second key for the same period: refused.
    assert_eq!(
        code(reg(10, 0, spki(1)).await),
        (ErrorCode::KeyRegistrationRejected, 409)
    );
    // Next period is fine; two ahead, or a past one, is not.
    reg(10, 1, spki(1)).await.unwrap();
    assert_eq!(
        code(reg(100, 2, spki(1)).await),
        (ErrorCode::KeyRegistrationRejected, 409)
    );
    // Adding an issuer or operator whose id is taken.
    let dup = net
        .admin
        .post::<_, CredentialResponse>(
            "/v1/admin/issuers",
            &AddIssuerRequest {
                id: "iss".into(),
                limit_credits: 1,
            },
        )
        .await;
    assert_eq!(code(dup), (ErrorCode::InvalidRequest, 400));
    let dup = net
        .admin
        .post::<_, CredentialResponse>(
            "/v1/admin/operators",
            &AddOperatorRequest {
                id: "op-1".into(),
                share_bps: 1,
            },
        )
        .await;
    assert_eq!(code(dup), (ErrorCode::InvalidRequest, 400));
    let too_high = net
        .admin
        .post::<_, CredentialResponse>(
            "/v1/admin/operators",
            &AddOperatorRequest {
                id: "op-9".into(),
                share_bps: 7001,
            },
        )
        .await;
    assert_eq!(code(too_high), (ErrorCode::ShareTooHigh, 400));
    // Not an RSA key.
    assert_eq!(
        code(reg(100, 0, b64::encode(b"garbage")).await).0,
        ErrorCode::InvalidRequest
    );
    // Not an issuer.
    let anon = net
        .public()
        .post::<_, IssuerKeyInfo>(
            "/v1/issuer-keys",
            &RegisterKeyRequest {
                denomination: 1,
                period: 0,
                public_key: spki(1),
            },
        )
        .await;
    assert_eq!(code(anon), (ErrorCode::Unauthorized, 401));
    let _ = IssuerPublicKey::from_spki;
}
