//! A relay session that outlives its connection: when the connection drops, the session
//! reconnects with exponential backoff and subscribes again to every queue it had
//! subscribed, so a recipient keeps receiving across a relay restart or a network blip
//! (issue 14, "Clients survive relay failures").
//!
//! Nothing already accepted is lost by this: the relay keeps a message until its recipient
//! acknowledges it, and a new SUB hands over the oldest unacknowledged one again (the
//! [`SessionEvent::Relay`] `Message` after a [`SessionEvent::Reconnected`] may therefore be
//! one that was delivered before the drop but not yet acknowledged: a message's `msg_id`
//! tells a repeat). What the session cannot do alone is leave a relay that stays down: after
//! [`ReconnectPolicy::down_after`] of failed attempts it says so with
//! [`SessionEvent::Down`] (and keeps trying), which is the app's cue to move the queue to
//! another relay and tell its contact over the channel that still works.
//!
//! Backoff is counted in the delays the session itself waits (doubling from
//! `initial_backoff` up to `max_backoff`, each scaled by a random factor in [½, 1] from the
//! config's entropy so clients that lost the same relay do not return in step), so tests
//! run it under tokio's paused clock; nothing reads the wall clock.

use crate::{lock, Client, ClientConfig, ClientError, Event, Events, RecipientQueue};
use smpx_relay_protocol::crypto::Delivered;
use smpx_relay_protocol::EntityId;
use smpx_relay_transport::RelayAddress;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// How a session retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReconnectPolicy {
    /// The first wait after a failed attempt.
    pub initial_backoff: Duration,
    /// Waits double up to this.
    pub max_backoff: Duration,
    /// After waiting this long in all without a connection, [`SessionEvent::Down`].
    pub down_after: Duration,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        ReconnectPolicy {
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(30),
            down_after: Duration::from_secs(300),
        }
    }
}

/// What a session tells its owner.
#[derive(Debug)]
pub enum SessionEvent {
    /// What the relay pushed on the current connection (never [`Event::Closed`]: a closed
    /// connection is [`SessionEvent::Disconnected`]).
    Relay(Event),
    /// The connection dropped; the session is reconnecting.
    Disconnected,
    /// Connected again after `attempts` tries; `resubscribed` queues are subscribed again
    /// (the ones that failed to are in `failed`, with the relay's answer).
    Reconnected {
        attempts: u32,
        resubscribed: usize,
        failed: Vec<(EntityId, String)>,
    },
    /// No connection for [`ReconnectPolicy::down_after`]: still retrying, but this relay is
    /// down for now.
    Down { attempts: u32 },
    /// The session was closed ([`Session::close`]); no more events.
    Closed,
}

/// The session's events, in order.
#[derive(Debug)]
pub struct SessionEvents(mpsc::UnboundedReceiver<SessionEvent>);

impl SessionEvents {
    /// The next event; `None` after [`SessionEvent::Closed`].
    pub async fn next(&mut self) -> Option<SessionEvent> {
        self.0.recv().await
    }
}

struct Inner {
    /// The live connection, `None` while reconnecting.
    current: watch::Sender<Option<Client>>,
    /// Queues to subscribe again after a reconnection, by recipient id.
    subscriptions: Mutex<HashMap<EntityId, RecipientQueue>>,
    stop: watch::Sender<bool>,
}

/// A connection to one relay that reconnects by itself. Clones share it; dropping every
/// clone (or [`Session::close`]) ends it.
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("connected", &self.inner.current.borrow().is_some())
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Connects to the relay at `address` (pinned TLS, as [`crate::connect_tls`]); the
    /// first connection must succeed (a relay down from the start is the caller's to
    /// replace), later ones are retried under `policy`.
    pub async fn open(
        address: RelayAddress,
        config: ClientConfig,
        policy: ReconnectPolicy,
    ) -> Result<(Session, SessionEvents), ClientError> {
        let (client, events) = crate::connect_tls(&address, config.clone()).await?;
        let (current, _) = watch::channel(Some(client));
        let (stop, stop_rx) = watch::channel(false);
        let inner = Arc::new(Inner {
            current,
            subscriptions: Mutex::new(HashMap::new()),
            stop,
        });
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(supervise(
            Arc::downgrade(&inner),
            address,
            config,
            policy,
            events,
            tx,
            stop_rx,
        ));
        Ok((Session { inner }, SessionEvents(rx)))
    }

    /// The live connection, or [`ClientError::Closed`] while the session is reconnecting.
    pub fn client(&self) -> Result<Client, ClientError> {
        self.inner
            .current
            .borrow()
            .clone()
            .ok_or(ClientError::Closed)
    }

    /// Whether a connection is live now.
    pub fn is_connected(&self) -> bool {
        self.inner.current.borrow().is_some()
    }

    /// Waits until a connection is live (at once if one is) and returns it; `None` if the
    /// session was closed meanwhile.
    pub async fn connected(&self) -> Option<Client> {
        let mut rx = self.inner.current.subscribe();
        let mut stopped = self.inner.stop.subscribe();
        tokio::select! {
            r = rx.wait_for(Option::is_some) => r.ok().and_then(|c| c.clone()),
            _ = stopped.wait_for(|s| *s) => None,
        }
    }

    /// SUB on the live connection, remembered so it is made again after a reconnection.
    /// Returns the oldest message, if any, as [`Client::subscribe`] does.
    pub async fn subscribe(&self, q: &RecipientQueue) -> Result<Option<Delivered>, ClientError> {
        lock(&self.inner.subscriptions).insert(q.recipient_id, q.clone());
        self.client()?.subscribe(q).await
    }

    /// Stops re-subscribing `queue` (after deleting it, or moving it elsewhere).
    pub fn forget(&self, queue: &EntityId) {
        lock(&self.inner.subscriptions).remove(queue);
    }

    /// Queues the session subscribes again after a reconnection.
    pub fn subscribed(&self) -> usize {
        lock(&self.inner.subscriptions).len()
    }

    /// Ends the session: the connection closes and [`SessionEvent::Closed`] is the last event.
    pub fn close(&self) {
        let _ = self.inner.stop.send(true);
        self.inner.current.send_replace(None);
    }
}

