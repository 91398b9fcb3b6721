//! Integration tests of the proxy on loopback: a real `Proxy` in front of tiny backend
//! servers, all on 127.0.0.1 with ephemeral ports. One test binary, so the crate links
//! once; the tests are grouped by what they exercise.

mod proxy {
    pub mod support;

    mod control;
    mod http;
    mod listener_tls;
    mod member_tls;
    mod proxy_protocol;
    mod reconfigure;
    mod tcp;
    mod udp;
    mod websocket;
}
