//! The relay and client over the real transport: TLS 1.3 with the pinned CA fingerprint.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::*;
use smpx_relay_client::{connect_tls, ClientError, Event};
use smpx_relay_protocol::crypto::Content;
use smpx_relay_server::Relay;
use smpx_relay_store::memory::MemoryStore;
use smpx_relay_transport::{self as transport, RelayHost, RelayIdentity};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn messages_flow_over_tls_and_a_wrong_fingerprint_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let identity = RelayIdentity::create(&dir.path().join("relay")).unwrap();
    let relay = Relay::new(Arc::new(MemoryStore::new()), test_config());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = Arc::new(transport::acceptor(&identity).unwrap());
    let r = relay.clone();
    tokio::spawn(async move { r.serve(listener, acceptor).await });
    let address = identity.address(RelayHost::Ipv4(std::net::Ipv4Addr::LOCALHOST), port);

    let (recipient, mut events) = connect_tls(&address, client_config()).await.unwrap();
    let (sender, _) = connect_tls(&address, client_config()).await.unwrap();
    let q = recipient.create_queue().await.unwrap();
    assert_eq!(recipient.subscribe(&q).await.unwrap(), None);
    sender.send(&q.sender_id, None, b"over tls").await.unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .unwrap()
        .unwrap();
    match ev {
        Event::Message { message, .. } => {
            assert_eq!(message.content, Content::Body(b"over tls".to_vec()))
        }
        e => panic!("{e:?}"),
    }

    // Another relay's fingerprint: the client refuses the certificate.
    let other = RelayIdentity::create(&dir.path().join("other")).unwrap();
    let wrong = other.address(RelayHost::Ipv4(std::net::Ipv4Addr::LOCALHOST), port);
    assert!(matches!(
        connect_tls(&wrong, client_config()).await,
        Err(ClientError::Transport(_))
    ));
    // The relay serves on.
    recipient.ping().await.unwrap();
}
