//! The DNS index and answers with no I/O, then the server on loopback sockets against a
//! fake upstream resolver.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use ronghe_api_types::network::{PortSpec, owner};
use ronghe_hostnet::DnsSockets;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use super::answer::{Forward, MAX_UDP_PAYLOAD, Reply, Transport, answer};
use super::serve::{Limits, serve_with};
use super::*;

fn network(uid: &str, namespace: &str, domain: &str) -> Value {
    json!({"metadata": {"uid": uid, "name": uid, "namespace": namespace},
           "spec": {"dnsDomain": domain}})
}

fn port(uid: &str, namespace: &str, spec: Value) -> Value {
    json!({"metadata": {"uid": uid, "name": uid, "namespace": namespace}, "spec": spec})
}

fn service(namespace: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": name, "namespace": namespace}, "spec": spec})
}

fn slice(namespace: &str, service: &str, endpoints: Value, ports: Value) -> Value {
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
           "metadata": {"name": format!("{service}-abc"), "namespace": namespace,
                        "labels": {SERVICE_NAME_LABEL: service}},
           "addressType": "IPv4", "endpoints": endpoints, "ports": ports})
}

/// Project `team` on `net-a` (default domain) with a VM, a named port, a ClusterIP
/// Service and a headless one; project `other` on `net-b` (domain example.org) with a
/// Service of the same name and address.
struct Objects {
    networks: Vec<Value>,
    ports: Vec<Value>,
    vms: Vec<Value>,
    services: Vec<Value>,
    slices: Vec<Value>,
}

fn objects() -> Objects {
    let networks = vec![
        network("net-a", "team", ""),
        network("net-b", "other", "Example.ORG."),
    ];
    let ports = vec![
        port(
            "p-vm",
            "team",
            json!({"networkId": "net-a", "deviceOwner": owner::VM, "deviceId": "vm-1",
                   "fixedIps": [{"subnetId": "s-a", "ipAddress": "10.0.0.5"}]}),
        ),
        port(
            "p-db",
            "team",
            json!({"networkId": "net-a", "deviceOwner": owner::POD, "deviceId": "pod-1", "dnsName": "DB",
                   "fixedIps": [{"subnetId": "s-a", "ipAddress": "10.0.0.6"}]}),
        ),
        port(
            "p-dhcp",
            "team",
            json!({"networkId": "net-a", "deviceOwner": owner::DHCP,
                   "fixedIps": [{"subnetId": "s-a", "ipAddress": "10.0.0.2"}]}),
        ),
        port(
            "p-b",
            "other",
            json!({"networkId": "net-b", "deviceOwner": owner::VM, "deviceId": "vm-2",
                   "fixedIps": [{"subnetId": "s-b", "ipAddress": "10.0.0.5"}]}),
        ),
    ];
    let vms = vec![
        json!({"metadata": {"uid": "vm-1", "name": "Web Server_1", "namespace": "team"}}),
        json!({"metadata": {"uid": "vm-2", "name": "other-vm", "namespace": "other"}}),
    ];
    let services = vec![
        service(
            "team",
            "web",
            json!({"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                   "ports": [{"name": "http", "port": 80, "protocol": "TCP"}, {"port": 81}]}),
        ),
        service(
            "team",
            "db",
            json!({"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}),
        ),
        service("team", "pending", json!({})),
        service("other", "web", json!({"clusterIP": "10.96.0.10"})),
    ];
    let slices = vec![slice(
        "team",
        "db",
        json!([
            {"addresses": ["10.0.0.20"], "hostname": "db-0", "conditions": {"ready": true}},
            {"addresses": ["10.0.0.21"]},
            {"addresses": ["10.0.0.22"], "conditions": {"ready": false}},
        ]),
        json!([{"name": "pg", "port": 15432, "protocol": "TCP"}]),
    )];
    Objects {
        networks,
        ports,
        vms,
        services,
        slices,
    }
}

fn index_with(services: &[Value], slices: &[Value], upstreams: Vec<SocketAddr>) -> DnsIndex {
    let Objects {
        networks,
        ports,
        vms,
        ..
    } = objects();
    DnsIndex::build(
        DnsObjects {
            networks: &networks,
            ports: &ports,
            vms: &vms,
            services,
            endpoint_slices: slices,
        },
        upstreams,
    )
}

fn index() -> DnsIndex {
    let Objects {
        services, slices, ..
    } = objects();
    index_with(&services, &slices, Vec::new())
}

fn query(name: &str, kind: RecordType, edns: Option<u16>) -> Vec<u8> {
    let mut message = Message::query();
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).expect("a name"), kind));
    if let Some(size) = edns {
        let mut options = Edns::new();
        options.set_max_payload(size);
        message.set_edns(options);
    }
    message.to_vec().expect("a query")
}

fn ask_over(
    index: &DnsIndex,
    network: &str,
    name: &str,
    kind: RecordType,
    transport: Transport,
) -> Message {
    let request = query(name, kind, None);
    match answer(index, network, &request, transport) {
        Reply::Answer(bytes) => {
            let reply = Message::from_vec(&bytes).expect("a DNS message");
            assert_eq!(
                reply.metadata.id,
                Message::from_vec(&request).unwrap().metadata.id
            );
            reply
        }
        other => panic!("{name} on {network}: {other:?}"),
    }
}

fn ask(index: &DnsIndex, network: &str, name: &str, kind: RecordType) -> Message {
    ask_over(index, network, name, kind, Transport::Udp)
}

fn addresses(reply: &Message) -> Vec<IpAddr> {
    let mut found: Vec<IpAddr> = reply
        .answers
        .iter()
        .filter_map(|record| match &record.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
            _ => None,
        })
        .collect();
    found.sort();
    found
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|ip| ip.parse().unwrap()).collect()
}

