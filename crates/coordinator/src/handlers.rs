//! `/v1` endpoints. Each handler reads the clock once, loads what the rule needs, asks the
//! rule in [`smpx_core::rules`] whether the request is acceptable, lets the store apply it in
//! one transaction, and answers; none keeps state or decides anything of its own.

use crate::Coordinator;
use axum::extract::FromRequestParts;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::Router;
use smpx_core::api::*;
use smpx_core::crypto::b64;
use smpx_core::crypto::blind::IssuerPublicKey;
use smpx_core::crypto::field::FieldBytes;
use smpx_core::crypto::voucher::Commitment;
use smpx_core::crypto::VoucherSecret;
use smpx_core::error::err;
use smpx_core::ledger::valid_id;
use smpx_core::receipt::{Signed, PUBLISH_DOMAIN, REDEMPTION_DOMAIN};
use smpx_core::redemption::{open_v1, PROTOCOL_V2};
use smpx_core::rules::publish::Refused;
use smpx_core::rules::redeem::{ProofRejected, V1Refused, V2Refused, Version};
use smpx_core::{keys, rules, Amount, ErrorCode};
use smpx_http::common::Admin;
use smpx_http::Path;
use smpx_http::{bearer_token, split_credential, token_matches, ApiError, ApiResult, Json, Query};
use smpx_store::coordinator::{
    KeyRow, NewRedemption, NewVoucher, NewZkRedemption, OperatorRow, PublishOutcome, RedeemOutcome,
    ShareSource, StatementRow, ZkRedeemOutcome,
};
use smpx_store::StoreError;
use std::sync::Arc;

type AppState = State<Arc<Coordinator>>;

impl smpx_http::common::AdminToken for Coordinator {
    fn admin_token_hash(&self) -> &[u8; 32] {
        &self.admin_token_hash
    }
}

pub(crate) fn router(state: Arc<Coordinator>) -> Router {
    let r = Router::new()
        .route("/openapi.json", get(openapi))
        .route("/v1/health", get(smpx_http::common::health))
        .route("/v1/params", get(params))
        .route("/v1/issuers", get(issuers))
        .route("/v1/issuers/{id}", get(issuer))
        .route("/v1/issuer-keys", get(issuer_keys).post(register_key))
        .route("/v1/vouchers", post(publish))
        .route("/v1/vouchers/{commitment}", get(voucher))
        .route("/v1/redemptions", post(redeem))
        .route("/v1/operators", get(operators))
        .route("/v1/operators/{id}/share", get(operator_share))
        .route("/v1/share-statements", post(submit_statement))
        .route("/v1/share-statements/{digest}", get(share_statement))
        .route("/v1/trusted-directories", get(trusted_directories))
        .route("/v1/ledger/totals", get(totals))
        .route("/v1/ledger/entries", get(entries))
        .route("/v1/admin/issuers", post(add_issuer))
        .route("/v1/admin/issuers/{id}/limit", post(set_limit))
        .route("/v1/admin/issuers/{id}/active", post(set_active))
        .route("/v1/admin/operators", post(add_operator))
        .route("/v1/admin/operators/{id}/share", post(set_share))
        .route("/v1/admin/operators/{id}/suspend", post(suspend))
        .route("/v1/admin/operators/{id}/resume", post(resume))
        .route("/v1/admin/expire", post(expire))
        .route("/v1/mmrs", get(crate::accumulator::mmrs))
        .route("/v1/mmrs/{id}", get(crate::accumulator::mmr))
        .route("/v1/mmrs/{id}/leaves", get(crate::accumulator::leaves))
        .route(
            "/v1/mmrs/{id}/checkpoint",
            get(crate::accumulator::checkpoint),
        )
        .route(
            "/v1/mmrs/{id}/consistency",
            get(crate::accumulator::consistency),
        )
        .route("/v1/zk", get(crate::accumulator::zk_info))
        .route("/v1/zk/transcript", get(crate::accumulator::zk_transcript))
        .merge(state.metrics.route())
        .with_state(state);
    smpx_http::finish_router(r)
}

/// A store failure as an answer: a number beyond what the databases hold came from the
/// request (`400 invalid_request`); anything else is internal.
pub(crate) fn store_err(e: StoreError) -> ApiError {
    match e {
        StoreError::OutOfRange(_) => ApiError::new(ErrorCode::InvalidRequest, e.to_string()),
        e => ApiError::internal(e),
    }
}

/// A rule's refusal of what the store (or the verifier) answered, as the API says it.
fn refuse(why: impl Into<smpx_core::ProtocolError>) -> ApiError {
    ApiError::from(why.into())
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(crate::openapi::document())
}

#[utoipa::path(get, path = "/v1/params", responses((status = 200, body = ParamsResponse)))]
pub(crate) async fn params(State(c): AppState) -> Json<ParamsResponse> {
    Json(ParamsResponse {
        params: c.params.clone(),
        receipt_key: c.receipt_key.verifying_key(),
        envelope_key: c.envelope_key.public_key(),
        now: c.now(),
    })
}

#[utoipa::path(get, path = "/v1/issuers", responses((status = 200, body = Vec<IssuerInfo>)))]
pub(crate) async fn issuers(State(c): AppState) -> ApiResult<Json<Vec<IssuerInfo>>> {
    Ok(Json(c.store.issuers().await.map_err(store_err)?))
}

#[utoipa::path(get, path = "/v1/issuers/{id}", params(("id" = String, Path)),
    responses((status = 200, body = IssuerInfo), (status = 404, body = ErrorBody)))]
pub(crate) async fn issuer(
    State(c): AppState,
    Path(id): Path<String>,
) -> ApiResult<Json<IssuerInfo>> {
    match c.store.issuer(&id).await.map_err(store_err)? {
        Some(i) => Ok(Json(i.info)),
        None => Err(ApiError::new(
            ErrorCode::NotFound,
            format!("no issuer {id:?}"),
        )),
    }
}

