//! Choosing the accelerator once per host: KVM when `/dev/kvm` opens and a probe boot
//! under it is about as fast as under TCG or faster, TCG otherwise. Nested KVM can be far
//! slower than TCG (on the machines this was written on, the probe takes 7 s under KVM and
//! 0.2 s under TCG), so `/dev/kvm` existing is not enough.
//!
//! The probe is a one-sector disk whose boot code writes to QEMU's `isa-debug-exit` port,
//! so a probe run is QEMU starting, the firmware booting and QEMU exiting. The choice is
//! kept in `DIR/accel.json` and probed again when QEMU's version changes.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::HypervisorError;
use crate::host::HostCommands;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Kvm,
    Tcg,
}

/// The accelerator chosen, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccelChoice {
    pub accel: Accel,
    pub reason: String,
    pub qemu_version: String,
    pub tcg_probe_ms: Option<u64>,
    pub kvm_probe_ms: Option<u64>,
}

const CACHE_FILE: &str = "accel.json";
const PROBE_IMAGE: &str = "accel-probe.img";
/// What the probe writes to the exit port; QEMU exits with `(value << 1) | 1`.
const PROBE_EXIT_VALUE: u8 = 0x31;
const PROBE_EXIT_CODE: i32 = ((PROBE_EXIT_VALUE as i32) << 1) | 1;
/// A TCG probe slower than this means QEMU cannot run VMs usefully at all.
const TCG_PROBE_TIMEOUT: Duration = Duration::from_secs(60);

/// The probe disk: a boot sector doing `mov al, 0x31; out 0xf4, al; hlt; jmp $`, padded to
/// 1 MiB (the firmware will not read a disk of one sector).
fn probe_image() -> Vec<u8> {
    let code = [0xb0, PROBE_EXIT_VALUE, 0xe6, 0xf4, 0xf4, 0xeb, 0xfe];
    let mut image = vec![0u8; 1 << 20];
    image[..code.len()].copy_from_slice(&code);
    image[510] = 0x55;
    image[511] = 0xaa;
    image
}

fn probe_args(accel: Accel, image: &Path) -> Vec<String> {
    let accel = match accel {
        Accel::Kvm => "kvm",
        Accel::Tcg => "tcg",
    };
    [
        "-machine",
        "q35",
        "-accel",
        accel,
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-m",
        "32",
        "-device",
        "isa-debug-exit,iobase=0xf4,iosize=0x04",
        "-drive",
    ]
    .into_iter()
    .map(str::to_owned)
    .chain([format!(
        "file={},format=raw,if=ide",
        image.to_string_lossy().replace(',', ",,")
    )])
    .collect()
}

/// How long KVM may take, given TCG's time: at most twice TCG's, with a little slack for
/// very short probes.
pub fn kvm_budget(tcg: Duration) -> Duration {
    (tcg * 2).max(tcg + Duration::from_millis(300))
}

/// The first line of `qemu-system-x86_64 --version`.
async fn qemu_version(commands: &HostCommands) -> Result<String, HypervisorError> {
    let finished = commands
        .run_qemu(&["--version".to_owned()], Duration::from_secs(30))
        .await?;
    Ok(String::from_utf8_lossy(&finished.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned())
}

fn kvm_opens() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

/// The accelerator for this host: the one kept in `dir` if QEMU has not changed, else
/// probed (and kept).
pub async fn choose(commands: &HostCommands, dir: &Path) -> Result<AccelChoice, HypervisorError> {
    let version = qemu_version(commands).await?;
    let cache = dir.join(CACHE_FILE);
    if let Ok(bytes) = std::fs::read(&cache)
        && let Ok(kept) = serde_json::from_slice::<AccelChoice>(&bytes)
        && kept.qemu_version == version
    {
        tracing::info!(accel = ?kept.accel, reason = %kept.reason, "accelerator (kept)");
        return Ok(kept);
    }
    let choice = probe(commands, dir, version).await?;
    tracing::info!(accel = ?choice.accel, reason = %choice.reason, "accelerator (probed)");
    let bytes = serde_json::to_vec_pretty(&choice).unwrap_or_default();
    std::fs::write(&cache, bytes).map_err(|source| HypervisorError::Io {
        path: cache.clone(),
        source,
    })?;
    Ok(choice)
}

async fn probe(
    commands: &HostCommands,
    dir: &Path,
    qemu_version: String,
) -> Result<AccelChoice, HypervisorError> {
    let image = dir.join(PROBE_IMAGE);
    std::fs::write(&image, probe_image()).map_err(|source| HypervisorError::Io {
        path: image.clone(),
        source,
    })?;
    let tcg = commands
        .run_qemu(&probe_args(Accel::Tcg, &image), TCG_PROBE_TIMEOUT)
        .await;
    let kvm = match &tcg {
        Ok(tcg) if tcg.code == Some(PROBE_EXIT_CODE) && kvm_opens() => Some(
            commands
                .run_qemu(&probe_args(Accel::Kvm, &image), kvm_budget(tcg.elapsed))
                .await,
        ),
        _ => None,
    };
    let _ = std::fs::remove_file(&image);
    let tcg = tcg?;
    if tcg.code != Some(PROBE_EXIT_CODE) {
        return Err(HypervisorError::Probe {
            message: format!(
                "the TCG probe boot did not finish (exit code {:?} after {:?}): {}",
                tcg.code,
                tcg.elapsed,
                String::from_utf8_lossy(&tcg.stderr).trim()
            ),
        });
    }
    let tcg_ms = Some(u64::try_from(tcg.elapsed.as_millis()).unwrap_or(u64::MAX));
    let choice = |accel, reason: String, kvm_probe_ms| AccelChoice {
        accel,
        reason,
        qemu_version: qemu_version.clone(),
        tcg_probe_ms: tcg_ms,
        kvm_probe_ms,
    };
    let Some(kvm) = kvm else {
        return Ok(choice(Accel::Tcg, "/dev/kvm cannot be opened".into(), None));
    };
    let kvm = kvm?;
    let budget = kvm_budget(tcg.elapsed);
    let kvm_ms = Some(u64::try_from(kvm.elapsed.as_millis()).unwrap_or(u64::MAX));
    Ok(if kvm.code == Some(PROBE_EXIT_CODE) {
        choice(
            Accel::Kvm,
            format!(
                "the KVM probe took {:?}, TCG's {:?}",
                kvm.elapsed, tcg.elapsed
            ),
            kvm_ms,
        )
    } else if kvm.timed_out {
        choice(
            Accel::Tcg,
            format!(
                "KVM is slow here: its probe did not finish in {budget:?} (TCG's took {:?})",
                tcg.elapsed
            ),
            None,
        )
    } else {
        choice(
            Accel::Tcg,
            format!(
                "the KVM probe failed (exit code {:?}): {}",
                kvm.code,
                String::from_utf8_lossy(&kvm.stderr).trim()
            ),
            kvm_ms,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_is_a_boot_sector_that_exits_through_the_debug_port() {
        let image = probe_image();
        assert_eq!(image.len(), 1 << 20);
        assert_eq!(&image[510..512], &[0x55, 0xaa]);
        assert_eq!(&image[..4], &[0xb0, 0x31, 0xe6, 0xf4]);
        assert_eq!(PROBE_EXIT_CODE, 99);
    }

    #[test]
    fn kvm_may_take_twice_tcg() {
        assert_eq!(kvm_budget(Duration::from_secs(2)), Duration::from_secs(4));
        assert_eq!(
            kvm_budget(Duration::from_millis(100)),
            Duration::from_millis(400)
        );
    }
}
