//! Unpacking one layer tarball into a directory that overlayfs can stack: entries keep
//! their modes, owners (when root) and times, device nodes and FIFOs are made for real, and
//! OCI whiteouts become overlayfs's (`.wh.NAME` → a 0/0 character device `NAME`;
//! `.wh..wh..opq` → `trusted.overlay.opaque=y` on its directory).
//!
//! Nothing is written outside the directory: entries with `..` are skipped (the `tar`
//! crate's rule), and whiteouts and device nodes are only made under real directories of
//! the layer, never through a symlink the layer itself planted.

use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use super::UnpackError;

const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";
const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Whether this process can set owners (and so should keep the layer's).
fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Unpacks the (uncompressed) tar stream `reader` into `dir`, which exists.
pub(crate) fn unpack_layer(reader: impl Read, dir: &Path) -> Result<(), UnpackError> {
    let root = is_root();
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(root);
    archive.set_preserve_mtime(true);
    archive.set_overwrite(true);
    let tar_error = |source| UnpackError::Tar {
        path: dir.to_path_buf(),
        source,
    };
    for entry in archive.entries().map_err(tar_error)? {
        let mut entry = entry.map_err(tar_error)?;
        let path = entry.path().map_err(tar_error)?.into_owned();
        let Some(relative) = clean_relative(&path) else {
            tracing::debug!(path = %path.display(), "skipping a layer entry outside the root");
            continue;
        };
        let Some(name) = relative
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
        else {
            continue;
        };
        let parent = relative.parent().unwrap_or(Path::new(""));
        if name == OPAQUE_WHITEOUT {
            let directory = real_directory(dir, parent)?;
            rustix::fs::lsetxattr(
                &directory,
                OPAQUE_XATTR,
                b"y",
                rustix::fs::XattrFlags::empty(),
            )
            .map_err(|error| UnpackError::Whiteout {
                path: directory.clone(),
                source: error.into(),
            })?;
            continue;
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            let directory = real_directory(dir, parent)?;
            let target = directory.join(hidden);
            make_node(&target, rustix::fs::FileType::CharacterDevice, 0, (0, 0)).map_err(
                |source| UnpackError::Whiteout {
                    path: target.clone(),
                    source,
                },
            )?;
            continue;
        }
        let header = entry.header();
        let kind = header.entry_type();
        let file_type = match kind {
            tar::EntryType::Char => Some(rustix::fs::FileType::CharacterDevice),
            tar::EntryType::Block => Some(rustix::fs::FileType::BlockDevice),
            tar::EntryType::Fifo => Some(rustix::fs::FileType::Fifo),
            _ => None,
        };
        if let Some(file_type) = file_type {
            let mode = header.mode().map_err(tar_error)? & 0o7777;
            let device = (
                header.device_major().ok().flatten().unwrap_or(0),
                header.device_minor().ok().flatten().unwrap_or(0),
            );
            let (uid, gid) = (header.uid().unwrap_or(0), header.gid().unwrap_or(0));
            let directory = real_directory(dir, parent)?;
            let target = directory.join(&name);
            make_node(&target, file_type, mode, device)
                .and_then(|()| {
                    if root {
                        std::os::unix::fs::lchown(
                            &target,
                            u32::try_from(uid).ok(),
                            u32::try_from(gid).ok(),
                        )
                    } else {
                        Ok(())
                    }
                })
                .map_err(|source| UnpackError::Io {
                    path: target.clone(),
                    source,
                })?;
            continue;
        }
        entry.unpack_in(dir).map_err(tar_error)?;
    }
    Ok(())
}

/// A tar path as a plain relative path; `None` when it climbs out (`..`) or is the root.
fn clean_relative(path: &Path) -> Option<PathBuf> {
    let mut clean = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => clean.push(part),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            Component::ParentDir => return None,
        }
    }
    (!clean.as_os_str().is_empty()).then_some(clean)
}

