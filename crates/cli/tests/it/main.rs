//! The integration tests of smpx-cli, as one test binary (each binary links the whole
//! dependency tree, and linking was most of CI's build): one module per subject.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin;
mod audit;
mod backup;
mod ceremony;
mod chat;
mod choose;
mod directory;
mod errors;
mod flow;
mod keys_at_rest;
mod learns;
mod processes;
mod relay;
