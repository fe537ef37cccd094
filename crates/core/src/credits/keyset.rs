//! Keysets: one per day, derived from the operator's master secret (NUT-01, NUT-02).
//!
//! A keyset is one key per denomination `2^0 … 2^(orders−1)`. Operator R has one keyset per
//! day `d` (days since 1970-01-01 UTC); its keys are
//!
//! ```text
//! k_{d,i} = HKDF-SHA256(salt = "smpx/credits/keyset-key/v1", ikm = master secret,
//!                       info = d as u32 BE ‖ lifetime_days as u32 BE ‖ i as u8)[64 bytes] mod* n
//! ```
//!
//! (`mod*`: reduced to a non-zero scalar, bias about 2^-256), so every server of R derives the
//! same keys from the same master secret and nothing else. Tokens of day `d` expire at the
//! start of day `d + lifetime_days` (the keyset's *final expiry*, unix seconds); the lifetime
//! is part of the derivation so one set of keys never has two expiries.
//!
//! Keyset ids follow NUT-02:
//!
//! * version `00`: `"00" ‖ hex(SHA-256(K_1 ‖ K_2 ‖ K_4 ‖ …)[0..7])`, compressed keys sorted by amount;
//! * version `01`: `"01" ‖ hex(SHA-256(K_1 ‖ K_2 ‖ … ‖ "unit:" ‖ unit ‖ "final_expiry:" ‖ decimal))`.
//!
//! smpx uses `01` by default: the id then commits to the unit and the final expiry, which the
//! wallet checks ([`KeysetKeys::verify_id`]) before it trusts either.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;

use hkdf::Hkdf;
use k256::elliptic_curve::bigint::U512;
use k256::elliptic_curve::ops::ReduceNonZero;
use k256::{Scalar, WideBytes};
use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::amounts::order_of;
use super::dleq;
use super::encoding::Point;
use super::wire::{BlindSignature, BlindedMessage, Proof};
use super::CreditError;
use crate::{Amount, UnixTime, DAY};

/// The unit of credit amounts: one smpx [`Amount`] unit, 10⁻⁶ credit.
pub const CREDIT_UNIT: &str = "ucredit";

/// Denominations per keyset: `2^0 … 2^39` units. The largest voucher today is 100 credits =
/// 10⁸ units < 2^27, so one redemption never needs more than one token per denomination; 2^39
/// units (about 550,000 credits) leaves room for vouchers of any amount without publishing 24
/// more keys a day that nobody would use (a denomination almost nobody uses singles out its
/// holder).
pub const DEFAULT_ORDERS: u8 = 40;

/// Default credit lifetime: tokens of day `d` are accepted until the start of day `d + 90`.
pub const DEFAULT_LIFETIME_DAYS: u32 = 90;

/// Default tolerance for the output keyset around midnight, in seconds.
pub const DEFAULT_OUTPUT_SKEW_SECS: u64 = 300;

/// Default number of days an expired keyset is still known, to say "expired" rather than
/// "unknown".
pub const DEFAULT_EXPIRED_GRACE_DAYS: u32 = 7;

/// HKDF salt for keyset keys; bump the version to change the derivation.
const KEY_SALT: &[u8] = b"smpx/credits/keyset-key/v1";

/// A UTC day: days since 1970-01-01. The only timestamp a token carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Day(pub u32);

impl Day {
    /// The day that contains `now`.
    pub fn of(now: UnixTime) -> Day {
        Day(u32::try_from(now / DAY).unwrap_or(u32::MAX))
    }

    /// The first second of the day.
    pub fn start(self) -> UnixTime {
        u64::from(self.0) * DAY
    }

    pub fn plus(self, days: u32) -> Day {
        Day(self.0.saturating_add(days))
    }

    pub fn minus(self, days: u32) -> Day {
        Day(self.0.saturating_sub(days))
    }
}

/// NUT-02 keyset id version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeysetIdVersion {
    /// `00`: 7 bytes of the hash of the keys. NUT-13 derives secrets with BIP-32.
    V1,
    /// `01`: the full hash of keys, unit and final expiry. NUT-13 derives secrets with HMAC.
    V2,
}