fn key_info(c: &Coordinator, k: KeyRow, published_count: u64) -> IssuerKeyInfo {
    IssuerKeyInfo {
        key_id: hex::encode(k.key_id),
        issuer_id: k.issuer_id,
        denomination: k.denomination,
        period: k.period,
        valid_from: keys::period_start(&c.params, k.period),
        publish_deadline: keys::publish_deadline(&c.params, k.period),
        public_key: b64::encode(&k.public_key),
        published_count,
    }
}

/// The registered issuer keys, each with how many vouchers were published under it so far
/// (the coordinator's statement; nothing it signs proves it).
#[utoipa::path(get, path = "/v1/issuer-keys", params(IssuerKeysQuery),
    responses((status = 200, body = Vec<IssuerKeyInfo>)))]
pub(crate) async fn issuer_keys(
    State(c): AppState,
    Query(q): Query<IssuerKeysQuery>,
) -> ApiResult<Json<Vec<IssuerKeyInfo>>> {
    let rows = c
        .store
        .keys(q.issuer.as_deref(), q.denomination)
        .await
        .map_err(store_err)?;
    let published = c
        .store
        .published_per_key(q.issuer.as_deref(), q.denomination)
        .await
        .map_err(store_err)?;
    Ok(Json(
        rows.into_iter()
            .map(|k| {
                let n = published.get(&k.key_id).copied().unwrap_or(0);
                key_info(&c, k, n)
            })
            .collect(),
    ))
}

/// The calling issuer's id, from its `<id>:<secret>` bearer credential. An extractor, so it
/// runs before the body is read: a call without a valid credential is 401 whatever its body.
pub(crate) struct IssuerCaller(String);

impl FromRequestParts<Arc<Coordinator>> for IssuerCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        c: &Arc<Coordinator>,
    ) -> Result<Self, Self::Rejection> {
        authenticate_issuer(c, &parts.headers)
            .await
            .map(IssuerCaller)
    }
}

/// The calling operator's row, from its `<id>:<secret>` bearer credential (checked before
/// the body, as [`IssuerCaller`]).
pub(crate) struct OperatorCaller(smpx_store::coordinator::OperatorRow);

impl FromRequestParts<Arc<Coordinator>> for OperatorCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        c: &Arc<Coordinator>,
    ) -> Result<Self, Self::Rejection> {
        authenticate_operator(c, &parts.headers)
            .await
            .map(OperatorCaller)
    }
}

/// Which issuer is calling, from its `<id>:<secret>` bearer credential.
async fn authenticate_issuer(c: &Coordinator, headers: &HeaderMap) -> ApiResult<String> {
    let unauthorized = || ApiError::new(ErrorCode::Unauthorized, "issuer credential required");
    let (id, _) = bearer_token(headers)
        .and_then(split_credential)
        .ok_or_else(unauthorized)?;
    let token = bearer_token(headers).unwrap_or_default();
    let row = c
        .store
        .issuer(id)
        .await
        .map_err(store_err)?
        .ok_or_else(unauthorized)?;
    if !token_matches(token, &row.token_hash) {
        return Err(unauthorized());
    }
    if !row.info.active {
        return Err(ApiError::new(
            ErrorCode::IssuerNotWhitelisted,
            "issuer is not whitelisted",
        ));
    }
    Ok(row.info.id)
}

#[utoipa::path(post, path = "/v1/issuer-keys", request_body = RegisterKeyRequest,
    security(("bearer" = [])),
    responses((status = 200, body = IssuerKeyInfo), (status = 409, body = ErrorBody)))]
pub(crate) async fn register_key(
    State(c): AppState,
    IssuerCaller(issuer_id): IssuerCaller,
    Json(req): Json<RegisterKeyRequest>,
) -> ApiResult<Json<IssuerKeyInfo>> {
    let now = c.now();
    rules::publish::registration(&c.params, req.denomination, req.period, now)?;
    let spki = b64::decode(&req.public_key)
        .map_err(|_| ApiError::new(ErrorCode::InvalidRequest, "public_key is not base64url"))?;
    let pk = IssuerPublicKey::from_spki(&spki).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!("public_key is not acceptable: {e}"),
        )
    })?;
    let key_id = pk.key_id().map_err(ApiError::internal)?;
    let row = KeyRow {
        key_id,
        issuer_id,
        denomination: req.denomination,
        period: req.period,
        public_key: spki,
        registered_at: now,
    };
    match c.store.insert_key(&row).await {
        Ok(()) => {}
        Err(e) if e.is_duplicate() => {
            // Registering the same key again is a harmless retry.
            let existing = c.store.key(&key_id).await.map_err(store_err)?;
            let stored = existing
                .as_ref()
                .map(|k| (k.issuer_id.as_str(), publish_key(k)));
            rules::publish::registration_retry(stored, &row.issuer_id, publish_key(&row))?;
            if let Some(existing) = existing {
                let published = c
                    .store
                    .published_per_key(Some(&existing.issuer_id), Some(existing.denomination))
                    .await
                    .map_err(store_err)?;
                let n = published.get(&existing.key_id).copied().unwrap_or(0);
                return Ok(Json(key_info(&c, existing, n)));
            }
        }
        Err(e) => return Err(store_err(e)),
    }
    tracing::info!(issuer = %row.issuer_id, denomination = row.denomination, period = row.period, "issuer key registered");
    // A new key: nothing is published under it yet.
    Ok(Json(key_info(&c, row, 0)))
}

/// The store's answer to publishing: where the voucher landed, or the rule's refusal.
fn published(outcome: PublishOutcome) -> ApiResult<Vec<smpx_core::mmr::Proof>> {
    match outcome {
        PublishOutcome::Published(appended) => Ok(appended.into_iter().map(|a| a.proof).collect()),
        PublishOutcome::MmrFull => Err(refuse(Refused::MmrFull)),
        PublishOutcome::AlreadyPublished => Err(refuse(Refused::AlreadyPublished)),
        PublishOutcome::IssuerInactive => Err(refuse(Refused::IssuerInactive)),
        PublishOutcome::LimitExceeded => Err(refuse(Refused::LimitExceeded)),
    }
}

/// What the publication and registration rules read of a stored key.
fn publish_key(k: &KeyRow) -> rules::publish::Key {
    rules::publish::Key {
        denomination: k.denomination,
        period: k.period,
    }
}

