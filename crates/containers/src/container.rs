//! One container of a pod, supervised: resolve its image, create an instance (overlay
//! root, `config.json`, `runc run` in the foreground so runc's exit status is the
//! container's), report it running once runc has started it, probe it, and when it ends
//! record how, then restart it per the pod's restart policy with kubelet's back-off, until
//! the pod stops.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Container;
use ronghe_images::ContainerImage;
use tokio::process::Child;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::driver::DriverContext;
use crate::error::{Error, Result};
use crate::pod::PodRuntime;
use crate::probes::{self, ProbeKind, ProbeResult, ProbeTarget};
use crate::spec;
use crate::status::{State, Terminated};

/// How long runc may take to start a container before the attempt counts as failed.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a container killed with SIGKILL may take to go.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// kubelet's restart back-off: the first restart is at once, then 10 s doubling to 5 min;
/// a run of twice the maximum resets it.
struct Backoff {
    initial: Duration,
    max: Duration,
    next: Option<Duration>,
}

impl Backoff {
    fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            next: None,
        }
    }

    /// The wait before the next restart of an instance that ran for `ran_for`.
    fn after_run(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= self.max * 2 {
            self.next = None;
        }
        match self.next {
            None => {
                self.next = Some(self.initial);
                Duration::ZERO
            }
            Some(delay) => {
                self.next = Some((delay * 2).min(self.max));
                delay
            }
        }
    }

    /// The wait before retrying a step that failed (image pull, create).
    fn after_failure(&mut self) -> Duration {
        let delay = self.next.unwrap_or(self.initial);
        self.next = Some((delay * 2).min(self.max));
        delay
    }
}

/// The deadline of the pod's stop, once it has been asked for.
fn stopping(stop: &watch::Receiver<Option<Instant>>) -> Option<Instant> {
    *stop.borrow()
}

/// Waits `delay`; false if the pod is asked to stop first.
pub(crate) async fn wait_unless_stopped(
    delay: Duration,
    stop: &mut watch::Receiver<Option<Instant>>,
) -> bool {
    let sleep = tokio::time::sleep(delay);
    tokio::pin!(sleep);
    loop {
        if stopping(stop).is_some() {
            return false;
        }
        tokio::select! {
            () = &mut sleep => return true,
            changed = stop.changed() => if changed.is_err() { return false; },
        }
    }
}

