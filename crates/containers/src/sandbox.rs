//! A pod's footprint on the host, and removing it: the pod's directory (its `/etc` files,
//! its containers' bundles and its logs), its network namespace (loopback only, shared by
//! its containers; none with `hostNetwork`), and its cgroup parent. Everything is named
//! after the pod's uid, so whatever is left of a pod can be found and removed without
//! any memory of it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use ronghe_agent::network::ClusterDns;

use crate::config::RuncConfig;
use crate::error::{Error, Result};
use crate::host::{self, HostSeam};

/// The host's resolver configuration, which pods without a cluster resolver get.
const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";

/// Where things of a pod live, by its uid.
#[derive(Clone, Debug)]
pub struct Layout {
    root: PathBuf,
    netns_prefix: String,
    cgroup_parent: String,
}

impl Layout {
    pub fn new(config: &RuncConfig) -> Layout {
        Layout {
            root: config.root_dir.clone(),
            netns_prefix: config.netns_prefix.clone(),
            cgroup_parent: config.cgroup_parent.trim_matches('/').to_owned(),
        }
    }

    pub fn runc_root(&self) -> PathBuf {
        self.root.join("runc")
    }

    pub fn pods_dir(&self) -> PathBuf {
        self.root.join("pods")
    }

    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.pods_dir().join(uid)
    }

    pub fn etc_file(&self, uid: &str, name: &str) -> PathBuf {
        self.pod_dir(uid).join("etc").join(name)
    }

    /// A container instance's bundle (config.json, rootfs, upper and work directories).
    pub fn bundle_dir(&self, uid: &str, container: &str, instance: u32) -> PathBuf {
        self.pod_dir(uid)
            .join("containers")
            .join(format!("{container}-{instance}"))
    }

    pub fn log_dir(&self, uid: &str, container: &str) -> PathBuf {
        self.pod_dir(uid).join("logs").join(container)
    }

    pub fn log_file(&self, uid: &str, container: &str, instance: u32) -> PathBuf {
        self.log_dir(uid, container).join(format!("{instance}.log"))
    }

    pub fn netns_name(&self, uid: &str) -> String {
        format!("{}{uid}", self.netns_prefix)
    }

    pub fn netns_path(&self, uid: &str) -> PathBuf {
        Path::new("/run/netns").join(self.netns_name(uid))
    }

    pub fn netns_prefix(&self) -> &str {
        &self.netns_prefix
    }

    /// The pod's cgroup, relative to each hierarchy (`/PARENT/podUID`).
    pub fn pod_cgroup(&self, uid: &str) -> String {
        format!("/{}/pod{uid}", self.cgroup_parent)
    }

    pub fn cgroup_parent(&self) -> String {
        format!("/{}", self.cgroup_parent)
    }

    /// runc's id of a container instance; every id of a pod starts with its uid.
    pub fn runc_id(&self, uid: &str, container: &str, instance: u32) -> String {
        format!("{uid}-{container}-{instance}")
    }
}

/// Makes a pod's directory, `/etc` files and network namespace (again, after an agent
/// restart: what exists is kept).
pub async fn create(seam: &HostSeam, layout: &Layout, pod: &Pod, host_ip: &str) -> Result<()> {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let etc = layout.pod_dir(uid).join("etc");
    std::fs::create_dir_all(&etc).map_err(Error::io("create", &etc))?;
    let spec = pod.spec.as_ref();
    let host_network = spec.and_then(|s| s.host_network) == Some(true);
    let hostname = if host_network {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap_or_default()
            .trim()
            .to_owned()
    } else {
        name.to_owned()
    };
    let mut hosts = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    );
    if host_network {
        hosts.push_str(&format!("{host_ip}\t{hostname}\n"));
    } else {
        hosts.push_str(&format!("127.0.1.1\t{hostname}\n"));
    }
    for alias in spec
        .and_then(|s| s.host_aliases.as_ref())
        .into_iter()
        .flatten()
    {
        let names = alias.hostnames.clone().unwrap_or_default().join("\t");
        hosts.push_str(&format!("{}\t{names}\n", alias.ip));
    }
    for (file, content) in [("hosts", hosts), ("hostname", format!("{hostname}\n"))] {
        let path = etc.join(file);
        std::fs::write(&path, content).map_err(Error::io("write", &path))?;
    }
    // Without its network's resolver yet: the host's, until `write_resolv_conf` is told.
    write_resolv_conf(layout, pod, None)?;
    if !host_network && !layout.netns_path(uid).exists() {
        let netns = layout.netns_name(uid);
        seam.ip(&["netns", "add", &netns]).await?;
        seam.ip(&["-n", &netns, "link", "set", "lo", "up"]).await?;
    }
    Ok(())
}

