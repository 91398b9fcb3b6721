//! The kind registry: every kind the API serves is declared once here, as a `KindSpec`,
//! and the same registry drives routing, discovery, OpenAPI, tables and storage keys, so
//! they cannot disagree. See `docs/dev/adding-a-kind.md`.

use std::collections::BTreeMap;
use std::sync::Arc;

use ronghe_api_types::validation::{FieldCause, NameRule};
use serde_json::Value;

/// Whether a kind lives in a namespace or at cluster scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Namespaced,
    Cluster,
}

/// How a kind's request bodies are decoded and normalised.
///
/// `normalize` parses the body into the kind's typed model and back, so that values of the
/// wrong type are rejected, defaults of the wire format apply and unknown fields are
/// dropped; it returns the dotted paths of the unknown fields it dropped, for
/// `fieldValidation=Strict|Warn`.
pub type NormalizeFn = fn(Value) -> Result<(Value, Vec<String>), String>;

/// Kind-specific defaulting, run on create and on every update (after normalisation).
pub type DefaultFn = fn(&mut Value);

/// Kind-specific validation of a new object (`old` is set on update); returns field causes.
pub type ValidateFn = fn(new: &Value, old: Option<&Value>) -> Vec<FieldCause>;

/// Reads one field of an object for a field selector or a table cell.
pub type FieldFn = fn(&Value) -> Option<String>;

/// Adds what an object uses to a quota usage, beyond the one-of-its-kind every namespaced
/// object counts as (see `crate::quota`).
pub type UsageFn = fn(&Value, &mut crate::quota::Usage);

/// Admission that needs other objects: completes an object from them (a VM's flavor, a
/// port's addresses) or refuses it. Runs on create and on updates of the object itself (not
/// of its status), after defaulting and validation.
pub type AdmitFn = for<'a> fn(
    &'a crate::engine::Engine,
    &'a mut Value,
    Admission<'a>,
) -> futures::future::BoxFuture<'a, crate::error::ApiResult<()>>;

/// What an admission is asked about besides the object.
#[derive(Clone, Copy, Debug, Default)]
pub struct Admission<'a> {
    /// The stored object an update changes (`None` on create).
    pub old: Option<&'a Value>,
    /// The write is a dry run: what admission makes for the object (a load balancer's VIP
    /// port, a Service's load balancer) is made as a dry run too, so nothing is left.
    pub dry_run: bool,
}

impl Admission<'_> {
    /// The options for a write admission makes for the object.
    pub fn write_options(&self) -> crate::engine::WriteOptions {
        crate::engine::WriteOptions {
            dry_run: self.dry_run,
            ..crate::engine::WriteOptions::default()
        }
    }
}

/// The unique keys an object holds while it exists (see `crate::engine::claims`).
pub type ClaimsFn = fn(&Value) -> Vec<crate::engine::Claim>;

/// A table column as `kubectl get` shows it.
#[derive(Clone, Debug)]
pub struct Column {
    pub name: &'static str,
    /// OpenAPI type: "string", "integer", "number", "boolean", "date".
    pub type_: &'static str,
    pub format: &'static str,
    pub description: &'static str,
    /// 0: always shown; 1: only with `-o wide`.
    pub priority: i32,
    pub cell: ColumnCell,
}

impl Column {
    /// The `Name` column every kind starts with.
    pub fn name() -> Self {
        Self {
            name: "Name",
            type_: "string",
            format: "name",
            description: "Name must be unique within a namespace.",
            priority: 0,
            cell: ColumnCell::Name,
        }
    }

    /// The `Age` column.
    pub fn age() -> Self {
        Self {
            name: "Age",
            type_: "string",
            format: "",
            description: "The time since the object was created.",
            priority: 0,
            cell: ColumnCell::Age,
        }
    }

    /// A kind-specific column shown by default.
    pub fn value(
        name: &'static str,
        type_: &'static str,
        description: &'static str,
        cell: fn(&Value) -> Value,
    ) -> Self {
        Self::shown(name, type_, description, ColumnCell::Value(cell))
    }

