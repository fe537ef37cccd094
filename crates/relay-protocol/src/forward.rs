//! Private routing: the key material and encryption of forwarded transmissions.
//!
//! A client asks **its own relay (the proxy)** to forward a command to **another relay (the
//! destination)**. The destination sees the proxy's connection, never the client's; the
//! proxy relays ciphertext it cannot read. The idea is SimpleX SMP's "private message
//! routing"; the construction below is our own.
//!
//! # Flow
//!
//! ```text
//! client ──PRXY dest-address──▶ proxy ──(TLS pinned to dest fp)── RKEY ──▶ destination
//! client ◀─PKEY session, key──── proxy ◀───────── RKEY answer: key ──────── destination
//! client ──PFWD eph ‖ sealed───▶ proxy ──────── RFWD eph ‖ sealed ───────▶ destination
//! client ◀─PRES sealed────────── proxy ◀──────── PRES sealed ───────────── destination
//! ```
//!
//! 1. **PRXY** (client → proxy; unsigned, no entity): the destination's `smpx://fp@host:port`
//!    address. The proxy opens (or reuses) one TLS connection to the destination, pinned to
//!    `fp`, and asks it for its forwarding key with **RKEY** (unsigned, no entity).
//! 2. The destination answers RKEY with a [`ForwardKey`]: the TLS session id of *that
//!    proxy↔destination connection*, a fresh X25519 public key for that connection, its
//!    certificate chain (CA certificate DER, online certificate DER) and an Ed25519 signature
//!    by the online certificate's key over
//!    `"smpx-relay/v1 forwarding key" ‖ session_id[32] ‖ x25519_key[32]`.
//! 3. The proxy answers PRXY with **PKEY**: a random proxy session id (the entity of later
//!    PFWDs) and that key material. **The client verifies it itself** ([`ForwardKey::verify`]):
//!    the CA certificate must have the fingerprint the client wants, the online certificate
//!    must be valid under it now (the same check as the TLS client's pinned verifier, which
//!    the transport supplies as a [`ChainVerifier`]), and the signature must verify. A proxy can
//!    therefore not substitute its own key.
//! 4. **PFWD** (client → proxy; unsigned, entity = proxy session id):
//!    `eph_x25519_public[32] ‖ sealed[FORWARD_SEALED_LEN]`. The proxy sends the same payload
//!    as **RFWD** (unsigned, no entity) on its connection to the destination.
//! 5. The destination opens it with that connection's secret, runs the inner transmission
//!    (only SEND and PING; anything else is answered `ERR PROXY NOT_ALLOWED`, sealed) through
//!    the same code as a direct command, and answers **PRES** `sealed[RESPONSE_SEALED_LEN]`,
//!    which the proxy returns to the client unchanged.
//!
//! # Encryption
//!
//! ```text
//! shared   = X25519(eph_secret, dest_key)           (= X25519(dest_secret, eph_public))
//! k_req    = SHA-256("smpx-relay/v1 forward request"  ‖ shared ‖ eph_public ‖ dest_key)
//! k_res    = SHA-256("smpx-relay/v1 forward response" ‖ shared ‖ eph_public ‖ dest_key)
//! sealed   = XChaCha20-Poly1305(k, nonce = 24 zero bytes, aad = session_id, plaintext)
//! request  plaintext = u16 length ‖ inner transmission ‖ zeros   (FORWARD_PLAIN_LEN bytes)
//! response plaintext = u16 length ‖ inner response     ‖ zeros   (RESPONSE_PLAIN_LEN bytes)
//! ```
//!
//! Each key seals exactly one message (the ephemeral key is fresh per request, and the
//! destination refuses an ephemeral key it has seen on the connection), so a fixed nonce is
//! safe. The inner transmission is an ordinary transmission (auth, corr id, entity,
//! command) whose signature binds the **proxy↔destination session id** from the key
//! material, so a captured inner SEND is refused on any other connection; on the same
//! connection the replay set refuses it. Low-order (non-contributory) keys are refused.
//! Both plaintexts are padded to fixed lengths: every PFWD, RFWD and PRES on the wire has
//! one size whatever the message.
//!
//! # Who learns what
//!
//! * **The proxy** learns the client's IP address and connection (it is the client's own
//!   relay anyway), which destination the client talks to and when, and the size class
//!   (fixed). It does not learn the queue id, the signature, the body, or the outcome
//!   (OK, AUTH, QUOTA are sealed): it cannot read, alter (AEAD) or replay (replay set,
//!   session binding) the inner transmission.
//! * **The destination** learns the proxy's address and connection, the queue id and the
//!   (end-to-end encrypted) message, as with a direct SEND — but not the client's IP address
//!   or which of the proxy's clients sent it. Many clients share one proxy connection.
//! * Together (a colluding proxy and destination) they can match timing; private routing
//!   does not defend against that, as in SMP.
//! * A client that uses a malicious proxy is no worse off than sending directly except that
//!   the proxy may drop or delay messages; it cannot impersonate the destination.

