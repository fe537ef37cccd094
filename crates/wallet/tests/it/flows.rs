//! The wallet's flows against small in-process stand-ins for the coordinator, an issuer and an
//! operator (axum on loopback). The stand-ins implement the `/v1` wire contract with the real
//! core crypto, plus switches to lose an answer or misbehave, so the retry and verification
//! paths are exercised. End-to-end runs against the real services are in `services.rs`, and
//! lost answers of the real services (through `smpx_testkit::proxy`) in `retries.rs`.

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use sha2::{Digest, Sha256};
use smpx_core::api::*;
use smpx_core::crypto::b64;
use smpx_core::crypto::blind::IssuerSecretKey;
use smpx_core::crypto::envelope::HpkeSecretKey;
use smpx_core::crypto::sign::SigningKey;
use smpx_core::crypto::{nullifier, FieldBytes, Fr, VoucherSecret};
use smpx_core::mmr::{Mmr, MmrParams};
use smpx_core::receipt::{
    Signed, CHECKPOINT_DOMAIN, OPERATOR_DOMAIN, PUBLISH_DOMAIN, REDEMPTION_DOMAIN,
};
use smpx_core::redemption::open_v1;
use smpx_core::{keys, rotation, Amount, ErrorCode, NetworkParams};
use smpx_http::ApiError;
use smpx_testkit::net::{self, Server};
use smpx_wallet::{
    KdfParams, LocalState, MmrChoice, RedeemOptions, RedeemProgress, Wallet, WalletError,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

const PASS: &str = "pw";
const OPERATOR: &str = "op-1";
const ISSUER: &str = "iss-1";
/// MMR levels of the mock network (capacity 63): small, so the ceremony and proofs are quick.
const LEVELS: u32 = smpx_testkit::ceremony::LEVELS;

/// One ceremony for the whole test binary (cached between runs by `smpx_zk::devnet`, and
/// verified whenever it is loaded), and the keys it gives.
struct Ceremony {
    transcript: Vec<u8>,
    vk: smpx_zk::VerifyingKey,
    pvk: smpx_zk::PreparedVerifyingKey,
    pk_bytes: Vec<u8>,
}

fn ceremony() -> &'static Ceremony {
    static C: OnceLock<Ceremony> = OnceLock::new();
    C.get_or_init(|| {
        let k = smpx_testkit::ceremony::keys(LEVELS).unwrap();
        Ceremony {
            pvk: k.verifying_key.prepare(),
            vk: k.verifying_key,
            pk_bytes: k.proving_key.to_bytes().unwrap(),
            transcript: k.transcript,
        }
    })
}

/// Puts the ceremony's proving key in the wallet's key cache, as an earlier redemption
/// would have: the wallet then skips downloading and verifying the transcript (which the
/// tests that start from an empty cache exercise).
fn warm_key_cache(dir: &tempfile::TempDir) {
    let c = ceremony();
    let keys = dir.path().join("zk-keys");
    std::fs::create_dir_all(&keys).unwrap();
    let hash = hex::encode(Sha256::digest(&c.transcript));
    std::fs::write(keys.join(format!("{hash}.pk")), &c.pk_bytes).unwrap();
}

fn issuer_sk() -> &'static IssuerSecretKey {
    static KEY: OnceLock<IssuerSecretKey> = OnceLock::new();
    KEY.get_or_init(|| IssuerSecretKey::generate(2048).unwrap())
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[derive(Default)]
struct Switches {
    fail_next_purchase: bool,
    lose_next_purchase_answer: bool,
    lose_next_redeem_answer: bool,
    publish_receipt_wrong_key: bool,
    coordinator_receipt_wrong_digest: bool,
    list_no_key: bool,
    /// `GET /v1/zk` answers `zk_unavailable`.
    zk_off: bool,
    /// The transcript served is not the one announced.
    corrupt_transcript: bool,
}

#[derive(Default)]
struct Books {
    vouchers: HashMap<String, VoucherStatus>,
    /// top-up code → (blinded message, blind signature)
    purchases: HashMap<String, (Vec<u8>, Vec<u8>)>,
    redemptions: HashMap<[u8; 32], Signed<OperatorCreditReceipt>>,
    lookups: u64,
    /// v0.2: the MMRs by id, and what a forked coordinator shows instead of some of them.
    mmrs: BTreeMap<u64, Mmr>,
    forked: BTreeMap<u64, Mmr>,
    /// Spent nullifiers (v1 and v2 alike).
    nullifiers: HashSet<FieldBytes>,
    zk_seen: Vec<ZkRedemption>,
    leaves_served: u64,
    transcript_downloads: u64,
}

impl Books {
    /// Appends `c` to the MMRs open at `now` (creating them); the paths right after.
    fn append(&mut self, params: &NetworkParams, c: Fr, now: u64) -> Vec<smpx_core::mmr::Proof> {
        let mut paths = Vec::new();
        for id in rotation::open_mmrs(params, now) {
            let m = self
                .mmrs
                .entry(id)
                .or_insert_with(|| Mmr::new(MmrParams::new(id, LEVELS).unwrap()).unwrap());
            let i = m.append(c).unwrap();
            paths.push(m.proof(i).unwrap());
        }
        paths
    }

    /// Other people's vouchers, published now.
    fn append_others(&mut self, params: &NetworkParams, n: u64) {
        for _ in 0..n {
            let c =
                smpx_core::crypto::commitment(&VoucherSecret::random(&mut rand::thread_rng()), 10);
            self.append(params, c.0.to_fr().unwrap(), now());
        }
    }

    /// The MMR as this coordinator shows it.
    fn shown(&self, id: u64) -> Option<&Mmr> {
        self.forked.get(&id).or_else(|| self.mmrs.get(&id))
    }
}

struct Mock {
    params: NetworkParams,
    coord_key: SigningKey,
    envelope_sk: HpkeSecretKey,
    op_key: SigningKey,
    key_info: IssuerKeyInfo,
    sw: Mutex<Switches>,
    books: Mutex<Books>,
}

type S = State<Arc<Mock>>;