fn srv(reply: &Message) -> Vec<(u16, String)> {
    let mut found: Vec<(u16, String)> = reply
        .answers
        .iter()
        .filter_map(|record| match &record.data {
            RData::SRV(srv) => Some((srv.port, srv.target.to_ascii())),
            _ => None,
        })
        .collect();
    found.sort();
    found
}

fn soa_owner(reply: &Message) -> Option<String> {
    reply
        .authorities
        .iter()
        .find(|record| matches!(record.data, RData::SOA(_)))
        .map(|record| record.name.to_ascii())
}

#[test]
fn a_service_resolves_to_its_cluster_ip_and_named_ports_to_srv() {
    let index = index();
    let reply = ask(
        &index,
        "net-a",
        "web.team.svc.cluster.local.",
        RecordType::A,
    );
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(reply.metadata.authoritative);
    assert!(reply.metadata.recursion_available);
    assert_eq!(addresses(&reply), ips(&["10.96.0.10"]));
    assert_eq!(reply.answers[0].ttl, answer::TTL);

    let reply = ask(
        &index,
        "net-a",
        "_http._tcp.web.team.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_eq!(
        srv(&reply),
        [(80, "web.team.svc.cluster.local.".to_owned())],
        "the unnamed port has no SRV record"
    );
    assert_eq!(
        reply
            .additionals
            .iter()
            .map(|r| (r.name.to_ascii(), r.record_type()))
            .collect::<Vec<_>>(),
        [("web.team.svc.cluster.local.".to_owned(), RecordType::A)]
    );

    let reverse = ask(&index, "net-a", "10.0.96.10.in-addr.arpa.", RecordType::PTR);
    assert!(
        matches!(&reverse.answers[0].data, RData::PTR(ptr) if ptr.0.to_ascii() == "web.team.svc.cluster.local."),
        "{reverse:?}"
    );
}

#[test]
fn names_are_matched_without_case_and_answered_as_asked() {
    let reply = ask(
        &index(),
        "net-a",
        "WEB.Team.svc.Cluster.Local.",
        RecordType::A,
    );
    assert_eq!(addresses(&reply), ips(&["10.96.0.10"]));
    assert_eq!(
        reply.answers[0].name.to_ascii(),
        "WEB.Team.svc.Cluster.Local."
    );
    assert_eq!(
        reply.queries,
        Message::from_vec(&query("WEB.Team.svc.Cluster.Local.", RecordType::A, None))
            .unwrap()
            .queries
    );
}

