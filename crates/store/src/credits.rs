//! The operator's credit store: the spent registry shared by all of one operator's servers,
//! the spend saga, and the record of credits issued after redemptions.
//!
//! The credit crypto is pure and lives in [`smpx_core::credits`]; what needs storage is here:
//! whether a token's `Y` was already spent (on *any* of the operator's servers), whether a
//! blinded output `B_` was already signed, and the state of each spend between "inputs taken"
//! and "change released". Tables are prefixed `credit_` so they can share a database with
//! another service's.
//!
//! # The spend saga
//!
//! ```text
//! check_swap (core) ─▶ begin_spend ──────▶ provision ──▶ sign change ──▶ complete_spend ─▶ change released
//!                      inputs pending,                                   inputs spent,
//!                      outputs reserved,                                 saga done + signatures
//!                      saga pending
//!                          │ DoubleSpend / OutputReused: nothing written, cancel the resource
//!                          └────────── provisioning failed ──▶ cancel_spend: inputs deleted (refund),
//!                                                              outputs freed, saga cancelled
//! ```
//!
//! A process that dies between [`CreditStore::begin_spend`] and [`CreditStore::complete_spend`]
//! leaves a `pending` saga; on restart [`CreditStore::pending_sagas`] lists them, and the
//! service completes each (the request's outputs are stored with the saga, so the change can
//! be signed then) or cancels it. The wallet collects its change with [`CreditStore::saga`].
//!
//! # Where safety comes from
//!
//! Nothing here relies on a process-local lock; every operation is one transaction, so any
//! number of processes may share one PostgreSQL database (or one SQLite file).
//!
//! - **Double spend**: `Y` is the primary key of `credit_inputs`, pending or spent. A
//!   saga's inputs are inserted with `ON CONFLICT (y) DO NOTHING RETURNING y`: a `Y` that comes
//!   back missing is already pending or spent (committed, or committed by a racing transaction
//!   this one waited for), and the whole saga is refused and its rows deleted in the same
//!   transaction. Whichever of two racing requests commits first wins, on SQLite or
//!   PostgreSQL, with one process or many.
//! - **No deadlocks between spends**: every transaction inserts its rows in one global order —
//!   its sagas (fresh random ids), then all its `Y`s sorted, then all its `B_`s sorted — so two
//!   requests sharing inputs wait for each other but never in a cycle. The few operations that
//!   could take row locks in another order (batched completion racing a batch over the same
//!   sagas, which only happens during recovery) are retried on a detected deadlock.
//! - **Blinded outputs are signed once**: `B_` is the primary key of `credit_outputs`, for
//!   change and for issuance alike, across requests; a saga or issuance that reuses one is
//!   refused with nothing written.
//! - **No token both spent and refunded**: [`CreditStore::complete_spend`] and
//!   [`CreditStore::cancel_spend`] both start with `UPDATE credit_sagas … WHERE id = $1 AND
//!   state = 'pending'`. The saga row's lock serialises them; the loser finds the state changed
//!   and touches nothing. A token's state *is* its saga's (pending, or spent once the saga is
//!   done), so completing flips every input at once; cancelling deletes the inputs in the
//!   same transaction. A CHECK ties `signatures` to the `done` state.
//! - **All or nothing**: refusals and crashes leave no partial saga; a transaction dropped
//!   mid-way (process killed, future cancelled) is rolled back by the database.
//!
//! # Schema (migration set `credits`)
//!
//! | table | key | holds |
//! |---|---|---|
//! | `credit_sagas` | `id` | state (`pending`/`done`/`cancelled`), times, the saga's `Y`s and `B_`s (33-byte keys concatenated, so a cancel finds its rows by primary key), the latest expiry of each, the request's outputs JSON, the signatures JSON once done; a partial index on pending sagas for recovery |
//! | `credit_inputs` | `y` | amount, keyset id, final expiry, saga id (state: the saga's) |
//! | `credit_outputs` | `b` | final expiry of its keyset, and the saga or issuance that reserved it (also how NUT-09 restore finds a signature again: [`CreditStore::signed_outputs`]) |
//! | `credit_issuances` | envelope digest | the signatures given, time, expiry |
//!
//! Secondary indexes and foreign keys are left out on purpose: every lookup on the hot path
//! is by primary key, and each index or foreign-key check costs every spend a random B-tree
//! insert or lookup (dropping them took the PostgreSQL cost of begin + complete from about
//! 70 to about 40 µs of CPU a token). Integrity between the tables is kept by this module's
//! transactions and checked by its tests.
//!
//! # Growth
//!
//! [`CreditStore::prune`] forgets spent tokens whose keyset has expired, spent outputs whose
//! keyset has expired, and finished sagas nothing refers to any more, so the registry holds at
//! most one credit lifetime of spends. Issuance records are kept (see
//! [`CreditStore::record_issuance`]).

use std::collections::{HashMap, HashSet};

use crate::db::{q, to_i64, to_u64, Db, StoreError};
use smpx_core::credits::{CheckedInput, KeysetId, Point};
use smpx_core::{Amount, UnixTime};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