async fn params_handler(State(m): S) -> Json<ParamsResponse> {
    Json(ParamsResponse {
        params: m.params.clone(),
        receipt_key: m.coord_key.verifying_key(),
        envelope_key: m.envelope_sk.public_key(),
        now: now(),
    })
}

async fn issuer_keys(State(m): S, Query(q): Query<IssuerKeysQuery>) -> Json<Vec<IssuerKeyInfo>> {
    if m.sw.lock().unwrap().list_no_key {
        return Json(vec![]);
    }
    let k = &m.key_info;
    let hit = q.issuer.as_deref().is_none_or(|i| i == k.issuer_id)
        && q.denomination.is_none_or(|d| d == k.denomination);
    Json(if hit { vec![k.clone()] } else { vec![] })
}

async fn publish(
    State(m): S,
    Json(req): Json<PublishRequest>,
) -> Result<Json<Signed<PublishReceipt>>, ApiError> {
    if req.key_id != m.key_info.key_id || req.denomination != m.key_info.denomination {
        return Err(ApiError::new(ErrorCode::UnknownKey, "no such key"));
    }
    let pk = issuer_sk().public_key().unwrap();
    pk.verify(
        &req.signature,
        &smpx_core::issuance::voucher_message(&req.commitment),
    )
    .map_err(|_| ApiError::new(ErrorCode::BadSignature, "bad signature"))?;
    let c = req.commitment.0.to_hex();
    let t = now();
    let status = VoucherStatus {
        commitment: req.commitment,
        denomination: req.denomination,
        state: VoucherState::Live,
        issuer_id: ISSUER.into(),
        key_id: req.key_id.clone(),
        published_at: t,
        expires_at: t + m.params.voucher_expiry_secs,
    };
    let paths = {
        let mut b = m.books.lock().unwrap();
        if b.vouchers.contains_key(&c) {
            return Err(ApiError::new(
                ErrorCode::AlreadyPublished,
                "already published",
            ));
        }
        b.vouchers.insert(c, status.clone());
        b.append(&m.params, req.commitment.0.to_fr().unwrap(), t)
    };
    let sw = m.sw.lock().unwrap();
    let signer = if sw.publish_receipt_wrong_key {
        SigningKey::generate()
    } else {
        m.coord_key.clone()
    };
    let body = PublishReceipt {
        commitment: req.commitment,
        denomination: req.denomination,
        value: Amount::from_credits(req.denomination).unwrap(),
        issuer_id: ISSUER.into(),
        key_id: req.key_id,
        published_at: status.published_at,
        expires_at: status.expires_at,
        paths,
    };
    Ok(Json(Signed::sign(&signer, PUBLISH_DOMAIN, body).unwrap()))
}

async fn voucher(State(m): S, Path(c): Path<String>) -> Result<Json<VoucherStatus>, ApiError> {
    let mut b = m.books.lock().unwrap();
    b.lookups += 1;
    b.vouchers
        .get(&c)
        .cloned()
        .map(Json)
        .ok_or_else(|| ApiError::new(ErrorCode::UnknownVoucher, "unknown"))
}

async fn issuer_info() -> Json<IssuerServiceInfo> {
    Json(IssuerServiceInfo {
        issuer_id: ISSUER.into(),
        coordinator_url: String::new(),
        denominations: vec![10],
        payment_methods: vec!["topup_code".into(), "devnet".into()],
    })
}

async fn purchase(
    State(m): S,
    Json(req): Json<PurchaseRequest>,
) -> Result<Json<PurchaseResponse>, ApiError> {
    if std::mem::take(&mut m.sw.lock().unwrap().fail_next_purchase) {
        return Err(ApiError::new(
            ErrorCode::UpstreamUnavailable,
            "payment backend down",
        ));
    }
    if req.key_id != m.key_info.key_id {
        return Err(ApiError::new(ErrorCode::UnknownKey, "not our current key"));
    }
    let code = match &req.payment {
        Payment::TopupCode { code } => code.clone(),
        Payment::Devnet => format!("devnet-{}", hex::encode(&req.blinded_message.0[..8])),
    };
    let sig = {
        let mut b = m.books.lock().unwrap();
        match b.purchases.get(&code) {
            Some((blinded, sig)) if *blinded == req.blinded_message.0 => sig.clone(),
            Some(_) => {
                return Err(ApiError::new(
                    ErrorCode::PaymentRejected,
                    "code already used",
                ))
            }
            None => {
                let sig = issuer_sk().blind_sign(&req.blinded_message).unwrap().0;
                b.purchases
                    .insert(code, (req.blinded_message.0.clone(), sig.clone()));
                sig
            }
        }
    };
    if std::mem::take(&mut m.sw.lock().unwrap().lose_next_purchase_answer) {
        return Err(ApiError::new(ErrorCode::Internal, "answer lost"));
    }
    Ok(Json(PurchaseResponse {
        key_id: req.key_id,
        denomination: req.denomination,
        blind_signature: smpx_core::crypto::blind::BlindSignature(sig),
        payment: PaymentReceipt {
            method: "topup_code".into(),
            note: "test".into(),
        },
    }))
}

async fn operator_info(State(m): S) -> Json<OperatorServiceInfo> {
    Json(OperatorServiceInfo {
        operator_id: OPERATOR.into(),
        receipt_key: m.op_key.verifying_key(),
        coordinator_url: String::new(),
    })
}

