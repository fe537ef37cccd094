//! Queues end to end: delivery order and flow control, quota, takeover, re-encryption,
//! expiry, shutdown, a duplex stream instead of TCP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::*;
use smpx_relay_client::{Client, ClientError, Event};
use smpx_relay_protocol::command::{Command, Response};
use smpx_relay_protocol::crypto::{self, Content, DeliveryKey, SEALED_LEN};
use smpx_relay_protocol::ErrorCode;
use smpx_relay_server::{Relay, ServerConfig};
use smpx_relay_store::memory::MemoryStore;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn messages_arrive_in_order_one_at_a_time() {
    let (relay, addr) = start(test_config()).await;
    let (recipient, mut events) = client(addr).await;
    let (sender, _) = client(addr).await;
    let q = recipient.create_queue().await.unwrap();
    let sk = signing_key();
    recipient.secure(&q, &sk.verifying_key()).await.unwrap();

    sender.send(&q.sender_id, Some(&sk), b"m0").await.unwrap();
    let first = recipient.subscribe(&q).await.unwrap().unwrap();
    assert_eq!(body(&first.content), b"m0");
    // A message sent while m0 is unacknowledged waits.
    sender.send(&q.sender_id, Some(&sk), b"m1").await.unwrap();
    sender.send(&q.sender_id, Some(&sk), b"m2").await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(100), events.next())
            .await
            .is_err()
    );
    // ACK returns the next one.
    let m1 = recipient.ack(&q, &first.msg_id).await.unwrap().unwrap();
    assert_eq!(body(&m1.content), b"m1");
    // Acknowledging a message that is not the one delivered.
    assert!(matches!(
        recipient.ack(&q, &first.msg_id).await,
        Err(ClientError::Relay(ErrorCode::NoMsg))
    ));
    let m2 = recipient.ack(&q, &m1.msg_id).await.unwrap().unwrap();
    assert_eq!(body(&m2.content), b"m2");
    assert_eq!(recipient.ack(&q, &m2.msg_id).await.unwrap(), None);
    // Now empty: the next SEND is pushed.
    sender.send(&q.sender_id, Some(&sk), b"m3").await.unwrap();
    match next_event(&mut events).await {
        Event::Message { queue, message } => {
            assert_eq!(queue, q.recipient_id);
            assert_eq!(body(&message.content), b"m3");
            assert!(message.at > 1_700_000_000);
        }
        e => panic!("{e:?}"),
    }
    // GET is for queues this connection is not subscribed to.
    assert!(matches!(
        recipient.get(&q).await,
        Err(ClientError::Relay(ErrorCode::Cmd(
            smpx_relay_protocol::CmdError::Prohibited
        )))
    ));
    let s = relay.stats().snapshot();
    assert_eq!(s.messages_in, 4);
    assert_eq!(s.messages_out, 4);
    assert_eq!(s.queues_created, 1);
}

#[tokio::test]
async fn get_without_subscribing() {
    let (_relay, addr) = start(test_config()).await;
    let (c, _) = client(addr).await;
    let q = c.create_queue().await.unwrap();
    assert_eq!(c.get(&q).await.unwrap(), None);
    c.send(&q.sender_id, None, b"a").await.unwrap();
    c.send(&q.sender_id, None, b"b").await.unwrap();
    let a = c.get(&q).await.unwrap().unwrap();
    assert_eq!(c.get(&q).await.unwrap().unwrap().msg_id, a.msg_id);
    assert_eq!(c.ack(&q, &a.msg_id).await.unwrap(), None);
    assert_eq!(body(&c.get(&q).await.unwrap().unwrap().content), b"b");
}

#[tokio::test]
async fn quota_refuses_the_sender_and_marks_the_queue() {
    let config = ServerConfig {
        quota: 3,
        ..test_config()
    };
    let (relay, addr) = start(config).await;
    let (c, _) = client(addr).await;
    let q = c.create_queue().await.unwrap();
    for i in 0..3u8 {
        c.send(&q.sender_id, None, &[i]).await.unwrap();
    }
    for _ in 0..2 {
        assert!(matches!(
            c.send(&q.sender_id, None, b"over").await,
            Err(ClientError::Relay(ErrorCode::Quota))
        ));
    }
    let mut seen = vec![];
    let mut next = c.subscribe(&q).await.unwrap();
    while let Some(m) = next {
        seen.push(m.content.clone());
        next = c.ack(&q, &m.msg_id).await.unwrap();
    }
    assert_eq!(
        seen,
        vec![
            Content::Body(vec![0]),
            Content::Body(vec![1]),
            Content::Body(vec![2]),
            Content::QuotaExceeded
        ]
    );
    // Drained: accepted again.
    c.send(&q.sender_id, None, b"again").await.unwrap();
    assert_eq!(relay.stats().snapshot().messages_over_quota, 2);
}

