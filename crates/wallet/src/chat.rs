//! Chat through relays: contacts connected by a pair of one-way relay queues, messages
//! end-to-end encrypted between the two people.
//!
//! # The flow (SMP's, with one round trip fewer)
//!
//! Every contact is two unidirectional queues: the inviter receives on a queue on its relay,
//! the acceptor on a queue on *its* relay (the two relays may differ). Each side holds its own
//! queue's recipient key; the other side holds a sender key the queue is secured with.
//!
//! 1. **Invite** ([`Chat::create_contact`]): Alice creates a queue on her relay (`NEW`) and a
//!    fresh X25519 key, and shows Bob an **invitation** — `smpx-invite:` and the base64url of
//!    `version ‖ sender id ‖ Alice's X25519 public key ‖ relay address ‖ 4-byte SHA-256
//!    checksum`. It names a queue to send to; it does not let anyone read it.
//! 2. **Accept** ([`Chat::accept`]): Bob creates his own reply queue on his relay, makes two
//!    Ed25519 keys — one to sign his SENDs to Alice's queue, one *for Alice* to sign hers to
//!    his queue — and secures his queue at once with the latter (`KEY`). He then SENDs Alice,
//!    **unsigned** (the queue is not secured yet, like SMP's confirmation), a *hello*
//!    encrypted to her X25519 key: his sender public key, an invitation to his queue, and
//!    Alice's signing key for it. Bob's contact is `accepted`.
//! 3. **Receive the hello** ([`Chat::receive`]): Alice opens it, secures her queue with Bob's
//!    sender key (`KEY`: from now on only SENDs signed by Bob are accepted), stores the
//!    contact as `connected`, and sends Bob a signed *ready*. When Bob receives it (or any
//!    message of Alice's) his contact is `connected` too.
//! 4. From then on both send signed messages on each other's queue ([`Chat::send`]).
//!
//! SMP lets the acceptor's side of the connection be secured by a second confirmation from
//! the inviter; here the acceptor hands the inviter the key for his queue inside the
//! end-to-end encrypted hello, so his queue never accepts an unsigned message and the
//! connection is up after one message each way. A message Bob sends before Alice has
//! received the hello is refused by her relay (her queue is not secured yet, and signed SENDs
//! need a key): [`ChatError::NotConnected`] — try again once she has run `receive`.
//!
//! **Receiving** subscribes to every queue of the wallet (one connection per relay), opens
//! each delivery, stores it (committed to the wallet file) and only then ACKs it, so a crash
//! loses nothing: the relay delivers an unacknowledged message again, and the relay's message
//! id makes the second copy a no-op. Messages kept on the relay while nobody receives (free
//! tier: 128 per queue, 21 days) arrive in order at the next `receive`.
//!
//! # What is encrypted, and what the relays learn
//!
//! * **End to end**: each body is `XChaCha20-Poly1305(k, fresh random 24-byte nonce, padded
//!   plaintext)` with `k = SHA-256("smpx-chat/v1 e2e" ‖ X25519(mine, theirs) ‖ inviter public
//!   ‖ acceptor public)`, and as associated data the envelope header plus the direction (so a
//!   relay cannot reflect a message back to its sender). The plaintext is padded to a fixed
//!   [`PADDED_LEN`], so every message's body has the same length whatever its text. The
//!   relay's re-encryption of deliveries (so sent and delivered bytes do not correlate) is a
//!   separate layer on top.
//! * **A relay** learns: that a queue exists, when messages are sent to it and fetched, their
//!   (fixed) sizes, the IP addresses of the connections that send and receive, and for the
//!   hello (the one unsigned message) the acceptor's X25519 public key, which is fresh per
//!   contact. It does not learn the text, the names, or the other queue of the contact:
//!   the reply queue's address travels inside the encrypted hello. Sender and recipient ids
//!   of one queue are unlinkable to each other on the relay's side.
//! * **Private routing is on by default** ([`smpx_relay_protocol::forward`]): a message
//!   to a contact whose queue is on *another* relay goes through the sender's own relay (the
//!   relay of the sender's queue for that contact) as proxy. The contact's relay sees the
//!   proxy relay's connection, not the sender's IP address; the proxy relay sees that the
//!   sender talks to that relay, not the queue, the signature or the message (sealed to the
//!   destination's key, which the wallet verifies against the fingerprint in the contact's
//!   address). When both queues are on the same relay the message goes directly: that relay
//!   already knows the sender's address. [`Chat::direct`] (`smpx chat send --direct`) turns
//!   private routing off: the sender connects to the contact's relay itself. A proxy relay
//!   that does not forward is an error, never a silent fallback to direct.
//! * Whoever learns an invitation before it is accepted can answer it in Bob's place (as in
//!   SMP): pass invitations over a channel you trust. After the hello, the queue is secured:
//!   a third party who learns the sender id is refused (`AUTH`).
//!
//! # At rest
//!
//! Queue keys, the end-to-end secret, sender keys and every message text are sealed with the
//! wallet's vault key ([`crate::vault`]); ids, relay addresses, names, states and times are in
//! the clear (schema version 4 in `db`).

