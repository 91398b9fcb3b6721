//! Running a Ronghe server: open the store, bootstrap the data directory (CA, serving
//! certificate, identity, credentials, kubeconfig and clouds.yaml, built-in namespaces),
//! start the in-process controllers, and serve both API faces over HTTPS until asked to stop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use ronghe_store::Store;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use ronghe_apiserver::controllers;
use ronghe_apiserver::discovery::Discovery;
use ronghe_apiserver::engine::{Engine, WriteOptions};
use ronghe_apiserver::http::ApiState;
use ronghe_apiserver::identity::{IdentityService, PolicyAuthorizer};
use ronghe_apiserver::metrics::Metrics;
use ronghe_apiserver::openapi::OpenApi;

pub mod bootstrap;
pub mod files;
pub mod tls;

pub const KUBECONFIG_FILE: &str = "kubeconfig";
/// The Fernet key repository, as Keystone keeps it.
pub const FERNET_KEYS_DIR: &str = "fernet-keys";
const STORE_FILE: &str = "state.db";
/// Image data (Glance uploads), content-addressed: `DIR/blobs/sha256/<hex>`.
pub const IMAGE_BLOBS_DIR: &str = "blobs";

/// How long a new connection may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long an HTTP/1 request may take to send its headers (hyper's own default).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The namespaces every cluster has.
const BUILTIN_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

/// How the server runs.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// Use the in-memory store instead of SQLite (tests and simulations; nothing persists).
    pub in_memory_store: bool,
    /// Extra names and addresses for the serving certificate.
    pub extra_names: Vec<String>,
    pub bookmark_interval: Duration,
    /// How often store history older than `history` is compacted.
    pub compaction_interval: Duration,
    pub history: Duration,
    /// How long a token lives (Keystone's default is an hour).
    pub token_lifetime: Duration,
    /// The region in the service catalog.
    pub region: String,
    /// How long a node's agent may stay silent before the node is marked not ready.
    pub node_grace: Duration,
    /// How long an Event lives after it was last seen (kube-apiserver's `--event-ttl`).
    pub event_ttl: Duration,
}

impl ServerConfig {
    pub fn new(data_dir: PathBuf, listen: SocketAddr) -> Self {
        Self {
            data_dir,
            listen,
            in_memory_store: false,
            extra_names: Vec::new(),
            bookmark_interval: Duration::from_secs(60),
            compaction_interval: Duration::from_secs(60),
            history: Duration::from_secs(300),
            token_lifetime: Duration::from_secs(3600),
            region: "RegionOne".to_owned(),
            node_grace: Duration::from_secs(40),
            event_ttl: Duration::from_secs(3600),
        }
    }
}

/// Where a running server can be reached, for what runs beside it (the embedded agent).
#[derive(Clone, Debug)]
pub struct Serving {
    /// `https://host:port`.
    pub url: String,
    /// The CA certificate that signed the serving certificate (PEM).
    pub ca_pem: String,
    /// The credential agents join with (`DIR/node-token`).
    pub node_token: String,
}

/// Runs the server until `shutdown` resolves; then stops accepting, ends watches, lets
/// in-flight requests finish (for a bounded time) and closes the store.
pub async fn run(
    config: ServerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    run_and_tell(config, shutdown, None).await
}

