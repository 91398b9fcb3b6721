//! A TERMINATED_HTTPS listener's TLS settings: client certificates (asked for, checked
//! against a CA and a CRL, described to members in X-SSL-* fields), TLS versions, cipher
//! suites and ALPN protocols.

use std::sync::Arc;

use ronghe_proxy::Proxy;
use ronghe_proxy::ProxyConfig;
use ronghe_proxy::config::{
    ClientAuthentication, ListenerProtocol, PoolProtocol, SslHeader, TlsSettings, TlsVersion,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::support::http::{Client, http_echo_backend};
use super::support::pki::{Authority, Signed};
use super::support::{Backend, DEADLINE, listener, pool};

/// A TERMINATED_HTTPS listener `web` serving `server` for `shop.test` before `backend`.
fn terminated_config(server: &Signed, backend: &Backend) -> ProxyConfig {
    let mut web = listener("web", ListenerProtocol::TerminatedHttps, Some("pool"));
    web.tls = Some(server.as_tls_certificate());
    ProxyConfig {
        listeners: vec![web],
        pools: vec![pool("pool", PoolProtocol::Http, &[backend])],
    }
}

/// How a test client does its TLS.
#[derive(Clone, Copy)]
struct ClientSide<'a> {
    trusted: &'a str,
    certificate: Option<&'a Signed>,
    versions: &'a [&'static rustls::SupportedProtocolVersion],
    alpn: &'a [&'a str],
}

