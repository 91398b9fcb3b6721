//! The Kubernetes face's one error type: every failure becomes a `metav1.Status` with the
//! conventional reason and HTTP code. Internal detail is logged, never sent.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use ronghe_api_types::status::Status;
use ronghe_api_types::validation::FieldCause;
use ronghe_store::StoreError;

use crate::registry::KindSpec;

/// A failed API request, carrying the `Status` the client will see.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// Boxed: a `Status` is large and errors travel through every `Result`.
    pub status: Box<Status>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.status.message, self.status.code)
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    pub fn new(status: Status) -> Self {
        Self {
            status: Box::new(status),
        }
    }

    pub fn code(&self) -> u16 {
        self.status.code
    }

    pub fn not_found(kind: &KindSpec, name: &str) -> Self {
        Self::new(Status::not_found(&kind.qualified_plural(), name))
    }

    pub fn namespace_not_found(namespace: &str) -> Self {
        Self::new(Status::not_found("namespaces", namespace))
    }

    /// A 404 for a path that names no served resource.
    pub fn no_such_resource(path: &str) -> Self {
        let mut status = Status::not_found("", "");
        status.message = format!("the server could not find the requested resource ({path})");
        status.details = None;
        Self::new(status)
    }

    pub fn already_exists(kind: &KindSpec, name: &str) -> Self {
        Self::new(Status::already_exists(&kind.qualified_plural(), name))
    }

    pub fn conflict(kind: &KindSpec, name: &str) -> Self {
        Self::new(Status::conflict(&kind.qualified_plural(), name))
    }

    /// A 409 for a failed delete or update precondition, with its own message.
    pub fn precondition_failed(kind: &KindSpec, name: &str, message: String) -> Self {
        Self::new(Status::conflict_with(
            &kind.qualified_plural(),
            name,
            message,
        ))
    }

    pub fn invalid(kind: &KindSpec, name: &str, causes: Vec<FieldCause>) -> Self {
        Self::new(Status::invalid(kind.kind, name, &causes))
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(Status::bad_request(message.into()))
    }

    /// A 404 with its own message (something the object names does not exist).
    pub fn not_found_message(message: impl Into<String>) -> Self {
        Self::new(Status::not_found_message(message))
    }

    /// A 409 with its own message (the object conflicts with others).
    pub fn conflict_message(message: impl Into<String>) -> Self {
        Self::new(Status::conflict_message(message))
    }

    pub fn unauthorized() -> Self {
        Self::new(Status::unauthorized("Unauthorized"))
    }

    /// A 403 about `resource` (qualified plural) and `name`, either of which may be empty.
    pub fn forbidden(resource: &str, name: &str, why: impl std::fmt::Display) -> Self {
        Self::new(Status::forbidden(resource, name, why))
    }

    /// A 405 for an action (`create`, `watch`, ...) a resource does not support.
    pub fn method_not_allowed(resource: &str, action: &str) -> Self {
        Self::new(Status::method_not_allowed(resource, action))
    }

    pub fn unsupported_media_type(accepted: &[&str]) -> Self {
        Self::new(Status::unsupported_media_type(accepted))
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(Status::request_entity_too_large(format!(
            "the request body is larger than the limit of {limit} bytes"
        )))
    }

    /// A 413 for a patch that would do too much (too many operations, too much copied).
    pub fn too_large_patch(message: String) -> Self {
        Self::new(Status::request_entity_too_large(message))
    }

    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(Status::expired(message.into()))
    }

    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(Status::timeout(message.into(), 1))
    }

    /// An internal failure: the detail goes to the log, the client learns only that it failed.
    pub fn internal(context: &str, error: &dyn std::error::Error) -> Self {
        tracing::error!(error = %ErrorChain(error), "{context}");
        Self::new(Status::internal_error(context))
    }

    /// Maps a store error met while working on one object of `kind`.
    pub fn from_store(error: StoreError, kind: &KindSpec, name: &str) -> Self {
        match error {
            StoreError::AlreadyExists { .. } => Self::already_exists(kind, name),
            StoreError::NotFound { .. } => Self::not_found(kind, name),
            StoreError::Conflict { .. } => Self::conflict(kind, name),
            StoreError::Compacted {
                requested,
                compacted,
            } => Self::new(Status::too_old_resource_version(requested, compacted)),
            StoreError::WatcherLagged { last_seen } => Self::expired(format!(
                "too old resource version: {last_seen}; the watch fell behind"
            )),
            StoreError::FutureRevision { requested, current } => Self::timeout(format!(
                "Too large resource version: {requested}, current: {current}"
            )),
            other => Self::internal("store request failed", &other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code =
            StatusCode::from_u16(self.status.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        crate::http::json_response(code, &self.status)
    }
}

/// Displays an error with its whole `source` chain, for logs.
pub struct ErrorChain<'a>(pub &'a dyn std::error::Error);

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(inner) = source {
            write!(f, ": {inner}")?;
            source = inner.source();
        }
        Ok(())
    }
}
