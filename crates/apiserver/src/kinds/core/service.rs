//! Service: a Kubernetes Service *is* a load balancer. Admitting a Service of type
//! ClusterIP, NodePort or LoadBalancer makes its LoadBalancer (`loadbalancing.ronghe.io`,
//! owned by the Service) with the VIP on the project's service subnet, and the VIP's
//! address is the ClusterIP; a headless Service (`clusterIP: None`) and an ExternalName
//! Service get none. NodePort and LoadBalancer Services get node ports, unique across the
//! cloud by claims. The services controller (`crate::controllers::services`) keeps the
//! load balancer's listeners, pools and members in step with the Service and its
//! endpoints, and routes the service subnet to the project's tenant networks.

pub mod annotations;

use std::collections::BTreeSet;
use std::net::IpAddr;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Service;
use ronghe_api_types::loadbalancing as lb;
use ronghe_api_types::network::{self as net, ipam};
use ronghe_api_types::validation::{FieldCause, NameRule};
use serde_json::{Value, json};

use crate::engine::{Claim, Engine, ListOptions, Selectors, WriteOptions};
use crate::error::{ApiError, ApiResult};
use crate::object;
use crate::registry::{Admission, Column, KindSpec, Subresources};

/// Where ClusterIPs come from: each project's service subnet has this CIDR (projects are
/// isolated from each other, so their service subnets may overlap as Kubernetes clusters'
/// do).
pub const SERVICE_CIDR: &str = "10.96.0.0/16";
/// The label marking a project's service network and subnet (value [`SERVICES_ROLE`]).
pub const ROLE_LABEL: &str = "loadbalancing.ronghe.io/role";
pub const SERVICES_ROLE: &str = "services";
/// The label on a Service's load balancer naming the Service.
pub const SERVICE_LABEL: &str = "loadbalancing.ronghe.io/service";
/// The range node ports are allocated from, as Kubernetes' default.
pub const NODE_PORTS: std::ops::RangeInclusive<u16> = 30000..=32767;

/// The annotation Kubernetes took source ranges from before `loadBalancerSourceRanges`
/// (comma-separated; the field wins when both are set).
pub const SOURCE_RANGES_ANNOTATION: &str = "service.beta.kubernetes.io/load-balancer-source-ranges";

const TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];

pub(super) fn kind() -> KindSpec {
    KindSpec {
        short_names: &["svc"],
        categories: &["all"],
        subresources: Subresources {
            status: true,
            scale: false,
        },
        name_rule: NameRule::Dns1035Label,
        default: Some(default_service),
        prepare_update: Some(drop_type_dependent_fields),
        validate: Some(validate),
        admit: Some(admit),
        claims: Some(claims),
        fields: &[("spec.clusterIP", |o| {
            object::str_at(o, &["spec", "clusterIP"])
        })],
        columns: vec![
            Column::name(),
            Column::text("Type", "The type of the service.", &["spec", "type"]),
            Column::text(
                "Cluster-IP",
                "The IP address of the service (its load balancer's VIP).",
                &["spec", "clusterIP"],
            ),
            Column::value(
                "External-IP",
                "string",
                "The floating IP of a LoadBalancer service.",
                external_ip_cell,
            ),
            Column::value("Port(s)", "string", "The ports of the service.", ports_cell),
            Column::age(),
            Column::value(
                "Selector",
                "string",
                "The labels of the pods and VMs behind the service.",
                selector_cell,
            )
            .wide(),
        ],
        ..KindSpec::builtin::<Service>()
    }
}

/// The name of a Service's load balancer.
pub fn load_balancer_name(service: &str) -> String {
    ronghe_api_types::loadbalancing::service_load_balancer_name(service)
}

/// Whether a Service has a VIP (and so a load balancer): not headless, not ExternalName.
pub fn has_vip(service: &Value) -> bool {
    let spec = &service["spec"];
    spec["type"].as_str() != Some("ExternalName") && spec["clusterIP"].as_str() != Some("None")
}

