//! A multi-host network lab for tests: several "hosts" on this machine, each a network
//! namespace (that can run its own `ronghe agent`), joined by an underlay bridge, plus one
//! namespace that plays the external network; relays between them and the root namespace,
//! where the server and the test's clients stay; and teardown of all of it on drop, when
//! the test fails or panics too.
//!
//! Topology of a lab with prefix `P` (`rl<pid hex>-<counter>-`):
//!
//! ```text
//!   P ul  : bridge br-ul  ── veth h<i> ──  P h<i> : eth0 10.200.<n>.<i+1>/24, lo
//!   P ext : bridge br-ext 172.24.4.1/24 ── veth h<i> ── P h<i> : eth1 up, no address
//! ```
//!
//! Every link is created inside the lab's namespaces (`ip -n`); nothing is added to the
//! root namespace, not even for a moment. The API is blocking (it runs `ip` and waits):
//! from an async test, call it where blocking is acceptable, and do not wait in
//! [`NetLab::exec`] on something served by a current-thread runtime on the same thread
//! (use `#[tokio::test(flavor = "multi_thread")]` or `spawn_blocking`).

mod netns;
mod relay;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail, ensure};

use crate::ServerProcess;

/// The external network's bridge, in [`LabExternal::netns`].
const EXTERNAL_BRIDGE: &str = "br-ext";
/// The external network's own address (its "router"), on [`EXTERNAL_BRIDGE`].
const EXTERNAL_GATEWAY: Ipv4Addr = Ipv4Addr::new(172, 24, 4, 1);
const EXTERNAL_PREFIX_LEN: u8 = 24;
/// The underlay's bridge, in the underlay namespace.
const UNDERLAY_BRIDGE: &str = "br-ul";
const UNDERLAY_PREFIX_LEN: u8 = 24;
/// How long [`NetLab::exec`] lets a command run before `timeout` kills it (status 124).
const EXEC_TIMEOUT_SECONDS: &str = "60";
/// How long an agent gets to stop after SIGTERM before it is killed.
const AGENT_STOP_GRACE: Duration = Duration::from_secs(10);
/// The port each agent's endpoint listens on, at its host's underlay address.
const AGENT_ENDPOINT_PORT: u16 = 10250;

/// Numbers the labs of this process, so their prefixes differ.
static NEXT_LAB: AtomicU32 = AtomicU32::new(0);

/// One host of a lab.
#[derive(Clone, Debug)]
pub struct LabHost {
    /// The host's network namespace (also the node name [`NetLab::start_agent`] gives its
    /// agent).
    pub netns: String,
    /// `/run/netns/<netns>`, for `nsenter --net=` or `setns`.
    pub netns_path: PathBuf,
    /// The address of its `eth0` on the underlay.
    pub underlay_ip: Ipv4Addr,
}

/// The lab's external network ("the outside world").
#[derive(Clone, Debug)]
pub struct LabExternal {
    pub netns: String,
    pub netns_path: PathBuf,
    /// The bridge every host's `eth1` is plugged into.
    pub bridge: String,
    /// The bridge's address, `172.24.4.1`.
    pub gateway_ip: Ipv4Addr,
    /// The prefix length of the external subnet (`172.24.4.0/24`).
    pub prefix_len: u8,
}

/// A process started inside one of the lab's namespaces.
struct LabProcess {
    child: Child,
    description: String,
    /// How long it gets between SIGTERM and SIGKILL when the lab stops it; `None`: SIGKILL
    /// at once.
    stop_grace: Option<Duration>,
}

/// A running lab; dropping it stops its processes and relays and deletes its namespaces.
pub struct NetLab {
    prefix: String,
    underlay_netns: String,
    underlay_subnet: Ipv4Addr,
    hosts: Vec<LabHost>,
    external: LabExternal,
    processes: Mutex<Vec<LabProcess>>,
    relays: relay::Relays,
}

