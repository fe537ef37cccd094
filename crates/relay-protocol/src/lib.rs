//! # smpx-relay-protocol — the relay's wire protocol as pure values (no IO, no TLS, no tokio)
//!
//! This crate owns every byte the relay and its clients exchange: the version handshake,
//! fixed 16 KiB blocks, signed transmissions, every command and response (including the JSON
//! answers of INFO, PAY and USAGE in [`capacity`]), the sealing of delivered messages
//! ([`crypto`]), private routing's sealing and key material ([`forward`]), and the values
//! they name: relay addresses ([`address`]) and CA fingerprints ([`fingerprint`]). Everything
//! is a function from bytes to values and back; `smpx-relay-transport` moves blocks over TLS
//! and `smpx-relay-client` / `smpx-relay-server` do the rest of the IO. Where a rule needs a
//! certificate check (a forwarding key's chain), the caller supplies it
//! ([`forward::ChainVerifier`]), so no X.509 parser is linked here.
//!
//! Decoding is total: any input gives a value or a typed [`DecodeError`], never a panic
//! (property-tested in `tests/it/decode.rs`).
//!
//! # Wire format (version 1)
//!
//! All integers are big-endian. After the transport handshake (TLS 1.3, which gives the
//! 32-byte session id from its exporter) both sides exchange **blocks** of exactly
//! [`BLOCK_SIZE`] = 16384 bytes.
//!
//! ## Handshake ([`handshake`])
//!
//! The first block each way carries a hello instead of transmissions:
//!
//! ```text
//! relay → client  block content = "SMPX" ‖ u16 min_version ‖ u16 max_version ‖ session_id[32]
//! client → relay  block content = "SMPX" ‖ u16 version
//! ```
//!
//! The client checks that the echoed session id is the one its own transport derived (a
//! relay behind a TLS-terminating middlebox would echo another one) and picks the highest
//! version both support; the relay closes the connection if the chosen version is outside
//! its range.
//!
//! ## Block ([`block`])
//!
//! ```text
//! u16 content_length (1 ..= 16382)
//! content:  u8 count (1 ..= 255)
//!           count × ( u16 length ‖ transmission[length] )     — must end exactly at content_length
//! padding   (16382 − content_length bytes, ignored by the reader, written as '#')
//! ```
//!
//! ## Transmission ([`transmission`])
//!
//! ```text
//! u8 auth_length (0 or 64) ‖ auth[auth_length]     Ed25519 signature, or nothing
//! corr_id[24]                                        chosen by the client, echoed by the relay;
//!                                                    all zero in messages the relay pushes
//! u8 entity_length (0 or 24) ‖ entity_id[...]        queue id: recipient id for recipient
//!                                                    commands, sender id for SEND
//! command                                            u8 tag ‖ fields (below), to the end
//! ```
//!
//! The signature covers `"smpx-relay/v1 transmission" ‖ session_id[32] ‖` every byte of the
//! transmission after the auth field (corr id, entity, command). Binding the session id means
//! a signed command captured on one connection is refused on any other.
//!
//! ## Commands ([`command::Command`]) and who signs them
//!
//! | tag | command | fields | entity | signed by |
//! |-----|---------|--------|--------|-----------|
//! | `N` | NEW  | recipient Ed25519 key[32] ‖ recipient X25519 key[32] | none | the new recipient key |
//! | `K` | KEY  | sender Ed25519 key[32] | recipient id | recipient key |
//! | `S` | SEND | body (to the end, ≤ [`MAX_BODY`]) | sender id | sender key; unsigned only while the queue is not secured |
//! | `B` | SUB  | — | recipient id | recipient key |
//! | `G` | GET  | — | recipient id | recipient key |
//! | `A` | ACK  | msg_id[24] | recipient id | recipient key |
//! | `O` | OFF  | — | recipient id | recipient key |
//! | `D` | DEL  | — | recipient id | recipient key |
//! | `P` | PING | — | none | nobody |
//! | `I` | INFO | — | none | nobody |
//! | `$` | PAY  | JSON swap request (NUT-03 inputs + blinded change) | recipient id or channel owner id | recipient or owner key |
//! | `C` | NEWC | owner Ed25519 key[32] | none | the new owner key |
//! | `J` | JOIN | member Ed25519 key[32] ‖ member X25519 key[32] | channel join id | the new member key |
//! | `T` | POST | body (to the end, ≤ [`MAX_BODY`]) | channel owner id | owner key |
//! | `U` | USAGE | — | channel owner id | owner key |
//! | `X` | PRXY | destination `smpx://` address (UTF-8, ≤ 512 bytes) | none | nobody |
//! | `F` | PFWD | eph X25519 key[32] ‖ sealed[[`forward::FORWARD_SEALED_LEN`]] | proxy session id | nobody |
//! | `R` | RKEY | — | none | nobody |
//! | `W` | RFWD | eph X25519 key[32] ‖ sealed[[`forward::FORWARD_SEALED_LEN`]] | none | nobody |
//!
//! ## Responses ([`command::Response`])
//!
//! | tag | response | fields |
//! |-----|----------|--------|
//! | `i` | IDS  | recipient_id[24] ‖ sender_id[24] ‖ relay's per-queue X25519 key[32] |
//! | `m` | MSG  | msg_id[24] ‖ sealed[[`crypto::SEALED_LEN`]] |
//! | `k` | OK   | — |
//! | `e` | END  | — (entity: the queue whose subscription moved to another connection) |
//! | `p` | PONG | — |
//! | `x` | ERR  | u8 code ‖ (for CMD and PROXY = 9) u8 detail — see [`ErrorCode`], [`ProxyError`]; LIMIT = 10 |
//! | `n` | INFO | JSON: operator, prices, quotas |
//! | `c` | PAID | JSON: the operator's change signatures and what was bought, or why it was refused |
//! | `h` | CHANNEL | owner_id[24] ‖ join_id[24] |
//! | `j` | MEMBER | member recipient_id[24] ‖ relay's per-queue X25519 key[32] |
//! | `u` | USAGE | JSON: members, active receivers, bytes held, balance, monthly price |
//! | `y` | PKEY | proxy session id[24] ‖ forwarding key (below) |
//! | `r` | RKEY | forwarding key: session_id[32] ‖ X25519 key[32] ‖ u16 len ‖ CA cert DER ‖ u16 len ‖ online cert DER ‖ Ed25519 signature[64] |
//! | `f` | PRES | sealed inner response[[`forward::RESPONSE_SEALED_LEN`]] |
//!
//! PRXY/PFWD (client → its proxy relay) and RKEY/RFWD (proxy → destination relay) are
//! **private routing**: the destination sees the proxy's connection, the proxy cannot read
//! the forwarded SEND or its answer. Key material, encryption, padding and what each side
//! learns are in [`forward`].
//!
//! The sealed MSG payload is `XChaCha20-Poly1305(key, nonce = msg_id, plaintext)` where
//! `key = SHA-256("smpx-relay/v1 delivery" ‖ X25519(relay queue secret, recipient key) ‖
//! relay public ‖ recipient public)` and the plaintext is padded to a fixed size:
//! `u64 accepted_at ‖ u8 kind (0 body, 1 quota marker) ‖ u16 body_length ‖ body ‖ zeros`.
//! Every MSG on the wire therefore has the same length, whatever the body, and shares no
//! bytes with what the sender sent (see [`crypto`]).
//!
//! # Where we differ from SMP, and why
//!
//! * **Binary tags and fixed-width fields** instead of SMP's ASCII command words and
//!   length-prefixed strings: one byte decides the command, every field but the SEND body has
//!   a fixed size, so the decoder is small and easy to fuzz.
//! * **Fixed 24-byte correlation ids**, all-zero for pushed messages (SMP allows an empty one).
//! * **Domain-separated signatures**: a context string precedes the session id, so a relay
//!   signature can never be confused with another smpx signature (receipts use Ed25519 too).
//! * **The session id is never sent in transmissions**, only bound by the signature (as SMP
//!   does from v7 on); the hello echoes it once.
//! * **SHA-256 key derivation + XChaCha20-Poly1305** for re-encryption instead of NaCl
//!   `crypto_box` (XSalsa20-Poly1305): same construction class, the AEAD the workspace uses.
//! * **One version**, no notifier commands, no basic-auth on NEW (capacity is paid with
//!   credits instead).
//! * **Private routing** ([`forward`]) follows SMP's idea (PRXY/PFWD/RFWD) with our own
//!   construction: the destination signs its per-connection X25519 key with its online TLS
//!   certificate key and the client checks that chain against the pinned fingerprint, the
//!   inner transmission is sealed with XChaCha20-Poly1305 under a per-request ephemeral key
//!   and padded to one size, and its signature binds the proxy↔destination session id.
//! * **Unknown queue ids answer AUTH** exactly as in SMP, after verifying the signature
//!   against a dummy key so existing and unknown ids take the same path.

