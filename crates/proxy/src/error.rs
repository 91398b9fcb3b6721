//! The crate's error for starting and reconfiguring a proxy.

use std::net::SocketAddr;

use crate::config::ConfigError;

/// Why a proxy could not start or take a new configuration. A refused configuration
/// changes nothing: the proxy keeps serving what it served before.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("invalid configuration")]
    InvalidConfig(#[source] ConfigError),
    #[error("listener {listener:?}: cannot bind {address}")]
    Bind {
        listener: String,
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the async runtime shut down while the configuration was being applied")]
    RuntimeShutDown,
    /// A bug in the proxy interrupted applying the configuration (it is logged). The
    /// configuration reported by `Proxy::config` is still the previous one.
    #[error("internal error while applying the configuration")]
    Internal,
}

impl From<ConfigError> for ProxyError {
    fn from(error: ConfigError) -> ProxyError {
        ProxyError::InvalidConfig(error)
    }
}
