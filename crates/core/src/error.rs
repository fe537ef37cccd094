//! Stable error codes shared by every smpx HTTP API.
//!
//! A code is part of the wire protocol: clients match on it, so a code never changes meaning
//! and is never reused. Each code carries its HTTP status, so every service answers the same
//! failure the same way. Wire form: `{"error": {"code": "already_published", "message": "..."}}`.
//! The table is frozen in `testdata/error_codes.txt` (every code with its status), which a
//! test checks: renaming a code, changing its status or removing it fails there.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! error_codes {
    ($( $(#[$doc:meta])* $variant:ident = ($code:literal, $status:literal), )*) => {
        /// A stable, machine-readable error code.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum ErrorCode {
            $( $(#[$doc])* $variant, )*
            /// A code this client version does not know (forward compatibility).
            #[serde(other)]
            Unknown,
        }

        impl ErrorCode {
            /// Every known code, for documentation and tests.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The code as it appears on the wire.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)*
                    ErrorCode::Unknown => "unknown",
                }
            }

            /// The HTTP status this code is always returned with.
            pub fn http_status(self) -> u16 {
                match self {
                    $(ErrorCode::$variant => $status,)*
                    ErrorCode::Unknown => 500,
                }
            }
        }
    };
}

error_codes! {
    // Request shape.
    /// The body is not valid JSON, has a wrong type, a missing or an unknown field.
    InvalidRequest = ("invalid_request", 400),
    /// The body is larger than the endpoint accepts.
    BodyTooLarge = ("body_too_large", 413),
    /// The request needs `Content-Type: application/json`.
    UnsupportedMediaType = ("unsupported_media_type", 415),
    /// No such endpoint or resource.
    NotFound = ("not_found", 404),
    /// The endpoint exists but not with this method.
    MethodNotAllowed = ("method_not_allowed", 405),
    /// Missing or wrong credentials.
    Unauthorized = ("unauthorized", 401),
    /// An issuer or operator with this id is already registered.
    AlreadyExists = ("already_exists", 409),
    /// The request's body did not arrive in time (the connection stalled mid-body).
    RequestTimeout = ("request_timeout", 408),
    /// The request's URI (path and query) is longer than a service accepts.
    UriTooLong = ("uri_too_long", 414),
    /// The request's headers are larger, or more numerous, than a service accepts.
    HeadersTooLarge = ("headers_too_large", 431),

    // Issuers and their keys.
    /// The issuer is not on the coordinator's whitelist (or was removed from it).
    IssuerNotWhitelisted = ("issuer_not_whitelisted", 403),
    /// Publishing this voucher would take the issuer beyond its issuing limit.
    IssuerLimitExceeded = ("issuer_limit_exceeded", 409),
    /// The denomination is not one the network issues.
    UnsupportedDenomination = ("unsupported_denomination", 400),
    /// No issuer key with this id is registered.
    UnknownKey = ("unknown_key", 404),
    /// The key's publish deadline (its period start + 2M) has passed, or its period has not
    /// started yet.
    KeyNotValid = ("key_not_valid", 409),
    /// A key for this issuer, denomination and period is already registered, or the period is
    /// not the current or the next one.
    KeyRegistrationRejected = ("key_registration_rejected", 409),
    /// The voucher signature does not verify under the named issuer key.
    BadSignature = ("bad_signature", 400),

    // Vouchers.
    /// This commitment is already published.
    AlreadyPublished = ("already_published", 409),
    /// No published voucher has this commitment.
    UnknownVoucher = ("unknown_voucher", 404),
    /// The voucher was already redeemed.
    AlreadyRedeemed = ("already_redeemed", 409),
    /// The voucher expired (its value has been or will be released to the network fund).
    VoucherExpired = ("voucher_expired", 410),
    /// The redemption envelope does not decrypt, or its content is malformed.
    InvalidEnvelope = ("invalid_envelope", 400),
    /// The revealed secret does not open the commitment (C ≠ H(s, denomination)).
    CommitmentMismatch = ("commitment_mismatch", 400),
    /// The envelope names another operator than the one forwarding it.
    OperatorMismatch = ("operator_mismatch", 403),
    /// The operator is not registered with the coordinator.
    UnknownOperator = ("unknown_operator", 404),
    /// The operator share is above the network maximum (70%).
    ShareTooHigh = ("share_too_high", 400),
    /// The protocol version is not supported by this endpoint.
    UnsupportedVersion = ("unsupported_version", 400),

    /// v0.2: the proof is not 128 well-formed bytes (bad encoding, point not on the curve).
    MalformedProof = ("malformed_proof", 400),
    /// v0.2: the proof does not verify for these public inputs (another operator, fee,
    /// denomination, root or nullifier than it was made for).
    InvalidProof = ("invalid_proof", 400),
    /// v0.2: the root was never a root of the named MMR.
    UnknownRoot = ("unknown_root", 404),
    /// v0.2: the MMR's roots are no longer accepted (its vouchers have expired).
    RetiredRoot = ("retired_root", 410),
    /// v0.2: unknown MMR id.
    UnknownMmr = ("unknown_mmr", 404),
    /// v0.2: the open MMR reached its capacity.
    MmrFull = ("mmr_full", 503),
    /// v0.2 is not enabled on this coordinator (no verified ceremony keys).
    ZkUnavailable = ("zk_unavailable", 503),

    // Payments at the issuer.
    /// The payment was refused (unknown, used or mismatched top-up code).
    PaymentRejected = ("payment_rejected", 402),
    /// The payment method is not enabled at this issuer.
    PaymentMethodUnavailable = ("payment_method_unavailable", 400),

    // Operator credits (blind-signed tokens, NUT-00/03/07).
    /// A credit keyset id this operator does not know (never existed, or expired long ago).
    UnknownKeyset = ("unknown_keyset", 404),
    /// A credit token's keyset is past its final expiry: the token is worth nothing now.
    KeysetExpired = ("keyset_expired", 410),
    /// New outputs must be under the keyset of the current day (`GET /v1/keys`).
    KeysetNotCurrent = ("keyset_not_current", 400),
    /// A credit amount that is not a power of two, has no key in its keyset, or overflows.
    InvalidAmount = ("invalid_amount", 400),
    /// A credit token's signature does not verify: forged, altered, or claimed under another
    /// day's keyset than the one that signed it.
    InvalidToken = ("invalid_token", 400),
    /// The same token twice in one request.
    DuplicateInput = ("duplicate_input", 400),
    /// The same blinded output twice in one request.
    DuplicateOutput = ("duplicate_output", 400),
    /// The outputs (plus the price) are worth more than the inputs.
    Unbalanced = ("unbalanced", 400),
    /// Outputs for credits issued after a redemption do not add up to the credited amount.
    AmountMismatch = ("amount_mismatch", 400),
    /// A token is already spent, or being spent, at this operator (on any of its servers).
    TokenSpent = ("token_spent", 409),
    /// A blinded output was already signed by this operator in an earlier request.
    OutputReused = ("output_reused", 409),
    /// No spend with this id.
    UnknownSwap = ("unknown_swap", 404),
    /// The spend is registered but its change is not released yet; collect it later with
    /// `GET /v1/swap/{id}`.
    SwapPending = ("swap_pending", 503),
    /// This exact spend was cancelled and its inputs refunded: spend them again with fresh
    /// outputs.
    SwapCancelled = ("swap_cancelled", 409),
    /// This exact spend was sent before and is not finished: its answer belongs to the first
    /// request. Collect the change with `GET /v1/swap/{id}`; a seller of capacity treats the
    /// repeat as no payment.
    SpendRepeated = ("spend_repeated", 409),

    // The relay directory.
    /// The registration's proof of work is missing, wrong, below the published difficulty or
    /// for a challenge the directory no longer accepts: fetch a fresh challenge and solve it.
    BadProofOfWork = ("bad_proof_of_work", 400),
    /// Another relay is registered with this fingerprint under another operator.
    FingerprintTaken = ("fingerprint_taken", 409),
    /// Too many registrations from this network (IPv4 /24, IPv6 /48) for now; retry later.
    RateLimited = ("rate_limited", 429),
    /// The relay is not registered with this directory (or was withdrawn).
    UnknownRelay = ("unknown_relay", 404),
    /// The heartbeat is older than one already recorded for this relay, or its time is too
    /// far from the directory's clock.
    StaleHeartbeat = ("stale_heartbeat", 409),
    /// A share statement was refused: an untrusted signer, a bad signature, a share its
    /// evaluation does not give, or a malformed period. The share on record is kept.
    StatementRefused = ("statement_refused", 400),
    /// The coordinator's administrator suspended this operator: it earns nothing, and
    /// redemptions forwarded by it are refused until it is resumed.
    OperatorSuspended = ("operator_suspended", 403),

    // Server side.
    /// An upstream service (e.g. the coordinator, seen from an issuer or operator) failed or
    /// is unreachable; retrying later is safe.
    UpstreamUnavailable = ("upstream_unavailable", 502),
    /// Something failed inside the service; nothing was recorded. Retrying is safe.
    Internal = ("internal", 500),
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A protocol-level failure: a stable code plus a human-readable message.
/// Messages never contain secrets.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ProtocolError {
    pub code: ErrorCode,
    pub message: String,
}

