//! The Linux host network against the real kernel, inside test-owned network namespaces
//! (never the machine's own): pods on one host, two hosts over VXLAN, security groups
//! and anti-spoofing, routers with NAT, DHCP and metadata, and reconcile. Needs root,
//! iproute2 and nftables; says so and skips when they are missing.

#[path = "linux/fixture.rs"]
mod fixture;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use fixture::*;
use ronghe_hostnet::{
    Action, Applied, Bandwidth, DhcpHost, DhcpSubnet, Ethertype, FloatingIp, ForwardProtocol,
    HostNetwork, HostPlan, PortForwarding, Qos, RouterGateway, RouterInterface, RouterPlan,
    Segment, ServicePlan, names,
};

fn plan(tunnel: &str, networks: Vec<ronghe_hostnet::NetworkPlan>) -> HostPlan {
    HostPlan {
        tunnel_ip: tunnel.parse().expect("tunnel address"),
        networks,
        routers: vec![],
    }
}

fn assert_clean(applied: &Applied) {
    assert!(
        applied.failures.is_empty(),
        "failures: {:#?}",
        applied.failures
    );
    assert!(applied.all_ports_ready(), "ports: {:#?}", applied.ports);
}

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("socket address")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pods_on_one_host_reach_each_other_and_a_second_apply_changes_nothing() {
    let Some(mut fx) = Fixture::new("two_pods_on_one_host") else {
        return;
    };
    let (net, host) = fx.host("h");
    let (p1, p2) = (fx.netns("p1"), fx.netns("p2"));
    let mut second = pod_port("port-2", 2, "10.0.0.6", &p2);
    second.qos = Some(Qos {
        ingress: Some(Bandwidth {
            max_kbps: 10_000,
            burst_kbit: 1_000,
        }),
        egress: Some(Bandwidth {
            max_kbps: 10_000,
            burst_kbit: 1_000,
        }),
    });
    let plan = plan(
        "10.77.0.1",
        vec![vxlan_network(
            "net-1",
            101,
            vec![pod_port("port-1", 1, "10.0.0.5", &p1), second],
        )],
    );
    let first = net.apply(&plan).await.unwrap();
    assert_clean(&first);
    assert!(first.count(Action::Created) >= 4, "{:#?}", first.changes);

    assert!(ping(&p1, "10.0.0.6"), "pod 1 cannot ping pod 2");
    assert!(ping(&p2, "10.0.0.5"), "pod 2 cannot ping pod 1");
    let eth0 = must(&["ip", "-n", &p1, "-d", "link", "show", "eth0"]);
    assert!(
        eth0.contains("mtu 1450") && eth0.contains("fa:16:3e:00:00:01"),
        "{eth0}"
    );
    let qdisc = must(&[
        "ip",
        "netns",
        "exec",
        &host,
        "tc",
        "qdisc",
        "show",
        "dev",
        &names::port_host("port-2"),
    ]);
    assert!(qdisc.contains("tbf"), "{qdisc}");

    let again = net.apply(&plan).await.unwrap();
    assert_clean(&again);
    assert!(
        again.unchanged(),
        "the second apply changed {:#?}",
        again.changes
    );

    net.teardown().await.unwrap();
    assert!(!links(&host).iter().any(|l| names::is_ronghe_device_name(l)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_on_two_hosts_talk_over_vxlan() {
    let Some(mut fx) = Fixture::new("pods_on_two_hosts") else {
        return;
    };
    let ((net_a, _), (net_b, _)) = fx.two_hosts();
    let (pod_a, pod_b) = (fx.netns("pa"), fx.netns("pb"));
    let mut network_a = vxlan_network(
        "net-2",
        102,
        vec![pod_port("port-a", 0x0a, "10.0.0.5", &pod_a)],
    );
    network_a.remote_vteps = vec!["10.77.0.2".parse().unwrap()];
    network_a.remote_macs = vec![(mac(0x0b), "10.77.0.2".parse().unwrap())];
    let mut network_b = vxlan_network(
        "net-2",
        102,
        vec![pod_port("port-b", 0x0b, "10.0.0.6", &pod_b)],
    );
    network_b.remote_vteps = vec!["10.77.0.1".parse().unwrap()];
    network_b.remote_macs = vec![(mac(0x0a), "10.77.0.1".parse().unwrap())];
    // The same distributed service port (MAC and address) on both hosts.
    let service = ServicePlan {
        mac: mac(0x02),
        addresses: vec!["10.0.0.2/24".parse().unwrap()],
        dhcp: vec![],
        hosts: vec![],
    };
    network_a.service = Some(service.clone());
    network_b.service = Some(service);
    assert_clean(
        &net_a
            .apply(&plan("10.77.0.1", vec![network_a.clone()]))
            .await
            .unwrap(),
    );
    assert_clean(
        &net_b
            .apply(&plan("10.77.0.2", vec![network_b.clone()]))
            .await
            .unwrap(),
    );
    let again = net_b
        .apply(&plan("10.77.0.2", vec![network_b]))
        .await
        .unwrap();
    assert!(again.unchanged(), "{:#?}", again.changes);

    assert!(
        ping(&pod_a, "10.0.0.6"),
        "pod A cannot ping pod B across hosts"
    );
    let server = EchoServer::start(&pod_b, addr("10.0.0.6:7000"));
    let mut stream = connect(&pod_a, addr("10.0.0.6:7000"), None, Duration::from_secs(5)).unwrap();
    echo(&mut stream, "over the tunnel").unwrap();
    assert_eq!(server.peer_ips(), ["10.0.0.5".parse::<IpAddr>().unwrap()]);

    // Each pod reaches its own host's service port; neither service port ever hears the
    // other host's pod (its ARP requests stop at the uplink), so it has no neighbour entry.
    assert!(ping(&pod_a, "10.0.0.2") && ping(&pod_b, "10.0.0.2"));
    let service_neighbours = |network: &ronghe_hostnet::LinuxHostNetwork| {
        let netns = names::service_netns(&network.config().prefix, "net-2");
        must(&["ip", "-n", &netns, "neigh", "show"])
    };
    let (seen_by_a, seen_by_b) = (service_neighbours(&net_a), service_neighbours(&net_b));
    assert!(
        seen_by_a.contains("10.0.0.5 ") && !seen_by_a.contains("10.0.0.6 "),
        "{seen_by_a}"
    );
    assert!(
        seen_by_b.contains("10.0.0.6 ") && !seen_by_b.contains("10.0.0.5 "),
        "{seen_by_b}"
    );

    // Dropping a VTEP removes exactly its forwarding entry.
    network_a.remote_vteps.clear();
    let changed = net_a
        .apply(&plan("10.77.0.1", vec![network_a]))
        .await
        .unwrap();
    assert_eq!(changed.count(Action::Removed), 1, "{:#?}", changed.changes);
    net_a.teardown().await.unwrap();
    net_b.teardown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_groups_are_stateful_and_ports_cannot_spoof() {
    let Some(mut fx) = Fixture::new("security_groups") else {
        return;
    };
    let (net, host) = fx.host("h");
    let (pa, pb, pc) = (fx.netns("pa"), fx.netns("pb"), fx.netns("pc"));
    let mut a = pod_port("port-a", 0x0a, "10.0.0.5", &pa);
    a.security = Some(security_of(
        &a,
        vec![allow_icmp()],
        vec![allow_all(Ethertype::V4), allow_all(Ethertype::V6)],
    ));
    let mut b = pod_port("port-b", 0x0b, "10.0.0.6", &pb);
    b.security = Some(security_of(
        &b,
        vec![allow_tcp(80)],
        vec![allow_all(Ethertype::V4)],
    ));
    let c = pod_port("port-c", 0x0c, "10.0.0.7", &pc);
    let mut network = vxlan_network("net-3", 103, vec![a.clone(), b.clone(), c.clone()]);
    assert_clean(
        &net.apply(&plan("10.77.0.1", vec![network.clone()]))
            .await
            .unwrap(),
    );

    let _http = EchoServer::start(&pb, addr("10.0.0.6:80"));
    let _other = EchoServer::start(&pb, addr("10.0.0.6:81"));
    let short = Duration::from_millis(1500);
    let mut established = connect(&pa, addr("10.0.0.6:80"), None, Duration::from_secs(5))
        .expect("tcp/80 is allowed toward B");
    echo(&mut established, "first").unwrap();
    assert!(
        connect(&pa, addr("10.0.0.6:81"), None, short).is_err(),
        "tcp/81 must be denied"
    );
    // Bridged flows are tracked by the host's conntrack, in the network's zone.
    let tracked = must(&[
        "ip",
        "netns",
        "exec",
        &host,
        "conntrack",
        "-L",
        "-p",
        "tcp",
        "--dport",
        "80",
    ]);
    let zone = format!("zone={}", names::conntrack_zone("net-3"));
    assert!(
        tracked.contains("ESTABLISHED") && tracked.contains(&zone),
        "{tracked}"
    );
    assert!(ping(&pb, "10.0.0.5"), "icmp toward A is allowed");
    assert!(!ping_once(&pa, "10.0.0.6"), "icmp toward B is not");

    // Replace B's rules: only tcp/81. The established tcp/80 flow survives the atomic
    // replacement (conntrack is not flushed); new tcp/80 connections do not pass.
    network.ports[1].security = Some(security_of(
        &b,
        vec![allow_tcp(81)],
        vec![allow_all(Ethertype::V4)],
    ));
    let changed = net
        .apply(&plan("10.77.0.1", vec![network.clone()]))
        .await
        .unwrap();
    assert!(
        changed
            .changes
            .iter()
            .any(|c| c.object == "nft host ruleset"),
        "{:#?}",
        changed.changes
    );
    echo(&mut established, "still there").expect("the established flow survives a rule change");
    assert!(
        connect(&pa, addr("10.0.0.6:80"), None, short).is_err(),
        "new tcp/80 is denied now"
    );
    connect(&pa, addr("10.0.0.6:81"), None, Duration::from_secs(5)).expect("tcp/81 is allowed now");

    // IP spoofing: A takes another address; frames from it are dropped.
    must(&[
        "ip",
        "-n",
        &pa,
        "addr",
        "add",
        "10.0.0.99/24",
        "dev",
        "eth0",
    ]);
    let spoofed = "10.0.0.99".parse().unwrap();
    assert!(
        connect(&pa, addr("10.0.0.6:81"), Some(spoofed), short).is_err(),
        "a spoofed source IP got through"
    );
    connect(
        &pa,
        addr("10.0.0.6:81"),
        Some("10.0.0.5".parse().unwrap()),
        Duration::from_secs(5),
    )
    .expect("the port's own address still works");

    // MAC spoofing: A changes its MAC; its frames are dropped until apply puts it back.
    must(&[
        "ip",
        "-n",
        &pa,
        "link",
        "set",
        "eth0",
        "address",
        "fa:16:3e:00:00:99",
    ]);
    assert!(
        connect(&pa, addr("10.0.0.6:81"), None, short).is_err(),
        "a spoofed MAC got through"
    );
    let repaired = net
        .apply(&plan("10.77.0.1", vec![network.clone()]))
        .await
        .unwrap();
    assert!(
        repaired
            .changes
            .iter()
            .any(|c| c.action == Action::Removed && c.object.contains("10.0.0.99")),
        "{:#?}",
        repaired.changes
    );
    assert!(
        repaired
            .changes
            .iter()
            .any(|c| c.object.contains("port-a inner side")),
        "{:#?}",
        repaired.changes
    );
    assert!(wait_until(Duration::from_secs(10), || connect(
        &pa,
        addr("10.0.0.6:81"),
        None,
        short
    )
    .is_ok()));

    // ARP spoofing: A claims B's address to C. C's entry for B must not move to A's MAC.
    let _ = ping_once(&pc, "10.0.0.6"); // B drops the echo, but C has resolved B by then.
    assert!(
        neighbour(&pc, "10.0.0.6").contains("fa:16:3e:00:00:0b"),
        "{}",
        neighbour(&pc, "10.0.0.6")
    );
    must(&["ip", "-n", &pa, "addr", "add", "10.0.0.6/32", "dev", "eth0"]);
    for _ in 0..5 {
        let _ = in_ns(
            &pa,
            &[
                "busybox", "arping", "-A", "-c", "1", "-s", "10.0.0.6", "-I", "eth0", "10.0.0.6",
            ],
        );
        std::thread::sleep(Duration::from_millis(400));
        let seen = neighbour(&pc, "10.0.0.6");
        assert!(
            !seen.contains("fa:16:3e:00:00:0a"),
            "A poisoned C's ARP cache: {seen}"
        );
    }
    // The same trick from C, which has no port security, does poison B's cache: the check
    // above can fail.
    must(&["ip", "-n", &pa, "addr", "del", "10.0.0.6/32", "dev", "eth0"]);
    assert!(ping(&pb, "10.0.0.5"));
    must(&["ip", "-n", &pc, "addr", "add", "10.0.0.5/32", "dev", "eth0"]);
    let poisoned = wait_until(Duration::from_secs(10), || {
        let _ = in_ns(
            &pc,
            &[
                "busybox", "arping", "-A", "-c", "1", "-s", "10.0.0.5", "-I", "eth0", "10.0.0.5",
            ],
        );
        neighbour(&pb, "10.0.0.5").contains("fa:16:3e:00:00:0c")
    });
    assert!(
        poisoned,
        "the unprotected port could not poison an ARP cache: {}",
        neighbour(&pb, "10.0.0.5")
    );
    net.teardown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_gives_snat_floating_ips_and_port_forwarding() {
    let Some(mut fx) = Fixture::new("router") else {
        return;
    };
    let (net, host) = fx.host("h");
    let external = fx.netns("ext");
    must(&[
        "ip", "-n", &host, "link", "add", "ext0", "type", "veth", "peer", "name", "eth0", "netns",
        &external,
    ]);
    must(&[
        "ip",
        "-n",
        &external,
        "addr",
        "add",
        "172.24.4.1/24",
        "dev",
        "eth0",
    ]);
    must(&["ip", "-n", &external, "link", "set", "eth0", "up"]);
    let (p1, p2) = (fx.netns("p1"), fx.netns("p2"));
    let mut port1 = pod_port("port-1", 1, "10.0.0.5", &p1);
    port1.gateway = Some("10.0.0.1".parse().unwrap());
    let mut port2 = pod_port("port-2", 2, "10.0.0.6", &p2);
    port2.gateway = Some("10.0.0.1".parse().unwrap());
    let tenant = vxlan_network("net-t", 104, vec![port1, port2]);
    // A port on the flat network too (as a load balancer's VIP there would be).
    let p3 = fx.netns("p3");
    let mut outside = vxlan_network(
        "net-ext",
        0,
        vec![pod_port("port-3", 3, "172.24.4.30", &p3)],
    );
    outside.segment = Segment::Flat {
        interface: "ext0".into(),
    };
    outside.mtu = 1500;
    let router = RouterPlan {
        id: "router-1".into(),
        interfaces: vec![RouterInterface {
            network_id: "net-t".into(),
            mac: mac(0x81),
            address: "10.0.0.1/24".parse().unwrap(),
        }],
        gateway: Some(RouterGateway {
            network_id: "net-ext".into(),
            mac: mac(0x90),
            address: "172.24.4.10/24".parse().unwrap(),
            next_hop: Some("172.24.4.1".parse().unwrap()),
            snat: true,
        }),
        floating_ips: vec![FloatingIp {
            floating: "172.24.4.20".parse().unwrap(),
            fixed: "10.0.0.6".parse().unwrap(),
            sources: None,
        }],
        port_forwardings: vec![PortForwarding {
            protocol: ForwardProtocol::Tcp,
            floating: "172.24.4.21".parse().unwrap(),
            external_port: 8080,
            internal: "10.0.0.5".parse().unwrap(),
            internal_port: 80,
            sources: None,
        }],
        routes: vec![],
    };
    let plan = HostPlan {
        tunnel_ip: "10.77.0.1".parse().unwrap(),
        networks: vec![tenant, outside],
        routers: vec![router],
    };
    // The outside still holds another MAC for a floating IP (it was elsewhere before).
    for moved in ["172.24.4.20", "172.24.4.30"] {
        must(&[
            "ip",
            "-n",
            &external,
            "neigh",
            "add",
            moved,
            "lladdr",
            "02:00:00:00:00:99",
            "dev",
            "eth0",
            "nud",
            "stale",
        ]);
    }
    assert_clean(&net.apply(&plan).await.unwrap());
    // The router and the flat network's port announce their addresses by gratuitous ARP:
    // the outside takes their MACs before any traffic.
    for (moved, mac) in [
        ("172.24.4.20", "fa:16:3e:00:00:90"),
        ("172.24.4.30", "fa:16:3e:00:00:03"),
    ] {
        let announced = wait_until(Duration::from_secs(10), || {
            neighbour(&external, moved).contains(mac)
        });
        assert!(
            announced,
            "no gratuitous ARP for {moved}: {}",
            neighbour(&external, moved)
        );
    }

    assert!(
        ping(&p1, "172.24.4.1"),
        "pod 1 cannot reach the external network"
    );
    let outside_server = EchoServer::start(&external, addr("172.24.4.1:9000"));
    let mut from_p1 = connect(&p1, addr("172.24.4.1:9000"), None, Duration::from_secs(5)).unwrap();
    echo(&mut from_p1, "snat").unwrap();
    let mut from_p2 = connect(&p2, addr("172.24.4.1:9000"), None, Duration::from_secs(5)).unwrap();
    echo(&mut from_p2, "floating").unwrap();
    assert_eq!(
        outside_server.peer_ips(),
        [
            "172.24.4.10".parse::<IpAddr>().unwrap(),
            "172.24.4.20".parse().unwrap()
        ],
        "pod 1 leaves by the gateway address, pod 2 by its floating IP"
    );

    let p2_server = EchoServer::start(&p2, addr("10.0.0.6:80"));
    // A connection from the outside namespace.
    let from_outside =
        |to: &str, patience: u64| connect(&external, addr(to), None, Duration::from_secs(patience));
    let mut to_floating = from_outside("172.24.4.20:80", 5).unwrap();
    echo(&mut to_floating, "dnat").unwrap();
    assert_eq!(
        p2_server.peer_ips(),
        ["172.24.4.1".parse::<IpAddr>().unwrap()]
    );
    let p1_server = EchoServer::start(&p1, addr("10.0.0.5:80"));
    let mut forwarded = from_outside("172.24.4.21:8080", 5).unwrap();
    echo(&mut forwarded, "port forwarding").unwrap();
    assert_eq!(
        p1_server.peer_ips(),
        ["172.24.4.1".parse::<IpAddr>().unwrap()]
    );

    let again = net.apply(&plan).await.unwrap();
    assert!(again.unchanged(), "{:#?}", again.changes);

    // Open to some sources only, the floating IP turns the others away, while its port's
    // own connections out still get their replies.
    let mut limited = plan.clone();
    let only = |sources: &[&str]| Some(sources.iter().map(|s| s.parse().unwrap()).collect());
    limited.routers[0].floating_ips[0].sources = only(&["192.0.2.0/24"]);
    assert_clean(&net.apply(&limited).await.unwrap());
    assert!(
        from_outside("172.24.4.20:80", 2).is_err(),
        "a source outside the floating IP's ranges got through"
    );
    let mut out = connect(&p2, addr("172.24.4.1:9000"), None, Duration::from_secs(5)).unwrap();
    echo(&mut out, "out through a limited floating IP").unwrap();
    // New connections only: one made before goes on, and so do other floating IPs.
    echo(&mut to_floating, "dnat, made before the limit").unwrap();
    let mut forwarded = from_outside("172.24.4.21:8080", 5).unwrap();
    echo(&mut forwarded, "port forwarding of another floating IP").unwrap();
    limited.routers[0].floating_ips[0].sources = only(&["192.0.2.0/24", "172.24.4.0/24"]);
    assert_clean(&net.apply(&limited).await.unwrap());
    let mut allowed = from_outside("172.24.4.20:80", 5)
        .expect("a source inside the floating IP's ranges is let in");
    echo(&mut allowed, "dnat, allowed").unwrap();

    net.teardown().await.unwrap();
    // The flat interface is not Ronghe's: it stays, released from the bridge.
    assert!(links(&host).contains(&"ext0".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dhcp_answers_static_leases_and_metadata_and_dns_listen_in_the_service_netns() {
    let Some(mut fx) = Fixture::new("dhcp") else {
        return;
    };
    let (net, _host) = fx.host("h");
    let (vm, stranger) = (fx.netns("vm"), fx.netns("stranger"));
    let mut vm_port = pod_port("port-vm", 5, "10.0.0.5", &vm);
    vm_port.routes = vec![(
        "169.254.169.254/32".parse().unwrap(),
        "10.0.0.2".parse().unwrap(),
    )];
    vm_port.security = Some(security_of(
        &vm_port,
        vec![],
        vec![allow_all(Ethertype::V4)],
    ));
    let mut stranger_port = pod_port("port-stranger", 6, "10.0.0.6", &stranger);
    stranger_port.addresses.clear();
    let mut network = vxlan_network("net-5", 105, vec![vm_port, stranger_port]);
    network.service = Some(ServicePlan {
        mac: mac(0x02),
        addresses: vec!["10.0.0.2/24".parse().unwrap()],
        dhcp: vec![DhcpSubnet {
            cidr: "10.0.0.0/24".parse().unwrap(),
            gateway: None,
            dns_servers: vec!["10.0.0.2".parse().unwrap()],
            domain: Some("openstacklocal".into()),
            search: vec!["openstacklocal".into(), "p.svc.cluster.local".into()],
            host_routes: vec![(
                "169.254.169.254/32".parse().unwrap(),
                "10.0.0.2".parse().unwrap(),
            )],
            lease_seconds: 3600,
            mtu: Some(1450),
        }],
        hosts: vec![DhcpHost {
            mac: mac(5),
            ip: "10.0.0.5".parse().unwrap(),
            hostname: Some("vm-one".into()),
        }],
    });
    let plan = plan("10.77.0.1", vec![network]);
    assert_clean(&net.apply(&plan).await.unwrap());

    let scripts = tempfile::tempdir().unwrap();
    let script = scripts.path().join("udhcpc.sh");
    let lease = scripts.path().join("lease.env");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n[ \"$1\" = bound ] && env > {}\nexit 0\n",
            lease.display()
        ),
    )
    .unwrap();
    must(&["chmod", "+x", script.to_str().unwrap()]);
    let udhcpc = |name: &str| {
        in_ns(
            name,
            &[
                "busybox",
                "udhcpc",
                "-i",
                "eth0",
                "-n",
                "-q",
                "-f",
                "-t",
                "4",
                "-T",
                "1",
                "-O",
                "staticroutes",
                "-O",
                "mtu",
                "-O",
                "search",
                "-s",
                script.to_str().unwrap(),
            ],
        )
    };
    let output = udhcpc(&vm);
    assert!(
        output.status.success(),
        "udhcpc failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let env = std::fs::read_to_string(&lease).unwrap();
    for expected in [
        "ip=10.0.0.5",
        "mask=24",
        "mtu=1450",
        "hostname=vm-one",
        "staticroutes=169.254.169.254/32 10.0.0.2",
        "dns=10.0.0.2",
        "domain=openstacklocal",
        "search=openstacklocal p.svc.cluster.local",
    ] {
        assert!(
            env.lines().any(|line| line == expected),
            "{expected} missing from the lease:\n{env}"
        );
    }
    assert!(
        !env.lines().any(|line| line.starts_with("router=")),
        "no gateway was planned:\n{env}"
    );
    assert!(
        !udhcpc(&stranger).status.success(),
        "a MAC without a static lease got an answer"
    );

    let listener = net.metadata_listener("net-5").await.unwrap();
    let metadata = EchoServer::serve(listener);
    let mut stream = connect(
        &vm,
        addr("169.254.169.254:80"),
        None,
        Duration::from_secs(5),
    )
    .unwrap();
    echo(&mut stream, "GET /openstack").unwrap();
    assert_eq!(metadata.peer_ips(), ["10.0.0.5".parse::<IpAddr>().unwrap()]);

    // DNS: port 53 on the service address, over UDP and TCP, reached from the VM.
    let dns = net
        .dns_sockets("net-5", "10.0.0.2".parse().unwrap())
        .await
        .unwrap();
    let udp = dns.udp;
    udp.set_nonblocking(false).unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let asked_from = in_netns_thread(&vm, || {
        let client = std::net::UdpSocket::bind("0.0.0.0:0")?;
        client.send_to(b"query", "10.0.0.2:53")?;
        client.local_addr()
    })
    .unwrap();
    let mut buffer = [0; 16];
    let (length, from) = udp.recv_from(&mut buffer).unwrap();
    assert_eq!(&buffer[..length], b"query");
    assert_eq!(from.ip(), "10.0.0.5".parse::<IpAddr>().unwrap());
    assert_eq!(from.port(), asked_from.port());
    assert_eq!(udp.local_addr().unwrap(), addr("10.0.0.2:53"));
    let resolver = EchoServer::serve(dns.tcp);
    let mut stream = connect(&vm, addr("10.0.0.2:53"), None, Duration::from_secs(5)).unwrap();
    echo(&mut stream, "tcp query").unwrap();
    assert_eq!(resolver.peer_ips(), ["10.0.0.5".parse::<IpAddr>().unwrap()]);
    assert!(
        net.dns_sockets("net-404", "10.0.0.2".parse().unwrap())
            .await
            .is_err(),
        "a network without a service here has no DNS"
    );

    // Idempotent, and a new driver on the same state (an agent restart) adopts
    // everything as it is: the running dnsmasq, devices, rulesets.
    let again = net.apply(&plan).await.unwrap();
    assert!(again.unchanged(), "{:#?}", again.changes);
    let pid_file = net
        .config()
        .state_dir
        .join(names::service_netns(&net.config().prefix, "net-5"))
        .join("dnsmasq.pid");
    let pid = dnsmasq_pid(&pid_file).expect("dnsmasq runs");
    let restarted = ronghe_hostnet::LinuxHostNetwork::new(net.config().clone());
    let adopted = restarted.apply(&plan).await.unwrap();
    assert!(adopted.unchanged(), "{:#?}", adopted.changes);
    assert_eq!(dnsmasq_pid(&pid_file), Some(pid));
    restarted.teardown().await.unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || dnsmasq_pid(&pid_file).is_none()),
        "dnsmasq survived teardown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_repairs_drift_and_removes_leftovers_and_teardown_leaves_nothing() {
    let Some(mut fx) = Fixture::new("reconcile") else {
        return;
    };
    let (net, host) = fx.host("h");
    let (p1, p2) = (fx.netns("p1"), fx.netns("p2"));
    let mut port1 = pod_port("port-1", 1, "10.0.0.5", &p1);
    port1.security = Some(security_of(
        &port1,
        vec![allow_icmp()],
        vec![allow_all(Ethertype::V4)],
    ));
    let port2 = pod_port("port-2", 2, "10.0.0.6", &p2);
    let mut vm = pod_port("port-vm", 3, "10.0.0.7", &p2);
    vm.attachment = ronghe_hostnet::Attachment::Tap {
        name: names::tap("port-vm"),
    };
    let mut network = vxlan_network("net-6", 106, vec![port1, port2, vm]);
    network.service = Some(ServicePlan {
        mac: mac(0x02),
        addresses: vec!["10.0.0.2/24".parse().unwrap()],
        dhcp: vec![],
        hosts: vec![],
    });
    let plan = plan("10.77.0.1", vec![network]);
    assert_clean(&net.apply(&plan).await.unwrap());
    assert!(ping(&p2, "10.0.0.5"));
    let tap = must(&[
        "ip",
        "-n",
        &host,
        "-d",
        "link",
        "show",
        &names::tap("port-vm"),
    ]);
    assert!(
        tap.contains("tun type tap") && tap.contains(&format!("master {}", names::bridge("net-6"))),
        "{tap}"
    );

    // A port's host-side device deleted by hand.
    must(&[
        "ip",
        "-n",
        &host,
        "link",
        "del",
        &names::port_host("port-1"),
    ]);
    let repaired = net.apply(&plan).await.unwrap();
    assert_clean(&repaired);
    assert!(
        repaired.changes.iter().any(|c| c.object == "port port-1"),
        "{:#?}",
        repaired.changes
    );
    assert!(ping(&p2, "10.0.0.5"), "the repaired port does not answer");

    // The ruleset flushed by hand.
    must(&[
        "ip", "netns", "exec", &host, "nft", "flush", "table", "inet", "ronghe",
    ]);
    let repaired = net.apply(&plan).await.unwrap();
    assert!(
        repaired
            .changes
            .iter()
            .any(|c| c.object == "nft host ruleset"),
        "{:#?}",
        repaired.changes
    );
    let ruleset = must(&[
        "ip", "netns", "exec", &host, "nft", "list", "table", "inet", "ronghe",
    ]);
    assert!(
        ruleset.contains("ct state established,related return"),
        "{ruleset}"
    );

    // Leftovers shaped like ours go; a foreign device and foreign namespaces stay.
    must(&[
        "ip",
        "-n",
        &host,
        "link",
        "add",
        "rb-0123456789",
        "type",
        "bridge",
    ]);
    must(&[
        "ip", "-n", &host, "link", "add", "keep-me", "type", "bridge",
    ]);
    let leftover_netns = format!("{}router-0123456789", net.config().prefix);
    must(&["ip", "netns", "add", &leftover_netns]);
    let cleaned = net.apply(&plan).await.unwrap();
    assert!(
        cleaned
            .changes
            .iter()
            .any(|c| c.action == Action::Removed && c.object == "device rb-0123456789"),
        "{:#?}",
        cleaned.changes
    );
    assert!(
        cleaned
            .changes
            .iter()
            .any(|c| c.object == format!("netns {leftover_netns}")),
        "{:#?}",
        cleaned.changes
    );
    assert!(!links(&host).contains(&"rb-0123456789".to_string()));
    assert!(links(&host).contains(&"keep-me".to_string()));
    assert!(!netns_path(&leftover_netns).exists());
    assert!(netns_path(&p1).exists());

    // Teardown leaves no device, netns, table or dnsmasq of ours.
    let pid_file = net
        .config()
        .state_dir
        .join(names::service_netns(&net.config().prefix, "net-6"))
        .join("dnsmasq.pid");
    net.teardown().await.unwrap();
    assert!(
        !links(&host)
            .iter()
            .any(|l| names::is_ronghe_device_name(l) || l.starts_with("rt-")),
        "{:?}",
        links(&host)
    );
    let tables = must(&["ip", "netns", "exec", &host, "nft", "list", "tables"]);
    assert!(!tables.contains("ronghe"), "{tables}");
    let ours: Vec<String> = std::fs::read_dir("/run/netns")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&net.config().prefix))
        .collect();
    assert!(ours.is_empty(), "{ours:?}");
    assert!(dnsmasq_pid(&pid_file).is_none());
}
