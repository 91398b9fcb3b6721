//! Projects, users, roles and domains on the Keystone face.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::StatusCode;
use ronghe_apiserver::auth::User;
use ronghe_apiserver::identity::{Principal, now_seconds};
use ronghe_identity::directory::{Directory, Entry, ProjectEntry, RoleEntry, UserEntry};
use ronghe_identity::model::{AssignmentScope, DEFAULT_DOMAIN_ID};
use ronghe_identity::policy::Target;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::{
    allow, create_object, create_revocation, delete_object, member, new_object, parse_body,
    patch_spec, principal_of, sync,
};
use crate::OpenStack;
use crate::fault::{Fault, FaultResult};

type Params = Query<HashMap<String, String>>;

fn links_self(state: &OpenStack, collection: &str, id: &str) -> Value {
    json!({"self": format!("{}/identity/v3/{collection}/{id}", state.public_url)})
}

fn list_links(state: &OpenStack, collection: &str) -> Value {
    json!({"self": format!("{}/identity/v3/{collection}", state.public_url), "previous": null, "next": null})
}

pub fn project_json(state: &OpenStack, project: &ProjectEntry) -> Value {
    let id = project.uid.simple().to_string();
    json!({
        "id": id,
        "name": project.name,
        "domain_id": DEFAULT_DOMAIN_ID,
        "description": project.spec.description,
        "enabled": project.spec.enabled,
        "parent_id": DEFAULT_DOMAIN_ID,
        "is_domain": false,
        "tags": project.spec.tags,
        "options": {},
        "links": links_self(state, "projects", &id),
    })
}

pub fn user_json(state: &OpenStack, directory: &Directory, user: &UserEntry) -> Value {
    let id = user.uid.simple().to_string();
    let mut body = json!({
        "id": id,
        "name": user.name,
        "domain_id": DEFAULT_DOMAIN_ID,
        "enabled": user.spec.enabled,
        "password_expires_at": null,
        "options": {},
        "links": links_self(state, "users", &id),
    });
    let object = body.as_object_mut().expect("a JSON object literal");
    if !user.spec.email.is_empty() {
        object.insert("email".into(), Value::String(user.spec.email.clone()));
    }
    if !user.spec.description.is_empty() {
        object.insert(
            "description".into(),
            Value::String(user.spec.description.clone()),
        );
    }
    if let Some(project) = user
        .spec
        .default_project
        .as_deref()
        .and_then(|name| directory.project(name))
    {
        object.insert(
            "default_project_id".into(),
            Value::String(project.uid.simple().to_string()),
        );
    }
    body
}

pub fn role_json(state: &OpenStack, role: &RoleEntry) -> Value {
    let id = role.uid.simple().to_string();
    json!({
        "id": id,
        "name": role.name,
        "domain_id": null,
        "description": role.spec.description,
        "options": {},
        "links": links_self(state, "roles", &id),
    })
}

/// Finds an entry by its Keystone id.
pub fn by_id<'d, T>(
    id: &str,
    lookup: impl FnOnce(&Uuid) -> Option<&'d T>,
    what: &str,
) -> FaultResult<&'d T> {
    Uuid::try_parse(id)
        .ok()
        .and_then(|uid| lookup(&uid))
        .ok_or_else(|| Fault::not_found(what, id))
}

/// The name and uid of the entry a Keystone id names, read briefly from the directory.
fn name_by_id<S>(
    state: &OpenStack,
    id: &str,
    lookup: for<'d> fn(&'d Directory, &Uuid) -> Option<&'d Entry<S>>,
    what: &str,
) -> FaultResult<(String, Uuid)> {
    let directory = state.identity.directory();
    let entry = by_id(id, |uid| lookup(&directory, uid), what)?;
    Ok((entry.name.clone(), entry.uid))
}

fn text_field(body: &Map<String, Value>, key: &str) -> FaultResult<Option<String>> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Fault::bad_request(format!("'{key}' must be a string"))),
    }
}

