//! The coordinator's double-entry ledger: the rules, not the storage.
//!
//! Every movement of value is an [`Entry`] that takes `amount` from one account and gives it
//! to another, so the balances of all accounts always sum to zero:
//!
//! * publish:  `issuer:<id>` → `pool` (the issuer now owes the pool the voucher's value)
//! * redeem:   `pool` → `operator:<id>` (its revenue share) and `pool` → `network_fund` (the rest)
//! * release:  `pool` → `network_fund` (value of vouchers that expired unredeemed)
//!
//! Conservation, checkable by anyone from the public log: `published = redeemed + live +
//! released`, where `live` is the pool's balance. [`Totals::replay`] recomputes every figure
//! from the entries alone.

use crate::error::{err, ErrorCode, ProtocolError};
use crate::Amount;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// Basis points in 100%.
pub const BPS: u32 = 10_000;

/// An account in the ledger.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Account {
    /// What an issuer owes for the vouchers published under its keys (negative balance).
    Issuer(String),
    /// Value of published vouchers not yet redeemed or released.
    Pool,
    /// What an operator has earned from redemptions.
    Operator(String),
    /// The network's share of redemptions, plus released expired value.
    NetworkFund,
}

impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Account::Issuer(id) => write!(f, "issuer:{id}"),
            Account::Pool => f.write_str("pool"),
            Account::Operator(id) => write!(f, "operator:{id}"),
            Account::NetworkFund => f.write_str("network_fund"),
        }
    }
}

impl FromStr for Account {
    type Err = ProtocolError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || err(ErrorCode::InvalidRequest, format!("unknown account {s:?}"));
        match s {
            "pool" => Ok(Account::Pool),
            "network_fund" => Ok(Account::NetworkFund),
            _ => match s.split_once(':') {
                Some(("issuer", id)) if valid_id(id) => Ok(Account::Issuer(id.to_owned())),
                Some(("operator", id)) if valid_id(id) => Ok(Account::Operator(id.to_owned())),
                _ => Err(bad()),
            },
        }
    }
}

impl Serialize for Account {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Account {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Issuer and operator ids: 1–64 characters of `[a-z0-9_-]`, so they are safe in account
/// names, URLs and logs.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Why value moved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    Publish,
    Redeem,
    Release,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Publish => "publish",
            EntryKind::Redeem => "redeem",
            EntryKind::Release => "release",
        }
    }
}

impl FromStr for EntryKind {
    type Err = ProtocolError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "publish" => Ok(EntryKind::Publish),
            "redeem" => Ok(EntryKind::Redeem),
            "release" => Ok(EntryKind::Release),
            _ => Err(err(
                ErrorCode::Internal,
                format!("unknown entry kind {s:?}"),
            )),
        }
    }
}

/// One movement of value, before it is given a sequence number and a time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Posting {
    pub kind: EntryKind,
    pub from: Account,
    pub to: Account,
    pub amount: Amount,
}

/// A posting as recorded in the public log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Entry {
    /// Position in the log, strictly increasing from 1.
    pub seq: u64,
    /// Unix seconds.
    pub at: u64,
    pub kind: EntryKind,
    #[schema(value_type = String, example = "pool")]
    pub from: Account,
    #[schema(value_type = String, example = "operator:op-1")]
    pub to: Account,
    pub amount: Amount,
    /// On a redemption's entries: where the operator's share came from — `"statement"` (a
    /// trusted directory's signed share statement, capped by the administrator's number) or
    /// `"admin"` (the administrator's number). Absent on other entries and on redemptions
    /// recorded before shares had sources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share_source: Option<String>,
    /// With `"statement"`: the statement's digest (`smpx_core::directory::statement_digest`);
    /// the statement itself is `GET /v1/share-statements/{digest}` at the coordinator, so
    /// anyone can re-derive the split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share_statement: Option<String>,
    /// On a redemption's entries: the redemption they split — the operator it was redeemed
    /// at, the voucher's value and the share applied — so each redemption is re-derivable
    /// from the log alone, even where one leg is zero and left out (a share of 0 posts no
    /// operator leg). Absent on other entries and on redemptions recorded before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redemption: Option<RedemptionNote>,
}

/// What each ledger entry of a redemption records about the redemption
/// ([`Entry::redemption`]): with it, [`redemption_split`] of `value` at `share_bps` gives
/// exactly the legs posted, in the order [`redeem`] posts them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RedemptionNote {
    /// The operator the voucher was redeemed at.
    pub operator_id: String,
    /// The voucher's value, split between the operator and the network fund.
    pub value: Amount,
    /// The share applied, in basis points: the operator's share (a statement's capped by the
    /// administrator's number, or the administrator's number) capped by the network's
    /// `max_operator_share_bps`.
    pub share_bps: u32,
}

