//! What the OpenAPI documents say about the wire's strings and numbers, so that a request the
//! documents allow is one the services parse, and one they forbid is refused (issue 12).
//!
//! utoipa's attributes take literals only, so the bounds written in `#[schema(..)]` on the
//! request types in [`crate::api`] are checked against the constants the services use by
//! the tests below: the two cannot drift apart unnoticed. Patterns too long to write by hand
//! (a field element below the BN254 modulus) are built here from the modulus itself.

use crate::crypto::FieldBytes;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{RefOr, Schema};

/// Canonical base64url without padding, as [`crate::crypto::b64::decode`] accepts it: the
/// URL-safe alphabet, no `=`, and zero bits after the last byte.
pub const BASE64URL: &str =
    "^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-][AQgw]|[A-Za-z0-9_-]{2}[AEIMQUYcgkosw048])?$";

/// 32 bytes as 64 lowercase hex characters ([`crate::crypto::hex_array`]).
pub const HEX32: &str = "^[0-9a-f]{64}$";

/// An issuer key id as [`crate::rules::parse_key_id`] reads it: 64 hex characters, either case.
pub const KEY_ID: &str = "^[0-9a-fA-F]{64}$";

/// An issuer or operator id ([`crate::ledger::valid_id`]).
pub const ID: &str = "^[a-z0-9_-]{1,64}$";

/// The BN254 scalar field modulus `p`, big-endian hex.
const FIELD_MODULUS: &str = "30644e72e131a029b85045b68181585d2833e84879b9709143e1f593f0000001";

/// A regular expression for the strings of `modulus.len()` lowercase hex characters whose
/// value is below `modulus` (lowercase hex): for each position, the same digits as the
/// modulus before it, a smaller digit at it, any digits after.
pub fn hex_below(modulus: &str) -> String {
    let digits = "0123456789abcdef";
    let len = modulus.len();
    let mut alternatives = Vec::new();
    for (i, d) in modulus.char_indices() {
        let value = digits.find(d).unwrap_or(0);
        if value == 0 {
            continue;
        }
        let smaller = match value {
            1 => "0".to_owned(),
            v => format!("[{}]", &digits[..v]),
        };
        let rest = len - i - 1;
        let tail = if rest == 0 {
            String::new()
        } else {
            format!("[0-9a-f]{{{rest}}}")
        };
        alternatives.push(format!("{}{smaller}{tail}", &modulus[..i]));
    }
    format!("^(?:{})$", alternatives.join("|"))
}

/// The pattern of a BN254 field element in hex ([`FieldBytes::from_hex`]).
pub fn field_element_pattern() -> String {
    hex_below(FIELD_MODULUS)
}

impl utoipa::PartialSchema for FieldBytes {
    fn schema() -> RefOr<Schema> {
        RefOr::T(Schema::Object(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(field_element_pattern()))
                .description(Some(
                    "A BN254 field element: 64 lowercase hex characters, big-endian, below \
                     the modulus 0x30644e72…f0000001.",
                ))
                .examples([serde_json::json!(
                    "115cc0f5e7d690413df64c6b9662e9cf2a3617f2743245519e19607a4417189a"
                )])
                .build(),
        ))
    }
}

impl utoipa::ToSchema for FieldBytes {}

/// A string schema with `pattern` and `description`.
fn text(pattern: &str, description: &str) -> RefOr<Schema> {
    RefOr::T(Schema::Object(
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(pattern))
            .description(Some(description))
            .build(),
    ))
}

/// A compressed secp256k1 point ([`crate::credits::Point::from_hex`]).
pub const POINT: &str = "^0[23][0-9a-f]{64}$";
/// A keyset id ([`crate::credits::KeysetId::from_hex`]): version 0 or version 1.
pub const KEYSET_ID: &str = "^(?:00[0-9a-f]{14}|01[0-9a-f]{64})$";

impl utoipa::PartialSchema for crate::credits::Point {
    fn schema() -> RefOr<Schema> {
        text(
            POINT,
            "A compressed secp256k1 point: 66 lowercase hex characters. One of this shape \
             that is not on the curve is `invalid_request` (a pattern cannot say that).",
        )
    }
}

impl utoipa::ToSchema for crate::credits::Point {}

impl utoipa::PartialSchema for crate::credits::KeysetId {
    fn schema() -> RefOr<Schema> {
        text(
            KEYSET_ID,
            "A keyset id, lowercase hex: `00` + 14 characters or `01` + 64.",
        )
    }
}

impl utoipa::ToSchema for crate::credits::KeysetId {}

