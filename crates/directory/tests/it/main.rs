//! The integration tests of smpx-directory, as one test binary: one module per subject.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod deliver;
mod log;
mod measurement;
mod network;
mod privacy;
mod query;
mod registration;
mod schema;
mod support;
mod web;
