//! # smpx-operator — the accepting operator (AO)
//!
//! A relay operator is paid when a wallet redeems a voucher at it. The wallet hands the
//! operator either an envelope sealed to the coordinator (v0.1) or a zero-knowledge proof
//! bound to this operator (v0.2); the operator can do neither more nor less than forward it
//! with its own credential. The coordinator checks the request names this operator, pays
//! the operator's revenue share from the pool and returns a signed receipt; the operator
//! checks that receipt and gives the wallet its own signed receipt for the credited amount.
//!
//! Redemptions are recorded by request digest, so a wallet retrying after a lost answer gets
//! the same receipt and is never credited twice.
//!
//! ## Credits
//!
//! The credited amount is paid in **operator credits**: Chaumian e-cash the operator
//! blind-signs ([`smpx_core::credits`]: Cashu's NUT-00 blind Diffie-Hellman, NUT-12 DLEQ
//! proofs, one keyset per day with a final expiry), so it can bill every later request
//! without learning who makes it.
//!
//! - **Issuance**: `POST /v1/redeem` with `outputs` (blinded messages for the credited
//!   amount in power-of-two denominations); once the coordinator's receipt verifies, the
//!   operator signs them with DLEQ proofs and records the issuance by the request's digest,
//!   so a retry returns the same signatures (`handlers.rs`).
//! - **Keys**: `GET /v1/keys`, `/v1/keys/{id}`, `/v1/keysets` (NUT-01/02).
//! - **Spending**: `POST /v1/swap` (NUT-03), batched into the spend saga of the spent
//!   registry shared by all of the operator's servers; `GET /v1/swap/{id}` to collect change
//!   after a lost answer or a crash; `POST /v1/checkstate` (NUT-07); `POST /v1/restore`
//!   (NUT-09: signatures of earlier outputs by `B_`, for a wallet restored from its seed)
//!   (`credit_handlers.rs`, `batch.rs`).
//! - **Recovery and pruning**: spends left pending are resolved at start and periodically;
//!   spent records of expired keysets are pruned daily (`credits.rs`).
//!
//! Several processes of one operator may share one PostgreSQL database (the spent registry,
//! [`smpx_store::credits`]) as long as they share the credit master secret and parameters
//! (`home.rs`); a single node uses SQLite.

mod batch;
mod credit_handlers;
mod credits;
mod handlers;
mod home;
pub mod openapi;

pub use credits::RecoveryReport;
pub use home::{CreditsConfig, KeysetIdFormat, OperatorConfig, OperatorHome};

use smpx_core::crypto::sign::{SigningKey, VerifyingKey};
use smpx_http::{ApiClient, ClientError, Clock};
use smpx_store::credits::{CreditStore, PruneReport};
use smpx_store::operator::OperatorStore;
use smpx_store::StoreError;
use std::sync::Arc;

/// Why an operator could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The coordinator could not be asked for its receipt key.
    #[error("asking the coordinator: {0}")]
    Coordinator(#[from] ClientError),
    /// The credit tables could not be opened, or pending spends not recovered.
    #[error("credit store: {0}")]
    Store(#[from] StoreError),
    /// The credit parameters in `credits.json` are not usable.
    #[error("credit keys: {0}")]
    Credits(#[from] smpx_core::credits::CreditError),
}

/// A running operator.
pub struct Operator {
    pub(crate) store: OperatorStore,
    pub(crate) config: OperatorConfig,
    pub(crate) receipt_key: SigningKey,
    pub(crate) coordinator: ApiClient,
    /// The coordinator's receipt key, learned at start.
    pub(crate) coordinator_key: VerifyingKey,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) credits: Arc<credits::Credits>,
    /// `GET /metrics`: the HTTP families and [`REDEMPTIONS`], [`OUTPUTS_SIGNED`],
    /// [`TOKENS_SPENT`].
    pub(crate) metrics: smpx_http::Metrics,
}

/// Redemptions the coordinator cleared for this operator and it recorded, by `version`
/// (`v0.1`, `v0.2`); a retry answered from the record is not counted.
pub const REDEMPTIONS: &str = "smpx_redemptions_total";
/// Credit outputs (blinded messages) signed: at redemption and as swap change. A retry
/// answered with the first signatures is not counted.
pub const OUTPUTS_SIGNED: &str = "smpx_credit_outputs_signed_total";
/// Credit tokens spent by swaps (inputs the registry took); a replayed swap is not counted.
pub const TOKENS_SPENT: &str = "smpx_credit_tokens_spent_total";

fn operator_metrics() -> smpx_http::Metrics {
    let m = smpx_http::Metrics::new();
    m.counter(REDEMPTIONS, "Redemptions recorded, by protocol version.");
    for v in ["v0.1", "v0.2"] {
        m.counter_series(REDEMPTIONS, &[("version", v)]);
    }
    m.counter(
        OUTPUTS_SIGNED,
        "Credit outputs signed (redemptions and swap change).",
    );
    m.counter(TOKENS_SPENT, "Credit tokens spent by swaps.");
    m
}

impl Operator {
    /// Builds the operator: learns the coordinator's receipt key, opens the credit tables on
    /// the operator's database, derives the credit key ring and resolves spends left pending
    /// longer than the recovery timeout (a crash between registering a spend and releasing
    /// its change).
    pub async fn start(
        store: OperatorStore,
        home: OperatorHome,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Operator>, StartError> {
        let coordinator =
            ApiClient::new(&home.config.coordinator_url).with_token(home.config.credential.clone());
        // The coordinator may still be starting (verifying its transcript): wait for it.
        let params: smpx_core::api::ParamsResponse =
            smpx_http::with_backoff(smpx_http::Backoff::STARTUP, "the coordinator", || {
                coordinator.get("/v1/params")
            })
            .await?;
        let credit_store = CreditStore::open(store.db().clone()).await?;
        let credits = Arc::new(credits::Credits::new(
            home.credit_master,
            home.credits,
            credit_store,
            clock.clone(),
        )?);
        credits.recover(clock.now()).await?;
        Ok(Arc::new(Operator {
            store,
            config: home.config,
            receipt_key: home.receipt_key,
            coordinator,
            coordinator_key: params.receipt_key,
            clock,
            credits,
            metrics: operator_metrics(),
        }))
    }

    pub fn id(&self) -> &str {
        &self.config.operator_id
    }

    /// What `GET /metrics` renders.
    pub fn metrics(&self) -> &smpx_http::Metrics {
        &self.metrics
    }

    /// The credit store (spent registry, sagas, issuances) on the operator's database.
    pub fn credit_store(&self) -> &CreditStore {
        &self.credits.store
    }

    /// Resolves spends pending longer than the recovery timeout (also run at start and
    /// periodically by [`run`]).
    pub async fn recover_credits(&self) -> Result<RecoveryReport, StoreError> {
        self.credits.recover(self.clock.now()).await
    }

    /// Forgets spent records of expired keysets (also run daily by [`run`]).
    pub async fn prune_credits(&self) -> Result<PruneReport, StoreError> {
        self.credits.prune(self.clock.now()).await
    }
}

/// The HTTP API.
pub fn router(state: Arc<Operator>) -> axum::Router {
    handlers::router(state)
}

/// Serves the operator until `shutdown`, with the credit maintenance (recovery of stale
/// pending spends, daily pruning) running in the background meanwhile.
pub async fn run(
    state: Arc<Operator>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let maintenance = tokio::spawn(credits::maintain(state.credits.clone()));
    let metrics = state.metrics.clone();
    let served = smpx_http::serve_metered(listener, router(state), &metrics, shutdown).await;
    maintenance.abort();
    served
}
