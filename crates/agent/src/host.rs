//! What a host is, as the agent reports it: the Node object and the resource provider.

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// A host's resources, traits and identity.
#[derive(Clone, Debug, PartialEq)]
pub struct Host {
    pub name: String,
    pub vcpus: i64,
    pub memory_mb: i64,
    pub disk_gb: i64,
    /// Memory kept for the host itself, not offered to workloads.
    pub reserved_memory_mb: i64,
    pub cpu_allocation_ratio: f64,
    pub ram_allocation_ratio: f64,
    pub max_pods: i64,
    /// Devices as their own resource classes (`VGPU: 2`), offered to pods as the
    /// extended resource `ronghe.io/<class in lower case>`.
    pub devices: BTreeMap<String, i64>,
    /// Placement traits (CPU flags detected, custom traits configured).
    pub traits: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub zone: Option<String>,
    /// Where the API server reaches the host's agent (the Node's `InternalIP`).
    pub address: String,
    /// The port of the agent's endpoint (`daemonEndpoints.kubeletEndpoint.Port`); 0 when
    /// it serves none.
    pub agent_port: u16,
    pub simulated: bool,
    pub kernel_version: String,
    pub os_image: String,
    /// Where other hosts send VXLAN traffic for this one (the Node's
    /// `network.ronghe.io/tunnel-ip` annotation).
    pub tunnel_ip: Option<std::net::Ipv4Addr>,
    /// Flat physical networks and their interfaces (the
    /// `network.ronghe.io/physical-networks` annotation, `name=interface,...`).
    pub physical_networks: BTreeMap<String, String>,
    /// The port this host's agent takes node-port traffic on from other hosts (the
    /// Node's `network.ronghe.io/node-port-relay` annotation), when it serves node ports.
    pub node_port_relay: Option<u16>,
}

