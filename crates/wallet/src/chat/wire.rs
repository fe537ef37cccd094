//! The invitation: the text one person hands another to be contacted (frozen wire format).
//!
//! `smpx-invite:` and the base64url (no padding) of
//! `version (1) ‖ sender id (24) ‖ inviter's X25519 public key (32) ‖ relay address (UTF-8) ‖
//! first 4 bytes of SHA-256 of all that`. The checksum catches mistyped or altered text before
//! anything is sent. Golden vectors: `testdata/invitations.json`.

use super::ChatError;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use smpx_relay_protocol::RelayAddress;
use smpx_relay_protocol::{EntityId, ID_LEN};
use std::fmt;

/// What every invitation starts with.
pub const INVITATION_PREFIX: &str = "smpx-invite:";
const INVITATION_V1: u8 = 1;
const INVITATION_MAX_LEN: usize = 2048;
const CHECKSUM_LEN: usize = 4;

/// A queue to send to: what an invitation carries.
#[derive(Clone, PartialEq, Eq)]
pub struct Invitation {
    pub relay: RelayAddress,
    pub sender_id: EntityId,
    /// The inviter's X25519 public key for this contact.
    pub e2e_public: [u8; 32],
}

impl fmt::Debug for Invitation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Invitation")
            .field("relay", &self.relay.to_string())
            .finish_non_exhaustive()
    }
}

impl fmt::Display for Invitation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let relay = self.relay.to_string();
        let mut raw = Vec::with_capacity(1 + ID_LEN + 32 + relay.len() + CHECKSUM_LEN);
        raw.push(INVITATION_V1);
        raw.extend_from_slice(&self.sender_id.0);
        raw.extend_from_slice(&self.e2e_public);
        raw.extend_from_slice(relay.as_bytes());
        let sum = Sha256::digest(&raw);
        raw.extend_from_slice(&sum[..CHECKSUM_LEN]);
        write!(f, "{INVITATION_PREFIX}{}", URL_SAFE_NO_PAD.encode(raw))
    }
}

impl std::str::FromStr for Invitation {
    type Err = ChatError;

