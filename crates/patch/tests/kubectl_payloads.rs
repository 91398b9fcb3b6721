//! The patch bodies kubectl 1.32 and kube-rs send (as recorded in
//! `/work/shared/reference/kubernetes-api.md`), applied to live objects through the public API.

use ronghe_patch::{apply, builtin_schema, json_patch, merge_patch, strategic_merge_patch};
use serde_json::{Value, json};

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// A Deployment as the server stores it after `kubectl apply -f deploy.yaml`.
fn live_deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "uid": "9d1c6a1e-0000-4000-8000-000000000001",
            "resourceVersion": "104",
            "generation": 1,
            "annotations": {LAST_APPLIED: "{\"apiVersion\":\"apps/v1\"}\n"},
            "labels": {"app": "web"},
            "finalizers": ["example.com/a"]
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}
            },
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "nginx",
                            "image": "nginx:1.27",
                            "ports": [{"containerPort": 80, "protocol": "TCP"}],
                            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
                        },
                        {"name": "sidecar", "image": "busybox:1.36", "args": ["sleep", "infinity"]}
                    ]
                }
            }
        },
        "status": {
            "replicas": 2,
            "conditions": [
                {"type": "Available", "status": "True"},
                {"type": "Progressing", "status": "True"}
            ]
        }
    })
}

fn smp(live: &Value, patch: &str) -> Value {
    let patch: Value = serde_json::from_str(patch).expect("the payload is JSON");
    let mut target = live.clone();
    strategic_merge_patch(&mut target, &patch, builtin_schema("apps/v1", "Deployment"))
        .expect("kubectl's patch applies");
    target
}

/// The live object with only the fields at the given paths replaced: what the patch may change.
fn expect_changed(live: &Value, changes: &[(&str, Value)]) -> Value {
    let mut expected = live.clone();
    for (pointer, value) in changes {
        *expected.pointer_mut(pointer).expect("the path exists") = value.clone();
    }
    expected
}

#[test]
fn client_side_apply_changes_replicas_and_adds_an_annotation() {
    let live = live_deployment();
    let patch = r#"{"metadata":{"annotations":{"example.com/note":"hello","kubectl.kubernetes.io/last-applied-configuration":"{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\"}\n"}},"spec":{"replicas":3}}"#;
    let result = smp(&live, patch);
    let expected = expect_changed(
        &live,
        &[
            (
                "/metadata/annotations",
                json!({
                    LAST_APPLIED: "{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\"}\n",
                    "example.com/note": "hello"
                }),
            ),
            ("/spec/replicas", json!(3)),
        ],
    );
    assert_eq!(result, expected);
}

#[test]
fn set_image() {
    let live = live_deployment();
    // Verbatim from `kubectl set image deploy/web nginx=nginx:1.28` (one container).
    let patch = r#"{"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"nginx"}],"containers":[{"image":"nginx:1.28","name":"nginx"}]}}}}"#;
    let result = smp(&live, patch);
    let expected = expect_changed(
        &live,
        &[(
            "/spec/template/spec/containers/0/image",
            json!("nginx:1.28"),
        )],
    );
    assert_eq!(result, expected);
}

#[test]
fn rollout_restart() {
    let live = live_deployment();
    let patch = r#"{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":"2026-11-22T10:00:00Z"}}}}}"#;
    let result = smp(&live, patch);
    assert_eq!(
        result["spec"]["template"]["metadata"],
        json!({
            "labels": {"app": "web"},
            "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-11-22T10:00:00Z"}
        })
    );
    assert_eq!(
        result["spec"]["template"]["spec"],
        live["spec"]["template"]["spec"]
    );
}

#[test]
fn apply_deleting_a_container() {
    let live = live_deployment();
    let patch = r#"{"metadata":{"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{}\n"}},"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"nginx"}],"containers":[{"$patch":"delete","name":"sidecar"}]}}}}"#;
    let result = smp(&live, patch);
    let expected = expect_changed(
        &live,
        &[
            ("/metadata/annotations", json!({LAST_APPLIED: "{}\n"})),
            (
                "/spec/template/spec/containers",
                json!([live["spec"]["template"]["spec"]["containers"][0]]),
            ),
        ],
    );
    assert_eq!(result, expected);
}

