//! # smpx-http-client — calling an smpx service, without a server in the dependency tree
//!
//! This crate owns what a *caller* of the smpx HTTP APIs needs: [`ApiClient`] (JSON over
//! reqwest, error bodies turned back into typed [`ClientError::Api`] codes), and re-exports
//! [`Clock`] from `smpx-os`, the one place time is read. It is split from `smpx-http` (axum, utoipa, serving) so that the
//! wallet library, which an app embeds, links a client's dependencies only; the services
//! depend on both and `smpx-http` re-exports these.

mod client;

pub mod retry;

pub use client::{ApiClient, ClientError, POOL_IDLE};
pub use retry::{with_backoff, Backoff};
pub use smpx_core::{ErrorCode, ProtocolError};
pub use smpx_os::{Clock, ManualClock, SystemClock};
