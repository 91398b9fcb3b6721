//! The workload-ports controller (the job kuryr-kubernetes does for Kubernetes on
//! Neutron): every pod not on the host network gets a Port on its project's default
//! network, or on the network its `network.ronghe.io/network` annotation names, and every
//! VM a Port for each entry of `spec.networks` (or takes the port an entry names). A
//! workload's ports carry its uid as `deviceId` and in the `network.ronghe.io/device-id`
//! label, and (when made here) an ownerReference to it, so the garbage collector removes
//! them with it. Binding a port to a host is the host's agent's job, as nova-compute binds
//! Neutron ports; the agent then wires it and reports the pod's IP.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use ronghe_api_types::network::{self as net, PortSpec, annotation, label, owner};
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};

use crate::engine::{Engine, ListOptions, PatchKind, Target, WriteOptions};
use crate::error::ApiResult;
use crate::kinds::compute::VirtualMachineSpec;
use crate::kinds::network as kinds;
use crate::object;

/// How often a pass runs without a wake-up.
const RESYNC: Duration = Duration::from_secs(10);
/// How soon a workload whose port could not be made is tried again.
const RETRY: Duration = Duration::from_secs(2);
/// The annotation on a VM's port saying which of its `spec.networks` it is.
pub const NIC_INDEX: &str = annotation::NIC_INDEX;

pub(super) async fn run(engine: Engine, wake: Arc<Notify>, stop: watch::Receiver<bool>) {
    super::run_requeuing("workload ports", wake, stop, RESYNC, || {
        Box::pin(pass(&engine))
    })
    .await;
}

/// One workload needing ports.
struct Workload {
    api_version: &'static str,
    kind: &'static str,
    object: Value,
    owner_label: &'static str,
    /// (NIC index, network reference or a port to take, fixed IP asked for)
    nics: Vec<Nic>,
}

struct Nic {
    index: usize,
    network: Option<String>,
    port: Option<String>,
    fixed_ip: Option<String>,
}

pub(super) async fn pass(engine: &Engine) -> ApiResult<Option<Duration>> {
    let ports_kind = engine.kind(net::API_VERSION, "Port")?;
    let ports = engine
        .list(&ports_kind, None, &ListOptions::default())
        .await?
        .items;
    // The NIC indexes each workload already has a port for.
    let mut wired: HashMap<String, HashSet<usize>> = HashMap::new();
    for port in &ports {
        let spec: PortSpec = net::spec_of(port);
        if spec.device_id.is_empty() {
            continue;
        }
        let index = object::str_at(port, &["metadata", "annotations", NIC_INDEX])
            .and_then(|i| i.parse().ok())
            .unwrap_or(0);
        wired.entry(spec.device_id).or_default().insert(index);
    }
    let mut retry = None;
    if let Err(error) = dhcp_ports(engine, &ports).await {
        tracing::warn!(%error, "making networks' DHCP ports failed");
        retry = Some(RETRY);
    }
    for workload in workloads(engine).await? {
        let uid = object::uid(&workload.object).unwrap_or_default().to_owned();
        for nic in &workload.nics {
            if wired
                .get(&uid)
                .is_some_and(|have| have.contains(&nic.index))
            {
                continue;
            }
            if let Err(error) = make_port(engine, &workload, nic).await {
                tracing::warn!(
                    kind = workload.kind,
                    namespace = object::namespace(&workload.object),
                    name = object::name(&workload.object),
                    %error,
                    "giving a workload its port failed"
                );
                retry = Some(RETRY);
            }
        }
    }
    Ok(retry)
}