fn bool_field(body: &Map<String, Value>, key: &str) -> FaultResult<Option<bool>> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(Fault::bad_request(format!("'{key}' must be a boolean"))),
    }
}

fn check_domain_field(body: &Map<String, Value>) -> FaultResult<()> {
    match text_field(body, "domain_id")? {
        Some(domain) if !super::is_default_domain(&domain) => Err(Fault::bad_request(format!(
            "Could not find domain: {domain}."
        ))),
        _ => Ok(()),
    }
}

/// Maps engine errors on identity writes to Keystone's codes (validation is 400,
/// duplicates 409 with Keystone's wording).
fn write_fault(what: &str, name: &str) -> impl FnOnce(ronghe_apiserver::error::ApiError) -> Fault {
    let what = what.to_owned();
    let name = name.to_owned();
    move |error| match error.code() {
        409 => Fault::conflict(format!(
            "Conflict occurred attempting to store {what} - Duplicate entry found with name {name}."
        )),
        422 => Fault::bad_request(error.status.message.clone()),
        _ => Fault::from_api(error),
    }
}

fn object(kind: &str, name: &str, spec: Value) -> Value {
    new_object(kind, json!({"name": name}), spec)
}

/// Creates an identity object of `kind`, waits until the directory holds it, and answers
/// 201 with its Keystone form (`show`), under the kind's name in lower case.
async fn create_and_show(
    state: &OpenStack,
    kind: &str,
    name: &str,
    spec: serde_json::Map<String, Value>,
    show: impl FnOnce(&Directory) -> Option<Value>,
) -> FaultResult<Response> {
    let what = kind.to_ascii_lowercase();
    create_object(state, object(kind, name, Value::Object(spec)))
        .await
        .map_err(write_fault(&what, name))?;
    sync(state).await?;
    let shown = show(&state.identity.directory()).ok_or_else(|| Fault::not_found(&what, name))?;
    Ok((StatusCode::CREATED, axum::Json(json!({ what: shown }))).into_response())
}

async fn merge_spec(state: &OpenStack, kind: &str, name: &str, spec: Value) -> FaultResult<()> {
    patch_spec(state, kind, name, spec)
        .await
        .map_err(write_fault(kind, name))?;
    Ok(())
}

/// Deletes the role assignments (and application credentials) that name something
/// being deleted, so a new object of the same name inherits nothing.
async fn delete_dependents(
    state: &OpenStack,
    matches_assignment: impl Fn(&ronghe_identity::model::RoleAssignmentSpec) -> bool,
    matches_credential: impl Fn(&ronghe_identity::model::ApplicationCredentialSpec) -> bool,
) -> FaultResult<()> {
    let (assignments, credentials): (Vec<String>, Vec<String>) = {
        let directory = state.identity.directory();
        (
            directory
                .assignments()
                .filter(|a| matches_assignment(&a.spec))
                .map(|a| a.name.clone())
                .collect(),
            directory
                .application_credentials()
                .filter(|c| matches_credential(&c.spec))
                .map(|c| c.name.clone())
                .collect(),
        )
    };
    for name in assignments {
        delete_object(state, "RoleAssignment", &name).await?;
    }
    for name in credentials {
        delete_object(state, "ApplicationCredential", &name).await?;
    }
    Ok(())
}

// ---- projects ----

pub async fn list_projects(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Query(params): Params,
) -> FaultResult<Response> {
    let caller = principal_of(&user)?;
    allow(&caller, "identity:list_projects", Target::default())?;
    sync(&state).await?;
    let directory = state.identity.directory();
    let mut projects: Vec<Value> = directory
        .projects()
        .filter(|p| params.get("name").is_none_or(|n| *n == p.name))
        .filter(|p| {
            params
                .get("enabled")
                .is_none_or(|e| e.eq_ignore_ascii_case("true") == p.spec.enabled)
        })
        .filter(|p| may_see_project(&directory, &caller, &p.name))
        .map(|p| project_json(&state, p))
        .collect();
    projects.sort_by_key(|p| p["name"].as_str().map(str::to_owned));
    Ok(
        axum::Json(json!({"projects": projects, "links": list_links(&state, "projects")}))
            .into_response(),
    )
}

