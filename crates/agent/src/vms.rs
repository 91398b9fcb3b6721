//! Running the VMs placed on this agent's hosts through a [`VmDriver`]: a level-triggered
//! loop that makes each VM what its spec asks (`running`, `paused`, `suspended`, `reboot`)
//! and reports Nova's states in its status; a VM being deleted is destroyed, then removed
//! for good.
//!
//! Each VM is reconciled by its own task, one at a time per VM (a stop that waits a minute
//! for the guest holds up no other VM), when its object changes, when the driver says it
//! changed by itself (QEMU died, the guest shut down or panicked), and every
//! [`RESYNC`]. The decisions are a pure function (`vms/plan.rs`). A VM that stops by
//! itself while it should run is stopped for good, as Nova's power-state sync does: its
//! `spec.running` becomes false and it stays SHUTOFF until started.
//!
//! [`FakeVmDriver`] (`vms/fake.rs`) boots nothing, for simulated hosts; the QEMU driver is
//! `ronghe-hypervisor`.

mod fake;
pub mod plan;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::TryStreamExt;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::discovery::ApiResource;
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, broadcast, mpsc, watch};

pub use fake::FakeVmDriver;
use plan::{Action, Observed};

/// How long a guest gets to shut down on the power button (Nova's `shutdown_timeout`)
/// before it is turned off, on stop and on soft reboot.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(60);
/// How often every VM is looked at again even if nothing said it changed.
pub const RESYNC: Duration = Duration::from_secs(30);
/// How many VMs are acted on at once.
const CONCURRENCY: usize = 32;
/// How long a VM whose reconcile failed waits before the next one, doubled for each
/// failure in a row up to [`MAX_BACKOFF`].
const ERROR_BACKOFF: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Actions per reconcile (start then pause, resume then reboot ...): a bound, not a goal.
const MAX_STEPS: usize = 4;
/// Console lines kept in a boot failure's fault.
const FAULT_CONSOLE_LINES: usize = 30;

/// What a driver needs to know of a VM, read from its object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VmSpec {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    /// The image it boots (a Glance id or name in its namespace).
    pub image_ref: Option<String>,
    pub vcpus: u32,
    pub memory_mb: u64,
    /// The flavor's root disk; 0 means the image's own size.
    pub disk_gb: u64,
    /// How many network interfaces it has (entries of its `spec.networks`).
    pub nic_count: usize,
    /// Its network interfaces, filled in by the agent from the host network before the
    /// driver boots it.
    pub nics: Vec<crate::network::VmNic>,
}