#[tokio::test]
async fn free_tier_quota_is_128() {
    let (_relay, addr) = start(test_config()).await;
    let (c, _) = client(addr).await;
    let q = c.create_queue().await.unwrap();
    for _ in 0..smpx_relay_store::FREE_QUOTA {
        c.send(&q.sender_id, None, b"x").await.unwrap();
    }
    assert!(matches!(
        c.send(&q.sender_id, None, b"x").await,
        Err(ClientError::Relay(ErrorCode::Quota))
    ));
}

#[tokio::test]
async fn a_second_subscriber_takes_over_and_the_first_gets_end() {
    let (relay, addr) = start(test_config()).await;
    let (a, mut a_events) = client(addr).await;
    let (b, mut b_events) = client(addr).await;
    let (sender, _) = client(addr).await;
    let q = a.create_queue().await.unwrap();
    assert_eq!(a.subscribe(&q).await.unwrap(), None);
    assert_eq!(b.subscribe(&q).await.unwrap(), None);
    match next_event(&mut a_events).await {
        Event::End { queue } => assert_eq!(queue, q.recipient_id),
        e => panic!("{e:?}"),
    }
    sender.send(&q.sender_id, None, b"to b").await.unwrap();
    match next_event(&mut b_events).await {
        Event::Message { message, .. } => assert_eq!(body(&message.content), b"to b"),
        e => panic!("{e:?}"),
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(100), a_events.next())
            .await
            .is_err()
    );
    assert_eq!(relay.stats().snapshot().subscriptions_ended, 1);
}

/// What a sender sends and what the recipient receives share no bytes, and every delivery
/// has the same size whatever the body.
#[tokio::test]
async fn deliveries_are_re_encrypted_and_the_same_size() {
    let (_relay, addr) = start(test_config()).await;
    let mut recipient = RawConn::connect(addr).await;
    let mut sender = RawConn::connect(addr).await;
    let (rid, sid, server_dh, key, dh) = raw_new_queue(&mut recipient).await;
    let dk = DeliveryKey::for_recipient(&dh, &server_dh).unwrap();

    let mut lengths = vec![];
    for size in [1usize, 100, 5000, smpx_relay_protocol::MAX_BODY] {
        let sent: Vec<u8> = (0..size).map(|_| rand::random()).collect();
        let r = sender
            .call(Some(&sid), None, &Command::Send { body: sent.clone() })
            .await;
        assert_eq!(r, Response::Ok);
        let corr = smpx_relay_protocol::CorrId(rand::random());
        let get = recipient.transmission(corr, Some(&rid), Some(&key), &Command::Get);
        recipient.send(&[get]).await;
        let got = recipient.recv().await.unwrap().remove(0);
        let Response::Msg { msg_id, sealed } = &got.response else {
            panic!("{:?}", got.response)
        };
        assert_eq!(sealed.len(), SEALED_LEN);
        lengths.push(got.raw.len());
        // No 16-byte window of the sent body appears in the delivered bytes.
        if size >= 16 {
            for w in sent.windows(16).step_by(7) {
                assert!(!got.raw.windows(16).any(|x| x == w));
            }
        }
        let opened = crypto::open(&dk, msg_id, sealed).unwrap();
        assert_eq!(body(&opened.content), &sent[..]);
        let ack = recipient
            .call(Some(&rid), Some(&key), &Command::Ack { msg_id: *msg_id })
            .await;
        assert_eq!(ack, Response::Ok);
    }
    assert!(lengths.windows(2).all(|w| w[0] == w[1]), "{lengths:?}");
}

#[tokio::test]
async fn oversized_bodies_are_large_msg() {
    let (_relay, addr) = start(test_config()).await;
    let mut c = RawConn::connect(addr).await;
    let (_, sid, _, _, _) = raw_new_queue(&mut c).await;
    let body = vec![7u8; smpx_relay_protocol::MAX_BODY + 1];
    let r = c.call(Some(&sid), None, &Command::Send { body }).await;
    assert_eq!(r, Response::Err(ErrorCode::LargeMsg));
    // The client refuses before sending.
    let (cl, _) = client(c.tcp.peer_addr().unwrap()).await;
    assert!(matches!(
        cl.send(&sid, None, &[0; smpx_relay_protocol::MAX_BODY + 1])
            .await,
        Err(ClientError::TooLarge(_))
    ));
}

