//! The protocol's crypto compositions: command signatures and re-encryption of deliveries.
//!
//! **Signatures**: Ed25519 (`verify_strict`) over
//! `"smpx-relay/v1 transmission" ‖ session_id ‖ signed part` (see [`super::transmission`]).
//!
//! **Re-encryption**: each queue has a relay X25519 key pair (created with the queue) and the
//! recipient's X25519 key (from NEW). The delivery key is
//! `SHA-256("smpx-relay/v1 delivery" ‖ X25519(secret, peer) ‖ relay public ‖ recipient public)`;
//! low-order recipient keys (an all-zero shared secret) are refused at NEW. Each MSG is
//! XChaCha20-Poly1305 with the 24-byte message id as nonce (message ids are random and
//! never repeat within a queue) over a plaintext padded to [`SEALED_PLAIN_LEN`]:
//!
//! ```text
//! u64 accepted_at ‖ u8 kind (0 body | 1 quota marker) ‖ u16 body_length ‖ body ‖ zeros
//! ```
//!
//! so every delivered MSG is [`SEALED_LEN`] bytes and shares nothing with the SEND that
//! produced it: a network observer who sees both sides of the relay (or the relay's TLS
//! peer on both sides) cannot match them by content or size.

use super::{MsgId, SessionId, MAX_BODY, SIGNATURE_LEN};
use chacha20poly1305::{
    aead::{Aead, KeyInit},
    XChaCha20Poly1305, XNonce,
};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use smpx_core::UnixTime;
use zeroize::{Zeroize, ZeroizeOnDrop};

const SIGN_CONTEXT: &[u8] = b"smpx-relay/v1 transmission";
const DELIVERY_CONTEXT: &[u8] = b"smpx-relay/v1 delivery";

/// Length of the padded plaintext of every delivery.
pub const SEALED_PLAIN_LEN: usize = 8 + 1 + 2 + MAX_BODY;
/// Length of every sealed delivery (plaintext + Poly1305 tag).
pub const SEALED_LEN: usize = SEALED_PLAIN_LEN + 16;

fn signing_input(session_id: &SessionId, signed: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGN_CONTEXT.len() + 32 + signed.len());
    m.extend_from_slice(SIGN_CONTEXT);
    m.extend_from_slice(session_id);
    m.extend_from_slice(signed);
    m
}

/// Signs a transmission's signed part for this session.
pub fn sign(key: &SigningKey, session_id: &SessionId, signed: &[u8]) -> [u8; SIGNATURE_LEN] {
    key.sign(&signing_input(session_id, signed)).to_bytes()
}

/// Verifies a transmission's signature; an unparsable key fails like a wrong signature.
/// The caller passes a dummy key when the queue is unknown, so both cases do the same work.
pub fn verify(
    key: &[u8; 32],
    session_id: &SessionId,
    signed: &[u8],
    sig: &[u8; SIGNATURE_LEN],
) -> bool {
    let Ok(vk) = VerifyingKey::from_bytes(key) else {
        return false;
    };
    vk.verify_strict(
        &signing_input(session_id, signed),
        &Signature::from_bytes(sig),
    )
    .is_ok()
}

/// A valid Ed25519 public key (with a validly shaped signature) whose secret nobody keeps:
/// verification against it fails, taking as long as against a real key.
pub fn dummy_verifying_key(rng: &mut (impl rand::RngCore + rand::CryptoRng)) -> [u8; 32] {
    let sk = SigningKey::generate(rng);
    sk.verifying_key().to_bytes()
}

/// The X25519 public key of a secret.
pub fn x25519_public(secret: &[u8; 32]) -> [u8; 32] {
    let s = x25519_dalek::StaticSecret::from(*secret);
    x25519_dalek::PublicKey::from(&s).to_bytes()
}

/// A fresh X25519 secret from `rng`.
pub fn x25519_secret(rng: &mut (impl rand::RngCore + rand::CryptoRng)) -> [u8; 32] {
    x25519_dalek::StaticSecret::random_from_rng(rng).to_bytes()
}

/// The symmetric key deliveries of one queue are sealed under.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct DeliveryKey([u8; 32]);

impl std::fmt::Debug for DeliveryKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeliveryKey(…)")
    }
}

impl DeliveryKey {
    /// The relay's side: its queue secret and the recipient's public key.
    pub fn for_relay(server_secret: &[u8; 32], recipient_public: &[u8; 32]) -> Option<Self> {
        let server_public = x25519_public(server_secret);
        Self::derive(
            server_secret,
            recipient_public,
            &server_public,
            recipient_public,
        )
    }

    /// The recipient's side: its secret and the relay's public key from IDS.
    pub fn for_recipient(recipient_secret: &[u8; 32], server_public: &[u8; 32]) -> Option<Self> {
        let recipient_public = x25519_public(recipient_secret);
        Self::derive(
            recipient_secret,
            server_public,
            server_public,
            &recipient_public,
        )
    }