impl NetLab {
    /// Whether labs can run here: `Err` says why not (not root, `ip` or `timeout` missing).
    /// Tests print `skipping <test>: <reason>` and return when it fails.
    pub fn available() -> Result<(), String> {
        if !rustix::process::geteuid().is_root() {
            return Err("not root (network namespaces need CAP_SYS_ADMIN)".into());
        }
        if !Path::new("/proc/self/ns/net").exists() {
            return Err("the kernel has no network namespaces".into());
        }
        for tool in ["ip", "timeout"] {
            if !on_path(tool) {
                return Err(format!("`{tool}` is not on PATH"));
            }
        }
        Ok(())
    }

    /// Builds a lab of `hosts` hosts (1 to 250). Blocking: it runs `ip` a few times. On
    /// failure, whatever it built is deleted again.
    pub fn new(hosts: usize) -> anyhow::Result<Self> {
        if let Err(reason) = Self::available() {
            bail!("a network lab cannot run here: {reason}");
        }
        ensure!(
            (1..=250).contains(&hosts),
            "a lab has 1 to 250 hosts, not {hosts}"
        );
        let (prefix, underlay_octet) = pick_prefix()?;
        let underlay_subnet = Ipv4Addr::new(10, 200, underlay_octet, 0);
        let hosts = (0..hosts)
            .map(|index| {
                let netns = format!("{prefix}h{index}");
                LabHost {
                    netns_path: netns::netns_path(&netns),
                    netns,
                    underlay_ip: Ipv4Addr::new(10, 200, underlay_octet, host_octet(index)),
                }
            })
            .collect();
        let external_netns = format!("{prefix}ext");
        let lab = Self {
            underlay_netns: format!("{prefix}ul"),
            external: LabExternal {
                netns_path: netns::netns_path(&external_netns),
                netns: external_netns,
                bridge: EXTERNAL_BRIDGE.into(),
                gateway_ip: EXTERNAL_GATEWAY,
                prefix_len: EXTERNAL_PREFIX_LEN,
            },
            prefix,
            underlay_subnet,
            hosts,
            processes: Mutex::new(Vec::new()),
            relays: relay::Relays::start()?,
        };
        // From here on, an error drops `lab`, which deletes every namespace with its prefix.
        lab.build()?;
        Ok(lab)
    }

    fn build(&self) -> anyhow::Result<()> {
        let mut all = vec![self.underlay_netns.clone(), self.external.netns.clone()];
        all.extend(self.hosts.iter().map(|host| host.netns.clone()));
        let adds: String = all
            .iter()
            .map(|name| format!("netns add {name}\n"))
            .collect();
        netns::ip(&[], Some(&adds)).context("creating the lab's namespaces")?;

        netns::ip(
            &["-n", &self.underlay_netns],
            Some(&format!(
                "link set lo up\n\
                 link add {UNDERLAY_BRIDGE} type bridge\n\
                 link set {UNDERLAY_BRIDGE} up\n"
            )),
        )
        .context("building the underlay")?;
        netns::ip(
            &["-n", &self.external.netns],
            Some(&format!(
                "link set lo up\n\
                 link add {EXTERNAL_BRIDGE} type bridge\n\
                 addr add {EXTERNAL_GATEWAY}/{EXTERNAL_PREFIX_LEN} dev {EXTERNAL_BRIDGE}\n\
                 link set {EXTERNAL_BRIDGE} up\n"
            )),
        )
        .context("building the external network")?;

        let mut underlay_ports = String::new();
        let mut external_ports = String::new();
        for (index, host) in self.hosts.iter().enumerate() {
            // Each veth is created in the host namespace with its peer placed straight into
            // the bridge's namespace, so neither end ever exists in the root namespace.
            // `eth1` gets no IPv6 link-local address either: the agent enslaves it to its
            // external bridge and it must carry no address of its own.
            netns::ip(
                &["-n", &host.netns],
                Some(&format!(
                    "link set lo up\n\
                     link add eth0 type veth peer name h{index} netns {underlay}\n\
                     addr add {ip}/{UNDERLAY_PREFIX_LEN} dev eth0\n\
                     link set eth0 up\n\
                     link add eth1 type veth peer name h{index} netns {external}\n\
                     link set eth1 addrgenmode none\n\
                     link set eth1 up\n",
                    underlay = self.underlay_netns,
                    external = self.external.netns,
                    ip = host.underlay_ip,
                )),
            )
            .with_context(|| format!("building host {index}"))?;
            underlay_ports.push_str(&format!(
                "link set h{index} master {UNDERLAY_BRIDGE}\nlink set h{index} up\n"
            ));
            external_ports.push_str(&format!(
                "link set h{index} master {EXTERNAL_BRIDGE}\nlink set h{index} up\n"
            ));
        }
        netns::ip(&["-n", &self.underlay_netns], Some(&underlay_ports))
            .context("plugging the hosts into the underlay")?;
        netns::ip(&["-n", &self.external.netns], Some(&external_ports))
            .context("plugging the hosts into the external network")?;
        Ok(())
    }

