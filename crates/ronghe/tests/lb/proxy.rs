//! `ronghe proxy` as the agent will run it: a process serving a configuration file,
//! reconfigured through its control socket, stopped by SIGTERM, and restarted from the
//! file the socket wrote back.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use ronghe_proxy::config::{
    InsertHeaders, LbAlgorithm, Listener, ListenerProtocol, Member, Pool, PoolProtocol,
};
use ronghe_proxy::control::{ControlClient, ControlError};
use ronghe_proxy::{OperatingStatus, ProxyConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

use crate::{BINARY, DEADLINE};

/// An HTTP backend answering every request with its name; aborted when dropped.
struct Backend {
    address: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn backend(name: &'static str) -> Backend {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a backend");
    let address = listener.local_addr().expect("backend address");
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_request| async {
                    Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(name))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Backend { address, task }
}

fn listener(id: &str) -> Listener {
    Listener {
        id: id.into(),
        protocol: ListenerProtocol::Http,
        bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        connection_limit: None,
        timeout_client_data: 50_000,
        timeout_member_connect: 5_000,
        timeout_member_data: 50_000,
        insert_headers: InsertHeaders::default(),
        default_pool_id: Some("pool".into()),
        l7_policies: vec![],
        tls: None,
        sni: Vec::new(),
        tls_settings: Default::default(),
        client_authentication: None,
    }
}

fn config(listeners: &[&str], members: &[(&str, &Backend)]) -> ProxyConfig {
    ProxyConfig {
        listeners: listeners.iter().map(|id| listener(id)).collect(),
        pools: vec![Pool {
            id: "pool".into(),
            protocol: PoolProtocol::Http,
            lb_algorithm: LbAlgorithm::RoundRobin,
            session_persistence: None,
            members: members
                .iter()
                .map(|(id, backend)| Member {
                    id: (*id).into(),
                    address: backend.address.ip(),
                    protocol_port: backend.address.port(),
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

/// A `ronghe proxy` process this test started; killed by its pid if the test fails
/// before stopping it.
struct ProxyProcess {
    child: Child,
    control: ControlClient,
}

impl ProxyProcess {
    fn start(config_file: &Path, socket: &Path) -> anyhow::Result<ProxyProcess> {
        let child = Command::new(BINARY)
            .arg("proxy")
            .arg("--config")
            .arg(config_file)
            .arg("--control")
            .arg(socket)
            .arg("--threads")
            .arg("2")
            .stdin(Stdio::null())
            .spawn()
            .context("starting ronghe proxy")?;
        Ok(ProxyProcess {
            child,
            control: ControlClient::new(socket),
        })
    }

    /// Waits until the control socket answers, and returns the listeners' addresses.
    async fn ready(&mut self) -> anyhow::Result<std::collections::BTreeMap<String, SocketAddr>> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Ok(health) = self.control.health().await {
                return Ok(health.listeners);
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("ronghe proxy exited ({status}) before serving");
            }
            if Instant::now() > deadline {
                bail!("ronghe proxy did not serve within {DEADLINE:?}");
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM by pid, then waits for a clean exit.
    async fn terminate(&mut self) -> anyhow::Result<()> {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).context("a pid")?;
        rustix::process::kill_process(pid, rustix::process::Signal::TERM)?;
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait()? {
                anyhow::ensure!(status.success(), "ronghe proxy exited with {status}");
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("ronghe proxy did not stop within {DEADLINE:?} of SIGTERM");
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One request through the proxy on a fresh connection; the answer's body.
async fn get(address: SocketAddr) -> anyhow::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n")
        .await?;
    let mut answer = String::new();
    tokio::time::timeout(DEADLINE, stream.read_to_string(&mut answer)).await??;
    let Some((head, body)) = answer.split_once("\r\n\r\n") else {
        bail!("not an HTTP answer: {answer:?}");
    };
    anyhow::ensure!(head.starts_with("HTTP/1.1 200 "), "not 200: {answer:?}");
    Ok(body.to_owned())
}

fn saved(path: &PathBuf) -> ProxyConfig {
    let text = std::fs::read(path).expect("the configuration file");
    serde_json::from_slice(&text).expect("a configuration")
}

#[tokio::test]
async fn a_proxy_process_serves_takes_configurations_and_comes_back_with_the_last_good_one()
-> anyhow::Result<()> {
    let a = backend("a").await;
    let b = backend("b").await;
    let directory = tempfile::tempdir()?;
    let config_file = directory.path().join("proxy.json");
    let socket = directory.path().join("control.sock");
    std::fs::write(
        &config_file,
        serde_json::to_vec(&config(&["web"], &[("a", &a)]))?,
    )?;

    let mut proxy = ProxyProcess::start(&config_file, &socket)?;
    let listeners = proxy.ready().await?;
    let web = listeners["web"];
    assert_eq!(get(web).await?, "a");
    let mode = std::fs::metadata(&socket)?.permissions().mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "the control socket is the owner's only"
    );

    // A good configuration: served at once, and written back to the file.
    let next = config(&["web", "more"], &[("b", &b)]);
    proxy.control.replace_config(&next).await?;
    let listeners = proxy.control.health().await?.listeners;
    assert_eq!(listeners["web"], web, "a kept listener keeps its socket");
    assert_eq!(get(web).await?, "b");
    assert_eq!(get(listeners["more"]).await?, "b");
    assert_eq!(saved(&config_file), next);
    let file_mode = std::fs::metadata(&config_file)?.permissions().mode();
    assert_eq!(file_mode & 0o777, 0o600, "the file may hold private keys");

    // A bad one: refused with the reason, nothing changes, nothing is written.
    let mut bad = next.clone();
    bad.listeners[1].default_pool_id = Some("missing".into());
    match proxy.control.replace_config(&bad).await {
        Err(ControlError::Refused { message }) => {
            assert!(message.contains("missing"), "{message}")
        }
        other => panic!("a bad configuration is refused, not {other:?}"),
    }
    assert_eq!(get(web).await?, "b");
    assert_eq!(proxy.control.config().await?, next);
    assert_eq!(saved(&config_file), next);

    assert_eq!(
        proxy.control.member_status().await?["pool"]["b"],
        OperatingStatus::NoMonitor
    );
    let stats = proxy.control.stats().await?;
    assert_eq!(stats.member("pool", "b").total_connections, 3);
    assert_eq!(
        stats.listener("web").total_connections,
        3,
        "a kept listener keeps its counts"
    );

    proxy.terminate().await?;
    assert!(!socket.exists(), "the control socket goes with the process");

    // Restarted, it serves the last configuration it took.
    let mut proxy = ProxyProcess::start(&config_file, &socket)?;
    let listeners = proxy.ready().await?;
    assert_eq!(listeners.keys().collect::<Vec<_>>(), ["more", "web"]);
    assert_eq!(get(listeners["web"]).await?, "b");
    proxy.terminate().await?;
    Ok(())
}