/// How an operator's keysets are made. Every server of one operator must use the same values
/// (they are part of the keys and the ids).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeysetParams {
    /// Days a token stays valid after the day of its keyset.
    pub lifetime_days: u32,
    /// Number of denominations: amounts `2^0 … 2^(orders−1)`.
    pub orders: u8,
    pub id_version: KeysetIdVersion,
    /// Outputs may use the keyset of the day of `now ± output_skew_secs`.
    pub output_skew_secs: u64,
    /// Days an expired keyset is kept to answer "expired" instead of "unknown".
    pub expired_grace_days: u32,
}

impl Default for KeysetParams {
    fn default() -> Self {
        Self {
            lifetime_days: DEFAULT_LIFETIME_DAYS,
            orders: DEFAULT_ORDERS,
            id_version: KeysetIdVersion::V2,
            output_skew_secs: DEFAULT_OUTPUT_SKEW_SECS,
            expired_grace_days: DEFAULT_EXPIRED_GRACE_DAYS,
        }
    }
}

impl KeysetParams {
    /// Refuses parameters that cannot work: no denominations, more than 64, a lifetime of zero
    /// or above ten years, a skew of a day or more.
    pub fn validate(&self) -> Result<(), CreditError> {
        if !(1..=64).contains(&self.orders) {
            return Err(CreditError::InvalidEncoding(
                "keyset orders must be between 1 and 64",
            ));
        }
        if !(1..=3650).contains(&self.lifetime_days) {
            return Err(CreditError::InvalidEncoding(
                "credit lifetime must be between 1 and 3650 days",
            ));
        }
        if self.output_skew_secs >= DAY {
            return Err(CreditError::InvalidEncoding(
                "output skew must be below one day",
            ));
        }
        Ok(())
    }

    /// Final expiry of the keyset of `day`: the start of day `day + lifetime_days`.
    pub fn final_expiry(&self, day: Day) -> UnixTime {
        day.plus(self.lifetime_days).start()
    }
}

/// A NUT-02 keyset id: `00` + 7 bytes, or `01` + 32 bytes. Lowercase hex on the wire.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeysetId {
    V1([u8; 8]),
    V2([u8; 33]),
}

impl KeysetId {
    /// The id of `keys` (compressed public keys in ascending amount order).
    pub fn from_keys<'a>(
        version: KeysetIdVersion,
        keys: impl IntoIterator<Item = &'a Point>,
        unit: &str,
        final_expiry: Option<UnixTime>,
    ) -> KeysetId {
        let mut hasher = Sha256::new();
        for key in keys {
            hasher.update(key.as_bytes());
        }
        match version {
            KeysetIdVersion::V1 => {
                let hash = hasher.finalize();
                let mut id = [0u8; 8];
                id[1..].copy_from_slice(&hash[..7]);
                KeysetId::V1(id)
            }
            KeysetIdVersion::V2 => {
                hasher.update(b"unit:");
                hasher.update(unit.to_lowercase().as_bytes());
                if let Some(expiry) = final_expiry {
                    hasher.update(b"final_expiry:");
                    hasher.update(expiry.to_string().as_bytes());
                }
                let hash = hasher.finalize();
                let mut id = [0u8; 33];
                id[0] = 0x01;
                id[1..].copy_from_slice(&hash);
                KeysetId::V2(id)
            }
        }
    }

    pub fn version(&self) -> KeysetIdVersion {
        match self {
            KeysetId::V1(_) => KeysetIdVersion::V1,
            KeysetId::V2(_) => KeysetIdVersion::V2,
        }
    }

    /// The id's bytes, version byte first.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            KeysetId::V1(b) => b,
            KeysetId::V2(b) => b,
        }
    }

    /// NUT-13 `keyset_id_int`: the first 8 bytes as a big-endian integer, mod 2^31 − 1
    /// (the hardened BIP-32 index of version `00` derivation).
    pub fn bip32_index(&self) -> u32 {
        let mut first = [0u8; 8];
        first.copy_from_slice(&self.as_bytes()[..8]);
        let index = u64::from_be_bytes(first) % ((1u64 << 31) - 1);
        // Below 2^31 - 1 by construction.
        u32::try_from(index).unwrap_or(0)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.as_bytes())
    }

    /// Parses `"00"` + 14 or `"01"` + 64 lowercase hex characters.
    pub fn from_hex(text: &str) -> Result<KeysetId, CreditError> {
        let lower = text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        let bad = CreditError::InvalidEncoding(
            "expected a keyset id: \"00\" + 14 or \"01\" + 64 lowercase hex characters",
        );
        if !lower {
            return Err(bad);
        }
        let bytes = hex::decode(text).map_err(|_| bad.clone())?;
        match (bytes.first(), bytes.len()) {
            (Some(0x00), 8) => {
                let mut id = [0u8; 8];
                id.copy_from_slice(&bytes);
                Ok(KeysetId::V1(id))
            }
            (Some(0x01), 33) => {
                let mut id = [0u8; 33];
                id.copy_from_slice(&bytes);
                Ok(KeysetId::V2(id))
            }
            _ => Err(bad),
        }
    }
}

