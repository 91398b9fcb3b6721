//! What dnsmasq is told for one network's service (pure): its command line, its hosts
//! file (the static leases) and its options file. The command line holds only what needs
//! a restart to change (interface, files, subnets); hosts and options are files dnsmasq
//! rereads on SIGHUP.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;

use crate::plan::ServicePlan;

/// dnsmasq's files for one network, all in one directory of the state directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsmasqFiles {
    pub dir: PathBuf,
}

impl DnsmasqFiles {
    pub fn new(dir: &Path) -> Self {
        DnsmasqFiles { dir: dir.into() }
    }

    pub fn pid(&self) -> PathBuf {
        self.dir.join("dnsmasq.pid")
    }

    pub fn hosts(&self) -> PathBuf {
        self.dir.join("hosts")
    }

    pub fn options(&self) -> PathBuf {
        self.dir.join("options")
    }

    pub fn leases(&self) -> PathBuf {
        self.dir.join("leases")
    }

    pub fn log(&self) -> PathBuf {
        self.dir.join("dnsmasq.log")
    }
}

/// The IPv4 subnets served, with the tag their options carry.
fn served_subnets(
    service: &ServicePlan,
) -> impl Iterator<Item = (String, ipnet::Ipv4Net, usize)> + '_ {
    service
        .dhcp
        .iter()
        .enumerate()
        .filter_map(|(index, subnet)| match subnet.cidr {
            IpNet::V4(net) => Some((format!("subnet{index}"), net.trunc(), index)),
            IpNet::V6(_) => None,
        })
}

/// dnsmasq's arguments (after the program name): DHCP only (`--port=0` turns DNS off),
/// static leases only, on `interface` alone, daemonized with a pid file.
pub fn dnsmasq_args(interface: &str, files: &DnsmasqFiles, service: &ServicePlan) -> Vec<String> {
    let path = |p: PathBuf| p.display().to_string();
    let mut args = vec![
        "--conf-file=/dev/null".to_string(),
        "--no-hosts".into(),
        "--no-resolv".into(),
        "--port=0".into(),
        "--user=root".into(),
        "--group=root".into(),
        format!("--interface={interface}"),
        "--except-interface=lo".into(),
        "--bind-interfaces".into(),
        format!("--pid-file={}", path(files.pid())),
        format!("--dhcp-leasefile={}", path(files.leases())),
        format!("--dhcp-hostsfile={}", path(files.hosts())),
        format!("--dhcp-optsfile={}", path(files.options())),
        format!("--log-facility={}", path(files.log())),
        "--dhcp-authoritative".into(),
        "--no-ping".into(),
    ];
    for (tag, net, index) in served_subnets(service) {
        // dnsmasq refuses leases shorter than two minutes.
        let lease = service.dhcp[index].lease_seconds.max(120);
        args.push(format!(
            "--dhcp-range=set:{tag},{},static,{},{lease}s",
            net.network(),
            net.netmask()
        ));
    }
    args
}

/// `--dhcp-hostsfile`: one static lease per line, `mac,ip[,hostname]`. IPv6 hosts are
/// left out (no DHCPv6 yet).
pub fn hosts_file(service: &ServicePlan) -> String {
    let mut out = String::new();
    for host in &service.hosts {
        let IpAddr::V4(ip) = host.ip else {
            continue;
        };
        out.push_str(&format!("{},{ip}", host.mac));
        if let Some(hostname) = host.hostname.as_deref().filter(|h| is_hostname(h)) {
            out.push(',');
            out.push_str(hostname);
        }
        out.push('\n');
    }
    out
}

/// `--dhcp-optsfile`: per subnet tag, the router (3), DNS servers (6), the domain name
/// (15) and search list (119), classless static routes (121) and MTU (26). Router and DNS
/// are always written, empty when there are none, because dnsmasq otherwise offers its
/// own address for both. Domains that are not plain DNS names are left out.
pub fn options_file(service: &ServicePlan) -> String {
    let mut out = String::new();
    for (tag, _, index) in served_subnets(service) {
        let subnet = &service.dhcp[index];
        let gateway = subnet.gateway.filter(IpAddr::is_ipv4);
        match gateway {
            Some(gateway) => out.push_str(&format!("tag:{tag},option:router,{gateway}\n")),
            None => out.push_str(&format!("tag:{tag},option:router\n")),
        }
        let dns: Vec<String> = subnet
            .dns_servers
            .iter()
            .filter(|ip| ip.is_ipv4())
            .map(ToString::to_string)
            .collect();
        if dns.is_empty() {
            out.push_str(&format!("tag:{tag},option:dns-server\n"));
        } else {
            out.push_str(&format!("tag:{tag},option:dns-server,{}\n", dns.join(",")));
        }
        if let Some(domain) = subnet.domain.as_deref().filter(|d| is_hostname(d)) {
            out.push_str(&format!("tag:{tag},option:domain-name,{domain}\n"));
        }
        let search: Vec<&str> = subnet
            .search
            .iter()
            .map(String::as_str)
            .filter(|d| is_hostname(d))
            .collect();
        if !search.is_empty() {
            out.push_str(&format!(
                "tag:{tag},option:domain-search,{}\n",
                search.join(",")
            ));
        }
        let mut routes: Vec<String> = subnet
            .host_routes
            .iter()
            .filter(|(destination, via)| destination.addr().is_ipv4() && via.is_ipv4())
            .map(|(destination, via)| format!("{},{via}", destination.trunc()))
            .collect();
        if !routes.is_empty() {
            // RFC 3442: a client given option 121 ignores option 3, so the default route
            // must be among the classless routes.
            if let Some(gateway) = gateway {
                routes.push(format!("0.0.0.0/0,{gateway}"));
            }
            out.push_str(&format!(
                "tag:{tag},option:classless-static-route,{}\n",
                routes.join(",")
            ));
        }
        if let Some(mtu) = subnet.mtu {
            out.push_str(&format!("tag:{tag},option:mtu,{mtu}\n"));
        }
    }
    out
}

