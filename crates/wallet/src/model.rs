//! What the wallet shows: vouchers, their local states, credits and the balance.
//!
//! The local state machine lives here as a pure function (`LocalState::apply`) so that
//! every write goes through one list of legal transitions, and tests can check that list
//! exhaustively.

use serde::{Deserialize, Serialize};
use smpx_core::Amount;
use std::collections::BTreeMap;
use std::fmt;

/// Where a voucher is in its life, as far as this wallet knows.
///
/// ```text
/// Buying ──signed──▶ Bought ──published──▶ Published ──redeemed──▶ Redeemed
///                      │  └──────(seen redeemed)─────────────────────▲
///                      └─(publish window missed / released)─▶ Expired ◀─released─ Published
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LocalState {
    /// The index is reserved and the blinded commitment is stored; the issuer has not (yet)
    /// answered. Resume with [`crate::Wallet::resume_buy`].
    Buying,
    /// Signed by the issuer, not yet published: only this wallet knows it.
    Bought,
    /// Published at the coordinator: live, redeemable until `expires_at`.
    Published,
    /// Redeemed (by this wallet, or by another copy restored from the same phrase).
    Redeemed,
    /// Can no longer be redeemed: it expired after publishing (its value was released to the
    /// network fund), or it was never published within its key's publish window.
    Expired,
}

impl LocalState {
    pub const ALL: [LocalState; 5] = [
        LocalState::Buying,
        LocalState::Bought,
        LocalState::Published,
        LocalState::Redeemed,
        LocalState::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LocalState::Buying => "buying",
            LocalState::Bought => "bought",
            LocalState::Published => "published",
            LocalState::Redeemed => "redeemed",
            LocalState::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        LocalState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// The state after `event`, or `None` if the event cannot happen in this state.
    pub(crate) fn apply(self, event: Event) -> Option<LocalState> {
        use Event as E;
        use LocalState as S;
        match (self, event) {
            (S::Buying, E::Signed) => Some(S::Bought),
            (S::Bought, E::Published) => Some(S::Published),
            // A publish whose answer was lost, then the voucher was redeemed or released:
            // the coordinator's status is the truth.
            (S::Bought | S::Published, E::Redeemed) => Some(S::Redeemed),
            (S::Bought | S::Published, E::Released) => Some(S::Expired),
            (S::Bought, E::PublishWindowMissed) => Some(S::Expired),
            _ => None,
        }
    }
}

impl fmt::Display for LocalState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What moves a voucher between [`LocalState`]s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// The issuer's blind signature arrived and finalized into a valid signature.
    Signed,
    /// The coordinator recorded the voucher (receipt, or status `live`).
    Published,
    /// The coordinator recorded a redemption (operator receipt, or status `redeemed`).
    Redeemed,
    /// The coordinator released it at expiry (status `released`).
    Released,
    /// Its key's publish deadline passed while it was unpublished.
    PublishWindowMissed,
}

/// One voucher, as listed (no secrets).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VoucherRecord {
    /// Local id, for the commands that act on one voucher.
    pub id: i64,
    /// Derivation index of its secret (`s = seed.voucher_secret(index)`).
    pub index: u64,
    /// In whole credits.
    pub denomination: u64,
    pub state: LocalState,
    /// Empty for vouchers found by [`crate::Wallet::recover`]: the coordinator's status does
    /// not name the issuer.
    pub issuer_id: String,
    /// Empty for vouchers found by [`crate::Wallet::recover`].
    pub key_id: String,
    /// `C`, lowercase hex.
    pub commitment: String,
    /// Publish before this time (unix seconds), or the voucher is lost; known for vouchers
    /// bought by this wallet.
    pub publish_deadline: Option<u64>,
    /// When a bought voucher is scheduled to be published (unix seconds): drawn at purchase
    /// ([`crate::Wallet::publish_due`] publishes it from then on). `None` before the purchase
    /// completes, for vouchers bought by an older version (scheduled at the next sync), and
    /// for recovered ones.
    pub publish_due_at: Option<u64>,
    pub published_at: Option<u64>,
    pub expires_at: Option<u64>,
    /// The operator it was redeemed at, when this wallet redeemed it.
    pub redeemed_at_operator: Option<String>,
}

