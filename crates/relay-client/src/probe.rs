//! Active probes of relays, as the directory runs them: is the relay at this address up, and
//! how fast does it answer?
//!
//! A relay counts as up only if it does what a client needs, so [`probe`] goes the whole way
//! a client does, in three [`Stage`]s with a time limit each:
//!
//! 1. **TCP**: open the connection ([`smpx_relay_transport::connect_tcp`]).
//! 2. **TLS**: the handshake pinned to the address's CA fingerprint, over that connection,
//!    with the transport's connector exactly as [`crate::connect_tls`] uses it
//!    ([`smpx_relay_transport::connect_over`]): a relay whose certificate is not the pinned
//!    one is down, whatever else it answers.
//! 3. **Protocol**: the version handshake, then a throw-away queue's round trip: NEW, SUB,
//!    an unsigned SEND of random bytes, the pushed MSG that must open with the queue's key
//!    and carry exactly those bytes, ACK, DEL. A relay that completes TLS (even one that
//!    answers PING) but drops, loses or mangles queue traffic is **down** at this stage.
//!
//! Why a queue and not a PING: PING needs no state, no store and no delivery path; a relay
//! with a wedged store or a broken delivery loop still answers it. The round trip costs the
//! relay one free-tier queue for the few milliseconds of the probe (NEW needs no payment: the
//! free tier's quota is 128 messages) and the probe deletes it, so nothing stays behind. It
//! does count against the relay's per-address creation limit (a token bucket of 1,000 an
//! hour by default): one queue per probe, so a directory probing a relay every minute uses
//! 60 of them.
//!
//! [`probe_many`] and [`probe_stream`] run many probes with at most `concurrency` in flight:
//! a dead relay holds its slot for its time limits and no longer, and never delays a probe
//! already running.
//!
//! Latencies are measured on tokio's monotonic clock (so tests under a paused clock see exact
//! values); the wall time an observation is stamped with comes from [`ProbeConfig::clock`],
//! the queue keys and the message from [`ProbeConfig::entropy`] (ARCHITECTURE, "Time and
//! randomness").

use crate::{Client, ClientConfig, ClientError, Event, Events, RecipientQueue};
use smpx_os::{Clock, Entropy, OsEntropy, SystemClock};
use smpx_relay_protocol::crypto::Content;
use smpx_relay_transport::{self as transport, CertRejection, RelayAddress, TransportError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;

/// The limits of one probe, and its clock and randomness.
#[derive(Clone, Debug)]
pub struct ProbeConfig {
    /// Opening the TCP connection, name resolution included.
    pub connect_timeout: Duration,
    /// The TLS handshake.
    pub tls_timeout: Duration,
    /// The whole protocol stage: version handshake and the queue's round trip. One bound for
    /// all of it, so a relay that answers each command just in time cannot stretch a probe.
    pub protocol_timeout: Duration,
    /// Stamps each [`Observation::at`].
    pub clock: Arc<dyn Clock>,
    /// The probe queue's keys, correlation ids and the message sent.
    pub entropy: Arc<dyn Entropy>,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            tls_timeout: Duration::from_secs(5),
            protocol_timeout: Duration::from_secs(10),
            clock: Arc::new(SystemClock),
            entropy: Arc::new(OsEntropy),
        }
    }
}

impl ProbeConfig {
    /// The longest one probe can take: the sum of its stages' limits.
    pub fn max_duration(&self) -> Duration {
        self.connect_timeout + self.tls_timeout + self.protocol_timeout
    }

    fn client_config(&self) -> ClientConfig {
        let t = self.protocol_timeout;
        ClientConfig {
            handshake_timeout: t,
            block_deadline: t,
            write_deadline: t,
            request_timeout: t,
            ping_interval: None,
            idle_timeout: t,
            clock: self.clock.clone(),
            entropy: self.entropy.clone(),
        }
    }
}

/// The stages of a probe, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    Tcp,
    Tls,
    Protocol,
}

impl Stage {
    /// A stable name, for storing and for metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Tcp => "tcp",
            Stage::Tls => "tls",
            Stage::Protocol => "protocol",
        }
    }
}

/// The steps of the protocol stage, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Step {
    /// The relay's hello and our version.
    Hello,
    /// NEW.
    Create,
    /// SUB.
    Subscribe,
    /// SEND.
    Send,
    /// Waiting for the pushed MSG.
    Receive,
    /// ACK.
    Ack,
    /// DEL.
    Delete,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Hello => "hello",
            Step::Create => "create",
            Step::Subscribe => "subscribe",
            Step::Send => "send",
            Step::Receive => "receive",
            Step::Ack => "ack",
            Step::Delete => "delete",
        }
    }
}

