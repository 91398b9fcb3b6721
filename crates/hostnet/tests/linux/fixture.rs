//! The test fixture: test-owned network namespaces (a "host", pods, an external network),
//! commands and sockets inside them, plan builders, and a Drop guard that deletes every
//! namespace the test or the driver under test made and kills the dnsmasq it started.
//! Set HOSTNET_DEBUG_KEEP=1 to keep them (and the state directories) for a post-mortem.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ronghe_hostnet::{
    Attachment, Ethertype, LinuxConfig, LinuxHostNetwork, MacAddr, NetworkPlan, PortPlan,
    PortSecurity, Rule, Segment,
};

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Why this machine cannot run the tests, if it cannot.
fn missing_prerequisite() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("not running as root".into());
    }
    for (program, arg) in [("ip", "-V"), ("nft", "--version")] {
        let ok = Command::new(program)
            .arg(arg)
            .output()
            .is_ok_and(|output| output.status.success());
        if !ok {
            return Some(format!("`{program}` is not installed"));
        }
    }
    None
}

pub struct Fixture {
    /// `rht-<pid>-<n>-`: every namespace of this test starts with it, including the ones
    /// the driver makes (their prefix extends it).
    pub base: String,
    state_dirs: Vec<tempfile::TempDir>,
}

impl Fixture {
    /// A fixture, or None (after saying why on stderr) when the machine cannot run it.
    pub fn new(test: &str) -> Option<Fixture> {
        if let Some(reason) = missing_prerequisite() {
            eprintln!("SKIPPED {test}: {reason}; these tests need root, iproute2 and nftables");
            return None;
        }
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "ronghe_hostnet=info".into()),
            )
            .with_test_writer()
            .with_ansi(false)
            .try_init();
        let base = format!(
            "rht-{}-{}-",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        Some(Fixture {
            base,
            state_dirs: Vec::new(),
        })
    }

    /// Creates the netns `<base><suffix>` with loopback up; returns its name.
    pub fn netns(&self, suffix: &str) -> String {
        let name = format!("{}{suffix}", self.base);
        must(&["ip", "netns", "add", &name]);
        must(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        name
    }

    /// A host: a netns and a driver confined to it.
    pub fn host(&mut self, suffix: &str) -> (LinuxHostNetwork, String) {
        let name = self.netns(suffix);
        let state = tempfile::tempdir().expect("state dir");
        let config = LinuxConfig {
            host_netns: Some(netns_path(&name)),
            prefix: format!("{}{suffix}-", self.base),
            state_dir: state.path().to_path_buf(),
            underlay_interface: None,
        };
        self.state_dirs.push(state);
        (LinuxHostNetwork::new(config), name)
    }

    /// Two hosts joined by an underlay veth (`ua` 10.77.0.1/24, `ub` 10.77.0.2/24).
    pub fn two_hosts(&mut self) -> ((LinuxHostNetwork, String), (LinuxHostNetwork, String)) {
        let (a, a_name) = self.host("a");
        let (b, b_name) = self.host("b");
        must(&[
            "ip", "-n", &a_name, "link", "add", "ua", "type", "veth", "peer", "name", "ub",
            "netns", &b_name,
        ]);
        must(&[
            "ip",
            "-n",
            &a_name,
            "addr",
            "add",
            "10.77.0.1/24",
            "dev",
            "ua",
        ]);
        must(&[
            "ip",
            "-n",
            &b_name,
            "addr",
            "add",
            "10.77.0.2/24",
            "dev",
            "ub",
        ]);
        must(&["ip", "-n", &a_name, "link", "set", "ua", "up"]);
        must(&["ip", "-n", &b_name, "link", "set", "ub", "up"]);
        let with_underlay = |network: LinuxHostNetwork, underlay: &str| {
            let mut config = network.config().clone();
            config.underlay_interface = Some(underlay.into());
            LinuxHostNetwork::new(config)
        };
        (
            (with_underlay(a, "ua"), a_name),
            (with_underlay(b, "ub"), b_name),
        )
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if std::env::var_os("HOSTNET_DEBUG_KEEP").is_some() {
            for state in std::mem::take(&mut self.state_dirs) {
                let _ = state.keep();
            }
            return;
        }
        // dnsmasq first (by the pid in its pid file, when it is still a dnsmasq of ours),
        // or the namespaces it holds would outlive their names.
        for state in &self.state_dirs {
            kill_dnsmasq_under(state.path());
        }
        if let Ok(entries) = std::fs::read_dir("/run/netns") {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with(&self.base) {
                    let _ = Command::new("ip").args(["netns", "delete", &name]).output();
                }
            }
        }
    }
}

