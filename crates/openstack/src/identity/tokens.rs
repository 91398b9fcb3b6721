//! `/v3/auth/...`: issuing tokens (password, token and application-credential methods;
//! project, domain, system or no scope), validating and revoking them, and what a token
//! may reach (catalog, projects, domains, system).

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use ronghe_apiserver::auth::User;
use ronghe_apiserver::identity::{
    Principal, PrincipalScope, Refusal, RequestedScope, UserRef, now_seconds,
};
use ronghe_identity::model::{AssignmentScope, DEFAULT_DOMAIN_ID, DEFAULT_DOMAIN_NAME};
use ronghe_identity::policy::Target;
use ronghe_identity::token::Method;
use serde_json::{Value, json};

use super::{allow, create_revocation, keystone_time, principal_of, sync};
use crate::fault::{Fault, FaultResult};
use crate::{ClientAddr, OpenStack};

/// `POST /v3/auth/tokens`.
pub async fn issue(
    State(state): State<Arc<OpenStack>>,
    request: axum::extract::Request,
) -> Response {
    let source = ClientAddr::ip_of(request.extensions());
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, 64 * 1024).await {
        Ok(body) => body,
        Err(_) => return Fault::bad_request("The request body is too large.").into_response(),
    };
    let nocatalog = parts.uri.query().is_some_and(|q| {
        q.split('&')
            .any(|p| p == "nocatalog" || p.starts_with("nocatalog="))
    });
    match issue_token(&state, &parts.headers, &body, source).await {
        Ok((token, principal)) => {
            let mut response = (
                StatusCode::CREATED,
                axum::Json(token_body(&state, &principal, !nocatalog)),
            )
                .into_response();
            if let Ok(value) = HeaderValue::from_str(&token) {
                response.headers_mut().insert("x-subject-token", value);
            }
            response
        }
        Err(fault) => fault.into_response(),
    }
}

