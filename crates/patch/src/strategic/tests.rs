//! Unit tests of strategic merge patch: one per semantic and per kind of bad patch.

use serde_json::{Value, json};

use super::strategic_merge_patch;
use crate::error::PatchError;
use crate::schema::{TypeSchema, builtin_schema};

fn pod_schema() -> Option<&'static TypeSchema> {
    builtin_schema("v1", "Pod")
}

fn patched(target: &Value, patch: Value, schema: Option<&TypeSchema>) -> Result<Value, PatchError> {
    let mut target = target.clone();
    strategic_merge_patch(&mut target, &patch, schema)?;
    Ok(target)
}

fn pod() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web-1", "labels": {"app": "web"}, "finalizers": ["a", "b"]},
        "spec": {
            "containers": [
                {"name": "web", "image": "nginx:1.27",
                 "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                 "ports": [{"containerPort": 80, "protocol": "TCP"}]},
                {"name": "sidecar", "image": "busybox", "args": ["sleep", "1d"]}
            ],
            "tolerations": [{"key": "a", "operator": "Exists"}],
            "volumes": [{"name": "data", "emptyDir": {}}]
        }
    })
}

fn containers(pod: &Value) -> &Value {
    &pod["spec"]["containers"]
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item["name"].as_str())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn maps_merge_and_null_deletes() {
    let result = patched(
        &pod(),
        json!({"metadata": {"labels": {"app": null, "tier": "fe"}, "annotations": {"x": "y", "gone": null}},
               "status": null}),
        pod_schema(),
    )
    .expect("applies");
    assert_eq!(result["metadata"]["labels"], json!({"tier": "fe"}));
    assert_eq!(result["metadata"]["annotations"], json!({"x": "y"}));
    assert_eq!(result["metadata"]["name"], "web-1");
    assert_eq!(result["spec"], pod()["spec"]);
}

#[test]
fn lists_without_a_strategy_are_replaced() {
    let result = patched(
        &pod(),
        json!({"spec": {"tolerations": [{"key": "b", "operator": "Exists"}],
                        "containers": [{"name": "sidecar", "args": ["sleep", "2d"]}]}}),
        pod_schema(),
    )
    .expect("applies");
    assert_eq!(
        result["spec"]["tolerations"],
        json!([{"key": "b", "operator": "Exists"}])
    );
    // `args` has no strategy either, inside a container merged by name.
    assert_eq!(containers(&result)[1]["args"], json!(["sleep", "2d"]));
    assert_eq!(containers(&result)[1]["image"], "busybox");

    // Without a schema every list is replaced, directives still work on maps.
    let result = patched(
        &pod(),
        json!({"spec": {"containers": [{"name": "only"}]}, "metadata": {"$patch": "merge"}}),
        None,
    )
    .expect("applies");
    assert_eq!(containers(&result), &json!([{"name": "only"}]));
    assert_eq!(result["metadata"], pod()["metadata"]);
}

#[test]
fn keyed_lists_merge_items_and_append_new_ones() {
    let result = patched(
        &pod(),
        json!({"spec": {"containers": [
            {"name": "web", "image": "nginx:1.28", "ports": [{"containerPort": 443}]},
            {"name": "debug", "image": "alpine"}
        ]}}),
        pod_schema(),
    )
    .expect("applies");
    // As in the apiserver, patch items follow the patch order and an item the live list
    // lacks is not placed after the live items: `sidecar` is not in the patch.
    assert_eq!(names(containers(&result)), ["web", "debug", "sidecar"]);
    let web = &containers(&result)[0];
    assert_eq!(web["image"], "nginx:1.28");
    assert_eq!(web["env"], pod()["spec"]["containers"][0]["env"]);
    assert_eq!(
        web["ports"],
        json!([{"containerPort": 443}, {"containerPort": 80, "protocol": "TCP"}])
    );
}

