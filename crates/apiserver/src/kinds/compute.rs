//! `compute.ronghe.io/v1`: Flavor (cluster-scoped: sizes of VMs, with extra specs such as
//! `resources:VGPU=1` and `trait:HW_CPU_X86_AVX2=required`), ServerGroup (a project's
//! affinity or anti-affinity policy) and VirtualMachine (a project's VM).
//!
//! A VirtualMachine names its flavor in `spec.flavorRef`; on create the server copies the
//! flavor into `spec.flavor`, as Nova embeds it in the instance, so the VM's size stays what
//! it was booted with (and quotas and the scheduler read it from the VM alone). `status`
//! holds Nova's states: `status` (BUILD, ACTIVE, SHUTOFF, ... ERROR), `vmState`,
//! `taskState`, `powerState`, the `host` it is placed on, and a `fault` when it failed.

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use ronghe_api_types::validation::FieldCause;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::identity::normalize_custom;
use crate::engine::Engine;
use crate::error::{ApiError, ApiResult};
use crate::object;
use crate::quota::{self, Usage};
use crate::registry::{Admission, Column, KindSpec, Scope, Subresources};

pub const GROUP: &str = "compute.ronghe.io";
pub const API_VERSION: &str = "compute.ronghe.io/v1";

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlavorSpec {
    pub vcpus: i64,
    /// MiB.
    pub ram: i64,
    /// GiB of root disk.
    #[serde(default)]
    pub disk: i64,
    #[serde(default)]
    pub ephemeral: i64,
    /// MiB.
    #[serde(default)]
    pub swap: i64,
    #[serde(default = "yes")]
    pub is_public: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra_specs: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerGroupSpec {
    /// `affinity`, `anti-affinity`, `soft-affinity` or `soft-anti-affinity`.
    pub policy: String,
    /// For anti-affinity: at most this many members per host (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_server_per_host: Option<u32>,
}

/// An SSH public key a user keeps to boot VMs with (Nova's keypair). Nova's keypairs
/// belong to a user; here they live in the project where they were made, and `userId` says
/// whose they are (names are unique per user and project).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeypairSpec {
    /// Nova's name of the keypair.
    pub name: String,
    /// The Keystone id of the user it belongs to.
    pub user_id: String,
    /// OpenSSH form (`ssh-ed25519 AAAA... comment`).
    pub public_key: String,
    /// MD5 of the key, colon separated, as Nova shows it.
    pub fingerprint: String,
    /// `ssh` or `x509`.
    #[serde(rename = "type", default = "ssh")]
    pub kind: String,
}

fn ssh() -> String {
    "ssh".into()
}

/// The flavor a VM was booted with.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlavorSnapshot {
    pub name: String,
    #[serde(flatten)]
    pub spec: FlavorSpec,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineSpec {
    pub flavor_ref: String,
    /// Filled in by the server from the flavor at create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flavor: Option<FlavorSnapshot>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_ref: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_name: Option<String>,
    /// A ServerGroup in the VM's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Whether the VM should run (stop and start flip it).
    #[serde(default = "yes")]
    pub running: bool,
    /// Whether a running VM should be paused (its vCPUs stopped, memory kept).
    #[serde(default, skip_serializing_if = "is_false")]
    pub paused: bool,
    /// Whether a running VM should be suspended (its state saved to disk, its process gone).
    #[serde(default, skip_serializing_if = "is_false")]
    pub suspended: bool,
    /// The latest reboot asked for; the agent reboots when it differs from
    /// `status.lastReboot`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reboot: Option<RebootRequest>,
    /// Its network interfaces, in order (none: the VM has no network, Nova's `--nic none`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<VmNetwork>,
}

/// One network interface of a VM: a new port on a network, or a port made beforehand.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VmNetwork {
    /// A network of the VM's project (uid or name) or a shared one; `default` with no such
    /// network names the project's default network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// A port of the VM's project (uid or name) the VM takes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    /// The address the new port asks for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_ip: Option<String>,
}

/// A reboot asked for: `SOFT` (ACPI shutdown, then boot again) or `HARD` (reset).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RebootRequest {
    #[serde(rename = "type")]
    pub kind: String,
    /// When it was asked for (RFC 3339): what tells one reboot from the next.
    pub requested_at: String,
}

