//! The agent's own HTTP endpoint, like a kubelet's port 10250: the API server comes here
//! for container logs (`GET /containerLogs/{namespace}/{pod}/{container}`), `exec` over
//! WebSocket (`/exec/{namespace}/{pod}/{container}`, subprotocols `v5.channel.k8s.io` and
//! `v4.channel.k8s.io`) and a VM's serial console (`GET /vms/{namespace}/{name}/console`).
//!
//! Callers present the node token (`Authorization: Bearer …`), compared in constant time.
//! Pods and VMs are looked up through the API by namespace and name on each request (no
//! index to keep in step), and only those bound to this agent's hosts are served; any other
//! is 404. Errors are plain text, as the kubelet's are; the API server turns them into
//! `metav1.Status`. The endpoint speaks plain HTTP: TODO(#4) serve it over TLS.

mod channel;
mod exec;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{Path, RawQuery, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use futures::StreamExt;
use http::{HeaderValue, StatusCode, header};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject};
use kube::discovery::ApiResource;
use serde_json::Value;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::Drivers;
use crate::pods::{LogOptions, PodRef};

pub use channel::{PROTOCOLS, V4, V5};

/// The kubelet's port, the endpoint's default.
pub const DEFAULT_PORT: u16 = 10250;

/// Where the endpoint finds the pods and VMs it is asked about.
#[async_trait::async_trait]
pub trait Workloads: Send + Sync + 'static {
    async fn pod(&self, namespace: &str, name: &str) -> anyhow::Result<Option<Pod>>;
    async fn vm(&self, namespace: &str, name: &str) -> anyhow::Result<Option<DynamicObject>>;
}

/// Looks workloads up through the API with the agent's client.
pub struct ApiWorkloads(pub kube::Client);

#[async_trait::async_trait]
impl Workloads for ApiWorkloads {
    async fn pod(&self, namespace: &str, name: &str) -> anyhow::Result<Option<Pod>> {
        let pods: Api<Pod> = Api::namespaced(self.0.clone(), namespace);
        Ok(pods.get_opt(name).await?)
    }

    async fn vm(&self, namespace: &str, name: &str) -> anyhow::Result<Option<DynamicObject>> {
        let resource = ApiResource {
            group: "compute.ronghe.io".into(),
            version: "v1".into(),
            api_version: "compute.ronghe.io/v1".into(),
            kind: "VirtualMachine".into(),
            plural: "virtualmachines".into(),
        };
        let vms: Api<DynamicObject> = Api::namespaced_with(self.0.clone(), namespace, &resource);
        Ok(vms.get_opt(name).await?)
    }
}

/// What the endpoint's handlers share.
struct EndpointState {
    workloads: Arc<dyn Workloads>,
    /// The names of the hosts this agent runs.
    hosts: HashSet<String>,
    drivers: Drivers,
    /// The node token callers must present.
    token: String,
}

/// A bound endpoint, not yet serving (its port goes into the Nodes' status before they
/// register), and the node token its callers must present.
pub struct Endpoint {
    listener: TcpListener,
    token: String,
    /// The port the API server reaches the endpoint at, when not the one listened on (a
    /// relay or NAT in between).
    advertised_port: Option<u16>,
}

impl Endpoint {
    pub async fn bind(address: SocketAddr, token: &str) -> anyhow::Result<Endpoint> {
        use anyhow::Context as _;
        let listener = TcpListener::bind(address)
            .await
            .with_context(|| format!("binding the agent endpoint to {address}"))?;
        Ok(Endpoint {
            listener,
            token: token.trim().to_owned(),
            advertised_port: None,
        })
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Tells the API server to come to `port` instead of the one listened on.
    pub fn advertise_port(mut self, port: u16) -> Endpoint {
        self.advertised_port = Some(port);
        self
    }

    /// The port the Node advertises (`daemonEndpoints.kubeletEndpoint.Port`).
    pub fn advertised_port(&self) -> std::io::Result<u16> {
        match self.advertised_port {
            Some(port) => Ok(port),
            None => Ok(self.local_addr()?.port()),
        }
    }
}

/// Serves the logs, exec and consoles of the workloads on `hosts`, run by `drivers`, on
/// `endpoint` until `stop` flips.
pub async fn serve(
    endpoint: Endpoint,
    workloads: Arc<dyn Workloads>,
    hosts: HashSet<String>,
    drivers: Drivers,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let address = endpoint.local_addr()?;
    let state = Arc::new(EndpointState {
        workloads,
        hosts,
        drivers,
        token: endpoint.token.clone(),
    });
    tracing::info!(%address, "serving the agent endpoint (plain HTTP)");
    let server = axum::serve(endpoint.listener, router(state));
    // In-flight streams (a followed log, a shell) end with the process, not gracefully.
    tokio::select! {
        result = server => result?,
        _ = stop.changed() => {}
    }
    Ok(())
}

/// The endpoint's routes, behind the node-token check but for `/healthz` (which the
/// server probes to tell a host that stopped answering; it says nothing but `ok`).
fn router(state: Arc<EndpointState>) -> Router {
    Router::new()
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(container_logs),
        )
        .route("/exec/{namespace}/{pod}/{container}", any(exec))
        .route("/vms/{namespace}/{name}/console", get(console))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}

