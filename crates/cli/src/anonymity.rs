//! How `smpx` shows anonymity sets: a voucher's set for `wallet list` and before a v0.2
//! redemption, the crowd of an issuer key before `wallet buy`, the v0.1 warning. The sets
//! and the decision are the wallet library's (`Wallet::anonymity`, `Wallet::buy_telling`, `Wallet::key_crowd`,
//! `smpx_core::rules::anonymity`); this only words them.

use smpx_core::rules::anonymity::{MmrSet, DEFAULT_MIN, SMALL_KEY_CROWD};
use smpx_wallet::{AnonymitySet, KeyCrowd};

/// Printed (on stderr) before a v0.1 redemption.
pub const V1_WARNING: &str = "warning: protocol 1 shows the coordinator which voucher is redeemed, so it can link this redemption to the voucher's publication (anonymity set: 1); protocol 2 (the default) does not";

fn mmr(m: &MmrSet) -> String {
    let bound = if m.exact { "" } else { "at most " };
    format!("{bound}{} in MMR {}", m.size, m.mmr_id)
}

/// One line: the chosen MMR's set, and the other MMR's.
pub fn describe(set: &AnonymitySet) -> String {
    match &set.other {
        Some(o) => format!("{} (other MMR: {})", mmr(&set.chosen), mmr(o)),
        None => mmr(&set.chosen),
    }
}

/// The `wallet list` column: the set's size (`≤n` for an upper bound), `?` when it could not
/// be learnt, empty for vouchers that are not published.
pub fn cell(set: Option<&Result<AnonymitySet, String>>) -> String {
    match set {
        None => String::new(),
        Some(Ok(s)) if s.chosen.exact => s.chosen.size.to_string(),
        Some(Ok(s)) => format!("≤{}", s.chosen.size),
        Some(Err(_)) => "?".into(),
    }
}

/// Before buying: how many vouchers share the key, and a warning when that is few.
pub fn crowd(c: &KeyCrowd) -> String {
    let mut line = format!(
        "{} voucher(s) of {} credits have been published under issuer {:?}'s current key",
        c.published_count, c.denomination, c.issuer_id
    );
    if c.published_count < SMALL_KEY_CROWD {
        line.push_str(&format!(
            "\nwarning: that is fewer than {SMALL_KEY_CROWD}: the issuer's sales and the coordinator's publications under this key are few enough to be linked"
        ));
    }
    line
}

/// What the demo says before it redeems among a handful of vouchers.
pub fn demo_acceptance(set: &AnonymitySet) -> String {
    format!(
        "anonymity set: {}; the demo accepts an anonymity set of {}; a real wallet refuses below {DEFAULT_MIN}",
        describe(set),
        set.chosen.size
    )
}
