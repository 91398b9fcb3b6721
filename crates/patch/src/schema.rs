//! Per-field patch metadata: which list fields strategic merge patch merges and by which key,
//! and how server-side apply treats each list. The types live here; the tables for the
//! built-in kinds are data in `schema/builtin.rs`.
//!
//! A schema only needs to describe the path down to fields that are not "merge maps, replace
//! lists": a field it does not name is navigated without metadata, so its maps merge and its
//! lists are replaced.

mod builtin;

pub use builtin::{builtin_kinds, builtin_schema, custom_resource_schema};

/// The fields of one object type that need patch metadata.
#[derive(Debug)]
pub struct TypeSchema {
    /// The OpenAPI name of the type (`io.k8s.api.core.v1.PodSpec`), for diagnostics.
    pub name: &'static str,
    /// The fields that carry metadata or lead to fields that do.
    pub fields: &'static [FieldSchema],
}

impl TypeSchema {
    /// The metadata of field `name`, if this schema describes it.
    pub fn field(&self, name: &str) -> Option<&'static FieldSchema> {
        // Every schema is static, so the borrow can outlive `self`.
        let fields: &'static [FieldSchema] = self.fields;
        fields.iter().find(|field| field.name == name)
    }
}

/// One field of an object type.
#[derive(Debug)]
pub struct FieldSchema {
    /// The JSON name of the field.
    pub name: &'static str,
    /// The schema of the field's value when it is an object, or of its items when it is a
    /// list of objects. `None` when nothing below needs metadata.
    pub child: Option<&'static TypeSchema>,
    /// How strategic merge patch treats the field when it is a list
    /// (`x-kubernetes-patch-strategy`, `x-kubernetes-patch-merge-key`).
    pub patch_strategy: PatchStrategy,
    /// How server-side apply treats the field when it is a list
    /// (`x-kubernetes-list-type`, `x-kubernetes-list-map-keys`).
    pub list_type: ListType,
}

/// Strategic merge patch behaviour of a list field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchStrategy {
    /// The patch's list replaces the live one (the default).
    Replace,
    /// A list of objects merged item by item: items are matched by this key, unmatched patch
    /// items are appended, `$patch: delete` items remove their match.
    MergeByKey(&'static str),
    /// A list of primitive values merged as a set (`metadata.finalizers`).
    MergeSet,
}

/// Server-side apply behaviour of a list field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListType {
    /// The applied list replaces the live one (the default).
    Atomic,
    /// A set of primitive values: applied values are added to the live ones.
    Set,
    /// A list of objects identified by these keys: applied items are merged into the live
    /// item with the same keys, or appended.
    Map(&'static [&'static str]),
}

impl FieldSchema {
    /// A field holding an object (or a list of objects that is replaced) whose own fields
    /// need metadata.
    pub const fn object(name: &'static str, child: &'static TypeSchema) -> Self {
        FieldSchema {
            name,
            child: Some(child),
            patch_strategy: PatchStrategy::Replace,
            list_type: ListType::Atomic,
        }
    }

    /// A list of objects merged by `merge_key` in strategic merge patch and identified by
    /// `map_keys` in server-side apply (usually the same key, sometimes with more).
    pub const fn keyed_list(
        name: &'static str,
        merge_key: &'static str,
        map_keys: &'static [&'static str],
        child: Option<&'static TypeSchema>,
    ) -> Self {
        FieldSchema {
            name,
            child,
            patch_strategy: PatchStrategy::MergeByKey(merge_key),
            list_type: ListType::Map(map_keys),
        }
    }

    /// A list of primitive values merged as a set by both patch kinds.
    pub const fn set(name: &'static str) -> Self {
        FieldSchema {
            name,
            child: None,
            patch_strategy: PatchStrategy::MergeSet,
            list_type: ListType::Set,
        }
    }

    /// A list that both patch kinds replace wholesale. Listed only to document that the
    /// replacement is deliberate; an unlisted field behaves the same.
    pub const fn atomic(name: &'static str) -> Self {
        FieldSchema {
            name,
            child: None,
            patch_strategy: PatchStrategy::Replace,
            list_type: ListType::Atomic,
        }
    }
}

/// The schema of field `name` of an object described by `schema`, if any.
pub(crate) fn field_of(schema: Option<&TypeSchema>, name: &str) -> Option<&'static FieldSchema> {
    schema.and_then(|schema| schema.field(name))
}
