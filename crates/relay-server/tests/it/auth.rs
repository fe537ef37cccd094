//! Authorisation: missing, wrong and replayed signatures, unknown queue ids, secured queues.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::*;
use smpx_relay_client::ClientError;
use smpx_relay_protocol::command::{Command, Response};
use smpx_relay_protocol::{CmdError, CorrId, EntityId, ErrorCode};

#[tokio::test]
async fn recipient_commands_need_the_recipient_signature() {
    let (relay, addr) = start(test_config()).await;
    let mut c = RawConn::connect(addr).await;
    let (rid, sid, _, key, _) = raw_new_queue(&mut c).await;

    // Missing: a shape error, answered before any lookup.
    let r = c.call(Some(&rid), None, &Command::Sub).await;
    assert_eq!(r, Response::Err(ErrorCode::Cmd(CmdError::NoAuth)));
    // Wrong key.
    let r = c
        .call(Some(&rid), Some(&signing_key()), &Command::Sub)
        .await;
    assert_eq!(r, Response::Err(ErrorCode::Auth));
    // The sender id is not a recipient id.
    let r = c.call(Some(&sid), Some(&key), &Command::Sub).await;
    assert_eq!(r, Response::Err(ErrorCode::Auth));
    // Right key.
    assert_eq!(
        c.call(Some(&rid), Some(&key), &Command::Sub).await,
        Response::Ok
    );
    // No entity / entity where none belongs.
    let r = c.call(None, Some(&key), &Command::Get).await;
    assert_eq!(r, Response::Err(ErrorCode::Cmd(CmdError::NoEntity)));
    let r = c.call(Some(&rid), None, &Command::Ping).await;
    assert_eq!(r, Response::Err(ErrorCode::Cmd(CmdError::HasEntity)));
    let r = c.call(None, Some(&key), &Command::Ping).await;
    assert_eq!(r, Response::Err(ErrorCode::Cmd(CmdError::HasAuth)));
    assert!(relay.stats().snapshot().auth_failures >= 2);
}

#[tokio::test]
async fn unknown_queue_ids_answer_auth_like_wrong_signatures() {
    let (relay, addr) = start(test_config()).await;
    let mut c = RawConn::connect(addr).await;
    let (rid, _, _, _, _) = raw_new_queue(&mut c).await;
    let key = signing_key();
    let unknown = EntityId(rand::random());
    for cmd in [
        Command::Sub,
        Command::Get,
        Command::Off,
        Command::Del,
        Command::Key {
            sender_key: key.verifying_key().to_bytes(),
        },
    ] {
        let a = c.call(Some(&unknown), Some(&key), &cmd).await;
        let b = c.call(Some(&rid), Some(&key), &cmd).await;
        assert_eq!(a, Response::Err(ErrorCode::Auth), "{cmd:?} on unknown id");
        assert_eq!(a, b, "{cmd:?}: unknown id and wrong key look the same");
    }
    // SEND to an unknown sender id, signed or not.
    let send = Command::Send {
        body: b"x".to_vec(),
    };
    assert_eq!(
        c.call(Some(&unknown), None, &send).await,
        Response::Err(ErrorCode::Auth)
    );
    assert_eq!(
        c.call(Some(&unknown), Some(&key), &send).await,
        Response::Err(ErrorCode::Auth)
    );
    assert_eq!(relay.stats().snapshot().auth_failures, 12);
}

#[tokio::test]
async fn a_signature_from_another_session_is_refused() {
    let (_relay, addr) = start(test_config()).await;
    let mut a = RawConn::connect(addr).await;
    let mut b = RawConn::connect(addr).await;
    let (rid, _, _, key, _) = raw_new_queue(&mut a).await;

    // Signed for session A, replayed byte for byte on session B.
    let corr = CorrId(rand::random());
    let t = a.transmission(corr, Some(&rid), Some(&key), &Command::Get);
    b.send(std::slice::from_ref(&t)).await;
    let got = b.recv().await.unwrap();
    assert_eq!(got[0].corr, corr);
    assert_eq!(got[0].response, Response::Err(ErrorCode::Auth));
    // The same bytes on A are fine.
    a.send(&[t]).await;
    assert_eq!(a.recv().await.unwrap()[0].response, Response::Ok);
}