impl fmt::Display for KeysetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for KeysetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeysetId({})", self.to_hex())
    }
}

impl FromStr for KeysetId {
    type Err = CreditError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KeysetId::from_hex(s)
    }
}

impl Serialize for KeysetId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for KeysetId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        KeysetId::from_hex(&text).map_err(serde::de::Error::custom)
    }
}

/// The operator's credit master secret: 32 bytes from which every keyset is derived. Shared by
/// all servers of one operator, kept nowhere else. Zeroized on drop, redacted in `Debug`.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MasterSecret([u8; 32]);

impl MasterSecret {
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// `k_{day,order}` (see the module documentation).
    fn key(&self, day: Day, lifetime_days: u32, order: u8) -> Result<Scalar, CreditError> {
        let hk = Hkdf::<Sha256>::new(Some(KEY_SALT), &self.0);
        let mut info = [0u8; 9];
        info[..4].copy_from_slice(&day.0.to_be_bytes());
        info[4..8].copy_from_slice(&lifetime_days.to_be_bytes());
        info[8] = order;
        let mut okm = WideBytes::default();
        hk.expand(&info, &mut okm)
            .map_err(|_| CreditError::Derivation("HKDF output length"))?;
        let k = <Scalar as ReduceNonZero<U512>>::reduce_nonzero_bytes(&okm);
        okm.zeroize();
        Ok(k)
    }
}

impl fmt::Debug for MasterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterSecret(<redacted>)")
    }
}

/// A keyset's public part in NUT-01 shape, plus its final expiry:
/// `{"id": "01…", "unit": "ucredit", "final_expiry": 1735689600, "keys": {"1": "02…", "2": "03…", …}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeysetKeys {
    #[schema(value_type = String)]
    pub id: KeysetId,
    pub unit: String,
    /// Unix seconds; tokens of this keyset are refused from then on.
    pub final_expiry: UnixTime,
    /// Amount (decimal string) → compressed public key (hex).
    #[schema(value_type = BTreeMap<String, String>)]
    pub keys: BTreeMap<Amount, Point>,
}

impl KeysetKeys {
    /// Checks what a wallet must check before using a keyset: every amount is a power of two,
    /// and the id is the one NUT-02 computes from the keys (and, for version `01`, from the
    /// unit and final expiry too, which are then vouched for by the id).
    pub fn verify_id(&self) -> Result<(), CreditError> {
        if let Some(bad) = self.keys.keys().find(|a| order_of(**a).is_none()) {
            return Err(CreditError::NotADenomination(bad.0));
        }
        let expected = KeysetId::from_keys(
            self.id.version(),
            self.keys.values(),
            &self.unit,
            Some(self.final_expiry),
        );
        if expected == self.id {
            Ok(())
        } else {
            Err(CreditError::KeysetIdMismatch)
        }
    }

    /// The public key for `amount`.
    pub fn key(&self, amount: Amount) -> Result<&Point, CreditError> {
        if order_of(amount).is_none() {
            return Err(CreditError::NotADenomination(amount.0));
        }
        self.keys
            .get(&amount)
            .ok_or(CreditError::AmountNotInKeyset {
                id: self.id,
                amount: amount.0,
            })
    }

