//! [`Chat`]: the contact flows (invite, accept, send, receive) over relay connections, and
//! how relay failures become [`ChatError`]s.

use super::envelope::e2e_key;
use super::envelope::{envelope_header, open_envelope, seal_envelope, Payload, MAX_TEXT};
use super::store::{
    aad, name_conflict, ChatMessage, Contact, ContactState, Direction, Received, Row_,
};
use super::wire::Invitation;
use super::{arr, corrupt, peer_role, ChatError, Role};
use crate::relay_pay::RelayPayment;
use crate::wallet::Wallet;
use ed25519_dalek::{SigningKey, VerifyingKey};
use smpx_relay_client::{
    connect_tls, Client, ClientConfig, ClientError, Event, Events, RecipientQueue,
};
use smpx_relay_protocol::crypto::{Content, Delivered};
use smpx_relay_protocol::RelayAddress;
use smpx_relay_protocol::{EntityId, ErrorCode, ProxyError};
use smpx_relay_transport::TransportError;
use std::collections::HashMap;
use std::fmt;
use std::time::Duration;
use tokio::sync::mpsc;
use zeroize::Zeroizing;

/// After a message arrives, `receive` keeps listening this long for more before returning.
const QUIET: Duration = Duration::from_millis(300);

/// An error of a send through `via` as proxy to `to`: blamed on the relay it concerns.
fn proxy_error(via: &RelayAddress, to: &RelayAddress, e: ClientError) -> ChatError {
    match e {
        ClientError::Relay(ErrorCode::Proxy(ProxyError::Unreachable)) => {
            ChatError::RelayUnreachable {
                relay: to.to_string(),
                source: e,
            }
        }
        // Key material that does not verify against the contact relay's fingerprint.
        ClientError::Forward(_) => ChatError::WrongFingerprint {
            relay: to.to_string(),
            source: e,
        },
        // The proxy's own refusals (it does not forward, a bad address): the own relay.
        ClientError::Relay(ErrorCode::Proxy(
            ProxyError::NotAllowed | ProxyError::BadAddress | ProxyError::NoSession,
        )) => relay_error(via, e),
        // The destination's answers (AUTH, QUOTA, …) concern the contact's relay.
        ClientError::Relay(code) => ChatError::Refused {
            relay: to.to_string(),
            code,
        },
        // The connection to the own relay failed.
        e => relay_error(via, e),
    }
}

fn relay_error(relay: &RelayAddress, e: ClientError) -> ChatError {
    let relay = relay.to_string();
    match e {
        ClientError::Relay(code) => ChatError::Refused { relay, code },
        ClientError::Transport(TransportError::CertificateRejected(_)) => {
            ChatError::WrongFingerprint { relay, source: e }
        }
        ClientError::Transport(
            TransportError::Connect { .. }
            | TransportError::ConnectTimeout(_)
            | TransportError::HandshakeTimeout
            | TransportError::Io(_),
        )
        | ClientError::Frame(_)
        | ClientError::Closed
        | ClientError::Timeout => ChatError::RelayUnreachable { relay, source: e },
        e => ChatError::Relay { relay, source: e },
    }
}

/// The wallet's chat: contacts and messages through relays ([`Wallet::chat`]).
pub struct Chat<'w> {
    pub(super) wallet: &'w Wallet,
    config: ClientConfig,
    /// Private routing off: connect to the contact's relay directly.
    direct: bool,
}

impl fmt::Debug for Chat<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chat").finish_non_exhaustive()
    }
}

impl Wallet {
    /// Chat through relays with this wallet's contacts (see [`crate::chat`]).
    pub fn chat(&self) -> Chat<'_> {
        Chat {
            wallet: self,
            config: ClientConfig::default()
                .with_clock(self.clock().clone())
                .with_entropy(self.entropy().clone()),
            direct: false,
        }
    }
}

/// One relay connection of a `receive`, and the contacts whose queues are on it.
struct Subscribed {
    client: Client,
    contacts: Vec<usize>,
}

