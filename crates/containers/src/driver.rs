//! [`RuncDriver`]: the [`PodDriver`] that runs pods through runc. Each pod it runs has a
//! task that makes the pod's sandbox (directory, network namespace) and one supervising
//! task per container; stopping a pod stops those and removes everything of it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::Pod;
use ronghe_agent::network::{NoNetwork, WorkloadNetwork};
use ronghe_agent::pods::StatusSender;
use ronghe_agent::{ExecRequest, LogOptions, PodDriver, PodRef};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::RuncConfig;
use crate::error::{Error, Result};
use crate::host::HostSeam;
use crate::images::ImageSource;
use crate::pod::PodRuntime;
use crate::sandbox::{self, Layout};
use crate::status::State;

/// What every task of the driver shares.
pub struct DriverContext {
    pub config: RuncConfig,
    pub layout: Layout,
    pub seam: HostSeam,
    pub images: Arc<dyn ImageSource>,
    /// Whether memory limits cover swap too (cgroup v1 with `memory.memsw.*`).
    pub limit_swap: bool,
    /// What plugs pods into their networks.
    pub network: Arc<dyn WorkloadNetwork>,
}

struct PodEntry {
    runtime: Arc<PodRuntime>,
    task: JoinHandle<()>,
}

/// Runs pods through runc; see the crate's documentation.
pub struct RuncDriver {
    context: Arc<DriverContext>,
    pods: Mutex<HashMap<String, PodEntry>>,
}