/// Every network with a DHCP-enabled subnet has one DHCP port (Neutron's
/// `network:dhcp` port) holding an address on each such subnet: the hosts answer DHCP and
/// metadata with its MAC and addresses. It belongs to the network, so it goes with it.
async fn dhcp_ports(engine: &Engine, ports: &[Value]) -> ApiResult<()> {
    let networks = engine.kind(net::API_VERSION, "Network")?;
    let subnets = engine.kind(net::API_VERSION, "Subnet")?;
    let ports_kind = engine.kind(net::API_VERSION, "Port")?;
    let all_subnets = engine
        .list(&subnets, None, &ListOptions::default())
        .await?
        .items;
    for network in engine
        .list(&networks, None, &ListOptions::default())
        .await?
        .items
    {
        if object::deletion_timestamp(&network).is_some() {
            continue;
        }
        let network_id = object::uid(&network).unwrap_or_default().to_owned();
        let namespace = object::namespace(&network).unwrap_or_default().to_owned();
        let wanted: Vec<String> = all_subnets
            .iter()
            .filter(|s| {
                let spec: net::SubnetSpec = net::spec_of(s);
                spec.network_id == network_id && spec.enable_dhcp && !spec.cidr.contains(':')
            })
            .filter_map(|s| object::uid(s).map(str::to_owned))
            .collect();
        let existing = ports.iter().find(|p| {
            let spec: PortSpec = net::spec_of(p);
            spec.network_id == network_id && spec.device_owner == owner::DHCP
        });
        match existing {
            None if wanted.is_empty() => {}
            None => {
                let fixed: Vec<Value> = wanted.iter().map(|s| json!({"subnetId": s})).collect();
                let body = json!({
                    "apiVersion": net::API_VERSION,
                    "kind": "Port",
                    "metadata": {
                        "generateName": "dhcp-",
                        "namespace": namespace,
                        "ownerReferences": [{
                            "apiVersion": net::API_VERSION,
                            "kind": "Network",
                            "name": object::name(&network).unwrap_or_default(),
                            "uid": network_id,
                        }],
                    },
                    "spec": {
                        "networkId": network_id,
                        "deviceOwner": owner::DHCP,
                        "deviceId": format!("dhcp-{network_id}"),
                        "fixedIps": fixed,
                        "portSecurityEnabled": false,
                        "securityGroups": [],
                    },
                });
                engine
                    .create(
                        &ports_kind,
                        Some(&namespace),
                        body,
                        &WriteOptions::default(),
                    )
                    .await?;
            }
            Some(port) => {
                // A subnet added later gets an address on it too; one deleted (or no longer
                // serving DHCP) gives its address back.
                let spec: PortSpec = net::spec_of(port);
                let missing: Vec<&String> = wanted
                    .iter()
                    .filter(|s| !spec.fixed_ips.iter().any(|f| &f.subnet_id == *s))
                    .collect();
                let stale = spec
                    .fixed_ips
                    .iter()
                    .any(|f| !wanted.contains(&f.subnet_id));
                if missing.is_empty() && !stale {
                    continue;
                }
                let mut fixed: Vec<Value> = spec
                    .fixed_ips
                    .iter()
                    .filter(|f| wanted.contains(&f.subnet_id))
                    .map(|f| json!({"subnetId": f.subnet_id, "ipAddress": f.ip_address}))
                    .collect();
                fixed.extend(missing.iter().map(|s| json!({"subnetId": s})));
                engine
                    .patch(
                        &ports_kind,
                        object::namespace(port),
                        object::name(port).unwrap_or_default(),
                        PatchKind::Merge,
                        json!({"spec": {"fixedIps": fixed}}),
                        Target::Main,
                        &WriteOptions::default(),
                    )
                    .await?;
            }
        }
    }
    Ok(())
}

async fn workloads(engine: &Engine) -> ApiResult<Vec<Workload>> {
    let mut out = Vec::new();
    let pods = engine.kind("v1", "Pod")?;
    for pod in engine
        .list(&pods, None, &ListOptions::default())
        .await?
        .items
    {
        let host_network = pod.pointer("/spec/hostNetwork").and_then(Value::as_bool) == Some(true);
        let finished = matches!(
            pod.pointer("/status/phase").and_then(Value::as_str),
            Some("Succeeded" | "Failed")
        );
        if host_network || finished || object::deletion_timestamp(&pod).is_some() {
            continue;
        }
        let network = object::str_at(&pod, &["metadata", "annotations", annotation::POD_NETWORK]);
        out.push(Workload {
            api_version: "v1",
            kind: "Pod",
            owner_label: owner::POD,
            nics: vec![Nic {
                index: 0,
                network,
                port: None,
                fixed_ip: None,
            }],
            object: pod,
        });
    }
    let vms = engine.kind(crate::kinds::compute::API_VERSION, "VirtualMachine")?;
    for vm in engine
        .list(&vms, None, &ListOptions::default())
        .await?
        .items
    {
        if object::deletion_timestamp(&vm).is_some() {
            continue;
        }
        let spec: VirtualMachineSpec =
            serde_json::from_value(vm["spec"].clone()).unwrap_or_default();
        let nics = spec
            .networks
            .into_iter()
            .enumerate()
            .map(|(index, nic)| Nic {
                index,
                network: nic.network,
                port: nic.port,
                fixed_ip: nic.fixed_ip,
            })
            .collect();
        out.push(Workload {
            api_version: crate::kinds::compute::API_VERSION,
            kind: "VirtualMachine",
            owner_label: owner::VM,
            nics,
            object: vm,
        });
    }
    Ok(out)
}

