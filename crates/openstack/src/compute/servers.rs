//! Servers (`/servers`) over the VirtualMachine kind: list (brief and detail, with Nova's
//! filters), show, create, rename-free update, delete, and actions (`actions.rs`). The
//! scheduler places a new server and the agent of its host boots it; this face only writes
//! what the user asked for.

mod actions;
pub(crate) mod view;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use http::StatusCode;
use ronghe_apiserver::auth::User;
use ronghe_apiserver::engine::{PatchKind, Target, WriteOptions};
use serde_json::{Map, Value, json};

use super::{
    Caller, DEFAULT_ZONE, Microversion, bad_request, conflict, engine_fault, links, not_found,
    same_uid, uid_of,
};
use crate::OpenStack;
use crate::fault::FaultResult;

pub use actions::action;

/// Every VM the caller may list: its project's, or with `all_tenants` (admins) every
/// project's (narrowed by `project_id`/`tenant_id`).
async fn listed(
    state: &OpenStack,
    caller: &Caller,
    query: &HashMap<String, String>,
) -> FaultResult<Vec<Value>> {
    let all_projects = query
        .get("all_tenants")
        .is_some_and(|v| v.is_empty() || super::truthy(v));
    let kind = super::kind(state, "VirtualMachine")?;
    if all_projects {
        caller.allow("os_compute_api:servers:index:get_all_tenants")?;
        let wanted = query.get("project_id").or_else(|| query.get("tenant_id"));
        let namespace = match wanted {
            None => None,
            Some(id) => match project_namespace(state, id) {
                Some(namespace) => Some(namespace),
                None => return Ok(Vec::new()),
            },
        };
        return super::list_all(state, &kind, namespace.as_deref()).await;
    }
    caller.allow("os_compute_api:servers:index")?;
    let namespace = caller.namespace()?;
    super::list_all(state, &kind, Some(namespace)).await
}

/// The namespace of a project named by id (or name).
fn project_namespace(state: &OpenStack, id: &str) -> Option<String> {
    let directory = state.identity.directory();
    uuid::Uuid::try_parse(id)
        .ok()
        .and_then(|uid| directory.project_by_uid(&uid))
        .or_else(|| directory.project(id))
        .map(|entry| entry.name.clone())
}

