//! What relays and operators send a directory, and what it signs for operators' identity:
//! registrations, heartbeats, withdrawals and identity attestations. (Issue 13; the checks
//! that need a relay address or a certificate are in `smpx-directory`, which links the relay
//! protocol; everything here is plain values and signatures.)
//!
//! **Registration.** The relay's operator writes a [`Registration`] body, encodes it as JSON
//! once ([`Registration::payload`]) and sends those exact bytes as
//! [`RegistrationRequest::registration`], with
//!
//! - a proof of work over them ([`crate::rules::pow`], challenge = the text of the
//!   directory's challenge, body = the payload bytes), so the work is bound to this
//!   registration and to a challenge the directory handed out;
//! - a signature by the relay's CA key under [`REGISTRATION_CA_DOMAIN`] (the CA certificate
//!   travels in the body: its SHA-256 is the fingerprint in the address, so only the holder
//!   of the CA key can register that fingerprint);
//! - a signature by the operator's key under [`REGISTRATION_OPERATOR_DOMAIN`] (the relay is
//!   the operator's, and later heartbeats and a withdrawal are checked against that key).
//!
//! Both signatures are Ed25519 over `u16 BE len(domain) ‖ domain ‖ payload` (as every smpx
//! signature, [`crate::crypto::sign`]).
//!
//! **Heartbeats and withdrawals** are [`Signed`] bodies (receipt format 2) by the operator
//! key the relay was registered with: the relay's process holds that key, not the CA key,
//! which stays offline. A heartbeat's `seq` must grow, so a replayed or reordered heartbeat
//! is refused.
//!
//! **Attestations** are [`Signed`] [`Attestation`]s by a key the directory is configured to
//! trust ([`attest`] makes one, so `smpx directory attest` is a thin command).
//!
//! Golden vectors: `testdata/directory_wire.json`.

use crate::crypto::sign::{Signature64, SigningKey, VerifyingKey};
use crate::error::{err, ErrorCode, ProtocolError};
use crate::receipt::Signed;
use crate::UnixTime;
use serde::{Deserialize, Serialize};

/// Domain of the CA key's signature on a registration payload.
pub const REGISTRATION_CA_DOMAIN: &str = "smpx/directory/registration/ca/v1";
/// Domain of the operator key's signature on a registration payload.
pub const REGISTRATION_OPERATOR_DOMAIN: &str = "smpx/directory/registration/operator/v1";
/// Domain of a heartbeat.
pub const HEARTBEAT_DOMAIN: &str = "smpx/directory/heartbeat/v1";
/// Domain of a withdrawal.
pub const WITHDRAW_DOMAIN: &str = "smpx/directory/withdraw/v1";
/// Domain of an identity attestation.
pub const ATTESTATION_DOMAIN: &str = "smpx/directory/attestation/v1";

/// Longest metadata text field (characters).
pub const MAX_TEXT_LEN: usize = 256;
/// Longest operator id.
pub const MAX_OPERATOR_ID_LEN: usize = 64;
/// Longest region code.
pub const MAX_REGION_LEN: usize = 16;
/// Largest relay INFO object, as JSON text.
pub const MAX_INFO_BYTES: usize = 8 * 1024;
/// Largest CA certificate (DER); an Ed25519 self-signed certificate is about 400 bytes.
pub const MAX_CERTIFICATE_BYTES: usize = 4 * 1024;
/// How far a registration's or heartbeat's timestamp may be from the directory's clock.
pub const MAX_CLOCK_SKEW_SECS: u64 = 600;
/// Longest registration payload (JSON text, bytes).
pub const MAX_REGISTRATION_BYTES: usize = 32 * 1024;

/// What a SimpleX server publishes in its `[INFORMATION]` section, each field only if the
/// operator chose to. Nothing else about the operator is stored or published.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RelayMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 256)]
    pub source_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 256)]
    pub operator_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 256)]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 256)]
    pub hosting: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 256)]
    pub admin_contact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 256)]
    pub complaints_contact: Option<String>,
}

