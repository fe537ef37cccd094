//! `/v1` endpoints of the issuer.

use crate::payment::TopupCodes;
use crate::Issuer;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::Router;
use sha2::{Digest, Sha256};
use smpx_core::api::*;
use smpx_core::keys::{check_publishable, is_signing_period};
use smpx_core::ErrorCode;
use smpx_http::common::require_admin;
use smpx_http::{ApiError, ApiResult, ClientError, Json};
use smpx_store::issuer::{NewSale, SaleOutcome, SalePayment};
use std::sync::Arc;

type AppState = State<Arc<Issuer>>;

pub(crate) fn router(state: Arc<Issuer>) -> Router {
    let r = Router::new()
        .route("/openapi.json", get(openapi))
        .route("/v1/health", get(smpx_http::common::health))
        .route("/v1/info", get(info))
        .route("/v1/purchases", post(purchase))
        .route("/v1/admin/topup-codes", post(mint_codes))
        .route("/v1/admin/stats", get(stats))
        .with_state(state);
    smpx_http::finish_router(r)
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(crate::openapi::document())
}

#[utoipa::path(get, path = "/v1/info", responses((status = 200, body = IssuerServiceInfo)))]
pub(crate) async fn info(State(i): AppState) -> Json<IssuerServiceInfo> {
    Json(IssuerServiceInfo {
        issuer_id: i.config.issuer_id.clone(),
        coordinator_url: i.config.coordinator_url.clone(),
        denominations: i.params.denominations.clone(),
        payment_methods: i.payments.methods(),
    })
}

fn upstream(e: ClientError) -> ApiError {
    match e.code() {
        Some(ErrorCode::NotFound) | Some(ErrorCode::Unauthorized) => ApiError::new(
            ErrorCode::IssuerNotWhitelisted,
            "the coordinator does not know this issuer",
        ),
        _ => {
            tracing::warn!(error = %e, "coordinator unavailable");
            ApiError::new(
                ErrorCode::UpstreamUnavailable,
                "the coordinator is unavailable; nothing was charged",
            )
        }
    }
}

#[utoipa::path(post, path = "/v1/purchases", request_body = PurchaseRequest,
    responses((status = 200, body = PurchaseResponse),
              (status = 400, body = ErrorBody), (status = 402, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 502, body = ErrorBody)))]
pub(crate) async fn purchase(
    State(i): AppState,
    Json(req): Json<PurchaseRequest>,
) -> ApiResult<Json<PurchaseResponse>> {
    let now = i.now();
    let value = i.params.voucher_value(req.denomination).ok_or_else(|| {
        ApiError::new(
            ErrorCode::UnsupportedDenomination,
            "the network does not issue this denomination",
        )
    })?;
    let key_id: [u8; 32] = hex::decode(&req.key_id)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidRequest,
                "key_id must be 64 hex characters",
            )
        })?;
    let (row, sk) = i
        .secret_key(&key_id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| {
            ApiError::new(ErrorCode::UnknownKey, "this issuer has no key with this id")
        })?;
    if row.denomination != req.denomination {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "the key is for another denomination",
        ));
    }
    let backend = i.payments.backend(&req.payment)?;
    let payment = backend.prepare(&req.payment, req.denomination)?;
    let blinded_hash: [u8; 32] = Sha256::digest(&req.blinded_message.0).into();

    // A buyer whose answer was lost retries with the same code and blinded message: sign
    // again, without charging again — even if the key period has turned meanwhile, as long
    // as the voucher can still be published.
    if let SalePayment::TopupCode { code_hash } = &payment {
        if i.store
            .is_retry(code_hash, &blinded_hash, req.denomination)
            .await
            .map_err(ApiError::internal)?
        {
            check_publishable(&i.params, row.period, now)?;
            let blind_signature = sign_blinded(&sk, &req.blinded_message)?;
            return Ok(Json(PurchaseResponse {
                key_id: req.key_id,
                denomination: req.denomination,
                blind_signature,
                payment: backend.receipt(),
            }));
        }
    }
    if !is_signing_period(&i.params, row.period, now) {
        return Err(ApiError::new(
            ErrorCode::KeyNotValid,
            "this key is not the current period's key; fetch keys from the coordinator again",
        ));
    }

    // The coordinator is the authority on whether we may still issue and how much.
    let me: IssuerInfo = i
        .coordinator
        .get(&format!("/v1/issuers/{}", i.config.issuer_id))
        .await
        .map_err(upstream)?;
    if !me.active {
        return Err(ApiError::new(
            ErrorCode::IssuerNotWhitelisted,
            "this issuer is no longer whitelisted",
        ));
    }

    // Sign before recording the sale: a blinded message that cannot be signed must not use
    // up the payment. The signature is released only once the sale is committed.
    let blind_signature = sign_blinded(&sk, &req.blinded_message)?;
    let outcome = i
        .store
        .sell(&NewSale {
            at: now,
            denomination: req.denomination,
            value,
            key_id,
            blinded_hash,
            payment,
            limit: me.limit,
        })
        .await
        .map_err(ApiError::internal)?;
    match outcome {
        SaleOutcome::Sold | SaleOutcome::Retry => {}
        SaleOutcome::CodeRejected => {
            return Err(ApiError::new(
                ErrorCode::PaymentRejected,
                "the top-up code is unknown, already used, or for another denomination",
            ))
        }
        SaleOutcome::LimitExceeded => {
            return Err(ApiError::new(
                ErrorCode::IssuerLimitExceeded,
                "this issuer has reached its issuing limit",
            ))
        }
    }
    Ok(Json(PurchaseResponse {
        key_id: req.key_id,
        denomination: req.denomination,
        blind_signature,
        payment: backend.receipt(),
    }))
}

