//! Strategic merge patch for lists: replacement, merging by key, merging as a set, the
//! `$patch` list directives and the element order (`$setElementOrder/<field>`, else the
//! order of the patch list, then the live order).

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::{Directive, ElementOrder, PATCH_DIRECTIVE, merge_object, new_value, parse_directive};
use crate::error::PatchError;
use crate::key::{canonical, item_key};
use crate::path::Path;
use crate::schema::{FieldSchema, PatchStrategy, TypeSchema};

/// Merges a patch list into the live list of a field.
pub(super) fn merge_list(
    live: Vec<Value>,
    patch: &[Value],
    field: Option<&FieldSchema>,
    order: Option<ElementOrder<'_>>,
    path: Path<'_>,
) -> Result<Vec<Value>, PatchError> {
    let child = field.and_then(|field| field.child);
    match field.map_or(PatchStrategy::Replace, |field| field.patch_strategy) {
        PatchStrategy::Replace => replace_list(patch, child, path),
        PatchStrategy::MergeSet => merge_set(live, patch, order, path),
        PatchStrategy::MergeByKey(key) => merge_by_key(live, patch, key, child, order, path),
    }
}

/// Reorders a live list per a `$setElementOrder/<field>` whose field the patch leaves alone.
pub(super) fn reorder_live(
    items: &mut Vec<Value>,
    field: Option<&FieldSchema>,
    order: ElementOrder<'_>,
) -> Result<(), PatchError> {
    let identity: &dyn Fn(&Value) -> Option<String> =
        match field.map_or(PatchStrategy::Replace, |field| field.patch_strategy) {
            // Only merged lists have an identity to order by.
            PatchStrategy::Replace => return Ok(()),
            PatchStrategy::MergeSet => &|item| Some(canonical(item)),
            PatchStrategy::MergeByKey(key) => &move |item| item_key(item, key),
        };
    let order_ids = match field.map(|field| field.patch_strategy) {
        Some(PatchStrategy::MergeByKey(key)) => keyed_order_ids(order, key)?,
        _ => order.items.iter().map(canonical).collect(),
    };
    let server_positions = positions(items, identity);
    let merged = std::mem::take(items);
    *items = enforce_order(merged, identity, &order_ids, &server_positions);
    Ok(())
}

/// A list the patch replaces: its items, rebuilt without directives.
fn replace_list(
    patch: &[Value],
    child: Option<&TypeSchema>,
    path: Path<'_>,
) -> Result<Vec<Value>, PatchError> {
    let mut items = Vec::with_capacity(patch.len());
    for (index, item) in patch.iter().enumerate() {
        let item_path = path.index(index);
        if let Value::Object(map) = item
            && let Some(directive) = map.get(PATCH_DIRECTIVE)
        {
            let directive = parse_directive(directive, item_path)?;
            // A bare marker and a deletion mean nothing in a list that starts empty.
            if directive == Directive::Delete || map.len() == 1 {
                continue;
            }
        }
        items.push(new_value(item, child, item_path)?);
    }
    Ok(items)
}

/// A list of primitives merged as a set (`finalizers`).
fn merge_set(
    live: Vec<Value>,
    patch: &[Value],
    order: Option<ElementOrder<'_>>,
    path: Path<'_>,
) -> Result<Vec<Value>, PatchError> {
    let mut replace = false;
    let mut values = Vec::with_capacity(patch.len());
    for (index, item) in patch.iter().enumerate() {
        let item_path = path.index(index);
        if let Value::Object(map) = item {
            match map.get(PATCH_DIRECTIVE) {
                Some(directive) if map.len() == 1 => match parse_directive(directive, item_path)? {
                    Directive::Replace => replace = true,
                    Directive::Merge => {}
                    Directive::Delete => {
                        return Err(PatchError::DirectiveNotAllowed {
                            path: item_path.pointer(),
                            directive: "$patch: delete".to_owned(),
                        });
                    }
                },
                _ => {
                    return Err(PatchError::ObjectInPrimitiveList {
                        path: item_path.pointer(),
                    });
                }
            }
            continue;
        }
        values.push((index, item));
    }

    let base = if replace { Vec::new() } else { live };
    let identity = |item: &Value| Some(canonical(item));
    let server_positions = positions(&base, &identity);
    let mut seen = HashSet::with_capacity(base.len() + values.len());
    let mut merged = Vec::with_capacity(base.len() + values.len());
    for item in base
        .into_iter()
        .chain(values.iter().map(|(_, item)| (*item).clone()))
    {
        if seen.insert(canonical(&item)) {
            merged.push(item);
        }
    }

    let patch_ids: Vec<(usize, String)> = values
        .iter()
        .map(|(index, item)| (*index, canonical(item)))
        .collect();
    let order_ids = match order {
        Some(order) => {
            let ids: Vec<String> = order.items.iter().map(canonical).collect();
            check_order(&patch_ids, &ids, order, path)?;
            ids
        }
        None => patch_ids.into_iter().map(|(_, id)| id).collect(),
    };
    Ok(enforce_order(
        merged,
        &identity,
        &order_ids,
        &server_positions,
    ))
}

