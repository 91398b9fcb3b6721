//! What Nova tells of its hosts: hypervisors (`/os-hypervisors`: the Nodes, with the
//! capacity and use of their resource providers), availability zones
//! (`/os-availability-zone`: the Nodes' `topology.kubernetes.io/zone` labels, `nova` for
//! the rest) and the caller's absolute limits (`/limits`, from its quotas).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::{Extension, Json};
use ronghe_apiserver::auth::User;
use serde_json::{Value, json};

use super::{Caller, DEFAULT_ZONE, Microversion, engine_fault, not_found, same_uid, uid_of};
use crate::OpenStack;
use crate::fault::FaultResult;
use crate::placement::model::Provider;

/// A host as the compute API sees it.
struct Hypervisor {
    node: Value,
    provider: Option<Provider>,
    /// VMs placed on it.
    running_vms: usize,
}

impl Hypervisor {
    fn name(&self) -> &str {
        self.node["metadata"]["name"].as_str().unwrap_or_default()
    }

    fn up(&self) -> bool {
        self.node["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    }

    fn zone(&self) -> &str {
        self.node["metadata"]["labels"]["topology.kubernetes.io/zone"]
            .as_str()
            .unwrap_or(DEFAULT_ZONE)
    }

    fn address(&self) -> &str {
        self.node["status"]["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["type"] == "InternalIP")
            .and_then(|a| a["address"].as_str())
            .unwrap_or_default()
    }

    /// Before 2.53, hypervisor ids were integers: a stable one from the uid.
    fn id(&self, version: Microversion) -> Value {
        let uid = uid_of(&self.node);
        if version.at_least(53) {
            return json!(uid);
        }
        let number = uuid::Uuid::try_parse(uid)
            .map(|u| u.as_u128() as u32 & 0x7fff_ffff)
            .unwrap_or(0);
        json!(number)
    }

    fn brief(&self, version: Microversion) -> Value {
        let disabled = self.node["spec"]["unschedulable"]
            .as_bool()
            .unwrap_or(false);
        json!({
            "id": self.id(version),
            "hypervisor_hostname": self.name(),
            "state": if self.up() { "up" } else { "down" },
            "status": if disabled { "disabled" } else { "enabled" },
        })
    }

    fn detail(&self, version: Microversion) -> Value {
        let mut view = self.brief(version);
        view["hypervisor_type"] = json!("QEMU");
        view["hypervisor_version"] = json!(10_000_000);
        view["host_ip"] = json!(self.address());
        view["service"] = json!({
            "host": self.name(),
            "id": self.id(version),
            "disabled_reason": Value::Null,
        });
        if version.at_least(88) {
            view["uptime"] = Value::Null;
            return view;
        }
        let total = |class: &str| -> i64 {
            self.provider
                .as_ref()
                .and_then(|p| p.inventories.get(class))
                .map_or(0, |i| i.total)
        };
        let used =
            |class: &str| -> i64 { self.provider.as_ref().map_or(0, |p| p.used_units(class)) };
        let (vcpus, memory, disk) = (total("VCPU"), total("MEMORY_MB"), total("DISK_GB"));
        view["vcpus"] = json!(vcpus);
        view["memory_mb"] = json!(memory);
        view["local_gb"] = json!(disk);
        view["vcpus_used"] = json!(used("VCPU"));
        view["memory_mb_used"] = json!(used("MEMORY_MB"));
        view["local_gb_used"] = json!(used("DISK_GB"));
        view["free_ram_mb"] = json!(memory - used("MEMORY_MB"));
        view["free_disk_gb"] = json!(disk - used("DISK_GB"));
        view["disk_available_least"] = json!(disk - used("DISK_GB"));
        view["current_workload"] = json!(0);
        view["running_vms"] = json!(self.running_vms);
        let info = json!({
            "arch": self.node["status"]["nodeInfo"]["architecture"].as_str().unwrap_or("x86_64"),
            "model": "",
            "vendor": "",
            "features": self.provider.as_ref().map(|p| p.traits.iter().cloned().collect::<Vec<_>>()).unwrap_or_default(),
            "topology": {"cores": vcpus, "threads": 1, "sockets": 1},
        });
        // A JSON string before 2.28, an object from then on.
        view["cpu_info"] = if version.at_least(28) {
            info
        } else {
            json!(info.to_string())
        };
        view
    }
}

async fn hypervisors_of(state: &OpenStack) -> FaultResult<Vec<Hypervisor>> {
    let nodes = state.engine.kind("v1", "Node").map_err(engine_fault)?;
    let providers = state
        .engine
        .kind("placement.ronghe.io/v1", "ResourceProvider")
        .map_err(engine_fault)?;
    let vms = super::kind(state, "VirtualMachine")?;
    let mut providers: HashMap<String, Provider> = super::list_all(state, &providers, None)
        .await?
        .iter()
        .filter_map(Provider::from_object)
        .map(|p| (p.object_name.clone(), p))
        .collect();
    let mut placed: BTreeMap<String, usize> = BTreeMap::new();
    for vm in super::list_all(state, &vms, None).await? {
        if let Some(host) = vm["status"]["host"].as_str().filter(|h| !h.is_empty()) {
            *placed.entry(host.to_owned()).or_default() += 1;
        }
    }
    let mut hypervisors: Vec<Hypervisor> = super::list_all(state, &nodes, None)
        .await?
        .into_iter()
        .map(|node| {
            let name = node["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            Hypervisor {
                provider: providers.remove(&name),
                running_vms: placed.get(&name).copied().unwrap_or(0),
                node,
            }
        })
        .collect();
    hypervisors.sort_by(|a, b| a.name().cmp(b.name()));
    Ok(hypervisors)
}

/// `GET /os-hypervisors` (admins).
pub async fn hypervisors(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Extension(version): Extension<Microversion>,
) -> FaultResult<Json<Value>> {
    Caller::of(&user)?.allow("os_compute_api:os-hypervisors:list")?;
    let views: Vec<Value> = hypervisors_of(&state)
        .await?
        .iter()
        .map(|h| h.brief(version))
        .collect();
    Ok(Json(json!({"hypervisors": views})))
}

/// `GET /os-hypervisors/detail` (admins).
pub async fn hypervisors_detail(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Extension(version): Extension<Microversion>,
) -> FaultResult<Json<Value>> {
    Caller::of(&user)?.allow("os_compute_api:os-hypervisors:list-detail")?;
    let views: Vec<Value> = hypervisors_of(&state)
        .await?
        .iter()
        .map(|h| h.detail(version))
        .collect();
    Ok(Json(json!({"hypervisors": views})))
}

/// `GET /os-hypervisors/{id}` (admins): by id (or name, which Nova also finds).
pub async fn hypervisor(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Extension(version): Extension<Microversion>,
    Path(id): Path<String>,
) -> FaultResult<Json<Value>> {
    Caller::of(&user)?.allow("os_compute_api:os-hypervisors:show")?;
    let found = hypervisors_of(&state)
        .await?
        .into_iter()
        .find(|h| same_uid(&id, uid_of(&h.node)) || h.name() == id || h.id(version) == id.as_str());
    match found {
        Some(hypervisor) => Ok(Json(json!({"hypervisor": hypervisor.detail(version)}))),
        None => Err(not_found(format!(
            "Hypervisor with ID {id} could not be found."
        ))),
    }
}

/// `GET /os-availability-zone`: the zones with hosts, each available if one of its hosts
/// is up.
pub async fn availability_zones(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
) -> FaultResult<Json<Value>> {
    Caller::of(&user)?.allow("os_compute_api:os-availability-zone:list")?;
    let mut zones: BTreeMap<String, bool> = BTreeMap::new();
    for hypervisor in hypervisors_of(&state).await? {
        *zones.entry(hypervisor.zone().to_owned()).or_default() |= hypervisor.up();
    }
    let views: Vec<Value> = zones
        .iter()
        .map(|(zone, available)| {
            json!({"zoneName": zone, "zoneState": {"available": available}, "hosts": null})
        })
        .collect();
    Ok(Json(json!({"availabilityZoneInfo": views})))
}

/// `GET /os-availability-zone/detail` (admins): with the hosts of each zone.
pub async fn availability_zones_detail(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
) -> FaultResult<Json<Value>> {
    Caller::of(&user)?.allow("os_compute_api:os-availability-zone:detail")?;
    let mut zones: BTreeMap<String, (bool, serde_json::Map<String, Value>)> = BTreeMap::new();
    for hypervisor in hypervisors_of(&state).await? {
        let entry = zones.entry(hypervisor.zone().to_owned()).or_default();
        entry.0 |= hypervisor.up();
        entry.1.insert(
            hypervisor.name().to_owned(),
            json!({"nova-compute": {
                "available": hypervisor.up(),
                "active": true,
                "updated_at": Value::Null,
            }}),
        );
    }
    let views: Vec<Value> = zones
        .into_iter()
        .map(|(zone, (available, hosts))| {
            json!({"zoneName": zone, "zoneState": {"available": available}, "hosts": hosts})
        })
        .collect();
    Ok(Json(json!({"availabilityZoneInfo": views})))
}

/// `GET /limits`: the project's absolute compute limits and use (-1: unlimited).
pub async fn limits(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
) -> FaultResult<Json<Value>> {
    let caller = Caller::of(&user)?;
    caller.allow("os_compute_api:limits")?;
    let namespace = caller.namespace()?;
    let absolute = crate::quota::compute_limits(&state, namespace)
        .await
        .map_err(engine_fault)?;
    Ok(Json(json!({"limits": {"rate": [], "absolute": absolute}})))
}
