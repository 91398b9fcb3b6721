//! The lab's seams onto the machine: the one function that runs host commands (`ip`,
//! logged), the listing of named network namespaces, and threads that enter one of them so
//! the sockets and processes they create belong to that namespace.

use std::fs::File;
use std::io::Write as _;
use std::os::fd::AsFd as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{Context, anyhow, bail};
use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};

/// Where `ip netns` keeps its named namespaces (bind mounts of `/proc/<pid>/ns/net`).
pub(crate) const NETNS_DIR: &str = "/run/netns";

/// The bind mount that names `netns`.
pub(crate) fn netns_path(netns: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(netns)
}

/// The names of every named network namespace on the machine (none when the directory
/// does not exist yet).
pub(crate) fn list_netns() -> anyhow::Result<Vec<String>> {
    let entries = match std::fs::read_dir(NETNS_DIR) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error).with_context(|| format!("listing {NETNS_DIR}")),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {NETNS_DIR}"))?;
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Runs `program args…` to completion, feeding it `stdin`, and returns what it printed.
/// Every host command of the lab goes through here, so they are all logged in one place.
pub(crate) fn host_command(
    program: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> anyhow::Result<Output> {
    tracing::debug!(program, ?args, stdin, "netlab host command");
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {program} {}", args.join(" ")))?;
    if let Some(text) = stdin {
        // Taking the pipe and dropping it after the write closes it, so `-batch -` ends.
        let mut pipe = child.stdin.take().context("the child's stdin pipe")?;
        pipe.write_all(text.as_bytes())
            .with_context(|| format!("writing the input of {program}"))?;
    }
    let output = child
        .wait_with_output()
        .with_context(|| format!("waiting for {program} {}", args.join(" ")))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        tracing::debug!(program, ?args, status = %output.status, %stderr, "host command failed");
    }
    Ok(output)
}

/// Runs `ip args…` (with `batch` as its `-batch -` input when given) and fails with its
/// stderr when it does.
pub(crate) fn ip(args: &[&str], batch: Option<&str>) -> anyhow::Result<()> {
    let mut full_args = args.to_vec();
    if batch.is_some() {
        full_args.extend(["-batch", "-"]);
    }
    let output = host_command("ip", &full_args, batch)?;
    if !output.status.success() {
        bail!(
            "ip {} failed ({}): {}{}",
            full_args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim(),
            batch
                .map(|text| format!("\ninput:\n{text}"))
                .unwrap_or_default()
        );
    }
    Ok(())
}

/// Moves the calling thread (only it) into the network namespace at `path`.
pub(crate) fn enter_netns(path: &Path) -> anyhow::Result<()> {
    let netns = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    move_into_link_name_space(netns.as_fd(), Some(LinkNameSpaceType::Network))
        .with_context(|| format!("entering the network namespace {}", path.display()))
}

/// Runs `work` on a new thread that first enters the network namespace at `path`, and
/// returns its result. Sockets `work` creates belong to that namespace and stay there when
/// other threads use them; processes it spawns start inside it. The calling thread never
/// changes namespace.
pub(crate) fn in_netns<T: Send>(
    path: &Path,
    work: impl FnOnce() -> anyhow::Result<T> + Send,
) -> anyhow::Result<T> {
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name("netlab-in-netns".into())
            .spawn_scoped(scope, || {
                enter_netns(path)?;
                work()
            })
            .context("starting a thread to enter a network namespace")?;
        thread
            .join()
            .map_err(|_| anyhow!("the thread working in {} panicked", path.display()))?
    })
}
