//! `ronghe agent`: joins a server with its node credential and registers this host (or,
//! with `--simulate N`, N fake hosts) as Nodes and resource providers, then heartbeats; it
//! serves logs, exec and VM consoles to the server on `--listen`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use clap::Args;
use ronghe_agent::Host;

#[derive(Args, Debug)]
pub struct AgentArgs {
    /// The server's URL (`https://HOST:PORT`).
    #[arg(long)]
    server: String,
    /// The join credential: the server's `DIR/node-token`.
    #[arg(long)]
    token_file: PathBuf,
    /// Where this host keeps its images, containers and VMs.
    #[arg(
        long,
        env = "RONGHE_AGENT_DATA_DIR",
        default_value = "/var/lib/ronghe-agent"
    )]
    data_dir: PathBuf,
    /// The server's CA certificate; default: `ca.crt` beside the token file.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// This host's node name; default: the machine's hostname. With `--simulate`, the
    /// prefix of the simulated hosts' names.
    #[arg(long)]
    node_name: Option<String>,
    /// Register this many simulated hosts instead of this machine.
    #[arg(long)]
    simulate: Option<usize>,
    /// Simulated hosts only register and heartbeat; nothing reports their workloads
    /// running (for measuring the scheduler alone).
    #[arg(long, requires = "simulate")]
    idle: bool,
    /// vCPUs offered (default: detected).
    #[arg(long)]
    vcpus: Option<i64>,
    /// Memory offered in MiB (default: detected).
    #[arg(long)]
    memory_mb: Option<i64>,
    #[arg(long, default_value_t = 100)]
    disk_gb: i64,
    #[arg(long, default_value_t = 1.0)]
    cpu_allocation_ratio: f64,
    #[arg(long, default_value_t = 1.0)]
    ram_allocation_ratio: f64,
    /// A device class and count offered as its own resource class (`VGPU=2`; repeatable).
    #[arg(long = "device", value_parser = parse_pair::<i64>)]
    devices: Vec<(String, i64)>,
    /// A custom placement trait (`CUSTOM_FAST_DISK`; repeatable).
    #[arg(long = "trait")]
    traits: Vec<String>,
    /// A node label (`key=value`; repeatable).
    #[arg(long = "label", value_parser = parse_pair::<String>)]
    labels: Vec<(String, String)>,
    /// The availability zone (also the `topology.kubernetes.io/zone` label).
    #[arg(long)]
    zone: Option<String>,
    /// How often each host's lease is renewed.
    #[arg(long, default_value_t = 10)]
    lease_interval_seconds: u64,
    /// Where the agent's endpoint listens for the API server (logs, exec, VM consoles),
    /// plain HTTP behind the node token. A specific address also becomes the Node's
    /// InternalIP. Simulated hosts share one endpoint. The last one given counts.
    #[arg(long, default_value = "0.0.0.0:10250", overrides_with = "listen")]
    listen: std::net::SocketAddr,
    /// Where the API server reaches the endpoint, when not at `--listen` (a relay or NAT
    /// in between): the Node's InternalIP and endpoint port.
    #[arg(long)]
    advertise: Option<std::net::SocketAddr>,
    /// The address other hosts send this host's VXLAN traffic to (its underlay address);
    /// the endpoint's address when that is a specific one.
    #[arg(long)]
    tunnel_ip: Option<std::net::Ipv4Addr>,
    /// A flat physical network this host has, and its interface (`public=eth1`;
    /// repeatable): external networks of that `provider:physical_network` are bridged to it.
    #[arg(long = "physical-network", value_parser = parse_pair::<String>)]
    physical_networks: Vec<(String, String)>,
    /// How this host's workloads reach tenant networks: `linux` (bridges, VXLAN, veths,
    /// TAPs, nftables, in this process's network namespace) or `none` (pods have loopback
    /// only, VMs no NICs). Simulated hosts have none.
    #[arg(long, value_enum, default_value_t = NetworkMode::Linux)]
    pub network: NetworkMode,
    /// The prefix of every named network namespace this agent makes (pods', DHCP
    /// services', routers'), so that agents sharing a machine never touch each other's.
    #[arg(long, default_value = "ronghe-")]
    netns_prefix: String,
    /// The interface VXLAN traffic leaves by (default: the route to each peer decides).
    #[arg(long)]
    underlay_interface: Option<String>,
    /// The TCP port this host's agent takes node-port traffic on from other hosts' agents
    /// (at its tunnel IP, from theirs only), for the load balancers it runs. With
    /// `--network linux`, node ports are served on all of this host's addresses.
    #[arg(long, default_value_t = ronghe_agent::nodeports::DEFAULT_RELAY_PORT)]
    node_port_relay_port: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum NetworkMode {
    Linux,
    None,
}

fn parse_pair<T: std::str::FromStr>(text: &str) -> Result<(String, T), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))?;
    let value = value
        .parse()
        .map_err(|_| format!("{value:?} is not a valid value for {key}"))?;
    Ok((key.to_owned(), value))
}

/// `ronghe agent`: runs until SIGTERM or SIGINT.
pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        crate::server::shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    run_until(args, stop).await
}

