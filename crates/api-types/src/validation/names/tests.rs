//! Table-driven tests for the name checks, with the apimachinery wording.

use super::*;

const SUBDOMAIN_REGEX_MESSAGE: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_REGEX_MESSAGE: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const NAME_PART_REGEX_MESSAGE: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE_REGEX_MESSAGE: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

#[test]
fn dns1123_subdomain() {
    let long_valid = format!(
        "{}.{}.{}.{}",
        "a".repeat(63),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(61)
    );
    assert_eq!(long_valid.len(), 253);
    let too_long = format!("{long_valid}x");
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("a", vec![]),
        ("example.com", vec![]),
        ("web-1", vec![]),
        ("1.2.3", vec![]),
        (&long_valid, vec![]),
        ("", vec![SUBDOMAIN_REGEX_MESSAGE]),
        ("Web", vec![SUBDOMAIN_REGEX_MESSAGE]),
        ("-web", vec![SUBDOMAIN_REGEX_MESSAGE]),
        ("web-", vec![SUBDOMAIN_REGEX_MESSAGE]),
        ("a..b", vec![SUBDOMAIN_REGEX_MESSAGE]),
        (".a", vec![SUBDOMAIN_REGEX_MESSAGE]),
        ("a_b", vec![SUBDOMAIN_REGEX_MESSAGE]),
        ("ü", vec![SUBDOMAIN_REGEX_MESSAGE]),
        (&too_long, vec!["must be no more than 253 characters"]),
    ];
    for (input, want) in cases {
        assert_eq!(is_dns1123_subdomain(input), want, "input {input:?}");
    }
}

#[test]
fn dns1123_label() {
    let max = "a".repeat(63);
    let over = "a".repeat(64);
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("default", vec![]),
        ("kube-system", vec![]),
        ("0", vec![]),
        (&max, vec![]),
        (&over, vec!["must be no more than 63 characters"]),
        ("a.b", vec!["must not contain dots"]),
        ("A", vec![LABEL_REGEX_MESSAGE]),
        ("", vec![LABEL_REGEX_MESSAGE]),
        ("a-", vec![LABEL_REGEX_MESSAGE]),
    ];
    for (input, want) in cases {
        assert_eq!(is_dns1123_label(input), want, "input {input:?}");
    }
}

#[test]
fn dns1035_label() {
    assert!(is_dns1035_label("my-svc").is_empty());
    assert_eq!(
        is_dns1035_label("1svc"),
        vec![
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
        ]
    );
}

#[test]
fn qualified_name() {
    let long_name = "a".repeat(64);
    let cases: Vec<(String, Vec<String>)> = vec![
        ("app".into(), vec![]),
        ("App_1.x-y".into(), vec![]),
        ("example.com/app".into(), vec![]),
        ("app.kubernetes.io/name".into(), vec![]),
        ("".into(), vec!["name part must be non-empty".into(), NAME_PART_REGEX_MESSAGE.into()]),
        ("-app".into(), vec![NAME_PART_REGEX_MESSAGE.into()]),
        ("a b".into(), vec![NAME_PART_REGEX_MESSAGE.into()]),
        (long_name, vec!["name part must be no more than 63 characters".into()]),
        ("/app".into(), vec!["prefix part must be non-empty".into()]),
        (
            "Example.com/app".into(),
            vec![format!("prefix part {SUBDOMAIN_REGEX_MESSAGE}")],
        ),
        (
            "example.com/".into(),
            vec!["name part must be non-empty".into(), NAME_PART_REGEX_MESSAGE.into()],
        ),
        (
            "a/b/c".into(),
            vec!["a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')".into()],
        ),
    ];
    for (input, want) in cases {
        assert_eq!(is_qualified_name(&input), want, "input {input:?}");
    }
}

#[test]
fn label_value() {
    let over = "a".repeat(64);
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("", vec![]),
        ("web", vec![]),
        ("My_Value-1.2", vec![]),
        ("-web", vec![LABEL_VALUE_REGEX_MESSAGE]),
        ("a/b", vec![LABEL_VALUE_REGEX_MESSAGE]),
        (&over, vec!["must be no more than 63 characters"]),
    ];
    for (input, want) in cases {
        assert_eq!(is_valid_label_value(input), want, "input {input:?}");
    }
}

#[test]
fn config_map_key() {
    const REGEX: &str = "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')";
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("config.yaml", vec![]),
        ("KEY_NAME", vec![]),
        (".hidden", vec![]),
        ("", vec![REGEX]),
        ("a/b", vec![REGEX]),
        (".", vec!["must not be '.'"]),
        ("..", vec!["must not be '..'"]),
        ("..data", vec!["must not start with '..'"]),
    ];
    for (input, want) in cases {
        assert_eq!(is_config_map_key(input), want, "input {input:?}");
    }
}

#[test]
fn generate_name_prefixes_may_end_in_a_dash() {
    assert!(NameRule::Dns1123Subdomain.validate("web-", true).is_empty());
    assert!(
        !NameRule::Dns1123Subdomain
            .validate("web-", false)
            .is_empty()
    );
    assert!(NameRule::Dns1123Label.validate("x-", true).is_empty());
    assert!(!NameRule::Dns1035Label.validate("1x-", true).is_empty());
}