/// Supervises container `index` of `pod` until the pod stops.
pub async fn supervise(context: Arc<DriverContext>, pod: Arc<PodRuntime>, index: usize) {
    let Some(container) = pod
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.get(index))
        .cloned()
    else {
        return;
    };
    let mut stop = pod.stop.subscribe();
    let policy = pod
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.clone())
        .unwrap_or_else(|| "Always".into());
    let mut restarts = Backoff::new(context.config.backoff_initial, context.config.backoff_max);
    let mut failures = Backoff::new(context.config.backoff_initial, context.config.backoff_max);
    let mut image: Option<ContainerImage> = None;
    let reference = container.image.clone().unwrap_or_default();
    loop {
        if stopping(&stop).is_some() {
            return;
        }
        let done = pod
            .read(index, |slot| {
                matches!(slot.view.state, State::Terminated(_))
            })
            .unwrap_or(true);
        if done {
            // Carried over as finished for good: nothing to run.
            let _ = wait_unless_stopped(Duration::MAX, &mut stop).await;
            return;
        }
        let resolved = match &image {
            Some(resolved) => resolved.clone(),
            None => match context
                .images
                .container_image(&pod.namespace, &reference)
                .await
            {
                Ok(resolved) => {
                    pod.update(index, |slot| {
                        slot.view.image_id = Some(resolved.digest.clone())
                    });
                    image = Some(resolved.clone());
                    resolved
                }
                Err(error) => {
                    let message = format!("Failed to pull image {reference:?}: {error:#}");
                    pod.update(index, |slot| {
                        slot.view.state = waiting("ErrImagePull", Some(message))
                    });
                    let delay = failures.after_failure();
                    if !wait_unless_stopped(delay.min(Duration::from_secs(1)), &mut stop).await {
                        return;
                    }
                    let message = format!("Back-off pulling image {reference:?}");
                    pod.update(index, |slot| {
                        slot.view.state = waiting("ImagePullBackOff", Some(message))
                    });
                    if !wait_unless_stopped(delay, &mut stop).await {
                        return;
                    }
                    continue;
                }
            },
        };
        let instance_number = pod
            .read(index, |slot| {
                u32::try_from(slot.view.restart_count).unwrap_or(0)
            })
            .unwrap_or(0);
        let instance = match Instance::create(
            &context,
            &pod,
            &container,
            &resolved,
            instance_number,
        )
        .await
        {
            Ok(instance) => instance,
            Err(error) => {
                let reason = match error {
                    Error::Config(_) => "CreateContainerConfigError",
                    _ => "CreateContainerError",
                };
                tracing::warn!(pod = %pod.name, container = %container.name, error = %format!("{error:#}"), "creating a container failed");
                let message = error.to_string();
                pod.update(index, |slot| {
                    slot.view.state = waiting(reason, Some(message))
                });
                if !wait_unless_stopped(failures.after_failure(), &mut stop).await {
                    return;
                }
                continue;
            }
        };
        failures = Backoff::new(context.config.backoff_initial, context.config.backoff_max);
        let terminated = instance
            .run(&context, &pod, index, &container, &mut stop)
            .await;
        let ran_for = terminated
            .started_at
            .and_then(|started| {
                started
                    .duration_until(terminated.finished_at)
                    .try_into()
                    .ok()
            })
            .unwrap_or(Duration::ZERO);
        let restart = stopping(&stop).is_none()
            && match policy.as_str() {
                "Never" => false,
                "OnFailure" => terminated.exit_code != 0,
                _ => true,
            };
        pod.update(index, |slot| {
            slot.view.state = State::Terminated(terminated.clone());
            slot.view.ready = false;
            slot.view.started = false;
            slot.running_id = None;
        });
        if !restart {
            let _ = wait_unless_stopped(Duration::MAX, &mut stop).await;
            return;
        }
        let delay = restarts.after_run(ran_for);
        pod.update(index, |slot| {
            slot.view.last_terminated = Some(terminated.clone());
            if !delay.is_zero() {
                let message = format!(
                    "back-off {} restarting failed container={} pod={}_{}({})",
                    kubectl_duration(delay),
                    container.name,
                    pod.name,
                    pod.namespace,
                    pod.uid
                );
                slot.view.state = waiting("CrashLoopBackOff", Some(message));
            }
        });
        if !wait_unless_stopped(delay, &mut stop).await {
            return;
        }
        pod.update(index, |slot| {
            slot.view.restart_count += 1;
            slot.view.state = waiting("ContainerCreating", None);
        });
    }
}

fn waiting(reason: &str, message: Option<String>) -> State {
    State::Waiting {
        reason: reason.to_owned(),
        message,
    }
}

/// Go's duration format for whole seconds and minutes (`10s`, `5m0s`).
fn kubectl_duration(delay: Duration) -> String {
    let seconds = delay.as_secs();
    if seconds >= 60 {
        format!("{}m{}s", seconds / 60, seconds % 60)
    } else {
        format!("{seconds}s")
    }
}

/// One instance of a container: its bundle, and runc running it.
struct Instance {
    id: String,
    number: u32,
    bundle: PathBuf,
    child: Child,
    log_writer: tokio::task::JoinHandle<()>,
    progress: watch::Receiver<crate::logs::Progress>,
}

