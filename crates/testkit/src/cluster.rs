//! A whole cloud on one machine: a `ronghe server` in the root namespace and one
//! `ronghe agent` per host of a [`NetLab`], wiring real tenant networks in the lab's
//! namespaces, with the real kubectl and openstack CLIs and the bootstrap images. The
//! network end-to-end tests and `ronghe bench network` run on it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

use crate::{Kubectl, LabHost, NetLab, Openstack, ServerProcess, host, wait_for};

/// The port agents in the lab listen on (on their underlay address).
const AGENT_PORT: u16 = 10250;

/// One host's agent: how it was started, to start it again.
struct Agent {
    pid: u32,
    args: Vec<String>,
    dir: PathBuf,
}

/// A server, a lab of hosts with an agent each, and the CLIs. Dropping it stops the
/// agents, removes the lab's namespaces, then whatever the agents left (QEMU processes,
/// runc containers, cgroups), and stops the server, even when a test failed half way.
pub struct LabCluster {
    lab: Option<NetLab>,
    agents: Vec<Agent>,
    binary: PathBuf,
    pub server: ServerProcess,
    pub kubectl: Kubectl,
    pub os: Openstack,
}

impl Drop for LabCluster {
    fn drop(&mut self) {
        drop(self.lab.take());
        for agent in &self.agents {
            host::clean_host(&agent.dir);
        }
        let _ = self.server.stop();
    }
}

impl LabCluster {
    /// `hosts` hosts, host `i` named after its namespace, in availability zone `zone<i>`,
    /// its agent (`binary agent`) started with `extra` arguments too; returns once every
    /// node is Ready and the bootstrap images are in.
    pub async fn start(binary: &Path, hosts: usize, extra: &[&str]) -> anyhow::Result<Self> {
        Self::start_with_server(binary, hosts, extra, &[]).await
    }

    /// [`LabCluster::start`] with `server_args` given to the server too.
    pub async fn start_with_server(
        binary: &Path,
        hosts: usize,
        extra: &[&str],
        server_args: &[&str],
    ) -> anyhow::Result<Self> {
        let lab = NetLab::new(hosts)?;
        let server = ServerProcess::start(binary, server_args).await?;
        let kubectl = Kubectl::for_server(&server)?;
        let os = Openstack::for_data_dir(server.data_dir())?;
        let mut cluster = LabCluster {
            lab: Some(lab),
            agents: Vec::new(),
            binary: binary.to_owned(),
            server,
            kubectl,
            os,
        };
        for index in 0..hosts {
            let host = cluster.host(index).clone();
            let endpoint = SocketAddr::from((host.underlay_ip, AGENT_PORT));
            let advertised = cluster.lab().relay_from_root(&host.netns, endpoint)?;
            let dir = cluster
                .server
                .data_dir()
                .join(format!("agent-{}", host.netns));
            let mut args: Vec<String> = [
                "--data-dir",
                dir.to_str().context("a UTF-8 directory")?,
                "--netns-prefix",
                &cluster.lab().prefix_for_host(index),
                "--advertise",
                &advertised.to_string(),
                "--zone",
                &format!("zone{index}"),
            ]
            .map(str::to_owned)
            .into();
            args.extend(extra.iter().map(|arg| (*arg).to_owned()));
            cluster.agents.push(Agent { pid: 0, args, dir });
            cluster.start_agent(index)?;
        }
        for index in 0..hosts {
            cluster.wait_ready(index).await?;
        }
        cluster.server.bootstrap_images()?;
        Ok(cluster)
    }

    fn start_agent(&mut self, index: usize) -> anyhow::Result<()> {
        let lab = self
            .lab
            .as_ref()
            .expect("the lab lives as long as the cluster");
        let agent = &self.agents[index];
        let args: Vec<&str> = agent.args.iter().map(String::as_str).collect();
        let pid = lab.start_agent(index, &self.binary, &self.server, &args)?;
        self.agents[index].pid = pid;
        Ok(())
    }

    /// Waits until host `index`'s node is Ready.
    async fn wait_ready(&self, index: usize) -> anyhow::Result<()> {
        let name = self.host(index).netns.clone();
        wait_for(
            Duration::from_secs(60),
            &format!("node {name} Ready"),
            || async {
                let ready = self.kubectl.ok(&[
                    "get",
                    "node",
                    &name,
                    "-o",
                    "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
                ]);
                Ok(ready.is_ok_and(|r| r == "True").then_some(()))
            },
        )
        .await
    }

