//! Private routing over real TLS relays on loopback: a client sends through its relay (the
//! proxy) to a queue on another relay (the destination).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::{
    client_config, connect, forwarding_on, relay_err, signing_key, test_config, tls_relay,
    TestRelay,
};
use smpx_relay_client::{connect_tls, ClientError, Event, Events};
use smpx_relay_protocol::command::{Command, Response};
use smpx_relay_protocol::crypto::{self, Content};
use smpx_relay_protocol::forward::{self, ForwardError, ForwardKey};
use smpx_relay_protocol::handshake::ServerHello;
use smpx_relay_protocol::transmission::{encode_transmission, parse_transmission, signed_part};
use smpx_relay_protocol::{
    decode_block, BlockBuilder, CmdError, CorrId, EntityId, ErrorCode, MsgId, ProxyError,
};
use smpx_relay_server::ServerConfig;
use smpx_relay_transport::framing;
use smpx_relay_transport::{
    self as transport, CertRejection, PinnedChain, RelayAddress, RelayHost, RelayIdentity,
};
use std::net::Ipv4Addr;
use std::time::Duration;

async fn next_message(events: &mut Events) -> (MsgId, Vec<u8>) {
    let ev = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .unwrap()
        .unwrap();
    match ev {
        Event::Message { message, .. } => match message.content {
            Content::Body(b) => (message.msg_id, b),
            c => panic!("{c:?}"),
        },
        e => panic!("{e:?}"),
    }
}

#[tokio::test]
async fn a_message_via_the_proxy_arrives_and_the_destination_sees_only_the_proxy() {
    let a = tls_relay(forwarding_on).await;
    let b = tls_relay(forwarding_on).await;

    let (recipient, mut events) = connect(&b).await;
    let q = recipient.create_queue().await.unwrap();
    assert_eq!(recipient.subscribe(&q).await.unwrap(), None);

    let (sender, _) = connect(&a).await;
    let via = sender.proxy(&b.address).await.unwrap();
    via.send(&q.sender_id, None, b"through a").await.unwrap();
    let (id, body) = next_message(&mut events).await;
    assert_eq!(body, b"through a");
    assert_eq!(recipient.ack(&q, &id).await.unwrap(), None);

    // Secured queue: the signed SEND (bound to the proxy↔destination session) is accepted,
    // an unsigned one is AUTH, exactly as directly.
    let sender_key = signing_key();
    recipient
        .secure(&q, &sender_key.verifying_key())
        .await
        .unwrap();
    via.send(&q.sender_id, Some(&sender_key), b"signed")
        .await
        .unwrap();
    assert_eq!(next_message(&mut events).await.1, b"signed");
    assert_eq!(
        relay_err(via.send(&q.sender_id, None, b"unsigned").await),
        ErrorCode::Auth
    );
    // A key that is not the queue's: AUTH.
    assert_eq!(
        relay_err(via.send(&q.sender_id, Some(&signing_key()), b"x").await),
        ErrorCode::Auth
    );
    via.ping().await.unwrap();

    // A second client of A shares A's one connection to B.
    let (sender2, _) = connect(&a).await;
    let via2 = sender2.proxy(&b.address).await.unwrap();
    assert_eq!(via2.destination_session_id(), via.destination_session_id());

    let bs = b.relay.stats().snapshot();
    let as_ = a.relay.stats().snapshot();
    // B saw two connections: the recipient's and A's. The senders never connected to B.
    assert_eq!(bs.connections_total, 2);
    assert_eq!(bs.messages_in, 2);
    assert_eq!(bs.forwarded_in, 5);
    assert_eq!(as_.forwarded_out, 5);
    assert_eq!(as_.messages_in, 0);
    assert_eq!(as_.forwarded_in, 0);
}