impl RuncDriver {
    /// A driver keeping its state under `config.root_dir`. Whatever an earlier driver left
    /// there (containers, mounts, network namespaces, cgroups) is removed first; pods' logs
    /// stay until [`PodDriver::retain`] or [`PodDriver::stop`] says the pod is gone.
    pub async fn new(config: RuncConfig, images: Arc<dyn ImageSource>) -> Result<RuncDriver> {
        if !config.runc.exists() {
            return Err(Error::Spawn {
                command: config.runc.display().to_string(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            });
        }
        let layout = Layout::new(&config);
        for dir in [layout.runc_root(), layout.pods_dir()] {
            std::fs::create_dir_all(&dir).map_err(Error::io("create", &dir))?;
        }
        let limit_swap = crate::host::cgroup_hierarchies()
            .iter()
            .any(|hierarchy| hierarchy.join("memory.memsw.limit_in_bytes").exists());
        let seam = HostSeam::new(config.runc.clone(), layout.runc_root(), config.ip.clone());
        sandbox::recover(&seam, &layout).await?;
        Ok(RuncDriver {
            context: Arc::new(DriverContext {
                config,
                layout,
                seam,
                images,
                limit_swap,
                network: Arc::new(NoNetwork),
            }),
            pods: Mutex::new(HashMap::new()),
        })
    }

    /// Plugs each pod not on the host network into its tenant network through `network`
    /// (between making its network namespace and starting its containers); without it
    /// pods have loopback only.
    pub fn with_network(mut self, network: Arc<dyn WorkloadNetwork>) -> RuncDriver {
        if let Some(context) = Arc::get_mut(&mut self.context) {
            context.network = network;
        }
        self
    }

    /// Where the driver keeps pod `uid` (for tests and diagnostics).
    pub fn pod_dir(&self, uid: &str) -> std::path::PathBuf {
        self.context.layout.pod_dir(uid)
    }

    /// runc's id of a container's current instance, if it is running.
    pub fn running_container_id(&self, uid: &str, container: &str) -> Option<String> {
        let runtime = self.runtime(uid)?;
        let index = runtime.index_of(container)?;
        runtime
            .read(index, |slot| slot.running_id.clone())
            .flatten()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, PodEntry>> {
        self.pods
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn runtime(&self, uid: &str) -> Option<Arc<PodRuntime>> {
        self.lock().get(uid).map(|entry| entry.runtime.clone())
    }

    /// Which log instance a request reads, and (for the latest instance) its progress.
    fn log_instance(
        &self,
        pod: &PodRef,
        container: &str,
        previous: bool,
    ) -> Result<(
        u32,
        Option<tokio::sync::watch::Receiver<crate::logs::Progress>>,
    )> {
        let no_previous = || Error::NoPreviousLog {
            pod: pod.name.clone(),
            container: container.to_owned(),
        };
        let Some(runtime) = self.runtime(&pod.uid) else {
            // Not running here (any more): what the disk still has.
            let dir = self.context.layout.log_dir(&pod.uid, container);
            let mut numbers: Vec<u32> = std::fs::read_dir(&dir)
                .map_err(|_| Error::UnknownPod(pod.name.clone()))?
                .flatten()
                .filter_map(|entry| {
                    entry
                        .file_name()
                        .to_str()?
                        .strip_suffix(".log")?
                        .parse()
                        .ok()
                })
                .collect();
            numbers.sort_unstable();
            let pick = if previous {
                numbers.iter().rev().nth(1)
            } else {
                numbers.last()
            };
            return pick.map(|n| (*n, None)).ok_or_else(no_previous);
        };
        let index = runtime
            .index_of(container)
            .ok_or_else(|| Error::UnknownContainer {
                pod: pod.name.clone(),
                container: container.to_owned(),
            })?;
        let (latest, progress, state) = runtime
            .read(index, |slot| {
                (slot.instance, slot.log.clone(), slot.view.state.clone())
            })
            .ok_or_else(|| Error::UnknownPod(pod.name.clone()))?;
        let Some(latest) = latest else {
            let reason = match state {
                State::Waiting { reason, .. } => reason,
                _ => "ContainerCreating".into(),
            };
            return Err(Error::Waiting {
                pod: pod.name.clone(),
                container: container.to_owned(),
                reason,
            });
        };
        if previous {
            let older = latest.checked_sub(1).ok_or_else(no_previous)?;
            if !self
                .context
                .layout
                .log_file(&pod.uid, container, older)
                .exists()
            {
                return Err(no_previous());
            }
            Ok((older, None))
        } else {
            Ok((latest, progress))
        }
    }
}

impl Drop for RuncDriver {
    /// A driver dropped without stopping its pods is an agent going away: its tasks end
    /// (and restart nothing); the containers run on until the next driver on the same
    /// directory cleans them up.
    fn drop(&mut self) {
        for entry in self.lock().values() {
            entry.task.abort();
        }
    }
}

/// A pod's life in the driver: its sandbox (retried until it can be made), then its
/// containers' supervisors until they all end.
async fn run_pod(context: Arc<DriverContext>, runtime: Arc<PodRuntime>) {
    let mut stop = runtime.stop.subscribe();
    let mut delay = Duration::from_secs(1);
    let containers = runtime.pod.spec.as_ref().map_or(0, |s| s.containers.len());
    loop {
        match sandbox::create(
            &context.seam,
            &context.layout,
            &runtime.pod,
            &context.config.host_ip,
        )
        .await
        {
            Ok(()) => break,
            Err(error) => {
                tracing::warn!(pod = %runtime.name, error = %format!("{error:#}"), "creating a pod's sandbox failed");
                runtime.creating(&format!("failed to create pod sandbox: {error}"));
                if !crate::container::wait_unless_stopped(delay, &mut stop).await {
                    return;
                }
                delay = (delay * 2).min(Duration::from_secs(60));
            }
        }
    }
    if let Some(netns) = &runtime.netns {
        let mut delay = Duration::from_secs(1);
        loop {
            let attached = tokio::select! {
                attached = context.network.attach_pod(&runtime.pod, netns) => attached,
                // Stopped before its network came: nothing to start.
                _ = stop.changed() => return,
            };
            match attached {
                Ok(network) => {
                    if let Err(error) = sandbox::write_resolv_conf(
                        &context.layout,
                        &runtime.pod,
                        network.dns.as_ref(),
                    ) {
                        tracing::warn!(pod = %runtime.name, %error, "writing the pod's resolv.conf failed; it keeps the host's");
                    }
                    runtime.set_pod_ips(&network.ips);
                    break;
                }
                Err(error) => {
                    tracing::warn!(pod = %runtime.name, error = %format!("{error:#}"), "plugging a pod into its network failed");
                    runtime.creating(&format!("failed to set up the pod's network: {error:#}"));
                    if !crate::container::wait_unless_stopped(delay, &mut stop).await {
                        return;
                    }
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
            }
        }
    }
    let mut supervisors = tokio::task::JoinSet::new();
    for index in 0..containers {
        supervisors.spawn(crate::container::supervise(
            context.clone(),
            runtime.clone(),
            index,
        ));
    }
    while supervisors.join_next().await.is_some() {}
}

#[async_trait::async_trait]
impl PodDriver for RuncDriver {
    async fn start(&self, _host: &str, pod: &Pod, status: StatusSender) -> anyhow::Result<()> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if uid.is_empty() {
            anyhow::bail!("pod {:?} has no uid", pod.metadata.name);
        }
        let mut pods = self.lock();
        if let Some(entry) = pods.get(&uid) {
            // Started already: the new channel gets the status as it is.
            status.send_replace(entry.runtime.status());
            return Ok(());
        }
        let host_network = pod.spec.as_ref().and_then(|s| s.host_network) == Some(true);
        let netns = (!host_network).then(|| self.context.layout.netns_path(&uid));
        let runtime = Arc::new(PodRuntime::new(
            pod,
            &self.context.config.host_ip,
            netns,
            status,
        ));
        let task = tokio::spawn(run_pod(self.context.clone(), runtime.clone()));
        tracing::info!(pod = %runtime.name, namespace = %runtime.namespace, %uid, "pod starting");
        pods.insert(uid, PodEntry { runtime, task });
        Ok(())
    }

    async fn stop(&self, _host: &str, pod: &Pod, grace_seconds: i64) -> anyhow::Result<()> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if uid.is_empty() {
            return Ok(());
        }
        let entry = self.lock().remove(&uid);
        let grace = Duration::from_secs(u64::try_from(grace_seconds).unwrap_or(0));
        if let Some(entry) = entry {
            entry
                .runtime
                .stop
                .send_replace(Some(Instant::now() + grace));
            // Containers get the grace period, then SIGKILL and its own time limit.
            let limit = grace + Duration::from_secs(60);
            if tokio::time::timeout(limit, entry.task).await.is_err() {
                tracing::warn!(pod = %entry.runtime.name, "a pod's containers did not stop in time; removing them by force");
            }
        }
        sandbox::remove(&self.context.seam, &self.context.layout, &uid, false).await?;
        self.context.network.detach_pod(&uid).await;
        tracing::info!(pod = ?pod.metadata.name, %uid, "pod stopped and removed");
        Ok(())
    }

    async fn retain(&self, uids: &HashSet<String>) -> anyhow::Result<()> {
        let running: HashSet<String> = self.lock().keys().cloned().collect();
        let Ok(entries) = std::fs::read_dir(self.context.layout.pods_dir()) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            let uid = entry.file_name().to_string_lossy().into_owned();
            if !uids.contains(&uid) && !running.contains(&uid) {
                tracing::info!(%uid, "removing what is left of a pod this host no longer has");
                sandbox::remove(&self.context.seam, &self.context.layout, &uid, false).await?;
            }
        }
        Ok(())
    }

    async fn logs(
        &self,
        pod: &PodRef,
        container: &str,
        options: &LogOptions,
    ) -> anyhow::Result<BoxStream<'static, std::io::Result<Bytes>>> {
        let (instance, progress) = self.log_instance(pod, container, options.previous)?;
        let path = self.context.layout.log_file(&pod.uid, container, instance);
        Ok(crate::logs::read(path, options, progress).await?)
    }

    async fn exec(&self, pod: &PodRef, container: &str, exec: ExecRequest) -> anyhow::Result<i32> {
        let runtime = self
            .runtime(&pod.uid)
            .ok_or_else(|| Error::UnknownPod(pod.name.clone()))?;
        let index = runtime
            .index_of(container)
            .ok_or_else(|| Error::UnknownContainer {
                pod: pod.name.clone(),
                container: container.to_owned(),
            })?;
        let id = runtime
            .read(index, |slot| slot.running_id.clone())
            .flatten()
            .ok_or_else(|| Error::NotRunning {
                pod: pod.name.clone(),
                container: container.to_owned(),
            })?;
        Ok(crate::exec::run(&self.context.seam, &id, exec).await?)
    }
}
