//! Paid capacity: INFO, PAY, and what a payment buys.
//!
//! Capacity is paid with the operator's credits (DESIGN.md §2 "Operator credits"): PAY
//! carries a NUT-03 swap request — tokens in, blinded change out — whose inputs minus outputs
//! is the payment. The relay
//!
//! 1. checks the shape and the price (cheap, no registry),
//! 2. **provisions at once** (a queue's paid quota, or a channel's balance),
//! 3. has the operator's spent registry take the tokens ([`Redeemer`]: `POST /v1/swap` at the
//!    operator's credit service, which every server of that operator shares),
//! 4. on refusal **cancels** what it provisioned; on success counts the credits earned and
//!    returns the change signatures (checked by the wallet's DLEQ verification).
//!
//! If the operator cannot be reached or says the spend is pending, the provision stays and a
//! background task asks `GET /v1/swap/{id}` until the spend is done (kept) or cancelled
//! (provision cancelled); the wallet collects its change from the operator the same way.

use super::conn::{internal, Ctx};
use super::Shared;
use crate::store::Capacity;
use smpx_core::api::{SwapId, SwapState, SwapStatus};
use smpx_core::credits::{BlindSignature, SwapRequest, SwapResponse};
use smpx_http_client::{ApiClient, ClientError};
use smpx_relay_protocol::capacity::{Bought, PayAnswer, RelayInfo};
use smpx_relay_protocol::command::Response;
use smpx_relay_protocol::{CmdError, EntityId, ErrorCode, Transmission};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// What capacity costs and buys on this relay. Prices are in credit units (1 credit =
/// 1,000,000 units).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pricing {
    /// A paid queue's quota (undelivered messages).
    pub paid_quota: u32,
    /// Units per paid queue for 30 days.
    pub units_per_queue_month: u64,
    /// Active receivers a channel gets free.
    pub free_active_receivers: u64,
    /// Storage a channel gets free, bytes.
    pub free_storage_bytes: u64,
    /// Units per active receiver beyond the free ones, per 30 days.
    pub units_per_receiver_month: u64,
    /// Units per GB (10^9 bytes) held beyond the free storage, per 30 days.
    pub units_per_gb_month: u64,
    /// Members inactive this long are not counted, seconds.
    pub inactive_after_secs: u64,
    /// How often a channel's usage is measured and charged (at most), seconds.
    pub billing_interval_secs: u64,
}

impl Default for Pricing {
    fn default() -> Self {
        Self {
            paid_quota: 10_000,
            units_per_queue_month: 10_000,
            free_active_receivers: 1_000,
            free_storage_bytes: 500_000_000,
            units_per_receiver_month: 1_000,
            units_per_gb_month: 250_000,
            inactive_after_secs: 14 * 86_400,
            billing_interval_secs: 3_600,
        }
    }
}

impl Pricing {
    /// A channel's price per 30 days, in units, for what it uses now.
    pub fn channel_monthly_units(&self, active_receivers: u64, stored_bytes: u64) -> u64 {
        let receivers = active_receivers.saturating_sub(self.free_active_receivers);
        let extra = u128::from(stored_bytes.saturating_sub(self.free_storage_bytes));
        let storage = extra * u128::from(self.units_per_gb_month) / 1_000_000_000;
        receivers
            .saturating_mul(self.units_per_receiver_month)
            .saturating_add(u64::try_from(storage).unwrap_or(u64::MAX))
    }
}

/// Seconds in the 30-day month prices are quoted for.
pub const MONTH_SECS: u64 = 30 * 86_400;

/// What the operator's spent registry said about a spend.
#[derive(Clone, Debug)]
pub enum RedeemOutcome {
    /// The tokens are spent; here is the change.
    Spent { signatures: Vec<BlindSignature> },
    /// Refused before anything was taken, the tokens were spent already, or the spend was
    /// cancelled: nothing is paid. The operator's answer, passed on to the wallet.
    Refused {
        status: u16,
        code: smpx_core::ErrorCode,
        message: String,
    },
    /// Not known yet: the operator could not be reached, or says the spend is pending.
    Pending { message: String },
    /// `status` only: the operator never saw this spend.
    Unknown,
}

