//! Pieces every smpx service serves the same way: the health endpoint, the bearer security
//! scheme of the OpenAPI documents, and the admin-token check.

use crate::{bearer_token, token_matches, ApiError, ApiResult, Json};
use axum::http::HeaderMap;
use smpx_core::ErrorCode;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

/// `GET /v1/health`.
#[utoipa::path(get, path = "/v1/health", responses((status = 200, description = "The service is up")))]
pub async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// Adds the `bearer` security scheme that admin, issuer and operator calls declare.
pub struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Requires `Authorization: Bearer <admin token>` whose SHA-256 is `admin_token_hash`.
pub fn require_admin(headers: &HeaderMap, admin_token_hash: &[u8; 32]) -> ApiResult<()> {
    match bearer_token(headers) {
        Some(t) if token_matches(t, admin_token_hash) => Ok(()),
        _ => Err(ApiError::new(
            ErrorCode::Unauthorized,
            "admin token required",
        )),
    }
}
