//! OpenStack Placement at `/placement`, over the `placement.ronghe.io` kinds: resource
//! providers are ResourceProvider objects (uuid = uid, generation = resourceVersion), custom
//! traits and resource classes are Trait and ResourceClass objects, and allocations are the
//! ledger the scheduler keeps in each provider's status (read here, never written: Ronghe's
//! scheduler is the one writer of allocations). Reads list objects through the engine;
//! writes go through it too, with the generation a client names as the resourceVersion
//! precondition, so a stale writer gets Placement's 409.
//!
//! Every route honours the microversion negotiated by `microversion::negotiate` up to
//! `microversion::MAX`; errors take Placement's `{"errors": [...]}` shape. Placement is an
//! admin API: cloud readers read, cloud admins write (`placement:*` in the policy table).

mod allocations;
mod candidates;
mod classes;
mod inventories;
pub mod microversion;
pub(crate) mod model;
mod providers;
mod query;
mod standard;
mod traits;

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequestParts, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, any, get};
use bytes::Bytes;
use http::StatusCode;
use http::request::Parts;
use ronghe_apiserver::auth::User;
use ronghe_apiserver::engine::{
    DeleteOptions, ListOptions, PatchKind, Target as EngineTarget, WriteOptions,
};
use ronghe_apiserver::error::ApiError;
use ronghe_apiserver::identity::Principal;
use ronghe_apiserver::kinds::placement::{API_VERSION, custom_object_name, is_custom_name};
use ronghe_apiserver::registry::KindSpec;
use ronghe_identity::policy::Target;
use serde_json::{Map, Value, json};

use self::microversion::Microversion;
use self::model::{Pool, Provider};
use crate::OpenStack;
use crate::fault::{Fault, FaultResult, PlacementCode, Style};
use crate::identity::{allow, principal_of};

/// The largest integer Placement takes in inventories (its database's).
const MAX_INT: i64 = i32::MAX as i64;

/// How many times a write that names no generation is retried after another writer
/// changed the provider between our read and our write.
const WRITE_ATTEMPTS: usize = 8;

pub fn router(state: Arc<OpenStack>) -> Router {
    let base = "/placement";
    let providers = "/placement/resource_providers/{uuid}";
    let authenticated = Router::new()
        .route(
            &format!("{base}/resource_providers"),
            served(get(providers::list).post(providers::create)),
        )
        .route(
            providers,
            served(
                get(providers::show)
                    .put(providers::update)
                    .delete(providers::delete),
            ),
        )
        .route(
            &format!("{providers}/inventories"),
            served(
                get(inventories::list)
                    .post(inventories::create)
                    .put(inventories::replace_all)
                    .delete(inventories::delete_all),
            ),
        )
        .route(
            &format!("{providers}/inventories/{{class}}"),
            served(
                get(inventories::show)
                    .put(inventories::update)
                    .delete(inventories::delete),
            ),
        )
        .route(
            &format!("{providers}/usages"),
            served(get(inventories::usages)),
        )
        .route(
            &format!("{providers}/aggregates"),
            served(get(providers::aggregates).put(providers::set_aggregates)),
        )
        .route(
            &format!("{providers}/traits"),
            served(
                get(traits::of_provider)
                    .put(traits::set_on_provider)
                    .delete(traits::clear_on_provider),
            ),
        )
        .route(
            &format!("{providers}/allocations"),
            served(get(allocations::of_provider)),
        )
        // Allocations are the scheduler's to write: `POST /allocations`, `PUT` and `DELETE`
        // of a consumer's are not served.
        .route(&format!("{base}/allocations"), served(MethodRouter::new()))
        .route(
            &format!("{base}/allocations/{{consumer}}"),
            served(get(allocations::of_consumer)),
        )
        .route(&format!("{base}/usages"), served(get(allocations::usages)))
        .route(
            &format!("{base}/allocation_candidates"),
            served(get(candidates::list)),
        )
        .route(&format!("{base}/traits"), served(get(traits::list)))
        .route(
            &format!("{base}/traits/{{name}}"),
            served(get(traits::show).put(traits::create).delete(traits::delete)),
        )
        .route(
            &format!("{base}/resource_classes"),
            served(get(classes::list).post(classes::create)),
        )
        .route(
            &format!("{base}/resource_classes/{{name}}"),
            served(get(classes::show).put(classes::put).delete(classes::delete)),
        )
        .route(&format!("{base}/{{*rest}}"), any(not_found))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authenticate,
        ));
    Router::new()
        .route(base, served(get(root)))
        .route(&format!("{base}/"), served(get(root)))
        .merge(authenticated)
        .layer(axum::middleware::from_fn(microversion::negotiate))
        .with_state(state)
}

