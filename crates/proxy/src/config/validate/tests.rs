//! Tests of configuration parsing and validation.

use super::*;
use crate::config::{
    ClientAuthentication, InsertHeaders, LbAlgorithm, SessionPersistence, TlsCertificate,
    TlsSettings, TlsVersion,
};

fn listener(id: &str, protocol: ListenerProtocol, bind: &str, pool: Option<&str>) -> Listener {
    Listener {
        id: id.into(),
        protocol,
        bind: bind.parse().unwrap(),
        connection_limit: None,
        timeout_client_data: 50_000,
        timeout_member_connect: 5_000,
        timeout_member_data: 50_000,
        insert_headers: InsertHeaders::default(),
        default_pool_id: pool.map(Into::into),
        l7_policies: vec![],
        tls: None,
        sni: Vec::new(),
        tls_settings: Default::default(),
        client_authentication: None,
    }
}

fn member(id: &str, port: u16) -> Member {
    Member {
        id: id.into(),
        address: "127.0.0.1".parse().unwrap(),
        protocol_port: port,
        weight: 1,
        backup: false,
        admin_state_up: true,
        monitor_address: None,
        monitor_port: None,
    }
}

fn pool(id: &str, protocol: PoolProtocol) -> Pool {
    Pool {
        id: id.into(),
        protocol,
        lb_algorithm: LbAlgorithm::RoundRobin,
        session_persistence: None,
        members: vec![member("m1", 8001), member("m2", 8002)],
        health_monitor: None,
        tls_enabled: false,
        member_tls: Default::default(),
    }
}

fn http_monitor() -> HealthMonitor {
    HealthMonitor {
        monitor_type: MonitorType::Http,
        delay_ms: 1000,
        timeout_ms: 500,
        max_retries: 2,
        max_retries_down: 3,
        http_method: None,
        url_path: Some("/healthz".into()),
        expected_codes: Some("200-204,301".into()),
    }
}

fn config() -> ProxyConfig {
    ProxyConfig {
        listeners: vec![
            listener("tcp", ListenerProtocol::Tcp, "0.0.0.0:80", Some("tcp-pool")),
            listener("udp", ListenerProtocol::Udp, "0.0.0.0:80", Some("udp-pool")),
            listener(
                "web",
                ListenerProtocol::Http,
                "10.0.0.5:8080",
                Some("web-pool"),
            ),
        ],
        pools: vec![
            pool("tcp-pool", PoolProtocol::Tcp),
            pool("udp-pool", PoolProtocol::Udp),
            pool("web-pool", PoolProtocol::Http),
        ],
    }
}

fn policy(id: &str, action: L7Action, rules: Vec<L7Rule>) -> L7Policy {
    L7Policy {
        id: id.into(),
        action,
        position: 1,
        redirect_pool_id: None,
        redirect_url: None,
        redirect_prefix: None,
        redirect_http_code: None,
        rules,
    }
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

#[test]
fn a_good_configuration_validates_and_compiles() {
    let mut config = config();
    config.pools[2].health_monitor = Some(http_monitor());
    let compiled = CompiledConfig::compile(&config).unwrap();
    let codes = compiled.pools[2].expected_codes.as_ref().unwrap();
    assert!(codes.contains(200) && codes.contains(204) && codes.contains(301));
    assert!(!codes.contains(205) && !codes.contains(300));
}

#[test]
fn json_uses_camel_case_octavia_enums_and_defaults() {
    let text = r#"{
        "listeners": [{"id": "l", "protocol": "TERMINATED_HTTPS", "bind": "127.0.0.1:443",
                       "insertHeaders": {"X-Forwarded-For": true},
                       "tls": {"certificatePem": "c", "privateKeyPem": "k"},
                       "l7Policies": [{"id": "p", "action": "REDIRECT_PREFIX",
                          "redirectPrefix": "https://example.com",
                          "rules": [{"type": "HOST_NAME", "compareType": "ENDS_WITH",
                                     "value": ".org", "invert": true}]}]}],
        "pools": [{"id": "p", "protocol": "HTTP", "lbAlgorithm": "LEAST_CONNECTIONS",
                   "sessionPersistence": {"type": "APP_COOKIE", "cookieName": "JSESSIONID"},
                   "members": [{"id": "m", "address": "::1", "protocolPort": 80}],
                   "healthMonitor": {"type": "UDP-CONNECT", "delayMs": 10, "timeoutMs": 5,
                                     "maxRetries": 1}}]
    }"#;
    let config: ProxyConfig = serde_json::from_str(text).unwrap();
    let listener = &config.listeners[0];
    assert_eq!(listener.protocol, ListenerProtocol::TerminatedHttps);
    assert_eq!(listener.timeout_client_data, 50_000);
    assert_eq!(listener.timeout_member_connect, 5_000);
    assert!(listener.insert_headers.x_forwarded_for);
    assert!(listener.l7_policies[0].rules[0].invert);
    let pool = &config.pools[0];
    assert_eq!(pool.lb_algorithm, LbAlgorithm::LeastConnections);
    assert_eq!(pool.members[0].weight, 1);
    assert!(pool.members[0].admin_state_up);
    let monitor = pool.health_monitor.as_ref().unwrap();
    assert_eq!(monitor.monitor_type, MonitorType::UdpConnect);
    assert_eq!(monitor.max_retries_down, 3);

    let unknown = r#"{"listeners": [], "pools": [], "loadbalancer": 1}"#;
    assert!(serde_json::from_str::<ProxyConfig>(unknown).is_err());
    let unknown_member_field = r#"{"pools": [{"id": "p", "protocol": "TCP", "members": [{"id": "m", "address": "::1", "protocolPort": 1, "wieght": 2}]}]}"#;
    assert!(serde_json::from_str::<ProxyConfig>(unknown_member_field).is_err());
}

