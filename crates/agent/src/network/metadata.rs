//! The instance metadata service: what a VM may learn about itself at 169.254.169.254.
//!
//! Each tenant network with DHCP has, on every host, a service netns holding its
//! `network:dhcp` port, where the host-network driver binds 169.254.169.254:80 for the
//! agent. Anti-spoofing guarantees a VM's source address is its own, so the caller is
//! identified by (network, source address) alone, as Neutron's metadata agent does, and is
//! told only about itself; any other caller gets 404.
//!
//! * this file: [`InstanceMetadata`] and the [`MetadataIndex`] from callers to it, built
//!   with no I/O from the API's objects (ports, VMs, keypairs, floating IPs);
//! * `tree.rs`: Nova's OpenStack and EC2 trees, a path to an answer, with no I/O;
//! * `serve.rs`: the HTTP server, bounded against VMs that hold connections open.

mod serve;
mod tree;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use ronghe_api_types::network::{FloatingIpSpec, PortSpec, annotation, owner, spec_of};
use serde::Deserialize;
use serde_json::Value;

use super::{namespace, text, uid};

pub use serve::serve;

/// The zone a VM is in when it asked for none, as Nova names its default.
pub const DEFAULT_AVAILABILITY_ZONE: &str = "nova";

/// What a VM is told about itself when it asks from one of its addresses on one network.
///
/// `Debug` leaves out the user data (it often holds secrets) and the key material.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct InstanceMetadata {
    /// The VirtualMachine's uid (Nova's server id).
    pub uuid: String,
    pub name: String,
    /// The name made a hostname, as Nova sanitizes display names.
    pub hostname: String,
    /// The VM's namespace: the agent does not see Keystone's project ids, so this is the
    /// project's name rather than the id Nova would give.
    pub project_id: String,
    pub availability_zone: String,
    /// Always 0: a VM is one server, not one of a multiple-create batch.
    pub launch_index: u32,
    /// The VM's addresses on the network the request came in on.
    pub fixed_ips: Vec<IpAddr>,
    /// A floating IP of the VM, one of this network's ports' if any has one.
    pub floating_ip: Option<IpAddr>,
    /// The keypair the VM was booted with (Nova boots with at most one).
    pub public_keys: Vec<PublicKey>,
    /// Nova's server metadata (`meta` in `meta_data.json`).
    pub meta: BTreeMap<String, String>,
    /// Decoded from the base64 the VM's spec stores.
    pub user_data: Option<Bytes>,
    /// The flavor's name (EC2's instance type).
    pub instance_type: String,
    /// The image the VM boots (EC2's AMI id); empty when it boots from a volume.
    pub image_ref: String,
    /// Uids of the security groups on the VM's ports.
    pub security_groups: Vec<String>,
    /// Every network interface of the VM, in NIC order, for `network_data.json`.
    pub interfaces: Vec<Interface>,
}

impl fmt::Debug for InstanceMetadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key_names: Vec<&str> = self.public_keys.iter().map(|k| k.name.as_str()).collect();
        f.debug_struct("InstanceMetadata")
            .field("uuid", &self.uuid)
            .field("name", &self.name)
            .field("hostname", &self.hostname)
            .field("project_id", &self.project_id)
            .field("availability_zone", &self.availability_zone)
            .field("fixed_ips", &self.fixed_ips)
            .field("floating_ip", &self.floating_ip)
            .field("public_keys", &key_names)
            .field("meta_keys", &self.meta.keys().collect::<Vec<_>>())
            .field("user_data_bytes", &self.user_data.as_ref().map(Bytes::len))
            .field("instance_type", &self.instance_type)
            .field("image_ref", &self.image_ref)
            .field("interfaces", &self.interfaces)
            .finish_non_exhaustive()
    }
}

/// One public key of the VM's keypair.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PublicKey {
    /// The keypair's name.
    pub name: String,
    /// `ssh` or `x509`.
    pub kind: String,
    /// The key in OpenSSH form.
    pub data: String,
}

/// One port of a VM.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Interface {
    pub port_id: String,
    pub network_id: String,
    pub mac_address: String,
    pub fixed_ips: Vec<IpAddr>,
}

/// Who may ask what: network uid → caller address → what it is told.
#[derive(Clone, Debug, Default)]
pub struct MetadataIndex {
    callers: HashMap<String, HashMap<IpAddr, Arc<InstanceMetadata>>>,
}

/// The part of a VirtualMachine's spec the metadata service serves (the type itself is
/// the API server's, which the agent does not depend on).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VmSpec {
    #[serde(default)]
    flavor_ref: String,
    #[serde(default)]
    flavor: Option<FlavorName>,
    #[serde(default)]
    image_ref: Option<String>,
    #[serde(default)]
    key_name: Option<String>,
    #[serde(default)]
    availability_zone: Option<String>,
    #[serde(default)]
    user_data: Option<String>,
    #[serde(default)]
    metadata: BTreeMap<String, Value>,
}

