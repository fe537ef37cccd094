//! The registration checks that need the relay protocol: the address, the CA certificate's
//! fingerprint and key, both signatures and the proof of work. Pure: `now` and the
//! difficulty are passed in; the challenge's freshness and single use are the store's.

use smpx_core::crypto::sign::VerifyingKey;
use smpx_core::directory::wire::{Registration, RegistrationRequest, MAX_CLOCK_SKEW_SECS};
use smpx_core::error::{err, ErrorCode, ProtocolError};
use smpx_core::rules::pow;
use smpx_relay_protocol::address::RelayAddress;
use smpx_relay_protocol::fingerprint::CaFingerprint;

/// A registration whose signatures, certificate and work are good.
#[derive(Clone, Debug)]
pub struct Checked {
    pub registration: Registration,
    pub address: RelayAddress,
}

/// Checks `req` at `now` against `difficulty`: bounds, address, timestamp, that the CA
/// certificate is the one the address's fingerprint names, the CA's signature under the
/// certificate's Ed25519 key, the operator's signature under the key in the body, and the
/// work (over the challenge text and the payload bytes).
pub fn check_registration(
    req: &RegistrationRequest,
    now: u64,
    difficulty: u32,
) -> Result<Checked, ProtocolError> {
    let r = Registration::parse(&req.registration)?;
    let address: RelayAddress = r
        .address
        .parse()
        .map_err(|e| err(ErrorCode::InvalidRequest, format!("address: {e}")))?;
    if r.timestamp.abs_diff(now) > MAX_CLOCK_SKEW_SECS {
        return Err(err(
            ErrorCode::InvalidRequest,
            format!("the registration's timestamp is more than {MAX_CLOCK_SKEW_SECS} s from the directory's clock"),
        ));
    }
    let der = r.certificate_der()?;
    if CaFingerprint::of_certificate(&der) != address.fingerprint {
        return Err(err(
            ErrorCode::BadSignature,
            "the CA certificate is not the one the address's fingerprint names",
        ));
    }
    let ca_key = ed25519_key_of_certificate(&der).ok_or_else(|| {
        err(
            ErrorCode::BadSignature,
            "the CA certificate does not hold an Ed25519 key",
        )
    })?;
    req.check_ca_signature(&ca_key)?;
    req.check_operator_signature(&r)?;
    pow::check(
        r.challenge.as_bytes(),
        req.registration.as_bytes(),
        req.nonce,
        difficulty,
    )
    .map_err(|e| err(ErrorCode::BadProofOfWork, e.to_string()))?;
    Ok(Checked {
        registration: r,
        address,
    })
}

/// One DER element: (tag, contents, rest).
fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, b) = b.split_first()?;
    if tag & 0x1f == 0x1f {
        return None; // high tag numbers: not in a certificate's outer structure
    }
    let (&first, mut b) = b.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 3 || b.len() < n {
            return None;
        }
        let mut len = 0usize;
        for &x in &b[..n] {
            len = (len << 8) | usize::from(x);
        }
        b = &b[n..];
        len
    };
    if b.len() < len {
        return None;
    }
    Some((tag, &b[..len], &b[len..]))
}

/// The OID 1.3.101.112 (id-Ed25519, RFC 8410), DER.
const ED25519_OID: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];

/// The Ed25519 public key in a certificate's SubjectPublicKeyInfo, or `None` if the DER is
/// not a certificate or the key is not Ed25519 (RFC 5280 §4.1; RFC 8410 §4: the algorithm
/// has no parameters and the key is a 32-byte BIT STRING with no unused bits).
pub fn ed25519_key_of_certificate(der: &[u8]) -> Option<VerifyingKey> {
    let (0x30, cert, _) = tlv(der)? else {
        return None;
    };
    let (0x30, mut tbs, _) = tlv(cert)? else {
        return None;
    };
    // [0] version (optional), serial, signature algorithm, issuer, validity, subject.
    if tbs.first() == Some(&0xa0) {
        tbs = tlv(tbs)?.2;
    }
    for expected in [0x02, 0x30, 0x30, 0x30, 0x30] {
        let (tag, _, rest) = tlv(tbs)?;
        if tag != expected {
            return None;
        }
        tbs = rest;
    }
    let (0x30, spki, _) = tlv(tbs)? else {
        return None;
    };
    let (0x30, algorithm, rest) = tlv(spki)? else {
        return None;
    };
    if algorithm != ED25519_OID {
        return None;
    }
    let (0x03, bits, _) = tlv(rest)? else {
        return None;
    };
    let key: [u8; 32] = bits.strip_prefix(&[0u8])?.try_into().ok()?;
    Some(VerifyingKey(key))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_read_out_of_a_real_ca_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let id = smpx_relay_transport::RelayIdentity::create(dir.path()).unwrap();
        let der = id.ca_certificate().to_vec();
        let key = ed25519_key_of_certificate(&der).unwrap();
        // The CA key signs; the certificate's key verifies.
        let sig = smpx_relay_transport::RelayIdentity::sign_with_ca(dir.path(), "d", b"m").unwrap();
        key.verify("d", b"m", &smpx_core::crypto::sign::Signature64(sig))
            .unwrap();
        // Truncations and garbage are refused, never a panic.
        for n in 0..der.len() {
            assert!(ed25519_key_of_certificate(&der[..n]).is_none(), "{n}");
        }
        assert!(ed25519_key_of_certificate(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_none());
        // With the CA key moved offline, signing says so.
        std::fs::remove_file(smpx_relay_transport::identity::ca_key_path(dir.path())).unwrap();
        assert!(matches!(
            smpx_relay_transport::RelayIdentity::sign_with_ca(dir.path(), "d", b"m"),
            Err(smpx_relay_transport::IdentityError::CaKeyOffline { .. })
        ));
    }
}
