//! The issuer's tables: its blind-signing keys, prepaid top-up codes and sales.
//!
//! A sale is one transaction: consume the payment (a top-up code is marked used under a
//! conditional update, so a code sells exactly one voucher even with concurrent requests),
//! charge the issuing limit on a one-row counter, record the sale. Signing happens after the
//! commit; a lost answer is recovered by retrying with the same code and blinded message,
//! which signs again without charging again.

use crate::db::{q, to_i64, to_u64, Db, StoreError};
use smpx_core::Amount;
use sqlx::any::AnyRow;
use sqlx::Row;

const MIGRATIONS: &[&[&str]] = &[&[
    "CREATE TABLE signing_keys (
        key_id {blob} PRIMARY KEY,
        denomination BIGINT NOT NULL,
        period BIGINT NOT NULL,
        secret_der {blob} NOT NULL,
        public_spki {blob} NOT NULL,
        created_at BIGINT NOT NULL,
        registered INTEGER NOT NULL DEFAULT 0,
        UNIQUE (denomination, period))",
    "CREATE TABLE topup_codes (
        code_hash {blob} PRIMARY KEY,
        batch_id TEXT NOT NULL,
        denomination BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        used_at BIGINT,
        blinded_hash {blob})",
    "CREATE TABLE issuer_state (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        sold_units BIGINT NOT NULL CHECK (sold_units >= 0))",
    "INSERT INTO issuer_state (id, sold_units) VALUES (1, 0)",
    "CREATE TABLE sales (
        id {serial},
        at BIGINT NOT NULL,
        denomination BIGINT NOT NULL,
        value_units BIGINT NOT NULL,
        key_id {blob} NOT NULL,
        method TEXT NOT NULL)",
]];

/// A stored signing key.
#[derive(Clone)]
pub struct SigningKeyRow {
    pub key_id: [u8; 32],
    pub denomination: u64,
    pub period: u64,
    /// The RSA secret key as the issuer stores it: its DER encrypted under the issuer's
    /// key-encryption key (`smpx_issuer::wrap`), or plain DER in rows from before keys were
    /// encrypted (the issuer encrypts those at start). Never logged.
    pub secret_der: Vec<u8>,
    pub public_spki: Vec<u8>,
    pub registered: bool,
}

impl std::fmt::Debug for SigningKeyRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyRow")
            .field("key_id", &hex::encode(self.key_id))
            .field("denomination", &self.denomination)
            .field("period", &self.period)
            .field("registered", &self.registered)
            .finish_non_exhaustive()
    }
}

/// How a sale is paid, as the store sees it.
#[derive(Clone, Debug)]
pub enum SalePayment {
    /// Consume this top-up code (its SHA-256).
    TopupCode { code_hash: [u8; 32] },
    /// Devnet: nothing to consume.
    Devnet,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SaleOutcome {
    /// Recorded; sign and answer.
    Sold,
    /// This code already bought a voucher for this very blinded message: sign again, the
    /// sale was already counted.
    Retry,
    /// Unknown code, used code, or a code of another denomination.
    CodeRejected,
    /// The sale would exceed the issuing limit.
    LimitExceeded,
}

#[derive(Clone, Debug)]
pub struct NewSale {
    pub at: u64,
    pub denomination: u64,
    pub value: Amount,
    pub key_id: [u8; 32],
    pub blinded_hash: [u8; 32],
    pub payment: SalePayment,
    /// The limit the coordinator reported for this issuer.
    pub limit: Amount,
}

#[derive(Clone, Debug)]
pub struct IssuerStore {
    db: Db,
}

impl IssuerStore {
    pub async fn open(db: Db) -> Result<Self, StoreError> {
        db.migrate("issuer", MIGRATIONS).await?;
        Ok(IssuerStore { db })
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Stores a new signing key; a second key for the same denomination and period is a
    /// [`StoreError::Duplicate`] (two processes racing to create it: one wins, both use it).
    pub async fn insert_key(&self, k: &SigningKeyRow, now: u64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO signing_keys (key_id, denomination, period, secret_der, public_spki, created_at, registered)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&k.key_id[..])
        .bind(to_i64(k.denomination, "denomination")?)
        .bind(to_i64(k.period, "period")?)
        .bind(&k.secret_der[..])
        .bind(&k.public_spki[..])
        .bind(to_i64(now, "time")?)
        .bind(i64::from(k.registered))
        .execute(&self.db.pool)
        .await
        .map_err(q)?;
        Ok(())
    }

