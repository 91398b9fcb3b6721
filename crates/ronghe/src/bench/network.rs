//! `ronghe bench network`: tenant networks on two hosts simulated on this machine (a
//! `LabCluster`: a server, and an agent per host network namespace wiring pods (runc) and
//! VMs (QEMU) with the real Linux data plane). It measures
//! - Neutron API port creates per second and their latency (Neutron manages about 7/s);
//! - port create → wired on its host: pods created from several clients, each one's port
//!   from the moment a watch sees it created to the moment it sees it ACTIVE;
//! - pod → pod and pod → VM throughput (an HTTP GET of a file) and latency (TCP connect:
//!   one round trip), across hosts over VXLAN side by side with the same pair on one
//!   host's bridge;
//! - connection setup toward a port with 1,000 security group rules against the same port
//!   with its default group only, and how long the rules take to reach nftables.
//!
//! Needs root, runc, QEMU, busybox-static, Debian's kernel, kubectl and the openstack CLI
//! (`scripts/test` installs them all).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, PostParams, WatchEvent, WatchParams,
};
use ronghe_testkit::{LabCluster, NetLab, OpenstackApi, wait_for};
use serde_json::{Value, json};

use super::start::{millis, quantile};

/// A short duration with a precision to match (latencies are tens of microseconds here).
fn fine(duration: Duration) -> String {
    format!("{:.3} ms", duration.as_secs_f64() * 1000.0)
}

#[derive(clap::Args, Debug)]
pub struct NetworkBenchArgs {
    /// Ports to create through the Neutron API.
    #[arg(long, default_value_t = 200)]
    ports: usize,
    /// Concurrent clients for the creates.
    #[arg(long, default_value_t = 10)]
    clients: usize,
    /// Pods whose ports are timed from create to wired.
    #[arg(long, default_value_t = 20)]
    pods: usize,
    /// Size of the file pods serve for the throughput figures.
    #[arg(long, default_value_t = 64)]
    megabytes: u64,
    /// Size of the file VMs serve (they run under TCG here: slow).
    #[arg(long, default_value_t = 8)]
    vm_megabytes: u64,
    /// Pings per latency figure.
    #[arg(long, default_value_t = 100)]
    pings: usize,
    /// TCP connects per connection-setup figure.
    #[arg(long, default_value_t = 1000)]
    connects: usize,
    /// Security group rules on the port of the connection-setup figure.
    #[arg(long, default_value_t = 1000)]
    rules: usize,
    /// Leave the VMs out (no QEMU boots).
    #[arg(long)]
    no_vms: bool,
}

/// Where the bench's tenant network lives.
const NETWORK: &str = "bench";
const CIDR: &str = "10.77.0.0/16";

pub async fn run(args: NetworkBenchArgs) -> anyhow::Result<()> {
    if let Some(missing) = ronghe_testkit::host::real_drivers_missing() {
        bail!("ronghe bench network needs real drivers: {missing}");
    }
    NetLab::available().map_err(|why| anyhow::anyhow!("no network lab here: {why}"))?;
    let binary = std::env::current_exe().context("locating the ronghe binary")?;
    println!("starting a server and two hosts (network namespaces) with an agent each...");
    let cluster = LabCluster::start(&binary, 2, &[]).await?;
    cluster.create_network(NETWORK, "bench-subnet", CIDR, None)?;
    let api = OpenstackApi::admin(&cluster.server, "/networking/v2.0").await?;
    let network_id = api
        .expect(200, "GET", &format!("/networks?name={NETWORK}"), None)
        .await?["networks"][0]["id"]
        .as_str()
        .context("the bench network's id")?
        .to_owned();

    api_port_creates(&api, &network_id, &args).await?;
    ports_wired(&cluster, &args).await?;
    let pairs = Pairs::start(&cluster, &args).await?;
    pairs.measure(&cluster, &args)?;
    rules_cost(&cluster, &api, &pairs, &args).await?;
    Ok(())
}

/// Durations' p50 and p99, as "p50 X, p99 Y", each shown by `show`.
fn spread_with(mut durations: Vec<Duration>, show: fn(Duration) -> String) -> String {
    durations.sort();
    format!(
        "p50 {}, p99 {}",
        show(quantile(&durations, 0.5)),
        show(quantile(&durations, 0.99))
    )
}

