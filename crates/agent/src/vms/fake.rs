//! [`FakeVmDriver`]: VMs that boot nothing and do at once whatever they are asked, for
//! simulated hosts.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use tokio::sync::broadcast;

use super::{Power, RebootKind, VmDriver, VmSpec, VmState};

/// The simulated VMs of this process, by uid. Process-wide, so the driver stays a plain
/// value (`FakeVmDriver`) wherever it is built; uids are unique, so drivers of different
/// hosts in one process never see each other's VMs.
static VMS: LazyLock<Mutex<HashMap<String, Power>>> = LazyLock::new(Default::default);

/// Simulated VMs never change by themselves: nothing is ever sent here.
static NOTICES: LazyLock<broadcast::Sender<String>> = LazyLock::new(|| broadcast::channel(1).0);

/// A driver that boots nothing: a VM is running as soon as it is started.
#[derive(Clone, Copy, Debug, Default)]
pub struct FakeVmDriver;

fn set(uid: &str, power: Power) {
    VMS.lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .insert(uid.to_owned(), power);
}

/// A VM this process never saw is running: a simulated host has nothing to lose, so a
/// new VM is ACTIVE at once and a restarted agent finds its VMs as they were (the loop
/// then stops, pauses or suspends the ones whose spec says so).
fn get(uid: &str) -> Power {
    VMS.lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .get(uid)
        .copied()
        .unwrap_or(Power::Running)
}

/// Moves a VM that is in one of `from` to `to`; anything else is the error.
fn transition(uid: &str, from: &[Power], to: Power, action: &str) -> anyhow::Result<()> {
    let power = get(uid);
    anyhow::ensure!(
        from.contains(&power),
        "cannot {action} a VM that is {power:?}"
    );
    set(uid, to);
    Ok(())
}

#[async_trait::async_trait]
impl VmDriver for FakeVmDriver {
    async fn state(&self, uid: &str) -> VmState {
        VmState {
            power: get(uid),
            fault: None,
        }
    }

    async fn start(&self, vm: &VmSpec) -> anyhow::Result<()> {
        set(&vm.uid, Power::Running);
        Ok(())
    }

    async fn stop(&self, uid: &str, _grace: Duration) -> anyhow::Result<()> {
        set(uid, Power::Shutdown);
        Ok(())
    }

    async fn reboot(&self, vm: &VmSpec, _kind: RebootKind, _grace: Duration) -> anyhow::Result<()> {
        transition(
            &vm.uid,
            &[Power::Running, Power::Paused],
            Power::Running,
            "reboot",
        )
    }

    async fn pause(&self, uid: &str) -> anyhow::Result<()> {
        transition(
            uid,
            &[Power::Running, Power::Paused],
            Power::Paused,
            "pause",
        )
    }

    async fn unpause(&self, uid: &str) -> anyhow::Result<()> {
        transition(
            uid,
            &[Power::Running, Power::Paused],
            Power::Running,
            "unpause",
        )
    }

    async fn suspend(&self, uid: &str) -> anyhow::Result<()> {
        transition(
            uid,
            &[Power::Running, Power::Paused, Power::Suspended],
            Power::Suspended,
            "suspend",
        )
    }

    async fn resume(&self, vm: &VmSpec) -> anyhow::Result<()> {
        transition(
            &vm.uid,
            &[Power::Suspended, Power::Running],
            Power::Running,
            "resume",
        )
    }

    async fn destroy(&self, uid: &str) -> anyhow::Result<()> {
        VMS.lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(uid);
        Ok(())
    }

    /// Nothing: simulated VMs leave nothing on the host to clean up, and listing the
    /// process-wide table would hand one host's VMs to another's cleanup.
    async fn list(&self) -> anyhow::Result<Vec<String>> {
        Ok(Vec::new())
    }

    async fn console_output(&self, _uid: &str, _lines: Option<usize>) -> anyhow::Result<String> {
        Ok(String::new())
    }

    fn notices(&self) -> broadcast::Receiver<String> {
        NOTICES.subscribe()
    }
}
