//! `/resource_providers` and `/resource_providers/{uuid}` (list with filters, show,
//! create, rename or nest, delete) and a provider's aggregates.
//!
//! A provider created here is a ResourceProvider object named after it when its name is a
//! DNS subdomain (as host names are), else `rp-<random>` with the name in an annotation;
//! renaming sets or clears that annotation, since object names never change. Placement
//! lets a client choose the uuid; here it is always the object's uid, so a `uuid` in the
//! body is refused.

use axum::extract::Path;
use axum::response::Response;
use bytes::Bytes;
use http::StatusCode;
use ronghe_apiserver::engine::{DeleteOptions, WriteOptions};
use ronghe_apiserver::kinds::placement::API_VERSION;
use serde_json::{Value, json};

use super::model::{NAME_ANNOTATION, Pool};
use super::query::{self, Params};
use super::{
    Call, answer, api_fault, bad_request, coded, fault, generation_of, no_content, object_body,
    provider_not_found, with_location,
};
use crate::fault::{FaultResult, PlacementCode};

/// The longest provider name Placement takes.
const MAX_NAME: usize = 200;

/// A provider as Placement shows it at the caller's version.
pub(super) fn provider_json(call: &Call, pool: &Pool, index: usize) -> Value {
    let provider = &pool.providers[index];
    let url = format!("/placement/resource_providers/{}", provider.uuid);
    let mut rels = vec!["inventories", "usages"];
    for (minor, rel) in [(1, "aggregates"), (6, "traits"), (11, "allocations")] {
        if call.version.at_least(minor) {
            rels.push(rel);
        }
    }
    let mut links = vec![json!({"rel": "self", "href": url})];
    links.extend(
        rels.iter()
            .map(|rel| json!({"rel": rel, "href": format!("{url}/{rel}")})),
    );
    let mut body = json!({
        "uuid": provider.uuid,
        "name": provider.name,
        "generation": provider.generation,
        "links": links,
    });
    if call.version.at_least(14) {
        body["parent_provider_uuid"] = json!(pool.parent_uuid(index));
        body["root_provider_uuid"] = json!(pool.root_uuid(index));
    }
    body
}

/// `GET /resource_providers`, with Placement's filters: `name`, `uuid`, `member_of`
/// (1.3), `resources` (1.4: room for each amount on the provider itself), `in_tree` (1.14)
/// and `required` (1.18; forbidden traits from 1.22).
pub(super) async fn list(call: Call, params: Params) -> FaultResult<Response> {
    call.allow("placement:resource_providers:list")?;
    let version = call.version;
    params.only(|key| match key {
        "name" | "uuid" => true,
        "member_of" => version.at_least(3),
        "resources" => version.at_least(4),
        "in_tree" => version.at_least(14),
        "required" => version.at_least(18),
        _ => false,
    })?;
    let uuid_param = |key: &str| -> FaultResult<Option<String>> {
        params
            .one(key)?
            .map(|value| {
                query::canonical_uuid(value).ok_or_else(|| {
                    bad_request(format!(
                        "Invalid query string parameters: '{value}' is not a 'uuid'"
                    ))
                })
            })
            .transpose()
    };
    let name = params.one("name")?;
    let uuid = uuid_param("uuid")?;
    let in_tree = uuid_param("in_tree")?;
    let member_of = query::member_of(&params.all("member_of"), "member_of", version)?;
    let resources = params.one("resources")?.map(query::resources).transpose()?;
    let (required, forbidden) = params
        .one("required")?
        .map(|text| query::traits(text, version))
        .transpose()?
        .unwrap_or_default();

    let pool = call.pool().await?;
    if let Some(resources) = &resources {
        let known = call.known_classes(&pool).await?;
        if let Some(class) = resources.keys().find(|class| !known.contains(*class)) {
            return Err(bad_request(format!(
                "Invalid resource class in resources parameter: No such resource class {class}."
            )));
        }
    }
    if !required.is_empty() || !forbidden.is_empty() {
        let known = call.known_traits(&pool).await?;
        let unknown: Vec<&str> = required
            .iter()
            .chain(&forbidden)
            .filter(|name| !known.contains(*name))
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            return Err(bad_request(format!(
                "Invalid trait(s) in \"required\" parameter: No such trait(s): {}.",
                unknown.join(", ")
            )));
        }
    }
    let tree_root = match &in_tree {
        Some(uuid) => match pool.index_of_uuid(uuid) {
            Some(index) => Some(pool.root_index(index)),
            None => return Ok(answer(StatusCode::OK, json!({"resource_providers": []}))),
        },
        None => None,
    };
    let shown: Vec<Value> = (0..pool.providers.len())
        .filter(|&index| {
            let provider = &pool.providers[index];
            name.is_none_or(|name| provider.name == name)
                && uuid.as_ref().is_none_or(|uuid| &provider.uuid == uuid)
                && tree_root.is_none_or(|root| pool.root_index(index) == root)
                && provider.member_of_all(&member_of)
                && required.iter().all(|t| provider.traits.contains(t))
                && !forbidden.iter().any(|t| provider.traits.contains(t))
                && resources.as_ref().is_none_or(|resources| {
                    resources
                        .iter()
                        .all(|(class, amount)| provider.fits(class, *amount, 0))
                })
        })
        .map(|index| provider_json(&call, &pool, index))
        .collect();
    Ok(answer(StatusCode::OK, json!({"resource_providers": shown})))
}

