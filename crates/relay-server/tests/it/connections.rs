//! Bad blocks, slow and idle clients, the connection cap: typed errors, and other clients
//! keep being served.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::*;
use smpx_relay_client::Client;
use smpx_relay_protocol::command::{Command, Response};
use smpx_relay_protocol::SessionId;
use smpx_relay_protocol::{CmdError, CorrId, ErrorCode, BLOCK_SIZE};
use smpx_relay_server::{Relay, ServerConfig};
use smpx_relay_store::memory::MemoryStore;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A client that keeps working while others misbehave.
async fn assert_served(addr: std::net::SocketAddr) {
    let (c, _) = client(addr).await;
    let q = c.create_queue().await.unwrap();
    c.send(&q.sender_id, None, b"still here").await.unwrap();
    assert!(c.subscribe(&q).await.unwrap().is_some());
}

#[tokio::test]
async fn garbage_blocks_get_err_block_and_the_connection_survives() {
    let (relay, addr) = start(test_config()).await;
    let mut c = RawConn::connect(addr).await;
    let cases: Vec<Vec<u8>> = vec![
        // Random bytes.
        (0..BLOCK_SIZE).map(|_| rand::random()).collect(),
        // Content length past the block.
        {
            let mut b = vec![b'#'; BLOCK_SIZE];
            b[0] = 0xff;
            b[1] = 0xff;
            b
        },
        // Zero transmissions.
        {
            let mut b = vec![b'#'; BLOCK_SIZE];
            b[0] = 0;
            b[1] = 1;
            b[2] = 0;
            b
        },
        // A transmission longer than the content.
        {
            let mut b = vec![b'#'; BLOCK_SIZE];
            b[..5].copy_from_slice(&[0, 3, 1, 0x10, 0]);
            b
        },
    ];
    for block in &cases {
        c.send_block(block).await;
        let got = c.recv().await.expect("connection survives");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].corr, CorrId::PUSH);
        assert_eq!(got[0].response, Response::Err(ErrorCode::Block));
    }
    assert_eq!(c.call(None, None, &Command::Ping).await, Response::Pong);
    assert_eq!(relay.stats().snapshot().malformed, cases.len() as u64);
}

#[tokio::test]
async fn malformed_transmissions_are_typed_and_siblings_still_run() {
    let (_relay, addr) = start(test_config()).await;
    let mut c = RawConn::connect(addr).await;
    let ping = |corr| c.transmission(corr, None, None, &Command::Ping);
    let (p1, p2) = (CorrId([1; 24]), CorrId([2; 24]));
    let unknown = sign_for(&c.session_id, CorrId([3; 24]), None, None, b"Z");
    let truncated_ack = sign_for(&c.session_id, CorrId([4; 24]), None, None, b"A\x01\x02");
    let bad_auth_len = vec![7u8, 1, 2, 3];
    let ts = vec![ping(p1), unknown, truncated_ack, bad_auth_len, ping(p2)];
    c.send(&ts).await;
    // Several responses share blocks; collect five.
    let mut got = vec![];
    while got.len() < 5 {
        got.extend(c.recv().await.unwrap());
    }
    let by_corr = |id: u8| got.iter().find(|g| g.corr == CorrId([id; 24])).unwrap();
    assert_eq!(by_corr(1).response, Response::Pong);
    assert_eq!(by_corr(2).response, Response::Pong);
    assert_eq!(
        by_corr(3).response,
        Response::Err(ErrorCode::Cmd(CmdError::Unknown))
    );
    assert_eq!(
        by_corr(4).response,
        Response::Err(ErrorCode::Cmd(CmdError::Syntax))
    );
    assert!(got
        .iter()
        .any(|g| g.corr == CorrId::PUSH
            && g.response == Response::Err(ErrorCode::Cmd(CmdError::Syntax))));
    // In order: responses follow the transmissions.
    let order: Vec<_> = got.iter().map(|g| g.corr.0[0]).collect();
    assert_eq!(order, vec![1, 3, 4, 0, 2]);
}

#[tokio::test]
async fn a_truncated_block_closes_only_that_connection() {
    let (_relay, addr) = start(test_config()).await;
    let mut c = RawConn::connect(addr).await;
    c.tcp.write_all(&[0u8; 100]).await.unwrap();
    c.tcp.shutdown().await.unwrap();
    assert!(c.closed_within(Duration::from_secs(5)).await);
    assert_served(addr).await;
}

