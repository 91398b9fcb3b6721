//! Deployment controller passes against an engine over the in-memory store, with the
//! ReplicaSet controller making the pods and the tests reporting them ready.

use std::sync::Arc;

use ronghe_store::MemoryStore;
use serde_json::{Value, json};

use super::*;
use crate::controllers::replicaset::tests::{make_ready, replicaset_pass};
use crate::engine::PatchKind;
use crate::kinds::apps::POD_TEMPLATE_HASH_LABEL;

const NS: Option<&str> = Some("default");

struct Fixture {
    engine: Engine,
    kinds: Kinds,
}

/// What one round of passes left behind.
#[derive(Debug, Default)]
struct Round {
    /// Active pods after the round.
    pods: usize,
    /// Ready pods after the round.
    ready: usize,
}

impl Fixture {
    async fn new() -> Fixture {
        let registry = Arc::new(crate::kinds::builtin_registry().expect("registry"));
        let engine = Engine::new(Arc::new(MemoryStore::new()), registry);
        let namespaces = engine.kind("v1", "Namespace").expect("namespaces");
        engine
            .create(
                &namespaces,
                None,
                json!({"metadata": {"name": "default"}}),
                &WriteOptions::default(),
            )
            .await
            .expect("namespace");
        let kinds = Kinds::of(&engine).expect("kinds");
        Fixture { engine, kinds }
    }

    /// Runs both controllers (readying new pods with `ready`) until nothing changes;
    /// returns what each round left.
    async fn settle(&self, ready: bool) -> Vec<Round> {
        let mut rounds = Vec::new();
        for _ in 0..100 {
            let before = self.engine.store().current_revision().await.expect("rev");
            pass(&self.engine, &self.kinds, Timestamp::now())
                .await
                .expect("deployment pass");
            replicaset_pass(&self.engine).await;
            let pods = self.active_pods().await;
            if ready {
                for pod in pods.iter().filter(|p| !pods_ready(p)) {
                    make_ready(&self.engine, pod).await;
                }
            }
            let pods = self.active_pods().await;
            rounds.push(Round {
                pods: pods.len(),
                ready: pods.iter().filter(|p| pods_ready(p)).count(),
            });
            let after = self.engine.store().current_revision().await.expect("rev");
            if before == after {
                return rounds;
            }
        }
        panic!("the controllers did not settle: {rounds:?}");
    }

    async fn active_pods(&self) -> Vec<Value> {
        self.engine
            .list(&self.kinds.pods, NS, &ListOptions::default())
            .await
            .expect("pods")
            .items
            .into_iter()
            .filter(crate::controllers::replicaset::pods::is_active)
            .collect()
    }

    async fn deployment(&self, name: &str) -> Value {
        self.engine
            .get(&self.kinds.deployments, NS, name)
            .await
            .expect("deployment")
    }

    async fn replica_sets(&self) -> Vec<Value> {
        let mut sets = self
            .engine
            .list(&self.kinds.replica_sets, NS, &ListOptions::default())
            .await
            .expect("replicasets")
            .items;
        sets.sort_by_key(rollout::revision);
        sets
    }

    async fn patch(&self, name: &str, kind: PatchKind, patch: Value) {
        self.engine
            .patch(
                &self.kinds.deployments,
                NS,
                name,
                kind,
                patch,
                Target::Main,
                &WriteOptions::default(),
            )
            .await
            .expect("patch");
    }
}

fn pods_ready(pod: &Value) -> bool {
    crate::controllers::replicaset::pods::is_ready(pod)
}

fn web(replicas: i64, strategy: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"replicas": replicas, "strategy": strategy,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "busybox", "image": "busybox"}]}}}})
}

fn condition_reason(deployment: &Value, kind: &str) -> Option<String> {
    progress::get_condition(&deployment["status"], kind)
        .and_then(|c| c["reason"].as_str().map(str::to_owned))
}

