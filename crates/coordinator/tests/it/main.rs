//! The integration tests of smpx-coordinator, as one test binary (each binary links the whole
//! dependency tree, and linking was most of CI's build): one module per subject.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api;
mod hostile;
mod metrics;
mod schema;
mod shares;
mod zk_cache;
