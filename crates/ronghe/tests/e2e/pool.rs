//! One pool for both kinds: on a host offering 4 VCPUs, a 2-vCPU VM (QEMU) and a pod
//! requesting 2 CPUs (runc) both run; a third workload asking for 1 CPU is refused with the
//! reason (a pod stays Pending saying `Insufficient cpu`, a VM goes to ERROR with Nova's
//! `No valid host was found`), and the pod runs as soon as the VM is deleted.

use std::time::Duration;

use anyhow::Context;
use ronghe_testkit::Openstack;

use super::{cloud_with_agent, kubectl, leftovers, require_real_drivers, wait_for};

fn pod(name: &str, cpu: &str) -> String {
    format!(
        r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "{name}"}},
  "spec": {{"containers": [{{"name": "main", "image": "busybox", "command": ["sleep", "3600"],
    "resources": {{"requests": {{"cpu": "{cpu}", "memory": "32Mi"}}}}}}]}}}}"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn vms_and_pods_share_one_host_s_cpus() -> anyhow::Result<()> {
    require_real_drivers!("vms_and_pods_share_one_host_s_cpus");
    let server = cloud_with_agent(&["--node-name", "pool", "--vcpus", "4"]).await?;
    let agent_dir = server.agent_dir().to_owned();
    let kubectl = kubectl(&server)?;
    let os = Openstack::for_data_dir(server.data_dir())?;
    wait_for(Duration::from_secs(30), "the pool host Ready", || async {
        let ready = kubectl.ok(&[
            "get",
            "node",
            "pool",
            "-o",
            "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
        ]);
        Ok(ready.is_ok_and(|r| r == "True").then_some(()))
    })
    .await?;

    os.ok(&[
        "flavor", "create", "--vcpus", "2", "--ram", "128", "--disk", "1", "two",
    ])?;
    os.ok(&[
        "flavor", "create", "--vcpus", "1", "--ram", "128", "--disk", "1", "one",
    ])?;
    os.ok(&[
        "server",
        "create",
        "--flavor",
        "two",
        "--image",
        "test-guest",
        "--nic",
        "none",
        "vm-two",
    ])?;
    kubectl.with_stdin(&["apply", "-f", "-"], &pod("pod-two", "2"))?;
    wait_for(
        Duration::from_secs(120),
        "the VM ACTIVE and the pod Running",
        || async {
            let vm = os.json(&["server", "show", "vm-two"])?;
            anyhow::ensure!(vm["status"] != "ERROR", "the VM failed: {vm}");
            let phase = kubectl.ok(&["get", "pod", "pod-two", "-o", "jsonpath={.status.phase}"])?;
            Ok((vm["status"] == "ACTIVE" && phase == "Running").then_some(()))
        },
    )
    .await?;

    // The host is full: a third pod waits with the reason, a third VM fails with Nova's.
    kubectl.with_stdin(&["apply", "-f", "-"], &pod("pod-one", "1"))?;
    let reason = wait_for(Duration::from_secs(30), "pod-one unschedulable", || async {
        let message = kubectl.ok(&[
            "get",
            "pod",
            "pod-one",
            "-o",
            "jsonpath={.status.conditions[?(@.type=='PodScheduled')].message}",
        ])?;
        Ok((!message.is_empty()).then_some(message))
    })
    .await?;
    assert!(reason.contains("Insufficient cpu"), "{reason}");
    os.ok(&[
        "server",
        "create",
        "--flavor",
        "one",
        "--image",
        "test-guest",
        "--nic",
        "none",
        "vm-one",
    ])?;
    let failed = wait_for(Duration::from_secs(30), "vm-one in ERROR", || async {
        let vm = os.json(&["server", "show", "vm-one"])?;
        Ok((vm["status"] == "ERROR").then_some(vm))
    })
    .await?;
    assert!(
        failed["fault"]
            .to_string()
            .contains("No valid host was found"),
        "{failed}"
    );

    // Deleting the VM frees its CPUs for the waiting pod.
    os.ok(&["server", "delete", "--wait", "vm-two", "vm-one"])?;
    wait_for(Duration::from_secs(60), "pod-one Running", || async {
        let phase = kubectl.ok(&["get", "pod", "pod-one", "-o", "jsonpath={.status.phase}"])?;
        Ok((phase == "Running").then_some(()))
    })
    .await?;
    kubectl.ok(&["delete", "pod", "pod-one", "pod-two", "--grace-period=1"])?;
    wait_for(Duration::from_secs(60), "the host clean", || async {
        let pods = kubectl.ok(&["get", "pods", "-o", "name"])?;
        Ok((pods.trim().is_empty() && leftovers(&agent_dir)?.is_empty()).then_some(()))
    })
    .await
    .with_context(|| format!("left behind: {:?}", leftovers(&agent_dir)))?;
    Ok(())
}
