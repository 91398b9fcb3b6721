//! Test harness shared by Ronghe's integration tests and benchmarks: start a real
//! `ronghe server` process in its own temporary data directory on a free port, wait until
//! it serves, talk to it with kube-rs, the real kubectl or the real openstack CLI, restart
//! it, and stop it (by its pid) when dropped, even when the test fails; a lab of hosts in
//! network namespaces (`NetLab`) and a whole cloud on it (`LabCluster`); what an agent
//! leaves on this machine and how to remove it (`host`).

mod agent;
mod cluster;
pub mod host;
mod kubectl;
mod netlab;
mod openstack;
mod openstack_api;
mod server;
mod wait;

pub use agent::AgentProcess;
pub use cluster::LabCluster;
pub use kubectl::{Kubectl, KubectlOutput};
pub use netlab::{LabExternal, LabHost, NetLab};
pub use openstack::Openstack;
pub use openstack_api::OpenstackApi;
pub use server::{ServerProcess, raw_request};
pub use wait::wait_for;