#[test]
fn another_projects_services_do_not_exist_on_a_network() {
    let index = index();
    // The same name and address in two projects: each network sees its own.
    let reply = ask(
        &index,
        "net-a",
        "web.other.svc.cluster.local.",
        RecordType::A,
    );
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    assert!(reply.answers.is_empty());
    assert_eq!(soa_owner(&reply).as_deref(), Some("cluster.local."));
    let reply = ask(
        &index,
        "net-b",
        "web.other.svc.cluster.local.",
        RecordType::A,
    );
    assert_eq!(addresses(&reply), ips(&["10.96.0.10"]));
    let reply = ask(
        &index,
        "net-b",
        "web.team.svc.cluster.local.",
        RecordType::A,
    );
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    // Nor does another project's namespace itself.
    let reply = ask(&index, "net-a", "other.svc.cluster.local.", RecordType::A);
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn names_without_records_of_the_type_are_nodata_not_nxdomain() {
    let index = index();
    for name in [
        "web.team.svc.cluster.local.",
        "team.svc.cluster.local.",
        "svc.cluster.local.",
        "pending.team.svc.cluster.local.",
    ] {
        let reply = ask(&index, "net-a", name, RecordType::AAAA);
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::NoError,
            "{name}"
        );
        assert!(reply.answers.is_empty(), "{name}");
        assert_eq!(
            soa_owner(&reply).as_deref(),
            Some("cluster.local."),
            "{name}"
        );
    }
    let reply = ask(&index, "net-a", "cluster.local.", RecordType::SOA);
    assert!(matches!(reply.answers[0].data, RData::SOA(_)), "{reply:?}");
    let reply = ask(
        &index,
        "net-a",
        "nope.team.svc.cluster.local.",
        RecordType::A,
    );
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn a_headless_service_resolves_to_its_ready_endpoints() {
    let index = index();
    let reply = ask(&index, "net-a", "db.team.svc.cluster.local.", RecordType::A);
    assert_eq!(addresses(&reply), ips(&["10.0.0.20", "10.0.0.21"]));
    let reply = ask(
        &index,
        "net-a",
        "db-0.db.team.svc.cluster.local.",
        RecordType::A,
    );
    assert_eq!(addresses(&reply), ips(&["10.0.0.20"]));
    let reply = ask(
        &index,
        "net-a",
        "_pg._tcp.db.team.svc.cluster.local.",
        RecordType::SRV,
    );
    // The endpoints' port, not the Service's.
    assert_eq!(
        srv(&reply),
        [
            (15432, "10-0-0-21.db.team.svc.cluster.local.".to_owned()),
            (15432, "db-0.db.team.svc.cluster.local.".to_owned()),
        ]
    );
    assert_eq!(reply.additionals.len(), 2, "{reply:?}");

    // Published unready: the not-ready endpoint too.
    let Objects {
        mut services,
        slices,
        ..
    } = objects();
    services[1]["spec"]["publishNotReadyAddresses"] = json!(true);
    let index = index_with(&services, &slices, Vec::new());
    let reply = ask(&index, "net-a", "db.team.svc.cluster.local.", RecordType::A);
    assert_eq!(
        addresses(&reply),
        ips(&["10.0.0.20", "10.0.0.21", "10.0.0.22"])
    );
}

#[test]
fn vms_and_ports_resolve_by_hostname_in_their_networks_domain_only() {
    let index = index();
    for (name, ip) in [
        ("web-server-1.openstacklocal.", "10.0.0.5"),
        ("db.openstacklocal.", "10.0.0.6"),
        ("host-10-0-0-5.openstacklocal.", "10.0.0.5"),
        ("host-10-0-0-2.openstacklocal.", "10.0.0.2"),
    ] {
        let reply = ask(&index, "net-a", name, RecordType::A);
        assert_eq!(addresses(&reply), ips(&[ip]), "{name}");
        assert!(reply.metadata.authoritative);
    }
    let reply = ask(&index, "net-a", "other-vm.openstacklocal.", RecordType::A);
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(soa_owner(&reply).as_deref(), Some("openstacklocal."));
    let reverse = ask(&index, "net-a", "5.0.0.10.in-addr.arpa.", RecordType::PTR);
    assert!(
        matches!(&reverse.answers[0].data, RData::PTR(ptr) if ptr.0.to_ascii() == "web-server-1.openstacklocal."),
        "{reverse:?}"
    );

    // The same address on another network is another VM, in that network's domain.
    let reply = ask(&index, "net-b", "other-vm.example.org.", RecordType::A);
    assert_eq!(addresses(&reply), ips(&["10.0.0.5"]));
    let reverse = ask(&index, "net-b", "5.0.0.10.in-addr.arpa.", RecordType::PTR);
    assert!(
        matches!(&reverse.answers[0].data, RData::PTR(ptr) if ptr.0.to_ascii() == "other-vm.example.org."),
        "{reverse:?}"
    );
    assert_eq!(
        answer(
            &index,
            "net-b",
            &query("web-server-1.openstacklocal.", RecordType::A, None),
            Transport::Udp
        ),
        Reply::Forward(Forward::AS_IS),
        "openstacklocal is not net-b's domain"
    );
}

#[test]
fn other_names_are_forwarded_and_unknown_networks_fail_for_cluster_names() {
    let index = index();
    for name in [
        "example.com.",
        "1.2.0.192.in-addr.arpa.",
        "cluster.local.example.com.",
    ] {
        assert_eq!(
            answer(
                &index,
                "net-a",
                &query(name, RecordType::A, None),
                Transport::Udp
            ),
            Reply::Forward(Forward::AS_IS),
            "{name}"
        );
    }
    let reply = ask(
        &index,
        "net-unknown",
        "web.team.svc.cluster.local.",
        RecordType::A,
    );
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(
        answer(
            &index,
            "net-unknown",
            &query("example.com.", RecordType::A, None),
            Transport::Udp
        ),
        Reply::Forward(Forward::AS_IS)
    );
}

#[test]
fn bad_messages_get_formerr_notimp_or_nothing() {
    let index = index();
    let Reply::Answer(bytes) = answer(
        &index,
        "net-a",
        &[0x12, 0x34, 0x01, 0x00, 0xff],
        Transport::Udp,
    ) else {
        panic!("a short query with an id gets FORMERR");
    };
    let reply = Message::from_vec(&bytes).unwrap();
    assert_eq!(
        (reply.metadata.id, reply.metadata.response_code),
        (0x1234, ResponseCode::FormErr)
    );
    assert_eq!(
        answer(&index, "net-a", &[0x12], Transport::Udp),
        Reply::Drop
    );

    let mut response =
        Message::from_vec(&query("web.team.svc.cluster.local.", RecordType::A, None)).unwrap();
    response.metadata.message_type = hickory_proto::op::MessageType::Response;
    assert_eq!(
        answer(&index, "net-a", &response.to_vec().unwrap(), Transport::Udp),
        Reply::Drop,
        "responses are never answered"
    );

    let mut two =
        Message::from_vec(&query("web.team.svc.cluster.local.", RecordType::A, None)).unwrap();
    two.add_query(Query::query(
        Name::from_ascii("db.team.svc.cluster.local.").unwrap(),
        RecordType::A,
    ));
    let Reply::Answer(bytes) = answer(&index, "net-a", &two.to_vec().unwrap(), Transport::Udp)
    else {
        panic!("two questions get FORMERR");
    };
    assert_eq!(
        Message::from_vec(&bytes).unwrap().metadata.response_code,
        ResponseCode::FormErr
    );

    let mut status =
        Message::from_vec(&query("web.team.svc.cluster.local.", RecordType::A, None)).unwrap();
    status.metadata.op_code = OpCode::Status;
    let Reply::Answer(bytes) = answer(&index, "net-a", &status.to_vec().unwrap(), Transport::Udp)
    else {
        panic!("other opcodes get NOTIMP");
    };
    assert_eq!(
        Message::from_vec(&bytes).unwrap().metadata.response_code,
        ResponseCode::NotImp
    );
}

/// A headless Service with `endpoints` ready endpoints.
fn crowded(endpoints: usize) -> DnsIndex {
    let addresses: Vec<Value> = (0..endpoints)
        .map(|i| json!({"addresses": [format!("10.1.{}.{}", i / 200, i % 200 + 1)]}))
        .collect();
    let services = [service("team", "many", json!({"clusterIP": "None"}))];
    let slices = [slice("team", "many", json!(addresses), json!([]))];
    index_with(&services, &slices, Vec::new())
}

#[test]
fn udp_answers_too_large_for_the_client_are_truncated_and_tcp_ones_are_not() {
    let index = crowded(100);
    let name = "many.team.svc.cluster.local.";
    let request = query(name, RecordType::A, None);
    let Reply::Answer(bytes) = answer(&index, "net-a", &request, Transport::Udp) else {
        panic!("an answer");
    };
    assert!(bytes.len() <= 512, "{} bytes", bytes.len());
    let reply = Message::from_vec(&bytes).unwrap();
    assert!(reply.metadata.truncation);
    assert!(reply.answers.is_empty());
    assert_eq!(reply.queries.len(), 1);

    // EDNS: as large as the client takes, but no larger than ours.
    let Reply::Answer(bytes) = answer(
        &index,
        "net-a",
        &query(name, RecordType::A, Some(4096)),
        Transport::Udp,
    ) else {
        panic!("an answer");
    };
    assert!(bytes.len() <= usize::from(MAX_UDP_PAYLOAD));
    let reply = Message::from_vec(&bytes).unwrap();
    assert!(reply.metadata.truncation);
    assert_eq!(
        reply.edns.as_ref().map(Edns::max_payload),
        Some(MAX_UDP_PAYLOAD)
    );
    let fits = crowded(40);
    let Reply::Answer(bytes) = answer(
        &fits,
        "net-a",
        &query(name, RecordType::A, Some(4096)),
        Transport::Udp,
    ) else {
        panic!("an answer");
    };
    let reply = Message::from_vec(&bytes).unwrap();
    assert!(
        bytes.len() > 512 && !reply.metadata.truncation,
        "{} bytes",
        bytes.len()
    );
    assert_eq!(reply.answers.len(), 40);

    let reply = ask_over(&index, "net-a", name, RecordType::A, Transport::Tcp);
    assert!(!reply.metadata.truncation);
    assert_eq!(reply.answers.len(), 100);
}

#[test]
fn hostnames_and_resolvers_for_workloads() {
    let vm = json!({"metadata": {"uid": "u", "name": "My VM"}});
    let vm_port = PortSpec {
        device_owner: owner::VM.into(),
        ..PortSpec::default()
    };
    assert_eq!(hostname_of(&vm_port, Some(&vm)).as_deref(), Some("my-vm"));
    let named = PortSpec {
        dns_name: "Primary".into(),
        ..vm_port.clone()
    };
    assert_eq!(hostname_of(&named, Some(&vm)).as_deref(), Some("primary"));
    let pod_port = PortSpec {
        device_owner: owner::POD.into(),
        ..PortSpec::default()
    };
    assert_eq!(hostname_of(&pod_port, Some(&vm)), None);

    let Objects {
        networks, ports, ..
    } = objects();
    let resolvers = Resolvers::build(&networks, &ports);
    let pod: PortSpec = spec_of(&ports[1]);
    let dns = resolvers.for_pod(&pod, "team").expect("a resolver");
    assert_eq!(dns.nameserver, "10.0.0.2".parse::<IpAddr>().unwrap());
    assert_eq!(
        dns.searches,
        [
            "team.svc.cluster.local",
            "svc.cluster.local",
            "cluster.local",
            "openstacklocal"
        ]
    );
    let other: PortSpec = spec_of(&ports[3]);
    assert_eq!(
        resolvers.for_pod(&other, "other"),
        None,
        "net-b has no DHCP port"
    );

    assert_eq!(
        vm_search_list("example.org", "team"),
        [
            "example.org",
            "team.svc.cluster.local",
            "svc.cluster.local",
            "cluster.local"
        ]
    );
    let domain = |text: &str| {
        network_domain(&ronghe_api_types::network::NetworkSpec {
            dns_domain: text.into(),
            ..Default::default()
        })
    };
    assert_eq!(domain("Corp.Example."), "corp.example");
    for fallback in [
        "",
        "cluster.local",
        "svc.cluster.local.",
        "in-addr.arpa",
        "bad_domain.",
        "-x.y",
    ] {
        assert_eq!(domain(fallback), DEFAULT_DOMAIN, "{fallback:?}");
    }
    assert_eq!(
        upstreams_from_resolv_conf(
            "# c\nnameserver 10.255.255.53\nsearch x\nnameserver fd00::53\nnameserver bogus\nnameserver 1.1.1.1\nnameserver 8.8.8.8\n"
        ),
        ["10.255.255.53:53", "[fd00::53]:53", "1.1.1.1:53"]
            .map(|a| a.parse::<SocketAddr>().unwrap())
    );
}

/// The index with ExternalName Services in project `team`: one naming a name outside the
/// cluster, one naming another Service, and two naming each other.
fn with_external_names(upstreams: Vec<SocketAddr>) -> DnsIndex {
    let Objects {
        mut services,
        slices,
        ..
    } = objects();
    for (name, target) in [
        ("ext", "DB.Example.com."),
        ("alias", "web.team.svc.cluster.local"),
        ("loop-a", "loop-b.team.svc.cluster.local"),
        ("loop-b", "loop-a.team.svc.cluster.local"),
    ] {
        let spec = json!({"type": "ExternalName", "externalName": target});
        services.push(service("team", name, spec));
    }
    index_with(&services, &slices, upstreams)
}

/// The CNAME records answered, as (owner, target).
fn aliases(reply: &Message) -> Vec<(String, String)> {
    reply
        .answers
        .iter()
        .filter_map(|record| match &record.data {
            RData::CNAME(target) => Some((record.name.to_ascii(), target.0.to_ascii())),
            _ => None,
        })
        .collect()
}

fn alias(owner: &str, target: &str) -> (String, String) {
    (owner.to_owned(), target.to_owned())
}

#[test]
fn a_pod_resolves_by_its_dashed_address_in_its_own_namespace_only() {
    let index = index();
    let reply = ask(
        &index,
        "net-a",
        "10-0-0-6.team.pod.cluster.local.",
        RecordType::A,
    );
    assert_eq!(addresses(&reply), ips(&["10.0.0.6"]));
    for (network, name) in [
        // A VM's address is no pod's; another namespace's pod is not seen.
        ("net-a", "10-0-0-5.team.pod.cluster.local."),
        ("net-a", "10-0-0-6.other.pod.cluster.local."),
        ("net-b", "10-0-0-6.team.pod.cluster.local."),
    ] {
        let reply = ask(&index, network, name, RecordType::A);
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::NXDomain,
            "{name} on {network}"
        );
    }
}