/// Why a probe failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// Nothing listens: the TCP connection was refused.
    Refused,
    /// The connection could not be opened for another reason (no route, name not found).
    Unreachable,
    /// A stage did not finish within its limit (at the protocol stage: no hello).
    Timeout,
    /// The relay presented a CA certificate other than the pinned one.
    FingerprintMismatch,
    /// The pinned CA, but a chain the client refuses (expired online certificate, not signed
    /// by the CA, wrong length).
    CertificateRejected,
    /// Another TLS failure (an alert, no TLS 1.3, no `smpx/1`, the peer hung up mid-handshake).
    Tls,
    /// The relay closed the connection during the protocol stage.
    Closed,
    /// The relay spoke, but not the protocol: a bad hello, no common version, an answer
    /// that does not fit the command, a delivery that does not open or is not what was sent.
    Protocol,
    /// The relay refused a command of the round trip with ERR (e.g. `LIMIT`).
    RelayError,
    /// The session was up but queue traffic went unanswered or undelivered in time: the
    /// relay drops it.
    QueueTrafficDropped,
}

impl FailureKind {
    /// A stable name, for storing and for metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Refused => "refused",
            FailureKind::Unreachable => "unreachable",
            FailureKind::Timeout => "timeout",
            FailureKind::FingerprintMismatch => "fingerprint_mismatch",
            FailureKind::CertificateRejected => "certificate_rejected",
            FailureKind::Tls => "tls",
            FailureKind::Closed => "closed",
            FailureKind::Protocol => "protocol",
            FailureKind::RelayError => "relay_error",
            FailureKind::QueueTrafficDropped => "queue_traffic_dropped",
        }
    }

    /// The kind named by [`FailureKind::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub const ALL: [FailureKind; 10] = [
        FailureKind::Refused,
        FailureKind::Unreachable,
        FailureKind::Timeout,
        FailureKind::FingerprintMismatch,
        FailureKind::CertificateRejected,
        FailureKind::Tls,
        FailureKind::Closed,
        FailureKind::Protocol,
        FailureKind::RelayError,
        FailureKind::QueueTrafficDropped,
    ];
}

/// Where and why a probe failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub stage: Stage,
    /// The protocol step, at [`Stage::Protocol`].
    pub step: Option<Step>,
    pub kind: FailureKind,
    /// The error as text, for operators (no secrets: addresses and error messages only).
    pub detail: String,
}

/// How long each part took. A stage not reached is `None`; a failed stage's time is the time
/// until it failed (a timeout's is its limit).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Latencies {
    pub tcp: Option<Duration>,
    pub tls: Option<Duration>,
    /// The protocol's version handshake.
    pub hello: Option<Duration>,
    /// NEW to IDS.
    pub create: Option<Duration>,
    /// SEND until the message was delivered (pushed, opened and checked): the latency a
    /// message sees through this relay.
    pub round_trip: Option<Duration>,
    /// The whole protocol stage, hello to DEL.
    pub protocol: Option<Duration>,
    /// The whole probe.
    pub total: Duration,
}

/// Whole milliseconds, rounded to the nearest (what `smpx_core::rules::measure` takes).
pub fn millis(d: Duration) -> u32 {
    u32::try_from((d.as_micros() + 500) / 1000).unwrap_or(u32::MAX)
}

/// One probe's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    /// When the probe began, Unix seconds ([`ProbeConfig::clock`]).
    pub at: u64,
    /// `None`: the relay is up.
    pub failure: Option<Failure>,
    pub latencies: Latencies,
}

impl Observation {
    /// Every stage passed.
    pub fn up(&self) -> bool {
        self.failure.is_none()
    }

    /// The stage the probe failed at, or [`Stage::Protocol`] (the last) when it is up.
    pub fn reached(&self) -> Stage {
        self.failure.as_ref().map_or(Stage::Protocol, |f| f.stage)
    }

    /// The relay's latency for the directory's figures: the message round trip (SEND to
    /// delivery) in ms, when up.
    pub fn latency_ms(&self) -> Option<u32> {
        self.up()
            .then_some(self.latencies.round_trip)
            .flatten()
            .map(millis)
    }
}

