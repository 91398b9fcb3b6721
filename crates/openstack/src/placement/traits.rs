//! Traits (1.6): `/traits` (the standard ones, custom ones created here as Trait objects,
//! and any found on a provider) and a provider's own (`/resource_providers/{uuid}/traits`,
//! its `spec.traits`).

use std::collections::BTreeSet;

use axum::extract::Path;
use axum::response::Response;
use bytes::Bytes;
use http::StatusCode;
use ronghe_apiserver::kinds::placement::is_custom_name;
use serde_json::{Value, json};

use super::model::Pool;
use super::query::Params;
use super::standard::is_standard_trait;
use super::{
    Call, answer, bad_request, fault, generation_of, no_content, object_body, with_location,
};
use crate::fault::FaultResult;

/// `GET /traits`, filtered by `name=in:A,B` or `name=startswith:PREFIX` and by whether a
/// provider has them (`associated=true|false`).
pub(super) async fn list(call: Call, params: Params) -> FaultResult<Response> {
    call.since(6)?;
    call.allow("placement:traits:list")?;
    params.only(|key| matches!(key, "name" | "associated"))?;
    let name = params.one("name")?;
    let associated = match params.one("associated")? {
        None => None,
        Some(value) if value.eq_ignore_ascii_case("true") => Some(true),
        Some(value) if value.eq_ignore_ascii_case("false") => Some(false),
        Some(_) => {
            return Err(bad_request(
                "The query parameter \"associated\" only accepts \"true\" or \"false\"",
            ));
        }
    };
    let matches_name: Box<dyn Fn(&str) -> bool + Send + Sync> = match name {
        None => Box::new(|_| true),
        Some(text) => match text.split_once(':') {
            Some(("in", names)) => {
                let names: BTreeSet<String> = names.split(',').map(str::to_owned).collect();
                Box::new(move |trait_name| names.contains(trait_name))
            }
            Some(("startswith", prefix)) => {
                let prefix = prefix.to_owned();
                Box::new(move |trait_name| trait_name.starts_with(&prefix))
            }
            _ => {
                return Err(bad_request(format!(
                    "Badly formatted name parameter. Expected name query string parameter in form: ?name=[in|startswith]:[name1,name2|prefix]. Got: \"{text}\""
                )));
            }
        },
    };
    let pool = call.pool().await?;
    let on_providers: BTreeSet<String> = pool.traits().into_iter().map(str::to_owned).collect();
    let shown: Vec<String> = call
        .known_traits(&pool)
        .await?
        .into_iter()
        .filter(|trait_name| matches_name(trait_name))
        .filter(|trait_name| {
            associated.is_none_or(|wanted| on_providers.contains(trait_name) == wanted)
        })
        .collect();
    Ok(answer(StatusCode::OK, json!({"traits": shown})))
}

/// `GET /traits/{name}`: 204 if it exists.
pub(super) async fn show(call: Call, Path(name): Path<String>) -> FaultResult<Response> {
    call.since(6)?;
    call.allow("placement:traits:show")?;
    let pool = call.pool().await?;
    if call.known_traits(&pool).await?.contains(&name) {
        Ok(no_content())
    } else {
        Err(fault(
            StatusCode::NOT_FOUND,
            format!("No such trait(s): {name}."),
        ))
    }
}

/// `PUT /traits/CUSTOM_...`: 201 when created, 204 when it existed.
pub(super) async fn create(call: Call, Path(name): Path<String>) -> FaultResult<Response> {
    call.since(6)?;
    call.allow("placement:traits:update")?;
    if !is_custom_name(&name) {
        return Err(bad_request(
            "The trait is invalid. A valid trait must be no longer than 255 characters, start with the prefix \"CUSTOM_\" and use following characters: \"A\"-\"Z\", \"0\"-\"9\" and \"_\"",
        ));
    }
    let status = if call.create_custom("Trait", &name).await? {
        StatusCode::CREATED
    } else {
        StatusCode::NO_CONTENT
    };
    Ok(with_location(
        axum::response::IntoResponse::into_response(status),
        &call.url(&format!("/traits/{name}")),
    ))
}

/// `DELETE /traits/CUSTOM_...`: not a standard one, nor one a provider has.
pub(super) async fn delete(call: Call, Path(name): Path<String>) -> FaultResult<Response> {
    call.since(6)?;
    call.allow("placement:traits:delete")?;
    if is_standard_trait(&name) {
        return Err(bad_request(format!("Cannot delete standard trait {name}.")));
    }
    let pool = call.pool().await?;
    if pool.traits().contains(name.as_str()) {
        return Err(fault(
            StatusCode::CONFLICT,
            format!("The trait {name} is in use by a resource provider."),
        ));
    }
    if call.delete_custom("Trait", &name).await? {
        Ok(no_content())
    } else {
        Err(fault(
            StatusCode::NOT_FOUND,
            format!("No such trait(s): {name}."),
        ))
    }
}

fn provider_traits_json(pool: &Pool, index: usize) -> Value {
    let provider = &pool.providers[index];
    json!({"traits": provider.traits, "resource_provider_generation": provider.generation})
}

/// `GET /resource_providers/{uuid}/traits`.
pub(super) async fn of_provider(call: Call, Path(uuid): Path<String>) -> FaultResult<Response> {
    call.since(6)?;
    call.allow("placement:resource_providers:traits:list")?;
    let (pool, index) = call.provider(&uuid).await?;
    Ok(answer(StatusCode::OK, provider_traits_json(&pool, index)))
}

/// `PUT /resource_providers/{uuid}/traits`: the whole set, of known traits, at the
/// generation read.
pub(super) async fn set_on_provider(
    call: Call,
    Path(uuid): Path<String>,
    body: Bytes,
) -> FaultResult<Response> {
    call.since(6)?;
    call.allow("placement:resource_providers:traits:update")?;
    let body = object_body(&body, &["traits", "resource_provider_generation"])?;
    let generation = generation_of(&body)?;
    let traits: BTreeSet<String> = match body.get("traits") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                item.as_str().map(str::to_owned).ok_or_else(|| {
                    bad_request(format!(
                        "JSON does not validate: {item} is not of type 'string'"
                    ))
                })
            })
            .collect::<FaultResult<_>>()?,
        _ => {
            return Err(bad_request(
                "JSON does not validate: 'traits' is a required property of type 'array'",
            ));
        }
    };
    let (pool, _) = call.provider(&uuid).await?;
    let known = call.known_traits(&pool).await?;
    let unknown: Vec<&str> = traits
        .iter()
        .filter(|name| !known.contains(*name))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        return Err(bad_request(format!("No such trait {}", unknown.join(", "))));
    }
    let (pool, index) = call
        .update_provider(&uuid, Some(generation), |pool, index| {
            let same = pool.providers[index].traits == traits;
            Ok((!same).then(|| json!({"spec": {"traits": traits}})))
        })
        .await?;
    Ok(answer(StatusCode::OK, provider_traits_json(&pool, index)))
}

/// `DELETE /resource_providers/{uuid}/traits`: none left.
pub(super) async fn clear_on_provider(
    call: Call,
    Path(uuid): Path<String>,
) -> FaultResult<Response> {
    call.since(6)?;
    call.allow("placement:resource_providers:traits:delete")?;
    call.update_provider(&uuid, None, |pool, index| {
        Ok((!pool.providers[index].traits.is_empty()).then(|| json!({"spec": {"traits": []}})))
    })
    .await?;
    Ok(no_content())
}
