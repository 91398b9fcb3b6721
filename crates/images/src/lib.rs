//! Images on disk, with no API: the content-addressed blob store both the server (Glance
//! uploads) and the agents (their image caches) keep, container images unpacked into
//! read-only overlayfs layers, the builders of the two bootstrap images, and the Image
//! kind's model (spec, status, visibility, references) that the API server, the Glance
//! face and the agents share.

pub mod blob;
pub mod build;
pub mod model;
pub mod stream;
pub mod unpack;

use std::path::PathBuf;

/// A container image ready for a runtime: read-only layer directories to stack with
/// overlayfs, and the defaults its config gives a container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerImage {
    /// The image's digest (`sha256:...`), reported as a container's `imageID`.
    pub digest: String,
    /// Layer directories, lowest first.
    pub layers: Vec<PathBuf>,
    pub config: ImageConfig,
}

/// What an image's config says a container runs (OCI image config `config`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `NAME=value`.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
}

/// What a VM boots, on this host's disk: a kernel and ramdisk (Glance's `kernel_id` and
/// `ramdisk_id`), a disk image, or both.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VmImage {
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    /// Extra kernel command line (Glance's `os_command_line` property).
    pub kernel_args: Option<String>,
    /// The image's disk (the VM gets a copy-on-write overlay on it, never the file itself).
    pub disk: Option<Disk>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disk {
    pub path: PathBuf,
    /// `raw` or `qcow2`.
    pub format: String,
}
