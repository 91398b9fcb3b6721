//! `ronghe server`: flags, signals, and handing over to the API server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

#[derive(Args, Debug)]
pub struct ServerArgs {
    /// Where the server keeps its state, CA, credentials and kubeconfig.
    #[arg(long, env = "RONGHE_DATA_DIR", default_value = "/var/lib/ronghe")]
    data_dir: PathBuf,
    /// The address to serve the API on (HTTPS). Port 0 picks a free port; the kubeconfig
    /// written into the data directory names the real one.
    #[arg(long, env = "RONGHE_LISTEN", default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Keep state in memory only (for tests and simulations; nothing survives a restart).
    #[arg(long)]
    in_memory: bool,
    /// More DNS names or IP addresses for the serving certificate.
    #[arg(long = "tls-san", value_name = "NAME")]
    tls_sans: Vec<String>,
    /// Seconds between watch bookmarks (for watches that ask for them).
    #[arg(long, default_value_t = 60)]
    bookmark_interval_seconds: u64,
    /// Seconds of store history kept for watches and paged lists before compaction.
    #[arg(long, default_value_t = 300)]
    history_seconds: u64,
    /// Seconds between compaction checks.
    #[arg(long, default_value_t = 60)]
    compaction_interval_seconds: u64,
    /// Seconds a token lives.
    #[arg(long, default_value_t = 3600)]
    token_lifetime_seconds: u64,
    /// Seconds a node's agent may go without renewing its lease before the node is marked
    /// not ready and tainted unreachable.
    #[arg(long, default_value_t = 40)]
    node_grace_seconds: u64,
    /// Seconds an Event lives after it was last seen (kube-apiserver's `--event-ttl`).
    #[arg(long, default_value_t = 3600)]
    event_ttl_seconds: u64,
    /// Run no agent in the server: this machine runs no workloads (a control-plane-only
    /// server; hosts join with `ronghe agent`).
    #[arg(long)]
    no_agent: bool,
    /// The node name of the embedded agent's host (default: the hostname).
    #[arg(long)]
    node_name: Option<String>,
    /// Where the embedded agent serves logs, exec and consoles to the server.
    #[arg(long, default_value = "127.0.0.1:0")]
    agent_listen: SocketAddr,
    /// The embedded agent's tenant networking (`linux` or `none`), as `ronghe agent
    /// --network`.
    #[arg(long, value_enum, default_value_t = crate::agent::NetworkMode::Linux)]
    agent_network: crate::agent::NetworkMode,
}

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let mut config = ronghe_server::ServerConfig::new(args.data_dir, args.listen);
    config.in_memory_store = args.in_memory;
    config.extra_names = args.tls_sans;
    config.bookmark_interval = Duration::from_secs(args.bookmark_interval_seconds.max(1));
    config.history = Duration::from_secs(args.history_seconds);
    config.compaction_interval = Duration::from_secs(args.compaction_interval_seconds.max(1));
    config.token_lifetime = Duration::from_secs(args.token_lifetime_seconds.max(1));
    config.node_grace = Duration::from_secs(args.node_grace_seconds.max(1));
    config.event_ttl = Duration::from_secs(args.event_ttl_seconds.max(1));
    if args.no_agent {
        return ronghe_server::run(config, shutdown_signal()).await;
    }
    // The embedded agent joins once the server serves, and stops before it.
    let data_dir = config.data_dir.clone();
    let (ready_tx, ready) = tokio::sync::oneshot::channel::<ronghe_server::Serving>();
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let agent = tokio::spawn(async move {
        let Ok(serving) = ready.await else {
            return Ok(());
        };
        crate::agent::embedded(
            &serving.url,
            &data_dir,
            args.node_name.as_deref(),
            args.agent_listen,
            args.agent_network,
            stop,
        )
        .await
    });
    let shutdown = async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    };
    let served = ronghe_server::run_and_tell(config, shutdown, Some(ready_tx)).await;
    match agent.await {
        Ok(Err(error)) => {
            tracing::error!(error = %format!("{error:#}"), "the embedded agent failed")
        }
        Err(error) => tracing::error!(%error, "the embedded agent panicked"),
        Ok(Ok(())) => {}
    }
    served
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(signal) => signal,
        Err(error) => {
            tracing::error!(%error, "cannot listen for SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = terminate.recv() => tracing::info!("received SIGTERM"),
        _ = tokio::signal::ctrl_c() => tracing::info!("received SIGINT"),
    }
}
