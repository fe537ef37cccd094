//! The operator's checks before it signs (NUT-03 swap, and issuance after a redemption).
//!
//! Cheap structural checks run first and the elliptic-curve work last, so a malformed or
//! unbalanced request costs almost nothing:
//!
//! 1. counts: at least one input, at most [`SwapLimits`] inputs and outputs;
//! 2. outputs: a denomination the keyset has, under the keyset of the current day, no `B_` twice;
//! 3. inputs: a known keyset that has not expired, a denomination it has, no secret twice;
//! 4. balance: `Σ outputs + price ≤ Σ inputs` (checked arithmetic);
//! 5. signatures: `C == k·hash_to_curve(secret)` for every input.
//!
//! What is *not* here, because it needs storage: whether an input's `Y` is already spent (on
//! any of the operator's servers), and whether an output's `B_` was already signed in an
//! earlier request. [`CheckedInput::y`] and the outputs' `B_` are the keys for those, and
//! [`CheckedInput::final_expiry`] says when a spent record may be pruned.

use std::collections::HashSet;

use super::amounts::is_denomination;
use super::encoding::Point;
use super::keyset::{KeyRing, Keyset};
use super::wire::{BlindSignature, BlindedMessage, SwapRequest};
use super::CreditError;
use crate::{Amount, UnixTime};

/// Most inputs one request may carry by default (the OpenAPI documents say so).
pub const MAX_INPUTS: usize = 1_000;
/// Most outputs one request may carry by default.
pub const MAX_OUTPUTS: usize = 1_000;

/// Most inputs and outputs one request may carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SwapLimits {
    pub max_inputs: usize,
    pub max_outputs: usize,
}

impl Default for SwapLimits {
    /// 1,000 each (as nutshell). With 40 denominations a wallet needs at most 40 outputs for
    /// any amount, so this only bounds the work a request can ask for.
    fn default() -> Self {
        Self {
            max_inputs: MAX_INPUTS,
            max_outputs: MAX_OUTPUTS,
        }
    }
}

/// An input that passed every check the core can make: what the spent registry records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedInput {
    /// `Y = hash_to_curve(secret)`: the registry's unique key (refuse if already there).
    pub y: Point,
    pub amount: Amount,
    /// The token's keyset's final expiry: after it the token is refused as expired, so the
    /// registry may forget `Y` (pruning keeps the registry bounded).
    pub final_expiry: UnixTime,
}

/// A swap that passed every check the core can make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedSwap {
    /// The inputs, in request order.
    pub inputs: Vec<CheckedInput>,
    pub input_total: Amount,
    pub output_total: Amount,
    /// The price charged.
    pub fee: Amount,
}

impl CheckedSwap {
    /// The inputs' `Y`s, in request order.
    pub fn ys(&self) -> Vec<Point> {
        self.inputs.iter().map(|i| i.y).collect()
    }

    /// What the operator keeps beyond the price (the wallet chose not to take it as change).
    pub fn overpaid(&self) -> Amount {
        Amount(
            self.input_total
                .0
                .saturating_sub(self.output_total.0)
                .saturating_sub(self.fee.0),
        )
    }
}

fn checked_sum(total: Amount, add: Amount) -> Result<Amount, CreditError> {
    total.checked_add(add).ok_or(CreditError::Overflow)
}

fn known<'a>(ring: &'a KeyRing, id: &super::KeysetId) -> Result<&'a Keyset, CreditError> {
    ring.get(id).ok_or(CreditError::UnknownKeyset(*id))
}

/// Checks blinded outputs to be signed at `now` and returns their total. An empty list is
/// allowed (a spend without change).
pub fn check_outputs(
    outputs: &[BlindedMessage],
    ring: &KeyRing,
    now: UnixTime,
    limits: &SwapLimits,
) -> Result<Amount, CreditError> {
    if outputs.len() > limits.max_outputs {
        return Err(CreditError::TooMany {
            what: "outputs",
            max: limits.max_outputs,
        });
    }
    let mut seen = HashSet::with_capacity(outputs.len());
    let mut total = Amount::ZERO;
    for (index, output) in outputs.iter().enumerate() {
        if !is_denomination(output.amount) {
            return Err(CreditError::NotADenomination(output.amount.0));
        }
        let keyset = known(ring, &output.id)?;
        if !ring.accepts_outputs(keyset, now) {
            return Err(CreditError::KeysetNotCurrent(output.id));
        }
        keyset.public_key(output.amount)?;
        if !seen.insert(output.blinded_secret) {
            return Err(CreditError::DuplicateOutput { index });
        }
        total = checked_sum(total, output.amount)?;
    }
    Ok(total)
}