async fn issuer_public_key(c: &Coordinator, key: &KeyRow) -> ApiResult<Arc<IssuerPublicKey>> {
    if let Some(pk) = c.cached_key(&key.key_id) {
        return Ok(pk);
    }
    let pk = Arc::new(IssuerPublicKey::from_spki(&key.public_key).map_err(ApiError::internal)?);
    c.cache_key(key.key_id, pk.clone());
    Ok(pk)
}

#[utoipa::path(post, path = "/v1/vouchers", request_body = PublishRequest,
    responses((status = 200, body = Signed<PublishReceipt>),
              (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn publish(
    State(c): AppState,
    Json(req): Json<PublishRequest>,
) -> ApiResult<Json<Signed<PublishReceipt>>> {
    let now = c.now();
    // The identical request again (a retry after a lost answer) gets the stored receipt;
    // any other request for a published commitment is refused.
    let digest = req.digest();
    if let Some((stored, receipt)) = c
        .store
        .publish_receipt(&req.commitment.0 .0)
        .await
        .map_err(store_err)?
    {
        if stored != digest {
            return Err(refuse(Refused::AlreadyPublished));
        }
        return serde_json::from_str(&receipt)
            .map(Json)
            .map_err(ApiError::internal);
    }
    let key = match rules::parse_key_id(&req.key_id) {
        Ok(id) => c.store.key(&id).await.map_err(store_err)?,
        Err(_) => None,
    };
    let request = rules::publish::Request {
        denomination: req.denomination,
        key_id: &req.key_id,
    };
    let accepted = rules::publish::decide(&c.params, &request, key.as_ref().map(publish_key), now)?;
    // `decide` found the key, so it is there.
    let key = key.ok_or_else(|| ApiError::internal("publish: accepted without a key"))?;
    let pk = issuer_public_key(&c, &key).await?;
    pk.verify(
        &req.signature,
        &smpx_core::issuance::voucher_message(&req.commitment),
    )
    .map_err(|_| {
        ApiError::new(
            ErrorCode::BadSignature,
            "the signature does not verify under this key",
        )
    })?;
    let rules::publish::Accepted {
        value,
        key_id,
        mmrs,
        expires_at,
    } = accepted;
    let v = NewVoucher {
        commitment: req.commitment.0 .0,
        denomination: req.denomination,
        value,
        issuer_id: key.issuer_id.clone(),
        key_id,
        published_at: now,
        expires_at,
        mmrs,
        levels: c.params.mmr_levels,
    };
    let mut signed = None;
    let outcome = c
        .store
        .publish_with_receipt(&v, |appended| {
            let body = PublishReceipt {
                commitment: req.commitment,
                denomination: req.denomination,
                value,
                issuer_id: key.issuer_id.clone(),
                key_id: req.key_id.clone(),
                published_at: now,
                expires_at,
                paths: appended.iter().map(|a| a.proof.clone()).collect(),
            };
            let receipt = Signed::sign(&c.receipt_key, PUBLISH_DOMAIN, body)
                .map_err(|e| StoreError::Corrupt(format!("signing the publish receipt: {e}")))?;
            let json = serde_json::to_string(&receipt)
                .map_err(|e| StoreError::Corrupt(format!("encoding the publish receipt: {e}")))?;
            signed = Some(receipt);
            Ok(Some((digest, json)))
        })
        .await
        .map_err(store_err)?;
    published(outcome)?;
    c.metrics.inc(crate::PUBLISHES, &[], 1);
    signed
        .map(Json)
        .ok_or_else(|| ApiError::internal("publish: recorded without a receipt"))
}

#[utoipa::path(get, path = "/v1/vouchers/{commitment}", params(("commitment" = smpx_core::crypto::FieldBytes, Path, description = "`C`, hex")),
    responses((status = 200, body = VoucherStatus), (status = 404, body = ErrorBody)))]
pub(crate) async fn voucher(
    State(c): AppState,
    Path(commitment): Path<String>,
) -> ApiResult<Json<VoucherStatus>> {
    let fb = FieldBytes::from_hex(&commitment).map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            "commitment must be 64 hex characters",
        )
    })?;
    let v = c
        .store
        .voucher(&fb.0)
        .await
        .map_err(store_err)?
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::UnknownVoucher,
                "no published voucher has this commitment",
            )
        })?;
    Ok(Json(VoucherStatus {
        commitment: Commitment(fb),
        denomination: v.denomination,
        state: v.state,
        issuer_id: v.issuer_id,
        key_id: hex::encode(v.key_id),
        published_at: v.published_at,
        expires_at: v.expires_at,
    }))
}

/// Which operator is calling, from its `<id>:<secret>` bearer credential.
async fn authenticate_operator(
    c: &Coordinator,
    headers: &HeaderMap,
) -> ApiResult<smpx_store::coordinator::OperatorRow> {
    let unauthorized = || ApiError::new(ErrorCode::Unauthorized, "operator credential required");
    let token = bearer_token(headers).ok_or_else(unauthorized)?;
    let (id, _) = split_credential(token).ok_or_else(unauthorized)?;
    let row = c
        .store
        .operator(id)
        .await
        .map_err(store_err)?
        .ok_or_else(unauthorized)?;
    if !token_matches(token, &row.token_hash) {
        return Err(unauthorized());
    }
    Ok(row)
}

#[utoipa::path(post, path = "/v1/redemptions", request_body = ForwardRedemptionRequest,
    security(("bearer" = [])),
    responses((status = 200, body = Signed<RedemptionReceipt>),
              (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 410, body = ErrorBody)))]
pub(crate) async fn redeem(
    State(c): AppState,
    OperatorCaller(operator): OperatorCaller,
    Json(req): Json<ForwardRedemptionRequest>,
) -> ApiResult<Json<Signed<RedemptionReceipt>>> {
    if operator.suspended {
        return Err(ApiError::new(
            ErrorCode::OperatorSuspended,
            "this operator is suspended; nothing was redeemed",
        ));
    }
    let v2_offered = c.params.protocol_versions.contains(&PROTOCOL_V2);
    let version = rules::redeem::route(
        req.version,
        req.envelope.is_some(),
        req.zk.is_some(),
        v2_offered,
    )?;
    match (version, req.envelope, req.zk) {
        (Version::V1, Some(envelope), _) => redeem_v1(&c, operator, envelope).await,
        (Version::V2, _, Some(zk)) => redeem_v2(&c, operator, zk).await,
        _ => Err(ApiError::internal("redeem: routed without its payload")),
    }
}

