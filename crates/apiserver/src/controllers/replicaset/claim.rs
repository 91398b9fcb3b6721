//! Controller references, as kube-controller-manager's `ControllerRefManager` keeps
//! them: an owner claims the objects its selector matches, adopts matching orphans and
//! releases what it controls but no longer matches. Shared by the ReplicaSet controller
//! (claiming pods) and the Deployment controller (claiming ReplicaSets).

use ronghe_api_types::selector::LabelSelector;
use serde_json::Value;

use crate::engine::{Engine, Target, WriteOptions};
use crate::error::ApiResult;
use crate::object;
use crate::registry::KindSpec;

/// What an owner does with one object of its namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Controlled by the owner and matching its selector.
    Owned,
    /// A matching orphan the owner may take.
    Adopt,
    /// Controlled by the owner but no longer matching: let go of it.
    Release,
    /// Someone else's, or nothing to do with the owner.
    Ignore,
}

/// The uid of the object's controller, if it has one.
pub fn controller_uid(object: &Value) -> Option<&str> {
    object::value_at(object, &["metadata", "ownerReferences"])
        .and_then(Value::as_array)?
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))?
        .get("uid")
        .and_then(Value::as_str)
}

/// How `owner` (with its parsed `selector`) stands towards `object`.
pub fn claim(owner: &Value, selector: &LabelSelector, object: &Value) -> Claim {
    let owner_deleting = object::deletion_timestamp(owner).is_some();
    let matches = !selector.is_empty() && selector.matches(&object::labels(object));
    match controller_uid(object) {
        Some(uid) if Some(uid) == object::uid(owner) => {
            if matches {
                Claim::Owned
            } else if owner_deleting {
                Claim::Ignore
            } else {
                Claim::Release
            }
        }
        Some(_) => Claim::Ignore,
        None if matches
            && !owner_deleting
            && object::deletion_timestamp(object).is_none()
            && object::namespace(object) == object::namespace(owner) =>
        {
            Claim::Adopt
        }
        None => Claim::Ignore,
    }
}

/// Makes `owner` the controller of `object`, unless it gained a controller, stopped
/// matching or started going away meanwhile (re-checked on the fresh copy). Returns the
/// object as stored, or `None` if it was not adopted.
pub async fn adopt(
    engine: &Engine,
    kind: &KindSpec,
    owner: &Value,
    selector: &LabelSelector,
    object: &Value,
) -> ApiResult<Option<Value>> {
    let reference = super::pods::controller_ref(owner);
    let written = engine
        .update_with(
            kind,
            object::namespace(object),
            object::name(object).unwrap_or_default(),
            None,
            Target::Main,
            &WriteOptions::default(),
            |current| {
                let mut next = current.clone();
                if object::uid(current) != object::uid(object)
                    || claim(owner, selector, current) != Claim::Adopt
                {
                    return Ok(next);
                }
                let metadata = object::metadata_mut(&mut next);
                let references = metadata
                    .entry("ownerReferences")
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(references) = references {
                    references.push(reference.clone());
                }
                Ok(next)
            },
        )
        .await;
    match written {
        Ok(written) => {
            Ok((controller_uid(&written.object) == object::uid(owner)).then_some(written.object))
        }
        Err(error) if error.code() == 404 => Ok(None),
        Err(error) => Err(error),
    }
}

/// Removes `owner`'s reference from `object`.
pub async fn release(
    engine: &Engine,
    kind: &KindSpec,
    owner: &Value,
    object: &Value,
) -> ApiResult<()> {
    let owner_uid = object::uid(owner).unwrap_or_default();
    let result = engine
        .update_with(
            kind,
            object::namespace(object),
            object::name(object).unwrap_or_default(),
            None,
            Target::Main,
            &WriteOptions::default(),
            |current| {
                let mut next = current.clone();
                if object::uid(current) != object::uid(object) {
                    return Ok(next);
                }
                let metadata = object::metadata_mut(&mut next);
                if let Some(Value::Array(references)) = metadata.get_mut("ownerReferences") {
                    references.retain(|r| r.get("uid").and_then(Value::as_str) != Some(owner_uid));
                    if references.is_empty() {
                        metadata.remove("ownerReferences");
                    }
                }
                Ok(next)
            },
        )
        .await;
    match result {
        Err(error) if error.code() != 404 => Err(error),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn owner() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "rs", "namespace": "ns", "uid": "owner"}})
    }

    fn pod(labels: Value, controller: Option<&str>) -> Value {
        let mut pod =
            json!({"metadata": {"name": "p", "namespace": "ns", "uid": "p1", "labels": labels}});
        if let Some(uid) = controller {
            pod["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": "x", "uid": uid, "controller": true}]);
        }
        pod
    }

    #[test]
    fn claims_follow_the_controller_ref_manager() {
        let selector = LabelSelector::parse("app=web").expect("selector");
        let owner = owner();
        let web = json!({"app": "web"});
        let other = json!({"app": "db"});
        assert_eq!(
            claim(&owner, &selector, &pod(web.clone(), Some("owner"))),
            Claim::Owned
        );
        assert_eq!(
            claim(&owner, &selector, &pod(other.clone(), Some("owner"))),
            Claim::Release
        );
        assert_eq!(
            claim(&owner, &selector, &pod(web.clone(), None)),
            Claim::Adopt
        );
        assert_eq!(
            claim(&owner, &selector, &pod(web.clone(), Some("someone"))),
            Claim::Ignore
        );
        assert_eq!(claim(&owner, &selector, &pod(other, None)), Claim::Ignore);
        let mut leaving = owner.clone();
        leaving["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        assert_eq!(
            claim(&leaving, &selector, &pod(web.clone(), None)),
            Claim::Ignore
        );
        let mut elsewhere = pod(web, None);
        elsewhere["metadata"]["namespace"] = json!("other");
        assert_eq!(claim(&owner, &selector, &elsewhere), Claim::Ignore);
    }
}
