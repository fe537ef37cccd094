//! Rule: may the coordinator accept a redemption, and how is its value split?
//! (DESIGN.md §2 "v0.1 — Chaumian e-cash", "v0.2 — zero-knowledge redemption", "Pool and
//! clearing".)
//!
//! * [`route`]: a request is version 1 with an envelope only, or version 2 with a proof only,
//!   and version 2 only where the network runs it.
//! * [`v1`]: the opened envelope must name the operator that forwards it (so a forwarded
//!   envelope cannot be redirected) and a network denomination. That `C` is published, live
//!   (unexpired) and unspent, the store decides in the redeeming transaction ([`V1Refused`]).
//! * [`v2`]: the coordinator must have ceremony keys; fee 0 (this version binds no fee); a
//!   proof of the right size; a root recorded for the MMR the request names, of an MMR that
//!   still accepts redemptions (it has not expired). The proof itself — which binds root,
//!   nullifier, denomination, operator and fee — is verified by the caller
//!   ([`ProofRejected`]), and the nullifier's single use by the store ([`V2Refused`]).
//! * [`clearing`]: the operator's share is capped by the network's maximum; the rest goes to
//!   the network fund.

use crate::error::{err, ErrorCode, ProtocolError};
use crate::ledger::{self, Posting};
use crate::redemption::{PROTOCOL_V1, PROTOCOL_V2};
use crate::{rotation, Amount, NetworkParams, UnixTime};

/// Which redemption protocol a request uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// v0.1: an HPKE envelope sealed to the coordinator.
    V1,
    /// v0.2: a zero-knowledge proof and a nullifier.
    V2,
}

/// The request's version and which of `envelope` / `zk` it carries. `v2_offered` is whether
/// the network's parameters list version 2 (the coordinator checks it); the operator, which
/// forwards either, passes `true`.
pub fn route(
    version: u32,
    has_envelope: bool,
    has_zk: bool,
    v2_offered: bool,
) -> Result<Version, ProtocolError> {
    match (version, has_envelope, has_zk) {
        (PROTOCOL_V1, true, false) => Ok(Version::V1),
        (PROTOCOL_V2, false, true) if v2_offered => Ok(Version::V2),
        (PROTOCOL_V2, false, true) => Err(err(
            ErrorCode::ZkUnavailable,
            "this coordinator has no ceremony keys: v0.2 redemption is not available",
        )),
        (PROTOCOL_V1 | PROTOCOL_V2, _, _) => Err(err(
            ErrorCode::InvalidRequest,
            "version 1 carries `envelope` only, version 2 `zk` only",
        )),
        (v, _, _) => Err(err(
            ErrorCode::UnsupportedVersion,
            format!("redemption protocol version {v} is not supported"),
        )),
    }
}

/// The operator forwarding a redemption, as the coordinator registered it.
#[derive(Clone, Copy, Debug)]
pub struct Operator<'a> {
    pub id: &'a str,
    pub share_bps: u32,
}

/// How an accepted redemption is cleared: what the receipt says and the ledger posts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Clearing {
    pub value: Amount,
    /// The share actually applied: the operator's, capped by the network's maximum.
    pub share_bps: u32,
    pub operator_amount: Amount,
    pub fund_amount: Amount,
    pub postings: Vec<Posting>,
}

/// Splits `value` between `operator` and the network fund.
pub fn clearing(params: &NetworkParams, operator: Operator<'_>, value: Amount) -> Clearing {
    let share_bps = operator.share_bps.min(params.max_operator_share_bps);
    let (operator_amount, fund_amount) = ledger::redemption_split(value, share_bps);
    Clearing {
        value,
        share_bps,
        operator_amount,
        fund_amount,
        postings: ledger::redeem(operator.id, value, share_bps),
    }
}

/// v0.1 redemption.
pub mod v1 {
    use super::*;

    /// What the opened envelope says.
    #[derive(Clone, Copy, Debug)]
    pub struct Payload<'a> {
        /// The operator the redeemer chose to pay.
        pub operator_id: &'a str,
        pub denomination: u64,
    }

    /// Decides an opened v0.1 envelope forwarded by `operator`.
    pub fn decide(
        params: &NetworkParams,
        payload: &Payload<'_>,
        operator: Operator<'_>,
    ) -> Result<Clearing, ProtocolError> {
        if payload.operator_id != operator.id {
            return Err(err(
                ErrorCode::OperatorMismatch,
                "the envelope names another operator than the one forwarding it",
            ));
        }
        let value = crate::rules::voucher_value(params, payload.denomination)?;
        Ok(clearing(params, operator, value))
    }
}

/// v0.2 redemption.
pub mod v2 {
    use super::*;

    /// What the coordinator's ceremony keys say about proofs; `None` when it has none.
    #[derive(Clone, Copy, Debug)]
    pub struct Setup {
        /// The size of a well-formed proof.
        pub proof_bytes: usize,
    }

