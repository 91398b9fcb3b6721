//! Finds the on-disk sources of the crates the schema table is generated from (k8s-pb and
//! k8s-openapi), through `cargo metadata`, so the generator reads exactly the versions in
//! Cargo.lock rather than guessing registry paths.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};

pub struct CrateSources {
    pub protobuf_src: PathBuf,
    pub protobuf_version: String,
    /// The module tree of the Kubernetes version k8s-openapi is built for (`src/v1_33`).
    pub openapi_src: PathBuf,
    pub openapi_version: String,
    /// That version's module name, like `v1_33`.
    pub openapi_module: &'static str,
}

/// The k8s-openapi version feature this build enables (the workspace picks one), so the table
/// always describes the same Kubernetes version as the types the server deserializes into.
fn enabled_openapi_module() -> anyhow::Result<&'static str> {
    let mut enabled = Vec::new();
    k8s_openapi::k8s_if_1_33! { enabled.push("v1_33"); }
    k8s_openapi::k8s_if_1_34! { enabled.push("v1_34"); }
    k8s_openapi::k8s_if_1_35! { enabled.push("v1_35"); }
    k8s_openapi::k8s_if_1_36! { enabled.push("v1_36"); }
    k8s_openapi::k8s_if_1_37! { enabled.push("v1_37"); }
    match enabled.as_slice() {
        [module] => Ok(module),
        _ => bail!("cannot tell which k8s-openapi version is enabled: {enabled:?}"),
    }
}

pub fn locate() -> anyhow::Result<CrateSources> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .output()
        .context("running cargo metadata")?;
    if !output.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("parsing cargo metadata output")?;
    let (protobuf_src, protobuf_version) = package_src(&metadata, "k8s-pb")?;
    let (openapi_src, openapi_version) = package_src(&metadata, "k8s-openapi")?;
    let openapi_module = enabled_openapi_module()?;
    Ok(CrateSources {
        protobuf_src,
        protobuf_version,
        openapi_src: openapi_src.join(openapi_module),
        openapi_version,
        openapi_module,
    })
}

fn package_src(metadata: &serde_json::Value, name: &str) -> anyhow::Result<(PathBuf, String)> {
    let packages = metadata["packages"]
        .as_array()
        .context("cargo metadata has no packages")?;
    let mut found = packages
        .iter()
        .filter(|package| package["name"] == name)
        .collect::<Vec<_>>();
    if found.len() != 1 {
        bail!(
            "expected exactly one {name} package in cargo metadata, found {}",
            found.len()
        );
    }
    let package = found.remove(0);
    let manifest = package["manifest_path"]
        .as_str()
        .context("package without manifest_path")?;
    let version = package["version"]
        .as_str()
        .context("package without version")?;
    let dir = PathBuf::from(manifest)
        .parent()
        .context("manifest path without parent")?
        .join("src");
    Ok((dir, version.to_owned()))
}
