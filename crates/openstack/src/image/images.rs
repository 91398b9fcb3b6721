//! `/v2/images` and `/v2/images/{id}`: list, create, show, patch, delete, tags, and the
//! admin's deactivate and reactivate.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use ronghe_apiserver::engine::{Target as EngineTarget, WriteOptions};
use ronghe_images::model::{self, API_VERSION, KIND, MAX_TEXT, Visibility};
use serde_json::{Value, json};

use super::query::ListQuery;
use super::view::{self, Image, image_json};
use super::{Caller, bad_request, conflict, engine_fault, forbidden, glance, not_found, now};
use crate::fault::{Fault, FaultResult};

/// The most tags an image may have (Glance's `image_tag_quota`).
const MAX_TAGS: usize = 128;

/// A JSON body, or Glance's 400.
fn json_body(body: &Bytes) -> FaultResult<Value> {
    serde_json::from_slice(body)
        .map_err(|error| bad_request(format!("Malformed JSON in request body: {error}")))
}

/// An image's JSON for the caller.
fn show_json(caller: &Caller, image: &Image) -> Value {
    image_json(image, &caller.project_id(&image.namespace))
}

/// Whether an image belongs in the caller's listing, by Glance's rules: every image for
/// cloud readers; else the caller's own, public ones, community ones when asked for them
/// (`visibility=community` or `all`), and shared ones whose membership has the status
/// asked for (`accepted` by default).
fn listed(caller: &Caller, query: &ListQuery, image: &Image) -> bool {
    let visibility = image.spec.visibility();
    if let Some(wanted) = query.visibility.as_deref()
        && wanted != "all"
        && wanted != visibility.as_str()
    {
        return false;
    }
    if caller.reads_everything() {
        return true;
    }
    let project = caller.namespace();
    if project == Some(image.namespace.as_str()) {
        return true;
    }
    match visibility {
        Visibility::Public => true,
        Visibility::Community => query.visibility.is_some(),
        Visibility::Private => false,
        Visibility::Shared => project
            .and_then(|p| image.spec.member(p))
            .is_some_and(|m| query.member_status == "all" || m.status == query.member_status),
    }
}

pub(super) async fn list(
    caller: Caller,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response, Fault> {
    caller.allow("get_images", None)?;
    let query = ListQuery::parse(pairs)?;
    let mut owners: HashMap<String, String> = HashMap::new();
    let mut images: Vec<Image> = Vec::new();
    for image in caller.all_images().await? {
        if !listed(&caller, &query, &image) {
            continue;
        }
        let owner = owners
            .entry(image.namespace.clone())
            .or_insert_with(|| caller.project_id(&image.namespace))
            .clone();
        if query.matches(&image, &owner) {
            images.push(image);
        }
    }
    query.sort(&mut images);
    let (page, next) = query.page(images)?;
    let items: Vec<Value> = page
        .iter()
        .map(|image| image_json(image, &owners[&image.namespace]))
        .collect();
    let mut body = json!({"images": items, "schema": "/v2/schemas/images", "first": "/v2/images"});
    if let Some(next) = next {
        body["next"] = json!(next);
    }
    Ok(Json(body).into_response())
}

pub(super) async fn create(caller: Caller, body: Bytes) -> Result<Response, Fault> {
    let new = view::new_image(&json_body(&body)?)?;
    let namespace = match &new.owner {
        Some(owner) => {
            let (namespace, _) = caller
                .project_of(owner)
                .await?
                .ok_or_else(|| bad_request(format!("Owner {owner} is not a project.")))?;
            if Some(namespace.as_str()) != caller.namespace() && !caller.is_admin() {
                return Err(forbidden(format!(
                    "You are not permitted to create images owned by '{owner}'."
                )));
            }
            namespace
        }
        None => caller
            .namespace()
            .map(str::to_owned)
            .ok_or_else(|| forbidden("Creating an image needs a token scoped to a project."))?,
    };
    caller.allow("add_image", Some(&namespace))?;
    allow_visibility(&caller, new.spec.visibility(), &namespace)?;
    let id = new
        .id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    if caller.lookup(&id).await?.is_some() {
        return Err(conflict(format!(
            "Image with identifier {id} already exists!"
        )));
    }
    let object = json!({
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": id, "namespace": namespace},
        "spec": new.spec,
    });
    let kind = caller.kind()?;
    let written = caller
        .state
        .engine
        .create(&kind, Some(&namespace), object, &WriteOptions::default())
        .await
        .map_err(|error| {
            if error.code() == 409 {
                conflict(format!("Image with identifier {id} already exists!"))
            } else {
                engine_fault(error)
            }
        })?;
    let image = Image::from_object(written.object);
    tracing::info!(id = %image.id, namespace = %image.namespace, name = %image.spec.name, "created image");
    Ok((StatusCode::CREATED, Json(show_json(&caller, &image))).into_response())
}

/// Making an image public takes a cloud admin; community, a member of its project.
fn allow_visibility(caller: &Caller, visibility: Visibility, namespace: &str) -> FaultResult<()> {
    match visibility {
        Visibility::Public => caller.allow("publicize_image", Some(namespace)),
        Visibility::Community => caller.allow("communitize_image", Some(namespace)),
        Visibility::Shared | Visibility::Private => Ok(()),
    }
}

pub(super) async fn show(caller: Caller, Path(id): Path<String>) -> Result<Response, Fault> {
    caller.allow("get_image", None)?;
    let image = caller.find(&id).await?;
    Ok(Json(show_json(&caller, &image)).into_response())
}

pub(super) async fn update(
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Fault> {
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !content_type.starts_with(super::patch::MEDIA_TYPE) {
        return Err(glance(Fault::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "Unsupported Content-Type {content_type:?}: image patches are {}.",
                super::patch::MEDIA_TYPE
            ),
        )));
    }
    let operations = json_body(&body)?;
    let image = caller
        .update(&id, EngineTarget::Main, |caller, image| {
            caller.allow("modify_image", Some(&image.namespace))?;
            let patched = super::patch::apply(&image.spec, &image.status.status, &operations)?;
            if patched.visibility != image.spec.visibility {
                allow_visibility(caller, patched.visibility(), &image.namespace)?;
            }
            if patched == image.spec {
                return Ok(false);
            }
            image.spec = patched;
            Ok(true)
        })
        .await?;
    Ok(Json(show_json(&caller, &image)).into_response())
}

