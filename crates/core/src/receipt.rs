//! Signed receipts: what a party hands out as proof that it recorded something.
//!
//! A receipt is a body, the signer's Ed25519 key and a signature under a per-purpose domain
//! (so a receipt of one kind can never pass for another). This module owns how that travels,
//! because the format is frozen: a newer signer may add fields to a body without breaking an
//! older reader.
//!
//! # Wire format (format version 2)
//!
//! ```json
//! {"version": 2, "payload": "{\"commitment\":…}", "signer": "<hex>", "signature": "<hex>"}
//! ```
//!
//! `payload` is the body as JSON text, and the signature is over exactly its UTF-8 bytes
//! ([`crate::crypto::sign`] frames them with the domain). A verifier checks those bytes and
//! only then reads the body out of them, so it never has to re-encode anything: a body with
//! fields this program does not know still verifies, and the unknown fields are ignored
//! (no receipt body refuses unknown fields). A JSON string survives any re-serialisation
//! (stores, proxies, `serde_json::Value`), unlike the bytes of a nested object.
//!
//! What a body *means* is named by the domain, which carries its own version
//! (`smpx/receipt/publish/v1`): adding fields keeps the domain, changing the meaning of one
//! gets a new domain. `version` is the envelope's format; unknown top-level fields are
//! ignored too, a `version` other than 2 is refused.
//!
//! # Format 1 (before the freeze), still read
//!
//! `{"body": {…}, "signer", "signature"}`, the signature over `serde_json::to_vec(&body)` of
//! the parsed body, which fixes the field order to the struct's. Receipts stored in this form
//! (the wallet's `credits.receipt` and `vouchers.publish_receipt`, the operator's and the
//! coordinator's stored redemption receipts, the wallet's checkpoint cache) keep verifying:
//! reading one re-encodes the body exactly as the format-1 verifier did, and writing it out
//! again (e.g. a stored receipt served once more) keeps format 1, so a format-1 receipt nested
//! in another re-encodes to the bytes its signer signed. Both formats sign the same bytes for
//! the same body: the switch changed the envelope, not the signatures.
//!
//! Golden vectors for both formats: `testdata/receipts.json`, checked by the tests below.

use std::fmt;

use crate::crypto::sign::{Signature64, SigningKey, VerifyingKey};
use crate::error::{err, ErrorCode, ProtocolError};
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Domain of the coordinator's receipt for a published voucher.
pub const PUBLISH_DOMAIN: &str = "smpx/receipt/publish/v1";
/// Domain of the coordinator's receipt for a redemption, handed to the operator.
pub const REDEMPTION_DOMAIN: &str = "smpx/receipt/redemption/v1";
/// Domain of the operator's receipt for a redemption, handed to the wallet.
pub const OPERATOR_DOMAIN: &str = "smpx/receipt/operator-credit/v1";
/// Domain of the coordinator's signed MMR checkpoints.
pub const CHECKPOINT_DOMAIN: &str = "smpx/checkpoint/mmr/v1";

/// The receipt format this program writes (`"version"` on the wire).
pub const FORMAT_VERSION: u32 = 2;

/// A body signed by `signer`.
///
/// `body` is read out of the signed bytes ([`Signed::payload`]); it is public for reading.
/// Changing it does not change what is sent (the payload is), and [`Signed::verify`] refuses
/// a value whose body no longer matches its payload.
///
/// The OpenAPI schema is the format-2 wire shape (`body` is not on the wire, it is read out
/// of `payload`).
#[derive(Clone, PartialEq, Eq, utoipa::ToSchema)]
pub struct Signed<T> {
    #[schema(ignore)]
    pub body: T,
    /// Ed25519 public key of the signer, hex.
    #[schema(value_type = String)]
    pub signer: VerifyingKey,
    /// Ed25519 signature, hex, over `u16 BE len(domain) ‖ domain ‖ payload`.
    #[schema(value_type = String)]
    pub signature: Signature64,
    /// The body as JSON text: exactly the bytes that were signed. Readers ignore body fields
    /// they do not know.
    payload: String,
    /// Receipt format: 2 (1 only for a receipt read in the format from before the freeze).
    version: u32,
}

