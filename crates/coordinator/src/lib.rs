//! # smpx-coordinator — the coordination layer (CL)
//!
//! The one honest record of the voucher system (seed 003): which issuers may issue and how
//! much, their keys per period, every published voucher, every redemption, and the ledger that
//! moves value from issuers to the pool and from the pool to operators and the network fund.
//!
//! This crate is the thin IO shell around `smpx-core` (rules) and `smpx-store` (transactions):
//! [`Coordinator`] holds keys, parameters and the store; [`router`] maps `/v1` endpoints onto
//! it; [`run`] serves it and releases expired vouchers in the background.

mod accumulator;
mod handlers;
mod home;
pub mod openapi;
pub mod shares;
pub mod zk;

pub use handlers::{OperatorShare, StatementTaken};
pub use home::{CoordinatorConfig, CoordinatorHome, HomeError, CONFIG_FILE};
pub use zk::{ZkKeys, ZkKeysError};

use smpx_core::crypto::blind::IssuerPublicKey;
use smpx_core::crypto::envelope::HpkeSecretKey;
use smpx_core::crypto::sign::SigningKey;
use smpx_core::NetworkParams;
use smpx_http::Clock;
use smpx_store::coordinator::CoordinatorStore;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Everything a running coordinator needs.
pub struct Coordinator {
    pub(crate) store: CoordinatorStore,
    pub(crate) params: NetworkParams,
    pub(crate) receipt_key: SigningKey,
    pub(crate) envelope_key: HpkeSecretKey,
    pub(crate) admin_token_hash: [u8; 32],
    pub(crate) clock: Arc<dyn Clock>,
    /// Parsed issuer keys by key id. Keys never change once registered, so a cache entry is
    /// never stale.
    key_cache: RwLock<HashMap<[u8; 32], Arc<IssuerPublicKey>>>,
    /// v0.2 keys and the batch verifier; `None` serves v0.1 only.
    pub(crate) zk: Option<ZkState>,
    /// `GET /metrics`: the HTTP families and [`PUBLISHES`], [`REDEMPTIONS`].
    pub(crate) metrics: smpx_http::Metrics,
    /// The directories whose share statements are taken ([`shares`]); empty: none is.
    pub(crate) trusted_directories: Vec<smpx_core::crypto::sign::VerifyingKey>,
}

/// Vouchers published (a retried publish answered from its stored receipt is not counted).
pub const PUBLISHES: &str = "smpx_publishes_total";
/// Redemptions cleared, by `version` (`v0.1`, `v0.2`); retries answered from the stored
/// receipt are not counted.
pub const REDEMPTIONS: &str = "smpx_redemptions_total";

/// The `version` label of a redemption: the protocol version's name, a constant.
pub(crate) fn version_label(v: smpx_core::rules::redeem::Version) -> &'static str {
    match v {
        smpx_core::rules::redeem::Version::V1 => "v0.1",
        smpx_core::rules::redeem::Version::V2 => "v0.2",
    }
}

fn coordinator_metrics() -> smpx_http::Metrics {
    let m = smpx_http::Metrics::new();
    m.counter(PUBLISHES, "Vouchers published.");
    m.counter(REDEMPTIONS, "Redemptions cleared, by protocol version.");
    for v in ["v0.1", "v0.2"] {
        m.counter_series(REDEMPTIONS, &[("version", v)]);
    }
    m
}

pub(crate) struct ZkState {
    pub(crate) keys: ZkKeys,
    pub(crate) verifier: zk::Verifier,
}

impl Coordinator {
    /// A coordinator serving v0.1 only (no ceremony keys).
    pub fn new(
        store: CoordinatorStore,
        home: CoordinatorHome,
        clock: Arc<dyn Clock>,
    ) -> Arc<Coordinator> {
        Self::with_zk(store, home, clock, None)
    }

    /// A coordinator with v0.2 keys, if given (see [`ZkKeys::load`]). The parameters it
    /// publishes list protocol version 2 only when it has keys. Must be called inside a
    /// tokio runtime (it starts the proof verifier's workers).
    pub fn with_zk(
        store: CoordinatorStore,
        home: CoordinatorHome,
        clock: Arc<dyn Clock>,
        zk: Option<ZkKeys>,
    ) -> Arc<Coordinator> {
        let mut params = home.params;
        let zk = zk.map(|keys| {
            let workers = keys
                .workers
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            ZkState {
                verifier: zk::Verifier::start(keys.pvk.clone(), workers),
                keys,
            }
        });
        if zk.is_none() {
            params
                .protocol_versions
                .retain(|v| *v != smpx_core::redemption::PROTOCOL_V2);
        }
        Arc::new(Coordinator {
            store,
            admin_token_hash: smpx_http::token_digest(&home.admin_token),
            params,
            receipt_key: home.receipt_key,
            envelope_key: home.envelope_key,
            clock,
            key_cache: RwLock::new(HashMap::new()),
            zk,
            metrics: coordinator_metrics(),
            trusted_directories: home.trusted_directories,
        })
    }

    pub fn params(&self) -> &NetworkParams {
        &self.params
    }

    pub fn store(&self) -> &CoordinatorStore {
        &self.store
    }

    /// What `GET /metrics` renders.
    pub fn metrics(&self) -> &smpx_http::Metrics {
        &self.metrics
    }

    pub(crate) fn now(&self) -> u64 {
        self.clock.now()
    }

    pub(crate) fn cached_key(&self, id: &[u8; 32]) -> Option<Arc<IssuerPublicKey>> {
        self.key_cache.read().ok()?.get(id).cloned()
    }

    pub(crate) fn cache_key(&self, id: [u8; 32], key: Arc<IssuerPublicKey>) {
        if let Ok(mut m) = self.key_cache.write() {
            m.insert(id, key);
        }
    }

    /// Releases expired vouchers now; what the background task and the admin endpoint call.
    pub async fn release_expired(
        &self,
    ) -> Result<(u64, smpx_core::Amount), smpx_store::StoreError> {
        let now = self.now();
        let through = smpx_core::rotation::last_expired_prefix(&self.params, now);
        let (n, v) = self.store.release_expired(now, through).await?;
        if n > 0 {
            tracing::info!(count = n, value = %v, "released expired vouchers to the network fund");
        }
        Ok((n, v))
    }
}

/// The HTTP API.
pub fn router(state: Arc<Coordinator>) -> axum::Router {
    handlers::router(state)
}

/// Serves the coordinator on `listener` until `shutdown`, releasing expired vouchers every
/// `expiry_interval`.
pub async fn run(
    state: Arc<Coordinator>,
    listener: tokio::net::TcpListener,
    expiry_interval: Duration,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let bg = state.clone();
    let expiry = tokio::spawn(async move {
        let mut tick = tokio::time::interval(expiry_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = bg.release_expired().await {
                tracing::warn!(error = %e, "expiry run failed; will retry");
            }
        }
    });
    let metrics = state.metrics.clone();
    let r = smpx_http::serve_metered(listener, router(state), &metrics, shutdown).await;
    expiry.abort();
    r
}
