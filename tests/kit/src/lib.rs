//! What Kizuna's end-to-end tests (`kizuna-e2e`) and its benchmarks (`kizuna-bench`) share,
//! written once:
//!
//! - [`database`]: a fresh PostgreSQL database, and dropping it (retried while autovacuum or a
//!   last connection holds it);
//! - [`topics`]: fresh topics on the broker, and deleting them;
//! - [`process`]: the real `kizuna` binary as a child process (spawn, `/readyz`, `/metrics`,
//!   SIGKILL, SIGTERM, its log's tail, one-shot commands);
//! - [`metrics`]: the one parser of the Prometheus text `/metrics` serves;
//! - [`rng`]: the one seeded generator (SplitMix64, the simulator's), with the helpers tests use
//!   to pick events, customers and kill points;
//! - [`wait_for`]: polling a condition with a timeout, never a fixed sleep.

use std::future::Future;
use std::time::Duration;

use anyhow::bail;

pub mod database;
pub mod metrics;
pub mod process;
pub mod rng;
pub mod topics;

pub use metrics::Metrics;
pub use rng::Rng;

/// Polls `check` until it returns Some, or fails after `timeout` with `what` in the message.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_error = Some(e),
        }
        if tokio::time::Instant::now() >= deadline {
            match last_error {
                Some(e) => {
                    bail!("timed out after {timeout:?} waiting for {what}; last error: {e:#}")
                }
                None => bail!("timed out after {timeout:?} waiting for {what}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A fresh identifier of `len` lowercase hex digits (at most 32), for names of databases,
/// topics and consumer groups.
pub fn fresh_id(len: usize) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    id[..len.min(id.len())].to_owned()
}
