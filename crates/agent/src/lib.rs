//! The per-host agent (`ronghe agent`), like a kubelet: it registers its host as a Node
//! (capacity, allocatable, addresses, conditions, node info) and as a placement resource
//! provider (inventories and traits), then keeps a Lease in `kube-node-lease` renewed so
//! the node-lifecycle controller knows it is alive. It talks only to the API server, with
//! the node credential (`DIR/node-token`); the API server comes to its endpoint
//! (`serve.rs`, with the same credential) for logs, exec and VM consoles.
//!
//! `--simulate N` registers N fake hosts from one process (no workloads run on them), so
//! scale tests and benchmarks can stand in for a thousand hosts. Running workloads through
//! runc and QEMU comes with the drivers.

mod host;
pub mod images;
pub mod loadbalancers;
pub mod network;
pub mod nodeports;
pub mod pods;
pub mod serve;
pub mod vms;
mod watched;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::discovery::ApiResource;
use serde_json::json;
use tokio::sync::watch;

pub use host::Host;
pub use pods::{ExecRequest, FakeDriver, LogOptions, PodDriver, PodRef};
pub use vms::{FakeVmDriver, VmDriver};

/// The field manager of everything the agent writes.
const MANAGER: &str = "ronghe-agent";
/// Where node leases live.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// How long a lease lasts without renewal (kubelet's default).
pub const LEASE_DURATION_SECONDS: i32 = 40;
/// How many hosts register at once.
const REGISTRATION_CONCURRENCY: usize = 32;

/// The placement kind of a host's resource provider.
fn providers(client: &kube::Client) -> Api<DynamicObject> {
    let resource = ApiResource {
        group: "placement.ronghe.io".into(),
        version: "v1".into(),
        api_version: "placement.ronghe.io/v1".into(),
        kind: "ResourceProvider".into(),
        plural: "resourceproviders".into(),
    };
    Api::all_with(client.clone(), &resource)
}

/// Creates or updates the Node and the resource provider of a host.
pub async fn register(client: &kube::Client, host: &Host) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let apply = PatchParams::apply(MANAGER).force();
    nodes
        .patch(&host.name, &apply, &Patch::Apply(host.node()))
        .await
        .with_context(|| format!("registering node {}", host.name))?;
    nodes
        .patch_status(
            &host.name,
            &PatchParams::default(),
            &Patch::Merge(host.node_status(now())),
        )
        .await
        .with_context(|| format!("reporting the status of node {}", host.name))?;
    providers(client)
        .patch(&host.name, &apply, &Patch::Apply(host.resource_provider()))
        .await
        .with_context(|| format!("registering resource provider {}", host.name))?;
    Ok(())
}

/// Renews a host's lease (creating it the first time).
pub async fn heartbeat(client: &kube::Client, host: &str) -> anyhow::Result<()> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": host},
        "spec": {
            "holderIdentity": host,
            "leaseDurationSeconds": LEASE_DURATION_SECONDS,
            "renewTime": now(),
        },
    });
    leases
        .patch(
            host,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(lease),
        )
        .await
        .with_context(|| format!("renewing the lease of {host}"))?;
    Ok(())
}

/// The drivers that run a host's workloads, and the network they plug them into.
#[derive(Clone)]
pub struct Drivers {
    pub pods: Arc<dyn PodDriver>,
    pub vms: Arc<dyn VmDriver>,
    pub network: Arc<dyn network::WorkloadNetwork>,
    pub load_balancers: Arc<dyn loadbalancers::LoadBalancerDriver>,
    /// Where this host serves node ports (`None`: it does not, as simulated hosts and
    /// hosts without tenant networking).
    pub node_ports: Option<nodeports::NodePorts>,
}

impl Drivers {
    /// Drivers that run nothing, for simulated hosts.
    pub fn fake() -> Drivers {
        Drivers {
            pods: Arc::new(FakeDriver),
            vms: Arc::new(FakeVmDriver),
            network: Arc::new(network::NoNetwork),
            load_balancers: Arc::new(loadbalancers::FakeLoadBalancerDriver::default()),
            node_ports: None,
        }
    }
}

