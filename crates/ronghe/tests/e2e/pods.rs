//! Pods through runc with the real kubectl: a busybox pod's output in `kubectl logs` and
//! its Succeeded phase, `kubectl exec` with output and exit code, a Deployment of 3 that
//! heals a deleted pod and rolls an update, and nothing left on the host afterwards.

use std::time::Duration;

use anyhow::Context;

use super::{cloud, kubectl, leftovers, require_real_drivers, wait_for};

#[tokio::test(flavor = "multi_thread")]
async fn busybox_pods_run_log_exec_and_deployments_heal_and_roll() -> anyhow::Result<()> {
    require_real_drivers!("busybox_pods_run_log_exec_and_deployments_heal_and_roll");
    let server = cloud().await?;
    let kubectl = kubectl(&server)?;

    // A pod that prints and exits: its log, and Succeeded.
    kubectl.ok(&[
        "run",
        "hello",
        "--image=busybox",
        "--restart=Never",
        "--",
        "sh",
        "-c",
        "echo hello from runc; echo to stderr >&2",
    ])?;
    wait_for(Duration::from_secs(60), "hello Succeeded", || async {
        let phase = kubectl.ok(&["get", "pod", "hello", "-o", "jsonpath={.status.phase}"])?;
        anyhow::ensure!(
            phase != "Failed",
            "hello failed: {}",
            kubectl.ok(&["get", "pod", "hello", "-o", "yaml"])?
        );
        Ok((phase == "Succeeded").then_some(()))
    })
    .await?;
    let logs = kubectl.ok(&["logs", "hello"])?;
    assert!(logs.contains("hello from runc"), "{logs}");
    assert!(logs.contains("to stderr"), "{logs}");
    let exit = kubectl.ok(&[
        "get",
        "pod",
        "hello",
        "-o",
        "jsonpath={.status.containerStatuses[0].state.terminated.exitCode}",
    ])?;
    assert_eq!(exit, "0");

    // exec: output and exit code come back.
    kubectl.ok(&["run", "sleeper", "--image=busybox", "--", "sleep", "3600"])?;
    wait_for(Duration::from_secs(60), "sleeper Running", || async {
        let phase = kubectl.ok(&["get", "pod", "sleeper", "-o", "jsonpath={.status.phase}"])?;
        Ok((phase == "Running").then_some(()))
    })
    .await?;
    let exec = kubectl.run(
        &["exec", "sleeper", "--", "sh", "-c", "echo inside; exit 3"],
        None,
    )?;
    assert_eq!(exec.code, Some(3), "{exec:?}");
    assert!(exec.stdout.contains("inside"), "{exec:?}");
    let hostname = kubectl.ok(&["exec", "sleeper", "--", "hostname"])?;
    assert_eq!(hostname.trim(), "sleeper");

    // A Deployment of 3 heals a deleted pod and rolls an update.
    kubectl.ok(&[
        "create",
        "deployment",
        "web",
        "--image=busybox",
        "--replicas=3",
        "--",
        "sleep",
        "3600",
    ])?;
    kubectl.ok(&["rollout", "status", "deployment/web", "--timeout=120s"])?;
    let pods = kubectl.ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ])?;
    let victim = pods
        .split_whitespace()
        .next()
        .context("a web pod")?
        .to_owned();
    kubectl.ok(&["delete", "pod", &victim, "--wait=false"])?;
    wait_for(
        Duration::from_secs(90),
        "3 ready web pods again",
        || async {
            let ready = kubectl.ok(&[
                "get",
                "deployment",
                "web",
                "-o",
                "jsonpath={.status.readyReplicas}",
            ])?;
            let names = kubectl.ok(&[
                "get",
                "pods",
                "-l",
                "app=web",
                "-o",
                "jsonpath={.items[*].metadata.name}",
            ])?;
            Ok((ready == "3" && !names.split_whitespace().any(|n| n == victim)).then_some(()))
        },
    )
    .await?;
    kubectl.ok(&["set", "env", "deployment/web", "VERSION=2"])?;
    kubectl.ok(&["rollout", "status", "deployment/web", "--timeout=180s"])?;
    // The old pods finish their grace period meanwhile.
    let pods = wait_for(Duration::from_secs(90), "only the 3 new pods", || async {
        let pods = kubectl.ok(&[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ])?;
        Ok((pods.split_whitespace().count() == 3).then_some(pods))
    })
    .await?;
    let names: Vec<&str> = pods.split_whitespace().collect();
    for name in names {
        let env = kubectl.ok(&["exec", name, "--", "sh", "-c", "echo $VERSION"])?;
        assert_eq!(env.trim(), "2", "{name}");
    }

    // Deleting everything leaves nothing on the host.
    kubectl.ok(&["delete", "deployment", "web"])?;
    kubectl.ok(&["delete", "pod", "hello", "sleeper", "--grace-period=1"])?;
    wait_for(Duration::from_secs(90), "every pod gone", || async {
        let left = kubectl.ok(&["get", "pods", "-o", "name"])?;
        Ok(left.trim().is_empty().then_some(()))
    })
    .await?;
    let dir = server.agent_dir().to_owned();
    let found = wait_for(Duration::from_secs(30), "the host clean", || async {
        let found = leftovers(&dir)?;
        Ok(found.is_empty().then_some(found))
    })
    .await;
    assert!(found.is_ok(), "left behind: {:?}", leftovers(&dir)?);
    Ok(())
}
