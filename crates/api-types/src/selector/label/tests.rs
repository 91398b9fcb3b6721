//! Table-driven tests for label selector parsing, printing and matching.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;
use serde_json::json;

use super::*;

const NAME_PART_MESSAGE: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE_MESSAGE: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

/// Valid selectors and their canonical printed form.
const VALID: &[(&str, &str)] = &[
    ("", ""),
    ("   ", ""),
    ("a=b", "a=b"),
    ("a==b", "a==b"),
    ("a!=b", "a!=b"),
    ("a in (x,y)", "a in (x,y)"),
    ("a in (y,x,x)", "a in (x,y)"),
    ("a notin (x)", "a notin (x)"),
    ("a", "a"),
    ("!a", "!a"),
    (" a = b , c ", "a=b,c"),
    ("a\tin\t(\tx\t)", "a in (x)"),
    (
        "x in (foo,,baz),y,z notin ()",
        "x in (,baz,foo),y,z notin ()",
    ),
    ("x in (,a)", "x in (,a)"),
    ("x in (a,)", "x in (,a)"),
    ("x in (,,)", "x in ()"),
    ("b=1,a=2", "a=2,b=1"),
    ("a=b,a!=c", "a=b,a!=c"),
    ("a=", "a="),
    ("a==,b", "a==,b"),
    ("a in ()", "a in ()"),
    ("in in (in)", "in in (in)"),
    ("notin notin (notin,in)", "notin notin (in,notin)"),
    ("a=in", "a=in"),
    ("example.com/app=web", "example.com/app=web"),
    (
        "app.kubernetes.io/name in (web, db)",
        "app.kubernetes.io/name in (db,web)",
    ),
    ("a>1", "a>1"),
    ("a<10", "a<10"),
    ("!a,b", "!a,b"),
    ("A_b.c-D=E_f.g-H", "A_b.c-D=E_f.g-H"),
];

#[test]
fn parses_valid_selectors_to_canonical_strings() {
    for (input, canonical) in VALID {
        let selector = LabelSelector::parse(input)
            .unwrap_or_else(|error| panic!("{input:?} should parse: {error}"));
        assert_eq!(selector.to_string(), *canonical, "input {input:?}");
    }
}

#[test]
fn canonical_strings_reparse_to_equal_selectors() {
    for (input, _) in VALID {
        let selector = LabelSelector::parse(input).expect("valid input");
        let reparsed = LabelSelector::parse(&selector.to_string()).expect("canonical form");
        assert_eq!(reparsed, selector, "input {input:?}");
    }
}

