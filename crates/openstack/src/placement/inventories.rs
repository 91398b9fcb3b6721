//! A provider's inventories (`/resource_providers/{uuid}/inventories[/{class}]`) and
//! usages. Inventories live in the provider's `spec.inventories`; a write names the
//! generation it read (except creating or deleting one class, as in Placement), and taking
//! away a class that allocations hold is a 409.

use std::collections::BTreeMap;

use axum::extract::Path;
use axum::response::Response;
use bytes::Bytes;
use http::StatusCode;
use ronghe_apiserver::kinds::placement::{Inventory, is_placement_name};
use serde_json::{Map, Value, json};

use super::model::{Pool, Provider, inventory_json};
use super::{
    Call, MAX_INT, answer, bad_request, coded, fault, generation_of, no_content, object_body,
    with_location,
};
use crate::fault::{Fault, FaultResult, PlacementCode};

/// The fields of one inventory in a body.
const FIELDS: &[&str] = &[
    "total",
    "reserved",
    "min_unit",
    "max_unit",
    "step_size",
    "allocation_ratio",
];

/// Reads one inventory from a body, with Placement's defaults for what is left out (the
/// largest unit too, where an agent's inventories default it to the total). `class` is
/// for messages.
fn inventory_from(
    map: &Map<String, Value>,
    class: &str,
    provider: &str,
    version: super::Microversion,
) -> FaultResult<Inventory> {
    let integer = |key: &str, min: i64, default: i64| -> FaultResult<i64> {
        let value = match map.get(key) {
            None => return Ok(default),
            Some(value) => value,
        };
        value
            .as_i64()
            .filter(|n| (min..=MAX_INT).contains(n))
            .ok_or_else(|| {
                bad_request(format!(
                    "JSON does not validate: {key} of {class} must be an integer from {min} to {MAX_INT}, not {value}"
                ))
            })
    };
    if !map.contains_key("total") {
        return Err(bad_request(
            "JSON does not validate: 'total' is a required property",
        ));
    }
    let total = integer("total", 1, 0)?;
    let ratio = match map.get("allocation_ratio") {
        None => 1.0,
        Some(value) => value
            .as_f64()
            .filter(|ratio| ratio.is_finite() && *ratio >= 0.0 && *ratio <= f64::from(f32::MAX))
            .ok_or_else(|| {
                bad_request(format!(
                    "JSON does not validate: allocation_ratio of {class} must be a number from 0, not {value}"
                ))
            })?,
    };
    let inventory = Inventory {
        total,
        reserved: integer("reserved", 0, 0)?,
        allocation_ratio: ratio,
        min_unit: integer("min_unit", 1, 1)?,
        max_unit: Some(integer("max_unit", 1, MAX_INT)?),
        step_size: integer("step_size", 1, 1)?,
    };
    // 1.26 lets everything be reserved; before, something must be left to allocate.
    let (bad, what) = if version.at_least(26) {
        (inventory.reserved > inventory.total, "greater than")
    } else {
        (
            inventory.reserved >= inventory.total,
            "greater than or equal to",
        )
    };
    if bad {
        return Err(bad_request(format!(
            "Unable to update inventory for resource provider {provider}: Invalid inventory for '{class}' on resource provider '{provider}'. The reserved value is {what} total."
        )));
    }
    Ok(inventory)
}

/// The inventory as a merge patch value: every field, `maxUnit` cleared when not set.
fn stored(inventory: &Inventory) -> Value {
    let mut value = serde_json::to_value(inventory).unwrap_or(Value::Null);
    if inventory.max_unit.is_none() {
        value["maxUnit"] = Value::Null;
    }
    value
}

fn inventories_json(provider: &Provider) -> Value {
    let inventories: Map<String, Value> = provider
        .inventories
        .iter()
        .map(|(class, inventory)| (class.clone(), inventory_json(inventory)))
        .collect();
    json!({
        "inventories": inventories,
        "resource_provider_generation": provider.generation,
    })
}

fn one_json(provider: &Provider, class: &str) -> Value {
    let mut body = provider
        .inventories
        .get(class)
        .map(inventory_json)
        .unwrap_or_else(|| json!({}));
    body["resource_provider_generation"] = json!(provider.generation);
    body
}

/// Refuses removing a class that allocations hold.
fn check_not_in_use(provider: &Provider, class: &str) -> FaultResult<()> {
    if provider.used.get(class).copied().unwrap_or(0) > 0 {
        return Err(coded(
            StatusCode::CONFLICT,
            PlacementCode::InventoryInUse,
            format!(
                "update conflict: Inventory for '{class}' on resource provider '{}' in use.",
                provider.uuid
            ),
        ));
    }
    Ok(())
}

