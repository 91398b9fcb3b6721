//! Server groups (`/os-server-groups`) over the ServerGroup kind: a project's affinity or
//! anti-affinity policy, which the scheduler applies to the VMs that name the group. A
//! group's id is its object's uid; its name is the object's name (unique per project);
//! its members are the project's VMs naming it.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use bytes::Bytes;
use http::StatusCode;
use ronghe_apiserver::auth::User;
use serde_json::{Value, json};

use super::servers::view::USER_ANNOTATION;
use super::{
    Caller, Microversion, bad_request, conflict, engine_fault, not_found, same_uid, uid_of,
};
use crate::OpenStack;
use crate::fault::FaultResult;

/// The policies Nova knows, and the version that brought each.
const POLICIES: &[(&str, u16)] = &[
    ("affinity", 1),
    ("anti-affinity", 1),
    ("soft-affinity", 15),
    ("soft-anti-affinity", 15),
];

async fn view(state: &OpenStack, group: &Value, version: Microversion) -> FaultResult<Value> {
    let namespace = group["metadata"]["namespace"].as_str().unwrap_or_default();
    let name = group["metadata"]["name"].as_str().unwrap_or_default();
    let vms = super::kind(state, "VirtualMachine")?;
    let members: Vec<String> = super::list_all(state, &vms, Some(namespace))
        .await?
        .iter()
        .filter(|vm| vm["spec"]["serverGroup"] == *name)
        .map(|vm| uid_of(vm).to_owned())
        .collect();
    let policy = group["spec"]["policy"].as_str().unwrap_or_default();
    let mut view = json!({
        "id": uid_of(group),
        "name": name,
        "members": members,
    });
    if version.at_least(64) {
        view["policy"] = json!(policy);
        view["rules"] = match group["spec"]["maxServerPerHost"].as_u64() {
            Some(limit) if policy == "anti-affinity" => json!({"max_server_per_host": limit}),
            _ => json!({}),
        };
    } else {
        view["policies"] = json!([policy]);
        view["metadata"] = json!({});
    }
    if version.at_least(13) {
        let project = state
            .identity
            .directory()
            .project(namespace)
            .map(|p| p.uid.simple().to_string())
            .unwrap_or_default();
        view["project_id"] = json!(project);
        view["user_id"] = group["metadata"]["annotations"][USER_ANNOTATION]
            .as_str()
            .map_or(json!(""), |u| json!(u));
    }
    Ok(view)
}

/// A group of the caller's project (admins: any project's), by id or name.
pub(crate) async fn find(state: &OpenStack, caller: &Caller, id: &str) -> FaultResult<Value> {
    let kind = super::kind(state, "ServerGroup")?;
    let namespace = if caller.is_admin() {
        None
    } else {
        Some(caller.namespace()?)
    };
    super::list_all(state, &kind, namespace)
        .await?
        .into_iter()
        .find(|g| {
            same_uid(id, uid_of(g))
                || (g["metadata"]["name"] == *id
                    && caller
                        .project
                        .as_ref()
                        .is_some_and(|(ns, _)| g["metadata"]["namespace"] == *ns))
        })
        .ok_or_else(|| not_found(format!("Instance group {id} could not be found.")))
}

/// `GET /os-server-groups`.
pub async fn list(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Extension(version): Extension<Microversion>,
    Query(query): Query<HashMap<String, String>>,
) -> FaultResult<Json<Value>> {
    let caller = Caller::of(&user)?;
    caller.allow("os_compute_api:os-server-groups:index")?;
    let kind = super::kind(&state, "ServerGroup")?;
    let all = query.get("all_projects").is_some_and(|v| super::truthy(v));
    let namespace = if all {
        caller.allow("os_compute_api:os-server-groups:index:all_projects")?;
        None
    } else {
        Some(caller.namespace()?)
    };
    let mut groups = super::list_all(&state, &kind, namespace).await?;
    groups.sort_by(|a, b| {
        a["metadata"]["creationTimestamp"]
            .as_str()
            .cmp(&b["metadata"]["creationTimestamp"].as_str())
    });
    let offset = query
        .get("offset")
        .and_then(|o| o.parse().ok())
        .unwrap_or(0);
    let limit = query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(usize::MAX);
    let mut views = Vec::new();
    for group in groups.iter().skip(offset).take(limit) {
        views.push(view(&state, group, version).await?);
    }
    Ok(Json(json!({"server_groups": views})))
}