pub mod address;
pub mod block;
pub mod capacity;
pub mod command;
pub mod crypto;
pub mod fingerprint;
pub mod forward;
pub mod handshake;
pub mod transmission;

pub use address::{AddressError, RelayAddress, RelayHost, DEFAULT_PORT, SCHEME};
pub use block::{decode_block, BlockBuilder};
pub use command::{Command, Response};
pub use fingerprint::{CaFingerprint, FingerprintError};
pub use transmission::{encode_transmission, parse_transmission, Transmission};

/// Size of every block on the wire, padded.
pub const BLOCK_SIZE: usize = 16 * 1024;
/// Protocol versions this code speaks.
pub const VERSION_MIN: u16 = 1;
pub const VERSION_MAX: u16 = 1;
/// Length of a correlation id.
pub const CORR_ID_LEN: usize = 24;
/// Length of a queue (entity) id and of a message id.
pub const ID_LEN: usize = 24;
/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// Length of an Ed25519 or X25519 public key.
pub const KEY_LEN: usize = 32;
/// The largest SEND body, in bytes. Chosen so that a signed SEND and a MSG carrying the
/// padded body both fit one block with room to spare.
pub const MAX_BODY: usize = 16_000;

/// The transport session id (from the TLS exporter): every signature binds to it.
pub type SessionId = [u8; 32];