async fn redeem_v1(
    c: &Coordinator,
    operator: smpx_store::coordinator::OperatorRow,
    envelope: smpx_core::crypto::envelope::Envelope,
) -> ApiResult<Json<Signed<RedemptionReceipt>>> {
    let now = c.now();
    let payload = open_v1(&c.envelope_key, &envelope)?;
    let share = share_of(c, &operator, now).await?.0;
    let forwarder = rules::redeem::Operator {
        id: &operator.id,
        share_bps: share.share_bps,
    };
    let opened = rules::redeem::v1::Payload {
        operator_id: &payload.operator_id,
        denomination: payload.denomination,
    };
    let clearing = rules::redeem::v1::decide(&c.params, &opened, forwarder)?;
    let digest = envelope.digest();
    let secret = VoucherSecret::from_bytes(&payload.secret).map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidEnvelope,
            "the secret is not a field element",
        )
    })?;
    let nullifier = smpx_core::crypto::nullifier(&secret).0 .0;
    let receipt = sign_receipt(
        &c.receipt_key,
        &operator.id,
        payload.denomination,
        &clearing,
        digest,
        now,
        None,
    )?;
    let receipt_json = serde_json::to_string(&receipt).map_err(ApiError::internal)?;
    let outcome = c
        .store
        .redeem(&NewRedemption {
            commitment: payload.commitment.0 .0,
            nullifier,
            denomination: payload.denomination,
            value: clearing.value,
            operator_id: &operator.id,
            envelope_digest: digest,
            now,
            postings: clearing.postings,
            share: store_source(share.source),
            share_bps: clearing.share_bps,
            receipt: receipt_json,
        })
        .await
        .map_err(store_err)?;
    if matches!(outcome, RedeemOutcome::Redeemed) {
        c.metrics.inc(
            crate::REDEMPTIONS,
            &[("version", crate::version_label(Version::V1))],
            1,
        );
    }
    v1_outcome(outcome, receipt)
}

/// The store's answer to a v0.1 redemption: the fresh receipt, the stored one for a retry,
/// or the rule's refusal.
fn v1_outcome(
    outcome: RedeemOutcome,
    fresh: Signed<RedemptionReceipt>,
) -> ApiResult<Json<Signed<RedemptionReceipt>>> {
    match outcome {
        RedeemOutcome::Redeemed => Ok(Json(fresh)),
        RedeemOutcome::Replay(stored) => Ok(Json(
            serde_json::from_str(&stored).map_err(ApiError::internal)?,
        )),
        RedeemOutcome::Unknown => Err(refuse(V1Refused::Unknown)),
        RedeemOutcome::AlreadyRedeemed => Err(refuse(V1Refused::AlreadyRedeemed)),
        RedeemOutcome::Expired => Err(refuse(V1Refused::Expired)),
    }
}

/// The coordinator's signed receipt for a redemption cleared as `clearing`.
fn sign_receipt(
    key: &smpx_core::crypto::SigningKey,
    operator_id: &str,
    denomination: u64,
    clearing: &rules::redeem::Clearing,
    digest: [u8; 32],
    now: smpx_core::UnixTime,
    zk: Option<&ZkRedemption>,
) -> ApiResult<Signed<RedemptionReceipt>> {
    let body = RedemptionReceipt {
        operator_id: operator_id.to_owned(),
        denomination,
        value: clearing.value,
        operator_amount: clearing.operator_amount,
        fund_amount: clearing.fund_amount,
        share_bps: clearing.share_bps,
        envelope_digest: digest,
        redeemed_at: now,
        nullifier: zk.map(|zk| zk.nullifier),
        mmr_id: zk.map(|zk| zk.mmr_id),
    };
    Ok(Signed::sign(key, REDEMPTION_DOMAIN, body)?)
}

/// A v0.2 redemption: the root must be a recorded root of the named MMR that still accepts
/// redemptions, the proof must verify for this operator (the binding), the denomination and
/// the nullifier, and the nullifier must be unspent. Checks that need no pairing come first.
async fn redeem_v2(
    c: &Coordinator,
    operator: smpx_store::coordinator::OperatorRow,
    zk: ZkRedemption,
) -> ApiResult<Json<Signed<RedemptionReceipt>>> {
    let now = c.now();
    // The root is looked up only where v0.2 is served; the rule refuses first otherwise.
    let root_mmr = match c.zk {
        Some(_) => c
            .store
            .find_root(&zk.root)
            .await
            .map_err(store_err)?
            .map(|r| r.mmr_id),
        None => None,
    };
    let setup = c.zk.as_ref().map(|_| rules::redeem::v2::Setup {
        proof_bytes: smpx_zk::PROOF_BYTES,
    });
    let request = rules::redeem::v2::Request {
        mmr_id: zk.mmr_id,
        denomination: zk.denomination,
        fee: zk.fee,
        proof_len: zk.proof.len(),
    };
    let share = share_of(c, &operator, now).await?.0;
    let forwarder = rules::redeem::Operator {
        id: &operator.id,
        share_bps: share.share_bps,
    };
    let clearing = rules::redeem::v2::decide(&c.params, setup, &request, root_mmr, forwarder, now)?;
    let state =
        c.zk.as_ref()
            .ok_or_else(|| ApiError::internal("redeem_v2: accepted without ceremony keys"))?;
    let digest = zk.digest();
    // A spent nullifier needs no pairing: answer a retry with its receipt, anything else no.
    if let Some(outcome) = c
        .store
        .nullifier_outcome(&zk.nullifier.0, &operator.id, &digest)
        .await
        .map_err(store_err)?
    {
        return zk_outcome(outcome, None);
    }
    let field = |f: &smpx_core::crypto::FieldBytes| {
        f.to_fr()
            .map_err(|_| ApiError::new(ErrorCode::InvalidRequest, "not a field element"))
    };
    let public = smpx_zk::RedeemPublic {
        root: field(&zk.root)?,
        nullifier: field(&zk.nullifier)?,
        denomination: zk.denomination,
        binding: smpx_zk::binding_hash(&operator.id, zk.fee.0),
    };
    match state.verifier.verify(public, zk.proof.clone()).await {
        Some(crate::zk::Verdict::Valid) => {}
        Some(crate::zk::Verdict::Malformed(why)) => {
            return Err(refuse(ProofRejected::Malformed(why)))
        }
        Some(crate::zk::Verdict::Invalid) => return Err(refuse(ProofRejected::Invalid)),
        None => return Err(ApiError::internal("the proof verifier stopped")),
    }
    let receipt = sign_receipt(
        &c.receipt_key,
        &operator.id,
        zk.denomination,
        &clearing,
        digest,
        now,
        Some(&zk),
    )?;
    let receipt_json = serde_json::to_string(&receipt).map_err(ApiError::internal)?;
    let outcome = c
        .store
        .redeem_zk(&NewZkRedemption {
            nullifier: zk.nullifier.0,
            mmr_id: zk.mmr_id,
            denomination: zk.denomination,
            value: clearing.value,
            operator_id: &operator.id,
            request_digest: digest,
            now,
            postings: clearing.postings,
            share: store_source(share.source),
            share_bps: clearing.share_bps,
            receipt: receipt_json,
        })
        .await
        .map_err(store_err)?;
    if matches!(outcome, ZkRedeemOutcome::Redeemed) {
        c.metrics.inc(
            crate::REDEMPTIONS,
            &[("version", crate::version_label(Version::V2))],
            1,
        );
    }
    zk_outcome(outcome, Some(receipt))
}

