//! Application credentials (`/v3/users/{user}/application_credentials`): long-lived,
//! revocable credentials limited to one project and some of the owner's roles there. The
//! secret is shown once, at creation; only its hash is stored. A generated secret may also
//! be presented directly as a bearer token (`rgac.<id>.<secret>`, as kubeconfigs and
//! agents do).

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::StatusCode;
use ronghe_apiserver::auth::User;
use ronghe_apiserver::identity::{Principal, PrincipalScope};
use ronghe_identity::directory::{ApplicationCredentialEntry, Directory};
use ronghe_identity::policy::Target;
use serde_json::{Value, json};

use super::resources::by_id;
use super::{
    allow, create_object, delete_object, member, new_object, parse_body, principal_of, sync,
};
use crate::OpenStack;
use crate::fault::{Fault, FaultResult};

fn credential_json(
    state: &OpenStack,
    directory: &Directory,
    credential: &ApplicationCredentialEntry,
) -> Value {
    let id = credential.uid.simple().to_string();
    let user_id = directory
        .user(&credential.spec.user)
        .map(|u| u.uid.simple().to_string())
        .unwrap_or_default();
    let project_id = directory
        .project(&credential.spec.project)
        .map(|p| p.uid.simple().to_string())
        .unwrap_or_default();
    let roles: Vec<Value> = credential
        .spec
        .roles
        .iter()
        .filter_map(|name| directory.role(name))
        .map(|r| json!({"id": r.uid.simple().to_string(), "name": r.name, "domain_id": null}))
        .collect();
    json!({
        "id": id,
        "name": credential.spec.display_name,
        "description": credential.spec.description,
        "expires_at": credential.spec.expires_at,
        "project_id": project_id,
        "user_id": user_id,
        "roles": roles,
        "unrestricted": credential.spec.unrestricted,
        "access_rules": [],
        "links": {"self": format!("{}/identity/v3/users/{user_id}/application_credentials/{id}", state.public_url)},
    })
}

/// The owner named in the path, whom the caller may act for.
fn owner(
    directory: &Directory,
    caller: &Principal,
    user_id: &str,
    operation: &str,
) -> FaultResult<String> {
    let owner = by_id(user_id, |uid| directory.user_by_uid(uid), "user")?
        .name
        .clone();
    allow(
        caller,
        operation,
        Target {
            project: None,
            user: Some(&owner),
        },
    )?;
    Ok(owner)
}