impl RelayMetadata {
    fn fields(&self) -> [(&'static str, &Option<String>); 6] {
        [
            ("source_code", &self.source_code),
            ("operator_name", &self.operator_name),
            ("country", &self.country),
            ("hosting", &self.hosting),
            ("admin_contact", &self.admin_contact),
            ("complaints_contact", &self.complaints_contact),
        ]
    }

    /// Each field at most [`MAX_TEXT_LEN`] characters, without control characters.
    pub fn check(&self) -> Result<(), ProtocolError> {
        for (name, value) in self.fields() {
            if let Some(v) = value {
                check_text(name, v, MAX_TEXT_LEN)?;
            }
        }
        Ok(())
    }
}

fn check_text(name: &str, v: &str, max: usize) -> Result<(), ProtocolError> {
    if v.chars().count() > max {
        return Err(err(
            ErrorCode::InvalidRequest,
            format!("{name} is longer than {max} characters"),
        ));
    }
    if v.chars().any(char::is_control) {
        return Err(err(
            ErrorCode::InvalidRequest,
            format!("{name} holds a control character"),
        ));
    }
    Ok(())
}

/// The body a relay's operator registers (signed twice, worked on once).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    /// `smpx://<fingerprint>@host:port`.
    pub address: String,
    /// The operator, by the id the coordinator knows it under.
    pub operator_id: String,
    /// The operator's Ed25519 key: signs this, the heartbeats and a withdrawal.
    pub operator_key: VerifyingKey,
    /// A short region code (`eu-west`, `us`, …): lower-case letters, digits and hyphens.
    pub region: String,
    /// The relay's INFO answer as it publishes it (prices, capacity offer), a JSON object of
    /// at most [`MAX_INFO_BYTES`].
    pub info: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub metadata: RelayMetadata,
    /// When the operator wrote this (unix seconds), within [`MAX_CLOCK_SKEW_SECS`] of the
    /// directory's clock.
    pub timestamp: UnixTime,
    /// The directory's challenge (`GET /v1/pow`) the proof of work was done for.
    pub challenge: String,
    /// The relay's CA certificate, DER, hex.
    pub ca_certificate: String,
}

impl Registration {
    /// The JSON text to sign, work on and send.
    pub fn payload(&self) -> Result<String, ProtocolError> {
        serde_json::to_string(self)
            .map_err(|e| err(ErrorCode::Internal, format!("encoding a registration: {e}")))
    }

    /// Reads a payload and checks every bound (lengths, region alphabet, INFO size); the
    /// address, certificate and signatures are the directory's checks.
    pub fn parse(payload: &str) -> Result<Registration, ProtocolError> {
        if payload.len() > MAX_REGISTRATION_BYTES {
            return Err(err(
                ErrorCode::InvalidRequest,
                "the registration is larger than 32 KiB",
            ));
        }
        let r: Registration = serde_json::from_str(payload).map_err(|e| {
            err(
                ErrorCode::InvalidRequest,
                format!("registration payload: {e}"),
            )
        })?;
        r.check()?;
        Ok(r)
    }

    fn check(&self) -> Result<(), ProtocolError> {
        let bad = |m: &str| Err(err(ErrorCode::InvalidRequest, m.to_string()));
        if self.operator_id.is_empty() || self.operator_id.len() > MAX_OPERATOR_ID_LEN {
            return bad("operator_id is empty or longer than 64 bytes");
        }
        check_text("operator_id", &self.operator_id, MAX_OPERATOR_ID_LEN)?;
        if self.region.is_empty()
            || self.region.len() > MAX_REGION_LEN
            || !self
                .region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return bad("region is 1-16 lower-case letters, digits or hyphens");
        }
        self.metadata.check()?;
        let info = serde_json::to_string(&self.info).unwrap_or_default();
        if info.len() > MAX_INFO_BYTES {
            return bad("info is larger than 8 KiB");
        }
        if self.challenge.len() > 128 {
            return bad("challenge is longer than 128 bytes");
        }
        if self.ca_certificate.len() > 2 * MAX_CERTIFICATE_BYTES {
            return bad("ca_certificate is larger than 4 KiB");
        }
        Ok(())
    }

    /// The CA certificate's DER bytes.
    pub fn certificate_der(&self) -> Result<Vec<u8>, ProtocolError> {
        hex::decode(&self.ca_certificate)
            .map_err(|_| err(ErrorCode::InvalidRequest, "ca_certificate is not hex"))
    }
}

/// `POST /v1/relays`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistrationRequest {
    /// A [`Registration`] as JSON text: exactly the bytes signed and worked on.
    #[schema(max_length = 32768)]
    pub registration: String,
    /// The proof of work's nonce.
    pub nonce: u64,
    /// By the relay's CA key, under [`REGISTRATION_CA_DOMAIN`], hex.
    pub ca_signature: Signature64,
    /// By the operator's key, under [`REGISTRATION_OPERATOR_DOMAIN`], hex.
    pub operator_signature: Signature64,
}