/// The source ranges a LoadBalancer Service lets in through its external address, as
/// written (`loadBalancerSourceRanges`, else the older annotation); none: any source.
pub fn source_ranges(service: &Value) -> Vec<String> {
    let field: Vec<String> = service["spec"]["loadBalancerSourceRanges"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|range| range.trim().to_owned())
        .collect();
    if !field.is_empty() {
        return field;
    }
    service["metadata"]["annotations"][SOURCE_RANGES_ANNOTATION]
        .as_str()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|range| !range.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `loadBalancerSourceRanges` (or the older annotation): LoadBalancer Services only, each
/// a CIDR. As in Kubernetes, values an update leaves as they were are not checked again
/// (older versions took what they no longer take), and the capital in the field's path
/// is Kubernetes' own, a leftover of the annotation days that `kubectl` users see.
fn validate_source_ranges(
    service: &Value,
    old: Option<&Value>,
    kind: &str,
    causes: &mut Vec<FieldCause>,
) {
    const NOT_A_CIDR: &str = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)";
    let fields = |service: &Value| {
        service["spec"]["loadBalancerSourceRanges"]
            .as_array()
            .filter(|ranges| !ranges.is_empty())
            .cloned()
    };
    let annotation = |service: &Value| {
        service["metadata"]["annotations"][SOURCE_RANGES_ANNOTATION]
            .as_str()
            .map(str::to_owned)
    };
    let (new_fields, new_annotation) = (fields(service), annotation(service));
    let path = if new_fields.is_some() {
        "spec.LoadBalancerSourceRanges".to_owned()
    } else if new_annotation.is_some() {
        format!("metadata.annotations[{SOURCE_RANGES_ANNOTATION}]")
    } else {
        return;
    };
    if kind != "LoadBalancer" {
        causes.push(FieldCause::forbidden(
            path.as_str(),
            "may only be used when `type` is 'LoadBalancer'",
        ));
    }
    let trimmed = |range: &Value| range.as_str().unwrap_or_default().trim().to_owned();
    match new_fields {
        Some(ranges) => {
            let existing: Vec<String> = old
                .and_then(fields)
                .unwrap_or_default()
                .iter()
                .map(trimmed)
                .collect();
            for (index, range) in ranges.iter().map(trimmed).enumerate() {
                if !existing.contains(&range) && ipam::parse_source_range(&range).is_err() {
                    causes.push(FieldCause::invalid(
                        format!("{path}[{index}]"),
                        range,
                        NOT_A_CIDR,
                    ));
                }
            }
        }
        None => {
            let value = new_annotation.unwrap_or_default();
            if old.and_then(annotation).as_ref() == Some(&value) || value.trim().is_empty() {
                return;
            }
            // Every comma-separated item must be a CIDR: an empty one is not.
            for range in value.trim().split(',').map(str::trim) {
                if ipam::parse_source_range(range).is_err() {
                    causes.push(FieldCause::invalid(path.as_str(), range, NOT_A_CIDR));
                }
            }
        }
    }
}

fn default_service(service: &mut Value) {
    let Some(spec) = service.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let kind = spec
        .entry("type")
        .or_insert_with(|| json!("ClusterIP"))
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if kind != "ExternalName" {
        spec.entry("sessionAffinity")
            .or_insert_with(|| json!("None"));
        spec.entry("internalTrafficPolicy")
            .or_insert_with(|| json!("Cluster"));
    }
    if kind == "NodePort" || kind == "LoadBalancer" {
        spec.entry("externalTrafficPolicy")
            .or_insert_with(|| json!("Cluster"));
    }
    if kind == "LoadBalancer" {
        spec.entry("allocateLoadBalancerNodePorts")
            .or_insert_with(|| json!(true));
    }
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for port in ports.iter_mut().filter_map(Value::as_object_mut) {
            port.entry("protocol").or_insert_with(|| json!("TCP"));
            if let Some(number) = port.get("port").cloned() {
                port.entry("targetPort").or_insert(number);
            }
        }
    }
    let status = service
        .as_object_mut()
        .map(|root| root.entry("status").or_insert_with(|| json!({})));
    if let Some(status) = status.and_then(Value::as_object_mut) {
        status.entry("loadBalancer").or_insert_with(|| json!({}));
    }
}

/// Whether a Service of this spec has node ports.
fn needs_node_ports(spec: &Value) -> bool {
    match spec["type"].as_str() {
        Some("NodePort") => true,
        Some("LoadBalancer") => spec["allocateLoadBalancerNodePorts"] != json!(false),
        _ => false,
    }
}

