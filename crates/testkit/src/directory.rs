//! Relay directories for the clients' tests: the real directory (`smpx-directory`) on a fresh
//! database and loopback port, with a manual clock and a prober that answers from a table, so
//! a test decides what each directory measured — and can make one of several lie — and
//! relays registered exactly as a relay node registers (its CA and operator signatures, the
//! proof of work). The directory crate's own tests have a fuller kit of their own.

use crate::Backend;
use anyhow::{Context, Result};
use smpx_core::crypto::sign::SigningKey;
use smpx_core::directory::wire::{Registration, RelayMetadata};
use smpx_directory::probe::ProbeFuture;
use smpx_directory::{Directory, DirectoryConfig, DirectoryHome, Observation, Prober};
use smpx_http::{Clock, ManualClock};
use smpx_relay_protocol::address::RelayAddress;
use smpx_relay_transport::RelayIdentity;
use smpx_store::directory::DirectoryStore;
use smpx_store::Db;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Answers from a table, by fingerprint: a relay not in it is up with 20 ms.
#[derive(Default)]
pub struct ScriptedProber {
    answers: Mutex<HashMap<String, Observation>>,
}

impl ScriptedProber {
    /// What this directory measures of `fingerprint` from now on.
    pub fn set(&self, fingerprint: &str, up: bool, latency_ms: u32) {
        let observation = Observation {
            up,
            latency_ms: up.then_some(latency_ms),
            stage: if up { "round_trip" } else { "tcp" }.into(),
            detail: if up { "" } else { "refused" }.into(),
        };
        if let Ok(mut answers) = self.answers.lock() {
            answers.insert(fingerprint.to_owned(), observation);
        }
    }
}

impl Prober for ScriptedProber {
    fn probe<'a>(&'a self, target: &'a RelayAddress) -> ProbeFuture<'a> {
        let answer = self
            .answers
            .lock()
            .ok()
            .and_then(|a| a.get(&target.fingerprint.to_string()).cloned());
        Box::pin(async move {
            answer.unwrap_or(Observation {
                up: true,
                latency_ms: Some(20),
                stage: "round_trip".into(),
                detail: String::new(),
            })
        })
    }
}

/// A relay as a directory sees it: the directory its CA key is in, its address, and its
/// operator's id and key.
pub struct RelayListing {
    pub ca_dir: PathBuf,
    pub address: RelayAddress,
    pub operator_id: String,
    pub operator: SigningKey,
    pub region: String,
}

impl RelayListing {
    /// A relay that need not run (the directories' probes are scripted): a fresh CA identity
    /// in `ca_dir`, listening nowhere at `host:5223`, of operator `operator_id` (its key
    /// derived from the id, so one operator's relays share a key).
    pub fn create(ca_dir: &Path, operator_id: &str, host: &str, region: &str) -> Result<Self> {
        let identity = RelayIdentity::create(ca_dir)?;
        let host = host.parse().context("relay host")?;
        Ok(Self::of(
            ca_dir,
            identity.address(host, 5223),
            operator_id,
            region,
        ))
    }

    /// A relay that exists (e.g. `crate::relay::start`'s, whose CA is in `ca_dir`) at
    /// `address`.
    pub fn existing(ca_dir: &Path, address: RelayAddress, operator_id: &str) -> Result<Self> {
        RelayIdentity::load(ca_dir)?;
        Ok(Self::of(ca_dir, address, operator_id, "eu"))
    }

    fn of(ca_dir: &Path, address: RelayAddress, operator_id: &str, region: &str) -> Self {
        let mut seed = [0u8; 32];
        for (i, b) in operator_id.bytes().enumerate() {
            seed[i % 32] ^= b;
        }
        Self {
            ca_dir: ca_dir.to_owned(),
            address,
            operator_id: operator_id.to_owned(),
            operator: SigningKey::from_bytes(&seed),
            region: region.to_owned(),
        }
    }