    pub fn is_expired(&self, now: UnixTime) -> bool {
        now >= self.final_expiry
    }
}

/// One day's keyset with its private keys: what the operator signs and verifies with.
/// Private keys are zeroized on drop and never printed.
pub struct Keyset {
    id: KeysetId,
    day: Day,
    final_expiry: UnixTime,
    /// Index `i` holds the key for amount `2^i`.
    secrets: Vec<Scalar>,
    publics: Vec<Point>,
}

impl Keyset {
    /// Derives the keyset of `day` (see the module documentation).
    pub fn derive(
        master: &MasterSecret,
        day: Day,
        params: &KeysetParams,
    ) -> Result<Keyset, CreditError> {
        params.validate()?;
        let mut secrets = Vec::with_capacity(usize::from(params.orders));
        let mut publics = Vec::with_capacity(usize::from(params.orders));
        for order in 0..params.orders {
            let k = master.key(day, params.lifetime_days, order)?;
            publics.push(Point::mul_generator(&k)?);
            secrets.push(k);
        }
        let final_expiry = params.final_expiry(day);
        let id = KeysetId::from_keys(
            params.id_version,
            publics.iter(),
            CREDIT_UNIT,
            Some(final_expiry),
        );
        Ok(Keyset {
            id,
            day,
            final_expiry,
            secrets,
            publics,
        })
    }

    pub fn id(&self) -> &KeysetId {
        &self.id
    }

    pub fn day(&self) -> Day {
        self.day
    }

    /// Tokens of this keyset are refused from this unix second on.
    pub fn final_expiry(&self) -> UnixTime {
        self.final_expiry
    }

    pub fn is_expired(&self, now: UnixTime) -> bool {
        now >= self.final_expiry
    }

    /// The public keys, as published (NUT-01).
    pub fn keys(&self) -> KeysetKeys {
        KeysetKeys {
            id: self.id,
            unit: CREDIT_UNIT.to_owned(),
            final_expiry: self.final_expiry,
            keys: self
                .publics
                .iter()
                .enumerate()
                .map(|(i, p)| (Amount(1u64 << i), *p))
                .collect(),
        }
    }

    fn index(&self, amount: Amount) -> Result<usize, CreditError> {
        let order = order_of(amount).ok_or(CreditError::NotADenomination(amount.0))?;
        let i = usize::from(order);
        if i < self.secrets.len() {
            Ok(i)
        } else {
            Err(CreditError::AmountNotInKeyset {
                id: self.id,
                amount: amount.0,
            })
        }
    }

    /// The public key for `amount`.
    pub fn public_key(&self, amount: Amount) -> Result<&Point, CreditError> {
        let i = self.index(amount)?;
        Ok(&self.publics[i])
    }

    /// Signs one blinded output: `C' = k·B'` with its DLEQ proof. Checks only that the
    /// output names this keyset and a denomination it has; the request-level checks are in
    /// [`super::swap`].
    pub fn sign(&self, output: &BlindedMessage) -> Result<BlindSignature, CreditError> {
        if output.id != self.id {
            return Err(CreditError::SignatureMismatch(
                "output is for another keyset",
            ));
        }
        let i = self.index(output.amount)?;
        let k = &self.secrets[i];
        let blind_signature = super::dhke::sign(k, &output.blinded_secret)?;
        let proof = dleq::prove(
            k,
            &self.publics[i],
            &output.blinded_secret,
            &blind_signature,
        )?;
        Ok(BlindSignature {
            amount: output.amount,
            id: self.id,
            blind_signature,
            dleq: proof,
        })
    }

    /// Verifies a token of this keyset (`C == k·hash_to_curve(secret)`) and returns its `Y`
    /// for the spent registry. Expiry is not checked here. A wrong signature is
    /// [`CreditError::BadSignature`] with index 0 (the caller knows the token's position).
    pub fn verify(&self, proof: &Proof) -> Result<Point, CreditError> {
        if proof.id != self.id {
            return Err(CreditError::SignatureMismatch(
                "token is from another keyset",
            ));
        }
        let i = self.index(proof.amount)?;
        let y = proof.y()?;
        if super::dhke::verify_point(&self.secrets[i], &y, &proof.signature) {
            Ok(y)
        } else {
            Err(CreditError::BadSignature { index: 0 })
        }
    }
}

