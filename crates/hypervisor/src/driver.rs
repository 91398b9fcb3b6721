//! [`QemuDriver`]: the agent's [`VmDriver`] on QEMU. Each VM has a directory
//! `DIR/vms/<uid>/` with its disk overlay (`disk.qcow2`), serial console
//! (`console.log`, kept across boots), QEMU's own log (`qemu.log`), QMP socket, pid file,
//! the command line it was last started with (`launch.json`, so a resume starts the same
//! machine) and, while suspended, its saved state (`state`). Destroying a VM removes the
//! directory and its process.
//!
//! The actions: start boots QEMU (from the overlay when there is one); stop presses the
//! ACPI power button and turns it off after the grace period; a soft reboot is a soft
//! stop and a start (a reset when the guest does not shut down in time, as Nova falls
//! back to a hard reboot); a hard reboot is `system_reset`; pause and unpause are QMP
//! `stop` and `cont`; suspend saves the paused machine with QMP `migrate` to a file and
//! ends QEMU, resume starts QEMU from that file (`-incoming`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use ronghe_agent::vms::{Fault, Power, RebootKind, VmDriver, VmSpec, VmState};
use serde_json::json;
use tokio::sync::broadcast;

use crate::HypervisorError;
use crate::accel::{self, AccelChoice};
use crate::console;
use crate::disk;
use crate::host::HostCommands;
use crate::images::ImageSource;
use crate::instance::{self, BootProgress, Ended, Files, Instance};
use crate::launch::{self, LaunchConfig};

const VMS_DIR: &str = "vms";
const DISK_FILE: &str = "disk.qcow2";
const CONSOLE_FILE: &str = "console.log";
const QEMU_LOG_FILE: &str = "qemu.log";
const QMP_FILE: &str = "qmp.sock";
const PID_FILE: &str = "qemu.pid";
const LAUNCH_FILE: &str = "launch.json";
const STATE_FILE: &str = "state";
/// A console log past this size is moved aside (`console.log.1`) at the next boot.
const CONSOLE_ROTATE_BYTES: u64 = 4 << 20;
/// How long QEMU gets to exit after `quit` or SIGKILL.
const EXIT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long saving a suspended VM's state may take.
const MIGRATE_TIMEOUT: Duration = Duration::from_secs(300);
/// A unix socket path is at most this long (`sun_path`, with its NUL).
const MAX_SOCKET_PATH: usize = 107;
const NOTICE_BUFFER: usize = 256;

/// How the driver runs.
#[derive(Clone, Debug)]
pub struct QemuConfig {
    pub commands: HostCommands,
    /// The accelerator to use; `None` probes (once per host, kept under the root).
    pub accel: Option<accel::Accel>,
    /// How long after a boot begins a QEMU exit or a kernel panic counts as a failed boot
    /// (ERROR) rather than a crash, unless the guest says it is ready first.
    pub boot_window: Duration,
}

impl Default for QemuConfig {
    fn default() -> QemuConfig {
        QemuConfig {
            commands: HostCommands::default(),
            accel: None,
            boot_window: Duration::from_secs(90),
        }
    }
}

/// The VMs of one host, run by QEMU. Cheap to clone.
#[derive(Clone)]
pub struct QemuDriver {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    images: Arc<dyn ImageSource>,
    config: QemuConfig,
    accel: AccelChoice,
    vms: Mutex<HashMap<String, Arc<Vm>>>,
    notices: broadcast::Sender<String>,
}

/// One VM's record.
struct Vm {
    uid: String,
    dir: PathBuf,
    /// One action at a time.
    actions: tokio::sync::Mutex<()>,
    runtime: Mutex<Runtime>,
}

