//! The scheduler over 100 simulated hosts (three real `ronghe agent --simulate` processes
//! with different traits, devices, labels, zones and taints): required and forbidden
//! traits, extended resources, taints and tolerations, required node affinity, pod
//! anti-affinity, server groups (affinity and anti-affinity) and availability zones all
//! decide where workloads go.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, PostParams};
use ronghe_testkit::{AgentProcess, Kubectl};
use serde_json::{Value, json};

use super::scheduling::{VMS, create_own, vm_status};
use super::{BINARY, server, wait_for};

fn pod(name: &str, extra: Value) -> anyhow::Result<Pod> {
    let mut pod = json!({
        "metadata": {"name": name, "labels": {"app": name.trim_end_matches(char::is_numeric)}},
        "spec": {"containers": [{"name": "main", "image": "busybox",
            "resources": {"requests": {"cpu": "100m", "memory": "32Mi"}}}]},
    });
    if let (Some(spec), Some(extra)) = (pod["spec"].as_object_mut(), extra.as_object()) {
        for (key, value) in extra {
            spec.insert(key.clone(), value.clone());
        }
    }
    Ok(serde_json::from_value(pod)?)
}

/// The host a pod was bound to, once it is.
async fn placed(pods: &Api<Pod>, name: &str) -> anyhow::Result<String> {
    wait_for(
        Duration::from_secs(30),
        &format!("{name} placed"),
        || async {
            let pod = pods.get(name).await?;
            Ok(pod.spec.and_then(|s| s.node_name).filter(|n| !n.is_empty()))
        },
    )
    .await
}

/// The host a VM was placed on, or its fault.
async fn vm_host(client: &kube::Client, name: &str) -> anyhow::Result<Result<String, String>> {
    wait_for(
        Duration::from_secs(30),
        &format!("{name} decided"),
        || async {
            let status = vm_status(client, name).await?;
            if status["status"] == "ERROR" {
                return Ok(Some(Err(status["fault"]["message"].to_string())));
            }
            Ok(status["host"]
                .as_str()
                .filter(|h| !h.is_empty())
                .map(|h| Ok(h.to_owned())))
        },
    )
    .await
}

async fn flavor(client: &kube::Client, name: &str, extra_specs: Value) -> anyhow::Result<()> {
    let body = json!({"apiVersion": "compute.ronghe.io/v1", "kind": "Flavor",
        "metadata": {"name": name},
        "spec": {"vcpus": 1, "ram": 128, "disk": 1, "extraSpecs": extra_specs}});
    let (status, value) = create_own(client, "/apis/compute.ronghe.io/v1/flavors", body).await?;
    anyhow::ensure!(status == 201, "flavor {name}: {value}");
    Ok(())
}

