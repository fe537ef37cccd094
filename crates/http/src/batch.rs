//! Batching requests that arrive together: several workers share one queue; each takes the
//! next request, waiting for it, plus whatever else is already queued, and processes them as
//! one batch. Used by the coordinator's proof verifier and the operator's spend registry.

use tokio::sync::{mpsc, Mutex};

/// Waits for the next item on the shared queue, then takes what else is queued, up to `max`
/// items in all. `None` once every sender is gone and the queue is empty.
pub async fn next_batch<T>(rx: &Mutex<mpsc::Receiver<T>>, max: usize) -> Option<Vec<T>> {
    let mut rx = rx.lock().await;
    let first = rx.recv().await?;
    let mut batch = vec![first];
    while batch.len() < max.max(1) {
        match rx.try_recv() {
            Ok(item) => batch.push(item),
            Err(_) => break,
        }
    }
    Some(batch)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn takes_what_is_queued_up_to_max_then_ends_when_closed() {
        let (tx, rx) = mpsc::channel(16);
        let rx = Mutex::new(rx);
        for i in 0..5 {
            tx.send(i).await.unwrap();
        }
        assert_eq!(next_batch(&rx, 3).await, Some(vec![0, 1, 2]));
        assert_eq!(next_batch(&rx, 3).await, Some(vec![3, 4]));
        drop(tx);
        assert_eq!(next_batch(&rx, 3).await, None);
    }
}
