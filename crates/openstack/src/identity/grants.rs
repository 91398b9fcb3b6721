//! Role grants on projects, the domain and the system (`PUT .../users/{u}/roles/{r}`), and
//! `GET /v3/role_assignments`. A grant is a RoleAssignment object whose name is derived
//! from the grant, so granting twice stores one object.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use ronghe_apiserver::auth::User;
use ronghe_identity::directory::Directory;
use ronghe_identity::model::{AssignmentScope, DEFAULT_DOMAIN_ID, RoleAssignmentSpec};
use ronghe_identity::policy::Target;
use serde_json::{Value, json};

use super::resources::{by_id, role_json};
use super::{allow, create_object, delete_object, new_object, principal_of, sync};
use crate::OpenStack;
use crate::fault::{Fault, FaultResult};

/// A grant named by Keystone ids, resolved to names.
struct Grant {
    user: String,
    role: String,
    scope: AssignmentScope,
}

fn resolve(
    directory: &Directory,
    user: &str,
    role: &str,
    scope: ScopeRef<'_>,
) -> FaultResult<Grant> {
    let user = by_id(user, |uid| directory.user_by_uid(uid), "user")?
        .name
        .clone();
    let role = by_id(role, |uid| directory.role_by_uid(uid), "role")?
        .name
        .clone();
    let scope = match scope {
        ScopeRef::Project(id) => AssignmentScope::Project(
            by_id(id, |uid| directory.project_by_uid(uid), "project")?
                .name
                .clone(),
        ),
        ScopeRef::Domain(id) if super::is_default_domain(id) => {
            AssignmentScope::Domain(DEFAULT_DOMAIN_ID.to_owned())
        }
        ScopeRef::Domain(id) => return Err(Fault::not_found("domain", id)),
        ScopeRef::System => AssignmentScope::System,
    };
    Ok(Grant { user, role, scope })
}