pub(super) async fn show(call: Call, Path(uuid): Path<String>) -> FaultResult<Response> {
    call.allow("placement:resource_providers:show")?;
    let (pool, index) = call.provider(&uuid).await?;
    Ok(answer(StatusCode::OK, provider_json(&call, &pool, index)))
}

/// The `name` of a create or update body.
fn name_of(body: &serde_json::Map<String, Value>) -> FaultResult<String> {
    match body.get("name") {
        Some(Value::String(name)) if !name.is_empty() && name.chars().count() <= MAX_NAME => {
            Ok(name.clone())
        }
        Some(value) => Err(bad_request(format!(
            "JSON does not validate: {value} is not a valid name: a string of 1 to {MAX_NAME} characters"
        ))),
        None => Err(bad_request(
            "JSON does not validate: 'name' is a required property",
        )),
    }
}

/// The `parent_provider_uuid` of a body (1.14): absent, null, or a uuid.
fn parent_of(body: &serde_json::Map<String, Value>) -> FaultResult<Option<Option<String>>> {
    match body.get("parent_provider_uuid") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(text)) => query::canonical_uuid(text)
            .map(|uuid| Some(Some(uuid)))
            .ok_or_else(|| {
                bad_request(format!("JSON does not validate: '{text}' is not a 'uuid'"))
            }),
        Some(value) => Err(bad_request(format!(
            "JSON does not validate: {value} is not of type 'string', 'null'"
        ))),
    }
}

fn duplicate_name(name: &str) -> crate::fault::Fault {
    coded(
        StatusCode::CONFLICT,
        PlacementCode::DuplicateName,
        format!("Conflicting resource provider name: {name} already exists."),
    )
}

