//! Forwarding one HTTP request to a pool member over HTTP/1.1, and its answer back:
//! cookie persistence, X-Forwarded-* headers, hop-by-hop headers, status codes for
//! failures (503 no member, 502 a member that fails, 504 one too slow to answer).
//!
//! Each request is balanced on its own, as haproxy balances requests in HTTP mode, and
//! goes over one of the chosen member's keep-alive connections ([`upstream`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use tokio::sync::watch;

use super::body::{BoxError, IdleTimeoutBody, RequestSlot};
use super::policy;
use super::upstream::{self, AnswerBody, SendError, Target};
use crate::config::PersistenceType;
use crate::listener::{ListenerRuntime, ServeContext};
use crate::pool::{Origin, PoolRuntime};

/// Octavia's (and haproxy's) name for the HTTP_COOKIE persistence cookie.
pub(crate) const PERSISTENCE_COOKIE: &str = "SRV";

pub(crate) type ProxyBody = BoxBody<Bytes, BoxError>;

/// What the HTTP path knows about the client connection a request came on.
#[derive(Debug)]
pub(crate) struct ClientConnection {
    /// The listener's current state; each request reads it anew.
    pub state: watch::Receiver<Arc<ListenerRuntime>>,
    /// The listener as the connection was accepted, serving its requests once the
    /// socket has gone to a listener of another protocol (the connection then drains).
    pub accepted: Arc<ListenerRuntime>,
    pub peer: SocketAddr,
    /// The address the client connected to (the VIP and the listener's port).
    pub destination: SocketAddr,
    /// `http` or `https`, for X-Forwarded-Proto.
    pub scheme: &'static str,
    pub serve: ServeContext,
    /// Requests of this connection being forwarded (HTTP/2 has them concurrently).
    pub in_flight: Arc<AtomicUsize>,
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
        let current = self.state.borrow();
        if current.config().protocol == self.accepted.config().protocol {
            Arc::clone(&current)
        } else {
            Arc::clone(&self.accepted)
        }
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
    pub fn of(pool: &PoolRuntime, parts: &http::request::Parts) -> Persistence {
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
                policy::cookie(parts, PERSISTENCE_COOKIE).map(str::to_owned)
            }
            Some((PersistenceType::AppCookie, Some(name))) => {
                policy::cookie(parts, name).and_then(|value| pool.app_cookie_member(value))
            }
            _ => None,
        };
        Persistence { kind, member }
    }

    /// Makes the client's request the member's (see [`rewrite_request`]), without the
    /// proxy's persistence cookie.
    pub fn rewrite(
        &self,
        parts: &mut http::request::Parts,
        client: &ClientConnection,
        listener: &ListenerRuntime,
    ) {
        let original_version = parts.version;
        rewrite_request(parts, client, listener, original_version);
        if matches!(self.kind, Some((PersistenceType::HttpCookie, _))) {
            remove_cookie(&mut parts.headers, PERSISTENCE_COOKIE);
        }
    }

    /// Makes the member's answer the client's: no hop-by-hop headers, and the
    /// persistence cookie set (HTTP_COOKIE) or the application's cookie learnt
    /// (APP_COOKIE).
    pub fn answer(&self, pool: &PoolRuntime, headers: &mut HeaderMap, member_id: &str) {
        remove_hop_by_hop(headers);
        match &self.kind {
            Some((PersistenceType::HttpCookie, _)) if self.member.as_deref() != Some(member_id) => {
                if let Ok(cookie) =
                    HeaderValue::from_str(&format!("{PERSISTENCE_COOKIE}={member_id}; path=/"))
                {
                    headers.append(header::SET_COOKIE, cookie);
                }
            }
            Some((PersistenceType::AppCookie, Some(name))) => {
                for value in set_cookie_values(headers, name) {
                    pool.remember_app_cookie(&value, member_id);
                }
            }
            _ => {}
        }
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
    let persistence = Persistence::of(pool, &parts);
    persistence.rewrite(&mut parts, client, listener);
    let response_timeout = Duration::from_millis(config.timeout_member_data);
    let body = IdleTimeoutBody::new(
        body,
        Duration::from_millis(config.timeout_client_data),
        "client",
    );
    let target = Target::new(client, listener, persistence.member.as_deref());
    let answer = match upstream::send(pool, &target, Request::from_parts(parts, body)).await {
        Ok(answer) => answer,
        Err(SendError::NoMember) => return local_response(StatusCode::SERVICE_UNAVAILABLE),
        Err(SendError::MemberFailed) => return local_response(StatusCode::BAD_GATEWAY),
        Err(SendError::MemberTooSlow) => return local_response(StatusCode::GATEWAY_TIMEOUT),
        Err(SendError::ClientBodyIdle) => {
            listener.stats.add_request_error();
            return local_response(StatusCode::REQUEST_TIMEOUT);
        }
    };
    let member_id = pool.members[answer.member].config.id.as_str();
    let (mut parts, body) = answer.response.into_parts();
    persistence.answer(pool, &mut parts.headers, member_id);
    let body = IdleTimeoutBody::new(body, response_timeout, "member").holding(slot);
    Response::from_parts(parts, AnswerBody::new(body, answer.lease).boxed())
}

