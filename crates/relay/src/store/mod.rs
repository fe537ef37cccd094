//! Queues and messages: the contract every backend keeps, and the backends.
//!
//! A backend answers only after what it reports is durable: once `push` returns
//! [`PushOutcome::Accepted`] a restart, or the process killed with SIGKILL, loses nothing.
//!
//! | backend | holds | durable against | notes |
//! |---|---|---|---|
//! | [`memory::MemoryStore`] | memory | nothing | tests |
//! | [`log::LogStore`] | memory + append-only log file | process kill; power loss with [`log::FsyncPolicy::Batch`] or `Every` | the fast mode; log format and compaction in [`log`] |
//! | [`sql::SqlStore`] | SQLite (WAL, `synchronous=NORMAL`) or PostgreSQL | process kill (SQLite); power loss (PostgreSQL, default settings) | group commit; schema in [`sql`] |
//!
//! The same conformance suite (`tests/store_conformance.rs`) runs against all four; the
//! durability tests (`tests/store_durability.rs`) SIGKILL a writing process and check that
//! every acknowledged change is there after reopening.
//!
//! Semantics every backend shares: ids are unique across recipient *and* sender ids; `peek`
//! of an unknown queue is `None`; the quota counts bodies, not the marker; a refused push
//! stores the marker only if the queue's last message is not already the marker; `expire`
//! removes bodies and markers alike and counts both.

use crate::protocol::{EntityId, MsgId};
use smpx_core::UnixTime;
use zeroize::Zeroize;

pub mod log;
pub mod memory;
pub mod sql;

/// Free tier: undelivered messages a queue holds before the sender gets a quota error.
pub const FREE_QUOTA: u32 = 128;
/// Free tier: how long an undelivered message is kept, in seconds (21 days).
pub const FREE_RETENTION_SECS: u64 = 21 * 24 * 60 * 60;

/// The relay's X25519 secret for one queue, used to re-encrypt what it delivers.
#[derive(Clone, Zeroize)]
#[zeroize(drop)]
pub struct ServerDhSecret(pub [u8; 32]);

impl std::fmt::Debug for ServerDhSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerDhSecret(…)")
    }
}

/// A queue as it is created.
#[derive(Clone, Debug)]
pub struct NewQueue {
    pub recipient_id: EntityId,
    pub sender_id: EntityId,
    /// The recipient's Ed25519 key: authorises every recipient command.
    pub recipient_key: [u8; 32],
    /// The recipient's X25519 key: with [`NewQueue::server_dh`], the key the relay
    /// re-encrypts delivered messages under.
    pub recipient_dh: [u8; 32],
    pub server_dh: ServerDhSecret,
    /// Undelivered messages the queue may hold ([`FREE_QUOTA`] unless capacity is paid).
    pub quota: u32,
    pub created_at: UnixTime,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueStatus {
    Active,
    /// The recipient suspended it: senders are refused, the recipient can still drain it.
    Suspended,
}

/// A stored queue.
#[derive(Clone, Debug)]
pub struct Queue {
    pub recipient_id: EntityId,
    pub sender_id: EntityId,
    pub recipient_key: [u8; 32],
    pub recipient_dh: [u8; 32],
    pub server_dh: ServerDhSecret,
    /// The sender's Ed25519 key once the recipient secured the queue.
    pub sender_key: Option<[u8; 32]>,
    pub status: QueueStatus,
    pub quota: u32,
    pub created_at: UnixTime,
}

/// A message as the relay accepted it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub id: MsgId,
    /// When the relay accepted it.
    pub at: UnixTime,
    /// What the relay delivers next from a queue: a message, or the marker that the queue
    /// was full and later messages were refused.
    pub kind: MessageKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageKind {
    /// The sender's (end-to-end encrypted) body, as sent.
    Body(Vec<u8>),
    /// The queue hit its quota: at least one message after this point was refused.
    QuotaExceeded,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecureOutcome {
    Secured,
    /// Already secured with the same key: a retried command.
    AlreadySecuredSame,
    /// Already secured with another key.
    AlreadySecuredOther,
    NoQueue,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushOutcome {
    Accepted,
    /// The queue holds `quota` undelivered messages; a quota marker was stored (once, until
    /// the recipient drains the queue).
    QuotaExceeded,
    Suspended,
    NoQueue,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckOutcome {
    Acked,
    /// The queue's next message is not this one (or the queue is empty).
    NoMessage,
    NoQueue,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub queues: u64,
    pub messages: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A queue with this recipient or sender id exists (ids are random: retry with new ones).
    #[error("a queue with this id exists")]
    DuplicateId,
    #[error("storage failed: {0}")]
    Backend(String),
}

/// What every backend keeps. Methods are atomic; each answers only once its effect is durable.
#[async_trait::async_trait]
pub trait QueueStore: Send + Sync {
    async fn create(&self, queue: NewQueue) -> Result<(), StoreError>;
    async fn by_recipient(&self, id: &EntityId) -> Result<Option<Queue>, StoreError>;
    async fn by_sender(&self, id: &EntityId) -> Result<Option<Queue>, StoreError>;
    async fn secure(
        &self,
        recipient_id: &EntityId,
        sender_key: [u8; 32],
    ) -> Result<SecureOutcome, StoreError>;
    /// `false` when there is no such queue.
    async fn suspend(&self, recipient_id: &EntityId) -> Result<bool, StoreError>;
    /// Deletes the queue and its messages; `false` when there is no such queue.
    async fn delete(&self, recipient_id: &EntityId) -> Result<bool, StoreError>;
    /// Appends a message unless the queue is full (counting messages, not the marker).
    async fn push(
        &self,
        sender_id: &EntityId,
        id: MsgId,
        at: UnixTime,
        body: Vec<u8>,
    ) -> Result<PushOutcome, StoreError>;
    /// The oldest undelivered message, if any.
    async fn peek(&self, recipient_id: &EntityId) -> Result<Option<Message>, StoreError>;
    /// Removes the oldest message if its id is `id`.
    async fn ack(&self, recipient_id: &EntityId, id: &MsgId) -> Result<AckOutcome, StoreError>;
    /// Deletes messages accepted before `before`; returns how many.
    async fn expire(&self, before: UnixTime) -> Result<u64, StoreError>;
    async fn stats(&self) -> Result<StoreStats, StoreError>;
}