impl VoucherRecord {
    /// Face value.
    pub fn value(&self) -> Amount {
        Amount::from_credits(self.denomination).unwrap_or(Amount(u64::MAX))
    }
}

/// Credits an operator granted for a redeemed voucher.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CreditRecord {
    pub voucher_id: i64,
    pub operator_id: String,
    pub credited: Amount,
    /// The operator's signed receipt (`Signed<OperatorCreditReceipt>`, with the coordinator's
    /// receipt inside), verified when it arrived; kept as proof, exactly as received (format 2:
    /// the body is the JSON text in `payload`; older wallets stored format 1, with `body`).
    /// [`CreditRecord::signed_receipt`] parses either.
    pub receipt: serde_json::Value,
    /// When the operator issued it (its `issued_at`, unix seconds).
    pub at: u64,
    /// The redemption protocol used: 1 (the coordinator saw the voucher) or 2 (a
    /// zero-knowledge proof; the coordinator saw only a nullifier, the MMR and the
    /// denomination).
    pub protocol: u32,
    /// The part of `credited` the operator issued as credit tokens (blind-signed, checked
    /// with their DLEQ proofs, spendable with [`crate::Wallet::spend_credits`]); zero when
    /// the operator gave a receipt only (an operator without credits).
    pub issued: Amount,
}

impl CreditRecord {
    /// The stored receipt, parsed (it was verified when it arrived). Its JSON is the receipt
    /// format of [`smpx_core::receipt`]: read the body here rather than out of `receipt`.
    pub fn signed_receipt(
        &self,
    ) -> Result<smpx_core::receipt::Signed<smpx_core::api::OperatorCreditReceipt>, crate::WalletError>
    {
        serde_json::from_value(self.receipt.clone())
            .map_err(|e| crate::WalletError::Corrupt(format!("stored receipt: {e}")))
    }
}

/// Count and face value of the vouchers in one state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StateTotal {
    pub count: u64,
    pub value: Amount,
}

impl StateTotal {
    fn add(&mut self, value: Amount) {
        self.count += 1;
        self.value = Amount(self.value.0.saturating_add(value.0));
    }
}

/// What [`crate::Wallet::publish_due`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    /// Published now, in the (random) order they were published.
    pub published: Vec<VoucherRecord>,
    /// Due but not published (they stay due; the next sync tries again).
    pub failed: Vec<SyncFailure>,
    /// Bought vouchers not due yet, soonest first.
    pub scheduled: Vec<Scheduled>,
}

/// A due voucher that could not be published.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SyncFailure {
    pub id: i64,
    pub error: String,
}

/// A bought voucher waiting for its publication time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Scheduled {
    pub id: i64,
    /// Unix seconds.
    pub due_at: u64,
}

/// What the wallet holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Balance {
    pub buying: StateTotal,
    pub bought: StateTotal,
    pub published: StateTotal,
    pub redeemed: StateTotal,
    pub expired: StateTotal,
    /// Value still redeemable: bought (once published) plus published.
    pub spendable: Amount,
    /// Credits granted per operator id (by the operators' receipts, spent or not).
    pub credits: BTreeMap<String, Amount>,
    /// Credit tokens held per operator id: unspent and unexpired, what
    /// [`crate::Wallet::spend_credits`] can spend now.
    pub credit_tokens: BTreeMap<String, Amount>,
}

