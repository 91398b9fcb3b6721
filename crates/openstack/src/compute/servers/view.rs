//! A VirtualMachine as Nova shows a server, field by field per microversion (Tempest checks
//! Nova's shapes with `additionalProperties: false`, so nothing beyond them is added).

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha224};

use super::super::{Caller, DEFAULT_ZONE, Microversion, links, nova_time, uid_of};
use crate::OpenStack;

/// Annotation with the id of the user who created a server on this face.
pub const USER_ANNOTATION: &str = "compute.ronghe.io/user-id";
/// Annotation with a server's description (2.19).
pub const DESCRIPTION_ANNOTATION: &str = "compute.ronghe.io/description";

fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The id of a project as Nova shows it, from a namespace.
fn project_id(state: &OpenStack, namespace: &str) -> String {
    state
        .identity
        .directory()
        .project(namespace)
        .map(|entry| entry.uid.simple().to_string())
        .unwrap_or_default()
}

/// Nova's `hostId`: a hash of the project and the host, so a tenant can tell whether two of
/// its servers share a host without learning the host.
fn host_id(project: &str, host: &str) -> String {
    if host.is_empty() {
        return String::new();
    }
    let digest = Sha224::digest(format!("{project}{host}").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A server's brief form (`GET /servers`).
pub fn brief(state: &OpenStack, vm: &Value) -> Value {
    let id = uid_of(vm);
    json!({
        "id": id,
        "name": text(vm, "/metadata/name"),
        "links": links(state, "servers", id),
    })
}

/// A server's flavor: a reference before 2.47, the embedded copy from then on.
fn flavor(state: &OpenStack, vm: &Value, version: Microversion) -> Value {
    let spec = &vm["spec"];
    let reference = text(vm, "/spec/flavorRef");
    if !version.at_least(47) {
        return json!({
            "id": reference,
            "links": [{"rel": "bookmark", "href": format!("{}/compute/flavors/{reference}", state.public_url)}],
        });
    }
    let flavor = &spec["flavor"];
    let number = |field: &str| flavor[field].as_i64().unwrap_or(0);
    let mut embedded = json!({
        "vcpus": number("vcpus"),
        "ram": number("ram"),
        "disk": number("disk"),
        "ephemeral": number("ephemeral"),
        "swap": number("swap"),
        "original_name": flavor["name"].as_str().unwrap_or(reference),
    });
    embedded["extra_specs"] = flavor
        .get("extraSpecs")
        .cloned()
        .unwrap_or_else(|| json!({}));
    embedded
}

/// The availability zone a server is in: its host's, else the one it asked for, else
/// Nova's default.
fn zone(vm: &Value, host_zone: Option<&str>) -> String {
    host_zone
        .filter(|z| !z.is_empty())
        .or_else(|| vm.pointer("/spec/availabilityZone").and_then(Value::as_str))
        .unwrap_or(DEFAULT_ZONE)
        .to_owned()
}

/// What the view needs to know beyond the VM itself.
pub struct Context<'a> {
    pub caller: &'a Caller,
    pub version: Microversion,
    /// The zone of the VM's host, if it has one.
    pub host_zone: Option<&'a str>,
    /// Whether the VM's host is up (for `host_status`).
    pub host_up: Option<bool>,
    /// The uid of the VM's server group, if any.
    pub group_id: Option<&'a str>,
    /// Its addresses by network name, in Nova's shape.
    pub addresses: Option<&'a Value>,
}

/// A server's full form (`GET /servers/{id}`, `/servers/detail`).
pub fn detail(state: &OpenStack, vm: &Value, context: &Context<'_>) -> Value {
    let version = context.version;
    let admin = context.caller.is_admin();
    let id = uid_of(vm);
    let namespace = text(vm, "/metadata/namespace");
    let project = project_id(state, namespace);
    let status = &vm["status"];
    let host = text(vm, "/status/host");
    let deleting = vm.pointer("/metadata/deletionTimestamp").is_some();
    let created = nova_time(text(vm, "/metadata/creationTimestamp"));
    let annotations = &vm["metadata"]["annotations"];
    let image_ref = text(vm, "/spec/imageRef");
    let image = if image_ref.is_empty() {
        json!("")
    } else {
        json!({
            "id": image_ref,
            "links": [{"rel": "bookmark", "href": format!("{}/compute/images/{image_ref}", state.public_url)}],
        })
    };
    let task_state = if deleting {
        json!("deleting")
    } else {
        status.get("taskState").cloned().unwrap_or(Value::Null)
    };
    let launched = status
        .get("launchedAt")
        .and_then(Value::as_str)
        .map(|t| json!(nova_time(t).trim_end_matches('Z').to_owned() + ".000000"))
        .unwrap_or(Value::Null);
    let mut server = Map::new();
    let mut put = |key: &str, value: Value| {
        server.insert(key.to_owned(), value);
    };
    put("id", json!(id));
    put("name", json!(text(vm, "/metadata/name")));
    put("status", json!(text(vm, "/status/status")));
    put("tenant_id", json!(project));
    put(
        "user_id",
        json!(annotations[USER_ANNOTATION].as_str().unwrap_or_default()),
    );
    put(
        "metadata",
        vm["spec"]
            .get("metadata")
            .cloned()
            .unwrap_or_else(|| json!({})),
    );
    put("hostId", json!(host_id(&project, host)));
    put("image", image);
    put("flavor", flavor(state, vm, version));
    put("created", json!(created));
    put("updated", json!(created));
    put(
        "addresses",
        context.addresses.cloned().unwrap_or_else(|| json!({})),
    );
    put("accessIPv4", json!(""));
    put("accessIPv6", json!(""));
    put("links", links(state, "servers", id));
    put("OS-DCF:diskConfig", json!("MANUAL"));
    put(
        "OS-EXT-AZ:availability_zone",
        json!(zone(vm, context.host_zone)),
    );
    put("config_drive", json!(""));
    put(
        "key_name",
        vm.pointer("/spec/keyName").cloned().unwrap_or(Value::Null),
    );
    put("OS-SRV-USG:launched_at", launched);
    put("OS-SRV-USG:terminated_at", Value::Null);
    put("OS-EXT-STS:task_state", task_state);
    put("OS-EXT-STS:vm_state", json!(text(vm, "/status/vmState")));
    put(
        "OS-EXT-STS:power_state",
        json!(status["powerState"].as_i64().unwrap_or(0)),
    );
    put("os-extended-volumes:volumes_attached", json!([]));
    if matches!(text(vm, "/status/status"), "BUILD" | "ACTIVE") {
        put("progress", json!(0));
    }
    if let Some(fault) = status.get("fault").filter(|f| f.is_object()) {
        let mut shown = json!({
            "code": fault["code"].as_i64().unwrap_or(500),
            "message": fault["message"].as_str().unwrap_or_default(),
            "created": nova_time(fault["created"].as_str().unwrap_or_default()),
        });
        // Nova shows the details (a trace, here the console tail) to admins, and to the
        // owner when the fault is not a 500.
        if admin || shown["code"] != 500 {
            shown["details"] = fault.get("details").cloned().unwrap_or(json!(""));
        }
        put("fault", shown);
    }
    if admin {
        put("OS-EXT-SRV-ATTR:host", json!(host));
        put("OS-EXT-SRV-ATTR:hypervisor_hostname", json!(host));
        put(
            "OS-EXT-SRV-ATTR:instance_name",
            json!(format!("instance-{}", &id.get(..8).unwrap_or(id))),
        );
        if version.at_least(3) {
            let spec = &vm["spec"];
            put("OS-EXT-SRV-ATTR:reservation_id", json!(""));
            put("OS-EXT-SRV-ATTR:launch_index", json!(0));
            put(
                "OS-EXT-SRV-ATTR:hostname",
                json!(text(vm, "/metadata/name")),
            );
            put("OS-EXT-SRV-ATTR:kernel_id", json!(""));
            put("OS-EXT-SRV-ATTR:ramdisk_id", json!(""));
            put("OS-EXT-SRV-ATTR:root_device_name", Value::Null);
            put(
                "OS-EXT-SRV-ATTR:user_data",
                spec.get("userData").cloned().unwrap_or(Value::Null),
            );
        }
    }
    if version.at_least(9) {
        put("locked", json!(false));
    }
    if version.at_least(16) && admin {
        let host_status = match context.host_up {
            _ if host.is_empty() => "",
            Some(true) => "UP",
            Some(false) => "DOWN",
            None => "UNKNOWN",
        };
        put("host_status", json!(host_status));
    }
    if version.at_least(19) {
        put(
            "description",
            annotations
                .get(DESCRIPTION_ANNOTATION)
                .cloned()
                .unwrap_or(Value::Null),
        );
    }
    if version.at_least(26) {
        put(
            "tags",
            vm["spec"].get("tags").cloned().unwrap_or_else(|| json!([])),
        );
    }
    if version.at_least(63) {
        put("trusted_image_certificates", Value::Null);
    }
    if version.at_least(71) {
        put(
            "server_groups",
            json!(context.group_id.map(|g| vec![g]).unwrap_or_default()),
        );
    }
    if version.at_least(73) {
        put("locked_reason", Value::Null);
    }
    if version.at_least(96) {
        put(
            "pinned_availability_zone",
            vm.pointer("/spec/availabilityZone")
                .cloned()
                .unwrap_or(Value::Null),
        );
    }
    Value::Object(server)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ids_hide_the_host_per_project() {
        assert_eq!(host_id("p", ""), "");
        let a = host_id("p1", "h1");
        assert_eq!(a.len(), 56);
        assert_ne!(a, host_id("p2", "h1"));
        assert_eq!(a, host_id("p1", "h1"));
    }

    #[test]
    fn zones_default_to_nova() {
        let vm = json!({"spec": {}});
        assert_eq!(zone(&vm, None), "nova");
        assert_eq!(zone(&vm, Some("az1")), "az1");
        let vm = json!({"spec": {"availabilityZone": "az2"}});
        assert_eq!(zone(&vm, None), "az2");
    }
}