async fn authenticate(
    State(state): State<Arc<EndpointState>>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    match presented {
        Some(token) if token_matches(token, &state.token) => next.run(request).await,
        _ => text(StatusCode::UNAUTHORIZED, "Unauthorized"),
    }
}

/// Compares in time that does not depend on where the tokens differ.
fn token_matches(presented: &str, expected: &str) -> bool {
    !expected.is_empty() && bool::from(presented.as_bytes().ct_eq(expected.as_bytes()))
}

fn text(code: StatusCode, message: impl Into<String>) -> Response {
    let mut response = Response::new(Body::from(message.into()));
    *response.status_mut() = code;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// A failed request: its code and the plain-text message for the caller.
struct Failure(StatusCode, String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        text(self.0, self.1)
    }
}

fn bad_request(message: impl Into<String>) -> Failure {
    Failure(StatusCode::BAD_REQUEST, message.into())
}

/// The pod `namespace/name` if it is bound to one of this agent's hosts and has `container`.
async fn find_pod(
    state: &EndpointState,
    namespace: &str,
    name: &str,
    container: &str,
) -> Result<PodRef, Failure> {
    let pod = state
        .workloads
        .pod(namespace, name)
        .await
        .map_err(|error| lookup_failed("pod", namespace, name, &error))?;
    let not_here = || {
        Failure(
            StatusCode::NOT_FOUND,
            format!("pod {namespace}/{name} is not on this host"),
        )
    };
    let pod = pod.ok_or_else(not_here)?;
    let spec = pod.spec.as_ref().ok_or_else(not_here)?;
    if !spec
        .node_name
        .as_ref()
        .is_some_and(|node| state.hosts.contains(node))
    {
        return Err(not_here());
    }
    let has_container = spec.containers.iter().any(|c| c.name == container)
        || spec
            .init_containers
            .iter()
            .flatten()
            .any(|c| c.name == container)
        || spec
            .ephemeral_containers
            .iter()
            .flatten()
            .any(|c| c.name == container);
    if !has_container {
        return Err(Failure(
            StatusCode::NOT_FOUND,
            format!("container {container} is not valid for pod {name}"),
        ));
    }
    Ok(PodRef {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        uid: pod.metadata.uid.clone().unwrap_or_default(),
    })
}

fn lookup_failed(what: &str, namespace: &str, name: &str, error: &anyhow::Error) -> Failure {
    tracing::warn!(what, namespace, name, error = %format!("{error:#}"), "looking up a workload failed");
    Failure(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("cannot look up {what} {namespace}/{name} now"),
    )
}

/// The query's pairs, decoded.
fn pairs(query: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

fn first<'a>(pairs: &'a [(String, String)], keys: &[&str]) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(key, _)| keys.contains(&key.as_str()))
        .map(|(_, value)| value.as_str())
}

/// `true`/`1` or `false`/`0` (absent or empty: false), under any of `keys`.
fn flag(pairs: &[(String, String)], keys: &[&str]) -> Result<bool, Failure> {
    match first(pairs, keys) {
        None | Some("" | "false" | "0") => Ok(false),
        Some("true" | "1") => Ok(true),
        Some(other) => Err(bad_request(format!(
            "{} must be true or false, not {other:?}",
            keys[0]
        ))),
    }
}

fn number<T: std::str::FromStr>(
    pairs: &[(String, String)],
    key: &str,
) -> Result<Option<T>, Failure> {
    match first(pairs, &[key]).filter(|value| !value.is_empty()) {
        None => Ok(None),
        Some(text) => text.parse().map(Some).map_err(|_| {
            bad_request(format!(
                "{key} must be a non-negative integer, not {text:?}"
            ))
        }),
    }
}

/// kubelet's `PodLogOptions` from a query; `sinceTime` becomes seconds.
fn log_options(pairs: &[(String, String)]) -> Result<LogOptions, Failure> {
    let mut since_seconds: Option<i64> = number(pairs, "sinceSeconds")?;
    if let Some(time) = first(pairs, &["sinceTime"]).filter(|t| !t.is_empty()) {
        let since: jiff::Timestamp = time.parse().map_err(|_| {
            bad_request(format!("sinceTime must be an RFC 3339 time, not {time:?}"))
        })?;
        let seconds = jiff::Timestamp::now().as_second() - since.as_second();
        since_seconds = Some(seconds.max(0));
    }
    Ok(LogOptions {
        follow: flag(pairs, &["follow"])?,
        tail_lines: number(pairs, "tailLines")?,
        previous: flag(pairs, &["previous"])?,
        timestamps: flag(pairs, &["timestamps"])?,
        since_seconds,
        limit_bytes: number(pairs, "limitBytes")?,
    })
}

