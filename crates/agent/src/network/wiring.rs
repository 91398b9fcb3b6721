//! The wiring loop of one host: after every change of the objects it watches (and every
//! [`RESYNC`]), it computes the host's plan and has the host-network driver apply it, then
//! binds the ports of the workloads placed here to this host (as nova-compute binds
//! Neutron ports), reports the wired ones `ACTIVE` and publishes what is wired for the
//! drivers waiting on it ([`Wiring`] is their [`WorkloadNetwork`]).
//!
//! Which ports are wired here is read from the objects, never remembered only in memory:
//! the ports of every VM whose `status.host` is this host get TAP devices, and the ports
//! of every pod plugged in here (whose network namespace still exists) get veths. So after
//! an agent restart the first apply, made only once every watch has listed, finds the
//! VMs' wiring as it should be and leaves it (and their traffic) alone.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use ronghe_api_types::network::{self as net, PortSpec, PortStatus, owner, spec_of, status_of};
use ronghe_hostnet::{Applied, Attachment, HostNetwork, names};
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};

use super::dns::{self, DnsIndex, DnsObjects, Resolvers};
use super::metadata::MetadataIndex;
use super::objects::{Cluster, Objects};
use super::plan::{self, Local};
use super::servers::{self, ServiceServers};
use super::{ClusterDns, PodNetwork, VmNic, WorkloadNetwork, name, namespace, uid};
use crate::vms::VmSpec;

/// How often the plan is applied again with nothing changed (drift repair).
pub const RESYNC: Duration = Duration::from_secs(30);
/// How long a burst of changes may take to land before the next pass.
const DEBOUNCE: Duration = Duration::from_millis(50);
/// How long a pass that failed waits before the next one.
const RETRY: Duration = Duration::from_secs(2);
/// How long a workload waits for its ports to be made, bound and wired before its driver
/// is told it failed (and tries again).
const ATTACH_TIMEOUT: Duration = Duration::from_secs(60);
/// Port writes in flight at once.
const WRITE_CONCURRENCY: usize = 16;
/// What the agent writes as `binding:vif_type`: the port is plugged into a Linux bridge.
const VIF_TYPE: &str = "bridge";

/// What the wiring loop of a host needs.
pub struct WiringConfig {
    pub host: String,
    /// Where other hosts send this host's VXLAN traffic.
    pub tunnel_ip: Option<Ipv4Addr>,
    /// Flat physical networks this host has: name → interface.
    pub physical: BTreeMap<String, String>,
    pub driver: Arc<dyn HostNetwork>,
}

/// A host's network, kept by its wiring loop; see the module documentation.
pub struct Wiring {
    shared: Arc<Shared>,
}

struct Shared {
    config: WiringConfig,
    client: kube::Client,
    objects: Objects,
    /// Pods plugged in here, by uid, with their network namespace.
    pods: Mutex<HashMap<String, PathBuf>>,
    changed: Arc<Notify>,
    wired: watch::Sender<Arc<Wired>>,
    /// The metadata and DNS servers of the networks served here.
    servers: ServiceServers,
}

/// What the last pass left wired, for the drivers waiting on it.
#[derive(Clone, Debug, Default)]
struct Wired {
    /// The ports of the workloads placed here, by port uid.
    ports: HashMap<String, WiredPort>,
}

#[derive(Clone, Debug)]
struct WiredPort {
    /// The workload's uid.
    device_id: String,
    uid: String,
    name: String,
    nic_index: usize,
    mac: String,
    ips: Vec<IpAddr>,
    /// Bound to this host (so the other hosts send its traffic here).
    bound: bool,
    /// Its device is up on the bridge (and, for a pod, configured in its netns).
    ready: bool,
    error: Option<String>,
    /// The cluster resolver for a pod on it.
    dns: Option<ClusterDns>,
}

impl Wiring {
    /// Starts the host's watches and wiring loop, until `stop` flips. The loop's first
    /// pass waits until every watch has listed.
    pub fn start(
        client: kube::Client,
        config: WiringConfig,
        stop: watch::Receiver<bool>,
    ) -> Wiring {
        let changed = Arc::new(Notify::new());
        let objects = Objects::start(&client, changed.clone(), &stop);
        let shared = Arc::new(Shared {
            config,
            client,
            objects,
            pods: Mutex::new(HashMap::new()),
            changed,
            wired: watch::Sender::new(Arc::new(Wired::default())),
            servers: ServiceServers::new(),
        });
        tokio::spawn(run(shared.clone(), stop));
        Wiring { shared }
    }

