//! What the directory publishes, computed from its tables at `now`: each relay's
//! measurements, flags and whether it counts; the thresholds; each operator's share
//! statement. The judgements are the core's rules; this module only gathers their inputs.
//!
//! Judging every relay needs all relays and a day of latencies from the database, far too
//! much for each read at 10,000 relays, so the judged [`Snapshot`] is held in memory
//! ([`SnapshotCache`]) and served to every read until a write through this directory marks
//! it stale (registration, heartbeat, withdrawal, attestation, a probe round) or it is a
//! probe interval old (so an idle directory still ages its relays). The next read after
//! either recomputes it, once, while concurrent readers wait for that one result.

use crate::Directory;
use serde::Serialize;
use smpx_core::directory::wire::RelayMetadata;
use smpx_core::directory::{period_start, ShareStatement};
use smpx_core::rules::listing::{count_by_subnet, pick_distinct_operators, Candidate, Placed};
use smpx_core::rules::measure::{self, Stability, Summary, Thresholds};
use smpx_core::rules::trust::Evaluation;
use smpx_store::directory::RelayRow;
use smpx_store::StoreError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Latency percentiles are over the successful probes of this window.
pub const LATENCY_WINDOW_SECS: u64 = 86_400;

/// One published relay.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RelayView {
    pub fingerprint: String,
    /// `smpx://fingerprint@host:port`.
    pub address: String,
    pub operator_id: String,
    pub region: String,
    /// `running` (the latest probe reached it, recently), `down`, or `unprobed`.
    pub status: String,
    /// `running`, `stable`, `fast`, `probation`.
    pub flags: Vec<String>,
    /// Weighted fractional uptime, in [0, 1].
    pub uptime: f64,
    /// Weighted mean time between failures, seconds.
    pub mtbf_secs: f64,
    /// Seconds up without interruption now.
    pub current_run_secs: u64,
    pub latency_p50_ms: Option<u32>,
    pub latency_p99_ms: Option<u32>,
    /// Seconds since the relay first registered here.
    pub age_secs: u64,
    pub registered_at: u64,
    /// Whether the relay counts toward its operator's weight (within the subnet limit).
    pub counted: bool,
    /// Why not, when not counted.
    pub counted_reason: Option<String>,
    pub probation: bool,
    pub last_probe_at: Option<u64>,
    pub last_heartbeat_at: Option<u64>,
    /// What the operator chose to publish.
    pub metadata: RelayMetadata,
    /// The relay's INFO as it publishes it.
    #[schema(value_type = Object)]
    pub info: serde_json::Value,
}

/// The thresholds flags are judged by, with the directory's own limits.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ThresholdsView {
    pub stable_mtbf_secs: f64,
    pub fast_latency_ms: u32,
    pub probation_secs: u64,
    pub running_fresh_secs: u64,
    pub subnet_limit: usize,
    pub pow_difficulty: u32,
    pub evaluated_at: u64,
}

/// Every published relay and the thresholds, at one instant.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub now: u64,
    pub relays: Vec<RelayView>,
    pub thresholds: Thresholds,
}

fn summary(row: &RelayRow, latencies: Vec<u32>) -> Summary {
    Summary {
        first_seen: row.registered_at,
        last_probe: row.last_probe,
        stability: serde_json::from_str::<Stability>(&row.stability).unwrap_or_default(),
        latencies_ms: latencies,
    }
}

/// The judged snapshot a directory serves reads from.
#[derive(Default)]
pub struct SnapshotCache {
    /// Bumped by every write that can change what a snapshot shows.
    generation: AtomicU64,
    /// The latest snapshot and the generation it was computed at.
    held: tokio::sync::RwLock<Option<(u64, Arc<Snapshot>)>>,
    /// One recomputation at a time: readers arriving meanwhile wait and take its result
    /// instead of each loading the database.
    refresh: tokio::sync::Mutex<()>,
}

