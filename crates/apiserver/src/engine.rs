//! The generic resource engine: get, list, create, update, patch, delete and watch for
//! every registered kind, over the revisioned store. HTTP handlers and in-process
//! controllers both go through it, so every write gets the same validation, defaulting,
//! metadata rules, no-op suppression and finalizer handling.
//!
//! Objects are stored as JSON without `metadata.resourceVersion`; the resourceVersion a
//! client sees is the store's modification revision of the key.

pub mod claims;
mod delete;
mod list;
mod prepare;
mod quota;
mod watch;
mod write;

use std::sync::Arc;

use bytes::Bytes;
use ronghe_api_types::selector::{FieldSelector, LabelSelector};
use ronghe_store::{KeyValue, Revision, Store};
use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::registry::{KindSpec, Registry};

pub use claims::Claim;
pub use delete::{
    DeleteOptions, DeleteOutcome, FOREGROUND_FINALIZER, ORPHAN_FINALIZER, Propagation,
};
pub use list::{ListOptions, ObjectList};
pub use watch::{WatchEvent, WatchEventType, WatchOptions, WatchStream};
pub use write::{PatchKind, Stale, Target};

/// How unknown fields in a request body are treated (`fieldValidation`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FieldValidation {
    /// Drop them silently.
    Ignore,
    /// Drop them and warn (the default).
    #[default]
    Warn,
    /// Reject the request with 400.
    Strict,
}

impl FieldValidation {
    pub fn parse(value: &str) -> ApiResult<Self> {
        match value {
            "" | "Warn" => Ok(Self::Warn),
            "Ignore" => Ok(Self::Ignore),
            "Strict" => Ok(Self::Strict),
            other => Err(ApiError::bad_request(format!(
                "fieldValidation must be one of Ignore, Warn or Strict, not {other:?}"
            ))),
        }
    }
}

/// Options common to every write.
#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    /// `dryRun=All`: run the whole write path but persist nothing.
    pub dry_run: bool,
    pub field_manager: Option<String>,
    pub field_validation: FieldValidation,
}

/// The result of a write.
#[derive(Clone, Debug)]
pub struct Written {
    pub object: Value,
    /// Whether the write created the object (201 rather than 200).
    pub created: bool,
    /// Warnings for the `Warning` response header (unknown fields under `Warn`).
    pub warnings: Vec<String>,
}

/// The resource engine. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    store: Arc<dyn Store>,
    registry: Arc<Registry>,
}

impl Engine {
    pub fn new(store: Arc<dyn Store>, registry: Arc<Registry>) -> Self {
        Self { store, registry }
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The kind served for `apiVersion` and `kind`, for controllers.
    pub fn kind(&self, api_version: &str, kind: &str) -> ApiResult<Arc<KindSpec>> {
        self.registry
            .lookup_kind(api_version, kind)
            .cloned()
            .ok_or_else(|| {
                ApiError::bad_request(format!("no kind {kind:?} is served in {api_version:?}"))
            })
    }

    /// One object.
    pub async fn get(
        &self,
        kind: &KindSpec,
        namespace: Option<&str>,
        name: &str,
    ) -> ApiResult<Value> {
        let key = kind.key(namespace, name);
        match self.store.get(&key).await {
            Ok(Some(kv)) => decode_stored(kind, &kv.value, kv.mod_revision),
            Ok(None) => Err(ApiError::not_found(kind, name)),
            Err(error) => Err(ApiError::from_store(error, kind, name)),
        }
    }

    /// Reads the raw stored entry of an object, for read-modify-write.
    async fn get_raw(
        &self,
        kind: &KindSpec,
        key: &str,
        name: &str,
    ) -> ApiResult<(KeyValue, Value)> {
        match self.store.get(key).await {
            Ok(Some(kv)) => {
                let object = decode_stored(kind, &kv.value, kv.mod_revision)?;
                Ok((kv, object))
            }
            Ok(None) => Err(ApiError::not_found(kind, name)),
            Err(error) => Err(ApiError::from_store(error, kind, name)),
        }
    }

    /// Checks that the namespace of a new namespaced object exists and is not terminating.
    async fn check_namespace(&self, kind: &KindSpec, name: &str, namespace: &str) -> ApiResult<()> {
        let Some(namespaces) = self.registry.lookup("", "v1", "namespaces") else {
            return Ok(());
        };
        match self.get(namespaces, None, namespace).await {
            Ok(object) if crate::object::deletion_timestamp(&object).is_some() => {
                Err(ApiError::forbidden(
                    &kind.qualified_plural(),
                    name,
                    format!(
                        "unable to create new content in namespace {namespace} because it is being terminated"
                    ),
                ))
            }
            Ok(_) => Ok(()),
            Err(error) if error.code() == 404 => Err(ApiError::namespace_not_found(namespace)),
            Err(error) => Err(error),
        }
    }
}

/// Parses a stored value and stamps it with its resourceVersion.
pub(crate) fn decode_stored(
    kind: &KindSpec,
    value: &Bytes,
    revision: Revision,
) -> ApiResult<Value> {
    let mut object: Value = serde_json::from_slice(value).map_err(|error| {
        ApiError::internal(&format!("stored {} is corrupt", kind.plural), &error)
    })?;
    crate::object::metadata_mut(&mut object).insert(
        "resourceVersion".into(),
        Value::String(revision.to_string()),
    );
    Ok(object)
}

/// Serialises an object for the store, without its resourceVersion.
pub(crate) fn encode_for_store(object: &Value) -> ApiResult<Bytes> {
    let mut object = object.clone();
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("resourceVersion");
    }
    serde_json::to_vec(&object)
        .map(Bytes::from)
        .map_err(|error| ApiError::internal("encoding an object failed", &error))
}

