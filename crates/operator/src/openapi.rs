//! The operator's OpenAPI document, served at `/openapi.json`.

use crate::handlers::*;
use smpx_core::api::*;
use smpx_http::common::BearerAuth;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(title = "smpx operator", version = "1",
         description = "Accepts voucher redemptions from wallets, forwards them to the coordinator and returns signed credit receipts. Errors are `{\"error\": {\"code\", \"message\"}}` with stable codes."),
    paths(smpx_http::common::health, info, redeem, stats),
    components(schemas(ErrorBody, ErrorDetail, smpx_core::ErrorCode, smpx_core::Amount)),
    modifiers(&BearerAuth)
)]
struct Doc;

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    Doc::openapi()
}
