//! The `test-guest` VM image: Debian's kernel (`linux-image-amd64`) and a busybox
//! initramfs that loads the virtio and ACPI button modules, names itself from the kernel
//! command line (`ronghe.hostname=NAME`), configures eth0 by DHCP when there is one
//! (with classless static routes, so the metadata service is reachable), serves its
//! hostname over HTTP on port 80, prints `ronghe-guest-ready` on the console, runs a
//! user-data script from the metadata service (as cloud-init does) and powers off on the
//! ACPI power button.
//!
//! The initramfs is a `newc` cpio archive written here (`guest/cpio.rs`), gzipped, with
//! every time set to 0, so one machine builds the same bytes every time.

pub mod cpio;

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;

use super::busybox::{self, BusyboxError};

/// What the guest prints on its console once it is up (network configured if any, HTTP
/// served).
pub const READY_MARKER: &str = "ronghe-guest-ready";
/// The kernel command-line argument that names the guest (`ronghe.hostname=NAME`).
pub const HOSTNAME_ARGUMENT: &str = "ronghe.hostname";
/// The guest's name when the command line gives none.
pub const DEFAULT_HOSTNAME: &str = "test-guest";
/// The kernel modules the guest loads (with their dependencies, from `modules.dep`):
/// virtio over MMIO (`-machine microvm`) and PCI (`q35`, `pc`), its network and block
/// devices, and the ACPI power button with the event device acpid reads.
pub const GUEST_MODULES: &[&str] = &[
    "virtio_mmio",
    "virtio_pci",
    "virtio_net",
    "virtio_blk",
    "button",
    "evdev",
];

/// File names in the output directory.
pub const KERNEL_FILE: &str = "vmlinuz";
pub const INITRAMFS_FILE: &str = "initramfs.cpio.gz";

/// Where Debian installs kernels and their modules.
const BOOT_DIR: &str = "/boot";
const MODULES_DIR: &str = "/lib/modules";
/// The Debian package with the kernel.
const KERNEL_PACKAGE: &str = "linux-image-amd64";

/// The built image: a kernel and its initramfs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestImage {
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    #[error(
        "no kernel with modules is installed (install {KERNEL_PACKAGE}; looked for {BOOT_DIR}/vmlinuz-* with {MODULES_DIR}/*/modules.dep)"
    )]
    NoKernel,
    #[error(transparent)]
    Busybox(#[from] BusyboxError),
    #[error("module {module} is not in {}", modules_dep.display())]
    MissingModule {
        module: String,
        modules_dep: PathBuf,
    },
    #[error("module {} is compressed; the guest's busybox insmod loads only plain .ko files", path.display())]
    CompressedModule { path: PathBuf },
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Where the image's parts come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestSources {
    pub kernel: PathBuf,
    /// `/lib/modules/RELEASE`, holding `modules.dep`.
    pub modules: PathBuf,
    /// A statically linked busybox.
    pub busybox: PathBuf,
}

impl GuestSources {
    /// This machine's newest kernel that has its modules installed, and its static
    /// busybox.
    pub fn detect() -> Result<GuestSources, GuestError> {
        let mut releases: Vec<String> = fs::read_dir(BOOT_DIR)
            .map_err(|source| GuestError::Read {
                path: BOOT_DIR.into(),
                source,
            })?
            .filter_map(|entry| entry.ok())
            .filter_map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                name.strip_prefix("vmlinuz-").map(str::to_owned)
            })
            .filter(|release| {
                Path::new(MODULES_DIR)
                    .join(release)
                    .join("modules.dep")
                    .is_file()
            })
            .collect();
        releases.sort_by(|a, b| compare_releases(a, b));
        let release = releases.pop().ok_or(GuestError::NoKernel)?;
        Ok(GuestSources {
            kernel: Path::new(BOOT_DIR).join(format!("vmlinuz-{release}")),
            modules: Path::new(MODULES_DIR).join(&release),
            busybox: busybox::find_static_busybox()?,
        })
    }
}

