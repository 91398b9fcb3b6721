//! `LinuxHostNetwork`, the real [`HostNetwork`]: the order of an apply (ruleset first, so
//! no secured port is ever wired without its filter; then networks, ports, services,
//! routers; then leftovers), teardown, and the metadata and DNS sockets.

mod announce;
mod cleanup;
mod dnsmasq;
mod firewall;
mod network;
mod port;
mod qos;
mod router;
mod service;
mod veth;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::HostNetError;
use crate::netlink::{Link, Netlink};
use crate::netns::{named_path, on_thread_in};
use crate::plan::HostPlan;
use crate::{Action, Applied, DnsSockets, HostNetwork, PortReadiness, names};

/// How one agent's data plane is placed on its machine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinuxConfig {
    /// Do everything inside this netns instead of the current one (tests, several agents
    /// on one machine). Named netns (services, routers) are created beside it.
    pub host_netns: Option<PathBuf>,
    /// Prefix of every named netns this agent creates (`<prefix>net-<hash>`,
    /// `<prefix>router-<hash>`), so agents sharing a machine never touch each other's:
    /// /run/netns is global.
    pub prefix: String,
    /// dnsmasq's configuration, leases and pid files, one directory per service netns.
    pub state_dir: PathBuf,
    /// The interface VXLAN devices send through (their `dev`); None lets routing pick.
    pub underlay_interface: Option<String>,
}

/// The host network on Linux: bridges, VXLAN, veths, TAPs, nftables, netns, dnsmasq.
pub struct LinuxHostNetwork {
    config: LinuxConfig,
    /// One apply or teardown at a time; holds what nftables rulesets were installed.
    state: tokio::sync::Mutex<firewall::InstalledRulesets>,
}

/// Whether a host-netns link is Ronghe's: by its name's shape or by the alias we write.
pub(crate) fn is_owned(link: &Link) -> bool {
    names::is_ronghe_device_name(&link.name)
        || link
            .alias
            .as_deref()
            .is_some_and(|alias| alias.starts_with(names::ALIAS_PREFIX))
}

/// An error with its causes, for reports.
fn describe(error: &HostNetError) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

const HOST_FAMILIES: [&str; 2] = ["bridge", "inet"];

/// Security groups rely on br_netfilter passing bridged IP through the inet hooks (the
/// kernel's bridge family has no conntrack here). Without it the rules would silently
/// never match, so refuse to wire secured ports rather than leave them open.
async fn ensure_br_netfilter(host_netns: Option<&std::path::Path>) -> Result<(), HostNetError> {
    let present = || async {
        on_thread_in(host_netns.map(std::path::Path::to_path_buf), || {
            Ok(std::path::Path::new("/proc/sys/net/bridge/bridge-nf-call-iptables").exists())
        })
        .await
        .unwrap_or(false)
    };
    if present().await {
        return Ok(());
    }
    // A modular kernel may just not have loaded it yet.
    let loaded = crate::run::run(None, "modprobe", &["br_netfilter"], None).await;
    if present().await {
        return Ok(());
    }
    Err(HostNetError::Unexpected {
        object: "br_netfilter".into(),
        reason: format!(
            "bridged traffic does not reach the inet hooks, so security groups cannot be enforced ({})",
            match loaded {
                Ok(_) => "modprobe br_netfilter succeeded but changed nothing".to_string(),
                Err(error) => describe(&error),
            }
        ),
    })
}

impl LinuxHostNetwork {
    pub fn new(config: LinuxConfig) -> Self {
        LinuxHostNetwork {
            state: tokio::sync::Mutex::new(firewall::InstalledRulesets::load(&config.state_dir)),
            config,
        }
    }

    pub fn config(&self) -> &LinuxConfig {
        &self.config
    }
}