#[test]
fn merge_keys_compare_numbers_by_value() {
    let result = patched(
        &pod(),
        json!({"spec": {"containers": [{"name": "web", "ports": [{"containerPort": 80.0, "name": "http"}]}]}}),
        pod_schema(),
    )
    .expect("applies");
    assert_eq!(
        containers(&result)[0]["ports"].as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(containers(&result)[0]["ports"][0]["name"], "http");
}

#[test]
fn patch_delete_removes_the_matching_item() {
    let result = patched(
        &pod(),
        json!({"spec": {"containers": [{"name": "web", "env": [{"$patch": "delete", "name": "A"}]}]}}),
        pod_schema(),
    )
    .expect("applies");
    assert_eq!(
        containers(&result)[0]["env"],
        json!([{"name": "B", "value": "2"}])
    );
    // Deleting an item that is not there is not an error.
    let result = patched(
        &pod(),
        json!({"spec": {"containers": [{"$patch": "delete", "name": "nope"}]}}),
        pod_schema(),
    )
    .expect("applies");
    assert_eq!(containers(&result), containers(&pod()));
}

#[test]
fn patch_replace_replaces_lists_and_maps() {
    let result = patched(
        &pod(),
        json!({"spec": {"containers": [{"$patch": "replace"}, {"name": "new", "image": "x"}]},
               "metadata": {"labels": {"$patch": "replace", "only": "this", "dropped": null}}}),
        pod_schema(),
    )
    .expect("applies");
    assert_eq!(containers(&result), &json!([{"name": "new", "image": "x"}]));
    assert_eq!(result["metadata"]["labels"], json!({"only": "this"}));

    // With a merge key, `$patch: replace` replaces that one item.
    let result = patched(
        &pod(),
        json!({"spec": {"containers": [{"$patch": "replace", "name": "sidecar", "image": "y"}]}}),
        pod_schema(),
    )
    .expect("applies");
    assert_eq!(names(containers(&result)), ["web", "sidecar"]);
    assert_eq!(
        containers(&result)[1],
        json!({"name": "sidecar", "image": "y"})
    );

    // A set list can be replaced too.
    let result = patched(
        &pod(),
        json!({"metadata": {"finalizers": [{"$patch": "replace"}, "c"]}}),
        pod_schema(),
    )
    .expect("applies");
    assert_eq!(result["metadata"]["finalizers"], json!(["c"]));
}

#[test]
fn patch_delete_on_a_map_empties_it_and_merge_is_the_default() {
    let result = patched(
        &pod(),
        json!({"metadata": {"labels": {"$patch": "delete"}, "annotations": {"$patch": "merge", "a": "b"}}}),
        pod_schema(),
    )
    .expect("applies");
    assert_eq!(result["metadata"]["labels"], json!({}));
    assert_eq!(result["metadata"]["annotations"], json!({"a": "b"}));
}

#[test]
fn primitive_lists_with_merge_strategy_are_sets() {
    let result = patched(
        &pod(),
        json!({"metadata": {"finalizers": ["c", "a"]}}),
        pod_schema(),
    )
    .expect("applies");
    // Patched values take the patch order; `b` (server only) comes after them because
    // it followed `a` in the live list.
    assert_eq!(result["metadata"]["finalizers"], json!(["c", "a", "b"]));

    let result = patched(
        &pod(),
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a", "zzz"]}}),
        pod_schema(),
    )
    .expect("applies");
    assert_eq!(result["metadata"]["finalizers"], json!(["b"]));

    // Adding to a missing set creates it.
    let mut bare = pod();
    bare["metadata"]
        .as_object_mut()
        .map(|metadata| metadata.shift_remove("finalizers"));
    let result = patched(
        &bare,
        json!({"metadata": {"finalizers": ["x", "x"]}}),
        pod_schema(),
    )
    .expect("applies");
    assert_eq!(result["metadata"]["finalizers"], json!(["x"]));
}

#[test]
fn set_element_order_orders_the_merged_list() {
    let result = patched(
        &pod(),
        json!({"spec": {
            "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "new"}, {"name": "web"}],
            "containers": [{"name": "new", "image": "x"}]
        }}),
        pod_schema(),
    )
    .expect("applies");
    assert_eq!(names(containers(&result)), ["sidecar", "new", "web"]);

    // Without the list itself in the patch, the live list is reordered.
    let result = patched(
        &pod(),
        json!({"spec": {"$setElementOrder/containers": [{"name": "sidecar"}, {"name": "web"}]},
               "metadata": {"$setElementOrder/finalizers": ["b", "a"]}}),
        pod_schema(),
    )
    .expect("applies");
    assert_eq!(names(containers(&result)), ["sidecar", "web"]);
    assert_eq!(result["metadata"]["finalizers"], json!(["b", "a"]));
}

#[test]
fn server_only_items_keep_their_live_place() {
    // `b` is not in the order list (another writer added it); it stays ahead of the
    // items that came after it in the live list.
    let live = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}});
    let result = patched(
        &live,
        json!({"spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "a"}],
                        "containers": [{"name": "c", "image": "x"}]}}),
        pod_schema(),
    )
    .expect("applies");
    assert_eq!(names(containers(&result)), ["b", "c", "a"]);
}

