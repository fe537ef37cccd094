//! `/v1` endpoints of the issuer. A purchase is the sale saga of [`smpx_core::rules::sale`]:
//! the handler does the IO each step asks for (payment, coordinator, books, signing).

use crate::payment::TopupCodes;
use crate::Issuer;
use axum::extract::State;
use axum::routing::{get, post};
use axum::Router;
use sha2::{Digest, Sha256};
use smpx_core::api::*;
use smpx_core::rules::sale::{self, Action, Event, Recorded, Sale};
use smpx_core::{rules, ErrorCode};
use smpx_http::common::Admin;
use smpx_http::{ApiError, ApiResult, ClientError, Json};
use smpx_store::issuer::{NewSale, SaleOutcome, SalePayment};
use std::sync::Arc;

type AppState = State<Arc<Issuer>>;

impl smpx_http::common::AdminToken for Issuer {
    fn admin_token_hash(&self) -> &[u8; 32] {
        &self.admin_token_hash
    }
}

pub(crate) fn router(state: Arc<Issuer>) -> Router {
    let r = Router::new()
        .route("/openapi.json", get(openapi))
        .route("/v1/health", get(smpx_http::common::health))
        .route("/v1/info", get(info))
        .route("/v1/purchases", post(purchase))
        .route("/v1/admin/topup-codes", post(mint_codes))
        .route("/v1/admin/stats", get(stats))
        .merge(state.metrics.route())
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
    let found = match rules::parse_key_id(&req.key_id) {
        Ok(id) => i.secret_key(&id).await.map_err(ApiError::internal)?,
        Err(_) => None,
    };
    let key = found.as_ref().map(|(row, _)| sale::Key {
        denomination: row.denomination,
        period: row.period,
    });
    let request = sale::Request {
        denomination: req.denomination,
        key_id: &req.key_id,
    };
    let mut saga = Sale::start(&i.params, &request, key, now)?;
    let sk = found
        .map(|(_, sk)| sk)
        .ok_or_else(|| ApiError::internal("purchase: started without a key"))?;
    let backend = i.payments.backend(&req.payment)?;
    let payment = backend.prepare(&req.payment, req.denomination)?;
    let blinded_hash: [u8; 32] = Sha256::digest(&req.blinded_message.0).into();

    // Only a top-up code can repeat an earlier sale of this blinded message.
    let is_retry = match &payment {
        SalePayment::TopupCode { code_hash } => i
            .store
            .is_retry(code_hash, &blinded_hash, req.denomination)
            .await
            .map_err(ApiError::internal)?,
        _ => false,
    };
    let mut event = Event::RetryChecked { is_retry };
    let mut signed = None;
    let blind_signature = loop {
        match saga.step(&i.params, event)? {
            Action::CheckRetry => return Err(ApiError::internal("purchase: retry checked twice")),
            Action::SignAndAnswer => break sign_blinded(&sk, &req.blinded_message)?,
            Action::AskCoordinator => {
                let me: IssuerInfo = i
                    .coordinator
                    .get(&format!("/v1/issuers/{}", i.config.issuer_id))
                    .await
                    .map_err(upstream)?;
                event = Event::CoordinatorAnswered {
                    active: me.active,
                    limit: me.limit,
                };
            }
            Action::SignAndRecord { limit } => {
                signed = Some(sign_blinded(&sk, &req.blinded_message)?);
                let outcome = i
                    .store
                    .sell(&NewSale {
                        at: now,
                        denomination: req.denomination,
                        value: saga.value,
                        key_id: saga.key_id,
                        blinded_hash,
                        payment: payment.clone(),
                        limit,
                    })
                    .await
                    .map_err(ApiError::internal)?;
                if matches!(outcome, SaleOutcome::Sold) {
                    i.metrics.inc(crate::PURCHASES, &[], 1);
                    i.metrics.inc(crate::SOLD_UNITS, &[], saga.value.0);
                }
                event = Event::Recorded(match outcome {
                    SaleOutcome::Sold => Recorded::Sold,
                    SaleOutcome::Retry => Recorded::Retry,
                    SaleOutcome::CodeRejected => Recorded::CodeRejected,
                    SaleOutcome::LimitExceeded => Recorded::LimitExceeded,
                });
            }
            // Released only now that the sale is recorded.
            Action::Answer => {
                break signed
                    .take()
                    .ok_or_else(|| ApiError::internal("purchase: answered before signing"))?
            }
        }
    };
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
    _: Admin,
    Json(req): Json<MintCodesRequest>,
) -> ApiResult<Json<MintCodesResponse>> {
    if !i.params.is_denomination(req.denomination) {
        return Err(ApiError::new(
            ErrorCode::UnsupportedDenomination,
            "the network does not issue this denomination",
        ));
    }
    if !(1..=MAX_TOPUP_CODES).contains(&req.count) {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("count must be between 1 and {MAX_TOPUP_CODES}"),
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
pub(crate) async fn stats(State(i): AppState, _: Admin) -> ApiResult<Json<IssuerStats>> {
    let sold = i.store.sold().await.map_err(ApiError::internal)?;
    let (unused_codes, used_codes) = i.store.code_counts().await.map_err(ApiError::internal)?;
    Ok(Json(IssuerStats {
        sold,
        unused_codes,
        used_codes,
    }))
}
