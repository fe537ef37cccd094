//! Running a relay node: init, start behind TLS, a client over the printed address, the ops
//! endpoint (health, metrics), graceful shutdown, a restart keeping queues, bad config.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use smpx_relay::{
    BackendKind, ConfigError, InitOptions, NodeError, RelayNode, RunningNode, StorageConfig,
};
use smpx_relay_client::{Client, ClientConfig};
use smpx_relay_protocol::crypto::Content;
use smpx_relay_transport::{self as transport, RelayAddress};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn ephemeral() -> InitOptions {
    InitOptions {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        ops_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..Default::default()
    }
}

async fn client(address: &RelayAddress) -> Client {
    let (tls, sid) = transport::connect(address).await.unwrap();
    let (client, _events) = Client::connect(tls, sid, ClientConfig::default())
        .await
        .unwrap();
    client
}

/// `GET path` over HTTP/1.1; returns status and body.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: ops\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n").unwrap();
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
}

/// The text exposition format as Prometheus reads it (the subset we emit): each sample has a
/// HELP and a TYPE line first, counters end in `_total`, values are numbers.
fn parse_metrics(text: &str) -> HashMap<String, f64> {
    let mut typed = HashMap::new();
    let mut helped = HashMap::new();
    let mut values = HashMap::new();
    assert!(text.ends_with('\n'));
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap();
            assert!(!help.is_empty());
            assert!(helped.insert(name.to_owned(), ()).is_none(), "{line}");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(["counter", "gauge"].contains(&kind), "{line}");
            assert!(kind != "counter" || name.ends_with("_total"), "{line}");
            assert!(typed.insert(name.to_owned(), ()).is_none(), "{line}");
        } else {
            let (name, value) = line.split_once(' ').unwrap();
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                "{line}"
            );
            assert!(
                typed.contains_key(name) && helped.contains_key(name),
                "{line}"
            );
            let v: f64 = value.parse().unwrap();
            assert!(values.insert(name.to_owned(), v).is_none(), "{line}");
        }
    }
    values
}

fn body(c: &Content) -> &[u8] {
    match c {
        Content::Body(b) => b,
        Content::QuotaExceeded => panic!("quota marker"),
    }
}

#[tokio::test]
async fn init_run_connect_health_metrics_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    // The port is held from here on and handed to the node: nothing else can take it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let printed = RelayNode::init(
        dir.path(),
        InitOptions {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], port))),
            ..ephemeral()
        },
    )
    .await
    .unwrap();
    assert_eq!(printed.port, port);
    // The address init printed parses back and names this relay.
    let address: RelayAddress = printed.to_string().parse().unwrap();
    assert!(dir.path().join("relay.toml").exists());
    assert!(dir.path().join("queues.log").exists());
    assert!(RelayNode::ca_key_path(dir.path()).exists());
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.path().join("relay.toml"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    // A second init refuses.
    assert!(matches!(
        RelayNode::init(dir.path(), ephemeral()).await,
        Err(NodeError::AlreadyInitialized(_))
    ));
    // The CA key is not needed to run.
    std::fs::remove_file(RelayNode::ca_key_path(dir.path())).unwrap();

    let node = RelayNode::start_on(dir.path(), listener).await.unwrap();
    assert_eq!(node.address(), &address);
    assert_eq!(node.listen_addr().port(), port);

    let c = client(&address).await;
    let q = c.create_queue().await.unwrap();
    c.send(&q.sender_id, None, b"hello over TLS").await.unwrap();
    let m = c.get(&q).await.unwrap().unwrap();
    assert_eq!(body(&m.content), b"hello over TLS");

    let (status, health) = get(node.ops_addr(), "/health").await;
    assert_eq!(status, 200, "{health}");
    let h: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(h["status"], "serving");
    assert_eq!(h["address"], address.to_string());
    assert_eq!(h["queues"], 1);
    assert_eq!(h["connections"], 1);

    let (status, metrics) = get(node.ops_addr(), "/metrics").await;
    assert_eq!(status, 200);
    let m = parse_metrics(&metrics);
    assert_eq!(m["smpx_relay_messages_in_total"], 1.0);
    assert_eq!(m["smpx_relay_messages_out_total"], 1.0);
    assert_eq!(m["smpx_relay_queues_created_total"], 1.0);
    assert_eq!(m["smpx_relay_queues"], 1.0);
    assert_eq!(m["smpx_relay_messages"], 1.0);
    assert_eq!(m["smpx_relay_connections_open"], 1.0);
    assert_eq!(m["smpx_relay_connections_total"], 1.0);
    assert_eq!(m["smpx_relay_credits_earned_units_total"], 0.0);

    // A wrong pin is refused by the client; the relay counts a failed handshake.
    let wrong: RelayAddress = format!(
        "smpx://{}@127.0.0.1:{}",
        "A".repeat(43),
        node.listen_addr().port()
    )
    .parse()
    .unwrap();
    assert!(transport::connect(&wrong).await.is_err());

    // Shutting down: health turns 503 while connections drain.
    node.relay().shutdown();
    let (status, health) = get(node.ops_addr(), "/health").await;
    assert_eq!(status, 503, "{health}");
    assert!(health.contains("shutting_down"));
    tokio::time::timeout(Duration::from_secs(5), node.shutdown())
        .await
        .unwrap()
        .unwrap();
}

