//! The driver's error type: what failed, with the host's own words kept as the source.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot run {command}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{command} failed: {stderr}")]
    Command { command: String, stderr: String },
    #[error("cannot {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot {action} {}", path.display())]
    Mount {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: rustix::io::Errno,
    },
    /// The pod or container spec asks for something this driver cannot give.
    #[error("{0}")]
    Config(String),
    #[error("pod {0} is not running on this host")]
    UnknownPod(String),
    #[error("container {container} is not in pod {pod}")]
    UnknownContainer { pod: String, container: String },
    #[error("container {container} of pod {pod} is not running")]
    NotRunning { pod: String, container: String },
    #[error("container \"{container}\" in pod \"{pod}\" is waiting to start: {reason}")]
    Waiting {
        pod: String,
        container: String,
        reason: String,
    },
    #[error("previous terminated container {container} in pod {pod} not found")]
    NoPreviousLog { pod: String, container: String },
}

impl Error {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