/// Parses a resourceVersion sent by a client.
pub fn parse_resource_version(value: &str) -> ApiResult<Revision> {
    value
        .parse::<Revision>()
        .ok()
        .filter(|rv| *rv >= 0)
        .ok_or_else(|| ApiError::bad_request(format!("invalid resource version: {value:?}")))
}

/// Label and field selectors parsed and checked against a kind.
#[derive(Clone, Debug, Default)]
pub struct Selectors {
    pub labels: Option<LabelSelector>,
    pub fields: Option<FieldSelector>,
    /// Only objects of these projects: in these namespaces, or (for namespaces and
    /// projects themselves) with these names. Set by authorization.
    pub visible: Option<Arc<[String]>>,
}

impl Selectors {
    /// Parses selectors, rejecting field paths the kind cannot select on.
    pub fn parse(kind: &KindSpec, labels: Option<&str>, fields: Option<&str>) -> ApiResult<Self> {
        let labels = match labels.filter(|s| !s.is_empty()) {
            Some(text) => Some(LabelSelector::parse(text).map_err(|error| {
                ApiError::bad_request(format!("unable to parse requirement: {error}"))
            })?),
            None => None,
        };
        let fields = match fields.filter(|s| !s.is_empty()) {
            Some(text) => {
                let selector = FieldSelector::parse(text).map_err(|error| {
                    ApiError::bad_request(format!("invalid field selector: {error}"))
                })?;
                for path in selector.fields() {
                    let known = matches!(path, "metadata.name" | "metadata.namespace")
                        || kind.fields.iter().any(|(name, _)| *name == path);
                    if !known {
                        return Err(ApiError::bad_request(format!(
                            "field label not supported: {path}"
                        )));
                    }
                }
                Some(selector)
            }
            None => None,
        };
        Ok(Self {
            labels,
            fields,
            visible: None,
        })
    }

    /// Narrows the selection to the objects of some projects (`None`: no narrowing).
    pub fn within(mut self, visible: Option<Arc<[String]>>) -> Self {
        self.visible = visible;
        self
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_none() && self.fields.is_none() && self.visible.is_none()
    }

    pub fn matches(&self, kind: &KindSpec, object: &Value) -> bool {
        if let Some(visible) = &self.visible {
            let project = if kind.namespaced() {
                crate::object::namespace(object)
            } else {
                crate::object::name(object)
            };
            if !project.is_some_and(|p| visible.iter().any(|v| v == p)) {
                return false;
            }
        }
        if let Some(labels) = &self.labels
            && !labels.matches(&crate::object::labels(object))
        {
            return false;
        }
        if let Some(fields) = &self.fields
            && !fields.matches(|path| kind.field(object, path).flatten())
        {
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests;