/// Orders kernel releases by their numbers (`6.1.0-9` before `6.1.0-56`).
fn compare_releases(a: &str, b: &str) -> std::cmp::Ordering {
    let numbers = |release: &str| -> Vec<u64> {
        release
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|part| part.parse().ok())
            .collect()
    };
    numbers(a).cmp(&numbers(b)).then_with(|| a.cmp(b))
}

/// Builds the test guest from this machine's kernel and busybox into `out_dir`
/// (`vmlinuz` and `initramfs.cpio.gz`).
pub fn build(out_dir: &Path) -> Result<GuestImage, GuestError> {
    build_from(&GuestSources::detect()?, out_dir)
}

/// Builds the test guest from `sources` into `out_dir`.
pub fn build_from(sources: &GuestSources, out_dir: &Path) -> Result<GuestImage, GuestError> {
    let tree = initramfs_tree(sources)?;
    let mut archive = Vec::new();
    tree.write_newc(&mut archive)
        .map_err(|source| write_error(out_dir, source))?;
    // The gzip header's time is 0 (flate2's default), so the bytes stay the same.
    let mut gzip = GzEncoder::new(Vec::new(), Compression::default());
    gzip.write_all(&archive)
        .map_err(|source| write_error(out_dir, source))?;
    let initramfs_bytes = gzip
        .finish()
        .map_err(|source| write_error(out_dir, source))?;
    let kernel_bytes = read(&sources.kernel)?;
    fs::create_dir_all(out_dir).map_err(|source| write_error(out_dir, source))?;
    let image = GuestImage {
        kernel: out_dir.join(KERNEL_FILE),
        initramfs: out_dir.join(INITRAMFS_FILE),
    };
    write_atomically(&image.kernel, &kernel_bytes)?;
    write_atomically(&image.initramfs, &initramfs_bytes)?;
    tracing::info!(
        kernel = %sources.kernel.display(),
        initramfs_bytes = initramfs_bytes.len(),
        out = %out_dir.display(),
        "built the test guest"
    );
    Ok(image)
}

/// Everything in the initramfs.
pub fn initramfs_tree(sources: &GuestSources) -> Result<cpio::Tree, GuestError> {
    let mut tree = cpio::Tree::new();
    for (path, mode) in [
        ("bin", 0o755),
        ("sbin", 0o755),
        ("usr/bin", 0o755),
        ("usr/sbin", 0o755),
        ("etc", 0o755),
        ("proc", 0o555),
        ("sys", 0o555),
        ("dev", 0o755),
        ("run", 0o755),
        ("tmp", 0o1777),
        ("root", 0o700),
        ("var/run", 0o755),
        ("www", 0o755),
    ] {
        tree.directory(path, mode);
    }
    // The kernel opens /dev/console for init before anything mounts devtmpfs.
    tree.char_device("dev/console", 0o600, 5, 1);
    tree.char_device("dev/null", 0o666, 1, 3);
    tree.file("bin/busybox", 0o755, read(&sources.busybox)?);
    for applet in busybox::applets(&sources.busybox)? {
        tree.symlink(&applet, "/bin/busybox");
    }
    // The kernel runs /init; busybox run as `init` is the init applet.
    tree.symlink("init", "/bin/busybox");
    let release = sources
        .modules
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let modules_dep = sources.modules.join("modules.dep");
    let dependencies = parse_modules_dep(&String::from_utf8_lossy(&read(&modules_dep)?));
    let order =
        load_order(&dependencies, GUEST_MODULES).map_err(|module| GuestError::MissingModule {
            module,
            modules_dep: modules_dep.clone(),
        })?;
    for module in &order {
        if !module.ends_with(".ko") {
            return Err(GuestError::CompressedModule {
                path: sources.modules.join(module),
            });
        }
        let content = read(&sources.modules.join(module))?;
        tree.file(&format!("lib/modules/{release}/{module}"), 0o644, content);
    }
    let mut load_list = String::new();
    for module in &order {
        load_list.push_str(&format!("/lib/modules/{release}/{module}\n"));
    }
    tree.file("etc/modules-load", 0o644, load_list.into_bytes());
    tree.file("etc/inittab", 0o644, INITTAB.into());
    tree.file("etc/init.d/rcS", 0o755, RC_S.into());
    tree.file("etc/acpi/PWRF/00000080", 0o755, POWER_BUTTON.into());
    tree.file("usr/share/udhcpc/default.script", 0o755, DHCP_SCRIPT.into());
    tree.file("usr/libexec/ronghe-user-data", 0o755, USER_DATA.into());
    tree.file(
        "etc/hostname",
        0o644,
        format!("{DEFAULT_HOSTNAME}\n").into_bytes(),
    );
    tree.file(
        "etc/passwd",
        0o644,
        "root:x:0:0:root:/root:/bin/sh\n".into(),
    );
    tree.file("etc/group", 0o644, "root:x:0:\n".into());
    tree.file(
        "www/index.html",
        0o644,
        format!("{DEFAULT_HOSTNAME}\n").into_bytes(),
    );
    Ok(tree)
}

