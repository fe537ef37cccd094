//! # smpx-directory — the relay directory
//!
//! Relays are discovered, measured and judged here (issue 13; DESIGN.md §3 "Directory").
//!
//! - **Opt-in registration** (`GET /v1/pow`, `POST /v1/relays`): a relay's operator sends
//!   what it chooses to publish, signed by the relay's CA key (proving the fingerprint is
//!   theirs) and by the operator's key, with a proof of work over a challenge the directory
//!   handed out, which is spent by the registration ([`verify`],
//!   [`smpx_core::directory::wire`]). A fingerprint stays with the operator that registered
//!   it first; registrations per subnet are rate limited.
//! - **Liveness**: heartbeats signed by the operator's key with a growing sequence number,
//!   and active probes through a [`Prober`] on a schedule with bounded concurrency
//!   ([`probe`]). Each observation updates the relay's rolling stability (Tor's weighted
//!   MTBF and fractional uptime, [`smpx_core::rules::measure`]) in the same transaction, so
//!   a restart continues the history.
//! - **Judgement**: flags against thresholds published at `GET /v1/thresholds`; at most
//!   `subnet_limit` relays per IPv4 /24 or IPv6 /48 count toward their operator's weight
//!   ([`smpx_core::rules::listing`]); a trust evaluation per operator, signed once per
//!   period as a share statement (`GET /v1/statements`) a coordinator can rely on.
//! - **Listing**: `GET /v1/relays` (filters), `/v1/relays/{fingerprint}` with its history,
//!   `/v1/operators/{id}` with its attestations; the same as a web page at `/`,
//!   `/relays/{fingerprint}` (uptime chart in SVG) and `/operators/{id}` (identity or
//!   "anonymous", relays, the latest share statement factor by factor) ([`web`]); `GET /v1/relays/pick` for k
//!   Running relays of distinct operators in a region. Reads are served from a judged
//!   snapshot held in memory ([`view::current`]), not from the database.
//!
//! - **Transparency log** ([`log`]): each registration, withdrawal, share statement and
//!   per-round status snapshot is appended to an RFC 6962 Merkle log in the transaction of
//!   the change; signed C2SP checkpoints at `GET /v1/log/checkpoint`, entries and inclusion
//!   and consistency proofs under `/v1/log/`.
//!
//! **What the directory learns** is what operators publish and what its probes observe:
//! nothing about the relays' users passes through it.

pub mod deliver;
mod handlers;
pub mod home;
pub mod log;
pub mod openapi;
pub mod probe;
pub mod verify;
pub mod view;
pub mod web;

pub use home::{DirectoryConfig, DirectoryHome, HomeError};
pub use probe::{NetworkProber, Observation, Prober};

use smpx_core::crypto::sign::SigningKey;
use smpx_http::Clock;
use smpx_store::directory::DirectoryStore;
use std::sync::Arc;

/// A running directory.
pub struct Directory {
    pub(crate) store: DirectoryStore,
    pub(crate) config: DirectoryConfig,
    pub(crate) signing_key: SigningKey,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) prober: Arc<dyn Prober>,
    /// `GET /metrics`: the HTTP families and [`REGISTRATIONS`], [`PROBES`], [`STATEMENTS`].
    pub(crate) metrics: smpx_http::Metrics,
    /// What reads are served from ([`view::current`]).
    pub(crate) snapshots: view::SnapshotCache,
    /// The transparency log's signer and proof tree ([`log`]).
    pub(crate) log: log::LogState,
}

/// Registrations accepted (new relays and updates).
pub const REGISTRATIONS: &str = "smpx_directory_registrations_total";
/// Probes recorded, by `result` (`up`, `down`).
pub const PROBES: &str = "smpx_directory_probes_total";
/// Share statements signed.
pub const STATEMENTS: &str = "smpx_directory_statements_total";

fn directory_metrics() -> smpx_http::Metrics {
    let m = smpx_http::Metrics::new();
    m.counter(
        REGISTRATIONS,
        "Relay registrations accepted (new and updated).",
    );
    m.counter(PROBES, "Probes recorded, by result.");
    for r in ["up", "down"] {
        m.counter_series(PROBES, &[("result", r)]);
    }
    m.counter(STATEMENTS, "Share statements signed.");
    m
}

impl Directory {
    /// The directory over its store, with its home's configuration and key.
    pub fn new(
        store: DirectoryStore,
        home: DirectoryHome,
        clock: Arc<dyn Clock>,
        prober: Arc<dyn Prober>,
    ) -> Arc<Directory> {
        let log = log::LogState::new(&home.config.name, &home.signing_key);
        Arc::new(Directory {
            log,
            store,
            config: home.config,
            signing_key: home.signing_key,
            clock,
            prober,
            metrics: directory_metrics(),
            snapshots: view::SnapshotCache::default(),
        })
    }

    /// What `GET /metrics` renders.
    pub fn metrics(&self) -> &smpx_http::Metrics {
        &self.metrics
    }

    pub fn store(&self) -> &DirectoryStore {
        &self.store
    }

    /// The judged snapshot reads are served from; a writer to the store other than this
    /// directory's handlers and probe rounds (a benchmark, an import) invalidates it.
    pub fn snapshots(&self) -> &view::SnapshotCache {
        &self.snapshots
    }

    pub fn config(&self) -> &DirectoryConfig {
        &self.config
    }

    /// The transparency log's origin and the key its checkpoints verify with ([`log`]).
    pub fn log(&self) -> &log::LogState {
        &self.log
    }

    /// The key share statements are signed with (a coordinator trusts its public half).
    pub fn statement_key(&self) -> smpx_core::crypto::sign::VerifyingKey {
        self.signing_key.verifying_key()
    }
}

/// The HTTP API.
pub fn router(state: Arc<Directory>) -> axum::Router {
    handlers::router(state)
}

/// Serves the directory until `shutdown`, probing every `probe_interval_secs` meanwhile
/// (and issuing share statements after each round).
pub async fn run(
    state: Arc<Directory>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let scheduler = tokio::spawn(probe::schedule(state.clone()));
    let served = serve(state, listener, shutdown).await;
    scheduler.abort();
    served
}

/// Serves the directory's API and pages until `shutdown`, without the probe schedule (tests
/// and benchmarks run the rounds themselves, at the times they choose): the metrics layer
/// outside the request limits, as [`run`] serves it.
pub async fn serve(
    state: Arc<Directory>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let metrics = state.metrics.clone();
    smpx_http::serve_metered(listener, router(state), &metrics, shutdown).await
}
