//! How vouchers are paid for.
//!
//! A [`PaymentBackend`] turns the payment a wallet presents into what the sale transaction
//! consumes; the consumption itself happens inside the store's sale transaction, so a payment
//! is used up if and only if the sale is recorded. Two backends:
//!
//! * [`TopupCodes`]: single-use prepaid codes the issuer's admin mints in batches for shops to
//!   sell, like phone top-up cards. Only a code's SHA-256 is stored.
//! * [`DevnetPayments`]: accepts any purchase without payment, for the devnet; every answer
//!   says so. Enabled only by the issuer's `devnet_payments` setting.

use rand::Rng;
use sha2::{Digest, Sha256};
use smpx_core::api::{Payment, PaymentReceipt};
use smpx_core::ErrorCode;
use smpx_http::ApiError;
use smpx_store::issuer::SalePayment;

/// One way of paying.
pub trait PaymentBackend: Send + Sync {
    /// The `method` tag this backend accepts.
    fn method(&self) -> &'static str;
    /// What the sale transaction must consume for `payment`.
    fn prepare(&self, payment: &Payment, denomination: u64) -> Result<SalePayment, ApiError>;
    /// What the buyer is told about the payment.
    fn receipt(&self) -> PaymentReceipt;
}

/// Prepaid single-use top-up codes.
pub struct TopupCodes;

/// Characters of a top-up code: no 0/O, 1/I/L, so codes survive being read aloud or retyped.
const CODE_ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";
/// 20 characters of 31 symbols ≈ 99 bits: unguessable.
const CODE_LEN: usize = 20;

impl TopupCodes {
    /// A fresh code, `SMPX-XXXXX-XXXXX-XXXXX-XXXXX`.
    pub fn generate_code() -> String {
        let mut rng = rand::rngs::OsRng;
        let chars: Vec<char> = (0..CODE_LEN)
            .map(|_| CODE_ALPHABET[rng.gen_range(0..CODE_ALPHABET.len())] as char)
            .collect();
        let groups: Vec<String> = chars.chunks(5).map(|c| c.iter().collect()).collect();
        format!("SMPX-{}", groups.join("-"))
    }

    /// Digest of a code as typed: case, spaces and dashes don't matter.
    pub fn code_hash(code: &str) -> [u8; 32] {
        let normalized: String = code
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_uppercase())
            .collect();
        let normalized = normalized.strip_prefix("SMPX").unwrap_or(&normalized);
        Sha256::digest(normalized.as_bytes()).into()
    }
}

impl PaymentBackend for TopupCodes {
    fn method(&self) -> &'static str {
        "topup_code"
    }

    fn prepare(&self, payment: &Payment, _denomination: u64) -> Result<SalePayment, ApiError> {
        match payment {
            Payment::TopupCode { code } if !code.trim().is_empty() => Ok(SalePayment::TopupCode {
                code_hash: Self::code_hash(code),
            }),
            _ => Err(ApiError::new(
                ErrorCode::PaymentRejected,
                "a top-up code is required",
            )),
        }
    }

    fn receipt(&self) -> PaymentReceipt {
        PaymentReceipt {
            method: self.method().into(),
            note: "paid with a prepaid top-up code; the code is now used".into(),
        }
    }
}

/// The devnet backend: no money changes hands.
pub struct DevnetPayments;

impl PaymentBackend for DevnetPayments {
    fn method(&self) -> &'static str {
        "devnet"
    }

    fn prepare(&self, _payment: &Payment, _denomination: u64) -> Result<SalePayment, ApiError> {
        Ok(SalePayment::Devnet)
    }

    fn receipt(&self) -> PaymentReceipt {
        PaymentReceipt {
            method: self.method().into(),
            note: "DEVNET: accepted without payment; this voucher has no real value".into(),
        }
    }
}

/// The backends an issuer has enabled.
pub struct Payments {
    backends: Vec<Box<dyn PaymentBackend>>,
}

impl Payments {
    pub fn new(devnet: bool) -> Payments {
        let mut backends: Vec<Box<dyn PaymentBackend>> = vec![Box::new(TopupCodes)];
        if devnet {
            backends.push(Box::new(DevnetPayments));
        }
        Payments { backends }
    }

    pub fn methods(&self) -> Vec<String> {
        self.backends
            .iter()
            .map(|b| b.method().to_owned())
            .collect()
    }

    /// The backend for `payment`.
    pub fn backend(&self, payment: &Payment) -> Result<&dyn PaymentBackend, ApiError> {
        let method = match payment {
            Payment::TopupCode { .. } => "topup_code",
            Payment::Devnet => "devnet",
        };
        self.backends
            .iter()
            .find(|b| b.method() == method)
            .map(|b| b.as_ref())
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::PaymentMethodUnavailable,
                    format!("payment method {method:?} is not enabled at this issuer"),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_well_formed_and_hash_forgivingly() {
        let c = TopupCodes::generate_code();
        assert_eq!(c.len(), "SMPX-".len() + 20 + 3);
        assert_ne!(c, TopupCodes::generate_code());
        let sloppy = c.to_lowercase().replace('-', " ");
        assert_eq!(TopupCodes::code_hash(&c), TopupCodes::code_hash(&sloppy));
        assert_ne!(
            TopupCodes::code_hash(&c),
            TopupCodes::code_hash(&TopupCodes::generate_code())
        );
    }

    #[test]
    fn devnet_method_only_when_enabled() {
        assert!(Payments::new(false).backend(&Payment::Devnet).is_err());
        assert!(Payments::new(true).backend(&Payment::Devnet).is_ok());
        let p = Payments::new(false);
        assert!(p.backend(&Payment::TopupCode { code: "x".into() }).is_ok());
    }
}
