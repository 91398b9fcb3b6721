//! Load balancers end to end on a `LabCluster` (two host namespaces, an agent each, real
//! runc and QEMU, the real openstack CLI): an Octavia load balancer made with the CLI goes
//! ACTIVE once its host's proxy serves it in the VIP's namespace, sends a client pod's
//! requests to a pod and a VM alike, marks a member without a server ERROR and back
//! ONLINE when one starts, routes `/api` to a second pool by an L7 policy, and counts
//! the traffic; deleting it stops its proxy and removes its namespace.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use ronghe_testkit::{LabCluster, NetLab};
use serde_json::Value;

use super::{BINARY, require_real_drivers, wait_for};

/// What `wget` from pod `from` gets from `url` (None: no answer).
fn get(cluster: &LabCluster, from: &str, url: &str) -> anyhow::Result<Option<String>> {
    let (code, out) = cluster.exec(from, &["timeout", "5", "wget", "-q", "-O", "-", url])?;
    Ok((code == 0).then(|| out.trim().to_owned()))
}

fn member_status(cluster: &LabCluster, pool: &str, member: &str) -> anyhow::Result<String> {
    let shown = cluster
        .os
        .json(&["loadbalancer", "member", "show", pool, member])?;
    Ok(shown["operating_status"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

/// Prints what the agents and the API say about the load balancer, for a failed wait.
fn diagnose(cluster: &LabCluster) {
    for index in 0..2 {
        let log = cluster.agent_log(index);
        let relevant: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("load balancer") || l.contains("proxy") || l.contains("ERROR"))
            .collect();
        eprintln!("--- agent {index}:\n{}", relevant.join("\n"));
    }
    if let Ok(shown) = cluster
        .kubectl
        .ok(&["get", "loadbalancers", "-A", "-o", "json"])
    {
        eprintln!("--- load balancers:\n{shown}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_octavia_load_balancer_serves_a_pod_and_a_vm_with_health_checks_and_l7()
-> anyhow::Result<()> {
    require_real_drivers!(
        "an_octavia_load_balancer_serves_a_pod_and_a_vm_with_health_checks_and_l7"
    );
    if let Err(why) = NetLab::available() {
        eprintln!(
            "SKIPPED an_octavia_load_balancer_serves_a_pod_and_a_vm_with_health_checks_and_l7: {why}"
        );
        return Ok(());
    }
    let cluster = LabCluster::start(Path::new(BINARY), 2, &[]).await?;
    let os = &cluster.os;
    cluster.create_network("lbnet", "lbsub", "10.8.0.0/24", None)?;
    cluster.create_tiny_flavor()?;
    let pod_ip = cluster.web_pod("web-a", 0, "lbnet", "from-pod").await?;
    let vm_ip = cluster.guest("guest", 1, "lbnet").await?;
    cluster.web_pod("client", 1, "lbnet", "client").await?;

    let lb = os.json(&[
        "loadbalancer",
        "create",
        "--name",
        "lb1",
        "--vip-subnet-id",
        "lbsub",
    ])?;
    wait_for(Duration::from_secs(60), "lb1 ACTIVE", || async {
        let shown = os.json(&["loadbalancer", "show", "lb1"])?;
        Ok((shown["provisioning_status"] == "ACTIVE").then_some(()))
    })
    .await
    .inspect_err(|_| diagnose(&cluster))?;
    let vip = lb["vip_address"].as_str().context("a VIP")?.to_owned();
    for args in [
        vec![
            "loadbalancer",
            "listener",
            "create",
            "--name",
            "web",
            "--protocol",
            "HTTP",
            "--protocol-port",
            "80",
            "--wait",
            "lb1",
        ],
        vec![
            "loadbalancer",
            "pool",
            "create",
            "--name",
            "main",
            "--lb-algorithm",
            "ROUND_ROBIN",
            "--listener",
            "web",
            "--protocol",
            "HTTP",
            "--wait",
        ],
        vec![
            "loadbalancer",
            "member",
            "create",
            "--name",
            "pod",
            "--address",
            &pod_ip,
            "--protocol-port",
            "8080",
            "--wait",
            "main",
        ],
        vec![
            "loadbalancer",
            "member",
            "create",
            "--name",
            "vm",
            "--address",
            &vm_ip,
            "--protocol-port",
            "80",
            "--wait",
            "main",
        ],
    ] {
        os.ok(&args)?;
    }
    let url = format!("http://{vip}/");
    // The VM boots under TCG: wait until both members have answered through the VIP.
    let seen = wait_for(
        Duration::from_secs(240),
        "both members answering through the VIP",
        || async {
            let mut bodies = BTreeSet::new();
            for _ in 0..6 {
                if let Some(body) = get(&cluster, "client", &url)? {
                    bodies.insert(body);
                }
            }
            Ok((bodies.len() >= 2).then_some(bodies))
        },
    )
    .await
    .inspect_err(|_| diagnose(&cluster))?;
    assert!(seen.contains("from-pod"), "{seen:?}");
    assert!(seen.iter().any(|b| b.contains("guest")), "{seen:?}");

    // A member without a server goes ERROR under an HTTP monitor, and ONLINE once one
    // starts; meanwhile every request goes to the members that are up.
    os.ok(&[
        "loadbalancer",
        "member",
        "create",
        "--name",
        "late",
        "--address",
        &pod_ip,
        "--protocol-port",
        "8081",
        "--wait",
        "main",
    ])?;
    os.ok(&[
        "loadbalancer",
        "healthmonitor",
        "create",
        "--name",
        "hm",
        "--delay",
        "1",
        "--timeout",
        "1",
        "--max-retries",
        "1",
        "--max-retries-down",
        "1",
        "--type",
        "HTTP",
        "--wait",
        "main",
    ])?;
    wait_for(Duration::from_secs(30), "member late ERROR", || async {
        Ok((member_status(&cluster, "main", "late")? == "ERROR").then_some(()))
    })
    .await?;
    assert_eq!(member_status(&cluster, "main", "pod")?, "ONLINE");
    for _ in 0..6 {
        let body = get(&cluster, "client", &url)?.context("an answer with a member down")?;
        assert!(body == "from-pod" || body.contains("guest"), "{body}");
    }
    let (code, out) = cluster.exec(
        "web-a",
        &[
            "sh",
            "-c",
            "mkdir -p /late/api && echo late > /late/index.html && echo api > /late/api/x \
             && httpd -p 8081 -h /late",
        ],
    )?;
    assert_eq!(code, 0, "{out}");
    wait_for(Duration::from_secs(30), "member late ONLINE", || async {
        Ok((member_status(&cluster, "main", "late")? == "ONLINE").then_some(()))
    })
    .await?;
    let status: Value =
        serde_json::from_str(&os.ok(&["loadbalancer", "status", "show", "lb1"])?)?;
    assert_eq!(
        status["loadbalancer"]["operating_status"], "ONLINE",
        "{status}"
    );

    // L7: /api goes to a pool of its own (the pod's second server, which has /api/x).
    os.ok(&[
        "loadbalancer",
        "pool",
        "create",
        "--name",
        "api",
        "--lb-algorithm",
        "ROUND_ROBIN",
        "--loadbalancer",
        "lb1",
        "--protocol",
        "HTTP",
        "--wait",
    ])?;
    os.ok(&[
        "loadbalancer",
        "member",
        "create",
        "--address",
        &pod_ip,
        "--protocol-port",
        "8081",
        "--wait",
        "api",
    ])?;
    let policy = os.json(&[
        "loadbalancer",
        "l7policy",
        "create",
        "--action",
        "REDIRECT_TO_POOL",
        "--redirect-pool",
        "api",
        "--name",
        "to-api",
        "--wait",
        "web",
    ])?;
    let policy_id = policy["id"].as_str().context("policy id")?;
    os.ok(&[
        "loadbalancer",
        "l7rule",
        "create",
        "--compare-type",
        "STARTS_WITH",
        "--type",
        "PATH",
        "--value",
        "/api",
        "--wait",
        policy_id,
    ])?;
    let api = format!("http://{vip}/api/x");
    // Through the main pool most of its members answer /api/x with a 404: only when
    // every request gets "api" is the policy routing it.
    wait_for(
        Duration::from_secs(30),
        "/api routed to its pool",
        || async {
            for _ in 0..6 {
                if get(&cluster, "client", &api)?.as_deref() != Some("api") {
                    return Ok(None);
                }
            }
            Ok(Some(()))
        },
    )
    .await?;
    // Everything else still goes to the main pool.
    let body = get(&cluster, "client", &url)?.context("an answer on /")?;
    assert_ne!(body, "api");

    let stats = os.json(&["loadbalancer", "stats", "show", "lb1"])?;
    let total = stats["total_connections"].as_u64().unwrap_or_default();
    let bytes = stats["bytes_out"].as_u64().unwrap_or_default();
    // Counters are written back every few seconds: wait for them.
    let (total, bytes) = if total == 0 {
        wait_for(Duration::from_secs(30), "stats written back", || async {
            let stats = os.json(&["loadbalancer", "stats", "show", "lb1"])?;
            let total = stats["total_connections"].as_u64().unwrap_or_default();
            let bytes = stats["bytes_out"].as_u64().unwrap_or_default();
            Ok((total > 0).then_some((total, bytes)))
        })
        .await?
    } else {
        (total, bytes)
    };
    assert!(total >= 10, "{total} connections counted");
    assert!(bytes > 0, "{bytes} bytes out counted");

    // Deleting it stops its proxy.
    os.ok(&["loadbalancer", "delete", "--cascade", "--wait", "lb1"])?;
    wait_for(
        Duration::from_secs(30),
        "the VIP to stop answering",
        || async { Ok(get(&cluster, "client", &url)?.is_none().then_some(())) },
    )
    .await?;
    Ok(())
}