#[test]
fn tls_private_key_is_not_printed_by_debug() {
    let certificate = TlsCertificate {
        certificate_pem: "CERT".into(),
        private_key_pem: "SECRET".into(),
    };
    assert!(!format!("{certificate:?}").contains("SECRET"));
}

#[test]
fn port_clashes_name_both_listeners() {
    let mut config = config();
    config.listeners.push(listener(
        "again",
        ListenerProtocol::Https,
        "10.0.0.9:80",
        None,
    ));
    let error = config.validate().unwrap_err();
    assert!(
        matches!(&error, ConfigError::PortClash { listener, other, .. } if listener == "again" && other == "tcp"),
        "{error}"
    );

    // Different addresses, or TCP beside UDP, or ephemeral ports, do not clash.
    let mut config = self::config();
    config.listeners[0].bind = "10.0.0.1:80".parse().unwrap();
    config.listeners.push(listener(
        "other-ip",
        ListenerProtocol::Tcp,
        "10.0.0.2:80",
        None,
    ));
    config
        .listeners
        .push(listener("e1", ListenerProtocol::Tcp, "127.0.0.1:0", None));
    config
        .listeners
        .push(listener("e2", ListenerProtocol::Tcp, "127.0.0.1:0", None));
    config.validate().unwrap();
}

#[test]
fn unknown_pools_and_duplicate_ids_are_refused() {
    let mut config = config();
    config.listeners[0].default_pool_id = Some("nope".into());
    assert!(matches!(
        config.validate().unwrap_err(),
        ConfigError::UnknownPool { listener, pool } if listener == "tcp" && pool == "nope"
    ));

    let mut config = self::config();
    config.pools[0].members[1].id = "m1".into();
    assert!(matches!(
        config.validate().unwrap_err(),
        ConfigError::DuplicateId { kind: "member", id } if id == "m1"
    ));

    for (kind, empty) in [
        ("listener", {
            let mut config = self::config();
            config.listeners[0].id.clear();
            config
        }),
        ("member", {
            let mut config = self::config();
            config.pools[0].members[0].id.clear();
            config
        }),
    ] {
        let error = empty.validate().unwrap_err();
        assert!(
            matches!(error, ConfigError::EmptyId { kind: found } if found == kind),
            "{error:?}"
        );
        assert_eq!(error.to_string(), format!("{kind} id must not be empty"));
    }

    let mut config = self::config();
    config.pools[0].members[1].protocol_port = 8001;
    assert!(matches!(
        config.validate().unwrap_err(),
        ConfigError::InvalidMember { member, .. } if member == "m2"
    ));
}

