//! Tenant networks over time, on a `LabCluster`: QoS limits applied and lifted on a live
//! port, and agents restarted under live traffic.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use ronghe_testkit::{LabCluster, NetLab};

use super::{BINARY, require_real_drivers, wait_for};

/// The limit the QoS test sets, both ways, in kbit/s (500 kB/s).
const LIMIT_KBPS: f64 = 4000.0;

/// Kilobits per second of `bytes` moved in `elapsed`.
fn kbps(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 * 8.0 / 1000.0 / elapsed.as_secs_f64()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_qos_bandwidth_limit_holds_a_port_to_its_rate_both_ways_until_lifted()
-> anyhow::Result<()> {
    let test = "a_qos_bandwidth_limit_holds_a_port_to_its_rate_both_ways_until_lifted";
    require_real_drivers!(test);
    if let Err(why) = NetLab::available() {
        eprintln!("SKIPPED {test}: {why}");
        return Ok(());
    }
    let cluster = LabCluster::start(Path::new(BINARY), 2, &[]).await?;
    let os = &cluster.os;
    cluster.create_network("net1", "sub1", "10.1.0.0/24", None)?;
    let a = cluster.web_pod("a", 0, "net1", "pod-a").await?;
    let b = cluster.web_pod("b", 1, "net1", "pod-b").await?;
    // 2 MiB to move: about 4 s at the limit, a fraction of a second without.
    for pod in ["a", "b"] {
        let (code, out) = cluster.exec(
            pod,
            &["dd", "if=/dev/zero", "of=/www/big", "bs=1024", "count=2048"],
        )?;
        anyhow::ensure!(code == 0, "writing /www/big in {pod}: {out}");
    }
    let (a_netns, b_netns) = (
        cluster.pod_netns(0, "admin", "a")?,
        cluster.pod_netns(1, "admin", "b")?,
    );
    let lab = cluster.lab();
    // Into a (its ingress) and out of a (its egress), in kbit/s.
    let into_a = || -> anyhow::Result<f64> {
        let target = SocketAddr::new(b.parse()?, 8080);
        let (bytes, elapsed) = lab.http_get_in(&a_netns, target, "/big")?;
        anyhow::ensure!(bytes == 2048 * 1024, "a got {bytes} bytes of 2 MiB");
        Ok(kbps(bytes, elapsed))
    };
    let out_of_a = || -> anyhow::Result<f64> {
        let target = SocketAddr::new(a.parse()?, 8080);
        let (bytes, elapsed) = lab.http_get_in(&b_netns, target, "/big")?;
        anyhow::ensure!(bytes == 2048 * 1024, "b got {bytes} bytes of 2 MiB");
        Ok(kbps(bytes, elapsed))
    };
    let before = (into_a()?, out_of_a()?);
    eprintln!(
        "without a limit: into a {:.0} kbit/s, out of a {:.0} kbit/s",
        before.0, before.1
    );

    os.ok(&["network", "qos", "policy", "create", "bw"])?;
    for direction in ["--ingress", "--egress"] {
        os.ok(&[
            "network",
            "qos",
            "rule",
            "create",
            "--type",
            "bandwidth-limit",
            "--max-kbps",
            "4000",
            "--max-burst-kbits",
            "400",
            direction,
            "bw",
        ])?;
    }
    let port = cluster.port_with(&a)?;
    os.ok(&["port", "set", "--qos-policy", "bw", &port])?;
    // The limit is a ceiling: a slow machine only makes the transfers slower, so a rate
    // above 1.5 times the limit can only mean no limit (the bucket lets 400 kbit through
    // at once).
    let within = |rate: f64| rate <= LIMIT_KBPS * 1.5;
    for (direction, measure) in [
        ("into a", &into_a as &dyn Fn() -> anyhow::Result<f64>),
        ("out of a", &out_of_a),
    ] {
        let rate = wait_for(
            Duration::from_secs(60),
            &format!("traffic {direction} held to {LIMIT_KBPS} kbit/s"),
            || async { Ok(Some(measure()?).filter(|rate| within(*rate))) },
        )
        .await?;
        eprintln!("limited to {LIMIT_KBPS} kbit/s: {direction} {rate:.0} kbit/s");
        // Not a one-off: the next transfer is held too.
        let again = measure()?;
        assert!(
            within(again),
            "{direction}: {again:.0} kbit/s over the limit"
        );
    }

    os.ok(&["port", "unset", "--qos-policy", &port])?;
    for (direction, measure) in [
        ("into a", &into_a as &dyn Fn() -> anyhow::Result<f64>),
        ("out of a", &out_of_a),
    ] {
        let rate = wait_for(
            Duration::from_secs(60),
            &format!("traffic {direction} unlimited again"),
            || async { Ok(Some(measure()?).filter(|rate| *rate > LIMIT_KBPS * 3.0)) },
        )
        .await?;
        eprintln!("limit lifted: {direction} {rate:.0} kbit/s");
    }
    Ok(())
}

/// The links of a namespace by name, with their interface index: a link deleted and made
/// again gets a new index.
fn links(cluster: &LabCluster, netns: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let output = cluster.lab().exec(netns, &["ip", "-o", "link", "show"])?;
    anyhow::ensure!(output.status.success(), "ip link in {netns}: {output:?}");
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(':').map(str::trim);
            let index = fields.next()?.to_owned();
            let name = fields.next()?.split('@').next()?.to_owned();
            Some((name, index))
        })
        .collect())
}

