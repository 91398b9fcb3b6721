//! From API objects to the scheduler's model: a Node and its resource provider become a
//! `Host`; a Pod becomes a `Workload` whose requests are in the ledger's units (`VCPU` in
//! thousandths, `MEMORY_MB` and `DISK_GB` rounded up, device classes from the
//! `ronghe.io/<class>` extended resources).

use std::collections::BTreeMap;

use ronghe_api_types::quantity;
use ronghe_scheduler::{
    AntiAffinityTerm, Host, Inventory, NodeSelectorTerm, SelectorOperator, SelectorRequirement,
    Taint, TaintEffect, Toleration, TolerationOperator, Workload, WorkloadKind,
};
use serde_json::Value;

use crate::kinds::placement::{ResourceProviderSpec, ResourceProviderStatus};
use crate::object;

/// The ledger unit of a class, in thousandths of the class's Placement unit: VCPU is kept
/// in thousandths (so a pod may ask for `500m`), everything else in whole units.
fn ledger_scale(class: &str) -> i64 {
    if class == ronghe_scheduler::VCPU {
        1
    } else {
        1000
    }
}

/// Thousandths of a class's Placement unit as ledger units, rounded up.
pub fn to_ledger(class: &str, milli: i64) -> i64 {
    let scale = ledger_scale(class);
    milli.div_euclid(scale) + i64::from(milli.rem_euclid(scale) != 0)
}

/// Ledger units as an allocation quantity (`500m`, `2`).
pub fn ledger_quantity(class: &str, amount: i64) -> String {
    quantity::format(amount.saturating_mul(ledger_scale(class)), false)
}

/// The host a Node and its resource provider describe.
pub fn host(node: &Value, provider: &Value) -> Host {
    let name = object::name(node).unwrap_or_default().to_owned();
    let spec: ResourceProviderSpec = provider
        .get("spec")
        .cloned()
        .and_then(|s| serde_json::from_value(s).ok())
        .unwrap_or_default();
    let status: ResourceProviderStatus = provider
        .get("status")
        .cloned()
        .and_then(|s| serde_json::from_value(s).ok())
        .unwrap_or_default();
    let mut host = Host::new(name);
    for (class, inventory) in &spec.inventories {
        // Placement units to ledger units: only VCPU changes (× 1000).
        let scale = 1000 / ledger_scale(class);
        let max_unit = inventory.max_unit.unwrap_or(inventory.total);
        let (min_unit, step) = if scale == 1 {
            (inventory.min_unit, inventory.step_size)
        } else {
            (1, 1)
        };
        host.inventories.insert(
            class.clone(),
            Inventory::new(inventory.total.saturating_mul(scale))
                .with_reserved(inventory.reserved.saturating_mul(scale))
                .with_allocation_ratio(inventory.allocation_ratio)
                .with_min_unit(min_unit)
                .with_max_unit(max_unit.saturating_mul(scale))
                .with_step_size(step),
        );
    }
    for (class, milli) in status.usages() {
        host.used.insert(class.clone(), to_ledger(&class, milli));
    }
    host.traits = spec.traits.into_iter().collect();
    host.labels.extend(object::labels(node));
    host.zone = host.labels.get(ronghe_scheduler::ZONE_LABEL).cloned();
    // A silent node carries the unreachable taint, which is what Kubernetes reports
    // (the node-lifecycle controller sets both); otherwise readiness is the condition's.
    host.ready = crate::kinds::node_is_ready(node) || host_is_tainted_unreachable(node);
    host.unschedulable = node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true);
    host.taints = node
        .pointer("/spec/taints")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|taint| {
            Some(Taint::new(
                str_of(taint, "key")?,
                str_of(taint, "value").unwrap_or_default(),
                effect(&str_of(taint, "effect")?)?,
            ))
        })
        .collect();
    host
}

