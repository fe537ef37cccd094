//! The node's integration tests: `init` and `run` from a relay directory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod directory;
mod run;
mod stored;