const MIGRATIONS: &[&[&str]] = &[&[
    "CREATE TABLE credit_sagas (
        id TEXT PRIMARY KEY,
        state TEXT NOT NULL CHECK (state IN ('pending', 'done', 'cancelled')),
        created_at BIGINT NOT NULL,
        finished_at BIGINT,
        inputs {blob} NOT NULL,
        inputs_expiry BIGINT NOT NULL,
        output_keys {blob} NOT NULL,
        outputs_expiry BIGINT NOT NULL,
        outputs TEXT NOT NULL,
        signatures TEXT,
        CHECK ((state = 'done') = (signatures IS NOT NULL)))",
    "CREATE INDEX credit_sagas_pending ON credit_sagas (created_at) WHERE state = 'pending'",
    "CREATE TABLE credit_inputs (
        y {blob} PRIMARY KEY,
        amount BIGINT NOT NULL CHECK (amount > 0),
        keyset_id {blob} NOT NULL,
        final_expiry BIGINT NOT NULL,
        saga_id TEXT NOT NULL)",
    "CREATE TABLE credit_issuances (
        digest {blob} PRIMARY KEY,
        issued_at BIGINT NOT NULL,
        final_expiry BIGINT NOT NULL,
        signatures TEXT NOT NULL)",
    "CREATE TABLE credit_outputs (
        b {blob} PRIMARY KEY,
        final_expiry BIGINT NOT NULL,
        saga_id TEXT,
        issuance {blob},
        CHECK ((saga_id IS NULL) <> (issuance IS NULL)))",
]];

/// How long after a keyset's final expiry its spent records are kept: a server whose clock
/// is up to this much behind the pruning server's still refuses the token as expired before
/// it would look in the registry.
pub const PRUNE_MARGIN_SECS: u64 = 3_600;

/// Rows per multi-row statement (at most 6 parameters a row: far below both databases'
/// parameter limits).
const CHUNK: usize = 100;

/// A token being spent: what the registry records under its `Y`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpendInput {
    /// `Y = hash_to_curve(secret)`.
    pub y: Point,
    pub amount: Amount,
    /// The keyset the token was signed under.
    pub keyset: KeysetId,
    /// The keyset's final expiry: after it the token is refused as expired, and its record
    /// may be pruned.
    pub final_expiry: UnixTime,
}

impl SpendInput {
    /// From an input that passed [`smpx_core::credits::check_swap`] and the keyset id it
    /// carried.
    pub fn from_checked(input: &CheckedInput, keyset: KeysetId) -> SpendInput {
        SpendInput {
            y: input.y,
            amount: input.amount,
            keyset,
            final_expiry: input.final_expiry,
        }
    }
}

/// A spend to register: one saga.
#[derive(Clone, Debug)]
pub struct NewSpend {
    /// Chosen by the service (e.g. 16 random bytes in hex); unique. The wallet collects its
    /// change under it.
    pub saga_id: String,
    /// The tokens spent, in any order (the store sorts them).
    pub inputs: Vec<SpendInput>,
    /// The blinded change outputs' `B_`.
    pub outputs: Vec<Point>,
    /// The request's outputs (`[BlindedMessage]` JSON), so the change can be signed after a
    /// crash. Stored as given.
    pub outputs_json: String,
    /// The final expiry of the outputs' keyset (today's): until then a `B_` stays reserved.
    pub outputs_expiry: UnixTime,
    pub now: UnixTime,
}

/// What [`CreditStore::begin_spend`] decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BeginOutcome {
    /// The inputs are pending under the saga and the outputs reserved.
    Started,
    /// This token is already pending or spent (or appears twice in the request, or in an
    /// earlier saga of the same batch). Nothing was written.
    DoubleSpend { y: Point },
    /// This blinded output was already used (or appears twice). Nothing was written.
    OutputReused { b: Point },
}

/// A registered token's state (NUT-07: `None` from [`CreditStore::state`] is "unspent", or
/// pruned after expiry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputState {
    Pending,
    Spent,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SagaState {
    /// Inputs taken, change not released yet.
    Pending,
    /// Inputs spent, change signed (the signatures are stored).
    Done,
    /// Inputs refunded, outputs freed.
    Cancelled,
}

impl SagaState {
    pub fn as_str(self) -> &'static str {
        match self {
            SagaState::Pending => "pending",
            SagaState::Done => "done",
            SagaState::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> Result<SagaState, StoreError> {
        match s {
            "pending" => Ok(SagaState::Pending),
            "done" => Ok(SagaState::Done),
            "cancelled" => Ok(SagaState::Cancelled),
            _ => Err(StoreError::Corrupt(format!("credit saga state {s:?}"))),
        }
    }
}

/// A stored saga.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Saga {
    pub id: String,
    pub state: SagaState,
    pub created_at: UnixTime,
    /// When it was completed or cancelled.
    pub finished_at: Option<UnixTime>,
    pub outputs_expiry: UnixTime,
    /// The request's outputs, as given to [`CreditStore::begin_spend`].
    pub outputs: String,
    /// The change's blind signatures (JSON), once done.
    pub signatures: Option<String>,
}

