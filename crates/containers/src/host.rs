//! The one seam between the driver and the host: every command it runs (`runc`, `ip`)
//! and every mount it makes or removes goes through [`HostSeam`], and is logged there.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use rustix::mount::{MountFlags, UnmountFlags};
use tokio::process::Command;

use crate::error::{Error, Result};

/// How the driver reaches the host.
#[derive(Clone, Debug)]
pub struct HostSeam {
    runc: PathBuf,
    /// runc's state directory (`runc --root`): only this driver's containers live there.
    runc_root: PathBuf,
    ip: PathBuf,
}

impl HostSeam {
    pub fn new(runc: PathBuf, runc_root: PathBuf, ip: PathBuf) -> HostSeam {
        HostSeam {
            runc,
            runc_root,
            ip,
        }
    }

    /// A `runc` command with the driver's state directory (and runc's own log in
    /// `log_file`, so runc's errors stay out of the container's output), for the caller to
    /// wire up and spawn (long-running ones: `run`, `exec`).
    pub fn runc_command(&self, log_file: Option<&Path>, args: &[&str]) -> Command {
        let mut command = Command::new(&self.runc);
        command.arg("--root").arg(&self.runc_root);
        if let Some(log_file) = log_file {
            command
                .arg("--log")
                .arg(log_file)
                .args(["--log-format", "json"]);
        }
        command.args(args);
        tracing::debug!(runc = ?args, "runc");
        command
    }

    /// Runs `runc ARGS` to the end; its standard output.
    pub async fn runc(&self, args: &[&str]) -> Result<String> {
        let command = self.runc_command(None, args);
        finish(command, &format!("runc {}", args.join(" "))).await
    }

    /// Runs `ip ARGS` to the end.
    pub async fn ip(&self, args: &[&str]) -> Result<String> {
        let mut command = Command::new(&self.ip);
        command.args(args);
        tracing::debug!(ip = ?args, "ip");
        finish(command, &format!("ip {}", args.join(" "))).await
    }

    /// Mounts an overlay filesystem of `layers` (lowest first) under `upper` at `target`.
    pub fn mount_overlay(
        &self,
        layers: &[PathBuf],
        upper: &Path,
        work: &Path,
        target: &Path,
    ) -> Result<()> {
        // overlayfs lists the lower directories top first.
        let lower: Vec<String> = layers
            .iter()
            .rev()
            .map(|layer| layer.display().to_string())
            .collect();
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.join(":"),
            upper.display(),
            work.display()
        );
        tracing::debug!(target = %target.display(), %options, "mount overlay");
        let data = std::ffi::CString::new(options).map_err(|_| {
            Error::Config(format!(
                "layer paths of {} hold a NUL byte",
                target.display()
            ))
        })?;
        rustix::mount::mount(
            "overlay",
            target,
            "overlay",
            MountFlags::empty(),
            Some(data.as_c_str()),
        )
        .map_err(|source| Error::Mount {
            action: "mount an overlay on",
            path: target.to_path_buf(),
            source,
        })
    }

    /// Unmounts `target`; a busy mount is detached (it goes when its last user does).
    pub fn unmount(&self, target: &Path) -> Result<()> {
        tracing::debug!(target = %target.display(), "umount");
        match rustix::mount::unmount(target, UnmountFlags::empty()) {
            Ok(()) => Ok(()),
            Err(rustix::io::Errno::BUSY) => rustix::mount::unmount(target, UnmountFlags::DETACH)
                .map_err(|source| Error::Mount {
                    action: "unmount",
                    path: target.to_path_buf(),
                    source,
                }),
            Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOENT) => Ok(()),
            Err(source) => Err(Error::Mount {
                action: "unmount",
                path: target.to_path_buf(),
                source,
            }),
        }
    }

    /// Removes an empty directory (a cgroup); one already gone is fine.
    pub fn remove_dir(&self, path: &Path) -> Result<()> {
        tracing::debug!(path = %path.display(), "rmdir");
        match std::fs::remove_dir(path) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::io("remove", path)(error))
            }
            _ => Ok(()),
        }
    }
}

/// Runs a command to the end with no input; its standard output, or its standard error
/// as the failure.
async fn finish(mut command: Command, shown: &str) -> Result<String> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let output = command.output().await.map_err(|source| Error::Spawn {
        command: shown.to_owned(),
        source,
    })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        tracing::debug!(command = %shown, %stderr, status = ?output.status, "host command failed");
        Err(Error::Command {
            command: shown.to_owned(),
            stderr,
        })
    }
}

/// The mount points under `root` (deepest first), from `/proc/self/mountinfo`.
pub fn mounts_under(root: &Path) -> Vec<PathBuf> {
    let Ok(table) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = table
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape_mount_path)
        .map(PathBuf::from)
        .filter(|path| path.starts_with(root))
        .collect();
    found.sort_by_key(|path| std::cmp::Reverse(path.components().count()));
    found.dedup();
    found
}

/// The cgroup hierarchies' mount points (v1 controllers and the unified one).
pub fn cgroup_hierarchies() -> Vec<PathBuf> {
    let Ok(table) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    table
        .lines()
        .filter_map(|line| {
            let (fields, after) = line.split_once(" - ")?;
            let filesystem = after.split(' ').next()?;
            matches!(filesystem, "cgroup" | "cgroup2")
                .then(|| fields.split(' ').nth(4).map(unescape_mount_path))
                .flatten()
        })
        .map(PathBuf::from)
        .collect()
}

/// mountinfo writes space, tab, newline and backslash as octal escapes.
fn unescape_mount_path(text: &str) -> String {
    text.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}