fn zk_outcome(
    outcome: ZkRedeemOutcome,
    fresh: Option<Signed<RedemptionReceipt>>,
) -> ApiResult<Json<Signed<RedemptionReceipt>>> {
    match (outcome, fresh) {
        (ZkRedeemOutcome::Redeemed, Some(receipt)) => Ok(Json(receipt)),
        (ZkRedeemOutcome::Redeemed, None) => Err(ApiError::internal("redeemed without a receipt")),
        (ZkRedeemOutcome::Replay(stored), _) => Ok(Json(
            serde_json::from_str(&stored).map_err(ApiError::internal)?,
        )),
        (ZkRedeemOutcome::AlreadyRedeemed, _) => Err(refuse(V2Refused)),
    }
}

#[utoipa::path(get, path = "/v1/operators", responses((status = 200, body = Vec<OperatorInfo>)))]
pub(crate) async fn operators(State(c): AppState) -> ApiResult<Json<Vec<OperatorInfo>>> {
    Ok(Json(c.store.operators().await.map_err(store_err)?))
}

// ---- shares from directories' statements (see `crate::shares`) ------------------------------

/// A statement as the share rules read it.
fn on_record(s: &StatementRow) -> crate::shares::OnRecord<'_> {
    crate::shares::OnRecord {
        digest: &s.digest,
        period_start: s.period_start,
        period_end: s.period_end,
        evaluated_at: s.evaluated_at,
        share_bps: s.share_bps,
    }
}

fn store_source(s: crate::shares::Source) -> ShareSource {
    match s {
        crate::shares::Source::Admin => ShareSource::Admin,
        crate::shares::Source::Statement(d) => ShareSource::Statement(d),
    }
}

/// The share `operator` is paid at `now`, and the statement that set it. A statement on
/// record from a key no longer in the configuration does not count.
async fn share_of(
    c: &Coordinator,
    operator: &OperatorRow,
    now: u64,
) -> ApiResult<(crate::shares::Effective, Option<StatementRow>)> {
    let trusting = !c.trusted_directories.is_empty();
    let in_force = match trusting {
        true => c
            .store
            .statement_at(&operator.id, now)
            .await
            .map_err(store_err)?
            .filter(|s| c.trusted_directories.iter().any(|k| k.to_hex() == s.signer)),
        false => None,
    };
    let effective = crate::shares::effective(
        operator.share_bps,
        trusting,
        in_force.as_ref().map(on_record).as_ref(),
        now,
    );
    Ok((effective, in_force))
}

/// `GET /v1/operators/{id}/share`: what a redemption at the operator is paid now, and why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct OperatorShare {
    pub operator_id: String,
    /// The share a redemption is cleared with now, in basis points: the statement's share
    /// capped by `cap_bps`, or `cap_bps` itself with source `admin`; then the network's
    /// `max_operator_share_bps`. 0 while suspended.
    pub share_bps: u32,
    /// `statement` or `admin`.
    pub source: String,
    /// With `statement`: its digest (`GET /v1/share-statements/{digest}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement: Option<String>,
    /// With `statement`: the share it states, and when its period ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement_share_bps: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement_period_end: Option<u64>,
    /// The administrator's number (`POST /v1/admin/operators/{id}/share`): the share without
    /// a statement, the cap of one with.
    pub cap_bps: u32,
    /// Suspended by the administrator: redemptions at it are refused (`operator_suspended`).
    pub suspended: bool,
}

async fn share_view(c: &Coordinator, id: &str) -> ApiResult<OperatorShare> {
    let operator = c
        .store
        .operator(id)
        .await
        .map_err(store_err)?
        .ok_or_else(|| ApiError::new(ErrorCode::UnknownOperator, format!("no operator {id:?}")))?;
    let (effective, statement) = share_of(c, &operator, c.now()).await?;
    let paid = effective.share_bps.min(c.params.max_operator_share_bps);
    Ok(OperatorShare {
        operator_id: operator.id.clone(),
        share_bps: if operator.suspended { 0 } else { paid },
        source: effective.source.as_str().to_owned(),
        statement: effective.source.digest().map(str::to_owned),
        statement_share_bps: statement.as_ref().map(|s| s.share_bps),
        statement_period_end: statement.as_ref().map(|s| s.period_end),
        cap_bps: operator.share_bps,
        suspended: operator.suspended,
    })
}

