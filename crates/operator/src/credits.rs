//! Operator credits as a service: the day key ring, the spend path, recovery and pruning.
//!
//! The cryptography is [`smpx_core::credits`] (Cashu's NUT-00 blind Diffie-Hellman with
//! NUT-12 DLEQ proofs, one keyset per day) and the spent registry is
//! [`smpx_store::credits::CreditStore`] on the operator's database; this module wires them
//! together:
//!
//! - **Keys.** Every keyset is derived from the operator's master secret and the day
//!   (`<home>/credit-master-secret`, parameters in `<home>/credits.json`), so all servers of
//!   one operator sign and verify with the same keys without sharing anything else. The ring
//!   holds the live days (plus a grace period of expired ones) and is refreshed when the day
//!   changes.
//! - **Spending** (`POST /v1/swap`, see [`crate::batch`]): the core's checks first (signature
//!   under the keyset of the token's day, keyset not expired, no input twice, outputs under
//!   today's keyset and not worth more than the inputs), then the spend saga in the shared
//!   registry: `begin_spend` (inputs pending, outputs reserved — refused if any input is
//!   pending or spent on *any* server, or an output was signed before), the change signed,
//!   `complete_spend` (inputs spent, signatures stored). Concurrent spends are registered in
//!   batches: one `begin_spends` and one `complete_spends` transaction for all of them.
//! - **Recovery.** A spend left pending (the process died between `begin` and `complete`, or
//!   the database failed at `complete`) is resolved by [`Credits::recover`] once it is older
//!   than `recovery_timeout_secs`: at start, periodically, and when a wallet asks for it with
//!   `GET /v1/swap/{id}`. Its change is signed from the outputs stored with the saga and the
//!   saga completed; only if the change can no longer be signed (its keyset is gone or
//!   expired, or the stored outputs are unreadable) is it cancelled and the inputs refunded.
//!   Completion and cancellation exclude each other in the store (the saga row's lock), so a
//!   token is never both spent and refunded, whichever servers race to resolve it.
//! - **Pruning.** Spent records of keysets expired at least an hour ago are deleted daily
//!   ([`Credits::prune`]): an expired token is refused by the keyset check before the
//!   registry is asked, so the registry holds at most one credit lifetime of spends.
//!
//! Nothing here is in the logs: no secrets, tokens, `Y`s or blinded outputs (spend ids only).

use crate::batch::Spender;
use crate::home::CreditsConfig;
use smpx_core::api::{SwapId, SwapState, SwapStatus};
use smpx_core::credits::{
    sign_outputs, BlindSignature, BlindedMessage, CreditError, Day, KeyRing, MasterSecret,
    SwapLimits,
};
use smpx_core::{ErrorCode, ProtocolError, UnixTime};
use smpx_http::{ApiError, Clock};
use smpx_store::credits::{CreditStore, PruneReport, Saga, SagaState};
use smpx_store::StoreError;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};

/// The key ring, refreshed when the day changes.
pub(crate) struct Ring {
    ring: RwLock<KeyRing>,
    /// The day the ring was last refreshed for.
    day: AtomicU32,
}

impl Ring {
    pub(crate) fn new(
        master: MasterSecret,
        config: &CreditsConfig,
        now: UnixTime,
    ) -> Result<Ring, CreditError> {
        let ring = KeyRing::new(master, config.keyset_params(), now)?;
        Ok(Ring {
            ring: RwLock::new(ring),
            day: AtomicU32::new(Day::of(now).0),
        })
    }

    /// Runs `f` on the ring as of `now` (refreshing it first if the day changed).
    pub(crate) fn with<R>(
        &self,
        now: UnixTime,
        f: impl FnOnce(&KeyRing) -> R,
    ) -> Result<R, CreditError> {
        const POISONED: CreditError = CreditError::Derivation("key ring lock poisoned");
        let today = Day::of(now).0;
        if self.day.load(Ordering::Acquire) != today {
            let mut ring = self.ring.write().map_err(|_| POISONED)?;
            if self.day.load(Ordering::Acquire) != today {
                ring.refresh(now)?;
                self.day.store(today, Ordering::Release);
            }
        }
        let ring = self.ring.read().map_err(|_| POISONED)?;
        Ok(f(&ring))
    }
}

/// The operator's credit service state.
pub(crate) struct Credits {
    pub(crate) ring: Arc<Ring>,
    pub(crate) store: CreditStore,
    pub(crate) config: CreditsConfig,
    pub(crate) limits: SwapLimits,
    pub(crate) spender: Spender,
    pub(crate) clock: Arc<dyn Clock>,
}