fn host_is_tainted_unreachable(node: &Value) -> bool {
    node.pointer("/spec/taints")
        .and_then(Value::as_array)
        .is_some_and(|taints| {
            taints
                .iter()
                .any(|t| t["key"] == crate::controllers::node_lifecycle::UNREACHABLE_TAINT)
        })
}

fn str_of(value: &Value, key: &str) -> Option<String> {
    value.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn effect(text: &str) -> Option<TaintEffect> {
    match text {
        "NoSchedule" => Some(TaintEffect::NoSchedule),
        "PreferNoSchedule" => Some(TaintEffect::PreferNoSchedule),
        "NoExecute" => Some(TaintEffect::NoExecute),
        _ => None,
    }
}

/// A pod's requests as ledger amounts by resource class.
pub fn pod_resources(pod: &Value) -> BTreeMap<String, i64> {
    let mut resources = BTreeMap::new();
    for (resource, milli) in crate::kinds::pod_requests(pod) {
        let class = match resource.as_str() {
            "cpu" => ronghe_scheduler::VCPU.to_owned(),
            // Bytes (in thousandths) to MiB, rounded up.
            "memory" => {
                let bytes = milli.div_euclid(1000) + i64::from(milli.rem_euclid(1000) != 0);
                let mib = bytes.div_euclid(1 << 20) + i64::from(bytes.rem_euclid(1 << 20) != 0);
                resources.insert(ronghe_scheduler::MEMORY_MB.to_owned(), mib);
                continue;
            }
            "ephemeral-storage" => {
                let bytes = milli.div_euclid(1000) + i64::from(milli.rem_euclid(1000) != 0);
                let gb = bytes.div_euclid(1 << 30) + i64::from(bytes.rem_euclid(1 << 30) != 0);
                resources.insert(ronghe_scheduler::DISK_GB.to_owned(), gb);
                continue;
            }
            other => match other.strip_prefix("ronghe.io/") {
                Some(device) => device.to_ascii_uppercase().replace('-', "_"),
                // Extended resources of other vendors are not offered by any host.
                None => other.to_owned(),
            },
        };
        let amount = to_ledger(&class, milli);
        if amount > 0 {
            resources.insert(class, amount);
        }
    }
    resources.retain(|_, amount| *amount > 0);
    resources
}

/// The scheduler's view of a pod.
pub fn pod_workload(pod: &Value) -> Workload {
    let namespace = object::namespace(pod).unwrap_or_default();
    let name = object::name(pod).unwrap_or_default();
    let mut workload = Workload::new(WorkloadKind::Pod, namespace, name);
    workload.labels = object::labels(pod);
    workload.resources = pod_resources(pod);
    let spec = pod.get("spec").unwrap_or(&Value::Null);
    if let Some(selector) = spec.get("nodeSelector").and_then(Value::as_object) {
        for (key, value) in selector {
            if let Some(value) = value.as_str() {
                workload.node_selector.insert(key.clone(), value.to_owned());
            }
        }
    }
    let terms = spec
        .pointer("/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms")
        .and_then(Value::as_array);
    for term in terms.into_iter().flatten() {
        workload.required_affinity.push(NodeSelectorTerm {
            match_expressions: requirements(term.get("matchExpressions")),
        });
    }
    let anti = spec
        .pointer("/affinity/podAntiAffinity/requiredDuringSchedulingIgnoredDuringExecution")
        .and_then(Value::as_array);
    for term in anti.into_iter().flatten() {
        let mut selector = Vec::new();
        if let Some(labels) = term
            .pointer("/labelSelector/matchLabels")
            .and_then(Value::as_object)
        {
            for (key, value) in labels {
                selector.push(SelectorRequirement::equals(
                    key.clone(),
                    value.as_str().unwrap_or_default(),
                ));
            }
        }
        selector.extend(requirements(
            term.pointer("/labelSelector/matchExpressions"),
        ));
        workload.anti_affinity.push(AntiAffinityTerm {
            selector,
            namespaces: object::strings_at(term, &["namespaces"]),
            topology_key: str_of(term, "topologyKey").unwrap_or_default(),
        });
    }
    for toleration in spec
        .get("tolerations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let operator = match toleration.get("operator").and_then(Value::as_str) {
            Some("Exists") => TolerationOperator::Exists,
            _ => TolerationOperator::Equal,
        };
        workload.tolerations.push(Toleration {
            key: str_of(toleration, "key").unwrap_or_default(),
            operator,
            value: str_of(toleration, "value").unwrap_or_default(),
            effect: str_of(toleration, "effect").and_then(|e| effect(&e)),
        });
    }
    workload
}

