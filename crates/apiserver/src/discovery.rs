//! Discovery, derived from the registry once at start-up: `/version`, `/api`, `/apis`,
//! `/apis/{group}` and each group-version's resource list (the legacy, non-aggregated
//! form, which every kubectl and kube-rs version understands).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use http::{HeaderMap, StatusCode, header};
use serde_json::{Value, json};

use crate::http::{ApiState, json_response};
use crate::registry::{GroupVersion, Registry};

/// The Kubernetes version Ronghe reports. kubectl on these machines is a dispatcher that
/// runs the kubectl matching the server's minor version, so this picks kubectl 1.32.
pub const KUBERNETES_MAJOR: &str = "1";
pub const KUBERNETES_MINOR: &str = "32";

/// Precomputed discovery documents.
#[derive(Clone, Debug)]
pub struct Discovery {
    group_list: Value,
    groups: BTreeMap<String, Value>,
    resource_lists: BTreeMap<(String, String), Value>,
}

impl Discovery {
    pub fn new(registry: &Registry) -> Self {
        let group_versions = registry.group_versions();
        let mut groups: BTreeMap<String, Vec<&GroupVersion>> = BTreeMap::new();
        let mut order: Vec<String> = Vec::new();
        let mut resource_lists = BTreeMap::new();
        for gv in &group_versions {
            resource_lists.insert(
                (gv.group.to_owned(), gv.version.to_owned()),
                resource_list(gv),
            );
            if !gv.group.is_empty() {
                if !order.iter().any(|g| g == gv.group) {
                    order.push(gv.group.to_owned());
                }
                groups.entry(gv.group.to_owned()).or_default().push(gv);
            }
        }
        let group_docs: BTreeMap<String, Value> = groups
            .iter()
            .map(|(name, versions)| (name.clone(), api_group(name, versions)))
            .collect();
        let group_list = json!({
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": order.iter().filter_map(|g| group_docs.get(g)).map(|g| {
                let mut g = g.clone();
                if let Some(map) = g.as_object_mut() {
                    map.remove("kind");
                    map.remove("apiVersion");
                }
                g
            }).collect::<Vec<_>>(),
        });
        Self {
            group_list,
            groups: group_docs,
            resource_lists,
        }
    }

    pub fn resource_list(&self, group: &str, version: &str) -> Option<&Value> {
        self.resource_lists
            .get(&(group.to_owned(), version.to_owned()))
    }

    pub fn group(&self, group: &str) -> Option<&Value> {
        self.groups.get(group)
    }
}

fn api_group(name: &str, versions: &[&GroupVersion]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|gv| json!({"groupVersion": gv.group_version(), "version": gv.version}))
        .collect();
    json!({
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": name,
        "versions": versions,
        "preferredVersion": versions.first().cloned().unwrap_or(Value::Null),
    })
}

fn resource_list(gv: &GroupVersion) -> Value {
    let mut resources = Vec::new();
    for kind in &gv.kinds {
        let mut resource = json!({
            "name": kind.plural,
            "singularName": kind.singular,
            "namespaced": kind.namespaced(),
            "kind": kind.kind,
            "verbs": kind.verbs(),
        });
        if !kind.short_names.is_empty() {
            resource["shortNames"] = json!(kind.short_names);
        }
        if !kind.categories.is_empty() {
            resource["categories"] = json!(kind.categories);
        }
        resources.push(resource);
        if kind.subresources.status {
            resources.push(json!({
                "name": format!("{}/status", kind.plural),
                "singularName": "",
                "namespaced": kind.namespaced(),
                "kind": kind.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
        if kind.subresources.scale {
            resources.push(json!({
                "name": format!("{}/scale", kind.plural),
                "singularName": "",
                "namespaced": kind.namespaced(),
                "group": "autoscaling",
                "version": "v1",
                "kind": "Scale",
                "verbs": ["get", "patch", "update"],
            }));
        }
    }
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": gv.group_version(),
        "resources": resources,
    })
}

pub async fn version() -> Response {
    json_response(
        StatusCode::OK,
        &json!({
            "major": KUBERNETES_MAJOR,
            "minor": KUBERNETES_MINOR,
            "gitVersion": format!("v{KUBERNETES_MAJOR}.{KUBERNETES_MINOR}.0-ronghe.{}", env!("CARGO_PKG_VERSION")),
            "gitCommit": "",
            "gitTreeState": "clean",
            "buildDate": "",
            "goVersion": "",
            "compiler": "rustc",
            "platform": format!("{}/{}", std::env::consts::OS, go_arch()),
        }),
    )
}

/// The architecture name Go (and so kubectl) uses.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

pub async fn api_versions(headers: HeaderMap) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    json_response(
        StatusCode::OK,
        &json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}],
        }),
    )
}

pub async fn api_group_list(State(state): State<Arc<ApiState>>) -> Response {
    json_response(StatusCode::OK, &state.discovery.group_list)
}
