//! TCP relays between the root network namespace and the lab's namespaces, served by one
//! runtime on one thread that stays in the root namespace; stopping it closes every relay
//! and every relayed connection.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, anyhow};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use super::netns;

/// How long one relayed connection may take to open its far side.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A request to the thread inside a namespace for one new connection to the relay target.
type ConnectRequest = oneshot::Sender<std::io::Result<std::net::TcpStream>>;

/// The relays of one lab.
pub(crate) struct Relays {
    handle: tokio::runtime::Handle,
    stop: Option<oneshot::Sender<()>>,
    runtime_thread: Option<JoinHandle<()>>,
    /// The threads that open connections from inside a namespace, one per
    /// [`Relays::relay_from_root`] relay; each ends once its relay's tasks are gone.
    connector_threads: Mutex<Vec<JoinHandle<()>>>,
    /// `(namespace, port)` of every [`Relays::relay_into_root`] relay, so one is not made twice.
    into_root: Mutex<Vec<(String, u16)>>,
    /// Namespaces whose host is dead ([`Relays::silence`]).
    silenced: Arc<Mutex<HashSet<String>>>,
}

impl Relays {
    /// Starts the relay thread. It is created by the caller's thread, which is in the root
    /// namespace, and never leaves it.
    pub(crate) fn start() -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("building the relay runtime")?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let runtime_thread = std::thread::Builder::new()
            .name("netlab-relays".into())
            .spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                });
                // Dropping a current-thread runtime drops every task still on it, and with
                // them every listener and connection of every relay.
                drop(runtime);
            })
            .context("starting the relay thread")?;
        Ok(Self {
            handle,
            stop: Some(stop),
            runtime_thread: Some(runtime_thread),
            connector_threads: Mutex::new(Vec::new()),
            into_root: Mutex::new(Vec::new()),
            silenced: Arc::default(),
        })
    }

    /// Whether an [`Relays::relay_into_root`] relay already listens on `port` in `netns`.
    pub(crate) fn has_into_root(&self, netns: &str, port: u16) -> bool {
        lock(&self.into_root)
            .iter()
            .any(|(name, relayed)| name == netns && *relayed == port)
    }

    /// Listens on `127.0.0.1:port` inside the namespace `netns` and forwards each connection
    /// to `target`, opened from the root namespace.
    pub(crate) fn relay_into_root(
        &self,
        netns: &str,
        port: u16,
        target: SocketAddr,
    ) -> anyhow::Result<()> {
        let listener = netns::in_netns(&netns::netns_path(netns), || {
            let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port))
                .with_context(|| format!("listening on 127.0.0.1:{port} in {netns}"))?;
            listener.set_nonblocking(true)?;
            Ok(listener)
        })?;
        let listener = {
            let _runtime = self.handle.enter();
            TcpListener::from_std(listener)?
        };
        let name = format!("{netns} 127.0.0.1:{port} -> root {target}");
        tracing::debug!(relay = %name, "netlab relay into the root namespace");
        self.handle.spawn(async move {
            loop {
                let Some(inbound) = accept(&listener, &name).await else {
                    continue;
                };
                let name = name.clone();
                tokio::spawn(async move {
                    // This task runs on the relay thread, so the socket is the root's.
                    let outbound = match tokio::time::timeout(
                        CONNECT_TIMEOUT,
                        TcpStream::connect(target),
                    )
                    .await
                    {
                        Ok(Ok(outbound)) => outbound,
                        Ok(Err(error)) => {
                            tracing::warn!(relay = %name, %error, "netlab relay could not connect");
                            refused(&inbound, &error);
                            return;
                        }
                        Err(_) => {
                            tracing::warn!(relay = %name, "netlab relay timed out connecting");
                            return;
                        }
                    };
                    splice(inbound, outbound, &name).await;
                });
            }
        });
        lock(&self.into_root).push((netns.to_owned(), port));
        Ok(())
    }

    /// From now on the relays from the root into `netns` answer as a dead host's address
    /// does: not at all. (Their connector would still reach into the namespace, whose
    /// kernel lives on after its host "died".) Connections already relayed go on.
    pub(crate) fn silence(&self, netns: &str) {
        lock(&self.silenced).insert(netns.to_owned());
    }

    /// Listens on a free port of `127.0.0.1` in the root namespace and forwards each
    /// connection to `target`, opened from inside the namespace `netns`; returns where it
    /// listens.
    pub(crate) fn relay_from_root(
        &self,
        netns: &str,
        target: SocketAddr,
    ) -> anyhow::Result<SocketAddr> {
        // The caller's thread is in the root namespace (the lab never moves it).
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .context("listening on 127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let local = listener.local_addr()?;
        let (requests, connector_thread) = start_connector(netns::netns_path(netns), target)?;
        lock(&self.connector_threads).push(connector_thread);
        let listener = {
            let _runtime = self.handle.enter();
            TcpListener::from_std(listener)?
        };
        let name = format!("root {local} -> {netns} {target}");
        tracing::debug!(relay = %name, "netlab relay from the root namespace");
        let silenced = self.silenced.clone();
        let netns = netns.to_owned();
        self.handle.spawn(async move {
            let mut held = Vec::new();
            loop {
                let Some(inbound) = accept(&listener, &name).await else {
                    continue;
                };
                if lock(&silenced).contains(&netns) {
                    // Held unanswered until the relays stop.
                    held.push(inbound);
                    continue;
                }
                let requests = requests.clone();
                let name = name.clone();
                tokio::spawn(async move {
                    let (reply, replied) = oneshot::channel();
                    if requests.send(reply).is_err() {
                        return;
                    }
                    drop(requests);
                    let outbound = match tokio::time::timeout(CONNECT_TIMEOUT * 2, replied).await {
                        Ok(Ok(Ok(outbound))) => outbound,
                        Ok(Ok(Err(error))) => {
                            tracing::warn!(relay = %name, %error, "netlab relay could not connect");
                            refused(&inbound, &error);
                            return;
                        }
                        Ok(Err(_)) | Err(_) => {
                            tracing::warn!(relay = %name, "netlab relay got no connection");
                            return;
                        }
                    };
                    let outbound = match outbound
                        .set_nonblocking(true)
                        .and_then(|()| TcpStream::from_std(outbound))
                    {
                        Ok(outbound) => outbound,
                        Err(error) => {
                            tracing::warn!(relay = %name, %error, "relay: bad socket");
                            return;
                        }
                    };
                    splice(inbound, outbound, &name).await;
                });
            }
        });
        Ok(local)
    }

    /// Stops every relay and waits until their sockets are closed.
    pub(crate) fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.runtime_thread.take() {
            thread
                .join()
                .map_err(|_| anyhow!("the relay thread panicked"))?;
        }
        // The relay tasks held the connectors' request channels; with them gone each
        // connector thread returns from its wait at once.
        let threads = std::mem::take(
            self.connector_threads
                .get_mut()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for thread in threads {
            thread
                .join()
                .map_err(|_| anyhow!("a relay connector thread panicked"))?;
        }
        Ok(())
    }
}

