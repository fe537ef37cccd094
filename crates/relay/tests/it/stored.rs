//! What a relay keeps on disk holds no client address: after clients with known source
//! ports created queues, sent, received and acknowledged, neither the log nor the SQLite
//! files contain their address or port, in text or as bytes. (The limits count source
//! addresses in memory only: `smpx_relay_server::limits`.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use smpx_relay::{BackendKind, InitOptions, RelayNode, StorageConfig};
use smpx_relay_client::{Client, ClientConfig, Events};
use smpx_relay_transport::{self as transport, RelayAddress};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// A client whose TCP connection comes from 127.0.0.1:<the returned port>.
async fn client_from_known_port(
    listen: SocketAddr,
    address: &RelayAddress,
) -> (Client, Events, u16) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((Ipv4Addr::LOCALHOST, 0).into()).unwrap();
    let port = socket.local_addr().unwrap().port();
    let tcp = socket.connect(listen).await.unwrap();
    let (tls, sid) = transport::connect_over(tcp, address, Duration::from_secs(10))
        .await
        .unwrap();
    let (client, events) = Client::connect(tls, sid, ClientConfig::default())
        .await
        .unwrap();
    (client, events, port)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

async fn no_client_address_is_stored(storage: StorageConfig) {
    let dir = tempfile::tempdir().unwrap();
    RelayNode::init(
        dir.path(),
        InitOptions {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            ops_listen: Some("127.0.0.1:0".parse().unwrap()),
            storage,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let node = RelayNode::start(dir.path()).await.unwrap();
    let (recipient, _re, rport) = client_from_known_port(node.listen_addr(), node.address()).await;
    let (sender, _se, sport) = client_from_known_port(node.listen_addr(), node.address()).await;
    let q = recipient.create_queue().await.unwrap();
    sender.send(&q.sender_id, None, b"one").await.unwrap();
    sender.send(&q.sender_id, None, b"two").await.unwrap();
    let m = recipient.get(&q).await.unwrap().unwrap();
    recipient.ack(&q, &m.msg_id).await.unwrap();
    recipient.create_channel().await.unwrap();
    drop((recipient, sender));
    node.shutdown().await.unwrap();

    // Every file the store wrote (the log, or the database and its WAL).
    let mut stored = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("queues.") {
            stored.extend(std::fs::read(&path).unwrap());
        }
    }
    assert!(stored.len() > 100, "the store wrote its files");
    let localhost = Ipv4Addr::LOCALHOST;
    for port in [rport, sport] {
        let p = port.to_be_bytes();
        let mut v4 = localhost.octets().to_vec();
        v4.extend(p);
        let mut mapped = localhost.to_ipv6_mapped().octets().to_vec();
        mapped.extend(p);
        let text = format!("{localhost}:{port}");
        for needle in [
            text.as_bytes(),
            port.to_string().as_bytes(),
            &v4,
            &mapped,
            &localhost.octets(),
        ] {
            assert!(
                !contains(&stored, needle),
                "the store holds {needle:?} (port {port})"
            );
        }
    }
    assert!(!contains(&stored, b"127.0.0.1"));
    // No table has a column for one (SQLite keeps its schema as text in the file).
    for word in [&b"addr"[..], b"peer", b"host", b"port"] {
        assert!(!contains(&stored.to_ascii_lowercase(), word), "{word:?}");
    }
}

#[tokio::test]
async fn the_log_backend_stores_no_client_address() {
    no_client_address_is_stored(StorageConfig::default()).await;
}

#[tokio::test]
async fn the_sqlite_backend_stores_no_client_address() {
    no_client_address_is_stored(StorageConfig {
        backend: BackendKind::Sqlite,
        ..Default::default()
    })
    .await;
}
