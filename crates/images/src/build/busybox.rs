//! The `busybox` container image: a root filesystem made of this machine's busybox-static
//! binary, a symlink per applet, the few files and directories a container expects, and
//! the same tree as a reproducible tarball for upload.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where Debian's busybox-static installs its binary (`/bin` is `/usr/bin` on merged-usr
/// systems; both are tried).
pub const BUSYBOX_CANDIDATES: &[&str] = &["/bin/busybox", "/usr/bin/busybox"];

/// The Debian package that provides a static busybox.
pub const BUSYBOX_PACKAGE: &str = "busybox-static";

#[derive(Debug, thiserror::Error)]
pub enum BusyboxError {
    #[error("busybox is not installed (install {BUSYBOX_PACKAGE}; looked at {})", BUSYBOX_CANDIDATES.join(", "))]
    NotInstalled,
    #[error("{} is not statically linked (install {BUSYBOX_PACKAGE} instead of busybox)", path.display())]
    NotStatic { path: PathBuf },
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot run {} --list-full", path.display())]
    ListApplets {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} --list-full failed: {stderr}", path.display())]
    ListAppletsFailed { path: PathBuf, stderr: String },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The static busybox binary of this machine.
pub fn find_static_busybox() -> Result<PathBuf, BusyboxError> {
    for candidate in BUSYBOX_CANDIDATES {
        let path = Path::new(candidate);
        let Ok(bytes) = fs::read(path) else { continue };
        if !is_static_elf(&bytes) {
            return Err(BusyboxError::NotStatic {
                path: path.to_path_buf(),
            });
        }
        return Ok(path.to_path_buf());
    }
    Err(BusyboxError::NotInstalled)
}

/// Whether `bytes` are a 64-bit little-endian ELF executable without a program
/// interpreter (`PT_INTERP`), that is, one that runs with no dynamic loader or libraries
/// in the root filesystem.
pub fn is_static_elf(bytes: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 || bytes[5] != 1 {
        return false;
    }
    let read_u16 = |at: usize| {
        bytes
            .get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let read_u32 = |at: usize| {
        bytes
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let read_u64 = |at: usize| {
        bytes.get(at..at + 8).map(|b| {
            let mut word = [0u8; 8];
            word.copy_from_slice(b);
            u64::from_le_bytes(word)
        })
    };
    let (Some(table), Some(entry_size), Some(count)) = (read_u64(32), read_u16(54), read_u16(56))
    else {
        return false;
    };
    let Ok(table) = usize::try_from(table) else {
        return false;
    };
    for index in 0..usize::from(count) {
        match read_u32(table + index * usize::from(entry_size)) {
            Some(PT_INTERP) => return false,
            Some(_) => {}
            None => return false,
        }
    }
    true
}

/// The applets `busybox --list-full` prints, as paths relative to the root
/// (`bin/sh`, `usr/sbin/httpd`, `linuxrc`). The one place this module runs busybox.
pub fn applets(busybox: &Path) -> Result<Vec<String>, BusyboxError> {
    tracing::debug!(busybox = %busybox.display(), "listing busybox applets");
    let output = Command::new(busybox)
        .arg("--list-full")
        .output()
        .map_err(|source| BusyboxError::ListApplets {
            path: busybox.to_path_buf(),
            source,
        })?;
    if !output.status.success() {
        return Err(BusyboxError::ListAppletsFailed {
            path: busybox.to_path_buf(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    let mut applets: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| line.trim().trim_start_matches('/').to_string())
        // A name that could climb out of the root is not an applet.
        .filter(|line| !line.is_empty() && !line.split('/').any(|part| part == ".." || part == "."))
        .filter(|line| line != "bin/busybox")
        .collect();
    applets.sort();
    applets.dedup();
    Ok(applets)
}

/// One entry of the root filesystem, by path relative to its root.
#[derive(Clone, Debug, PartialEq, Eq)]
enum RootfsEntry {
    Directory {
        path: String,
        mode: u32,
    },
    File {
        path: String,
        mode: u32,
        content: Vec<u8>,
    },
    Symlink {
        path: String,
        target: String,
    },
}

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                      nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const GROUP: &str = "root:x:0:\nnobody:x:65534:\nnogroup:x:65534:\n";

/// The whole tree, parents before children, in a fixed order so the tarball is the same
/// bytes on every run with the same busybox.
fn rootfs_entries(busybox: &Path) -> Result<Vec<RootfsEntry>, BusyboxError> {
    let binary = fs::read(busybox).map_err(|source| BusyboxError::Read {
        path: busybox.to_path_buf(),
        source,
    })?;
    let applets = applets(busybox)?;
    let mut directories: Vec<(String, u32)> = [
        ("bin", 0o755),
        ("dev", 0o755),
        ("etc", 0o755),
        ("home", 0o755),
        ("proc", 0o555),
        ("root", 0o700),
        ("sbin", 0o755),
        ("sys", 0o555),
        ("tmp", 0o1777),
        ("usr", 0o755),
        ("usr/bin", 0o755),
        ("usr/sbin", 0o755),
        ("var", 0o755),
    ]
    .into_iter()
    .map(|(path, mode)| (path.to_string(), mode))
    .collect();
    // Any other directory an applet lives in.
    for applet in &applets {
        for ancestor in Path::new(applet).ancestors().skip(1) {
            let directory = ancestor.to_string_lossy().to_string();
            if !directory.is_empty() && !directories.iter().any(|(path, _)| *path == directory) {
                directories.push((directory, 0o755));
            }
        }
    }
    directories.sort();
    let mut entries: Vec<RootfsEntry> = directories
        .into_iter()
        .map(|(path, mode)| RootfsEntry::Directory { path, mode })
        .collect();
    entries.push(RootfsEntry::File {
        path: "bin/busybox".into(),
        mode: 0o755,
        content: binary,
    });
    entries.push(RootfsEntry::File {
        path: "etc/group".into(),
        mode: 0o644,
        content: GROUP.as_bytes().to_vec(),
    });
    entries.push(RootfsEntry::File {
        path: "etc/passwd".into(),
        mode: 0o644,
        content: PASSWD.as_bytes().to_vec(),
    });
    entries.extend(applets.into_iter().map(|path| RootfsEntry::Symlink {
        path,
        target: "/bin/busybox".into(),
    }));
    Ok(entries)
}

/// Writes the busybox root filesystem into `dir` (created if missing; entries already
/// there are replaced): `/bin/busybox`, a symlink to it for every applet, `/etc/passwd`
/// and `/etc/group` with root and nobody, and empty `/tmp`, `/proc`, `/sys`, `/dev`.
pub fn write_rootfs(dir: &Path) -> Result<(), BusyboxError> {
    let busybox = find_static_busybox()?;
    let entries = rootfs_entries(&busybox)?;
    let write_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BusyboxError::Write { path, source }
    };
    fs::create_dir_all(dir).map_err(write_error(dir))?;
    for entry in &entries {
        match entry {
            RootfsEntry::Directory { path, mode } => {
                let path = dir.join(path);
                fs::create_dir_all(&path).map_err(write_error(&path))?;
                fs::set_permissions(&path, fs::Permissions::from_mode(*mode))
                    .map_err(write_error(&path))?;
            }
            RootfsEntry::File {
                path,
                mode,
                content,
            } => {
                let path = dir.join(path);
                remove_if_present(&path).map_err(write_error(&path))?;
                fs::write(&path, content).map_err(write_error(&path))?;
                fs::set_permissions(&path, fs::Permissions::from_mode(*mode))
                    .map_err(write_error(&path))?;
            }
            RootfsEntry::Symlink { path, target } => {
                let path = dir.join(path);
                remove_if_present(&path).map_err(write_error(&path))?;
                symlink(target, &path).map_err(write_error(&path))?;
            }
        }
    }
    tracing::info!(dir = %dir.display(), entries = entries.len(), "wrote busybox rootfs");
    Ok(())
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(metadata) if metadata.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error),
    }
}

/// Writes the busybox root filesystem as an uncompressed tarball at `out` (replaced
/// atomically): every entry owned by 0:0 with mtime 0, so the same busybox gives the same
/// bytes, and so the same image digest, on every run.
pub fn write_tarball(out: &Path) -> Result<(), BusyboxError> {
    let busybox = find_static_busybox()?;
    let entries = rootfs_entries(&busybox)?;
    let temporary = out.with_extension(format!("tmp-{}", std::process::id()));
    let result = write_tarball_entries(&temporary, &entries).and_then(|()| {
        fs::rename(&temporary, out).map_err(|source| BusyboxError::Write {
            path: out.to_path_buf(),
            source,
        })
    });
    if result.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    result
}

fn write_tarball_entries(path: &Path, entries: &[RootfsEntry]) -> Result<(), BusyboxError> {
    let write_error = |source| BusyboxError::Write {
        path: path.to_path_buf(),
        source,
    };
    let file = fs::File::create(path).map_err(write_error)?;
    let mut builder = tar::Builder::new(io::BufWriter::new(file));
    for entry in entries {
        let mut header = tar::Header::new_ustar();
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        match entry {
            RootfsEntry::Directory { path, mode } => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(*mode);
                header.set_size(0);
                builder
                    .append_data(&mut header, format!("{path}/"), io::empty())
                    .map_err(write_error)?;
            }
            RootfsEntry::File {
                path,
                mode,
                content,
            } => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(*mode);
                header.set_size(content.len() as u64);
                builder
                    .append_data(&mut header, path, content.as_slice())
                    .map_err(write_error)?;
            }
            RootfsEntry::Symlink { path, target } => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                header.set_size(0);
                builder
                    .append_link(&mut header, path, target)
                    .map_err(write_error)?;
            }
        }
    }
    let mut writer = builder.into_inner().map_err(write_error)?;
    writer.flush().map_err(write_error)?;
    let file = writer
        .into_inner()
        .map_err(|error| write_error(error.into_error()))?;
    file.sync_all().map_err(write_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn busybox_or_skip() -> Option<PathBuf> {
        match find_static_busybox() {
            Ok(path) => Some(path),
            Err(error) => {
                eprintln!("skipped: {error}");
                None
            }
        }
    }

    #[test]
    fn this_machines_busybox_is_static_and_a_shell_script_is_not_elf() {
        assert!(!is_static_elf(b"#!/bin/sh\necho hi\n"));
        if let Some(busybox) = busybox_or_skip() {
            assert!(is_static_elf(&fs::read(busybox).unwrap()));
        }
        // A dynamically linked program has an interpreter.
        if let Ok(bytes) = fs::read("/bin/ls") {
            assert!(!is_static_elf(&bytes));
        }
    }

    #[test]
    fn rootfs_has_busybox_applets_and_accounts() {
        let Some(_) = busybox_or_skip() else { return };
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        write_rootfs(&root).unwrap();
        // Twice: writing over an existing tree is fine.
        write_rootfs(&root).unwrap();
        assert!(root.join("bin/busybox").is_file());
        assert_eq!(
            fs::read_link(root.join("bin/sh")).unwrap(),
            Path::new("/bin/busybox")
        );
        assert!(fs::symlink_metadata(root.join("usr/sbin/httpd")).is_ok());
        for directory in ["tmp", "proc", "sys", "dev", "etc"] {
            assert!(root.join(directory).is_dir(), "{directory}");
        }
        let passwd = fs::read_to_string(root.join("etc/passwd")).unwrap();
        assert!(passwd.contains("root:x:0:0") && passwd.contains("nobody:x:65534"));
        let mode = fs::metadata(root.join("tmp")).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o1777);
        // The rootfs runs: busybox from it answers.
        let output = Command::new(root.join("bin/busybox"))
            .args(["echo", "hello"])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&output.stdout), "hello\n");
    }

    #[test]
    fn tarball_is_reproducible_and_holds_every_applet() {
        let Some(busybox) = busybox_or_skip() else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join("first.tar");
        let second = dir.path().join("second.tar");
        write_tarball(&first).unwrap();
        write_tarball(&second).unwrap();
        assert_eq!(fs::read(&first).unwrap(), fs::read(&second).unwrap());
        let mut archive = tar::Archive::new(fs::File::open(&first).unwrap());
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|entry| {
                let entry = entry.unwrap();
                assert_eq!(entry.header().uid().unwrap(), 0);
                entry.path().unwrap().to_string_lossy().to_string()
            })
            .collect();
        for applet in applets(&busybox).unwrap() {
            assert!(names.contains(&applet), "{applet} missing");
        }
        assert!(names.contains(&"bin/busybox".to_string()));
        assert!(names.contains(&"etc/passwd".to_string()));
        assert!(!dir.path().read_dir().unwrap().any(|entry| {
            entry
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains("tmp-")
        }));
    }
}