fn spread(durations: Vec<Duration>) -> String {
    spread_with(durations, millis)
}

/// Runs `work` on every item, `clients` at a time; the first failure ends it.
async fn concurrently<I, T, F, Fut>(items: I, clients: usize, work: F) -> anyhow::Result<Vec<T>>
where
    I: IntoIterator,
    F: FnMut(I::Item) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    futures::stream::iter(items)
        .map(work)
        .buffer_unordered(clients.max(1))
        .try_collect()
        .await
}

/// Creates `--ports` ports on the network through the Neutron API from `--clients`
/// clients, then deletes them.
async fn api_port_creates(
    api: &OpenstackApi,
    network_id: &str,
    args: &NetworkBenchArgs,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let created = concurrently(0..args.ports, args.clients, |index| async move {
        let at = Instant::now();
        let id = api
            .create(
                "ports",
                "port",
                json!({"network_id": network_id, "name": format!("bench-api-{index}")}),
            )
            .await?;
        anyhow::Ok((id, at.elapsed()))
    })
    .await?;
    let elapsed = started.elapsed();
    println!(
        "Neutron API port create: {} ports from {} clients in {:.2} s = {:.0} creates/s (Neutron: about 7/s); latency {}",
        created.len(),
        args.clients,
        elapsed.as_secs_f64(),
        created.len() as f64 / elapsed.as_secs_f64(),
        spread(created.iter().map(|(_, d)| *d).collect())
    );
    let started = Instant::now();
    concurrently(created, args.clients, |(id, _)| async move {
        api.expect(204, "DELETE", &format!("/ports/{id}"), None)
            .await
            .map(drop)
    })
    .await?;
    println!(
        "Neutron API port delete: {:.0} deletes/s",
        args.ports as f64 / started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A kind of `network.ronghe.io/v1`.
fn network_kind(kind: &str, plural: &str) -> kube::discovery::ApiResource {
    kube::discovery::ApiResource {
        group: "network.ronghe.io".into(),
        version: "v1".into(),
        api_version: "network.ronghe.io/v1".into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// Creates `--pods` busybox pods on the bench network, alternating hosts, and times each
/// one's port from created to ACTIVE (wired on its host); then deletes them.
async fn ports_wired(cluster: &LabCluster, args: &NetworkBenchArgs) -> anyhow::Result<()> {
    let client = cluster.server.client().await?;
    let ports: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), "admin", &network_kind("Port", "ports"));
    let from = ports
        .list_metadata(&ListParams::default())
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let expected = args.pods;
    let watching = tokio::spawn(async move {
        let mut created: HashMap<String, Instant> = HashMap::new();
        let mut wired: HashMap<String, Duration> = HashMap::new();
        let mut stream = ports
            .watch(&WatchParams::default().timeout(290), &from)
            .await?
            .boxed();
        while let Some(event) = stream.try_next().await? {
            let (WatchEvent::Added(port) | WatchEvent::Modified(port)) = event else {
                continue;
            };
            let Some(name) = port.metadata.name.clone() else {
                continue;
            };
            let seen = *created.entry(name.clone()).or_insert_with(Instant::now);
            if port.data["status"]["status"] == "ACTIVE" && !wired.contains_key(&name) {
                wired.insert(name, seen.elapsed());
                if wired.len() == expected {
                    break;
                }
            }
        }
        anyhow::Ok(wired)
    });
    let pods: Api<Pod> = Api::namespaced(client, "admin");
    let started = Instant::now();
    concurrently(0..args.pods, args.clients, |index| {
        let pods = pods.clone();
        let host = cluster.host(index % 2).netns.clone();
        async move {
            let pod: Pod = serde_json::from_value(json!({
                "metadata": {
                    "name": format!("wired-{index:03}"),
                    "annotations": {"network.ronghe.io/network": NETWORK},
                },
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "nodeSelector": {"kubernetes.io/hostname": host},
                    "containers": [{"name": "main", "image": "busybox",
                                    "command": ["sleep", "3600"]}],
                },
            }))?;
            pods.create(&PostParams::default(), &pod).await?;
            anyhow::Ok(())
        }
    })
    .await?;
    let wired = tokio::time::timeout(Duration::from_secs(300), watching)
        .await
        .context("not every pod's port was ACTIVE within 5 minutes")???;
    println!(
        "port create → wired on its host (ACTIVE): {} pods' ports on 2 hosts, {} ({:.2} s until the last)",
        wired.len(),
        spread(wired.values().copied().collect()),
        started.elapsed().as_secs_f64()
    );
    pods.delete_collection(&DeleteParams::default(), &ListParams::default())
        .await?;
    wait_for(Duration::from_secs(300), "the pods gone", || async {
        Ok(pods
            .list_metadata(&ListParams::default())
            .await?
            .items
            .is_empty()
            .then_some(()))
    })
    .await
}

/// One end of a measured pair.
struct Target {
    what: &'static str,
    address: SocketAddr,
    bytes: u64,
}

/// The workloads the data-plane figures run between: a client pod on host 0; pods and VMs
/// on host 1 (across VXLAN) and on host 0 (the same bridge).
struct Pairs {
    client_netns: String,
    targets: Vec<Target>,
    /// The same-host pod: its address and its network namespace (the security-group
    /// figure's target).
    same_host_pod: (String, String),
}

impl Pairs {
    async fn start(cluster: &LabCluster, args: &NetworkBenchArgs) -> anyhow::Result<Pairs> {
        println!("starting the measured pods and VMs...");
        cluster.web_pod("client", 0, NETWORK, "client").await?;
        let far = cluster.web_pod("far", 1, NETWORK, "far").await?;
        let near = cluster.web_pod("near", 0, NETWORK, "near").await?;
        let pod_bytes = args.megabytes * 1024 * 1024;
        for pod in ["far", "near"] {
            let (code, out) = cluster.exec(
                pod,
                &[
                    "dd",
                    "if=/dev/zero",
                    "of=/www/big",
                    "bs=1048576",
                    &format!("count={}", args.megabytes),
                ],
            )?;
            anyhow::ensure!(code == 0, "writing the file in {pod}: {out}");
        }
        let at = |ip: &str, port| -> anyhow::Result<SocketAddr> {
            Ok(SocketAddr::new(ip.parse::<IpAddr>()?, port))
        };
        let mut targets = vec![
            Target {
                what: "pod → pod across hosts (VXLAN)",
                address: at(&far, 8080)?,
                bytes: pod_bytes,
            },
            Target {
                what: "pod → pod on one bridge",
                address: at(&near, 8080)?,
                bytes: pod_bytes,
            },
        ];
        if !args.no_vms {
            cluster.create_tiny_flavor()?;
            let user_data = format!(
                "#!/bin/sh\ndd if=/dev/zero of=/www/big bs=1048576 count={}\necho ronghe-bench: ready\n",
                args.vm_megabytes
            );
            let far_vm = cluster
                .guest_with("far-vm", 1, NETWORK, Some(&user_data))
                .await?;
            let near_vm = cluster
                .guest_with("near-vm", 0, NETWORK, Some(&user_data))
                .await?;
            for vm in ["far-vm", "near-vm"] {
                wait_for(
                    Duration::from_secs(300),
                    &format!("{vm} booted and serving"),
                    || async {
                        Ok(cluster
                            .console(vm)?
                            .contains("ronghe-bench: ready")
                            .then_some(()))
                    },
                )
                .await?;
            }
            let vm_bytes = args.vm_megabytes * 1024 * 1024;
            targets.push(Target {
                what: "pod → VM across hosts (VXLAN)",
                address: at(&far_vm, 80)?,
                bytes: vm_bytes,
            });
            targets.push(Target {
                what: "pod → VM on one bridge",
                address: at(&near_vm, 80)?,
                bytes: vm_bytes,
            });
        }
        Ok(Pairs {
            client_netns: cluster.pod_netns(0, "admin", "client")?,
            targets,
            same_host_pod: (near, cluster.pod_netns(0, "admin", "near")?),
        })
    }

    /// Latency and throughput from the client pod to each target.
    fn measure(&self, cluster: &LabCluster, args: &NetworkBenchArgs) -> anyhow::Result<()> {
        for target in &self.targets {
            let rtts = ping_times(cluster, &self.client_netns, target.address.ip(), args.pings)?;
            let mut rates = Vec::new();
            for _ in 0..3 {
                let (bytes, elapsed) =
                    cluster
                        .lab()
                        .http_get_in(&self.client_netns, target.address, "/big")?;
                anyhow::ensure!(
                    bytes == target.bytes,
                    "{}: got {bytes} of {} bytes",
                    target.what,
                    target.bytes
                );
                rates.push(bytes as f64 * 8.0 / 1e6 / elapsed.as_secs_f64());
            }
            rates.sort_by(f64::total_cmp);
            println!(
                "{}: ping RTT {}; throughput {:.0} Mbit/s (median of 3 GETs of {} MiB)",
                target.what,
                spread_with(rtts, fine),
                rates[1],
                target.bytes / (1024 * 1024)
            );
        }
        Ok(())
    }
}

/// `count` pings (every 20 ms) from inside `netns` to `ip`: their round-trip times.
fn ping_times(
    cluster: &LabCluster,
    netns: &str,
    ip: IpAddr,
    count: usize,
) -> anyhow::Result<Vec<Duration>> {
    let output = cluster.lab().exec(
        netns,
        &[
            "busybox",
            "ping",
            "-c",
            &count.to_string(),
            "-i",
            "0.02",
            "-W",
            "2",
            &ip.to_string(),
        ],
    )?;
    let times: Vec<Duration> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let ms: f64 = line
                .split("time=")
                .nth(1)?
                .split(' ')
                .next()?
                .parse()
                .ok()?;
            Some(Duration::from_secs_f64(ms / 1000.0))
        })
        .collect();
    anyhow::ensure!(
        !times.is_empty(),
        "no ping from {netns} to {ip} answered: {output:?}"
    );
    Ok(times)
}

