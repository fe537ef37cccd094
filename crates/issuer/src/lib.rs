//! # smpx-issuer — the issuing operator (IO)
//!
//! Sells vouchers like phone top-up cards: a wallet sends a blinded commitment and a payment,
//! the issuer checks the payment and its issuing limit and returns an RSA blind signature
//! (RFC 9474). It never sees the commitment, so it cannot link the sale to the voucher's later
//! publication or redemption.
//!
//! * [`payment`]: the [`payment::PaymentBackend`] trait and its two backends — prepaid
//!   top-up codes and the devnet backend.
//! * [`keys`]: one RSA key per denomination per key period, created ahead of time and
//!   registered with the coordinator, which is where wallets fetch them.
//! * `handlers`: the `/v1` HTTP API.

mod handlers;
mod home;
pub mod keys;
pub mod openapi;
pub mod payment;
pub mod wrap;

pub use home::{IssuerConfig, IssuerHome};

use smpx_core::crypto::blind::IssuerSecretKey;
use smpx_core::NetworkParams;
use smpx_http::{ApiClient, Clock};
use smpx_store::issuer::IssuerStore;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// A running issuer.
pub struct Issuer {
    pub(crate) store: IssuerStore,
    pub(crate) config: IssuerConfig,
    pub(crate) params: NetworkParams,
    pub(crate) coordinator: ApiClient,
    pub(crate) admin_token_hash: [u8; 32],
    pub(crate) payments: payment::Payments,
    pub(crate) clock: Arc<dyn Clock>,
    /// Encrypts the signing keys in the database.
    pub(crate) key_wrap: wrap::KeyWrap,
    /// Parsed secret keys by key id (parsing a DER RSA key costs more than signing).
    key_cache: RwLock<HashMap<[u8; 32], Arc<IssuerSecretKey>>>,
    /// `GET /metrics`: the HTTP families and [`PURCHASES`], [`SOLD_UNITS`].
    pub(crate) metrics: smpx_http::Metrics,
}

/// Sales recorded (a retried purchase answered again is not counted).
pub const PURCHASES: &str = "smpx_purchases_total";
/// The value of the sales recorded, in ledger units (1 credit = 1,000,000 units).
pub const SOLD_UNITS: &str = "smpx_sold_units_total";

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot reach the coordinator at {url}: {source}")]
    Coordinator {
        url: String,
        source: smpx_http::ClientError,
    },
    #[error(transparent)]
    Keys(#[from] keys::KeyError),
}

impl Issuer {
    /// Builds the issuer: fetches the network parameters from the coordinator and makes sure
    /// keys for the current and next period exist and are registered.
    pub async fn start(
        store: IssuerStore,
        home: IssuerHome,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Issuer>, StartError> {
        let coordinator =
            ApiClient::new(&home.config.coordinator_url).with_token(home.config.credential.clone());
        // The coordinator may still be starting (verifying its transcript): wait for it.
        let params: smpx_core::api::ParamsResponse =
            smpx_http::with_backoff(smpx_http::Backoff::STARTUP, "the coordinator", || {
                coordinator.get("/v1/params")
            })
            .await
            .map_err(|source| StartError::Coordinator {
                url: home.config.coordinator_url.clone(),
                source,
            })?;
        let payments = payment::Payments::new(home.config.devnet_payments);
        let issuer = Arc::new(Issuer {
            store,
            admin_token_hash: smpx_http::token_digest(&home.admin_token),
            key_wrap: home.key_wrap,
            config: home.config,
            params: params.params,
            coordinator,
            payments,
            clock,
            key_cache: RwLock::new(HashMap::new()),
            metrics: {
                let m = smpx_http::Metrics::new();
                m.counter(PURCHASES, "Sales recorded.");
                m.counter(SOLD_UNITS, "Value of the sales recorded, in ledger units.");
                m
            },
        });
        issuer.wrap_plain_keys().await?;
        issuer.ensure_keys().await?;
        Ok(issuer)
    }

    pub fn id(&self) -> &str {
        &self.config.issuer_id
    }

    /// What `GET /metrics` renders.
    pub fn metrics(&self) -> &smpx_http::Metrics {
        &self.metrics
    }

    pub(crate) fn now(&self) -> u64 {
        self.clock.now()
    }

    pub(crate) fn cached_key(&self, id: &[u8; 32]) -> Option<Arc<IssuerSecretKey>> {
        self.key_cache.read().ok()?.get(id).cloned()
    }

    pub(crate) fn cache_key(&self, id: [u8; 32], key: Arc<IssuerSecretKey>) {
        if let Ok(mut m) = self.key_cache.write() {
            m.insert(id, key);
        }
    }
}

/// The HTTP API.
pub fn router(state: Arc<Issuer>) -> axum::Router {
    handlers::router(state)
}

/// Serves the issuer until `shutdown`, renewing keys every `key_check_interval`.
pub async fn run(
    state: Arc<Issuer>,
    listener: tokio::net::TcpListener,
    key_check_interval: Duration,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let bg = state.clone();
    let renew = tokio::spawn(async move {
        let mut tick = tokio::time::interval(key_check_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = bg.ensure_keys().await {
                tracing::warn!(error = %e, "key renewal failed; will retry");
            }
        }
    });
    let metrics = state.metrics.clone();
    let r = smpx_http::serve_metered(listener, router(state), &metrics, shutdown).await;
    renew.abort();
    r
}