/// A queue's recipient or sender id: 24 random bytes, unlinkable to each other.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntityId(pub [u8; 24]);

impl std::fmt::Debug for EntityId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Ids are not secret, but a short prefix is enough in logs.
        write!(
            f,
            "EntityId({:02x}{:02x}{:02x}{:02x}…)",
            self.0[0], self.0[1], self.0[2], self.0[3]
        )
    }
}

/// A message id, chosen by the relay when the message is accepted.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct MsgId(pub [u8; 24]);

/// Correlates a response with its command; all zero in messages the relay pushes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct CorrId(pub [u8; CORR_ID_LEN]);

impl CorrId {
    /// The id of pushed messages (MSG after ACK or SEND, END) and of errors that cannot be
    /// attributed to a command.
    pub const PUSH: CorrId = CorrId([0; CORR_ID_LEN]);

    pub fn is_push(&self) -> bool {
        self == &Self::PUSH
    }
}

/// The error codes a relay answers with (`ERR`), stable on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum ErrorCode {
    /// The block could not be parsed (length, count, transmission framing).
    #[error("malformed block")]
    Block,
    /// The command is malformed or not allowed in this form.
    #[error("bad command: {0}")]
    Cmd(CmdError),
    /// Signature missing-but-required-by-the-queue, wrong, or the queue does not exist.
    /// Deliberately one code so queue ids cannot be probed.
    #[error("not authorised")]
    Auth,
    /// The queue is full; the recipient will see a quota marker.
    #[error("queue quota exceeded")]
    Quota,
    /// ACK of a message that is not the one delivered.
    #[error("no such message")]
    NoMsg,
    /// SEND body over [`MAX_BODY`].
    #[error("message too large")]
    LargeMsg,
    /// The relay failed (storage); the command may be retried.
    #[error("relay internal error")]
    Internal,
    /// Capacity must be paid first (a channel over its free allowance with no balance left),
    /// or a PAY offered less than the price or credits this relay does not take.
    #[error("payment required")]
    Payment,
    /// Private routing failed ([`forward`]).
    #[error("private routing: {0}")]
    Proxy(ProxyError),
    /// A relay limit against abuse was reached: queues created by this connection or from
    /// this source address, bytes held in queues created from this address, or proxy sessions
    /// opened per minute. Nothing was changed; existing queues keep working, and the command
    /// may succeed later (when the window refills or messages are delivered).
    #[error("relay limit reached")]
    Limit,
}