/// Registers the hosts, runs the workloads placed on them through `drivers` (if any), and renews
/// their leases every `interval` (spread over it) until `stop` flips. A failed
/// registration is retried at the next renewal. With drivers, `endpoint` (if any) serves
/// their logs, exec and consoles to the API server, and every host reports its port.
pub async fn run(
    client: kube::Client,
    mut hosts: Vec<Host>,
    interval: Duration,
    drivers: Option<Drivers>,
    endpoint: Option<serve::Endpoint>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let endpoint = endpoint.filter(|_| drivers.is_some());
    if let Some(endpoint) = &endpoint {
        let port = endpoint.advertised_port()?;
        for host in &mut hosts {
            host.agent_port = port;
        }
    }
    let hosts: Vec<Arc<Host>> = hosts.into_iter().map(Arc::new).collect();
    let registered = futures::stream::iter(hosts.iter().cloned())
        .map(|host| {
            let client = client.clone();
            async move {
                register(&client, &host).await?;
                heartbeat(&client, &host.name).await
            }
        })
        .buffer_unordered(REGISTRATION_CONCURRENCY)
        .try_collect::<Vec<()>>();
    tokio::select! {
        result = registered => drop(result?),
        _ = stop.changed() => return Ok(()),
    }
    tracing::info!(hosts = hosts.len(), "hosts registered");
    if let Some(drivers) = drivers {
        let names: std::collections::HashSet<String> =
            hosts.iter().map(|h| h.name.clone()).collect();
        if let Some(endpoint) = endpoint {
            let workloads = Arc::new(serve::ApiWorkloads(client.clone()));
            let serving = serve::serve(
                endpoint,
                workloads,
                names.clone(),
                drivers.clone(),
                stop.clone(),
            );
            tokio::spawn(async move {
                if let Err(error) = serving.await {
                    tracing::error!(error = %format!("{error:#}"), "the agent endpoint stopped");
                }
            });
        }
        let (pods_client, pods_stop, pod_hosts) = (client.clone(), stop.clone(), names.clone());
        tokio::spawn(async move {
            if let Err(error) = pods::run(pods_client, pod_hosts, drivers.pods, pods_stop).await {
                tracing::error!(error = %format!("{error:#}"), "running pods stopped");
            }
        });
        if let Some(config) = drivers.node_ports.clone() {
            let (client, stop, hosts) = (client.clone(), stop.clone(), names.clone());
            let driver = drivers.load_balancers.clone();
            tokio::spawn(async move {
                if let Err(error) = nodeports::run(client, hosts, config, driver, stop).await {
                    tracing::error!(error = %format!("{error:#}"), "serving node ports stopped");
                }
            });
        }
        let (lbs_client, lbs_stop, lb_hosts) = (client.clone(), stop.clone(), names.clone());
        let (lbs_driver, lbs_network) = (drivers.load_balancers.clone(), drivers.network.clone());
        tokio::spawn(async move {
            if let Err(error) =
                loadbalancers::run(lbs_client, lb_hosts, lbs_driver, lbs_network, lbs_stop).await
            {
                tracing::error!(error = %format!("{error:#}"), "running load balancers stopped");
            }
        });
        let (vms_client, vms_stop) = (client.clone(), stop.clone());
        tokio::spawn(async move {
            if let Err(error) =
                vms::run(vms_client, names, drivers.vms, drivers.network, vms_stop).await
            {
                tracing::error!(error = %format!("{error:#}"), "running VMs stopped");
            }
        });
    }
    let pause = interval / u32::try_from(hosts.len().max(1)).unwrap_or(u32::MAX);
    loop {
        for host in &hosts {
            if let Err(error) = heartbeat(&client, &host.name).await {
                tracing::warn!(host = %host.name, error = %format!("{error:#}"), "heartbeat failed");
                if let Err(error) = register(&client, host).await {
                    tracing::warn!(host = %host.name, error = %format!("{error:#}"), "registration failed");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                _ = stop.changed() => return Ok(()),
            }
        }
    }
}

/// Removes a workload its driver has stopped, for good: a delete with no grace period,
/// only of this very object (by uid); one already gone is fine.
pub(crate) async fn remove_stopped<K>(api: &Api<K>, name: &str, uid: &str) -> anyhow::Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let params = kube::api::DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(kube::api::Preconditions {
            uid: Some(uid.to_owned()),
            resource_version: None,
        }),
        ..kube::api::DeleteParams::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// Now, as Kubernetes writes times (`2026-01-02T03:04:05.000000Z` for MicroTime).
fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S.%6fZ")
        .to_string()
}