    /// Every signing key's id and stored secret (to wrap rows written before keys were
    /// encrypted at rest).
    pub async fn stored_secrets(&self) -> Result<Vec<([u8; 32], Vec<u8>)>, StoreError> {
        let rows = sqlx::query("SELECT key_id, secret_der FROM signing_keys")
            .fetch_all(&self.db.pool)
            .await
            .map_err(q)?;
        rows.iter()
            .map(|r| {
                let id: Vec<u8> = r.try_get("key_id").map_err(q)?;
                let id = id
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("key id length".into()))?;
                Ok((id, r.try_get("secret_der").map_err(q)?))
            })
            .collect()
    }

    /// Replaces a key's stored secret with `from` by `to` (a compare-and-set, so two
    /// processes wrapping the same row at once both succeed and one write stands).
    pub async fn replace_secret(
        &self,
        key_id: &[u8; 32],
        from: &[u8],
        to: &[u8],
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE signing_keys SET secret_der = $1 WHERE key_id = $2 AND secret_der = $3",
        )
        .bind(to)
        .bind(&key_id[..])
        .bind(from)
        .execute(&self.db.pool)
        .await
        .map_err(q)?;
        Ok(())
    }

    pub async fn mark_registered(&self, key_id: &[u8; 32]) -> Result<(), StoreError> {
        sqlx::query("UPDATE signing_keys SET registered = 1 WHERE key_id = $1")
            .bind(&key_id[..])
            .execute(&self.db.pool)
            .await
            .map_err(q)?;
        Ok(())
    }

    pub async fn key_for(
        &self,
        denomination: u64,
        period: u64,
    ) -> Result<Option<SigningKeyRow>, StoreError> {
        let row = sqlx::query(
            "SELECT key_id, denomination, period, secret_der, public_spki, registered
             FROM signing_keys WHERE denomination = $1 AND period = $2",
        )
        .bind(to_i64(denomination, "denomination")?)
        .bind(to_i64(period, "period")?)
        .fetch_optional(&self.db.pool)
        .await
        .map_err(q)?;
        row.map(|r| key_row(&r)).transpose()
    }

    pub async fn key(&self, key_id: &[u8; 32]) -> Result<Option<SigningKeyRow>, StoreError> {
        let row = sqlx::query(
            "SELECT key_id, denomination, period, secret_der, public_spki, registered
             FROM signing_keys WHERE key_id = $1",
        )
        .bind(&key_id[..])
        .fetch_optional(&self.db.pool)
        .await
        .map_err(q)?;
        row.map(|r| key_row(&r)).transpose()
    }

    /// Stores a batch of top-up code digests.
    pub async fn insert_codes(
        &self,
        batch_id: &str,
        denomination: u64,
        code_hashes: &[[u8; 32]],
        now: u64,
    ) -> Result<(), StoreError> {
        let mut tx = self.db.pool.begin().await.map_err(q)?;
        for h in code_hashes {
            sqlx::query(
                "INSERT INTO topup_codes (code_hash, batch_id, denomination, created_at)
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(&h[..])
            .bind(batch_id)
            .bind(to_i64(denomination, "denomination")?)
            .bind(to_i64(now, "time")?)
            .execute(&mut *tx)
            .await
            .map_err(q)?;
        }
        tx.commit().await.map_err(q)?;
        Ok(())
    }

    /// Records a sale (see the module doc).
    pub async fn sell(&self, s: &NewSale) -> Result<SaleOutcome, StoreError> {
        let mut tx = self.db.pool.begin().await.map_err(q)?;
        let method = match &s.payment {
            SalePayment::TopupCode { code_hash } => {
                let used = sqlx::query(
                    "UPDATE topup_codes SET used_at = $1, blinded_hash = $2
                     WHERE code_hash = $3 AND used_at IS NULL AND denomination = $4",
                )
                .bind(to_i64(s.at, "time")?)
                .bind(&s.blinded_hash[..])
                .bind(&code_hash[..])
                .bind(to_i64(s.denomination, "denomination")?)
                .execute(&mut *tx)
                .await
                .map_err(q)?;
                if used.rows_affected() != 1 {
                    let prev: Option<Option<Vec<u8>>> = sqlx::query_scalar(
                        "SELECT blinded_hash FROM topup_codes WHERE code_hash = $1 AND denomination = $2",
                    )
                    .bind(&code_hash[..])
                    .bind(to_i64(s.denomination, "denomination")?)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(q)?;
                    tx.rollback().await.map_err(q)?;
                    return Ok(match prev {
                        Some(Some(b)) if b == s.blinded_hash => SaleOutcome::Retry,
                        _ => SaleOutcome::CodeRejected,
                    });
                }
                "topup_code"
            }
            SalePayment::Devnet => "devnet",
        };
        let charged = sqlx::query(
            "UPDATE issuer_state SET sold_units = sold_units + $1
             WHERE id = 1 AND sold_units + $1 <= $2",
        )
        .bind(to_i64(s.value.0, "value")?)
        .bind(to_i64(s.limit.0, "limit")?)
        .execute(&mut *tx)
        .await
        .map_err(q)?;
        if charged.rows_affected() != 1 {
            tx.rollback().await.map_err(q)?;
            return Ok(SaleOutcome::LimitExceeded);
        }
        sqlx::query(
            "INSERT INTO sales (at, denomination, value_units, key_id, method) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(to_i64(s.at, "time")?)
        .bind(to_i64(s.denomination, "denomination")?)
        .bind(to_i64(s.value.0, "value")?)
        .bind(&s.key_id[..])
        .bind(method)
        .execute(&mut *tx)
        .await
        .map_err(q)?;
        tx.commit().await.map_err(q)?;
        Ok(SaleOutcome::Sold)
    }

    /// Did this top-up code already buy a voucher for exactly this blinded message? (A
    /// buyer retrying after a lost answer.)
    pub async fn is_retry(
        &self,
        code_hash: &[u8; 32],
        blinded_hash: &[u8; 32],
        denomination: u64,
    ) -> Result<bool, StoreError> {
        let prev: Option<Option<Vec<u8>>> = sqlx::query_scalar(
            "SELECT blinded_hash FROM topup_codes WHERE code_hash = $1 AND denomination = $2",
        )
        .bind(&code_hash[..])
        .bind(to_i64(denomination, "denomination")?)
        .fetch_optional(&self.db.pool)
        .await
        .map_err(q)?;
        Ok(matches!(prev, Some(Some(b)) if b == blinded_hash))
    }

    /// Total value sold so far.
    pub async fn sold(&self) -> Result<Amount, StoreError> {
        let v: i64 = sqlx::query_scalar("SELECT sold_units FROM issuer_state WHERE id = 1")
            .fetch_one(&self.db.pool)
            .await
            .map_err(q)?;
        Ok(Amount(to_u64(v, "sold")?))
    }

    /// (unused, used) top-up codes.
    pub async fn code_counts(&self) -> Result<(u64, u64), StoreError> {
        let unused: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM topup_codes WHERE used_at IS NULL")
                .fetch_one(&self.db.pool)
                .await
                .map_err(q)?;
        let used: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM topup_codes WHERE used_at IS NOT NULL")
                .fetch_one(&self.db.pool)
                .await
                .map_err(q)?;
        Ok((to_u64(unused, "count")?, to_u64(used, "count")?))
    }
}

fn key_row(r: &AnyRow) -> Result<SigningKeyRow, StoreError> {
    let id: Vec<u8> = r.try_get("key_id").map_err(q)?;
    Ok(SigningKeyRow {
        key_id: id
            .try_into()
            .map_err(|_| StoreError::Corrupt("key id is not 32 bytes".into()))?,
        denomination: to_u64(r.try_get("denomination").map_err(q)?, "denomination")?,
        period: to_u64(r.try_get("period").map_err(q)?, "period")?,
        secret_der: r.try_get("secret_der").map_err(q)?,
        public_spki: r.try_get("public_spki").map_err(q)?,
        registered: r.try_get::<i64, _>("registered").map_err(q)? == 1,
    })
}