/// Credits issued after a redemption.
#[derive(Clone, Debug)]
pub struct NewIssuance {
    /// The redemption's envelope digest: a retry of the same redemption gets the same answer.
    pub digest: [u8; 32],
    /// The blinded outputs signed.
    pub outputs: Vec<Point>,
    /// The blind signatures (JSON), as returned to the wallet.
    pub signatures: String,
    /// The final expiry of the outputs' keyset.
    pub final_expiry: UnixTime,
    pub now: UnixTime,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IssuanceOutcome {
    /// Recorded: these signatures (the ones given) may be released.
    Issued(String),
    /// This redemption was issued before: the first signatures stand and are returned.
    Replay(String),
    /// This blinded output was already used (or appears twice). Nothing was written.
    OutputReused { b: Point },
}

/// What signed an output ([`CreditStore::signed_outputs`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignedBy {
    /// Change of a finished spend: the request's outputs (`[BlindedMessage]` JSON) and the
    /// signatures (`[BlindSignature]` JSON), in the same order.
    Spend { outputs: String, signatures: String },
    /// Credits issued after a redemption: the signatures (`[BlindSignature]` JSON) in the
    /// order of the outputs, which the issuance record does not keep (the signature that
    /// answers an output is the one whose key gives `C_ = k·B_`).
    Issuance { signatures: String },
}

/// What [`CreditStore::prune`] deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub inputs: u64,
    pub outputs: u64,
    pub sagas: u64,
}

/// The operator's credit store.
#[derive(Clone, Debug)]
pub struct CreditStore {
    db: Db,
}