#[test]
fn an_external_name_is_a_cname_followed_through_the_cluster_or_upstream() {
    let index = with_external_names(Vec::new());
    let ext = "ext.team.svc.cluster.local.";
    let reply = ask(&index, "net-a", ext, RecordType::CNAME);
    assert_eq!(aliases(&reply), [alias(ext, "db.example.com.")]);
    assert!(addresses(&reply).is_empty());

    // A CNAME to another Service is followed to its ClusterIP here.
    let reply = ask(
        &index,
        "net-a",
        "alias.team.svc.cluster.local.",
        RecordType::A,
    );
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        aliases(&reply),
        [alias(
            "alias.team.svc.cluster.local.",
            "web.team.svc.cluster.local."
        )]
    );
    assert_eq!(addresses(&reply), ips(&["10.96.0.10"]));
    // Two naming each other: a bounded chain, then SERVFAIL.
    let reply = ask(
        &index,
        "net-a",
        "loop-a.team.svc.cluster.local.",
        RecordType::A,
    );
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(aliases(&reply).len(), 8, "{reply:?}");

    // A name outside the cluster: the upstream is asked for it, and its answer follows
    // the CNAME.
    let request = query(ext, RecordType::A, Some(1232));
    let Reply::Forward(pending) = answer(&index, "net-a", &request, Transport::Udp) else {
        panic!("{ext} was not forwarded");
    };
    assert_ne!(pending, Forward::AS_IS);
    let asked = pending.request(&request).expect("a query upstream");
    let asked = Message::from_vec(&asked).expect("a DNS message");
    assert_eq!(asked.queries.len(), 1);
    assert_eq!(asked.queries[0].name().to_ascii(), "db.example.com.");
    assert_eq!(asked.queries[0].query_type(), RecordType::A);
    assert!(asked.metadata.recursion_desired && asked.edns.is_some());
    let mut upstream = Message::response(asked.metadata.id, OpCode::Query);
    upstream.queries = asked.queries.clone();
    upstream.add_answer(Record::from_rdata(
        asked.queries[0].name().clone(),
        60,
        RData::A(hickory_proto::rr::rdata::A("192.0.2.7".parse().unwrap())),
    ));
    let upstream = upstream.to_vec().expect("an answer");
    let reply = pending
        .clone()
        .reply(&request, Some(upstream), Transport::Udp)
        .expect("a reply");
    let reply = Message::from_vec(&reply).expect("a DNS message");
    assert_eq!(
        reply.metadata.id,
        Message::from_vec(&request).unwrap().metadata.id
    );
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert_eq!(aliases(&reply), [alias(ext, "db.example.com.")]);
    assert_eq!(addresses(&reply), ips(&["192.0.2.7"]));
    // No upstream answered: SERVFAIL.
    let reply = pending
        .reply(&request, None, Transport::Udp)
        .expect("a reply");
    let reply = Message::from_vec(&reply).expect("a DNS message");
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
}