async fn redeem(
    State(m): S,
    Json(req): Json<RedeemRequest>,
) -> Result<Json<Signed<OperatorCreditReceipt>>, ApiError> {
    if req.version == 2 {
        return redeem_v2(&m, req.zk.unwrap()).map(Json);
    }
    let envelope = req.envelope.unwrap();
    let payload = open_v1(&m.envelope_sk, &envelope)?;
    if payload.operator_id != OPERATOR {
        return Err(ApiError::new(ErrorCode::OperatorMismatch, "other operator"));
    }
    let digest = envelope.digest();
    let receipt = {
        let mut b = m.books.lock().unwrap();
        if let Some(r) = b.redemptions.get(&digest) {
            r.clone()
        } else {
            // One voucher, one redemption, whichever the protocol.
            let s = VoucherSecret::from_bytes(&payload.secret).unwrap();
            if !b.nullifiers.insert(nullifier(&s).0) {
                return Err(ApiError::new(ErrorCode::AlreadyRedeemed, "nullifier spent"));
            }
            let c = payload.commitment.0.to_hex();
            let v = b
                .vouchers
                .get_mut(&c)
                .ok_or_else(|| ApiError::new(ErrorCode::UnknownVoucher, "unknown"))?;
            match v.state {
                VoucherState::Live => v.state = VoucherState::Redeemed,
                VoucherState::Redeemed => {
                    return Err(ApiError::new(ErrorCode::AlreadyRedeemed, "redeemed"))
                }
                VoucherState::Released => {
                    return Err(ApiError::new(ErrorCode::VoucherExpired, "expired"))
                }
            }
            let value = Amount::from_credits(payload.denomination).unwrap();
            let share = Amount(value.0 * 7 / 10);
            let wrong_digest = m.sw.lock().unwrap().coordinator_receipt_wrong_digest;
            let coordinator_receipt = Signed::sign(
                &m.coord_key,
                REDEMPTION_DOMAIN,
                RedemptionReceipt {
                    operator_id: OPERATOR.into(),
                    denomination: payload.denomination,
                    value,
                    operator_amount: share,
                    fund_amount: Amount(value.0 - share.0),
                    share_bps: 7000,
                    envelope_digest: if wrong_digest { [7; 32] } else { digest },
                    redeemed_at: now(),
                    nullifier: None,
                    mmr_id: None,
                },
            )
            .unwrap();
            let r = Signed::sign(
                &m.op_key,
                OPERATOR_DOMAIN,
                OperatorCreditReceipt {
                    operator_id: OPERATOR.into(),
                    denomination: payload.denomination,
                    credited: value,
                    coordinator_receipt,
                    issued_at: now(),
                },
            )
            .unwrap();
            b.redemptions.insert(digest, r.clone());
            r
        }
    };
    if std::mem::take(&mut m.sw.lock().unwrap().lose_next_redeem_answer) {
        return Err(ApiError::new(ErrorCode::Internal, "answer lost"));
    }
    Ok(Json(receipt))
}

/// The coordinator's half of a v0.2 redemption (here inside the operator's handler).
fn redeem_v2(m: &Mock, z: ZkRedemption) -> Result<Signed<OperatorCreditReceipt>, ApiError> {
    let digest = z.digest();
    let mut b = m.books.lock().unwrap();
    b.zk_seen.push(z.clone());
    if let Some(r) = b.redemptions.get(&digest) {
        return Ok(r.clone());
    }
    let mmr = b
        .mmrs
        .get(&z.mmr_id)
        .ok_or_else(|| ApiError::new(ErrorCode::UnknownMmr, "no such MMR"))?;
    if !rotation::mmr_accepts_redemptions(&m.params, z.mmr_id, now()) {
        return Err(ApiError::new(ErrorCode::RetiredRoot, "retired"));
    }
    if !(0..=mmr.size()).any(|n| FieldBytes::from_fr(&mmr.root_at(n).unwrap()) == z.root) {
        return Err(ApiError::new(ErrorCode::UnknownRoot, "never a root"));
    }
    let proof = smpx_zk::RedeemProof::from_bytes(&z.proof)
        .map_err(|e| ApiError::new(ErrorCode::MalformedProof, e.to_string()))?;
    let public = smpx_zk::RedeemPublic {
        root: z.root.to_fr().unwrap(),
        nullifier: z.nullifier.to_fr().unwrap(),
        denomination: z.denomination,
        binding: smpx_zk::binding_hash(OPERATOR, z.fee.0),
    };
    if !smpx_zk::verify(&ceremony().pvk, &public, &proof).unwrap() {
        return Err(ApiError::new(ErrorCode::InvalidProof, "does not verify"));
    }
    if !b.nullifiers.insert(z.nullifier) {
        return Err(ApiError::new(ErrorCode::AlreadyRedeemed, "nullifier spent"));
    }
    let value = Amount::from_credits(z.denomination).unwrap();
    let share = Amount(value.0 * 7 / 10);
    let coordinator_receipt = Signed::sign(
        &m.coord_key,
        REDEMPTION_DOMAIN,
        RedemptionReceipt {
            operator_id: OPERATOR.into(),
            denomination: z.denomination,
            value,
            operator_amount: share,
            fund_amount: Amount(value.0 - share.0),
            share_bps: 7000,
            envelope_digest: digest,
            redeemed_at: now(),
            nullifier: Some(z.nullifier),
            mmr_id: Some(z.mmr_id),
        },
    )
    .unwrap();
    let r = Signed::sign(
        &m.op_key,
        OPERATOR_DOMAIN,
        OperatorCreditReceipt {
            operator_id: OPERATOR.into(),
            denomination: z.denomination,
            credited: value,
            coordinator_receipt,
            issued_at: now(),
        },
    )
    .unwrap();
    b.redemptions.insert(digest, r.clone());
    drop(b);
    if std::mem::take(&mut m.sw.lock().unwrap().lose_next_redeem_answer) {
        return Err(ApiError::new(ErrorCode::Internal, "answer lost"));
    }
    Ok(r)
}

async fn zk_info(State(m): S) -> Result<Json<ZkInfo>, ApiError> {
    if m.sw.lock().unwrap().zk_off {
        return Err(ApiError::new(ErrorCode::ZkUnavailable, "no ceremony keys"));
    }
    let c = ceremony();
    Ok(Json(ZkInfo {
        levels: LEVELS,
        verifying_key: b64::encode(&c.vk.to_bytes().unwrap()),
        transcript_sha256: hex::encode(Sha256::digest(&c.transcript)),
        transcript_bytes: c.transcript.len() as u64,
    }))
}

async fn zk_transcript(State(m): S) -> Vec<u8> {
    m.books.lock().unwrap().transcript_downloads += 1;
    let mut t = ceremony().transcript.clone();
    if m.sw.lock().unwrap().corrupt_transcript {
        let n = t.len();
        t[n - 1] ^= 1;
    }
    t
}

