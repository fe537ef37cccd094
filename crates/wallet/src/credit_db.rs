//! The wallet file's credit tables (schema version 3, see `db::MIGRATIONS`): NUT-13
//! counters, verified keysets, tokens, unfinished spends and the outputs of pending
//! redemptions.
//!
//! Tokens move `unspent → pending → spent` (or back to `unspent` when a spend is refused or
//! cancelled) by compare-and-set on the state, so two processes on one file cannot both take
//! a token into a spend.

use crate::db::{to_i64, to_u64};
use crate::error::WalletError;
use serde::{Deserialize, Serialize};
use smpx_core::Amount;
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::{Row, Sqlite, Transaction};

/// Reserves `n` NUT-13 counters of keyset `keyset_id` and commits at once: they are used
/// from here on, whatever happens to the request, so no crash can make two outputs share a
/// secret. Returns the first.
pub(crate) async fn reserve_counters(
    pool: &SqlitePool,
    keyset_id: &str,
    n: u32,
) -> Result<u32, WalletError> {
    let next: i64 = sqlx::query_scalar(
        "INSERT INTO credit_counters (keyset_id, next_counter) VALUES (?, ?) \
         ON CONFLICT (keyset_id) DO UPDATE SET next_counter = next_counter + excluded.next_counter \
         RETURNING next_counter",
    )
    .bind(keyset_id)
    .bind(i64::from(n))
    .fetch_one(pool)
    .await?;
    u32::try_from(next - i64::from(n))
        .map_err(|_| WalletError::Corrupt("NUT-13 counter out of range".into()))
}

/// Moves the counter of `keyset_id` up to `at_least` (never down).
pub(crate) async fn raise_counter(
    pool: &SqlitePool,
    keyset_id: &str,
    at_least: u32,
) -> Result<(), WalletError> {
    sqlx::query(
        "INSERT INTO credit_counters (keyset_id, next_counter) VALUES (?, ?) \
         ON CONFLICT (keyset_id) DO UPDATE SET \
         next_counter = MAX(next_counter, excluded.next_counter)",
    )
    .bind(keyset_id)
    .bind(i64::from(at_least))
    .execute(pool)
    .await?;
    Ok(())
}

pub(crate) async fn counter(pool: &SqlitePool, keyset_id: &str) -> Result<u32, WalletError> {
    let v: Option<i64> =
        sqlx::query_scalar("SELECT next_counter FROM credit_counters WHERE keyset_id = ?")
            .bind(keyset_id)
            .fetch_optional(pool)
            .await?;
    u32::try_from(v.unwrap_or(0)).map_err(|_| WalletError::Corrupt("NUT-13 counter".into()))
}

/// A keyset's keys (JSON), stored only after they were checked against the id.
pub(crate) async fn keyset(
    pool: &SqlitePool,
    operator_id: &str,
    keyset_id: &str,
) -> Result<Option<String>, WalletError> {
    Ok(sqlx::query_scalar(
        "SELECT keys FROM credit_keysets WHERE operator_id = ? AND keyset_id = ?",
    )
    .bind(operator_id)
    .bind(keyset_id)
    .fetch_optional(pool)
    .await?)
}

pub(crate) async fn put_keyset(
    pool: &SqlitePool,
    operator_id: &str,
    keyset_id: &str,
    final_expiry: u64,
    keys: &str,
) -> Result<(), WalletError> {
    sqlx::query(
        "INSERT INTO credit_keysets (operator_id, keyset_id, final_expiry, keys) \
         VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
    )
    .bind(operator_id)
    .bind(keyset_id)
    .bind(to_i64(final_expiry)?)
    .bind(keys)
    .execute(pool)
    .await?;
    Ok(())
}

/// One output of a request, without secrets: its amount and the NUT-13 counter its secret
/// and blinding factor are derived from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OutputPlan {
    pub amount: u64,
    pub counter: u32,
}

/// The outputs kept for a redemption: under `keyset_id`, in request order.
pub(crate) struct IssuancePlan {
    pub keyset_id: String,
    pub outputs: Vec<OutputPlan>,
}

fn json<T: Serialize>(v: &T) -> Result<String, WalletError> {
    serde_json::to_string(v).map_err(|e| WalletError::Corrupt(format!("encoding: {e}")))
}

fn parse<T: for<'de> Deserialize<'de>>(text: &str, what: &str) -> Result<T, WalletError> {
    serde_json::from_str(text).map_err(|e| WalletError::Corrupt(format!("stored {what}: {e}")))
}

