//! Glance's image patches (`application/openstack-images-v2.1-json-patch`): a JSON patch
//! whose paths are single attributes (`/name`, `/tags`, `/kernel_id`), with `add`,
//! `replace` and `remove`, applied to a spec in order, all or nothing. Pure.

use ronghe_images::model::{ImageSpec, STATUS_QUEUED};
use serde_json::Value;

use super::view::{is_core, is_settable_core, set_attribute};
use super::{bad_request, conflict, forbidden, forbidden_attribute};
use crate::fault::FaultResult;

/// The media type Glance takes patches in.
pub(super) const MEDIA_TYPE: &str = "application/openstack-images-v2.1-json-patch";

/// Applies `patch` to `spec` (of an image in `status`); the patched spec.
pub(super) fn apply(spec: &ImageSpec, status: &str, patch: &Value) -> FaultResult<ImageSpec> {
    let Some(operations) = patch.as_array() else {
        return Err(bad_request(
            "Request body must be a JSON array of operation objects.",
        ));
    };
    let mut patched = spec.clone();
    for operation in operations {
        let op = operation
            .get("op")
            .and_then(Value::as_str)
            .ok_or_else(|| bad_request("Operation objects must name an 'op'."))?;
        let path = operation
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| bad_request("Operation objects must have a 'path'."))?;
        let key = attribute(path)?;
        let value = operation.get("value");
        if matches!(op, "add" | "replace") && value.is_none() {
            return Err(bad_request(format!(
                "Operation '{op}' on '{path}' needs a 'value'."
            )));
        }
        if matches!(key.as_str(), "disk_format" | "container_format") && status != STATUS_QUEUED {
            return Err(forbidden(format!(
                "Attribute {key} can be only replaced for a queued image."
            )));
        }
        let core = is_core(&key);
        match op {
            "add" | "replace" => {
                if op == "replace" && !core && !patched.properties.contains_key(&key) {
                    return Err(conflict(format!("Property {key} does not exist.")));
                }
                set_attribute(&mut patched, &key, value.unwrap_or(&Value::Null))?;
            }
            "remove" => {
                if core {
                    return Err(if is_settable_core(&key) {
                        forbidden(format!("Attribute '{key}' cannot be removed."))
                    } else {
                        forbidden_attribute(&key)
                    });
                }
                if patched.properties.remove(&key).is_none() {
                    return Err(conflict(format!("Property {key} does not exist.")));
                }
            }
            other => {
                return Err(bad_request(format!(
                    "Unsupported patch operation '{other}': Glance takes add, replace and remove."
                )));
            }
        }
    }
    Ok(patched)
}

/// The attribute a path names: one level, JSON-pointer escapes undone.
fn attribute(path: &str) -> FaultResult<String> {
    let invalid = || bad_request(format!("Invalid JSON pointer for this resource: '{path}'"));
    let rest = path.strip_prefix('/').ok_or_else(invalid)?;
    if rest.is_empty() {
        return Err(invalid());
    }
    if let Some((first, _)) = rest.split_once('/') {
        // `/locations/...` is Glance's; we keep no locations.
        return Err(if first == "locations" {
            forbidden_attribute("locations")
        } else {
            invalid()
        });
    }
    Ok(rest.replace("~1", "/").replace("~0", "~"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec() -> ImageSpec {
        let mut spec = ImageSpec {
            name: "old".into(),
            disk_format: Some("raw".into()),
            ..ImageSpec::default()
        };
        spec.properties.insert("k".into(), "v".into());
        spec
    }

    #[test]
    fn patches_apply_in_order() {
        let patched = apply(
            &spec(),
            "active",
            &json!([
                {"op": "replace", "path": "/name", "value": "new"},
                {"op": "add", "path": "/hw~1x", "value": "1"},
                {"op": "add", "path": "/k", "value": "v2"},
                {"op": "add", "path": "/tags", "value": ["t"]},
                {"op": "replace", "path": "/min_ram", "value": 128},
                {"op": "remove", "path": "/hw~1x"},
            ]),
        )
        .unwrap();
        assert_eq!(patched.name, "new");
        assert_eq!(patched.properties["k"], "v2");
        assert!(!patched.properties.contains_key("hw/x"));
        assert_eq!(patched.tags, ["t"]);
        assert_eq!(patched.min_ram, 128);
    }

    #[test]
    fn bad_patches_are_refused_like_glance() {
        for (patch, status, code) in [
            (json!({"op": "add"}), "queued", 400),
            (
                json!([{"op": "move", "path": "/name", "from": "/k"}]),
                "queued",
                400,
            ),
            (
                json!([{"op": "add", "path": "/tags/0", "value": "x"}]),
                "queued",
                400,
            ),
            (
                json!([{"op": "add", "path": "/locations/-", "value": {}}]),
                "queued",
                403,
            ),
            (
                json!([{"op": "replace", "path": "/status", "value": "active"}]),
                "queued",
                403,
            ),
            (
                json!([{"op": "replace", "path": "/owner", "value": "x"}]),
                "queued",
                403,
            ),
            (
                json!([{"op": "replace", "path": "/missing", "value": "x"}]),
                "queued",
                409,
            ),
            (json!([{"op": "remove", "path": "/missing"}]), "queued", 409),
            (json!([{"op": "remove", "path": "/name"}]), "queued", 403),
            (json!([{"op": "remove", "path": "/size"}]), "queued", 403),
            (
                json!([{"op": "replace", "path": "/disk_format", "value": "qcow2"}]),
                "active",
                403,
            ),
            (json!([{"op": "add", "path": "/name"}]), "queued", 400),
        ] {
            let error = apply(&spec(), status, &patch)
                .err()
                .unwrap_or_else(|| panic!("{patch} applied"));
            assert_eq!(error.code.as_u16(), code, "{patch}: {}", error.message);
        }
        // A queued image may change its formats.
        let patched = apply(
            &spec(),
            "queued",
            &json!([{"op": "replace", "path": "/disk_format", "value": "qcow2"}]),
        )
        .unwrap();
        assert_eq!(patched.disk_format.as_deref(), Some("qcow2"));
    }
}