pub async fn create(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(user_id): Path<String>,
    body: Bytes,
) -> FaultResult<Response> {
    let caller = principal_of(&user)?;
    if caller.application_credential.is_some() {
        // Keystone: an application credential cannot make more of itself.
        return Err(Fault::forbidden("identity:create_application_credential"));
    }
    let body = parse_body(&body)?;
    let fields = member(&body, "application_credential")?;
    sync(&state).await?;
    let (owner, project, roles) = {
        let directory = state.identity.directory();
        let owner = owner(
            &directory,
            &caller,
            &user_id,
            "identity:create_application_credential",
        )?;
        if owner != caller.user_name {
            return Err(Fault::forbidden("identity:create_application_credential"));
        }
        let PrincipalScope::Project { name: project, .. } = &caller.scope else {
            return Err(Fault::bad_request(
                "An application credential is made with a project-scoped token.",
            ));
        };
        // The roles asked for, which must be among the token's; by default all of them.
        let roles: Vec<String> = match fields.get("roles").and_then(Value::as_array) {
            Some(requested) => {
                let mut names = Vec::new();
                for role in requested {
                    let found = match (
                        role.get("id").and_then(Value::as_str),
                        role.get("name").and_then(Value::as_str),
                    ) {
                        (Some(id), _) => by_id(id, |uid| directory.role_by_uid(uid), "role")?
                            .name
                            .clone(),
                        (None, Some(name)) => name.to_owned(),
                        _ => return Err(Fault::bad_request("each role needs an id or a name")),
                    };
                    if !caller.roles.contains(&found) {
                        return Err(Fault::forbidden(&format!(
                            "role {found} is not held on this project"
                        )));
                    }
                    names.push(found);
                }
                names
            }
            None => caller.roles.iter().cloned().collect(),
        };
        (owner, project.clone(), roles)
    };
    let display_name = fields
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| Fault::bad_request("'name' is a required property"))?
        .to_owned();
    let duplicate = state
        .identity
        .directory()
        .application_credentials()
        .any(|c| c.spec.user == owner && c.spec.display_name == display_name);
    if duplicate {
        return Err(Fault::conflict(format!(
            "Conflict occurred attempting to store application_credential - Duplicate entry found with name {display_name}."
        )));
    }
    let (secret, secret_hash) = match fields.get("secret").and_then(Value::as_str) {
        // A secret of the user's choosing may be weak: hash it slowly; it can then only be
        // exchanged for a token, not presented on every request.
        Some(chosen) => {
            let hash = ronghe_identity::password::hash_password(chosen)
                .map_err(|_| Fault::bad_request("The secret is not acceptable."))?;
            (chosen.to_owned(), hash)
        }
        None => {
            let secret = ronghe_identity::secret::generate_secret();
            let hash = ronghe_identity::secret::hash_secret(&secret);
            (secret, hash)
        }
    };
    let expires_at = fields
        .get("expires_at")
        .and_then(Value::as_str)
        .map(|text| {
            text.parse::<jiff::Timestamp>()
                .or_else(|_| format!("{text}Z").parse::<jiff::Timestamp>())
                .map(|t| t.to_string())
                .map_err(|_| Fault::bad_request("'expires_at' is not a valid time"))
        })
        .transpose()?;
    let spec = json!({
        "user": owner,
        "displayName": display_name,
        "description": fields.get("description").and_then(Value::as_str).unwrap_or_default(),
        "project": project,
        "roles": roles,
        "expiresAt": expires_at,
        "unrestricted": fields.get("unrestricted").and_then(Value::as_bool).unwrap_or(false),
        "secretHash": secret_hash,
    });
    let object = new_object(
        "ApplicationCredential",
        json!({"generateName": format!("{owner}-")}),
        spec,
    );
    let written = create_object(&state, object).await?;
    sync(&state).await?;
    let uid = written
        .object
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .and_then(|uid| uuid::Uuid::try_parse(uid).ok())
        .ok_or_else(|| {
            Fault::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the credential has no id",
            )
        })?;
    let directory = state.identity.directory();
    let credential = directory
        .application_credential(&uid)
        .ok_or_else(|| Fault::not_found("application credential", &uid.simple().to_string()))?;
    let mut body = credential_json(&state, &directory, credential);
    body["secret"] = Value::String(secret);
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({"application_credential": body})),
    )
        .into_response())
}

pub async fn list(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(user_id): Path<String>,
    axum::extract::Query(params): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> FaultResult<Response> {
    let caller = principal_of(&user)?;
    sync(&state).await?;
    let directory = state.identity.directory();
    let owner = owner(
        &directory,
        &caller,
        &user_id,
        "identity:list_application_credentials",
    )?;
    let mut credentials: Vec<Value> = directory
        .application_credentials()
        .filter(|c| c.spec.user == owner)
        .filter(|c| params.get("name").is_none_or(|n| *n == c.spec.display_name))
        .map(|c| credential_json(&state, &directory, c))
        .collect();
    credentials.sort_by_key(|c| c["name"].as_str().map(str::to_owned));
    Ok(axum::Json(json!({"application_credentials": credentials, "links": {"self": null, "previous": null, "next": null}})).into_response())
}

pub async fn get(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path((user_id, id)): Path<(String, String)>,
) -> FaultResult<Response> {
    let caller = principal_of(&user)?;
    sync(&state).await?;
    let directory = state.identity.directory();
    let owner = owner(
        &directory,
        &caller,
        &user_id,
        "identity:get_application_credential",
    )?;
    let credential = by_id(
        &id,
        |uid| directory.application_credential(uid),
        "application credential",
    )?;
    if credential.spec.user != owner {
        return Err(Fault::not_found("application credential", &id));
    }
    Ok(axum::Json(
        json!({"application_credential": credential_json(&state, &directory, credential)}),
    )
    .into_response())
}

pub async fn delete(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path((user_id, id)): Path<(String, String)>,
) -> FaultResult<Response> {
    let caller = principal_of(&user)?;
    sync(&state).await?;
    let name = {
        let directory = state.identity.directory();
        let owner = owner(
            &directory,
            &caller,
            &user_id,
            "identity:delete_application_credential",
        )?;
        let credential = by_id(
            &id,
            |uid| directory.application_credential(uid),
            "application credential",
        )?;
        if credential.spec.user != owner {
            return Err(Fault::not_found("application credential", &id));
        }
        credential.name.clone()
    };
    delete_object(&state, "ApplicationCredential", &name).await?;
    sync(&state).await?;
    Ok(super::no_content())
}
