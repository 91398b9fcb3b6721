//! What to do about one VM, with no I/O: from what its object asks for (spec) and last
//! reported (status) and where its driver says it is, the next action and the status to
//! report. Nova's states: `status` (ACTIVE, SHUTOFF, ...), `vmState`, `taskState`,
//! `powerState`.

use kube::api::DynamicObject;
use serde_json::{Map, Value, json};

use super::{Fault, Power, RebootKind, VmState};

/// What the VM's object says, as far as running it goes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// The Nova status last reported (`BUILD` for a new VM).
    pub status: String,
    pub task_state: Option<String>,
    pub running: bool,
    pub paused: bool,
    pub suspended: bool,
    /// `spec.reboot`: its kind and `requestedAt`.
    pub reboot: Option<(RebootKind, String)>,
    pub last_reboot: Option<String>,
    pub launched_at: Option<String>,
    pub fault: Option<Fault>,
}

impl Observed {
    pub fn from_object(vm: &DynamicObject) -> Observed {
        let spec = &vm.data["spec"];
        let status = &vm.data["status"];
        let text = |value: &Value| value.as_str().map(str::to_owned);
        let reboot = spec["reboot"]["requestedAt"].as_str().map(|at| {
            let kind = if spec["reboot"]["type"]
                .as_str()
                .is_some_and(|kind| kind.eq_ignore_ascii_case("HARD"))
            {
                RebootKind::Hard
            } else {
                RebootKind::Soft
            };
            (kind, at.to_owned())
        });
        let fault = status["fault"]["message"].as_str().map(|message| Fault {
            message: message.to_owned(),
            details: status["fault"]["details"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        });
        Observed {
            status: text(&status["status"]).unwrap_or_default(),
            task_state: text(&status["taskState"]),
            running: spec["running"].as_bool().unwrap_or(true),
            paused: spec["paused"].as_bool().unwrap_or(false),
            suspended: spec["suspended"].as_bool().unwrap_or(false),
            reboot,
            last_reboot: text(&status["lastReboot"]),
            launched_at: text(&status["launchedAt"]),
            fault,
        }
    }

    /// A reboot asked for and not done yet.
    pub fn pending_reboot(&self) -> Option<RebootKind> {
        match &self.reboot {
            Some((kind, at)) if self.last_reboot.as_deref() != Some(at.as_str()) => Some(*kind),
            _ => None,
        }
    }
}

/// The next step for a VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Start,
    Stop,
    Reboot(RebootKind),
    Pause,
    Unpause,
    Suspend,
    Resume,
    /// It stopped by itself (QEMU died, the guest shut down) while reported running: like
    /// Nova's power-state sync, it is stopped for good (`spec.running` false), so nothing
    /// boots it again until someone starts it.
    Died,
    /// Nothing to do but report where it is.
    Report,
    /// Nothing to do and nothing to report (a VM in ERROR stays there).
    Leave,
}

/// Statuses that say the VM was running when last reported.
fn reported_running(status: &str) -> bool {
    matches!(status, "ACTIVE" | "PAUSED" | "SUSPENDED")
}

/// The next step towards what the spec asks for.
pub fn plan(observed: &Observed, power: Power) -> Action {
    let reboot = observed.pending_reboot();
    let up = matches!(power, Power::Running | Power::Paused);
    if observed.status == "ERROR" {
        // Nova leaves a VM in ERROR alone but for a stop, a hard reboot and a delete.
        return match reboot {
            Some(RebootKind::Hard) if observed.running && up => Action::Reboot(RebootKind::Hard),
            Some(RebootKind::Hard) if observed.running => Action::Start,
            _ if !observed.running && (up || power == Power::Suspended) => Action::Stop,
            // Stopped in ERROR with nothing running: it is SHUTOFF now, as in Nova.
            _ if !observed.running => Action::Report,
            _ => Action::Leave,
        };
    }
    match power {
        // Stopped after a failure, then asked to start: boot it again.
        Power::Failed if observed.running && observed.status == "SHUTOFF" => Action::Start,
        Power::Failed => Action::Report,
        Power::Absent | Power::Shutdown | Power::Crashed => {
            if !observed.running {
                Action::Report
            } else if reboot == Some(RebootKind::Hard) || !reported_running(&observed.status) {
                Action::Start
            } else {
                Action::Died
            }
        }
        Power::Suspended => {
            if !observed.running {
                Action::Stop
            } else if observed.suspended {
                Action::Report
            } else {
                Action::Resume
            }
        }
        Power::Running => {
            if !observed.running {
                Action::Stop
            } else if observed.suspended {
                Action::Suspend
            } else if let Some(kind) = reboot {
                Action::Reboot(kind)
            } else if observed.paused {
                Action::Pause
            } else {
                Action::Report
            }
        }
        Power::Paused => {
            if !observed.running {
                Action::Stop
            } else if observed.suspended {
                Action::Suspend
            } else if reboot.is_some() {
                // A paused guest cannot see the power button: Nova allows only hard.
                Action::Reboot(RebootKind::Hard)
            } else if !observed.paused {
                Action::Unpause
            } else {
                Action::Report
            }
        }
    }
}

