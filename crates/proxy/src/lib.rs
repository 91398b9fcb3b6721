//! The load-balancer data plane: one [`Proxy`] per load balancer, serving its listeners
//! on the VIP and sending traffic to pool members.
//!
//! # What it owns
//! Everything between a client's packets on the VIP and a member's socket: listeners
//! (TCP, UDP, HTTP, HTTPS passed through, TERMINATED_HTTPS), member selection (round
//! robin, least connections, source IP; backups, weights, session persistence), health
//! monitors (PING, TCP, HTTP, HTTPS, UDP-CONNECT) and the members' operating status,
//! L7 policies, X-Forwarded-* headers, TLS termination, connection limits and timeouts,
//! and per-listener and per-member traffic counters. The shapes are Octavia's
//! ([`config`]), so a Kubernetes Service and an OpenStack load balancer feed it alike.
//!
//! # Invariants
//! - Established connections are never dropped by a reconfigure. Listeners that stay
//!   keep their sockets (no re-bind); new connections see the new pools and members at
//!   once, open TCP connections keep what they started with, and open HTTP connections
//!   see the new state at their next request (for L7 the unit of "new" is the request);
//!   removed listeners stop accepting and their open connections drain (HTTP ones
//!   finish their requests in flight and then close). (UDP has no connections: a removed
//!   UDP listener's sessions end with its socket.)
//! - An invalid configuration never replaces a good one: [`Proxy::reconfigure`]
//!   validates and binds everything new first, and on any error the proxy serves on
//!   exactly as before. [`ProxyConfig::validate`] runs the same checks on their own.
//! - A member takes new connections only while admin up, of weight above 0 and, with a
//!   monitor, ONLINE; backups only while no other member does.
//!
//! # Boundary
//! The crate knows nothing of the API server, Octavia or Kubernetes objects. The host
//! agent runs a proxy (inside the network namespace holding the VIP), feeds it
//! [`ProxyConfig`]s, and reads [`Proxy::member_status`] (a watch of each member's
//! [`OperatingStatus`]) and [`Proxy::stats`] to report them. Nothing here runs commands
//! or touches namespaces. The one file the crate makes is a control socket: [`control`]
//! serves a proxy's configuration, member statuses and stats over a Unix socket (0600),
//! for the `ronghe proxy` process the agent runs per load balancer (inside the VIP's
//! namespace, so it outlives an agent restart), and gives the agent its typed client.
//! Where a configuration is saved is the caller's business (a [`control::SaveConfig`]).
//!
//! # Layout
//! `config` (serde types, validation that also compiles what the data path needs),
//! `balancer` (pure member selection), `stats`, `health` (checkers and probes), `pool`
//! and `listener` (the serving state a configuration becomes), `tcp`, `udp`, `http`
//! (L7 proxy with `policy`, `forward`, `fields` for header fields read and written alike
//! by the HTTP/1 path and hyper's, `body` for body timeouts and stream slots, and `io`),
//! `proxy_protocol` (the headers PROXY pools open member connections with), `tls`,
//! `runtime` ([`Proxy`]: start, reconfigure, shutdown), `tasks` (shutdown
//! signal and task tracking), `control` (the control socket's server and client),
//! `testing` (unit-test helpers: deadlines, reserved ports).

pub mod balancer;
pub mod config;
pub mod control;
mod error;
pub mod health;
mod http;
mod listener;
mod pool;
pub mod proxy_protocol;
mod runtime;
pub mod stats;
mod tasks;
mod tcp;
#[cfg(test)]
mod testing;
mod tls;
mod udp;

/// Entry points for the fuzz targets (`fuzz/`): the parsers that read untrusted bytes.
#[doc(hidden)]
pub mod fuzzing {
    /// Reads bytes as a client's on an HTTP/1 connection and checks the fast path's
    /// invariants; panics on a violation.
    pub fn http1_client_bytes(data: &[u8]) {
        crate::http::check_client_bytes(data);
    }
}

pub use config::{ConfigError, ProxyConfig};
pub use error::ProxyError;
pub use health::{MemberStatuses, OperatingStatus};
pub use runtime::{Proxy, ProxyOptions};
pub use stats::{CounterSnapshot, StatsSnapshot};
pub use tls::TlsConfigError;