impl Host {
    /// This machine: CPUs, memory and CPU flags read from the kernel.
    pub fn detect(name: &str) -> Host {
        let vcpus = std::thread::available_parallelism().map_or(1, |n| n.get() as i64);
        let memory_mb = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| meminfo_total_mb(&text))
            .unwrap_or(1024);
        let traits = std::fs::read_to_string("/proc/cpuinfo")
            .map(|text| cpu_traits(&text))
            .unwrap_or_default();
        let kernel_version = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        let os_image = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|text| pretty_name(&text))
            .unwrap_or_else(|| "Linux".into());
        Host {
            name: name.to_owned(),
            vcpus,
            memory_mb,
            disk_gb: 100,
            reserved_memory_mb: 512.min(memory_mb / 4),
            cpu_allocation_ratio: 1.0,
            ram_allocation_ratio: 1.0,
            max_pods: 110,
            devices: BTreeMap::new(),
            traits,
            labels: BTreeMap::new(),
            zone: None,
            address: "127.0.0.1".into(),
            agent_port: 0,
            simulated: false,
            kernel_version,
            os_image,
            tunnel_ip: None,
            node_port_relay: None,
            physical_networks: BTreeMap::new(),
        }
    }

    /// The `index`th of a set of simulated hosts shaped like `self`, named `<name>-<index>`
    /// (zero-padded). They share `self`'s address: the one agent process that simulates
    /// them all answers there for each of them (the API server connects to it for logs and
    /// exec, so it must be an address this machine really has).
    pub fn simulated(&self, index: usize) -> Host {
        let mut host = self.clone();
        host.name = format!("{}-{index:05}", self.name);
        host.simulated = true;
        host.labels
            .insert("node.ronghe.io/simulated".into(), "true".into());
        host
    }

    fn all_labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.labels.clone();
        labels.insert("kubernetes.io/hostname".into(), self.name.clone());
        labels.insert("kubernetes.io/os".into(), "linux".into());
        labels.insert("kubernetes.io/arch".into(), "amd64".into());
        if let Some(zone) = &self.zone {
            labels.insert("topology.kubernetes.io/zone".into(), zone.clone());
        }
        labels
    }

    /// The Node, as applied by the agent (metadata and spec).
    pub fn node(&self) -> Value {
        let mut annotations = serde_json::Map::new();
        if let Some(tunnel_ip) = self.tunnel_ip {
            annotations.insert(
                ronghe_api_types::network::annotation::TUNNEL_IP.into(),
                json!(tunnel_ip.to_string()),
            );
        }
        if let Some(port) = self.node_port_relay {
            annotations.insert(
                ronghe_api_types::network::annotation::NODE_PORT_RELAY.into(),
                json!(port.to_string()),
            );
            annotations.insert(
                ronghe_api_types::network::annotation::NODE_PORT_RELAY_CLIENTS.into(),
                json!("true"),
            );
        }
        if !self.physical_networks.is_empty() {
            let pairs: Vec<String> = self
                .physical_networks
                .iter()
                .map(|(name, interface)| format!("{name}={interface}"))
                .collect();
            annotations.insert(
                ronghe_api_types::network::annotation::PHYSICAL_NETWORKS.into(),
                json!(pairs.join(",")),
            );
        }
        let mut metadata = json!({"name": self.name, "labels": self.all_labels()});
        if !annotations.is_empty() {
            metadata["annotations"] = Value::Object(annotations);
        }
        json!({"apiVersion": "v1", "kind": "Node", "metadata": metadata})
    }

    /// The flat physical networks a Node says it has (its
    /// `network.ronghe.io/physical-networks` annotation).
    pub fn physical_networks_of(node: &Value) -> BTreeMap<String, String> {
        ronghe_api_types::network::physical_networks(
            node.pointer("/metadata/annotations")
                .and_then(|a| a.get(ronghe_api_types::network::annotation::PHYSICAL_NETWORKS))
                .and_then(Value::as_str)
                .unwrap_or_default(),
        )
    }

    /// The Node's status at `now` (RFC 3339).
    pub fn node_status(&self, now: String) -> Value {
        let now = now
            .split('.')
            .next()
            .map_or(now.clone(), |s| format!("{s}Z"));
        let memory = format!("{}Mi", self.memory_mb);
        let allocatable_memory = format!("{}Mi", self.memory_mb - self.reserved_memory_mb);
        let mut capacity = json!({
            "cpu": self.vcpus.to_string(),
            "memory": memory,
            "pods": self.max_pods.to_string(),
            "ephemeral-storage": format!("{}Gi", self.disk_gb),
        });
        let mut allocatable = capacity.clone();
        allocatable["memory"] = json!(allocatable_memory);
        for (class, count) in &self.devices {
            let resource = format!("ronghe.io/{}", class.to_ascii_lowercase());
            capacity[&resource] = json!(count.to_string());
            allocatable[&resource] = json!(count.to_string());
        }
        let runtime = if self.simulated {
            "fake://ronghe"
        } else {
            "runc://ronghe"
        };
        json!({"status": {
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.agent_port}},
            "capacity": capacity,
            "allocatable": allocatable,
            "conditions": [{
                "type": "Ready",
                "status": "True",
                "reason": "AgentReady",
                "message": "ronghe agent is posting ready status",
                "lastHeartbeatTime": now,
                "lastTransitionTime": now,
            }],
            "addresses": [
                {"type": "InternalIP", "address": self.address},
                {"type": "Hostname", "address": self.name},
            ],
            "nodeInfo": {
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
                "kernelVersion": self.kernel_version,
                "osImage": self.os_image,
                "containerRuntimeVersion": runtime,
                "kubeletVersion": concat!("v1.32.0-ronghe-", env!("CARGO_PKG_VERSION")),
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        }})
    }

    /// The host's resource provider: VCPU, MEMORY_MB and DISK_GB inventories (with
    /// allocation ratios and the reserved memory), devices, traits.
    pub fn resource_provider(&self) -> Value {
        let mut inventories = json!({
            "VCPU": {"total": self.vcpus, "allocationRatio": self.cpu_allocation_ratio},
            "MEMORY_MB": {
                "total": self.memory_mb,
                "reserved": self.reserved_memory_mb,
                "allocationRatio": self.ram_allocation_ratio,
            },
            "DISK_GB": {"total": self.disk_gb},
        });
        for (class, count) in &self.devices {
            inventories[class] = json!({"total": count});
        }
        let mut traits = self.traits.clone();
        traits.push("COMPUTE_NODE".into());
        traits.sort();
        traits.dedup();
        json!({
            "apiVersion": "placement.ronghe.io/v1",
            "kind": "ResourceProvider",
            "metadata": {"name": self.name},
            "spec": {"inventories": inventories, "traits": traits},
        })
    }
}

