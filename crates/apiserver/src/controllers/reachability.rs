//! Whether the hosts of load balancers and routers can be reached, for a failover faster
//! than the node grace (Octavia's health manager learns it from amphora heartbeats,
//! Neutron's L3 HA from keepalived; here the server probes). The load-balancer and router
//! controllers each name the hosts theirs are on ([`Reachability::judge`]), and each such
//! host's agent endpoint is asked `GET /healthz` every [`Timing::interval`]:
//!
//! * a host that answers is reachable: its agent answered over HTTP, or its kernel refused
//!   or reset the connection because the agent is down (its proxies outlive it and serve
//!   on, so that is no reason to move anything; the node grace covers a host whose agent
//!   stays down);
//! * a host that answers none of [`Timing::failures`] probes in a row, each given
//!   [`Timing::timeout`] (no connection, or one that stays silent or is closed without an
//!   answer), is unreachable: its load balancers and routers move without waiting for the
//!   node grace to run out, unless no answering host would be left (then it is probably
//!   this server that is cut off, and moving would help nothing).
//!
//! Failed probes are counted, rather than time since the last answer, so a server that
//! stalled never judges a host it did not get to probe. A host never reached since it was
//! named is not judged at all (this server may have no route to it): the lease decides.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use super::routers::Candidate;
use crate::object;

/// How often and how patiently hosts are probed.
#[derive(Clone, Copy, Debug)]
pub(super) struct Timing {
    pub(super) interval: Duration,
    pub(super) timeout: Duration,
    /// Unanswered probes in a row that make a host unreachable.
    pub(super) failures: u32,
}

impl Default for Timing {
    /// A dead host is judged within about 2.5 s: two unanswered probes of 1 s, 0.5 s apart.
    fn default() -> Self {
        Timing {
            interval: Duration::from_millis(500),
            timeout: Duration::from_secs(1),
            failures: 2,
        }
    }
}

/// What the probes found of one host.
const UNJUDGED: u8 = 0;
const REACHABLE: u8 = 1;
const UNREACHABLE: u8 = 2;

/// The hosts being probed, each by a task of its own.
pub(super) struct Reachability {
    timing: Timing,
    /// Notified when a host becomes unreachable or reachable again.
    changed: Vec<Arc<Notify>>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The hosts each watcher (a controller) wants probed, name → agent endpoint.
    wanted: HashMap<&'static str, HashMap<String, SocketAddr>>,
    /// The hosts any watcher wants.
    probes: HashMap<String, Probe>,
}

struct Probe {
    address: SocketAddr,
    state: Arc<AtomicU8>,
    task: AbortHandle,
}

impl Reachability {
    /// Probes hosts with `timing`, notifying each of `changed` when one is judged anew.
    pub(super) fn new(timing: Timing, changed: Vec<Arc<Notify>>) -> Reachability {
        Reachability {
            timing,
            changed,
            state: Mutex::new(State::default()),
        }
    }

    /// For `watcher`'s pass: probes the agents of `hosts` (the Nodes `nodes` names) from
    /// now on for it, and counts those that stopped answering as down among `candidates`,
    /// unless no answering live candidate would be left.
    pub(super) fn judge(
        &self,
        watcher: &'static str,
        nodes: &[Value],
        hosts: &BTreeSet<String>,
        candidates: &mut [Candidate],
    ) {
        self.watch(
            watcher,
            nodes
                .iter()
                .filter_map(|node| {
                    let name = object::name(node)?;
                    let endpoint = crate::kinds::agent_endpoint(node)?;
                    hosts.contains(name).then(|| (name.to_owned(), endpoint))
                })
                .collect(),
        );
        let (silent, answering): (Vec<&mut Candidate>, Vec<&mut Candidate>) = candidates
            .iter_mut()
            .filter(|candidate| candidate.is_alive())
            .partition(|candidate| self.unreachable(&candidate.name));
        if !answering.is_empty() {
            silent.into_iter().for_each(Candidate::mark_down);
        }
    }

