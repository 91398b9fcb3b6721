//! `metav1.Status`: the body of every non-2xx Kubernetes API response, of `ERROR` watch
//! events, and of some successful deletes.
//!
//! The constructors reproduce `k8s.io/apimachinery/pkg/api/errors` (and the apiserver's
//! negotiation errors): same reason, code, details and message wording, since kubectl prints
//! `Error from server (<reason>): <message>` and kube-rs surfaces the struct as is.
//!
//! Resources are named as `<plural>` for the core group and `<plural>.<group>` otherwise
//! (`pods`, `deployments.apps`); kinds likewise (`Pod`, `Deployment.apps`). Plurals and
//! kinds never contain dots, so the first dot separates the group for `details`.

mod constructors;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta;
use serde::{Deserialize, Serialize, Serializer};

/// The conventional `reason` values (`metav1.StatusReason`).
pub mod reason {
    /// 404.
    pub const NOT_FOUND: &str = "NotFound";
    /// 409 on create.
    pub const ALREADY_EXISTS: &str = "AlreadyExists";
    /// 409 on a stale resourceVersion or an apply conflict.
    pub const CONFLICT: &str = "Conflict";
    /// 422.
    pub const INVALID: &str = "Invalid";
    /// 400.
    pub const BAD_REQUEST: &str = "BadRequest";
    /// 401.
    pub const UNAUTHORIZED: &str = "Unauthorized";
    /// 403.
    pub const FORBIDDEN: &str = "Forbidden";
    /// 405.
    pub const METHOD_NOT_ALLOWED: &str = "MethodNotAllowed";
    /// 406.
    pub const NOT_ACCEPTABLE: &str = "NotAcceptable";
    /// 415.
    pub const UNSUPPORTED_MEDIA_TYPE: &str = "UnsupportedMediaType";
    /// 413.
    pub const REQUEST_ENTITY_TOO_LARGE: &str = "RequestEntityTooLarge";
    /// 410 for a resource that is gone.
    pub const GONE: &str = "Gone";
    /// 410 for a resourceVersion or continue token that is too old.
    pub const EXPIRED: &str = "Expired";
    /// 429.
    pub const TOO_MANY_REQUESTS: &str = "TooManyRequests";
    /// 500.
    pub const INTERNAL_ERROR: &str = "InternalError";
    /// 503.
    pub const SERVICE_UNAVAILABLE: &str = "ServiceUnavailable";
    /// 504.
    pub const TIMEOUT: &str = "Timeout";
}

/// `status: "Success"`.
pub const STATUS_SUCCESS: &str = "Success";
/// `status: "Failure"`.
pub const STATUS_FAILURE: &str = "Failure";

/// A `metav1.Status`. Serializes with `kind: Status` and `apiVersion: v1` first; those two
/// are ignored when deserializing. Empty strings, zero codes and empty lists are omitted,
/// as Go's `omitempty` does.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// Always empty in practice, but always present (`"metadata":{}`).
    #[serde(default)]
    pub metadata: ListMeta,
    /// [`STATUS_SUCCESS`] or [`STATUS_FAILURE`].
    #[serde(default)]
    pub status: String,
    /// Human-readable description.
    #[serde(default)]
    pub message: String,
    /// Machine-readable reason, one of [`reason`].
    #[serde(default)]
    pub reason: String,
    /// Extra data about the reason.
    #[serde(default)]
    pub details: Option<StatusDetails>,
    /// The HTTP status code; 0 when unset.
    #[serde(default)]
    pub code: u16,
}

/// `metav1.StatusDetails`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusDetails {
    /// The name of the object concerned.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Its API group (empty for core).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
    /// Its resource (plural) or kind, depending on the reason.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// Its UID.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    /// Field-level causes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<StatusCause>,
    /// Seconds the client should wait before retrying; 0 when unset.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retry_after_seconds: i32,
}

/// `metav1.StatusCause`. Note the wire name of the cause type is `reason`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct StatusCause {
    /// The cause type, e.g. `FieldValueInvalid`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Human-readable description.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The field path, e.g. `metadata.name`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub field: String,
}

impl From<&crate::validation::FieldCause> for StatusCause {
    fn from(cause: &crate::validation::FieldCause) -> Self {
        Self {
            reason: cause.reason.clone(),
            message: cause.message.clone(),
            field: cause.field.clone(),
        }
    }
}

impl Status {
    /// Whether this is a success status.
    pub fn is_success(&self) -> bool {
        self.status == STATUS_SUCCESS
    }

    /// The HTTP status to answer with: `code`, or 500 for a failure without one, or 200.
    pub fn http_status(&self) -> u16 {
        match self.code {
            0 if self.is_success() => 200,
            0 => 500,
            code => code,
        }
    }

    /// The `Retry-After` seconds carried in the details, if any.
    pub fn retry_after_seconds(&self) -> Option<i32> {
        self.details
            .as_ref()
            .map(|details| details.retry_after_seconds)
            .filter(|seconds| *seconds > 0)
    }

    /// The status as a JSON value, e.g. for the `object` of a watch `ERROR` event.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self)
            .expect("a Status holds only strings, integers and string maps, which always serialize")
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusWire<'a> {
    kind: &'static str,
    api_version: &'static str,
    metadata: &'a ListMeta,
    #[serde(skip_serializing_if = "str::is_empty")]
    status: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    message: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<&'a StatusDetails>,
    #[serde(skip_serializing_if = "is_zero_code")]
    code: u16,
}

impl Serialize for Status {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        StatusWire {
            kind: "Status",
            api_version: "v1",
            metadata: &self.metadata,
            status: &self.status,
            message: &self.message,
            reason: &self.reason,
            details: self.details.as_ref(),
            code: self.code,
        }
        .serialize(serializer)
    }
}

fn is_zero(value: &i32) -> bool {
    *value == 0
}

fn is_zero_code(value: &u16) -> bool {
    *value == 0
}

#[cfg(test)]
mod tests;
