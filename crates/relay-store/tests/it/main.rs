//! The store backends' integration tests: one conformance suite over every backend, the log's
//! format, channels, and durability against SIGKILL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod channels;
mod conformance;
mod durability;
mod log;
