//! Deployments and ReplicaSets through the real kubectl, with their pods placed on
//! simulated hosts of a real `ronghe agent`: create, scale, self-healing, a rolling update
//! to a new image, `rollout status` and `rollout undo`, validation messages, and the
//! garbage collector taking ReplicaSets and pods with their Deployment.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, ensure};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};
use ronghe_testkit::{AgentProcess, Kubectl, ServerProcess};

use super::{BINARY, wait_for};

/// A server, two simulated hosts and a kubectl; `None` (loudly) without kubectl.
async fn setup() -> anyhow::Result<Option<(ServerProcess, AgentProcess, Kubectl)>> {
    let Some(kubectl) = Kubectl::find() else {
        eprintln!(
            "SKIPPED: kubectl is not installed on this machine (looked for kubectl.1.32 and kubectl)"
        );
        return Ok(None);
    };
    let server = ServerProcess::start(Path::new(BINARY), &[]).await?;
    let agent = AgentProcess::start(
        Path::new(BINARY),
        &server,
        &["--node-name", "sim", "--simulate", "2"],
    )?;
    let kubectl = Kubectl::new(kubectl, &server.kubeconfig_path())?;
    let nodes: Api<Node> = Api::all(server.client().await?);
    wait_for(Duration::from_secs(30), "two nodes", || async {
        Ok((nodes.list(&ListParams::default()).await?.items.len() == 2).then_some(()))
    })
    .await?;
    Ok(Some((server, agent, kubectl)))
}

fn active(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && !matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        )
}

fn bound(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty())
}

fn image(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

/// Whether the pod's runtime reports a Ready condition at all (true or false).
fn reports_readiness(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| conditions.iter().any(|c| c.type_ == "Ready"))
}

/// The active pods of `web`, once there are `count` and all are bound to a host.
async fn bound_pods(pods: &Api<Pod>, count: usize) -> anyhow::Result<Vec<Pod>> {
    wait_for(
        Duration::from_secs(60),
        &format!("{count} bound web pods"),
        || async {
            let list = pods.list(&ListParams::default().labels("app=web")).await?;
            let live: Vec<Pod> = list.items.into_iter().filter(active).collect();
            Ok((live.len() == count && live.iter().all(bound)).then_some(live))
        },
    )
    .await
}