    /// The prefix of every namespace name of this lab (`rl<pid hex>-<counter>-`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A prefix for the namespaces an agent on host `index` creates (its pods'): names
    /// starting with it start with the lab's prefix, so dropping the lab deletes them too.
    pub fn prefix_for_host(&self, index: usize) -> String {
        format!("{}h{index}-", self.prefix)
    }

    /// How many hosts the lab has.
    pub fn host_count(&self) -> usize {
        self.hosts.len()
    }

    /// Host `index`. Panics when there is no such host, like indexing a slice.
    pub fn host(&self, index: usize) -> &LabHost {
        match self.hosts.get(index) {
            Some(host) => host,
            None => panic!(
                "the lab has {} hosts; there is no host {index}",
                self.hosts.len()
            ),
        }
    }

    /// All hosts.
    pub fn hosts(&self) -> &[LabHost] {
        &self.hosts
    }

    /// The external network.
    pub fn external(&self) -> &LabExternal {
        &self.external
    }

    /// The underlay's namespace (holding only its bridge).
    pub fn underlay_netns(&self) -> &str {
        &self.underlay_netns
    }

    /// The underlay subnet: its network address and prefix length (`10.200.<n>.0`, 24).
    pub fn underlay_subnet(&self) -> (Ipv4Addr, u8) {
        (self.underlay_subnet, UNDERLAY_PREFIX_LEN)
    }

    /// Runs `argv` inside the namespace `netns` (`ip netns exec`, which also gives it a
    /// `/sys` of that namespace) and returns its output, whatever its exit status. It is
    /// killed after 60 s (status 124). `netns` must be one of the lab's (its name starts
    /// with [`NetLab::prefix`]).
    pub fn exec(&self, netns: &str, argv: &[&str]) -> anyhow::Result<Output> {
        self.check_ours(netns)?;
        ensure!(!argv.is_empty(), "nothing to run in {netns}");
        let mut args = vec![
            "netns",
            "exec",
            netns,
            "timeout",
            "-k",
            "5",
            EXEC_TIMEOUT_SECONDS,
        ];
        args.extend_from_slice(argv);
        netns::host_command("ip", &args, None)
    }

    /// Starts `command` inside the namespace `netns` and returns its pid; the lab kills it
    /// (SIGKILL, by that pid) when dropped. Only the network namespace changes, as with
    /// `nsenter --net`: the process shares the root's mounts (so the namespaces it names
    /// with `ip netns add` are visible, and deleted by the lab), and `/sys/class/net` still
    /// shows the root namespace's links (ask netlink, `ip`, instead).
    pub fn spawn(&self, netns: &str, command: Command) -> anyhow::Result<u32> {
        self.spawn_tracked(netns, command, None)
    }

    fn spawn_tracked(
        &self,
        netns: &str,
        mut command: Command,
        stop_grace: Option<Duration>,
    ) -> anyhow::Result<u32> {
        self.check_ours(netns)?;
        let description = format!("{command:?} in {netns}");
        tracing::debug!(command = %description, "netlab spawn");
        // A child starts in the namespaces of the thread that spawns it.
        let child = netns::in_netns(&netns::netns_path(netns), || {
            command
                .spawn()
                .with_context(|| format!("starting {description}"))
        })?;
        let pid = child.id();
        lock(&self.processes).push(LabProcess {
            child,
            description,
            stop_grace,
        });
        Ok(pid)
    }

