//! `ronghe bench start`: how fast real workloads start on this machine. Starts a real
//! `ronghe server` with its embedded agent (runc and QEMU), imports the bootstrap images,
//! then
//! - creates N busybox pods (`sleep`) from several clients and measures each one's time
//!   from create to Running (p50, p99, max), then deletes them and times their removal;
//! - boots M `test-guest` VMs one after another and measures each one's time from create to
//!   ACTIVE and to `ronghe-guest-ready` on its serial console.
//!
//! Needs root, runc, QEMU, busybox-static and Debian's kernel (`scripts/up` installs them).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, PostParams, WatchEvent, WatchParams,
};
use kube::discovery::ApiResource;
use ronghe_testkit::ServerProcess;
use serde_json::json;

#[derive(clap::Args, Debug)]
pub struct StartBenchArgs {
    /// Busybox pods to start.
    #[arg(long, default_value_t = 100)]
    pods: usize,
    /// Concurrent clients creating them.
    #[arg(long, default_value_t = 10)]
    clients: usize,
    /// test-guest VMs to boot, one after another.
    #[arg(long, default_value_t = 1)]
    vms: usize,
}

pub async fn run(args: StartBenchArgs) -> anyhow::Result<()> {
    let binary = std::env::current_exe().context("locating the ronghe binary")?;
    let server = ServerProcess::start_with_agent(&binary, &[]).await?;
    let bootstrap = std::process::Command::new(&binary)
        .args(["images", "bootstrap", "--data-dir"])
        .arg(server.data_dir())
        .status()
        .context("running ronghe images bootstrap")?;
    if !bootstrap.success() {
        bail!("ronghe images bootstrap failed");
    }
    let client = server.client().await?;
    if args.pods > 0
        && let Err(error) = pods(&client, &args).await
    {
        // The agent stops containers only for deleted pods: delete them before the server
        // goes, so nothing is left running on this machine.
        let api: Api<Pod> = Api::namespaced(client.clone(), "default");
        let _ = api
            .delete_collection(&DeleteParams::default(), &ListParams::default())
            .await;
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline
            && !api
                .list_metadata(&ListParams::default())
                .await?
                .items
                .is_empty()
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        return Err(error);
    }
    if args.vms > 0 {
        vms(&client, &server, args.vms).await?;
    }
    Ok(())
}

/// The value at quantile `q` of sorted durations.
pub(super) fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted.get(index).copied().unwrap_or_default()
}

pub(super) fn millis(duration: Duration) -> String {
    format!("{:.0} ms", duration.as_secs_f64() * 1000.0)
}

async fn pods(client: &kube::Client, args: &StartBenchArgs) -> anyhow::Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let from = pods
        .list_metadata(&ListParams::default())
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    // Running times, seen by one watch, by pod name.
    let expected = args.pods;
    let running = tokio::spawn({
        let pods = pods.clone();
        async move {
            let mut seen: HashMap<String, Instant> = HashMap::new();
            let mut stream = pods
                .watch(&WatchParams::default().timeout(290), &from)
                .await?
                .boxed();
            while let Some(event) = stream.try_next().await? {
                if let WatchEvent::Modified(pod) | WatchEvent::Added(pod) = event {
                    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
                    if phase == Some("Running")
                        && let Some(name) = pod.metadata.name
                    {
                        seen.entry(name).or_insert_with(Instant::now);
                        if seen.len() == expected {
                            break;
                        }
                    }
                }
            }
            anyhow::Ok(seen)
        }
    });
    let started = Instant::now();
    let created: HashMap<String, Instant> = futures::stream::iter(0..args.pods)
        .map(|index| {
            let pods = pods.clone();
            async move {
                let name = format!("start-{index:04}");
                let pod: Pod = serde_json::from_value(json!({
                    "metadata": {"name": name},
                    "spec": {
                        "terminationGracePeriodSeconds": 1,
                        "containers": [{"name": "main", "image": "busybox",
                                        "command": ["sleep", "3600"]}],
                    },
                }))?;
                let at = Instant::now();
                pods.create(&PostParams::default(), &pod).await?;
                anyhow::Ok((name, at))
            }
        })
        .buffer_unordered(args.clients.max(1))
        .try_collect()
        .await?;
    let seen = tokio::time::timeout(Duration::from_secs(300), running)
        .await
        .context("not every pod was Running within 5 minutes")???;
    let all_running = started.elapsed();
    let mut latencies: Vec<Duration> = created
        .iter()
        .filter_map(|(name, at)| seen.get(name).map(|ran| ran.duration_since(*at)))
        .collect();
    latencies.sort();
    println!(
        "{} busybox pods Running {:.2} s after the first create ({} clients)",
        latencies.len(),
        all_running.as_secs_f64(),
        args.clients
    );
    println!(
        "pod start (create → Running): p50 {}, p99 {}, max {}",
        millis(quantile(&latencies, 0.5)),
        millis(quantile(&latencies, 0.99)),
        millis(quantile(&latencies, 1.0)),
    );
    let deleting = Instant::now();
    pods.delete_collection(&DeleteParams::default(), &ListParams::default())
        .await?;
    loop {
        if pods
            .list_metadata(&ListParams::default())
            .await?
            .items
            .is_empty()
        {
            break;
        }
        if deleting.elapsed() > Duration::from_secs(300) {
            bail!("pods still there 5 minutes after deleting them");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "{} pods deleted and gone from the host in {:.2} s",
        args.pods,
        deleting.elapsed().as_secs_f64()
    );
    Ok(())
}

