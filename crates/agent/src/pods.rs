//! Running the pods bound to this agent's hosts: the agent watches pods and gives each
//! one on its hosts a task of its own that hands it to a [`PodDriver`], patches the pod's
//! status whenever the driver publishes a change, and once the pod is deleted (or gone)
//! stops it and removes it for good.
//!
//! [`FakeDriver`] runs nothing: its containers are running and ready at once, for
//! simulated hosts. The runc driver is `ronghe_containers::RuncDriver`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

/// The channel a driver publishes a pod's status on (`phase`, `containerStatuses`,
/// conditions ...), as a whole each time: the agent patches the pod with the latest value
/// whenever it changes and skips values the pod already shows. `Value::Null` means
/// nothing yet. Dropping the sender says the status will not change again.
pub type StatusSender = watch::Sender<Value>;

/// What runs a host's pods.
#[async_trait::async_trait]
pub trait PodDriver: Send + Sync + 'static {
    /// Starts a pod (or, after an agent restart, takes it up again) and returns promptly:
    /// the driver publishes the pod's status on `status` now and whenever it changes
    /// (containers start, exit, restart; probes flip readiness), until the pod is stopped.
    async fn start(&self, host: &str, pod: &Pod, status: StatusSender) -> anyhow::Result<()>;
    /// Stops a pod, giving its containers `grace_seconds` to exit, and removes everything
    /// the driver made for it. Also for a pod the driver does not know (say, one started
    /// before the agent restarted): whatever is left of it is cleaned up.
    async fn stop(&self, host: &str, pod: &Pod, grace_seconds: i64) -> anyhow::Result<()>;
    /// Called after every full list of the pods bound to the agent's hosts with the uids of
    /// those pods: the driver cleans up whatever it still holds of any other pod (left by
    /// an agent that stopped before it could stop them).
    async fn retain(&self, _uids: &HashSet<String>) -> anyhow::Result<()> {
        Ok(())
    }
    /// A container's log, as `kubectl logs` shows it (`GET .../pods/NAME/log`).
    async fn logs(
        &self,
        pod: &PodRef,
        container: &str,
        options: &LogOptions,
    ) -> anyhow::Result<BoxStream<'static, std::io::Result<Bytes>>>;
    /// Runs a command in a container (`kubectl exec`); returns its exit code.
    async fn exec(&self, pod: &PodRef, container: &str, exec: ExecRequest) -> anyhow::Result<i32>;
}

/// Which pod: the agent's endpoints look pods up by namespace and name, drivers keep them
/// by uid.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

/// The options of a log request (kubelet's `PodLogOptions`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Keep the stream open and send new lines as they are written.
    pub follow: bool,
    /// Only the last so many lines.
    pub tail_lines: Option<usize>,
    /// The log of the previous (terminated) instance of the container.
    pub previous: bool,
    /// Prefix each line with its RFC 3339 timestamp.
    pub timestamps: bool,
    /// Only lines newer than so many seconds.
    pub since_seconds: Option<i64>,
    /// Stop after so many bytes.
    pub limit_bytes: Option<usize>,
}

/// A command to run in a container, with its streams. A stream the client did not ask for
/// is `None`; the driver closes `stdout`/`stderr` (drops the senders) when the command ends.
#[derive(Debug)]
pub struct ExecRequest {
    pub command: Vec<String>,
    pub tty: bool,
    pub stdin: Option<mpsc::Receiver<Bytes>>,
    pub stdout: Option<mpsc::Sender<Bytes>>,
    pub stderr: Option<mpsc::Sender<Bytes>>,
    /// Terminal size changes (columns, rows), with `tty`.
    pub resize: Option<mpsc::Receiver<(u16, u16)>>,
}

/// A driver that runs nothing and reports every container running and ready.
#[derive(Clone, Copy, Debug, Default)]
pub struct FakeDriver;

