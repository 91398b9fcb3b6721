//! A VM's QEMU command line, with no I/O: the machine (q35, see below), accelerator, size,
//! what it boots (kernel and initramfs, or a disk), its serial console log, its QMP socket,
//! its network interfaces and, to resume, the saved state it starts from.
//!
//! Why q35 and not `-machine microvm`: microvm has ACPI only with its hardware-reduced
//! tables, where Debian's kernel under TCG finds no timer to calibrate the TSC against and
//! hangs at boot (it boots with `acpi=off`, and then the power button that soft stop and
//! soft reboot need is gone). q35 boots the same guest in about the same time here, has
//! the ACPI power button, and boots disk images through its firmware.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::accel::Accel;

/// The serial console: the guest kernel is told to write here.
pub const CONSOLE_ARGUMENT: &str = "console=ttyS0";

/// A network interface: a TAP device on the host (made by the host network, which plugs
/// it into its bridge) and the guest's MAC address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nic {
    pub tap: String,
    pub mac: String,
}

/// Everything a VM's QEMU is started with; kept beside the VM so that a resume starts
/// exactly the machine that was suspended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchConfig {
    pub uid: String,
    /// Shown in QEMU's own messages (`namespace/name`).
    pub name: String,
    pub accel: Accel,
    pub vcpus: u32,
    pub memory_mb: u64,
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    /// The kernel command line, with a kernel.
    pub append: Option<String>,
    /// The VM's own qcow2 overlay.
    pub disk: Option<PathBuf>,
    pub nics: Vec<Nic>,
    pub console_log: PathBuf,
    pub qmp_socket: PathBuf,
    pub pidfile: PathBuf,
}

/// QEMU option values separate their parts with commas; a comma in a value is doubled.
fn escape(value: &str) -> String {
    value.replace(',', ",,")
}

fn path(value: &Path) -> String {
    escape(&value.to_string_lossy())
}

/// Single quotes for `/bin/sh` (what QEMU's `exec:` migration runs).
fn shell_quote(value: &Path) -> String {
    format!("'{}'", value.to_string_lossy().replace('\'', r"'\''"))
}

/// Whether `uid` is a UUID (8-4-4-4-12 hex), which QEMU takes as the SMBIOS system UUID.
fn is_uuid(uid: &str) -> bool {
    let groups: Vec<&str> = uid.split('-').collect();
    groups.len() == 5
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(group, length)| {
            group.len() == length && group.chars().all(|c| c.is_ascii_hexdigit())
        })
}

/// The kernel command line: the serial console, the image's own arguments, and the
/// VM's name for the guest (`ronghe.hostname`, made safe for a hostname).
pub fn kernel_command_line(image_arguments: Option<&str>, hostname: &str) -> String {
    let hostname: String = hostname
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    let mut line = CONSOLE_ARGUMENT.to_owned();
    if let Some(arguments) = image_arguments.map(str::trim).filter(|a| !a.is_empty()) {
        line.push(' ');
        line.push_str(arguments);
    }
    if !hostname.is_empty() {
        line.push_str(&format!(
            " {}={hostname}",
            ronghe_images::build::guest::HOSTNAME_ARGUMENT
        ));
    }
    line
}

/// How QEMU reads a saved state back (`-incoming`).
pub fn incoming_uri(state: &Path) -> String {
    format!("exec:cat {}", shell_quote(state))
}

/// How QEMU writes a state to save (`migrate`).
pub fn outgoing_uri(state: &Path) -> String {
    format!("exec:cat > {}", shell_quote(state))
}

