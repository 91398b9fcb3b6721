//! `image.ronghe.io/v1`: Image — a Glance image's metadata, in its owner project's
//! namespace. The object name is the Glance id, `spec.name` the Glance name (free text,
//! not unique); `status` holds what the upload made of it (Glance's status, size, md5
//! `checksum`, `os_hash_*`, and the sha256 `digest` that names its data in the server's
//! blob store). The data itself goes through the Glance face (`/image/v2/images/{id}/file`),
//! never through this API. The types and the visibility rules are `ronghe_images::model`.

use std::collections::BTreeSet;

use ronghe_api_types::validation::FieldCause;
use ronghe_images::blob::HashAlgorithm;
use ronghe_images::model::{
    self, CONTAINER_FORMATS, DISK_FORMATS, ImageSpec, ImageStatus, MAX_TEXT, MEMBER_STATUSES,
    Visibility,
};
use serde_json::{Value, json};

use super::identity::normalize_custom;
use crate::object;
use crate::registry::{Column, KindSpec, Scope, Subresources};

pub use ronghe_images::model::{API_VERSION, GROUP};

/// The longest property value Glance stores.
const MAX_PROPERTY_VALUE: usize = 65_535;

pub(super) fn kinds() -> Vec<KindSpec> {
    vec![image()]
}

fn image() -> KindSpec {
    KindSpec {
        short_names: &["img"],
        subresources: Subresources {
            status: true,
            scale: false,
        },
        normalize: normalize_custom::<ImageSpec, ImageStatus>,
        default: Some(|image| {
            let status = object::ensure_object(
                object::ensure_object(image)
                    .entry("status")
                    .or_insert_with(|| json!({})),
            );
            status
                .entry("status")
                .or_insert_with(|| json!(model::STATUS_QUEUED));
        }),
        validate: Some(validate),
        fields: &[
            ("spec.name", |o| {
                Some(object::str_at(o, &["spec", "name"]).unwrap_or_default())
            }),
            ("spec.visibility", |o| {
                object::str_at(o, &["spec", "visibility"])
            }),
            ("status.status", |o| {
                object::str_at(o, &["status", "status"])
            }),
            ("status.digest", |o| {
                Some(object::str_at(o, &["status", "digest"]).unwrap_or_default())
            }),
        ],
        columns: vec![
            Column::name(),
            Column::text("Image Name", "The Glance name.", &["spec", "name"]),
            Column::text(
                "Status",
                "Glance's status: queued until data is uploaded, then active.",
                &["status", "status"],
            ),
            Column::text(
                "Disk Format",
                "The format of the data.",
                &["spec", "diskFormat"],
            ),
            Column::value("Size", "integer", "Bytes of data.", |o| {
                o.pointer("/status/size").cloned().unwrap_or(Value::Null)
            }),
            Column::text(
                "Visibility",
                "Who may use it: public, community, shared or private.",
                &["spec", "visibility"],
            ),
            Column::age(),
            Column::text(
                "Container Format",
                "How the data is packaged.",
                &["spec", "containerFormat"],
            )
            .wide(),
            Column::text("Digest", "The sha256 of the data.", &["status", "digest"]).wide(),
        ],
        ..KindSpec::new(
            model::GROUP,
            model::VERSION,
            model::KIND,
            model::PLURAL,
            Scope::Namespaced,
        )
    }
}

