//! The relay directory's tables: what operators chose to publish about their relays, the
//! directory's proof-of-work challenges, probe observations and the rolling stability state
//! measured from them, identity attestations, signed share statements, and the transparency
//! log of them with its signed checkpoints ([`LogEntry`], [`DirectoryStore::append_log`];
//! the format is `smpx_directory::log`'s). Nothing about any user of the relays is here
//! (issue 13, "Privacy"); the directory's privacy test (`crates/directory/tests/it/privacy.rs`)
//! lists every column with its meaning and fails on one it does not list.
//!
//! JSON columns (`info`, `metadata`, `stability`, `attestation`, `statement`) are written and
//! read by the directory service; the store treats them as text.

use crate::db::{q, to_i64, to_u64, Db, StoreError};
use smpx_core::tlog::merkle::leaf_hash;
use smpx_core::tlog::Hash;
use sqlx::any::AnyRow;
use sqlx::Row;

const MIGRATIONS: &[&[&str]] = &[
    &[
        "CREATE TABLE directory_challenges (
        challenge TEXT PRIMARY KEY,
        issued_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        used_at BIGINT)",
        "CREATE TABLE directory_operators (
        operator_id TEXT PRIMARY KEY,
        operator_key TEXT NOT NULL,
        first_seen BIGINT NOT NULL)",
        "CREATE TABLE directory_relays (
        fingerprint TEXT PRIMARY KEY,
        address TEXT NOT NULL,
        subnet TEXT NOT NULL,
        operator_id TEXT NOT NULL REFERENCES directory_operators (operator_id),
        region TEXT NOT NULL,
        info TEXT NOT NULL,
        metadata TEXT NOT NULL,
        registered_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        withdrawn_at BIGINT,
        heartbeat_seq BIGINT,
        heartbeat_at BIGINT,
        stability TEXT NOT NULL,
        last_probe_at BIGINT,
        last_probe_up BIGINT)",
        "CREATE INDEX directory_relays_subnet ON directory_relays (subnet)",
        "CREATE TABLE directory_registrations (
        id {serial},
        subnet TEXT NOT NULL,
        at BIGINT NOT NULL)",
        "CREATE INDEX directory_registrations_subnet ON directory_registrations (subnet, at)",
        "CREATE TABLE directory_observations (
        id {serial},
        fingerprint TEXT NOT NULL,
        at BIGINT NOT NULL,
        up BIGINT NOT NULL,
        latency_ms BIGINT,
        stage TEXT NOT NULL,
        detail TEXT NOT NULL)",
        "CREATE INDEX directory_observations_relay ON directory_observations (fingerprint, at)",
        "CREATE TABLE directory_attestations (
        operator_id TEXT NOT NULL,
        attester TEXT NOT NULL,
        legal_name TEXT NOT NULL,
        country TEXT NOT NULL,
        issued_at BIGINT NOT NULL,
        attestation TEXT NOT NULL,
        PRIMARY KEY (operator_id, attester))",
        "CREATE TABLE directory_statements (
        operator_id TEXT NOT NULL,
        period_start BIGINT NOT NULL,
        statement TEXT NOT NULL,
        PRIMARY KEY (operator_id, period_start))",
    ],
    &[
        // The transparency log (`smpx_directory::log`). `directory_log_head` holds one row,
        // the log's size: an append takes the next index by incrementing it, which locks the row
        // (PostgreSQL) or the database (SQLite) until the appending transaction ends, so two
        // appends never take one index and indices stay dense; the primary key of
        // `directory_log` enforces it besides.
        "CREATE TABLE directory_log_head (
        id BIGINT PRIMARY KEY CHECK (id = 0),
        size BIGINT NOT NULL)",
        "INSERT INTO directory_log_head (id, size) VALUES (0, 0)",
        "CREATE TABLE directory_log (
        idx BIGINT PRIMARY KEY CHECK (idx >= 0),
        kind TEXT NOT NULL,
        body TEXT NOT NULL,
        leaf_hash {blob} NOT NULL,
        appended_at BIGINT NOT NULL)",
        "CREATE TABLE directory_checkpoints (
        size BIGINT PRIMARY KEY,
        note TEXT NOT NULL,
        signed_at BIGINT NOT NULL)",
    ],
];

