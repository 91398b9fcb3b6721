//! Where each node port's traffic goes: a pure function of the Services, their load
//! balancers and the Nodes, and the decision for one connection or flow.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use ronghe_api_types::loadbalancing::{self as lb, LoadBalancerStatus};
use ronghe_api_types::network::{self as net, annotation};
use serde_json::Value;

/// The transports node ports are claimed for (SCTP Services are refused by the API).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Transport {
    Tcp,
    Udp,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "TCP",
            Transport::Udp => "UDP",
        }
    }

    /// The byte naming it in a relay header.
    pub fn code(self) -> u8 {
        match self {
            Transport::Tcp => b'T',
            Transport::Udp => b'U',
        }
    }

    pub fn from_code(code: u8) -> Option<Transport> {
        match code {
            b'T' => Some(Transport::Tcp),
            b'U' => Some(Transport::Udp),
            _ => None,
        }
    }
}

/// Where one node port's traffic goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The Service, as `namespace/name` (for logs).
    pub service: String,
    /// The Service's ClusterIP and port: its load balancer's listener.
    pub vip: SocketAddr,
    /// `externalTrafficPolicy: Local`: served only on the host running the Service's load
    /// balancer, never relayed from another host.
    pub local_only: bool,
    /// Where the Service's load balancer runs, once placed.
    pub placed: Option<Placement>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The load balancer's uid.
    pub load_balancer: String,
    /// The host running its proxy.
    pub host: String,
    /// Where that host's agent takes relayed node-port traffic, when it says.
    pub relay: Option<Relay>,
}

/// Where a host's agent takes relayed node-port traffic, as its Node says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Relay {
    /// Its tunnel IP and relay port.
    pub address: SocketAddr,
    /// Whether it reads the client from a stream's header (`RNP2`); an agent from before
    /// reads `RNP1` headers only.
    pub names_clients: bool,
}

/// Every node port of the cloud, by transport and port.
pub type Table = BTreeMap<(Transport, u16), Target>;

/// A health-check node port (`spec.healthCheckNodePort` of a LoadBalancer Service with
/// `externalTrafficPolicy: Local`): healthy on the host running the Service's load
/// balancer only, the one host its node ports answer on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    pub namespace: String,
    pub name: String,
    /// The host running the Service's load balancer, once placed.
    pub host: Option<String>,
}

/// Every health-check node port of the cloud.
pub type HealthChecks = BTreeMap<u16, HealthCheck>;

/// The health-check node ports of `services`.
pub fn health_checks(services: &[Value], load_balancers: &[Value]) -> HealthChecks {
    let owned = by_name(load_balancers);
    services
        .iter()
        .filter_map(|service| {
            let (metadata, spec) = (&service["metadata"], &service["spec"]);
            let port = u16::try_from(spec["healthCheckNodePort"].as_u64()?).ok()?;
            if port == 0 || spec["type"].as_str() != Some("LoadBalancer") {
                return None;
            }
            let (namespace, name) = (metadata["namespace"].as_str()?, metadata["name"].as_str()?);
            let host = placement(&owned, namespace, name, service)
                .map(|(_, status)| status.host)
                .filter(|host| !host.is_empty());
            Some((
                port,
                HealthCheck {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                    host,
                },
            ))
        })
        .collect()
}

/// Load balancers not being deleted, by namespace and name.
fn by_name(load_balancers: &[Value]) -> HashMap<(&str, &str), &Value> {
    load_balancers
        .iter()
        .filter(|load_balancer| !lb::deleting(load_balancer))
        .filter_map(|load_balancer| {
            let metadata = &load_balancer["metadata"];
            Some((
                (metadata["namespace"].as_str()?, metadata["name"].as_str()?),
                load_balancer,
            ))
        })
        .collect()
}

