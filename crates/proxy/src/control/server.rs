//! The control server: owns a running [`Proxy`] and answers the protocol of
//! [`crate::control`] on a Unix socket until shut down.

use std::convert::Infallible;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use super::{ErrorBody, Health, MAX_BODY_BYTES, path};
use crate::{Proxy, ProxyConfig, ProxyError};

/// Saves a configuration the proxy has just taken (the `ronghe proxy` process writes it
/// back to its configuration file, so a restart comes back with it). Called after the
/// proxy serves it, one replacement at a time, on a blocking thread.
pub type SaveConfig = Arc<dyn Fn(&ProxyConfig) -> io::Result<()> + Send + Sync>;

/// How long a control client may take to send a request's head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the control socket could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("control socket {path}: another process serves on it")]
    InUse { path: PathBuf },
    #[error("control socket {path}: something that is not a socket is in the way")]
    NotASocket { path: PathBuf },
    #[error("control socket {path}: cannot bind")]
    Bind {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Serves one proxy's control socket. Dropping it stops serving, removes the socket file
/// and stops the proxy without waiting; [`ControlServer::shutdown`] waits for all of it.
#[derive(Debug)]
pub struct ControlServer {
    state: Option<Arc<State>>,
    path: PathBuf,
    /// The socket file's device and inode: only that file is removed at the end, not one
    /// a successor bound at the same path meanwhile.
    identity: (u64, u64),
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

struct State {
    proxy: Proxy,
    save: Option<SaveConfig>,
    /// One replacement at a time, so configurations are saved in the order they were
    /// applied.
    replacing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("State")
            .field("proxy", &self.proxy)
            .field("saves", &self.save.is_some())
            .finish_non_exhaustive()
    }
}

impl ControlServer {
    /// Serves `proxy`'s control socket at `socket` (mode 0600). A stale socket file at
    /// that path (nobody answers on it) is replaced; a live one is not. With `save`, each
    /// configuration taken through the socket is saved once it serves.
    pub async fn start(
        proxy: Proxy,
        socket: &Path,
        save: Option<SaveConfig>,
    ) -> Result<ControlServer, ServeError> {
        let (listener, identity) = bind_private(socket).await?;
        let state = Arc::new(State {
            proxy,
            save,
            replacing: tokio::sync::Mutex::new(()),
        });
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(serve(listener, Arc::clone(&state), stopped));
        tracing::info!(socket = %socket.display(), "control socket ready");
        Ok(ControlServer {
            state: Some(state),
            path: socket.to_owned(),
            identity,
            stop,
            task: Some(task),
        })
    }

    /// The proxy being served.
    pub fn proxy(&self) -> &Proxy {
        &self
            .state
            .as_ref()
            .expect("the state is only taken by shutdown, which consumes the server")
            .proxy
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops answering (control connections are cut), removes the socket file, then shuts
    /// the proxy down and waits for it.
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.remove_socket();
        let Some(state) = self.state.take() else {
            return;
        };
        // The serving task and every connection task have ended, and with them every
        // other handle on the state.
        match Arc::try_unwrap(state) {
            Ok(state) => state.proxy.shutdown().await,
            Err(_) => tracing::error!("the proxy is still in use; stopping it without waiting"),
        }
    }

    fn remove_socket(&self) {
        let ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|metadata| (metadata.dev(), metadata.ino()) == self.identity);
        if ours && let Err(error) = std::fs::remove_file(&self.path) {
            tracing::warn!(socket = %self.path.display(), %error, "cannot remove the control socket");
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            self.remove_socket();
        }
    }
}

/// Binds a Unix socket at `socket` that only this user can connect to: bound inside a
/// fresh 0700 directory beside it, made 0600, then renamed into place, so at no moment
/// does anyone else reach it (whatever the umask).
async fn bind_private(socket: &Path) -> Result<(UnixListener, (u64, u64)), ServeError> {
    let bind_error = |source| ServeError::Bind {
        path: socket.to_owned(),
        source,
    };
    match std::fs::symlink_metadata(socket) {
        Ok(metadata) if metadata.file_type().is_socket() => {
            if UnixStream::connect(socket).await.is_ok() {
                return Err(ServeError::InUse {
                    path: socket.to_owned(),
                });
            }
        }
        Ok(_) => {
            return Err(ServeError::NotASocket {
                path: socket.to_owned(),
            });
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(bind_error(error)),
    }
    let parent = match socket.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    // Short names: a Unix socket's path has at most 107 bytes.
    let private = parent.join(format!(".ctl{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&private);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .map_err(bind_error)?;
    let bound = (|| {
        let temporary = private.join("s");
        let listener = UnixListener::bind(&temporary)?;
        std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&temporary, socket)?;
        let metadata = std::fs::symlink_metadata(socket)?;
        Ok((listener, (metadata.dev(), metadata.ino())))
    })();
    let _ = std::fs::remove_dir_all(&private);
    bound.map_err(bind_error)
}

async fn serve(listener: UnixListener, state: Arc<State>, mut stop: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(stream, Arc::clone(&state)));
                }
                Err(error) => {
                    tracing::warn!(%error, "control socket: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            // (The guard `wait_for` returns must not be held across the awaits above.)
            () = async { let _ = stop.wait_for(|stop| *stop).await; } => break,
        }
    }
    connections.shutdown().await;
}

