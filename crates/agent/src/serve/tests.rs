//! The endpoint in process, over real sockets: the node-token check, logs, exec under both
//! subprotocols (stdin, the close signal, exit codes), and console output, with workloads
//! from a table instead of an API server.

use std::collections::HashMap;

use anyhow::{Context, ensure};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{SinkExt, StreamExt};
use http_body_util::BodyExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::*;
use crate::pods::{ExecRequest, FakeDriver, PodDriver};
use crate::vms::FakeVmDriver;

const TOKEN: &str = "node-secret";

/// Workloads from a table.
struct Table {
    pods: HashMap<(String, String), Pod>,
    vms: HashMap<(String, String), DynamicObject>,
}

#[async_trait::async_trait]
impl Workloads for Table {
    async fn pod(&self, namespace: &str, name: &str) -> anyhow::Result<Option<Pod>> {
        Ok(self.pods.get(&(namespace.into(), name.into())).cloned())
    }

    async fn vm(&self, namespace: &str, name: &str) -> anyhow::Result<Option<DynamicObject>> {
        Ok(self.vms.get(&(namespace.into(), name.into())).cloned())
    }
}

/// The fake driver for logs; exec copies stdin to stdout, and stderr gets the command, and
/// the exit code is the number of bytes read.
struct CatDriver;

#[async_trait::async_trait]
impl PodDriver for CatDriver {
    async fn start(
        &self,
        host: &str,
        pod: &Pod,
        status: crate::pods::StatusSender,
    ) -> anyhow::Result<()> {
        FakeDriver.start(host, pod, status).await
    }

    async fn stop(&self, host: &str, pod: &Pod, grace_seconds: i64) -> anyhow::Result<()> {
        FakeDriver.stop(host, pod, grace_seconds).await
    }

    async fn logs(
        &self,
        pod: &PodRef,
        container: &str,
        options: &LogOptions,
    ) -> anyhow::Result<BoxStream<'static, std::io::Result<Bytes>>> {
        FakeDriver.logs(pod, container, options).await
    }

    async fn exec(
        &self,
        _pod: &PodRef,
        _container: &str,
        exec: ExecRequest,
    ) -> anyhow::Result<i32> {
        if let Some(stderr) = &exec.stderr {
            let _ = stderr.send(Bytes::from(exec.command.join(" "))).await;
        }
        let mut read = 0;
        if let Some(mut stdin) = exec.stdin {
            while let Some(data) = stdin.recv().await {
                read += data.len();
                if let Some(stdout) = &exec.stdout {
                    let _ = stdout.send(data).await;
                }
            }
        }
        Ok(i32::try_from(read).unwrap_or(i32::MAX))
    }
}

fn pod(node: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "ns", "uid": "uid-web"},
        "spec": {"nodeName": node, "containers": [{"name": "main", "image": "busybox"}]},
    }))
    .expect("a valid pod")
}

fn vm(host: &str) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "compute.ronghe.io/v1", "kind": "VirtualMachine",
        "metadata": {"name": "box", "namespace": "ns", "uid": "uid-box"},
        "status": {"host": host},
    }))
    .expect("a valid VM")
}

/// Serves an endpoint for host `here` with pods `ns/web` (here) and `ns/far` (elsewhere).
async fn endpoint() -> anyhow::Result<(SocketAddr, watch::Sender<bool>)> {
    let mut pods = HashMap::new();
    pods.insert(("ns".into(), "web".into()), pod("here"));
    pods.insert(("ns".into(), "far".into()), pod("elsewhere"));
    let mut vms = HashMap::new();
    vms.insert(("ns".into(), "box".into()), vm("here"));
    let drivers = Drivers {
        pods: Arc::new(CatDriver),
        vms: Arc::new(FakeVmDriver),
        network: Arc::new(crate::network::NoNetwork),
        load_balancers: Arc::new(crate::loadbalancers::FakeLoadBalancerDriver::default()),
        node_ports: None,
    };
    let hosts = ["here".to_owned()].into_iter().collect();
    let endpoint = Endpoint::bind("127.0.0.1:0".parse()?, TOKEN).await?;
    let address = endpoint.local_addr()?;
    let (stop, stopped) = watch::channel(false);
    let workloads = Arc::new(Table { pods, vms });
    tokio::spawn(serve(endpoint, workloads, hosts, drivers, stopped));
    Ok((address, stop))
}