    /// A column showing the text at a path of object keys.
    pub fn text(
        name: &'static str,
        description: &'static str,
        path: &'static [&'static str],
    ) -> Self {
        Self::shown(name, "string", description, ColumnCell::Text(path))
    }

    /// A column showing the age of the first timestamp present among `paths`.
    pub fn age_of(
        name: &'static str,
        description: &'static str,
        paths: &'static [&'static [&'static str]],
    ) -> Self {
        Self::shown(name, "string", description, ColumnCell::AgeOf(paths))
    }

    /// A column shown by default (priority 0), without a format.
    fn shown(
        name: &'static str,
        type_: &'static str,
        description: &'static str,
        cell: ColumnCell,
    ) -> Self {
        Self {
            name,
            type_,
            format: "",
            description,
            priority: 0,
            cell,
        }
    }

    /// Shown only with `-o wide`.
    pub fn wide(mut self) -> Self {
        self.priority = 1;
        self
    }
}

/// Where a column's cell comes from.
#[derive(Clone, Debug)]
pub enum ColumnCell {
    /// `metadata.name`.
    Name,
    /// The object's age, rendered the way kubectl expects (`5m`, `3h2m`).
    Age,
    /// The text at a path of object keys (empty when absent).
    Text(&'static [&'static str]),
    /// The age of the first timestamp present among the paths (`<unknown>` if none).
    AgeOf(&'static [&'static [&'static str]]),
    /// A kind-specific value.
    Value(fn(&Value) -> Value),
}

/// Subresources a kind serves besides the object itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Subresources {
    /// `/status`: the main endpoint ignores `.status`; `/status` changes only `.status`.
    pub status: bool,
    /// `/scale` (autoscaling/v1 Scale) over `.spec.replicas` and `.status.replicas`.
    pub scale: bool,
}

/// One kind, declared once.
#[derive(Clone)]
pub struct KindSpec {
    /// API group; "" is the core group served under `/api`.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// The plural resource name used in URLs.
    pub plural: &'static str,
    pub singular: &'static str,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub scope: Scope,
    pub subresources: Subresources,
    /// Whether strategic merge patch applies (built-in kinds only; our own kinds behave
    /// like CRDs and take merge, JSON and apply patches).
    pub strategic_merge: bool,
    /// Whether `metadata.generation` is kept (bumped on spec changes).
    pub has_generation: bool,
    /// The shape names must have.
    pub name_rule: NameRule,
    pub normalize: NormalizeFn,
    pub default: Option<DefaultFn>,
    /// Adjusts an update of the object itself from the stored object, before defaulting
    /// and validation (a Service drops what its new type has no use for, as Kubernetes'
    /// `PrepareForUpdate` does).
    pub prepare_update: Option<fn(&mut Value, &Value)>,
    pub validate: Option<ValidateFn>,
    /// Extra field-selector fields beyond `metadata.name` and `metadata.namespace`.
    pub fields: &'static [(&'static str, FieldFn)],
    /// Columns for `kubectl get`; empty means the default Name and Age.
    pub columns: Vec<Column>,
    /// Whether clients may only read the kind (controllers write it in-process).
    pub verbs_readonly: bool,
    /// Whether the kind keeps finalizers of its own in `spec.finalizers` (namespaces): they
    /// hold a deletion like `metadata.finalizers` do, and change only through `/finalize`.
    pub spec_finalizers: bool,
    /// Names the API refuses to delete (the system namespaces).
    pub undeletable: &'static [&'static str],
    /// Called when an object is marked for deletion (a namespace turns Terminating).
    pub on_deletion: Option<fn(&mut Value)>,
    /// What an object uses that quotas limit, beyond its count.
    pub usage: Option<UsageFn>,
    /// For objects a host must stop before they go (bound pods): the grace period a
    /// delete gives by default, or `None` when the object may go at once. The object is
    /// then kept, marked, until a delete with a grace period of 0 (its host's, or
    /// `--force`).
    pub graceful_delete: Option<fn(&Value) -> Option<i64>>,
    /// Admission against other objects, on create and update.
    pub admit: Option<AdmitFn>,
    /// Unique keys its objects hold (addresses, MACs, VNIs), created and removed with them.
    pub claims: Option<ClaimsFn>,
}

