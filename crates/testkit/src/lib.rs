//! The one test network of the workspace, for dev-dependencies only.
//!
//! Tests that need services run the real ones rather than stand-ins that drift from them:
//! [`net::Network`] starts the real coordinator, issuer and operator in-process on loopback,
//! each with its own data directory and database (SQLite or PostgreSQL by one switch,
//! [`Backend`]), on listeners bound to port 0 and handed to the server (no port is ever
//! released and re-bound by someone else), and restarts any one of them on the same data.
//! [`relay`] starts relays (the only module that names the relay node library);
//! [`process`] runs the `smpx` binary as separate processes, waits for the line that says
//! where it listens, and kills (SIGKILL) or restarts it. [`proxy::Proxy`] stands in front of
//! a service and loses answers on request. [`directory`] starts relay directories with a manual clock and scripted probes, and
//! registers relays with them. [`ceremony`] gives the cached local
//! ceremony the small test circuits use. [`schema::Document`] judges requests by a service's
//! own OpenAPI document (boon, draft 2020-12) and asserts the service agrees. [`browser::Browser`]
//! loads a loopback page in a real headless Chromium and saves screenshots. [`db`] (`smpx-testdb`) makes throw-away databases,
//! and [`both!`] runs a test once per backend.

pub use smpx_testdb as db;
pub use smpx_testdb::{both, Backend};

pub mod browser;
pub mod ceremony;
pub mod directory;
pub mod net;
pub mod process;
pub mod proxy;
pub mod relay;
pub mod schema;