impl CreditStore {
    /// Opens the store, creating or upgrading its tables (migration set `credits`).
    pub async fn open(db: Db) -> Result<Self, StoreError> {
        db.migrate("credits", MIGRATIONS).await?;
        Ok(CreditStore { db })
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    // ---- spending -----------------------------------------------------------------------

    /// Registers one spend: the inputs become pending under a new saga and the outputs are
    /// reserved — or, if any input is already pending or spent (or repeated), or any output
    /// already used (or repeated), nothing is written and the offending key is named.
    ///
    /// A saga id that already exists is a [`StoreError::Duplicate`] (ids are the caller's and
    /// must be fresh).
    pub async fn begin_spend(&self, spend: &NewSpend) -> Result<BeginOutcome, StoreError> {
        let mut out = self.begin_spends(std::slice::from_ref(spend)).await?;
        out.pop()
            .ok_or_else(|| StoreError::Corrupt("no outcome for the spend".into()))
    }

    /// Registers many independent spends in one transaction (for throughput when requests
    /// arrive together). Each saga is still all or nothing, with its own outcome, in the
    /// order given: a saga that shares a token or an output with an earlier saga of the same
    /// batch is refused (even if that earlier one is refused too — both carried the same
    /// token). A database error fails the whole batch, writing nothing.
    pub async fn begin_spends(&self, spends: &[NewSpend]) -> Result<Vec<BeginOutcome>, StoreError> {
        let mut outcomes: Vec<Option<BeginOutcome>> = vec![None; spends.len()];
        // Within the batch: repeated keys, first come first served. Each saga's keys are
        // sorted so the offending key reported is the smallest.
        let mut taken_y: HashSet<&[u8; 33]> = HashSet::new();
        let mut taken_b: HashSet<&[u8; 33]> = HashSet::new();
        for (i, s) in spends.iter().enumerate() {
            to_i64(s.now, "time")?;
            to_i64(s.outputs_expiry, "time")?;
            for input in &s.inputs {
                to_i64(input.amount.0, "amount")?;
                to_i64(input.final_expiry, "time")?;
            }
            let mut ys: Vec<&Point> = s.inputs.iter().map(|i| &i.y).collect();
            ys.sort();
            let mut bs: Vec<&Point> = s.outputs.iter().collect();
            bs.sort();
            let dup_y = ys
                .windows(2)
                .find(|w| w[0] == w[1])
                .map(|w| *w[0])
                .or_else(|| {
                    ys.iter()
                        .find(|y| taken_y.contains(y.as_bytes()))
                        .copied()
                        .copied()
                });
            if let Some(y) = dup_y {
                outcomes[i] = Some(BeginOutcome::DoubleSpend { y });
                continue;
            }
            let dup_b = bs
                .windows(2)
                .find(|w| w[0] == w[1])
                .map(|w| *w[0])
                .or_else(|| {
                    bs.iter()
                        .find(|b| taken_b.contains(b.as_bytes()))
                        .copied()
                        .copied()
                });
            if let Some(b) = dup_b {
                outcomes[i] = Some(BeginOutcome::OutputReused { b });
                continue;
            }
            taken_y.extend(ys.iter().map(|y| y.as_bytes()));
            taken_b.extend(bs.iter().map(|b| b.as_bytes()));
        }
        let candidates: Vec<usize> = (0..spends.len())
            .filter(|&i| outcomes[i].is_none())
            .collect();
        if !candidates.is_empty() {
            let refused = self.register(spends, &candidates).await?;
            for i in candidates {
                outcomes[i] = Some(refused.get(&i).cloned().unwrap_or(BeginOutcome::Started));
            }
        }
        outcomes
            .into_iter()
            .map(|o| o.ok_or_else(|| StoreError::Corrupt("spend without outcome".into())))
            .collect()
    }

    /// Inserts the candidate sagas (no key repeated among them) in one transaction; returns
    /// the refusals, whose rows are deleted again before commit.
    async fn register(
        &self,
        spends: &[NewSpend],
        candidates: &[usize],
    ) -> Result<HashMap<usize, BeginOutcome>, StoreError> {
        let mut tx = self.db.pool.begin().await.map_err(q)?;
        // The sagas first: a write, so a SQLite transaction takes the write lock before it
        // reads anything (a read-then-write transaction could not wait for a busy writer).
        for chunk in candidates.chunks(CHUNK) {
            let sql = format!(
                "INSERT INTO credit_sagas (id, created_at, inputs, inputs_expiry, output_keys,
                                           outputs_expiry, outputs, state)
                 VALUES {}",
                values(chunk.len(), 7, 0, Some("'pending'"))
            );
            let mut query = sqlx::query(&sql);
            for &i in chunk {
                let s = &spends[i];
                let inputs_expiry = s.inputs.iter().map(|i| i.final_expiry).max();
                query = query
                    .bind(s.saga_id.as_str())
                    .bind(to_i64(s.now, "time")?)
                    .bind(concat(s.inputs.iter().map(|i| &i.y)))
                    .bind(to_i64(inputs_expiry.unwrap_or(0), "time")?)
                    .bind(concat(s.outputs.iter()))
                    .bind(to_i64(s.outputs_expiry, "time")?)
                    .bind(s.outputs_json.as_str());
            }
            query.execute(&mut *tx).await.map_err(q)?;
        }

        // Inputs, all sagas' together in Y order (the global lock order).
        let mut inputs: Vec<(&SpendInput, usize)> = candidates
            .iter()
            .flat_map(|&i| spends[i].inputs.iter().map(move |input| (input, i)))
            .collect();
        inputs.sort_by_key(|a| a.0.y);
        let mut new_ys: HashSet<Vec<u8>> = HashSet::with_capacity(inputs.len());
        for chunk in inputs.chunks(CHUNK) {
            let sql = format!(
                "INSERT INTO credit_inputs (y, amount, keyset_id, final_expiry, saga_id)
                 VALUES {} ON CONFLICT (y) DO NOTHING RETURNING y",
                values(chunk.len(), 5, 0, None)
            );
            let mut query = sqlx::query(&sql);
            for (input, i) in chunk {
                query = query
                    .bind(&input.y.as_bytes()[..])
                    .bind(to_i64(input.amount.0, "amount")?)
                    .bind(input.keyset.as_bytes())
                    .bind(to_i64(input.final_expiry, "time")?)
                    .bind(spends[*i].saga_id.as_str());
            }
            for row in query.fetch_all(&mut *tx).await.map_err(q)? {
                new_ys.insert(row.try_get::<Vec<u8>, _>(0).map_err(q)?);
            }
        }
        let mut refused: HashMap<usize, BeginOutcome> = HashMap::new();
        for (input, i) in &inputs {
            if !new_ys.contains(&input.y.as_bytes()[..]) {
                // Sorted by Y, so the first seen is the saga's smallest offending Y.
                refused
                    .entry(*i)
                    .or_insert(BeginOutcome::DoubleSpend { y: input.y });
            }
        }

        // Outputs of the sagas still standing, in B_ order.
        let mut outputs: Vec<(&Point, usize)> = candidates
            .iter()
            .filter(|i| !refused.contains_key(i))
            .flat_map(|&i| spends[i].outputs.iter().map(move |b| (b, i)))
            .collect();
        outputs.sort_by_key(|a| *a.0);
        let mut new_bs: HashSet<Vec<u8>> = HashSet::with_capacity(outputs.len());
        for chunk in outputs.chunks(CHUNK) {
            let sql = format!(
                "INSERT INTO credit_outputs (b, final_expiry, saga_id)
                 VALUES {} ON CONFLICT (b) DO NOTHING RETURNING b",
                values(chunk.len(), 3, 0, None)
            );
            let mut query = sqlx::query(&sql);
            for (b, i) in chunk {
                let s = &spends[*i];
                query = query
                    .bind(&b.as_bytes()[..])
                    .bind(to_i64(s.outputs_expiry, "time")?)
                    .bind(s.saga_id.as_str());
            }
            for row in query.fetch_all(&mut *tx).await.map_err(q)? {
                new_bs.insert(row.try_get::<Vec<u8>, _>(0).map_err(q)?);
            }
        }
        for (b, i) in &outputs {
            if !new_bs.contains(&b.as_bytes()[..]) {
                refused
                    .entry(*i)
                    .or_insert(BeginOutcome::OutputReused { b: **b });
            }
        }

        // Undo the refused sagas' rows (only those this transaction inserted): nothing of
        // them is committed.
        if !refused.is_empty() {
            let ys: Vec<&[u8]> = inputs
                .iter()
                .filter(|(input, i)| {
                    refused.contains_key(i) && new_ys.contains(&input.y.as_bytes()[..])
                })
                .map(|(input, _)| &input.y.as_bytes()[..])
                .collect();
            let bs: Vec<&[u8]> = outputs
                .iter()
                .filter(|(b, i)| refused.contains_key(i) && new_bs.contains(&b.as_bytes()[..]))
                .map(|(b, _)| &b.as_bytes()[..])
                .collect();
            for (sql, keys) in [
                ("DELETE FROM credit_inputs WHERE y IN", &ys),
                ("DELETE FROM credit_outputs WHERE b IN", &bs),
            ] {
                for chunk in keys.chunks(CHUNK) {
                    let sql = format!("{sql} ({})", placeholders(chunk.len(), 0));
                    let mut query = sqlx::query(&sql);
                    for k in chunk {
                        query = query.bind(*k);
                    }
                    query.execute(&mut *tx).await.map_err(q)?;
                }
            }
            let ids: Vec<&str> = refused
                .keys()
                .map(|&i| spends[i].saga_id.as_str())
                .collect();
            for chunk in ids.chunks(CHUNK) {
                let sql = format!(
                    "DELETE FROM credit_sagas WHERE id IN ({})",
                    placeholders(chunk.len(), 0)
                );
                bind_all(sqlx::query(&sql), chunk)
                    .execute(&mut *tx)
                    .await
                    .map_err(q)?;
            }
        }
        tx.commit().await.map_err(q)?;
        Ok(refused)
    }

