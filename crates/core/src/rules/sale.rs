//! Rule: the issuer's sale of a voucher, as a state machine. (DESIGN.md §2 "v0.1 — Chaumian
//! e-cash": the issuer signs `blind(C)` against a payment, within its limit, with the current
//! period's key; seed 003 "Adding Voucher Expiry".)
//!
//! A sale is a saga across three parties — the buyer's payment, the coordinator (the
//! authority on whether the issuer may still issue, and how much) and the issuer's own
//! books — so it is modelled as [`Sale`]: feed it what happened ([`Event`]), do what it says
//! ([`Action`]). The IO stays in the handler. The steps:
//!
//! 1. [`Sale::start`]: a network denomination, a key of this issuer for that denomination.
//! 2. The buyer may be retrying with the same top-up code and blinded message after losing
//!    the answer: sign again without charging again, as long as the voucher can still be
//!    published — even if the key period has turned meanwhile.
//! 3. Otherwise sign only with the current period's key (every buyer of a period shares it,
//!    and gets the full publish window), only while the coordinator lists the issuer as
//!    whitelisted, and record the sale within the coordinator's limit. The signature is made
//!    before the sale is recorded (a message that cannot be signed must not use up the
//!    payment) and released only once it is recorded.

use crate::error::{err, ErrorCode, ProtocolError};
use crate::{keys, Amount, NetworkParams, UnixTime};

/// A purchase as the buyer sends it (the parts the rule reads).
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub denomination: u64,
    /// The key the buyer blinded for, as sent (hex).
    pub key_id: &'a str,
}

/// The issuer's key the request names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key {
    pub denomination: u64,
    pub period: u64,
}

/// What happened since the last step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Whether the payment repeats an earlier sale of the same blinded message (only a
    /// top-up code can; other payments report `false`).
    RetryChecked { is_retry: bool },
    /// The coordinator's current record of this issuer.
    CoordinatorAnswered { active: bool, limit: Amount },
    /// What the issuer's books said to recording the sale.
    Recorded(Recorded),
}

/// The books' answer to recording a sale (enforced in one transaction).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recorded {
    Sold,
    /// The same code and blinded message were recorded meanwhile: the same sale.
    Retry,
    /// The top-up code is unknown, used, or for another denomination.
    CodeRejected,
    /// Recording it would exceed the issuer's limit.
    LimitExceeded,
}

/// What the handler does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Ask whether the payment is a retry, then send [`Event::RetryChecked`].
    CheckRetry,
    /// Sign the blinded message and answer; nothing is recorded (a retry).
    SignAndAnswer,
    /// Fetch the issuer's record from the coordinator, then send
    /// [`Event::CoordinatorAnswered`].
    AskCoordinator,
    /// Sign, then record the sale within `limit`, then send [`Event::Recorded`].
    SignAndRecord { limit: Amount },
    /// Answer with the signature made before recording.
    Answer,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    CheckingRetry,
    AskingCoordinator,
    Recording,
    Done,
}

/// One sale in progress.
#[derive(Clone, Debug)]
pub struct Sale {
    /// The voucher's value in the issuer's books.
    pub value: Amount,
    /// The signing key's id.
    pub key_id: [u8; 32],
    period: u64,
    now: UnixTime,
    stage: Stage,
}

impl Sale {
    /// Checks the request against the key stored under its id (`None` when there is none
    /// or the id is malformed) and starts the sale; its first action is
    /// [`Action::CheckRetry`].
    pub fn start(
        params: &NetworkParams,
        request: &Request<'_>,
        key: Option<Key>,
        now: UnixTime,
    ) -> Result<Sale, ProtocolError> {
        let value = super::voucher_value(params, request.denomination)?;
        let key_id = super::parse_key_id(request.key_id)?;
        let key =
            key.ok_or_else(|| err(ErrorCode::UnknownKey, "this issuer has no key with this id"))?;
        if key.denomination != request.denomination {
            return Err(err(
                ErrorCode::InvalidRequest,
                "the key is for another denomination",
            ));
        }
        Ok(Sale {
            value,
            key_id,
            period: key.period,
            now,
            stage: Stage::CheckingRetry,
        })
    }