/// The task state (and for reboots the status) shown while an action runs.
pub fn in_progress(action: Action, observed: &Observed) -> Option<(&'static str, &'static str)> {
    let status = match observed.status.as_str() {
        "ACTIVE" => "ACTIVE",
        "PAUSED" => "PAUSED",
        "SUSPENDED" => "SUSPENDED",
        "SHUTOFF" => "SHUTOFF",
        "ERROR" => "ERROR",
        _ => "BUILD",
    };
    Some(match action {
        Action::Start if status == "BUILD" => (status, "spawning"),
        Action::Start => (status, "powering-on"),
        Action::Stop => (status, "powering-off"),
        Action::Reboot(RebootKind::Soft) => ("REBOOT", "reboot_started"),
        Action::Reboot(RebootKind::Hard) => ("HARD_REBOOT", "reboot_started_hard"),
        Action::Pause => (status, "pausing"),
        Action::Unpause => (status, "unpausing"),
        Action::Suspend => (status, "suspending"),
        Action::Resume => (status, "resuming"),
        Action::Died | Action::Report | Action::Leave => return None,
    })
}

/// Nova's status, vm_state and power_state for where a VM is.
pub fn nova_state(power: Power, observed: &Observed) -> (&'static str, &'static str, i64) {
    match power {
        Power::Running => ("ACTIVE", "active", 1),
        Power::Paused => ("PAUSED", "paused", 3),
        Power::Shutdown => ("SHUTOFF", "stopped", 4),
        Power::Crashed => ("SHUTOFF", "stopped", 6),
        Power::Suspended => ("SUSPENDED", "suspended", 7),
        Power::Failed if observed.running => ("ERROR", "error", 0),
        Power::Failed => ("SHUTOFF", "stopped", 0),
        Power::Absent if observed.status == "BUILD" && observed.running => ("BUILD", "building", 0),
        Power::Absent => ("SHUTOFF", "stopped", 0),
    }
}

