//! One QEMU process of a VM: starting it and its QMP connection, adopting one an earlier
//! agent started, and the monitor task that follows it until it exits: QMP events
//! (SHUTDOWN by the guest, RESET), the console (user space, ready, kernel panic) and the
//! process's end, which it reports as expected, a guest shutdown, a failed boot or a crash.
//!
//! A boot has failed when QEMU exits (without the guest shutting down) or the guest
//! kernel panics before the boot is done; a boot is done when the test guest says it is
//! ready, or after the boot window (a guest that prints nothing cannot say more). A panic
//! stops QEMU at once, its console kept for the fault.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ronghe_agent::vms::Fault;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::HypervisorError;
use crate::console::{self, Marker, Scanner};
use crate::host::HostCommands;
use crate::launch::LaunchConfig;
use crate::qmp::{Qmp, QmpError, QmpEvent};

/// How long QEMU may take to open its QMP socket.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a resume may take to read its saved state.
const INCOMING_TIMEOUT: Duration = Duration::from_secs(300);
/// How often the console is read for markers.
const SCAN_INTERVAL: Duration = Duration::from_millis(250);
/// Console and QEMU log lines kept in a fault.
const FAULT_CONSOLE_LINES: usize = 30;
const FAULT_LOG_LINES: usize = 10;

/// How a QEMU process ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exit {
    /// `exit status 0`, `killed by signal 9` ...
    pub description: String,
    /// QEMU said the guest shut down (SHUTDOWN with `guest: true`) before it exited.
    pub guest_shutdown: bool,
}

/// What the end of a process means for its VM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The driver asked for it (stop, suspend, soft reboot, destroy).
    Expected,
    /// The guest shut itself down.
    GuestShutdown,
    /// It never booted.
    BootFailed(Fault),
    /// It died, or the guest panicked, after booting.
    Crashed(Fault),
}

/// Told how a process ended, once, if its start was activated.
pub type OnEnd = Box<dyn FnOnce(&Arc<Instance>, Ended) + Send>;

/// The boots of one process (a guest reset begins another).
#[derive(Clone, Copy, Debug)]
pub struct BootProgress {
    /// When this boot began (QEMU started, or the guest reset).
    pub began: Instant,
    pub user_space: Option<Instant>,
    pub ready: Option<Instant>,
    /// Boots of this process so far.
    pub boots: u32,
    /// Adopted from an earlier agent: taken as booted.
    pub adopted: bool,
}

impl BootProgress {
    fn done(&self, window: Duration) -> bool {
        self.adopted || self.ready.is_some() || self.began.elapsed() >= window
    }
}

/// A running QEMU.
pub struct Instance {
    pub pid: u32,
    pub qmp: Qmp,
    pub started_at: Instant,
    exit: watch::Receiver<Option<Exit>>,
    kill: mpsc::UnboundedSender<()>,
    expected: AtomicBool,
    boot: Mutex<BootProgress>,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

impl Instance {
    /// The next exit is the driver's doing, not a crash.
    pub fn expect_exit(&self) {
        self.expected.store(true, Ordering::SeqCst);
    }

    /// Takes back [`Instance::expect_exit`] (a soft reboot that falls back to a reset).
    pub fn unexpect_exit(&self) {
        self.expected.store(false, Ordering::SeqCst);
    }

    /// SIGKILL.
    pub fn kill(&self) {
        // The monitor is gone only once the process is.
        let _ = self.kill.send(());
    }

    pub fn exited(&self) -> Option<Exit> {
        self.exit.borrow().clone()
    }

    /// Waits up to `timeout` for the process to end.
    pub async fn wait_exit(&self, timeout: Duration) -> Option<Exit> {
        let mut exit = self.exit.clone();
        let ended = tokio::time::timeout(timeout, exit.wait_for(Option::is_some)).await;
        match ended {
            Ok(Ok(exit)) => exit.clone(),
            _ => self.exited(),
        }
    }

    pub fn boot(&self) -> BootProgress {
        *lock(&self.boot)
    }

