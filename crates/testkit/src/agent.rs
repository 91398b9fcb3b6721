//! A `ronghe agent` child process joined to a test server.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::Context;

use crate::ServerProcess;

/// A running agent; dropping it kills the process.
pub struct AgentProcess {
    child: Child,
}

impl AgentProcess {
    /// Starts `binary agent` against `server` with its node credential, plus `args` (such
    /// as `--simulate 3 --vcpus 4`).
    pub fn start(binary: &Path, server: &ServerProcess, args: &[&str]) -> anyhow::Result<Self> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(server.data_dir().join("agent.log"))?;
        let child = Command::new(binary)
            .arg("agent")
            .arg("--server")
            .arg(server.url()?)
            .arg("--token-file")
            .arg(server.data_dir().join("node-token"))
            // Its endpoint on a free loopback port, so agents of tests running side by
            // side do not fight over 10250 (`args` may still name another).
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {} agent", binary.display()))?;
        Ok(Self { child })
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