fn sign_blinded(
    sk: &smpx_core::crypto::blind::IssuerSecretKey,
    blinded: &smpx_core::crypto::blind::BlindedMessage,
) -> ApiResult<smpx_core::crypto::blind::BlindSignature> {
    sk.blind_sign(blinded).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!("the blinded message cannot be signed: {e}"),
        )
    })
}

#[utoipa::path(post, path = "/v1/admin/topup-codes", request_body = MintCodesRequest,
    security(("bearer" = [])),
    responses((status = 200, body = MintCodesResponse), (status = 400, body = ErrorBody)))]
pub(crate) async fn mint_codes(
    State(i): AppState,
    headers: HeaderMap,
    Json(req): Json<MintCodesRequest>,
) -> ApiResult<Json<MintCodesResponse>> {
    require_admin(&headers, &i.admin_token_hash)?;
    if !i.params.is_denomination(req.denomination) {
        return Err(ApiError::new(
            ErrorCode::UnsupportedDenomination,
            "the network does not issue this denomination",
        ));
    }
    if !(1..=10_000).contains(&req.count) {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "count must be between 1 and 10000",
        ));
    }
    let codes: Vec<String> = (0..req.count)
        .map(|_| TopupCodes::generate_code())
        .collect();
    let hashes: Vec<[u8; 32]> = codes.iter().map(|c| TopupCodes::code_hash(c)).collect();
    let batch_id = smpx_http::Token::generate().as_str()[..16].to_owned();
    i.store
        .insert_codes(&batch_id, req.denomination, &hashes, i.now())
        .await
        .map_err(ApiError::internal)?;
    tracing::info!(batch = %batch_id, denomination = req.denomination, count = req.count, "minted top-up codes");
    Ok(Json(MintCodesResponse {
        batch_id,
        denomination: req.denomination,
        codes,
    }))
}

/// `GET /v1/admin/stats`.
#[derive(serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct IssuerStats {
    pub sold: smpx_core::Amount,
    pub unused_codes: u64,
    pub used_codes: u64,
}

#[utoipa::path(get, path = "/v1/admin/stats", security(("bearer" = [])),
    responses((status = 200, body = IssuerStats)))]
pub(crate) async fn stats(State(i): AppState, headers: HeaderMap) -> ApiResult<Json<IssuerStats>> {
    require_admin(&headers, &i.admin_token_hash)?;
    let sold = i.store.sold().await.map_err(ApiError::internal)?;
    let (unused_codes, used_codes) = i.store.code_counts().await.map_err(ApiError::internal)?;
    Ok(Json(IssuerStats {
        sold,
        unused_codes,
        used_codes,
    }))
}
