//! Liveness, readiness and startup probes (exec, tcpSocket, httpGet) with kubelet's
//! timing: an initial delay, a period, a timeout, and thresholds of consecutive results
//! before the result flips. tcpSocket and httpGet connect from inside the pod's network
//! namespace (a short-lived thread joins it), to `host` or else `127.0.0.1`: a pod has
//! only loopback until pods get networks.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerPort, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::sync::{mpsc, oneshot, watch};

use crate::host::HostSeam;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeKind {
    Startup,
    Liveness,
    Readiness,
}

/// What a probe checks: one container instance.
#[derive(Clone, Debug)]
pub struct ProbeTarget {
    pub seam: HostSeam,
    /// runc's id of the instance (for exec probes).
    pub container_id: String,
    /// The pod's network namespace; `None` with `hostNetwork`.
    pub netns: Option<PathBuf>,
    /// The container's ports, for probes that name theirs.
    pub ports: Vec<ContainerPort>,
}

/// A probe result that crossed its threshold: `passing` or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeResult {
    pub kind: ProbeKind,
    pub passing: bool,
}

fn seconds(value: Option<i32>, default: i32) -> Duration {
    Duration::from_secs(u64::try_from(value.unwrap_or(default).max(0)).unwrap_or(0))
}

/// Probes an instance until its task is dropped, sending each flip of the result.
/// Liveness and readiness wait for `started` (the startup probe's success); a failing
/// liveness or startup probe stops after reporting (the container is about to be killed).
pub async fn run(
    kind: ProbeKind,
    probe: Probe,
    target: ProbeTarget,
    results: mpsc::Sender<ProbeResult>,
    mut started: watch::Receiver<bool>,
) {
    if kind != ProbeKind::Startup {
        while !*started.borrow_and_update() {
            if started.changed().await.is_err() {
                return;
            }
        }
    }
    tokio::time::sleep(seconds(probe.initial_delay_seconds, 0)).await;
    let period = seconds(probe.period_seconds, 10).max(Duration::from_secs(1));
    let timeout = seconds(probe.timeout_seconds, 1).max(Duration::from_secs(1));
    let success_threshold = probe.success_threshold.unwrap_or(1).max(1);
    let failure_threshold = probe.failure_threshold.unwrap_or(3).max(1);
    let (mut successes, mut failures) = (0, 0);
    let mut reported: Option<bool> = None;
    loop {
        let outcome = match tokio::time::timeout(timeout, attempt(&probe, &target, timeout)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(format!("timeout after {}s", timeout.as_secs())),
        };
        match &outcome {
            Ok(()) => {
                successes += 1;
                failures = 0;
            }
            Err(why) => {
                failures += 1;
                successes = 0;
                tracing::debug!(?kind, container = %target.container_id, %why, "probe failed");
            }
        }
        let flip = if successes >= success_threshold && reported != Some(true) {
            Some(true)
        } else if failures >= failure_threshold && reported != Some(false) {
            Some(false)
        } else {
            None
        };
        if let Some(passing) = flip {
            reported = Some(passing);
            if results.send(ProbeResult { kind, passing }).await.is_err() {
                return;
            }
            let finished = match kind {
                ProbeKind::Startup => true,
                ProbeKind::Liveness => !passing,
                ProbeKind::Readiness => false,
            };
            if finished {
                return;
            }
        }
        tokio::time::sleep(period).await;
    }
}

