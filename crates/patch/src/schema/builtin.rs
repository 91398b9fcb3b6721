//! The patch metadata of the built-in kinds, as data: one static `TypeSchema` per Go type,
//! transcribed from the `patchStrategy`/`patchMergeKey` and `listType`/`listMapKey` tags in
//! k8s.io/api (v1.33). Only fields that need metadata, or lead to one that does, are listed.

use super::{FieldSchema, ListType, PatchStrategy, TypeSchema};

// --- meta/v1 -------------------------------------------------------------------------------

static OBJECT_META: TypeSchema = TypeSchema {
    name: "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
    fields: &[
        FieldSchema::set("finalizers"),
        FieldSchema::keyed_list("ownerReferences", "uid", &["uid"], None),
        FieldSchema::atomic("managedFields"),
    ],
};

/// Every kind: only `metadata` has metadata.
static METADATA_ONLY: TypeSchema = TypeSchema {
    name: "io.k8s.apimachinery.pkg.apis.meta.v1.PartialObjectMetadata",
    fields: &[FieldSchema::object("metadata", &OBJECT_META)],
};

// --- core/v1: pods -------------------------------------------------------------------------

static RESOURCE_REQUIREMENTS: TypeSchema = TypeSchema {
    name: "io.k8s.api.core.v1.ResourceRequirements",
    fields: &[FieldSchema {
        // No patch strategy (strategic merge patch replaces it), but a list-map for apply.
        name: "claims",
        child: None,
        patch_strategy: PatchStrategy::Replace,
        list_type: ListType::Map(&["name"]),
    }],
};

/// `Container` and `EphemeralContainer` share these list fields.
static CONTAINER: TypeSchema = TypeSchema {
    name: "io.k8s.api.core.v1.Container",
    fields: &[
        FieldSchema::keyed_list(
            "ports",
            "containerPort",
            &["containerPort", "protocol"],
            None,
        ),
        FieldSchema::keyed_list("env", "name", &["name"], None),
        FieldSchema::keyed_list("volumeMounts", "mountPath", &["mountPath"], None),
        FieldSchema::keyed_list("volumeDevices", "devicePath", &["devicePath"], None),
        FieldSchema::atomic("envFrom"),
        FieldSchema::atomic("resizePolicy"),
        FieldSchema::object("resources", &RESOURCE_REQUIREMENTS),
    ],
};

static POD_SPEC: TypeSchema = TypeSchema {
    name: "io.k8s.api.core.v1.PodSpec",
    fields: &[
        FieldSchema::keyed_list("containers", "name", &["name"], Some(&CONTAINER)),
        FieldSchema::keyed_list("initContainers", "name", &["name"], Some(&CONTAINER)),
        FieldSchema::keyed_list("ephemeralContainers", "name", &["name"], Some(&CONTAINER)),
        // patchStrategy "merge,retainKeys": items take `$retainKeys`, honoured wherever sent.
        FieldSchema::keyed_list("volumes", "name", &["name"], None),
        FieldSchema::keyed_list("imagePullSecrets", "name", &["name"], None),
        FieldSchema::keyed_list("hostAliases", "ip", &["ip"], None),
        FieldSchema::keyed_list(
            "topologySpreadConstraints",
            "topologyKey",
            &["topologyKey", "whenUnsatisfiable"],
            None,
        ),
        FieldSchema::keyed_list("schedulingGates", "name", &["name"], None),
        FieldSchema::keyed_list("resourceClaims", "name", &["name"], None),
        FieldSchema::atomic("tolerations"),
        FieldSchema::atomic("readinessGates"),
    ],
};

static POD_STATUS: TypeSchema = TypeSchema {
    name: "io.k8s.api.core.v1.PodStatus",
    fields: &[
        FieldSchema::keyed_list("conditions", "type", &["type"], None),
        FieldSchema::keyed_list("podIPs", "ip", &["ip"], None),
        FieldSchema {
            // Merged by `ip` in strategic merge patch, atomic for apply.
            name: "hostIPs",
            child: None,
            patch_strategy: PatchStrategy::MergeByKey("ip"),
            list_type: ListType::Atomic,
        },
        FieldSchema::keyed_list("resourceClaimStatuses", "name", &["name"], None),
        FieldSchema::atomic("containerStatuses"),
        FieldSchema::atomic("initContainerStatuses"),
        FieldSchema::atomic("ephemeralContainerStatuses"),
    ],
};