impl Instance {
    /// Mounts the root, writes `config.json` and starts `runc run`.
    async fn create(
        context: &DriverContext,
        pod: &PodRuntime,
        container: &Container,
        image: &ContainerImage,
        number: u32,
    ) -> Result<Instance> {
        let layout = &context.layout;
        let id = layout.runc_id(&pod.uid, &container.name, number);
        let bundle = layout.bundle_dir(&pod.uid, &container.name, number);
        // What a failed earlier attempt left.
        remove_bundle(context, &id, &bundle).await?;
        for dir in ["upper", "work", "rootfs"] {
            let path = bundle.join(dir);
            std::fs::create_dir_all(&path).map_err(Error::io("create", &path))?;
        }
        let rootfs = bundle.join("rootfs");
        context.seam.mount_overlay(
            &image.layers,
            &bundle.join("upper"),
            &bundle.join("work"),
            &rootfs,
        )?;
        match Instance::launch(
            context, pod, container, image, number, &id, &bundle, &rootfs,
        )
        .await
        {
            Ok(created) => Ok(created),
            Err(error) => {
                if let Err(cleanup) = remove_bundle(context, &id, &bundle).await {
                    tracing::warn!(bundle = %bundle.display(), error = %cleanup, "cleaning up a failed container failed");
                }
                Err(error)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn launch(
        context: &DriverContext,
        pod: &PodRuntime,
        container: &Container,
        image: &ContainerImage,
        number: u32,
        id: &str,
        bundle: &Path,
        rootfs: &Path,
    ) -> Result<Instance> {
        let layout = &context.layout;
        let read =
            |name: &str| std::fs::read_to_string(rootfs.join("etc").join(name)).unwrap_or_default();
        let (passwd, group) = (read("passwd"), read("group"));
        let cgroups_path = format!("{}/{id}", layout.pod_cgroup(&pod.uid));
        let (hosts, hostname, resolv) = (
            layout.etc_file(&pod.uid, "hosts"),
            layout.etc_file(&pod.uid, "hostname"),
            layout.etc_file(&pod.uid, "resolv.conf"),
        );
        let placement = spec::Placement {
            rootfs,
            netns: pod.netns.as_deref(),
            hosts_file: &hosts,
            hostname_file: &hostname,
            resolv_file: &resolv,
            cgroups_path: &cgroups_path,
            pids_limit: context.config.pids_limit,
            limit_swap: context.limit_swap,
            passwd: &passwd,
            group: &group,
        };
        let config = spec::config(&pod.pod, container, image, &placement)?;
        let config_path = bundle.join("config.json");
        std::fs::write(&config_path, config.to_string())
            .map_err(Error::io("write", &config_path))?;
        let log_dir = layout.log_dir(&pod.uid, &container.name);
        std::fs::create_dir_all(&log_dir).map_err(Error::io("create", &log_dir))?;
        let log_path = layout.log_file(&pod.uid, &container.name, number);
        let runc_log = bundle.join("runc.log");
        let pid_file = bundle.join("pid");
        let bundle_text = bundle.display().to_string();
        let pid_text = pid_file.display().to_string();
        let mut command = context.seam.runc_command(
            Some(&runc_log),
            &["run", "--bundle", &bundle_text, "--pid-file", &pid_text, id],
        );
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().map_err(|source| Error::Spawn {
            command: format!("runc run {id}"),
            source,
        })?;
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(Error::Config("runc's output is not piped".into()));
        };
        let (log_writer, progress) = crate::logs::capture(&log_path, stdout, stderr)?;
        Ok(Instance {
            id: id.to_owned(),
            number,
            bundle: bundle.to_path_buf(),
            child,
            log_writer,
            progress,
        })
    }
}

/// Removes a container instance from runc and its bundle from the disk.
async fn remove_bundle(context: &DriverContext, id: &str, bundle: &Path) -> Result<()> {
    if bundle.join("config.json").exists() {
        // `runc run` deletes its container when the process ends; this is for the rest.
        let _ = context.seam.runc(&["delete", "--force", id]).await;
    }
    for mount in crate::host::mounts_under(bundle) {
        context.seam.unmount(&mount)?;
    }
    match std::fs::remove_dir_all(bundle) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::io("remove", bundle)(error))
        }
        _ => Ok(()),
    }
}

