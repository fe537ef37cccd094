//! Chat through real relays (TLS on loopback, ephemeral ports): invite, accept, hello and
//! secure, messages both ways in order, messages held while the receiver is away, bad
//! invitations, a wrong fingerprint, and a third party refused once the queue is secured.

use smpx_relay::RunningNode;
use smpx_relay_client::{connect_tls, ClientConfig, ClientError};
use smpx_relay_protocol::{EntityId, ErrorCode};
use smpx_relay_transport::RelayAddress;
use smpx_wallet::chat::{ContactState, Direction, Invitation, Role};
use smpx_wallet::{ChatError, KdfParams, Wallet};
use std::time::Duration;

const PASS: &str = "pw";
const WAIT: Duration = Duration::from_secs(5);

async fn relay(dir: &std::path::Path) -> RunningNode {
    smpx_testkit::relay::start(dir, None).await.unwrap()
}

async fn wallet(dir: &std::path::Path, name: &str) -> Wallet {
    Wallet::create_with(
        &dir.join(format!("{name}.db")),
        PASS,
        KdfParams::insecure_for_tests(),
    )
    .await
    .unwrap()
    .0
}

/// A directory with one relay and two wallets in it.
async fn alice_bob_and_a_relay() -> (tempfile::TempDir, RunningNode, Wallet, Wallet) {
    let dir = tempfile::tempdir().unwrap();
    let r = relay(&dir.path().join("r")).await;
    let alice = wallet(dir.path(), "alice").await;
    let bob = wallet(dir.path(), "bob").await;
    (dir, r, alice, bob)
}

/// Alice invites, Bob accepts, Alice receives the hello, Bob receives the ready.
async fn connect_pair(
    alice: &Wallet,
    bob: &Wallet,
    alice_relay: &RelayAddress,
    bob_relay: &RelayAddress,
) -> String {
    let (contact, invitation) = alice
        .chat()
        .create_contact(alice_relay, Some("bob"))
        .await
        .unwrap();
    assert_eq!(contact.state, ContactState::Invited);
    assert_eq!(contact.role, Role::Inviter);
    let accepted = bob
        .chat()
        .accept(&invitation, "alice", bob_relay)
        .await
        .unwrap();
    assert_eq!(accepted.state, ContactState::Accepted);

    let got = alice.chat().receive(WAIT).await.unwrap();
    assert_eq!(got.connected, vec!["bob".to_owned()]);
    assert!(got.messages.is_empty());
    let got = bob.chat().receive(WAIT).await.unwrap();
    assert_eq!(got.connected, vec!["alice".to_owned()]);
    for (w, peer) in [(alice, "bob"), (bob, "alice")] {
        let cs = w.chat().contacts().await.unwrap();
        assert_eq!(cs.len(), 1);
        assert_eq!(cs[0].name, peer);
        assert_eq!(cs[0].state, ContactState::Connected);
    }
    invitation
}

fn texts(r: &smpx_wallet::Received) -> Vec<&str> {
    r.messages.iter().map(|m| m.text.as_str()).collect()
}