impl<T: fmt::Debug> fmt::Debug for Signed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signed")
            .field("body", &self.body)
            .field("signer", &self.signer)
            .field("signature", &self.signature)
            .field("format", &self.format_version())
            .finish()
    }
}

impl<T> Signed<T> {
    /// The signed bytes: the body's JSON text.
    pub fn payload(&self) -> &str {
        &self.payload
    }

    /// 2, or 1 for a receipt read in the format from before the freeze.
    pub fn format_version(&self) -> u32 {
        self.version
    }
}

impl<T: Serialize> Signed<T> {
    /// Signs `body` for `domain`: the payload is its JSON encoding.
    pub fn sign(key: &SigningKey, domain: &str, body: T) -> Result<Self, ProtocolError> {
        let payload = serde_json::to_string(&body)
            .map_err(|e| err(ErrorCode::Internal, format!("encoding a receipt: {e}")))?;
        Ok(Signed {
            signature: key.sign(domain, payload.as_bytes()),
            signer: key.verifying_key(),
            body,
            payload,
            version: FORMAT_VERSION,
        })
    }
}

impl<T: DeserializeOwned + PartialEq> Signed<T> {
    /// The one check of a receipt: that it was signed by `expected` (a key learned out of
    /// band, e.g. from `GET /v1/params`: a receipt that merely verifies under its own embedded
    /// key proves nothing) for `domain`, over exactly the payload bytes; then the body is read
    /// out of those bytes. Returns the verified body.
    pub fn verify(&self, domain: &str, expected: &VerifyingKey) -> Result<&T, ProtocolError> {
        if &self.signer != expected {
            return Err(err(
                ErrorCode::BadSignature,
                "receipt signed by an unexpected key",
            ));
        }
        self.signer
            .verify(domain, self.payload.as_bytes(), &self.signature)
            .map_err(|_| err(ErrorCode::BadSignature, "receipt signature does not verify"))?;
        let signed: T = serde_json::from_str(&self.payload)
            .map_err(|e| err(ErrorCode::BadSignature, format!("receipt payload: {e}")))?;
        if signed != self.body {
            return Err(err(
                ErrorCode::BadSignature,
                "receipt body does not match its signed payload",
            ));
        }
        Ok(&self.body)
    }
}

/// Format 2 as written.
#[derive(Serialize)]
struct PayloadOut<'a> {
    version: u32,
    payload: &'a str,
    signer: &'a VerifyingKey,
    signature: &'a Signature64,
}

/// Format 1 as written (a stored receipt served again).
#[derive(Serialize)]
struct LegacyOut<'a, T> {
    body: &'a T,
    signer: &'a VerifyingKey,
    signature: &'a Signature64,
}

/// Either format as read. Unknown fields are ignored: a newer envelope may add some.
#[derive(Deserialize)]
struct WireIn {
    #[serde(default)]
    version: Option<u32>,
    #[serde(default)]
    payload: Option<String>,
    #[serde(default)]
    body: Option<serde_json::Value>,
    signer: VerifyingKey,
    signature: Signature64,
}

impl<T: Serialize> Serialize for Signed<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.version == FORMAT_VERSION {
            PayloadOut {
                version: FORMAT_VERSION,
                payload: &self.payload,
                signer: &self.signer,
                signature: &self.signature,
            }
            .serialize(s)
        } else {
            LegacyOut {
                body: &self.body,
                signer: &self.signer,
                signature: &self.signature,
            }
            .serialize(s)
        }
    }
}