/// `count` TCP connects from inside `netns` to `target`, one after another, each timed
/// from connect() to established (one round trip through the data plane and its
/// firewall's connection setup), then closed.
fn connect_times(
    cluster: &LabCluster,
    netns: &str,
    target: SocketAddr,
    count: usize,
) -> anyhow::Result<Vec<Duration>> {
    cluster.lab().run_in(netns, || {
        let mut times = Vec::with_capacity(count);
        for _ in 0..count {
            let at = Instant::now();
            let stream = TcpStream::connect_timeout(&target, Duration::from_secs(10))
                .with_context(|| format!("connecting to {target}"))?;
            times.push(at.elapsed());
            drop(stream);
        }
        Ok(times)
    })
}

/// Connection setup toward the same-host pod with one admitting rule, then with `--rules`
/// rules before it (none of which matches the traffic).
async fn rules_cost(
    cluster: &LabCluster,
    api: &OpenstackApi,
    pairs: &Pairs,
    args: &NetworkBenchArgs,
) -> anyhow::Result<()> {
    let (ip, netns) = &pairs.same_host_pod;
    // A listener of our own in the target pod's namespace: the kernel completes each
    // handshake whatever the application, and this one drains its backlog at once.
    let target = SocketAddr::new(ip.parse()?, 9000);
    let listener = cluster
        .lab()
        .tcp_listen_in(netns, SocketAddr::from(([0, 0, 0, 0], 9000)))?;
    listener.set_nonblocking(true)?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let accepting = std::thread::spawn({
        let stop = stop.clone();
        move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if listener.accept().is_err() {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        }
    });
    let measured = connection_setup(cluster, api, pairs, target, args).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = accepting.join();
    measured
}