pub(super) async fn delete(caller: Caller, Path(id): Path<String>) -> Result<Response, Fault> {
    let image = caller.find(&id).await?;
    caller.allow("delete_image", Some(&image.namespace))?;
    if image.spec.protected {
        return Err(forbidden(format!(
            "Image {id} is protected and cannot be deleted."
        )));
    }
    caller.delete_object(&image).await?;
    tracing::info!(id = %image.id, namespace = %image.namespace, "deleted image");
    caller.release_blobs().await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn add_tag(
    caller: Caller,
    Path((id, tag)): Path<(String, String)>,
) -> Result<Response, Fault> {
    if tag.is_empty() || tag.len() > MAX_TEXT {
        return Err(bad_request(format!(
            "Invalid tag {tag:?}: a tag is 1 to {MAX_TEXT} characters."
        )));
    }
    caller
        .update(&id, EngineTarget::Main, |caller, image| {
            caller.allow("modify_image", Some(&image.namespace))?;
            if image.spec.tags.contains(&tag) {
                return Ok(false);
            }
            if image.spec.tags.len() >= MAX_TAGS {
                return Err(glance(Fault::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("Maximum number of tags ({MAX_TAGS}) exceeded."),
                )));
            }
            image.spec.tags.push(tag.clone());
            Ok(true)
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn delete_tag(
    caller: Caller,
    Path((id, tag)): Path<(String, String)>,
) -> Result<Response, Fault> {
    caller
        .update(&id, EngineTarget::Main, |caller, image| {
            caller.allow("modify_image", Some(&image.namespace))?;
            let before = image.spec.tags.len();
            image.spec.tags.retain(|t| *t != tag);
            if image.spec.tags.len() == before {
                return Err(not_found(format!("Tag {tag} not found.")));
            }
            Ok(true)
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST .../actions/deactivate`: an active image's data can no longer be downloaded
/// (except by admins) until it is reactivated.
pub(super) async fn deactivate(caller: Caller, Path(id): Path<String>) -> Result<Response, Fault> {
    set_active(caller, id, false).await
}

pub(super) async fn reactivate(caller: Caller, Path(id): Path<String>) -> Result<Response, Fault> {
    set_active(caller, id, true).await
}

async fn set_active(caller: Caller, id: String, active: bool) -> Result<Response, Fault> {
    let (operation, from, to) = if active {
        ("reactivate", "deactivated", model::STATUS_ACTIVE)
    } else {
        ("deactivate", model::STATUS_ACTIVE, "deactivated")
    };
    caller
        .update(&id, EngineTarget::Status, |caller, image| {
            caller.allow(operation, Some(&image.namespace))?;
            if image.status.status == to {
                return Ok(false);
            }
            if image.status.status != from {
                return Err(forbidden(format!(
                    "Not allowed to {operation} an image in status '{}'.",
                    image.status.status
                )));
            }
            image.status.status = to.to_owned();
            image.status.updated_at = Some(now());
            Ok(true)
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
