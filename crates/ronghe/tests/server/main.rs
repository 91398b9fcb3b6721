//! Integration tests against a real `ronghe server` process (one test binary, so the kube
//! stack links once): the real kubectl, kube-rs, and the API's behaviour on good and bad
//! requests.

mod api;
mod apps;
mod compute;
mod hundred_hosts;
mod identity;
mod images;
mod kube_rs;
mod kubectl;
mod load_balancer;
mod logs_exec;
mod network;
mod openstack;
mod placement;
mod quota;
mod scheduling;
mod service_annotations;
mod services;

use std::path::Path;

use ronghe_testkit::ServerProcess;

pub const BINARY: &str = env!("CARGO_BIN_EXE_ronghe");

/// A server with default flags.
pub async fn server() -> anyhow::Result<ServerProcess> {
    ServerProcess::start(Path::new(BINARY), &[]).await
}

/// Polls until `check` returns `Some`, or fails after `within`.
pub async fn wait_for<T, F, Fut>(
    within: std::time::Duration,
    what: &str,
    mut check: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if std::time::Instant::now() > deadline {
            anyhow::bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
