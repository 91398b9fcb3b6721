//! Nova at `/compute/v2.1` (microversions 2.1 to 2.96): servers and their actions, flavors
//! with extra specs, keypairs, server groups, availability zones and hypervisors, over the
//! `compute.ronghe.io` kinds and the Nodes.
//!
//! Ids: a server's id is its VirtualMachine's uid; a flavor's id is its Flavor's name (so
//! `spec.flavorRef` reads the same on both faces); a keypair is found by its name among the
//! caller's; a server group's id is its ServerGroup's uid; a hypervisor's id is its Node's
//! uid. A server's name is its VirtualMachine's name, so it must be a DNS-1123 subdomain
//! name and unique in the project (Nova's `osapi_compute_unique_server_name_scope =
//! project`).

mod flavors;
mod hosts;
mod keypairs;
pub mod microversion;
mod server_groups;
mod servers;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use bytes::Bytes;
use ronghe_apiserver::auth::User;
use ronghe_apiserver::engine::{ListOptions, WriteOptions};
use ronghe_apiserver::identity::{Principal, PrincipalScope};
use ronghe_apiserver::registry::KindSpec;
use ronghe_identity::policy::Target;
use serde_json::{Value, json};

use crate::OpenStack;
use crate::fault::{Fault, FaultResult, Style};
use crate::identity::{allow, principal_of};

pub use microversion::Microversion;

/// Where the compute API lives under the server's URL.
pub const BASE: &str = "/compute/v2.1";

/// Nova's name for the zone of hosts that name none.
pub const DEFAULT_ZONE: &str = "nova";

const API_VERSION: &str = "compute.ronghe.io/v1";

pub fn router(state: Arc<OpenStack>) -> Router {
    let routes = Router::new()
        .route(
            "/compute/v2.1/servers",
            get(servers::list).post(servers::create),
        )
        .route("/compute/v2.1/servers/detail", get(servers::list_detail))
        .route(
            "/compute/v2.1/servers/{id}",
            get(servers::show)
                .put(servers::update)
                .delete(servers::delete),
        )
        .route("/compute/v2.1/servers/{id}/action", post(servers::action))
        .route(
            "/compute/v2.1/flavors",
            get(flavors::list).post(flavors::create),
        )
        .route("/compute/v2.1/flavors/detail", get(flavors::list_detail))
        .route(
            "/compute/v2.1/flavors/{id}",
            get(flavors::show)
                .put(flavors::update)
                .delete(flavors::delete),
        )
        .route(
            "/compute/v2.1/flavors/{id}/os-extra_specs",
            get(flavors::extra_specs).post(flavors::set_extra_specs),
        )
        .route(
            "/compute/v2.1/flavors/{id}/os-extra_specs/{key}",
            get(flavors::extra_spec)
                .put(flavors::update_extra_spec)
                .delete(flavors::delete_extra_spec),
        )
        .route(
            "/compute/v2.1/os-keypairs",
            get(keypairs::list).post(keypairs::create),
        )
        .route(
            "/compute/v2.1/os-keypairs/{name}",
            get(keypairs::show).delete(keypairs::delete),
        )
        .route(
            "/compute/v2.1/os-server-groups",
            get(server_groups::list).post(server_groups::create),
        )
        .route(
            "/compute/v2.1/os-server-groups/{id}",
            get(server_groups::show).delete(server_groups::delete),
        )
        .route(
            "/compute/v2.1/os-availability-zone",
            get(hosts::availability_zones),
        )
        .route(
            "/compute/v2.1/os-availability-zone/detail",
            get(hosts::availability_zones_detail),
        )
        .route("/compute/v2.1/os-hypervisors", get(hosts::hypervisors))
        .route(
            "/compute/v2.1/os-hypervisors/detail",
            get(hosts::hypervisors_detail),
        )
        .route("/compute/v2.1/os-hypervisors/{id}", get(hosts::hypervisor))
        .route("/compute/v2.1/limits", get(hosts::limits));
    routes
        .route_layer(axum::middleware::from_fn(microversion::negotiate))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            |axum::extract::State(state): axum::extract::State<Arc<OpenStack>>,
             request,
             next| async move {
                crate::authenticate_as(&state, request, next, Style::Nova).await
            },
        ))
        .with_state(state)
}

/// Who calls, and in which project.
pub(crate) struct Caller {
    pub principal: Arc<Principal>,
    /// The project the token is scoped to: (namespace, project id).
    pub project: Option<(String, String)>,
}

impl Caller {
    pub fn of(user: &User) -> FaultResult<Caller> {
        let principal = principal_of(user).map_err(nova)?;
        let project = match &principal.scope {
            PrincipalScope::Project { uid, name } => Some((name.clone(), uid.simple().to_string())),
            _ => None,
        };
        Ok(Caller { principal, project })
    }

    /// The namespace of the caller's project; Nova's APIs act in a project, so a token
    /// without one is refused.
    pub fn namespace(&self) -> FaultResult<&str> {
        self.project
            .as_ref()
            .map(|(namespace, _)| namespace.as_str())
            .ok_or_else(|| {
                nova(Fault::forbidden(
                    "compute requests need a token scoped to a project",
                ))
            })
    }

    pub fn user_id(&self) -> String {
        self.principal.user_uid.simple().to_string()
    }

    pub fn is_admin(&self) -> bool {
        self.principal.subject.is_cloud_admin()
    }