#[utoipa::path(get, path = "/v1/operators/{id}/share", params(("id" = String, Path)),
    responses((status = 200, body = OperatorShare), (status = 404, body = ErrorBody)))]
pub(crate) async fn operator_share(
    State(c): AppState,
    Path(id): Path<String>,
) -> ApiResult<Json<OperatorShare>> {
    share_view(&c, &id).await.map(Json)
}

/// The wire shape of a directory's signed share statement (receipt format 2 under
/// `smpx/directory/share-statement/v1`); `payload` is the `ShareStatement` JSON text.
#[derive(serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub(crate) struct SignedShareStatement {
    #[schema(minimum = 1, maximum = 2)]
    version: u32,
    /// The statement as JSON text: exactly the signed bytes.
    payload: String,
    /// The directory's Ed25519 key, hex.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    signer: String,
    /// Ed25519 signature, hex.
    #[schema(pattern = "^[0-9a-f]{128}$")]
    signature: String,
}

/// `POST /v1/share-statements`: the statement taken.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct StatementTaken {
    pub digest: String,
    pub operator_id: String,
    pub period_start: u64,
    pub period_end: u64,
    pub share_bps: u32,
}

/// Takes a directory's signed share statement (public: the signature authenticates). It
/// must be signed by a directory in `trusted_directories`, verify, have a share its
/// evaluation gives, name a known operator, be for the current or next period and be newer
/// than the statement on record; otherwise `statement_refused` (or `unknown_operator`) and
/// the statement on record stays. The same statement again is answered as taken.
#[utoipa::path(post, path = "/v1/share-statements", request_body = SignedShareStatement,
    responses((status = 200, body = StatementTaken),
              (status = 400, body = ErrorBody, description = "statement_refused"),
              (status = 404, body = ErrorBody, description = "unknown_operator")))]
pub(crate) async fn submit_statement(
    State(c): AppState,
    Json(signed): Json<Signed<smpx_core::directory::ShareStatement>>,
) -> ApiResult<Json<StatementTaken>> {
    let now = c.now();
    let body = smpx_core::directory::check_statement(&signed, &c.trusted_directories)
        .map_err(smpx_core::ProtocolError::from)?;
    let digest = smpx_core::directory::statement_digest(&signed);
    let share_bps = u32::try_from(body.share.share_bps)
        .map_err(|_| ApiError::new(ErrorCode::StatementRefused, "the share is out of range"))?;
    let taken = StatementTaken {
        digest: digest.clone(),
        operator_id: body.operator_id.clone(),
        period_start: body.period_start,
        period_end: body.period_end,
        share_bps,
    };
    if c.store
        .statement(&digest)
        .await
        .map_err(store_err)?
        .is_some()
    {
        return Ok(Json(taken));
    }
    let operator = c
        .store
        .operator(&body.operator_id)
        .await
        .map_err(store_err)?
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::UnknownOperator,
                format!("no operator {:?}", body.operator_id),
            )
        })?;
    let newest = c
        .store
        .newest_statement(&operator.id)
        .await
        .map_err(store_err)?;
    match crate::shares::admit(body, &digest, newest.as_ref().map(on_record).as_ref(), now)? {
        crate::shares::Admit::Repeat => return Ok(Json(taken)),
        crate::shares::Admit::Store => {}
    }
    let row = StatementRow {
        digest: digest.clone(),
        operator_id: operator.id.clone(),
        period_start: body.period_start,
        period_end: body.period_end,
        evaluated_at: body.evaluated_at,
        share_bps,
        signer: signed.signer.to_hex(),
        statement: serde_json::to_string(&signed).map_err(ApiError::internal)?,
        received_at: now,
    };
    match c.store.insert_statement(&row).await {
        Ok(()) => {}
        // The same statement, taken meanwhile by a concurrent request.
        Err(e) if e.is_duplicate() => {}
        Err(e) => return Err(store_err(e)),
    }
    tracing::info!(operator = %row.operator_id, share_bps, digest = %digest, "share statement taken");
    Ok(Json(taken))
}

/// A statement on record, as the directory signed it: what a ledger entry's
/// `share_statement` names, so anyone can re-derive the share it cleared with.
#[utoipa::path(get, path = "/v1/share-statements/{digest}", params(("digest" = String, Path)),
    responses((status = 200, body = SignedShareStatement), (status = 404, body = ErrorBody)))]
pub(crate) async fn share_statement(
    State(c): AppState,
    Path(digest): Path<String>,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    let row = c
        .store
        .statement(&digest)
        .await
        .map_err(store_err)?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no statement has this digest"))?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        row.statement,
    )
        .into_response())
}

/// The directory keys whose statements this coordinator takes: what an auditor checks each
/// statement a redemption names against. Public keys, so public.
#[utoipa::path(get, path = "/v1/trusted-directories",
    responses((status = 200, body = TrustedDirectoriesResponse)))]
pub(crate) async fn trusted_directories(State(c): AppState) -> Json<TrustedDirectoriesResponse> {
    Json(TrustedDirectoriesResponse {
        keys: c.trusted_directories.clone(),
    })
}

#[utoipa::path(get, path = "/v1/ledger/totals", responses((status = 200, body = LedgerTotalsResponse)))]
pub(crate) async fn totals(State(c): AppState) -> ApiResult<Json<LedgerTotalsResponse>> {
    Ok(Json(c.store.totals().await.map_err(store_err)?))
}

#[utoipa::path(get, path = "/v1/ledger/entries", params(EntriesQuery),
    responses((status = 200, body = EntriesPage)))]
pub(crate) async fn entries(
    State(c): AppState,
    Query(q): Query<EntriesQuery>,
) -> ApiResult<Json<EntriesPage>> {
    let limit = q.limit.unwrap_or(1000).clamp(1, 1000);
    let entries = c
        .store
        .entries(q.after.unwrap_or(0), limit)
        .await
        .map_err(store_err)?;
    let next_after = if entries.len() as u32 == limit {
        entries.last().map(|e| e.seq)
    } else {
        None
    };
    Ok(Json(EntriesPage {
        entries,
        next_after,
    }))
}

// ---- admin --------------------------------------------------------------------------------

