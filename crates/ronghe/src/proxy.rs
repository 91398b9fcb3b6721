//! `ronghe proxy`: one load balancer's data plane as a process of its own (the agent runs
//! one per load balancer inside its network namespace, so it outlives an agent restart
//! and its CPU is its own). It serves the configuration in `--config`, takes new ones
//! through the control socket (`ronghe_proxy::control`), writes each one it takes back to
//! `--config` so a restart comes back with the last good one, and stops on SIGTERM or
//! SIGINT.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use ronghe_proxy::control::{ControlServer, SaveConfig};
use ronghe_proxy::{Proxy, ProxyConfig, ProxyOptions};

#[derive(Args, Debug)]
pub struct ProxyArgs {
    /// The configuration (a `ProxyConfig` as JSON), read at start and rewritten (mode
    /// 0600, atomically) whenever the control socket replaces it.
    #[arg(long)]
    config: PathBuf,
    /// Where to serve the control socket (mode 0600).
    #[arg(long)]
    control: PathBuf,
    /// Worker threads serving traffic (default: one per CPU).
    #[arg(long)]
    threads: Option<usize>,
    /// Connections and datagrams from this address start with a PROXY protocol version 2
    /// header naming the client they carry (the agent's node-port forwarder sends from
    /// it).
    #[arg(long, value_name = "IP")]
    accept_proxy_from: Option<IpAddr>,
}

/// The runtime `ronghe proxy` serves on: `--threads` workers. One thread runs on the
/// current-thread scheduler, which has no work-stealing to pay for.
pub fn runtime(args: &ProxyArgs) -> std::io::Result<tokio::runtime::Runtime> {
    match args.threads {
        Some(1) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Some(threads) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .enable_all()
            .build(),
        None => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
    }
}

pub async fn run(args: ProxyArgs) -> anyhow::Result<()> {
    let config = read_config(&args.config)?;
    let options = ProxyOptions {
        accept_proxy_from: args.accept_proxy_from,
    };
    let proxy = Proxy::start_with(config, options)
        .await
        .with_context(|| format!("starting the proxy with {}", args.config.display()))?;
    let save: SaveConfig = {
        let path = args.config.clone();
        Arc::new(move |config: &ProxyConfig| save_config(&path, config))
    };
    let control = ControlServer::start(proxy, &args.control, Some(save))
        .await
        .context("serving the control socket")?;
    for listener in &control.proxy().config().listeners {
        if let Some(address) = control.proxy().local_addr(&listener.id) {
            tracing::info!(listener = listener.id, %address, "serving");
        }
    }
    crate::server::shutdown_signal().await;
    control.shutdown().await;
    tracing::info!("proxy stopped");
    Ok(())
}

fn read_config(path: &Path) -> anyhow::Result<ProxyConfig> {
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a proxy configuration", path.display()))
}

/// Writes `config` over `path` atomically (a crash leaves the old file or the new one),
/// readable by the owner only: it may hold TLS private keys.
fn save_config(path: &Path, config: &ProxyConfig) -> std::io::Result<()> {
    let mut text = serde_json::to_vec_pretty(config).map_err(std::io::Error::other)?;
    text.push(b'\n');
    ronghe_server::files::write_private(path, &text)
}
