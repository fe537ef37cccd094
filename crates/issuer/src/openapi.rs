//! The issuer's OpenAPI document, served at `/openapi.json`.

use crate::handlers::*;
use smpx_core::api::*;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "smpx issuer", version = "1",
         description = "Sells smpx vouchers: blind-signs a commitment against a payment (prepaid top-up code, or devnet). Errors are `{\"error\": {\"code\", \"message\"}}` with stable codes."),
    paths(health, info, purchase, mint_codes, stats),
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
