//! The protocol's integration tests: every encoding round-trips and decoding any bytes is total.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod address;
mod decode;
mod vectors;
