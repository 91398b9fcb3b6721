//! The JSON documents of an OCI image layout (and Docker's v2 equivalents): the index
//! (`index.json`, and nested indexes for several platforms), the manifest and the image
//! config. Pure parsing; the caller reads the blobs.

use serde::Deserialize;

use super::UnpackError;
use crate::ImageConfig;

const INDEX_TYPES: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

#[derive(Debug, Deserialize)]
struct Index {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Clone, Debug, Deserialize)]
struct Platform {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Manifest {
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

/// What an index entry is: another index to descend into, or a manifest.
pub(crate) enum Chosen {
    Index(String),
    Manifest(String),
}

/// The OCI name of this machine's architecture.
fn this_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The entry of an index to follow: the one for linux on this architecture, else the only
/// one (an image built for one platform often names none).
pub(crate) fn choose(index_json: &[u8]) -> Result<Chosen, UnpackError> {
    let index: Index = serde_json::from_slice(index_json)
        .map_err(|error| UnpackError::Layout(format!("the image index is not valid: {error}")))?;
    let for_us = index.manifests.iter().find(|m| {
        m.platform
            .as_ref()
            .is_some_and(|p| p.os == "linux" && p.architecture == this_architecture())
    });
    let chosen = match (for_us, index.manifests.as_slice()) {
        (Some(chosen), _) => chosen,
        (None, [only]) => only,
        (None, []) => return Err(UnpackError::Layout("the image index is empty".into())),
        (None, _) => {
            return Err(UnpackError::Layout(format!(
                "the image index has no manifest for linux/{}",
                this_architecture()
            )));
        }
    };
    Ok(if INDEX_TYPES.contains(&chosen.media_type.as_str()) {
        Chosen::Index(chosen.digest.clone())
    } else {
        Chosen::Manifest(chosen.digest.clone())
    })
}

pub(crate) fn manifest(json: &[u8]) -> Result<Manifest, UnpackError> {
    serde_json::from_slice(json)
        .map_err(|error| UnpackError::Layout(format!("the image manifest is not valid: {error}")))
}

#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    config: Option<RunConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RunConfig {
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    user: Option<String>,
}

/// The defaults an image config gives a container.
pub(crate) fn image_config(json: &[u8]) -> Result<ImageConfig, UnpackError> {
    let file: ConfigFile = serde_json::from_slice(json)
        .map_err(|error| UnpackError::Layout(format!("the image config is not valid: {error}")))?;
    let run = file.config.unwrap_or_default();
    Ok(ImageConfig {
        entrypoint: run.entrypoint.unwrap_or_default(),
        cmd: run.cmd.unwrap_or_default(),
        env: run.env.unwrap_or_default(),
        working_dir: run.working_dir.filter(|d| !d.is_empty()),
        user: run.user.filter(|u| !u.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn picks_this_platform_from_an_index() {
        let index = json!({"manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:arm",
             "platform": {"architecture": "arm64", "os": "linux"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:amd",
             "platform": {"architecture": "amd64", "os": "linux"}},
        ]});
        let Chosen::Manifest(digest) = choose(index.to_string().as_bytes()).unwrap() else {
            panic!("a manifest")
        };
        let expected = if this_architecture() == "arm64" {
            "sha256:arm"
        } else {
            "sha256:amd"
        };
        assert_eq!(digest, expected);
        let nested = json!({"manifests": [{"mediaType": INDEX_TYPES[0], "digest": "sha256:i"}]});
        assert!(matches!(
            choose(nested.to_string().as_bytes()).unwrap(),
            Chosen::Index(d) if d == "sha256:i"
        ));
        assert!(choose(b"{\"manifests\": []}").is_err());
    }

    #[test]
    fn config_gives_the_container_defaults() {
        let config = json!({"architecture": "amd64", "config": {
            "Entrypoint": ["/bin/app"], "Cmd": ["--serve"], "Env": ["PATH=/bin"],
            "WorkingDir": "/srv", "User": ""}});
        let config = image_config(config.to_string().as_bytes()).unwrap();
        assert_eq!(config.entrypoint, ["/bin/app"]);
        assert_eq!(config.cmd, ["--serve"]);
        assert_eq!(config.env, ["PATH=/bin"]);
        assert_eq!(config.working_dir.as_deref(), Some("/srv"));
        assert_eq!(config.user, None);
        assert_eq!(image_config(b"{}").unwrap(), ImageConfig::default());
    }
}