/// The operator's spent registry, as the relay reaches it.
#[async_trait::async_trait]
pub trait Redeemer: Send + Sync + std::fmt::Debug + 'static {
    /// The operator's credit service, for clients (INFO): where they get keys and collect
    /// change.
    fn operator_url(&self) -> &str;
    /// `POST /v1/swap`.
    async fn swap(&self, request: &SwapRequest) -> RedeemOutcome;
    /// `GET /v1/swap/{id}`.
    async fn status(&self, id: &SwapId) -> RedeemOutcome;
}

/// [`Redeemer`] over HTTP: the operator's credit service (`smpx operator`'s `/v1`).
#[derive(Clone, Debug)]
pub struct OperatorRedeemer {
    api: ApiClient,
}

impl OperatorRedeemer {
    pub fn new(operator_url: &str) -> Self {
        Self {
            api: ApiClient::new(operator_url),
        }
    }
}

fn outcome_of_error(e: ClientError) -> RedeemOutcome {
    use smpx_core::ErrorCode as E;
    match e {
        ClientError::Api {
            status,
            code,
            message,
            ..
        } => match code {
            E::SwapPending | E::Internal | E::UpstreamUnavailable => {
                RedeemOutcome::Pending { message }
            }
            code => RedeemOutcome::Refused {
                status,
                code,
                message,
            },
        },
        e => RedeemOutcome::Pending {
            message: e.to_string(),
        },
    }
}

#[async_trait::async_trait]
impl Redeemer for OperatorRedeemer {
    fn operator_url(&self) -> &str {
        self.api.base_url()
    }

    async fn swap(&self, request: &SwapRequest) -> RedeemOutcome {
        match self.api.post::<_, SwapResponse>("/v1/swap", request).await {
            // The identical request was paid before — to this relay for another queue, or to
            // another of the operator's servers: that payment bought something already.
            Ok(r) if r.replayed => RedeemOutcome::Refused {
                status: 409,
                code: smpx_core::ErrorCode::TokenSpent,
                message: "these credits already paid for something else".into(),
            },
            Ok(r) => RedeemOutcome::Spent {
                signatures: r.signatures,
            },
            Err(e) => outcome_of_error(e),
        }
    }

    async fn status(&self, id: &SwapId) -> RedeemOutcome {
        let path = format!("/v1/swap/{}", id.to_hex());
        match self.api.get::<SwapStatus>(&path).await {
            Ok(s) => match (s.state, s.signatures) {
                (SwapState::Done, Some(signatures)) => RedeemOutcome::Spent { signatures },
                (SwapState::Cancelled, _) => RedeemOutcome::Refused {
                    status: 409,
                    code: smpx_core::ErrorCode::SwapCancelled,
                    message: "the operator cancelled the spend".into(),
                },
                _ => RedeemOutcome::Pending {
                    message: "the operator has not finished the spend".into(),
                },
            },
            Err(e) if e.code() == Some(smpx_core::ErrorCode::UnknownSwap) => RedeemOutcome::Unknown,
            Err(e) => outcome_of_error(e),
        }
    }
}

/// What a payment provisioned, so that it can be cancelled.
#[derive(Clone, Copy, Debug)]
enum Provision {
    /// `periods` × 30 days of paid quota on the queue.
    Queue { rid: EntityId, periods: u64 },
    /// `units` added to the channel's balance.
    Channel { owner: EntityId, units: u64 },
}

/// How long a relay keeps asking the operator about a pending spend before it gives up
/// (and keeps the provision: the operator resolves pending spends itself, usually to done).
const RESOLVE_FOR: Duration = Duration::from_secs(3_600);

fn sum(amounts: impl Iterator<Item = u64>) -> Option<u64> {
    amounts.into_iter().try_fold(0u64, |a, b| a.checked_add(b))
}

impl Shared {
    /// One PAY, cancellation or channel bill at a time per queue or channel: each reads and
    /// writes the capacity or the balance.
    pub(super) async fn pay_lock(&self, entity: EntityId) -> tokio::sync::OwnedMutexGuard<()> {
        let m = {
            let mut locks = self.pay_locks.lock().unwrap_or_else(|e| e.into_inner());
            locks.retain(|_, l| Arc::strong_count(l) > 1);
            locks.entry(entity).or_default().clone()
        };
        m.lock_owned().await
    }