impl<'w> Chat<'w> {
    /// Timings of relay connections (default: [`ClientConfig::default`] with the wallet's
    /// clock and entropy; a config given here brings its own).
    pub fn with_client_config(mut self, config: ClientConfig) -> Self {
        self.config = config;
        self
    }

    /// `true`: send directly to the contact's relay instead of through the own relay as
    /// proxy (private routing, the default; see the [module docs](self)).
    pub fn direct(mut self, direct: bool) -> Self {
        self.direct = direct;
        self
    }

    /// Sends `body` to the queue `sid` on relay `to`: through `via` (the own relay of this
    /// contact; `via_client` a connection to it, if one is open) as proxy when `to` is
    /// another relay and private routing is on, directly otherwise.
    async fn deliver(
        &self,
        via: &RelayAddress,
        via_client: Option<&Client>,
        to: &RelayAddress,
        sid: &EntityId,
        key: Option<&SigningKey>,
        body: &[u8],
    ) -> Result<(), ChatError> {
        if to == via {
            if let Some(c) = via_client {
                return c.send(sid, key, body).await.map_err(|e| relay_error(to, e));
            }
        }
        if to == via || self.direct {
            let (client, _events) = self.connect(to).await?;
            return client
                .send(sid, key, body)
                .await
                .map_err(|e| relay_error(to, e));
        }
        let opened;
        let proxy = match via_client {
            Some(c) => c,
            None => {
                opened = self.connect(via).await?;
                &opened.0
            }
        };
        let routed = proxy.proxy(to).await.map_err(|e| proxy_error(via, to, e))?;
        routed
            .send(sid, key, body)
            .await
            .map_err(|e| proxy_error(via, to, e))
    }

    async fn connect(&self, relay: &RelayAddress) -> Result<(Client, Events), ChatError> {
        connect_tls(relay, self.config.clone())
            .await
            .map_err(|e| relay_error(relay, e))
    }

