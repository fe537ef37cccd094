//! The end-to-end envelope: the body of every relay message between two contacts (frozen
//! wire format), and the key agreement and padding behind it.
//!
//! `version (1) ‖ kind ('H' hello | 'M' message) ‖ [acceptor's X25519 public key (32), in a
//! hello] ‖ nonce (24) ‖ XChaCha20-Poly1305(k, nonce, u16 BE len ‖ JSON payload ‖ zero padding
//! to PADDED_LEN; aad = header ‖ direction byte ('I' to the inviter, 'A' to the acceptor))`,
//! with `k = SHA-256("smpx-chat/v1 e2e" ‖ X25519(mine, theirs) ‖ inviter public ‖ acceptor
//! public)`. Golden vectors: `testdata/envelopes.json`.

use super::{corrupt, ChatError, Role};
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use smpx_relay_protocol::MAX_BODY;
use zeroize::Zeroizing;

/// Every end-to-end plaintext is padded to this many bytes.
pub const PADDED_LEN: usize = 15_872;
/// The longest message text, in bytes of UTF-8 (what is left of [`PADDED_LEN`] after the
/// length prefix and the JSON around the text, with room for escapes).
pub const MAX_TEXT: usize = 12_000;

const ENVELOPE_V1: u8 = 1;
const KIND_HELLO: u8 = b'H';
const KIND_MESSAGE: u8 = b'M';
const NONCE_LEN: usize = 24;
const E2E_CONTEXT: &[u8] = b"smpx-chat/v1 e2e";

/// The plaintext of an envelope (JSON, tagged by `t`).
#[derive(Serialize, Deserialize)]
#[cfg_attr(test, derive(Debug, Clone, PartialEq))]
#[serde(tag = "t", rename_all = "snake_case")]
pub(super) enum Payload {
    /// Acceptor → inviter, unsigned, the first message on the inviter's queue.
    Hello {
        /// Hex Ed25519 public key: secure the inviter's queue with it.
        sender_key: String,
        /// The acceptor's queue.
        reply: String,
        /// Hex Ed25519 secret key that signs the inviter's SENDs to the acceptor's queue.
        reply_send_key: String,
    },
    /// Inviter → acceptor: the hello arrived, the inviter's queue is secured.
    Ready,
    Msg {
        text: String,
        sent_at: u64,
    },
}

pub(super) fn e2e_key(
    my_secret: &[u8; 32],
    my_public: &[u8; 32],
    peer_public: &[u8; 32],
    me: Role,
) -> Option<Zeroizing<[u8; 32]>> {
    let s = x25519_dalek::StaticSecret::from(*my_secret);
    let shared = s.diffie_hellman(&x25519_dalek::PublicKey::from(*peer_public));
    if !shared.was_contributory() {
        return None;
    }
    let (inviter, acceptor) = match me {
        Role::Inviter => (my_public, peer_public),
        Role::Acceptor => (peer_public, my_public),
    };
    let mut h = Sha256::new();
    h.update(E2E_CONTEXT);
    h.update(shared.as_bytes());
    h.update(inviter);
    h.update(acceptor);
    Some(Zeroizing::new(h.finalize().into()))
}

fn direction_byte(to: Role) -> u8 {
    match to {
        Role::Inviter => b'I',
        Role::Acceptor => b'A',
    }
}

/// `v ‖ kind ‖ [acceptor's X25519 public key, in a hello] ‖ nonce ‖ ciphertext`, under a
/// fresh random nonce from `entropy`.
pub(super) fn seal_envelope(
    key: &[u8; 32],
    hello_public: Option<&[u8; 32]>,
    to: Role,
    payload: &Payload,
    entropy: &dyn smpx_os::Entropy,
) -> Result<Vec<u8>, ChatError> {
    let nonce: [u8; NONCE_LEN] = entropy.bytes();
    seal_envelope_with_nonce(key, hello_public, to, payload, &nonce)
}

/// [`seal_envelope`] with the nonce given (the golden vectors fix it; never reuse one).
fn seal_envelope_with_nonce(
    key: &[u8; 32],
    hello_public: Option<&[u8; 32]>,
    to: Role,
    payload: &Payload,
    nonce: &[u8; NONCE_LEN],
) -> Result<Vec<u8>, ChatError> {
    let json = Zeroizing::new(
        serde_json::to_vec(payload).map_err(|e| corrupt(&format!("encoding: {e}")))?,
    );
    if json.len() > PADDED_LEN - 2 {
        return Err(ChatError::TooLong(json.len()));
    }
    let mut plain = Zeroizing::new(vec![0u8; PADDED_LEN]);
    plain[..2].copy_from_slice(&(json.len() as u16).to_be_bytes());
    plain[2..2 + json.len()].copy_from_slice(&json);
    let mut out = vec![
        ENVELOPE_V1,
        if hello_public.is_some() {
            KIND_HELLO
        } else {
            KIND_MESSAGE
        },
    ];
    if let Some(p) = hello_public {
        out.extend_from_slice(p);
    }
    let mut aad = out.clone();
    aad.push(direction_byte(to));
    let ct = XChaCha20Poly1305::new(key.into())
        .encrypt(
            XNonce::from_slice(nonce),
            chacha20poly1305::aead::Payload {
                msg: &plain,
                aad: &aad,
            },
        )
        .map_err(|_| corrupt("encryption failed"))?;
    out.extend_from_slice(nonce);
    out.extend_from_slice(&ct);
    debug_assert!(out.len() <= MAX_BODY);
    Ok(out)
}

