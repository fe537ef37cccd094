//! v0.2 tables: the MMRs every published voucher is appended to, every root they had, the
//! spent nullifiers, and the per-MMR books that drive conservative release.
//!
//! * **Appends** happen inside the publish transaction. `UPDATE mmrs SET size = size + 1 …
//!   RETURNING size` takes the MMR's row lock, so appends to one MMR are serialised across
//!   processes and the leaf index is the returned size minus one. Each process keeps the MMR
//!   in memory ([`MmrCache`]); under the row lock it first loads the leaves other processes
//!   committed since it last looked, then appends, hashes the new root and records it. The
//!   cache is behind one async mutex held for the whole publish transaction (taken before
//!   any row lock, so it cannot take part in a lock cycle), and a failed transaction
//!   truncates the cache back, so it never holds a leaf that is not committed.
//! * **Nullifiers** are a primary key: of two redemptions of one voucher — v0.2 proofs, or a
//!   v0.1 envelope and a v0.2 proof, in one process or many — exactly one inserts its row.
//! * **Books**: `group_units` (value of vouchers whose newest MMR this is) and
//!   `redeemed_units` (value redeemed through this MMR), updated in the same transactions as
//!   the ledger entries, and the cumulative `released_units`: see `smpx_core::rotation`.

use super::{append, CoordinatorStore, ShareSource};
use crate::db::{q, to_i64, to_u64, StoreError};
use smpx_core::crypto::{FieldBytes, Fr};
use smpx_core::ledger::Posting;
use smpx_core::mmr::{ConsistencyProof, Mmr, MmrError, MmrParams, Proof};
use smpx_core::rotation::{releasable, MmrBook};
use smpx_core::Amount;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};
use std::collections::HashMap;
use std::sync::Arc;

/// The migration that adds the v0.2 tables (coordinator schema version 2).
pub(super) const MIGRATION: &[&str] = &[
    "CREATE TABLE mmrs (
        id BIGINT PRIMARY KEY,
        levels BIGINT NOT NULL,
        size BIGINT NOT NULL CHECK (size >= 0),
        group_units BIGINT NOT NULL CHECK (group_units >= 0),
        redeemed_units BIGINT NOT NULL CHECK (redeemed_units >= 0))",
    "CREATE TABLE mmr_leaves (
        mmr_id BIGINT NOT NULL REFERENCES mmrs(id),
        idx BIGINT NOT NULL,
        leaf {blob} NOT NULL,
        PRIMARY KEY (mmr_id, idx))",
    "CREATE TABLE mmr_roots (
        mmr_id BIGINT NOT NULL REFERENCES mmrs(id),
        size BIGINT NOT NULL,
        root {blob} NOT NULL UNIQUE,
        at BIGINT NOT NULL,
        PRIMARY KEY (mmr_id, size))",
    "CREATE TABLE nullifiers (
        nullifier {blob} PRIMARY KEY,
        version BIGINT NOT NULL,
        mmr_id BIGINT,
        operator_id TEXT NOT NULL REFERENCES operators(id),
        denomination BIGINT NOT NULL,
        request_digest {blob} NOT NULL,
        redeemed_at BIGINT NOT NULL,
        receipt TEXT NOT NULL)",
    // The voucher's group: the newest MMR it was appended to (NULL for vouchers published
    // before v0.2 existed, which keep the per-voucher expiry of v0.1).
    "ALTER TABLE vouchers ADD COLUMN grp BIGINT",
    "CREATE INDEX vouchers_group ON vouchers (grp, state)",
    "CREATE TABLE release_head (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        released_units BIGINT NOT NULL CHECK (released_units >= 0))",
    "INSERT INTO release_head (id, released_units) VALUES (1, 0)",
];

/// This process's copy of each MMR (see the module docs).
#[derive(Debug, Default)]
pub struct MmrCache {
    mmrs: HashMap<u64, Mmr>,
}

pub(super) type SharedCache = Arc<tokio::sync::Mutex<MmrCache>>;