/// busybox init: run the boot script once; power off and reboot cleanly.
const INITTAB: &str = "\
::sysinit:/etc/init.d/rcS
::ctrlaltdel:/sbin/reboot
::shutdown:/bin/echo ronghe-guest-shutdown
::shutdown:/bin/sync
";

/// The boot script: everything up to the ready marker. Bounded: DHCP gives up (and goes on
/// trying in the background) after a few seconds without an answer.
const RC_S: &str = r#"#!/bin/sh
# The test guest's boot: modules, hostname, network, HTTP, power button, then the marker.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /run
while read -r module; do
    insmod "$module" || echo "ronghe-guest: insmod $module failed"
done < /etc/modules-load
name=test-guest
for argument in $(cat /proc/cmdline); do
    case "$argument" in
        ronghe.hostname=?*) name="${argument#ronghe.hostname=}" ;;
    esac
done
hostname "$name"
echo "$name" > /etc/hostname
echo "$name" > /www/index.html
ip link set lo up
if [ -e /sys/class/net/eth0 ]; then
    ip link set eth0 up
    # Classless routes (121: the metadata service's), the MTU (26: VXLAN's overhead) and
    # the domain search list (119: the network's domain, then the Services') come only
    # when asked for.
    udhcpc -i eth0 -s /usr/share/udhcpc/default.script -b -t 5 -T 1 -x "hostname:$name" \
        -O staticroutes -O mtu -O search
fi
httpd -p 80 -h /www
# From here on only the kernel's emergencies (power down, panics) reach the console: its
# later messages (a link becoming ready) would cut into the lines the user data prints.
dmesg -n 1
if [ -e /sys/class/net/eth0 ]; then
    /usr/libexec/ronghe-user-data > /dev/console 2>&1 &
fi
# acpid logs each event it acts on; without -l it wants /var/log, which is not here.
acpid -c /etc/acpi -l /dev/console
# acpid opens the button's event device only once in the background: until then a press is
# lost. Wait (up to 10 s) for it to hold the device, so the ready guest hears the button.
waited=0
until ls -l "/proc/$(pidof acpid)/fd" 2>/dev/null | grep -q ' -> /dev/input/event'; do
    waited=$((waited + 1))
    if [ "$waited" -gt 100 ]; then
        echo "ronghe-guest: acpid holds no event device"
        break
    fi
    sleep 0.1
done
echo "ronghe-guest: hostname $name"
echo ronghe-guest-ready
"#;

/// The power button (acpid's `PWRF/00000080` event): a clean power-off through init.
const POWER_BUTTON: &str =
    "#!/bin/sh\necho ronghe-guest: power button > /dev/console\nexec /sbin/poweroff\n";