/// What a recovery pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Pending spends completed: inputs spent, change signed and ready to collect.
    pub completed: u64,
    /// Pending spends cancelled: inputs refunded, outputs freed.
    pub cancelled: u64,
    /// Pending spends that could not be resolved now (left for the next pass).
    pub failed: u64,
}

impl Credits {
    pub(crate) fn new(
        master: MasterSecret,
        config: CreditsConfig,
        store: CreditStore,
        clock: Arc<dyn Clock>,
    ) -> Result<Credits, CreditError> {
        let ring = Arc::new(Ring::new(master, &config, clock.now())?);
        let spender = Spender::start(
            ring.clone(),
            store.clone(),
            clock.clone(),
            config.batch_workers,
            config.max_batch,
        );
        Ok(Credits {
            ring,
            store,
            config,
            limits: SwapLimits::default(),
            spender,
            clock,
        })
    }

    /// Resolves every spend pending since at least `recovery_timeout_secs` before `now`.
    pub(crate) async fn recover(&self, now: UnixTime) -> Result<RecoveryReport, StoreError> {
        let older_than = now.saturating_sub(self.config.recovery_timeout_secs);
        let mut report = RecoveryReport::default();
        let mut skipped = std::collections::HashSet::new();
        loop {
            let sagas = self.store.pending_sagas(older_than, 100).await?;
            let fresh: Vec<&Saga> = sagas.iter().filter(|s| !skipped.contains(&s.id)).collect();
            if fresh.is_empty() {
                break;
            }
            for saga in fresh {
                match self.resolve(saga, now).await {
                    Ok(SagaState::Done) => report.completed += 1,
                    Ok(SagaState::Cancelled) => report.cancelled += 1,
                    Ok(SagaState::Pending) | Err(_) => {
                        report.failed += 1;
                        skipped.insert(saga.id.clone());
                    }
                }
            }
            if sagas.len() < 100 {
                break;
            }
        }
        if report != RecoveryReport::default() {
            tracing::info!(
                completed = report.completed,
                cancelled = report.cancelled,
                failed = report.failed,
                "recovered pending credit spends"
            );
        }
        Ok(report)
    }

    /// Completes a pending saga if its change can be signed, else cancels it; returns the
    /// state it ends in (also when another server resolved it first).
    pub(crate) async fn resolve(
        &self,
        saga: &Saga,
        now: UnixTime,
    ) -> Result<SagaState, StoreError> {
        let outputs: Option<Vec<BlindedMessage>> = serde_json::from_str(&saga.outputs).ok();
        let signed = match outputs {
            None => None,
            Some(outputs) => {
                let attempt = self.ring.with(now, |ring| {
                    let signable = outputs
                        .iter()
                        .all(|o| ring.get(&o.id).is_some_and(|k| !k.is_expired(now)));
                    if signable {
                        sign_outputs(&outputs, ring).ok()
                    } else {
                        None
                    }
                });
                match attempt {
                    Ok(signed) => signed,
                    Err(e) => {
                        // Not a verdict on the saga: leave it pending for the next pass.
                        tracing::error!(error = %e, saga = %saga.id, "credit key ring");
                        return Ok(SagaState::Pending);
                    }
                }
            }
        };
        match signed {
            Some(signatures) => {
                let json = serde_json::to_string(&signatures)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                if self.store.complete_spend(&saga.id, &json, now).await? {
                    Ok(SagaState::Done)
                } else {
                    self.state_of(&saga.id).await
                }
            }
            None => {
                tracing::warn!(saga = %saga.id, "cancelling a pending credit spend whose change can no longer be signed");
                if self.store.cancel_spend(&saga.id, now).await? {
                    Ok(SagaState::Cancelled)
                } else {
                    self.state_of(&saga.id).await
                }
            }
        }
    }

    async fn state_of(&self, id: &str) -> Result<SagaState, StoreError> {
        Ok(self
            .store
            .saga(id)
            .await?
            .map_or(SagaState::Cancelled, |s| s.state))
    }

    /// Forgets spent records of expired keysets.
    pub(crate) async fn prune(&self, now: UnixTime) -> Result<PruneReport, StoreError> {
        let report = self.store.prune(now).await?;
        tracing::info!(
            inputs = report.inputs,
            outputs = report.outputs,
            sagas = report.sagas,
            "pruned expired credit records"
        );
        Ok(report)
    }

