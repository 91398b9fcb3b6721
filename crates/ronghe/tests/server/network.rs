//! Neutron at `/networking/v2.0`: the real openstack CLI on networks, subnets, ports,
//! routers with interfaces and gateways, security groups, floating IPs with port
//! forwardings and QoS; Neutron's answers to bad input (with nothing half-made);
//! projects kept apart; and IPAM keeping addresses and MACs unique under 200 concurrent
//! creates and across a restart.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::{Context, bail};
use ronghe_testkit::{Openstack, OpenstackApi};
use serde_json::{Value, json};

use super::identity::World;
use super::{server, wait_for};

fn cli(data_dir: &std::path::Path) -> anyhow::Result<Openstack> {
    Openstack::for_data_dir(data_dir)
}

/// Raw requests to the networking API.
const NEUTRON: &str = "/networking/v2.0";

/// How many subnets, ports, floating IPs and rules the caller sees.
async fn counts(api: &OpenstackApi) -> anyhow::Result<(usize, usize, usize, usize)> {
    Ok((
        api.count("/subnets", "subnets").await?,
        // Ports the caller made (the network's DHCP port comes and goes by itself).
        api.count("/ports?device_owner=", "ports").await?,
        api.count("/floatingips", "floatingips").await?,
        api.count("/security-group-rules", "security_group_rules")
            .await?,
    ))
}

/// Checks a Neutron fault: code, exception type and a part of the message.
fn fault(response: &(u16, Value), code: u16, kind: &str, words: &str) {
    let (status, body) = response;
    assert_eq!(*status, code, "{body}");
    let error = &body["NeutronError"];
    assert_eq!(error["type"], kind, "{body}");
    assert_eq!(error["detail"], "", "{body}");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|message| message.contains(words)),
        "{body}"
    );
}

fn column<'a>(rows: &'a Value, name: &str) -> Vec<&'a str> {
    rows.as_array()
        .map(|rows| rows.iter().filter_map(|r| r[name].as_str()).collect())
        .unwrap_or_default()
}

