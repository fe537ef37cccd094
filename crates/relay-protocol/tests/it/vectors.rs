//! Golden vectors of the relay wire: every command's and every response's encoding (each
//! error code with its detail), a signed transmission and a whole 16 KiB block, from fixed
//! fields. The expected bytes are in `testdata/wire.txt`
//! (checked, never rewritten); a change to any encoding fails here before it reaches a
//! relay of another version. To add a vector: add it to `cases()`, run
//! `SMPX_PRINT_VECTORS=1 cargo test -p smpx-relay-protocol --test it vectors -- --nocapture`,
//! review the printed line and append it to the file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sha2::{Digest, Sha256};
use smpx_relay_protocol::command::{Command, Response};
use smpx_relay_protocol::crypto::SEALED_LEN;
use smpx_relay_protocol::forward::{ForwardKey, Sealed, FORWARD_SEALED_LEN, RESPONSE_SEALED_LEN};
use smpx_relay_protocol::transmission::{encode_transmission, signed_part};
use smpx_relay_protocol::{BlockBuilder, CmdError, CorrId, EntityId, ErrorCode, MsgId, ProxyError};

fn bytes(start: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| start.wrapping_add(i as u8)).collect()
}

fn arr<const N: usize>(start: u8) -> [u8; N] {
    bytes(start, N).try_into().unwrap()
}

fn sealed(start: u8) -> Sealed {
    Sealed {
        eph: arr(start),
        sealed: bytes(start.wrapping_add(0x40), FORWARD_SEALED_LEN),
    }
}

/// Every command, with fixed fields.
fn commands() -> Vec<(&'static str, Command)> {
    vec![
        (
            "NEW",
            Command::New {
                recipient_key: arr(0x10),
                recipient_dh: arr(0x30),
            },
        ),
        (
            "KEY",
            Command::Key {
                sender_key: arr(0x50),
            },
        ),
        (
            "SEND",
            Command::Send {
                body: b"hello, relay".to_vec(),
            },
        ),
        ("SUB", Command::Sub),
        ("GET", Command::Get),
        (
            "ACK",
            Command::Ack {
                msg_id: MsgId(arr(0x70)),
            },
        ),
        ("OFF", Command::Off),
        ("DEL", Command::Del),
        ("PING", Command::Ping),
        ("INFO", Command::Info),
        (
            "PAY",
            Command::Pay {
                request: br#"{"inputs":[],"outputs":[]}"#.to_vec(),
            },
        ),
        (
            "NEWC",
            Command::NewChannel {
                owner_key: arr(0x90),
            },
        ),
        (
            "JOIN",
            Command::Join {
                recipient_key: arr(0xa0),
                recipient_dh: arr(0xc0),
            },
        ),
        (
            "POST",
            Command::Post {
                body: b"to every member".to_vec(),
            },
        ),
        ("USAGE", Command::Usage),
        (
            "PRXY",
            Command::Proxy {
                destination: b"smpx://AAAA@relay.example:5223".to_vec(),
            },
        ),
        ("PFWD", Command::ProxyForward(sealed(0x01))),
        ("RKEY", Command::RelayKey),
        ("RFWD", Command::RelayForward(sealed(0x81))),
    ]
}

/// A forwarding key with fixed fields (the certificates are stand-in bytes: the wire only
/// carries their lengths and bytes).
fn forward_key(start: u8) -> ForwardKey {
    ForwardKey {
        session_id: arr(start),
        dh: arr(start.wrapping_add(0x20)),
        ca_cert: bytes(start.wrapping_add(0x40), 40),
        online_cert: bytes(start.wrapping_add(0x80), 50),
        signature: arr(start.wrapping_add(0xc0)),
    }
}