#[test]
fn apply_merging_env_vars_by_name() {
    let live = live_deployment();
    // B changes, C is added after B, A is untouched.
    let patch = r#"{"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"nginx"},{"name":"sidecar"}],"containers":[{"$setElementOrder/env":[{"name":"A"},{"name":"B"},{"name":"C"}],"env":[{"name":"B","value":"20"},{"name":"C","value":"3"}],"name":"nginx"}]}}}}"#;
    let result = smp(&live, patch);
    let expected = expect_changed(
        &live,
        &[(
            "/spec/template/spec/containers/0/env",
            json!([
                {"name": "A", "value": "1"},
                {"name": "B", "value": "20"},
                {"name": "C", "value": "3"}
            ]),
        )],
    );
    assert_eq!(result, expected);
}

#[test]
fn finalizers_merge_as_a_set() {
    let live = live_deployment();
    // `kubectl patch deploy web -p '{"metadata":{"finalizers":["example.com/b"]}}'`
    let added = smp(
        &live,
        r#"{"metadata":{"finalizers":["example.com/b","example.com/a"]}}"#,
    );
    assert_eq!(
        added["metadata"]["finalizers"],
        json!(["example.com/b", "example.com/a"])
    );
    // What client-side apply sends when the file drops `example.com/a`.
    let removed = smp(
        &added,
        r#"{"metadata":{"$deleteFromPrimitiveList/finalizers":["example.com/a"],"$setElementOrder/finalizers":["example.com/b"]}}"#,
    );
    assert_eq!(removed["metadata"]["finalizers"], json!(["example.com/b"]));
}

#[test]
fn apply_switching_strategy_uses_retain_keys() {
    let live = live_deployment();
    let patch =
        r#"{"spec":{"strategy":{"$retainKeys":["type"],"rollingUpdate":null,"type":"Recreate"}}}"#;
    let result = smp(&live, patch);
    let expected = expect_changed(&live, &[("/spec/strategy", json!({"type": "Recreate"}))]);
    assert_eq!(result, expected);
}

#[test]
fn status_conditions_merge_by_type() {
    let live = live_deployment();
    let patch = r#"{"status":{"$setElementOrder/conditions":[{"type":"Available"},{"type":"Progressing"}],"conditions":[{"status":"False","type":"Available"}]}}"#;
    let result = smp(&live, patch);
    assert_eq!(
        result["status"]["conditions"],
        json!([
            {"type": "Available", "status": "False"},
            {"type": "Progressing", "status": "True"}
        ])
    );
}

#[test]
fn service_ports_merge_by_port() {
    let live = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}});
    let patch = json!({"spec": {"$setElementOrder/ports": [{"port": 80}, {"port": 443}],
        "ports": [{"port": 80, "targetPort": 8081}, {"port": 443, "targetPort": 8443}]}});
    let mut result = live.clone();
    strategic_merge_patch(&mut result, &patch, builtin_schema("v1", "Service")).expect("applies");
    assert_eq!(
        result["spec"]["ports"],
        json!([
            {"port": 80, "targetPort": 8081, "protocol": "TCP"},
            {"port": 443, "targetPort": 8443}
        ])
    );
}

#[test]
fn scale_label_and_annotate_use_merge_patch() {
    let mut live = live_deployment();
    merge_patch(&mut live, &json!({"spec": {"replicas": 5}}));
    merge_patch(&mut live, &json!({"metadata": {"labels": {"tier": "fe"}}}));
    assert_eq!(live["spec"]["replicas"], 5);
    assert_eq!(
        live["metadata"]["labels"],
        json!({"app": "web", "tier": "fe"})
    );
}

#[test]
fn patch_type_json() {
    let mut live = live_deployment();
    json_patch(
        &mut live,
        &json!([{"op": "replace", "path": "/spec/replicas", "value": 7}]),
    )
    .expect("applies");
    assert_eq!(live["spec"]["replicas"], 7);
}

#[test]
fn server_side_apply_of_the_same_file_with_a_new_image() {
    let live = live_deployment();
    let applied = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"labels": {"app": "web"}, "name": "web", "namespace": "default"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"image": "nginx:1.28", "name": "nginx"}]}}}});
    let result = apply(&live, &applied, builtin_schema("apps/v1", "Deployment"));
    let expected = expect_changed(
        &live,
        &[(
            "/spec/template/spec/containers/0/image",
            json!("nginx:1.28"),
        )],
    );
    assert_eq!(result, expected);
}
