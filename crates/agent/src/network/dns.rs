//! Cluster DNS: the names a pod or VM on a tenant network resolves, served by the agent in
//! each network's service netns on the `network:dhcp` port's addresses, port 53.
//!
//! A network's Kubernetes namespace is its project. On it, `cluster.local` holds that
//! project's Services only (`SERVICE.NAMESPACE.svc.cluster.local` → the ClusterIPs, or a
//! headless Service's ready endpoints, `HOSTNAME.SERVICE...` for endpoints with a
//! hostname, SRV for named ports, an ExternalName Service's CNAME, followed here or
//! upstream to the addresses; `A-B-C-D.NAMESPACE.pod.cluster.local` for its pods' ports,
//! as CoreDNS's `pods verified`); a name in another namespace is NXDOMAIN, since tenants
//! are isolated and their service subnets overlap. The network's domain (its `dns_domain`,
//! or Neutron's `openstacklocal`) holds its ports by `dns_name`, VMs' ports by the VM's
//! hostname when they have none, and every address as Neutron's `host-A-B-C-D`. Reverse
//! names of those addresses are answered too; anything else goes to the host's resolvers.
//!
//! * this file: [`DnsIndex`], built with no I/O from the API's objects, and the
//!   names handed to workloads ([`hostname_of`], [`Resolvers`], [`vm_search_list`]);
//! * `answer.rs`: a query's bytes to the reply's bytes (or "forward it"), with no I/O;
//! * `serve.rs`: the UDP and TCP server, bounded, forwarding to upstream resolvers.

mod answer;
mod serve;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ronghe_api_types::network::{NetworkSpec, PortSpec, owner, spec_of};
use ronghe_api_types::validation::is_dns1123_label;
use serde_json::Value;

use super::metadata::sanitize_hostname;
use super::{ClusterDns, name, namespace, text, uid};

pub use answer::{Forward, Reply, Transport, answer};
pub use serve::serve;

/// The cluster's domain, as kubelet's `--cluster-domain` defaults it.
pub const CLUSTER_DOMAIN: &str = "cluster.local";
/// The domain of a network without a `dns_domain`, as Neutron's `dns_domain` default.
pub const DEFAULT_DOMAIN: &str = "openstacklocal";
/// The label Kubernetes puts on an EndpointSlice naming its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// At most this many upstream resolvers are tried, as glibc reads at most three.
const MAX_UPSTREAMS: usize = 3;

/// What one name holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Data {
    Address(IpAddr),
    Srv {
        port: u16,
        target: String,
    },
    Ptr(String),
    /// A CNAME: an ExternalName Service's name for its external name.
    Alias(String),
}

/// The names of one zone, lower case and without the trailing dot.
#[derive(Clone, Debug, Default)]
pub(crate) struct Names {
    records: HashMap<String, Vec<Data>>,
    /// Every proper suffix of a name above (`svc.cluster.local`, ...): names that exist
    /// because names below them do, so they answer NODATA rather than NXDOMAIN.
    ancestors: HashSet<String>,
}

impl Names {
    fn add(&mut self, name: String, data: Data) {
        let records = self.touch(name);
        if !records.contains(&data) {
            records.push(data);
        }
    }

    /// A name that exists, maybe with no records (a Service whose address is not there
    /// yet).
    fn touch(&mut self, name: String) -> &mut Vec<Data> {
        let mut rest = name.as_str();
        while let Some((_, parent)) = rest.split_once('.') {
            if !self.ancestors.insert(parent.to_owned()) {
                break;
            }
            rest = parent;
        }
        self.records.entry(name).or_default()
    }

    /// The records of `name`, empty for a name that exists with none, None for a name
    /// that does not exist.
    pub(crate) fn lookup(&self, name: &str) -> Option<&[Data]> {
        match self.records.get(name) {
            Some(records) => Some(records),
            None => self.ancestors.contains(name).then_some(&[]),
        }
    }
}

/// What one network's workloads may resolve.
#[derive(Clone, Debug)]
pub(crate) struct NetworkNames {
    /// The network's namespace, whose Services it sees.
    pub project: String,
    /// The network's domain, lower case without the trailing dot.
    pub domain: String,
    /// Its ports' names in `domain` and their reverse names.
    pub hosts: Names,
}

/// Who resolves what: network uid → its names, project → its Services' names, and the
/// upstream resolvers for the rest.
#[derive(Clone, Debug, Default)]
pub struct DnsIndex {
    pub(crate) networks: HashMap<String, NetworkNames>,
    pub(crate) projects: HashMap<String, Arc<Names>>,
    pub(crate) upstreams: Vec<SocketAddr>,
}