/// Applies Nova's list filters, order (newest first) and paging.
fn filtered(
    caller: &Caller,
    mut vms: Vec<Value>,
    query: &HashMap<String, String>,
) -> FaultResult<Vec<Value>> {
    if query.get("deleted").is_some_and(|v| super::truthy(v)) {
        // Deleted servers are gone at once here; there is no soft-deleted record.
        return Ok(Vec::new());
    }
    let text = |vm: &Value, pointer: &str| -> String {
        vm.pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    if let Some(name) = query.get("name") {
        // Nova matches `name` as a regular expression; a plain substring covers what
        // clients send (they match exactly afterwards).
        vms.retain(|vm| text(vm, "/metadata/name").contains(name.as_str()));
    }
    if let Some(status) = query.get("status") {
        vms.retain(|vm| text(vm, "/status/status").eq_ignore_ascii_case(status));
    }
    if let Some(host) = query.get("host").filter(|_| caller.is_admin()) {
        vms.retain(|vm| text(vm, "/status/host") == *host);
    }
    if let Some(flavor) = query.get("flavor") {
        vms.retain(|vm| text(vm, "/spec/flavorRef") == *flavor);
    }
    if let Some(image) = query.get("image") {
        vms.retain(|vm| text(vm, "/spec/imageRef") == *image);
    }
    if let Some(zone) = query.get("availability_zone") {
        vms.retain(|vm| {
            let asked = text(vm, "/spec/availabilityZone");
            asked == *zone || (asked.is_empty() && zone == DEFAULT_ZONE)
        });
    }
    vms.sort_by(|a, b| {
        let created = |vm: &Value| text(vm, "/metadata/creationTimestamp");
        created(b)
            .cmp(&created(a))
            .then_with(|| uid_of(b).cmp(uid_of(a)))
    });
    super::paginate(vms, query, |vm, marker| same_uid(marker, uid_of(vm)))
}

/// `GET /servers`.
pub async fn list(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Query(query): Query<HashMap<String, String>>,
) -> FaultResult<Json<Value>> {
    let caller = Caller::of(&user)?;
    let vms = filtered(&caller, listed(&state, &caller, &query).await?, &query)?;
    let servers: Vec<Value> = vms.iter().map(|vm| view::brief(&state, vm)).collect();
    Ok(Json(json!({"servers": servers})))
}

/// `GET /servers/detail`.
pub async fn list_detail(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Extension(version): Extension<Microversion>,
    Query(query): Query<HashMap<String, String>>,
) -> FaultResult<Json<Value>> {
    let caller = Caller::of(&user)?;
    caller.allow("os_compute_api:servers:detail")?;
    let vms = filtered(&caller, listed(&state, &caller, &query).await?, &query)?;
    let surroundings = Surroundings::read(&state, &vms).await?;
    let servers: Vec<Value> = vms
        .iter()
        .map(|vm| surroundings.detail(&state, &caller, version, vm))
        .collect();
    Ok(Json(json!({"servers": servers})))
}

/// What a server's view needs besides the VM: its host's zone and health, its group's id.
struct Surroundings {
    /// Node name → (zone, ready).
    hosts: HashMap<String, (Option<String>, Option<bool>)>,
    /// `namespace/group name` → group uid.
    groups: HashMap<String, String>,
    /// VM uid → its addresses by network name.
    addresses: HashMap<String, Value>,
}

impl Surroundings {
    async fn read(state: &OpenStack, vms: &[Value]) -> FaultResult<Surroundings> {
        let mut surroundings = Surroundings {
            hosts: HashMap::new(),
            groups: HashMap::new(),
            addresses: HashMap::new(),
        };
        if vms.is_empty() {
            return Ok(surroundings);
        }
        let nodes = state.engine.kind("v1", "Node").map_err(engine_fault)?;
        for node in super::list_all(state, &nodes, None).await? {
            let name = node["metadata"]["name"].as_str().unwrap_or_default();
            let zone = node["metadata"]["labels"]["topology.kubernetes.io/zone"]
                .as_str()
                .map(str::to_owned);
            let ready = node["status"]["conditions"]
                .as_array()
                .and_then(|conditions| {
                    conditions
                        .iter()
                        .find(|c| c["type"] == "Ready")
                        .map(|c| c["status"] == "True")
                });
            surroundings.hosts.insert(name.to_owned(), (zone, ready));
        }
        let namespaces: HashSet<&str> = vms
            .iter()
            .filter(|vm| vm.pointer("/spec/serverGroup").is_some())
            .filter_map(|vm| vm["metadata"]["namespace"].as_str())
            .collect();
        let networked: HashSet<&str> = vms
            .iter()
            .filter(|vm| vm.pointer("/spec/networks").is_some())
            .filter_map(|vm| vm["metadata"]["namespace"].as_str())
            .collect();
        for namespace in networked {
            surroundings
                .addresses
                .extend(addresses_in(state, namespace).await?);
        }
        let groups = super::kind(state, "ServerGroup")?;
        for namespace in namespaces {
            for group in super::list_all(state, &groups, Some(namespace)).await? {
                let name = group["metadata"]["name"].as_str().unwrap_or_default();
                surroundings
                    .groups
                    .insert(format!("{namespace}/{name}"), uid_of(&group).to_owned());
            }
        }
        Ok(surroundings)
    }

    fn detail(
        &self,
        state: &OpenStack,
        caller: &Caller,
        version: Microversion,
        vm: &Value,
    ) -> Value {
        let host = vm["status"]["host"].as_str().unwrap_or_default();
        let (zone, ready) = self
            .hosts
            .get(host)
            .map_or((None, None), |(zone, ready)| (zone.as_deref(), *ready));
        let group = vm["spec"]["serverGroup"].as_str().and_then(|name| {
            let namespace = vm["metadata"]["namespace"].as_str().unwrap_or_default();
            self.groups.get(&format!("{namespace}/{name}"))
        });
        view::detail(
            state,
            vm,
            &view::Context {
                caller,
                version,
                host_zone: zone,
                host_up: ready,
                group_id: group.map(String::as_str),
                addresses: self.addresses.get(uid_of(vm)),
            },
        )
    }
}

/// The addresses of the VMs of a namespace, by VM uid: Nova's `addresses`, each network's
/// name with its fixed and floating addresses.
async fn addresses_in(state: &OpenStack, namespace: &str) -> FaultResult<HashMap<String, Value>> {
    use ronghe_api_types::network::{self as net, FloatingIpSpec, PortSpec};
    let kind = |name: &str| {
        state
            .engine
            .kind(net::API_VERSION, name)
            .map_err(engine_fault)
    };
    let networks: HashMap<String, String> = super::list_all(state, &*kind("Network")?, None)
        .await?
        .iter()
        .map(|network| (uid_of(network).to_owned(), net::display_name(network)))
        .collect();
    let floating: Vec<FloatingIpSpec> =
        super::list_all(state, &*kind("FloatingIP")?, Some(namespace))
            .await?
            .iter()
            .map(net::spec_of)
            .collect();
    let mut out: HashMap<String, Value> = HashMap::new();
    let mut ports = super::list_all(state, &*kind("Port")?, Some(namespace)).await?;
    ports.sort_by_key(|port| {
        port.pointer("/metadata/annotations/network.ronghe.io~1nic-index")
            .and_then(Value::as_str)
            .and_then(|i| i.parse::<usize>().ok())
            .unwrap_or(0)
    });
    for port in &ports {
        let spec: PortSpec = net::spec_of(port);
        if spec.device_owner != net::owner::VM || spec.device_id.is_empty() {
            continue;
        }
        let name = networks.get(&spec.network_id).cloned().unwrap_or_default();
        let entry = out
            .entry(spec.device_id.clone())
            .or_insert_with(|| json!({}));
        let list = entry
            .as_object_mut()
            .map(|map| map.entry(name).or_insert_with(|| json!([])));
        let Some(Value::Array(list)) = list else {
            continue;
        };
        for fixed in &spec.fixed_ips {
            let version = if fixed.ip_address.contains(':') { 6 } else { 4 };
            list.push(json!({"version": version, "addr": fixed.ip_address, "OS-EXT-IPS:type": "fixed", "OS-EXT-IPS-MAC:mac_addr": spec.mac_address}));
            for fip in floating.iter().filter(|f| {
                f.port_id.as_deref() == Some(uid_of(port))
                    && f.fixed_ip_address.as_deref() == Some(fixed.ip_address.as_str())
            }) {
                list.push(json!({"version": 4, "addr": fip.floating_ip_address, "OS-EXT-IPS:type": "floating", "OS-EXT-IPS-MAC:mac_addr": spec.mac_address}));
            }
        }
    }
    Ok(out)
}

/// A server the caller may see, by id (or, in its own project, by name).
pub(crate) async fn find(state: &OpenStack, caller: &Caller, id: &str) -> FaultResult<Value> {
    let kind = super::kind(state, "VirtualMachine")?;
    let missing = || not_found(format!("Instance {id} could not be found."));
    if let Some((namespace, _)) = &caller.project {
        let own = super::list_all(state, &kind, Some(namespace)).await?;
        if let Some(vm) = own
            .into_iter()
            .find(|vm| same_uid(id, uid_of(vm)) || vm["metadata"]["name"] == *id)
        {
            return Ok(vm);
        }
    }
    if caller.is_admin() && uuid::Uuid::try_parse(id).is_ok() {
        let all = super::list_all(state, &kind, None).await?;
        if let Some(vm) = all.into_iter().find(|vm| same_uid(id, uid_of(vm))) {
            return Ok(vm);
        }
    }
    Err(missing())
}

/// `GET /servers/{id}`.
pub async fn show(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Extension(version): Extension<Microversion>,
    Path(id): Path<String>,
) -> FaultResult<Json<Value>> {
    let caller = Caller::of(&user)?;
    let vm = find(&state, &caller, &id).await?;
    let namespace = vm["metadata"]["namespace"].as_str().unwrap_or_default();
    caller.allow_in("os_compute_api:servers:show", namespace)?;
    let surroundings = Surroundings::read(&state, std::slice::from_ref(&vm)).await?;
    Ok(Json(
        json!({"server": surroundings.detail(&state, &caller, version, &vm)}),
    ))
}

/// The keys of a server create body this face understands.
const CREATE_KEYS: &[&str] = &[
    "name",
    "imageRef",
    "flavorRef",
    "networks",
    "key_name",
    "availability_zone",
    "metadata",
    "user_data",
    "min_count",
    "max_count",
    "return_reservation_id",
    "block_device_mapping_v2",
    "block_device_mapping",
    "security_groups",
    "config_drive",
    "description",
    "tags",
    "adminPass",
    "OS-DCF:diskConfig",
    "hostname",
    "trusted_image_certificates",
    "host",
    "hypervisor_hostname",
];

/// `POST /servers`.
pub async fn create(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Extension(version): Extension<Microversion>,
    body: Bytes,
) -> FaultResult<Response> {
    let caller = Caller::of(&user)?;
    caller.allow("os_compute_api:servers:create")?;
    let namespace = caller.namespace()?.to_owned();
    let whole: Value = serde_json::from_slice(&body)
        .map_err(|_| bad_request("Malformed request body: the body is not valid JSON."))?;
    let server = super::body_member(&body, "server")?;
    let hints = whole
        .get("os:scheduler_hints")
        .or_else(|| whole.get("OS-SCH-HNT:scheduler_hints"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let request = CreateRequest::parse(&server, version)?;
    let flavor = super::flavors::find(&state, &caller, &request.flavor_ref)
        .await
        .map_err(|_| bad_request(format!("Flavor {} could not be found.", request.flavor_ref)))?;
    let flavor_name = flavor["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if let Some(key_name) = &request.key_name
        && super::keypairs::find(&state, &caller, key_name)
            .await
            .is_err()
    {
        return Err(bad_request("Invalid key_name provided."));
    }
    let group = match hints.get("group").and_then(Value::as_str) {
        Some(group) => Some(
            super::server_groups::find(&state, &caller, group)
                .await
                .map_err(|_| {
                    bad_request(format!(
                        "Invalid server group {group}: it could not be found."
                    ))
                })?,
        ),
        None => None,
    };
    let mut annotations = json!({view::USER_ANNOTATION: caller.user_id()});
    if let Some(description) = &request.description {
        annotations[view::DESCRIPTION_ANNOTATION] = json!(description);
    }
    let mut spec = json!({"flavorRef": flavor_name, "running": true});
    let optional = [
        ("imageRef", request.image_ref.clone().map(Value::from)),
        ("keyName", request.key_name.clone().map(Value::from)),
        ("availabilityZone", request.zone.clone().map(Value::from)),
        ("userData", request.user_data.clone().map(Value::from)),
        ("serverGroup", group.map(|g| g["metadata"]["name"].clone())),
    ];
    for (field, value) in optional {
        if let Some(value) = value {
            spec[field] = value;
        }
    }
    if !request.metadata.is_empty() {
        spec["metadata"] = Value::Object(request.metadata.clone());
    }
    if !request.tags.is_empty() {
        spec["tags"] = json!(request.tags);
    }
    if !request.networks.is_empty() {
        spec["networks"] = json!(request.networks);
    }
    let object = json!({
        "apiVersion": super::API_VERSION,
        "kind": "VirtualMachine",
        "metadata": {"name": request.name, "namespace": namespace, "annotations": annotations},
        "spec": spec,
    });
    let kind = super::kind(&state, "VirtualMachine")?;
    let vm = match state
        .engine
        .create(&kind, Some(&namespace), object, &WriteOptions::default())
        .await
    {
        Ok(written) => written.object,
        Err(error) if error.code() == 409 && error.status.reason == "AlreadyExists" => {
            return Err(conflict(format!(
                "Server with name {} already exists in this project; server names are unique per project.",
                request.name
            )));
        }
        Err(error) if error.code() == 409 => {
            return Err(conflict(error.status.message.clone()));
        }
        Err(error) if error.code() == 422 => {
            return Err(bad_request(error.status.message.clone()));
        }
        Err(error) => return Err(engine_fault(error)),
    };
    let id = uid_of(&vm).to_owned();
    let location = format!("{}{}/servers/{id}", state.public_url, super::BASE);
    let mut answer = json!({
        "id": id,
        "links": links(&state, "servers", &id),
        "OS-DCF:diskConfig": "MANUAL",
    });
    if !request.networks_none {
        answer["security_groups"] = json!([{"name": "default"}]);
    }
    answer["adminPass"] = json!(request.admin_pass);
    let mut response = (StatusCode::ACCEPTED, Json(json!({"server": answer}))).into_response();
    if let Ok(value) = http::HeaderValue::from_str(&location) {
        response.headers_mut().insert(http::header::LOCATION, value);
    }
    Ok(response)
}

/// A server create body, checked.
struct CreateRequest {
    name: String,
    flavor_ref: String,
    image_ref: Option<String>,
    key_name: Option<String>,
    zone: Option<String>,
    user_data: Option<String>,
    metadata: Map<String, Value>,
    tags: Vec<String>,
    description: Option<String>,
    admin_pass: String,
    /// `networks: "none"`.
    networks_none: bool,
    /// The VM's `spec.networks`.
    networks: Vec<Value>,
}

impl CreateRequest {
    fn parse(server: &Map<String, Value>, version: Microversion) -> FaultResult<CreateRequest> {
        if let Some(unknown) = server.keys().find(|k| !CREATE_KEYS.contains(&k.as_str())) {
            return Err(bad_request(format!(
                "Invalid input for field/attribute server. Additional properties are not allowed ('{unknown}' was unexpected)"
            )));
        }
        let string = |key: &str| -> FaultResult<Option<String>> {
            match server.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err(bad_request(format!(
                    "Invalid input for field/attribute {key}. Value: {other}. {other} is not of type 'string'"
                ))),
            }
        };
        let name = string("name")?
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                bad_request(
                    "Invalid input for field/attribute server. 'name' is a required property",
                )
            })?;
        let flavor_ref = string("flavorRef")?.ok_or_else(|| {
            bad_request(
                "Invalid input for field/attribute server. 'flavorRef' is a required property",
            )
        })?;
        // The flavor may come as a link; its last segment is the id.
        let flavor_ref = flavor_ref.rsplit('/').next().unwrap_or_default().to_owned();
        let mut image_ref = string("imageRef")?.filter(|i| !i.is_empty());
        for mapping in server
            .get("block_device_mapping_v2")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let source = mapping["source_type"].as_str().unwrap_or_default();
            let destination = mapping["destination_type"].as_str().unwrap_or("local");
            if source == "image" && destination == "local" {
                if image_ref.is_none() {
                    image_ref = mapping["uuid"].as_str().map(str::to_owned);
                }
            } else if source != "blank" || destination != "local" {
                return Err(bad_request(format!(
                    "Block device mappings from {source} to {destination} are not supported yet; volumes come with the block-storage service."
                )));
            }
        }
        let image_ref = image_ref.ok_or_else(|| {
            bad_request("Block Device Mapping is Invalid: You specified more local devices than the limit allows or no image to boot from.")
        })?;
        let networks = server.get("networks");
        let networks_none = matches!(networks, Some(Value::String(s)) if s == "none");
        // `auto` (and, before 2.37, no networks at all) is the project's default network,
        // which Ronghe makes on first use as Neutron's auto-allocated topology.
        let auto = || vec![json!({"network": "default"})];
        let networks = match networks {
            None if version.at_least(37) => {
                return Err(bad_request(
                    "Invalid input for field/attribute server. 'networks' is a required property",
                ));
            }
            None => auto(),
            Some(Value::String(s)) if s == "none" => Vec::new(),
            Some(Value::String(s)) if s == "auto" => auto(),
            Some(Value::Array(list)) => list
                .iter()
                .map(network_request)
                .collect::<FaultResult<Vec<_>>>()?,
            Some(other) => {
                return Err(bad_request(format!(
                    "Invalid input for field/attribute networks. Value: {other}."
                )));
            }
        };
        for key in ["min_count", "max_count"] {
            if let Some(count) = server.get(key) {
                let count = count
                    .as_i64()
                    .or_else(|| count.as_str().and_then(|s| s.parse().ok()));
                if count != Some(1) {
                    return Err(bad_request(format!(
                        "Only one server per request is supported; {key} must be 1."
                    )));
                }
            }
        }
        let metadata = match server.get("metadata") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(map)) if map.values().all(Value::is_string) => map.clone(),
            Some(_) => {
                return Err(bad_request(
                    "Invalid input for field/attribute metadata. Metadata values must be strings.",
                ));
            }
        };
        let tags = match server.get("tags") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(list)) => list
                .iter()
                .map(|t| t.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| bad_request("Invalid input for field/attribute tags."))?,
            Some(_) => return Err(bad_request("Invalid input for field/attribute tags.")),
        };
        if let Some(user_data) = string("user_data")?
            && base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &user_data)
                .is_err()
        {
            return Err(bad_request("User data needs to be valid base 64."));
        }
        let zone = string("availability_zone")?.filter(|z| !z.is_empty() && z != DEFAULT_ZONE);
        Ok(CreateRequest {
            name,
            flavor_ref,
            image_ref: Some(image_ref),
            key_name: string("key_name")?.filter(|k| !k.is_empty()),
            zone,
            user_data: string("user_data")?,
            metadata,
            tags,
            description: string("description")?,
            admin_pass: string("adminPass")?.unwrap_or_else(random_password),
            networks_none,
            networks,
        })
    }
}