    /// Probes `hosts` (name → agent endpoint) for `watcher` from now on, and no longer
    /// the ones it named before and not now: new hosts start being probed, hosts no
    /// watcher names stop, a host whose endpoint changed is judged afresh.
    pub(super) fn watch(&self, watcher: &'static str, hosts: HashMap<String, SocketAddr>) {
        let mut state = self.lock();
        state.wanted.insert(watcher, hosts);
        let hosts: HashMap<String, SocketAddr> = state
            .wanted
            .values()
            .flat_map(|hosts| hosts.iter().map(|(name, address)| (name.clone(), *address)))
            .collect();
        let probes = &mut state.probes;
        probes.retain(|name, probe| {
            let keep = hosts.get(name) == Some(&probe.address);
            if !keep {
                probe.task.abort();
            }
            keep
        });
        for (name, address) in hosts {
            if probes.contains_key(&name) {
                continue;
            }
            let state = Arc::new(AtomicU8::new(UNJUDGED));
            let task = tokio::spawn(probe(
                name.clone(),
                address,
                self.timing,
                state.clone(),
                self.changed.clone(),
            ))
            .abort_handle();
            probes.insert(
                name,
                Probe {
                    address,
                    state,
                    task,
                },
            );
        }
    }

    /// Whether `host` was reachable and has stopped answering.
    pub(super) fn unreachable(&self, host: &str) -> bool {
        self.lock()
            .probes
            .get(host)
            .is_some_and(|probe| probe.state.load(Ordering::Acquire) == UNREACHABLE)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for Reachability {
    fn drop(&mut self) {
        for probe in self.lock().probes.values() {
            probe.task.abort();
        }
    }
}

/// Probes one host until aborted.
async fn probe(
    host: String,
    address: SocketAddr,
    timing: Timing,
    state: Arc<AtomicU8>,
    changed: Vec<Arc<Notify>>,
) {
    let mut ticks = tokio::time::interval(timing.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut unanswered = 0;
    loop {
        ticks.tick().await;
        let answered = tokio::time::timeout(timing.timeout, ask(address))
            .await
            .unwrap_or(false);
        unanswered = if answered { 0 } else { unanswered + 1 };
        let before = state.load(Ordering::Acquire);
        let now = if answered {
            REACHABLE
        } else if before != UNJUDGED && unanswered >= timing.failures {
            UNREACHABLE
        } else {
            before
        };
        if now != before {
            state.store(now, Ordering::Release);
            match now {
                UNREACHABLE => tracing::warn!(
                    host,
                    %address,
                    probes = unanswered,
                    "a host stopped answering: its load balancers and routers fail over"
                ),
                _ if before == UNREACHABLE => {
                    tracing::info!(host, %address, "a host answers again");
                }
                _ => {}
            }
            changed.iter().for_each(|changed| changed.notify_one());
        }
    }
}

/// Asks the agent at `address` for `/healthz`; whether the host answered (see the module).
async fn ask(address: SocketAddr) -> bool {
    use std::io::ErrorKind::{ConnectionRefused, ConnectionReset};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut stream = match tokio::net::TcpStream::connect(address).await {
        Ok(stream) => stream,
        Err(error) => return matches!(error.kind(), ConnectionRefused | ConnectionReset),
    };
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    if let Err(error) = stream.write_all(request.as_bytes()).await {
        return error.kind() == ConnectionReset;
    }
    let mut answer = [0u8; 16];
    let mut read = 0;
    while read < 5 {
        match stream.read(&mut answer[read..]).await {
            Ok(0) => return false,
            Ok(n) => read += n,
            Err(error) => return error.kind() == ConnectionReset,
        }
    }
    answer.starts_with(b"HTTP/")
}

#[cfg(test)]
pub(super) mod tests {
    use serde_json::json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::engine::{Engine, PatchKind, Target, WriteOptions};

    /// Probes far apart enough for loopback, close enough for a test.
    pub(in crate::controllers) fn quick() -> Timing {
        Timing {
            interval: Duration::from_millis(20),
            timeout: Duration::from_millis(100),
            failures: 2,
        }
    }

    pub(in crate::controllers) const ANSWER: u8 = 0;
    pub(in crate::controllers) const SILENT: u8 = 1;
    const RESET: u8 = 2;
    const CLOSE: u8 = 3;

    /// A loopback agent endpoint that answers `/healthz`, holds its connections without a
    /// word, resets them, or closes them after reading the request, as `mode` says at each
    /// connection.
    pub(in crate::controllers) async fn agent(mode: Arc<AtomicU8>) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut stream, _)) = listener.accept().await {
                match mode.load(Ordering::Relaxed) {
                    ANSWER => {
                        tokio::spawn(async move {
                            let mut request = [0u8; 512];
                            let _ = stream.read(&mut request).await;
                            let _ = stream
                                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                                .await;
                        });
                    }
                    SILENT => held.push(stream),
                    RESET => {
                        let _ = stream.set_zero_linger();
                    }
                    _ => {
                        tokio::spawn(async move {
                            let mut request = [0u8; 512];
                            let _ = stream.read(&mut request).await;
                        });
                    }
                }
            }
        });
        address
    }

    /// Gives node `name` an agent endpoint at `address`.
    pub(in crate::controllers) async fn endpoint(engine: &Engine, name: &str, address: SocketAddr) {
        let status = json!({
            "addresses": [{"type": "InternalIP", "address": address.ip().to_string()}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": address.port()}},
        });
        let kind = engine.kind("v1", "Node").expect("the Node kind");
        engine
            .patch(
                &kind,
                None,
                name,
                PatchKind::Merge,
                json!({ "status": status }),
                Target::Status,
                &WriteOptions::default(),
            )
            .await
            .expect("the node's endpoint written");
    }

    /// Whether `check` holds within 5 s of [`quick`] probes, tried every 50 ms.
    pub(in crate::controllers) async fn soon<F, Fut>(mut check: F) -> bool
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if check().await {
                return true;
            }
        }
        false
    }

    async fn until(what: &str, condition: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !condition() {
            assert!(tokio::time::Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn state(hosts: &Reachability, host: &str) -> u8 {
        hosts.lock().probes[host].state.load(Ordering::Acquire)
    }

    #[tokio::test]
    async fn hosts_that_stop_answering_become_unreachable_and_refusals_are_answers() {
        let modes: Vec<Arc<AtomicU8>> = (0..4).map(|_| Arc::new(AtomicU8::new(ANSWER))).collect();
        let (up, resets, closes, dies) = (
            agent(modes[0].clone()).await,
            agent(modes[1].clone()).await,
            agent(modes[2].clone()).await,
            agent(modes[3].clone()).await,
        );
        let refuses = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let never = agent(Arc::new(AtomicU8::new(SILENT))).await;

        let changed = Arc::new(Notify::new());
        let hosts = Reachability::new(quick(), vec![changed.clone()]);
        hosts.watch(
            "test",
            HashMap::from([
                ("up".to_owned(), up),
                ("resets".to_owned(), resets),
                ("closes".to_owned(), closes),
                ("dies".to_owned(), dies),
                ("refuses".to_owned(), refuses),
                ("never".to_owned(), never),
            ]),
        );
        until("every host that answers is judged", || {
            ["up", "resets", "closes", "dies", "refuses"]
                .iter()
                .all(|host| state(&hosts, host) == REACHABLE)
        })
        .await;
        modes[1].store(RESET, Ordering::Relaxed);
        modes[2].store(CLOSE, Ordering::Relaxed);
        modes[3].store(SILENT, Ordering::Relaxed);
        until("the silent host is unreachable", || {
            hosts.unreachable("dies")
        })
        .await;
        until("so is the one that closes without answering", || {
            hosts.unreachable("closes")
        })
        .await;
        tokio::time::timeout(Duration::from_secs(1), changed.notified())
            .await
            .expect("the change is told");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!hosts.unreachable("up"));
        assert!(!hosts.unreachable("resets"), "a reset is an answer");
        assert!(!hosts.unreachable("refuses"), "a refusal is an answer");
        assert!(
            !hosts.unreachable("never"),
            "a host never reached is not judged"
        );
        assert_eq!(state(&hosts, "never"), UNJUDGED);
        assert!(!hosts.unreachable("not-named"));

        // It answers again.
        modes[3].store(ANSWER, Ordering::Relaxed);
        until("the host is reachable again", || !hosts.unreachable("dies")).await;

        // Named no more: no longer probed or judged; named at a new address: judged afresh.
        hosts.watch("test", HashMap::from([("up".to_owned(), refuses)]));
        assert_eq!(hosts.lock().probes.len(), 1);
        assert_eq!(state(&hosts, "up"), UNJUDGED);
        until("probed at its new address", || {
            state(&hosts, "up") == REACHABLE
        })
        .await;
    }
}