/// A relay as registered, with its measurement state.
#[derive(Clone, Debug, PartialEq)]
pub struct RelayRow {
    pub fingerprint: String,
    pub address: String,
    pub subnet: String,
    pub operator_id: String,
    pub region: String,
    /// The relay's INFO, JSON.
    pub info: String,
    /// The published metadata, JSON.
    pub metadata: String,
    /// First registration: the relay's age on the directory counts from here.
    pub registered_at: u64,
    pub updated_at: u64,
    pub withdrawn_at: Option<u64>,
    pub heartbeat_seq: Option<u64>,
    pub heartbeat_at: Option<u64>,
    /// `measure::Stability`, JSON.
    pub stability: String,
    pub last_probe: Option<(u64, bool)>,
}

/// A registration to record.
#[derive(Clone, Debug)]
pub struct NewRegistration {
    pub fingerprint: String,
    pub address: String,
    pub subnet: String,
    pub operator_id: String,
    /// Hex.
    pub operator_key: String,
    pub region: String,
    pub info: String,
    pub metadata: String,
    pub challenge: String,
    /// `measure::Stability::default()` as JSON, for a relay new to the directory.
    pub fresh_stability: String,
    pub now: u64,
    /// At most this many registrations from one subnet per `rate_window_secs`.
    pub rate_limit: u64,
    pub rate_window_secs: u64,
}

/// What became of a registration. Everything but `Registered` left the database unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegisterOutcome {
    /// Recorded; `new` when the fingerprint was not registered before.
    Registered {
        new: bool,
    },
    ChallengeUnknown,
    ChallengeExpired,
    ChallengeUsed,
    RateLimited,
    /// The operator id is registered with another key.
    OperatorKeyMismatch,
    /// Another operator registered this fingerprint.
    FingerprintTaken,
}

/// What became of a heartbeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeartbeatOutcome {
    Recorded,
    Unknown,
    Stale,
}

/// One probe's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservationRow {
    pub at: u64,
    pub up: bool,
    pub latency_ms: Option<u32>,
    /// How far the probe got (`tcp`, `tls`, `round_trip`, …).
    pub stage: String,
    pub detail: String,
}

/// An operator as the directory knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperatorRow {
    pub operator_id: String,
    pub operator_key: String,
    pub first_seen: u64,
}

/// A stored attestation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttestationRow {
    pub attester: String,
    pub legal_name: String,
    pub country: String,
    pub issued_at: u64,
    /// The signed attestation, JSON.
    pub attestation: String,
}

/// What a transparency log entry records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogKind {
    /// An accepted registration: the signed request.
    Registration,
    /// A withdrawal: the signed withdrawal.
    Withdrawal,
    /// One probe round's status of every published relay.
    Snapshot,
    /// A signed share statement.
    Statement,
}

impl LogKind {
    pub const ALL: [LogKind; 4] = [
        LogKind::Registration,
        LogKind::Withdrawal,
        LogKind::Snapshot,
        LogKind::Statement,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LogKind::Registration => "registration",
            LogKind::Withdrawal => "withdrawal",
            LogKind::Snapshot => "snapshot",
            LogKind::Statement => "statement",
        }
    }

    pub fn parse(text: &str) -> Option<LogKind> {
        LogKind::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

/// A transparency log entry: its kind and its body (text: JSON, or a signed statement).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    pub kind: LogKind,
    pub body: String,
}

impl LogEntry {
    pub fn new(kind: LogKind, body: impl Into<String>) -> LogEntry {
        LogEntry {
            kind,
            body: body.into(),
        }
    }

    /// The bytes the Merkle leaf hashes: `kind || "\n" || body`. The kind is inside the
    /// hash, so an entry cannot be passed off as one of another kind.
    pub fn leaf_data(&self) -> Vec<u8> {
        let mut data = Vec::with_capacity(self.kind.as_str().len() + 1 + self.body.len());
        data.extend_from_slice(self.kind.as_str().as_bytes());
        data.push(b'\n');
        data.extend_from_slice(self.body.as_bytes());
        data
    }

    /// RFC 6962 leaf hash of [`LogEntry::leaf_data`].
    pub fn leaf_hash(&self) -> Hash {
        leaf_hash(&self.leaf_data())
    }
}