fn meminfo_total_mb(text: &str) -> Option<i64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

fn pretty_name(text: &str) -> Option<String> {
    let line = text.lines().find(|l| l.starts_with("PRETTY_NAME="))?;
    Some(line["PRETTY_NAME=".len()..].trim_matches('"').to_owned())
}

/// Placement's `HW_CPU_X86_*` traits for the CPU flags the kernel reports.
fn cpu_traits(cpuinfo: &str) -> Vec<String> {
    const FLAGS: &[(&str, &str)] = &[
        ("avx", "HW_CPU_X86_AVX"),
        ("avx2", "HW_CPU_X86_AVX2"),
        ("avx512f", "HW_CPU_X86_AVX512F"),
        ("sse4_1", "HW_CPU_X86_SSE41"),
        ("sse4_2", "HW_CPU_X86_SSE42"),
        ("aes", "HW_CPU_X86_AESNI"),
        ("fma", "HW_CPU_X86_FMA3"),
        ("vmx", "HW_CPU_X86_VMX"),
        ("svm", "HW_CPU_X86_SVM"),
        ("sha_ni", "HW_CPU_X86_SHA"),
        ("bmi2", "HW_CPU_X86_BMI2"),
    ];
    let Some(flags) = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .and_then(|l| l.split(':').nth(1))
    else {
        return Vec::new();
    };
    let present: std::collections::BTreeSet<&str> = flags.split_whitespace().collect();
    FLAGS
        .iter()
        .filter(|(flag, _)| present.contains(flag))
        .map(|(_, name)| (*name).to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_flags_become_traits() {
        let traits = cpu_traits("processor: 0\nflags\t\t: fpu sse4_2 avx2 aes\n");
        assert_eq!(
            traits,
            ["HW_CPU_X86_AVX2", "HW_CPU_X86_SSE42", "HW_CPU_X86_AESNI"]
        );
        assert_eq!(meminfo_total_mb("MemTotal:       2048000 kB\n"), Some(2000));
    }

    #[test]
    fn the_node_says_where_its_tunnel_relay_and_physical_networks_are() {
        let mut host = Host::detect("h");
        assert!(host.node()["metadata"].get("annotations").is_none());
        host.tunnel_ip = Some("10.200.0.1".parse().unwrap());
        host.physical_networks
            .insert("public".into(), "eth1".into());
        host.physical_networks.insert("lab".into(), "eth2".into());
        host.node_port_relay = Some(10251);
        let node = host.node();
        let annotations = &node["metadata"]["annotations"];
        assert_eq!(annotations["network.ronghe.io/tunnel-ip"], "10.200.0.1");
        assert_eq!(annotations["network.ronghe.io/node-port-relay"], "10251");
        assert_eq!(
            annotations["network.ronghe.io/node-port-relay-clients"],
            "true"
        );
        assert_eq!(
            annotations["network.ronghe.io/physical-networks"],
            "lab=eth2,public=eth1"
        );
        assert_eq!(Host::physical_networks_of(&node), host.physical_networks);
    }

    #[test]
    fn simulated_hosts_are_distinct() {
        let mut template = Host::detect("sim");
        template.devices.insert("VGPU".into(), 2);
        template.agent_port = 10250;
        let a = template.simulated(1);
        let b = template.simulated(258);
        assert_eq!(a.name, "sim-00001");
        assert_ne!(a.name, b.name);
        assert_eq!(a.address, template.address, "their agent's address");
        let provider = b.resource_provider();
        assert_eq!(provider["spec"]["inventories"]["VGPU"]["total"], 2);
        let status = b.node_status("2026-01-01T00:00:00.123456Z".into());
        assert_eq!(status["status"]["capacity"]["ronghe.io/vgpu"], "2");
        assert_eq!(
            status["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"],
            10250
        );
        assert_eq!(
            status["status"]["conditions"][0]["lastHeartbeatTime"],
            "2026-01-01T00:00:00Z"
        );
    }
}