async fn serve_connection(stream: UnixStream, state: Arc<State>) {
    let service = hyper::service::service_fn(move |request| {
        let state = Arc::clone(&state);
        async move { Ok::<_, Infallible>(handle(&state, request).await) }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(error) = served {
        tracing::debug!(%error, "control connection ended with an error");
    }
}

type Answer = Response<Full<Bytes>>;

async fn handle(state: &State, request: Request<Incoming>) -> Answer {
    let proxy = &state.proxy;
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    match (method, path.as_str()) {
        (Method::GET, path::HEALTH) => {
            let config = proxy.config();
            let listeners = config
                .listeners
                .iter()
                .filter_map(|listener| Some((listener.id.clone(), proxy.local_addr(&listener.id)?)))
                .collect();
            json(StatusCode::OK, &Health { listeners })
        }
        (Method::GET, path::CONFIG) => json(StatusCode::OK, &*proxy.config()),
        (Method::PUT, path::CONFIG) => replace(state, request.into_body()).await,
        (Method::GET, path::MEMBERS) => json(StatusCode::OK, &*proxy.member_status().borrow()),
        (Method::GET, path::STATS) => json(StatusCode::OK, &proxy.stats()),
        (_, path::CONFIG) => not_allowed("GET, PUT"),
        (_, path::HEALTH | path::MEMBERS | path::STATS) => not_allowed("GET"),
        (_, other) => error(StatusCode::NOT_FOUND, format!("no such path {other:?}")),
    }
}

async fn replace(state: &State, body: Incoming) -> Answer {
    let bytes = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(cause) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("cannot read the body: {cause}"),
            );
        }
    };
    let config: ProxyConfig = match serde_json::from_slice(&bytes) {
        Ok(config) => config,
        Err(cause) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("the body is not a proxy configuration: {cause}"),
            );
        }
    };
    let _one_at_a_time = state.replacing.lock().await;
    if let Err(refused) = state.proxy.reconfigure(config).await {
        let status = match refused {
            ProxyError::InvalidConfig(_) | ProxyError::Bind { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ProxyError::RuntimeShutDown | ProxyError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let text = error_chain(&refused);
        tracing::warn!(
            error = text,
            "configuration refused; the previous one serves on"
        );
        return error(status, text);
    }
    tracing::info!("configuration replaced");
    if let Some(save) = &state.save {
        let save = Arc::clone(save);
        let config = state.proxy.config();
        let saved = tokio::task::spawn_blocking(move || save(&config)).await;
        let failure = match saved {
            Ok(Ok(())) => None,
            Ok(Err(cause)) => Some(error_chain(&cause)),
            Err(_) => Some("saving panicked".to_owned()),
        };
        if let Some(cause) = failure {
            tracing::error!(
                error = cause,
                "the new configuration serves but was not saved"
            );
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the configuration serves but was not saved: {cause}"),
            );
        }
    }
    json(StatusCode::OK, &serde_json::json!({}))
}

/// An error and its sources, outermost first.
pub(super) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn json(status: StatusCode, value: &impl Serialize) -> Answer {
    match serde_json::to_vec(value) {
        Ok(body) => {
            let mut response = Response::new(Full::new(Bytes::from(body)));
            *response.status_mut() = status;
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(cause) => {
            tracing::error!(%cause, "cannot encode a control answer");
            let mut response = Response::new(Full::new(Bytes::from_static(
                br#"{"error":"cannot encode the answer"}"#,
            )));
            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            response
        }
    }
}

fn error(status: StatusCode, text: String) -> Answer {
    json(status, &ErrorBody { error: text })
}

fn not_allowed(allow: &'static str) -> Answer {
    let mut response = error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed".into());
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}
