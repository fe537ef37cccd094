//! The directory's prober against real parts: a relay node from the test kit, a closed port, a
//! listener that never speaks TLS, a real relay under a wrong pin, and a relay that completes
//! TLS (with a real identity and the real acceptor) but drops queue traffic.
//!
//! Timeouts are judged under tokio's paused clock where the only socket IO before the limit is
//! the TCP connect (a silent listener): nothing then races the clock. Where a TLS handshake or
//! a real relay sits before the limit, the clock runs: under a paused clock tokio jumps to the
//! next timer whenever the runtime waits for a socket, so a multi-round-trip TLS handshake
//! (or the relay's store, on a blocking thread) could see its own deadline pass spuriously.
//! Those tests use short real limits on the step that must time out and generous ones elsewhere.

use smpx_os::{ManualClock, SeededEntropy};
use smpx_relay_client::probe::{
    probe, probe_many, probe_stream, FailureKind, Observation, ProbeConfig, Stage, Step,
};
use smpx_relay_transport::{RelayAddress, RelayHost, RelayIdentity};
use smpx_testkit::relay::{DroppingRelay, RunningNode};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(5);

fn config() -> ProbeConfig {
    ProbeConfig {
        connect_timeout: LIMIT,
        tls_timeout: LIMIT,
        protocol_timeout: Duration::from_secs(10),
        ..ProbeConfig::default()
    }
}

async fn relay(dir: &tempfile::TempDir) -> RunningNode {
    smpx_testkit::relay::start(dir.path(), None).await.unwrap()
}

fn loopback(fingerprint: smpx_relay_transport::CaFingerprint, port: u16) -> RelayAddress {
    RelayAddress {
        fingerprint,
        host: RelayHost::Ipv4(Ipv4Addr::LOCALHOST),
        port,
    }
}

/// A port nothing listens on, held by a bound (never listening) socket so no one else takes
/// it while the test runs.
fn closed_port() -> (tokio::net::TcpSocket, u16) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((Ipv4Addr::LOCALHOST, 0).into()).unwrap();
    let port = socket.local_addr().unwrap().port();
    (socket, port)
}

/// A fingerprint of a real CA that no relay here uses.
fn other_fingerprint() -> smpx_relay_transport::CaFingerprint {
    let dir = tempfile::tempdir().unwrap();
    RelayIdentity::create(dir.path()).unwrap().fingerprint()
}

/// A TCP listener that accepts connections, holds them and never says a byte; counts what it
/// accepted.
async fn silent_listener() -> (u16, Arc<AtomicUsize>, tokio::sync::watch::Receiver<usize>) {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = tokio::sync::watch::channel(0);
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            tx.send_replace(n);
        }
    });
    (port, accepted, rx)
}

fn failure(o: &Observation) -> (Stage, Option<Step>, FailureKind) {
    let f = o.failure.as_ref().expect("the probe should have failed");
    (f.stage, f.step, f.kind)
}

