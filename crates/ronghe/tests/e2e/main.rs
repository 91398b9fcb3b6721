//! End-to-end tests with the real drivers: a `ronghe server` whose embedded agent runs pods
//! through runc and VMs through QEMU on this machine, driven by the real kubectl and
//! openstack CLIs, with the bootstrap images (`ronghe images bootstrap`). They need root,
//! runc, QEMU, busybox-static and Debian's kernel (`scripts/test` installs them); without
//! one they say what they skip and why. nextest runs them one at a time
//! (`.config/nextest.toml`): they share this machine's cgroups and CPU.

mod dns;
mod load_balancing;
mod network;
mod network_operations;
mod pods;
mod pool;
mod services;
mod vms;

use std::path::{Path, PathBuf};

use anyhow::Context;
use ronghe_testkit::host::clean_host;
pub use ronghe_testkit::host::leftovers;
pub use ronghe_testkit::wait_for;
use ronghe_testkit::{AgentProcess, Kubectl, ServerProcess};

pub const BINARY: &str = env!("CARGO_BIN_EXE_ronghe");

/// What this machine lacks for real workloads, if anything.
pub fn missing_prerequisite() -> Option<String> {
    ronghe_testkit::host::real_drivers_missing()
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

/// `ronghe images bootstrap` against a server.
pub fn bootstrap_images(server: &ServerProcess) -> anyhow::Result<()> {
    server.bootstrap_images()
}

pub fn kubectl(server: &ServerProcess) -> anyhow::Result<Kubectl> {
    Kubectl::for_server(server)
}

impl Cloud {
    /// Where the agent keeps its state.
    pub fn agent_dir(&self) -> &Path {
        &self.agent_dir
    }
}
