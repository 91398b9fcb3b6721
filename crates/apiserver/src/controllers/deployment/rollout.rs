//! The arithmetic of a rollout, without I/O, as kube-controller-manager's deployment
//! utilities do it: surge and unavailability from integers or percentages (surge rounds
//! up, unavailability down), how far the new ReplicaSet may grow, how far the old ones
//! may shrink, proportional scaling when a Deployment is resized mid-rollout, and which
//! old ReplicaSets the revision history no longer keeps.

use std::cmp::Ordering;

use jiff::Timestamp;
use serde_json::Value;

use crate::kinds::apps::{
    DESIRED_REPLICAS_ANNOTATION, MAX_REPLICAS_ANNOTATION, REVISION_ANNOTATION, int_at,
};
use crate::object;

/// What a Deployment asks of a rollout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    /// `spec.replicas`.
    pub replicas: i32,
    /// Whether the strategy is RollingUpdate (else Recreate).
    pub rolling: bool,
    /// How many pods above `replicas` may exist (`MaxSurge`).
    pub surge: i32,
    /// How many of `replicas` may be unavailable (`MaxUnavailable`).
    pub unavailable: i32,
}

impl Params {
    pub fn of(deployment: &Value) -> Params {
        let replicas = i32_at(deployment, &["spec", "replicas"]);
        let rolling = deployment
            .pointer("/spec/strategy/type")
            .and_then(Value::as_str)
            .is_none_or(|kind| kind == "RollingUpdate");
        if !rolling {
            return Params {
                replicas,
                rolling,
                surge: 0,
                unavailable: 0,
            };
        }
        let (surge, unavailable) = fenceposts(
            deployment.pointer("/spec/strategy/rollingUpdate/maxSurge"),
            deployment.pointer("/spec/strategy/rollingUpdate/maxUnavailable"),
            replicas,
        );
        let unavailable = if replicas == 0 {
            0
        } else {
            unavailable.min(replicas)
        };
        Params {
            replicas,
            rolling,
            surge,
            unavailable,
        }
    }
}

fn i32_at(object: &Value, path: &[&str]) -> i32 {
    i32::try_from(int_at(object, path)).unwrap_or(0)
}

/// `GetScaledValueFromIntOrPercent`: an integer as is, `N%` of `total` rounded up or down;
/// anything else (which validation refuses) as 0.
pub fn scaled(value: Option<&Value>, total: i32, round_up: bool) -> i32 {
    match value {
        Some(Value::Number(number)) => number
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .unwrap_or(0),
        Some(Value::String(text)) => {
            let Some(percent) = crate::kinds::apps::percent(text) else {
                return 0;
            };
            let product = percent * i64::from(total);
            let value = if round_up {
                (product + 99).div_euclid(100)
            } else {
                product.div_euclid(100)
            };
            i32::try_from(value).unwrap_or(i32::MAX)
        }
        _ => 0,
    }
}

/// `ResolveFenceposts`: surge rounds up and unavailability down; should both come to zero
/// (only possible through rounding), one pod may be unavailable, since a surge might be
/// refused by a quota.
pub fn fenceposts(surge: Option<&Value>, unavailable: Option<&Value>, desired: i32) -> (i32, i32) {
    let surge = scaled(surge, desired, true);
    let unavailable = scaled(unavailable, desired, false);
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

/// What a rollout needs to know of one ReplicaSet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Set {
    pub name: String,
    pub created: Option<Timestamp>,
    /// `spec.replicas`.
    pub replicas: i32,
    /// `status.replicas`, `readyReplicas`, `availableReplicas`.
    pub current: i32,
    pub ready: i32,
    pub available: i32,
    /// The Deployment's replicas and maximum size when it last sized this set.
    pub desired_annotation: Option<i32>,
    pub max_annotation: Option<i32>,
}

impl Set {
    pub fn of(replica_set: &Value) -> Set {
        let annotation = |key: &str| {
            object::metadata(replica_set)
                .and_then(|m| m.get("annotations"))
                .and_then(|a| a.get(key))
                .and_then(Value::as_str)
                .and_then(|v| v.parse().ok())
        };
        Set {
            name: object::name(replica_set).unwrap_or_default().to_owned(),
            created: object::meta_str(replica_set, "creationTimestamp")
                .and_then(|t| t.parse().ok()),
            replicas: i32_at(replica_set, &["spec", "replicas"]),
            current: i32_at(replica_set, &["status", "replicas"]),
            ready: i32_at(replica_set, &["status", "readyReplicas"]),
            available: i32_at(replica_set, &["status", "availableReplicas"]),
            desired_annotation: annotation(DESIRED_REPLICAS_ANNOTATION),
            max_annotation: annotation(MAX_REPLICAS_ANNOTATION),
        }
    }
}