/// The API objects the index is built from (all namespaces).
#[derive(Clone, Copy, Debug, Default)]
pub struct DnsObjects<'a> {
    pub networks: &'a [Value],
    pub ports: &'a [Value],
    pub vms: &'a [Value],
    pub services: &'a [Value],
    pub endpoint_slices: &'a [Value],
}

/// A DNS label as Kubernetes and Neutron allow one (RFC 1123).
fn is_label(label: &str) -> bool {
    is_dns1123_label(label).is_empty()
}

/// A domain lower case, without the trailing dot, if every label is one.
fn normalize_domain(domain: &str) -> Option<String> {
    let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    (!domain.is_empty() && domain.split('.').all(is_label)).then_some(domain)
}

/// The domain of a network: its `dns_domain`, unless that is missing, not a DNS name,
/// or inside the cluster's own zone or the reverse zones (which the resolver answers
/// for itself); Neutron's default otherwise.
pub fn network_domain(spec: &NetworkSpec) -> String {
    normalize_domain(&spec.dns_domain)
        .filter(|domain| {
            let reserved = [CLUSTER_DOMAIN, "in-addr.arpa", "ip6.arpa"];
            !reserved
                .iter()
                .any(|r| domain == r || domain.ends_with(&format!(".{r}")))
        })
        .unwrap_or_else(|| DEFAULT_DOMAIN.to_owned())
}

/// Neutron's name for an address of a port without a `dns_name`.
fn address_hostname(ip: IpAddr) -> String {
    format!("host-{}", ip.to_string().replace(['.', ':'], "-"))
}

/// The reverse name of an address (`5.0.0.10.in-addr.arpa`).
pub(crate) fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}.in-addr.arpa")
        }
        IpAddr::V6(v6) => {
            let mut name = String::with_capacity(72);
            for byte in v6.octets().iter().rev() {
                name.push_str(&format!("{:x}.{:x}.", byte & 0xf, byte >> 4));
            }
            name.push_str("ip6.arpa");
            name
        }
    }
}

/// A port's hostname in its network's domain: its `dns_name` when that is a DNS label,
/// else, for a VM's port, the VM's hostname (Nova's sanitized name, as the metadata
/// service and DHCP give it). Nova sets `dns_name` to that hostname itself where Neutron
/// has the DNS extension; here the fallback makes it so without.
pub fn hostname_of(spec: &PortSpec, vm: Option<&Value>) -> Option<String> {
    let dns_name = spec.dns_name.trim_end_matches('.').to_ascii_lowercase();
    if is_label(&dns_name) {
        return Some(dns_name);
    }
    let vm = vm.filter(|_| spec.device_owner == owner::VM)?;
    Some(sanitize_hostname(name(vm), uid(vm)))
}

fn addresses(spec: &PortSpec) -> Vec<IpAddr> {
    spec.fixed_ips
        .iter()
        .filter_map(|fixed| fixed.ip_address.parse::<IpAddr>().ok())
        .map(|ip| ip.to_canonical())
        .collect()
}

/// The upstream resolvers a `resolv.conf` names (port 53, at most three).
pub fn upstreams_from_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == "nameserver").then_some(())?;
            let ip: IpAddr = words.next()?.parse().ok()?;
            Some(SocketAddr::new(ip, 53))
        })
        .take(MAX_UPSTREAMS)
        .collect()
}