#[derive(Debug, Default, Deserialize)]
struct FlavorName {
    #[serde(default)]
    name: String,
}

/// The annotation the Nova face records the creating user in; a VM's keypair is that
/// user's keypair of the name (names are unique per user and project).
const USER_ANNOTATION: &str = "compute.ronghe.io/user-id";

fn addresses(spec: &PortSpec) -> Vec<IpAddr> {
    spec.fixed_ips
        .iter()
        .filter_map(|fixed| fixed.ip_address.parse().ok())
        .collect()
}

/// Nova's `sanitize_hostname`: lower case, spaces, underscores and dots become dashes,
/// anything else outside `[a-z0-9-]` goes, at most 63 characters, no leading or trailing
/// dash; `server-<uuid>` when nothing is left.
pub fn sanitize_hostname(name: &str, uuid: &str) -> String {
    let mapped: String = name
        .chars()
        .flat_map(char::to_lowercase)
        .filter_map(|c| match c {
            ' ' | '_' | '.' | '-' => Some('-'),
            'a'..='z' | '0'..='9' => Some(c),
            _ => None,
        })
        .collect();
    let trimmed = mapped.trim_matches('-');
    let truncated: String = trimmed.chars().take(63).collect();
    let hostname = truncated.trim_end_matches('-');
    if hostname.is_empty() {
        format!("server-{uuid}")
    } else {
        hostname.to_owned()
    }
}

/// The keypair a VM names: its creator's keypair of that name in the VM's namespace, or,
/// when the VM records no creator, the only keypair of that name there.
fn keypair_of<'a>(vm: &Value, key_name: &str, keypairs: &'a [Value]) -> Option<&'a Value> {
    let user = vm
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(USER_ANNOTATION))
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty());
    let mut candidates = keypairs
        .iter()
        .filter(|k| namespace(k) == namespace(vm) && text(k, "/spec/name") == key_name);
    match user {
        Some(user) => candidates.find(|k| text(k, "/spec/userId") == user),
        None => {
            let first = candidates.next()?;
            candidates.next().is_none().then_some(first)
        }
    }
}

/// Nova's user data is base64 (whitespace allowed, as Python's decoder skips it).
fn decode_user_data(vm_uid: &str, encoded: &str) -> Option<Bytes> {
    let compact: String = encoded.split_whitespace().collect();
    match base64::engine::general_purpose::STANDARD.decode(compact) {
        Ok(decoded) => Some(Bytes::from(decoded)),
        Err(error) => {
            // Never the data itself: it often holds secrets.
            tracing::warn!(vm = vm_uid, %error, "user data is not base64; serving none");
            None
        }
    }
}

fn nic_index(port: &Value) -> usize {
    port.pointer("/metadata/annotations")
        .and_then(|a| a.get(annotation::NIC_INDEX))
        .and_then(Value::as_str)
        .and_then(|i| i.parse().ok())
        .unwrap_or(usize::MAX)
}

/// What is the same on every network a VM is on.
fn instance_of(vm: &Value, keypairs: &[Value]) -> InstanceMetadata {
    let uuid = uid(vm).to_owned();
    let name = text(vm, "/metadata/name").to_owned();
    let spec: VmSpec = spec_of(vm);
    let public_keys = spec
        .key_name
        .as_deref()
        .filter(|k| !k.is_empty())
        .and_then(|key_name| keypair_of(vm, key_name, keypairs))
        .map(|keypair| PublicKey {
            name: text(keypair, "/spec/name").to_owned(),
            kind: Some(text(keypair, "/spec/type"))
                .filter(|t| !t.is_empty())
                .unwrap_or("ssh")
                .to_owned(),
            data: text(keypair, "/spec/publicKey").to_owned(),
        })
        .into_iter()
        .collect();
    // Nova's `zone:host` (and `zone::node`) pins a host; the zone is the first part.
    let availability_zone = spec
        .availability_zone
        .as_deref()
        .and_then(|z| z.split(':').next())
        .filter(|z| !z.is_empty())
        .unwrap_or(DEFAULT_AVAILABILITY_ZONE)
        .to_owned();
    let meta = spec
        .metadata
        .into_iter()
        .map(|(key, value)| match value {
            Value::String(text) => (key, text),
            other => (key, other.to_string()),
        })
        .collect();
    InstanceMetadata {
        hostname: sanitize_hostname(&name, &uuid),
        project_id: namespace(vm).to_owned(),
        availability_zone,
        launch_index: 0,
        public_keys,
        meta,
        user_data: spec
            .user_data
            .as_deref()
            .and_then(|data| decode_user_data(&uuid, data)),
        instance_type: spec
            .flavor
            .map(|f| f.name)
            .filter(|n| !n.is_empty())
            .unwrap_or(spec.flavor_ref),
        image_ref: spec.image_ref.unwrap_or_default(),
        uuid,
        name,
        ..InstanceMetadata::default()
    }
}

