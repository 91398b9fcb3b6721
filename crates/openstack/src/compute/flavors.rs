//! Flavors (`/flavors`) and their extra specs (`/flavors/{id}/os-extra_specs`), over the
//! cluster-scoped Flavor kind. A flavor's id is its name. Everyone reads public flavors;
//! cloud admins also see private ones and are the only ones to create, change or delete.
//! Flavor access lists (`os-flavor-access`) are not served: a private flavor is for admins.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use http::StatusCode;
use ronghe_apiserver::auth::User;
use ronghe_apiserver::engine::{PatchKind, Target, WriteOptions};
use serde_json::{Map, Value, json};

use super::{Caller, Microversion, bad_request, engine_fault, links, not_found};
use crate::OpenStack;
use crate::fault::FaultResult;

/// A flavor as Nova shows it at `version` (`detail`: every field, else id, name and links).
pub(crate) fn view(
    state: &OpenStack,
    flavor: &Value,
    version: Microversion,
    detail: bool,
) -> Value {
    let name = flavor["metadata"]["name"].as_str().unwrap_or_default();
    let spec = &flavor["spec"];
    let mut view = json!({
        "id": name,
        "name": name,
        "links": links(state, "flavors", name),
    });
    if version.at_least(55) {
        view["description"] = spec.get("description").cloned().unwrap_or(Value::Null);
    }
    if !detail {
        return view;
    }
    let number = |field: &str| spec[field].as_i64().unwrap_or(0);
    let swap = number("swap");
    view["vcpus"] = json!(number("vcpus"));
    view["ram"] = json!(number("ram"));
    view["disk"] = json!(number("disk"));
    view["OS-FLV-EXT-DATA:ephemeral"] = json!(number("ephemeral"));
    // Before 2.75 a flavor without swap says `""`.
    view["swap"] = if swap == 0 && !version.at_least(75) {
        json!("")
    } else {
        json!(swap)
    };
    view["rxtx_factor"] = json!(1.0);
    view["os-flavor-access:is_public"] = json!(spec["isPublic"].as_bool().unwrap_or(true));
    view["OS-FLV-DISABLED:disabled"] = json!(false);
    if version.at_least(61) {
        view["extra_specs"] = extra_specs_of(flavor);
    }
    view
}

fn extra_specs_of(flavor: &Value) -> Value {
    flavor["spec"]
        .get("extraSpecs")
        .cloned()
        .unwrap_or_else(|| json!({}))
}

fn is_public(flavor: &Value) -> bool {
    flavor["spec"]["isPublic"].as_bool().unwrap_or(true)
}

/// The flavors the caller may see, filtered as the query asks.
async fn visible(
    state: &OpenStack,
    caller: &Caller,
    query: &HashMap<String, String>,
) -> FaultResult<Vec<Value>> {
    caller.allow("os_compute_api:flavors:list")?;
    let kind = super::kind(state, "Flavor")?;
    let flavors = super::list_all(state, &kind, None).await?;
    // `is_public`: `None` means all (for admins), `False` private only; the default and
    // anything else public only. Non-admins only ever see public flavors.
    let wanted = query.get("is_public").map(String::as_str);
    let minimum = |key: &str| -> FaultResult<i64> {
        match query.get(key) {
            None => Ok(0),
            Some(text) => text
                .parse()
                .map_err(|_| bad_request(format!("Invalid {key} filter [{text}]"))),
        }
    };
    let (min_ram, min_disk) = (minimum("minRam")?, minimum("minDisk")?);
    let mut shown: Vec<Value> = flavors
        .into_iter()
        .filter(|flavor| {
            let public = is_public(flavor);
            if !caller.is_admin() {
                return public;
            }
            match wanted.map(str::to_ascii_lowercase).as_deref() {
                Some("none") => true,
                Some("false" | "0" | "no") => !public,
                _ => public,
            }
        })
        .filter(|flavor| flavor["spec"]["ram"].as_i64().unwrap_or(0) >= min_ram)
        .filter(|flavor| flavor["spec"]["disk"].as_i64().unwrap_or(0) >= min_disk)
        .collect();
    // Nova sorts by flavorid by default; with ids being names, by name.
    let key = match query.get("sort_key").map(String::as_str) {
        Some("memory_mb") => "ram",
        Some("vcpus") => "vcpus",
        Some("root_gb") => "disk",
        _ => "name",
    };
    shown.sort_by(|a, b| {
        if key == "name" {
            a["metadata"]["name"]
                .as_str()
                .cmp(&b["metadata"]["name"].as_str())
        } else {
            a["spec"][key].as_i64().cmp(&b["spec"][key].as_i64())
        }
    });
    if query.get("sort_dir").is_some_and(|d| d == "desc") {
        shown.reverse();
    }
    super::paginate(shown, query, |flavor, marker| {
        flavor["metadata"]["name"].as_str() == Some(marker)
    })
}