/// Refuses classes nobody knows.
async fn check_known(
    call: &Call,
    pool: &Pool,
    provider: &str,
    classes: &[&String],
) -> FaultResult<()> {
    let known = call.known_classes(pool).await?;
    if let Some(class) = classes.iter().find(|class| !known.contains(**class)) {
        return Err(bad_request(format!(
            "Unknown resource class in inventory for resource provider {provider}: No such resource class {class}."
        )));
    }
    Ok(())
}

pub(super) async fn list(call: Call, Path(uuid): Path<String>) -> FaultResult<Response> {
    call.allow("placement:resource_providers:inventories:list")?;
    let (pool, index) = call.provider(&uuid).await?;
    Ok(answer(
        StatusCode::OK,
        inventories_json(&pool.providers[index]),
    ))
}

pub(super) async fn show(
    call: Call,
    Path((uuid, class)): Path<(String, String)>,
) -> FaultResult<Response> {
    call.allow("placement:resource_providers:inventories:show")?;
    let (pool, index) = call.provider(&uuid).await?;
    let provider = &pool.providers[index];
    if !provider.inventories.contains_key(&class) {
        return Err(fault(
            StatusCode::NOT_FOUND,
            format!("No inventory of class {class} for {}", provider.uuid),
        ));
    }
    Ok(answer(StatusCode::OK, one_json(provider, &class)))
}

/// `PUT .../inventories`: the whole set, at the generation the client read.
pub(super) async fn replace_all(
    call: Call,
    Path(uuid): Path<String>,
    body: Bytes,
) -> FaultResult<Response> {
    call.allow("placement:resource_providers:inventories:update")?;
    let body = object_body(&body, &["inventories", "resource_provider_generation"])?;
    let generation = generation_of(&body)?;
    let given = body
        .get("inventories")
        .and_then(Value::as_object)
        .ok_or_else(|| {
            bad_request("JSON does not validate: 'inventories' is a required property")
        })?;
    let (pool, index) = call.provider(&uuid).await?;
    let provider_uuid = pool.providers[index].uuid.clone();
    let mut wanted = BTreeMap::new();
    for (class, value) in given {
        if !is_placement_name(class) {
            return Err(bad_request(format!(
                "JSON does not validate: '{class}' does not match '^[A-Z0-9_]+$'"
            )));
        }
        let fields = value.as_object().ok_or_else(|| {
            bad_request(format!(
                "JSON does not validate: {value} is not of type 'object'"
            ))
        })?;
        if let Some(key) = fields.keys().find(|key| !FIELDS.contains(&key.as_str())) {
            return Err(bad_request(format!(
                "JSON does not validate: Additional properties are not allowed ('{key}' was unexpected)"
            )));
        }
        wanted.insert(
            class.clone(),
            inventory_from(fields, class, &provider_uuid, call.version)?,
        );
    }
    check_known(
        &call,
        &pool,
        &provider_uuid,
        &wanted.keys().collect::<Vec<_>>(),
    )
    .await?;
    let (pool, index) = call
        .update_provider(&uuid, Some(generation), |pool, index| {
            let provider = &pool.providers[index];
            let mut patch = Map::new();
            for class in provider.inventories.keys() {
                if !wanted.contains_key(class) {
                    check_not_in_use(provider, class)?;
                    patch.insert(class.clone(), Value::Null);
                }
            }
            for (class, inventory) in &wanted {
                patch.insert(class.clone(), stored(inventory));
            }
            Ok(Some(json!({"spec": {"inventories": patch}})))
        })
        .await?;
    Ok(answer(
        StatusCode::OK,
        inventories_json(&pool.providers[index]),
    ))
}

/// `POST .../inventories`: one more class (no generation, as in Placement); 409 if the
/// provider has it already.
pub(super) async fn create(
    call: Call,
    Path(uuid): Path<String>,
    body: Bytes,
) -> FaultResult<Response> {
    call.allow("placement:resource_providers:inventories:create")?;
    let mut allowed = FIELDS.to_vec();
    allowed.push("resource_class");
    let body = object_body(&body, &allowed)?;
    let class = match body.get("resource_class") {
        Some(Value::String(class)) if is_placement_name(class) => class.clone(),
        Some(value) => {
            return Err(bad_request(format!(
                "JSON does not validate: {value} does not match '^[A-Z0-9_]+$'"
            )));
        }
        None => {
            return Err(bad_request(
                "JSON does not validate: 'resource_class' is a required property",
            ));
        }
    };
    let (pool, index) = call.provider(&uuid).await?;
    let provider_uuid = pool.providers[index].uuid.clone();
    let inventory = inventory_from(&body, &class, &provider_uuid, call.version)?;
    check_known(&call, &pool, &provider_uuid, &[&class]).await?;
    let (pool, index) = call
        .update_provider(&uuid, None, |pool, index| {
            let provider = &pool.providers[index];
            if provider.inventories.contains_key(&class) {
                return Err(coded(
                    StatusCode::CONFLICT,
                    PlacementCode::ConcurrentUpdate,
                    format!(
                        "Update conflict: Inventory for '{class}' on resource provider '{}' already exists.",
                        provider.uuid
                    ),
                ));
            }
            Ok(Some(json!({"spec": {"inventories": {class.clone(): stored(&inventory)}}})))
        })
        .await?;
    let provider = &pool.providers[index];
    let location = call.url(&format!(
        "/resource_providers/{}/inventories/{class}",
        provider.uuid
    ));
    Ok(with_location(
        answer(StatusCode::CREATED, one_json(provider, &class)),
        &location,
    ))
}