/// Starts the thread that opens connections to `target` from inside the namespace at
/// `netns_path`, and returns the channel that asks it for one.
fn start_connector(
    netns_path: PathBuf,
    target: SocketAddr,
) -> anyhow::Result<(std::sync::mpsc::Sender<ConnectRequest>, JoinHandle<()>)> {
    let shown_path = netns_path.display().to_string();
    let (requests, incoming) = std::sync::mpsc::channel::<ConnectRequest>();
    let (entered, entered_result) = std::sync::mpsc::channel::<anyhow::Result<()>>();
    let thread = std::thread::Builder::new()
        .name("netlab-connector".into())
        .spawn(move || {
            let result = netns::enter_netns(&netns_path);
            let failed = result.is_err();
            let _ = entered.send(result);
            if failed {
                return;
            }
            while let Ok(reply) = incoming.recv() {
                // A thread started here begins in this namespace too, so one slow connect
                // does not hold up the next.
                let spawned = std::thread::Builder::new()
                    .name("netlab-connect".into())
                    .spawn(move || {
                        let _ = reply.send(std::net::TcpStream::connect_timeout(
                            &target,
                            CONNECT_TIMEOUT,
                        ));
                    });
                if let Err(error) = spawned {
                    tracing::warn!(%error, "netlab relay could not start a connecting thread");
                }
            }
        })
        .context("starting a relay connector thread")?;
    match entered_result.recv() {
        Ok(Ok(())) => Ok((requests, thread)),
        Ok(Err(error)) => {
            let _ = thread.join();
            Err(error)
        }
        Err(_) => {
            let _ = thread.join();
            Err(anyhow!(
                "the relay connector thread ended before entering {shown_path}"
            ))
        }
    }
}

/// Passes a refusal on: the relayed connection is reset (as the target's kernel reset
/// the attempt), not closed as if the target had answered and hung up.
fn refused(inbound: &TcpStream, error: &std::io::Error) {
    if error.kind() == std::io::ErrorKind::ConnectionRefused {
        let _ = inbound.set_zero_linger();
    }
}

/// Accepts one connection; `None` after an error (logged, and paced so a persistent one,
/// such as running out of descriptors, does not spin).
async fn accept(listener: &TcpListener, name: &str) -> Option<TcpStream> {
    match listener.accept().await {
        Ok((stream, _)) => Some(stream),
        Err(error) => {
            tracing::warn!(relay = %name, %error, "netlab relay accept failed");
            tokio::time::sleep(Duration::from_millis(50)).await;
            None
        }
    }
}

/// Copies both ways until both sides have finished; an end of stream on one side is passed
/// on as a half-close of the other.
async fn splice(mut inbound: TcpStream, mut outbound: TcpStream, name: &str) {
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    if let Err(error) = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await {
        tracing::debug!(relay = %name, %error, "netlab relayed connection ended with an error");
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
