//! Channels end to end: NEWC, JOIN, POST, USAGE over the wire — delivery to every member
//! (pushed and fetched), authorisation, a full member queue, billing by active receivers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::*;
use smpx_relay_client::{Client, ClientError, Event, Events, OwnedChannel, RecipientQueue};
use smpx_relay_protocol::command::{Command, Response};
use smpx_relay_protocol::crypto::{self, Content};
use smpx_relay_protocol::{CmdError, EntityId, ErrorCode};
use smpx_relay_server::capacity::Pricing;
use smpx_relay_server::ServerConfig;
use smpx_relay_store::memory::MemoryStore;
use smpx_relay_store::{NewQueue, QueueStore, ServerDhSecret};
use std::net::SocketAddr;
use std::sync::Arc;
use zeroize::Zeroizing;

const DAY: u64 = 86_400;

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn is_relay_err(r: Result<impl std::fmt::Debug, ClientError>, code: ErrorCode) -> bool {
    matches!(r, Err(ClientError::Relay(c)) if c == code)
}

/// Joins `n` members, each on its own connection.
async fn members(
    addr: SocketAddr,
    join_id: &EntityId,
    n: usize,
) -> Vec<(Client, Events, RecipientQueue)> {
    let mut out = Vec::new();
    for _ in 0..n {
        let (c, ev) = client(addr).await;
        let q = c.join_channel(join_id).await.unwrap();
        out.push((c, ev, q));
    }
    out
}

#[tokio::test]
async fn a_post_reaches_every_member() {
    let (relay, addr) = start(test_config()).await;
    let (owner, _) = client(addr).await;
    let ch = owner.create_channel().await.unwrap();
    assert_ne!(ch.owner_id, ch.join_id);
    let mut ms = members(addr, &ch.join_id, 3).await;
    // Member 0 is subscribed before the post, member 1 subscribes after it, member 2 GETs.
    assert_eq!(ms[0].0.subscribe(&ms[0].2).await.unwrap(), None);
    owner.post(&ch, b"hello members").await.unwrap();
    let pushed = match next_event(&mut ms[0].1).await {
        Event::Message { queue, message } => {
            assert_eq!(queue, ms[0].2.recipient_id);
            message
        }
        e => panic!("{e:?}"),
    };
    assert_eq!(body(&pushed.content), b"hello members");
    let (c1, _, q1) = &ms[1];
    let sub = c1.subscribe(q1).await.unwrap().unwrap();
    assert_eq!(body(&sub.content), b"hello members");
    let (c2, _, q2) = &ms[2];
    let got = c2.get(q2).await.unwrap().unwrap();
    assert_eq!(body(&got.content), b"hello members");
    assert!(got.at > 1_700_000_000);

    // ACK flow: the next post is pushed to the subscribers once they acknowledged.
    assert_eq!(ms[0].0.ack(&ms[0].2, &pushed.msg_id).await.unwrap(), None);
    assert_eq!(ms[1].0.ack(&ms[1].2, &sub.msg_id).await.unwrap(), None);
    owner.post(&ch, b"second").await.unwrap();
    for m in &mut ms[..2] {
        match next_event(&mut m.1).await {
            Event::Message { message, .. } => {
                assert_eq!(body(&message.content), b"second");
                assert_eq!(m.0.ack(&m.2, &message.msg_id).await.unwrap(), None);
            }
            e => panic!("{e:?}"),
        }
    }
    // The GET member still has the first post at the head, then the second.
    let (c2, _, q2) = &ms[2];
    assert_eq!(c2.get(q2).await.unwrap().unwrap().msg_id, got.msg_id);
    assert_eq!(c2.ack(q2, &got.msg_id).await.unwrap(), None);
    let second = c2.get(q2).await.unwrap().unwrap();
    assert_eq!(body(&second.content), b"second");

    // USAGE: 3 members, all active, the second post still held by member 2.
    let u = owner.channel_usage(&ch).await.unwrap();
    assert_eq!(
        (
            u.members,
            u.active_receivers,
            u.stored_bytes,
            u.monthly_units
        ),
        (3, 3, 6, 0)
    );
    // A member queue has no usable sender id: SEND to what the client holds is AUTH.
    assert!(is_relay_err(
        owner.send(&q2.sender_id, None, b"sneak").await,
        ErrorCode::Auth
    ));
    // Leaving is DEL.
    c2.delete(q2).await.unwrap();
    let u = owner.channel_usage(&ch).await.unwrap();
    assert_eq!((u.members, u.stored_bytes), (2, 0));
    owner.post(&ch, b"third").await.unwrap();

    let s = relay.stats().snapshot();
    assert_eq!(s.messages_in, 3, "one per POST");
    assert_eq!(s.queues_created, 3, "member queues");
    assert_eq!(s.queues_deleted, 1);
}

