//! WebSocket over HTTP/2 (RFC 8441): HTTP/2 clients open WebSockets by extended CONNECT,
//! and HTTP/1.1 members (real WebSocket servers, tokio-tungstenite) see the upgrade of
//! RFC 6455 with the proxy's own key.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::Empty;
use hyper::client::conn::http2::SendRequest;
use hyper::ext::Protocol;
use hyper_util::rt::{TokioExecutor, TokioIo};
use ronghe_proxy::config::{ListenerProtocol, PoolProtocol};
use ronghe_proxy::{Proxy, ProxyConfig};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request as Handshake};
use tokio_tungstenite::tungstenite::protocol::Role;

use super::support::http::upgrading_backend;
use super::support::{
    Backend, DEADLINE, eventually, http_backend, listener, pool, reusable_listener,
};

fn websocket_config(backends: &[&Backend]) -> ProxyConfig {
    let mut listener = listener("web", ListenerProtocol::Http, Some("pool"));
    listener.insert_headers.x_forwarded_for = true;
    ProxyConfig {
        listeners: vec![listener],
        pools: vec![pool("pool", PoolProtocol::Http, backends)],
    }
}

/// A WebSocket server (tokio-tungstenite, which checks the handshake as RFC 6455 says)
/// that takes the `chat` subprotocol when offered and answers each text message with
/// its name and the message. The handshake requests' heads (lower case) go to `seen`.
// tungstenite's handshake callback returns its own error type, a whole response.
#[allow(clippy::result_large_err)]
fn websocket_backend(name: &str, seen: Arc<Mutex<Vec<HeaderMap>>>) -> Backend {
    let listener = reusable_listener();
    let address = listener.local_addr().expect("backend address");
    let prefix = format!("{name}: ");
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = Arc::clone(&seen);
            let prefix = prefix.clone();
            tokio::spawn(async move {
                let callback = |request: &Handshake, mut response| {
                    let mut head = request.headers().clone();
                    head.insert("x-path", request.uri().to_string().parse().expect("path"));
                    let offered = head.get("sec-websocket-protocol").cloned();
                    seen.lock().expect("the heads").push(head);
                    if let Some(offered) = offered
                        && offered
                            .to_str()
                            .is_ok_and(|offered| offered.contains("chat"))
                    {
                        let chosen = "chat".parse().expect("subprotocol");
                        http::Response::headers_mut(&mut response)
                            .insert("sec-websocket-protocol", chosen);
                    }
                    Ok::<_, ErrorResponse>(response)
                };
                let Ok(mut socket) = tokio_tungstenite::accept_hdr_async(stream, callback).await
                else {
                    return;
                };
                while let Some(Ok(message)) = socket.next().await {
                    let answer = match message {
                        Message::Text(text) => Message::text(format!("{prefix}{text}")),
                        Message::Close(_) => break,
                        _ => continue,
                    };
                    if socket.send(answer).await.is_err() {
                        return;
                    }
                }
                let _ = socket.close(None).await;
            });
        }
    });
    Backend::from_task(name, address, task)
}

/// An HTTP/2 client connection that has seen the proxy offer extended CONNECT.
async fn h2_client(proxy: &Proxy) -> SendRequest<Empty<Bytes>> {
    let stream = TcpStream::connect(proxy.local_addr("web").expect("listener"))
        .await
        .expect("connect");
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("HTTP/2 handshake");
    // The connection knows the server's SETTINGS. It runs in a task of its own, and
    // hyper drives its frames in another, so it is asked directly.
    let connection = Arc::new(Mutex::new(connection));
    let polled = Arc::clone(&connection);
    tokio::spawn(std::future::poll_fn(move |context| {
        let mut connection = polled.lock().expect("the connection");
        Pin::new(&mut *connection).poll(context).map(|_| ())
    }));
    eventually("the proxy's SETTINGS offer extended CONNECT", || {
        let offered = connection
            .lock()
            .expect("the connection")
            .is_extended_connect_protocol_enabled();
        async move { offered }
    })
    .await;
    sender
}

/// An extended CONNECT for `protocol` at `path`, with `headers`.
fn connect(protocol: &'static str, path: &str, headers: &[(&str, &str)]) -> Request<Empty<Bytes>> {
    let mut builder = Request::builder()
        .method(Method::CONNECT)
        .uri(format!("http://chat.example{path}"))
        .extension(Protocol::from_static(protocol));
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Empty::new()).expect("request")
}

/// Opens a WebSocket over the HTTP/2 connection `sender`; the answer's head comes too.
async fn open(
    sender: &mut SendRequest<Empty<Bytes>>,
    path: &str,
) -> (
    http::response::Parts,
    WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>,
) {
    let request = connect(
        "websocket",
        path,
        &[
            ("sec-websocket-version", "13"),
            ("sec-websocket-protocol", "chat, superchat"),
        ],
    );
    let response = tokio::time::timeout(DEADLINE, sender.send_request(request))
        .await
        .expect("the answer in time")
        .expect("the answer");
    let (parts, body) = response.into_parts();
    assert_eq!(parts.status, StatusCode::OK, "{parts:?}");
    let response = http::Response::from_parts(parts.clone(), body);
    let stream = tokio::time::timeout(DEADLINE, hyper::upgrade::on(response))
        .await
        .expect("the stream in time")
        .expect("the stream is the WebSocket's");
    let socket = WebSocketStream::from_raw_socket(TokioIo::new(stream), Role::Client, None).await;
    (parts, socket)
}