/// Whether a Service of this spec has a health-check node port: a LoadBalancer Service
/// whose external traffic stays on the host it reaches (`externalTrafficPolicy: Local`).
fn needs_health_check_port(spec: &Value) -> bool {
    spec["type"].as_str() == Some("LoadBalancer")
        && spec["externalTrafficPolicy"].as_str() == Some("Local")
}

/// An update that changes a Service's type drops what the new type has no use for and the
/// client left as it was, as Kubernetes does: the ClusterIP (and its families) when it
/// becomes ExternalName, node ports when it needs none, and the fields only a NodePort or
/// LoadBalancer Service has. (Its load balancer, floating IP and status follow in the
/// services controller.)
fn drop_type_dependent_fields(service: &mut Value, old: &Value) {
    let (before, spec) = (&old["spec"], &mut service["spec"]);
    let kind = |spec: &Value| spec["type"].as_str().unwrap_or("ClusterIP").to_owned();
    let (old_kind, new_kind) = (kind(before), kind(spec));
    let unchanged = |spec: &Value, field: &str| spec.get(field) == before.get(field);
    let mut dropped = Vec::new();
    if old_kind != "ExternalName" && new_kind == "ExternalName" {
        for field in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
            if unchanged(spec, field) {
                dropped.push(field);
            }
        }
    }
    let external = |kind: &str| kind == "NodePort" || kind == "LoadBalancer";
    if external(&old_kind) && !external(&new_kind) && unchanged(spec, "externalTrafficPolicy") {
        dropped.push("externalTrafficPolicy");
    }
    if old_kind == "LoadBalancer"
        && new_kind != "LoadBalancer"
        && unchanged(spec, "allocateLoadBalancerNodePorts")
    {
        dropped.push("allocateLoadBalancerNodePorts");
    }
    if new_kind == "ExternalName" {
        // Defaulted for a Service with a VIP only.
        for field in ["sessionAffinity", "internalTrafficPolicy"] {
            if unchanged(spec, field) {
                dropped.push(field);
            }
        }
    }
    let drop_node_ports = needs_node_ports(before) && !needs_node_ports(spec) && {
        let node_ports = |spec: &Value| -> Vec<Value> {
            spec["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|port| port["nodePort"].clone())
                .collect()
        };
        node_ports(spec) == node_ports(before)
    };
    if needs_health_check_port(before)
        && !needs_health_check_port(spec)
        && unchanged(spec, "healthCheckNodePort")
    {
        dropped.push("healthCheckNodePort");
    }
    if let Some(spec) = spec.as_object_mut() {
        for field in dropped {
            spec.remove(field);
        }
    }
    if drop_node_ports && let Some(ports) = spec["ports"].as_array_mut() {
        for port in ports.iter_mut().filter_map(Value::as_object_mut) {
            port.remove("nodePort");
        }
    }
}

