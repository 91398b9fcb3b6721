//! Kubernetes strategic merge patch (`application/strategic-merge-patch+json`): maps, `null`
//! deletion and the map-level directives (`$patch`, `$retainKeys`, `$setElementOrder/...`,
//! `$deleteFromPrimitiveList/...`). Lists are merged in `strategic/list.rs`.
//!
//! Follows k8s.io/apimachinery `strategicpatch.StrategicMergeMapPatch` as the apiserver calls
//! it (`MergeParallelList`, `IgnoreUnmatchedNulls`), with two deliberate differences:
//! directives never reach the result (Go copies a value the live object lacks verbatim,
//! directives and all), and `$patch: merge` is accepted as the explicit default.

mod list;
#[cfg(test)]
mod tests;

use std::collections::HashSet;

use serde_json::{Map, Value};

use crate::error::PatchError;
use crate::key::canonical;
use crate::path::Path;
use crate::schema::{FieldSchema, TypeSchema, field_of};

pub(crate) const PATCH_DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";

/// Applies a strategic merge patch to `target`.
///
/// `schema` says which lists merge and by which key (see [`crate::builtin_schema`]); fields
/// it does not describe, and every field when it is `None`, are merged like a JSON merge
/// patch: maps merge, lists are replaced. Directives are still honoured there.
///
/// The patch must be an object. On error `target` is left unchanged.
pub fn strategic_merge_patch(
    target: &mut Value,
    patch: &Value,
    schema: Option<&TypeSchema>,
) -> Result<(), PatchError> {
    let Value::Object(patch) = patch else {
        return Err(PatchError::NotAnObject {
            path: Path::Root.pointer(),
        });
    };
    let live = match target {
        Value::Object(live) => live.clone(),
        _ => Map::new(),
    };
    let merged = merge_map(live, patch, schema, Path::Root)?;
    *target = Value::Object(merged);
    Ok(())
}

/// A `$patch` directive value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Directive {
    Replace,
    Merge,
    Delete,
}

/// Parses the `$patch` value found in the object at `path`.
pub(crate) fn parse_directive(value: &Value, path: Path<'_>) -> Result<Directive, PatchError> {
    match value.as_str() {
        Some("replace") => Ok(Directive::Replace),
        Some("merge") => Ok(Directive::Merge),
        Some("delete") => Ok(Directive::Delete),
        _ => Err(PatchError::UnknownPatchDirective {
            path: path.pointer(),
            value: value.to_string(),
        }),
    }
}

/// Whether `key` is a directive rather than a field.
fn is_directive(key: &str) -> bool {
    key == PATCH_DIRECTIVE
        || key == RETAIN_KEYS
        || key.starts_with(SET_ELEMENT_ORDER)
        || key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
}

/// The `$setElementOrder/<field>` list that goes with a patched list.
#[derive(Clone, Copy)]
pub(crate) struct ElementOrder<'a> {
    pub(crate) items: &'a [Value],
    /// The directive's key, for errors.
    pub(crate) directive: &'a str,
    /// Where the directive is in the patch.
    pub(crate) path: Path<'a>,
}

/// Merges `patch` into the live map `live`.
pub(crate) fn merge_map(
    mut live: Map<String, Value>,
    patch: &Map<String, Value>,
    schema: Option<&TypeSchema>,
    path: Path<'_>,
) -> Result<Map<String, Value>, PatchError> {
    if let Some(directive) = patch.get(PATCH_DIRECTIVE) {
        match parse_directive(directive, path)? {
            Directive::Delete => return Ok(Map::new()),
            Directive::Replace => live = Map::new(),
            Directive::Merge => {}
        }
    }
    if let Some(keys) = patch.get(RETAIN_KEYS) {
        retain_keys(&mut live, patch, keys, path)?;
    }
    for (key, value) in patch {
        if let Some(field) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            delete_from_primitive_list(&mut live, field, value, key, path.field(key))?;
        }
    }

    for (key, value) in patch {
        if is_directive(key) {
            continue;
        }
        let field_path = path.field(key);
        let order_key = format!("{SET_ELEMENT_ORDER}{key}");
        let order = match patch.get(&order_key) {
            Some(order) => Some(element_order(order, value, &order_key, &path)?),
            None => None,
        };
        if value.is_null() {
            live.shift_remove(key);
            continue;
        }
        let field = field_of(schema, key);
        match live.get_mut(key) {
            Some(slot) => {
                let current = std::mem::take(slot);
                *slot = merge_field(Some(current), value, field, order, field_path)?;
            }
            None => {
                let merged = merge_field(None, value, field, order, field_path)?;
                live.insert(key.clone(), merged);
            }
        }
    }

    // `$setElementOrder/<field>` without `<field>` in the patch reorders the live list.
    for (key, value) in patch {
        let Some(field) = key.strip_prefix(SET_ELEMENT_ORDER) else {
            continue;
        };
        if patch.contains_key(field) {
            continue;
        }
        let order = ElementOrder {
            items: directive_list(value, key, path.field(key))?,
            directive: key,
            path: path.field(key),
        };
        if let Some(Value::Array(items)) = live.get_mut(field) {
            list::reorder_live(items, field_of(schema, field), order)?;
        }
    }
    Ok(live)
}

