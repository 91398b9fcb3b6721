//! Pools with `tls_enabled` (Octavia's re-encryption to members): member connections are
//! TLS, whichever path a client takes, and health checks follow HAProxy's rule.

use std::collections::BTreeSet;
use std::sync::Arc;

use ronghe_proxy::config::{
    ListenerProtocol, MemberTls, PoolProtocol, TlsCertificate, TlsSettings, TlsVersion,
};
use ronghe_proxy::health::OperatingStatus;
use ronghe_proxy::{Proxy, ProxyConfig};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;

use super::support::http::{
    Client, either_http_echo_backend, exchange_raw, http_echo_backend, tls_client,
    tls_http_echo_backend, tls_http_echo_backend_with,
};
use super::support::pki::{Authority, Signed};
use super::support::{Backend, http_monitor, listener, pool, wait_for_status};

fn tls_pool_config(protocol: ListenerProtocol, backends: &[&Backend]) -> ProxyConfig {
    let pool_protocol = match protocol {
        ListenerProtocol::Tcp => PoolProtocol::Tcp,
        _ => PoolProtocol::Http,
    };
    let mut listener = listener("web", protocol, Some("pool"));
    listener.insert_headers.x_forwarded_for = protocol != ListenerProtocol::Tcp;
    let mut pool = pool("pool", pool_protocol, backends);
    pool.tls_enabled = true;
    ProxyConfig {
        listeners: vec![listener],
        pools: vec![pool],
    }
}

#[tokio::test]
async fn http_clients_of_both_versions_reach_tls_members() {
    let a = tls_http_echo_backend("a").await;
    let b = tls_http_echo_backend("b").await;
    let proxy = Proxy::start(tls_pool_config(ListenerProtocol::Http, &[&a, &b]))
        .await
        .unwrap();
    let address = proxy.local_addr("web").unwrap();
    let mut seen = BTreeSet::new();
    for mut client in [Client::http1(address).await, Client::http2(address).await] {
        for _ in 0..4 {
            let answer = client.get("/tls", &[]).await;
            assert_eq!(answer.status, 200, "{answer:?}");
            let described = answer.seen();
            assert_eq!(described.path, "/tls");
            assert_eq!(described.headers["x-forwarded-for"], "127.0.0.1");
            seen.insert(described.backend);
        }
    }
    assert_eq!(seen, BTreeSet::from(["a".to_owned(), "b".to_owned()]));
    proxy.shutdown().await;
}

#[tokio::test]
async fn tcp_listeners_relay_into_tls_and_plain_members_fail_the_handshake() {
    let tls = tls_http_echo_backend("tls").await;
    let proxy = Proxy::start(tls_pool_config(ListenerProtocol::Tcp, &[&tls]))
        .await
        .unwrap();
    let address = proxy.local_addr("web").unwrap();
    let answer = exchange_raw(
        address,
        b"GET /relayed HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert!(answer.contains("\"path\":\"/relayed\""), "{answer}");
    proxy.shutdown().await;

    // A member that does not speak TLS fails the handshake: the pool has no member to
    // give, and the member counts the failure.
    let plain = http_echo_backend("plain").await;
    let proxy = Proxy::start(tls_pool_config(ListenerProtocol::Http, &[&plain]))
        .await
        .unwrap();
    let address = proxy.local_addr("web").unwrap();
    let answer = exchange_raw(
        address,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    assert!(proxy.stats().member("pool", "plain").request_errors >= 1);
    proxy.shutdown().await;
}