fn check_id(id: &str) -> ApiResult<()> {
    if valid_id(id) {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "ids are 1-64 characters of a-z, 0-9, - and _",
        ))
    }
}

/// A fresh `<id>:<secret>` credential for an issuer or operator; only its digest is stored.
fn new_credential(id: &str) -> String {
    format!("{id}:{}", smpx_http::Token::generate().as_str())
}

/// The store's answer to adding an issuer or operator: an id already taken is the caller's
/// mistake, anything else ours.
fn added(r: Result<(), StoreError>, kind: &str, id: &str) -> ApiResult<()> {
    match r {
        Ok(()) => Ok(()),
        Err(e) if e.is_duplicate() => Err(ApiError::new(
            ErrorCode::AlreadyExists,
            format!("{kind} {id:?} already exists"),
        )),
        Err(e) => Err(store_err(e)),
    }
}

fn credits(limit_credits: u64) -> ApiResult<Amount> {
    Amount::from_credits(limit_credits)
        .filter(|_| limit_credits <= MAX_LIMIT_CREDITS)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidRequest,
                format!("limit is too large: at most {MAX_LIMIT_CREDITS} credits"),
            )
        })
}

#[utoipa::path(post, path = "/v1/admin/issuers", request_body = AddIssuerRequest,
    security(("bearer" = [])),
    responses((status = 200, body = CredentialResponse), (status = 409, body = ErrorBody)))]
pub(crate) async fn add_issuer(
    State(c): AppState,
    _: Admin,
    Json(req): Json<AddIssuerRequest>,
) -> ApiResult<Json<CredentialResponse>> {
    check_id(&req.id)?;
    let limit = credits(req.limit_credits)?;
    let token = new_credential(&req.id);
    added(
        c.store
            .add_issuer(&req.id, &smpx_http::token_digest(&token), limit, c.now())
            .await,
        "issuer",
        &req.id,
    )?;
    tracing::info!(issuer = %req.id, limit = %limit, "issuer whitelisted");
    Ok(Json(CredentialResponse { id: req.id, token }))
}

#[utoipa::path(post, path = "/v1/admin/issuers/{id}/limit", request_body = SetLimitRequest,
    params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = IssuerInfo), (status = 404, body = ErrorBody)))]
pub(crate) async fn set_limit(
    State(c): AppState,
    _: Admin,
    Path(id): Path<String>,
    Json(req): Json<SetLimitRequest>,
) -> ApiResult<Json<IssuerInfo>> {
    if !c
        .store
        .set_issuer_limit(&id, credits(req.limit_credits)?)
        .await
        .map_err(store_err)?
    {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("no issuer {id:?}"),
        ));
    }
    issuer(State(c), Path(id)).await
}

#[derive(serde::Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SetActiveRequest {
    active: bool,
}

#[utoipa::path(post, path = "/v1/admin/issuers/{id}/active", request_body = SetActiveRequest,
    params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = IssuerInfo), (status = 404, body = ErrorBody)))]
pub(crate) async fn set_active(
    State(c): AppState,
    _: Admin,
    Path(id): Path<String>,
    Json(req): Json<SetActiveRequest>,
) -> ApiResult<Json<IssuerInfo>> {
    if !c
        .store
        .set_issuer_active(&id, req.active)
        .await
        .map_err(store_err)?
    {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("no issuer {id:?}"),
        ));
    }
    issuer(State(c), Path(id)).await
}

fn check_share(c: &Coordinator, share_bps: u32) -> ApiResult<()> {
    if share_bps > c.params.max_operator_share_bps {
        return Err(err(
            ErrorCode::ShareTooHigh,
            format!(
                "operator share is at most {} basis points",
                c.params.max_operator_share_bps
            ),
        )
        .into());
    }
    Ok(())
}

#[utoipa::path(post, path = "/v1/admin/operators", request_body = AddOperatorRequest,
    security(("bearer" = [])),
    responses((status = 200, body = CredentialResponse), (status = 400, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub(crate) async fn add_operator(
    State(c): AppState,
    _: Admin,
    Json(req): Json<AddOperatorRequest>,
) -> ApiResult<Json<CredentialResponse>> {
    check_id(&req.id)?;
    check_share(&c, req.share_bps)?;
    let token = new_credential(&req.id);
    added(
        c.store
            .add_operator(
                &req.id,
                &smpx_http::token_digest(&token),
                req.share_bps,
                c.now(),
            )
            .await,
        "operator",
        &req.id,
    )?;
    tracing::info!(operator = %req.id, share_bps = req.share_bps, "operator registered");
    Ok(Json(CredentialResponse { id: req.id, token }))
}

#[utoipa::path(post, path = "/v1/admin/operators/{id}/share", request_body = SetShareRequest,
    params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = OperatorInfo), (status = 404, body = ErrorBody)))]
pub(crate) async fn set_share(
    State(c): AppState,
    _: Admin,
    Path(id): Path<String>,
    Json(req): Json<SetShareRequest>,
) -> ApiResult<Json<OperatorInfo>> {
    check_share(&c, req.share_bps)?;
    if !c
        .store
        .set_operator_share(&id, req.share_bps)
        .await
        .map_err(store_err)?
    {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("no operator {id:?}"),
        ));
    }
    let ops = c.store.operators().await.map_err(store_err)?;
    ops.into_iter()
        .find(|o| o.id == id)
        .map(Json)
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no operator {id:?}")))
}

async fn set_suspended(c: &Coordinator, id: &str, suspended: bool) -> ApiResult<OperatorShare> {
    if !c
        .store
        .set_operator_suspended(id, suspended)
        .await
        .map_err(store_err)?
    {
        return Err(ApiError::new(
            ErrorCode::UnknownOperator,
            format!("no operator {id:?}"),
        ));
    }
    tracing::info!(operator = %id, suspended, "operator suspension set");
    share_view(c, id).await
}

/// Suspends an operator: redemptions it forwards are refused (`operator_suspended`), so it
/// earns nothing, until `resume`. Idempotent.
#[utoipa::path(post, path = "/v1/admin/operators/{id}/suspend",
    params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = OperatorShare), (status = 404, body = ErrorBody)))]