#[tokio::test]
async fn only_the_owner_posts_and_unknown_ids_are_auth() {
    let (relay, addr) = start(test_config()).await;
    let (owner, _) = client(addr).await;
    let ch = owner.create_channel().await.unwrap();
    let (m, _) = client(addr).await;
    let q = m.join_channel(&ch.join_id).await.unwrap();
    let impostor = OwnedChannel {
        owner_id: ch.owner_id,
        join_id: ch.join_id,
        owner_key: signing_key(),
    };
    assert!(is_relay_err(
        owner.post(&impostor, b"x").await,
        ErrorCode::Auth
    ));
    assert!(is_relay_err(
        owner.channel_usage(&impostor).await,
        ErrorCode::Auth
    ));
    // The member's key is not the owner's either.
    let as_member = OwnedChannel {
        owner_id: ch.owner_id,
        join_id: ch.join_id,
        owner_key: q.recipient_key.clone(),
    };
    assert!(is_relay_err(
        m.post(&as_member, b"x").await,
        ErrorCode::Auth
    ));
    // Unknown ids, or the other id of the channel, with the right key.
    for wrong in [EntityId(rand::random()), ch.join_id, q.recipient_id] {
        let c = OwnedChannel {
            owner_id: wrong,
            join_id: ch.join_id,
            owner_key: ch.owner_key.clone(),
        };
        assert!(is_relay_err(owner.post(&c, b"x").await, ErrorCode::Auth));
        assert!(is_relay_err(owner.channel_usage(&c).await, ErrorCode::Auth));
    }
    for wrong in [EntityId(rand::random()), ch.owner_id] {
        assert!(is_relay_err(m.join_channel(&wrong).await, ErrorCode::Auth));
    }
    // Nothing was delivered.
    assert_eq!(m.get(&q).await.unwrap(), None);
    assert_eq!(relay.stats().snapshot().messages_in, 0);

    // Raw: NEWC and JOIN must be signed with the key they register, and the key must be a
    // valid Ed25519 key.
    let mut raw = RawConn::connect(addr).await;
    let key = signing_key();
    let newc = Command::NewChannel {
        owner_key: key.verifying_key().to_bytes(),
    };
    assert_eq!(
        raw.call(None, Some(&signing_key()), &newc).await,
        Response::Err(ErrorCode::Auth)
    );
    let mut bad_key = [0u8; 32];
    bad_key[0] = 2; // y = 2 is not on the curve
    assert!(ed25519_dalek::VerifyingKey::from_bytes(&bad_key).is_err());
    assert_eq!(
        raw.call(
            None,
            Some(&key),
            &Command::NewChannel { owner_key: bad_key }
        )
        .await,
        Response::Err(ErrorCode::Cmd(CmdError::Syntax))
    );
    let dh = crypto::x25519_public(&crypto::x25519_secret(&mut rand::rngs::OsRng));
    let join = Command::Join {
        recipient_key: key.verifying_key().to_bytes(),
        recipient_dh: dh,
    };
    assert_eq!(
        raw.call(Some(&ch.join_id), Some(&signing_key()), &join)
            .await,
        Response::Err(ErrorCode::Auth)
    );
    assert!(matches!(
        raw.call(Some(&ch.join_id), Some(&key), &join).await,
        Response::Member { .. }
    ));
    match raw.call(None, Some(&key), &newc).await {
        Response::Channel { owner_id, join_id } => assert_ne!(owner_id, join_id),
        r => panic!("{r:?}"),
    }
}