#[tokio::test]
async fn under_a_manual_clock_messages_expire_exactly_after_the_retention() {
    use smpx_os::{Clock, ManualClock};
    // Far from the system's time: a message stamped by the system clock would not expire.
    let clock = ManualClock::new(1_000_000);
    let cfg = test_config().with_clock(Arc::new(clock.clone()));
    let retention = cfg.retention_secs;
    let (relay, addr) = start(cfg).await;
    let (c, _) = client(addr).await;
    let q = c.create_queue().await.unwrap();
    c.send(&q.sender_id, None, b"m").await.unwrap();
    clock.advance(retention);
    assert_eq!(
        relay.expire_once(clock.now()).await.unwrap(),
        0,
        "kept the whole retention"
    );
    clock.advance(1);
    // The background task reads the same clock.
    let task = relay.spawn_expiry();
    tokio::time::timeout(Duration::from_secs(5), async {
        while relay.stats().snapshot().messages_expired == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();
    assert_eq!(c.get(&q).await.unwrap(), None);
    relay.shutdown();
    task.await.unwrap();
}

#[tokio::test]
async fn ids_and_queue_keys_come_from_the_injected_entropy() {
    let ids = |seed: u64| async move {
        let cfg = test_config().with_entropy(Arc::new(smpx_os::SeededEntropy::new(seed)));
        let (_relay, addr) = start(cfg).await;
        let (c, _) = client(addr).await;
        let q = c.create_queue().await.unwrap();
        (q.recipient_id, q.sender_id, q.server_dh)
    };
    assert_eq!(ids(9).await, ids(9).await);
    assert_ne!(ids(9).await.0, ids(10).await.0);
}

#[tokio::test]
async fn expiry_removes_old_messages() {
    let (relay, addr) = start(test_config()).await;
    let (c, _) = client(addr).await;
    let q = c.create_queue().await.unwrap();
    c.send(&q.sender_id, None, b"old").await.unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_eq!(relay.expire_once(now).await.unwrap(), 0);
    let later = now + smpx_relay_store::FREE_RETENTION_SECS + 2;
    assert_eq!(relay.expire_once(later).await.unwrap(), 1);
    assert_eq!(c.get(&q).await.unwrap(), None);
    assert_eq!(relay.stats().snapshot().messages_expired, 1);
    // The background task runs and stops with the relay.
    let task = relay.spawn_expiry();
    relay.shutdown();
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn graceful_shutdown_stops_accepting_and_drains() {
    let (relay, addr) = start(test_config()).await;
    let (c, mut events) = client(addr).await;
    let q = c.create_queue().await.unwrap();
    c.send(&q.sender_id, None, b"kept").await.unwrap();
    relay.shutdown();
    assert!(relay.drained(Duration::from_secs(5)).await);
    loop {
        if let Event::Closed = next_event(&mut events).await {
            break;
        }
    }
    assert!(c.is_closed());
    assert!(matches!(c.ping().await, Err(ClientError::Closed)));
    // Not accepting any more (the listener is gone, or the connection goes nowhere).
    let r = tokio::time::timeout(
        Duration::from_secs(2),
        smpx_relay_client::connect_insecure_plain(addr, client_config()),
    )
    .await;
    assert!(!matches!(r, Ok(Ok(_))));
    assert_eq!(relay.stats().snapshot().connections_open, 0);
}

/// The server and client run over any stream: here an in-memory duplex pipe.
#[tokio::test]
async fn works_over_a_duplex_stream_and_checks_the_session_id() {
    let relay = Relay::new(Arc::new(MemoryStore::new()), test_config());
    let sid: [u8; 32] = rand::random();
    let (a, b) = tokio::io::duplex(64 * 1024);
    let r = relay.clone();
    let permit = relay.try_admit().unwrap();
    tokio::spawn(async move { r.serve_connection(a, sid, None, permit).await });
    let (c, _) = Client::connect(b, sid, client_config()).await.unwrap();
    assert_eq!(c.version(), 1);
    c.ping().await.unwrap();
    let q = c.create_queue().await.unwrap();
    c.send(&q.sender_id, None, b"duplex").await.unwrap();
    assert_eq!(
        body(&c.subscribe(&q).await.unwrap().unwrap().content),
        b"duplex"
    );

    // A relay whose transport session differs from ours (e.g. a TLS-terminating proxy).
    let (a, b) = tokio::io::duplex(64 * 1024);
    let r = relay.clone();
    let permit = relay.try_admit().unwrap();
    tokio::spawn(async move { r.serve_connection(a, rand::random(), None, permit).await });
    assert!(matches!(
        Client::connect(b, sid, client_config()).await,
        Err(ClientError::SessionMismatch)
    ));
}
