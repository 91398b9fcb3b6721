//! Glance's JSON for images and members, and the create body read into an `ImageSpec`:
//! pure translation, no I/O. Custom properties are flat keys of the image, as in Glance;
//! attributes Glance computes are read-only.

use ronghe_images::blob::HashAlgorithm;
use ronghe_images::model::{
    CONTAINER_FORMATS, DISK_FORMATS, ImageMember, ImageSpec, ImageStatus, MAX_TEXT, Visibility,
};
use serde_json::{Map, Value, json};

use super::{bad_request, forbidden_attribute};
use crate::fault::FaultResult;

/// Attributes the client may not set: Glance computes them.
pub(super) const READ_ONLY: &[&str] = &[
    "status",
    "size",
    "virtual_size",
    "checksum",
    "created_at",
    "updated_at",
    "self",
    "file",
    "schema",
    "direct_url",
    "locations",
    "stores",
];

/// The properties SDKs set to what they computed of a file before uploading it; when
/// not empty, the upload must match them.
pub(super) const OWNER_SPECIFIED_HASHES: &[(&str, HashAlgorithm)] = &[
    ("owner_specified.openstack.sha256", HashAlgorithm::Sha256),
    ("owner_specified.openstack.md5", HashAlgorithm::Md5),
    ("owner_specified.shade.sha256", HashAlgorithm::Sha256),
    ("owner_specified.shade.md5", HashAlgorithm::Md5),
];

/// Property prefixes Glance keeps for itself.
const RESERVED_PREFIXES: &[&str] = &["os_glance"];

/// An image object's parts, as the face reads them.
pub(super) struct Image {
    pub id: String,
    pub namespace: String,
    pub spec: ImageSpec,
    pub status: ImageStatus,
    pub created_at: String,
    pub object: Value,
}

impl Image {
    pub fn from_object(object: Value) -> Image {
        let text = |pointer: &str| {
            object
                .pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        Image {
            id: text("/metadata/name"),
            namespace: text("/metadata/namespace"),
            spec: serde_json::from_value(object.get("spec").cloned().unwrap_or(json!({})))
                .unwrap_or_default(),
            status: serde_json::from_value(object.get("status").cloned().unwrap_or(json!({})))
                .unwrap_or_default(),
            created_at: text("/metadata/creationTimestamp"),
            object,
        }
    }

    /// When it last changed.
    pub fn updated_at(&self) -> &str {
        self.status
            .updated_at
            .as_deref()
            .unwrap_or(&self.created_at)
    }

    /// The object with `spec` and `status` replaced, keeping the resourceVersion read (so
    /// writing it back is a compare-and-swap).
    pub fn to_object(&self) -> Value {
        let mut object = self.object.clone();
        object["spec"] = serde_json::to_value(&self.spec).unwrap_or(Value::Null);
        object["status"] = serde_json::to_value(&self.status).unwrap_or(Value::Null);
        object
    }
}

/// Glance's image JSON. `owner` is the owner project's id.
pub(super) fn image_json(image: &Image, owner: &str) -> Value {
    let spec = &image.spec;
    let status = &image.status;
    let mut body = Map::new();
    // Properties first, so no property can shadow a core attribute.
    for (key, value) in &spec.properties {
        body.insert(key.clone(), json!(value));
    }
    let core = json!({
        "id": image.id,
        "name": if spec.name.is_empty() { Value::Null } else { json!(spec.name) },
        "status": status.status,
        "visibility": spec.visibility,
        "protected": spec.protected,
        "os_hidden": spec.hidden,
        "checksum": status.checksum,
        "os_hash_algo": status.os_hash_algo,
        "os_hash_value": status.os_hash_value,
        "owner": owner,
        "size": status.size,
        "virtual_size": status.virtual_size,
        "min_disk": spec.min_disk,
        "min_ram": spec.min_ram,
        "container_format": spec.container_format,
        "disk_format": spec.disk_format,
        "created_at": image.created_at,
        "updated_at": image.updated_at(),
        "tags": spec.tags,
        "self": format!("/v2/images/{}", image.id),
        "file": format!("/v2/images/{}/file", image.id),
        "schema": "/v2/schemas/image",
    });
    if let Value::Object(core) = core {
        body.extend(core);
    }
    Value::Object(body)
}

/// Glance's member JSON.
pub(super) fn member_json(image_id: &str, member_id: &str, member: &ImageMember) -> Value {
    json!({
        "image_id": image_id,
        "member_id": member_id,
        "status": member.status,
        "created_at": member.created_at,
        "updated_at": member.updated_at,
        "schema": "/v2/schemas/member",
    })
}

/// What a create body asks for.
pub(super) struct NewImage {
    /// The id the client chose.
    pub id: Option<String>,
    /// The owner the client named (a project id or name).
    pub owner: Option<String>,
    pub spec: ImageSpec,
}

/// Reads `POST /v2/images`'s body. `os_hash_algo` with `os_hash_value` (and, from the
/// SDKs, `owner_specified.openstack.sha256`/`md5`) name what the upload must hash to.
pub(super) fn new_image(body: &Value) -> FaultResult<NewImage> {
    let Some(map) = body.as_object() else {
        return Err(bad_request("The request body must be a JSON object."));
    };
    let mut new = NewImage {
        id: None,
        owner: None,
        spec: ImageSpec::default(),
    };
    let mut hash_algorithm = None;
    let mut hash_value = None;
    for (key, value) in map {
        match key.as_str() {
            "id" => {
                let id = string(key, value)?;
                if uuid::Uuid::try_parse(&id).is_err() {
                    return Err(bad_request(format!("{id} is not a valid UUID.")));
                }
                new.id = Some(id.to_ascii_lowercase());
            }
            "owner" => new.owner = Some(string(key, value)?).filter(|o| !o.is_empty()),
            "os_hash_algo" => hash_algorithm = Some(string(key, value)?),
            "os_hash_value" => hash_value = Some(string(key, value)?),
            _ if READ_ONLY.contains(&key.as_str()) => return Err(forbidden_attribute(key)),
            _ => set_attribute(&mut new.spec, key, value)?,
        }
    }
    match (hash_algorithm, hash_value) {
        (Some(algorithm), Some(value)) => {
            let parsed = HashAlgorithm::parse(&algorithm).map_err(|_| {
                bad_request(format!(
                    "os_hash_algo {algorithm} is not supported (md5, sha256 and sha512 are)."
                ))
            })?;
            expect_hash(&mut new.spec, parsed, &value)?;
        }
        (None, None) => {}
        _ => {
            return Err(bad_request(
                "os_hash_algo and os_hash_value are given together.",
            ));
        }
    }
    for (property, algorithm) in OWNER_SPECIFIED_HASHES {
        if let Some(value) = new.spec.property(property).map(str::to_owned) {
            expect_hash(&mut new.spec, *algorithm, &value)?;
        }
    }
    Ok(new)
}

/// Records what the data must hash to; two different expectations of one algorithm are a
/// contradiction.
fn expect_hash(spec: &mut ImageSpec, algorithm: HashAlgorithm, value: &str) -> FaultResult<()> {
    let value = value.to_ascii_lowercase();
    if !algorithm.is_valid_hash(&value) {
        return Err(bad_request(format!(
            "{value} is not a {algorithm} hash ({} hex digits).",
            algorithm.hex_length()
        )));
    }
    match spec.expected_hashes.get(algorithm.as_str()) {
        Some(other) if *other != value => Err(bad_request(format!(
            "Two different {algorithm} hashes are expected of the data: {other} and {value}."
        ))),
        _ => {
            spec.expected_hashes
                .insert(algorithm.as_str().to_owned(), value);
            Ok(())
        }
    }
}

fn string(key: &str, value: &Value) -> FaultResult<String> {
    value
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| bad_request(format!("{value} is not of type 'string' ({key}).")))
}

