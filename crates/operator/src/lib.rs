//! # smpx-operator — the accepting operator (AO)
//!
//! A relay operator is paid when a wallet redeems a voucher at it. The wallet hands the
//! operator either an envelope sealed to the coordinator (v0.1) or a zero-knowledge proof
//! bound to this operator (v0.2); the operator can do neither more nor less than forward it
//! with its own credential. The coordinator checks the request names this operator, pays
//! the operator's revenue share from the pool and returns a signed receipt; the operator
//! checks that receipt and gives the wallet its own signed receipt for the credited amount.
//! (Blind-signed credits replace this receipt in a later version.)
//!
//! Redemptions are recorded by request digest, so a wallet retrying after a lost answer gets
//! the same receipt and is never credited twice.

mod handlers;
mod home;
pub mod openapi;

pub use home::{OperatorConfig, OperatorHome};

use smpx_core::crypto::sign::{SigningKey, VerifyingKey};
use smpx_http::{ApiClient, Clock};
use smpx_store::operator::OperatorStore;
use std::sync::Arc;

/// A running operator.
pub struct Operator {
    pub(crate) store: OperatorStore,
    pub(crate) config: OperatorConfig,
    pub(crate) receipt_key: SigningKey,
    pub(crate) coordinator: ApiClient,
    /// The coordinator's receipt key, learned at start.
    pub(crate) coordinator_key: VerifyingKey,
    pub(crate) clock: Arc<dyn Clock>,
}

impl Operator {
    /// Builds the operator, learning the coordinator's receipt key.
    pub async fn start(
        store: OperatorStore,
        home: OperatorHome,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Operator>, smpx_http::ClientError> {
        let coordinator =
            ApiClient::new(&home.config.coordinator_url).with_token(home.config.credential.clone());
        let params: smpx_core::api::ParamsResponse = coordinator.get("/v1/params").await?;
        Ok(Arc::new(Operator {
            store,
            config: home.config,
            receipt_key: home.receipt_key,
            coordinator,
            coordinator_key: params.receipt_key,
            clock,
        }))
    }

    pub fn id(&self) -> &str {
        &self.config.operator_id
    }
}

/// The HTTP API.
pub fn router(state: Arc<Operator>) -> axum::Router {
    handlers::router(state)
}

/// Serves the operator until `shutdown`.
pub async fn run(
    state: Arc<Operator>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    smpx_http::serve(listener, router(state), shutdown).await
}