/// A UDP socket and a TCP listener on one loopback port. The UDP socket's free port may
/// be taken for TCP by another test running meanwhile: then another port is tried.
async fn udp_and_tcp_on_one_port() -> (tokio::net::UdpSocket, tokio::net::TcpListener) {
    for _ in 0..50 {
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let address = udp.local_addr().unwrap();
        match tokio::net::TcpListener::bind(address).await {
            Ok(tcp) => return (udp, tcp),
            Err(error) if error.kind() == std::io::ErrorKind::AddrInUse => continue,
            Err(error) => panic!("binding TCP on {address}: {error}"),
        }
    }
    panic!("no loopback port free for both UDP and TCP in 50 tries");
}

/// A fake upstream resolver on loopback: answers every A query with 192.0.2.1, over UDP
/// and TCP on one port.
async fn fake_upstream() -> SocketAddr {
    let (udp, tcp) = udp_and_tcp_on_one_port().await;
    let address = udp.local_addr().unwrap();
    fn reply_to(request: &[u8]) -> Vec<u8> {
        let query = Message::from_vec(request).unwrap();
        let mut reply = Message::response(query.metadata.id, OpCode::Query);
        reply.queries = query.queries.clone();
        reply.add_answer(Record::from_rdata(
            query.queries[0].name().clone(),
            60,
            RData::A(hickory_proto::rr::rdata::A("192.0.2.1".parse().unwrap())),
        ));
        reply.to_vec().unwrap()
    }
    tokio::spawn(async move {
        let mut buffer = vec![0; 4096];
        while let Ok((length, peer)) = udp.recv_from(&mut buffer).await {
            let _ = udp.send_to(&reply_to(&buffer[..length]), peer).await;
        }
    });
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = tcp.accept().await {
            let length = stream.read_u16().await.unwrap();
            let mut request = vec![0; usize::from(length)];
            stream.read_exact(&mut request).await.unwrap();
            let reply = reply_to(&request);
            let mut framed = u16::try_from(reply.len()).unwrap().to_be_bytes().to_vec();
            framed.extend(reply);
            stream.write_all(&framed).await.unwrap();
        }
    });
    address
}

