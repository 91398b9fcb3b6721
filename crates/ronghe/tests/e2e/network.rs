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
    /// `hosts` hosts, host `i` named after its namespace, in zone `zone<i>`.
    async fn start(hosts: usize) -> anyhow::Result<Cluster> {
        let lab = NetLab::new(hosts)?;
        let server = ServerProcess::start(Path::new(BINARY), &[]).await?;
        let mut agent_dirs = Vec::new();
        for index in 0..hosts {
            let host = lab.host(index).clone();
            let endpoint = SocketAddr::from((host.underlay_ip, AGENT_PORT));
            let advertised = lab.relay_from_root(&host.netns, endpoint)?;
            let dir = server.data_dir().join(format!("agent-{}", host.netns));
            let zone = format!("zone{index}");
            lab.start_agent(
                index,
                Path::new(BINARY),
                &server,
                &[
                    "--data-dir",
                    dir.to_str().context("a UTF-8 directory")?,
                    "--netns-prefix",
                    &lab.prefix_for_host(index),
                    "--advertise",
                    &advertised.to_string(),
                    "--zone",
                    &zone,
                ],
            )?;
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
        let host = self.host(index).netns.clone();
        let pod = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": "admin",
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
                        .ok(&["get", "pod", name, "-n", "admin", "-o", "json"])?,
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
    let cluster = Cluster::start(2).await?;
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
