//! # smpx-http — the service side of smpx's HTTP APIs
//!
//! This crate owns what a *service* shares: errors as typed JSON responses, strict JSON
//! extraction, bearer tokens, serving, key files and request batching. Calling a service is
//! `smpx-http-client` (no axum), which the wallet uses alone; services depend on this crate
//! and get the client and the clock re-exported from it.
//!
//! * [`ApiError`]: a [`ProtocolError`] as an HTTP response with its stable code and status.
//! * [`Json`]: a JSON extractor whose every rejection (bad JSON, unknown field, wrong
//!   content type, body too large) is an [`ApiError`] rather than axum's plain text.
//! * [`Path`], [`Query`]: extractors whose rejections are JSON too.
//! * [`finish_router`]: body limit, JSON 404/405 and request tracing, the same everywhere.
//! * [`serve`]: HTTP/1.1 with a head timeout (idle and stalled connections close), and the
//!   URI, header, body-size and body-time limits, each answered as a JSON error.
//! * [`Metrics`], [`serve_metered`]: Prometheus `/metrics` — requests, latency and errors
//!   by matched route, and the counters a service adds.
//! * [`Token`]: bearer credentials, stored hashed and compared in constant time.
//! * [`Clock`], [`ApiClient`]: re-exported from `smpx-http-client`.

pub mod batch;
pub mod common;
pub mod files;
pub mod metrics;
mod numbers;
mod server;
mod token;

pub use metrics::Metrics;
pub use server::{
    finish_router, serve, serve_metered, ApiError, ApiResult, Json, Path, Query, BODY_TIMEOUT,
    HEAD_TIMEOUT, MAX_BODY_BYTES, MAX_HEADERS, MAX_HEADER_BYTES, MAX_URI_BYTES,
};
pub use smpx_core::{ErrorCode, ProtocolError};
pub use smpx_http_client::{
    with_backoff, ApiClient, Backoff, ClientError, Clock, ManualClock, SystemClock,
};
pub use token::{
    bearer_token, digest as token_digest, matches as token_matches, split_credential, Token,
};
