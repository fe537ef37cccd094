//! Channels from the client's side: NEWC, JOIN, POST, USAGE (`smpx_relay_server::channel`
//! describes the relay side).
//!
//! The owner keeps an [`OwnedChannel`] (its ids and owner key) and gives members the join
//! id. A member's JOIN returns an ordinary [`RecipientQueue`], so [`Client::subscribe`],
//! [`Client::get`], [`Client::ack`] and [`Client::delete`] (leaving) work on it unchanged.

use super::{Client, ClientError, RecipientQueue};
use ed25519_dalek::SigningKey;
use smpx_relay_protocol::capacity::ChannelUsageReport;
use smpx_relay_protocol::command::{Command, Response};
use smpx_relay_protocol::{crypto, EntityId, MAX_BODY};
use zeroize::Zeroizing;

/// A channel as its owner holds it (keep it: the owner key is the channel).
pub struct OwnedChannel {
    /// Names the channel in the owner's commands (POST, USAGE, PAY).
    pub owner_id: EntityId,
    /// Give this to members (with the relay address): they JOIN with it.
    pub join_id: EntityId,
    /// Authorises POST, USAGE and PAY.
    pub owner_key: SigningKey,
}

impl std::fmt::Debug for OwnedChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnedChannel")
            .field("owner_id", &self.owner_id)
            .field("join_id", &self.join_id)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// NEWC: creates a channel with a fresh owner key.
    pub async fn create_channel(&self) -> Result<OwnedChannel, ClientError> {
        let owner_key = SigningKey::generate(&mut self.entropy().rng());
        let cmd = Command::NewChannel {
            owner_key: owner_key.verifying_key().to_bytes(),
        };
        match self.request(None, Some(&owner_key), &cmd).await? {
            Response::Channel { owner_id, join_id } => Ok(OwnedChannel {
                owner_id,
                join_id,
                owner_key,
            }),
            r => Err(ClientError::Unexpected(Box::new(r))),
        }
    }

    /// JOIN: a member queue of the channel `join_id` names, with fresh keys.
    ///
    /// A member queue has no sender id the member could use (only the owner's POST fills
    /// it): the returned queue's `sender_id` is the join id, which SEND does not accept.
    pub async fn join_channel(&self, join_id: &EntityId) -> Result<RecipientQueue, ClientError> {
        let recipient_key = SigningKey::generate(&mut self.entropy().rng());
        let dh_secret = Zeroizing::new(crypto::x25519_secret(&mut self.entropy().rng()));
        let cmd = Command::Join {
            recipient_key: recipient_key.verifying_key().to_bytes(),
            recipient_dh: crypto::x25519_public(&dh_secret),
        };
        match self
            .request(Some(join_id), Some(&recipient_key), &cmd)
            .await?
        {
            Response::Member {
                recipient_id,
                server_dh,
            } => {
                let q = RecipientQueue {
                    recipient_id,
                    sender_id: *join_id,
                    recipient_key,
                    dh_secret,
                    server_dh,
                };
                q.delivery_key()?;
                Ok(q)
            }
            r => Err(ClientError::Unexpected(Box::new(r))),
        }
    }

    /// POST: `body` to every member. A relay that wants the channel paid for first answers
    /// [`smpx_relay_protocol::ErrorCode::Payment`] (as [`ClientError::Relay`]).
    pub async fn post(&self, channel: &OwnedChannel, body: &[u8]) -> Result<(), ClientError> {
        if body.len() > MAX_BODY {
            return Err(ClientError::TooLarge(body.len()));
        }
        let cmd = Command::Post {
            body: body.to_vec(),
        };
        match self
            .request(Some(&channel.owner_id), Some(&channel.owner_key), &cmd)
            .await?
        {
            Response::Ok => Ok(()),
            r => Err(ClientError::Unexpected(Box::new(r))),
        }
    }

    /// USAGE: the channel's members, usage, balance and price.
    pub async fn channel_usage(
        &self,
        channel: &OwnedChannel,
    ) -> Result<ChannelUsageReport, ClientError> {
        match self
            .request(
                Some(&channel.owner_id),
                Some(&channel.owner_key),
                &Command::Usage,
            )
            .await?
        {
            Response::Usage { json } => serde_json::from_slice(&json)
                .map_err(|_| ClientError::Unexpected(Box::new(Response::Usage { json }))),
            r => Err(ClientError::Unexpected(Box::new(r))),
        }
    }
}
