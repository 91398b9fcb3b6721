//! The caller of a Neutron request and what it does through the engine: policy checks
//! (`PolicyNotAuthorized`), visibility (a project's own objects; everything for cloud
//! readers and admins), finding objects by id through their `ids/<uid>` claims, creating
//! them under their Neutron name where that is a valid object name, read-modify-write
//! of specs with compare-and-swap, and the attributes every resource shows.

use std::sync::Arc;

use ronghe_api_types::network::API_VERSION;
use ronghe_apiserver::auth::User;
use ronghe_apiserver::engine::{
    DeleteOptions, Engine, ListOptions, Selectors, Target as WriteTarget, WriteOptions,
};
use ronghe_apiserver::identity::{Principal, PrincipalScope};
use ronghe_apiserver::object;
use ronghe_apiserver::registry::KindSpec;
use ronghe_identity::policy::{Target, openstack_rule};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use super::fault::{NeutronFault, NeutronResult};
use super::{BASE, Resource, body, neutron_name, query, text, uid_of, uuid_eq};
use crate::OpenStack;

/// The annotation recording when this face last changed an object (Neutron's `updated_at`).
const UPDATED_AT: &str = "network.ronghe.io/updated-at";

/// How often a read-modify-write is tried again when another writer got there first.
const WRITE_ATTEMPTS: usize = 8;

/// Who calls, and in which project.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub state: Arc<OpenStack>,
    pub principal: Arc<Principal>,
    /// The project the token is scoped to: (namespace, project id).
    pub project: Option<(String, String)>,
}