/// The `icmp_seq` numbers answered in busybox ping's output.
fn answered(output: &str) -> Vec<u64> {
    output
        .lines()
        .filter_map(|line| {
            line.split("seq=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn restarting_agents_keeps_traffic_flowing_and_the_wiring_in_place() -> anyhow::Result<()> {
    let test = "restarting_agents_keeps_traffic_flowing_and_the_wiring_in_place";
    require_real_drivers!(test);
    if let Err(why) = NetLab::available() {
        eprintln!("SKIPPED {test}: {why}");
        return Ok(());
    }
    let mut cluster =
        LabCluster::start(Path::new(BINARY), 2, &["--physical-network", "public=eth1"]).await?;
    let os = &cluster.os;
    cluster.create_public_network()?;
    cluster.create_network("net1", "sub1", "10.1.0.0/24", None)?;
    cluster.create_router("r1", "sub1")?;
    cluster.create_tiny_flavor()?;
    for (protocol, port) in [("icmp", None), ("tcp", Some("80"))] {
        let mut args = vec![
            "security",
            "group",
            "rule",
            "create",
            "--protocol",
            protocol,
        ];
        if let Some(port) = port {
            args.extend(["--dst-port", port]);
        }
        args.extend(["--remote-ip", "0.0.0.0/0", "default"]);
        os.ok(&args)?;
    }
    let pod_ip = cluster.web_pod("web", 0, "net1", "pod-says-hi").await?;
    let vm_ip = cluster.guest("guest", 1, "net1").await?;
    let floating = cluster.create_floating_ip()?;
    let vm_port = cluster.port_with(&vm_ip)?;
    os.ok(&["floating", "ip", "set", "--port", &vm_port, &floating])?;
    let vm_url = format!("http://{floating}/");
    wait_for(
        Duration::from_secs(240),
        "the VM through its floating IP",
        || async { cluster.get_from_outside(&vm_url) },
    )
    .await?;
    let pod_to_vm = format!("http://{vm_ip}/");
    let (code, out) = cluster.exec(
        "web",
        &["timeout", "5", "wget", "-q", "-O", "-", &pod_to_vm],
    )?;
    assert_eq!(code, 0, "the pod reaches the VM before the restarts: {out}");

    // From outside, ping the VM's floating IP every 0.1 s throughout both restarts.
    let hosts: Vec<String> = (0..2).map(|i| cluster.host(i).netns.clone()).collect();
    let before: Vec<_> = hosts
        .iter()
        .map(|netns| links(&cluster, netns))
        .collect::<anyhow::Result<_>>()?;
    let ping_log = cluster.server.data_dir().join("ping.log");
    let mut ping = Command::new("busybox");
    ping.args(["ping", "-i", "0.1", &floating])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&ping_log)?)
        .stderr(Stdio::null());
    let external = cluster.lab().external().netns.clone();
    let pinging = cluster.lab().spawn(&external, ping)?;
    wait_for(
        Duration::from_secs(30),
        "the first pings answered",
        || async {
            let log = std::fs::read_to_string(&ping_log)?;
            Ok((!answered(&log).is_empty()).then_some(()))
        },
    )
    .await?;

    for index in [1, 0] {
        let log_before = cluster.agent_log(index).len();
        cluster.restart_agent(index)?;
        let first_pass = wait_for(
            Duration::from_secs(60),
            &format!("host {index}'s restarted agent wiring its host"),
            || async {
                let log = cluster.agent_log(index);
                Ok(log[log_before.min(log.len())..]
                    .lines()
                    .find(|line| line.contains("host network: first pass applied"))
                    .map(str::to_owned))
            },
        )
        .await?;
        eprintln!("host {index} after its agent restarted: {first_pass}");
        if index == 1 {
            // The VM's host (no pods, which runc restarts) was left as it was.
            assert!(
                first_pass.contains("changes=0"),
                "the restarted agent changed its untouched host: {first_pass}"
            );
        }
    }
    // The VM's host had no pod: every link it had is still there, the same link.
    let after = links(&cluster, &hosts[1])?;
    for (name, index) in &before[1] {
        assert_eq!(
            after.get(name),
            Some(index),
            "link {name} on the VM's host was replaced or removed by the restart"
        );
    }
    // A few more pings after both restarts, then stop.
    let seen = answered(&std::fs::read_to_string(&ping_log)?).len();
    wait_for(
        Duration::from_secs(30),
        "pings after the restarts",
        || async {
            let now = answered(&std::fs::read_to_string(&ping_log)?).len();
            Ok((now >= seen + 20).then_some(()))
        },
    )
    .await?;
    cluster.lab().stop_process(pinging)?;
    let log = std::fs::read_to_string(&ping_log)?;
    let replies = answered(&log);
    let last = *replies.iter().max().context("no ping answered")?;
    let missing: Vec<u64> = (0..=last).filter(|seq| !replies.contains(seq)).collect();
    assert!(
        missing.is_empty(),
        "pings to the VM's floating IP lost during the agent restarts: {missing:?} of 0..={last}"
    );

    // The pod (restarted with its host's agent: runc's containers cannot be taken over)
    // is back on its port and reaches the VM again; the VM still answers from outside.
    let body = wait_for(
        Duration::from_secs(120),
        "the pod reaching the VM after the restarts",
        || async {
            let (code, out) = cluster.exec(
                "web",
                &["timeout", "5", "wget", "-q", "-O", "-", &pod_to_vm],
            )?;
            Ok((code == 0).then_some(out))
        },
    )
    .await?;
    assert!(body.contains("guest"), "{body:?}");
    let ip_after = cluster.kubectl.ok(&[
        "get",
        "pod",
        "web",
        "-n",
        "admin",
        "-o",
        "jsonpath={.status.podIP}",
    ])?;
    assert_eq!(ip_after, pod_ip, "the pod keeps its port's address");
    assert!(
        cluster
            .get_from_outside(&vm_url)?
            .is_some_and(|body| body.contains("guest"))
    );
    Ok(())
}
