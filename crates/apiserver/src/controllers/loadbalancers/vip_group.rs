//! A load balancer's VIP port is in a security group of its own, `lb-<uid>`, letting in
//! its listeners' ports from anywhere (or from their `allowed_cidrs`), as Octavia does
//! for its amphorae; the port stays in the project's default group too, so members in it
//! accept the proxy's connections. Without it, clients outside the project's default
//! group (a floating IP's, the external network's) would be turned away at the VIP.

use std::collections::BTreeMap;

use ronghe_api_types::loadbalancing::{self as lb, ListenerSpec, Tree};
use ronghe_api_types::network::{self as net, PortSpec};
use serde_json::{Value, json};

use crate::engine::{Engine, ListOptions, PatchKind, Selectors, Target, WriteOptions};
use crate::error::ApiResult;
use crate::object;

/// The label on a VIP group's rules naming their load balancer's uid.
const LB_LABEL: &str = "loadbalancing.ronghe.io/load-balancer";

/// The rules a tree's listeners want, by name.
pub(super) fn wanted_rules(tree: &Tree, group_uid: &str) -> BTreeMap<String, Value> {
    let lb_uid = lb::uid(&tree.load_balancer);
    let mut rules = BTreeMap::new();
    for listener in tree.listeners.iter().filter(|l| !lb::deleting(l)) {
        let spec: ListenerSpec = lb::spec_of(listener);
        let protocol = if spec.protocol == "UDP" { "udp" } else { "tcp" };
        let cidrs = if spec.allowed_cidrs.is_empty() {
            vec!["0.0.0.0/0".to_owned()]
        } else {
            spec.allowed_cidrs.clone()
        };
        for (index, cidr) in cidrs.iter().enumerate() {
            let ethertype = if cidr.contains(':') { "IPv6" } else { "IPv4" };
            rules.insert(
                format!("lb-{lb_uid}-{protocol}-{}-{index}", spec.protocol_port),
                json!({
                    "securityGroupId": group_uid,
                    "direction": "ingress",
                    "ethertype": ethertype,
                    "protocol": protocol,
                    "portRangeMin": spec.protocol_port,
                    "portRangeMax": spec.protocol_port,
                    "remoteIpPrefix": cidr,
                    "description": format!("listener {}", spec.protocol_port),
                }),
            );
        }
    }
    rules
}

fn owner(lb: &Value) -> Value {
    json!([object::owner_reference(lb::API_VERSION, "LoadBalancer", lb)])
}

/// Makes the VIP group, its rules and the VIP port's membership what the tree wants.
pub(super) async fn ensure(engine: &Engine, tree: &Tree) -> ApiResult<()> {
    let balancer = &tree.load_balancer;
    let spec: lb::LoadBalancerSpec = lb::spec_of(balancer);
    if spec.vip_port_id.is_empty() {
        return Ok(());
    }
    let namespace = object::namespace(balancer).unwrap_or_default();
    let lb_uid = lb::uid(balancer);
    let groups = engine.kind(net::API_VERSION, "SecurityGroup")?;
    let name = format!("lb-{lb_uid}");
    let group = match engine.get(&groups, Some(namespace), &name).await {
        Ok(group) => group,
        Err(error) if error.code() == 404 => {
            let body = json!({
                "apiVersion": net::API_VERSION,
                "kind": "SecurityGroup",
                "metadata": {"name": name, "namespace": namespace, "ownerReferences": owner(balancer)},
                "spec": {"name": name, "description": format!("The listeners of load balancer {lb_uid}")},
            });
            engine
                .create(&groups, Some(namespace), body, &WriteOptions::default())
                .await?
                .object
        }
        Err(error) => return Err(error),
    };
    let group_uid = lb::uid(&group).to_owned();
    let rules_kind = engine.kind(net::API_VERSION, "SecurityGroupRule")?;
    let options = ListOptions {
        selectors: Selectors::parse(&rules_kind, Some(&format!("{LB_LABEL}={lb_uid}")), None)?,
        ..ListOptions::default()
    };
    let have: BTreeMap<String, Value> = engine
        .list(&rules_kind, Some(namespace), &options)
        .await?
        .items
        .into_iter()
        .map(|r| (object::name(&r).unwrap_or_default().to_owned(), r))
        .collect();
    let wanted = wanted_rules(tree, &group_uid);
    for (rule, spec) in &wanted {
        if have.contains_key(rule) {
            continue;
        }
        let body = json!({
            "apiVersion": net::API_VERSION,
            "kind": "SecurityGroupRule",
            "metadata": {
                "name": rule,
                "namespace": namespace,
                "labels": {LB_LABEL: lb_uid},
                "ownerReferences": [object::owner_reference(net::API_VERSION, "SecurityGroup", &group)],
            },
            "spec": spec,
        });
        match engine
            .create(&rules_kind, Some(namespace), body, &WriteOptions::default())
            .await
        {
            Ok(_) => {}
            Err(error) if error.code() == 409 => {}
            Err(error) => return Err(error),
        }
    }
    for rule in have.keys().filter(|r| !wanted.contains_key(*r)) {
        crate::controllers::delete_if_present(engine, &rules_kind, Some(namespace), rule).await?;
    }
    let Some(port) =
        crate::kinds::network::resolve(engine, "Port", namespace, &spec.vip_port_id, |_| false)
            .await?
    else {
        return Ok(());
    };
    let port_spec: PortSpec = net::spec_of(&port);
    let mut members = port_spec.security_groups.clone().unwrap_or_default();
    if !port_spec.security_enabled() || members.contains(&group_uid) {
        return Ok(());
    }
    members.push(group_uid);
    let ports = engine.kind(net::API_VERSION, "Port")?;
    engine
        .patch(
            &ports,
            Some(namespace),
            object::name(&port).unwrap_or_default(),
            PatchKind::Merge,
            json!({"spec": {"securityGroups": members}}),
            Target::Main,
            &WriteOptions::default(),
        )
        .await?;
    Ok(())
}
