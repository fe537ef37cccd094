//! The coordinator's tables: issuer whitelist and keys, operators, published vouchers,
//! redemptions and the ledger.
//!
//! Every money-moving operation is one transaction whose first statement is a write guarded
//! by a constraint (`INSERT` under the voucher's primary key, or `UPDATE … WHERE state =
//! 'live'`), so whichever of two racing requests commits first wins and the other finds the
//! row changed — on SQLite and on PostgreSQL, in one process or many.
//!
//! The ledger's sequence numbers come from a one-row counter updated inside the same
//! transaction, just before the entries are inserted. That row lock orders all money
//! movements, so the public log has no gaps and a reader following it never misses an entry.

use crate::db::{q, to_i64, to_u64, Db, StoreError};
use smpx_core::api::{IssuerInfo, LedgerTotalsResponse, OperatorInfo, VoucherState};
use smpx_core::ledger::{Account, Entry, EntryKind, Posting, RedemptionNote, Totals};
use smpx_core::Amount;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

mod accumulator;

pub use accumulator::{Appended, MmrCache, MmrRow, NewZkRedemption, RootRow, ZkRedeemOutcome};

const MIGRATIONS: &[&[&str]] = &[
    &[
        "CREATE TABLE issuers (
        id TEXT PRIMARY KEY,
        token_hash {blob} NOT NULL,
        limit_units BIGINT NOT NULL CHECK (limit_units >= 0),
        published_units BIGINT NOT NULL DEFAULT 0 CHECK (published_units >= 0),
        active INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
        created_at BIGINT NOT NULL)",
        "CREATE TABLE issuer_keys (
        key_id {blob} PRIMARY KEY,
        issuer_id TEXT NOT NULL REFERENCES issuers(id),
        denomination BIGINT NOT NULL,
        period BIGINT NOT NULL,
        public_key {blob} NOT NULL,
        registered_at BIGINT NOT NULL,
        UNIQUE (issuer_id, denomination, period))",
        "CREATE TABLE operators (
        id TEXT PRIMARY KEY,
        token_hash {blob} NOT NULL,
        share_bps BIGINT NOT NULL CHECK (share_bps >= 0 AND share_bps <= 10000),
        created_at BIGINT NOT NULL)",
        "CREATE TABLE vouchers (
        commitment {blob} PRIMARY KEY,
        denomination BIGINT NOT NULL,
        value_units BIGINT NOT NULL CHECK (value_units > 0),
        issuer_id TEXT NOT NULL REFERENCES issuers(id),
        key_id {blob} NOT NULL REFERENCES issuer_keys(key_id),
        published_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('live', 'redeemed', 'released')))",
        "CREATE INDEX vouchers_state_expiry ON vouchers (state, expires_at)",
        "CREATE TABLE redemptions (
        commitment {blob} PRIMARY KEY REFERENCES vouchers(commitment),
        operator_id TEXT NOT NULL REFERENCES operators(id),
        envelope_digest {blob} NOT NULL,
        redeemed_at BIGINT NOT NULL,
        receipt TEXT NOT NULL)",
        "CREATE TABLE ledger_head (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seq BIGINT NOT NULL)",
        "INSERT INTO ledger_head (id, seq) VALUES (1, 0)",
        "CREATE TABLE ledger (
        seq BIGINT PRIMARY KEY,
        at BIGINT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('publish', 'redeem', 'release')),
        from_account TEXT NOT NULL,
        to_account TEXT NOT NULL,
        amount BIGINT NOT NULL CHECK (amount > 0))",
    ],
    accumulator::MIGRATION,
    // The signed receipt of each publication, keyed by its voucher, with the digest of the
    // request it answered: the identical request again gets it back (publish is idempotent).
    &["CREATE TABLE publish_receipts (
        commitment {blob} PRIMARY KEY REFERENCES vouchers(commitment),
        request_digest {blob} NOT NULL,
        receipt TEXT NOT NULL)"],
    // Counting a key's publications (its buyers' crowd, `GET /v1/issuer-keys`) reads this
    // index instead of every voucher.
    &["CREATE INDEX vouchers_key ON vouchers (key_id)"],
    // Operators' shares from directories' signed statements (issue 13): every statement
    // taken, by its digest (a ledger entry names the one that set its share, so they are
    // kept), an administrator's suspension, and each ledger entry's share source.
    &[
        "CREATE TABLE share_statements (
        digest TEXT PRIMARY KEY,
        operator_id TEXT NOT NULL REFERENCES operators(id),
        period_start BIGINT NOT NULL,
        period_end BIGINT NOT NULL,
        evaluated_at BIGINT NOT NULL,
        share_bps BIGINT NOT NULL CHECK (share_bps >= 0 AND share_bps <= 10000),
        signer TEXT NOT NULL,
        statement TEXT NOT NULL,
        received_at BIGINT NOT NULL)",
        "CREATE INDEX share_statements_operator
        ON share_statements (operator_id, period_start, evaluated_at)",
        "ALTER TABLE operators ADD COLUMN suspended INTEGER NOT NULL DEFAULT 0
        CHECK (suspended IN (0, 1))",
        "ALTER TABLE ledger ADD COLUMN share_source TEXT",
        "ALTER TABLE ledger ADD COLUMN share_statement TEXT",
    ],
    // What each redemption entry records about its redemption (the operator, the voucher's
    // value, the share applied), so an auditor re-derives every split from the log alone.
    &[
        "ALTER TABLE ledger ADD COLUMN redeemed_at_operator TEXT",
        "ALTER TABLE ledger ADD COLUMN redemption_value BIGINT",
        "ALTER TABLE ledger ADD COLUMN share_bps BIGINT",
    ],
];