/// Postings for publishing a voucher worth `value` under `issuer`'s key.
pub fn publish(issuer: &str, value: Amount) -> Vec<Posting> {
    vec![Posting {
        kind: EntryKind::Publish,
        from: Account::Issuer(issuer.to_owned()),
        to: Account::Pool,
        amount: value,
    }]
}

/// Splits a redemption of `value` between an operator with `share_bps` and the network fund.
/// The operator's part is rounded down; the fund gets the exact remainder, so nothing is lost.
pub fn redemption_split(value: Amount, share_bps: u32) -> (Amount, Amount) {
    let share = u128::from(share_bps.min(BPS));
    // value < 2^64 and share <= 10^4, so the product fits in u128 and the quotient in u64.
    let op = (u128::from(value.0) * share / u128::from(BPS)) as u64;
    (Amount(op), Amount(value.0 - op))
}

/// Postings for redeeming a voucher worth `value` at `operator` with `share_bps`.
/// Zero-amount legs are left out.
pub fn redeem(operator: &str, value: Amount, share_bps: u32) -> Vec<Posting> {
    let (op, fund) = redemption_split(value, share_bps);
    let mut out = Vec::with_capacity(2);
    if op.0 > 0 {
        out.push(Posting {
            kind: EntryKind::Redeem,
            from: Account::Pool,
            to: Account::Operator(operator.to_owned()),
            amount: op,
        });
    }
    if fund.0 > 0 {
        out.push(Posting {
            kind: EntryKind::Redeem,
            from: Account::Pool,
            to: Account::NetworkFund,
            amount: fund,
        });
    }
    out
}

/// Posting for releasing `value` of expired vouchers to the network fund.
pub fn release(value: Amount) -> Vec<Posting> {
    if value.0 == 0 {
        return Vec::new();
    }
    vec![Posting {
        kind: EntryKind::Release,
        from: Account::Pool,
        to: Account::NetworkFund,
        amount: value,
    }]
}

/// The ledger's headline figures.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Totals {
    /// Value of every voucher ever published.
    pub published: Amount,
    /// Value of redeemed vouchers (operator shares + network fund shares).
    pub redeemed: Amount,
    /// Value of published vouchers neither redeemed nor released: the pool's balance.
    pub live: Amount,
    /// Value of expired vouchers released to the network fund.
    pub released: Amount,
    /// Paid to operators, in total.
    pub paid_to_operators: Amount,
    /// Network fund balance (redemption remainders + releases).
    pub network_fund: Amount,
}

/// Totals could not be replayed from a log.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReplayError {
    #[error("entry {0}: sequence numbers must increase by one from 1")]
    Sequence(u64),
    #[error("entry {0}: amount overflows")]
    Overflow(u64),
    #[error("entry {0}: posting does not follow the ledger rules ({1})")]
    Rule(u64, &'static str),
}

impl Totals {
    /// Recomputes every figure from the public log, checking each entry obeys the rules.
    pub fn replay<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> Result<Totals, ReplayError> {
        let mut t = Totals::default();
        let mut balances: BTreeMap<Account, i128> = BTreeMap::new();
        let mut expected_seq = 1u64;
        for e in entries {
            if e.seq != expected_seq {
                return Err(ReplayError::Sequence(e.seq));
            }
            expected_seq += 1;
            let add = |a: Amount, b: Amount| a.checked_add(b).ok_or(ReplayError::Overflow(e.seq));
            match (e.kind, &e.from, &e.to) {
                (EntryKind::Publish, Account::Issuer(_), Account::Pool) => {
                    t.published = add(t.published, e.amount)?;
                }
                (EntryKind::Redeem, Account::Pool, Account::Operator(_)) => {
                    t.redeemed = add(t.redeemed, e.amount)?;
                    t.paid_to_operators = add(t.paid_to_operators, e.amount)?;
                }
                (EntryKind::Redeem, Account::Pool, Account::NetworkFund) => {
                    t.redeemed = add(t.redeemed, e.amount)?;
                    t.network_fund = add(t.network_fund, e.amount)?;
                }
                (EntryKind::Release, Account::Pool, Account::NetworkFund) => {
                    t.released = add(t.released, e.amount)?;
                    t.network_fund = add(t.network_fund, e.amount)?;
                }
                _ => return Err(ReplayError::Rule(e.seq, "unexpected accounts for its kind")),
            }
            *balances.entry(e.from.clone()).or_default() -= i128::from(e.amount.0);
            *balances.entry(e.to.clone()).or_default() += i128::from(e.amount.0);
            if balances.get(&Account::Pool).copied().unwrap_or(0) < 0 {
                return Err(ReplayError::Rule(e.seq, "pool balance went negative"));
            }
        }
        let pool = balances.get(&Account::Pool).copied().unwrap_or(0);
        t.live = Amount(u64::try_from(pool).map_err(|_| ReplayError::Overflow(expected_seq))?);
        Ok(t)
    }

