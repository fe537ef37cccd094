//! The relay client's integration tests against real relays (the test kit's relay node) and
//! test doubles built from the real transport. One binary, so the world is linked once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod probe;
mod session;
