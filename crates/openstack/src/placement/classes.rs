//! Resource classes (1.2): the standard ones, custom ones created here as ResourceClass
//! objects, and any found in an inventory.
//!
//! `PUT /resource_classes/{name}` creates (1.7) or, before 1.7, renames a custom class;
//! a class in some inventory is not renamed, since inventories name classes by name.

use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::StatusCode;
use ronghe_apiserver::kinds::placement::is_custom_name;
use serde_json::{Value, json};

use super::standard::is_standard_class;
use super::{Call, answer, bad_request, fault, no_content, object_body, with_location};
use crate::fault::{Fault, FaultResult};

fn class_json(name: &str) -> Value {
    json!({
        "name": name,
        "links": [{"rel": "self", "href": format!("/placement/resource_classes/{name}")}],
    })
}

fn invalid_name() -> Fault {
    bad_request(
        "JSON does not validate: the resource class name must start with \"CUSTOM_\", use only \"A\"-\"Z\", \"0\"-\"9\" and \"_\", and be at most 255 characters",
    )
}

fn no_such_class(name: &str) -> Fault {
    fault(
        StatusCode::NOT_FOUND,
        format!("No such resource class {name}."),
    )
}

fn already_exists(name: &str) -> Fault {
    fault(
        StatusCode::CONFLICT,
        format!("Conflicting resource class already exists: {name}"),
    )
}

pub(super) async fn list(call: Call) -> FaultResult<Response> {
    call.since(2)?;
    call.allow("placement:resource_classes:list")?;
    let pool = call.pool().await?;
    let known = call.known_classes(&pool).await?;
    // Standard classes first, in os-resource-classes' order, then the others by name.
    let standard = super::standard::RESOURCE_CLASSES
        .iter()
        .map(|name| (*name).to_owned());
    let others = known
        .iter()
        .filter(|name| !is_standard_class(name))
        .cloned();
    let classes: Vec<Value> = standard
        .chain(others)
        .map(|name| class_json(&name))
        .collect();
    Ok(answer(StatusCode::OK, json!({"resource_classes": classes})))
}

pub(super) async fn show(call: Call, Path(name): Path<String>) -> FaultResult<Response> {
    call.since(2)?;
    call.allow("placement:resource_classes:show")?;
    let pool = call.pool().await?;
    if call.known_classes(&pool).await?.contains(&name) {
        Ok(answer(StatusCode::OK, class_json(&name)))
    } else {
        Err(no_such_class(&name))
    }
}

/// `POST /resource_classes` with `{"name": "CUSTOM_..."}`: 201, 409 when it exists.
pub(super) async fn create(call: Call, body: Bytes) -> FaultResult<Response> {
    call.since(2)?;
    call.allow("placement:resource_classes:create")?;
    let body = object_body(&body, &["name"])?;
    let name = match body.get("name") {
        Some(Value::String(name)) if is_custom_name(name) => name.clone(),
        _ => return Err(invalid_name()),
    };
    let pool = call.pool().await?;
    if call.known_classes(&pool).await?.contains(&name)
        || !call.create_custom("ResourceClass", &name).await?
    {
        return Err(already_exists(&name));
    }
    Ok(with_location(
        StatusCode::CREATED.into_response(),
        &call.url(&format!("/resource_classes/{name}")),
    ))
}

/// `PUT /resource_classes/CUSTOM_...`: from 1.7 a bodiless create (201, or 204 when it
/// exists); before, a rename to the body's `name`.
pub(super) async fn put(
    call: Call,
    Path(name): Path<String>,
    body: Bytes,
) -> FaultResult<Response> {
    call.since(2)?;
    call.allow("placement:resource_classes:update")?;
    if call.version.at_least(7) {
        if !is_custom_name(&name) {
            return Err(invalid_name());
        }
        let status = if call.create_custom("ResourceClass", &name).await? {
            StatusCode::CREATED
        } else {
            StatusCode::NO_CONTENT
        };
        return Ok(with_location(
            status.into_response(),
            &call.url(&format!("/resource_classes/{name}")),
        ));
    }
    let body = object_body(&body, &["name"])?;
    let new_name = match body.get("name") {
        Some(Value::String(new_name)) if is_custom_name(new_name) => new_name.clone(),
        _ => return Err(invalid_name()),
    };
    if is_standard_class(&name) {
        return Err(bad_request(format!(
            "Cannot update standard resource class {name}"
        )));
    }
    let pool = call.pool().await?;
    if !call.custom_names("ResourceClass").await?.contains(&name) {
        return Err(no_such_class(&name));
    }
    if pool.classes().contains(name.as_str()) {
        return Err(fault(
            StatusCode::CONFLICT,
            format!("Cannot rename resource class {name}: inventories use it."),
        ));
    }
    if call.known_classes(&pool).await?.contains(&new_name)
        || !call.create_custom("ResourceClass", &new_name).await?
    {
        return Err(already_exists(&new_name));
    }
    call.delete_custom("ResourceClass", &name).await?;
    Ok(answer(StatusCode::OK, class_json(&new_name)))
}

/// `DELETE /resource_classes/CUSTOM_...`: not a standard one, nor one in an inventory.
pub(super) async fn delete(call: Call, Path(name): Path<String>) -> FaultResult<Response> {
    call.since(2)?;
    call.allow("placement:resource_classes:delete")?;
    if is_standard_class(&name) {
        return Err(bad_request(format!(
            "Cannot delete standard resource class {name}: standard classes are built in"
        )));
    }
    let pool = call.pool().await?;
    if pool.classes().contains(name.as_str()) {
        return Err(fault(
            StatusCode::CONFLICT,
            format!(
                "Unable to delete resource class {name}. The resource class is in use in inventory."
            ),
        ));
    }
    if call.delete_custom("ResourceClass", &name).await? {
        Ok(no_content())
    } else {
        Err(no_such_class(&name))
    }
}
