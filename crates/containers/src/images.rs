//! Where the driver gets a container's image from: [`ImageSource`], a narrow seam so the
//! agent can hand it its image cache and tests a local busybox layer.

use std::collections::HashMap;

use ronghe_images::ContainerImage;

/// Resolves a pod's `image:` reference to layers on this host.
#[async_trait::async_trait]
pub trait ImageSource: Send + Sync + 'static {
    /// The image `reference` (as written in the pod) for a pod in `namespace`, with its
    /// layers unpacked on this host. The error's message is shown to the user as the
    /// container's `ErrImagePull` message.
    async fn container_image(
        &self,
        namespace: &str,
        reference: &str,
    ) -> anyhow::Result<ContainerImage>;
}

/// A fixed set of images by reference, for tests and hosts without an image cache. A
/// reference matches with or without the `:latest` tag.
#[derive(Clone, Debug, Default)]
pub struct StaticImages {
    images: HashMap<String, ContainerImage>,
}

impl StaticImages {
    pub fn new() -> StaticImages {
        StaticImages::default()
    }

    /// Adds an image under `reference` (say `busybox`).
    pub fn with(mut self, reference: &str, image: ContainerImage) -> StaticImages {
        self.images.insert(normalize(reference).to_owned(), image);
        self
    }
}

fn normalize(reference: &str) -> &str {
    reference.strip_suffix(":latest").unwrap_or(reference)
}

#[async_trait::async_trait]
impl ImageSource for StaticImages {
    async fn container_image(
        &self,
        _namespace: &str,
        reference: &str,
    ) -> anyhow::Result<ContainerImage> {
        self.images
            .get(normalize(reference))
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("image {reference:?} not found"))
    }
}
