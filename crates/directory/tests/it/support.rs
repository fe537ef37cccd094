//! A directory on a throw-away database with a manual clock and a scripted prober, relays
//! with real CA identities, and requests built as a relay's operator builds them.

use serde_json::{json, Value};
use smpx_core::crypto::sign::SigningKey;
use smpx_core::directory::wire::{
    Heartbeat, Registration, RegistrationRequest, RelayMetadata, Withdrawal, HEARTBEAT_DOMAIN,
    WITHDRAW_DOMAIN,
};
use smpx_core::receipt::Signed;
use smpx_directory::probe::ProbeFuture;
use smpx_directory::{Directory, DirectoryConfig, DirectoryHome, Observation, Prober};
use smpx_http::ManualClock;
use smpx_relay_protocol::address::{RelayAddress, RelayHost};
use smpx_relay_transport::RelayIdentity;
use smpx_store::directory::DirectoryStore;
use smpx_store::Db;
use smpx_testkit::Backend;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// 2026-ish, on a day boundary plus a bit.
pub const T0: u64 = 1_800_000_000;

/// Answers from a table: relays are up with 20 ms unless told otherwise; counts probes.
#[derive(Default)]
pub struct Scripted {
    pub answers: Mutex<HashMap<String, Observation>>,
    pub probed: Mutex<u64>,
    /// When set, each probe waits at this barrier (to observe how many run at once).
    pub gate: Mutex<Option<Arc<tokio::sync::Barrier>>>,
    /// Probes in flight now, and the most at once.
    pub in_flight: Mutex<(u64, u64)>,
}

impl Scripted {
    pub fn set(&self, fingerprint: &str, up: bool, latency_ms: u32) {
        self.answers.lock().unwrap().insert(
            fingerprint.to_owned(),
            Observation {
                up,
                latency_ms: up.then_some(latency_ms),
                stage: if up { "round_trip" } else { "tls" }.into(),
                detail: if up { "" } else { "queue traffic dropped" }.into(),
            },
        );
    }
}

impl Prober for Scripted {
    fn probe<'a>(&'a self, target: &'a RelayAddress) -> ProbeFuture<'a> {
        Box::pin(async move {
            *self.probed.lock().unwrap() += 1;
            let gate = self.gate.lock().unwrap().clone();
            if let Some(gate) = gate {
                {
                    let mut f = self.in_flight.lock().unwrap();
                    f.0 += 1;
                    f.1 = f.1.max(f.0);
                }
                gate.wait().await;
                self.in_flight.lock().unwrap().0 -= 1;
            }
            self.answers
                .lock()
                .unwrap()
                .get(&target.fingerprint.to_string())
                .cloned()
                .unwrap_or(Observation {
                    up: true,
                    latency_ms: Some(20),
                    stage: "round_trip".into(),
                    detail: String::new(),
                })
        })
    }
}

/// A running directory.
pub struct Dir {
    pub url: String,
    pub home: PathBuf,
    pub clock: Arc<ManualClock>,
    pub prober: Arc<Scripted>,
    pub state: Arc<Directory>,
    pub http: reqwest::Client,
    pub attester: SigningKey,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _guards: (tempfile::TempDir, Option<tempfile::TempDir>),
}

pub fn test_config(attester: &SigningKey) -> DirectoryConfig {
    DirectoryConfig {
        name: "test-directory".into(),
        pow_difficulty: 4,
        probe_interval_secs: 600,
        probe_concurrency: 3,
        trusted_attesters: vec![attester.verifying_key()],
        registrations_per_subnet: 5,
        ..DirectoryConfig::default()
    }
}

impl Dir {
    pub async fn start(backend: Backend) -> Dir {
        let attester = SigningKey::from_bytes(&[0xa7; 32]);
        Self::start_with(backend, test_config(&attester), attester).await
    }

    pub async fn start_with(
        backend: Backend,
        config: DirectoryConfig,
        attester: SigningKey,
    ) -> Dir {
        let home = tempfile::tempdir().unwrap();
        let (db_url, db_guard) = smpx_testkit::db::database(backend).await.unwrap();
        let config = DirectoryConfig {
            database_url: Some(db_url.clone()),
            ..config
        };
        DirectoryHome::create(home.path(), &config).unwrap();
        let clock = Arc::new(ManualClock::new(T0));
        let prober = Arc::new(Scripted::default());
        let (url, shutdown, served, state) = serve(home.path(), &clock, &prober).await;
        Dir {
            url,
            home: home.path().to_owned(),
            clock,
            prober,
            state,
            http: reqwest::Client::new(),
            attester,
            shutdown: Some(shutdown),
            served: Some(served),
            _guards: (home, db_guard),
        }
    }

    /// Stops the directory and starts it again on its home and database.
    pub async fn restart(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.served.take() {
            h.await.unwrap().unwrap();
        }
        self.state.store().db().close().await;
        let (url, shutdown, served, state) = serve(&self.home, &self.clock, &self.prober).await;
        (self.url, self.shutdown, self.served, self.state) =
            (url, Some(shutdown), Some(served), state);
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.url))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// A fresh challenge.
    pub async fn challenge(&self) -> (String, u32) {
        let (s, v) = self.get("/v1/pow").await;
        assert_eq!(s, 200, "{v}");
        (
            v["challenge"].as_str().unwrap().to_owned(),
            v["difficulty"].as_u64().unwrap() as u32,
        )
    }

    /// Runs one probe round at the clock's time.
    pub async fn probe_round(&self) -> usize {
        smpx_directory::probe::probe_round(&self.state)
            .await
            .unwrap()
    }
}