/// `PUT .../inventories/{class}`: one class the provider has, at the generation read.
pub(super) async fn update(
    call: Call,
    Path((uuid, class)): Path<(String, String)>,
    body: Bytes,
) -> FaultResult<Response> {
    call.allow("placement:resource_providers:inventories:update")?;
    let mut allowed = FIELDS.to_vec();
    allowed.push("resource_provider_generation");
    let body = object_body(&body, &allowed)?;
    let generation = generation_of(&body)?;
    let (pool, index) = call.provider(&uuid).await?;
    let provider_uuid = pool.providers[index].uuid.clone();
    let inventory = inventory_from(&body, &class, &provider_uuid, call.version)?;
    let (pool, index) = call
        .update_provider(&uuid, Some(generation), |pool, index| {
            let provider = &pool.providers[index];
            if !provider.inventories.contains_key(&class) {
                return Err(bad_request(format!(
                    "No inventory record with resource class for resource provider {}: {class}",
                    provider.uuid
                )));
            }
            Ok(Some(
                json!({"spec": {"inventories": {class.clone(): stored(&inventory)}}}),
            ))
        })
        .await?;
    Ok(answer(
        StatusCode::OK,
        one_json(&pool.providers[index], &class),
    ))
}

/// `DELETE .../inventories/{class}`: 409 while allocations hold it.
pub(super) async fn delete(
    call: Call,
    Path((uuid, class)): Path<(String, String)>,
) -> FaultResult<Response> {
    call.allow("placement:resource_providers:inventories:delete")?;
    call.update_provider(&uuid, None, |pool, index| {
        let provider = &pool.providers[index];
        if !provider.inventories.contains_key(&class) {
            return Err(fault(
                StatusCode::NOT_FOUND,
                format!("No inventory of class {class} found for delete"),
            ));
        }
        check_not_in_use(provider, &class).map_err(in_use_on_delete(&class))?;
        Ok(Some(
            json!({"spec": {"inventories": {class.clone(): null}}}),
        ))
    })
    .await?;
    Ok(no_content())
}

/// Placement's wording for a delete refused because of allocations.
fn in_use_on_delete(class: &str) -> impl Fn(Fault) -> Fault + '_ {
    move |fault| Fault {
        message: format!(
            "Unable to delete inventory of class {class}: {}",
            fault.message
        ),
        ..fault
    }
}

/// `DELETE .../inventories` (1.5): every class, unless allocations hold one.
pub(super) async fn delete_all(call: Call, Path(uuid): Path<String>) -> FaultResult<Response> {
    if !call.version.at_least(5) {
        return Err(fault(
            StatusCode::METHOD_NOT_ALLOWED,
            "The method specified is not allowed for this resource.",
        ));
    }
    call.allow("placement:resource_providers:inventories:delete")?;
    call.update_provider(&uuid, None, |pool, index| {
        let provider = &pool.providers[index];
        if provider.inventories.is_empty() {
            return Ok(None);
        }
        let mut patch = Map::new();
        for class in provider.inventories.keys() {
            check_not_in_use(provider, class)?;
            patch.insert(class.clone(), Value::Null);
        }
        Ok(Some(json!({"spec": {"inventories": patch}})))
    })
    .await?;
    Ok(no_content())
}

/// `GET .../usages`: what allocations hold of every class the provider has, in whole
/// units (a fraction of a VCPU counts as one).
pub(super) async fn usages(call: Call, Path(uuid): Path<String>) -> FaultResult<Response> {
    call.allow("placement:resource_providers:usages")?;
    let (pool, index) = call.provider(&uuid).await?;
    let provider = &pool.providers[index];
    let usages: Map<String, Value> = provider
        .inventories
        .keys()
        .chain(provider.used.keys())
        .map(|class| (class.clone(), json!(provider.used_units(class))))
        .collect();
    Ok(answer(
        StatusCode::OK,
        json!({"usages": usages, "resource_provider_generation": provider.generation}),
    ))
}
