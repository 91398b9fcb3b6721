//! The objects a host's network is computed from, kept current by one watch per kind
//! (kube's reflectors): the network kinds, Nodes (their tunnel endpoints), VMs (where each
//! runs, their names) and keypairs (for the metadata service). Every change wakes the
//! wiring loop.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, DynamicObject};
use kube::discovery::ApiResource;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::Value;
use tokio::sync::{Notify, watch};

use super::plan::Snapshot;

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
}

const KINDS: [Kind; 11] = [
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
];

impl Kind {
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
        let mut stores = Vec::new();
        for kind in KINDS {
            let resource = kind.resource();
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
            let writer = reflector::store::Writer::new(resource);
            stores.push((kind, writer.as_reader()));
            let stream = reflector::reflector(
                writer,
                watcher(api, watcher::Config::default()).default_backoff(),
            );
            let (changed, mut stop) = (changed.clone(), stop.clone());
            tokio::spawn(async move {
                let mut stream = std::pin::pin!(stream);
                loop {
                    tokio::select! {
                        event = stream.next() => match event {
                            Some(Ok(_)) => changed.notify_one(),
                            Some(Err(error)) => {
                                tracing::warn!(?kind, %error, "watching for the host network failed; retrying");
                            }
                            None => return,
                        },
                        _ = stop.changed() => return,
                    }
                }
            });
        }
        Objects { stores }
    }

    /// Waits until every kind has been listed once (so a first plan never misses what
    /// exists and tears it down).
    pub async fn ready(&self) -> anyhow::Result<()> {
        for (kind, store) in &self.stores {
            store.wait_until_ready().await.map_err(|_| {
                anyhow::anyhow!("the watch of {kind:?} ended before its first list")
            })?;
        }
        Ok(())
    }

    /// The cached objects of `kind`, in a stable order (by namespace, then name): a cache
    /// filled in another order (after a restart) must plan the same host, rule for rule.
    fn values(&self, kind: Kind) -> Vec<Value> {
        let mut objects: Vec<_> = self
            .stores
            .iter()
            .filter(|(k, _)| *k == kind)
            .flat_map(|(_, store)| store.state())
            .collect();
        objects.sort_by(|a, b| {
            (&a.metadata.namespace, &a.metadata.name)
                .cmp(&(&b.metadata.namespace, &b.metadata.name))
        });
        objects
            .iter()
            .filter_map(|object| serde_json::to_value(&**object).ok())
            .collect()
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
        }
    }
}