impl RegistrationRequest {
    /// Checks the operator's signature on the payload against the key in it.
    pub fn check_operator_signature(&self, r: &Registration) -> Result<(), ProtocolError> {
        r.operator_key
            .verify(
                REGISTRATION_OPERATOR_DOMAIN,
                self.registration.as_bytes(),
                &self.operator_signature,
            )
            .map_err(|_| {
                err(
                    ErrorCode::BadSignature,
                    "the operator's signature on the registration does not verify",
                )
            })
    }

    /// Checks the CA's signature on the payload against the key the certificate holds.
    pub fn check_ca_signature(&self, ca_key: &VerifyingKey) -> Result<(), ProtocolError> {
        ca_key
            .verify(
                REGISTRATION_CA_DOMAIN,
                self.registration.as_bytes(),
                &self.ca_signature,
            )
            .map_err(|_| {
                err(
                    ErrorCode::BadSignature,
                    "the CA's signature on the registration does not verify",
                )
            })
    }
}

/// A liveness report by the operator's key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Heartbeat {
    /// The relay's CA fingerprint (the path names it too; they must agree).
    pub fingerprint: String,
    /// Grows with every heartbeat: a replay or an older one is refused.
    pub seq: u64,
    /// When the relay sent it.
    pub at: UnixTime,
}

/// The operator takes a relay off the directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Withdrawal {
    pub fingerprint: String,
    pub at: UnixTime,
}

/// A verified legal identity of an operator, signed by an attester the directory trusts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Attestation {
    /// The operator's key the identity belongs to.
    pub operator_key: VerifyingKey,
    pub legal_name: String,
    /// ISO 3166-1 alpha-2.
    pub country: String,
    pub issued_at: UnixTime,
}

impl Attestation {
    /// Bounds on the text fields.
    pub fn check(&self) -> Result<(), ProtocolError> {
        check_text("legal_name", &self.legal_name, MAX_TEXT_LEN)?;
        check_text("country", &self.country, 2)?;
        if self.legal_name.is_empty() {
            return Err(err(ErrorCode::InvalidRequest, "legal_name is empty"));
        }
        Ok(())
    }
}

/// An attester's signed attestation of `operator_key`'s legal identity.
pub fn attest(
    attester: &SigningKey,
    operator_key: VerifyingKey,
    legal_name: &str,
    country: &str,
    issued_at: UnixTime,
) -> Result<Signed<Attestation>, ProtocolError> {
    let a = Attestation {
        operator_key,
        legal_name: legal_name.to_string(),
        country: country.to_string(),
        issued_at,
    };
    a.check()?;
    Signed::sign(attester, ATTESTATION_DOMAIN, a)
}