    pub fn fingerprint(&self) -> String {
        self.address.fingerprint.to_string()
    }
}

/// A running directory.
pub struct TestDirectory {
    pub url: String,
    pub clock: Arc<ManualClock>,
    pub prober: Arc<ScriptedProber>,
    pub state: Arc<Directory>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _guards: (tempfile::TempDir, Option<tempfile::TempDir>),
}

/// The proof of work the test directories ask for: a few milliseconds.
const POW_DIFFICULTY: u32 = 4;

impl TestDirectory {
    /// A directory named `name` whose clock starts at `now`.
    pub async fn start(backend: Backend, name: &str, now: u64) -> Result<Self> {
        let home = tempfile::tempdir()?;
        let (db_url, db_guard) = crate::db::database(backend).await?;
        let config = DirectoryConfig {
            name: name.into(),
            database_url: Some(db_url),
            pow_difficulty: POW_DIFFICULTY,
            registrations_per_subnet: 1000,
            ..DirectoryConfig::default()
        };
        DirectoryHome::create(home.path(), &config)?;
        let home_loaded = DirectoryHome::load(home.path())?;
        let store = DirectoryStore::open(Db::connect(&home_loaded.database_url()).await?).await?;
        let clock = Arc::new(ManualClock::new(now));
        let prober = Arc::new(ScriptedProber::default());
        let state = Directory::new(store, home_loaded, clock.clone(), prober.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        // Without the probe schedule: the test runs the rounds, at the times it sets.
        let served = tokio::spawn(smpx_directory::serve(state.clone(), listener, async {
            let _ = rx.await;
        }));
        Ok(Self {
            url,
            clock,
            prober,
            state,
            shutdown: Some(tx),
            served: Some(served),
            _guards: (home, db_guard),
        })
    }

    /// Registers `relay` as its node would: a fresh challenge, the work, both signatures.
    pub async fn register(&self, relay: &RelayListing) -> Result<()> {
        let http = reqwest::Client::new();
        let pow: serde_json::Value = http
            .get(format!("{}/v1/pow", self.url))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let challenge = pow["challenge"]
            .as_str()
            .context("no challenge")?
            .to_owned();
        let difficulty = pow["difficulty"]
            .as_u64()
            .and_then(|d| u32::try_from(d).ok())
            .context("no difficulty")?;
        let identity = RelayIdentity::load(&relay.ca_dir)?;
        let body = Registration {
            address: relay.address.to_string(),
            operator_id: relay.operator_id.clone(),
            operator_key: relay.operator.verifying_key(),
            region: relay.region.clone(),
            info: serde_json::Map::new(),
            metadata: RelayMetadata::default(),
            timestamp: self.clock.now(),
            challenge: challenge.clone(),
            ca_certificate: hex::encode(identity.ca_certificate()),
        };
        let request = smpx_relay::directory::sign_payload(
            &relay.ca_dir,
            &relay.operator,
            body.payload()?,
            &challenge,
            difficulty,
            |_| true,
        )?
        .context("registration signing stopped")?;
        let answer = http
            .post(format!("{}/v1/relays", self.url))
            .json(&request)
            .send()
            .await?;
        let status = answer.status();
        anyhow::ensure!(
            status.is_success(),
            "registering {}: {status} {}",
            relay.address,
            answer.text().await.unwrap_or_default()
        );
        Ok(())
    }

    /// Runs `n` probe rounds, moving the clock on by `every_secs` before each.
    pub async fn probe_rounds(&self, n: usize, every_secs: u64) -> Result<()> {
        for _ in 0..n {
            self.clock.advance(every_secs);
            smpx_directory::probe::probe_round(&self.state).await?;
        }
        Ok(())
    }

    /// Stops serving (the port refuses connections afterwards).
    pub async fn stop(&mut self) -> Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.served.take() {
            h.await??;
        }
        Ok(())
    }
}