async fn restart_keeps_queues(storage: StorageConfig) {
    let dir = tempfile::tempdir().unwrap();
    RelayNode::init(
        dir.path(),
        InitOptions {
            storage,
            ..ephemeral()
        },
    )
    .await
    .unwrap();
    let node = RelayNode::start(dir.path()).await.unwrap();
    let c = client(node.address()).await;
    let q = c.create_queue().await.unwrap();
    c.send(&q.sender_id, None, b"kept").await.unwrap();
    drop(c);
    node.shutdown().await.unwrap();

    let node: RunningNode = RelayNode::start(dir.path()).await.unwrap();
    let c = client(node.address()).await;
    let m = c.get(&q).await.unwrap().unwrap();
    assert_eq!(body(&m.content), b"kept");
    let (_, health) = get(node.ops_addr(), "/health").await;
    assert!(health.contains("\"queues\":1"), "{health}");
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_restart_keeps_queues_log_backend() {
    restart_keeps_queues(StorageConfig::default()).await;
}

#[tokio::test]
async fn a_restart_keeps_queues_sqlite_backend() {
    restart_keeps_queues(StorageConfig {
        backend: BackendKind::Sqlite,
        ..Default::default()
    })
    .await;
}

fn edit_config(dir: &Path, f: impl FnOnce(String) -> String) {
    let p = dir.join("relay.toml");
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(&p, f(text)).unwrap();
}

#[tokio::test]
async fn a_bad_config_is_a_typed_error_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    RelayNode::init(dir.path(), ephemeral()).await.unwrap();
    let text = std::fs::read_to_string(dir.path().join("relay.toml")).unwrap();
    let line = text
        .lines()
        .position(|l| l.starts_with("max_connections"))
        .unwrap()
        + 1;

    edit_config(dir.path(), |t| {
        t.replace("max_connections =", "max_connection =")
    });
    match RelayNode::start(dir.path()).await {
        Err(NodeError::Config(ConfigError::Syntax {
            line: l, message, ..
        })) => {
            assert_eq!(l, line);
            assert!(message.contains("max_connection"), "{message}");
        }
        other => panic!("{other:?}"),
    }

    edit_config(dir.path(), |t| {
        t.replace("max_connection =", "max_connections = 0 #")
    });
    match RelayNode::start(dir.path()).await {
        Err(NodeError::Config(ConfigError::Invalid { line: l, key, .. })) => {
            assert_eq!(l, line);
            assert_eq!(key, "limits.max_connections");
        }
        other => panic!("{other:?}"),
    }

    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        RelayNode::start(empty.path()).await,
        Err(NodeError::NotInitialized(_))
    ));
}

#[tokio::test]
async fn init_with_unusable_storage_can_be_run_again() {
    let dir = tempfile::tempdir().unwrap();
    let e = RelayNode::init(
        dir.path(),
        InitOptions {
            storage: StorageConfig {
                backend: BackendKind::Sqlite,
                path: Some("/dev/null/queues.db".into()),
                ..Default::default()
            },
            ..ephemeral()
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(e, NodeError::Store(_)), "{e}");
    // Nothing was left that blocks a second init.
    RelayNode::init(dir.path(), ephemeral()).await.unwrap();
}

#[tokio::test]
async fn a_restart_keeps_queues_postgres_backend() {
    let url = smpx_store::scratch::postgres().await.unwrap();
    restart_keeps_queues(StorageConfig {
        backend: BackendKind::Postgres,
        url: Some(url),
        ..Default::default()
    })
    .await;
}