/// The status fields to report for `state` (only those that differ from what the object
/// says): settled, so the task state is cleared. A fault the object already has (same
/// message and details) keeps its time, so reporting the same failure twice writes nothing.
pub fn report(
    observed: &Observed,
    current_status: &Value,
    state: &VmState,
    reboot_done: Option<&str>,
    now: &str,
) -> Option<Map<String, Value>> {
    let (status, vm_state, power_state) = nova_state(state.power, observed);
    let mut desired = Map::new();
    desired.insert("status".into(), json!(status));
    desired.insert("vmState".into(), json!(vm_state));
    desired.insert("taskState".into(), Value::Null);
    desired.insert("powerState".into(), json!(power_state));
    if state.power == Power::Running && observed.launched_at.is_none() {
        desired.insert("launchedAt".into(), json!(now));
    }
    if let Some(at) = reboot_done {
        desired.insert("lastReboot".into(), json!(at));
    } else if let Some((_, at)) = &observed.reboot
        && observed.pending_reboot().is_some()
        && !matches!(state.power, Power::Running | Power::Paused)
    {
        // A reboot asked of a VM that is not running has nothing to do: it is done.
        desired.insert("lastReboot".into(), json!(at));
    }
    if let Some(fault) = &state.fault
        && observed.fault.as_ref() != Some(fault)
    {
        desired.insert(
            "fault".into(),
            json!({"code": 500, "message": fault.message, "details": fault.details,
                   "created": now}),
        );
    }
    desired.retain(|field, value| current_status.get(field).unwrap_or(&Value::Null) != value);
    (!desired.is_empty()).then_some(desired)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(status: &str) -> Observed {
        Observed {
            status: status.into(),
            running: true,
            ..Observed::default()
        }
    }

    #[test]
    fn a_new_vm_starts_and_a_running_one_is_reported() {
        assert_eq!(plan(&observed("BUILD"), Power::Absent), Action::Start);
        assert_eq!(plan(&observed("ACTIVE"), Power::Running), Action::Report);
        assert_eq!(plan(&observed("BUILD"), Power::Failed), Action::Report);
    }

    #[test]
    fn the_spec_drives_stop_start_pause_and_suspend() {
        let stopped = Observed {
            running: false,
            ..observed("ACTIVE")
        };
        assert_eq!(plan(&stopped, Power::Running), Action::Stop);
        assert_eq!(plan(&stopped, Power::Paused), Action::Stop);
        assert_eq!(plan(&stopped, Power::Shutdown), Action::Report);
        assert_eq!(plan(&observed("SHUTOFF"), Power::Shutdown), Action::Start);
        let paused = Observed {
            paused: true,
            ..observed("ACTIVE")
        };
        assert_eq!(plan(&paused, Power::Running), Action::Pause);
        assert_eq!(plan(&paused, Power::Paused), Action::Report);
        assert_eq!(plan(&observed("PAUSED"), Power::Paused), Action::Unpause);
        let suspended = Observed {
            suspended: true,
            ..observed("ACTIVE")
        };
        assert_eq!(plan(&suspended, Power::Running), Action::Suspend);
        assert_eq!(plan(&suspended, Power::Suspended), Action::Report);
        assert_eq!(
            plan(&observed("SUSPENDED"), Power::Suspended),
            Action::Resume
        );
    }

    #[test]
    fn a_vm_that_stops_by_itself_is_stopped_not_booted_again() {
        assert_eq!(plan(&observed("ACTIVE"), Power::Crashed), Action::Died);
        assert_eq!(plan(&observed("PAUSED"), Power::Shutdown), Action::Died);
        assert_eq!(plan(&observed("ACTIVE"), Power::Absent), Action::Died);
        // Unless a hard reboot was asked for meanwhile.
        let rebooting = Observed {
            reboot: Some((RebootKind::Hard, "t1".into())),
            ..observed("ACTIVE")
        };
        assert_eq!(plan(&rebooting, Power::Crashed), Action::Start);
    }

    #[test]
    fn reboots_happen_once_per_request() {
        let soft = Observed {
            reboot: Some((RebootKind::Soft, "t1".into())),
            ..observed("ACTIVE")
        };
        assert_eq!(
            plan(&soft, Power::Running),
            Action::Reboot(RebootKind::Soft)
        );
        assert_eq!(
            plan(&soft, Power::Paused),
            Action::Reboot(RebootKind::Hard),
            "a paused guest is reset"
        );
        let done = Observed {
            last_reboot: Some("t1".into()),
            ..soft
        };
        assert_eq!(plan(&done, Power::Running), Action::Report);
    }

    #[test]
    fn error_is_left_alone_but_for_stop_and_hard_reboot() {
        assert_eq!(plan(&observed("ERROR"), Power::Failed), Action::Leave);
        assert_eq!(plan(&observed("ERROR"), Power::Running), Action::Leave);
        let hard = Observed {
            reboot: Some((RebootKind::Hard, "t1".into())),
            ..observed("ERROR")
        };
        assert_eq!(plan(&hard, Power::Failed), Action::Start);
        assert_eq!(
            plan(&hard, Power::Running),
            Action::Reboot(RebootKind::Hard)
        );
        let stop = Observed {
            running: false,
            ..observed("ERROR")
        };
        assert_eq!(plan(&stop, Power::Running), Action::Stop);
        assert_eq!(plan(&stop, Power::Failed), Action::Report);
        assert_eq!(nova_state(Power::Failed, &stop), ("SHUTOFF", "stopped", 0));
        // Started again after that stop: another try at booting.
        assert_eq!(plan(&observed("SHUTOFF"), Power::Failed), Action::Start);
    }

    #[test]
    fn reports_only_what_changed_and_keeps_a_faults_time() {
        let running = VmState {
            power: Power::Running,
            fault: None,
        };
        let fields = report(
            &observed("BUILD"),
            &json!({"status": "BUILD", "taskState": "spawning", "powerState": 0}),
            &running,
            None,
            "now",
        )
        .unwrap();
        assert_eq!(
            Value::Object(fields),
            json!({"status": "ACTIVE", "vmState": "active", "taskState": null,
                   "powerState": 1, "launchedAt": "now"})
        );
        let settled = json!({"status": "ACTIVE", "vmState": "active", "powerState": 1,
                             "launchedAt": "then"});
        let active = Observed {
            launched_at: Some("then".into()),
            ..observed("ACTIVE")
        };
        assert_eq!(report(&active, &settled, &running, None, "now"), None);
        let fault = Fault {
            message: "the guest kernel panicked".into(),
            details: "Kernel panic - not syncing".into(),
        };
        let failed = VmState {
            power: Power::Failed,
            fault: Some(fault.clone()),
        };
        let fields = report(&active, &settled, &failed, None, "now").unwrap();
        assert_eq!(fields["status"], "ERROR");
        assert_eq!(fields["fault"]["details"], "Kernel panic - not syncing");
        let already = Observed {
            status: "ERROR".into(),
            fault: Some(fault),
            ..active
        };
        let reported = json!({"status": "ERROR", "vmState": "error", "powerState": 0,
                              "launchedAt": "then", "fault": {"message": "the guest kernel panicked"}});
        assert_eq!(report(&already, &reported, &failed, None, "later"), None);
    }

    #[test]
    fn crashes_are_shutoff_with_power_state_crashed() {
        assert_eq!(
            nova_state(Power::Crashed, &observed("ACTIVE")),
            ("SHUTOFF", "stopped", 6)
        );
        assert_eq!(
            nova_state(Power::Shutdown, &observed("ACTIVE")),
            ("SHUTOFF", "stopped", 4)
        );
        assert_eq!(
            in_progress(Action::Reboot(RebootKind::Hard), &observed("ACTIVE")),
            Some(("HARD_REBOOT", "reboot_started_hard"))
        );
        assert_eq!(
            in_progress(Action::Start, &observed("BUILD")),
            Some(("BUILD", "spawning"))
        );
    }
}