fn validate(new: &Value, old: Option<&Value>) -> Vec<FieldCause> {
    let mut causes = Vec::new();
    let spec = &new["spec"];
    let kind = spec["type"].as_str().unwrap_or("ClusterIP");
    if !TYPES.contains(&kind) {
        causes.push(FieldCause::not_supported("spec.type", kind, TYPES));
    }
    let cluster_ip = spec["clusterIP"].as_str().unwrap_or_default();
    if !cluster_ip.is_empty() && cluster_ip != "None" && cluster_ip.parse::<IpAddr>().is_err() {
        causes.push(FieldCause::invalid(
            "spec.clusterIP",
            cluster_ip,
            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        ));
    }
    if kind == "ExternalName" {
        if spec["externalName"].as_str().unwrap_or_default().is_empty() {
            causes.push(FieldCause::required("spec.externalName", ""));
        }
        if !cluster_ip.is_empty() {
            causes.push(FieldCause::forbidden(
                "spec.clusterIP",
                "may not be set for ExternalName services",
            ));
        }
    } else if cluster_ip == "None" && kind != "ClusterIP" {
        causes.push(FieldCause::invalid(
            "spec.clusterIP",
            cluster_ip,
            format!("may not be set to 'None' for {kind} services"),
        ));
    }
    match spec["sessionAffinity"].as_str() {
        None | Some("None" | "ClientIP") => {}
        Some(other) => causes.push(FieldCause::not_supported(
            "spec.sessionAffinity",
            other,
            &["ClientIP", "None"],
        )),
    }
    let ports = spec["ports"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    if ports.is_empty() && kind != "ExternalName" && cluster_ip != "None" {
        causes.push(FieldCause::required("spec.ports", ""));
    }
    let mut names = BTreeSet::new();
    let mut seen = BTreeSet::new();
    for (index, port) in ports.iter().enumerate() {
        let field = format!("spec.ports[{index}]");
        let name = port["name"].as_str().unwrap_or_default();
        if name.is_empty() && ports.len() > 1 {
            causes.push(FieldCause::required(format!("{field}.name"), ""));
        } else if !name.is_empty() && !names.insert(name) {
            causes.push(FieldCause::duplicate(format!("{field}.name"), name));
        }
        let protocol = port["protocol"].as_str().unwrap_or("TCP");
        if !PROTOCOLS.contains(&protocol) {
            causes.push(FieldCause::not_supported(
                format!("{field}.protocol"),
                protocol,
                PROTOCOLS,
            ));
        } else if protocol == "SCTP" {
            causes.push(FieldCause::invalid(
                format!("{field}.protocol"),
                protocol,
                "SCTP is not supported by Ronghe's load balancers",
            ));
        }
        let number = port["port"].as_i64().unwrap_or(0);
        if !(1..=65535).contains(&number) {
            causes.push(FieldCause::invalid(
                format!("{field}.port"),
                port["port"].clone(),
                "must be between 1 and 65535, inclusive",
            ));
        } else if !seen.insert((number, protocol)) {
            causes.push(FieldCause::duplicate(
                field.clone(),
                json!({"port": number, "protocol": protocol}),
            ));
        }
        match &port["targetPort"] {
            Value::Number(target) if !(1..=65535).contains(&target.as_i64().unwrap_or(0)) => {
                causes.push(FieldCause::invalid(
                    format!("{field}.targetPort"),
                    port["targetPort"].clone(),
                    "must be between 1 and 65535, inclusive",
                ));
            }
            Value::String(target) if target.is_empty() || target.len() > 15 => {
                causes.push(FieldCause::invalid(
                    format!("{field}.targetPort"),
                    target.as_str(),
                    "must be no more than 15 characters",
                ));
            }
            _ => {}
        }
        if let Some(node_port) = port["nodePort"].as_i64() {
            if kind != "NodePort" && kind != "LoadBalancer" {
                causes.push(FieldCause::forbidden(
                    format!("{field}.nodePort"),
                    format!("may not be used when `type` is '{kind}'"),
                ));
            } else if !(i64::from(*NODE_PORTS.start())..=i64::from(*NODE_PORTS.end()))
                .contains(&node_port)
            {
                causes.push(FieldCause::invalid(
                    format!("{field}.nodePort"),
                    node_port,
                    format!(
                        "provided port is not in the valid range. The range of valid ports is {}-{}",
                        NODE_PORTS.start(),
                        NODE_PORTS.end()
                    ),
                ));
            }
        }
    }
    if let Some(port) = spec["healthCheckNodePort"]
        .as_i64()
        .filter(|port| *port != 0)
    {
        if !needs_health_check_port(spec) {
            causes.push(FieldCause::invalid(
                "spec.healthCheckNodePort",
                port,
                "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
            ));
        } else if !(i64::from(*NODE_PORTS.start())..=i64::from(*NODE_PORTS.end())).contains(&port) {
            causes.push(FieldCause::invalid(
                "spec.healthCheckNodePort",
                port,
                format!(
                    "provided port is not in the valid range. The range of valid ports is {}-{}",
                    NODE_PORTS.start(),
                    NODE_PORTS.end()
                ),
            ));
        }
    }
    validate_source_ranges(new, old, kind, &mut causes);
    causes.extend(annotations::validate(new, old));
    if let Some(old) = old {
        let before = old["spec"]["clusterIP"].as_str().unwrap_or_default();
        if !before.is_empty() && !cluster_ip.is_empty() && before != cluster_ip {
            causes.push(FieldCause::invalid(
                "spec.clusterIP",
                cluster_ip,
                "field is immutable",
            ));
        }
    }
    causes
}

/// Node ports are unique across the cloud, per protocol; a health-check node port is a
/// TCP one.
fn claims(service: &Value) -> Vec<Claim> {
    let claim = |protocol: &str, port: u64, field: String| Claim {
        key: format!("nodeports/{protocol}/{port}"),
        field,
        reason: "FieldValueInvalid",
        message: "provided port is already allocated".into(),
    };
    let spec = &service["spec"];
    spec["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .filter_map(|(index, port)| {
            let node_port = port["nodePort"].as_u64()?;
            let protocol = port["protocol"].as_str().unwrap_or("TCP");
            Some(claim(
                protocol,
                node_port,
                format!("spec.ports[{index}].nodePort"),
            ))
        })
        .chain(
            spec["healthCheckNodePort"]
                .as_u64()
                .filter(|port| *port != 0)
                .map(|port| claim("TCP", port, "spec.healthCheckNodePort".into())),
        )
        .collect()
}