/// A list of objects merged item by item, matched by `key`.
fn merge_by_key(
    live: Vec<Value>,
    patch: &[Value],
    key: &'static str,
    child: Option<&TypeSchema>,
    order: Option<ElementOrder<'_>>,
    path: Path<'_>,
) -> Result<Vec<Value>, PatchError> {
    let mut replace = false;
    let mut deleted = HashSet::new();
    let mut updates = Vec::with_capacity(patch.len());
    for (index, item) in patch.iter().enumerate() {
        let item_path = path.index(index);
        let Value::Object(map) = item else {
            return Err(PatchError::ListItemNotObject {
                path: item_path.pointer(),
                key,
            });
        };
        if let Some(directive) = map.get(PATCH_DIRECTIVE) {
            match parse_directive(directive, item_path)? {
                Directive::Delete => {
                    deleted.insert(required_key(item, key, item_path)?);
                    continue;
                }
                // A bare `{"$patch": "replace"}` replaces the whole list; with a merge key
                // it replaces that one item, which `merge_map` does.
                Directive::Replace if map.len() == 1 => {
                    replace = true;
                    continue;
                }
                Directive::Replace | Directive::Merge => {}
            }
        }
        updates.push((index, map, required_key(item, key, item_path)?));
    }

    let mut merged = if replace { Vec::new() } else { live };
    if !deleted.is_empty() {
        merged.retain(|item| item_key(item, key).is_none_or(|id| !deleted.contains(&id)));
    }
    let identity = move |item: &Value| item_key(item, key);
    let server_positions = positions(&merged, &identity);
    let mut index_of = server_positions.clone();
    for (index, map, id) in &updates {
        let item_path = path.index(*index);
        match index_of.get(id) {
            Some(&position) => {
                let current = std::mem::take(&mut merged[position]);
                merged[position] = merge_object(Some(current), map, child, item_path)?;
            }
            None => {
                index_of.insert(id.clone(), merged.len());
                merged.push(merge_object(None, map, child, item_path)?);
            }
        }
    }

    let patch_ids: Vec<(usize, String)> = updates
        .into_iter()
        .map(|(index, _, id)| (index, id))
        .collect();
    let order_ids = match order {
        Some(order) => {
            let ids = keyed_order_ids(order, key)?;
            check_order(&patch_ids, &ids, order, path)?;
            ids
        }
        None => patch_ids.into_iter().map(|(_, id)| id).collect(),
    };
    Ok(enforce_order(
        merged,
        &identity,
        &order_ids,
        &server_positions,
    ))
}

/// The canonical merge key of a patch item, which must have one.
fn required_key(item: &Value, key: &'static str, path: Path<'_>) -> Result<String, PatchError> {
    item_key(item, key).ok_or_else(|| PatchError::MissingMergeKey {
        path: path.pointer(),
        key,
    })
}

/// The identities a `$setElementOrder` list gives for a list merged by `key`.
fn keyed_order_ids(order: ElementOrder<'_>, key: &'static str) -> Result<Vec<String>, PatchError> {
    order
        .items
        .iter()
        .enumerate()
        .map(|(index, item)| required_key(item, key, order.path.index(index)))
        .collect()
}

/// Checks that the patch list's items appear in the `$setElementOrder` list, in the same
/// relative order (`validatePatchWithSetOrderList`). An empty list on either side passes.
fn check_order(
    patch_ids: &[(usize, String)],
    order_ids: &[String],
    order: ElementOrder<'_>,
    path: Path<'_>,
) -> Result<(), PatchError> {
    if order_ids.is_empty() {
        return Ok(());
    }
    let mut remaining = order_ids.iter();
    for (index, id) in patch_ids {
        if !remaining.any(|ordered| ordered == id) {
            return Err(PatchError::NotInElementOrder {
                path: path.index(*index).pointer(),
                directive: order.directive.to_owned(),
            });
        }
    }
    Ok(())
}

/// The first position of each identity in `items`.
fn positions(
    items: &[Value],
    identity: &dyn Fn(&Value) -> Option<String>,
) -> HashMap<String, usize> {
    let mut positions = HashMap::with_capacity(items.len());
    for (position, item) in items.iter().enumerate() {
        if let Some(id) = identity(item) {
            positions.entry(id).or_insert(position);
        }
    }
    positions
}

/// Orders a merged list as the apiserver does (`normalizeElementOrder`): the items named by
/// `order_ids` follow that order, the other (server-only) items keep their live order, and
/// the two runs are interleaved by live position, a server-only item going first only when
/// it came first in the live list.
fn enforce_order(
    merged: Vec<Value>,
    identity: &dyn Fn(&Value) -> Option<String>,
    order_ids: &[String],
    server_positions: &HashMap<String, usize>,
) -> Vec<Value> {
    let mut order_positions = HashMap::with_capacity(order_ids.len());
    for (position, id) in order_ids.iter().enumerate() {
        order_positions.entry(id.as_str()).or_insert(position);
    }
    let total = merged.len();
    let mut patched = Vec::new();
    let mut server_only = Vec::new();
    for item in merged {
        let id = identity(&item);
        let live_position = id.as_ref().and_then(|id| server_positions.get(id).copied());
        match id
            .as_ref()
            .and_then(|id| order_positions.get(id.as_str()).copied())
        {
            Some(order_position) => patched.push((order_position, live_position, item)),
            None => server_only.push((live_position, item)),
        }
    }
    patched.sort_by_key(|(order_position, _, _)| *order_position);

    let mut ordered = Vec::with_capacity(total);
    let mut left = server_only.into_iter().peekable();
    let mut right = patched.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (Some((Some(server), _)), Some((_, Some(patched), _))) => server < patched,
            (Some(_), Some(_)) => false,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        if take_left {
            ordered.extend(left.next().map(|(_, item)| item));
        } else {
            ordered.extend(right.next().map(|(_, _, item)| item));
        }
    }
    ordered
}