/// `matchExpressions` as selector requirements (operators Kubernetes knows).
fn requirements(expressions: Option<&Value>) -> Vec<SelectorRequirement> {
    expressions
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|expression| {
            let operator = match expression.get("operator").and_then(Value::as_str)? {
                "In" => SelectorOperator::In,
                "NotIn" => SelectorOperator::NotIn,
                "Exists" => SelectorOperator::Exists,
                "DoesNotExist" => SelectorOperator::DoesNotExist,
                "Gt" => SelectorOperator::Gt,
                "Lt" => SelectorOperator::Lt,
                _ => return None,
            };
            Some(SelectorRequirement {
                key: str_of(expression, "key")?,
                operator,
                values: object::strings_at(expression, &["values"]),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pods_ask_in_ledger_units() {
        let pod = json!({"metadata": {"name": "p", "namespace": "n"}, "spec": {"containers": [
            {"name": "a", "image": "x", "resources": {"requests": {
                "cpu": "500m", "memory": "100Mi", "ronghe.io/vgpu": "1", "ephemeral-storage": "1G"}}}]}});
        let resources = pod_resources(&pod);
        assert_eq!(resources["VCPU"], 500);
        assert_eq!(resources["MEMORY_MB"], 100);
        assert_eq!(resources["VGPU"], 1);
        assert_eq!(resources["DISK_GB"], 1);
        assert_eq!(ledger_quantity("VCPU", 500), "500m");
        assert_eq!(ledger_quantity("MEMORY_MB", 100), "100");
        assert_eq!(to_ledger("MEMORY_MB", 1500), 2);
    }

    #[test]
    fn hosts_come_from_nodes_and_providers() {
        let node = json!({"metadata": {"name": "h", "labels": {"topology.kubernetes.io/zone": "az1"}},
            "spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        let provider = json!({"spec": {"inventories": {"VCPU": {"total": 4}, "MEMORY_MB": {"total": 1024, "reserved": 24}},
            "traits": ["HW_CPU_X86_AVX2"]},
            "status": {"allocations": {"u": {"kind": "Pod", "namespace": "n", "name": "p",
                "resources": {"VCPU": "1500m", "MEMORY_MB": "100"}}}}});
        let host = host(&node, &provider);
        assert_eq!(host.inventories["VCPU"].capacity(), 4000);
        assert_eq!(host.inventories["MEMORY_MB"].capacity(), 1000);
        assert_eq!(host.used["VCPU"], 1500);
        assert_eq!(host.used["MEMORY_MB"], 100);
        assert_eq!(host.zone.as_deref(), Some("az1"));
        assert!(host.ready && host.traits.contains("HW_CPU_X86_AVX2"));
        assert_eq!(host.taints.len(), 1);
    }
}

/// The scheduler's view of a VM: its flavor's vCPUs, memory and disk, what the flavor's
/// extra specs add (`resources:VGPU=1`, `resources:VCPU=0`, `trait:T=required|forbidden`),
/// its zone and its server group (`groups` by `namespace/name`: policy and per-host limit).
pub fn vm_workload(
    vm: &Value,
    groups: &std::collections::HashMap<String, (String, Option<u32>)>,
) -> Workload {
    use crate::kinds::compute::flavor_of;
    use ronghe_scheduler::{GroupPolicy, ServerGroup};
    let namespace = object::namespace(vm).unwrap_or_default();
    let name = object::name(vm).unwrap_or_default();
    let mut workload = Workload::new(WorkloadKind::VirtualMachine, namespace, name);
    workload.labels = object::labels(vm);
    if let Some(flavor) = flavor_of(vm) {
        let spec = &flavor.spec;
        let disk = spec.disk + spec.ephemeral + (spec.swap + 1023) / 1024;
        for (class, amount) in [
            (ronghe_scheduler::VCPU, spec.vcpus.saturating_mul(1000)),
            (ronghe_scheduler::MEMORY_MB, spec.ram),
            (ronghe_scheduler::DISK_GB, disk),
        ] {
            workload.resources.insert(class.to_owned(), amount);
        }
        for (key, value) in &spec.extra_specs {
            if let Some(class) = key.strip_prefix("resources:") {
                let amount: i64 = value.trim().parse().unwrap_or(0);
                let amount = to_ledger(class, amount.saturating_mul(1000));
                workload.resources.insert(class.to_owned(), amount);
            } else if let Some(name) = key.strip_prefix("trait:") {
                match value.trim() {
                    "required" => drop(workload.required_traits.insert(name.to_owned())),
                    "forbidden" => drop(workload.forbidden_traits.insert(name.to_owned())),
                    _ => {}
                }
            }
        }
        workload.resources.retain(|_, amount| *amount > 0);
    }
    workload.zone = object::str_at(vm, &["spec", "availabilityZone"]).filter(|z| !z.is_empty());
    if let Some(group) = object::str_at(vm, &["spec", "serverGroup"]) {
        let key = format!("{namespace}/{group}");
        if let Some((policy, max_server_per_host)) = groups.get(&key) {
            let policy = match policy.as_str() {
                "affinity" => GroupPolicy::Affinity,
                "soft-affinity" => GroupPolicy::SoftAffinity,
                "soft-anti-affinity" => GroupPolicy::SoftAntiAffinity,
                _ => GroupPolicy::AntiAffinity,
            };
            workload.server_group = Some(ServerGroup {
                key,
                policy,
                max_server_per_host: *max_server_per_host,
            });
        }
    }
    workload
}

#[cfg(test)]
mod vm_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn vms_ask_for_their_flavor_and_extra_specs() {
        let vm = json!({"metadata": {"name": "v", "namespace": "n"}, "spec": {
            "flavorRef": "gpu", "serverGroup": "spread", "availabilityZone": "az1",
            "flavor": {"name": "gpu", "vcpus": 2, "ram": 2048, "disk": 10, "swap": 512,
                "extraSpecs": {"resources:VGPU": "1", "trait:HW_CPU_X86_AVX2": "required",
                               "trait:CUSTOM_SLOW": "forbidden", "resources:DISK_GB": "0"}}}});
        let groups = std::collections::HashMap::from([(
            "n/spread".to_owned(),
            ("anti-affinity".to_owned(), Some(2)),
        )]);
        let workload = vm_workload(&vm, &groups);
        assert_eq!(workload.resources["VCPU"], 2000);
        assert_eq!(workload.resources["MEMORY_MB"], 2048);
        assert_eq!(workload.resources["VGPU"], 1);
        assert!(
            !workload.resources.contains_key("DISK_GB"),
            "resources:DISK_GB=0 drops it"
        );
        assert!(workload.required_traits.contains("HW_CPU_X86_AVX2"));
        assert!(workload.forbidden_traits.contains("CUSTOM_SLOW"));
        assert_eq!(workload.zone.as_deref(), Some("az1"));
        let group = workload.server_group.expect("a group");
        assert_eq!(group.key, "n/spread");
        assert_eq!(group.max_server_per_host, Some(2));
    }
}