    /// Creates a queue on `relay` for a new contact and returns the contact (state
    /// `invited`) and the invitation to give them. `name` defaults to `invite-<hex>`.
    pub async fn create_contact(
        &self,
        relay: &RelayAddress,
        name: Option<&str>,
    ) -> Result<(Contact, String), ChatError> {
        if let Some(n) = name {
            self.name_free(n).await?;
        }
        let (client, _events) = self.connect(relay).await?;
        let q = client
            .create_queue()
            .await
            .map_err(|e| relay_error(relay, e))?;
        let e2e_secret = Zeroizing::new(smpx_relay_protocol::crypto::x25519_secret(
            &mut self.wallet.entropy().rng(),
        ));
        let e2e_public = smpx_relay_protocol::crypto::x25519_public(&e2e_secret);
        let name = match name {
            Some(n) => n.to_owned(),
            None => format!("invite-{}", hex::encode(&q.recipient_id.0[..4])),
        };
        let now = crate::db::to_i64(self.wallet.now())?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO chat_contacts (name, role, state, my_relay, my_recipient_id, \
             my_sender_id, my_server_dh, my_e2e_public, my_secrets_enc, created_at, updated_at) \
             VALUES (?, 'inviter', 'invited', ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(&name)
        .bind(relay.to_string())
        .bind(q.recipient_id.0.to_vec())
        .bind(q.sender_id.0.to_vec())
        .bind(q.server_dh.to_vec())
        .bind(e2e_public.to_vec())
        .bind(self.seal_secrets(&q, &e2e_secret)?)
        .bind(now)
        .bind(now)
        .fetch_one(self.wallet.pool())
        .await
        .map_err(|e| name_conflict(e, &name))?;
        let invitation = Invitation {
            relay: relay.clone(),
            sender_id: q.sender_id,
            e2e_public,
        };
        let contact = Contact {
            id,
            name,
            role: Role::Inviter,
            state: ContactState::Invited,
            my_relay: relay.to_string(),
            peer_relay: None,
            created_at: self.wallet.now(),
        };
        Ok((contact, invitation.to_string()))
    }

    /// Accepts an invitation: creates this wallet's reply queue on `my_relay`, secures it,
    /// and sends the inviter the hello. The contact is `accepted` until the inviter's first
    /// message arrives; sending may fail with [`ChatError::NotConnected`] until the inviter
    /// has received the hello.
    pub async fn accept(
        &self,
        invitation: &str,
        name: &str,
        my_relay: &RelayAddress,
    ) -> Result<Contact, ChatError> {
        let inv: Invitation = invitation.parse()?;
        self.name_free(name).await?;
        let e2e_secret = Zeroizing::new(smpx_relay_protocol::crypto::x25519_secret(
            &mut self.wallet.entropy().rng(),
        ));
        let e2e_public = smpx_relay_protocol::crypto::x25519_public(&e2e_secret);
        let key = e2e_key(&e2e_secret, &e2e_public, &inv.e2e_public, Role::Acceptor)
            .ok_or(ChatError::BadInvitation("unusable key"))?;

        let (client, _events) = self.connect(my_relay).await?;
        let q = client
            .create_queue()
            .await
            .map_err(|e| relay_error(my_relay, e))?;
        let my_send_key = SigningKey::generate(&mut self.wallet.entropy().rng());
        let their_send_key = SigningKey::generate(&mut self.wallet.entropy().rng());
        client
            .secure(&q, &their_send_key.verifying_key())
            .await
            .map_err(|e| relay_error(my_relay, e))?;

        // Stored before the hello goes out: a crash after sending keeps the keys.
        let now = crate::db::to_i64(self.wallet.now())?;
        let send_key_enc = self
            .wallet
            .vault_key()
            .seal(&aad::send_key(&q.recipient_id.0), &my_send_key.to_bytes())?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO chat_contacts (name, role, state, my_relay, my_recipient_id, \
             my_sender_id, my_server_dh, my_e2e_public, my_secrets_enc, peer_relay, \
             peer_sender_id, peer_e2e_public, send_key_enc, created_at, updated_at) \
             VALUES (?, 'acceptor', 'accepted', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(name)
        .bind(my_relay.to_string())
        .bind(q.recipient_id.0.to_vec())
        .bind(q.sender_id.0.to_vec())
        .bind(q.server_dh.to_vec())
        .bind(e2e_public.to_vec())
        .bind(self.seal_secrets(&q, &e2e_secret)?)
        .bind(inv.relay.to_string())
        .bind(inv.sender_id.0.to_vec())
        .bind(inv.e2e_public.to_vec())
        .bind(send_key_enc)
        .bind(now)
        .bind(now)
        .fetch_one(self.wallet.pool())
        .await
        .map_err(|e| name_conflict(e, name))?;

        let reply = Invitation {
            relay: my_relay.clone(),
            sender_id: q.sender_id,
            e2e_public,
        };
        let their_secret = Zeroizing::new(hex::encode(their_send_key.to_bytes()));
        let hello = Payload::Hello {
            sender_key: hex::encode(my_send_key.verifying_key().to_bytes()),
            reply: reply.to_string(),
            reply_send_key: their_secret.to_string(),
        };
        let sent = async {
            let body = seal_envelope(
                &key,
                Some(&e2e_public),
                Role::Inviter,
                &hello,
                &**self.wallet.entropy(),
            )?;
            self.deliver(
                my_relay,
                Some(&client),
                &inv.relay,
                &inv.sender_id,
                None,
                &body,
            )
            .await
        }
        .await;
        if let Err(e) = sent {
            // Nothing reached the inviter: forget the contact and its queue.
            let _ = client.delete(&q).await;
            sqlx::query("DELETE FROM chat_contacts WHERE id = ?")
                .bind(id)
                .execute(self.wallet.pool())
                .await?;
            return Err(e);
        }
        Ok(Contact {
            id,
            name: name.to_owned(),
            role: Role::Acceptor,
            state: ContactState::Accepted,
            my_relay: my_relay.to_string(),
            peer_relay: Some(inv.relay.to_string()),
            created_at: self.wallet.now(),
        })
    }

    /// The invitation of a contact still waiting for it to be accepted (to show it again).
    pub async fn invitation(&self, name: &str) -> Result<String, ChatError> {
        let row = self.row(name).await?;
        if row.state != ContactState::Invited {
            return Err(ChatError::UnknownContact(name.to_owned()));
        }
        Ok(Invitation {
            relay: row.my_relay,
            sender_id: row.sender_id,
            e2e_public: row.my_e2e_public,
        }
        .to_string())
    }

    /// Sends `text` to the contact `name` (signed, end-to-end encrypted) and stores it.
    pub async fn send(&self, name: &str, text: &str) -> Result<ChatMessage, ChatError> {
        if text.len() > MAX_TEXT {
            return Err(ChatError::TooLong(text.len()));
        }
        let row = self.row(name).await?;
        let (Some(relay), Some(sid), Some(peer_public)) =
            (&row.peer_relay, row.peer_sender_id, row.peer_e2e_public)
        else {
            return Err(ChatError::NotConnected(name.to_owned()));
        };
        let key = self
            .e2e(&row, &peer_public)?
            .ok_or_else(|| corrupt("peer key"))?;
        let sent_at = self.wallet.now();
        let body = seal_envelope(
            &key,
            None,
            peer_role(row.role),
            &Payload::Msg {
                text: text.to_owned(),
                sent_at,
            },
            &**self.wallet.entropy(),
        )?;
        let send_key = self.send_key(&row)?;
        match self
            .deliver(&row.my_relay, None, relay, &sid, Some(&send_key), &body)
            .await
        {
            Ok(()) => {}
            Err(ChatError::Refused {
                code: ErrorCode::Auth,
                ..
            }) if row.state == ContactState::Accepted => {
                return Err(ChatError::NotConnected(name.to_owned()))
            }
            Err(e) => return Err(e),
        }
        self.store_message(&row, Direction::Out, None, text, sent_at)
            .await?
            .ok_or_else(|| corrupt("outgoing message not stored"))
    }

    /// Pays your relay, with operator credits, for a larger quota on your queue for the
    /// contact `name` (the queue their messages wait in): `months` × the relay's price for
    /// 30 days ([`Wallet::pay_relay`]). Useful when you are away long or the contact sends a
    /// lot; the free tier holds 128 undelivered messages.
    pub async fn upgrade(&self, name: &str, months: u64) -> Result<RelayPayment, ChatError> {
        let row = self.row(name).await?;
        let q = self.queue(&row)?;
        let (client, _events) = self.connect(&row.my_relay).await?;
        let info = client
            .info()
            .await
            .map_err(|e| relay_error(&row.my_relay, e))?;
        let amount = smpx_core::Amount(info.units_per_queue_month.saturating_mul(months.max(1)));
        Ok(self
            .wallet
            .pay_relay(&client, &q.recipient_id, &q.recipient_key, Some(amount))
            .await?)
    }

    /// Receives from every contact's queue: what the relays hold now, then — if nothing came
    /// — waits up to `wait` for the first message (and shortly after it for more). Each
    /// message is stored before it is acknowledged.
    pub async fn receive(&self, wait: Duration) -> Result<Received, ChatError> {
        let mut rows = self.rows().await?;
        let mut out = Received::default();
        if rows.is_empty() {
            return Ok(out);
        }
        // One connection per relay; events of all of them into one channel.
        let mut relays: Vec<Subscribed> = Vec::new();
        let mut by_relay: HashMap<String, usize> = HashMap::new();
        let (tx, mut rx) = mpsc::unbounded_channel::<(usize, Event)>();
        let mut failed = None;
        for (i, row) in rows.iter().enumerate() {
            let key = row.my_relay.to_string();
            if let Some(&r) = by_relay.get(&key) {
                relays[r].contacts.push(i);
                continue;
            }
            if out.unreachable.contains(&key) {
                continue;
            }
            let (client, mut events) = match self.connect(&row.my_relay).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(relay = %key, error = %e, "relay unreachable; skipped");
                    out.unreachable.push(key);
                    failed.get_or_insert(e);
                    continue;
                }
            };
            let r = relays.len();
            let tx = tx.clone();
            tokio::spawn(async move {
                while let Some(e) = events.next().await {
                    if tx.send((r, e)).is_err() {
                        break;
                    }
                }
            });
            relays.push(Subscribed {
                client,
                contacts: vec![i],
            });
            by_relay.insert(key, r);
        }
        drop(tx);
        if let (true, Some(e)) = (relays.is_empty(), failed) {
            return Err(e);
        }

        for relay in &relays {
            for &i in &relay.contacts {
                let q = self.queue(&rows[i])?;
                let client = relay.client.clone();
                let first = client
                    .subscribe(&q)
                    .await
                    .map_err(|e| relay_error(&rows[i].my_relay, e))?;
                self.drain(&client, &q, &mut rows[i], first, &mut out)
                    .await?;
            }
        }

        let deadline = tokio::time::Instant::now() + wait;
        let mut open = relays.len();
        while open > 0 {
            let now = tokio::time::Instant::now();
            if now >= deadline {
                break;
            }
            let got_any = !out.messages.is_empty() || !out.connected.is_empty();
            let until = if got_any {
                (now + QUIET).min(deadline)
            } else {
                deadline
            };
            let Ok(next) = tokio::time::timeout_at(until, rx.recv()).await else {
                break;
            };
            let Some((r, event)) = next else {
                break;
            };
            match event {
                Event::Message { queue, message } => {
                    let Some(i) = relays[r]
                        .contacts
                        .iter()
                        .copied()
                        .find(|&i| rows[i].recipient_id == queue)
                    else {
                        continue;
                    };
                    let q = self.queue(&rows[i])?;
                    let client = relays[r].client.clone();
                    self.drain(&client, &q, &mut rows[i], Some(message), &mut out)
                        .await?;
                }
                Event::Undecryptable { queue, msg_id } => {
                    if let Some(i) = relays[r]
                        .contacts
                        .iter()
                        .copied()
                        .find(|&i| rows[i].recipient_id == queue)
                    {
                        out.dropped += 1;
                        let q = self.queue(&rows[i])?;
                        let client = relays[r].client.clone();
                        let next = client
                            .ack(&q, &msg_id)
                            .await
                            .map_err(|e| relay_error(&rows[i].my_relay, e))?;
                        self.drain(&client, &q, &mut rows[i], next, &mut out)
                            .await?;
                    }
                }
                Event::End { .. } | Event::Error(_) => {}
                Event::Closed => open -= 1,
            }
        }
        Ok(out)
    }