    /// Stops a process the lab started (SIGTERM and a grace period for agents, SIGKILL
    /// for the rest), waits for it and returns how it ended.
    pub fn stop_process(&self, pid: u32) -> anyhow::Result<ExitStatus> {
        let process = {
            let mut processes = lock(&self.processes);
            let position = processes
                .iter()
                .position(|process| process.child.id() == pid)
                .with_context(|| format!("the lab started no process {pid}"))?;
            processes.remove(position)
        };
        stop(process)
    }

    /// Starts `binary agent` inside host `index`, joined to `server`: it reaches the
    /// server's `https://127.0.0.1:<port>` through a relay into the root namespace, uses
    /// `<server data dir>/agent-<netns>` as its data directory and the host's namespace
    /// name as its node name (unless `args` give `--data-dir` or `--node-name`), serves its
    /// endpoint on `<underlay ip>:10250` (a later `--listen` in `args` wins), and logs to
    /// [`NetLab::agent_log_path`]. Returns its pid; SIGTERM (then SIGKILL after 10 s) on drop.
    pub fn start_agent(
        &self,
        index: usize,
        binary: &Path,
        server: &ServerProcess,
        args: &[&str],
    ) -> anyhow::Result<u32> {
        let host = self
            .hosts
            .get(index)
            .with_context(|| format!("the lab has no host {index}"))?;
        let url = server.url()?;
        let uri: http::Uri = url
            .parse()
            .with_context(|| format!("parsing the server URL {url}"))?;
        let port = uri
            .port_u16()
            .with_context(|| format!("the server URL {url} names no port"))?;
        ensure!(
            uri.host() == Some("127.0.0.1"),
            "the server URL {url} is not on 127.0.0.1, which the relay serves in the host"
        );
        if !self.relays.has_into_root(&host.netns, port) {
            self.relay_into_root(
                &host.netns,
                port,
                SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            )?;
        }
        let log_path = self.agent_log_path(index, server);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let mut command = Command::new(binary);
        command
            .arg("agent")
            .arg("--server")
            .arg(&url)
            .arg("--token-file")
            .arg(server.data_dir().join("node-token"));
        if !names_flag(args, "--data-dir") {
            command
                .arg("--data-dir")
                .arg(server.data_dir().join(format!("agent-{}", host.netns)));
        }
        if !names_flag(args, "--node-name") {
            command.args(["--node-name", &host.netns]);
        }
        command
            .arg("--listen")
            .arg(SocketAddr::from((host.underlay_ip, AGENT_ENDPOINT_PORT)).to_string())
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("RONGHE_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        self.spawn_tracked(&host.netns, command, Some(AGENT_STOP_GRACE))
    }

    /// Where the agent [`NetLab::start_agent`] starts on host `index` logs.
    pub fn agent_log_path(&self, index: usize, server: &ServerProcess) -> PathBuf {
        let netns = self.hosts.get(index).map_or_else(
            || format!("{}h{index}", self.prefix),
            |host| host.netns.clone(),
        );
        server.data_dir().join(format!("agent-{netns}.log"))
    }

    /// Listens on `127.0.0.1:port` inside the namespace `netns` and forwards every
    /// connection to `target` in the root namespace: how an agent in a host reaches the
    /// server on the root's loopback.
    pub fn relay_into_root(
        &self,
        netns: &str,
        port: u16,
        target: SocketAddr,
    ) -> anyhow::Result<()> {
        self.check_ours(netns)?;
        self.relays.relay_into_root(netns, port, target)
    }

    /// Listens on a free port of `127.0.0.1` in the root namespace and forwards every
    /// connection to `target` as seen from inside `netns` (an agent's endpoint at its
    /// underlay address, a pod's or VM's address): how a test client in the root reaches
    /// into the lab. Returns the address it listens on.
    pub fn relay_from_root(&self, netns: &str, target: SocketAddr) -> anyhow::Result<SocketAddr> {
        self.check_ours(netns)?;
        self.relays.relay_from_root(netns, target)
    }

    /// Makes every relay from the root into `netns` answer nothing from now on, as a dead
    /// host's address does.
    pub fn silence_relays_into(&self, netns: &str) -> anyhow::Result<()> {
        self.check_ours(netns)?;
        self.relays.silence(netns);
        Ok(())
    }

    /// Opens a TCP connection to `target` from inside `netns`; the stream can be used from
    /// any thread.
    pub fn tcp_connect_in(
        &self,
        netns: &str,
        target: SocketAddr,
    ) -> anyhow::Result<std::net::TcpStream> {
        self.check_ours(netns)?;
        netns::in_netns(&netns::netns_path(netns), || {
            std::net::TcpStream::connect_timeout(&target, Duration::from_secs(10))
                .with_context(|| format!("connecting to {target} from {netns}"))
        })
    }

    /// Runs `work` on a thread inside `netns` (the caller's thread never moves): sockets
    /// it opens belong to that namespace.
    pub fn run_in<T: Send>(
        &self,
        netns: &str,
        work: impl FnOnce() -> anyhow::Result<T> + Send,
    ) -> anyhow::Result<T> {
        self.check_ours(netns)?;
        netns::in_netns(&netns::netns_path(netns), work)
    }

    /// GETs `path` from `target` over HTTP/1.0 from inside `netns` and reads the whole
    /// answer (a read stalling for 60 s fails); returns the body's length and how long the
    /// exchange took from connect to the last byte.
    pub fn http_get_in(
        &self,
        netns: &str,
        target: SocketAddr,
        path: &str,
    ) -> anyhow::Result<(u64, Duration)> {
        use std::io::{Read, Write};
        let started = Instant::now();
        let mut stream = self.tcp_connect_in(netns, target)?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: {target}\r\n\r\n")?;
        let mut head = Vec::new();
        let mut buffer = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        let mut header_len = None;
        loop {
            let read = stream
                .read(&mut buffer)
                .with_context(|| format!("reading {path} from {target} in {netns}"))?;
            if read == 0 {
                break;
            }
            total += read as u64;
            if header_len.is_none() {
                head.extend_from_slice(&buffer[..read]);
                if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                    header_len = Some(end as u64 + 4);
                    let status = String::from_utf8_lossy(&head[..end]);
                    let status = status.lines().next().unwrap_or_default().to_owned();
                    ensure!(
                        status.split_whitespace().nth(1) == Some("200"),
                        "GET {path} from {target} in {netns}: {status}"
                    );
                }
            }
        }
        let elapsed = started.elapsed();
        let header_len =
            header_len.with_context(|| format!("no HTTP answer from {target} in {netns}"))?;
        Ok((total - header_len, elapsed))
    }