    /// `published = redeemed + live + released`.
    pub fn is_conserved(&self) -> bool {
        let rhs =
            u128::from(self.redeemed.0) + u128::from(self.live.0) + u128::from(self.released.0);
        u128::from(self.published.0) == rhs
            && u128::from(self.redeemed.0) + u128::from(self.released.0)
                == u128::from(self.paid_to_operators.0) + u128::from(self.network_fund.0)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn log(postings: Vec<Posting>) -> Vec<Entry> {
        postings
            .into_iter()
            .enumerate()
            .map(|(i, p)| Entry {
                seq: i as u64 + 1,
                at: 0,
                kind: p.kind,
                from: p.from,
                to: p.to,
                amount: p.amount,
                share_source: None,
                share_statement: None,
                redemption: None,
            })
            .collect()
    }

    #[test]
    fn split_is_exact_and_capped() {
        assert_eq!(
            redemption_split(Amount(1_000_000), 7000),
            (Amount(700_000), Amount(300_000))
        );
        assert_eq!(redemption_split(Amount(1), 7000), (Amount(0), Amount(1)));
        assert_eq!(
            redemption_split(Amount(10), 20_000),
            (Amount(10), Amount(0))
        );
    }

    #[test]
    fn accounts_roundtrip_and_reject_junk() {
        for a in [
            Account::Pool,
            Account::NetworkFund,
            Account::Issuer("iss-1".into()),
            Account::Operator("op_2".into()),
        ] {
            assert_eq!(a.to_string().parse::<Account>().unwrap(), a);
        }
        assert!("operator:".parse::<Account>().is_err());
        assert!("operator:A B".parse::<Account>().is_err());
        assert!("bank".parse::<Account>().is_err());
    }

    #[test]
    fn replay_rejects_a_log_that_breaks_the_rules() {
        let mut l = log(publish("i", Amount(5)));
        l.push(Entry {
            seq: 2,
            at: 0,
            kind: EntryKind::Redeem,
            from: Account::Pool,
            to: Account::Operator("o".into()),
            amount: Amount(6),
            share_source: None,
            share_statement: None,
            redemption: None,
        });
        assert!(matches!(Totals::replay(&l), Err(ReplayError::Rule(2, _))));
        let mut gap = log(publish("i", Amount(5)));
        gap[0].seq = 2;
        assert_eq!(Totals::replay(&gap), Err(ReplayError::Sequence(2)));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Publish(u64),
        Redeem(usize, u32),
        Release(usize),
    }

    proptest! {
        /// Whatever sequence of publishes, redemptions and releases happens, the replayed log
        /// conserves money and the pool equals the value of live vouchers.
        #[test]
        fn money_is_conserved(ops in proptest::collection::vec(prop_oneof![
            (1u64..200_000_000).prop_map(Op::Publish),
            (0usize..64, 0u32..=7000).prop_map(|(i, s)| Op::Redeem(i, s)),
            (0usize..64).prop_map(Op::Release),
        ], 0..64)) {
            let mut live: Vec<Amount> = Vec::new();
            let mut postings = Vec::new();
            for op in ops {
                match op {
                    Op::Publish(v) => { live.push(Amount(v)); postings.extend(publish("iss", Amount(v))); }
                    Op::Redeem(i, s) if !live.is_empty() => {
                        let v = live.swap_remove(i % live.len());
                        postings.extend(redeem("op", v, s));
                    }
                    Op::Release(i) if !live.is_empty() => {
                        let v = live.swap_remove(i % live.len());
                        postings.extend(release(v));
                    }
                    _ => {}
                }
            }
            let t = Totals::replay(&log(postings)).unwrap();
            prop_assert!(t.is_conserved());
            prop_assert_eq!(t.live.0, live.iter().map(|a| a.0).sum::<u64>());
        }
    }
}
