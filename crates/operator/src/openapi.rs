//! The operator's OpenAPI document, served at `/openapi.json`.

use crate::handlers::*;
use smpx_core::api::*;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "smpx operator", version = "1",
         description = "Accepts voucher redemptions from wallets, forwards them to the coordinator and returns signed credit receipts. Errors are `{\"error\": {\"code\", \"message\"}}` with stable codes."),
    paths(health, info, redeem, stats),
    components(schemas(ErrorBody, ErrorDetail, smpx_core::ErrorCode, smpx_core::Amount)),
    modifiers(&Bearer)
)]
struct Doc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    Doc::openapi()
}