/// The wait before attempt `attempt + 1` (1-based `attempt`): the doubled backoff, capped,
/// scaled into [½, 1] by `jitter` (a fraction in [0, 1]).
pub fn backoff(policy: &ReconnectPolicy, attempt: u32, jitter: f64) -> Duration {
    let doubled = policy
        .initial_backoff
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let capped = doubled.min(policy.max_backoff);
    capped.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

async fn supervise(
    inner: Weak<Inner>,
    address: RelayAddress,
    config: ClientConfig,
    policy: ReconnectPolicy,
    mut events: Events,
    tx: mpsc::UnboundedSender<SessionEvent>,
    mut stop: watch::Receiver<bool>,
) {
    'session: loop {
        // Connected: pass the relay's events on until the connection closes.
        loop {
            tokio::select! {
                e = events.next() => match e {
                    Some(Event::Closed) | None => break,
                    Some(e) => {
                        let _ = tx.send(SessionEvent::Relay(e));
                    }
                },
                _ = stop.wait_for(|s| *s) => break 'session,
            }
        }
        if *stop.borrow() {
            break;
        }
        let Some(held) = inner.upgrade() else {
            break;
        };
        held.current.send_replace(None);
        drop(held);
        let _ = tx.send(SessionEvent::Disconnected);

        // Reconnecting.
        let mut attempts = 0u32;
        let mut waited = Duration::ZERO;
        let mut down_told = false;
        loop {
            if *stop.borrow() {
                break 'session;
            }
            attempts += 1;
            match crate::connect_tls(&address, config.clone()).await {
                Ok((client, new_events)) => {
                    let Some(held) = inner.upgrade() else {
                        break 'session;
                    };
                    let queues: Vec<RecipientQueue> =
                        lock(&held.subscriptions).values().cloned().collect();
                    let mut resubscribed = 0;
                    let mut failed = Vec::new();
                    let mut first = Vec::new();
                    for q in &queues {
                        match client.subscribe(q).await {
                            Ok(m) => {
                                resubscribed += 1;
                                if let Some(message) = m {
                                    first.push(Event::Message {
                                        queue: q.recipient_id,
                                        message,
                                    });
                                }
                            }
                            Err(e) => failed.push((q.recipient_id, e.to_string())),
                        }
                    }
                    held.current.send_replace(Some(client));
                    drop(held);
                    let _ = tx.send(SessionEvent::Reconnected {
                        attempts,
                        resubscribed,
                        failed,
                    });
                    for e in first {
                        let _ = tx.send(SessionEvent::Relay(e));
                    }
                    events = new_events;
                    continue 'session;
                }
                Err(_) => {
                    let jitter = f64::from(config.entropy.bytes::<4>()[0]) / 255.0;
                    let wait = backoff(&policy, attempts, jitter);
                    waited += wait;
                    if waited >= policy.down_after && !down_told {
                        down_told = true;
                        let _ = tx.send(SessionEvent::Down { attempts });
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stop.wait_for(|s| *s) => break 'session,
                    }
                }
            }
        }
    }
    if let Some(held) = inner.upgrade() {
        held.current.send_replace(None);
    }
    let _ = tx.send(SessionEvent::Closed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_jitter_stays_within_half() {
        let p = ReconnectPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            down_after: Duration::from_secs(10),
        };
        let full = |a| backoff(&p, a, 1.0);
        assert_eq!(full(1), Duration::from_millis(100));
        assert_eq!(full(2), Duration::from_millis(200));
        assert_eq!(full(4), Duration::from_millis(800));
        assert_eq!(full(5), Duration::from_secs(1));
        assert_eq!(full(u32::MAX), Duration::from_secs(1));
        assert_eq!(backoff(&p, 1, 0.0), Duration::from_millis(50));
        assert_eq!(backoff(&p, 1, 7.0), Duration::from_millis(100));
    }
}