    /// Handles `first` and every message the ACKs bring after it.
    async fn drain(
        &self,
        client: &Client,
        q: &RecipientQueue,
        row: &mut Row_,
        first: Option<Delivered>,
        out: &mut Received,
    ) -> Result<(), ChatError> {
        let mut next = first;
        while let Some(d) = next {
            self.handle(row, q, client, &d, out).await?;
            next = client
                .ack(q, &d.msg_id)
                .await
                .map_err(|e| relay_error(&row.my_relay, e))?;
        }
        Ok(())
    }

    /// Handles one delivery; returning `Ok` means it may be acknowledged.
    async fn handle(
        &self,
        row: &mut Row_,
        q: &RecipientQueue,
        client: &Client,
        d: &Delivered,
        out: &mut Received,
    ) -> Result<(), ChatError> {
        let body = match &d.content {
            Content::Body(b) => b,
            Content::QuotaExceeded => {
                out.quota_exceeded.push(row.name.clone());
                return Ok(());
            }
        };
        let Some((hello_public, header_len)) = envelope_header(body) else {
            out.dropped += 1;
            return Ok(());
        };
        let me = row.role;
        match (row.state, hello_public) {
            (ContactState::Invited, Some(peer_public)) => {
                let Some(key) = self.e2e(row, &peer_public)? else {
                    out.dropped += 1;
                    return Ok(());
                };
                let Some(Payload::Hello {
                    sender_key,
                    reply,
                    reply_send_key,
                }) = open_envelope(&key, body, header_len, me)
                else {
                    out.dropped += 1;
                    return Ok(());
                };
                let parsed = (|| {
                    let sk =
                        VerifyingKey::from_bytes(&arr(&hex::decode(sender_key).ok()?, "").ok()?)
                            .ok()?;
                    let reply: Invitation = reply.parse().ok()?;
                    let their = Zeroizing::new(hex::decode(reply_send_key).ok()?);
                    let send = SigningKey::from_bytes(&arr(&their, "").ok()?);
                    (reply.e2e_public == peer_public).then_some((sk, reply, send))
                })();
                let Some((sender_key, reply, send_key)) = parsed else {
                    out.dropped += 1;
                    return Ok(());
                };
                // Secure first: a crash before the row is updated redoes it (KEY with the
                // same key is accepted again).
                client
                    .secure(q, &sender_key)
                    .await
                    .map_err(|e| relay_error(&row.my_relay, e))?;
                let send_key_enc = self
                    .wallet
                    .vault_key()
                    .seal(&aad::send_key(&row.recipient_id.0), &send_key.to_bytes())?;
                sqlx::query(
                    "UPDATE chat_contacts SET state = 'connected', peer_relay = ?, \
                     peer_sender_id = ?, peer_e2e_public = ?, send_key_enc = ?, updated_at = ? \
                     WHERE id = ? AND state = 'invited'",
                )
                .bind(reply.relay.to_string())
                .bind(reply.sender_id.0.to_vec())
                .bind(peer_public.to_vec())
                .bind(&send_key_enc)
                .bind(crate::db::to_i64(self.wallet.now())?)
                .bind(row.id)
                .execute(self.wallet.pool())
                .await?;
                row.state = ContactState::Connected;
                row.peer_relay = Some(reply.relay.clone());
                row.peer_sender_id = Some(reply.sender_id);
                row.peer_e2e_public = Some(peer_public);
                row.send_key_enc = Some(send_key_enc);
                out.connected.push(row.name.clone());
                // Tell the acceptor (best effort: any later message of ours tells it too).
                if let Err(e) = self.send_ready(row, &key, &send_key).await {
                    tracing::warn!(contact = %row.name, error = %e, "could not send ready");
                }
                Ok(())
            }
            (ContactState::Accepted | ContactState::Connected, None) => {
                let Some(peer_public) = row.peer_e2e_public else {
                    out.dropped += 1;
                    return Ok(());
                };
                let Some(key) = self.e2e(row, &peer_public)? else {
                    out.dropped += 1;
                    return Ok(());
                };
                let Some(payload) = open_envelope(&key, body, header_len, me) else {
                    out.dropped += 1;
                    return Ok(());
                };
                let msg = match payload {
                    Payload::Ready => None,
                    Payload::Msg { text, sent_at } => Some((text, sent_at)),
                    Payload::Hello { .. } => {
                        out.dropped += 1;
                        return Ok(());
                    }
                };
                if row.state == ContactState::Accepted {
                    self.set_state(row, ContactState::Connected).await?;
                    out.connected.push(row.name.clone());
                }
                if let Some((text, sent_at)) = msg {
                    if let Some(m) = self
                        .store_message(row, Direction::In, Some(&d.msg_id.0), &text, sent_at)
                        .await?
                    {
                        out.messages.push(m);
                    }
                }
                Ok(())
            }
            // A second hello, a message before the hello, garbage.
            _ => {
                out.dropped += 1;
                Ok(())
            }
        }
    }

    async fn send_ready(
        &self,
        row: &Row_,
        key: &[u8; 32],
        send_key: &SigningKey,
    ) -> Result<(), ChatError> {
        let (Some(relay), Some(sid)) = (&row.peer_relay, row.peer_sender_id) else {
            return Ok(());
        };
        let body = seal_envelope(
            key,
            None,
            peer_role(row.role),
            &Payload::Ready,
            &**self.wallet.entropy(),
        )?;
        self.deliver(&row.my_relay, None, relay, &sid, Some(send_key), &body)
            .await
    }
}