use super::{
    CaFingerprint, CorrId, DecodeError, EntityId, Reader, SessionId, CORR_ID_LEN, ID_LEN, KEY_LEN,
    MAX_BODY, SIGNATURE_LEN,
};
use chacha20poly1305::{
    aead::{Aead, KeyInit, Payload},
    XChaCha20Poly1305, XNonce,
};
use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Context of the destination's signature over its forwarding key.
pub const KEY_CONTEXT: &[u8] = b"smpx-relay/v1 forwarding key";
const REQUEST_CONTEXT: &[u8] = b"smpx-relay/v1 forward request";
const RESPONSE_CONTEXT: &[u8] = b"smpx-relay/v1 forward response";

/// The longest inner transmission: a signed SEND with the largest body.
pub const MAX_INNER: usize = 1 + SIGNATURE_LEN + CORR_ID_LEN + 1 + ID_LEN + 1 + MAX_BODY;
/// Length of every padded inner transmission.
pub const FORWARD_PLAIN_LEN: usize = 2 + MAX_INNER;
/// Length of every sealed inner transmission (PFWD, RFWD).
pub const FORWARD_SEALED_LEN: usize = FORWARD_PLAIN_LEN + 16;
/// The longest inner response (OK, PONG, ERR need far less).
pub const MAX_INNER_RESPONSE: usize = 128;
/// Length of every padded inner response.
pub const RESPONSE_PLAIN_LEN: usize = 2 + MAX_INNER_RESPONSE;
/// Length of every sealed inner response (PRES).
pub const RESPONSE_SEALED_LEN: usize = RESPONSE_PLAIN_LEN + 16;
/// The longest certificate accepted in key material.
pub const MAX_CERT_LEN: usize = 4096;

/// Why forwarding crypto or key material failed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ForwardError {
    /// The destination's certificate chain does not verify against the wanted fingerprint.
    #[error("destination certificate refused: {0}")]
    Chain(CertRejection),
    /// The online certificate's key is not an Ed25519 key.
    #[error("the destination's online certificate has no usable Ed25519 key")]
    CertKey,
    /// The signature over the forwarding key does not verify.
    #[error("the destination's forwarding key signature does not verify")]
    Signature,
    /// A low-order X25519 key.
    #[error("unusable X25519 key")]
    BadKey,
    /// The inner transmission or response is too long to pad.
    #[error("inner transmission of {0} bytes is too long")]
    TooLong(usize),
    /// AEAD failure: tampered, or sealed under another key.
    #[error("does not decrypt")]
    Decrypt,
    /// The decrypted padding or length is malformed.
    #[error("malformed plaintext")]
    Malformed,
    /// The inner response does not answer the inner command (corr id or entity differ).
    #[error("the inner response does not match the command")]
    Mismatch,
}