/// A route's methods, with Placement's 405 for the others.
fn served(methods: MethodRouter<Arc<OpenStack>>) -> MethodRouter<Arc<OpenStack>> {
    methods.fallback(|| async {
        fault(
            StatusCode::METHOD_NOT_ALLOWED,
            "The method specified is not allowed for this resource.",
        )
    })
}

async fn not_found() -> Fault {
    fault(StatusCode::NOT_FOUND, "The resource could not be found.")
}

/// `GET /placement/`: the one version and its microversion range. The `self` link is
/// relative ("this same URL"), as Placement's is.
async fn root() -> Response {
    axum::Json(json!({"versions": [{
        "id": format!("v{}", microversion::MIN),
        "max_version": microversion::MAX.to_string(),
        "min_version": microversion::MIN.to_string(),
        "status": "CURRENT",
        "links": [{"rel": "self", "href": ""}],
    }]}))
    .into_response()
}

/// Authenticates by `X-Auth-Token`, refusing with Placement's 401.
async fn authenticate(
    State(state): State<Arc<OpenStack>>,
    request: Request,
    next: Next,
) -> Response {
    crate::authenticate_as(&state, request, next, Style::PLACEMENT).await
}

/// A fault in Placement's shape.
pub(crate) fn fault(code: StatusCode, message: impl Into<String>) -> Fault {
    Fault::new(code, message).styled(Style::PLACEMENT)
}

/// A fault with Placement's error code for the condition.
pub(crate) fn coded(
    code: StatusCode,
    placement: PlacementCode,
    message: impl Into<String>,
) -> Fault {
    Fault::new(code, message).styled(Style::Placement(placement))
}

pub(crate) fn bad_request(message: impl Into<String>) -> Fault {
    fault(StatusCode::BAD_REQUEST, message)
}

fn generation_conflict() -> Fault {
    coded(
        StatusCode::CONFLICT,
        PlacementCode::ConcurrentUpdate,
        "resource provider generation conflict",
    )
}

fn provider_not_found(uuid: &str) -> Fault {
    fault(
        StatusCode::NOT_FOUND,
        format!("No resource provider with uuid {uuid} found"),
    )
}

/// An engine error in Placement's terms: invalid objects are bad requests, conflicts are
/// concurrent updates.
fn api_fault(error: ApiError) -> Fault {
    match error.code() {
        422 => bad_request(error.status.message.clone()),
        409 => coded(
            StatusCode::CONFLICT,
            PlacementCode::ConcurrentUpdate,
            error.status.message.clone(),
        ),
        _ => Fault::from_api(error).styled(Style::PLACEMENT),
    }
}

/// A JSON answer.
fn answer(code: StatusCode, body: Value) -> Response {
    (code, axum::Json(body)).into_response()
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// A request body that must be a JSON object, with only the keys given.
fn object_body(body: &Bytes, allowed: &[&str]) -> FaultResult<Map<String, Value>> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|error| bad_request(format!("Malformed JSON: {error}")))?;
    let Value::Object(map) = value else {
        return Err(bad_request(format!(
            "JSON does not validate: {value} is not of type 'object'"
        )));
    };
    if let Some(key) = map.keys().find(|key| !allowed.contains(&key.as_str())) {
        return Err(bad_request(format!(
            "JSON does not validate: Additional properties are not allowed ('{key}' was unexpected)"
        )));
    }
    Ok(map)
}

