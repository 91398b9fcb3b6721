//! A Deployment's ReplicaSets as values, without I/O: the pod-template hash that names
//! them and labels their pods, which ReplicaSet runs the current template, the new
//! ReplicaSet to create, and the annotations (revision, sizes, the Deployment's own) a
//! ReplicaSet carries.

use serde_json::{Map, Value, json};

use super::rollout::{Params, by_creation};
use crate::kinds::apps::{
    DESIRED_REPLICAS_ANNOTATION, MAX_REPLICAS_ANNOTATION, POD_TEMPLATE_HASH_LABEL,
    REVISION_ANNOTATION, REVISION_HISTORY_ANNOTATION,
};
use crate::object;

/// How long `deployment.kubernetes.io/revision-history` may grow.
const REVISION_HISTORY_MAX_CHARS: usize = 2000;

/// Annotations of a Deployment that its ReplicaSets do not copy.
const NOT_COPIED: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION_ANNOTATION,
    REVISION_HISTORY_ANNOTATION,
    DESIRED_REPLICAS_ANNOTATION,
    MAX_REPLICAS_ANNOTATION,
    "deprecated.deployment.rollback.to",
];

/// The pod-template hash, as Kubernetes computes it: FNV-1a (32 bits) over the template
/// (here its JSON with sorted keys) and the collision count, printed in decimal and each
/// digit mapped to a letter or digit that cannot spell words.
pub fn hash(template: &Value, collision_count: Option<i64>) -> String {
    let mut hasher = Fnv32a::default();
    write_canonical(template, &mut hasher);
    if let Some(count) = collision_count {
        // Kubernetes hashes the count as 8 bytes: the 32-bit value, little-endian, padded.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let count = count as u32;
        hasher.write(&u64::from(count).to_le_bytes());
    }
    safe_encode(&hasher.0.to_string())
}

/// `rand.SafeEncodeString`: no vowels, no look-alike characters.
fn safe_encode(text: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    text.bytes()
        .map(|b| ALPHANUMS[usize::from(b) % ALPHANUMS.len()] as char)
        .collect()
}

struct Fnv32a(u32);

impl Default for Fnv32a {
    fn default() -> Self {
        Self(0x811c_9dc5)
    }
}

impl Fnv32a {
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u32::from(*byte);
            self.0 = self.0.wrapping_mul(0x0100_0193);
        }
    }
}

/// JSON with object keys sorted, so equal templates hash equally whatever their key order.
fn write_canonical(value: &Value, out: &mut Fnv32a) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.write(b"{");
            for (index, key) in keys.into_iter().enumerate() {
                if index > 0 {
                    out.write(b",");
                }
                out.write(Value::String(key.clone()).to_string().as_bytes());
                out.write(b":");
                write_canonical(&map[key], out);
            }
            out.write(b"}");
        }
        Value::Array(items) => {
            out.write(b"[");
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.write(b",");
                }
                write_canonical(item, out);
            }
            out.write(b"]");
        }
        other => out.write(other.to_string().as_bytes()),
    }
}

/// A template without the pod-template-hash label (and without labels at all if that was
/// the only one: Kubernetes compares nil and empty maps as equal).
fn without_hash(template: Option<&Value>) -> Value {
    let mut template = template.cloned().unwrap_or_else(|| json!({}));
    if let Some(metadata) = template.get_mut("metadata").and_then(Value::as_object_mut) {
        if let Some(Value::Object(labels)) = metadata.get_mut("labels") {
            labels.remove(POD_TEMPLATE_HASH_LABEL);
        }
        for field in ["labels", "annotations"] {
            if metadata
                .get(field)
                .is_some_and(|v| v.is_null() || v.as_object().is_some_and(Map::is_empty))
            {
                metadata.remove(field);
            }
        }
        if metadata.is_empty() {
            object::ensure_object(&mut template).remove("metadata");
        }
    }
    template
}

/// `EqualIgnoreHash`: whether two pod templates are the same but for the hash label.
pub fn equal_ignore_hash(a: Option<&Value>, b: Option<&Value>) -> bool {
    without_hash(a) == without_hash(b)
}

/// `FindNewReplicaSet`: the oldest ReplicaSet running the Deployment's current template.
pub fn find_new<'a>(deployment: &Value, sets: &[&'a Value]) -> Option<&'a Value> {
    let template = deployment.pointer("/spec/template");
    let mut sorted: Vec<&Value> = sets.to_vec();
    sorted.sort_by(|a, b| by_creation(&super::rollout::Set::of(a), &super::rollout::Set::of(b)));
    sorted
        .into_iter()
        .find(|rs| equal_ignore_hash(rs.pointer("/spec/template"), template))
}

