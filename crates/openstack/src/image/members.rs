//! `/v2/images/{id}/members`: the projects a shared image is shared with. The owner adds
//! and removes members (by project id, or name); each member accepts or rejects the
//! image for itself, which decides whether it shows in its default listing. A member
//! sees only its own membership; the owner sees all.

use axum::Json;
use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::StatusCode;
use ronghe_apiserver::engine::Target as EngineTarget;
use ronghe_images::model::{ImageMember, MEMBER_STATUSES, Visibility};
use serde_json::{Value, json};

use super::view::{Image, member_json};
use super::{Caller, bad_request, conflict, forbidden, not_found, now};
use crate::fault::{Fault, FaultResult};

/// The most members an image may have (Glance's `image_member_quota`).
const MAX_MEMBERS: usize = 128;

fn shared_only(image: &Image) -> FaultResult<()> {
    if image.spec.visibility() == Visibility::Shared {
        Ok(())
    } else {
        Err(forbidden("Only shared images have members."))
    }
}

/// Whether the caller may see every membership of the image (its owner, or a cloud
/// reader), not only its own.
fn sees_all_members(caller: &Caller, image: &Image) -> bool {
    caller.reads_everything() || caller.namespace() == Some(image.namespace.as_str())
}

fn body_field(body: &Bytes, key: &str) -> FaultResult<String> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|error| bad_request(format!("Malformed JSON in request body: {error}")))?;
    value
        .get(key)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| bad_request(format!("'{key}' is a required property")))
}

fn member_view(caller: &Caller, image: &Image, member: &ImageMember) -> Value {
    member_json(&image.id, &caller.project_id(&member.project), member)
}

pub(super) async fn list(caller: Caller, Path(id): Path<String>) -> Result<Response, Fault> {
    caller.allow("get_members", None)?;
    let image = caller.find(&id).await?;
    shared_only(&image)?;
    let all = sees_all_members(&caller, &image);
    let members: Vec<Value> = image
        .spec
        .members
        .iter()
        .filter(|m| all || Some(m.project.as_str()) == caller.namespace())
        .map(|m| member_view(&caller, &image, m))
        .collect();
    Ok(Json(json!({"members": members, "schema": "/v2/schemas/members"})).into_response())
}

/// The namespace of the project a member id names.
async fn member_namespace(caller: &Caller, member: &str) -> FaultResult<String> {
    caller
        .project_of(member)
        .await?
        .map(|(namespace, _)| namespace)
        .ok_or_else(|| bad_request(format!("Member {member} is not a project.")))
}

pub(super) async fn create(
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Fault> {
    let member = body_field(&body, "member")?;
    let project = member_namespace(&caller, &member).await?;
    let image = caller
        .update(&id, EngineTarget::Main, |caller, image| {
            caller.allow("add_member", Some(&image.namespace))?;
            shared_only(image)?;
            if image.spec.member(&project).is_some() {
                return Err(conflict(format!(
                    "Member {member} already associated with image {id}"
                )));
            }
            if image.spec.members.len() >= MAX_MEMBERS {
                return Err(super::glance(Fault::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("Maximum number of members ({MAX_MEMBERS}) exceeded."),
                )));
            }
            let at = now();
            image.spec.members.push(ImageMember {
                project: project.clone(),
                status: "pending".into(),
                created_at: at.clone(),
                updated_at: at,
            });
            Ok(true)
        })
        .await?;
    let added = image.spec.member(&project).cloned().unwrap_or_default();
    tracing::info!(id = %image.id, member = %project, "shared image with a project");
    Ok(Json(member_view(&caller, &image, &added)).into_response())
}

/// The membership a path names, if the caller may see it.
fn visible_member<'a>(
    caller: &Caller,
    image: &'a Image,
    project: &str,
    member: &str,
) -> FaultResult<&'a ImageMember> {
    image
        .spec
        .member(project)
        .filter(|_| sees_all_members(caller, image) || caller.namespace() == Some(project))
        .ok_or_else(|| not_found(format!("{member} is not a member of image {}", image.id)))
}

pub(super) async fn show(
    caller: Caller,
    Path((id, member)): Path<(String, String)>,
) -> Result<Response, Fault> {
    caller.allow("get_member", None)?;
    let image = caller.find(&id).await?;
    shared_only(&image)?;
    let project = member_namespace(&caller, &member).await?;
    let found = visible_member(&caller, &image, &project, &member)?;
    Ok(Json(member_view(&caller, &image, found)).into_response())
}

pub(super) async fn update(
    caller: Caller,
    Path((id, member)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, Fault> {
    let status = body_field(&body, "status")?;
    if !MEMBER_STATUSES.contains(&status.as_str()) {
        return Err(bad_request(format!(
            "Invalid status: {status} (pending, accepted or rejected)"
        )));
    }
    let project = member_namespace(&caller, &member).await?;
    let image = caller
        .update(&id, EngineTarget::Main, |caller, image| {
            shared_only(image)?;
            visible_member(caller, image, &project, &member)?;
            // Only the member decides for itself (Glance's `modify_member`).
            if caller.namespace() != Some(project.as_str()) && !caller.is_admin() {
                return Err(forbidden(
                    "Only the member project may accept or reject a shared image.",
                ));
            }
            caller.allow("modify_member", Some(&project))?;
            let Some(entry) = image.spec.members.iter_mut().find(|m| m.project == project) else {
                return Ok(false);
            };
            if entry.status == status {
                return Ok(false);
            }
            entry.status = status.clone();
            entry.updated_at = now();
            Ok(true)
        })
        .await?;
    let updated = image.spec.member(&project).cloned().unwrap_or_default();
    Ok(Json(member_view(&caller, &image, &updated)).into_response())
}

pub(super) async fn delete(
    caller: Caller,
    Path((id, member)): Path<(String, String)>,
) -> Result<Response, Fault> {
    let project = member_namespace(&caller, &member).await?;
    caller
        .update(&id, EngineTarget::Main, |caller, image| {
            caller.allow("delete_member", Some(&image.namespace))?;
            shared_only(image)?;
            let before = image.spec.members.len();
            image.spec.members.retain(|m| m.project != project);
            if image.spec.members.len() == before {
                return Err(not_found(format!(
                    "{member} is not a member of image {}",
                    image.id
                )));
            }
            Ok(true)
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
