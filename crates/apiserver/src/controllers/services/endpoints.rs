//! The endpoints of a Service: the pods and VMs of its namespace whose labels its selector
//! matches, each with its address, readiness and the target port of each service port
//! (a named target port is looked up in the pod's container ports; VMs take numbers
//! only), written as the Service's Endpoints and EndpointSlices. A Service without a
//! selector is left alone: its endpoints are the user's to write.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};

use ronghe_api_types::network::PortSpec;
use serde_json::{Value, json};

use super::World;
use crate::controllers::replicaset::pods;
use crate::engine::{Engine, ListOptions, Selectors, Target, WriteOptions};
use crate::error::ApiResult;
use crate::kinds::discovery::{MANAGED_BY_LABEL, SERVICE_NAME_LABEL};
use crate::object;

/// What marks the EndpointSlices this controller writes.
pub const MANAGED_BY: &str = "services.ronghe.io";

/// One pod or VM behind a Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend {
    pub ip: String,
    pub ready: bool,
    pub terminating: bool,
    pub node: Option<String>,
    pub kind: &'static str,
    pub name: String,
    pub uid: String,
    pub hostname: Option<String>,
    /// Per service port (in the Service's order), the port on this backend.
    pub ports: Vec<Option<u16>>,
}

/// The Service's selector; `None` when it has none (its endpoints are not managed).
fn selector(service: &Value) -> Option<BTreeMap<String, String>> {
    let selector: BTreeMap<String, String> = service["spec"]["selector"]
        .as_object()?
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect();
    (!selector.is_empty()).then_some(selector)
}

