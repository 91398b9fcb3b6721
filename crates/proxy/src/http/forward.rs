//! Forwarding one HTTP request to a pool member over HTTP/1.1, and its answer back:
//! cookie persistence, X-Forwarded-* headers, hop-by-hop headers, status codes for
//! failures (503 no member, 502 a member that fails, 504 one too slow to answer). The
//! heads' rewriting ([`RequestRewrite::write`], [`Persistence::answer_fields`]) is the
//! same for both paths: it reads and writes fields through [`fields`].
//!
//! Each request is balanced on its own, as haproxy balances requests in HTTP mode, and
//! goes over one of the chosen member's keep-alive connections ([`upstream`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use smallvec::SmallVec;
use tokio::sync::watch;
use tracing::Instrument;

use super::body::{BoxError, IdleTimeoutBody, RequestSlot};
use super::fields::{self, FieldSink, Fields, RequestView};
use super::policy;
use super::upstream::{self, AnswerBody, OwnSenders, SendError, Target};
use super::websocket::{self, Asked, Handshake};
use crate::config::{InsertHeaders, PersistenceType, SslHeader};
use crate::listener::{ListenerRuntime, ServeContext};
use crate::pool::{Origin, PoolRuntime};
use crate::tls::{self, ClientCertificate};

/// Octavia's (and haproxy's) name for the HTTP_COOKIE persistence cookie.
pub(crate) const PERSISTENCE_COOKIE: &str = "SRV";

pub(crate) type ProxyBody = BoxBody<Bytes, BoxError>;

/// What the HTTP path knows about the client connection a request came on.
#[derive(Debug)]
pub(crate) struct ClientConnection {
    /// The listener's current state; each request reads it anew. Never marked seen
    /// (nothing awaits `changed()` on it), so `has_changed()` tells whether anything
    /// changed since the connection was accepted.
    pub state: watch::Receiver<Arc<ListenerRuntime>>,
    /// The listener as the connection was accepted, serving its requests once the
    /// socket has gone to a listener of another protocol (the connection then drains).
    pub accepted: Arc<ListenerRuntime>,
    pub peer: SocketAddr,
    /// The address the client connected to (the VIP and the listener's port).
    pub destination: SocketAddr,
    /// `http` or `https`, for X-Forwarded-Proto.
    pub scheme: &'static str,
    /// The server name the client asked its TLS for (TERMINATED_HTTPS listeners).
    pub sni: Option<Arc<str>>,
    /// The certificate the client's TLS sent, verified (TERMINATED_HTTPS listeners).
    pub client_certificate: Option<Arc<ClientCertificate>>,
    pub serve: ServeContext,
    /// Requests of this connection being forwarded (HTTP/2 has them concurrently).
    pub in_flight: Arc<AtomicUsize>,
    /// Its own idle connections of members it may not share (PROXY pools', and TLS
    /// pools' opened with its SNI; HTTP/2 clients'), closed with it.
    pub own_senders: Mutex<Vec<OwnSenders>>,
}

impl ClientConnection {
    pub fn origin(&self) -> Origin {
        Origin {
            client: self.peer,
            destination: self.destination,
        }
    }

    /// The listener as it is now (after a removal, as it was last configured).
    pub fn listener(&self) -> Arc<ListenerRuntime> {
        if self.unchanged() {
            return Arc::clone(&self.accepted);
        }
        let current = self.state.borrow();
        if current.config().protocol == self.accepted.config().protocol {
            Arc::clone(&current)
        } else {
            Arc::clone(&self.accepted)
        }
    }

    /// Whether the listener is gone (see [`super::listener_gone`]).
    pub fn listener_gone(&self) -> bool {
        !self.unchanged() && super::listener_gone(&self.state, &self.accepted)
    }

    /// Whether the listener's state is still the one the connection was accepted with:
    /// one atomic read, no lock.
    fn unchanged(&self) -> bool {
        matches!(self.state.has_changed(), Ok(false))
    }
}

