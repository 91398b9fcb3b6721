//! Test harness shared by Ronghe's integration tests: start a real `ronghe server` process
//! in its own temporary data directory on a free port, wait until it serves, talk to it
//! with kube-rs, the real kubectl or the real openstack CLI, restart it, and stop it (by its pid) when dropped,
//! even when the test fails.

mod agent;
mod kubectl;
mod netlab;
mod openstack;
mod server;

pub use agent::AgentProcess;
pub use kubectl::{Kubectl, KubectlOutput};
pub use netlab::{LabExternal, LabHost, NetLab};
pub use openstack::Openstack;
pub use server::{ServerProcess, raw_request};
