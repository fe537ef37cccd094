//! `/v1` endpoints of the operator's redemption service (credit endpoints:
//! [`crate::credit_handlers`]).

use crate::credits::credit_error;
use crate::Operator;
use axum::extract::State;
use axum::routing::{get, post};
use axum::Router;
use smpx_core::api::*;
use smpx_core::credits::{check_issue, check_outputs, sign_outputs, BlindSignature, CreditError};
use smpx_core::receipt::{Signed, OPERATOR_DOMAIN};
use smpx_core::rules::operator_redeem::{self, Action, Event, Redemption};
use smpx_core::rules::redeem::Version;
use smpx_core::ErrorCode;
use smpx_http::{ApiError, ApiResult, ClientError, Json};
use smpx_store::credits::{IssuanceOutcome, NewIssuance};
use smpx_store::operator::NewOperatorRedemption;
use std::sync::Arc;

type AppState = State<Arc<Operator>>;

pub(crate) fn router(state: Arc<Operator>) -> Router {
    let r = Router::new()
        .route("/openapi.json", get(openapi))
        .route("/v1/health", get(smpx_http::common::health))
        .route("/v1/info", get(info))
        .route("/v1/redeem", post(redeem))
        .route("/v1/stats", get(stats))
        .merge(crate::credit_handlers::routes())
        .merge(state.metrics.route())
        .with_state(state);
    smpx_http::finish_router(r)
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(crate::openapi::document())
}

#[utoipa::path(get, path = "/v1/info", responses((status = 200, body = OperatorServiceInfo)))]
pub(crate) async fn info(State(o): AppState) -> Json<OperatorServiceInfo> {
    Json(OperatorServiceInfo {
        operator_id: o.config.operator_id.clone(),
        receipt_key: o.receipt_key.verifying_key(),
        coordinator_url: o.config.coordinator_url.clone(),
    })
}

/// Passes the coordinator's typed refusals (already redeemed, expired, …) through to the
/// wallet unchanged; anything else means the coordinator could not be asked.
fn upstream(e: ClientError) -> ApiError {
    match e {
        ClientError::Api { code, message, .. }
            if code != ErrorCode::Unauthorized
                && code != ErrorCode::Internal
                && code != ErrorCode::Unknown =>
        {
            ApiError::new(code, message)
        }
        other => {
            tracing::warn!(error = %other, "forwarding to the coordinator failed");
            ApiError::new(
                ErrorCode::UpstreamUnavailable,
                "the coordinator could not be reached; the voucher was not redeemed, retry later",
            )
        }
    }
}

/// `POST /v1/redeem`: forwards the redemption to the coordinator and answers with the
/// operator's signed receipt. With `outputs`, the operator also issues the credited amount as
/// blind-signed credits once the coordinator's receipt verifies: the outputs must be under
/// today's keyset, never signed before, and add up to exactly the credited value. Issuance
/// is recorded by the request's digest, so a retry gets the same signatures; a request whose
/// outputs were refused after the voucher was redeemed can be sent again with good outputs.
#[utoipa::path(post, path = "/v1/redeem", request_body = RedeemRequest,
    responses((status = 200, body = RedeemResponse),
              (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 410, body = ErrorBody), (status = 502, body = ErrorBody)))]
pub(crate) async fn redeem(
    State(o): AppState,
    Json(req): Json<RedeemRequest>,
) -> ApiResult<Json<RedeemResponse>> {
    // The operator cannot read either kind of request (an envelope sealed to the
    // coordinator, or a proof it cannot link to a voucher); it checks the shape, forwards,
    // and records by the request's digest.
    let version = operator_redeem::route(req.version, req.envelope.is_some(), req.zk.is_some())?;
    let digest = match (version, &req.envelope, &req.zk) {
        (Version::V1, Some(envelope), _) => envelope.digest(),
        (Version::V2, _, Some(zk)) => zk.digest(),
        _ => return Err(ApiError::internal("redeem: routed without its payload")),
    };
    let outputs = req.outputs;
    let mut saga = Redemption::new(
        &o.config.operator_id,
        &o.coordinator_key,
        digest,
        outputs.is_some(),
    );
    // The operator's receipt as recorded: found now (a retry), or once recorded below.
    let mut stored = o.store.receipt(&digest).await.map_err(ApiError::internal)?;
    let mut forwarded: Option<Signed<RedemptionReceipt>> = None;
    let recorded = stored.is_some();
    let mut action = saga
        .step(Event::LookedUp { recorded }, o.clock.now())
        .map_err(ApiError::internal)?;
    let mut forward = Some(ForwardRedemptionRequest {
        version: req.version,
        envelope: req.envelope,
        zk: req.zk,
    });
    loop {
        let event = match action {
            Action::Precheck => {
                if let Some(outputs) = &outputs {
                    // Refuse outputs that cannot be signed before the voucher is spent.
                    let zk = forward.as_ref().and_then(|f| f.zk.as_ref());
                    precheck(&o, outputs, zk)?;
                    // An output signed before (a copied wallet, a bug) would be refused after
                    // the voucher is spent: refuse it now, while nothing is.
                    let blinded: Vec<_> = outputs.iter().map(|out| out.blinded_secret).collect();
                    if let Some(index) = o
                        .credits
                        .store
                        .first_signed(&blinded)
                        .await
                        .map_err(ApiError::internal)?
                    {
                        return Err(operator_redeem::output_reused(Some(index)).into());
                    }
                }
                Event::Prechecked
            }
            Action::Forward => {
                let request = forward
                    .take()
                    .ok_or_else(|| ApiError::internal("redeem: forwarded twice"))?;
                let cl: Signed<RedemptionReceipt> = o
                    .coordinator
                    .post("/v1/redemptions", &request)
                    .await
                    .map_err(upstream)?;
                Event::Forwarded(forwarded.insert(cl))
            }
            Action::Record(body) => {
                let receipt = Signed::sign(&o.receipt_key, OPERATOR_DOMAIN, *body)?;
                let json = serde_json::to_string(&receipt).map_err(ApiError::internal)?;
                let cl = &receipt.body.coordinator_receipt.body;
                // A concurrent retry that recorded first wins: its receipt is the answer.
                stored = Some(
                    o.store
                        .record(&NewOperatorRedemption {
                            envelope_digest: digest,
                            denomination: cl.denomination,
                            credited_units: cl.value.0,
                            operator_units: cl.operator_amount.0,
                            at: receipt.body.issued_at,
                            receipt: json,
                        })
                        .await
                        .map_err(ApiError::internal)?,
                );
                let label = match version {
                    Version::V1 => "v0.1",
                    Version::V2 => "v0.2",
                };
                o.metrics.inc(crate::REDEMPTIONS, &[("version", label)], 1);
                Event::Recorded
            }
            Action::Answer { issue } => {
                let json = stored
                    .take()
                    .ok_or_else(|| ApiError::internal("redeem: answered without a receipt"))?;
                let receipt: Signed<OperatorCreditReceipt> =
                    serde_json::from_str(&json).map_err(ApiError::internal)?;
                let signatures = match (issue, &outputs) {
                    (true, Some(outputs)) => {
                        Some(issue_credits(&o, digest, outputs, receipt.body.credited).await?)
                    }
                    _ => None,
                };
                return Ok(Json(RedeemResponse {
                    receipt,
                    signatures,
                }));
            }
        };
        action = saga
            .step(event, o.clock.now())
            .map_err(ApiError::internal)?;
    }
}