#[async_trait::async_trait]
impl PodDriver for FakeDriver {
    async fn start(&self, host: &str, pod: &Pod, status: StatusSender) -> anyhow::Result<()> {
        // A pod this driver already reported running (before an agent restart) runs on:
        // its status stands as it is.
        if let Some(current) = pod
            .status
            .as_ref()
            .filter(|s| s.phase.as_deref() == Some("Running"))
        {
            status.send_replace(serde_json::to_value(current)?);
            return Ok(());
        }
        let now = now();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let statuses: Vec<Value> = pod
            .spec
            .iter()
            .flat_map(|spec| spec.containers.iter())
            .map(|container| {
                let image = container.image.clone().unwrap_or_default();
                json!({
                    "name": container.name,
                    "image": image,
                    "imageID": format!("fake://{image}"),
                    "containerID": format!("fake://{uid}/{}", container.name),
                    "ready": true,
                    "started": true,
                    "restartCount": 0,
                    "state": {"running": {"startedAt": now}},
                })
            })
            .collect();
        status.send_replace(json!({
            "phase": "Running",
            "hostIP": host_ip(host),
            "startTime": now,
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
                {"type": "Ready", "status": "True", "lastTransitionTime": now},
            ],
            "containerStatuses": statuses,
        }));
        Ok(())
    }

    async fn stop(&self, _host: &str, _pod: &Pod, _grace_seconds: i64) -> anyhow::Result<()> {
        Ok(())
    }

    /// A simulated container writes one line: `fake log of CONTAINER`.
    async fn logs(
        &self,
        _pod: &PodRef,
        container: &str,
        _options: &LogOptions,
    ) -> anyhow::Result<BoxStream<'static, std::io::Result<Bytes>>> {
        let line = Bytes::from(format!("fake log of {container}\n"));
        Ok(futures::stream::once(async move { Ok(line) }).boxed())
    }

    /// A simulated container echoes the command it was given on stdout and exits 0, except
    /// that `exit N` (first word `exit`, second a number) exits N, so tests can see exit
    /// codes travel.
    async fn exec(
        &self,
        _pod: &PodRef,
        _container: &str,
        exec: ExecRequest,
    ) -> anyhow::Result<i32> {
        if let Some(stdout) = exec.stdout {
            let line = format!("{}\n", exec.command.join(" "));
            // A client gone before the echo is no failure of the command.
            let _ = stdout.send(Bytes::from(line)).await;
        }
        match exec.command.as_slice() {
            [first, code, ..] if first == "exit" => Ok(code.parse().unwrap_or(0)),
            _ => Ok(0),
        }
    }
}

/// A simulated host's address (the driver knows no better).
fn host_ip(_host: &str) -> &'static str {
    "127.0.0.1"
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// How often a failed stop is tried before the pod is left to the next agent.
const STOP_ATTEMPTS: u32 = 5;
/// How often a failed status patch is tried before the value is dropped (a newer one is
/// still patched when it comes).
const PATCH_ATTEMPTS: u32 = 5;

/// What the loop tells a pod's task: the pod as last seen, or gone from the API (a forced
/// delete, or a delete missed while the watch was down).
#[derive(Clone, Debug)]
enum Seen {
    Present(Pod),
    Gone(Pod),
}

impl Seen {
    fn pod(&self) -> &Pod {
        match self {
            Seen::Present(pod) | Seen::Gone(pod) => pod,
        }
    }

    fn is_going(&self) -> bool {
        match self {
            Seen::Present(pod) => pod.metadata.deletion_timestamp.is_some(),
            Seen::Gone(_) => true,
        }
    }
}