fn failure(stage: Stage, step: Option<Step>, kind: FailureKind, detail: String) -> Failure {
    Failure {
        stage,
        step,
        kind,
        detail,
    }
}

fn tcp_failure(e: &TransportError) -> Failure {
    let kind = match e {
        TransportError::ConnectTimeout(_) => FailureKind::Timeout,
        TransportError::Connect { source, .. }
            if source.kind() == std::io::ErrorKind::ConnectionRefused =>
        {
            FailureKind::Refused
        }
        _ => FailureKind::Unreachable,
    };
    failure(Stage::Tcp, None, kind, e.to_string())
}

fn tls_failure(e: &TransportError) -> Failure {
    let kind = match e {
        TransportError::HandshakeTimeout => FailureKind::Timeout,
        TransportError::CertificateRejected(CertRejection::FingerprintMismatch { .. }) => {
            FailureKind::FingerprintMismatch
        }
        TransportError::CertificateRejected(_) => FailureKind::CertificateRejected,
        _ => FailureKind::Tls,
    };
    failure(Stage::Tls, None, kind, e.to_string())
}

/// A client error at `step` of the protocol stage.
fn protocol_failure(step: Step, e: &ClientError) -> Failure {
    let kind = match e {
        ClientError::Timeout | ClientError::Frame(crate::FrameError::Idle)
            if step == Step::Hello =>
        {
            FailureKind::Timeout
        }
        ClientError::Timeout
        | ClientError::Frame(crate::FrameError::Idle | crate::FrameError::Deadline) => {
            FailureKind::QueueTrafficDropped
        }
        ClientError::Closed
        | ClientError::Frame(crate::FrameError::Closed | crate::FrameError::Truncated) => {
            FailureKind::Closed
        }
        ClientError::Relay(_) => FailureKind::RelayError,
        _ => FailureKind::Protocol,
    };
    failure(Stage::Protocol, Some(step), kind, e.to_string())
}

/// Probes the relay at `target` (see the module docs). Never fails: every failure is an
/// [`Observation`] saying where and why.
pub async fn probe(target: &RelayAddress, config: &ProbeConfig) -> Observation {
    let at = config.clock.now();
    let start = Instant::now();
    let mut latencies = Latencies::default();
    let failure = run(target, config, &mut latencies).await.err();
    latencies.total = start.elapsed();
    Observation {
        at,
        failure,
        latencies,
    }
}

async fn run(
    target: &RelayAddress,
    config: &ProbeConfig,
    latencies: &mut Latencies,
) -> Result<(), Failure> {
    let t = Instant::now();
    let tcp = transport::connect_tcp(target, config.connect_timeout).await;
    latencies.tcp = Some(t.elapsed());
    let tcp = tcp.map_err(|e| tcp_failure(&e))?;

    let t = Instant::now();
    let tls = transport::connect_over(tcp, target, config.tls_timeout).await;
    latencies.tls = Some(t.elapsed());
    let (tls, session_id) = tls.map_err(|e| tls_failure(&e))?;

    let t = Instant::now();
    let mut step = Step::Hello;
    let round = tokio::time::timeout(
        config.protocol_timeout,
        round_trip(tls, session_id, config, &mut step, latencies),
    )
    .await;
    latencies.protocol = Some(t.elapsed());
    match round {
        Ok(r) => r,
        Err(_) => {
            let kind = if step == Step::Hello {
                FailureKind::Timeout
            } else {
                FailureKind::QueueTrafficDropped
            };
            Err(failure(
                Stage::Protocol,
                Some(step),
                kind,
                format!("no answer within {:?}", config.protocol_timeout),
            ))
        }
    }
}