static POD: TypeSchema = TypeSchema {
    name: "io.k8s.api.core.v1.Pod",
    fields: &[
        FieldSchema::object("metadata", &OBJECT_META),
        FieldSchema::object("spec", &POD_SPEC),
        FieldSchema::object("status", &POD_STATUS),
    ],
};

static POD_TEMPLATE_SPEC: TypeSchema = TypeSchema {
    name: "io.k8s.api.core.v1.PodTemplateSpec",
    fields: &[
        FieldSchema::object("metadata", &OBJECT_META),
        FieldSchema::object("spec", &POD_SPEC),
    ],
};

static POD_TEMPLATE: TypeSchema = TypeSchema {
    name: "io.k8s.api.core.v1.PodTemplate",
    fields: &[
        FieldSchema::object("metadata", &OBJECT_META),
        FieldSchema::object("template", &POD_TEMPLATE_SPEC),
    ],
};

// --- core/v1: everything else --------------------------------------------------------------

static SERVICE_SPEC: TypeSchema = TypeSchema {
    name: "io.k8s.api.core.v1.ServiceSpec",
    fields: &[
        FieldSchema::keyed_list("ports", "port", &["port", "protocol"], None),
        FieldSchema::atomic("clusterIPs"),
        FieldSchema::atomic("externalIPs"),
        FieldSchema::atomic("ipFamilies"),
    ],
};

/// The status of Service and Namespace (and the other kinds whose status holds only
/// conditions merged by `type`).
static CONDITIONS_STATUS: TypeSchema = TypeSchema {
    name: "status with conditions merged by type",
    fields: &[FieldSchema::keyed_list(
        "conditions",
        "type",
        &["type"],
        None,
    )],
};

static SERVICE: TypeSchema = TypeSchema {
    name: "io.k8s.api.core.v1.Service",
    fields: &[
        FieldSchema::object("metadata", &OBJECT_META),
        FieldSchema::object("spec", &SERVICE_SPEC),
        FieldSchema::object("status", &CONDITIONS_STATUS),
    ],
};

static NAMESPACE: TypeSchema = TypeSchema {
    name: "io.k8s.api.core.v1.Namespace",
    fields: &[
        FieldSchema::object("metadata", &OBJECT_META),
        // `spec.finalizers` has no patch strategy: replaced.
        FieldSchema::object("status", &CONDITIONS_STATUS),
    ],
};

static NODE_SPEC: TypeSchema = TypeSchema {
    name: "io.k8s.api.core.v1.NodeSpec",
    fields: &[FieldSchema::set("podCIDRs"), FieldSchema::atomic("taints")],
};

static NODE_STATUS: TypeSchema = TypeSchema {
    name: "io.k8s.api.core.v1.NodeStatus",
    fields: &[
        FieldSchema::keyed_list("conditions", "type", &["type"], None),
        FieldSchema::keyed_list("addresses", "type", &["type"], None),
        FieldSchema::atomic("images"),
        FieldSchema::atomic("volumesAttached"),
        FieldSchema::atomic("volumesInUse"),
    ],
};

static NODE: TypeSchema = TypeSchema {
    name: "io.k8s.api.core.v1.Node",
    fields: &[
        FieldSchema::object("metadata", &OBJECT_META),
        FieldSchema::object("spec", &NODE_SPEC),
        FieldSchema::object("status", &NODE_STATUS),
    ],
};

static ENDPOINTS: TypeSchema = TypeSchema {
    name: "io.k8s.api.core.v1.Endpoints",
    fields: &[
        FieldSchema::object("metadata", &OBJECT_META),
        FieldSchema::atomic("subsets"),
    ],
};