/// Runs the pods bound to `hosts` through `driver` until `stop` flips. Each pod has a task
/// of its own (start, report status changes, stop and remove), so a slow start or a long
/// grace period holds up no other pod.
pub async fn run(
    client: kube::Client,
    hosts: HashSet<String>,
    driver: Arc<dyn PodDriver>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let pods: Api<Pod> = Api::all(client);
    let config = match hosts.iter().next() {
        Some(host) if hosts.len() == 1 => {
            watcher::Config::default().fields(&format!("spec.nodeName={host}"))
        }
        _ => watcher::Config::default(),
    };
    let context = Arc::new(PodContext {
        pods: pods.clone(),
        driver,
    });
    // The pods that have a task, by uid; the tasks say when they are done.
    let mut tasks: HashMap<String, watch::Sender<Seen>> = HashMap::new();
    let (done_sender, mut done) = mpsc::unbounded_channel::<String>();
    // The uids of this host's pods listed since the watch (re)started its list.
    let mut listing: Option<HashSet<String>> = None;
    let mut stream = std::pin::pin!(watcher(pods, config));
    loop {
        let event = tokio::select! {
            event = stream.try_next() => event,
            Some(uid) = done.recv() => {
                tasks.remove(&uid);
                continue;
            }
            _ = stop.changed() => return Ok(()),
        };
        let seen = match event {
            Ok(Some(watcher::Event::Init)) => {
                listing = Some(HashSet::new());
                continue;
            }
            Ok(Some(watcher::Event::InitApply(pod))) => {
                if let (Some(listed), Some(uid)) = (listing.as_mut(), pod.metadata.uid.as_ref())
                    && on_hosts(&pod, &hosts).is_some()
                {
                    listed.insert(uid.clone());
                }
                Seen::Present(pod)
            }
            Ok(Some(watcher::Event::InitDone)) => {
                if let Some(listed) = listing.take() {
                    reconcile_listed(&context, &tasks, listed);
                }
                continue;
            }
            Ok(Some(watcher::Event::Apply(pod))) => Seen::Present(pod),
            Ok(Some(watcher::Event::Delete(pod))) => Seen::Gone(pod),
            Ok(None) => return Ok(()),
            Err(error) => {
                tracing::warn!(%error, "watching pods failed; retrying");
                continue;
            }
        };
        let Some(host) = on_hosts(seen.pod(), &hosts) else {
            continue;
        };
        let Some(uid) = seen.pod().metadata.uid.clone() else {
            continue;
        };
        if let Some(task) = tasks.get(&uid) {
            task.send_replace(seen);
            continue;
        }
        let phase = seen.pod().status.as_ref().and_then(|s| s.phase.as_deref());
        if !seen.is_going() && matches!(phase, Some("Succeeded" | "Failed")) {
            // A finished pod has nothing to run until it is deleted.
            continue;
        }
        let (sender, receiver) = watch::channel(seen);
        tasks.insert(uid.clone(), sender);
        let (context, done_sender) = (context.clone(), done_sender.clone());
        tokio::spawn(async move {
            drive_pod(&context, &host, receiver).await;
            let _ = done_sender.send(uid);
        });
    }
}

/// The host a pod is bound to, if it is one of `hosts`.
fn on_hosts(pod: &Pod, hosts: &HashSet<String>) -> Option<String> {
    pod.spec
        .as_ref()
        .and_then(|spec| spec.node_name.clone())
        .filter(|host| hosts.contains(host))
}

/// After a full list: a pod with a task that the list no longer has was deleted while the
/// watch was down, so it is stopped; the driver cleans up any pod neither knows.
fn reconcile_listed(
    context: &Arc<PodContext>,
    tasks: &HashMap<String, watch::Sender<Seen>>,
    mut listed: HashSet<String>,
) {
    for (uid, task) in tasks {
        if !listed.contains(uid) {
            task.send_modify(|seen| *seen = Seen::Gone(seen.pod().clone()));
        }
    }
    listed.extend(tasks.keys().cloned());
    let context = context.clone();
    tokio::spawn(async move {
        if let Err(error) = context.driver.retain(&listed).await {
            tracing::warn!(error = %format!("{error:#}"), "cleaning up unknown pods failed");
        }
    });
}

/// What every pod's task shares.
struct PodContext {
    pods: Api<Pod>,
    driver: Arc<dyn PodDriver>,
}