fn integer(key: &str, value: &Value) -> FaultResult<i64> {
    match value.as_i64() {
        Some(number) if number >= 0 => Ok(number),
        _ => Err(bad_request(format!(
            "{value} is not a valid value for {key}: it must be an integer of at least 0."
        ))),
    }
}

fn boolean(key: &str, value: &Value) -> FaultResult<bool> {
    value
        .as_bool()
        .ok_or_else(|| bad_request(format!("{value} is not of type 'boolean' ({key}).")))
}

/// One of `allowed`, or null for none.
fn choice(key: &str, value: &Value, allowed: &[&str]) -> FaultResult<Option<String>> {
    if value.is_null() {
        return Ok(None);
    }
    let text = string(key, value)?;
    if allowed.contains(&text.as_str()) {
        Ok(Some(text))
    } else {
        Err(bad_request(format!(
            "Invalid value '{text}' for {key}: it must be one of {}.",
            allowed.join(", ")
        )))
    }
}

/// Sets a settable attribute (core or custom) of a spec from Glance JSON.
pub(super) fn set_attribute(spec: &mut ImageSpec, key: &str, value: &Value) -> FaultResult<()> {
    match key {
        "name" => {
            let name = if value.is_null() {
                String::new()
            } else {
                string(key, value)?
            };
            if name.len() > MAX_TEXT {
                return Err(bad_request(format!(
                    "The name is longer than {MAX_TEXT} characters."
                )));
            }
            spec.name = name;
        }
        "visibility" => {
            let visibility = string(key, value)?;
            if Visibility::parse(&visibility).is_none() {
                return Err(bad_request(format!(
                    "Invalid visibility value: {visibility}"
                )));
            }
            spec.visibility = visibility;
        }
        "protected" => spec.protected = boolean(key, value)?,
        "os_hidden" => spec.hidden = boolean(key, value)?,
        "min_disk" => spec.min_disk = integer(key, value)?,
        "min_ram" => spec.min_ram = integer(key, value)?,
        "disk_format" => spec.disk_format = choice(key, value, DISK_FORMATS)?,
        "container_format" => spec.container_format = choice(key, value, CONTAINER_FORMATS)?,
        "tags" => {
            let Some(items) = value.as_array() else {
                return Err(bad_request(format!(
                    "{value} is not of type 'array' (tags)."
                )));
            };
            let mut tags: Vec<String> = Vec::new();
            for item in items {
                let tag = string(key, item)?;
                if tag.is_empty() || tag.len() > MAX_TEXT {
                    return Err(bad_request(format!(
                        "Invalid tag {tag:?}: a tag is 1 to {MAX_TEXT} characters."
                    )));
                }
                if !tags.contains(&tag) {
                    tags.push(tag);
                }
            }
            spec.tags = tags;
        }
        "id" | "owner" | "os_hash_algo" | "os_hash_value" => {
            return Err(forbidden_attribute(key));
        }
        _ if READ_ONLY.contains(&key) => return Err(forbidden_attribute(key)),
        _ if RESERVED_PREFIXES.iter().any(|p| key.starts_with(p)) => {
            return Err(crate::image::forbidden(format!(
                "Attribute '{key}' is reserved."
            )));
        }
        _ => {
            if key.is_empty() || key.len() > MAX_TEXT {
                return Err(bad_request(format!(
                    "Property names are 1 to {MAX_TEXT} characters."
                )));
            }
            let value = string(key, value)?;
            spec.properties.insert(key.to_owned(), value);
        }
    }
    Ok(())
}

