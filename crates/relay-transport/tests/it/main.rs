//! The transport's integration tests: identities on disk and the pinned TLS handshake.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod identity;
mod tls;