    /// Stops host `index`'s agent (SIGTERM) and starts it again with the same arguments;
    /// its workloads and their wiring stay where they are meanwhile.
    pub fn restart_agent(&mut self, index: usize) -> anyhow::Result<()> {
        let status = self.lab().stop_process(self.agents[index].pid)?;
        anyhow::ensure!(
            status.success(),
            "host {index}'s agent stopped with {status}"
        );
        self.start_agent(index)
    }

    /// Takes host `index` off the lab as a machine that dies does: the relays into it
    /// silenced, its agent stopped (SIGTERM), the load-balancer proxies and QEMU processes
    /// it started killed (they outlive an agent stop on purpose), and its underlay and
    /// external links down, so nothing of it answers on any network any more. Its
    /// namespaces stay until the lab is dropped.
    pub fn kill_host(&mut self, index: usize) -> anyhow::Result<()> {
        let netns = self.host(index).netns.clone();
        // The server reaches the agent's endpoint through a relay that would still find
        // the namespace's kernel answering: make it as silent as a dead host, first.
        self.lab().silence_relays_into(&netns)?;
        let pid = std::mem::take(&mut self.agents[index].pid);
        if pid != 0 {
            self.lab().stop_process(pid)?;
        }
        // They were started by the agent, not the lab: end them by their ids.
        for pid in host::processes_of(&self.agents[index].dir) {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid])
                .status();
        }
        for link in ["eth0", "eth1"] {
            let _ = self
                .lab()
                .exec(&netns, &["ip", "link", "set", link, "down"])?;
        }
        Ok(())
    }

    /// The log of host `index`'s agent so far.
    pub fn agent_log(&self, index: usize) -> String {
        std::fs::read_to_string(self.lab().agent_log_path(index, &self.server)).unwrap_or_default()
    }

    pub fn lab(&self) -> &NetLab {
        self.lab
            .as_ref()
            .expect("the lab lives as long as the cluster")
    }

    pub fn host(&self, index: usize) -> &LabHost {
        self.lab().host(index)
    }

    /// Network `name` with IPv4 subnet `subnet` of `cidr` (DHCP on), in the admin project
    /// or in `project`.
    pub fn create_network(
        &self,
        name: &str,
        subnet: &str,
        cidr: &str,
        project: Option<&str>,
    ) -> anyhow::Result<()> {
        let in_project: Vec<&str> = project.map(|p| vec!["--project", p]).unwrap_or_default();
        let mut args = vec!["network", "create"];
        args.extend(&in_project);
        args.push(name);
        self.os.ok(&args)?;
        let mut args = vec!["subnet", "create"];
        args.extend(&in_project);
        args.extend(["--network", name, "--subnet-range", cidr, subnet]);
        self.os.ok(&args)?;
        Ok(())
    }

    /// The external network `public`: flat, on the physical network `public` (agents
    /// started with `--physical-network public=eth1`, the lab's external bridge), subnet
    /// 172.24.4.0/24 with the external namespace as its gateway and floating IPs from
    /// .100 to .200.
    pub fn create_public_network(&self) -> anyhow::Result<()> {
        self.os.ok(&[
            "network",
            "create",
            "--external",
            "--provider-network-type",
            "flat",
            "--provider-physical-network",
            "public",
            "public",
        ])?;
        self.os.ok(&[
            "subnet",
            "create",
            "--network",
            "public",
            "--subnet-range",
            "172.24.4.0/24",
            "--gateway",
            &self.lab().external().gateway_ip.to_string(),
            "--no-dhcp",
            "--allocation-pool",
            "start=172.24.4.100,end=172.24.4.200",
            "public-subnet",
        ])?;
        Ok(())
    }

    /// Router `name` with its gateway on `public` and an interface on `subnet`.
    pub fn create_router(&self, name: &str, subnet: &str) -> anyhow::Result<()> {
        self.os.ok(&["router", "create", name])?;
        self.os
            .ok(&["router", "set", "--external-gateway", "public", name])?;
        self.os.ok(&["router", "add", "subnet", name, subnet])?;
        Ok(())
    }

    /// The flavor [`LabCluster::guest`] boots: `m1.tiny`, 1 vCPU, 256 MiB, 1 GiB.
    pub fn create_tiny_flavor(&self) -> anyhow::Result<()> {
        self.os.ok(&[
            "flavor", "create", "--vcpus", "1", "--ram", "256", "--disk", "1", "m1.tiny",
        ])?;
        Ok(())
    }

    /// A busybox pod in the admin project on host `index`, on network `network`, serving
    /// `body` over HTTP on port 8080; returns its IP once it runs.
    pub async fn web_pod(
        &self,
        name: &str,
        index: usize,
        network: &str,
        body: &str,
    ) -> anyhow::Result<String> {
        self.web_pod_in("admin", name, index, network, body).await
    }

    /// [`LabCluster::web_pod`] in the namespace (project) `namespace`.
    pub async fn web_pod_in(
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

    /// A `test-guest` VM of flavor `m1.tiny` on network `network` in zone `zone<index>`;
    /// returns its IP once it is ACTIVE.
    pub async fn guest(&self, name: &str, index: usize, network: &str) -> anyhow::Result<String> {
        self.guest_with(name, index, network, None).await
    }

    /// [`LabCluster::guest`] with user data: test-guest runs a user-data script
    /// (`#!...`) after boot, its output on the console.
    pub async fn guest_with(
        &self,
        name: &str,
        index: usize,
        network: &str,
        user_data: Option<&str>,
    ) -> anyhow::Result<String> {
        let zone = format!("zone{index}");
        let nic = format!("net-id={network}");
        let mut args = vec![
            "server",
            "create",
            "--flavor",
            "m1.tiny",
            "--image",
            "test-guest",
            "--nic",
            &nic,
            "--availability-zone",
            &zone,
            "--wait",
        ];
        let file = tempfile::NamedTempFile::new()?;
        let path = file.path().to_str().context("a UTF-8 path")?.to_owned();
        if let Some(user_data) = user_data {
            std::fs::write(file.path(), user_data)?;
            args.extend(["--user-data", &path]);
        }
        args.push(name);
        self.os.ok(&args)?;
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

    /// The console log of server `name` so far.
    pub fn console(&self, name: &str) -> anyhow::Result<String> {
        self.os.ok(&["console", "log", "show", name])
    }

    /// Runs `command` in pod `name` (namespace admin); returns (exit code, stdout).
    pub fn exec(&self, name: &str, command: &[&str]) -> anyhow::Result<(i32, String)> {
        let mut args = vec!["exec", "-n", "admin", name, "--"];
        args.extend_from_slice(command);
        let output = self.kubectl.run(&args, None)?;
        Ok((output.code.unwrap_or(-1), output.stdout))
    }

    /// An HTTP GET from the external namespace; `None` when it gets no answer within a few
    /// seconds.
    pub fn get_from_outside(&self, url: &str) -> anyhow::Result<Option<String>> {
        self.get_in(&self.lab().external().netns, url)
    }

    /// The body of a GET of `url` from host `index`'s own namespace (where its agent
    /// runs), if it succeeds within 5 s.
    pub fn get_from_host(&self, index: usize, url: &str) -> anyhow::Result<Option<String>> {
        self.get_in(&self.host(index).netns, url)
    }

    fn get_in(&self, netns: &str, url: &str) -> anyhow::Result<Option<String>> {
        let output = self.lab().exec(
            netns,
            &["timeout", "5", "busybox", "wget", "-q", "-O", "-", url],
        )?;
        Ok(output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).into_owned()))
    }

    /// The id of the port holding `ip`.
    pub fn port_with(&self, ip: &str) -> anyhow::Result<String> {
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

    /// A new floating IP on the external network `public`.
    pub fn create_floating_ip(&self) -> anyhow::Result<String> {
        let created = self.os.json(&["floating", "ip", "create", "public"])?;
        created["floating_ip_address"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("a floating IP: {created}"))
    }

    /// The uid of pod `name` in namespace `namespace`.
    pub fn pod_uid(&self, namespace: &str, name: &str) -> anyhow::Result<String> {
        self.kubectl.ok(&[
            "get",
            "pod",
            name,
            "-n",
            namespace,
            "-o",
            "jsonpath={.metadata.uid}",
        ])
    }

    /// The network namespace of pod `name` in namespace `namespace` on host `index`.
    pub fn pod_netns(&self, index: usize, namespace: &str, name: &str) -> anyhow::Result<String> {
        Ok(format!(
            "{}{}",
            self.lab().prefix_for_host(index),
            self.pod_uid(namespace, name)?
        ))
    }
}