#[test]
fn listener_and_pool_protocols_must_fit() {
    let cases = [
        (ListenerProtocol::Udp, PoolProtocol::Tcp, false),
        (ListenerProtocol::Tcp, PoolProtocol::Udp, false),
        (ListenerProtocol::Http, PoolProtocol::Tcp, false),
        (
            ListenerProtocol::TerminatedHttps,
            PoolProtocol::Https,
            false,
        ),
        (ListenerProtocol::Https, PoolProtocol::Http, false),
        (ListenerProtocol::Udp, PoolProtocol::ProxyV2, false),
        (ListenerProtocol::Tcp, PoolProtocol::Http, true),
        (ListenerProtocol::Tcp, PoolProtocol::Proxy, true),
        (
            ListenerProtocol::TerminatedHttps,
            PoolProtocol::ProxyV2,
            true,
        ),
        (ListenerProtocol::Udp, PoolProtocol::Udp, true),
        (ListenerProtocol::Tcp, PoolProtocol::Https, true),
        (ListenerProtocol::Https, PoolProtocol::Tcp, true),
        (ListenerProtocol::Http, PoolProtocol::Http, true),
    ];
    for (listener_protocol, pool_protocol, ok) in cases {
        let config = ProxyConfig {
            listeners: vec![listener("l", listener_protocol, "127.0.0.1:1", Some("p"))],
            pools: vec![pool("p", pool_protocol)],
        };
        let result = match listener_protocol {
            // A TERMINATED_HTTPS listener would fail on its missing certificate first.
            ListenerProtocol::TerminatedHttps => {
                check_pool_reference(&config.listeners[0], "p", &config)
            }
            _ => config.validate(),
        };
        match (ok, result) {
            (true, Ok(())) => {}
            (false, Err(ConfigError::ProtocolMismatch { .. })) => {}
            (ok, result) => panic!("{listener_protocol:?} → {pool_protocol:?}: {ok} {result:?}"),
        }
    }
}

#[test]
fn listener_limits_timeouts_and_headers_are_checked() {
    let mut config = config();
    config.listeners[0].connection_limit = Some(0);
    assert!(matches!(
        config.validate(),
        Err(ConfigError::InvalidListener { .. })
    ));
    config.listeners[0].connection_limit = Some(-1);
    config.validate().unwrap();
    assert_eq!(config.listeners[0].connection_limit(), None);
    config.listeners[0].connection_limit = Some(10);
    assert_eq!(config.listeners[0].connection_limit(), Some(10));
    // Beyond the ceiling a limit would only be a mistake, and a huge one used to reach
    // `Semaphore::new` and panic mid-reconfigure.
    config.listeners[0].connection_limit = Some(crate::config::MAX_CONNECTION_LIMIT);
    config.validate().unwrap();
    for limit in [
        crate::config::MAX_CONNECTION_LIMIT + 1,
        1 << 62,
        i64::MAX,
        -2,
    ] {
        config.listeners[0].connection_limit = Some(limit);
        assert!(
            matches!(config.validate(), Err(ConfigError::InvalidListener { .. })),
            "{limit}"
        );
    }
    config.listeners[0].connection_limit = None;

    // UDP sessions are bounded even without a limit, and never beyond the ceiling.
    let udp = &mut config.listeners[1];
    assert_eq!(
        udp.udp_session_limit(),
        crate::config::DEFAULT_UDP_SESSION_LIMIT
    );
    udp.connection_limit = Some(-1);
    assert_eq!(
        udp.udp_session_limit(),
        crate::config::DEFAULT_UDP_SESSION_LIMIT
    );
    udp.connection_limit = Some(5);
    assert_eq!(udp.udp_session_limit(), 5);
    udp.connection_limit = Some(crate::config::MAX_CONNECTION_LIMIT);
    assert_eq!(udp.udp_session_limit(), crate::config::MAX_UDP_SESSIONS);
    udp.connection_limit = None;

    config.listeners[0].timeout_client_data = crate::config::MAX_TIMEOUT_MS;
    config.validate().unwrap();
    config.listeners[0].timeout_client_data = crate::config::MAX_TIMEOUT_MS + 1;
    assert!(matches!(
        config.validate(),
        Err(ConfigError::InvalidListener { .. })
    ));
    config.listeners[0].timeout_client_data = 50_000;

    config.listeners[0].timeout_member_connect = 0;
    assert!(matches!(
        config.validate(),
        Err(ConfigError::InvalidListener { .. })
    ));

    let mut config = self::config();
    config.listeners[0].insert_headers.x_forwarded_for = true;
    assert!(matches!(
        config.validate(),
        Err(ConfigError::InvalidListener { .. })
    ));
    config.listeners[0].insert_headers.x_forwarded_for = false;
    config.listeners[2].insert_headers.x_forwarded_for = true;
    config.validate().unwrap();
}