    /// Binds a TCP listener at `address` inside `netns`; it can be used from any thread.
    pub fn tcp_listen_in(
        &self,
        netns: &str,
        address: SocketAddr,
    ) -> anyhow::Result<std::net::TcpListener> {
        self.check_ours(netns)?;
        netns::in_netns(&netns::netns_path(netns), || {
            std::net::TcpListener::bind(address)
                .with_context(|| format!("listening on {address} in {netns}"))
        })
    }

    /// Refuses namespaces that are not the lab's, so no test traffic or command lands in
    /// the root namespace or in someone else's.
    fn check_ours(&self, netns: &str) -> anyhow::Result<()> {
        ensure!(
            netns.starts_with(&self.prefix)
                && !netns.contains('/')
                && netns::netns_path(netns).exists(),
            "{netns:?} is not a namespace of the lab {}",
            self.prefix
        );
        Ok(())
    }

    /// Deletes every namespace whose name starts with the lab's prefix: the agents' first,
    /// the lab's own last. Returns what could not be deleted.
    fn delete_namespaces(&self) -> Vec<String> {
        let mut failures = Vec::new();
        let names = match netns::list_netns() {
            Ok(names) => names,
            Err(error) => {
                failures.push(format!("{error:#}"));
                return failures;
            }
        };
        let own: Vec<&str> = self
            .hosts
            .iter()
            .map(|host| host.netns.as_str())
            .chain([self.external.netns.as_str(), self.underlay_netns.as_str()])
            .collect();
        let (own_present, others): (Vec<String>, Vec<String>) = names
            .into_iter()
            .filter(|name| name.starts_with(&self.prefix))
            .partition(|name| own.contains(&name.as_str()));
        for name in others.iter().chain(&own_present) {
            if let Err(error) = netns::ip(&["netns", "delete", name], None) {
                failures.push(format!("{error:#}"));
            }
        }
        if let Ok(names) = netns::list_netns() {
            for name in names.iter().filter(|name| name.starts_with(&self.prefix)) {
                failures.push(format!("the namespace {name} is still there"));
            }
        }
        failures
    }
}

