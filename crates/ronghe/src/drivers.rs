//! The drivers a real host (not a simulated one) runs its workloads with: pods through
//! runc (`ronghe-containers`) and VMs through QEMU (`ronghe-hypervisor`), both fed by
//! the agent's image cache.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use ronghe_agent::images::ImageCache;
use ronghe_agent::{Drivers, Host};

/// The drivers of this machine, keeping their state under `data_dir`.
pub async fn for_this_host(
    client: &kube::Client,
    data_dir: &Path,
    host: &Host,
) -> anyhow::Result<Drivers> {
    let images = ImageCache::new(client.clone(), &data_dir.join("images"))
        .with_context(|| format!("opening the image cache in {}", data_dir.display()))?;
    let config =
        ronghe_containers::RuncConfig::for_agent(data_dir.join("containers"), &host.address);
    let pods = ronghe_containers::RuncDriver::new(config, Arc::new(CachedImages(images.clone())))
        .await
        .context("starting the container driver (runc)")?;
    let vms = ronghe_hypervisor::QemuDriver::new(data_dir.join("vms"), Arc::new(images))
        .await
        .context("starting the VM driver (QEMU)")?;
    Ok(Drivers {
        pods: Arc::new(pods),
        vms: Arc::new(vms),
    })
}

/// The image cache as the container driver's image source.
struct CachedImages(ImageCache);

#[async_trait::async_trait]
impl ronghe_containers::ImageSource for CachedImages {
    async fn container_image(
        &self,
        namespace: &str,
        reference: &str,
    ) -> anyhow::Result<ronghe_images::ContainerImage> {
        Ok(self.0.container_image(namespace, reference).await?)
    }
}
