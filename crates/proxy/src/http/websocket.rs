//! WebSocket over HTTP/2 (RFC 8441). The proxy offers HTTP/2 clients the extended
//! CONNECT (`SETTINGS_ENABLE_CONNECT_PROTOCOL`), and a client opens a WebSocket with a
//! CONNECT request whose `:protocol` is `websocket`, on a stream of its connection.
//! Members speak HTTP/1.1, so the proxy asks the member for RFC 6455's upgrade instead,
//! as HAProxy does: a GET with `Connection: upgrade`, `Upgrade: websocket` and a
//! `Sec-WebSocket-Key` of the proxy's own (HTTP/2 clients send none), over a new member
//! connection. Its other fields (`Sec-WebSocket-Version`, `-Protocol`, `-Extensions`,
//! cookies, the X-Forwarded-* ones) go as for any request, and the request is routed by
//! the listener's L7 policies on its `:path` and `:authority` like any other.
//!
//! The member's answer:
//! - `101 Switching Protocols` with the `Sec-WebSocket-Accept` the key calls for: the
//!   client gets a 200 with the answer's end-to-end fields (the chosen subprotocol and
//!   extensions), and the stream and the member connection become a tunnel, bytes
//!   passed both ways until both sides have closed (a side's close is passed on to the
//!   other) or nothing passes for the longer of the listener's two data timeouts. The
//!   tunnel holds its stream's share of the listener's connection limit and its
//!   member's active connection until it ends.
//! - a 101 with a wrong or missing accept key, or a 2xx (the member did not switch): 502.
//! - any other answer goes to the client as it is (a 403 or 404 stays one).
//!
//! Extended CONNECTs for other protocols (`connect-udp`, WebTransport) are answered 501:
//! no HTTP/1.1 member could take them.

use std::time::Duration;

use bytes::BytesMut;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, request};
use hyper::ext::Protocol;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::h1;

const SEC_WEBSOCKET_KEY: HeaderName = HeaderName::from_static("sec-websocket-key");
const SEC_WEBSOCKET_ACCEPT: HeaderName = HeaderName::from_static("sec-websocket-accept");

/// A WebSocket an HTTP/2 client asked for, on its way to a member.
pub(crate) struct Handshake {
    /// The key the member is sent.
    key: HeaderValue,
    /// The client's stream, once answered 200.
    client: OnUpgrade,
}

/// What an HTTP/2 request asks of this module.
pub(crate) enum Asked {
    /// Not an extended CONNECT: an ordinary request.
    Nothing,
    /// A WebSocket: the request (`parts`) is now the member's GET.
    WebSocket(Handshake),
    /// An extended CONNECT the proxy cannot serve, answered with this status.
    Refused(StatusCode),
}

impl Handshake {
    /// Reads an HTTP/2 request's head. An extended CONNECT for a WebSocket is turned into
    /// the GET its member is sent (without the upgrade's own fields, which
    /// [`Handshake::ask`] writes last).
    pub fn begin(parts: &mut request::Parts) -> Asked {
        if parts.method != Method::CONNECT {
            return Asked::Nothing;
        }
        let Some(protocol) = parts.extensions.get::<Protocol>() else {
            return Asked::Nothing;
        };
        if !protocol.as_str().eq_ignore_ascii_case("websocket") {
            tracing::debug!(
                protocol = protocol.as_str(),
                "extended CONNECT for a protocol other than websocket"
            );
            return Asked::Refused(StatusCode::NOT_IMPLEMENTED);
        }
        let Some(client) = parts.extensions.remove::<OnUpgrade>() else {
            // hyper gives every CONNECT stream one; without it nothing could pass.
            return Asked::Refused(StatusCode::INTERNAL_SERVER_ERROR);
        };
        parts.method = Method::GET;
        // HTTP/2 WebSockets have no keys (RFC 8441 section 5): a client's would be
        // answered by the member for a handshake the proxy does.
        parts.headers.remove(SEC_WEBSOCKET_KEY);
        parts.headers.remove(SEC_WEBSOCKET_ACCEPT);
        let key = tungstenite::handshake::client::generate_key();
        let Ok(key) = HeaderValue::from_str(&key) else {
            return Asked::Refused(StatusCode::INTERNAL_SERVER_ERROR);
        };
        Asked::WebSocket(Handshake { key, client })
    }

    /// Adds the upgrade's own fields to the member's request (after its rewritten ones,
    /// `Connection: upgrade` among them).
    pub fn ask(&self, headers: &mut HeaderMap) {
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(SEC_WEBSOCKET_KEY, self.key.clone());
    }

