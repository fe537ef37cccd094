//! # smpx-http — what every smpx service and client shares on the wire
//!
//! * [`ApiError`]: a [`ProtocolError`] as an HTTP response with its stable code and status.
//! * [`Json`]: a JSON extractor whose every rejection (bad JSON, unknown field, wrong
//!   content type, body too large) is an [`ApiError`] rather than axum's plain text.
//! * [`finish_router`]: body limit, JSON 404/405 and request tracing, the same everywhere.
//! * [`Token`]: bearer credentials, stored hashed and compared in constant time.
//! * [`Clock`]: the one place services read time, so tests can move it.
//! * [`ApiClient`]: the client side, turning error bodies back into typed errors.

pub mod batch;
mod client;
mod clock;
pub mod common;
pub mod files;
mod server;
mod token;

pub use client::{ApiClient, ClientError};
pub use clock::{Clock, ManualClock, SystemClock};
pub use server::{finish_router, serve, ApiError, ApiResult, Json, Query, MAX_BODY_BYTES};
pub use smpx_core::{ErrorCode, ProtocolError};
pub use token::{
    bearer_token, digest as token_digest, matches as token_matches, split_credential, Token,
};
