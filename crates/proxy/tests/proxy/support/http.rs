//! HTTP helpers: a backend that describes the requests it gets, and clients speaking
//! HTTP/1.1 and HTTP/2 (clear or over TLS) to the proxy.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::{JoinHandle, JoinSet};

use super::{Backend, DEADLINE};

/// What the echo backend saw, as it answers it.
#[derive(Debug, Deserialize)]
pub struct Seen {
    pub backend: String,
    pub method: String,
    pub path: String,
    pub version: String,
    /// The last value of each field.
    pub headers: BTreeMap<String, String>,
    /// The fields that came more than once.
    #[serde(default)]
    pub repeated: Vec<String>,
}

/// An HTTP/1.1 backend answering every request with a JSON description of it. A request
/// header `x-set-cookie: v` makes it answer with `Set-Cookie: v`.
pub async fn http_echo_backend(name: &str) -> Backend {
    echo_backend_over(name, Wire::Clear)
}

/// [`http_echo_backend`] in TLS, with a self-signed certificate: a member of a pool with
/// `tls_enabled`. A connection that does not open with a TLS handshake gets nothing.
pub async fn tls_http_echo_backend(name: &str) -> Backend {
    echo_backend_over(name, Wire::Tls(member_tls()))
}

/// [`http_echo_backend`] in TLS as `acceptor` makes it.
pub fn tls_http_echo_backend_with(name: &str, acceptor: tokio_rustls::TlsAcceptor) -> Backend {
    echo_backend_over(name, Wire::Tls(acceptor))
}

/// [`http_echo_backend`] in TLS or in the clear, as each connection opens; it describes
/// itself as `NAME in TLS` or `NAME in the clear`.
pub async fn either_http_echo_backend(name: &str) -> Backend {
    echo_backend_over(name, Wire::Either(member_tls()))
}

/// How a test member's connections speak.
enum Wire {
    Clear,
    Tls(tokio_rustls::TlsAcceptor),
    Either(tokio_rustls::TlsAcceptor),
}