/// Whether `key` names a core attribute a client may set.
pub(super) fn is_settable_core(key: &str) -> bool {
    matches!(
        key,
        "name"
            | "visibility"
            | "protected"
            | "os_hidden"
            | "min_disk"
            | "min_ram"
            | "disk_format"
            | "container_format"
            | "tags"
    )
}

/// Whether `key` names a core attribute (not a custom property).
pub(super) fn is_core(key: &str) -> bool {
    is_settable_core(key)
        || matches!(key, "id" | "owner" | "os_hash_algo" | "os_hash_value")
        || READ_ONLY.contains(&key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_bodies_read_like_glance() {
        let new = new_image(&json!({
            "name": "cirros", "disk_format": "qcow2", "container_format": "bare",
            "visibility": "private", "min_ram": 64, "tags": ["a", "a", "b"],
            "kernel_id": "k", "owner_specified.openstack.sha256": "",
            "owner_specified.openstack.md5": "5D41402ABC4B2A76B9719D911017C592",
            "os_hash_algo": "sha256", "os_hash_value": "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
        }))
        .unwrap();
        assert_eq!(new.spec.name, "cirros");
        assert_eq!(new.spec.tags, ["a", "b"]);
        assert_eq!(new.spec.properties["kernel_id"], "k");
        assert_eq!(new.spec.min_ram, 64);
        assert_eq!(
            new.spec.expected_hashes["md5"],
            "5d41402abc4b2a76b9719d911017c592"
        );
        assert!(new.spec.expected_hashes["sha256"].starts_with("2cf24dba"));

        for (body, code) in [
            (json!({"status": "active"}), 403),
            (json!({"size": 3}), 403),
            (json!({"disk_format": "floppy"}), 400),
            (json!({"visibility": "everyone"}), 400),
            (json!({"min_disk": -1}), 400),
            (json!({"custom": 5}), 400),
            (json!({"id": "not-a-uuid"}), 400),
            (json!({"os_hash_algo": "sha256"}), 400),
            (json!({"os_hash_algo": "sha1", "os_hash_value": "00"}), 400),
            (
                json!({"os_hash_algo": "sha256", "os_hash_value": "abc"}),
                400,
            ),
            (json!({"os_glance_x": "y"}), 403),
            (json!([]), 400),
        ] {
            let error = new_image(&body)
                .err()
                .unwrap_or_else(|| panic!("{body} accepted"));
            assert_eq!(error.code.as_u16(), code, "{body}: {}", error.message);
        }
    }

    #[test]
    fn image_json_is_glances() {
        let object = json!({
            "metadata": {"name": "1b6d4a6e-1111-2222-3333-444455556666", "namespace": "team-a",
                         "creationTimestamp": "2026-01-02T03:04:05Z", "resourceVersion": "7"},
            "spec": {"name": "cirros", "visibility": "shared", "diskFormat": "qcow2",
                     "properties": {"hw_x": "1", "name": "shadow"}},
            "status": {"status": "active", "size": 5, "checksum": "c"},
        });
        let image = Image::from_object(object);
        let body = image_json(&image, "p1");
        assert_eq!(body["id"], "1b6d4a6e-1111-2222-3333-444455556666");
        assert_eq!(
            body["name"], "cirros",
            "core attributes win over properties"
        );
        assert_eq!(body["hw_x"], "1");
        assert_eq!(body["owner"], "p1");
        assert_eq!(body["size"], 5);
        assert_eq!(body["container_format"], Value::Null);
        assert_eq!(body["updated_at"], "2026-01-02T03:04:05Z");
        assert_eq!(
            body["file"],
            "/v2/images/1b6d4a6e-1111-2222-3333-444455556666/file"
        );
        assert_eq!(image.to_object()["metadata"]["resourceVersion"], "7");
    }
}