#[tokio::test]
async fn a_full_member_gets_the_marker_and_the_others_the_posts() {
    let config = ServerConfig {
        quota: 2,
        ..test_config()
    };
    let (relay, addr) = start(config).await;
    let (owner, _) = client(addr).await;
    let ch = owner.create_channel().await.unwrap();
    let mut ms = members(addr, &ch.join_id, 3).await;
    // Member 0 never reads; members 1 and 2 read everything as it comes.
    for m in &ms[1..] {
        assert_eq!(m.0.subscribe(&m.2).await.unwrap(), None);
    }
    for i in 0..4u8 {
        owner.post(&ch, &[i; 3]).await.unwrap();
        for m in &mut ms[1..] {
            match next_event(&mut m.1).await {
                Event::Message { message, .. } => {
                    assert_eq!(body(&message.content), &[i; 3]);
                    assert_eq!(m.0.ack(&m.2, &message.msg_id).await.unwrap(), None);
                }
                e => panic!("{e:?}"),
            }
        }
    }
    let (c0, _, q0) = &ms[0];
    let mut seen = vec![];
    let mut next = c0.subscribe(q0).await.unwrap();
    while let Some(m) = next {
        seen.push(m.content.clone());
        next = c0.ack(q0, &m.msg_id).await.unwrap();
    }
    assert_eq!(
        seen,
        vec![
            Content::Body(vec![0; 3]),
            Content::Body(vec![1; 3]),
            Content::QuotaExceeded
        ]
    );
    // Two posts found member 0 full.
    assert_eq!(relay.stats().snapshot().messages_over_quota, 2);
}

fn billing_config(free: u64) -> ServerConfig {
    ServerConfig {
        pricing: Pricing {
            free_active_receivers: free,
            billing_interval_secs: 0,
            // 1000 units a second per active receiver over the free ones.
            units_per_receiver_month: 2_592_000_000,
            ..Pricing::default()
        },
        ..test_config()
    }
}

#[tokio::test]
async fn over_the_free_allowance_a_channel_must_be_paid() {
    let store = Arc::new(MemoryStore::new());
    let (_relay, addr) = start_with(store.clone(), billing_config(2)).await;
    let (owner, _) = client(addr).await;
    let ch = owner.create_channel().await.unwrap();
    let _ms = members(addr, &ch.join_id, 2).await;
    // Within the free allowance: no balance needed.
    owner.post(&ch, b"free").await.unwrap();
    let u = owner.channel_usage(&ch).await.unwrap();
    assert_eq!(
        (u.active_receivers, u.monthly_units, u.balance_units),
        (2, 0, 0)
    );
    assert!(u.billed_until > 0, "the first bill starts the clock");
    // A third active member: the channel costs something and has no balance.
    let _m3 = members(addr, &ch.join_id, 1).await;
    assert!(is_relay_err(
        owner.post(&ch, b"unpaid").await,
        ErrorCode::Payment
    ));
    let u = owner.channel_usage(&ch).await.unwrap();
    assert_eq!((u.members, u.active_receivers), (3, 3));
    assert_eq!(u.monthly_units, 2_592_000_000);
    assert!(u.balance_units <= 0);

    // A payment (as PAY provisions it: credit, billed_until unchanged).
    let c = store.channel_by_owner(&ch.owner_id).await.unwrap().unwrap();
    store
        .charge_channel(&ch.owner_id, 1_000_000, 0, c.billed_until)
        .await
        .unwrap();
    owner.post(&ch, b"paid").await.unwrap();
    let before = owner.channel_usage(&ch).await.unwrap().balance_units;
    assert!(before > 990_000 && before <= 1_000_000, "{before}");
    // 100 s pass unbilled (moved back rather than waited for): 1000 units a second.
    let c = store.channel_by_owner(&ch.owner_id).await.unwrap().unwrap();
    store
        .charge_channel(&ch.owner_id, 0, 0, c.billed_until - 100)
        .await
        .unwrap();
    let u = owner.channel_usage(&ch).await.unwrap();
    assert!(
        u.balance_units <= before - 100_000,
        "{} vs {before}",
        u.balance_units
    );
    assert!(
        u.balance_units >= before - 105_000,
        "{} vs {before}",
        u.balance_units
    );
    assert!(u.billed_until <= unix_now());
    owner.post(&ch, b"still paid").await.unwrap();
    // The balance runs out: refused again; the balance went below 0 by one period.
    store
        .charge_channel(&ch.owner_id, 0, 0, u.billed_until - 2000)
        .await
        .unwrap();
    assert!(is_relay_err(
        owner.post(&ch, b"broke").await,
        ErrorCode::Payment
    ));
    let u = owner.channel_usage(&ch).await.unwrap();
    assert!(u.balance_units < 0);
    // Nothing reaches the members while unpaid; three posts did.
    let (c0, _, q0) = &_ms[0];
    let mut n = 0;
    while let Some(m) = c0.get(q0).await.unwrap() {
        c0.ack(q0, &m.msg_id).await.unwrap();
        n += 1;
    }
    assert_eq!(n, 3);
}

