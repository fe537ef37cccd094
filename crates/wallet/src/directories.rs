//! What the client knows of the relays: it asks the 2–3 relay directories it is configured
//! with (one is allowed), keeps what more than half of them agree on
//! ([`smpx_core::rules::consensus::agree`]), and chooses a conversation's relays from that
//! ([`smpx_core::rules::choice::choose`]). (Issue 14: "Clients agree with a majority … A
//! cached … view is used while all directories are unreachable, up to its validity, then
//! configured core relays.")
//!
//! ```text
//! Directories::view(now)
//!   GET {directory}/v1/relays from every configured directory at once, each within the
//!   timeout; an error, a timeout or an unreadable answer counts as not answering
//!   agreed = agree(configured, answers)
//!   quorum (more than half of the *configured* directories answered)
//!        → the agreed view; written to the cache file with `now`      source: directories
//!   else a cached view agreed by the same directories, fetched less than
//!        VIEW_VALIDITY_SECS before `now`                              source: cache
//!   else no view: the choice takes the configured core relays         source: core_relays
//! ```
//!
//! **Why a cache, and why it expires.** Directories can all be unreachable for a while (a
//! network outage, a censor blocking their addresses); the relays they agreed on an hour ago
//! are still the best guess, and relays come and go slowly. But a view kept for ever would
//! let whoever cuts a client off from its directories keep it on relays long gone or
//! withdrawn, so it is trusted for [`VIEW_VALIDITY_SECS`] (6 hours: a few of the directories'
//! probe cycles, long enough to ride out an outage) and then the client falls back to the
//! core relays it was configured with. A cached view is only used for the same set of
//! directories that agreed on it.
//!
//! **Checkpoints.** Directories will sign checkpoints of a transparency log and cosign each
//! other's (issue 14); a client will then check a view against a checkpoint cosigned by
//! the other directories before counting it. That check belongs in [`fetch_view`], between
//! reading the answer and returning it, and is not made yet: today a directory's answer is
//! taken as it comes over HTTPS, and the majority rule is the only defence against a lying
//! one.
//!
//! **Own measurements.** [`measure_own`] probes the few best candidates itself
//! ([`smpx_relay_client::probe`]) and takes the TCP connect plus TLS handshake time as its
//! own round trip, which [`choose`] prefers to the directories' (it is what this client will
//! get from where it is). Only the top few are probed: each probe costs the relay a
//! throw-away queue, and a client need not touch every relay it knows of.
//!
//! Time comes in as `now` (Unix seconds); the randomness of the choice as an [`Rng`].

use rand::Rng;
use serde::{Deserialize, Serialize};
use smpx_core::rules::choice::{self, Choice, ChoiceError, CoreRelay, Request};
use smpx_core::rules::consensus::{self, Agreed, AgreedRelay, DirectoryView, Report};
use smpx_relay_client::probe::{self, ProbeConfig};
use smpx_relay_transport::RelayAddress;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

/// How long an agreed view is used while the directories cannot be reached: 6 hours.
pub const VIEW_VALIDITY_SECS: u64 = 6 * 3600;

/// How long one directory has to answer.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// How many of the best candidates [`measure_own`] probes, unless told otherwise.
pub const DEFAULT_MEASURED: usize = 3;

/// Where the view a choice is made from came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ViewSource {
    /// More than half of the configured directories answered now.
    Directories,
    /// Too few answered: the last agreed view, still valid.
    Cache,
    /// Too few answered and no valid cached view: the configured core relays.
    CoreRelays,
}

/// A directory that did not answer, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unreachable {
    pub directory: String,
    pub error: String,
}

/// The relays as the client sees them now.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct View {
    pub source: ViewSource,
    /// The agreed view used (fresh or cached); `None` with [`ViewSource::CoreRelays`].
    pub agreed: Option<Agreed>,
    /// When the view used was fetched, and until when it is used without the directories.
    pub fetched_at: Option<u64>,
    pub valid_until: Option<u64>,
    /// The configured directories that answered this time.
    pub answered: Vec<String>,
    pub unreachable: Vec<Unreachable>,
    /// What a user should know (a cache that could not be read or written).
    pub notes: Vec<String>,
}

impl View {
    /// The agreed relays (none when the view is the core relays').
    pub fn relays(&self) -> &[AgreedRelay] {
        self.agreed.as_ref().map_or(&[], |a| a.relays.as_slice())
    }
}

/// The cache file's content.
#[derive(Debug, Serialize, Deserialize)]
struct Cached {
    /// The directories that agreed, sorted (a view is only reused for the same ones).
    directories: Vec<String>,
    fetched_at: u64,
    agreed: Agreed,
}

/// The configured directories and where their last agreed view is kept.
#[derive(Clone, Debug)]
pub struct Directories {
    urls: Vec<String>,
    cache: Option<PathBuf>,
    timeout: Duration,
    http: reqwest::Client,
}

