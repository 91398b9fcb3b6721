//! How a [`crate::RuncDriver`] is set up: where it keeps its state, what it calls its
//! namespaces and cgroups, and kubelet's timings.

use std::path::PathBuf;
use std::time::Duration;

use sha2::Digest as _;

#[derive(Clone, Debug)]
pub struct RuncConfig {
    /// The driver's directory: `runc/` (runc's state) and `pods/<uid>/`.
    pub root_dir: PathBuf,
    /// This host's address, reported as pods' `hostIP` (and `podIP` with `hostNetwork`).
    pub host_ip: String,
    pub runc: PathBuf,
    pub ip: PathBuf,
    /// The cgroup under which each pod gets `pod<uid>` (in every hierarchy).
    pub cgroup_parent: String,
    /// Pods' network namespaces are `/run/netns/<prefix><uid>`.
    pub netns_prefix: String,
    /// The most processes a container may have.
    pub pids_limit: i64,
    /// The first restart back-off after a container that keeps exiting (kubelet: 10 s),
    /// doubling up to `backoff_max` (5 min); reset after a run of twice the maximum.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

impl RuncConfig {
    /// kubelet's defaults for an agent keeping its state under `root_dir`, with a cgroup
    /// parent of its own (`ronghe-<hash of the directory>`), so that several agents on one
    /// machine (tests, simulations beside a real host) never touch each other's pods.
    pub fn for_agent(root_dir: impl Into<PathBuf>, host_ip: impl Into<String>) -> RuncConfig {
        let mut config = RuncConfig::new(root_dir, host_ip);
        let digest = sha2::Sha256::digest(config.root_dir.as_os_str().as_encoded_bytes());
        config.cgroup_parent = format!(
            "ronghe-{}",
            digest
                .iter()
                .take(4)
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        config
    }

    /// kubelet's defaults, with state under `root_dir`.
    pub fn new(root_dir: impl Into<PathBuf>, host_ip: impl Into<String>) -> RuncConfig {
        RuncConfig {
            root_dir: root_dir.into(),
            host_ip: host_ip.into(),
            runc: PathBuf::from("/usr/sbin/runc"),
            ip: PathBuf::from("/usr/sbin/ip"),
            cgroup_parent: "ronghe".into(),
            netns_prefix: "ronghe-".into(),
            pids_limit: 4096,
            backoff_initial: Duration::from_secs(10),
            backoff_max: Duration::from_secs(300),
        }
    }
}
