//! The server's integration tests: a relay on loopback driven by real clients (plain TCP through the
//! `test-util` acceptor, and TLS), one binary so the world is linked once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod auth;
mod channels;
mod connections;
mod forwarding;
mod limits;
mod pay;
mod queues;
mod support;
mod tls;
