//! The coordinator over real HTTP: every refusal the v0.1 issue lists gets its typed error,
//! nothing is half-written, and the service keeps serving. Flows that touch money run on
//! SQLite and PostgreSQL.

use rand::RngCore;
use smpx_coordinator::{Coordinator, CoordinatorHome, ZkKeys};
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
use smpx_store::Db;
use smpx_testkit::net::{self, Server};
use smpx_testkit::{both, db as scratch, Backend};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

fn rsa_key(slot: usize) -> IssuerSecretKey {
    static KEYS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    let ders = KEYS.get_or_init(|| {
        (0..2)
            .map(|_| {
                IssuerSecretKey::generate(2048, &mut rand::rngs::OsRng)
                    .unwrap()
                    .to_der()
                    .unwrap()
            })
            .collect()
    });
    IssuerSecretKey::from_der(&ders[slot]).unwrap()
}

/// MMR levels of these tests: capacity 63, a circuit that proves in milliseconds.
const LEVELS: u32 = smpx_testkit::ceremony::LEVELS;

/// One local ceremony for these tests (cached across test runs, verified on every load), and
/// the coordinator keys from it, verified once per test binary.
fn ceremony() -> &'static (smpx_zk::devnet::CeremonyKeys, ZkKeys) {
    static T: OnceLock<(smpx_zk::devnet::CeremonyKeys, ZkKeys)> = OnceLock::new();
    T.get_or_init(|| {
        let keys = smpx_testkit::ceremony::keys(LEVELS).unwrap();
        let zk = ZkKeys::from_verified(keys.transcript.clone(), &keys.verifying_key).unwrap();
        (keys, zk)
    })
}

fn transcript() -> &'static [u8] {
    &ceremony().0.transcript
}

fn proving_key() -> &'static smpx_zk::ProvingKey {
    &ceremony().0.proving_key
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
    server: Option<Server>,
}

/// The coordinator on `dir` and `db_url`, served on `addr` (port 0 at first; the same port
/// on a restart).
async fn serve(
    dir: &std::path::Path,
    db_url: &str,
    clock: &ManualClock,
    params: &NetworkParams,
    addr: std::net::SocketAddr,
) -> Server {
    let home = CoordinatorHome::open(dir, Some(params.clone())).unwrap();
    let store = CoordinatorStore::open(Db::connect(db_url).await.unwrap())
        .await
        .unwrap();
    std::fs::write(
        dir.join(smpx_coordinator::zk::TRANSCRIPT_FILE),
        transcript(),
    )
    .unwrap();
    let zk = ZkKeys::load(dir, params.mmr_levels, &smpx_ceremony::Silent)
        .unwrap()
        .unwrap();
    let state = Coordinator::with_zk(store, home, Arc::new(clock.clone()), Some(zk));
    net::Server::start(addr, |l, stop| {
        smpx_coordinator::run(state, l, Duration::from_secs(3600), stop)
    })
    .await
    .unwrap()
}

