//! Relays for tests, through the relay node library (the one module of the test kit that names
//! it, so a move of the relay crates changes only this file): initialised in a directory with
//! ephemeral ports and started at once, exactly as `smpx relay init` and `smpx relay run` do.

use std::time::Duration;

pub use smpx_relay::RunningNode;
use smpx_relay::{InitOptions, RelayNode};

/// A relay in `dir` on ephemeral loopback ports (bound by the node itself, no race), free
/// tier only, or selling capacity for the credits of the operator at `operator_url`; as a
/// proxy it dials other test relays on loopback (`allow_private_destinations`).
pub async fn start(
    dir: &std::path::Path,
    operator_url: Option<&str>,
) -> anyhow::Result<RunningNode> {
    RelayNode::init(
        dir,
        InitOptions {
            listen: Some(([127, 0, 0, 1], 0).into()),
            ops_listen: Some(([127, 0, 0, 1], 0).into()),
            operator_url: operator_url.map(str::to_owned),
            allow_private_destinations: true,
            ..Default::default()
        },
    )
    .await?;
    Ok(RelayNode::start(dir).await?)
}

/// How many client connections `node` has accepted so far.
pub fn connections_total(node: &RunningNode) -> u64 {
    node.relay()
        .stats()
        .connections_total
        .load(std::sync::atomic::Ordering::SeqCst)
}

/// Waits until `node` has accepted `n` client connections in all (e.g. `connections_total`
/// before a receiver starts, plus one: the receiver is connected), or fails after `within`.
pub async fn wait_for_connections(
    node: &RunningNode,
    n: u64,
    within: Duration,
) -> anyhow::Result<()> {
    tokio::time::timeout(within, async {
        // The count has no change notification: look again every few milliseconds.
        while connections_total(node) < n {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .map_err(|_| {
        anyhow::anyhow!(
            "the relay had accepted {} connections, not {n}, after {within:?}",
            connections_total(node)
        )
    })
}