impl DnsIndex {
    /// Indexes every network's names and every project's Services.
    pub fn build(objects: DnsObjects<'_>, upstreams: Vec<SocketAddr>) -> DnsIndex {
        let mut networks: HashMap<String, NetworkNames> = objects
            .networks
            .iter()
            .filter(|network| !uid(network).is_empty())
            .map(|network| {
                let spec: NetworkSpec = spec_of(network);
                let names = NetworkNames {
                    project: namespace(network).to_owned(),
                    domain: network_domain(&spec),
                    hosts: Names::default(),
                };
                (uid(network).to_owned(), names)
            })
            .collect();
        let vms: HashMap<&str, &Value> = objects.vms.iter().map(|vm| (uid(vm), vm)).collect();
        let mut projects: HashMap<String, Names> = HashMap::new();
        for port in objects.ports {
            let spec: PortSpec = spec_of(port);
            let Some(network) = networks.get_mut(&spec.network_id) else {
                continue;
            };
            // A VM's name counts only for its own project's ports, as in metadata.
            let vm = vms
                .get(spec.device_id.as_str())
                .copied()
                .filter(|vm| namespace(vm) == namespace(port));
            let hostname = hostname_of(&spec, vm);
            let domain = network.domain.clone();
            let project = namespace(port);
            let pod = spec.device_owner == owner::POD && is_label(project);
            for ip in addresses(&spec) {
                if pod {
                    // CoreDNS's `pods verified`: a pod's dashed address in its namespace.
                    let dashed = ip.to_string().replace(['.', ':'], "-");
                    let name = format!("{dashed}.{project}.pod.{CLUSTER_DOMAIN}");
                    projects
                        .entry(project.to_owned())
                        .or_default()
                        .add(name, Data::Address(ip));
                }
                let by_address = format!("{}.{domain}", address_hostname(ip));
                network.hosts.add(by_address.clone(), Data::Address(ip));
                let canonical = match &hostname {
                    Some(hostname) => {
                        let fqdn = format!("{hostname}.{domain}");
                        network.hosts.add(fqdn.clone(), Data::Address(ip));
                        fqdn
                    }
                    None => by_address,
                };
                network.hosts.add(reverse_name(ip), Data::Ptr(canonical));
            }
        }
        let mut slices: HashMap<(&str, &str), Vec<&Value>> = HashMap::new();
        for slice in objects.endpoint_slices {
            let service = slice
                .pointer("/metadata/labels")
                .and_then(|labels| labels.get(SERVICE_NAME_LABEL))
                .and_then(Value::as_str)
                .unwrap_or_default();
            slices
                .entry((namespace(slice), service))
                .or_default()
                .push(slice);
        }
        for service in objects.services {
            let (project, service_name) = (namespace(service), name(service));
            if !is_label(project) || !is_label(service_name) {
                continue;
            }
            let names = projects.entry(project.to_owned()).or_default();
            let of_service = slices
                .get(&(project, service_name))
                .map(Vec::as_slice)
                .unwrap_or_default();
            add_service(names, service, of_service);
        }
        DnsIndex {
            networks,
            projects: projects
                .into_iter()
                .map(|(project, names)| (project, Arc::new(names)))
                .collect(),
            upstreams,
        }
    }

    /// The names of network `network_id`, if the index knows it.
    pub(crate) fn network(&self, network_id: &str) -> Option<&NetworkNames> {
        self.networks.get(network_id)
    }

    /// The Service names of `project` (none when it has no Services).
    pub(crate) fn project(&self, project: &str) -> Option<&Names> {
        self.projects.get(project).map(Arc::as_ref)
    }

    pub fn upstreams(&self) -> &[SocketAddr] {
        &self.upstreams
    }
}

/// A Service's names: `SERVICE.NAMESPACE.svc.cluster.local` and, for its named ports,
/// `_PORT._PROTO.SERVICE...` SRV records; a headless Service's ready endpoints, each
/// also under its hostname (or its dashed address) for SRV targets.
fn add_service(names: &mut Names, service: &Value, slices: &[&Value]) {
    let fqdn = format!(
        "{}.{}.svc.{CLUSTER_DOMAIN}",
        name(service),
        namespace(service)
    );
    names.touch(fqdn.clone());
    if text(service, "/spec/type") == "ExternalName" {
        if let Some(target) = normalize_domain(text(service, "/spec/externalName")) {
            names.add(fqdn, Data::Alias(target));
        }
        return;
    }
    let mut cluster_ips: Vec<&str> = service
        .pointer("/spec/clusterIPs")
        .and_then(Value::as_array)
        .map(|ips| ips.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if cluster_ips.is_empty() {
        cluster_ips.push(text(service, "/spec/clusterIP"));
    }
    let headless = cluster_ips.first() == Some(&"None");
    if !headless {
        for ip in cluster_ips
            .iter()
            .filter_map(|ip| ip.parse::<IpAddr>().ok())
        {
            names.add(fqdn.clone(), Data::Address(ip));
            names.add(reverse_name(ip), Data::Ptr(fqdn.clone()));
        }
        for (port_name, protocol, port) in named_ports(service.pointer("/spec/ports")) {
            names.add(
                format!("_{port_name}._{protocol}.{fqdn}"),
                Data::Srv {
                    port,
                    target: fqdn.clone(),
                },
            );
        }
        return;
    }
    let publish_not_ready = service
        .pointer("/spec/publishNotReadyAddresses")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    for slice in slices {
        let ports = named_ports(slice.get("ports"));
        let endpoints = slice
            .get("endpoints")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for endpoint in endpoints {
            // Kubernetes: a missing `ready` is to be read as ready.
            let ready = endpoint
                .pointer("/conditions/ready")
                .and_then(Value::as_bool)
                .unwrap_or(true);
            if !ready && !publish_not_ready {
                continue;
            }
            let hostname = endpoint
                .get("hostname")
                .and_then(Value::as_str)
                .filter(|h| is_label(h));
            let ips = endpoint
                .get("addresses")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .filter_map(Value::as_str)
                .filter_map(|ip| ip.parse::<IpAddr>().ok());
            for ip in ips {
                names.add(fqdn.clone(), Data::Address(ip));
                let target = match hostname {
                    Some(hostname) => format!("{hostname}.{fqdn}"),
                    None => format!("{}.{fqdn}", ip.to_string().replace(['.', ':'], "-")),
                };
                names.add(target.clone(), Data::Address(ip));
                for (port_name, protocol, port) in &ports {
                    names.add(
                        format!("_{port_name}._{protocol}.{fqdn}"),
                        Data::Srv {
                            port: *port,
                            target: target.clone(),
                        },
                    );
                }
            }
        }
    }
}

/// The named ports of a Service or EndpointSlice: (name, lower-case protocol, port).
fn named_ports(ports: Option<&Value>) -> Vec<(String, String, u16)> {
    ports
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|port| {
            let port_name = port.get("name").and_then(Value::as_str)?;
            let number = u16::try_from(port.get("port")?.as_u64()?).ok()?;
            let protocol = port
                .get("protocol")
                .and_then(Value::as_str)
                .unwrap_or("TCP")
                .to_ascii_lowercase();
            (is_label(port_name) && is_label(&protocol))
                .then(|| (port_name.to_owned(), protocol, number))
        })
        .collect()
}

