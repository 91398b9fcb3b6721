//! The agent's image cache: resolves an image reference for a namespace (a pod's
//! `image: busybox`, `busybox:latest`, `docker.io/library/busybox`, or a Glance image id)
//! to the Image that namespace's project may use, downloads its data once through the
//! Glance face into the agent's own blob store (checked against the image's digest), and
//! hands the drivers a [`ContainerImage`] (layers unpacked for overlayfs) or a [`VmImage`]
//! (kernel, ramdisk and disk files on this host).
//!
//! The agent acts as a cloud admin, so it applies Glance's visibility rules itself
//! (`ronghe_images::model::can_see`). Concurrent requests for one image wait for one
//! download and one unpack.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use http_body_util::BodyExt;
use kube::api::{Api, DynamicObject, ListParams};
use kube::discovery::ApiResource;
use ronghe_images::blob::{BlobError, BlobStore, Digest, Expected};
use ronghe_images::model::{
    self, ImageSpec, ImageStatus, KERNEL_ID, OS_COMMAND_LINE, RAMDISK_ID, STATUS_ACTIVE, Visibility,
};
use ronghe_images::stream::chunk_channel;
use ronghe_images::unpack::{LayerCache, UnpackError};
use ronghe_images::{ContainerImage, Disk, VmImage};

/// Where under the cache's directory blobs and unpacked layers live.
const BLOBS_DIR: &str = "blobs";
const LAYERS_DIR: &str = "layers";