/// Checks an attestation: signed by one of `trusted`, for `operator_key`, fields in bounds.
pub fn check_attestation<'a>(
    a: &'a Signed<Attestation>,
    trusted: &[VerifyingKey],
    operator_key: &VerifyingKey,
) -> Result<&'a Attestation, ProtocolError> {
    if !trusted.contains(&a.signer) {
        return Err(err(
            ErrorCode::BadSignature,
            "the attestation is signed by a key this directory does not trust",
        ));
    }
    let body = a.verify(ATTESTATION_DOMAIN, &a.signer)?;
    if &body.operator_key != operator_key {
        return Err(err(
            ErrorCode::BadSignature,
            "the attestation is for another operator key",
        ));
    }
    body.check()?;
    Ok(body)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const VECTORS: &str = include_str!("../testdata/directory_wire.json");

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn registration() -> Registration {
        let mut info = serde_json::Map::new();
        info.insert("price_per_mb".into(), serde_json::json!(3));
        Registration {
            address: "smpx://AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA@relay.example:5223".into(),
            operator_id: "op-1".into(),
            operator_key: key(2).verifying_key(),
            region: "eu-west".into(),
            info,
            metadata: RelayMetadata {
                country: Some("DE".into()),
                ..RelayMetadata::default()
            },
            timestamp: 1_800_000_000,
            challenge: "00".repeat(16),
            ca_certificate: "3000".into(),
        }
    }

    /// The golden file pins the payload text, the signatures (Ed25519 is deterministic) and
    /// the domains; regenerate only for a new domain version.
    #[test]
    fn the_golden_vectors_hold() {
        let v: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
        assert_eq!(v["domains"]["ca"], REGISTRATION_CA_DOMAIN);
        assert_eq!(v["domains"]["operator"], REGISTRATION_OPERATOR_DOMAIN);
        assert_eq!(v["domains"]["heartbeat"], HEARTBEAT_DOMAIN);
        assert_eq!(v["domains"]["withdraw"], WITHDRAW_DOMAIN);
        assert_eq!(v["domains"]["attestation"], ATTESTATION_DOMAIN);
        let r = registration();
        let payload = r.payload().unwrap();
        assert_eq!(v["registration"]["payload"], payload.as_str());
        let ca = key(1).sign(REGISTRATION_CA_DOMAIN, payload.as_bytes());
        let op = key(2).sign(REGISTRATION_OPERATOR_DOMAIN, payload.as_bytes());
        let req = RegistrationRequest {
            registration: payload.clone(),
            nonce: 7,
            ca_signature: ca,
            operator_signature: op,
        };
        assert_eq!(
            v["registration"]["request"],
            serde_json::to_value(&req).unwrap()
        );
        assert_eq!(Registration::parse(&payload).unwrap(), r);
        req.check_operator_signature(&r).unwrap();
        req.check_ca_signature(&key(1).verifying_key()).unwrap();

        let hb = Signed::sign(
            &key(2),
            HEARTBEAT_DOMAIN,
            Heartbeat {
                fingerprint: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into(),
                seq: 1,
                at: 1_800_000_060,
            },
        )
        .unwrap();
        assert_eq!(v["heartbeat"], serde_json::to_value(&hb).unwrap());
        let a = attest(
            &key(3),
            key(2).verifying_key(),
            "Example GmbH",
            "DE",
            1_800_000_000,
        )
        .unwrap();
        assert_eq!(v["attestation"], serde_json::to_value(&a).unwrap());
        assert_eq!(
            check_attestation(&a, &[key(3).verifying_key()], &key(2).verifying_key())
                .unwrap()
                .legal_name,
            "Example GmbH"
        );
    }

    #[test]
    fn each_signature_is_checked_under_its_own_domain_and_key() {
        let r = registration();
        let payload = r.payload().unwrap();
        // The CA signed under the operator's domain: refused.
        let req = RegistrationRequest {
            registration: payload.clone(),
            nonce: 0,
            ca_signature: key(1).sign(REGISTRATION_OPERATOR_DOMAIN, payload.as_bytes()),
            operator_signature: key(9).sign(REGISTRATION_OPERATOR_DOMAIN, payload.as_bytes()),
        };
        let code = |e: ProtocolError| e.code;
        assert_eq!(
            req.check_ca_signature(&key(1).verifying_key())
                .map_err(code),
            Err(ErrorCode::BadSignature)
        );
        // Signed by a key other than the one in the body.
        assert_eq!(
            req.check_operator_signature(&r).map_err(code),
            Err(ErrorCode::BadSignature)
        );
    }

    #[test]
    fn bounds_are_typed_refusals() {
        let mut r = registration();
        r.metadata.hosting = Some("x".repeat(MAX_TEXT_LEN + 1));
        let p = serde_json::to_string(&r).unwrap();
        assert_eq!(
            Registration::parse(&p).unwrap_err().code,
            ErrorCode::InvalidRequest
        );
        let mut r = registration();
        r.region = "EU West".into();
        let p = serde_json::to_string(&r).unwrap();
        assert_eq!(
            Registration::parse(&p).unwrap_err().code,
            ErrorCode::InvalidRequest
        );
        let mut r = registration();
        r.info
            .insert("big".into(), serde_json::json!("y".repeat(MAX_INFO_BYTES)));
        let p = serde_json::to_string(&r).unwrap();
        assert_eq!(
            Registration::parse(&p).unwrap_err().code,
            ErrorCode::InvalidRequest
        );
        // Unknown fields are refused (the directory publishes only what it knows).
        let mut v = serde_json::to_value(registration()).unwrap();
        v["email"] = serde_json::json!("a@b");
        assert!(Registration::parse(&v.to_string()).is_err());
        // An attestation by an untrusted key.
        let a = attest(&key(4), key(2).verifying_key(), "X", "DE", 1).unwrap();
        assert_eq!(
            check_attestation(&a, &[key(3).verifying_key()], &key(2).verifying_key())
                .unwrap_err()
                .code,
            ErrorCode::BadSignature
        );
    }
}