/// The destination's forwarding key for one proxy connection, as RKEY and PKEY carry it.
///
/// ```text
/// session_id[32] ‖ x25519_key[32] ‖ u16 ca_len ‖ ca_cert ‖ u16 cert_len ‖ online_cert ‖ signature[64]
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ForwardKey {
    /// The TLS session id of the proxy↔destination connection: inner signatures bind it.
    pub session_id: SessionId,
    /// The destination's X25519 public key for that connection.
    pub dh: [u8; KEY_LEN],
    /// The destination's CA certificate (DER); its SHA-256 is the fingerprint.
    pub ca_cert: Vec<u8>,
    /// The destination's online certificate (DER), signed by the CA.
    pub online_cert: Vec<u8>,
    /// Ed25519 by the online certificate's key over [`ForwardKey::signing_input`].
    pub signature: [u8; SIGNATURE_LEN],
}

impl std::fmt::Debug for ForwardKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForwardKey")
            .field(
                "fingerprint",
                &CaFingerprint::of_certificate(&self.ca_cert).to_string(),
            )
            .finish_non_exhaustive()
    }
}

impl ForwardKey {
    /// `"smpx-relay/v1 forwarding key" ‖ session_id ‖ x25519_key`.
    pub fn signing_input(session_id: &SessionId, dh: &[u8; KEY_LEN]) -> Vec<u8> {
        let mut m = Vec::with_capacity(KEY_CONTEXT.len() + 64);
        m.extend_from_slice(KEY_CONTEXT);
        m.extend_from_slice(session_id);
        m.extend_from_slice(dh);
        m
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.session_id);
        out.extend_from_slice(&self.dh);
        for cert in [&self.ca_cert, &self.online_cert] {
            // Certificates longer than MAX_CERT_LEN are never produced; cut rather than panic.
            let cert = &cert[..cert.len().min(MAX_CERT_LEN)];
            out.extend_from_slice(&(cert.len() as u16).to_be_bytes());
            out.extend_from_slice(cert);
        }
        out.extend_from_slice(&self.signature);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let session_id = r.array()?;
        let dh = r.array()?;
        let mut cert = || {
            let len = usize::from(r.u16()?);
            if len > MAX_CERT_LEN {
                return Err(DecodeError::FieldLength);
            }
            Ok::<_, DecodeError>(r.take(len)?.to_vec())
        };
        let ca_cert = cert()?;
        let online_cert = cert()?;
        let signature = r.array()?;
        Ok(Self {
            session_id,
            dh,
            ca_cert,
            online_cert,
            signature,
        })
    }

    /// Checks the key material as the client must before using it: the CA certificate has
    /// the fingerprint `pin`, the online certificate is valid under it at `now` (both checked
    /// by `chain`, the transport's certificate verifier), and the online key signed the
    /// session id and X25519 key. `now` is seconds since the epoch; `rng` draws the secret of
    /// the probe that checks the key is not of low order.
    pub fn verify(
        &self,
        chain: &dyn ChainVerifier,
        pin: &CaFingerprint,
        now: u64,
        rng: &mut (impl rand::RngCore + rand::CryptoRng),
    ) -> Result<(), ForwardError> {
        let online_key = chain.online_key(pin, &self.ca_cert, &self.online_cert, now)?;
        let vk = VerifyingKey::from_bytes(&online_key).map_err(|_| ForwardError::CertKey)?;
        vk.verify_strict(
            &Self::signing_input(&self.session_id, &self.dh),
            &Signature::from_bytes(&self.signature),
        )
        .map_err(|_| ForwardError::Signature)?;
        let probe = x25519_dalek::StaticSecret::random_from_rng(rng);
        if !probe
            .diffie_hellman(&x25519_dalek::PublicKey::from(self.dh))
            .was_contributory()
        {
            return Err(ForwardError::BadKey);
        }
        Ok(())
    }
}

/// The certificate check a forwarding key needs, supplied by the transport
/// (`smpx_relay_transport::PinnedChain`) so that the protocol parses no X.509.
///
/// [`ChainVerifier::online_key`] must check the pair exactly as the TLS client checks a
/// relay's chain: `ca_der` has the fingerprint `pin`, `online_der` is signed by it and valid
/// at `now` (seconds since the epoch); then it returns the online certificate's Ed25519
/// public key ([`ForwardError::Chain`] or [`ForwardError::CertKey`] otherwise).
pub trait ChainVerifier {
    fn online_key(
        &self,
        pin: &CaFingerprint,
        ca_der: &[u8],
        online_der: &[u8],
        now: u64,
    ) -> Result<[u8; 32], ForwardError>;
}