fn name_of(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deployment_scales_heals_and_rolls_out() -> anyhow::Result<()> {
    let Some((server, _agent, kubectl)) = setup().await? else {
        return Ok(());
    };
    let client = server.client().await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let replica_sets: Api<ReplicaSet> = Api::namespaced(client, "default");

    let resources = kubectl.ok(&["api-resources", "--api-group=apps"])?;
    for wanted in [
        ["deployments", "deploy", "apps/v1", "true", "Deployment"],
        ["replicasets", "rs", "apps/v1", "true", "ReplicaSet"],
    ] {
        ensure!(
            resources
                .lines()
                .any(|l| l.split_whitespace().eq(wanted.iter().copied())),
            "api-resources lacks {wanted:?}:\n{resources}"
        );
    }

    let created = kubectl.ok(&[
        "create",
        "deployment",
        "web",
        "--image=busybox",
        "--replicas=3",
    ])?;
    ensure!(created.trim() == "deployment.apps/web created", "{created}");
    let first = bound_pods(&pods, 3).await?;
    let table = kubectl.ok(&["get", "deployments", "-o", "wide"])?;
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    ensure!(
        header
            == [
                "NAME",
                "READY",
                "UP-TO-DATE",
                "AVAILABLE",
                "AGE",
                "CONTAINERS",
                "IMAGES",
                "SELECTOR"
            ],
        "{table}"
    );
    ensure!(
        table.contains("busybox") && table.contains("app=web"),
        "{table}"
    );
    let rs_table = kubectl.ok(&["get", "rs"])?;
    ensure!(
        rs_table.starts_with("NAME") && rs_table.contains("DESIRED") && rs_table.contains("web-"),
        "{rs_table}"
    );
    let all = kubectl.ok(&["get", "all"])?;
    ensure!(
        all.contains("deployment.apps/web") && all.contains("replicaset.apps/web-"),
        "{all}"
    );

    // Scaled through the /scale subresource: five pods, all placed.
    let scaled = kubectl.ok(&["scale", "deployment", "web", "--replicas=5"])?;
    ensure!(scaled.trim() == "deployment.apps/web scaled", "{scaled}");
    let five = bound_pods(&pods, 5).await?;
    ensure!(
        first
            .iter()
            .all(|p| five.iter().any(|q| name_of(q) == name_of(p))),
        "scaling up keeps the pods there are"
    );

    // A deleted pod is replaced.
    let victim = name_of(&five[0]);
    kubectl.ok(&["delete", "pod", &victim, "--wait=false"])?;
    let healed = wait_for(Duration::from_secs(60), "a replacement pod", || async {
        let list = pods.list(&ListParams::default().labels("app=web")).await?;
        let live: Vec<Pod> = list.items.into_iter().filter(active).collect();
        let replaced =
            live.len() == 5 && live.iter().all(bound) && live.iter().all(|p| name_of(p) != victim);
        Ok(replaced.then_some(live))
    })
    .await?;
    ensure!(healed.iter().all(|p| image(p) == "busybox"));

    // A new image: a second ReplicaSet.
    let updated = kubectl.ok(&["set", "image", "deployment/web", "busybox=busybox:1.36"])?;
    ensure!(
        updated.trim() == "deployment.apps/web image updated",
        "{updated}"
    );
    let sets = wait_for(Duration::from_secs(30), "a second replicaset", || async {
        let list = replica_sets.list(&ListParams::default()).await?;
        Ok((list.items.len() == 2).then_some(list.items))
    })
    .await?;
    let revision = |rs: &ReplicaSet| {
        rs.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("deployment.kubernetes.io/revision").cloned())
            .unwrap_or_default()
    };
    let old = sets
        .iter()
        .find(|rs| revision(rs) == "1")
        .context("the first revision")?;
    let old_hash = old
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("pod-template-hash").cloned())
        .context("hash label")?;

    let any_readiness = pods
        .list(&ListParams::default().labels("app=web"))
        .await?
        .items
        .iter()
        .any(reports_readiness);
    ensure!(
        any_readiness,
        "the simulated hosts' fake driver reports pods ready"
    );

    let status = kubectl.ok(&["rollout", "status", "deployment/web", "--timeout=60s"])?;
    ensure!(
        status.contains("deployment \"web\" successfully rolled out"),
        "{status}"
    );
    let rolled = bound_pods(&pods, 5).await?;
    ensure!(
        rolled.iter().all(|p| image(p) == "busybox:1.36"),
        "every pod runs the new image"
    );
    wait_for(Duration::from_secs(60), "the old pods gone", || async {
        let list = pods
            .list(&ListParams::default().labels(&format!("pod-template-hash={old_hash}")))
            .await?;
        Ok(list.items.is_empty().then_some(()))
    })
    .await?;
    let history = kubectl.ok(&["rollout", "history", "deployment/web"])?;
    ensure!(history.contains('1') && history.contains('2'), "{history}");

    // Undo brings the first template back, as revision 3 of the first ReplicaSet.
    let undone = kubectl.ok(&["rollout", "undo", "deployment/web"])?;
    ensure!(
        undone.trim() == "deployment.apps/web rolled back",
        "{undone}"
    );
    let status = kubectl.ok(&["rollout", "status", "deployment/web", "--timeout=60s"])?;
    ensure!(status.contains("successfully rolled out"), "{status}");
    let back = bound_pods(&pods, 5).await?;
    ensure!(back.iter().all(|p| image(p) == "busybox"));
    let sets = replica_sets.list(&ListParams::default()).await?.items;
    ensure!(sets.len() == 2, "the first replicaset is reused");
    ensure!(
        sets.iter().any(|rs| revision(rs) == "3"
            && rs
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("pod-template-hash"))
                == Some(&old_hash)),
        "the first replicaset is revision 3"
    );

    // Deleting the Deployment takes its ReplicaSets and pods.
    kubectl.ok(&["delete", "deployment", "web"])?;
    wait_for(
        Duration::from_secs(60),
        "replicasets and pods gone",
        || async {
            let sets = replica_sets.list(&ListParams::default()).await?.items;
            let live = pods
                .list(&ListParams::default().labels("app=web"))
                .await?
                .items;
            Ok((sets.is_empty() && live.is_empty()).then_some(()))
        },
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_workloads_are_refused_with_kubernetes_wording() -> anyhow::Result<()> {
    let Some(kubectl) = Kubectl::find() else {
        eprintln!("SKIPPED: kubectl is not installed on this machine");
        return Ok(());
    };
    let server = ServerProcess::start(Path::new(BINARY), &[]).await?;
    let kubectl = Kubectl::new(kubectl, &server.kubeconfig_path())?;
    let mismatched = r#"{"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "bad"},
        "spec": {"selector": {"matchLabels": {"app": "x"}},
            "template": {"metadata": {"labels": {"app": "y"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}"#;
    let refused = kubectl.run(&["create", "-f", "-"], Some(mismatched))?;
    ensure!(!refused.success);
    ensure!(
        refused.stderr.contains(
            "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"y\"}: `selector` does not match template `labels`"
        ),
        "{}",
        refused.stderr
    );
    let negative = r#"{"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "bad"},
        "spec": {"replicas": -1, "selector": {"matchLabels": {"app": "x"}},
            "template": {"metadata": {"labels": {"app": "x"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}"#;
    let refused = kubectl.run(&["create", "-f", "-"], Some(negative))?;
    ensure!(!refused.success);
    ensure!(
        refused
            .stderr
            .contains("spec.replicas: Invalid value: -1: must be greater than or equal to 0"),
        "{}",
        refused.stderr
    );
    Ok(())
}