    /// Plugs the ports of device `uid` (a pod, a load balancer) into `netns`; returns them
    /// once wired, in NIC order.
    async fn attach_ports(&self, uid: &str, netns: &Path) -> anyhow::Result<Vec<WiredPort>> {
        let uid = uid.to_owned();
        self.shared
            .pods
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(uid.clone(), netns.to_owned());
        self.shared.changed.notify_one();
        self.wait_for(|wired| wired_ports(wired, &uid, 1))
            .await
            .map_err(|missing| anyhow::anyhow!("the network is not ready: {missing}"))
    }

    /// Waits until `check` finds what it needs in what is wired, or [`ATTACH_TIMEOUT`]
    /// passes (then it fails saying what was still missing).
    async fn wait_for<T>(&self, check: impl Fn(&Wired) -> Result<T, String>) -> anyhow::Result<T> {
        let mut wired = self.shared.wired.subscribe();
        let deadline = tokio::time::Instant::now() + ATTACH_TIMEOUT;
        loop {
            let missing = match check(&wired.borrow_and_update()) {
                Ok(found) => return Ok(found),
                Err(missing) => missing,
            };
            match tokio::time::timeout_at(deadline, wired.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => anyhow::bail!("the host network stopped"),
                Err(_) => anyhow::bail!("{missing}"),
            }
        }
    }
}

/// The ports of workload `uid` once each is bound here and wired, by NIC index.
fn wired_ports(wired: &Wired, uid: &str, expected: usize) -> Result<Vec<WiredPort>, String> {
    let mut ports: Vec<WiredPort> = wired
        .ports
        .values()
        .filter(|port| port.device_id == uid)
        .cloned()
        .collect();
    if ports.is_empty() || ports.len() < expected {
        return Err(format!(
            "{} of its {} port(s) exist yet",
            ports.len(),
            expected.max(1)
        ));
    }
    ports.sort_by(|a, b| (a.nic_index, &a.name).cmp(&(b.nic_index, &b.name)));
    for port in &ports {
        if !port.bound {
            return Err(format!("port {} is not bound to this host yet", port.name));
        }
        if !port.ready {
            return Err(match &port.error {
                Some(error) => format!("port {} could not be wired: {error}", port.name),
                None => format!("port {} is not wired yet", port.name),
            });
        }
    }
    Ok(ports)
}

#[async_trait::async_trait]
impl WorkloadNetwork for Wiring {
    async fn attach_pod(&self, pod: &Pod, netns: &Path) -> anyhow::Result<PodNetwork> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let ports = self.attach_ports(&uid, netns).await?;
        Ok(PodNetwork {
            dns: ports.first().and_then(|port| port.dns.clone()),
            ips: ports.into_iter().flat_map(|port| port.ips).collect(),
        })
    }

    async fn detach_pod(&self, uid: &str) {
        self.detach_device(uid).await;
    }

    async fn attach_device(&self, uid: &str, netns: &Path) -> anyhow::Result<Vec<IpAddr>> {
        let ports = self.attach_ports(uid, netns).await?;
        Ok(ports.into_iter().flat_map(|port| port.ips).collect())
    }

    async fn detach_device(&self, uid: &str) {
        let removed = self
            .shared
            .pods
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(uid)
            .is_some();
        if removed {
            self.shared.changed.notify_one();
        }
    }

    async fn vm_nics(&self, vm: &VmSpec) -> anyhow::Result<Vec<VmNic>> {
        if vm.nic_count == 0 {
            return Ok(Vec::new());
        }
        self.shared.changed.notify_one();
        let ports = self
            .wait_for(|wired| wired_ports(wired, &vm.uid, vm.nic_count))
            .await
            .map_err(|missing| anyhow::anyhow!("the VM's network is not ready: {missing}"))?;
        Ok(ports
            .into_iter()
            .map(|port| VmNic {
                tap: names::tap(&port.uid),
                mac: port.mac,
            })
            .collect())
    }
}

async fn run(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    tokio::select! {
        ready = shared.objects.ready() => if let Err(error) = ready {
            tracing::error!(error = %format!("{error:#}"), "the host network's watches did not start");
            return;
        },
        _ = stop.changed() => return,
    }
    tracing::info!(host = %shared.config.host, "host network: watching; wiring");
    let mut first = true;
    loop {
        let wait = match pass(&shared, first).await {
            Ok(()) => {
                first = false;
                RESYNC
            }
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), "applying the host network failed; retrying");
                RETRY
            }
        };
        tokio::select! {
            () = shared.changed.notified() => {}
            () = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
        // Let a burst of changes land before the next pass.
        tokio::time::sleep(DEBOUNCE).await;
    }
}

