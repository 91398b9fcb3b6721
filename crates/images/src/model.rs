//! The `image.ronghe.io/v1` Image kind's model, with no I/O: its spec and status, who may
//! see an image (Glance's visibility rules), and which images a container image reference
//! (`busybox`, `busybox:latest`, `docker.io/library/busybox`) names. The API server
//! declares the kind with these types; the Glance face and the agents' image caches apply
//! the same rules.
//!
//! An Image lives in its owner project's namespace. Its object name is its Glance id (a
//! UUID, the client's or generated), `spec.name` its Glance name (free text, not unique).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const GROUP: &str = "image.ronghe.io";
pub const VERSION: &str = "v1";
pub const API_VERSION: &str = "image.ronghe.io/v1";
pub const KIND: &str = "Image";
pub const PLURAL: &str = "images";

/// Glance's disk formats.
pub const DISK_FORMATS: &[&str] = &[
    "ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop",
];

/// Glance's container formats (`docker` holds container images: an OCI image layout or a
/// plain root filesystem tarball).
pub const CONTAINER_FORMATS: &[&str] = &[
    "ami",
    "ari",
    "aki",
    "bare",
    "ovf",
    "ova",
    "docker",
    "compressed",
];

/// Glance's image statuses.
pub const STATUSES: &[&str] = &[
    "queued",
    "saving",
    "uploading",
    "importing",
    "active",
    "deactivated",
    "killed",
    "deleted",
    "pending_delete",
];

pub const STATUS_QUEUED: &str = "queued";
pub const STATUS_SAVING: &str = "saving";
pub const STATUS_ACTIVE: &str = "active";

/// The properties naming a VM image's kernel and ramdisk images, and its kernel command
/// line (Glance's and Nova's names).
pub const KERNEL_ID: &str = "kernel_id";
pub const RAMDISK_ID: &str = "ramdisk_id";
pub const OS_COMMAND_LINE: &str = "os_command_line";

/// Glance's limit on names, tags, property keys and values.
pub const MAX_TEXT: usize = 255;

/// Who may see an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Visibility {
    /// Every project.
    Public,
    /// Every project that asks for it (not listed by default).
    Community,
    /// The owner and the member projects.
    Shared,
    /// The owner.
    Private,
}

impl Visibility {
    pub const NAMES: &'static [&'static str] = &["public", "community", "shared", "private"];

    pub fn parse(name: &str) -> Option<Visibility> {
        match name {
            "public" => Some(Visibility::Public),
            "community" => Some(Visibility::Community),
            "shared" => Some(Visibility::Shared),
            "private" => Some(Visibility::Private),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Community => "community",
            Visibility::Shared => "shared",
            Visibility::Private => "private",
        }
    }
}

/// What a member project's stake in a shared image is.
pub const MEMBER_STATUSES: &[&str] = &["pending", "accepted", "rejected"];

/// A project a shared image is shared with.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageMember {
    /// The member project (its namespace's name).
    pub project: String,
    /// `pending` until the member accepts or rejects it.
    #[serde(default = "pending")]
    pub status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub created_at: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub updated_at: String,
}