/// `POST /resource_providers`: 201 and a `Location` before 1.20, 200 with the provider
/// from 1.20.
pub(super) async fn create(call: Call, body: Bytes) -> FaultResult<Response> {
    call.allow("placement:resource_providers:create")?;
    let allowed: &[&str] = if call.version.at_least(14) {
        &["name", "uuid", "parent_provider_uuid"]
    } else {
        &["name", "uuid"]
    };
    let body = object_body(&body, allowed)?;
    let name = name_of(&body)?;
    if body.get("uuid").is_some_and(|uuid| !uuid.is_null()) {
        return Err(bad_request(format!(
            "Unable to create resource provider \"{name}\": Ronghe assigns resource provider uuids (the object's uid); create the provider without \"uuid\"."
        )));
    }
    let parent = parent_of(&body)?.flatten();
    let pool = call.pool().await?;
    if pool.by_name(&name).is_some() {
        return Err(duplicate_name(&name));
    }
    let parent_object = match &parent {
        Some(uuid) => Some(
            pool.by_uuid(uuid)
                .ok_or_else(|| {
                    bad_request(format!(
                        "Unable to create resource provider \"{name}\": parent provider UUID {uuid} does not exist."
                    ))
                })?
                .object_name
                .clone(),
        ),
        None => None,
    };
    let kind = call.kind("ResourceProvider")?;
    // Host names are valid object names; anything else gets a generated one.
    let named_as_object = kind.name_rule.validate(&name, false).is_empty()
        && !pool.providers.iter().any(|p| p.object_name == name);
    let metadata = if named_as_object {
        json!({"name": name})
    } else {
        json!({"generateName": "rp-", "annotations": {NAME_ANNOTATION: name}})
    };
    let mut spec = json!({});
    if let Some(parent) = parent_object {
        spec["parent"] = json!(parent);
    }
    let object = json!({
        "apiVersion": API_VERSION,
        "kind": "ResourceProvider",
        "metadata": metadata,
        "spec": spec,
    });
    let written = call
        .state
        .engine
        .create(&kind, None, object, &WriteOptions::default())
        .await
        .map_err(|error| match error.code() {
            409 => duplicate_name(&name),
            _ => api_fault(error),
        })?;
    let mut providers = pool.providers;
    let created = super::model::Provider::from_object(&written.object)
        .ok_or_else(|| fault(StatusCode::INTERNAL_SERVER_ERROR, "Internal error."))?;
    let uuid = created.uuid.clone();
    providers.push(created);
    let pool = Pool::new(providers);
    let location = call.url(&format!("/resource_providers/{uuid}"));
    let response = if call.version.at_least(20) {
        let index = pool
            .index_of_uuid(&uuid)
            .ok_or_else(|| provider_not_found(&uuid))?;
        answer(StatusCode::OK, provider_json(&call, &pool, index))
    } else {
        axum::response::IntoResponse::into_response(StatusCode::CREATED)
    };
    Ok(with_location(response, &location))
}

/// `PUT /resource_providers/{uuid}`: a new name, and (1.14) a parent for a provider that
/// has none (re-parenting is 1.37's, not served).
pub(super) async fn update(
    call: Call,
    Path(uuid): Path<String>,
    body: Bytes,
) -> FaultResult<Response> {
    call.allow("placement:resource_providers:update")?;
    let allowed: &[&str] = if call.version.at_least(14) {
        &["name", "parent_provider_uuid"]
    } else {
        &["name"]
    };
    let body = object_body(&body, allowed)?;
    let name = name_of(&body)?;
    let parent = parent_of(&body)?;
    let (pool, index) = call
        .update_provider(&uuid, None, |pool, index| {
            let provider = &pool.providers[index];
            if pool
                .by_name(&name)
                .is_some_and(|other| other.uuid != provider.uuid)
            {
                return Err(duplicate_name(&name));
            }
            let mut patch = json!({});
            if name != provider.name {
                let annotation = if name == provider.object_name {
                    Value::Null
                } else {
                    json!(name)
                };
                patch["metadata"] = json!({"annotations": {NAME_ANNOTATION: annotation}});
            }
            if let Some(wanted) = &parent {
                let current = pool.parent_uuid(index).map(str::to_owned);
                if *wanted != current {
                    let refuse = |why: &str| {
                        bad_request(format!(
                            "Unable to save resource provider {}: Object action update failed because: {why}",
                            provider.uuid
                        ))
                    };
                    // Moving or un-nesting a provider is 1.37's.
                    let (None, Some(wanted)) = (&current, wanted) else {
                        return Err(refuse("re-parenting a provider is not currently allowed."));
                    };
                    let new_parent = pool
                        .index_of_uuid(wanted)
                        .ok_or_else(|| refuse("parent provider UUID does not exist."))?;
                    if pool.is_ancestor_or_self(index, new_parent) {
                        return Err(refuse("creating loop in the provider tree is not allowed."));
                    }
                    patch["spec"] =
                        json!({"parent": pool.providers[new_parent].object_name});
                }
            }
            Ok((patch != json!({})).then_some(patch))
        })
        .await?;
    Ok(answer(StatusCode::OK, provider_json(&call, &pool, index)))
}