/// How many chunks of a download may wait for the writer.
const DOWNLOAD_QUEUE: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum ImageCacheError {
    #[error("image {reference:?} not found")]
    NotFound { reference: String },
    #[error("image {reference:?} is {status}, not active")]
    NotActive { reference: String, status: String },
    #[error("image {reference:?} has no data")]
    NoData { reference: String },
    #[error("image {reference:?} ({format}) cannot be {use_as}")]
    WrongFormat {
        reference: String,
        format: String,
        use_as: &'static str,
    },
    #[error("listing images failed")]
    List(#[source] kube::Error),
    #[error("downloading image {id} failed: {message}")]
    Download { id: String, message: String },
    #[error("storing image {id} failed")]
    Store {
        id: String,
        #[source]
        source: BlobError,
    },
    #[error("unpacking image {id} failed")]
    Unpack {
        id: String,
        #[source]
        source: UnpackError,
    },
    #[error("opening the image cache at {}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// An Image object as the cache reads it.
#[derive(Clone, Debug)]
pub struct ImageRecord {
    /// The Glance id (the object's name).
    pub id: String,
    /// The owner project's namespace.
    pub namespace: String,
    pub spec: ImageSpec,
    pub status: ImageStatus,
    pub created_at: String,
}

impl ImageRecord {
    pub fn from_object(object: &DynamicObject) -> ImageRecord {
        let data = &object.data;
        ImageRecord {
            id: object.metadata.name.clone().unwrap_or_default(),
            namespace: object.metadata.namespace.clone().unwrap_or_default(),
            spec: serde_json::from_value(data["spec"].clone()).unwrap_or_default(),
            status: serde_json::from_value(data["status"].clone()).unwrap_or_default(),
            created_at: object
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.to_string())
                .unwrap_or_default(),
        }
    }

    fn digest(&self) -> Result<Digest, ImageCacheError> {
        self.status
            .digest
            .as_deref()
            .and_then(|d| Digest::parse(d).ok())
            .ok_or_else(|| ImageCacheError::NoData {
                reference: self.id.clone(),
            })
    }

    fn disk_format(&self) -> &str {
        self.spec.disk_format.as_deref().unwrap_or("")
    }
}

fn resource() -> ApiResource {
    ApiResource {
        group: model::GROUP.into(),
        version: model::VERSION.into(),
        api_version: model::API_VERSION.into(),
        kind: model::KIND.into(),
        plural: model::PLURAL.into(),
    }
}

/// The image cache of one agent. Cheap to clone.
#[derive(Clone)]
pub struct ImageCache {
    client: kube::Client,
    blobs: BlobStore,
    layers: LayerCache,
    /// One lock per digest being fetched, so concurrent requests fetch once.
    fetching: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

impl ImageCache {
    /// A cache keeping its blobs in `DIR/blobs` and unpacked layers in `DIR/layers`,
    /// reading Image objects and data with `client` (which must be allowed to read every
    /// project's images: the node credential is).
    pub fn new(client: kube::Client, dir: &Path) -> Result<ImageCache, ImageCacheError> {
        let open_error = |source: Box<dyn std::error::Error + Send + Sync>| ImageCacheError::Open {
            path: dir.to_path_buf(),
            source,
        };
        let blobs = BlobStore::open(dir.join(BLOBS_DIR)).map_err(|e| open_error(Box::new(e)))?;
        let layers = LayerCache::open(dir.join(LAYERS_DIR)).map_err(|e| open_error(Box::new(e)))?;
        Ok(ImageCache {
            client,
            blobs,
            layers,
            fetching: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// The image `reference` names for `namespace`, with its layers unpacked here.
    pub async fn container_image(
        &self,
        namespace: &str,
        reference: &str,
    ) -> Result<ContainerImage, ImageCacheError> {
        let image = self.resolve(namespace, reference).await?;
        if matches!(image.disk_format(), "aki" | "ari" | "qcow2" | "iso") {
            return Err(ImageCacheError::WrongFormat {
                reference: reference.to_owned(),
                format: image.disk_format().to_owned(),
                use_as: "run as a container",
            });
        }
        let digest = image.digest()?;
        let lock = self.lock(&digest);
        let _held = lock.lock().await;
        if let Some(unpacked) = self.layers.unpacked(&digest) {
            return Ok(unpacked);
        }
        let blob = self.fetch_locked(&image, &digest).await?;
        let layers = self.layers.clone();
        let id = image.id.clone();
        let unpack_digest = digest.clone();
        tokio::task::spawn_blocking(move || layers.unpack(&blob, &unpack_digest))
            .await
            .map_err(|error| ImageCacheError::Download {
                id: id.clone(),
                message: format!("the unpacking task failed: {error}"),
            })?
            .map_err(|source| ImageCacheError::Unpack { id, source })
    }

    /// The files a VM booting `reference` needs on this host: the image's kernel and
    /// ramdisk (Glance's `kernel_id` and `ramdisk_id` images, or the image itself when it
    /// is a kernel) and its disk (qcow2, raw or ami data; the VM must get a copy-on-write
    /// overlay, never write the file).
    pub async fn vm_image(
        &self,
        namespace: &str,
        reference: &str,
    ) -> Result<VmImage, ImageCacheError> {
        let image = self.resolve(namespace, reference).await?;
        let mut vm = VmImage {
            kernel_args: image.spec.property(OS_COMMAND_LINE).map(str::to_owned),
            ..VmImage::default()
        };
        if let Some(kernel_id) = image.spec.property(KERNEL_ID) {
            let kernel = self.resolve(namespace, kernel_id).await?;
            vm.kernel = Some(self.fetch(&kernel).await?);
        }
        if let Some(ramdisk_id) = image.spec.property(RAMDISK_ID) {
            let ramdisk = self.resolve(namespace, ramdisk_id).await?;
            vm.initrd = Some(self.fetch(&ramdisk).await?);
        }
        let has_data = image.status.size.unwrap_or(0) > 0;
        match image.disk_format() {
            "aki" if vm.kernel.is_none() => vm.kernel = Some(self.fetch(&image).await?),
            "qcow2" if has_data => {
                vm.disk = Some(Disk {
                    path: self.fetch(&image).await?,
                    format: "qcow2".into(),
                });
            }
            "raw" | "ami" if has_data => {
                vm.disk = Some(Disk {
                    path: self.fetch(&image).await?,
                    format: "raw".into(),
                });
            }
            _ => {}
        }
        if vm.kernel.is_none() && vm.disk.is_none() {
            return Err(ImageCacheError::WrongFormat {
                reference: reference.to_owned(),
                format: image.disk_format().to_owned(),
                use_as: "booted (it has no kernel and no qcow2, raw or ami disk)",
            });
        }
        Ok(vm)
    }

    /// Every Image, in every project.
    pub async fn list(&self) -> Result<Vec<ImageRecord>, ImageCacheError> {
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &resource());
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(ImageCacheError::List)?;
        Ok(list.items.iter().map(ImageRecord::from_object).collect())
    }

    /// The active image `reference` names for `namespace`.
    pub async fn resolve(
        &self,
        namespace: &str,
        reference: &str,
    ) -> Result<ImageRecord, ImageCacheError> {
        let images = self.list().await?;
        choose(&images, namespace, reference).cloned()
    }

    fn lock(&self, digest: &Digest) -> Arc<tokio::sync::Mutex<()>> {
        let mut fetching = self.fetching.lock().unwrap_or_else(|e| e.into_inner());
        fetching.retain(|_, lock| Arc::strong_count(lock) > 1);
        fetching.entry(digest.hex().to_owned()).or_default().clone()
    }

    /// The image's data in this host's blob store, downloaded if it is not there.
    pub async fn fetch(&self, image: &ImageRecord) -> Result<PathBuf, ImageCacheError> {
        let digest = image.digest()?;
        let lock = self.lock(&digest);
        let _held = lock.lock().await;
        self.fetch_locked(image, &digest).await
    }

    async fn fetch_locked(
        &self,
        image: &ImageRecord,
        digest: &Digest,
    ) -> Result<PathBuf, ImageCacheError> {
        if self.blobs.exists(digest) {
            return Ok(self.blobs.path(digest));
        }
        let download_error = |message: String| ImageCacheError::Download {
            id: image.id.clone(),
            message,
        };
        let request = http::Request::get(format!("/image/v2/images/{}/file", image.id))
            .body(kube::client::Body::from(Vec::new()))
            .map_err(|error| download_error(error.to_string()))?;
        let response = self
            .client
            .send(request)
            .await
            .map_err(|error| download_error(error.to_string()))?;
        if response.status() != http::StatusCode::OK {
            return Err(download_error(format!(
                "the server answered {}",
                response.status()
            )));
        }
        let expected = Expected {
            size: image.status.size,
            ..Expected::digest(digest)
        };
        let (sender, reader) = chunk_channel(DOWNLOAD_QUEUE);
        let blobs = self.blobs.clone();
        let writer = tokio::task::spawn_blocking(move || blobs.put(reader, &expected));
        let mut body = response.into_body();
        loop {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data()
                        && !sender.send(data).await
                    {
                        break;
                    }
                }
                Some(Err(error)) => {
                    sender.fail(std::io::Error::other(error.to_string())).await;
                    break;
                }
                None => {
                    sender.finish().await;
                    break;
                }
            }
        }
        let info = writer
            .await
            .map_err(|error| download_error(format!("the writer task failed: {error}")))?
            .map_err(|source| ImageCacheError::Store {
                id: image.id.clone(),
                source,
            })?;
        tracing::info!(id = %image.id, digest = %info.digest, size = info.size, "downloaded image");
        Ok(self.blobs.path(&info.digest))
    }
}

/// Which image `reference` names for `namespace`: an image of that id, else one whose
/// Glance name matches one of the names the reference stands for (most exact first);
/// among several, the project's own before shared ones before public ones, then the newest.
/// Only images the namespace's project may see count, and only active ones are used.
pub fn choose<'a>(
    images: &'a [ImageRecord],
    namespace: &str,
    reference: &str,
) -> Result<&'a ImageRecord, ImageCacheError> {
    let visible =
        |image: &&ImageRecord| model::can_see(&image.namespace, &image.spec, Some(namespace));
    let usable = |image: &ImageRecord| -> Result<(), ImageCacheError> {
        if image.status.status == STATUS_ACTIVE {
            Ok(())
        } else {
            Err(ImageCacheError::NotActive {
                reference: reference.to_owned(),
                status: image.status.status.clone(),
            })
        }
    };
    if let Some(image) = images.iter().filter(visible).find(|i| i.id == reference) {
        usable(image)?;
        return Ok(image);
    }
    let parsed = model::parse_reference(reference);
    let rank = |image: &ImageRecord| -> u8 {
        if image.namespace == namespace {
            0
        } else if image.spec.visibility() == Visibility::Shared {
            1
        } else {
            2
        }
    };
    let mut inactive = None;
    for name in &parsed.names {
        let mut candidates: Vec<&ImageRecord> = images
            .iter()
            .filter(visible)
            .filter(|i| i.spec.name == *name)
            .filter(|i| {
                parsed
                    .digest
                    .as_ref()
                    .is_none_or(|d| i.status.digest.as_ref() == Some(d))
            })
            .collect();
        candidates.sort_by(|a, b| {
            rank(a)
                .cmp(&rank(b))
                .then_with(|| b.created_at.cmp(&a.created_at))
        });
        if let Some(active) = candidates.iter().find(|i| usable(i).is_ok()) {
            return Ok(active);
        }
        inactive = inactive.or(candidates.first().copied());
    }
    match inactive {
        Some(image) => usable(image).map(|()| image),
        None => Err(ImageCacheError::NotFound {
            reference: reference.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(
        id: &str,
        namespace: &str,
        name: &str,
        visibility: &str,
        created: &str,
    ) -> ImageRecord {
        ImageRecord {
            id: id.into(),
            namespace: namespace.into(),
            spec: ImageSpec {
                name: name.into(),
                visibility: visibility.into(),
                ..ImageSpec::default()
            },
            status: ImageStatus {
                status: STATUS_ACTIVE.into(),
                digest: Some(format!("sha256:{}", "a".repeat(64))),
                ..ImageStatus::default()
            },
            created_at: created.into(),
        }
    }

    #[test]
    fn references_resolve_to_what_the_project_may_use() {
        let images = vec![
            image("pub-old", "admin", "busybox", "public", "2026-01-01"),
            image("pub-new", "admin", "busybox", "public", "2026-02-01"),
            image("mine", "team-a", "busybox", "private", "2025-01-01"),
            image("theirs", "team-b", "app", "private", "2026-01-01"),
            image("tagged", "admin", "app:1.0", "public", "2026-01-01"),
        ];
        let id = |namespace: &str, reference: &str| {
            choose(&images, namespace, reference).map(|i| i.id.clone())
        };
        assert_eq!(id("team-a", "busybox").unwrap(), "mine", "own first");
        assert_eq!(id("team-c", "busybox").unwrap(), "pub-new", "newest public");
        for reference in [
            "busybox:latest",
            "docker.io/library/busybox",
            "docker.io/library/busybox:latest",
        ] {
            assert_eq!(id("team-c", reference).unwrap(), "pub-new", "{reference}");
        }
        assert_eq!(id("team-c", "pub-old").unwrap(), "pub-old", "by id");
        assert_eq!(id("team-c", "app:1.0").unwrap(), "tagged");
        let hidden = id("team-c", "app").unwrap_err();
        assert_eq!(hidden.to_string(), "image \"app\" not found");
        assert!(matches!(
            id("team-c", "theirs"),
            Err(ImageCacheError::NotFound { .. })
        ));
        assert_eq!(id("team-b", "app").unwrap(), "theirs");
    }

    #[test]
    fn an_inactive_image_says_so() {
        let mut queued = image("q", "team-a", "new", "private", "2026-01-01");
        queued.status.status = "queued".into();
        let images = vec![queued];
        let error = choose(&images, "team-a", "new").unwrap_err();
        assert_eq!(error.to_string(), "image \"new\" is queued, not active");
    }
}