impl Ctx {
    pub fn new(state: Arc<OpenStack>, user: &User) -> NeutronResult<Self> {
        let principal = crate::identity::principal_of(user)?;
        let project = match &principal.scope {
            PrincipalScope::Project { uid, name } => Some((name.clone(), uid.simple().to_string())),
            _ => None,
        };
        Ok(Self {
            state,
            principal,
            project,
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.state.engine
    }

    pub fn is_admin(&self) -> bool {
        self.principal.subject.is_cloud_admin()
    }

    /// Cloud readers and admins see every project's objects, as Neutron's admins do.
    pub fn sees_all(&self) -> bool {
        self.principal.subject.cloud.is_some()
    }

    pub fn own_namespace(&self) -> Option<&str> {
        self.project
            .as_ref()
            .map(|(namespace, _)| namespace.as_str())
    }

    /// Whether an object is the caller's own (or the caller sees everything).
    pub fn owns(&self, object: &Value) -> bool {
        self.sees_all()
            || object::namespace(object).is_some_and(|ns| Some(ns) == self.own_namespace())
    }

    /// Checks a policy rule on a project (a namespace).
    pub fn check(&self, rule: &str, namespace: Option<&str>) -> NeutronResult<()> {
        // A token without a project acts in none; cloud readers and admins still read and
        // write everywhere, which any project stands for ("*" names no namespace).
        let project = namespace
            .or(self.own_namespace())
            .or_else(|| self.sees_all().then_some("*"));
        let target = Target {
            project,
            user: None,
        };
        if openstack_rule(rule).allows(&self.principal.subject, &target) {
            Ok(())
        } else {
            Err(NeutronFault::forbidden(rule))
        }
    }

    /// Checks a rule on the caller's own project (reads and lists).
    pub fn check_own(&self, rule: &str) -> NeutronResult<()> {
        let namespace = self.own_namespace().map(str::to_owned);
        self.check(rule, namespace.as_deref())
    }

    /// Checks a rule on an object's project.
    pub fn check_on(&self, rule: &str, object: &Value) -> NeutronResult<()> {
        self.check(rule, object::namespace(object))
    }

    /// The project id of a namespace.
    pub fn project_id(&self, namespace: &str) -> String {
        let directory = self.state.identity.directory();
        directory
            .project(namespace)
            .map_or_else(|| namespace.to_owned(), |p| p.uid.simple().to_string())
    }

    /// The namespace of a project named by id.
    pub fn namespace_of_project(&self, id: &str) -> Option<String> {
        let directory = self.state.identity.directory();
        uuid::Uuid::try_parse(id)
            .ok()
            .and_then(|uid| directory.project_by_uid(&uid))
            .map(|entry| entry.name.clone())
    }

    /// The namespace a new object goes to: the caller's project, or (admins only) the
    /// `project_id`/`tenant_id` the request names.
    pub fn create_namespace(&self, attributes: &body::Attributes) -> NeutronResult<String> {
        let asked = match (
            attributes.string("project_id")?,
            attributes.string("tenant_id")?,
        ) {
            (Some(a), Some(b)) if a != b => {
                return Err(NeutronFault::bad_request(
                    "'project_id' and 'tenant_id' do not match",
                ));
            }
            (a, b) => a.or(b),
        };
        match (asked, &self.project) {
            (Some(id), Some((namespace, own))) if uuid_eq(&id, own) => Ok(namespace.clone()),
            (Some(id), _) => {
                if !self.is_admin() {
                    return Err(NeutronFault::bad_request(
                        "Specifying 'project_id' or 'tenant_id' other than the authenticated project in request requires admin privileges",
                    ));
                }
                self.namespace_of_project(&id).ok_or_else(|| {
                    NeutronFault::bad_request(format!(
                        "Invalid input for operation: project {id} does not exist."
                    ))
                })
            }
            (None, Some((namespace, _))) => Ok(namespace.clone()),
            (None, None) => Err(NeutronFault::bad_request(
                "Invalid input for operation: a project is needed; use a project-scoped token or pass project_id.",
            )),
        }
    }

    pub fn kind(&self, kind: &str) -> NeutronResult<Arc<KindSpec>> {
        Ok(self.engine().kind(API_VERSION, kind)?)
    }

    /// The object of a resource with this id, wherever it is (no visibility check).
    pub async fn fetch(&self, resource: &Resource, id: &str) -> NeutronResult<Option<Value>> {
        let Ok(uid) = uuid::Uuid::try_parse(id) else {
            return Ok(None);
        };
        let kind = self.kind(resource.kind)?;
        Ok(self
            .engine()
            .find_claimed(&kind, &format!("ids/{}", uid.hyphenated()))
            .await?)
    }

    /// The caller's own object (or any, for those who see all) with this id, after the
    /// `get_<resource>` rule; anything else is not found.
    pub async fn fetch_owned(&self, resource: &Resource, id: &str) -> NeutronResult<Value> {
        match self.fetch(resource, id).await? {
            Some(found) if self.owns(&found) => {
                self.check_on(&resource.rule("get"), &found)?;
                Ok(found)
            }
            _ => Err(resource.missing(id)),
        }
    }

    /// Objects of a kind in one namespace (or all), optionally narrowed by a field selector.
    pub async fn list(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        fields: Option<&str>,
    ) -> NeutronResult<Vec<Value>> {
        let kind = self.kind(resource.kind)?;
        let options = ListOptions {
            selectors: Selectors::parse(&kind, None, fields)?,
            ..ListOptions::default()
        };
        Ok(self.engine().list(&kind, namespace, &options).await?.items)
    }

    /// The caller's objects of a kind (everyone's for those who see all).
    pub async fn list_owned(&self, resource: &Resource) -> NeutronResult<Vec<Value>> {
        self.check_own(&resource.rule("get"))?;
        if self.sees_all() {
            return self.list(resource, None, None).await;
        }
        match self.own_namespace() {
            Some(namespace) => {
                let namespace = namespace.to_owned();
                self.list(resource, Some(&namespace), None).await
            }
            None => Ok(Vec::new()),
        }
    }

    /// Creates an object named after its Neutron name where that makes a valid object
    /// name, generated otherwise (or when the name is taken).
    pub async fn create(
        &self,
        resource: &Resource,
        namespace: &str,
        neutron_name: &str,
        spec: Value,
        owner: Option<Value>,
    ) -> NeutronResult<Value> {
        let kind = self.kind(resource.kind)?;
        let mut name = object_name(neutron_name);
        for _ in 0..WRITE_ATTEMPTS {
            let mut metadata = Map::new();
            match &name {
                Some(name) => metadata.insert("name".into(), json!(name)),
                None => metadata.insert("generateName".into(), json!(resource.prefix)),
            };
            if let Some(owner) = &owner {
                metadata.insert("ownerReferences".into(), json!([owner]));
            }
            let body = json!({
                "apiVersion": API_VERSION,
                "kind": resource.kind,
                "metadata": metadata,
                "spec": spec,
            });
            match self
                .engine()
                .create(&kind, Some(namespace), body, &WriteOptions::default())
                .await
            {
                Ok(written) => return Ok(written.object),
                // The name is taken (or a generated one collided): generate another.
                Err(error) if error.code() == 409 && error.status.reason == "AlreadyExists" => {
                    name = None;
                }
                Err(error) => return Err(error.into()),
            }
        }
        Err(NeutronFault::conflict(
            "Conflict",
            format!(
                "Could not find a free name for a new {}.",
                resource.singular
            ),
        ))
    }

    /// Changes an object's spec (typed) by read-modify-write, compare-and-swap on its
    /// resourceVersion, tried again when another writer got there first. A change that
    /// changes nothing writes nothing.
    pub async fn update_spec<S, F>(
        &self,
        resource: &Resource,
        object: &Value,
        mutate: F,
    ) -> NeutronResult<Value>
    where
        S: Serialize + DeserializeOwned + Default + PartialEq,
        F: Fn(&mut S) -> NeutronResult<()>,
    {
        let kind = self.kind(resource.kind)?;
        let namespace = object::namespace(object).map(str::to_owned);
        let name = object::name(object).unwrap_or_default().to_owned();
        let mut current = object.clone();
        for _ in 0..WRITE_ATTEMPTS {
            let before: S = ronghe_api_types::network::spec_of(&current);
            let mut after: S = ronghe_api_types::network::spec_of(&current);
            mutate(&mut after)?;
            if after == before {
                return Ok(current);
            }
            let mut desired = current.clone();
            desired["spec"] = serde_json::to_value(&after).map_err(|error| {
                tracing::error!(%error, "encoding a spec failed");
                NeutronFault::from_api(ronghe_apiserver::error::ApiError::internal(
                    "encoding a spec",
                    &error,
                ))
            })?;
            let annotations = object::metadata_mut(&mut desired)
                .entry("annotations")
                .or_insert_with(|| json!({}));
            if let Some(annotations) = annotations.as_object_mut() {
                annotations.insert(UPDATED_AT.into(), json!(object::now_rfc3339()));
            }
            match self
                .engine()
                .replace(
                    &kind,
                    namespace.as_deref(),
                    &name,
                    desired,
                    WriteTarget::Main,
                    &WriteOptions::default(),
                )
                .await
            {
                Ok(written) => return Ok(written.object),
                Err(error) if is_stale(&error) => {
                    current = match self.engine().get(&kind, namespace.as_deref(), &name).await {
                        Ok(found) => found,
                        Err(error) if error.code() == 404 => {
                            return Err(resource.missing(object::uid(object).unwrap_or_default()));
                        }
                        Err(error) => return Err(error.into()),
                    };
                }
                Err(error) => return Err(error.into()),
            }
        }
        Err(NeutronFault::conflict(
            "Conflict",
            format!(
                "The {} is being changed by someone else; try again.",
                resource.singular
            ),
        ))
    }

    /// Deletes an object; one already gone is not found.
    pub async fn delete(&self, resource: &Resource, object: &Value) -> NeutronResult<()> {
        let kind = self.kind(resource.kind)?;
        let name = object::name(object).unwrap_or_default();
        match self
            .engine()
            .delete(
                &kind,
                object::namespace(object),
                name,
                &DeleteOptions::default(),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(error) if error.code() == 404 => {
                Err(resource.missing(object::uid(object).unwrap_or_default()))
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Deletes an object that may already be gone (clean-up and undo).
    pub async fn delete_quietly(&self, resource: &Resource, object: &Value) {
        if let Err(fault) = self.delete(resource, object).await
            && fault.code != http::StatusCode::NOT_FOUND
        {
            tracing::warn!(
                kind = resource.kind,
                uid = object::uid(object).unwrap_or_default(),
                message = %fault.message,
                "removing an object failed"
            );
        }
    }

    /// The attributes every Neutron resource has: id, name, description, project,
    /// timestamps, revision and tags.
    pub fn standard(&self, object: &Value) -> Map<String, Value> {
        let project = self.project_id(object::namespace(object).unwrap_or_default());
        let created = object::meta_str(object, "creationTimestamp")
            .map(crate::compute::nova_time)
            .unwrap_or_default();
        let updated = object
            .pointer(&format!(
                "/metadata/annotations/{}",
                UPDATED_AT.replace('/', "~1")
            ))
            .and_then(Value::as_str)
            .map(crate::compute::nova_time)
            .unwrap_or_else(|| created.clone());
        let mut view = Map::new();
        view.insert("id".into(), json!(uid_of(object)));
        view.insert("name".into(), json!(neutron_name(object)));
        view.insert(
            "description".into(),
            json!(text(object, "/spec/description")),
        );
        view.insert("tenant_id".into(), json!(project));
        view.insert("project_id".into(), json!(project));
        view.insert("created_at".into(), json!(created));
        view.insert("updated_at".into(), json!(updated));
        view.insert(
            "revision_number".into(),
            json!(
                object
                    .pointer("/metadata/generation")
                    .and_then(Value::as_u64)
                    .unwrap_or(1)
            ),
        );
        view.insert(
            "tags".into(),
            object
                .pointer("/spec/tags")
                .cloned()
                .filter(Value::is_array)
                .unwrap_or_else(|| json!([])),
        );
        view
    }

    /// The URL of a collection, for paging links.
    /// A list answer for `resource`: its views filtered, sorted, trimmed to `fields` and
    /// paged as the query asks.
    pub fn list_answer(
        &self,
        resource: &crate::network::Resource,
        views: Vec<Value>,
        query: &query::Query,
    ) -> NeutronResult<axum::Json<Value>> {
        let collection = self.collection(resource.path, resource.plural);
        Ok(axum::Json(query::respond(collection, views, query)?))
    }

    /// A show answer for `resource`: `{"<singular>": view}`, the view trimmed to the
    /// query's `fields`.
    pub fn show_answer(
        &self,
        resource: &crate::network::Resource,
        view: Value,
        raw_query: Option<&str>,
    ) -> NeutronResult<axum::Json<Value>> {
        let shown = query::select_fields(view, &query::Query::parse(raw_query));
        Ok(axum::Json(serde_json::json!({ resource.singular: shown })))
    }

    pub fn collection(&self, path: &str, key: &'static str) -> query::Collection<'static> {
        query::Collection {
            key,
            url: format!("{}{BASE}/{path}", self.state.public_url),
        }
    }
}

/// Whether an error is a lost compare-and-swap (someone else wrote first).
fn is_stale(error: &ronghe_apiserver::error::ApiError) -> bool {
    error.code() == 409
        && error
            .status
            .message
            .contains("the object has been modified")
}

/// The object name for a Neutron name: the name itself when it is a DNS-1123 subdomain.
fn object_name(neutron_name: &str) -> Option<String> {
    let valid_label = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    let valid = !neutron_name.is_empty()
        && neutron_name.len() <= 253
        && neutron_name.split('.').all(valid_label);
    valid.then(|| neutron_name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_follow_neutron_names_when_valid() {
        assert_eq!(object_name("net1").as_deref(), Some("net1"));
        assert_eq!(object_name("a.b-c").as_deref(), Some("a.b-c"));
        assert_eq!(object_name("Net 1"), None);
        assert_eq!(object_name(""), None);
        assert_eq!(object_name("-x"), None);
    }
}