/// A running server on loopback for network `net-a`.
struct TestServer {
    udp: SocketAddr,
    tcp: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl TestServer {
    fn start(index: DnsIndex, limits: Limits) -> TestServer {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (udp_address, tcp_address) = (udp.local_addr().unwrap(), tcp.local_addr().unwrap());
        let (_keep, index) = watch::channel(Arc::new(index));
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let _keep = _keep;
            serve_with(
                DnsSockets { udp, tcp },
                "net-a".into(),
                index,
                stopped,
                limits,
            )
            .await
        });
        TestServer {
            udp: udp_address,
            tcp: tcp_address,
            stop,
            task,
        }
    }

    async fn udp(&self, request: &[u8]) -> Message {
        let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.send_to(request, self.udp).await.unwrap();
        let mut buffer = vec![0; 65535];
        let length = tokio::time::timeout(Duration::from_secs(10), client.recv(&mut buffer))
            .await
            .expect("an answer over UDP")
            .unwrap();
        Message::from_vec(&buffer[..length]).unwrap()
    }

    async fn tcp(&self, stream: &mut tokio::net::TcpStream, request: &[u8]) -> Message {
        let mut framed = u16::try_from(request.len()).unwrap().to_be_bytes().to_vec();
        framed.extend_from_slice(request);
        stream.write_all(&framed).await.unwrap();
        let length = stream.read_u16().await.unwrap();
        let mut reply = vec![0; usize::from(length)];
        stream.read_exact(&mut reply).await.unwrap();
        Message::from_vec(&reply).unwrap()
    }
}

