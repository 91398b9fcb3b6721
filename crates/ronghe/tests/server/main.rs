//! Integration tests against a real `ronghe server` process (one test binary, so the kube
//! stack links once): the real kubectl, kube-rs, and the API's behaviour on good and bad
//! requests.

mod api;
mod apps;
mod identity;
mod kube_rs;
mod kubectl;
mod openstack;
mod placement;
mod quota;
mod scheduling;

use std::path::Path;

use ronghe_testkit::ServerProcess;

pub const BINARY: &str = env!("CARGO_BIN_EXE_ronghe");

/// A server with default flags.
pub async fn server() -> anyhow::Result<ServerProcess> {
    ServerProcess::start(Path::new(BINARY), &[]).await
}
