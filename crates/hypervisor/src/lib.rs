//! The VM driver: VMs run through QEMU (`qemu-system-x86_64`), driven over QMP, with their
//! serial console captured to a log.
//!
//! [`QemuDriver`] implements the agent's `VmDriver`: a VM per directory under the driver's
//! root, a qcow2 overlay on its image (or a kernel and initramfs), KVM when it is usable and
//! fast here, TCG otherwise (`accel.rs`), the machine and its command line (`launch.rs`),
//! one process and its monitor (`instance.rs`), a QMP client (`qmp.rs`), the console log
//! (`console.rs`) and one seam for host commands (`host.rs`). Images come through
//! [`ImageSource`]: the agent's image cache, or [`LocalImages`] in tests.

pub mod accel;
pub mod console;
pub mod disk;
mod driver;
pub mod host;
pub mod images;
pub mod instance;
pub mod launch;
pub mod qmp;

use std::io;
use std::path::PathBuf;

pub use accel::{Accel, AccelChoice};
pub use driver::{QemuConfig, QemuDriver};
pub use images::{ImageSource, ImageSourceError, LocalImages};

#[derive(Debug, thiserror::Error)]
pub enum HypervisorError {
    #[error("cannot run {program}")]
    Spawn {
        program: String,
        #[source]
        source: io::Error,
    },
    #[error("{program} {args} failed ({status}): {stderr}")]
    CommandFailed {
        program: String,
        args: String,
        status: String,
        stderr: String,
    },
    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("choosing an accelerator failed: {message}")]
    Probe { message: String },
    #[error(transparent)]
    Qmp(#[from] qmp::QmpError),
    #[error(transparent)]
    Image(#[from] ImageSourceError),
    #[error("VM {uid} has no image to boot (a kernel or a disk)")]
    NoImage { uid: String },
    #[error(
        "the flavor's disk ({flavor_disk_gb} GiB) is smaller than the image ({image_bytes} bytes)"
    )]
    DiskTooSmall {
        flavor_disk_gb: u64,
        image_bytes: u64,
    },
    #[error("QEMU exited while starting ({status}): {log}")]
    ExitedWhileStarting { status: String, log: String },
    #[error("QEMU started but its machine is {status}, not running")]
    NotRunning { status: String },
    #[error("QEMU (pid {pid}) does not exit")]
    WontExit { pid: u32 },
    #[error("VM {uid} is {power}: cannot {action} it")]
    WrongState {
        uid: String,
        power: String,
        action: &'static str,
    },
    #[error("VM {uid} has no saved command line to resume with")]
    NoLaunch { uid: String },
    #[error("saving the VM's state failed ({status}): {message}")]
    SaveFailed { status: String, message: String },
    #[error("{uid:?} is not a VM uid")]
    BadUid { uid: String },
    #[error("the driver root {} is too long for the VMs' QMP socket paths", root.display())]
    RootTooLong { root: PathBuf },
}