    fn from_str(s: &str) -> Result<Self, ChatError> {
        let s = s.trim();
        if s.len() > INVITATION_MAX_LEN {
            return Err(ChatError::BadInvitation("too long"));
        }
        let b64 = s
            .strip_prefix(INVITATION_PREFIX)
            .ok_or(ChatError::BadInvitation(
                "it does not start with smpx-invite:",
            ))?;
        let raw = URL_SAFE_NO_PAD
            .decode(b64)
            .map_err(|_| ChatError::BadInvitation("not base64url"))?;
        if raw.len() < 1 + ID_LEN + 32 + CHECKSUM_LEN + 1 {
            return Err(ChatError::BadInvitation("truncated"));
        }
        let (body, sum) = raw.split_at(raw.len() - CHECKSUM_LEN);
        if Sha256::digest(body)[..CHECKSUM_LEN] != *sum {
            return Err(ChatError::BadInvitation(
                "checksum mismatch (altered or mistyped)",
            ));
        }
        if body[0] != INVITATION_V1 {
            return Err(ChatError::BadInvitation("unknown version"));
        }
        let mut sender_id = [0u8; ID_LEN];
        sender_id.copy_from_slice(&body[1..1 + ID_LEN]);
        let mut e2e_public = [0u8; 32];
        e2e_public.copy_from_slice(&body[1 + ID_LEN..1 + ID_LEN + 32]);
        let relay = std::str::from_utf8(&body[1 + ID_LEN + 32..])
            .ok()
            .and_then(|r| r.parse::<RelayAddress>().ok())
            .ok_or(ChatError::BadInvitation("bad relay address"))?;
        Ok(Invitation {
            relay,
            sender_id: EntityId(sender_id),
            e2e_public,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    #[test]
    fn invitation_roundtrip_and_every_altered_character_is_refused() {
        let inv = Invitation {
            relay: super::super::test_address(),
            sender_id: EntityId([7; 24]),
            e2e_public: [9; 32],
        };
        let text = inv.to_string();
        assert!(text.starts_with(INVITATION_PREFIX));
        assert_eq!(text.parse::<Invitation>().unwrap(), inv);
        let b64 = &text[INVITATION_PREFIX.len()..];
        for i in 0..b64.len() {
            let mut altered = b64.as_bytes().to_vec();
            altered[i] = if altered[i] == b'A' { b'B' } else { b'A' };
            let t = format!("{INVITATION_PREFIX}{}", String::from_utf8(altered).unwrap());
            assert!(
                matches!(t.parse::<Invitation>(), Err(ChatError::BadInvitation(_))),
                "position {i}"
            );
        }
        for bad in ["", "smpx-invite:", "hello", &text[..text.len() - 3]] {
            assert!(matches!(
                bad.parse::<Invitation>(),
                Err(ChatError::BadInvitation(_))
            ));
        }
    }

    // ---------------------------------------------------------------------------------------
    // Golden vectors: testdata/invitations.json (never rewritten by a test).

    const VECTORS: &str = include_str!("testdata/invitations.json");

    /// `raw` with its checksum, as invitation text.
    fn text_of(raw: &[u8]) -> String {
        let mut raw = raw.to_vec();
        let sum = Sha256::digest(&raw);
        raw.extend_from_slice(&sum[..CHECKSUM_LEN]);
        format!("{INVITATION_PREFIX}{}", URL_SAFE_NO_PAD.encode(raw))
    }

    #[test]
    fn invitation_golden_vectors() {
        let v: Value = serde_json::from_str(VECTORS).unwrap();
        let valid = v["valid"].as_array().unwrap();
        assert!(valid.len() >= 3);
        for case in valid {
            let name = case["name"].as_str().unwrap();
            let inv = Invitation {
                relay: case["relay"].as_str().unwrap().parse().unwrap(),
                sender_id: EntityId(
                    hex::decode(case["sender_id"].as_str().unwrap())
                        .unwrap()
                        .try_into()
                        .unwrap(),
                ),
                e2e_public: hex::decode(case["e2e_public"].as_str().unwrap())
                    .unwrap()
                    .try_into()
                    .unwrap(),
            };
            let text = case["text"].as_str().unwrap();
            assert_eq!(inv.to_string(), text, "{name}");
            assert_eq!(text.parse::<Invitation>().unwrap(), inv, "{name}");
            let raw = URL_SAFE_NO_PAD
                .decode(&text[INVITATION_PREFIX.len()..])
                .unwrap();
            assert_eq!(hex::encode(&raw), case["raw"], "{name}");
            // Surrounding whitespace (a pasted line) is accepted.
            assert_eq!(
                format!("  {text}\n").parse::<Invitation>().unwrap(),
                inv,
                "{name}"
            );
        }
        let invalid = v["invalid"].as_array().unwrap();
        assert!(invalid.len() >= 5);
        for case in invalid {
            let text = case["text"].as_str().unwrap();
            match text.parse::<Invitation>() {
                Err(ChatError::BadInvitation(why)) => assert_eq!(why, case["why"], "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    /// Prints `testdata/invitations.json`'s vectors:
    /// `SMPX_PRINT_VECTORS=1 cargo test -p smpx-wallet --lib print_invitation_vectors -- --nocapture`.
    #[test]
    fn print_invitation_vectors() {
        if std::env::var_os("SMPX_PRINT_VECTORS").is_none() {
            return;
        }
        let fp = URL_SAFE_NO_PAD.encode(Sha256::digest(b"smpx test relay CA"));
        let relays = [
            format!("smpx://{fp}@127.0.0.1:7410"),
            format!("smpx://{fp}@relay.example.org:443"),
            format!("smpx://{fp}@[::1]:7410"),
        ];
        let mut valid = Vec::new();
        for (i, relay) in relays.iter().enumerate() {
            let inv = Invitation {
                relay: relay.parse().unwrap(),
                sender_id: EntityId(std::array::from_fn(|j| (j + 24 * i) as u8)),
                e2e_public: x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(
                    [0x30 + i as u8; 32],
                ))
                .to_bytes(),
            };
            let text = inv.to_string();
            let raw = URL_SAFE_NO_PAD
                .decode(&text[INVITATION_PREFIX.len()..])
                .unwrap();
            valid.push(serde_json::json!({
                "name": format!("relay {}", inv.relay),
                "relay": inv.relay.to_string(),
                "sender_id": hex::encode(inv.sender_id.0),
                "e2e_public": hex::encode(inv.e2e_public),
                "raw": hex::encode(raw),
                "text": text,
            }));
        }
        let good = valid[0]["text"].as_str().unwrap().to_owned();
        let mut body = URL_SAFE_NO_PAD
            .decode(&good[INVITATION_PREFIX.len()..])
            .unwrap();
        body.truncate(body.len() - CHECKSUM_LEN);
        let mut v2 = body.clone();
        v2[0] = 2;
        let mut bad_relay = body[..1 + ID_LEN + 32].to_vec();
        bad_relay.extend_from_slice(b"http://example.org");
        let mut altered = good.clone().into_bytes();
        let last = altered.len() - 1;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        let invalid = vec![
            serde_json::json!({"text": good.replacen("smpx-invite:", "smpx-invitation:", 1), "why": "it does not start with smpx-invite:"}),
            serde_json::json!({"text": format!("{INVITATION_PREFIX}not*base64"), "why": "not base64url"}),
            serde_json::json!({"text": text_of(&body[..1 + ID_LEN + 32]), "why": "truncated"}),
            serde_json::json!({"text": String::from_utf8(altered).unwrap(), "why": "checksum mismatch (altered or mistyped)"}),
            serde_json::json!({"text": text_of(&v2), "why": "unknown version"}),
            serde_json::json!({"text": text_of(&bad_relay), "why": "bad relay address"}),
            serde_json::json!({"text": format!("{INVITATION_PREFIX}{}", "A".repeat(INVITATION_MAX_LEN)), "why": "too long"}),
        ];
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"valid": valid, "invalid": invalid}))
                .unwrap()
        );
    }

    fn relay() -> impl Strategy<Value = RelayAddress> {
        let host = prop_oneof![
            any::<[u8; 4]>().prop_map(|o| std::net::Ipv4Addr::from(o).to_string()),
            "[a-z][a-z0-9]{0,10}(\\.[a-z][a-z0-9]{0,10}){0,3}",
        ];
        (any::<[u8; 32]>(), host, 1u16..).prop_filter_map("not an address", |(fp, host, port)| {
            format!("smpx://{}@{host}:{port}", URL_SAFE_NO_PAD.encode(fp))
                .parse()
                .ok()
        })
    }

    proptest! {
        #[test]
        fn invitation_decode_of_encode_is_identity(
            relay in relay(),
            sender in any::<[u8; 24]>(),
            e2e_public in any::<[u8; 32]>(),
        ) {
            let inv = Invitation { relay, sender_id: EntityId(sender), e2e_public };
            prop_assert_eq!(inv.to_string().parse::<Invitation>().unwrap(), inv);
        }

        #[test]
        fn invitation_decode_of_arbitrary_text_never_panics(s in "\\PC{0,300}") {
            let _ = s.parse::<Invitation>();
            let _ = format!("{INVITATION_PREFIX}{s}").parse::<Invitation>();
        }

        /// Bytes with a valid checksum reach every check after it.
        #[test]
        fn invitation_decode_of_arbitrary_checksummed_bytes_never_panics(
            raw in proptest::collection::vec(any::<u8>(), 0..200),
            version_one in any::<bool>(),
        ) {
            let mut raw = raw;
            if version_one && !raw.is_empty() {
                raw[0] = INVITATION_V1;
            }
            if let Ok(inv) = text_of(&raw).parse::<Invitation>() {
                prop_assert_eq!(inv.to_string().parse::<Invitation>().unwrap(), inv);
            }
        }
    }
}