/// Cloud readers see every project; others the projects they hold a role on.
fn may_see_project(directory: &Directory, caller: &Principal, project: &str) -> bool {
    caller.subject.cloud.is_some()
        || !directory
            .roles_of(
                &caller.user_name,
                &AssignmentScope::Project(project.to_owned()),
            )
            .is_empty()
}

pub async fn get_project(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
) -> FaultResult<Response> {
    let caller = principal_of(&user)?;
    allow(&caller, "identity:get_project", Target::default())?;
    sync(&state).await?;
    let directory = state.identity.directory();
    let found = Uuid::try_parse(&id)
        .ok()
        .and_then(|uid| directory.project_by_uid(&uid));
    // Visible as in a list: any role on the project, as in Keystone, or cloud reading.
    let project = match found {
        Some(p) if may_see_project(&directory, &caller, &p.name) => p,
        Some(_) => return Err(Fault::forbidden("identity:get_project")),
        None => return Err(Fault::not_found("project", &id)),
    };
    Ok(axum::Json(json!({"project": project_json(&state, project)})).into_response())
}

pub async fn create_project(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    body: Bytes,
) -> FaultResult<Response> {
    let caller = principal_of(&user)?;
    allow(&caller, "identity:create_project", Target::default())?;
    let body = parse_body(&body)?;
    let project = member(&body, "project")?;
    let name = text_field(project, "name")?
        .ok_or_else(|| Fault::bad_request("'name' is a required property"))?;
    check_domain_field(project)?;
    if bool_field(project, "is_domain")? == Some(true) {
        return Err(Fault::bad_request(
            "Ronghe has one domain; projects cannot be domains.",
        ));
    }
    if let Some(parent) = text_field(project, "parent_id")?
        && !super::is_default_domain(&parent)
    {
        return Err(Fault::bad_request("Projects cannot be nested in Ronghe."));
    }
    let mut spec = Map::new();
    if let Some(description) = text_field(project, "description")? {
        spec.insert("description".into(), Value::String(description));
    }
    spec.insert(
        "enabled".into(),
        Value::Bool(bool_field(project, "enabled")?.unwrap_or(true)),
    );
    if let Some(tags) = project.get("tags").filter(|t| !t.is_null()) {
        spec.insert("tags".into(), tags.clone());
    }
    create_and_show(&state, "Project", &name, spec, |directory| {
        Some(project_json(&state, directory.project(&name)?))
    })
    .await
}

pub async fn update_project(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
    body: Bytes,
) -> FaultResult<Response> {
    let caller = principal_of(&user)?;
    allow(&caller, "identity:update_project", Target::default())?;
    let body = parse_body(&body)?;
    let changes = member(&body, "project")?;
    sync(&state).await?;
    let (name, _) = name_by_id(&state, &id, Directory::project_by_uid, "project")?;
    if let Some(new_name) = text_field(changes, "name")?
        && new_name != name
    {
        return Err(Fault::bad_request(
            "A project's name is its namespace's name and cannot change.",
        ));
    }
    let mut spec = Map::new();
    if let Some(description) = text_field(changes, "description")? {
        spec.insert("description".into(), Value::String(description));
    }
    if let Some(enabled) = bool_field(changes, "enabled")? {
        spec.insert("enabled".into(), Value::Bool(enabled));
    }
    if let Some(tags) = changes.get("tags") {
        spec.insert("tags".into(), tags.clone());
    }
    merge_spec(&state, "Project", &name, Value::Object(spec)).await?;
    sync(&state).await?;
    let directory = state.identity.directory();
    let project = by_id(&id, |uid| directory.project_by_uid(uid), "project")?;
    Ok(axum::Json(json!({"project": project_json(&state, project)})).into_response())
}

