//! The QEMU driver against real QEMU: the test guest built from this machine's kernel and
//! busybox boots, pauses, stops cleanly on the power button, starts again, reboots hard,
//! suspends to a file and resumes, reboots soft, dies by SIGKILL (noticed), and is
//! destroyed without a trace; a garbage kernel and a garbage initramfs fail with their
//! console in the fault. Needs root, QEMU, `linux-image-amd64` and `busybox-static` (CI
//! has them); skips loudly without them.
//!
//! One test function, so the slow TCG boots happen a few times, not per case. Times are
//! printed, never asserted.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use ronghe_agent::vms::{Power, RebootKind, VmDriver, VmSpec};
use ronghe_hypervisor::{LocalImages, QemuDriver};
use ronghe_images::VmImage;
use ronghe_images::build::guest::{self, GuestSources, READY_MARKER};

/// TCG boots take 5-20 s here; a loaded CI machine may take several times that.
const BOOT_DEADLINE: Duration = Duration::from_secs(120);
const GRACE: Duration = Duration::from_secs(60);

/// Kills every QEMU the test's driver started (by the pids in its VM directories,
/// checked against their command lines) when the test ends, passing or failing.
struct KillLeftovers {
    vms: PathBuf,
}

impl Drop for KillLeftovers {
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir(&self.vms) else {
            return;
        };
        for entry in entries.flatten() {
            let dir = entry.path();
            if let Some(pid) = std::fs::read_to_string(dir.join("qemu.pid"))
                .ok()
                .and_then(|pid| pid.trim().parse().ok())
            {
                ronghe_hypervisor::instance::kill_stray(pid, &dir.join("qmp.sock"));
            }
        }
    }
}

fn prerequisites() -> Result<GuestSources, String> {
    for program in ["qemu-system-x86_64", "qemu-img"] {
        std::process::Command::new(program)
            .arg("--version")
            .output()
            .map_err(|error| {
                format!("{program} cannot run ({error}); install qemu-system-x86 and qemu-utils")
            })?;
    }
    GuestSources::detect().map_err(|error| error.to_string())
}

fn spec(uid: &str, name: &str, image: &str) -> VmSpec {
    VmSpec {
        uid: uid.into(),
        namespace: "default".into(),
        name: name.into(),
        image_ref: Some(image.into()),
        vcpus: 1,
        memory_mb: 256,
        disk_gb: 0,
        ..VmSpec::default()
    }
}