    fn new_boot(&self) {
        let mut boot = lock(&self.boot);
        boot.began = Instant::now();
        boot.user_space = None;
        boot.ready = None;
        boot.boots += 1;
        boot.adopted = false;
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Hands the process to the monitor's end report: the driver activates a started
/// instance once it keeps it, so an end is never reported for one it does not know; a
/// start the driver gave up on (dropped) reports nothing.
pub struct Activation(oneshot::Sender<()>);

impl Activation {
    pub fn activate(self) {
        // A monitor that is gone has a process that is gone; nothing to tell.
        let _ = self.0.send(());
    }
}

/// The files of one VM that a process uses.
#[derive(Clone, Debug)]
pub struct Files {
    pub console_log: PathBuf,
    pub qemu_log: PathBuf,
    pub qmp_socket: PathBuf,
    pub pidfile: PathBuf,
}

/// The end of a fault's story: the console's last lines, then QEMU's own.
pub fn fault_details(files: &Files) -> String {
    let console = console::tail(&files.console_log, Some(FAULT_CONSOLE_LINES)).unwrap_or_default();
    let qemu = console::tail(&files.qemu_log, Some(FAULT_LOG_LINES)).unwrap_or_default();
    if qemu.trim().is_empty() {
        console
    } else {
        format!("{console}--- qemu ---\n{qemu}")
    }
}

/// Starts QEMU for `launch` (from the saved state `incoming`, to resume) and returns once
/// it runs, with its monitor following it.
pub async fn start(
    commands: &HostCommands,
    launch: &LaunchConfig,
    incoming: Option<&Path>,
    files: &Files,
    boot_window: Duration,
    on_end: OnEnd,
) -> Result<(Arc<Instance>, Activation), HypervisorError> {
    for stale in [&files.qmp_socket, &files.pidfile] {
        let _ = std::fs::remove_file(stale);
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&files.qemu_log)
        .map_err(|source| HypervisorError::Io {
            path: files.qemu_log.clone(),
            source,
        })?;
    let console_offset = Scanner::end_of(&files.console_log);
    let mut child = commands.spawn_qemu(&launch.args(incoming), log)?;
    let pid = child.id().unwrap_or_default();
    let started_at = Instant::now();
    let (qmp, events) = match connect(&mut child, files).await {
        Ok(connected) => connected,
        Err(error) => {
            // Whatever state it is in, it is not kept.
            let _ = child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
            return Err(error);
        }
    };
    let (exit_sender, exit) = watch::channel(None);
    let (kill, kill_requests) = mpsc::unbounded_channel();
    let (activation, activated) = oneshot::channel();
    let instance = Arc::new(Instance {
        pid,
        qmp,
        started_at,
        exit,
        kill,
        expected: AtomicBool::new(false),
        boot: Mutex::new(BootProgress {
            began: started_at,
            user_space: None,
            ready: None,
            boots: 1,
            adopted: false,
        }),
    });
    tokio::spawn(monitor(Monitor {
        instance: instance.clone(),
        process: Process::Child(child),
        events,
        kill_requests,
        console: Scanner::new(&files.console_log, console_offset),
        files: files.clone(),
        boot_window,
        exit: exit_sender,
        activated,
        on_end,
    }));
    if let Err(error) = settle(&instance, incoming.is_some(), files).await {
        instance.expect_exit();
        instance.kill();
        instance.wait_exit(Duration::from_secs(10)).await;
        return Err(error);
    }
    Ok((instance, Activation(activation)))
}

/// Connects to QMP while QEMU starts; QEMU exiting first is the error, with its log.
async fn connect(
    child: &mut tokio::process::Child,
    files: &Files,
) -> Result<(Qmp, broadcast::Receiver<QmpEvent>), HypervisorError> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(exited_while_starting(describe(status), files));
        }
        match Qmp::connect(&files.qmp_socket).await {
            Ok(connected) => return Ok(connected),
            // Not listening yet.
            Err(QmpError::Connect { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => {
                // A greeting cut short is QEMU exiting during its start.
                if let Ok(Ok(status)) =
                    tokio::time::timeout(Duration::from_secs(5), child.wait()).await
                {
                    return Err(exited_while_starting(describe(status), files));
                }
                return Err(HypervisorError::Qmp(error));
            }
        }
    }
}

fn exited_while_starting(status: String, files: &Files) -> HypervisorError {
    HypervisorError::ExitedWhileStarting {
        status,
        log: console::tail(&files.qemu_log, Some(FAULT_LOG_LINES))
            .unwrap_or_default()
            .trim()
            .to_owned(),
    }
}

/// Waits until the machine runs: a resume once its state is read back (then it is
/// continued: it was saved paused).
async fn settle(instance: &Instance, incoming: bool, files: &Files) -> Result<(), HypervisorError> {
    let deadline = Instant::now()
        + if incoming {
            INCOMING_TIMEOUT
        } else {
            START_TIMEOUT
        };
    loop {
        let status = match instance.qmp.status().await {
            Ok(status) => status,
            Err(QmpError::Closed) => {
                let exit = instance.wait_exit(Duration::from_secs(5)).await;
                return Err(exited_while_starting(
                    exit.map(|e| e.description)
                        .unwrap_or_else(|| "closed QMP".into()),
                    files,
                ));
            }
            Err(error) => return Err(error.into()),
        };
        match status.as_str() {
            "running" => return Ok(()),
            "paused" | "postmigrate" if incoming => {
                instance.qmp.execute("cont", None).await?;
                return Ok(());
            }
            "inmigrate" | "prelaunch" if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => {
                return Err(HypervisorError::NotRunning {
                    status: other.to_owned(),
                });
            }
        }
    }
}

/// Takes over a QEMU an earlier agent started (its pid file names a live QEMU of this
/// VM), connecting to its QMP socket.
pub async fn adopt(
    files: &Files,
    boot_window: Duration,
    on_end: OnEnd,
) -> Option<(Arc<Instance>, Activation)> {
    let pid: u32 = std::fs::read_to_string(&files.pidfile)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    if !is_qemu_of(pid, &files.qmp_socket) {
        return None;
    }
    let (qmp, events) = Qmp::connect(&files.qmp_socket).await.ok()?;
    let (exit_sender, exit) = watch::channel(None);
    let (kill, kill_requests) = mpsc::unbounded_channel();
    let (activation, activated) = oneshot::channel();
    let now = Instant::now();
    let instance = Arc::new(Instance {
        pid,
        qmp,
        started_at: now,
        exit,
        kill,
        expected: AtomicBool::new(false),
        boot: Mutex::new(BootProgress {
            began: now,
            user_space: None,
            ready: None,
            boots: 1,
            adopted: true,
        }),
    });
    tracing::info!(pid, socket = %files.qmp_socket.display(), "adopted a running QEMU");
    tokio::spawn(monitor(Monitor {
        instance: instance.clone(),
        process: Process::Adopted(pid),
        events,
        kill_requests,
        console: Scanner::new(&files.console_log, Scanner::end_of(&files.console_log)),
        files: files.clone(),
        boot_window,
        exit: exit_sender,
        activated,
        on_end,
    }));
    Some((instance, Activation(activation)))
}

/// Whether `pid` is a live QEMU started for the VM whose QMP socket is `socket` (its
/// command line names the socket), so a reused pid is never killed.
pub fn is_qemu_of(pid: u32, socket: &Path) -> bool {
    let Ok(command_line) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let socket = socket.to_string_lossy();
    command_line
        .split(|byte| *byte == 0)
        .any(|argument| String::from_utf8_lossy(argument).contains(socket.as_ref()))
}

/// SIGKILL to a QEMU of this VM that no monitor follows (one left by an earlier agent).
pub fn kill_stray(pid: u32, socket: &Path) {
    if !is_qemu_of(pid, socket) {
        return;
    }
    let Some(target) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return;
    };
    tracing::info!(pid, "killing a stray QEMU");
    if let Err(error) = rustix::process::kill_process(target, rustix::process::Signal::KILL) {
        tracing::warn!(pid, %error, "killing a stray QEMU failed");
    }
}

fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => status.to_string(),
    }
}