/// Oldest first, by creation then name (`ReplicaSetsByCreationTimestamp`).
pub fn by_creation(a: &Set, b: &Set) -> Ordering {
    a.created.cmp(&b.created).then_with(|| a.name.cmp(&b.name))
}

/// `NewRSNewReplicas`: the size the new ReplicaSet may grow to now — all the way under
/// Recreate; under RollingUpdate, as far as the surge allows over everything that exists.
pub fn new_replicas(params: &Params, all: &[Set], new: &Set) -> i32 {
    if !params.rolling {
        return params.replicas;
    }
    let current: i32 = all.iter().map(|s| s.replicas).sum();
    let max_total = params.replicas + params.surge;
    if current >= max_total {
        return new.replicas;
    }
    let grow = (max_total - current).min(params.replicas - new.replicas);
    new.replicas + grow
}

/// `reconcileOldReplicaSets`: the sizes old ReplicaSets shrink to during a rolling update
/// — first their unavailable pods (oldest sets first), within what may go without dropping
/// below the minimum available; then available ones while more than the minimum are.
/// Returns the sets whose size changes.
pub fn scale_down_old(params: &Params, new: &Set, old: &[Set]) -> Vec<(String, i32)> {
    let old_pods: i32 = old.iter().map(|s| s.replicas).sum();
    if old_pods == 0 {
        return Vec::new();
    }
    let all_pods = old_pods + new.replicas;
    let min_available = params.replicas - params.unavailable;
    let new_unavailable = new.replicas - new.available;
    let max_scaled_down = all_pods - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return Vec::new();
    }
    let mut sets: Vec<Set> = old.to_vec();
    sets.sort_by(by_creation);
    let before: Vec<i32> = sets.iter().map(|s| s.replicas).collect();
    let mut cleaned = 0;
    for set in sets.iter_mut() {
        if cleaned >= max_scaled_down {
            break;
        }
        if set.replicas == 0 || set.replicas == set.available {
            continue;
        }
        let down = (max_scaled_down - cleaned).min(set.replicas - set.available);
        set.replicas -= down;
        cleaned += down;
    }
    let available: i32 = new.available + sets.iter().map(|s| s.available).sum::<i32>();
    if available > min_available {
        let wanted = available - min_available;
        let mut done = 0;
        for set in sets.iter_mut() {
            if done >= wanted {
                break;
            }
            if set.replicas == 0 {
                continue;
            }
            let down = set.replicas.min(wanted - done);
            set.replicas -= down;
            done += down;
        }
    }
    sets.into_iter()
        .zip(before)
        .filter(|(set, before)| set.replicas != *before)
        .map(|(set, _)| (set.name, set.replicas))
        .collect()
}

/// `isScalingEvent`: an active set was last sized for another replica count.
pub fn is_scaling_event(params: &Params, all: &[Set]) -> bool {
    all.iter()
        .filter(|s| s.replicas > 0)
        .any(|s| s.desired_annotation.is_some_and(|d| d != params.replicas))
}