    /// The parts of a v0.2 request the rule reads before any pairing.
    #[derive(Clone, Copy, Debug)]
    pub struct Request {
        pub mmr_id: u64,
        pub denomination: u64,
        pub fee: Amount,
        pub proof_len: usize,
    }

    /// Decides a v0.2 request given the coordinator's `setup` and `root_mmr`, the MMR the
    /// request's root was recorded for (`None` when it was never a root). Checks run in the
    /// order the API promises: keys, denomination, fee, proof size, root, MMR expiry.
    pub fn decide(
        params: &NetworkParams,
        setup: Option<Setup>,
        request: &Request,
        root_mmr: Option<u64>,
        operator: Operator<'_>,
        now: UnixTime,
    ) -> Result<Clearing, ProtocolError> {
        let setup = setup
            .ok_or_else(|| err(ErrorCode::ZkUnavailable, "v0.2 redemption is not available"))?;
        let value = crate::rules::voucher_value(params, request.denomination)?;
        if request.fee != Amount::ZERO {
            return Err(err(
                ErrorCode::InvalidRequest,
                "redemption fees are not supported by this version: fee must be 0",
            ));
        }
        if request.proof_len != setup.proof_bytes {
            return Err(err(
                ErrorCode::MalformedProof,
                format!(
                    "a proof is {} bytes, got {}",
                    setup.proof_bytes, request.proof_len
                ),
            ));
        }
        let mmr = root_mmr.filter(|k| *k == request.mmr_id).ok_or_else(|| {
            err(
                ErrorCode::UnknownRoot,
                format!("this was never a root of MMR {}", request.mmr_id),
            )
        })?;
        if !rotation::mmr_accepts_redemptions(params, mmr, now) {
            return Err(err(
                ErrorCode::RetiredRoot,
                format!("MMR {mmr} no longer accepts redemptions (its vouchers have expired)"),
            ));
        }
        Ok(clearing(params, operator, value))
    }
}

/// Why the verifier refused a proof.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProofRejected {
    /// Not a proof at all (bad points, wrong encoding).
    Malformed(String),
    /// A proof, but not for this operator, denomination, root and nullifier.
    Invalid,
}

impl From<ProofRejected> for ProtocolError {
    fn from(r: ProofRejected) -> Self {
        match r {
            ProofRejected::Malformed(why) => err(
                ErrorCode::MalformedProof,
                format!("the proof is not well formed: {why}"),
            ),
            ProofRejected::Invalid => err(
                ErrorCode::InvalidProof,
                "the proof does not verify for this operator, denomination, root and nullifier",
            ),
        }
    }
}

/// Why the store's v0.1 redeeming transaction refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum V1Refused {
    /// No published voucher has this commitment.
    Unknown,
    AlreadyRedeemed,
    Expired,
}

impl From<V1Refused> for ProtocolError {
    fn from(r: V1Refused) -> Self {
        match r {
            V1Refused::Unknown => err(
                ErrorCode::UnknownVoucher,
                "no published voucher has this commitment",
            ),
            V1Refused::AlreadyRedeemed => err(
                ErrorCode::AlreadyRedeemed,
                "this voucher was already redeemed",
            ),
            V1Refused::Expired => err(ErrorCode::VoucherExpired, "this voucher has expired"),
        }
    }
}

/// Why the store's v0.2 redeeming transaction refused: the nullifier is spent (by another
/// request; the same request again is answered with its receipt).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct V2Refused;