fn first_address(port: &Value) -> anyhow::Result<String> {
    Ok(port["fixed_ips"][0]["ip_address"]
        .as_str()
        .context("an address")?
        .to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn openstack_cli_builds_networks_routers_and_floating_ips() -> anyhow::Result<()> {
    let server = server().await?;
    let os = cli(server.data_dir())?;

    // Networks and subnets.
    let net = os.json(&["network", "create", "net1"])?;
    assert_eq!(net["status"], "ACTIVE", "{net}");
    assert_eq!(net["mtu"], 1450, "{net}");
    let sub = os.json(&[
        "subnet",
        "create",
        "--network",
        "net1",
        "--subnet-range",
        "10.0.0.0/24",
        "--allocation-pool",
        "start=10.0.0.10,end=10.0.0.200",
        "--dns-nameserver",
        "10.0.0.2",
        "--host-route",
        "destination=192.168.0.0/24,gateway=10.0.0.3",
        "sub1",
    ])?;
    assert_eq!(sub["gateway_ip"], "10.0.0.1", "{sub}");
    assert_eq!(
        sub["allocation_pools"],
        json!([{"start": "10.0.0.10", "end": "10.0.0.200"}])
    );
    assert_eq!(sub["dns_nameservers"], json!(["10.0.0.2"]), "{sub}");
    assert_eq!(sub["host_routes"][0]["nexthop"], "10.0.0.3", "{sub}");
    let bare = os.json(&[
        "subnet",
        "create",
        "--network",
        "net1",
        "--subnet-range",
        "10.0.1.0/24",
        "--gateway",
        "none",
        "sub-nogw",
    ])?;
    assert_eq!(bare["gateway_ip"], Value::Null, "{bare}");
    let shown = os.json(&["network", "show", "net1"])?;
    assert_eq!(shown["name"], "net1", "{shown}");
    assert_eq!(
        shown["subnets"].as_array().map(Vec::len),
        Some(2),
        "{shown}"
    );
    os.ok(&["network", "set", "--description", "first", "net1"])?;
    let set = os.json(&["network", "show", "net1"])?;
    assert_eq!(set["description"], "first", "{set}");
    assert_eq!(set["revision_number"], 2, "{set}");
    let listed = os.json(&["network", "list"])?;
    assert!(column(&listed, "Name").contains(&"net1"), "{listed}");

    // Ports: allocated, or the address asked for.
    let port1 = os.json(&["port", "create", "--network", "net1", "port1"])?;
    let address = first_address(&port1)?;
    assert!(address.starts_with("10.0.0."), "{port1}");
    assert!(
        port1["mac_address"]
            .as_str()
            .is_some_and(|mac| mac.starts_with("fa:16:3e:")),
        "{port1}"
    );
    assert_eq!(
        port1["security_group_ids"].as_array().map(Vec::len),
        Some(1)
    );
    let port2 = os.json(&[
        "port",
        "create",
        "--network",
        "net1",
        "--fixed-ip",
        "subnet=sub1,ip-address=10.0.0.50",
        "port2",
    ])?;
    assert_eq!(first_address(&port2)?, "10.0.0.50");
    let ports = os.json(&["port", "list", "--network", "net1"])?;
    let named: Vec<&str> = column(&ports, "Name")
        .into_iter()
        .filter(|name| !name.is_empty())
        .collect();
    assert_eq!(named.len(), 2, "{ports}");
    let port2_shown = os.json(&["port", "show", "port2"])?;
    assert_eq!(port2_shown["fixed_ips"], port2["fixed_ips"]);
    os.ok(&["port", "delete", "port2"])?;

    // A router on sub1, and an external network as its gateway.
    let router = os.json(&["router", "create", "r1"])?;
    assert_eq!(router["external_gateway_info"], Value::Null, "{router}");
    os.ok(&["router", "add", "subnet", "r1", "sub1"])?;
    let interfaces = os.json(&["port", "list", "--router", "r1"])?;
    assert_eq!(
        interfaces[0]["Fixed IP Addresses"][0]["ip_address"], "10.0.0.1",
        "the interface holds the gateway address: {interfaces}"
    );
    let (ok, _, stderr) = os.run(&["router", "add", "subnet", "r1", "sub-nogw"])?;
    assert!(!ok && stderr.contains("must have a gateway IP"), "{stderr}");

    // The network's DHCP port (kept by a controller) holds an address on each DHCP
    // subnet; deleting a subnet takes that address back.
    let dhcp_addresses = || -> anyhow::Result<Option<usize>> {
        let ports = os.json(&[
            "port",
            "list",
            "--network",
            "net1",
            "--device-owner",
            "network:dhcp",
        ])?;
        Ok(ports[0]["Fixed IP Addresses"].as_array().map(Vec::len))
    };
    wait_for(
        Duration::from_secs(30),
        "the DHCP port on both subnets",
        || async { Ok((dhcp_addresses()? == Some(2)).then_some(())) },
    )
    .await?;
    os.ok(&["subnet", "delete", "sub-nogw"])?;
    assert_eq!(dhcp_addresses()?, Some(1));
    os.ok(&[
        "network",
        "create",
        "--external",
        "--provider-network-type",
        "flat",
        "--provider-physical-network",
        "public",
        "public",
    ])?;
    os.ok(&[
        "subnet",
        "create",
        "--network",
        "public",
        "--subnet-range",
        "172.24.4.0/24",
        "public-sub",
    ])?;
    os.ok(&["router", "set", "--external-gateway", "public", "r1"])?;
    let with_gateway = os.json(&["router", "show", "r1"])?;
    let gateway = &with_gateway["external_gateway_info"];
    assert!(
        gateway["external_fixed_ips"][0]["ip_address"]
            .as_str()
            .is_some_and(|a| a.starts_with("172.24.4.")),
        "{with_gateway}"
    );
    let gateway_ports = os.json(&[
        "port",
        "list",
        "--network",
        "public",
        "--device-owner",
        "network:router_gateway",
    ])?;
    assert_eq!(column(&gateway_ports, "ID").len(), 1, "{gateway_ports}");

    // Floating IPs: associated through the router, then let go.
    let fip = os.json(&["floating", "ip", "create", "public"])?;
    let fip_id = fip["id"].as_str().context("fip id")?.to_owned();
    assert_eq!(fip["port_id"], Value::Null, "{fip}");
    os.ok(&["floating", "ip", "set", "--port", "port1", &fip_id])?;
    let associated = os.json(&["floating", "ip", "show", &fip_id])?;
    assert_eq!(
        associated["fixed_ip_address"],
        address.as_str(),
        "{associated}"
    );
    assert_eq!(associated["router_id"], router["id"], "{associated}");
    assert_eq!(associated["port_details"]["name"], "port1", "{associated}");
    let (ok, _, stderr) = os.run(&["router", "remove", "subnet", "r1", "sub1"])?;
    assert!(
        !ok && stderr.contains("required by one or more floating IPs"),
        "{stderr}"
    );
    os.ok(&["floating", "ip", "unset", "--port", &fip_id])?;
    let free = os.json(&["floating", "ip", "show", &fip_id])?;
    assert_eq!(free["port_id"], Value::Null, "{free}");

    // Port forwardings on the free floating IP.
    let forwarding = os.json(&[
        "floating",
        "ip",
        "port",
        "forwarding",
        "create",
        "--internal-ip-address",
        &address,
        "--port",
        "port1",
        "--internal-protocol-port",
        "80",
        "--external-protocol-port",
        "8080",
        "--protocol",
        "tcp",
        &fip_id,
    ])?;
    assert_eq!(forwarding["external_port"], 8080, "{forwarding}");
    let forwardings = os.json(&["floating", "ip", "port", "forwarding", "list", &fip_id])?;
    assert_eq!(column(&forwardings, "ID").len(), 1, "{forwardings}");
    let forwarding_id = forwarding["id"].as_str().context("forwarding id")?;
    os.ok(&[
        "floating",
        "ip",
        "port",
        "forwarding",
        "delete",
        &fip_id,
        forwarding_id,
    ])?;

    // Security groups and rules.
    let group = os.json(&["security", "group", "create", "sg1"])?;
    assert_eq!(group["rules"].as_array().map(Vec::len), Some(2), "{group}");
    let groups = os.json(&["security", "group", "list"])?;
    assert!(column(&groups, "Name").contains(&"default"), "{groups}");
    let rule = os.json(&[
        "security",
        "group",
        "rule",
        "create",
        "--protocol",
        "tcp",
        "--dst-port",
        "80",
        "sg1",
    ])?;
    assert_eq!(rule["port_range_min"], 80, "{rule}");
    let rules = os.json(&["security", "group", "rule", "list", "sg1"])?;
    assert_eq!(column(&rules, "ID").len(), 3, "{rules}");
    let rule_id = rule["id"].as_str().context("rule id")?;
    os.ok(&["security", "group", "rule", "delete", rule_id])?;
    let rules = os.json(&["security", "group", "rule", "list", "sg1"])?;
    assert_eq!(column(&rules, "ID").len(), 2, "{rules}");
    os.ok(&["security", "group", "delete", "sg1"])?;

    // QoS.
    os.ok(&["network", "qos", "policy", "create", "qp1"])?;
    let limit = os.json(&[
        "network",
        "qos",
        "rule",
        "create",
        "--type",
        "bandwidth-limit",
        "--max-kbps",
        "1000",
        "--max-burst-kbits",
        "100",
        "--egress",
        "qp1",
    ])?;
    assert_eq!(limit["max_kbps"], 1000, "{limit}");
    let policy = os.json(&["network", "qos", "policy", "show", "qp1"])?;
    assert_eq!(policy["rules"][0]["type"], "bandwidth_limit", "{policy}");

    // Extensions: what is served, and nothing else.
    let extensions = os.json(&["extension", "list", "--network"])?;
    let aliases = column(&extensions, "Alias");
    for alias in [
        "router",
        "external-net",
        "security-group",
        "qos",
        "floatingip-port-forwarding",
    ] {
        assert!(aliases.contains(&alias), "{alias}: {extensions}");
    }
    assert!(!aliases.contains(&"tag-ports-during-bulk-creation"));

    // Taking it apart, in Neutron's order.
    let (ok, _, stderr) = os.run(&["network", "delete", "net1"])?;
    assert!(!ok && stderr.contains("still in use"), "{stderr}");
    let (ok, _, stderr) = os.run(&["router", "delete", "r1"])?;
    assert!(!ok && stderr.contains("still has ports"), "{stderr}");
    os.ok(&["floating", "ip", "delete", &fip_id])?;
    os.ok(&["router", "unset", "--external-gateway", "r1"])?;
    let gateway_ports = os.json(&[
        "port",
        "list",
        "--network",
        "public",
        "--device-owner",
        "network:router_gateway",
    ])?;
    assert_eq!(column(&gateway_ports, "ID").len(), 0, "{gateway_ports}");
    os.ok(&["router", "remove", "subnet", "r1", "sub1"])?;
    os.ok(&["router", "delete", "r1"])?;
    os.ok(&["port", "delete", "port1"])?;
    os.ok(&["network", "delete", "net1"])?;
    let subnets = os.json(&["subnet", "list"])?;
    assert_eq!(column(&subnets, "Name"), ["public-sub"], "{subnets}");
    Ok(())
}

/// A bad request: method, path, body, and the code, exception type and words expected.
type Case = (
    &'static str,
    String,
    Option<Value>,
    u16,
    &'static str,
    &'static str,
);

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_neutron_faults_and_makes_nothing() -> anyhow::Result<()> {
    let server = server().await?;
    let api = OpenstackApi::admin(&server, NEUTRON).await?;
    let net = api
        .create("networks", "network", json!({"name": "net1"}))
        .await?;
    let subnet = api
        .create(
            "subnets",
            "subnet",
            json!({"network_id": net, "cidr": "10.0.0.0/24", "ip_version": 4}),
        )
        .await?;
    let subnet_body = |cidr: &str, extra: Value| {
        let mut body = json!({"network_id": net, "cidr": cidr, "ip_version": 4});
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        Some(json!({"subnet": body}))
    };
    let port_body = |fixed: Value| Some(json!({"port": {"network_id": net, "fixed_ips": [fixed]}}));
    let group = api
        .create("security-groups", "security_group", json!({"name": "sg1"}))
        .await?;
    let rule = |min: u32, max: u32| {
        Some(
            json!({"security_group_rule": {"security_group_id": group, "direction": "ingress",
            "protocol": "tcp", "port_range_min": min, "port_range_max": max}}),
        )
    };
    api.expect(201, "POST", "/security-group-rules", rule(80, 80))
        .await?;
    let port = api
        .create(
            "ports",
            "port",
            json!({"network_id": net, "fixed_ips": [{"subnet_id": subnet, "ip_address": "10.0.0.5"}]}),
        )
        .await?;
    let before = counts(&api).await?;

    let cases: Vec<Case> = vec![
        (
            "POST",
            "/subnets".into(),
            subnet_body("10.0.0.0/16", json!({})),
            400,
            "InvalidInput",
            "overlaps with another subnet",
        ),
        (
            "POST",
            "/subnets".into(),
            subnet_body("10.1.0.0/24", json!({"gateway_ip": "10.2.0.1"})),
            400,
            "InvalidInput",
            "outside the subnet",
        ),
        (
            "POST",
            "/subnets".into(),
            subnet_body("10.1.0.0/33", json!({})),
            400,
            "HTTPBadRequest",
            "not a valid IP subnet",
        ),
        (
            "POST",
            "/subnets".into(),
            subnet_body("banana", json!({})),
            400,
            "HTTPBadRequest",
            "Invalid input for cidr",
        ),
        (
            "POST",
            "/ports".into(),
            port_body(json!({"subnet_id": subnet, "ip_address": "10.9.0.5"})),
            400,
            "InvalidIpForSubnet",
            "not a valid IP for the specified subnet",
        ),
        (
            "POST",
            "/ports".into(),
            port_body(json!({"subnet_id": subnet, "ip_address": "10.0.0.5"})),
            409,
            "IpAddressAlreadyAllocated",
            "10.0.0.5 already allocated",
        ),
        (
            "POST",
            "/ports".into(),
            Some(json!({"port": {"network_id": net, "bogus": 1}})),
            400,
            "HTTPBadRequest",
            "Unrecognized attribute(s) 'bogus'",
        ),
        (
            "POST",
            "/floatingips".into(),
            Some(json!({"floatingip": {"floating_network_id": net}})),
            400,
            "BadRequest",
            "is not a valid external network",
        ),
        (
            "POST",
            "/security-group-rules".into(),
            rule(90, 80),
            400,
            "SecurityGroupInvalidPortRange",
            "port_range_min must be <= port_range_max",
        ),
        (
            "POST",
            "/security-group-rules".into(),
            rule(80, 80),
            409,
            "SecurityGroupRuleExists",
            "already exists",
        ),
        (
            "DELETE",
            format!("/networks/{net}"),
            None,
            409,
            "NetworkInUse",
            "still in use",
        ),
        (
            "DELETE",
            format!("/subnets/{subnet}"),
            None,
            409,
            "SubnetInUse",
            "have an IP allocation",
        ),
        (
            "GET",
            "/networks/net1".into(),
            None,
            404,
            "NetworkNotFound",
            "Network net1 could not be found.",
        ),
        (
            "GET",
            "/ports/5ae7487a-0d6d-4d8e-9c4a-1b2c3d4e5f60".into(),
            None,
            404,
            "PortNotFound",
            "could not be found",
        ),
        (
            "GET",
            "/routers/not-a-uuid".into(),
            None,
            404,
            "RouterNotFound",
            "could not be found",
        ),
        (
            "GET",
            "/security-groups/default".into(),
            None,
            404,
            "SecurityGroupNotFound",
            "does not exist",
        ),
    ];
    for (method, path, body, code, kind, words) in cases {
        let response = api.send(method, &path, body.as_ref()).await?;
        fault(&response, code, kind, words);
        assert_eq!(
            counts(&api).await?,
            before,
            "{method} {path} left something behind"
        );
    }
    // The extension a port create asks for is absent, not an error.
    let absent = api
        .send("GET", "/extensions/tag-ports-during-bulk-creation", None)
        .await?;
    assert_eq!(absent.0, 404, "{}", absent.1);

    // A bulk create is all or none.
    let bulk = json!({"ports": [
        {"network_id": net, "name": "ok"},
        {"network_id": net, "fixed_ips": [{"subnet_id": subnet, "ip_address": "10.0.0.5"}]},
    ]});
    let response = api.send("POST", "/ports", Some(&bulk)).await?;
    fault(
        &response,
        409,
        "IpAddressAlreadyAllocated",
        "already allocated",
    );
    assert_eq!(counts(&api).await?, before, "the bulk create was undone");

    // Filters, fields and paging.
    let found = api
        .expect(
            200,
            "GET",
            "/ports?fixed_ips=ip_address%3D10.0.0.5&fields=id&fields=fixed_ips",
            None,
        )
        .await?;
    assert_eq!(found["ports"].as_array().map(Vec::len), Some(1), "{found}");
    assert_eq!(found["ports"][0]["id"], port.as_str());
    assert!(found["ports"][0].get("name").is_none(), "{found}");
    api.create("networks", "network", json!({"name": "net2"}))
        .await?;
    let page = api.expect(200, "GET", "/networks?limit=1", None).await?;
    assert_eq!(page["networks"].as_array().map(Vec::len), Some(1), "{page}");
    assert!(page["networks_links"][0]["href"].is_string(), "{page}");
    let named = api.expect(200, "GET", "/networks?name=net2", None).await?;
    assert_eq!(column(&named["networks"], "name"), ["net2"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn projects_see_and_use_only_their_own_networks() -> anyhow::Result<()> {
    let server = server().await?;
    let world = World::new(&server).await?;
    let admin = OpenstackApi::admin(&server, NEUTRON).await?;
    let alice = OpenstackApi::login(&server, NEUTRON, "alice", "pw-alice", "team-a").await?;
    let bob = OpenstackApi::login(&server, NEUTRON, "bob", "pw-bob", "team-b").await?;
    let carol = OpenstackApi::login(&server, NEUTRON, "carol", "pw-carol", "team-a").await?;

    let private = alice
        .create("networks", "network", json!({"name": "private"}))
        .await?;
    let subnet = alice
        .create(
            "subnets",
            "subnet",
            json!({"network_id": private, "cidr": "10.0.0.0/24", "ip_version": 4}),
        )
        .await?;
    // Only admins share networks.
    let refused = alice
        .send(
            "POST",
            "/networks",
            Some(&json!({"network": {"name": "mine", "shared": true}})),
        )
        .await?;
    fault(
        &refused,
        403,
        "PolicyNotAuthorized",
        "create_network:shared",
    );
    // Readers read but do not write.
    carol
        .expect(200, "GET", &format!("/networks/{private}"), None)
        .await?;
    let refused = carol
        .send(
            "POST",
            "/networks",
            Some(&json!({"network": {"name": "x"}})),
        )
        .await?;
    fault(&refused, 403, "PolicyNotAuthorized", "create_network");

    // Another project sees nothing of it and cannot use it.
    fault(
        &bob.send("GET", &format!("/networks/{private}"), None)
            .await?,
        404,
        "NetworkNotFound",
        "could not be found",
    );
    fault(
        &bob.send("GET", &format!("/subnets/{subnet}"), None).await?,
        404,
        "SubnetNotFound",
        "could not be found",
    );
    let listed = bob.expect(200, "GET", "/networks", None).await?;
    assert!(!listed.to_string().contains(&private), "{listed}");
    fault(
        &bob.send(
            "POST",
            "/ports",
            Some(&json!({"port": {"network_id": private}})),
        )
        .await?,
        404,
        "NetworkNotFound",
        "could not be found",
    );
    fault(
        &bob.send("DELETE", &format!("/networks/{private}"), None)
            .await?,
        404,
        "NetworkNotFound",
        "could not be found",
    );
    let port = alice
        .create("ports", "port", json!({"network_id": private}))
        .await?;
    fault(
        &bob.send("GET", &format!("/ports/{port}"), None).await?,
        404,
        "PortNotFound",
        "could not be found",
    );
    assert_eq!(bob.count("/ports", "ports").await?, 0);

    // A shared network is everyone's to see and use, but only its owner's to change.
    let shared = admin
        .create(
            "networks",
            "network",
            json!({"name": "shared", "shared": true}),
        )
        .await?;
    admin
        .create(
            "subnets",
            "subnet",
            json!({"network_id": shared, "cidr": "192.168.50.0/24", "ip_version": 4}),
        )
        .await?;
    let seen = bob.expect(200, "GET", "/networks", None).await?;
    assert_eq!(column(&seen["networks"], "name"), ["shared"], "{seen}");
    assert!(
        seen["networks"][0].get("provider:network_type").is_none(),
        "provider attributes are for admins: {seen}"
    );
    let bobs = bob
        .expect(
            201,
            "POST",
            "/ports",
            Some(json!({"port": {"network_id": shared}})),
        )
        .await?;
    assert_eq!(bobs["port"]["project_id"], world.team_b_id(), "{bobs}");
    fault(
        &bob.send(
            "PUT",
            &format!("/networks/{shared}"),
            Some(&json!({"network": {"name": "mine"}})),
        )
        .await?,
        403,
        "PolicyNotAuthorized",
        "update_network",
    );
    // Admins see every project's networks.
    let everything = admin.expect(200, "GET", "/networks", None).await?;
    assert!(everything.to_string().contains(&private), "{everything}");

    // The external network is everyone's way out: a project's router gateway and floating
    // IP take addresses from it, in the project.
    let public = admin
        .create(
            "networks",
            "network",
            json!({"name": "public", "router:external": true,
                "provider:network_type": "flat", "provider:physical_network": "public"}),
        )
        .await?;
    admin
        .create(
            "subnets",
            "subnet",
            json!({"network_id": public, "cidr": "172.24.4.0/24", "ip_version": 4}),
        )
        .await?;
    let router = alice
        .create(
            "routers",
            "router",
            json!({"name": "r", "external_gateway_info": {"network_id": public}}),
        )
        .await?;
    alice
        .expect(
            200,
            "PUT",
            &format!("/routers/{router}/add_router_interface"),
            Some(json!({"subnet_id": subnet})),
        )
        .await?;
    let fip = alice
        .expect(
            201,
            "POST",
            "/floatingips",
            Some(json!({"floatingip": {"floating_network_id": public, "port_id": port}})),
        )
        .await?;
    assert_eq!(fip["floatingip"]["router_id"], router.as_str(), "{fip}");
    let fip_id = fip["floatingip"]["id"].as_str().context("fip id")?;
    fault(
        &bob.send("GET", &format!("/floatingips/{fip_id}"), None)
            .await?,
        404,
        "FloatingIPNotFound",
        "could not be found",
    );
    fault(
        &bob.send("DELETE", &format!("/ports/{port}"), None).await?,
        404,
        "PortNotFound",
        "could not be found",
    );
    // Neutron names need not be unique.
    alice
        .create("networks", "network", json!({"name": "private"}))
        .await?;
    let twins = alice
        .expect(200, "GET", "/networks?name=private", None)
        .await?;
    assert_eq!(
        twins["networks"].as_array().map(Vec::len),
        Some(2),
        "{twins}"
    );
    Ok(())
}

/// Creates `count` ports on a network at once; returns their (address, MAC) pairs.
async fn create_ports_at_once(
    api: &OpenstackApi,
    network: &str,
    count: usize,
) -> anyhow::Result<Vec<(String, String)>> {
    let creates = (0..count).map(|index| {
        let body = json!({"port": {"network_id": network, "name": format!("p{index}")}});
        async move { api.send("POST", "/ports", Some(&body)).await }
    });
    let mut made = Vec::with_capacity(count);
    for result in futures::future::join_all(creates).await {
        let (status, body) = result?;
        if status != 201 {
            bail!("a concurrent port create answered {status}: {body}");
        }
        let port = &body["port"];
        made.push((
            first_address(port)?,
            port["mac_address"].as_str().context("a MAC")?.to_owned(),
        ));
    }
    Ok(made)
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_ports_get_distinct_addresses_before_and_after_a_restart() -> anyhow::Result<()>
{
    let mut server = server().await?;
    let mut api = OpenstackApi::admin(&server, NEUTRON).await?;
    let net = api
        .create("networks", "network", json!({"name": "busy"}))
        .await?;
    api.create(
        "subnets",
        "subnet",
        json!({"network_id": net, "cidr": "10.20.0.0/24", "ip_version": 4}),
    )
    .await?;
    let first = create_ports_at_once(&api, &net, 200).await?;
    let addresses: HashSet<&String> = first.iter().map(|(address, _)| address).collect();
    let macs: HashSet<&String> = first.iter().map(|(_, mac)| mac).collect();
    assert_eq!(addresses.len(), 200, "every port has its own address");
    assert_eq!(macs.len(), 200, "every port has its own MAC");
    assert!(
        !addresses.contains(&"10.20.0.1".to_owned()),
        "the gateway is kept"
    );

    server.restart().await?;
    api.reconnect(&server).await?;
    let second = create_ports_at_once(&api, &net, 40).await?;
    let mut all_addresses: HashSet<String> = first.iter().map(|(a, _)| a.clone()).collect();
    let mut all_macs: HashSet<String> = first.iter().map(|(_, m)| m.clone()).collect();
    for (address, mac) in &second {
        assert!(
            all_addresses.insert(address.clone()),
            "{address} was held already"
        );
        assert!(all_macs.insert(mac.clone()), "{mac} was held already");
    }
    let listed = api
        .expect(
            200,
            "GET",
            &format!("/ports?network_id={net}&device_owner="),
            None,
        )
        .await?;
    assert_eq!(listed["ports"].as_array().map(Vec::len), Some(240));
    Ok(())
}
