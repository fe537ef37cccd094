//! A session survives its relay: stopped and started again on the same address, the relay
//! gets the session back by itself, subscribed to the same queue, and no message the relay
//! had accepted is lost — the one delivered but not acknowledged before the stop comes
//! again. A relay that stays away is reported down; a closed session ends.

use smpx_relay_client::{
    connect_tls, ClientConfig, Event, ReconnectPolicy, Session, SessionEvent, SessionEvents,
};
use smpx_relay_protocol::crypto::Content;
use std::time::Duration;

const WITHIN: Duration = Duration::from_secs(20);

fn policy() -> ReconnectPolicy {
    ReconnectPolicy {
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        down_after: Duration::from_secs(5),
    }
}

async fn next(events: &mut SessionEvents) -> SessionEvent {
    tokio::time::timeout(WITHIN, events.next())
        .await
        .expect("an event in time")
        .expect("the session still runs")
}

/// The next message's body and id, skipping nothing else.
async fn message(events: &mut SessionEvents) -> (String, smpx_relay_protocol::MsgId) {
    match next(events).await {
        SessionEvent::Relay(Event::Message { message, .. }) => match message.content {
            Content::Body(b) => (String::from_utf8(b).unwrap(), message.msg_id),
            other => panic!("a body, not {other:?}"),
        },
        other => panic!("a message, not {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_comes_back_with_its_relay_and_loses_nothing_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let node = smpx_testkit::relay::start(dir.path(), None).await.unwrap();
    let address = node.address().clone();
    let listen = node.listen_addr();

    let (session, mut events) = Session::open(address.clone(), ClientConfig::default(), policy())
        .await
        .unwrap();
    let q = session.client().unwrap().create_queue().await.unwrap();
    assert!(session.subscribe(&q).await.unwrap().is_none());
    assert_eq!(session.subscribed(), 1);
    let send = |body: &'static str| {
        let address = address.clone();
        let sender_id = q.sender_id;
        async move {
            let (sender, _) = connect_tls(&address, ClientConfig::default())
                .await
                .unwrap();
            sender
                .send(&sender_id, None, body.as_bytes())
                .await
                .unwrap();
        }
    };
    send("one").await;
    let (body, id) = message(&mut events).await;
    assert_eq!(body, "one");
    session.client().unwrap().ack(&q, &id).await.unwrap();
    // Delivered, not acknowledged, when the relay stops.
    send("two").await;
    let (body, _) = message(&mut events).await;
    assert_eq!(body, "two");

    node.shutdown().await.unwrap();
    assert!(matches!(
        next(&mut events).await,
        SessionEvent::Disconnected
    ));
    assert!(!session.is_connected());
    assert!(session.client().is_err());

    let node = smpx_testkit::relay::restart(dir.path(), listen)
        .await
        .unwrap();
    assert_eq!(node.address(), &address);
    match next(&mut events).await {
        SessionEvent::Reconnected {
            attempts,
            resubscribed,
            failed,
        } => {
            assert!(attempts >= 1);
            assert_eq!((resubscribed, failed.len()), (1, 0));
        }
        other => panic!("reconnected, not {other:?}"),
    }
    // The unacknowledged message again, then what is sent now, on the new connection.
    let (body, id) = message(&mut events).await;
    assert_eq!(body, "two");
    let client = session.connected().await.unwrap();
    client.ack(&q, &id).await.unwrap();
    send("three").await;
    let (body, id) = message(&mut events).await;
    assert_eq!(body, "three");
    client.ack(&q, &id).await.unwrap();

    session.close();
    assert!(matches!(next(&mut events).await, SessionEvent::Closed));
    assert!(events.next().await.is_none());
    assert!(session.connected().await.is_none());
    node.shutdown().await.unwrap();
}

/// Under tokio's paused clock (the relay is gone, so nothing but the session's own waits
/// and refused connects is left): the backoff adds up to `down_after` and the session says
/// the relay is down, and keeps trying.
#[tokio::test]
async fn a_relay_that_stays_away_is_reported_down() {
    let dir = tempfile::tempdir().unwrap();
    let node = smpx_testkit::relay::start(dir.path(), None).await.unwrap();
    let (session, mut events) =
        Session::open(node.address().clone(), ClientConfig::default(), policy())
            .await
            .unwrap();
    node.shutdown().await.unwrap();
    assert!(matches!(
        next(&mut events).await,
        SessionEvent::Disconnected
    ));
    tokio::time::pause();
    match next(&mut events).await {
        // Waits of at most 20, 40, 80, 160 ms, then 200 ms each: 5 s takes at least 28.
        SessionEvent::Down { attempts } => assert!(attempts >= 28, "{attempts}"),
        other => panic!("down, not {other:?}"),
    }
    assert!(!session.is_connected());
    // Dropping the last handle ends it.
    drop(session);
    assert!(matches!(next(&mut events).await, SessionEvent::Closed));
}