/// A stored log entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRow {
    pub index: u64,
    pub entry: LogEntry,
    pub leaf_hash: Hash,
    pub appended_at: u64,
}

/// A stored signed checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointRow {
    pub size: u64,
    /// The signed note, as served.
    pub note: String,
    pub signed_at: u64,
}

/// Appends `entry` inside the caller's transaction, so the entry and the change it records
/// commit together or not at all. Incrementing the head first takes the write lock (the
/// head row in PostgreSQL, the database in SQLite): a concurrent append waits for this
/// transaction and then gets the next index.
async fn append_in(
    conn: &mut sqlx::AnyConnection,
    entry: &LogEntry,
    now: u64,
) -> Result<u64, StoreError> {
    let size: i64 =
        sqlx::query("UPDATE directory_log_head SET size = size + 1 WHERE id = 0 RETURNING size")
            .fetch_one(&mut *conn)
            .await
            .map_err(q)?
            .try_get("size")
            .map_err(q)?;
    let index = to_u64(size, "log size")?
        .checked_sub(1)
        .ok_or_else(|| StoreError::Corrupt("log head below 1 after an append".into()))?;
    sqlx::query(
        "INSERT INTO directory_log (idx, kind, body, leaf_hash, appended_at)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(to_i64(index, "log index")?)
    .bind(entry.kind.as_str())
    .bind(&entry.body)
    .bind(entry.leaf_hash().to_vec())
    .bind(to_i64(now, "time")?)
    .execute(&mut *conn)
    .await
    .map_err(q)?;
    Ok(index)
}

fn log_row(row: &AnyRow) -> Result<LogRow, StoreError> {
    let kind: String = row.try_get("kind").map_err(q)?;
    let kind = LogKind::parse(&kind)
        .ok_or_else(|| StoreError::Corrupt(format!("log entry of unknown kind {kind:?}")))?;
    Ok(LogRow {
        index: get_u64(row, "idx")?,
        entry: LogEntry::new(kind, row.try_get::<String, _>("body").map_err(q)?),
        leaf_hash: hash_column(row)?,
        appended_at: get_u64(row, "appended_at")?,
    })
}

fn hash_column(row: &AnyRow) -> Result<Hash, StoreError> {
    let bytes: Vec<u8> = row.try_get("leaf_hash").map_err(q)?;
    Hash::try_from(bytes.as_slice())
        .map_err(|_| StoreError::Corrupt("a log leaf hash is not 32 bytes".into()))
}

#[derive(Clone, Debug)]
pub struct DirectoryStore {
    db: Db,
}

const RELAY_COLUMNS: &str = "fingerprint, address, subnet, operator_id, region, info, metadata, \
    registered_at, updated_at, withdrawn_at, heartbeat_seq, heartbeat_at, stability, \
    last_probe_at, last_probe_up";

fn opt_u64(row: &AnyRow, col: &str) -> Result<Option<u64>, StoreError> {
    let v: Option<i64> = row.try_get(col).map_err(q)?;
    v.map(|v| to_u64(v, col)).transpose()
}

fn get_u64(row: &AnyRow, col: &str) -> Result<u64, StoreError> {
    to_u64(row.try_get(col).map_err(q)?, col)
}

fn relay_row(row: &AnyRow) -> Result<RelayRow, StoreError> {
    let s = |c: &str| -> Result<String, StoreError> { row.try_get(c).map_err(q) };
    let last_probe = match (
        opt_u64(row, "last_probe_at")?,
        opt_u64(row, "last_probe_up")?,
    ) {
        (Some(at), Some(up)) => Some((at, up != 0)),
        _ => None,
    };
    Ok(RelayRow {
        fingerprint: s("fingerprint")?,
        address: s("address")?,
        subnet: s("subnet")?,
        operator_id: s("operator_id")?,
        region: s("region")?,
        info: s("info")?,
        metadata: s("metadata")?,
        registered_at: get_u64(row, "registered_at")?,
        updated_at: get_u64(row, "updated_at")?,
        withdrawn_at: opt_u64(row, "withdrawn_at")?,
        heartbeat_seq: opt_u64(row, "heartbeat_seq")?,
        heartbeat_at: opt_u64(row, "heartbeat_at")?,
        stability: s("stability")?,
        last_probe,
    })
}

impl DirectoryStore {
    pub async fn open(db: Db) -> Result<Self, StoreError> {
        db.migrate("directory", MIGRATIONS).await?;
        Ok(DirectoryStore { db })
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Records a challenge the directory handed out.
    pub async fn add_challenge(
        &self,
        challenge: &str,
        now: u64,
        expires_at: u64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO directory_challenges (challenge, issued_at, expires_at) VALUES ($1, $2, $3)",
        )
        .bind(challenge)
        .bind(to_i64(now, "time")?)
        .bind(to_i64(expires_at, "time")?)
        .execute(&self.db.pool)
        .await
        .map_err(q)?;
        Ok(())
    }

    /// Forgets challenges expired before `before` (used or not: an expired one is refused
    /// as unknown, which is as good).
    pub async fn prune_challenges(&self, before: u64) -> Result<u64, StoreError> {
        let r = sqlx::query("DELETE FROM directory_challenges WHERE expires_at < $1")
            .bind(to_i64(before, "time")?)
            .execute(&self.db.pool)
            .await
            .map_err(q)?;
        Ok(r.rows_affected())
    }

    /// Registers or updates a relay in one transaction: the challenge is spent (once), the
    /// subnet's rate is checked, the operator's key is bound to its id on first sight, and a
    /// fingerprint stays with the operator that registered it first. A re-registration keeps
    /// the relay's age and measured history.
    ///
    /// This one writes no log entry: it is for writers that bypass the directory's log
    /// (benchmarks filling a store). The directory's handlers use
    /// [`DirectoryStore::register_logged`].
    pub async fn register(&self, r: &NewRegistration) -> Result<RegisterOutcome, StoreError> {
        self.register_in(r, None).await
    }

    /// [`DirectoryStore::register`], appending `entry` to the transparency log in the same
    /// transaction when the registration is recorded (and only then).
    pub async fn register_logged(
        &self,
        r: &NewRegistration,
        entry: &LogEntry,
    ) -> Result<RegisterOutcome, StoreError> {
        self.register_in(r, Some(entry)).await
    }

    async fn register_in(
        &self,
        r: &NewRegistration,
        entry: Option<&LogEntry>,
    ) -> Result<RegisterOutcome, StoreError> {
        let now = to_i64(r.now, "time")?;
        let mut tx = self.db.pool.begin().await.map_err(q)?;
        let spent = sqlx::query(
            "UPDATE directory_challenges SET used_at = $1
             WHERE challenge = $2 AND used_at IS NULL AND expires_at > $1",
        )
        .bind(now)
        .bind(&r.challenge)
        .execute(&mut *tx)
        .await
        .map_err(q)?;
        if spent.rows_affected() == 0 {
            let row = sqlx::query(
                "SELECT expires_at, used_at FROM directory_challenges WHERE challenge = $1",
            )
            .bind(&r.challenge)
            .fetch_optional(&mut *tx)
            .await
            .map_err(q)?;
            return Ok(match row {
                None => RegisterOutcome::ChallengeUnknown,
                Some(row) if opt_u64(&row, "used_at")?.is_some() => RegisterOutcome::ChallengeUsed,
                Some(_) => RegisterOutcome::ChallengeExpired,
            });
        }
        let window_start = r.now.saturating_sub(r.rate_window_secs);
        let recent: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM directory_registrations WHERE subnet = $1 AND at > $2",
        )
        .bind(&r.subnet)
        .bind(to_i64(window_start, "time")?)
        .fetch_one(&mut *tx)
        .await
        .map_err(q)?
        .try_get("n")
        .map_err(q)?;
        if to_u64(recent, "count")? >= r.rate_limit {
            return Ok(RegisterOutcome::RateLimited);
        }
        let operator =
            sqlx::query("SELECT operator_key FROM directory_operators WHERE operator_id = $1")
                .bind(&r.operator_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(q)?;
        match operator {
            Some(row) => {
                let key: String = row.try_get("operator_key").map_err(q)?;
                if key != r.operator_key {
                    return Ok(RegisterOutcome::OperatorKeyMismatch);
                }
            }
            None => {
                sqlx::query(
                    "INSERT INTO directory_operators (operator_id, operator_key, first_seen)
                     VALUES ($1, $2, $3)",
                )
                .bind(&r.operator_id)
                .bind(&r.operator_key)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(q)?;
            }
        }
        let existing =
            sqlx::query("SELECT operator_id FROM directory_relays WHERE fingerprint = $1")
                .bind(&r.fingerprint)
                .fetch_optional(&mut *tx)
                .await
                .map_err(q)?;
        let new = match existing {
            Some(row) => {
                let owner: String = row.try_get("operator_id").map_err(q)?;
                if owner != r.operator_id {
                    return Ok(RegisterOutcome::FingerprintTaken);
                }
                sqlx::query(
                    "UPDATE directory_relays SET address = $1, subnet = $2, region = $3,
                        info = $4, metadata = $5, updated_at = $6, withdrawn_at = NULL
                     WHERE fingerprint = $7",
                )
                .bind(&r.address)
                .bind(&r.subnet)
                .bind(&r.region)
                .bind(&r.info)
                .bind(&r.metadata)
                .bind(now)
                .bind(&r.fingerprint)
                .execute(&mut *tx)
                .await
                .map_err(q)?;
                false
            }
            None => {
                sqlx::query(
                    "INSERT INTO directory_relays (fingerprint, address, subnet, operator_id,
                        region, info, metadata, registered_at, updated_at, stability)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9)",
                )
                .bind(&r.fingerprint)
                .bind(&r.address)
                .bind(&r.subnet)
                .bind(&r.operator_id)
                .bind(&r.region)
                .bind(&r.info)
                .bind(&r.metadata)
                .bind(now)
                .bind(&r.fresh_stability)
                .execute(&mut *tx)
                .await
                .map_err(q)?;
                true
            }
        };
        sqlx::query("INSERT INTO directory_registrations (subnet, at) VALUES ($1, $2)")
            .bind(&r.subnet)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(q)?;
        if let Some(entry) = entry {
            append_in(&mut tx, entry, r.now).await?;
        }
        tx.commit().await.map_err(q)?;
        Ok(RegisterOutcome::Registered { new })
    }

    /// One relay, withdrawn or not.
    pub async fn relay(&self, fingerprint: &str) -> Result<Option<RelayRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {RELAY_COLUMNS} FROM directory_relays WHERE fingerprint = $1"
        ))
        .bind(fingerprint)
        .fetch_optional(&self.db.pool)
        .await
        .map_err(q)?;
        row.as_ref().map(relay_row).transpose()
    }

    /// Every relay not withdrawn, by fingerprint.
    pub async fn published_relays(&self) -> Result<Vec<RelayRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {RELAY_COLUMNS} FROM directory_relays WHERE withdrawn_at IS NULL
             ORDER BY fingerprint"
        ))
        .fetch_all(&self.db.pool)
        .await
        .map_err(q)?;
        rows.iter().map(relay_row).collect()
    }

    /// Records a heartbeat if `seq` is above every one before.
    pub async fn heartbeat(
        &self,
        fingerprint: &str,
        seq: u64,
        at: u64,
    ) -> Result<HeartbeatOutcome, StoreError> {
        let seq = to_i64(seq, "seq")?;
        let r = sqlx::query(
            "UPDATE directory_relays SET heartbeat_seq = $1, heartbeat_at = $2
             WHERE fingerprint = $3 AND withdrawn_at IS NULL
               AND (heartbeat_seq IS NULL OR heartbeat_seq < $1)",
        )
        .bind(seq)
        .bind(to_i64(at, "time")?)
        .bind(fingerprint)
        .execute(&self.db.pool)
        .await
        .map_err(q)?;
        if r.rows_affected() == 1 {
            return Ok(HeartbeatOutcome::Recorded);
        }
        Ok(match self.relay(fingerprint).await? {
            Some(relay) if relay.withdrawn_at.is_none() => HeartbeatOutcome::Stale,
            _ => HeartbeatOutcome::Unknown,
        })
    }

    /// Takes a relay off the directory (its history is kept: a re-registration resumes it),
    /// appending `entry` (the signed withdrawal) to the log in the same transaction.
    /// `false`, and nothing logged, if it was not published.
    pub async fn withdraw(
        &self,
        fingerprint: &str,
        now: u64,
        entry: &LogEntry,
    ) -> Result<bool, StoreError> {
        let mut tx = self.db.pool.begin().await.map_err(q)?;
        let r = sqlx::query(
            "UPDATE directory_relays SET withdrawn_at = $1
             WHERE fingerprint = $2 AND withdrawn_at IS NULL",
        )
        .bind(to_i64(now, "time")?)
        .bind(fingerprint)
        .execute(&mut *tx)
        .await
        .map_err(q)?;
        if r.rows_affected() != 1 {
            return Ok(false);
        }
        append_in(&mut tx, entry, now).await?;
        tx.commit().await.map_err(q)?;
        Ok(true)
    }

    /// Records one probe and the relay's stability after it, atomically (a restart resumes
    /// from the last recorded observation).
    pub async fn record_observation(
        &self,
        fingerprint: &str,
        o: &ObservationRow,
        stability: &str,
    ) -> Result<(), StoreError> {
        let at = to_i64(o.at, "time")?;
        let mut tx = self.db.pool.begin().await.map_err(q)?;
        sqlx::query(
            "INSERT INTO directory_observations (fingerprint, at, up, latency_ms, stage, detail)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(fingerprint)
        .bind(at)
        .bind(i64::from(o.up))
        .bind(o.latency_ms.map(i64::from))
        .bind(&o.stage)
        .bind(&o.detail)
        .execute(&mut *tx)
        .await
        .map_err(q)?;
        sqlx::query(
            "UPDATE directory_relays SET stability = $1, last_probe_at = $2, last_probe_up = $3
             WHERE fingerprint = $4",
        )
        .bind(stability)
        .bind(at)
        .bind(i64::from(o.up))
        .bind(fingerprint)
        .execute(&mut *tx)
        .await
        .map_err(q)?;
        tx.commit().await.map_err(q)
    }

    /// A relay's observations since `since`, oldest first, at most `limit` (the latest).
    pub async fn observations(
        &self,
        fingerprint: &str,
        since: u64,
        limit: u32,
    ) -> Result<Vec<ObservationRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT at, up, latency_ms, stage, detail FROM directory_observations
             WHERE fingerprint = $1 AND at >= $2 ORDER BY at DESC, id DESC LIMIT $3",
        )
        .bind(fingerprint)
        .bind(to_i64(since, "time")?)
        .bind(i64::from(limit))
        .fetch_all(&self.db.pool)
        .await
        .map_err(q)?;
        let mut out = rows
            .iter()
            .map(|row| {
                let latency =
                    opt_u64(row, "latency_ms")?.map(|l| u32::try_from(l).unwrap_or(u32::MAX));
                Ok(ObservationRow {
                    at: get_u64(row, "at")?,
                    up: get_u64(row, "up")? != 0,
                    latency_ms: latency,
                    stage: row.try_get("stage").map_err(q)?,
                    detail: row.try_get("detail").map_err(q)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        out.reverse();
        Ok(out)
    }

    /// Latencies of successful probes since `since`, per relay (one query for the listing).
    pub async fn latencies_since(
        &self,
        since: u64,
    ) -> Result<std::collections::HashMap<String, Vec<u32>>, StoreError> {
        let rows = sqlx::query(
            "SELECT fingerprint, latency_ms FROM directory_observations
             WHERE at >= $1 AND up = 1 AND latency_ms IS NOT NULL",
        )
        .bind(to_i64(since, "time")?)
        .fetch_all(&self.db.pool)
        .await
        .map_err(q)?;
        let mut out: std::collections::HashMap<String, Vec<u32>> = Default::default();
        for row in rows {
            let f: String = row.try_get("fingerprint").map_err(q)?;
            let l = get_u64(&row, "latency_ms")?;
            out.entry(f)
                .or_default()
                .push(u32::try_from(l).unwrap_or(u32::MAX));
        }
        Ok(out)
    }

    pub async fn operator(&self, operator_id: &str) -> Result<Option<OperatorRow>, StoreError> {
        let row = sqlx::query(
            "SELECT operator_id, operator_key, first_seen FROM directory_operators
             WHERE operator_id = $1",
        )
        .bind(operator_id)
        .fetch_optional(&self.db.pool)
        .await
        .map_err(q)?;
        row.map(|row| {
            Ok(OperatorRow {
                operator_id: row.try_get("operator_id").map_err(q)?,
                operator_key: row.try_get("operator_key").map_err(q)?,
                first_seen: get_u64(&row, "first_seen")?,
            })
        })
        .transpose()
    }

    pub async fn operators(&self) -> Result<Vec<OperatorRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT operator_id, operator_key, first_seen FROM directory_operators
             ORDER BY operator_id",
        )
        .fetch_all(&self.db.pool)
        .await
        .map_err(q)?;
        rows.iter()
            .map(|row| {
                Ok(OperatorRow {
                    operator_id: row.try_get("operator_id").map_err(q)?,
                    operator_key: row.try_get("operator_key").map_err(q)?,
                    first_seen: get_u64(row, "first_seen")?,
                })
            })
            .collect()
    }

    /// Stores an attestation (a newer one by the same attester replaces the older).
    pub async fn put_attestation(
        &self,
        operator_id: &str,
        a: &AttestationRow,
    ) -> Result<(), StoreError> {
        let mut tx = self.db.pool.begin().await.map_err(q)?;
        sqlx::query("DELETE FROM directory_attestations WHERE operator_id = $1 AND attester = $2")
            .bind(operator_id)
            .bind(&a.attester)
            .execute(&mut *tx)
            .await
            .map_err(q)?;
        sqlx::query(
            "INSERT INTO directory_attestations (operator_id, attester, legal_name, country,
                issued_at, attestation) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(operator_id)
        .bind(&a.attester)
        .bind(&a.legal_name)
        .bind(&a.country)
        .bind(to_i64(a.issued_at, "time")?)
        .bind(&a.attestation)
        .execute(&mut *tx)
        .await
        .map_err(q)?;
        tx.commit().await.map_err(q)
    }

    pub async fn attestations(&self, operator_id: &str) -> Result<Vec<AttestationRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT attester, legal_name, country, issued_at, attestation
             FROM directory_attestations WHERE operator_id = $1 ORDER BY attester",
        )
        .bind(operator_id)
        .fetch_all(&self.db.pool)
        .await
        .map_err(q)?;
        rows.iter()
            .map(|row| {
                Ok(AttestationRow {
                    attester: row.try_get("attester").map_err(q)?,
                    legal_name: row.try_get("legal_name").map_err(q)?,
                    country: row.try_get("country").map_err(q)?,
                    issued_at: get_u64(row, "issued_at")?,
                    attestation: row.try_get("attestation").map_err(q)?,
                })
            })
            .collect()
    }

    /// Stores an operator's statement for a period; the first one of a period stays (a
    /// statement, once published, is not changed). A stored statement is appended to the
    /// log (kind `statement`, the text as stored) in the same transaction. Returns the
    /// stored one.
    pub async fn put_statement(
        &self,
        operator_id: &str,
        period_start: u64,
        statement: &str,
        now: u64,
    ) -> Result<String, StoreError> {
        let mut tx = self.db.pool.begin().await.map_err(q)?;
        let inserted = sqlx::query(
            "INSERT INTO directory_statements (operator_id, period_start, statement)
             VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(operator_id)
        .bind(to_i64(period_start, "period")?)
        .bind(statement)
        .execute(&mut *tx)
        .await
        .map_err(q)?;
        if inserted.rows_affected() == 1 {
            append_in(&mut tx, &LogEntry::new(LogKind::Statement, statement), now).await?;
            tx.commit().await.map_err(q)?;
            return Ok(statement.to_owned());
        }
        tx.rollback().await.map_err(q)?;
        self.statements(Some(operator_id), Some(period_start), 1)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| StoreError::Corrupt("statement vanished".into()))
    }

    /// Statements, newest period first, optionally of one operator and/or one period.
    pub async fn statements(
        &self,
        operator_id: Option<&str>,
        period_start: Option<u64>,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        // Conditions are added, not `$1 IS NULL OR …`: PostgreSQL cannot type a bare NULL.
        let mut sql = String::from("SELECT statement FROM directory_statements WHERE 1 = 1");
        let mut n = 0;
        if operator_id.is_some() {
            n += 1;
            sql.push_str(&format!(" AND operator_id = ${n}"));
        }
        if period_start.is_some() {
            n += 1;
            sql.push_str(&format!(" AND period_start = ${n}"));
        }
        sql.push_str(&format!(
            " ORDER BY period_start DESC, operator_id LIMIT ${}",
            n + 1
        ));
        let mut query = sqlx::query(&sql);
        if let Some(op) = operator_id {
            query = query.bind(op);
        }
        if let Some(p) = period_start {
            query = query.bind(to_i64(p, "period")?);
        }
        let rows = query
            .bind(i64::from(limit))
            .fetch_all(&self.db.pool)
            .await
            .map_err(q)?;
        rows.iter()
            .map(|r| r.try_get("statement").map_err(q))
            .collect()
    }

    /// Appends an entry that records no other change (a status snapshot).
    pub async fn append_log(&self, entry: &LogEntry, now: u64) -> Result<u64, StoreError> {
        let mut tx = self.db.pool.begin().await.map_err(q)?;
        let index = append_in(&mut tx, entry, now).await?;
        tx.commit().await.map_err(q)?;
        Ok(index)
    }

    /// The number of committed log entries.
    pub async fn log_size(&self) -> Result<u64, StoreError> {
        let size: i64 = sqlx::query("SELECT size FROM directory_log_head WHERE id = 0")
            .fetch_one(&self.db.pool)
            .await
            .map_err(q)?
            .try_get("size")
            .map_err(q)?;
        to_u64(size, "log size")
    }

    /// Entries `[start, end)` that exist, by index.
    pub async fn log_entries(&self, start: u64, end: u64) -> Result<Vec<LogRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT idx, kind, body, leaf_hash, appended_at FROM directory_log
             WHERE idx >= $1 AND idx < $2 ORDER BY idx",
        )
        .bind(to_i64(start, "log index")?)
        .bind(to_i64(end, "log index")?)
        .fetch_all(&self.db.pool)
        .await
        .map_err(q)?;
        rows.iter().map(log_row).collect()
    }

    /// Leaf hashes from index `start` on, at most `limit`, by index (what a proof cache is
    /// built from without loading the bodies).
    pub async fn log_leaf_hashes(&self, start: u64, limit: u32) -> Result<Vec<Hash>, StoreError> {
        let rows = sqlx::query(
            "SELECT idx, leaf_hash FROM directory_log WHERE idx >= $1 ORDER BY idx LIMIT $2",
        )
        .bind(to_i64(start, "log index")?)
        .bind(i64::from(limit))
        .fetch_all(&self.db.pool)
        .await
        .map_err(q)?;
        let mut out = Vec::with_capacity(rows.len());
        for (offset, row) in rows.iter().enumerate() {
            // Indices are dense (the head hands them out in one transaction each), so a
            // gap here is damage, not a race.
            if get_u64(row, "idx")? != start + offset as u64 {
                return Err(StoreError::Corrupt("a gap in the log's indices".into()));
            }
            out.push(hash_column(row)?);
        }
        Ok(out)
    }

    /// Keeps a signed checkpoint; one per size (a second signature of a size the log
    /// already signed is the same tree head, and the first note stays).
    pub async fn put_checkpoint(&self, c: &CheckpointRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO directory_checkpoints (size, note, signed_at) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
        )
        .bind(to_i64(c.size, "log size")?)
        .bind(&c.note)
        .bind(to_i64(c.signed_at, "time")?)
        .execute(&self.db.pool)
        .await
        .map_err(q)?;
        Ok(())
    }

    /// The checkpoint of the largest size signed.
    pub async fn latest_checkpoint(&self) -> Result<Option<CheckpointRow>, StoreError> {
        let row = sqlx::query(
            "SELECT size, note, signed_at FROM directory_checkpoints ORDER BY size DESC LIMIT 1",
        )
        .fetch_optional(&self.db.pool)
        .await
        .map_err(q)?;
        row.map(|row| {
            Ok(CheckpointRow {
                size: get_u64(&row, "size")?,
                note: row.try_get("note").map_err(q)?,
                signed_at: get_u64(&row, "signed_at")?,
            })
        })
        .transpose()
    }
}