impl Directories {
    /// The directories at `urls` (each counted once), their agreed view cached in `cache`
    /// (a JSON file, public data only; `None`: no cache).
    pub fn new(urls: &[String], cache: Option<PathBuf>) -> Self {
        let mut seen = BTreeSet::new();
        let urls = urls
            .iter()
            .map(|u| u.trim_end_matches('/').to_string())
            .filter(|u| seen.insert(u.clone()))
            .collect();
        Self {
            urls,
            cache,
            timeout: FETCH_TIMEOUT,
            http: reqwest::Client::new(),
        }
    }

    /// How long each directory has to answer.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// Asks every directory at once and keeps what a majority agrees on (see the module's
    /// rule); never fails: a directory that does not answer is listed in
    /// [`View::unreachable`].
    pub async fn view(&self, now: u64) -> View {
        let mut tasks = tokio::task::JoinSet::new();
        for url in &self.urls {
            let (http, url, timeout) = (self.http.clone(), url.clone(), self.timeout);
            tasks.spawn(async move {
                let got = tokio::time::timeout(timeout, fetch_view(&http, &url))
                    .await
                    .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")));
                (url, got)
            });
        }
        let mut views = Vec::new();
        let mut unreachable = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((_, Ok(view))) => views.push(view),
                Ok((directory, Err(error))) => unreachable.push(Unreachable { directory, error }),
                Err(e) => unreachable.push(Unreachable {
                    directory: "?".into(),
                    error: format!("the request task failed: {e}"),
                }),
            }
        }
        unreachable.sort_by(|a, b| a.directory.cmp(&b.directory));
        let agreed = consensus::agree(&self.urls, &views);
        let mut view = View {
            source: ViewSource::CoreRelays,
            agreed: None,
            fetched_at: None,
            valid_until: None,
            answered: agreed.answered.clone(),
            unreachable,
            notes: Vec::new(),
        };
        if self.urls.is_empty() {
            // No directories configured: no view to agree or cache.
            return view;
        }
        if agreed.quorum {
            if let Err(e) = self.store(now, &agreed) {
                view.notes
                    .push(format!("the agreed view was not cached: {e}"));
            }
            view.source = ViewSource::Directories;
            view.fetched_at = Some(now);
            view.valid_until = Some(now.saturating_add(VIEW_VALIDITY_SECS));
            view.agreed = Some(agreed);
            return view;
        }
        match self.load() {
            Ok(Some(cached)) => {
                let valid_until = cached.fetched_at.saturating_add(VIEW_VALIDITY_SECS);
                if now < valid_until {
                    view.source = ViewSource::Cache;
                    view.fetched_at = Some(cached.fetched_at);
                    view.valid_until = Some(valid_until);
                    view.agreed = Some(cached.agreed);
                } else {
                    view.notes.push(format!(
                        "the cached view (fetched at {}) expired at {valid_until}",
                        cached.fetched_at
                    ));
                }
            }
            Ok(None) => {}
            Err(e) => view
                .notes
                .push(format!("the cached view was not used: {e}")),
        }
        view
    }

    fn sorted_urls(&self) -> Vec<String> {
        let mut urls = self.urls.clone();
        urls.sort();
        urls
    }

    /// Writes the agreed view to the cache file (a new file renamed over the old, so a
    /// crash leaves the old view or the new one).
    fn store(&self, now: u64, agreed: &Agreed) -> Result<(), String> {
        let Some(path) = &self.cache else {
            return Ok(());
        };
        let cached = Cached {
            directories: self.sorted_urls(),
            fetched_at: now,
            agreed: agreed.clone(),
        };
        let text = serde_json::to_vec_pretty(&cached).map_err(|e| e.to_string())?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The cached view agreed by these directories, if there is one.
    fn load(&self) -> Result<Option<Cached>, String> {
        let Some(path) = &self.cache else {
            return Ok(None);
        };
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let cached: Cached =
            serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if cached.directories != self.sorted_urls() {
            return Err(format!(
                "{} was agreed by other directories ({})",
                path.display(),
                cached.directories.join(", ")
            ));
        }
        Ok(Some(cached))
    }
}

/// One directory's answer to `GET /v1/relays`, or why there is none.
///
/// This is where a client will check the answer against the directory's checkpoint and the
/// other directories' cosignatures, once directories sign them (see the module docs).
pub async fn fetch_view(http: &reqwest::Client, url: &str) -> Result<DirectoryView, String> {
    let answer = http
        .get(format!("{url}/v1/relays"))
        .send()
        .await
        .map_err(|e| format!("asking {url}: {e}"))?;
    let status = answer.status();
    if !status.is_success() {
        return Err(format!("{url} answered {status}"));
    }
    let relays: Vec<Report> = answer
        .json()
        .await
        .map_err(|e| format!("{url}: not a relay listing: {e}"))?;
    Ok(DirectoryView {
        directory: url.to_string(),
        relays,
    })
}

