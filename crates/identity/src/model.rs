//! The identity kinds' specs (group `identity.ronghe.io`, version `v1`), as stored and as
//! served on the Kubernetes face. The Keystone face translates them: a Keystone `id` is the
//! object's uid without dashes, and references between identity objects are by name.

use serde::{Deserialize, Serialize};

pub const GROUP: &str = "identity.ronghe.io";
pub const VERSION: &str = "v1";
pub const API_VERSION: &str = "identity.ronghe.io/v1";

/// The one domain Ronghe has (Keystone's `default` domain).
pub const DEFAULT_DOMAIN_ID: &str = "default";
pub const DEFAULT_DOMAIN_NAME: &str = "Default";

/// The built-in roles, each implying the next (Keystone's default role hierarchy).
pub const ROLE_ADMIN: &str = "admin";
pub const ROLE_MEMBER: &str = "member";
pub const ROLE_READER: &str = "reader";

/// A project: one-to-one with the namespace of the same name.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectSpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// What the projects controller records once the project's namespace exists.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectStatus {
    /// The uid of the namespace this project is paired with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_uid: Option<String>,
}

/// A user. `password` is write-only: the server replaces it with `passwordHash` (argon2id)
/// before anything is stored.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserSpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub email: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The name of the project the user works in by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_project: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
}

/// A role. `implies` names roles a holder of this one also holds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleSpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub implies: Vec<String>,
}

/// A user holds a role on a project, on the domain, or on the whole cloud (`system`).
/// Exactly one of `project`, `domain` and `system` is set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleAssignmentSpec {
    pub user: String,
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// `all` for a cloud-wide assignment (Keystone's system scope).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
}

/// Where a role assignment (or a token) applies.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AssignmentScope {
    Project(String),
    Domain(String),
    System,
}

impl RoleAssignmentSpec {
    /// The scope, or a message saying why the spec names none or several.
    pub fn scope(&self) -> Result<AssignmentScope, String> {
        match (&self.project, &self.domain, &self.system) {
            (Some(project), None, None) => Ok(AssignmentScope::Project(project.clone())),
            (None, Some(domain), None) => Ok(AssignmentScope::Domain(domain.clone())),
            (None, None, Some(system)) if system == "all" => Ok(AssignmentScope::System),
            (None, None, Some(_)) => Err("system must be \"all\"".into()),
            (None, None, None) => Err("one of project, domain or system is required".into()),
            _ => Err("only one of project, domain or system may be set".into()),
        }
    }

    /// A name derived from the assignment itself, so granting twice is one object.
    pub fn canonical_name(&self) -> String {
        use sha2::{Digest, Sha256};
        let scope = match self.scope() {
            Ok(AssignmentScope::Project(p)) => format!("project:{p}"),
            Ok(AssignmentScope::Domain(d)) => format!("domain:{d}"),
            Ok(AssignmentScope::System) | Err(_) => "system:all".to_owned(),
        };
        let digest = Sha256::digest(format!("{}\0{}\0{scope}", self.user, self.role).as_bytes());
        let hex: String = digest[..10].iter().map(|b| format!("{b:02x}")).collect();
        format!("{}-{hex}", self.user.chars().take(40).collect::<String>())
    }
}

/// A long-lived credential of a user, limited to a project and a set of the user's roles
/// there. Its secret is kept only as a hash.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationCredentialSpec {
    pub user: String,
    /// The name the owner gave it (unique per user).
    pub display_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub project: String,
    pub roles: Vec<String>,
    /// RFC 3339; none means it never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(default)]
    pub unrestricted: bool,
    pub secret_hash: String,
}

/// A revocation event (Keystone's revoke model): tokens matching it that were issued at or
/// before `issuedBefore` are refused. It can be pruned once every such token has expired.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRevocationSpec {
    /// One token chain, by audit id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_id: Option<String>,
    /// Every token of a user (by user uid), e.g. after a password change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Unix seconds.
    pub issued_before: i64,
    /// Unix seconds after which no token it matches can still be valid.
    pub expires_at: i64,
}

fn yes() -> bool {
    true
}

/// Keystone's form of an id: the uid without dashes.
pub fn keystone_id(uid: &str) -> String {
    uid.replace('-', "")
}

/// The uid a Keystone id names, if it is one.
pub fn uid_of_keystone_id(id: &str) -> Option<uuid::Uuid> {
    uuid::Uuid::try_parse(id).ok()
}