/// One probe attempt: `Ok` if it passed, else why not.
pub async fn attempt(probe: &Probe, target: &ProbeTarget, timeout: Duration) -> Result<(), String> {
    if let Some(exec) = &probe.exec {
        let command = exec.command.clone().unwrap_or_default();
        let mut args = vec!["exec", target.container_id.as_str()];
        args.extend(command.iter().map(String::as_str));
        let mut runc = target.seam.runc_command(None, &args);
        runc.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let output = runc.output().await.map_err(|e| e.to_string())?;
        return if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "command exited with {}: {}",
                output.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&output.stdout).trim()
            ))
        };
    }
    if let Some(tcp) = &probe.tcp_socket {
        let address = address(tcp.host.as_deref(), &tcp.port, &target.ports)?;
        return in_netns(target.netns.clone(), move || {
            TcpStream::connect_timeout(&address, timeout).map(drop)
        })
        .await
        .map_err(|e| format!("dial tcp {address}: {e}"));
    }
    if let Some(http) = &probe.http_get {
        if http
            .scheme
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("https"))
        {
            return Err("https probes are not supported yet".into());
        }
        let address = address(http.host.as_deref(), &http.port, &target.ports)?;
        let path = http
            .path
            .clone()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "/".into());
        let mut request = format!(
            "GET {path} HTTP/1.1\r\nHost: {address}\r\nUser-Agent: kube-probe/1.32\r\nAccept: */*\r\nConnection: close\r\n"
        );
        for header in http.http_headers.iter().flatten() {
            request.push_str(&format!("{}: {}\r\n", header.name, header.value));
        }
        request.push_str("\r\n");
        let code = in_netns(target.netns.clone(), move || {
            let mut stream = TcpStream::connect_timeout(&address, timeout)?;
            stream.set_read_timeout(Some(timeout))?;
            stream.set_write_timeout(Some(timeout))?;
            stream.write_all(request.as_bytes())?;
            let mut head = [0_u8; 64];
            let mut filled = 0;
            while filled < head.len() {
                let read = stream.read(&mut head[filled..])?;
                if read == 0 {
                    break;
                }
                filled += read;
                if head[..filled].contains(&b'\n') {
                    break;
                }
            }
            let line = String::from_utf8_lossy(&head[..filled]).into_owned();
            line.split(' ')
                .nth(1)
                .and_then(|code| code.trim().parse::<u16>().ok())
                .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {line:?}")))
        })
        .await
        .map_err(|e| {
            format!(
                "Get \"http://{address}{}\": {e}",
                http.path.as_deref().unwrap_or("/")
            )
        })?;
        return if (200..400).contains(&code) {
            Ok(())
        } else {
            Err(format!("HTTP probe failed with statuscode: {code}"))
        };
    }
    Err("a probe needs exec, tcpSocket or httpGet (gRPC probes are not supported yet)".into())
}

/// The address a network probe dials.
fn address(
    host: Option<&str>,
    port: &IntOrString,
    ports: &[ContainerPort],
) -> Result<SocketAddr, String> {
    let number = match port {
        IntOrString::Int(number) => *number,
        IntOrString::String(name) => ports
            .iter()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| p.container_port)
            .ok_or_else(|| format!("no port named {name:?}"))?,
    };
    let number = u16::try_from(number).map_err(|_| format!("port {number} is out of range"))?;
    let host = host.filter(|h| !h.is_empty()).unwrap_or("127.0.0.1");
    (host, number)
        .to_socket_addrs()
        .map_err(|e| format!("resolving {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} has no address"))
}

/// Runs `work` on a fresh thread inside the network namespace at `netns` (the thread
/// ends with it, so no pooled thread is ever left in a pod's namespace).
pub async fn in_netns<T: Send + 'static>(
    netns: Option<PathBuf>,
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    let (sender, receiver) = oneshot::channel();
    std::thread::Builder::new()
        .name("ronghe-probe".into())
        .spawn(move || {
            let result = (|| {
                if let Some(path) = netns {
                    let file = std::fs::File::open(path)?;
                    rustix::thread::move_into_link_name_space(
                        file.as_fd(),
                        Some(rustix::thread::LinkNameSpaceType::Network),
                    )?;
                }
                work()
            })();
            let _ = sender.send(result);
        })?;
    receiver
        .await
        .map_err(|_| std::io::Error::other("the probe thread ended early"))?
}