#[tokio::test]
async fn an_oversized_write_desynchronises_nothing_else() {
    // 16384 + 100 bytes: a valid block, then the start of a block that never completes.
    let config = ServerConfig {
        block_deadline: Duration::from_millis(300),
        ..test_config()
    };
    let (_relay, addr) = start(config).await;
    let mut c = RawConn::connect(addr).await;
    let mut bytes = {
        let t = c.transmission(CorrId([9; 24]), None, None, &Command::Ping);
        let mut b = smpx_relay_protocol::BlockBuilder::new();
        b.push(&t);
        b.finish()
    };
    bytes.extend_from_slice(&[0xab; 100]);
    c.send_block(&bytes).await;
    assert_eq!(c.recv().await.unwrap()[0].response, Response::Pong);
    assert!(c.closed_within(Duration::from_secs(3)).await);
    assert_served(addr).await;
}

#[tokio::test]
async fn a_client_sending_one_byte_at_a_time_is_dropped_without_hurting_others() {
    let config = ServerConfig {
        block_deadline: Duration::from_millis(400),
        ..test_config()
    };
    let (relay, addr) = start(config).await;
    let mut slow = RawConn::connect(addr).await;
    let started = Instant::now();
    let trickle = tokio::spawn(async move {
        // One byte every 50 ms ("a minute", scaled): the block would take ~14 minutes.
        for _ in 0..BLOCK_SIZE {
            if slow.tcp.write_all(&[0]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        slow
    });
    // Meanwhile others are served normally.
    assert_served(addr).await;
    let mut slow = trickle.await.unwrap();
    let elapsed = started.elapsed();
    assert!(slow.closed_within(Duration::from_secs(1)).await);
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    assert!(relay.stats().snapshot().connections_timed_out >= 1);
}

/// A connection served over an in-memory pipe, so that the paused clock alone decides when
/// deadlines pass (no socket IO for it to race).
fn piped(relay: &Relay) -> (tokio::io::DuplexStream, SessionId) {
    let sid: SessionId = rand::random();
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let permit = relay.try_admit().unwrap();
    let r = relay.clone();
    tokio::spawn(async move { r.serve_connection(theirs, sid, None, permit).await });
    (ours, sid)
}

#[tokio::test(start_paused = true)]
async fn idle_connections_are_closed_and_ping_keeps_them() {
    let config = ServerConfig {
        idle_timeout: Duration::from_millis(300),
        handshake_timeout: Duration::from_millis(500),
        ..test_config()
    };
    let relay = Relay::new(Arc::new(MemoryStore::new()), config);
    let (stream, sid) = piped(&relay);
    let (idle, _idle_events) = Client::connect(stream, sid, client_config()).await.unwrap();
    let (stream, sid) = piped(&relay);
    let (pinging, _events) = Client::connect(stream, sid, client_config()).await.unwrap();
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        pinging.ping().await.unwrap();
    }
    // 750 ms without a block is past the 300 ms idle limit; pings kept the other one open.
    assert!(idle.is_closed());
    assert!(!pinging.is_closed());
    // A silent client that never completes the hello is dropped too: the relay sends its
    // hello, then closes when the handshake time is up.
    let (mut mute, _) = piped(&relay);
    let started = tokio::time::Instant::now();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), mute.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.len(), BLOCK_SIZE);
    assert!(started.elapsed() >= Duration::from_millis(500));
}

#[tokio::test]
async fn the_connection_cap_refuses_extra_connections() {
    let config = ServerConfig {
        max_connections: 3,
        ..test_config()
    };
    let (relay, addr) = start(config).await;
    let mut held = vec![];
    for _ in 0..3 {
        held.push(RawConn::connect(addr).await);
    }
    let mut extra = RawConn::connect_no_hello(addr).await;
    assert!(extra.closed_within(Duration::from_secs(2)).await);
    assert_eq!(relay.stats().snapshot().connections_refused, 1);
    drop(held.pop());
    // The slot comes back once the relay notices the close.
    let deadline = Instant::now() + Duration::from_secs(3);
    while relay.stats().snapshot().connections_open > 2 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut again = RawConn::connect(addr).await;
    assert_eq!(again.call(None, None, &Command::Ping).await, Response::Pong);
}

#[tokio::test]
async fn two_thousand_idle_connections_do_not_stop_service() {
    let (relay, addr) = start(test_config()).await;
    let started = Instant::now();
    let mut idle = Vec::with_capacity(2000);
    for chunk in 0..20 {
        let batch: Vec<_> = (0..100)
            .map(|_| tokio::spawn(RawConn::connect(addr)))
            .collect();
        for h in batch {
            idle.push(h.await.unwrap());
        }
        let _ = chunk;
    }
    assert_eq!(relay.stats().snapshot().connections_open, 2000);
    let t = Instant::now();
    assert_served(addr).await;
    let served_in = t.elapsed();
    assert!(served_in < Duration::from_secs(2), "{served_in:?}");
    // An idle connection still answers.
    assert_eq!(
        idle[1234].call(None, None, &Command::Ping).await,
        Response::Pong
    );
    assert!(started.elapsed() < Duration::from_secs(30));
}
