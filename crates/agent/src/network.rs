//! The host's virtual network, as the agent keeps it: `plan.rs` computes what the host
//! should have from the API's objects (ports bound here, their networks, security groups,
//! the routers this host runs); `wiring.rs` keeps the objects in watch-fed caches
//! (`objects.rs`), binds the ports of the workloads placed here, hands the plan to the
//! host-network driver (`ronghe-hostnet`, which makes Linux match it) after every change,
//! and reports ports `ACTIVE`. Each network's service netns gets a metadata server
//! (`metadata.rs`) and a DNS server (`dns.rs`) from the agent.
//!
//! The workload drivers reach the network through [`WorkloadNetwork`]: the container
//! driver plugs a pod into its port between making the pod's network namespace and
//! starting its containers (as a CNI plugin does), and the VM loop asks for a VM's NICs
//! (TAP devices already on their bridges) before it boots the VM.

pub mod dns;
mod limits;
pub mod metadata;
mod objects;
pub mod plan;
mod servers;
mod wiring;

use std::net::IpAddr;
use std::path::Path;

use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

use crate::vms::VmSpec;

pub use wiring::{Wiring, WiringConfig};

/// An object's `metadata.uid` ("" without one).
fn uid(object: &Value) -> &str {
    metadata_text(object, "uid")
}

/// An object's `metadata.namespace` ("" without one).
fn namespace(object: &Value) -> &str {
    metadata_text(object, "namespace")
}

/// An object's `metadata.name` ("" without one).
fn name(object: &Value) -> &str {
    metadata_text(object, "name")
}

/// The string at `pointer` in `object` ("" when there is none).
fn text<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn metadata_text<'a>(object: &'a Value, field: &str) -> &'a str {
    object
        .get("metadata")
        .and_then(|metadata| metadata.get(field))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// A VM's network interface: the TAP device on the host (on its network's bridge) and
/// the guest's MAC address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct VmNic {
    pub tap: String,
    pub mac: String,
}

/// The cluster resolver a pod on a tenant network is told to use (its `/etc/resolv.conf`
/// under Kubernetes' `ClusterFirst` DNS policy).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterDns {
    /// The network's DHCP port's address on the pod's subnet, where the agent serves DNS.
    pub nameserver: IpAddr,
    /// `NAMESPACE.svc.cluster.local svc.cluster.local cluster.local` and the network's
    /// domain.
    pub searches: Vec<String>,
}

/// What a pod plugged into its network has.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodNetwork {
    /// Its addresses; the first is its `podIP`.
    pub ips: Vec<IpAddr>,
    /// The cluster's resolver on its network, when the network has one.
    pub dns: Option<ClusterDns>,
}

/// How workloads get onto tenant networks.
#[async_trait::async_trait]
pub trait WorkloadNetwork: Send + Sync + 'static {
    /// Plugs a pod (one not on the host network) into its port inside `netns`, the network
    /// namespace its runtime made, once the port exists, is bound to this host and is
    /// wired; returns the pod's addresses and resolver. Fails after a while if the port
    /// never comes; calling it again is fine.
    async fn attach_pod(&self, pod: &Pod, netns: &Path) -> anyhow::Result<PodNetwork>;
    /// The pod is gone from this host: its wiring is removed.
    async fn detach_pod(&self, uid: &str);
    /// Plugs the ports of device `uid` that lives in a network namespace of its own
    /// (a load balancer's VIP port, device owner `Octavia`) into `netns`, as for a pod.
    async fn attach_device(&self, uid: &str, netns: &Path) -> anyhow::Result<Vec<IpAddr>>;
    /// The device is gone from this host: its wiring is removed.
    async fn detach_device(&self, uid: &str);
    /// The NICs of a VM placed on this host, in the order of its `spec.networks`, once
    /// each of its ports is bound here and its TAP is on the bridge.
    async fn vm_nics(&self, vm: &VmSpec) -> anyhow::Result<Vec<VmNic>>;
}

/// No tenant networking: pods have loopback only and VMs no NICs (simulated hosts, and
/// agents started with `--network none`).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoNetwork;

#[async_trait::async_trait]
impl WorkloadNetwork for NoNetwork {
    async fn attach_pod(&self, _pod: &Pod, _netns: &Path) -> anyhow::Result<PodNetwork> {
        Ok(PodNetwork::default())
    }

    async fn detach_pod(&self, _uid: &str) {}

    async fn attach_device(&self, _uid: &str, _netns: &Path) -> anyhow::Result<Vec<IpAddr>> {
        Ok(Vec::new())
    }

    async fn detach_device(&self, _uid: &str) {}

    async fn vm_nics(&self, _vm: &VmSpec) -> anyhow::Result<Vec<VmNic>> {
        Ok(Vec::new())
    }
}