#[test]
fn certificates_are_required_and_must_parse_and_match() {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let other = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let mut config = config();
    config.listeners[2].protocol = ListenerProtocol::TerminatedHttps;
    assert!(matches!(
        config.validate(),
        Err(ConfigError::MissingCertificate { listener }) if listener == "web"
    ));

    config.listeners[2].tls = Some(TlsCertificate {
        certificate_pem: generated.cert.pem(),
        private_key_pem: generated.signing_key.serialize_pem(),
    });
    let compiled = CompiledConfig::compile(&config).unwrap();
    assert!(compiled.listeners[2].tls.is_some());

    config.listeners[2].tls = Some(TlsCertificate {
        certificate_pem: generated.cert.pem(),
        private_key_pem: other.signing_key.serialize_pem(),
    });
    assert!(matches!(
        config.validate(),
        Err(ConfigError::InvalidCertificate {
            source: TlsConfigError::Refused(_),
            ..
        })
    ));

    config.listeners[2].tls = Some(TlsCertificate {
        certificate_pem: "not a pem".into(),
        private_key_pem: generated.signing_key.serialize_pem(),
    });
    assert!(matches!(
        config.validate(),
        Err(ConfigError::InvalidCertificate {
            source: TlsConfigError::NoCertificate,
            ..
        })
    ));

    let mut config = self::config();
    config.listeners[0].tls = Some(TlsCertificate {
        certificate_pem: generated.cert.pem(),
        private_key_pem: generated.signing_key.serialize_pem(),
    });
    assert!(matches!(
        config.validate(),
        Err(ConfigError::InvalidListener { .. })
    ));
}

#[test]
fn tls_settings_and_client_certificates_need_a_terminated_listener_and_must_make_sense() {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let mut config = config();
    let refused = |config: &ProxyConfig, wanted: &str| match config.validate() {
        Err(ConfigError::InvalidListener { listener, problem }) => {
            assert_eq!(listener, "web");
            assert!(problem.contains(wanted), "{problem}");
        }
        other => panic!("expected {wanted:?}: {other:?}"),
    };
    // On an HTTP listener: no X-SSL-* field, TLS setting or client authentication.
    config.listeners[2].insert_headers.x_ssl_client_dn = true;
    refused(
        &config,
        "X-SSL-* insert headers need a TERMINATED_HTTPS listener",
    );
    config.listeners[2].insert_headers.x_ssl_client_dn = false;
    config.listeners[2].tls_settings.versions = vec![TlsVersion::Tls13];
    refused(&config, "TLS settings and client authentication need");
    config.listeners[2].tls_settings = TlsSettings::default();
    config.listeners[2].client_authentication = Some(ClientAuthentication {
        mandatory: false,
        ca_pem: generated.cert.pem(),
        crl_pem: None,
    });
    refused(&config, "TLS settings and client authentication need");

    // On a TERMINATED_HTTPS one, all of it, when it makes sense.
    config.listeners[2].protocol = ListenerProtocol::TerminatedHttps;
    config.listeners[2].tls = Some(TlsCertificate {
        certificate_pem: generated.cert.pem(),
        private_key_pem: generated.signing_key.serialize_pem(),
    });
    config.listeners[2].insert_headers.x_ssl_client_dn = true;
    config.listeners[2].tls_settings.versions = vec![TlsVersion::Tls13];
    config.validate().unwrap();
    config.listeners[2].tls_settings.alpn_protocols = vec!["h3".into()];
    refused(&config, "ALPN protocol \"h3\"");
    config.listeners[2].tls_settings.alpn_protocols = Vec::new();
    config.listeners[2].tls_settings.ciphers = Some("RC4-MD5".into());
    refused(&config, "names none of the cipher suites");
    config.listeners[2].tls_settings.ciphers = None;
    config.listeners[2].client_authentication = Some(ClientAuthentication {
        mandatory: true,
        ca_pem: "not a certificate".into(),
        crl_pem: None,
    });
    refused(&config, "the CA PEM holds no certificate");

    // The JSON leaves out what takes its default, so older proxies read it.
    let listener = &mut config.listeners[2];
    listener.client_authentication = None;
    listener.insert_headers = InsertHeaders::default();
    listener.tls_settings = TlsSettings::default();
    let json = serde_json::to_string(listener).unwrap();
    for newer in ["tlsSettings", "clientAuthentication", "X-SSL"] {
        assert!(!json.contains(newer), "{json}");
    }
}

