//! A VM's root disk: a qcow2 overlay on its image (which is never written), sized to the
//! flavor's disk, or to the image's own size when the flavor gives none.

use std::path::Path;

use serde_json::Value;

use crate::HypervisorError;
use crate::host::HostCommands;

const GIB: u64 = 1 << 30;

/// The size the overlay gets: the flavor's disk, which may not be smaller than the
/// image (Nova's `FlavorDiskSmallerThanImage`), or the image's size.
pub fn overlay_size(image_bytes: u64, flavor_disk_gb: u64) -> Result<u64, HypervisorError> {
    if flavor_disk_gb == 0 {
        return Ok(image_bytes);
    }
    let flavor_bytes = flavor_disk_gb.saturating_mul(GIB);
    if flavor_bytes < image_bytes {
        return Err(HypervisorError::DiskTooSmall {
            flavor_disk_gb,
            image_bytes,
        });
    }
    Ok(flavor_bytes)
}

/// Makes `overlay` on `image` (`raw` or `qcow2`) unless it exists.
pub async fn create_overlay(
    commands: &HostCommands,
    image: &ronghe_images::Disk,
    overlay: &Path,
    flavor_disk_gb: u64,
) -> Result<(), HypervisorError> {
    if overlay.exists() {
        return Ok(());
    }
    let backing = std::path::absolute(&image.path).map_err(|source| HypervisorError::Io {
        path: image.path.clone(),
        source,
    })?;
    let backing = backing.to_string_lossy().into_owned();
    let info = commands
        .qemu_img(&[
            "info".into(),
            "--output=json".into(),
            "-f".into(),
            image.format.clone(),
            backing.clone(),
        ])
        .await?;
    let info: Value = serde_json::from_slice(&info).unwrap_or(Value::Null);
    let image_bytes = info["virtual-size"].as_u64().unwrap_or(0);
    let size = overlay_size(image_bytes, flavor_disk_gb)?;
    // Made under another name and renamed, so a half-made overlay is never booted.
    let partial = overlay.with_extension("partial");
    let _ = std::fs::remove_file(&partial);
    commands
        .qemu_img(&[
            "create".into(),
            "-q".into(),
            "-f".into(),
            "qcow2".into(),
            "-F".into(),
            image.format.clone(),
            "-b".into(),
            backing,
            partial.to_string_lossy().into_owned(),
            size.to_string(),
        ])
        .await?;
    std::fs::rename(&partial, overlay).map_err(|source| HypervisorError::Io {
        path: overlay.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flavor_sizes_the_disk_but_never_below_the_image() {
        assert_eq!(overlay_size(3 * GIB, 0).unwrap(), 3 * GIB);
        assert_eq!(overlay_size(3 * GIB, 10).unwrap(), 10 * GIB);
        assert!(matches!(
            overlay_size(3 * GIB, 2),
            Err(HypervisorError::DiskTooSmall { .. })
        ));
    }
}
