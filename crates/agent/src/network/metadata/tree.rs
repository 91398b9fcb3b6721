//! Nova's metadata trees as a VM walks them: a path to an answer about the caller, with no
//! I/O. The OpenStack tree is `/openstack/<version>/{meta_data.json, network_data.json,
//! vendor_data.json, vendor_data2.json, user_data}`; the EC2 tree is
//! `/<version>/{meta-data/..., user-data}`. Every version Nova lists is accepted and gets
//! the same content (what later versions added is a superset cloud-init reads safely).

use bytes::Bytes;
use http::StatusCode;
use serde_json::{Map, Value, json};

use super::InstanceMetadata;

/// Nova's OpenStack versions, oldest first; `latest` follows them.
const OPENSTACK_VERSIONS: &[&str] = &[
    "2012-08-10",
    "2013-04-04",
    "2013-10-17",
    "2015-10-15",
    "2016-06-30",
    "2016-10-06",
    "2017-02-22",
    "2018-08-27",
    "2020-10-14",
];

/// Nova's EC2 versions, oldest first; `latest` follows them.
const EC2_VERSIONS: &[&str] = &[
    "1.0",
    "2007-01-19",
    "2007-03-01",
    "2007-08-29",
    "2007-10-10",
    "2007-12-15",
    "2008-02-01",
    "2008-09-01",
    "2009-04-04",
];

const LATEST: &str = "latest";

pub(super) const TEXT: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json";
const OCTETS: &str = "application/octet-stream";

/// An answer to one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Reply {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: Bytes,
}

impl Reply {
    fn text(body: impl Into<String>) -> Reply {
        Reply {
            status: StatusCode::OK,
            content_type: TEXT,
            body: Bytes::from(body.into()),
        }
    }

    /// A directory listing: one entry a line, subdirectories with a trailing slash.
    fn listing<S: AsRef<str>>(entries: &[S]) -> Reply {
        let lines: Vec<&str> = entries.iter().map(AsRef::as_ref).collect();
        Reply::text(lines.join("\n"))
    }

    fn json(value: Value) -> Reply {
        Reply {
            status: StatusCode::OK,
            content_type: JSON,
            body: Bytes::from(value.to_string()),
        }
    }

    pub fn not_found() -> Reply {
        Reply {
            status: StatusCode::NOT_FOUND,
            content_type: TEXT,
            body: Bytes::from_static(b"404 Not Found\n"),
        }
    }
}

/// The answer to `path` for `instance`; 404 for anything outside the trees.
pub(super) fn answer(instance: &InstanceMetadata, path: &str) -> Reply {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let reply = match segments.as_slice() {
        [] => Some(Reply::listing(&with_latest(EC2_VERSIONS))),
        ["openstack", rest @ ..] => openstack(instance, rest),
        [version, rest @ ..] if is_version(EC2_VERSIONS, version) => ec2(instance, rest),
        _ => None,
    };
    reply.unwrap_or_else(Reply::not_found)
}

