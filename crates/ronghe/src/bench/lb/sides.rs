//! The processes `ronghe bench lb` compares and shares: the backends, Ronghe's proxy (a
//! `ronghe proxy` process) and HAProxy, each started from a temporary directory, measured
//! by its own CPU time, and stopped by its pid.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ronghe_proxy::ProxyConfig;
use ronghe_proxy::config::{
    InsertHeaders, LbAlgorithm, Listener, ListenerProtocol, Member, Pool, PoolProtocol,
};
use ronghe_proxy::control::ControlClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a process gets to start serving, or to stop after SIGTERM.
const DEADLINE: Duration = Duration::from_secs(20);
/// The timeouts both proxies get (Octavia's defaults), in milliseconds.
const CONNECT_TIMEOUT_MS: u64 = 5_000;
const DATA_TIMEOUT_MS: u64 = 50_000;

/// A process this bench started. Dropping it stops it (SIGTERM, then SIGKILL after a
/// grace period), by its pid: nothing else is ever signalled.
pub struct Started {
    name: &'static str,
    child: Child,
}

impl Started {
    fn spawn(name: &'static str, command: &mut Command) -> anyhow::Result<Started> {
        let child = command
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Started { name, child })
    }

    /// The CPU time (user and system, every thread) the process has used so far.
    pub fn cpu_time(&self) -> anyhow::Result<Duration> {
        let pid = self.child.id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .with_context(|| format!("reading /proc/{pid}/stat of {}", self.name))?;
        cpu_time_of(&stat, rustix::param::clock_ticks_per_second())
            .with_context(|| format!("/proc/{pid}/stat of {}: {stat:?}", self.name))
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    fn stop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + DEADLINE;
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "{} did not stop within {DEADLINE:?} of SIGTERM; killing it",
            self.name
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        self.stop();
    }
}