/// A required integer property of a body.
fn required_integer(map: &Map<String, Value>, key: &str) -> FaultResult<i64> {
    match map.get(key) {
        None => Err(bad_request(format!(
            "JSON does not validate: '{key}' is a required property"
        ))),
        Some(value) => value.as_i64().ok_or_else(|| {
            bad_request(format!(
                "JSON does not validate: {value} is not of type 'integer'"
            ))
        }),
    }
}

/// The `resource_provider_generation` a write names.
fn generation_of(map: &Map<String, Value>) -> FaultResult<i64> {
    required_integer(map, "resource_provider_generation")
}

/// What every Placement handler starts from: the server, the caller and the version.
pub(crate) struct Call {
    state: Arc<OpenStack>,
    caller: Arc<Principal>,
    version: Microversion,
}

impl FromRequestParts<Arc<OpenStack>> for Call {
    type Rejection = Fault;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<OpenStack>,
    ) -> Result<Self, Self::Rejection> {
        let user = parts
            .extensions
            .get::<User>()
            .ok_or_else(|| Fault::unauthorized().styled(Style::PLACEMENT))?;
        let caller = principal_of(user).map_err(|f| f.styled(Style::PLACEMENT))?;
        let version = parts
            .extensions
            .get::<Microversion>()
            .copied()
            .unwrap_or(microversion::MIN);
        Ok(Call {
            state: state.clone(),
            caller,
            version,
        })
    }
}

impl Call {
    /// Checks a `placement:*` operation against the policy table.
    fn allow(&self, operation: &str) -> FaultResult<()> {
        allow(&self.caller, operation, Target::default()).map_err(|f| f.styled(Style::PLACEMENT))
    }

    /// Refuses a route that appears only at a later version, as Placement does (404).
    fn since(&self, minor: u16) -> FaultResult<()> {
        if self.version.at_least(minor) {
            Ok(())
        } else {
            Err(fault(
                StatusCode::NOT_FOUND,
                "The resource could not be found.",
            ))
        }
    }

    fn kind(&self, kind: &str) -> FaultResult<Arc<KindSpec>> {
        self.state.engine.kind(API_VERSION, kind).map_err(api_fault)
    }

    async fn list(&self, kind: &str) -> FaultResult<Vec<Value>> {
        let kind = self.kind(kind)?;
        let list = self
            .state
            .engine
            .list(&kind, None, &ListOptions::default())
            .await
            .map_err(api_fault)?;
        Ok(list.items)
    }

    /// Every provider.
    async fn pool(&self) -> FaultResult<Pool> {
        Ok(Pool::from_objects(&self.list("ResourceProvider").await?))
    }

    /// Every provider, and the index of the one a path names.
    async fn provider(&self, uuid: &str) -> FaultResult<(Pool, usize)> {
        let pool = self.pool().await?;
        let index = query::canonical_uuid(uuid)
            .and_then(|uuid| pool.index_of_uuid(&uuid))
            .ok_or_else(|| provider_not_found(uuid))?;
        Ok((pool, index))
    }

    /// The names of the custom traits or classes (`Trait` or `ResourceClass` objects).
    async fn custom_names(&self, kind: &str) -> FaultResult<BTreeSet<String>> {
        Ok(self
            .list(kind)
            .await?
            .iter()
            .filter_map(|object| object.pointer("/spec/name").and_then(Value::as_str))
            .map(str::to_owned)
            .collect())
    }

    /// Every trait known: standard, custom, and any on a provider.
    async fn known_traits(&self, pool: &Pool) -> FaultResult<BTreeSet<String>> {
        let mut known = self.custom_names("Trait").await?;
        known.extend(standard::TRAITS.iter().map(|name| (*name).to_owned()));
        known.extend(pool.traits().into_iter().map(str::to_owned));
        Ok(known)
    }

    /// Every resource class known: standard, custom, and any in an inventory.
    async fn known_classes(&self, pool: &Pool) -> FaultResult<BTreeSet<String>> {
        let mut known = self.custom_names("ResourceClass").await?;
        known.extend(
            standard::RESOURCE_CLASSES
                .iter()
                .map(|name| (*name).to_owned()),
        );
        known.extend(pool.classes().into_iter().map(str::to_owned));
        Ok(known)
    }