/// Glance's rules for image metadata, as field causes.
fn validate(image: &Value, old: Option<&Value>) -> Vec<FieldCause> {
    let mut causes = Vec::new();
    let Ok(spec) =
        serde_json::from_value::<ImageSpec>(image.get("spec").cloned().unwrap_or(json!({})))
    else {
        return causes;
    };
    if spec.name.len() > MAX_TEXT {
        causes.push(FieldCause::too_long("spec.name", MAX_TEXT));
    }
    if Visibility::parse(&spec.visibility).is_none() {
        causes.push(FieldCause::not_supported(
            "spec.visibility",
            spec.visibility.as_str(),
            Visibility::NAMES,
        ));
    }
    for (field, value, supported) in [
        ("spec.diskFormat", &spec.disk_format, DISK_FORMATS),
        (
            "spec.containerFormat",
            &spec.container_format,
            CONTAINER_FORMATS,
        ),
    ] {
        if let Some(value) = value
            && !supported.contains(&value.as_str())
        {
            causes.push(FieldCause::not_supported(field, value.as_str(), supported));
        }
    }
    for (field, value) in [
        ("spec.minDisk", spec.min_disk),
        ("spec.minRam", spec.min_ram),
    ] {
        if value < 0 {
            causes.push(FieldCause::invalid(field, value, "must be at least 0"));
        }
    }
    let mut tags = BTreeSet::new();
    for (index, tag) in spec.tags.iter().enumerate() {
        let field = format!("spec.tags[{index}]");
        if tag.is_empty() || tag.len() > MAX_TEXT {
            causes.push(FieldCause::invalid(
                field,
                tag.as_str(),
                "a tag is 1 to 255 characters",
            ));
        } else if !tags.insert(tag) {
            causes.push(FieldCause::duplicate(field, tag.as_str()));
        }
    }
    for (key, value) in &spec.properties {
        let field = format!("spec.properties[{key}]");
        if key.is_empty() || key.len() > MAX_TEXT {
            causes.push(FieldCause::invalid(
                field,
                key.as_str(),
                "a property name is 1 to 255 characters",
            ));
        } else if value.len() > MAX_PROPERTY_VALUE {
            causes.push(FieldCause::too_long(field, MAX_PROPERTY_VALUE));
        }
    }
    let mut members = BTreeSet::new();
    for (index, member) in spec.members.iter().enumerate() {
        if member.project.is_empty() {
            causes.push(FieldCause::required(
                format!("spec.members[{index}].project"),
                "",
            ));
        } else if !members.insert(&member.project) {
            causes.push(FieldCause::duplicate(
                format!("spec.members[{index}].project"),
                member.project.as_str(),
            ));
        }
        if !MEMBER_STATUSES.contains(&member.status.as_str()) {
            causes.push(FieldCause::not_supported(
                format!("spec.members[{index}].status"),
                member.status.as_str(),
                MEMBER_STATUSES,
            ));
        }
    }
    for (algorithm, value) in &spec.expected_hashes {
        let field = format!("spec.expectedHashes[{algorithm}]");
        match HashAlgorithm::parse(algorithm) {
            Ok(parsed) if parsed.is_valid_hash(&value.to_ascii_lowercase()) => {}
            Ok(parsed) => causes.push(FieldCause::invalid(
                field,
                value.as_str(),
                format!("must be {} hex digits", parsed.hex_length()),
            )),
            Err(_) => causes.push(FieldCause::not_supported(
                field,
                algorithm.as_str(),
                &["md5", "sha256", "sha512"],
            )),
        }
    }
    if let Some(old) = old {
        causes.extend(immutable_once_active(image, old));
    }
    causes
}

/// Once an image has data, what the data is may not change: its formats (Glance's rule)
/// and what status says about it.
fn immutable_once_active(image: &Value, old: &Value) -> Vec<FieldCause> {
    let was_active = object::str_at(old, &["status", "status"]).as_deref() == Some("active");
    if !was_active {
        return Vec::new();
    }
    let mut causes = Vec::new();
    for (field, path) in [
        ("spec.diskFormat", "/spec/diskFormat"),
        ("spec.containerFormat", "/spec/containerFormat"),
        ("spec.expectedHashes", "/spec/expectedHashes"),
        ("status.digest", "/status/digest"),
        ("status.size", "/status/size"),
        ("status.checksum", "/status/checksum"),
    ] {
        if old.pointer(path) != image.pointer(path) {
            causes.push(FieldCause::forbidden(
                field,
                "may not change once the image has data",
            ));
        }
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(causes: Vec<FieldCause>) -> Vec<String> {
        causes.into_iter().map(|c| c.field).collect()
    }

    #[test]
    fn validation_follows_glance() {
        let good = json!({"metadata": {"name": "x"}, "spec": {
            "name": "cirros", "diskFormat": "qcow2", "containerFormat": "bare",
            "visibility": "public", "tags": ["a", "b"], "properties": {"kernel_id": "k"},
            "members": [{"project": "team-a", "status": "accepted"}],
            "expectedHashes": {"sha256": "A".repeat(64)},
        }});
        assert!(
            validate(&good, None).is_empty(),
            "{:?}",
            validate(&good, None)
        );
        let bad = json!({"spec": {
            "name": "n".repeat(256), "diskFormat": "floppy", "containerFormat": "box",
            "visibility": "everyone", "minDisk": -1, "tags": ["a", "a", ""],
            "members": [{"project": "p", "status": "maybe"}, {"project": "p"}],
            "expectedHashes": {"sha256": "abc", "crc32": "00"},
        }});
        assert_eq!(
            fields(validate(&bad, None)),
            [
                "spec.name",
                "spec.visibility",
                "spec.diskFormat",
                "spec.containerFormat",
                "spec.minDisk",
                "spec.tags[1]",
                "spec.tags[2]",
                "spec.members[0].status",
                "spec.members[1].project",
                "spec.expectedHashes[crc32]",
                "spec.expectedHashes[sha256]",
            ]
        );
    }

    #[test]
    fn an_active_image_keeps_its_data_and_formats() {
        let active = json!({"spec": {"diskFormat": "raw"},
            "status": {"status": "active", "digest": "sha256:1", "size": 3}});
        let renamed = json!({"spec": {"diskFormat": "raw", "name": "new"},
            "status": {"status": "active", "digest": "sha256:1", "size": 3}});
        assert!(validate(&renamed, Some(&active)).is_empty());
        let reformatted = json!({"spec": {"diskFormat": "qcow2"},
            "status": {"status": "active", "digest": "sha256:2", "size": 3}});
        assert_eq!(
            fields(validate(&reformatted, Some(&active))),
            ["spec.diskFormat", "status.digest"]
        );
        let queued = json!({"spec": {"diskFormat": "raw"}, "status": {"status": "queued"}});
        assert!(validate(&reformatted, Some(&queued)).is_empty());
    }
}
