//! Defaults, validation and columns of ReplicaSets and Deployments.

use ronghe_api_types::validation::FieldCause;
use serde_json::{Value, json};

use super::*;
use crate::registry::ColumnCell;

/// What `kubectl create deployment web --image=busybox --replicas=3` sends.
fn web() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "busybox", "image": "busybox"}]},
            },
        },
    })
}

fn defaulted(mut deployment: Value) -> Value {
    default_deployment(&mut deployment);
    deployment
}

fn messages(causes: Vec<FieldCause>) -> Vec<String> {
    causes.into_iter().map(|c| c.to_string()).collect()
}

#[test]
fn deployments_get_kubernetes_defaults_and_a_defaulted_template() {
    let mut bare = web();
    bare["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("replicas");
    let deployment = defaulted(bare);
    let spec = &deployment["spec"];
    assert_eq!(spec["replicas"], 1);
    assert_eq!(spec["revisionHistoryLimit"], 10);
    assert_eq!(spec["progressDeadlineSeconds"], 600);
    assert_eq!(
        spec["strategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
    );
    let template = &spec["template"]["spec"];
    assert_eq!(template["restartPolicy"], "Always");
    assert_eq!(template["dnsPolicy"], "ClusterFirst");
    assert_eq!(template["terminationGracePeriodSeconds"], 30);
    assert_eq!(template["containers"][0]["imagePullPolicy"], "Always");
    assert!(
        template.get("enableServiceLinks").is_none(),
        "set on pods, not templates"
    );
    assert!(spec["template"].get("status").is_none());

    let mut recreate = web();
    recreate["spec"]["strategy"] = json!({"type": "Recreate"});
    let recreate = defaulted(recreate);
    assert_eq!(recreate["spec"]["strategy"], json!({"type": "Recreate"}));
    assert!(validation::deployment(&recreate, None).is_empty());
}

#[test]
fn replica_sets_default_to_one_replica() {
    let mut rs = json!({"metadata": {"name": "r"}, "spec": {
        "selector": {"matchLabels": {"a": "b"}},
        "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "x:1"}]}},
    }});
    default_replica_set(&mut rs);
    assert_eq!(rs["spec"]["replicas"], 1);
    assert_eq!(
        rs["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
        "IfNotPresent"
    );
    assert!(validation::replica_set(&rs, None).is_empty());
}

#[test]
fn a_selector_is_required_and_must_match_the_template() {
    let mut missing = web();
    missing["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("selector");
    assert_eq!(
        messages(validation::deployment(&defaulted(missing), None)),
        ["spec.selector: Required value"]
    );

    let mut mismatched = web();
    mismatched["spec"]["selector"] = json!({"matchLabels": {"app": "other"}});
    assert_eq!(
        messages(validation::deployment(&defaulted(mismatched), None)),
        [
            "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"web\"}: `selector` does not match template `labels`"
        ]
    );

    let mut empty = web();
    empty["spec"]["selector"] = json!({});
    assert_eq!(
        messages(validation::deployment(&defaulted(empty), None)),
        [
            "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment"
        ]
    );

    let old = defaulted(web());
    let mut changed = old.clone();
    changed["spec"]["selector"] = json!({"matchLabels": {"app": "web", "x": "y"}});
    changed["spec"]["template"]["metadata"]["labels"]["x"] = json!("y");
    assert_eq!(
        messages(validation::deployment(&changed, Some(&old))),
        [
            "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"web\", \"x\":\"y\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"
        ]
    );
}

#[test]
fn counts_templates_and_strategies_are_checked() {
    let mut bad = web();
    bad["spec"]["replicas"] = json!(-1);
    bad["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
    bad["spec"]["template"]["spec"]["containers"][0]
        .as_object_mut()
        .expect("container")
        .remove("image");
    bad["spec"]["strategy"] =
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}});
    assert_eq!(
        messages(validation::deployment(&defaulted(bad), None)),
        [
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
            "spec.template.spec.containers[0].image: Required value",
            "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"",
            "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: \"0%\": may not be 0 when `maxSurge` is 0",
        ]
    );

    let mut odd = web();
    odd["spec"]["strategy"] = json!({"type": "Recreate", "rollingUpdate": {"maxSurge": 1}});
    odd["spec"]["progressDeadlineSeconds"] = json!(5);
    odd["spec"]["minReadySeconds"] = json!(10);
    assert_eq!(
        messages(validation::deployment(&defaulted(odd), None)),
        [
            "spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'",
            "spec.progressDeadlineSeconds: Invalid value: 5: must be greater than minReadySeconds",
        ]
    );

    let mut percent = web();
    percent["spec"]["strategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "x", "maxUnavailable": "150%"}});
    assert_eq!(
        messages(validation::deployment(&defaulted(percent), None)),
        [
            "spec.strategy.rollingUpdate.maxSurge: Invalid value: \"x\": a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
            "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: \"150%\": must not be greater than 100%",
        ]
    );
}

fn cell(kind: &KindSpec, column: &str, object: &Value) -> Value {
    let column = kind
        .columns
        .iter()
        .find(|c| c.name == column)
        .expect("column");
    match column.cell {
        ColumnCell::Value(read) => read(object),
        _ => panic!("not a value column"),
    }
}

#[test]
fn columns_read_as_kubectl_prints_them() {
    let mut deployment = defaulted(web());
    deployment["status"] =
        json!({"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2});
    let kind = super::deployment();
    let names: Vec<&str> = kind.columns.iter().map(|c| c.name).collect();
    assert_eq!(
        names,
        [
            "Name",
            "Ready",
            "Up-to-date",
            "Available",
            "Age",
            "Containers",
            "Images",
            "Selector"
        ]
    );
    assert_eq!(cell(&kind, "Ready", &deployment), "2/3");
    assert_eq!(cell(&kind, "Up-to-date", &deployment), 3);
    assert_eq!(cell(&kind, "Images", &deployment), "busybox");
    assert_eq!(cell(&kind, "Selector", &deployment), "app=web");

    let rs_kind = replica_set();
    let names: Vec<&str> = rs_kind.columns.iter().map(|c| c.name).collect();
    assert_eq!(
        names,
        [
            "Name",
            "Desired",
            "Current",
            "Ready",
            "Age",
            "Containers",
            "Images",
            "Selector"
        ]
    );
    let rs = json!({"spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web", "pod-template-hash": "abc"}}}, "status": {"replicas": 1}});
    assert_eq!(cell(&rs_kind, "Desired", &rs), 3);
    assert_eq!(cell(&rs_kind, "Current", &rs), 1);
    assert_eq!(cell(&rs_kind, "Ready", &rs), 0);
    assert_eq!(
        cell(&rs_kind, "Selector", &rs),
        "app=web,pod-template-hash=abc"
    );
    assert!(
        rs_kind
            .columns
            .iter()
            .filter(|c| ["Containers", "Images", "Selector"].contains(&c.name))
            .all(|c| c.priority == 1)
    );
}