    /// Creates a custom trait or class object; false when it exists already.
    async fn create_custom(&self, kind_name: &str, name: &str) -> FaultResult<bool> {
        let kind = self.kind(kind_name)?;
        let body = json!({
            "apiVersion": API_VERSION,
            "kind": kind_name,
            "metadata": {"name": custom_object_name(name)},
            "spec": {"name": name},
        });
        match self
            .state
            .engine
            .create(&kind, None, body, &WriteOptions::default())
            .await
        {
            Ok(_) => Ok(true),
            Err(error) if error.code() == 409 => Ok(false),
            Err(error) => Err(api_fault(error)),
        }
    }

    /// Deletes a custom trait or class object; false when there was none (any name that
    /// is not a custom one: `custom_foo` must not find `CUSTOM_FOO`'s object).
    async fn delete_custom(&self, kind_name: &str, name: &str) -> FaultResult<bool> {
        if !is_custom_name(name) {
            return Ok(false);
        }
        let kind = self.kind(kind_name)?;
        match self
            .state
            .engine
            .delete(
                &kind,
                None,
                &custom_object_name(name),
                &DeleteOptions::default(),
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(error) if error.code() == 404 => Ok(false),
            Err(error) => Err(api_fault(error)),
        }
    }

    /// Changes a provider: `change` reads the pool and the provider and returns the merge
    /// patch to apply (or `None` when nothing is to change). The patch is applied only if
    /// the provider is still at the generation read, so what `change` checked still holds;
    /// with a `generation` from the client, a provider at another one is a 409, else the
    /// change is retried against the new state.
    async fn update_provider<F>(
        &self,
        uuid: &str,
        generation: Option<i64>,
        change: F,
    ) -> FaultResult<(Pool, usize)>
    where
        F: Fn(&Pool, usize) -> FaultResult<Option<Value>>,
    {
        let kind = self.kind("ResourceProvider")?;
        for _ in 0..WRITE_ATTEMPTS {
            let (pool, index) = self.provider(uuid).await?;
            let provider = &pool.providers[index];
            if generation.is_some_and(|generation| generation != provider.generation) {
                return Err(generation_conflict());
            }
            let Some(mut patch) = change(&pool, index)? else {
                return Ok((pool, index));
            };
            ronghe_apiserver::object::metadata_mut(&mut patch).insert(
                "resourceVersion".into(),
                Value::String(provider.generation.to_string()),
            );
            let written = self
                .state
                .engine
                .patch(
                    &kind,
                    None,
                    &provider.object_name,
                    PatchKind::Merge,
                    patch,
                    EngineTarget::Main,
                    &WriteOptions::default(),
                )
                .await;
            match written {
                Ok(written) => {
                    let updated = Provider::from_object(&written.object).ok_or_else(|| {
                        tracing::error!("a written resource provider has no uid or version");
                        fault(StatusCode::INTERNAL_SERVER_ERROR, "Internal error.")
                    })?;
                    let mut providers = pool.providers;
                    providers[index] = updated;
                    // Same object name, so the same place in the pool's order.
                    return Ok((Pool::new(providers), index));
                }
                Err(error) if error.code() == 409 && generation.is_none() => continue,
                Err(error) if error.code() == 409 => return Err(generation_conflict()),
                Err(error) if error.code() == 404 => return Err(provider_not_found(uuid)),
                Err(error) => return Err(api_fault(error)),
            }
        }
        Err(generation_conflict())
    }

    /// An absolute URL under `/placement`, for `Location`.
    fn url(&self, path: &str) -> String {
        format!("{}/placement{path}", self.state.public_url)
    }
}

/// Sets `Location` on an answer.
fn with_location(mut response: Response, location: &str) -> Response {
    if let Ok(value) = http::HeaderValue::from_str(location) {
        response.headers_mut().insert(http::header::LOCATION, value);
    }
    response
}
