//! Rule: the operator's redemption, and when it issues credits for it, as a state machine.
//! (DESIGN.md §2, the money path "redeem … forward … CL: check, store nullifier, pay R", and
//! "Operator credits (AO credits)".)
//!
//! The operator cannot read a redemption (an envelope sealed to the coordinator, or a proof it
//! cannot link to a voucher): it checks the request's shape, forwards it, and records the
//! outcome by the request's digest, so a retry is answered from its books without asking the
//! coordinator again. With blinded outputs it also issues the credited value as credits:
//!
//! * outputs that can be refused without the coordinator (shape, keyset, amounts, and for
//!   v0.2 — whose denomination it can read — their total), and outputs it signed before,
//!   are refused *before* the voucher is spent ([`precheck_total`] beside
//!   [`crate::credits::check_outputs`]; the handler looks the outputs up in its registry);
//! * it credits only on a coordinator receipt it has verified, for this operator and this
//!   request ([`Event::Forwarded`]);
//! * it signs once per redemption digest; a retry gets the first signatures, and an output
//!   signed elsewhere meanwhile (a race with the lookup above) is refused ([`output_reused`])
//!   — the redemption stands, so the wallet sends it again with fresh outputs.
//!
//! [`Redemption`] is fed what happened and says what to do next; the IO stays in the handler.

use crate::api::{OperatorCreditReceipt, RedemptionReceipt};
use crate::credits::CreditError;
use crate::crypto::VerifyingKey;
use crate::error::{err, ErrorCode, ProtocolError};
use crate::receipt::{Signed, REDEMPTION_DOMAIN};
use crate::rules::redeem::{self, Version};
use crate::{Amount, UnixTime};

/// What happened since the last step.
#[derive(Debug)]
pub enum Event<'a> {
    /// Whether the operator's books hold a receipt for this request's digest.
    LookedUp { recorded: bool },
    /// The outputs passed the checks that need no coordinator.
    Prechecked,
    /// The coordinator's answer to the forwarded request.
    Forwarded(&'a Signed<RedemptionReceipt>),
    /// The operator's receipt is recorded (or a concurrent retry's was).
    Recorded,
}

/// What the handler does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Check the outputs against today's keyset, then send [`Event::Prechecked`].
    Precheck,
    /// Forward the request to the coordinator, then send [`Event::Forwarded`].
    Forward,
    /// Sign this receipt and record it by the digest, then send [`Event::Recorded`].
    Record(Box<OperatorCreditReceipt>),
    /// Answer with the recorded receipt — and, with `issue`, the credits signed for it.
    Answer { issue: bool },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    LookingUp,
    Prechecking,
    Forwarding,
    Recording,
    Done,
}

/// The coordinator's answer cannot be credited.
#[derive(Debug, thiserror::Error)]
pub enum Unconfirmed {
    #[error("coordinator receipt: {0}")]
    BadReceipt(ProtocolError),
    #[error("the coordinator's receipt is for another redemption")]
    OtherRedemption,
    #[error("redemption: {0} does not follow {1}")]
    OutOfOrder(&'static str, &'static str),
}

/// One redemption in progress at operator `operator_id`.
#[derive(Clone, Debug)]
pub struct Redemption<'a> {
    operator_id: &'a str,
    coordinator_key: &'a VerifyingKey,
    /// The request's digest (of the envelope, or of the proof).
    pub digest: [u8; 32],
    /// The request carries blinded outputs to sign.
    pub wants_credits: bool,
    stage: Stage,
}

/// The shape of a request the operator forwards: version 1 carries an envelope only, 2 a
/// proof only. Whether v0.2 is offered is the coordinator's to say.
pub fn route(version: u32, has_envelope: bool, has_zk: bool) -> Result<Version, ProtocolError> {
    redeem::route(version, has_envelope, has_zk, true)
}

impl<'a> Redemption<'a> {
    /// Starts the redemption of the request with `digest`; the handler first looks the
    /// digest up in its books and sends [`Event::LookedUp`].
    pub fn new(
        operator_id: &'a str,
        coordinator_key: &'a VerifyingKey,
        digest: [u8; 32],
        wants_credits: bool,
    ) -> Self {
        Redemption {
            operator_id,
            coordinator_key,
            digest,
            wants_credits,
            stage: Stage::LookingUp,
        }
    }