/// The process a monitor follows: a child of this agent, or one adopted (which can only
/// be watched, not waited for).
enum Process {
    Child(tokio::process::Child),
    Adopted(u32),
}

impl Process {
    async fn wait(&mut self) -> String {
        match self {
            Process::Child(child) => match child.wait().await {
                Ok(status) => describe(status),
                Err(error) => format!("lost ({error})"),
            },
            Process::Adopted(pid) => loop {
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    return "exited (started by an earlier agent: its status is unknown)".into();
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            },
        }
    }

    fn kill(&mut self, socket: &Path) {
        match self {
            Process::Child(child) => {
                if let Err(error) = child.start_kill() {
                    tracing::debug!(%error, "killing QEMU failed (gone already?)");
                }
            }
            Process::Adopted(pid) => kill_stray(*pid, socket),
        }
    }
}

struct Monitor {
    instance: Arc<Instance>,
    process: Process,
    events: broadcast::Receiver<QmpEvent>,
    kill_requests: mpsc::UnboundedReceiver<()>,
    console: Scanner,
    files: Files,
    boot_window: Duration,
    exit: watch::Sender<Option<Exit>>,
    activated: oneshot::Receiver<()>,
    on_end: OnEnd,
}

/// Reads new console lines for markers; the first panic line, if one was seen.
fn scan(instance: &Instance, console: &mut Scanner) -> Option<String> {
    let mut panic = None;
    for line in console.new_lines() {
        match console::marker(&line) {
            Some(Marker::UserSpace) => {
                lock(&instance.boot)
                    .user_space
                    .get_or_insert_with(Instant::now);
            }
            Some(Marker::Ready) => {
                let mut boot = lock(&instance.boot);
                let now = Instant::now();
                boot.ready.get_or_insert(now);
                boot.user_space.get_or_insert(now);
            }
            Some(Marker::Panic) => {
                panic.get_or_insert(line);
            }
            None => {}
        }
    }
    panic
}

