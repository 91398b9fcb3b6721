//! One running pod: what the driver knows of its containers, shared by the tasks that
//! supervise them, and the status it publishes whenever that changes.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use ronghe_agent::pods::StatusSender;
use serde_json::Value;
use tokio::sync::watch;

use crate::logs::Progress;
use crate::status::{self, ContainerView, PodView, State, Terminated};

/// One container of a running pod.
#[derive(Debug)]
pub struct ContainerSlot {
    pub view: ContainerView,
    /// runc's id of the instance running now (for exec).
    pub running_id: Option<String>,
    /// The number of the latest instance created (its log is `<n>.log`), if any.
    pub instance: Option<u32>,
    /// The log progress of the latest instance.
    pub log: Option<watch::Receiver<Progress>>,
}

/// A running pod.
pub struct PodRuntime {
    pub pod: Pod,
    pub uid: String,
    pub namespace: String,
    pub name: String,
    /// The pod's network namespace; `None` with `hostNetwork`.
    pub netns: Option<PathBuf>,
    /// Set (to the end of the grace period) when the pod is to stop.
    pub stop: watch::Sender<Option<tokio::time::Instant>>,
    state: Mutex<PodState>,
    status: StatusSender,
}

struct PodState {
    view: PodView,
    containers: Vec<ContainerSlot>,
    published: Value,
}

impl PodRuntime {
    pub fn new(
        pod: &Pod,
        host_ip: &str,
        netns: Option<PathBuf>,
        status: StatusSender,
    ) -> PodRuntime {
        let spec = pod.spec.clone().unwrap_or_default();
        let host_network = spec.host_network == Some(true);
        let previous = pod.status.clone().unwrap_or_default();
        let containers = spec
            .containers
            .iter()
            .map(|container| {
                let mut view = ContainerView::creating(
                    &container.name,
                    container.image.as_deref().unwrap_or_default(),
                );
                carry_over(&mut view, pod, &container.name);
                ContainerSlot {
                    view,
                    running_id: None,
                    instance: None,
                    log: None,
                }
            })
            .collect();
        let start_time = previous
            .start_time
            .as_ref()
            .map_or_else(Timestamp::now, |time| time.0);
        let view = PodView {
            host_ip: host_ip.to_owned(),
            pod_ips: if host_network {
                vec![host_ip.to_owned()]
            } else {
                Vec::new()
            },
            start_time,
            restart_policy: spec
                .restart_policy
                .clone()
                .unwrap_or_else(|| "Always".into()),
            terminal_phase: None,
        };
        let (stop, _) = watch::channel(None);
        let runtime = PodRuntime {
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            pod: pod.clone(),
            netns,
            stop,
            state: Mutex::new(PodState {
                view,
                containers,
                published: pod
                    .status
                    .as_ref()
                    .and_then(|s| serde_json::to_value(s).ok())
                    .unwrap_or(Value::Null),
            }),
            status,
        };
        runtime.publish(&mut runtime.lock());
        runtime
    }

    fn lock(&self) -> MutexGuard<'_, PodState> {
        // A panic elsewhere while holding the lock leaves consistent enough data to report.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Changes container `index` and publishes the pod's new status.
    pub fn update(&self, index: usize, change: impl FnOnce(&mut ContainerSlot)) {
        let mut state = self.lock();
        if let Some(slot) = state.containers.get_mut(index) {
            change(slot);
        }
        self.publish(&mut state);
    }

    /// Every container waits in ContainerCreating with `message` (the sandbox or the
    /// network is not there yet); published once.
    pub fn creating(&self, message: &str) {
        let mut state = self.lock();
        for slot in &mut state.containers {
            slot.view.state = State::Waiting {
                reason: "ContainerCreating".into(),
                message: Some(message.to_owned()),
            };
        }
        self.publish(&mut state);
    }

    /// Sets the pod's addresses (once its network is plugged in) and publishes them.
    pub fn set_pod_ips(&self, ips: &[std::net::IpAddr]) {
        let mut state = self.lock();
        state.view.pod_ips = ips.iter().map(ToString::to_string).collect();
        self.publish(&mut state);
    }

    /// Reads container `index`.
    pub fn read<T>(&self, index: usize, read: impl FnOnce(&ContainerSlot) -> T) -> Option<T> {
        self.lock().containers.get(index).map(read)
    }

    /// The index of a container by name.
    pub fn index_of(&self, container: &str) -> Option<usize> {
        self.lock()
            .containers
            .iter()
            .position(|slot| slot.view.name == container)
    }

    /// The status now, as published.
    pub fn status(&self) -> Value {
        self.lock().published.clone()
    }

    fn publish(&self, state: &mut PodState) {
        let value = status::pod_status(
            &state.view,
            &state
                .containers
                .iter()
                .map(|s| s.view.clone())
                .collect::<Vec<_>>(),
            &state.published,
        );
        if state.view.terminal_phase.is_none() {
            state.view.terminal_phase = match value["phase"].as_str() {
                Some("Succeeded") => Some("Succeeded"),
                Some("Failed") => Some("Failed"),
                _ => None,
            };
        }
        if value != state.published {
            state.published = value.clone();
            self.status.send_replace(value);
        }
    }

    /// The pod's grace period for a container killed by a failed probe.
    pub fn termination_grace(&self) -> Duration {
        let seconds = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30);
        Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
    }
}

/// After an agent restart, a container goes on from what the pod's status said of it: its
/// restart count (one more if an instance had run), its last termination, and a final
/// termination that its restart policy will not restart.
fn carry_over(view: &mut ContainerView, pod: &Pod, name: &str) {
    let Some(previous) = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|all| all.iter().find(|c| c.name == name))
    else {
        return;
    };
    let had_instance = previous.container_id.is_some();
    view.restart_count = previous.restart_count + i32::from(had_instance);
    let convert = |t: &k8s_openapi::api::core::v1::ContainerStateTerminated| Terminated {
        exit_code: t.exit_code,
        reason: t.reason.clone().unwrap_or_else(|| "Error".into()),
        message: t.message.clone(),
        started_at: t.started_at.as_ref().map(|time| time.0),
        finished_at: t
            .finished_at
            .as_ref()
            .map_or_else(Timestamp::now, |time| time.0),
        container_id: t.container_id.clone(),
    };
    let current = previous.state.as_ref().and_then(|s| s.terminated.as_ref());
    let last = previous
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref());
    view.last_terminated = current.or(last).map(convert);
    view.image_id = Some(previous.image_id.clone()).filter(|id| !id.is_empty());
    let policy = pod
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always");
    if let Some(terminated) = current {
        let restarts = match policy {
            "Never" => false,
            "OnFailure" => terminated.exit_code != 0,
            _ => true,
        };
        if !restarts {
            view.state = State::Terminated(convert(terminated));
            view.restart_count = previous.restart_count;
            view.last_terminated = last.map(convert);
            view.container_id = previous.container_id.clone();
        }
    }
}
