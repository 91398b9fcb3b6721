//! `identity.ronghe.io/v1` kinds: Project, User, Role, RoleAssignment,
//! ApplicationCredential and TokenRevocation. All are cluster-scoped; a project pairs with
//! the namespace of its name. The specs are the pure model of `ronghe-identity`.

use ronghe_api_types::validation::{FieldCause, NameRule};
use ronghe_identity::model::{
    ApplicationCredentialSpec, GROUP, ProjectSpec, ProjectStatus, RoleAssignmentSpec, RoleSpec,
    TokenRevocationSpec, UserSpec, VERSION,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::text;
use crate::registry::{Column, KindSpec, Scope, Subresources};

pub(super) fn kinds() -> Vec<KindSpec> {
    vec![
        KindSpec {
            subresources: Subresources {
                status: true,
                scale: false,
            },
            // A project's name is its namespace's name.
            name_rule: NameRule::Dns1123Label,
            normalize: normalize_custom::<ProjectSpec, ProjectStatus>,
            columns: vec![
                Column::name(),
                Column::text(
                    "Enabled",
                    "Whether the project is enabled.",
                    &["spec", "enabled"],
                ),
                Column::text("Description", "The description.", &["spec", "description"]),
                Column::age(),
            ],
            ..custom("Project", "projects")
        },
        KindSpec {
            normalize: normalize_user,
            validate: Some(|user, _| {
                let mut causes = Vec::new();
                if let Some(hash) = text(user, &["spec", "passwordHash"])
                    && !hash.starts_with("$argon2")
                {
                    causes.push(FieldCause::invalid(
                        "spec.passwordHash",
                        "(hidden)",
                        "must be an argon2 hash in PHC form; set spec.password instead",
                    ));
                }
                causes
            }),
            columns: vec![
                Column::name(),
                Column::text(
                    "Enabled",
                    "Whether the user may log in.",
                    &["spec", "enabled"],
                ),
                Column::text(
                    "Default Project",
                    "The project the user works in by default.",
                    &["spec", "defaultProject"],
                ),
                Column::age(),
            ],
            ..custom("User", "users")
        },
        KindSpec {
            normalize: normalize_custom::<RoleSpec, Value>,
            columns: vec![
                Column::name(),
                Column::value("Implies", "string", "The roles this one implies.", |o| {
                    Value::String(list_text(o, &["spec", "implies"]))
                }),
                Column::age(),
            ],
            ..custom("Role", "roles")
        },
        KindSpec {
            normalize: normalize_custom::<RoleAssignmentSpec, Value>,
            validate: Some(validate_assignment),
            fields: &[
                ("spec.user", |o| text(o, &["spec", "user"])),
                ("spec.role", |o| text(o, &["spec", "role"])),
                ("spec.project", |o| text(o, &["spec", "project"])),
            ],
            columns: vec![
                Column::name(),
                Column::text("User", "The user holding the role.", &["spec", "user"]),
                Column::text("Role", "The role held.", &["spec", "role"]),
                Column::value("Scope", "string", "Where the role applies.", |o| {
                    Value::String(
                        text(o, &["spec", "project"])
                            .map(|p| format!("project/{p}"))
                            .or_else(|| text(o, &["spec", "domain"]).map(|d| format!("domain/{d}")))
                            .unwrap_or_else(|| "system".into()),
                    )
                }),
                Column::age(),
            ],
            ..custom("RoleAssignment", "roleassignments")
        },
        KindSpec {
            normalize: normalize_custom::<ApplicationCredentialSpec, Value>,
            validate: Some(validate_application_credential),
            fields: &[("spec.user", |o| text(o, &["spec", "user"]))],
            columns: vec![
                Column::name(),
                Column::text("User", "The owner.", &["spec", "user"]),
                Column::text(
                    "Display Name",
                    "The owner's name for it.",
                    &["spec", "displayName"],
                ),
                Column::text("Project", "The project it acts in.", &["spec", "project"]),
                Column::text("Expires", "When it stops working.", &["spec", "expiresAt"]),
                Column::age(),
            ],
            ..custom("ApplicationCredential", "applicationcredentials")
        },
        KindSpec {
            normalize: normalize_custom::<TokenRevocationSpec, Value>,
            ..custom("TokenRevocation", "tokenrevocations")
        },
    ]
}

/// The declaration of an identity kind: cluster-scoped, in the `identity` category.
fn custom(kind: &'static str, plural: &'static str) -> KindSpec {
    KindSpec {
        categories: &["identity"],
        ..KindSpec::new(GROUP, VERSION, kind, plural, Scope::Cluster)
    }
}

/// The shape of one of our objects: standard metadata, a typed spec and status.
#[derive(serde::Deserialize, Serialize)]
struct Object<S, T> {
    #[serde(rename = "apiVersion", default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    #[serde(default)]
    spec: S,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<T>,
}

/// Normalises a body through its typed spec and status, reporting unknown fields.
pub fn normalize_custom<S, T>(value: Value) -> Result<(Value, Vec<String>), String>
where
    S: Serialize + DeserializeOwned + Default,
    T: Serialize + DeserializeOwned,
{
    let mut unknown = Vec::new();
    let typed: Object<S, T> =
        serde_ignored::deserialize(value, |path| unknown.push(path.to_string()))
            .map_err(|error| error.to_string())?;
    let value = serde_json::to_value(&typed).map_err(|error| error.to_string())?;
    Ok((value, unknown))
}

/// Users: a plain `spec.password` is replaced by its argon2id hash before anything else
/// sees it, so no password is ever stored or echoed.
fn normalize_user(value: Value) -> Result<(Value, Vec<String>), String> {
    let (mut value, unknown) = normalize_custom::<UserSpec, Value>(value)?;
    if let Some(spec) = value.get_mut("spec").and_then(Value::as_object_mut)
        && let Some(Value::String(password)) = spec.remove("password")
    {
        let hash = ronghe_identity::password::hash_password(&password)
            .map_err(|error| format!("spec.password: {error}"))?;
        spec.insert("passwordHash".into(), Value::String(hash));
    }
    Ok((value, unknown))
}

fn validate_assignment(object: &Value, _old: Option<&Value>) -> Vec<FieldCause> {
    let spec: RoleAssignmentSpec =
        serde_json::from_value(object.get("spec").cloned().unwrap_or_default()).unwrap_or_default();
    let mut causes = Vec::new();
    if spec.user.is_empty() {
        causes.push(FieldCause::required("spec.user", ""));
    }
    if spec.role.is_empty() {
        causes.push(FieldCause::required("spec.role", ""));
    }
    if let Err(message) = spec.scope() {
        causes.push(FieldCause::invalid("spec", "", message));
    }
    causes
}

fn validate_application_credential(object: &Value, _old: Option<&Value>) -> Vec<FieldCause> {
    let spec: ApplicationCredentialSpec =
        serde_json::from_value(object.get("spec").cloned().unwrap_or_default()).unwrap_or_default();
    let mut causes = Vec::new();
    for (field, value) in [
        ("spec.user", &spec.user),
        ("spec.project", &spec.project),
        ("spec.displayName", &spec.display_name),
        ("spec.secretHash", &spec.secret_hash),
    ] {
        if value.is_empty() {
            causes.push(FieldCause::required(field, ""));
        }
    }
    if let Some(expires) = &spec.expires_at
        && expires.parse::<jiff::Timestamp>().is_err()
    {
        causes.push(FieldCause::invalid(
            "spec.expiresAt",
            expires.as_str(),
            "must be an RFC 3339 time",
        ));
    }
    causes
}

fn list_text(object: &Value, path: &[&str]) -> String {
    crate::object::value_at(object, path)
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}