/// utime + stime from the text of `/proc/PID/stat`.
fn cpu_time_of(stat: &str, ticks_per_second: u64) -> anyhow::Result<Duration> {
    // The command name (field 2) is in parentheses and may hold spaces: count fields
    // after its closing one, which starts at field 3 (the state).
    let after_name = &stat[stat.rfind(')').context("no command name")? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |index: usize| -> anyhow::Result<u64> {
        Ok(fields.get(index).context("too few fields")?.parse()?)
    };
    // Fields 14 (utime) and 15 (stime), counted from 1.
    let total = ticks(11)? + ticks(12)?;
    Ok(Duration::from_secs_f64(
        total as f64 / ticks_per_second.max(1) as f64,
    ))
}

/// The shared backends: one `ronghe bench lb-backend` process serving `count` members.
pub fn start_backends(
    binary: &Path,
    count: usize,
    body_bytes: usize,
) -> anyhow::Result<(Started, Vec<SocketAddr>)> {
    let mut command = Command::new(binary);
    command
        .args(["bench", "lb-backend", "--body-bytes"])
        .arg(body_bytes.to_string())
        .stdout(Stdio::piped())
        .stdin(Stdio::null());
    for _ in 0..count {
        command.args(["--listen", "127.0.0.1:0"]);
    }
    let mut started = Started::spawn("the backends", &mut command)?;
    let stdout = started
        .child
        .stdout
        .take()
        .context("the backends' stdout")?;
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    let mut addresses = Vec::new();
    while addresses.len() < count {
        let line = lines
            .next()
            .context("the backends exited before listening")??;
        addresses.push(line.trim().parse().context("a backend's address")?);
    }
    Ok((started, addresses))
}

/// The configuration both proxies are given, in Ronghe's shape: one HTTP listener,
/// round robin over the members, no health monitor, no inserted headers.
pub fn proxy_config(backends: &[SocketAddr]) -> ProxyConfig {
    ProxyConfig {
        listeners: vec![Listener {
            id: "bench".into(),
            protocol: ListenerProtocol::Http,
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            connection_limit: None,
            timeout_client_data: DATA_TIMEOUT_MS,
            timeout_member_connect: CONNECT_TIMEOUT_MS,
            timeout_member_data: DATA_TIMEOUT_MS,
            insert_headers: InsertHeaders::default(),
            default_pool_id: Some("pool".into()),
            l7_policies: vec![],
            tls: None,
            sni: Vec::new(),
            tls_settings: Default::default(),
            client_authentication: None,
        }],
        pools: vec![Pool {
            id: "pool".into(),
            protocol: PoolProtocol::Http,
            lb_algorithm: LbAlgorithm::RoundRobin,
            session_persistence: None,
            members: backends
                .iter()
                .enumerate()
                .map(|(index, address)| Member {
                    id: format!("member-{}", index + 1),
                    address: address.ip(),
                    protocol_port: address.port(),
                    weight: 1,
                    backup: false,
                    admin_state_up: true,
                    monitor_address: None,
                    monitor_port: None,
                })
                .collect(),
            health_monitor: None,
            tls_enabled: false,
            member_tls: Default::default(),
        }],
    }
}

/// Ronghe's proxy: `ronghe proxy` with `threads` runtime workers, logging warnings only.
pub async fn start_ronghe(
    binary: &Path,
    directory: &Path,
    backends: &[SocketAddr],
    threads: usize,
) -> anyhow::Result<(Started, SocketAddr)> {
    let config_path = directory.join("proxy.json");
    std::fs::write(&config_path, serde_json::to_vec(&proxy_config(backends))?)?;
    let control = directory.join("control.sock");
    let mut started = Started::spawn(
        "ronghe proxy",
        Command::new(binary)
            .arg("proxy")
            .arg("--config")
            .arg(&config_path)
            .arg("--control")
            .arg(&control)
            .arg("--threads")
            .arg(threads.to_string())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null()),
    )?;
    let client = ControlClient::new(control);
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Ok(health) = client.health().await
            && let Some(address) = health.listeners.get("bench")
        {
            return Ok((started, *address));
        }
        if let Some(status) = started.exited() {
            bail!("ronghe proxy exited ({status}) before serving");
        }
        if Instant::now() > deadline {
            bail!("ronghe proxy did not serve within {DEADLINE:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// HAProxy's two listeners: the HTTP one compared with Ronghe's, and a TCP relay over the
/// same members.
pub struct HaproxyAddresses {
    pub http: SocketAddr,
    pub relay: SocketAddr,
}

/// HAProxy with the same listener, members, algorithm and timeouts: `nbthread` threads,
/// no logging, idle member connections reused (`http-reuse always`). A second frontend in
/// `mode tcp` relays bytes to the same members without reading HTTP at all: the bench's
/// reference for what HTTP work costs.
pub async fn start_haproxy(
    directory: &Path,
    backends: &[SocketAddr],
    threads: usize,
) -> anyhow::Result<(Started, HaproxyAddresses)> {
    let [address, relay] = free_ports()?;
    let servers: String = backends
        .iter()
        .enumerate()
        .map(|(index, backend)| format!("    server member-{} {backend}\n", index + 1))
        .collect();
    let config = format!(
        "global
    nbthread {threads}

defaults
    mode http
    timeout connect {CONNECT_TIMEOUT_MS}ms
    timeout client {DATA_TIMEOUT_MS}ms
    timeout server {DATA_TIMEOUT_MS}ms
    http-reuse always

frontend bench
    bind {address}
    default_backend pool

backend pool
    balance roundrobin
{servers}
frontend relay
    mode tcp
    bind {relay}
    default_backend relay_pool

backend relay_pool
    mode tcp
    balance roundrobin
{servers}"
    );
    let config_path = directory.join("haproxy.cfg");
    std::fs::write(&config_path, config)?;
    let log_path = directory.join("haproxy.log");
    let log = std::fs::File::create(&log_path)?;
    let mut started = Started::spawn(
        "haproxy",
        Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log),
    )?;
    let deadline = Instant::now() + DEADLINE;
    loop {
        if tokio::net::TcpStream::connect(address).await.is_ok()
            && tokio::net::TcpStream::connect(relay).await.is_ok()
        {
            let addresses = HaproxyAddresses {
                http: address,
                relay,
            };
            return Ok((started, addresses));
        }
        if let Some(status) = started.exited() {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            bail!("haproxy exited ({status}) before serving: {log}");
        }
        if Instant::now() > deadline {
            bail!("haproxy did not serve within {DEADLINE:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Loopback addresses with distinct ports free right now (HAProxy binds them a moment
/// later).
fn free_ports<const N: usize>() -> anyhow::Result<[SocketAddr; N]> {
    let listeners = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    let mut addresses = [SocketAddr::from(([127, 0, 0, 1], 0)); N];
    for (address, listener) in addresses.iter_mut().zip(&listeners) {
        *address = listener.local_addr()?;
    }
    Ok(addresses)
}

/// Sends a few requests through a proxy and checks that each member answers 200: both
/// sides are measured doing the same, correct work.
pub async fn check_balancing(
    name: &str,
    address: SocketAddr,
    members: usize,
) -> anyhow::Result<()> {
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..members * 2 {
        let answer = get(address)
            .await
            .with_context(|| format!("a request through {name}"))?;
        let Some(body) = answer
            .strip_prefix("HTTP/1.1 200 ")
            .and_then(|rest| rest.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()))
        else {
            bail!("{name} did not answer 200: {answer:?}");
        };
        seen.insert(body.lines().next().unwrap_or_default().to_owned());
    }
    if seen.len() != members {
        bail!("{name} reached {seen:?}, not all {members} members");
    }
    Ok(())
}

async fn get(address: SocketAddr) -> anyhow::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n")
        .await?;
    let mut answer = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut answer))
        .await
        .context("no answer in time")??;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_counts_user_and_system_ticks() {
        let stat = "4242 (ronghe (proxy) x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 3 0 100 0";
        assert_eq!(cpu_time_of(stat, 100).unwrap(), Duration::from_secs(3));
        assert!(cpu_time_of("4242 (x) S 1", 100).is_err());
    }
}