impl Drop for NetLab {
    fn drop(&mut self) {
        let mut failures = Vec::new();
        // Processes first, while the relays still carry an agent's last words to the server.
        let processes = std::mem::take(
            self.processes
                .get_mut()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for process in processes {
            let description = process.description.clone();
            if let Err(error) = stop(process) {
                failures.push(format!("stopping {description}: {error:#}"));
            }
        }
        if let Err(error) = self.relays.stop() {
            failures.push(format!("stopping the relays: {error:#}"));
        }
        failures.extend(self.delete_namespaces());
        for failure in failures {
            eprintln!("netlab {}: cleanup failed: {failure}", self.prefix);
        }
    }
}

/// Stops one of the lab's processes by its pid and reaps it.
fn stop(mut process: LabProcess) -> anyhow::Result<ExitStatus> {
    if let Some(status) = process.child.try_wait()? {
        return Ok(status);
    }
    if let Some(grace) = process.stop_grace {
        let pid = i32::try_from(process.child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
            .context("the process has no valid pid")?;
        rustix::process::kill_process(pid, rustix::process::Signal::TERM)
            .context("sending SIGTERM")?;
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = process.child.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "netlab: {} did not stop within {grace:?} of SIGTERM; killing it",
            process.description
        );
    }
    process.child.kill().context("sending SIGKILL")?;
    Ok(process.child.wait()?)
}

/// A prefix no namespace on the machine has yet, and the third octet of the lab's
/// underlay subnet.
fn pick_prefix() -> anyhow::Result<(String, u8)> {
    let pid = std::process::id();
    let existing = netns::list_netns()?;
    // A namespace left behind by an earlier, killed process with the same pid is skipped,
    // not deleted: it is not ours.
    for _ in 0..1000 {
        let counter = NEXT_LAB.fetch_add(1, Ordering::Relaxed);
        // The dash after the pid keeps one lab's prefix from being the start of another's.
        let prefix = format!("rl{pid:x}-{counter}-");
        if !existing.iter().any(|name| name.starts_with(&prefix)) {
            // Labs of one process get different subnets; across processes they may meet,
            // which is harmless as each lab's underlay is its own namespace.
            let octet = (pid.wrapping_mul(37).wrapping_add(counter) % 256) as u8;
            return Ok((prefix, octet));
        }
    }
    Err(anyhow!("no free lab prefix for pid {pid}"))
}

/// The last octet of host `index`'s underlay address (`new` caps hosts at 250).
fn host_octet(index: usize) -> u8 {
    u8::try_from(index + 1).unwrap_or(u8::MAX)
}

/// Whether `args` give `flag` (as `--flag value` or `--flag=value`).
fn names_flag(args: &[&str], flag: &str) -> bool {
    args.iter().any(|arg| {
        *arg == flag
            || arg
                .strip_prefix(flag)
                .is_some_and(|rest| rest.starts_with('='))
    })
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
