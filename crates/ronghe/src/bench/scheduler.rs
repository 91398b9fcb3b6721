//! `ronghe bench scheduler`: starts a real `ronghe server` and a `ronghe agent --simulate
//! N`, creates M pods through the API from many clients, and measures how fast they are
//! bound (placed on a host with their allocation written). Ends with
//! `scheduler: R workloads/s`.
//!
//! Workloads are pods only until VirtualMachines land; each asks for 100m of CPU and
//! 64 MiB, so 1,000 hosts of 4 vCPUs hold 10,000 of them with room to spare.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
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
    /// Concurrent clients creating them.
    #[arg(long, default_value_t = 64)]
    clients: usize,
}

pub async fn run(args: SchedulerBenchArgs) -> anyhow::Result<()> {
    let binary = std::env::current_exe().context("locating the ronghe binary")?;
    let server = ServerProcess::start(&binary, &[]).await?;
    let hosts = args.hosts.to_string();
    let registering = Instant::now();
    // Leases renewed every minute, so heartbeats do not weigh on the figure.
    let _agent = AgentProcess::start(
        Path::new(&binary),
        &server,
        &[
            "--node-name",
            "sim",
            "--simulate",
            &hosts,
            "--vcpus",
            "4",
            "--memory-mb",
            "8192",
            "--lease-interval-seconds",
            "60",
        ],
    )?;
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

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let watch_from = pods
        .list_metadata(&ListParams::default())
        .await?
        .metadata
        .resource_version;
    let watcher = {
        let pods = pods.clone();
        let expected = args.workloads;
        tokio::spawn(async move { bound_at(pods, watch_from.unwrap_or_default(), expected).await })
    };
    let started = Instant::now();
    futures::stream::iter(0..args.workloads)
        .map(|index| {
            let pods = pods.clone();
            async move {
                let pod: Pod = serde_json::from_value(json!({
                    "metadata": {"name": format!("w-{index:06}")},
                    "spec": {"containers": [{"name": "main", "image": "busybox",
                        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]},
                }))?;
                pods.create(&PostParams::default(), &pod).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(args.clients.max(1))
        .try_collect::<Vec<()>>()
        .await?;
    let created = started.elapsed();
    println!(
        "{} pods created in {:.2} s ({:.0} creates/s)",
        args.workloads,
        created.as_secs_f64(),
        args.workloads as f64 / created.as_secs_f64()
    );
    let finished = watcher.await??;
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

/// Watches pods from `from` until `expected` distinct ones are bound; returns when.
async fn bound_at(pods: Api<Pod>, from: String, expected: usize) -> anyhow::Result<Instant> {
    let mut bound = HashSet::new();
    let mut version = from;
    let deadline = Instant::now() + Duration::from_secs(1800);
    while Instant::now() < deadline {
        let params = WatchParams::default().timeout(290);
        let mut stream = pods.watch(&params, &version).await?.boxed();
        while let Some(event) = stream.try_next().await? {
            let pod = match event {
                WatchEvent::Added(pod) | WatchEvent::Modified(pod) => pod,
                WatchEvent::Bookmark(mark) => {
                    version = mark.metadata.resource_version;
                    continue;
                }
                WatchEvent::Deleted(_) => continue,
                WatchEvent::Error(error) => bail!("the watch failed: {error:?}"),
            };
            if let Some(v) = &pod.metadata.resource_version {
                version.clone_from(v);
            }
            let on_a_node = pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_some_and(|n| !n.is_empty());
            if on_a_node && let Some(name) = pod.metadata.name {
                bound.insert(name);
                if bound.len() >= expected {
                    return Ok(Instant::now());
                }
            }
        }
    }
    bail!("only {} of {expected} workloads were bound", bound.len())
}
