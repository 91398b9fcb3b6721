//! `ronghe images bootstrap`: builds the two public images Ronghe's tests and demos run
//! from this machine's Debian packages (installing busybox-static and linux-image-amd64
//! with apt-get when they are missing and we are root) and uploads them through the Glance
//! face into the admin project:
//! - `busybox`: a container root filesystem (a tarball; `container_format: docker`);
//! - `test-guest`: Debian's kernel (`test-guest-kernel`, aki) and a busybox initramfs
//!   (`test-guest-initramfs`, ari), and the `test-guest` image (ami) naming them by
//!   `kernel_id` and `ramdisk_id`.
//!
//! It is idempotent: an active public image of the same name and the same data (and, for
//! `test-guest`, the same kernel and ramdisk) is kept. Each upload states the sha256 it
//! must have, so the server refuses a corrupted one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use http_body_util::BodyExt;
use ronghe_images::blob::hash_file;
use serde_json::{Value, json};

#[derive(Subcommand, Debug)]
pub enum ImagesCommand {
    /// Build `busybox` and `test-guest` from this machine's Debian packages and upload
    /// them as public images (kept when already there).
    Bootstrap(BootstrapArgs),
}

#[derive(Args, Debug)]
pub struct BootstrapArgs {
    /// The kubeconfig of a cloud admin (default: `KUBECONFIG`, then `~/.kube/config`).
    #[arg(long, conflicts_with = "data_dir")]
    kubeconfig: Option<PathBuf>,
    /// The server's data directory: use its admin kubeconfig (`DIR/kubeconfig`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Never run apt-get; fail if a package is missing.
    #[arg(long)]
    no_install: bool,
}

/// The Debian packages the images are built from.
const PACKAGES: &[&str] = &["busybox-static", "linux-image-amd64"];

pub async fn run(command: ImagesCommand) -> anyhow::Result<()> {
    match command {
        ImagesCommand::Bootstrap(args) => bootstrap(args).await,
    }
}

async fn bootstrap(args: BootstrapArgs) -> anyhow::Result<()> {
    let kubeconfig = match (&args.data_dir, &args.kubeconfig) {
        (Some(dir), _) => Some(dir.join("kubeconfig")),
        (None, kubeconfig) => kubeconfig.clone(),
    };
    let client = crate::client::connect(kubeconfig.as_ref()).await?;
    let glance = Glance { client };
    ensure_packages(!args.no_install)?;
    let work = tempfile::Builder::new()
        .prefix("ronghe-images-")
        .tempdir()
        .context("making a work directory")?;

    let busybox = work.path().join("busybox.tar");
    ronghe_images::build::busybox::write_tarball(&busybox)
        .context("building the busybox root filesystem")?;
    glance
        .ensure(&Upload {
            name: "busybox",
            path: &busybox,
            disk_format: "raw",
            container_format: "docker",
            properties: BTreeMap::new(),
        })
        .await?;

    let guest = ronghe_images::build::guest::build(&work.path().join("test-guest"))
        .context("building the test guest")?;
    let kernel = glance
        .ensure(&Upload {
            name: "test-guest-kernel",
            path: &guest.kernel,
            disk_format: "aki",
            container_format: "aki",
            properties: BTreeMap::new(),
        })
        .await?;
    let ramdisk = glance
        .ensure(&Upload {
            name: "test-guest-initramfs",
            path: &guest.initramfs,
            disk_format: "ari",
            container_format: "ari",
            properties: BTreeMap::new(),
        })
        .await?;
    // The machine image itself holds no data: the kernel and ramdisk are the guest, booted
    // with the hypervisor's own command line.
    let empty = work.path().join("test-guest.ami");
    std::fs::write(&empty, b"").context("writing the empty machine image")?;
    glance
        .ensure(&Upload {
            name: "test-guest",
            path: &empty,
            disk_format: "ami",
            container_format: "ami",
            properties: BTreeMap::from([
                ("kernel_id".to_owned(), kernel),
                ("ramdisk_id".to_owned(), ramdisk),
            ]),
        })
        .await?;
    Ok(())
}

/// Makes sure the packages are installed, installing the missing ones when allowed.
fn ensure_packages(install: bool) -> anyhow::Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .copied()
        .filter(|package| !is_installed(package))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !install {
        bail!("missing Debian packages: {}", missing.join(" "));
    }
    if !is_root() {
        bail!(
            "missing Debian packages: {} (run as root to install them, or install them first)",
            missing.join(" ")
        );
    }
    eprintln!("installing {}", missing.join(" "));
    let mut arguments = vec!["install", "-y", "--no-install-recommends"];
    arguments.extend(&missing);
    if host_command("apt-get", &arguments).is_err() {
        // The package lists may be stale or absent.
        host_command("apt-get", &["update"])?;
        host_command("apt-get", &arguments)?;
    }
    Ok(())
}