/// Why a client refuses a relay's certificate chain for its pin (over TLS, or in a
/// forwarding key). The transport decides; the reasons are named here so that both a TLS
/// failure and a refused forwarding key carry the same value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CertRejection {
    /// The chain is not `[online certificate, CA certificate]`.
    #[error("the relay presented {0} certificates; expected 2 (online, CA)")]
    ChainLength(usize),
    /// The CA certificate is not the pinned one.
    #[error("CA fingerprint mismatch: expected {expected}, relay presented {presented}")]
    FingerprintMismatch {
        /// The pin from the address.
        expected: CaFingerprint,
        /// The fingerprint of the CA certificate the relay presented.
        presented: CaFingerprint,
    },
    /// The CA certificate has the pinned fingerprint but cannot be used as a trust anchor.
    #[error("the pinned CA certificate is unusable: {0}")]
    BadCaCertificate(String),
    /// The online certificate is past its validity.
    #[error("the relay's online certificate has expired")]
    OnlineCertExpired,
    /// The online certificate is not yet valid.
    #[error("the relay's online certificate is not yet valid")]
    OnlineCertNotYetValid,
    /// The online certificate is not validly signed by the pinned CA (or is malformed or
    /// not for server authentication); the certificate library's reason.
    #[error("the relay's online certificate is not signed by the pinned CA: {0}")]
    NotSignedByCa(String),
}

/// The key that opens (client) or seals (destination) the inner response.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct ResponseKey([u8; 32]);

impl std::fmt::Debug for ResponseKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResponseKey(…)")
    }
}

fn derive(
    context: &[u8],
    shared: &[u8; 32],
    eph_public: &[u8; 32],
    dest_public: &[u8; 32],
) -> Zeroizing<[u8; 32]> {
    let mut h = Sha256::new();
    h.update(context);
    h.update(shared);
    h.update(eph_public);
    h.update(dest_public);
    Zeroizing::new(h.finalize().into())
}

/// Both directions' keys from the shared secret.
fn keys(
    shared: &x25519_dalek::SharedSecret,
    eph_public: &[u8; 32],
    dest_public: &[u8; 32],
) -> Result<(Zeroizing<[u8; 32]>, ResponseKey), ForwardError> {
    if !shared.was_contributory() {
        return Err(ForwardError::BadKey);
    }
    let req = derive(REQUEST_CONTEXT, shared.as_bytes(), eph_public, dest_public);
    let res = derive(RESPONSE_CONTEXT, shared.as_bytes(), eph_public, dest_public);
    Ok((req, ResponseKey(*res)))
}

fn pad(content: &[u8], max: usize) -> Result<Zeroizing<Vec<u8>>, ForwardError> {
    if content.len() > max {
        return Err(ForwardError::TooLong(content.len()));
    }
    let mut plain = Zeroizing::new(Vec::with_capacity(2 + max));
    plain.extend_from_slice(&(content.len() as u16).to_be_bytes());
    plain.extend_from_slice(content);
    plain.resize(2 + max, 0);
    Ok(plain)
}

fn unpad(plain: &[u8]) -> Result<Vec<u8>, ForwardError> {
    let mut r = Reader::new(plain);
    let len = usize::from(r.u16().map_err(|_| ForwardError::Malformed)?);
    let content = r.take(len).map_err(|_| ForwardError::Malformed)?;
    if r.rest().iter().any(|b| *b != 0) {
        return Err(ForwardError::Malformed);
    }
    Ok(content.to_vec())
}

fn aead_seal(key: &[u8; 32], aad: &SessionId, plain: &[u8]) -> Result<Vec<u8>, ForwardError> {
    XChaCha20Poly1305::new(key.into())
        .encrypt(&XNonce::default(), Payload { msg: plain, aad })
        .map_err(|_| ForwardError::Malformed)
}