/// An issuer as stored, with its credential digest.
#[derive(Clone, Debug)]
pub struct IssuerRow {
    pub info: IssuerInfo,
    pub token_hash: Vec<u8>,
}

/// An operator as stored.
#[derive(Clone, Debug)]
pub struct OperatorRow {
    pub id: String,
    pub token_hash: Vec<u8>,
    /// The administrator's number: the share paid without a statement, and the cap of a
    /// statement's share.
    pub share_bps: u32,
    /// Suspended by the administrator: its redemptions are refused.
    pub suspended: bool,
}

/// A share statement to record (already checked and admitted by the coordinator).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatementRow {
    /// `smpx_core::directory::statement_digest`, hex.
    pub digest: String,
    pub operator_id: String,
    pub period_start: u64,
    pub period_end: u64,
    pub evaluated_at: u64,
    pub share_bps: u32,
    /// The directory's key, hex.
    pub signer: String,
    /// The signed statement's wire JSON, as received.
    pub statement: String,
    pub received_at: u64,
}

/// Where the share a redemption was cleared with came from, as its ledger entries record it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShareSource {
    /// The administrator's number.
    Admin,
    /// The share statement with this digest.
    Statement(String),
}

impl ShareSource {
    fn columns(&self) -> (&'static str, Option<&str>) {
        match self {
            ShareSource::Admin => ("admin", None),
            ShareSource::Statement(d) => ("statement", Some(d)),
        }
    }
}

/// What a redemption's ledger entries record about it: where its share came from, and the
/// redemption itself ([`smpx_core::ledger::RedemptionNote`]).
#[derive(Clone, Copy, Debug)]
struct Cleared<'a> {
    pub share: &'a ShareSource,
    pub operator_id: &'a str,
    pub value: Amount,
    pub share_bps: u32,
}

/// A registered issuer key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRow {
    pub key_id: [u8; 32],
    pub issuer_id: String,
    pub denomination: u64,
    pub period: u64,
    /// SubjectPublicKeyInfo DER.
    pub public_key: Vec<u8>,
    pub registered_at: u64,
}

/// A voucher to record at publish time.
#[derive(Clone, Debug)]
pub struct NewVoucher {
    pub commitment: [u8; 32],
    pub denomination: u64,
    pub value: Amount,
    pub issuer_id: String,
    pub key_id: [u8; 32],
    pub published_at: u64,
    pub expires_at: u64,
    /// The MMRs open for appends (oldest first; the last is the voucher's group), each
    /// created with `levels` if new. Empty only for data written before v0.2 (and tests of
    /// it): such a voucher is in no MMR and expires on its own `expires_at`.
    pub mmrs: Vec<u64>,
    pub levels: u32,
}

/// A stored voucher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoucherRow {
    pub commitment: [u8; 32],
    pub denomination: u64,
    pub value: Amount,
    pub issuer_id: String,
    pub key_id: [u8; 32],
    pub published_at: u64,
    pub expires_at: u64,
    pub state: VoucherState,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublishOutcome {
    /// Recorded; where it landed in each MMR.
    Published(Vec<Appended>),
    /// An open MMR is full (its capacity was reached); nothing recorded.
    MmrFull,
    AlreadyPublished,
    IssuerInactive,
    LimitExceeded,
}

/// A redemption to record.
#[derive(Clone, Debug)]
pub struct NewRedemption<'a> {
    pub commitment: [u8; 32],
    /// The voucher's nullifier, spent here too so it cannot also be redeemed under v0.2.
    pub nullifier: [u8; 32],
    pub denomination: u64,
    pub value: Amount,
    pub operator_id: &'a str,
    pub envelope_digest: [u8; 32],
    pub now: u64,
    /// The ledger postings (operator share and fund remainder).
    pub postings: Vec<Posting>,
    /// Where the share of the postings came from (recorded on each entry).
    pub share: ShareSource,
    /// The share the postings were split at (recorded on each entry).
    pub share_bps: u32,
    /// The signed receipt, stored so an identical retry gets the same answer.
    pub receipt: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedeemOutcome {
    Redeemed,
    /// The same operator already redeemed this exact envelope: here is the stored receipt.
    Replay(String),
    Unknown,
    AlreadyRedeemed,
    Expired,
}

/// The coordinator's store.
#[derive(Clone, Debug)]
pub struct CoordinatorStore {
    db: Db,
    mmr_cache: accumulator::SharedCache,
    denomination_tally: accumulator::SharedTally,
}

impl CoordinatorStore {
    /// Opens the store, creating or upgrading its tables.
    pub async fn open(db: Db) -> Result<Self, StoreError> {
        db.migrate("coordinator", MIGRATIONS).await?;
        Ok(CoordinatorStore {
            db,
            mmr_cache: Default::default(),
            denomination_tally: Default::default(),
        })
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    // ---- issuers ------------------------------------------------------------------------

    /// Whitelists a new issuer.
    pub async fn add_issuer(
        &self,
        id: &str,
        token_hash: &[u8; 32],
        limit: Amount,
        now: u64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO issuers (id, token_hash, limit_units, published_units, active, created_at)
             VALUES ($1, $2, $3, 0, 1, $4)",
        )
        .bind(id)
        .bind(&token_hash[..])
        .bind(to_i64(limit.0, "limit")?)
        .bind(to_i64(now, "time")?)
        .execute(&self.db.pool)
        .await
        .map_err(q)?;
        Ok(())
    }