/// [`run`], saying where it serves on `ready` once it accepts connections.
pub async fn run_and_tell(
    config: ServerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send,
    ready: Option<tokio::sync::oneshot::Sender<Serving>>,
) -> anyhow::Result<()> {
    use anyhow::Context as _;

    crate::files::create_private_dir(&config.data_dir)
        .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    let store: Arc<dyn Store> = if config.in_memory_store {
        Arc::new(ronghe_store::MemoryStore::new())
    } else {
        let path = config.data_dir.join(STORE_FILE);
        // SQLite gives its WAL and shared-memory files the database file's mode, so making
        // the database private first keeps all three private: they hold every Secret.
        crate::files::ensure_private_file(&path)
            .with_context(|| format!("securing the store {}", path.display()))?;
        Arc::new(
            ronghe_store::SqliteStore::open(&path)
                .with_context(|| format!("opening the store {}", path.display()))?,
        )
    };
    let registry = Arc::new(ronghe_apiserver::kinds::builtin_registry()?);
    let engine = Engine::new(store, registry.clone());
    ensure_namespaces(&engine).await?;

    let (stop_sender, stop) = watch::channel(false);
    let mut background = JoinSet::new();
    let identity = Arc::new(
        IdentityService::new(
            &config.data_dir.join(FERNET_KEYS_DIR),
            config.token_lifetime,
        )
        .context("opening the Fernet key repository")?,
    );
    background.spawn(ronghe_apiserver::identity::run_feed(
        identity.clone(),
        engine.store().clone(),
        stop.clone(),
    ));
    background.spawn(maintain_identity(
        identity.clone(),
        engine.clone(),
        stop.clone(),
    ));
    let admin_token = bootstrap::run(&engine, &identity, &config.data_dir)
        .await
        .context("bootstrapping identity")?;
    // The server calls agents (logs, exec) with the secret they join with.
    let node_token = std::fs::read_to_string(config.data_dir.join(bootstrap::NODE_TOKEN_FILE))
        .context("reading the node token")?;
    controllers::pair_projects(&engine)
        .await
        .context("pairing projects with namespaces")?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let local = listener.local_addr()?;
    let host = if local.ip().is_unspecified() {
        "127.0.0.1".to_owned()
    } else {
        local.ip().to_string()
    };
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
        host.clone(),
    ];
    if let Ok(hostname) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        names.push(hostname.trim().to_owned());
    }
    names.extend(config.extra_names.iter().cloned());
    names.sort();
    names.dedup();
    let tls = crate::tls::load_or_create(&config.data_dir, &names).context("setting up TLS")?;
    let server_url = if host.contains(':') {
        format!("https://[{host}]:{}", local.port())
    } else {
        format!("https://{host}:{}", local.port())
    };
    write_kubeconfig(&config.data_dir, &server_url, &tls.ca_pem, &admin_token)?;
    bootstrap::write_clouds_yaml(&config.data_dir, &server_url, &config.region)?;

    let state = Arc::new(ApiState {
        engine: engine.clone(),
        discovery: Discovery::new(&registry),
        openapi: OpenApi::new(&registry),
        authenticator: identity.clone(),
        authorizer: Arc::new(PolicyAuthorizer),
        metrics: Arc::new(Metrics::new()),
        shutdown: stop.clone(),
        bookmark_interval: config.bookmark_interval,
        agents: ronghe_apiserver::http::AgentAccess::new(&node_token),
    });
    controllers::start(
        &mut background,
        engine.clone(),
        stop.clone(),
        &controllers::ControllerConfig {
            compaction_interval: config.compaction_interval,
            history: config.history,
            node_grace: config.node_grace,
            event_ttl: config.event_ttl,
        },
    );
    let blobs_dir = config.data_dir.join(IMAGE_BLOBS_DIR);
    let image_blobs = ronghe_images::blob::BlobStore::open(&blobs_dir)
        .with_context(|| format!("opening the image blob store {}", blobs_dir.display()))?;
    let openstack = Arc::new(ronghe_openstack::OpenStack {
        engine: engine.clone(),
        identity: identity.clone(),
        public_url: server_url.clone(),
        region: config.region.clone(),
        images: Some(Arc::new(image_blobs)),
        agents: state.agents.clone(),
    });
    let router = ronghe_apiserver::http::router(state).merge(ronghe_openstack::router(openstack));
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.config);
    tracing::info!(url = %server_url, data_dir = %config.data_dir.display(), "serving the Kubernetes API");
    if let Some(ready) = ready {
        // Nobody listening any more is no reason to stop serving.
        let _ = ready.send(Serving {
            url: server_url.clone(),
            ca_pem: tls.ca_pem.clone(),
            node_token: node_token.trim().to_owned(),
        });
    }

    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (socket, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(%error, "accepting a connection failed");
                        continue;
                    }
                };
                let _ = socket.set_nodelay(true);
                connections.spawn(serve_connection(socket, peer, acceptor.clone(), router.clone(), stop.clone()));
            }
            () = &mut shutdown => break,
        }
        // Reap finished connection tasks so the set does not grow without bound.
        while connections.try_join_next().is_some() {}
    }
    tracing::info!("shutting down");
    let _ = stop_sender.send(true);
    drop(listener);
    let drained = tokio::time::timeout(Duration::from_secs(10), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("connections still open after 10 s; closing them");
        connections.shutdown().await;
    }
    background.shutdown().await;
    drop(engine);
    tracing::info!("stopped");
    Ok(())
}

