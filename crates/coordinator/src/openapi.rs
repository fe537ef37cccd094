//! The coordinator's OpenAPI document, served at `/openapi.json`.

use crate::handlers::*;
use smpx_core::api::*;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "smpx coordinator", version = "1",
         description = "Coordination layer of smpx Community Vouchers: issuer whitelist and keys, publishing, redemption, expiry and the public ledger. Errors are `{\"error\": {\"code\", \"message\"}}` with stable codes."),
    paths(health, params, issuers, issuer, issuer_keys, register_key, publish, voucher, redeem,
          operators, totals, entries, add_issuer, set_limit, set_active, add_operator, set_share, expire),
    components(schemas(ErrorBody, ErrorDetail, smpx_core::ErrorCode, smpx_core::Amount,
                       smpx_core::NetworkParams, smpx_core::ledger::Entry, smpx_core::ledger::EntryKind,
                       smpx_core::ledger::Totals, VoucherState)),
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