    fn derive(
        secret: &[u8; 32],
        peer: &[u8; 32],
        server_public: &[u8; 32],
        recipient_public: &[u8; 32],
    ) -> Option<Self> {
        let s = x25519_dalek::StaticSecret::from(*secret);
        let shared = s.diffie_hellman(&x25519_dalek::PublicKey::from(*peer));
        if !shared.was_contributory() {
            return None;
        }
        let mut h = Sha256::new();
        h.update(DELIVERY_CONTEXT);
        h.update(shared.as_bytes());
        h.update(server_public);
        h.update(recipient_public);
        Some(Self(h.finalize().into()))
    }
}

/// What a delivery carries.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Content {
    Body(Vec<u8>),
    /// The queue hit its quota: at least one later message was refused.
    QuotaExceeded,
}

/// An opened delivery.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Delivered {
    pub msg_id: MsgId,
    /// When the relay accepted the message.
    pub at: UnixTime,
    pub content: Content,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum SealError {
    #[error("body of {0} bytes is over the limit")]
    TooLarge(usize),
    #[error("delivery does not decrypt under this queue's key")]
    Decrypt,
    #[error("decrypted delivery is malformed")]
    Malformed,
}

/// Seals a delivery for the recipient.
pub fn seal(
    key: &DeliveryKey,
    msg_id: &MsgId,
    at: UnixTime,
    content: &Content,
) -> Result<Vec<u8>, SealError> {
    let mut plain = Vec::with_capacity(SEALED_PLAIN_LEN);
    plain.extend_from_slice(&at.to_be_bytes());
    match content {
        Content::Body(body) => {
            if body.len() > MAX_BODY {
                return Err(SealError::TooLarge(body.len()));
            }
            plain.push(0);
            plain.extend_from_slice(&(body.len() as u16).to_be_bytes());
            plain.extend_from_slice(body);
        }
        Content::QuotaExceeded => {
            plain.push(1);
            plain.extend_from_slice(&0u16.to_be_bytes());
        }
    }
    plain.resize(SEALED_PLAIN_LEN, 0);
    let cipher = XChaCha20Poly1305::new((&key.0).into());
    let sealed = cipher
        .encrypt(XNonce::from_slice(&msg_id.0), plain.as_slice())
        .map_err(|_| SealError::Malformed);
    plain.zeroize();
    sealed
}

/// Opens a delivery.
pub fn open(key: &DeliveryKey, msg_id: &MsgId, sealed: &[u8]) -> Result<Delivered, SealError> {
    let cipher = XChaCha20Poly1305::new((&key.0).into());
    let mut plain = cipher
        .decrypt(XNonce::from_slice(&msg_id.0), sealed)
        .map_err(|_| SealError::Decrypt)?;
    let parsed = parse_plain(&plain).map(|(at, content)| Delivered {
        msg_id: *msg_id,
        at,
        content,
    });
    plain.zeroize();
    parsed
}

fn parse_plain(plain: &[u8]) -> Result<(UnixTime, Content), SealError> {
    let mut r = super::Reader::new(plain);
    let at = u64::from_be_bytes(r.array().map_err(|_| SealError::Malformed)?);
    let kind = r.u8().map_err(|_| SealError::Malformed)?;
    let len = usize::from(r.u16().map_err(|_| SealError::Malformed)?);
    let body = r.take(len).map_err(|_| SealError::Malformed)?;
    let content = match kind {
        0 => Content::Body(body.to_vec()),
        1 if len == 0 => Content::QuotaExceeded,
        _ => return Err(SealError::Malformed),
    };
    Ok((at, content))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_derive_the_same_key_and_seal_opens() {
        let server = x25519_secret(&mut rand::rngs::OsRng);
        let recipient = x25519_secret(&mut rand::rngs::OsRng);
        let a = DeliveryKey::for_relay(&server, &x25519_public(&recipient)).unwrap();
        let b = DeliveryKey::for_recipient(&recipient, &x25519_public(&server)).unwrap();
        let id = MsgId([4; 24]);
        let s = seal(&a, &id, 77, &Content::Body(b"hi".to_vec())).unwrap();
        assert_eq!(s.len(), SEALED_LEN);
        let d = open(&b, &id, &s).unwrap();
        assert_eq!(d.at, 77);
        assert_eq!(d.content, Content::Body(b"hi".to_vec()));
        assert_eq!(open(&b, &MsgId([5; 24]), &s), Err(SealError::Decrypt));
    }

    #[test]
    fn low_order_keys_are_refused() {
        assert!(DeliveryKey::for_relay(&x25519_secret(&mut rand::rngs::OsRng), &[0; 32]).is_none());
    }

    #[test]
    fn signatures_bind_the_session() {
        let k = SigningKey::generate(&mut rand::rngs::OsRng);
        let pk = k.verifying_key().to_bytes();
        let sig = sign(&k, &[1; 32], b"abc");
        assert!(verify(&pk, &[1; 32], b"abc", &sig));
        assert!(!verify(&pk, &[2; 32], b"abc", &sig));
        assert!(!verify(
            &dummy_verifying_key(&mut rand::rngs::OsRng),
            &[1; 32],
            b"abc",
            &sig
        ));
    }
}
