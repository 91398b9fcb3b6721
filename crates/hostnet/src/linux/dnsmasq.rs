//! dnsmasq processes: started daemonized inside a service netns, adopted across agent
//! restarts through their pid file (trusted only when `/proc/<pid>/cmdline` is a dnsmasq
//! naming that very pid file), reloaded with SIGHUP, stopped with SIGTERM by pid.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

use crate::dhcp::{DnsmasqFiles, dnsmasq_args, hosts_file, options_file};
use crate::error::HostNetError;
use crate::plan::ServicePlan;
use crate::run::run;
use crate::{Action, Applied};

/// A dnsmasq process we started, with its command line.
struct Running {
    pid: i32,
    args: Vec<String>,
}

/// The dnsmasq that owns `pid_file`, if it is alive.
fn running(pid_file: &Path) -> Option<Running> {
    let pid: i32 = std::fs::read_to_string(pid_file)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let mut argv: Vec<String> = raw
        .split(|byte| *byte == 0)
        .filter(|part| !part.is_empty())
        .map(|part| String::from_utf8_lossy(part).into_owned())
        .collect();
    if argv.is_empty() {
        return None;
    }
    let program = argv.remove(0);
    let is_dnsmasq = Path::new(&program)
        .file_name()
        .is_some_and(|name| name == "dnsmasq");
    let names_pid_file = argv
        .iter()
        .any(|arg| arg == &format!("--pid-file={}", pid_file.display()));
    if !is_dnsmasq || !names_pid_file || is_zombie(pid) {
        return None;
    }
    Some(Running { pid, args: argv })
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // The state follows the command name, which is in parentheses.
            let after = stat.rsplit_once(')')?.1;
            after.split_whitespace().next().map(|state| state == "Z")
        })
        .unwrap_or(true)
}

fn signal(pid: i32, signal: Signal) -> Result<(), HostNetError> {
    let Some(pid) = Pid::from_raw(pid) else {
        return Ok(());
    };
    kill_process(pid, signal).map_err(|errno| HostNetError::Io {
        operation: format!("signalling dnsmasq {pid:?}"),
        source: errno.into(),
    })
}

/// Stops the dnsmasq owning `pid_file` (if any) and waits for it to go.
pub(crate) async fn stop(pid_file: &Path) -> Result<bool, HostNetError> {
    let Some(process) = running(pid_file) else {
        return Ok(false);
    };
    signal(process.pid, Signal::TERM)?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while running(pid_file).is_some() {
        if Instant::now() > deadline {
            signal(process.pid, Signal::KILL)?;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = std::fs::remove_file(pid_file);
    Ok(true)
}

/// Writes `content` to `path` unless it already holds it; returns whether it wrote.
fn write_if_changed(path: &Path, content: &str) -> Result<bool, HostNetError> {
    if std::fs::read_to_string(path).ok().as_deref() == Some(content) {
        return Ok(false);
    }
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, content)
        .and_then(|()| std::fs::rename(&temporary, path))
        .map_err(HostNetError::io(format!("writing {}", path.display())))?;
    Ok(true)
}

/// Makes one dnsmasq serve `service` on `interface` inside `netns`.
pub(crate) async fn ensure(
    dir: PathBuf,
    netns: &Path,
    interface: &str,
    service: &ServicePlan,
    network_id: &str,
    applied: &mut Applied,
) -> Result<(), HostNetError> {
    std::fs::create_dir_all(&dir)
        .map_err(HostNetError::io(format!("creating {}", dir.display())))?;
    let files = DnsmasqFiles::new(&dir);
    let hosts_changed = write_if_changed(&files.hosts(), &hosts_file(service))?;
    let options_changed = write_if_changed(&files.options(), &options_file(service))?;
    let args = dnsmasq_args(interface, &files, service);
    match running(&files.pid()) {
        Some(process) if process.args == args => {
            if hosts_changed || options_changed {
                signal(process.pid, Signal::HUP)?;
                applied.record(Action::Repaired, format!("dnsmasq {network_id} reloaded"));
            }
            return Ok(());
        }
        Some(_) => {
            stop(&files.pid()).await?;
            applied.record(Action::Removed, format!("dnsmasq {network_id} (outdated)"));
        }
        None => {}
    }
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    run(Some(netns), "dnsmasq", &arg_refs, None).await?;
    // dnsmasq's parent exits once the daemon is up; its pid file is written by then, but
    // wait for it with a deadline rather than trust the ordering.
    let deadline = Instant::now() + Duration::from_secs(5);
    while running(&files.pid()).is_none() {
        if Instant::now() > deadline {
            return Err(HostNetError::Unexpected {
                object: format!("dnsmasq {network_id}"),
                reason: format!(
                    "no running dnsmasq behind {} after starting it",
                    files.pid().display()
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    applied.record(Action::Created, format!("dnsmasq {network_id}"));
    Ok(())
}
