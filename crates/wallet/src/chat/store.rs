//! What chat keeps in the wallet file: contact and message rows, and the secrets sealed in
//! them with the vault key (the SQL and the sealing, not the flows).

use super::envelope::e2e_key;
use super::session::Chat;
use super::{arr, corrupt, ChatError, Role};
use ed25519_dalek::SigningKey;
use serde::Serialize;
use smpx_relay_client::RecipientQueue;
use smpx_relay_protocol::EntityId;
use smpx_relay_protocol::RelayAddress;
use sqlx::Row;
use zeroize::Zeroizing;

/// Where a contact is in the flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ContactState {
    /// Invitation created, no hello received yet.
    Invited,
    /// Invitation accepted and hello sent; nothing received from the inviter yet.
    Accepted,
    Connected,
}

impl ContactState {
    fn as_str(self) -> &'static str {
        match self {
            ContactState::Invited => "invited",
            ContactState::Accepted => "accepted",
            ContactState::Connected => "connected",
        }
    }
}

/// A contact (no secrets).
#[derive(Clone, Debug, Serialize)]
pub struct Contact {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub state: ContactState,
    /// The relay this wallet receives the contact's messages on.
    pub my_relay: String,
    /// The relay the contact receives on, once known.
    pub peer_relay: Option<String>,
    pub created_at: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    In,
    Out,
}

/// A message, as stored in the wallet.
#[derive(Clone, Debug, Serialize)]
pub struct ChatMessage {
    pub id: i64,
    pub contact: String,
    pub direction: Direction,
    pub text: String,
    /// When the sender says it sent it.
    pub sent_at: u64,
    /// When this wallet stored it.
    pub at: u64,
}

/// What one [`Chat::receive`] brought.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Received {
    /// Contacts that became connected.
    pub connected: Vec<String>,
    /// New messages, in the order they arrived (per contact, the order they were sent).
    pub messages: Vec<ChatMessage>,
    /// Deliveries that were not a valid message for their queue (e.g. garbage sent before the
    /// queue was secured), acknowledged and dropped.
    pub dropped: usize,
    /// Contacts whose queue hit the relay's quota (at least one message was refused).
    pub quota_exceeded: Vec<String>,
    /// Relays that could not be reached (their contacts were skipped this time; when no
    /// relay can be reached, `receive` fails instead).
    pub unreachable: Vec<String>,
}

/// A contact row with its stored material.
#[derive(Clone)]
pub(super) struct Row_ {
    pub(super) id: i64,
    pub(super) name: String,
    pub(super) role: Role,
    pub(super) state: ContactState,
    pub(super) my_relay: RelayAddress,
    pub(super) recipient_id: EntityId,
    pub(super) sender_id: EntityId,
    pub(super) server_dh: [u8; 32],
    pub(super) my_e2e_public: [u8; 32],
    pub(super) my_secrets_enc: Vec<u8>,
    pub(super) peer_relay: Option<RelayAddress>,
    pub(super) peer_sender_id: Option<EntityId>,
    pub(super) peer_e2e_public: Option<[u8; 32]>,
    pub(super) send_key_enc: Option<Vec<u8>>,
    pub(super) created_at: u64,
}

impl Row_ {
    fn contact(&self) -> Contact {
        Contact {
            id: self.id,
            name: self.name.clone(),
            role: self.role,
            state: self.state,
            my_relay: self.my_relay.to_string(),
            peer_relay: self.peer_relay.as_ref().map(|r| r.to_string()),
            created_at: self.created_at,
        }
    }
}

const CONTACT_COLUMNS: &str = "id, name, role, state, my_relay, my_recipient_id, my_sender_id, \
    my_server_dh, my_e2e_public, my_secrets_enc, peer_relay, peer_sender_id, peer_e2e_public, \
    send_key_enc, created_at";