impl Drop for Keyset {
    fn drop(&mut self) {
        for k in &mut self.secrets {
            k.zeroize();
        }
    }
}

impl fmt::Debug for Keyset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyset")
            .field("id", &self.id)
            .field("day", &self.day)
            .field("final_expiry", &self.final_expiry)
            .field("orders", &self.secrets.len())
            .field("secrets", &"<redacted>")
            .finish()
    }
}

/// The keysets an operator needs at `now`: every day whose tokens are still valid, today's
/// (and tomorrow's, for clock skew) for new outputs, and a few expired days so that their
/// tokens are refused as expired rather than unknown.
pub struct KeyRing {
    master: MasterSecret,
    params: KeysetParams,
    by_id: HashMap<KeysetId, Keyset>,
    by_day: BTreeMap<Day, KeysetId>,
}

impl KeyRing {
    /// Derives the ring for `now`. Costs one scalar multiplication per key: about
    /// `(lifetime + grace + 2) × orders` of them (3,920 by default).
    pub fn new(
        master: MasterSecret,
        params: KeysetParams,
        now: UnixTime,
    ) -> Result<KeyRing, CreditError> {
        params.validate()?;
        let mut ring = KeyRing {
            master,
            params,
            by_id: HashMap::new(),
            by_day: BTreeMap::new(),
        };
        ring.refresh(now)?;
        Ok(ring)
    }

    /// The days the ring holds at `now`.
    fn window(&self, now: UnixTime) -> (Day, Day) {
        let today = Day::of(now);
        let oldest_live = today.minus(self.params.lifetime_days.saturating_sub(1));
        (
            oldest_live.minus(self.params.expired_grace_days),
            today.plus(1),
        )
    }

    /// Brings the ring to `now`: derives days that entered the window, forgets days that
    /// left it. Call it when the day changes (it is cheap when nothing changed).
    pub fn refresh(&mut self, now: UnixTime) -> Result<(), CreditError> {
        let (first, last) = self.window(now);
        let stale: Vec<Day> = self
            .by_day
            .keys()
            .filter(|d| **d < first || **d > last)
            .copied()
            .collect();
        for day in stale {
            if let Some(id) = self.by_day.remove(&day) {
                self.by_id.remove(&id);
            }
        }
        for d in first.0..=last.0 {
            let day = Day(d);
            if !self.by_day.contains_key(&day) {
                let keyset = Keyset::derive(&self.master, day, &self.params)?;
                self.by_day.insert(day, keyset.id);
                self.by_id.insert(keyset.id, keyset);
            }
        }
        Ok(())
    }

    pub fn params(&self) -> &KeysetParams {
        &self.params
    }

    pub fn get(&self, id: &KeysetId) -> Option<&Keyset> {
        self.by_id.get(id)
    }

    pub fn for_day(&self, day: Day) -> Option<&Keyset> {
        self.by_day.get(&day).and_then(|id| self.by_id.get(id))
    }

    /// The keyset new outputs should use at `now` (the day of `now`).
    pub fn current(&self, now: UnixTime) -> Result<&Keyset, CreditError> {
        self.for_day(Day::of(now))
            .ok_or(CreditError::Derivation("key ring not refreshed for today"))
    }

    /// May outputs use `keyset` at `now`? Only the keyset of the day of `now`, or of the day of
    /// `now ± output_skew_secs` (servers' and wallets' clocks differ around midnight).
    pub fn accepts_outputs(&self, keyset: &Keyset, now: UnixTime) -> bool {
        let skew = self.params.output_skew_secs;
        keyset.day == Day::of(now)
            || keyset.day == Day::of(now.saturating_sub(skew))
            || keyset.day == Day::of(now.saturating_add(skew))
    }

