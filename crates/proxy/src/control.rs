//! The control socket of a proxy run as a process of its own: a [`ControlServer`] that
//! serves one [`Proxy`] over a Unix socket, and the typed [`ControlClient`] the host
//! agent (and tests, and `ronghe bench lb`) drive it with.
//!
//! # Protocol
//! HTTP/1.1 over a Unix stream socket, JSON bodies (the shapes of [`ProxyConfig`],
//! [`MemberStatuses`], [`StatsSnapshot`] and [`Health`]), one request per connection or
//! several with keep-alive. Anything that speaks HTTP over a Unix socket can drive it:
//! `curl --unix-socket SOCKET http://proxy/stats`.
//!
//! | request | answer |
//! | --- | --- |
//! | `GET /healthz` | 200 and [`Health`]: the proxy serves, and where each listener is bound |
//! | `GET /config` | 200 and the [`ProxyConfig`] being served |
//! | `PUT /config` with a [`ProxyConfig`] | 200 `{}`: it serves from now on (and was saved, when the server saves); 400: the body is not a `ProxyConfig`; 422: refused (invalid, or a socket that cannot be bound), the previous configuration serves on untouched; 500: it serves, but saving it failed |
//! | `GET /members` | 200 and [`MemberStatuses`]: pool id → member id → operating status |
//! | `GET /stats` | 200 and [`StatsSnapshot`] |
//!
//! Every error answer is `{"error": "TEXT"}`, TEXT being the whole cause chain (which
//! listener, which address, which field). Other paths are 404, other methods 405. A body
//! may be up to [`MAX_BODY_BYTES`].
//!
//! # Security
//! The socket file is made 0600 before it gets its name (bound under a temporary name,
//! chmod, then renamed), so only the proxy's user (root, the agent) ever connects: the
//! configuration holds TLS private keys and the socket can point the proxy anywhere.

mod client;
mod server;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

pub use client::{ControlClient, ControlError};
pub use server::{ControlServer, SaveConfig, ServeError};

#[cfg(doc)]
use crate::{MemberStatuses, Proxy, ProxyConfig, StatsSnapshot};

/// The largest request or answer body accepted: configurations carry certificates, so
/// they are not tiny, but nothing legitimate comes close.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// The answer to `GET /healthz`: the proxy serves, and here is where.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    /// By listener id, the bound address (with an ephemeral port resolved).
    pub listeners: BTreeMap<String, SocketAddr>,
}

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ErrorBody {
    error: String,
}

/// The paths of the protocol.
mod path {
    pub const HEALTH: &str = "/healthz";
    pub const CONFIG: &str = "/config";
    pub const MEMBERS: &str = "/members";
    pub const STATS: &str = "/stats";
}
