//! The drivers a real host (not a simulated one) runs its workloads with: pods through
//! runc (`ronghe-containers`) and VMs through QEMU (`ronghe-hypervisor`), both fed by
//! the agent's image cache, plugged into tenant networks by the agent's wiring loop over
//! the Linux host network (`ronghe-hostnet`).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use ronghe_agent::images::ImageCache;
use ronghe_agent::network::{NoNetwork, Wiring, WiringConfig, WorkloadNetwork};
use ronghe_agent::{Drivers, Host};

/// How this machine's tenant networking is set up.
pub struct LinuxNetwork {
    pub netns_prefix: String,
    pub underlay_interface: Option<String>,
    /// Where other hosts' agents hand this one node-port traffic, bound.
    pub node_port_relay: Option<std::sync::Arc<std::net::TcpListener>>,
}

/// The drivers of this machine, keeping their state under `data_dir`; with `network`,
/// its workloads are on tenant networks, wired until `stop` flips.
pub async fn for_this_host(
    client: &kube::Client,
    data_dir: &Path,
    host: &Host,
    network: Option<LinuxNetwork>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Drivers> {
    let images = ImageCache::new(client.clone(), &data_dir.join("images"))
        .with_context(|| format!("opening the image cache in {}", data_dir.display()))?;
    let mut config =
        ronghe_containers::RuncConfig::for_agent(data_dir.join("containers"), &host.address);
    let netns_prefix = network
        .as_ref()
        .map(|network| network.netns_prefix.clone())
        .unwrap_or_default();
    let node_ports = network
        .as_ref()
        .map(|network| ronghe_agent::nodeports::NodePorts {
            address: std::net::Ipv4Addr::UNSPECIFIED.into(),
            tunnel_ip: host.tunnel_ip.map(Into::into),
            relay: network.node_port_relay.clone(),
        });
    let wiring: Arc<dyn WorkloadNetwork> = match network {
        Some(network) => {
            config.netns_prefix = network.netns_prefix.clone();
            let driver = ronghe_hostnet::LinuxHostNetwork::new(ronghe_hostnet::LinuxConfig {
                host_netns: None,
                prefix: network.netns_prefix,
                state_dir: data_dir.join("network"),
                underlay_interface: network.underlay_interface,
            });
            Arc::new(Wiring::start(
                client.clone(),
                WiringConfig {
                    host: host.name.clone(),
                    tunnel_ip: host.tunnel_ip,
                    physical: host.physical_networks.clone(),
                    driver: Arc::new(driver),
                },
                stop,
            ))
        }
        None => Arc::new(NoNetwork),
    };
    let pods = ronghe_containers::RuncDriver::new(config, Arc::new(CachedImages(images.clone())))
        .await
        .context("starting the container driver (runc)")?
        .with_network(wiring.clone());
    let vms = ronghe_hypervisor::QemuDriver::new(data_dir.join("vms"), Arc::new(images))
        .await
        .context("starting the VM driver (QEMU)")?;
    let binary = std::env::current_exe().context("finding this binary (for `ronghe proxy`)")?;
    let load_balancers = ronghe_agent::loadbalancers::ProcessDriver::new(
        binary,
        data_dir.join("loadbalancers"),
        netns_prefix,
    );
    Ok(Drivers {
        pods: Arc::new(pods),
        vms: Arc::new(vms),
        network: wiring,
        load_balancers: Arc::new(load_balancers),
        node_ports,
    })
}

/// The image cache as the container driver's image source.
struct CachedImages(ImageCache);

#[async_trait::async_trait]
impl ronghe_containers::ImageSource for CachedImages {
    async fn container_image(
        &self,
        namespace: &str,
        reference: &str,
    ) -> anyhow::Result<ronghe_images::ContainerImage> {
        Ok(self.0.container_image(namespace, reference).await?)
    }
}