/// Every response, and every error code with each detail, with fixed fields.
fn responses() -> Vec<(&'static str, Response)> {
    let mut out = vec![
        (
            "IDS",
            Response::Ids {
                recipient_id: EntityId(arr(0x10)),
                sender_id: EntityId(arr(0x30)),
                server_dh: arr(0x50),
            },
        ),
        (
            "MSG",
            Response::Msg {
                msg_id: MsgId(arr(0x70)),
                sealed: bytes(0x90, SEALED_LEN),
            },
        ),
        ("OK", Response::Ok),
        ("END", Response::End),
        ("PONG", Response::Pong),
        (
            "INFO",
            Response::Info {
                json: br#"{"version":1}"#.to_vec(),
            },
        ),
        (
            "PAID",
            Response::Paid {
                json: br#"{"balance":5}"#.to_vec(),
            },
        ),
        (
            "USAGE",
            Response::Usage {
                json: br#"{"used":2}"#.to_vec(),
            },
        ),
        (
            "CHANNEL",
            Response::Channel {
                owner_id: EntityId(arr(0xa0)),
                join_id: EntityId(arr(0xb8)),
            },
        ),
        (
            "MEMBER",
            Response::Member {
                recipient_id: EntityId(arr(0xd0)),
                server_dh: arr(0xe8),
            },
        ),
        (
            "PKEY",
            Response::ProxyKey {
                session: EntityId(arr(0x05)),
                key: forward_key(0x11),
            },
        ),
        (
            "RKEY",
            Response::RelayKey {
                key: forward_key(0x22),
            },
        ),
        (
            "PRES",
            Response::Forwarded {
                sealed: bytes(0x33, RESPONSE_SEALED_LEN),
            },
        ),
    ];
    let codes = [
        ("ERR BLOCK", ErrorCode::Block),
        ("ERR AUTH", ErrorCode::Auth),
        ("ERR QUOTA", ErrorCode::Quota),
        ("ERR NO_MSG", ErrorCode::NoMsg),
        ("ERR LARGE_MSG", ErrorCode::LargeMsg),
        ("ERR INTERNAL", ErrorCode::Internal),
        ("ERR PAYMENT", ErrorCode::Payment),
        ("ERR CMD SYNTAX", ErrorCode::Cmd(CmdError::Syntax)),
        ("ERR CMD UNKNOWN", ErrorCode::Cmd(CmdError::Unknown)),
        ("ERR CMD PROHIBITED", ErrorCode::Cmd(CmdError::Prohibited)),
        ("ERR CMD NO_AUTH", ErrorCode::Cmd(CmdError::NoAuth)),
        ("ERR CMD HAS_AUTH", ErrorCode::Cmd(CmdError::HasAuth)),
        ("ERR CMD NO_ENTITY", ErrorCode::Cmd(CmdError::NoEntity)),
        ("ERR CMD HAS_ENTITY", ErrorCode::Cmd(CmdError::HasEntity)),
        (
            "ERR PROXY UNREACHABLE",
            ErrorCode::Proxy(ProxyError::Unreachable),
        ),
        (
            "ERR PROXY BAD_ADDRESS",
            ErrorCode::Proxy(ProxyError::BadAddress),
        ),
        (
            "ERR PROXY NO_SESSION",
            ErrorCode::Proxy(ProxyError::NoSession),
        ),
        (
            "ERR PROXY NOT_ALLOWED",
            ErrorCode::Proxy(ProxyError::NotAllowed),
        ),
        ("ERR PROXY CRYPTO", ErrorCode::Proxy(ProxyError::Crypto)),
        ("ERR PROXY REPLAY", ErrorCode::Proxy(ProxyError::Replay)),
        ("ERR LIMIT", ErrorCode::Limit),
    ];
    out.extend(codes.into_iter().map(|(n, c)| (n, Response::Err(c))));
    out
}

/// name → encoding, for every vector.
fn cases() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = commands()
        .into_iter()
        .map(|(name, c)| (format!("command {name}"), c.encode()))
        .chain(
            responses()
                .into_iter()
                .map(|(name, r)| (format!("response {name}"), r.encode())),
        )
        .collect();
    let entity = EntityId(arr(0xe0));
    let signed = signed_part(
        &CorrId(arr(0x20)),
        Some(&entity),
        &Command::Send {
            body: b"signed".to_vec(),
        }
        .encode(),
    );
    let with_auth = encode_transmission(Some(&arr::<64>(0x33)), &signed);
    let unsigned = encode_transmission(None, &signed_part(&CorrId(arr(0x21)), None, b"P"));
    out.push(("transmission signed SEND".into(), with_auth.clone()));
    out.push(("transmission unsigned PING".into(), unsigned.clone()));
    let mut block = BlockBuilder::new();
    assert!(block.push(&with_auth));
    assert!(block.push(&unsigned));
    out.push(("block of both".into(), block.finish()));
    out
}

/// One line per vector: name, length, SHA-256, and the first 64 bytes in hex.
fn line(name: &str, enc: &[u8]) -> String {
    let head = &enc[..enc.len().min(64)];
    format!(
        "{name} | {} | {} | {}",
        enc.len(),
        hex::encode(Sha256::digest(enc)),
        hex::encode(head)
    )
}

#[test]
fn every_encoding_matches_its_golden_vector() {
    let file = include_str!("testdata/wire.txt");
    let expected: Vec<&str> = file
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .collect();
    let got: Vec<String> = cases().iter().map(|(n, e)| line(n, e)).collect();
    if std::env::var_os("SMPX_PRINT_VECTORS").is_some() {
        for l in &got {
            println!("{l}");
        }
    }
    assert_eq!(
        got.len(),
        expected.len(),
        "every vector in the file, and no more"
    );
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(g, e, "a relay wire encoding changed");
    }
}

#[test]
fn every_golden_command_and_response_decodes_to_itself() {
    for (name, c) in commands() {
        assert_eq!(Command::decode(&c.encode()).unwrap(), c, "{name}");
    }
    for (name, r) in responses() {
        assert_eq!(Response::decode(&r.encode()).unwrap(), r, "{name}");
    }
}