struct Runtime {
    power: Power,
    fault: Option<Fault>,
    instance: Option<Arc<Instance>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Vm {
    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn files(&self) -> Files {
        Files {
            console_log: self.file(CONSOLE_FILE),
            qemu_log: self.file(QEMU_LOG_FILE),
            qmp_socket: self.file(QMP_FILE),
            pidfile: self.file(PID_FILE),
        }
    }

    fn instance(&self) -> Option<Arc<Instance>> {
        lock(&self.runtime).instance.clone()
    }

    fn power(&self) -> Power {
        lock(&self.runtime).power
    }

    fn set(&self, power: Power, fault: Option<Fault>) {
        let mut runtime = lock(&self.runtime);
        runtime.power = power;
        runtime.fault = fault;
    }

    /// Where a VM with no process is, from its directory.
    fn resting_power(&self) -> Power {
        if self.file(STATE_FILE).exists() {
            Power::Suspended
        } else if self.dir.exists() {
            Power::Shutdown
        } else {
            Power::Absent
        }
    }

    fn wrong_state(&self, action: &'static str) -> HypervisorError {
        HypervisorError::WrongState {
            uid: self.uid.clone(),
            power: format!("{:?}", self.power()),
            action,
        }
    }
}

impl QemuDriver {
    /// A driver keeping its VMs under `root`, booting images from `images`; probes the
    /// accelerator (or reads the kept choice) and adopts the QEMUs an earlier agent left
    /// running.
    pub async fn new(
        root: impl Into<PathBuf>,
        images: Arc<dyn ImageSource>,
    ) -> Result<QemuDriver, HypervisorError> {
        QemuDriver::with_config(root, images, QemuConfig::default()).await
    }

    pub async fn with_config(
        root: impl Into<PathBuf>,
        images: Arc<dyn ImageSource>,
        config: QemuConfig,
    ) -> Result<QemuDriver, HypervisorError> {
        let root = std::path::absolute(root.into()).map_err(|source| HypervisorError::Io {
            path: PathBuf::from("."),
            source,
        })?;
        let vms_dir = root.join(VMS_DIR);
        std::fs::create_dir_all(&vms_dir).map_err(|source| HypervisorError::Io {
            path: vms_dir.clone(),
            source,
        })?;
        let socket = vms_dir
            .join("00000000-0000-0000-0000-000000000000")
            .join(QMP_FILE);
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(HypervisorError::RootTooLong { root });
        }
        let accel = match config.accel {
            Some(accel) => AccelChoice {
                accel,
                reason: "configured".into(),
                qemu_version: String::new(),
                tcg_probe_ms: None,
                kvm_probe_ms: None,
            },
            None => accel::choose(&config.commands, &root).await?,
        };
        let driver = QemuDriver {
            inner: Arc::new(Inner {
                root,
                images,
                config,
                accel,
                vms: Mutex::new(HashMap::new()),
                notices: broadcast::channel(NOTICE_BUFFER).0,
            }),
        };
        driver.adopt_all().await;
        Ok(driver)
    }

    /// The accelerator VMs run with, and why.
    pub fn accel(&self) -> &AccelChoice {
        &self.inner.accel
    }

    /// The directory of a VM.
    pub fn vm_dir(&self, uid: &str) -> PathBuf {
        self.inner.root.join(VMS_DIR).join(uid)
    }

    /// The pid of a VM's QEMU, while it runs.
    pub fn pid(&self, uid: &str) -> Option<u32> {
        self.existing(uid)?.instance().map(|instance| instance.pid)
    }

    /// How the current boot of a running VM is going (for measurements).
    pub fn boot_progress(&self, uid: &str) -> Option<BootProgress> {
        self.existing(uid)?
            .instance()
            .map(|instance| instance.boot())
    }

    fn existing(&self, uid: &str) -> Option<Arc<Vm>> {
        lock(&self.inner.vms).get(uid).cloned()
    }

    /// The record of a VM, made on first use (from its directory, if it has one).
    fn vm(&self, uid: &str) -> Result<Arc<Vm>, HypervisorError> {
        check_uid(uid)?;
        let mut vms = lock(&self.inner.vms);
        let vm = vms.entry(uid.to_owned()).or_insert_with(|| {
            let vm = Vm {
                uid: uid.to_owned(),
                dir: self.vm_dir(uid),
                actions: tokio::sync::Mutex::new(()),
                runtime: Mutex::new(Runtime {
                    power: Power::Absent,
                    fault: None,
                    instance: None,
                }),
            };
            let power = vm.resting_power();
            lock(&vm.runtime).power = power;
            Arc::new(vm)
        });
        Ok(vm.clone())
    }

    /// Adopts the QEMUs still running from an earlier agent; VMs with none are stopped or
    /// suspended as their directories say.
    async fn adopt_all(&self) {
        let Ok(entries) = std::fs::read_dir(self.inner.root.join(VMS_DIR)) else {
            return;
        };
        for entry in entries.filter_map(Result::ok) {
            let uid = entry.file_name().to_string_lossy().into_owned();
            let Ok(vm) = self.vm(&uid) else { continue };
            let on_end = self.on_end(&vm);
            if let Some((instance, activation)) =
                instance::adopt(&vm.files(), self.inner.config.boot_window, on_end).await
            {
                let power = match instance.qmp.status().await.as_deref() {
                    Ok("paused") => Power::Paused,
                    _ => Power::Running,
                };
                let mut runtime = lock(&vm.runtime);
                runtime.power = power;
                runtime.instance = Some(instance);
                drop(runtime);
                activation.activate();
            }
        }
    }

