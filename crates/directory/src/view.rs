//! What the directory publishes, computed from its tables at `now`: each relay's
//! measurements, flags and whether it counts; the thresholds; each operator's share
//! statement. The judgements are the core's rules; this module only gathers their inputs.

use crate::Directory;
use serde::Serialize;
use smpx_core::directory::wire::RelayMetadata;
use smpx_core::directory::{period_start, ShareStatement};
use smpx_core::rules::listing::{count_by_subnet, Placed};
use smpx_core::rules::measure::{self, Stability, Summary, Thresholds};
use smpx_core::rules::trust::Evaluation;
use smpx_store::directory::RelayRow;
use smpx_store::StoreError;
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

/// The published relays at `now`, judged.
pub async fn snapshot(dir: &Directory) -> Result<Snapshot, StoreError> {
    let now = dir.clock.now();
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
/// network, and the uptimes of its relays that count and are past probation.
pub async fn evaluation(
    dir: &Directory,
    snap: &Snapshot,
    operator_id: &str,
    first_seen: u64,
) -> Result<Evaluation, StoreError> {
    Ok(Evaluation {
        verified_identity: verified_identity(dir, operator_id).await?,
        time_on_network_secs: snap.now.saturating_sub(first_seen),
        relay_uptimes: snap
            .relays
            .iter()
            .filter(|r| r.operator_id == operator_id && r.counted && !r.probation)
            .map(|r| r.uptime)
            .collect(),
    })
}

/// Signs and stores each operator's statement for the current period, if it has none yet
/// (a published statement is not changed). Returns how many were new.
pub async fn issue_statements(dir: &Arc<Directory>) -> Result<usize, StoreError> {
    let snap = snapshot(dir).await?;
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
            .put_statement(&op.operator_id, period, &text)
            .await?;
        issued += 1;
        dir.metrics.inc(crate::STATEMENTS, &[], 1);
    }
    Ok(issued)
}