/// The protocol stage; `step` is kept current so a timeout around it can say where it hung.
async fn round_trip(
    tls: transport::ClientTlsStream<tokio::net::TcpStream>,
    session_id: transport::SessionId,
    config: &ProbeConfig,
    step: &mut Step,
    latencies: &mut Latencies,
) -> Result<(), Failure> {
    let t = Instant::now();
    let (client, mut events) = Client::connect(tls, session_id, config.client_config())
        .await
        .map_err(|e| protocol_failure(Step::Hello, &e))?;
    latencies.hello = Some(t.elapsed());

    *step = Step::Create;
    let t = Instant::now();
    let queue = client
        .create_queue()
        .await
        .map_err(|e| protocol_failure(Step::Create, &e))?;
    latencies.create = Some(t.elapsed());

    *step = Step::Subscribe;
    let pending = client
        .subscribe(&queue)
        .await
        .map_err(|e| protocol_failure(Step::Subscribe, &e))?;
    if pending.is_some() {
        return Err(failure(
            Stage::Protocol,
            Some(Step::Subscribe),
            FailureKind::Protocol,
            "a message in a queue just created".into(),
        ));
    }

    // Random bytes: a relay cannot answer with a message it kept from an earlier probe.
    let body: [u8; 32] = config.entropy.bytes();
    *step = Step::Send;
    let t = Instant::now();
    client
        .send(&queue.sender_id, None, &body)
        .await
        .map_err(|e| protocol_failure(Step::Send, &e))?;

    *step = Step::Receive;
    let msg_id = receive(&queue, &mut events, &body).await?;
    latencies.round_trip = Some(t.elapsed());

    *step = Step::Ack;
    let next = client
        .ack(&queue, &msg_id)
        .await
        .map_err(|e| protocol_failure(Step::Ack, &e))?;
    if next.is_some() {
        return Err(failure(
            Stage::Protocol,
            Some(Step::Ack),
            FailureKind::Protocol,
            "a second message in the probe queue".into(),
        ));
    }

    *step = Step::Delete;
    client
        .delete(&queue)
        .await
        .map_err(|e| protocol_failure(Step::Delete, &e))?;
    Ok(())
}

/// Waits for the probe message to be pushed; its id, if it is exactly what was sent.
async fn receive(
    queue: &RecipientQueue,
    events: &mut Events,
    body: &[u8],
) -> Result<smpx_relay_protocol::MsgId, Failure> {
    let bad = |detail: &str| {
        failure(
            Stage::Protocol,
            Some(Step::Receive),
            FailureKind::Protocol,
            detail.into(),
        )
    };
    loop {
        match events.next().await {
            Some(Event::Message { queue: id, message }) if id == queue.recipient_id => {
                return match message.content {
                    Content::Body(b) if b == body => Ok(message.msg_id),
                    _ => Err(bad("the delivered message is not the one sent")),
                };
            }
            Some(Event::Undecryptable { .. }) => {
                return Err(bad(
                    "the delivered message does not open with the queue's key",
                ))
            }
            Some(Event::Error(code)) => return Err(bad(&format!("relay error {code}"))),
            Some(Event::Closed) | None => {
                return Err(failure(
                    Stage::Protocol,
                    Some(Step::Receive),
                    FailureKind::Closed,
                    "connection closed before the message was delivered".into(),
                ))
            }
            // Another queue's push or END: not ours (this connection has one queue, but a
            // relay's stray push is not the probe's failure).
            Some(_) => continue,
        }
    }
}

/// Probes every target with at most `concurrency` probes in flight (0 counts as 1) and
/// yields `(index into targets, observation)` as each probe finishes. Probes run as tasks on
/// the current runtime, so a multi-threaded runtime spreads them over its cores. Dropping the
/// receiver starts no further probes.
pub fn probe_stream(
    targets: Vec<RelayAddress>,
    config: &ProbeConfig,
    concurrency: usize,
) -> mpsc::Receiver<(usize, Observation)> {
    let concurrency = concurrency.max(1);
    let (tx, rx) = mpsc::channel(concurrency);
    let config = config.clone();
    tokio::spawn(async move {
        let slots = Arc::new(Semaphore::new(concurrency));
        for (i, target) in targets.into_iter().enumerate() {
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            if tx.is_closed() {
                return;
            }
            let (tx, config) = (tx.clone(), config.clone());
            tokio::spawn(async move {
                let observation = probe(&target, &config).await;
                // The slot is free once the probe is done, not once its result is taken.
                drop(slot);
                let _ = tx.send((i, observation)).await;
            });
        }
    });
    rx
}

/// [`probe_stream`] collected: every target with its observation, in the order given.
pub async fn probe_many(
    targets: Vec<RelayAddress>,
    config: &ProbeConfig,
    concurrency: usize,
) -> Vec<(RelayAddress, Observation)> {
    let mut results: Vec<Option<Observation>> = vec![None; targets.len()];
    let mut rx = probe_stream(targets.clone(), config, concurrency);
    while let Some((i, observation)) = rx.recv().await {
        if let Some(slot) = results.get_mut(i) {
            *slot = Some(observation);
        }
    }
    targets
        .into_iter()
        .zip(results)
        .filter_map(|(t, o)| o.map(|o| (t, o)))
        .collect()
}
