//! L7 policy evaluation, with no I/O: which way a request goes. Policies are tried by
//! position and the first whose rules all match decides; a rule whose subject is missing
//! (no such header or cookie) does not match, and `invert` flips a rule's result after
//! that, as haproxy's negated ACLs do.
//!
//! Subjects: PATH is the path without the query; HOST_NAME the Host header (or the
//! HTTP/2 authority) without its port, lower-cased, compared without regard to case
//! (regexes too, as Octavia's `req.hdr(host) -i`); HEADER every value of the named
//! header, each field split at commas as haproxy's `req.hdr()` does, and the rule matches
//! when any value does; COOKIE the value of the named cookie; FILE_TYPE with EQUAL_TO the
//! extension of the path's last segment (`/img/a.JPG` → `JPG`, compared without regard to
//! case; a leading dot in the rule's value is ignored), and with REGEX the whole path, as
//! Octavia renders it (`path_end -m reg`), so a migrated `\.(js|css)$` keeps working.

use http::header::{COOKIE, HOST};

use super::fields::{Fields, RequestView};
use crate::config::{CompiledPolicy, CompiledRule, L7RuleType, Matcher, PolicyAction};

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route<'a> {
    /// A policy sent it to this pool.
    Pool(&'a str),
    /// No policy matched: the listener's default pool.
    Default,
    Redirect {
        location: String,
        code: u16,
    },
    Reject,
}

pub(crate) fn route<'a>(policies: &'a [CompiledPolicy], request: &impl RequestView) -> Route<'a> {
    let Some(policy) = policies
        .iter()
        .find(|policy| policy.rules.iter().all(|rule| rule_matches(rule, request)))
    else {
        return Route::Default;
    };
    tracing::trace!(
        policy = policy.id,
        path = request.path(),
        "l7 policy matched"
    );
    match &policy.action {
        PolicyAction::Pool(pool) => Route::Pool(pool),
        PolicyAction::Reject => Route::Reject,
        PolicyAction::RedirectToUrl { url, code } => Route::Redirect {
            location: url.clone(),
            code: *code,
        },
        PolicyAction::RedirectPrefix { prefix, code } => Route::Redirect {
            location: format!("{prefix}{}", request.path_and_query()),
            code: *code,
        },
    }
}

fn rule_matches(rule: &CompiledRule, request: &impl RequestView) -> bool {
    let matched = match (rule.rule_type, &rule.matcher) {
        (L7RuleType::Header, matcher) => rule.header.as_ref().is_some_and(|name| {
            request
                .fields()
                .all(name)
                .flat_map(|field| field.split(|byte| *byte == b','))
                .any(|value| matcher.matches(String::from_utf8_lossy(value).trim()))
        }),
        (L7RuleType::FileType, Matcher::EqualTo(value)) => file_extension(request.path())
            .is_some_and(|extension| extension.eq_ignore_ascii_case(value.trim_start_matches('.'))),
        (L7RuleType::FileType, matcher) => matcher.matches(request.path()),
        (L7RuleType::Path, matcher) => matcher.matches(request.path()),
        (L7RuleType::HostName, matcher) => {
            host_name(request).is_some_and(|host| matcher.matches(&host))
        }
        (L7RuleType::Cookie, matcher) => rule
            .cookie
            .as_deref()
            .and_then(|name| cookie(request, name))
            .is_some_and(|value| matcher.matches(value)),
    };
    matched != rule.invert
}

/// The extension of a path's last segment: `/img/a.JPG` → `JPG`.
fn file_extension(path: &str) -> Option<&str> {
    let last_segment = path.rsplit('/').next()?;
    let (_, extension) = last_segment.rsplit_once('.')?;
    Some(extension)
}

/// The request's host without its port, lower-cased.
pub(crate) fn host_name(request: &impl RequestView) -> Option<String> {
    let host = match request.fields().first(&HOST) {
        Some(value) => std::str::from_utf8(value).ok()?,
        None => request.authority()?,
    };
    let without_port = if let Some(rest) = host.strip_prefix('[') {
        // An IPv6 literal: keep the brackets, drop what follows them.
        format!("[{}]", rest.split(']').next()?)
    } else {
        host.split(':').next()?.to_owned()
    };
    Some(without_port.to_ascii_lowercase())
}

