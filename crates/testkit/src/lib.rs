//! Test harness shared by Ronghe's integration tests: start a real `ronghe server` process
//! in its own temporary data directory on a free port, wait until it serves, talk to it
//! with kube-rs or the real kubectl, restart it, and stop it (by its pid) when dropped,
//! even when the test fails.

mod kubectl;
mod server;

pub use kubectl::{Kubectl, KubectlOutput};
pub use server::{ServerProcess, raw_request};