pub async fn delete_project(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
) -> FaultResult<Response> {
    let caller = principal_of(&user)?;
    allow(&caller, "identity:delete_project", Target::default())?;
    sync(&state).await?;
    let (name, _) = name_by_id(&state, &id, Directory::project_by_uid, "project")?;
    delete_dependents(
        &state,
        |a| a.project.as_deref() == Some(name.as_str()),
        |c| c.project == name,
    )
    .await?;
    // The project's namespace, and everything in it, follows (the projects controller).
    delete_object(&state, "Project", &name).await?;
    sync(&state).await?;
    Ok(super::no_content())
}

// ---- users ----

pub async fn list_users(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Query(params): Params,
) -> FaultResult<Response> {
    let caller = principal_of(&user)?;
    allow(&caller, "identity:list_users", Target::default())?;
    sync(&state).await?;
    let directory = state.identity.directory();
    let mut users: Vec<Value> = directory
        .users()
        .filter(|u| params.get("name").is_none_or(|n| *n == u.name))
        .filter(|u| {
            params
                .get("enabled")
                .is_none_or(|e| e.eq_ignore_ascii_case("true") == u.spec.enabled)
        })
        .map(|u| user_json(&state, &directory, u))
        .collect();
    users.sort_by_key(|u| u["name"].as_str().map(str::to_owned));
    Ok(axum::Json(json!({"users": users, "links": list_links(&state, "users")})).into_response())
}

pub async fn get_user(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
) -> FaultResult<Response> {
    let caller = principal_of(&user)?;
    sync(&state).await?;
    let directory = state.identity.directory();
    let found = by_id(&id, |uid| directory.user_by_uid(uid), "user");
    // Only those who may read users learn whether another user exists.
    let target = match &found {
        Ok(u) => u.name.clone(),
        Err(_) => String::new(),
    };
    allow(
        &caller,
        "identity:get_user",
        Target {
            project: None,
            user: Some(&target),
        },
    )?;
    let found = found?;
    Ok(axum::Json(json!({"user": user_json(&state, &directory, found)})).into_response())
}

/// The spec fields a user create or update may set.
fn user_spec(state: &OpenStack, body: &Map<String, Value>) -> FaultResult<Map<String, Value>> {
    check_domain_field(body)?;
    let mut spec = Map::new();
    for (from, to) in [("description", "description"), ("email", "email")] {
        if let Some(value) = text_field(body, from)? {
            spec.insert(to.into(), Value::String(value));
        }
    }
    if let Some(enabled) = bool_field(body, "enabled")? {
        spec.insert("enabled".into(), Value::Bool(enabled));
    }
    if let Some(password) = text_field(body, "password")? {
        if password.len() > 4096 {
            return Err(Fault::bad_request("The password is too long."));
        }
        spec.insert("password".into(), Value::String(password));
    }
    if let Some(project) = text_field(body, "default_project_id")? {
        let directory = state.identity.directory();
        let project = by_id(&project, |uid| directory.project_by_uid(uid), "project")?;
        spec.insert("defaultProject".into(), Value::String(project.name.clone()));
    }
    Ok(spec)
}

pub async fn create_user(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    body: Bytes,
) -> FaultResult<Response> {
    let caller = principal_of(&user)?;
    allow(&caller, "identity:create_user", Target::default())?;
    let body = parse_body(&body)?;
    let fields = member(&body, "user")?;
    let name = text_field(fields, "name")?
        .ok_or_else(|| Fault::bad_request("'name' is a required property"))?;
    sync(&state).await?;
    let spec = user_spec(&state, fields)?;
    create_and_show(&state, "User", &name, spec, |directory| {
        Some(user_json(&state, directory, directory.user(&name)?))
    })
    .await
}