    /// Sets an issuer's limit. Lowering it below what was published only stops further
    /// publishing. Returns false for an unknown issuer.
    pub async fn set_issuer_limit(&self, id: &str, limit: Amount) -> Result<bool, StoreError> {
        let r = sqlx::query("UPDATE issuers SET limit_units = $1 WHERE id = $2")
            .bind(to_i64(limit.0, "limit")?)
            .bind(id)
            .execute(&self.db.pool)
            .await
            .map_err(q)?;
        Ok(r.rows_affected() == 1)
    }

    /// Adds an issuer to, or removes it from, the whitelist. Returns false if unknown.
    pub async fn set_issuer_active(&self, id: &str, active: bool) -> Result<bool, StoreError> {
        let r = sqlx::query("UPDATE issuers SET active = $1 WHERE id = $2")
            .bind(i64::from(active))
            .bind(id)
            .execute(&self.db.pool)
            .await
            .map_err(q)?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn issuer(&self, id: &str) -> Result<Option<IssuerRow>, StoreError> {
        let row = sqlx::query(
            "SELECT id, token_hash, limit_units, published_units, active FROM issuers WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.db.pool)
        .await
        .map_err(q)?;
        row.map(|r| issuer_row(&r)).transpose()
    }

    pub async fn issuers(&self) -> Result<Vec<IssuerInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, token_hash, limit_units, published_units, active FROM issuers ORDER BY id",
        )
        .fetch_all(&self.db.pool)
        .await
        .map_err(q)?;
        rows.iter().map(|r| issuer_row(r).map(|i| i.info)).collect()
    }

    // ---- operators ----------------------------------------------------------------------

    pub async fn add_operator(
        &self,
        id: &str,
        token_hash: &[u8; 32],
        share_bps: u32,
        now: u64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO operators (id, token_hash, share_bps, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(&token_hash[..])
        .bind(i64::from(share_bps))
        .bind(to_i64(now, "time")?)
        .execute(&self.db.pool)
        .await
        .map_err(q)?;
        Ok(())
    }

    pub async fn set_operator_share(&self, id: &str, share_bps: u32) -> Result<bool, StoreError> {
        let r = sqlx::query("UPDATE operators SET share_bps = $1 WHERE id = $2")
            .bind(i64::from(share_bps))
            .bind(id)
            .execute(&self.db.pool)
            .await
            .map_err(q)?;
        Ok(r.rows_affected() == 1)
    }

    /// Suspends or resumes an operator; false if there is none.
    pub async fn set_operator_suspended(
        &self,
        id: &str,
        suspended: bool,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query("UPDATE operators SET suspended = $1 WHERE id = $2")
            .bind(i64::from(suspended))
            .bind(id)
            .execute(&self.db.pool)
            .await
            .map_err(q)?;
        Ok(r.rows_affected() == 1)
    }

    // ---- share statements ---------------------------------------------------------------

    /// Records a statement the coordinator took. The same digest twice is a
    /// [`StoreError::Duplicate`] (the caller answers a repeat as taken).
    pub async fn insert_statement(&self, s: &StatementRow) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO share_statements ({STATEMENT_COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ))
        .bind(&s.digest)
        .bind(&s.operator_id)
        .bind(to_i64(s.period_start, "time")?)
        .bind(to_i64(s.period_end, "time")?)
        .bind(to_i64(s.evaluated_at, "time")?)
        .bind(i64::from(s.share_bps))
        .bind(&s.signer)
        .bind(&s.statement)
        .bind(to_i64(s.received_at, "time")?)
        .execute(&self.db.pool)
        .await
        .map_err(q)?;
        Ok(())
    }

