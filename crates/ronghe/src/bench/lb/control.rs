//! The control-plane half of `ronghe bench lb`, on a `LabCluster` (a server and two host
//! network namespaces with an agent each): load balancer create → ACTIVE through the
//! Octavia API (one after another, polled every 10 ms), and failover — the host of a
//! load balancer with an HTTP listener and a pod member dies (agent and proxy killed,
//! links down) and the time until its VIP answers again from the other host is measured
//! from a client pod, polled every 50 ms. The server runs with its defaults (leases
//! renewed every 10 s, a node grace of 40 s): a dead host of load balancers is found by the
//! server's probes of its agent endpoint (two unanswered, about 2 s), and failover
//! includes that detection.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ronghe_testkit::{LabCluster, NetLab, OpenstackApi, wait_for};
use serde_json::json;

use super::super::start::{millis, quantile};

/// Measures and prints the control plane's figures (says why when this machine cannot).
pub async fn measure(creates: usize) -> anyhow::Result<()> {
    if let Some(missing) = ronghe_testkit::host::real_drivers_missing() {
        println!("lb control plane: skipped (needs real drivers: {missing})");
        return Ok(());
    }
    if let Err(why) = NetLab::available() {
        println!("lb control plane: skipped (no network lab here: {why})");
        return Ok(());
    }
    let binary = std::env::current_exe().context("locating the ronghe binary")?;
    println!("lb control plane: starting a server and two hosts (network namespaces)...");
    let mut cluster = LabCluster::start_with_server(&binary, 2, &[], &[]).await?;
    cluster.create_network("lbbench", "lbbench-subnet", "10.78.0.0/24", None)?;
    let subnet = cluster.os.json(&["subnet", "show", "lbbench-subnet"])?["id"]
        .as_str()
        .context("the subnet's id")?
        .to_owned();
    let api = OpenstackApi::admin(&cluster.server, "/load-balancer/v2").await?;

    let mut times = Vec::new();
    let mut last = String::new();
    for index in 0..creates.max(1) {
        let started = Instant::now();
        let id = api
            .create(
                "lbaas/loadbalancers",
                "loadbalancer",
                json!({"name": format!("bench-{index}"), "vip_subnet_id": subnet}),
            )
            .await?;
        active(&api, &id).await?;
        times.push(started.elapsed());
        last = id;
    }
    times.sort();
    println!(
        "lb create → ACTIVE ({} load balancers, one after another): p50 {}, max {} \
         (Octavia with amphorae: about 60 s)",
        times.len(),
        millis(quantile(&times, 0.5)),
        millis(times.last().copied().unwrap_or_default()),
    );

    let lb = api
        .expect(200, "GET", &format!("/lbaas/loadbalancers/{last}"), None)
        .await?;
    let vip = lb["loadbalancer"]["vip_address"]
        .as_str()
        .context("a VIP")?
        .to_owned();
    let host = cluster.kubectl.ok(&[
        "get",
        "loadbalancers",
        "-n",
        "admin",
        "-o",
        &format!("jsonpath={{.items[?(@.metadata.uid=='{last}')].status.host}}"),
    ])?;
    let dying = (0..2)
        .find(|i| cluster.host(*i).netns == host)
        .with_context(|| format!("the load balancer on an unknown host {host:?}"))?;
    let surviving = 1 - dying;
    let member = cluster
        .web_pod("bench-web", surviving, "lbbench", "alive")
        .await?;
    cluster
        .web_pod("bench-client", surviving, "lbbench", "client")
        .await?;
    let listener = api
        .create(
            "lbaas/listeners",
            "listener",
            json!({"loadbalancer_id": last, "protocol": "HTTP", "protocol_port": 80}),
        )
        .await?;
    active(&api, &last).await?;
    let pool = api
        .create(
            "lbaas/pools",
            "pool",
            json!({"listener_id": listener, "protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN"}),
        )
        .await?;
    active(&api, &last).await?;
    api.create(
        &format!("lbaas/pools/{pool}/members"),
        "member",
        json!({"address": member, "protocol_port": 8080}),
    )
    .await?;
    active(&api, &last).await?;
    let client = cluster.pod_netns(surviving, "admin", "bench-client")?;
    let url = format!("http://{vip}/");
    let answers = |cluster: &LabCluster| -> anyhow::Result<bool> {
        let output = cluster
            .lab()
            .exec(&client, &["curl", "-s", "--max-time", "1", &url])?;
        Ok(output.status.success() && String::from_utf8_lossy(&output.stdout).trim() == "alive")
    };
    wait_for(Duration::from_secs(60), "the VIP answering", || async {
        Ok(answers(&cluster)?.then_some(()))
    })
    .await?;
    let died = Instant::now();
    cluster.kill_host(dying)?;
    loop {
        if answers(&cluster)? {
            break;
        }
        if died.elapsed() > Duration::from_secs(120) {
            bail!("the VIP did not answer again within 120 s of its host dying");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let failover = died.elapsed();
    println!(
        "lb failover: the VIP answered again {} after its host died (about 2 s of it the \
         server's probes finding the host silent, the rest rebuilding on the other host)",
        millis(failover),
    );
    Ok(())
}

/// Polls a load balancer every 10 ms until it is ACTIVE.
async fn active(api: &OpenstackApi, id: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let shown = api
            .expect(200, "GET", &format!("/lbaas/loadbalancers/{id}"), None)
            .await?;
        match shown["loadbalancer"]["provisioning_status"].as_str() {
            Some("ACTIVE") => return Ok(()),
            Some("ERROR") => bail!("load balancer {id} went ERROR: {shown}"),
            _ => {}
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("load balancer {id} not ACTIVE within 60 s: {shown}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
