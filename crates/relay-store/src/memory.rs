//! Everything in memory: for tests, and the index of the logged backend ([`crate::log`]).
//!
//! **Not durable**: [`MemoryStore`] loses everything when the process ends.
//!
//! The index keeps, per queue, its record, its messages in a `VecDeque` (no allocation while
//! the queue is empty) and a count of the message bodies it holds, so the quota check is
//! O(1). An idle queue costs its [`Queue`] (about 215 bytes, `member_of` included) plus the
//! two hash-map slots (recipient id → queue, sender id → recipient id): about 400–600 bytes
//! with the maps' load factor (the `relay_store` bench measures it).
//!
//! Paid capacity and channels cost nothing for free queues: a paid queue also has its
//! `paid_until` in a map of the paid queues only, and a channel keeps its members (recipient
//! id → last active time) in a `BTreeMap`, which also fixes the order a POST fills them in
//! (by recipient id; the logged backend's replay relies on it). A POST stores one copy of
//! the body per member queue.

use smpx_core::UnixTime;
use smpx_relay_protocol::{EntityId, MsgId};
use smpx_relay_server::store::*;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

/// A message as the index keeps it: the body is `None` for the quota marker.
#[derive(Clone)]
pub(crate) struct Stored {
    pub(crate) id: MsgId,
    pub(crate) at: UnixTime,
    pub(crate) body: Option<Box<[u8]>>,
}

impl Stored {
    pub(crate) fn to_message(&self) -> Message {
        Message {
            id: self.id,
            at: self.at,
            kind: match &self.body {
                Some(b) => MessageKind::Body(b.to_vec()),
                None => MessageKind::QuotaExceeded,
            },
        }
    }
}

pub(crate) struct Entry {
    pub(crate) queue: Queue,
    pub(crate) messages: VecDeque<Stored>,
    /// Bodies in `messages` (the marker not counted): what the quota limits.
    pub(crate) held: u32,
}

/// What `push` will do, decided before anything changes (so the logged backend can write
/// its record first and apply the same change on replay).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PushDecision {
    NoQueue,
    Suspended,
    /// Append the body to the queue of this recipient id.
    Accept(EntityId),
    /// The queue is full and its last message is not the marker: append the marker.
    Marker(EntityId),
    /// The queue is full and already ends with the marker: nothing changes.
    Full,
}

/// A channel and its member queues.
pub(crate) struct ChannelEntry {
    pub(crate) channel: Channel,
    /// Member queue recipient id → when its recipient was last active (SUB, GET, ACK; the
    /// join time until then).
    pub(crate) members: BTreeMap<EntityId, UnixTime>,
}

/// What a POST did to the index: the outcome, and whether anything changed (the logged
/// backend writes a record only then).
pub(crate) struct PostApplied {
    pub(crate) outcome: PostOutcome,
    pub(crate) changed: bool,
}

/// The day (UTC) of a time: `touch` writes only when it changes.
fn day(t: UnixTime) -> u64 {
    t / 86_400
}

/// The whole index: queues by recipient id, sender id → recipient id, channels, and counters.
#[derive(Default)]
pub(crate) struct State {
    pub(crate) queues: HashMap<EntityId, Entry>,
    /// sender id → recipient id
    pub(crate) senders: HashMap<EntityId, EntityId>,
    /// Queues with a paid capacity: recipient id → `paid_until` (never 0 here).
    pub(crate) paid: HashMap<EntityId, UnixTime>,
    /// Channels by owner id.
    pub(crate) channels: HashMap<EntityId, ChannelEntry>,
    /// join id → owner id
    pub(crate) joins: HashMap<EntityId, EntityId>,
    /// Messages held, markers included.
    pub(crate) messages: u64,
    /// Bytes of the bodies held.
    pub(crate) body_bytes: u64,
}

impl State {
    /// Whether `id` is used as a recipient, sender, owner or join id.
    fn taken(&self, id: &EntityId) -> bool {
        self.queues.contains_key(id)
            || self.senders.contains_key(id)
            || self.channels.contains_key(id)
            || self.joins.contains_key(id)
    }

    pub(crate) fn create(&mut self, q: NewQueue) -> Result<(), StoreError> {
        self.create_queue(q, None)
    }