impl Balance {
    pub(crate) fn from_records(vouchers: &[VoucherRecord], credits: &[CreditRecord]) -> Self {
        let mut b = Balance::default();
        for v in vouchers {
            let slot = match v.state {
                LocalState::Buying => &mut b.buying,
                LocalState::Bought => &mut b.bought,
                LocalState::Published => &mut b.published,
                LocalState::Redeemed => &mut b.redeemed,
                LocalState::Expired => &mut b.expired,
            };
            slot.add(v.value());
        }
        b.spendable = Amount(b.bought.value.0.saturating_add(b.published.value.0));
        for c in credits {
            let e = b.credits.entry(c.operator_id.clone()).or_default();
            *e = Amount(e.0.saturating_add(c.credited.0));
        }
        b
    }

    /// The totals of one state.
    pub fn of(&self, state: LocalState) -> StateTotal {
        match state {
            LocalState::Buying => self.buying,
            LocalState::Bought => self.bought,
            LocalState::Published => self.published,
            LocalState::Redeemed => self.redeemed,
            LocalState::Expired => self.expired,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn state_machine_allows_exactly_the_documented_transitions() {
        use Event as E;
        use LocalState as S;
        let events = [
            E::Signed,
            E::Published,
            E::Redeemed,
            E::Released,
            E::PublishWindowMissed,
        ];
        let allowed = [
            (S::Buying, E::Signed, S::Bought),
            (S::Bought, E::Published, S::Published),
            (S::Bought, E::Redeemed, S::Redeemed),
            (S::Bought, E::Released, S::Expired),
            (S::Bought, E::PublishWindowMissed, S::Expired),
            (S::Published, E::Redeemed, S::Redeemed),
            (S::Published, E::Released, S::Expired),
        ];
        for s in LocalState::ALL {
            for e in events {
                let expected = allowed
                    .iter()
                    .find(|(from, ev, _)| *from == s && *ev == e)
                    .map(|(_, _, to)| *to);
                assert_eq!(s.apply(e), expected, "{s:?} on {e:?}");
            }
        }
        // Terminal states stay terminal; nothing goes back to Buying.
        for e in events {
            assert_eq!(S::Redeemed.apply(e), None);
            assert_eq!(S::Expired.apply(e), None);
        }
    }

    #[test]
    fn states_serialize_snake_case_and_parse_back() {
        for s in LocalState::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
            assert_eq!(LocalState::parse(s.as_str()), Some(s));
        }
        assert_eq!(LocalState::parse("live"), None);
    }

    #[test]
    fn balance_sums_by_state_and_operator() {
        let v = |id, d, state| VoucherRecord {
            id,
            index: id as u64,
            denomination: d,
            state,
            issuer_id: "i".into(),
            key_id: "k".into(),
            commitment: String::new(),
            publish_deadline: None,
            publish_due_at: None,
            published_at: None,
            expires_at: None,
            redeemed_at_operator: None,
        };
        let vouchers = [
            v(1, 10, LocalState::Published),
            v(2, 100, LocalState::Published),
            v(3, 1, LocalState::Bought),
            v(4, 10, LocalState::Redeemed),
        ];
        let c = |op: &str, units| CreditRecord {
            voucher_id: 4,
            operator_id: op.into(),
            credited: Amount(units),
            receipt: serde_json::Value::Null,
            at: 0,
            protocol: 2,
            issued: Amount(units),
        };
        let b = Balance::from_records(&vouchers, &[c("a", 5), c("a", 7), c("b", 1)]);
        assert_eq!(
            b.published,
            StateTotal {
                count: 2,
                value: Amount(110_000_000)
            }
        );
        assert_eq!(b.bought.count, 1);
        assert_eq!(b.redeemed.value, Amount(10_000_000));
        assert_eq!(b.buying, StateTotal::default());
        assert_eq!(b.spendable, Amount(111_000_000));
        assert_eq!(b.credits["a"], Amount(12));
        assert_eq!(b.credits["b"], Amount(1));
        assert_eq!(b.of(LocalState::Bought), b.bought);
    }
}
