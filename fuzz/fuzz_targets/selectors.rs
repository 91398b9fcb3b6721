//! Fuzzes label and field selector parsing: arbitrary UTF-8 must never panic the parsers,
//! every accepted selector's canonical string must re-parse to an equal selector, and
//! matching must not panic.

#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use ronghe_api_types::selector::{FieldSelector, LabelSelector};

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    check_label_selector(input);
    check_field_selector(input);
});

fn check_label_selector(input: &str) {
    let Ok(selector) = LabelSelector::parse(input) else {
        return;
    };
    let printed = selector.to_string();
    let reparsed = LabelSelector::parse(&printed).unwrap_or_else(|error| {
        panic!("label selector {input:?} printed as {printed:?}, which fails to parse: {error}")
    });
    assert_eq!(
        reparsed, selector,
        "label selector {input:?} printed as {printed:?} re-parses differently"
    );
    assert_eq!(
        reparsed.to_string(),
        printed,
        "canonical form is not a fixed point"
    );

    let labels = BTreeMap::from([
        ("app".to_owned(), "web".to_owned()),
        ("tier".to_owned(), "frontend".to_owned()),
        ("version".to_owned(), "3".to_owned()),
        ("empty".to_owned(), String::new()),
        ("example.com/owner".to_owned(), "team-a".to_owned()),
    ]);
    let _ = selector.matches(&labels);
    let _ = selector.matches_json(None);
    for requirement in selector.requirements() {
        let _ = selector.requires_exact_match(requirement.key());
    }
}

fn check_field_selector(input: &str) {
    let Ok(selector) = FieldSelector::parse(input) else {
        return;
    };
    let printed = selector.to_string();
    let reparsed = FieldSelector::parse(&printed).unwrap_or_else(|error| {
        panic!("field selector {input:?} printed as {printed:?}, which fails to parse: {error}")
    });
    assert_eq!(
        reparsed, selector,
        "field selector {input:?} printed as {printed:?} re-parses differently"
    );

    let fields = BTreeMap::from([
        ("metadata.name", "web-1"),
        ("metadata.namespace", "default"),
        ("status.phase", "Running"),
    ]);
    let _ = selector.matches(|field| fields.get(field).map(|value| (*value).to_owned()));
    for field in selector.fields() {
        let _ = selector.requires_exact_match(field);
    }
}