/// This process's tally of each MMR's leaves by denomination: how many leaves it has counted
/// (a prefix; committed leaves never change) and the counts. Each read counts only the
/// leaves appended since, so the publish path does no bookkeeping for it and a read does not
/// scan the whole MMR.
#[derive(Debug, Default)]
pub(super) struct DenominationTally {
    mmrs: HashMap<u64, (u64, std::collections::BTreeMap<u64, u64>)>,
}

pub(super) type SharedTally = Arc<tokio::sync::Mutex<DenominationTally>>;

/// Where a published voucher landed in one MMR.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appended {
    /// Membership proof at the size right after the append.
    pub proof: Proof,
    pub root: Fr,
}

/// One MMR's stored figures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MmrRow {
    pub id: u64,
    pub levels: u32,
    pub size: u64,
    pub group_value: Amount,
    pub redeemed_via: Amount,
    /// The root at `size` (`None` while empty).
    pub root: Option<FieldBytes>,
}

/// A recorded root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RootRow {
    pub mmr_id: u64,
    pub size: u64,
    pub root: FieldBytes,
    pub at: u64,
}

/// A v0.2 redemption to record (after its proof verified).
#[derive(Clone, Debug)]
pub struct NewZkRedemption<'a> {
    pub nullifier: [u8; 32],
    pub mmr_id: u64,
    pub denomination: u64,
    pub value: Amount,
    pub operator_id: &'a str,
    pub request_digest: [u8; 32],
    pub now: u64,
    pub postings: Vec<Posting>,
    /// Where the share of the postings came from (recorded on each entry).
    pub share: ShareSource,
    /// The share the postings were split at (recorded on each entry).
    pub share_bps: u32,
    pub receipt: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ZkRedeemOutcome {
    Redeemed,
    /// The same operator already sent this exact request: the stored receipt.
    Replay(String),
    /// The nullifier is spent (by v0.1 or v0.2).
    AlreadyRedeemed,
}

fn mmr_err(e: MmrError) -> StoreError {
    StoreError::Corrupt(format!("MMR: {e}"))
}

fn levels_of(v: i64) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("MMR levels {v}")))
}

/// Appends `leaf` to MMR `id` inside `tx` (creating the MMR with `levels` if new) and books
/// `group_value` to it. The caller holds the cache lock.
pub(super) async fn append_leaf(
    tx: &mut Transaction<'static, Any>,
    cache: &mut MmrCache,
    id: u64,
    levels: u32,
    leaf: &FieldBytes,
    group_value: Amount,
    now: u64,
) -> Result<Result<Appended, MmrError>, StoreError> {
    let id_i = to_i64(id, "mmr id")?;
    sqlx::query(
        "INSERT INTO mmrs (id, levels, size, group_units, redeemed_units)
         VALUES ($1, $2, 0, 0, 0) ON CONFLICT (id) DO NOTHING",
    )
    .bind(id_i)
    .bind(i64::from(levels))
    .execute(&mut **tx)
    .await
    .map_err(q)?;
    let row = sqlx::query(
        "UPDATE mmrs SET size = size + 1, group_units = group_units + $2
         WHERE id = $1 RETURNING size, levels",
    )
    .bind(id_i)
    .bind(to_i64(group_value.0, "value")?)
    .fetch_one(&mut **tx)
    .await
    .map_err(q)?;
    let new_size = to_u64(row.try_get("size").map_err(q)?, "size")?;
    let levels = levels_of(row.try_get("levels").map_err(q)?)?;
    let index = new_size - 1;
    let mmr = sync(&mut **tx, cache, id, levels, index).await?;
    let fr = leaf
        .to_fr()
        .map_err(|e| StoreError::Corrupt(format!("leaf: {e}")))?;
    if let Err(e) = mmr.append(fr) {
        return Ok(Err(e));
    }
    let root = mmr.root();
    let proof = mmr.proof(index).map_err(mmr_err)?;
    sqlx::query("INSERT INTO mmr_leaves (mmr_id, idx, leaf) VALUES ($1, $2, $3)")
        .bind(id_i)
        .bind(to_i64(index, "index")?)
        .bind(&leaf.0[..])
        .execute(&mut **tx)
        .await
        .map_err(q)?;
    sqlx::query("INSERT INTO mmr_roots (mmr_id, size, root, at) VALUES ($1, $2, $3, $4)")
        .bind(id_i)
        .bind(to_i64(new_size, "size")?)
        .bind(&FieldBytes::from_fr(&root).0[..])
        .bind(to_i64(now, "time")?)
        .execute(&mut **tx)
        .await
        .map_err(q)?;
    Ok(Ok(Appended { proof, root }))
}