    /// What happens to a VM when its process ends by itself.
    fn on_end(&self, vm: &Arc<Vm>) -> instance::OnEnd {
        let vm: Weak<Vm> = Arc::downgrade(vm);
        let notices = self.inner.notices.clone();
        Box::new(move |instance, ended| {
            let Some(vm) = vm.upgrade() else { return };
            let mut runtime = lock(&vm.runtime);
            if !runtime
                .instance
                .as_ref()
                .is_some_and(|current| Arc::ptr_eq(current, instance))
            {
                return;
            }
            runtime.instance = None;
            let (power, fault) = match ended {
                // The action that asked for it says where the VM is now.
                Ended::Expected => return,
                Ended::GuestShutdown => (Power::Shutdown, None),
                Ended::BootFailed(fault) => (Power::Failed, Some(fault)),
                Ended::Crashed(fault) => (Power::Crashed, Some(fault)),
            };
            tracing::info!(vm = %vm.uid, ?power, "a VM's QEMU ended by itself");
            runtime.power = power;
            runtime.fault = fault;
            drop(runtime);
            // Nobody listening (no agent loop yet) is fine.
            let _ = notices.send(vm.uid.clone());
        })
    }

    /// Starts QEMU for `vm` (from `incoming`, to resume) and keeps it.
    async fn launch(
        &self,
        vm: &Arc<Vm>,
        launch: &LaunchConfig,
        incoming: Option<&Path>,
    ) -> Result<(), HypervisorError> {
        let files = vm.files();
        rotate(&files.console_log);
        let saved = serde_json::to_vec_pretty(launch).unwrap_or_default();
        let launch_file = vm.file(LAUNCH_FILE);
        std::fs::write(&launch_file, saved).map_err(|source| HypervisorError::Io {
            path: launch_file,
            source,
        })?;
        let started = Instant::now();
        let (instance, activation) = instance::start(
            &self.inner.config.commands,
            launch,
            incoming,
            &files,
            self.inner.config.boot_window,
            self.on_end(vm),
        )
        .await?;
        tracing::info!(vm = %vm.uid, pid = instance.pid, elapsed = ?started.elapsed(), "QEMU runs");
        let mut runtime = lock(&vm.runtime);
        runtime.power = Power::Running;
        runtime.fault = None;
        runtime.instance = Some(instance);
        drop(runtime);
        activation.activate();
        Ok(())
    }

    /// The command line for a VM: its image, its size, its files.
    async fn launch_config(
        &self,
        vm: &Arc<Vm>,
        spec: &VmSpec,
    ) -> Result<LaunchConfig, HypervisorError> {
        let reference = spec
            .image_ref
            .as_deref()
            .filter(|reference| !reference.is_empty())
            .ok_or_else(|| HypervisorError::NoImage {
                uid: spec.uid.clone(),
            })?;
        let image = self
            .inner
            .images
            .vm_image(&spec.namespace, reference)
            .await?;
        if image.kernel.is_none() && image.disk.is_none() {
            return Err(HypervisorError::NoImage {
                uid: spec.uid.clone(),
            });
        }
        let disk = match &image.disk {
            Some(image_disk) => {
                let overlay = vm.file(DISK_FILE);
                disk::create_overlay(
                    &self.inner.config.commands,
                    image_disk,
                    &overlay,
                    spec.disk_gb,
                )
                .await?;
                Some(overlay)
            }
            None => None,
        };
        let files = vm.files();
        Ok(LaunchConfig {
            uid: spec.uid.clone(),
            name: format!("{}/{}", spec.namespace, spec.name),
            accel: self.inner.accel.accel,
            vcpus: spec.vcpus,
            memory_mb: spec.memory_mb,
            append: image
                .kernel
                .as_ref()
                .map(|_| launch::kernel_command_line(image.kernel_args.as_deref(), &spec.name)),
            kernel: image.kernel,
            initrd: image.initrd,
            disk,
            // TAPs the host network made and put on their bridges.
            nics: spec
                .nics
                .iter()
                .map(|nic| launch::Nic {
                    tap: nic.tap.clone(),
                    mac: nic.mac.clone(),
                })
                .collect(),
            console_log: files.console_log,
            qmp_socket: files.qmp_socket,
            pidfile: files.pidfile,
        })
    }

