//! Probing on a schedule. The directory does not know how to reach a relay: a [`Prober`]
//! does (the network prober — TCP, TLS pinned to the fingerprint, a protocol round trip — is
//! `smpx-relay-client`'s; tests plug in their own). Every `probe_interval_secs` a round
//! probes every published relay, at most `probe_concurrency` at once, and records each
//! observation with the relay's stability after it.

use crate::Directory;
use smpx_core::rules::measure::Stability;
use smpx_relay_protocol::address::RelayAddress;
use smpx_store::directory::ObservationRow;
use smpx_store::StoreError;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// What one probe of a relay found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    /// The full round trip succeeded (a relay that completes TLS but drops queue traffic is
    /// down).
    pub up: bool,
    /// Round-trip time of a successful probe.
    pub latency_ms: Option<u32>,
    /// How far it got: `tcp`, `tls`, `round_trip`, … (the prober's words; at most 32 bytes
    /// are kept).
    pub stage: String,
    /// Why it failed, for the relay's history page (at most 256 bytes are kept).
    pub detail: String,
}

/// A future a [`Prober`] returns.
pub type ProbeFuture<'a> = Pin<Box<dyn Future<Output = Observation> + Send + 'a>>;

/// Reaches a relay and says whether it works. Must not take longer than its own deadline:
/// a round waits for every probe.
pub trait Prober: Send + Sync + 'static {
    fn probe<'a>(&'a self, target: &'a RelayAddress) -> ProbeFuture<'a>;
}

fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// Probes every published relay once (bounded concurrency) and records what was found.
/// Returns how many were probed. A relay whose address no longer parses is recorded down.
pub async fn probe_round(dir: &Arc<Directory>) -> Result<usize, StoreError> {
    let relays = dir.store.published_relays().await?;
    let permits = Arc::new(Semaphore::new(dir.config.probe_concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    let n = relays.len();
    for relay in relays {
        let dir = dir.clone();
        let permits = permits.clone();
        tasks.spawn(async move {
            let Ok(_permit) = permits.acquire_owned().await else {
                return Ok(());
            };
            let observation = match relay.address.parse::<RelayAddress>() {
                Ok(address) => dir.prober.probe(&address).await,
                Err(e) => Observation {
                    up: false,
                    latency_ms: None,
                    stage: "address".into(),
                    detail: e.to_string(),
                },
            };
            let at = dir.clock.now();
            let mut stability: Stability =
                serde_json::from_str(&relay.stability).unwrap_or_default();
            stability.observe(observation.up, at);
            let state = serde_json::to_string(&stability)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let row = ObservationRow {
                at,
                up: observation.up,
                latency_ms: observation.latency_ms.filter(|_| observation.up),
                stage: truncate(&observation.stage, 32),
                detail: truncate(&observation.detail, 256),
            };
            dir.store
                .record_observation(&relay.fingerprint, &row, &state)
                .await?;
            let result = if row.up { "up" } else { "down" };
            dir.metrics.inc(crate::PROBES, &[("result", result)], 1);
            Ok(())
        });
    }
    let mut first_error = None;
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "recording a probe failed");
                first_error.get_or_insert(e);
            }
            Err(e) => tracing::warn!(error = %e, "a probe task failed"),
        }
    }
    // Whatever was recorded, even in a round that partly failed, is news to the snapshot.
    dir.snapshots.invalidate();
    match first_error {
        Some(e) => Err(e),
        None => Ok(n),
    }
}

/// Rounds forever, every `probe_interval_secs`, each followed by the statements due.
pub async fn schedule(dir: Arc<Directory>) {
    let mut every = tokio::time::interval(Duration::from_secs(dir.config.probe_interval_secs));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        round(&dir).await;
    }
}

/// What one scheduled round did; each step's error, if it failed, is logged and the next
/// step still runs.
#[derive(Clone, Debug, Default)]
pub struct Round {
    /// Relays probed.
    pub probed: Option<usize>,
    /// Share statements newly signed for the current period.
    pub issued: Option<usize>,
    /// What the configured coordinators did with this period's statements.
    pub delivered: Option<crate::deliver::Delivery>,
}

/// One round, as the schedule runs it: probe every relay, log the status snapshot, sign the
/// period's share statements of operators that have none yet, post them to the
/// coordinators, sign a log checkpoint, prune spent challenges.
/// (`smpx demo` runs one at once instead of waiting for the schedule.)
pub async fn round(dir: &Arc<Directory>) -> Round {
    let mut done = Round::default();
    match probe_round(dir).await {
        Ok(n) => {
            done.probed = Some(n);
            if let Err(e) = crate::log::append_snapshot(dir).await {
                tracing::warn!(error = %e, "logging the status snapshot");
            }
        }
        Err(e) => tracing::warn!(error = %e, "probe round"),
    }
    match crate::view::issue_statements(dir).await {
        Ok(n) => done.issued = Some(n),
        Err(e) => tracing::warn!(error = %e, "issuing share statements"),
    }
    match crate::deliver::deliver_statements(dir).await {
        Ok(d) => done.delivered = Some(d),
        Err(e) => tracing::warn!(error = %e, "delivering share statements"),
    }
    if let Err(e) = crate::log::checkpoint(dir).await {
        tracing::warn!(error = %e, "signing a log checkpoint");
    }
    let now = dir.clock.now();
    if let Err(e) = dir.store.prune_challenges(now).await {
        tracing::warn!(error = %e, "pruning challenges");
    }
    done
}

/// The prober a running directory uses: `smpx-relay-client`'s network probe (TCP, TLS pinned
/// to the fingerprint, a throw-away queue's round trip), each stage under its own deadline.
pub struct NetworkProber {
    config: smpx_relay_client::probe::ProbeConfig,
}

impl NetworkProber {
    /// With the default stage limits, stamping observations by `clock`.
    pub fn new(clock: Arc<dyn smpx_http::Clock>) -> NetworkProber {
        NetworkProber {
            config: smpx_relay_client::probe::ProbeConfig {
                clock,
                ..Default::default()
            },
        }
    }

    /// With other limits (tests, benchmarks).
    pub fn with_config(config: smpx_relay_client::probe::ProbeConfig) -> NetworkProber {
        NetworkProber { config }
    }
}

impl Prober for NetworkProber {
    fn probe<'a>(&'a self, target: &'a RelayAddress) -> ProbeFuture<'a> {
        Box::pin(async move {
            let o = smpx_relay_client::probe::probe(target, &self.config).await;
            Observation {
                up: o.up(),
                latency_ms: o.latency_ms(),
                stage: o.reached().as_str().to_owned(),
                detail: o
                    .failure
                    .as_ref()
                    .map(|f| format!("{}: {}", f.kind.as_str(), f.detail))
                    .unwrap_or_default(),
            }
        })
    }
}