impl LaunchConfig {
    /// QEMU's arguments; with `incoming`, it starts from that saved state.
    pub fn args(&self, incoming: Option<&Path>) -> Vec<String> {
        let mut args: Vec<String> = Vec::new();
        let mut push = |parts: &[&str]| args.extend(parts.iter().map(|part| (*part).to_owned()));
        let accel = match self.accel {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        };
        push(&[
            "-name",
            &format!("guest={},debug-threads=on", escape(&self.name)),
        ]);
        if is_uuid(&self.uid) {
            push(&["-uuid", &self.uid]);
        }
        push(&["-machine", "q35", "-accel", accel]);
        if self.accel == Accel::Kvm {
            push(&["-cpu", "host"]);
        }
        push(&[
            "-smp",
            &self.vcpus.max(1).to_string(),
            "-m",
            &format!("{}M", self.memory_mb.max(16)),
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-msg",
            "timestamp=on",
        ]);
        if let Some(kernel) = &self.kernel {
            push(&["-kernel", &path(kernel)]);
            if let Some(initrd) = &self.initrd {
                push(&["-initrd", &path(initrd)]);
            }
            if let Some(append) = &self.append {
                push(&["-append", append]);
            }
        }
        if let Some(disk) = &self.disk {
            push(&[
                "-drive",
                &format!(
                    "file={},format=qcow2,if=none,id=root,cache=writeback,discard=unmap",
                    path(disk)
                ),
                "-device",
                "virtio-blk-pci,drive=root,bootindex=1",
            ]);
        }
        for (index, nic) in self.nics.iter().enumerate() {
            push(&[
                "-netdev",
                &format!(
                    "tap,id=net{index},ifname={},script=no,downscript=no",
                    escape(&nic.tap)
                ),
                "-device",
                &format!("virtio-net-pci,netdev=net{index},mac={}", escape(&nic.mac)),
            ]);
        }
        push(&[
            "-chardev",
            &format!("file,id=console,path={},append=on", path(&self.console_log)),
            "-serial",
            "chardev:console",
            "-chardev",
            &format!(
                "socket,id=qmp,path={},server=on,wait=off",
                path(&self.qmp_socket)
            ),
            "-mon",
            "chardev=qmp,mode=control",
            "-pidfile",
            &self.pidfile.to_string_lossy(),
        ]);
        if let Some(state) = incoming {
            push(&["-incoming", &incoming_uri(state)]);
        }
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> LaunchConfig {
        LaunchConfig {
            uid: "0b6f1d2e-3c4d-4e5f-8a9b-0c1d2e3f4a5b".into(),
            name: "default/one".into(),
            accel: Accel::Tcg,
            vcpus: 2,
            memory_mb: 256,
            kernel: Some("/images/vmlinuz".into()),
            initrd: Some("/images/initramfs.cpio.gz".into()),
            append: Some(kernel_command_line(None, "one")),
            disk: None,
            nics: Vec::new(),
            console_log: "/vms/a,b/console.log".into(),
            qmp_socket: "/vms/x/qmp.sock".into(),
            pidfile: "/vms/x/qemu.pid".into(),
        }
    }

    /// The value after `flag` (the first one).
    fn after<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
        let at = args.iter().position(|arg| arg == flag)?;
        args.get(at + 1).map(String::as_str)
    }

    #[test]
    fn a_kernel_vm_boots_its_kernel_with_a_console_and_qmp() {
        let args = config().args(None);
        assert_eq!(after(&args, "-machine"), Some("q35"));
        assert_eq!(after(&args, "-accel"), Some("tcg"));
        assert_eq!(after(&args, "-cpu"), None, "TCG keeps QEMU's default CPU");
        assert_eq!(after(&args, "-smp"), Some("2"));
        assert_eq!(after(&args, "-m"), Some("256M"));
        assert_eq!(after(&args, "-kernel"), Some("/images/vmlinuz"));
        assert_eq!(after(&args, "-initrd"), Some("/images/initramfs.cpio.gz"));
        assert_eq!(
            after(&args, "-append"),
            Some("console=ttyS0 ronghe.hostname=one")
        );
        assert_eq!(
            after(&args, "-uuid"),
            Some("0b6f1d2e-3c4d-4e5f-8a9b-0c1d2e3f4a5b")
        );
        assert!(args.contains(&"-nodefaults".to_owned()));
        assert!(
            args.contains(&"file,id=console,path=/vms/a,,b/console.log,append=on".to_owned()),
            "commas in paths are doubled: {args:?}"
        );
        assert!(args.contains(&"socket,id=qmp,path=/vms/x/qmp.sock,server=on,wait=off".to_owned()));
        assert_eq!(after(&args, "-pidfile"), Some("/vms/x/qemu.pid"));
        assert_eq!(after(&args, "-drive"), None);
        assert_eq!(after(&args, "-incoming"), None);
    }

    #[test]
    fn a_disk_vm_with_kvm_nics_and_a_saved_state() {
        let config = LaunchConfig {
            accel: Accel::Kvm,
            kernel: None,
            initrd: None,
            append: None,
            disk: Some("/vms/x/disk.qcow2".into()),
            nics: vec![Nic {
                tap: "tap0a1b".into(),
                mac: "fa:16:3e:00:00:01".into(),
            }],
            uid: "not-a-uuid".into(),
            ..config()
        };
        let args = config.args(Some(Path::new("/vms/x/it's.state")));
        assert_eq!(after(&args, "-cpu"), Some("host"));
        assert_eq!(after(&args, "-kernel"), None);
        assert_eq!(after(&args, "-uuid"), None, "only a real UUID is given");
        assert_eq!(
            after(&args, "-drive"),
            Some(
                "file=/vms/x/disk.qcow2,format=qcow2,if=none,id=root,cache=writeback,discard=unmap"
            )
        );
        assert_eq!(
            after(&args, "-netdev"),
            Some("tap,id=net0,ifname=tap0a1b,script=no,downscript=no")
        );
        assert!(args.contains(&"virtio-net-pci,netdev=net0,mac=fa:16:3e:00:00:01".to_owned()));
        assert_eq!(
            after(&args, "-incoming"),
            Some(r"exec:cat '/vms/x/it'\''s.state'")
        );
    }

    #[test]
    fn the_kernel_command_line_keeps_the_images_arguments_and_a_safe_hostname() {
        assert_eq!(
            kernel_command_line(Some(" root=/dev/vda ro "), "web 1_x"),
            "console=ttyS0 root=/dev/vda ro ronghe.hostname=web-1-x"
        );
        assert_eq!(kernel_command_line(None, ""), "console=ttyS0");
    }
}
