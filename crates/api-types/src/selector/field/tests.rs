//! Table-driven tests for field selectors.

use std::collections::BTreeMap;

use super::*;

const VALID: &[(&str, &str)] = &[
    ("", ""),
    (",", ""),
    ("=", ""),
    ("metadata.name=web-1", "metadata.name=web-1"),
    ("metadata.name==web-1", "metadata.name=web-1"),
    ("status.phase!=Running", "status.phase!=Running"),
    (
        "status.phase=Running,spec.nodeName=node-1",
        "spec.nodeName=node-1,status.phase=Running",
    ),
    ("a=", "a="),
    ("=b", "=b"),
    ("a=b,,c=d", "a=b,c=d"),
    (r"a=x\,y", r"a=x\,y"),
    (r"a=x\=y", r"a=x\=y"),
    (r"a=x\\y", r"a=x\\y"),
    ("a=!b", "a=!b"),
    ("a!=!b", "a!=!b"),
    ("a!!=b", "a!!=b"),
    ("a = b", "a = b"),
    (r"a\,b=c", r"a\,b=c"),
    (r"a\=b", r"a\=b"),
    (r"a\==b", r"a\=b"),
    ("a==b,a=a", "a=a,a=b"),
    ("ünï=cödé", "ünï=cödé"),
];

#[test]
fn parses_valid_selectors_to_canonical_strings() {
    for (input, canonical) in VALID {
        let selector = FieldSelector::parse(input)
            .unwrap_or_else(|error| panic!("{input:?} should parse: {error}"));
        assert_eq!(selector.to_string(), *canonical, "input {input:?}");
        let reparsed = FieldSelector::parse(&selector.to_string()).expect("canonical form");
        assert_eq!(reparsed, selector, "input {input:?}");
    }
}

#[test]
fn keeps_values_unescaped() {
    let selector = FieldSelector::parse(r"a=x\,y\=z\\").expect("valid");
    assert_eq!(
        selector.requirements(),
        [FieldRequirement {
            field: "a".to_owned(),
            operator: FieldOperator::Equals,
            value: r"x,y=z\".to_owned(),
        }]
    );
}

#[test]
fn rejects_invalid_selectors_with_apimachinery_messages() {
    let cases = [
        ("a", "invalid selector: 'a'; can't understand 'a'"),
        ("b=c,a", "invalid selector: 'b=c,a'; can't understand 'a'"),
        ("z,a=b", "invalid selector: 'z,a=b'; can't understand 'z'"),
        (
            "a=b=c",
            "invalid field selector: unescaped character in value: 61",
        ),
        (
            "a!==c",
            "invalid field selector: unescaped character in value: 61",
        ),
        (
            r"a=b\n",
            r"invalid field selector: invalid escape sequence: \n",
        ),
        (
            r"a=b\!",
            r"invalid field selector: invalid escape sequence: \!",
        ),
        (
            r"a=b\",
            r"invalid field selector: invalid escape sequence: \",
        ),
    ];
    for (input, want) in cases {
        match FieldSelector::parse(input) {
            Ok(selector) => panic!("{input:?} parsed as {selector:?}"),
            Err(error) => assert_eq!(error.to_string(), want, "input {input:?}"),
        }
    }
}

#[test]
fn matches_fields() {
    let object = BTreeMap::from([
        ("metadata.name", "web-1"),
        ("status.phase", "Running"),
        ("spec.nodeName", ""),
    ]);
    let get = |field: &str| object.get(field).map(|value| (*value).to_owned());
    let cases = [
        ("", true),
        ("metadata.name=web-1", true),
        ("metadata.name=web-2", false),
        ("metadata.name!=web-2", true),
        ("status.phase=Running,metadata.name=web-1", true),
        ("status.phase=Running,metadata.name!=web-1", false),
        ("spec.nodeName=", true),
        ("spec.missing=", true),
        ("spec.missing!=", false),
        ("spec.missing=x", false),
    ];
    for (selector, want) in cases {
        let parsed = FieldSelector::parse(selector).expect("valid selector");
        assert_eq!(parsed.matches(get), want, "selector {selector:?}");
    }
}

#[test]
fn lists_fields_and_exact_matches() {
    let selector = FieldSelector::parse("status.phase!=Failed,metadata.name=web").expect("valid");
    assert_eq!(
        selector.fields().collect::<Vec<_>>(),
        ["metadata.name", "status.phase"]
    );
    assert_eq!(selector.requires_exact_match("metadata.name"), Some("web"));
    assert_eq!(selector.requires_exact_match("status.phase"), None);
}

#[test]
fn escapes_values() {
    assert_eq!(escape_field_value(r"a,b=c\d!e"), r"a\,b\=c\\d!e");
}