    /// The newest statement on record for an operator (by period start, then evaluation
    /// time): the one a new statement must be newer than.
    pub async fn newest_statement(
        &self,
        operator_id: &str,
    ) -> Result<Option<StatementRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {STATEMENT_COLUMNS} FROM share_statements WHERE operator_id = $1
             ORDER BY period_start DESC, evaluated_at DESC LIMIT 1"
        ))
        .bind(operator_id)
        .fetch_optional(&self.db.pool)
        .await
        .map_err(q)?;
        row.map(|r| statement_row(&r)).transpose()
    }

    /// The newest statement for an operator whose period holds `now`, if any.
    pub async fn statement_at(
        &self,
        operator_id: &str,
        now: u64,
    ) -> Result<Option<StatementRow>, StoreError> {
        let now = to_i64(now, "time")?;
        let row = sqlx::query(&format!(
            "SELECT {STATEMENT_COLUMNS} FROM share_statements
             WHERE operator_id = $1 AND period_start <= $2 AND period_end > $2
             ORDER BY period_start DESC, evaluated_at DESC LIMIT 1"
        ))
        .bind(operator_id)
        .bind(now)
        .fetch_optional(&self.db.pool)
        .await
        .map_err(q)?;
        row.map(|r| statement_row(&r)).transpose()
    }

    /// A statement on record by its digest.
    pub async fn statement(&self, digest: &str) -> Result<Option<StatementRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {STATEMENT_COLUMNS} FROM share_statements WHERE digest = $1"
        ))
        .bind(digest)
        .fetch_optional(&self.db.pool)
        .await
        .map_err(q)?;
        row.map(|r| statement_row(&r)).transpose()
    }

    pub async fn operator(&self, id: &str) -> Result<Option<OperatorRow>, StoreError> {
        let row =
            sqlx::query("SELECT id, token_hash, share_bps, suspended FROM operators WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.db.pool)
                .await
                .map_err(q)?;
        row.map(|r| operator_row(&r)).transpose()
    }

    /// Every operator with what it has earned (from the ledger).
    pub async fn operators(&self) -> Result<Vec<OperatorInfo>, StoreError> {
        let rows =
            sqlx::query("SELECT id, token_hash, share_bps, suspended FROM operators ORDER BY id")
                .fetch_all(&self.db.pool)
                .await
                .map_err(q)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let op = operator_row(r)?;
            let earned: i64 = sqlx::query_scalar(
                "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM ledger WHERE to_account = $1",
            )
            .bind(Account::Operator(op.id.clone()).to_string())
            .fetch_one(&self.db.pool)
            .await
            .map_err(q)?;
            out.push(OperatorInfo {
                id: op.id,
                share_bps: op.share_bps,
                earned: Amount(to_u64(earned, "earned")?),
            });
        }
        Ok(out)
    }

    // ---- issuer keys --------------------------------------------------------------------

    /// Registers a key. A second key for the same issuer, denomination and period, or the
    /// same key twice, is a [`StoreError::Duplicate`].
    pub async fn insert_key(&self, k: &KeyRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO issuer_keys (key_id, issuer_id, denomination, period, public_key, registered_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&k.key_id[..])
        .bind(&k.issuer_id)
        .bind(to_i64(k.denomination, "denomination")?)
        .bind(to_i64(k.period, "period")?)
        .bind(&k.public_key[..])
        .bind(to_i64(k.registered_at, "time")?)
        .execute(&self.db.pool)
        .await
        .map_err(q)?;
        Ok(())
    }

    pub async fn key(&self, key_id: &[u8; 32]) -> Result<Option<KeyRow>, StoreError> {
        let row = sqlx::query(
            "SELECT key_id, issuer_id, denomination, period, public_key, registered_at
             FROM issuer_keys WHERE key_id = $1",
        )
        .bind(&key_id[..])
        .fetch_optional(&self.db.pool)
        .await
        .map_err(q)?;
        row.map(|r| key_row(&r)).transpose()
    }

    /// Keys, optionally of one issuer and/or denomination, oldest period first.
    pub async fn keys(
        &self,
        issuer: Option<&str>,
        denomination: Option<u64>,
    ) -> Result<Vec<KeyRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT key_id, issuer_id, denomination, period, public_key, registered_at
             FROM issuer_keys
             WHERE ($1 = '' OR issuer_id = $1) AND ($2 < 0 OR denomination = $2)
             ORDER BY period, issuer_id, denomination",
        )
        .bind(issuer.unwrap_or(""))
        .bind(denomination_filter(denomination)?)
        .fetch_all(&self.db.pool)
        .await
        .map_err(q)?;
        rows.iter().map(key_row).collect()
    }

    /// How many vouchers were published under each key of [`Self::keys`] with the same
    /// filters (keys with none are left out).
    pub async fn published_per_key(
        &self,
        issuer: Option<&str>,
        denomination: Option<u64>,
    ) -> Result<std::collections::HashMap<[u8; 32], u64>, StoreError> {
        let rows = sqlx::query(
            "SELECT v.key_id, COUNT(*) AS n
             FROM issuer_keys k JOIN vouchers v ON v.key_id = k.key_id
             WHERE ($1 = '' OR k.issuer_id = $1) AND ($2 < 0 OR k.denomination = $2)
             GROUP BY v.key_id",
        )
        .bind(issuer.unwrap_or(""))
        .bind(denomination_filter(denomination)?)
        .fetch_all(&self.db.pool)
        .await
        .map_err(q)?;
        rows.iter()
            .map(|r| {
                Ok((
                    bytes32(r.try_get("key_id").map_err(q)?, "key id")?,
                    to_u64(r.try_get("n").map_err(q)?, "count")?,
                ))
            })
            .collect()
    }

    // ---- vouchers -----------------------------------------------------------------------

    /// Records a published voucher, charges the issuer's limit and books issuer → pool,
    /// all or nothing.
    ///
    /// The voucher is appended to every MMR in `v.mmrs` in the same transaction; see
    /// [`accumulator`](self) for how appends stay consistent across processes.
    pub async fn publish(&self, v: &NewVoucher) -> Result<PublishOutcome, StoreError> {
        self.publish_with_receipt(v, |_| Ok(None)).await
    }

    /// [`Self::publish`], storing in the same transaction the receipt that `receipt` makes
    /// from where the voucher landed (with the request's digest, for
    /// [`Self::publish_receipt`]). `receipt` returns `(request_digest, receipt)`, or `None`
    /// to store none.
    pub async fn publish_with_receipt(
        &self,
        v: &NewVoucher,
        receipt: impl FnOnce(&[Appended]) -> Result<Option<([u8; 32], String)>, StoreError> + Send,
    ) -> Result<PublishOutcome, StoreError> {
        let mut cache = self.mmr_cache.lock().await;
        let before: Vec<(u64, u64)> = v
            .mmrs
            .iter()
            .map(|&id| (id, accumulator::cached_size(&cache, id).unwrap_or(0)))
            .collect();
        let r = self.publish_locked(v, &mut cache, receipt).await;
        if !matches!(r, Ok(PublishOutcome::Published(_))) {
            accumulator::roll_back(&mut cache, &before);
        }
        r
    }

    async fn publish_locked(
        &self,
        v: &NewVoucher,
        cache: &mut MmrCache,
        receipt: impl FnOnce(&[Appended]) -> Result<Option<([u8; 32], String)>, StoreError>,
    ) -> Result<PublishOutcome, StoreError> {
        let group = v.mmrs.last().copied();
        let mut tx = self.db.pool.begin().await.map_err(q)?;
        let inserted = sqlx::query(
            "INSERT INTO vouchers (commitment, denomination, value_units, issuer_id, key_id,
                                   published_at, expires_at, state, grp)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'live', $8)",
        )
        .bind(&v.commitment[..])
        .bind(to_i64(v.denomination, "denomination")?)
        .bind(to_i64(v.value.0, "value")?)
        .bind(&v.issuer_id)
        .bind(&v.key_id[..])
        .bind(to_i64(v.published_at, "time")?)
        .bind(to_i64(v.expires_at, "time")?)
        .bind(group.map(|g| to_i64(g, "mmr id")).transpose()?)
        .execute(&mut *tx)
        .await
        .map_err(q);
        match inserted {
            Ok(_) => {}
            Err(e) if e.is_duplicate() => return Ok(PublishOutcome::AlreadyPublished),
            Err(e) => return Err(e),
        }
        let charged = sqlx::query(
            "UPDATE issuers SET published_units = published_units + $1
             WHERE id = $2 AND active = 1 AND published_units + $1 <= limit_units",
        )
        .bind(to_i64(v.value.0, "value")?)
        .bind(&v.issuer_id)
        .execute(&mut *tx)
        .await
        .map_err(q)?;
        if charged.rows_affected() != 1 {
            let active: Option<i64> =
                sqlx::query_scalar("SELECT active FROM issuers WHERE id = $1")
                    .bind(&v.issuer_id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(q)?;
            tx.rollback().await.map_err(q)?;
            return Ok(match active {
                Some(1) => PublishOutcome::LimitExceeded,
                _ => PublishOutcome::IssuerInactive,
            });
        }
        let leaf = smpx_core::crypto::FieldBytes(v.commitment);
        let mut appended = Vec::with_capacity(v.mmrs.len());
        for &id in &v.mmrs {
            let value = if Some(id) == group {
                v.value
            } else {
                Amount::ZERO
            };
            match accumulator::append_leaf(
                &mut tx,
                cache,
                id,
                v.levels,
                &leaf,
                value,
                v.published_at,
            )
            .await?
            {
                Ok(a) => appended.push(a),
                Err(smpx_core::mmr::MmrError::Full { .. }) => {
                    tx.rollback().await.map_err(q)?;
                    return Ok(PublishOutcome::MmrFull);
                }
                Err(e) => return Err(StoreError::Corrupt(format!("MMR append: {e}"))),
            }
        }
        append(
            &mut tx,
            v.published_at,
            &smpx_core::ledger::publish(&v.issuer_id, v.value),
            None,
        )
        .await?;
        if let Some((digest, receipt)) = receipt(&appended)? {
            sqlx::query(
                "INSERT INTO publish_receipts (commitment, request_digest, receipt)
                 VALUES ($1, $2, $3)",
            )
            .bind(&v.commitment[..])
            .bind(&digest[..])
            .bind(receipt)
            .execute(&mut *tx)
            .await
            .map_err(q)?;
        }
        tx.commit().await.map_err(q)?;
        Ok(PublishOutcome::Published(appended))
    }

    /// The stored receipt of a publication and the digest of the request it answered
    /// (`None` for a voucher not published, or published before receipts were kept).
    pub async fn publish_receipt(
        &self,
        commitment: &[u8; 32],
    ) -> Result<Option<([u8; 32], String)>, StoreError> {
        let row = sqlx::query(
            "SELECT request_digest, receipt FROM publish_receipts WHERE commitment = $1",
        )
        .bind(&commitment[..])
        .fetch_optional(&self.db.pool)
        .await
        .map_err(q)?;
        row.map(|r| {
            let digest: Vec<u8> = r.try_get("request_digest").map_err(q)?;
            let digest = digest
                .try_into()
                .map_err(|_| StoreError::Corrupt("publish request digest length".into()))?;
            Ok((digest, r.try_get("receipt").map_err(q)?))
        })
        .transpose()
    }

    pub async fn voucher(&self, commitment: &[u8; 32]) -> Result<Option<VoucherRow>, StoreError> {
        let row = sqlx::query(
            "SELECT commitment, denomination, value_units, issuer_id, key_id, published_at, expires_at, state
             FROM vouchers WHERE commitment = $1",
        )
        .bind(&commitment[..])
        .fetch_optional(&self.db.pool)
        .await
        .map_err(q)?;
        row.map(|r| voucher_row(&r)).transpose()
    }

    /// Marks a live, unexpired voucher redeemed, records the redemption and books the
    /// payment, all or nothing. A retry of the same envelope by the same operator returns the
    /// stored receipt instead of paying twice.
    pub async fn redeem(&self, r: &NewRedemption<'_>) -> Result<RedeemOutcome, StoreError> {
        let mut tx = self.db.pool.begin().await.map_err(q)?;
        let marked = sqlx::query(
            "UPDATE vouchers SET state = 'redeemed'
             WHERE commitment = $1 AND state = 'live' AND expires_at > $2 AND denomination = $3
             RETURNING grp",
        )
        .bind(&r.commitment[..])
        .bind(to_i64(r.now, "time")?)
        .bind(to_i64(r.denomination, "denomination")?)
        .fetch_optional(&mut *tx)
        .await
        .map_err(q)?;
        let Some(marked) = marked else {
            tx.rollback().await.map_err(q)?;
            return self.classify_failed_redemption(r).await;
        };
        let group: Option<i64> = marked.try_get("grp").map_err(q)?;
        // The nullifier too: a voucher redeemed under v0.1 cannot be redeemed again with a
        // v0.2 proof, nor the other way round.
        let spent = sqlx::query(
            "INSERT INTO nullifiers (nullifier, version, mmr_id, operator_id, denomination,
                                     request_digest, redeemed_at, receipt)
             VALUES ($1, 1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&r.nullifier[..])
        .bind(group)
        .bind(r.operator_id)
        .bind(to_i64(r.denomination, "denomination")?)
        .bind(&r.envelope_digest[..])
        .bind(to_i64(r.now, "time")?)
        .bind(&r.receipt)
        .execute(&mut *tx)
        .await
        .map_err(q);
        match spent {
            Ok(_) => {}
            Err(e) if e.is_duplicate() => {
                tx.rollback().await.map_err(q)?;
                return Ok(RedeemOutcome::AlreadyRedeemed);
            }
            Err(e) => return Err(e),
        }
        if let Some(g) = group {
            accumulator::book_redeemed(&mut tx, to_u64(g, "mmr id")?, r.value).await?;
        }
        sqlx::query(
            "INSERT INTO redemptions (commitment, operator_id, envelope_digest, redeemed_at, receipt)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&r.commitment[..])
        .bind(r.operator_id)
        .bind(&r.envelope_digest[..])
        .bind(to_i64(r.now, "time")?)
        .bind(&r.receipt)
        .execute(&mut *tx)
        .await
        .map_err(q)?;
        let cleared = Cleared {
            share: &r.share,
            operator_id: r.operator_id,
            value: r.value,
            share_bps: r.share_bps,
        };
        append(&mut tx, r.now, &r.postings, Some(cleared)).await?;
        tx.commit().await.map_err(q)?;
        Ok(RedeemOutcome::Redeemed)
    }

    async fn classify_failed_redemption(
        &self,
        r: &NewRedemption<'_>,
    ) -> Result<RedeemOutcome, StoreError> {
        let Some(v) = self.voucher(&r.commitment).await? else {
            return Ok(RedeemOutcome::Unknown);
        };
        match v.state {
            VoucherState::Redeemed => {
                let prev = sqlx::query(
                    "SELECT operator_id, envelope_digest, receipt FROM redemptions WHERE commitment = $1",
                )
                .bind(&r.commitment[..])
                .fetch_optional(&self.db.pool)
                .await
                .map_err(q)?;
                if let Some(p) = prev {
                    let op: String = p.try_get("operator_id").map_err(q)?;
                    let digest: Vec<u8> = p.try_get("envelope_digest").map_err(q)?;
                    if op == r.operator_id && digest == r.envelope_digest {
                        return Ok(RedeemOutcome::Replay(p.try_get("receipt").map_err(q)?));
                    }
                }
                Ok(RedeemOutcome::AlreadyRedeemed)
            }
            VoucherState::Released => Ok(RedeemOutcome::Expired),
            // Live but not updated: expired (the denomination is bound by C, so a mismatch
            // there means the row is someone else's C — treat as unknown).
            VoucherState::Live if v.expires_at <= r.now => Ok(RedeemOutcome::Expired),
            VoucherState::Live => Ok(RedeemOutcome::Unknown),
        }
    }

    /// Releases every live voucher that expired by `now` to the network fund, in one
    /// transaction. Returns how many and their value.
    ///
    /// Vouchers published before v0.2 (no group) are released one by one at their own
    /// expiry. Vouchers in MMRs are released by the books once every MMR up to
    /// `expired_through` has expired: `smpx_core::rotation::releasable` of their group values
    /// minus what was redeemed through them — never value that can still be redeemed. Their
    /// rows are marked `released` for the status endpoint; the count includes them.
    pub async fn release_expired(
        &self,
        now: u64,
        expired_through: Option<u64>,
    ) -> Result<(u64, Amount), StoreError> {
        let mut tx = self.db.pool.begin().await.map_err(q)?;
        let mut by_books = Amount::ZERO;
        let mut marked = 0u64;
        if let Some(k) = expired_through {
            by_books = accumulator::release_by_books(&mut tx, k).await?;
            let r = sqlx::query(
                "UPDATE vouchers SET state = 'released' WHERE grp <= $1 AND state = 'live'",
            )
            .bind(to_i64(k, "mmr id")?)
            .execute(&mut *tx)
            .await
            .map_err(q)?;
            marked = r.rows_affected();
        }
        let rows = sqlx::query(
            "UPDATE vouchers SET state = 'released'
             WHERE state = 'live' AND expires_at <= $1 AND grp IS NULL
             RETURNING value_units",
        )
        .bind(to_i64(now, "time")?)
        .fetch_all(&mut *tx)
        .await
        .map_err(q)?;
        let mut total = 0u64;
        for r in &rows {
            let v: i64 = r.try_get("value_units").map_err(q)?;
            total = total
                .checked_add(to_u64(v, "value")?)
                .ok_or_else(|| StoreError::Corrupt("released value overflows".into()))?;
        }
        let total = total
            .checked_add(by_books.0)
            .ok_or_else(|| StoreError::Corrupt("released value overflows".into()))?;
        let count = rows.len() as u64 + marked;
        if total == 0 && count == 0 {
            tx.rollback().await.map_err(q)?;
            return Ok((0, Amount::ZERO));
        }
        if total > 0 {
            append(
                &mut tx,
                now,
                &smpx_core::ledger::release(Amount(total)),
                None,
            )
            .await?;
        }
        tx.commit().await.map_err(q)?;
        Ok((count, Amount(total)))
    }

    // ---- ledger -------------------------------------------------------------------------

    /// Ledger entries with `seq > after`, at most `limit`.
    pub async fn entries(&self, after: u64, limit: u32) -> Result<Vec<Entry>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, at, kind, from_account, to_account, amount, share_source,
                    share_statement, redeemed_at_operator, redemption_value, share_bps
             FROM ledger
             WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(to_i64(after, "seq")?)
        .bind(i64::from(limit))
        .fetch_all(&self.db.pool)
        .await
        .map_err(q)?;
        rows.iter().map(entry_row).collect()
    }

    /// Headline figures from the ledger, cross-checked against the voucher table.
    pub async fn totals(&self) -> Result<LedgerTotalsResponse, StoreError> {
        let sum = |sql: &'static str| async move {
            let v: i64 = sqlx::query_scalar(sql)
                .fetch_one(&self.db.pool)
                .await
                .map_err(q)?;
            to_u64(v, "sum").map(Amount)
        };
        let published = sum(
            "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM ledger WHERE kind = 'publish'",
        )
        .await?;
        let redeemed = sum(
            "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM ledger WHERE kind = 'redeem'",
        )
        .await?;
        let released = sum(
            "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM ledger WHERE kind = 'release'",
        )
        .await?;
        let paid_to_operators = sum(
            "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM ledger WHERE to_account LIKE 'operator:%'",
        )
        .await?;
        let network_fund = sum(
            "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM ledger WHERE to_account = 'network_fund'",
        )
        .await?;
        let pool_in = sum(
            "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM ledger WHERE to_account = 'pool'",
        )
        .await?;
        let pool_out =
            sum("SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM ledger WHERE from_account = 'pool'")
                .await?;
        // Value not yet redeemed or released, from the voucher table and the MMR books
        // (independent of the ledger): vouchers without a group one by one, grouped ones by
        // their books.
        let legacy_live = sum(
            "SELECT CAST(COALESCE(SUM(value_units), 0) AS BIGINT) FROM vouchers
             WHERE state = 'live' AND grp IS NULL",
        )
        .await?;
        let groups = sum("SELECT CAST(COALESCE(SUM(group_units), 0) AS BIGINT) FROM mmrs").await?;
        let redeemed_via =
            sum("SELECT CAST(COALESCE(SUM(redeemed_units), 0) AS BIGINT) FROM mmrs").await?;
        let released_books =
            sum("SELECT CAST(released_units AS BIGINT) FROM release_head WHERE id = 1").await?;
        let unredeemed_value = groups
            .0
            .checked_sub(redeemed_via.0)
            .and_then(|x| x.checked_sub(released_books.0))
            .and_then(|x| x.checked_add(legacy_live.0))
            .map(Amount)
            .ok_or_else(|| StoreError::Corrupt("MMR books are negative".into()))?;
        let live_count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM vouchers WHERE state = 'live'")
                .fetch_one(&self.db.pool)
                .await
                .map_err(q)?;
        let v2_count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM nullifiers WHERE version = 2")
            .fetch_one(&self.db.pool)
            .await
            .map_err(q)?;
        let entries: i64 = sqlx::query_scalar("SELECT seq FROM ledger_head WHERE id = 1")
            .fetch_one(&self.db.pool)
            .await
            .map_err(q)?;
        let live = pool_in
            .checked_sub(pool_out)
            .ok_or_else(|| StoreError::Corrupt("pool balance is negative".into()))?;
        let totals = Totals {
            published,
            redeemed,
            live,
            released,
            paid_to_operators,
            network_fund,
        };
        Ok(LedgerTotalsResponse {
            conserved: totals.is_conserved() && live == unredeemed_value,
            totals,
            unredeemed_value,
            unreleased_voucher_count: to_u64(live_count, "count")?,
            v2_redemption_count: to_u64(v2_count, "count")?,
            entries: to_u64(entries, "seq")?,
        })
    }
}