    async fn provision(&self, p: Provision) -> Result<Bought, ErrorCode> {
        let store = &self.store;
        match p {
            Provision::Queue { rid, periods } => {
                let old = store
                    .capacity(&rid)
                    .await
                    .map_err(internal)?
                    .ok_or(ErrorCode::Auth)?;
                let from = old.paid_until.max(self.now());
                let new = Capacity {
                    quota: old.quota.max(self.config.pricing.paid_quota),
                    paid_until: from.saturating_add(periods.saturating_mul(MONTH_SECS)),
                };
                store
                    .set_capacity(&rid, new)
                    .await
                    .map_err(internal)?
                    .ok_or(ErrorCode::Auth)?;
                Ok(Bought::Queue {
                    quota: new.quota,
                    paid_until: new.paid_until,
                })
            }
            Provision::Channel { owner, units } => {
                let ch = store
                    .channel_by_owner(&owner)
                    .await
                    .map_err(internal)?
                    .ok_or(ErrorCode::Auth)?;
                let balance = store
                    .charge_channel(&owner, units, 0, ch.billed_until)
                    .await
                    .map_err(internal)?
                    .ok_or(ErrorCode::Auth)?;
                Ok(Bought::Channel {
                    balance_units: balance,
                })
            }
        }
    }

    /// Takes back what [`Shared::provision`] gave (the payment was refused).
    async fn cancel(&self, p: Provision) -> Result<(), crate::store::StoreError> {
        let store = &self.store;
        match p {
            Provision::Queue { rid, periods } => {
                let Some(cur) = store.capacity(&rid).await? else {
                    return Ok(()); // deleted meanwhile
                };
                let paid_until = cur
                    .paid_until
                    .saturating_sub(periods.saturating_mul(MONTH_SECS));
                let new = if paid_until <= self.now() {
                    Capacity {
                        quota: self.config.quota,
                        paid_until: 0,
                    }
                } else {
                    Capacity {
                        quota: cur.quota,
                        paid_until,
                    }
                };
                store.set_capacity(&rid, new).await?;
            }
            Provision::Channel { owner, units } => {
                if let Some(ch) = store.channel_by_owner(&owner).await? {
                    store
                        .charge_channel(&owner, 0, units, ch.billed_until)
                        .await?;
                }
            }
        }
        Ok(())
    }

    async fn settled(
        self: &Arc<Self>,
        p: Provision,
        entity: EntityId,
        paid: u64,
        outcome: &RedeemOutcome,
    ) {
        match outcome {
            RedeemOutcome::Spent { .. } => {
                self.stats
                    .credits_earned_units
                    .fetch_add(paid, Ordering::Relaxed);
            }
            RedeemOutcome::Refused { .. } => {
                self.stats.payments_refused.fetch_add(1, Ordering::Relaxed);
                let _guard = self.pay_lock(entity).await;
                if let Err(e) = self.cancel(p).await {
                    tracing::error!(error = %e, "could not cancel capacity whose payment was refused");
                }
            }
            RedeemOutcome::Pending { .. } | RedeemOutcome::Unknown => {}
        }
    }
}

/// Asks the operator about a pending spend until it is decided, then keeps or cancels what
/// was provisioned. A spend the operator never saw is sent again (the identical request is
/// the same spend, never a second payment).
async fn resolve_later(
    shared: Arc<Shared>,
    redeemer: Arc<dyn Redeemer>,
    request: SwapRequest,
    id: SwapId,
    p: Provision,
    entity: EntityId,
    paid: u64,
) {
    let started = tokio::time::Instant::now();
    let mut wait = Duration::from_millis(500);
    while started.elapsed() < RESOLVE_FOR {
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(60));
        let outcome = match redeemer.status(&id).await {
            RedeemOutcome::Unknown => redeemer.swap(&request).await,
            o => o,
        };
        if matches!(
            outcome,
            RedeemOutcome::Spent { .. } | RedeemOutcome::Refused { .. }
        ) {
            shared.settled(p, entity, paid, &outcome).await;
            return;
        }
    }
    tracing::warn!(swap = %id.to_hex(), "gave up asking the operator about a pending payment; the capacity stays");
}

impl Ctx {
    /// INFO: who is paid here and what capacity costs.
    pub(super) fn info(&self) -> Result<Response, ErrorCode> {
        let info = self.shared.config.relay_info();
        let json = serde_json::to_vec(&info).map_err(|_| ErrorCode::Internal)?;
        Ok(Response::Info { json })
    }