#[test]
fn l7_policies_are_checked_sorted_and_compiled() {
    let mut config = config();
    let mut first = policy(
        "to-api",
        L7Action::RedirectToPool,
        vec![rule(L7RuleType::Path, L7CompareType::StartsWith, "/api")],
    );
    first.redirect_pool_id = Some("web-pool".into());
    first.position = 2;
    let mut second = policy(
        "old",
        L7Action::RedirectToUrl,
        vec![rule(
            L7RuleType::HostName,
            L7CompareType::EqualTo,
            "Old.Example.com",
        )],
    );
    second.redirect_url = Some("https://new.example.com/".into());
    second.redirect_http_code = Some(301);
    let empty = policy("empty", L7Action::Reject, vec![]);
    config.listeners[2].l7_policies = vec![first, second, empty];
    let compiled = CompiledConfig::compile(&config).unwrap();
    let policies = &compiled.listeners[2].policies;
    let ids: Vec<_> = policies.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(
        ids,
        ["old", "to-api"],
        "sorted by position, empty policy dropped"
    );
    assert_eq!(
        policies[0].action,
        PolicyAction::RedirectToUrl {
            url: "https://new.example.com/".into(),
            code: 301
        }
    );
    assert!(policies[0].rules[0].matcher.matches("old.example.com"));

    let mut bad = config.clone();
    bad.listeners[2].l7_policies[0].rules[0] =
        rule(L7RuleType::Path, L7CompareType::Regex, "^/(api");
    assert!(matches!(
        bad.validate(),
        Err(ConfigError::InvalidRegex { policy, pattern, .. }) if policy == "to-api" && pattern == "^/(api"
    ));

    let mut bad = config.clone();
    bad.listeners[2].l7_policies[0].redirect_pool_id = Some("tcp-pool".into());
    assert!(matches!(
        bad.validate(),
        Err(ConfigError::ProtocolMismatch { .. })
    ));

    let mut bad = config.clone();
    bad.listeners[2].l7_policies[1].redirect_http_code = Some(200);
    assert!(matches!(
        bad.validate(),
        Err(ConfigError::InvalidPolicy { .. })
    ));

    let mut bad = config.clone();
    bad.listeners[2].l7_policies[1].redirect_url = Some("/relative".into());
    assert!(matches!(
        bad.validate(),
        Err(ConfigError::InvalidPolicy { .. })
    ));

    let mut bad = config.clone();
    bad.listeners[2].l7_policies[0].rules[0] =
        rule(L7RuleType::Header, L7CompareType::EqualTo, "x");
    assert!(matches!(
        bad.validate(),
        Err(ConfigError::InvalidPolicy { .. })
    ));

    let mut bad = config.clone();
    bad.listeners[2].l7_policies[0].rules[0] =
        rule(L7RuleType::FileType, L7CompareType::Contains, "jpg");
    assert!(matches!(
        bad.validate(),
        Err(ConfigError::InvalidPolicy { .. })
    ));

    let mut bad = config;
    let moved = bad.listeners[2].l7_policies.remove(0);
    bad.listeners[0].l7_policies.push(moved);
    assert!(matches!(
        bad.validate(),
        Err(ConfigError::InvalidListener { .. })
    ));
}

