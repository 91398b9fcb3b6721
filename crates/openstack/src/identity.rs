//! Keystone v3 at `/identity`: version discovery, tokens, projects, users, roles, role
//! assignments, domains and application credentials, over the `identity.ronghe.io` kinds.
//! Reads come from the identity directory (after catching up with the store, so a client
//! reads its own writes); writes go through the engine, like the Kubernetes face's.

mod credentials;
mod grants;
mod resources;
mod tokens;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use bytes::Bytes;
use http::StatusCode;
use ronghe_apiserver::auth::User;
use ronghe_apiserver::engine::{
    DeleteOptions, PatchKind, Target as EngineTarget, WriteOptions, Written,
};
use ronghe_apiserver::error::ApiResult;
use ronghe_apiserver::identity::Principal;
use ronghe_identity::model::{API_VERSION, DEFAULT_DOMAIN_ID, DEFAULT_DOMAIN_NAME};
use ronghe_identity::policy::{Target, openstack_rule};
use serde_json::{Value, json};

use crate::OpenStack;
use crate::fault::{Fault, FaultResult};

/// The Keystone API version we claim (the shapes served are v3.14's).
const VERSION_ID: &str = "v3.14";

pub fn router(state: Arc<OpenStack>) -> Router {
    let authenticated = Router::new()
        .route(
            "/identity/v3/auth/tokens",
            get(tokens::validate)
                .head(tokens::check)
                .delete(tokens::revoke),
        )
        .route("/identity/v3/auth/catalog", get(tokens::catalog))
        .route("/identity/v3/auth/projects", get(tokens::projects))
        .route("/identity/v3/auth/domains", get(tokens::domains))
        .route("/identity/v3/auth/system", get(tokens::system))
        .route(
            "/identity/v3/projects",
            get(resources::list_projects).post(resources::create_project),
        )
        .route(
            "/identity/v3/projects/{id}",
            get(resources::get_project)
                .patch(resources::update_project)
                .delete(resources::delete_project),
        )
        .route(
            "/identity/v3/users",
            get(resources::list_users).post(resources::create_user),
        )
        .route(
            "/identity/v3/users/{id}",
            get(resources::get_user)
                .patch(resources::update_user)
                .delete(resources::delete_user),
        )
        .route(
            "/identity/v3/users/{id}/password",
            axum::routing::post(resources::change_password),
        )
        .route(
            "/identity/v3/users/{id}/projects",
            get(resources::user_projects),
        )
        .route(
            "/identity/v3/roles",
            get(resources::list_roles).post(resources::create_role),
        )
        .route(
            "/identity/v3/roles/{id}",
            get(resources::get_role)
                .patch(resources::update_role)
                .delete(resources::delete_role),
        )
        .route("/identity/v3/domains", get(resources::list_domains))
        .route("/identity/v3/domains/{id}", get(resources::get_domain))
        .route(
            "/identity/v3/role_assignments",
            get(grants::list_assignments),
        )
        .route(
            "/identity/v3/projects/{project}/users/{user}/roles",
            get(grants::list_project_grants),
        )
        .route(
            "/identity/v3/projects/{project}/users/{user}/roles/{role}",
            put(grants::grant_project)
                .head(grants::check_project)
                .get(grants::check_project)
                .delete(grants::revoke_project),
        )
        .route(
            "/identity/v3/domains/{domain}/users/{user}/roles/{role}",
            put(grants::grant_domain)
                .head(grants::check_domain)
                .get(grants::check_domain)
                .delete(grants::revoke_domain),
        )
        .route(
            "/identity/v3/system/users/{user}/roles",
            get(grants::list_system_grants),
        )
        .route(
            "/identity/v3/system/users/{user}/roles/{role}",
            put(grants::grant_system)
                .head(grants::check_system)
                .get(grants::check_system)
                .delete(grants::revoke_system),
        )
        .route(
            "/identity/v3/users/{user}/application_credentials",
            get(credentials::list).post(credentials::create),
        )
        .route(
            "/identity/v3/users/{user}/application_credentials/{id}",
            get(credentials::get).delete(credentials::delete),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::authenticate,
        ));
    Router::new()
        .route("/identity", get(versions))
        .route("/identity/", get(versions))
        .route("/identity/v3", get(version))
        .route("/identity/v3/", get(version))
        .route(
            "/identity/v3/auth/tokens",
            axum::routing::post(tokens::issue),
        )
        .merge(authenticated)
        .with_state(state)
}

fn version_document(state: &OpenStack) -> Value {
    json!({
        "id": VERSION_ID,
        "status": "stable",
        "updated": "2020-04-07T00:00:00Z",
        "links": [{"rel": "self", "href": format!("{}/identity/v3/", state.public_url)}],
        "media-types": [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}],
    })
}