async fn issue_token(
    state: &OpenStack,
    headers: &HeaderMap,
    body: &Bytes,
    source: std::net::IpAddr,
) -> FaultResult<(String, Principal)> {
    let request = super::parse_body(body)?;
    let auth = request
        .get("auth")
        .ok_or_else(|| Fault::bad_request("'auth' is a required property"))?;
    let identity = auth
        .get("identity")
        .ok_or_else(|| Fault::bad_request("'identity' is a required property"))?;
    let methods: Vec<&str> = identity
        .get("methods")
        .and_then(Value::as_array)
        .map(|m| m.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let scope = requested_scope(auth.get("scope"))?;
    // Logins read the directory: catch up first, so a user created a moment ago can log in.
    sync(state).await?;
    let refused = |refusal: Refusal| -> Fault {
        tracing::info!(%refusal, %source, "refused a login");
        match refusal {
            Refusal::RateLimited(retry) => Fault::too_many_attempts(retry),
            _ => Fault::unauthorized(),
        }
    };
    let identity_service = &state.identity;
    match methods.as_slice() {
        ["password"] => {
            let password = identity
                .pointer("/password/user")
                .ok_or_else(|| Fault::bad_request("'user' is a required property"))?;
            let secret = password
                .get("password")
                .and_then(Value::as_str)
                .ok_or_else(|| Fault::bad_request("'password' is a required property"))?;
            let user = match (
                password.get("id").and_then(Value::as_str),
                password.get("name").and_then(Value::as_str),
            ) {
                (Some(id), _) => UserRef::Id(id.to_owned()),
                (None, Some(name)) => {
                    check_domain(password.get("domain"))?;
                    UserRef::Name(name.to_owned())
                }
                (None, None) => {
                    return Err(Fault::bad_request("a user id or name is required"));
                }
            };
            // argon2 is deliberately slow: keep it off the async workers.
            let service = identity_service.clone();
            let secret = secret.to_owned();
            let uid =
                tokio::task::spawn_blocking(move || service.check_password(&user, &secret, source))
                    .await
                    .map_err(|_| Fault::new(StatusCode::INTERNAL_SERVER_ERROR, "login failed"))?
                    .map_err(refused)?;
            identity_service
                .issue(uid, &scope, vec![Method::Password], None, None)
                .map_err(refused)
        }
        ["token"] => {
            let presented = identity
                .pointer("/token/id")
                .and_then(Value::as_str)
                .or_else(|| headers.get("x-auth-token").and_then(|v| v.to_str().ok()))
                .ok_or_else(|| Fault::bad_request("'id' is a required property"))?;
            let parent = identity_service.validate(presented).map_err(refused)?;
            if parent.application_credential.is_some() {
                // Keystone: a token from an application credential cannot make others.
                return Err(Fault::forbidden("identity:create_token"));
            }
            let mut methods = parent.methods.clone();
            if !methods.contains(&Method::Token) {
                methods.push(Method::Token);
            }
            identity_service
                .issue(parent.user_uid, &scope, methods, Some(&parent), None)
                .map_err(refused)
        }
        ["application_credential"] => {
            let credential = identity.get("application_credential").ok_or_else(|| {
                Fault::bad_request("'application_credential' is a required property")
            })?;
            let secret = credential
                .get("secret")
                .and_then(Value::as_str)
                .ok_or_else(|| Fault::bad_request("'secret' is a required property"))?;
            let id = match credential.get("id").and_then(Value::as_str) {
                Some(id) => id.to_owned(),
                None => credential_id_by_name(state, credential)?,
            };
            let service = identity_service.clone();
            let secret = secret.to_owned();
            let id_for_check = id.clone();
            let holder = tokio::task::spawn_blocking(move || {
                service.application_credential_principal(
                    &id_for_check,
                    &secret,
                    now_seconds(),
                    false,
                )
            })
            .await
            .map_err(|_| Fault::new(StatusCode::INTERNAL_SERVER_ERROR, "login failed"))?
            .map_err(refused)?;
            let uid = uuid::Uuid::try_parse(&id).map_err(|_| Fault::unauthorized())?;
            let scope = match &holder.scope {
                PrincipalScope::Project { uid, .. } => {
                    RequestedScope::ProjectId(uid.simple().to_string())
                }
                _ => RequestedScope::Unscoped,
            };
            identity_service
                .issue(
                    holder.user_uid,
                    &scope,
                    vec![Method::ApplicationCredential],
                    None,
                    Some((uid, holder.expires_at)),
                )
                .map_err(refused)
        }
        [] => Err(Fault::bad_request("'methods' is a required property")),
        _ => Err(Fault::unauthorized()),
    }
}

/// An application credential named by its name and its owner.
fn credential_id_by_name(state: &OpenStack, credential: &Value) -> FaultResult<String> {
    let name = credential
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| Fault::bad_request("an application credential id or name is required"))?;
    let user = credential.get("user").ok_or_else(Fault::unauthorized)?;
    let directory = state.identity.directory();
    let owner = match (
        user.get("id").and_then(Value::as_str),
        user.get("name").and_then(Value::as_str),
    ) {
        (Some(id), _) => uuid::Uuid::try_parse(id)
            .ok()
            .and_then(|uid| directory.user_by_uid(&uid))
            .map(|u| u.name.clone()),
        (None, Some(name)) => Some(name.to_owned()),
        _ => None,
    }
    .ok_or_else(Fault::unauthorized)?;
    directory
        .application_credentials()
        .find(|c| c.spec.user == owner && c.spec.display_name == name)
        .map(|c| c.uid.simple().to_string())
        .ok_or_else(Fault::unauthorized)
}

fn check_domain(domain: Option<&Value>) -> FaultResult<()> {
    let Some(domain) = domain else {
        return Ok(());
    };
    let reference = domain
        .get("id")
        .or_else(|| domain.get("name"))
        .and_then(Value::as_str)
        .unwrap_or(DEFAULT_DOMAIN_ID);
    if super::is_default_domain(reference) {
        Ok(())
    } else {
        Err(Fault::unauthorized())
    }
}