    /// Creates a queue, a member queue of the channel `member_of` if given (the caller
    /// checked that the channel exists).
    fn create_queue(&mut self, q: NewQueue, member_of: Option<EntityId>) -> Result<(), StoreError> {
        if self.taken(&q.recipient_id) || self.taken(&q.sender_id) || q.recipient_id == q.sender_id
        {
            return Err(StoreError::DuplicateId);
        }
        if let Some(c) = member_of.and_then(|o| self.channels.get_mut(&o)) {
            c.members.insert(q.recipient_id, q.created_at);
        }
        self.senders.insert(q.sender_id, q.recipient_id);
        self.queues.insert(
            q.recipient_id,
            Entry {
                queue: Queue {
                    recipient_id: q.recipient_id,
                    sender_id: q.sender_id,
                    recipient_key: q.recipient_key,
                    recipient_dh: q.recipient_dh,
                    server_dh: q.server_dh,
                    sender_key: None,
                    status: QueueStatus::Active,
                    quota: q.quota,
                    created_at: q.created_at,
                    member_of,
                },
                messages: VecDeque::new(),
                held: 0,
            },
        );
        Ok(())
    }

    pub(crate) fn by_recipient(&self, id: &EntityId) -> Option<&Queue> {
        self.queues.get(id).map(|e| &e.queue)
    }

    pub(crate) fn by_sender(&self, id: &EntityId) -> Option<&Queue> {
        self.senders
            .get(id)
            .and_then(|r| self.queues.get(r))
            .map(|e| &e.queue)
    }

    pub(crate) fn secure(&mut self, rid: &EntityId, key: [u8; 32]) -> SecureOutcome {
        let Some(e) = self.queues.get_mut(rid) else {
            return SecureOutcome::NoQueue;
        };
        match e.queue.sender_key {
            None => {
                e.queue.sender_key = Some(key);
                SecureOutcome::Secured
            }
            Some(k) if k == key => SecureOutcome::AlreadySecuredSame,
            Some(_) => SecureOutcome::AlreadySecuredOther,
        }
    }

    /// `Some(changed)` when the queue exists.
    pub(crate) fn suspend(&mut self, rid: &EntityId) -> Option<bool> {
        let e = self.queues.get_mut(rid)?;
        let changed = e.queue.status != QueueStatus::Suspended;
        e.queue.status = QueueStatus::Suspended;
        Some(changed)
    }

    pub(crate) fn delete(&mut self, rid: &EntityId) -> bool {
        let Some(e) = self.queues.remove(rid) else {
            return false;
        };
        self.senders.remove(&e.queue.sender_id);
        self.paid.remove(rid);
        if let Some(c) = e.queue.member_of.and_then(|o| self.channels.get_mut(&o)) {
            c.members.remove(rid);
        }
        self.messages -= e.messages.len() as u64;
        self.body_bytes -= e
            .messages
            .iter()
            .map(|m| m.body.as_ref().map_or(0, |b| b.len() as u64))
            .sum::<u64>();
        true
    }

    pub(crate) fn push_decision(&self, sid: &EntityId) -> PushDecision {
        match self.senders.get(sid).and_then(|r| self.queues.get(r)) {
            Some(e) => Self::decide(e),
            None => PushDecision::NoQueue,
        }
    }

    /// What a message for this queue does: the rules of `push`, shared by `post`.
    fn decide(e: &Entry) -> PushDecision {
        if e.queue.status == QueueStatus::Suspended {
            return PushDecision::Suspended;
        }
        if e.held < e.queue.quota {
            return PushDecision::Accept(e.queue.recipient_id);
        }
        match e.messages.back() {
            Some(m) if m.body.is_none() => PushDecision::Full,
            _ => PushDecision::Marker(e.queue.recipient_id),
        }
    }

    /// Appends a message (a body, or the marker when `body` is `None`) to a queue; `false`
    /// when there is no such queue.
    pub(crate) fn append(
        &mut self,
        rid: &EntityId,
        id: MsgId,
        at: UnixTime,
        body: Option<Box<[u8]>>,
    ) -> bool {
        let Some(e) = self.queues.get_mut(rid) else {
            return false;
        };
        if let Some(b) = &body {
            e.held += 1;
            self.body_bytes += b.len() as u64;
        }
        e.messages.push_back(Stored { id, at, body });
        self.messages += 1;
        true
    }

    pub(crate) fn peek(&self, rid: &EntityId) -> Option<Message> {
        self.queues
            .get(rid)
            .and_then(|e| e.messages.front())
            .map(Stored::to_message)
    }

