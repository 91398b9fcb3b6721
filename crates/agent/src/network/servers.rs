//! The servers the agent runs for each network served on this host, in the network's
//! service netns: metadata on 169.254.169.254:80 and DNS on port 53 of each IPv4 service
//! address. They follow the plan: started when a network's service appears (retried at
//! the next pass when the driver cannot make their sockets yet), stopped when it goes,
//! and they answer from the indexes published after every pass.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use ronghe_hostnet::{HostNetwork, HostPlan};
use tokio::sync::watch;

use super::dns::{self, DnsIndex};
use super::metadata::{self, MetadataIndex};

/// Where the host's own resolvers are named; DNS forwards what is not the cluster's there.
const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";

/// Running servers by key, each with its stop switch.
struct Running<K> {
    servers: Mutex<HashMap<K, watch::Sender<bool>>>,
}

impl<K: Clone + Eq + Hash> Running<K> {
    fn new() -> Self {
        Running {
            servers: Mutex::new(HashMap::new()),
        }
    }

    /// Stops the servers not `wanted` (and forgets those that ended by themselves);
    /// returns the wanted keys that have no server.
    fn keep_only(&self, wanted: &HashSet<K>) -> Vec<K> {
        let mut servers = self
            .servers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        servers.retain(|key, stop| {
            let keep = wanted.contains(key) && !stop.is_closed();
            if !keep {
                stop.send_replace(true);
            }
            keep
        });
        wanted
            .iter()
            .filter(|key| !servers.contains_key(key))
            .cloned()
            .collect()
    }

    /// A stop switch for the server of `key`, now counted as running.
    fn started(&self, key: K) -> watch::Receiver<bool> {
        let (stop, stopped) = watch::channel(false);
        self.servers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(key, stop);
        stopped
    }
}

/// The metadata and DNS servers of the networks served here, and their indexes.
pub(super) struct ServiceServers {
    metadata_index: watch::Sender<Arc<MetadataIndex>>,
    dns_index: watch::Sender<Arc<DnsIndex>>,
    metadata: Running<String>,
    dns: Running<(String, IpAddr)>,
}

impl ServiceServers {
    pub fn new() -> ServiceServers {
        ServiceServers {
            metadata_index: watch::Sender::new(Arc::new(MetadataIndex::default())),
            dns_index: watch::Sender::new(Arc::new(DnsIndex::default())),
            metadata: Running::new(),
            dns: Running::new(),
        }
    }

    /// What the servers answer from now on.
    pub fn publish(&self, metadata: MetadataIndex, dns: DnsIndex) {
        self.metadata_index.send_replace(Arc::new(metadata));
        self.dns_index.send_replace(Arc::new(dns));
    }

    /// Starts the servers of the networks `plan` serves here that have none yet, and stops
    /// those of networks (or addresses) it no longer has.
    pub async fn follow(&self, driver: &dyn HostNetwork, plan: &HostPlan) {
        let served = plan
            .networks
            .iter()
            .filter_map(|network| Some((network.id.as_str(), network.service.as_ref()?)));
        let mut metadata_wanted = HashSet::new();
        let mut dns_wanted = HashSet::new();
        for (network, service) in served {
            metadata_wanted.insert(network.to_owned());
            for address in &service.addresses {
                if address.addr().is_ipv4() {
                    dns_wanted.insert((network.to_owned(), address.addr()));
                }
            }
        }
        for network in self.metadata.keep_only(&metadata_wanted) {
            let listener = match driver.metadata_listener(&network).await {
                Ok(listener) => listener,
                Err(error) => {
                    tracing::warn!(%network, %error, "no metadata server for a network; trying again at the next pass");
                    continue;
                }
            };
            let (index, stop) = (
                self.metadata_index.subscribe(),
                self.metadata.started(network.clone()),
            );
            tokio::spawn(async move {
                if let Err(error) = metadata::serve(listener, network.clone(), index, stop).await {
                    tracing::warn!(%network, error = %format!("{error:#}"), "a metadata server stopped");
                }
            });
        }
        for (network, address) in self.dns.keep_only(&dns_wanted) {
            let sockets = match driver.dns_sockets(&network, address).await {
                Ok(sockets) => sockets,
                Err(error) => {
                    tracing::warn!(%network, %address, %error, "no DNS server for a network; trying again at the next pass");
                    continue;
                }
            };
            let (index, stop) = (
                self.dns_index.subscribe(),
                self.dns.started((network.clone(), address)),
            );
            tokio::spawn(async move {
                if let Err(error) = dns::serve(sockets, network.clone(), index, stop).await {
                    tracing::warn!(%network, %address, error = %format!("{error:#}"), "a DNS server stopped");
                }
            });
        }
    }
}

/// The host's upstream resolvers, as its `resolv.conf` (read in the agent's own
/// namespaces) names them; none when it cannot be read.
pub(super) fn host_upstreams() -> Vec<SocketAddr> {
    match std::fs::read_to_string(HOST_RESOLV_CONF) {
        Ok(text) => dns::upstreams_from_resolv_conf(&text),
        Err(error) => {
            tracing::debug!(%error, "the host's resolv.conf could not be read; no upstream resolvers");
            Vec::new()
        }
    }
}