static SERVICE_ACCOUNT: TypeSchema = TypeSchema {
    name: "io.k8s.api.core.v1.ServiceAccount",
    fields: &[
        FieldSchema::object("metadata", &OBJECT_META),
        FieldSchema::keyed_list("secrets", "name", &["name"], None),
        FieldSchema::atomic("imagePullSecrets"),
    ],
};

static PERSISTENT_VOLUME_CLAIM: TypeSchema = TypeSchema {
    name: "io.k8s.api.core.v1.PersistentVolumeClaim",
    fields: &[
        FieldSchema::object("metadata", &OBJECT_META),
        FieldSchema::object("status", &CONDITIONS_STATUS),
    ],
};

// --- apps/v1 -------------------------------------------------------------------------------

/// The spec of Deployment, ReplicaSet, DaemonSet and Job: only `template` needs metadata.
static WORKLOAD_SPEC: TypeSchema = TypeSchema {
    name: "spec with a pod template",
    fields: &[FieldSchema::object("template", &POD_TEMPLATE_SPEC)],
};

static STATEFUL_SET_SPEC: TypeSchema = TypeSchema {
    name: "io.k8s.api.apps.v1.StatefulSetSpec",
    fields: &[
        FieldSchema::object("template", &POD_TEMPLATE_SPEC),
        FieldSchema::atomic("volumeClaimTemplates"),
    ],
};

/// Deployment, ReplicaSet and DaemonSet.
static WORKLOAD: TypeSchema = TypeSchema {
    name: "workload with a pod template",
    fields: &[
        FieldSchema::object("metadata", &OBJECT_META),
        FieldSchema::object("spec", &WORKLOAD_SPEC),
        FieldSchema::object("status", &CONDITIONS_STATUS),
    ],
};

static STATEFUL_SET: TypeSchema = TypeSchema {
    name: "io.k8s.api.apps.v1.StatefulSet",
    fields: &[
        FieldSchema::object("metadata", &OBJECT_META),
        FieldSchema::object("spec", &STATEFUL_SET_SPEC),
        FieldSchema::object("status", &CONDITIONS_STATUS),
    ],
};

// --- batch/v1 ------------------------------------------------------------------------------

static JOB_STATUS: TypeSchema = TypeSchema {
    name: "io.k8s.api.batch.v1.JobStatus",
    fields: &[FieldSchema {
        // Merged by `type` in strategic merge patch, atomic for apply.
        name: "conditions",
        child: None,
        patch_strategy: PatchStrategy::MergeByKey("type"),
        list_type: ListType::Atomic,
    }],
};

static JOB: TypeSchema = TypeSchema {
    name: "io.k8s.api.batch.v1.Job",
    fields: &[
        FieldSchema::object("metadata", &OBJECT_META),
        FieldSchema::object("spec", &WORKLOAD_SPEC),
        FieldSchema::object("status", &JOB_STATUS),
    ],
};

static JOB_TEMPLATE_SPEC: TypeSchema = TypeSchema {
    name: "io.k8s.api.batch.v1.JobTemplateSpec",
    fields: &[
        FieldSchema::object("metadata", &OBJECT_META),
        FieldSchema::object("spec", &WORKLOAD_SPEC),
    ],
};

static CRON_JOB_SPEC: TypeSchema = TypeSchema {
    name: "io.k8s.api.batch.v1.CronJobSpec",
    fields: &[FieldSchema::object("jobTemplate", &JOB_TEMPLATE_SPEC)],
};

static CRON_JOB: TypeSchema = TypeSchema {
    name: "io.k8s.api.batch.v1.CronJob",
    fields: &[
        FieldSchema::object("metadata", &OBJECT_META),
        FieldSchema::object("spec", &CRON_JOB_SPEC),
    ],
};

// --- the kinds -----------------------------------------------------------------------------