fn admit<'a>(
    engine: &'a Engine,
    service: &'a mut Value,
    admission: Admission<'a>,
) -> BoxFuture<'a, ApiResult<()>> {
    let old = admission.old;
    Box::pin(async move {
        if let Some(old) = old {
            carry_forward(service, old);
        }
        allocate_node_ports(engine, service).await?;
        if old.is_some_and(|old| !old["spec"]["clusterIP"].as_str().unwrap_or("").is_empty()) {
            return Ok(());
        }
        let spec = &mut service["spec"];
        if spec["type"].as_str() == Some("ExternalName") {
            if let Some(spec) = spec.as_object_mut() {
                spec.remove("clusterIP");
                spec.remove("clusterIPs");
            }
            return Ok(());
        }
        if spec["clusterIP"].as_str() == Some("None") {
            spec["clusterIPs"] = json!(["None"]);
            spec["ipFamilies"] = json!(["IPv4"]);
            spec["ipFamilyPolicy"] = json!("SingleStack");
            return Ok(());
        }
        let vip = make_load_balancer(engine, service, &admission.write_options()).await?;
        let spec = &mut service["spec"];
        spec["clusterIP"] = json!(vip);
        spec["clusterIPs"] = json!([vip]);
        spec["ipFamilies"] = json!(["IPv4"]);
        spec["ipFamilyPolicy"] = json!("SingleStack");
        Ok(())
    })
}

/// An update that leaves out what the server chose (a PUT of an edited manifest) keeps
/// it where the Service still has a use for it: the ClusterIP, and each port's node port.
fn carry_forward(service: &mut Value, old: &Value) {
    let external_name = service["spec"]["type"].as_str() == Some("ExternalName");
    for field in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
        if !external_name
            && service["spec"].get(field).is_none_or(Value::is_null)
            && let Some(value) = old["spec"].get(field)
            && let Some(spec) = service["spec"].as_object_mut()
        {
            spec.insert(field.into(), value.clone());
        }
    }
    if needs_health_check_port(&service["spec"])
        && service["spec"]
            .get("healthCheckNodePort")
            .is_none_or(Value::is_null)
        && let Some(port) = old["spec"].get("healthCheckNodePort")
    {
        service["spec"]["healthCheckNodePort"] = port.clone();
    }
    if !needs_node_ports(&service["spec"]) {
        return;
    }
    let old_ports = old["spec"]["ports"].as_array().cloned().unwrap_or_default();
    if let Some(ports) = service["spec"]["ports"].as_array_mut() {
        for port in ports.iter_mut().filter(|p| p.get("nodePort").is_none()) {
            if let Some(before) = old_ports.iter().find(|before| {
                before["port"] == port["port"] && before["protocol"] == port["protocol"]
            }) && let Some(node_port) = before.get("nodePort")
            {
                port["nodePort"] = node_port.clone();
            }
        }
    }
}