/// Turns a client's request into the member's: origin-form URI over HTTP/1.1, a Host
/// header (HTTP/2 carries it as the authority), no hop-by-hop headers, and the
/// X-Forwarded-* headers the listener asks for.
fn rewrite_request(
    parts: &mut http::request::Parts,
    client: &ClientConnection,
    listener: &ListenerRuntime,
    original: Version,
) {
    let authority = parts.uri.authority().cloned();
    if authority.is_some() || parts.uri.scheme().is_some() {
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |path_and_query| path_and_query.as_str());
        if let Ok(origin_form) = path.parse::<Uri>() {
            parts.uri = origin_form;
        }
    }
    parts.version = Version::HTTP_11;
    remove_hop_by_hop(&mut parts.headers);
    if !parts.headers.contains_key(header::HOST)
        && let Some(authority) = authority
        && let Ok(host) = HeaderValue::from_str(authority.as_str())
    {
        parts.headers.insert(header::HOST, host);
    }
    if original == Version::HTTP_2 {
        // HTTP/2 may split cookies over several fields; HTTP/1.1 wants one. Joined as
        // bytes, so cookies that are not UTF-8 reach the member too.
        let cookies = join_fields(&parts.headers, &header::COOKIE, b"; ");
        if parts.headers.get_all(header::COOKIE).iter().count() > 1
            && let Some(joined) = cookies
            && let Ok(joined) = HeaderValue::from_bytes(&joined)
        {
            parts.headers.insert(header::COOKIE, joined);
        }
    }
    let insert = listener.config().insert_headers;
    if insert.x_forwarded_for {
        // Every hop the request already went through, in order (all fields, as bytes),
        // then the client: haproxy's `option forwardfor` appends the same way.
        let client_ip = client.peer.ip().to_string();
        let mut chain = join_fields(&parts.headers, &X_FORWARDED_FOR, b", ").unwrap_or_default();
        if !chain.is_empty() {
            chain.extend_from_slice(b", ");
        }
        chain.extend_from_slice(client_ip.as_bytes());
        if let Ok(value) = HeaderValue::from_bytes(&chain) {
            parts.headers.insert(X_FORWARDED_FOR, value);
        }
    }
    if insert.x_forwarded_port {
        parts.headers.insert(
            X_FORWARDED_PORT,
            HeaderValue::from(listener.local_addr.port()),
        );
    }
    if insert.x_forwarded_proto {
        parts
            .headers
            .insert(X_FORWARDED_PROTO, HeaderValue::from_static(client.scheme));
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// The headers that concern one connection only (RFC 9110 section 7.6.1), besides the
/// ones `Connection` names.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
];

/// Removes the headers that concern one connection only.
pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages have none: one look at each name is cheaper than nine removals.
    if !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return;
    }
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// The values of every field named `name`, joined by `separator`; `None` without any.
fn join_fields(headers: &HeaderMap, name: &HeaderName, separator: &[u8]) -> Option<Vec<u8>> {
    let mut fields = headers.get_all(name).iter();
    let mut joined = fields.next()?.as_bytes().to_vec();
    for field in fields {
        joined.extend_from_slice(separator);
        joined.extend_from_slice(field.as_bytes());
    }
    Some(joined)
}

/// The cookie pairs (`name=value`) of one Cookie field, trimmed, as bytes.
fn cookie_pairs(field: &HeaderValue) -> impl Iterator<Item = &[u8]> {
    field
        .as_bytes()
        .split(|byte| *byte == b';')
        .map(<[u8]>::trim_ascii)
        .filter(|pair| !pair.is_empty())
}

fn is_cookie_named(pair: &[u8], name: &str) -> bool {
    let key = pair.split(|byte| *byte == b'=').next().unwrap_or_default();
    key.trim_ascii() == name.as_bytes()
}

/// Takes the persistence cookie out of the request, so members never see it. Only the
/// fields holding it are rewritten, byte for byte; the others pass as they are.
fn remove_cookie(headers: &mut HeaderMap, name: &str) {
    let fields: Vec<HeaderValue> = headers.get_all(header::COOKIE).iter().cloned().collect();
    let holds_it =
        |field: &HeaderValue| cookie_pairs(field).any(|pair| is_cookie_named(pair, name));
    if !fields.iter().any(holds_it) {
        return;
    }
    headers.remove(header::COOKIE);
    for field in fields {
        if !holds_it(&field) {
            headers.append(header::COOKIE, field);
            continue;
        }
        let kept: Vec<&[u8]> = cookie_pairs(&field)
            .filter(|pair| !is_cookie_named(pair, name))
            .collect();
        if !kept.is_empty()
            && let Ok(value) = HeaderValue::from_bytes(&kept.join(&b"; "[..]))
        {
            headers.append(header::COOKIE, value);
        }
    }
}

