//! Limits against a hostile client, over real TLS connections from 127.0.0.1: queue
//! creation per connection and per source address, bytes held per source address, PRXY
//! per minute, and the destinations a proxy refuses to dial.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::{connect, forwarding_on, relay_err, test_config, tls_relay, TestRelay};
use smpx_os::ManualClock;
use smpx_relay_protocol::command::{Command, Response};
use smpx_relay_protocol::{ErrorCode, ProxyError};
use smpx_relay_server::limits::Limits;
use smpx_relay_server::ServerConfig;
use smpx_relay_transport::{RelayAddress, RelayHost};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// A relay with `limits` on a clock the test moves.
async fn relay_with(limits: Limits) -> (TestRelay, ManualClock) {
    let clock = ManualClock::new(1_000_000);
    let c = clock.clone();
    let r = tls_relay(move |_| ServerConfig {
        limits,
        ..test_config().with_clock(Arc::new(c))
    })
    .await;
    (r, clock)
}

#[tokio::test]
async fn a_connection_over_its_queue_limit_gets_limit_and_keeps_using_its_queues() {
    let (r, _clock) = relay_with(Limits {
        queues_per_connection: 3,
        ..Limits::default()
    })
    .await;
    let (c, _events) = connect(&r).await;
    let mut queues = Vec::new();
    for _ in 0..3 {
        queues.push(c.create_queue().await.unwrap());
    }
    assert_eq!(relay_err(c.create_queue().await), ErrorCode::Limit);
    // Channels are created entities too.
    assert_eq!(relay_err(c.create_channel().await), ErrorCode::Limit);
    // The connection is still open and its queues work.
    for (i, q) in queues.iter().enumerate() {
        c.send(&q.sender_id, None, &[i as u8]).await.unwrap();
        let m = c.get(q).await.unwrap().expect("the message");
        assert_eq!(crate::support::body(&m.content), &[i as u8]);
        c.ack(q, &m.msg_id).await.unwrap();
    }
    c.ping().await.unwrap();
    // Another connection has a limit of its own.
    let (other, _e) = connect(&r).await;
    other.create_queue().await.unwrap();
    let s = r.relay.stats().snapshot();
    assert_eq!(s.limited, 2);
    assert_eq!(s.queues_created, 4);
}

#[tokio::test]
async fn connections_from_one_address_share_its_creation_budget_which_refills() {
    let (r, clock) = relay_with(Limits {
        queues_per_address_per_hour: 4,
        ..Limits::default()
    })
    .await;
    let (a, _ea) = connect(&r).await;
    let (b, _eb) = connect(&r).await;
    for _ in 0..3 {
        a.create_queue().await.unwrap();
    }
    b.create_queue().await.unwrap();
    // Both connections come from 127.0.0.1: the fifth creation is refused on either.
    assert_eq!(relay_err(b.create_queue().await), ErrorCode::Limit);
    assert_eq!(relay_err(a.create_queue().await), ErrorCode::Limit);
    // A new connection does not reset it.
    let (c, _ec) = connect(&r).await;
    assert_eq!(relay_err(c.create_queue().await), ErrorCode::Limit);
    // Four per hour: one more every 15 minutes.
    clock.advance(14 * 60);
    assert_eq!(relay_err(c.create_queue().await), ErrorCode::Limit);
    clock.advance(60);
    c.create_queue().await.unwrap();
    assert_eq!(relay_err(a.create_queue().await), ErrorCode::Limit);
    assert_eq!(r.relay.stats().snapshot().limited, 5);
}

#[tokio::test]
async fn bytes_held_per_address_are_limited_and_freed_by_ack_delete_and_expiry() {
    let (r, clock) = relay_with(Limits {
        stored_bytes_per_address: 3_000,
        ..Limits::default()
    })
    .await;
    let (recipient, _events) = connect(&r).await;
    let q1 = recipient.create_queue().await.unwrap();
    let q2 = recipient.create_queue().await.unwrap();
    let (sender, _es) = connect(&r).await;
    let body = vec![7u8; 1_000];
    sender.send(&q1.sender_id, None, &body).await.unwrap();
    sender.send(&q1.sender_id, None, &body).await.unwrap();
    sender.send(&q2.sender_id, None, &body).await.unwrap();
    // Both queues were created from 127.0.0.1: together they hold the address's 3,000 bytes.
    assert_eq!(
        relay_err(sender.send(&q2.sender_id, None, &body).await),
        ErrorCode::Limit
    );
    assert_eq!(
        relay_err(sender.send(&q1.sender_id, None, b"x").await),
        ErrorCode::Limit
    );
    // Delivering one frees its bytes.
    let m = recipient.get(&q1).await.unwrap().unwrap();
    recipient.ack(&q1, &m.msg_id).await.unwrap();
    sender.send(&q2.sender_id, None, &body).await.unwrap();
    assert_eq!(
        relay_err(sender.send(&q2.sender_id, None, b"x").await),
        ErrorCode::Limit
    );
    // Deleting a queue frees what it held (q2: 2,000 bytes).
    recipient.delete(&q2).await.unwrap();
    sender.send(&q1.sender_id, None, &body).await.unwrap();
    sender.send(&q1.sender_id, None, &body).await.unwrap();
    assert_eq!(
        relay_err(sender.send(&q1.sender_id, None, &body).await),
        ErrorCode::Limit
    );
    // Expiry frees what it removes: every message is older than the retention now.
    clock.advance(smpx_relay_server::store::FREE_RETENTION_SECS + 1);
    assert_eq!(
        r.relay
            .expire_once(smpx_os::Clock::now(&clock))
            .await
            .unwrap(),
        3
    );
    sender.send(&q1.sender_id, None, &body).await.unwrap();
    let s = r.relay.stats().snapshot();
    assert_eq!(s.messages_in, 7);
    assert_eq!(s.limited, 4);
}