    /// Keysets whose tokens are accepted at `now`, oldest first (for `GET /v1/keysets`).
    pub fn live(&self, now: UnixTime) -> impl Iterator<Item = &Keyset> {
        let today = Day::of(now);
        self.by_day
            .iter()
            .filter(move |(day, _)| **day <= today)
            .filter_map(|(_, id)| self.by_id.get(id))
            .filter(move |k| !k.is_expired(now))
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("params", &self.params)
            .field("days", &self.by_day.len())
            .field("master", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde::Deserialize;

    const NUT02: &str = include_str!("testdata/nut02.json");

    #[derive(Deserialize)]
    struct IdVector {
        id: String,
        unit: Option<String>,
        final_expiry: Option<u64>,
        keys: BTreeMap<u64, String>,
    }

    fn points(keys: &BTreeMap<u64, String>) -> Vec<Point> {
        keys.values().map(|k| Point::from_hex(k).unwrap()).collect()
    }

    #[test]
    fn credits_nut02_keyset_id_vectors() {
        let v: BTreeMap<String, Vec<IdVector>> = serde_json::from_str(NUT02).unwrap();
        assert_eq!(v["v1"].len(), 2);
        for t in &v["v1"] {
            let id = KeysetId::from_keys(KeysetIdVersion::V1, &points(&t.keys), "sat", None);
            assert_eq!(id.to_hex(), t.id);
            assert_eq!(KeysetId::from_hex(&t.id).unwrap(), id);
        }
        assert_eq!(v["v2"].len(), 3);
        for t in &v["v2"] {
            let id = KeysetId::from_keys(
                KeysetIdVersion::V2,
                &points(&t.keys),
                t.unit.as_deref().unwrap(),
                t.final_expiry,
            );
            assert_eq!(id.to_hex(), t.id);
            assert_eq!(KeysetId::from_hex(&t.id).unwrap(), id);
        }
        // The 64-key vector sorts amounts numerically, not as strings.
        assert_eq!(v["v1"][1].keys.len(), 64);
    }

    #[test]
    fn credits_nut13_keyset_id_integer_vectors() {
        let v1 = KeysetId::from_hex("009a1f293253e41e").unwrap();
        assert_eq!(v1.bip32_index(), 864559728);
        let v2 = KeysetId::from_hex(
            "01adc013fa9d85171586660abab27579888611659d357bc86bc09cb26eee8bc035",
        )
        .unwrap();
        assert_eq!(v2.bip32_index(), 2113471806);
    }

    #[test]
    fn credits_keyset_id_parsing_is_strict() {
        for bad in [
            "",
            "009a1f293253e41",
            "009A1F293253E41E",
            "029a1f293253e41e",
            "019a1f293253e41e",
            "009a1f293253e41e00",
            "L3zxxRB/I8uE",
        ] {
            assert!(KeysetId::from_hex(bad).is_err(), "{bad}");
        }
    }

    fn master() -> MasterSecret {
        MasterSecret::from_bytes([7u8; 32])
    }

    #[test]
    fn credits_keyset_derivation_is_deterministic_and_day_bound() {
        let params = KeysetParams::default();
        let day = Day(20_000);
        let a = Keyset::derive(&master(), day, &params).unwrap();
        let b = Keyset::derive(&master(), day, &params).unwrap();
        assert_eq!(a.keys(), b.keys());
        assert_eq!(a.keys().keys.len(), 40);
        assert_eq!(a.final_expiry(), (20_000 + 90) * DAY);
        a.keys().verify_id().unwrap();
        assert_eq!(a.id().version(), KeysetIdVersion::V2);
        // Another day, another master secret, another lifetime: all keys differ.
        let next = Keyset::derive(&master(), day.plus(1), &params).unwrap();
        let other = Keyset::derive(&MasterSecret::from_bytes([8u8; 32]), day, &params).unwrap();
        let longer = KeysetParams {
            lifetime_days: 91,
            ..params.clone()
        };
        let longer = Keyset::derive(&master(), day, &longer).unwrap();
        for k in [&next, &other, &longer] {
            assert_ne!(k.id(), a.id());
            for (amount, key) in &a.keys().keys {
                assert_ne!(k.keys().keys[amount], *key);
            }
        }
        let v1 = KeysetParams {
            id_version: KeysetIdVersion::V1,
            ..params
        };
        let v1 = Keyset::derive(&master(), day, &v1).unwrap();
        assert_eq!(v1.id().version(), KeysetIdVersion::V1);
        assert_eq!(v1.keys().keys, a.keys().keys);
        v1.keys().verify_id().unwrap();
        let debug = format!("{a:?} {:?}", master());
        assert!(debug.contains("<redacted>"));
    }

    #[test]
    fn credits_keyset_keys_json_and_verify_id() {
        let ks = Keyset::derive(&master(), Day(20_000), &KeysetParams::default()).unwrap();
        let keys = ks.keys();
        let json = serde_json::to_value(&keys).unwrap();
        assert_eq!(json["unit"], "ucredit");
        assert!(json["keys"]["1"].is_string());
        assert!(json["keys"]["549755813888"].is_string());
        let back: KeysetKeys = serde_json::from_value(json).unwrap();
        assert_eq!(back, keys);
        back.verify_id().unwrap();

        // A changed expiry, unit or key no longer matches the id.
        let mut later = keys.clone();
        later.final_expiry += DAY;
        assert_eq!(later.verify_id(), Err(CreditError::KeysetIdMismatch));
        let mut unit = keys.clone();
        unit.unit = "sat".into();
        assert_eq!(unit.verify_id(), Err(CreditError::KeysetIdMismatch));
        let mut swapped = keys.clone();
        let k1 = swapped.keys[&Amount(1)];
        let k2 = swapped.keys[&Amount(2)];
        swapped.keys.insert(Amount(1), k2);
        swapped.keys.insert(Amount(2), k1);
        assert_eq!(swapped.verify_id(), Err(CreditError::KeysetIdMismatch));
        let mut odd = keys;
        odd.keys.insert(Amount(3), k1);
        assert_eq!(odd.verify_id(), Err(CreditError::NotADenomination(3)));
    }

    #[test]
    fn credits_key_ring_window_and_output_day() {
        let params = KeysetParams {
            lifetime_days: 3,
            expired_grace_days: 1,
            orders: 4,
            ..KeysetParams::default()
        };
        let now = 20_000 * DAY + 1_000;
        let mut ring = KeyRing::new(master(), params.clone(), now).unwrap();
        // Live: days 19,998..=20,000; expired grace: 19,997; tomorrow: 20,001.
        assert_eq!(ring.by_day.len(), 5);
        let today = ring.current(now).unwrap();
        assert_eq!(today.day(), Day(20_000));
        assert!(ring.accepts_outputs(today, now));
        let yesterday = ring.for_day(Day(19_999)).unwrap();
        assert!(!ring.accepts_outputs(yesterday, now));
        // Just after midnight, yesterday's keyset is still accepted for outputs.
        assert!(ring.accepts_outputs(yesterday, 20_000 * DAY + 10));
        let live: Vec<Day> = ring.live(now).map(|k| k.day()).collect();
        assert_eq!(live, vec![Day(19_998), Day(19_999), Day(20_000)]);
        assert!(ring.for_day(Day(19_997)).unwrap().is_expired(now));

        ring.refresh(now + 2 * DAY).unwrap();
        assert!(ring.for_day(Day(19_998)).is_none());
        assert!(ring.for_day(Day(20_003)).is_some());
        assert_eq!(ring.by_day.len(), ring.by_id.len());
        // Derivation from the master secret is what every server of the operator shares.
        let other_server = KeyRing::new(master(), params, now + 2 * DAY).unwrap();
        assert_eq!(
            other_server.current(now + 2 * DAY).unwrap().keys(),
            ring.current(now + 2 * DAY).unwrap().keys()
        );
    }

    #[test]
    fn credits_keyset_params_validation() {
        assert!(KeysetParams::default().validate().is_ok());
        for bad in [
            KeysetParams {
                orders: 0,
                ..KeysetParams::default()
            },
            KeysetParams {
                orders: 65,
                ..KeysetParams::default()
            },
            KeysetParams {
                lifetime_days: 0,
                ..KeysetParams::default()
            },
            KeysetParams {
                output_skew_secs: DAY,
                ..KeysetParams::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