impl ProtocolError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ProtocolError {
            code,
            message: message.into(),
        }
    }
}

/// Shorthand for building a [`ProtocolError`].
pub fn err(code: ErrorCode, message: impl Into<String>) -> ProtocolError {
    ProtocolError::new(code, message)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn codes_roundtrip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "duplicate code {code}");
            let json = serde_json::to_string(code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            let back: ErrorCode = serde_json::from_str(&json).unwrap();
            assert_eq!(back, *code);
            assert!((400..600).contains(&code.http_status()));
        }
    }

    const GOLDEN: &str = include_str!("testdata/error_codes.txt");

    #[test]
    fn error_codes_match_the_golden_table() {
        let golden: Vec<(&str, u16)> = GOLDEN
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                let (code, status) = l.split_once(' ').unwrap();
                (code, status.parse().unwrap())
            })
            .collect();
        for &(code, status) in &golden {
            let parsed: ErrorCode = serde_json::from_str(&format!("\"{code}\"")).unwrap();
            assert_eq!(
                parsed.as_str(),
                code,
                "code {code:?} of testdata/error_codes.txt is gone or renamed: codes are frozen"
            );
            assert_eq!(
                parsed.http_status(),
                status,
                "code {code:?} changed its HTTP status: codes are frozen"
            );
            assert_eq!(
                serde_json::to_string(&parsed).unwrap(),
                format!("\"{code}\"")
            );
        }
        for code in ErrorCode::ALL {
            assert!(
                golden.contains(&(code.as_str(), code.http_status())),
                "new code {code} ({}): add the line `{code} {}` to \
                 crates/core/src/testdata/error_codes.txt",
                code.http_status(),
                code.http_status()
            );
        }
        // Every known code, and the fallback, once each.
        assert_eq!(golden.len(), ErrorCode::ALL.len() + 1);
        assert!(golden.contains(&("unknown", 500)));
    }

    #[test]
    fn unknown_code_from_a_newer_server_parses() {
        let c: ErrorCode = serde_json::from_str("\"something_new\"").unwrap();
        assert_eq!(c, ErrorCode::Unknown);
    }
}