fn parse_row(r: &sqlx::sqlite::SqliteRow) -> Result<Row_, ChatError> {
    let role = match r.try_get::<String, _>("role")?.as_str() {
        "inviter" => Role::Inviter,
        "acceptor" => Role::Acceptor,
        _ => return Err(corrupt("role")),
    };
    let state = match r.try_get::<String, _>("state")?.as_str() {
        "invited" => ContactState::Invited,
        "accepted" => ContactState::Accepted,
        "connected" => ContactState::Connected,
        _ => return Err(corrupt("state")),
    };
    let relay = |s: String| {
        s.parse::<RelayAddress>()
            .map_err(|_| corrupt("relay address"))
    };
    let peer_relay: Option<String> = r.try_get("peer_relay")?;
    let peer_sid: Option<Vec<u8>> = r.try_get("peer_sender_id")?;
    let peer_e2e: Option<Vec<u8>> = r.try_get("peer_e2e_public")?;
    Ok(Row_ {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        role,
        state,
        my_relay: relay(r.try_get("my_relay")?)?,
        recipient_id: EntityId(arr(&r.try_get::<Vec<u8>, _>("my_recipient_id")?, "id")?),
        sender_id: EntityId(arr(&r.try_get::<Vec<u8>, _>("my_sender_id")?, "id")?),
        server_dh: arr(&r.try_get::<Vec<u8>, _>("my_server_dh")?, "relay key")?,
        my_e2e_public: arr(&r.try_get::<Vec<u8>, _>("my_e2e_public")?, "e2e key")?,
        my_secrets_enc: r.try_get("my_secrets_enc")?,
        peer_relay: peer_relay.map(relay).transpose()?,
        peer_sender_id: peer_sid
            .map(|v| arr(&v, "peer id").map(EntityId))
            .transpose()?,
        peer_e2e_public: peer_e2e.map(|v| arr(&v, "peer key")).transpose()?,
        send_key_enc: r.try_get("send_key_enc")?,
        created_at: u64::try_from(r.try_get::<i64, _>("created_at")?).unwrap_or(0),
    })
}

pub(super) mod aad {
    pub(in crate::chat) fn queue(recipient_id: &[u8]) -> Vec<u8> {
        format!("smpx-wallet/v1/chat-queue/{}", hex::encode(recipient_id)).into_bytes()
    }
    pub(in crate::chat) fn send_key(recipient_id: &[u8]) -> Vec<u8> {
        format!("smpx-wallet/v1/chat-send-key/{}", hex::encode(recipient_id)).into_bytes()
    }
    pub(in crate::chat) fn message(contact_id: i64) -> Vec<u8> {
        format!("smpx-wallet/v1/chat-message/{contact_id}").into_bytes()
    }
}

/// This side's queue secrets: recipient key ‖ queue X25519 secret ‖ end-to-end X25519 secret.
struct Secrets(Zeroizing<Vec<u8>>);

impl Secrets {
    fn recipient_key(&self) -> Result<SigningKey, ChatError> {
        Ok(SigningKey::from_bytes(&arr(&self.0[..32], "queue key")?))
    }
    fn dh_secret(&self) -> Result<Zeroizing<[u8; 32]>, ChatError> {
        Ok(Zeroizing::new(arr(&self.0[32..64], "queue key")?))
    }
    fn e2e_secret(&self) -> Result<Zeroizing<[u8; 32]>, ChatError> {
        Ok(Zeroizing::new(arr(&self.0[64..96], "e2e key")?))
    }
}

fn valid_name(name: &str) -> Result<(), ChatError> {
    let n = name.chars().count();
    if n == 0 || n > 64 || name.chars().any(char::is_control) || name.trim() != name {
        return Err(ChatError::BadName);
    }
    Ok(())
}

pub(super) fn name_conflict(e: sqlx::Error, name: &str) -> ChatError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            ChatError::NameTaken(name.to_owned())
        }
        _ => e.into(),
    }
}

