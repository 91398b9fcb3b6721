//! Reaching a node's agent: where it listens (the Node's `InternalIP` and
//! `daemonEndpoints.kubeletEndpoint.Port`), one HTTP/1.1 connection per request with the
//! node token, and the agent's plain-text errors turned into `metav1.Status`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use ronghe_api_types::status::{STATUS_FAILURE, Status, reason};
use serde_json::Value;

use crate::engine::Engine;
use crate::error::{ApiError, ApiResult};

/// How long connecting to an agent may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an agent may take to answer a request's headers (a followed log answers at
/// once and streams after).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// How much of an agent's error body is read.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// The credential the server presents to agents: the node token (`DIR/node-token`), the
/// same secret agents join with.
#[derive(Clone)]
pub struct AgentAccess {
    token: Arc<str>,
}

impl AgentAccess {
    pub fn new(token: &str) -> Self {
        Self {
            token: token.trim().into(),
        }
    }

    /// `Authorization: Bearer <node token>`.
    pub(super) fn authorization(&self) -> ApiResult<HeaderValue> {
        let mut value = HeaderValue::from_str(&format!("Bearer {}", self.token))
            .map_err(|error| ApiError::internal("the node token is not a header value", &error))?;
        value.set_sensitive(true);
        Ok(value)
    }
}

impl std::fmt::Debug for AgentAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AgentAccess { token: <redacted> }")
    }
}

/// Where the agent of node `name` listens.
pub(super) async fn endpoint_of(engine: &Engine, name: &str) -> ApiResult<SocketAddr> {
    let kind = engine.kind("v1", "Node")?;
    let node = engine.get(&kind, None, name).await?;
    crate::kinds::agent_endpoint(&node).ok_or_else(|| {
        ApiError::new(Status::service_unavailable(format!(
            "node \"{name}\" reports no agent endpoint"
        )))
    })
}

/// Sends `request` to the agent at `address` on a connection of its own and returns its
/// response (an upgrade stays possible on it). The request's `Host` and credential are set
/// here.
pub(super) async fn send(
    access: &AgentAccess,
    address: SocketAddr,
    mut request: Request<Empty<Bytes>>,
) -> ApiResult<http::Response<Incoming>> {
    let unreachable = |error: &dyn std::error::Error| {
        tracing::warn!(%address, error = %crate::error::ErrorChain(error), "reaching an agent failed");
        ApiError::new(Status::service_unavailable(format!(
            "the agent at {address} cannot be reached"
        )))
    };
    let stream = match tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio::net::TcpStream::connect(address),
    )
    .await
    {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => return Err(unreachable(&error)),
        Err(elapsed) => return Err(unreachable(&elapsed)),
    };
    let _ = stream.set_nodelay(true);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| unreachable(&error))?;
    tokio::spawn(async move {
        if let Err(error) = connection.with_upgrades().await {
            tracing::debug!(%address, %error, "an agent connection ended with an error");
        }
    });
    let host = HeaderValue::from_str(&address.to_string())
        .map_err(|error| ApiError::internal("an address is not a header value", &error))?;
    request.headers_mut().insert(header::HOST, host);
    request
        .headers_mut()
        .insert(header::AUTHORIZATION, access.authorization()?);
    match tokio::time::timeout(RESPONSE_TIMEOUT, sender.send_request(request)).await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(error)) => Err(unreachable(&error)),
        Err(elapsed) => Err(unreachable(&elapsed)),
    }
}

/// The error an agent's non-success answer becomes, as kube-apiserver words a kubelet's
/// (its plain-text body is the message).
pub(super) async fn failure(response: http::Response<Incoming>) -> ApiError {
    let code = response.status();
    let body = match Limited::new(response.into_body(), ERROR_BODY_LIMIT)
        .collect()
        .await
    {
        Ok(collected) => String::from_utf8_lossy(&collected.to_bytes())
            .trim()
            .to_owned(),
        Err(_) => String::new(),
    };
    let generic = |code: u16, why: &str| {
        ApiError::new(Status {
            status: STATUS_FAILURE.to_owned(),
            message: body.clone(),
            reason: why.to_owned(),
            code,
            ..Status::default()
        })
    };
    match code {
        StatusCode::BAD_REQUEST => ApiError::bad_request(body),
        StatusCode::NOT_FOUND => generic(404, reason::NOT_FOUND),
        StatusCode::SERVICE_UNAVAILABLE => generic(503, reason::SERVICE_UNAVAILABLE),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            tracing::error!(%code, "an agent refused the server's node token");
            ApiError::new(Status::internal_error(
                "the node's agent refused the server's credential",
            ))
        }
        _ => ApiError::new(Status::internal_error(body)),
    }
}

/// The last `lines` lines (all when `None`) of VM `namespace/name`'s serial console, read
/// from the agent of the host it is placed on (`status.host`): what the Nova face shows as
/// the console log. A VM not placed yet is a 409 conflict.
pub async fn console_output(
    engine: &Engine,
    access: &AgentAccess,
    namespace: &str,
    name: &str,
    lines: Option<usize>,
) -> ApiResult<String> {
    let kind = engine.kind("compute.ronghe.io/v1", "VirtualMachine")?;
    let vm = engine.get(&kind, Some(namespace), name).await?;
    let Some(host) = vm
        .pointer("/status/host")
        .and_then(Value::as_str)
        .filter(|host| !host.is_empty())
    else {
        return Err(ApiError::new(Status::conflict_with(
            &kind.qualified_plural(),
            name,
            "the virtual machine is not placed on a host",
        )));
    };
    let address = endpoint_of(engine, host).await?;
    let query = {
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.append_pair("uid", crate::object::uid(&vm).unwrap_or_default());
        if let Some(lines) = lines {
            query.append_pair("lines", &lines.to_string());
        }
        query.finish()
    };
    let path = format!("/vms/{namespace}/{name}/console?{query}");
    let request = Request::get(path)
        .body(Empty::new())
        .map_err(|error| ApiError::internal("building an agent request failed", &error))?;
    let response = send(access, address, request).await?;
    if !response.status().is_success() {
        return Err(failure(response).await);
    }
    let body =
        response.into_body().collect().await.map_err(|error| {
            ApiError::internal("reading a console from an agent failed", &error)
        })?;
    Ok(String::from_utf8_lossy(&body.to_bytes()).into_owned())
}
