//! `ronghe bench scheduler`: starts a real `ronghe server` and a `ronghe agent --simulate
//! N`, creates M workloads — a mix of pods and VirtualMachines — through the API from many
//! clients, and measures how fast they are bound (placed on a host with their allocation
//! written). Ends with `scheduler: R workloads/s`.
//!
//! Pods ask for 100m of CPU and 64 MiB; VMs boot a 1-vCPU, 256 MiB flavor. Hosts have 4
//! vCPUs at an allocation ratio of 4, so 1,000 of them hold 10,000 workloads with room to
//! spare. By default the simulated hosts do not report their workloads running, so the
//! figure is the scheduler's; `--run-workloads` adds the fake drivers' status writes, as
//! real agents' would share the server.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DynamicObject, ListParams, PostParams, WatchEvent, WatchParams};
use kube::discovery::ApiResource;
use ronghe_testkit::{AgentProcess, ServerProcess};
use serde_json::json;

#[derive(clap::Args, Debug)]
pub struct SchedulerBenchArgs {
    /// Simulated hosts.
    #[arg(long, default_value_t = 1000)]
    hosts: usize,
    /// Workloads to place.
    #[arg(long, default_value_t = 10_000)]
    workloads: usize,
    /// The share of the workloads that are VMs, in percent.
    #[arg(long, default_value_t = 50)]
    vm_percent: usize,
    /// Concurrent clients creating them.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Let the simulated hosts report their workloads running (the fake drivers' status
    /// writes then share the server with the scheduler, as real agents' would).
    #[arg(long)]
    run_workloads: bool,
}