fn annotation(object: &Value, key: &str) -> Option<String> {
    template::annotations(object)
        .get(key)
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// What `kubectl rollout status` waits for.
fn rolled_out(deployment: &Value) -> bool {
    let status = &deployment["status"];
    let count = |f: &str| status.get(f).and_then(Value::as_i64).unwrap_or(0);
    let replicas = int_at(deployment, &["spec", "replicas"]);
    int_at(deployment, &["metadata", "generation"]) <= count("observedGeneration")
        && count("updatedReplicas") == replicas
        && count("replicas") == count("updatedReplicas")
        && count("availableReplicas") == count("updatedReplicas")
}

#[tokio::test]
async fn a_rolling_update_replaces_every_pod_within_its_bounds() {
    let f = Fixture::new().await;
    let created = f
        .engine
        .create(
            &f.kinds.deployments,
            NS,
            web(4, json!({})),
            &WriteOptions::default(),
        )
        .await
        .expect("create")
        .object;

    // Without ready pods: one ReplicaSet at full size, not available.
    f.settle(false).await;
    let sets = f.replica_sets().await;
    assert_eq!(sets.len(), 1);
    let first = &sets[0];
    let hash = object::labels(first)[POD_TEMPLATE_HASH_LABEL].clone();
    assert_eq!(object::name(first), Some(format!("web-{hash}").as_str()));
    assert_eq!(
        first["spec"]["selector"]["matchLabels"][POD_TEMPLATE_HASH_LABEL],
        json!(hash)
    );
    assert_eq!(claim::controller_uid(first), object::uid(&created));
    assert_eq!(annotation(first, REVISION_ANNOTATION).as_deref(), Some("1"));
    assert_eq!(
        annotation(first, "deployment.kubernetes.io/desired-replicas").as_deref(),
        Some("4")
    );
    assert_eq!(first["spec"]["replicas"], 4);
    let pods = f.active_pods().await;
    assert_eq!(pods.len(), 4);
    assert!(
        pods.iter()
            .all(|p| object::labels(p)[POD_TEMPLATE_HASH_LABEL] == hash)
    );
    let deployment = f.deployment("web").await;
    assert_eq!(
        annotation(&deployment, REVISION_ANNOTATION).as_deref(),
        Some("1")
    );
    assert_eq!(deployment["status"]["updatedReplicas"], 4);
    assert_eq!(deployment["status"]["unavailableReplicas"], 4);
    assert_eq!(
        condition_reason(&deployment, "Available").as_deref(),
        Some("MinimumReplicasUnavailable")
    );
    assert!(!rolled_out(&deployment));

    // Ready pods finish the rollout.
    f.settle(true).await;
    let deployment = f.deployment("web").await;
    assert!(rolled_out(&deployment), "{}", deployment["status"]);
    assert_eq!(
        condition_reason(&deployment, "Progressing").as_deref(),
        Some("NewReplicaSetAvailable")
    );
    assert_eq!(
        condition_reason(&deployment, "Available").as_deref(),
        Some("MinimumReplicasAvailable")
    );

    // A new image: a second ReplicaSet takes over, never more than 4 + 1 pods (25% surge
    // rounds up) nor fewer than 4 - 1 ready (25% unavailable rounds down).
    f.patch(
        "web",
        PatchKind::Strategic,
        json!({"spec": {"template": {"spec": {"containers": [{"name": "busybox", "image": "busybox:1.36"}]}}}}),
    )
    .await;
    let rounds = f.settle(true).await;
    assert!(rounds.iter().all(|r| r.pods <= 5), "{rounds:?}");
    assert!(rounds.iter().all(|r| r.ready >= 3), "{rounds:?}");
    let sets = f.replica_sets().await;
    assert_eq!(sets.len(), 2);
    assert_eq!(sets[0]["spec"]["replicas"], 0, "the old set is emptied");
    assert_eq!(sets[1]["spec"]["replicas"], 4);
    assert_eq!(
        annotation(&sets[1], REVISION_ANNOTATION).as_deref(),
        Some("2")
    );
    let new_hash = object::labels(&sets[1])[POD_TEMPLATE_HASH_LABEL].clone();
    assert_ne!(new_hash, hash);
    let pods = f.active_pods().await;
    assert_eq!(pods.len(), 4);
    assert!(
        pods.iter()
            .all(|p| object::labels(p)[POD_TEMPLATE_HASH_LABEL] == new_hash),
        "the old pods are gone"
    );
    let deployment = f.deployment("web").await;
    assert!(rolled_out(&deployment), "{}", deployment["status"]);
    assert_eq!(
        annotation(&deployment, REVISION_ANNOTATION).as_deref(),
        Some("2")
    );

    // Scaled: the one active set follows.
    f.patch("web", PatchKind::Merge, json!({"spec": {"replicas": 6}}))
        .await;
    f.settle(true).await;
    assert_eq!(f.active_pods().await.len(), 6);
    assert!(rolled_out(&f.deployment("web").await));

    // Rolled back (what `kubectl rollout undo` patches): the first set returns as
    // revision 3, remembering it was revision 1.
    let old_template = {
        let mut template = sets[0]["spec"]["template"].clone();
        template["metadata"]["labels"]
            .as_object_mut()
            .expect("labels")
            .remove(POD_TEMPLATE_HASH_LABEL);
        template
    };
    f.patch(
        "web",
        PatchKind::Json,
        json!([{"op": "replace", "path": "/spec/template", "value": old_template}]),
    )
    .await;
    f.settle(true).await;
    let sets = f.replica_sets().await;
    assert_eq!(sets.len(), 2, "no third set: the first one is reused");
    let back = sets.last().expect("set");
    assert_eq!(object::labels(back)[POD_TEMPLATE_HASH_LABEL], hash);
    assert_eq!(annotation(back, REVISION_ANNOTATION).as_deref(), Some("3"));
    assert_eq!(
        annotation(back, "deployment.kubernetes.io/revision-history").as_deref(),
        Some("1")
    );
    assert_eq!(back["spec"]["replicas"], 6);
    assert!(rolled_out(&f.deployment("web").await));

    // History beyond the limit goes.
    f.patch(
        "web",
        PatchKind::Merge,
        json!({"spec": {"revisionHistoryLimit": 0}}),
    )
    .await;
    f.settle(true).await;
    let sets = f.replica_sets().await;
    assert_eq!(sets.len(), 1);
    assert_eq!(object::labels(&sets[0])[POD_TEMPLATE_HASH_LABEL], hash);
}

#[tokio::test]
async fn recreate_stops_every_old_pod_before_starting_new_ones() {
    let f = Fixture::new().await;
    f.engine
        .create(
            &f.kinds.deployments,
            NS,
            web(3, json!({"type": "Recreate"})),
            &WriteOptions::default(),
        )
        .await
        .expect("create");
    f.settle(true).await;
    assert!(rolled_out(&f.deployment("web").await));
    let first_hash = object::labels(&f.replica_sets().await[0])[POD_TEMPLATE_HASH_LABEL].clone();

    f.patch(
        "web",
        PatchKind::Strategic,
        json!({"spec": {"template": {"spec": {"containers": [{"name": "busybox", "image": "busybox:1.36"}]}}}}),
    )
    .await;
    // One round: the old set is emptied and no new one exists yet.
    pass(&f.engine, &f.kinds, Timestamp::now())
        .await
        .expect("pass");
    let sets = f.replica_sets().await;
    assert_eq!(sets.len(), 1);
    assert_eq!(sets[0]["spec"]["replicas"], 0);
    let rounds = f.settle(true).await;
    // Old and new pods never run together.
    assert!(rounds.iter().all(|r| r.pods <= 3), "{rounds:?}");
    let pods = f.active_pods().await;
    assert_eq!(pods.len(), 3);
    assert!(
        pods.iter()
            .all(|p| object::labels(p)[POD_TEMPLATE_HASH_LABEL] != first_hash)
    );
    assert!(rolled_out(&f.deployment("web").await));
}

#[tokio::test]
async fn orphaned_replica_sets_are_adopted_by_a_matching_deployment() {
    let f = Fixture::new().await;
    // What `kubectl delete deployment web --cascade=orphan` and a re-create leave.
    let mut deployment = web(2, json!({}));
    default_template_of(&f, &mut deployment).await;
    let template = deployment["spec"]["template"].clone();
    let hash = template::hash(&template, None);
    let mut orphan = template::new_replica_set(&deployment, &hash, 2, Default::default());
    object::metadata_mut(&mut orphan).remove("ownerReferences");
    f.engine
        .create(&f.kinds.replica_sets, NS, orphan, &WriteOptions::default())
        .await
        .expect("orphan");
    let created = f
        .engine
        .create(
            &f.kinds.deployments,
            NS,
            web(2, json!({})),
            &WriteOptions::default(),
        )
        .await
        .expect("create")
        .object;
    f.settle(true).await;
    let sets = f.replica_sets().await;
    assert_eq!(sets.len(), 1, "the orphan is reused, not duplicated");
    assert_eq!(claim::controller_uid(&sets[0]), object::uid(&created));
    assert!(rolled_out(&f.deployment("web").await));
}

/// Fills in the defaults the API would, so a template hashes as a stored one does.
async fn default_template_of(f: &Fixture, deployment: &mut Value) {
    let written = f
        .engine
        .create(
            &f.kinds.deployments,
            NS,
            json!({"metadata": {"name": "scratch"}, "spec": deployment["spec"].clone()}),
            &WriteOptions {
                dry_run: true,
                ..WriteOptions::default()
            },
        )
        .await
        .expect("dry run");
    deployment["spec"] = written.object["spec"].clone();
    deployment["metadata"]["uid"] = json!("none");
}
