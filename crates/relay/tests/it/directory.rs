//! A relay node and a real directory (in-process, SQLite, low proof of work): registering at
//! init with only the chosen metadata, heartbeats from the running node across a restart,
//! withdrawing, and the clear error without `ca.key`.

use smpx_directory::probe::ProbeFuture;
use smpx_directory::{Directory, DirectoryConfig, DirectoryHome, Observation, Prober};
use smpx_os::{Clock, ManualClock, OsEntropy, SystemClock};
use smpx_relay::directory::{self, DirectoryError, PowProgress};
use smpx_relay::{DirectorySection, InitOptions, RelayNode};
use smpx_relay_transport::RelayAddress;
use smpx_store::directory::DirectoryStore;
use smpx_store::Db;
use std::os::unix::fs::PermissionsExt as _;
use std::sync::Arc;
use std::time::Duration;

/// Every relay is up: these tests are about registration, not probing.
struct Up;

impl Prober for Up {
    fn probe<'a>(&'a self, _target: &'a RelayAddress) -> ProbeFuture<'a> {
        Box::pin(async {
            Observation {
                up: true,
                latency_ms: Some(1),
                stage: "round_trip".into(),
                detail: String::new(),
            }
        })
    }
}

struct Dir {
    url: String,
    http: reqwest::Client,
    _home: tempfile::TempDir,
    _served: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Dir {
    /// A directory whose clock is the system's now (the relay signs with the system clock).
    async fn start() -> Dir {
        let home = tempfile::tempdir().unwrap();
        let config = DirectoryConfig {
            pow_difficulty: 4,
            ..DirectoryConfig::default()
        };
        DirectoryHome::create(home.path(), &config).unwrap();
        let h = DirectoryHome::load(home.path()).unwrap();
        let store = DirectoryStore::open(Db::connect(&h.database_url()).await.unwrap())
            .await
            .unwrap();
        let clock = Arc::new(ManualClock::new(SystemClock.now()));
        let state = Directory::new(store, h, clock, Arc::new(Up));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let served = tokio::spawn(smpx_directory::run(state, listener, std::future::pending()));
        Dir {
            url,
            http: reqwest::Client::new(),
            _home: home,
            _served: served,
        }
    }

    async fn relay(&self, fingerprint: &str) -> (u16, serde_json::Value) {
        let r = self
            .http
            .get(format!("{}/v1/relays/{fingerprint}", self.url))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }
}

fn section(url: &str) -> DirectorySection {
    let mut d = DirectorySection::new(vec![url.to_owned()], "op-1".into(), "eu-west".into());
    d.operator_name = Some("Example Relays".into());
    d
}

async fn init(relay_dir: &std::path::Path, d: DirectorySection) -> RelayAddress {
    RelayNode::init(
        relay_dir,
        InitOptions {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            public_port: Some(5223),
            ops_listen: Some("127.0.0.1:0".parse().unwrap()),
            directory: Some(d),
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

/// Starts the node and waits for its first heartbeat (sent at start) to be recorded.
async fn start_and_heartbeat(relay_dir: &std::path::Path) -> smpx_relay::RunningNode {
    let node = RelayNode::start(relay_dir).await.unwrap();
    let mut sent = node.heartbeats_sent();
    tokio::time::timeout(Duration::from_secs(30), sent.wait_for(|n| *n >= 1))
        .await
        .unwrap()
        .unwrap();
    node
}

fn no_progress() -> directory::ProgressFn {
    Arc::new(|_: &PowProgress| true)
}

#[tokio::test]
async fn init_registers_heartbeats_survive_a_restart_and_withdraw_unlists() {
    let dir = Dir::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let relay_dir = tmp.path().join("relay");
    let address = init(&relay_dir, section(&dir.url)).await;
    let fp = address.fingerprint.to_string();
    // The operator key is created at init, private.
    let key = relay_dir.join("operator.key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let cfg = RelayNode::config(&relay_dir).unwrap();
    let registered = directory::register(&relay_dir, &cfg, &SystemClock, &OsEntropy, no_progress())
        .await
        .unwrap();
    assert_eq!(registered.len(), 1);
    assert_eq!(registered[0].1.fingerprint, fp);
    assert!(registered[0].1.created);
    let (s, v) = dir.relay(&fp).await;
    assert_eq!(s, 200, "{v}");
    let listed = &v["relay"];
    assert_eq!(listed["address"], address.to_string());
    assert_eq!(listed["operator_id"], "op-1");
    assert_eq!(listed["region"], "eu-west");
    // Only the metadata the operator set; the INFO clients get.
    assert_eq!(
        listed["metadata"],
        serde_json::json!({"operator_name": "Example Relays"})
    );
    assert_eq!(listed["info"]["free_quota"], 128);
    assert_eq!(listed["info"]["operator_url"], serde_json::Value::Null);
    assert_eq!(listed["last_heartbeat_at"], serde_json::Value::Null);

    // Running, the node heartbeats at once (then every interval).
    let node = start_and_heartbeat(&relay_dir).await;
    let (_, v) = dir.relay(&fp).await;
    assert!(v["relay"]["last_heartbeat_at"].as_u64().is_some(), "{v}");
    let first: u64 = std::fs::read_to_string(relay_dir.join(directory::HEARTBEAT_SEQ_FILE))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    node.shutdown().await.unwrap();

    // After a restart the sequence keeps growing: the directory takes the next one.
    let node = start_and_heartbeat(&relay_dir).await;
    let again = directory::heartbeat(&relay_dir, &cfg, &SystemClock)
        .await
        .unwrap();
    assert!(again >= first + 2, "{again} after {first}");
    node.shutdown().await.unwrap();

    // Withdrawn: no longer listed.
    let gone = directory::withdraw(&relay_dir, &cfg, None, &SystemClock)
        .await
        .unwrap();
    assert_eq!(gone, vec![dir.url.clone()]);
    let (s, v) = dir.relay(&fp).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (404, Some("unknown_relay"))
    );
    // And a heartbeat for it is refused (not fatal for a running node: logged).
    let e = directory::heartbeat(&relay_dir, &cfg, &SystemClock)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, DirectoryError::Client(c) if c.code() == Some(smpx_core::ErrorCode::UnknownRelay)),
        "{e}"
    );
}

#[tokio::test]
async fn registering_without_the_ca_key_says_to_bring_it_back() {
    let dir = Dir::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let relay_dir = tmp.path().join("relay");
    init(&relay_dir, section(&dir.url)).await;
    std::fs::rename(
        RelayNode::ca_key_path(&relay_dir),
        tmp.path().join("offline-ca.key"),
    )
    .unwrap();
    let cfg = RelayNode::config(&relay_dir).unwrap();
    let e = directory::register(&relay_dir, &cfg, &SystemClock, &OsEntropy, no_progress())
        .await
        .unwrap_err();
    assert!(matches!(e, DirectoryError::NoCaKey(_)), "{e}");
    assert!(e.to_string().contains("bring ca.key back"), "{e}");
    // Nothing was registered.
    let fp = std::fs::read_to_string(relay_dir.join("fingerprint")).unwrap();
    assert_eq!(dir.relay(fp.trim()).await.0, 404);
}

#[tokio::test]
async fn a_relay_without_a_directory_section_is_not_registered() {
    let tmp = tempfile::tempdir().unwrap();
    let relay_dir = tmp.path().join("relay");
    RelayNode::init(&relay_dir, InitOptions::default())
        .await
        .unwrap();
    let cfg = RelayNode::config(&relay_dir).unwrap();
    assert!(cfg.directory.is_none());
    let e = directory::register(&relay_dir, &cfg, &SystemClock, &OsEntropy, no_progress())
        .await
        .unwrap_err();
    assert!(matches!(e, DirectoryError::NotConfigured), "{e}");
    assert!(!relay_dir.join("operator.key").exists());
}