impl Chat<'_> {
    pub(super) async fn name_free(&self, name: &str) -> Result<(), ChatError> {
        valid_name(name)?;
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM chat_contacts WHERE name = ?")
            .bind(name)
            .fetch_one(self.wallet.pool())
            .await?;
        if n > 0 {
            return Err(ChatError::NameTaken(name.to_owned()));
        }
        Ok(())
    }

    pub(super) fn seal_secrets(
        &self,
        q: &RecipientQueue,
        e2e_secret: &[u8; 32],
    ) -> Result<Vec<u8>, ChatError> {
        let mut s = Zeroizing::new(Vec::with_capacity(96));
        s.extend_from_slice(&q.recipient_key.to_bytes());
        s.extend_from_slice(&*q.dh_secret);
        s.extend_from_slice(e2e_secret);
        Ok(self
            .wallet
            .vault_key()
            .seal(&aad::queue(&q.recipient_id.0), &s)?)
    }

    fn secrets(&self, row: &Row_) -> Result<Secrets, ChatError> {
        let s = self
            .wallet
            .vault_key()
            .open_known(&aad::queue(&row.recipient_id.0), &row.my_secrets_enc)?;
        if s.len() != 96 {
            return Err(corrupt("queue secrets"));
        }
        Ok(Secrets(s))
    }

    pub(super) fn queue(&self, row: &Row_) -> Result<RecipientQueue, ChatError> {
        let s = self.secrets(row)?;
        Ok(RecipientQueue {
            recipient_id: row.recipient_id,
            sender_id: row.sender_id,
            recipient_key: s.recipient_key()?,
            dh_secret: s.dh_secret()?,
            server_dh: row.server_dh,
        })
    }

    pub(super) fn send_key(&self, row: &Row_) -> Result<SigningKey, ChatError> {
        let blob = row
            .send_key_enc
            .as_ref()
            .ok_or_else(|| ChatError::NotConnected(row.name.clone()))?;
        let k = self
            .wallet
            .vault_key()
            .open_known(&aad::send_key(&row.recipient_id.0), blob)?;
        Ok(SigningKey::from_bytes(&arr(&k, "send key")?))
    }

    /// The end-to-end key with the contact, once its public key is known.
    pub(super) fn e2e(
        &self,
        row: &Row_,
        peer_public: &[u8; 32],
    ) -> Result<Option<Zeroizing<[u8; 32]>>, ChatError> {
        let s = self.secrets(row)?;
        Ok(e2e_key(
            &*s.e2e_secret()?,
            &row.my_e2e_public,
            peer_public,
            row.role,
        ))
    }

    pub(super) async fn rows(&self) -> Result<Vec<Row_>, ChatError> {
        let rows = sqlx::query(&format!(
            "SELECT {CONTACT_COLUMNS} FROM chat_contacts ORDER BY id"
        ))
        .fetch_all(self.wallet.pool())
        .await?;
        rows.iter().map(parse_row).collect()
    }

    pub(super) async fn row(&self, name: &str) -> Result<Row_, ChatError> {
        let r = sqlx::query(&format!(
            "SELECT {CONTACT_COLUMNS} FROM chat_contacts WHERE name = ?"
        ))
        .bind(name)
        .fetch_optional(self.wallet.pool())
        .await?
        .ok_or_else(|| ChatError::UnknownContact(name.to_owned()))?;
        parse_row(&r)
    }

    /// Every contact, oldest first.
    pub async fn contacts(&self) -> Result<Vec<Contact>, ChatError> {
        Ok(self.rows().await?.iter().map(Row_::contact).collect())
    }

    /// The stored messages with `name`, oldest first.
    pub async fn messages(&self, name: &str) -> Result<Vec<ChatMessage>, ChatError> {
        let row = self.row(name).await?;
        let rows = sqlx::query(
            "SELECT id, direction, text_enc, sent_at, at FROM chat_messages \
             WHERE contact_id = ? ORDER BY id",
        )
        .bind(row.id)
        .fetch_all(self.wallet.pool())
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let text = self
                .wallet
                .vault_key()
                .open_known(&aad::message(row.id), &r.try_get::<Vec<u8>, _>("text_enc")?)?;
            out.push(ChatMessage {
                id: r.try_get("id")?,
                contact: row.name.clone(),
                direction: if r.try_get::<String, _>("direction")? == "in" {
                    Direction::In
                } else {
                    Direction::Out
                },
                text: String::from_utf8(text.to_vec()).map_err(|_| corrupt("text"))?,
                sent_at: u64::try_from(r.try_get::<i64, _>("sent_at")?).unwrap_or(0),
                at: u64::try_from(r.try_get::<i64, _>("at")?).unwrap_or(0),
            });
        }
        Ok(out)
    }

    /// Stores a message; `None` if it was stored before (the same relay message id).
    pub(super) async fn store_message(
        &self,
        row: &Row_,
        direction: Direction,
        relay_msg_id: Option<&[u8]>,
        text: &str,
        sent_at: u64,
    ) -> Result<Option<ChatMessage>, ChatError> {
        let at = self.wallet.now();
        let enc = self
            .wallet
            .vault_key()
            .seal(&aad::message(row.id), text.as_bytes())?;
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO chat_messages (contact_id, direction, relay_msg_id, text_enc, sent_at, at) \
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING id",
        )
        .bind(row.id)
        .bind(match direction {
            Direction::In => "in",
            Direction::Out => "out",
        })
        .bind(relay_msg_id.map(<[u8]>::to_vec))
        .bind(enc)
        .bind(crate::db::to_i64(sent_at)?)
        .bind(crate::db::to_i64(at)?)
        .fetch_optional(self.wallet.pool())
        .await?;
        Ok(id.map(|id| ChatMessage {
            id,
            contact: row.name.clone(),
            direction,
            text: text.to_owned(),
            sent_at,
            at,
        }))
    }

    pub(super) async fn set_state(
        &self,
        row: &mut Row_,
        state: ContactState,
    ) -> Result<(), ChatError> {
        sqlx::query("UPDATE chat_contacts SET state = ?, updated_at = ? WHERE id = ?")
            .bind(state.as_str())
            .bind(crate::db::to_i64(self.wallet.now())?)
            .bind(row.id)
            .execute(self.wallet.pool())
            .await?;
        row.state = state;
        Ok(())
    }
}