/// The values a response's Set-Cookie headers give cookie `name`.
fn set_cookie_values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
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
        fn removing_the_persistence_cookie_keeps_every_other_pair(
            fields in proptest::collection::vec(cookie_field(), 0..4),
        ) {
            let mut headers = HeaderMap::new();
            for field in &fields {
                if let Ok(value) = HeaderValue::from_bytes(field) {
                    headers.append(header::COOKIE, value);
                }
            }
            let pairs = |headers: &HeaderMap| -> Vec<Vec<u8>> {
                headers
                    .get_all(header::COOKIE)
                    .iter()
                    .flat_map(cookie_pairs)
                    .map(<[u8]>::to_vec)
                    .collect()
            };
            let expected: Vec<Vec<u8>> = pairs(&headers)
                .into_iter()
                .filter(|pair| !is_cookie_named(pair, PERSISTENCE_COOKIE))
                .collect();
            remove_cookie(&mut headers, PERSISTENCE_COOKIE);
            proptest::prop_assert_eq!(pairs(&headers), expected);
        }

        #[test]
        fn set_cookie_values_read_any_bytes(fields in proptest::collection::vec(cookie_field(), 0..4)) {
            let mut headers = HeaderMap::new();
            for field in &fields {
                if let Ok(value) = HeaderValue::from_bytes(field) {
                    headers.append(header::SET_COOKIE, value);
                }
            }
            for value in set_cookie_values(&headers, "SRV") {
                proptest::prop_assert!(!value.is_empty() && !value.contains(';'));
            }
        }
    }

    #[test]
    fn forwarded_for_appends_to_every_earlier_hop() {
        let mut headers = HeaderMap::new();
        headers.append(X_FORWARDED_FOR, HeaderValue::from_static("10.0.0.1"));
        headers.append(
            X_FORWARDED_FOR,
            HeaderValue::from_static("10.0.0.2, 10.0.0.3"),
        );
        assert_eq!(
            join_fields(&headers, &X_FORWARDED_FOR, b", ").unwrap(),
            b"10.0.0.1, 10.0.0.2, 10.0.0.3"
        );
        assert_eq!(
            join_fields(&HeaderMap::new(), &X_FORWARDED_FOR, b", "),
            None
        );
    }

    #[test]
    fn hop_by_hop_headers_and_the_ones_connection_names_go() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-secret"),
        );
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        remove_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key(header::ACCEPT));
    }

    #[test]
    fn persistence_cookie_is_removed_and_app_cookies_are_read() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1; SRV=m2"));
        headers.append(
            header::COOKIE,
            HeaderValue::from_bytes(b"b=caf\xe9").unwrap(),
        );
        remove_cookie(&mut headers, "SRV");
        let fields: Vec<&[u8]> = headers
            .get_all(header::COOKIE)
            .iter()
            .map(HeaderValue::as_bytes)
            .collect();
        assert_eq!(
            fields,
            [&b"a=1"[..], &b"b=caf\xe9"[..]],
            "a field without the cookie, even one not UTF-8, passes untouched"
        );
        let mut latin = HeaderMap::new();
        latin.insert(
            header::COOKIE,
            HeaderValue::from_bytes(b"n=\xe9t\xe9; SRV=m1").unwrap(),
        );
        remove_cookie(&mut latin, "SRV");
        assert_eq!(latin[header::COOKIE].as_bytes(), b"n=\xe9t\xe9");
        let mut none = HeaderMap::new();
        none.insert(header::COOKIE, HeaderValue::from_static("SRVX=1"));
        remove_cookie(&mut none, "SRV");
        assert_eq!(none[header::COOKIE], "SRVX=1");
        let mut only = HeaderMap::new();
        only.insert(header::COOKIE, HeaderValue::from_static("SRV=m1"));
        remove_cookie(&mut only, "SRV");
        assert!(only.is_empty());

        let mut response = HeaderMap::new();
        response.append(
            header::SET_COOKIE,
            HeaderValue::from_static("JSESSIONID=abc; Path=/; HttpOnly"),
        );
        response.append(header::SET_COOKIE, HeaderValue::from_static("other=x"));
        assert_eq!(set_cookie_values(&response, "JSESSIONID"), ["abc"]);
        assert!(set_cookie_values(&response, "missing").is_empty());
    }
}
