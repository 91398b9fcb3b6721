//! A pod's status as Kubernetes reports it, from what the driver knows of its containers:
//! container statuses, the phase (kubelet's `getPhase` rules), and the conditions. Pure.

use jiff::Timestamp;
use serde_json::{Value, json};

/// Where a container instance is (a container status's `state`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running {
        started_at: Timestamp,
    },
    Terminated(Terminated),
}

/// How a container instance ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Terminated {
    pub exit_code: i32,
    /// `Completed`, `Error`, `OOMKilled`, `StartError`.
    pub reason: String,
    pub message: Option<String>,
    pub started_at: Option<Timestamp>,
    pub finished_at: Timestamp,
    pub container_id: Option<String>,
}

/// What the driver knows of one container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerView {
    pub name: String,
    pub image: String,
    /// The image's digest, once it has been resolved.
    pub image_id: Option<String>,
    /// `runc://ID` of the current (or last) instance.
    pub container_id: Option<String>,
    pub state: State,
    pub last_terminated: Option<Terminated>,
    pub restart_count: i32,
    pub ready: bool,
    pub started: bool,
}

impl ContainerView {
    /// A container that has not run yet.
    pub fn creating(name: &str, image: &str) -> ContainerView {
        ContainerView {
            name: name.to_owned(),
            image: image.to_owned(),
            image_id: None,
            container_id: None,
            state: State::Waiting {
                reason: "ContainerCreating".into(),
                message: None,
            },
            last_terminated: None,
            restart_count: 0,
            ready: false,
            started: false,
        }
    }
}

/// What the driver knows of the pod around its containers.
#[derive(Clone, Debug)]
pub struct PodView {
    pub host_ip: String,
    /// The pod's address: the host's with `hostNetwork`; none while pods have only
    /// loopback.
    /// The pod's addresses (`podIP` is the first); the host's with `hostNetwork`.
    pub pod_ips: Vec<String>,
    pub start_time: Timestamp,
    /// `Always`, `OnFailure` or `Never`.
    pub restart_policy: String,
    /// A phase once reached that a pod never leaves (`Succeeded`, `Failed`).
    pub terminal_phase: Option<&'static str>,
}

