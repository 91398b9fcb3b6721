//! Container images (an OCI image layout tarball, or a plain rootfs tarball; either
//! gzipped or not, told apart by their content) unpacked into layer directories for
//! overlayfs, in a cache: `ROOT/layers/sha256/<layer digest>/`, each layer unpacked once
//! (into `ROOT/tmp`, then renamed into place, so a layer directory is always complete),
//! with OCI whiteouts converted to overlayfs's form as they are unpacked (see `layer`).
//! `ROOT/images/<image digest>.json` remembers what an image unpacked to, so asking again
//! reads nothing.
//!
//! A plain rootfs tarball is one layer, keyed by the image's own digest. An OCI layout's
//! blobs are checked against their digests as they are read.

mod layer;
mod oci;

use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::blob::{Digest, hex};
use crate::{ContainerImage, ImageConfig};

const LAYERS_DIR: &str = "layers/sha256";
const IMAGES_DIR: &str = "images";
const TEMPORARY_DIR: &str = "tmp";
/// The most JSON (index, manifest, config) read from an image.
const MAX_DOCUMENT: u64 = 4 << 20;
/// How deep nested indexes may go.
const MAX_INDEX_DEPTH: usize = 4;

/// What a container without a command of its own searches its programs in (Docker's
/// default).
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("image unpacking I/O on {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the image data is not a readable tar archive (unpacking into {})", path.display())]
    Tar {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Layout(String),
    #[error("{0} is not supported")]
    Unsupported(String),
    #[error("blob {expected} in the image has digest sha256:{actual}")]
    DigestMismatch { expected: String, actual: String },
    #[error("making the overlayfs whiteout {} failed (it needs root)", path.display())]
    Whiteout {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> UnpackError + '_ {
    move |source| UnpackError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What an image unpacked to, remembered beside the layers.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Record {
    /// Layer digests' hex, lowest first.
    layers: Vec<String>,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    env: Vec<String>,
    working_dir: Option<String>,
    user: Option<String>,
}

/// The cache of unpacked layers rooted at a directory.
#[derive(Clone, Debug)]
pub struct LayerCache {
    root: PathBuf,
}

impl LayerCache {
    pub fn open(root: impl Into<PathBuf>) -> Result<LayerCache, UnpackError> {
        let cache = LayerCache { root: root.into() };
        for dir in [LAYERS_DIR, IMAGES_DIR, TEMPORARY_DIR] {
            let dir = cache.root.join(dir);
            fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        }
        Ok(cache)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of a layer (whether or not it is unpacked).
    pub fn layer_path(&self, digest: &Digest) -> PathBuf {
        self.root.join(LAYERS_DIR).join(digest.hex())
    }

    fn record_path(&self, image: &Digest) -> PathBuf {
        self.root
            .join(IMAGES_DIR)
            .join(format!("{}.json", image.hex()))
    }

    /// Unpacks the image whose data is the file `blob` (of digest `image`), or finds it
    /// unpacked already. Safe to call concurrently: racing unpackers of one layer both
    /// finish, and one directory wins.
    pub fn unpack(&self, blob: &Path, image: &Digest) -> Result<ContainerImage, UnpackError> {
        if let Some(unpacked) = self.unpacked(image) {
            return Ok(unpacked);
        }
        let record = if is_oci_layout(blob)? {
            self.unpack_oci_layout(blob)?
        } else {
            self.unpack_rootfs(blob, image)?
        };
        let path = self.record_path(image);
        let json = serde_json::to_vec_pretty(&record).map_err(|error| {
            UnpackError::Layout(format!("recording the unpacked image failed: {error}"))
        })?;
        let temporary = self.scratch_name("record");
        fs::write(&temporary, json).map_err(io_error(&temporary))?;
        fs::rename(&temporary, &path).map_err(io_error(&path))?;
        tracing::info!(image = %image, layers = record.layers.len(), "unpacked container image");
        Ok(self.image_of(image, record))
    }

    /// The image, if it was unpacked before and its layers are all still there.
    pub fn unpacked(&self, image: &Digest) -> Option<ContainerImage> {
        let json = fs::read(self.record_path(image)).ok()?;
        let record: Record = serde_json::from_slice(&json).ok()?;
        let image = self.image_of(image, record);
        image.layers.iter().all(|l| l.is_dir()).then_some(image)
    }

    fn image_of(&self, image: &Digest, record: Record) -> ContainerImage {
        ContainerImage {
            digest: image.to_string(),
            layers: record
                .layers
                .iter()
                .map(|hex| self.root.join(LAYERS_DIR).join(hex))
                .collect(),
            config: ImageConfig {
                entrypoint: record.entrypoint,
                cmd: record.cmd,
                env: record.env,
                working_dir: record.working_dir,
                user: record.user,
            },
        }
    }

    /// A plain rootfs tarball: one layer, with Docker's default `PATH`, and `sh` as the
    /// command when there is one (as Docker's busybox image has).
    fn unpack_rootfs(&self, blob: &Path, image: &Digest) -> Result<Record, UnpackError> {
        let layer = self.ensure_layer(image, || open_layer(blob))?;
        let has_shell = fs::symlink_metadata(layer.join("bin/sh")).is_ok();
        Ok(Record {
            layers: vec![image.hex().to_owned()],
            entrypoint: Vec::new(),
            cmd: if has_shell {
                vec!["sh".into()]
            } else {
                Vec::new()
            },
            env: vec![DEFAULT_PATH.into()],
            working_dir: None,
            user: None,
        })
    }

    /// An OCI image layout tarball: its blobs are staged (and checked), then the chosen
    /// manifest's layers unpacked in order.
    fn unpack_oci_layout(&self, blob: &Path) -> Result<Record, UnpackError> {
        let staging = Scratch::new(self.scratch_name("stage"))?;
        let index = stage_layout(blob, staging.path())?;
        let read_blob = |digest: &str| -> Result<Vec<u8>, UnpackError> {
            let digest = parse_digest(digest)?;
            let path = staging.path().join(digest.hex());
            let file = fs::File::open(&path).map_err(|_| {
                UnpackError::Layout(format!("the image layout has no blob {digest}"))
            })?;
            let mut bytes = Vec::new();
            file.take(MAX_DOCUMENT)
                .read_to_end(&mut bytes)
                .map_err(io_error(&path))?;
            Ok(bytes)
        };
        let mut document = index;
        let mut manifest_digest = None;
        for _ in 0..MAX_INDEX_DEPTH {
            match oci::choose(&document)? {
                oci::Chosen::Index(digest) => document = read_blob(&digest)?,
                oci::Chosen::Manifest(digest) => {
                    manifest_digest = Some(digest);
                    break;
                }
            }
        }
        let manifest_digest = manifest_digest.ok_or_else(|| {
            UnpackError::Layout(format!("image indexes nest deeper than {MAX_INDEX_DEPTH}"))
        })?;
        let manifest = oci::manifest(&read_blob(&manifest_digest)?)?;
        let config = oci::image_config(&read_blob(&manifest.config.digest)?)?;
        let mut layers = Vec::new();
        for descriptor in &manifest.layers {
            let digest = parse_digest(&descriptor.digest)?;
            let staged = staging.path().join(digest.hex());
            if !staged.is_file() {
                return Err(UnpackError::Layout(format!(
                    "the image layout has no layer blob {digest}"
                )));
            }
            self.ensure_layer(&digest, || open_layer(&staged))?;
            layers.push(digest.hex().to_owned());
        }
        Ok(Record {
            layers,
            entrypoint: config.entrypoint,
            cmd: config.cmd,
            env: config.env,
            working_dir: config.working_dir,
            user: config.user,
        })
    }

    /// The layer's directory, unpacked from `open()` first if it is not there yet.
    fn ensure_layer(
        &self,
        digest: &Digest,
        open: impl FnOnce() -> Result<Box<dyn Read>, UnpackError>,
    ) -> Result<PathBuf, UnpackError> {
        let target = self.layer_path(digest);
        if target.is_dir() {
            return Ok(target);
        }
        let scratch = Scratch::new(self.scratch_name("layer"))?;
        layer::unpack_layer(open()?, scratch.path())?;
        match fs::rename(scratch.path(), &target) {
            Ok(()) => {
                scratch.keep();
                tracing::debug!(layer = %digest, "unpacked layer");
            }
            // Another unpacker finished the same layer first; theirs is as good.
            Err(_) if target.is_dir() => {}
            Err(source) => {
                return Err(UnpackError::Io {
                    path: target,
                    source,
                });
            }
        }
        Ok(target)
    }

    /// A fresh name under `ROOT/tmp`.
    fn scratch_name(&self, what: &str) -> PathBuf {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        self.root.join(TEMPORARY_DIR).join(format!(
            "{what}-{}-{nanos:x}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ))
    }
}

/// A directory removed (with everything in it) when dropped, unless kept.
struct Scratch {
    path: Option<PathBuf>,
}

impl Scratch {
    fn new(path: PathBuf) -> Result<Scratch, UnpackError> {
        fs::create_dir(&path).map_err(io_error(&path))?;
        Ok(Scratch { path: Some(path) })
    }

    fn path(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new(""))
    }

    fn keep(mut self) {
        self.path = None;
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(path) = self.path.take()
            && let Err(error) = fs::remove_dir_all(&path)
        {
            tracing::warn!(path = %path.display(), %error, "removing a scratch directory failed");
        }
    }
}

fn parse_digest(text: &str) -> Result<Digest, UnpackError> {
    Digest::parse(text).map_err(|_| {
        UnpackError::Unsupported(format!(
            "the blob digest {text:?} (only sha256 digests are)"
        ))
    })
}

/// Opens a file of tar data, gzipped or not (told by its first bytes).
fn open_layer(path: &Path) -> Result<Box<dyn Read>, UnpackError> {
    let file = fs::File::open(path).map_err(io_error(path))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let magic = reader.fill_buf().map_err(io_error(path))?;
    if magic.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::bufread::MultiGzDecoder::new(reader)))
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Err(UnpackError::Unsupported(
            "zstd-compressed image data".into(),
        ))
    } else {
        Ok(Box::new(reader))
    }
}

/// A tar entry's path without a leading `./` or `/`.
fn entry_name(entry: &tar::Entry<'_, impl Read>) -> String {
    let path = entry.path_bytes();
    let text = String::from_utf8_lossy(&path);
    text.trim_start_matches("./")
        .trim_start_matches('/')
        .to_owned()
}

/// Whether the tarball at `path` is an OCI image layout (it has `oci-layout` or
/// `index.json` at its root) rather than a root filesystem.
fn is_oci_layout(path: &Path) -> Result<bool, UnpackError> {
    let tar_error = |source| UnpackError::Tar {
        path: path.to_path_buf(),
        source,
    };
    let mut archive = tar::Archive::new(open_layer(path)?);
    for entry in archive.entries().map_err(tar_error)? {
        let entry = entry.map_err(tar_error)?;
        let name = entry_name(&entry);
        if name == "oci-layout" || name == "index.json" {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Copies the blobs of an OCI layout tarball into `staging` (by hex digest, each checked
/// against its name as it is copied) and returns `index.json`.
fn stage_layout(path: &Path, staging: &Path) -> Result<Vec<u8>, UnpackError> {
    let tar_error = |source| UnpackError::Tar {
        path: path.to_path_buf(),
        source,
    };
    let mut archive = tar::Archive::new(open_layer(path)?);
    let mut index = None;
    for entry in archive.entries().map_err(tar_error)? {
        let mut entry = entry.map_err(tar_error)?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let name = entry_name(&entry);
        if name == "index.json" {
            let mut bytes = Vec::new();
            (&mut entry)
                .take(MAX_DOCUMENT)
                .read_to_end(&mut bytes)
                .map_err(tar_error)?;
            index = Some(bytes);
        } else if let Some(hex_digest) = name.strip_prefix("blobs/sha256/") {
            let digest = parse_digest(hex_digest)?;
            let target = staging.join(digest.hex());
            let mut file = fs::File::create(&target).map_err(io_error(&target))?;
            let mut hasher = Sha256::new();
            let mut buffer = vec![0u8; 1 << 20];
            loop {
                let read = entry.read(&mut buffer).map_err(tar_error)?;
                if read == 0 {
                    break;
                }
                hasher.update(&buffer[..read]);
                io::Write::write_all(&mut file, &buffer[..read]).map_err(io_error(&target))?;
            }
            let actual = hex(&hasher.finalize());
            if actual != digest.hex() {
                return Err(UnpackError::DigestMismatch {
                    expected: digest.to_string(),
                    actual,
                });
            }
        }
    }
    index.ok_or_else(|| UnpackError::Layout("the image layout has no index.json".into()))
}

#[cfg(test)]
mod tests;