#[tokio::test]
async fn two_wallets_on_two_relays_talk_both_ways_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (da, db) = (dir.path().join("ra"), dir.path().join("rb"));
    let (ra, rb) = tokio::join!(relay(&da), relay(&db));
    let alice = wallet(dir.path(), "alice").await;
    let bob = wallet(dir.path(), "bob").await;
    let invitation = connect_pair(&alice, &bob, ra.address(), rb.address()).await;

    for i in 0..5 {
        bob.chat().send("alice", &format!("b{i}")).await.unwrap();
    }
    alice.chat().send("bob", "hi bob ✓").await.unwrap();
    let got = alice.chat().receive(WAIT).await.unwrap();
    assert_eq!(texts(&got), ["b0", "b1", "b2", "b3", "b4"]);
    assert!(got.messages.iter().all(|m| m.contact == "bob"));
    let got = bob.chat().receive(WAIT).await.unwrap();
    assert_eq!(texts(&got), ["hi bob ✓"]);
    assert_eq!(got.messages[0].direction, Direction::In);

    // Nothing is delivered twice; an empty receive with no wait returns at once.
    let t = std::time::Instant::now();
    let got = alice.chat().receive(Duration::ZERO).await.unwrap();
    assert!(got.messages.is_empty() && got.dropped == 0);
    assert!(t.elapsed() < Duration::from_secs(3));

    // The history is kept (sealed) in the wallet file, in order, both directions.
    let history = alice.chat().messages("bob").await.unwrap();
    let h: Vec<_> = history
        .iter()
        .map(|m| (m.direction, m.text.as_str()))
        .collect();
    assert_eq!(
        h,
        [
            (Direction::Out, "hi bob ✓"),
            (Direction::In, "b0"),
            (Direction::In, "b1"),
            (Direction::In, "b2"),
            (Direction::In, "b3"),
            (Direction::In, "b4"),
        ]
    );
    // The text is not in the file in the clear.
    for file in ["alice.db", "alice.db-wal"] {
        let raw = std::fs::read(dir.path().join(file)).unwrap_or_default();
        assert!(!raw.windows(6).any(|w| w == b"hi bob"), "{file}");
        assert!(!raw.windows(2).any(|w| w == b"b3"), "{file}");
    }

    // A third party who learns Alice's sender id (it is in the invitation) is refused now
    // that the queue is secured: unsigned, or signed with its own key.
    let inv: Invitation = invitation.parse().unwrap();
    let (eve, _events) = connect_tls(ra.address(), ClientConfig::default())
        .await
        .unwrap();
    let r = eve.send(&inv.sender_id, None, b"let me in").await;
    assert!(
        matches!(r, Err(ClientError::Relay(ErrorCode::Auth))),
        "{r:?}"
    );
    let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
    let r = eve.send(&inv.sender_id, Some(&key), b"let me in").await;
    assert!(
        matches!(r, Err(ClientError::Relay(ErrorCode::Auth))),
        "{r:?}"
    );
    // An unknown sender id is refused alike.
    let r = eve.send(&EntityId([1; 24]), None, b"?").await;
    assert!(
        matches!(r, Err(ClientError::Relay(ErrorCode::Auth))),
        "{r:?}"
    );
    let got = alice.chat().receive(Duration::ZERO).await.unwrap();
    assert!(got.messages.is_empty());

    // Bob's relay goes away: sending to him and his receiving say so, typed.
    let rb_address = rb.address().to_string();
    rb.shutdown().await.unwrap();
    let e = alice.chat().send("bob", "are you there?").await;
    assert!(
        matches!(e, Err(ChatError::RelayUnreachable { .. })),
        "{e:?}"
    );
    let e = bob.chat().receive(Duration::ZERO).await;
    assert!(
        matches!(e, Err(ChatError::RelayUnreachable { .. })),
        "{e:?}"
    );
    // Alice's relay is still up, but Bob's own relay — his proxy — is not: private routing
    // does not fall back to a direct connection by itself (that would show Alice's relay
    // Bob's address). The error names his relay; with `direct` he still reaches her.
    let e = bob.chat().send("alice", "still here").await;
    assert!(
        matches!(&e, Err(ChatError::RelayUnreachable { relay, .. }) if *relay == rb_address),
        "{e:?}"
    );
    bob.chat()
        .direct(true)
        .send("alice", "still here")
        .await
        .unwrap();
    let got = alice.chat().receive(WAIT).await.unwrap();
    assert_eq!(texts(&got), ["still here"]);
    ra.shutdown().await.unwrap();
}

