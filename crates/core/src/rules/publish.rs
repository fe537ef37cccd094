//! Rule: may the coordinator accept a publication, and with which expiry and MMRs?
//! (DESIGN.md §2 "v0.1 — Chaumian e-cash" and "Rotation"; seed 003 "Adding Voucher Expiry".)
//!
//! A voucher is accepted when its denomination is the network's, its issuer key is known and
//! signs that denomination, and the key's period started no later than now and less than
//! `2M` ago ([`crate::keys::check_publishable`]). An accepted voucher is appended to every
//! open MMR and expires with the newest of them — but never before `now + voucher expiry`.
//!
//! The signature over `C` is checked by the caller with the key it parsed (and cached); what
//! must hold under concurrency — the issuer is still whitelisted, its limit is not exceeded,
//! `C` is new, the MMR has room — the store enforces in the publishing transaction, and
//! [`Refused`] turns its answer into the protocol's. Issuer key registration
//! ([`registration`]) is here too: it decides which keys a publication can name.

use crate::error::{err, ErrorCode, ProtocolError};
use crate::{keys, rotation, Amount, NetworkParams, UnixTime};

/// A publication as the wallet sends it (the parts the rule reads).
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub denomination: u64,
    /// The issuer key that signed `C`, as sent (hex).
    pub key_id: &'a str,
}

/// The registered issuer key the request names, as the coordinator stored it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key {
    pub denomination: u64,
    pub period: u64,
}

/// An acceptable publication: what the store appends and the receipt says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    pub value: Amount,
    pub key_id: [u8; 32],
    /// The MMRs `C` is appended to, oldest first.
    pub mmrs: Vec<u64>,
    pub expires_at: UnixTime,
}

/// Decides a publication. `key` is the key stored under `request.key_id` (`None` when there
/// is none, or when the id is malformed); the checks run in the order the API promises:
/// denomination, key id, key, key's denomination, publish window.
pub fn decide(
    params: &NetworkParams,
    request: &Request<'_>,
    key: Option<Key>,
    now: UnixTime,
) -> Result<Accepted, ProtocolError> {
    let value = super::voucher_value(params, request.denomination)?;
    let key_id = super::parse_key_id(request.key_id)?;
    let key = key.ok_or_else(|| err(ErrorCode::UnknownKey, "no issuer key with this id"))?;
    if key.denomination != request.denomination {
        return Err(err(
            ErrorCode::InvalidRequest,
            format!(
                "key {} signs denomination {}",
                request.key_id, key.denomination
            ),
        ));
    }
    keys::check_publishable(params, key.period, now)?;
    let mmrs = rotation::open_mmrs(params, now);
    Ok(Accepted {
        value,
        key_id,
        expires_at: expires_at(params, &mmrs, now),
        mmrs,
    })
}

/// A voucher appended to `mmrs` at `now` is redeemable until its newest MMR (its group)
/// expires, and at least for the network's voucher expiry.
pub fn expires_at(params: &NetworkParams, mmrs: &[u64], now: UnixTime) -> UnixTime {
    let group = mmrs.last().copied().unwrap_or(0);
    rotation::mmr_expires_at(params, group).max(keys::voucher_expires_at(params, now))
}

/// Why the store's publishing transaction refused an accepted publication.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    MmrFull,
    AlreadyPublished,
    IssuerInactive,
    LimitExceeded,
}

impl From<Refused> for ProtocolError {
    fn from(r: Refused) -> Self {
        match r {
            Refused::MmrFull => err(
                ErrorCode::MmrFull,
                "the open MMR is full; publishing resumes when the next one opens",
            ),
            Refused::AlreadyPublished => err(
                ErrorCode::AlreadyPublished,
                "this voucher is already published",
            ),
            Refused::IssuerInactive => err(
                ErrorCode::IssuerNotWhitelisted,
                "the issuer is not whitelisted",
            ),
            Refused::LimitExceeded => err(
                ErrorCode::IssuerLimitExceeded,
                "the issuer has reached its issuing limit",
            ),
        }
    }
}

/// May a (whitelisted, authenticated) issuer register a key for `denomination` and `period`
/// at `now`? Only network denominations, and only the current or next key period.
pub fn registration(
    params: &NetworkParams,
    denomination: u64,
    period: u64,
    now: UnixTime,
) -> Result<(), ProtocolError> {
    if !params.is_denomination(denomination) {
        return Err(err(
            ErrorCode::UnsupportedDenomination,
            format!(
                "the network issues denominations {:?}",
                params.denominations
            ),
        ));
    }
    keys::check_registrable(params, period, now)
}

