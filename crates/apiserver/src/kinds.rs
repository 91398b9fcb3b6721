//! The kinds Ronghe serves, declared for the registry. Built-in Kubernetes kinds use the
//! exact wire types of k8s-openapi; `KindSpec::builtin` fills in what those types know
//! (group, version, kind, plural, scope) so a declaration lists only what is particular
//! to the kind.

pub mod apps;
pub mod compute;
mod coordination;
pub mod core;
pub mod discovery;
mod events;
mod identity;
pub mod image;
pub mod loadbalancing;
pub mod network;
pub mod placement;

use k8s_openapi::{Metadata, Resource, ResourceScope};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use ronghe_api_types::validation::NameRule;

use crate::registry::{KindSpec, Registry, RegistryError, Scope, Subresources};

pub use self::core::{
    NAMESPACE_FINALIZER, agent_endpoint, node_condition, node_is_ready, pod_requests,
};
pub use self::identity::normalize_custom;

/// The registry of every kind served today.
pub fn builtin_registry() -> Result<Registry, RegistryError> {
    let mut registry = Registry::new();
    for spec in core::kinds()
        .into_iter()
        .chain(apps::kinds())
        .chain(coordination::kinds())
        .chain(events::kinds())
        .chain(discovery::kinds())
        .chain(identity::kinds())
        .chain(placement::kinds())
        .chain(compute::kinds())
        .chain(image::kinds())
        .chain(network::kinds())
        .chain(loadbalancing::kinds())
    {
        registry.register(spec)?;
    }
    Ok(registry)
}

impl KindSpec {
    /// The declaration of one of our own kinds, with CRD-like defaults (merge, JSON and
    /// apply patches; generations; bodies taken as they are); override fields with struct
    /// update syntax.
    pub fn new(
        group: &'static str,
        version: &'static str,
        kind: &'static str,
        plural: &'static str,
        scope: Scope,
    ) -> KindSpec {
        KindSpec {
            group,
            version,
            kind,
            plural,
            singular: singular_of(kind),
            short_names: &[],
            categories: &[],
            scope,
            subresources: Subresources::default(),
            strategic_merge: false,
            has_generation: true,
            name_rule: NameRule::default(),
            normalize: |value| Ok((value, Vec::new())),
            default: None,
            prepare_update: None,
            validate: None,
            fields: &[],
            columns: Vec::new(),
            verbs_readonly: false,
            spec_finalizers: false,
            undeletable: &[],
            on_deletion: None,
            usage: None,
            graceful_delete: None,
            admit: None,
            claims: None,
        }
    }

    /// The declaration of a built-in kind with everything taken from its k8s-openapi type;
    /// override fields with struct update syntax.
    pub fn builtin<T>() -> KindSpec
    where
        T: Resource + Metadata + Serialize + DeserializeOwned,
        T::Scope: ScopeOf,
    {
        KindSpec {
            strategic_merge: true,
            has_generation: false,
            normalize: normalize_typed::<T>,
            ..KindSpec::new(
                T::GROUP,
                T::VERSION,
                T::KIND,
                T::URL_PATH_SEGMENT,
                <T::Scope as ScopeOf>::SCOPE,
            )
        }
    }
}

/// Maps k8s-openapi's scope marker types to our `Scope`.
pub trait ScopeOf: ResourceScope {
    const SCOPE: Scope;
}

impl ScopeOf for k8s_openapi::NamespaceResourceScope {
    const SCOPE: Scope = Scope::Namespaced;
}

impl ScopeOf for k8s_openapi::ClusterResourceScope {
    const SCOPE: Scope = Scope::Cluster;
}

/// The lower-case singular name of a kind ("ConfigMap" → "configmap").
fn singular_of(kind: &'static str) -> &'static str {
    // Leaked once per registered kind at start-up: the registry lives for the process.
    Box::leak(kind.to_ascii_lowercase().into_boxed_str())
}

/// Normalises a body through the typed model `T`, reporting the unknown fields dropped.
pub fn normalize_typed<T>(mut value: Value) -> Result<(Value, Vec<String>), String>
where
    T: Resource + Serialize + DeserializeOwned,
{
    if let Some(root) = value.as_object_mut() {
        // The typed models insist on these; the engine has already checked them.
        root.insert("apiVersion".into(), Value::String(T::API_VERSION.into()));
        root.insert("kind".into(), Value::String(T::KIND.into()));
    }
    let mut unknown = Vec::new();
    let typed: T = serde_ignored::deserialize(value, |path| unknown.push(path.to_string()))
        .map_err(|error| error.to_string())?;
    let value = serde_json::to_value(&typed).map_err(|error| error.to_string())?;
    Ok((value, unknown))
}

/// The columns kubectl shows for events (of either API group): when last seen (the first
/// of `seen_at` present), type, reason, the object, and the message at `message`.
fn event_columns(
    seen_at: &'static [&'static [&'static str]],
    object: fn(&Value) -> Value,
    message: &'static [&'static str],
) -> Vec<crate::registry::Column> {
    use crate::registry::Column;
    vec![
        Column::age_of("Last Seen", "The time the event was last seen.", seen_at),
        Column::text("Type", "The type of the event.", &["type"]),
        Column::text("Reason", "Why the event happened.", &["reason"]),
        Column::value("Object", "string", "The object the event is about.", object),
        Column::text("Message", "What happened.", message),
    ]
}

/// A string at a path, for field selectors and table cells.
pub(crate) fn text(object: &Value, path: &[&str]) -> Option<String> {
    crate::object::value_at(object, path).and_then(|value| match value {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    })
}

/// The number of entries of a map at a path, as a table cell.
pub(crate) fn count(object: &Value, path: &[&str]) -> usize {
    crate::object::value_at(object, path)
        .and_then(Value::as_object)
        .map_or(0, |map| map.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn registry_builds_and_knows_configmaps() {
        let registry = builtin_registry().expect("builtin kinds are distinct");
        let cm = registry
            .lookup("", "v1", "configmaps")
            .expect("configmaps served");
        assert_eq!(cm.kind, "ConfigMap");
        assert_eq!(cm.singular, "configmap");
        assert!(cm.namespaced());
        let ns = registry
            .lookup("", "v1", "namespaces")
            .expect("namespaces served");
        assert!(!ns.namespaced());
    }

    #[test]
    fn normalize_reports_unknown_fields() {
        let (value, unknown) = normalize_typed::<k8s_openapi::api::core::v1::ConfigMap>(json!({
            "metadata": {"name": "a", "bogus": 1},
            "data": {"k": "v"},
            "extra": true
        }))
        .expect("valid configmap");
        assert_eq!(value["data"]["k"], "v");
        assert!(value.get("extra").is_none());
        assert_eq!(unknown.len(), 2, "{unknown:?}");
    }

    #[test]
    fn normalize_rejects_wrong_types() {
        let result = normalize_typed::<k8s_openapi::api::core::v1::ConfigMap>(json!({
            "metadata": {"name": "a"},
            "data": {"k": 1}
        }));
        assert!(result.is_err());
    }
}
