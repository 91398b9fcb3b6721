//! The runc driver against the real runc, with a busybox layer written by
//! `ronghe_images::build::busybox::write_rootfs`: exit codes and phases, restarts and
//! back-off, logs (current and previous), the spec (env, args, workingDir, user), cgroup
//! limits, exec (pipes and a tty), probes (exec, httpGet, tcpSocket), graceful stop,
//! images that cannot be had, hostNetwork, and recovery after the driver is lost. After
//! every test nothing of it is left: no runc containers, mounts, cgroups or network
//! namespaces. Needs root and runc; skips loudly without them.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use futures::TryStreamExt;
use k8s_openapi::api::core::v1::Pod;
use ronghe_agent::{ExecRequest, LogOptions, PodDriver, PodRef};
use ronghe_containers::{RuncConfig, RuncDriver, StaticImages};
use ronghe_images::{ContainerImage, ImageConfig};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

const RUNC: &str = "/usr/sbin/runc";
const HOST_IP: &str = "192.0.2.10";

/// Why these tests cannot run here, if they cannot.
fn missing_prerequisite() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .find(|line| line.starts_with("Uid:"))
        .is_some_and(|line| line.split_whitespace().nth(2) == Some("0"));
    if !root {
        return Some("not running as root".into());
    }
    if !Path::new(RUNC).exists() {
        return Some(format!("{RUNC} is not installed"));
    }
    if ronghe_images::build::busybox::find_static_busybox().is_err() {
        return Some("busybox-static is not installed".into());
    }
    None
}

macro_rules! require_prerequisites {
    ($test:expr) => {
        if let Some(why) = missing_prerequisite() {
            eprintln!("SKIPPED {}: {why}", $test);
            return Ok(());
        }
    };
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A driver of its own (directory, cgroup parent, namespace prefix), and the cleanup of
/// all of it, checked by [`Harness::assert_clean`] and forced on drop.
struct Harness {
    dir: tempfile::TempDir,
    unique: String,
    driver: Option<RuncDriver>,
    images: Arc<StaticImages>,
}

impl Harness {
    async fn new() -> anyhow::Result<Harness> {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let dir = tempfile::Builder::new().prefix("ronghe-runc-").tempdir()?;
        let layer = dir.path().join("layers/busybox");
        ronghe_images::build::busybox::write_rootfs(&layer)?;
        let image = ContainerImage {
            digest: "sha256:0123456789abcdef".into(),
            layers: vec![layer],
            config: ImageConfig {
                cmd: vec!["sh".into()],
                env: vec!["PATH=/usr/sbin:/usr/bin:/sbin:/bin".into()],
                ..ImageConfig::default()
            },
        };
        let images = Arc::new(StaticImages::new().with("busybox", image));
        let unique = format!(
            "rgt{}x{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut harness = Harness {
            dir,
            unique,
            driver: None,
            images,
        };
        harness.driver = Some(harness.new_driver().await?);
        Ok(harness)
    }

    fn config(&self) -> RuncConfig {
        let mut config = RuncConfig::new(self.dir.path().join("root"), HOST_IP);
        config.runc = PathBuf::from(RUNC);
        config.cgroup_parent = self.unique.clone();
        config.netns_prefix = format!("{}-", self.unique);
        config.backoff_initial = Duration::from_secs(1);
        config.backoff_max = Duration::from_secs(4);
        config
    }

    async fn new_driver(&self) -> anyhow::Result<RuncDriver> {
        Ok(RuncDriver::new(self.config(), self.images.clone()).await?)
    }

    fn driver(&self) -> &RuncDriver {
        self.driver.as_ref().expect("the harness has a driver")
    }

    /// A pod of this harness with a fresh uid.
    fn pod(&self, name: &str, spec: Value) -> anyhow::Result<Pod> {
        let uid = format!(
            "00000000-0000-4000-8000-{:012x}",
            u64::from(std::process::id()) << 16 | u64::from(NEXT.fetch_add(1, Ordering::Relaxed))
        );
        Ok(serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "uid": uid},
            "spec": spec,
        }))?)
    }

    async fn start(&self, pod: &Pod) -> anyhow::Result<watch::Receiver<Value>> {
        let (sender, receiver) = watch::channel(Value::Null);
        self.driver().start("host", pod, sender).await?;
        Ok(receiver)
    }

    async fn stop(&self, pod: &Pod, grace: i64) -> anyhow::Result<()> {
        self.driver().stop("host", pod, grace).await
    }

    /// Everything this harness's driver made is gone.
    fn assert_clean(&self) -> anyhow::Result<()> {
        let listed = std::process::Command::new(RUNC)
            .arg("--root")
            .arg(self.dir.path().join("root/runc"))
            .args(["list", "--quiet"])
            .output()?;
        let ids = String::from_utf8_lossy(&listed.stdout).trim().to_owned();
        ensure!(ids.is_empty(), "runc containers left: {ids}");
        let mounts = std::fs::read_to_string("/proc/self/mountinfo")?;
        let root = self.dir.path().display().to_string();
        let left: Vec<&str> = mounts.lines().filter(|l| l.contains(&root)).collect();
        ensure!(left.is_empty(), "mounts left: {left:?}");
        for hierarchy in cgroup_hierarchies() {
            let parent = hierarchy.join(&self.unique);
            if let Ok(entries) = std::fs::read_dir(&parent) {
                let pods: Vec<String> = entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path().display().to_string())
                    .collect();
                ensure!(pods.is_empty(), "cgroups left: {pods:?}");
            }
        }
        let netns = netns_with_prefix(&format!("{}-", self.unique));
        ensure!(netns.is_empty(), "network namespaces left: {netns:?}");
        let pods_dir = self.dir.path().join("root/pods");
        let dirs: Vec<_> = std::fs::read_dir(&pods_dir)
            .map(|entries| entries.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        ensure!(dirs.is_empty(), "pod directories left: {dirs:?}");
        Ok(())
    }
}