    pub(crate) fn ack(&mut self, rid: &EntityId, id: &MsgId) -> AckOutcome {
        let Some(e) = self.queues.get_mut(rid) else {
            return AckOutcome::NoQueue;
        };
        match e.messages.front() {
            Some(m) if &m.id == id => {
                if let Some(m) = e.messages.pop_front() {
                    if let Some(b) = m.body {
                        e.held -= 1;
                        self.body_bytes -= b.len() as u64;
                    }
                    self.messages -= 1;
                }
                AckOutcome::Acked
            }
            _ => AckOutcome::NoMessage,
        }
    }

    pub(crate) fn expire(&mut self, before: UnixTime) -> u64 {
        let mut n = 0u64;
        let mut bytes = 0u64;
        for e in self.queues.values_mut() {
            if e.messages.iter().all(|m| m.at >= before) {
                continue;
            }
            let held = &mut e.held;
            e.messages.retain(|m| {
                if m.at >= before {
                    return true;
                }
                n += 1;
                if let Some(b) = &m.body {
                    *held -= 1;
                    bytes += b.len() as u64;
                }
                false
            });
            if e.messages.is_empty() {
                // give back the ring buffer of a drained queue
                e.messages = VecDeque::new();
            }
        }
        self.messages -= n;
        self.body_bytes -= bytes;
        n
    }

    pub(crate) fn stats(&self) -> StoreStats {
        StoreStats {
            queues: self.queues.len() as u64,
            messages: self.messages,
        }
    }

    pub(crate) fn capacity(&self, rid: &EntityId) -> Option<Capacity> {
        let e = self.queues.get(rid)?;
        Some(Capacity {
            quota: e.queue.quota,
            paid_until: self.paid.get(rid).copied().unwrap_or(0),
        })
    }

    /// Returns the capacity the queue had (`None`: no such queue).
    pub(crate) fn set_capacity(&mut self, rid: &EntityId, c: Capacity) -> Option<Capacity> {
        let old = self.capacity(rid)?;
        if let Some(e) = self.queues.get_mut(rid) {
            e.queue.quota = c.quota;
        }
        if c.paid_until == 0 {
            self.paid.remove(rid);
        } else {
            self.paid.insert(*rid, c.paid_until);
        }
        Some(old)
    }

    pub(crate) fn expire_capacity(&mut self, now: UnixTime, free_quota: u32) -> u64 {
        let ended: Vec<EntityId> = self
            .paid
            .iter()
            .filter(|(_, until)| **until < now)
            .map(|(rid, _)| *rid)
            .collect();
        for rid in &ended {
            self.paid.remove(rid);
            if let Some(e) = self.queues.get_mut(rid) {
                e.queue.quota = free_quota;
            }
        }
        ended.len() as u64
    }

    pub(crate) fn create_channel(&mut self, c: NewChannel) -> Result<(), StoreError> {
        if self.taken(&c.owner_id) || self.taken(&c.join_id) || c.owner_id == c.join_id {
            return Err(StoreError::DuplicateId);
        }
        self.joins.insert(c.join_id, c.owner_id);
        self.channels.insert(
            c.owner_id,
            ChannelEntry {
                channel: Channel {
                    owner_id: c.owner_id,
                    join_id: c.join_id,
                    owner_key: c.owner_key,
                    created_at: c.created_at,
                    balance_units: 0,
                    billed_until: 0,
                },
                members: BTreeMap::new(),
            },
        );
        Ok(())
    }

    pub(crate) fn channel_by_owner(&self, owner: &EntityId) -> Option<&Channel> {
        self.channels.get(owner).map(|c| &c.channel)
    }

    pub(crate) fn channel_by_join(&self, join: &EntityId) -> Option<&Channel> {
        self.joins
            .get(join)
            .and_then(|o| self.channels.get(o))
            .map(|c| &c.channel)
    }

    /// The owner id of the channel joined with `join`, then creates the member queue:
    /// `Ok(None)` when there is no such channel.
    pub(crate) fn join_channel(
        &mut self,
        join: &EntityId,
        member: NewQueue,
    ) -> Result<Option<EntityId>, StoreError> {
        let Some(owner) = self.joins.get(join).copied() else {
            return Ok(None);
        };
        self.join_owner(owner, member)?;
        Ok(Some(owner))
    }

