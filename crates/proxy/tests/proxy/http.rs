//! HTTP and TERMINATED_HTTPS listeners: per-request balancing, X-Forwarded-* headers,
//! L7 policies, HTTP/2, cookie persistence, malformed and slow clients, TLS termination.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ronghe_proxy::config::{
    L7Action, L7CompareType, L7Policy, L7Rule, L7RuleType, ListenerProtocol, PersistenceType,
    PoolProtocol, SessionPersistence, TlsCertificate,
};
use ronghe_proxy::{Proxy, ProxyConfig};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::support::http::*;
use super::support::*;

fn http_config(backends: &[&Backend]) -> ProxyConfig {
    let mut listener = listener("web", ListenerProtocol::Http, Some("pool"));
    listener.insert_headers.x_forwarded_for = true;
    listener.insert_headers.x_forwarded_port = true;
    listener.insert_headers.x_forwarded_proto = true;
    ProxyConfig {
        listeners: vec![listener],
        pools: vec![pool("pool", PoolProtocol::Http, backends)],
    }
}

#[tokio::test]
async fn requests_are_balanced_one_by_one_with_forwarded_headers() {
    let a = http_echo_backend("a").await;
    let b = http_echo_backend("b").await;
    let proxy = Proxy::start(http_config(&[&a, &b])).await.unwrap();
    let address = proxy.local_addr("web").unwrap();
    let mut client = Client::http1(address).await;
    let mut backends = BTreeSet::new();
    for _ in 0..4 {
        let answer = client
            .get(
                "/hello?x=1",
                &[
                    ("x-forwarded-for", "10.9.9.9"),
                    ("connection", "keep-alive"),
                ],
            )
            .await;
        assert_eq!(answer.status, 200);
        let seen = answer.seen();
        assert_eq!(seen.method, "GET");
        assert_eq!(seen.path, "/hello?x=1");
        assert_eq!(seen.version, "HTTP/1.1");
        assert_eq!(seen.headers["host"], "app.example.com");
        assert_eq!(seen.headers["x-forwarded-for"], "10.9.9.9, 127.0.0.1");
        assert_eq!(seen.headers["x-forwarded-port"], address.port().to_string());
        assert_eq!(seen.headers["x-forwarded-proto"], "http");
        backends.insert(seen.backend);
    }
    assert_eq!(
        backends,
        BTreeSet::from(["a".into(), "b".into()]),
        "one keep-alive connection, balanced per request"
    );
    eventually("stats count the connection and its bytes", || async {
        let stats = proxy.stats();
        let listener = stats.listener("web");
        listener.total_connections == 1
            && listener.bytes_in > 0
            && listener.bytes_out > listener.bytes_in
            && stats.member("pool", "a").total_connections == 2
            && stats.member("pool", "a").bytes_out > 0
    })
    .await;
    proxy.shutdown().await;
}

#[tokio::test]
async fn http2_with_prior_knowledge_reaches_http1_members() {
    let a = http_echo_backend("a").await;
    let proxy = Proxy::start(http_config(&[&a])).await.unwrap();
    let mut client = Client::http2(proxy.local_addr("web").unwrap()).await;
    let answer = client
        .get(
            "/h2",
            &[
                ("cookie", "a=1"),
                ("cookie", "b=2"),
                ("x-forwarded-for", "10.0.0.1"),
                ("x-forwarded-for", "10.0.0.2"),
            ],
        )
        .await;
    assert_eq!(answer.status, 200);
    let seen = answer.seen();
    assert_eq!(seen.version, "HTTP/1.1");
    assert_eq!(seen.path, "/h2");
    assert_eq!(seen.headers["host"], "app.example.com");
    assert_eq!(seen.headers["cookie"], "a=1; b=2");
    assert_eq!(
        seen.headers["x-forwarded-for"], "10.0.0.1, 10.0.0.2, 127.0.0.1",
        "every earlier hop is kept"
    );
    proxy.shutdown().await;
}

fn rule(rule_type: L7RuleType, compare_type: L7CompareType, value: &str) -> L7Rule {
    L7Rule {
        rule_type,
        compare_type,
        key: None,
        value: value.into(),
        invert: false,
    }
}

fn policy(id: &str, position: u32, action: L7Action, rules: Vec<L7Rule>) -> L7Policy {
    L7Policy {
        id: id.into(),
        action,
        position,
        redirect_pool_id: None,
        redirect_url: None,
        redirect_prefix: None,
        redirect_http_code: None,
        rules,
    }
}