impl Drop for Harness {
    /// Whatever a failed test left: containers killed, mounts, namespaces and cgroups
    /// removed (the temporary directory goes after this).
    fn drop(&mut self) {
        // The driver's tasks end with it, so they restart nothing while this cleans up.
        drop(self.driver.take());
        let runc_root = self.dir.path().join("root/runc");
        let run = |args: &[&str]| {
            std::process::Command::new(RUNC)
                .arg("--root")
                .arg(&runc_root)
                .args(args)
                .output()
        };
        if let Ok(listed) = run(&["list", "--quiet"]) {
            for id in String::from_utf8_lossy(&listed.stdout).split_whitespace() {
                let _ = run(&["kill", id, "KILL"]);
                let _ = run(&["delete", "--force", id]);
            }
        }
        let root = self.dir.path().display().to_string();
        let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.split(' ').nth(4).map(str::to_owned))
            .filter(|mount| mount.starts_with(&root))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for mount in mounts {
            let _ = std::process::Command::new("umount")
                .args(["-l", &mount])
                .status();
        }
        for name in netns_with_prefix(&format!("{}-", self.unique)) {
            let _ = std::process::Command::new("ip")
                .args(["netns", "delete", &name])
                .status();
        }
        for hierarchy in cgroup_hierarchies() {
            let parent = hierarchy.join(&self.unique);
            let mut dirs = Vec::new();
            collect_dirs(&parent, &mut dirs);
            dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
            for dir in dirs {
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
}

fn collect_dirs(dir: &Path, into: &mut Vec<PathBuf>) {
    if !dir.is_dir() {
        return;
    }
    into.push(dir.to_path_buf());
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            collect_dirs(&entry.path(), into);
        }
    }
}

fn cgroup_hierarchies() -> Vec<PathBuf> {
    ronghe_containers::host::cgroup_hierarchies()
}

