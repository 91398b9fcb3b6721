//! Constructors for the conventional statuses, mirroring apimachinery's `errors.New*`.

use std::fmt::Display;

use super::{STATUS_FAILURE, STATUS_SUCCESS, Status, StatusCause, StatusDetails, reason};
use crate::quote::go_quote;
use crate::validation::{FieldCause, aggregate_message};

/// The detail apimachinery's registry puts after `Operation cannot be fulfilled on ...: `
/// when a write carries a stale resourceVersion.
pub const OBJECT_MODIFIED: &str =
    "the object has been modified; please apply your changes to the latest version and try again";

impl Status {
    /// A bare `status: Success` (as sent on exec streams, for instance).
    pub fn success() -> Self {
        Self {
            status: STATUS_SUCCESS.to_owned(),
            ..Self::default()
        }
    }

    /// The success status a DELETE returns when it does not return the object.
    pub fn deleted(resource: &str, name: &str, uid: &str) -> Self {
        Self {
            details: Some(StatusDetails {
                uid: uid.to_owned(),
                ..details(resource, name)
            }),
            ..Self::success()
        }
    }

    /// 404 `pods "nope" not found`.
    pub fn not_found(resource: &str, name: &str) -> Self {
        failure(
            404,
            reason::NOT_FOUND,
            format!("{resource} {} not found", go_quote(name)),
            Some(details(resource, name)),
        )
    }

    /// 409 `deployments.apps "web" already exists`.
    pub fn already_exists(resource: &str, name: &str) -> Self {
        failure(
            409,
            reason::ALREADY_EXISTS,
            format!("{resource} {} already exists", go_quote(name)),
            Some(details(resource, name)),
        )
    }

    /// 409 for a stale resourceVersion: `Operation cannot be fulfilled on <resource>
    /// "<name>": the object has been modified; ...`.
    pub fn conflict(resource: &str, name: &str) -> Self {
        Self::conflict_with(resource, name, OBJECT_MODIFIED)
    }

    /// 409 `Operation cannot be fulfilled on <resource> "<name>": <detail>`.
    pub fn conflict_with(resource: &str, name: &str, detail: impl Display) -> Self {
        failure(
            409,
            reason::CONFLICT,
            format!(
                "Operation cannot be fulfilled on {resource} {}: {detail}",
                go_quote(name)
            ),
            Some(details(resource, name)),
        )
    }

    /// 409 for server-side apply field-manager conflicts, one cause per conflicting field.
    pub fn apply_conflict(message: impl Into<String>, causes: Vec<StatusCause>) -> Self {
        failure(
            409,
            reason::CONFLICT,
            message.into(),
            Some(StatusDetails {
                causes,
                ..StatusDetails::default()
            }),
        )
    }

    /// 422 `Deployment.apps "web" is invalid: spec.replicas: Invalid value: -1: ...`, with
    /// several causes bracketed as apiserver prints them. `kind` is `Kind` or `Kind.group`.
    pub fn invalid(kind: &str, name: &str, causes: &[FieldCause]) -> Self {
        let message = if causes.is_empty() {
            format!("{kind} {} is invalid", go_quote(name))
        } else {
            format!(
                "{kind} {} is invalid: {}",
                go_quote(name),
                aggregate_message(causes)
            )
        };
        failure(
            422,
            reason::INVALID,
            message,
            Some(StatusDetails {
                causes: causes.iter().map(StatusCause::from).collect(),
                ..details(kind, name)
            }),
        )
    }

    /// 400 with `message` verbatim.
    pub fn bad_request(message: impl Into<String>) -> Self {
        failure(400, reason::BAD_REQUEST, message.into(), None)
    }

    /// 404 with a message of its own, for something a request names that does not exist
    /// (admission's "Network X could not be found.").
    pub fn not_found_message(message: impl Into<String>) -> Self {
        failure(404, reason::NOT_FOUND, message.into(), None)
    }

    /// 409 with a message of its own, for a request that conflicts with other objects
    /// (an address already allocated, a port in use).
    pub fn conflict_message(message: impl Into<String>) -> Self {
        failure(409, reason::CONFLICT, message.into(), None)
    }