fn compute(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: "compute.ronghe.io".into(),
        version: "v1".into(),
        api_version: "compute.ronghe.io/v1".into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

async fn vms(client: &kube::Client, server: &ServerProcess, count: usize) -> anyhow::Result<()> {
    let flavors: Api<DynamicObject> = Api::all_with(client.clone(), &compute("Flavor", "flavors"));
    let flavor: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "compute.ronghe.io/v1", "kind": "Flavor",
        "metadata": {"name": "bench.guest"}, "spec": {"vcpus": 1, "ram": 256, "disk": 1},
    }))?;
    flavors.create(&PostParams::default(), &flavor).await?;
    let images: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource {
            group: "image.ronghe.io".into(),
            version: "v1".into(),
            api_version: "image.ronghe.io/v1".into(),
            kind: "Image".into(),
            plural: "images".into(),
        },
    );
    let image = images
        .list(&ListParams::default().fields("spec.name=test-guest"))
        .await?
        .items
        .into_iter()
        .next()
        .and_then(|i| i.metadata.name)
        .context("no test-guest image")?;
    let vms: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "default",
        &compute("VirtualMachine", "virtualmachines"),
    );
    let console = server.data_dir().join("agent");
    let booted = boot_each(&vms, &console, &image, count).await;
    // Whatever happened, the VMs go before the server does: the agent stops their QEMUs
    // only when they are deleted.
    let deleting = Instant::now();
    for index in 0..count {
        let _ = vms
            .delete(&format!("guest-{index}"), &DeleteParams::default())
            .await;
    }
    while !vms
        .list_metadata(&ListParams::default())
        .await?
        .items
        .is_empty()
    {
        if deleting.elapsed() > Duration::from_secs(120) {
            bail!("VMs still there 2 minutes after deleting them");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    booted
}

/// Boots `count` VMs one after another, printing each one's times.
async fn boot_each(
    vms: &Api<DynamicObject>,
    console: &std::path::Path,
    image: &str,
    count: usize,
) -> anyhow::Result<()> {
    for index in 0..count {
        let name = format!("guest-{index}");
        let vm: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "compute.ronghe.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": name},
            "spec": {"flavorRef": "bench.guest", "imageRef": image},
        }))?;
        let created = Instant::now();
        let made = vms.create(&PostParams::default(), &vm).await?;
        let uid = made.metadata.uid.clone().unwrap_or_default();
        let mut active = None;
        let ready = loop {
            if created.elapsed() > Duration::from_secs(300) {
                bail!("{name} was not ready within 5 minutes");
            }
            let vm = vms.get(&name).await?;
            match vm.data["status"]["status"].as_str() {
                Some("ERROR") => bail!("{name} failed: {}", vm.data["status"]["fault"]),
                Some("ACTIVE") if active.is_none() => active = Some(created.elapsed()),
                _ => {}
            }
            if active.is_some() && console_says_ready(console, &uid) {
                break created.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        println!(
            "vm {name}: ACTIVE after {}, ronghe-guest-ready after {}",
            millis(active.unwrap_or_default()),
            millis(ready)
        );
    }
    Ok(())
}

/// Whether a VM's console log (in the agent's directory: the QEMU driver's root is
/// `agent/vms`, its VMs under `vms/<uid>`) shows the guest ready.
fn console_says_ready(agent_dir: &std::path::Path, uid: &str) -> bool {
    let log = agent_dir
        .join("vms")
        .join("vms")
        .join(uid)
        .join("console.log");
    std::fs::read_to_string(log).is_ok_and(|text| text.contains("ronghe-guest-ready"))
}