/// A GET with `token` (if any); the status and the body as text.
async fn get(
    address: SocketAddr,
    path: &str,
    token: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    let stream = tokio::net::TcpStream::connect(address).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let mut request = http::Request::get(path).header(header::HOST, "agent");
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let response = sender
        .send_request(request.body(http_body_util::Empty::<Bytes>::new())?)
        .await?;
    let code = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((code, String::from_utf8_lossy(&body).into_owned()))
}

type Socket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

async fn connect(address: SocketAddr, path: &str, protocol: &str) -> anyhow::Result<Socket> {
    let mut request = format!("ws://{address}{path}").into_client_request()?;
    let headers = request.headers_mut();
    headers.insert("sec-websocket-protocol", protocol.parse()?);
    headers.insert(header::AUTHORIZATION, format!("Bearer {TOKEN}").parse()?);
    let stream = tokio::net::TcpStream::connect(address).await?;
    let (socket, response) = tokio_tungstenite::client_async(request, stream).await?;
    ensure!(
        response
            .headers()
            .get("sec-websocket-protocol")
            .map(|v| v.as_bytes())
            == Some(protocol.as_bytes()),
        "negotiated {:?}",
        response.headers().get("sec-websocket-protocol")
    );
    Ok(socket)
}

/// Reads until the server closes: the bytes of each stream, and the close code.
async fn drain(socket: &mut Socket) -> anyhow::Result<(HashMap<u8, Vec<u8>>, Option<u16>)> {
    let mut streams: HashMap<u8, Vec<u8>> = HashMap::new();
    let read = async {
        while let Some(message) = socket.next().await {
            match message? {
                Message::Binary(data) => {
                    let (&stream, payload) = data.split_first().context("an empty message")?;
                    streams
                        .entry(stream)
                        .or_default()
                        .extend_from_slice(payload);
                }
                Message::Close(frame) => return Ok(frame.map(|f| u16::from(f.code))),
                _ => {}
            }
        }
        anyhow::Ok(None)
    };
    let code = tokio::time::timeout(std::time::Duration::from_secs(10), read)
        .await
        .context("the session did not end")??;
    Ok((streams, code))
}

fn status(streams: &HashMap<u8, Vec<u8>>) -> anyhow::Result<Value> {
    let bytes = streams
        .get(&channel::ERROR)
        .context("no status on the error stream")?;
    Ok(serde_json::from_slice(bytes)?)
}

#[tokio::test]
async fn callers_need_the_node_token_but_for_the_health_check() -> anyhow::Result<()> {
    let (address, _stop) = endpoint().await?;
    let path = "/containerLogs/ns/web/main";
    assert_eq!(get(address, path, None).await?.0, 401);
    let health = get(address, "/healthz", None).await?;
    assert_eq!((health.0, health.1.as_str()), (200, "ok"));
    assert_eq!(get(address, path, Some("node-secreT")).await?.0, 401);
    assert_eq!(get(address, path, Some("")).await?.0, 401);
    assert!(token_matches(TOKEN, TOKEN));
    assert!(
        !token_matches("", ""),
        "an empty expected token admits no one"
    );
    Ok(())
}

#[tokio::test]
async fn logs_of_pods_on_this_host_only() -> anyhow::Result<()> {
    let (address, _stop) = endpoint().await?;
    let token = Some(TOKEN);
    assert_eq!(
        get(
            address,
            "/containerLogs/ns/web/main?follow=true&tailLines=1",
            token
        )
        .await?,
        (200, "fake log of main\n".to_owned())
    );
    assert_eq!(
        get(address, "/containerLogs/ns/web/main?limitBytes=4", token).await?,
        (200, "fake".to_owned())
    );
    assert_eq!(
        get(address, "/containerLogs/ns/far/main", token).await?.0,
        404
    );
    assert_eq!(
        get(address, "/containerLogs/ns/nope/main", token).await?.0,
        404
    );
    let (code, body) = get(address, "/containerLogs/ns/web/other", token).await?;
    assert_eq!(
        (code, body.as_str()),
        (404, "container other is not valid for pod web")
    );
    let (code, body) = get(address, "/containerLogs/ns/web/main?tailLines=x", token).await?;
    assert_eq!(code, 400, "{body}");
    Ok(())
}