impl Net {
    async fn start(which: Backend) -> Net {
        let params = NetworkParams {
            voucher_expiry_secs: 10 * DAY,
            mmr_period_secs: 2 * DAY,
            mmr_levels: LEVELS,
            protocol_versions: vec![1, 2],
            ..NetworkParams::default()
        };
        let clock = ManualClock::new(params.epoch + 3600);
        let dir = tempfile::tempdir().unwrap();
        let (db_url, guard) = scratch::database(which).await.unwrap();
        let server = serve(dir.path(), &db_url, &clock, &params, net::any_port()).await;
        let url = server.url.clone();
        let token = std::fs::read_to_string(dir.path().join("admin-token")).unwrap();
        let admin = ApiClient::new(&url).with_token(token);
        let cred = add_issuer(&admin, "iss", 25).await.unwrap();
        let issuer = ApiClient::new(&url).with_token(cred.token);
        let mut ops = Vec::new();
        let mut tokens = Vec::new();
        for (id, share) in [("op-1", 6000), ("op-2", 7000)] {
            let c = add_operator(&admin, id, share).await.unwrap();
            ops.push(ApiClient::new(&url).with_token(c.token.clone()));
            tokens.push(c.token);
        }
        let key = rsa_key(0);
        let info = register_key(&issuer, 10, 0, spki_b64(&key)).await.unwrap();
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
            server: Some(server),
        }
    }

    fn public(&self) -> ApiClient {
        ApiClient::new(&self.url)
    }

    /// A voucher signed by the issuer key (the wallet's and the issuer's work, in-process).
    fn voucher(&self, denomination: u64) -> (VoucherSecret, PublishRequest) {
        smpx_core::issuance::issue_locally(
            &self.key,
            &self.key_id,
            denomination,
            &mut rand::rngs::OsRng,
        )
        .unwrap()
    }

    async fn publish(&self, req: &PublishRequest) -> Result<Signed<PublishReceipt>, ClientError> {
        self.public().post("/v1/vouchers", req).await
    }

    async fn redeem(
        &self,
        via: &ApiClient,
        env: &Envelope,
    ) -> Result<Signed<RedemptionReceipt>, ClientError> {
        forward(via, 1, Some(env.clone()), None).await
    }

    /// Raises the issuer's limit (`POST /v1/admin/issuers/iss/limit`).
    async fn set_limit(&self, limit_credits: u64) {
        let _: IssuerInfo = self
            .admin
            .post(
                "/v1/admin/issuers/iss/limit",
                &SetLimitRequest { limit_credits },
            )
            .await
            .unwrap();
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
        let old = self.server.take().unwrap();
        let addr = old.addr;
        old.stop().await.unwrap();
        let server = serve(
            self.dir.path(),
            &self.db_url,
            &self.clock,
            &self.params,
            addr,
        )
        .await;
        let url = server.url.clone();
        self.url = url.clone();
        self.server = Some(server);
        // The same port; the admin client is made anew, tokens stay valid (stored hashed).
        let tok = std::fs::read_to_string(self.dir.path().join("admin-token")).unwrap();
        self.admin = ApiClient::new(&url).with_token(tok);
    }
}

/// `POST /v1/redemptions` through `via` (an operator's client, or another).
async fn forward(
    via: &ApiClient,
    version: u32,
    envelope: Option<Envelope>,
    zk: Option<ZkRedemption>,
) -> Result<Signed<RedemptionReceipt>, ClientError> {
    let req = ForwardRedemptionRequest {
        version,
        envelope,
        zk,
    };
    via.post("/v1/redemptions", &req).await
}

/// What a call answers: its body, or the typed error.
type Answer<T> = Result<T, ClientError>;

async fn add_issuer(admin: &ApiClient, id: &str, limit_credits: u64) -> Answer<CredentialResponse> {
    let id = id.into();
    admin
        .post("/v1/admin/issuers", &AddIssuerRequest { id, limit_credits })
        .await
}

async fn add_operator(admin: &ApiClient, id: &str, share_bps: u32) -> Answer<CredentialResponse> {
    let id = id.into();
    admin
        .post("/v1/admin/operators", &AddOperatorRequest { id, share_bps })
        .await
}

/// `POST /v1/issuer-keys` as `issuer` (or as anyone).
async fn register_key(
    issuer: &ApiClient,
    denomination: u64,
    period: u64,
    public_key: String,
) -> Answer<IssuerKeyInfo> {
    let req = RegisterKeyRequest {
        denomination,
        period,
        public_key,
    };
    issuer.post("/v1/issuer-keys", &req).await
}

/// `POST /v1/admin/expire` as `via` (the admin, or someone who is not).
async fn expire(via: &ApiClient) -> Result<ExpireResponse, ClientError> {
    via.post("/v1/admin/expire", &serde_json::json!({})).await
}

/// The key's SPKI, base64 (as an issuer registers it).
fn spki_b64(key: &IssuerSecretKey) -> String {
    b64::encode(&key.public_key().unwrap().to_spki().unwrap())
}

fn code(r: Result<impl std::fmt::Debug, ClientError>) -> (ErrorCode, u16) {
    match r {
        Err(ClientError::Api { code, status, .. }) => (code, status),
        other => panic!("expected a typed error, got {other:?}"),
    }
}

both!(
    publish_and_redeem_with_receipts,
    bad_publications_are_refused,
    limit_and_whitelist,
    redemption_refusals,
    expiry_and_release,
    restart_loses_nothing,
    zk_redemption_end_to_end,
    zk_refusals_record_nothing,
    zk_release_after_rotation,
);