/// One pass: plan, apply, publish, then bind and report. The first pass says what it found
/// to change (after an agent restart: nothing, when the host was left as it was).
async fn pass(shared: &Shared, first: bool) -> anyhow::Result<()> {
    let cluster = shared.objects.cluster();
    let local = shared.local(&cluster);
    let plan = plan::host_plan(&cluster.plan, &local);
    let applied = shared.config.driver.apply(&plan).await?;
    if first {
        let changed: Vec<String> = applied
            .changes
            .iter()
            .map(|change| format!("{:?} {}", change.action, change.object))
            .collect();
        tracing::info!(
            changes = changed.len(),
            ?changed,
            failures = ?applied.failures,
            "host network: first pass applied"
        );
    } else if !applied.unchanged() || !applied.failures.is_empty() {
        tracing::info!(
            changes = applied.changes.len(),
            failures = ?applied.failures,
            "host network applied"
        );
    }
    let wired = shared.wired_state(&cluster, &local, &applied);
    shared.wired.send_replace(Arc::new(wired));
    let dns = DnsIndex::build(
        DnsObjects {
            networks: &cluster.plan.networks,
            ports: &cluster.plan.ports,
            vms: &cluster.vms,
            services: &cluster.services,
            endpoint_slices: &cluster.endpoint_slices,
        },
        servers::host_upstreams(),
    );
    let metadata = MetadataIndex::build(
        &cluster.plan.ports,
        &cluster.vms,
        &cluster.keypairs,
        &cluster.plan.floating_ips,
    );
    shared.servers.publish(metadata, dns);
    shared
        .servers
        .follow(shared.config.driver.as_ref(), &plan)
        .await;
    shared.write_ports(&cluster, &local, &plan, &applied).await;
    Ok(())
}

impl Shared {
    /// What only this host knows: the ports of its workloads and how each is attached.
    fn local(&self, cluster: &Cluster) -> Local {
        let host = &self.config.host;
        let vms: HashMap<&str, &Value> = cluster
            .vms
            .iter()
            .filter(|vm| vm.pointer("/status/host").and_then(Value::as_str) == Some(host))
            .map(|vm| (uid(vm), vm))
            .collect();
        let pods: HashMap<String, PathBuf> = self
            .pods
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            // A namespace gone means the pod is gone, whether or not it said so.
            .filter(|(_, netns)| netns.exists())
            .map(|(uid, netns)| (uid.clone(), netns.clone()))
            .collect();
        let mut local = Local {
            host: host.clone(),
            tunnel_ip: self.config.tunnel_ip,
            physical: self.config.physical.clone(),
            ..Local::default()
        };
        let mut pod_ports: BTreeMap<(&str, &str), &Value> = BTreeMap::new();
        for port in &cluster.plan.ports {
            let spec: PortSpec = spec_of(port);
            if spec.device_owner == owner::VM
                && let Some(vm) = vms.get(spec.device_id.as_str())
            {
                let port_uid = uid(port).to_owned();
                local.attachments.insert(
                    port_uid.clone(),
                    Attachment::Tap {
                        name: names::tap(&port_uid),
                    },
                );
                if let Some(hostname) = dns::hostname_of(&spec, Some(vm)) {
                    local.hostnames.insert(port_uid, hostname);
                }
            } else if (spec.device_owner == owner::POD || spec.device_owner == owner::LOAD_BALANCER)
                && pods.contains_key(spec.device_id.as_str())
            {
                pod_ports.insert((uid(port), name(port)), port);
            }
        }
        // A pod's ports are eth0, eth1 ... in the order of their names.
        let mut per_pod: HashMap<String, usize> = HashMap::new();
        let mut ordered: Vec<&Value> = pod_ports.into_values().collect();
        ordered.sort_by_key(|port| name(port));
        for port in ordered {
            let spec: PortSpec = spec_of(port);
            let Some(netns) = pods.get(&spec.device_id) else {
                continue;
            };
            let index = per_pod.entry(spec.device_id.clone()).or_insert(0);
            local.attachments.insert(
                uid(port).to_owned(),
                Attachment::Veth {
                    netns: netns.clone(),
                    ifname: format!("eth{index}"),
                },
            );
            *index += 1;
        }
        local
    }

