//! Writing the files the server leaves in its data directory: atomically (write a temporary
//! file, sync it, rename it over the old one) so a crash never leaves half a kubeconfig or
//! key, and private files readable by the owner only.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Creates a directory (and its parents) that only its owner may enter (mode 0700), or
/// tightens an existing one: the store inside holds Secrets, and keys live beside it.
pub fn create_private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o700))
}

/// Writes a file only its owner may read (mode 0600).
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    write_atomically(path, contents, 0o600)
}

/// Writes a file anyone on the host may read (mode 0644).
pub fn write_public(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    write_atomically(path, contents, 0o644)
}

/// Creates `path` empty with mode 0600 if it does not exist, or sets an existing file to
/// 0600.
pub fn ensure_private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
}

fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let file_name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("path has no file name"))?;
    let temporary = path.with_file_name(format!(".{}.tmp", file_name.to_string_lossy()));
    // A temporary left by a crash may have other permissions; `create_new` below must make
    // the file afresh with ours.
    match fs::remove_file(&temporary) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temporary)?;
        file.write_all(contents)?;
        file.sync_all()?;
    }
    fs::rename(&temporary, path)?;
    if let Some(parent) = path.parent() {
        fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn data_directories_are_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a/b");
        create_private_dir(&path).expect("create");
        let mode = fs::metadata(&path).expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("loosen");
        create_private_dir(&path).expect("again");
        let mode = fs::metadata(&path).expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "an existing directory is tightened");
    }

    #[test]
    fn private_files_are_0600_and_replace_atomically() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret");
        write_private(&path, b"one").expect("write");
        write_private(&path, b"two").expect("rewrite");
        assert_eq!(fs::read(&path).expect("read"), b"two");
        let mode = fs::metadata(&path).expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            fs::read_dir(dir.path()).expect("list").count(),
            1,
            "no temporary left"
        );
    }
}