    async fn start_vm(&self, spec: &VmSpec) -> Result<(), HypervisorError> {
        let vm = self.vm(&spec.uid)?;
        let _action = vm.actions.lock().await;
        match vm.power() {
            Power::Running | Power::Paused => return Ok(()),
            Power::Suspended => return Err(vm.wrong_state("start")),
            Power::Absent | Power::Shutdown | Power::Crashed | Power::Failed => {}
        }
        self.boot(&vm, spec).await
    }

    /// Boots a VM that has no process; a failure leaves it `Failed` with its fault.
    async fn boot(&self, vm: &Arc<Vm>, spec: &VmSpec) -> Result<(), HypervisorError> {
        std::fs::create_dir_all(&vm.dir).map_err(|source| HypervisorError::Io {
            path: vm.dir.clone(),
            source,
        })?;
        let launch = self.launch_config(vm, spec).await?;
        if let Err(error) = self.launch(vm, &launch, None).await {
            vm.set(
                Power::Failed,
                Some(Fault {
                    message: error.to_string(),
                    details: instance::fault_details(&vm.files()),
                }),
            );
            return Err(error);
        }
        Ok(())
    }

    /// Ends a VM's process: the power button first when `grace` is given (a guest that
    /// does not shut down in time is then turned off). Returns whether the guest shut down
    /// by itself.
    async fn power_off(&self, vm: &Vm, grace: Option<Duration>) -> Result<bool, HypervisorError> {
        let Some(instance) = vm.instance() else {
            return Ok(false);
        };
        instance.expect_exit();
        if let Some(grace) = grace
            && vm.power() == Power::Running
            && instance.qmp.execute("system_powerdown", None).await.is_ok()
            && instance.wait_exit(grace).await.is_some()
        {
            self.forget_instance(vm, &instance);
            return Ok(true);
        }
        if instance.qmp.execute("quit", None).await.is_err()
            || instance.wait_exit(EXIT_TIMEOUT).await.is_none()
        {
            instance.kill();
            if instance.wait_exit(EXIT_TIMEOUT).await.is_none() {
                return Err(HypervisorError::WontExit { pid: instance.pid });
            }
        }
        self.forget_instance(vm, &instance);
        Ok(false)
    }

    fn forget_instance(&self, vm: &Vm, instance: &Arc<Instance>) {
        let mut runtime = lock(&vm.runtime);
        if runtime
            .instance
            .as_ref()
            .is_some_and(|current| Arc::ptr_eq(current, instance))
        {
            runtime.instance = None;
        }
    }

    async fn stop_vm(&self, uid: &str, grace: Duration) -> Result<(), HypervisorError> {
        let vm = self.vm(uid)?;
        let _action = vm.actions.lock().await;
        match vm.power() {
            Power::Running | Power::Paused => {
                let clean = self.power_off(&vm, Some(grace)).await?;
                tracing::info!(vm = %uid, clean, "stopped a VM");
                vm.set(Power::Shutdown, None);
            }
            Power::Suspended => {
                remove_file(&vm.file(STATE_FILE))?;
                vm.set(Power::Shutdown, None);
            }
            Power::Absent | Power::Shutdown | Power::Crashed | Power::Failed => {}
        }
        Ok(())
    }

    async fn reboot_vm(
        &self,
        spec: &VmSpec,
        kind: RebootKind,
        grace: Duration,
    ) -> Result<(), HypervisorError> {
        let vm = self.vm(&spec.uid)?;
        let _action = vm.actions.lock().await;
        let power = vm.power();
        let Some(instance) = vm
            .instance()
            .filter(|_| matches!(power, Power::Running | Power::Paused))
        else {
            return Err(vm.wrong_state("reboot"));
        };
        if kind == RebootKind::Soft && power == Power::Running {
            instance.expect_exit();
            instance.qmp.execute("system_powerdown", None).await?;
            if instance.wait_exit(grace).await.is_some() {
                self.forget_instance(&vm, &instance);
                vm.set(Power::Shutdown, None);
                tracing::info!(vm = %spec.uid, "the guest shut down; booting it again");
                return self.boot(&vm, spec).await;
            }
            // The guest ignored the power button: reset it, as Nova falls back to a hard
            // reboot.
            tracing::info!(vm = %spec.uid, ?grace, "the guest did not shut down; resetting it");
            instance.unexpect_exit();
        }
        instance.qmp.execute("system_reset", None).await?;
        if power == Power::Paused {
            instance.qmp.execute("cont", None).await?;
        }
        vm.set(Power::Running, None);
        Ok(())
    }

