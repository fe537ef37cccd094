//! Queues and messages: the contract every backend keeps ([`QueueStore`]).
//!
//! The backends (memory, memory + append-only log, SQLite/PostgreSQL) are `smpx-relay-store`;
//! the contract is here so that the server depends on no database. A backend answers only
//! after what it reports is durable: once `push` returns [`PushOutcome::Accepted`] a restart,
//! or the process killed with SIGKILL, loses nothing.
//!
//! Semantics every backend shares: ids are unique across recipient, sender, channel owner
//! and channel join ids; `peek` of an unknown queue is `None`; the quota counts bodies, not
//! the marker; a refused push stores the marker only if the queue's last message is not
//! already the marker; `expire` removes bodies and markers alike (channel copies included)
//! and counts both.
//!
//! Channels: a channel's members are **member queues** — ordinary queues (SUB, GET, ACK,
//! OFF and DEL work on them unchanged; DEL is leaving the channel; they count in
//! [`StoreStats::queues`]) whose [`Queue::member_of`] names the channel and whose sender id
//! is never given out. [`QueueStore::post`] stores one message in every member queue under
//! the rules of `push` (a suspended member queue is skipped), atomically. A member queue
//! also has a last active time (its join time, then moved by [`QueueStore::touch`] at most
//! once per UTC day), which [`QueueStore::channel_usage`] counts active members by.
//! Paid capacity: a queue's [`Capacity`] is its quota and `paid_until`;
//! [`QueueStore::expire_capacity`] gives queues whose paid time ended the free quota back.

use smpx_core::UnixTime;
use smpx_relay_protocol::{EntityId, MsgId};
use zeroize::Zeroize;

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
    /// For a channel's member queue, the channel's owner id.
    pub member_of: Option<EntityId>,
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

/// A queue's capacity: its quota and until when a paid quota lasts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    pub quota: u32,
    /// 0 for a free queue; after this time [`QueueStore::expire_capacity`] puts the quota
    /// back to the free one.
    pub paid_until: UnixTime,
}

/// A channel as it is created.
#[derive(Clone, Debug)]
pub struct NewChannel {
    /// Names the channel in the owner's commands (POST, USAGE, PAY).
    pub owner_id: EntityId,
    /// Given to members: names the channel in JOIN. Unlinkable to `owner_id`.
    pub join_id: EntityId,
    /// The owner's Ed25519 key: authorises POST, USAGE and PAY.
    pub owner_key: [u8; 32],
    pub created_at: UnixTime,
}

/// A stored channel and its account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Channel {
    pub owner_id: EntityId,
    pub join_id: EntityId,
    pub owner_key: [u8; 32],
    pub created_at: UnixTime,
    /// Prepaid credit units left (may go below 0 by at most one billing period's charge).
    pub balance_units: i64,
    /// Until when usage has been charged against the balance.
    pub billed_until: UnixTime,
}

/// What a channel uses now: what it is billed by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChannelUsage {
    /// Member queues.
    pub members: u64,
    /// Members active (SUB, GET or ACK) at or after the `active_since` asked about.
    pub active: u64,
    /// Bytes of undelivered bodies held in the member queues.
    pub stored_bytes: u64,
}

/// What a POST did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PostOutcome {
    /// Member queues (recipient ids) the message was stored in: wake their subscribers.
    pub delivered: Vec<EntityId>,
    /// Member queues that were full (each got a quota marker, once, as for SEND).
    pub over_quota: Vec<EntityId>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub queues: u64,
    pub messages: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A queue (recipient or sender id) or channel (owner or join id) with this id exists
    /// (ids are random: retry with new ones).
    #[error("a queue or channel with this id exists")]
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

    // --- paid capacity -------------------------------------------------------------------

    /// Sets a queue's capacity; returns what it was (`None`: no such queue). Used to
    /// provision a paid quota at once and to put the old one back if the payment fails.
    async fn set_capacity(
        &self,
        recipient_id: &EntityId,
        capacity: Capacity,
    ) -> Result<Option<Capacity>, StoreError>;
    /// A queue's capacity (`None`: no such queue).
    async fn capacity(&self, recipient_id: &EntityId) -> Result<Option<Capacity>, StoreError>;
    /// Queues whose paid capacity ended before `now` get `free_quota` back (messages over
    /// it stay until delivered or expired); returns how many.
    async fn expire_capacity(&self, now: UnixTime, free_quota: u32) -> Result<u64, StoreError>;

    // --- channels --------------------------------------------------------------------------

    /// [`StoreError::DuplicateId`] if either id is taken (by a channel or a queue).
    async fn create_channel(&self, channel: NewChannel) -> Result<(), StoreError>;
    async fn channel_by_owner(&self, owner_id: &EntityId) -> Result<Option<Channel>, StoreError>;
    async fn channel_by_join(&self, join_id: &EntityId) -> Result<Option<Channel>, StoreError>;
    /// Creates `member` as a member queue of the channel joined by `join_id` (its sender id
    /// is never given out: only POST fills it). `Ok(false)`: no such channel.
    async fn join_channel(&self, join_id: &EntityId, member: NewQueue) -> Result<bool, StoreError>;
    /// Stores the body in every member queue of the channel (each under its quota, with the
    /// marker as for a refused SEND; suspended member queues are skipped), all in one atomic
    /// step. The message has the same id in every member queue. `None`: no such channel.
    async fn post(
        &self,
        owner_id: &EntityId,
        id: MsgId,
        at: UnixTime,
        body: Vec<u8>,
    ) -> Result<Option<PostOutcome>, StoreError>;
    /// Records that a member queue's recipient was active at `at` (SUB, GET, ACK): every
    /// backend moves the stored time to `at` only when `at` is on a later UTC day
    /// (`at / 86400` greater), so the write happens at most once a day per member. No-op for
    /// ordinary and unknown queues.
    async fn touch(&self, recipient_id: &EntityId, at: UnixTime) -> Result<(), StoreError>;
    /// Member queues, those whose last active time is `>= active_since`, and the bytes of
    /// the undelivered bodies they hold. `None`: no such channel.
    async fn channel_usage(
        &self,
        owner_id: &EntityId,
        active_since: UnixTime,
    ) -> Result<Option<ChannelUsage>, StoreError>;
    /// Atomically: `balance += credit − charge`, `billed_until = billed_until`. Returns the new
    /// balance (`None`: no such channel). Amounts over `i64::MAX`, or a balance that would
    /// leave the `i64` range, are refused with [`StoreError::Backend`] and change nothing.
    async fn charge_channel(
        &self,
        owner_id: &EntityId,
        credit_units: u64,
        charge_units: u64,
        billed_until: UnixTime,
    ) -> Result<Option<i64>, StoreError>;
}