/// Appends postings to the ledger inside `tx`, taking the next sequence numbers from the
/// one-row head (whose row lock orders concurrent writers).
/// `cleared`, for a redemption's postings, is recorded on each entry.
async fn append(
    tx: &mut Transaction<'static, Any>,
    at: u64,
    postings: &[Posting],
    cleared: Option<Cleared<'_>>,
) -> Result<(), StoreError> {
    let (share_source, share_statement) = cleared.map(|c| c.share.columns()).unzip();
    let share_statement = share_statement.flatten();
    let operator = cleared.map(|c| c.operator_id);
    let value = cleared.map(|c| to_i64(c.value.0, "amount")).transpose()?;
    let share_bps = cleared.map(|c| i64::from(c.share_bps));
    if postings.is_empty() {
        return Ok(());
    }
    let n = postings.len() as i64;
    let top: i64 =
        sqlx::query_scalar("UPDATE ledger_head SET seq = seq + $1 WHERE id = 1 RETURNING seq")
            .bind(n)
            .fetch_one(&mut **tx)
            .await
            .map_err(q)?;
    for (i, p) in postings.iter().enumerate() {
        sqlx::query(
            "INSERT INTO ledger (seq, at, kind, from_account, to_account, amount,
                                 share_source, share_statement, redeemed_at_operator,
                                 redemption_value, share_bps)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(top - n + 1 + i as i64)
        .bind(to_i64(at, "time")?)
        .bind(p.kind.as_str())
        .bind(p.from.to_string())
        .bind(p.to.to_string())
        .bind(to_i64(p.amount.0, "amount")?)
        .bind(share_source)
        .bind(share_statement)
        .bind(operator)
        .bind(value)
        .bind(share_bps)
        .execute(&mut **tx)
        .await
        .map_err(q)?;
    }
    Ok(())
}