#[tokio::test]
async fn a_real_relay_is_up_with_every_latency() {
    let dir = tempfile::tempdir().unwrap();
    let node = relay(&dir).await;
    let clock = Arc::new(ManualClock::new(1_800_000_000));
    let config = ProbeConfig {
        clock: clock.clone(),
        entropy: Arc::new(SeededEntropy::new(7)),
        ..config()
    };
    let o = probe(node.address(), &config).await;
    assert!(o.up(), "{o:?}");
    assert_eq!(o.reached(), Stage::Protocol);
    assert_eq!(o.at, 1_800_000_000, "stamped by the injected clock");
    let l = &o.latencies;
    let parts = [l.tcp, l.tls, l.hello, l.create, l.round_trip, l.protocol];
    assert!(parts.iter().all(Option::is_some), "{l:?}");
    assert!(l.total >= l.tcp.unwrap() + l.tls.unwrap() + l.protocol.unwrap());
    assert!(l.protocol.unwrap() >= l.hello.unwrap() + l.create.unwrap() + l.round_trip.unwrap());
    assert!(o.latency_ms().unwrap() < 10_000);
    // A real round trip went through the relay, and the probe left nothing behind.
    let stats = node.relay().stats().snapshot();
    assert_eq!(stats.connections_total, 1);
    assert_eq!((stats.queues_created, stats.queues_deleted), (1, 1));
    assert_eq!((stats.messages_in, stats.messages_out), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_closed_port_is_refused_at_tcp() {
    let (_held, port) = closed_port();
    let o = probe(&loopback(other_fingerprint(), port), &config()).await;
    assert_eq!(
        failure(&o),
        (Stage::Tcp, None, FailureKind::Refused),
        "{o:?}"
    );
    assert_eq!(o.reached(), Stage::Tcp);
    assert!(o.latencies.tcp.is_some() && o.latencies.tls.is_none());
    assert_eq!(o.latency_ms(), None);
}

#[tokio::test(start_paused = true)]
async fn a_listener_that_never_speaks_tls_times_out_at_tls() {
    let (port, accepted, _) = silent_listener().await;
    let o = probe(&loopback(other_fingerprint(), port), &config()).await;
    assert_eq!(
        failure(&o),
        (Stage::Tls, None, FailureKind::Timeout),
        "{o:?}"
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    // The TLS stage took exactly its limit (the paused clock), and no protocol was tried.
    assert_eq!(o.latencies.tls, Some(LIMIT));
    assert_eq!(o.latencies.protocol, None);
}

#[tokio::test]
async fn a_real_relay_under_a_wrong_pin_is_a_fingerprint_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let node = relay(&dir).await;
    let wrong = RelayAddress {
        fingerprint: other_fingerprint(),
        ..node.address().clone()
    };
    let o = probe(&wrong, &config()).await;
    assert_eq!(
        failure(&o),
        (Stage::Tls, None, FailureKind::FingerprintMismatch),
        "{o:?}"
    );
    // The same relay under its own pin is up: the pin, not the relay, failed.
    assert!(probe(node.address(), &config()).await.up());
}

#[tokio::test]
async fn a_relay_that_completes_tls_but_drops_queue_traffic_is_down_at_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let dropping = DroppingRelay::start(dir.path()).await.unwrap();
    // It passes what a TLS check or a PING would judge by.
    let (client, _events) = smpx_relay_client::connect_tls(
        dropping.address(),
        smpx_relay_client::ClientConfig {
            ping_interval: None,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    client.ping().await.unwrap();
    drop(client);

    let config = ProbeConfig {
        protocol_timeout: Duration::from_millis(500),
        ..config()
    };
    let o = probe(dropping.address(), &config).await;
    assert_eq!(
        failure(&o),
        (
            Stage::Protocol,
            Some(Step::Create),
            FailureKind::QueueTrafficDropped
        ),
        "{o:?}"
    );
    assert!(o.latencies.tls.is_some() && o.latencies.hello.is_some());
    assert!(o.latencies.protocol.unwrap() >= Duration::from_millis(500));
    assert_eq!(dropping.dropped(), 1, "the NEW was read and dropped");
}

/// `concurrency` probes at once and no more, seen from the far end: the listener's accepted
/// connections, while every probe in flight waits for a TLS answer that never comes.
#[tokio::test(start_paused = true)]
async fn probe_stream_keeps_at_most_concurrency_probes_in_flight() {
    let (port, accepted, mut accepts) = silent_listener().await;
    let target = loopback(other_fingerprint(), port);
    let mut results = probe_stream(vec![target; 7], &config(), 3);
    let mut seen = Vec::new();
    // Three batches: 3, 3, then 1 probe, each started only when the one before timed out.
    for (open, done) in [(3, 0), (6, 3), (7, 6)] {
        accepts.wait_for(|n| *n >= open).await.unwrap();
        // Half a TLS limit on: every connection that was going to open before the next
        // timeout has, and none is more than the bound allows.
        tokio::time::sleep(LIMIT / 2).await;
        assert_eq!(accepted.load(Ordering::SeqCst), open);
        assert_eq!(seen.len(), done);
        assert!(
            results.try_recv().is_err(),
            "no probe of this batch can have finished"
        );
        for _ in seen.len()..open {
            let (i, o) = results.recv().await.unwrap();
            assert_eq!(failure(&o), (Stage::Tls, None, FailureKind::Timeout));
            seen.push(i);
        }
    }
    assert!(results.recv().await.is_none());
    seen.sort_unstable();
    assert_eq!(seen, (0..7).collect::<Vec<_>>());
}

/// A dead relay holds its slot for its limit and no one else's: the refused targets behind it
/// finish while it still waits.
#[tokio::test(start_paused = true)]
async fn a_slow_target_does_not_hold_up_the_others() {
    let (silent, _, _) = silent_listener().await;
    let (_held, closed) = closed_port();
    let fp = other_fingerprint();
    let mut targets = vec![loopback(fp, silent)];
    targets.extend((0..3).map(|_| loopback(fp, closed)));
    let start = tokio::time::Instant::now();
    let mut results = probe_stream(targets, &config(), 2);
    let mut order = Vec::new();
    while let Some((i, _)) = results.recv().await {
        order.push(i);
    }
    assert_eq!(
        order.last(),
        Some(&0),
        "the silent target finishes last: {order:?}"
    );
    assert_eq!(order.len(), 4);
    // The round took the slow target's limits (its TCP connect is instant), no more.
    assert!(start.elapsed() < config().connect_timeout + LIMIT + LIMIT);
}

/// A mix, collected in the order given, each judged as on its own.
#[tokio::test]
async fn probe_many_judges_a_mix_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let node = relay(&dir).await;
    let dropping_dir = tempfile::tempdir().unwrap();
    let dropping = DroppingRelay::start(dropping_dir.path()).await.unwrap();
    let (_held, closed) = closed_port();
    let targets = vec![
        node.address().clone(),
        loopback(other_fingerprint(), closed),
        dropping.address().clone(),
        RelayAddress {
            fingerprint: other_fingerprint(),
            ..node.address().clone()
        },
        node.address().clone(),
    ];
    let config = ProbeConfig {
        protocol_timeout: Duration::from_secs(1),
        ..config()
    };
    let results = probe_many(targets.clone(), &config, 2).await;
    let got: Vec<_> = results.iter().map(|(t, _)| t.clone()).collect();
    assert_eq!(got, targets);
    let kinds: Vec<_> = results
        .iter()
        .map(|(_, o)| o.failure.as_ref().map(|f| f.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            None,
            Some(FailureKind::Refused),
            Some(FailureKind::QueueTrafficDropped),
            Some(FailureKind::FingerprintMismatch),
            None
        ]
    );
}

#[test]
fn failure_kinds_have_stable_names() {
    let names: Vec<_> = FailureKind::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "refused",
            "unreachable",
            "timeout",
            "fingerprint_mismatch",
            "certificate_rejected",
            "tls",
            "closed",
            "protocol",
            "relay_error",
            "queue_traffic_dropped"
        ]
    );
    for k in FailureKind::ALL {
        assert_eq!(FailureKind::parse(k.as_str()), Some(k));
    }
    assert_eq!(FailureKind::parse("down"), None);
}