async fn connection_setup(
    cluster: &LabCluster,
    api: &OpenstackApi,
    pairs: &Pairs,
    target: SocketAddr,
    args: &NetworkBenchArgs,
) -> anyhow::Result<()> {
    let ip = target.ip();
    // The target's port gets one group of its own. Its rules are created through the
    // Kubernetes face with names chosen so the data plane (which orders a port's rules by
    // name) puts the one admitting the measured traffic after all the others: every new
    // connection is checked against every rule before it is let in.
    let group = api
        .create(
            "security-groups",
            "security_group",
            json!({"name": "bench-rules"}),
        )
        .await?;
    let client = cluster.server.client().await?;
    let rules: Api<DynamicObject> = Api::namespaced_with(
        client,
        "admin",
        &network_kind("SecurityGroupRule", "securitygrouprules"),
    );
    let rule = |name: String, port: u16, remote: String| {
        let rules = rules.clone();
        let group = group.clone();
        async move {
            let rule: DynamicObject = serde_json::from_value(json!({
                "apiVersion": "network.ronghe.io/v1", "kind": "SecurityGroupRule",
                "metadata": {"name": name, "labels": {"bench": "rules"}},
                "spec": {"securityGroupId": group, "direction": "ingress", "ethertype": "IPv4",
                         "protocol": "tcp", "portRangeMin": port, "portRangeMax": port,
                         "remoteIpPrefix": remote},
            }))?;
            rules.create(&PostParams::default(), &rule).await?;
            anyhow::Ok(())
        }
    };
    rule("zz-admit".into(), target.port(), CIDR.into()).await?;
    let port: Value = api
        .expect(
            200,
            "GET",
            &format!("/ports?fixed_ips=ip_address%3D{ip}"),
            None,
        )
        .await?;
    let port_id = port["ports"][0]["id"]
        .as_str()
        .context("the target pod's port")?;
    api.expect(
        200,
        "PUT",
        &format!("/ports/{port_id}"),
        Some(json!({"port": {"security_groups": [group]}})),
    )
    .await?;
    let host = cluster.host(0).netns.clone();
    let ruleset = || -> anyhow::Result<String> {
        let listed = cluster
            .lab()
            .exec(&host, &["nft", "list", "table", "inet", "ronghe"])?;
        Ok(String::from_utf8_lossy(&listed.stdout).into_owned())
    };
    let admitting = format!("dport {}", target.port());
    wait_for(
        Duration::from_secs(120),
        "the admitting rule in the host's nftables",
        || async { Ok(ruleset()?.contains(&admitting).then_some(())) },
    )
    .await?;
    // A first round warms caches (ARP, conntrack, the listener), unmeasured.
    connect_times(cluster, &pairs.client_netns, target, args.connects)?;
    let before = connect_times(cluster, &pairs.client_netns, target, args.connects)?;

    let started = Instant::now();
    concurrently(0..args.rules, args.clients, |index| {
        rule(
            format!("bench-{index:05}"),
            u16::try_from(20000 + index).unwrap_or(u16::MAX),
            format!("10.250.{}.{}/32", index / 256, index % 256),
        )
    })
    .await?;
    let created = started.elapsed();
    let last = format!("dport {}", 20000 + args.rules.saturating_sub(1));
    let listed = wait_for(
        Duration::from_secs(300),
        "the rules in the host's nftables",
        || async { Ok(Some(ruleset()?).filter(|listed| listed.contains(&last))) },
    )
    .await?;
    println!(
        "{} security group rules created through the API in {:.2} s; all in their host's nftables {:.2} s after the first create",
        args.rules,
        created.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    let checked = rules_before_admitting(&listed, &last);
    let after = connect_times(cluster, &pairs.client_netns, target, args.connects)?;
    rules
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels("bench=rules"),
        )
        .await?;
    wait_for(
        Duration::from_secs(300),
        "the rules gone from the host's nftables",
        || async { Ok((!ruleset()?.contains(&admitting)).then_some(())) },
    )
    .await?;
    println!(
        "connection setup ({} TCP connects, pod → pod on one bridge): 1 rule {}; {} rules checked before the admitting one {}",
        args.connects,
        spread_with(before, fine),
        checked,
        spread_with(after, fine),
    );
    Ok(())
}

/// In the ingress chain holding the bench's rules (the one naming `last`), how many of
/// them (remote 10.250.0.0/16) come before the first other rule that accepts (`return`).
fn rules_before_admitting(listed: &str, last: &str) -> usize {
    let Some(chain) = listed
        .split("chain ")
        .find(|chain| chain.starts_with("ingress-") && chain.contains(last))
    else {
        return 0;
    };
    chain
        .lines()
        .filter(|line| line.trim_end().ends_with("return") && !line.contains("ct state"))
        .filter(|line| !line.contains("sport 67") && !line.contains("sport 547"))
        .filter(|line| !line.contains("icmpv6 type"))
        .take_while(|line| line.contains("saddr 10.250."))
        .count()
}