/// Checks a swap (a spend with change) at `now`, where `fee` is the price of what is being
/// bought. Returns the inputs' `Y`s for the spent registry.
pub fn check_swap(
    request: &SwapRequest,
    ring: &KeyRing,
    now: UnixTime,
    fee: Amount,
    limits: &SwapLimits,
) -> Result<CheckedSwap, CreditError> {
    if request.inputs.is_empty() {
        return Err(CreditError::Empty("inputs"));
    }
    if request.inputs.len() > limits.max_inputs {
        return Err(CreditError::TooMany {
            what: "inputs",
            max: limits.max_inputs,
        });
    }
    let output_total = check_outputs(&request.outputs, ring, now, limits)?;

    let mut seen = HashSet::with_capacity(request.inputs.len());
    let mut input_total = Amount::ZERO;
    let mut keysets = Vec::with_capacity(request.inputs.len());
    for (index, input) in request.inputs.iter().enumerate() {
        if !is_denomination(input.amount) {
            return Err(CreditError::NotADenomination(input.amount.0));
        }
        let keyset = known(ring, &input.id)?;
        if keyset.is_expired(now) {
            return Err(CreditError::KeysetExpired {
                id: input.id,
                final_expiry: keyset.final_expiry(),
            });
        }
        keyset.public_key(input.amount)?;
        if !seen.insert(input.secret.as_str()) {
            return Err(CreditError::DuplicateInput { index });
        }
        input_total = checked_sum(input_total, input.amount)?;
        keysets.push(keyset);
    }

    let spent = checked_sum(output_total, fee)?;
    if spent > input_total {
        return Err(CreditError::Unbalanced {
            inputs: input_total,
            outputs: output_total,
            fee,
        });
    }

    let mut checked = Vec::with_capacity(request.inputs.len());
    for (index, (input, keyset)) in request.inputs.iter().zip(keysets).enumerate() {
        let y = keyset.verify(input).map_err(|e| match e {
            CreditError::BadSignature { .. } => CreditError::BadSignature { index },
            other => other,
        })?;
        checked.push(CheckedInput {
            y,
            amount: input.amount,
            final_expiry: keyset.final_expiry(),
        });
    }
    Ok(CheckedSwap {
        inputs: checked,
        input_total,
        output_total,
        fee,
    })
}

/// Checks the outputs of an issuance (credits paid for a redeemed voucher): at least one, and
/// they add up to exactly `credited`.
pub fn check_issue(
    outputs: &[BlindedMessage],
    credited: Amount,
    ring: &KeyRing,
    now: UnixTime,
    limits: &SwapLimits,
) -> Result<(), CreditError> {
    if outputs.is_empty() {
        return Err(CreditError::Empty("outputs"));
    }
    let total = check_outputs(outputs, ring, now, limits)?;
    if total != credited {
        return Err(CreditError::AmountMismatch {
            expected: credited,
            got: total,
        });
    }
    Ok(())
}