/// Brings this process's copy of MMR `id` to its first `committed` leaves.
async fn sync<'a, 'e, E>(
    conn: E,
    cache: &'a mut MmrCache,
    id: u64,
    levels: u32,
    committed: u64,
) -> Result<&'a mut Mmr, StoreError>
where
    E: sqlx::Executor<'e, Database = Any>,
{
    let mmr = match cache.mmrs.entry(id) {
        std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
        std::collections::hash_map::Entry::Vacant(v) => {
            v.insert(Mmr::new(MmrParams::new(id, levels).map_err(mmr_err)?).map_err(mmr_err)?)
        }
    };
    if mmr.size() > committed {
        mmr.truncate(committed);
    }
    if mmr.size() < committed {
        let rows = sqlx::query(
            "SELECT leaf FROM mmr_leaves WHERE mmr_id = $1 AND idx >= $2 AND idx < $3
             ORDER BY idx",
        )
        .bind(to_i64(id, "mmr id")?)
        .bind(to_i64(mmr.size(), "size")?)
        .bind(to_i64(committed, "size")?)
        .fetch_all(conn)
        .await
        .map_err(q)?;
        for r in rows {
            let leaf = super::bytes32(r.try_get("leaf").map_err(q)?, "leaf")?;
            let fr = FieldBytes(leaf)
                .to_fr()
                .map_err(|e| StoreError::Corrupt(format!("leaf: {e}")))?;
            mmr.append(fr).map_err(mmr_err)?;
        }
        if mmr.size() != committed {
            return Err(StoreError::Corrupt(format!(
                "MMR {id} has {} stored leaves, expected {committed}",
                mmr.size()
            )));
        }
    }
    Ok(mmr)
}

/// Undoes in-memory appends of a transaction that did not commit.
pub(super) fn roll_back(cache: &mut MmrCache, sizes: &[(u64, u64)]) {
    for (id, size) in sizes {
        if let Some(m) = cache.mmrs.get_mut(id) {
            m.truncate(*size);
        }
    }
}

pub(super) fn cached_size(cache: &MmrCache, id: u64) -> Option<u64> {
    cache.mmrs.get(&id).map(Mmr::size)
}

fn mmr_row(r: &AnyRow) -> Result<MmrRow, StoreError> {
    let root: Option<Vec<u8>> = r.try_get("root").map_err(q)?;
    Ok(MmrRow {
        id: to_u64(r.try_get("id").map_err(q)?, "mmr id")?,
        levels: levels_of(r.try_get("levels").map_err(q)?)?,
        size: to_u64(r.try_get("size").map_err(q)?, "size")?,
        group_value: Amount(to_u64(r.try_get("group_units").map_err(q)?, "value")?),
        redeemed_via: Amount(to_u64(r.try_get("redeemed_units").map_err(q)?, "value")?),
        root: root
            .map(|b| super::bytes32(b, "root").map(FieldBytes))
            .transpose()?,
    })
}

fn root_row(r: &AnyRow) -> Result<RootRow, StoreError> {
    Ok(RootRow {
        mmr_id: to_u64(r.try_get("mmr_id").map_err(q)?, "mmr id")?,
        size: to_u64(r.try_get("size").map_err(q)?, "size")?,
        root: FieldBytes(super::bytes32(r.try_get("root").map_err(q)?, "root")?),
        at: to_u64(r.try_get("at").map_err(q)?, "time")?,
    })
}

