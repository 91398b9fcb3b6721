//! A VM through QEMU with the real openstack CLI: `server create` of `test-guest` reaches
//! ACTIVE and `ronghe-guest-ready` shows in `console log show`; stop, start, reboot,
//! pause and unpause do what Nova does; delete leaves no QEMU and no files behind.

use std::time::Duration;

use anyhow::Context;
use ronghe_testkit::Openstack;

use super::{cloud, leftovers, require_real_drivers, wait_for};

const READY: &str = "ronghe-guest-ready";

/// Waits for a server status, failing early on ERROR.
async fn status(os: &Openstack, name: &str, wanted: &str, within: Duration) -> anyhow::Result<()> {
    wait_for(within, &format!("{name} {wanted}"), || async {
        let vm = os.json(&["server", "show", name])?;
        anyhow::ensure!(
            wanted == "ERROR" || vm["status"] != "ERROR",
            "{name} failed: {vm}"
        );
        Ok((vm["status"] == wanted && vm["OS-EXT-STS:task_state"].is_null()).then_some(()))
    })
    .await
}

/// Waits until the console shows the guest ready `times` times (one per boot).
async fn ready(os: &Openstack, name: &str, times: usize) -> anyhow::Result<()> {
    wait_for(
        Duration::from_secs(180),
        &format!("{name} ready {times}x"),
        || async {
            let (_, console, _) = os.run(&["console", "log", "show", name])?;
            Ok((console.matches(READY).count() >= times).then_some(()))
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn test_guest_boots_and_obeys_nova_actions() -> anyhow::Result<()> {
    require_real_drivers!("test_guest_boots_and_obeys_nova_actions");
    let server = cloud().await?;
    let os = Openstack::for_data_dir(server.data_dir())?;
    os.ok(&[
        "flavor", "create", "--vcpus", "1", "--ram", "256", "--disk", "1", "m1.tiny",
    ])?;
    os.ok(&[
        "server",
        "create",
        "--flavor",
        "m1.tiny",
        "--image",
        "test-guest",
        "--nic",
        "none",
        "--wait",
        "guest",
    ])?;
    status(&os, "guest", "ACTIVE", Duration::from_secs(120)).await?;
    ready(&os, "guest", 1).await?;
    let tail = os.ok(&["console", "log", "show", "--lines", "5", "guest"])?;
    assert!(tail.lines().count() <= 5, "{tail}");

    os.ok(&["server", "pause", "guest"])?;
    status(&os, "guest", "PAUSED", Duration::from_secs(60)).await?;
    os.ok(&["server", "unpause", "guest"])?;
    status(&os, "guest", "ACTIVE", Duration::from_secs(60)).await?;

    os.ok(&["server", "stop", "guest"])?;
    status(&os, "guest", "SHUTOFF", Duration::from_secs(90)).await?;
    let shown = os.json(&["server", "show", "guest"])?;
    // The CLI prints Nova's number: 4 is SHUTDOWN.
    assert_eq!(shown["OS-EXT-STS:power_state"], 4, "{shown}");
    os.ok(&["server", "start", "guest"])?;
    status(&os, "guest", "ACTIVE", Duration::from_secs(90)).await?;
    ready(&os, "guest", 2).await?;

    os.ok(&["server", "reboot", "--hard", "guest"])?;
    status(&os, "guest", "ACTIVE", Duration::from_secs(90)).await?;
    ready(&os, "guest", 3).await?;

    os.ok(&["server", "delete", "--wait", "guest"])?;
    let dir = server.agent_dir().to_owned();
    wait_for(Duration::from_secs(60), "no QEMU left", || async {
        Ok(leftovers(&dir)?.is_empty().then_some(()))
    })
    .await
    .with_context(|| format!("left behind: {:?}", leftovers(&dir)))?;
    Ok(())
}