#[tokio::test]
async fn l7_policies_route_redirect_and_reject() {
    let web = http_echo_backend("web").await;
    let api = http_echo_backend("api").await;
    let mut config = http_config(&[&web]);
    config
        .pools
        .push(pool("api-pool", PoolProtocol::Http, &[&api]));
    let mut to_api = policy(
        "to-api",
        3,
        L7Action::RedirectToPool,
        vec![rule(L7RuleType::Path, L7CompareType::StartsWith, "/api/")],
    );
    to_api.redirect_pool_id = Some("api-pool".into());
    let mut moved = policy(
        "moved",
        2,
        L7Action::RedirectPrefix,
        vec![rule(L7RuleType::Path, L7CompareType::StartsWith, "/old/")],
    );
    moved.redirect_prefix = Some("https://new.example.com".into());
    moved.redirect_http_code = Some(301);
    let mut header_rule = rule(L7RuleType::Header, L7CompareType::Contains, "curl");
    header_rule.key = Some("User-Agent".into());
    let reject = policy("no-curl", 1, L7Action::Reject, vec![header_rule]);
    config.listeners[0].l7_policies = vec![to_api, moved, reject];
    let proxy = Proxy::start(config).await.unwrap();
    let mut client = Client::http1(proxy.local_addr("web").unwrap()).await;

    assert_eq!(client.get("/api/users", &[]).await.seen().backend, "api");
    assert_eq!(client.get("/apiary", &[]).await.seen().backend, "web");
    let redirected = client.get("/old/page?q=1", &[]).await;
    assert_eq!(redirected.status, 301);
    assert_eq!(
        redirected.headers["location"],
        "https://new.example.com/old/page?q=1"
    );
    let rejected = client
        .get("/api/users", &[("user-agent", "curl/8.0")])
        .await;
    assert_eq!(rejected.status, 403);
    proxy.shutdown().await;
}

#[tokio::test]
async fn http_cookie_persistence_pins_a_client_to_its_member() {
    let a = http_echo_backend("a").await;
    let b = http_echo_backend("b").await;
    let mut config = http_config(&[&a, &b]);
    config.pools[0].session_persistence = Some(SessionPersistence {
        persistence_type: PersistenceType::HttpCookie,
        cookie_name: None,
        persistence_timeout_ms: None,
    });
    let proxy = Proxy::start(config).await.unwrap();
    let mut client = Client::http1(proxy.local_addr("web").unwrap()).await;
    let first = client.get("/", &[]).await;
    let member = first.seen().backend;
    let set_cookie = first.headers["set-cookie"].to_str().unwrap().to_owned();
    assert_eq!(set_cookie, format!("SRV={member}; path=/"));
    let cookie = format!("other=1; SRV={member}");
    for _ in 0..5 {
        let answer = client.get("/", &[("cookie", &cookie)]).await;
        let seen = answer.seen();
        assert_eq!(seen.backend, member);
        assert_eq!(
            seen.headers["cookie"], "other=1",
            "the member never sees SRV"
        );
        assert!(
            !answer.headers.contains_key("set-cookie"),
            "no new cookie while pinned"
        );
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn app_cookie_persistence_follows_the_members_session_cookie() {
    let a = http_echo_backend("a").await;
    let b = http_echo_backend("b").await;
    let mut config = http_config(&[&a, &b]);
    config.pools[0].session_persistence = Some(SessionPersistence {
        persistence_type: PersistenceType::AppCookie,
        cookie_name: Some("JSESSIONID".into()),
        persistence_timeout_ms: None,
    });
    let proxy = Proxy::start(config).await.unwrap();
    let mut client = Client::http1(proxy.local_addr("web").unwrap()).await;
    let login = client
        .get("/login", &[("x-set-cookie", "JSESSIONID=s-42; Path=/")])
        .await;
    let member = login.seen().backend;
    for _ in 0..5 {
        let seen = client
            .get("/", &[("cookie", "JSESSIONID=s-42")])
            .await
            .seen();
        assert_eq!(seen.backend, member);
    }
    proxy.shutdown().await;
}

/// A keep-alive HTTP/1.1 backend that reads each request (its head, and a body of the
/// length its Content-Length says) and writes `answer(number of the connection, body)` as
/// it is, counting the connections it accepts. With `close_after`, it closes each connection that long after answering,
/// without a word (a member whose keep-alive timeout is short).
fn scripted_backend(
    name: &str,
    accepted: Arc<AtomicUsize>,
    close_after: Option<Duration>,
    answer: impl Fn(usize, &[u8]) -> Vec<u8> + Send + Sync + 'static,
) -> Backend {
    let listener = reusable_listener();
    let address = listener.local_addr().expect("backend address");
    let answer = Arc::new(answer);
    let task = tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            let number = accepted.fetch_add(1, Ordering::SeqCst) + 1;
            let answer = Arc::clone(&answer);
            connections.spawn(async move {
                let mut stream = BufReader::new(stream);
                let mut line = String::new();
                loop {
                    let mut length = 0;
                    loop {
                        line.clear();
                        match stream.read_line(&mut line).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) if line == "\r\n" => break,
                            Ok(_) => {
                                if let Some((name, value)) = line.split_once(':')
                                    && name.eq_ignore_ascii_case("content-length")
                                {
                                    length = value.trim().parse().unwrap_or(0);
                                }
                            }
                        }
                    }
                    let mut body = vec![0u8; length];
                    if stream.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    if stream
                        .get_mut()
                        .write_all(&answer(number, &body))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    if let Some(close_after) = close_after {
                        tokio::time::sleep(close_after).await;
                        return;
                    }
                }
            });
        }
    });
    Backend::from_task(name, address, task)
}