fn with_latest(versions: &[&'static str]) -> Vec<&'static str> {
    versions.iter().copied().chain([LATEST]).collect()
}

fn is_version(versions: &[&str], asked: &str) -> bool {
    asked == LATEST || versions.contains(&asked)
}

/// Whether `version` has what Nova added in `since` (`latest` has everything; dated
/// versions compare as text).
fn at_least(version: &str, since: &str) -> bool {
    version == LATEST || version >= since
}

fn openstack(instance: &InstanceMetadata, rest: &[&str]) -> Option<Reply> {
    match rest {
        [] => Some(Reply::listing(&with_latest(OPENSTACK_VERSIONS))),
        [version, rest @ ..] if is_version(OPENSTACK_VERSIONS, version) => {
            let files = openstack_files(instance, version);
            match rest {
                [] => Some(Reply::listing(&files)),
                [file] if files.iter().any(|f| f == file) => Some(openstack_file(instance, file)),
                _ => None,
            }
        }
        _ => None,
    }
}

/// The files of one OpenStack version, in Nova's order.
fn openstack_files(instance: &InstanceMetadata, version: &str) -> Vec<&'static str> {
    let mut files = vec!["meta_data.json"];
    if instance.user_data.is_some() {
        files.push("user_data");
    }
    if at_least(version, "2013-10-17") {
        files.push("vendor_data.json");
    }
    if at_least(version, "2015-10-15") {
        files.push("network_data.json");
    }
    if at_least(version, "2016-10-06") {
        files.push("vendor_data2.json");
    }
    files
}

fn openstack_file(instance: &InstanceMetadata, file: &str) -> Reply {
    match file {
        "meta_data.json" => Reply::json(meta_data(instance)),
        "network_data.json" => Reply::json(network_data(instance)),
        "user_data" => user_data(instance),
        // No vendor data is configured.
        _ => Reply::json(json!({})),
    }
}

fn user_data(instance: &InstanceMetadata) -> Reply {
    match &instance.user_data {
        Some(data) => Reply {
            status: StatusCode::OK,
            content_type: OCTETS,
            body: data.clone(),
        },
        None => Reply::not_found(),
    }
}

/// `meta_data.json`, with Nova's field names.
pub(super) fn meta_data(instance: &InstanceMetadata) -> Value {
    let mut data = Map::new();
    data.insert("uuid".into(), json!(instance.uuid));
    data.insert("name".into(), json!(instance.name));
    data.insert("hostname".into(), json!(instance.hostname));
    data.insert("launch_index".into(), json!(instance.launch_index));
    data.insert(
        "availability_zone".into(),
        json!(instance.availability_zone),
    );
    data.insert("project_id".into(), json!(instance.project_id));
    data.insert("meta".into(), json!(instance.meta));
    data.insert("devices".into(), json!([]));
    // Nova gives both only when the server has a keypair.
    if !instance.public_keys.is_empty() {
        let by_name: Map<String, Value> = instance
            .public_keys
            .iter()
            .map(|key| (key.name.clone(), json!(key.data)))
            .collect();
        data.insert("public_keys".into(), Value::Object(by_name));
        let keys: Vec<Value> = instance
            .public_keys
            .iter()
            .map(|key| json!({"name": key.name, "type": key.kind, "data": key.data}))
            .collect();
        data.insert("keys".into(), json!(keys));
    }
    Value::Object(data)
}

/// `network_data.json`: a link per port (a TAP on a bridge, named as Nova names TAPs) and,
/// for a port with an IPv4 address, an `ipv4_dhcp` network on it (the service's DHCP
/// hands out the address, mask, routes and DNS servers). IPv6 is left to router
/// advertisements.
pub(super) fn network_data(instance: &InstanceMetadata) -> Value {
    let mut links = Vec::new();
    let mut networks = Vec::new();
    for interface in &instance.interfaces {
        let link_id = format!(
            "tap{}",
            interface.port_id.get(..11).unwrap_or(&interface.port_id)
        );
        links.push(json!({
            "id": link_id,
            "vif_id": interface.port_id,
            "type": "bridge",
            "ethernet_mac_address": interface.mac_address,
        }));
        if interface.fixed_ips.iter().any(|ip| ip.is_ipv4()) {
            networks.push(json!({
                "id": format!("network{}", networks.len()),
                "type": "ipv4_dhcp",
                "link": link_id,
                "network_id": interface.network_id,
            }));
        }
    }
    json!({"links": links, "networks": networks, "services": []})
}

/// Nova's EC2 ids are `i-`/`r-` and eight hex digits; here they are the first eight of the
/// VM's uid, stable for its life.
fn ec2_id(prefix: &str, uuid: &str) -> String {
    let hex: String = uuid
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(8)
        .collect();
    format!("{prefix}-{hex:0>8}")
}

fn ec2(instance: &InstanceMetadata, rest: &[&str]) -> Option<Reply> {
    match rest {
        [] => {
            let mut entries = vec!["meta-data/"];
            if instance.user_data.is_some() {
                entries.push("user-data");
            }
            Some(Reply::listing(&entries))
        }
        ["user-data"] => instance.user_data.as_ref().map(|_| user_data(instance)),
        ["meta-data", rest @ ..] => ec2_meta_data(instance, rest),
        _ => None,
    }
}

fn ec2_meta_data(instance: &InstanceMetadata, rest: &[&str]) -> Option<Reply> {
    let has_keys = !instance.public_keys.is_empty();
    match rest {
        [] => {
            let mut entries = vec![
                "ami-id",
                "ami-launch-index",
                "hostname",
                "instance-id",
                "instance-type",
                "local-hostname",
                "local-ipv4",
                "placement/",
                "public-hostname",
                "public-ipv4",
            ];
            if has_keys {
                entries.push("public-keys/");
            }
            entries.extend(["reservation-id", "security-groups"]);
            Some(Reply::listing(&entries))
        }
        ["placement"] => Some(Reply::listing(&["availability-zone"])),
        ["placement", "availability-zone"] => Some(Reply::text(&instance.availability_zone)),
        ["public-keys", rest @ ..] if has_keys => public_keys(instance, rest),
        [leaf] => ec2_leaf(instance, leaf).map(Reply::text),
        _ => None,
    }
}

fn public_keys(instance: &InstanceMetadata, rest: &[&str]) -> Option<Reply> {
    match rest {
        [] => {
            let entries: Vec<String> = instance
                .public_keys
                .iter()
                .enumerate()
                .map(|(index, key)| format!("{index}={}", key.name))
                .collect();
            Some(Reply::listing(&entries))
        }
        [index, rest @ ..] => {
            let key = instance.public_keys.get(index.parse::<usize>().ok()?)?;
            match rest {
                [] => Some(Reply::listing(&["openssh-key"])),
                ["openssh-key"] => Some(Reply::text(&key.data)),
                _ => None,
            }
        }
    }
}

fn ec2_leaf(instance: &InstanceMetadata, leaf: &str) -> Option<String> {
    let text = match leaf {
        "ami-id" => instance.image_ref.clone(),
        "ami-launch-index" => instance.launch_index.to_string(),
        "hostname" | "local-hostname" | "public-hostname" => instance.hostname.clone(),
        "instance-id" => ec2_id("i", &instance.uuid),
        "instance-type" => instance.instance_type.clone(),
        "local-ipv4" => instance
            .fixed_ips
            .iter()
            .find(|ip| ip.is_ipv4())
            .map(ToString::to_string)
            .unwrap_or_default(),
        // Empty without one, as Nova answers.
        "public-ipv4" => instance
            .floating_ip
            .map(|ip| ip.to_string())
            .unwrap_or_default(),
        "reservation-id" => ec2_id("r", &instance.uuid),
        "security-groups" => instance.security_groups.join("\n"),
        _ => return None,
    };
    Some(text)
}
