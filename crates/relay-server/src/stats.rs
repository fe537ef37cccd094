//! Counters the relay keeps while it runs (the CLI renders them as Prometheus text).

use std::sync::atomic::{AtomicU64, Ordering};

/// Monotonic counters and two gauges, updated lock-free by every connection.
#[derive(Debug, Default)]
pub struct RelayStats {
    /// Messages accepted from senders.
    pub messages_in: AtomicU64,
    /// MSG deliveries sent to recipients (a redelivery counts again).
    pub messages_out: AtomicU64,
    /// SENDs refused because the queue was full.
    pub messages_over_quota: AtomicU64,
    /// Messages removed by expiry.
    pub messages_expired: AtomicU64,
    pub queues_created: AtomicU64,
    pub queues_deleted: AtomicU64,
    /// Connections accepted (past the connection cap).
    pub connections_total: AtomicU64,
    /// Connections open now (gauge).
    pub connections_open: AtomicU64,
    /// Connections closed at once because the cap was reached.
    pub connections_refused: AtomicU64,
    /// Connections dropped for a slow block, idleness or a failed handshake.
    pub connections_timed_out: AtomicU64,
    /// Commands answered with AUTH.
    pub auth_failures: AtomicU64,
    /// Ed25519 signatures verified to authorise a command: one per command that names a
    /// queue or channel, whether it exists (its key) or not (the dummy key), so this counts
    /// up by the same amount for unknown ids as for wrong signatures.
    pub signatures_verified: AtomicU64,
    /// Blocks or transmissions that did not parse.
    pub malformed: AtomicU64,
    /// Subscriptions moved to another connection (END sent).
    pub subscriptions_ended: AtomicU64,
    /// As a proxy: PFWDs relayed to a destination and answered by it.
    pub forwarded_out: AtomicU64,
    /// As a destination: forwarded (RFWD) transmissions opened and run.
    pub forwarded_in: AtomicU64,
    /// PRXY/PFWD that failed to reach a destination, and RFWDs refused (undecryptable,
    /// replayed).
    pub forward_failures: AtomicU64,
    /// Credit units taken by the operator's registry for capacity paid here.
    pub credits_earned_units: AtomicU64,
    /// PAYs the operator's registry refused (what they provisioned was cancelled).
    pub payments_refused: AtomicU64,
    /// Commands refused with ERR LIMIT ([`crate::limits`]).
    pub limited: AtomicU64,
    /// As a proxy: PRXYs whose destination resolved only to refused addresses
    /// ([`crate::destination`]); answered as unreachable, without a connection attempt.
    pub destinations_refused: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub messages_in: u64,
    pub messages_out: u64,
    pub messages_over_quota: u64,
    pub messages_expired: u64,
    pub queues_created: u64,
    pub queues_deleted: u64,
    pub connections_total: u64,
    pub connections_open: u64,
    pub connections_refused: u64,
    pub connections_timed_out: u64,
    pub auth_failures: u64,
    pub signatures_verified: u64,
    pub malformed: u64,
    pub subscriptions_ended: u64,
    pub forwarded_out: u64,
    pub forwarded_in: u64,
    pub forward_failures: u64,
    pub credits_earned_units: u64,
    pub payments_refused: u64,
    pub limited: u64,
    pub destinations_refused: u64,
}

pub(crate) fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl RelayStats {
    pub fn snapshot(&self) -> StatsSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            messages_in: g(&self.messages_in),
            messages_out: g(&self.messages_out),
            messages_over_quota: g(&self.messages_over_quota),
            messages_expired: g(&self.messages_expired),
            queues_created: g(&self.queues_created),
            queues_deleted: g(&self.queues_deleted),
            connections_total: g(&self.connections_total),
            connections_open: g(&self.connections_open),
            connections_refused: g(&self.connections_refused),
            connections_timed_out: g(&self.connections_timed_out),
            auth_failures: g(&self.auth_failures),
            signatures_verified: g(&self.signatures_verified),
            malformed: g(&self.malformed),
            subscriptions_ended: g(&self.subscriptions_ended),
            forwarded_out: g(&self.forwarded_out),
            forwarded_in: g(&self.forwarded_in),
            forward_failures: g(&self.forward_failures),
            credits_earned_units: g(&self.credits_earned_units),
            payments_refused: g(&self.payments_refused),
            limited: g(&self.limited),
            destinations_refused: g(&self.destinations_refused),
        }
    }
}