/// Stores the outputs for a redemption unless some are stored already; returns the stored
/// ones (so concurrent attempts converge on one set, like envelopes).
pub(crate) async fn put_issuance(
    pool: &SqlitePool,
    voucher_id: i64,
    operator_id: &str,
    request_key: &str,
    plan: &IssuancePlan,
    now: u64,
) -> Result<IssuancePlan, WalletError> {
    sqlx::query(
        "INSERT INTO credit_issuances (voucher_id, operator_id, request_key, keyset_id, \
         outputs, created_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
    )
    .bind(voucher_id)
    .bind(operator_id)
    .bind(request_key)
    .bind(&plan.keyset_id)
    .bind(json(&plan.outputs)?)
    .bind(to_i64(now)?)
    .execute(pool)
    .await?;
    issuance(pool, voucher_id, operator_id, request_key)
        .await?
        .ok_or_else(|| WalletError::Corrupt("stored redemption outputs vanished".into()))
}

pub(crate) async fn issuance(
    pool: &SqlitePool,
    voucher_id: i64,
    operator_id: &str,
    request_key: &str,
) -> Result<Option<IssuancePlan>, WalletError> {
    let row = sqlx::query(
        "SELECT keyset_id, outputs FROM credit_issuances \
         WHERE voucher_id = ? AND operator_id = ? AND request_key = ?",
    )
    .bind(voucher_id)
    .bind(operator_id)
    .bind(request_key)
    .fetch_optional(pool)
    .await?;
    row.map(|r| {
        let outputs: String = r.try_get("outputs")?;
        Ok(IssuancePlan {
            keyset_id: r.try_get("keyset_id")?,
            outputs: parse(&outputs, "redemption outputs")?,
        })
    })
    .transpose()
}

/// Forgets the outputs kept for a redemption (the operator refused them: the next attempt
/// makes new ones).
pub(crate) async fn delete_issuance(
    pool: &SqlitePool,
    voucher_id: i64,
    operator_id: &str,
    request_key: &str,
) -> Result<(), WalletError> {
    sqlx::query(
        "DELETE FROM credit_issuances WHERE voucher_id = ? AND operator_id = ? \
         AND request_key = ?",
    )
    .bind(voucher_id)
    .bind(operator_id)
    .bind(request_key)
    .execute(pool)
    .await?;
    Ok(())
}

/// Where a token came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    Redeem,
    Change,
    Restore,
}

impl Origin {
    fn as_str(self) -> &'static str {
        match self {
            Origin::Redeem => "redeem",
            Origin::Change => "change",
            Origin::Restore => "restore",
        }
    }
}

/// A token to store: checked (DLEQ against the published key) and unblinded. (`Debug` shows
/// the sealed proof only.)
#[derive(Debug)]
pub(crate) struct NewToken<'a> {
    pub operator_id: &'a str,
    pub keyset_id: String,
    pub amount: u64,
    pub y: String,
    pub c: String,
    /// The sealed `Proof` JSON (secret, `C`, DLEQ with `r`).
    pub proof_enc: Vec<u8>,
    pub counter: Option<u32>,
    pub final_expiry: u64,
    pub origin: Origin,
    pub voucher_id: Option<i64>,
}