/// The agent `ronghe server` embeds: this host joins the server at `url` with the node
/// token in `data_dir`, keeps its own state in `data_dir/agent`, and serves logs, exec
/// and consoles on `listen`.
pub async fn embedded(
    url: &str,
    data_dir: &std::path::Path,
    node_name: Option<&str>,
    listen: std::net::SocketAddr,
    network: NetworkMode,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    #[derive(clap::Parser)]
    struct Embedded {
        #[command(flatten)]
        args: AgentArgs,
    }
    let token_file = data_dir.join("node-token");
    let agent_dir = data_dir.join("agent");
    let listen = listen.to_string();
    let mut argv = vec![
        "agent",
        "--server",
        url,
        "--token-file",
        token_file
            .to_str()
            .context("the data directory is not UTF-8")?,
        "--data-dir",
        agent_dir
            .to_str()
            .context("the data directory is not UTF-8")?,
        "--listen",
        &listen,
    ];
    if let Some(name) = node_name {
        argv.extend(["--node-name", name]);
    }
    if network == NetworkMode::None {
        argv.extend(["--network", "none"]);
    }
    let parsed = <Embedded as clap::Parser>::try_parse_from(argv)?;
    run_until(parsed.args, stop).await
}

/// The node-port relay, at this host's tunnel IP (none without one: no other host could
/// reach it); one that cannot be bound is left out, saying why.
fn node_port_relay(
    tunnel_ip: Option<std::net::Ipv4Addr>,
    port: u16,
) -> Option<std::sync::Arc<std::net::TcpListener>> {
    let address = std::net::SocketAddr::from((tunnel_ip?, port));
    match std::net::TcpListener::bind(address) {
        Ok(listener) => Some(std::sync::Arc::new(listener)),
        Err(error) => {
            tracing::warn!(%address, %error, "cannot bind the node-port relay; other hosts' node ports will not reach this host's load balancers");
            None
        }
    }
}

async fn run_until(
    args: AgentArgs,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let token = std::fs::read_to_string(&args.token_file)
        .with_context(|| format!("reading {}", args.token_file.display()))?;
    let ca_file = match &args.ca_file {
        Some(path) => path.clone(),
        None => args.token_file.with_file_name("ca.crt"),
    };
    let ca = std::fs::read(&ca_file).with_context(|| format!("reading {}", ca_file.display()))?;
    if !args.server.starts_with("https://") {
        bail!("the server must be an https:// URL");
    }
    let cluster = kube::config::Cluster {
        server: Some(args.server.clone()),
        certificate_authority_data: Some(STANDARD.encode(ca)),
        ..Default::default()
    };
    let client = crate::client::for_cluster(&cluster, Some(token.trim())).await?;
    let name = match &args.node_name {
        Some(name) => name.clone(),
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_owned())
            .context("reading the hostname; pass --node-name")?,
    };
    let mut host = Host::detect(&name);
    if let Some(vcpus) = args.vcpus {
        host.vcpus = vcpus;
    }
    if let Some(memory_mb) = args.memory_mb {
        host.memory_mb = memory_mb;
        host.reserved_memory_mb = host.reserved_memory_mb.min(memory_mb / 4);
    }
    host.disk_gb = args.disk_gb;
    host.cpu_allocation_ratio = args.cpu_allocation_ratio;
    host.ram_allocation_ratio = args.ram_allocation_ratio;
    host.devices = args.devices.into_iter().collect::<BTreeMap<_, _>>();
    host.traits.extend(args.traits);
    host.labels.extend(args.labels);
    host.zone = args.zone;
    host.tunnel_ip = args.tunnel_ip.or_else(|| match args.listen.ip() {
        std::net::IpAddr::V4(ip) if !ip.is_unspecified() => Some(ip),
        _ => None,
    });
    host.physical_networks = args.physical_networks.into_iter().collect();
    if !args.listen.ip().is_unspecified() {
        host.address = args.listen.ip().to_string();
    }
    if let Some(advertise) = args.advertise {
        host.address = advertise.ip().to_string();
    }
    // Simulated hosts run their workloads with the fake drivers; this machine's run
    // through runc and QEMU.
    let (hosts, drivers): (Vec<Host>, Option<ronghe_agent::Drivers>) = match args.simulate {
        Some(count) => (
            (0..count).map(|index| host.simulated(index)).collect(),
            (!args.idle).then(ronghe_agent::Drivers::fake),
        ),
        None => {
            let network = match args.network {
                NetworkMode::Linux => Some(crate::drivers::LinuxNetwork {
                    netns_prefix: args.netns_prefix.clone(),
                    underlay_interface: args.underlay_interface.clone(),
                    node_port_relay: node_port_relay(host.tunnel_ip, args.node_port_relay_port),
                }),
                NetworkMode::None => None,
            };
            // Other hosts are told of the relay only once it is bound.
            if network
                .as_ref()
                .is_some_and(|n| n.node_port_relay.is_some())
            {
                host.node_port_relay = Some(args.node_port_relay_port);
            }
            let drivers = crate::drivers::for_this_host(
                &client,
                &args.data_dir,
                &host,
                network,
                stop.clone(),
            )
            .await?;
            (vec![host], Some(drivers))
        }
    };
    // Only hosts whose workloads run have logs, exec and consoles to serve.
    let endpoint = match &drivers {
        Some(_) => {
            let endpoint = ronghe_agent::serve::Endpoint::bind(args.listen, token.trim()).await?;
            Some(match args.advertise {
                Some(advertise) => endpoint.advertise_port(advertise.port()),
                None => endpoint,
            })
        }
        None => None,
    };
    ronghe_agent::run(
        client,
        hosts,
        Duration::from_secs(args.lease_interval_seconds.max(1)),
        drivers,
        endpoint,
        stop,
    )
    .await
}