#[test]
fn retain_keys_drops_unlisted_fields_then_merges() {
    let result = patched(
        &pod(),
        json!({"spec": {"volumes": [
            {"$retainKeys": ["configMap", "name"], "name": "data", "configMap": {"name": "cfg"}}
        ]}}),
        pod_schema(),
    )
    .expect("applies");
    assert_eq!(
        result["spec"]["volumes"],
        json!([{"name": "data", "configMap": {"name": "cfg"}}])
    );
}

#[test]
fn directives_never_reach_the_result() {
    let result = patched(
        &pod(),
        json!({"spec": {
            "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}, {"name": "new"}],
            "containers": [{
                "name": "new",
                "$setElementOrder/env": [{"name": "X"}],
                "env": [{"name": "X", "value": "1"}, {"$patch": "delete", "name": "Y"}],
                "$deleteFromPrimitiveList/args": ["a"],
                "$retainKeys": ["name", "env", "resources"],
                "resources": {"$patch": "replace", "limits": {"cpu": "1"}}
            }],
            "tolerations": [{"$patch": "replace"}, {"key": "k", "$patch": "merge"}],
            "newMap": {"$patch": "merge", "nested": {"$retainKeys": ["a"], "a": 1, "b": null}}
        }}),
        pod_schema(),
    )
    .expect("applies");
    let text = result.to_string();
    for directive in [
        "$patch",
        "$setElementOrder",
        "$deleteFromPrimitiveList",
        "$retainKeys",
    ] {
        assert!(!text.contains(directive), "{directive} leaked into {text}");
    }
    assert_eq!(
        containers(&result)[2],
        json!({"name": "new", "env": [{"name": "X", "value": "1"}], "resources": {"limits": {"cpu": "1"}}})
    );
    assert_eq!(result["spec"]["tolerations"], json!([{"key": "k"}]));
    assert_eq!(result["spec"]["newMap"], json!({"nested": {"a": 1}}));
}

#[test]
fn other_dollar_keys_are_ordinary_fields() {
    let result = patched(
        &json!({}),
        json!({"spec": {"$ref": "#/x", "$schema": "s"}}),
        None,
    )
    .expect("applies");
    assert_eq!(result, json!({"spec": {"$ref": "#/x", "$schema": "s"}}));
}

#[test]
fn mismatched_types_are_replaced_by_the_patch() {
    let result = patched(
        &json!({"a": [1], "b": {"c": 1}, "d": "x"}),
        json!({"a": {"x": 1, "y": null}, "b": [2], "d": {"e": 1}}),
        None,
    )
    .expect("applies");
    assert_eq!(result, json!({"a": {"x": 1}, "b": [2], "d": {"e": 1}}));
}

#[test]
fn a_non_object_target_is_treated_as_empty() {
    let result = patched(&json!("nonsense"), json!({"a": 1}), None).expect("applies");
    assert_eq!(result, json!({"a": 1}));
}

