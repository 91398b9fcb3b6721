//! The typed client of the control socket: one connection per call (control traffic is a
//! request now and then, and a fresh connection never finds a stale one).

use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use tokio::net::UnixStream;

use super::{ErrorBody, Health, MAX_BODY_BYTES, path};
use crate::tasks::AbortOnDrop;
use crate::{MemberStatuses, ProxyConfig, StatsSnapshot};

/// Why a control call failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("cannot connect to the control socket {path}")]
    Connect {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the control socket {path} broke off the exchange")]
    Exchange {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The proxy did not take the configuration (invalid, or a socket it cannot bind):
    /// the previous one serves on.
    #[error("the configuration was refused: {message}")]
    Refused { message: String },
    /// Any other error answer.
    #[error("the control socket answered {status}: {message}")]
    Failed { status: StatusCode, message: String },
    #[error("cannot read the control socket's answer")]
    Decode(#[source] serde_json::Error),
}

/// Talks to the control socket of one proxy process.
#[derive(Debug, Clone)]
pub struct ControlClient {
    socket: PathBuf,
}

impl ControlClient {
    pub fn new(socket: impl Into<PathBuf>) -> ControlClient {
        ControlClient {
            socket: socket.into(),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Succeeds once the proxy serves; says where each listener is bound.
    pub async fn health(&self) -> Result<Health, ControlError> {
        self.get(path::HEALTH).await
    }

    /// The configuration being served.
    pub async fn config(&self) -> Result<ProxyConfig, ControlError> {
        self.get(path::CONFIG).await
    }

    /// Serves `config` from now on; [`ControlError::Refused`] when the proxy does not
    /// take it (it then serves on as before).
    pub async fn replace_config(&self, config: &ProxyConfig) -> Result<(), ControlError> {
        let body = serde_json::to_vec(config).map_err(ControlError::Decode)?;
        let (status, answer) = self.exchange(Method::PUT, path::CONFIG, body).await?;
        if status.is_success() {
            return Ok(());
        }
        let message = error_message(&answer);
        Err(if status == StatusCode::UNPROCESSABLE_ENTITY {
            ControlError::Refused { message }
        } else {
            ControlError::Failed { status, message }
        })
    }

    /// Every member's operating status: pool id → member id → status.
    pub async fn member_status(&self) -> Result<MemberStatuses, ControlError> {
        self.get(path::MEMBERS).await
    }

    /// Traffic counters of every listener and member.
    pub async fn stats(&self) -> Result<StatsSnapshot, ControlError> {
        self.get(path::STATS).await
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ControlError> {
        let (status, answer) = self.exchange(Method::GET, path, Vec::new()).await?;
        if !status.is_success() {
            return Err(ControlError::Failed {
                status,
                message: error_message(&answer),
            });
        }
        serde_json::from_slice(&answer).map_err(ControlError::Decode)
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<(StatusCode, Bytes), ControlError> {
        let exchange_error =
            |source: Box<dyn std::error::Error + Send + Sync>| ControlError::Exchange {
                path: self.socket.clone(),
                source,
            };
        let stream =
            UnixStream::connect(&self.socket)
                .await
                .map_err(|source| ControlError::Connect {
                    path: self.socket.clone(),
                    source,
                })?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|error| exchange_error(error.into()))?;
        let _connection = AbortOnDrop::new(tokio::spawn(async move {
            let _ = connection.await;
        }));
        let mut request = Request::new(Full::new(Bytes::from(body)));
        *request.method_mut() = method;
        *request.uri_mut() = path
            .parse()
            .map_err(|error: http::uri::InvalidUri| exchange_error(error.into()))?;
        let headers = request.headers_mut();
        headers.insert(header::HOST, HeaderValue::from_static("proxy"));
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let response = sender
            .send_request(request)
            .await
            .map_err(|error| exchange_error(error.into()))?;
        let status = response.status();
        let answer = Limited::new(response.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
            .map_err(exchange_error)?
            .to_bytes();
        Ok((status, answer))
    }
}

/// The text of an error answer (or the raw body when it is not the usual shape).
fn error_message(answer: &[u8]) -> String {
    serde_json::from_slice::<ErrorBody>(answer)
        .map(|body| body.error)
        .unwrap_or_else(|_| String::from_utf8_lossy(answer).into_owned())
}
