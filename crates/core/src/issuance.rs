//! What an issuer signs. The RSA blind signature is over a domain-separated encoding of the
//! commitment, so an issuer key can never be used to sign anything but a voucher of smpx.

use crate::crypto::voucher::Commitment;

const DOMAIN: &[u8] = b"smpx/voucher/v1:";

/// The message an issuer (blindly) signs for the voucher with commitment `c`.
pub fn voucher_message(c: &Commitment) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + 32);
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(&c.0 .0);
    m
}
