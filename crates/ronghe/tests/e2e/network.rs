//! Tenant networks end to end, on hosts simulated by network namespaces (`NetLab`): a
//! server in this machine's namespace, one `ronghe agent` per host namespace wiring its
//! pods (runc) and VMs (QEMU) with the real Linux data plane, the real kubectl and
//! openstack CLIs. Test traffic never leaves the lab's namespaces.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use ronghe_testkit::{Kubectl, NetLab, Openstack, ServerProcess};
use serde_json::Value;

use super::{BINARY, bootstrap_images, clean_host, kubectl, require_real_drivers, wait_for};

/// The port agents in the lab listen on (on their underlay address).
const AGENT_PORT: u16 = 10250;

/// A server, a lab of hosts with an agent each, and the CLIs; dropping it stops the agents,
/// removes the lab's namespaces, then whatever the agents left (QEMU processes, runc
/// containers, cgroups), and stops the server.
struct Cluster {
    lab: Option<NetLab>,
    agent_dirs: Vec<PathBuf>,
    server: ServerProcess,
    kubectl: Kubectl,
    os: Openstack,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        drop(self.lab.take());
        for dir in &self.agent_dirs {
            clean_host(dir);
        }
        let _ = self.server.stop();
    }
}

impl Cluster {
    /// `hosts` hosts, host `i` named after its namespace, in zone `zone<i>`, its agent
    /// started with `extra` arguments too.
    async fn start(hosts: usize, extra: &[&str]) -> anyhow::Result<Cluster> {
        let lab = NetLab::new(hosts)?;
        let server = ServerProcess::start(Path::new(BINARY), &[]).await?;
        let mut agent_dirs = Vec::new();
        for index in 0..hosts {
            let host = lab.host(index).clone();
            let endpoint = SocketAddr::from((host.underlay_ip, AGENT_PORT));
            let advertised = lab.relay_from_root(&host.netns, endpoint)?;
            let dir = server.data_dir().join(format!("agent-{}", host.netns));
            let (zone, prefix, advertised) = (
                format!("zone{index}"),
                lab.prefix_for_host(index),
                advertised.to_string(),
            );
            let mut args = vec![
                "--data-dir",
                dir.to_str().context("a UTF-8 directory")?,
                "--netns-prefix",
                &prefix,
                "--advertise",
                &advertised,
                "--zone",
                &zone,
            ];
            args.extend_from_slice(extra);
            lab.start_agent(index, Path::new(BINARY), &server, &args)?;
            agent_dirs.push(dir);
        }
        let kubectl = kubectl(&server)?;
        let os = Openstack::new(
            Openstack::find().context("the openstack CLI is missing: run ./scripts/test")?,
            server.data_dir(),
        )?;
        let cluster = Cluster {
            lab: Some(lab),
            agent_dirs,
            server,
            kubectl,
            os,
        };
        for index in 0..hosts {
            let name = cluster.host(index).netns.clone();
            wait_for(
                Duration::from_secs(60),
                &format!("node {name} Ready"),
                || async {
                    let ready = cluster.kubectl.ok(&[
                        "get",
                        "node",
                        &name,
                        "-o",
                        "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
                    ]);
                    Ok(ready.is_ok_and(|r| r == "True").then_some(()))
                },
            )
            .await?;
        }
        bootstrap_images(&cluster.server)?;
        Ok(cluster)
    }

    fn lab(&self) -> &NetLab {
        self.lab
            .as_ref()
            .expect("the lab lives as long as the cluster")
    }

    fn host(&self, index: usize) -> &ronghe_testkit::LabHost {
        self.lab().host(index)
    }

    /// A busybox pod in the admin project on host `index`, on network `network`, serving
    /// `body` over HTTP on port 8080; returns its IP once it runs.
    async fn web_pod(
        &self,
        name: &str,
        index: usize,
        network: &str,
        body: &str,
    ) -> anyhow::Result<String> {
        self.web_pod_in("admin", name, index, network, body).await
    }

