//! `ronghe bench api`: starts a real `ronghe server` (SQLite store, every write synced
//! before it is acknowledged) in a temporary directory and measures, through the API on
//! loopback: idle RSS, creates per second with p50/p99 latency at several client counts,
//! and watch delivery latency to many watchers. Prints one line per figure and ends with
//! `api: R creates/s at N clients` for the largest client count.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, PostParams, WatchEvent, WatchParams};
use ronghe_testkit::ServerProcess;
use serde_json::json;

#[derive(clap::Args, Debug)]
pub struct ApiBenchArgs {
    /// Concurrent client counts to measure creates at.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    clients: Vec<usize>,
    /// Seconds of load per client count.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Watchers for the delivery-latency figure.
    #[arg(long, default_value_t = 100)]
    watchers: usize,
    /// Objects written while the watchers listen.
    #[arg(long, default_value_t = 200)]
    watch_events: usize,
    /// Extra flags for the server under test.
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    server_args: Vec<String>,
}

pub async fn run(args: ApiBenchArgs) -> anyhow::Result<()> {
    let binary = std::env::current_exe().context("locating the ronghe binary")?;
    let server_args: Vec<&str> = args.server_args.iter().map(String::as_str).collect();
    let server = ServerProcess::start(&binary, &server_args).await?;
    let pid = server.pid().context("server pid")?;

    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_rss = rss_kib(pid)?;
    println!(
        "idle RSS of ronghe server: {:.1} MiB",
        idle_rss as f64 / 1024.0
    );

    let mut last = None;
    for &clients in &args.clients {
        let namespace = format!("bench-{clients}");
        create_namespace(&server, &namespace).await?;
        let result = creates(
            &server,
            &namespace,
            clients,
            Duration::from_secs(args.seconds),
        )
        .await?;
        println!(
            "creates at {clients} clients: {:.0} creates/s, p50 {:.2} ms, p99 {:.2} ms ({} creates in {:.1} s)",
            result.rate,
            result.p50_ms,
            result.p99_ms,
            result.count,
            result.elapsed.as_secs_f64()
        );
        last = Some((clients, result.rate));
    }

    let delivery = watch_delivery(&server, args.watchers, args.watch_events).await?;
    println!(
        "watch delivery to {} watchers: p50 {:.2} ms, p99 {:.2} ms ({} deliveries)",
        args.watchers, delivery.0, delivery.1, delivery.2
    );
    let loaded_rss = rss_kib(pid)?;
    println!(
        "RSS of ronghe server after the run: {:.1} MiB",
        loaded_rss as f64 / 1024.0
    );
    if let Some((clients, rate)) = last {
        println!("api: {rate:.0} creates/s at {clients} clients");
    }
    Ok(())
}

struct CreateResult {
    count: usize,
    elapsed: Duration,
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
}

async fn create_namespace(server: &ServerProcess, name: &str) -> anyhow::Result<()> {
    let api: Api<Namespace> = Api::all(server.client().await?);
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
    api.create(&PostParams::default(), &namespace).await?;
    Ok(())
}

/// `clients` tasks, each with its own connection, creating ConfigMaps until the deadline.
async fn creates(
    server: &ServerProcess,
    namespace: &str,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<CreateResult> {
    let mut apis = Vec::with_capacity(clients);
    for _ in 0..clients {
        apis.push(Api::<ConfigMap>::namespaced(
            server.client().await?,
            namespace,
        ));
    }
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = apis
        .into_iter()
        .enumerate()
        .map(|(client, api)| {
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut n = 0usize;
                while Instant::now() < deadline {
                    let cm: ConfigMap = serde_json::from_value(json!({
                        "metadata": {"name": format!("c{client}-{n}"), "labels": {"bench": "api"}},
                        "data": {"payload": "x".repeat(256)},
                    }))?;
                    let sent = Instant::now();
                    api.create(&PostParams::default(), &cm).await?;
                    latencies.push(sent.elapsed());
                    n += 1;
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    Ok(CreateResult {
        count: latencies.len(),
        elapsed,
        rate: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50_ms: percentile_ms(&latencies, 0.50),
        p99_ms: percentile_ms(&latencies, 0.99),
    })
}

/// Starts `watchers` watches, writes `events` objects stamped with their send time, and
/// measures how long each took to reach each watcher. Returns p50 ms, p99 ms, deliveries.
async fn watch_delivery(
    server: &ServerProcess,
    watchers: usize,
    events: usize,
) -> anyhow::Result<(f64, f64, usize)> {
    let namespace = "bench-watch";
    create_namespace(server, namespace).await?;
    let client = server.client().await?;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let revision = api
        .list(&Default::default())
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let ready = Arc::new(tokio::sync::Barrier::new(watchers + 1));
    let mut tasks = Vec::with_capacity(watchers);
    for _ in 0..watchers {
        let api = api.clone();
        let revision = revision.clone();
        let ready = ready.clone();
        tasks.push(tokio::spawn(async move {
            let stream = api
                .watch(&WatchParams::default().timeout(290), &revision)
                .await?;
            ready.wait().await;
            let mut stream = stream.boxed();
            let mut latencies = Vec::with_capacity(events);
            while latencies.len() < events {
                let Some(event) = tokio::time::timeout(Duration::from_secs(30), stream.try_next())
                    .await
                    .context("watch stalled")??
                else {
                    break;
                };
                if let WatchEvent::Added(cm) = event
                    && let Some(sent) = cm.data.as_ref().and_then(|d| d.get("sent_ns"))
                {
                    let sent: u128 = sent.parse().unwrap_or(0);
                    let now = now_ns();
                    latencies.push(Duration::from_nanos(now.saturating_sub(sent) as u64));
                }
            }
            anyhow::Ok(latencies)
        }));
    }
    ready.wait().await;
    for n in 0..events {
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": format!("w{n}")},
            "data": {"sent_ns": now_ns().to_string()},
        }))?;
        api.create(&PostParams::default(), &cm).await?;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    latencies.sort();
    Ok((
        percentile_ms(&latencies, 0.50),
        percentile_ms(&latencies, 0.99),
        latencies.len(),
    ))
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn percentile_ms(sorted: &[Duration], quantile: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 * quantile).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index].as_secs_f64() * 1000.0
}

/// Resident set size of a process, in KiB.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS in /proc status")
}