#[tokio::test]
async fn inactive_members_are_not_billed() {
    let store = Arc::new(MemoryStore::new());
    let (_relay, addr) = start_with(store.clone(), billing_config(2)).await;
    let (owner, _) = client(addr).await;
    let ch = owner.create_channel().await.unwrap();
    let active = members(addr, &ch.join_id, 2).await;
    // Three members who joined 30 days ago and were never active since (the inactivity
    // window is 14 days): made in the store, with keys the test holds.
    let mut idle = Vec::new();
    for _ in 0..3 {
        let key = signing_key();
        let dh_secret = crypto::x25519_secret(&mut rand::rngs::OsRng);
        let server_secret = crypto::x25519_secret(&mut rand::rngs::OsRng);
        let m = NewQueue {
            recipient_id: EntityId(rand::random()),
            sender_id: EntityId(rand::random()),
            recipient_key: key.verifying_key().to_bytes(),
            recipient_dh: crypto::x25519_public(&dh_secret),
            server_dh: ServerDhSecret(server_secret),
            quota: 100,
            created_at: unix_now() - 30 * DAY,
        };
        assert!(store.join_channel(&ch.join_id, m.clone()).await.unwrap());
        idle.push(RecipientQueue {
            recipient_id: m.recipient_id,
            sender_id: ch.join_id,
            recipient_key: key,
            dh_secret: Zeroizing::new(dh_secret),
            server_dh: crypto::x25519_public(&server_secret),
        });
    }
    owner.post(&ch, b"to five").await.unwrap();
    let u = owner.channel_usage(&ch).await.unwrap();
    assert_eq!(
        (
            u.members,
            u.active_receivers,
            u.monthly_units,
            u.stored_bytes
        ),
        (5, 2, 0, 5 * 7)
    );
    // An idle member comes back (GET): now 3 are active, over the allowance.
    let (c, _) = client(addr).await;
    let got = c.get(&idle[0]).await.unwrap().unwrap();
    assert_eq!(body(&got.content), b"to five");
    let u = owner.channel_usage(&ch).await.unwrap();
    assert_eq!((u.active_receivers, u.monthly_units), (3, 2_592_000_000));
    assert!(is_relay_err(
        owner.post(&ch, b"x").await,
        ErrorCode::Payment
    ));
    // It leaves again (DEL): back within the allowance.
    c.delete(&idle[0]).await.unwrap();
    owner.post(&ch, b"to four").await.unwrap();
    drop(active);
}
