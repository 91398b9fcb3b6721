//! Running the pods bound to this agent's hosts: the agent watches pods, hands each new
//! one on its hosts to a [`PodDriver`] and reports what the driver says in the pod's
//! status; a pod being deleted is stopped, then removed for good.
//!
//! [`FakeDriver`] runs nothing: its containers are running and ready at once, for
//! simulated hosts. The runc driver comes with images.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

/// What runs a host's pods.
#[async_trait::async_trait]
pub trait PodDriver: Send + Sync + 'static {
    /// Starts a pod; returns its status (`phase`, `containerStatuses`, conditions ...).
    async fn start(&self, host: &str, pod: &Pod) -> anyhow::Result<Value>;
    /// Stops a pod, giving its containers `grace_seconds` to exit.
    async fn stop(&self, host: &str, pod: &Pod, grace_seconds: i64) -> anyhow::Result<()>;
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
    async fn start(&self, host: &str, pod: &Pod) -> anyhow::Result<Value> {
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
        Ok(json!({
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
        }))
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

    /// A simulated container echoes the command it was given on stdout and exits 0.
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
        Ok(0)
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

/// Runs the pods bound to `hosts` through `driver` until `stop` flips.
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
    // What this agent started, by pod uid, so a restart of the watch does not start twice.
    let mut started: HashSet<String> = HashSet::new();
    let mut stream = std::pin::pin!(watcher(pods.clone(), config));
    loop {
        let event = tokio::select! {
            event = stream.try_next() => event,
            _ = stop.changed() => return Ok(()),
        };
        let pod = match event {
            Ok(Some(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod))) => pod,
            Ok(Some(_)) => continue,
            Ok(None) => return Ok(()),
            Err(error) => {
                tracing::warn!(%error, "watching pods failed; retrying");
                continue;
            }
        };
        let Some(host) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
            continue;
        };
        if !hosts.contains(&host) {
            continue;
        }
        if let Err(error) = reconcile(&pods, &host, &pod, driver.as_ref(), &mut started).await {
            tracing::warn!(pod = ?pod.metadata.name, error = %format!("{error:#}"), "running a pod failed");
        }
    }
}

/// Starts a new pod, or stops and removes one being deleted.
async fn reconcile(
    pods: &Api<Pod>,
    host: &str,
    pod: &Pod,
    driver: &dyn PodDriver,
    started: &mut HashSet<String>,
) -> anyhow::Result<()> {
    let (Some(name), Some(namespace), Some(uid)) = (
        pod.metadata.name.as_deref(),
        pod.metadata.namespace.as_deref(),
        pod.metadata.uid.as_deref(),
    ) else {
        return Ok(());
    };
    let namespaced: Api<Pod> = Api::namespaced(pods.clone().into_client(), namespace);
    if pod.metadata.deletion_timestamp.is_some() {
        let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(0);
        driver.stop(host, pod, grace).await?;
        started.remove(uid);
        return crate::remove_stopped(&namespaced, name, uid).await;
    }
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if started.contains(uid) || matches!(phase, Some("Running" | "Succeeded" | "Failed")) {
        started.insert(uid.to_owned());
        return Ok(());
    }
    let status = driver.start(host, pod).await?;
    namespaced
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await?;
    started.insert(uid.to_owned());
    Ok(())
}