impl VmSpec {
    /// The spec of a VM object (its flavor was copied in at create); `None` without a name,
    /// namespace or uid.
    pub fn from_object(vm: &DynamicObject) -> Option<VmSpec> {
        let flavor = &vm.data["spec"]["flavor"];
        let number = |field: &str| flavor[field].as_u64().filter(|n| *n > 0);
        Some(VmSpec {
            uid: vm.metadata.uid.clone()?,
            namespace: vm.metadata.namespace.clone()?,
            name: vm.metadata.name.clone()?,
            image_ref: vm.data["spec"]["imageRef"].as_str().map(str::to_owned),
            vcpus: number("vcpus")
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(1),
            memory_mb: number("ram").unwrap_or(512),
            disk_gb: number("disk").unwrap_or(0),
            nic_count: vm.data["spec"]["networks"].as_array().map_or(0, Vec::len),
            nics: Vec::new(),
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RebootKind {
    /// The guest is asked to shut down (ACPI power button), then booted again.
    Soft,
    /// The virtual machine is reset.
    Hard,
}

/// Where a VM is, as its driver sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Power {
    /// The driver has nothing of it: never started on this host, or destroyed.
    Absent,
    Running,
    /// Its vCPUs are stopped, its memory kept.
    Paused,
    /// Not running, its disk kept: stopped, or the guest shut itself down.
    Shutdown,
    /// Not running because the hypervisor process died or the guest panicked.
    Crashed,
    /// Its state is saved on disk and its process gone.
    Suspended,
    /// It never came up: the hypervisor exited, or the guest panicked, while booting.
    Failed,
}

/// Why a VM failed or crashed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fault {
    pub message: String,
    /// The end of its console and hypervisor log.
    pub details: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmState {
    pub power: Power,
    pub fault: Option<Fault>,
}

/// What runs a host's VMs. Every action is idempotent and acts on the VM's uid; an action
/// that does not fit where the VM is (pausing one that is stopped) is an error.
#[async_trait::async_trait]
pub trait VmDriver: Send + Sync + 'static {
    /// Where a VM is now.
    async fn state(&self, uid: &str) -> VmState;
    /// Boots a VM: the first time from its image (making its disk), later again from its
    /// disk. Returns once the virtual machine runs (the guest may still be booting); a
    /// guest that fails to boot later turns `Failed` with a notice.
    async fn start(&self, vm: &VmSpec) -> anyhow::Result<()>;
    /// Shuts a VM down: the power button, then off after `grace`. A paused VM is turned
    /// off at once; a suspended one loses its saved state.
    async fn stop(&self, uid: &str, grace: Duration) -> anyhow::Result<()>;
    /// Reboots a running or paused VM: `Soft` shuts the guest down (falling back to `Hard`
    /// after `grace`) and boots it again; `Hard` resets it.
    async fn reboot(&self, vm: &VmSpec, kind: RebootKind, grace: Duration) -> anyhow::Result<()>;
    async fn pause(&self, uid: &str) -> anyhow::Result<()>;
    async fn unpause(&self, uid: &str) -> anyhow::Result<()>;
    /// Saves a VM's state to disk and ends its process.
    async fn suspend(&self, uid: &str) -> anyhow::Result<()>;
    /// Runs a suspended VM again from its saved state.
    async fn resume(&self, vm: &VmSpec) -> anyhow::Result<()>;
    /// Turns a VM off at once and removes everything it has on this host; one the driver
    /// does not have is fine.
    async fn destroy(&self, uid: &str) -> anyhow::Result<()>;
    /// The uids of every VM the driver has on this host.
    async fn list(&self) -> anyhow::Result<Vec<String>>;
    /// The last `lines` lines (all when `None`) of a VM's serial console.
    async fn console_output(&self, uid: &str, lines: Option<usize>) -> anyhow::Result<String>;
    /// Uids of VMs whose state changed by itself.
    fn notices(&self) -> broadcast::Receiver<String>;
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

/// What the reconcile tasks share.
struct Shared {
    client: kube::Client,
    driver: Arc<dyn VmDriver>,
    network: Arc<dyn crate::network::WorkloadNetwork>,
    /// The latest object of every VM on this agent's hosts, by uid.
    objects: Mutex<HashMap<String, DynamicObject>>,
    /// Failed reconciles in a row, by uid.
    failures: Mutex<HashMap<String, u32>>,
}

impl Shared {
    fn object(&self, uid: &str) -> Option<DynamicObject> {
        self.objects
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(uid)
            .cloned()
    }

    /// Keeps `vm` unless a newer version is already kept (our own writes come back both
    /// as answers and as watch events).
    fn keep(&self, vm: DynamicObject) {
        let Some(uid) = vm.metadata.uid.clone() else {
            return;
        };
        let mut objects = self
            .objects
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let version = |object: &DynamicObject| {
            object
                .metadata
                .resource_version
                .as_deref()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        if objects
            .get(&uid)
            .is_none_or(|kept| version(kept) <= version(&vm))
        {
            objects.insert(uid, vm);
        }
    }

    fn forget(&self, uid: &str) -> bool {
        self.objects
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(uid)
            .is_some()
    }

    /// How long to wait after a reconcile that failed (none after one that succeeded).
    fn backoff(&self, uid: &str, succeeded: bool) -> Duration {
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if succeeded {
            failures.remove(uid);
            return Duration::ZERO;
        }
        let count = failures.entry(uid.to_owned()).or_insert(0);
        *count = count.saturating_add(1);
        ERROR_BACKOFF
            .saturating_mul(1 << (*count - 1).min(5))
            .min(MAX_BACKOFF)
    }

    fn uids(&self) -> Vec<String> {
        self.objects
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .keys()
            .cloned()
            .collect()
    }
}

/// One reconcile at a time per VM; a VM that changes during its reconcile runs again.
struct Queue {
    shared: Arc<Shared>,
    limit: Arc<Semaphore>,
    done: mpsc::UnboundedSender<String>,
    running: HashSet<String>,
    again: HashSet<String>,
}

impl Queue {
    fn schedule(&mut self, uid: String) {
        if self.running.contains(&uid) {
            self.again.insert(uid);
            return;
        }
        self.running.insert(uid.clone());
        let (shared, limit, done) = (self.shared.clone(), self.limit.clone(), self.done.clone());
        tokio::spawn(async move {
            let permit = limit.acquire_owned().await;
            let result = reconcile(&shared, &uid).await;
            drop(permit);
            let backoff = shared.backoff(&uid, result.is_ok());
            if let Err(error) = result {
                tracing::warn!(vm = %uid, error = %format!("{error:#}"), ?backoff, "running a VM failed");
                tokio::time::sleep(backoff).await;
            }
            // The loop is gone only when the agent stops.
            let _ = done.send(uid);
        });
    }

    fn finished(&mut self, uid: String) {
        self.running.remove(&uid);
        if self.again.remove(&uid) {
            self.schedule(uid);
        }
    }
}

/// Runs the VMs placed on `hosts` through `driver` until `stop` flips.
pub async fn run(
    client: kube::Client,
    hosts: HashSet<String>,
    driver: Arc<dyn VmDriver>,
    network: Arc<dyn crate::network::WorkloadNetwork>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let vms: Api<DynamicObject> = Api::all_with(client.clone(), &resource());
    let config = match hosts.iter().next() {
        Some(host) if hosts.len() == 1 => {
            watcher::Config::default().fields(&format!("status.host={host}"))
        }
        _ => watcher::Config::default(),
    };
    let mut notices = driver.notices();
    let shared = Arc::new(Shared {
        client,
        driver,
        network,
        objects: Mutex::new(HashMap::new()),
        failures: Mutex::new(HashMap::new()),
    });
    let (done, mut finished) = mpsc::unbounded_channel();
    let mut queue = Queue {
        shared: shared.clone(),
        limit: Arc::new(Semaphore::new(CONCURRENCY)),
        done,
        running: HashSet::new(),
        again: HashSet::new(),
    };
    let mut resync = tokio::time::interval(RESYNC);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The uids seen while the watch (re)lists, to find VMs deleted meanwhile.
    let mut listing: Option<HashSet<String>> = None;
    let mut stream = std::pin::pin!(watcher(vms, config).default_backoff());
    loop {
        tokio::select! {
            _ = stop.changed() => return Ok(()),
            Some(uid) = finished.recv() => queue.finished(uid),
            notice = notices.recv() => match notice {
                Ok(uid) => queue.schedule(uid),
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    shared.uids().into_iter().for_each(|uid| queue.schedule(uid));
                }
                Err(broadcast::error::RecvError::Closed) => {
                    tracing::warn!("the VM driver stopped sending notices");
                    notices = broadcast::channel(1).1;
                }
            },
            _ = resync.tick() => shared.uids().into_iter().for_each(|uid| queue.schedule(uid)),
            event = stream.try_next() => match event {
                Ok(Some(watcher::Event::Init)) => listing = Some(HashSet::new()),
                Ok(Some(watcher::Event::InitApply(vm))) => {
                    if let (Some(seen), Some(uid)) = (listing.as_mut(), vm.metadata.uid.clone()) {
                        seen.insert(uid);
                    }
                    observe(&shared, &mut queue, &hosts, vm);
                }
                Ok(Some(watcher::Event::InitDone)) => {
                    let seen = listing.take().unwrap_or_default();
                    for uid in shared.uids() {
                        if !seen.contains(&uid) && shared.forget(&uid) {
                            queue.schedule(uid);
                        }
                    }
                    // VMs the driver has whose objects are gone (deleted while the agent
                    // was down): destroyed, so nothing is left behind.
                    match shared.driver.list().await {
                        Ok(uids) => uids
                            .into_iter()
                            .filter(|uid| !seen.contains(uid))
                            .for_each(|uid| queue.schedule(uid)),
                        Err(error) => {
                            tracing::warn!(error = %format!("{error:#}"), "listing the driver's VMs failed");
                        }
                    }
                }
                Ok(Some(watcher::Event::Apply(vm))) => observe(&shared, &mut queue, &hosts, vm),
                Ok(Some(watcher::Event::Delete(vm))) => {
                    if let Some(uid) = vm.metadata.uid {
                        shared.forget(&uid);
                        queue.schedule(uid);
                    }
                }
                Ok(None) => return Ok(()),
                Err(error) => tracing::warn!(%error, "watching VMs failed; retrying"),
            },
        }
    }
}

/// Keeps a VM placed on one of `hosts` and schedules it; one that left them is forgotten
/// (and so destroyed here).
fn observe(shared: &Shared, queue: &mut Queue, hosts: &HashSet<String>, vm: DynamicObject) {
    let Some(uid) = vm.metadata.uid.clone() else {
        return;
    };
    let host = vm.data["status"]["host"].as_str().unwrap_or_default();
    if hosts.contains(host) {
        shared.keep(vm);
        queue.schedule(uid);
    } else if shared.forget(&uid) {
        queue.schedule(uid);
    }
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Makes one VM what its object asks and reports where it is.
async fn reconcile(shared: &Shared, uid: &str) -> anyhow::Result<()> {
    let driver = shared.driver.as_ref();
    let Some(mut current) = shared.object(uid) else {
        // Gone, or no longer placed here: nothing of it may stay on this host.
        return driver.destroy(uid).await;
    };
    let Some(spec) = VmSpec::from_object(&current) else {
        return Ok(());
    };
    let api: Api<DynamicObject> =
        Api::namespaced_with(shared.client.clone(), &spec.namespace, &resource());
    if current.metadata.deletion_timestamp.is_some() {
        driver.destroy(uid).await?;
        return crate::remove_stopped(&api, &spec.name, uid).await;
    }
    // A reboot done in this reconcile, reported with the settled state.
    let mut reboot_done: Option<String> = None;
    for _ in 0..MAX_STEPS {
        let mut observed = Observed::from_object(&current);
        if let Some(at) = &reboot_done {
            observed.last_reboot = Some(at.clone());
        }
        let state = driver.state(uid).await;
        let action = plan::plan(&observed, state.power);
        tracing::debug!(vm = %spec.name, ?action, power = ?state.power, status = %observed.status, "reconciling a VM");
        match action {
            Action::Leave if observed.task_state.is_some() => {
                // An action this state does not take: it is over.
                patch_status(shared, &api, &current, json!({"taskState": null})).await?;
                return Ok(());
            }
            Action::Leave => return Ok(()),
            Action::Report => {
                return report(shared, &api, &current, &observed, &state, reboot_done).await;
            }
            Action::Died => {
                tracing::info!(vm = %spec.name, power = ?state.power, "a VM stopped by itself");
                let Some(stopped) = mark_stopped(shared, &api, &current).await? else {
                    return Ok(());
                };
                let observed = Observed::from_object(&stopped);
                return report(shared, &api, &stopped, &observed, &state, reboot_done).await;
            }
            _ => {}
        }
        if let Some((status, task)) = plan::in_progress(action, &observed)
            && (observed.task_state.as_deref() != Some(task) || observed.status != status)
        {
            let fields = json!({"status": status, "taskState": task});
            match patch_status(shared, &api, &current, fields).await? {
                Some(updated) => current = updated,
                // Changed meanwhile: the newer object brings this VM back.
                None => return Ok(()),
            }
        }
        tracing::info!(vm = %spec.name, ?action, "acting on a VM");
        // A VM boots with its NICs on their networks (Nova waits for Neutron's
        // vif-plugged events likewise).
        let mut spec = spec.clone();
        if matches!(action, Action::Start | Action::Reboot(_) | Action::Resume) {
            match shared.network.vm_nics(&spec).await {
                Ok(nics) => spec.nics = nics,
                Err(error) => return failed(shared, &api, &current, action, error).await,
            }
        }
        let result = match action {
            Action::Start => driver.start(&spec).await,
            Action::Stop => driver.stop(uid, SHUTDOWN_GRACE).await,
            Action::Reboot(kind) => driver.reboot(&spec, kind, SHUTDOWN_GRACE).await,
            Action::Pause => driver.pause(uid).await,
            Action::Unpause => driver.unpause(uid).await,
            Action::Suspend => driver.suspend(uid).await,
            Action::Resume => driver.resume(&spec).await,
            Action::Died | Action::Report | Action::Leave => Ok(()),
        };
        if let Err(error) = result {
            return failed(shared, &api, &current, action, error).await;
        }
        if matches!(action, Action::Reboot(_) | Action::Start)
            && observed.pending_reboot().is_some()
        {
            reboot_done = observed.reboot.as_ref().map(|(_, at)| at.clone());
        }
    }
    // More steps than expected: the next event or resync carries on from here.
    let observed = Observed::from_object(&current);
    let state = driver.state(uid).await;
    report(shared, &api, &current, &observed, &state, reboot_done).await
}

/// Reports an action that failed, then returns its error (so the VM backs off). A boot
/// that failed (the driver says `Failed`, or a first boot) is ERROR with the console's end
/// in the fault; a failed start of a stopped VM leaves it stopped for good (so it is not
/// retried in a loop); anything else keeps its state, with the error as its fault.
async fn failed(
    shared: &Shared,
    api: &Api<DynamicObject>,
    current: &DynamicObject,
    action: Action,
    error: anyhow::Error,
) -> anyhow::Result<()> {
    let uid = current.metadata.uid.as_deref().unwrap_or_default();
    let driver = shared.driver.as_ref();
    let mut state = driver.state(uid).await;
    let observed = Observed::from_object(current);
    if state.fault.is_none() {
        state.fault = Some(Fault {
            message: format!("{error:#}"),
            details: driver
                .console_output(uid, Some(FAULT_CONSOLE_LINES))
                .await
                .unwrap_or_default(),
        });
    }
    let reported = if action == Action::Start && state.power != Power::Failed {
        if observed.status == "BUILD" {
            state.power = Power::Failed;
            report(shared, api, current, &observed, &state, None).await
        } else {
            match mark_stopped(shared, api, current).await {
                Ok(Some(stopped)) => {
                    let observed = Observed::from_object(&stopped);
                    report(shared, api, &stopped, &observed, &state, None).await
                }
                Ok(None) => Ok(()),
                Err(error) => Err(error),
            }
        }
    } else {
        report(shared, api, current, &observed, &state, None).await
    };
    if let Err(report_error) = reported {
        tracing::warn!(vm = %uid, error = %format!("{report_error:#}"), "reporting a failed action failed");
    }
    Err(error.context(format!("{action:?} failed")))
}

/// Writes the settled status, if it differs from what the object says.
async fn report(
    shared: &Shared,
    api: &Api<DynamicObject>,
    current: &DynamicObject,
    observed: &Observed,
    state: &VmState,
    reboot_done: Option<String>,
) -> anyhow::Result<()> {
    let Some(fields) = plan::report(
        observed,
        &current.data["status"],
        state,
        reboot_done.as_deref(),
        &now(),
    ) else {
        return Ok(());
    };
    let fields = Value::Object(fields);
    tracing::info!(vm = ?current.metadata.name, status = %fields, "reporting a VM");
    patch_status(shared, api, current, fields).await?;
    Ok(())
}

/// Merges `fields` into the status of exactly the version read; `None` when the object
/// changed meanwhile (the watch brings the newer one, and the VM is looked at again).
async fn patch_status(
    shared: &Shared,
    api: &Api<DynamicObject>,
    current: &DynamicObject,
    fields: Value,
) -> anyhow::Result<Option<DynamicObject>> {
    let name = current.metadata.name.as_deref().unwrap_or_default();
    let patch = json!({
        "metadata": {"resourceVersion": current.metadata.resource_version},
        "status": fields,
    });
    match api
        .patch_status(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        Ok(updated) => {
            shared.keep(updated.clone());
            Ok(Some(updated))
        }
        Err(kube::Error::Api(status)) if matches!(status.code, 404 | 409) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// Sets `spec.running` false on exactly the version read (so a start asked for meanwhile
/// wins); `None` when the object changed.
async fn mark_stopped(
    shared: &Shared,
    api: &Api<DynamicObject>,
    current: &DynamicObject,
) -> anyhow::Result<Option<DynamicObject>> {
    if current.data["spec"]["running"] == Value::Bool(false) {
        return Ok(Some(current.clone()));
    }
    let name = current.metadata.name.as_deref().unwrap_or_default();
    let patch = json!({
        "metadata": {"resourceVersion": current.metadata.resource_version},
        "spec": {"running": false},
    });
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        Ok(updated) => {
            shared.keep(updated.clone());
            Ok(Some(updated))
        }
        Err(kube::Error::Api(status)) if matches!(status.code, 404 | 409) => Ok(None),
        Err(error) => Err(error.into()),
    }
}
