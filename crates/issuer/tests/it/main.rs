//! The integration tests of smpx-issuer, as one test binary: one module per subject.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod schema;
