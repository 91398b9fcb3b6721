//! The in-memory directory of users, projects, roles, role assignments, application
//! credentials and revocations that every request is authenticated and authorized against.
//! The server keeps it current from the store's change feed; validating a token reads only
//! this, never the store.

use std::collections::{BTreeSet, HashMap};

use serde::de::DeserializeOwned;
use serde_json::Value;
use uuid::Uuid;

use crate::model::{
    ApplicationCredentialSpec, AssignmentScope, ProjectSpec, ROLE_ADMIN, ROLE_MEMBER, ROLE_READER,
    RoleAssignmentSpec, RoleSpec, TokenRevocationSpec, UserSpec,
};
use crate::policy::Level;

/// The identity kinds, by the plural their store keys use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IdentityKind {
    Project,
    User,
    Role,
    RoleAssignment,
    ApplicationCredential,
    TokenRevocation,
}

impl IdentityKind {
    pub const ALL: [IdentityKind; 6] = [
        IdentityKind::Project,
        IdentityKind::User,
        IdentityKind::Role,
        IdentityKind::RoleAssignment,
        IdentityKind::ApplicationCredential,
        IdentityKind::TokenRevocation,
    ];

    pub fn kind(self) -> &'static str {
        match self {
            IdentityKind::Project => "Project",
            IdentityKind::User => "User",
            IdentityKind::Role => "Role",
            IdentityKind::RoleAssignment => "RoleAssignment",
            IdentityKind::ApplicationCredential => "ApplicationCredential",
            IdentityKind::TokenRevocation => "TokenRevocation",
        }
    }

    pub fn plural(self) -> &'static str {
        match self {
            IdentityKind::Project => "projects",
            IdentityKind::User => "users",
            IdentityKind::Role => "roles",
            IdentityKind::RoleAssignment => "roleassignments",
            IdentityKind::ApplicationCredential => "applicationcredentials",
            IdentityKind::TokenRevocation => "tokenrevocations",
        }
    }

    pub fn from_plural(plural: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.plural() == plural)
    }
}

/// What every entry knows of its object.
#[derive(Clone, Debug)]
pub struct Entry<S> {
    pub uid: Uuid,
    pub name: String,
    /// RFC 3339, as stored.
    pub created: String,
    pub spec: S,
}

pub type UserEntry = Entry<UserSpec>;
pub type ProjectEntry = Entry<ProjectSpec>;
pub type RoleEntry = Entry<RoleSpec>;
pub type AssignmentEntry = Entry<RoleAssignmentSpec>;
pub type ApplicationCredentialEntry = Entry<ApplicationCredentialSpec>;

/// The directory. Lookups by name and by uid are constant time.
#[derive(Default, Debug)]
pub struct Directory {
    revision: i64,
    users: Table<UserSpec>,
    projects: Table<ProjectSpec>,
    roles: Table<RoleSpec>,
    assignments: Table<RoleAssignmentSpec>,
    /// Assignment names by user, so finding a user's roles does not scan every assignment.
    assignments_by_user: HashMap<String, BTreeSet<String>>,
    application_credentials: Table<ApplicationCredentialSpec>,
    revocations: HashMap<String, TokenRevocationSpec>,
    revoked_audit_ids: HashMap<String, i64>,
    revoked_users: HashMap<Uuid, i64>,
}

#[derive(Debug)]
struct Table<S> {
    by_name: HashMap<String, Entry<S>>,
    name_of: HashMap<Uuid, String>,
}

impl<S> Default for Table<S> {
    fn default() -> Self {
        Self {
            by_name: HashMap::new(),
            name_of: HashMap::new(),
        }
    }
}

impl<S: DeserializeOwned> Table<S> {
    fn upsert(&mut self, object: &Value) -> Result<(), String> {
        let entry = parse_entry::<S>(object)?;
        self.remove(&entry.name);
        self.name_of.insert(entry.uid, entry.name.clone());
        self.by_name.insert(entry.name.clone(), entry);
        Ok(())
    }

    fn remove(&mut self, name: &str) {
        if let Some(old) = self.by_name.remove(name) {
            self.name_of.remove(&old.uid);
        }
    }

    fn get(&self, name: &str) -> Option<&Entry<S>> {
        self.by_name.get(name)
    }

