//! Unpacking generated images: plain rootfs tarballs (gzipped and not) and OCI image
//! layouts with several layers and whiteouts.

use std::io::Write;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};

use serde_json::json;

use super::*;
use crate::blob::{BlobStore, Expected};

/// One entry of a generated layer.
enum Item<'a> {
    Dir(&'a str),
    File(&'a str, &'a str, u32),
    Link(&'a str, &'a str),
}

fn tarball(items: &[Item<'_>]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for item in items {
        let mut header = tar::Header::new_ustar();
        header.set_mtime(1_700_000_000);
        header.set_uid(0);
        header.set_gid(0);
        match item {
            Item::Dir(path) => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                builder.append_data(&mut header, path, io::empty()).unwrap();
            }
            Item::File(path, content, mode) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(*mode);
                header.set_size(content.len() as u64);
                builder
                    .append_data(&mut header, path, content.as_bytes())
                    .unwrap();
            }
            Item::Link(path, target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                builder.append_link(&mut header, path, target).unwrap();
            }
        }
    }
    builder.into_inner().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// An OCI image layout tarball of `layers` (each gzipped) with `config`.
fn oci_layout(layers: &[Vec<u8>], config: serde_json::Value) -> Vec<u8> {
    let mut blobs: Vec<(String, Vec<u8>)> = Vec::new();
    let mut descriptors = Vec::new();
    for layer in layers {
        let compressed = gzip(layer);
        let digest = sha256_hex(&compressed);
        descriptors.push(json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": format!("sha256:{digest}"),
            "size": compressed.len(),
        }));
        blobs.push((digest, compressed));
    }
    let config = config.to_string().into_bytes();
    let config_digest = sha256_hex(&config);
    blobs.push((config_digest.clone(), config));
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": format!("sha256:{config_digest}")},
        "layers": descriptors,
    })
    .to_string()
    .into_bytes();
    let manifest_digest = sha256_hex(&manifest);
    blobs.push((manifest_digest.clone(), manifest));
    let index = json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": format!("sha256:{manifest_digest}"),
        "platform": {"architecture": "amd64", "os": "linux"},
    }]})
    .to_string();
    let mut builder = tar::Builder::new(Vec::new());
    let mut add = |path: &str, bytes: &[u8]| {
        let mut header = tar::Header::new_ustar();
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o644);
        header.set_size(bytes.len() as u64);
        builder.append_data(&mut header, path, bytes).unwrap();
    };
    // Blobs first, as `docker save` writes them: detection must not rely on order.
    for (digest, bytes) in &blobs {
        add(&format!("blobs/sha256/{digest}"), bytes);
    }
    add("oci-layout", br#"{"imageLayoutVersion": "1.0.0"}"#);
    add("index.json", index.as_bytes());
    builder.into_inner().unwrap()
}

struct Fixture {
    _dir: tempfile::TempDir,
    blobs: BlobStore,
    cache: LayerCache,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        Fixture {
            blobs: BlobStore::open(dir.path().join("blobs")).unwrap(),
            cache: LayerCache::open(dir.path().join("cache")).unwrap(),
            _dir: dir,
        }
    }

    fn unpack(&self, bytes: &[u8]) -> Result<ContainerImage, UnpackError> {
        let info = self.blobs.put(bytes, &Expected::default()).unwrap();
        self.cache
            .unpack(&self.blobs.path(&info.digest), &info.digest)
    }

    fn scratch_is_empty(&self) -> bool {
        fs::read_dir(self.cache.root().join(TEMPORARY_DIR))
            .unwrap()
            .next()
            .is_none()
    }
}

fn rootfs() -> Vec<u8> {
    tarball(&[
        Item::Dir("./bin/"),
        Item::File("./bin/busybox", "#!binary", 0o755),
        Item::Link("./bin/sh", "/bin/busybox"),
        Item::File("./etc/passwd", "root:x:0:0::/root:/bin/sh\n", 0o644),
    ])
}

