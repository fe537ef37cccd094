//! The integration tests of smpx-wallet, as one test binary (each binary links the whole
//! dependency tree, and linking was most of CI's build): one module per subject.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod chat;
mod directories;
mod flows;
mod relay_pay;
mod retries;
mod schedule;
mod services;
mod support;
