//! Waiting for a condition with a deadline, never for a fixed time.

use std::time::{Duration, Instant};

/// Polls `check` every 200 ms until it returns `Some`, or fails after `within` naming
/// `what` it waited for.
pub async fn wait_for<T, F, Fut>(within: Duration, what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if Instant::now() > deadline {
            anyhow::bail!("timed out after {within:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