/// udhcpc's event script: configures the interface from the lease.
const DHCP_SCRIPT: &str = r#"#!/bin/sh
# udhcpc calls this with deconfig, bound, renew or nak; the lease is in the environment.
case "$1" in
    deconfig)
        ip -4 addr flush dev "$interface"
        ip link set "$interface" up
        ;;
    bound|renew)
        ip -4 addr flush dev "$interface"
        [ -n "$mtu" ] && ip link set dev "$interface" mtu "$mtu"
        ip -4 addr add "$ip/${mask:-24}" dev "$interface"
        while ip -4 route del default dev "$interface" 2>/dev/null; do :; done
        if [ -n "$staticroutes" ]; then
            # RFC 3442: with classless routes (121) the router option (3) is ignored;
            # the default route, if any, is among them.
            set -- $staticroutes
            while [ $# -ge 2 ]; do
                ip -4 route replace "$1" via "$2" dev "$interface"
                shift 2
            done
        elif [ -n "$router" ]; then
            for gateway in $router; do
                ip -4 route add default via "$gateway" dev "$interface"
                break
            done
        fi
        : > /etc/resolv.conf
        # The search list (119) when there is one, else the domain (15).
        [ -n "$search$domain" ] && echo "search ${search:-$domain}" >> /etc/resolv.conf
        for server in $dns; do echo "nameserver $server" >> /etc/resolv.conf; done
        echo "ronghe-guest: $interface $ip/${mask:-24} mtu ${mtu:-1500}"
        ;;
esac
exit 0
"#;

/// User data as cloud-init treats a script: fetched from the metadata service once the
/// guest is up and run if it starts with `#!`, its output on the console. No answer is
/// retried for a minute (DHCP may still be on its way); 404 means there is none.
const USER_DATA: &str = r##"#!/bin/sh
url=http://169.254.169.254/openstack/latest/user_data
tries=0
while [ $tries -lt 60 ]; do
    tries=$((tries + 1))
    if answer=$(timeout 5 wget -q -O /run/user-data "$url" 2>&1); then
        if [ "$(head -c 2 /run/user-data)" = "#!" ]; then
            chmod 700 /run/user-data
            echo "ronghe-guest: running user data"
            /run/user-data
            echo "ronghe-guest: user data exited $?"
        else
            echo "ronghe-guest: user data is not a script"
        fi
        exit 0
    fi
    case "$answer" in
        *404*) echo "ronghe-guest: no user data"; exit 0 ;;
    esac
    [ $((tries % 20)) -eq 1 ] && echo "ronghe-guest: asking for user data: ${answer:-no answer}"
    sleep 1
done
echo "ronghe-guest: no answer from the metadata service"
"##;

/// `modules.dep`: module path → its dependencies (paths relative to the modules
/// directory), as listed.
pub fn parse_modules_dep(text: &str) -> Vec<(String, Vec<String>)> {
    text.lines()
        .filter_map(|line| {
            let (module, dependencies) = line.split_once(':')?;
            Some((
                module.trim().to_owned(),
                dependencies.split_whitespace().map(str::to_owned).collect(),
            ))
        })
        .collect()
}

/// The module name of a path (`kernel/drivers/net/virtio_net.ko` → `virtio_net`; `-` and
/// `_` are the same in module names).
fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

/// The paths to insmod, dependencies first, for the wanted module names; a name not in
/// `modules.dep` is the error.
pub fn load_order(
    dependencies: &[(String, Vec<String>)],
    wanted: &[&str],
) -> Result<Vec<String>, String> {
    fn visit(
        path: &str,
        dependencies: &[(String, Vec<String>)],
        order: &mut Vec<String>,
        depth: usize,
    ) {
        // modules.dep has no cycles; the bound only keeps a corrupt file from recursing
        // forever.
        if order.iter().any(|done| done == path) || depth > 64 {
            return;
        }
        if let Some((_, needs)) = dependencies.iter().find(|(module, _)| module == path) {
            // modules.dep lists the deepest dependency last: load from the end.
            for need in needs.iter().rev() {
                visit(need, dependencies, order, depth + 1);
            }
        }
        order.push(path.to_owned());
    }
    let mut order = Vec::new();
    for name in wanted {
        let wanted_name = name.replace('-', "_");
        let path = dependencies
            .iter()
            .find(|(module, _)| module_name(module) == wanted_name)
            .map(|(module, _)| module.clone())
            .ok_or_else(|| (*name).to_owned())?;
        visit(&path, dependencies, &mut order, 0);
    }
    Ok(order)
}

