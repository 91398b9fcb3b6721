//! The load balancers placed on this agent's hosts (Octavia's amphora driver, without
//! the VM): for each LoadBalancer whose `status.host` is one of ours, a network namespace
//! holding its VIP port (wired by the network loop like a pod's) and a proxy serving its
//! tree, turned into a `ProxyConfig` by `ronghe_api_types::loadbalancing::proxy`. Every
//! change to a load-balancing object (or a Secret) starts a pass; each pass serves what
//! changed and reports back into the LoadBalancer's status what the proxy serves
//! (`servedBy`, `applied`: uid → generation), what it refused (`serveError`: the proxy
//! keeps serving the last good tree), the members' health and the traffic counters.
//! The load-balancer controller turns those into Octavia's statuses.
//!
//! A load balancer that leaves the host (deleted, or moved by a failover) has its proxy
//! stopped and its namespace removed. Proxies are processes of their own
//! ([`ProcessDriver`], `ronghe proxy`), so an agent restart drops no connection: the next
//! agent finds them through their control sockets. [`FakeLoadBalancerDriver`] serves
//! nothing and reports every configuration taken, for simulated hosts.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::discovery::ApiResource;
use kube::runtime::watcher;
use ronghe_api_types::loadbalancing::proxy::{
    CA_KEY, CRL_KEY, TlsSecrets, certificate_of_secret, pem_of_secret, proxy_config, secret_name,
    vip_of,
};
use ronghe_api_types::loadbalancing::{
    self as lb, API_VERSION, GROUP, ListenerSpec, LoadBalancerStatus, PoolSpec, Stats, TREE_KINDS,
    Tree,
};
use ronghe_proxy::ProxyConfig;
use ronghe_proxy::control::ControlClient;
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};

use crate::network::WorkloadNetwork;

/// How often counters are written back at most.
const STATS_EVERY: Duration = Duration::from_secs(5);
/// How often a pass runs without a change (health and counters).
const RESYNC: Duration = Duration::from_secs(2);

/// What a proxy reports: each member's health and the counters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Served {
    /// Member uid → ONLINE, ERROR, NO_MONITOR or OFFLINE.
    pub members: BTreeMap<String, String>,
    pub stats: Stats,
    pub listener_stats: BTreeMap<String, Stats>,
}

/// What runs a load balancer's data plane on a host.
#[async_trait::async_trait]
pub trait LoadBalancerDriver: Send + Sync + 'static {
    /// The network namespace load balancer `uid`'s proxy runs in, made if needed (`None`:
    /// the driver needs none).
    async fn prepare(&self, uid: &str) -> anyhow::Result<Option<PathBuf>>;
    /// Serves `config` for `uid`: starts its proxy, or reconfigures the running one. On
    /// an error (the text says why) the running proxy serves on as before.
    async fn serve(&self, uid: &str, config: &ProxyConfig) -> Result<(), String>;
    /// What `uid`'s proxy reports, if it runs.
    async fn report(&self, uid: &str) -> Option<Served>;
    /// Stops `uid`'s proxy and removes what `prepare` made.
    async fn stop(&self, uid: &str);
    /// The load balancers with a proxy here (found again after an agent restart).
    fn running(&self) -> Vec<String>;
    /// The network namespace `uid`'s VIP is local in, if it exists here (`None` too for a
    /// driver that needs none): where node-port traffic for it is sent from.
    fn netns_of(&self, uid: &str) -> Option<PathBuf>;
    /// The address in that namespace node-port traffic for `uid` connects from to open
    /// with a PROXY protocol header naming its client, when `uid`'s proxy takes such
    /// headers (`None`: it does not, and sees the forwarder as the client).
    fn announce_from(&self, _uid: &str) -> Option<IpAddr> {
        None
    }
}