/// Details of [`ErrorCode::Proxy`] (wire code 9, then this detail byte).
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum ProxyError {
    /// The proxy could not reach the destination (connect, TLS with the pinned fingerprint,
    /// handshake, or no answer in time). Detail 1.
    #[error("destination unreachable")]
    Unreachable,
    /// PRXY named something that is not an `smpx://` address. Detail 2.
    #[error("bad destination address")]
    BadAddress,
    /// PFWD named no proxy session of this connection, or the destination's forwarding key
    /// was rotated or its connection replaced: send PRXY again. Detail 3.
    #[error("no such proxy session")]
    NoSession,
    /// This relay does not forward (or is not a destination), or the inner command may not
    /// be forwarded (only SEND and PING are). Detail 4.
    #[error("forwarding not allowed")]
    NotAllowed,
    /// The destination could not open the forwarded transmission (tampered, or sealed under
    /// another key). Detail 5.
    #[error("forwarded transmission does not decrypt")]
    Crypto,
    /// The destination saw this ephemeral key before on the connection. Detail 6.
    #[error("forwarded transmission replayed")]
    Replay,
}

impl ProxyError {
    fn code(&self) -> u8 {
        match self {
            ProxyError::Unreachable => 1,
            ProxyError::BadAddress => 2,
            ProxyError::NoSession => 3,
            ProxyError::NotAllowed => 4,
            ProxyError::Crypto => 5,
            ProxyError::Replay => 6,
        }
    }

    fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            1 => ProxyError::Unreachable,
            2 => ProxyError::BadAddress,
            3 => ProxyError::NoSession,
            4 => ProxyError::NotAllowed,
            5 => ProxyError::Crypto,
            6 => ProxyError::Replay,
            _ => return None,
        })
    }
}

/// Details of [`ErrorCode::Cmd`].
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum CmdError {
    /// Fields of the wrong size, trailing bytes, an invalid key.
    #[error("syntax")]
    Syntax,
    /// Unknown command tag.
    #[error("unknown command")]
    Unknown,
    /// Not allowed in this state (GET on a queue this connection is subscribed to).
    #[error("prohibited")]
    Prohibited,
    /// The command must be signed.
    #[error("signature required")]
    NoAuth,
    /// The command must not be signed (PING).
    #[error("signature not allowed")]
    HasAuth,
    /// The command needs a queue id and has none.
    #[error("queue id required")]
    NoEntity,
    /// The command takes no queue id and has one (NEW, PING).
    #[error("queue id not allowed")]
    HasEntity,
}

