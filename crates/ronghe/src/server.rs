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
    ronghe_server::run(config, shutdown_signal()).await
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
