//! Limits against a hostile client: queues created per connection and per source address,
//! bytes held in queues created from one address, proxy sessions opened per minute.
//! Every refusal is `ERR LIMIT` ([`smpx_relay_protocol::ErrorCode::Limit`]); the command
//! changes nothing and the connection stays open.
//!
//! * **Per connection** ([`Limits::queues_per_connection`]): NEW, JOIN and NEWC created on
//!   one connection, over its life.
//! * **Per source address** ([`Limits::queues_per_address_per_hour`]): a token bucket of that
//!   many creations, refilled at that many per hour, shared by every connection from the
//!   address. An IPv6 address counts by its /64 (one host's usual share); an IPv4-mapped
//!   IPv6 address as the IPv4 address.
//! * **Stored bytes per source address** ([`Limits::stored_bytes_per_address`]): the bodies
//!   held, undelivered, in free-tier queues created (NEW) from the address; a SEND that would
//!   go over is refused, and an ACK, a DEL or expiry frees its bytes again. Queues with paid
//!   capacity (a quota above the free one) and channels (billed by their own use) do not
//!   count, nor queues created before the relay started.
//! * **Proxy sessions per connection** ([`Limits::proxy_sessions_per_minute`]): PRXY, as a
//!   token bucket refilled per minute.
//!
//! **Privacy**: the address accounting is in memory only — never written to the store or
//! logged, gone at restart. While the relay runs it holds, per address (/64 for IPv6), a
//! bucket and a byte count, and for each queue created since the start from an address that
//! address and the sizes of the queue's undelivered messages: what the relay saw anyway
//! when the queue was created.
//!
//! The bucket ([`Bucket`]) is a pure value moved by the `now` it is given (the server's
//! [`crate::ServerConfig::clock`]); [`Ledger`] holds the state behind one lock.

use smpx_core::UnixTime;
use smpx_relay_protocol::{EntityId, MsgId};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};

/// The limits ([`crate::ServerConfig::limits`]). The defaults leave room for a user with a
/// few hundred contacts creating all their queues at once, behind a shared (NAT) address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Queues (NEW, JOIN) and channels (NEWC) one connection may create.
    pub queues_per_connection: u32,
    /// Queues and channels created from one source address: at most this many at once, then
    /// this many per hour.
    pub queues_per_address_per_hour: u32,
    /// Bytes of undelivered bodies held in free-tier queues created from one source address.
    pub stored_bytes_per_address: u64,
    /// PRXY on one connection: at most this many at once, then this many per minute.
    pub proxy_sessions_per_minute: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            queues_per_connection: 1_000,
            queues_per_address_per_hour: 1_000,
            stored_bytes_per_address: 512_000_000,
            proxy_sessions_per_minute: 120,
        }
    }
}

/// What addresses are counted by: an IPv4 address, or an IPv6 address's /64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AddressKey([u8; 16]);

impl AddressKey {
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self(v4.to_ipv6_mapped().octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(v4.to_ipv6_mapped().octets()),
                None => {
                    let mut o = v6.octets();
                    o[8..].fill(0);
                    Self(o)
                }
            },
        }
    }
}

/// A token bucket of `capacity` tokens refilled at `capacity` per `period` seconds, kept
/// in exact integer steps: a token is `period` units, each second adds `capacity` units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bucket {
    units: u64,
    at: UnixTime,
}

impl Bucket {
    /// A full bucket at `now`.
    pub fn full(capacity: u32, period: u64, now: UnixTime) -> Self {
        Self {
            units: u64::from(capacity).saturating_mul(period),
            at: now,
        }
    }

    fn refill(&mut self, capacity: u32, period: u64, now: UnixTime) {
        let full = u64::from(capacity).saturating_mul(period);
        let elapsed = now.saturating_sub(self.at);
        self.units = self
            .units
            .saturating_add(elapsed.saturating_mul(u64::from(capacity)))
            .min(full);
        self.at = self.at.max(now);
    }

    /// Takes one token if there is one at `now`.
    pub fn take(&mut self, capacity: u32, period: u64, now: UnixTime) -> bool {
        self.refill(capacity, period, now);
        match self.units.checked_sub(period.max(1)) {
            Some(rest) => {
                self.units = rest;
                true
            }
            None => false,
        }
    }

    /// Whether it is full again at `now` (then it can be forgotten).
    pub fn is_full(&self, capacity: u32, period: u64, now: UnixTime) -> bool {
        let mut b = *self;
        b.refill(capacity, period, now);
        b.units >= u64::from(capacity).saturating_mul(period)
    }
}