    fn wired_state(&self, cluster: &Cluster, local: &Local, applied: &Applied) -> Wired {
        let resolvers = Resolvers::build(&cluster.plan.networks, &cluster.plan.ports);
        let ports = cluster
            .plan
            .ports
            .iter()
            .filter(|port| local.attachments.contains_key(uid(port)))
            .map(|port| {
                let spec: PortSpec = spec_of(port);
                let readiness = applied.ports.get(uid(port));
                let nic_index = port
                    .pointer("/metadata/annotations")
                    .and_then(|a| a.get(net::annotation::NIC_INDEX))
                    .and_then(Value::as_str)
                    .and_then(|index| index.parse().ok())
                    .unwrap_or(0);
                let wired = WiredPort {
                    device_id: spec.device_id.clone(),
                    uid: uid(port).to_owned(),
                    name: name(port).to_owned(),
                    nic_index,
                    mac: spec.mac_address.clone(),
                    ips: spec
                        .fixed_ips
                        .iter()
                        .filter_map(|ip| ip.ip_address.parse().ok())
                        .collect(),
                    bound: spec.binding_host_id == self.config.host,
                    ready: readiness.is_some_and(|r| r.ready),
                    error: readiness.and_then(|r| r.error.clone()),
                    dns: (spec.device_owner == owner::POD)
                        .then(|| resolvers.for_pod(&spec, namespace(port)))
                        .flatten(),
                };
                (uid(port).to_owned(), wired)
            })
            .collect();
        Wired { ports }
    }

    /// Binds this host's workloads' ports here and brings each port's status in step:
    /// `ACTIVE` once wired (and a hosted router's ports once the router is set up), `DOWN`
    /// for a port bound here whose workload is gone.
    async fn write_ports(
        &self,
        cluster: &Cluster,
        local: &Local,
        plan: &ronghe_hostnet::HostPlan,
        applied: &Applied,
    ) {
        let host = &self.config.host;
        let hosted: HashMap<&str, bool> = plan
            .routers
            .iter()
            .map(|router| {
                (
                    router.id.as_str(),
                    !applied.failures.contains_key(&router.id),
                )
            })
            .collect();
        let mut writes = Vec::new();
        for port in &cluster.plan.ports {
            let spec: PortSpec = spec_of(port);
            let status: PortStatus = status_of(port);
            let attached = local.attachments.contains_key(uid(port));
            if attached && spec.binding_host_id != *host {
                writes.push((port, Write::Bind));
                continue;
            }
            let wanted = if attached {
                applied
                    .ports
                    .get(uid(port))
                    .is_some_and(|r| r.ready)
                    .then_some("ACTIVE")
            } else if spec.device_owner.starts_with("network:router") {
                hosted
                    .get(spec.device_id.as_str())
                    .map(|up| if *up { "ACTIVE" } else { "DOWN" })
            } else if spec.binding_host_id == *host
                && (spec.device_owner == owner::POD || spec.device_owner == owner::VM)
            {
                Some("DOWN")
            } else {
                None
            };
            if let Some(wanted) = wanted
                && status.status != wanted
            {
                writes.push((port, Write::Status(wanted)));
            }
        }
        futures::stream::iter(writes)
            .for_each_concurrent(WRITE_CONCURRENCY, |(port, write)| async move {
                if let Err(error) = self.write_port(port, write).await {
                    tracing::warn!(port = %name(port), %error, "updating a port failed; trying again at the next pass");
                }
            })
            .await;
    }

    async fn write_port(&self, port: &Value, write: Write) -> Result<(), kube::Error> {
        let resource = super::objects::port_resource();
        let namespace = port
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), namespace, &resource);
        let params = PatchParams::default();
        match write {
            Write::Bind => {
                let patch = json!({"spec": {"bindingHostId": self.config.host}});
                api.patch(name(port), &params, &Patch::Merge(patch)).await?;
            }
            Write::Status(status) => {
                let vif_type = if status == "ACTIVE" {
                    json!(VIF_TYPE)
                } else {
                    Value::Null
                };
                let patch = json!({"status": {"status": status, "vifType": vif_type}});
                api.patch_status(name(port), &params, &Patch::Merge(patch))
                    .await?;
            }
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug)]
enum Write {
    Bind,
    Status(&'static str),
}