/// Service `namespace/name`'s load balancer (owned by it) and its status.
fn placement<'a>(
    owned: &HashMap<(&str, &str), &'a Value>,
    namespace: &str,
    name: &str,
    service: &Value,
) -> Option<(&'a Value, LoadBalancerStatus)> {
    let service_uid = service["metadata"]["uid"].as_str().unwrap_or_default();
    let load_balancer = *owned.get(&(namespace, lb::service_load_balancer_name(name).as_str()))?;
    owned_by(load_balancer, service_uid).then(|| (load_balancer, net::status_of(load_balancer)))
}

/// The node ports of `services` and where their traffic goes.
pub fn table(services: &[Value], load_balancers: &[Value], nodes: &[Value]) -> Table {
    let relays = relays(nodes);
    let owned = by_name(load_balancers);
    let mut table = Table::new();
    for service in services {
        let (metadata, spec) = (&service["metadata"], &service["spec"]);
        if !matches!(spec["type"].as_str(), Some("NodePort" | "LoadBalancer")) {
            continue;
        }
        let (Some(namespace), Some(name)) =
            (metadata["namespace"].as_str(), metadata["name"].as_str())
        else {
            continue;
        };
        let Some(cluster_ip) = spec["clusterIP"]
            .as_str()
            .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
        else {
            continue;
        };
        let placed =
            placement(&owned, namespace, name, service).and_then(|(load_balancer, status)| {
                (!status.host.is_empty()).then(|| Placement {
                    load_balancer: lb::uid(load_balancer).to_owned(),
                    relay: relays.get(status.host.as_str()).copied(),
                    host: status.host,
                })
            });
        let local_only = spec["externalTrafficPolicy"].as_str() == Some("Local");
        for port in spec["ports"].as_array().into_iter().flatten() {
            let transport = match port["protocol"].as_str().unwrap_or("TCP") {
                "TCP" => Transport::Tcp,
                "UDP" => Transport::Udp,
                _ => continue,
            };
            let (Some(node_port), Some(service_port)) = (
                port["nodePort"]
                    .as_u64()
                    .and_then(|p| u16::try_from(p).ok()),
                port["port"].as_u64().and_then(|p| u16::try_from(p).ok()),
            ) else {
                continue;
            };
            table
                .entry((transport, node_port))
                .or_insert_with(|| Target {
                    service: format!("{namespace}/{name}"),
                    vip: SocketAddr::from((cluster_ip, service_port)),
                    local_only,
                    placed: placed.clone(),
                });
        }
    }
    table
}