/// The value of cookie `name` in the request's Cookie headers (HTTP/2 may split them).
pub(crate) fn cookie<'a>(request: &'a impl RequestView, name: &str) -> Option<&'a str> {
    request
        .fields()
        .all(&COOKIE)
        .filter_map(|value| std::str::from_utf8(value).ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key.trim() == name).then(|| value.trim().trim_matches('"'))
        })
}

#[cfg(test)]
mod tests {
    use http::request::Parts;

    use super::*;
    use crate::config::{
        CompiledConfig, InsertHeaders, L7Action, L7CompareType, L7Policy, L7Rule, Listener,
        ListenerProtocol, Pool, PoolProtocol, ProxyConfig,
    };

    fn rule(
        rule_type: L7RuleType,
        compare_type: L7CompareType,
        key: Option<&str>,
        value: &str,
    ) -> L7Rule {
        L7Rule {
            rule_type,
            compare_type,
            key: key.map(Into::into),
            value: value.into(),
            invert: false,
        }
    }

    fn policy(id: &str, position: u32, action: L7Action, rules: Vec<L7Rule>) -> L7Policy {
        L7Policy {
            id: id.into(),
            action,
            position,
            redirect_pool_id: (action == L7Action::RedirectToPool).then(|| "api".into()),
            redirect_url: (action == L7Action::RedirectToUrl)
                .then(|| "https://new.example/".into()),
            redirect_prefix: (action == L7Action::RedirectPrefix)
                .then(|| "https://secure.example/".into()),
            redirect_http_code: None,
            rules,
        }
    }

    fn compile(policies: Vec<L7Policy>) -> Vec<CompiledPolicy> {
        let pool = |id: &str| Pool {
            id: id.into(),
            protocol: PoolProtocol::Http,
            lb_algorithm: Default::default(),
            session_persistence: None,
            members: vec![],
            health_monitor: None,
            tls_enabled: false,
            member_tls: Default::default(),
        };
        let config = ProxyConfig {
            listeners: vec![Listener {
                id: "l".into(),
                protocol: ListenerProtocol::Http,
                bind: "127.0.0.1:0".parse().unwrap(),
                connection_limit: None,
                timeout_client_data: 1,
                timeout_member_connect: 1,
                timeout_member_data: 1,
                insert_headers: InsertHeaders::default(),
                default_pool_id: Some("web".into()),
                l7_policies: policies,
                tls: None,
                sni: Vec::new(),
                tls_settings: Default::default(),
                client_authentication: None,
            }],
            pools: vec![pool("web"), pool("api")],
        };
        CompiledConfig::compile(&config)
            .unwrap()
            .listeners
            .remove(0)
            .policies
    }