async fn checkpoint(
    State(m): S,
    Path(id): Path<u64>,
    Query(q): Query<CheckpointQuery>,
) -> Result<Json<Signed<Checkpoint>>, ApiError> {
    let b = m.books.lock().unwrap();
    let mmr = b
        .shown(id)
        .ok_or_else(|| ApiError::new(ErrorCode::UnknownMmr, "no such MMR"))?;
    let size = q.size.unwrap_or(mmr.size());
    let body = Checkpoint {
        mmr_id: id,
        levels: LEVELS,
        size,
        root: FieldBytes::from_fr(&mmr.root_at(size).unwrap()),
        at: now(),
    };
    Ok(Json(
        Signed::sign(&m.coord_key, CHECKPOINT_DOMAIN, body).unwrap(),
    ))
}

async fn leaves(
    State(m): S,
    Path(id): Path<u64>,
    Query(q): Query<LeavesQuery>,
) -> Result<Json<LeavesPage>, ApiError> {
    let mut b = m.books.lock().unwrap();
    let mmr = b
        .shown(id)
        .ok_or_else(|| ApiError::new(ErrorCode::UnknownMmr, "no such MMR"))?;
    let from = q.from.unwrap_or(0);
    let limit = u64::from(q.limit.unwrap_or(4096).min(4096));
    let size = mmr.size();
    let leaves: Vec<FieldBytes> = (from..size.min(from + limit))
        .map(|i| FieldBytes::from_fr(&mmr.leaf(i).unwrap()))
        .collect();
    b.leaves_served += leaves.len() as u64;
    Ok(Json(LeavesPage {
        mmr_id: id,
        levels: LEVELS,
        size,
        from,
        leaves,
    }))
}

struct Net {
    mock: Arc<Mock>,
    coordinator: String,
    issuer: String,
    operator: String,
    _servers: [Server; 3],
}

async fn serve(router: Router) -> Server {
    net::serve_router(router).await.unwrap()
}

async fn network() -> Net {
    // Made once per test binary, before any request needs it (it takes a while).
    tokio::task::spawn_blocking(ceremony).await.unwrap();
    let t = now();
    // MMRs rotate weekly, so two are open (0 and 1) and every voucher is in both.
    let params = NetworkParams {
        epoch: t - 10 * 86_400,
        protocol_versions: vec![1, 2],
        mmr_period_secs: 7 * 86_400,
        mmr_levels: LEVELS,
        ..NetworkParams::default()
    };
    let pk = issuer_sk().public_key().unwrap();
    let period = keys::period_at(&params, t);
    let key_info = IssuerKeyInfo {
        key_id: hex::encode(pk.key_id().unwrap()),
        issuer_id: ISSUER.into(),
        denomination: 10,
        period,
        valid_from: keys::period_start(&params, period),
        publish_deadline: keys::publish_deadline(&params, period),
        public_key: b64::encode(&pk.to_spki().unwrap()),
    };
    let mock = Arc::new(Mock {
        params,
        coord_key: SigningKey::generate(),
        envelope_sk: HpkeSecretKey::generate(),
        op_key: SigningKey::generate(),
        key_info,
        sw: Mutex::new(Switches::default()),
        books: Mutex::new(Books::default()),
    });
    let coordinator = serve(
        Router::new()
            .route("/v1/params", get(params_handler))
            .route("/v1/issuer-keys", get(issuer_keys))
            .route("/v1/vouchers", post(publish))
            .route("/v1/vouchers/{c}", get(voucher))
            .route("/v1/zk", get(zk_info))
            .route("/v1/zk/transcript", get(zk_transcript))
            .route("/v1/mmrs/{id}/checkpoint", get(checkpoint))
            .route("/v1/mmrs/{id}/leaves", get(leaves))
            .with_state(mock.clone()),
    )
    .await;
    let issuer = serve(
        Router::new()
            .route("/v1/info", get(issuer_info))
            .route("/v1/purchases", post(purchase))
            .with_state(mock.clone()),
    )
    .await;
    let operator = serve(
        Router::new()
            .route("/v1/info", get(operator_info))
            .route("/v1/redeem", post(redeem))
            .with_state(mock.clone()),
    )
    .await;
    Net {
        mock,
        coordinator: coordinator.url.clone(),
        issuer: issuer.url.clone(),
        operator: operator.url.clone(),
        _servers: [coordinator, issuer, operator],
    }
}

fn code(c: &str) -> Payment {
    Payment::TopupCode { code: c.into() }
}

/// A new wallet in `dir`, whose proving-key cache is warm (see [`warm_key_cache`]).
async fn new_wallet(dir: &tempfile::TempDir, name: &str) -> (Wallet, String) {
    warm_key_cache(dir);
    cold_wallet(dir, name).await
}

