//! Reading and writing whole blocks with deadlines (used by the server and the client alike,
//! so both ends enforce the same limits on the same code).
//!
//! A reader waits up to an *idle* timeout for the first byte of a block, then gives the
//! whole rest of the block one *block deadline*: a peer that trickles a byte a minute is
//! cut off after the deadline however many bytes it sends, and waiting for it costs one
//! small task, not a thread. The 16 KiB buffer is allocated only once a block has begun,
//! so an idle connection holds no block buffer.

use smpx_relay_protocol::{BlockBuilder, BLOCK_SIZE};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{timeout, Instant};

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer closed the connection between blocks.
    #[error("connection closed")]
    Closed,
    /// The peer closed the connection in the middle of a block.
    #[error("connection closed mid-block")]
    Truncated,
    #[error("no block began within the idle timeout")]
    Idle,
    #[error("block not complete within its deadline")]
    Deadline,
    #[error("write did not complete within its deadline")]
    WriteDeadline,
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads one whole block.
pub async fn read_block<R: AsyncRead + Unpin>(
    r: &mut R,
    idle: Duration,
    deadline: Duration,
) -> Result<Vec<u8>, FrameError> {
    let mut first = [0u8; 1];
    let n = match timeout(idle, r.read(&mut first)).await {
        Err(_) => return Err(FrameError::Idle),
        Ok(res) => res?,
    };
    if n == 0 {
        return Err(FrameError::Closed);
    }
    let until = Instant::now() + deadline;
    let mut block = vec![0u8; BLOCK_SIZE];
    block[0] = first[0];
    let mut filled = 1;
    while filled < BLOCK_SIZE {
        match tokio::time::timeout_at(until, r.read(&mut block[filled..])).await {
            Err(_) => return Err(FrameError::Deadline),
            Ok(Ok(0)) => return Err(FrameError::Truncated),
            Ok(Ok(n)) => filled += n,
            Ok(Err(e)) => return Err(e.into()),
        }
    }
    Ok(block)
}

/// Writes one block and flushes it, within `deadline`.
pub async fn write_block<W: AsyncWrite + Unpin>(
    w: &mut W,
    block: &[u8],
    deadline: Duration,
) -> Result<(), FrameError> {
    match timeout(deadline, async {
        w.write_all(block).await?;
        w.flush().await
    })
    .await
    {
        Err(_) => Err(FrameError::WriteDeadline),
        Ok(res) => Ok(res?),
    }
}

/// Packs queued transmissions into blocks (as many per block as fit) and writes them until
/// every sender is gone; on a failed or late write it sets `dead` and stops.
pub async fn write_loop<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut rx: tokio::sync::mpsc::Receiver<Vec<u8>>,
    deadline: Duration,
    dead: tokio::sync::watch::Sender<bool>,
) {
    let mut carry: Option<Vec<u8>> = None;
    loop {
        let first = match carry.take() {
            Some(t) => t,
            None => match rx.recv().await {
                Some(t) => t,
                None => break,
            },
        };
        let mut block = BlockBuilder::new();
        if !block.push(&first) {
            // Responses are built to fit; one that does not is a bug, not worth a connection.
            continue;
        }
        while let Ok(next) = rx.try_recv() {
            if !block.push(&next) {
                carry = Some(next);
                break;
            }
        }
        if write_block(&mut wr, &block.finish(), deadline)
            .await
            .is_err()
        {
            dead.send_replace(true);
            return;
        }
    }
    let _ = tokio::time::timeout(deadline, wr.shutdown()).await;
}