/// Where the workloads of each subnet find the cluster's resolver: the network's DHCP
/// port's address there (where the agent serves DNS on every host), with the network's
/// domain.
#[derive(Clone, Debug, Default)]
pub struct Resolvers {
    by_subnet: HashMap<String, IpAddr>,
    domains: HashMap<String, String>,
}

impl Resolvers {
    pub fn build(networks: &[Value], ports: &[Value]) -> Resolvers {
        let mut by_subnet = HashMap::new();
        for port in ports {
            let spec: PortSpec = spec_of(port);
            if spec.device_owner != owner::DHCP {
                continue;
            }
            for fixed in spec.fixed_ips {
                if let Ok(ip) = fixed.ip_address.parse::<IpAddr>() {
                    by_subnet.insert(fixed.subnet_id, ip);
                }
            }
        }
        let domains = networks
            .iter()
            .map(|network| (uid(network).to_owned(), network_domain(&spec_of(network))))
            .collect();
        Resolvers { by_subnet, domains }
    }

    /// The resolver of a pod in namespace `project` whose (first) port is `port`: the one
    /// on the subnet of its first IPv4 address, with Kubernetes' search list and the
    /// network's domain. None when that subnet has no DHCP port.
    pub fn for_pod(&self, port: &PortSpec, project: &str) -> Option<ClusterDns> {
        let nameserver = port
            .fixed_ips
            .iter()
            .filter(|fixed| {
                fixed
                    .ip_address
                    .parse::<IpAddr>()
                    .is_ok_and(|ip| ip.is_ipv4())
            })
            .find_map(|fixed| self.by_subnet.get(&fixed.subnet_id))
            .filter(|ip| ip.is_ipv4())?;
        let mut searches = vec![
            format!("{project}.svc.{CLUSTER_DOMAIN}"),
            format!("svc.{CLUSTER_DOMAIN}"),
            CLUSTER_DOMAIN.to_owned(),
        ];
        searches.extend(self.domains.get(&port.network_id).cloned());
        let mut seen = HashSet::new();
        searches.retain(|domain| seen.insert(domain.clone()));
        Some(ClusterDns {
            nameserver: *nameserver,
            searches,
        })
    }
}

/// The domain search list DHCP hands a VM of `project` when its resolver is the
/// cluster's: its network's domain first (VMs find each other by hostname), then
/// Kubernetes' Service domains.
pub fn vm_search_list(domain: &str, project: &str) -> Vec<String> {
    let mut searches = vec![domain.to_owned()];
    if is_label(project) {
        searches.push(format!("{project}.svc.{CLUSTER_DOMAIN}"));
    }
    searches.push(format!("svc.{CLUSTER_DOMAIN}"));
    searches.push(CLUSTER_DOMAIN.to_owned());
    let mut seen = HashSet::new();
    searches.retain(|domain| seen.insert(domain.clone()));
    searches
}

#[cfg(test)]
mod tests;