/// A denomination filter as the key queries bind it: -1 for any.
fn denomination_filter(d: Option<u64>) -> Result<i64, StoreError> {
    d.map_or(Ok(-1), |d| to_i64(d, "denomination"))
}

fn bytes32(v: Vec<u8>, what: &str) -> Result<[u8; 32], StoreError> {
    v.try_into()
        .map_err(|_| StoreError::Corrupt(format!("{what} is not 32 bytes")))
}

fn issuer_row(r: &AnyRow) -> Result<IssuerRow, StoreError> {
    Ok(IssuerRow {
        info: IssuerInfo {
            id: r.try_get("id").map_err(q)?,
            limit: Amount(to_u64(r.try_get("limit_units").map_err(q)?, "limit")?),
            published: Amount(to_u64(
                r.try_get("published_units").map_err(q)?,
                "published",
            )?),
            active: r.try_get::<i64, _>("active").map_err(q)? == 1,
        },
        token_hash: r.try_get("token_hash").map_err(q)?,
    })
}

fn operator_row(r: &AnyRow) -> Result<OperatorRow, StoreError> {
    let share: i64 = r.try_get("share_bps").map_err(q)?;
    Ok(OperatorRow {
        id: r.try_get("id").map_err(q)?,
        token_hash: r.try_get("token_hash").map_err(q)?,
        share_bps: u32::try_from(share).map_err(|_| StoreError::Corrupt("share".into()))?,
        suspended: r.try_get::<i64, _>("suspended").map_err(q)? == 1,
    })
}