/// Gives each port of a NodePort or LoadBalancer Service without one a free node port
/// (the claims make a concurrent choice of the same port fail, and the create is then
/// admitted again with another).
async fn allocate_node_ports(engine: &Engine, service: &mut Value) -> ApiResult<()> {
    let spec = &service["spec"];
    let health_check = needs_health_check_port(spec)
        && spec
            .get("healthCheckNodePort")
            .is_none_or(|port| port.is_null() || port == &json!(0));
    let wanted = needs_node_ports(spec)
        && spec["ports"]
            .as_array()
            .is_some_and(|ports| ports.iter().any(|p| p.get("nodePort").is_none()));
    if !health_check && !wanted {
        return Ok(());
    }
    let mut taken: BTreeSet<String> = engine
        .claims_under("", "nodeports/")
        .await?
        .into_iter()
        .collect();
    // Start somewhere different for each service, so concurrent creates rarely collide.
    let seed = rand_seed() % NODE_PORTS.len();
    let mut free = |protocol: &str| {
        let port = NODE_PORTS
            .cycle()
            .skip(seed)
            .take(NODE_PORTS.len())
            .find(|candidate| !taken.contains(&format!("nodeports/{protocol}/{candidate}")))
            .ok_or_else(|| {
                ApiError::bad_request("no node port is free in the range 30000-32767")
            })?;
        taken.insert(format!("nodeports/{protocol}/{port}"));
        ApiResult::Ok(port)
    };
    if wanted && let Some(ports) = service["spec"]["ports"].as_array_mut() {
        for port in ports.iter_mut().filter(|p| p.get("nodePort").is_none()) {
            let protocol = port["protocol"].as_str().unwrap_or("TCP").to_owned();
            port["nodePort"] = json!(free(&protocol)?);
        }
    }
    if health_check {
        service["spec"]["healthCheckNodePort"] = json!(free("TCP")?);
    }
    Ok(())
}

fn rand_seed() -> usize {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now()) as usize
}

