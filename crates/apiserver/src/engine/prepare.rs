//! Turning a request body into the object to store: normalisation through the kind's
//! typed model, unknown-field handling, and the metadata rules of create and update
//! (who may set uid, timestamps, generation, status, finalizers).

use rand::Rng;
use ronghe_api_types::validation::{self, FieldCause};
use serde_json::{Map, Value};

use super::{FieldValidation, Target};
use crate::error::{ApiError, ApiResult};
use crate::object;
use crate::registry::KindSpec;

/// The characters Kubernetes uses for `generateName` suffixes (no vowels, no look-alikes).
const GENERATE_NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Normalises a body through the kind's typed model; returns the object and the warnings
/// to send (unknown fields under `Warn`).
pub(super) fn normalize(
    kind: &KindSpec,
    body: Value,
    validation: FieldValidation,
) -> ApiResult<(Value, Vec<String>)> {
    if !body.is_object() {
        return Err(ApiError::bad_request(format!(
            "the body of a {} must be a JSON object",
            kind.kind
        )));
    }
    check_type_meta(kind, &body)?;
    let (mut object, unknown) = (kind.normalize)(body).map_err(|message| {
        ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: {message}",
            kind.kind, kind.version, kind.kind
        ))
    })?;
    let warnings = match validation {
        FieldValidation::Strict if !unknown.is_empty() => {
            let fields: Vec<String> = unknown
                .iter()
                .map(|path| format!("unknown field \"{path}\""))
                .collect();
            return Err(ApiError::bad_request(format!(
                "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
                kind.kind,
                kind.version,
                kind.kind,
                fields.join(", ")
            )));
        }
        FieldValidation::Warn => unknown
            .iter()
            .map(|path| format!("unknown field \"{path}\""))
            .collect(),
        _ => Vec::new(),
    };
    let root = object::ensure_object(&mut object);
    root.insert("apiVersion".into(), Value::String(kind.api_version()));
    root.insert("kind".into(), Value::String(kind.kind.into()));
    Ok((object, warnings))
}

/// A body may omit apiVersion and kind, but must not name another kind.
fn check_type_meta(kind: &KindSpec, body: &Value) -> ApiResult<()> {
    if let Some(api_version) = body.get("apiVersion").and_then(Value::as_str)
        && !api_version.is_empty()
        && api_version != kind.api_version()
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({})",
            kind.api_version()
        )));
    }
    if let Some(body_kind) = body.get("kind").and_then(Value::as_str)
        && !body_kind.is_empty()
        && body_kind != kind.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({body_kind}) does not match the expected kind ({})",
            kind.kind
        )));
    }
    Ok(())
}

/// Applies the metadata rules of create to a normalised object.
pub(super) fn for_create(
    kind: &KindSpec,
    namespace: Option<&str>,
    object: &mut Value,
) -> ApiResult<()> {
    let metadata = object::metadata_mut(object);
    match (kind.namespaced(), namespace) {
        (true, Some(namespace)) => {
            if let Some(body_namespace) = metadata.get("namespace").and_then(Value::as_str)
                && !body_namespace.is_empty()
                && body_namespace != namespace
            {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            metadata.insert("namespace".into(), Value::String(namespace.into()));
        }
        (true, None) => {
            return Err(ApiError::bad_request(format!(
                "{} must be created in a namespace",
                kind.plural
            )));
        }
        (false, _) => {
            metadata.remove("namespace");
        }
    }
    let has_name = metadata
        .get("name")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    if !has_name
        && let Some(prefix) = metadata
            .get("generateName")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
    {
        let name = generate_name(prefix);
        metadata.insert("name".into(), Value::String(name));
    }
    metadata.insert(
        "uid".into(),
        Value::String(uuid::Uuid::new_v4().to_string()),
    );
    metadata.insert(
        "creationTimestamp".into(),
        Value::String(object::now_rfc3339()),
    );
    for field in [
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
        "managedFields",
    ] {
        metadata.remove(field);
    }
    if kind.has_generation {
        metadata.insert("generation".into(), Value::from(1));
    } else {
        metadata.remove("generation");
    }
    if kind.subresources.status
        && let Some(root) = object.as_object_mut()
    {
        root.remove("status");
    }
    finish(kind, object, None)
}

/// Applies the metadata rules of update: `desired` is what the client asked for, `current`
/// the stored object; the result keeps what clients may not change.
pub(super) fn for_update(
    kind: &KindSpec,
    current: &Value,
    mut desired: Value,
    target: Target,
) -> ApiResult<Value> {
    let name = object::name(current).unwrap_or_default().to_owned();
    if let Some(desired_name) = object::name(&desired)
        && desired_name != name
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({desired_name}) does not match the name on the URL ({name})"
        )));
    }
    if let (Some(want), Some(have)) = (object::namespace(&desired), object::namespace(current))
        && want != have
    {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    if let (Some(want), Some(have)) = (object::uid(&desired), object::uid(current))
        && want != have
    {
        return Err(ApiError::precondition_failed(
            kind,
            &name,
            format!("Precondition failed: UID in precondition: {want}, UID in object meta: {have}"),
        ));
    }
    if target == Target::Status {
        // Writes to /status change only .status.
        let status = desired.get("status").cloned();
        desired = current.clone();
        let root = object::ensure_object(&mut desired);
        match status {
            Some(status) => root.insert("status".into(), status),
            None => root.remove("status"),
        };
    } else if target == Target::Finalize {
        // Writes to /finalize change only spec.finalizers.
        let finalizers = object::value_at(&desired, &["spec", "finalizers"]).cloned();
        desired = current.clone();
        set_spec_finalizers(&mut desired, finalizers);
    } else if kind.subresources.status {
        // Writes to the object itself leave .status alone.
        let root = object::ensure_object(&mut desired);
        match current.get("status") {
            Some(status) => root.insert("status".into(), status.clone()),
            None => root.remove("status"),
        };
    }
    if target == Target::Main
        && let Some(prepare_update) = kind.prepare_update
    {
        prepare_update(&mut desired, current);
    }
    if target == Target::Main && kind.spec_finalizers {
        let finalizers = object::value_at(current, &["spec", "finalizers"]).cloned();
        set_spec_finalizers(&mut desired, finalizers);
    }
    let current_meta = object::metadata(current).cloned().unwrap_or_default();
    let metadata = object::metadata_mut(&mut desired);
    for field in [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "managedFields",
    ] {
        copy_field(&current_meta, metadata, field);
    }
    metadata.remove("selfLink");
    if kind.has_generation && object::spec_part(&desired) != object::spec_part(current) {
        let generation = current_meta
            .get("generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        object::metadata_mut(&mut desired).insert("generation".into(), Value::from(generation + 1));
    }
    if object::deletion_timestamp(current).is_some() {
        let before = object::finalizers(current);
        let added: Vec<String> = object::finalizers(&desired)
            .into_iter()
            .filter(|f| !before.contains(f))
            .collect();
        if !added.is_empty() {
            return Err(ApiError::invalid(
                kind,
                &name,
                vec![FieldCause::forbidden(
                    "metadata.finalizers",
                    format!(
                        "no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"
                    ),
                )],
            ));
        }
    }
    finish(kind, &mut desired, Some(current))?;
    Ok(desired)
}

/// apimachinery's checks of `ownerReferences` (each names its owner fully; at most one
/// is the controller) and of finalizer names (qualified names).
fn owner_and_finalizer_causes(object: &Value) -> Vec<FieldCause> {
    let mut causes = Vec::new();
    let references = object::value_at(object, &["metadata", "ownerReferences"])
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut controllers = 0;
    for (index, reference) in references.iter().enumerate() {
        for field in ["apiVersion", "kind", "name", "uid"] {
            if reference
                .get(field)
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                causes.push(FieldCause::required(
                    format!("metadata.ownerReferences[{index}].{field}"),
                    "",
                ));
            }
        }
        if reference.get("controller").and_then(Value::as_bool) == Some(true) {
            controllers += 1;
        }
    }
    if controllers > 1 {
        causes.push(FieldCause::invalid(
            "metadata.ownerReferences",
            Value::Null,
            "Only one reference can have Controller set to true",
        ));
    }
    for (index, finalizer) in object::finalizers(object).iter().enumerate() {
        for message in validation::is_qualified_name(finalizer) {
            causes.push(FieldCause::invalid(
                format!("metadata.finalizers[{index}]"),
                finalizer.as_str(),
                message,
            ));
        }
    }
    causes
}