fn aead_open(
    key: &[u8; 32],
    aad: &SessionId,
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, ForwardError> {
    XChaCha20Poly1305::new(key.into())
        .decrypt(&XNonce::default(), Payload { msg: sealed, aad })
        .map(Zeroizing::new)
        .map_err(|_| ForwardError::Decrypt)
}

/// A sealed request: what PFWD and RFWD carry.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Sealed {
    /// The client's ephemeral X25519 public key.
    pub eph: [u8; KEY_LEN],
    /// [`FORWARD_SEALED_LEN`] bytes.
    pub sealed: Vec<u8>,
}

impl Sealed {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.eph);
        out.extend_from_slice(&self.sealed);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            eph: r.array()?,
            sealed: r.take(FORWARD_SEALED_LEN)?.to_vec(),
        })
    }
}

/// The client's side: seals `inner` (a whole transmission) for the destination whose
/// verified key material is `dest`; returns the payload and the key of the response. The
/// ephemeral key comes from `rng`.
pub fn seal_request(
    dest: &ForwardKey,
    inner: &[u8],
    rng: &mut (impl rand::RngCore + rand::CryptoRng),
) -> Result<(Sealed, ResponseKey), ForwardError> {
    let eph = x25519_dalek::StaticSecret::random_from_rng(rng);
    let eph_public = x25519_dalek::PublicKey::from(&eph).to_bytes();
    let shared = eph.diffie_hellman(&x25519_dalek::PublicKey::from(dest.dh));
    let (req, res) = keys(&shared, &eph_public, &dest.dh)?;
    let plain = pad(inner, MAX_INNER)?;
    let sealed = aead_seal(&req, &dest.session_id, &plain)?;
    Ok((
        Sealed {
            eph: eph_public,
            sealed,
        },
        res,
    ))
}

/// The destination's side: opens a request with this connection's secret; returns the
/// inner transmission and the key to seal the response with.
pub fn open_request(
    secret: &[u8; 32],
    session_id: &SessionId,
    request: &Sealed,
) -> Result<(Vec<u8>, ResponseKey), ForwardError> {
    let s = x25519_dalek::StaticSecret::from(*secret);
    let public = x25519_dalek::PublicKey::from(&s).to_bytes();
    let shared = s.diffie_hellman(&x25519_dalek::PublicKey::from(request.eph));
    let (req, res) = keys(&shared, &request.eph, &public)?;
    let plain = aead_open(&req, session_id, &request.sealed)?;
    Ok((unpad(&plain)?, res))
}

/// The destination seals the inner response transmission.
pub fn seal_response(
    key: &ResponseKey,
    session_id: &SessionId,
    response: &[u8],
) -> Result<Vec<u8>, ForwardError> {
    aead_seal(&key.0, session_id, &pad(response, MAX_INNER_RESPONSE)?)
}

/// The client opens the inner response transmission.
pub fn open_response(
    key: &ResponseKey,
    session_id: &SessionId,
    sealed: &[u8],
) -> Result<Vec<u8>, ForwardError> {
    unpad(&aead_open(&key.0, session_id, sealed)?)
}

