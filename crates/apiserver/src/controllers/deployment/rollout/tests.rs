//! Rollout arithmetic against hand-worked cases of kube-controller-manager's rules.

use serde_json::json;

use super::*;

fn params(replicas: i32, surge: i32, unavailable: i32) -> Params {
    Params {
        replicas,
        rolling: true,
        surge,
        unavailable,
    }
}

fn set(name: &str, minute: u32, replicas: i32, available: i32) -> Set {
    Set {
        name: name.into(),
        created: format!("2026-01-01T00:{minute:02}:00Z").parse().ok(),
        replicas,
        current: replicas,
        ready: available,
        available,
        desired_annotation: None,
        max_annotation: None,
    }
}

#[test]
fn surge_rounds_up_and_unavailability_down() {
    assert_eq!(scaled(Some(&json!("25%")), 5, true), 2);
    assert_eq!(scaled(Some(&json!("25%")), 5, false), 1);
    assert_eq!(scaled(Some(&json!("25%")), 3, true), 1);
    assert_eq!(scaled(Some(&json!("25%")), 3, false), 0);
    assert_eq!(scaled(Some(&json!(2)), 3, false), 2);
    assert_eq!(scaled(Some(&json!("x")), 3, true), 0);
    assert_eq!(scaled(None, 3, true), 0);
    assert_eq!(fenceposts(Some(&json!(0)), Some(&json!("10%")), 5), (0, 1));
    assert_eq!(
        fenceposts(Some(&json!("25%")), Some(&json!("25%")), 10),
        (3, 2)
    );
}

#[test]
fn params_follow_the_strategy() {
    let deployment = |strategy: serde_json::Value, replicas: i64| json!({"spec": {"replicas": replicas, "strategy": strategy}});
    let default = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}});
    assert_eq!(Params::of(&deployment(default.clone(), 3)), params(3, 1, 0));
    assert_eq!(Params::of(&deployment(default, 0)), params(0, 0, 0));
    let wide =
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 5}});
    assert_eq!(
        Params::of(&deployment(wide, 3)).unavailable,
        3,
        "capped at replicas"
    );
    let recreate = Params::of(&deployment(json!({"type": "Recreate"}), 4));
    assert!(!recreate.rolling);
    assert_eq!((recreate.surge, recreate.unavailable), (0, 0));
}

#[test]
fn the_new_replica_set_grows_within_the_surge() {
    let p = params(5, 2, 1);
    let empty = set("new", 9, 0, 0);
    assert_eq!(new_replicas(&p, &[set("old", 0, 5, 5)], &empty), 2);
    let new = set("new", 9, 2, 0);
    assert_eq!(
        new_replicas(&p, &[set("old", 0, 4, 4), new.clone()], &new),
        3
    );
    assert_eq!(
        new_replicas(&p, &[set("old", 0, 5, 5), new.clone()], &new),
        2,
        "at the surge"
    );
    assert_eq!(new_replicas(&p, &[], &empty), 5, "a first rollout");
    let recreate = Params {
        rolling: false,
        ..params(5, 0, 0)
    };
    assert_eq!(new_replicas(&recreate, &[set("old", 0, 5, 5)], &empty), 5);
}

#[test]
fn old_replica_sets_shrink_within_the_unavailability() {
    let p = params(5, 2, 1);
    // New pods not yet available: one old pod may go, as long as four stay available.
    assert_eq!(
        scale_down_old(&p, &set("new", 9, 2, 0), &[set("old", 0, 5, 5)]),
        [("old".to_owned(), 4)]
    );
    // Old pods that are not available go first, within the same limit.
    assert_eq!(
        scale_down_old(&p, &set("new", 9, 2, 0), &[set("old", 0, 5, 0)]),
        [("old".to_owned(), 4)]
    );
    // Nothing may go while the new pods are unavailable and the minimum is at stake.
    assert!(scale_down_old(&p, &set("new", 9, 3, 0), &[set("old", 0, 4, 4)]).is_empty());
    // Once the new set is available, the old ones go entirely, oldest first.
    assert_eq!(
        scale_down_old(
            &p,
            &set("new", 9, 5, 5),
            &[set("older", 1, 1, 1), set("oldest", 0, 1, 1)]
        ),
        [("oldest".to_owned(), 0), ("older".to_owned(), 0)]
    );
}

#[test]
fn resizing_mid_rollout_is_shared_in_proportion() {
    let annotated = |mut s: Set, desired: i32, max: i32| {
        s.desired_annotation = Some(desired);
        s.max_annotation = Some(max);
        s
    };
    // Was 10 with a surge of 3 (13 at most): new 6, old 7. Now 20 with a surge of 5.
    let new = annotated(set("new", 9, 6, 0), 10, 13);
    let old = annotated(set("old", 0, 7, 7), 10, 13);
    let mut sizes = proportional(
        &params(20, 5, 5),
        13,
        Some(&new),
        std::slice::from_ref(&old),
    );
    sizes.sort();
    assert_eq!(sizes, [("new".to_owned(), 12), ("old".to_owned(), 13)]);
    // Down to 5 with a surge of 2.
    let mut sizes = proportional(&params(5, 2, 1), 13, Some(&new), &[old]);
    sizes.sort();
    assert_eq!(sizes, [("new".to_owned(), 3), ("old".to_owned(), 4)]);
    // One active set takes the whole count.
    let only = set("only", 0, 3, 3);
    assert_eq!(
        proportional(&params(5, 1, 1), 3, Some(&only), &[set("idle", 0, 0, 0)]),
        [("only".to_owned(), 5)]
    );
    // A saturated new set leaves the old ones nothing.
    let saturated = annotated(set("new", 9, 5, 5), 5, 6);
    assert_eq!(
        proportional(
            &params(5, 1, 1),
            6,
            Some(&saturated),
            &[set("old", 0, 1, 1)]
        ),
        [("old".to_owned(), 0)]
    );
    assert!(is_scaling_event(
        &params(7, 1, 1),
        &[annotated(set("s", 0, 5, 5), 5, 6)]
    ));
    assert!(!is_scaling_event(
        &params(5, 1, 1),
        &[annotated(set("s", 0, 5, 5), 5, 6)]
    ));
}

#[test]
fn history_beyond_the_limit_is_cleaned_up_oldest_first() {
    let rs = |name: &str, revision: &str, replicas: i64| {
        json!({"metadata": {"name": name, "generation": 2,
                "annotations": {REVISION_ANNOTATION: revision}},
            "spec": {"replicas": replicas},
            "status": {"replicas": replicas, "observedGeneration": 2}})
    };
    let (a, b, c, busy) = (
        rs("a", "1", 0),
        rs("b", "2", 0),
        rs("c", "3", 0),
        rs("busy", "0", 1),
    );
    let doomed: Vec<&str> = to_clean_up(&[&c, &a, &b], 1)
        .into_iter()
        .filter_map(object::name)
        .collect();
    assert_eq!(doomed, ["a", "b"]);
    let doomed: Vec<&str> = to_clean_up(&[&busy, &a], 0)
        .into_iter()
        .filter_map(object::name)
        .collect();
    assert_eq!(doomed, ["a"], "a set with pods stays");
    assert!(to_clean_up(&[&a, &b], 10).is_empty());
}