/// A member's TLS, with a self-signed certificate.
fn member_tls() -> tokio_rustls::TlsAcceptor {
    let generated = rcgen::generate_simple_self_signed(vec!["member.invalid".into()])
        .expect("member certificate");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(generated.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_no_client_auth()
    .with_single_cert(vec![generated.cert.der().clone()], key)
    .expect("member TLS configuration");
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

fn echo_backend_over(name: &str, wire: Wire) -> Backend {
    let wire = Arc::new(wire);
    let listener = super::reusable_listener();
    let address = listener.local_addr().expect("backend address");
    let backend_name = name.to_owned();
    let task = tokio::spawn(async move {
        let mut connections = JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            let name = backend_name.clone();
            let wire = Arc::clone(&wire);
            connections.spawn(async move {
                let (acceptor, name) = match &*wire {
                    Wire::Clear => return serve_described(name, stream, None).await,
                    Wire::Tls(acceptor) => (acceptor, name),
                    Wire::Either(acceptor) => {
                        // A TLS connection opens with a handshake record (type 22).
                        let mut first = [0u8];
                        match stream.peek(&mut first).await {
                            Ok(1) if first[0] == 22 => (acceptor, format!("{name} in TLS")),
                            Ok(1) => {
                                let name = format!("{name} in the clear");
                                return serve_described(name, stream, None).await;
                            }
                            _ => return,
                        }
                    }
                };
                if let Ok(stream) = acceptor.accept(stream).await {
                    let sni = stream.get_ref().1.server_name().map(str::to_owned);
                    serve_described(name, stream, Some(sni)).await;
                }
            });
        }
    });
    Backend::from_task(name, address, task)
}

/// Answers the requests of one connection with their descriptions. On a TLS connection
/// (`tls`: the server name the client asked for, if any), they describe a field
/// `x-tls-sni` too: that name, or `none`.
async fn serve_described<S>(name: String, stream: S, tls: Option<Option<String>>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let sni = tls.map(|sni| {
        let sni = sni.unwrap_or_else(|| "none".to_owned());
        http::HeaderValue::from_str(&sni).expect("a server name")
    });
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        let name = name.clone();
        if let Some(sni) = &sni {
            request.headers_mut().insert("x-tls-sni", sni.clone());
        }
        async move { Ok::<_, Infallible>(describe(&name, request)) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

fn describe(name: &str, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let headers: BTreeMap<String, String> = request
        .headers()
        .iter()
        .map(|(key, value)| {
            (
                key.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let repeated: Vec<&str> = request
        .headers()
        .keys()
        .filter(|key| request.headers().get_all(*key).iter().nth(1).is_some())
        .map(|key| key.as_str())
        .collect();
    let body = serde_json::json!({
        "backend": name,
        "method": request.method().as_str(),
        "path": request.uri().to_string(),
        "version": format!("{:?}", request.version()),
        "headers": headers,
        "repeated": repeated,
    });
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    if let Some(cookie) = request.headers().get("x-set-cookie") {
        response
            .headers_mut()
            .insert(http::header::SET_COOKIE, cookie.clone());
    }
    response
}

/// An answer as a client sees it.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    /// The backend's description of the request; panics if the proxy answered itself.
    pub fn seen(&self) -> Seen {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|error| panic!("not a backend answer ({error}): {self:?}"))
    }
}

/// One client connection to the proxy, HTTP/1.1 or HTTP/2.
pub struct Client {
    sender: Sender,
    /// hyper's connection task: it ends when the proxy closes the connection.
    connection: JoinHandle<()>,
}

enum Sender {
    Http1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
    Http2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
}

impl Client {
    pub async fn http1(address: SocketAddr) -> Client {
        let stream = TcpStream::connect(address).await.expect("connect");
        Client::http1_over(stream).await
    }

    pub async fn http2(address: SocketAddr) -> Client {
        let stream = TcpStream::connect(address).await.expect("connect");
        Client::http2_over(stream).await
    }

    pub async fn http1_over<S>(stream: S) -> Client
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("HTTP/1.1 handshake");
        Client {
            sender: Sender::Http1(sender),
            connection: tokio::spawn(async move {
                let _ = connection.await;
            }),
        }
    }

    pub async fn http2_over<S>(stream: S) -> Client
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .expect("HTTP/2 handshake");
        Client {
            sender: Sender::Http2(sender),
            connection: tokio::spawn(async move {
                let _ = connection.await;
            }),
        }
    }

    /// Sends a GET for `path` with `headers` (HTTP/2 gets an absolute URI so the
    /// authority is known).
    pub async fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> Answer {
        let mut builder = Request::builder();
        builder = match self.sender {
            Sender::Http1(_) => builder.uri(path).header("host", "app.example.com"),
            Sender::Http2(_) => builder
                .uri(format!("http://app.example.com{path}"))
                .version(http::Version::HTTP_2),
        };
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder.body(Empty::new()).expect("request");
        let sending = async {
            match &mut self.sender {
                Sender::Http1(sender) => sender.send_request(request).await,
                Sender::Http2(sender) => sender.send_request(request).await,
            }
        };
        let response = tokio::time::timeout(DEADLINE, sending)
            .await
            .expect("answer in time")
            .expect("answer");
        let (parts, body) = response.into_parts();
        let body = tokio::time::timeout(DEADLINE, body.collect())
            .await
            .expect("body in time")
            .expect("body")
            .to_bytes();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    /// A GET on a new stream of this HTTP/2 connection, to run alongside others.
    pub fn concurrent_get(&self, path: &str) -> impl Future<Output = Answer> + Send + 'static {
        let Sender::Http2(sender) = &self.sender else {
            panic!("concurrent requests need HTTP/2");
        };
        let mut sender = sender.clone();
        let request = Request::builder()
            .uri(format!("http://app.example.com{path}"))
            .version(http::Version::HTTP_2)
            .body(Empty::new())
            .expect("request");
        async move {
            let response = tokio::time::timeout(DEADLINE, sender.send_request(request))
                .await
                .expect("answer in time")
                .expect("answer");
            let (parts, body) = response.into_parts();
            let body = tokio::time::timeout(DEADLINE, body.collect())
                .await
                .expect("body in time")
                .expect("body")
                .to_bytes();
            Answer {
                status: parts.status,
                headers: parts.headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            }
        }
    }

    /// Waits until the proxy closes the connection, failing the test at the deadline.
    /// The client is kept meanwhile, so it is the proxy that closes, not the client.
    /// Whether the connection is still open (the proxy has not closed it).
    pub fn is_open(&self) -> bool {
        !self.connection.is_finished()
    }

    pub async fn closed(self) {
        let Client { sender, connection } = self;
        tokio::time::timeout(DEADLINE, connection)
            .await
            .expect("the proxy closes the connection in time")
            .expect("the client connection task");
        drop(sender);
    }
}

/// An HTTP/1.1 backend like [`http_echo_backend`], except that it holds each request
/// until the test lets it through: `arrived` yields once per request received, and each
/// permit added to `gate` releases one answer.
pub struct GatedBackend {
    pub backend: Backend,
    pub arrived: mpsc::UnboundedReceiver<()>,
    pub gate: Arc<Semaphore>,
}

/// Waits for the next request to reach a gated backend (its `arrived`).
pub async fn arrival(arrived: &mut mpsc::UnboundedReceiver<()>) {
    tokio::time::timeout(DEADLINE, arrived.recv())
        .await
        .expect("a request reaches the backend in time")
        .expect("the backend runs");
}

pub async fn gated_http_backend(name: &str) -> GatedBackend {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("backend bind");
    let address = listener.local_addr().expect("backend address");
    let (arrivals, arrived) = mpsc::unbounded_channel();
    let gate = Arc::new(Semaphore::new(0));
    let backend_name = name.to_owned();
    let backend_gate = Arc::clone(&gate);
    let task = tokio::spawn(async move {
        let mut connections = JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            let name = backend_name.clone();
            let gate = Arc::clone(&backend_gate);
            let arrivals = arrivals.clone();
            connections.spawn(async move {
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let name = name.clone();
                    let gate = Arc::clone(&gate);
                    let _ = arrivals.send(());
                    async move {
                        if let Ok(permit) = gate.acquire().await {
                            permit.forget();
                        }
                        Ok::<_, Infallible>(describe(&name, request))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    GatedBackend {
        backend: Backend::from_task(name, address, task),
        arrived,
        gate,
    }
}

/// A TLS client configuration trusting exactly `certificate_pem`, offering `alpn`.
pub fn tls_client(certificate_pem: &str, alpn: &[&str]) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(certificate_pem.as_bytes()) {
        roots
            .add(certificate.expect("certificate PEM"))
            .expect("trusted certificate");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn
        .iter()
        .map(|protocol| protocol.as_bytes().to_vec())
        .collect();
    Arc::new(config)
}

/// A backend that answers every request `101 Switching Protocols` to a WebSocket,
/// asked or not, then echoes every byte until the proxy closes its side. The request
/// heads it read (lower case) go to `seen`.
pub fn upgrading_backend(name: &str, seen: Arc<std::sync::Mutex<Vec<String>>>) -> Backend {
    let listener = super::reusable_listener();
    let address = listener.local_addr().expect("backend address");
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream);
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    match reader.read_line(&mut line).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) if line == "\r\n" => break,
                        Ok(_) => head.push_str(&line.to_ascii_lowercase()),
                    }
                }
                seen.lock().expect("the heads").push(head);
                let early = reader.buffer().to_vec();
                let mut stream = reader.into_inner();
                let switched = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
                if stream.write_all(switched).await.is_err()
                    || stream.write_all(&early).await.is_err()
                {
                    return;
                }
                let (mut from, mut to) = stream.split();
                let _ = tokio::io::copy(&mut from, &mut to).await;
                let _ = to.shutdown().await;
            });
        }
    });
    Backend::from_task(name, address, task)
}

/// Writes `request` on a new connection to `address` and reads until the proxy closes.
pub async fn exchange_raw(address: std::net::SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(address).await.expect("connect");
    stream.write_all(request).await.expect("send the request");
    let mut answer = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut answer))
        .await
        .expect("answered and closed in time")
        .expect("read the answer");
    String::from_utf8_lossy(&answer).into_owned()
}