/// The address of a load balancer's netns that the node-port forwarder connects to the
/// VIP from, and that its proxy takes PROXY protocol headers from: a loopback address,
/// so only what runs in the namespace (the agent's forwarder) can connect from it (the
/// kernel drops packets from outside with a loopback source).
pub const NODE_PORT_SOURCE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

fn counters(snapshot: &ronghe_proxy::CounterSnapshot) -> Stats {
    Stats {
        bytes_in: snapshot.bytes_in,
        bytes_out: snapshot.bytes_out,
        active_connections: snapshot.active_connections,
        total_connections: snapshot.total_connections,
        request_errors: snapshot.request_errors,
    }
}

fn status_text(status: ronghe_proxy::OperatingStatus) -> String {
    serde_json::to_value(status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Proxies as `ronghe proxy` processes, each in a named network namespace of its own,
/// with its configuration and control socket under `state_dir/<uid>/`.
pub struct ProcessDriver {
    binary: PathBuf,
    state_dir: PathBuf,
    netns_prefix: String,
    children: Mutex<HashMap<String, u32>>,
}

impl ProcessDriver {
    pub fn new(binary: PathBuf, state_dir: PathBuf, netns_prefix: String) -> ProcessDriver {
        ProcessDriver {
            binary,
            state_dir,
            netns_prefix,
            children: Mutex::new(HashMap::new()),
        }
    }

    fn dir(&self, uid: &str) -> PathBuf {
        self.state_dir.join(uid)
    }

    fn client(&self, uid: &str) -> ControlClient {
        ControlClient::new(self.dir(uid).join("control.sock"))
    }

    fn netns(&self, uid: &str) -> String {
        let short: String = uid.chars().filter(|c| *c != '-').take(12).collect();
        format!("{}lb-{short}", self.netns_prefix)
    }

    /// The pid of `uid`'s proxy, when the process named in its pid file is that proxy.
    fn pid(&self, uid: &str) -> Option<i32> {
        self.process(uid).map(|(pid, _)| pid)
    }

    /// The pid and arguments of `uid`'s proxy, when the process named in its pid file is
    /// that proxy.
    fn process(&self, uid: &str) -> Option<(i32, Vec<Vec<u8>>)> {
        let dir = self.dir(uid);
        let pid: i32 = std::fs::read_to_string(dir.join("pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let arguments: Vec<Vec<u8>> = cmdline.split(|b| *b == 0).map(<[u8]>::to_vec).collect();
        let socket = dir.join("control.sock");
        let names_socket = arguments
            .iter()
            .any(|arg| arg == socket.as_os_str().as_encoded_bytes());
        names_socket.then_some((pid, arguments))
    }

    async fn start(&self, uid: &str, config: &ProxyConfig) -> Result<(), String> {
        config.validate().map_err(|error| error.to_string())?;
        let dir = self.dir(uid);
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let config_path = dir.join("config.json");
        let text = serde_json::to_vec(config).map_err(|e| e.to_string())?;
        write_private(&config_path, &text).map_err(|e| format!("writing the config: {e}"))?;
        let log = std::fs::File::create(dir.join("proxy.log")).map_err(|e| e.to_string())?;
        let socket = dir.join("control.sock");
        let mut command = std::process::Command::new("ip");
        command
            .args(["netns", "exec", &self.netns(uid)])
            .arg(&self.binary)
            .arg("proxy")
            .arg("--config")
            .arg(&config_path)
            .arg("--control")
            .arg(&socket)
            .arg("--accept-proxy-from")
            .arg(NODE_PORT_SOURCE.to_string())
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        // Its own process group: it outlives the agent, as dnsmasq does.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = command
            .spawn()
            .map_err(|e| format!("starting the proxy: {e}"))?;
        let pid = child.id();
        let _ = std::fs::write(dir.join("pid"), pid.to_string());
        self.children
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(uid.to_owned(), pid);
        let client = self.client(uid);
        let deadline = Instant::now() + Duration::from_secs(10);
        let outcome = loop {
            if timed(client.health()).await.is_ok() {
                break Ok(());
            }
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(dir.join("proxy.log")).unwrap_or_default();
                let last = log.lines().last().unwrap_or_default().to_owned();
                break Err(format!("the proxy did not start ({status}): {last}"));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                break Err("the proxy did not answer on its control socket".to_owned());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        // Reap it when it ends, so it never lingers as a zombie of the agent.
        std::thread::spawn(move || {
            let _ = child.wait();
        });
        outcome
    }
}

/// A control request, bounded in time: a wedged proxy must not stall the agent.
async fn timed<T, E: std::fmt::Display>(
    request: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(Duration::from_secs(5), request).await {
        Ok(result) => result.map_err(|error| error.to_string()),
        Err(_) => Err("the proxy's control socket did not answer in 5 s".to_owned()),
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let temporary = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}

#[async_trait::async_trait]
impl LoadBalancerDriver for ProcessDriver {
    async fn prepare(&self, uid: &str) -> anyhow::Result<Option<PathBuf>> {
        let name = self.netns(uid);
        ronghe_hostnet::netns::ensure_named(&name).await?;
        // The proxy binds the VIP before the port is plugged (listeners come up with
        // their address), and answers on loopback for health checks of its own.
        let path = ronghe_hostnet::netns::named_path(&name);
        let _ =
            ronghe_hostnet::netns::set_sysctl(Some(path.clone()), "net.ipv4.ip_nonlocal_bind", "1")
                .await;
        Ok(Some(path))
    }

    async fn serve(&self, uid: &str, config: &ProxyConfig) -> Result<(), String> {
        let client = self.client(uid);
        if self.pid(uid).is_some() && timed(client.health()).await.is_ok() {
            return timed(client.replace_config(config)).await;
        }
        // A proxy that does not answer is replaced.
        self.kill(uid).await;
        self.start(uid, config).await
    }

    async fn report(&self, uid: &str) -> Option<Served> {
        let client = self.client(uid);
        let members = timed(client.member_status()).await.ok()?;
        let stats = timed(client.stats()).await.ok()?;
        let mut served = Served::default();
        for statuses in members.values() {
            for (member, status) in statuses {
                served.members.insert(member.clone(), status_text(*status));
            }
        }
        for (listener, snapshot) in &stats.listeners {
            let counted = counters(snapshot);
            served.stats.add(&counted);
            served.listener_stats.insert(listener.clone(), counted);
        }
        Some(served)
    }

    async fn stop(&self, uid: &str) {
        self.kill(uid).await;
        let _ = std::fs::remove_dir_all(self.dir(uid));
        if let Err(error) = ronghe_hostnet::netns::delete_named(&self.netns(uid)).await {
            tracing::warn!(uid, %error, "removing a load balancer's namespace failed");
        }
    }

    fn running(&self) -> Vec<String> {
        std::fs::read_dir(&self.state_dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn netns_of(&self, uid: &str) -> Option<PathBuf> {
        let path = ronghe_hostnet::netns::named_path(&self.netns(uid));
        path.exists().then_some(path)
    }

    fn announce_from(&self, uid: &str) -> Option<IpAddr> {
        // Asked for every node-port connection: a proxy this agent started takes headers
        // (`start` passes the option), and only one found running is asked of /proc. One
        // started by an agent from before they took headers does not: it would pass one
        // on to the members as the client's bytes.
        let started = self
            .children
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(uid);
        if started {
            return Some(NODE_PORT_SOURCE);
        }
        let (_, arguments) = self.process(uid)?;
        let wanted = NODE_PORT_SOURCE.to_string();
        arguments
            .windows(2)
            .any(|pair| pair[0] == b"--accept-proxy-from" && pair[1] == wanted.as_bytes())
            .then_some(NODE_PORT_SOURCE)
    }
}

impl ProcessDriver {
    /// Stops `uid`'s proxy process, if one runs (SIGTERM, then SIGKILL after 5 s).
    async fn kill(&self, uid: &str) {
        if let Some(pid) = self.pid(uid)
            && let Some(pid) = rustix::process::Pid::from_raw(pid)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while self.pid(uid).is_some() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if self.pid(uid).is_some() {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
        self.children
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(uid);
    }
}

/// Serves nothing; takes every valid configuration and reports members as a proxy
/// without health checks would (simulated hosts).
#[derive(Default)]
pub struct FakeLoadBalancerDriver {
    configs: Mutex<BTreeMap<String, ProxyConfig>>,
}

impl FakeLoadBalancerDriver {
    /// The configuration served for `uid`.
    pub fn config(&self, uid: &str) -> Option<ProxyConfig> {
        self.configs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(uid)
            .cloned()
    }
}

#[async_trait::async_trait]
impl LoadBalancerDriver for FakeLoadBalancerDriver {
    async fn prepare(&self, _uid: &str) -> anyhow::Result<Option<PathBuf>> {
        Ok(None)
    }

    async fn serve(&self, uid: &str, config: &ProxyConfig) -> Result<(), String> {
        config.validate().map_err(|error| error.to_string())?;
        self.configs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(uid.to_owned(), config.clone());
        Ok(())
    }

    async fn report(&self, uid: &str) -> Option<Served> {
        let config = self.config(uid)?;
        let mut served = Served::default();
        for pool in &config.pools {
            for member in &pool.members {
                let status = match (member.admin_state_up, pool.health_monitor.is_some()) {
                    (false, _) => "OFFLINE",
                    (true, true) => "ONLINE",
                    (true, false) => "NO_MONITOR",
                };
                served.members.insert(member.id.clone(), status.into());
            }
        }
        for listener in &config.listeners {
            served
                .listener_stats
                .insert(listener.id.clone(), Stats::default());
        }
        Some(served)
    }

    async fn stop(&self, uid: &str) {
        self.configs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(uid);
    }

    fn running(&self) -> Vec<String> {
        self.configs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    fn netns_of(&self, _uid: &str) -> Option<PathBuf> {
        None
    }
}

pub(crate) fn resource(kind: &str) -> ApiResource {
    let plural = match kind {
        "LoadBalancer" => "loadbalancers",
        "Listener" => "listeners",
        "Pool" => "pools",
        "Member" => "members",
        "HealthMonitor" => "healthmonitors",
        "L7Policy" => "l7policies",
        _ => "l7rules",
    };
    ApiResource {
        group: GROUP.into(),
        version: "v1".into(),
        api_version: API_VERSION.into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// What the loop last did for one load balancer.
#[derive(Default)]
struct Known {
    /// The configuration last served (or refused), to skip unchanged passes.
    config: Option<ProxyConfig>,
    /// The netns the VIP port is plugged into.
    attached: bool,
    /// What was last written into the status.
    reported: Option<Value>,
    stats_written: Option<Instant>,
}

/// Runs the load balancers placed on `hosts` until `stop` flips.
pub async fn run(
    client: kube::Client,
    hosts: HashSet<String>,
    driver: Arc<dyn LoadBalancerDriver>,
    network: Arc<dyn WorkloadNetwork>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let wake = Arc::new(Notify::new());
    for kind in TREE_KINDS {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource(kind));
        spawn_waker(
            watcher::watcher(api, watcher::Config::default()),
            wake.clone(),
        );
    }
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::all(client.clone());
    spawn_waker(
        watcher::watcher(
            secrets,
            watcher::Config::default().fields("type=kubernetes.io/tls"),
        ),
        wake.clone(),
    );
    let mut known: HashMap<String, Known> = HashMap::new();
    loop {
        if let Err(error) = pass(&client, &hosts, &driver, &network, &mut known).await {
            tracing::warn!(error = %format!("{error:#}"), "a load-balancer pass failed");
        }
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(RESYNC) => {}
            _ = stop.changed() => return Ok(()),
        }
    }
}

fn spawn_waker<K: Send + 'static>(
    stream: impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    wake: Arc<Notify>,
) {
    tokio::spawn(async move {
        let mut stream = Box::pin(stream);
        while let Some(event) = stream.next().await {
            if event.is_ok() {
                wake.notify_one();
            } else {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    });
}

async fn list_in(
    client: &kube::Client,
    kind: &str,
    namespace: &str,
    fields: &str,
) -> anyhow::Result<Vec<Value>> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource(kind));
    let listed = api.list(&ListParams::default().fields(fields)).await?;
    Ok(listed
        .items
        .into_iter()
        .filter_map(|o| serde_json::to_value(o).ok())
        .collect())
}

/// The tree of a load balancer, read from the API.
async fn tree_of(client: &kube::Client, load_balancer: Value) -> anyhow::Result<Tree> {
    let namespace = load_balancer
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let fields = format!("spec.loadBalancerId={}", lb::uid(&load_balancer));
    let mut tree = Tree {
        load_balancer,
        ..Tree::default()
    };
    for kind in &TREE_KINDS[1..] {
        let found = list_in(client, kind, &namespace, &fields).await?;
        if let Some(list) = tree.of_kind_mut(kind) {
            *list = found;
        }
    }
    Ok(tree)
}

/// What the Secrets that the tree's listeners and pools name hold: certificates
/// (listeners' default and SNI ones, pools' client ones), CAs and CRLs. One whose Secret
/// is missing, or lacks the key or a usable certificate, is left out (the proxy then
/// refuses what names it, saying so). Any other failure to read is an error: the proxy
/// serves on as it was.
async fn secrets(client: &kube::Client, tree: &Tree) -> anyhow::Result<TlsSecrets> {
    let listeners: Vec<(&str, ListenerSpec)> = tree
        .listeners
        .iter()
        .map(|listener| (namespace_of(listener), lb::spec_of(listener)))
        .collect();
    let pools: Vec<(&str, PoolSpec)> = tree
        .pools
        .iter()
        .map(|pool| (namespace_of(pool), lb::spec_of(pool)))
        .collect();
    let mut wanted: Vec<(&str, &String, Use)> = Vec::new();
    for (namespace, spec) in &listeners {
        let certificates = spec
            .default_tls_container_ref
            .iter()
            .chain(&spec.sni_container_refs);
        wanted.extend(certificates.map(|r| (*namespace, r, Use::Certificate)));
        for (reference, usage) in [
            (&spec.client_ca_tls_container_ref, Use::Ca),
            (&spec.client_crl_container_ref, Use::Crl),
        ] {
            wanted.extend(reference.iter().map(|r| (*namespace, r, usage)));
        }
    }
    for (namespace, spec) in &pools {
        for (reference, usage) in [
            (&spec.tls_container_ref, Use::Certificate),
            (&spec.ca_tls_container_ref, Use::Ca),
            (&spec.crl_container_ref, Use::Crl),
        ] {
            wanted.extend(reference.iter().map(|r| (*namespace, r, usage)));
        }
    }
    let mut found = TlsSecrets::default();
    let mut read: BTreeMap<(String, String), Option<Value>> = BTreeMap::new();
    for (namespace, reference, usage) in wanted {
        if reference.is_empty() {
            continue;
        }
        let name = secret_name(reference);
        let key = (namespace.to_owned(), name.to_owned());
        let secret = match read.get(&key) {
            Some(secret) => secret.clone(),
            None => {
                let secrets: Api<k8s_openapi::api::core::v1::Secret> =
                    Api::namespaced(client.clone(), namespace);
                let secret = secrets
                    .get_opt(name)
                    .await?
                    .and_then(|secret| serde_json::to_value(&secret).ok());
                read.insert(key, secret.clone());
                secret
            }
        };
        let Some(secret) = secret else {
            continue;
        };
        match usage {
            Use::Certificate => {
                if let Ok(certificate) = certificate_of_secret(&secret) {
                    found.certificates.insert(name.to_owned(), certificate);
                }
            }
            Use::Ca => {
                if let Ok(pem) = pem_of_secret(&secret, CA_KEY) {
                    found.cas.insert(name.to_owned(), pem);
                }
            }
            Use::Crl => {
                if let Ok(pem) = pem_of_secret(&secret, CRL_KEY) {
                    found.crls.insert(name.to_owned(), pem);
                }
            }
        }
    }
    Ok(found)
}

/// What a listener or pool takes from a Secret it names.
#[derive(Clone, Copy)]
enum Use {
    Certificate,
    Ca,
    Crl,
}

fn namespace_of(object: &Value) -> &str {
    object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

async fn pass(
    client: &kube::Client,
    hosts: &HashSet<String>,
    driver: &Arc<dyn LoadBalancerDriver>,
    network: &Arc<dyn WorkloadNetwork>,
    known: &mut HashMap<String, Known>,
) -> anyhow::Result<()> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource("LoadBalancer"));
    let all: Vec<Value> = api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|o| serde_json::to_value(o).ok())
        .collect();
    let mut hosted: HashMap<String, (String, Value)> = HashMap::new();
    for object in all {
        let status: LoadBalancerStatus = lb::status_of(&object);
        if hosts.contains(&status.host) && !lb::deleting(&object) {
            hosted.insert(lb::uid(&object).to_owned(), (status.host, object));
        }
    }
    // Gone from here: stop what serves them.
    let running: HashSet<String> = driver
        .running()
        .into_iter()
        .chain(known.keys().cloned())
        .collect();
    for uid in running {
        if !hosted.contains_key(&uid) {
            tracing::info!(uid, "load balancer left this host: stopping its proxy");
            driver.stop(&uid).await;
            network.detach_device(&uid).await;
            known.remove(&uid);
        }
    }
    for (uid, (host, object)) in hosted {
        let entry = known.entry(uid.clone()).or_default();
        if let Err(error) = serve_one(client, driver, network, &host, object, entry).await {
            tracing::warn!(uid, error = %format!("{error:#}"), "serving a load balancer failed");
        }
    }
    Ok(())
}

async fn serve_one(
    client: &kube::Client,
    driver: &Arc<dyn LoadBalancerDriver>,
    network: &Arc<dyn WorkloadNetwork>,
    host: &str,
    object: Value,
    known: &mut Known,
) -> anyhow::Result<()> {
    let uid = lb::uid(&object).to_owned();
    let Some(vip) = vip_of(&object) else {
        return Ok(());
    };
    let tree = tree_of(client, object).await?;
    if !known.attached {
        if let Some(netns) = driver.prepare(&uid).await? {
            network.attach_device(&uid, &netns).await?;
        }
        known.attached = true;
    }
    let secrets = secrets(client, &tree).await?;
    let config = proxy_config(&tree, vip, &secrets);
    let mut serve_error = String::new();
    let changed = known.config.as_ref() != Some(&config);
    if changed || driver.report(&uid).await.is_none() {
        match driver.serve(&uid, &config).await {
            Ok(()) => tracing::info!(
                uid,
                changed,
                listeners = config.listeners.len(),
                "load balancer served"
            ),
            Err(error) => {
                tracing::warn!(uid, %error, "the proxy refused a load balancer's configuration");
                serve_error = error;
            }
        }
        known.config = Some(config);
    } else if let Some(previous) = &known.reported {
        serve_error = previous["serveError"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
    }
    let served = driver.report(&uid).await.unwrap_or_default();
    let applied: BTreeMap<String, i64> = if serve_error.is_empty() {
        std::iter::once(&tree.load_balancer)
            .chain(tree.children())
            .map(|o| (lb::uid(o).to_owned(), lb::generation(o)))
            .collect()
    } else {
        lb::status_of::<LoadBalancerStatus>(&tree.load_balancer).applied
    };
    let report = json!({
        "servedBy": host,
        "applied": applied,
        "members": served.members,
        "serveError": serve_error,
    });
    let stats_due = known
        .stats_written
        .is_none_or(|at| at.elapsed() >= STATS_EVERY);
    let current: LoadBalancerStatus = lb::status_of(&tree.load_balancer);
    let stats_changed =
        current.stats != served.stats || current.listener_stats != served.listener_stats;
    if known.reported.as_ref() == Some(&report) && !(stats_due && stats_changed) {
        return Ok(());
    }
    let mut status = report.clone();
    status["stats"] = json!(served.stats);
    status["listenerStats"] = json!(served.listener_stats);
    // A merge patch merges maps: keys no longer there are cleared with null.
    for (field, before) in [
        (
            "applied",
            current.applied.keys().cloned().collect::<Vec<_>>(),
        ),
        ("members", current.members.keys().cloned().collect()),
        (
            "listenerStats",
            current.listener_stats.keys().cloned().collect(),
        ),
    ] {
        if let Some(map) = status[field].as_object_mut() {
            for key in before {
                map.entry(key).or_insert(Value::Null);
            }
        }
    }
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        tree.load_balancer
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or_default(),
        &resource("LoadBalancer"),
    );
    let name = tree
        .load_balancer
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await?;
    known.reported = Some(report);
    known.stats_written = Some(Instant::now());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process standing in for a proxy: its command line holds `arguments`. (A shell
    /// waiting in a builtin on its stdin: no child of its own, nothing exec'd over it.)
    struct StandIn(std::process::Child);

    impl StandIn {
        fn start(arguments: &[&str]) -> StandIn {
            let child = std::process::Command::new("sh")
                .args(["-c", "read _", "proxy"])
                .args(arguments)
                .stdin(std::process::Stdio::piped())
                .spawn()
                .expect("starting sh");
            // Until it has exec'd, its command line is still this test's.
            let cmdline = format!("/proc/{}/cmdline", child.id());
            let deadline = Instant::now() + Duration::from_secs(10);
            while !std::fs::read(&cmdline).is_ok_and(|line| line.starts_with(b"sh\0-c\0read _\0")) {
                assert!(Instant::now() < deadline, "sh did not start");
                std::thread::sleep(Duration::from_millis(5));
            }
            StandIn(child)
        }
    }

    impl Drop for StandIn {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn node_port_traffic_is_announced_only_to_proxies_started_to_take_it() {
        let state = std::env::temp_dir().join(format!("ronghe-lb-driver-{}", std::process::id()));
        let driver = ProcessDriver::new(PathBuf::from("ronghe"), state.clone(), "t-".into());
        let socket = |uid: &str| driver.dir(uid).join("control.sock");
        let taking = StandIn::start(&[
            "--control",
            socket("new").to_str().unwrap(),
            "--accept-proxy-from",
            "127.0.0.2",
        ]);
        // A proxy an agent from before started, without the option.
        let older = StandIn::start(&["--control", socket("old").to_str().unwrap()]);
        for (uid, process) in [("new", &taking), ("old", &older)] {
            std::fs::create_dir_all(driver.dir(uid)).unwrap();
            std::fs::write(driver.dir(uid).join("pid"), process.0.id().to_string()).unwrap();
        }
        assert_eq!(driver.announce_from("new"), Some(NODE_PORT_SOURCE));
        assert_eq!(driver.announce_from("old"), None);
        assert_eq!(driver.announce_from("none"), None, "no proxy at all");
        // A pid file naming some other process.
        std::fs::create_dir_all(driver.dir("stale")).unwrap();
        std::fs::write(driver.dir("stale").join("pid"), taking.0.id().to_string()).unwrap();
        assert_eq!(driver.announce_from("stale"), None);
        let _ = std::fs::remove_dir_all(state);
    }
}