    fn request(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut builder = http::Request::builder().uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn first_matching_policy_by_position_wins_and_rules_are_anded() {
        let policies = compile(vec![
            policy(
                "api-and-json",
                2,
                L7Action::RedirectToPool,
                vec![
                    rule(L7RuleType::Path, L7CompareType::StartsWith, None, "/api"),
                    rule(
                        L7RuleType::Header,
                        L7CompareType::EqualTo,
                        Some("Accept"),
                        "application/json",
                    ),
                ],
            ),
            policy(
                "block-admin",
                1,
                L7Action::Reject,
                vec![rule(
                    L7RuleType::Path,
                    L7CompareType::Regex,
                    None,
                    "^/(api/)?admin",
                )],
            ),
        ]);
        let json = [("accept", "application/json")];
        assert_eq!(
            route(&policies, &request("/api/users", &json)),
            Route::Pool("api")
        );
        assert_eq!(
            route(&policies, &request("/api/users", &[])),
            Route::Default
        );
        assert_eq!(
            route(&policies, &request("/api/admin", &json)),
            Route::Reject
        );
        assert_eq!(route(&policies, &request("/", &json)), Route::Default);
    }

    #[test]
    fn hosts_cookies_file_types_and_invert() {
        let mut not_example = rule(
            L7RuleType::HostName,
            L7CompareType::EndsWith,
            None,
            ".Example.com",
        );
        not_example.invert = true;
        let policies = compile(vec![
            policy("foreign", 1, L7Action::Reject, vec![not_example]),
            policy(
                "beta",
                2,
                L7Action::RedirectToPool,
                vec![rule(
                    L7RuleType::Cookie,
                    L7CompareType::EqualTo,
                    Some("beta"),
                    "yes",
                )],
            ),
            policy(
                "images",
                3,
                L7Action::RedirectToUrl,
                vec![rule(
                    L7RuleType::FileType,
                    L7CompareType::EqualTo,
                    None,
                    ".jpg",
                )],
            ),
            policy(
                "scripts",
                4,
                L7Action::RedirectPrefix,
                vec![rule(
                    L7RuleType::FileType,
                    L7CompareType::Regex,
                    None,
                    r"\.(js|css)$",
                )],
            ),
        ]);
        let host = |name: &'static str| ("host", name);
        assert_eq!(
            route(&policies, &request("/", &[host("evil.org")])),
            Route::Reject
        );
        assert_eq!(
            route(&policies, &request("/", &[host("WWW.example.com:8080")])),
            Route::Default
        );
        let cookies = [host("www.example.com"), ("cookie", "a=1; beta=yes")];
        assert_eq!(
            route(&policies, &request("/", &cookies)),
            Route::Pool("api")
        );
        let other = [host("www.example.com"), ("cookie", "beta=no")];
        assert_eq!(route(&policies, &request("/", &other)), Route::Default);
        assert_eq!(
            route(
                &policies,
                &request("/img/cat.JPG", &[host("a.example.com")])
            ),
            Route::Redirect {
                location: "https://new.example/".into(),
                code: 302
            }
        );
        assert_eq!(
            route(
                &policies,
                &request("/app/main.js?v=2", &[host("a.example.com")])
            ),
            Route::Redirect {
                location: "https://secure.example/app/main.js?v=2".into(),
                code: 302
            }
        );
        assert_eq!(
            route(
                &policies,
                &request("/app/main.jsx", &[host("a.example.com")])
            ),
            Route::Default
        );
        // HTTP/2 carries the host in the authority.
        assert_eq!(
            route(&policies, &request("http://b.example.com/x", &[])),
            Route::Default
        );
    }

    #[test]
    fn header_rules_see_every_value_and_host_regexes_ignore_case() {
        let policies = compile(vec![
            policy(
                "mobile",
                1,
                L7Action::Reject,
                vec![rule(
                    L7RuleType::Header,
                    L7CompareType::EqualTo,
                    Some("X-Client"),
                    "mobile",
                )],
            ),
            policy(
                "api-host",
                2,
                L7Action::RedirectToPool,
                vec![rule(
                    L7RuleType::HostName,
                    L7CompareType::Regex,
                    None,
                    r"^API\.",
                )],
            ),
        ]);
        for headers in [
            &[("x-client", "desktop"), ("x-client", "mobile")][..],
            &[("x-client", "desktop, mobile")][..],
        ] {
            assert_eq!(
                route(&policies, &request("/", headers)),
                Route::Reject,
                "{headers:?}"
            );
        }
        assert_eq!(
            route(&policies, &request("/", &[("x-client", "mobile-ish")])),
            Route::Default
        );
        assert_eq!(
            route(&policies, &request("/", &[("host", "Api.Example.com")])),
            Route::Pool("api")
        );
    }

    proptest::proptest! {
        #[test]
        fn hosts_and_cookies_of_any_bytes_are_read_without_panic(
            host in proptest::collection::vec(0x20u8..=0xff, 0..40),
            cookie_field in proptest::collection::vec(0x20u8..=0xff, 0..60),
            name in "[A-Za-z]{1,4}",
        ) {
            let mut parts = request("/", &[]);
            if let Ok(value) = http::HeaderValue::from_bytes(&host) {
                parts.headers.insert(HOST, value);
            }
            if let Ok(value) = http::HeaderValue::from_bytes(&cookie_field) {
                parts.headers.insert(COOKIE, value);
            }
            if let Some(host) = host_name(&parts) {
                proptest::prop_assert_eq!(host.to_ascii_lowercase(), host.clone());
                proptest::prop_assert!(host.starts_with('[') || !host.contains(':'));
            }
            if let Some(value) = cookie(&parts, &name) {
                proptest::prop_assert!(!value.contains(';'));
            }
        }
    }

    #[test]
    fn host_names_drop_ports_and_keep_ipv6_brackets() {
        assert_eq!(
            host_name(&request("/", &[("host", "[::1]:8080")])).as_deref(),
            Some("[::1]")
        );
        assert_eq!(
            host_name(&request("/", &[("host", "Example.COM")])).as_deref(),
            Some("example.com")
        );
        assert_eq!(host_name(&request("/", &[])), None);
    }
}
