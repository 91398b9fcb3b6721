//! The objects a host's network is computed from, kept current by one watch per kind
//! (kube's reflectors): the network kinds, Nodes (their tunnel endpoints), VMs (where each
//! runs, their names), keypairs (for the metadata service), and Services and
//! EndpointSlices (for cluster DNS). Every change wakes the wiring loop.
//!
//! Services and EndpointSlices are optional: a server that does not serve them (404)
//! leaves them empty rather than holding up the host's network, and their watches keep
//! trying (with back-off) so they fill once it does.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::DynamicObject;
use kube::discovery::ApiResource;
use kube::runtime::reflector::Store;
use serde_json::Value;
use tokio::sync::{Notify, watch};

use super::plan::Snapshot;
use crate::watched;

/// The kinds watched, in the order of [`Objects::stores`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Networks,
    Subnets,
    Ports,
    SecurityGroupRules,
    Routers,
    FloatingIps,
    PortForwardings,
    QosPolicies,
    Nodes,
    VirtualMachines,
    Keypairs,
    Services,
    EndpointSlices,
}

const KINDS: [Kind; 13] = [
    Kind::Networks,
    Kind::Subnets,
    Kind::Ports,
    Kind::SecurityGroupRules,
    Kind::Routers,
    Kind::FloatingIps,
    Kind::PortForwardings,
    Kind::QosPolicies,
    Kind::Nodes,
    Kind::VirtualMachines,
    Kind::Keypairs,
    Kind::Services,
    Kind::EndpointSlices,
];

impl Kind {
    /// Whether the first plan waits for this kind's first list.
    fn required(self) -> bool {
        !matches!(self, Kind::Services | Kind::EndpointSlices)
    }

    fn resource(self) -> ApiResource {
        let (group, kind, plural) = match self {
            Kind::Networks => ("network.ronghe.io", "Network", "networks"),
            Kind::Subnets => ("network.ronghe.io", "Subnet", "subnets"),
            Kind::Ports => ("network.ronghe.io", "Port", "ports"),
            Kind::SecurityGroupRules => (
                "network.ronghe.io",
                "SecurityGroupRule",
                "securitygrouprules",
            ),
            Kind::Routers => ("network.ronghe.io", "Router", "routers"),
            Kind::FloatingIps => ("network.ronghe.io", "FloatingIP", "floatingips"),
            Kind::PortForwardings => ("network.ronghe.io", "PortForwarding", "portforwardings"),
            Kind::QosPolicies => ("network.ronghe.io", "QosPolicy", "qospolicies"),
            Kind::Nodes => return ApiResource::erase::<Node>(&()),
            Kind::Services => return ApiResource::erase::<Service>(&()),
            Kind::EndpointSlices => return ApiResource::erase::<EndpointSlice>(&()),
            Kind::VirtualMachines => ("compute.ronghe.io", "VirtualMachine", "virtualmachines"),
            Kind::Keypairs => ("compute.ronghe.io", "Keypair", "keypairs"),
        };
        ApiResource {
            group: group.into(),
            version: "v1".into(),
            api_version: format!("{group}/v1"),
            kind: kind.into(),
            plural: plural.into(),
        }
    }
}

/// The Port kind, which the wiring loop also writes.
pub(super) fn port_resource() -> ApiResource {
    Kind::Ports.resource()
}

/// Everything the wiring loop reads, as of one moment.
#[derive(Clone, Debug, Default)]
pub(super) struct Cluster {
    pub plan: Snapshot,
    pub vms: Vec<Value>,
    pub keypairs: Vec<Value>,
    pub services: Vec<Value>,
    pub endpoint_slices: Vec<Value>,
}

/// The watch-fed caches.
pub(super) struct Objects {
    stores: Vec<(Kind, Store<DynamicObject>)>,
}

impl Objects {
    /// Starts a watch per kind; each change notifies `changed`. The watches end when `stop`
    /// flips.
    pub fn start(
        client: &kube::Client,
        changed: Arc<Notify>,
        stop: &watch::Receiver<bool>,
    ) -> Objects {
        let stores = KINDS
            .into_iter()
            .map(|kind| {
                let store = watched::cache(
                    client,
                    kind.resource(),
                    &changed,
                    stop,
                    "the host network",
                    !kind.required(),
                );
                (kind, store)
            })
            .collect();
        Objects { stores }
    }

    /// Waits until every kind has been listed once (so a first plan never misses what
    /// exists and tears it down).
    pub async fn ready(&self) -> anyhow::Result<()> {
        for (kind, store) in self.stores.iter().filter(|(kind, _)| kind.required()) {
            store.wait_until_ready().await.map_err(|_| {
                anyhow::anyhow!("the watch of {kind:?} ended before its first list")
            })?;
        }
        Ok(())
    }

    /// The cached objects of `kind`, in a stable order (by namespace, then name): a cache
    /// filled in another order (after a restart) must plan the same host, rule for rule.
    fn values(&self, kind: Kind) -> Vec<Value> {
        self.stores
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, store)| watched::values(store))
            .unwrap_or_default()
    }

    /// The objects as they are now.
    pub fn cluster(&self) -> Cluster {
        Cluster {
            plan: Snapshot {
                networks: self.values(Kind::Networks),
                subnets: self.values(Kind::Subnets),
                ports: self.values(Kind::Ports),
                security_group_rules: self.values(Kind::SecurityGroupRules),
                routers: self.values(Kind::Routers),
                floating_ips: self.values(Kind::FloatingIps),
                port_forwardings: self.values(Kind::PortForwardings),
                qos_policies: self.values(Kind::QosPolicies),
                nodes: self.values(Kind::Nodes),
            },
            vms: self.values(Kind::VirtualMachines),
            keypairs: self.values(Kind::Keypairs),
            services: self.values(Kind::Services),
            endpoint_slices: self.values(Kind::EndpointSlices),
        }
    }
}