fn matches(selector: &BTreeMap<String, String>, object: &Value) -> bool {
    let labels = object::labels(object);
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The port a service port's `targetPort` names on a pod (`None` when a named port is not
/// among its containers' ports).
fn pod_port(target: &Value, pod: Option<&Value>) -> Option<u16> {
    match target {
        Value::Number(number) => number.as_u64().and_then(|n| u16::try_from(n).ok()),
        Value::String(name) => pod?["spec"]["containers"]
            .as_array()?
            .iter()
            .flat_map(|c| c["ports"].as_array().into_iter().flatten())
            .find(|p| p["name"].as_str() == Some(name.as_str()))
            .and_then(|p| p["containerPort"].as_u64())
            .and_then(|n| u16::try_from(n).ok()),
        _ => None,
    }
}

fn service_ports(service: &Value) -> &[Value] {
    service["spec"]["ports"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The backends of a Service with a selector (`None` without one), pods then VMs, each
/// in name order.
pub fn backends(service: &Value, world: &World) -> Option<Vec<Backend>> {
    let selector = selector(service)?;
    let namespace = object::namespace(service);
    let ports = service_ports(service);
    let in_scope = |o: &&Value| object::namespace(o) == namespace && matches(&selector, o);
    let mut found = Vec::new();
    for pod in world.pods.iter().filter(in_scope) {
        let phase = pod["status"]["phase"].as_str().unwrap_or_default();
        let ip = pod["status"]["podIP"].as_str().unwrap_or_default();
        if ip.is_empty() || phase == "Succeeded" || phase == "Failed" {
            continue;
        }
        let terminating = object::deletion_timestamp(pod).is_some();
        let subdomain = pod["spec"]["subdomain"].as_str();
        found.push(Backend {
            ip: ip.to_owned(),
            ready: !terminating && pods::is_ready(pod),
            terminating,
            node: pod["spec"]["nodeName"].as_str().map(str::to_owned),
            kind: "Pod",
            name: object::name(pod).unwrap_or_default().to_owned(),
            uid: object::uid(pod).unwrap_or_default().to_owned(),
            hostname: pod["spec"]["hostname"]
                .as_str()
                .filter(|_| subdomain.is_some() && subdomain == object::name(service))
                .map(str::to_owned),
            ports: ports
                .iter()
                .map(|p| pod_port(&p["targetPort"], Some(pod)))
                .collect(),
        });
    }
    for vm in world.vms.iter().filter(in_scope) {
        let uid = object::uid(vm).unwrap_or_default();
        let Some(ip) = vm_address(uid, &world.ports) else {
            continue;
        };
        let terminating = object::deletion_timestamp(vm).is_some();
        found.push(Backend {
            ip,
            ready: !terminating && vm["status"]["status"].as_str() == Some("ACTIVE"),
            terminating,
            node: vm["status"]["host"].as_str().map(str::to_owned),
            kind: "VirtualMachine",
            name: object::name(vm).unwrap_or_default().to_owned(),
            uid: uid.to_owned(),
            hostname: None,
            ports: ports
                .iter()
                .map(|p| pod_port(&p["targetPort"], None))
                .collect(),
        });
    }
    Some(found)
}

/// A VM's address: the first IPv4 address of its first port (by NIC index).
fn vm_address(uid: &str, ports: &[Value]) -> Option<String> {
    let mut own: Vec<(&Value, PortSpec)> = ports
        .iter()
        .map(|p| (p, ronghe_api_types::network::spec_of::<PortSpec>(p)))
        .filter(|(_, spec)| spec.device_id == uid)
        .collect();
    own.sort_by_key(|(port, _)| {
        port["metadata"]["annotations"][super::super::ports::NIC_INDEX]
            .as_str()
            .and_then(|index| index.parse::<u32>().ok())
            .unwrap_or(u32::MAX)
    });
    own.iter()
        .flat_map(|(_, spec)| spec.fixed_ips.iter())
        .map(|f| f.ip_address.clone())
        .find(|ip| !ip.contains(':'))
}

/// Backends grouped by the ports they serve (a named target port may differ from pod to
/// pod), as Endpoints subsets and EndpointSlices group them.
fn groups<'a>(service: &Value, backends: &'a [Backend]) -> Vec<(Vec<Value>, Vec<&'a Backend>)> {
    let ports = service_ports(service);
    let mut groups: BTreeMap<String, (Vec<Value>, Vec<&Backend>)> = BTreeMap::new();
    for backend in backends {
        let key: Vec<Value> = ports
            .iter()
            .zip(&backend.ports)
            .filter_map(|(port, number)| {
                let mut entry = json!({
                    "port": (*number)?,
                    "protocol": port["protocol"].as_str().unwrap_or("TCP"),
                });
                if let Some(name) = port["name"].as_str().filter(|n| !n.is_empty()) {
                    entry["name"] = json!(name);
                }
                Some(entry)
            })
            .collect();
        let text = serde_json::to_string(&key).unwrap_or_default();
        groups
            .entry(text)
            .or_insert_with(|| (key, Vec::new()))
            .1
            .push(backend);
    }
    groups.into_values().collect()
}

/// An owner reference to the Service, so its endpoints go with it.
pub(super) fn owned_by(service: &Value) -> Value {
    json!([object::controller_reference("v1", "Service", service)])
}

fn target_ref(service: &Value, backend: &Backend) -> Value {
    let api_version = if backend.kind == "Pod" {
        "v1"
    } else {
        crate::kinds::compute::API_VERSION
    };
    json!({
        "kind": backend.kind,
        "apiVersion": api_version,
        "namespace": object::namespace(service),
        "name": backend.name,
        "uid": backend.uid,
    })
}

/// The Endpoints object of a Service with these backends.
pub fn endpoints_object(service: &Value, backends: &[Backend]) -> Value {
    let subsets: Vec<Value> = groups(service, backends)
        .into_iter()
        .map(|(ports, members)| {
            let address = |b: &&Backend| {
                let mut address = json!({"ip": b.ip, "targetRef": target_ref(service, b)});
                if let Some(node) = &b.node {
                    address["nodeName"] = json!(node);
                }
                if let Some(hostname) = &b.hostname {
                    address["hostname"] = json!(hostname);
                }
                address
            };
            let mut subset = json!({"ports": ports});
            let ready: Vec<Value> = members.iter().filter(|b| b.ready).map(address).collect();
            let not_ready: Vec<Value> = members.iter().filter(|b| !b.ready).map(address).collect();
            if !ready.is_empty() {
                subset["addresses"] = json!(ready);
            }
            if !not_ready.is_empty() {
                subset["notReadyAddresses"] = json!(not_ready);
            }
            subset
        })
        .collect();
    let mut endpoints = json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {
            "name": object::name(service),
            "namespace": object::namespace(service),
            "labels": object::labels(service),
            "ownerReferences": owned_by(service),
        },
    });
    if !subsets.is_empty() {
        endpoints["subsets"] = json!(subsets);
    }
    endpoints
}