/// `GET /os-server-groups/{id}`.
pub async fn show(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Extension(version): Extension<Microversion>,
    Path(id): Path<String>,
) -> FaultResult<Json<Value>> {
    let caller = Caller::of(&user)?;
    let group = find(&state, &caller, &id).await?;
    let namespace = group["metadata"]["namespace"].as_str().unwrap_or_default();
    caller.allow_in("os_compute_api:os-server-groups:show", namespace)?;
    Ok(Json(
        json!({"server_group": view(&state, &group, version).await?}),
    ))
}

/// `POST /os-server-groups`.
pub async fn create(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Extension(version): Extension<Microversion>,
    body: Bytes,
) -> FaultResult<Json<Value>> {
    let caller = Caller::of(&user)?;
    caller.allow("os_compute_api:os-server-groups:create")?;
    let namespace = caller.namespace()?.to_owned();
    let body = super::body_member(&body, "server_group")?;
    let name = body
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| {
            bad_request(
                "Invalid input for field/attribute server_group. 'name' is a required property",
            )
        })?
        .to_owned();
    let policy = if version.at_least(64) {
        body.get("policy")
            .and_then(Value::as_str)
            .map(str::to_owned)
    } else {
        match body.get("policies").and_then(Value::as_array) {
            Some(list) if list.len() == 1 => list[0].as_str().map(str::to_owned),
            _ => None,
        }
    };
    let policy = policy
        .filter(|p| {
            POLICIES
                .iter()
                .any(|(known, since)| known == p && version.at_least(*since))
        })
        .ok_or_else(|| {
            bad_request(format!(
                "Invalid input for field/attribute {}. The policy must be one of {}",
                if version.at_least(64) {
                    "policy"
                } else {
                    "policies"
                },
                POLICIES
                    .iter()
                    .filter(|(_, since)| version.at_least(*since))
                    .map(|(p, _)| *p)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
    let mut spec = json!({"policy": policy});
    if let Some(rules) = body.get("rules").and_then(Value::as_object)
        && version.at_least(64)
    {
        for (rule, value) in rules {
            match (rule.as_str(), value.as_u64()) {
                ("max_server_per_host", Some(limit)) if limit >= 1 && policy == "anti-affinity" => {
                    spec["maxServerPerHost"] = json!(limit);
                }
                _ => {
                    return Err(bad_request(format!(
                        "Invalid input for field/attribute rules. Rule {rule} is not valid for policy {policy}"
                    )));
                }
            }
        }
    }
    let kind = super::kind(&state, "ServerGroup")?;
    let created = state
        .engine
        .create(
            &kind,
            Some(&namespace),
            json!({
                "apiVersion": super::API_VERSION,
                "kind": "ServerGroup",
                "metadata": {"name": name, "namespace": namespace,
                             "annotations": {USER_ANNOTATION: caller.user_id()}},
                "spec": spec,
            }),
            &ronghe_apiserver::engine::WriteOptions::default(),
        )
        .await;
    let group = match created {
        Ok(written) => written.object,
        Err(error) if error.code() == 409 => {
            return Err(conflict(format!(
                "Server group {name} already exists in this project; group names are unique per project."
            )));
        }
        Err(error) if error.code() == 422 => return Err(bad_request(error.status.message.clone())),
        Err(error) => return Err(engine_fault(error)),
    };
    Ok(Json(
        json!({"server_group": view(&state, &group, version).await?}),
    ))
}

/// `DELETE /os-server-groups/{id}`.
pub async fn delete(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
) -> FaultResult<StatusCode> {
    let caller = Caller::of(&user)?;
    let group = find(&state, &caller, &id).await?;
    let namespace = group["metadata"]["namespace"].as_str().unwrap_or_default();
    caller.allow_in("os_compute_api:os-server-groups:delete", namespace)?;
    let name = group["metadata"]["name"].as_str().unwrap_or_default();
    let kind = super::kind(&state, "ServerGroup")?;
    let missing = format!("Instance group {id} could not be found.");
    super::delete_object(&state, &kind, Some(namespace), name, missing).await?;
    Ok(StatusCode::NO_CONTENT)
}
