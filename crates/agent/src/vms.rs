//! Running the VMs placed on this agent's hosts: a VM placed here (`status.host`, task
//! `spawning`) is handed to a [`VmDriver`] and reported ACTIVE (or ERROR with the
//! driver's fault); a VM being deleted is stopped, then removed for good.
//!
//! [`FakeVmDriver`] boots nothing, for simulated hosts. The QEMU driver comes with images.

use std::collections::HashSet;
use std::sync::Arc;

use futures::TryStreamExt;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::discovery::ApiResource;
use kube::runtime::watcher;
use serde_json::{Value, json};
use tokio::sync::watch;

/// What boots a host's VMs.
#[async_trait::async_trait]
pub trait VmDriver: Send + Sync + 'static {
    /// Boots a VM; an error becomes its fault.
    async fn boot(&self, host: &str, vm: &DynamicObject) -> anyhow::Result<()>;
    /// Stops and removes a VM.
    async fn destroy(&self, host: &str, vm: &DynamicObject) -> anyhow::Result<()>;
    /// The last `lines` lines (all when `None`) of a VM's serial console, by the VM's uid.
    async fn console_output(&self, uid: &str, lines: Option<usize>) -> anyhow::Result<String>;
}

/// A driver that boots nothing: VMs are ACTIVE at once.
#[derive(Clone, Copy, Debug, Default)]
pub struct FakeVmDriver;

#[async_trait::async_trait]
impl VmDriver for FakeVmDriver {
    async fn boot(&self, _host: &str, _vm: &DynamicObject) -> anyhow::Result<()> {
        Ok(())
    }

    async fn destroy(&self, _host: &str, _vm: &DynamicObject) -> anyhow::Result<()> {
        Ok(())
    }

    async fn console_output(&self, _uid: &str, _lines: Option<usize>) -> anyhow::Result<String> {
        Ok(String::new())
    }
}

fn resource() -> ApiResource {
    ApiResource {
        group: "compute.ronghe.io".into(),
        version: "v1".into(),
        api_version: "compute.ronghe.io/v1".into(),
        kind: "VirtualMachine".into(),
        plural: "virtualmachines".into(),
    }
}

/// Runs the VMs placed on `hosts` through `driver` until `stop` flips.
pub async fn run(
    client: kube::Client,
    hosts: HashSet<String>,
    driver: Arc<dyn VmDriver>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let vms: Api<DynamicObject> = Api::all_with(client.clone(), &resource());
    let mut stream = std::pin::pin!(watcher(vms, watcher::Config::default()));
    loop {
        let event = tokio::select! {
            event = stream.try_next() => event,
            _ = stop.changed() => return Ok(()),
        };
        let vm = match event {
            Ok(Some(watcher::Event::Apply(vm) | watcher::Event::InitApply(vm))) => vm,
            Ok(Some(_)) => continue,
            Ok(None) => return Ok(()),
            Err(error) => {
                tracing::warn!(%error, "watching VMs failed; retrying");
                continue;
            }
        };
        let host = vm.data["status"]["host"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if !hosts.contains(&host) {
            continue;
        }
        if let Err(error) = reconcile(&client, &host, &vm, driver.as_ref()).await {
            tracing::warn!(vm = ?vm.metadata.name, error = %format!("{error:#}"), "running a VM failed");
        }
    }
}

async fn reconcile(
    client: &kube::Client,
    host: &str,
    vm: &DynamicObject,
    driver: &dyn VmDriver,
) -> anyhow::Result<()> {
    let (Some(name), Some(namespace), Some(uid)) = (
        vm.metadata.name.as_deref(),
        vm.metadata.namespace.as_deref(),
        vm.metadata.uid.as_deref(),
    ) else {
        return Ok(());
    };
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource());
    if vm.metadata.deletion_timestamp.is_some() {
        driver.destroy(host, vm).await?;
        return crate::remove_stopped(&api, name, uid).await;
    }
    if vm.data["status"]["taskState"] != "spawning" {
        return Ok(());
    }
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let status: Value = match driver.boot(host, vm).await {
        Ok(()) => json!({"status": "ACTIVE", "vmState": "active", "taskState": null,
                         "powerState": 1, "launchedAt": now}),
        Err(error) => json!({"status": "ERROR", "vmState": "error", "taskState": null,
                             "powerState": 0,
                             "fault": {"code": 500, "message": format!("{error:#}"), "created": now}}),
    };
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": status})),
    )
    .await?;
    Ok(())
}
