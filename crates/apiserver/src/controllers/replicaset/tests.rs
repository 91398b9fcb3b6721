//! ReplicaSet controller passes against an engine over the in-memory store, with pod
//! readiness set by the tests as a host's runtime would report it.

use std::sync::Arc;

use ronghe_store::MemoryStore;
use serde_json::{Value, json};

use super::*;
use crate::engine::{PatchKind, Written};

struct Fixture {
    engine: Engine,
    kinds: Kinds,
}

const NS: Option<&str> = Some("default");

impl Fixture {
    pub async fn new() -> Fixture {
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

    async fn pass(&self) {
        pass(&self.engine, &self.kinds, Timestamp::now())
            .await
            .expect("pass");
    }

    async fn create(&self, kind: &KindSpec, body: Value) -> Written {
        self.engine
            .create(kind, NS, body, &WriteOptions::default())
            .await
            .expect("create")
    }

    async fn replica_set(&self, name: &str) -> Value {
        self.engine
            .get(&self.kinds.replica_sets, NS, name)
            .await
            .expect("replicaset")
    }

    async fn pods(&self) -> Vec<Value> {
        self.engine
            .list(&self.kinds.pods, NS, &ListOptions::default())
            .await
            .expect("pods")
            .items
    }

    async fn patch(&self, kind: &KindSpec, name: &str, patch: Value, target: Target) {
        self.engine
            .patch(
                kind,
                NS,
                name,
                PatchKind::Merge,
                patch,
                target,
                &WriteOptions::default(),
            )
            .await
            .expect("patch");
    }
}

/// One pass of the ReplicaSet controller, for other controllers' tests.
pub(crate) async fn replicaset_pass(engine: &Engine) {
    let kinds = Kinds::of(engine).expect("kinds");
    pass(engine, &kinds, Timestamp::now())
        .await
        .expect("replicaset pass");
}

/// Reports a pod running and ready, as the host's runtime does.
pub(crate) async fn make_ready(engine: &Engine, pod: &Value) {
    let pods = engine.kind("v1", "Pod").expect("pods");
    let now = object::now_rfc3339();
    engine
        .patch(
            &pods,
            object::namespace(pod),
            object::name(pod).unwrap_or_default(),
            PatchKind::Merge,
            json!({"status": {"phase": "Running", "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": now}],
                "containerStatuses": [{"name": "c", "ready": true, "restartCount": 0,
                    "image": "busybox", "imageID": "", "state": {"running": {}}}]}}),
            Target::Status,
            &WriteOptions::default(),
        )
        .await
        .expect("ready");
}

fn replica_set(name: &str, replicas: i64) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})
}

fn owner_uid(pod: &Value) -> Option<&str> {
    claim::controller_uid(pod)
}

#[tokio::test]
async fn keeps_the_desired_count_and_replaces_deleted_pods() {
    let f = Fixture::new().await;
    let rs = f
        .create(&f.kinds.replica_sets, replica_set("web", 3))
        .await
        .object;
    f.pass().await;
    let pods = f.pods().await;
    assert_eq!(pods.len(), 3);
    for pod in &pods {
        let name = object::name(pod).expect("name");
        assert!(
            name.starts_with("web-") && name.len() == "web-".len() + 5,
            "{name}"
        );
        assert_eq!(owner_uid(pod), object::uid(&rs));
        assert_eq!(
            pod["metadata"]["ownerReferences"][0]["blockOwnerDeletion"],
            true
        );
        assert_eq!(object::labels(pod)["app"], "web");
    }
    let status = &f.replica_set("web").await["status"];
    assert_eq!(
        status,
        &json!({"replicas": 3, "fullyLabeledReplicas": 3, "observedGeneration": 1})
    );

    // Two report ready: the status counts them.
    make_ready(&f.engine, &pods[0]).await;
    make_ready(&f.engine, &pods[1]).await;
    f.pass().await;
    let status = &f.replica_set("web").await["status"];
    assert_eq!(status["readyReplicas"], 2);
    assert_eq!(status["availableReplicas"], 2);

    // A deleted pod is replaced.
    let gone = object::name(&pods[0]).expect("name").to_owned();
    f.engine
        .delete(&f.kinds.pods, NS, &gone, &DeleteOptions::default())
        .await
        .expect("delete");
    f.pass().await;
    let pods = f.pods().await;
    assert_eq!(pods.len(), 3);
    assert!(pods.iter().all(|p| object::name(p) != Some(gone.as_str())));

    // Scaled down to one: the ready pod stays, the unready replacement goes first.
    f.patch(
        &f.kinds.replica_sets,
        "web",
        json!({"spec": {"replicas": 1}}),
        Target::Main,
    )
    .await;
    f.pass().await;
    let pods = f.pods().await;
    assert_eq!(pods.len(), 1);
    assert!(pods::is_ready(&pods[0]));
    let rs = f.replica_set("web").await;
    assert_eq!(rs["status"]["replicas"], 1);
    assert_eq!(rs["status"]["observedGeneration"], 2);
}