async fn container_logs(
    State(state): State<Arc<EndpointState>>,
    Path((namespace, name, container)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Response, Failure> {
    let options = log_options(&pairs(query.as_deref()))?;
    let pod = find_pod(&state, &namespace, &name, &container).await?;
    let stream = state
        .drivers
        .pods
        .logs(&pod, &container, &options)
        .await
        .map_err(|error| {
            tracing::warn!(pod = %name, container, error = %format!("{error:#}"), "reading a log failed");
            // The driver's own top line is meant for users; its causes stay in our log.
            Failure(StatusCode::BAD_REQUEST, error.to_string())
        })?;
    let stream = match options.limit_bytes {
        Some(limit) => limit_bytes(stream, limit),
        None => stream,
    };
    let mut response = Response::new(Body::from_stream(stream));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(response)
}

/// Ends `stream` after `limit` bytes, whatever the driver does with the option.
fn limit_bytes(
    stream: futures::stream::BoxStream<'static, std::io::Result<bytes::Bytes>>,
    limit: usize,
) -> futures::stream::BoxStream<'static, std::io::Result<bytes::Bytes>> {
    stream
        .scan(limit, |left, chunk| {
            let chunk = match chunk {
                Ok(_) if *left == 0 => return futures::future::ready(None),
                Ok(mut bytes) => {
                    bytes.truncate(*left);
                    *left -= bytes.len();
                    Ok(bytes)
                }
                Err(error) => Err(error),
            };
            futures::future::ready(Some(chunk))
        })
        .boxed()
}

async fn exec(
    State(state): State<Arc<EndpointState>>,
    Path((namespace, name, container)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, Failure> {
    let pairs = pairs(query.as_deref());
    let command: Vec<String> = pairs
        .iter()
        .filter(|(key, _)| key == "command")
        .map(|(_, value)| value.clone())
        .collect();
    if command.is_empty() {
        return Err(bad_request(
            "you must specify at least one command for the container",
        ));
    }
    // The kubelet's names (`input`, `output`, `error`) and the API's (`stdin`, ...).
    let stdin = flag(&pairs, &["stdin", "input"])?;
    let stdout = flag(&pairs, &["stdout", "output"])?;
    let stderr = flag(&pairs, &["stderr", "error"])?;
    let tty = flag(&pairs, &["tty"])?;
    if !(stdin || stdout || stderr) {
        return Err(bad_request(
            "you must specify at least 1 of stdin, stdout, stderr",
        ));
    }
    let pod = find_pod(&state, &namespace, &name, &container).await?;
    let refuse = || {
        bad_request(format!(
            "exec needs a WebSocket upgrade with the subprotocol {} or {}",
            channel::V5,
            channel::V4
        ))
    };
    let upgrade = upgrade.map_err(|_| refuse())?.protocols(channel::PROTOCOLS);
    let protocol = match upgrade.selected_protocol().map(HeaderValue::as_bytes) {
        Some(b"v5.channel.k8s.io") => channel::V5,
        Some(b"v4.channel.k8s.io") => channel::V4,
        _ => return Err(refuse()),
    };
    let session = exec::ExecSession {
        pod,
        container,
        command,
        tty,
        stdin,
        stdout,
        stderr,
    };
    let driver = state.drivers.pods.clone();
    tracing::debug!(pod = %session.pod.name, container = %session.container, protocol, "exec");
    Ok(upgrade.on_upgrade(move |socket| exec::run(socket, protocol, driver, session)))
}

async fn console(
    State(state): State<Arc<EndpointState>>,
    Path((namespace, name)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Response, Failure> {
    let pairs = pairs(query.as_deref());
    let lines: Option<usize> = number(&pairs, "lines")?;
    let wanted_uid = first(&pairs, &["uid"]).filter(|uid| !uid.is_empty());
    let vm = state
        .workloads
        .vm(&namespace, &name)
        .await
        .map_err(|error| lookup_failed("virtual machine", &namespace, &name, &error))?;
    let not_here = || {
        Failure(
            StatusCode::NOT_FOUND,
            format!("virtual machine {namespace}/{name} is not on this host"),
        )
    };
    let vm = vm.ok_or_else(not_here)?;
    let host = vm.data.pointer("/status/host").and_then(Value::as_str);
    let uid = vm.metadata.uid.clone().unwrap_or_default();
    if !host.is_some_and(|host| state.hosts.contains(host))
        || wanted_uid.is_some_and(|wanted| wanted != uid)
    {
        return Err(not_here());
    }
    let output = state
        .drivers
        .vms
        .console_output(&uid, lines)
        .await
        .map_err(|error| {
            tracing::warn!(vm = %name, error = %format!("{error:#}"), "reading a console failed");
            Failure(StatusCode::INTERNAL_SERVER_ERROR, error.to_string())
        })?;
    Ok(text(StatusCode::OK, output))
}

#[cfg(test)]
mod tests;