impl<'de, T: Serialize + DeserializeOwned> Deserialize<'de> for Signed<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = WireIn::deserialize(d)?;
        let (body, payload, version) = match (w.version, w.payload, w.body) {
            (Some(FORMAT_VERSION), Some(payload), None) => {
                let body = serde_json::from_str(&payload)
                    .map_err(|e| D::Error::custom(format!("receipt payload: {e}")))?;
                (body, payload, FORMAT_VERSION)
            }
            (None | Some(1), None, Some(body)) => {
                let body: T = serde_json::from_value(body)
                    .map_err(|e| D::Error::custom(format!("receipt body: {e}")))?;
                // What the format-1 signer signed, if this is its receipt.
                let payload = serde_json::to_string(&body).map_err(D::Error::custom)?;
                (body, payload, 1)
            }
            (Some(v), _, _) if v != 1 && v != FORMAT_VERSION => {
                return Err(D::Error::custom(format!(
                    "receipt format {v} is not supported (this program reads 1 and 2)"
                )))
            }
            _ => {
                return Err(D::Error::custom(
                    "a receipt has `version: 2` and `payload`, or (format 1) `body`",
                ))
            }
        };
        Ok(Signed {
            body,
            signer: w.signer,
            signature: w.signature,
            payload,
            version,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::api::{Checkpoint, OperatorCreditReceipt, PublishReceipt, RedemptionReceipt};
    use serde_json::Value;

    #[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
    struct Body {
        a: u64,
    }

    #[test]
    fn receipt_verifies_only_under_its_domain_signer_and_body() {
        let k = SigningKey::generate(&mut rand::rngs::OsRng);
        let r = Signed::sign(&k, PUBLISH_DOMAIN, Body { a: 1 }).unwrap();
        assert_eq!(
            r.verify(PUBLISH_DOMAIN, &k.verifying_key()).unwrap(),
            &Body { a: 1 }
        );
        assert!(r.verify(REDEMPTION_DOMAIN, &k.verifying_key()).is_err());
        let other = SigningKey::generate(&mut rand::rngs::OsRng);
        assert!(r.verify(PUBLISH_DOMAIN, &other.verifying_key()).is_err());
        let mut tampered = r.clone();
        tampered.body.a = 2;
        assert!(tampered.verify(PUBLISH_DOMAIN, &k.verifying_key()).is_err());
        // Round trip through JSON keeps it valid.
        let back: Signed<Body> = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        back.verify(PUBLISH_DOMAIN, &k.verifying_key()).unwrap();
        assert_eq!(back, r);
        // And through `serde_json::Value` (which reorders object keys), as the wallet stores it.
        let value = serde_json::to_value(&r).unwrap();
        let back: Signed<Body> = serde_json::from_value(value).unwrap();
        back.verify(PUBLISH_DOMAIN, &k.verifying_key()).unwrap();
    }

    #[test]
    fn receipt_with_fields_this_reader_does_not_know_verifies_and_parses() {
        let k = SigningKey::from_bytes(&[5; 32]);
        let payload = r#"{"a":7,"added_later":{"x":[1,2]},"z":"new"}"#;
        let wire = serde_json::json!({
            "version": 2,
            "payload": payload,
            "signer": k.verifying_key(),
            "signature": k.sign(PUBLISH_DOMAIN, payload.as_bytes()),
            "added_to_the_envelope": true,
        });
        let r: Signed<Body> = serde_json::from_value(wire).unwrap();
        assert_eq!(
            r.verify(PUBLISH_DOMAIN, &k.verifying_key()).unwrap(),
            &Body { a: 7 }
        );
        // Passed on, it keeps the fields it does not know: the signature still holds.
        let again: Signed<Body> =
            serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(again.payload(), payload);
        again.verify(PUBLISH_DOMAIN, &k.verifying_key()).unwrap();
    }

    #[test]
    fn receipt_envelope_is_strict_where_it_must_be() {
        let k = SigningKey::from_bytes(&[5; 32]);
        let r =
            serde_json::to_value(Signed::sign(&k, PUBLISH_DOMAIN, Body { a: 1 }).unwrap()).unwrap();
        let mut newer = r.clone();
        newer["version"] = 3.into();
        let e = serde_json::from_value::<Signed<Body>>(newer).unwrap_err();
        assert!(e.to_string().contains("format 3"), "{e}");
        let mut both = r.clone();
        both["body"] = serde_json::json!({"a": 1});
        assert!(serde_json::from_value::<Signed<Body>>(both).is_err());
        let mut unversioned = r.clone();
        unversioned.as_object_mut().unwrap().remove("version");
        assert!(serde_json::from_value::<Signed<Body>>(unversioned).is_err());
        let mut not_json = r;
        not_json["payload"] = "{\"a\":".into();
        assert!(serde_json::from_value::<Signed<Body>>(not_json).is_err());
    }

    // ---------------------------------------------------------------------------------------
    // Golden vectors: testdata/receipts.json (never rewritten by a test).

    const VECTORS: &str = include_str!("testdata/receipts.json");

    fn vectors() -> Value {
        serde_json::from_str(VECTORS).unwrap()
    }

    fn key(v: &Value, who: &str) -> SigningKey {
        let seed = v["keys"][who]["seed"].as_str().unwrap();
        let key = SigningKey::from_bytes(&hex::decode(seed).unwrap().try_into().unwrap());
        assert_eq!(
            key.verifying_key().to_hex(),
            v["keys"][who]["public"].as_str().unwrap()
        );
        key
    }

    fn domain(kind: &str) -> &'static str {
        match kind {
            "publish" => PUBLISH_DOMAIN,
            "redemption" => REDEMPTION_DOMAIN,
            "operator_credit" => OPERATOR_DOMAIN,
            "checkpoint" => CHECKPOINT_DOMAIN,
            other => panic!("unknown receipt kind {other}"),
        }
    }

    /// Runs `f` with the body type of `kind`.
    macro_rules! by_kind {
        ($kind:expr, $f:ident ( $($arg:expr),* )) => {
            match $kind {
                "publish" => $f::<PublishReceipt>($($arg),*),
                "redemption" => $f::<RedemptionReceipt>($($arg),*),
                "operator_credit" => $f::<OperatorCreditReceipt>($($arg),*),
                "checkpoint" => $f::<Checkpoint>($($arg),*),
                other => panic!("unknown receipt kind {other}"),
            }
        };
    }

    fn check_current<T>(all: &Value, v: &Value)
    where
        T: Serialize + DeserializeOwned + PartialEq + Clone + fmt::Debug,
    {
        let kind = v["kind"].as_str().unwrap();
        let name = v["name"].as_str().unwrap();
        let dom = domain(kind);
        assert_eq!(v["domain"], dom, "{name}");
        let signer = key(all, v["signer"].as_str().unwrap());
        let payload = v["payload"].as_str().unwrap();
        let wire = v["wire"].as_str().unwrap();
        let signature = v["signature"].as_str().unwrap();

        // The signed bytes, framed by hand (independently of `crypto::sign`).
        let mut framed = (dom.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(dom.as_bytes());
        framed.extend_from_slice(payload.as_bytes());
        assert_eq!(hex::encode(&framed), v["signed_bytes_hex"], "{name}");
        let dalek = ed25519_dalek::VerifyingKey::from_bytes(&signer.verifying_key().0).unwrap();
        let sig = ed25519_dalek::Signature::from_bytes(
            &hex::decode(signature).unwrap().try_into().unwrap(),
        );
        dalek.verify_strict(&framed, &sig).unwrap();

        // Reading: the exact wire text verifies and yields the body of the payload.
        let read: Signed<T> = serde_json::from_str(wire).unwrap();
        assert_eq!(read.format_version(), 2);
        assert_eq!(read.payload(), payload);
        let body = read.verify(dom, &signer.verifying_key()).unwrap();
        assert_eq!(body, &serde_json::from_str::<T>(payload).unwrap(), "{name}");

        // Writing: signing that body gives these exact bytes.
        if v["signs_this_payload"].as_bool().unwrap() {
            let made =
                Signed::sign(&signer, dom, serde_json::from_str::<T>(payload).unwrap()).unwrap();
            assert_eq!(made.payload(), payload, "{name}");
            assert_eq!(serde_json::to_string(&made).unwrap(), wire, "{name}");
        }

        // Every changed character of the payload is refused (by parsing or by the signature).
        for i in 0..payload.len() {
            let mut altered = payload.as_bytes().to_vec();
            altered[i] = if altered[i] == b'1' { b'2' } else { b'1' };
            let Ok(altered) = String::from_utf8(altered) else {
                continue;
            };
            let mut w: Value = serde_json::from_str(wire).unwrap();
            w["payload"] = altered.into();
            if let Ok(r) = serde_json::from_value::<Signed<T>>(w) {
                assert!(
                    r.verify(dom, &signer.verifying_key()).is_err(),
                    "{name}: payload byte {i} altered and still verifies"
                );
            }
        }
        // So is a changed signature byte.
        let mut w: Value = serde_json::from_str(wire).unwrap();
        let mut bad = hex::decode(signature).unwrap();
        bad[17] ^= 1;
        w["signature"] = hex::encode(bad).into();
        let r: Signed<T> = serde_json::from_value(w).unwrap();
        assert!(r.verify(dom, &signer.verifying_key()).is_err(), "{name}");
    }

    fn check_legacy<T>(all: &Value, v: &Value)
    where
        T: Serialize + DeserializeOwned + PartialEq + Clone + fmt::Debug,
    {
        let name = v["name"].as_str().unwrap();
        let dom = domain(v["kind"].as_str().unwrap());
        let signer = key(all, v["signer"].as_str().unwrap());
        let wire = v["wire"].as_str().unwrap();
        let read: Signed<T> = serde_json::from_str(wire).unwrap();
        assert_eq!(read.format_version(), 1);
        read.verify(dom, &signer.verifying_key()).unwrap();
        // Stored and served again, it stays byte for byte what its signer sent.
        assert_eq!(serde_json::to_string(&read).unwrap(), wire, "{name}");
        // The signature is the one format 2 makes for the same body.
        assert_eq!(hex::encode(read.signature.0), v["signature"], "{name}");
        let now = Signed::sign(&signer, dom, read.body.clone()).unwrap();
        assert_eq!(now.signature, read.signature, "{name}");
        // A changed body value no longer verifies.
        let tampered = wire.replacen("\"denomination\":10", "\"denomination\":11", 1);
        let tampered = tampered.replacen("\"size\":42", "\"size\":43", 1);
        assert_ne!(tampered, wire);
        let r: Signed<T> = serde_json::from_str(&tampered).unwrap();
        assert!(r.verify(dom, &signer.verifying_key()).is_err(), "{name}");
    }

    #[test]
    fn receipt_golden_vectors_format_2() {
        let all = vectors();
        let list = all["format_2"].as_array().unwrap();
        assert!(list.len() >= 5);
        for v in list {
            by_kind!(v["kind"].as_str().unwrap(), check_current(&all, v));
        }
    }

    #[test]
    fn receipt_golden_vectors_format_1_still_verify() {
        let all = vectors();
        let list = all["format_1"].as_array().unwrap();
        assert_eq!(list.len(), 4);
        for v in list {
            by_kind!(v["kind"].as_str().unwrap(), check_legacy(&all, v));
        }
    }

    /// The bodies of the format-2 vectors, as JSON text (the payloads are these, re-encoded).
    const PUBLISH_BODY: &str = r#"{"commitment":"0000000000000000000000000000000000000000000000000000000000000007","denomination":10,"value":10000000,"issuer_id":"issuer-a","key_id":"6b6579","published_at":1767225600,"expires_at":1769817600,"paths":[]}"#;
    const REDEMPTION_V1_BODY: &str = r#"{"operator_id":"op-a","denomination":10,"value":10000000,"operator_amount":7000000,"fund_amount":3000000,"share_bps":7000,"envelope_digest":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","redeemed_at":1767312000}"#;
    const REDEMPTION_V2_BODY: &str = r#"{"operator_id":"op-a","denomination":10,"value":10000000,"operator_amount":7000000,"fund_amount":3000000,"share_bps":7000,"envelope_digest":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","redeemed_at":1767312000,"nullifier":"0000000000000000000000000000000000000000000000000000000000000009","mmr_id":3}"#;
    const CHECKPOINT_BODY: &str = r#"{"mmr_id":3,"levels":20,"size":42,"root":"0000000000000000000000000000000000000000000000000000000000000005","at":1767312002}"#;
    /// A publish receipt from a newer coordinator, with fields this version does not know.
    const NEWER_PUBLISH_PAYLOAD: &str = r#"{"commitment":"0000000000000000000000000000000000000000000000000000000000000007","denomination":10,"value":10000000,"issuer_id":"issuer-a","key_id":"6b6579","published_at":1767225600,"expires_at":1769817600,"paths":[],"region":"eu-1","fees":{"paid":0}}"#;

    fn vector(
        name: &str,
        kind: &str,
        who: &str,
        key: &SigningKey,
        payload: &str,
        signs: bool,
    ) -> Value {
        let dom = domain(kind);
        let mut framed = (dom.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(dom.as_bytes());
        framed.extend_from_slice(payload.as_bytes());
        let signed = Signed {
            body: (),
            signer: key.verifying_key(),
            signature: key.sign(dom, payload.as_bytes()),
            payload: payload.to_owned(),
            version: FORMAT_VERSION,
        };
        serde_json::json!({
            "name": name,
            "kind": kind,
            "domain": dom,
            "signer": who,
            "signs_this_payload": signs,
            "payload": payload,
            "signed_bytes_hex": hex::encode(framed),
            "signature": hex::encode(signed.signature.0),
            "wire": serde_json::to_string(&signed).unwrap(),
        })
    }

    fn reencoded<T: Serialize + DeserializeOwned>(body: &str) -> String {
        serde_json::to_string(&serde_json::from_str::<T>(body).unwrap()).unwrap()
    }

    /// Prints the `keys` and `format_2` parts of `testdata/receipts.json`:
    /// `SMPX_PRINT_VECTORS=1 cargo test -p smpx-core --lib print_receipt_vectors -- --nocapture`.
    /// Only for adding a vector; the tests above never write the file. (`format_1` was made by
    /// the code before the freeze and is never regenerated.)
    #[test]
    fn print_receipt_vectors() {
        if std::env::var_os("SMPX_PRINT_VECTORS").is_none() {
            return;
        }
        let coordinator = SigningKey::from_bytes(&[0x11; 32]);
        let operator = SigningKey::from_bytes(&[0x22; 32]);
        let redemption = Signed::sign(
            &coordinator,
            REDEMPTION_DOMAIN,
            serde_json::from_str::<RedemptionReceipt>(REDEMPTION_V2_BODY).unwrap(),
        )
        .unwrap();
        let credit = serde_json::to_string(&OperatorCreditReceipt {
            operator_id: "op-a".into(),
            denomination: 10,
            credited: crate::Amount(7_000_000),
            coordinator_receipt: redemption,
            issued_at: 1_767_312_001,
        })
        .unwrap();
        let c = ("coordinator", &coordinator);
        let list = vec![
            vector(
                "publish",
                "publish",
                c.0,
                c.1,
                &reencoded::<PublishReceipt>(PUBLISH_BODY),
                true,
            ),
            vector(
                "redemption v0.1",
                "redemption",
                c.0,
                c.1,
                &reencoded::<RedemptionReceipt>(REDEMPTION_V1_BODY),
                true,
            ),
            vector(
                "redemption v0.2",
                "redemption",
                c.0,
                c.1,
                &reencoded::<RedemptionReceipt>(REDEMPTION_V2_BODY),
                true,
            ),
            vector(
                "operator credit, the coordinator's receipt nested",
                "operator_credit",
                "operator",
                &operator,
                &credit,
                true,
            ),
            vector(
                "checkpoint",
                "checkpoint",
                c.0,
                c.1,
                &reencoded::<Checkpoint>(CHECKPOINT_BODY),
                true,
            ),
            vector(
                "publish receipt of a newer coordinator (unknown fields)",
                "publish",
                c.0,
                c.1,
                NEWER_PUBLISH_PAYLOAD,
                false,
            ),
        ];
        let keys = serde_json::json!({
            "coordinator": {"seed": hex::encode(coordinator.to_bytes()), "public": coordinator.verifying_key().to_hex()},
            "operator": {"seed": hex::encode(operator.to_bytes()), "public": operator.verifying_key().to_hex()},
        });
        println!(
            "\"keys\": {},",
            serde_json::to_string_pretty(&keys).unwrap()
        );
        println!(
            "\"format_2\": {}",
            serde_json::to_string_pretty(&list).unwrap()
        );
    }
}