/// `DeploymentController.scale`: the size of every set to (re)write when the Deployment
/// was resized. One active set (or none: the newest) takes the whole count; a saturated
/// new set leaves the old ones nothing; otherwise, in a rolling update, the change is
/// shared in proportion to the sets' sizes, leftovers to the largest.
pub fn proportional(
    params: &Params,
    status_replicas: i32,
    new: Option<&Set>,
    old: &[Set],
) -> Vec<(String, i32)> {
    let mut newest_first: Vec<&Set> = old.iter().collect();
    newest_first.sort_by(|a, b| by_creation(b, a));
    let all: Vec<&Set> = new
        .into_iter()
        .chain(newest_first.iter().copied())
        .collect();
    let active: Vec<&Set> = all.iter().copied().filter(|s| s.replicas > 0).collect();
    let only = match active.len() {
        0 => new.or(newest_first.first().copied()),
        1 => Some(active[0]),
        _ => None,
    };
    if let Some(only) = only {
        return if only.replicas == params.replicas {
            Vec::new()
        } else {
            vec![(only.name.clone(), params.replicas)]
        };
    }
    if active.is_empty() {
        return Vec::new();
    }
    if let Some(new) = new
        && new.replicas == params.replicas
        && new.desired_annotation == Some(params.replicas)
        && new.available == params.replicas
    {
        return active
            .iter()
            .filter(|s| s.name != new.name)
            .map(|s| (s.name.clone(), 0))
            .collect();
    }
    if !params.rolling {
        return Vec::new();
    }
    let mut sets: Vec<&Set> = active;
    let total: i32 = sets.iter().map(|s| s.replicas).sum();
    let allowed = if params.replicas > 0 {
        params.replicas + params.surge
    } else {
        0
    };
    let to_add = allowed - total;
    match to_add.cmp(&0) {
        // Larger first; among equals, newer first when growing and older first when
        // shrinking.
        Ordering::Greater => {
            sets.sort_by(|a, b| b.replicas.cmp(&a.replicas).then_with(|| by_creation(b, a)))
        }
        Ordering::Less => {
            sets.sort_by(|a, b| b.replicas.cmp(&a.replicas).then_with(|| by_creation(a, b)))
        }
        Ordering::Equal => {}
    }
    let mut added = 0;
    let mut sizes: Vec<(String, i32)> = Vec::with_capacity(sets.len());
    for set in &sets {
        let size = if to_add != 0 {
            let share = proportion(set, params, status_replicas, to_add, added);
            added += share;
            set.replicas + share
        } else {
            set.replicas
        };
        sizes.push((set.name.clone(), size));
    }
    if to_add != 0
        && let Some(first) = sizes.first_mut()
    {
        first.1 = (first.1 + to_add - added).max(0);
    }
    sizes
}

/// `GetReplicaSetProportion`.
fn proportion(set: &Set, params: &Params, status_replicas: i32, to_add: i32, added: i32) -> i32 {
    if set.replicas == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = fraction(set, params, status_replicas);
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

/// `getReplicaSetFraction`: how much a set grows (or shrinks) when the Deployment's
/// maximum size goes from what it was when the set was last sized to what it is now.
fn fraction(set: &Set, params: &Params, status_replicas: i32) -> i32 {
    if params.replicas == 0 {
        return -set.replicas;
    }
    let max_now = params.replicas + params.surge;
    let max_before = match set.max_annotation {
        Some(before) if before != 0 => before,
        _ if status_replicas == 0 => return 0,
        _ => status_replicas,
    };
    let scaled = f64::from(set.replicas) * f64::from(max_now) / f64::from(max_before);
    // The result is a replica count: it fits an i32.
    #[allow(clippy::cast_possible_truncation)]
    let rounded = scaled.round() as i32;
    rounded - set.replicas
}

/// A ReplicaSet's revision (0 when it has none).
pub fn revision(replica_set: &Value) -> i64 {
    object::metadata(replica_set)
        .and_then(|m| m.get("annotations"))
        .and_then(|a| a.get(REVISION_ANNOTATION))
        .and_then(Value::as_str)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// `cleanupDeployment`: the old ReplicaSets beyond the revision history limit that can go
/// (oldest revisions first; only those scaled to zero, with no pods, and whose status is
/// current).
pub fn to_clean_up<'a>(old: &[&'a Value], limit: i64) -> Vec<&'a Value> {
    let mut alive: Vec<&Value> = old
        .iter()
        .copied()
        .filter(|rs| object::deletion_timestamp(rs).is_none())
        .collect();
    let excess = i64::try_from(alive.len()).unwrap_or(i64::MAX) - limit.max(0);
    if excess <= 0 {
        return Vec::new();
    }
    alive.sort_by(|a, b| {
        revision(a)
            .cmp(&revision(b))
            .then_with(|| by_creation(&Set::of(a), &Set::of(b)))
    });
    alive
        .into_iter()
        .take(usize::try_from(excess).unwrap_or(usize::MAX))
        .filter(|rs| {
            int_at(rs, &["status", "replicas"]) == 0
                && int_at(rs, &["spec", "replicas"]) == 0
                && int_at(rs, &["metadata", "generation"])
                    <= int_at(rs, &["status", "observedGeneration"])
        })
        .collect()
}

#[cfg(test)]
mod tests;
