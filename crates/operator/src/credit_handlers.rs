//! `/v1` credit endpoints, in Cashu's NUT shapes where they fit.
//!
//! | endpoint | NUT | what |
//! |---|---|---|
//! | `GET /v1/keys` | 01 | public keys of the active keysets (today's; around midnight also the neighbouring day's) |
//! | `GET /v1/keys/{keyset_id}` | 01 | public keys of one keyset still known (live, or expired within the grace days) |
//! | `GET /v1/keysets` | 02 | every known keyset: id, unit, active, final expiry |
//! | `POST /v1/swap` | 03 | spend tokens, get change: `{"inputs": [Proof], "outputs": [BlindedMessage]}` → `{"signatures": [BlindSignature]}` |
//! | `GET /v1/swap/{id}` | — | a spend's state and its change, for a wallet that lost the answer (`id` = [`SwapId`]) |
//! | `POST /v1/checkstate` | 07 | `UNSPENT` / `PENDING` / `SPENT` per `Y` |
//! | `POST /v1/restore` | 09 | the signatures on outputs signed before, looked up by `B_`, for a wallet restored from its seed |
//!
//! Issuance (credits for a redeemed voucher) rides on `POST /v1/redeem` ([`crate::handlers`]).
//!
//! Where the service differs from a Cashu mint (beyond the core's deviations, see
//! [`smpx_core::credits`]):
//!
//! - `GET /v1/keys` entries carry `final_expiry` too (NUT-02's field), so a wallet learns a
//!   keyset's expiry with its keys; the id commits to it (version `01` ids).
//! - `POST /v1/swap` is idempotent: the identical request sent again is the same spend and
//!   gets the same change (a Cashu mint answers "already spent"), and `GET /v1/swap/{id}`
//!   returns it later.
//! - `POST /v1/restore` (NUT-09) answers for change of finished spends and for credits
//!   issued at redemption; outputs of a spend still pending are left out (the wallet that
//!   made the spend collects them with `GET /v1/swap/{id}`).
//! - Errors are smpx's `{"error": {"code", "message"}}` with stable string codes
//!   (`token_spent`, `output_reused`, …), not Cashu's numeric `{"detail", "code"}`.

use crate::credits::credit_error;
use crate::Operator;
use axum::extract::State;
use axum::routing::{get, post};
use axum::Router;
use smpx_core::api::*;
use smpx_core::credits::{
    check_swap, BlindSignature, BlindedMessage, CreditError, Day, KeyRing, Keyset, KeysetId,
    SwapRequest, SwapResponse, CREDIT_UNIT,
};
use smpx_core::{Amount, ErrorCode, UnixTime};
use smpx_http::Path;
use smpx_http::{ApiError, ApiResult, Json};
use smpx_store::credits::{InputState, NewSpend, SignedBy, SpendInput};
use std::collections::HashMap;
use std::sync::Arc;

type AppState = State<Arc<Operator>>;

/// The price of what `POST /v1/swap` buys: nothing, it only exchanges tokens for change (the
/// relay's capacity purchases will charge theirs through the same path). Inputs worth more
/// than the outputs leave the difference to the operator (dust the wallet did not want back).
const SWAP_PRICE: Amount = Amount::ZERO;

pub(crate) fn routes() -> Router<Arc<Operator>> {
    Router::new()
        .route("/v1/keys", get(keys))
        .route("/v1/keys/{keyset_id}", get(keyset_keys))
        .route("/v1/keysets", get(keysets))
        .route("/v1/swap", post(swap))
        .route("/v1/swap/{id}", get(swap_status))
        .route("/v1/checkstate", post(checkstate))
        .route("/v1/restore", post(restore))
}

/// The keysets a wallet may learn about at `now`: days up to today (or the neighbouring day
/// while outputs may use it), still in the ring, oldest first.
fn published(ring: &KeyRing, now: UnixTime) -> Vec<&Keyset> {
    let params = ring.params();
    let today = Day::of(now);
    let first = today
        .minus(params.lifetime_days.saturating_sub(1))
        .minus(params.expired_grace_days);
    (first.0..=today.plus(1).0)
        .filter_map(|d| ring.for_day(Day(d)))
        .filter(|k| k.day() <= today || ring.accepts_outputs(k, now))
        .collect()
}

#[utoipa::path(get, path = "/v1/keys", tag = "credits",
    responses((status = 200, body = CreditKeysResponse)))]
pub(crate) async fn keys(State(o): AppState) -> ApiResult<Json<CreditKeysResponse>> {
    let now = o.clock.now();
    let keysets = o
        .credits
        .ring
        .with(now, |ring| {
            published(ring, now)
                .into_iter()
                .filter(|k| ring.accepts_outputs(k, now))
                .map(|k| k.keys())
                .collect()
        })
        .map_err(credit_error)?;
    Ok(Json(CreditKeysResponse { keysets }))
}