/// One entry of a create's `networks`: `{"uuid": network}`, `{"port": port}`, with an
/// optional `fixed_ip`, as a VirtualMachine's `spec.networks` entry.
fn network_request(entry: &Value) -> FaultResult<Value> {
    let text = |key: &str| {
        entry
            .get(key)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
    };
    let mut nic = serde_json::Map::new();
    match (text("uuid"), text("port")) {
        (_, Some(port)) => {
            nic.insert("port".into(), json!(port));
        }
        (Some(network), None) => {
            nic.insert("network".into(), json!(network));
        }
        (None, None) => {
            return Err(bad_request(format!(
                "Invalid input for field/attribute networks. Value: {entry}. Each network needs a uuid or a port."
            )));
        }
    }
    if let Some(address) = text("fixed_ip") {
        if address.parse::<std::net::IpAddr>().is_err() {
            return Err(bad_request(format!(
                "Invalid input for field/attribute fixed_ip. Value: {address}. '{address}' is not a 'ip-address'"
            )));
        }
        nic.insert("fixedIp".into(), json!(address));
    }
    Ok(Value::Object(nic))
}

/// A password as Nova makes one for `adminPass` (the guest never learns it here: there is no
/// metadata service yet).
fn random_password() -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..12)
        .map(|_| char::from(CHARS[rng.random_range(0..CHARS.len())]))
        .collect()
}