    /// [`Cluster::web_pod`] in the namespace (project) `namespace`.
    async fn web_pod_in(
        &self,
        namespace: &str,
        name: &str,
        index: usize,
        network: &str,
        body: &str,
    ) -> anyhow::Result<String> {
        let host = self.host(index).netns.clone();
        let pod = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "annotations": {"network.ronghe.io/network": network},
            },
            "spec": {
                "nodeSelector": {"kubernetes.io/hostname": host},
                "containers": [{
                    "name": "web",
                    "image": "busybox",
                    "command": ["sh", "-c", format!(
                        "mkdir -p /www && echo {body} > /www/index.html && exec httpd -f -p 8080 -h /www"
                    )],
                }],
            },
        });
        self.kubectl
            .with_stdin(&["apply", "-f", "-"], &pod.to_string())?;
        wait_for(
            Duration::from_secs(120),
            &format!("pod {name} Running with an IP"),
            || async {
                let pod: Value = serde_json::from_str(
                    &self
                        .kubectl
                        .ok(&["get", "pod", name, "-n", namespace, "-o", "json"])?,
                )?;
                let ip = pod["status"]["podIP"].as_str().map(str::to_owned);
                Ok((pod["status"]["phase"] == "Running")
                    .then_some(ip)
                    .flatten())
            },
        )
        .await
    }

    /// A `test-guest` VM on network `network` in zone `zone<index>`; returns its IP once
    /// it is ACTIVE.
    async fn guest(&self, name: &str, index: usize, network: &str) -> anyhow::Result<String> {
        let zone = format!("zone{index}");
        self.os.ok(&[
            "server",
            "create",
            "--flavor",
            "m1.tiny",
            "--image",
            "test-guest",
            "--nic",
            &format!("net-id={network}"),
            "--availability-zone",
            &zone,
            "--wait",
            name,
        ])?;
        let shown = self.os.json(&["server", "show", name])?;
        anyhow::ensure!(shown["status"] == "ACTIVE", "{name} is not ACTIVE: {shown}");
        let addresses = &shown["addresses"];
        addresses
            .as_object()
            .and_then(|networks| networks.values().next())
            .and_then(|ips| ips.as_array()?.first()?.as_str().map(str::to_owned))
            .or_else(|| {
                // Older views show "net=ip".
                addresses.as_str()?.split('=').nth(1).map(str::to_owned)
            })
            .with_context(|| format!("{name} shows no address: {shown}"))
    }

    /// Runs `command` in pod `name` (namespace admin); returns (exit code, stdout).
    fn exec(&self, name: &str, command: &[&str]) -> anyhow::Result<(i32, String)> {
        let mut args = vec!["exec", "-n", "admin", name, "--"];
        args.extend_from_slice(command);
        let output = self.kubectl.run(&args, None)?;
        Ok((output.code.unwrap_or(-1), output.stdout))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_and_a_vm_on_two_hosts_reach_each_other_over_vxlan() -> anyhow::Result<()> {
    require_real_drivers!("a_pod_and_a_vm_on_two_hosts_reach_each_other_over_vxlan");
    if let Err(why) = NetLab::available() {
        eprintln!("SKIPPED a_pod_and_a_vm_on_two_hosts_reach_each_other_over_vxlan: {why}");
        return Ok(());
    }
    let cluster = Cluster::start(2, &[]).await?;
    let os = &cluster.os;
    os.ok(&["network", "create", "net1"])?;
    os.ok(&[
        "subnet",
        "create",
        "--network",
        "net1",
        "--subnet-range",
        "10.1.0.0/24",
        "sub1",
    ])?;
    os.ok(&[
        "flavor", "create", "--vcpus", "1", "--ram", "256", "--disk", "1", "m1.tiny",
    ])?;

    let pod_ip = cluster.web_pod("web", 0, "net1", "pod-says-hi").await?;
    assert!(
        pod_ip.starts_with("10.1.0."),
        "the pod's IP {pod_ip} is on net1"
    );
    let vm_ip = cluster.guest("guest", 1, "net1").await?;
    assert!(
        vm_ip.starts_with("10.1.0."),
        "the VM's IP {vm_ip} is on net1"
    );

    // The guest takes its address by DHCP once booted (TCG is slow), then serves its
    // hostname on port 80.
    let url = format!("http://{vm_ip}/");
    let body = wait_for(
        Duration::from_secs(240),
        "the VM answering the pod",
        || async {
            // (Debian's busybox 1.35 wget crashes with `-T`: `timeout` bounds it instead.)
            let (code, out) =
                cluster.exec("web", &["timeout", "5", "wget", "-q", "-O", "-", &url])?;
            Ok((code == 0).then_some(out))
        },
    )
    .await?;
    assert!(
        body.contains("guest"),
        "the VM answers with its hostname: {body:?}"
    );
    let (code, out) = cluster.exec("web", &["ping", "-c", "3", "-W", "2", &vm_ip])?;
    assert_eq!(code, 0, "the pod pings the VM across hosts: {out}");

    // Both ports are bound to their hosts and ACTIVE.
    let ports = os.json(&["port", "list", "--network", "net1", "--long"])?;
    let ports = ports.as_array().context("a port list")?;
    for ip in [&pod_ip, &vm_ip] {
        let port = ports
            .iter()
            .find(|p| p["Fixed IP Addresses"].to_string().contains(ip.as_str()))
            .with_context(|| format!("no port has {ip}: {ports:?}"))?;
        assert_eq!(port["Status"], "ACTIVE", "{port}");
    }
    Ok(())
}

impl Cluster {
    /// An HTTP GET from the external namespace; `None` when it gets no answer within a few
    /// seconds.
    fn get_from_outside(&self, url: &str) -> anyhow::Result<Option<String>> {
        let external = self.lab().external().netns.clone();
        let output = self.lab().exec(
            &external,
            &["timeout", "5", "busybox", "wget", "-q", "-O", "-", url],
        )?;
        Ok(output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).into_owned()))
    }

    /// The id of the port holding `ip`.
    fn port_with(&self, ip: &str) -> anyhow::Result<String> {
        let ports = self
            .os
            .json(&["port", "list", "--fixed-ip", &format!("ip-address={ip}")])?;
        ports
            .as_array()
            .and_then(|ports| ports.first())
            .and_then(|port| port["ID"].as_str())
            .map(str::to_owned)
            .with_context(|| format!("no port holds {ip}: {ports}"))
    }

    fn create_floating_ip(&self) -> anyhow::Result<String> {
        let created = self.os.json(&["floating", "ip", "create", "public"])?;
        created["floating_ip_address"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("a floating IP: {created}"))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn routers_floating_ips_port_forwardings_and_security_groups_work_from_outside()
-> anyhow::Result<()> {
    let test = "routers_floating_ips_port_forwardings_and_security_groups_work_from_outside";
    require_real_drivers!(test);
    if let Err(why) = NetLab::available() {
        eprintln!("SKIPPED {test}: {why}");
        return Ok(());
    }
    let cluster = Cluster::start(2, &["--physical-network", "public=eth1"]).await?;
    let os = &cluster.os;
    os.ok(&[
        "network",
        "create",
        "--external",
        "--provider-network-type",
        "flat",
        "--provider-physical-network",
        "public",
        "public",
    ])?;
    os.ok(&[
        "subnet",
        "create",
        "--network",
        "public",
        "--subnet-range",
        "172.24.4.0/24",
        "--gateway",
        "172.24.4.1",
        "--no-dhcp",
        "--allocation-pool",
        "start=172.24.4.100,end=172.24.4.200",
        "public-subnet",
    ])?;
    os.ok(&["network", "create", "net1"])?;
    os.ok(&[
        "subnet",
        "create",
        "--network",
        "net1",
        "--subnet-range",
        "10.1.0.0/24",
        "sub1",
    ])?;
    os.ok(&["router", "create", "r1"])?;
    os.ok(&["router", "set", "--external-gateway", "public", "r1"])?;
    os.ok(&["router", "add", "subnet", "r1", "sub1"])?;
    os.ok(&[
        "flavor", "create", "--vcpus", "1", "--ram", "256", "--disk", "1", "m1.tiny",
    ])?;
    let pod_ip = cluster.web_pod("web", 0, "net1", "pod-says-hi").await?;
    let vm_ip = cluster.guest("guest", 1, "net1").await?;

    // Port forwarding: FIP:8080 → the pod's 8080, allowed by a rule for 8080.
    os.ok(&[
        "security",
        "group",
        "rule",
        "create",
        "--protocol",
        "tcp",
        "--dst-port",
        "8080",
        "--remote-ip",
        "0.0.0.0/0",
        "default",
    ])?;
    let forwarded = cluster.create_floating_ip()?;
    let pod_port = cluster.port_with(&pod_ip)?;
    os.ok(&[
        "floating",
        "ip",
        "port",
        "forwarding",
        "create",
        "--internal-ip-address",
        &pod_ip,
        "--port",
        &pod_port,
        "--internal-protocol-port",
        "8080",
        "--external-protocol-port",
        "8080",
        "--protocol",
        "tcp",
        &forwarded,
    ])?;
    let url = format!("http://{forwarded}:8080/");
    let body = wait_for(
        Duration::from_secs(120),
        "the pod through its port forwarding",
        || async { cluster.get_from_outside(&url) },
    )
    .await?;
    assert!(body.contains("pod-says-hi"), "{body:?}");

    // SNAT: the pod reaches the external network from the router's gateway address.
    let external_ip = cluster.lab().external().gateway_ip;
    let listener = cluster.lab().tcp_listen_in(
        &cluster.lab().external().netns,
        SocketAddr::from((external_ip, 8000)),
    )?;
    let accepting = std::thread::spawn(move || -> anyhow::Result<std::net::IpAddr> {
        use std::io::{Read, Write};
        let (mut stream, peer) = listener.accept()?;
        let mut request = [0u8; 1024];
        let _ = stream.read(&mut request)?;
        stream.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 7\r\n\r\noutside")?;
        Ok(peer.ip())
    });
    let outside = format!("http://{external_ip}:8000/");
    let (code, out) = cluster.exec("web", &["timeout", "10", "wget", "-q", "-O", "-", &outside])?;
    assert_eq!(code, 0, "the pod reaches the external network: {out}");
    assert_eq!(out, "outside");
    let seen = accepting
        .join()
        .map_err(|_| anyhow::anyhow!("the listener panicked"))??;
    let gateway = os.json(&["router", "show", "r1"])?;
    assert!(
        gateway["external_gateway_info"]
            .to_string()
            .contains(&seen.to_string()),
        "the external network saw the router's gateway address {seen}, not the pod's: {gateway}"
    );

    // A floating IP on the VM: port 80 is closed by the default group until a rule opens
    // it, and closed again once the rule is removed.
    let floating = cluster.create_floating_ip()?;
    let vm_port = cluster.port_with(&vm_ip)?;
    os.ok(&["floating", "ip", "set", "--port", &vm_port, &floating])?;
    let vm_url = format!("http://{floating}/");
    assert_eq!(
        cluster.get_from_outside(&vm_url)?,
        None,
        "no rule allows port 80 from outside yet"
    );
    let rule = os.json(&[
        "security",
        "group",
        "rule",
        "create",
        "--protocol",
        "tcp",
        "--dst-port",
        "80",
        "--remote-ip",
        "0.0.0.0/0",
        "default",
    ])?;
    let rule_id = rule["id"].as_str().context("a rule id")?.to_owned();
    let body = wait_for(
        Duration::from_secs(240),
        "the VM through its floating IP",
        || async { cluster.get_from_outside(&vm_url) },
    )
    .await?;
    assert!(body.contains("guest"), "{body:?}");
    os.ok(&["security", "group", "rule", "delete", &rule_id])?;
    wait_for(Duration::from_secs(60), "port 80 closed again", || async {
        Ok(cluster.get_from_outside(&vm_url)?.is_none().then_some(()))
    })
    .await?;
    assert_eq!(
        cluster.get_from_outside(&vm_url)?,
        None,
        "port 80 stays closed"
    );
    // The forwarding to the pod, under its own rule, is untouched.
    assert!(
        cluster
            .get_from_outside(&url)?
            .is_some_and(|b| b.contains("pod-says-hi"))
    );
    Ok(())
}

/// The uid of pod `name` in namespace `namespace`.
fn pod_uid(cluster: &Cluster, namespace: &str, name: &str) -> anyhow::Result<String> {
    cluster.kubectl.ok(&[
        "get",
        "pod",
        name,
        "-n",
        namespace,
        "-o",
        "jsonpath={.metadata.uid}",
    ])
}

#[tokio::test(flavor = "multi_thread")]
async fn tenants_with_one_cidr_stay_apart_and_a_spoofing_pod_is_contained() -> anyhow::Result<()> {
    let test = "tenants_with_one_cidr_stay_apart_and_a_spoofing_pod_is_contained";
    require_real_drivers!(test);
    if let Err(why) = NetLab::available() {
        eprintln!("SKIPPED {test}: {why}");
        return Ok(());
    }
    let cluster = Cluster::start(2, &[]).await?;
    let os = &cluster.os;
    os.ok(&["project", "create", "other"])?;
    os.ok(&["network", "create", "net-a"])?;
    os.ok(&[
        "subnet",
        "create",
        "--network",
        "net-a",
        "--subnet-range",
        "10.5.0.0/24",
        "sub-a",
    ])?;
    os.ok(&["network", "create", "--project", "other", "net-b"])?;
    os.ok(&[
        "subnet",
        "create",
        "--project",
        "other",
        "--network",
        "net-b",
        "--subnet-range",
        "10.5.0.0/24",
        "sub-b",
    ])?;
    wait_for(
        Duration::from_secs(30),
        "the other project's namespace",
        || async {
            Ok(cluster
                .kubectl
                .ok(&["get", "namespace", "other"])
                .is_ok()
                .then_some(()))
        },
    )
    .await?;
    let a1 = cluster.web_pod("a1", 0, "net-a", "pod-a1").await?;
    let a2 = cluster.web_pod("a2", 1, "net-a", "pod-a2").await?;
    let b1 = cluster
        .web_pod_in("other", "b1", 1, "net-b", "pod-b1")
        .await?;
    for ip in [&a1, &a2, &b1] {
        assert!(ip.starts_with("10.5.0."), "{ip} is on 10.5.0.0/24");
    }

    // Same tenant, across hosts: through.
    let url = format!("http://{a2}:8080/");
    let body = wait_for(Duration::from_secs(60), "a1 reaching a2", || async {
        let (code, out) = cluster.exec("a1", &["timeout", "5", "wget", "-q", "-O", "-", &url])?;
        Ok((code == 0).then_some(out))
    })
    .await?;
    assert!(body.contains("pod-a2"), "{body:?}");

    // The other tenant's pod, by its address on the same CIDR: never the other tenant's
    // answer (the address is either free on net-a, or another net-a port's).
    let url = format!("http://{b1}:8080/");
    for _ in 0..3 {
        let (_, out) = cluster.exec("a1", &["timeout", "3", "wget", "-q", "-O", "-", &url])?;
        assert!(
            !out.contains("pod-b1"),
            "a1 reached the other tenant's pod: {out:?}"
        );
    }

    // a1 sends from an address not its own (added behind its back, in its namespace):
    // nothing gets through, while its own address still does.
    let netns = format!(
        "{}{}",
        cluster.lab().prefix_for_host(0),
        pod_uid(&cluster, "admin", "a1")?
    );
    let lab = cluster.lab();
    let spoofed = "10.5.0.250";
    lab.exec(
        &netns,
        &["ip", "addr", "add", &format!("{spoofed}/24"), "dev", "eth0"],
    )
    .and_then(|output| {
        anyhow::ensure!(output.status.success(), "adding {spoofed}: {output:?}");
        Ok(())
    })?;
    let own = lab.exec(&netns, &["busybox", "ping", "-c", "2", "-W", "2", &a2])?;
    assert!(
        own.status.success(),
        "a1 pings a2 from its own address: {own:?}"
    );
    let spoof = lab.exec(
        &netns,
        &["busybox", "ping", "-c", "2", "-W", "2", "-I", spoofed, &a2],
    )?;
    assert!(
        !spoof.status.success(),
        "a1's spoofed pings got through: {spoof:?}"
    );
    Ok(())
}
