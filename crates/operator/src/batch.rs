//! Spends that arrive together are registered together.
//!
//! A handler checks its request (signatures, expiry, balance: pure CPU work) and hands the
//! spend to a [`Spender`]. Its workers each take whatever spends are waiting (up to
//! `max_batch`) and run the saga for all of them at once:
//!
//! ```text
//! begin_spends (one transaction: every saga, its inputs pending, its outputs reserved;
//!               each saga refused or started on its own)
//!   → sign the change of the started ones (blocking pool)
//!   → complete_spends (one transaction: inputs spent, signatures stored)
//!   → answer each handler
//! ```
//!
//! so a burst of spends costs two transactions rather than two each. Change is signed only
//! after the registry has taken the inputs, and released only after `complete` committed.
//! While one batch runs the next one fills (the same pattern as the coordinator's batched
//! proof checks). Identical requests in one batch are one spend and get the same answer.
//!
//! Spends of one batch that share a token or an output with an earlier one are registered in
//! a second round (a second `begin_spends`), so each is judged by what is really registered.
//!
//! Failures:
//! - `begin_spends` fails: nothing of it was written (one transaction); each of its requests
//!   is answered `internal` (retry). If it failed because a spend id already exists (an
//!   identical request retried), its spends are registered again one at a time, and the
//!   retried one is answered from its stored saga.
//! - signing fails (cannot happen for checked outputs): that saga is cancelled, its inputs
//!   refunded.
//! - `complete_spends` fails: each saga is cancelled (refund) unless it turns out done, in
//!   which case its change is returned; if even that fails, the answer is `swap_pending` and
//!   recovery resolves it later (the wallet collects with `GET /v1/swap/{id}`).
//! - the handler's future is dropped (client gone): the batch still finishes, so the
//!   change is ready to collect.

use crate::credits::{credit_protocol_error, Ring};
use smpx_core::credits::{sign_outputs, BlindSignature, BlindedMessage, CreditError};
use smpx_core::{ErrorCode, ProtocolError, UnixTime};
use smpx_http::{ApiError, Clock};
use smpx_store::credits::{BeginOutcome, CreditStore, NewSpend, SagaState};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Mutex};

/// Why a spend was not registered (besides the store's own refusals).
enum Registration {
    /// Its id exists: the identical request was registered before.
    Exists,
    /// The database failed; nothing of it was written.
    Failed,
}

/// A spend's answer: the change's blind signatures, in the order of the outputs.
pub(crate) type SpendResult = Result<Vec<BlindSignature>, ProtocolError>;

/// A spend's answer and whether this request is a repeat of one answered before (the
/// identical request again — in the same batch or later): a repeat gets the same change,
/// and whoever sells something for the payment must not sell it twice
/// ([`crate::credit_handlers`]: `replayed` in the swap answer).
#[derive(Clone, Debug)]
pub(crate) struct Answer {
    pub(crate) result: SpendResult,
    pub(crate) replayed: bool,
}

struct Job {
    spend: NewSpend,
    outputs: Vec<BlindedMessage>,
    reply: oneshot::Sender<Answer>,
}

/// Registers spends in batches (see the module documentation).
pub(crate) struct Spender {
    tx: mpsc::Sender<Job>,
}

struct Worker {
    ring: Arc<Ring>,
    store: CreditStore,
    clock: Arc<dyn Clock>,
}

impl Spender {
    /// Starts `workers` batch workers; they stop when the spender is dropped.
    pub(crate) fn start(
        ring: Arc<Ring>,
        store: CreditStore,
        clock: Arc<dyn Clock>,
        workers: usize,
        max_batch: usize,
    ) -> Spender {
        let max_batch = max_batch.max(1);
        let (tx, rx) = mpsc::channel::<Job>(4 * max_batch);
        let rx = Arc::new(Mutex::new(rx));
        let worker = Arc::new(Worker { ring, store, clock });
        for _ in 0..workers.max(1) {
            let rx = rx.clone();
            let worker = worker.clone();
            tokio::spawn(async move {
                while let Some(batch) = smpx_http::batch::next_batch(&rx, max_batch).await {
                    worker.process(batch).await;
                }
            });
        }
        Spender { tx }
    }