/// Kubernetes' time format for `metav1.Time`.
pub fn time(timestamp: Timestamp) -> String {
    timestamp.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The pod's phase, by kubelet's rules for a pod without init containers.
pub fn phase(view: &PodView, containers: &[ContainerView]) -> &'static str {
    if let Some(terminal) = view.terminal_phase {
        return terminal;
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for container in containers {
        match &container.state {
            State::Running { .. } => running += 1,
            State::Terminated(terminated) => {
                stopped += 1;
                if terminated.exit_code == 0 {
                    succeeded += 1;
                }
            }
            State::Waiting { .. } if container.last_terminated.is_some() => stopped += 1,
            State::Waiting { .. } => waiting += 1,
        }
    }
    if waiting > 0 {
        "Pending"
    } else if running > 0 {
        "Running"
    } else if stopped > 0 {
        match view.restart_policy.as_str() {
            "Always" => "Running",
            _ if stopped == succeeded => "Succeeded",
            "Never" => "Failed",
            _ => "Running",
        }
    } else {
        "Pending"
    }
}

fn terminated_json(terminated: &Terminated) -> Value {
    let mut value = json!({
        "exitCode": terminated.exit_code,
        "reason": terminated.reason,
        "finishedAt": time(terminated.finished_at),
    });
    if let Some(started_at) = terminated.started_at {
        value["startedAt"] = json!(time(started_at));
    }
    if let Some(message) = &terminated.message {
        value["message"] = json!(message);
    }
    if let Some(id) = &terminated.container_id {
        value["containerID"] = json!(id);
    }
    value
}

fn container_json(container: &ContainerView) -> Value {
    let state = match &container.state {
        State::Waiting { reason, message } => {
            let mut waiting = json!({"reason": reason});
            if let Some(message) = message {
                waiting["message"] = json!(message);
            }
            json!({"waiting": waiting})
        }
        State::Running { started_at } => json!({"running": {"startedAt": time(*started_at)}}),
        State::Terminated(terminated) => json!({"terminated": terminated_json(terminated)}),
    };
    let last_state = match &container.last_terminated {
        Some(terminated) => json!({"terminated": terminated_json(terminated)}),
        None => json!({}),
    };
    let mut value = json!({
        "name": container.name,
        "image": container.image,
        "imageID": container.image_id.clone().unwrap_or_default(),
        "ready": container.ready,
        "started": container.started,
        "restartCount": container.restart_count,
        "state": state,
        "lastState": last_state,
    });
    if let Some(id) = &container.container_id {
        value["containerID"] = json!(id);
    }
    value
}

/// The whole status: phase, conditions (keeping the transition time of a condition whose
/// status did not change from `previous`), addresses, start time and container statuses.
pub fn pod_status(view: &PodView, containers: &[ContainerView], previous: &Value) -> Value {
    let phase = phase(view, containers);
    let now = Timestamp::now();
    let unready: Vec<&str> = containers
        .iter()
        .filter(|c| !c.ready)
        .map(|c| c.name.as_str())
        .collect();
    let (ready, reason, message) = if phase == "Succeeded" || phase == "Failed" {
        (false, Some("PodCompleted"), None)
    } else if unready.is_empty() {
        (true, None, None)
    } else {
        (
            false,
            Some("ContainersNotReady"),
            Some(format!(
                "containers with unready status: [{}]",
                unready.join(" ")
            )),
        )
    };
    let condition = |kind: &str, status: bool, reason: Option<&str>, message: Option<&String>| {
        let status = if status { "True" } else { "False" };
        let since = previous["conditions"]
            .as_array()
            .and_then(|conditions| {
                conditions
                    .iter()
                    .find(|c| c["type"] == kind && c["status"] == status)
            })
            .and_then(|c| c["lastTransitionTime"].as_str().map(str::to_owned))
            .unwrap_or_else(|| time(now));
        let mut value = json!({"type": kind, "status": status, "lastTransitionTime": since});
        if let Some(reason) = reason {
            value["reason"] = json!(reason);
        }
        if let Some(message) = message {
            value["message"] = json!(message);
        }
        value
    };
    let conditions = vec![
        condition("PodScheduled", true, None, None),
        condition("Initialized", true, None, None),
        condition("ContainersReady", ready, reason, message.as_ref()),
        condition("Ready", ready, reason, message.as_ref()),
    ];
    let mut status = json!({
        "phase": phase,
        "conditions": conditions,
        "hostIP": view.host_ip,
        "hostIPs": [{"ip": view.host_ip}],
        "startTime": time(view.start_time),
        "containerStatuses": containers.iter().map(container_json).collect::<Vec<_>>(),
    });
    if let Some(pod_ip) = view.pod_ips.first() {
        status["podIP"] = json!(pod_ip);
        status["podIPs"] = json!(
            view.pod_ips
                .iter()
                .map(|ip| json!({"ip": ip}))
                .collect::<Vec<_>>()
        );
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(policy: &str) -> PodView {
        PodView {
            host_ip: "10.0.0.1".into(),
            pod_ips: Vec::new(),
            start_time: Timestamp::UNIX_EPOCH,
            restart_policy: policy.into(),
            terminal_phase: None,
        }
    }

    fn terminated(code: i32) -> Terminated {
        Terminated {
            exit_code: code,
            reason: if code == 0 { "Completed" } else { "Error" }.into(),
            message: None,
            started_at: None,
            finished_at: Timestamp::UNIX_EPOCH,
            container_id: Some("runc://x".into()),
        }
    }

    fn with_state(state: State) -> ContainerView {
        ContainerView {
            state,
            ..ContainerView::creating("c", "busybox")
        }
    }

    #[test]
    fn phases_follow_kubelet() {
        let creating = ContainerView::creating("c", "busybox");
        let running = with_state(State::Running {
            started_at: Timestamp::UNIX_EPOCH,
        });
        let ok = with_state(State::Terminated(terminated(0)));
        let failed = with_state(State::Terminated(terminated(3)));
        let backing_off = ContainerView {
            last_terminated: Some(terminated(1)),
            ..ContainerView::creating("c", "busybox")
        };
        assert_eq!(
            phase(&view("Always"), std::slice::from_ref(&creating)),
            "Pending"
        );
        assert_eq!(
            phase(&view("Always"), &[running.clone(), creating]),
            "Pending"
        );
        assert_eq!(phase(&view("Never"), &[running, ok.clone()]), "Running");
        assert_eq!(
            phase(&view("Never"), std::slice::from_ref(&ok)),
            "Succeeded"
        );
        assert_eq!(
            phase(&view("OnFailure"), std::slice::from_ref(&ok)),
            "Succeeded"
        );
        assert_eq!(phase(&view("Always"), std::slice::from_ref(&ok)), "Running");
        assert_eq!(phase(&view("Never"), &[ok, failed.clone()]), "Failed");
        assert_eq!(phase(&view("OnFailure"), &[failed]), "Running");
        assert_eq!(phase(&view("Always"), &[backing_off]), "Running");
    }

    #[test]
    fn conditions_keep_their_transition_times() {
        let running = ContainerView {
            ready: true,
            started: true,
            ..with_state(State::Running {
                started_at: Timestamp::UNIX_EPOCH,
            })
        };
        let previous = json!({"conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"}]});
        let status = pod_status(&view("Always"), &[running], &previous);
        let ready = status["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
            .cloned()
            .unwrap_or_default();
        assert_eq!(ready["status"], "True");
        assert_eq!(ready["lastTransitionTime"], "2020-01-01T00:00:00Z");
        assert_eq!(status["phase"], "Running");
        assert_eq!(
            status["containerStatuses"][0]["state"]["running"]["startedAt"],
            "1970-01-01T00:00:00Z"
        );

        let waiting = ContainerView::creating("c", "busybox");
        let status = pod_status(&view("Always"), &[waiting], &previous);
        let ready = &status["conditions"][3];
        assert_eq!(ready["status"], "False");
        assert_eq!(ready["reason"], "ContainersNotReady");
        assert_eq!(ready["message"], "containers with unready status: [c]");
    }
}
