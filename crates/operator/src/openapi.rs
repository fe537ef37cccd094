//! The operator's OpenAPI document, served at `/openapi.json`.

use crate::credit_handlers::*;
use crate::handlers::*;
use smpx_core::api::*;
use smpx_core::credits::{
    BlindSignature, BlindedMessage, KeysetKeys, Proof, SwapRequest, SwapResponse,
};
use smpx_http::common::{BearerAuth, StandardResponses};
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(title = "smpx operator", version = "1",
         description = "Accepts voucher redemptions from wallets, forwards them to the coordinator and returns signed credit receipts and blind-signed credits (Cashu NUT-00/12 tokens, one keyset per day); spends credits (NUT-03 swap, NUT-07 state) against a spent registry shared by the operator's servers. Errors are `{\"error\": {\"code\", \"message\"}}` with stable codes."),
    paths(smpx_http::common::health, info, redeem, stats,
          keys, keyset_keys, keysets, swap, swap_status, checkstate, restore),
    components(schemas(ErrorBody, ErrorDetail, smpx_core::ErrorCode, smpx_core::Amount,
                       RedeemResponse, CreditKeysResponse, CreditKeysetsResponse, CreditKeysetInfo,
                       SwapStatus, SwapState, CheckStateRequest, CheckStateResponse, ProofState,
                       TokenState, CreditRestoreRequest, CreditRestoreResponse, KeysetKeys, BlindedMessage, BlindSignature, Proof,
                       SwapRequest, SwapResponse, smpx_core::credits::KeysetId)),
    modifiers(&BearerAuth, &StandardResponses)
)]
struct Doc;

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    Doc::openapi()
}