impl CoordinatorStore {
    /// Every MMR, oldest first, with its current root.
    pub async fn mmrs(&self) -> Result<Vec<MmrRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT m.id, m.levels, m.size, m.group_units, m.redeemed_units, r.root
             FROM mmrs m LEFT JOIN mmr_roots r ON r.mmr_id = m.id AND r.size = m.size
             ORDER BY m.id",
        )
        .fetch_all(&self.db.pool)
        .await
        .map_err(q)?;
        rows.iter().map(mmr_row).collect()
    }

    pub async fn mmr(&self, id: u64) -> Result<Option<MmrRow>, StoreError> {
        let row = sqlx::query(
            "SELECT m.id, m.levels, m.size, m.group_units, m.redeemed_units, r.root
             FROM mmrs m LEFT JOIN mmr_roots r ON r.mmr_id = m.id AND r.size = m.size
             WHERE m.id = $1",
        )
        .bind(to_i64(id, "mmr id")?)
        .fetch_optional(&self.db.pool)
        .await
        .map_err(q)?;
        row.map(|r| mmr_row(&r)).transpose()
    }

    /// How many of the first `size` leaves of MMR `id` are vouchers of each denomination
    /// (ascending, non-zero only). `size` must not exceed the MMR's committed size (read it
    /// from [`Self::mmr`] first); the counts then add up to `size`.
    pub async fn denomination_counts(
        &self,
        id: u64,
        size: u64,
    ) -> Result<Vec<(u64, u64)>, StoreError> {
        let mut tally = self.denomination_tally.lock().await;
        let (counted, counts) = tally.mmrs.entry(id).or_default();
        if *counted > size {
            // An older size than already counted (a reader that loaded the MMR's row before
            // another counted further): that prefix afresh.
            drop(tally);
            return self.count_leaves(id, 0, size).await;
        }
        for (d, n) in self.count_leaves(id, *counted, size).await? {
            *counts.entry(d).or_default() += n;
        }
        *counted = size;
        Ok(counts.iter().map(|(&d, &n)| (d, n)).collect())
    }

    /// Leaves `from..to` of MMR `id` by denomination, checked to be `to - from` vouchers.
    async fn count_leaves(
        &self,
        id: u64,
        from: u64,
        to: u64,
    ) -> Result<Vec<(u64, u64)>, StoreError> {
        if from >= to {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT v.denomination, COUNT(*) AS n
             FROM mmr_leaves l JOIN vouchers v ON v.commitment = l.leaf
             WHERE l.mmr_id = $1 AND l.idx >= $2 AND l.idx < $3
             GROUP BY v.denomination ORDER BY v.denomination",
        )
        .bind(to_i64(id, "mmr id")?)
        .bind(to_i64(from, "index")?)
        .bind(to_i64(to, "size")?)
        .fetch_all(&self.db.pool)
        .await
        .map_err(q)?;
        let counts = rows
            .iter()
            .map(|r| {
                Ok((
                    to_u64(r.try_get("denomination").map_err(q)?, "denomination")?,
                    to_u64(r.try_get("n").map_err(q)?, "count")?,
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let seen: u64 = counts.iter().map(|(_, n)| n).sum();
        if seen != to - from {
            return Err(StoreError::Corrupt(format!(
                "MMR {id}: {seen} of leaves {from}..{to} are published vouchers"
            )));
        }
        Ok(counts)
    }

    /// Leaves `from..from + limit` of MMR `id` (fewer at the end).
    pub async fn mmr_leaves(
        &self,
        id: u64,
        from: u64,
        limit: u32,
    ) -> Result<Vec<FieldBytes>, StoreError> {
        let rows = sqlx::query(
            "SELECT leaf FROM mmr_leaves WHERE mmr_id = $1 AND idx >= $2 ORDER BY idx LIMIT $3",
        )
        .bind(to_i64(id, "mmr id")?)
        .bind(to_i64(from, "index")?)
        .bind(i64::from(limit))
        .fetch_all(&self.db.pool)
        .await
        .map_err(q)?;
        rows.iter()
            .map(|r| super::bytes32(r.try_get("leaf").map_err(q)?, "leaf").map(FieldBytes))
            .collect()
    }

    /// The root MMR `id` had at `size`, and when it was recorded.
    pub async fn root_at(&self, id: u64, size: u64) -> Result<Option<RootRow>, StoreError> {
        let row = sqlx::query(
            "SELECT mmr_id, size, root, at FROM mmr_roots WHERE mmr_id = $1 AND size = $2",
        )
        .bind(to_i64(id, "mmr id")?)
        .bind(to_i64(size, "size")?)
        .fetch_optional(&self.db.pool)
        .await
        .map_err(q)?;
        row.map(|r| root_row(&r)).transpose()
    }

    /// Which MMR and size a root belongs to, if it was ever recorded.
    pub async fn find_root(&self, root: &FieldBytes) -> Result<Option<RootRow>, StoreError> {
        let row = sqlx::query("SELECT mmr_id, size, root, at FROM mmr_roots WHERE root = $1")
            .bind(&root.0[..])
            .fetch_optional(&self.db.pool)
            .await
            .map_err(q)?;
        row.map(|r| root_row(&r)).transpose()
    }

    /// A consistency proof between two sizes of MMR `id` (`from ≤ to ≤` its size).
    pub async fn consistency_proof(
        &self,
        id: u64,
        from: u64,
        to: u64,
    ) -> Result<Result<ConsistencyProof, MmrError>, StoreError> {
        let Some(row) = self.mmr(id).await? else {
            return Err(StoreError::Corrupt(format!("no MMR {id}")));
        };
        let mut cache = self.mmr_cache.lock().await;
        let mmr = sync(&self.db.pool, &mut cache, id, row.levels, row.size).await?;
        Ok(mmr.consistency_proof(from, to))
    }

    /// Records a v0.2 redemption: spends the nullifier, books the value as redeemed through
    /// the MMR and pays from the pool, all or nothing.
    pub async fn redeem_zk(&self, r: &NewZkRedemption<'_>) -> Result<ZkRedeemOutcome, StoreError> {
        let mut tx = self.db.pool.begin().await.map_err(q)?;
        let inserted = sqlx::query(
            "INSERT INTO nullifiers (nullifier, version, mmr_id, operator_id, denomination,
                                     request_digest, redeemed_at, receipt)
             VALUES ($1, 2, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&r.nullifier[..])
        .bind(to_i64(r.mmr_id, "mmr id")?)
        .bind(r.operator_id)
        .bind(to_i64(r.denomination, "denomination")?)
        .bind(&r.request_digest[..])
        .bind(to_i64(r.now, "time")?)
        .bind(&r.receipt)
        .execute(&mut *tx)
        .await
        .map_err(q);
        match inserted {
            Ok(_) => {}
            Err(e) if e.is_duplicate() => {
                tx.rollback().await.map_err(q)?;
                return self
                    .classify_spent(&r.nullifier, r.operator_id, &r.request_digest)
                    .await;
            }
            Err(e) => return Err(e),
        }
        book_redeemed(&mut tx, r.mmr_id, r.value).await?;
        let cleared = super::Cleared {
            share: &r.share,
            operator_id: r.operator_id,
            value: r.value,
            share_bps: r.share_bps,
        };
        append(&mut tx, r.now, &r.postings, Some(cleared)).await?;
        tx.commit().await.map_err(q)?;
        Ok(ZkRedeemOutcome::Redeemed)
    }

    async fn classify_spent(
        &self,
        nullifier: &[u8; 32],
        operator_id: &str,
        digest: &[u8; 32],
    ) -> Result<ZkRedeemOutcome, StoreError> {
        let prev = sqlx::query(
            "SELECT operator_id, request_digest, receipt FROM nullifiers WHERE nullifier = $1",
        )
        .bind(&nullifier[..])
        .fetch_optional(&self.db.pool)
        .await
        .map_err(q)?;
        if let Some(p) = prev {
            let op: String = p.try_get("operator_id").map_err(q)?;
            let d: Vec<u8> = p.try_get("request_digest").map_err(q)?;
            if op == operator_id && d == digest {
                return Ok(ZkRedeemOutcome::Replay(p.try_get("receipt").map_err(q)?));
            }
        }
        Ok(ZkRedeemOutcome::AlreadyRedeemed)
    }

    /// If `nullifier` is spent: a replay when `operator_id` spent it with this exact request,
    /// else already redeemed. `None` if it is unspent.
    pub async fn nullifier_outcome(
        &self,
        nullifier: &[u8; 32],
        operator_id: &str,
        digest: &[u8; 32],
    ) -> Result<Option<ZkRedeemOutcome>, StoreError> {
        if !self.nullifier_spent(nullifier).await? {
            return Ok(None);
        }
        self.classify_spent(nullifier, operator_id, digest)
            .await
            .map(Some)
    }

    /// Whether a nullifier is spent.
    pub async fn nullifier_spent(&self, nullifier: &[u8; 32]) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM nullifiers WHERE nullifier = $1")
            .bind(&nullifier[..])
            .fetch_one(&self.db.pool)
            .await
            .map_err(q)?;
        Ok(n > 0)
    }

    /// Value released so far by the MMR books.
    pub async fn released_by_books(&self) -> Result<Amount, StoreError> {
        let v: i64 = sqlx::query_scalar("SELECT released_units FROM release_head WHERE id = 1")
            .fetch_one(&self.db.pool)
            .await
            .map_err(q)?;
        Ok(Amount(to_u64(v, "released")?))
    }
}

/// Adds `value` to what was redeemed through MMR `id`.
pub(super) async fn book_redeemed(
    tx: &mut Transaction<'static, Any>,
    id: u64,
    value: Amount,
) -> Result<(), StoreError> {
    let r = sqlx::query("UPDATE mmrs SET redeemed_units = redeemed_units + $1 WHERE id = $2")
        .bind(to_i64(value.0, "value")?)
        .bind(to_i64(id, "mmr id")?)
        .execute(&mut **tx)
        .await
        .map_err(q)?;
    if r.rows_affected() != 1 {
        return Err(StoreError::Corrupt(format!("no MMR {id} to book to")));
    }
    Ok(())
}

/// Raises the cumulative release to what the books of MMRs `0..=expired_through` allow and
/// returns the increase (to be booked pool → fund by the caller in the same transaction).
pub(super) async fn release_by_books(
    tx: &mut Transaction<'static, Any>,
    expired_through: u64,
) -> Result<Amount, StoreError> {
    // Taking the head's row lock first serialises concurrent releasers.
    let released: i64 = sqlx::query_scalar(
        "UPDATE release_head SET released_units = released_units WHERE id = 1
         RETURNING released_units",
    )
    .fetch_one(&mut **tx)
    .await
    .map_err(q)?;
    let released = to_u64(released, "released")?;
    let row = sqlx::query(
        "SELECT CAST(COALESCE(SUM(group_units), 0) AS BIGINT) AS g,
                CAST(COALESCE(SUM(redeemed_units), 0) AS BIGINT) AS r
         FROM mmrs WHERE id <= $1",
    )
    .bind(to_i64(expired_through, "mmr id")?)
    .fetch_one(&mut **tx)
    .await
    .map_err(q)?;
    let book = MmrBook {
        group_value: to_u64(row.try_get("g").map_err(q)?, "value")?,
        redeemed_via: to_u64(row.try_get("r").map_err(q)?, "value")?,
    };
    let target = releasable(&[book], released);
    let delta = target.saturating_sub(released);
    if delta > 0 {
        sqlx::query("UPDATE release_head SET released_units = $1 WHERE id = 1")
            .bind(to_i64(target, "released")?)
            .execute(&mut **tx)
            .await
            .map_err(q)?;
    }
    Ok(Amount(delta))
}
