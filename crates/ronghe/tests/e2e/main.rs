//! End-to-end tests with the real drivers: a `ronghe server` whose embedded agent runs pods
//! through runc and VMs through QEMU on this machine, driven by the real kubectl and
//! openstack CLIs, with the bootstrap images (`ronghe images bootstrap`). They need root,
//! runc, QEMU, busybox-static and Debian's kernel (`scripts/test` installs them); without
//! one they say what they skip and why. nextest runs them one at a time
//! (`.config/nextest.toml`): they share this machine's cgroups and CPU.

mod network;
mod pods;
mod pool;
mod vms;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ronghe_testkit::{AgentProcess, Kubectl, ServerProcess};

pub const BINARY: &str = env!("CARGO_BIN_EXE_ronghe");

/// What this machine lacks for real workloads, if anything.
pub fn missing_prerequisite() -> Option<String> {
    if !is_root() {
        return Some("not running as root".into());
    }
    for program in [
        "/usr/sbin/runc",
        "/usr/bin/qemu-system-x86_64",
        "/usr/bin/qemu-img",
    ] {
        if !Path::new(program).exists() {
            return Some(format!("{program} is not installed"));
        }
    }
    if ronghe_images::build::busybox::find_static_busybox().is_err() {
        return Some("busybox-static is not installed".into());
    }
    None
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            == Some("0")
    })
}

/// Skips the calling test, loudly, when a prerequisite is missing.
#[macro_export]
macro_rules! require_real_drivers {
    ($test:expr) => {
        if let Some(why) = $crate::missing_prerequisite() {
            eprintln!("SKIPPED {}: {why}", $test);
            return Ok(());
        }
    };
}

/// A server and the agent running real workloads for it; dropping it stops both and
/// removes whatever the agent left on this machine (containers, mounts, network
/// namespaces, cgroups, QEMU processes), even when the test failed half way.
pub struct Cloud {
    pub server: ServerProcess,
    agent: Option<AgentProcess>,
    agent_dir: PathBuf,
}

impl std::ops::Deref for Cloud {
    type Target = ServerProcess;

    fn deref(&self) -> &ServerProcess {
        &self.server
    }
}

impl Drop for Cloud {
    fn drop(&mut self) {
        drop(self.agent.take());
        let _ = self.server.stop();
        clean_host(&self.agent_dir);
    }
}

/// A server with its embedded agent and the bootstrap images imported.
pub async fn cloud() -> anyhow::Result<Cloud> {
    // Tenant networks are tested in network namespaces of their own (`network.rs`): this
    // agent, in the machine's own namespace, wires none.
    let server =
        ServerProcess::start_with_agent(Path::new(BINARY), &["--agent-network", "none"]).await?;
    let agent_dir = server.data_dir().join("agent");
    let cloud = Cloud {
        server,
        agent: None,
        agent_dir,
    };
    bootstrap_images(&cloud)?;
    Ok(cloud)
}

/// A server without an embedded agent, and a `ronghe agent` for this machine with `args`
/// (its state in the server's data directory).
pub async fn cloud_with_agent(args: &[&str]) -> anyhow::Result<Cloud> {
    let server = ServerProcess::start(Path::new(BINARY), &[]).await?;
    let agent_dir = server.data_dir().join("host-agent");
    let dir = agent_dir
        .to_str()
        .context("a UTF-8 data directory")?
        .to_owned();
    let mut all = vec!["--data-dir", &dir, "--network", "none"];
    all.extend_from_slice(args);
    let agent = AgentProcess::start(Path::new(BINARY), &server, &all)?;
    let cloud = Cloud {
        server,
        agent: Some(agent),
        agent_dir,
    };
    bootstrap_images(&cloud)?;
    Ok(cloud)
}

/// Removes what an agent with its state in `agent_dir` left: its QEMU processes (by pid,
/// found by their command line naming the directory), and through a fresh container
/// driver on the same directory, its containers, mounts, network namespaces and cgroups.
fn clean_host(agent_dir: &Path) {
    let prefix = agent_dir.to_string_lossy().into_owned();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains("qemu-system") && cmdline.contains(&prefix) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
    let containers = agent_dir.join("containers");
    if !containers.exists() {
        return;
    }
    let recovered = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            let config = ronghe_containers::RuncConfig::for_agent(containers, "127.0.0.1");
            let images = std::sync::Arc::new(ronghe_containers::StaticImages::new());
            ronghe_containers::RuncDriver::new(config, images).await?;
            anyhow::Ok(())
        })
    })
    .join();
    if !matches!(recovered, Ok(Ok(()))) {
        eprintln!("cleaning up {} failed: {recovered:?}", agent_dir.display());
    }
}

/// `ronghe images bootstrap` against a server.
pub fn bootstrap_images(server: &ServerProcess) -> anyhow::Result<()> {
    let output = Command::new(BINARY)
        .args(["images", "bootstrap", "--data-dir"])
        .arg(server.data_dir())
        .output()
        .context("running ronghe images bootstrap")?;
    if !output.status.success() {
        bail!(
            "ronghe images bootstrap failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

pub fn kubectl(server: &ServerProcess) -> anyhow::Result<Kubectl> {
    let binary = Kubectl::find().context("kubectl is not installed")?;
    Kubectl::new(binary, &server.kubeconfig_path())
}

/// Polls until `check` returns `Some`, or fails after `within`.
pub async fn wait_for<T, F, Fut>(within: Duration, what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("timed out after {within:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What the agent in `data_dir` left on this machine: runc containers, mounts under its
/// directory, and QEMU processes whose command line names it.
pub fn leftovers(agent_dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut found = Vec::new();
    let root = agent_dir.join("containers").join("runc");
    if root.exists() {
        let output = Command::new("/usr/sbin/runc")
            .arg("--root")
            .arg(&root)
            .args(["list", "-q"])
            .output()?;
        for id in String::from_utf8_lossy(&output.stdout).lines() {
            if !id.trim().is_empty() {
                found.push(format!("runc container {id}"));
            }
        }
    }
    let prefix = agent_dir.to_string_lossy().into_owned();
    for line in std::fs::read_to_string("/proc/self/mountinfo")?.lines() {
        if let Some(mount_point) = line.split_whitespace().nth(4)
            && mount_point.starts_with(&prefix)
        {
            found.push(format!("mount {mount_point}"));
        }
    }
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains("qemu-system") && cmdline.contains(&prefix) {
            found.push(format!(
                "qemu process {}",
                entry.file_name().to_string_lossy()
            ));
        }
    }
    Ok(found)
}

impl Cloud {
    /// Where the agent keeps its state.
    pub fn agent_dir(&self) -> &Path {
        &self.agent_dir
    }
}