/// `dir/relative`, making missing directories, refusing any part that exists and is not
/// a real directory (a symlink could point anywhere on the host).
fn real_directory(dir: &Path, relative: &Path) -> Result<PathBuf, UnpackError> {
    let mut current = dir.to_path_buf();
    for component in relative.components() {
        let Component::Normal(part) = component else {
            continue;
        };
        current.push(part);
        match fs::symlink_metadata(&current) {
            Ok(metadata) if metadata.is_dir() => {}
            Ok(_) => {
                return Err(UnpackError::Layout(format!(
                    "{} is not a directory, so nothing can be unpacked under it",
                    current.display()
                )));
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&current).map_err(|source| UnpackError::Io {
                    path: current.clone(),
                    source,
                })?;
            }
            Err(source) => {
                return Err(UnpackError::Io {
                    path: current,
                    source,
                });
            }
        }
    }
    Ok(current)
}

/// Makes a device node or FIFO at `path`, replacing what is there (not a directory).
fn make_node(
    path: &Path,
    file_type: rustix::fs::FileType,
    mode: u32,
    (major, minor): (u32, u32),
) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(metadata) if metadata.is_dir() => fs::remove_dir_all(path)?,
        Ok(_) => fs::remove_file(path)?,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        file_type,
        rustix::fs::Mode::from_raw_mode(mode),
        rustix::fs::makedev(major, minor),
    )
    .map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    #[test]
    fn relative_paths_are_cleaned() {
        assert_eq!(
            clean_relative(Path::new("./a/b")),
            Some(PathBuf::from("a/b"))
        );
        assert_eq!(clean_relative(Path::new("/a")), Some(PathBuf::from("a")));
        assert_eq!(clean_relative(Path::new("a/../../x")), None);
        assert_eq!(clean_relative(Path::new("./")), None);
    }

    #[test]
    fn whiteouts_become_overlayfs_whiteouts() {
        if !is_root() {
            eprintln!("skipped: making whiteout devices and trusted xattrs needs root");
            return;
        }
        let mut builder = tar::Builder::new(Vec::new());
        for (path, kind) in [
            ("etc/", tar::EntryType::Directory),
            ("etc/.wh.hosts", tar::EntryType::Regular),
            ("var/.wh..wh..opq", tar::EntryType::Regular),
            ("dev/null", tar::EntryType::Char),
        ] {
            let mut header = tar::Header::new_ustar();
            header.set_uid(0);
            header.set_gid(0);
            header.set_entry_type(kind);
            header.set_mode(0o666);
            header.set_size(0);
            if kind == tar::EntryType::Char {
                header.set_device_major(1).unwrap();
                header.set_device_minor(3).unwrap();
            }
            builder.append_data(&mut header, path, io::empty()).unwrap();
        }
        let bytes = builder.into_inner().unwrap();
        let dir = tempfile::tempdir().unwrap();
        unpack_layer(&bytes[..], dir.path()).unwrap();
        let hosts = fs::symlink_metadata(dir.path().join("etc/hosts")).unwrap();
        assert!(hosts.file_type().is_char_device());
        assert_eq!(hosts.rdev(), 0);
        let mut value = [0u8; 8];
        let length =
            rustix::fs::lgetxattr(dir.path().join("var"), OPAQUE_XATTR, &mut value).unwrap();
        assert_eq!(&value[..length], b"y");
        let null = fs::symlink_metadata(dir.path().join("dev/null")).unwrap();
        assert!(null.file_type().is_char_device());
        assert_eq!(null.rdev(), rustix::fs::makedev(1, 3));
        assert!(!dir.path().join("etc/.wh.hosts").exists());
    }

    #[test]
    fn whiteouts_do_not_follow_symlinks_out_of_the_layer() {
        let outside = tempfile::tempdir().unwrap();
        let mut builder = tar::Builder::new(Vec::new());
        let mut link = tar::Header::new_ustar();
        link.set_uid(0);
        link.set_gid(0);
        link.set_entry_type(tar::EntryType::Symlink);
        link.set_size(0);
        builder
            .append_link(&mut link, "escape", outside.path())
            .unwrap();
        let mut whiteout = tar::Header::new_ustar();
        whiteout.set_uid(0);
        whiteout.set_gid(0);
        whiteout.set_entry_type(tar::EntryType::Regular);
        whiteout.set_size(0);
        builder
            .append_data(&mut whiteout, "escape/.wh.victim", io::empty())
            .unwrap();
        let bytes = builder.into_inner().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let error = unpack_layer(&bytes[..], dir.path()).unwrap_err();
        assert!(matches!(error, UnpackError::Layout(_)), "{error}");
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
    }
}