fn is_false(value: &bool) -> bool {
    !value
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fault {
    pub code: i64,
    pub message: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
    pub created: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineStatus {
    /// Nova's `status`: BUILD, ACTIVE, SHUTOFF, PAUSED, SUSPENDED, ERROR, DELETED.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub vm_state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_state: Option<String>,
    /// 0 NOSTATE, 1 RUNNING, 3 PAUSED, 4 SHUTDOWN, 6 CRASHED, 7 SUSPENDED.
    #[serde(default)]
    pub power_state: i64,
    /// The host it is placed on.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<Fault>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launched_at: Option<String>,
    /// `spec.reboot.requestedAt` of the last reboot done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reboot: Option<String>,
}

pub(super) fn kinds() -> Vec<KindSpec> {
    vec![flavor(), server_group(), virtual_machine(), keypair()]
}

fn keypair() -> KindSpec {
    KindSpec {
        normalize: normalize_custom::<KeypairSpec, Value>,
        validate: Some(|keypair, old| {
            let mut causes = Vec::new();
            for field in ["name", "userId", "publicKey"] {
                if object::str_at(keypair, &["spec", field]).is_none_or(|v| v.is_empty()) {
                    causes.push(FieldCause::required(format!("spec.{field}"), ""));
                }
            }
            if let Some(old) = old
                && keypair.get("spec") != old.get("spec")
            {
                causes.push(FieldCause::forbidden(
                    "spec",
                    "a keypair does not change; delete it and make another",
                ));
            }
            causes
        }),
        columns: vec![
            Column::name(),
            Column::text("Key name", "Nova's name of the key.", &["spec", "name"]),
            Column::text("User", "Whose key it is.", &["spec", "userId"]),
            Column::text("Fingerprint", "MD5 of the key.", &["spec", "fingerprint"]),
            Column::age(),
        ],
        ..KindSpec::new(GROUP, "v1", "Keypair", "keypairs", Scope::Namespaced)
    }
}

fn flavor() -> KindSpec {
    KindSpec {
        normalize: normalize_custom::<FlavorSpec, Value>,
        validate: Some(|flavor, _| {
            let mut causes = Vec::new();
            for (field, minimum) in [
                ("vcpus", 1),
                ("ram", 1),
                ("disk", 0),
                ("ephemeral", 0),
                ("swap", 0),
            ] {
                let value = flavor
                    .pointer(&format!("/spec/{field}"))
                    .and_then(Value::as_i64);
                if value.is_some_and(|v| v < minimum) {
                    causes.push(FieldCause::invalid(
                        format!("spec.{field}"),
                        value.unwrap_or_default(),
                        format!("must be at least {minimum}"),
                    ));
                }
            }
            causes
        }),
        columns: vec![
            Column::name(),
            Column::text("VCPUs", "Virtual CPUs.", &["spec", "vcpus"]),
            Column::text("RAM", "Memory in MiB.", &["spec", "ram"]),
            Column::text("Disk", "Root disk in GiB.", &["spec", "disk"]),
            Column::text(
                "Public",
                "Whether every project may use it.",
                &["spec", "isPublic"],
            ),
            Column::age(),
        ],
        ..KindSpec::new(GROUP, "v1", "Flavor", "flavors", Scope::Cluster)
    }
}

fn server_group() -> KindSpec {
    KindSpec {
        normalize: normalize_custom::<ServerGroupSpec, Value>,
        validate: Some(|group, _| {
            let policy = object::str_at(group, &["spec", "policy"]).unwrap_or_default();
            const POLICIES: &[&str] = &[
                "affinity",
                "anti-affinity",
                "soft-affinity",
                "soft-anti-affinity",
            ];
            if POLICIES.contains(&policy.as_str()) {
                Vec::new()
            } else {
                vec![FieldCause::not_supported("spec.policy", policy, POLICIES)]
            }
        }),
        columns: vec![
            Column::name(),
            Column::text("Policy", "Where the members may run.", &["spec", "policy"]),
            Column::age(),
        ],
        ..KindSpec::new(
            GROUP,
            "v1",
            "ServerGroup",
            "servergroups",
            Scope::Namespaced,
        )
    }
}

fn virtual_machine() -> KindSpec {
    KindSpec {
        short_names: &["vm"],
        categories: &["all"],
        subresources: Subresources {
            status: true,
            scale: false,
        },
        normalize: normalize_custom::<VirtualMachineSpec, VirtualMachineStatus>,
        default: Some(|vm| {
            let status = object::ensure_object(
                object::ensure_object(vm)
                    .entry("status")
                    .or_insert_with(|| json!({})),
            );
            // A new VM is building and waits to be scheduled; later writes keep what the
            // scheduler and the agent say (a cleared task state stays cleared).
            if !status.contains_key("status") {
                status.insert("status".into(), json!("BUILD"));
                status.insert("vmState".into(), json!("building"));
                status.insert("taskState".into(), json!("scheduling"));
            }
            status.entry("powerState").or_insert_with(|| json!(0));
        }),
        validate: Some(|vm, old| {
            let mut causes = Vec::new();
            if object::str_at(vm, &["spec", "flavorRef"]).is_none_or(|f| f.is_empty()) {
                causes.push(FieldCause::required("spec.flavorRef", ""));
            }
            if let Some(old) = old {
                for field in [
                    "flavorRef",
                    "flavor",
                    "imageRef",
                    "serverGroup",
                    "availabilityZone",
                ] {
                    if vm.pointer(&format!("/spec/{field}"))
                        != old.pointer(&format!("/spec/{field}"))
                    {
                        causes.push(FieldCause::forbidden(
                            format!("spec.{field}"),
                            "may not change after the VM is created (resize and rebuild are actions)",
                        ));
                    }
                }
            }
            causes
        }),
        admit: Some(resolve_flavor),
        usage: Some(usage),
        graceful_delete: Some(|vm| {
            let placed = object::str_at(vm, &["status", "host"]).is_some_and(|h| !h.is_empty());
            placed.then_some(30)
        }),
        fields: &[
            ("status.host", |o| {
                Some(object::str_at(o, &["status", "host"]).unwrap_or_default())
            }),
            ("status.status", |o| {
                object::str_at(o, &["status", "status"])
            }),
        ],
        columns: vec![
            Column::name(),
            Column::text("Status", "Nova's status.", &["status", "status"]),
            Column::text(
                "Flavor",
                "The flavor it was booted with.",
                &["spec", "flavorRef"],
            ),
            Column::text("Host", "The host it runs on.", &["status", "host"]),
            Column::age(),
            Column::text("Image", "The image it boots.", &["spec", "imageRef"]).wide(),
            Column::text(
                "Task",
                "What is being done to it.",
                &["status", "taskState"],
            )
            .wide(),
        ],
        ..KindSpec::new(
            GROUP,
            "v1",
            "VirtualMachine",
            "virtualmachines",
            Scope::Namespaced,
        )
    }
}

/// Copies the named flavor into a new VM (a flavor that does not exist is a 400 naming it;
/// so is a private one).
fn resolve_flavor<'a>(
    engine: &'a Engine,
    vm: &'a mut Value,
    admission: Admission<'a>,
) -> BoxFuture<'a, ApiResult<()>> {
    let old = admission.old;
    Box::pin(async move {
        if old.is_some() {
            // The flavor, image and group cannot change (validation says so).
            return Ok(());
        }
        let name = object::str_at(vm, &["spec", "flavorRef"]).unwrap_or_default();
        let kind = engine.kind(API_VERSION, "Flavor")?;
        let flavor = match engine.get(&kind, None, &name).await {
            Ok(flavor) => flavor,
            Err(error) if error.code() == 404 => {
                return Err(ApiError::bad_request(format!(
                    "Flavor {name} could not be found."
                )));
            }
            Err(error) => return Err(error),
        };
        let spec: FlavorSpec = serde_json::from_value(flavor["spec"].clone()).unwrap_or_default();
        if !spec.is_public {
            return Err(ApiError::bad_request(format!(
                "Flavor {name} is private and not available to this project."
            )));
        }
        check_references(engine, vm).await?;
        let snapshot = FlavorSnapshot { name, spec };
        object::ensure_object(
            object::ensure_object(vm)
                .entry("spec")
                .or_insert_with(|| json!({})),
        )
        .insert(
            "flavor".into(),
            serde_json::to_value(snapshot).unwrap_or(Value::Null),
        );
        Ok(())
    })
}