    /// Creates a member queue of the channel `owner` (replay of the log names the owner).
    pub(crate) fn join_owner(
        &mut self,
        owner: EntityId,
        member: NewQueue,
    ) -> Result<(), StoreError> {
        if !self.channels.contains_key(&owner) {
            return Err(StoreError::Backend("join of an unknown channel".into()));
        }
        self.create_queue(member, Some(owner))
    }

    /// Stores the body (or the marker) in every member queue as `push` would; `None`: no such
    /// channel. Suspended member queues are skipped.
    pub(crate) fn post(
        &mut self,
        owner: &EntityId,
        id: MsgId,
        at: UnixTime,
        body: &[u8],
    ) -> Option<PostApplied> {
        let c = self.channels.get(owner)?;
        let mut accept = Vec::new();
        let mut marker = Vec::new();
        let mut outcome = PostOutcome::default();
        for rid in c.members.keys() {
            let Some(e) = self.queues.get(rid) else {
                continue;
            };
            match Self::decide(e) {
                PushDecision::Accept(rid) => accept.push(rid),
                PushDecision::Marker(rid) => marker.push(rid),
                PushDecision::Full => outcome.over_quota.push(*rid),
                PushDecision::Suspended | PushDecision::NoQueue => {}
            }
        }
        let changed = !accept.is_empty() || !marker.is_empty();
        for rid in &accept {
            self.append(rid, id, at, Some(Box::from(body)));
        }
        for rid in &marker {
            self.append(rid, id, at, None);
        }
        outcome.delivered = accept;
        outcome.over_quota.extend(marker);
        outcome.over_quota.sort_unstable();
        Some(PostApplied { outcome, changed })
    }

    /// `Some(changed)` when `rid` is a member queue: its last active time moves to `at` when
    /// `at` is on a later day.
    pub(crate) fn touch(&mut self, rid: &EntityId, at: UnixTime) -> Option<bool> {
        let owner = self.queues.get(rid)?.queue.member_of?;
        let last = self.channels.get_mut(&owner)?.members.get_mut(rid)?;
        if day(at) > day(*last) {
            *last = at;
            Some(true)
        } else {
            Some(false)
        }
    }

    /// A member queue's last active time (`None`: not a member queue).
    pub(crate) fn last_active(&self, rid: &EntityId) -> Option<UnixTime> {
        let owner = self.queues.get(rid)?.queue.member_of?;
        self.channels.get(&owner)?.members.get(rid).copied()
    }

    pub(crate) fn channel_usage(
        &self,
        owner: &EntityId,
        active_since: UnixTime,
    ) -> Option<ChannelUsage> {
        let c = self.channels.get(owner)?;
        let mut u = ChannelUsage::default();
        for (rid, last) in &c.members {
            u.members += 1;
            if *last >= active_since {
                u.active += 1;
            }
            if let Some(e) = self.queues.get(rid) {
                u.stored_bytes += e
                    .messages
                    .iter()
                    .map(|m| m.body.as_ref().map_or(0, |b| b.len() as u64))
                    .sum::<u64>();
            }
        }
        Some(u)
    }

    /// `balance += credit − charge`, `billed_until = billed_until`; the new balance (`Ok(None)`:
    /// no such channel). Amounts that would overflow the balance are refused, changing nothing.
    pub(crate) fn charge_channel(
        &mut self,
        owner: &EntityId,
        credit: u64,
        charge: u64,
        billed_until: UnixTime,
    ) -> Result<Option<i64>, StoreError> {
        let Some(c) = self.channels.get_mut(owner) else {
            return Ok(None);
        };
        if i64::try_from(credit).is_err() || i64::try_from(charge).is_err() {
            return Err(StoreError::Backend("charge amount out of range".into()));
        }
        let balance = i64::try_from(
            i128::from(c.channel.balance_units) + i128::from(credit) - i128::from(charge),
        )
        .map_err(|_| StoreError::Backend("channel balance out of range".into()))?;
        c.channel.balance_units = balance;
        c.channel.billed_until = billed_until;
        Ok(Some(balance))
    }
}

/// A [`QueueStore`] that keeps everything in memory and loses it on restart.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<State>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, State>, StoreError> {
        self.inner
            .lock()
            .map_err(|_| StoreError::Backend("memory store poisoned".into()))
    }
}

#[async_trait::async_trait]
impl QueueStore for MemoryStore {
    async fn create(&self, q: NewQueue) -> Result<(), StoreError> {
        self.lock()?.create(q)
    }