async fn listing(
    state: Arc<OpenStack>,
    user: User,
    version: Microversion,
    query: HashMap<String, String>,
    detail: bool,
) -> FaultResult<Json<Value>> {
    let caller = Caller::of(&user)?;
    let flavors = visible(&state, &caller, &query).await?;
    let views: Vec<Value> = flavors
        .iter()
        .map(|f| view(&state, f, version, detail))
        .collect();
    Ok(Json(json!({"flavors": views})))
}

/// `GET /flavors`.
pub async fn list(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Extension(version): Extension<Microversion>,
    Query(query): Query<HashMap<String, String>>,
) -> FaultResult<Json<Value>> {
    listing(state, user, version, query, false).await
}

/// `GET /flavors/detail`.
pub async fn list_detail(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Extension(version): Extension<Microversion>,
    Query(query): Query<HashMap<String, String>>,
) -> FaultResult<Json<Value>> {
    listing(state, user, version, query, true).await
}

/// A flavor the caller may see, by id (its name).
pub(crate) async fn find(state: &OpenStack, caller: &Caller, id: &str) -> FaultResult<Value> {
    let missing = || not_found(format!("Flavor {id} could not be found."));
    let kind = super::kind(state, "Flavor")?;
    match state.engine.get(&kind, None, id).await {
        Ok(flavor) if is_public(&flavor) || caller.is_admin() => Ok(flavor),
        Ok(_) => Err(missing()),
        Err(error) if error.code() == 404 || error.code() == 400 => Err(missing()),
        Err(error) => Err(engine_fault(error)),
    }
}

/// `GET /flavors/{id}`.
pub async fn show(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Extension(version): Extension<Microversion>,
    Path(id): Path<String>,
) -> FaultResult<Json<Value>> {
    let caller = Caller::of(&user)?;
    caller.allow("os_compute_api:flavors:show")?;
    let flavor = find(&state, &caller, &id).await?;
    Ok(Json(
        json!({"flavor": view(&state, &flavor, version, true)}),
    ))
}

/// A non-negative integer field of a flavor body (Nova also takes numeric strings).
fn integer(body: &Map<String, Value>, key: &str, default: Option<i64>) -> FaultResult<i64> {
    let invalid = || {
        bad_request(format!(
            "Invalid input for field/attribute {key}. Value: {}. must be a non-negative integer",
            body.get(key).map(Value::to_string).unwrap_or_default()
        ))
    };
    match body.get(key) {
        None | Some(Value::Null) => default.ok_or_else(|| {
            bad_request(format!(
                "Invalid input for field/attribute flavor. '{key}' is a required property"
            ))
        }),
        Some(Value::Number(n)) => n.as_i64().filter(|v| *v >= 0).ok_or_else(invalid),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .ok()
            .filter(|v| *v >= 0)
            .ok_or_else(invalid),
        Some(_) => Err(invalid()),
    }
}