impl SnapshotCache {
    /// Marks the held snapshot stale; called after the write has been committed, so a
    /// recomputation that started before it is stale too.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// The held snapshot if nothing was written since and it is younger than `max_age`.
    async fn fresh(&self, now: u64, max_age: u64) -> Option<Arc<Snapshot>> {
        let held = self.held.read().await;
        let (generation, snap) = held.as_ref()?;
        let current = *generation == self.generation.load(Ordering::SeqCst);
        let young = now >= snap.now && now - snap.now < max_age;
        (current && young).then(|| snap.clone())
    }
}

/// The published relays, judged: the held snapshot, or a new one at `now` when it is stale.
pub async fn current(dir: &Directory) -> Result<Arc<Snapshot>, StoreError> {
    let cache = &dir.snapshots;
    let max_age = dir.config.probe_interval_secs;
    if let Some(s) = cache.fresh(dir.clock.now(), max_age).await {
        return Ok(s);
    }
    let _one = cache.refresh.lock().await;
    let now = dir.clock.now();
    if let Some(s) = cache.fresh(now, max_age).await {
        return Ok(s);
    }
    let generation = cache.generation.load(Ordering::SeqCst);
    let snap = Arc::new(compute(dir, now).await?);
    *cache.held.write().await = Some((generation, snap.clone()));
    Ok(snap)
}

/// The published relays, judged, as an owned copy of [`current`] (for callers that consume
/// it; readers that only look should take [`current`] and skip the copy).
pub async fn snapshot(dir: &Directory) -> Result<Snapshot, StoreError> {
    Ok(current(dir).await?.as_ref().clone())
}

/// Judges every published relay at `now` from the database (what [`current`] holds).
pub async fn compute(dir: &Directory, now: u64) -> Result<Snapshot, StoreError> {
    let rows = dir.store.published_relays().await?;
    let mut latencies = dir
        .store
        .latencies_since(now.saturating_sub(LATENCY_WINDOW_SECS))
        .await?;
    let summaries: Vec<Summary> = rows
        .iter()
        .map(|r| summary(r, latencies.remove(&r.fingerprint).unwrap_or_default()))
        .collect();
    let thresholds = measure::thresholds(&summaries, now);
    let placed: Vec<Placed<'_>> = rows
        .iter()
        .map(|r| Placed {
            fingerprint: &r.fingerprint,
            subnet: &r.subnet,
            registered_at: r.registered_at,
        })
        .collect();
    let counted = count_by_subnet(&placed, dir.config.subnet_limit);
    let relays = rows
        .iter()
        .zip(summaries.iter())
        .zip(counted)
        .map(|((row, s), c)| {
            let f = measure::flags(s, &thresholds, now);
            let mut flags = Vec::new();
            for (on, name) in [
                (f.running, "running"),
                (f.stable, "stable"),
                (f.fast, "fast"),
                (f.probation, "probation"),
            ] {
                if on {
                    flags.push(name.to_string());
                }
            }
            let status = match row.last_probe {
                None => "unprobed",
                Some(_) if f.running => "running",
                Some(_) => "down",
            };
            RelayView {
                fingerprint: row.fingerprint.clone(),
                address: row.address.clone(),
                operator_id: row.operator_id.clone(),
                region: row.region.clone(),
                status: status.into(),
                flags,
                uptime: s.stability.wfu(now),
                mtbf_secs: s.stability.mtbf(now),
                current_run_secs: s.stability.uptime(now),
                latency_p50_ms: measure::percentile(&s.latencies_ms, 500),
                latency_p99_ms: measure::percentile(&s.latencies_ms, 990),
                age_secs: now.saturating_sub(row.registered_at),
                registered_at: row.registered_at,
                counted: c.counted,
                counted_reason: c.reason,
                probation: f.probation,
                last_probe_at: row.last_probe.map(|(at, _)| at),
                last_heartbeat_at: row.heartbeat_at,
                metadata: serde_json::from_str(&row.metadata).unwrap_or_default(),
                info: serde_json::from_str(&row.info).unwrap_or(serde_json::Value::Null),
            }
        })
        .collect();
    Ok(Snapshot {
        now,
        relays,
        thresholds,
    })
}