/// The EndpointSlices of a Service with these backends: one per group of ports, named
/// after the Service and a digest of its ports.
pub fn slices(service: &Value, backends: &[Backend]) -> Vec<Value> {
    let name = object::name(service).unwrap_or_default();
    let mut groups = groups(service, backends);
    if groups.is_empty() {
        groups.push((Vec::new(), Vec::new()));
    }
    groups
        .into_iter()
        .map(|(ports, members)| {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            serde_json::to_string(&ports).unwrap_or_default().hash(&mut hasher);
            let digest = format!("{:08x}", hasher.finish() as u32);
            let endpoints: Vec<Value> = members
                .iter()
                .map(|b| {
                    let mut endpoint = json!({
                        "addresses": [b.ip],
                        "conditions": {"ready": b.ready, "serving": b.ready || b.terminating, "terminating": b.terminating},
                        "targetRef": target_ref(service, b),
                    });
                    if let Some(node) = &b.node {
                        endpoint["nodeName"] = json!(node);
                    }
                    if let Some(hostname) = &b.hostname {
                        endpoint["hostname"] = json!(hostname);
                    }
                    endpoint
                })
                .collect();
            let mut labels = object::labels(service);
            labels.insert(SERVICE_NAME_LABEL.into(), name.into());
            labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
            json!({
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": format!("{name}-{digest}"),
                    "namespace": object::namespace(service),
                    "labels": labels,
                    "ownerReferences": owned_by(service),
                },
                "addressType": "IPv4",
                "endpoints": endpoints,
                "ports": ports,
            })
        })
        .collect()
}

/// Creates `desired` or replaces what is stored when its content differs.
pub(super) async fn put(
    engine: &Engine,
    api_version: &str,
    kind: &str,
    desired: Value,
) -> ApiResult<()> {
    let kind = engine.kind(api_version, kind)?;
    let namespace = object::namespace(&desired).unwrap_or_default().to_owned();
    let name = object::name(&desired).unwrap_or_default().to_owned();
    match engine.get(&kind, Some(&namespace), &name).await {
        Ok(stored) => {
            let content = |o: &Value| {
                let mut o = o.clone();
                if let Some(root) = o.as_object_mut() {
                    root.remove("metadata");
                    root.remove("apiVersion");
                    root.remove("kind");
                }
                o
            };
            if content(&stored) == content(&desired)
                && object::labels(&stored) == object::labels(&desired)
            {
                return Ok(());
            }
            let mut replacement = desired;
            replacement["metadata"]["resourceVersion"] = json!(object::resource_version(&stored));
            if let Some(owners) = stored["metadata"].get("ownerReferences")
                && replacement["metadata"].get("ownerReferences").is_none()
            {
                replacement["metadata"]["ownerReferences"] = owners.clone();
            }
            engine
                .replace(
                    &kind,
                    Some(&namespace),
                    &name,
                    replacement,
                    Target::Main,
                    &WriteOptions::default(),
                )
                .await?;
        }
        Err(error) if error.code() == 404 => {
            engine
                .create(&kind, Some(&namespace), desired, &WriteOptions::default())
                .await?;
        }
        Err(error) => return Err(error),
    }
    Ok(())
}

/// Writes a Service's Endpoints and EndpointSlices (and deletes its slices of ports it
/// no longer has).
pub async fn write(
    engine: &Engine,
    service: &Value,
    backends: &Option<Vec<Backend>>,
) -> ApiResult<()> {
    let Some(backends) = backends else {
        return Ok(());
    };
    put(
        engine,
        "v1",
        "Endpoints",
        endpoints_object(service, backends),
    )
    .await?;
    let desired = slices(service, backends);
    let names: BTreeSet<&str> = desired.iter().filter_map(|s| object::name(s)).collect();
    let kind = engine.kind("discovery.k8s.io/v1", "EndpointSlice")?;
    let namespace = object::namespace(service).unwrap_or_default();
    let options = ListOptions {
        selectors: Selectors::parse(
            &kind,
            Some(&format!(
                "{SERVICE_NAME_LABEL}={},{MANAGED_BY_LABEL}={MANAGED_BY}",
                object::name(service).unwrap_or_default()
            )),
            None,
        )?,
        ..ListOptions::default()
    };
    for stale in engine.list(&kind, Some(namespace), &options).await?.items {
        let name = object::name(&stale).unwrap_or_default();
        if !names.contains(name) {
            crate::controllers::delete_if_present(engine, &kind, Some(namespace), name).await?;
        }
    }
    for slice in desired {
        put(engine, "discovery.k8s.io/v1", "EndpointSlice", slice).await?;
    }
    Ok(())
}
