//! The issuer's OpenAPI document, served at `/openapi.json`.

use crate::handlers::*;
use smpx_core::api::*;
use smpx_http::common::{BearerAuth, StandardResponses};
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(title = "smpx issuer", version = "1",
         description = "Sells smpx vouchers: blind-signs a commitment against a payment (prepaid top-up code, or devnet). Errors are `{\"error\": {\"code\", \"message\"}}` with stable codes."),
    paths(smpx_http::common::health, info, purchase, mint_codes, stats),
    components(schemas(ErrorBody, ErrorDetail, smpx_core::ErrorCode, smpx_core::Amount)),
    modifiers(&BearerAuth, &StandardResponses)
)]
struct Doc;

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    Doc::openapi()
}