    /// Completes a pending saga: its inputs become spent and the change's signatures are
    /// stored, so the wallet can collect them. Returns true if the saga is done (by this call
    /// or an earlier one — the first signatures stand), false if it is unknown or was
    /// cancelled (then the change must not be released).
    pub async fn complete_spend(
        &self,
        saga_id: &str,
        signatures: &str,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let mut out = self.complete_spends(&[(saga_id, signatures)], now).await?;
        out.pop()
            .ok_or_else(|| StoreError::Corrupt("no outcome for the completion".into()))
    }

    /// [`CreditStore::complete_spend`] for many sagas in one transaction; one answer each, in
    /// order.
    pub async fn complete_spends(
        &self,
        done: &[(&str, &str)],
        now: UnixTime,
    ) -> Result<Vec<bool>, StoreError> {
        let mut attempt = 0;
        loop {
            match self.try_complete_spends(done, now).await {
                Err(e) if attempt < 5 && is_deadlock(&e) => attempt += 1,
                other => return other,
            }
        }
    }

    async fn try_complete_spends(
        &self,
        done: &[(&str, &str)],
        now: UnixTime,
    ) -> Result<Vec<bool>, StoreError> {
        // One row per saga, in id order (the order their locks are wanted in).
        let mut unique: Vec<(&str, &str)> = done.to_vec();
        unique.sort_by(|a, b| a.0.cmp(b.0));
        unique.dedup_by(|a, b| a.0 == b.0);
        let now = to_i64(now, "time")?;
        let mut tx = self.db.pool.begin().await.map_err(q)?;
        let mut completed: Vec<String> = Vec::with_capacity(unique.len());
        for chunk in unique.chunks(CHUNK) {
            // Only from pending: the row lock orders this against a racing cancel.
            let sql = format!(
                "UPDATE credit_sagas SET state = 'done', signatures = v.column2, finished_at = $1
                 FROM (VALUES {}) AS v
                 WHERE credit_sagas.id = v.column1 AND credit_sagas.state = 'pending'
                 RETURNING id",
                values(chunk.len(), 2, 1, None)
            );
            let mut query = sqlx::query(&sql).bind(now);
            for (id, sigs) in chunk {
                query = query.bind(*id).bind(*sigs);
            }
            for row in query.fetch_all(&mut *tx).await.map_err(q)? {
                completed.push(row.try_get("id").map_err(q)?);
            }
        }
        let completed: HashSet<String> = completed.into_iter().collect();
        let others: Vec<&str> = unique
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| !completed.contains(*id))
            .collect();
        let states = states_of(&mut tx, &others).await?;
        tx.commit().await.map_err(q)?;
        Ok(done
            .iter()
            .map(|(id, _)| completed.contains(*id) || states.get(*id) == Some(&SagaState::Done))
            .collect())
    }

    /// Cancels a pending saga: its inputs are deleted (the tokens are refunded and may be
    /// spent again), its outputs freed, and it is marked cancelled. Returns true if the saga
    /// is cancelled (by this call or an earlier one), false if it is unknown or done.
    pub async fn cancel_spend(&self, saga_id: &str, now: UnixTime) -> Result<bool, StoreError> {
        let mut tx = self.db.pool.begin().await.map_err(q)?;
        // Only from pending: the row lock orders this against a racing completion.
        let marked = sqlx::query(
            "UPDATE credit_sagas SET state = 'cancelled', finished_at = $2
             WHERE id = $1 AND state = 'pending'
             RETURNING inputs, output_keys",
        )
        .bind(saga_id)
        .bind(to_i64(now, "time")?)
        .fetch_optional(&mut *tx)
        .await
        .map_err(q)?;
        let Some(row) = marked else {
            let states = states_of(&mut tx, &[saga_id]).await?;
            tx.rollback().await.map_err(q)?;
            return Ok(states.get(saga_id) == Some(&SagaState::Cancelled));
        };
        for (column, sql) in [
            (
                "inputs",
                "DELETE FROM credit_inputs WHERE saga_id = $1 AND y IN",
            ),
            (
                "output_keys",
                "DELETE FROM credit_outputs WHERE saga_id = $1 AND b IN",
            ),
        ] {
            let keys: Vec<u8> = row.try_get(column).map_err(q)?;
            if !keys.len().is_multiple_of(33) {
                return Err(StoreError::Corrupt(format!("saga {column} length")));
            }
            for chunk in keys.chunks(33 * CHUNK) {
                let sql = format!("{sql} ({})", placeholders(chunk.len() / 33, 1));
                let mut query = sqlx::query(&sql).bind(saga_id);
                for k in chunk.chunks(33) {
                    query = query.bind(k);
                }
                query.execute(&mut *tx).await.map_err(q)?;
            }
        }
        tx.commit().await.map_err(q)?;
        Ok(true)
    }

    /// A saga, for the wallet collecting its change (present once done) and for recovery.
    pub async fn saga(&self, saga_id: &str) -> Result<Option<Saga>, StoreError> {
        let row = sqlx::query(
            "SELECT id, state, created_at, finished_at, outputs_expiry, outputs, signatures
             FROM credit_sagas WHERE id = $1",
        )
        .bind(saga_id)
        .fetch_optional(&self.db.pool)
        .await
        .map_err(q)?;
        row.map(|r| saga_row(&r)).transpose()
    }

    /// Pending sagas begun at or before `older_than`, oldest first, at most `limit`: after a
    /// crash, each must be completed (if its resource was provisioned) or cancelled.
    pub async fn pending_sagas(
        &self,
        older_than: UnixTime,
        limit: u32,
    ) -> Result<Vec<Saga>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, state, created_at, finished_at, outputs_expiry, outputs, signatures
             FROM credit_sagas WHERE state = 'pending' AND created_at <= $1
             ORDER BY created_at, id LIMIT $2",
        )
        .bind(to_i64(older_than, "time")?)
        .bind(i64::from(limit))
        .fetch_all(&self.db.pool)
        .await
        .map_err(q)?;
        rows.iter().map(saga_row).collect()
    }

    /// The state of each token, in order (NUT-07): pending, spent, or `None` (unspent, or
    /// forgotten after its keyset expired).
    pub async fn state(&self, ys: &[Point]) -> Result<Vec<Option<InputState>>, StoreError> {
        let mut found: HashMap<Vec<u8>, InputState> = HashMap::new();
        for chunk in ys.chunks(CHUNK) {
            let sql = format!(
                "SELECT i.y, s.state FROM credit_inputs i JOIN credit_sagas s ON s.id = i.saga_id
                 WHERE i.y IN ({})",
                placeholders(chunk.len(), 0)
            );
            let mut query = sqlx::query(&sql);
            for y in chunk {
                query = query.bind(&y.as_bytes()[..]);
            }
            for row in query.fetch_all(&self.db.pool).await.map_err(q)? {
                let state: String = row.try_get("state").map_err(q)?;
                let state = match SagaState::parse(&state)? {
                    SagaState::Pending => InputState::Pending,
                    SagaState::Done => InputState::Spent,
                    SagaState::Cancelled => {
                        return Err(StoreError::Corrupt("token of a cancelled saga".into()))
                    }
                };
                found.insert(row.try_get("y").map_err(q)?, state);
            }
        }
        Ok(ys
            .iter()
            .map(|y| found.get(&y.as_bytes()[..]).copied())
            .collect())
    }

    /// Forgets what can no longer matter, in one transaction:
    ///
    /// - spent tokens whose keyset expired at least [`PRUNE_MARGIN_SECS`] before `now`. This
    ///   is safe because an expired token is refused by the keyset check
    ///   ([`smpx_core::credits::check_swap`] answers `KeysetExpired`) before the registry is
    ///   ever consulted, so its `Y` cannot be spent again whether or not it is remembered;
    ///   the margin covers servers whose clocks run behind. Pending tokens are kept (their
    ///   saga must be recovered first).
    /// - reserved outputs whose keyset expired as long ago: the same `B_` sent again can
    ///   only be signed under a later keyset, which makes a different token;
    /// - completed or cancelled sagas whose tokens and change have all expired (their rows
    ///   went with the statements above, or at cancel).
    ///
    /// With no expiry index (see the module's Schema), this scans the tokens and outputs: run
    /// it once a day or so. Pending sagas and their tokens are never pruned.
    pub async fn prune(&self, now: UnixTime) -> Result<PruneReport, StoreError> {
        let cutoff = to_i64(now.saturating_sub(PRUNE_MARGIN_SECS), "time")?;
        let mut tx = self.db.pool.begin().await.map_err(q)?;
        let mut counts = [0u64; 3];
        for (n, sql) in [
            // Spent, or left behind by a saga completed and pruned while this ran.
            "DELETE FROM credit_inputs WHERE final_expiry <= $1 AND saga_id NOT IN
                 (SELECT id FROM credit_sagas WHERE state = 'pending')",
            "DELETE FROM credit_outputs WHERE final_expiry <= $1",
            // Their tokens went with the statement above (or at cancel), their outputs with
            // the one before: both expire no later than the saga's recorded maxima.
            "DELETE FROM credit_sagas
             WHERE state <> 'pending' AND inputs_expiry <= $1 AND outputs_expiry <= $1",
        ]
        .into_iter()
        .enumerate()
        {
            counts[n] = sqlx::query(sql)
                .bind(cutoff)
                .execute(&mut *tx)
                .await
                .map_err(q)?
                .rows_affected();
        }
        tx.commit().await.map_err(q)?;
        Ok(PruneReport {
            inputs: counts[0],
            outputs: counts[1],
            sagas: counts[2],
        })
    }

    // ---- issuance -----------------------------------------------------------------------

    /// Records credits issued after a redemption, keyed by the redemption's envelope digest,
    /// and reserves their outputs, in one transaction. The first record for a digest stands:
    /// a retry gets its signatures back ([`IssuanceOutcome::Replay`]), so one redemption is
    /// never paid twice. An output already used refuses the issuance with nothing written
    /// (the wallet may retry the same redemption with fresh outputs).
    ///
    /// Issuance records are never pruned: the coordinator answers a retried redemption with
    /// its stored receipt forever, so forgetting the digest would let the operator sign the
    /// same redemption's credits again.
    pub async fn record_issuance(&self, i: &NewIssuance) -> Result<IssuanceOutcome, StoreError> {
        let mut bs: Vec<&Point> = i.outputs.iter().collect();
        bs.sort();
        if let Some(w) = bs.windows(2).find(|w| w[0] == w[1]) {
            return Ok(IssuanceOutcome::OutputReused { b: *w[0] });
        }
        let mut tx = self.db.pool.begin().await.map_err(q)?;
        let fresh = sqlx::query(
            "INSERT INTO credit_issuances (digest, issued_at, final_expiry, signatures)
             VALUES ($1, $2, $3, $4) ON CONFLICT (digest) DO NOTHING RETURNING digest",
        )
        .bind(&i.digest[..])
        .bind(to_i64(i.now, "time")?)
        .bind(to_i64(i.final_expiry, "time")?)
        .bind(i.signatures.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(q)?;
        if fresh.is_none() {
            let first: String =
                sqlx::query_scalar("SELECT signatures FROM credit_issuances WHERE digest = $1")
                    .bind(&i.digest[..])
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(q)?;
            tx.rollback().await.map_err(q)?;
            return Ok(IssuanceOutcome::Replay(first));
        }
        let mut inserted: HashSet<Vec<u8>> = HashSet::with_capacity(bs.len());
        for chunk in bs.chunks(CHUNK) {
            let sql = format!(
                "INSERT INTO credit_outputs (b, final_expiry, issuance)
                 VALUES {} ON CONFLICT (b) DO NOTHING RETURNING b",
                values(chunk.len(), 3, 0, None)
            );
            let mut query = sqlx::query(&sql);
            for b in chunk {
                query = query
                    .bind(&b.as_bytes()[..])
                    .bind(to_i64(i.final_expiry, "time")?)
                    .bind(&i.digest[..]);
            }
            for row in query.fetch_all(&mut *tx).await.map_err(q)? {
                inserted.insert(row.try_get::<Vec<u8>, _>(0).map_err(q)?);
            }
        }
        if let Some(b) = bs.iter().find(|b| !inserted.contains(&b.as_bytes()[..])) {
            tx.rollback().await.map_err(q)?;
            return Ok(IssuanceOutcome::OutputReused { b: **b });
        }
        tx.commit().await.map_err(q)?;
        Ok(IssuanceOutcome::Issued(i.signatures.clone()))
    }

    // ---- restore (NUT-09) ------------------------------------------------------------------

    /// For each of `bs` that was signed, what signed it: the finished spend it was change of
    /// (its outputs JSON and signatures JSON, in output order) or the issuance it was part of
    /// (its signatures JSON). Outputs never signed, reserved by a spend still pending, or
    /// pruned are absent. One query per [`CHUNK`] outputs, by primary key.
    pub async fn signed_outputs(
        &self,
        bs: &[Point],
    ) -> Result<HashMap<Point, SignedBy>, StoreError> {
        let mut found = HashMap::new();
        for chunk in bs.chunks(CHUNK) {
            let sql = format!(
                "SELECT o.b, s.outputs AS saga_outputs, s.signatures AS saga_signatures,
                        i.signatures AS issued
                 FROM credit_outputs o
                 LEFT JOIN credit_sagas s ON s.id = o.saga_id AND s.state = 'done'
                 LEFT JOIN credit_issuances i ON i.digest = o.issuance
                 WHERE o.b IN ({})",
                placeholders(chunk.len(), 0)
            );
            let mut query = sqlx::query(&sql);
            for b in chunk {
                query = query.bind(&b.as_bytes()[..]);
            }
            for row in query.fetch_all(&self.db.pool).await.map_err(q)? {
                let b: Vec<u8> = row.try_get("b").map_err(q)?;
                let b = <[u8; 33]>::try_from(b.as_slice())
                    .ok()
                    .and_then(|b| Point::from_bytes(&b).ok())
                    .ok_or_else(|| StoreError::Corrupt("stored output is not a point".into()))?;
                let saga_outputs: Option<String> = row.try_get("saga_outputs").map_err(q)?;
                let saga_signatures: Option<String> = row.try_get("saga_signatures").map_err(q)?;
                let issued: Option<String> = row.try_get("issued").map_err(q)?;
                let by = match (saga_outputs, saga_signatures, issued) {
                    (Some(outputs), Some(signatures), _) => SignedBy::Spend {
                        outputs,
                        signatures,
                    },
                    (_, _, Some(signatures)) => SignedBy::Issuance { signatures },
                    _ => continue,
                };
                found.insert(b, by);
            }
        }
        Ok(found)
    }

    /// The signatures issued for a redemption, if any.
    /// The index of the first of `outputs` that was signed before (for a swap's change or
    /// an issuance), if any: what a request can be refused for before anything is spent.
    /// [`Self::record_issuance`] and the swap's begin still decide, atomically.
    pub async fn first_signed(&self, outputs: &[Point]) -> Result<Option<usize>, StoreError> {
        let mut signed: HashSet<Vec<u8>> = HashSet::new();
        for chunk in outputs.chunks(CHUNK) {
            let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT b FROM credit_outputs WHERE b IN ({})",
                marks.join(", ")
            );
            let mut query = sqlx::query_scalar::<_, Vec<u8>>(&sql);
            for b in chunk {
                query = query.bind(&b.as_bytes()[..]);
            }
            signed.extend(query.fetch_all(&self.db.pool).await.map_err(q)?);
        }
        Ok(outputs
            .iter()
            .position(|b| signed.contains(&b.as_bytes()[..])))
    }

    pub async fn issuance(&self, digest: &[u8; 32]) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT signatures FROM credit_issuances WHERE digest = $1")
            .bind(&digest[..])
            .fetch_optional(&self.db.pool)
            .await
            .map_err(q)
    }
}