/// A core relay from the user's configuration: `smpx://fingerprint@host:port`, or
/// `OPERATOR=smpx://…` to say whose it is. Without an operator, the host stands for it, so
/// core relays on different hosts count as different operators.
pub fn core_relay(spec: &str) -> Result<CoreRelay, String> {
    let (operator, address) = match spec.split_once('=') {
        Some((op, addr)) if !op.contains("://") => (Some(op.trim()), addr.trim()),
        _ => (None, spec.trim()),
    };
    let parsed: RelayAddress = address
        .parse()
        .map_err(|e| format!("core relay {spec}: {e}"))?;
    Ok(CoreRelay {
        fingerprint: parsed.fingerprint.to_string(),
        address: parsed.to_string(),
        operator_id: operator.map_or_else(|| parsed.host.to_string(), str::to_string),
    })
}

/// The client's own round trip to the `n` best running relays of `view` (by the
/// directories' figures): TCP connect plus TLS handshake, in ms, for those that got through
/// the handshake.
pub async fn measure_own(view: &View, n: usize, config: &ProbeConfig) -> BTreeMap<String, u32> {
    let none = BTreeMap::new();
    let req = Request {
        relays: view.relays(),
        own_rtt_ms: &none,
        region: None,
        core_relays: &[],
        top_k: 1,
    };
    let mut ranked: Vec<(f64, &AgreedRelay)> = view
        .relays()
        .iter()
        .filter(|r| r.has("running"))
        .map(|r| (choice::score(r, &req).total, r))
        .collect();
    ranked.sort_by(|a, b| {
        b.0.total_cmp(&a.0)
            .then_with(|| a.1.fingerprint.cmp(&b.1.fingerprint))
    });
    let mut tasks = tokio::task::JoinSet::new();
    for (_, r) in ranked.into_iter().take(n) {
        let Ok(address) = r.address.parse::<RelayAddress>() else {
            continue;
        };
        let (fingerprint, config) = (r.fingerprint.clone(), config.clone());
        tasks.spawn(async move {
            let o = probe::probe(&address, &config).await;
            let rtt = o
                .latencies
                .tcp
                .zip(o.latencies.tls)
                .filter(|_| o.reached() == probe::Stage::Protocol)
                .map(|(tcp, tls)| probe::millis(tcp + tls));
            (fingerprint, rtt)
        });
    }
    let mut out = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        if let Ok((fingerprint, Some(ms))) = joined {
            out.insert(fingerprint, ms);
        }
    }
    out
}

/// What [`choose`] weighs besides the view.
#[derive(Clone, Copy, Debug, Default)]
pub struct Preferences<'a> {
    pub region: Option<&'a str>,
    pub core_relays: &'a [CoreRelay],
    /// How many of the best a role is drawn among (0: [`choice::DEFAULT_TOP_K`]).
    pub top_k: usize,
}

/// The relays for one conversation from `view`, the client's own round trips and `prefs`.
pub fn choose<R: Rng + ?Sized>(
    view: &View,
    own_rtt_ms: &BTreeMap<String, u32>,
    prefs: &Preferences<'_>,
    rng: &mut R,
) -> Result<Choice, ChoiceError> {
    let top_k = if prefs.top_k == 0 {
        choice::DEFAULT_TOP_K
    } else {
        prefs.top_k
    };
    choice::choose(
        &Request {
            relays: view.relays(),
            own_rtt_ms,
            region: prefs.region,
            core_relays: prefs.core_relays,
            top_k,
        },
        rng,
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A loopback port nobody listens on.
    async fn closed_port() -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        drop(l);
        url
    }

    #[tokio::test]
    async fn unreachable_directories_and_an_unreadable_cache_leave_the_core_relays_and_say_why() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("view.json");
        std::fs::write(&cache, b"not json").unwrap();
        let urls = [closed_port().await, closed_port().await];
        let dirs = Directories::new(&urls, Some(cache)).timeout(Duration::from_secs(5));
        let view = dirs.view(1_000).await;
        assert_eq!(view.source, ViewSource::CoreRelays);
        assert!(view.agreed.is_none() && view.answered.is_empty());
        assert_eq!(view.unreachable.len(), 2);
        assert!(view
            .unreachable
            .iter()
            .all(|u| u.error.starts_with("asking ")));
        assert!(
            view.notes[0].starts_with("the cached view was not used"),
            "{:?}",
            view.notes
        );
        // No directories at all: the core relays, without a word about a cache.
        let none = Directories::new(&[], None).view(1_000).await;
        assert_eq!((none.source, none.notes.len()), (ViewSource::CoreRelays, 0));
        // A trailing slash and a repeat are one directory.
        let same = Directories::new(&[format!("{}/", urls[0]), urls[0].clone()], None);
        assert_eq!(same.urls(), &urls[..1]);
    }

    #[test]
    fn core_relays_read_with_or_without_an_operator() {
        let fp = "4up949QfWKeu8LhD3cn6bRBIrwNIiUqn6pHaBU2dXtk";
        let plain = core_relay(&format!("smpx://{fp}@relay.example:5223")).unwrap();
        assert_eq!(plain.operator_id, "relay.example");
        assert_eq!(plain.fingerprint, fp);
        let named = core_relay(&format!("op-1=smpx://{fp}@relay.example:5223")).unwrap();
        assert_eq!(named.operator_id, "op-1");
        assert_eq!(named.address, plain.address);
        assert!(core_relay("op-1=smpx://nonsense").is_err());
    }
}
