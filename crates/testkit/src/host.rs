//! This machine as a host for real workloads: whether it can run them, and what an agent
//! left behind (to report it, or to remove it after a test).

use std::path::Path;
use std::process::Command;

/// What this machine lacks for real workloads (root, runc, QEMU, busybox-static), if
/// anything.
pub fn real_drivers_missing() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
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

/// Removes what an agent with its state in `agent_dir` left: its QEMU processes (by pid,
/// found by their command line naming the directory), and through a fresh container
/// driver on the same directory, its containers, mounts, network namespaces and cgroups.
pub fn clean_host(agent_dir: &Path) {
    for pid in processes_of(agent_dir) {
        let _ = Command::new("kill").args(["-KILL", &pid]).status();
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

/// What the agent with its state in `agent_dir` left on this machine: runc containers,
/// mounts under its directory, and QEMU and load-balancer proxy processes whose command line names it.
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
    found.extend(
        processes_of(agent_dir)
            .into_iter()
            .map(|pid| format!("QEMU or load-balancer proxy process {pid}")),
    );
    Ok(found)
}

/// The pids of the QEMU and load-balancer proxy processes whose command line names
/// `agent_dir` (both outlive their agent on purpose: a restarted agent takes them over).
pub fn processes_of(agent_dir: &Path) -> Vec<String> {
    let prefix = agent_dir.to_string_lossy().into_owned();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if pid.parse::<u32>().is_err() {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let kind = cmdline.contains("qemu-system") || cmdline.contains(" proxy --config ");
        if kind && cmdline.contains(&prefix) {
            pids.push(pid);
        }
    }
    pids
}
