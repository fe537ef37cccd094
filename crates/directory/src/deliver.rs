//! Handing share statements to coordinators: after each round, every operator's statement
//! for the current period is posted to each coordinator in `coordinators`
//! (`POST /v1/share-statements`). A coordinator takes a statement only from a directory key
//! it trusts and answers a repeat as taken, so posting every round is safe and needs no
//! record of what was delivered; a coordinator that was down gets the statement next round.

use crate::Directory;
use smpx_core::directory::period_start;
use smpx_http::{ApiClient, ClientError};
use smpx_store::StoreError;

/// What one delivery round did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Statements a coordinator took (or already had).
    pub taken: usize,
    /// Statements a coordinator refused (untrusted key, unknown operator, …).
    pub refused: usize,
    /// Posts that did not reach a coordinator.
    pub unreachable: usize,
}

/// Posts the current period's statements to every configured coordinator.
pub async fn deliver_statements(dir: &Directory) -> Result<Delivery, StoreError> {
    let mut done = Delivery::default();
    if dir.config.coordinators.is_empty() {
        return Ok(done);
    }
    let period = period_start(dir.clock.now());
    let mut statements = Vec::new();
    for op in dir.store.operators().await? {
        for text in dir
            .store
            .statements(Some(&op.operator_id), Some(period), 1)
            .await?
        {
            match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(v) => statements.push((op.operator_id.clone(), v)),
                Err(e) => return Err(StoreError::Corrupt(e.to_string())),
            }
        }
    }
    for url in &dir.config.coordinators {
        let client = ApiClient::new(url);
        for (operator, statement) in &statements {
            let answer: Result<serde_json::Value, ClientError> =
                client.post("/v1/share-statements", statement).await;
            match answer {
                Ok(_) => done.taken += 1,
                Err(ClientError::Api { code, message, .. }) => {
                    tracing::warn!(coordinator = %url, operator = %operator, %code, %message,
                        "the coordinator refused a share statement");
                    done.refused += 1;
                }
                Err(e) => {
                    tracing::warn!(coordinator = %url, error = %e, "delivering share statements");
                    done.unreachable += 1;
                }
            }
        }
    }
    Ok(done)
}