    async fn by_recipient(&self, id: &EntityId) -> Result<Option<Queue>, StoreError> {
        Ok(self.lock()?.by_recipient(id).cloned())
    }

    async fn by_sender(&self, id: &EntityId) -> Result<Option<Queue>, StoreError> {
        Ok(self.lock()?.by_sender(id).cloned())
    }

    async fn secure(&self, rid: &EntityId, key: [u8; 32]) -> Result<SecureOutcome, StoreError> {
        Ok(self.lock()?.secure(rid, key))
    }

    async fn suspend(&self, rid: &EntityId) -> Result<bool, StoreError> {
        Ok(self.lock()?.suspend(rid).is_some())
    }

    async fn delete(&self, rid: &EntityId) -> Result<bool, StoreError> {
        Ok(self.lock()?.delete(rid))
    }

    async fn push(
        &self,
        sid: &EntityId,
        id: MsgId,
        at: UnixTime,
        body: Vec<u8>,
    ) -> Result<PushOutcome, StoreError> {
        let mut s = self.lock()?;
        Ok(match s.push_decision(sid) {
            PushDecision::NoQueue => PushOutcome::NoQueue,
            PushDecision::Suspended => PushOutcome::Suspended,
            PushDecision::Full => PushOutcome::QuotaExceeded,
            PushDecision::Marker(rid) => {
                s.append(&rid, id, at, None);
                PushOutcome::QuotaExceeded
            }
            PushDecision::Accept(rid) => {
                s.append(&rid, id, at, Some(body.into_boxed_slice()));
                PushOutcome::Accepted
            }
        })
    }

    async fn peek(&self, rid: &EntityId) -> Result<Option<Message>, StoreError> {
        Ok(self.lock()?.peek(rid))
    }

    async fn ack(&self, rid: &EntityId, id: &MsgId) -> Result<AckOutcome, StoreError> {
        Ok(self.lock()?.ack(rid, id))
    }

    async fn expire(&self, before: UnixTime) -> Result<u64, StoreError> {
        Ok(self.lock()?.expire(before))
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        Ok(self.lock()?.stats())
    }

    async fn set_capacity(
        &self,
        rid: &EntityId,
        capacity: Capacity,
    ) -> Result<Option<Capacity>, StoreError> {
        Ok(self.lock()?.set_capacity(rid, capacity))
    }

    async fn capacity(&self, rid: &EntityId) -> Result<Option<Capacity>, StoreError> {
        Ok(self.lock()?.capacity(rid))
    }

    async fn expire_capacity(&self, now: UnixTime, free_quota: u32) -> Result<u64, StoreError> {
        Ok(self.lock()?.expire_capacity(now, free_quota))
    }

    async fn create_channel(&self, channel: NewChannel) -> Result<(), StoreError> {
        self.lock()?.create_channel(channel)
    }

    async fn channel_by_owner(&self, owner: &EntityId) -> Result<Option<Channel>, StoreError> {
        Ok(self.lock()?.channel_by_owner(owner).cloned())
    }

    async fn channel_by_join(&self, join: &EntityId) -> Result<Option<Channel>, StoreError> {
        Ok(self.lock()?.channel_by_join(join).cloned())
    }

    async fn join_channel(&self, join: &EntityId, member: NewQueue) -> Result<bool, StoreError> {
        Ok(self.lock()?.join_channel(join, member)?.is_some())
    }

    async fn post(
        &self,
        owner: &EntityId,
        id: MsgId,
        at: UnixTime,
        body: Vec<u8>,
    ) -> Result<Option<PostOutcome>, StoreError> {
        Ok(self.lock()?.post(owner, id, at, &body).map(|p| p.outcome))
    }

    async fn touch(&self, rid: &EntityId, at: UnixTime) -> Result<(), StoreError> {
        self.lock()?.touch(rid, at);
        Ok(())
    }

    async fn channel_usage(
        &self,
        owner: &EntityId,
        active_since: UnixTime,
    ) -> Result<Option<ChannelUsage>, StoreError> {
        Ok(self.lock()?.channel_usage(owner, active_since))
    }

    async fn charge_channel(
        &self,
        owner: &EntityId,
        credit_units: u64,
        charge_units: u64,
        billed_until: UnixTime,
    ) -> Result<Option<i64>, StoreError> {
        self.lock()?
            .charge_channel(owner, credit_units, charge_units, billed_until)
    }
}