#[tokio::test]
async fn new_must_be_signed_by_the_key_it_registers() {
    let (_relay, addr) = start(test_config()).await;
    let mut c = RawConn::connect(addr).await;
    let key = signing_key();
    let cmd = Command::New {
        recipient_key: key.verifying_key().to_bytes(),
        recipient_dh: smpx_relay_protocol::crypto::x25519_public(
            &smpx_relay_protocol::crypto::x25519_secret(&mut rand::rngs::OsRng),
        ),
    };
    let r = c.call(None, Some(&signing_key()), &cmd).await;
    assert_eq!(r, Response::Err(ErrorCode::Auth));
    let r = c.call(None, None, &cmd).await;
    assert_eq!(r, Response::Err(ErrorCode::Cmd(CmdError::NoAuth)));
    // A low-order X25519 key would make every delivery readable by anyone.
    let weak = Command::New {
        recipient_key: key.verifying_key().to_bytes(),
        recipient_dh: [0; 32],
    };
    let r = c.call(None, Some(&key), &weak).await;
    assert_eq!(r, Response::Err(ErrorCode::Cmd(CmdError::Syntax)));
}

#[tokio::test]
async fn secured_queues_take_only_the_sender_key() {
    let (_relay, addr) = start(test_config()).await;
    let (recipient, _) = client(addr).await;
    let (sender, _) = client(addr).await;
    let q = recipient.create_queue().await.unwrap();

    // Before KEY an unsigned SEND is the confirmation; a signed one has no key to match.
    sender.send(&q.sender_id, None, b"hello").await.unwrap();
    let sk = signing_key();
    assert!(matches!(
        sender.send(&q.sender_id, Some(&sk), b"early").await,
        Err(ClientError::Relay(ErrorCode::Auth))
    ));

    recipient.secure(&q, &sk.verifying_key()).await.unwrap();
    // Retrying KEY with the same key is fine, another key is not.
    recipient.secure(&q, &sk.verifying_key()).await.unwrap();
    assert!(matches!(
        recipient.secure(&q, &signing_key().verifying_key()).await,
        Err(ClientError::Relay(ErrorCode::Auth))
    ));
    for (key, ok) in [
        (None, false),
        (Some(signing_key()), false),
        (Some(sk.clone()), true),
    ] {
        let r = sender.send(&q.sender_id, key.as_ref(), b"m").await;
        assert_eq!(r.is_ok(), ok, "{r:?}");
    }

    // Suspended: senders are refused (AUTH, as for a missing queue), the recipient drains.
    recipient.suspend(&q).await.unwrap();
    assert!(matches!(
        sender.send(&q.sender_id, Some(&sk), b"late").await,
        Err(ClientError::Relay(ErrorCode::Auth))
    ));
    let m = recipient.get(&q).await.unwrap().unwrap();
    assert_eq!(
        m.content,
        smpx_relay_protocol::crypto::Content::Body(b"hello".to_vec())
    );

    // Deleted: every command answers AUTH.
    recipient.delete(&q).await.unwrap();
    assert!(matches!(
        recipient.get(&q).await,
        Err(ClientError::Relay(ErrorCode::Auth))
    ));
    assert!(matches!(
        sender.send(&q.sender_id, Some(&sk), b"gone").await,
        Err(ClientError::Relay(ErrorCode::Auth))
    ));
}

/// An unknown id and a wrong signature on an existing queue take the same path: both verify
/// exactly one signature (the unknown id against a dummy key) and answer AUTH. Counted, not
/// timed: if unknown ids skipped verification, `signatures_verified` would not move for them.
#[tokio::test]
async fn unknown_ids_cost_what_wrong_signatures_cost() {
    let (relay, addr) = start(test_config()).await;
    let mut c = RawConn::connect(addr).await;
    let (rid, _, _, _, _) = raw_new_queue(&mut c).await;
    let wrong = signing_key();
    let unknown = EntityId(rand::random());
    for (round, id) in [(0u8, &unknown), (1, &rid), (2, &unknown), (3, &rid)] {
        let before = relay.stats().snapshot();
        let ts: Vec<_> = (0..140u8)
            .map(|i| {
                let mut corr = [i + 1; 24];
                corr[23] = round;
                c.transmission(CorrId(corr), Some(id), Some(&wrong), &Command::Get)
            })
            .collect();
        c.send(&ts).await;
        let mut n = 0;
        while n < ts.len() {
            let got = c.recv().await.unwrap();
            assert!(got
                .iter()
                .all(|g| g.response == Response::Err(ErrorCode::Auth)));
            n += got.len();
        }
        let after = relay.stats().snapshot();
        assert_eq!(
            after.signatures_verified - before.signatures_verified,
            140,
            "round {round}: one verification per GET, unknown id or not"
        );
        assert_eq!(after.auth_failures - before.auth_failures, 140);
    }
}