/// The ReplicaSet for the Deployment's current template: `<deployment>-<hash>`, its
/// selector and template labelled with the hash, owned by the Deployment.
pub fn new_replica_set(
    deployment: &Value,
    hash: &str,
    replicas: i32,
    annotations: Map<String, Value>,
) -> Value {
    let mut template = deployment
        .pointer("/spec/template")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let labels = object::ensure_object(
        object::metadata_mut(&mut template)
            .entry("labels")
            .or_insert_with(|| json!({})),
    );
    labels.insert(POD_TEMPLATE_HASH_LABEL.into(), json!(hash));
    let labels = Value::Object(labels.clone());
    let mut selector = deployment
        .pointer("/spec/selector")
        .cloned()
        .unwrap_or_else(|| json!({}));
    object::ensure_object(
        object::ensure_object(&mut selector)
            .entry("matchLabels")
            .or_insert_with(|| json!({})),
    )
    .insert(POD_TEMPLATE_HASH_LABEL.into(), json!(hash));
    let mut metadata = Map::new();
    metadata.insert(
        "name".into(),
        json!(format!(
            "{}-{hash}",
            object::name(deployment).unwrap_or_default()
        )),
    );
    metadata.insert("labels".into(), labels);
    if !annotations.is_empty() {
        metadata.insert("annotations".into(), Value::Object(annotations));
    }
    metadata.insert(
        "ownerReferences".into(),
        json!([crate::controllers::replicaset::pods::controller_ref(
            deployment
        )]),
    );
    let mut spec = Map::new();
    spec.insert("replicas".into(), json!(replicas));
    if let Some(min_ready) = deployment.pointer("/spec/minReadySeconds") {
        spec.insert("minReadySeconds".into(), min_ready.clone());
    }
    spec.insert("selector".into(), selector);
    spec.insert("template".into(), template);
    json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": metadata, "spec": spec})
}