    /// Whether a member's answer switched to the WebSocket this handshake asked for.
    /// `Err`: an answer no client may be given (a 2xx that did not switch, or a switch
    /// with the wrong accept key); `Ok(false)`: an answer that goes to the client as it
    /// is.
    pub fn switched(&self, status: StatusCode, answer: &HeaderMap) -> Result<bool, &'static str> {
        if status == StatusCode::SWITCHING_PROTOCOLS {
            let expected = tungstenite::handshake::derive_accept_key(self.key.as_bytes());
            return match answer.get(SEC_WEBSOCKET_ACCEPT) {
                Some(accept) if accept.as_bytes() == expected.as_bytes() => Ok(true),
                _ => Err("switched without the right Sec-WebSocket-Accept"),
            };
        }
        if status.is_success() {
            return Err("answered a WebSocket handshake with a 2xx");
        }
        Ok(false)
    }

    /// Passes bytes between the client's stream (once hyper has sent the 200) and the
    /// member's switched connection (`member`) until both sides have closed (a side's
    /// close is passed on to the other) or nothing passes for `idle`. `holding` (the
    /// stream's slot of the connection limit, the member's active connection) is dropped
    /// with the tunnel.
    pub async fn tunnel<H>(self, member: OnUpgrade, idle: Duration, holding: H) {
        let (client, member) = match tokio::try_join!(self.client, member) {
            Ok(both) => both,
            Err(error) => {
                tracing::debug!(%error, "a WebSocket's stream or member connection did not switch");
                return;
            }
        };
        let (mut client, mut member) = (TokioIo::new(client), TokioIo::new(member));
        let tunnelled = h1::tunnel(
            &mut client,
            &mut member,
            &mut Vec::new(),
            (&mut BytesMut::new(), &mut BytesMut::new()),
            (&mut h1::Wait::default(), idle),
        )
        .await;
        if let Err(error) = tunnelled {
            tracing::debug!(%error, "a WebSocket over HTTP/2 ended");
        }
        drop(holding);
    }
}

/// Makes a member's switching answer (its fields already the client's) the client's
/// answer on HTTP/2: a 200 with no body, and without RFC 6455's accept key.
pub(crate) fn answer_switched(answer: &mut http::response::Parts) {
    answer.status = StatusCode::OK;
    answer.headers.remove(SEC_WEBSOCKET_ACCEPT);
    answer.headers.remove(header::CONTENT_LENGTH);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handshake() -> Handshake {
        let mut parts = http::Request::builder()
            .method(Method::CONNECT)
            .uri("https://chat.example/socket")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .extension(Protocol::from_static("websocket"))
            .extension(on_upgrade())
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let Asked::WebSocket(handshake) = Handshake::begin(&mut parts) else {
            panic!("a WebSocket extended CONNECT is one");
        };
        assert_eq!(parts.method, Method::GET);
        assert!(
            !parts.headers.contains_key(SEC_WEBSOCKET_KEY),
            "the client's key goes"
        );
        handshake
    }

    /// An `OnUpgrade` as hyper attaches to CONNECT streams (from a request that has one).
    fn on_upgrade() -> OnUpgrade {
        let mut request = http::Request::new(());
        hyper::upgrade::on(&mut request)
    }

    #[test]
    fn only_extended_connects_for_websockets_are_handshakes() {
        let mut get = http::Request::get("/").body(()).unwrap().into_parts().0;
        assert!(matches!(Handshake::begin(&mut get), Asked::Nothing));
        let mut connect = http::Request::builder()
            .method(Method::CONNECT)
            .uri("example.org:443")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        assert!(matches!(Handshake::begin(&mut connect), Asked::Nothing));
        let mut udp = http::Request::builder()
            .method(Method::CONNECT)
            .uri("https://proxy.example/.well-known/masque/udp/192.0.2.6/443/")
            .extension(Protocol::from_static("connect-udp"))
            .extension(on_upgrade())
            .body(())
            .unwrap()
            .into_parts()
            .0;
        assert!(matches!(
            Handshake::begin(&mut udp),
            Asked::Refused(StatusCode::NOT_IMPLEMENTED)
        ));
        assert_eq!(
            udp.method,
            Method::CONNECT,
            "a refused request is left alone"
        );
    }

    #[test]
    fn the_member_is_asked_with_a_fresh_key_and_must_answer_it() {
        let handshake = handshake();
        let mut headers = HeaderMap::new();
        handshake.ask(&mut headers);
        assert_eq!(headers[header::UPGRADE], "websocket");
        let key = headers[SEC_WEBSOCKET_KEY].to_str().unwrap().to_owned();
        assert_ne!(key, "dGhlIHNhbXBsZSBub25jZQ==");
        assert_ne!(
            key,
            handshake_key(&self::handshake()),
            "each handshake its own key"
        );
        let mut answer = HeaderMap::new();
        answer.insert(
            SEC_WEBSOCKET_ACCEPT,
            HeaderValue::from_str(&tungstenite::handshake::derive_accept_key(key.as_bytes()))
                .unwrap(),
        );
        assert_eq!(
            handshake.switched(StatusCode::SWITCHING_PROTOCOLS, &answer),
            Ok(true)
        );
        assert_eq!(
            handshake.switched(StatusCode::FORBIDDEN, &answer),
            Ok(false)
        );
        assert!(handshake.switched(StatusCode::OK, &answer).is_err());
        // RFC 6455's sample accept key answers the sample key, not this one.
        answer.insert(
            SEC_WEBSOCKET_ACCEPT,
            HeaderValue::from_static("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        );
        assert!(
            handshake
                .switched(StatusCode::SWITCHING_PROTOCOLS, &answer)
                .is_err()
        );
        answer.remove(SEC_WEBSOCKET_ACCEPT);
        assert!(
            handshake
                .switched(StatusCode::SWITCHING_PROTOCOLS, &answer)
                .is_err()
        );
    }

    fn handshake_key(handshake: &Handshake) -> String {
        handshake.key.to_str().unwrap().to_owned()
    }
}
