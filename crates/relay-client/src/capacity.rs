//! Paying for capacity: INFO and PAY (`smpx_relay_server::capacity` describes the relay side).

use super::{Client, ClientError};
use ed25519_dalek::SigningKey;
use smpx_core::credits::SwapRequest;
use smpx_relay_protocol::capacity::{PayAnswer, RelayInfo};
use smpx_relay_protocol::command::{Command, Response};
use smpx_relay_protocol::EntityId;

impl Client {
    /// INFO: the operator this relay is paid through, and its prices.
    pub async fn info(&self) -> Result<RelayInfo, ClientError> {
        match self.request(None, None, &Command::Info).await? {
            Response::Info { json } => serde_json::from_slice(&json)
                .map_err(|_| ClientError::Unexpected(Box::new(Response::Info { json }))),
            r => Err(ClientError::Unexpected(Box::new(r))),
        }
    }

    /// PAY for the queue `entity` (its recipient id, signed with the recipient key) or the
    /// channel `entity` (its owner id, signed with the owner key) with the credits in
    /// `request` (a NUT-03 swap: the inputs minus the outputs are the payment).
    ///
    /// The answer says whether the operator's registry took the tokens ([`PayAnswer`]); a
    /// relay-level refusal (bad signature, payment below the price, a relay that takes no
    /// payments) is [`ClientError::Relay`].
    pub async fn pay(
        &self,
        entity: &EntityId,
        key: &SigningKey,
        request: &SwapRequest,
    ) -> Result<PayAnswer, ClientError> {
        let json = serde_json::to_vec(request).map_err(|e| ClientError::Encode(e.to_string()))?;
        let cmd = Command::Pay { request: json };
        match self.request(Some(entity), Some(key), &cmd).await? {
            Response::Paid { json } => serde_json::from_slice(&json)
                .map_err(|_| ClientError::Unexpected(Box::new(Response::Paid { json }))),
            r => Err(ClientError::Unexpected(Box::new(r))),
        }
    }
}