#[tokio::test]
async fn adopts_orphans_and_releases_pods_that_stop_matching() {
    let f = Fixture::new().await;
    let orphan = f
        .create(
            &f.kinds.pods,
            json!({"metadata": {"name": "orphan", "labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
        )
        .await
        .object;
    let rs = f
        .create(&f.kinds.replica_sets, replica_set("web", 2))
        .await
        .object;
    f.pass().await;
    let pods = f.pods().await;
    assert_eq!(pods.len(), 2, "the orphan counts as one of the two");
    let adopted = pods
        .iter()
        .find(|p| object::name(p) == Some("orphan"))
        .expect("orphan kept");
    assert_eq!(owner_uid(adopted), object::uid(&rs));
    assert_eq!(object::uid(adopted), object::uid(&orphan));

    f.patch(
        &f.kinds.pods,
        "orphan",
        json!({"metadata": {"labels": {"app": "other"}}}),
        Target::Main,
    )
    .await;
    f.pass().await;
    let pods = f.pods().await;
    assert_eq!(pods.len(), 3, "a replacement for the released pod");
    let released = pods
        .iter()
        .find(|p| object::name(p) == Some("orphan"))
        .expect("released, not deleted");
    assert!(released["metadata"].get("ownerReferences").is_none());
}

#[tokio::test]
async fn a_quota_stops_creation_and_is_reported() {
    let f = Fixture::new().await;
    let quotas = f.engine.kind("v1", "ResourceQuota").expect("quotas");
    f.create(
        &quotas,
        json!({"metadata": {"name": "q"}, "spec": {"hard": {"pods": "1"}}}),
    )
    .await;
    f.create(&f.kinds.replica_sets, replica_set("web", 3)).await;
    f.pass().await;
    assert_eq!(f.pods().await.len(), 1);
    let rs = f.replica_set("web").await;
    let condition = &rs["status"]["conditions"][0];
    assert_eq!(condition["type"], "ReplicaFailure");
    assert_eq!(condition["reason"], "FailedCreate");
    let message = condition["message"].as_str().expect("message");
    assert!(message.contains("exceeded quota: q"), "{message}");

    // Room again: the failure clears.
    f.patch(
        &quotas,
        "q",
        json!({"spec": {"hard": {"pods": "5"}}}),
        Target::Main,
    )
    .await;
    f.pass().await;
    assert_eq!(f.pods().await.len(), 3);
    let rs = f.replica_set("web").await;
    assert!(rs["status"].get("conditions").is_none(), "{rs}");
}

#[tokio::test]
async fn a_replica_set_being_deleted_makes_no_pods() {
    let f = Fixture::new().await;
    let mut body = replica_set("web", 2);
    body["metadata"]["finalizers"] = json!(["example.com/hold"]);
    f.create(&f.kinds.replica_sets, body).await;
    f.engine
        .delete(&f.kinds.replica_sets, NS, "web", &DeleteOptions::default())
        .await
        .expect("delete");
    f.pass().await;
    assert!(f.pods().await.is_empty());
}