#[test]
fn rejects_invalid_selectors_with_apimachinery_messages() {
    let long_key = "a".repeat(64);
    let cases: Vec<(String, String)> = vec![
        ("a=b c".into(), "found 'c', expected: ',' or 'end of string'".into()),
        ("a=b=c".into(), "found '=', expected: ',' or 'end of string'".into()),
        ("!a=b".into(), "found '=', expected: ',' or 'end of string'".into()),
        ("a,".into(), "found '', expected: identifier after ','".into()),
        ("a,,b".into(), "found ',', expected: identifier after ','".into()),
        (",a".into(), "found ',', expected: !, identifier, or 'end of string'".into()),
        ("=a".into(), "found '=', expected: !, identifier, or 'end of string'".into()),
        ("!=a".into(), "found '!=', expected: !, identifier, or 'end of string'".into()),
        ("(a)".into(), "found '(', expected: !, identifier, or 'end of string'".into()),
        ("!".into(), "unable to parse requirement: found '', expected: identifier".into()),
        ("!!a".into(), "unable to parse requirement: found '!', expected: identifier".into()),
        (
            "a b".into(),
            "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt".into(),
        ),
        (
            "a (x)".into(),
            "unable to parse requirement: found '(', expected: in, notin, =, ==, !=, gt, lt".into(),
        ),
        ("a in x".into(), "unable to parse requirement: found 'x' expected: '('".into()),
        ("a in".into(), "unable to parse requirement: found '' expected: '('".into()),
        ("a in (x".into(), "unable to parse requirement: found '', expected: ',' or ')'".into()),
        ("a in (x y)".into(), "unable to parse requirement: found 'y', expected: ',' or ')'".into()),
        (
            "a in (=)".into(),
            "unable to parse requirement: found '=', expected: ',', ')' or identifier".into(),
        ),
        (
            "a in (".into(),
            "unable to parse requirement: found '', expected: ',', ')' or identifier".into(),
        ),
        (
            "a in (x,=)".into(),
            "unable to parse requirement: found '=', expected: ',', or identifier".into(),
        ),
        ("a=(".into(), "unable to parse requirement: found '(', expected: identifier".into()),
        ("a!=)".into(), "unable to parse requirement: found ')', expected: identifier".into()),
        (
            "a@b=c".into(),
            format!("unable to parse requirement: <nil>: Invalid value: \"a@b\": {NAME_PART_MESSAGE}"),
        ),
        (
            "-a".into(),
            format!("unable to parse requirement: <nil>: Invalid value: \"-a\": {NAME_PART_MESSAGE}"),
        ),
        (
            long_key.clone(),
            format!(
                "unable to parse requirement: <nil>: Invalid value: \"{long_key}\": name part must be no more than 63 characters"
            ),
        ),
        (
            "a=b@c".into(),
            format!(
                "unable to parse requirement: values[0][a]: Invalid value: \"b@c\": {LABEL_VALUE_MESSAGE}"
            ),
        ),
        (
            "a in (ok,z@,y@)".into(),
            format!(
                "unable to parse requirement: [values[1][a]: Invalid value: \"y@\": {LABEL_VALUE_MESSAGE}, values[2][a]: Invalid value: \"z@\": {LABEL_VALUE_MESSAGE}]"
            ),
        ),
        (
            "a>b".into(),
            "unable to parse requirement: values[0]: Invalid value: \"b\": for 'Gt', 'Lt' operators, the value must be an integer".into(),
        ),
        (
            "a<".into(),
            "unable to parse requirement: values[0]: Invalid value: \"\": for 'Gt', 'Lt' operators, the value must be an integer".into(),
        ),
        (
            "a=b\u{0}".into(),
            format!(
                "unable to parse requirement: values[0][a]: Invalid value: \"b\\x00\": {LABEL_VALUE_MESSAGE}"
            ),
        ),
    ];
    for (input, want) in cases {
        match LabelSelector::parse(&input) {
            Ok(selector) => panic!("{input:?} parsed as {selector:?}"),
            Err(error) => assert_eq!(error.to_string(), want, "input {input:?}"),
        }
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect()
}

#[test]
fn matches_labels() {
    let set = labels(&[
        ("app", "web"),
        ("tier", "frontend"),
        ("version", "3"),
        ("empty", ""),
    ]);
    let cases = [
        ("", true),
        ("app=web", true),
        ("app==web", true),
        ("app=db", false),
        ("app!=db", true),
        ("app!=web", false),
        ("missing!=x", true),
        ("app in (web,db)", true),
        ("app in (db)", false),
        ("missing in (web)", false),
        ("app notin (web)", false),
        ("app notin (db)", true),
        ("missing notin (x)", true),
        ("app", true),
        ("missing", false),
        ("!app", false),
        ("!missing", true),
        ("empty", true),
        ("empty=", true),
        ("missing=", false),
        ("empty in ()", true),
        ("version>2", true),
        ("version>3", false),
        ("version<4", true),
        ("version<3", false),
        ("app>1", false),
        ("missing>1", false),
        ("app=web,tier=frontend", true),
        ("app=web,tier=backend", false),
    ];
    for (selector, want) in cases {
        let parsed = LabelSelector::parse(selector).expect("valid selector");
        assert_eq!(parsed.matches(&set), want, "selector {selector:?}");
    }
}

#[test]
fn matches_json_labels_and_objects() {
    let selector = LabelSelector::parse("app=web,!canary").expect("valid selector");
    let object = json!({"metadata": {"name": "x", "labels": {"app": "web"}}});
    assert!(selector.matches_object(&object));
    let canary = json!({"metadata": {"labels": {"app": "web", "canary": "true"}}});
    assert!(!selector.matches_object(&canary));
    assert!(!selector.matches_object(&json!({"metadata": {}})));
    assert!(
        LabelSelector::parse("!app")
            .expect("valid")
            .matches_json(None)
    );
    assert!(LabelSelector::everything().matches_object(&json!({})));
}

#[test]
fn converts_metav1_label_selectors() {
    let selector = metav1::LabelSelector {
        match_labels: Some(BTreeMap::from([("tier".to_owned(), "web".to_owned())])),
        match_expressions: Some(vec![
            metav1::LabelSelectorRequirement {
                key: "env".to_owned(),
                operator: "In".to_owned(),
                values: Some(vec!["prod".to_owned(), "dev".to_owned()]),
            },
            metav1::LabelSelectorRequirement {
                key: "canary".to_owned(),
                operator: "DoesNotExist".to_owned(),
                values: None,
            },
            metav1::LabelSelectorRequirement {
                key: "zone".to_owned(),
                operator: "Exists".to_owned(),
                values: None,
            },
            metav1::LabelSelectorRequirement {
                key: "app".to_owned(),
                operator: "NotIn".to_owned(),
                values: Some(vec!["db".to_owned()]),
            },
        ]),
    };
    let converted = LabelSelector::from_k8s(&selector).expect("valid selector");
    assert_eq!(
        converted.to_string(),
        "app notin (db),!canary,env in (dev,prod),tier=web,zone"
    );
    assert_eq!(
        LabelSelector::parse(&converted.to_string()).expect("canonical"),
        converted
    );
    assert!(
        LabelSelector::from_k8s(&metav1::LabelSelector::default())
            .expect("empty selector")
            .is_empty()
    );
}

#[test]
fn rejects_invalid_metav1_label_selectors() {
    let expression = |key: &str, operator: &str, values: Option<Vec<&str>>| metav1::LabelSelector {
        match_labels: None,
        match_expressions: Some(vec![metav1::LabelSelectorRequirement {
            key: key.to_owned(),
            operator: operator.to_owned(),
            values: values.map(|values| values.into_iter().map(str::to_owned).collect()),
        }]),
    };
    let cases = [
        (
            expression("a", "Gt", Some(vec!["1"])),
            "\"Gt\" is not a valid label selector operator".to_owned(),
        ),
        (
            expression("a", "In", None),
            "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty".to_owned(),
        ),
        (
            expression("a", "Exists", Some(vec!["x"])),
            "values: Invalid value: []string{\"x\"}: values set must be empty for exists and does not exist".to_owned(),
        ),
        (
            expression("a b", "Exists", None),
            format!("key: Invalid value: \"a b\": {NAME_PART_MESSAGE}"),
        ),
    ];
    for (selector, want) in cases {
        let error = LabelSelector::from_k8s(&selector).expect_err("invalid selector");
        assert_eq!(error.to_string(), want);
    }
    let bad_match_label = metav1::LabelSelector {
        match_labels: Some(BTreeMap::from([("app".to_owned(), "a b".to_owned())])),
        match_expressions: None,
    };
    let error = LabelSelector::from_k8s(&bad_match_label).expect_err("invalid value");
    assert_eq!(
        error.to_string(),
        format!("values[0][app]: Invalid value: \"a b\": {LABEL_VALUE_MESSAGE}")
    );
}

#[test]
fn match_labels_print_as_scale_selectors() {
    let selector = LabelSelector::from_match_labels(&labels(&[("tier", "web"), ("app", "web")]));
    assert_eq!(selector.to_string(), "app=web,tier=web");
    assert_eq!(
        LabelSelector::from_match_labels(&BTreeMap::new()).to_string(),
        ""
    );
}

#[test]
fn finds_exact_matches() {
    let selector = LabelSelector::parse("a=1,b in (2),c in (3,4),d!=5").expect("valid");
    assert_eq!(selector.requires_exact_match("a"), Some("1"));
    assert_eq!(selector.requires_exact_match("b"), Some("2"));
    assert_eq!(selector.requires_exact_match("c"), None);
    assert_eq!(selector.requires_exact_match("d"), None);
    assert_eq!(selector.requires_exact_match("e"), None);
}

#[test]
fn requirements_are_validated_when_built_directly() {
    let requirement = Requirement::new("app", Operator::In, ["b", "a", "b"]).expect("valid");
    assert_eq!(requirement.values(), ["a", "b"]);
    assert_eq!(requirement.to_string(), "app in (a,b)");
    let error = Requirement::new("app", Operator::Equals, ["a", "b"]).expect_err("two values");
    assert_eq!(
        error.to_string(),
        "values: Invalid value: []string{\"a\", \"b\"}: exact-match compatibility requires one single value"
    );
}