/// Waits until the console shows `needle` at least `count` times.
async fn wait_for_console(
    driver: &QemuDriver,
    uid: &str,
    needle: &str,
    count: usize,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let console = driver.console_output(uid, None).await?;
        if console.matches(needle).count() >= count {
            return Ok(started.elapsed());
        }
        if started.elapsed() > BOOT_DEADLINE {
            let tail = driver.console_output(uid, Some(30)).await?;
            bail!("no {needle:?} #{count} on the console in {BOOT_DEADLINE:?}; it ends:\n{tail}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the driver says `power` (after a notice, or by looking again).
async fn wait_for_power(
    driver: &QemuDriver,
    notices: &mut tokio::sync::broadcast::Receiver<String>,
    uid: &str,
    power: Power,
) -> anyhow::Result<ronghe_agent::vms::VmState> {
    let deadline = Instant::now() + BOOT_DEADLINE;
    loop {
        let state = driver.state(uid).await;
        if state.power == power {
            return Ok(state);
        }
        ensure!(
            Instant::now() < deadline,
            "{uid} is {:?}, not {power:?}; its console ends:\n{}",
            state.power,
            driver.console_output(uid, Some(30)).await?
        );
        // A notice or a second, whichever comes first.
        let _ = tokio::time::timeout(Duration::from_secs(1), notices.recv()).await;
    }
}

fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Pids of live processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|line| String::from_utf8_lossy(&line).contains(needle))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vm_lives_through_every_action_and_leaves_nothing() -> anyhow::Result<()> {
    let sources = match prerequisites() {
        Ok(sources) => sources,
        Err(why) => {
            eprintln!("SKIPPED a_vm_lives_through_every_action_and_leaves_nothing: {why}");
            return Ok(());
        }
    };
    let scratch = tempfile::tempdir()?;
    let root = scratch.path().join("hypervisor");
    let _leftovers = KillLeftovers {
        vms: root.join("vms"),
    };
    let built = Instant::now();
    let image = guest::build_from(&sources, &scratch.path().join("guest"))?;
    eprintln!("built the test guest in {:?}", built.elapsed());
    // A blank raw disk for the guest: the VM gets a 1 GiB qcow2 overlay on it.
    let base_disk = scratch.path().join("blank.raw");
    std::fs::File::create(&base_disk)?.set_len(64 << 20)?;
    let garbage = scratch.path().join("garbage");
    std::fs::write(&garbage, vec![0x5a; 3 << 20])?;
    let images = LocalImages::new()
        .with(
            "test-guest",
            VmImage {
                kernel: Some(image.kernel.clone()),
                initrd: Some(image.initramfs.clone()),
                kernel_args: None,
                disk: Some(ronghe_images::Disk {
                    path: base_disk.clone(),
                    format: "raw".into(),
                }),
            },
        )
        .with(
            "bad-kernel",
            VmImage {
                kernel: Some(garbage.clone()),
                initrd: Some(image.initramfs.clone()),
                ..VmImage::default()
            },
        )
        .with(
            "bad-initramfs",
            VmImage {
                kernel: Some(image.kernel.clone()),
                initrd: Some(garbage.clone()),
                ..VmImage::default()
            },
        );
    let probed = Instant::now();
    let driver = QemuDriver::new(&root, Arc::new(images)).await?;
    eprintln!(
        "accelerator: {:?} ({}) chosen in {:?}",
        driver.accel().accel,
        driver.accel().reason,
        probed.elapsed()
    );
    let mut notices = driver.notices();

    // Boot, and the guest says it is ready, named after the VM.
    let uid = "7d3f6a52-1c2b-4e8d-9a0f-5b6c7d8e9f01";
    let vm = VmSpec {
        disk_gb: 1,
        ..spec(uid, "guest-one", "test-guest")
    };
    let started = Instant::now();
    driver.start(&vm).await?;
    let running = started.elapsed();
    let pid = driver.pid(uid).context("a pid once started")?;
    ensure!(process_exists(pid));
    wait_for_console(&driver, uid, READY_MARKER, 1).await?;
    let ready = started.elapsed();
    let progress = driver.boot_progress(uid).context("boot progress")?;
    eprintln!(
        "first boot: QEMU running (ACTIVE) after {running:?}, user space after {:?}, \
         {READY_MARKER} after {ready:?}",
        progress.user_space.map(|at| at - progress.began + running)
    );
    let console = driver.console_output(uid, None).await?;
    ensure!(
        console.contains("ronghe-guest: hostname guest-one")
            && !console.contains("acpid holds no event device"),
        "{console}"
    );
    ensure!(driver.state(uid).await.power == Power::Running);
    ensure!(
        console.contains("[vda] 2097152 512-byte logical blocks"),
        "the overlay is the guest's 1 GiB disk: {console}"
    );
    ensure!(driver.vm_dir(uid).join("disk.qcow2").exists());

    // Pause and unpause.
    driver.pause(uid).await?;
    ensure!(driver.state(uid).await.power == Power::Paused);
    driver.unpause(uid).await?;
    ensure!(driver.state(uid).await.power == Power::Running);

    // A soft stop: the guest handles the power button and powers off.
    let stopping = Instant::now();
    driver.stop(uid, GRACE).await?;
    eprintln!("soft stop took {:?}", stopping.elapsed());
    ensure!(driver.state(uid).await.power == Power::Shutdown);
    ensure!(driver.pid(uid).is_none() && !process_exists(pid));
    let console = driver.console_output(uid, None).await?;
    ensure!(
        console.contains("ronghe-guest: power button") && console.contains("reboot: Power down"),
        "the guest shut down by itself: {console}"
    );

    // Start again from its files: a second boot on the same console.
    let starting = Instant::now();
    driver.start(&vm).await?;
    wait_for_console(&driver, uid, READY_MARKER, 2).await?;
    eprintln!("second boot: {READY_MARKER} after {:?}", starting.elapsed());

    // A hard reboot: a third boot in the same process.
    let pid = driver.pid(uid).context("running")?;
    let rebooting = Instant::now();
    driver.reboot(&vm, RebootKind::Hard, GRACE).await?;
    wait_for_console(&driver, uid, READY_MARKER, 3).await?;
    eprintln!(
        "hard reboot: {READY_MARKER} after {:?}",
        rebooting.elapsed()
    );
    ensure!(driver.pid(uid) == Some(pid), "a reset keeps the process");
    // (The firmware resets once more on a warm boot, so QEMU's RESET events outnumber the
    // guest's boots; the console counts boots.)

    // Suspend to a file (no process left) and resume from it.
    let suspending = Instant::now();
    driver.suspend(uid).await?;
    eprintln!("suspend took {:?}", suspending.elapsed());
    ensure!(driver.state(uid).await.power == Power::Suspended);
    ensure!(driver.pid(uid).is_none() && !process_exists(pid));
    let state_file = driver.vm_dir(uid).join("state");
    ensure!(
        std::fs::metadata(&state_file)?.len() > 1 << 20,
        "the saved state"
    );
    let resuming = Instant::now();
    driver.resume(&vm).await?;
    eprintln!("resume took {:?}", resuming.elapsed());
    ensure!(driver.state(uid).await.power == Power::Running);
    ensure!(!state_file.exists(), "the saved state is used up");

    // A soft reboot of the resumed guest: it answers the power button (so it really runs
    // on from where it was), shuts down and boots again.
    let rebooting = Instant::now();
    driver.reboot(&vm, RebootKind::Soft, GRACE).await?;
    wait_for_console(&driver, uid, READY_MARKER, 4).await?;
    eprintln!(
        "soft reboot: {READY_MARKER} after {:?}",
        rebooting.elapsed()
    );
    let console = driver.console_output(uid, None).await?;
    ensure!(
        console.matches("ronghe-guest: power button").count() == 2,
        "{console}"
    );

    // SIGKILL to QEMU: noticed, and a crash (the guest had booted).
    let pid = driver.pid(uid).context("running")?;
    while notices.try_recv().is_ok() {}
    let target = rustix::process::Pid::from_raw(i32::try_from(pid)?).context("pid")?;
    rustix::process::kill_process(target, rustix::process::Signal::KILL)?;
    let noticed = tokio::time::timeout(BOOT_DEADLINE, notices.recv()).await??;
    ensure!(noticed == uid, "a notice for {noticed}");
    let state = driver.state(uid).await;
    ensure!(state.power == Power::Crashed, "{state:?}");
    let fault = state.fault.context("a crash has a fault")?;
    eprintln!("after SIGKILL: {}", fault.message);
    ensure!(
        fault.message.contains("killed by signal 9"),
        "{}",
        fault.message
    );

    // A garbage kernel: QEMU refuses it; the VM failed, QEMU's words in the fault.
    let bad_kernel = "8e4a7b63-2d3c-4f9e-8b1a-6c7d8e9fa012";
    let error = driver
        .start(&spec(bad_kernel, "bad-kernel", "bad-kernel"))
        .await
        .err()
        .context("a garbage kernel does not start")?;
    eprintln!("a garbage kernel: {error:#}");
    let state = driver.state(bad_kernel).await;
    ensure!(state.power == Power::Failed, "{state:?}");
    let fault = state.fault.context("a fault")?;
    ensure!(
        fault.message.contains("QEMU exited while starting"),
        "{fault:?}"
    );
    ensure!(fault.details.contains("qemu"), "{fault:?}");

    // A garbage initramfs: the kernel boots and panics; the VM failed, with the panic.
    let bad_initramfs = "9f5b8c74-3e4d-4a0f-9c2b-7d8e9fab0123";
    let failing = Instant::now();
    driver
        .start(&spec(bad_initramfs, "bad-initramfs", "bad-initramfs"))
        .await?;
    let state = wait_for_power(&driver, &mut notices, bad_initramfs, Power::Failed).await?;
    eprintln!("a garbage initramfs failed after {:?}", failing.elapsed());
    let fault = state.fault.context("a fault")?;
    eprintln!(
        "its fault: {}; details end:\n{}",
        fault.message,
        fault
            .details
            .lines()
            .rev()
            .take(4)
            .collect::<Vec<_>>()
            .join("\n")
    );
    ensure!(fault.message.contains("panicked"), "{fault:?}");
    ensure!(fault.details.contains("Kernel panic"), "{fault:?}");
    ensure!(
        driver.pid(bad_initramfs).is_none(),
        "a panicked guest is stopped"
    );

    // Destroying leaves nothing: no process, no files.
    let mut listed = driver.list().await?;
    listed.sort();
    let mut expected = vec![uid, bad_kernel, bad_initramfs];
    expected.sort();
    ensure!(listed == expected, "{listed:?}");
    for destroyed in [uid, bad_kernel, bad_initramfs] {
        driver.destroy(destroyed).await?;
        ensure!(!driver.vm_dir(destroyed).exists());
        ensure!(driver.state(destroyed).await.power == Power::Absent);
    }
    driver
        .destroy(uid)
        .await
        .context("destroying twice is fine")?;
    ensure!(driver.list().await?.is_empty());
    let left = processes_mentioning(&root.to_string_lossy());
    ensure!(left.is_empty(), "processes left: {left:?}");
    Ok(())
}