/// A new wallet that has never seen the ceremony keys.
async fn cold_wallet(dir: &tempfile::TempDir, name: &str) -> (Wallet, String) {
    Wallet::create_with(
        &dir.path().join(name),
        PASS,
        KdfParams::insecure_for_tests(),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn buy_publish_redeem_refresh() {
    let net = network().await;
    let dir = tempfile::tempdir().unwrap();
    let (w, _) = new_wallet(&dir, "w.db").await;

    let v = w
        .buy(&net.coordinator, &net.issuer, 10, code("CODE-1"))
        .await
        .unwrap();
    assert_eq!(v.state, LocalState::Bought);
    assert_eq!((v.index, v.denomination), (0, 10));
    assert_eq!(v.issuer_id, ISSUER);
    assert_eq!(v.key_id, net.mock.key_info.key_id);
    assert_eq!(v.publish_deadline, Some(net.mock.key_info.publish_deadline));

    // Redeeming before publishing is refused.
    let e = w
        .redeem(&net.coordinator, &net.operator, v.id)
        .await
        .unwrap_err();
    assert!(matches!(e, WalletError::InvalidState { .. }), "{e}");

    let v = w
        .publish(&net.coordinator, v.id, Duration::from_millis(10))
        .await
        .unwrap();
    assert_eq!(v.state, LocalState::Published);
    assert!(v.published_at.is_some() && v.expires_at > v.published_at);
    let e = w
        .publish(&net.coordinator, v.id, Duration::ZERO)
        .await
        .unwrap_err();
    assert!(matches!(e, WalletError::InvalidState { .. }), "{e}");

    let credit = w
        .redeem(&net.coordinator, &net.operator, v.id)
        .await
        .unwrap();
    assert_eq!(credit.operator_id, OPERATOR);
    assert_eq!(credit.credited, Amount::from_credits(10).unwrap());
    assert_eq!(credit.signed_receipt().unwrap().body.operator_id, OPERATOR);
    let v = w.voucher(v.id).await.unwrap();
    assert_eq!(v.state, LocalState::Redeemed);
    assert_eq!(v.redeemed_at_operator.as_deref(), Some(OPERATOR));
    assert_eq!(w.credits().await.unwrap(), vec![credit.clone()]);

    // A second voucher, published, then released by the coordinator at expiry.
    let v2 = w
        .buy(&net.coordinator, &net.issuer, 10, Payment::Devnet)
        .await
        .unwrap();
    assert_eq!(v2.index, 1);
    w.publish(&net.coordinator, v2.id, Duration::ZERO)
        .await
        .unwrap();
    assert!(w.refresh(&net.coordinator).await.unwrap().is_empty());
    net.mock
        .books
        .lock()
        .unwrap()
        .vouchers
        .get_mut(&v2.commitment)
        .unwrap()
        .state = VoucherState::Released;
    let changed = w.refresh(&net.coordinator).await.unwrap();
    assert_eq!(changed.len(), 1);
    assert_eq!(
        (changed[0].id, changed[0].state),
        (v2.id, LocalState::Expired)
    );

    let b = w.balance().await.unwrap();
    assert_eq!(b.redeemed.count, 1);
    assert_eq!(b.expired.count, 1);
    assert_eq!(b.published.count, 0);
    assert_eq!(b.credits[OPERATOR], Amount::from_credits(10).unwrap());
    let json = serde_json::to_value(&b).unwrap();
    assert_eq!(json["redeemed"]["value"], 10_000_000);
}

#[tokio::test]
async fn failed_purchase_stays_buying_and_resumes_without_paying_twice() {
    let net = network().await;
    let dir = tempfile::tempdir().unwrap();
    let (w, _) = new_wallet(&dir, "w.db").await;

    // The issuer refuses before signing.
    net.mock.sw.lock().unwrap().fail_next_purchase = true;
    let e = w
        .buy(&net.coordinator, &net.issuer, 10, code("C-1"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::UpstreamUnavailable));
    let v = w.vouchers().await.unwrap().remove(0);
    assert_eq!(v.state, LocalState::Buying);
    let v = w.resume_buy(&net.issuer, v.id, code("C-1")).await.unwrap();
    assert_eq!(v.state, LocalState::Bought);

    // The issuer signs but the answer is lost: the retry gets the same signature for the
    // same code and blinded message, and the code is not spent twice.
    net.mock.sw.lock().unwrap().lose_next_purchase_answer = true;
    assert!(w
        .buy(&net.coordinator, &net.issuer, 10, code("C-2"))
        .await
        .is_err());
    let pending = w
        .vouchers()
        .await
        .unwrap()
        .into_iter()
        .find(|v| v.state == LocalState::Buying)
        .unwrap();
    assert_eq!(pending.index, 1);
    let v = w
        .resume_buy(&net.issuer, pending.id, code("C-2"))
        .await
        .unwrap();
    assert_eq!(v.state, LocalState::Bought);
    assert_eq!(net.mock.books.lock().unwrap().purchases.len(), 2);
    // A resumed voucher is a real one: it publishes.
    let v = w
        .publish(&net.coordinator, v.id, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(v.state, LocalState::Published);

    // Denominations the issuer does not sell are refused before anything is reserved.
    let next = w.next_index().await.unwrap();
    let e = w
        .buy(&net.coordinator, &net.issuer, 100, code("C-3"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, WalletError::UnsupportedDenomination { .. }),
        "{e}"
    );
    // No current key at the coordinator: refused, nothing reserved.
    net.mock.sw.lock().unwrap().list_no_key = true;
    let e = w
        .buy(&net.coordinator, &net.issuer, 10, code("C-3"))
        .await
        .unwrap_err();
    assert!(matches!(e, WalletError::NoIssuerKey { .. }), "{e}");
    assert_eq!(w.next_index().await.unwrap(), next);
}

#[tokio::test]
async fn receipts_that_do_not_verify_are_refused() {
    let net = network().await;
    let dir = tempfile::tempdir().unwrap();
    let (w, _) = new_wallet(&dir, "w.db").await;
    let v = w
        .buy(&net.coordinator, &net.issuer, 10, code("X"))
        .await
        .unwrap();

    net.mock.sw.lock().unwrap().publish_receipt_wrong_key = true;
    let e = w
        .publish(&net.coordinator, v.id, Duration::ZERO)
        .await
        .unwrap_err();
    assert!(matches!(e, WalletError::Verification(_)), "{e}");
    assert_eq!(w.voucher(v.id).await.unwrap().state, LocalState::Bought);
    net.mock.sw.lock().unwrap().publish_receipt_wrong_key = false;
    // (The coordinator did record it; the retry confirms through the status.)
    w.publish(&net.coordinator, v.id, Duration::ZERO)
        .await
        .unwrap();

    net.mock.sw.lock().unwrap().coordinator_receipt_wrong_digest = true;
    let e = w
        .redeem_with(
            &net.coordinator,
            &net.operator,
            v.id,
            &RedeemOptions::v1(),
            &|_| {},
        )
        .await
        .unwrap_err();
    assert!(matches!(e, WalletError::Verification(_)), "{e}");
    assert!(e.to_string().contains("another redemption"), "{e}");
    assert!(w.credits().await.unwrap().is_empty());
    assert_eq!(w.voucher(v.id).await.unwrap().state, LocalState::Published);
}

#[tokio::test]
async fn restore_and_recover_finds_published_vouchers() {
    let net = network().await;
    let dir = tempfile::tempdir().unwrap();
    let (w, phrase) = new_wallet(&dir, "a.db").await;
    // index 0: published; 1: bought only; 2: redeemed; 3: published.
    let v0 = w
        .buy(&net.coordinator, &net.issuer, 10, code("0"))
        .await
        .unwrap();
    w.publish(&net.coordinator, v0.id, Duration::ZERO)
        .await
        .unwrap();
    let _v1 = w
        .buy(&net.coordinator, &net.issuer, 10, code("1"))
        .await
        .unwrap();
    let v2 = w
        .buy(&net.coordinator, &net.issuer, 10, code("2"))
        .await
        .unwrap();
    w.publish(&net.coordinator, v2.id, Duration::ZERO)
        .await
        .unwrap();
    // Protocol 1, so the coordinator knows which voucher it was (a protocol-2 redemption
    // leaves the voucher's status `live`: recovery then finds it published).
    w.redeem_with(
        &net.coordinator,
        &net.operator,
        v2.id,
        &RedeemOptions::v1(),
        &|_| {},
    )
    .await
    .unwrap();
    let v3 = w
        .buy(&net.coordinator, &net.issuer, 10, code("3"))
        .await
        .unwrap();
    w.publish(&net.coordinator, v3.id, Duration::ZERO)
        .await
        .unwrap();

    let r = Wallet::restore_with(
        &dir.path().join("b.db"),
        "new pass",
        &phrase,
        KdfParams::insecure_for_tests(),
    )
    .await
    .unwrap();
    assert!(r.vouchers().await.unwrap().is_empty());
    let scanned = Mutex::new(Vec::new());
    let found = r
        .recover(&net.coordinator, 3, &|i| scanned.lock().unwrap().push(i))
        .await
        .unwrap();
    let got: HashSet<(u64, String, LocalState)> = found
        .iter()
        .map(|v| (v.index, v.commitment.clone(), v.state))
        .collect();
    let want: HashSet<(u64, String, LocalState)> = [
        (0, v0.commitment.clone(), LocalState::Published),
        (2, v2.commitment.clone(), LocalState::Redeemed),
        (3, v3.commitment.clone(), LocalState::Published),
    ]
    .into_iter()
    .collect();
    assert_eq!(got, want);
    // Index 1 (never published) was a gap; the scan went 3 past the last find.
    assert_eq!(*scanned.lock().unwrap(), vec![0, 1, 2, 3, 4, 5, 6]);
    assert_eq!(r.next_index().await.unwrap(), 4);
    // The recovered vouchers are usable: redeem one.
    let rv0 = found.iter().find(|v| v.index == 0).unwrap();
    assert_eq!(
        rv0.issuer_id, ISSUER,
        "recovered vouchers name their issuer"
    );
    assert_eq!(rv0.key_id, v0.key_id);
    r.redeem(&net.coordinator, &net.operator, rv0.id)
        .await
        .unwrap();
    // A new purchase does not reuse a recovered index.
    let nv = r
        .buy(&net.coordinator, &net.issuer, 10, code("new"))
        .await
        .unwrap();
    assert_eq!(nv.index, 4);
    // Recovering again adds nothing and keeps next_index.
    assert!(r
        .recover(&net.coordinator, 2, &|_| {})
        .await
        .unwrap()
        .is_empty());
    assert_eq!(r.next_index().await.unwrap(), 5);
    // gap_limit 3 at 3 denominations: 3 lookups per index beyond the local ones.
    assert!(net.mock.books.lock().unwrap().lookups > 0);
}

// ---------------------------------------------------------------------------------------------
// v0.2: zero-knowledge redemption

async fn published(w: &Wallet, net: &Net, code_: &str) -> smpx_wallet::VoucherRecord {
    let v = w
        .buy(&net.coordinator, &net.issuer, 10, code(code_))
        .await
        .unwrap();
    w.publish(&net.coordinator, v.id, Duration::ZERO)
        .await
        .unwrap()
}

fn opts(mmr: MmrChoice, update_path: bool) -> RedeemOptions {
    RedeemOptions {
        mmr,
        update_path,
        ..RedeemOptions::default()
    }
}

fn root_of(net: &Net, id: u64, size: u64) -> FieldBytes {
    let b = net.mock.books.lock().unwrap();
    FieldBytes::from_fr(&b.mmrs[&id].root_at(size).unwrap())
}

#[tokio::test]
async fn v2_redemption_end_to_end_with_progress_and_caches() {
    let net = network().await;
    let dir = tempfile::tempdir().unwrap();
    let (w, _) = cold_wallet(&dir, "w.db").await;
    net.mock
        .books
        .lock()
        .unwrap()
        .append_others(&net.mock.params, 5);
    let v = published(&w, &net, "Z1").await;

    // The publish receipt's paths are stored: one per open MMR, oldest first.
    let paths = w.paths(v.id).await.unwrap();
    assert_eq!(
        paths
            .iter()
            .map(|p| (p.mmr.id, p.leaf_index))
            .collect::<Vec<_>>(),
        vec![(0, 5), (1, 5)]
    );
    net.mock
        .books
        .lock()
        .unwrap()
        .append_others(&net.mock.params, 7);

    let seen = Mutex::new(Vec::<RedeemProgress>::new());
    let credit = w
        .redeem_with(
            &net.coordinator,
            &net.operator,
            v.id,
            &RedeemOptions::default(),
            &|p| seen.lock().unwrap().push(p),
        )
        .await
        .unwrap();
    assert_eq!(credit.protocol, 2);
    assert_eq!(credit.credited, Amount::from_credits(10).unwrap());
    assert_eq!(
        credit
            .signed_receipt()
            .unwrap()
            .body
            .coordinator_receipt
            .body
            .mmr_id,
        Some(0)
    );
    let v = w.voucher(v.id).await.unwrap();
    assert_eq!(v.state, LocalState::Redeemed);
    assert_eq!(v.redeemed_at_operator.as_deref(), Some(OPERATOR));
    // The coordinator saw the older MMR's latest root, not which voucher.
    {
        let b = net.mock.books.lock().unwrap();
        assert_eq!(b.zk_seen.len(), 1);
        assert_eq!(b.zk_seen[0].mmr_id, 0);
        assert_eq!(b.vouchers[&v.commitment].state, VoucherState::Live);
        assert_eq!(b.leaves_served, 13, "every leaf of MMR 0, once");
        assert_eq!(b.transcript_downloads, 1);
    }
    let root = root_of(&net, 0, 13);
    assert_eq!(net.mock.books.lock().unwrap().zk_seen[0].root, root);

    // The stages, in order (counters collapsed).
    let stages: Vec<&'static str> = {
        let mut out: Vec<&'static str> = Vec::new();
        for p in seen.lock().unwrap().iter() {
            let s = match p {
                RedeemProgress::FetchingKeys => "keys",
                RedeemProgress::DownloadingTranscript { .. } => "transcript",
                RedeemProgress::VerifyingTranscript { .. } => "verify",
                RedeemProgress::DownloadingLeaves { .. } => "leaves",
                RedeemProgress::Proving => "prove",
                RedeemProgress::Submitting => "submit",
                _ => "other",
            };
            if out.last() != Some(&s) {
                out.push(s);
            }
        }
        out
    };
    assert_eq!(
        stages,
        ["keys", "transcript", "verify", "leaves", "prove", "submit"]
    );
    assert!(seen
        .lock()
        .unwrap()
        .contains(&RedeemProgress::DownloadingLeaves {
            mmr_id: 0,
            done: 13,
            total: 13
        }));

    // A second voucher: the proving key comes from the cache, and only new leaves are
    // downloaded.
    let v2 = published(&w, &net, "Z2").await;
    net.mock
        .books
        .lock()
        .unwrap()
        .append_others(&net.mock.params, 2);
    let seen = Mutex::new(Vec::<RedeemProgress>::new());
    w.redeem_with(
        &net.coordinator,
        &net.operator,
        v2.id,
        &RedeemOptions::default(),
        &|p| seen.lock().unwrap().push(p),
    )
    .await
    .unwrap();
    {
        let b = net.mock.books.lock().unwrap();
        assert_eq!(b.transcript_downloads, 1);
        assert_eq!(b.leaves_served, 13 + 3);
        assert_eq!(
            b.zk_seen[1].root,
            FieldBytes::from_fr(&b.mmrs[&0].root_at(16).unwrap())
        );
    }
    assert!(!seen
        .lock()
        .unwrap()
        .iter()
        .any(|p| matches!(p, RedeemProgress::VerifyingTranscript { .. })));
    assert_eq!(
        w.credits()
            .await
            .unwrap()
            .iter()
            .map(|c| c.protocol)
            .collect::<Vec<_>>(),
        vec![2, 2]
    );
}

#[tokio::test]
async fn the_same_voucher_redeems_once_whatever_the_protocols() {
    let net = network().await;
    let dir = tempfile::tempdir().unwrap();
    let (a, phrase) = new_wallet(&dir, "a.db").await;
    let v1 = published(&a, &net, "D1").await;
    let v2 = published(&a, &net, "D2").await;
    let v3 = published(&a, &net, "D3").await;
    // A copy of the wallet, restored from the phrase, redeems the same vouchers again.
    let b = Wallet::restore_with(
        &dir.path().join("b.db"),
        PASS,
        &phrase,
        KdfParams::insecure_for_tests(),
    )
    .await
    .unwrap();
    b.recover(&net.coordinator, 2, &|_| {}).await.unwrap();
    let in_b = |c: &str| {
        let c = c.to_owned();
        let b = &b;
        async move {
            b.vouchers()
                .await
                .unwrap()
                .into_iter()
                .find(|v| v.commitment == c)
                .unwrap()
                .id
        }
    };

    // v2, then v2 again.
    a.redeem(&net.coordinator, &net.operator, v1.id)
        .await
        .unwrap();
    let e = a
        .redeem(&net.coordinator, &net.operator, v1.id)
        .await
        .unwrap_err();
    assert!(matches!(e, WalletError::InvalidState { .. }), "{e}");
    let id = in_b(&v1.commitment).await;
    let e = b
        .redeem(&net.coordinator, &net.operator, id)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::AlreadyRedeemed), "{e}");
    assert_eq!(b.voucher(id).await.unwrap().state, LocalState::Redeemed);

    // v1, then v2.
    a.redeem_with(
        &net.coordinator,
        &net.operator,
        v2.id,
        &RedeemOptions::v1(),
        &|_| {},
    )
    .await
    .unwrap();
    let id = in_b(&v2.commitment).await;
    let e = b
        .redeem(&net.coordinator, &net.operator, id)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::AlreadyRedeemed), "{e}");

    // v2 (without a stored path: found among the leaves), then v1.
    let id = in_b(&v3.commitment).await;
    assert!(b.paths(id).await.unwrap().is_empty());
    let c = b.redeem(&net.coordinator, &net.operator, id).await.unwrap();
    assert_eq!(c.protocol, 2);
    let e = a
        .redeem_with(
            &net.coordinator,
            &net.operator,
            v3.id,
            &RedeemOptions::v1(),
            &|_| {},
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::AlreadyRedeemed), "{e}");
    assert_eq!(net.mock.books.lock().unwrap().nullifiers.len(), 3);
}

