//! The subresources served by a pod's node, as kube-apiserver serves them through the
//! kubelet: `pods/log` streamed from the agent without buffering (so `-f` follows), and
//! `pods/exec` as a transparent WebSocket upgrade proxy: the client's upgrade request
//! (subprotocol `v5.channel.k8s.io` or `v4.channel.k8s.io`) goes on to the agent, and once
//! both sides have switched protocols the two connections are spliced byte for byte.
//! `pods/attach` and `pods/portforward` are refused with a clear 400. Requests are checked
//! here first (the container, the node, the container running) so the caller gets
//! kube-apiserver's messages.
//!
//! The server presents the node token to the agent; the hop is plain HTTP (TODO(#4): TLS).

mod agent;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use super::ApiState;
use super::query::Query;
use crate::error::{ApiError, ApiResult};

pub use agent::{AgentAccess, console_output};

/// Whether the pods subresource is one this module serves.
pub(super) fn serves(subresource: &str) -> bool {
    matches!(subresource, "log" | "exec" | "attach" | "portforward")
}

/// Serves `pods/{subresource}` of pod `namespace/name`; the caller is authorized.
pub(super) async fn serve(
    state: &ApiState,
    namespace: &str,
    name: &str,
    subresource: &str,
    query: &Query,
    parts: http::request::Parts,
) -> ApiResult<Response> {
    match subresource {
        "log" if parts.method == Method::GET => logs(state, namespace, name, query).await,
        "log" => Err(ApiError::method_not_allowed(
            "pods/log",
            parts.method.as_str(),
        )),
        "exec" => exec(state, namespace, name, query, parts).await,
        other => Err(ApiError::bad_request(format!(
            "pods/{other} is not supported by this server; use pods/exec"
        ))),
    }
}