pub async fn update_user(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
    body: Bytes,
) -> FaultResult<Response> {
    let caller = principal_of(&user)?;
    allow(&caller, "identity:update_user", Target::default())?;
    let body = parse_body(&body)?;
    let fields = member(&body, "user")?;
    sync(&state).await?;
    let (name, uid) = name_by_id(&state, &id, Directory::user_by_uid, "user")?;
    if let Some(new_name) = text_field(fields, "name")?
        && new_name != name
    {
        return Err(Fault::bad_request("A user's name cannot change."));
    }
    let spec = user_spec(&state, fields)?;
    let password_changed = spec.contains_key("password");
    merge_spec(&state, "User", &name, Value::Object(spec)).await?;
    if password_changed {
        revoke_user_tokens(&state, uid).await?;
    }
    sync(&state).await?;
    let directory = state.identity.directory();
    let updated = by_id(&id, |uid| directory.user_by_uid(uid), "user")?;
    Ok(axum::Json(json!({"user": user_json(&state, &directory, updated)})).into_response())
}

/// Revokes every token a user holds now (after a password change, as Keystone does).
async fn revoke_user_tokens(state: &OpenStack, uid: Uuid) -> FaultResult<()> {
    let now = now_seconds();
    create_revocation(
        state,
        "user-",
        json!({
            "userId": uid.to_string(),
            "issuedBefore": now,
            "expiresAt": now + state.identity.token_lifetime().as_secs() as i64,
        }),
    )
    .await
}

pub async fn change_password(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
    body: Bytes,
) -> FaultResult<Response> {
    let caller = principal_of(&user)?;
    let body = parse_body(&body)?;
    let fields = member(&body, "user")?;
    let original = text_field(fields, "original_password")?
        .ok_or_else(|| Fault::bad_request("'original_password' is a required property"))?;
    let password = text_field(fields, "password")?
        .ok_or_else(|| Fault::bad_request("'password' is a required property"))?;
    sync(&state).await?;
    let (name, uid) = name_by_id(&state, &id, Directory::user_by_uid, "user")?;
    allow(
        &caller,
        "identity:change_password",
        Target {
            project: None,
            user: Some(&name),
        },
    )?;
    let service = state.identity.clone();
    let source = std::net::IpAddr::from([127, 0, 0, 1]);
    let check_name = name.clone();
    tokio::task::spawn_blocking(move || {
        service.check_password(
            &ronghe_apiserver::identity::UserRef::Name(check_name),
            &original,
            source,
        )
    })
    .await
    .map_err(|_| {
        Fault::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the password check failed",
        )
    })?
    .map_err(|_| Fault::unauthorized())?;
    merge_spec(&state, "User", &name, json!({"password": password})).await?;
    revoke_user_tokens(&state, uid).await?;
    sync(&state).await?;
    Ok(super::no_content())
}

pub async fn delete_user(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
) -> FaultResult<Response> {
    let caller = principal_of(&user)?;
    allow(&caller, "identity:delete_user", Target::default())?;
    sync(&state).await?;
    let (name, _) = name_by_id(&state, &id, Directory::user_by_uid, "user")?;
    delete_dependents(&state, |a| a.user == name, |c| c.user == name).await?;
    delete_object(&state, "User", &name).await?;
    sync(&state).await?;
    Ok(super::no_content())
}

pub async fn user_projects(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
) -> FaultResult<Response> {
    let caller = principal_of(&user)?;
    sync(&state).await?;
    let directory = state.identity.directory();
    let target = by_id(&id, |uid| directory.user_by_uid(uid), "user")?;
    allow(
        &caller,
        "identity:list_user_projects",
        Target {
            project: None,
            user: Some(&target.name),
        },
    )?;
    let mut projects: Vec<Value> = directory
        .projects()
        .filter(|p| {
            !directory
                .roles_of(&target.name, &AssignmentScope::Project(p.name.clone()))
                .is_empty()
        })
        .map(|p| project_json(&state, p))
        .collect();
    projects.sort_by_key(|p| p["name"].as_str().map(str::to_owned));
    Ok(
        axum::Json(json!({"projects": projects, "links": list_links(&state, "projects")}))
            .into_response(),
    )
}

// ---- roles ----