    /// Runs a QMP command on a VM that is in one of `from`, then calls it `to`.
    async fn qmp_transition(
        &self,
        uid: &str,
        action: &'static str,
        command: &str,
        from: Power,
        to: Power,
    ) -> Result<(), HypervisorError> {
        let vm = self.vm(uid)?;
        let _action = vm.actions.lock().await;
        let power = vm.power();
        if power == to {
            return Ok(());
        }
        let Some(instance) = vm.instance().filter(|_| power == from) else {
            return Err(vm.wrong_state(action));
        };
        instance.qmp.execute(command, None).await?;
        vm.set(to, None);
        Ok(())
    }

    async fn suspend_vm(&self, uid: &str) -> Result<(), HypervisorError> {
        let vm = self.vm(uid)?;
        let _action = vm.actions.lock().await;
        let power = vm.power();
        if power == Power::Suspended {
            return Ok(());
        }
        let Some(instance) = vm
            .instance()
            .filter(|_| matches!(power, Power::Running | Power::Paused))
        else {
            return Err(vm.wrong_state("suspend"));
        };
        if power == Power::Running {
            instance.qmp.execute("stop", None).await?;
        }
        let state = vm.file(STATE_FILE);
        let partial = state.with_extension("partial");
        let saved = save_state(&instance, &partial).await;
        if let Err(error) = saved {
            let _ = std::fs::remove_file(&partial);
            if power == Power::Running {
                instance.qmp.execute("cont", None).await?;
            }
            return Err(error);
        }
        std::fs::rename(&partial, &state).map_err(|source| HypervisorError::Io {
            path: state.clone(),
            source,
        })?;
        self.power_off(&vm, None).await?;
        vm.set(Power::Suspended, None);
        Ok(())
    }

    async fn resume_vm(&self, spec: &VmSpec) -> Result<(), HypervisorError> {
        let vm = self.vm(&spec.uid)?;
        let _action = vm.actions.lock().await;
        match vm.power() {
            Power::Running => return Ok(()),
            Power::Suspended => {}
            _ => return Err(vm.wrong_state("resume")),
        }
        let launch_file = vm.file(LAUNCH_FILE);
        let launch: LaunchConfig = std::fs::read(&launch_file)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or_else(|| HypervisorError::NoLaunch {
                uid: spec.uid.clone(),
            })?;
        let state = vm.file(STATE_FILE);
        if let Err(error) = self.launch(&vm, &launch, Some(&state)).await {
            // The saved state stays: a later resume may work.
            vm.set(
                Power::Suspended,
                Some(Fault {
                    message: error.to_string(),
                    details: instance::fault_details(&vm.files()),
                }),
            );
            return Err(error);
        }
        remove_file(&state)
    }

    async fn destroy_vm(&self, uid: &str) -> Result<(), HypervisorError> {
        let vm = self.vm(uid)?;
        let _action = vm.actions.lock().await;
        if let Some(instance) = vm.instance() {
            instance.expect_exit();
            instance.kill();
            if instance.wait_exit(EXIT_TIMEOUT).await.is_none() {
                return Err(HypervisorError::WontExit { pid: instance.pid });
            }
            self.forget_instance(&vm, &instance);
        }
        // A QEMU no monitor follows (its agent died before adopting it) goes too.
        let files = vm.files();
        if let Some(pid) = std::fs::read_to_string(&files.pidfile)
            .ok()
            .and_then(|text| text.trim().parse::<u32>().ok())
        {
            instance::kill_stray(pid, &files.qmp_socket);
        }
        // The host network's TAPs go with the networking issue's hook here.
        match std::fs::remove_dir_all(&vm.dir) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(HypervisorError::Io {
                    path: vm.dir.clone(),
                    source,
                });
            }
        }
        vm.set(Power::Absent, None);
        lock(&self.inner.vms).remove(uid);
        tracing::info!(vm = %uid, "destroyed a VM");
        Ok(())
    }
}

/// A uid names a directory: nothing in it may climb out.
fn check_uid(uid: &str) -> Result<(), HypervisorError> {
    if uid.is_empty() || !uid.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(HypervisorError::BadUid {
            uid: uid.to_owned(),
        });
    }
    Ok(())
}