    /// PAY: see the [module docs](self).
    pub(super) async fn pay(
        &self,
        t: &Transmission<'_>,
        entity: EntityId,
        request: Vec<u8>,
    ) -> Result<Response, ErrorCode> {
        let store = &self.shared.store;
        let q = store.by_recipient(&entity).await.map_err(internal)?;
        let ch = match q {
            Some(_) => None,
            None => store.channel_by_owner(&entity).await.map_err(internal)?,
        };
        let key = q
            .as_ref()
            .map(|q| q.recipient_key)
            .or(ch.as_ref().map(|c| c.owner_key));
        if !self.authorised(key, t) || key.is_none() {
            return Err(ErrorCode::Auth);
        }
        let syntax = ErrorCode::Cmd(CmdError::Syntax);
        let request: SwapRequest = serde_json::from_slice(&request).map_err(|_| syntax)?;
        let Some(redeemer) = self.shared.config.redeemer.clone() else {
            return Err(ErrorCode::Payment);
        };
        let inputs = sum(request.inputs.iter().map(|p| p.amount.0)).ok_or(syntax)?;
        let outputs = sum(request.outputs.iter().map(|o| o.amount.0)).ok_or(syntax)?;
        let paid = inputs.checked_sub(outputs).ok_or(ErrorCode::Payment)?;
        let id = SwapId::of_request(&request).map_err(|_| syntax)?;
        let pricing = &self.shared.config.pricing;
        let provision = match (&q, &ch) {
            (Some(q), _) => {
                let periods = paid.checked_div(pricing.units_per_queue_month).unwrap_or(0);
                if periods == 0 {
                    return Err(ErrorCode::Payment);
                }
                Provision::Queue {
                    rid: q.recipient_id,
                    periods,
                }
            }
            (None, Some(c)) => {
                if paid == 0 {
                    return Err(ErrorCode::Payment);
                }
                Provision::Channel {
                    owner: c.owner_id,
                    units: paid,
                }
            }
            (None, None) => return Err(ErrorCode::Auth),
        };
        // Provisioned at once; the registry's answer decides whether it stays.
        let bought = {
            let _guard = self.shared.pay_lock(entity).await;
            self.shared.provision(provision).await?
        };
        let outcome = redeemer.swap(&request).await;
        self.shared.settled(provision, entity, paid, &outcome).await;
        let answer = match outcome {
            RedeemOutcome::Spent { signatures } => PayAnswer::Paid {
                swap_id: id,
                paid_units: paid,
                signatures,
                bought,
            },
            RedeemOutcome::Refused {
                status,
                code,
                message,
            } => PayAnswer::Refused {
                swap_id: id,
                status,
                code,
                message,
            },
            RedeemOutcome::Pending { message } => {
                tokio::spawn(resolve_later(
                    self.shared.clone(),
                    redeemer,
                    request,
                    id,
                    provision,
                    entity,
                    paid,
                ));
                PayAnswer::Pending {
                    swap_id: id,
                    paid_units: paid,
                    message,
                    bought,
                }
            }
            RedeemOutcome::Unknown => PayAnswer::Pending {
                swap_id: id,
                paid_units: paid,
                message: "the operator did not answer".into(),
                bought,
            },
        };
        let json = serde_json::to_vec(&answer).map_err(|_| ErrorCode::Internal)?;
        Ok(Response::Paid { json })
    }
}

impl crate::ServerConfig {
    /// What INFO answers with this configuration: who is paid here and what capacity costs.
    /// Also what the node registers with a directory, so the directory lists exactly what
    /// clients are told.
    pub fn relay_info(&self) -> RelayInfo {
        let p = &self.pricing;
        RelayInfo {
            operator_url: self.redeemer.as_ref().map(|r| r.operator_url().to_owned()),
            free_quota: self.quota,
            retention_days: self.retention_secs / 86_400,
            paid_quota: p.paid_quota,
            units_per_queue_month: p.units_per_queue_month,
            channel_free_active_receivers: p.free_active_receivers,
            channel_free_storage_bytes: p.free_storage_bytes,
            channel_units_per_receiver_month: p.units_per_receiver_month,
            channel_units_per_gb_month: p.units_per_gb_month,
            channel_inactive_after_days: p.inactive_after_secs / 86_400,
        }
    }
}
