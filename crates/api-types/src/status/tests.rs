//! Wire-shape tests for `Status`.

use serde_json::json;

use super::*;
use crate::validation::FieldCause;

#[test]
fn not_found_matches_the_reference_body() {
    let status = Status::not_found("pods", "nope");
    assert_eq!(
        serde_json::to_string(&status).expect("serializes"),
        r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pods \"nope\" not found","reason":"NotFound","details":{"name":"nope","kind":"pods"},"code":404}"#
    );
}

#[test]
fn grouped_resources_split_into_details() {
    let status = Status::already_exists("virtualmachines.compute.example.com", "vm-b");
    assert_eq!(
        status.message,
        r#"virtualmachines.compute.example.com "vm-b" already exists"#
    );
    assert_eq!(
        status.to_value()["details"],
        json!({"name": "vm-b", "group": "compute.example.com", "kind": "virtualmachines"})
    );
    assert_eq!(status.code, 409);
}

#[test]
fn conventional_reasons_codes_and_messages() {
    let cases = [
        (
            Status::conflict("deployments.apps", "web"),
            409,
            "Conflict",
            r#"Operation cannot be fulfilled on deployments.apps "web": the object has been modified; please apply your changes to the latest version and try again"#,
        ),
        (
            Status::bad_request("field label not supported: spec.foo"),
            400,
            "BadRequest",
            "field label not supported: spec.foo",
        ),
        (
            Status::unauthorized(""),
            401,
            "Unauthorized",
            "not authorized",
        ),
        (
            Status::forbidden("pods", "web", "User \"x\" cannot get resource"),
            403,
            "Forbidden",
            r#"pods "web" is forbidden: User "x" cannot get resource"#,
        ),
        (
            Status::forbidden("pods", "", "no"),
            403,
            "Forbidden",
            "pods is forbidden: no",
        ),
        (
            Status::forbidden("", "", "no"),
            403,
            "Forbidden",
            "forbidden: no",
        ),
        (
            Status::method_not_allowed("pods", "patch"),
            405,
            "MethodNotAllowed",
            r#"patch is not supported on resources of kind "pods""#,
        ),
        (
            Status::not_acceptable(&["application/json", "application/yaml"]),
            406,
            "NotAcceptable",
            "only the following media types are accepted: application/json, application/yaml",
        ),
        (
            Status::unsupported_media_type(&["application/json", "application/yaml"]),
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml",
        ),
        (
            Status::request_entity_too_large("limit is 3145728"),
            413,
            "RequestEntityTooLarge",
            "Request entity too large: limit is 3145728",
        ),
        (Status::gone("gone away"), 410, "Gone", "gone away"),
        (
            Status::too_old_resource_version(107, 2000),
            410,
            "Expired",
            "too old resource version: 107 (2000)",
        ),
        (
            Status::too_many_requests("slow down", 1),
            429,
            "TooManyRequests",
            "slow down",
        ),
        (
            Status::internal_error("store unavailable"),
            500,
            "InternalError",
            "Internal error occurred: store unavailable",
        ),
        (
            Status::service_unavailable("starting"),
            503,
            "ServiceUnavailable",
            "starting",
        ),
        (
            Status::timeout("request did not complete within 60s", 0),
            504,
            "Timeout",
            "Timeout: request did not complete within 60s",
        ),
    ];
    for (status, code, reason, message) in cases {
        assert_eq!(
            (status.code, status.reason.as_str(), status.message.as_str()),
            (code, reason, message)
        );
        assert_eq!(status.status, "Failure");
        assert_eq!(status.http_status(), code);
    }
}

#[test]
fn expired_watch_error_matches_the_reference_body() {
    assert_eq!(
        Status::too_old_resource_version("107", "2000").to_value(),
        json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version: 107 (2000)","reason":"Expired","code":410})
    );
}

#[test]
fn invalid_lists_causes_like_apiserver() {
    let one = FieldCause::invalid("spec.replicas", -1, "must be greater than or equal to 0");
    let two = FieldCause::required("metadata.name", "name or generateName is required");
    let single = Status::invalid("Deployment.apps", "web", std::slice::from_ref(&one));
    assert_eq!(
        single.message,
        r#"Deployment.apps "web" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0"#
    );
    let double = Status::invalid("Pod", "", &[one, two]);
    assert_eq!(
        double.message,
        r#"Pod "" is invalid: [spec.replicas: Invalid value: -1: must be greater than or equal to 0, metadata.name: Required value: name or generateName is required]"#
    );
    assert_eq!(double.code, 422);
    assert_eq!(double.reason, "Invalid");
    assert_eq!(
        double.to_value()["details"],
        json!({
            "kind": "Pod",
            "causes": [
                {"reason": "FieldValueInvalid", "message": "Invalid value: -1: must be greater than or equal to 0", "field": "spec.replicas"},
                {"reason": "FieldValueRequired", "message": "Required value: name or generateName is required", "field": "metadata.name"}
            ]
        })
    );
    assert_eq!(single.to_value()["details"]["group"], "apps");
    assert_eq!(single.to_value()["details"]["kind"], "Deployment");
    assert_eq!(
        Status::invalid("Pod", "x", &[]).message,
        r#"Pod "x" is invalid"#
    );
}

#[test]
fn retry_after_and_internal_causes_are_in_details() {
    let status = Status::too_many_requests("slow down", 3);
    assert_eq!(status.retry_after_seconds(), Some(3));
    assert_eq!(
        status.to_value()["details"],
        json!({"retryAfterSeconds": 3})
    );
    assert_eq!(Status::timeout("x", 0).to_value()["details"], json!({}));
    assert_eq!(Status::timeout("x", 0).retry_after_seconds(), None);
    assert_eq!(
        Status::internal_error("boom").to_value()["details"],
        json!({"causes": [{"message": "boom"}]})
    );
}

#[test]
fn success_shapes() {
    assert_eq!(
        Status::success().to_value(),
        json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success"})
    );
    let deleted = Status::deleted("pods", "x", "1234");
    assert_eq!(
        deleted.to_value(),
        json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success","details":{"name":"x","kind":"pods","uid":"1234"}})
    );
    assert!(deleted.is_success());
    assert_eq!(deleted.http_status(), 200);
}

#[test]
fn round_trips_through_json() {
    let status = Status::invalid("Pod", "web", &[FieldCause::required("metadata.name", "")]);
    let text = serde_json::to_string(&status).expect("serializes");
    let back: Status = serde_json::from_str(&text).expect("deserializes");
    assert_eq!(back, status);
    let minimal: Status = serde_json::from_str(
        r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure"}"#,
    )
    .expect("deserializes");
    assert_eq!(minimal.http_status(), 500);
}

#[test]
fn apply_conflicts_carry_causes() {
    let status = Status::apply_conflict(
        "Apply failed with 1 conflict: conflict with \"kubectl\": .spec.replicas",
        vec![StatusCause {
            reason: "FieldManagerConflict".to_owned(),
            message: "conflict with \"kubectl\"".to_owned(),
            field: ".spec.replicas".to_owned(),
        }],
    );
    assert_eq!(status.code, 409);
    assert_eq!(
        status.to_value()["details"]["causes"][0]["field"],
        ".spec.replicas"
    );
}