fn read(path: &Path) -> Result<Vec<u8>, GuestError> {
    fs::read(path).map_err(|source| GuestError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn write_error(path: &Path, source: io::Error) -> GuestError {
    GuestError::Write {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes beside the target and renames, so a reader never sees half a file.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), GuestError> {
    let partial = path.with_extension("partial");
    fs::write(&partial, bytes).map_err(|source| write_error(&partial, source))?;
    fs::rename(&partial, path).map_err(|source| write_error(path, source))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODULES_DEP: &str = "\
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_mmio.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
kernel/drivers/acpi/button.ko:
";

    #[test]
    fn modules_load_after_their_dependencies() {
        let dependencies = parse_modules_dep(MODULES_DEP);
        let order = load_order(&dependencies, &["virtio_mmio", "virtio-net", "button"]).unwrap();
        assert_eq!(
            order,
            [
                "kernel/drivers/virtio/virtio_ring.ko",
                "kernel/drivers/virtio/virtio.ko",
                "kernel/drivers/virtio/virtio_mmio.ko",
                "kernel/net/core/failover.ko",
                "kernel/drivers/net/net_failover.ko",
                "kernel/drivers/net/virtio_net.ko",
                "kernel/drivers/acpi/button.ko",
            ]
        );
        assert_eq!(
            load_order(&dependencies, &["virtio_nope"]).unwrap_err(),
            "virtio_nope"
        );
    }

    #[test]
    fn newer_kernels_sort_last() {
        let mut releases = vec!["6.1.0-56-amd64", "6.1.0-9-amd64", "5.10.0-30-amd64"];
        releases.sort_by(|a, b| compare_releases(a, b));
        assert_eq!(
            releases,
            ["5.10.0-30-amd64", "6.1.0-9-amd64", "6.1.0-56-amd64"]
        );
    }

    #[test]
    fn the_boot_script_prints_the_marker_last_and_reads_the_hostname_argument() {
        assert!(RC_S.trim_end().ends_with(&format!("echo {READY_MARKER}")));
        assert!(RC_S.contains(&format!("{HOSTNAME_ARGUMENT}=?*")));
        assert!(RC_S.contains(&format!("name={DEFAULT_HOSTNAME}")));
    }

    /// Builds from this machine's packages when they are installed (CI has them).
    #[test]
    fn builds_from_this_machines_kernel_and_busybox() {
        let sources = match GuestSources::detect() {
            Ok(sources) => sources,
            Err(error) => {
                eprintln!("SKIPPED builds_from_this_machines_kernel_and_busybox: {error}");
                return;
            }
        };
        let tree = initramfs_tree(&sources).unwrap();
        for path in [
            "init",
            "bin/sh",
            "sbin/udhcpc",
            "dev/console",
            "etc/init.d/rcS",
        ] {
            assert!(tree.get(path).is_some(), "{path} in the initramfs");
        }
        let modules = match tree.get("etc/modules-load") {
            Some(cpio::Node::File { content, .. }) => String::from_utf8_lossy(content).into_owned(),
            other => panic!("etc/modules-load: {other:?}"),
        };
        let virtio = modules.find("/virtio.ko").unwrap();
        let virtio_net = modules.find("/virtio_net.ko").unwrap();
        assert!(virtio < virtio_net, "{modules}");
        let out = tempfile::tempdir().unwrap();
        let image = build_from(&sources, out.path()).unwrap();
        let first = fs::read(&image.initramfs).unwrap();
        assert_eq!(&first[..2], &[0x1f, 0x8b], "gzip");
        build_from(&sources, out.path()).unwrap();
        assert_eq!(first, fs::read(&image.initramfs).unwrap(), "reproducible");
        assert!(fs::metadata(&image.kernel).unwrap().len() > 1 << 20);
    }
}