impl From<V2Refused> for ProtocolError {
    fn from(_: V2Refused) -> Self {
        err(
            ErrorCode::AlreadyRedeemed,
            "this nullifier is spent: the voucher was already redeemed",
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::rules::tests::params;
    use proptest::prelude::*;

    const OP: Operator<'static> = Operator {
        id: "op",
        share_bps: 6000,
    };

    #[test]
    fn routes_by_version_and_payload() {
        assert_eq!(route(1, true, false, false).unwrap(), Version::V1);
        assert_eq!(route(2, false, true, true).unwrap(), Version::V2);
        let code = |v, e, z, offered| route(v, e, z, offered).unwrap_err().code;
        assert_eq!(code(2, false, true, false), ErrorCode::ZkUnavailable);
        for (v, e, z) in [
            (1, false, true),
            (1, true, true),
            (1, false, false),
            (2, true, false),
        ] {
            assert_eq!(code(v, e, z, true), ErrorCode::InvalidRequest);
        }
        assert_eq!(code(3, true, false, true), ErrorCode::UnsupportedVersion);
    }

    #[test]
    fn v1_envelope_must_name_the_forwarding_operator() {
        let p = params();
        let payload = v1::Payload {
            operator_id: "other",
            denomination: 10,
        };
        assert_eq!(
            v1::decide(&p, &payload, OP).unwrap_err().code,
            ErrorCode::OperatorMismatch
        );
        let odd = v1::Payload {
            operator_id: "op",
            denomination: 7,
        };
        assert_eq!(
            v1::decide(&p, &odd, OP).unwrap_err().code,
            ErrorCode::UnsupportedDenomination
        );
        let ok = v1::decide(
            &p,
            &v1::Payload {
                operator_id: "op",
                denomination: 10,
            },
            OP,
        )
        .unwrap();
        assert_eq!(ok.value, p.voucher_value(10).unwrap());
        assert_eq!(ok.share_bps, 6000);
    }

    #[test]
    fn the_share_is_capped_by_the_network() {
        let p = params();
        let greedy = Operator {
            id: "op",
            share_bps: 10_000,
        };
        let c = clearing(&p, greedy, Amount(1000));
        assert_eq!(c.share_bps, p.max_operator_share_bps);
        assert_eq!(c.operator_amount.0 + c.fund_amount.0, 1000);
        assert_eq!(c.postings, ledger::redeem("op", Amount(1000), c.share_bps));
    }

    const SETUP: Option<v2::Setup> = Some(v2::Setup { proof_bytes: 128 });

    fn zk(mmr_id: u64) -> v2::Request {
        v2::Request {
            mmr_id,
            denomination: 10,
            fee: Amount::ZERO,
            proof_len: 128,
        }
    }

    fn v2_code(setup: Option<v2::Setup>, r: v2::Request, root: Option<u64>, now: u64) -> ErrorCode {
        v2::decide(&params(), setup, &r, root, OP, now)
            .unwrap_err()
            .code
    }

    #[test]
    fn v2_checks_before_any_pairing() {
        assert_eq!(
            v2_code(None, zk(0), Some(0), 1000),
            ErrorCode::ZkUnavailable
        );
        let odd = v2::Request {
            denomination: 7,
            ..zk(0)
        };
        assert_eq!(
            v2_code(SETUP, odd, Some(0), 1000),
            ErrorCode::UnsupportedDenomination
        );
        let fee = v2::Request {
            fee: Amount(1),
            ..zk(0)
        };
        assert_eq!(
            v2_code(SETUP, fee, Some(0), 1000),
            ErrorCode::InvalidRequest
        );
        let short = v2::Request {
            proof_len: 127,
            ..zk(0)
        };
        assert_eq!(
            v2_code(SETUP, short, Some(0), 1000),
            ErrorCode::MalformedProof
        );
        assert!(v2::decide(&params(), SETUP, &zk(0), Some(0), OP, 1000).is_ok());
    }

    #[test]
    fn v2_root_must_be_recorded_for_the_named_mmr() {
        assert_eq!(v2_code(SETUP, zk(0), None, 1000), ErrorCode::UnknownRoot);
        // A real root, but of MMR 1, presented as MMR 0's.
        assert_eq!(v2_code(SETUP, zk(0), Some(1), 1100), ErrorCode::UnknownRoot);
    }

    #[test]
    fn v2_root_of_an_expired_mmr_is_retired() {
        let p = params();
        let expiry = rotation::mmr_expires_at(&p, 0);
        assert!(v2::decide(&p, SETUP, &zk(0), Some(0), OP, expiry - 1).is_ok());
        let e = v2::decide(&p, SETUP, &zk(0), Some(0), OP, expiry).unwrap_err();
        assert_eq!(e.code, ErrorCode::RetiredRoot);
        assert!(e.message.contains("MMR 0"));
        // MMR 1 overlaps and still accepts.
        assert!(v2::decide(&p, SETUP, &zk(1), Some(1), OP, expiry).is_ok());
    }

    #[test]
    fn refusals_keep_their_codes() {
        for (r, code) in [
            (V1Refused::Unknown, ErrorCode::UnknownVoucher),
            (V1Refused::AlreadyRedeemed, ErrorCode::AlreadyRedeemed),
            (V1Refused::Expired, ErrorCode::VoucherExpired),
        ] {
            assert_eq!(ProtocolError::from(r).code, code);
        }
        assert_eq!(
            ProtocolError::from(V2Refused).code,
            ErrorCode::AlreadyRedeemed
        );
        let malformed = ProtocolError::from(ProofRejected::Malformed("bad point".into()));
        assert_eq!(malformed.code, ErrorCode::MalformedProof);
        assert!(malformed.message.ends_with("bad point"));
        assert_eq!(
            ProtocolError::from(ProofRejected::Invalid).code,
            ErrorCode::InvalidProof
        );
    }

    proptest! {
        /// Money is conserved by every clearing: operator + fund = value, and the operator
        /// never gets more than the network's cap.
        #[test]
        fn clearing_conserves_value(value in 0u64.., share in 0u32..20_000) {
            let p = params();
            let c = clearing(&p, Operator { id: "op", share_bps: share }, Amount(value));
            prop_assert_eq!(c.operator_amount.0 + c.fund_amount.0, value);
            prop_assert!(c.share_bps <= p.max_operator_share_bps);
            let posted: u64 = c.postings.iter().map(|x| x.amount.0).sum();
            prop_assert_eq!(posted, value);
        }
    }
}