type Served = (
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
    Arc<Directory>,
);

/// Opens the home and its database and serves the directory on a fresh port.
async fn serve(home: &Path, clock: &Arc<ManualClock>, prober: &Arc<Scripted>) -> Served {
    let home = DirectoryHome::load(home).unwrap();
    let store = DirectoryStore::open(Db::connect(&home.database_url()).await.unwrap())
        .await
        .unwrap();
    let state = Directory::new(store, home, clock.clone(), prober.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(smpx_directory::serve(state.clone(), listener, async {
        let _ = rx.await;
    }));
    (url, tx, served, state)
}

/// The error code of an answer.
pub fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<none>")
}

/// A relay: a real CA identity in a directory of its own, an operator key and an address.
pub struct Relay {
    pub dir: tempfile::TempDir,
    pub identity: RelayIdentity,
    pub operator: SigningKey,
    pub operator_id: String,
    pub host: RelayHost,
    pub port: u16,
}

impl Relay {
    pub fn new(operator_id: &str, operator_seed: u8, host: &str) -> Relay {
        let dir = tempfile::tempdir().unwrap();
        let identity = RelayIdentity::create(dir.path()).unwrap();
        Relay {
            dir,
            identity,
            operator: SigningKey::from_bytes(&[operator_seed; 32]),
            operator_id: operator_id.into(),
            host: host.parse().unwrap(),
            port: 5223,
        }
    }

    pub fn fingerprint(&self) -> String {
        self.identity.fingerprint().to_string()
    }

    pub fn address(&self) -> String {
        self.identity
            .address(self.host.clone(), self.port)
            .to_string()
    }

    pub fn body(&self, challenge: &str, now: u64) -> Registration {
        let mut info = serde_json::Map::new();
        info.insert("units_per_gb_month".into(), json!(250_000));
        Registration {
            address: self.address(),
            operator_id: self.operator_id.clone(),
            operator_key: self.operator.verifying_key(),
            region: "eu".into(),
            info,
            metadata: RelayMetadata {
                source_code: Some("https://example.org/smpx".into()),
                country: Some("DE".into()),
                ..RelayMetadata::default()
            },
            timestamp: now,
            challenge: challenge.into(),
            ca_certificate: hex::encode(self.identity.ca_certificate()),
        }
    }

    /// A registration as the relay's operator sends it: work, CA and operator signatures.
    pub fn request(&self, body: &Registration, difficulty: u32) -> RegistrationRequest {
        let payload = body.payload().unwrap();
        sign_request(
            self.dir.path(),
            &self.operator,
            payload,
            &body.challenge,
            difficulty,
        )
    }

    pub fn heartbeat(&self, seq: u64, at: u64) -> Value {
        self.heartbeat_by(&self.operator, seq, at)
    }

    pub fn heartbeat_by(&self, key: &SigningKey, seq: u64, at: u64) -> Value {
        let hb = Signed::sign(
            key,
            HEARTBEAT_DOMAIN,
            Heartbeat {
                fingerprint: self.fingerprint(),
                seq,
                at,
            },
        )
        .unwrap();
        serde_json::to_value(hb).unwrap()
    }

    pub fn withdrawal(&self, at: u64) -> Value {
        self.withdrawal_by(&self.operator, at)
    }

    pub fn withdrawal_by(&self, key: &SigningKey, at: u64) -> Value {
        let w = Signed::sign(
            key,
            WITHDRAW_DOMAIN,
            Withdrawal {
                fingerprint: self.fingerprint(),
                at,
            },
        )
        .unwrap();
        serde_json::to_value(w).unwrap()
    }
}

/// The relay node's own signing ([`smpx_relay::directory::sign_payload`]): what the tests
/// send is what a relay sends.
pub fn sign_request(
    ca_dir: &Path,
    operator: &SigningKey,
    payload: String,
    challenge: &str,
    difficulty: u32,
) -> RegistrationRequest {
    smpx_relay::directory::sign_payload(ca_dir, operator, payload, challenge, difficulty, |_| true)
        .unwrap()
        .unwrap()
}

impl Dir {
    /// Registers `relay` with a fresh challenge; the answer.
    pub async fn register(&self, relay: &Relay) -> (u16, Value) {
        let (challenge, difficulty) = self.challenge().await;
        let req = relay.request(&relay.body(&challenge, self.clock_now()), difficulty);
        self.post("/v1/relays", &serde_json::to_value(req).unwrap())
            .await
    }

    pub fn clock_now(&self) -> u64 {
        smpx_http::Clock::now(&*self.clock)
    }
}

impl Dir {
    /// Registers `relay` in `region` with a fresh challenge; the answer.
    pub async fn register_in(&self, relay: &Relay, region: &str) -> (u16, Value) {
        let (challenge, difficulty) = self.challenge().await;
        let mut body = relay.body(&challenge, self.clock_now());
        body.region = region.into();
        let req = relay.request(&body, difficulty);
        self.post("/v1/relays", &serde_json::to_value(req).unwrap())
            .await
    }
}