async fn monitor(mut monitor: Monitor) {
    let instance = monitor.instance.clone();
    let mut guest_shutdown = false;
    let mut panicked: Option<(String, bool)> = None;
    let mut events_open = true;
    let mut tick = tokio::time::interval(SCAN_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let description = loop {
        tokio::select! {
            description = monitor.process.wait() => break description,
            Some(()) = monitor.kill_requests.recv() => {
                monitor.process.kill(&monitor.files.qmp_socket);
            }
            event = monitor.events.recv(), if events_open => match event {
                Ok(event) if event.event == "SHUTDOWN" => {
                    guest_shutdown |= event.data["guest"].as_bool() == Some(true);
                }
                Ok(event) if event.event == "RESET" => instance.new_boot(),
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => events_open = false,
            },
            _ = tick.tick() => {
                if panicked.is_none()
                    && let Some(line) = scan(&instance, &mut monitor.console)
                {
                    let during_boot = !instance.boot().done(monitor.boot_window);
                    tracing::warn!(pid = instance.pid, %line, during_boot, "the guest kernel panicked; stopping QEMU");
                    panicked = Some((line, during_boot));
                    monitor.process.kill(&monitor.files.qmp_socket);
                }
            }
        }
    };
    if panicked.is_none()
        && let Some(line) = scan(&instance, &mut monitor.console)
    {
        panicked = Some((line, !instance.boot().done(monitor.boot_window)));
    }
    tracing::info!(pid = instance.pid, %description, guest_shutdown, "QEMU exited");
    let exit = Exit {
        description: description.clone(),
        guest_shutdown,
    };
    monitor.exit.send_replace(Some(exit));
    if monitor.activated.await.is_err() {
        return;
    }
    let ended = if instance.expected.load(Ordering::SeqCst) {
        Ended::Expected
    } else if let Some((line, during_boot)) = panicked {
        let fault = Fault {
            message: format!("the guest kernel panicked: {}", line.trim()),
            details: fault_details(&monitor.files),
        };
        if during_boot {
            Ended::BootFailed(fault)
        } else {
            Ended::Crashed(fault)
        }
    } else if guest_shutdown {
        Ended::GuestShutdown
    } else {
        let during_boot = !instance.boot().done(monitor.boot_window);
        let fault = Fault {
            message: if during_boot {
                format!("QEMU exited while the guest was booting ({description})")
            } else {
                format!("QEMU exited unexpectedly ({description})")
            },
            details: fault_details(&monitor.files),
        };
        if during_boot {
            Ended::BootFailed(fault)
        } else {
            Ended::Crashed(fault)
        }
    };
    (monitor.on_end)(&instance, ended);
}