#[async_trait]
impl HostNetwork for LinuxHostNetwork {
    #[tracing::instrument(skip_all, fields(prefix = %self.config.prefix, networks = plan.networks.len(), routers = plan.routers.len()))]
    async fn apply(&self, plan: &HostPlan) -> Result<Applied, HostNetError> {
        plan.validate().map_err(HostNetError::InvalidPlan)?;
        let mut installed = self.state.lock().await;
        let config = &self.config;
        let host_netns = config.host_netns.as_deref();
        std::fs::create_dir_all(&config.state_dir).map_err(HostNetError::io(format!(
            "creating {}",
            config.state_dir.display()
        )))?;
        let host = Netlink::open(host_netns).await?;
        let mut applied = Applied::default();
        let secured = plan
            .networks
            .iter()
            .flat_map(|network| &network.ports)
            .any(|port| port.security.is_some());
        if secured {
            ensure_br_netfilter(host_netns).await?;
        }

        // Filters first: they name devices, so they can exist before them, and a secured
        // port is then never on a bridge without its rules.
        let rendered = crate::nft::render_host(plan);
        if firewall::sync(
            &mut installed,
            "host",
            host_netns,
            &HOST_FAMILIES,
            &rendered,
        )
        .await?
        {
            applied.record(Action::Repaired, "nft host ruleset");
        }

        let wanted = cleanup::wanted_devices(plan);
        if let Err(error) = cleanup::remove_devices(&host, &wanted, &mut applied).await {
            applied
                .failures
                .insert("leftover devices".into(), describe(&error));
        }

        for network in &plan.networks {
            let bridge =
                match network::ensure_network(config, &host, plan, network, &mut applied).await {
                    Ok(bridge) => bridge,
                    Err(error) => {
                        let reason = describe(&error);
                        for port in &network.ports {
                            applied.ports.insert(
                                port.id.clone(),
                                PortReadiness {
                                    ready: false,
                                    error: Some(format!("network not set up: {reason}")),
                                },
                            );
                        }
                        applied.failures.insert(network.id.clone(), reason);
                        continue;
                    }
                };
            for port in &network.ports {
                let result =
                    port::ensure_port(config, &host, network, bridge, port, &mut applied).await;
                let readiness = match result {
                    Ok(()) => PortReadiness {
                        ready: true,
                        error: None,
                    },
                    Err(error) => {
                        tracing::warn!(port = %port.id, error = %describe(&error), "hostnet: port not ready");
                        PortReadiness {
                            ready: false,
                            error: Some(describe(&error)),
                        }
                    }
                };
                applied.ports.insert(port.id.clone(), readiness);
            }
            if let Some(service) = &network.service
                && let Err(error) =
                    service::ensure_service(config, &host, network, bridge, service, &mut applied)
                        .await
            {
                applied
                    .failures
                    .insert(format!("service of {}", network.id), describe(&error));
            }
        }
        if let Err(error) = network::release_foreign_members(&host, plan, &mut applied).await {
            applied
                .failures
                .insert("bridge members".into(), describe(&error));
        }
        for router in &plan.routers {
            if let Err(error) =
                router::ensure_router(config, &host, plan, router, &mut installed, &mut applied)
                    .await
            {
                applied
                    .failures
                    .insert(format!("router {}", router.id), describe(&error));
            }
        }
        let wanted_netns = cleanup::wanted_netns(config, plan);
        installed.retain(|key, _| key == "host" || wanted_netns.contains(key));
        if let Err(error) = installed.save(&config.state_dir) {
            applied
                .failures
                .insert("nftables state".into(), describe(&error));
        }
        if let Err(error) =
            cleanup::remove_netns_leftovers(config, &wanted_netns, &mut applied).await
        {
            applied
                .failures
                .insert("leftover netns".into(), describe(&error));
        }
        for (object, reason) in &applied.failures {
            tracing::warn!(%object, %reason, "hostnet: not fully applied");
        }
        Ok(applied)
    }

    #[tracing::instrument(skip_all, fields(prefix = %self.config.prefix))]
    async fn teardown(&self) -> Result<(), HostNetError> {
        let mut installed = self.state.lock().await;
        let host_netns = self.config.host_netns.as_deref();
        let host = Netlink::open(host_netns).await?;
        let mut applied = Applied::default();
        cleanup::remove_devices(&host, &BTreeSet::new(), &mut applied).await?;
        firewall::delete(host_netns, &HOST_FAMILIES).await?;
        cleanup::remove_netns_leftovers(&self.config, &BTreeSet::new(), &mut applied).await?;
        installed.clear();
        installed.save(&self.config.state_dir)?;
        Ok(())
    }

    async fn metadata_listener(
        &self,
        network_id: &str,
    ) -> Result<std::net::TcpListener, HostNetError> {
        let path = named_path(&names::service_netns(&self.config.prefix, network_id));
        if !path.exists() {
            return Err(HostNetError::NoService {
                network_id: network_id.into(),
            });
        }
        on_thread_in(Some(path), || {
            let listener = std::net::TcpListener::bind((service::METADATA_ADDRESS, 80))?;
            listener.set_nonblocking(true)?;
            Ok(listener)
        })
        .await
        .map_err(HostNetError::io(format!(
            "binding 169.254.169.254:80 in the service netns of {network_id}"
        )))
    }

    async fn dns_sockets(
        &self,
        network_id: &str,
        address: IpAddr,
    ) -> Result<DnsSockets, HostNetError> {
        let path = named_path(&names::service_netns(&self.config.prefix, network_id));
        if !path.exists() {
            return Err(HostNetError::NoService {
                network_id: network_id.into(),
            });
        }
        on_thread_in(Some(path), move || {
            let udp = std::net::UdpSocket::bind((address, DNS_PORT))?;
            udp.set_nonblocking(true)?;
            let tcp = std::net::TcpListener::bind((address, DNS_PORT))?;
            tcp.set_nonblocking(true)?;
            Ok(DnsSockets { udp, tcp })
        })
        .await
        .map_err(HostNetError::io(format!(
            "binding {address}:{DNS_PORT} in the service netns of {network_id}"
        )))
    }
}

const DNS_PORT: u16 = 53;