    /// The next action after `event`; `now` stamps the operator's receipt.
    pub fn step(&mut self, event: Event<'_>, now: UnixTime) -> Result<Action, Unconfirmed> {
        let (stage, action) = match (self.stage, event) {
            (Stage::LookingUp, Event::LookedUp { recorded: true }) => (
                Stage::Done,
                Action::Answer {
                    issue: self.wants_credits,
                },
            ),
            (Stage::LookingUp, Event::LookedUp { recorded: false }) if self.wants_credits => {
                (Stage::Prechecking, Action::Precheck)
            }
            (Stage::LookingUp, Event::LookedUp { recorded: false })
            | (Stage::Prechecking, Event::Prechecked) => (Stage::Forwarding, Action::Forward),
            (Stage::Forwarding, Event::Forwarded(cl)) => {
                // Never credit on the strength of an answer we cannot check.
                cl.verify(REDEMPTION_DOMAIN, self.coordinator_key)
                    .map_err(Unconfirmed::BadReceipt)?;
                if cl.body.operator_id != self.operator_id || cl.body.envelope_digest != self.digest
                {
                    return Err(Unconfirmed::OtherRedemption);
                }
                let body = OperatorCreditReceipt {
                    operator_id: self.operator_id.to_owned(),
                    denomination: cl.body.denomination,
                    credited: cl.body.value,
                    issued_at: now,
                    coordinator_receipt: cl.clone(),
                };
                (Stage::Recording, Action::Record(Box::new(body)))
            }
            (Stage::Recording, Event::Recorded) => (
                Stage::Done,
                Action::Answer {
                    issue: self.wants_credits,
                },
            ),
            (stage, event) => {
                return Err(Unconfirmed::OutOfOrder(event.name(), stage.name()));
            }
        };
        self.stage = stage;
        Ok(action)
    }
}

impl Event<'_> {
    fn name(&self) -> &'static str {
        match self {
            Event::LookedUp { .. } => "LookedUp",
            Event::Prechecked => "Prechecked",
            Event::Forwarded(_) => "Forwarded",
            Event::Recorded => "Recorded",
        }
    }
}

impl Stage {
    fn name(self) -> &'static str {
        match self {
            Stage::LookingUp => "LookingUp",
            Stage::Prechecking => "Prechecking",
            Stage::Forwarding => "Forwarding",
            Stage::Recording => "Recording",
            Stage::Done => "Done",
        }
    }
}

/// Outputs for a v0.2 redemption must add up to its denomination (the operator can read it
/// from the proof's public inputs; a v0.1 envelope hides it until the coordinator answers).
pub fn precheck_total(total: Amount, zk_denomination: Option<u64>) -> Result<(), CreditError> {
    match zk_denomination.and_then(Amount::from_credits) {
        Some(expected) if total != expected => Err(CreditError::AmountMismatch {
            expected,
            got: total,
        }),
        _ => Ok(()),
    }
}