async fn vm(client: &kube::Client, name: &str, spec: Value) -> anyhow::Result<()> {
    let body = json!({"apiVersion": "compute.ronghe.io/v1", "kind": "VirtualMachine",
        "metadata": {"name": name}, "spec": spec});
    let (status, value) = create_own(client, VMS, body).await?;
    anyhow::ensure!(status == 201, "vm {name}: {value}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_hosts_honour_traits_taints_affinity_and_server_groups() -> anyhow::Result<()> {
    let server = server().await?;
    let binary = std::path::Path::new(BINARY);
    let common = [
        "--vcpus",
        "8",
        "--memory-mb",
        "16384",
        "--lease-interval-seconds",
        "30",
    ];
    let agent = |name: &'static str, count: &'static str, extra: &[&'static str]| {
        let mut args = vec!["--node-name", name, "--simulate", count];
        args.extend_from_slice(&common);
        args.extend_from_slice(extra);
        AgentProcess::start(binary, &server, &args)
    };
    let _fast = agent(
        "fast",
        "10",
        &[
            "--trait",
            "CUSTOM_FAST",
            "--device",
            "VGPU=1",
            "--label",
            "disk=ssd",
            "--zone",
            "az2",
        ],
    )?;
    let _standard = agent("std", "85", &["--zone", "az1"])?;
    let _dedicated = agent("ded", "5", &["--label", "pool=dedicated", "--zone", "az1"])?;
    let client = server.client().await?;
    let nodes: Api<Node> = Api::all(client.clone());
    wait_for(Duration::from_secs(60), "100 nodes", || async {
        let count = nodes.list_metadata(&Default::default()).await?.items.len();
        Ok((count == 100).then_some(()))
    })
    .await?;
    let kubectl = Kubectl::new(
        Kubectl::find().context("kubectl is not installed")?,
        &server.kubeconfig_path(),
    )?;
    kubectl.ok(&[
        "taint",
        "nodes",
        "-l",
        "pool=dedicated",
        "dedicated=db:NoSchedule",
    ])?;
    // The providers of all hosts are registered shortly after their nodes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let post = PostParams::default();
    let is = |prefix: &'static str| move |host: &String| host.starts_with(prefix);

    // Traits: required lands on the fast hosts, forbidden never does; so does a device.
    flavor(&client, "fast", json!({"trait:CUSTOM_FAST": "required"})).await?;
    flavor(&client, "slow", json!({"trait:CUSTOM_FAST": "forbidden"})).await?;
    flavor(&client, "gpu", json!({"resources:VGPU": "1"})).await?;
    flavor(&client, "plain", json!({})).await?;
    for index in 0..5 {
        vm(
            &client,
            &format!("fast-{index}"),
            json!({"flavorRef": "fast"}),
        )
        .await?;
        vm(
            &client,
            &format!("slow-{index}"),
            json!({"flavorRef": "slow"}),
        )
        .await?;
    }
    for index in 0..5 {
        let fast = vm_host(&client, &format!("fast-{index}"))
            .await?
            .map_err(anyhow::Error::msg)?;
        assert!(is("fast")(&fast), "fast-{index} on {fast}");
        let slow = vm_host(&client, &format!("slow-{index}"))
            .await?
            .map_err(anyhow::Error::msg)?;
        assert!(!is("fast")(&slow), "slow-{index} on {slow}");
    }
    // Ten fast hosts with one VGPU each: ten GPU VMs fit, the eleventh has no valid host.
    for index in 0..11 {
        vm(
            &client,
            &format!("gpu-{index}"),
            json!({"flavorRef": "gpu"}),
        )
        .await?;
    }
    let mut gpu_hosts = HashSet::new();
    let mut refused = Vec::new();
    for index in 0..11 {
        match vm_host(&client, &format!("gpu-{index}")).await? {
            Ok(host) => {
                assert!(is("fast")(&host), "gpu-{index} on {host}");
                gpu_hosts.insert(host);
            }
            Err(fault) => refused.push(fault),
        }
    }
    assert_eq!(gpu_hosts.len(), 10, "one VGPU per host");
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(
        refused[0].contains("No valid host was found"),
        "{refused:?}"
    );
    pods.create(
        &post,
        &pod(
            "vgpu",
            json!({"containers": [{"name": "main", "image": "busybox",
        "resources": {"limits": {"ronghe.io/vgpu": "1"}}}]}),
        )?,
    )
    .await?;
    let reason = wait_for(Duration::from_secs(30), "vgpu unschedulable", || async {
        let pod = pods.get("vgpu").await?;
        let message = pod.status.and_then(|s| s.conditions).and_then(|c| {
            c.into_iter()
                .find(|c| c.type_ == "PodScheduled" && c.status == "False")
                .and_then(|c| c.message)
        });
        Ok(message)
    })
    .await?;
    assert!(reason.contains("Insufficient ronghe.io/vgpu"), "{reason}");

    // Taints: no pod lands on a dedicated host unless it tolerates the taint; one that
    // must go there and does not tolerate it waits, saying why.
    for index in 0..20 {
        pods.create(&post, &pod(&format!("free{index}"), json!({}))?)
            .await?;
    }
    for index in 0..20 {
        let host = placed(&pods, &format!("free{index}")).await?;
        assert!(!is("ded")(&host), "free{index} on tainted {host}");
    }
    pods.create(
        &post,
        &pod("picky", json!({"nodeSelector": {"pool": "dedicated"}}))?,
    )
    .await?;
    pods.create(&post, &pod("tolerant", json!({
        "nodeSelector": {"pool": "dedicated"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}],
    }))?)
    .await?;
    assert!(is("ded")(&placed(&pods, "tolerant").await?));
    let reason = wait_for(Duration::from_secs(30), "picky unschedulable", || async {
        let pod = pods.get("picky").await?;
        Ok(pod.status.and_then(|s| s.conditions).and_then(|c| {
            c.into_iter()
                .find(|c| c.type_ == "PodScheduled" && c.status == "False")
                .and_then(|c| c.message)
        }))
    })
    .await?;
    assert!(reason.contains("untolerated taint"), "{reason}");

    // Required node affinity and pod anti-affinity.
    pods.create(
        &post,
        &pod(
            "ssd",
            json!({"affinity": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}]}}}}),
        )?,
    )
    .await?;
    assert!(is("fast")(&placed(&pods, "ssd").await?));
    let apart = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "apart"}},
         "topologyKey": "kubernetes.io/hostname"}]}});
    for index in 0..8 {
        pods.create(
            &post,
            &pod(&format!("apart{index}"), json!({"affinity": apart}))?,
        )
        .await?;
    }
    let mut hosts = HashSet::new();
    for index in 0..8 {
        hosts.insert(placed(&pods, &format!("apart{index}")).await?);
    }
    assert_eq!(hosts.len(), 8, "anti-affine pods share hosts: {hosts:?}");

    // Server groups: anti-affinity spreads, affinity gathers; zones confine.
    for (name, policy) in [("spread", "anti-affinity"), ("together", "affinity")] {
        let body = json!({"apiVersion": "compute.ronghe.io/v1", "kind": "ServerGroup",
            "metadata": {"name": name}, "spec": {"policy": policy}});
        let (status, value) = create_own(
            &client,
            "/apis/compute.ronghe.io/v1/namespaces/default/servergroups",
            body,
        )
        .await?;
        anyhow::ensure!(status == 201, "{value}");
    }
    for index in 0..6 {
        vm(
            &client,
            &format!("spread-{index}"),
            json!({"flavorRef": "plain", "serverGroup": "spread"}),
        )
        .await?;
        vm(
            &client,
            &format!("together-{index}"),
            json!({"flavorRef": "plain", "serverGroup": "together"}),
        )
        .await?;
        vm(
            &client,
            &format!("zoned-{index}"),
            json!({"flavorRef": "plain", "availabilityZone": "az2"}),
        )
        .await?;
    }
    let (mut spread, mut together) = (HashSet::new(), HashSet::new());
    for index in 0..6 {
        spread.insert(
            vm_host(&client, &format!("spread-{index}"))
                .await?
                .map_err(anyhow::Error::msg)?,
        );
        together.insert(
            vm_host(&client, &format!("together-{index}"))
                .await?
                .map_err(anyhow::Error::msg)?,
        );
        let zoned = vm_host(&client, &format!("zoned-{index}"))
            .await?
            .map_err(anyhow::Error::msg)?;
        assert!(is("fast")(&zoned), "zoned-{index} outside az2: {zoned}");
    }
    assert_eq!(spread.len(), 6, "{spread:?}");
    assert_eq!(together.len(), 1, "{together:?}");
    Ok(())
}