use crate::error::WalletError;
use crate::relay_pay::RelayPayment;
use crate::wallet::{unix_now, Wallet};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ed25519_dalek::{SigningKey, VerifyingKey};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use smpx_relay_client::{
    connect_tls, Client, ClientConfig, ClientError, Event, Events, RecipientQueue,
};
use smpx_relay_protocol::crypto::{Content, Delivered};
use smpx_relay_protocol::RelayAddress;
use smpx_relay_protocol::{EntityId, ErrorCode, ProxyError, ID_LEN, MAX_BODY};
use smpx_relay_transport::TransportError;
use sqlx::Row;
use std::collections::HashMap;
use std::fmt;
use std::time::Duration;
use tokio::sync::mpsc;
use zeroize::Zeroizing;

/// What every invitation starts with.
pub const INVITATION_PREFIX: &str = "smpx-invite:";
const INVITATION_V1: u8 = 1;
const INVITATION_MAX_LEN: usize = 2048;
const CHECKSUM_LEN: usize = 4;

/// Every end-to-end plaintext is padded to this many bytes.
pub const PADDED_LEN: usize = 15_872;
/// The longest message text, in bytes of UTF-8 (what is left of [`PADDED_LEN`] after the
/// length prefix and the JSON around the text, with room for escapes).
pub const MAX_TEXT: usize = 12_000;

const ENVELOPE_V1: u8 = 1;
const KIND_HELLO: u8 = b'H';
const KIND_MESSAGE: u8 = b'M';
const NONCE_LEN: usize = 24;
const E2E_CONTEXT: &[u8] = b"smpx-chat/v1 e2e";

/// After a message arrives, `receive` keeps listening this long for more before returning.
const QUIET: Duration = Duration::from_millis(300);

/// Chat failures. None carries secret material.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// The text is not an invitation this wallet can use (garbage, truncated, altered, or an
    /// unknown version).
    #[error("not a valid smpx invitation: {0}")]
    BadInvitation(&'static str),
    #[error("no contact named {0:?}")]
    UnknownContact(String),
    #[error("a contact named {0:?} already exists")]
    NameTaken(String),
    #[error("contact names are 1 to 64 characters, none of them control characters")]
    BadName,
    /// The contact cannot receive yet: an invitation nobody has accepted, or an accepted one
    /// whose inviter has not received the hello yet (their queue is not secured).
    #[error("contact {0:?} is not connected yet: the invitation must be accepted and the inviter must run `receive` first")]
    NotConnected(String),
    #[error("cannot reach relay {relay}: {source}")]
    RelayUnreachable {
        relay: String,
        #[source]
        source: ClientError,
    },
    /// The relay's certificate chain does not end in the CA whose fingerprint is in the
    /// address: not the relay the address names (or a machine in between).
    #[error("relay {relay} presented a certificate that does not match the fingerprint in its address: {source}")]
    WrongFingerprint {
        relay: String,
        #[source]
        source: ClientError,
    },
    /// The relay answered ERR (AUTH: not authorised or no such queue; QUOTA: the contact's
    /// queue is full).
    #[error("relay {relay} refused: {code}")]
    Refused { relay: String, code: ErrorCode },
    /// Another failure talking to a relay (a protocol or connection error mid-way).
    #[error("relay {relay}: {source}")]
    Relay {
        relay: String,
        #[source]
        source: ClientError,
    },
    #[error("message of {0} bytes is too long (at most {MAX_TEXT})")]
    TooLong(usize),
    #[error(transparent)]
    Wallet(#[from] WalletError),
}

impl From<sqlx::Error> for ChatError {
    fn from(e: sqlx::Error) -> Self {
        ChatError::Wallet(WalletError::Store(e))
    }
}

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

// -------------------------------------------------------------------------------------------
// Invitations

/// A queue to send to: what an invitation carries.
#[derive(Clone, PartialEq, Eq)]
pub struct Invitation {
    pub relay: RelayAddress,
    pub sender_id: EntityId,
    /// The inviter's X25519 public key for this contact.
    pub e2e_public: [u8; 32],
}

impl fmt::Debug for Invitation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Invitation")
            .field("relay", &self.relay.to_string())
            .finish_non_exhaustive()
    }
}