fn requested_scope(scope: Option<&Value>) -> FaultResult<RequestedScope> {
    let Some(scope) = scope else {
        return Ok(RequestedScope::Unscoped);
    };
    if scope.as_str() == Some("unscoped") {
        return Ok(RequestedScope::Unscoped);
    }
    if let Some(project) = scope.get("project") {
        if let Some(id) = project.get("id").and_then(Value::as_str) {
            return Ok(RequestedScope::ProjectId(id.to_owned()));
        }
        if let Some(name) = project.get("name").and_then(Value::as_str) {
            check_domain(project.get("domain"))?;
            return Ok(RequestedScope::ProjectName(name.to_owned()));
        }
        return Err(Fault::bad_request("a project id or name is required"));
    }
    if let Some(domain) = scope.get("domain") {
        check_domain(Some(domain))?;
        return Ok(RequestedScope::Domain);
    }
    if scope.pointer("/system/all").and_then(Value::as_bool) == Some(true) {
        return Ok(RequestedScope::System);
    }
    Err(Fault::bad_request(
        "the scope is not one of project, domain or system",
    ))
}

/// The token document Keystone returns.
pub fn token_body(state: &OpenStack, principal: &Principal, with_catalog: bool) -> Value {
    let directory = state.identity.directory();
    let roles: Vec<Value> = principal
        .roles
        .iter()
        .map(|name| {
            let id = directory
                .role(name)
                .map(|r| r.uid.simple().to_string())
                .unwrap_or_default();
            json!({"id": id, "name": name})
        })
        .collect();
    let methods: Vec<&str> = principal
        .methods
        .iter()
        .map(|m| match m {
            Method::Password => "password",
            Method::Token => "token",
            Method::ApplicationCredential => "application_credential",
        })
        .collect();
    let domain = json!({"id": DEFAULT_DOMAIN_ID, "name": DEFAULT_DOMAIN_NAME});
    let mut token = json!({
        "methods": methods,
        "user": {
            "domain": domain,
            "id": principal.user_uid.simple().to_string(),
            "name": principal.user_name,
            "password_expires_at": null,
        },
        "audit_ids": principal.audit_ids,
        "expires_at": principal.expires_at.map(keystone_time),
        "issued_at": keystone_time(principal.issued_at),
        "roles": roles,
    });
    let object = token.as_object_mut().expect("a JSON object literal");
    match &principal.scope {
        PrincipalScope::Project { uid, name } => {
            object.insert(
                "project".into(),
                json!({"domain": domain, "id": uid.simple().to_string(), "name": name}),
            );
            object.insert("is_domain".into(), Value::Bool(false));
        }
        PrincipalScope::Domain => {
            object.insert("domain".into(), domain.clone());
        }
        PrincipalScope::System => {
            object.insert("system".into(), json!({"all": true}));
        }
        PrincipalScope::Unscoped => {}
    }
    if let Some(id) = principal.application_credential {
        let name = directory
            .application_credential(&id)
            .map(|c| c.spec.display_name.clone())
            .unwrap_or_default();
        object.insert(
            "application_credential".into(),
            json!({"id": id.simple().to_string(), "name": name, "restricted": true}),
        );
    }
    if with_catalog && principal.scope != PrincipalScope::Unscoped {
        object.insert(
            "catalog".into(),
            Value::Array(crate::catalog::catalog(&state.public_url, &state.region)),
        );
    }
    json!({"token": token})
}

/// The token named by `X-Subject-Token`, which the caller may inspect.
fn subject_token(
    state: &OpenStack,
    headers: &HeaderMap,
    caller: &Principal,
    operation: &str,
) -> FaultResult<(String, Principal)> {
    let token = headers
        .get("x-subject-token")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| Fault::bad_request("X-Subject-Token is required"))?
        .to_owned();
    let subject = state
        .identity
        .validate(&token)
        .map_err(|_| Fault::not_found("token", "(the subject token)"))?;
    allow(
        caller,
        operation,
        Target {
            project: None,
            user: Some(&subject.user_name),
        },
    )?;
    Ok((token, subject))
}