/// `(…), (…)` for `rows` rows of `cols` parameters numbered after `offset`, each row ending
/// with the literal `tail` if given.
fn values(rows: usize, cols: usize, offset: usize, tail: Option<&str>) -> String {
    let mut s = String::with_capacity(rows * cols * 5);
    for r in 0..rows {
        if r > 0 {
            s.push_str(", ");
        }
        s.push('(');
        for c in 0..cols {
            if c > 0 {
                s.push_str(", ");
            }
            s.push_str(&format!("${}", offset + r * cols + c + 1));
        }
        if let Some(t) = tail {
            s.push_str(", ");
            s.push_str(t);
        }
        s.push(')');
    }
    s
}

/// The 33-byte encodings of `points`, concatenated.
fn concat<'a>(points: impl Iterator<Item = &'a Point>) -> Vec<u8> {
    points.flat_map(|p| p.as_bytes().iter().copied()).collect()
}

/// `$k, …` for `n` parameters numbered after `offset`.
fn placeholders(n: usize, offset: usize) -> String {
    (1..=n)
        .map(|k| format!("${}", offset + k))
        .collect::<Vec<_>>()
        .join(", ")
}

fn bind_all<'q, S>(
    mut query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    items: &'q [S],
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>
where
    S: AsRef<str>,
{
    for s in items {
        query = query.bind(s.as_ref());
    }
    query
}