/// The container a request names, checked against the pod as kube-apiserver does: a pod
/// with one container needs no name.
fn container_of(pod: &Value, name: &str, wanted: Option<&str>) -> ApiResult<String> {
    let names: Vec<&str> = ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|list| {
            pod.pointer(&format!("/spec/{list}"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .filter_map(|container| container["name"].as_str())
        .collect();
    let regular: Vec<&str> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|container| container["name"].as_str())
        .collect();
    match wanted.filter(|wanted| !wanted.is_empty()) {
        Some(wanted) if names.contains(&wanted) => Ok(wanted.to_owned()),
        Some(wanted) => Err(ApiError::bad_request(format!(
            "container {wanted} is not valid for pod {name}"
        ))),
        None if regular.len() == 1 => Ok(regular[0].to_owned()),
        None if regular.is_empty() => Err(ApiError::bad_request(format!(
            "a container name must be specified for pod {name}"
        ))),
        None => Err(ApiError::bad_request(format!(
            "a container name must be specified for pod {name}, choose one of: [{}]",
            names.join(" ")
        ))),
    }
}

/// A 400 unless `container` has started (running or finished): the kubelet's answer for
/// a container that has nothing to show yet.
fn ensure_started(pod: &Value, name: &str, container: &str) -> ApiResult<()> {
    let status = [
        "initContainerStatuses",
        "containerStatuses",
        "ephemeralContainerStatuses",
    ]
    .iter()
    .flat_map(|list| {
        pod.pointer(&format!("/status/{list}"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
    })
    .find(|status| status["name"] == container);
    let state = status.and_then(|status| status.get("state"));
    if state
        .is_some_and(|state| state.get("running").is_some() || state.get("terminated").is_some())
    {
        return Ok(());
    }
    let waiting = state
        .and_then(|state| state.pointer("/waiting/reason"))
        .and_then(Value::as_str)
        .unwrap_or("ContainerCreating");
    Err(ApiError::bad_request(format!(
        "container \"{container}\" in pod \"{name}\" is waiting to start: {waiting}"
    )))
}

/// The pod, the container the request is for, and where the pod's node's agent listens.
async fn locate(
    state: &ApiState,
    namespace: &str,
    name: &str,
    query: &Query,
    previous: bool,
) -> ApiResult<(String, std::net::SocketAddr)> {
    let kind = state.engine.kind("v1", "Pod")?;
    let pod = state.engine.get(&kind, Some(namespace), name).await?;
    let container = container_of(&pod, name, query.get("container"))?;
    let node = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|node| !node.is_empty());
    let Some(node) = node else {
        return Err(ApiError::bad_request(format!(
            "container \"{container}\" in pod \"{name}\" is waiting to start: ContainerCreating"
        )));
    };
    // A previous instance's log is there while the current one waits (CrashLoopBackOff).
    if !previous {
        ensure_started(&pod, name, &container)?;
    }
    let address = agent::endpoint_of(&state.engine, node).await?;
    Ok((container, address))
}

fn agent_request(path: String) -> ApiResult<http::request::Builder> {
    let _ = http::uri::PathAndQuery::try_from(path.as_str())
        .map_err(|_| ApiError::bad_request("the request names a path the agent cannot take"))?;
    Ok(Request::get(path))
}

/// The log options the agent takes, checked.
fn log_query(query: &Query) -> ApiResult<String> {
    let mut forwarded = form_urlencoded::Serializer::new(String::new());
    for key in ["follow", "previous", "timestamps"] {
        if query.flag(key)? {
            forwarded.append_pair(key, "true");
        }
    }
    for key in ["tailLines", "sinceSeconds", "limitBytes"] {
        if let Some(number) = query.number(key)? {
            forwarded.append_pair(key, &number.to_string());
        }
    }
    if let Some(time) = query.get("sinceTime").filter(|time| !time.is_empty()) {
        forwarded.append_pair("sinceTime", time);
    }
    Ok(forwarded.finish())
}

async fn logs(state: &ApiState, namespace: &str, name: &str, query: &Query) -> ApiResult<Response> {
    let forwarded = log_query(query)?;
    let previous = query.flag("previous")?;
    let (container, address) = locate(state, namespace, name, query, previous).await?;
    let path = format!("/containerLogs/{namespace}/{name}/{container}?{forwarded}");
    let request = agent_request(path)?
        .body(Empty::<Bytes>::new())
        .map_err(|error| ApiError::internal("building an agent request failed", &error))?;
    let response = agent::send(&state.agents, address, request).await?;
    if response.status() != StatusCode::OK {
        return Err(agent::failure(response).await);
    }
    // The agent's body goes on as it comes: nothing is buffered, so `-f` follows.
    let mut proxied = Response::new(Body::new(response.into_body()));
    proxied
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(proxied)
}

/// The headers of a WebSocket handshake that travel on to the agent (never the client's
/// credential, nor extensions the agent would not negotiate).
const HANDSHAKE_HEADERS: [&str; 3] = [
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
];
/// The headers of the agent's 101 that travel back to the client.
const ACCEPT_HEADERS: [&str; 2] = ["sec-websocket-accept", "sec-websocket-protocol"];

fn is_websocket_upgrade(headers: &http::HeaderMap) -> bool {
    let has = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|value| {
            value.to_str().is_ok_and(|value| {
                value
                    .split(',')
                    .any(|part| part.trim().eq_ignore_ascii_case(token))
            })
        })
    };
    has(header::CONNECTION, "upgrade") && has(header::UPGRADE, "websocket")
}

/// The command and streams the agent takes, checked, with the kubelet's names for the
/// streams.
fn exec_query(query: &Query) -> ApiResult<String> {
    let command = query.all("command");
    if command.is_empty() {
        return Err(ApiError::bad_request(
            "you must specify at least one command for the container",
        ));
    }
    let mut forwarded = form_urlencoded::Serializer::new(String::new());
    for word in command {
        forwarded.append_pair("command", word);
    }
    let mut any_stream = false;
    for (key, kubelet) in [
        ("stdin", "input"),
        ("stdout", "output"),
        ("stderr", "error"),
        ("tty", "tty"),
    ] {
        if query.flag(key)? {
            forwarded.append_pair(kubelet, "1");
            any_stream |= key != "tty";
        }
    }
    if !any_stream {
        return Err(ApiError::bad_request(
            "you must specify at least 1 of stdin, stdout, stderr",
        ));
    }
    Ok(forwarded.finish())
}

async fn exec(
    state: &ApiState,
    namespace: &str,
    name: &str,
    query: &Query,
    mut parts: http::request::Parts,
) -> ApiResult<Response> {
    let forwarded = exec_query(query)?;
    let (container, address) = locate(state, namespace, name, query, false).await?;
    // Checked after the pod so that a SPDY client, which kubectl falls back to when the
    // WebSocket attempt failed, meets the same errors.
    if !is_websocket_upgrade(&parts.headers) {
        return Err(ApiError::bad_request(
            "pods/exec is served over WebSocket only (subprotocol v5.channel.k8s.io or v4.channel.k8s.io); SPDY is not supported",
        ));
    }
    let Some(client_upgrade) = parts.extensions.remove::<hyper::upgrade::OnUpgrade>() else {
        return Err(ApiError::bad_request(
            "this connection cannot be upgraded (WebSocket needs HTTP/1.1)",
        ));
    };
    let path = format!("/exec/{namespace}/{name}/{container}?{forwarded}");
    let mut request = agent_request(path)?
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "websocket");
    for name in HANDSHAKE_HEADERS {
        for value in parts.headers.get_all(name) {
            request = request.header(name, value);
        }
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .map_err(|error| ApiError::internal("building an agent request failed", &error))?;
    let mut response = agent::send(&state.agents, address, request).await?;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(agent::failure(response).await);
    }
    let agent_upgrade = hyper::upgrade::on(&mut response);
    let mut switched = Response::new(Body::empty());
    *switched.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = switched.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    for name in ACCEPT_HEADERS {
        if let Some(value) = response.headers().get(name) {
            headers.insert(name, value.clone());
        }
    }
    let (pod, container_name) = (name.to_owned(), container);
    tokio::spawn(async move {
        let (client, agent) = match tokio::try_join!(client_upgrade, agent_upgrade) {
            Ok(upgraded) => upgraded,
            Err(error) => {
                tracing::warn!(pod, container = container_name, %error, "upgrading an exec connection failed");
                return;
            }
        };
        let (mut client, mut agent) = (TokioIo::new(client), TokioIo::new(agent));
        match tokio::io::copy_bidirectional(&mut client, &mut agent).await {
            Ok((up, down)) => {
                tracing::debug!(
                    pod,
                    container = container_name,
                    up,
                    down,
                    "exec session ended"
                );
            }
            Err(error) => {
                tracing::debug!(pod, container = container_name, %error, "exec session broke off");
            }
        }
    });
    Ok(switched)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod() -> Value {
        json!({
            "metadata": {"name": "web"},
            "spec": {
                "initContainers": [{"name": "setup"}],
                "containers": [{"name": "a"}, {"name": "b"}],
            },
            "status": {"containerStatuses": [
                {"name": "a", "state": {"running": {}}},
                {"name": "b", "state": {"waiting": {"reason": "CrashLoopBackOff"}}},
            ]},
        })
    }

    #[test]
    fn containers_are_named_as_kube_apiserver_asks() {
        let pod = pod();
        assert_eq!(
            container_of(&pod, "web", Some("b")).ok(),
            Some("b".to_owned())
        );
        assert_eq!(
            container_of(&pod, "web", Some("setup")).ok(),
            Some("setup".to_owned())
        );
        let error = container_of(&pod, "web", None).expect_err("two containers");
        assert_eq!(
            error.status.message,
            "a container name must be specified for pod web, choose one of: [setup a b]"
        );
        assert_eq!(error.code(), 400);
        let error = container_of(&pod, "web", Some("c")).expect_err("no such container");
        assert_eq!(error.status.message, "container c is not valid for pod web");
        let single = json!({"spec": {"containers": [{"name": "only"}]}});
        assert_eq!(
            container_of(&single, "p", Some("")).ok(),
            Some("only".to_owned())
        );
    }

    #[test]
    fn waiting_containers_say_why() {
        let pod = pod();
        assert!(ensure_started(&pod, "web", "a").is_ok());
        let error = ensure_started(&pod, "web", "b").expect_err("waiting");
        assert_eq!(
            error.status.message,
            "container \"b\" in pod \"web\" is waiting to start: CrashLoopBackOff"
        );
        let error = ensure_started(&pod, "web", "setup").expect_err("no status yet");
        assert!(error.status.message.ends_with("ContainerCreating"));
    }

    #[test]
    fn websocket_upgrades_are_told_apart() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(is_websocket_upgrade(&headers));
        headers.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        assert!(!is_websocket_upgrade(&headers));
        assert!(serves("exec") && serves("log") && !serves("status"));
    }
}
