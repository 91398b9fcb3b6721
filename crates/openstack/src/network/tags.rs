//! Neutron's tag API (`standard-attr-tag`) on every tagged collection:
//! `/{collection}/{id}/tags` (get, replace, clear) and `/{collection}/{id}/tags/{tag}`
//! (check, add, remove), over each object's `spec.tags`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Json};
use bytes::Bytes;
use http::StatusCode;
use ronghe_apiserver::auth::User;
use serde_json::{Map, Value, json};

use super::body::{Attributes, json as parse_json};
use super::fault::{NeutronFault, NeutronResult};
use super::{
    Ctx, FLOATING_IP, NETWORK, PORT, QOS_POLICY, ROUTER, Resource, SECURITY_GROUP, SUBNET,
    no_content,
};
use crate::OpenStack;

const TAGGED: &[&Resource] = &[
    &NETWORK,
    &SUBNET,
    &PORT,
    &ROUTER,
    &SECURITY_GROUP,
    &FLOATING_IP,
    &QOS_POLICY,
];

pub(crate) fn routes(mut routes: Router<Arc<OpenStack>>) -> Router<Arc<OpenStack>> {
    for resource in TAGGED {
        let resource: &'static Resource = resource;
        let all = format!("/networking/v2.0/{}/{{id}}/tags", resource.path);
        routes = routes
            .route(
                &all,
                get(move |state, user, path| list(resource, state, user, path))
                    .put(move |state, user, path, body| replace(resource, state, user, path, body))
                    .delete(move |state, user, path| clear(resource, state, user, path)),
            )
            .route(
                &format!("{all}/{{tag}}"),
                get(move |state, user, path| check(resource, state, user, path))
                    .put(move |state, user, path| add(resource, state, user, path))
                    .delete(move |state, user, path| remove(resource, state, user, path)),
            );
    }
    routes
}

fn tags_of(object: &Value) -> Vec<String> {
    object
        .pointer("/spec/tags")
        .and_then(Value::as_array)
        .map(|tags| {
            tags.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn check_tag(tag: &str) -> NeutronResult<()> {
    if tag.is_empty() || tag.len() > 255 || tag.contains(',') {
        return Err(NeutronFault::bad_request(format!(
            "Invalid input for operation: '{tag}' is not a valid tag."
        )));
    }
    Ok(())
}

/// Writes an object's tags.
async fn write(
    ctx: &Ctx,
    resource: &Resource,
    object: &Value,
    change: impl Fn(&mut Vec<String>),
) -> NeutronResult<Vec<String>> {
    let updated = ctx
        .update_spec(resource, object, |spec: &mut Map<String, Value>| {
            let mut tags: Vec<String> = spec
                .get("tags")
                .and_then(Value::as_array)
                .map(|tags| {
                    tags.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            change(&mut tags);
            if tags.is_empty() {
                spec.remove("tags");
            } else {
                spec.insert("tags".into(), json!(tags));
            }
            Ok(())
        })
        .await?;
    Ok(tags_of(&updated))
}

async fn writable(ctx: &Ctx, resource: &Resource, id: &str) -> NeutronResult<Value> {
    let object = ctx.fetch_owned(resource, id).await?;
    ctx.check_on(&resource.rule("update"), &object)?;
    Ok(object)
}

async fn list(
    resource: &'static Resource,
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
) -> NeutronResult<Json<Value>> {
    let ctx = Ctx::new(state, &user)?;
    let object = ctx.fetch_owned(resource, &id).await?;
    Ok(Json(json!({"tags": tags_of(&object)})))
}

async fn replace(
    resource: &'static Resource,
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
    body: Bytes,
) -> NeutronResult<Json<Value>> {
    let ctx = Ctx::new(state, &user)?;
    let object = writable(&ctx, resource, &id).await?;
    let request = parse_json(&body)?;
    let attributes = Attributes::of(Some(&request), "tags", &["tags"])?;
    let mut wanted = attributes.strings("tags")?.ok_or_else(|| {
        NeutronFault::bad_request("Invalid input for operation: tags must be a list.")
    })?;
    for tag in &wanted {
        check_tag(tag)?;
    }
    wanted.dedup();
    let tags = write(&ctx, resource, &object, |tags| *tags = wanted.clone()).await?;
    Ok(Json(json!({"tags": tags})))
}

async fn clear(
    resource: &'static Resource,
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
) -> NeutronResult<Response> {
    let ctx = Ctx::new(state, &user)?;
    let object = writable(&ctx, resource, &id).await?;
    write(&ctx, resource, &object, Vec::clear).await?;
    Ok(no_content())
}

fn tag_missing(tag: &str) -> NeutronFault {
    NeutronFault::not_found("TagNotFound", format!("Tag {tag} could not be found."))
}

async fn check(
    resource: &'static Resource,
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path((id, tag)): Path<(String, String)>,
) -> NeutronResult<Response> {
    let ctx = Ctx::new(state, &user)?;
    let object = ctx.fetch_owned(resource, &id).await?;
    if tags_of(&object).contains(&tag) {
        Ok(no_content())
    } else {
        Err(tag_missing(&tag))
    }
}

async fn add(
    resource: &'static Resource,
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path((id, tag)): Path<(String, String)>,
) -> NeutronResult<Response> {
    let ctx = Ctx::new(state, &user)?;
    check_tag(&tag)?;
    let object = writable(&ctx, resource, &id).await?;
    write(&ctx, resource, &object, |tags| {
        if !tags.contains(&tag) {
            tags.push(tag.clone());
        }
    })
    .await?;
    Ok(axum::response::IntoResponse::into_response(
        StatusCode::CREATED,
    ))
}

async fn remove(
    resource: &'static Resource,
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path((id, tag)): Path<(String, String)>,
) -> NeutronResult<Response> {
    let ctx = Ctx::new(state, &user)?;
    let object = writable(&ctx, resource, &id).await?;
    if !tags_of(&object).contains(&tag) {
        return Err(tag_missing(&tag));
    }
    write(&ctx, resource, &object, |tags| tags.retain(|t| *t != tag)).await?;
    Ok(no_content())
}