    fn by_uid(&self, uid: &Uuid) -> Option<&Entry<S>> {
        self.name_of
            .get(uid)
            .and_then(|name| self.by_name.get(name))
    }
}

fn parse_entry<S: DeserializeOwned>(object: &Value) -> Result<Entry<S>, String> {
    let metadata = object.get("metadata").ok_or("no metadata")?;
    let name = metadata
        .get("name")
        .and_then(Value::as_str)
        .ok_or("no name")?
        .to_owned();
    let uid = metadata
        .get("uid")
        .and_then(Value::as_str)
        .and_then(|uid| Uuid::try_parse(uid).ok())
        .ok_or("no uid")?;
    let created = metadata
        .get("creationTimestamp")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let spec = serde_json::from_value(object.get("spec").cloned().unwrap_or(Value::Null))
        .map_err(|error| error.to_string())?;
    Ok(Entry {
        uid,
        name,
        created,
        spec,
    })
}

impl Directory {
    pub fn new() -> Self {
        Self::default()
    }

    /// The store revision the directory reflects.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    pub fn set_revision(&mut self, revision: i64) {
        self.revision = self.revision.max(revision);
    }

    /// Adds or replaces an object. An object that does not parse is left out (and reported),
    /// so a bad write can only make its own object unusable.
    pub fn upsert(&mut self, kind: IdentityKind, object: &Value) -> Result<(), String> {
        match kind {
            IdentityKind::Project => self.projects.upsert(object),
            IdentityKind::User => self.users.upsert(object),
            IdentityKind::Role => self.roles.upsert(object),
            IdentityKind::RoleAssignment => {
                let name = object
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                self.change_assignment(&name, |table| table.upsert(object))
            }
            IdentityKind::ApplicationCredential => self.application_credentials.upsert(object),
            IdentityKind::TokenRevocation => {
                let entry = parse_entry::<TokenRevocationSpec>(object)?;
                self.revocations.insert(entry.name, entry.spec);
                self.reindex_revocations();
                Ok(())
            }
        }
    }

    pub fn remove(&mut self, kind: IdentityKind, name: &str) {
        match kind {
            IdentityKind::Project => self.projects.remove(name),
            IdentityKind::User => self.users.remove(name),
            IdentityKind::Role => self.roles.remove(name),
            IdentityKind::RoleAssignment => {
                self.change_assignment(name, |table| table.remove(name))
            }
            IdentityKind::ApplicationCredential => self.application_credentials.remove(name),
            IdentityKind::TokenRevocation => {
                self.revocations.remove(name);
                self.reindex_revocations();
            }
        }
    }

    /// Applies a change to one assignment, keeping the by-user index in step.
    fn change_assignment<R>(
        &mut self,
        name: &str,
        change: impl FnOnce(&mut Table<RoleAssignmentSpec>) -> R,
    ) -> R {
        if let Some(old) = self.assignments.get(name)
            && let Some(names) = self.assignments_by_user.get_mut(&old.spec.user)
        {
            names.remove(name);
            if names.is_empty() {
                self.assignments_by_user.remove(&old.spec.user);
            }
        }
        let result = change(&mut self.assignments);
        if let Some(new) = self.assignments.get(name) {
            self.assignments_by_user
                .entry(new.spec.user.clone())
                .or_default()
                .insert(name.to_owned());
        }
        result
    }

    fn reindex_revocations(&mut self) {
        self.revoked_audit_ids.clear();
        self.revoked_users.clear();
        for revocation in self.revocations.values() {
            if let Some(audit_id) = &revocation.audit_id {
                let at = self.revoked_audit_ids.entry(audit_id.clone()).or_default();
                *at = (*at).max(revocation.issued_before);
            }
            if let Some(user_id) = revocation
                .user_id
                .as_deref()
                .and_then(|id| Uuid::try_parse(id).ok())
            {
                let at = self.revoked_users.entry(user_id).or_default();
                *at = (*at).max(revocation.issued_before);
            }
        }
    }

    pub fn user(&self, name: &str) -> Option<&UserEntry> {
        self.users.get(name)
    }

    pub fn user_by_uid(&self, uid: &Uuid) -> Option<&UserEntry> {
        self.users.by_uid(uid)
    }

    pub fn users(&self) -> impl Iterator<Item = &UserEntry> {
        self.users.by_name.values()
    }

    pub fn project(&self, name: &str) -> Option<&ProjectEntry> {
        self.projects.get(name)
    }

    pub fn project_by_uid(&self, uid: &Uuid) -> Option<&ProjectEntry> {
        self.projects.by_uid(uid)
    }

    pub fn projects(&self) -> impl Iterator<Item = &ProjectEntry> {
        self.projects.by_name.values()
    }

    pub fn role(&self, name: &str) -> Option<&RoleEntry> {
        self.roles.get(name)
    }

    pub fn role_by_uid(&self, uid: &Uuid) -> Option<&RoleEntry> {
        self.roles.by_uid(uid)
    }

    pub fn roles(&self) -> impl Iterator<Item = &RoleEntry> {
        self.roles.by_name.values()
    }

    pub fn assignments(&self) -> impl Iterator<Item = &AssignmentEntry> {
        self.assignments.by_name.values()
    }

    pub fn application_credential(&self, uid: &Uuid) -> Option<&ApplicationCredentialEntry> {
        self.application_credentials.by_uid(uid)
    }

    pub fn application_credentials(&self) -> impl Iterator<Item = &ApplicationCredentialEntry> {
        self.application_credentials.by_name.values()
    }

    /// The roles a user holds directly on a scope, with everything they imply. Assignments
    /// naming a role, user or project that does not exist grant nothing.
    pub fn roles_of(&self, user: &str, scope: &AssignmentScope) -> BTreeSet<String> {
        if self.users.get(user).is_none() {
            return BTreeSet::new();
        }
        if let AssignmentScope::Project(project) = scope
            && self.projects.get(project).is_none()
        {
            return BTreeSet::new();
        }
        let direct = self
            .assignments_by_user
            .get(user)
            .into_iter()
            .flatten()
            .filter_map(|name| self.assignments.get(name))
            .filter(|a| a.spec.scope().as_ref() == Ok(scope))
            .map(|a| a.spec.role.clone());
        self.with_implied(direct)
    }

    /// Roles with every role they imply, transitively (cycles are harmless).
    pub fn with_implied(&self, roles: impl IntoIterator<Item = String>) -> BTreeSet<String> {
        let mut found = BTreeSet::new();
        let mut pending: Vec<String> = roles.into_iter().collect();
        while let Some(role) = pending.pop() {
            let Some(entry) = self.roles.get(&role) else {
                continue;
            };
            if found.insert(role) {
                pending.extend(entry.spec.implies.iter().cloned());
            }
        }
        found
    }

    /// Whether a token with these properties has been revoked.
    pub fn is_revoked(&self, user_uid: &Uuid, issued_at: i64, audit_ids: &[String]) -> bool {
        if self.revoked_users.is_empty() && self.revoked_audit_ids.is_empty() {
            return false;
        }
        if let Some(before) = self.revoked_users.get(user_uid)
            && issued_at <= *before
        {
            return true;
        }
        audit_ids.iter().any(|id| {
            self.revoked_audit_ids
                .get(id)
                .is_some_and(|before| issued_at <= *before)
        })
    }

    /// The time up to which every token of a user is revoked, if any.
    pub fn user_revoked_until(&self, user_uid: &Uuid) -> Option<i64> {
        self.revoked_users.get(user_uid).copied()
    }

    /// Revocations that can be forgotten: every token they match has expired by `now`.
    pub fn expired_revocations(&self, now: i64) -> Vec<String> {
        self.revocations
            .iter()
            .filter(|(_, spec)| spec.expires_at < now)
            .map(|(name, _)| name.clone())
            .collect()
    }
}