/// The test plays the proxy: it holds a connection to B and sends RKEY/RFWD itself.
#[tokio::test]
async fn tampered_replayed_and_non_send_forwards_are_refused() {
    let b = tls_relay(forwarding_on).await;
    let (recipient, _events) = connect(&b).await;
    let q = recipient.create_queue().await.unwrap();

    let (proxy, _) = connect(&b).await;
    let key = match proxy.request(None, None, &Command::RelayKey).await.unwrap() {
        Response::RelayKey { key } => key,
        r => panic!("{r:?}"),
    };
    assert_eq!(&key.session_id, proxy.session_id());
    key.verify(
        &PinnedChain,
        &b.address.fingerprint,
        now(),
        &mut rand::rngs::OsRng,
    )
    .unwrap();

    let corr = CorrId([3; 24]);
    let send = Command::Send {
        body: b"once".to_vec(),
    };
    let inner = encode_transmission(
        None,
        &signed_part(&corr, Some(&q.sender_id), &send.encode()),
    );
    let (payload, response_key) =
        forward::seal_request(&key, &inner, &mut rand::rngs::OsRng).unwrap();

    // Tampered by the proxy: refused, nothing stored.
    let mut tampered = payload.clone();
    tampered.sealed[10] ^= 0x40;
    assert_eq!(
        relay_err(
            proxy
                .request(None, None, &Command::RelayForward(tampered))
                .await
        ),
        ErrorCode::Proxy(ProxyError::Crypto)
    );
    // Another ephemeral key substituted: the AEAD fails too.
    let mut other_eph = payload.clone();
    other_eph.eph = crypto::x25519_public(&crypto::x25519_secret(&mut rand::rngs::OsRng));
    assert_eq!(
        relay_err(
            proxy
                .request(None, None, &Command::RelayForward(other_eph))
                .await
        ),
        ErrorCode::Proxy(ProxyError::Crypto)
    );
    assert_eq!(b.relay.stats().snapshot().messages_in, 0);

    // The genuine one runs, and only the client can read the answer.
    let sealed = match proxy
        .request(None, None, &Command::RelayForward(payload.clone()))
        .await
        .unwrap()
    {
        Response::Forwarded { sealed } => sealed,
        r => panic!("{r:?}"),
    };
    assert_eq!(sealed.len(), forward::RESPONSE_SEALED_LEN);
    let plain = forward::open_response(&response_key, &key.session_id, &sealed).unwrap();
    let t = parse_transmission(&plain).unwrap();
    assert_eq!(t.corr_id, corr);
    assert_eq!(Response::decode(t.command).unwrap(), Response::Ok);

    // Replayed: refused, still one message.
    assert_eq!(
        relay_err(
            proxy
                .request(None, None, &Command::RelayForward(payload))
                .await
        ),
        ErrorCode::Proxy(ProxyError::Replay)
    );
    assert_eq!(b.relay.stats().snapshot().messages_in, 1);

    // The same sealed payload on another connection of the proxy does not open (the key
    // and the session id are that connection's).
    let (proxy2, _) = connect(&b).await;
    let key2 = match proxy2
        .request(None, None, &Command::RelayKey)
        .await
        .unwrap()
    {
        Response::RelayKey { key } => key,
        r => panic!("{r:?}"),
    };
    assert_ne!(key2.dh, key.dh);
    let (again, _) = forward::seal_request(&key, &inner, &mut rand::rngs::OsRng).unwrap();
    assert_eq!(
        relay_err(
            proxy2
                .request(None, None, &Command::RelayForward(again))
                .await
        ),
        ErrorCode::Proxy(ProxyError::Crypto)
    );

    // A recipient command forwarded: NOT_ALLOWED, sealed inside the answer.
    let sub = signed_part(
        &CorrId([4; 24]),
        Some(&q.recipient_id),
        &Command::Sub.encode(),
    );
    let sig = crypto::sign(&q.recipient_key, &key.session_id, &sub);
    let inner = encode_transmission(Some(&sig), &sub);
    let (payload, response_key) =
        forward::seal_request(&key, &inner, &mut rand::rngs::OsRng).unwrap();
    let sealed = match proxy
        .request(None, None, &Command::RelayForward(payload))
        .await
        .unwrap()
    {
        Response::Forwarded { sealed } => sealed,
        r => panic!("{r:?}"),
    };
    let plain = forward::open_response(&response_key, &key.session_id, &sealed).unwrap();
    let t = parse_transmission(&plain).unwrap();
    assert_eq!(
        Response::decode(t.command).unwrap(),
        Response::Err(ErrorCode::Proxy(ProxyError::NotAllowed))
    );
    // RFWD before any RKEY on a connection: no key yet.
    let (proxy3, _) = connect(&b).await;
    let (p3, _) = forward::seal_request(&key, &inner, &mut rand::rngs::OsRng).unwrap();
    assert_eq!(
        relay_err(proxy3.request(None, None, &Command::RelayForward(p3)).await),
        ErrorCode::Proxy(ProxyError::NoSession)
    );
    // Forwarding commands are unsigned: a signed one is refused by shape.
    assert_eq!(
        relay_err(
            proxy3
                .request(None, Some(&signing_key()), &Command::RelayKey)
                .await
        ),
        ErrorCode::Cmd(CmdError::HasAuth)
    );
}

