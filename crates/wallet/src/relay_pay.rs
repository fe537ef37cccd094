//! Paying a relay for capacity with operator credits.
//!
//! A relay sells capacity (a queue's larger quota for 30 days, a channel's prepaid balance)
//! for the credits of the operator it is paid through, which its INFO names. The wallet
//! builds the same spend as [`Wallet::spend_credits`] — tokens in, blinded change out, the
//! difference is the payment, recorded before anything is sent — and hands the request to
//! the relay's PAY instead of the operator's `POST /v1/swap`. The relay provisions the
//! capacity, has the operator's registry take the tokens, and passes back the operator's
//! answer: change signatures (checked by DLEQ like any change), or the refusal, or
//! "pending" (the spend is then collected from the operator with
//! [`Wallet::collect_credits`], as any lost answer).

use crate::credits::CreditSpend;
use crate::error::WalletError;
use crate::wallet::Wallet;
use ed25519_dalek::SigningKey;
use smpx_core::{Amount, ErrorCode};
use smpx_http_client::ClientError;
use smpx_relay_client::{Client, ClientError as RelayClientError};
use smpx_relay_protocol::capacity::{Bought, PayAnswer};
use smpx_relay_protocol::EntityId;
use std::sync::{Arc, Mutex};

/// What [`Wallet::pay_relay`] did.
#[derive(Clone, Debug)]
pub struct RelayPayment {
    /// The credit spend (paid, change, balance left at the operator).
    pub spend: CreditSpend,
    /// What the relay provisioned.
    pub bought: Bought,
}

fn api_error(status: u16, code: ErrorCode, message: String) -> ClientError {
    ClientError::Api {
        url: "relay PAY".into(),
        status,
        code,
        message,
    }
}

impl Wallet {
    /// Pays the relay behind `client` for capacity of `entity` — a queue (its recipient id,
    /// `key` its recipient key) or a channel (its owner id and key). `amount`: credit units
    /// to pay; `None` pays the relay's price of one paid queue for 30 days.
    ///
    /// Errors: [`WalletError::RelayPayment`] when the relay takes no payments or refuses
    /// before asking the operator (nothing spent); [`WalletError::InsufficientCredits`];
    /// [`WalletError::CreditsAlreadySpent`]; [`WalletError::SpendPending`] (the capacity
    /// stays provisioned while the operator decides; collect the change later).
    pub async fn pay_relay(
        &self,
        client: &Client,
        entity: &EntityId,
        key: &SigningKey,
        amount: Option<Amount>,
    ) -> Result<RelayPayment, WalletError> {
        let info = client
            .info()
            .await
            .map_err(|e| WalletError::RelayPayment(format!("asking the relay its prices: {e}")))?;
        let operator = info.operator_url.ok_or_else(|| {
            WalletError::RelayPayment("the relay takes no payments (free tier only)".into())
        })?;
        let amount = amount.unwrap_or(Amount(info.units_per_queue_month));
        let bought: Arc<Mutex<Option<Bought>>> = Arc::default();
        let slot = bought.clone();
        let spend = self
            .spend_credits_via(&operator, amount, |_, request| async move {
                match client.pay(entity, key, &request).await {
                    Ok(PayAnswer::Paid {
                        signatures, bought, ..
                    }) => {
                        *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(bought);
                        Ok(signatures)
                    }
                    Ok(PayAnswer::Refused {
                        status,
                        code,
                        message,
                        ..
                    }) => Err(api_error(status, code, message)),
                    Ok(PayAnswer::Pending { message, .. }) => {
                        Err(api_error(503, ErrorCode::SwapPending, message))
                    }
                    // Refused by the relay itself: the operator never saw the request.
                    Err(RelayClientError::Relay(code)) => Err(api_error(
                        402,
                        ErrorCode::PaymentRejected,
                        format!("the relay refused the payment: {code}"),
                    )),
                    // Sent or not, unknown: the spend stays pending and is collected.
                    Err(e) => Err(ClientError::Transport {
                        url: "relay PAY".into(),
                        message: e.to_string(),
                    }),
                }
            })
            .await?;
        let bought = bought
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or_else(|| {
                WalletError::RelayPayment("the relay did not say what it sold".into())
            })?;
        Ok(RelayPayment { spend, bought })
    }
}