fn netns_with_prefix(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits (up to `seconds`) for a published status that `ready` accepts.
async fn wait_status(
    statuses: &mut watch::Receiver<Value>,
    seconds: u64,
    what: &str,
    ready: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    loop {
        let status = statuses.borrow_and_update().clone();
        if ready(&status) {
            return Ok(status);
        }
        match tokio::time::timeout_at(deadline, statuses.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => bail!("the driver stopped publishing before {what}: {status:#}"),
            Err(_) => bail!("timed out waiting for {what}; last status: {status:#}"),
        }
    }
}

fn container_status(status: &Value) -> &Value {
    &status["containerStatuses"][0]
}

fn condition(status: &Value, kind: &str) -> Option<String> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
        .and_then(|c| c["status"].as_str().map(str::to_owned))
}

fn reference(pod: &Pod) -> PodRef {
    PodRef {
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        name: pod.metadata.name.clone().unwrap_or_default(),
        uid: pod.metadata.uid.clone().unwrap_or_default(),
    }
}

async fn logs(harness: &Harness, pod: &Pod, options: LogOptions) -> anyhow::Result<String> {
    let stream = harness
        .driver()
        .logs(&reference(pod), "main", &options)
        .await?;
    let chunks: Vec<Bytes> = stream.try_collect().await?;
    Ok(String::from_utf8(chunks.concat())?)
}

/// Output of an exec: (exit code, stdout, stderr).
async fn exec(
    harness: &Harness,
    pod: &Pod,
    command: &[&str],
    stdin: Option<&str>,
    tty: bool,
) -> anyhow::Result<(i32, String, String)> {
    let (stdout_sender, stdout) = mpsc::channel(16);
    let (stderr_sender, stderr) = mpsc::channel(16);
    let input = stdin.map(|text| {
        let (sender, receiver) = mpsc::channel(1);
        let text = Bytes::from(text.to_owned());
        tokio::spawn(async move {
            let _ = sender.send(text).await;
        });
        receiver
    });
    let request = ExecRequest {
        command: command.iter().map(|s| (*s).to_owned()).collect(),
        tty,
        stdin: input,
        stdout: Some(stdout_sender),
        stderr: Some(stderr_sender),
        resize: None,
    };
    let collect = |mut receiver: mpsc::Receiver<Bytes>| async move {
        let mut all = Vec::new();
        while let Some(chunk) = receiver.recv().await {
            all.extend_from_slice(&chunk);
        }
        String::from_utf8_lossy(&all).into_owned()
    };
    let target = reference(pod);
    let (code, out, err) = tokio::join!(
        tokio::time::timeout(
            Duration::from_secs(30),
            harness.driver().exec(&target, "main", request)
        ),
        collect(stdout),
        collect(stderr),
    );
    Ok((code.context("exec timed out")??, out, err))
}