/// A bad patch, the pointer its error must name, and a check of the error's variant.
type BadPatch = (Value, &'static str, fn(&PatchError) -> bool);

/// Each bad patch is an error naming where it went wrong, and leaves the target unchanged.
#[test]
fn bad_patches_are_errors() {
    let cases: Vec<BadPatch> = vec![
        (json!([]), "", |e| {
            matches!(e, PatchError::NotAnObject { .. })
        }),
        (
            json!({"metadata": {"$patch": "explode"}}),
            "/metadata",
            |e| matches!(e, PatchError::UnknownPatchDirective { .. }),
        ),
        (
            json!({"spec": {"containers": [{"$patch": 7}]}}),
            "/spec/containers/0",
            |e| matches!(e, PatchError::UnknownPatchDirective { .. }),
        ),
        (
            json!({"spec": {"containers": [{"image": "x"}]}}),
            "/spec/containers/0",
            |e| matches!(e, PatchError::MissingMergeKey { key: "name", .. }),
        ),
        (
            json!({"spec": {"containers": [{"$patch": "delete"}]}}),
            "/spec/containers/0",
            |e| matches!(e, PatchError::MissingMergeKey { .. }),
        ),
        (
            json!({"spec": {"containers": [{"name": null}]}}),
            "/spec/containers/0",
            |e| matches!(e, PatchError::MissingMergeKey { .. }),
        ),
        (
            json!({"spec": {"containers": ["web"]}}),
            "/spec/containers/0",
            |e| matches!(e, PatchError::ListItemNotObject { .. }),
        ),
        (
            json!({"spec": {"$setElementOrder/containers": {"name": "web"}}}),
            "/spec/$setElementOrder~1containers",
            |e| matches!(e, PatchError::DirectiveNotList { .. }),
        ),
        (
            json!({"spec": {"$setElementOrder/containers": [], "containers": {"name": "x"}}}),
            "/spec/$setElementOrder~1containers",
            |e| matches!(e, PatchError::OrderedFieldNotList { .. }),
        ),
        (
            json!({"spec": {"$setElementOrder/containers": [{"image": "x"}]}}),
            "/spec/$setElementOrder~1containers/0",
            |e| matches!(e, PatchError::MissingMergeKey { .. }),
        ),
        (
            json!({"spec": {"$setElementOrder/containers": [{"name": "web"}],
                            "containers": [{"name": "other"}]}}),
            "/spec/containers/0",
            |e| matches!(e, PatchError::NotInElementOrder { .. }),
        ),
        (
            json!({"metadata": {"$setElementOrder/finalizers": ["a"], "finalizers": ["z"]}}),
            "/metadata/finalizers/0",
            |e| matches!(e, PatchError::NotInElementOrder { .. }),
        ),
        (
            json!({"metadata": {"finalizers": [{"a": 1}]}}),
            "/metadata/finalizers/0",
            |e| matches!(e, PatchError::ObjectInPrimitiveList { .. }),
        ),
        (
            json!({"metadata": {"finalizers": [{"$patch": "delete"}]}}),
            "/metadata/finalizers/0",
            |e| matches!(e, PatchError::DirectiveNotAllowed { .. }),
        ),
        (
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}}),
            "/metadata/$deleteFromPrimitiveList~1finalizers",
            |e| matches!(e, PatchError::DirectiveNotList { .. }),
        ),
        (
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": [{"a": 1}]}}),
            "/metadata/$deleteFromPrimitiveList~1finalizers/0",
            |e| matches!(e, PatchError::ObjectInPrimitiveList { .. }),
        ),
        (
            json!({"spec": {"$retainKeys": "name"}}),
            "/spec/$retainKeys",
            |e| matches!(e, PatchError::DirectiveNotList { .. }),
        ),
        (
            json!({"spec": {"$retainKeys": [1]}}),
            "/spec/$retainKeys",
            |e| matches!(e, PatchError::RetainKeysNotStrings { .. }),
        ),
        (
            json!({"spec": {"$retainKeys": ["a"], "b": 1}}),
            "/spec",
            |e| matches!(e, PatchError::NotInRetainKeys { .. }),
        ),
        (
            json!({"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
                            "containers": [{"name": "a"}, {"name": "b"}]}}),
            "/spec/containers/1",
            |e| matches!(e, PatchError::NotInElementOrder { .. }),
        ),
    ];
    for (patch, pointer, is_expected) in cases {
        let mut target = pod();
        let error = strategic_merge_patch(&mut target, &patch, pod_schema())
            .expect_err(&format!("{patch} must be rejected"));
        assert!(is_expected(&error), "{patch}: unexpected {error:?}");
        assert!(
            error.to_string().contains(&format!("{pointer:?}")),
            "{patch}: {error} does not name {pointer:?}"
        );
        assert_eq!(target, pod(), "{patch}: the target changed");
    }
}