impl<'a> ClientSide<'a> {
    fn trusting(trusted: &'a str) -> ClientSide<'a> {
        ClientSide {
            trusted,
            certificate: None,
            versions: rustls::DEFAULT_VERSIONS,
            alpn: &["http/1.1"],
        }
    }

    fn with(self, certificate: Option<&'a Signed>) -> ClientSide<'a> {
        ClientSide {
            certificate,
            ..self
        }
    }

    fn config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for certificate in CertificateDer::pem_slice_iter(self.trusted.as_bytes()) {
            roots
                .add(certificate.expect("test TLS material"))
                .expect("test TLS material");
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(self.versions)
        .expect("test TLS material")
        .with_root_certificates(roots);
        let mut config = match self.certificate {
            Some(signed) => builder
                .with_client_auth_cert(
                    CertificateDer::pem_slice_iter(signed.certificate_pem.as_bytes())
                        .collect::<Result<Vec<_>, _>>()
                        .expect("test TLS material"),
                    PrivateKeyDer::from_pem_slice(signed.key_pem.as_bytes())
                        .expect("test TLS material"),
                )
                .expect("test TLS material"),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = self.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        Arc::new(config)
    }

    /// A TLS connection to `proxy`'s listener `web` as `shop.test`; `Err` if the
    /// handshake fails on the client's side.
    async fn connect(
        &self,
        proxy: &Proxy,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(proxy.local_addr("web").expect("test TLS material")).await?;
        let connector = tokio_rustls::TlsConnector::from(self.config());
        let name = ServerName::try_from("shop.test").expect("test TLS material");
        tokio::time::timeout(DEADLINE, connector.connect(name, tcp))
            .await
            .expect("the handshake ends in time")
    }

    /// Whether a request gets through at all: TLS 1.3 clients learn that the server
    /// refused their certificate only when they read.
    async fn served(&self, proxy: &Proxy) -> bool {
        let Ok(mut tls) = self.connect(proxy).await else {
            return false;
        };
        let request = b"GET / HTTP/1.1\r\nhost: shop.test\r\nconnection: close\r\n\r\n";
        if tls.write_all(request).await.is_err() {
            return false;
        }
        let mut answer = Vec::new();
        let read = tokio::time::timeout(DEADLINE, tls.read_to_end(&mut answer))
            .await
            .expect("the proxy answers or closes in time");
        read.is_ok() && answer.starts_with(b"HTTP/1.1 200")
    }
}

#[tokio::test]
async fn client_certificates_are_asked_for_checked_and_described_to_members() {
    let shop_ca = Authority::new("Shop CA");
    let other_ca = Authority::new("Other CA");
    let server = shop_ca.sign(&["shop.test"], "shop.test", 1);
    let alice = shop_ca.sign(&[], "alice", 2);
    let mallory = shop_ca.sign(&[], "mallory", 3);
    let stranger = other_ca.sign(&[], "alice", 2);
    let backend = http_echo_backend("a").await;
    let mut config = terminated_config(&server, &backend);
    for header in SslHeader::ALL {
        config.listeners[0].insert_headers.set_ssl(header, true);
    }
    config.listeners[0].client_authentication = Some(ClientAuthentication {
        mandatory: true,
        ca_pem: shop_ca.pem.clone(),
        crl_pem: None,
    });
    let proxy = Proxy::start(config.clone()).await.unwrap();
    let client = ClientSide::trusting(&shop_ca.pem);
    let with = |certificate| client.with(certificate);
    let (alice, mallory, stranger) = (&alice, &mallory, &stranger);

    // A certificate the CA signed: served, and the member is told who it is; what the
    // client says of itself in those fields is replaced.
    let tls = with(Some(alice)).connect(&proxy).await.unwrap();
    let mut client = Client::http1_over(tls).await;
    let forged = [("x-ssl-client-cn", "admin"), ("X-SSL-Client-Has-Cert", "0")];
    let seen = client.get("/", &forged).await.seen();
    assert!(seen.repeated.is_empty(), "{:?}", seen.repeated);
    let header = |name: &str| seen.headers.get(name).cloned().unwrap_or_default();
    assert_eq!(header("x-ssl-client-verify"), "0");
    assert_eq!(header("x-ssl-client-has-cert"), "1");
    assert_eq!(header("x-ssl-client-dn"), "\"/O=Shop/CN=alice\"");
    assert_eq!(header("x-ssl-client-cn"), "\"alice\"");
    assert_eq!(header("x-ssl-issuer"), "\"/CN=Shop CA\"");
    let sha1: String = {
        use sha1::Digest;
        sha1::Sha1::digest(&alice.der)
            .iter()
            .map(|byte| format!("{byte:02X}"))
            .collect()
    };
    assert_eq!(header("x-ssl-client-sha1"), format!("\"{sha1}\""));
    // rcgen's default validity, 1975 to 4096: UTCTime, then GeneralizedTime.
    assert_eq!(header("x-ssl-client-not-before"), "\"750101000000Z\"");
    assert_eq!(header("x-ssl-client-not-after"), "\"40960101000000Z\"");
    drop(client);
    // The same over HTTP/2.
    let h2 = ClientSide {
        alpn: &["h2"],
        ..with(Some(alice))
    };
    let mut client = Client::http2_over(h2.connect(&proxy).await.unwrap()).await;
    let seen = client.get("/", &forged).await.seen();
    assert!(seen.repeated.is_empty(), "{:?}", seen.repeated);
    assert_eq!(seen.version, "HTTP/1.1");
    assert_eq!(seen.headers["x-ssl-client-cn"], "\"alice\"");
    assert_eq!(seen.headers["x-ssl-client-dn"], "\"/O=Shop/CN=alice\"");
    drop(client);

    // MANDATORY: no certificate, or one another CA signed, is not served; nor on TLS 1.2,
    // where the handshake itself fails.
    assert!(!with(None).served(&proxy).await);
    assert!(!with(Some(stranger)).served(&proxy).await);
    let tls12 = ClientSide {
        versions: &[&rustls::version::TLS12],
        ..with(None)
    };
    assert!(tls12.connect(&proxy).await.is_err());
    assert!(with(Some(mallory)).served(&proxy).await);

    // A revocation list: the certificate it revokes is refused, others still served.
    let mut revoking = config.clone();
    revoking.listeners[0]
        .client_authentication
        .as_mut()
        .unwrap()
        .crl_pem = Some(shop_ca.revoking(&[3]));
    proxy.reconfigure(revoking).await.unwrap();
    assert!(!with(Some(mallory)).served(&proxy).await);
    assert!(with(Some(alice)).served(&proxy).await);

    // OPTIONAL: a client without a certificate is served and the member told so; one
    // with a certificate the CA did not sign is still refused.
    let mut optional = config.clone();
    optional.listeners[0]
        .client_authentication
        .as_mut()
        .unwrap()
        .mandatory = false;
    proxy.reconfigure(optional).await.unwrap();
    let tls = with(None).connect(&proxy).await.unwrap();
    let mut anonymous = Client::http1_over(tls).await;
    let seen = anonymous.get("/", &[]).await.seen();
    assert_eq!(seen.headers["x-ssl-client-verify"], "0");
    assert_eq!(seen.headers["x-ssl-client-has-cert"], "0");
    assert_eq!(seen.headers["x-ssl-client-dn"], "\"\"");
    assert!(!with(Some(stranger)).served(&proxy).await);
    assert!(with(Some(alice)).served(&proxy).await);
    // Certificates made mandatory again: a connection that has none does not go on
    // under the terms it was accepted with; it closes.
    let h2 = ClientSide {
        alpn: &["h2"],
        ..with(None)
    };
    let anonymous_h2 = Client::http2_over(h2.connect(&proxy).await.unwrap()).await;
    proxy.reconfigure(config.clone()).await.unwrap();
    anonymous.closed().await;
    anonymous_h2.closed().await;

    // Without client authentication, no certificate is asked for: a client that has one
    // does not send it.
    let mut none = config.clone();
    none.listeners[0].client_authentication = None;
    proxy.reconfigure(none).await.unwrap();
    let tls = with(Some(alice)).connect(&proxy).await.unwrap();
    let seen = Client::http1_over(tls).await.get("/", &[]).await.seen();
    assert_eq!(seen.headers["x-ssl-client-has-cert"], "0");
    proxy.shutdown().await;
}

#[tokio::test]
async fn versions_ciphers_and_alpn_are_the_listeners() {
    let ca = Authority::new("Shop CA");
    let server = ca.sign(&["shop.test"], "shop.test", 1);
    let backend = http_echo_backend("a").await;
    let mut config = terminated_config(&server, &backend);
    let proxy = Proxy::start(config.clone()).await.unwrap();
    let client = ClientSide::trusting(&ca.pem);

    // The defaults: both versions (the client's preference, 1.3, wins), every suite,
    // h2, http/1.1 and http/1.0.
    for (alpn, expected) in [(&["h2", "http/1.1"][..], "h2"), (&["http/1.0"], "http/1.0")] {
        let tls = ClientSide { alpn, ..client }.connect(&proxy).await.unwrap();
        let session = tls.get_ref().1;
        assert_eq!(
            session.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_3)
        );
        assert_eq!(session.alpn_protocol(), Some(expected.as_bytes()));
    }
    let tls12 = ClientSide {
        versions: &[&rustls::version::TLS12],
        ..client
    };
    assert!(tls12.served(&proxy).await);

    // TLS 1.3 only; one TLS 1.2 suite (the TLS 1.3 ones stay); HTTP/1.1 only.
    config.listeners[0].tls_settings = TlsSettings {
        versions: vec![TlsVersion::Tls13],
        ciphers: Some("ECDHE-ECDSA-AES256-GCM-SHA384:DHE-RSA-AES128-GCM-SHA256".into()),
        alpn_protocols: vec!["http/1.1".into()],
    };
    proxy.reconfigure(config.clone()).await.unwrap();
    assert!(!tls12.served(&proxy).await);
    let tls = ClientSide {
        alpn: &["h2", "http/1.1"],
        ..client
    }
    .connect(&proxy)
    .await
    .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let seen = Client::http1_over(tls).await.get("/", &[]).await.seen();
    assert_eq!(seen.version, "HTTP/1.1");

    // TLS 1.2 only, with that one suite: the handshake uses it.
    config.listeners[0].tls_settings.versions = vec![TlsVersion::Tls12];
    proxy.reconfigure(config.clone()).await.unwrap();
    let tls = tls12.connect(&proxy).await.unwrap();
    assert_eq!(
        tls.get_ref().1.negotiated_cipher_suite().unwrap().suite(),
        rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
    );
    assert!(tls12.served(&proxy).await);
    let tls13 = ClientSide {
        versions: &[&rustls::version::TLS13],
        ..client
    };
    assert!(!tls13.served(&proxy).await);

    // A list naming nothing the proxy has is refused, and the listener serves on.
    config.listeners[0].tls_settings.ciphers = Some("DHE-RSA-AES128-GCM-SHA256".into());
    assert!(proxy.reconfigure(config.clone()).await.is_err());
    assert!(tls12.served(&proxy).await);
    proxy.shutdown().await;
}