impl Snapshot {
    /// Up to `k` Running relays in `region` of pairwise distinct operators, best first
    /// ([`pick_distinct_operators`]).
    pub fn pick(&self, region: &str, k: usize) -> Vec<&RelayView> {
        let in_region: Vec<&RelayView> =
            self.relays.iter().filter(|r| r.region == region).collect();
        let candidates: Vec<Candidate<'_>> = in_region
            .iter()
            .map(|r| Candidate {
                fingerprint: &r.fingerprint,
                operator_id: &r.operator_id,
                region: &r.region,
                running: r.flags.iter().any(|f| f == "running"),
                latency_p50_ms: r.latency_p50_ms,
                wfu: r.uptime,
            })
            .collect();
        pick_distinct_operators(&candidates, region, k)
            .into_iter()
            .filter_map(|f| in_region.iter().find(|r| r.fingerprint == f).copied())
            .collect()
    }

    pub fn thresholds_view(&self, dir: &Directory) -> ThresholdsView {
        ThresholdsView {
            stable_mtbf_secs: self.thresholds.stable_mtbf_secs,
            fast_latency_ms: self.thresholds.fast_latency_ms,
            probation_secs: self.thresholds.probation_secs,
            running_fresh_secs: self.thresholds.running_fresh_secs,
            subnet_limit: dir.config.subnet_limit,
            pow_difficulty: dir.config.pow_difficulty,
            evaluated_at: self.now,
        }
    }
}

/// Whether an operator has an identity attestation by a key the directory trusts now.
pub async fn verified_identity(dir: &Directory, operator_id: &str) -> Result<bool, StoreError> {
    let trusted: Vec<String> = dir
        .config
        .trusted_attesters
        .iter()
        .map(|k| k.to_hex())
        .collect();
    Ok(dir
        .store
        .attestations(operator_id)
        .await?
        .iter()
        .any(|a| trusted.contains(&a.attester)))
}

/// The operator's evaluation at the snapshot's instant: its identity, its time on the
/// network, and the uptimes of its relays that count (within the per-subnet limit) and
/// have been probed at least once: those past probation and, apart, those on it (which [`smpx_core::rules::trust::share`] counts at half).
pub async fn evaluation(
    dir: &Directory,
    snap: &Snapshot,
    operator_id: &str,
    first_seen: u64,
) -> Result<Evaluation, StoreError> {
    let counted = |probation: bool| {
        snap.relays
            .iter()
            .filter(|r| {
                r.operator_id == operator_id
                    && r.counted
                    && r.probation == probation
                    && r.last_probe_at.is_some()
            })
            .map(|r| r.uptime)
            .collect()
    };
    Ok(Evaluation {
        verified_identity: verified_identity(dir, operator_id).await?,
        time_on_network_secs: snap.now.saturating_sub(first_seen),
        relay_uptimes: counted(false),
        probation_uptimes: counted(true),
    })
}

/// Signs and stores each operator's statement for the current period, if it has none yet
/// (a published statement is not changed) and at least one of its counted relays has been
/// probed. Returns how many were new.
pub async fn issue_statements(dir: &Arc<Directory>) -> Result<usize, StoreError> {
    let snap = current(dir).await?;
    let period = period_start(snap.now);
    let mut issued = 0;
    for op in dir.store.operators().await? {
        if !dir
            .store
            .statements(Some(&op.operator_id), Some(period), 1)
            .await?
            .is_empty()
        {
            continue;
        }
        let e = evaluation(dir, &snap, &op.operator_id, op.first_seen).await?;
        // Nothing measured yet (its relays registered since the last probe round): no
        // statement this round rather than a zero share that would stand all period.
        if e.relay_uptimes.is_empty() && e.probation_uptimes.is_empty() {
            continue;
        }
        let signed = ShareStatement::new(
            &dir.config.name,
            &op.operator_id,
            e,
            dir.config.cap_bps,
            snap.now,
        )
        .sign(&dir.signing_key)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let text =
            serde_json::to_string(&signed).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        dir.store
            .put_statement(&op.operator_id, period, &text, snap.now)
            .await?;
        issued += 1;
        dir.metrics.inc(crate::STATEMENTS, &[], 1);
    }
    Ok(issued)
}