pub async fn list_roles(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Query(params): Params,
) -> FaultResult<Response> {
    let caller = principal_of(&user)?;
    allow(&caller, "identity:list_roles", Target::default())?;
    sync(&state).await?;
    let directory = state.identity.directory();
    let mut roles: Vec<Value> = directory
        .roles()
        .filter(|r| params.get("name").is_none_or(|n| *n == r.name))
        .map(|r| role_json(&state, r))
        .collect();
    roles.sort_by_key(|r| r["name"].as_str().map(str::to_owned));
    Ok(axum::Json(json!({"roles": roles, "links": list_links(&state, "roles")})).into_response())
}

pub async fn get_role(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
) -> FaultResult<Response> {
    let caller = principal_of(&user)?;
    allow(&caller, "identity:get_role", Target::default())?;
    sync(&state).await?;
    let directory = state.identity.directory();
    let role = by_id(&id, |uid| directory.role_by_uid(uid), "role")?;
    Ok(axum::Json(json!({"role": role_json(&state, role)})).into_response())
}

pub async fn create_role(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    body: Bytes,
) -> FaultResult<Response> {
    let caller = principal_of(&user)?;
    allow(&caller, "identity:create_role", Target::default())?;
    let body = parse_body(&body)?;
    let fields = member(&body, "role")?;
    let name = text_field(fields, "name")?
        .ok_or_else(|| Fault::bad_request("'name' is a required property"))?;
    if text_field(fields, "domain_id")?.is_some() {
        return Err(Fault::bad_request(
            "Domain-specific roles are not supported.",
        ));
    }
    let mut spec = Map::new();
    if let Some(description) = text_field(fields, "description")? {
        spec.insert("description".into(), Value::String(description));
    }
    create_and_show(&state, "Role", &name, spec, |directory| {
        Some(role_json(&state, directory.role(&name)?))
    })
    .await
}

pub async fn update_role(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
    body: Bytes,
) -> FaultResult<Response> {
    let caller = principal_of(&user)?;
    allow(&caller, "identity:update_role", Target::default())?;
    let body = parse_body(&body)?;
    let fields = member(&body, "role")?;
    sync(&state).await?;
    let (name, _) = name_by_id(&state, &id, Directory::role_by_uid, "role")?;
    if let Some(new_name) = text_field(fields, "name")?
        && new_name != name
    {
        return Err(Fault::bad_request("A role's name cannot change."));
    }
    if let Some(description) = text_field(fields, "description")? {
        merge_spec(&state, "Role", &name, json!({"description": description})).await?;
    }
    sync(&state).await?;
    let directory = state.identity.directory();
    let role = by_id(&id, |uid| directory.role_by_uid(uid), "role")?;
    Ok(axum::Json(json!({"role": role_json(&state, role)})).into_response())
}

pub async fn delete_role(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
) -> FaultResult<Response> {
    let caller = principal_of(&user)?;
    allow(&caller, "identity:delete_role", Target::default())?;
    sync(&state).await?;
    let (name, _) = name_by_id(&state, &id, Directory::role_by_uid, "role")?;
    if ["admin", "member", "reader"].contains(&name.as_str()) {
        return Err(Fault::forbidden("identity:delete_role (a built-in role)"));
    }
    delete_dependents(&state, |a| a.role == name, |_| false).await?;
    delete_object(&state, "Role", &name).await?;
    sync(&state).await?;
    Ok(super::no_content())
}

// ---- domains ----

pub async fn list_domains(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Query(params): Params,
) -> FaultResult<Response> {
    let caller = principal_of(&user)?;
    allow(&caller, "identity:list_domains", Target::default())?;
    let domains: Vec<Value> = if params
        .get("name")
        .is_none_or(|n| super::is_default_domain(n))
    {
        vec![super::domain_json(&state)]
    } else {
        Vec::new()
    };
    Ok(
        axum::Json(json!({"domains": domains, "links": list_links(&state, "domains")}))
            .into_response(),
    )
}

pub async fn get_domain(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
) -> FaultResult<Response> {
    let caller = principal_of(&user)?;
    allow(&caller, "identity:get_domain", Target::default())?;
    if id != DEFAULT_DOMAIN_ID {
        return Err(Fault::not_found("domain", &id));
    }
    Ok(axum::Json(json!({"domain": super::domain_json(&state)})).into_response())
}