/// `(apiVersion, kind, schema)` for every built-in kind that takes strategic merge patch.
static KINDS: &[(&str, &str, &TypeSchema)] = &[
    ("v1", "Pod", &POD),
    ("v1", "PodTemplate", &POD_TEMPLATE),
    ("v1", "Service", &SERVICE),
    ("v1", "Namespace", &NAMESPACE),
    ("v1", "ConfigMap", &METADATA_ONLY),
    ("v1", "Secret", &METADATA_ONLY),
    ("v1", "Node", &NODE),
    ("v1", "Event", &METADATA_ONLY),
    ("v1", "Endpoints", &ENDPOINTS),
    ("v1", "ServiceAccount", &SERVICE_ACCOUNT),
    ("v1", "PersistentVolumeClaim", &PERSISTENT_VOLUME_CLAIM),
    ("apps/v1", "Deployment", &WORKLOAD),
    ("apps/v1", "ReplicaSet", &WORKLOAD),
    ("apps/v1", "DaemonSet", &WORKLOAD),
    ("apps/v1", "StatefulSet", &STATEFUL_SET),
    ("batch/v1", "Job", &JOB),
    ("batch/v1", "CronJob", &CRON_JOB),
    ("coordination.k8s.io/v1", "Lease", &METADATA_ONLY),
    ("events.k8s.io/v1", "Event", &METADATA_ONLY),
    ("discovery.k8s.io/v1", "EndpointSlice", &METADATA_ONLY),
];

/// The patch schema of a built-in kind, or `None` when the kind is not built in (custom
/// kinds do not take strategic merge patch: the API server answers 415 for them).
pub fn builtin_schema(api_version: &str, kind: &str) -> Option<&'static TypeSchema> {
    KINDS
        .iter()
        .find(|(version, name, _)| *version == api_version && *name == kind)
        .map(|(_, _, schema)| *schema)
}

/// Every built-in kind with a schema, as `(apiVersion, kind)`.
pub fn builtin_kinds() -> impl Iterator<Item = (&'static str, &'static str)> {
    KINDS.iter().map(|(version, kind, _)| (*version, *kind))
}

/// The schema every kind shares: only `metadata` (finalizers as a set, ownerReferences by
/// `uid`). Meant for server-side apply on custom kinds, whose metadata is still ObjectMeta.
pub fn custom_resource_schema() -> &'static TypeSchema {
    &METADATA_ONLY
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_kinds_up_by_api_version_and_kind() {
        let deployment = builtin_schema("apps/v1", "Deployment").expect("deployment is built in");
        let template = deployment
            .field("spec")
            .and_then(|spec| spec.child)
            .and_then(|spec| spec.field("template"))
            .and_then(|template| template.child)
            .expect("the deployment schema reaches the pod template");
        let containers = template
            .field("spec")
            .and_then(|spec| spec.child)
            .and_then(|spec| spec.field("containers"))
            .expect("the pod template lists containers");
        assert_eq!(containers.patch_strategy, PatchStrategy::MergeByKey("name"));
        assert!(builtin_schema("v1", "Deployment").is_none());
        assert!(builtin_schema("compute.example.com/v1alpha1", "VirtualMachine").is_none());
    }

    #[test]
    fn every_kind_is_listed_once() {
        let kinds: Vec<_> = builtin_kinds().collect();
        let mut unique = kinds.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(kinds.len(), unique.len());
    }

    /// A keyed list's merge key must be one of its apply keys, and a set's items cannot have
    /// a schema; a typo in the table would otherwise go unnoticed.
    #[test]
    fn table_is_consistent() {
        fn check(schema: &TypeSchema, seen: &mut Vec<&'static str>) {
            if seen.contains(&schema.name) {
                return;
            }
            seen.push(schema.name);
            for field in schema.fields {
                if let (PatchStrategy::MergeByKey(key), ListType::Map(keys)) =
                    (field.patch_strategy, field.list_type)
                {
                    assert!(keys.contains(&key), "{}.{}", schema.name, field.name);
                }
                if field.patch_strategy == PatchStrategy::MergeSet {
                    assert!(field.child.is_none(), "{}.{}", schema.name, field.name);
                }
                if let Some(child) = field.child {
                    check(child, seen);
                }
            }
        }
        let mut seen = Vec::new();
        for (_, _, schema) in KINDS {
            check(schema, &mut seen);
        }
    }
}