fn statement_row(r: &AnyRow) -> Result<StatementRow, StoreError> {
    let share: i64 = r.try_get("share_bps").map_err(q)?;
    Ok(StatementRow {
        digest: r.try_get("digest").map_err(q)?,
        operator_id: r.try_get("operator_id").map_err(q)?,
        period_start: to_u64(r.try_get("period_start").map_err(q)?, "time")?,
        period_end: to_u64(r.try_get("period_end").map_err(q)?, "time")?,
        evaluated_at: to_u64(r.try_get("evaluated_at").map_err(q)?, "time")?,
        share_bps: u32::try_from(share).map_err(|_| StoreError::Corrupt("share".into()))?,
        signer: r.try_get("signer").map_err(q)?,
        statement: r.try_get("statement").map_err(q)?,
        received_at: to_u64(r.try_get("received_at").map_err(q)?, "time")?,
    })
}

const STATEMENT_COLUMNS: &str = "digest, operator_id, period_start, period_end, evaluated_at, \
     share_bps, signer, statement, received_at";

fn key_row(r: &AnyRow) -> Result<KeyRow, StoreError> {
    Ok(KeyRow {
        key_id: bytes32(r.try_get("key_id").map_err(q)?, "key id")?,
        issuer_id: r.try_get("issuer_id").map_err(q)?,
        denomination: to_u64(r.try_get("denomination").map_err(q)?, "denomination")?,
        period: to_u64(r.try_get("period").map_err(q)?, "period")?,
        public_key: r.try_get("public_key").map_err(q)?,
        registered_at: to_u64(r.try_get("registered_at").map_err(q)?, "time")?,
    })
}

