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

/// Adds to every operation of a document the error answers `serve` and the extractors give
/// besides what the handler declares: 401 where a credential is required, 400/408/413/415
/// where there is a body, 400 where there are parameters, and 414/431 everywhere — each as
/// `ErrorBody`. A status the handler already declares is left as it is.
pub struct StandardResponses;

impl utoipa::Modify for StandardResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{Content, Ref, Response};
        let error = |why: &str| {
            let mut r = Response::new(why);
            r.content.insert(
                "application/json".into(),
                Content::new(Some(Ref::from_schema_name("ErrorBody"))),
            );
            utoipa::openapi::RefOr::T(r)
        };
        for item in openapi.paths.paths.values_mut() {
            let ops = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in ops.into_iter().flatten() {
                let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
                let body = op.request_body.is_some();
                let params = op.parameters.as_ref().is_some_and(|p| !p.is_empty());
                let mut add = |status: &str, why: &str| {
                    op.responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| error(why));
                };
                if secured {
                    add("401", "`unauthorized`: the credential is missing or wrong (checked before the body)");
                }
                if body {
                    add(
                        "400",
                        "`invalid_request`: the body is not JSON of this shape",
                    );
                    add("408", "`request_timeout`: the body did not arrive in time");
                    add("413", "`body_too_large`: the body is over 64 KiB");
                    add(
                        "415",
                        "`unsupported_media_type`: Content-Type is not application/json",
                    );
                }
                if params {
                    add("400", "`invalid_request`: a path or query parameter does not parse, is unknown, or is above 2^63 − 1");
                }
                add("414", "`uri_too_long`: the URI is over 8 KiB");
                add(
                    "431",
                    "`headers_too_large`: more than 64 headers, or over 16 KiB of them",
                );
            }
        }
    }
}

/// A service whose admin calls take the admin token.
pub trait AdminToken {
    /// SHA-256 of the admin token.
    fn admin_token_hash(&self) -> &[u8; 32];
}

impl<T: AdminToken> AdminToken for std::sync::Arc<T> {
    fn admin_token_hash(&self) -> &[u8; 32] {
        (**self).admin_token_hash()
    }
}

/// An extractor that admits the request only with the admin token. Put it before any body
/// extractor: then a request without the token is `401 unauthorized` whatever its body, and
/// its body is never parsed.
pub struct Admin;

impl<S: AdminToken + Send + Sync> axum::extract::FromRequestParts<S> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        require_admin(&parts.headers, state.admin_token_hash()).map(|()| Admin)
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