pub async fn run(args: SchedulerBenchArgs) -> anyhow::Result<()> {
    let binary = std::env::current_exe().context("locating the ronghe binary")?;
    let server = ServerProcess::start(&binary, &[]).await?;
    let hosts = args.hosts.to_string();
    let registering = Instant::now();
    // Leases renewed every minute, so heartbeats do not weigh on the figure.
    let mut agent_args = vec![
        "--node-name",
        "sim",
        "--simulate",
        &hosts,
        "--vcpus",
        "4",
        "--memory-mb",
        "8192",
        "--cpu-allocation-ratio",
        "4",
        "--lease-interval-seconds",
        "60",
    ];
    if !args.run_workloads {
        agent_args.push("--idle");
    }
    let _agent = AgentProcess::start(Path::new(&binary), &server, &agent_args)?;
    let client = server.client().await?;
    let nodes: Api<Node> = Api::all(client.clone());
    loop {
        let count = nodes
            .list_metadata(&ListParams::default())
            .await?
            .items
            .len();
        if count >= args.hosts {
            break;
        }
        if registering.elapsed() > Duration::from_secs(600) {
            bail!(
                "only {count} of {} hosts registered within 10 minutes",
                args.hosts
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The providers come right after their nodes; give the last ones a moment.
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!(
        "{} simulated hosts registered in {:.1} s",
        args.hosts,
        registering.elapsed().as_secs_f64()
    );

    let flavors: Api<DynamicObject> = Api::all_with(client.clone(), &compute("Flavor", "flavors"));
    let flavor: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "compute.ronghe.io/v1", "kind": "Flavor",
        "metadata": {"name": "bench.small"}, "spec": {"vcpus": 1, "ram": 256, "disk": 1},
    }))?;
    flavors.create(&PostParams::default(), &flavor).await?;
    let pods: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), "default", &ApiResource::erase::<Pod>(&()));
    let vms: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "default",
        &compute("VirtualMachine", "virtualmachines"),
    );
    // VMs spread evenly through the sequence: the index is a VM when it carries the share.
    let share = args.vm_percent.min(100);
    let is_vm = move |index: usize| (index + 1) * share / 100 > index * share / 100;
    let vm_count = (0..args.workloads).filter(|i| is_vm(*i)).count();
    let pod_count = args.workloads - vm_count;
    let mut watchers = Vec::new();
    for (api, expected, bound) in [
        (
            pods.clone(),
            pod_count,
            pod_bound as fn(&DynamicObject) -> bool,
        ),
        (vms.clone(), vm_count, vm_bound),
    ] {
        let from = api
            .list_metadata(&ListParams::default())
            .await?
            .metadata
            .resource_version;
        watchers.push(tokio::spawn(async move {
            bound_at(api, from.unwrap_or_default(), expected, bound).await
        }));
    }

    let started = Instant::now();
    futures::stream::iter(0..args.workloads)
        .map(|index| {
            let (api, body) = if is_vm(index) {
                (
                    vms.clone(),
                    json!({
                        "apiVersion": "compute.ronghe.io/v1", "kind": "VirtualMachine",
                        "metadata": {"name": format!("w-{index:06}")},
                        "spec": {"flavorRef": "bench.small"},
                    }),
                )
            } else {
                (
                    pods.clone(),
                    json!({
                        "apiVersion": "v1", "kind": "Pod",
                        "metadata": {"name": format!("w-{index:06}")},
                        "spec": {"containers": [{"name": "main", "image": "busybox",
                            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]},
                    }),
                )
            };
            async move {
                let object: DynamicObject = serde_json::from_value(body)?;
                api.create(&PostParams::default(), &object).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(args.clients.max(1))
        .try_collect::<Vec<()>>()
        .await?;
    let created = started.elapsed();
    println!(
        "{pod_count} pods and {vm_count} VMs created in {:.2} s ({:.0} creates/s)",
        created.as_secs_f64(),
        args.workloads as f64 / created.as_secs_f64()
    );
    let mut finished = started;
    for watcher in watchers {
        finished = finished.max(watcher.await??);
    }
    let elapsed = finished.duration_since(started);
    let rate = args.workloads as f64 / elapsed.as_secs_f64();
    println!(
        "{} workloads bound on {} hosts {:.2} s after the first create",
        args.workloads,
        args.hosts,
        elapsed.as_secs_f64()
    );
    println!("scheduler: {rate:.0} workloads/s");
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

fn pod_bound(pod: &DynamicObject) -> bool {
    pod.data["spec"]["nodeName"]
        .as_str()
        .is_some_and(|n| !n.is_empty())
}

fn vm_bound(vm: &DynamicObject) -> bool {
    vm.data["status"]["host"]
        .as_str()
        .is_some_and(|h| !h.is_empty())
}

/// Watches workloads from `from` until `expected` distinct ones are bound; returns when.
async fn bound_at(
    workloads: Api<DynamicObject>,
    from: String,
    expected: usize,
    is_bound: fn(&DynamicObject) -> bool,
) -> anyhow::Result<Instant> {
    if expected == 0 {
        return Ok(Instant::now());
    }
    let mut bound = HashSet::new();
    let mut version = from;
    let deadline = Instant::now() + Duration::from_secs(1800);
    while Instant::now() < deadline {
        let params = WatchParams::default().timeout(290);
        let mut stream = workloads.watch(&params, &version).await?.boxed();
        while let Some(event) = stream.try_next().await? {
            let workload = match event {
                WatchEvent::Added(workload) | WatchEvent::Modified(workload) => workload,
                WatchEvent::Bookmark(mark) => {
                    version = mark.metadata.resource_version;
                    continue;
                }
                WatchEvent::Deleted(_) => continue,
                WatchEvent::Error(error) => bail!("the watch failed: {error:?}"),
            };
            if let Some(v) = &workload.metadata.resource_version {
                version.clone_from(v);
            }
            if is_bound(&workload)
                && let Some(name) = workload.metadata.name
            {
                bound.insert(name);
                if bound.len() >= expected {
                    return Ok(Instant::now());
                }
            }
        }
    }
    bail!("only {} of {expected} workloads were bound", bound.len())
}
