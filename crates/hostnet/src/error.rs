//! The crate's one error type.

use std::io;

use crate::plan::PlanProblem;

/// Why the host network could not be (fully) made to match a plan.
#[derive(Debug, thiserror::Error)]
pub enum HostNetError {
    #[error("invalid host network plan")]
    InvalidPlan(#[source] PlanProblem),
    #[error("netlink {operation} in {namespace}")]
    Netlink {
        operation: String,
        namespace: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("could not run `{command}`")]
    Spawn {
        command: String,
        #[source]
        source: io::Error,
    },
    #[error("{operation}")]
    Io {
        operation: String,
        #[source]
        source: io::Error,
    },
    #[error("network {network_id} has no service on this host")]
    NoService { network_id: String },
    #[error("{object}: {reason}")]
    Unexpected { object: String, reason: String },
}

impl HostNetError {
    pub(crate) fn io(operation: impl Into<String>) -> impl FnOnce(io::Error) -> HostNetError {
        let operation = operation.into();
        move |source| HostNetError::Io { operation, source }
    }
}