/// One pod's life on this agent: start it (unless it is already going), report its status
/// changes, and once it is deleted stop it and remove it for good.
async fn drive_pod(context: &PodContext, host: &str, mut seen: watch::Receiver<Seen>) {
    let first = seen.borrow_and_update().clone();
    let pod = first.pod();
    let (Some(name), Some(namespace), Some(uid)) = (
        pod.metadata.name.clone(),
        pod.metadata.namespace.clone(),
        pod.metadata.uid.clone(),
    ) else {
        return;
    };
    let namespaced: Api<Pod> = Api::namespaced(context.pods.clone().into_client(), &namespace);
    let mut reporter = None;
    if !first.is_going() {
        let (status, statuses) = watch::channel(Value::Null);
        if let Err(error) = context.driver.start(host, pod, status).await {
            tracing::warn!(pod = %name, %namespace, error = %format!("{error:#}"), "starting a pod failed");
            return;
        }
        let shown = pod
            .status
            .as_ref()
            .and_then(|status| serde_json::to_value(status).ok())
            .unwrap_or(Value::Null);
        reporter = Some(tokio::spawn(report(
            namespaced.clone(),
            name.clone(),
            statuses,
            shown,
        )));
        while !seen.borrow_and_update().is_going() {
            if seen.changed().await.is_err() {
                // The agent is stopping: the pod runs on.
                return;
            }
        }
    }
    let last = seen.borrow().clone();
    let grace = match &last {
        Seen::Present(pod) => pod.metadata.deletion_grace_period_seconds.unwrap_or(0),
        Seen::Gone(_) => 0,
    };
    let mut stopped = false;
    for attempt in 0..STOP_ATTEMPTS {
        match context.driver.stop(host, last.pod(), grace).await {
            Ok(()) => {
                stopped = true;
                break;
            }
            Err(error) => {
                tracing::warn!(pod = %name, %namespace, attempt, error = %format!("{error:#}"), "stopping a pod failed");
                tokio::time::sleep(std::time::Duration::from_secs(1 << attempt)).await;
            }
        }
    }
    if let Some(reporter) = reporter {
        reporter.abort();
    }
    if !stopped {
        return;
    }
    if let Seen::Present(_) = last
        && let Err(error) = crate::remove_stopped(&namespaced, &name, &uid).await
    {
        tracing::warn!(pod = %name, %namespace, error = %format!("{error:#}"), "removing a stopped pod failed");
    }
}

/// Patches a pod's status with each value its driver publishes that differs from what the
/// pod shows, until the driver drops the sender.
async fn report(
    pods: Api<Pod>,
    name: String,
    mut statuses: watch::Receiver<Value>,
    mut shown: Value,
) {
    while statuses.changed().await.is_ok() {
        for attempt in 1..=PATCH_ATTEMPTS {
            let latest = statuses.borrow_and_update().clone();
            if !differs(&latest, &shown) {
                break;
            }
            let patch = Patch::Merge(json!({"status": latest}));
            match pods
                .patch_status(&name, &PatchParams::default(), &patch)
                .await
            {
                Ok(_) => {
                    shown = latest;
                    break;
                }
                Err(kube::Error::Api(status)) if status.code == 404 => return,
                Err(error) => {
                    tracing::warn!(pod = %name, attempt, %error, "reporting a pod's status failed");
                    tokio::time::sleep(std::time::Duration::from_secs(u64::from(attempt))).await;
                }
            }
        }
    }
}

/// Whether patching `shown` with `latest` would change anything.
fn differs(latest: &Value, shown: &Value) -> bool {
    match latest {
        Value::Object(fields) => fields
            .iter()
            .any(|(key, value)| shown.get(key).unwrap_or(&Value::Null) != value),
        Value::Null => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_differs_only_in_what_it_sets() {
        let shown = json!({"phase": "Running", "hostIP": "10.0.0.1"});
        assert!(!differs(&json!({"phase": "Running"}), &shown));
        assert!(differs(&json!({"phase": "Failed"}), &shown));
        assert!(!differs(&json!({"podIP": null}), &shown));
        assert!(differs(&json!({"podIP": "10.1.0.1"}), &shown));
        assert!(!differs(&Value::Null, &shown));
    }

    #[tokio::test]
    async fn the_fake_driver_reports_a_new_pod_running_and_a_running_pod_as_it_is() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "u1"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        }))
        .expect("a pod");
        let (sender, receiver) = watch::channel(Value::Null);
        FakeDriver.start("host", &pod, sender).await.expect("start");
        let status = receiver.borrow().clone();
        assert_eq!(status["phase"], "Running");
        assert_eq!(status["containerStatuses"][0]["ready"], true);

        let mut running = pod.clone();
        running.status = Some(serde_json::from_value(status.clone()).expect("a status"));
        let (sender, receiver) = watch::channel(Value::Null);
        FakeDriver
            .start("host", &running, sender)
            .await
            .expect("start");
        let again = receiver.borrow().clone();
        assert!(!differs(
            &again,
            &serde_json::to_value(running.status).expect("json")
        ));
    }
}
