//! The one seam through which the driver runs host commands (`qemu-img`,
//! `qemu-system-x86_64`): every command is logged here, with its arguments, before it runs.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::HypervisorError;

/// The programs the driver runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostCommands {
    pub qemu_system: PathBuf,
    pub qemu_img: PathBuf,
}

impl Default for HostCommands {
    /// Debian's names, found on `PATH`.
    fn default() -> HostCommands {
        HostCommands {
            qemu_system: "qemu-system-x86_64".into(),
            qemu_img: "qemu-img".into(),
        }
    }
}

/// How a command run to the end finished.
#[derive(Clone, Debug)]
pub struct Finished {
    /// `None` when it was killed (by a signal, or because it ran out of time).
    pub code: Option<i32>,
    pub timed_out: bool,
    pub elapsed: Duration,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl HostCommands {
    fn command(&self, program: &Path, args: &[String]) -> tokio::process::Command {
        tracing::info!(program = %program.display(), args = %args.join(" "), "running a host command");
        let mut command = tokio::process::Command::new(program);
        command.args(args).stdin(Stdio::null());
        command
    }

    /// Runs `qemu-img`; its stdout, or its stderr in the error.
    pub async fn qemu_img(&self, args: &[String]) -> Result<Vec<u8>, HypervisorError> {
        let output = self
            .command(&self.qemu_img, args)
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|source| HypervisorError::Spawn {
                program: self.qemu_img.display().to_string(),
                source,
            })?;
        if !output.status.success() {
            return Err(HypervisorError::CommandFailed {
                program: self.qemu_img.display().to_string(),
                args: args.join(" "),
                status: output.status.to_string(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        Ok(output.stdout)
    }

    /// Runs QEMU to its end (a probe, `--version`), killed after `timeout`.
    pub async fn run_qemu(
        &self,
        args: &[String],
        timeout: Duration,
    ) -> Result<Finished, HypervisorError> {
        let started = Instant::now();
        let child = self
            .command(&self.qemu_system, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| HypervisorError::Spawn {
                program: self.qemu_system.display().to_string(),
                source,
            })?;
        // On timeout the future (and with it the child, killed on drop) is dropped.
        match tokio::time::timeout(timeout, child.wait_with_output()).await {
            Ok(Ok(output)) => Ok(Finished {
                code: output.status.code(),
                timed_out: false,
                elapsed: started.elapsed(),
                stdout: output.stdout,
                stderr: output.stderr,
            }),
            Ok(Err(source)) => Err(HypervisorError::Spawn {
                program: self.qemu_system.display().to_string(),
                source,
            }),
            Err(_) => Ok(Finished {
                code: None,
                timed_out: true,
                elapsed: started.elapsed(),
                stdout: Vec::new(),
                stderr: Vec::new(),
            }),
        }
    }

    /// Starts QEMU for a VM, its output appended to `log`, in a process group of its own
    /// (so a signal to the agent's terminal is not the VM's) and left running if the agent
    /// exits (a restarted agent adopts it).
    pub fn spawn_qemu(
        &self,
        args: &[String],
        log: File,
    ) -> Result<tokio::process::Child, HypervisorError> {
        let stderr = log.try_clone().map_err(|source| HypervisorError::Spawn {
            program: self.qemu_system.display().to_string(),
            source,
        })?;
        self.command(&self.qemu_system, args)
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(stderr))
            .process_group(0)
            .kill_on_drop(false)
            .spawn()
            .map_err(|source| HypervisorError::Spawn {
                program: self.qemu_system.display().to_string(),
                source,
            })
    }
}
