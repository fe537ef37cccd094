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
//!
//! # Where things are
//!
//! | module | owns |
//! |---|---|
//! | `wire` | the invitation text (`smpx-invite:…`): encoding, decoding, checksum |
//! | `envelope` | the end-to-end envelope a relay carries: header, key agreement, padding, AEAD, the plaintext JSON |
//! | `store` | the contact and message rows, and the secrets sealed in them |
//! | `session` | [`Chat`]: the flows above over relay connections |
//!
//! `wire` and `envelope` are frozen wire formats, with golden vectors in `testdata/`.

mod envelope;
mod session;
mod store;
mod wire;

pub use envelope::{MAX_TEXT, PADDED_LEN};
pub use session::Chat;
pub use store::{ChatMessage, Contact, ContactState, Direction, Received};
pub use wire::{Invitation, INVITATION_PREFIX};

use crate::error::WalletError;
use serde::Serialize;
use smpx_relay_client::ClientError;
use smpx_relay_protocol::ErrorCode;

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

/// Which side of the contact flow this wallet was on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Inviter,
    Acceptor,
}

fn peer_role(me: Role) -> Role {
    match me {
        Role::Inviter => Role::Acceptor,
        Role::Acceptor => Role::Inviter,
    }
}

fn corrupt(what: &str) -> ChatError {
    ChatError::Wallet(WalletError::Corrupt(format!("chat: {what}")))
}

fn arr<const N: usize>(v: &[u8], what: &str) -> Result<[u8; N], ChatError> {
    v.try_into().map_err(|_| corrupt(what))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(super) fn test_address() -> smpx_relay_protocol::RelayAddress {
    format!("smpx://{}@127.0.0.1:7410", "A".repeat(43))
        .parse()
        .unwrap()
}