    /// Runs one checked spend through the saga, batched with whatever else is waiting.
    /// `spend.inputs` must be in request order (errors name the input by its index).
    pub(crate) async fn spend(
        &self,
        spend: NewSpend,
        outputs: Vec<BlindedMessage>,
    ) -> Result<(Vec<BlindSignature>, bool), ApiError> {
        let id = spend.saga_id.clone();
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job {
                spend,
                outputs,
                reply,
            })
            .await
            .map_err(|_| ApiError::internal("the credit spend workers stopped"))?;
        match rx.await {
            Ok(Answer {
                result: Err(e),
                replayed: true,
            }) if e.code == ErrorCode::SwapPending => Err(ApiError(repeated(&id))),
            Ok(answer) => answer
                .result
                .map(|sigs| (sigs, answer.replayed))
                .map_err(ApiError),
            // The worker died mid-batch: the saga may be pending; recovery resolves it.
            Err(_) => Err(ApiError(pending(&id))),
        }
    }
}

fn internal() -> ProtocolError {
    ProtocolError::new(
        ErrorCode::Internal,
        "internal error; nothing was recorded, retrying is safe",
    )
}

fn pending(id: &str) -> ProtocolError {
    ProtocolError::new(
        ErrorCode::SwapPending,
        format!(
            "the spend {id} is registered but its change is not released yet; \
             collect it with GET /v1/swap/{id}"
        ),
    )
}

fn repeated(id: &str) -> ProtocolError {
    ProtocolError::new(
        ErrorCode::SpendRepeated,
        format!(
            "the identical spend {id} was sent before and is not finished; \
             collect its change with GET /v1/swap/{id}"
        ),
    )
}

fn cancelled(id: &str) -> ProtocolError {
    ProtocolError::new(
        ErrorCode::SwapCancelled,
        format!(
            "the spend {id} was cancelled and its inputs refunded; \
             spend them again with fresh outputs"
        ),
    )
}

impl Worker {
    async fn process(&self, jobs: Vec<Job>) {
        let mut spends: Vec<NewSpend> = Vec::with_capacity(jobs.len());
        let mut outputs: Vec<Vec<BlindedMessage>> = Vec::with_capacity(jobs.len());
        let mut replies: Vec<Vec<oneshot::Sender<Answer>>> = Vec::with_capacity(jobs.len());
        let mut index: HashMap<String, usize> = HashMap::new();
        for job in jobs {
            match index.get(&job.spend.saga_id) {
                Some(&i) => replies[i].push(job.reply),
                None => {
                    index.insert(job.spend.saga_id.clone(), spends.len());
                    spends.push(job.spend);
                    outputs.push(job.outputs);
                    replies.push(vec![job.reply]);
                }
            }
        }
        let results = self.run(&spends, outputs).await;
        for ((result, replayed), senders) in results.into_iter().zip(replies) {
            for (k, sender) in senders.into_iter().enumerate() {
                // The handler may be gone; the spend stands and can be collected.
                let _ = sender.send(Answer {
                    result: result.clone(),
                    // Identical requests in one batch: the first is the spend, the rest repeats.
                    replayed: replayed || k > 0,
                });
            }
        }
    }