async fn publish_and_redeem_with_receipts(which: Backend) {
    let net = Net::start(which).await;
    let p = net.params().await;
    let (s, req) = net.voucher(10);
    let receipt = net.publish(&req).await.unwrap();
    receipt.verify(PUBLISH_DOMAIN, &p.receipt_key).unwrap();
    assert_eq!(receipt.body.commitment, req.commitment);
    // Redeemable until its MMR (0: the only one open in the first period) expires: at
    // least the voucher expiry after publishing.
    assert_eq!(
        receipt.body.expires_at,
        smpx_core::rotation::mmr_expires_at(&net.params, 0)
    );
    assert!(receipt.body.expires_at >= receipt.body.published_at + 10 * DAY);
    assert_eq!(receipt.body.paths.len(), 1);
    assert_eq!(receipt.body.paths[0].leaf_index, 0);
    let status: VoucherStatus = net
        .public()
        .get(&format!("/v1/vouchers/{}", req.commitment.0.to_hex()))
        .await
        .unwrap();
    assert_eq!(status.state, VoucherState::Live);

    let env = seal_v1(&p.envelope_key, &s, 10, "op-1", &mut rand::rngs::OsRng).unwrap();
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

async fn bad_publications_are_refused(which: Backend) {
    let net = Net::start(which).await;
    let (_, req) = net.voucher(10);

    // Signature by another key, claiming the registered key's id.
    let other = rsa_key(1);
    let pk = other.public_key().unwrap();
    let msg = voucher_message(&req.commitment);
    let (b, st) = pk.blind(&msg, &mut rand::rngs::OsRng).unwrap();
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
    let first = net.publish(&req).await.unwrap();
    // The identical request again (a retry after a lost answer) gets the same receipt, and
    // records nothing more; any other request for that commitment is refused.
    let entries = net.totals().await.entries;
    assert_eq!(net.publish(&req).await.unwrap(), first);
    assert_eq!(net.totals().await.entries, entries);
    let mut other = req.clone();
    other.key_id = "00".repeat(32);
    assert_eq!(
        code(net.publish(&other).await),
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

async fn limit_and_whitelist(which: Backend) {
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
    net.set_limit(100).await;
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
    let reg = register_key(&net.issuer, 1, 0, b64::encode(b"x")).await;
    assert_eq!(code(reg), (ErrorCode::IssuerNotWhitelisted, 403));
    let t = net.totals().await;
    assert_eq!(t.totals.published.0, 30_000_000);
}

async fn redemption_refusals(which: Backend) {
    let net = Net::start(which).await;
    let p = net.params().await;
    let (s, req) = net.voucher(10);
    net.publish(&req).await.unwrap();

    // Sealed for op-1, forwarded by op-2.
    let env = seal_v1(&p.envelope_key, &s, 10, "op-1", &mut rand::rngs::OsRng).unwrap();
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
    let wrong = seal_v1(&p.envelope_key, &s, 1, "op-1", &mut rand::rngs::OsRng).unwrap();
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
    let unpublished = seal_v1(&p.envelope_key, &s2, 10, "op-1", &mut rand::rngs::OsRng).unwrap();
    assert_eq!(
        code(net.redeem(&net.op1, &unpublished).await),
        (ErrorCode::UnknownVoucher, 404)
    );
    // Unsupported protocol version, and a v0.1 envelope sent as version 2.
    for (version, want) in [
        (3, (ErrorCode::UnsupportedVersion, 400)),
        (2, (ErrorCode::InvalidRequest, 400)),
    ] {
        let r = forward(&net.op1, version, Some(env.clone()), None).await;
        assert_eq!(code(r), want);
    }
    assert_eq!(
        net.totals().await.totals.redeemed.0,
        0,
        "none of that moved money"
    );

    // The real redemption, then a second one with a fresh envelope for the same voucher.
    net.redeem(&net.op1, &env).await.unwrap();
    let again = seal_v1(&p.envelope_key, &s, 10, "op-2", &mut rand::rngs::OsRng).unwrap();
    assert_eq!(
        code(net.redeem(&net.op2, &again).await),
        (ErrorCode::AlreadyRedeemed, 409)
    );
    assert_eq!(net.totals().await.totals.redeemed.0, 10_000_000);
}

async fn expiry_and_release(which: Backend) {
    let net = Net::start(which).await;
    let p = net.params().await;
    let (s, req) = net.voucher(10);
    net.publish(&req).await.unwrap();
    let (_, req2) = net.voucher(10);
    net.publish(&req2).await.unwrap();
    // Published in the first period, both are in MMR 0 only, which stops accepting
    // redemptions 2T + expiry after the epoch: 14 days.
    net.clock.advance(14 * DAY);
    let env = seal_v1(&p.envelope_key, &s, 10, "op-1", &mut rand::rngs::OsRng).unwrap();
    assert_eq!(
        code(net.redeem(&net.op1, &env).await),
        (ErrorCode::VoucherExpired, 410)
    );
    let r = expire(&net.admin).await.unwrap();
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
    assert_eq!(
        code(expire(&net.public()).await),
        (ErrorCode::Unauthorized, 401)
    );
}

async fn restart_loses_nothing(which: Backend) {
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
    // The operator credential issued before the restart still works after it,
    // and the voucher published before it is still redeemable exactly once.
    let env = seal_v1(&p2.envelope_key, &s, 10, "op-1", &mut rand::rngs::OsRng).unwrap();
    let op1 = ApiClient::new(&net.url).with_token(net.op1_token.clone());
    net.redeem(&op1, &env).await.unwrap();
    net.restart().await;
    let op1 = ApiClient::new(&net.url).with_token(net.op1_token.clone());
    let fresh = seal_v1(&p2.envelope_key, &s, 10, "op-1", &mut rand::rngs::OsRng).unwrap();
    assert_eq!(
        code(net.redeem(&op1, &fresh).await),
        (ErrorCode::AlreadyRedeemed, 409)
    );
    assert_eq!(net.totals().await.totals.redeemed.0, 10_000_000);
}

#[tokio::test]
async fn malformed_requests_get_typed_errors() {
    let net = Net::start(Backend::Sqlite).await;
    let http = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", net.url);
    let post = |body: Vec<u8>, ct: &str| {
        http.post(url("/v1/vouchers"))
            .header("content-type", ct.to_owned())
            .body(body)
    };
    let (_, req) = net.voucher(10);
    let json = |v: &serde_json::Value| serde_json::to_vec(v).unwrap();
    let mut surprise = serde_json::to_value(&req).unwrap();
    surprise["surprise"] = serde_json::json!(1);
    let mut missing = serde_json::to_value(&req).unwrap();
    missing.as_object_mut().unwrap().remove("key_id");
    let (bad, too_large) = ("invalid_request", "body_too_large");
    const JSON: &str = "application/json";
    for (request, status, want) in [
        (post(b"{not json".to_vec(), JSON), 400, bad),
        (post(json(&surprise), JSON), 400, bad),
        (post(json(&missing), JSON), 400, bad),
        (post(vec![b'a'; 200 * 1024], JSON), 413, too_large),
        (
            post(serde_json::to_vec(&req).unwrap(), "text/plain"),
            415,
            "unsupported_media_type",
        ),
        (http.get(url("/v1/nothing")), 404, "not_found"),
        (http.delete(url("/v1/vouchers")), 405, "method_not_allowed"),
        (http.get(url("/v1/vouchers/zz")), 400, bad),
        (http.get(url("/v1/ledger/entries?after=-1")), 400, bad),
    ] {
        let resp = request.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "{want}");
        let b: ErrorBody = resp.json().await.unwrap();
        assert_eq!(b.error.code.as_str(), want);
    }
    // Still serving, and nothing recorded.
    net.publish(&req).await.unwrap();
    assert_eq!(net.totals().await.entries, 1);
}

#[tokio::test]
async fn openapi_documents_every_route() {
    let net = Net::start(Backend::Sqlite).await;
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
        "/v1/operators/{id}/share",
        "/v1/share-statements",
        "/v1/share-statements/{digest}",
        "/v1/trusted-directories",
        "/v1/ledger/totals",
        "/v1/ledger/entries",
        "/v1/admin/issuers",
        "/v1/admin/issuers/{id}/limit",
        "/v1/admin/issuers/{id}/active",
        "/v1/admin/operators",
        "/v1/admin/operators/{id}/share",
        "/v1/admin/operators/{id}/suspend",
        "/v1/admin/operators/{id}/resume",
        "/v1/admin/expire",
        "/v1/mmrs",
        "/v1/mmrs/{id}",
        "/v1/mmrs/{id}/leaves",
        "/v1/mmrs/{id}/checkpoint",
        "/v1/mmrs/{id}/consistency",
        "/v1/zk",
        "/v1/zk/transcript",
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
    assert_eq!(keys[0].published_count, 0, "nothing published under it yet");
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
    let net = Net::start(Backend::Sqlite).await;
    let spki = |slot| spki_b64(&rsa_key(slot));
    let reg = |denomination, period, public_key| {
        register_key(&net.issuer, denomination, period, public_key)
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
    let dup = add_issuer(&net.admin, "iss", 1).await;
    assert_eq!(code(dup), (ErrorCode::AlreadyExists, 409));
    let dup = add_operator(&net.admin, "op-1", 1).await;
    assert_eq!(code(dup), (ErrorCode::AlreadyExists, 409));
    let too_high = add_operator(&net.admin, "op-9", 7001).await;
    assert_eq!(code(too_high), (ErrorCode::ShareTooHigh, 400));
    // Not an RSA key.
    assert_eq!(
        code(reg(100, 0, b64::encode(b"garbage")).await).0,
        ErrorCode::InvalidRequest
    );
    // Not an issuer.
    let anon = register_key(&net.public(), 1, 0, spki(1)).await;
    assert_eq!(code(anon), (ErrorCode::Unauthorized, 401));
    let _ = IssuerPublicKey::from_spki;
}

// ---- v0.2 ---------------------------------------------------------------------------------

use smpx_core::crypto::{nullifier, FieldBytes};
use smpx_core::mmr::{Mmr, MmrParams};
use smpx_core::receipt::CHECKPOINT_DOMAIN;

impl Net {
    /// Everything a wallet downloads to prove against MMR `id`'s latest root: all leaves and
    /// the signed checkpoint (verified), rebuilt into an MMR whose root matches.
    async fn mmr(&self, id: u64) -> (Mmr, Checkpoint) {
        let p = self.params().await;
        let cp: Signed<Checkpoint> = self
            .public()
            .get(&format!("/v1/mmrs/{id}/checkpoint"))
            .await
            .unwrap();
        cp.verify(CHECKPOINT_DOMAIN, &p.receipt_key).unwrap();
        let mut leaves = Vec::new();
        while (leaves.len() as u64) < cp.body.size {
            let page: LeavesPage = self
                .public()
                .get(&format!(
                    "/v1/mmrs/{id}/leaves?from={}&limit=2",
                    leaves.len()
                ))
                .await
                .unwrap();
            assert!(!page.leaves.is_empty());
            leaves.extend(page.leaves.iter().map(|l| l.to_fr().unwrap()));
        }
        leaves.truncate(cp.body.size as usize);
        let mmr = Mmr::from_leaves(MmrParams::new(id, cp.body.levels).unwrap(), leaves).unwrap();
        assert_eq!(
            FieldBytes::from_fr(&mmr.root()),
            cp.body.root,
            "checkpoint matches leaves"
        );
        (mmr, cp.body)
    }

    /// A v0.2 redemption of `secret` (leaf `index` of MMR `id`) for `operator`.
    async fn zk_request(
        &self,
        id: u64,
        index: u64,
        secret: &VoucherSecret,
        denomination: u64,
        operator: &str,
    ) -> ZkRedemption {
        let (mmr, cp) = self.mmr(id).await;
        let path = mmr.proof(index).unwrap().circuit_path().unwrap();
        let public = smpx_zk::RedeemPublic {
            root: cp.root.to_fr().unwrap(),
            nullifier: nullifier(secret).0.to_fr().unwrap(),
            denomination,
            binding: smpx_zk::binding_hash(operator, 0),
        };
        let witness = smpx_zk::RedeemWitness {
            secret: secret.clone(),
            path,
        };
        let proof =
            smpx_zk::prove(proving_key(), &public, &witness, &mut rand::rngs::OsRng).unwrap();
        ZkRedemption {
            mmr_id: id,
            root: cp.root,
            nullifier: nullifier(secret).0,
            denomination,
            fee: smpx_core::Amount::ZERO,
            proof: proof.to_bytes().to_vec(),
        }
    }

    async fn redeem_zk(
        &self,
        via: &ApiClient,
        zk: &ZkRedemption,
    ) -> Result<Signed<RedemptionReceipt>, ClientError> {
        forward(via, 2, None, Some(zk.clone())).await
    }
}

async fn zk_redemption_end_to_end(which: Backend) {
    let net = Net::start(which).await;
    let p = net.params().await;
    assert!(p.params.protocol_versions.contains(&2));
    let info: ZkInfo = net.public().get("/v1/zk").await.unwrap();
    assert_eq!(info.levels, LEVELS);
    let bytes = reqwest::get(format!("{}/v1/zk/transcript", net.url))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        &bytes[..],
        transcript(),
        "the transcript the keys came from"
    );
    net.set_limit(1000).await;
    let mut secrets = Vec::new();
    let mut checkpoints = Vec::new();
    for _ in 0..3 {
        let (s, req) = net.voucher(10);
        let r = net.publish(&req).await.unwrap();
        let path = &r.body.paths[0];
        smpx_core::mmr::verify(
            &path.root().unwrap(),
            &req.commitment.0.to_fr().unwrap(),
            path,
        )
        .unwrap();
        secrets.push((s, path.leaf_index));
        checkpoints.push(net.mmr(0).await.1);
    }
    // Consecutive checkpoints are consistent: no forked view.
    let cp: smpx_core::mmr::ConsistencyProof = net
        .public()
        .get("/v1/mmrs/0/consistency?from=1&to=3")
        .await
        .unwrap();
    cp.verify(
        &checkpoints[0].root.to_fr().unwrap(),
        &checkpoints[2].root.to_fr().unwrap(),
    )
    .unwrap();

    let (s, index) = &secrets[1];
    let zk = net.zk_request(0, *index, s, 10, "op-1").await;
    let r = net.redeem_zk(&net.op1, &zk).await.unwrap();
    r.verify(REDEMPTION_DOMAIN, &p.receipt_key).unwrap();
    assert_eq!(r.body.nullifier, Some(zk.nullifier));
    assert_eq!(
        (r.body.operator_amount.0, r.body.mmr_id),
        (6_000_000, Some(0))
    );
    // A retry of the identical request: the same receipt, nothing paid twice.
    assert_eq!(net.redeem_zk(&net.op1, &zk).await.unwrap(), r);
    // A fresh proof for the same voucher (another request, the same nullifier): refused,
    // also through another operator and under v0.1.
    let again = net.zk_request(0, *index, s, 10, "op-2").await;
    assert_eq!(
        code(net.redeem_zk(&net.op2, &again).await),
        (ErrorCode::AlreadyRedeemed, 409)
    );
    let env = seal_v1(&p.envelope_key, s, 10, "op-1", &mut rand::rngs::OsRng).unwrap();
    assert_eq!(
        code(net.redeem(&net.op1, &env).await),
        (ErrorCode::AlreadyRedeemed, 409)
    );
    // And the other way round: redeemed under v0.1 first, then a proof is refused.
    let (s0, index0) = &secrets[0];
    let env0 = seal_v1(&p.envelope_key, s0, 10, "op-1", &mut rand::rngs::OsRng).unwrap();
    net.redeem(&net.op1, &env0).await.unwrap();
    let late = net.zk_request(0, *index0, s0, 10, "op-1").await;
    assert_eq!(
        code(net.redeem_zk(&net.op1, &late).await),
        (ErrorCode::AlreadyRedeemed, 409)
    );

    let t = net.totals().await;
    assert_eq!(
        (t.totals.redeemed.0, t.totals.live.0),
        (20_000_000, 10_000_000)
    );
    assert_eq!(
        t.unredeemed_value.0, 10_000_000,
        "the MMR books agree with the ledger"
    );
    // Of the three vouchers, the one redeemed by v0.1 is marked; the one redeemed by proof
    // cannot be (the proof hides which it was), so it is still counted, and said apart.
    assert_eq!((t.unreleased_voucher_count, t.v2_redemption_count), (2, 1));
    let list: MmrListResponse = net.public().get("/v1/mmrs").await.unwrap();
    assert_eq!(list.mmrs.len(), 1);
    assert_eq!(
        (
            list.mmrs[0].size,
            list.mmrs[0].group_value.0,
            list.mmrs[0].redeemed_via.0
        ),
        (3, 30_000_000, 20_000_000)
    );
    // The anonymity set per denomination (redeeming changes nothing: a leaf stays a leaf),
    // the same in the list and for the one MMR, and the key's crowd.
    let tens = vec![DenominationCount {
        denomination: 10,
        count: 3,
    }];
    assert_eq!(list.mmrs[0].denominations, tens);
    let one: MmrInfo = net.public().get("/v1/mmrs/0").await.unwrap();
    assert_eq!(
        (one.count_of(10), one.count_of(1), one.denominations),
        (3, 0, tens)
    );
    let keys: Vec<IssuerKeyInfo> = net
        .public()
        .get("/v1/issuer-keys?issuer=iss&denomination=10")
        .await
        .unwrap();
    assert_eq!(keys[0].published_count, 3);
}

async fn zk_refusals_record_nothing(which: Backend) {
    let net = Net::start(which).await;
    let (s, req) = net.voucher(10);
    let index = net.publish(&req).await.unwrap().body.paths[0].leaf_index;
    let good = net.zk_request(0, index, &s, 10, "op-1").await;
    let entries = net.totals().await.entries;
    let refused = |zk: ZkRedemption, via: &'static str| {
        let net = &net;
        async move {
            let client = if via == "op-1" { &net.op1 } else { &net.op2 };
            code(net.redeem_zk(client, &zk).await)
        }
    };
    let (s2, _) = net.voucher(10);
    let with = |change: fn(&mut ZkRedemption)| {
        let mut zk = good.clone();
        change(&mut zk);
        zk
    };
    let (invalid, unknown_root, malformed) = (
        (ErrorCode::InvalidProof, 400),
        (ErrorCode::UnknownRoot, 404),
        (ErrorCode::MalformedProof, 400),
    );
    for (zk, via, want) in [
        // Made for op-1, forwarded by op-2: the binding does not match.
        (good.clone(), "op-2", invalid),
        // Tampered public inputs: denomination, nullifier.
        (with(|zk| zk.denomination = 100), "op-1", invalid),
        (
            ZkRedemption {
                nullifier: nullifier(&s2).0,
                ..good.clone()
            },
            "op-1",
            invalid,
        ),
        // A root that was never recorded, and MMR 0's root claimed for MMR 1.
        (
            with(|zk| zk.root = FieldBytes::from_fr(&smpx_core::crypto::Fr::from(7u64))),
            "op-1",
            unknown_root,
        ),
        (with(|zk| zk.mmr_id = 1), "op-1", unknown_root),
        // Malformed and truncated proofs.
        (with(|zk| zk.proof.truncate(100)), "op-1", malformed),
        (with(|zk| zk.proof = vec![0xff; 128]), "op-1", malformed),
    ] {
        assert_eq!(refused(zk.clone(), via).await, want, "{zk:?}");
    }
    let mut flipped = good.clone();
    flipped.proof[5] ^= 0x01;
    let c = refused(flipped, "op-1").await;
    assert!(
        c == (ErrorCode::MalformedProof, 400) || c == (ErrorCode::InvalidProof, 400),
        "{c:?}"
    );
    // Fees are not supported yet; unknown denominations; no credential.
    let fee = ZkRedemption {
        fee: smpx_core::Amount(1),
        ..good.clone()
    };
    assert_eq!(refused(fee, "op-1").await, (ErrorCode::InvalidRequest, 400));
    let odd = ZkRedemption {
        denomination: 7,
        ..good.clone()
    };
    assert_eq!(
        refused(odd, "op-1").await,
        (ErrorCode::UnsupportedDenomination, 400)
    );
    assert_eq!(
        code(net.redeem_zk(&net.public(), &good).await),
        (ErrorCode::Unauthorized, 401)
    );
    // Nothing of that was recorded: no ledger entry, the nullifier still unspent.
    assert_eq!(net.totals().await.entries, entries);
    net.redeem_zk(&net.op1, &good).await.unwrap();
    assert_eq!(net.totals().await.totals.redeemed.0, 10_000_000);
}

async fn zk_release_after_rotation(which: Backend) {
    let net = Net::start(which).await;
    let p = net.params().await;
    // Period 0: voucher a in MMR 0. Period 1: b in MMRs 0 and 1 (group 1).
    let (_, ra) = net.voucher(10);
    net.publish(&ra).await.unwrap();
    net.clock.advance(2 * DAY);
    let (sb, rb) = net.voucher(10);
    let pb = net.publish(&rb).await.unwrap();
    let ids: Vec<u64> = pb.body.paths.iter().map(|x| x.mmr.id).collect();
    assert_eq!(ids, vec![0, 1]);
    assert_eq!(
        pb.body.expires_at,
        smpx_core::rotation::mmr_expires_at(&p.params, 1)
    );
    // b is redeemed through the older MMR (the larger anonymity set).
    let zb = net
        .zk_request(0, pb.body.paths[0].leaf_index, &sb, 10, "op-1")
        .await;
    net.redeem_zk(&net.op1, &zb).await.unwrap();
    // MMR 0 expires: 10 in its group, 10 redeemed through it — nothing provably dead yet,
    // although a is (the coordinator cannot tell which voucher was redeemed).
    net.clock
        .set(smpx_core::rotation::mmr_expires_at(&p.params, 0));
    let r = expire(&net.admin).await.unwrap();
    assert_eq!(r.released.0, 0);
    // A root of the expired MMR is refused as retired.
    assert_eq!(
        code(net.redeem_zk(&net.op1, &zb).await),
        (ErrorCode::RetiredRoot, 410)
    );
    // MMR 1 expires too: 20 in groups 0 and 1, 10 redeemed: a's value is released.
    net.clock
        .set(smpx_core::rotation::mmr_expires_at(&p.params, 1));
    let r = expire(&net.admin).await.unwrap();
    assert_eq!(r.released.0, 10_000_000);
    let t = net.totals().await;
    assert_eq!(
        (
            t.totals.published.0,
            t.totals.redeemed.0,
            t.totals.released.0,
            t.totals.live.0
        ),
        (20_000_000, 10_000_000, 10_000_000, 0)
    );
    let list: MmrListResponse = net.public().get("/v1/mmrs").await.unwrap();
    assert_eq!(
        (list.released.0, list.expired_through),
        (10_000_000, Some(1))
    );
}

#[test]
fn only_a_transcript_that_verifies_gives_keys() {
    use smpx_coordinator::zk::TRANSCRIPT_FILE;
    let dir = tempfile::tempdir().unwrap();
    let silent = &smpx_ceremony::Silent;
    // No transcript: no keys (the coordinator serves v0.1 only), not an error.
    assert!(ZkKeys::load(dir.path(), LEVELS, silent).unwrap().is_none());
    std::fs::write(dir.path().join(TRANSCRIPT_FILE), transcript()).unwrap();
    let keys = ZkKeys::load(dir.path(), LEVELS, silent).unwrap().unwrap();
    assert_eq!(keys.levels(), LEVELS);
    // The same transcript for a circuit of other levels, a flipped byte, a truncated file.
    assert!(matches!(
        ZkKeys::load(dir.path(), LEVELS + 1, silent),
        Err(smpx_coordinator::ZkKeysError::Rejected { .. })
    ));
    let mut bad = transcript().to_vec();
    let n = bad.len();
    bad[n - 40] ^= 0x20;
    std::fs::write(dir.path().join(TRANSCRIPT_FILE), &bad).unwrap();
    assert!(matches!(
        ZkKeys::load(dir.path(), LEVELS, silent),
        Err(smpx_coordinator::ZkKeysError::Rejected { .. })
    ));
    std::fs::write(dir.path().join(TRANSCRIPT_FILE), &transcript()[..n / 2]).unwrap();
    assert!(matches!(
        ZkKeys::load(dir.path(), LEVELS, silent),
        Err(smpx_coordinator::ZkKeysError::Rejected { .. })
    ));
}