/// `POST /flavors` (admins).
pub async fn create(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Extension(version): Extension<Microversion>,
    body: Bytes,
) -> FaultResult<Response> {
    let caller = Caller::of(&user)?;
    caller.allow("os_compute_api:os-flavor-manage:create")?;
    let body = super::body_member(&body, "flavor")?;
    let name = body
        .get("name")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            bad_request("Invalid input for field/attribute flavor. 'name' is a required property")
        })?
        .to_owned();
    // A flavor's id is its name; an explicit different id cannot be kept.
    match body.get("id") {
        None | Some(Value::Null) => {}
        Some(Value::String(id)) if id == "auto" || *id == name => {}
        Some(other) => {
            return Err(bad_request(format!(
                "Flavor ids are the flavor names in Ronghe; id {other} differs from name {name:?}."
            )));
        }
    }
    let mut spec = json!({
        "vcpus": integer(&body, "vcpus", None)?,
        "ram": integer(&body, "ram", None)?,
        "disk": integer(&body, "disk", None)?,
        "ephemeral": integer(&body, "OS-FLV-EXT-DATA:ephemeral", Some(0))?,
        "swap": match body.get("swap") {
            Some(Value::String(s)) if s.is_empty() => 0,
            _ => integer(&body, "swap", Some(0))?,
        },
        "isPublic": body.get("os-flavor-access:is_public").and_then(Value::as_bool).unwrap_or(true),
    });
    if let Some(description) = body.get("description").and_then(Value::as_str) {
        spec["description"] = json!(description);
    }
    let kind = super::kind(&state, "Flavor")?;
    let object = json!({
        "apiVersion": super::API_VERSION,
        "kind": "Flavor",
        "metadata": {"name": name},
        "spec": spec,
    });
    let flavor = match state
        .engine
        .create(&kind, None, object, &WriteOptions::default())
        .await
    {
        Ok(written) => written.object,
        Err(error) if error.code() == 409 => {
            return Err(super::conflict(format!(
                "Flavor with name {name} already exists."
            )));
        }
        Err(error) => return Err(engine_fault(error)),
    };
    Ok(Json(json!({"flavor": view(&state, &flavor, version, true)})).into_response())
}

/// `PUT /flavors/{id}` (2.55: the description only).
pub async fn update(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Extension(version): Extension<Microversion>,
    Path(id): Path<String>,
    body: Bytes,
) -> FaultResult<Json<Value>> {
    let caller = Caller::of(&user)?;
    caller.allow("os_compute_api:os-flavor-manage:update")?;
    if !version.at_least(55) {
        return Err(not_found("The resource could not be found."));
    }
    let body = super::body_member(&body, "flavor")?;
    let description = match body.get("description") {
        Some(Value::String(text)) => json!(text),
        Some(Value::Null) => Value::Null,
        _ => {
            return Err(bad_request(
                "Invalid input for field/attribute flavor. 'description' is a required property",
            ));
        }
    };
    find(&state, &caller, &id).await?;
    let flavor = patch_spec(&state, &id, json!({"description": description})).await?;
    Ok(Json(
        json!({"flavor": view(&state, &flavor, version, true)}),
    ))
}

async fn patch_spec(state: &OpenStack, id: &str, spec: Value) -> FaultResult<Value> {
    let kind = super::kind(state, "Flavor")?;
    state
        .engine
        .patch(
            &kind,
            None,
            id,
            PatchKind::Merge,
            json!({"spec": spec}),
            Target::Main,
            &WriteOptions::default(),
        )
        .await
        .map(|written| written.object)
        .map_err(engine_fault)
}

/// `DELETE /flavors/{id}` (admins). VMs keep the flavor they were booted with.
pub async fn delete(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
) -> FaultResult<StatusCode> {
    let caller = Caller::of(&user)?;
    caller.allow("os_compute_api:os-flavor-manage:delete")?;
    let kind = super::kind(&state, "Flavor")?;
    super::delete_object(
        &state,
        &kind,
        None,
        &id,
        format!("Flavor {id} could not be found."),
    )
    .await?;
    Ok(StatusCode::ACCEPTED)
}