/// A backend answering each request with its name and the number of the connection.
fn counting_backend(
    name: &str,
    accepted: Arc<AtomicUsize>,
    close_after: Option<Duration>,
) -> Backend {
    let backend_name = name.to_owned();
    scripted_backend(name, accepted, close_after, move |number, _| {
        let body = format!("{backend_name}:{number}");
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    })
}

#[tokio::test]
async fn member_connections_are_reused_and_closed_ones_replaced() {
    let accepted = Arc::new(AtomicUsize::new(0));
    let a = counting_backend("a", Arc::clone(&accepted), None);
    let proxy = Proxy::start(http_config(&[&a])).await.unwrap();
    let address = proxy.local_addr("web").unwrap();
    let mut client = Client::http1(address).await;
    for _ in 0..20 {
        let answer = client.get("/", &[]).await;
        assert_eq!(answer.status, 200);
        assert!(answer.body.starts_with("a:"), "{answer:?}");
    }
    let mut other = Client::http1(address).await;
    assert_eq!(other.get("/", &[]).await.status, 200);
    // A connection returns to the idle ones once its answer is through; the next request
    // may come a moment before, so allow a few, but far fewer than requests.
    let opened = accepted.load(Ordering::SeqCst);
    assert!(
        opened <= 4,
        "21 requests opened {opened} member connections"
    );
    assert_eq!(proxy.stats().member("pool", "a").total_connections, 21);

    // A member that closes each connection soon after answering: every request finds
    // its idle connection closed and is sent on a new one.
    let closing_accepted = Arc::new(AtomicUsize::new(0));
    let b = counting_backend(
        "b",
        Arc::clone(&closing_accepted),
        Some(Duration::from_millis(10)),
    );
    let proxy_b = Proxy::start(http_config(&[&b])).await.unwrap();
    let address_b = proxy_b.local_addr("web").unwrap();
    let mut client = Client::http1(address_b).await;
    for round in 1..=5 {
        let answer = client.get("/", &[]).await;
        assert_eq!(answer.status, 200, "round {round}: {answer:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(closing_accepted.load(Ordering::SeqCst), 5);
    assert_eq!(proxy_b.stats().member("pool", "b").request_errors, 0);
    proxy.shutdown().await;
    proxy_b.shutdown().await;
}

#[tokio::test]
async fn a_body_sent_after_its_head_is_held_and_goes_over_an_idle_connection() {
    let accepted = Arc::new(AtomicUsize::new(0));
    let echoing = scripted_backend("a", Arc::clone(&accepted), None, |_, body| {
        let mut answer =
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        answer.extend_from_slice(body);
        answer
    });
    let proxy = Proxy::start(http_config(&[&echoing])).await.unwrap();
    let address = proxy.local_addr("web").unwrap();
    let mut client = TcpStream::connect(address).await.unwrap();
    // Ten POSTs whose bodies come a moment after their heads, as many clients write
    // them: each is held whole and sent over the member's idle connection.
    for round in 0..10 {
        let body = format!("body of round {round}");
        let head = format!(
            "POST /upload HTTP/1.1\r\nhost: web\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        client.write_all(head.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        client.write_all(body.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        while !answer.ends_with(body.as_bytes()) {
            let mut chunk = [0u8; 512];
            let read = tokio::time::timeout(DEADLINE, client.read(&mut chunk))
                .await
                .expect("an answer in time")
                .unwrap();
            assert!(read > 0, "closed: {:?}", String::from_utf8_lossy(&answer));
            answer.extend_from_slice(&chunk[..read]);
        }
        assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
    }
    let opened = accepted.load(Ordering::SeqCst);
    assert!(
        opened <= 2,
        "10 requests opened {opened} member connections"
    );

    // A body that stops coming: 408 after the client timeout, nothing sent on.
    let mut config = http_config(&[&echoing]);
    config.listeners[0].timeout_client_data = 200;
    let slow = Proxy::start(config).await.unwrap();
    let answer = exchange_raw(
        slow.local_addr("web").unwrap(),
        b"POST / HTTP/1.1\r\nhost: web\r\ncontent-length: 10\r\n\r\nhalf",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert_eq!(slow.stats().member("pool", "a").total_connections, 0);
    proxy.shutdown().await;
    slow.shutdown().await;
}

#[tokio::test]
async fn no_member_is_503_and_a_dead_member_is_503_too() {
    let a = http_echo_backend("a").await;
    let mut config = http_config(&[&a]);
    config.pools.push(pool("empty", PoolProtocol::Http, &[]));
    config.listeners[0].default_pool_id = Some("empty".into());
    let proxy = Proxy::start(config.clone()).await.unwrap();
    let address = proxy.local_addr("web").unwrap();
    assert_eq!(Client::http1(address).await.get("/", &[]).await.status, 503);

    config.listeners[0].default_pool_id = Some("pool".into());
    proxy.reconfigure(config).await.unwrap();
    assert_eq!(Client::http1(address).await.get("/", &[]).await.status, 200);
    let _a = a.kill().await;
    assert_eq!(Client::http1(address).await.get("/", &[]).await.status, 503);
    proxy.shutdown().await;
}

#[tokio::test]
async fn malformed_and_slow_requests_are_cut_and_counted() {
    let a = http_echo_backend("a").await;
    let mut config = http_config(&[&a]);
    // The malformed request is answered on a listener with the default 50 s client
    // timeout, which cannot fire first. The slow clients go to one whose short timeout
    // is meant to fire; when it fires does not matter.
    let mut slow = listener("slow", ListenerProtocol::Http, Some("pool"));
    slow.timeout_client_data = 300;
    config.listeners.push(slow);
    let proxy = Proxy::start(config).await.unwrap();
    let address = proxy.local_addr("web").unwrap();
    let slow_address = proxy.local_addr("slow").unwrap();

    let mut malformed = TcpStream::connect(address).await.unwrap();
    malformed
        .write_all(b"GET / HTTP/1.1\r\nbad header line\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(DEADLINE, malformed.read_to_string(&mut answer))
        .await
        .expect("closed in time")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    eventually("the malformed request is counted", || async {
        proxy.stats().listener("web").request_errors == 1
    })
    .await;

    // A slowloris: a request head that never ends. Its bytes are sent before the proxy
    // task can run (one thread), and the proxy reads before it checks its watchdog.
    let mut slowloris = TcpStream::connect(slow_address).await.unwrap();
    slowloris
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(DEADLINE, slowloris.read_to_end(&mut rest))
        .await
        .expect("the proxy closes a slow client");
    assert!(read.is_ok() || rest.is_empty());
    eventually("the slow request is counted", || async {
        proxy.stats().listener("slow").request_errors == 1
    })
    .await;

    // A client that sends nothing is closed too, but is no request error.
    let mut silent = TcpStream::connect(slow_address).await.unwrap();
    let mut buffer = [0u8; 16];
    let read = tokio::time::timeout(DEADLINE, silent.read(&mut buffer))
        .await
        .expect("the proxy closes a silent client");
    assert!(matches!(read, Ok(0) | Err(_)));
    assert_eq!(proxy.stats().listener("slow").request_errors, 1);
    assert_eq!(proxy.stats().listener("web").request_errors, 1);
    proxy.shutdown().await;
}

#[tokio::test]
async fn open_keep_alive_and_h2_connections_see_each_reconfigure() {
    let a = http_echo_backend("a").await;
    let b = http_echo_backend("b").await;
    let config = http_config(&[&a]);
    let proxy = Proxy::start(config.clone()).await.unwrap();
    let address = proxy.local_addr("web").unwrap();
    let mut clients = [Client::http1(address).await, Client::http2(address).await];
    for client in &mut clients {
        assert_eq!(client.get("/", &[]).await.seen().backend, "a");
    }

    // The member is replaced and a policy added: the next request on each open
    // connection goes by the new configuration.
    let mut next = config;
    next.pools[0].members = vec![member(&b)];
    next.listeners[0].l7_policies = vec![policy(
        "block",
        1,
        L7Action::Reject,
        vec![rule(
            L7RuleType::Path,
            L7CompareType::StartsWith,
            "/blocked",
        )],
    )];
    proxy.reconfigure(next).await.unwrap();
    for client in &mut clients {
        assert_eq!(client.get("/", &[]).await.seen().backend, "b");
        assert_eq!(client.get("/blocked", &[]).await.status, 403);
    }
    eventually("requests counted on the new member only", || async {
        proxy.stats().member("pool", "b").total_connections == 2
    })
    .await;
    proxy.shutdown().await;
}

#[tokio::test]
async fn open_http_connections_drain_when_their_socket_turns_to_tcp() {
    let a = http_echo_backend("a").await;
    let echo = echo_backend("echo").await;
    let mut config = http_config(&[&a]);
    config
        .pools
        .push(pool("tcp-pool", PoolProtocol::Tcp, &[&echo]));
    let proxy = Proxy::start(config.clone()).await.unwrap();
    let address = proxy.local_addr("web").unwrap();
    let mut client = Client::http1(address).await;
    assert_eq!(client.get("/", &[]).await.seen().backend, "a");

    // Same id and address: the socket is kept, and now serves TCP.
    let mut as_tcp = config;
    let web = &mut as_tcp.listeners[0];
    web.protocol = ListenerProtocol::Tcp;
    web.default_pool_id = Some("tcp-pool".into());
    web.insert_headers = Default::default();
    proxy.reconfigure(as_tcp).await.unwrap();
    assert_eq!(proxy.local_addr("web"), Some(address));
    client.closed().await;
    assert_eq!(greeting_name(address).await, "echo");
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_removed_http_listener_answers_requests_in_flight_then_closes() {
    let GatedBackend {
        backend,
        mut arrived,
        gate,
    } = gated_http_backend("slow").await;
    let config = http_config(&[&backend]);
    let proxy = Proxy::start(config.clone()).await.unwrap();
    let address = proxy.local_addr("web").unwrap();
    let mut in_flight = Vec::new();
    for mut client in [Client::http1(address).await, Client::http2(address).await] {
        in_flight.push(tokio::spawn(async move {
            let answer = client.get("/in-flight", &[]).await;
            (answer, client)
        }));
    }
    for _ in 0..2 {
        arrival(&mut arrived).await;
    }

    let mut without = config;
    without.listeners.clear();
    proxy.reconfigure(without).await.unwrap();
    gate.add_permits(2);
    for request in in_flight {
        let (answer, client) = request.await.unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(answer.seen().path, "/in-flight");
        // HTTP/1.1 closes after the answer; HTTP/2 sends GOAWAY, then closes.
        client.closed().await;
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn an_idle_http2_connection_closes_but_not_while_a_stream_is_open() {
    let GatedBackend {
        backend,
        mut arrived,
        gate,
    } = gated_http_backend("slow").await;
    let mut config = http_config(&[&backend]);
    config.listeners[0].timeout_client_data = 300;
    let proxy = Proxy::start(config).await.unwrap();
    let client = Client::http2(proxy.local_addr("web").unwrap()).await;
    let answer = tokio::spawn(client.concurrent_get("/slow"));
    arrival(&mut arrived).await;
    // Three client timeouts with a stream open: the connection stays, and takes new
    // streams (no GOAWAY came).
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(client.is_open(), "closed with a stream open");
    let second = tokio::spawn(client.concurrent_get("/second"));
    arrival(&mut arrived).await;
    gate.add_permits(2);
    assert_eq!(answer.await.unwrap().status, 200);
    assert_eq!(second.await.unwrap().status, 200);
    // Then nothing: the proxy closes it (GOAWAY), as it closes idle HTTP/1.1 ones.
    client.closed().await;
    proxy.shutdown().await;
}

#[tokio::test]
async fn concurrent_http2_streams_count_against_the_connection_limit() {
    let GatedBackend {
        backend,
        mut arrived,
        gate,
    } = gated_http_backend("slow").await;
    let mut config = http_config(&[&backend]);
    config.listeners[0].connection_limit = Some(2);
    let proxy = Proxy::start(config).await.unwrap();
    let address = proxy.local_addr("web").unwrap();
    let client = Client::http2(address).await;

    // The first stream rides on the connection's own slot; the second opens another
    // member connection and takes the listener's last slot.
    let mut answers = Vec::new();
    for path in ["/first", "/second"] {
        answers.push(tokio::spawn(client.concurrent_get(path)));
        arrival(&mut arrived).await;
    }
    let third = client.concurrent_get("/third").await;
    assert_eq!(third.status, 503, "no slot left for a third stream");
    assert!(
        closed_without_data(address).await,
        "nor for another connection"
    );

    gate.add_permits(3);
    for answer in answers {
        assert_eq!(answer.await.unwrap().status, 200);
    }
    eventually("the streams give their slots back", || async {
        let answer = client.concurrent_get("/again").await;
        answer.status == 200
    })
    .await;
    proxy.shutdown().await;
}

/// An HTTP/1.1 backend that reads each request's whole body before answering with its
/// length.
async fn body_reading_backend(name: &str) -> Backend {
    use http_body_util::BodyExt;
    let listener = reusable_listener();
    let address = listener.local_addr().expect("backend address");
    let task = tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            connections.spawn(async move {
                let service = hyper::service::service_fn(
                    |request: ::http::Request<hyper::body::Incoming>| async move {
                        let length = request.into_body().collect().await?.to_bytes().len();
                        Ok::<_, hyper::Error>(::http::Response::new(http_body_util::Full::new(
                            bytes::Bytes::from(length.to_string()),
                        )))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Backend::from_task(name, address, task)
}

#[tokio::test]
async fn a_request_body_that_stops_coming_is_cut_with_408() {
    let a = body_reading_backend("a").await;
    let mut config = http_config(&[&a]);
    // Meant to fire: when does not matter. The head is sent whole before the proxy runs.
    config.listeners[0].timeout_client_data = 300;
    let proxy = Proxy::start(config).await.unwrap();
    let address = proxy.local_addr("web").unwrap();

    let mut complete = TcpStream::connect(address).await.unwrap();
    complete
        .write_all(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nConnection: close\r\n\r\nabcd",
        )
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(DEADLINE, complete.read_to_string(&mut answer))
        .await
        .expect("answered in time")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    assert!(answer.ends_with("\r\n\r\n4"), "{answer:?}");

    let mut stalled = TcpStream::connect(address).await.unwrap();
    stalled
        .write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, stalled.read_to_end(&mut answer))
        .await
        .expect("the proxy gives up on the body in time");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    eventually(
        "the client's failure is counted on the listener",
        || async { proxy.stats().listener("web").request_errors == 1 },
    )
    .await;
    assert_eq!(proxy.stats().member("pool", "a").request_errors, 0);
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_response_body_that_stops_coming_is_cut() {
    // A member that sends 3 of the 100 bytes it announced, then nothing.
    let listener = reusable_listener();
    let address = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buffer = [0u8; 1024];
            let _ = stream.read(&mut buffer).await;
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc")
                .await;
            held.push(stream);
        }
    });
    let trickling = Backend::from_task("trickling", address, task);
    let mut config = http_config(&[&trickling]);
    // Meant to fire: when does not matter.
    config.listeners[0].timeout_member_data = 300;
    let proxy = Proxy::start(config).await.unwrap();

    let mut client = TcpStream::connect(proxy.local_addr("web").unwrap())
        .await
        .unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, client.read_to_end(&mut answer))
        .await
        .expect("the proxy gives up on the member in time");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    assert!(
        answer.ends_with("\r\n\r\nabc"),
        "cut after what came: {answer:?}"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn terminated_https_serves_http1_and_h2_by_alpn() {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let certificate_pem = generated.cert.pem();
    let a = http_echo_backend("a").await;
    let mut config = http_config(&[&a]);
    config.listeners[0].protocol = ListenerProtocol::TerminatedHttps;
    config.listeners[0].tls = Some(TlsCertificate {
        certificate_pem: certificate_pem.clone(),
        private_key_pem: generated.signing_key.serialize_pem(),
    });
    let proxy = Proxy::start(config).await.unwrap();
    let address = proxy.local_addr("web").unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();

    for alpn in ["http/1.1", "h2"] {
        let connector = tokio_rustls::TlsConnector::from(tls_client(&certificate_pem, &[alpn]));
        let tcp = TcpStream::connect(address).await.unwrap();
        let tls = connector.connect(name.clone(), tcp).await.unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(alpn.as_bytes()));
        let mut client = if alpn == "h2" {
            Client::http2_over(tls).await
        } else {
            Client::http1_over(tls).await
        };
        let seen = client.get("/secure", &[]).await.seen();
        assert_eq!(seen.headers["x-forwarded-proto"], "https");
        assert_eq!(seen.path, "/secure");
    }

    // A client that does not speak TLS is a request error, not a crash.
    let mut plain = TcpStream::connect(address).await.unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, plain.read_to_end(&mut rest))
        .await
        .expect("closed in time");
    eventually("the failed handshake is counted", || async {
        proxy.stats().listener("web").request_errors == 1
    })
    .await;
    proxy.shutdown().await;
}

#[tokio::test]
async fn terminated_https_picks_its_certificate_by_the_name_asked_for() {
    let generate = |names: &[&str]| {
        let generated = rcgen::generate_simple_self_signed(
            names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
        )
        .unwrap();
        TlsCertificate {
            certificate_pem: generated.cert.pem(),
            private_key_pem: generated.signing_key.serialize_pem(),
        }
    };
    let default = generate(&["default.test", "127.0.0.1"]);
    let (a, wild) = (generate(&["a.test"]), generate(&["*.wild.test"]));
    let trusted = [&default, &a, &wild]
        .map(|c| c.certificate_pem.clone())
        .concat();
    let backend = http_echo_backend("a").await;
    let mut config = http_config(&[&backend]);
    config.listeners[0].protocol = ListenerProtocol::TerminatedHttps;
    config.listeners[0].tls = Some(default.clone());
    config.listeners[0].sni = vec![a.clone(), wild.clone()];
    let proxy = Proxy::start(config.clone()).await.unwrap();
    let address = proxy.local_addr("web").unwrap();
    // Each handshake is verified against the name asked for, which only one of the three
    // certificates holds: it succeeds only if that one was served.
    let connector = tokio_rustls::TlsConnector::from(tls_client(&trusted, &["http/1.1"]));
    let handshake = |name: &'static str| {
        let connector = connector.clone();
        async move {
            let name = rustls::pki_types::ServerName::try_from(name).unwrap();
            let tcp = TcpStream::connect(address).await.unwrap();
            connector.connect(name, tcp).await
        }
    };
    for (name, served) in [
        ("a.test", "the SNI certificate"),
        ("x.wild.test", "the wildcard SNI certificate"),
        ("other.test", "no certificate"),
        ("default.test", "the default certificate"),
        // An address: the client sends no SNI, and gets the default.
        ("127.0.0.1", "the default certificate"),
    ] {
        let outcome = handshake(name).await;
        if name == "other.test" {
            assert!(
                outcome.is_err(),
                "{name}: the default one, valid for no such name"
            );
        } else {
            let tls = outcome.unwrap_or_else(|error| panic!("{name} expected {served}: {error}"));
            let mut client = Client::http1_over(tls).await;
            assert_eq!(client.get("/", &[]).await.seen().path, "/");
        }
    }
    proxy.shutdown().await;

    // SNI certificates alone: the first is the default.
    config.listeners[0].tls = None;
    let proxy = Proxy::start(config.clone()).await.unwrap();
    let address = proxy.local_addr("web").unwrap();
    for name in ["a.test", "x.wild.test"] {
        let name = rustls::pki_types::ServerName::try_from(name).unwrap();
        let tcp = TcpStream::connect(address).await.unwrap();
        connector
            .connect(name.clone(), tcp)
            .await
            .unwrap_or_else(|error| panic!("{name:?}: {error}"));
    }
    proxy.shutdown().await;

    // No certificate at all is refused; so is a broken SNI one.
    config.listeners[0].sni.clear();
    assert!(Proxy::start(config.clone()).await.is_err());
    config.listeners[0].sni = vec![TlsCertificate {
        certificate_pem: a.certificate_pem.clone(),
        private_key_pem: wild.private_key_pem.clone(),
    }];
    let Err(refused) = Proxy::start(config).await else {
        panic!("a key not matching its certificate was taken");
    };
    let mut chain = refused.to_string();
    let mut source = std::error::Error::source(&refused);
    while let Some(cause) = source {
        chain.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    assert!(chain.contains("does not match the certificate"), "{chain}");
}

#[tokio::test]
async fn http1_bodies_pipelining_expect_continue_and_ambiguous_framing() {
    let a = body_reading_backend("a").await;
    let proxy = Proxy::start(http_config(&[&a])).await.unwrap();
    let address = proxy.local_addr("web").unwrap();

    // A chunked body and a pipelined request behind it, in one write: answered in order.
    let answers = exchange_raw(
        address,
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n3\r\nefg\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    let bodies: Vec<&str> = answers
        .split("HTTP/1.1 200 OK\r\n")
        .skip(1)
        .map(|answer| answer.rsplit("\r\n\r\n").next().unwrap())
        .collect();
    assert_eq!(bodies, ["7", "0"], "{answers:?}");

    // A body larger than what arrives with the head streams through.
    let mut stream = TcpStream::connect(address).await.unwrap();
    let body = vec![b'x'; 100_000];
    stream
        .write_all(
            b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    stream.write_all(&body[..50_000]).await.unwrap();
    tokio::task::yield_now().await;
    stream.write_all(&body[50_000..]).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(DEADLINE, stream.read_to_string(&mut answer))
        .await
        .expect("answered in time")
        .unwrap();
    assert!(answer.ends_with("\r\n\r\n100000"), "{answer:?}");

    // Expect: 100-continue is answered by the proxy before the body is sent.
    let mut stream = BufReader::new(TcpStream::connect(address).await.unwrap());
    stream
        .get_mut()
        .write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut line = String::new();
    tokio::time::timeout(DEADLINE, stream.read_line(&mut line))
        .await
        .expect("100 in time")
        .unwrap();
    assert_eq!(line, "HTTP/1.1 100 Continue\r\n");
    stream.get_mut().write_all(b"xyz").await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(DEADLINE, stream.read_to_string(&mut answer))
        .await
        .expect("answered in time")
        .unwrap();
    assert!(answer.contains("HTTP/1.1 200 OK\r\n"), "{answer:?}");
    assert!(answer.ends_with("\r\n\r\n3"), "{answer:?}");

    // Both Content-Length and Transfer-Encoding: refused, never forwarded.
    let answer = exchange_raw(
        address,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    )
    .await;
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer:?}"
    );
    assert_eq!(proxy.stats().listener("web").request_errors, 1);
    assert_eq!(proxy.stats().member("pool", "a").total_connections, 4);
    proxy.shutdown().await;
}

#[tokio::test]
async fn chunked_answers_pass_as_they_are_or_unchunked_for_http10_clients() {
    let chunking = scripted_backend("chunking", Arc::default(), None, |_, _| {
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n".to_vec()
    });
    let proxy = Proxy::start(http_config(&[&chunking])).await.unwrap();
    let address = proxy.local_addr("web").unwrap();

    let answer = exchange_raw(
        address,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    // Fields pass with their names as the member wrote them.
    assert!(
        answer.contains("\r\nTransfer-Encoding: chunked\r\n"),
        "{answer:?}"
    );
    assert!(
        answer.ends_with("\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
        "{answer:?}"
    );

    let answer = exchange_raw(address, b"GET / HTTP/1.0\r\n\r\n").await;
    assert!(
        !answer.to_ascii_lowercase().contains("transfer-encoding"),
        "{answer:?}"
    );
    assert!(answer.contains("\r\nconnection: close\r\n"), "{answer:?}");
    assert!(answer.ends_with("\r\n\r\nhello world"), "{answer:?}");
    proxy.shutdown().await;
}

/// Reads from `stream` until `wanted` bytes came.
async fn read_exactly(stream: &mut TcpStream, wanted: usize) -> String {
    let mut bytes = vec![0; wanted];
    tokio::time::timeout(DEADLINE, stream.read_exact(&mut bytes))
        .await
        .expect("the bytes in time")
        .expect("the bytes");
    String::from_utf8_lossy(&bytes).into_owned()
}

#[tokio::test]
async fn websocket_upgrades_become_tunnels_and_unasked_switches_are_refused() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let a = upgrading_backend("a", Arc::clone(&seen));
    let proxy = Proxy::start(http_config(&[&a])).await.unwrap();
    let address = proxy.local_addr("web").unwrap();

    // The handshake and the first bytes after it in one write: the member gets both.
    let mut stream = TcpStream::connect(address).await.expect("connect");
    stream
        .write_all(
            b"GET /chat HTTP/1.1\r\nHost: chat.example\r\nConnection: keep-alive, Upgrade\r\n\
              Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
              Sec-WebSocket-Version: 13\r\n\r\nhello",
        )
        .await
        .expect("send the handshake");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8];
        tokio::time::timeout(DEADLINE, stream.read_exact(&mut byte))
            .await
            .expect("the answer in time")
            .expect("the answer");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101 "), "{head}");
    assert!(
        head.contains("upgrade: websocket") && head.contains("connection: upgrade"),
        "{head}"
    );
    assert_eq!(read_exactly(&mut stream, 5).await, "hello");
    stream.write_all(b"again").await.expect("send");
    assert_eq!(read_exactly(&mut stream, 5).await, "again");
    let request = seen.lock().expect("the heads")[0].clone();
    for field in [
        "get /chat http/1.1",
        "upgrade: websocket",
        "connection: upgrade",
        "sec-websocket-key: dghlihnhbxbszsbub25jzq==",
        "x-forwarded-for: 127.0.0.1",
    ] {
        assert!(request.contains(field), "{field:?} not in {request}");
    }
    // The client closes its side: the close goes through, and the member's comes back.
    stream.shutdown().await.expect("half-close");
    let mut rest = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut rest))
        .await
        .expect("closed in time")
        .expect("read to the close");
    assert!(rest.is_empty(), "{rest:?}");
    let stats = proxy.stats();
    let listener = stats.listener("web");
    assert!(
        listener.bytes_in >= 10 && listener.bytes_out >= 10,
        "{listener:?}"
    );

    // A member switching protocols for a request that did not ask is a broken answer.
    let answer = exchange_raw(
        address,
        b"GET / HTTP/1.1\r\nHost: chat.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 502 "), "{answer}");
    assert!(
        !seen.lock().expect("the heads")[1].contains("upgrade"),
        "the request did not ask"
    );
    proxy.shutdown().await;

    // A tunnel where nothing passes for the longer data timeout is closed.
    let mut config = http_config(&[&a]);
    config.listeners[0].timeout_client_data = 200;
    config.listeners[0].timeout_member_data = 300;
    let proxy = Proxy::start(config).await.unwrap();
    let mut stream = TcpStream::connect(proxy.local_addr("web").unwrap())
        .await
        .expect("connect");
    stream
        .write_all(
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        )
        .await
        .expect("send the handshake");
    let mut answer = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut answer))
        .await
        .expect("the idle tunnel closed in time")
        .expect("read to the close");
    assert!(answer.starts_with(b"HTTP/1.1 101 "), "{answer:?}");
    proxy.shutdown().await;
}
