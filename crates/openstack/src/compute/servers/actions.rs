//! Server actions (`POST /servers/{id}/action`): start, stop, reboot, pause, unpause,
//! suspend, resume and console output. An action is a change of the VM's spec (what should
//! be) together with its task state (what is being done), written in one compare-and-swap;
//! the agent of the VM's host carries it out and clears the task state. Nova's state checks
//! apply: an action not allowed in the VM's state is a 409 naming it.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use http::StatusCode;
use ronghe_apiserver::auth::User;
use serde_json::{Value, json};

use super::super::{Caller, bad_request, conflict, engine_fault, uid_of};
use crate::OpenStack;
use crate::fault::FaultResult;

/// How often an action re-reads a VM that changed under it before giving up.
const ATTEMPTS: usize = 5;

/// What an action needs of the VM and what it changes.
struct Transition {
    /// Nova's name of the action, for messages (`start`, `stop`, `reboot` ...).
    name: &'static str,
    /// The policy operation.
    operation: &'static str,
    /// vm_states it may start from.
    from: &'static [&'static str],
    /// The task state while it runs.
    task: &'static str,
    /// The spec fields it sets.
    spec: Value,
    /// The status it shows at once (`REBOOT`), if any.
    status: Option<&'static str>,
}

/// `POST /servers/{id}/action`.
pub async fn action(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
    body: Bytes,
) -> FaultResult<Response> {
    let caller = Caller::of(&user)?;
    let body: serde_json::Map<String, Value> = serde_json::from_slice(&body)
        .map_err(|_| bad_request("Malformed request body: the body is not a JSON object."))?;
    let mut keys = body.keys();
    let (Some(name), None) = (keys.next(), keys.next()) else {
        return Err(bad_request("An action body names exactly one action."));
    };
    let argument = &body[name];
    let vm = super::find(&state, &caller, &id).await?;
    let namespace = vm["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if name == "os-getConsoleOutput" {
        caller.allow_in("os_compute_api:os-console-output", &namespace)?;
        return console_output(&state, &vm, argument).await;
    }
    let transition = match name.as_str() {
        "os-start" => Transition {
            name: "start",
            operation: "os_compute_api:servers:start",
            from: &["stopped"],
            task: "powering-on",
            spec: json!({"running": true}),
            status: None,
        },
        "os-stop" => Transition {
            name: "stop",
            operation: "os_compute_api:servers:stop",
            from: &["active", "error"],
            task: "powering-off",
            spec: json!({"running": false}),
            status: None,
        },
        "reboot" => {
            let kind = argument["type"]
                .as_str()
                .unwrap_or_default()
                .to_ascii_uppercase();
            let requested_at = jiff::Timestamp::now().to_string();
            let spec = json!({"reboot": {"type": kind, "requestedAt": requested_at}});
            match kind.as_str() {
                "SOFT" => Transition {
                    name: "reboot",
                    operation: "os_compute_api:servers:reboot",
                    from: &["active"],
                    task: "rebooting",
                    spec,
                    status: Some("REBOOT"),
                },
                // A hard reboot brings a stopped, paused or suspended server back running,
                // as in Nova.
                "HARD" => Transition {
                    name: "reboot",
                    operation: "os_compute_api:servers:reboot",
                    from: &["active", "stopped", "paused", "suspended", "error"],
                    task: "rebooting_hard",
                    spec: json!({
                        "reboot": spec["reboot"],
                        "running": true,
                        "paused": false,
                        "suspended": false,
                    }),
                    status: Some("HARD_REBOOT"),
                },
                _ => {
                    return Err(bad_request(
                        "Invalid input for field/attribute type. Value must be one of ['HARD', 'Hard', 'SOFT', 'Soft', 'hard', 'soft']",
                    ));
                }
            }
        }
        "pause" => Transition {
            name: "pause",
            operation: "os_compute_api:os-pause-server:pause",
            from: &["active"],
            task: "pausing",
            spec: json!({"paused": true}),
            status: None,
        },
        "unpause" => Transition {
            name: "unpause",
            operation: "os_compute_api:os-pause-server:unpause",
            from: &["paused"],
            task: "unpausing",
            spec: json!({"paused": false}),
            status: None,
        },
        "suspend" => Transition {
            name: "suspend",
            operation: "os_compute_api:os-suspend-server:suspend",
            from: &["active"],
            task: "suspending",
            spec: json!({"suspended": true}),
            status: None,
        },
        "resume" => Transition {
            name: "resume",
            operation: "os_compute_api:os-suspend-server:resume",
            from: &["suspended"],
            task: "resuming",
            spec: json!({"suspended": false}),
            status: None,
        },
        other => {
            return Err(bad_request(format!("There is no such action: {other}")));
        }
    };
    caller.allow_in(transition.operation, &namespace)?;
    apply(&state, vm, &transition).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// Writes a transition, re-reading the VM when it changed meanwhile.
async fn apply(state: &OpenStack, mut vm: Value, transition: &Transition) -> FaultResult<()> {
    let kind = super::super::kind(state, "VirtualMachine")?;
    for _ in 0..ATTEMPTS {
        let id = uid_of(&vm).to_owned();
        let vm_state = vm["status"]["vmState"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let task = vm["status"]["taskState"].as_str().map(str::to_owned);
        if vm.pointer("/metadata/deletionTimestamp").is_some() {
            return Err(conflict(format!(
                "Cannot '{}' instance {id} while it is in task_state deleting",
                transition.name
            )));
        }
        if let Some(task) = task {
            return Err(conflict(format!(
                "Cannot '{}' instance {id} while it is in task_state {task}",
                transition.name
            )));
        }
        if !transition.from.contains(&vm_state.as_str()) {
            return Err(conflict(format!(
                "Cannot '{}' instance {id} while it is in vm_state {vm_state}",
                transition.name
            )));
        }
        let mut changed = vm.clone();
        if let (Some(spec), Some(fields)) = (
            changed.get_mut("spec").and_then(Value::as_object_mut),
            transition.spec.as_object(),
        ) {
            for (field, value) in fields {
                spec.insert(field.clone(), value.clone());
            }
        }
        changed["status"]["taskState"] = json!(transition.task);
        if let Some(status) = transition.status {
            changed["status"]["status"] = json!(status);
        }
        match state
            .engine
            .update_together(vec![(&kind, changed)])
            .await
            .map_err(engine_fault)?
        {
            Ok(_) => return Ok(()),
            Err(_stale) => {
                let namespace = vm["metadata"]["namespace"].as_str().unwrap_or_default();
                let name = vm["metadata"]["name"].as_str().unwrap_or_default();
                vm = state
                    .engine
                    .get(&kind, Some(namespace), name)
                    .await
                    .map_err(engine_fault)?;
            }
        }
    }
    Err(conflict(
        "The server changed too often while the action was written; try again.",
    ))
}

/// `os-getConsoleOutput`: the tail of the VM's serial console, from its host's agent.
async fn console_output(state: &OpenStack, vm: &Value, argument: &Value) -> FaultResult<Response> {
    let lines = match argument.get("length") {
        None | Some(Value::Null) => None,
        Some(length) => {
            let length = length
                .as_i64()
                .or_else(|| length.as_str().and_then(|s| s.parse().ok()))
                .ok_or_else(|| bad_request("Invalid input for field/attribute length."))?;
            // Nova treats -1 as everything.
            usize::try_from(length).ok()
        }
    };
    let host = vm["status"]["host"].as_str().unwrap_or_default();
    if host.is_empty() || vm["status"]["vmState"] == "building" {
        return Err(conflict(format!(
            "Cannot 'get_console_output' instance {} while it is in vm_state {}",
            uid_of(vm),
            vm["status"]["vmState"].as_str().unwrap_or("building")
        )));
    }
    let namespace = vm["metadata"]["namespace"].as_str().unwrap_or_default();
    let name = vm["metadata"]["name"].as_str().unwrap_or_default();
    let output = ronghe_apiserver::http::console_output(
        &state.engine,
        &state.agents,
        namespace,
        name,
        lines,
    )
    .await
    .map_err(engine_fault)?;
    Ok(Json(json!({"output": output})).into_response())
}