/// Makes the port of one NIC of a workload, or takes the port it names.
async fn make_port(engine: &Engine, workload: &Workload, nic: &Nic) -> ApiResult<()> {
    let namespace = object::namespace(&workload.object)
        .unwrap_or_default()
        .to_owned();
    let uid = object::uid(&workload.object).unwrap_or_default().to_owned();
    let name = object::name(&workload.object)
        .unwrap_or_default()
        .to_owned();
    let ports_kind = engine.kind(net::API_VERSION, "Port")?;
    if let Some(reference) = &nic.port {
        let port = kinds::resolve(engine, "Port", &namespace, reference, |_| false)
            .await?
            .ok_or_else(|| {
                crate::error::ApiError::bad_request(format!("Port {reference} could not be found."))
            })?;
        let patch = json!({
            "metadata": {
                "labels": {label::DEVICE_ID: uid},
                "annotations": {NIC_INDEX: nic.index.to_string()},
            },
            "spec": {"deviceId": uid, "deviceOwner": workload.owner_label},
        });
        engine
            .patch(
                &ports_kind,
                Some(&namespace),
                object::name(&port).unwrap_or_default(),
                PatchKind::Merge,
                patch,
                Target::Main,
                &WriteOptions::default(),
            )
            .await?;
        return Ok(());
    }
    let network = match nic.network.as_deref() {
        None | Some("") => kinds::default_network(engine, &namespace).await?,
        Some(reference) => match kinds::resolve(
            engine,
            "Network",
            &namespace,
            reference,
            kinds::network_is_public,
        )
        .await?
        {
            Some(network) => network,
            None if reference == "default" => kinds::default_network(engine, &namespace).await?,
            None => {
                return Err(crate::error::ApiError::bad_request(format!(
                    "Network {reference} could not be found."
                )));
            }
        },
    };
    let mut spec = json!({
        "name": name,
        "networkId": object::uid(&network).unwrap_or_default(),
        "deviceId": uid,
        "deviceOwner": workload.owner_label,
    });
    if let Some(address) = &nic.fixed_ip {
        spec["fixedIps"] = json!([{"ipAddress": address}]);
    }
    let body = json!({
        "apiVersion": net::API_VERSION,
        "kind": "Port",
        "metadata": {
            "generateName": format!("{}-", name.chars().take(200).collect::<String>()),
            "namespace": namespace,
            "labels": {label::DEVICE_ID: uid},
            "annotations": {NIC_INDEX: nic.index.to_string()},
            "ownerReferences": [{
                "apiVersion": workload.api_version,
                "kind": workload.kind,
                "name": name,
                "uid": uid,
                "blockOwnerDeletion": true,
            }],
        },
        "spec": spec,
    });
    engine
        .create(
            &ports_kind,
            Some(&namespace),
            body,
            &WriteOptions::default(),
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ronghe_store::MemoryStore;

    use super::*;

    async fn engine() -> Engine {
        let registry = Arc::new(crate::kinds::builtin_registry().expect("builtin kinds"));
        let engine = Engine::new(Arc::new(MemoryStore::new()), registry);
        let kind = engine.kind("v1", "Namespace").unwrap();
        engine
            .create(
                &kind,
                None,
                json!({"metadata": {"name": "a"}}),
                &WriteOptions::default(),
            )
            .await
            .unwrap();
        engine
    }

    async fn ports_of(engine: &Engine, uid: &str) -> Vec<Value> {
        let kind = engine.kind(net::API_VERSION, "Port").unwrap();
        engine
            .list(&kind, Some("a"), &ListOptions::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|p| p["spec"]["deviceId"] == uid)
            .collect()
    }

    #[tokio::test]
    async fn pods_and_vms_get_their_ports_once() {
        let engine = engine().await;
        let pods = engine.kind("v1", "Pod").unwrap();
        let pod = engine
            .create(
                &pods,
                Some("a"),
                json!({"metadata": {"name": "web"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
                &WriteOptions::default(),
            )
            .await
            .unwrap()
            .object;
        let host = engine
            .create(
                &pods,
                Some("a"),
                json!({"metadata": {"name": "host"}, "spec": {"hostNetwork": true, "containers": [{"name": "c", "image": "busybox"}]}}),
                &WriteOptions::default(),
            )
            .await
            .unwrap()
            .object;
        assert_eq!(pass(&engine).await.unwrap(), None);
        assert_eq!(pass(&engine).await.unwrap(), None);
        let uid = pod["metadata"]["uid"].as_str().unwrap();
        let ports = ports_of(&engine, uid).await;
        assert_eq!(ports.len(), 1, "one port, made once");
        let port = &ports[0];
        assert!(
            port["spec"]["fixedIps"][0]["ipAddress"]
                .as_str()
                .unwrap()
                .starts_with("10.0.")
        );
        assert_eq!(port["spec"]["deviceOwner"], owner::POD);
        assert_eq!(port["metadata"]["ownerReferences"][0]["uid"], uid);
        assert!(
            ports_of(&engine, host["metadata"]["uid"].as_str().unwrap())
                .await
                .is_empty()
        );
        let network_id = port["spec"]["networkId"].as_str().unwrap();
        let dhcp = ports_of(&engine, &format!("dhcp-{network_id}")).await;
        assert_eq!(dhcp.len(), 1, "the default network's DHCP port");
        assert_eq!(dhcp[0]["spec"]["deviceOwner"], owner::DHCP);
        assert_eq!(dhcp[0]["spec"]["fixedIps"].as_array().unwrap().len(), 1);

        // A VM on the default network and on a second one with a fixed address.
        let networks = engine.kind(net::API_VERSION, "Network").unwrap();
        engine
            .create(
                &networks,
                Some("a"),
                json!({"metadata": {"name": "back"}, "spec": {}}),
                &WriteOptions::default(),
            )
            .await
            .unwrap();
        let subnets = engine.kind(net::API_VERSION, "Subnet").unwrap();
        engine
            .create(&subnets, Some("a"), json!({"metadata": {"name": "back"}, "spec": {"networkId": "back", "cidr": "192.168.7.0/24"}}), &WriteOptions::default())
            .await
            .unwrap();
        let flavors = engine
            .kind(crate::kinds::compute::API_VERSION, "Flavor")
            .unwrap();
        engine
            .create(
                &flavors,
                None,
                json!({"metadata": {"name": "m1"}, "spec": {"vcpus": 1, "ram": 64}}),
                &WriteOptions::default(),
            )
            .await
            .unwrap();
        let vms = engine
            .kind(crate::kinds::compute::API_VERSION, "VirtualMachine")
            .unwrap();
        let vm = engine
            .create(
                &vms,
                Some("a"),
                json!({"metadata": {"name": "vm"}, "spec": {"flavorRef": "m1", "networks": [{"network": "default"}, {"network": "back", "fixedIp": "192.168.7.9"}]}}),
                &WriteOptions::default(),
            )
            .await
            .unwrap()
            .object;
        assert_eq!(pass(&engine).await.unwrap(), None);
        let mut ports = ports_of(&engine, vm["metadata"]["uid"].as_str().unwrap()).await;
        ports.sort_by_key(|p| {
            p["metadata"]["annotations"][NIC_INDEX]
                .as_str()
                .unwrap()
                .to_owned()
        });
        assert_eq!(ports.len(), 2);
        assert_eq!(ports[1]["spec"]["fixedIps"][0]["ipAddress"], "192.168.7.9");
        assert_eq!(
            ports[0]["spec"]["networkId"], port["spec"]["networkId"],
            "the default network, shared with the pod"
        );
    }
}
