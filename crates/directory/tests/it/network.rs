//! The directory probing real parts with its network prober (`NetworkProber`, the one
//! `smpx directory run` uses): a real relay node is Running with a measured latency; a relay
//! that completes TLS with its real identity but drops queue traffic is down, at the protocol
//! stage; a relay that stopped is down at TCP.

use crate::support::{Dir, Relay};
use smpx_core::crypto::sign::SigningKey;
use smpx_directory::{Directory, DirectoryHome, NetworkProber};
use smpx_relay_client::probe::ProbeConfig;
use smpx_relay_transport::RelayIdentity;
use smpx_testkit::relay::DroppingRelay;
use smpx_testkit::Backend;
use std::sync::Arc;
use std::time::Duration;

fn relay_at(dir: tempfile::TempDir, operator_id: &str, seed: u8, port: u16) -> Relay {
    let identity = RelayIdentity::load(dir.path()).unwrap();
    Relay {
        dir,
        identity,
        operator: SigningKey::from_bytes(&[seed; 32]),
        operator_id: operator_id.into(),
        host: "127.0.0.1".parse().unwrap(),
        port,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_network_prober_tells_a_working_relay_from_one_that_drops_queue_traffic() {
    let d = Dir::start(Backend::Sqlite).await;

    let good_dir = tempfile::tempdir().unwrap();
    let node = smpx_testkit::relay::start(good_dir.path(), None)
        .await
        .unwrap();
    let good = relay_at(good_dir, "op-good", 1, node.listen_addr().port());

    let bad_dir = tempfile::tempdir().unwrap();
    let dropping = DroppingRelay::start(bad_dir.path()).await.unwrap();
    let bad = relay_at(bad_dir, "op-bad", 2, dropping.address().port);

    for r in [&good, &bad] {
        let (s, v) = d.register(r).await;
        assert_eq!(s, 200, "{v}");
    }

    // The directory over the same database, probing through the network.
    let home = DirectoryHome::load(&d.home).unwrap();
    let config = ProbeConfig {
        connect_timeout: Duration::from_secs(5),
        tls_timeout: Duration::from_secs(5),
        protocol_timeout: Duration::from_secs(3),
        clock: d.clock.clone(),
        ..ProbeConfig::default()
    };
    let probing = Directory::new(
        d.state.store().clone(),
        home,
        d.clock.clone(),
        Arc::new(NetworkProber::with_config(config)),
    );
    assert_eq!(
        smpx_directory::probe::probe_round(&probing).await.unwrap(),
        2
    );

    let (_, g) = d.get(&format!("/v1/relays/{}", good.fingerprint())).await;
    assert_eq!(g["relay"]["status"], "running", "{g}");
    assert!(g["relay"]["latency_p50_ms"].as_u64().is_some(), "{g}");
    let last = &g["history"].as_array().unwrap()[0];
    assert_eq!(
        (last["up"].as_bool(), last["stage"].as_str()),
        (Some(true), Some("protocol"))
    );

    let (_, b) = d.get(&format!("/v1/relays/{}", bad.fingerprint())).await;
    assert_eq!(b["relay"]["status"], "down", "{b}");
    let last = &b["history"].as_array().unwrap()[0];
    assert_eq!(
        last["stage"], "protocol",
        "TLS succeeded, queue traffic did not: {b}"
    );
    assert!(
        dropping.dropped() > 0,
        "the double saw the probe's commands"
    );

    // The good relay stops: down at TCP on the next round.
    node.shutdown().await.unwrap();
    d.clock.advance(600);
    smpx_directory::probe::probe_round(&probing).await.unwrap();
    let (_, g) = d.get(&format!("/v1/relays/{}", good.fingerprint())).await;
    assert_eq!(g["relay"]["status"], "down", "{g}");
    let h = g["history"].as_array().unwrap();
    assert_eq!(h[h.len() - 1]["stage"], "tcp", "{g}");
}