async fn serve_connection(
    socket: tokio::net::TcpStream,
    peer: SocketAddr,
    acceptor: tokio_rustls::TlsAcceptor,
    router: axum::Router,
    mut stop: watch::Receiver<bool>,
) {
    // A client that connects and never finishes its handshake must not hold a task (or
    // shutdown) for long.
    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(socket));
    let stream = tokio::select! {
        result = handshake => match result {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                tracing::debug!(%peer, %error, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                return;
            }
        },
        _ = stop.changed() => return,
    };
    // The peer address travels with each request (failed logins are limited per source).
    let service = hyper_util::service::TowerToHyperService::new(tower::service_fn(
        move |mut request: http::Request<hyper::body::Incoming>| {
            request
                .extensions_mut()
                .insert(ronghe_openstack::ClientAddr(peer));
            tower::ServiceExt::oneshot(router.clone(), request.map(axum::body::Body::new))
        },
    ));
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        }
        _ = stop.changed() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// Creates the built-in namespaces if they are missing.
async fn ensure_namespaces(engine: &Engine) -> anyhow::Result<()> {
    let namespaces = engine.kind("v1", "Namespace")?;
    for name in BUILTIN_NAMESPACES {
        let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        match engine
            .create(&namespaces, None, body, &WriteOptions::default())
            .await
        {
            Ok(_) => tracing::info!(namespace = name, "created built-in namespace"),
            Err(error) if error.code() == 409 => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}

/// Housekeeping for identity: picks up rotated Fernet keys, and forgets revocations
/// once every token they refuse has expired.
async fn maintain_identity(
    identity: Arc<IdentityService>,
    engine: Engine,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
            _ = stop.changed() => return,
        }
        if let Err(error) = identity.reload_keys() {
            tracing::warn!(%error, "reloading the Fernet keys failed; keeping the old ones");
        }
        let expired = identity
            .directory()
            .expired_revocations(ronghe_apiserver::identity::now_seconds());
        let Ok(kind) = engine.kind(ronghe_identity::model::API_VERSION, "TokenRevocation") else {
            continue;
        };
        for name in expired {
            if let Err(error) = engine.delete(&kind, None, &name, &Default::default()).await
                && error.code() != 404
            {
                tracing::warn!(%error, name, "pruning a token revocation failed");
            }
        }
    }
}

/// Writes `DIR/kubeconfig` for the admin; kubectl uses it as is.
fn write_kubeconfig(dir: &Path, server: &str, ca_pem: &str, token: &str) -> anyhow::Result<()> {
    let kubeconfig = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "ronghe", "cluster": {
            "server": server,
            "certificate-authority-data": STANDARD.encode(ca_pem),
        }}],
        "users": [{"name": "admin", "user": {"token": token}}],
        "contexts": [{"name": "ronghe", "context": {"cluster": "ronghe", "user": "admin", "namespace": "default"}}],
        "current-context": "ronghe",
        "preferences": {},
    });
    let yaml = serde_yaml_ng::to_string(&kubeconfig)?;
    crate::files::write_private(&dir.join(KUBECONFIG_FILE), yaml.as_bytes())?;
    Ok(())
}