impl ErrorCode {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        match self {
            ErrorCode::Block => out.push(1),
            ErrorCode::Cmd(c) => {
                out.push(2);
                out.push(match c {
                    CmdError::Syntax => 1,
                    CmdError::Unknown => 2,
                    CmdError::Prohibited => 3,
                    CmdError::NoAuth => 4,
                    CmdError::HasAuth => 5,
                    CmdError::NoEntity => 6,
                    CmdError::HasEntity => 7,
                });
            }
            ErrorCode::Auth => out.push(3),
            ErrorCode::Quota => out.push(4),
            ErrorCode::NoMsg => out.push(5),
            ErrorCode::LargeMsg => out.push(6),
            ErrorCode::Internal => out.push(7),
            ErrorCode::Payment => out.push(8),
            ErrorCode::Proxy(p) => {
                out.push(9);
                out.push(p.code());
            }
            ErrorCode::Limit => out.push(10),
        }
    }

    pub(crate) fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let code = match b {
            [1] => ErrorCode::Block,
            [2, d] => ErrorCode::Cmd(match d {
                1 => CmdError::Syntax,
                2 => CmdError::Unknown,
                3 => CmdError::Prohibited,
                4 => CmdError::NoAuth,
                5 => CmdError::HasAuth,
                6 => CmdError::NoEntity,
                7 => CmdError::HasEntity,
                _ => return Err(DecodeError::BadErrorCode),
            }),
            [3] => ErrorCode::Auth,
            [4] => ErrorCode::Quota,
            [5] => ErrorCode::NoMsg,
            [6] => ErrorCode::LargeMsg,
            [7] => ErrorCode::Internal,
            [8] => ErrorCode::Payment,
            [9, d] => ErrorCode::Proxy(ProxyError::from_code(*d).ok_or(DecodeError::BadErrorCode)?),
            [10] => ErrorCode::Limit,
            _ => return Err(DecodeError::BadErrorCode),
        };
        Ok(code)
    }
}

/// Why bytes did not decode. [`DecodeError::wire_code`] says what a relay answers.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("block is {0} bytes, not {BLOCK_SIZE}")]
    BlockSize(usize),
    #[error("block content length {0} out of range")]
    ContentLength(usize),
    #[error("block holds no transmissions")]
    NoTransmissions,
    #[error("transmission runs past the block content")]
    TransmissionLength,
    #[error("bytes left after the last transmission")]
    TrailingContent,
    #[error("auth length {0} is neither 0 nor 64")]
    AuthLength(u8),
    #[error("entity id length {0} is neither 0 nor 24")]
    EntityLength(u8),
    #[error("input ends early")]
    Truncated,
    #[error("unknown command or response tag {0:#04x}")]
    UnknownTag(u8),
    #[error("fields have the wrong size")]
    FieldLength,
    #[error("message body of {0} bytes is over the limit")]
    BodyTooLarge(usize),
    #[error("unknown error code")]
    BadErrorCode,
    #[error("not an smpx hello")]
    BadHello,
    #[error("version range is empty")]
    BadVersionRange,
}

impl DecodeError {
    /// What the relay answers when a client's bytes fail this way.
    pub fn wire_code(&self) -> ErrorCode {
        match self {
            DecodeError::BlockSize(_)
            | DecodeError::ContentLength(_)
            | DecodeError::NoTransmissions
            | DecodeError::TransmissionLength
            | DecodeError::TrailingContent
            | DecodeError::BadHello
            | DecodeError::BadVersionRange => ErrorCode::Block,
            DecodeError::UnknownTag(_) => ErrorCode::Cmd(CmdError::Unknown),
            DecodeError::BodyTooLarge(_) => ErrorCode::LargeMsg,
            DecodeError::AuthLength(_)
            | DecodeError::EntityLength(_)
            | DecodeError::Truncated
            | DecodeError::FieldLength
            | DecodeError::BadErrorCode => ErrorCode::Cmd(CmdError::Syntax),
        }
    }
}

/// Reads fixed-size pieces off a byte slice without panicking.
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(b: &'a [u8]) -> Self {
        Self { rest: b }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.rest.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.rest)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }
}