pub(crate) async fn suspend(
    State(c): AppState,
    _: Admin,
    Path(id): Path<String>,
) -> ApiResult<Json<OperatorShare>> {
    set_suspended(&c, &id, true).await.map(Json)
}

/// Lifts a suspension. Idempotent.
#[utoipa::path(post, path = "/v1/admin/operators/{id}/resume",
    params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = OperatorShare), (status = 404, body = ErrorBody)))]
pub(crate) async fn resume(
    State(c): AppState,
    _: Admin,
    Path(id): Path<String>,
) -> ApiResult<Json<OperatorShare>> {
    set_suspended(&c, &id, false).await.map(Json)
}

#[utoipa::path(post, path = "/v1/admin/expire", security(("bearer" = [])),
    responses((status = 200, body = ExpireResponse)))]
pub(crate) async fn expire(State(c): AppState, _: Admin) -> ApiResult<Json<ExpireResponse>> {
    let (n, v) = c.release_expired().await.map_err(store_err)?;
    Ok(Json(ExpireResponse {
        released_count: n,
        released: v,
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    //! What stays in the coordinator once the rules decide: turning the store's answers into
    //! HTTP answers, and signing what the rule cleared.
    use super::*;
    use smpx_core::crypto::SigningKey;
    use smpx_core::rules::redeem::{clearing, Operator};

    fn status(e: ApiError) -> (ErrorCode, u16) {
        (e.code(), e.code().http_status())
    }

    fn receipt(key: &SigningKey, zk: Option<&ZkRedemption>) -> Signed<RedemptionReceipt> {
        receipt_at(key, zk, 77)
    }

    fn receipt_at(
        key: &SigningKey,
        zk: Option<&ZkRedemption>,
        redeemed_at: u64,
    ) -> Signed<RedemptionReceipt> {
        let params = smpx_core::NetworkParams::default();
        let op = Operator {
            id: "op",
            share_bps: 9000,
        };
        let cleared = clearing(&params, op, Amount(10_000_000));
        sign_receipt(key, "op", 10, &cleared, [3; 32], redeemed_at, zk).unwrap()
    }

    #[test]
    fn publish_refusals_keep_their_codes_and_statuses() {
        let cases = [
            (PublishOutcome::MmrFull, ErrorCode::MmrFull),
            (
                PublishOutcome::AlreadyPublished,
                ErrorCode::AlreadyPublished,
            ),
            (
                PublishOutcome::IssuerInactive,
                ErrorCode::IssuerNotWhitelisted,
            ),
            (
                PublishOutcome::LimitExceeded,
                ErrorCode::IssuerLimitExceeded,
            ),
        ];
        for (outcome, code) in cases {
            assert_eq!(published(outcome).unwrap_err().code(), code);
        }
        assert_eq!(
            status(published(PublishOutcome::AlreadyPublished).unwrap_err()),
            (ErrorCode::AlreadyPublished, 409)
        );
        assert_eq!(
            status(published(PublishOutcome::IssuerInactive).unwrap_err()),
            (ErrorCode::IssuerNotWhitelisted, 403)
        );
        assert_eq!(
            status(published(PublishOutcome::LimitExceeded).unwrap_err()),
            (ErrorCode::IssuerLimitExceeded, 409)
        );
        assert!(published(PublishOutcome::Published(Vec::new()))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn the_receipt_says_what_the_rule_cleared() {
        let key = SigningKey::from_bytes(&[5; 32]);
        let r = receipt(&key, None);
        r.verify(REDEMPTION_DOMAIN, &key.verifying_key()).unwrap();
        // The share is capped by the network (7000 bps by default), not the operator's 9000.
        assert_eq!(r.body.share_bps, 7000);
        assert_eq!(r.body.operator_amount, Amount(7_000_000));
        assert_eq!(r.body.fund_amount, Amount(3_000_000));
        assert_eq!((r.body.redeemed_at, r.body.envelope_digest), (77, [3; 32]));
        assert_eq!((r.body.nullifier, r.body.mmr_id), (None, None));
    }

    #[test]
    fn v1_store_answers() {
        let key = SigningKey::from_bytes(&[5; 32]);
        let fresh = receipt(&key, None);
        assert_eq!(
            v1_outcome(RedeemOutcome::Redeemed, fresh.clone())
                .unwrap()
                .0,
            fresh
        );
        // A retry gets the receipt stored the first time, not a fresh one.
        // (Signed over its payload bytes: editing `body` after signing would not change
        // what is stored, so the first receipt is signed for its own time.)
        let first = receipt_at(&key, None, 1);
        let stored = serde_json::to_string(&first).unwrap();
        assert_eq!(
            v1_outcome(RedeemOutcome::Replay(stored), fresh.clone())
                .unwrap()
                .0,
            first
        );
        for (outcome, expected) in [
            (RedeemOutcome::Unknown, (ErrorCode::UnknownVoucher, 404)),
            (
                RedeemOutcome::AlreadyRedeemed,
                (ErrorCode::AlreadyRedeemed, 409),
            ),
            (RedeemOutcome::Expired, (ErrorCode::VoucherExpired, 410)),
        ] {
            assert_eq!(
                status(v1_outcome(outcome, fresh.clone()).unwrap_err()),
                expected
            );
        }
    }

    #[test]
    fn v2_store_answers() {
        let key = SigningKey::from_bytes(&[5; 32]);
        let fresh = receipt(&key, None);
        assert_eq!(
            zk_outcome(ZkRedeemOutcome::Redeemed, Some(fresh.clone()))
                .unwrap()
                .0,
            fresh
        );
        assert_eq!(
            zk_outcome(ZkRedeemOutcome::Redeemed, None)
                .unwrap_err()
                .code(),
            ErrorCode::Internal
        );
        let stored = serde_json::to_string(&fresh).unwrap();
        assert_eq!(
            zk_outcome(ZkRedeemOutcome::Replay(stored), None).unwrap().0,
            fresh
        );
        assert_eq!(
            status(zk_outcome(ZkRedeemOutcome::AlreadyRedeemed, None).unwrap_err()),
            (ErrorCode::AlreadyRedeemed, 409)
        );
    }
}