    /// Checks an operation on the caller's own project.
    pub fn allow(&self, operation: &str) -> FaultResult<()> {
        let project = self
            .project
            .as_ref()
            .map(|(namespace, _)| namespace.as_str());
        allow(
            &self.principal,
            operation,
            Target {
                project,
                user: None,
            },
        )
        .map_err(nova)
    }

    /// Checks an operation on a given project (an object's namespace).
    pub fn allow_in(&self, operation: &str, namespace: &str) -> FaultResult<()> {
        allow(
            &self.principal,
            operation,
            Target {
                project: Some(namespace),
                user: None,
            },
        )
        .map_err(nova)
    }
}

/// A fault in Nova's shape.
pub(crate) fn nova(fault: Fault) -> Fault {
    fault.styled(Style::Nova)
}

pub(crate) fn bad_request(message: impl Into<String>) -> Fault {
    nova(Fault::bad_request(message))
}

pub(crate) fn not_found(message: impl Into<String>) -> Fault {
    nova(Fault::new(http::StatusCode::NOT_FOUND, message))
}

pub(crate) fn conflict(message: impl Into<String>) -> Fault {
    nova(Fault::conflict(message))
}

/// Maps an engine error into Nova's shape.
pub(crate) fn engine_fault(error: ronghe_apiserver::error::ApiError) -> Fault {
    nova(Fault::from_api(error))
}

/// Parses a JSON body and takes the object under `key` (`{"server": {...}}`).
pub(crate) fn body_member(body: &Bytes, key: &str) -> FaultResult<serde_json::Map<String, Value>> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| bad_request("Malformed request body: the body is not valid JSON."))?;
    match value.get(key) {
        Some(Value::Object(member)) => Ok(member.clone()),
        _ => Err(bad_request(format!(
            "Invalid input for field/attribute {key}. '{key}' is a required property"
        ))),
    }
}

/// A compute kind.
pub(crate) fn kind(state: &OpenStack, kind: &str) -> FaultResult<Arc<KindSpec>> {
    state.engine.kind(API_VERSION, kind).map_err(engine_fault)
}

/// Every object of a kind in a namespace (or in all).
pub(crate) async fn list_all(
    state: &OpenStack,
    kind: &KindSpec,
    namespace: Option<&str>,
) -> FaultResult<Vec<Value>> {
    let list = state
        .engine
        .list(kind, namespace, &ListOptions::default())
        .await
        .map_err(engine_fault)?;
    Ok(list.items)
}

/// Creates an object through the engine (validation, defaulting, quota).
pub(crate) async fn create(
    state: &OpenStack,
    kind: &KindSpec,
    namespace: Option<&str>,
    body: Value,
) -> FaultResult<Value> {
    state
        .engine
        .create(kind, namespace, body, &WriteOptions::default())
        .await
        .map(|written| written.object)
        .map_err(engine_fault)
}

/// Nova's paging of a sorted listing: the items after the one `marker` names (by
/// `is_marker`), at most `limit` of them.
pub(crate) fn paginate(
    mut items: Vec<Value>,
    query: &std::collections::HashMap<String, String>,
    is_marker: impl Fn(&Value, &str) -> bool,
) -> FaultResult<Vec<Value>> {
    if let Some(marker) = query.get("marker") {
        let Some(at) = items.iter().position(|item| is_marker(item, marker)) else {
            return Err(bad_request(format!("marker [{marker}] not found")));
        };
        items.drain(..=at);
    }
    if let Some(limit) = query.get("limit") {
        let limit: usize = limit
            .parse()
            .map_err(|_| bad_request(format!("Invalid limit [{limit}]")))?;
        items.truncate(limit);
    }
    Ok(items)
}

/// Deletes an object through the engine; one already gone is a 404 with `missing`.
pub(crate) async fn delete_object(
    state: &OpenStack,
    kind: &KindSpec,
    namespace: Option<&str>,
    name: &str,
    missing: String,
) -> FaultResult<()> {
    match state
        .engine
        .delete(
            kind,
            namespace,
            name,
            &ronghe_apiserver::engine::DeleteOptions::default(),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(error) if error.code() == 404 => Err(not_found(missing)),
        Err(error) => Err(engine_fault(error)),
    }
}

/// `self` and `bookmark` links of a compute resource.
pub(crate) fn links(state: &OpenStack, collection: &str, id: &str) -> Value {
    json!([
        {"rel": "self", "href": format!("{}{BASE}/{collection}/{id}", state.public_url)},
        {"rel": "bookmark", "href": format!("{}/compute/{collection}/{id}", state.public_url)},
    ])
}

/// Nova's timestamps: seconds and a `Z`.
pub(crate) fn nova_time(rfc3339: &str) -> String {
    rfc3339
        .parse::<jiff::Timestamp>()
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|_| rfc3339.to_owned())
}

/// The uid of an object, in the hyphenated form Nova's ids take.
pub(crate) fn uid_of(object: &Value) -> &str {
    object
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Whether a reference names an object by uid (with or without hyphens).
pub(crate) fn same_uid(reference: &str, uid: &str) -> bool {
    match (uuid::Uuid::try_parse(reference), uuid::Uuid::try_parse(uid)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// A query's value for `key` as Nova reads booleans (`True`, `true`, `1`, `yes`).
pub(crate) fn truthy(value: &str) -> bool {
    matches!(
        value.to_ascii_lowercase().as_str(),
        "true" | "1" | "yes" | "on" | "y" | "t"
    )
}