#[tokio::test]
async fn http_monitors_of_tls_pools_check_members_in_tls() {
    let tls = tls_http_echo_backend("tls").await;
    let plain = http_echo_backend("plain").await;
    let mut config = tls_pool_config(ListenerProtocol::Http, &[&tls, &plain]);
    config.pools[0].health_monitor = Some(http_monitor());
    let proxy = Proxy::start(config).await.unwrap();
    wait_for_status(&proxy, "pool", "tls", OperatingStatus::Online).await;
    wait_for_status(&proxy, "pool", "plain", OperatingStatus::Error).await;
    // Traffic goes to the member that passes.
    let mut client = Client::http1(proxy.local_addr("web").unwrap()).await;
    for _ in 0..3 {
        assert_eq!(client.get("/", &[]).await.seen().backend, "tls");
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn turning_tls_on_or_off_leaves_no_idle_connection_of_the_other_kind() {
    let member = either_http_echo_backend("m").await;
    let mut config = tls_pool_config(ListenerProtocol::Http, &[&member]);
    config.pools[0].tls_enabled = false;
    let proxy = Proxy::start(config.clone()).await.unwrap();
    let address = proxy.local_addr("web").unwrap();
    let mut client = Client::http1(address).await;
    assert_eq!(client.get("/", &[]).await.seen().backend, "m in the clear");
    // The member connection waits idle for the next request; a reconfigure that turns
    // TLS on must not hand it out, nor one in TLS once TLS is off again.
    for (tls, wanted) in [(true, "m in TLS"), (false, "m in the clear")] {
        config.pools[0].tls_enabled = tls;
        proxy.reconfigure(config.clone()).await.unwrap();
        for _ in 0..2 {
            assert_eq!(client.get("/", &[]).await.seen().backend, wanted);
        }
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn tls_members_are_asked_for_the_name_the_client_asked_the_listener_for() {
    let member = tls_http_echo_backend("m").await;
    let generated =
        rcgen::generate_simple_self_signed(vec!["a.example".into(), "b.example".into()]).unwrap();
    let certificate_pem = generated.cert.pem();
    let mut config = tls_pool_config(ListenerProtocol::TerminatedHttps, &[&member]);
    config.listeners[0].tls = Some(TlsCertificate {
        certificate_pem: certificate_pem.clone(),
        private_key_pem: generated.signing_key.serialize_pem(),
    });
    let proxy = Proxy::start(config).await.unwrap();
    let address = proxy.local_addr("web").unwrap();
    // Two clients after one another, each asking for its own name over both HTTP
    // versions: the member is asked for each client's name, never for the one before
    // (the first client's member connection, idle meanwhile, serves only that client).
    for (name, alpn) in [
        ("a.example", "http/1.1"),
        ("b.example", "h2"),
        ("a.example", "h2"),
    ] {
        let connector = tokio_rustls::TlsConnector::from(tls_client(&certificate_pem, &[alpn]));
        let tcp = TcpStream::connect(address).await.unwrap();
        let server_name = rustls::pki_types::ServerName::try_from(name).unwrap();
        let tls = connector.connect(server_name, tcp).await.unwrap();
        let mut client = match alpn {
            "h2" => Client::http2_over(tls).await,
            _ => Client::http1_over(tls).await,
        };
        for _ in 0..2 {
            let seen = client.get("/", &[]).await.seen();
            assert_eq!(seen.headers["x-tls-sni"], name, "{alpn}");
        }
    }
    proxy.shutdown().await;

    // A plain HTTP listener's clients ask for no name: neither is the member.
    let proxy = Proxy::start(tls_pool_config(ListenerProtocol::Http, &[&member]))
        .await
        .unwrap();
    let mut client = Client::http1(proxy.local_addr("web").unwrap()).await;
    assert_eq!(
        client.get("/", &[]).await.seen().headers["x-tls-sni"],
        "none"
    );
    proxy.shutdown().await;
}

/// A member serving `server`, which asks the proxy for a certificate `clients` signed.
fn verifying_member(name: &str, server: &Signed, clients: &Authority) -> Backend {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(clients.pem.as_bytes()) {
        roots
            .add(certificate.expect("test member TLS"))
            .expect("test member TLS");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .expect("test member TLS");
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("test member TLS")
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from(server.der.clone())],
            PrivateKeyDer::from_pem_slice(server.key_pem.as_bytes()).expect("test member TLS"),
        )
        .expect("test member TLS");
    tls_http_echo_backend_with(name, tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

#[tokio::test]
async fn a_pool_checks_members_against_its_ca_and_shows_them_its_certificate() {
    let members_ca = Authority::new("Members CA");
    let proxies_ca = Authority::new("Proxies CA");
    let stranger_ca = Authority::new("Stranger CA");
    let member = verifying_member(
        "a",
        &members_ca.sign(&["member.test"], "member.test", 2),
        &proxies_ca,
    );
    let mut config = tls_pool_config(ListenerProtocol::Http, &[&member]);
    let proxy_certificate = proxies_ca.sign(&[], "lb-proxy", 3).as_tls_certificate();
    config.pools[0].member_tls = MemberTls {
        ca_pem: Some(members_ca.pem.clone()),
        certificate: Some(proxy_certificate.clone()),
        ..MemberTls::default()
    };
    let proxy = Proxy::start(config.clone()).await.unwrap();
    let address = proxy.local_addr("web").unwrap();
    let status = |config: ProxyConfig| {
        let proxy = &proxy;
        async move {
            proxy.reconfigure(config).await.unwrap();
            Client::http1(address).await.get("/", &[]).await.status
        }
    };

    // Verified against the CA (not against the name: no SNI asked for one, and the member
    // is addressed by IP), and the member took the proxy's certificate.
    let answer = Client::http1(address).await.get("/", &[]).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.seen().backend, "a");

    // Another CA, a CRL revoking the member, or no certificate for the member: no answer.
    let mut other_ca = config.clone();
    other_ca.pools[0].member_tls.ca_pem = Some(stranger_ca.pem.clone());
    assert_ne!(status(other_ca).await, 200);
    let mut revoked = config.clone();
    revoked.pools[0].member_tls.crl_pem = Some(members_ca.revoking(&[2]));
    assert_ne!(status(revoked).await, 200);
    let mut anonymous = config.clone();
    anonymous.pools[0].member_tls.certificate = None;
    assert_ne!(status(anonymous).await, 200);
    let mut not_revoked = config.clone();
    not_revoked.pools[0].member_tls.crl_pem = Some(members_ca.revoking(&[9]));
    assert_eq!(status(not_revoked).await, 200);

    // Health checks at the member go in the pool's TLS: a member that asks for a
    // certificate fails them without the pool's, and passes them with it.
    let mut monitored = config.clone();
    monitored.pools[0].health_monitor = Some(http_monitor());
    monitored.pools[0].member_tls.certificate = None;
    proxy.reconfigure(monitored.clone()).await.unwrap();
    wait_for_status(&proxy, "pool", "a", OperatingStatus::Error).await;
    monitored.pools[0].member_tls.certificate = Some(proxy_certificate.clone());
    proxy.reconfigure(monitored).await.unwrap();
    wait_for_status(&proxy, "pool", "a", OperatingStatus::Online).await;

    // Settings: TLS 1.2 only, one suite, HTTP/1.1 offered; h2 cannot be offered (the
    // proxy speaks HTTP/1.1 to members), and settings need tls_enabled.
    let mut settings = config.clone();
    settings.pools[0].member_tls.settings = TlsSettings {
        versions: vec![TlsVersion::Tls12],
        ciphers: Some("ECDHE-ECDSA-CHACHA20-POLY1305".into()),
        alpn_protocols: vec!["http/1.1".into()],
    };
    assert_eq!(status(settings.clone()).await, 200);
    let mut h2 = settings.clone();
    h2.pools[0].member_tls.settings.alpn_protocols = vec!["h2".into()];
    assert!(proxy.reconfigure(h2).await.is_err());
    let mut plain = settings.clone();
    plain.pools[0].tls_enabled = false;
    assert!(proxy.reconfigure(plain).await.is_err());
    proxy.shutdown().await;

    // Behind a TERMINATED_HTTPS listener, the client's server name goes to the member,
    // whose certificate must then be for that name.
    let mut terminated = config.clone();
    let listener = &mut terminated.listeners[0];
    listener.protocol = ListenerProtocol::TerminatedHttps;
    listener.tls = Some(
        members_ca
            .sign(&["member.test", "other.test"], "front", 4)
            .as_tls_certificate(),
    );
    let proxy = Proxy::start(terminated).await.unwrap();
    let address = proxy.local_addr("web").unwrap();
    let connector = tokio_rustls::TlsConnector::from(tls_client(&members_ca.pem, &["http/1.1"]));
    for (name, served) in [("member.test", true), ("other.test", false)] {
        let tcp = TcpStream::connect(address).await.unwrap();
        let server_name = rustls::pki_types::ServerName::try_from(name).unwrap();
        let tls = connector.connect(server_name, tcp).await.unwrap();
        let answer = Client::http1_over(tls).await.get("/", &[]).await;
        assert_eq!(answer.status == 200, served, "{name}: {answer:?}");
    }
    proxy.shutdown().await;
}