    /// The next action after `event`, or the refusal the buyer gets.
    pub fn step(&mut self, params: &NetworkParams, event: Event) -> Result<Action, ProtocolError> {
        let next = match (self.stage, event) {
            (Stage::CheckingRetry, Event::RetryChecked { is_retry: true }) => {
                keys::check_publishable(params, self.period, self.now)?;
                (Stage::Done, Action::SignAndAnswer)
            }
            (Stage::CheckingRetry, Event::RetryChecked { is_retry: false }) => {
                if !keys::is_signing_period(params, self.period, self.now) {
                    return Err(err(
                        ErrorCode::KeyNotValid,
                        "this key is not the current period's key; fetch keys from the coordinator again",
                    ));
                }
                (Stage::AskingCoordinator, Action::AskCoordinator)
            }
            (Stage::AskingCoordinator, Event::CoordinatorAnswered { active, limit }) => {
                if !active {
                    return Err(err(
                        ErrorCode::IssuerNotWhitelisted,
                        "this issuer is no longer whitelisted",
                    ));
                }
                (Stage::Recording, Action::SignAndRecord { limit })
            }
            (Stage::Recording, Event::Recorded(recorded)) => match recorded {
                Recorded::Sold | Recorded::Retry => (Stage::Done, Action::Answer),
                Recorded::CodeRejected => {
                    return Err(err(
                        ErrorCode::PaymentRejected,
                        "the top-up code is unknown, already used, or for another denomination",
                    ))
                }
                Recorded::LimitExceeded => {
                    return Err(err(
                        ErrorCode::IssuerLimitExceeded,
                        "this issuer has reached its issuing limit",
                    ))
                }
            },
            (stage, event) => {
                return Err(err(
                    ErrorCode::Internal,
                    format!("sale: {event:?} does not follow {stage:?}"),
                ))
            }
        };
        self.stage = next.0;
        Ok(next.1)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::rules::tests::params;

    const KEY: &str = "0202020202020202020202020202020202020202020202020202020202020202";

    fn start(period: u64, now: UnixTime) -> Sale {
        let request = Request {
            denomination: 10,
            key_id: KEY,
        };
        let key = Key {
            denomination: 10,
            period,
        };
        Sale::start(&params(), &request, Some(key), now).unwrap()
    }

    fn step(sale: &mut Sale, event: Event) -> Result<Action, ErrorCode> {
        sale.step(&params(), event).map_err(|e| e.code)
    }

    const ACTIVE: Event = Event::CoordinatorAnswered {
        active: true,
        limit: Amount(1000),
    };

    #[test]
    fn a_new_sale_asks_the_coordinator_then_records_then_answers() {
        let mut sale = start(0, 1000);
        assert_eq!(sale.key_id, [2; 32]);
        assert_eq!(sale.value, params().voucher_value(10).unwrap());
        assert_eq!(
            step(&mut sale, Event::RetryChecked { is_retry: false }),
            Ok(Action::AskCoordinator)
        );
        assert_eq!(
            step(&mut sale, ACTIVE),
            Ok(Action::SignAndRecord {
                limit: Amount(1000)
            })
        );
        assert_eq!(
            step(&mut sale, Event::Recorded(Recorded::Sold)),
            Ok(Action::Answer)
        );
    }

    #[test]
    fn a_concurrent_retry_recorded_meanwhile_is_the_same_sale() {
        let mut sale = start(0, 1000);
        step(&mut sale, Event::RetryChecked { is_retry: false }).unwrap();
        step(&mut sale, ACTIVE).unwrap();
        assert_eq!(
            step(&mut sale, Event::Recorded(Recorded::Retry)),
            Ok(Action::Answer)
        );
    }

    #[test]
    fn a_retry_is_signed_again_while_publishable_even_after_the_period_turned() {
        // Key period 0 is [1000, 1100); its vouchers are publishable until 1200.
        let mut sale = start(0, 1150);
        assert_eq!(
            step(&mut sale, Event::RetryChecked { is_retry: true }),
            Ok(Action::SignAndAnswer)
        );
        let mut late = start(0, 1200);
        assert_eq!(
            step(&mut late, Event::RetryChecked { is_retry: true }),
            Err(ErrorCode::KeyNotValid)
        );
    }

    #[test]
    fn a_new_sale_needs_the_current_periods_key() {
        let mut previous = start(0, 1100);
        assert_eq!(
            step(&mut previous, Event::RetryChecked { is_retry: false }),
            Err(ErrorCode::KeyNotValid)
        );
        let mut next = start(1, 1050);
        assert_eq!(
            step(&mut next, Event::RetryChecked { is_retry: false }),
            Err(ErrorCode::KeyNotValid)
        );
    }

    #[test]
    fn an_issuer_off_the_whitelist_sells_nothing() {
        let mut sale = start(0, 1000);
        step(&mut sale, Event::RetryChecked { is_retry: false }).unwrap();
        let inactive = Event::CoordinatorAnswered {
            active: false,
            limit: Amount(1000),
        };
        assert_eq!(
            step(&mut sale, inactive),
            Err(ErrorCode::IssuerNotWhitelisted)
        );
    }

    #[test]
    fn the_books_refuse_a_used_code_and_a_reached_limit() {
        for (recorded, code) in [
            (Recorded::CodeRejected, ErrorCode::PaymentRejected),
            (Recorded::LimitExceeded, ErrorCode::IssuerLimitExceeded),
        ] {
            let mut sale = start(0, 1000);
            step(&mut sale, Event::RetryChecked { is_retry: false }).unwrap();
            step(&mut sale, ACTIVE).unwrap();
            assert_eq!(step(&mut sale, Event::Recorded(recorded)), Err(code));
        }
    }

    #[test]
    fn the_request_must_name_a_key_for_its_denomination() {
        let p = params();
        let req = |denomination, key_id| Request {
            denomination,
            key_id,
        };
        let key = Some(Key {
            denomination: 10,
            period: 0,
        });
        let code = |r: Result<Sale, ProtocolError>| r.unwrap_err().code;
        assert_eq!(
            code(Sale::start(&p, &req(7, KEY), key, 1000)),
            ErrorCode::UnsupportedDenomination
        );
        assert_eq!(
            code(Sale::start(&p, &req(10, "junk"), key, 1000)),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            code(Sale::start(&p, &req(10, KEY), None, 1000)),
            ErrorCode::UnknownKey
        );
        assert_eq!(
            code(Sale::start(&p, &req(100, KEY), key, 1000)),
            ErrorCode::InvalidRequest
        );
    }

    #[test]
    fn events_out_of_order_are_internal_errors() {
        let mut sale = start(0, 1000);
        assert_eq!(step(&mut sale, ACTIVE), Err(ErrorCode::Internal));
        let mut done = start(0, 1000);
        step(&mut done, Event::RetryChecked { is_retry: true }).unwrap();
        assert_eq!(
            step(&mut done, Event::Recorded(Recorded::Sold)),
            Err(ErrorCode::Internal)
        );
    }
}
