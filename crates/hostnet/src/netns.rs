//! Network namespaces: running work on a fresh thread that entered one (sockets made there
//! belong to it), the named namespaces under /run/netns, and per-namespace sysctls.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use crate::error::HostNetError;
use crate::run::run;

/// Where `ip netns` keeps named namespaces; they are global to the machine.
pub const NETNS_DIR: &str = "/run/netns";

/// The path of a named netns.
pub fn named_path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// Runs `work` on a new thread inside the netns at `netns` (the current one when None).
/// The thread ends with the work, so no pooled thread is ever left in another namespace.
pub async fn on_thread_in<T: Send + 'static>(
    netns: Option<PathBuf>,
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("ronghe-netns".into())
        .spawn(move || {
            let result = (|| {
                if let Some(path) = &netns {
                    let file = std::fs::File::open(path)?;
                    rustix::thread::move_into_link_name_space(
                        file.as_fd(),
                        Some(rustix::thread::LinkNameSpaceType::Network),
                    )?;
                }
                work()
            })();
            let _ = sender.send(result);
        })?;
    receiver
        .await
        .map_err(|_| std::io::Error::other("the netns thread ended early"))?
}

/// The named namespaces that exist now.
pub fn list_named() -> Result<Vec<String>, HostNetError> {
    let entries = match std::fs::read_dir(NETNS_DIR) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(HostNetError::Io {
                operation: format!("listing {NETNS_DIR}"),
                source,
            });
        }
    };
    let mut names = Vec::new();
    for entry in entries.flatten() {
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_string());
        }
    }
    names.sort();
    Ok(names)
}

/// Creates the named netns unless it exists, with its loopback up (connections to its own
/// addresses go through it); returns whether it was created.
pub async fn ensure_named(name: &str) -> Result<bool, HostNetError> {
    if named_path(name).exists() {
        return Ok(false);
    }
    run(None, "ip", &["netns", "add", name], None).await?;
    crate::netlink::Netlink::open(Some(&named_path(name)))
        .await?
        .bring_up_loopback()
        .await?;
    Ok(true)
}

/// Deletes the named netns (its devices go with it once no process holds it).
pub async fn delete_named(name: &str) -> Result<(), HostNetError> {
    if !named_path(name).exists() {
        return Ok(());
    }
    run(None, "ip", &["netns", "delete", name], None).await?;
    Ok(())
}

/// Writes a sysctl under /proc/sys as seen from `netns` (`net.*` sysctls are per
/// namespace, resolved for the thread that opens them). Returns whether it changed.
pub async fn set_sysctl(
    netns: Option<PathBuf>,
    key: &str,
    value: &str,
) -> Result<bool, HostNetError> {
    let path = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
    let value = value.to_string();
    let shown = format!("setting {key}={value}");
    on_thread_in(netns, move || {
        let current = std::fs::read_to_string(&path)?;
        if current.trim() == value {
            return Ok(false);
        }
        std::fs::write(&path, &value)?;
        Ok(true)
    })
    .await
    .map_err(HostNetError::io(shown))
}