/// Inserts an unspent token; a token already there (same `Y`) is kept as it is. Returns
/// whether it was new.
pub(crate) async fn insert_token(
    tx: &mut Transaction<'_, Sqlite>,
    t: &NewToken<'_>,
    now: u64,
) -> Result<bool, WalletError> {
    let done = sqlx::query(
        "INSERT INTO credit_tokens (operator_id, keyset_id, amount, y, c, proof_enc, counter, \
         final_expiry, state, origin, voucher_id, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'unspent', ?, ?, ?, ?) ON CONFLICT (y) DO NOTHING",
    )
    .bind(t.operator_id)
    .bind(&t.keyset_id)
    .bind(to_i64(t.amount)?)
    .bind(&t.y)
    .bind(&t.c)
    .bind(&t.proof_enc)
    .bind(t.counter.map(i64::from))
    .bind(to_i64(t.final_expiry)?)
    .bind(t.origin.as_str())
    .bind(t.voucher_id)
    .bind(to_i64(now)?)
    .bind(to_i64(now)?)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Inserts tokens in one transaction; returns how many were new.
pub(crate) async fn insert_tokens(
    pool: &SqlitePool,
    tokens: &[NewToken<'_>],
    now: u64,
) -> Result<u64, WalletError> {
    let mut tx = pool.begin().await?;
    let mut fresh = 0;
    for t in tokens {
        if insert_token(&mut tx, t, now).await? {
            fresh += 1;
        }
    }
    tx.commit().await?;
    Ok(fresh)
}

/// A stored token with its sealed proof.
pub(crate) struct TokenRow {
    pub id: i64,
    pub operator_id: String,
    pub keyset_id: String,
    pub amount: u64,
    pub y: String,
    pub proof_enc: Vec<u8>,
    pub counter: Option<u32>,
    pub final_expiry: u64,
    pub state: String,
    pub origin: String,
    pub voucher_id: Option<i64>,
}

const TOKEN_COLUMNS: &str = "id, operator_id, keyset_id, amount, y, proof_enc, counter, \
    final_expiry, state, origin, voucher_id";

fn token_row(r: &SqliteRow) -> Result<TokenRow, WalletError> {
    Ok(TokenRow {
        id: r.try_get("id")?,
        operator_id: r.try_get("operator_id")?,
        keyset_id: r.try_get("keyset_id")?,
        amount: to_u64(r.try_get("amount")?, "amount")?,
        y: r.try_get("y")?,
        proof_enc: r.try_get("proof_enc")?,
        counter: r
            .try_get::<Option<i64>, _>("counter")?
            .map(|c| u32::try_from(c).map_err(|_| WalletError::Corrupt("token counter".into())))
            .transpose()?,
        final_expiry: to_u64(r.try_get("final_expiry")?, "final expiry")?,
        state: r.try_get("state")?,
        origin: r.try_get("origin")?,
        voucher_id: r.try_get("voucher_id")?,
    })
}

/// Every token (of one operator, if given), oldest first.
pub(crate) async fn tokens(
    pool: &SqlitePool,
    operator_id: Option<&str>,
) -> Result<Vec<TokenRow>, WalletError> {
    let rows = match operator_id {
        Some(op) => {
            sqlx::query(&format!(
                "SELECT {TOKEN_COLUMNS} FROM credit_tokens WHERE operator_id = ? ORDER BY id"
            ))
            .bind(op)
            .fetch_all(pool)
            .await?
        }
        None => {
            sqlx::query(&format!(
                "SELECT {TOKEN_COLUMNS} FROM credit_tokens ORDER BY id"
            ))
            .fetch_all(pool)
            .await?
        }
    };
    rows.iter().map(token_row).collect()
}

/// Unspent tokens of `operator_id` valid until after `valid_after`, largest first (then the
/// soonest to expire).
pub(crate) async fn spendable(
    pool: &SqlitePool,
    operator_id: &str,
    valid_after: u64,
) -> Result<Vec<TokenRow>, WalletError> {
    let rows = sqlx::query(&format!(
        "SELECT {TOKEN_COLUMNS} FROM credit_tokens \
         WHERE operator_id = ? AND state = 'unspent' AND final_expiry > ? \
         ORDER BY amount DESC, final_expiry, id"
    ))
    .bind(operator_id)
    .bind(to_i64(valid_after)?)
    .fetch_all(pool)
    .await?;
    rows.iter().map(token_row).collect()
}

pub(crate) async fn tokens_by_id(
    pool: &SqlitePool,
    ids: &[i64],
) -> Result<Vec<TokenRow>, WalletError> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let row = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM credit_tokens WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| WalletError::Corrupt(format!("credit token {id} vanished")))?;
        out.push(token_row(&row)?);
    }
    Ok(out)
}

/// A spend that was sent (or is about to be).
pub(crate) struct SpendRow {
    pub id: String,
    pub operator_id: String,
    pub paid: u64,
    pub keyset_id: String,
    pub inputs: Vec<i64>,
    pub outputs: Vec<OutputPlan>,
}

/// Records a spend as pending and takes its inputs (`unspent → pending`), in one
/// transaction. False (nothing written) if an input was not unspent any more, or the spend
/// exists already.
pub(crate) async fn begin_spend(
    pool: &SqlitePool,
    s: &SpendRow,
    now: u64,
) -> Result<bool, WalletError> {
    let mut tx = pool.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO credit_spends (id, operator_id, paid, keyset_id, inputs, outputs, state, \
         created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?) \
         ON CONFLICT DO NOTHING",
    )
    .bind(&s.id)
    .bind(&s.operator_id)
    .bind(to_i64(s.paid)?)
    .bind(&s.keyset_id)
    .bind(json(&s.inputs)?)
    .bind(json(&s.outputs)?)
    .bind(to_i64(now)?)
    .bind(to_i64(now)?)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted != 1 {
        return Ok(false);
    }
    for id in &s.inputs {
        let taken = sqlx::query(
            "UPDATE credit_tokens SET state = 'pending', spend_id = ?, updated_at = ? \
             WHERE id = ? AND state = 'unspent'",
        )
        .bind(&s.id)
        .bind(to_i64(now)?)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if taken != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
    }
    tx.commit().await?;
    Ok(true)
}