#[test]
fn a_plain_rootfs_is_one_layer() {
    for compress in [false, true] {
        let fixture = Fixture::new();
        let bytes = if compress { gzip(&rootfs()) } else { rootfs() };
        let image = fixture.unpack(&bytes).unwrap();
        assert_eq!(image.layers.len(), 1);
        assert_eq!(image.digest, format!("sha256:{}", sha256_hex(&bytes)));
        let layer = &image.layers[0];
        assert_eq!(
            fs::read_to_string(layer.join("etc/passwd")).unwrap(),
            "root:x:0:0::/root:/bin/sh\n"
        );
        let mode = fs::metadata(layer.join("bin/busybox"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        assert_eq!(
            fs::read_link(layer.join("bin/sh")).unwrap(),
            Path::new("/bin/busybox")
        );
        assert_eq!(image.config.cmd, ["sh"]);
        assert_eq!(image.config.env, [DEFAULT_PATH]);
        assert!(fixture.scratch_is_empty());
        // Asked again, it is found, not unpacked again.
        fs::write(layer.join("marker"), "kept").unwrap();
        let again = fixture.unpack(&bytes).unwrap();
        assert_eq!(again, image);
        assert!(again.layers[0].join("marker").exists());
    }
}

#[test]
fn an_oci_layout_unpacks_its_layers_in_order_with_config() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: the layers hold whiteouts, which need root to make");
        return;
    }
    let fixture = Fixture::new();
    let base = tarball(&[
        Item::Dir("etc/"),
        Item::File("etc/hosts", "127.0.0.1 localhost\n", 0o644),
        Item::File("etc/motd", "hello\n", 0o644),
        Item::Dir("var/cache/"),
        Item::File("var/cache/old", "stale", 0o644),
    ]);
    let top = tarball(&[
        Item::File("etc/.wh.motd", "", 0o644),
        Item::File("var/cache/.wh..wh..opq", "", 0o644),
        Item::File("var/cache/new", "fresh", 0o644),
        Item::File("app", "run", 0o755),
    ]);
    let config = json!({"architecture": "amd64", "os": "linux", "config": {
        "Entrypoint": ["/app"], "Cmd": ["--serve"], "Env": ["A=1"], "WorkingDir": "/srv"}});
    let layout = oci_layout(&[base.clone(), top], config);
    let image = fixture.unpack(&gzip(&layout)).unwrap();
    assert_eq!(image.layers.len(), 2);
    assert_eq!(
        image.layers[0],
        fixture
            .cache
            .layer_path(&Digest::parse(&sha256_hex(&gzip(&base))).unwrap())
    );
    assert_eq!(image.config.entrypoint, ["/app"]);
    assert_eq!(image.config.cmd, ["--serve"]);
    assert_eq!(image.config.working_dir.as_deref(), Some("/srv"));
    let (lower, upper) = (&image.layers[0], &image.layers[1]);
    assert_eq!(
        fs::read_to_string(lower.join("etc/motd")).unwrap(),
        "hello\n"
    );
    let whiteout = fs::symlink_metadata(upper.join("etc/motd")).unwrap();
    assert!(whiteout.file_type().is_char_device());
    let mut value = [0u8; 4];
    let length = rustix::fs::lgetxattr(
        upper.join("var/cache"),
        "trusted.overlay.opaque",
        &mut value,
    )
    .unwrap();
    assert_eq!(&value[..length], b"y");
    assert!(!upper.join("var/cache/.wh..wh..opq").exists());
    assert_eq!(
        fs::read_to_string(upper.join("var/cache/new")).unwrap(),
        "fresh"
    );
    assert!(fixture.scratch_is_empty());

    // Another image sharing the base layer reuses its directory.
    fs::write(lower.join("marker"), "").unwrap();
    let other = oci_layout(&[base], json!({"config": {"Cmd": ["sh"]}}));
    let second = fixture.unpack(&other).unwrap();
    assert_eq!(second.layers, vec![lower.clone()]);
    assert!(lower.join("marker").exists());
}

#[test]
fn a_layout_with_a_corrupt_blob_unpacks_nothing() {
    let fixture = Fixture::new();
    let layer = tarball(&[Item::File("a", "x", 0o644)]);
    let mut layout = oci_layout(&[layer], json!({}));
    // Corrupt the layer blob's bytes (the first entry's data) without touching headers.
    let data_start = 512;
    layout[data_start + 20] ^= 0xff;
    let error = fixture.unpack(&layout).unwrap_err();
    assert!(
        matches!(error, UnpackError::DigestMismatch { .. }),
        "{error}"
    );
    assert!(fixture.scratch_is_empty());
    let layers = fs::read_dir(fixture.cache.root().join(LAYERS_DIR))
        .unwrap()
        .count();
    assert_eq!(layers, 0);
}

#[test]
fn data_that_is_not_a_tarball_is_refused() {
    let fixture = Fixture::new();
    let qcow2 = [b"QFI\xfb".as_slice(), &[7u8; 2000]].concat();
    let error = fixture.unpack(&qcow2).unwrap_err();
    assert!(matches!(error, UnpackError::Tar { .. }), "{error}");
    assert!(fixture.scratch_is_empty());
}

#[test]
fn concurrent_unpacks_of_one_image_agree() {
    let fixture = Fixture::new();
    let bytes = rootfs();
    let info = fixture.blobs.put(&bytes[..], &Expected::default()).unwrap();
    let path = fixture.blobs.path(&info.digest);
    let images: Vec<ContainerImage> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| fixture.cache.unpack(&path, &info.digest).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(images.windows(2).all(|pair| pair[0] == pair[1]));
    assert!(images[0].layers[0].join("bin/busybox").is_file());
    assert!(fixture.scratch_is_empty());
}