#[tokio::test]
async fn the_server_answers_cluster_names_and_forwards_the_rest_over_udp_and_tcp() {
    let upstream = fake_upstream().await;
    let Objects {
        services, slices, ..
    } = objects();
    let server = TestServer::start(
        index_with(&services, &slices, vec![upstream]),
        Limits::default(),
    );

    let local = server
        .udp(&query("web.team.svc.cluster.local.", RecordType::A, None))
        .await;
    assert_eq!(addresses(&local), ips(&["10.96.0.10"]));
    let request = query("example.com.", RecordType::A, None);
    let forwarded = server.udp(&request).await;
    assert_eq!(
        forwarded.metadata.id,
        Message::from_vec(&request).unwrap().metadata.id
    );
    assert_eq!(addresses(&forwarded), ips(&["192.0.2.1"]));
    assert!(!forwarded.metadata.authoritative);

    let mut stream = tokio::net::TcpStream::connect(server.tcp).await.unwrap();
    let local = server
        .tcp(
            &mut stream,
            &query("db.team.svc.cluster.local.", RecordType::A, None),
        )
        .await;
    assert_eq!(addresses(&local), ips(&["10.0.0.20", "10.0.0.21"]));
    // Several queries on one connection, the next one forwarded over TCP.
    let forwarded = server
        .tcp(&mut stream, &query("example.net.", RecordType::A, None))
        .await;
    assert_eq!(addresses(&forwarded), ips(&["192.0.2.1"]));

    server.stop.send_replace(true);
    server.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn the_server_follows_an_external_name_upstream_over_udp_and_tcp() {
    let server = TestServer::start(
        with_external_names(vec![fake_upstream().await]),
        Limits::default(),
    );
    let request = query("ext.team.svc.cluster.local.", RecordType::A, None);
    let over_udp = server.udp(&request).await;
    let mut stream = tokio::net::TcpStream::connect(server.tcp).await.unwrap();
    let over_tcp = server.tcp(&mut stream, &request).await;
    for reply in [over_udp, over_tcp] {
        assert_eq!(
            aliases(&reply),
            [alias("ext.team.svc.cluster.local.", "db.example.com.")]
        );
        assert_eq!(addresses(&reply), ips(&["192.0.2.1"]));
    }
    server.stop.send_replace(true);
    server.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn without_an_answering_upstream_the_client_gets_servfail() {
    // An upstream that never answers, and one that refuses (nothing listens there).
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let closed = {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.local_addr().unwrap()
    };
    let limits = Limits {
        upstream_timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let server = TestServer::start(
        index_with(&[], &[], vec![silent.local_addr().unwrap(), closed]),
        limits,
    );
    let reply = server
        .udp(&query("example.com.", RecordType::A, Some(1232)))
        .await;
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(reply.queries.len(), 1);
    let mut buffer = [0; 512];
    let (length, _) = silent.recv_from(&mut buffer).await.unwrap();
    assert!(length > 12, "the silent upstream was asked");
    let empty = TestServer::start(index_with(&[], &[], Vec::new()), limits);
    let reply = empty.udp(&query("example.com.", RecordType::A, None)).await;
    assert_eq!(
        reply.metadata.response_code,
        ResponseCode::ServFail,
        "no upstream at all"
    );
}

#[tokio::test]
async fn tcp_connections_are_bounded_per_client_and_in_time() {
    let limits = Limits {
        tcp_connections_per_peer: 2,
        tcp_connection_lifetime: Duration::from_millis(300),
        ..Limits::default()
    };
    let server = TestServer::start(index(), limits);
    let request = query("web.team.svc.cluster.local.", RecordType::A, None);
    let mut first = tokio::net::TcpStream::connect(server.tcp).await.unwrap();
    let mut second = tokio::net::TcpStream::connect(server.tcp).await.unwrap();
    assert_eq!(
        addresses(&server.tcp(&mut first, &request).await),
        ips(&["10.96.0.10"])
    );
    assert_eq!(
        addresses(&server.tcp(&mut second, &request).await),
        ips(&["10.96.0.10"])
    );
    // The third from the same address is closed at once.
    let mut third = tokio::net::TcpStream::connect(server.tcp).await.unwrap();
    let mut byte = [0; 1];
    let read = tokio::time::timeout(Duration::from_secs(10), third.read(&mut byte))
        .await
        .expect("the third connection is closed");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    // A client that holds its connection open is cut off after the lifetime, however idle.
    let read = tokio::time::timeout(Duration::from_secs(10), first.read(&mut byte))
        .await
        .expect("the idle connection is closed");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    // Its place is free again.
    let _ = second.read(&mut byte).await;
    let mut again = tokio::net::TcpStream::connect(server.tcp).await.unwrap();
    assert_eq!(
        addresses(&server.tcp(&mut again, &request).await),
        ips(&["10.96.0.10"])
    );
    // A UDP answer too large for the client is truncated; over TCP it is whole.
    let crowded_server = TestServer::start(crowded(100), limits);
    let request = query("many.team.svc.cluster.local.", RecordType::A, None);
    assert!(crowded_server.udp(&request).await.metadata.truncation);
    let mut stream = tokio::net::TcpStream::connect(crowded_server.tcp)
        .await
        .unwrap();
    assert_eq!(
        crowded_server
            .tcp(&mut stream, &request)
            .await
            .answers
            .len(),
        100
    );
}