/// The level a set of roles grants, by the built-in roles among them.
pub fn level_of(roles: &BTreeSet<String>) -> Option<Level> {
    if roles.contains(ROLE_ADMIN) {
        Some(Level::Admin)
    } else if roles.contains(ROLE_MEMBER) {
        Some(Level::Member)
    } else if roles.contains(ROLE_READER) {
        Some(Level::Reader)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(name: &str, spec: Value) -> Value {
        json!({"metadata": {"name": name, "uid": Uuid::new_v4().to_string(),
               "creationTimestamp": "2026-01-01T00:00:00Z"}, "spec": spec})
    }

    fn directory() -> Directory {
        let mut d = Directory::new();
        d.upsert(
            IdentityKind::Role,
            &object("admin", json!({"implies": ["member"]})),
        )
        .unwrap();
        d.upsert(
            IdentityKind::Role,
            &object("member", json!({"implies": ["reader"]})),
        )
        .unwrap();
        d.upsert(IdentityKind::Role, &object("reader", json!({})))
            .unwrap();
        d.upsert(IdentityKind::User, &object("alice", json!({})))
            .unwrap();
        d.upsert(IdentityKind::Project, &object("team-a", json!({})))
            .unwrap();
        d
    }

    #[test]
    fn roles_imply_and_scope() {
        let mut d = directory();
        let spec = json!({"user": "alice", "role": "member", "project": "team-a"});
        d.upsert(IdentityKind::RoleAssignment, &object("a1", spec))
            .unwrap();
        let roles = d.roles_of("alice", &AssignmentScope::Project("team-a".into()));
        assert_eq!(
            roles.into_iter().collect::<Vec<_>>(),
            vec!["member", "reader"]
        );
        assert!(d.roles_of("alice", &AssignmentScope::System).is_empty());
        assert!(
            d.roles_of("alice", &AssignmentScope::Project("team-b".into()))
                .is_empty()
        );
        d.remove(IdentityKind::Project, "team-a");
        assert!(
            d.roles_of("alice", &AssignmentScope::Project("team-a".into()))
                .is_empty()
        );
    }

    #[test]
    fn replacing_an_assignment_moves_it_between_users() {
        let mut d = directory();
        d.upsert(IdentityKind::User, &object("bob", json!({})))
            .unwrap();
        let team_a = AssignmentScope::Project("team-a".into());
        let spec = json!({"user": "alice", "role": "reader", "project": "team-a"});
        d.upsert(IdentityKind::RoleAssignment, &object("a1", spec))
            .unwrap();
        let spec = json!({"user": "bob", "role": "reader", "project": "team-a"});
        d.upsert(IdentityKind::RoleAssignment, &object("a1", spec))
            .unwrap();
        assert!(d.roles_of("alice", &team_a).is_empty());
        assert_eq!(d.roles_of("bob", &team_a).len(), 1);
        d.remove(IdentityKind::RoleAssignment, "a1");
        assert!(d.roles_of("bob", &team_a).is_empty());
    }

    #[test]
    fn revocations_by_audit_id_and_user() {
        let mut d = directory();
        let user = d.user("alice").unwrap().uid;
        assert!(!d.is_revoked(&user, 100, &["abc".into()]));
        d.upsert(
            IdentityKind::TokenRevocation,
            &object(
                "r1",
                json!({"auditId": "abc", "issuedBefore": 100, "expiresAt": 200}),
            ),
        )
        .unwrap();
        assert!(d.is_revoked(&user, 100, &["abc".into()]));
        assert!(!d.is_revoked(&user, 101, &["abc".into()]));
        assert!(!d.is_revoked(&user, 100, &["xyz".into()]));
        d.upsert(
            IdentityKind::TokenRevocation,
            &object(
                "r2",
                json!({"userId": user.to_string(), "issuedBefore": 150, "expiresAt": 300}),
            ),
        )
        .unwrap();
        assert!(d.is_revoked(&user, 150, &[]));
        assert!(!d.is_revoked(&user, 151, &[]));
        assert_eq!(d.expired_revocations(250), vec!["r1".to_owned()]);
        d.remove(IdentityKind::TokenRevocation, "r2");
        assert!(!d.is_revoked(&user, 150, &[]));
    }

    #[test]
    fn uid_lookup_follows_replacement() {
        let mut d = directory();
        let old = d.user("alice").unwrap().uid;
        d.upsert(
            IdentityKind::User,
            &object("alice", json!({"enabled": false})),
        )
        .unwrap();
        assert!(d.user_by_uid(&old).is_none());
        let new = d.user("alice").unwrap();
        assert!(!new.spec.enabled);
        assert!(d.user_by_uid(&new.uid).is_some());
    }
}