#[tokio::test]
async fn a_non_send_command_through_the_proxy_api_is_refused() {
    let a = tls_relay(forwarding_on).await;
    let b = tls_relay(forwarding_on).await;
    let (recipient, _events) = connect(&b).await;
    let q = recipient.create_queue().await.unwrap();
    let (sender, _) = connect(&a).await;
    let via = sender.proxy(&b.address).await.unwrap();
    let r = via
        .request(Some(&q.recipient_id), Some(&q.recipient_key), &Command::Get)
        .await;
    assert_eq!(relay_err(r), ErrorCode::Proxy(ProxyError::NotAllowed));
    let r = via
        .request(Some(&q.recipient_id), Some(&q.recipient_key), &Command::Del)
        .await;
    assert_eq!(relay_err(r), ErrorCode::Proxy(ProxyError::NotAllowed));
    // The queue is still there.
    assert_eq!(recipient.get(&q).await.unwrap(), None);
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn key_material_is_checked_against_the_fingerprint_and_signature() {
    let b = tls_relay(forwarding_on).await;
    let c = tls_relay(forwarding_on).await;
    let rkey = |r: &TestRelay| {
        let address = r.address.clone();
        async move {
            let (p, _) = connect_tls(&address, client_config()).await.unwrap();
            match p.request(None, None, &Command::RelayKey).await.unwrap() {
                Response::RelayKey { key } => (p, key),
                r => panic!("{r:?}"),
            }
        }
    };
    let (_pb, kb) = rkey(&b).await;
    let (_pc, kc) = rkey(&c).await;
    kb.verify(
        &PinnedChain,
        &b.address.fingerprint,
        now(),
        &mut rand::rngs::OsRng,
    )
    .unwrap();
    // C's genuine material is not B's.
    assert!(matches!(
        kc.verify(
            &PinnedChain,
            &b.address.fingerprint,
            now(),
            &mut rand::rngs::OsRng
        ),
        Err(ForwardError::Chain(
            CertRejection::FingerprintMismatch { .. }
        ))
    ));
    // B's chain with another X25519 key (a proxy substituting its own): bad signature.
    let mut swapped = kb.clone();
    swapped.dh = crypto::x25519_public(&crypto::x25519_secret(&mut rand::rngs::OsRng));
    assert_eq!(
        swapped.verify(
            &PinnedChain,
            &b.address.fingerprint,
            now(),
            &mut rand::rngs::OsRng
        ),
        Err(ForwardError::Signature)
    );
    let mut other_session = kb.clone();
    other_session.session_id[0] ^= 1;
    assert_eq!(
        other_session.verify(
            &PinnedChain,
            &b.address.fingerprint,
            now(),
            &mut rand::rngs::OsRng
        ),
        Err(ForwardError::Signature)
    );
    // B's CA with C's online certificate: not signed by B's CA.
    let mut mixed = kb.clone();
    mixed.online_cert = kc.online_cert.clone();
    assert!(matches!(
        mixed.verify(
            &PinnedChain,
            &b.address.fingerprint,
            now(),
            &mut rand::rngs::OsRng
        ),
        Err(ForwardError::Chain(CertRejection::NotSignedByCa(_)))
    ));
    // Long after the online certificate expired.
    assert!(matches!(
        kb.verify(
            &PinnedChain,
            &b.address.fingerprint,
            now() + 5 * 365 * 86_400,
            &mut rand::rngs::OsRng
        ),
        Err(ForwardError::Chain(CertRejection::OnlineCertExpired))
    ));

    // Through the client API: a lying proxy that answers PRXY with such material.
    for (lie, check) in [
        (
            kc.clone(),
            (|e: &ForwardError| matches!(e, ForwardError::Chain(_))) as fn(&ForwardError) -> bool,
        ),
        (swapped.clone(), |e| *e == ForwardError::Signature),
    ] {
        let liar = lying_proxy(lie).await;
        let (client, _) = connect_tls(&liar, client_config()).await.unwrap();
        match client.proxy(&b.address).await {
            Err(ClientError::Forward(e)) => assert!(check(&e), "{e:?}"),
            r => panic!("{r:?}"),
        }
    }
}

/// A relay that answers every command with PKEY carrying `key`.
async fn lying_proxy(key: ForwardKey) -> RelayAddress {
    let dir = tempfile::tempdir().unwrap();
    let identity = RelayIdentity::create(&dir.path().join("liar")).unwrap();
    let acceptor = transport::acceptor(&identity).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let address = identity.address(RelayHost::Ipv4(Ipv4Addr::LOCALHOST), port);
    tokio::spawn(async move {
        let _dir = dir;
        while let Ok((tcp, _)) = listener.accept().await {
            let Ok((tls, sid)) = transport::accept(&acceptor, tcp).await else {
                continue;
            };
            let key = key.clone();
            tokio::spawn(async move {
                let d = Duration::from_secs(5);
                let (mut rd, mut wr) = tokio::io::split(tls);
                framing::write_block(&mut wr, &ServerHello::new(sid).encode(), d)
                    .await
                    .unwrap();
                framing::read_block(&mut rd, d, d).await.unwrap();
                while let Ok(block) = framing::read_block(&mut rd, Duration::from_secs(30), d).await
                {
                    for raw in decode_block(&block).unwrap() {
                        let t = parse_transmission(raw).unwrap();
                        let r = Response::ProxyKey {
                            session: EntityId([1; 24]),
                            key: key.clone(),
                        };
                        let out = encode_transmission(
                            None,
                            &signed_part(&t.corr_id, t.entity.as_ref(), &r.encode()),
                        );
                        let mut b = BlockBuilder::new();
                        assert!(b.push(&out));
                        if framing::write_block(&mut wr, &b.finish(), d).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    address
}

#[tokio::test]
async fn unreachable_bad_and_disabled_destinations_are_typed_errors() {
    let a = tls_relay(forwarding_on).await;
    let b = tls_relay(forwarding_on).await;
    let (sender, _) = connect(&a).await;

    // Nothing listens there.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let down = RelayAddress::new(
        b.address.fingerprint,
        RelayHost::Ipv4(Ipv4Addr::LOCALHOST),
        port,
    );
    assert_eq!(
        relay_err(sender.proxy(&down).await),
        ErrorCode::Proxy(ProxyError::Unreachable)
    );
    // B's port with another fingerprint: the proxy's pinned TLS refuses it.
    let c = tls_relay(forwarding_on).await;
    let wrong = RelayAddress::new(
        c.address.fingerprint,
        b.address.host.clone(),
        b.address.port,
    );
    assert_eq!(
        relay_err(sender.proxy(&wrong).await),
        ErrorCode::Proxy(ProxyError::Unreachable)
    );
    // Not an address.
    let r = sender
        .request(
            None,
            None,
            &Command::Proxy {
                destination: b"http://example.com".to_vec(),
            },
        )
        .await;
    assert_eq!(relay_err(r), ErrorCode::Proxy(ProxyError::BadAddress));
    // An unknown proxy session.
    let via = sender.proxy(&b.address).await.unwrap();
    let (payload, _) = forward::seal_request(
        &match sender
            .request(
                None,
                None,
                &Command::Proxy {
                    destination: b.address.to_string().into_bytes(),
                },
            )
            .await
            .unwrap()
        {
            Response::ProxyKey { key, .. } => key,
            r => panic!("{r:?}"),
        },
        b"x",
        &mut rand::rngs::OsRng,
    )
    .unwrap();
    let r = sender
        .request(
            Some(&EntityId([9; 24])),
            None,
            &Command::ProxyForward(payload),
        )
        .await;
    assert_eq!(relay_err(r), ErrorCode::Proxy(ProxyError::NoSession));
    via.ping().await.unwrap();
    assert!(a.relay.stats().snapshot().forward_failures >= 2);

    // A relay with forwarding off (the unit-test default) neither proxies nor forwards.
    let off = tls_relay(|_| test_config()).await;
    let (c_off, _) = connect(&off).await;
    assert_eq!(
        relay_err(c_off.proxy(&b.address).await),
        ErrorCode::Proxy(ProxyError::NotAllowed)
    );
    assert_eq!(
        relay_err(sender.proxy(&off.address).await),
        ErrorCode::Proxy(ProxyError::NotAllowed)
    );
}

#[tokio::test]
async fn the_destination_rotates_its_key_and_the_client_sets_the_session_up_again() {
    let a = tls_relay(forwarding_on).await;
    let b = tls_relay(|id| {
        let mut c = forwarding_on(id);
        c.forwarding.replay_window = 2;
        c
    })
    .await;
    let (recipient, _events) = connect(&b).await;
    let q = recipient.create_queue().await.unwrap();
    let (sender, _) = connect(&a).await;
    let via = sender.proxy(&b.address).await.unwrap();
    let first = via.destination_session_id();
    for i in 0..5u8 {
        via.send(&q.sender_id, None, &[i]).await.unwrap();
    }
    assert_ne!(via.destination_session_id(), first);
    let bs = b.relay.stats().snapshot();
    assert_eq!(bs.messages_in, 5);
    // The recipient's connection, then A's first and its replacements.
    assert!(bs.connections_total >= 3, "{bs:?}");
}

/// A TCP connection that never starts TLS is closed when the relay's configured handshake
/// time is up, not at the transport's default (it once was a hard-coded 10 s).
#[tokio::test(start_paused = true)]
async fn the_configured_handshake_timeout_governs_tls() {
    let r = tls_relay(|_| ServerConfig {
        handshake_timeout: Duration::from_secs(30),
        ..test_config()
    })
    .await;
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", r.address.port))
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(
        Duration::from_secs(600),
        tokio::io::AsyncReadExt::read_to_end(&mut tcp, &mut got),
    )
    .await
    .expect("the relay closed the connection");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(30) && waited < Duration::from_secs(31),
        "closed after {waited:?}"
    );
    assert_eq!(r.relay.stats().snapshot().connections_timed_out, 1);
}