fn pending() -> String {
    "pending".into()
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageSpec {
    /// The Glance name.
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_format: Option<String>,
    /// `public`, `community`, `shared` (Glance's default) or `private`.
    #[serde(default = "shared")]
    pub visibility: String,
    /// A protected image cannot be deleted.
    #[serde(default)]
    pub protected: bool,
    /// Left out of listings (`os_hidden`).
    #[serde(default)]
    pub hidden: bool,
    /// GiB.
    #[serde(default)]
    pub min_disk: i64,
    /// MiB.
    #[serde(default)]
    pub min_ram: i64,
    /// Glance's additional properties (`kernel_id`, `ramdisk_id`, `os_command_line`,
    /// `hw_*`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// The projects a shared image is shared with.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<ImageMember>,
    /// What the uploaded data must hash to, by algorithm (`md5`, `sha256`, `sha512`): an
    /// upload that does not is refused and nothing is stored.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub expected_hashes: BTreeMap<String, String>,
}

fn shared() -> String {
    "shared".into()
}

impl Default for ImageSpec {
    fn default() -> Self {
        ImageSpec {
            name: String::new(),
            disk_format: None,
            container_format: None,
            visibility: shared(),
            protected: false,
            hidden: false,
            min_disk: 0,
            min_ram: 0,
            properties: BTreeMap::new(),
            tags: Vec::new(),
            members: Vec::new(),
            expected_hashes: BTreeMap::new(),
        }
    }
}

impl ImageSpec {
    /// The visibility, with anything unknown read as the narrowest.
    pub fn visibility(&self) -> Visibility {
        Visibility::parse(&self.visibility).unwrap_or(Visibility::Private)
    }

    pub fn member(&self, project: &str) -> Option<&ImageMember> {
        self.members.iter().find(|m| m.project == project)
    }

    pub fn property(&self, key: &str) -> Option<&str> {
        self.properties
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageStatus {
    /// Glance's status: `queued` until data is uploaded, `saving` while it is, `active`.
    #[serde(default)]
    pub status: String,
    /// Bytes of data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_size: Option<u64>,
    /// md5 of the data, hex (Glance's `checksum`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_hash_algo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_hash_value: Option<String>,
    /// The data's blob: `sha256:<hex>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// When the image last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

/// Whether `project` may see (get, download, boot) an image owned by `owner`. `None` is
/// a caller with no project; cloud admins see everything and are not asked about here.
pub fn can_see(owner: &str, spec: &ImageSpec, project: Option<&str>) -> bool {
    match spec.visibility() {
        Visibility::Public | Visibility::Community => true,
        Visibility::Private => project == Some(owner),
        Visibility::Shared => {
            project == Some(owner) || project.is_some_and(|p| spec.member(p).is_some())
        }
    }
}

/// Whether an image shows in `project`'s default listing: public ones, its own, and
/// shared ones it accepted (Glance lists community images only when asked, and shared
/// ones pending or rejected only when filtered by member status).
pub fn listed_by_default(owner: &str, spec: &ImageSpec, project: Option<&str>) -> bool {
    if project == Some(owner) {
        return true;
    }
    match spec.visibility() {
        Visibility::Public => true,
        Visibility::Community | Visibility::Private => false,
        Visibility::Shared => project
            .and_then(|p| spec.member(p))
            .is_some_and(|m| m.status == "accepted"),
    }
}

/// What a container image reference names: the Glance names it may match, most exact
/// first, and a digest the image must have (`name@sha256:...`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    pub names: Vec<String>,
    pub digest: Option<String>,
}

/// Docker Hub's registry names and its namespace of official images.
const DEFAULT_REGISTRIES: &[&str] = &["docker.io", "index.docker.io", "registry-1.docker.io"];
const OFFICIAL_NAMESPACE: &str = "library";

/// Reads a reference as Docker would, with Docker Hub's defaults (registry `docker.io`,
/// namespace `library`, tag `latest`) dropped: `docker.io/library/busybox:latest` names
/// the images called `docker.io/library/busybox:latest`, `busybox:latest` or `busybox`;
/// `busybox:1.36` those called `busybox:1.36`; `quay.io/x/y` only `quay.io/x/y`.
pub fn parse_reference(reference: &str) -> Reference {
    let reference = reference.trim();
    let (rest, digest) = match reference.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest.to_owned())),
        None => (reference, None),
    };
    // A tag is after the last ':' that comes after the last '/' (a registry may have a
    // port).
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (repository, tag) = match rest[last_slash..].rfind(':') {
        Some(colon) => (
            &rest[..last_slash + colon],
            Some(&rest[last_slash + colon + 1..]),
        ),
        None => (rest, None),
    };
    let mut short = repository;
    for registry in DEFAULT_REGISTRIES {
        if let Some(stripped) = short.strip_prefix(&format!("{registry}/")) {
            short = stripped;
            break;
        }
    }
    if let Some(stripped) = short.strip_prefix(&format!("{OFFICIAL_NAMESPACE}/")) {
        short = stripped;
    }
    let mut names = vec![rest.to_owned()];
    let mut push = |name: String| {
        if !name.is_empty() && !names.contains(&name) {
            names.push(name);
        }
    };
    match tag {
        Some(tag) => {
            push(format!("{short}:{tag}"));
            if tag == "latest" {
                push(short.to_owned());
            }
        }
        None => {
            push(short.to_owned());
            if digest.is_none() {
                push(format!("{short}:latest"));
            }
        }
    }
    if rest.is_empty() {
        names.clear();
    }
    Reference { names, digest }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(visibility: &str, members: &[(&str, &str)]) -> ImageSpec {
        ImageSpec {
            visibility: visibility.into(),
            members: members
                .iter()
                .map(|(project, status)| ImageMember {
                    project: (*project).into(),
                    status: (*status).into(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn visibility_follows_glance() {
        let public = spec("public", &[]);
        let private = spec("private", &[]);
        let community = spec("community", &[]);
        let shared = spec("shared", &[("b", "pending"), ("c", "accepted")]);
        for image in [&public, &private, &community, &shared] {
            assert!(can_see("a", image, Some("a")));
            assert!(listed_by_default("a", image, Some("a")));
        }
        assert!(can_see("a", &public, Some("z")) && listed_by_default("a", &public, Some("z")));
        assert!(!can_see("a", &private, Some("z")));
        assert!(can_see("a", &community, Some("z")));
        assert!(!listed_by_default("a", &community, Some("z")));
        assert!(can_see("a", &shared, Some("b")) && !listed_by_default("a", &shared, Some("b")));
        assert!(can_see("a", &shared, Some("c")) && listed_by_default("a", &shared, Some("c")));
        assert!(!can_see("a", &shared, Some("z")));
        assert!(!can_see("a", &private, None));
        assert!(can_see("a", &public, None));
        // An unknown visibility is read as private.
        assert!(!can_see("a", &spec("bogus", &[]), Some("z")));
    }

    #[test]
    fn references_drop_docker_hub_defaults() {
        let names = |r: &str| parse_reference(r).names;
        assert_eq!(names("busybox"), ["busybox", "busybox:latest"]);
        assert_eq!(names("busybox:latest"), ["busybox:latest", "busybox"]);
        assert_eq!(
            names("docker.io/library/busybox"),
            ["docker.io/library/busybox", "busybox", "busybox:latest"]
        );
        assert_eq!(
            names("docker.io/library/busybox:latest"),
            [
                "docker.io/library/busybox:latest",
                "busybox:latest",
                "busybox"
            ]
        );
        assert_eq!(names("busybox:1.36"), ["busybox:1.36"]);
        assert_eq!(
            names("registry.local:5000/team/app:v2"),
            ["registry.local:5000/team/app:v2"]
        );
        assert_eq!(names("quay.io/x/y"), ["quay.io/x/y", "quay.io/x/y:latest"]);
        let pinned = parse_reference("busybox@sha256:abc");
        assert_eq!(pinned.names, ["busybox"]);
        assert_eq!(pinned.digest.as_deref(), Some("sha256:abc"));
        assert!(parse_reference("  ").names.is_empty());
        // An image id is a name like any other here; callers match ids first.
        assert_eq!(
            names("6c9f6e3e-1b1a-4c3e-9a4b-0e1f2a3b4c5d")[0],
            "6c9f6e3e-1b1a-4c3e-9a4b-0e1f2a3b4c5d"
        );
    }

    #[test]
    fn spec_defaults_to_shared_and_round_trips() {
        let spec: ImageSpec = serde_json::from_value(serde_json::json!({"name": "x"})).unwrap();
        assert_eq!(spec.visibility, "shared");
        let value = serde_json::to_value(&spec).unwrap();
        assert_eq!(value["visibility"], "shared");
        assert!(value.get("properties").is_none());
    }
}
