//! The operator's tables: the redemptions it forwarded and the receipts it gave, so a
//! wallet that retries (because an answer was lost) gets the same receipt, and the operator's
//! books survive restarts.

use crate::db::{q, to_i64, Db, StoreError};
use sqlx::Row;

const MIGRATIONS: &[&[&str]] = &[&["CREATE TABLE operator_redemptions (
        envelope_digest {blob} PRIMARY KEY,
        denomination BIGINT NOT NULL,
        credited_units BIGINT NOT NULL,
        operator_units BIGINT NOT NULL,
        at BIGINT NOT NULL,
        receipt TEXT NOT NULL)"]];

#[derive(Clone, Debug)]
pub struct NewOperatorRedemption {
    pub envelope_digest: [u8; 32],
    pub denomination: u64,
    pub credited_units: u64,
    pub operator_units: u64,
    pub at: u64,
    /// The signed receipt given to the wallet (JSON).
    pub receipt: String,
}

#[derive(Clone, Debug)]
pub struct OperatorStore {
    db: Db,
}

impl OperatorStore {
    pub async fn open(db: Db) -> Result<Self, StoreError> {
        db.migrate("operator", MIGRATIONS).await?;
        Ok(OperatorStore { db })
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Records a redemption; if this envelope was recorded before, keeps the first receipt
    /// and returns it.
    pub async fn record(&self, r: &NewOperatorRedemption) -> Result<String, StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO operator_redemptions (envelope_digest, denomination, credited_units, operator_units, at, receipt)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&r.envelope_digest[..])
        .bind(to_i64(r.denomination, "denomination")?)
        .bind(to_i64(r.credited_units, "credited")?)
        .bind(to_i64(r.operator_units, "operator share")?)
        .bind(to_i64(r.at, "time")?)
        .bind(&r.receipt)
        .execute(&self.db.pool)
        .await
        .map_err(q);
        match inserted {
            Ok(_) => Ok(r.receipt.clone()),
            Err(e) if e.is_duplicate() => self
                .receipt(&r.envelope_digest)
                .await?
                .ok_or_else(|| StoreError::Corrupt("redemption vanished".into())),
            Err(e) => Err(e),
        }
    }

    pub async fn receipt(&self, envelope_digest: &[u8; 32]) -> Result<Option<String>, StoreError> {
        let row =
            sqlx::query("SELECT receipt FROM operator_redemptions WHERE envelope_digest = $1")
                .bind(&envelope_digest[..])
                .fetch_optional(&self.db.pool)
                .await
                .map_err(q)?;
        row.map(|r| r.try_get("receipt").map_err(q)).transpose()
    }

    /// (number of redemptions, total credited units, total operator share units).
    pub async fn summary(&self) -> Result<(u64, u64, u64), StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, CAST(COALESCE(SUM(credited_units), 0) AS BIGINT) AS c,
                    CAST(COALESCE(SUM(operator_units), 0) AS BIGINT) AS o FROM operator_redemptions",
        )
        .fetch_one(&self.db.pool)
        .await
        .map_err(q)?;
        let get = |c: &str| -> Result<u64, StoreError> {
            let v: i64 = row.try_get(c).map_err(q)?;
            crate::db::to_u64(v, "sum")
        };
        Ok((get("n")?, get("c")?, get("o")?))
    }
}