/// How runc ended: its exit code is the container's (128 + the signal for a container
/// killed by one).
fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// runc's own last error, from its JSON log.
fn runc_error(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .rev()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|entry| entry["level"] == "error")
        .and_then(|entry| entry["msg"].as_str().map(str::to_owned))
}

impl Instance {
    /// Runs the instance to its end (or the pod's stop); how it ended.
    async fn run(
        self,
        context: &DriverContext,
        pod: &PodRuntime,
        index: usize,
        container: &Container,
        stop: &mut watch::Receiver<Option<Instant>>,
    ) -> Terminated {
        let mut instance = self;
        let progress = instance.progress.clone();
        let container_id = format!("runc://{}", instance.id);
        pod.update(index, |slot| {
            slot.instance = Some(instance.number);
            slot.log = Some(progress);
            slot.view.container_id = Some(container_id.clone());
            slot.view.state = waiting("ContainerCreating", None);
        });
        // kubelet keeps the logs of the latest instance and the one before; the older one
        // goes only now that readers are pointed at the new one.
        if let Some(older) = instance.number.checked_sub(2) {
            let _ = std::fs::remove_file(context.layout.log_file(&pod.uid, &container.name, older));
        }
        let started = instance.wait_started().await;
        let started_at = Timestamp::now();
        let ended = match started {
            Err(status) => {
                tracing::info!(container = %instance.id, ?status, "runc could not start the container");
                let message = runc_error(&instance.bundle.join("runc.log"))
                    .unwrap_or_else(|| "runc could not start the container".into());
                Terminated {
                    // What kubelet reports for a container that could not start.
                    exit_code: 128,
                    reason: "StartError".into(),
                    message: Some(message),
                    started_at: None,
                    finished_at: Timestamp::now(),
                    container_id: Some(container_id.clone()),
                }
            }
            Ok(()) => {
                let status = instance
                    .run_started(context, pod, index, container, stop, started_at)
                    .await;
                let code = exit_code(status);
                Terminated {
                    exit_code: code,
                    reason: if code == 0 { "Completed" } else { "Error" }.into(),
                    message: None,
                    started_at: Some(started_at),
                    finished_at: Timestamp::now(),
                    container_id: Some(container_id.clone()),
                }
            }
        };
        // The output closes with the container; the log is complete before it is reported.
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut instance.log_writer).await;
        if let Err(error) = remove_bundle(context, &instance.id, &instance.bundle).await {
            tracing::warn!(container = %instance.id, error = %format!("{error:#}"), "removing a container's bundle failed");
        }
        ended
    }

    /// Waits until runc has started the process (it writes the pid file then); the exit
    /// status if runc ended first.
    async fn wait_started(&mut self) -> Result<(), ExitStatus> {
        let pid_file = self.bundle.join("pid");
        let deadline = Instant::now() + START_TIMEOUT;
        let mut pause = Duration::from_millis(2);
        loop {
            if pid_file.exists() {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return if pid_file.exists() {
                    Ok(())
                } else {
                    Err(status)
                };
            }
            if Instant::now() >= deadline {
                let _ = self.child.start_kill();
                return Err(self.child.wait().await.unwrap_or_default());
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(25));
        }
    }

    /// A started instance: reports it running, runs its probes, and waits for its end, a
    /// failed liveness or startup probe, or the pod's stop.
    async fn run_started(
        &mut self,
        context: &DriverContext,
        pod: &PodRuntime,
        index: usize,
        container: &Container,
        stop: &mut watch::Receiver<Option<Instant>>,
        started_at: Timestamp,
    ) -> ExitStatus {
        let has_startup = container.startup_probe.is_some();
        let has_readiness = container.readiness_probe.is_some();
        let id = self.id.clone();
        pod.update(index, |slot| {
            slot.running_id = Some(id.clone());
            slot.view.state = State::Running { started_at };
            slot.view.started = !has_startup;
            slot.view.ready = !has_startup && !has_readiness;
        });
        let (results_sender, mut results) = mpsc::channel::<ProbeResult>(8);
        let (started_sender, started) = watch::channel(!has_startup);
        let target = ProbeTarget {
            seam: context.seam.clone(),
            container_id: self.id.clone(),
            netns: pod.netns.clone(),
            ports: container.ports.clone().unwrap_or_default(),
        };
        let mut probe_tasks = Vec::new();
        for (kind, probe) in [
            (ProbeKind::Startup, &container.startup_probe),
            (ProbeKind::Liveness, &container.liveness_probe),
            (ProbeKind::Readiness, &container.readiness_probe),
        ] {
            if let Some(probe) = probe.clone() {
                probe_tasks.push(tokio::spawn(probes::run(
                    kind,
                    probe,
                    target.clone(),
                    results_sender.clone(),
                    started.clone(),
                )));
            }
        }
        drop(results_sender);
        let status = loop {
            tokio::select! {
                status = self.child.wait() => break status.unwrap_or_default(),
                Some(result) = results.recv() => match (result.kind, result.passing) {
                    (ProbeKind::Startup, true) => {
                        let _ = started_sender.send(true);
                        pod.update(index, |slot| {
                            slot.view.started = true;
                            slot.view.ready = !has_readiness;
                        });
                    }
                    (ProbeKind::Readiness, passing) => pod.update(index, |slot| slot.view.ready = passing),
                    (ProbeKind::Liveness, true) => {}
                    (ProbeKind::Liveness | ProbeKind::Startup, false) => {
                        tracing::info!(container = %self.id, kind = ?result.kind, "probe failed; killing the container");
                        let deadline = Instant::now() + pod.termination_grace();
                        break self.terminate(context, deadline).await;
                    }
                },
                changed = stop.changed() => {
                    let deadline = match (changed, stopping(stop)) {
                        (Ok(()), Some(deadline)) => deadline,
                        (Ok(()), None) => continue,
                        (Err(_), _) => Instant::now(),
                    };
                    break self.terminate(context, deadline).await;
                }
            }
        };
        for task in probe_tasks {
            task.abort();
        }
        status
    }

    /// SIGTERM, the grace period, then SIGKILL: the instance's exit status.
    async fn terminate(&mut self, context: &DriverContext, deadline: Instant) -> ExitStatus {
        if let Err(error) = context.seam.runc(&["kill", &self.id, "TERM"]).await {
            tracing::debug!(container = %self.id, %error, "SIGTERM not delivered");
        }
        if let Ok(status) = tokio::time::timeout_at(deadline, self.child.wait()).await {
            return status.unwrap_or_default();
        }
        if let Err(error) = context.seam.runc(&["kill", &self.id, "KILL"]).await {
            tracing::debug!(container = %self.id, %error, "SIGKILL not delivered");
        }
        if let Ok(status) = tokio::time::timeout(KILL_TIMEOUT, self.child.wait()).await {
            return status.unwrap_or_default();
        }
        // runc itself hangs: end it; its container goes with `runc delete --force`.
        let _ = self.child.start_kill();
        self.child.wait().await.unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_restarts_at_once_then_doubles_to_the_maximum_and_resets() {
        let mut backoff = Backoff::new(Duration::from_secs(10), Duration::from_secs(300));
        let short = Duration::from_secs(1);
        let delays: Vec<u64> = (0..8).map(|_| backoff.after_run(short).as_secs()).collect();
        assert_eq!(delays, [0, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(backoff.after_run(Duration::from_secs(600)), Duration::ZERO);
        assert_eq!(backoff.after_run(short), Duration::from_secs(10));
        assert_eq!(kubectl_duration(Duration::from_secs(300)), "5m0s");
    }
}
