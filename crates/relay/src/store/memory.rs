//! Everything in memory: for tests, and the index of the logged backend ([`super::log`]).
//!
//! **Not durable**: [`MemoryStore`] loses everything when the process ends.
//!
//! The index keeps, per queue, its record, its messages in a `VecDeque` (no allocation while
//! the queue is empty) and a count of the message bodies it holds, so the quota check is
//! O(1). An idle queue costs its [`Queue`] (about 190 bytes) plus the two hash-map slots
//! (recipient id → queue, sender id → recipient id): about 400–600 bytes with the maps' load
//! factor (the `relay_store` bench measures it).

use super::*;
use std::collections::{HashMap, VecDeque};
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

/// The whole index: queues by recipient id, sender id → recipient id, and counters.
#[derive(Default)]
pub(crate) struct State {
    pub(crate) queues: HashMap<EntityId, Entry>,
    /// sender id → recipient id
    pub(crate) senders: HashMap<EntityId, EntityId>,
    /// Messages held, markers included.
    pub(crate) messages: u64,
    /// Bytes of the bodies held.
    pub(crate) body_bytes: u64,
}

impl State {
    fn taken(&self, id: &EntityId) -> bool {
        self.queues.contains_key(id) || self.senders.contains_key(id)
    }

    pub(crate) fn create(&mut self, q: NewQueue) -> Result<(), StoreError> {
        if self.taken(&q.recipient_id) || self.taken(&q.sender_id) || q.recipient_id == q.sender_id
        {
            return Err(StoreError::DuplicateId);
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
        self.messages -= e.messages.len() as u64;
        self.body_bytes -= e
            .messages
            .iter()
            .map(|m| m.body.as_ref().map_or(0, |b| b.len() as u64))
            .sum::<u64>();
        true
    }

    pub(crate) fn push_decision(&self, sid: &EntityId) -> PushDecision {
        let Some(e) = self.senders.get(sid).and_then(|r| self.queues.get(r)) else {
            return PushDecision::NoQueue;
        };
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
}