/// Refuses a new VM whose image its project cannot see, or whose server group does not
/// exist in its namespace, naming what is missing (a 400, as Nova answers).
async fn check_references(engine: &Engine, vm: &Value) -> ApiResult<()> {
    let namespace = object::namespace(vm).unwrap_or_default().to_owned();
    if let Some(image) = object::str_at(vm, &["spec", "imageRef"]).filter(|i| !i.is_empty()) {
        let missing = || ApiError::bad_request(format!("Image {image} could not be found."));
        let kind = engine.kind(
            ronghe_images::model::API_VERSION,
            ronghe_images::model::KIND,
        )?;
        let options = crate::engine::ListOptions {
            selectors: crate::engine::Selectors::parse(
                &kind,
                None,
                Some(&format!("metadata.name={image}")),
            )
            .map_err(|_| missing())?,
            ..crate::engine::ListOptions::default()
        };
        let found = engine.list(&kind, None, &options).await?.items;
        let visible = found.iter().find(|candidate| {
            let owner = object::namespace(candidate).unwrap_or_default();
            serde_json::from_value::<ronghe_images::model::ImageSpec>(candidate["spec"].clone())
                .is_ok_and(|spec| ronghe_images::model::can_see(owner, &spec, Some(&namespace)))
        });
        let Some(visible) = visible else {
            return Err(missing());
        };
        if visible["status"]["status"] != ronghe_images::model::STATUS_ACTIVE {
            return Err(ApiError::bad_request(format!(
                "Image {image} is not active."
            )));
        }
    }
    let spec: VirtualMachineSpec = serde_json::from_value(vm["spec"].clone()).unwrap_or_default();
    for nic in &spec.networks {
        if let Some(network) = nic.network.as_deref().filter(|n| *n != "default") {
            let found = crate::kinds::network::resolve(
                engine,
                "Network",
                &namespace,
                network,
                crate::kinds::network::network_is_public,
            )
            .await?;
            if found.is_none() {
                return Err(ApiError::bad_request(format!(
                    "Network {network} could not be found."
                )));
            }
        }
        if let Some(port) = nic.port.as_deref() {
            let found = crate::kinds::network::resolve(engine, "Port", &namespace, port, |_| false)
                .await?
                .ok_or_else(|| {
                    ApiError::bad_request(format!("Port id {port} could not be found."))
                })?;
            if found["spec"]["deviceId"]
                .as_str()
                .is_some_and(|device| !device.is_empty())
            {
                return Err(ApiError::conflict_message(format!(
                    "Port {port} is still in use."
                )));
            }
        }
    }
    if let Some(group) = object::str_at(vm, &["spec", "serverGroup"]).filter(|g| !g.is_empty()) {
        let kind = engine.kind(API_VERSION, "ServerGroup")?;
        match engine.get(&kind, Some(&namespace), &group).await {
            Ok(_) => {}
            Err(error) if error.code() == 404 => {
                return Err(ApiError::bad_request(format!(
                    "Server group {group} could not be found in namespace {namespace}."
                )));
            }
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// The flavor a VM carries.
pub fn flavor_of(vm: &Value) -> Option<FlavorSnapshot> {
    serde_json::from_value(vm.pointer("/spec/flavor")?.clone()).ok()
}

/// A VM uses its flavor's vCPUs and memory of its project's quota (`cores` and `ram` on
/// the OpenStack face) until it is deleted, in ERROR too, as Nova counts it.
fn usage(vm: &Value, usage: &mut Usage) {
    let Some(flavor) = flavor_of(vm) else {
        return;
    };
    let cpu = flavor.spec.vcpus.saturating_mul(quota::ONE);
    let memory = flavor
        .spec
        .ram
        .saturating_mul(1 << 20)
        .saturating_mul(quota::ONE);
    for (resource, amount) in [
        ("requests.cpu", cpu),
        ("cpu", cpu),
        ("requests.memory", memory),
        ("memory", memory),
    ] {
        quota::add(usage, resource, amount);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vm_uses_its_flavor() {
        let vm =
            json!({"spec": {"flavorRef": "m1", "flavor": {"name": "m1", "vcpus": 2, "ram": 512}}});
        let mut used = Usage::new();
        usage(&vm, &mut used);
        assert_eq!(used["requests.cpu"], 2000);
        assert_eq!(used["requests.memory"], 512 * (1 << 20) * 1000);
        let failed = json!({"spec": vm["spec"], "status": {"status": "ERROR"}});
        let mut still = Usage::new();
        usage(&failed, &mut still);
        assert_eq!(
            still["requests.cpu"], 2000,
            "a VM in ERROR still counts, as in Nova"
        );
    }
}
