//! What Glance answers about itself: version discovery at `/image` (keystoneauth reads it
//! to find `/image/v2/`), the JSON schemas at `/v2/schemas/{image,images,member,members}`
//! (what `openstack image` consults for some commands), and the import methods (none:
//! data is uploaded directly).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use ronghe_images::model::{CONTAINER_FORMATS, DISK_FORMATS, STATUSES, Visibility};
use serde_json::{Value, json};

use super::{Caller, not_found};
use crate::OpenStack;
use crate::fault::Fault;

/// The Glance API versions we answer as (all the same v2 API; v2.16 is Glance 2024.1's).
const VERSIONS: &[(&str, &str)] = &[
    ("v2.16", "CURRENT"),
    ("v2.15", "SUPPORTED"),
    ("v2.9", "SUPPORTED"),
    ("v2.7", "SUPPORTED"),
    ("v2.6", "SUPPORTED"),
    ("v2.5", "SUPPORTED"),
    ("v2.4", "SUPPORTED"),
    ("v2.3", "SUPPORTED"),
    ("v2.2", "SUPPORTED"),
    ("v2.1", "SUPPORTED"),
    ("v2.0", "SUPPORTED"),
];

fn versions_body(state: &OpenStack) -> Value {
    let href = format!("{}{}/v2/", state.public_url, super::BASE);
    let versions: Vec<Value> = VERSIONS
        .iter()
        .map(|(id, status)| {
            json!({"id": id, "status": status, "links": [{"rel": "self", "href": href}]})
        })
        .collect();
    json!({ "versions": versions })
}

/// `GET /image` (and `/image/v2`): the versions, with Glance's 300.
pub(super) async fn versions(State(state): State<Arc<OpenStack>>) -> Response {
    (StatusCode::MULTIPLE_CHOICES, Json(versions_body(&state))).into_response()
}

/// `GET /image/versions`: the same, with 200.
pub(super) async fn versions_ok(State(state): State<Arc<OpenStack>>) -> Response {
    Json(versions_body(&state)).into_response()
}

/// `GET /v2/info/import`: no import methods (the data is uploaded with `PUT .../file`).
pub(super) async fn import_info(_caller: Caller) -> Response {
    Json(json!({"import-methods": {
        "description": "Import methods available.",
        "type": "array",
        "value": [],
    }}))
    .into_response()
}

pub(super) async fn schema(_caller: Caller, Path(name): Path<String>) -> Result<Response, Fault> {
    let body = match name.as_str() {
        "image" => image_schema(),
        "images" => json!({
            "name": "images",
            "properties": {
                "images": {"type": "array", "items": image_schema()},
                "schema": {"type": "string"},
                "first": {"type": "string"},
                "next": {"type": "string"},
            },
            "links": [
                {"rel": "first", "href": "{first}"},
                {"rel": "next", "href": "{next}"},
                {"rel": "describedby", "href": "{schema}"},
            ],
        }),
        "member" => member_schema(),
        "members" => json!({
            "name": "members",
            "properties": {
                "members": {"type": "array", "items": member_schema()},
                "schema": {"type": "string"},
            },
            "links": [{"rel": "describedby", "href": "{schema}"}],
        }),
        _ => return Err(not_found("The resource could not be found.")),
    };
    Ok(Json(body).into_response())
}

fn image_schema() -> Value {
    let read_only_string = |description: &str| json!({"type": ["null", "string"], "readOnly": true, "description": description});
    json!({
        "name": "image",
        "additionalProperties": {"type": "string"},
        "properties": {
            "id": {"type": "string", "pattern": "^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$",
                   "description": "An identifier for the image"},
            "name": {"type": ["null", "string"], "maxLength": 255,
                     "description": "Descriptive name for the image"},
            "status": {"type": "string", "readOnly": true, "enum": STATUSES,
                       "description": "Status of the image"},
            "visibility": {"type": "string", "enum": Visibility::NAMES,
                           "description": "Scope of image accessibility"},
            "protected": {"type": "boolean",
                          "description": "If true, image will not be deletable."},
            "os_hidden": {"type": "boolean",
                          "description": "If true, image will not appear in default image list response."},
            "checksum": read_only_string("md5 hash of image contents."),
            "os_hash_algo": read_only_string("Algorithm to calculate the os_hash_value"),
            "os_hash_value": read_only_string("Hexdigest of the image contents using the algorithm specified by the os_hash_algo"),
            "owner": {"type": ["null", "string"], "maxLength": 255,
                      "description": "Owner of the image"},
            "size": {"type": ["null", "integer"], "readOnly": true,
                     "description": "Size of image file in bytes"},
            "virtual_size": {"type": ["null", "integer"], "readOnly": true,
                             "description": "Virtual size of image in bytes"},
            "container_format": {"type": ["null", "string"], "enum": CONTAINER_FORMATS.iter().map(|f| Value::from(*f)).chain([Value::Null]).collect::<Vec<_>>(),
                                 "description": "Format of the container"},
            "disk_format": {"type": ["null", "string"], "enum": DISK_FORMATS.iter().map(|f| Value::from(*f)).chain([Value::Null]).collect::<Vec<_>>(),
                            "description": "Format of the disk"},
            "created_at": {"type": "string", "readOnly": true,
                           "description": "Date and time of image registration"},
            "updated_at": {"type": "string", "readOnly": true,
                           "description": "Date and time of the last image modification"},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 255},
                     "description": "List of strings related to the image"},
            "min_ram": {"type": "integer", "description": "Amount of ram (in MB) required to boot image."},
            "min_disk": {"type": "integer", "description": "Amount of disk space (in GB) required to boot image."},
            "kernel_id": {"type": ["null", "string"], "is_base": false,
                          "description": "ID of image stored in Glance that should be used as the kernel when booting an AMI-style image."},
            "ramdisk_id": {"type": ["null", "string"], "is_base": false,
                           "description": "ID of image stored in Glance that should be used as the ramdisk when booting an AMI-style image."},
            "os_command_line": {"type": "string", "is_base": false,
                                "description": "The kernel command line to be used by the libvirt driver, instead of the default."},
            "self": {"type": "string", "readOnly": true},
            "file": {"type": "string", "readOnly": true},
            "schema": {"type": "string", "readOnly": true},
        },
        "links": [
            {"rel": "self", "href": "{self}"},
            {"rel": "enclosure", "href": "{file}"},
            {"rel": "describedby", "href": "{schema}"},
        ],
    })
}

fn member_schema() -> Value {
    json!({
        "name": "member",
        "properties": {
            "image_id": {"type": "string", "description": "An identifier for the image"},
            "member_id": {"type": "string", "description": "An identifier for the image member (tenantId)"},
            "status": {"type": "string", "enum": ["pending", "accepted", "rejected"],
                       "description": "The status of this image member"},
            "created_at": {"type": "string", "description": "Date and time of image member creation"},
            "updated_at": {"type": "string", "description": "Date and time of last modification of image member"},
            "schema": {"type": "string", "readOnly": true},
        },
    })
}