#[test]
fn monitors_are_checked() {
    let mut config = config();
    let mut monitor = http_monitor();
    monitor.timeout_ms = 2000;
    config.pools[2].health_monitor = Some(monitor);
    assert!(matches!(
        config.validate(),
        Err(ConfigError::MonitorTimeoutExceedsDelay { pool, timeout_ms: 2000, delay_ms: 1000 }) if pool == "web-pool"
    ));

    for codes in ["", "abc", "200-", "204-200", "99", "600", "200,,202"] {
        let mut monitor = http_monitor();
        monitor.expected_codes = Some(codes.into());
        config.pools[2].health_monitor = Some(monitor);
        assert!(
            matches!(
                config.validate(),
                Err(ConfigError::InvalidExpectedCodes { .. })
            ),
            "{codes:?}"
        );
    }

    let mut monitor = http_monitor();
    monitor.monitor_type = MonitorType::UdpConnect;
    config.pools[2].health_monitor = Some(monitor);
    assert!(matches!(
        config.validate(),
        Err(ConfigError::InvalidMonitor { .. })
    ));

    let mut monitor = http_monitor();
    monitor.delay_ms = u64::MAX;
    config.pools[2].health_monitor = Some(monitor);
    assert!(matches!(
        config.validate(),
        Err(ConfigError::InvalidMonitor { .. })
    ));

    let mut monitor = http_monitor();
    monitor.max_retries = 0;
    config.pools[2].health_monitor = Some(monitor);
    assert!(matches!(
        config.validate(),
        Err(ConfigError::InvalidMonitor { .. })
    ));

    let mut monitor = http_monitor();
    monitor.http_method = Some("FETCH".into());
    config.pools[2].health_monitor = Some(monitor);
    assert!(matches!(
        config.validate(),
        Err(ConfigError::InvalidMonitor { .. })
    ));
}

#[test]
fn members_and_persistence_are_checked() {
    let mut config = config();
    config.pools[0].members[0].weight = 257;
    assert!(matches!(
        config.validate(),
        Err(ConfigError::InvalidMember { pool, member, .. }) if pool == "tcp-pool" && member == "m1"
    ));
    config.pools[0].members[0].weight = 0;
    config.validate().unwrap();

    let persistence = |persistence_type, cookie_name: Option<&str>| SessionPersistence {
        persistence_type,
        cookie_name: cookie_name.map(Into::into),
        persistence_timeout_ms: None,
    };
    let mut config = self::config();
    config.pools[2].session_persistence = Some(persistence(PersistenceType::AppCookie, None));
    assert!(matches!(
        config.validate(),
        Err(ConfigError::InvalidPool { .. })
    ));
    config.pools[2].session_persistence =
        Some(persistence(PersistenceType::AppCookie, Some("bad name")));
    assert!(matches!(
        config.validate(),
        Err(ConfigError::InvalidPool { .. })
    ));
    config.pools[2].session_persistence =
        Some(persistence(PersistenceType::AppCookie, Some("JSESSIONID")));
    config.validate().unwrap();
    config.pools[0].session_persistence = Some(persistence(PersistenceType::HttpCookie, None));
    assert!(matches!(
        config.validate(),
        Err(ConfigError::InvalidPool { pool, .. }) if pool == "tcp-pool"
    ));
    config.pools[0].session_persistence = Some(persistence(PersistenceType::SourceIp, None));
    config.validate().unwrap();

    // With HTTP_COOKIE persistence member ids become cookie values.
    config.pools[2].session_persistence = Some(persistence(PersistenceType::HttpCookie, None));
    config.validate().unwrap();
    for id in ["pod a", "m;1", "m,1", "\"m\"", "m\\1", "pöd"] {
        config.pools[2].members[0].id = id.into();
        assert!(
            matches!(
                config.validate(),
                Err(ConfigError::InvalidMember { pool, .. }) if pool == "web-pool"
            ),
            "{id:?}"
        );
    }
    config.pools[2].session_persistence = None;
    config.validate().unwrap();
}

#[test]
fn errors_read_as_sentences_naming_the_object() {
    let mut config = config();
    config.listeners[1].default_pool_id = Some("tcp-pool".into());
    let message = config.validate().unwrap_err().to_string();
    assert_eq!(
        message,
        r#"listener "udp" (UDP) cannot send to pool "tcp-pool" (TCP)"#
    );
}