impl fmt::Display for Invitation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let relay = self.relay.to_string();
        let mut raw = Vec::with_capacity(1 + ID_LEN + 32 + relay.len() + CHECKSUM_LEN);
        raw.push(INVITATION_V1);
        raw.extend_from_slice(&self.sender_id.0);
        raw.extend_from_slice(&self.e2e_public);
        raw.extend_from_slice(relay.as_bytes());
        let sum = Sha256::digest(&raw);
        raw.extend_from_slice(&sum[..CHECKSUM_LEN]);
        write!(f, "{INVITATION_PREFIX}{}", URL_SAFE_NO_PAD.encode(raw))
    }
}

impl std::str::FromStr for Invitation {
    type Err = ChatError;

    fn from_str(s: &str) -> Result<Self, ChatError> {
        let s = s.trim();
        if s.len() > INVITATION_MAX_LEN {
            return Err(ChatError::BadInvitation("too long"));
        }
        let b64 = s
            .strip_prefix(INVITATION_PREFIX)
            .ok_or(ChatError::BadInvitation(
                "it does not start with smpx-invite:",
            ))?;
        let raw = URL_SAFE_NO_PAD
            .decode(b64)
            .map_err(|_| ChatError::BadInvitation("not base64url"))?;
        if raw.len() < 1 + ID_LEN + 32 + CHECKSUM_LEN + 1 {
            return Err(ChatError::BadInvitation("truncated"));
        }
        let (body, sum) = raw.split_at(raw.len() - CHECKSUM_LEN);
        if Sha256::digest(body)[..CHECKSUM_LEN] != *sum {
            return Err(ChatError::BadInvitation(
                "checksum mismatch (altered or mistyped)",
            ));
        }
        if body[0] != INVITATION_V1 {
            return Err(ChatError::BadInvitation("unknown version"));
        }
        let mut sender_id = [0u8; ID_LEN];
        sender_id.copy_from_slice(&body[1..1 + ID_LEN]);
        let mut e2e_public = [0u8; 32];
        e2e_public.copy_from_slice(&body[1 + ID_LEN..1 + ID_LEN + 32]);
        let relay = std::str::from_utf8(&body[1 + ID_LEN + 32..])
            .ok()
            .and_then(|r| r.parse::<RelayAddress>().ok())
            .ok_or(ChatError::BadInvitation("bad relay address"))?;
        Ok(Invitation {
            relay,
            sender_id: EntityId(sender_id),
            e2e_public,
        })
    }
}

// -------------------------------------------------------------------------------------------
// Records

