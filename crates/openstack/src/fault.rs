//! Errors in each OpenStack service's own shape: Keystone's `{"error": {"code", "title",
//! "message"}}`, Nova's and Cinder's `{"badRequest": {"code", "message"}}`, Neutron's
//! `{"NeutronError": {"type", "message", "detail"}}` and Octavia's `{"faultcode",
//! "faultstring", "debuginfo"}`, Placement's `{"errors": [{"status", "title", "detail",
//! "request_id", "code"}]}`, and Glance's `{"message", "code": "404 Not Found", "title"}`. The OpenStack SDK finds the message in any of them;
//! osc-placement prints the last line of `errors[0].detail`.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use ronghe_apiserver::error::ApiError;
use serde_json::json;

/// An OpenStack error response.
#[derive(Debug, Clone)]
pub struct Fault {
    pub code: StatusCode,
    pub message: String,
    /// Seconds, for 429.
    pub retry_after: Option<u64>,
    pub style: Style,
}

/// Whose error shape a fault takes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Style {
    #[default]
    Keystone,
    /// Nova's, which Cinder shares.
    Nova,
    Neutron,
    Octavia,
    /// Placement's, with the error code it names the condition by.
    Placement(PlacementCode),
    /// Glance's (webob's JSON error body).
    Glance,
}

impl Style {
    /// Placement's shape with no more precise code.
    pub const PLACEMENT: Style = Style::Placement(PlacementCode::Undefined);
}

/// Placement's error codes (`errors[].code`), which clients branch on rather than on the
/// message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PlacementCode {
    #[default]
    Undefined,
    ConcurrentUpdate,
    InventoryInUse,
    DuplicateName,
    ProviderInUse,
    ProviderCannotDeleteParent,
    DuplicateQueryKey,
    QueryBadValue,
}

impl PlacementCode {
    pub fn as_str(self) -> &'static str {
        match self {
            PlacementCode::Undefined => "placement.undefined_code",
            PlacementCode::ConcurrentUpdate => "placement.concurrent_update",
            PlacementCode::InventoryInUse => "placement.inventory.inuse",
            PlacementCode::DuplicateName => "placement.duplicate_name",
            PlacementCode::ProviderInUse => "placement.resource_provider.inuse",
            PlacementCode::ProviderCannotDeleteParent => {
                "placement.resource_provider.cannot_delete_parent"
            }
            PlacementCode::DuplicateQueryKey => "placement.query.duplicate_key",
            PlacementCode::QueryBadValue => "placement.query.bad_value",
        }
    }
}

pub type FaultResult<T> = Result<T, Fault>;

impl Fault {
    pub fn new(code: StatusCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after: None,
            style: Style::Keystone,
        }
    }

    /// The same fault in another service's shape.
    pub fn styled(mut self, style: Style) -> Self {
        self.style = style;
        self
    }

    fn body(&self, request_id: &str) -> serde_json::Value {
        let code = self.code.as_u16();
        match self.style {
            Style::Keystone => {
                let title = self.code.canonical_reason().unwrap_or("Error");
                json!({"error": {"code": code, "title": title, "message": self.message}})
            }
            Style::Nova => {
                let name = match code {
                    400 => "badRequest",
                    401 => "unauthorized",
                    403 => "forbidden",
                    404 => "itemNotFound",
                    409 => "conflictingRequest",
                    413 | 429 => "overLimit",
                    _ => "computeFault",
                };
                json!({name: {"code": code, "message": self.message}})
            }
            Style::Neutron => {
                let kind = match code {
                    400 => "HTTPBadRequest",
                    401 => "HTTPUnauthorized",
                    403 => "HTTPForbidden",
                    404 => "HTTPNotFound",
                    409 => "HTTPConflict",
                    429 => "HTTPTooManyRequests",
                    503 => "HTTPServiceUnavailable",
                    _ => "HTTPInternalServerError",
                };
                json!({"NeutronError": {"type": kind, "message": self.message, "detail": ""}})
            }
            Style::Octavia => {
                let side = if code < 500 { "Client" } else { "Server" };
                json!({"faultcode": side, "faultstring": self.message, "debuginfo": null})
            }
            Style::Glance => {
                let title = self.code.canonical_reason().unwrap_or("Error");
                json!({"message": self.message, "code": format!("{code} {title}"), "title": title})
            }
            Style::Placement(placement_code) => {
                let title = self.code.canonical_reason().unwrap_or("Error");
                let mut error = json!({
                    "status": code,
                    "title": title,
                    "detail": self.message,
                    "request_id": request_id,
                    "code": placement_code.as_str(),
                });
                // Placement names its range whenever the version asked for is refused, and
                // osc-placement falls back to `max_version`.
                if self.code == StatusCode::NOT_ACCEPTABLE {
                    error["max_version"] = json!(crate::placement::microversion::MAX.to_string());
                    error["min_version"] = json!(crate::placement::microversion::MIN.to_string());
                }
                json!({"errors": [error]})
            }
        }
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "The request you have made requires authentication.",
        )
    }

    pub fn forbidden(operation: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            format!("You are not authorized to perform the requested action: {operation}."),
        )
    }

    pub fn not_found(what: &str, id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            format!("Could not find {what}: {id}."),
        )
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }

    pub fn too_many_attempts(retry_after: std::time::Duration) -> Self {
        Self {
            code: StatusCode::TOO_MANY_REQUESTS,
            message: "Too many failed authentication attempts; try again later.".into(),
            retry_after: Some(retry_after.as_secs().max(1)),
            style: Style::Keystone,
        }
    }

    /// Maps an engine error: its status code, and its message (which the engine writes
    /// for clients and which names no internals).
    pub fn from_api(error: ApiError) -> Self {
        let code = StatusCode::from_u16(error.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let message = error.status.message.clone();
        Self::new(code, message)
    }
}

impl From<ApiError> for Fault {
    fn from(error: ApiError) -> Self {
        Fault::from_api(error)
    }
}

impl IntoResponse for Fault {
    fn into_response(self) -> Response {
        let request_id = format!("req-{}", uuid::Uuid::new_v4());
        let mut response = (self.code, axum::Json(self.body(&request_id))).into_response();
        if matches!(self.style, Style::Placement(_))
            && let Ok(value) = http::HeaderValue::from_str(&request_id)
        {
            response
                .headers_mut()
                .insert(http::HeaderName::from_static("openstack-request-id"), value);
        }
        if self.code == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Keystone uri=\"/identity\""),
            );
        }
        if let Some(seconds) = self.retry_after
            && let Ok(value) = http::HeaderValue::from_str(&seconds.to_string())
        {
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, value);
        }
        response
    }
}