fn is_installed(package: &str) -> bool {
    host_command("dpkg-query", &["-W", "-f=${Status}", package])
        .is_ok_and(|status| status.contains("install ok installed"))
}

fn is_root() -> bool {
    // The effective uid, as the kernel reports it for this process.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// The one place this command runs host programs; their stdout on success.
fn host_command(program: &str, arguments: &[&str]) -> anyhow::Result<String> {
    tracing::debug!(program, ?arguments, "running");
    let output = Command::new(program)
        .args(arguments)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .with_context(|| format!("running {program}"))?;
    if !output.status.success() {
        bail!(
            "{program} {} failed ({}): {}",
            arguments.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// One image to make sure of.
struct Upload<'a> {
    name: &'a str,
    path: &'a Path,
    disk_format: &'a str,
    container_format: &'a str,
    properties: BTreeMap<String, String>,
}

/// The Glance face, through the kubeconfig's server and credential.
struct Glance {
    client: kube::Client,
}

impl Glance {
    async fn send(
        &self,
        method: http::Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<(u16, Value)> {
        let request = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::CONTENT_TYPE, content_type)
            .body(kube::client::Body::from(body))?;
        let response = self
            .client
            .send(request)
            .await
            .context("the server cannot be reached")?;
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await?.to_bytes();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Ok((status, value))
    }

    /// The public images called `name`.
    async fn public_named(&self, name: &str) -> anyhow::Result<Vec<Value>> {
        let path = format!("/image/v2/images?visibility=public&limit=1000&name={name}");
        let (status, body) = self
            .send(http::Method::GET, &path, "application/json", Vec::new())
            .await?;
        if status != 200 {
            bail!("listing images failed ({status}): {}", message(&body));
        }
        Ok(body["images"].as_array().cloned().unwrap_or_default())
    }

    /// The id of an active public image of `upload`'s name, data and properties: the one
    /// there, or one uploaded now.
    async fn ensure(&self, upload: &Upload<'_>) -> anyhow::Result<String> {
        let path = upload.path.to_path_buf();
        let info = tokio::task::spawn_blocking(move || hash_file(&path))
            .await?
            .with_context(|| format!("hashing {}", upload.path.display()))?;
        for image in self.public_named(upload.name).await? {
            let same_data = image["status"] == "active"
                && image["os_hash_algo"] == "sha512"
                && image["os_hash_value"] == info.sha512.as_str()
                && image["disk_format"] == upload.disk_format
                && image["container_format"] == upload.container_format;
            let same_properties = upload
                .properties
                .iter()
                .all(|(key, value)| image[key] == value.as_str());
            if same_data && same_properties {
                let id = image["id"].as_str().unwrap_or_default().to_owned();
                println!("{}: kept image {id}", upload.name);
                return Ok(id);
            }
        }
        let mut body = json!({
            "name": upload.name,
            "disk_format": upload.disk_format,
            "container_format": upload.container_format,
            "visibility": "public",
            "os_hash_algo": "sha256",
            "os_hash_value": info.digest.hex(),
        });
        for (key, value) in &upload.properties {
            body[key] = json!(value);
        }
        let (status, created) = self
            .send(
                http::Method::POST,
                "/image/v2/images",
                "application/json",
                body.to_string().into_bytes(),
            )
            .await?;
        if status != 201 {
            bail!(
                "creating image {} failed ({status}): {}",
                upload.name,
                message(&created)
            );
        }
        let id = created["id"]
            .as_str()
            .context("the created image has no id")?
            .to_owned();
        // The CLI's upload is read whole: the bootstrap images are tens of megabytes.
        let data = tokio::fs::read(upload.path)
            .await
            .with_context(|| format!("reading {}", upload.path.display()))?;
        let (status, answer) = self
            .send(
                http::Method::PUT,
                &format!("/image/v2/images/{id}/file"),
                "application/octet-stream",
                data,
            )
            .await?;
        if status != 204 {
            let _ = self
                .send(
                    http::Method::DELETE,
                    &format!("/image/v2/images/{id}"),
                    "application/json",
                    Vec::new(),
                )
                .await;
            bail!(
                "uploading image {} failed ({status}): {}",
                upload.name,
                message(&answer)
            );
        }
        println!(
            "{}: uploaded image {id} ({} bytes, {})",
            upload.name, info.size, info.digest
        );
        Ok(id)
    }
}

/// The message of a Glance fault.
fn message(body: &Value) -> String {
    body["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| body.to_string())
}
