//! Decoders are total (random input never panics) and every encoding round-trips.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use smpx_relay_protocol::command::{Command, Response};
use smpx_relay_protocol::crypto::{self, Content, DeliveryKey, SEALED_LEN};
use smpx_relay_protocol::forward::{
    ForwardKey, Sealed, FORWARD_SEALED_LEN, MAX_CERT_LEN, RESPONSE_SEALED_LEN,
};
use smpx_relay_protocol::handshake::{ClientHello, ServerHello};
use smpx_relay_protocol::transmission::{encode_transmission, parse_transmission, signed_part};
use smpx_relay_protocol::{
    decode_block, BlockBuilder, CmdError, CorrId, EntityId, ErrorCode, MsgId, ProxyError,
    BLOCK_SIZE, MAX_BODY,
};

fn id() -> impl Strategy<Value = [u8; 24]> {
    any::<[u8; 24]>()
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        (any::<[u8; 32]>(), any::<[u8; 32]>()).prop_map(|(k, d)| Command::New {
            recipient_key: k,
            recipient_dh: d
        }),
        any::<[u8; 32]>().prop_map(|k| Command::Key { sender_key: k }),
        proptest::collection::vec(any::<u8>(), 0..2000).prop_map(|body| Command::Send { body }),
        Just(Command::Sub),
        Just(Command::Get),
        id().prop_map(|m| Command::Ack { msg_id: MsgId(m) }),
        Just(Command::Off),
        Just(Command::Del),
        Just(Command::Ping),
        Just(Command::Info),
        proptest::collection::vec(any::<u8>(), 0..2000)
            .prop_map(|request| Command::Pay { request }),
        any::<[u8; 32]>().prop_map(|k| Command::NewChannel { owner_key: k }),
        (any::<[u8; 32]>(), any::<[u8; 32]>()).prop_map(|(k, d)| Command::Join {
            recipient_key: k,
            recipient_dh: d
        }),
        proptest::collection::vec(any::<u8>(), 0..2000).prop_map(|body| Command::Post { body }),
        Just(Command::Usage),
        proptest::collection::vec(
            any::<u8>(),
            0..=smpx_relay_protocol::address::MAX_ADDRESS_LEN
        )
        .prop_map(|destination| Command::Proxy { destination }),
        sealed().prop_map(Command::ProxyForward),
        Just(Command::RelayKey),
        sealed().prop_map(Command::RelayForward),
    ]
}

fn sealed() -> impl Strategy<Value = Sealed> {
    (any::<[u8; 32]>(), any::<u8>()).prop_map(|(eph, fill)| Sealed {
        eph,
        sealed: vec![fill; FORWARD_SEALED_LEN],
    })
}

fn cert() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..=MAX_CERT_LEN)
}

fn forward_key() -> impl Strategy<Value = ForwardKey> {
    (
        any::<[u8; 32]>(),
        any::<[u8; 32]>(),
        cert(),
        cert(),
        any::<[u8; 64]>(),
    )
        .prop_map(
            |(session_id, dh, ca_cert, online_cert, signature)| ForwardKey {
                session_id,
                dh,
                ca_cert,
                online_cert,
                signature,
            },
        )
}

fn json() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..2000)
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    prop_oneof![
        Just(ErrorCode::Block),
        Just(ErrorCode::Auth),
        Just(ErrorCode::Quota),
        Just(ErrorCode::NoMsg),
        Just(ErrorCode::LargeMsg),
        Just(ErrorCode::Internal),
        Just(ErrorCode::Payment),
        Just(ErrorCode::Limit),
        prop_oneof![
            Just(ProxyError::Unreachable),
            Just(ProxyError::BadAddress),
            Just(ProxyError::NoSession),
            Just(ProxyError::NotAllowed),
            Just(ProxyError::Crypto),
            Just(ProxyError::Replay),
        ]
        .prop_map(ErrorCode::Proxy),
        prop_oneof![
            Just(CmdError::Syntax),
            Just(CmdError::Unknown),
            Just(CmdError::Prohibited),
            Just(CmdError::NoAuth),
            Just(CmdError::HasAuth),
            Just(CmdError::NoEntity),
            Just(CmdError::HasEntity),
        ]
        .prop_map(ErrorCode::Cmd),
    ]
}