/// The header of a received envelope: the hello's public key, if a hello, and the header's
/// length. `None`: not an envelope.
pub(super) fn envelope_header(body: &[u8]) -> Option<(Option<[u8; 32]>, usize)> {
    match body {
        [ENVELOPE_V1, KIND_MESSAGE, ..] => Some((None, 2)),
        [ENVELOPE_V1, KIND_HELLO, rest @ ..] if rest.len() >= 32 => {
            Some((rest[..32].try_into().ok(), 34))
        }
        _ => None,
    }
}

pub(super) fn open_envelope(
    key: &[u8; 32],
    body: &[u8],
    header_len: usize,
    to: Role,
) -> Option<Payload> {
    let (header, rest) = body.split_at(header_len);
    if rest.len() < NONCE_LEN + 16 {
        return None;
    }
    let (nonce, ct) = rest.split_at(NONCE_LEN);
    let mut aad = header.to_vec();
    aad.push(direction_byte(to));
    let plain = Zeroizing::new(
        XChaCha20Poly1305::new(key.into())
            .decrypt(
                XNonce::from_slice(nonce),
                chacha20poly1305::aead::Payload { msg: ct, aad: &aad },
            )
            .ok()?,
    );
    let len = usize::from(u16::from_be_bytes([*plain.first()?, *plain.get(1)?]));
    serde_json::from_slice(plain.get(2..2 + len)?).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use proptest::prelude::*;
    use serde_json::Value;

    #[test]
    fn envelopes_open_only_with_the_key_and_direction_and_have_one_size() {
        let key = [3u8; 32];
        let ready = || {
            seal_envelope(
                &key,
                None,
                Role::Inviter,
                &Payload::Ready,
                &smpx_os::OsEntropy,
            )
            .unwrap()
        };
        let short = ready();
        let long = seal_envelope(
            &key,
            None,
            Role::Inviter,
            &Payload::Msg {
                text: "x".repeat(MAX_TEXT),
                sent_at: 1,
            },
            &smpx_os::OsEntropy,
        )
        .unwrap();
        assert_eq!(short.len(), long.len());
        assert!(long.len() <= MAX_BODY);
        let (_, h) = envelope_header(&short).unwrap();
        assert!(matches!(
            open_envelope(&key, &short, h, Role::Inviter),
            Some(Payload::Ready)
        ));
        assert!(open_envelope(&key, &short, h, Role::Acceptor).is_none());
        assert!(open_envelope(&[4u8; 32], &short, h, Role::Inviter).is_none());
        // Two seals of one payload share no ciphertext (fresh nonces).
        let again = ready();
        assert_ne!(short, again);
    }

    // ---------------------------------------------------------------------------------------
    // Golden vectors: testdata/envelopes.json (never rewritten by a test).

    const VECTORS: &str = include_str!("testdata/envelopes.json");

    fn public(secret: &[u8; 32]) -> [u8; 32] {
        x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(*secret)).to_bytes()
    }

    fn bytes<const N: usize>(v: &Value) -> [u8; N] {
        hex::decode(v.as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap()
    }

    fn role(v: &Value) -> Role {
        match v.as_str().unwrap() {
            "inviter" => Role::Inviter,
            "acceptor" => Role::Acceptor,
            other => panic!("role {other}"),
        }
    }

    #[test]
    fn envelope_golden_vectors() {
        let v: Value = serde_json::from_str(VECTORS).unwrap();
        let inviter: [u8; 32] = bytes(&v["inviter_secret"]);
        let acceptor: [u8; 32] = bytes(&v["acceptor_secret"]);
        let (inviter_pub, acceptor_pub) = (public(&inviter), public(&acceptor));
        assert_eq!(hex::encode(inviter_pub), v["inviter_public"]);
        assert_eq!(hex::encode(acceptor_pub), v["acceptor_public"]);
        // Both sides derive the same key.
        let key = e2e_key(&inviter, &inviter_pub, &acceptor_pub, Role::Inviter).unwrap();
        assert_eq!(hex::encode(*key), v["key"]);
        let theirs = e2e_key(&acceptor, &acceptor_pub, &inviter_pub, Role::Acceptor).unwrap();
        assert_eq!(*theirs, *key);

        let list = v["envelopes"].as_array().unwrap();
        assert_eq!(list.len(), 3);
        for e in list {
            let name = e["name"].as_str().unwrap();
            let to = role(&e["to"]);
            let hello: Option<[u8; 32]> =
                (!e["hello_public"].is_null()).then(|| bytes(&e["hello_public"]));
            let nonce: [u8; NONCE_LEN] = bytes(&e["nonce"]);
            let wire = STANDARD.decode(e["base64"].as_str().unwrap()).unwrap();
            assert_eq!(wire.len() as u64, e["length"].as_u64().unwrap(), "{name}");
            assert_eq!(hex::encode(Sha256::digest(&wire)), e["sha256"], "{name}");
            assert_eq!(
                hex::encode(&wire[..e["header_len"].as_u64().unwrap() as usize + NONCE_LEN]),
                e["header_and_nonce"],
                "{name}"
            );

            // Decoding the exact bytes gives the payload, whose JSON is the vector's.
            let (got_hello, header_len) = envelope_header(&wire).unwrap();
            assert_eq!(got_hello, hello, "{name}");
            assert_eq!(
                header_len as u64,
                e["header_len"].as_u64().unwrap(),
                "{name}"
            );
            let payload = open_envelope(&key, &wire, header_len, to).unwrap();
            let json = e["plaintext_json"].as_str().unwrap();
            assert_eq!(serde_json::to_string(&payload).unwrap(), json, "{name}");
            assert!(
                open_envelope(&key, &wire, header_len, peer(to)).is_none(),
                "{name}"
            );

            // Encoding that payload with that nonce gives the exact bytes.
            let sealed =
                seal_envelope_with_nonce(&key, hello.as_ref(), to, &payload, &nonce).unwrap();
            assert_eq!(sealed, wire, "{name}");

            // A changed byte anywhere is refused.
            for i in [
                0,
                1,
                header_len,
                header_len + NONCE_LEN,
                wire.len() / 2,
                wire.len() - 1,
            ] {
                let mut bad = wire.clone();
                bad[i] ^= 0x01;
                let opened =
                    envelope_header(&bad).and_then(|(_, h)| open_envelope(&key, &bad, h, to));
                assert!(opened.is_none(), "{name}: byte {i}");
            }
        }
    }

    fn peer(r: Role) -> Role {
        super::super::peer_role(r)
    }

    /// Prints `testdata/envelopes.json`:
    /// `SMPX_PRINT_VECTORS=1 cargo test -p smpx-wallet --lib print_envelope_vectors -- --nocapture`.
    #[test]
    fn print_envelope_vectors() {
        if std::env::var_os("SMPX_PRINT_VECTORS").is_none() {
            return;
        }
        let inviter = [0x41u8; 32];
        let acceptor = [0x42u8; 32];
        let (ip, ap) = (public(&inviter), public(&acceptor));
        let key = e2e_key(&inviter, &ip, &ap, Role::Inviter).unwrap();
        let fp = URL_SAFE_NO_PAD_FP;
        let hello = Payload::Hello {
            sender_key: hex::encode(
                ed25519_dalek::SigningKey::from_bytes(&[0x51; 32])
                    .verifying_key()
                    .to_bytes(),
            ),
            reply: format!(
                "{}",
                super::super::Invitation {
                    relay: format!("smpx://{fp}@127.0.0.1:7411").parse().unwrap(),
                    sender_id: smpx_relay_protocol::EntityId([0x24; 24]),
                    e2e_public: ap,
                }
            ),
            reply_send_key: hex::encode([0x52u8; 32]),
        };
        let cases = [
            (
                "hello (acceptor to inviter, unsigned)",
                Role::Inviter,
                Some(ap),
                [0x61u8; NONCE_LEN],
                hello,
            ),
            (
                "ready (inviter to acceptor)",
                Role::Acceptor,
                None,
                [0x62u8; NONCE_LEN],
                Payload::Ready,
            ),
            (
                "message (acceptor to inviter)",
                Role::Inviter,
                None,
                [0x63u8; NONCE_LEN],
                Payload::Msg {
                    text: "Hello, Alice! Grüße ✓ \"quoted\"".into(),
                    sent_at: 1_767_312_000,
                },
            ),
        ];
        let mut list = Vec::new();
        for (name, to, hello_public, nonce, payload) in cases {
            let wire = seal_envelope_with_nonce(&key, hello_public.as_ref(), to, &payload, &nonce)
                .unwrap();
            let (_, h) = envelope_header(&wire).unwrap();
            list.push(serde_json::json!({
                "name": name,
                "to": match to { Role::Inviter => "inviter", Role::Acceptor => "acceptor" },
                "hello_public": hello_public.map(hex::encode),
                "nonce": hex::encode(nonce),
                "plaintext_json": serde_json::to_string(&payload).unwrap(),
                "header_len": h,
                "header_and_nonce": hex::encode(&wire[..h + NONCE_LEN]),
                "length": wire.len(),
                "sha256": hex::encode(Sha256::digest(&wire)),
                "base64": STANDARD.encode(&wire),
            }));
        }
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "inviter_secret": hex::encode(inviter),
                "inviter_public": hex::encode(ip),
                "acceptor_secret": hex::encode(acceptor),
                "acceptor_public": hex::encode(ap),
                "key": hex::encode(*key),
                "envelopes": list,
            }))
            .unwrap()
        );
    }

    /// The relay CA fingerprint of the hello vector's reply address.
    const URL_SAFE_NO_PAD_FP: &str = "BpQ3_td4BSbJu8gvXkrQzACmOcwZmka6TbGWc1y2koU";

    fn payload() -> impl Strategy<Value = Payload> {
        prop_oneof![
            Just(Payload::Ready),
            ("\\PC{0,400}", any::<u64>())
                .prop_map(|(text, sent_at)| Payload::Msg { text, sent_at }),
            ("\\PC{0,80}", "\\PC{0,200}", "\\PC{0,80}").prop_map(
                |(sender_key, reply, reply_send_key)| {
                    Payload::Hello {
                        sender_key,
                        reply,
                        reply_send_key,
                    }
                }
            ),
        ]
    }

    /// AEAD-seals arbitrary plaintext under a valid header, to reach the parsing behind it.
    fn seal_raw(
        key: &[u8; 32],
        header: &[u8],
        to: Role,
        nonce: &[u8; NONCE_LEN],
        plain: &[u8],
    ) -> Vec<u8> {
        let mut aad = header.to_vec();
        aad.push(direction_byte(to));
        let ct = XChaCha20Poly1305::new(key.into())
            .encrypt(
                XNonce::from_slice(nonce),
                chacha20poly1305::aead::Payload {
                    msg: plain,
                    aad: &aad,
                },
            )
            .unwrap();
        [header, nonce, &ct].concat()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn envelope_decode_of_encode_is_identity(
            key in any::<[u8; 32]>(),
            to_inviter in any::<bool>(),
            hello in proptest::option::of(any::<[u8; 32]>()),
            nonce in any::<[u8; NONCE_LEN]>(),
            payload in payload(),
        ) {
            let to = if to_inviter { Role::Inviter } else { Role::Acceptor };
            let wire = seal_envelope_with_nonce(&key, hello.as_ref(), to, &payload, &nonce).unwrap();
            prop_assert_eq!(wire.len(), 2 + hello.map_or(0, |_| 32) + NONCE_LEN + PADDED_LEN + 16);
            let (got_hello, h) = envelope_header(&wire).unwrap();
            prop_assert_eq!(got_hello, hello);
            prop_assert_eq!(open_envelope(&key, &wire, h, to), Some(payload));
        }

        #[test]
        fn envelope_decode_of_arbitrary_bytes_never_panics(
            key in any::<[u8; 32]>(),
            head in proptest::collection::vec(any::<u8>(), 0..80),
            tail_len in 0usize..20_000,
            kind in 0u8..3,
        ) {
            let mut body = match kind {
                0 => vec![ENVELOPE_V1, KIND_MESSAGE],
                1 => vec![ENVELOPE_V1, KIND_HELLO],
                _ => vec![],
            };
            body.extend_from_slice(&head);
            body.resize(body.len() + tail_len, 0xa5);
            if let Some((_, h)) = envelope_header(&body) {
                let _ = open_envelope(&key, &body, h, Role::Inviter);
                let _ = open_envelope(&key, &body, h, Role::Acceptor);
            }
        }

        /// Authentic ciphertext of arbitrary plaintext (bad length prefix, not JSON, …).
        #[test]
        fn envelope_with_arbitrary_plaintext_never_panics(
            key in any::<[u8; 32]>(),
            nonce in any::<[u8; NONCE_LEN]>(),
            plain in proptest::collection::vec(any::<u8>(), 0..600),
        ) {
            let wire = seal_raw(&key, &[ENVELOPE_V1, KIND_MESSAGE], Role::Acceptor, &nonce, &plain);
            let (_, h) = envelope_header(&wire).unwrap();
            let _ = open_envelope(&key, &wire, h, Role::Acceptor);
        }
    }
}