impl MetadataIndex {
    /// Indexes every VM port's addresses. A port counts only if it is in its VM's
    /// namespace (Nova checks the port's project against the instance's, so a port made
    /// in another project naming someone's VM as its device learns nothing), and an
    /// address two VMs claim on one network answers nobody.
    pub fn build(
        ports: &[Value],
        vms: &[Value],
        keypairs: &[Value],
        floating_ips: &[Value],
    ) -> MetadataIndex {
        let vms_by_uid: HashMap<&str, &Value> = vms
            .iter()
            .filter(|vm| !uid(vm).is_empty())
            .map(|vm| (uid(vm), vm))
            .collect();
        let mut ports_by_vm: HashMap<&str, Vec<(&Value, PortSpec)>> = HashMap::new();
        for port in ports {
            let spec: PortSpec = spec_of(port);
            if spec.device_owner != owner::VM {
                continue;
            }
            let Some(vm) = vms_by_uid.get(spec.device_id.as_str()) else {
                continue;
            };
            if namespace(port) != namespace(vm) {
                tracing::warn!(
                    port = uid(port),
                    vm = uid(vm),
                    "a port names a VM of another namespace as its device; ignored"
                );
                continue;
            }
            ports_by_vm.entry(uid(vm)).or_default().push((port, spec));
        }
        let floating: Vec<FloatingIpSpec> = floating_ips.iter().map(spec_of).collect();

        let mut callers: HashMap<String, HashMap<IpAddr, Arc<InstanceMetadata>>> = HashMap::new();
        let mut claimed_twice: HashSet<(String, IpAddr)> = HashSet::new();
        for (vm_uid, mut vm_ports) in ports_by_vm {
            let Some(vm) = vms_by_uid.get(vm_uid) else {
                continue;
            };
            vm_ports.sort_by(|(a, _), (b, _)| (nic_index(a), uid(a)).cmp(&(nic_index(b), uid(b))));
            let mut base = instance_of(vm, keypairs);
            base.interfaces = vm_ports
                .iter()
                .map(|(port, spec)| Interface {
                    port_id: uid(port).to_owned(),
                    network_id: spec.network_id.clone(),
                    mac_address: spec.mac_address.clone(),
                    fixed_ips: addresses(spec),
                })
                .collect();
            let mut groups: Vec<String> = vm_ports
                .iter()
                .flat_map(|(_, spec)| spec.security_groups.iter().flatten().cloned())
                .collect();
            groups.sort();
            groups.dedup();
            base.security_groups = groups;
            // The VM's floating IPs, each with the network of the port it maps to.
            let vm_floating: Vec<(&str, IpAddr)> = floating
                .iter()
                .filter_map(|fip| {
                    let port_id = fip.port_id.as_deref()?;
                    let (_, spec) = vm_ports.iter().find(|(p, _)| uid(p) == port_id)?;
                    Some((
                        spec.network_id.as_str(),
                        fip.floating_ip_address.parse().ok()?,
                    ))
                })
                .collect();
            let networks: BTreeMap<&str, Vec<IpAddr>> =
                base.interfaces
                    .iter()
                    .fold(BTreeMap::new(), |mut networks, interface| {
                        networks
                            .entry(interface.network_id.as_str())
                            .or_insert_with(Vec::new)
                            .extend(interface.fixed_ips.iter().copied());
                        networks
                    });
            for (network_id, fixed_ips) in networks {
                let floating_ip = vm_floating
                    .iter()
                    .find(|(network, _)| *network == network_id)
                    .or_else(|| vm_floating.first())
                    .map(|(_, ip)| *ip);
                let instance = Arc::new(InstanceMetadata {
                    fixed_ips: fixed_ips.clone(),
                    floating_ip,
                    ..base.clone()
                });
                let on_network = callers.entry(network_id.to_owned()).or_default();
                for ip in fixed_ips {
                    if let Some(other) = on_network.insert(ip, instance.clone())
                        && other.uuid != instance.uuid
                    {
                        claimed_twice.insert((network_id.to_owned(), ip));
                    }
                }
            }
        }
        for (network_id, ip) in claimed_twice {
            tracing::warn!(network = %network_id, %ip, "two VMs claim one address; metadata answers neither");
            if let Some(on_network) = callers.get_mut(&network_id) {
                on_network.remove(&ip);
            }
        }
        MetadataIndex { callers }
    }

    /// The VM that has `ip` on `network_id`, if any.
    pub fn lookup(&self, network_id: &str, ip: IpAddr) -> Option<&InstanceMetadata> {
        self.callers
            .get(network_id)?
            .get(&ip.to_canonical())
            .map(Arc::as_ref)
    }

    /// How many (network, address) pairs are answered.
    pub fn len(&self) -> usize {
        self.callers.values().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests;