    /// 401; an empty message becomes `not authorized`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        let mut message = message.into();
        if message.is_empty() {
            message = "not authorized".to_owned();
        }
        failure(401, reason::UNAUTHORIZED, message, None)
    }

    /// 403 `pods "web" is forbidden: <why>` (or `pods is forbidden: <why>` without a name,
    /// `forbidden: <why>` without a resource).
    pub fn forbidden(resource: &str, name: &str, why: impl Display) -> Self {
        let message = match (resource.is_empty(), name.is_empty()) {
            (true, _) => format!("forbidden: {why}"),
            (false, true) => format!("{resource} is forbidden: {why}"),
            (false, false) => format!("{resource} {} is forbidden: {why}", go_quote(name)),
        };
        failure(
            403,
            reason::FORBIDDEN,
            message,
            Some(details(resource, name)),
        )
    }

    /// 405 `<action> is not supported on resources of kind "<resource>"`.
    pub fn method_not_allowed(resource: &str, action: &str) -> Self {
        failure(
            405,
            reason::METHOD_NOT_ALLOWED,
            format!(
                "{action} is not supported on resources of kind {}",
                go_quote(resource)
            ),
            Some(details(resource, "")),
        )
    }

    /// 406 when no acceptable response media type is offered.
    pub fn not_acceptable(accepted: &[&str]) -> Self {
        failure(
            406,
            reason::NOT_ACCEPTABLE,
            format!(
                "only the following media types are accepted: {}",
                accepted.join(", ")
            ),
            None,
        )
    }

    /// 415 for a request body in a media type the server does not decode.
    pub fn unsupported_media_type(accepted: &[&str]) -> Self {
        failure(
            415,
            reason::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "the body of the request was in an unknown format - accepted media types include: {}",
                accepted.join(", ")
            ),
            None,
        )
    }

    /// 413 `Request entity too large: <message>` (apiserver says `limit is <bytes>`).
    pub fn request_entity_too_large(message: impl Display) -> Self {
        failure(
            413,
            reason::REQUEST_ENTITY_TOO_LARGE,
            format!("Request entity too large: {message}"),
            None,
        )
    }

    /// 410 with reason `Gone`.
    pub fn gone(message: impl Into<String>) -> Self {
        failure(410, reason::GONE, message.into(), None)
    }

    /// 410 with reason `Expired`.
    pub fn expired(message: impl Into<String>) -> Self {
        failure(410, reason::EXPIRED, message.into(), None)
    }

    /// 410 `too old resource version: <requested> (<oldest still available>)`, the in-stream
    /// watch error kube-rs needs to relist.
    pub fn too_old_resource_version(requested: impl Display, oldest: impl Display) -> Self {
        Self::expired(format!("too old resource version: {requested} ({oldest})"))
    }

    /// 429 with `message` verbatim and `details.retryAfterSeconds` (also send a
    /// `Retry-After` header).
    pub fn too_many_requests(message: impl Into<String>, retry_after_seconds: i32) -> Self {
        failure(
            429,
            reason::TOO_MANY_REQUESTS,
            message.into(),
            Some(StatusDetails {
                retry_after_seconds,
                ..StatusDetails::default()
            }),
        )
    }

    /// 500 `Internal error occurred: <message>`. Pass only what is safe to show a client.
    pub fn internal_error(message: impl Display) -> Self {
        let message = message.to_string();
        failure(
            500,
            reason::INTERNAL_ERROR,
            format!("Internal error occurred: {message}"),
            Some(StatusDetails {
                causes: vec![StatusCause {
                    message,
                    ..StatusCause::default()
                }],
                ..StatusDetails::default()
            }),
        )
    }

    /// 503 with `message` verbatim.
    pub fn service_unavailable(message: impl Into<String>) -> Self {
        failure(503, reason::SERVICE_UNAVAILABLE, message.into(), None)
    }

    /// 504 `Timeout: <message>`.
    pub fn timeout(message: impl Display, retry_after_seconds: i32) -> Self {
        failure(
            504,
            reason::TIMEOUT,
            format!("Timeout: {message}"),
            Some(StatusDetails {
                retry_after_seconds,
                ..StatusDetails::default()
            }),
        )
    }
}

fn failure(code: u16, reason: &str, message: String, details: Option<StatusDetails>) -> Status {
    Status {
        status: STATUS_FAILURE.to_owned(),
        message,
        reason: reason.to_owned(),
        details,
        code,
        ..Status::default()
    }
}

/// Details naming `qualified` (`plural.group` or `Kind.group`) and `name`.
fn details(qualified: &str, name: &str) -> StatusDetails {
    let (kind, group) = qualified.split_once('.').unwrap_or((qualified, ""));
    StatusDetails {
        name: name.to_owned(),
        group: group.to_owned(),
        kind: kind.to_owned(),
        ..StatusDetails::default()
    }
}