    async fn run(
        &self,
        spends: &[NewSpend],
        mut outputs: Vec<Vec<BlindedMessage>>,
    ) -> Vec<(SpendResult, bool)> {
        let n = spends.len();
        let mut results: Vec<Option<SpendResult>> = vec![None; n];
        let mut replayed = vec![false; n];

        // 1. The double-spend check: the spends registered in one transaction (or a few, see
        //    `register`).
        let begun = self.register(spends).await;
        let mut started = Vec::with_capacity(n);
        for (i, outcome) in begun.into_iter().enumerate() {
            let spend = &spends[i];
            match outcome {
                Ok(BeginOutcome::Started) => started.push(i),
                Ok(BeginOutcome::DoubleSpend { y }) => {
                    let index = spend.inputs.iter().position(|input| input.y == y);
                    results[i] = Some(Err(ProtocolError::new(
                        ErrorCode::TokenSpent,
                        match index {
                            Some(k) => format!("input {k} is already spent or being spent"),
                            None => "an input is already spent or being spent".to_owned(),
                        },
                    )));
                }
                Ok(BeginOutcome::OutputReused { b }) => {
                    let index = spend.outputs.iter().position(|o| *o == b);
                    results[i] = Some(Err(ProtocolError::new(
                        ErrorCode::OutputReused,
                        match index {
                            Some(k) => {
                                format!("output {k} was already signed in an earlier request")
                            }
                            None => "an output was already signed in an earlier request".to_owned(),
                        },
                    )));
                }
                Err(Registration::Exists) => {
                    replayed[i] = true;
                    results[i] = Some(self.existing(&spend.saga_id).await);
                }
                Err(Registration::Failed) => results[i] = Some(Err(internal())),
            }
        }

        // 2. Only now, with the inputs taken, sign the change (CPU work, off the runtime).
        let now = self.clock.now();
        let to_sign: Vec<(usize, Vec<BlindedMessage>)> = started
            .iter()
            .map(|&i| (i, std::mem::take(&mut outputs[i])))
            .collect();
        let ring = self.ring.clone();
        let signed = tokio::task::spawn_blocking(move || {
            to_sign
                .into_iter()
                .map(|(i, outs)| {
                    (
                        i,
                        ring.with(now, |r| sign_outputs(&outs, r)).and_then(|s| s),
                    )
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_else(|_| {
            started
                .iter()
                .map(|&i| (i, Err(CreditError::Derivation("signing task failed"))))
                .collect()
        });
        let mut ready: Vec<(usize, String, Vec<BlindSignature>)> = Vec::with_capacity(signed.len());
        for (i, result) in signed {
            let id = &spends[i].saga_id;
            let json = result.and_then(|sigs| {
                serde_json::to_string(&sigs)
                    .map(|json| (json, sigs))
                    .map_err(|_| CreditError::Derivation("encoding signatures"))
            });
            match json {
                Ok((json, sigs)) => ready.push((i, json, sigs)),
                Err(e) => {
                    // Never release change we could not sign: refund the inputs.
                    tracing::error!(error = %e, saga = %id, "signing credit change failed");
                    let refunded = self.store.cancel_spend(id, now).await;
                    results[i] = Some(match refunded {
                        Ok(true) => Err(credit_protocol_error(e)),
                        _ => Err(pending(id)),
                    });
                }
            }
        }

        // 3. Release: inputs spent and signatures stored, for all of them in one transaction.
        let pairs: Vec<(&str, &str)> = ready
            .iter()
            .map(|(i, json, _)| (spends[*i].saga_id.as_str(), json.as_str()))
            .collect();
        if !pairs.is_empty() {
            match self.store.complete_spends(&pairs, now).await {
                Ok(done) => {
                    for ((i, _, sigs), ok) in ready.into_iter().zip(done) {
                        results[i] = Some(if ok {
                            Ok(sigs)
                        } else {
                            // Resolved by someone else meanwhile (recovery on another server).
                            self.existing(&spends[i].saga_id).await
                        });
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, spends = pairs.len(), "completing credit spends failed");
                    for (i, _, _) in ready {
                        results[i] =
                            Some(self.after_failed_completion(&spends[i].saga_id, now).await);
                    }
                }
            }
        }
        results
            .into_iter()
            .zip(replayed)
            .map(|(r, replayed)| (r.unwrap_or_else(|| Err(internal())), replayed))
            .collect()
    }

    /// Registers the spends (`begin`), in as few transactions as possible.
    ///
    /// Spends that share a token or an output with an earlier spend of the batch go to a
    /// later round: the store would refuse both in one call even if the earlier one is then
    /// refused for another reason, and the later one must be judged by what is actually
    /// registered. (Only a wallet spending one token twice at once sends such requests.)
    async fn register(&self, spends: &[NewSpend]) -> Vec<Result<BeginOutcome, Registration>> {
        let mut outcomes: Vec<Option<Result<BeginOutcome, Registration>>> =
            (0..spends.len()).map(|_| None).collect();
        let mut remaining: Vec<usize> = (0..spends.len()).collect();
        while !remaining.is_empty() {
            let mut ys = HashSet::new();
            let mut bs = HashSet::new();
            let (round, later): (Vec<usize>, Vec<usize>) = remaining.into_iter().partition(|&i| {
                let s = &spends[i];
                let free = s.inputs.iter().all(|input| !ys.contains(&input.y))
                    && s.outputs.iter().all(|b| !bs.contains(b));
                if free {
                    ys.extend(s.inputs.iter().map(|input| input.y));
                    bs.extend(s.outputs.iter().copied());
                }
                free
            });
            remaining = later;
            let owned: Vec<NewSpend>;
            let batch: &[NewSpend] = if round.len() == spends.len() {
                spends
            } else {
                owned = round.iter().map(|&i| spends[i].clone()).collect();
                &owned
            };
            match self.store.begin_spends(batch).await {
                Ok(done) => {
                    for (&i, outcome) in round.iter().zip(done) {
                        outcomes[i] = Some(Ok(outcome));
                    }
                }
                Err(e) if e.is_duplicate() => {
                    // A spend id that exists already: an identical request retried. Register
                    // one by one to tell which.
                    for &i in &round {
                        outcomes[i] = Some(match self.store.begin_spend(&spends[i]).await {
                            Ok(outcome) => Ok(outcome),
                            Err(e) if e.is_duplicate() => Err(Registration::Exists),
                            Err(e) => {
                                tracing::error!(error = %e, "registering a credit spend failed");
                                Err(Registration::Failed)
                            }
                        });
                    }
                }
                Err(e) => {
                    // Nothing of this round was written.
                    tracing::error!(error = %e, spends = round.len(), "registering credit spends failed");
                    for &i in &round {
                        outcomes[i] = Some(Err(Registration::Failed));
                    }
                }
            }
        }
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or(Err(Registration::Failed)))
            .collect()
    }

    /// The answer for a spend whose saga exists already.
    async fn existing(&self, id: &str) -> SpendResult {
        match self.store.saga(id).await {
            Ok(Some(saga)) => match saga.state {
                SagaState::Done => saga
                    .signatures
                    .as_deref()
                    .and_then(|s| serde_json::from_str(s).ok())
                    .ok_or_else(internal),
                SagaState::Pending => Err(pending(id)),
                SagaState::Cancelled => Err(cancelled(id)),
            },
            Ok(None) => Err(internal()),
            Err(e) => {
                tracing::error!(error = %e, saga = %id, "reading a credit spend failed");
                Err(pending(id))
            }
        }
    }

    /// `complete` failed (the database, not the saga): refund, unless it did commit.
    async fn after_failed_completion(&self, id: &str, now: UnixTime) -> SpendResult {
        match self.store.cancel_spend(id, now).await {
            Ok(true) => Err(cancelled(id)),
            Ok(false) => self.existing(id).await,
            Err(_) => Err(pending(id)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::home::CreditsConfig;
    use rand::rngs::OsRng;
    use smpx_core::credits::{
        finalize_all, random_outputs, KeyRing, MasterSecret, PreparedOutput, Proof,
    };
    use smpx_core::{Amount, DAY};
    use smpx_http::ManualClock;
    use smpx_store::credits::SpendInput;

    const NOW: u64 = 20_500 * DAY + 12 * 3600;

    struct Fixture {
        worker: Worker,
        ring: KeyRing,
        _guard: tempfile::TempDir,
    }

    async fn fixture() -> Fixture {
        let (url, guard) = smpx_store::scratch::sqlite().unwrap();
        let store = CreditStore::open(smpx_store::Db::connect(&url).await.unwrap())
            .await
            .unwrap();
        let master = MasterSecret::from_bytes([9; 32]);
        let config = CreditsConfig::default();
        let ring = KeyRing::new(master.clone(), config.keyset_params(), NOW).unwrap();
        let worker = Worker {
            ring: Arc::new(Ring::new(master, &config, NOW).unwrap()),
            store,
            clock: Arc::new(ManualClock::new(NOW)),
        };
        Fixture {
            worker,
            ring,
            _guard: guard,
        }
    }

    fn token(ring: &KeyRing, amount: u64) -> Proof {
        let keyset = ring.current(NOW).unwrap();
        let prepared = random_outputs(&mut OsRng, keyset.id(), &[Amount(amount)]).unwrap();
        let messages: Vec<BlindedMessage> = prepared.iter().map(|p| p.message.clone()).collect();
        let sigs = sign_outputs(&messages, ring).unwrap();
        finalize_all(&prepared, &sigs, &keyset.keys()).unwrap()[0].for_spending()
    }

    fn outputs(ring: &KeyRing, amount: u64) -> Vec<PreparedOutput> {
        random_outputs(
            &mut OsRng,
            ring.current(NOW).unwrap().id(),
            &[Amount(amount)],
        )
        .unwrap()
    }

    fn spend(id: &str, ring: &KeyRing, inputs: &[Proof], outputs: &[PreparedOutput]) -> Job0 {
        let messages: Vec<BlindedMessage> = outputs.iter().map(|p| p.message.clone()).collect();
        let keyset = ring.current(NOW).unwrap();
        Job0 {
            spend: NewSpend {
                saga_id: id.to_owned(),
                inputs: inputs
                    .iter()
                    .map(|p| SpendInput {
                        y: p.y().unwrap(),
                        amount: p.amount,
                        keyset: p.id,
                        final_expiry: keyset.final_expiry(),
                    })
                    .collect(),
                outputs: messages.iter().map(|m| m.blinded_secret).collect(),
                outputs_json: serde_json::to_string(&messages).unwrap(),
                outputs_expiry: keyset.final_expiry(),
                now: NOW,
            },
            outputs: messages,
        }
    }

    struct Job0 {
        spend: NewSpend,
        outputs: Vec<BlindedMessage>,
    }

    /// Runs `jobs` as one batch; the answers in order.
    async fn batch(worker: &Worker, jobs: Vec<Job0>) -> Vec<SpendResult> {
        batch_answers(worker, jobs)
            .await
            .into_iter()
            .map(|a| a.result)
            .collect()
    }

    /// Runs `jobs` as one batch; the answers with their `replayed` flags.
    async fn batch_answers(worker: &Worker, jobs: Vec<Job0>) -> Vec<Answer> {
        let mut answers = Vec::new();
        let mut queued = Vec::new();
        for job in jobs {
            let (reply, rx) = oneshot::channel();
            queued.push(Job {
                spend: job.spend,
                outputs: job.outputs,
                reply,
            });
            answers.push(rx);
        }
        worker.process(queued).await;
        let mut out = Vec::new();
        for rx in answers {
            out.push(rx.await.unwrap());
        }
        out
    }

    fn code(r: &SpendResult) -> Option<ErrorCode> {
        r.as_ref().err().map(|e| e.code)
    }

    #[tokio::test]
    async fn one_batch_judges_each_spend_by_what_is_registered() {
        let f = fixture().await;
        let ring = &f.ring;
        // An output signed before.
        let used = outputs(ring, 1);
        let first = batch(&f.worker, vec![spend("s0", ring, &[token(ring, 1)], &used)]).await;
        assert!(first[0].is_ok());

        // One token in two spends of one batch: the first must be refused (reused output),
        // so the second, registered in a second round, wins.
        let t = token(ring, 4);
        let fresh = outputs(ring, 2);
        let answers = batch(
            &f.worker,
            vec![
                spend("bad", ring, std::slice::from_ref(&t), &used),
                spend("good", ring, std::slice::from_ref(&t), &fresh),
            ],
        )
        .await;
        assert_eq!(code(&answers[0]), Some(ErrorCode::OutputReused));
        assert_eq!(answers[1].as_ref().unwrap().len(), 1);

        // Both good: the first in the batch wins, the second is a double spend.
        let t = token(ring, 4);
        let answers = batch(
            &f.worker,
            vec![
                spend("x", ring, std::slice::from_ref(&t), &outputs(ring, 4)),
                spend("y", ring, std::slice::from_ref(&t), &outputs(ring, 4)),
            ],
        )
        .await;
        assert!(answers[0].is_ok());
        assert_eq!(code(&answers[1]), Some(ErrorCode::TokenSpent));

        // Identical spends in one batch are one spend, answered alike; a retried one in a
        // later batch (its id exists) is answered from its saga without failing the others.
        let t = token(ring, 8);
        let o = outputs(ring, 8);
        let answers = batch(
            &f.worker,
            vec![
                spend("same", ring, std::slice::from_ref(&t), &o),
                spend("same", ring, std::slice::from_ref(&t), &o),
            ],
        )
        .await;
        assert_eq!(answers[0], answers[1]);
        let signatures = answers[0].clone().unwrap();
        let other = token(ring, 2);
        let answers = batch_answers(
            &f.worker,
            vec![
                spend("same", ring, std::slice::from_ref(&t), &o),
                spend("new", ring, &[other], &outputs(ring, 2)),
            ],
        )
        .await;
        assert_eq!(answers[0].result.as_ref().unwrap(), &signatures);
        assert!(answers[1].result.is_ok());
        // Whoever sells something for a spend can tell a repeat from the spend itself.
        assert!(answers[0].replayed);
        assert!(!answers[1].replayed);
        let t = token(ring, 16);
        let o = outputs(ring, 16);
        let answers = batch_answers(
            &f.worker,
            vec![
                spend("twice", ring, std::slice::from_ref(&t), &o),
                spend("twice", ring, std::slice::from_ref(&t), &o),
            ],
        )
        .await;
        assert!(answers[0].result.is_ok() && answers[1].result.is_ok());
        assert_eq!(
            (answers[0].replayed, answers[1].replayed),
            (false, true),
            "the first of identical requests in one batch is the spend"
        );
        assert!(f
            .worker
            .store
            .pending_sagas(i64::MAX as u64, 10)
            .await
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn spender_answers_through_its_workers() {
        let f = fixture().await;
        let spender = Arc::new(Spender::start(
            f.worker.ring.clone(),
            f.worker.store.clone(),
            f.worker.clock.clone(),
            2,
            8,
        ));
        let ring = &f.ring;
        let mut calls = Vec::new();
        for n in 0..16 {
            let job = spend(&format!("s{n}"), ring, &[token(ring, 2)], &outputs(ring, 2));
            let spender = spender.clone();
            calls.push(tokio::spawn(async move {
                spender.spend(job.spend, job.outputs).await
            }));
        }
        for call in calls {
            let (sigs, replayed) = call.await.unwrap().unwrap();
            assert_eq!(sigs.len(), 1);
            assert!(!replayed);
        }
    }
}