/// Signs checked outputs, in order. Call it only after [`check_outputs`] (through
/// [`check_swap`] or [`check_issue`]) and after the storage layer has recorded the inputs as
/// spent.
pub fn sign_outputs(
    outputs: &[BlindedMessage],
    ring: &KeyRing,
) -> Result<Vec<BlindSignature>, CreditError> {
    outputs
        .iter()
        .map(|o| known(ring, &o.id)?.sign(o))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::credits::keyset::{Day, KeysetParams, MasterSecret};
    use crate::credits::wallet::{finalize_all, random_outputs, PreparedOutput};
    use crate::credits::wire::Proof;
    use crate::DAY;
    use rand::rngs::OsRng;

    const TODAY: u32 = 20_000;
    const NOW: UnixTime = TODAY as u64 * DAY + 12 * 3600;

    fn params() -> KeysetParams {
        KeysetParams {
            lifetime_days: 5,
            orders: 8,
            expired_grace_days: 2,
            ..KeysetParams::default()
        }
    }

    fn ring() -> KeyRing {
        KeyRing::new(MasterSecret::from_bytes([42u8; 32]), params(), NOW).unwrap()
    }

    /// Tokens worth `amounts` issued on `day` by `ring`, through the whole wallet flow.
    fn tokens(ring: &KeyRing, day: Day, amounts: &[u64]) -> Vec<Proof> {
        let keyset = ring.for_day(day).unwrap();
        let amounts: Vec<Amount> = amounts.iter().map(|a| Amount(*a)).collect();
        let prepared = random_outputs(&mut OsRng, keyset.id(), &amounts).unwrap();
        let sigs = sign_outputs(&messages(&prepared), ring).unwrap();
        finalize_all(&prepared, &sigs, &keyset.keys())
            .unwrap()
            .iter()
            .map(Proof::for_spending)
            .collect()
    }

    fn messages(prepared: &[PreparedOutput]) -> Vec<BlindedMessage> {
        prepared.iter().map(|p| p.message.clone()).collect()
    }

    fn change(ring: &KeyRing, amounts: &[u64]) -> (Vec<PreparedOutput>, Vec<BlindedMessage>) {
        let id = *ring.current(NOW).unwrap().id();
        let amounts: Vec<Amount> = amounts.iter().map(|a| Amount(*a)).collect();
        let prepared = random_outputs(&mut OsRng, &id, &amounts).unwrap();
        let msgs = messages(&prepared);
        (prepared, msgs)
    }

    fn swap(inputs: Vec<Proof>, outputs: Vec<BlindedMessage>) -> SwapRequest {
        SwapRequest { inputs, outputs }
    }

    #[test]
    fn credits_swap_accepts_a_valid_spend_and_change_verifies() {
        let ring = ring();
        let inputs = tokens(&ring, Day(TODAY - 2), &[8, 4, 1]);
        let (prepared, outputs) = change(&ring, &[2, 1]);
        let req = swap(inputs.clone(), outputs.clone());
        let checked = check_swap(&req, &ring, NOW, Amount(10), &SwapLimits::default()).unwrap();
        assert_eq!(checked.input_total, Amount(13));
        assert_eq!(checked.output_total, Amount(3));
        assert_eq!(checked.overpaid(), Amount::ZERO);
        assert_eq!(
            checked.ys(),
            inputs.iter().map(|p| p.y().unwrap()).collect::<Vec<_>>()
        );
        let expiry = ring.for_day(Day(TODAY - 2)).unwrap().final_expiry();
        assert!(checked.inputs.iter().all(|i| i.final_expiry == expiry));
        assert_eq!(checked.inputs[0].amount, Amount(8));
        // Paying more than the price is allowed; the operator keeps the rest.
        let over = check_swap(&req, &ring, NOW, Amount(9), &SwapLimits::default()).unwrap();
        assert_eq!(over.overpaid(), Amount(1));

        let sigs = sign_outputs(&outputs, &ring).unwrap();
        let keys = ring.current(NOW).unwrap().keys();
        let new_tokens = finalize_all(&prepared, &sigs, &keys).unwrap();
        // The change is spendable in turn, and the JSON round-trips.
        let json = serde_json::to_string(&swap(
            new_tokens.iter().map(Proof::for_spending).collect(),
            vec![],
        ))
        .unwrap();
        let back: SwapRequest = serde_json::from_str(&json).unwrap();
        check_swap(&back, &ring, NOW, Amount(3), &SwapLimits::default()).unwrap();
    }

    #[test]
    fn credits_swap_refuses_change_worth_more_than_input() {
        let ring = ring();
        let inputs = tokens(&ring, Day(TODAY), &[8]);
        let (_, outputs) = change(&ring, &[8, 1]);
        assert_eq!(
            check_swap(
                &swap(inputs.clone(), outputs),
                &ring,
                NOW,
                Amount::ZERO,
                &SwapLimits::default()
            ),
            Err(CreditError::Unbalanced {
                inputs: Amount(8),
                outputs: Amount(9),
                fee: Amount::ZERO
            })
        );
        // Balanced without the price, unbalanced with it.
        let (_, outputs) = change(&ring, &[8]);
        assert!(matches!(
            check_swap(
                &swap(inputs, outputs),
                &ring,
                NOW,
                Amount(1),
                &SwapLimits::default()
            ),
            Err(CreditError::Unbalanced { .. })
        ));
    }

    #[test]
    fn credits_swap_refuses_forged_and_tampered_tokens() {
        let ring = ring();
        let good = tokens(&ring, Day(TODAY), &[4, 2]);
        let limits = SwapLimits::default();

        // A token with a made-up C.
        let mut forged = good.clone();
        forged[1].signature = good[0].signature;
        assert_eq!(
            check_swap(&swap(forged, vec![]), &ring, NOW, Amount::ZERO, &limits),
            Err(CreditError::BadSignature { index: 1 })
        );
        // A real C with another secret.
        let mut other_secret = good.clone();
        other_secret[0].secret = crate::credits::Secret::random(&mut OsRng);
        assert_eq!(
            check_swap(
                &swap(other_secret, vec![]),
                &ring,
                NOW,
                Amount::ZERO,
                &limits
            ),
            Err(CreditError::BadSignature { index: 0 })
        );
        // A 2-token relabelled as worth 4 (the 4-key does not match).
        let mut inflated = good.clone();
        inflated[1].amount = Amount(4);
        assert_eq!(
            check_swap(&swap(inflated, vec![]), &ring, NOW, Amount::ZERO, &limits),
            Err(CreditError::BadSignature { index: 1 })
        );
        // A token of another operator (another master secret).
        let other = KeyRing::new(MasterSecret::from_bytes([1u8; 32]), params(), NOW).unwrap();
        let foreign = tokens(&other, Day(TODAY), &[4]);
        assert_eq!(
            check_swap(
                &swap(foreign.clone(), vec![]),
                &ring,
                NOW,
                Amount::ZERO,
                &limits
            ),
            Err(CreditError::UnknownKeyset(foreign[0].id))
        );
    }

    #[test]
    fn credits_swap_refuses_a_token_under_the_wrong_days_key() {
        let ring = ring();
        let token = tokens(&ring, Day(TODAY - 1), &[4]);
        // Claim it was signed today: today's key for 4 does not verify it.
        let mut moved = token.clone();
        moved[0].id = *ring.current(NOW).unwrap().id();
        assert_eq!(
            check_swap(
                &swap(moved, vec![]),
                &ring,
                NOW,
                Amount::ZERO,
                &SwapLimits::default()
            ),
            Err(CreditError::BadSignature { index: 0 })
        );
        check_swap(
            &swap(token, vec![]),
            &ring,
            NOW,
            Amount::ZERO,
            &SwapLimits::default(),
        )
        .unwrap();
    }

    #[test]
    fn credits_swap_refuses_expired_tokens() {
        let ring = ring();
        // Lifetime 5 days: day TODAY-4 is the oldest live keyset; TODAY-5 expired at the start
        // of today, and is still known (grace), so the error says so.
        let last_live = tokens(&ring, Day(TODAY - 4), &[1]);
        check_swap(
            &swap(last_live.clone(), vec![]),
            &ring,
            NOW,
            Amount::ZERO,
            &SwapLimits::default(),
        )
        .unwrap();
        let expired = tokens(&ring, Day(TODAY - 5), &[1]);
        assert_eq!(
            check_swap(
                &swap(expired.clone(), vec![]),
                &ring,
                NOW,
                Amount::ZERO,
                &SwapLimits::default()
            ),
            Err(CreditError::KeysetExpired {
                id: expired[0].id,
                final_expiry: u64::from(TODAY) * DAY
            })
        );
        // The last live day expires at the next midnight, to the second.
        let midnight = u64::from(TODAY + 1) * DAY;
        let mut later = KeyRing::new(MasterSecret::from_bytes([42u8; 32]), params(), NOW).unwrap();
        later.refresh(midnight - 1).unwrap();
        check_swap(
            &swap(last_live.clone(), vec![]),
            &later,
            midnight - 1,
            Amount::ZERO,
            &SwapLimits::default(),
        )
        .unwrap();
        later.refresh(midnight).unwrap();
        assert!(matches!(
            check_swap(
                &swap(last_live, vec![]),
                &later,
                midnight,
                Amount::ZERO,
                &SwapLimits::default()
            ),
            Err(CreditError::KeysetExpired { .. })
        ));
    }

    #[test]
    fn credits_swap_refuses_duplicates() {
        let ring = ring();
        let limits = SwapLimits::default();
        let token = tokens(&ring, Day(TODAY), &[4, 2]);
        let twice = vec![token[0].clone(), token[1].clone(), token[0].clone()];
        assert_eq!(
            check_swap(&swap(twice, vec![]), &ring, NOW, Amount::ZERO, &limits),
            Err(CreditError::DuplicateInput { index: 2 })
        );
        let (_, mut outputs) = change(&ring, &[2, 1]);
        outputs.push(outputs[0].clone());
        assert_eq!(
            check_swap(
                &swap(token.clone(), outputs.clone()),
                &ring,
                NOW,
                Amount::ZERO,
                &limits
            ),
            Err(CreditError::DuplicateOutput { index: 2 })
        );
        // The same B_ with another amount is still a duplicate.
        outputs[2].amount = Amount(1);
        assert_eq!(
            check_swap(&swap(token, outputs), &ring, NOW, Amount::ZERO, &limits),
            Err(CreditError::DuplicateOutput { index: 2 })
        );
    }

    #[test]
    fn credits_swap_refuses_bad_amounts_keysets_and_sizes() {
        let ring = ring();
        let limits = SwapLimits::default();
        let token = tokens(&ring, Day(TODAY), &[4]);
        let (_, outputs) = change(&ring, &[2]);

        let mut three = outputs.clone();
        three[0].amount = Amount(3);
        assert_eq!(
            check_swap(
                &swap(token.clone(), three),
                &ring,
                NOW,
                Amount::ZERO,
                &limits
            ),
            Err(CreditError::NotADenomination(3))
        );
        let mut zero = token.clone();
        zero[0].amount = Amount::ZERO;
        assert_eq!(
            check_swap(&swap(zero, vec![]), &ring, NOW, Amount::ZERO, &limits),
            Err(CreditError::NotADenomination(0))
        );
        // orders = 8: 2^8 has no key.
        let mut big = outputs.clone();
        big[0].amount = Amount(256);
        assert!(matches!(
            check_swap(&swap(token.clone(), big), &ring, NOW, Amount::ZERO, &limits),
            Err(CreditError::AmountNotInKeyset { amount: 256, .. })
        ));
        // Change under yesterday's keyset is refused (it would outlive today's by a day less,
        // and singles the wallet out).
        let mut old = outputs.clone();
        old[0].id = *ring.for_day(Day(TODAY - 1)).unwrap().id();
        assert!(matches!(
            check_swap(&swap(token.clone(), old), &ring, NOW, Amount::ZERO, &limits),
            Err(CreditError::KeysetNotCurrent(_))
        ));
        assert_eq!(
            check_swap(
                &swap(vec![], outputs.clone()),
                &ring,
                NOW,
                Amount::ZERO,
                &limits
            ),
            Err(CreditError::Empty("inputs"))
        );
        let tight = SwapLimits {
            max_inputs: 1,
            max_outputs: 0,
        };
        assert!(matches!(
            check_swap(
                &swap(token.clone(), outputs),
                &ring,
                NOW,
                Amount::ZERO,
                &tight
            ),
            Err(CreditError::TooMany {
                what: "outputs",
                ..
            })
        ));
        let two = vec![token[0].clone(), tokens(&ring, Day(TODAY), &[1])[0].clone()];
        assert!(matches!(
            check_swap(&swap(two, vec![]), &ring, NOW, Amount::ZERO, &tight),
            Err(CreditError::TooMany { what: "inputs", .. })
        ));
        let (_, two) = change(&ring, &[2]);
        assert_eq!(
            check_swap(&swap(token, two), &ring, NOW, Amount(u64::MAX), &limits),
            Err(CreditError::Overflow)
        );
    }

    #[test]
    fn credits_issue_requires_exact_amount_under_todays_keyset() {
        let ring = ring();
        let limits = SwapLimits::default();
        let (_, outputs) = change(&ring, &[8, 2]);
        check_issue(&outputs, Amount(10), &ring, NOW, &limits).unwrap();
        assert_eq!(
            check_issue(&outputs, Amount(9), &ring, NOW, &limits),
            Err(CreditError::AmountMismatch {
                expected: Amount(9),
                got: Amount(10)
            })
        );
        assert_eq!(
            check_issue(&[], Amount(0), &ring, NOW, &limits),
            Err(CreditError::Empty("outputs"))
        );
    }
}
