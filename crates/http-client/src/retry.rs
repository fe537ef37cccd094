//! Waiting for a service that is not up yet: a call retried with exponential backoff while
//! the service cannot be reached (or says it is briefly unavailable), up to a deadline.
//! Services use it at start, when the coordinator they depend on may still be starting (it
//! verifies its ceremony transcript first, which takes tens of seconds on a small machine).

use crate::ClientError;
use std::future::Future;
use std::time::Duration;

/// How long to keep trying, and how the waits grow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The first wait; each next one doubles, up to `max_wait`.
    pub first_wait: Duration,
    pub max_wait: Duration,
    /// Give up once this much time has been spent waiting.
    pub give_up_after: Duration,
}

impl Backoff {
    /// For a service starting: 250 ms, doubling to 5 s, for up to 2 minutes.
    pub const STARTUP: Backoff = Backoff {
        first_wait: Duration::from_millis(250),
        max_wait: Duration::from_secs(5),
        give_up_after: Duration::from_secs(120),
    };
}

/// Whether `e` says the service may answer if asked again soon: it could not be reached,
/// or it answered 502/503 (an upstream of its own is not up, or it is full for a moment).
pub fn is_transient(e: &ClientError) -> bool {
    match e {
        ClientError::Transport { .. } => true,
        ClientError::Api { status, .. } => matches!(status, 502 | 503),
        ClientError::Decode { .. } => false,
    }
}

/// Calls `attempt` until it succeeds, fails for good (not [`is_transient`]), or `policy`
/// gives up (then the last error is returned). Each wait is logged with `what`.
pub async fn with_backoff<T, F, Fut>(
    policy: Backoff,
    what: &str,
    mut attempt: F,
) -> Result<T, ClientError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ClientError>>,
{
    let mut wait = policy.first_wait;
    let mut waited = Duration::ZERO;
    loop {
        match attempt().await {
            Ok(v) => return Ok(v),
            Err(e) if is_transient(&e) && waited + wait <= policy.give_up_after => {
                tracing::warn!(error = %e, "{what} is not answering yet; trying again in {wait:?}");
                tokio::time::sleep(wait).await;
                waited += wait;
                wait = (wait * 2).min(policy.max_wait);
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use smpx_core::ErrorCode;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn down() -> ClientError {
        ClientError::Transport {
            url: "http://127.0.0.1:7400/v1/params".into(),
            message: "connection refused".into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_service_that_comes_up_is_waited_for() {
        let calls = AtomicU32::new(0);
        let started = tokio::time::Instant::now();
        let r = with_backoff(Backoff::STARTUP, "the coordinator", || async {
            if calls.fetch_add(1, Ordering::SeqCst) < 4 {
                Err(down())
            } else {
                Ok(7)
            }
        })
        .await;
        assert_eq!(r.unwrap(), 7);
        assert_eq!(calls.load(Ordering::SeqCst), 5);
        // 250 + 500 + 1000 + 2000 ms of waiting, then the fifth call answers.
        assert_eq!(started.elapsed(), Duration::from_millis(3750));
    }

    #[tokio::test(start_paused = true)]
    async fn it_gives_up_at_the_deadline_with_the_last_error() {
        let calls = AtomicU32::new(0);
        let started = tokio::time::Instant::now();
        let r: Result<(), _> = with_backoff(Backoff::STARTUP, "the coordinator", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(down())
        })
        .await;
        assert!(matches!(r, Err(ClientError::Transport { .. })));
        let waited = started.elapsed();
        assert!(waited <= Backoff::STARTUP.give_up_after, "{waited:?}");
        assert!(waited > Backoff::STARTUP.give_up_after - Duration::from_secs(5));
        // 0.25 + 0.5 + 1 + 2 + 4, then 5 s each: 27 waits fit in 120 s.
        assert_eq!(calls.load(Ordering::SeqCst), 28);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_is_not_retried() {
        let calls = AtomicU32::new(0);
        let r: Result<(), _> = with_backoff(Backoff::STARTUP, "the coordinator", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(ClientError::Api {
                url: "u".into(),
                status: 401,
                code: ErrorCode::Unauthorized,
                message: "no".into(),
            })
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