/// A key registration hit one already stored for the same id, or for the same issuer,
/// denomination and period: the same key again (`existing` matches) is a harmless retry,
/// anything else a conflict.
pub fn registration_retry(
    existing: Option<(&str, Key)>,
    issuer_id: &str,
    key: Key,
) -> Result<(), ProtocolError> {
    match existing {
        Some((id, k)) if id == issuer_id && k == key => Ok(()),
        _ => Err(err(
            ErrorCode::KeyRegistrationRejected,
            "another key is already registered for this issuer, denomination and period",
        )),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::rules::tests::params;
    use proptest::prelude::*;

    const KEY: &str = "0101010101010101010101010101010101010101010101010101010101010101";

    fn request(denomination: u64) -> Request<'static> {
        Request {
            denomination,
            key_id: KEY,
        }
    }

    fn key(period: u64) -> Option<Key> {
        Some(Key {
            denomination: 10,
            period,
        })
    }

    fn code(r: Result<Accepted, ProtocolError>) -> ErrorCode {
        r.unwrap_err().code
    }

    #[test]
    fn accepts_inside_the_publish_window_and_refuses_exactly_at_2m() {
        let p = params();
        // Key period 0 starts at the epoch (1000); the window is [1000, 1200).
        assert_eq!(
            code(decide(&p, &request(10), key(0), 999)),
            ErrorCode::KeyNotValid
        );
        assert!(decide(&p, &request(10), key(0), 1000).is_ok());
        assert!(decide(&p, &request(10), key(0), 1199).is_ok());
        let late = decide(&p, &request(10), key(0), 1200).unwrap_err();
        assert_eq!(late.code, ErrorCode::KeyNotValid);
        assert!(late.message.contains("before 1200"), "{}", late.message);
    }

    #[test]
    fn refusals_come_in_the_promised_order() {
        let p = params();
        // An unsupported denomination wins over everything else.
        let odd = Request {
            denomination: 7,
            key_id: "junk",
        };
        assert_eq!(
            code(decide(&p, &odd, None, 1000)),
            ErrorCode::UnsupportedDenomination
        );
        let junk = Request {
            denomination: 10,
            key_id: "junk",
        };
        assert_eq!(
            code(decide(&p, &junk, key(0), 1000)),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            code(decide(&p, &request(10), None, 1000)),
            ErrorCode::UnknownKey
        );
        let other = decide(&p, &request(100), key(0), 1000).unwrap_err();
        assert_eq!(other.code, ErrorCode::InvalidRequest);
        assert!(other.message.contains("signs denomination 10"));
    }

    #[test]
    fn appended_to_every_open_mmr_and_expires_with_the_newest() {
        let p = params();
        let first = decide(&p, &request(10), key(0), 1000).unwrap();
        assert_eq!(first.mmrs, vec![0]);
        assert_eq!(first.value, p.voucher_value(10).unwrap());
        assert_eq!(first.key_id, [1; 32]);
        assert_eq!(first.expires_at, rotation::mmr_expires_at(&p, 0));
        // In MMR period 1 (from 1050) a voucher joins MMRs 0 and 1 and lives as long as 1.
        let later = decide(&p, &request(10), key(0), 1060).unwrap();
        assert_eq!(later.mmrs, vec![0, 1]);
        assert_eq!(later.expires_at, rotation::mmr_expires_at(&p, 1));
    }

    #[test]
    fn the_last_voucher_of_an_mmr_still_gets_the_full_expiry() {
        let p = params();
        // The last second of MMR 1's period: it joins MMRs 0 and 1; MMR 1 closes at 1150.
        let a = decide(&p, &request(10), key(0), 1099).unwrap();
        assert_eq!(a.mmrs, vec![0, 1]);
        assert_eq!(a.expires_at, 1150 + p.voucher_expiry_secs);
        assert!(a.expires_at >= 1099 + p.voucher_expiry_secs);
    }

    #[test]
    fn store_refusals_keep_their_codes() {
        let cases = [
            (Refused::MmrFull, ErrorCode::MmrFull),
            (Refused::AlreadyPublished, ErrorCode::AlreadyPublished),
            (Refused::IssuerInactive, ErrorCode::IssuerNotWhitelisted),
            (Refused::LimitExceeded, ErrorCode::IssuerLimitExceeded),
        ];
        for (refused, code) in cases {
            assert_eq!(ProtocolError::from(refused).code, code);
        }
    }

    #[test]
    fn keys_register_for_the_current_and_next_period_only() {
        let p = params();
        assert!(registration(&p, 10, 0, 1000).is_ok());
        assert!(registration(&p, 10, 1, 1000).is_ok());
        assert_eq!(
            registration(&p, 10, 2, 1000).unwrap_err().code,
            ErrorCode::KeyRegistrationRejected
        );
        assert_eq!(
            registration(&p, 7, 0, 1000).unwrap_err().code,
            ErrorCode::UnsupportedDenomination
        );
    }

    #[test]
    fn registering_the_same_key_again_is_a_retry() {
        let k = Key {
            denomination: 10,
            period: 3,
        };
        assert!(registration_retry(Some(("iss", k)), "iss", k).is_ok());
        for existing in [
            None,
            Some(("other", k)),
            Some(("iss", Key { period: 4, ..k })),
            Some((
                "iss",
                Key {
                    denomination: 1,
                    ..k
                },
            )),
        ] {
            assert_eq!(
                registration_retry(existing, "iss", k).unwrap_err().code,
                ErrorCode::KeyRegistrationRejected
            );
        }
    }

    proptest! {
        /// Accepted exactly inside [start, start + 2M) of the key's period, and an accepted
        /// voucher always outlives the voucher expiry and sits in one or two open MMRs.
        #[test]
        fn accepted_iff_inside_the_window(period in 0u64..50, now in 0u64..10_000) {
            let p = params();
            let start = keys::period_start(&p, period);
            let inside = now >= start && now < start + p.publish_window_secs;
            let r = decide(&p, &request(10), key(period), now);
            prop_assert_eq!(r.is_ok(), inside);
            if let Ok(a) = r {
                prop_assert!(a.expires_at >= now + p.voucher_expiry_secs);
                prop_assert!(matches!(a.mmrs.len(), 1 | 2));
                for k in &a.mmrs {
                    prop_assert!(now < rotation::mmr_closes_at(&p, *k));
                }
            }
        }
    }
}