fn busybox(command: &str, policy: &str) -> Value {
    json!({
        "nodeName": "host",
        "restartPolicy": policy,
        "terminationGracePeriodSeconds": 2,
        "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", command]}],
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_that_echoes_and_exits_zero_succeeds_with_its_log() -> anyhow::Result<()> {
    require_prerequisites!("a_pod_that_echoes_and_exits_zero_succeeds_with_its_log");
    let harness = Harness::new().await?;
    let pod = harness.pod("echo", busybox("echo hello from busybox", "Never"))?;
    let started = std::time::Instant::now();
    let mut statuses = harness.start(&pod).await?;
    let first = statuses.borrow().clone();
    ensure!(first["phase"] == "Pending", "{first:#}");
    ensure!(container_status(&first)["state"]["waiting"]["reason"] == "ContainerCreating");
    let running_or_done = wait_status(&mut statuses, 30, "running", |s| {
        container_status(s)["state"].get("running").is_some()
            || container_status(s)["state"].get("terminated").is_some()
    })
    .await?;
    eprintln!(
        "one busybox pod: create to {} in {:?}",
        running_or_done["phase"],
        started.elapsed()
    );
    let status = wait_status(&mut statuses, 30, "Succeeded", |s| {
        s["phase"] == "Succeeded"
    })
    .await?;
    let terminated = &container_status(&status)["state"]["terminated"];
    ensure!(terminated["exitCode"] == 0, "{status:#}");
    ensure!(terminated["reason"] == "Completed", "{status:#}");
    ensure!(container_status(&status)["imageID"] == "sha256:0123456789abcdef");
    ensure!(
        container_status(&status)["containerID"]
            .as_str()
            .is_some_and(|id| id.starts_with("runc://")),
        "{status:#}"
    );
    ensure!(status["hostIP"] == HOST_IP);
    ensure!(condition(&status, "Ready").as_deref() == Some("False"));
    ensure!(condition(&status, "PodScheduled").as_deref() == Some("True"));
    ensure!(
        logs(&harness, &pod, LogOptions::default()).await? == "hello from busybox\n",
        "log"
    );
    let stamped = logs(
        &harness,
        &pod,
        LogOptions {
            timestamps: true,
            ..LogOptions::default()
        },
    )
    .await?;
    ensure!(
        stamped.ends_with("Z hello from busybox\n") && stamped.starts_with("20"),
        "{stamped:?}"
    );
    // Following a finished instance ends at once.
    let followed = logs(
        &harness,
        &pod,
        LogOptions {
            follow: true,
            ..LogOptions::default()
        },
    )
    .await?;
    ensure!(followed == "hello from busybox\n");
    harness.stop(&pod, 5).await?;
    harness.assert_clean()
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_three_with_restart_policy_never_fails() -> anyhow::Result<()> {
    require_prerequisites!("exit_three_with_restart_policy_never_fails");
    let harness = Harness::new().await?;
    let pod = harness.pod("three", busybox("echo oops >&2; exit 3", "Never"))?;
    let mut statuses = harness.start(&pod).await?;
    let status = wait_status(&mut statuses, 30, "Failed", |s| s["phase"] == "Failed").await?;
    let terminated = &container_status(&status)["state"]["terminated"];
    ensure!(terminated["exitCode"] == 3, "{status:#}");
    ensure!(terminated["reason"] == "Error", "{status:#}");
    ensure!(container_status(&status)["restartCount"] == 0);
    let raw = std::fs::read_to_string(
        harness
            .driver()
            .pod_dir(pod.metadata.uid.as_deref().unwrap_or_default())
            .join("logs/main/0.log"),
    )?;
    ensure!(raw.contains(" stderr F oops"), "{raw:?}");
    harness.stop(&pod, 5).await?;
    harness.assert_clean()
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_policy_always_restarts_with_back_off_and_keeps_the_previous_log()
-> anyhow::Result<()> {
    require_prerequisites!(
        "restart_policy_always_restarts_with_back_off_and_keeps_the_previous_log"
    );
    let harness = Harness::new().await?;
    let pod = harness.pod(
        "crash",
        busybox("echo run at $(date +%s%N); exit 1", "Always"),
    )?;
    let mut statuses = harness.start(&pod).await?;
    let backing_off = wait_status(&mut statuses, 30, "CrashLoopBackOff", |s| {
        container_status(s)["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    })
    .await?;
    ensure!(backing_off["phase"] == "Running", "{backing_off:#}");
    ensure!(
        container_status(&backing_off)["lastState"]["terminated"]["exitCode"] == 1,
        "{backing_off:#}"
    );
    let status = wait_status(&mut statuses, 30, "restartCount 3", |s| {
        container_status(s)["restartCount"]
            .as_i64()
            .is_some_and(|n| n >= 3)
    })
    .await?;
    ensure!(status["phase"] == "Running", "{status:#}");
    // Backing off again, between instances: the logs on disk are settled.
    wait_status(&mut statuses, 30, "CrashLoopBackOff again", |s| {
        container_status(s)["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    })
    .await?;
    let previous = logs(
        &harness,
        &pod,
        LogOptions {
            previous: true,
            ..LogOptions::default()
        },
    )
    .await?;
    ensure!(previous.starts_with("run at "), "{previous:?}");
    // Only the latest instance's log and the one before are kept.
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let kept = std::fs::read_dir(harness.driver().pod_dir(uid).join("logs/main"))?.count();
    ensure!(kept == 2, "{kept} logs kept");
    harness.stop(&pod, 5).await?;
    harness.assert_clean()
}

#[tokio::test(flavor = "multi_thread")]
async fn env_args_working_dir_and_user_are_honoured() -> anyhow::Result<()> {
    require_prerequisites!("env_args_working_dir_and_user_are_honoured");
    let harness = Harness::new().await?;
    let pod = harness.pod(
        "spec",
        json!({
            "nodeName": "host",
            "restartPolicy": "Never",
            "containers": [{
                "name": "main",
                "image": "busybox",
                "command": ["sh", "-c"],
                "args": ["echo \"$GREETING $(NAME) $(pwd) $(hostname) $(id -u)\"; cat /etc/hostname"],
                "env": [{"name": "GREETING", "value": "hi"}, {"name": "NAME", "value": "$(GREETING)-there"}],
                "workingDir": "/tmp",
                "securityContext": {"runAsUser": 65534},
            }],
        }),
    )?;
    let mut statuses = harness.start(&pod).await?;
    let status = wait_status(&mut statuses, 30, "finished", |s| {
        s["phase"] == "Succeeded" || s["phase"] == "Failed"
    })
    .await?;
    let log = logs(&harness, &pod, LogOptions::default()).await?;
    ensure!(status["phase"] == "Succeeded", "{status:#} {log}");
    ensure!(log == "hi hi-there /tmp spec 65534\nspec\n", "{log:?}");
    harness.stop(&pod, 5).await?;
    harness.assert_clean()
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_show_up_in_the_containers_cgroup_and_exec_works() -> anyhow::Result<()> {
    require_prerequisites!("limits_show_up_in_the_containers_cgroup_and_exec_works");
    let harness = Harness::new().await?;
    let pod = harness.pod(
        "limited",
        json!({
            "nodeName": "host",
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "main",
                "image": "busybox",
                "command": ["sleep", "1000"],
                "resources": {"limits": {"memory": "64Mi", "cpu": "500m"}, "requests": {"cpu": "250m"}},
            }],
        }),
    )?;
    let mut statuses = harness.start(&pod).await?;
    let status = wait_status(&mut statuses, 30, "Running and Ready", |s| {
        s["phase"] == "Running" && condition(s, "Ready").as_deref() == Some("True")
    })
    .await?;
    ensure!(container_status(&status)["started"] == true);
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let id = harness
        .driver()
        .running_container_id(&uid, "main")
        .context("a running instance")?;
    let cgroup = format!("{}/pod{uid}/{id}", harness.unique);
    let read = |controller: &str, file: &str| {
        std::fs::read_to_string(
            Path::new("/sys/fs/cgroup")
                .join(controller)
                .join(&cgroup)
                .join(file),
        )
        .map(|s| s.trim().to_owned())
    };
    ensure!(read("memory", "memory.limit_in_bytes")? == "67108864");
    ensure!(read("cpu", "cpu.cfs_quota_us")? == "50000");
    ensure!(read("cpu", "cpu.shares")? == "256");
    ensure!(read("pids", "pids.max")? == "4096");

    let (code, out, err) = exec(
        &harness,
        &pod,
        &[
            "sh",
            "-c",
            "echo out; echo err >&2; cat /sys/fs/cgroup/memory/memory.limit_in_bytes; exit 7",
        ],
        None,
        false,
    )
    .await?;
    ensure!(code == 7, "exit code {code}");
    ensure!(out == "out\n67108864\n", "{out:?}");
    ensure!(err == "err\n", "{err:?}");
    let (code, out, _) = exec(&harness, &pod, &["cat"], Some("from stdin"), false).await?;
    ensure!(code == 0 && out == "from stdin", "{code} {out:?}");
    let (code, out, _) = exec(&harness, &pod, &["tty"], None, true).await?;
    ensure!(code == 0 && out.contains("/dev/pts/"), "{code} {out:?}");
    // The pod has its own network namespace with loopback only.
    let (_, out, _) = exec(&harness, &pod, &["ls", "/sys/class/net"], None, false).await?;
    ensure!(
        out.split_whitespace().collect::<Vec<_>>() == ["lo"],
        "{out:?}"
    );

    harness.stop(&pod, 1).await?;
    harness.assert_clean()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_liveness_probe_restarts_the_container() -> anyhow::Result<()> {
    require_prerequisites!("a_failing_liveness_probe_restarts_the_container");
    let harness = Harness::new().await?;
    let pod = harness.pod(
        "liveness",
        json!({
            "nodeName": "host",
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "main",
                "image": "busybox",
                "command": ["sh", "-c", "touch /tmp/healthy; sleep 2; rm /tmp/healthy; sleep 1000"],
                "livenessProbe": {
                    "exec": {"command": ["test", "-f", "/tmp/healthy"]},
                    "periodSeconds": 1,
                    "failureThreshold": 2,
                },
            }],
        }),
    )?;
    let mut statuses = harness.start(&pod).await?;
    let status = wait_status(&mut statuses, 60, "a restart", |s| {
        container_status(s)["restartCount"]
            .as_i64()
            .is_some_and(|n| n >= 1)
    })
    .await?;
    ensure!(
        container_status(&status)["lastState"]["terminated"]
            .get("exitCode")
            .is_some(),
        "{status:#}"
    );
    harness.stop(&pod, 1).await?;
    harness.assert_clean()
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_follows_an_http_probe_after_a_tcp_startup_probe() -> anyhow::Result<()> {
    require_prerequisites!("readiness_follows_an_http_probe_after_a_tcp_startup_probe");
    let harness = Harness::new().await?;
    let pod = harness.pod(
        "ready",
        json!({
            "nodeName": "host",
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "main",
                "image": "busybox",
                "command": ["sleep", "1000"],
                "ports": [{"name": "http", "containerPort": 8080}],
                "startupProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1, "failureThreshold": 60},
                "readinessProbe": {"httpGet": {"path": "/index.html", "port": "http"}, "periodSeconds": 1, "failureThreshold": 1},
            }],
        }),
    )?;
    let mut statuses = harness.start(&pod).await?;
    let status = wait_status(&mut statuses, 30, "running", |s| {
        container_status(s)["state"].get("running").is_some()
    })
    .await?;
    ensure!(container_status(&status)["started"] == false, "{status:#}");
    ensure!(condition(&status, "Ready").as_deref() == Some("False"));
    let (code, _, err) = exec(
        &harness,
        &pod,
        &[
            "sh",
            "-c",
            "mkdir -p /www && echo ok > /www/index.html && httpd -p 8080 -h /www",
        ],
        None,
        false,
    )
    .await?;
    ensure!(code == 0, "httpd: {err}");
    let status = wait_status(&mut statuses, 30, "Ready", |s| {
        condition(s, "Ready").as_deref() == Some("True")
    })
    .await?;
    ensure!(container_status(&status)["started"] == true);
    let (code, _, err) = exec(&harness, &pod, &["rm", "/www/index.html"], None, false).await?;
    ensure!(code == 0, "rm: {err}");
    wait_status(&mut statuses, 30, "not Ready", |s| {
        condition(s, "Ready").as_deref() == Some("False")
    })
    .await?;
    harness.stop(&pod, 1).await?;
    harness.assert_clean()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_graceful_stop_gives_a_term_trap_its_time() -> anyhow::Result<()> {
    require_prerequisites!("a_graceful_stop_gives_a_term_trap_its_time");
    let harness = Harness::new().await?;
    let pod = harness.pod(
        "graceful",
        busybox(
            "trap 'echo got TERM; exit 0' TERM; echo ready; sleep 1000 & wait",
            "Always",
        ),
    )?;
    let mut statuses = harness.start(&pod).await?;
    wait_status(&mut statuses, 30, "running", |s| {
        container_status(s)["state"].get("running").is_some()
    })
    .await?;
    // Following the running instance's log sees its first line.
    let mut follow = harness
        .driver()
        .logs(
            &reference(&pod),
            "main",
            &LogOptions {
                follow: true,
                ..LogOptions::default()
            },
        )
        .await?;
    let first = tokio::time::timeout(Duration::from_secs(10), follow.try_next())
        .await
        .context("following the log")??;
    ensure!(first.as_deref() == Some(&b"ready\n"[..]), "{first:?}");
    harness.stop(&pod, 20).await?;
    let last = statuses.borrow().clone();
    let terminated = &container_status(&last)["state"]["terminated"];
    ensure!(terminated["exitCode"] == 0, "the trap ran: {last:#}");
    // The followed log ends with the instance.
    let rest: Vec<Bytes> = tokio::time::timeout(Duration::from_secs(10), follow.try_collect())
        .await
        .context("the followed log ends")??;
    ensure!(rest.concat() == b"got TERM\n", "{rest:?}");
    harness.assert_clean()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_that_cannot_be_had_shows_err_image_pull() -> anyhow::Result<()> {
    require_prerequisites!("an_image_that_cannot_be_had_shows_err_image_pull");
    let harness = Harness::new().await?;
    let mut spec = busybox("true", "Always");
    spec["containers"][0]["image"] = json!("no-such-image");
    let pod = harness.pod("missing", spec)?;
    let mut statuses = harness.start(&pod).await?;
    let status = wait_status(&mut statuses, 30, "ErrImagePull", |s| {
        container_status(s)["state"]["waiting"]["reason"] == "ErrImagePull"
    })
    .await?;
    ensure!(status["phase"] == "Pending", "{status:#}");
    wait_status(&mut statuses, 30, "ImagePullBackOff", |s| {
        container_status(s)["state"]["waiting"]["reason"] == "ImagePullBackOff"
    })
    .await?;
    let error = harness
        .driver()
        .logs(&reference(&pod), "main", &LogOptions::default())
        .await
        .err()
        .context("no log yet")?;
    ensure!(
        error
            .to_string()
            .contains("is waiting to start: ImagePullBackOff")
            || error
                .to_string()
                .contains("is waiting to start: ErrImagePull"),
        "{error}"
    );
    harness.stop(&pod, 0).await?;
    harness.assert_clean()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_network_pod_uses_the_hosts_network_and_address() -> anyhow::Result<()> {
    require_prerequisites!("a_host_network_pod_uses_the_hosts_network_and_address");
    let harness = Harness::new().await?;
    let mut spec = busybox("ls /sys/class/net", "Never");
    spec["hostNetwork"] = json!(true);
    let pod = harness.pod("hostnet", spec)?;
    let mut statuses = harness.start(&pod).await?;
    let status = wait_status(&mut statuses, 30, "Succeeded", |s| {
        s["phase"] == "Succeeded"
    })
    .await?;
    ensure!(status["podIP"] == HOST_IP, "{status:#}");
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    ensure!(
        netns_with_prefix(&format!("{}-", harness.unique)).is_empty(),
        "no namespace of its own"
    );
    let host_links = std::fs::read_dir("/sys/class/net")?.count();
    let log = logs(&harness, &pod, LogOptions::default()).await?;
    ensure!(log.lines().count() == host_links, "{log:?} {uid}");
    harness.stop(&pod, 0).await?;
    harness.assert_clean()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_driver_cleans_up_what_a_lost_one_left() -> anyhow::Result<()> {
    require_prerequisites!("a_new_driver_cleans_up_what_a_lost_one_left");
    let mut harness = Harness::new().await?;
    let pod = harness.pod("orphan", busybox("echo started; sleep 1000", "Always"))?;
    let mut statuses = harness.start(&pod).await?;
    wait_status(&mut statuses, 30, "running", |s| {
        container_status(s)["state"].get("running").is_some()
    })
    .await?;
    // The agent dies: its driver's tasks go, runc and the container stay.
    drop(harness.driver.take());
    harness.driver = Some(harness.new_driver().await?);
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    // The pod's log survives for the restarted agent...
    let log = logs(&harness, &pod, LogOptions::default()).await?;
    ensure!(log == "started\n", "{log:?}");
    // ...until the agent lists its pods and this one is not among them.
    harness.driver().retain(&HashSet::new()).await?;
    ensure!(!harness.driver().pod_dir(&uid).exists());
    harness.assert_clean()
}