#[tokio::test]
async fn without_update_the_receipt_path_and_its_old_root_are_used() {
    let net = network().await;
    let dir = tempfile::tempdir().unwrap();
    let (w, _) = new_wallet(&dir, "w.db").await;
    net.mock
        .books
        .lock()
        .unwrap()
        .append_others(&net.mock.params, 3);
    let v = published(&w, &net, "N1").await;
    net.mock
        .books
        .lock()
        .unwrap()
        .append_others(&net.mock.params, 9);
    let c = w
        .redeem_with(
            &net.coordinator,
            &net.operator,
            v.id,
            &opts(MmrChoice::Older, false),
            &|_| {},
        )
        .await
        .unwrap();
    assert_eq!(c.protocol, 2);
    {
        let b = net.mock.books.lock().unwrap();
        assert_eq!(b.leaves_served, 0, "no leaf is downloaded");
        // The root right after its own append: size 4.
        assert_eq!(
            b.zk_seen[0].root,
            FieldBytes::from_fr(&b.mmrs[&0].root_at(4).unwrap())
        );
    }

    // A recovered voucher has no receipt path: it must be updated.
    let (w2, phrase) = new_wallet(&dir, "x.db").await;
    let v = published(&w2, &net, "N2").await;
    let r = Wallet::restore_with(
        &dir.path().join("y.db"),
        PASS,
        &phrase,
        KdfParams::insecure_for_tests(),
    )
    .await
    .unwrap();
    let found = r.recover(&net.coordinator, 2, &|_| {}).await.unwrap();
    assert_eq!(found[0].commitment, v.commitment);
    let e = r
        .redeem_with(
            &net.coordinator,
            &net.operator,
            found[0].id,
            &opts(MmrChoice::Older, false),
            &|_| {},
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, WalletError::NoStoredPath { mmr_id: 0, .. }),
        "{e}"
    );
}