/// `GET /flavors/{id}/os-extra_specs`.
pub async fn extra_specs(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
) -> FaultResult<Json<Value>> {
    let caller = Caller::of(&user)?;
    caller.allow("os_compute_api:os-flavor-extra-specs:index")?;
    let flavor = find(&state, &caller, &id).await?;
    Ok(Json(json!({"extra_specs": extra_specs_of(&flavor)})))
}

/// `GET /flavors/{id}/os-extra_specs/{key}`.
pub async fn extra_spec(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path((id, key)): Path<(String, String)>,
) -> FaultResult<Json<Value>> {
    let caller = Caller::of(&user)?;
    caller.allow("os_compute_api:os-flavor-extra-specs:show")?;
    let flavor = find(&state, &caller, &id).await?;
    match extra_specs_of(&flavor).get(&key) {
        Some(value) => Ok(Json(json!({key: value}))),
        None => Err(not_found(format!(
            "Flavor {id} has no extra specs with key {key}."
        ))),
    }
}

/// Checks extra specs: string keys and values, as Nova requires.
fn checked_specs(specs: &Map<String, Value>) -> FaultResult<Map<String, Value>> {
    let mut checked = Map::new();
    for (key, value) in specs {
        if key.is_empty() || key.len() > 255 {
            return Err(bad_request(format!(
                "Invalid input for field/attribute extra_specs. Invalid key {key:?}"
            )));
        }
        let value = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => {
                return Err(bad_request(format!(
                    "Invalid input for field/attribute extra_specs. Value of {key} must be a string"
                )));
            }
        };
        checked.insert(key.clone(), json!(value));
    }
    Ok(checked)
}

/// `POST /flavors/{id}/os-extra_specs` (admins): adds or changes extra specs.
pub async fn set_extra_specs(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
    body: Bytes,
) -> FaultResult<Json<Value>> {
    let caller = Caller::of(&user)?;
    caller.allow("os_compute_api:os-flavor-extra-specs:create")?;
    let specs = checked_specs(&super::body_member(&body, "extra_specs")?)?;
    find(&state, &caller, &id).await?;
    patch_spec(&state, &id, json!({"extraSpecs": specs.clone()})).await?;
    Ok(Json(json!({"extra_specs": specs})))
}

/// `PUT /flavors/{id}/os-extra_specs/{key}` (admins): the body holds exactly that key.
pub async fn update_extra_spec(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path((id, key)): Path<(String, String)>,
    body: Bytes,
) -> FaultResult<Json<Value>> {
    let caller = Caller::of(&user)?;
    caller.allow("os_compute_api:os-flavor-extra-specs:update")?;
    let body: Map<String, Value> = serde_json::from_slice(&body)
        .map_err(|_| bad_request("Malformed request body: the body is not a JSON object."))?;
    if body.len() != 1 || !body.contains_key(&key) {
        return Err(bad_request("Request body and URI mismatch"));
    }
    let specs = checked_specs(&body)?;
    find(&state, &caller, &id).await?;
    patch_spec(&state, &id, json!({"extraSpecs": specs.clone()})).await?;
    Ok(Json(Value::Object(specs)))
}

/// `DELETE /flavors/{id}/os-extra_specs/{key}` (admins).
pub async fn delete_extra_spec(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path((id, key)): Path<(String, String)>,
) -> FaultResult<StatusCode> {
    let caller = Caller::of(&user)?;
    caller.allow("os_compute_api:os-flavor-extra-specs:delete")?;
    let flavor = find(&state, &caller, &id).await?;
    if extra_specs_of(&flavor).get(&key).is_none() {
        return Err(not_found(format!(
            "Flavor {id} has no extra specs with key {key}."
        )));
    }
    patch_spec(&state, &id, json!({"extraSpecs": {key: null}})).await?;
    Ok(StatusCode::ACCEPTED)
}