impl std::fmt::Debug for KindSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KindSpec")
            .field("group", &self.group)
            .field("version", &self.version)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl KindSpec {
    /// `v1` for the core group, `group/version` otherwise.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The resource name used in messages: `configmaps`, `leases.coordination.k8s.io`.
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_owned()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub fn namespaced(&self) -> bool {
        self.scope == Scope::Namespaced
    }

    /// The store key prefix for all objects of this kind.
    pub fn key_prefix(&self) -> String {
        let group = if self.group.is_empty() {
            "core"
        } else {
            self.group
        };
        format!("/{group}/{}/", self.plural)
    }

    /// The store key prefix for the objects of this kind in one namespace (or all of them).
    pub fn key_prefix_in(&self, namespace: Option<&str>) -> String {
        match (self.scope, namespace) {
            (Scope::Namespaced, Some(namespace)) => format!("{}{namespace}/", self.key_prefix()),
            _ => self.key_prefix(),
        }
    }

    /// The store key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match (self.scope, namespace) {
            (Scope::Namespaced, Some(namespace)) => {
                format!("{}{namespace}/{name}", self.key_prefix())
            }
            _ => format!("{}{name}", self.key_prefix()),
        }
    }

    /// Reads a selectable field of an object.
    pub fn field(&self, object: &Value, path: &str) -> Option<Option<String>> {
        match path {
            "metadata.name" => Some(crate::object::str_at(object, &["metadata", "name"])),
            "metadata.namespace" => Some(
                crate::object::str_at(object, &["metadata", "namespace"]).or_else(|| {
                    // Cluster-scoped objects match an empty namespace.
                    (!self.namespaced()).then(String::new)
                }),
            ),
            _ => self
                .fields
                .iter()
                .find(|(name, _)| *name == path)
                .map(|(_, read)| read(object)),
        }
    }

    /// The verbs discovery advertises.
    pub fn verbs(&self) -> &'static [&'static str] {
        if self.verbs_readonly {
            &["get", "list", "watch"]
        } else {
            &[
                "create",
                "delete",
                "deletecollection",
                "get",
                "list",
                "patch",
                "update",
                "watch",
            ]
        }
    }
}

/// A served group-version and its kinds, in registration order.
#[derive(Clone, Debug)]
pub struct GroupVersion {
    pub group: &'static str,
    pub version: &'static str,
    pub kinds: Vec<Arc<KindSpec>>,
}

impl GroupVersion {
    pub fn group_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

/// All kinds the server serves.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    kinds: Vec<Arc<KindSpec>>,
    by_resource: BTreeMap<(&'static str, &'static str, &'static str), Arc<KindSpec>>,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("kind {group}/{version} {plural} is registered twice")]
    Duplicate {
        group: &'static str,
        version: &'static str,
        plural: &'static str,
    },
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a kind; a (group, version, plural) may be registered once.
    pub fn register(&mut self, spec: KindSpec) -> Result<(), RegistryError> {
        let index = (spec.group, spec.version, spec.plural);
        if self.by_resource.contains_key(&index) {
            return Err(RegistryError::Duplicate {
                group: spec.group,
                version: spec.version,
                plural: spec.plural,
            });
        }
        let spec = Arc::new(spec);
        self.by_resource.insert(index, spec.clone());
        self.kinds.push(spec);
        Ok(())
    }

    pub fn kinds(&self) -> &[Arc<KindSpec>] {
        &self.kinds
    }

    /// Looks a kind up by the URL segments that name it.
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<&Arc<KindSpec>> {
        self.kinds
            .iter()
            .find(|k| k.group == group && k.version == version && k.plural == plural)
    }

    /// Looks a kind up by `apiVersion` and `kind`.
    pub fn lookup_kind(&self, api_version: &str, kind: &str) -> Option<&Arc<KindSpec>> {
        self.kinds
            .iter()
            .find(|k| k.kind == kind && k.api_version() == api_version)
    }

    /// The served group-versions, core first, then groups in registration order.
    pub fn group_versions(&self) -> Vec<GroupVersion> {
        let mut out: Vec<GroupVersion> = Vec::new();
        for kind in &self.kinds {
            match out
                .iter_mut()
                .find(|gv| gv.group == kind.group && gv.version == kind.version)
            {
                Some(gv) => gv.kinds.push(kind.clone()),
                None => out.push(GroupVersion {
                    group: kind.group,
                    version: kind.version,
                    kinds: vec![kind.clone()],
                }),
            }
        }
        out.sort_by_key(|gv| !gv.group.is_empty());
        out
    }
}