/// Makes the Service's load balancer (or finds the one an earlier admission of this same
/// create made) and answers its VIP. A dry run makes none, and answers the VIP it would
/// have.
pub(crate) async fn make_load_balancer(
    engine: &Engine,
    service: &Value,
    options: &WriteOptions,
) -> ApiResult<String> {
    let namespace = object::namespace(service).unwrap_or_default().to_owned();
    let name = object::name(service).unwrap_or_default().to_owned();
    let uid = object::uid(service).unwrap_or_default().to_owned();
    let services = engine.kind("v1", "Service")?;
    let lbs = engine.kind(lb::API_VERSION, "LoadBalancer")?;
    let lb_name = load_balancer_name(&name);
    if let Ok(existing) = engine.get(&lbs, Some(&namespace), &lb_name).await {
        let owned = existing["metadata"]["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|owner| owner["uid"].as_str() == Some(uid.as_str()));
        if owned && object::deletion_timestamp(&existing).is_some() {
            // The Service had no use for it a moment ago (it was ExternalName).
            return Err(ApiError::conflict_message(format!(
                "Operation cannot be fulfilled on services \"{name}\": its previous load balancer is still being deleted, please try again"
            )));
        }
        if owned {
            return Ok(lb::spec_of::<lb::LoadBalancerSpec>(&existing).vip_address);
        }
        return Err(ApiError::already_exists(&services, &name));
    }
    let subnet = service_subnet(engine, &namespace).await?;
    let requested = service["spec"]["clusterIP"].as_str().unwrap_or_default();
    if !requested.is_empty() {
        let inside = requested
            .parse::<IpAddr>()
            .ok()
            .zip(ipam::parse_prefix(SERVICE_CIDR).ok())
            .is_some_and(|(address, cidr)| cidr.contains(&address));
        if !inside {
            return Err(ApiError::invalid(
                &services,
                &name,
                vec![FieldCause::invalid(
                    "spec.clusterIP",
                    requested,
                    format!(
                        "provided IP is not in the valid range. The range of valid IPs is {SERVICE_CIDR}"
                    ),
                )],
            ));
        }
    }
    let mut spec = json!({
        "name": format!("kube_service_{namespace}_{name}"),
        "description": format!("Kubernetes Service {namespace}/{name}"),
        "vipSubnetId": object::uid(&subnet).unwrap_or_default(),
    });
    if !requested.is_empty() {
        spec["vipAddress"] = json!(requested);
    }
    let body = json!({
        "apiVersion": lb::API_VERSION,
        "kind": "LoadBalancer",
        "metadata": {
            "name": lb_name,
            "namespace": namespace,
            "labels": {SERVICE_LABEL: name},
            "ownerReferences": [object::controller_reference("v1", "Service", service)],
        },
        "spec": spec,
    });
    match engine.create(&lbs, Some(&namespace), body, options).await {
        Ok(written) => Ok(lb::spec_of::<lb::LoadBalancerSpec>(&written.object).vip_address),
        Err(error) if !requested.is_empty() && (error.code() == 409 || error.code() == 422) => {
            Err(ApiError::invalid(
                &services,
                &name,
                vec![FieldCause::invalid(
                    "spec.clusterIP",
                    requested,
                    "provided IP is already allocated",
                )],
            ))
        }
        Err(error) => Err(error),
    }
}

/// The project's service subnet (and its network), made on first use.
pub async fn service_subnet(engine: &Engine, namespace: &str) -> ApiResult<Value> {
    let networks = engine.kind(net::API_VERSION, "Network")?;
    let subnets = engine.kind(net::API_VERSION, "Subnet")?;
    let find = |kind| async move {
        let options = ListOptions {
            selectors: Selectors::parse(
                kind,
                Some(&format!("{ROLE_LABEL}={SERVICES_ROLE}")),
                None,
            )?,
            ..ListOptions::default()
        };
        let listed = engine.list(kind, Some(namespace), &options).await?;
        ApiResult::Ok(listed.items.into_iter().next())
    };
    if let Some(subnet) = find(&subnets).await? {
        return Ok(subnet);
    }
    let labels = json!({ROLE_LABEL: SERVICES_ROLE});
    let network = match find(&networks).await? {
        Some(network) => network,
        None => {
            let body = json!({
                "apiVersion": net::API_VERSION,
                "kind": "Network",
                "metadata": {"name": "services", "namespace": namespace, "labels": labels},
                "spec": {"name": "services", "description": "The project's Kubernetes Service addresses"},
            });
            match engine
                .create(&networks, Some(namespace), body, &WriteOptions::default())
                .await
            {
                Ok(written) => written.object,
                Err(error) if error.code() == 409 => find(&networks).await?.ok_or(error)?,
                Err(error) => return Err(error),
            }
        }
    };
    let body = json!({
        "apiVersion": net::API_VERSION,
        "kind": "Subnet",
        "metadata": {"name": "services", "namespace": namespace, "labels": labels},
        "spec": {
            "name": "services",
            "networkId": object::uid(&network).unwrap_or_default(),
            "cidr": SERVICE_CIDR,
            "enableDhcp": false,
        },
    });
    match engine
        .create(&subnets, Some(namespace), body, &WriteOptions::default())
        .await
    {
        Ok(written) => Ok(written.object),
        Err(error) if error.code() == 409 => find(&subnets).await?.ok_or(error),
        Err(error) => Err(error),
    }
}

fn ports_cell(service: &Value) -> Value {
    let ports: Vec<String> = service["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|port| {
            let protocol = port["protocol"].as_str().unwrap_or("TCP");
            match port["nodePort"].as_u64() {
                Some(node_port) => format!("{}:{node_port}/{protocol}", port["port"]),
                None => format!("{}/{protocol}", port["port"]),
            }
        })
        .collect();
    if ports.is_empty() {
        json!("<none>")
    } else {
        json!(ports.join(","))
    }
}

fn external_ip_cell(service: &Value) -> Value {
    let ingress: Vec<&str> = service["status"]["loadBalancer"]["ingress"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["ip"].as_str().or_else(|| i["hostname"].as_str()))
        .collect();
    let spec = &service["spec"];
    match spec["type"].as_str() {
        Some("ExternalName") => spec["externalName"].clone(),
        Some("LoadBalancer") if ingress.is_empty() => json!("<pending>"),
        _ if ingress.is_empty() => json!("<none>"),
        _ => json!(ingress.join(",")),
    }
}

fn selector_cell(service: &Value) -> Value {
    let selector: Vec<String> = service["spec"]["selector"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(key, value)| format!("{key}={}", value.as_str().unwrap_or_default()))
        .collect();
    if selector.is_empty() {
        json!("<none>")
    } else {
        json!(selector.join(","))
    }
}

#[cfg(test)]
mod tests;
