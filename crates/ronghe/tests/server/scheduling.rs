//! One scheduler over one pool: simulated hosts joined by a real `ronghe agent`, pods
//! placed by their requests, refused with kube-scheduler's reasons when nothing fits, and
//! placed as soon as room is freed; the allocation ledger follows.

use std::time::Duration;

use anyhow::{Context, ensure};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use ronghe_testkit::AgentProcess;
use serde_json::{Value, json};

use super::{BINARY, server, wait_for};

fn pod(name: &str, cpu: &str) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "main", "image": "busybox",
            "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}}}]},
    }))?)
}

async fn node_of(pods: &Api<Pod>, name: &str) -> anyhow::Result<Option<String>> {
    let pod = pods.get(name).await?;
    Ok(pod.spec.and_then(|s| s.node_name).filter(|n| !n.is_empty()))
}

#[tokio::test(flavor = "multi_thread")]
async fn pods_share_one_pool_and_wait_for_room() -> anyhow::Result<()> {
    let server = server().await?;
    let _agent = AgentProcess::start(
        std::path::Path::new(BINARY),
        &server,
        &[
            "--node-name",
            "sim",
            "--simulate",
            "2",
            "--vcpus",
            "4",
            "--memory-mb",
            "4096",
        ],
    )?;
    let client = server.client().await?;
    let nodes: Api<Node> = Api::all(client.clone());
    wait_for(Duration::from_secs(20), "two ready nodes", || async {
        let list = nodes.list(&Default::default()).await?;
        Ok((list.items.len() == 2).then_some(()))
    })
    .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let post = PostParams::default();

    // Four pods of 2 CPUs fill two hosts of 4 CPUs, two each (spread).
    for name in ["a", "b", "c", "d"] {
        pods.create(&post, &pod(name, "2")?).await?;
    }
    let mut placed = Vec::new();
    for name in ["a", "b", "c", "d"] {
        let node = wait_for(Duration::from_secs(20), &format!("{name} bound"), || {
            node_of(&pods, name)
        })
        .await?;
        placed.push(node);
    }
    placed.sort();
    ensure!(
        placed == ["sim-00000", "sim-00000", "sim-00001", "sim-00001"],
        "{placed:?}"
    );

    // A fifth stays pending with the reason, and is placed once a pod goes.
    pods.create(&post, &pod("e", "1")?).await?;
    let message = wait_for(Duration::from_secs(20), "e unschedulable", || async {
        let pod = pods.get("e").await?;
        let condition = pod
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.type_ == "PodScheduled" && c.status == "False");
        Ok(condition.and_then(|c| c.message))
    })
    .await?;
    ensure!(
        message == "0/2 nodes are available: 2 Insufficient cpu.",
        "{message}"
    );
    ensure!(node_of(&pods, "e").await?.is_none(), "e must stay pending");
    let freed = node_of(&pods, "a").await?.context("a's node")?;
    pods.delete("a", &DeleteParams::default()).await?;
    let node = wait_for(Duration::from_secs(20), "e bound", || node_of(&pods, "e")).await?;
    ensure!(
        node == freed,
        "e went to {node}, not the host a freed ({freed})"
    );

    // The ledger on that host holds e and the pod beside it, not a.
    let providers = ronghe_testkit::raw_request(
        &client,
        "GET",
        &format!("/apis/placement.ronghe.io/v1/resourceproviders/{node}"),
        None,
        Vec::new(),
    )
    .await?;
    ensure!(providers.0 == 200, "{}", providers.1);
    let allocations: Vec<&Value> = providers.1["status"]["allocations"]
        .as_object()
        .context("allocations")?
        .values()
        .collect();
    let mut names: Vec<&str> = allocations
        .iter()
        .filter_map(|a| a["name"].as_str())
        .collect();
    names.sort();
    ensure!(
        names.len() == 2 && names.contains(&"e") && !names.contains(&"a"),
        "{names:?}"
    );
    ensure!(
        allocations
            .iter()
            .any(|a| a["resources"] == json!({"VCPU": "1", "MEMORY_MB": "64"})),
        "{allocations:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_node_is_marked_unreachable_and_avoided() -> anyhow::Result<()> {
    let server = ronghe_testkit::ServerProcess::start(
        std::path::Path::new(BINARY),
        &["--node-grace-seconds", "2"],
    )
    .await?;
    let agent = AgentProcess::start(
        std::path::Path::new(BINARY),
        &server,
        &[
            "--node-name",
            "quiet",
            "--simulate",
            "1",
            "--lease-interval-seconds",
            "1",
        ],
    )?;
    let client = server.client().await?;
    let nodes: Api<Node> = Api::all(client.clone());
    let ready = |wanted: &'static str| {
        let nodes = nodes.clone();
        async move {
            let Ok(node) = nodes.get("quiet-00000").await else {
                return Ok(None);
            };
            let status = node
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .into_iter()
                .find(|c| c.type_ == "Ready")
                .map(|c| c.status);
            let tainted = node
                .spec
                .and_then(|s| s.taints)
                .unwrap_or_default()
                .iter()
                .any(|t| t.key == "node.kubernetes.io/unreachable");
            anyhow::Ok(
                (status.as_deref() == Some(wanted) && tainted == (wanted != "True")).then_some(()),
            )
        }
    };
    wait_for(Duration::from_secs(20), "a ready node", || ready("True")).await?;
    // Several renewals go by and the node stays ready.
    tokio::time::sleep(Duration::from_secs(4)).await;
    ready("True")
        .await?
        .context("a heartbeating node must stay ready")?;

    drop(agent);
    wait_for(
        Duration::from_secs(30),
        "the node marked unreachable",
        || ready("Unknown"),
    )
    .await?;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    pods.create(&PostParams::default(), &pod("late", "100m")?)
        .await?;
    let message = wait_for(Duration::from_secs(20), "late unschedulable", || async {
        let pod = pods.get("late").await?;
        Ok(pod
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.type_ == "PodScheduled" && c.status == "False")
            .and_then(|c| c.message))
    })
    .await?;
    ensure!(
        message
            == "0/1 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }.",
        "{message}"
    );

    // The agent comes back: the node is ready again and takes the pod.
    let _agent = AgentProcess::start(
        std::path::Path::new(BINARY),
        &server,
        &[
            "--node-name",
            "quiet",
            "--simulate",
            "1",
            "--lease-interval-seconds",
            "1",
        ],
    )?;
    wait_for(Duration::from_secs(30), "the node ready again", || {
        ready("True")
    })
    .await?;
    wait_for(Duration::from_secs(20), "late bound", || {
        node_of(&pods, "late")
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn simulated_hosts_run_pods_and_stop_them_on_delete() -> anyhow::Result<()> {
    let server = server().await?;
    let agent = AgentProcess::start(
        std::path::Path::new(BINARY),
        &server,
        &["--node-name", "run", "--simulate", "1"],
    )?;
    let client = server.client().await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("svc", "100m")?)
        .await?;
    wait_for(Duration::from_secs(20), "svc running and ready", || async {
        let pod = pods.get("svc").await?;
        let status = pod.status.unwrap_or_default();
        let ready = status
            .conditions
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        Ok((status.phase.as_deref() == Some("Running") && ready).then_some(()))
    })
    .await?;

    // A delete marks the pod; its agent stops it and removes it.
    let deleted = pods.delete("svc", &DeleteParams::default()).await?;
    let marked = deleted
        .left()
        .context("a bound pod is marked, not removed at once")?;
    ensure!(marked.metadata.deletion_timestamp.is_some(), "{marked:?}");
    ensure!(
        marked.metadata.deletion_grace_period_seconds == Some(30),
        "{marked:?}"
    );
    wait_for(Duration::from_secs(20), "svc gone", || async {
        Ok(pods.get_opt("svc").await?.is_none().then_some(()))
    })
    .await?;

    // Without its agent, a bound pod stays marked until a forced delete.
    drop(agent);
    pods.create(&PostParams::default(), &pod("stuck", "100m")?)
        .await?;
    wait_for(Duration::from_secs(20), "stuck bound", || {
        node_of(&pods, "stuck")
    })
    .await?;
    pods.delete("stuck", &DeleteParams::default()).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    ensure!(
        pods.get_opt("stuck").await?.is_some(),
        "nothing stopped stuck yet"
    );
    pods.delete(
        "stuck",
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        },
    )
    .await?;
    ensure!(
        pods.get_opt("stuck").await?.is_none(),
        "a forced delete removes it"
    );
    Ok(())
}