#[tokio::test]
async fn messages_wait_on_the_relay_while_the_receiver_is_away() {
    let (_dir, r, alice, bob) = alice_bob_and_a_relay().await;
    connect_pair(&alice, &bob, r.address(), r.address()).await;

    // Alice's wallet is closed (not running) while Bob sends.
    let alice_path = alice.path().to_owned();
    alice.close().await;
    for i in 0..3 {
        bob.chat()
            .send("alice", &format!("while away {i}"))
            .await
            .unwrap();
    }
    let alice = Wallet::open(&alice_path, PASS).await.unwrap();
    let got = alice.chat().receive(WAIT).await.unwrap();
    assert_eq!(
        texts(&got),
        ["while away 0", "while away 1", "while away 2"]
    );

    // A receive that waits gets a message sent while it waits.
    let connections = smpx_testkit::relay::connections_total(&r);
    let waiting = tokio::spawn(async move {
        let got = alice.chat().receive(WAIT).await.unwrap();
        texts(&got)
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
    });
    // Sent once Alice's receive has connected.
    smpx_testkit::relay::wait_for_connections(&r, connections + 1, WAIT)
        .await
        .unwrap();
    bob.chat().send("alice", "live").await.unwrap();
    assert_eq!(waiting.await.unwrap(), ["live"]);
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_invitations_names_and_relays_are_typed_errors() {
    let (_dir, r, alice, bob) = alice_bob_and_a_relay().await;
    let (_, invitation) = alice
        .chat()
        .create_contact(r.address(), None)
        .await
        .unwrap();

    // Garbage, truncated, altered.
    let mut altered = invitation.clone().into_bytes();
    let mid = altered.len() / 2;
    altered[mid] = if altered[mid] == b'x' { b'y' } else { b'x' };
    let altered = String::from_utf8(altered).unwrap();
    for bad in [
        "garbage",
        "smpx-invite:!!!",
        "smpx-invite:AAAA",
        &invitation[..invitation.len() - 5],
        &altered,
    ] {
        let e = bob.chat().accept(bad, "alice", r.address()).await;
        assert!(
            matches!(e, Err(ChatError::BadInvitation(_))),
            "{bad}: {e:?}"
        );
    }
    assert!(bob.chat().contacts().await.unwrap().is_empty());

    // Unknown contact; a contact not connected yet.
    let e = bob.chat().send("nobody", "hi").await;
    assert!(matches!(e, Err(ChatError::UnknownContact(_))), "{e:?}");
    let name = alice.chat().contacts().await.unwrap()[0].name.clone();
    let e = alice.chat().send(&name, "hi").await;
    assert!(matches!(e, Err(ChatError::NotConnected(_))), "{e:?}");

    // Bob accepted, Alice has not received the hello: her queue refuses his signed send.
    bob.chat()
        .accept(&invitation, "alice", r.address())
        .await
        .unwrap();
    let e = bob.chat().send("alice", "too early").await;
    assert!(matches!(e, Err(ChatError::NotConnected(_))), "{e:?}");
    // A second contact of the same name is refused.
    let e = bob.chat().accept(&invitation, "alice", r.address()).await;
    assert!(matches!(e, Err(ChatError::NameTaken(_))), "{e:?}");
    // Once Alice has the hello, the same send works.
    let got = alice.chat().receive(WAIT).await.unwrap();
    assert_eq!(got.connected, [name]);
    bob.chat().send("alice", "now").await.unwrap();
    let got = alice.chat().receive(WAIT).await.unwrap();
    assert_eq!(texts(&got), ["now"]);

    // A text over the limit.
    let e = bob
        .chat()
        .send("alice", &"x".repeat(smpx_wallet::chat::MAX_TEXT + 1))
        .await;
    assert!(matches!(e, Err(ChatError::TooLong(_))), "{e:?}");

    // The right relay under the wrong fingerprint; a relay that is not there.
    let wrong: RelayAddress = format!(
        "smpx://{}@127.0.0.1:{}",
        "A".repeat(43),
        r.listen_addr().port()
    )
    .parse()
    .unwrap();
    let e = alice.chat().create_contact(&wrong, None).await;
    assert!(
        matches!(e, Err(ChatError::WrongFingerprint { .. })),
        "{e:?}"
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gone: RelayAddress = format!("smpx://{}@127.0.0.1:{closed}", r.address().fingerprint)
        .parse()
        .unwrap();
    let e = alice.chat().create_contact(&gone, None).await;
    assert!(
        matches!(e, Err(ChatError::RelayUnreachable { .. })),
        "{e:?}"
    );
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn garbage_sent_to_an_unsecured_queue_is_dropped_and_the_hello_still_works() {
    let (_dir, r, alice, bob) = alice_bob_and_a_relay().await;
    let (_, invitation) = alice
        .chat()
        .create_contact(r.address(), Some("bob"))
        .await
        .unwrap();
    // Someone who saw the invitation sends junk before Bob's hello.
    let inv: Invitation = invitation.parse().unwrap();
    let (eve, _events) = connect_tls(r.address(), ClientConfig::default())
        .await
        .unwrap();
    eve.send(&inv.sender_id, None, b"junk").await.unwrap();
    bob.chat()
        .accept(&invitation, "alice", r.address())
        .await
        .unwrap();
    let got = alice.chat().receive(WAIT).await.unwrap();
    assert_eq!(got.dropped, 1);
    assert_eq!(got.connected, ["bob"]);
    bob.chat().receive(WAIT).await.unwrap();
    bob.chat().send("alice", "hello").await.unwrap();
    assert_eq!(texts(&alice.chat().receive(WAIT).await.unwrap()), ["hello"]);
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn messages_to_another_relay_go_through_the_own_relay_unless_direct() {
    let dir = tempfile::tempdir().unwrap();
    let (da, db) = (dir.path().join("ra"), dir.path().join("rb"));
    let (ra, rb) = tokio::join!(relay(&da), relay(&db));
    let alice = wallet(dir.path(), "alice").await;
    let bob = wallet(dir.path(), "bob").await;
    connect_pair(&alice, &bob, ra.address(), rb.address()).await;
    // Bob's hello crossed from rb to ra, Alice's ready from ra to rb, each via the sender's
    // own relay as proxy.
    let (a0, b0) = (ra.relay().stats().snapshot(), rb.relay().stats().snapshot());
    assert_eq!((a0.forwarded_in, b0.forwarded_out), (1, 1));
    assert_eq!((b0.forwarded_in, a0.forwarded_out), (1, 1));

    // Bob → Alice through rb: ra runs a forwarded SEND.
    bob.chat().send("alice", "private").await.unwrap();
    let (a1, b1) = (ra.relay().stats().snapshot(), rb.relay().stats().snapshot());
    assert_eq!(a1.forwarded_in, a0.forwarded_in + 1);
    assert_eq!(b1.forwarded_out, b0.forwarded_out + 1);
    assert_eq!(a1.messages_in, a0.messages_in + 1);
    assert_eq!(b1.messages_in, b0.messages_in);

    // --direct: Bob connects to ra himself, nothing is forwarded.
    bob.chat()
        .direct(true)
        .send("alice", "direct")
        .await
        .unwrap();
    let (a2, b2) = (ra.relay().stats().snapshot(), rb.relay().stats().snapshot());
    assert_eq!(a2.forwarded_in, a1.forwarded_in);
    assert_eq!(b2.forwarded_out, b1.forwarded_out);
    assert_eq!(a2.messages_in, a1.messages_in + 1);

    let got = alice.chat().receive(WAIT).await.unwrap();
    assert_eq!(texts(&got), ["private", "direct"]);

    // Both queues on one relay: sent directly, nothing forwarded.
    let carol = wallet(dir.path(), "carol").await;
    let dave = wallet(dir.path(), "dave").await;
    let before = ra.relay().stats().snapshot();
    connect_pair(&carol, &dave, ra.address(), ra.address()).await;
    dave.chat().send("alice", "same relay").await.unwrap();
    let after = ra.relay().stats().snapshot();
    assert_eq!(after.forwarded_in, before.forwarded_in);
    assert_eq!(after.forwarded_out, before.forwarded_out);
    ra.shutdown().await.unwrap();
    rb.shutdown().await.unwrap();
}