/// `GET /identity`: the version list, with Keystone's 300.
async fn versions(State(state): State<Arc<OpenStack>>) -> Response {
    (
        StatusCode::MULTIPLE_CHOICES,
        axum::Json(json!({"versions": {"values": [version_document(&state)]}})),
    )
        .into_response()
}

/// `GET /identity/v3`.
async fn version(State(state): State<Arc<OpenStack>>) -> Response {
    axum::Json(json!({"version": version_document(&state)})).into_response()
}

/// The caller's principal (the authentication layer put it there).
pub(crate) fn principal_of(user: &User) -> FaultResult<Arc<Principal>> {
    user.principal.clone().ok_or_else(Fault::unauthorized)
}

/// Checks a Keystone operation against the policy table.
pub(crate) fn allow(principal: &Principal, operation: &str, target: Target<'_>) -> FaultResult<()> {
    if openstack_rule(operation).allows(&principal.subject, &target) {
        Ok(())
    } else {
        Err(Fault::forbidden(operation))
    }
}

/// Waits until the identity directory has caught up with the store, so a read after a
/// write (by anyone, on any server sharing the store) sees it.
pub(crate) async fn sync(state: &OpenStack) -> FaultResult<()> {
    let revision = state
        .engine
        .store()
        .current_revision()
        .await
        .map_err(|error| {
            tracing::error!(%error, "reading the store revision failed");
            Fault::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "The service is unavailable.",
            )
        })?;
    if state
        .identity
        .wait_for(revision, Duration::from_secs(5))
        .await
    {
        Ok(())
    } else {
        Err(Fault::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "The identity directory is catching up; try again.",
        ))
    }
}

/// The body of an identity object.
fn new_object(kind: &str, metadata: Value, spec: Value) -> Value {
    json!({"apiVersion": API_VERSION, "kind": kind, "metadata": metadata, "spec": spec})
}

/// Creates an identity object through the engine, so it gets the same validation and
/// defaulting as on the Kubernetes face.
async fn create_object(state: &OpenStack, body: Value) -> ApiResult<Written> {
    let kind = body["kind"].as_str().unwrap_or_default().to_owned();
    let kind = state.engine.kind(API_VERSION, &kind)?;
    state
        .engine
        .create(&kind, None, body, &WriteOptions::default())
        .await
}

/// Merge-patches an identity object's spec.
async fn patch_spec(state: &OpenStack, kind: &str, name: &str, spec: Value) -> ApiResult<Written> {
    let kind = state.engine.kind(API_VERSION, kind)?;
    state
        .engine
        .patch(
            &kind,
            None,
            name,
            PatchKind::Merge,
            json!({"spec": spec}),
            EngineTarget::Main,
            &WriteOptions::default(),
        )
        .await
}

/// Deletes an identity object; one already gone counts as deleted.
async fn delete_object(state: &OpenStack, kind: &str, name: &str) -> FaultResult<()> {
    let kind = state.engine.kind(API_VERSION, kind)?;
    match state
        .engine
        .delete(&kind, None, name, &DeleteOptions::default())
        .await
    {
        Ok(_) => Ok(()),
        Err(error) if error.code() == 404 => Ok(()),
        Err(error) => Err(Fault::from_api(error)),
    }
}

/// Records a revocation event (by audit id or by user) for every server to honour.
async fn create_revocation(state: &OpenStack, generate_name: &str, spec: Value) -> FaultResult<()> {
    let body = new_object(
        "TokenRevocation",
        json!({"generateName": generate_name}),
        spec,
    );
    create_object(state, body).await?;
    Ok(())
}

/// Parses a JSON request body; Keystone answers a malformed one with 400.
pub(crate) fn parse_body(body: &Bytes) -> FaultResult<Value> {
    serde_json::from_slice(body)
        .map_err(|_| Fault::bad_request("The request body is not valid JSON."))
}

/// The object under `key` in a body (`{"project": {...}}`).
fn member<'a>(body: &'a Value, key: &str) -> FaultResult<&'a serde_json::Map<String, Value>> {
    body.get(key)
        .and_then(Value::as_object)
        .ok_or_else(|| Fault::bad_request(format!("'{key}' is a required property")))
}

fn domain_json(state: &OpenStack) -> Value {
    json!({
        "id": DEFAULT_DOMAIN_ID,
        "name": DEFAULT_DOMAIN_NAME,
        "description": "The one domain of this cloud.",
        "enabled": true,
        "tags": [],
        "options": {},
        "links": {"self": format!("{}/identity/v3/domains/{DEFAULT_DOMAIN_ID}", state.public_url)},
    })
}

/// Whether a domain reference (id or name) names the one domain.
fn is_default_domain(reference: &str) -> bool {
    reference == DEFAULT_DOMAIN_ID || reference == DEFAULT_DOMAIN_NAME
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// A Keystone timestamp: microseconds and a `Z`.
fn keystone_time(seconds: i64) -> String {
    jiff::Timestamp::from_second(seconds)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%S.000000Z").to_string())
        .unwrap_or_default()
}