impl utoipa::PartialSchema for crate::credits::Secret {
    fn schema() -> RefOr<Schema> {
        text(
            HEX32,
            "A token's secret: 64 lowercase hex characters (32 bytes).",
        )
    }
}

impl utoipa::ToSchema for crate::credits::Secret {}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::api::*;
    use serde_json::Value;
    use utoipa::PartialSchema;

    fn schema_of<T: PartialSchema>() -> Value {
        serde_json::to_value(T::schema()).unwrap()
    }

    #[test]
    fn the_field_pattern_is_built_from_the_modulus_the_parser_uses() {
        // p − 1 parses, p does not: the pattern's boundary is the parser's.
        let below = "30644e72e131a029b85045b68181585d2833e84879b9709143e1f593f0000000";
        assert!(FieldBytes::from_hex(below).is_ok());
        assert!(FieldBytes::from_hex(FIELD_MODULUS).is_err());
        let pattern = field_element_pattern();
        assert!(
            pattern.starts_with("^(?:[012][0-9a-f]{63}|30[012345][0-9a-f]{61}|"),
            "{pattern}"
        );
        assert!(
            pattern.ends_with(&format!("|{}0)$", &FIELD_MODULUS[..63])),
            "{pattern}"
        );
    }

    #[test]
    fn schema_bounds_are_the_constants_the_services_check() {
        let mint = schema_of::<MintCodesRequest>();
        assert_eq!(mint["properties"]["count"]["minimum"], 1);
        assert_eq!(mint["properties"]["count"]["maximum"], MAX_TOPUP_CODES);
        let limit = schema_of::<AddIssuerRequest>();
        assert_eq!(
            limit["properties"]["limit_credits"]["maximum"],
            MAX_LIMIT_CREDITS
        );
        assert_eq!(
            schema_of::<SetLimitRequest>()["properties"]["limit_credits"]["maximum"],
            MAX_LIMIT_CREDITS
        );
        assert_eq!(limit["properties"]["id"]["pattern"], ID);
        assert_eq!(
            schema_of::<AddOperatorRequest>()["properties"]["share_bps"]["maximum"],
            crate::ledger::BPS
        );
        let swap = schema_of::<crate::credits::SwapRequest>();
        let limits = crate::credits::SwapLimits::default();
        assert_eq!(swap["properties"]["inputs"]["minItems"], 1);
        assert_eq!(swap["properties"]["inputs"]["maxItems"], limits.max_inputs);
        assert_eq!(
            swap["properties"]["outputs"]["maxItems"],
            limits.max_outputs
        );
        assert_eq!(
            schema_of::<CheckStateRequest>()["properties"]["Ys"]["maxItems"],
            limits.max_inputs
        );
        assert_eq!(
            schema_of::<CreditRestoreRequest>()["properties"]["outputs"]["maxItems"],
            limits.max_outputs
        );
        let redeem = schema_of::<RedeemRequest>();
        for variant in redeem["oneOf"].as_array().unwrap() {
            let outputs = &variant["properties"]["outputs"];
            assert_eq!(outputs["minItems"], 1);
            assert_eq!(outputs["maxItems"], limits.max_outputs);
        }
        for (schema, field) in [
            (schema_of::<PublishRequest>(), "key_id"),
            (schema_of::<PurchaseRequest>(), "key_id"),
        ] {
            assert_eq!(schema["properties"][field]["pattern"], KEY_ID);
        }
        assert_eq!(
            schema_of::<RegisterKeyRequest>()["properties"]["public_key"]["pattern"],
            BASE64URL
        );
    }

    #[test]
    fn strict_requests_say_additional_properties_false() {
        for schema in [
            schema_of::<PublishRequest>(),
            schema_of::<ZkRedemption>(),
            schema_of::<AddIssuerRequest>(),
            schema_of::<AddOperatorRequest>(),
            schema_of::<SetLimitRequest>(),
            schema_of::<SetShareRequest>(),
            schema_of::<RegisterKeyRequest>(),
            schema_of::<PurchaseRequest>(),
            schema_of::<MintCodesRequest>(),
            schema_of::<CheckStateRequest>(),
            schema_of::<CreditRestoreRequest>(),
            schema_of::<crate::credits::SwapRequest>(),
            schema_of::<crate::credits::Proof>(),
            schema_of::<crate::credits::BlindedMessage>(),
        ] {
            assert_eq!(schema["additionalProperties"], false, "{schema}");
        }
        for variant in schema_of::<ForwardRedemptionRequest>()["oneOf"]
            .as_array()
            .unwrap()
        {
            assert_eq!(variant["additionalProperties"], false, "{variant}");
        }
    }
}
