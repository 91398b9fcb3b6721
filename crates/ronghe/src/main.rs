//! The `ronghe` binary: `ronghe server` runs the control plane, `ronghe agent` a host,
//! `ronghe proxy` one load balancer's data plane, `ronghe bench ...` runs the benchmarks,
//! and the client commands talk to a server found through a kubeconfig.

mod agent;
mod bench;
mod client;
mod drivers;
mod images;
mod login;
mod proxy;
mod server;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ronghe",
    version,
    about = "Ronghe: a converged VM and container cloud"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API server (and its controllers).
    Server(server::ServerArgs),
    /// Join a server as a host (or as N simulated hosts) and heartbeat.
    Agent(Box<agent::AgentArgs>),
    /// Serve one load balancer (a proxy configuration file) with a control socket.
    Proxy(proxy::ProxyArgs),
    /// Run a benchmark and print its figures.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Print the client and server versions.
    Version(client::ClientArgs),
    /// Log in with a password and print a token for a project (for `kubectl --token` or
    /// `X-Auth-Token`).
    Login(login::LoginArgs),
    /// Print a kubeconfig for a user in a project, holding a new application credential.
    Kubeconfig(login::KubeconfigArgs),
    /// Manage the images Ronghe ships (`bootstrap` imports busybox and test-guest).
    #[command(subcommand)]
    Images(images::ImagesCommand),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging();
    let runtime = match &cli.command {
        Command::Proxy(args) => proxy::runtime(args)?,
        _ => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?,
    };
    runtime.block_on(async move {
        match cli.command {
            Command::Server(args) => server::run(args).await,
            Command::Agent(args) => agent::run(*args).await,
            Command::Proxy(args) => proxy::run(args).await,
            Command::Bench(command) => bench::run(command).await,
            Command::Version(args) => client::version(args).await,
            Command::Login(args) => login::login(args).await,
            Command::Kubeconfig(args) => login::kubeconfig(args).await,
            Command::Images(command) => images::run(command).await,
        }
    })
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}