/// Sends `text` and reads the answer.
async fn say(
    socket: &mut WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>,
    text: &str,
) -> String {
    socket.send(Message::text(text)).await.expect("send");
    let answer = tokio::time::timeout(DEADLINE, socket.next())
        .await
        .expect("the answer in time")
        .expect("an answer")
        .expect("a message");
    answer.into_text().expect("text").to_string()
}

/// The status of a request sent on `sender`.
async fn status_of(
    sender: &mut SendRequest<Empty<Bytes>>,
    request: Request<Empty<Bytes>>,
) -> StatusCode {
    tokio::time::timeout(DEADLINE, sender.send_request(request))
        .await
        .expect("the answer in time")
        .expect("the answer")
        .status()
}

#[tokio::test]
async fn http2_clients_open_websockets_with_extended_connect() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let a = websocket_backend("a", Arc::clone(&seen));
    let b = websocket_backend("b", Arc::clone(&seen));
    let proxy = Proxy::start(websocket_config(&[&a, &b])).await.unwrap();
    let mut sender = h2_client(&proxy).await;

    // Two WebSockets on one connection, balanced over both members, each its own.
    let (answer, mut first) = open(&mut sender, "/chat?room=1").await;
    let (_, mut second) = open(&mut sender, "/chat?room=2").await;
    assert_eq!(answer.headers["sec-websocket-protocol"], "chat");
    assert!(
        !answer.headers.contains_key("sec-websocket-accept"),
        "HTTP/2 WebSockets have no accept key: {answer:?}"
    );
    let one = say(&mut first, "hello").await;
    let two = say(&mut second, "hello").await;
    let mut names = [one[..1].to_owned(), two[..1].to_owned()];
    names.sort();
    assert_eq!(names, ["a", "b"], "{one:?} {two:?}");
    assert!(one.ends_with(": hello") && two.ends_with(": hello"));
    for round in 0..3 {
        let text = format!("round {round}");
        assert_eq!(
            say(&mut first, &text).await,
            format!("{}: {text}", &one[..1])
        );
    }

    // The members were asked for RFC 6455's upgrade, each with a key of the proxy's.
    let heads = seen.lock().expect("the heads").clone();
    assert_eq!(heads.len(), 2, "{heads:?}");
    for head in &heads {
        assert!(
            head["x-path"].to_str().unwrap().starts_with("/chat?room="),
            "{head:?}"
        );
        assert_eq!(head["host"], "chat.example");
        assert_eq!(head["upgrade"], "websocket");
        assert_eq!(head["connection"], "upgrade");
        assert_eq!(head["sec-websocket-version"], "13");
        assert_eq!(head["x-forwarded-for"], "127.0.0.1");
        assert_eq!(head["sec-websocket-key"].len(), 24, "{head:?}");
    }
    assert_ne!(heads[0]["sec-websocket-key"], heads[1]["sec-websocket-key"]);

    // Each open WebSocket holds its member connection.
    let stats = proxy.stats();
    for member in ["a", "b"] {
        assert_eq!(
            stats.member("pool", member).active_connections,
            1,
            "{member}"
        );
    }

    // A WebSocket that closes lets its member connection go; the other stays open.
    first.close(None).await.expect("close");
    let closed = tokio::time::timeout(DEADLINE, async {
        while let Some(Ok(_)) = first.next().await {}
    })
    .await;
    assert!(closed.is_ok(), "the member's close came back");
    // The client lets its stream go once the close handshake is over.
    drop(first);
    let first_member = one[..1].to_owned();
    eventually("the closed WebSocket's member connection is let go", || {
        let active = proxy
            .stats()
            .member("pool", &first_member)
            .active_connections;
        async move { active == 0 }
    })
    .await;
    let text = say(&mut second, "still here").await;
    assert!(text.ends_with(": still here"), "{text}");
    let stats = proxy.stats().listener("web");
    assert!(stats.bytes_in > 0 && stats.bytes_out > 0, "{stats:?}");
    proxy.shutdown().await;
}

#[tokio::test]
async fn websocket_handshakes_members_refuse_or_break_are_answered() {
    // A member that answers with its status and does not switch.
    let status = Arc::new(AtomicU16::new(403));
    let refusing = http_backend("refusing", Arc::clone(&status));
    let proxy = Proxy::start(websocket_config(&[&refusing])).await.unwrap();
    let mut sender = h2_client(&proxy).await;
    let websocket = || connect("websocket", "/chat", &[("sec-websocket-version", "13")]);
    // A refusal goes to the client as it is.
    assert_eq!(
        status_of(&mut sender, websocket()).await,
        StatusCode::FORBIDDEN
    );
    // A 2xx that did not switch would tell the client its WebSocket is open: 502.
    status.store(200, Ordering::Relaxed);
    assert_eq!(
        status_of(&mut sender, websocket()).await,
        StatusCode::BAD_GATEWAY
    );
    assert!(proxy.stats().member("pool", "refusing").request_errors >= 1);
    // No HTTP/1.1 member could take another protocol.
    let udp = connect("connect-udp", "/.well-known/masque/udp/192.0.2.6/443/", &[]);
    assert_eq!(
        status_of(&mut sender, udp).await,
        StatusCode::NOT_IMPLEMENTED
    );
    proxy.shutdown().await;

    // A member that switches without the accept key the proxy's key calls for.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let wrong_key = upgrading_backend("wrong-key", seen);
    let proxy = Proxy::start(websocket_config(&[&wrong_key])).await.unwrap();
    let mut sender = h2_client(&proxy).await;
    assert_eq!(
        status_of(&mut sender, websocket()).await,
        StatusCode::BAD_GATEWAY
    );
    proxy.shutdown().await;
}