#[tokio::test]
async fn exec_v5_half_closes_stdin_and_reports_the_exit_code() -> anyhow::Result<()> {
    let (address, _stop) = endpoint().await?;
    let path = "/exec/ns/web/main?command=cat&command=-&input=1&output=1&error=1";
    let mut socket = connect(address, path, V5).await?;
    socket.send(Message::binary(b"\x00hello ".to_vec())).await?;
    socket.send(Message::binary(b"\x00world".to_vec())).await?;
    // The close signal for stdin: the command sees its input end and exits.
    socket
        .send(Message::binary(vec![channel::CLOSE, channel::STDIN]))
        .await?;
    let (streams, close) = drain(&mut socket).await?;
    assert_eq!(
        streams.get(&channel::STDOUT).map(Vec::as_slice),
        Some(b"hello world".as_slice())
    );
    assert_eq!(
        streams.get(&channel::STDERR).map(Vec::as_slice),
        Some(b"cat -".as_slice())
    );
    let status = status(&streams)?;
    assert_eq!(status["reason"], "NonZeroExitCode", "{status}");
    assert_eq!(status["details"]["causes"][0]["message"], "11");
    assert_eq!(close, Some(1000));
    Ok(())
}

#[tokio::test]
async fn exec_v4_ends_with_success() -> anyhow::Result<()> {
    let (address, _stop) = endpoint().await?;
    // No stdin: the command reads nothing and exits 0.
    let path = "/exec/ns/web/main?command=true&stdout=true&stderr=true";
    let mut socket = connect(address, path, V4).await?;
    let (streams, close) = drain(&mut socket).await?;
    assert_eq!(
        status(&streams)?,
        json!({"metadata": {}, "status": "Success"})
    );
    assert_eq!(
        streams.get(&channel::STDERR).map(Vec::as_slice),
        Some(b"true".as_slice())
    );
    assert_eq!(close, Some(1000));
    Ok(())
}

#[tokio::test]
async fn exec_refuses_what_it_cannot_serve() -> anyhow::Result<()> {
    let (address, _stop) = endpoint().await?;
    let token = Some(TOKEN);
    // Not an upgrade (a SPDY client would POST): refused with a reason.
    let (code, body) = get(address, "/exec/ns/web/main?command=ls&output=1", token).await?;
    assert_eq!(code, 400);
    assert!(body.contains("v5.channel.k8s.io"), "{body}");
    assert_eq!(
        get(address, "/exec/ns/web/main?output=1", token).await?.0,
        400
    );
    assert_eq!(
        get(address, "/exec/ns/web/main?command=ls", token).await?.0,
        400
    );
    assert_eq!(
        get(address, "/exec/ns/far/main?command=ls&output=1", token)
            .await?
            .0,
        404
    );
    // An unknown subprotocol is no upgrade.
    let refused = connect(
        address,
        "/exec/ns/web/main?command=ls&output=1",
        "channel.k8s.io",
    )
    .await;
    assert!(refused.is_err());
    Ok(())
}

#[tokio::test]
async fn console_output_of_vms_on_this_host() -> anyhow::Result<()> {
    let (address, _stop) = endpoint().await?;
    let token = Some(TOKEN);
    assert_eq!(
        get(address, "/vms/ns/box/console?lines=10", token).await?,
        (200, String::new())
    );
    assert_eq!(
        get(address, "/vms/ns/box/console?uid=uid-box", token)
            .await?
            .0,
        200
    );
    assert_eq!(
        get(address, "/vms/ns/box/console?uid=other", token)
            .await?
            .0,
        404
    );
    assert_eq!(get(address, "/vms/ns/nope/console", token).await?.0, 404);
    assert_eq!(get(address, "/vms/ns/box/console", None).await?.0, 401);
    Ok(())
}