/// The relay the refused PRXYs would have reached, and a proxy that does not allow private
/// destinations.
async fn proxy_and_destination() -> (TestRelay, TestRelay) {
    let proxy = tls_relay(|id| {
        let mut c = forwarding_on(id);
        c.forwarding.allow_private_destinations = false;
        c
    })
    .await;
    let dest = tls_relay(forwarding_on).await;
    (proxy, dest)
}

#[tokio::test]
async fn a_proxy_refuses_loopback_private_and_link_local_destinations_before_connecting() {
    let (proxy, dest) = proxy_and_destination().await;
    let (c, _e) = connect(&proxy).await;
    let fp = dest.address.fingerprint;
    let port = dest.address.port;
    let refused = [
        // The destination itself, which is up and would answer.
        dest.address.clone(),
        RelayAddress::new(fp, RelayHost::Dns("localhost".into()), port),
        RelayAddress::new(fp, RelayHost::Ipv4(Ipv4Addr::new(10, 1, 2, 3)), port),
        RelayAddress::new(fp, RelayHost::Ipv4(Ipv4Addr::new(169, 254, 169, 254)), port),
        RelayAddress::new(fp, RelayHost::Ipv6(Ipv6Addr::LOCALHOST), port),
        RelayAddress::new(
            fp,
            RelayHost::Ipv6("::ffff:127.0.0.1".parse().unwrap()),
            port,
        ),
    ];
    for a in &refused {
        // The answer of an unreachable relay.
        assert_eq!(
            relay_err(c.proxy(a).await),
            ErrorCode::Proxy(ProxyError::Unreachable),
            "{a}"
        );
    }
    let s = proxy.relay.stats().snapshot();
    assert_eq!(s.destinations_refused, refused.len() as u64);
    // Not one connection reached the destination: the proxy never dialed.
    assert_eq!(dest.relay.stats().snapshot().connections_total, 0);
    c.ping().await.unwrap();
}

#[tokio::test]
async fn a_proxy_allowed_private_destinations_reaches_loopback_by_address_and_by_name() {
    let dest = tls_relay(forwarding_on).await;
    let proxy = tls_relay(forwarding_on).await;
    let (recipient, _events) = connect(&dest).await;
    let q = recipient.create_queue().await.unwrap();
    let (c, _e) = connect(&proxy).await;
    let by_name = RelayAddress::new(
        dest.address.fingerprint,
        RelayHost::Dns("localhost".into()),
        dest.address.port,
    );
    for a in [&dest.address, &by_name] {
        let via = c.proxy(a).await.unwrap();
        via.send(&q.sender_id, None, b"hi").await.unwrap();
    }
    assert_eq!(dest.relay.stats().snapshot().messages_in, 2);
    assert_eq!(proxy.relay.stats().snapshot().destinations_refused, 0);
}

#[tokio::test]
async fn prxy_is_rate_limited_per_connection() {
    let clock = ManualClock::new(1_000_000);
    let dest = tls_relay(forwarding_on).await;
    let proxy = {
        let clock = clock.clone();
        tls_relay(move |id| ServerConfig {
            limits: Limits {
                proxy_sessions_per_minute: 3,
                ..Limits::default()
            },
            ..forwarding_on(id).with_clock(Arc::new(clock))
        })
        .await
    };
    let (c, _e) = connect(&proxy).await;
    for _ in 0..3 {
        c.proxy(&dest.address).await.unwrap();
    }
    assert_eq!(relay_err(c.proxy(&dest.address).await), ErrorCode::Limit);
    // Every PRXY takes a token, whatever its destination (the check comes first).
    let prxy = Command::Proxy {
        destination: dest.address.to_string().into_bytes(),
    };
    assert_eq!(
        relay_err(c.request(None, None, &prxy).await),
        ErrorCode::Limit
    );
    // Another connection has its own rate.
    let (other, _o) = connect(&proxy).await;
    other.proxy(&dest.address).await.unwrap();
    // Three per minute: one more every 20 s.
    clock.advance(20);
    assert!(matches!(
        c.request(None, None, &prxy).await,
        Ok(Response::ProxyKey { .. })
    ));
    assert_eq!(relay_err(c.proxy(&dest.address).await), ErrorCode::Limit);
    assert_eq!(proxy.relay.stats().snapshot().limited, 3);
}