/// Whether an inner response answers the inner command it was for.
pub fn matches(
    corr: &CorrId,
    entity: Option<&EntityId>,
    t: &super::Transmission<'_>,
) -> Result<(), ForwardError> {
    if t.corr_id != *corr || t.entity.as_ref() != entity || t.auth.is_some() {
        return Err(ForwardError::Mismatch);
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::crypto;

    fn dest(secret: &[u8; 32]) -> ForwardKey {
        ForwardKey {
            session_id: [7; 32],
            dh: crypto::x25519_public(secret),
            ca_cert: vec![1, 2, 3],
            online_cert: vec![4, 5],
            signature: [9; 64],
        }
    }

    #[test]
    fn the_ephemeral_key_comes_from_the_given_rng_only() {
        use rand::SeedableRng;
        let key = dest(&crypto::x25519_secret(&mut rand::rngs::OsRng));
        let sealed = |seed: u64| {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let (req, _) = seal_request(&key, b"inner", &mut rng).unwrap();
            let mut out = Vec::new();
            req.encode(&mut out);
            out
        };
        assert_eq!(sealed(1), sealed(1));
        assert_ne!(sealed(1), sealed(2));
    }

    #[test]
    fn request_and_response_round_trip_at_fixed_sizes() {
        let secret = crypto::x25519_secret(&mut rand::rngs::OsRng);
        let key = dest(&secret);
        let (req, res_client) = seal_request(&key, b"inner", &mut rand::rngs::OsRng).unwrap();
        assert_eq!(req.sealed.len(), FORWARD_SEALED_LEN);
        let (inner, res_dest) = open_request(&secret, &[7; 32], &req).unwrap();
        assert_eq!(inner, b"inner");
        let sealed = seal_response(&res_dest, &[7; 32], b"ok").unwrap();
        assert_eq!(sealed.len(), RESPONSE_SEALED_LEN);
        assert_eq!(
            open_response(&res_client, &[7; 32], &sealed).unwrap(),
            b"ok"
        );
        // Another session id (another connection) does not open it.
        assert_eq!(
            open_request(&secret, &[8; 32], &req).err(),
            Some(ForwardError::Decrypt)
        );
        let mut tampered = req.clone();
        tampered.sealed[100] ^= 1;
        assert_eq!(
            open_request(&secret, &[7; 32], &tampered).err(),
            Some(ForwardError::Decrypt)
        );
        assert_eq!(
            seal_request(&key, &vec![0; MAX_INNER + 1], &mut rand::rngs::OsRng).err(),
            Some(ForwardError::TooLong(MAX_INNER + 1))
        );
    }

    #[test]
    fn commands_responses_and_errors_round_trip() {
        use crate::command::{Command, Response};
        use crate::{ErrorCode, ProxyError};
        let secret = crypto::x25519_secret(&mut rand::rngs::OsRng);
        let (sealed, _) = seal_request(&dest(&secret), b"t", &mut rand::rngs::OsRng).unwrap();
        for c in [
            Command::Proxy {
                destination: b"smpx://x@h:1".to_vec(),
            },
            Command::ProxyForward(sealed.clone()),
            Command::RelayKey,
            Command::RelayForward(sealed),
        ] {
            assert_eq!(Command::decode(&c.encode()).unwrap(), c);
            assert_eq!(c.auth(), crate::command::Auth::None);
        }
        let mut long = vec![b'X'];
        long.resize(2 + crate::address::MAX_ADDRESS_LEN, b'a');
        assert!(Command::decode(&long).is_err());
        assert!(Command::decode(b"W\x01").is_err());
        for r in [
            Response::ProxyKey {
                session: EntityId([2; 24]),
                key: dest(&secret),
            },
            Response::RelayKey { key: dest(&secret) },
            Response::Forwarded {
                sealed: vec![5; RESPONSE_SEALED_LEN],
            },
        ] {
            assert_eq!(Response::decode(&r.encode()).unwrap(), r);
        }
        for p in [
            ProxyError::Unreachable,
            ProxyError::BadAddress,
            ProxyError::NoSession,
            ProxyError::NotAllowed,
            ProxyError::Crypto,
            ProxyError::Replay,
        ] {
            let r = Response::Err(ErrorCode::Proxy(p));
            assert_eq!(Response::decode(&r.encode()).unwrap(), r);
        }
        assert!(Response::decode(b"x\x09\x07").is_err());
    }

    #[test]
    fn key_material_round_trips() {
        let key = dest(&crypto::x25519_secret(&mut rand::rngs::OsRng));
        let mut b = Vec::new();
        key.encode(&mut b);
        let mut r = Reader::new(&b);
        assert_eq!(ForwardKey::decode(&mut r).unwrap(), key);
        assert!(r.is_empty());
        let mut r = Reader::new(&b[..b.len() - 1]);
        assert!(ForwardKey::decode(&mut r).is_err());
    }
}