fn response() -> impl Strategy<Value = Response> {
    prop_oneof![
        (id(), id(), any::<[u8; 32]>()).prop_map(|(r, s, k)| Response::Ids {
            recipient_id: EntityId(r),
            sender_id: EntityId(s),
            server_dh: k
        }),
        (id(), any::<u8>()).prop_map(|(m, fill)| Response::Msg {
            msg_id: MsgId(m),
            sealed: vec![fill; SEALED_LEN]
        }),
        Just(Response::Ok),
        Just(Response::End),
        Just(Response::Pong),
        error_code().prop_map(Response::Err),
        json().prop_map(|json| Response::Info { json }),
        json().prop_map(|json| Response::Paid { json }),
        json().prop_map(|json| Response::Usage { json }),
        (id(), id()).prop_map(|(o, j)| Response::Channel {
            owner_id: EntityId(o),
            join_id: EntityId(j)
        }),
        (id(), any::<[u8; 32]>()).prop_map(|(r, k)| Response::Member {
            recipient_id: EntityId(r),
            server_dh: k
        }),
        (id(), forward_key()).prop_map(|(s, key)| Response::ProxyKey {
            session: EntityId(s),
            key
        }),
        forward_key().prop_map(|key| Response::RelayKey { key }),
        any::<u8>().prop_map(|fill| Response::Forwarded {
            sealed: vec![fill; RESPONSE_SEALED_LEN]
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_transmission(&bytes);
        let _ = Command::decode(&bytes);
        let _ = Response::decode(&bytes);
        let key = DeliveryKey::for_recipient(&[1; 32], &crypto::x25519_public(&[2; 32])).unwrap();
        let _ = crypto::open(&key, &MsgId([0; 24]), &bytes);
    }

    #[test]
    fn random_blocks_never_panic(
        head in proptest::collection::vec(any::<u8>(), 0..64),
        fill in any::<u8>(),
        len in prop_oneof![Just(BLOCK_SIZE), 0..BLOCK_SIZE + 10],
    ) {
        let mut block = head;
        block.resize(len, fill);
        let _ = decode_block(&block);
        let _ = ServerHello::decode(&block);
        let _ = ClientHello::decode(&block);
        if let Ok(ts) = decode_block(&block) {
            for t in ts {
                if let Ok(t) = parse_transmission(t) {
                    let _ = Command::decode(t.command);
                    let _ = Response::decode(t.command);
                }
            }
        }
    }

    #[test]
    fn mutated_valid_blocks_never_panic(
        flips in proptest::collection::vec((0usize..300, any::<u8>()), 1..8),
    ) {
        let mut b = BlockBuilder::new();
        for cmd in [Command::Ping, Command::Ack { msg_id: MsgId([5; 24]) }, Command::Send { body: vec![1; 40] }] {
            b.push(&encode_transmission(
                Some(&[9; 64]),
                &signed_part(&CorrId([1; 24]), Some(&EntityId([2; 24])), &cmd.encode()),
            ));
        }
        let mut block = b.finish();
        for (at, v) in flips {
            block[at] = v;
        }
        if let Ok(ts) = decode_block(&block) {
            for t in ts {
                if let Ok(t) = parse_transmission(t) {
                    let _ = Command::decode(t.command).map_err(|e| e.wire_code());
                }
            }
        }
    }

    #[test]
    fn commands_round_trip(cmd in command()) {
        prop_assert_eq!(Command::decode(&cmd.encode()).unwrap(), cmd);
    }

    #[test]
    fn responses_round_trip(r in response()) {
        prop_assert_eq!(Response::decode(&r.encode()).unwrap(), r);
    }

    #[test]
    fn transmissions_and_blocks_round_trip(
        items in proptest::collection::vec(
            (proptest::option::of(any::<[u8; 32]>()), id(), proptest::option::of(id()), command()),
            1..6,
        ),
    ) {
        let mut b = BlockBuilder::new();
        let mut expect = vec![];
        for (sig_seed, corr, entity, cmd) in &items {
            let sig = sig_seed.map(|s| { let mut a = [0u8; 64]; a[..32].copy_from_slice(&s); a });
            let entity = entity.map(EntityId);
            let t = encode_transmission(
                sig.as_ref(),
                &signed_part(&CorrId(*corr), entity.as_ref(), &cmd.encode()),
            );
            if b.push(&t) {
                expect.push((sig, CorrId(*corr), entity, cmd.clone()));
            }
        }
        let block = b.finish();
        prop_assert_eq!(block.len(), BLOCK_SIZE);
        let ts = decode_block(&block).unwrap();
        prop_assert_eq!(ts.len(), expect.len());
        for (raw, (sig, corr, entity, cmd)) in ts.into_iter().zip(expect) {
            let t = parse_transmission(raw).unwrap();
            prop_assert_eq!(t.auth, sig);
            prop_assert_eq!(t.corr_id, corr);
            prop_assert_eq!(t.entity, entity);
            prop_assert_eq!(Command::decode(t.command).unwrap(), cmd);
        }
    }

    #[test]
    fn deliveries_round_trip_at_one_size(
        body in proptest::collection::vec(any::<u8>(), 0..MAX_BODY),
        at in any::<u64>(),
        m in id(),
        marker in any::<bool>(),
    ) {
        let server = crypto::x25519_secret(&mut rand::rngs::OsRng);
        let recipient = crypto::x25519_secret(&mut rand::rngs::OsRng);
        let a = DeliveryKey::for_relay(&server, &crypto::x25519_public(&recipient)).unwrap();
        let b = DeliveryKey::for_recipient(&recipient, &crypto::x25519_public(&server)).unwrap();
        let content = if marker { Content::QuotaExceeded } else { Content::Body(body) };
        let sealed = crypto::seal(&a, &MsgId(m), at, &content).unwrap();
        prop_assert_eq!(sealed.len(), SEALED_LEN);
        let d = crypto::open(&b, &MsgId(m), &sealed).unwrap();
        prop_assert_eq!(d.at, at);
        prop_assert_eq!(d.content, content);
    }
}

#[test]
fn every_field_size_error_is_typed() {
    // Each command with one byte too few and one too many.
    for cmd in [
        Command::New {
            recipient_key: [1; 32],
            recipient_dh: [2; 32],
        },
        Command::Key {
            sender_key: [1; 32],
        },
        Command::Ack {
            msg_id: MsgId([1; 24]),
        },
        Command::Sub,
    ] {
        let e = cmd.encode();
        if e.len() > 1 {
            let short = Command::decode(&e[..e.len() - 1]).unwrap_err();
            assert_eq!(
                short.wire_code(),
                ErrorCode::Cmd(CmdError::Syntax),
                "{cmd:?}"
            );
        }
        let mut long = e.clone();
        long.push(0);
        assert_eq!(
            Command::decode(&long).unwrap_err().wire_code(),
            ErrorCode::Cmd(CmdError::Syntax)
        );
    }
    let big = Command::Send {
        body: vec![0; MAX_BODY + 1],
    }
    .encode();
    assert_eq!(
        Command::decode(&big).unwrap_err().wire_code(),
        ErrorCode::LargeMsg
    );
    assert_eq!(
        Command::decode(b"?").unwrap_err().wire_code(),
        ErrorCode::Cmd(CmdError::Unknown)
    );
    assert!(Command::decode(b"").is_err());
}

#[test]
fn the_largest_messages_fit_a_block() {
    let send = Command::Send {
        body: vec![0; MAX_BODY],
    }
    .encode();
    let t = encode_transmission(
        Some(&[0; 64]),
        &signed_part(&CorrId([1; 24]), Some(&EntityId([2; 24])), &send),
    );
    assert!(BlockBuilder::new().push(&t));
    let msg = Response::Msg {
        msg_id: MsgId([3; 24]),
        sealed: vec![0; SEALED_LEN],
    }
    .encode();
    let t = encode_transmission(
        None,
        &signed_part(&CorrId::PUSH, Some(&EntityId([2; 24])), &msg),
    );
    assert!(BlockBuilder::new().push(&t));
}