/// `GET /v3/auth/tokens`.
pub async fn validate(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    headers: HeaderMap,
) -> FaultResult<Response> {
    let caller = principal_of(&user)?;
    let (token, subject) = subject_token(&state, &headers, &caller, "identity:validate_token")?;
    let mut response = axum::Json(token_body(&state, &subject, true)).into_response();
    if let Ok(value) = HeaderValue::from_str(&token) {
        response.headers_mut().insert("x-subject-token", value);
    }
    Ok(response)
}

/// `HEAD /v3/auth/tokens`.
pub async fn check(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    headers: HeaderMap,
) -> FaultResult<StatusCode> {
    let caller = principal_of(&user)?;
    subject_token(&state, &headers, &caller, "identity:validate_token")?;
    Ok(StatusCode::OK)
}

/// `DELETE /v3/auth/tokens`: revokes the subject token on every server sharing the store.
pub async fn revoke(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    headers: HeaderMap,
) -> FaultResult<Response> {
    let caller = principal_of(&user)?;
    let (_, subject) = subject_token(&state, &headers, &caller, "identity:revoke_token")?;
    let Some(audit_id) = subject.audit_ids.first() else {
        // An application credential's bearer token: revoke the credential instead.
        return Err(Fault::bad_request(
            "this credential is revoked by deleting its application credential",
        ));
    };
    let expires_at = subject.expires_at.unwrap_or(i64::MAX / 2);
    create_revocation(
        &state,
        "token-",
        json!({"auditId": audit_id, "issuedBefore": subject.issued_at, "expiresAt": expires_at}),
    )
    .await?;
    sync(&state).await?;
    Ok(super::no_content())
}

/// `GET /v3/auth/catalog`.
pub async fn catalog(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
) -> FaultResult<Response> {
    principal_of(&user)?;
    Ok(axum::Json(json!({
        "catalog": crate::catalog::catalog(&state.public_url, &state.region),
        "links": {"self": format!("{}/identity/v3/auth/catalog", state.public_url)},
    }))
    .into_response())
}

/// `GET /v3/auth/projects`: the projects the caller holds a role on.
pub async fn projects(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
) -> FaultResult<Response> {
    let caller = principal_of(&user)?;
    sync(&state).await?;
    let directory = state.identity.directory();
    let mut projects: Vec<Value> = directory
        .projects()
        .filter(|p| {
            !directory
                .roles_of(&caller.user_name, &AssignmentScope::Project(p.name.clone()))
                .is_empty()
        })
        .map(|p| super::resources::project_json(&state, p))
        .collect();
    projects.sort_by_key(|p| p["name"].as_str().map(str::to_owned));
    Ok(axum::Json(
        json!({"projects": projects, "links": {"self": null, "previous": null, "next": null}}),
    )
    .into_response())
}

/// `GET /v3/auth/domains`.
pub async fn domains(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
) -> FaultResult<Response> {
    let caller = principal_of(&user)?;
    let directory = state.identity.directory();
    let has_roles = !directory
        .roles_of(
            &caller.user_name,
            &AssignmentScope::Domain(DEFAULT_DOMAIN_ID.to_owned()),
        )
        .is_empty();
    let domains: Vec<Value> = if has_roles {
        vec![super::domain_json(&state)]
    } else {
        Vec::new()
    };
    Ok(axum::Json(
        json!({"domains": domains, "links": {"self": null, "previous": null, "next": null}}),
    )
    .into_response())
}

/// `GET /v3/auth/system`.
pub async fn system(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
) -> FaultResult<Response> {
    let caller = principal_of(&user)?;
    let directory = state.identity.directory();
    let system: Vec<Value> = if directory
        .roles_of(&caller.user_name, &AssignmentScope::System)
        .is_empty()
    {
        Vec::new()
    } else {
        vec![json!({"all": true})]
    };
    Ok(axum::Json(
        json!({"system": system, "links": {"self": null, "previous": null, "next": null}}),
    )
    .into_response())
}