fn spend_row(r: &SqliteRow) -> Result<SpendRow, WalletError> {
    let inputs: String = r.try_get("inputs")?;
    let outputs: String = r.try_get("outputs")?;
    Ok(SpendRow {
        id: r.try_get("id")?,
        operator_id: r.try_get("operator_id")?,
        paid: to_u64(r.try_get("paid")?, "paid")?,
        keyset_id: r.try_get("keyset_id")?,
        inputs: parse(&inputs, "spend inputs")?,
        outputs: parse(&outputs, "spend outputs")?,
    })
}

/// Pending spends of `operator_id`, oldest first.
pub(crate) async fn pending_spends(
    pool: &SqlitePool,
    operator_id: &str,
) -> Result<Vec<SpendRow>, WalletError> {
    let rows = sqlx::query(
        "SELECT id, operator_id, paid, keyset_id, inputs, outputs FROM credit_spends \
         WHERE operator_id = ? AND state = 'pending' ORDER BY created_at, id",
    )
    .bind(operator_id)
    .fetch_all(pool)
    .await?;
    rows.iter().map(spend_row).collect()
}

/// Completes a pending spend: its inputs are spent and its change stored, in one
/// transaction. False if the spend was not pending any more (another process finished it).
pub(crate) async fn complete_spend(
    pool: &SqlitePool,
    spend_id: &str,
    change: &[NewToken<'_>],
    now: u64,
) -> Result<bool, WalletError> {
    let mut tx = pool.begin().await?;
    let done = sqlx::query(
        "UPDATE credit_spends SET state = 'done', updated_at = ? WHERE id = ? AND state = 'pending'",
    )
    .bind(to_i64(now)?)
    .bind(spend_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if done != 1 {
        return Ok(false);
    }
    sqlx::query(
        "UPDATE credit_tokens SET state = 'spent', updated_at = ? \
         WHERE spend_id = ? AND state = 'pending'",
    )
    .bind(to_i64(now)?)
    .bind(spend_id)
    .execute(&mut *tx)
    .await?;
    for t in change {
        insert_token(&mut tx, t, now).await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// Ends a pending spend that the operator did not carry out (`cancelled`: it refunded the
/// inputs; `refused`: it never took them). The inputs in `spent` are marked spent (the
/// operator says another spend took them); the others return to unspent.
pub(crate) async fn abandon_spend(
    pool: &SqlitePool,
    spend_id: &str,
    state: &str,
    spent: &[i64],
    now: u64,
) -> Result<bool, WalletError> {
    let mut tx = pool.begin().await?;
    let changed = sqlx::query(
        "UPDATE credit_spends SET state = ?, updated_at = ? WHERE id = ? AND state = 'pending'",
    )
    .bind(state)
    .bind(to_i64(now)?)
    .bind(spend_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if changed != 1 {
        return Ok(false);
    }
    for id in spent {
        sqlx::query(
            "UPDATE credit_tokens SET state = 'spent', updated_at = ? \
             WHERE id = ? AND spend_id = ? AND state = 'pending'",
        )
        .bind(to_i64(now)?)
        .bind(id)
        .bind(spend_id)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(
        "UPDATE credit_tokens SET state = 'unspent', spend_id = NULL, updated_at = ? \
         WHERE spend_id = ? AND state = 'pending'",
    )
    .bind(to_i64(now)?)
    .bind(spend_id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// Unspent, unexpired value per operator.
pub(crate) async fn unspent_by_operator(
    pool: &SqlitePool,
    valid_after: u64,
) -> Result<Vec<(String, Amount)>, WalletError> {
    let rows = sqlx::query(
        "SELECT operator_id, SUM(amount) AS total FROM credit_tokens \
         WHERE state = 'unspent' AND final_expiry > ? GROUP BY operator_id ORDER BY operator_id",
    )
    .bind(to_i64(valid_after)?)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("operator_id")?,
                Amount(to_u64(r.try_get("total")?, "credit total")?),
            ))
        })
        .collect()
}