const HOUR: u64 = 3600;
const MINUTE: u64 = 60;

/// A PRXY token of a connection's bucket (`None` until the first PRXY).
pub(crate) fn take_proxy(bucket: &mut Option<Bucket>, limits: &Limits, now: UnixTime) -> bool {
    let cap = limits.proxy_sessions_per_minute;
    bucket
        .get_or_insert_with(|| Bucket::full(cap, MINUTE, now))
        .take(cap, MINUTE, now)
}

struct AddressAccount {
    created: Bucket,
    stored_bytes: u64,
    /// Queues created from here that are being accounted.
    queues: u64,
}

struct Held {
    id: MsgId,
    at: UnixTime,
    len: u64,
}

struct QueueAccount {
    address: AddressKey,
    held: VecDeque<Held>,
}

#[derive(Default)]
struct Book {
    addresses: HashMap<AddressKey, AddressAccount>,
    /// By recipient id.
    queues: HashMap<EntityId, QueueAccount>,
}

/// The per-address accounting of one relay (in memory only).
#[derive(Default)]
pub(crate) struct Ledger {
    book: Mutex<Book>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Ledger {
    /// Takes one queue-creation token of `address`; `false`: over the limit.
    pub(crate) fn take_creation(
        &self,
        address: AddressKey,
        limits: &Limits,
        now: UnixTime,
    ) -> bool {
        let cap = limits.queues_per_address_per_hour;
        let mut book = lock(&self.book);
        book.addresses
            .entry(address)
            .or_insert_with(|| AddressAccount {
                created: Bucket::full(cap, HOUR, now),
                stored_bytes: 0,
                queues: 0,
            })
            .created
            .take(cap, HOUR, now)
    }

    /// A queue was created from `address`: its bodies count against the address from now.
    pub(crate) fn queue_created(&self, rid: EntityId, address: AddressKey) {
        let mut book = lock(&self.book);
        let Some(a) = book.addresses.get_mut(&address) else {
            return;
        };
        a.queues += 1;
        book.queues.insert(
            rid,
            QueueAccount {
                address,
                held: VecDeque::new(),
            },
        );
    }

    /// Before a SEND to queue `rid`: counts `len` bytes of message `id` against the address
    /// that created the queue; `false`: over `limit` (nothing counted). A queue not accounted
    /// is always allowed.
    pub(crate) fn charge(
        &self,
        rid: EntityId,
        id: MsgId,
        at: UnixTime,
        len: u64,
        limit: u64,
    ) -> bool {
        let mut guard = lock(&self.book);
        let book = &mut *guard;
        let Some(q) = book.queues.get_mut(&rid) else {
            return true;
        };
        let Some(a) = book.addresses.get_mut(&q.address) else {
            return true;
        };
        let total = a.stored_bytes.saturating_add(len);
        if total > limit {
            return false;
        }
        a.stored_bytes = total;
        q.held.push_back(Held { id, at, len });
        true
    }

    /// Message `id` of queue `rid` left the store (ACK), or was never stored (a refused push).
    pub(crate) fn release(&self, rid: EntityId, id: MsgId) {
        let mut guard = lock(&self.book);
        let book = &mut *guard;
        let Some(q) = book.queues.get_mut(&rid) else {
            return;
        };
        let Some(i) = q.held.iter().position(|h| h.id == id) else {
            return;
        };
        let len = q.held.remove(i).map_or(0, |h| h.len);
        if let Some(a) = book.addresses.get_mut(&q.address) {
            a.stored_bytes = a.stored_bytes.saturating_sub(len);
        }
    }

    /// Queue `rid` was deleted: its bytes are free and it is no longer accounted.
    pub(crate) fn queue_deleted(&self, rid: EntityId) {
        let mut book = lock(&self.book);
        let Some(q) = book.queues.remove(&rid) else {
            return;
        };
        let len: u64 = q.held.iter().map(|h| h.len).sum();
        if let Some(a) = book.addresses.get_mut(&q.address) {
            a.stored_bytes = a.stored_bytes.saturating_sub(len);
            a.queues = a.queues.saturating_sub(1);
        }
    }

    /// Messages accepted before `before` expired; addresses with nothing accounted and a
    /// full bucket are forgotten.
    pub(crate) fn expired(&self, before: UnixTime, limits: &Limits, now: UnixTime) {
        let mut guard = lock(&self.book);
        let book = &mut *guard;
        for q in book.queues.values_mut() {
            let mut freed = 0u64;
            q.held.retain(|h| {
                let keep = h.at >= before;
                if !keep {
                    freed += h.len;
                }
                keep
            });
            if freed > 0 {
                if let Some(a) = book.addresses.get_mut(&q.address) {
                    a.stored_bytes = a.stored_bytes.saturating_sub(freed);
                }
            }
        }
        let cap = limits.queues_per_address_per_hour;
        book.addresses.retain(|_, a| {
            a.queues > 0 || a.stored_bytes > 0 || !a.created.is_full(cap, HOUR, now)
        });
    }

    /// Bytes counted against `address` now (tests, metrics).
    #[cfg(test)]
    fn stored(&self, address: AddressKey) -> u64 {
        lock(&self.book)
            .addresses
            .get(&address)
            .map_or(0, |a| a.stored_bytes)
    }

    #[cfg(test)]
    fn addresses(&self) -> usize {
        lock(&self.book).addresses.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn key(s: &str) -> AddressKey {
        AddressKey::of(s.parse().unwrap())
    }

    #[test]
    fn a_bucket_gives_its_capacity_at_once_then_refills_at_its_rate() {
        let mut b = Bucket::full(3, 60, 1000);
        assert!((0..3).all(|_| b.take(3, 60, 1000)));
        assert!(!b.take(3, 60, 1000));
        // One token per 20 s.
        assert!(!b.take(3, 60, 1019));
        assert!(b.take(3, 60, 1020));
        assert!(!b.take(3, 60, 1020));
        // Never more than full, however long it waited; a clock going back refills nothing.
        assert!(b.is_full(3, 60, 100_000));
        let mut b = Bucket::full(3, 60, 100_000);
        assert!((0..3).all(|_| b.take(3, 60, 100_000)));
        assert!(!b.take(3, 60, 5));
        assert!(!b.take(0, 60, 100_000), "a zero limit allows nothing");
    }

    #[test]
    fn addresses_count_as_ipv4_or_by_ipv6_64() {
        assert_eq!(key("10.0.0.1"), key("::ffff:10.0.0.1"));
        assert_ne!(key("10.0.0.1"), key("10.0.0.2"));
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
    }

    #[test]
    fn creations_share_one_bucket_per_address() {
        let l = Ledger::default();
        let limits = Limits {
            queues_per_address_per_hour: 2,
            ..Limits::default()
        };
        assert!(l.take_creation(key("10.0.0.1"), &limits, 0));
        assert!(l.take_creation(key("10.0.0.1"), &limits, 0));
        assert!(!l.take_creation(key("10.0.0.1"), &limits, 0));
        assert!(l.take_creation(key("10.0.0.2"), &limits, 0));
        assert!(l.take_creation(key("10.0.0.1"), &limits, HOUR / 2));
    }

    #[test]
    fn stored_bytes_are_refused_over_the_limit_and_freed_by_ack_delete_and_expiry() {
        let l = Ledger::default();
        let limits = Limits::default();
        let a = key("192.0.2.7");
        let (q1, q2) = (EntityId([1; 24]), EntityId([2; 24]));
        assert!(l.take_creation(a, &limits, 0));
        l.queue_created(q1, a);
        l.queue_created(q2, a);
        let m = |i: u8| MsgId([i; 24]);
        assert!(l.charge(q1, m(1), 10, 600, 1000));
        assert!(
            !l.charge(q2, m(2), 10, 600, 1000),
            "the address's queues share it"
        );
        assert!(l.charge(q2, m(2), 20, 400, 1000));
        assert_eq!(l.stored(a), 1000);
        l.release(q1, m(1));
        assert_eq!(l.stored(a), 400);
        l.release(q1, m(1));
        assert_eq!(l.stored(a), 400, "released once");
        assert!(l.charge(q1, m(3), 30, 500, 1000));
        l.expired(21, &limits, 40);
        assert_eq!(l.stored(a), 500, "the message of time 20 expired");
        l.queue_deleted(q1);
        assert_eq!(l.stored(a), 0);
        assert!(
            l.charge(EntityId([9; 24]), m(4), 0, 5000, 1000),
            "a queue not accounted"
        );
        // The address is forgotten once it holds nothing and its bucket is full.
        l.queue_deleted(q2);
        l.expired(0, &limits, 2 * HOUR);
        assert_eq!(l.addresses(), 0);
    }
}