/// An output of the request (at `index`, when it could be found) was signed in an earlier
/// request: nothing is signed, the redemption stands, the wallet retries with fresh outputs.
pub fn output_reused(index: Option<usize>) -> ProtocolError {
    err(
        ErrorCode::OutputReused,
        match index {
            Some(k) => format!(
                "output {k} was already signed in an earlier request; \
                 send this redemption again with fresh outputs"
            ),
            None => "an output was already signed in an earlier request".to_owned(),
        },
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::crypto::SigningKey;

    fn coordinator() -> SigningKey {
        SigningKey::from_bytes(&[7; 32])
    }

    fn receipt(key: &SigningKey, operator_id: &str, digest: [u8; 32]) -> Signed<RedemptionReceipt> {
        let body = RedemptionReceipt {
            operator_id: operator_id.to_owned(),
            denomination: 10,
            value: Amount(10_000_000),
            operator_amount: Amount(6_000_000),
            fund_amount: Amount(4_000_000),
            share_bps: 6000,
            envelope_digest: digest,
            redeemed_at: 5,
            nullifier: None,
            mmr_id: None,
        };
        Signed::sign(key, REDEMPTION_DOMAIN, body).unwrap()
    }

    #[test]
    fn a_fresh_redemption_is_forwarded_recorded_and_answered() {
        let key = coordinator();
        let vk = key.verifying_key();
        let mut r = Redemption::new("op", &vk, [1; 32], false);
        assert_eq!(
            r.step(Event::LookedUp { recorded: false }, 9).unwrap(),
            Action::Forward
        );
        let cl = receipt(&key, "op", [1; 32]);
        let Action::Record(body) = r.step(Event::Forwarded(&cl), 9).unwrap() else {
            panic!("expected Record");
        };
        assert_eq!(body.credited, Amount(10_000_000));
        assert_eq!(body.operator_id, "op");
        assert_eq!(body.issued_at, 9);
        assert_eq!(body.coordinator_receipt, cl);
        assert_eq!(
            r.step(Event::Recorded, 9).unwrap(),
            Action::Answer { issue: false }
        );
    }

    #[test]
    fn outputs_are_prechecked_before_the_voucher_is_spent_and_issued_after() {
        let key = coordinator();
        let vk = key.verifying_key();
        let mut r = Redemption::new("op", &vk, [1; 32], true);
        assert_eq!(
            r.step(Event::LookedUp { recorded: false }, 0).unwrap(),
            Action::Precheck
        );
        assert_eq!(r.step(Event::Prechecked, 0).unwrap(), Action::Forward);
        let cl = receipt(&key, "op", [1; 32]);
        assert!(matches!(
            r.step(Event::Forwarded(&cl), 0).unwrap(),
            Action::Record(_)
        ));
        assert_eq!(
            r.step(Event::Recorded, 0).unwrap(),
            Action::Answer { issue: true }
        );
    }

    #[test]
    fn a_retry_is_answered_from_the_books() {
        let key = coordinator();
        let vk = key.verifying_key();
        for wants_credits in [false, true] {
            let mut r = Redemption::new("op", &vk, [1; 32], wants_credits);
            assert_eq!(
                r.step(Event::LookedUp { recorded: true }, 0).unwrap(),
                Action::Answer {
                    issue: wants_credits
                }
            );
        }
    }

    #[test]
    fn never_credits_an_answer_it_cannot_check() {
        let key = coordinator();
        let vk = key.verifying_key();
        let forward = |cl: &Signed<RedemptionReceipt>| {
            let mut r = Redemption::new("op", &vk, [1; 32], false);
            r.step(Event::LookedUp { recorded: false }, 0).unwrap();
            r.step(Event::Forwarded(cl), 0).unwrap_err()
        };
        let impostor = SigningKey::from_bytes(&[8; 32]);
        assert!(matches!(
            forward(&receipt(&impostor, "op", [1; 32])),
            Unconfirmed::BadReceipt(_)
        ));
        assert!(matches!(
            forward(&receipt(&key, "other", [1; 32])),
            Unconfirmed::OtherRedemption
        ));
        assert!(matches!(
            forward(&receipt(&key, "op", [2; 32])),
            Unconfirmed::OtherRedemption
        ));
    }

    #[test]
    fn events_out_of_order_are_refused() {
        let key = coordinator();
        let vk = key.verifying_key();
        let mut r = Redemption::new("op", &vk, [1; 32], false);
        assert!(matches!(
            r.step(Event::Recorded, 0).unwrap_err(),
            Unconfirmed::OutOfOrder("Recorded", "LookingUp")
        ));
        // Without outputs there is no precheck.
        r.step(Event::LookedUp { recorded: false }, 0).unwrap();
        assert!(r.step(Event::Prechecked, 0).is_err());
    }

    #[test]
    fn the_shape_is_checked_but_v2_is_the_coordinators_to_refuse() {
        assert_eq!(route(1, true, false).unwrap(), Version::V1);
        assert_eq!(route(2, false, true).unwrap(), Version::V2);
        assert_eq!(
            route(1, true, true).unwrap_err().code,
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            route(9, true, false).unwrap_err().code,
            ErrorCode::UnsupportedVersion
        );
    }

    #[test]
    fn v2_outputs_must_add_up_to_the_denomination() {
        let ten = Amount::from_credits(10).unwrap();
        assert!(precheck_total(ten, Some(10)).is_ok());
        assert!(
            precheck_total(Amount(1), None).is_ok(),
            "v0.1: unknown until the answer"
        );
        assert_eq!(
            precheck_total(Amount(1), Some(10)).unwrap_err(),
            CreditError::AmountMismatch {
                expected: ten,
                got: Amount(1)
            }
        );
    }

    #[test]
    fn a_reused_output_is_named() {
        let e = output_reused(Some(2));
        assert_eq!(e.code, ErrorCode::OutputReused);
        assert!(e.message.starts_with("output 2 was already signed"));
        assert_eq!(
            output_reused(None).message,
            "an output was already signed in an earlier request"
        );
    }
}