#[utoipa::path(get, path = "/v1/keys/{keyset_id}", tag = "credits",
    params(("keyset_id" = smpx_core::credits::KeysetId, Path, description = "keyset id, hex")),
    responses((status = 200, body = CreditKeysResponse),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn keyset_keys(
    State(o): AppState,
    Path(keyset_id): Path<String>,
) -> ApiResult<Json<CreditKeysResponse>> {
    let id = KeysetId::from_hex(&keyset_id).map_err(credit_error)?;
    let now = o.clock.now();
    let keys = o
        .credits
        .ring
        .with(now, |ring| {
            published(ring, now)
                .into_iter()
                .find(|k| *k.id() == id)
                .map(|k| k.keys())
        })
        .map_err(credit_error)?
        .ok_or_else(|| credit_error(CreditError::UnknownKeyset(id)))?;
    Ok(Json(CreditKeysResponse {
        keysets: vec![keys],
    }))
}

#[utoipa::path(get, path = "/v1/keysets", tag = "credits",
    responses((status = 200, body = CreditKeysetsResponse)))]
pub(crate) async fn keysets(State(o): AppState) -> ApiResult<Json<CreditKeysetsResponse>> {
    let now = o.clock.now();
    let keysets = o
        .credits
        .ring
        .with(now, |ring| {
            published(ring, now)
                .into_iter()
                .map(|k| CreditKeysetInfo {
                    id: *k.id(),
                    unit: CREDIT_UNIT.to_owned(),
                    active: ring.accepts_outputs(k, now),
                    final_expiry: k.final_expiry(),
                    input_fee_ppk: 0,
                })
                .collect()
        })
        .map_err(credit_error)?;
    Ok(Json(CreditKeysetsResponse { keysets }))
}

/// `POST /v1/swap` (NUT-03): spends the inputs and signs the outputs (the change).
///
/// A token is accepted if it is signed under the keyset of its day, that keyset has not
/// expired, it appears once in the request, and it is not spent or being spent on any of the
/// operator's servers; the outputs must be under today's keyset, appear once, never have been
/// signed before, and be worth no more than the inputs. The change is signed only after the
/// shared registry has taken the inputs. The identical request sent again is the same spend
/// ([`SwapId`]) and gets the same change, marked `"replayed": true` so that a server selling
/// capacity for the payment (a relay) does not sell it twice.
#[utoipa::path(post, path = "/v1/swap", tag = "credits", request_body = SwapRequest,
    responses((status = 200, body = SwapResponse),
              (status = 400, body = ErrorBody, description = "invalid_token, duplicate_input, duplicate_output, unbalanced, invalid_amount, keyset_not_current, invalid_request"),
              (status = 404, body = ErrorBody, description = "unknown_keyset"),
              (status = 409, body = ErrorBody, description = "token_spent, output_reused, swap_cancelled, spend_repeated (the identical request is still being processed)"),
              (status = 410, body = ErrorBody, description = "keyset_expired"),
              (status = 503, body = ErrorBody, description = "swap_pending: collect the change with GET /v1/swap/{id}")))]
pub(crate) async fn swap(
    State(o): AppState,
    Json(req): Json<SwapRequest>,
) -> ApiResult<Json<SwapResponse>> {
    let c = &o.credits;
    let now = c.clock.now();
    // The core's checks: signatures, expiry, duplicates, denominations, balance.
    let (checked, outputs_expiry) = c
        .ring
        .with(now, |ring| {
            let checked = check_swap(&req, ring, now, SWAP_PRICE, &c.limits)?;
            let expiry = req
                .outputs
                .iter()
                .filter_map(|out| ring.get(&out.id))
                .map(|k| k.final_expiry())
                .max()
                .unwrap_or(0);
            Ok::<_, CreditError>((checked, expiry))
        })
        .and_then(|checked| checked)
        .map_err(credit_error)?;
    let id = SwapId::new(&checked.ys(), &req.outputs);
    let spend = NewSpend {
        saga_id: id.to_hex(),
        inputs: checked
            .inputs
            .iter()
            .zip(&req.inputs)
            .map(|(input, proof)| SpendInput::from_checked(input, proof.id))
            .collect(),
        outputs: req.outputs.iter().map(|out| out.blinded_secret).collect(),
        outputs_json: serde_json::to_string(&req.outputs).map_err(ApiError::internal)?,
        outputs_expiry,
        now,
    };
    // A capacity purchase provisions its resource here, before the registry is asked, and
    // cancels it if the spend below is refused. A plain swap buys nothing.
    let spent = spend.inputs.len() as u64;
    let (signatures, replayed) = c.spender.spend(spend, req.outputs).await?;
    if !replayed {
        o.metrics.inc(crate::TOKENS_SPENT, &[], spent);
        o.metrics
            .inc(crate::OUTPUTS_SIGNED, &[], signatures.len() as u64);
    }
    Ok(Json(SwapResponse {
        signatures,
        replayed,
    }))
}

#[utoipa::path(get, path = "/v1/swap/{id}", tag = "credits",
    params(("id" = String, Path, pattern = "^[0-9a-f]{64}$", description = "the spend's id (SwapId, 64 lowercase hex characters)")),
    responses((status = 200, body = SwapStatus),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody, description = "unknown_swap")))]