    /// `GET /v1/swap/{id}`: a spend's state; a pending one older than the recovery timeout is
    /// resolved first, so a wallet can always collect what it is owed.
    pub(crate) async fn status(&self, id: &SwapId) -> Result<SwapStatus, ApiError> {
        let key = id.to_hex();
        let mut saga = self
            .store
            .saga(&key)
            .await
            .map_err(ApiError::internal)?
            .ok_or_else(|| ApiError::new(ErrorCode::UnknownSwap, format!("no spend {key}")))?;
        let now = self.clock.now();
        if saga.state == SagaState::Pending
            && saga
                .created_at
                .saturating_add(self.config.recovery_timeout_secs)
                <= now
        {
            self.resolve(&saga, now).await.map_err(ApiError::internal)?;
            saga = self
                .store
                .saga(&key)
                .await
                .map_err(ApiError::internal)?
                .ok_or_else(|| ApiError::internal("a resolved saga vanished"))?;
        }
        let signatures = saga
            .signatures
            .as_deref()
            .map(serde_json::from_str::<Vec<BlindSignature>>)
            .transpose()
            .map_err(ApiError::internal)?;
        Ok(SwapStatus {
            id: *id,
            state: match saga.state {
                SagaState::Pending => SwapState::Pending,
                SagaState::Done => SwapState::Done,
                SagaState::Cancelled => SwapState::Cancelled,
            },
            signatures,
        })
    }
}

/// A credit error as the API answers it: typed, with the core's message (which never holds
/// secrets).
pub(crate) fn credit_error(e: CreditError) -> ApiError {
    ApiError(credit_protocol_error(e))
}

pub(crate) fn credit_protocol_error(e: CreditError) -> ProtocolError {
    let code = match &e {
        CreditError::InvalidEncoding(_)
        | CreditError::InvalidPoint
        | CreditError::Empty(_)
        | CreditError::TooMany { .. } => ErrorCode::InvalidRequest,
        CreditError::NotADenomination(_)
        | CreditError::AmountNotInKeyset { .. }
        | CreditError::Overflow => ErrorCode::InvalidAmount,
        CreditError::UnknownKeyset(_) => ErrorCode::UnknownKeyset,
        CreditError::KeysetExpired { .. } => ErrorCode::KeysetExpired,
        CreditError::KeysetNotCurrent(_) => ErrorCode::KeysetNotCurrent,
        CreditError::BadSignature { .. } | CreditError::HashToCurve => ErrorCode::InvalidToken,
        CreditError::DuplicateInput { .. } => ErrorCode::DuplicateInput,
        CreditError::DuplicateOutput { .. } => ErrorCode::DuplicateOutput,
        CreditError::Unbalanced { .. } => ErrorCode::Unbalanced,
        CreditError::AmountMismatch { .. } => ErrorCode::AmountMismatch,
        // The operator's own failures (or checks only a wallet makes).
        CreditError::KeysetIdMismatch
        | CreditError::BadDleq
        | CreditError::MissingDleq
        | CreditError::SignatureMismatch(_)
        | CreditError::Derivation(_) => {
            tracing::error!(error = %e, "credits");
            return ProtocolError::new(
                ErrorCode::Internal,
                "internal error; nothing was recorded, retrying is safe",
            );
        }
    };
    ProtocolError::new(code, e.to_string())
}

/// Runs until aborted: resolves stale pending spends every `recovery_timeout_secs` (at least
/// every second, at most every hour) and prunes every `prune_interval_secs`, first at start.
pub(crate) async fn maintain(credits: Arc<Credits>) {
    let sweep = std::time::Duration::from_secs(credits.config.recovery_timeout_secs.clamp(1, 3600));
    let prune_every = std::time::Duration::from_secs(credits.config.prune_interval_secs.max(60));
    let mut next_prune = tokio::time::Instant::now();
    loop {
        if tokio::time::Instant::now() >= next_prune {
            match credits.prune(credits.clock.now()).await {
                Ok(_) => next_prune = tokio::time::Instant::now() + prune_every,
                // Retried at the next sweep.
                Err(e) => tracing::warn!(error = %e, "pruning credit records failed; will retry"),
            }
        }
        tokio::time::sleep(sweep).await;
        if let Err(e) = credits.recover(credits.clock.now()).await {
            tracing::warn!(error = %e, "recovering pending credit spends failed; will retry");
        }
    }
}
