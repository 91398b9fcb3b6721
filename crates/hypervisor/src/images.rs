//! Where the driver gets the files a VM boots: [`ImageSource`], answered on a real host
//! by the agent's image cache and in tests by [`LocalImages`] (files named up front).

use std::collections::HashMap;

use ronghe_agent::images::{ImageCache, ImageCacheError};
use ronghe_images::VmImage;

#[derive(Debug, thiserror::Error)]
pub enum ImageSourceError {
    #[error("image {reference:?} not found")]
    NotFound { reference: String },
    #[error("getting image {reference:?} failed")]
    Other {
        reference: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The files of the image a VM boots, on this host's disk.
#[async_trait::async_trait]
pub trait ImageSource: Send + Sync + 'static {
    async fn vm_image(&self, namespace: &str, reference: &str)
    -> Result<VmImage, ImageSourceError>;
}

/// Images known by name up front, the same in every namespace.
#[derive(Clone, Debug, Default)]
pub struct LocalImages {
    images: HashMap<String, VmImage>,
}

impl LocalImages {
    pub fn new() -> LocalImages {
        LocalImages::default()
    }

    pub fn with(mut self, reference: &str, image: VmImage) -> LocalImages {
        self.images.insert(reference.to_owned(), image);
        self
    }
}

#[async_trait::async_trait]
impl ImageSource for LocalImages {
    async fn vm_image(
        &self,
        _namespace: &str,
        reference: &str,
    ) -> Result<VmImage, ImageSourceError> {
        self.images
            .get(reference)
            .cloned()
            .ok_or_else(|| ImageSourceError::NotFound {
                reference: reference.to_owned(),
            })
    }
}

#[async_trait::async_trait]
impl ImageSource for ImageCache {
    async fn vm_image(
        &self,
        namespace: &str,
        reference: &str,
    ) -> Result<VmImage, ImageSourceError> {
        ImageCache::vm_image(self, namespace, reference)
            .await
            .map_err(|error| match error {
                ImageCacheError::NotFound { reference } => ImageSourceError::NotFound { reference },
                other => ImageSourceError::Other {
                    reference: reference.to_owned(),
                    source: Box::new(other),
                },
            })
    }
}