/// Hostnames go into a comma-separated file: letters, digits, '-' and '.' only.
fn is_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::*;

    fn service() -> ServicePlan {
        ServicePlan {
            mac: "fa:16:3e:99:00:02".parse().unwrap(),
            addresses: vec!["10.0.0.2/24".parse().unwrap()],
            dhcp: vec![
                DhcpSubnet {
                    cidr: "10.0.0.0/24".parse().unwrap(),
                    gateway: None,
                    dns_servers: vec!["10.0.0.2".parse().unwrap()],
                    domain: Some("openstacklocal".into()),
                    search: vec![
                        "openstacklocal".into(),
                        "p.svc.cluster.local".into(),
                        "bad,domain".into(),
                    ],
                    host_routes: vec![(
                        "169.254.169.254/32".parse().unwrap(),
                        "10.0.0.2".parse().unwrap(),
                    )],
                    lease_seconds: 86400,
                    mtu: Some(1450),
                },
                DhcpSubnet {
                    cidr: "fd00::/64".parse().unwrap(),
                    gateway: None,
                    dns_servers: vec![],
                    domain: None,
                    search: vec![],
                    host_routes: vec![],
                    lease_seconds: 60,
                    mtu: None,
                },
                DhcpSubnet {
                    cidr: "10.1.0.0/16".parse().unwrap(),
                    gateway: Some("10.1.0.1".parse().unwrap()),
                    dns_servers: vec!["8.8.8.8".parse().unwrap(), "fd00::53".parse().unwrap()],
                    domain: Some("bad domain".into()),
                    search: vec![],
                    host_routes: vec![(
                        "192.168.0.0/16".parse().unwrap(),
                        "10.1.0.254".parse().unwrap(),
                    )],
                    lease_seconds: 60,
                    mtu: None,
                },
            ],
            hosts: vec![
                DhcpHost {
                    mac: "fa:16:3e:00:00:05".parse().unwrap(),
                    ip: "10.0.0.5".parse().unwrap(),
                    hostname: Some("vm-1".into()),
                },
                DhcpHost {
                    mac: "fa:16:3e:00:00:06".parse().unwrap(),
                    ip: "10.1.0.6".parse().unwrap(),
                    hostname: Some("bad,name".into()),
                },
                DhcpHost {
                    mac: "fa:16:3e:00:00:07".parse().unwrap(),
                    ip: "fd00::7".parse().unwrap(),
                    hostname: None,
                },
            ],
        }
    }

    #[test]
    fn command_line_has_one_range_per_ipv4_subnet() {
        let files = DnsmasqFiles::new(Path::new("/state/rh-net-x"));
        let args = dnsmasq_args("ns-0123456789", &files, &service());
        assert!(args.contains(&"--port=0".to_string()));
        assert!(args.contains(&"--interface=ns-0123456789".to_string()));
        assert!(args.contains(&"--pid-file=/state/rh-net-x/dnsmasq.pid".to_string()));
        let ranges: Vec<&String> = args
            .iter()
            .filter(|a| a.starts_with("--dhcp-range"))
            .collect();
        assert_eq!(
            ranges,
            [
                "--dhcp-range=set:subnet0,10.0.0.0,static,255.255.255.0,86400s",
                "--dhcp-range=set:subnet2,10.1.0.0,static,255.255.0.0,120s"
            ]
        );
    }

    #[test]
    fn hosts_and_options_files() {
        assert_eq!(
            hosts_file(&service()),
            "fa:16:3e:00:00:05,10.0.0.5,vm-1\nfa:16:3e:00:00:06,10.1.0.6\n"
        );
        assert_eq!(
            options_file(&service()),
            "tag:subnet0,option:router\n\
             tag:subnet0,option:dns-server,10.0.0.2\n\
             tag:subnet0,option:domain-name,openstacklocal\n\
             tag:subnet0,option:domain-search,openstacklocal,p.svc.cluster.local\n\
             tag:subnet0,option:classless-static-route,169.254.169.254/32,10.0.0.2\n\
             tag:subnet0,option:mtu,1450\n\
             tag:subnet2,option:router,10.1.0.1\n\
             tag:subnet2,option:dns-server,8.8.8.8\n\
             tag:subnet2,option:classless-static-route,192.168.0.0/16,10.1.0.254,0.0.0.0/0,10.1.0.1\n"
        );
    }
}