/// `DELETE /resource_providers/{uuid}`: 409 while it holds allocations or has children.
pub(super) async fn delete(call: Call, Path(uuid): Path<String>) -> FaultResult<Response> {
    call.allow("placement:resource_providers:delete")?;
    let kind = call.kind("ResourceProvider")?;
    for _ in 0..super::WRITE_ATTEMPTS {
        let (pool, index) = call.provider(&uuid).await?;
        let provider = &pool.providers[index];
        if !provider.allocations.is_empty() {
            return Err(coded(
                StatusCode::CONFLICT,
                PlacementCode::ProviderInUse,
                format!(
                    "Unable to delete resource provider {}: Resource provider has allocations.",
                    provider.uuid
                ),
            ));
        }
        if pool.has_children(index) {
            return Err(coded(
                StatusCode::CONFLICT,
                PlacementCode::ProviderCannotDeleteParent,
                format!(
                    "Unable to delete parent resource provider {}: It has child resource providers.",
                    provider.uuid
                ),
            ));
        }
        // Only as read: an allocation made meanwhile makes this a conflict, and a retry.
        let options = DeleteOptions {
            precondition_uid: Some(provider.uuid.clone()),
            precondition_resource_version: Some(provider.generation.to_string()),
            ..DeleteOptions::default()
        };
        match call
            .state
            .engine
            .delete(&kind, None, &provider.object_name, &options)
            .await
        {
            Ok(_) => return Ok(no_content()),
            Err(error) if error.code() == 404 => return Err(provider_not_found(&uuid)),
            Err(error) if error.code() == 409 => continue,
            Err(error) => return Err(api_fault(error)),
        }
    }
    Err(super::generation_conflict())
}

fn aggregates_json(call: &Call, pool: &Pool, index: usize) -> Value {
    let provider = &pool.providers[index];
    let mut body = json!({"aggregates": provider.aggregates});
    if call.version.at_least(19) {
        body["resource_provider_generation"] = json!(provider.generation);
    }
    body
}

/// `GET /resource_providers/{uuid}/aggregates` (1.1; with the generation from 1.19).
pub(super) async fn aggregates(call: Call, Path(uuid): Path<String>) -> FaultResult<Response> {
    call.since(1)?;
    call.allow("placement:resource_providers:aggregates:list")?;
    let (pool, index) = call.provider(&uuid).await?;
    Ok(answer(StatusCode::OK, aggregates_json(&call, &pool, index)))
}

/// `PUT /resource_providers/{uuid}/aggregates`: a bare list before 1.19, then
/// `{"aggregates": [...], "resource_provider_generation": N}`.
pub(super) async fn set_aggregates(
    call: Call,
    Path(uuid): Path<String>,
    body: Bytes,
) -> FaultResult<Response> {
    call.since(1)?;
    call.allow("placement:resource_providers:aggregates:update")?;
    let (list, generation) = if call.version.at_least(19) {
        let body = object_body(&body, &["aggregates", "resource_provider_generation"])?;
        let list = body.get("aggregates").cloned().ok_or_else(|| {
            bad_request("JSON does not validate: 'aggregates' is a required property")
        })?;
        (list, Some(generation_of(&body)?))
    } else {
        let list: Value = serde_json::from_slice(&body)
            .map_err(|error| bad_request(format!("Malformed JSON: {error}")))?;
        (list, None)
    };
    let Value::Array(items) = list else {
        return Err(bad_request(
            "JSON does not validate: the aggregates are not of type 'array'",
        ));
    };
    let mut aggregates = Vec::new();
    for item in &items {
        let uuid = item
            .as_str()
            .and_then(query::canonical_uuid)
            .ok_or_else(|| {
                bad_request(format!("JSON does not validate: {item} is not a 'uuid'"))
            })?;
        if !aggregates.contains(&uuid) {
            aggregates.push(uuid);
        }
    }
    aggregates.sort();
    let (pool, index) = call
        .update_provider(&uuid, generation, |pool, index| {
            // Both sorted and free of duplicates.
            let same = pool.providers[index]
                .aggregates
                .iter()
                .eq(aggregates.iter());
            Ok((!same).then(|| json!({"spec": {"aggregates": aggregates}})))
        })
        .await?;
    Ok(answer(StatusCode::OK, aggregates_json(&call, &pool, index)))
}