fn kill_dnsmasq_under(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let pid_file = entry.path().join("dnsmasq.pid");
        if let Some(pid) = dnsmasq_pid(&pid_file)
            && let Some(pid) = rustix::process::Pid::from_raw(pid)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}

/// The pid in `pid_file` if that process is alive and a dnsmasq naming that pid file.
pub fn dnsmasq_pid(pid_file: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(pid_file)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let cmdline = String::from_utf8_lossy(&cmdline);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let zombie = stat
        .rsplit_once(')')
        .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
    (cmdline.starts_with("dnsmasq\0")
        && cmdline.contains(&format!("--pid-file={}", pid_file.display()))
        && !zombie)
        .then_some(pid)
}

pub fn netns_path(name: &str) -> PathBuf {
    Path::new("/run/netns").join(name)
}

/// Runs a command and returns its output.
pub fn sh(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|error| panic!("running {args:?}: {error}"))
}

/// Runs a command that must succeed; returns its stdout.
pub fn must(args: &[&str]) -> String {
    let output = sh(args);
    assert!(
        output.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs a command inside netns `name`.
pub fn in_ns(name: &str, args: &[&str]) -> Output {
    let mut full = vec!["ip", "netns", "exec", name];
    full.extend_from_slice(args);
    sh(&full)
}

/// What netns `name` knows of `ip` on its `eth0` (`ip neigh show`).
pub fn neighbour(name: &str, ip: &str) -> String {
    String::from_utf8_lossy(&in_ns(name, &["ip", "neigh", "show", ip, "dev", "eth0"]).stdout)
        .into_owned()
}

/// One ping from netns `name`.
pub fn ping_once(name: &str, address: &str) -> bool {
    in_ns(name, &["busybox", "ping", "-c1", "-W1", address])
        .status
        .success()
}

/// Pings until it answers or the deadline passes.
pub fn ping(name: &str, address: &str) -> bool {
    wait_until(Duration::from_secs(15), || ping_once(name, address))
}

/// Polls `condition` every 100 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `work` on a thread inside netns `name`.
pub fn in_netns_thread<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    let path = netns_path(name);
    std::thread::spawn(move || {
        let file = std::fs::File::open(path)?;
        rustix::thread::move_into_link_name_space(
            file.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )?;
        work()
    })
    .join()
    .map_err(|_| std::io::Error::other("netns thread panicked"))?
}

/// A TCP connection from netns `name`, optionally from `source`, failing after `timeout`.
pub fn connect(
    name: &str,
    to: SocketAddr,
    source: Option<IpAddr>,
    timeout: Duration,
) -> std::io::Result<TcpStream> {
    in_netns_thread(name, move || {
        let family = match to {
            SocketAddr::V4(_) => rustix::net::AddressFamily::INET,
            SocketAddr::V6(_) => rustix::net::AddressFamily::INET6,
        };
        let socket = rustix::net::socket(family, rustix::net::SocketType::STREAM, None)?;
        if let Some(source) = source {
            rustix::net::bind(&socket, &SocketAddr::new(source, 0))?;
        }
        // Linux bounds a blocking connect by the send timeout.
        rustix::net::sockopt::set_socket_timeout(
            &socket,
            rustix::net::sockopt::Timeout::Send,
            Some(timeout),
        )?;
        rustix::net::connect(&socket, &to)?;
        let stream = TcpStream::from(socket);
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.set_write_timeout(Some(Duration::from_secs(5)))?;
        Ok(stream)
    })
}

/// Sends a line and expects it echoed.
pub fn echo(stream: &mut TcpStream, line: &str) -> anyhow::Result<()> {
    stream.write_all(format!("{line}\n").as_bytes())?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut answer = String::new();
    reader.read_line(&mut answer).context("reading the echo")?;
    if answer.trim_end() != line {
        bail!("echoed {answer:?} instead of {line:?}");
    }
    Ok(())
}

/// A line-echo TCP server bound in a netns, recording its peers' addresses.
pub struct EchoServer {
    pub peers: Arc<Mutex<Vec<SocketAddr>>>,
    stop: Arc<AtomicBool>,
}

impl EchoServer {
    pub fn start(name: &str, at: SocketAddr) -> EchoServer {
        let listener = in_netns_thread(name, move || {
            let listener = TcpListener::bind(at)?;
            listener.set_nonblocking(true)?;
            Ok(listener)
        })
        .unwrap_or_else(|error| panic!("listening on {at} in {name}: {error}"));
        EchoServer::serve(listener)
    }

    pub fn serve(listener: TcpListener) -> EchoServer {
        let peers = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (peers_in, stop_in) = (peers.clone(), stop.clone());
        std::thread::spawn(move || {
            // Bounded by the stop flag, which Drop sets.
            while !stop_in.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, peer)) => {
                        peers_in.lock().expect("peers").push(peer);
                        let stop = stop_in.clone();
                        std::thread::spawn(move || echo_connection(stream, stop));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        EchoServer { peers, stop }
    }

    pub fn peer_ips(&self) -> Vec<IpAddr> {
        self.peers
            .lock()
            .expect("peers")
            .iter()
            .map(SocketAddr::ip)
            .collect()
    }
}

fn echo_connection(stream: TcpStream, stop: Arc<AtomicBool>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    while !stop.load(Ordering::SeqCst) {
        match reader.read_line(&mut line) {
            Ok(0) => return,
            Ok(_) => {
                if writer.write_all(line.as_bytes()).is_err() {
                    return;
                }
                line.clear();
            }
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

pub fn mac(last: u8) -> MacAddr {
    MacAddr([0xfa, 0x16, 0x3e, 0x00, 0x00, last])
}

/// A pod port in netns `pod` with one IPv4 address (/24).
pub fn pod_port(id: &str, mac_last: u8, ip: &str, pod: &str) -> PortPlan {
    PortPlan {
        id: id.into(),
        mac: mac(mac_last),
        addresses: vec![format!("{ip}/24").parse().expect("address")],
        gateway: None,
        routes: vec![],
        attachment: Attachment::Veth {
            netns: netns_path(pod),
            ifname: "eth0".into(),
        },
        security: None,
        qos: None,
    }
}

pub fn vxlan_network(id: &str, vni: u32, ports: Vec<PortPlan>) -> NetworkPlan {
    NetworkPlan {
        id: id.into(),
        segment: Segment::Vxlan { vni },
        mtu: 1450,
        remote_vteps: vec![],
        remote_macs: vec![],
        service: None,
        ports,
    }
}

/// Port security allowing the port's own MAC and IPs, with the given rules.
pub fn security_of(port: &PortPlan, ingress: Vec<Rule>, egress: Vec<Rule>) -> PortSecurity {
    PortSecurity {
        allowed: port
            .addresses
            .iter()
            .map(|net| (port.mac, ipnet::IpNet::from(net.addr())))
            .collect(),
        ingress,
        egress,
    }
}

pub fn allow_all(ethertype: Ethertype) -> Rule {
    Rule {
        ethertype,
        protocol: None,
        ports: None,
        remote: vec![],
    }
}

pub fn allow_tcp(port: u16) -> Rule {
    Rule {
        ethertype: Ethertype::V4,
        protocol: Some(ronghe_hostnet::Protocol::Tcp),
        ports: Some((port, port)),
        remote: vec![],
    }
}

pub fn allow_icmp() -> Rule {
    Rule {
        ethertype: Ethertype::V4,
        protocol: Some(ronghe_hostnet::Protocol::Icmp),
        ports: None,
        remote: vec![],
    }
}

/// The link names in netns `name`.
pub fn links(name: &str) -> Vec<String> {
    must(&["ip", "-n", name, "-o", "link", "show"])
        .lines()
        .filter_map(|line| line.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name).to_string())
        .collect()
}