/// Merges the patch value of one field into its live value.
fn merge_field(
    live: Option<Value>,
    patch: &Value,
    field: Option<&FieldSchema>,
    order: Option<ElementOrder<'_>>,
    path: Path<'_>,
) -> Result<Value, PatchError> {
    match patch {
        Value::Object(patch) => {
            merge_object(live, patch, field.and_then(|field| field.child), path)
        }
        Value::Array(items) => {
            let live = match live {
                Some(Value::Array(live)) => live,
                _ => Vec::new(),
            };
            Ok(Value::Array(list::merge_list(
                live, items, field, order, path,
            )?))
        }
        scalar => Ok(scalar.clone()),
    }
}

/// Merges an object from the patch into a live value, which is replaced if not an object.
pub(crate) fn merge_object(
    live: Option<Value>,
    patch: &Map<String, Value>,
    schema: Option<&TypeSchema>,
    path: Path<'_>,
) -> Result<Value, PatchError> {
    let live = match live {
        Some(Value::Object(live)) => live,
        _ => Map::new(),
    };
    Ok(Value::Object(merge_map(live, patch, schema, path)?))
}

/// Builds a value that only the patch has, dropping its directives and `null`s.
pub(crate) fn new_value(
    patch: &Value,
    schema: Option<&TypeSchema>,
    path: Path<'_>,
) -> Result<Value, PatchError> {
    match patch {
        Value::Object(patch) => merge_object(None, patch, schema, path),
        Value::Array(items) => Ok(Value::Array(list::merge_list(
            Vec::new(),
            items,
            None,
            None,
            path,
        )?)),
        scalar => Ok(scalar.clone()),
    }
}

/// Checks a `$setElementOrder/<field>` directive found in the map at `path`.
fn element_order<'a>(
    order: &'a Value,
    field_value: &Value,
    directive: &'a str,
    path: &'a Path<'a>,
) -> Result<ElementOrder<'a>, PatchError> {
    let directive_path = path.field(directive);
    let items = directive_list(order, directive, directive_path)?;
    if !(field_value.is_array() || field_value.is_null()) {
        return Err(PatchError::OrderedFieldNotList {
            path: directive_path.pointer(),
            directive: directive.to_owned(),
        });
    }
    Ok(ElementOrder {
        items,
        directive,
        path: directive_path,
    })
}

/// The list value of directive `directive`, found at `path`.
fn directive_list<'a>(
    value: &'a Value,
    directive: &str,
    path: Path<'_>,
) -> Result<&'a [Value], PatchError> {
    value
        .as_array()
        .map(Vec::as_slice)
        .ok_or_else(|| PatchError::DirectiveNotList {
            path: path.pointer(),
            directive: directive.to_owned(),
        })
}

/// `$retainKeys`: drops every live field the list does not name. Every field the patch
/// sets must be named too.
fn retain_keys(
    live: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    keys: &Value,
    path: Path<'_>,
) -> Result<(), PatchError> {
    let directive_path = path.field(RETAIN_KEYS);
    let Value::Array(keys) = keys else {
        return Err(PatchError::DirectiveNotList {
            path: directive_path.pointer(),
            directive: RETAIN_KEYS.to_owned(),
        });
    };
    let mut names = HashSet::with_capacity(keys.len());
    for key in keys {
        let name = key
            .as_str()
            .ok_or_else(|| PatchError::RetainKeysNotStrings {
                path: directive_path.pointer(),
            })?;
        names.insert(name);
    }
    if let Some((field, _)) = patch.iter().find(|(key, value)| {
        !value.is_null() && !is_directive(key) && !names.contains(key.as_str())
    }) {
        return Err(PatchError::NotInRetainKeys {
            path: path.pointer(),
            field: field.clone(),
        });
    }
    live.retain(|key, _| names.contains(key.as_str()));
    Ok(())
}

/// `$deleteFromPrimitiveList/<field>`: removes the listed values from the live list.
fn delete_from_primitive_list(
    live: &mut Map<String, Value>,
    field: &str,
    values: &Value,
    directive: &str,
    path: Path<'_>,
) -> Result<(), PatchError> {
    let Value::Array(values) = values else {
        return Err(PatchError::DirectiveNotList {
            path: path.pointer(),
            directive: directive.to_owned(),
        });
    };
    let mut doomed = HashSet::with_capacity(values.len());
    for (index, value) in values.iter().enumerate() {
        if value.is_object() {
            return Err(PatchError::ObjectInPrimitiveList {
                path: path.index(index).pointer(),
            });
        }
        doomed.insert(canonical(value));
    }
    if let Some(Value::Array(items)) = live.get_mut(field) {
        items.retain(|item| !doomed.contains(&canonical(item)));
    }
    Ok(())
}