/// Creates an object of one of Ronghe's own kinds through the Kubernetes face.
pub(super) async fn create_own(
    client: &kube::Client,
    path: &str,
    body: Value,
) -> anyhow::Result<(u16, Value)> {
    let (status, value, _) = ronghe_testkit::raw_request(
        client,
        "POST",
        path,
        Some("application/json"),
        body.to_string().into_bytes(),
    )
    .await?;
    Ok((status, value))
}

pub(super) async fn vm_status(client: &kube::Client, name: &str) -> anyhow::Result<Value> {
    let (status, value, _) = ronghe_testkit::raw_request(
        client,
        "GET",
        &format!("/apis/compute.ronghe.io/v1/namespaces/default/virtualmachines/{name}"),
        None,
        Vec::new(),
    )
    .await?;
    ensure!(status == 200, "{value}");
    Ok(value["status"].clone())
}

pub(super) const VMS: &str = "/apis/compute.ronghe.io/v1/namespaces/default/virtualmachines";

fn vm(name: &str, flavor: &str) -> Value {
    json!({"apiVersion": "compute.ronghe.io/v1", "kind": "VirtualMachine",
           "metadata": {"name": name}, "spec": {"flavorRef": flavor}})
}

#[tokio::test(flavor = "multi_thread")]
async fn vms_and_pods_share_a_host() -> anyhow::Result<()> {
    let server = server().await?;
    let _agent = AgentProcess::start(
        std::path::Path::new(BINARY),
        &server,
        &[
            "--node-name",
            "mixed",
            "--simulate",
            "1",
            "--vcpus",
            "4",
            "--memory-mb",
            "8192",
        ],
    )?;
    let client = server.client().await?;
    for (name, vcpus) in [("m1.medium", 2), ("m1.small", 1)] {
        let flavor = json!({"apiVersion": "compute.ronghe.io/v1", "kind": "Flavor",
            "metadata": {"name": name}, "spec": {"vcpus": vcpus, "ram": 1024, "disk": 1}});
        let (status, body) =
            create_own(&client, "/apis/compute.ronghe.io/v1/flavors", flavor).await?;
        ensure!(status == 201, "{body}");
    }
    let (status, body) = create_own(&client, VMS, vm("nope", "m9.huge")).await?;
    ensure!(status == 400, "an unknown flavor: {status} {body}");
    ensure!(
        body["message"] == "Flavor m9.huge could not be found.",
        "{body}"
    );

    // A 2-vCPU VM and a pod asking for 2 CPUs both run on the 4-VCPU host.
    let nodes: Api<Node> = Api::all(client.clone());
    wait_for(Duration::from_secs(20), "the host", || async {
        Ok((nodes.list(&Default::default()).await?.items.len() == 1).then_some(()))
    })
    .await?;
    let (status, body) = create_own(&client, VMS, vm("big", "m1.medium")).await?;
    ensure!(status == 201, "{body}");
    ensure!(
        body["spec"]["flavor"]["vcpus"] == 2,
        "the flavor is copied in: {body}"
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("half", "2")?)
        .await?;
    wait_for(Duration::from_secs(20), "big ACTIVE", || async {
        let status = vm_status(&client, "big").await?;
        Ok((status["status"] == "ACTIVE" && status["host"] == "mixed-00000").then_some(()))
    })
    .await?;
    wait_for(Duration::from_secs(20), "half bound", || {
        node_of(&pods, "half")
    })
    .await?;

    // A third workload of either kind asking for 1 CPU is refused, with the reason.
    let (status, body) = create_own(&client, VMS, vm("third", "m1.small")).await?;
    ensure!(status == 201, "{body}");
    let fault = wait_for(Duration::from_secs(20), "third in ERROR", || async {
        let status = vm_status(&client, "third").await?;
        Ok((status["status"] == "ERROR").then(|| status["fault"].clone()))
    })
    .await?;
    ensure!(
        fault["message"]
            == "No valid host was found. 0/1 hosts are available: 1 Insufficient VCPU.",
        "{fault}"
    );
    pods.create(&PostParams::default(), &pod("fourth", "1")?)
        .await?;
    let message = wait_for(Duration::from_secs(20), "fourth unschedulable", || async {
        let pod = pods.get("fourth").await?;
        Ok(pod
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.type_ == "PodScheduled" && c.status == "False")
            .and_then(|c| c.message))
    })
    .await?;
    ensure!(
        message == "0/1 nodes are available: 1 Insufficient cpu.",
        "{message}"
    );

    // Deleting the VM frees its share: the pod runs.
    let (status, _, _) =
        ronghe_testkit::raw_request(&client, "DELETE", &format!("{VMS}/big"), None, Vec::new())
            .await?;
    ensure!(status == 200 || status == 202, "delete big: {status}");
    wait_for(Duration::from_secs(20), "fourth bound", || {
        node_of(&pods, "fourth")
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn vms_count_against_the_projects_cores_on_both_faces() -> anyhow::Result<()> {
    let server = server().await?;
    let client = server.client().await?;
    let flavor = json!({"apiVersion": "compute.ronghe.io/v1", "kind": "Flavor",
        "metadata": {"name": "m1.medium"}, "spec": {"vcpus": 2, "ram": 1024}});
    let (status, body) = create_own(&client, "/apis/compute.ronghe.io/v1/flavors", flavor).await?;
    ensure!(status == 201, "{body}");
    let quota = json!({"apiVersion": "v1", "kind": "ResourceQuota",
        "metadata": {"name": "cores"}, "spec": {"hard": {"requests.cpu": "3"}}});
    let (status, body) =
        create_own(&client, "/api/v1/namespaces/default/resourcequotas", quota).await?;
    ensure!(status == 201, "{body}");

    let (status, body) = create_own(&client, VMS, vm("first", "m1.medium")).await?;
    ensure!(status == 201, "{body}");
    let (status, body) = create_own(&client, VMS, vm("second", "m1.medium")).await?;
    ensure!(status == 403, "a VM past the quota: {status} {body}");
    let message = body["message"].as_str().context("message")?;
    ensure!(
        message.contains("exceeded quota: cores, requested: requests.cpu=2, used: requests.cpu=2, limited: requests.cpu=3"),
        "{message}"
    );

    // The OpenStack face counts the same VM as 2 cores in use.
    let (status, detail, _) = ronghe_testkit::raw_request(
        &client,
        "GET",
        "/compute/v2.1/os-quota-sets/default/detail",
        None,
        Vec::new(),
    )
    .await?;
    ensure!(status == 200, "{detail}");
    ensure!(
        detail["quota_set"]["cores"] == json!({"in_use": 2, "limit": 3, "reserved": 0}),
        "{detail}"
    );
    ensure!(detail["quota_set"]["instances"]["in_use"] == 1, "{detail}");
    Ok(())
}