enum ScopeRef<'a> {
    Project(&'a str),
    Domain(&'a str),
    System,
}

fn spec_of(grant: &Grant) -> RoleAssignmentSpec {
    let mut spec = RoleAssignmentSpec {
        user: grant.user.clone(),
        role: grant.role.clone(),
        ..RoleAssignmentSpec::default()
    };
    match &grant.scope {
        AssignmentScope::Project(p) => spec.project = Some(p.clone()),
        AssignmentScope::Domain(d) => spec.domain = Some(d.clone()),
        AssignmentScope::System => spec.system = Some("all".into()),
    }
    spec
}

async fn grant(
    state: &OpenStack,
    user: &User,
    user_id: &str,
    role_id: &str,
    scope: ScopeRef<'_>,
) -> FaultResult<Response> {
    let caller = principal_of(user)?;
    allow(&caller, "identity:create_grant", Target::default())?;
    sync(state).await?;
    let grant = {
        let directory = state.identity.directory();
        resolve(&directory, user_id, role_id, scope)?
    };
    let spec = spec_of(&grant);
    let body = new_object(
        "RoleAssignment",
        json!({"name": spec.canonical_name()}),
        json!(spec),
    );
    match create_object(state, body).await {
        Ok(_) => {}
        // Granting what is granted already is a success.
        Err(error) if error.code() == 409 => {}
        Err(error) => return Err(Fault::from_api(error)),
    }
    sync(state).await?;
    Ok(super::no_content())
}

async fn check(
    state: &OpenStack,
    user: &User,
    user_id: &str,
    role_id: &str,
    scope: ScopeRef<'_>,
) -> FaultResult<Response> {
    let caller = principal_of(user)?;
    allow(&caller, "identity:check_grant", Target::default())?;
    sync(state).await?;
    let directory = state.identity.directory();
    let grant = resolve(&directory, user_id, role_id, scope)?;
    let held = directory.assignments().any(|a| {
        a.spec.user == grant.user
            && a.spec.role == grant.role
            && a.spec.scope().as_ref() == Ok(&grant.scope)
    });
    if held {
        Ok(super::no_content())
    } else {
        Err(Fault::not_found("role assignment", role_id))
    }
}

async fn revoke(
    state: &OpenStack,
    user: &User,
    user_id: &str,
    role_id: &str,
    scope: ScopeRef<'_>,
) -> FaultResult<Response> {
    let caller = principal_of(user)?;
    allow(&caller, "identity:revoke_grant", Target::default())?;
    sync(state).await?;
    let names: Vec<String> = {
        let directory = state.identity.directory();
        let grant = resolve(&directory, user_id, role_id, scope)?;
        directory
            .assignments()
            .filter(|a| {
                a.spec.user == grant.user
                    && a.spec.role == grant.role
                    && a.spec.scope().as_ref() == Ok(&grant.scope)
            })
            .map(|a| a.name.clone())
            .collect()
    };
    if names.is_empty() {
        return Err(Fault::not_found("role assignment", role_id));
    }
    for name in names {
        delete_object(state, "RoleAssignment", &name).await?;
    }
    sync(state).await?;
    Ok(super::no_content())
}

fn project_grant(p: &(String, String, String)) -> (&str, &str, ScopeRef<'_>) {
    (&p.1, &p.2, ScopeRef::Project(&p.0))
}

fn domain_grant(p: &(String, String, String)) -> (&str, &str, ScopeRef<'_>) {
    (&p.1, &p.2, ScopeRef::Domain(&p.0))
}

fn system_grant(p: &(String, String)) -> (&str, &str, ScopeRef<'_>) {
    (&p.0, &p.1, ScopeRef::System)
}

macro_rules! scoped_handlers {
    ($grant:ident, $check:ident, $revoke:ident, $scope:ident, $path:ty, $make:expr) => {
        pub async fn $grant(
            State(state): State<Arc<OpenStack>>,
            Extension(user): Extension<User>,
            Path($scope): Path<$path>,
        ) -> FaultResult<Response> {
            let (user_id, role_id, scope) = $make(&$scope);
            grant(&state, &user, user_id, role_id, scope).await
        }

        pub async fn $check(
            State(state): State<Arc<OpenStack>>,
            Extension(user): Extension<User>,
            Path($scope): Path<$path>,
        ) -> FaultResult<Response> {
            let (user_id, role_id, scope) = $make(&$scope);
            check(&state, &user, user_id, role_id, scope).await
        }

        pub async fn $revoke(
            State(state): State<Arc<OpenStack>>,
            Extension(user): Extension<User>,
            Path($scope): Path<$path>,
        ) -> FaultResult<Response> {
            let (user_id, role_id, scope) = $make(&$scope);
            revoke(&state, &user, user_id, role_id, scope).await
        }
    };
}

scoped_handlers!(
    grant_project,
    check_project,
    revoke_project,
    path,
    (String, String, String),
    project_grant
);
scoped_handlers!(
    grant_domain,
    check_domain,
    revoke_domain,
    path,
    (String, String, String),
    domain_grant
);
scoped_handlers!(
    grant_system,
    check_system,
    revoke_system,
    path,
    (String, String),
    system_grant
);

/// The roles a user holds directly on a scope, as role documents.
fn roles_on(
    state: &OpenStack,
    directory: &Directory,
    user: &str,
    scope: &AssignmentScope,
) -> Vec<Value> {
    let mut roles: Vec<Value> = directory
        .assignments()
        .filter(|a| a.spec.user == user && a.spec.scope().as_ref() == Ok(scope))
        .filter_map(|a| directory.role(&a.spec.role))
        .map(|r| role_json(state, r))
        .collect();
    roles.sort_by_key(|r| r["name"].as_str().map(str::to_owned));
    roles.dedup();
    roles
}

pub async fn list_project_grants(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path((project, user_id)): Path<(String, String)>,
) -> FaultResult<Response> {
    let caller = principal_of(&user)?;
    allow(&caller, "identity:list_grants", Target::default())?;
    sync(&state).await?;
    let directory = state.identity.directory();
    let project = by_id(&project, |uid| directory.project_by_uid(uid), "project")?;
    let target = by_id(&user_id, |uid| directory.user_by_uid(uid), "user")?;
    let roles = roles_on(
        &state,
        &directory,
        &target.name,
        &AssignmentScope::Project(project.name.clone()),
    );
    Ok(
        axum::Json(
            json!({"roles": roles, "links": {"self": null, "previous": null, "next": null}}),
        )
        .into_response(),
    )
}

pub async fn list_system_grants(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(user_id): Path<String>,
) -> FaultResult<Response> {
    let caller = principal_of(&user)?;
    allow(&caller, "identity:list_grants", Target::default())?;
    sync(&state).await?;
    let directory = state.identity.directory();
    let target = by_id(&user_id, |uid| directory.user_by_uid(uid), "user")?;
    let roles = roles_on(&state, &directory, &target.name, &AssignmentScope::System);
    Ok(
        axum::Json(
            json!({"roles": roles, "links": {"self": null, "previous": null, "next": null}}),
        )
        .into_response(),
    )
}

/// `GET /v3/role_assignments`, with Keystone's filters (`user.id`, `role.id`,
/// `scope.project.id`, `scope.domain.id`, `scope.system`), `include_names` and
/// `effective` (roles implied by the assigned ones are listed too). Callers who are not
/// cloud readers see only their own assignments.
pub async fn list_assignments(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Query(params): Query<HashMap<String, String>>,
) -> FaultResult<Response> {
    let caller = principal_of(&user)?;
    allow(&caller, "identity:list_role_assignments", Target::default())?;
    sync(&state).await?;
    let directory = state.identity.directory();
    let flag = |name: &str| {
        params
            .get(name)
            .is_some_and(|v| v.is_empty() || v.eq_ignore_ascii_case("true") || v == "1")
    };
    let include_names = flag("include_names");
    let effective = flag("effective");
    let want_user = params
        .get("user.id")
        .map(|id| by_id(id, |uid| directory.user_by_uid(uid), "user").map(|u| u.name.clone()))
        .transpose()?;
    let want_role = params
        .get("role.id")
        .map(|id| by_id(id, |uid| directory.role_by_uid(uid), "role").map(|r| r.name.clone()))
        .transpose()?;
    let want_project = params
        .get("scope.project.id")
        .map(|id| by_id(id, |uid| directory.project_by_uid(uid), "project").map(|p| p.name.clone()))
        .transpose()?;
    let want_domain = params.get("scope.domain.id").cloned();
    let want_system = params.contains_key("scope.system");
    let mut rows: Vec<(String, String, AssignmentScope)> = Vec::new();
    for assignment in directory.assignments() {
        let Ok(scope) = assignment.spec.scope() else {
            continue;
        };
        let mut roles = vec![assignment.spec.role.clone()];
        if effective {
            roles = directory
                .with_implied([assignment.spec.role.clone()])
                .into_iter()
                .collect();
        }
        for role in roles {
            rows.push((assignment.spec.user.clone(), role, scope.clone()));
        }
    }
    rows.sort();
    rows.dedup();
    let assignments: Vec<Value> = rows
        .into_iter()
        .filter(|(user, _, _)| caller.subject.cloud.is_some() || *user == caller.user_name)
        .filter(|(user, _, _)| want_user.as_ref().is_none_or(|u| u == user))
        .filter(|(_, role, _)| want_role.as_ref().is_none_or(|r| r == role))
        .filter(|(_, _, scope)| match (&want_project, &want_domain, want_system) {
            (Some(p), _, _) => *scope == AssignmentScope::Project(p.clone()),
            (None, Some(d), _) => {
                super::is_default_domain(d) && matches!(scope, AssignmentScope::Domain(_))
            }
            (None, None, true) => *scope == AssignmentScope::System,
            (None, None, false) => true,
        })
        .filter_map(|(user, role, scope)| {
            let user = directory.user(&user)?;
            let role = directory.role(&role)?;
            let mut user_ref = json!({"id": user.uid.simple().to_string()});
            let mut role_ref = json!({"id": role.uid.simple().to_string()});
            if include_names {
                user_ref["name"] = json!(user.name);
                user_ref["domain"] = json!({"id": DEFAULT_DOMAIN_ID, "name": ronghe_identity::model::DEFAULT_DOMAIN_NAME});
                role_ref["name"] = json!(role.name);
            }
            let scope = match scope {
                AssignmentScope::Project(name) => {
                    let project = directory.project(&name)?;
                    let mut project_ref = json!({"id": project.uid.simple().to_string()});
                    if include_names {
                        project_ref["name"] = json!(project.name);
                        project_ref["domain"] = json!({"id": DEFAULT_DOMAIN_ID, "name": ronghe_identity::model::DEFAULT_DOMAIN_NAME});
                    }
                    json!({"project": project_ref})
                }
                AssignmentScope::Domain(_) => json!({"domain": {"id": DEFAULT_DOMAIN_ID}}),
                AssignmentScope::System => json!({"system": {"all": true}}),
            };
            Some(json!({"user": user_ref, "role": role_ref, "scope": scope, "links": {"assignment": null}}))
        })
        .collect();
    Ok((
        StatusCode::OK,
        axum::Json(json!({"role_assignments": assignments, "links": {"self": format!("{}/identity/v3/role_assignments", state.public_url), "previous": null, "next": null}})),
    )
        .into_response())
}