/// A response the proxy makes itself.
pub(crate) fn local_response(status: StatusCode) -> Response<ProxyBody> {
    let reason = status.canonical_reason().unwrap_or("");
    let mut response = Response::new(
        Full::new(Bytes::from(format!("{} {reason}\n", status.as_u16())))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

pub(crate) fn redirect(location: &str, code: u16) -> Response<ProxyBody> {
    let mut response = Response::new(Empty::new().map_err(|never| match never {}).boxed());
    *response.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::FOUND);
    if let Ok(location) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// A pool's session persistence as one request meets it: the member its cookie names.
pub(crate) struct Persistence {
    kind: Option<(PersistenceType, Option<String>)>,
    /// The member the request's cookie names (HTTP_COOKIE, APP_COOKIE).
    pub member: Option<String>,
}

impl Persistence {
    pub fn of(pool: &PoolRuntime, request: &impl RequestView) -> Persistence {
        let kind = pool
            .config()
            .session_persistence
            .as_ref()
            .map(|persistence| {
                (
                    persistence.persistence_type,
                    persistence.cookie_name.clone(),
                )
            });
        let member = match &kind {
            Some((PersistenceType::HttpCookie, _)) => {
                policy::cookie(request, PERSISTENCE_COOKIE).map(str::to_owned)
            }
            Some((PersistenceType::AppCookie, Some(name))) => {
                policy::cookie(request, name).and_then(|value| pool.app_cookie_member(value))
            }
            _ => None,
        };
        Persistence { kind, member }
    }

    /// How a client's request is rewritten for its member (see [`RequestRewrite`]).
    pub fn request_rewrite(
        &self,
        client: &ClientConnection,
        listener: &ListenerRuntime,
        carried: Carried,
        answered_continue: bool,
    ) -> RequestRewrite {
        let insert = listener.config().insert_headers;
        RequestRewrite {
            insert,
            client_certificate: insert
                .any_ssl()
                .then(|| client.client_certificate.clone())
                .flatten(),
            client_ip: client.peer.ip(),
            port: listener.local_addr.port(),
            scheme: client.scheme,
            strip_cookie: matches!(self.kind, Some((PersistenceType::HttpCookie, _))),
            carried,
            answered_continue,
        }
    }

    /// Writes the fields of a member's answer as the client gets them: its end-to-end
    /// fields (see [`end_to_end`]; no Content-Length when the answer is `coded`, framed
    /// by its Transfer-Encoding, which decides), with the persistence cookie set
    /// (HTTP_COOKIE); an application's cookie is learnt (APP_COOKIE).
    pub fn answer_fields(
        &self,
        pool: &PoolRuntime,
        (answer, coded): (&impl Fields, bool),
        member_id: &str,
        carried: Carried,
        sink: &mut impl FieldSink,
    ) {
        for (name, value) in end_to_end(answer, carried) {
            if !coded || !name.eq_ignore_ascii_case(b"content-length") {
                sink.push_field(name, value);
            }
        }
        match &self.kind {
            Some((PersistenceType::HttpCookie, _)) if self.member.as_deref() != Some(member_id) => {
                let cookie = format!("{PERSISTENCE_COOKIE}={member_id}; path=/");
                sink.push_field(b"set-cookie", cookie.as_bytes());
            }
            Some((PersistenceType::AppCookie, Some(name))) => {
                for value in set_cookie_values(answer, name) {
                    pool.remember_app_cookie(&value, member_id);
                }
            }
            _ => {}
        }
    }
}

/// How a client's request head is rewritten for its member, on both paths.
#[derive(Debug, Clone)]
pub(crate) struct RequestRewrite {
    pub insert: InsertHeaders,
    /// The client's certificate, when X-SSL-* fields are inserted and it sent one.
    pub client_certificate: Option<Arc<ClientCertificate>>,
    pub client_ip: IpAddr,
    /// The listener's port, for X-Forwarded-Port.
    pub port: u16,
    /// `http` or `https`, for X-Forwarded-Proto.
    pub scheme: &'static str,
    /// Whether the proxy's persistence cookie comes out (HTTP_COOKIE persistence).
    pub strip_cookie: bool,
    pub carried: Carried,
    /// Whether the proxy answered `100 Continue` itself: then Expect does not go on.
    pub answered_continue: bool,
}

impl RequestRewrite {
    /// Writes the fields of `request` as its member gets them over HTTP/1.1: a Host
    /// field first if the request has none (HTTP/2 carries it as the authority), then
    /// its end-to-end fields in order (see [`end_to_end`]) without the proxy's
    /// persistence cookie, HTTP/2's cookie fields joined into one as HTTP/1.1 wants,
    /// `Connection: upgrade` when an upgrade is carried, and last the X-Forwarded-* and
    /// X-SSL-* fields the listener asks for (replacing any the client sent).
    pub fn write(&self, request: &impl RequestView, sink: &mut impl FieldSink) {
        let fields = request.fields();
        let insert = self.insert;
        let ssl = insert.any_ssl();
        // HTTP/2 may split cookies over several fields; HTTP/1.1 wants one.
        let join_cookies =
            request.version() == Version::HTTP_2 && fields.all(&header::COOKIE).nth(1).is_some();
        if !fields.has(&header::HOST)
            && let Some(authority) = request.authority()
        {
            sink.push_field(b"host", authority.as_bytes());
        }
        for (name, value) in end_to_end(fields, self.carried) {
            let passes = if name.eq_ignore_ascii_case(b"expect") {
                !self.answered_continue
            } else if name.eq_ignore_ascii_case(X_FORWARDED_FOR.as_str().as_bytes()) {
                !insert.x_forwarded_for
            } else if name.eq_ignore_ascii_case(X_FORWARDED_PORT.as_str().as_bytes()) {
                !insert.x_forwarded_port
            } else if name.eq_ignore_ascii_case(X_FORWARDED_PROTO.as_str().as_bytes()) {
                !insert.x_forwarded_proto
            } else if ssl
                && SslHeader::ALL.into_iter().any(|header| {
                    insert.ssl(header) && name.eq_ignore_ascii_case(header.name().as_bytes())
                })
            {
                false
            } else if name.eq_ignore_ascii_case(b"cookie") {
                if join_cookies {
                    false
                } else if self.strip_cookie
                    && let Some(kept) = without_cookie(value, PERSISTENCE_COOKIE)
                {
                    if !kept.is_empty() {
                        sink.push_field(name, &kept);
                    }
                    false
                } else {
                    true
                }
            } else {
                true
            };
            if passes {
                sink.push_field(name, value);
            }
        }
        if join_cookies {
            let joined = join_values(fields.all(&header::COOKIE), b"; ");
            let joined = match self.strip_cookie {
                true => without_cookie(&joined, PERSISTENCE_COOKIE).unwrap_or(joined),
                false => joined,
            };
            if !joined.is_empty() {
                sink.push_field(b"cookie", &joined);
            }
        }
        if self.carried.upgrade {
            // Connection is hop-by-hop: this hop asks for the upgrade too.
            sink.push_field(b"connection", b"upgrade");
        }
        if insert.x_forwarded_for {
            // Every hop the request already went through, in order (all fields, as
            // bytes), then the client: haproxy's `option forwardfor` appends the same way.
            let mut chain = join_values(fields.all(&X_FORWARDED_FOR), b", ");
            if !chain.is_empty() {
                chain.extend_from_slice(b", ");
            }
            chain.extend_from_slice(self.client_ip.to_string().as_bytes());
            sink.push_field(X_FORWARDED_FOR.as_str().as_bytes(), &chain);
        }
        if insert.x_forwarded_port {
            let port = self.port.to_string();
            sink.push_field(X_FORWARDED_PORT.as_str().as_bytes(), port.as_bytes());
        }
        if insert.x_forwarded_proto {
            sink.push_field(
                X_FORWARDED_PROTO.as_str().as_bytes(),
                self.scheme.as_bytes(),
            );
        }
        if ssl {
            let certificate = self.client_certificate.as_deref();
            for header in SslHeader::ALL.into_iter().filter(|h| insert.ssl(*h)) {
                let value = tls::client_certificate_field(header, certificate);
                sink.push_field(header.field().as_bytes(), value.as_bytes());
            }
        }
    }
}

/// The fields of a message that go on to the next hop: all but the hop-by-hop ones
/// (RFC 9110 section 7.6.1) and those its `Connection` fields name, except what
/// `carried` keeps. A `Connection` field cannot take out Content-Length or Host: the
/// next hop would then find the body's end, or the request's target, somewhere else
/// than the proxy did, which is how requests are smuggled past a proxy.
pub(crate) fn end_to_end(
    fields: &impl Fields,
    carried: Carried,
) -> impl Iterator<Item = (&[u8], &[u8])> {
    let listed: SmallVec<[&[u8]; 4]> = fields::connection_tokens(fields)
        .filter(|token| {
            !NOT_LISTABLE
                .iter()
                .any(|name| token.eq_ignore_ascii_case(name))
        })
        .collect();
    fields.each().filter(move |(name, _)| {
        carried.keeps(name)
            || !(is_hop_by_hop(name) || listed.iter().any(|token| token.eq_ignore_ascii_case(name)))
    })
}

/// The end-to-end fields a `Connection` field's list cannot make hop-by-hop.
const NOT_LISTABLE: [&[u8]; 2] = [b"content-length", b"host"];

/// The hop-by-hop fields that go on with a message: the HTTP/1 path passes a body
/// verbatim, so its coding goes with it, and an upgrade asked (or accepted) goes to the
/// next hop too. The default, none, is hyper's path (hyper frames bodies itself).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Carried {
    pub transfer_encoding: bool,
    pub upgrade: bool,
}

impl Carried {
    fn keeps(&self, name: &[u8]) -> bool {
        (self.transfer_encoding && name.eq_ignore_ascii_case(b"transfer-encoding"))
            || (self.upgrade && name.eq_ignore_ascii_case(b"upgrade"))
    }
}

/// Forwards one request of an HTTP/2 client over hyper.
pub(crate) async fn forward(
    client: &ClientConnection,
    listener: &ListenerRuntime,
    pool: &Arc<PoolRuntime>,
    request: Request<Incoming>,
    slot: Option<RequestSlot>,
) -> Response<ProxyBody> {
    let config = listener.config();
    let (mut parts, body) = request.into_parts();
    let mut websocket = match Handshake::begin(&mut parts) {
        Asked::Nothing => None,
        Asked::WebSocket(handshake) => Some(handshake),
        Asked::Refused(status) => return local_response(status),
    };
    let persistence = Persistence::of(pool, &parts);
    let mut headers = HeaderMap::with_capacity(parts.headers.len() + 6);
    let carried = Carried {
        upgrade: websocket.is_some(),
        ..Carried::default()
    };
    persistence
        .request_rewrite(client, listener, carried, false)
        .write(&parts, &mut headers);
    if let Some(websocket) = &websocket {
        websocket.ask(&mut headers);
    }
    parts.headers = headers;
    if (parts.uri.authority().is_some() || parts.uri.scheme().is_some())
        && let Ok(origin_form) = fields::origin_form(&parts.uri).parse::<Uri>()
    {
        parts.uri = origin_form;
    }
    parts.version = Version::HTTP_11;
    let response_timeout = Duration::from_millis(config.timeout_member_data);
    let body = IdleTimeoutBody::new(
        body,
        Duration::from_millis(config.timeout_client_data),
        "client",
    );
    let target = Target::new(client, listener, persistence.member.as_deref());
    let request = Request::from_parts(parts, body);
    let answer = match upstream::send(pool, &target, request, websocket.is_some()).await {
        Ok(answer) => answer,
        Err(SendError::NoMember) => return local_response(StatusCode::SERVICE_UNAVAILABLE),
        Err(SendError::MemberFailed) => return local_response(StatusCode::BAD_GATEWAY),
        Err(SendError::MemberTooSlow) => return local_response(StatusCode::GATEWAY_TIMEOUT),
        Err(SendError::ClientBodyIdle) => {
            listener.stats.add_request_error();
            return local_response(StatusCode::REQUEST_TIMEOUT);
        }
    };
    let member = &pool.members[answer.member];
    let member_id = member.config.id.as_str();
    let (mut parts, body) = answer.response.into_parts();
    let switched = match &websocket {
        None => false,
        Some(handshake) => match handshake.switched(parts.status, &parts.headers) {
            Ok(switched) => switched,
            Err(broken) => {
                tracing::warn!(
                    member = member_id,
                    broken,
                    "member broke a WebSocket handshake"
                );
                member.stats.add_request_error();
                return local_response(StatusCode::BAD_GATEWAY);
            }
        },
    };
    let mut headers = HeaderMap::with_capacity(parts.headers.len() + 1);
    persistence.answer_fields(
        pool,
        (&parts.headers, false),
        member_id,
        Carried::default(),
        &mut headers,
    );
    parts.headers = headers;
    if switched && let Some(handshake) = websocket.take() {
        // The stream is the client's WebSocket once it has its 200 (RFC 8441 section 5).
        websocket::answer_switched(&mut parts);
        let Some(switched) = parts.extensions.remove::<OnUpgrade>() else {
            return local_response(StatusCode::BAD_GATEWAY);
        };
        let idle = response_timeout.max(Duration::from_millis(config.timeout_client_data));
        client.serve.tracker.spawn_connection(
            &client.serve.shutdown,
            handshake
                .tunnel(switched, idle, (slot, answer.lease))
                .in_current_span(),
        );
        let empty = Empty::new().map_err(|never| match never {}).boxed();
        return Response::from_parts(parts, empty);
    }
    let body = IdleTimeoutBody::new(body, response_timeout, "member").holding(slot);
    Response::from_parts(parts, AnswerBody::new(body, answer.lease).boxed())
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// The fields that concern one connection only (RFC 9110 section 7.6.1), besides the
/// ones `Connection` names.
const HOP_BY_HOP: [&[u8]; 9] = [
    b"connection",
    b"te",
    b"trailer",
    b"transfer-encoding",
    b"upgrade",
    b"proxy-authenticate",
    b"proxy-authorization",
    b"keep-alive",
    b"proxy-connection",
];

fn is_hop_by_hop(name: &[u8]) -> bool {
    HOP_BY_HOP.iter().any(|hop| name.eq_ignore_ascii_case(hop))
}

/// Values joined by `separator`; empty without any.
fn join_values<'a>(values: impl Iterator<Item = &'a [u8]>, separator: &[u8]) -> Vec<u8> {
    let mut joined = Vec::new();
    for value in values {
        if !joined.is_empty() {
            joined.extend_from_slice(separator);
        }
        joined.extend_from_slice(value);
    }
    joined
}

/// The cookie pairs (`name=value`) of one Cookie field, trimmed, as bytes.
fn cookie_pairs(field: &[u8]) -> impl Iterator<Item = &[u8]> {
    field
        .split(|byte| *byte == b';')
        .map(<[u8]>::trim_ascii)
        .filter(|pair| !pair.is_empty())
}

fn is_cookie_named(pair: &[u8], name: &str) -> bool {
    let key = pair.split(|byte| *byte == b'=').next().unwrap_or_default();
    key.trim_ascii() == name.as_bytes()
}

/// A Cookie field without cookie `name` (its other pairs as they were, byte for byte),
/// if the field holds it; `None` when it does not, and the field passes untouched.
fn without_cookie(field: &[u8], name: &str) -> Option<Vec<u8>> {
    if !cookie_pairs(field).any(|pair| is_cookie_named(pair, name)) {
        return None;
    }
    let kept: Vec<&[u8]> = cookie_pairs(field)
        .filter(|pair| !is_cookie_named(pair, name))
        .collect();
    Some(kept.join(&b"; "[..]))
}

/// The values a response's Set-Cookie fields give cookie `name`.
fn set_cookie_values(answer: &impl Fields, name: &str) -> Vec<String> {
    answer
        .all(&header::SET_COOKIE)
        .filter_map(|value| std::str::from_utf8(value).ok())
        .filter_map(|value| {
            let pair = value.split(';').next()?;
            let (key, value) = pair.split_once('=')?;
            (key.trim() == name).then(|| value.trim().trim_matches('"').to_owned())
        })
        .filter(|value| !value.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::h1::head::parse_request;

    /// Cookie-ish bytes: separators, the persistence cookie's name, and any byte a
    /// header may carry (obs-text included).
    fn cookie_field() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        prop::collection::vec(
            prop_oneof![
                Just(b"SRV".to_vec()),
                Just(b"=".to_vec()),
                Just(b"; ".to_vec()),
                Just(b";".to_vec()),
                Just(b" ".to_vec()),
                prop::collection::vec(0x21u8..=0xff, 1..4),
            ],
            0..10,
        )
        .prop_map(|parts| parts.concat())
    }

    proptest::proptest! {
        #[test]
        fn removing_the_persistence_cookie_keeps_every_other_pair(field in cookie_field()) {
            let expected: Vec<&[u8]> = cookie_pairs(&field)
                .filter(|pair| !is_cookie_named(pair, PERSISTENCE_COOKIE))
                .collect();
            let rewritten = without_cookie(&field, PERSISTENCE_COOKIE);
            let kept = rewritten.as_deref().unwrap_or(&field);
            proptest::prop_assert_eq!(cookie_pairs(kept).collect::<Vec<_>>(), expected);
            proptest::prop_assert_eq!(
                rewritten.is_none(),
                !cookie_pairs(&field).any(|pair| is_cookie_named(pair, PERSISTENCE_COOKIE)),
                "a field without the cookie passes untouched"
            );
        }

        #[test]
        fn set_cookie_values_read_any_bytes(fields in proptest::collection::vec(cookie_field(), 0..4)) {
            let mut headers = HeaderMap::new();
            for field in &fields {
                headers.push_field(b"set-cookie", field);
            }
            for value in set_cookie_values(&headers, "SRV") {
                proptest::prop_assert!(!value.is_empty() && !value.contains(';'));
            }
        }
    }

    fn rewrite(insert: bool, strip_cookie: bool, carried: Carried) -> RequestRewrite {
        RequestRewrite {
            insert: InsertHeaders {
                x_forwarded_for: insert,
                x_forwarded_port: insert,
                x_forwarded_proto: insert,
                ..InsertHeaders::default()
            },
            client_certificate: None,
            client_ip: "10.0.0.9".parse().unwrap(),
            port: 80,
            scheme: "http",
            strip_cookie,
            carried,
            answered_continue: false,
        }
    }

    fn written(rewrite: &RequestRewrite, request: &impl RequestView) -> String {
        let mut out = Vec::new();
        rewrite.write(request, &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    fn head(text: &str) -> crate::http::h1::head::RequestHead {
        parse_request(&mut text.into()).unwrap().unwrap()
    }

    #[test]
    fn requests_lose_hop_by_hop_fields_and_gain_forwarded_ones() {
        let request = head(
            "GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\n\
             Keep-Alive: timeout=5\r\nTE: trailers\r\nX-Forwarded-For: 10.0.0.1\r\n\
             x-forwarded-for: 10.0.0.2, 10.0.0.3\r\nAccept: */*\r\nCookie: a=1; SRV=m2\r\n\
             Cookie: b=café\r\nX-Forwarded-Proto: https\r\nExpect: 100-continue\r\n\r\n",
        );
        let answered_continue = RequestRewrite {
            answered_continue: true,
            ..rewrite(true, true, Carried::default())
        };
        assert_eq!(
            written(&answered_continue, &request),
            "Host: h\r\nAccept: */*\r\nCookie: a=1\r\nCookie: b=café\r\n\
             x-forwarded-for: 10.0.0.1, 10.0.0.2, 10.0.0.3, 10.0.0.9\r\n\
             x-forwarded-port: 80\r\nx-forwarded-proto: http\r\n",
            "every earlier hop is kept in order, a field without the cookie passes as it was"
        );
        assert_eq!(
            written(&rewrite(false, false, Carried::default()), &request),
            "Host: h\r\nX-Forwarded-For: 10.0.0.1\r\nx-forwarded-for: 10.0.0.2, 10.0.0.3\r\n\
             Accept: */*\r\nCookie: a=1; SRV=m2\r\nCookie: b=café\r\n\
             X-Forwarded-Proto: https\r\nExpect: 100-continue\r\n"
        );
        let only_cookie = head("GET / HTTP/1.1\r\nCookie: SRV=m1\r\n\r\n");
        assert_eq!(
            written(&rewrite(false, true, Carried::default()), &only_cookie),
            ""
        );
    }

    #[test]
    fn connection_cannot_take_out_a_requests_length_or_host() {
        let request = head(
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\
             Connection: Content-Length, host, X-A\r\nX-A: 1\r\n\r\nabc",
        );
        assert_eq!(
            written(&rewrite(false, false, Carried::default()), &request),
            "Host: h\r\nContent-Length: 3\r\n",
            "the member must find the body's end where the proxy found it"
        );
    }

    #[test]
    fn carried_hop_by_hop_fields_go_on() {
        let request = head(
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
        );
        let carried = Carried {
            transfer_encoding: true,
            upgrade: true,
        };
        assert_eq!(
            written(&rewrite(false, false, carried), &request),
            "Transfer-Encoding: chunked\r\nUpgrade: websocket\r\nconnection: upgrade\r\n"
        );
        assert_eq!(
            written(&rewrite(false, false, Carried::default()), &request),
            ""
        );
    }

    #[test]
    fn http2_requests_get_a_host_and_one_cookie_field() {
        let request = http::Request::builder()
            .version(Version::HTTP_2)
            .uri("https://example.com:8443/p?q")
            .header("cookie", "a=1")
            .header("cookie", "SRV=m1; b=2")
            .header("accept", "*/*")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let mut headers = HeaderMap::new();
        rewrite(false, true, Carried::default()).write(&request, &mut headers);
        let fields: Vec<(&str, &[u8])> = headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_bytes()))
            .collect();
        assert_eq!(
            fields,
            [
                ("host", &b"example.com:8443"[..]),
                ("accept", b"*/*"),
                ("cookie", b"a=1; b=2"),
            ]
        );
        assert_eq!(request.path_and_query(), "/p?q");
    }

    #[test]
    fn answers_keep_their_end_to_end_fields() {
        let headers = fields::header_map(&[
            ("connection", "close, x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("content-length", "9"),
            ("accept-ranges", "bytes"),
        ]);
        let names = |carried: Carried| -> Vec<String> {
            end_to_end(&headers, carried)
                .map(|(name, _)| String::from_utf8_lossy(name).into_owned())
                .collect()
        };
        assert_eq!(
            names(Carried::default()),
            ["content-length", "accept-ranges"]
        );
        let chunked = Carried {
            transfer_encoding: true,
            upgrade: false,
        };
        assert_eq!(
            names(chunked),
            ["transfer-encoding", "content-length", "accept-ranges"]
        );
    }

    #[test]
    fn set_cookie_values_name_one_cookie() {
        let response = fields::header_map(&[
            ("set-cookie", "JSESSIONID=abc; Path=/; HttpOnly"),
            ("set-cookie", "other=x"),
        ]);
        assert_eq!(set_cookie_values(&response, "JSESSIONID"), ["abc"]);
        assert!(set_cookie_values(&response, "missing").is_empty());
        assert_eq!(join_values([&b"a"[..], b"b"].into_iter(), b", "), b"a, b");
        assert!(join_values(std::iter::empty(), b", ").is_empty());
    }
}