fn owned_by(object: &Value, uid: &str) -> bool {
    !uid.is_empty()
        && object["metadata"]["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|owner| owner["uid"].as_str() == Some(uid))
}

/// The addresses other hosts' agents relay from: the Nodes' tunnel IPs (whether or not
/// they take relayed traffic themselves).
pub fn peers(nodes: &[Value]) -> HashSet<IpAddr> {
    nodes
        .iter()
        .filter_map(|node| {
            node["metadata"]["annotations"][annotation::TUNNEL_IP]
                .as_str()?
                .parse()
                .ok()
        })
        .collect()
}

/// Each Node's relay: its tunnel IP and the relay port it announces.
fn relays(nodes: &[Value]) -> HashMap<&str, Relay> {
    nodes
        .iter()
        .filter_map(|node| {
            let annotations = &node["metadata"]["annotations"];
            let ip: IpAddr = annotations[annotation::TUNNEL_IP].as_str()?.parse().ok()?;
            let port: u16 = annotations[annotation::NODE_PORT_RELAY]
                .as_str()?
                .parse()
                .ok()?;
            let names_clients = annotations[annotation::NODE_PORT_RELAY_CLIENTS] == "true";
            let relay = Relay {
                address: SocketAddr::new(ip, port),
                names_clients,
            };
            Some((node["metadata"]["name"].as_str()?, relay))
        })
        .collect()
}

/// What to do with a connection or flow that came to a node port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// To the VIP, from inside the netns of load balancer `load_balancer`, run here.
    Local {
        load_balancer: String,
        vip: SocketAddr,
    },
    /// To the agent of the host running the load balancer.
    Relay(Relay),
    Refuse(&'static str),
}

/// Where traffic for `target` goes from an agent running `hosts`; `relayed` traffic came
/// from another host's agent and is only delivered here, so it can never go round.
pub fn route(target: Option<&Target>, hosts: &HashSet<String>, relayed: bool) -> Route {
    let Some(target) = target else {
        return Route::Refuse("no Service has this node port");
    };
    let Some(placed) = &target.placed else {
        return Route::Refuse("the Service's load balancer is not placed yet");
    };
    if hosts.contains(&placed.host) {
        return Route::Local {
            load_balancer: placed.load_balancer.clone(),
            vip: target.vip,
        };
    }
    if relayed {
        return Route::Refuse("relayed here, but the load balancer runs elsewhere");
    }
    if target.local_only {
        return Route::Refuse(
            "externalTrafficPolicy is Local and the load balancer runs elsewhere",
        );
    }
    match placed.relay {
        Some(relay) => Route::Relay(relay),
        None => Route::Refuse("the load balancer's host announces no relay"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn service(name: &str, kind: &str, ports: Value) -> Value {
        json!({
            "metadata": {"namespace": "admin", "name": name, "uid": format!("uid-{name}")},
            "spec": {"type": kind, "clusterIP": "10.96.0.10", "ports": ports},
        })
    }

    fn load_balancer(service: &str, owner: &str, host: &str) -> Value {
        json!({
            "metadata": {
                "namespace": "admin",
                "name": format!("svc-{service}"),
                "uid": format!("lb-{service}"),
                "ownerReferences": [{"uid": owner}],
            },
            "status": {"host": host},
        })
    }

    fn node(name: &str, ip: &str, relay: Option<&str>) -> Value {
        let mut annotations = json!({annotation::TUNNEL_IP: ip});
        if let Some(port) = relay {
            annotations[annotation::NODE_PORT_RELAY] = json!(port);
            annotations[annotation::NODE_PORT_RELAY_CLIENTS] = json!("true");
        }
        json!({"metadata": {"name": name, "annotations": annotations}})
    }

    #[test]
    fn node_ports_lead_to_their_services_load_balancer_and_its_hosts_relay() {
        let services = [
            service(
                "web",
                "NodePort",
                json!([
                    {"port": 80, "nodePort": 30080, "protocol": "TCP"},
                    {"port": 53, "nodePort": 30053, "protocol": "UDP"},
                    {"port": 81},
                ]),
            ),
            service(
                "lb",
                "LoadBalancer",
                json!([{"port": 443, "nodePort": 30443}]),
            ),
            // Not a node-port type: its stale node port is nobody's.
            service(
                "plain",
                "ClusterIP",
                json!([{"port": 80, "nodePort": 30999}]),
            ),
            // Its load balancer is a previous Service's of the same name.
            service(
                "stale",
                "NodePort",
                json!([{"port": 80, "nodePort": 30100}]),
            ),
        ];
        let load_balancers = [
            load_balancer("web", "uid-web", "h1"),
            load_balancer("lb", "uid-lb", "h2"),
            load_balancer("stale", "uid-gone", "h1"),
        ];
        let nodes = [
            node("h1", "10.200.0.1", Some("10251")),
            node("h2", "10.200.0.2", None),
        ];
        let table = table(&services, &load_balancers, &nodes);
        assert_eq!(
            table.keys().copied().collect::<Vec<_>>(),
            [
                (Transport::Tcp, 30080),
                (Transport::Tcp, 30100),
                (Transport::Tcp, 30443),
                (Transport::Udp, 30053),
            ]
        );
        let web = &table[&(Transport::Tcp, 30080)];
        assert_eq!(web.vip, "10.96.0.10:80".parse().unwrap());
        assert_eq!(
            web.placed,
            Some(Placement {
                load_balancer: "lb-web".into(),
                host: "h1".into(),
                relay: Some(Relay {
                    address: "10.200.0.1:10251".parse().unwrap(),
                    names_clients: true,
                }),
            })
        );
        assert_eq!(
            table[&(Transport::Udp, 30053)].vip,
            "10.96.0.10:53".parse().unwrap()
        );
        assert_eq!(table[&(Transport::Tcp, 30100)].placed, None);
        let placed = table[&(Transport::Tcp, 30443)].placed.clone().unwrap();
        assert_eq!((placed.host.as_str(), placed.relay), ("h2", None));
    }

    #[test]
    fn health_check_ports_say_where_their_services_load_balancer_runs() {
        let mut local = service(
            "web",
            "LoadBalancer",
            json!([{"port": 80, "nodePort": 30080}]),
        );
        local["spec"]["externalTrafficPolicy"] = json!("Local");
        local["spec"]["healthCheckNodePort"] = json!(31000);
        let mut unplaced = service("new", "LoadBalancer", json!([]));
        unplaced["spec"]["healthCheckNodePort"] = json!(31001);
        let checks = health_checks(
            &[local, unplaced, service("plain", "ClusterIP", json!([]))],
            &[load_balancer("web", "uid-web", "h1")],
        );
        assert_eq!(
            checks,
            HealthChecks::from([
                (
                    31000,
                    HealthCheck {
                        namespace: "admin".into(),
                        name: "web".into(),
                        host: Some("h1".into()),
                    }
                ),
                (
                    31001,
                    HealthCheck {
                        namespace: "admin".into(),
                        name: "new".into(),
                        host: None,
                    }
                ),
            ])
        );
    }

    #[test]
    fn a_relay_names_clients_only_where_its_node_says_it_reads_them() {
        let mut older = node("h3", "10.200.0.3", Some("10251"));
        older["metadata"]["annotations"]
            .as_object_mut()
            .unwrap()
            .remove(annotation::NODE_PORT_RELAY_CLIENTS);
        let nodes = [node("h1", "10.200.0.1", Some("10251")), older];
        let found = relays(&nodes);
        assert!(found["h1"].names_clients);
        assert!(!found["h3"].names_clients, "an agent from before");
        assert_eq!(found["h3"].address, "10.200.0.3:10251".parse().unwrap());
    }

    #[test]
    fn traffic_is_delivered_where_the_load_balancer_runs_and_relayed_at_most_once() {
        let relay = Relay {
            address: "10.200.0.1:10251".parse().unwrap(),
            names_clients: true,
        };
        let target = Target {
            service: "admin/web".into(),
            vip: "10.96.0.10:80".parse().unwrap(),
            local_only: false,
            placed: Some(Placement {
                load_balancer: "lb-web".into(),
                host: "h1".into(),
                relay: Some(relay),
            }),
        };
        let here: HashSet<String> = ["h1".to_owned()].into();
        let elsewhere: HashSet<String> = ["h2".to_owned()].into();
        let local = Route::Local {
            load_balancer: "lb-web".into(),
            vip: target.vip,
        };
        assert_eq!(route(Some(&target), &here, false), local);
        assert_eq!(route(Some(&target), &here, true), local);
        assert_eq!(route(Some(&target), &elsewhere, false), Route::Relay(relay));
        assert!(matches!(
            route(Some(&target), &elsewhere, true),
            Route::Refuse(_)
        ));
        let local_only = Target {
            local_only: true,
            ..target.clone()
        };
        assert!(matches!(
            route(Some(&local_only), &elsewhere, false),
            Route::Refuse(_)
        ));
        assert_eq!(route(Some(&local_only), &here, false), local);
        let unplaced = Target {
            placed: None,
            ..target
        };
        assert!(matches!(
            route(Some(&unplaced), &here, false),
            Route::Refuse(_)
        ));
        assert!(matches!(route(None, &here, false), Route::Refuse(_)));
    }
}