/// An object's annotations as a map (empty when it has none).
pub fn annotations(object: &Value) -> Map<String, Value> {
    object::metadata(object)
        .and_then(|m| m.get("annotations"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

/// `SetNewReplicaSetAnnotations`: copies the Deployment's annotations, raises the
/// ReplicaSet's revision to `new_revision` (keeping the ones it had, when a rollback
/// brings it back, in the revision history), and sizes a ReplicaSet about to be created.
/// Returns whether anything changed.
pub fn sync_new_annotations(
    deployment: &Value,
    annotations: &mut Map<String, Value>,
    new_revision: i64,
    exists: bool,
    params: &Params,
) -> bool {
    let mut changed = false;
    for (key, value) in annotations_of_deployment(deployment) {
        if annotations.get(&key) != Some(&value) {
            annotations.insert(key, value);
            changed = true;
        }
    }
    let old = annotations.get(REVISION_ANNOTATION).and_then(Value::as_str);
    let old_revision = match old.map(str::parse::<i64>) {
        None => 0,
        Some(Ok(revision)) => revision,
        // Not a number: leave it to a human.
        Some(Err(_)) => return changed,
    };
    if old_revision < new_revision {
        if let Some(old) = old.map(str::to_owned) {
            let history = annotations
                .get(REVISION_HISTORY_ANNOTATION)
                .and_then(Value::as_str)
                .unwrap_or_default();
            let mut revisions: Vec<&str> = history.split(',').filter(|r| !r.is_empty()).collect();
            revisions.push(&old);
            while revisions.join(",").len() > REVISION_HISTORY_MAX_CHARS && revisions.len() > 1 {
                revisions.remove(0);
            }
            let history = revisions.join(",");
            annotations.insert(REVISION_HISTORY_ANNOTATION.into(), json!(history));
        }
        annotations.insert(REVISION_ANNOTATION.into(), json!(new_revision.to_string()));
        changed = true;
    }
    if !exists {
        changed |= set_size_annotations(annotations, params);
    }
    changed
}

/// The Deployment's annotations a ReplicaSet copies.
fn annotations_of_deployment(deployment: &Value) -> impl Iterator<Item = (String, Value)> {
    annotations(deployment)
        .into_iter()
        .filter(|(key, _)| !NOT_COPIED.contains(&key.as_str()))
}

/// `SetReplicasAnnotations`: the Deployment's replicas and maximum size (with surge) when
/// it sized this ReplicaSet. Returns whether they changed.
pub fn set_size_annotations(annotations: &mut Map<String, Value>, params: &Params) -> bool {
    let mut changed = false;
    for (key, value) in [
        (DESIRED_REPLICAS_ANNOTATION, params.replicas),
        (MAX_REPLICAS_ANNOTATION, params.replicas + params.surge),
    ] {
        let value = json!(value.to_string());
        if annotations.get(key) != Some(&value) {
            annotations.insert(key.into(), value);
            changed = true;
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "uid": "d1", "annotations": {
                "kubernetes.io/change-cause": "first", REVISION_ANNOTATION: "1"}},
            "spec": {"replicas": 3, "minReadySeconds": 2,
                "strategy": {"type": "RollingUpdate",
                    "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})
    }

    #[test]
    fn the_hash_is_stable_and_changes_with_the_template_and_collisions() {
        let d = deployment();
        let template = &d["spec"]["template"];
        let first = hash(template, None);
        assert_eq!(first, hash(template, None));
        assert!(first.len() <= 10 && !first.is_empty(), "{first}");
        assert!(
            first
                .chars()
                .all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c))
        );
        let reordered: Value =
            serde_json::from_str(r#"{"spec": {"containers": [{"image": "busybox", "name": "c"}]}, "metadata": {"labels": {"app": "web"}}}"#)
                .expect("json");
        assert_eq!(hash(&reordered, None), first);
        let mut changed = template.clone();
        changed["spec"]["containers"][0]["image"] = json!("busybox:1.36");
        assert_ne!(hash(&changed, None), first);
        assert_ne!(hash(template, Some(1)), first);
        let mut fnv = Fnv32a::default();
        fnv.write(b"a");
        assert_eq!(fnv.0, 0xe40c_292c, "FNV-1a's published value for \"a\"");
        assert_eq!(safe_encode("2166136261"), "65bb57b6b5");
    }

    #[test]
    fn new_replica_sets_carry_the_hash_and_an_owner() {
        let d = deployment();
        let rs = new_replica_set(&d, "abc", 1, Map::new());
        assert_eq!(rs["metadata"]["name"], "web-abc");
        assert_eq!(
            rs["metadata"]["labels"],
            json!({"app": "web", "pod-template-hash": "abc"})
        );
        assert_eq!(
            rs["spec"]["selector"],
            json!({"matchLabels": {"app": "web", "pod-template-hash": "abc"}})
        );
        assert_eq!(
            rs["spec"]["template"]["metadata"]["labels"]["pod-template-hash"],
            "abc"
        );
        assert_eq!(rs["spec"]["minReadySeconds"], 2);
        assert_eq!(rs["metadata"]["ownerReferences"][0]["kind"], "Deployment");
        assert_eq!(rs["metadata"]["ownerReferences"][0]["controller"], true);
        assert!(equal_ignore_hash(
            rs.pointer("/spec/template"),
            d.pointer("/spec/template")
        ));
        let found = find_new(&d, &[&rs]);
        assert_eq!(found.and_then(object::name), Some("web-abc"));
        let mut other = d.clone();
        other["spec"]["template"]["spec"]["containers"][0]["image"] = json!("x");
        assert!(find_new(&other, &[&rs]).is_none());
    }

    #[test]
    fn annotations_follow_revisions() {
        let d = deployment();
        let params = Params::of(&d);
        let mut fresh = Map::new();
        assert!(sync_new_annotations(&d, &mut fresh, 2, false, &params));
        assert_eq!(
            Value::Object(fresh.clone()),
            json!({"kubernetes.io/change-cause": "first", REVISION_ANNOTATION: "2",
                DESIRED_REPLICAS_ANNOTATION: "3", MAX_REPLICAS_ANNOTATION: "4"})
        );
        assert!(!sync_new_annotations(&d, &mut fresh, 2, true, &params));
        // Rolled back to: the old revision goes into the history.
        assert!(sync_new_annotations(&d, &mut fresh, 5, true, &params));
        assert_eq!(fresh[REVISION_ANNOTATION], "5");
        assert_eq!(fresh[REVISION_HISTORY_ANNOTATION], "2");
        assert!(sync_new_annotations(&d, &mut fresh, 7, true, &params));
        assert_eq!(fresh[REVISION_HISTORY_ANNOTATION], "2,5");
    }
}