/// Which side of the contact flow this wallet was on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Inviter,
    Acceptor,
}

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
struct Row_ {
    id: i64,
    name: String,
    role: Role,
    state: ContactState,
    my_relay: RelayAddress,
    recipient_id: EntityId,
    sender_id: EntityId,
    server_dh: [u8; 32],
    my_e2e_public: [u8; 32],
    my_secrets_enc: Vec<u8>,
    peer_relay: Option<RelayAddress>,
    peer_sender_id: Option<EntityId>,
    peer_e2e_public: Option<[u8; 32]>,
    send_key_enc: Option<Vec<u8>>,
    created_at: u64,
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

fn corrupt(what: &str) -> ChatError {
    ChatError::Wallet(WalletError::Corrupt(format!("chat: {what}")))
}

fn arr<const N: usize>(v: &[u8], what: &str) -> Result<[u8; N], ChatError> {
    v.try_into().map_err(|_| corrupt(what))
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

mod aad {
    pub(super) fn queue(recipient_id: &[u8]) -> Vec<u8> {
        format!("smpx-wallet/v1/chat-queue/{}", hex::encode(recipient_id)).into_bytes()
    }
    pub(super) fn send_key(recipient_id: &[u8]) -> Vec<u8> {
        format!("smpx-wallet/v1/chat-send-key/{}", hex::encode(recipient_id)).into_bytes()
    }
    pub(super) fn message(contact_id: i64) -> Vec<u8> {
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

// -------------------------------------------------------------------------------------------
// End-to-end envelopes

#[derive(Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
enum Payload {
    /// Acceptor → inviter, unsigned, the first message on the inviter's queue.
    Hello {
        /// Hex Ed25519 public key: secure the inviter's queue with it.
        sender_key: String,
        /// The acceptor's queue.
        reply: String,
        /// Hex Ed25519 secret key that signs the inviter's SENDs to the acceptor's queue.
        reply_send_key: String,
    },
    /// Inviter → acceptor: the hello arrived, the inviter's queue is secured.
    Ready,
    Msg {
        text: String,
        sent_at: u64,
    },
}

fn e2e_key(
    my_secret: &[u8; 32],
    my_public: &[u8; 32],
    peer_public: &[u8; 32],
    me: Role,
) -> Option<Zeroizing<[u8; 32]>> {
    let s = x25519_dalek::StaticSecret::from(*my_secret);
    let shared = s.diffie_hellman(&x25519_dalek::PublicKey::from(*peer_public));
    if !shared.was_contributory() {
        return None;
    }
    let (inviter, acceptor) = match me {
        Role::Inviter => (my_public, peer_public),
        Role::Acceptor => (peer_public, my_public),
    };
    let mut h = Sha256::new();
    h.update(E2E_CONTEXT);
    h.update(shared.as_bytes());
    h.update(inviter);
    h.update(acceptor);
    Some(Zeroizing::new(h.finalize().into()))
}

fn direction_byte(to: Role) -> u8 {
    match to {
        Role::Inviter => b'I',
        Role::Acceptor => b'A',
    }
}

/// `v ‖ kind ‖ [acceptor's X25519 public key, in a hello] ‖ nonce ‖ ciphertext`.
fn seal_envelope(
    key: &[u8; 32],
    hello_public: Option<&[u8; 32]>,
    to: Role,
    payload: &Payload,
) -> Result<Vec<u8>, ChatError> {
    let json = Zeroizing::new(
        serde_json::to_vec(payload).map_err(|e| corrupt(&format!("encoding: {e}")))?,
    );
    if json.len() > PADDED_LEN - 2 {
        return Err(ChatError::TooLong(json.len()));
    }
    let mut plain = Zeroizing::new(vec![0u8; PADDED_LEN]);
    plain[..2].copy_from_slice(&(json.len() as u16).to_be_bytes());
    plain[2..2 + json.len()].copy_from_slice(&json);
    let mut out = vec![
        ENVELOPE_V1,
        if hello_public.is_some() {
            KIND_HELLO
        } else {
            KIND_MESSAGE
        },
    ];
    if let Some(p) = hello_public {
        out.extend_from_slice(p);
    }
    let mut aad = out.clone();
    aad.push(direction_byte(to));
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let ct = XChaCha20Poly1305::new(key.into())
        .encrypt(
            XNonce::from_slice(&nonce),
            chacha20poly1305::aead::Payload {
                msg: &plain,
                aad: &aad,
            },
        )
        .map_err(|_| corrupt("encryption failed"))?;
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    debug_assert!(out.len() <= MAX_BODY);
    Ok(out)
}

/// The header of a received envelope: the hello's public key, if a hello, and the header's
/// length. `None`: not an envelope.
fn envelope_header(body: &[u8]) -> Option<(Option<[u8; 32]>, usize)> {
    match body {
        [ENVELOPE_V1, KIND_MESSAGE, ..] => Some((None, 2)),
        [ENVELOPE_V1, KIND_HELLO, rest @ ..] if rest.len() >= 32 => {
            Some((rest[..32].try_into().ok(), 34))
        }
        _ => None,
    }
}

fn open_envelope(key: &[u8; 32], body: &[u8], header_len: usize, to: Role) -> Option<Payload> {
    let (header, rest) = body.split_at(header_len);
    if rest.len() < NONCE_LEN + 16 {
        return None;
    }
    let (nonce, ct) = rest.split_at(NONCE_LEN);
    let mut aad = header.to_vec();
    aad.push(direction_byte(to));
    let plain = Zeroizing::new(
        XChaCha20Poly1305::new(key.into())
            .decrypt(
                XNonce::from_slice(nonce),
                chacha20poly1305::aead::Payload { msg: ct, aad: &aad },
            )
            .ok()?,
    );
    let len = usize::from(u16::from_be_bytes([*plain.first()?, *plain.get(1)?]));
    serde_json::from_slice(plain.get(2..2 + len)?).ok()
}

fn valid_name(name: &str) -> Result<(), ChatError> {
    let n = name.chars().count();
    if n == 0 || n > 64 || name.chars().any(char::is_control) || name.trim() != name {
        return Err(ChatError::BadName);
    }
    Ok(())
}

// -------------------------------------------------------------------------------------------
// The flows

/// The wallet's chat: contacts and messages through relays ([`Wallet::chat`]).
pub struct Chat<'w> {
    wallet: &'w Wallet,
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
            config: ClientConfig::default(),
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
    /// Timings of relay connections (default: [`ClientConfig::default`]).
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

    async fn name_free(&self, name: &str) -> Result<(), ChatError> {
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

    fn seal_secrets(
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

    fn queue(&self, row: &Row_) -> Result<RecipientQueue, ChatError> {
        let s = self.secrets(row)?;
        Ok(RecipientQueue {
            recipient_id: row.recipient_id,
            sender_id: row.sender_id,
            recipient_key: s.recipient_key()?,
            dh_secret: s.dh_secret()?,
            server_dh: row.server_dh,
        })
    }

    fn send_key(&self, row: &Row_) -> Result<SigningKey, ChatError> {
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
    fn e2e(
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

    async fn rows(&self) -> Result<Vec<Row_>, ChatError> {
        let rows = sqlx::query(&format!(
            "SELECT {CONTACT_COLUMNS} FROM chat_contacts ORDER BY id"
        ))
        .fetch_all(self.wallet.pool())
        .await?;
        rows.iter().map(parse_row).collect()
    }

    async fn row(&self, name: &str) -> Result<Row_, ChatError> {
        let r = sqlx::query(&format!(
            "SELECT {CONTACT_COLUMNS} FROM chat_contacts WHERE name = ?"
        ))
        .bind(name)
        .fetch_optional(self.wallet.pool())
        .await?
        .ok_or_else(|| ChatError::UnknownContact(name.to_owned()))?;
        parse_row(&r)
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
        let e2e_secret = Zeroizing::new(smpx_relay_protocol::crypto::x25519_secret());
        let e2e_public = smpx_relay_protocol::crypto::x25519_public(&e2e_secret);
        let name = match name {
            Some(n) => n.to_owned(),
            None => format!("invite-{}", hex::encode(&q.recipient_id.0[..4])),
        };
        let now = crate::db::to_i64(unix_now())?;
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
            created_at: unix_now(),
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
        let e2e_secret = Zeroizing::new(smpx_relay_protocol::crypto::x25519_secret());
        let e2e_public = smpx_relay_protocol::crypto::x25519_public(&e2e_secret);
        let key = e2e_key(&e2e_secret, &e2e_public, &inv.e2e_public, Role::Acceptor)
            .ok_or(ChatError::BadInvitation("unusable key"))?;

        let (client, _events) = self.connect(my_relay).await?;
        let q = client
            .create_queue()
            .await
            .map_err(|e| relay_error(my_relay, e))?;
        let my_send_key = SigningKey::generate(&mut rand::rngs::OsRng);
        let their_send_key = SigningKey::generate(&mut rand::rngs::OsRng);
        client
            .secure(&q, &their_send_key.verifying_key())
            .await
            .map_err(|e| relay_error(my_relay, e))?;

        // Stored before the hello goes out: a crash after sending keeps the keys.
        let now = crate::db::to_i64(unix_now())?;
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
            let body = seal_envelope(&key, Some(&e2e_public), Role::Inviter, &hello)?;
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
            created_at: unix_now(),
        })
    }

    /// Every contact, oldest first.
    pub async fn contacts(&self) -> Result<Vec<Contact>, ChatError> {
        Ok(self.rows().await?.iter().map(Row_::contact).collect())
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
        let sent_at = unix_now();
        let body = seal_envelope(
            &key,
            None,
            peer_role(row.role),
            &Payload::Msg {
                text: text.to_owned(),
                sent_at,
            },
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
    async fn store_message(
        &self,
        row: &Row_,
        direction: Direction,
        relay_msg_id: Option<&[u8]>,
        text: &str,
        sent_at: u64,
    ) -> Result<Option<ChatMessage>, ChatError> {
        let at = unix_now();
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

    async fn set_state(&self, row: &mut Row_, state: ContactState) -> Result<(), ChatError> {
        sqlx::query("UPDATE chat_contacts SET state = ?, updated_at = ? WHERE id = ?")
            .bind(state.as_str())
            .bind(crate::db::to_i64(unix_now())?)
            .bind(row.id)
            .execute(self.wallet.pool())
            .await?;
        row.state = state;
        Ok(())
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
                .bind(crate::db::to_i64(unix_now())?)
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
        let body = seal_envelope(key, None, peer_role(row.role), &Payload::Ready)?;
        self.deliver(&row.my_relay, None, relay, &sid, Some(send_key), &body)
            .await
    }
}

fn peer_role(me: Role) -> Role {
    match me {
        Role::Inviter => Role::Acceptor,
        Role::Acceptor => Role::Inviter,
    }
}

fn name_conflict(e: sqlx::Error, name: &str) -> ChatError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            ChatError::NameTaken(name.to_owned())
        }
        _ => e.into(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn address() -> RelayAddress {
        format!("smpx://{}@127.0.0.1:7410", "A".repeat(43))
            .parse()
            .unwrap()
    }

    #[test]
    fn invitation_roundtrip_and_every_altered_character_is_refused() {
        let inv = Invitation {
            relay: address(),
            sender_id: EntityId([7; 24]),
            e2e_public: [9; 32],
        };
        let text = inv.to_string();
        assert!(text.starts_with(INVITATION_PREFIX));
        assert_eq!(text.parse::<Invitation>().unwrap(), inv);
        let b64 = &text[INVITATION_PREFIX.len()..];
        for i in 0..b64.len() {
            let mut altered = b64.as_bytes().to_vec();
            altered[i] = if altered[i] == b'A' { b'B' } else { b'A' };
            let t = format!("{INVITATION_PREFIX}{}", String::from_utf8(altered).unwrap());
            assert!(
                matches!(t.parse::<Invitation>(), Err(ChatError::BadInvitation(_))),
                "position {i}"
            );
        }
        for bad in ["", "smpx-invite:", "hello", &text[..text.len() - 3]] {
            assert!(matches!(
                bad.parse::<Invitation>(),
                Err(ChatError::BadInvitation(_))
            ));
        }
    }

    #[test]
    fn envelopes_open_only_with_the_key_and_direction_and_have_one_size() {
        let key = [3u8; 32];
        let short = seal_envelope(&key, None, Role::Inviter, &Payload::Ready).unwrap();
        let long = seal_envelope(
            &key,
            None,
            Role::Inviter,
            &Payload::Msg {
                text: "x".repeat(MAX_TEXT),
                sent_at: 1,
            },
        )
        .unwrap();
        assert_eq!(short.len(), long.len());
        assert!(long.len() <= MAX_BODY);
        let (_, h) = envelope_header(&short).unwrap();
        assert!(matches!(
            open_envelope(&key, &short, h, Role::Inviter),
            Some(Payload::Ready)
        ));
        assert!(open_envelope(&key, &short, h, Role::Acceptor).is_none());
        assert!(open_envelope(&[4u8; 32], &short, h, Role::Inviter).is_none());
        // Two seals of one payload share no ciphertext (fresh nonces).
        let again = seal_envelope(&key, None, Role::Inviter, &Payload::Ready).unwrap();
        assert_ne!(short, again);
    }
}