/// The states of the sagas `ids` that exist.
async fn states_of(
    tx: &mut Transaction<'static, Any>,
    ids: &[&str],
) -> Result<HashMap<String, SagaState>, StoreError> {
    let mut out = HashMap::new();
    for chunk in ids.chunks(CHUNK) {
        let sql = format!(
            "SELECT id, state FROM credit_sagas WHERE id IN ({})",
            placeholders(chunk.len(), 0)
        );
        for row in bind_all(sqlx::query(&sql), chunk)
            .fetch_all(&mut **tx)
            .await
            .map_err(q)?
        {
            let state: String = row.try_get("state").map_err(q)?;
            out.insert(row.try_get("id").map_err(q)?, SagaState::parse(&state)?);
        }
    }
    Ok(out)
}

/// A PostgreSQL deadlock or serialization failure: the transaction was rolled back and may
/// be retried.
fn is_deadlock(e: &StoreError) -> bool {
    match e {
        StoreError::Db(sqlx::Error::Database(d)) => {
            matches!(d.code().as_deref(), Some("40P01") | Some("40001"))
        }
        _ => false,
    }
}

fn saga_row(r: &AnyRow) -> Result<Saga, StoreError> {
    let state: String = r.try_get("state").map_err(q)?;
    let finished: Option<i64> = r.try_get("finished_at").map_err(q)?;
    Ok(Saga {
        id: r.try_get("id").map_err(q)?,
        state: SagaState::parse(&state)?,
        created_at: to_u64(r.try_get("created_at").map_err(q)?, "time")?,
        finished_at: finished.map(|t| to_u64(t, "time")).transpose()?,
        outputs_expiry: to_u64(r.try_get("outputs_expiry").map_err(q)?, "time")?,
        outputs: r.try_get("outputs").map_err(q)?,
        signatures: r.try_get("signatures").map_err(q)?,
    })
}