#[tokio::test]
async fn the_newer_mmr_can_be_chosen() {
    let net = network().await;
    let dir = tempfile::tempdir().unwrap();
    let (w, _) = new_wallet(&dir, "w.db").await;
    let v = published(&w, &net, "M1").await;
    let va = published(&w, &net, "M2").await;
    w.redeem_with(
        &net.coordinator,
        &net.operator,
        v.id,
        &opts(MmrChoice::Newer, true),
        &|_| {},
    )
    .await
    .unwrap();
    w.redeem_with(
        &net.coordinator,
        &net.operator,
        va.id,
        &opts(MmrChoice::Newer, false),
        &|_| {},
    )
    .await
    .unwrap();
    let b = net.mock.books.lock().unwrap();
    assert_eq!(
        b.zk_seen.iter().map(|z| z.mmr_id).collect::<Vec<_>>(),
        vec![1, 1]
    );
    assert_eq!(b.zk_seen[0].root, FieldBytes::from_fr(&b.mmrs[&1].root()));
}

#[tokio::test]
async fn a_forked_view_is_detected_and_nothing_is_redeemed() {
    let net = network().await;
    let dir = tempfile::tempdir().unwrap();
    let (w, _) = new_wallet(&dir, "w.db").await;
    net.mock
        .books
        .lock()
        .unwrap()
        .append_others(&net.mock.params, 4);
    let v = published(&w, &net, "F1").await;
    let v2 = published(&w, &net, "F2").await;
    // The first redemption stores MMR 0's checkpoint at size 6.
    w.redeem(&net.coordinator, &net.operator, v.id)
        .await
        .unwrap();
    // Then the coordinator shows this wallet another history: leaf 0 replaced, one more leaf.
    {
        let mut b = net.mock.books.lock().unwrap();
        let real = &b.mmrs[&0];
        let mut leaves: Vec<Fr> = (0..real.size()).map(|i| real.leaf(i).unwrap()).collect();
        leaves[0] = Fr::from(12345u64);
        leaves.push(Fr::from(777u64));
        let fork = Mmr::from_leaves(MmrParams::new(0, LEVELS).unwrap(), leaves).unwrap();
        b.forked.insert(0, fork);
    }
    let e = w
        .redeem(&net.coordinator, &net.operator, v2.id)
        .await
        .unwrap_err();
    match &e {
        WalletError::ForkedView {
            mmr_id,
            earlier,
            later,
        } => {
            assert_eq!(*mmr_id, 0);
            assert_eq!((earlier.body.size, later.body.size), (6, 7));
        }
        other => panic!("expected a forked view, got {other}"),
    }
    assert_eq!(w.voucher(v2.id).await.unwrap().state, LocalState::Published);
    assert_eq!(net.mock.books.lock().unwrap().zk_seen.len(), 1);
    // The newer MMR is not forked: redeeming through it works.
    w.redeem_with(
        &net.coordinator,
        &net.operator,
        v2.id,
        &opts(MmrChoice::Newer, true),
        &|_| {},
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn v2_unavailable_and_bad_transcripts_are_typed_errors() {
    let net = network().await;
    let dir = tempfile::tempdir().unwrap();
    let (w, _) = cold_wallet(&dir, "w.db").await;
    let v = published(&w, &net, "U1").await;

    net.mock.sw.lock().unwrap().zk_off = true;
    let e = w
        .redeem(&net.coordinator, &net.operator, v.id)
        .await
        .unwrap_err();
    assert!(matches!(e, WalletError::ZkUnavailable { .. }), "{e}");
    net.mock.sw.lock().unwrap().zk_off = false;

    net.mock.sw.lock().unwrap().corrupt_transcript = true;
    let e = w
        .redeem(&net.coordinator, &net.operator, v.id)
        .await
        .unwrap_err();
    assert!(matches!(e, WalletError::TranscriptMismatch { .. }), "{e}");
    net.mock.sw.lock().unwrap().corrupt_transcript = false;
    assert_eq!(w.voucher(v.id).await.unwrap().state, LocalState::Published);
    assert!(net.mock.books.lock().unwrap().zk_seen.is_empty());

    // v1 still works meanwhile.
    let c = w
        .redeem_with(
            &net.coordinator,
            &net.operator,
            v.id,
            &RedeemOptions::v1(),
            &|_| {},
        )
        .await
        .unwrap();
    assert_eq!(c.protocol, 1);
}

#[tokio::test]
async fn lost_v2_answer_resends_the_same_proof() {
    let net = network().await;
    let dir = tempfile::tempdir().unwrap();
    let (w, _) = new_wallet(&dir, "w.db").await;
    let v = published(&w, &net, "L1").await;
    net.mock.sw.lock().unwrap().lose_next_redeem_answer = true;
    assert!(w
        .redeem(&net.coordinator, &net.operator, v.id)
        .await
        .is_err());
    assert_eq!(w.voucher(v.id).await.unwrap().state, LocalState::Published);
    // More vouchers meanwhile: the retry must still re-send the proof it made, not a new one.
    net.mock
        .books
        .lock()
        .unwrap()
        .append_others(&net.mock.params, 3);
    let c = w
        .redeem(&net.coordinator, &net.operator, v.id)
        .await
        .unwrap();
    assert_eq!(c.protocol, 2);
    let b = net.mock.books.lock().unwrap();
    assert_eq!(b.zk_seen.len(), 2);
    assert_eq!(b.zk_seen[0], b.zk_seen[1]);
}