/// Writes the pod's `/etc/resolv.conf` for its DNS policy, with `cluster` its network's
/// resolver (None: it has none). Its containers bind-mount the file, so it is rewritten in
/// place rather than replaced.
pub fn write_resolv_conf(layout: &Layout, pod: &Pod, cluster: Option<&ClusterDns>) -> Result<()> {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let host = std::fs::read_to_string(HOST_RESOLV_CONF).unwrap_or_default();
    let path = layout.etc_file(uid, "resolv.conf");
    std::fs::write(&path, crate::resolv::render(pod, cluster, &host))
        .map_err(Error::io("write", &path))
}

/// Removes everything of pod `uid`: its containers (killed), mounts, network namespace,
/// cgroups and directory (with `keep_logs`, its logs and `/etc` files stay).
pub async fn remove(seam: &HostSeam, layout: &Layout, uid: &str, keep_logs: bool) -> Result<()> {
    let prefix = format!("{uid}-");
    kill_containers(seam, |id| id.starts_with(&prefix)).await?;
    let pod_dir = layout.pod_dir(uid);
    for mount in host::mounts_under(&pod_dir) {
        seam.unmount(&mount)?;
    }
    if layout.netns_path(uid).exists() {
        seam.ip(&["netns", "delete", &layout.netns_name(uid)])
            .await?;
    }
    remove_cgroup_tree(seam, &layout.pod_cgroup(uid)).await?;
    let doomed = if keep_logs {
        pod_dir.join("containers")
    } else {
        pod_dir
    };
    match std::fs::remove_dir_all(&doomed) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::io("remove", doomed)(error))
        }
        _ => Ok(()),
    }
}

/// Kills and deletes this driver's runc containers whose id `matches`.
pub async fn kill_containers(seam: &HostSeam, matches: impl Fn(&str) -> bool) -> Result<()> {
    let listed = seam.runc(&["list", "--format", "json"]).await?;
    let containers: Vec<serde_json::Value> =
        serde_json::from_str(listed.trim()).unwrap_or_default();
    for container in containers {
        let Some(id) = container["id"].as_str().filter(|id| matches(id)) else {
            continue;
        };
        if container["status"] != "stopped" {
            // Already gone between list and kill is fine.
            let _ = seam.runc(&["kill", id, "KILL"]).await;
        }
        seam.runc(&["delete", "--force", id]).await?;
    }
    Ok(())
}

/// Removes a cgroup and its descendants from every hierarchy (deepest first). A cgroup
/// whose last process is still exiting is busy for a moment, so each is tried a few times.
pub async fn remove_cgroup_tree(seam: &HostSeam, relative: &str) -> Result<()> {
    for hierarchy in host::cgroup_hierarchies() {
        let top = hierarchy.join(relative.trim_start_matches('/'));
        if !top.is_dir() {
            continue;
        }
        let mut dirs = Vec::new();
        collect_dirs(&top, &mut dirs);
        dirs.sort_by_key(|dir| std::cmp::Reverse(dir.components().count()));
        for dir in dirs {
            let mut attempt = 0;
            loop {
                match seam.remove_dir(&dir) {
                    Ok(()) => break,
                    Err(error) if attempt >= 50 => return Err(error),
                    Err(_) => {
                        attempt += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        }
    }
    Ok(())
}

fn collect_dirs(dir: &Path, into: &mut Vec<PathBuf>) {
    into.push(dir.to_path_buf());
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                collect_dirs(&entry.path(), into);
            }
        }
    }
}

/// After an agent restart: the previous agent's containers cannot be taken up again (their
/// output went to it), so every container, mount, network namespace and cgroup of this
/// driver goes; pods keep their logs until [`remove`]d, and the agent starts the pods it
/// still has again.
pub async fn recover(seam: &HostSeam, layout: &Layout) -> Result<()> {
    kill_containers(seam, |_| true).await?;
    let pods_dir = layout.pods_dir();
    for mount in host::mounts_under(&pods_dir) {
        seam.unmount(&mount)?;
    }
    if let Ok(entries) = std::fs::read_dir("/run/netns") {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(uid) = name.strip_prefix(layout.netns_prefix())
                && layout.pod_dir(uid).exists()
            {
                seam.ip(&["netns", "delete", &name]).await?;
            }
        }
    }
    remove_cgroup_tree(seam, &layout.cgroup_parent()).await?;
    if let Ok(entries) = std::fs::read_dir(&pods_dir) {
        for entry in entries.flatten() {
            let containers = entry.path().join("containers");
            if let Err(error) = std::fs::remove_dir_all(&containers)
                && error.kind() != std::io::ErrorKind::NotFound
            {
                return Err(Error::io("remove", containers)(error));
            }
        }
    }
    Ok(())
}