pub(crate) async fn swap_status(
    State(o): AppState,
    Path(id): Path<String>,
) -> ApiResult<Json<SwapStatus>> {
    let id = SwapId::from_hex(&id).ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            "expected a spend id: 64 lowercase hex characters",
        )
    })?;
    Ok(Json(o.credits.status(&id).await?))
}

#[utoipa::path(post, path = "/v1/checkstate", tag = "credits", request_body = CheckStateRequest,
    responses((status = 200, body = CheckStateResponse), (status = 400, body = ErrorBody)))]
pub(crate) async fn checkstate(
    State(o): AppState,
    Json(req): Json<CheckStateRequest>,
) -> ApiResult<Json<CheckStateResponse>> {
    let max = o.credits.limits.max_inputs;
    if req.ys.len() > max {
        return Err(credit_error(CreditError::TooMany { what: "Ys", max }));
    }
    let states = o
        .credits
        .store
        .state(&req.ys)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(CheckStateResponse {
        states: req
            .ys
            .iter()
            .zip(states)
            .map(|(y, state)| ProofState {
                y: *y,
                state: match state {
                    None => TokenState::Unspent,
                    Some(InputState::Pending) => TokenState::Pending,
                    Some(InputState::Spent) => TokenState::Spent,
                },
                witness: None,
            })
            .collect(),
    }))
}

/// `POST /v1/restore` (NUT-09): for each output asked about that this operator signed — as
/// change of a finished spend or as credits issued at a redemption — the output as it was
/// signed (amount, keyset) and its blind signature with the DLEQ proof, in the order asked.
/// A wallet restored from its seed derives its outputs again (NUT-13) and learns which were
/// signed; the answer holds nothing the wallet did not already get once, and the operator
/// learns only which of its outputs a wallet asks about again.
///
/// An issuance record keeps the signatures but not the outputs, so the signature that
/// answers an output is found by signing the output again under each candidate's keyset and
/// amount (`C_ = k·B_` is deterministic); outputs of keysets no longer in the ring are left
/// out (their tokens expired).
#[utoipa::path(post, path = "/v1/restore", tag = "credits", request_body = CreditRestoreRequest,
    responses((status = 200, body = CreditRestoreResponse), (status = 400, body = ErrorBody)))]
pub(crate) async fn restore(
    State(o): AppState,
    Json(req): Json<CreditRestoreRequest>,
) -> ApiResult<Json<CreditRestoreResponse>> {
    let max = o.credits.limits.max_outputs;
    if req.outputs.len() > max {
        return Err(credit_error(CreditError::TooMany {
            what: "outputs",
            max,
        }));
    }
    let bs: Vec<_> = req.outputs.iter().map(|out| out.blinded_secret).collect();
    let found = o
        .credits
        .store
        .signed_outputs(&bs)
        .await
        .map_err(ApiError::internal)?;
    // Each stored row parsed once, however many of its outputs are asked about.
    let mut spends: HashMap<String, (Vec<BlindedMessage>, Vec<BlindSignature>)> = HashMap::new();
    let mut issuances: HashMap<String, Vec<BlindSignature>> = HashMap::new();
    let now = o.clock.now();
    let mut outputs = Vec::new();
    let mut signatures = Vec::new();
    for b in &bs {
        let Some(by) = found.get(b) else { continue };
        let hit = match by {
            SignedBy::Spend {
                outputs: outs,
                signatures: sigs,
            } => {
                if !spends.contains_key(outs) {
                    let parsed = (
                        serde_json::from_str(outs).map_err(ApiError::internal)?,
                        serde_json::from_str(sigs).map_err(ApiError::internal)?,
                    );
                    spends.insert(outs.clone(), parsed);
                }
                spends.get(outs).and_then(|(outs, sigs)| {
                    let k = outs.iter().position(|out| out.blinded_secret == *b)?;
                    Some((outs.get(k)?.clone(), sigs.get(k)?.clone()))
                })
            }
            SignedBy::Issuance { signatures: sigs } => {
                if !issuances.contains_key(sigs) {
                    let parsed = serde_json::from_str(sigs).map_err(ApiError::internal)?;
                    issuances.insert(sigs.clone(), parsed);
                }
                let candidates = issuances.get(sigs).map(Vec::as_slice).unwrap_or_default();
                o.credits
                    .ring
                    .with(now, |ring| {
                        candidates.iter().find_map(|sig| {
                            let out = BlindedMessage {
                                amount: sig.amount,
                                id: sig.id,
                                blinded_secret: *b,
                            };
                            let again = ring.get(&sig.id)?.sign(&out).ok()?;
                            (again.blind_signature == sig.blind_signature)
                                .then(|| (out, sig.clone()))
                        })
                    })
                    .map_err(credit_error)?
            }
        };
        if let Some((out, sig)) = hit {
            outputs.push(out);
            signatures.push(sig);
        }
    }
    Ok(Json(CreditRestoreResponse {
        outputs,
        signatures,
    }))
}
