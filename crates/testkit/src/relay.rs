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

/// The relay in `dir` (made by [`start`]) started again on `listen` — the address it had, so
/// its `smpx://` address is the same and clients that knew it come back to it.
pub async fn restart(
    dir: &std::path::Path,
    listen: std::net::SocketAddr,
) -> anyhow::Result<RunningNode> {
    Ok(RelayNode::start_with(dir, |c| c.server.listen = listen).await?)
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

/// A relay that completes TLS with a real relay identity (its own CA, the real acceptor of
/// `smpx-relay-transport`) and the protocol's version handshake, answers PING, and reads and
/// discards every other command: it looks alive to a TLS check or a PING and drops all
/// queue traffic. For the directory's prober, which must call it down.
pub struct DroppingRelay {
    address: smpx_relay_transport::RelayAddress,
    dropped: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl DroppingRelay {
    /// Creates the identity in `dir` and listens on an ephemeral loopback port.
    pub async fn start(dir: &std::path::Path) -> anyhow::Result<Self> {
        use smpx_relay_transport as transport;
        let identity = transport::RelayIdentity::create(dir)?;
        let acceptor = transport::acceptor(&identity)?;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let address = identity.address(
            transport::RelayHost::Ipv4(std::net::Ipv4Addr::LOCALHOST),
            listener.local_addr()?.port(),
        );
        let dropped = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = dropped.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, counter) = (acceptor.clone(), counter.clone());
                tokio::spawn(async move {
                    let _ = drop_queue_traffic(&acceptor, tcp, &counter).await;
                });
            }
        });
        Ok(Self {
            address,
            dropped,
            task,
        })
    }

    /// Its `smpx://` address, pinned to its real CA.
    pub fn address(&self) -> &smpx_relay_transport::RelayAddress {
        &self.address
    }

    /// Transmissions read and discarded so far (PINGs not counted).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for DroppingRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn drop_queue_traffic(
    acceptor: &smpx_relay_transport::TlsAcceptor,
    tcp: tokio::net::TcpStream,
    dropped: &std::sync::atomic::AtomicU64,
) -> anyhow::Result<()> {
    use smpx_relay_protocol::command::{Command, Response};
    use smpx_relay_protocol::handshake::ServerHello;
    use smpx_relay_protocol::transmission::{encode_transmission, parse_transmission, signed_part};
    use smpx_relay_transport::framing::{read_block, write_block};
    let limit = Duration::from_secs(3600);
    let (mut tls, session_id) = smpx_relay_transport::accept(acceptor, tcp).await?;
    write_block(&mut tls, &ServerHello::new(session_id).encode(), limit).await?;
    read_block(&mut tls, limit, limit).await?;
    loop {
        let block = read_block(&mut tls, limit, limit).await?;
        let mut pongs = smpx_relay_protocol::BlockBuilder::new();
        for raw in smpx_relay_protocol::decode_block(&block)? {
            let t = parse_transmission(raw)?;
            if matches!(Command::decode(t.command), Ok(Command::Ping)) {
                let signed = signed_part(&t.corr_id, None, &Response::Pong.encode());
                pongs.push(&encode_transmission(None, &signed));
            } else {
                dropped.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
        if !pongs.is_empty() {
            write_block(&mut tls, &pongs.finish(), limit).await?;
        }
    }
}