fn voucher_row(r: &AnyRow) -> Result<VoucherRow, StoreError> {
    let state: String = r.try_get("state").map_err(q)?;
    Ok(VoucherRow {
        commitment: bytes32(r.try_get("commitment").map_err(q)?, "commitment")?,
        denomination: to_u64(r.try_get("denomination").map_err(q)?, "denomination")?,
        value: Amount(to_u64(r.try_get("value_units").map_err(q)?, "value")?),
        issuer_id: r.try_get("issuer_id").map_err(q)?,
        key_id: bytes32(r.try_get("key_id").map_err(q)?, "key id")?,
        published_at: to_u64(r.try_get("published_at").map_err(q)?, "time")?,
        expires_at: to_u64(r.try_get("expires_at").map_err(q)?, "time")?,
        state: VoucherState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("voucher state {state:?}")))?,
    })
}

fn entry_row(r: &AnyRow) -> Result<Entry, StoreError> {
    let kind: String = r.try_get("kind").map_err(q)?;
    let from: String = r.try_get("from_account").map_err(q)?;
    let to: String = r.try_get("to_account").map_err(q)?;
    let corrupt = |e: smpx_core::ProtocolError| StoreError::Corrupt(e.message);
    Ok(Entry {
        seq: to_u64(r.try_get("seq").map_err(q)?, "seq")?,
        at: to_u64(r.try_get("at").map_err(q)?, "time")?,
        kind: kind.parse::<EntryKind>().map_err(corrupt)?,
        from: from.parse::<Account>().map_err(corrupt)?,
        to: to.parse::<Account>().map_err(corrupt)?,
        amount: Amount(to_u64(r.try_get("amount").map_err(q)?, "amount")?),
        share_source: r.try_get("share_source").map_err(q)?,
        share_statement: r.try_get("share_statement").map_err(q)?,
        redemption: redemption_note(r)?,
    })
}

/// The redemption a ledger row records, if it records one (all three columns or none).
fn redemption_note(r: &AnyRow) -> Result<Option<RedemptionNote>, StoreError> {
    let operator: Option<String> = r.try_get("redeemed_at_operator").map_err(q)?;
    let value: Option<i64> = r.try_get("redemption_value").map_err(q)?;
    let share: Option<i64> = r.try_get("share_bps").map_err(q)?;
    match (operator, value, share) {
        (Some(operator_id), Some(value), Some(share)) => Ok(Some(RedemptionNote {
            operator_id,
            value: Amount(to_u64(value, "amount")?),
            share_bps: u32::try_from(share)
                .map_err(|_| StoreError::Corrupt(format!("share {share} out of range")))?,
        })),
        (None, None, None) => Ok(None),
        _ => Err(StoreError::Corrupt(
            "a ledger entry records part of a redemption".into(),
        )),
    }
}
