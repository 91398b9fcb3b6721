//! The control socket: configurations replaced, refused and saved through it, statuses,
//! stats and health read back, and the socket file's mode and removal.

use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};

use ronghe_proxy::config::{ListenerProtocol, PoolProtocol};
use ronghe_proxy::control::{ControlClient, ControlError, ControlServer, SaveConfig};
use ronghe_proxy::{OperatingStatus, Proxy, ProxyConfig};
use tokio::net::TcpListener;

use super::support::http::*;
use super::support::*;

fn http_config(listener_id: &str, backends: &[&Backend]) -> ProxyConfig {
    ProxyConfig {
        listeners: vec![listener(listener_id, ListenerProtocol::Http, Some("pool"))],
        pools: vec![pool("pool", PoolProtocol::Http, backends)],
    }
}

struct Controlled {
    _directory: tempfile::TempDir,
    server: ControlServer,
    client: ControlClient,
    saved: Arc<Mutex<Vec<ProxyConfig>>>,
}

async fn controlled(config: ProxyConfig) -> Controlled {
    let directory = tempfile::tempdir().expect("temporary directory");
    let socket = directory.path().join("control.sock");
    let saved = Arc::new(Mutex::new(Vec::new()));
    let save: SaveConfig = {
        let saved = Arc::clone(&saved);
        Arc::new(move |config: &ProxyConfig| {
            saved.lock().expect("not poisoned").push(config.clone());
            Ok(())
        })
    };
    let proxy = Proxy::start(config).await.expect("a good configuration");
    let server = ControlServer::start(proxy, &socket, Some(save))
        .await
        .expect("control socket");
    Controlled {
        _directory: directory,
        server,
        client: ControlClient::new(socket),
        saved,
    }
}

#[tokio::test]
async fn a_good_configuration_replaces_the_running_one_and_is_saved() {
    let a = http_echo_backend("a").await;
    let b = http_echo_backend("b").await;
    let control = controlled(http_config("first", &[&a])).await;
    let mode = std::fs::metadata(control.client.socket())
        .expect("socket file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "only the owner may connect");

    let health = control.client.health().await.expect("healthy");
    let first = health.listeners["first"];
    assert_eq!(
        Client::http1(first)
            .await
            .get("/", &[])
            .await
            .seen()
            .backend,
        "a"
    );

    let mut next = http_config("first", &[&b]);
    next.listeners
        .push(listener("second", ListenerProtocol::Http, Some("pool")));
    control.client.replace_config(&next).await.expect("taken");
    assert_eq!(control.client.config().await.expect("config"), next);
    assert_eq!(*control.saved.lock().expect("not poisoned"), [next.clone()]);
    let health = control.client.health().await.expect("healthy");
    assert_eq!(
        health.listeners["first"], first,
        "a kept listener keeps its socket"
    );
    for listener in ["first", "second"] {
        let answer = Client::http1(health.listeners[listener])
            .await
            .get("/", &[])
            .await;
        assert_eq!(answer.seen().backend, "b", "{listener} serves the new pool");
    }
    control.server.shutdown().await;
}

#[tokio::test]
async fn a_bad_configuration_is_refused_and_the_old_one_serves_on() {
    let a = http_echo_backend("a").await;
    let control = controlled(http_config("web", &[&a])).await;
    let address = control.client.health().await.expect("healthy").listeners["web"];
    let mut client = Client::http1(address).await;
    assert_eq!(client.get("/", &[]).await.status, 200);

    // Invalid: the listener names a pool that does not exist.
    let mut invalid = http_config("web", &[&a]);
    invalid.listeners[0].default_pool_id = Some("nowhere".into());
    let refused = control.client.replace_config(&invalid).await;
    let Err(ControlError::Refused { message }) = refused else {
        panic!("an invalid configuration is refused: {refused:?}");
    };
    assert!(
        message.contains("nowhere"),
        "the answer says why: {message}"
    );

    // Unbindable: the address is taken by someone else.
    let taken = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let mut unbindable = http_config("web", &[&a]);
    unbindable
        .listeners
        .push(listener("clash", ListenerProtocol::Http, Some("pool")));
    unbindable.listeners[1].bind = taken.local_addr().expect("bound");
    let refused = control.client.replace_config(&unbindable).await;
    let Err(ControlError::Refused { message }) = refused else {
        panic!("an unbindable configuration is refused: {refused:?}");
    };
    assert!(
        message.contains("clash"),
        "the answer names the listener: {message}"
    );

    assert_eq!(
        client.get("/", &[]).await.status,
        200,
        "the open connection serves on"
    );
    assert_eq!(
        Client::http1(address)
            .await
            .get("/", &[])
            .await
            .seen()
            .backend,
        "a",
        "new connections too"
    );
    assert_eq!(
        control.client.config().await.expect("config"),
        http_config("web", &[&a])
    );
    assert!(control.saved.lock().expect("not poisoned").is_empty());
    control.server.shutdown().await;
}

#[tokio::test]
async fn statuses_and_stats_read_back() {
    let a = http_echo_backend("a").await;
    let b = http_echo_backend("b").await;
    let mut config = http_config("web", &[&a, &b]);
    config.pools[0].members[1].admin_state_up = false;
    let control = controlled(config).await;
    let address = control.client.health().await.expect("healthy").listeners["web"];
    let mut client = Client::http1(address).await;
    for _ in 0..3 {
        assert_eq!(client.get("/", &[]).await.seen().backend, "a");
    }

    let statuses = control.client.member_status().await.expect("statuses");
    assert_eq!(statuses["pool"]["a"], OperatingStatus::NoMonitor);
    assert_eq!(statuses["pool"]["b"], OperatingStatus::Offline);
    let mut stats = control.client.stats().await.expect("stats");
    for _ in 0..100 {
        if stats.member("pool", "a").total_connections == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        stats = control.client.stats().await.expect("stats");
    }
    assert_eq!(stats.member("pool", "a").total_connections, 3);
    assert!(stats.member("pool", "a").bytes_out > 0);
    assert_eq!(stats.listener("web").total_connections, 1);
    assert_eq!(stats, control.server.proxy().stats());
    control.server.shutdown().await;
}

#[tokio::test]
async fn the_socket_answers_plain_http_and_goes_at_shutdown() {
    let a = http_echo_backend("a").await;
    let control = controlled(http_config("web", &[&a])).await;
    let socket = control.client.socket().to_owned();

    // What curl would send, by hand: a wrong method, a wrong path, a body that is no
    // configuration.
    let exchange = |request: &'static str| {
        let socket = socket.clone();
        async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut stream = tokio::net::UnixStream::connect(&socket)
                .await
                .expect("connect");
            stream.write_all(request.as_bytes()).await.expect("send");
            let mut answer = String::new();
            stream.read_to_string(&mut answer).await.expect("answer");
            answer
        }
    };
    let answer = exchange("DELETE /config HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    let answer = exchange("GET /nothing HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    let answer = exchange(
        "PUT /config HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 13\r\n\r\n{\"pools\": 3 }",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("not a proxy configuration"), "{answer}");

    // A second server on the same socket is turned away while the first lives.
    let other = Proxy::start(ProxyConfig::default())
        .await
        .expect("empty proxy");
    assert!(ControlServer::start(other, &socket, None).await.is_err());

    control.server.shutdown().await;
    assert!(!socket.exists(), "the socket file is removed");
    assert!(matches!(
        control.client.health().await,
        Err(ControlError::Connect { .. })
    ));
}