/// What can be checked before the coordinator is asked: the outputs' shape, keyset and
/// amounts, and (v2, whose denomination the operator can read) their total.
fn precheck(
    o: &Operator,
    outputs: &[smpx_core::credits::BlindedMessage],
    zk: Option<&ZkRedemption>,
) -> ApiResult<()> {
    if outputs.is_empty() {
        return Err(credit_error(CreditError::Empty("outputs")));
    }
    let now = o.clock.now();
    let total = o
        .credits
        .ring
        .with(now, |ring| {
            check_outputs(outputs, ring, now, &o.credits.limits)
        })
        .and_then(|total| total)
        .map_err(credit_error)?;
    operator_redeem::precheck_total(total, zk.map(|zk| zk.denomination)).map_err(credit_error)
}

/// Signs `outputs` for a confirmed redemption of `credited`, once per redemption digest.
async fn issue_credits(
    o: &Operator,
    digest: [u8; 32],
    outputs: &[smpx_core::credits::BlindedMessage],
    credited: smpx_core::Amount,
) -> ApiResult<Vec<BlindSignature>> {
    let parse = |json: &str| -> ApiResult<Vec<BlindSignature>> {
        serde_json::from_str(json).map_err(ApiError::internal)
    };
    let store = &o.credits.store;
    // Issued before (a retry): the first signatures stand, whatever the day is now.
    if let Some(json) = store.issuance(&digest).await.map_err(ApiError::internal)? {
        return parse(&json);
    }
    let now = o.clock.now();
    let (signatures, final_expiry) = o
        .credits
        .ring
        .with(now, |ring| {
            check_issue(outputs, credited, ring, now, &o.credits.limits)?;
            let signatures = sign_outputs(outputs, ring)?;
            let expiry = outputs
                .iter()
                .filter_map(|out| ring.get(&out.id))
                .map(|k| k.final_expiry())
                .max()
                .unwrap_or(0);
            Ok::<_, CreditError>((signatures, expiry))
        })
        .and_then(|signed| signed)
        .map_err(credit_error)?;
    let json = serde_json::to_string(&signatures).map_err(ApiError::internal)?;
    let outcome = store
        .record_issuance(&NewIssuance {
            digest,
            outputs: outputs.iter().map(|out| out.blinded_secret).collect(),
            signatures: json,
            final_expiry,
            now,
        })
        .await
        .map_err(ApiError::internal)?;
    match outcome {
        IssuanceOutcome::Issued(json) => {
            o.metrics
                .inc(crate::OUTPUTS_SIGNED, &[], outputs.len() as u64);
            parse(&json)
        }
        // Released only once recorded; a concurrent retry that recorded first wins.
        IssuanceOutcome::Replay(json) => parse(&json),
        IssuanceOutcome::OutputReused { b } => {
            let index = outputs.iter().position(|out| out.blinded_secret == b);
            Err(operator_redeem::output_reused(index).into())
        }
    }
}

/// `GET /v1/stats`: the operator's own books.
#[derive(serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct OperatorStats {
    pub redemptions: u64,
    pub credited: smpx_core::Amount,
    pub earned: smpx_core::Amount,
}

#[utoipa::path(get, path = "/v1/stats", responses((status = 200, body = OperatorStats)))]
pub(crate) async fn stats(State(o): AppState) -> ApiResult<Json<OperatorStats>> {
    let (n, c, e) = o.store.summary().await.map_err(ApiError::internal)?;
    Ok(Json(OperatorStats {
        redemptions: n,
        credited: smpx_core::Amount(c),
        earned: smpx_core::Amount(e),
    }))
}