/// `PUT /servers/{id}`: the description (2.19) and, unchanged, the name.
pub async fn update(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Extension(version): Extension<Microversion>,
    Path(id): Path<String>,
    body: Bytes,
) -> FaultResult<Json<Value>> {
    let caller = Caller::of(&user)?;
    let vm = find(&state, &caller, &id).await?;
    let namespace = vm["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    caller.allow_in("os_compute_api:servers:update", &namespace)?;
    let server = super::body_member(&body, "server")?;
    let name = vm["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if let Some(new) = server.get("name").and_then(Value::as_str)
        && new != name
    {
        return Err(bad_request(
            "Servers cannot be renamed: a server's name is its VirtualMachine's name.",
        ));
    }
    let vm = match server.get("description") {
        Some(description) if version.at_least(19) => {
            let kind = super::kind(&state, "VirtualMachine")?;
            state
                .engine
                .patch(
                    &kind,
                    Some(&namespace),
                    &name,
                    PatchKind::Merge,
                    json!({"metadata": {"annotations": {view::DESCRIPTION_ANNOTATION: description}}}),
                    Target::Main,
                    &WriteOptions::default(),
                )
                .await
                .map_err(engine_fault)?
                .object
        }
        _ => vm,
    };
    let surroundings = Surroundings::read(&state, std::slice::from_ref(&vm)).await?;
    Ok(Json(
        json!({"server": surroundings.detail(&state, &caller, version, &vm)}),
    ))
}

/// `DELETE /servers/{id}`: the agent stops the VM and removes what it left on its host.
pub async fn delete(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
) -> FaultResult<StatusCode> {
    let caller = Caller::of(&user)?;
    let vm = find(&state, &caller, &id).await?;
    let namespace = vm["metadata"]["namespace"].as_str().unwrap_or_default();
    caller.allow_in("os_compute_api:servers:delete", namespace)?;
    let name = vm["metadata"]["name"].as_str().unwrap_or_default();
    let kind = super::kind(&state, "VirtualMachine")?;
    let missing = format!("Instance {id} could not be found.");
    super::delete_object(&state, &kind, Some(namespace), name, missing).await?;
    Ok(StatusCode::NO_CONTENT)
}