/// Saves a paused machine's state to `path` (QMP `migrate` to a file).
async fn save_state(instance: &Instance, path: &Path) -> Result<(), HypervisorError> {
    let started = Instant::now();
    instance
        .qmp
        .execute("migrate", Some(json!({"uri": launch::outgoing_uri(path)})))
        .await?;
    loop {
        let progress = instance.qmp.execute("query-migrate", None).await?;
        match progress["status"].as_str().unwrap_or_default() {
            "completed" => {
                tracing::info!(elapsed = ?started.elapsed(), path = %path.display(), "saved a VM's state");
                return Ok(());
            }
            status @ ("failed" | "cancelled") => {
                return Err(HypervisorError::SaveFailed {
                    status: status.to_owned(),
                    message: progress["error-desc"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                });
            }
            _ if started.elapsed() > MIGRATE_TIMEOUT => {
                // Best effort: the migration may already be ending.
                let _ = instance.qmp.execute("migrate_cancel", None).await;
                return Err(HypervisorError::SaveFailed {
                    status: "timed out".into(),
                    message: format!("not saved in {MIGRATE_TIMEOUT:?}"),
                });
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Moves a big console log aside, so logs stay bounded across many boots.
fn rotate(log: &Path) {
    if std::fs::metadata(log).is_ok_and(|m| m.len() > CONSOLE_ROTATE_BYTES) {
        let _ = std::fs::rename(log, log.with_extension("log.1"));
    }
}

fn remove_file(path: &Path) -> Result<(), HypervisorError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(HypervisorError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[async_trait::async_trait]
impl VmDriver for QemuDriver {
    async fn state(&self, uid: &str) -> VmState {
        match self.existing(uid) {
            Some(vm) => {
                let runtime = lock(&vm.runtime);
                VmState {
                    power: runtime.power,
                    fault: runtime.fault.clone(),
                }
            }
            None => VmState {
                power: if self.vm_dir(uid).join(STATE_FILE).exists() {
                    Power::Suspended
                } else if self.vm_dir(uid).exists() {
                    Power::Shutdown
                } else {
                    Power::Absent
                },
                fault: None,
            },
        }
    }

    async fn start(&self, vm: &VmSpec) -> anyhow::Result<()> {
        Ok(self.start_vm(vm).await?)
    }

    async fn stop(&self, uid: &str, grace: Duration) -> anyhow::Result<()> {
        Ok(self.stop_vm(uid, grace).await?)
    }

    async fn reboot(&self, vm: &VmSpec, kind: RebootKind, grace: Duration) -> anyhow::Result<()> {
        Ok(self.reboot_vm(vm, kind, grace).await?)
    }

    async fn pause(&self, uid: &str) -> anyhow::Result<()> {
        Ok(self
            .qmp_transition(uid, "pause", "stop", Power::Running, Power::Paused)
            .await?)
    }

    async fn unpause(&self, uid: &str) -> anyhow::Result<()> {
        Ok(self
            .qmp_transition(uid, "unpause", "cont", Power::Paused, Power::Running)
            .await?)
    }

    async fn suspend(&self, uid: &str) -> anyhow::Result<()> {
        Ok(self.suspend_vm(uid).await?)
    }

    async fn resume(&self, vm: &VmSpec) -> anyhow::Result<()> {
        Ok(self.resume_vm(vm).await?)
    }

    async fn destroy(&self, uid: &str) -> anyhow::Result<()> {
        Ok(self.destroy_vm(uid).await?)
    }

    async fn list(&self) -> anyhow::Result<Vec<String>> {
        let dir = self.inner.root.join(VMS_DIR);
        let entries = std::fs::read_dir(&dir).map_err(|source| HypervisorError::Io {
            path: dir.clone(),
            source,
        })?;
        Ok(entries
            .filter_map(Result::ok)
            .filter(|entry| entry.path().is_dir())
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .collect())
    }

    async fn console_output(&self, uid: &str, lines: Option<usize>) -> anyhow::Result<String> {
        check_uid(uid)?;
        let path = self.vm_dir(uid).join(CONSOLE_FILE);
        Ok(console::tail(&path, lines).map_err(|source| HypervisorError::Io { path, source })?)
    }

    fn notices(&self) -> broadcast::Receiver<String> {
        self.inner.notices.subscribe()
    }
}