fn set_spec_finalizers(object: &mut Value, finalizers: Option<Value>) {
    let root = object::ensure_object(object);
    let spec = object::ensure_object(
        root.entry("spec")
            .or_insert_with(|| Value::Object(Map::new())),
    );
    match finalizers {
        Some(finalizers) => spec.insert("finalizers".into(), finalizers),
        None => spec.remove("finalizers"),
    };
}

fn copy_field(from: &Map<String, Value>, to: &mut Map<String, Value>, field: &str) {
    match from.get(field) {
        Some(value) => to.insert(field.into(), value.clone()),
        None => to.remove(field),
    };
}

/// Defaulting and validation shared by create and update.
fn finish(kind: &KindSpec, object: &mut Value, current: Option<&Value>) -> ApiResult<()> {
    drop_empty_metadata(object);
    if let Some(default) = kind.default {
        default(object);
    }
    let name = object::name(object).unwrap_or_default().to_owned();
    let metadata = object.get("metadata");
    let mut causes = match current {
        None => validation::validate_object_meta(metadata, kind.namespaced(), kind.name_rule),
        Some(_) => {
            let field = |key: &str| metadata.and_then(|m| m.get(key));
            let mut causes = validation::validate_labels(field("labels"), "metadata.labels");
            causes.extend(validation::validate_annotations(
                field("annotations"),
                "metadata.annotations",
            ));
            causes
        }
    };
    causes.extend(owner_and_finalizer_causes(object));
    if let Some(validate) = kind.validate {
        causes.extend(validate(object, current));
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(kind, &name, causes))
    }
}

/// Empty lists and maps in metadata are stored as absent, as Kubernetes does (its Go
/// types omit them). Clients rely on it: kube-runtime's finalizer helper tests that
/// `finalizers` is absent before adding the first one.
fn drop_empty_metadata(object: &mut Value) {
    let metadata = object::metadata_mut(object);
    for field in ["finalizers", "ownerReferences", "labels", "annotations"] {
        let empty = match metadata.get(field) {
            Some(Value::Array(items)) => items.is_empty(),
            Some(Value::Object(map)) => map.is_empty(),
            Some(Value::Null) => true,
            _ => false,
        };
        if empty {
            metadata.remove(field);
        }
    }
}

fn generate_name(prefix: &str) -> String {
    let mut rng = rand::rng();
    let suffix: String = (0..5)
        .map(|_| GENERATE_NAME_ALPHABET[rng.random_range(0..GENERATE_NAME_ALPHABET.len())] as char)
        .collect();
    // Keep the whole name within 63 characters, as apiserver does.
    let keep = prefix.len().min(58);
    let prefix = prefix.get(..keep).unwrap_or(prefix);
    format!("{prefix}{suffix}")
}
