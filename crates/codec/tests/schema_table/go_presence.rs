//! What neither k8s-pb nor k8s-openapi records: whether an optional scalar field is a Go pointer.
//!
//! client-go writes every non-pointer scalar to protobuf even when it is zero, and a pointer
//! scalar only when it is set; Go's JSON then omits the zero non-pointer ones (`omitempty`). The
//! two forms look the same on the wire, so the table needs this knowledge from elsewhere:
//!
//! * An optional int or bool present on the wire is kept even when zero, because for a pointer
//!   (`replicas`, `runAsUser`, `allowPrivilegeEscalation`) zero is a real choice. The fields below
//!   are Go values with `omitempty`, where zero means unset, so their zeros are dropped. A field
//!   missing from this list costs only an explicit `0`/`false` in the JSON, which Kubernetes
//!   reads the same as absent; a wrong entry would lose a user's choice, so only fields checked
//!   against the Go types of Kubernetes 1.33 are listed (meta, core, apps, batch, and the
//!   other kinds `kubectl create` makes).
//! * An optional string is dropped when empty, since nearly all are Go values. The fields below
//!   are Go pointers where an empty string means something different from unset.
//!
//! Entries are `<protobuf message>.<JSON field>`; the generator fails on one that matches no
//! field of the right type.

/// Go value (non-pointer) ints and bools with `omitempty`: a zero on the wire means unset.
pub const VALUE_SCALARS_OMITTED_WHEN_ZERO: &[&str] = &[
    "apimachinery.pkg.apis.meta.v1.Condition.observedGeneration",
    "apimachinery.pkg.apis.meta.v1.ObjectMeta.generation",
    "apimachinery.pkg.apis.meta.v1.Status.code",
    "apimachinery.pkg.apis.meta.v1.StatusDetails.retryAfterSeconds",
    "api.apps.v1.DaemonSetSpec.minReadySeconds",
    "api.apps.v1.DaemonSetStatus.numberAvailable",
    "api.apps.v1.DaemonSetStatus.numberUnavailable",
    "api.apps.v1.DaemonSetStatus.observedGeneration",
    "api.apps.v1.DaemonSetStatus.updatedNumberScheduled",
    "api.apps.v1.DeploymentSpec.minReadySeconds",
    "api.apps.v1.DeploymentSpec.paused",
    "api.apps.v1.DeploymentStatus.availableReplicas",
    "api.apps.v1.DeploymentStatus.observedGeneration",
    "api.apps.v1.DeploymentStatus.readyReplicas",
    "api.apps.v1.DeploymentStatus.replicas",
    "api.apps.v1.DeploymentStatus.unavailableReplicas",
    "api.apps.v1.DeploymentStatus.updatedReplicas",
    "api.apps.v1.ReplicaSetSpec.minReadySeconds",
    "api.apps.v1.ReplicaSetStatus.availableReplicas",
    "api.apps.v1.ReplicaSetStatus.fullyLabeledReplicas",
    "api.apps.v1.ReplicaSetStatus.observedGeneration",
    "api.apps.v1.ReplicaSetStatus.readyReplicas",
    "api.apps.v1.StatefulSetOrdinals.start",
    "api.apps.v1.StatefulSetSpec.minReadySeconds",
    "api.apps.v1.StatefulSetStatus.availableReplicas",
    "api.apps.v1.StatefulSetStatus.currentReplicas",
    "api.apps.v1.StatefulSetStatus.observedGeneration",
    "api.apps.v1.StatefulSetStatus.readyReplicas",
    "api.apps.v1.StatefulSetStatus.updatedReplicas",
    "api.batch.v1.JobStatus.active",
    "api.batch.v1.JobStatus.failed",
    "api.batch.v1.JobStatus.succeeded",
    "api.core.v1.AwsElasticBlockStoreVolumeSource.partition",
    "api.core.v1.AwsElasticBlockStoreVolumeSource.readOnly",
    "api.core.v1.AzureFilePersistentVolumeSource.readOnly",
    "api.core.v1.AzureFileVolumeSource.readOnly",
    "api.core.v1.CSIPersistentVolumeSource.readOnly",
    "api.core.v1.CephFsPersistentVolumeSource.readOnly",
    "api.core.v1.CephFsVolumeSource.readOnly",
    "api.core.v1.CinderPersistentVolumeSource.readOnly",
    "api.core.v1.CinderVolumeSource.readOnly",
    "api.core.v1.Container.stdin",
    "api.core.v1.Container.stdinOnce",
    "api.core.v1.Container.tty",
    "api.core.v1.ContainerImage.sizeBytes",
    "api.core.v1.ContainerPort.hostPort",
    "api.core.v1.ContainerStateTerminated.signal",
    "api.core.v1.EphemeralContainerCommon.stdin",
    "api.core.v1.EphemeralContainerCommon.stdinOnce",
    "api.core.v1.EphemeralContainerCommon.tty",
    "api.core.v1.Event.count",
    "api.core.v1.EventSeries.count",
    "api.core.v1.FcVolumeSource.readOnly",
    "api.core.v1.FlexPersistentVolumeSource.readOnly",
    "api.core.v1.FlexVolumeSource.readOnly",
    "api.core.v1.GcePersistentDiskVolumeSource.partition",
    "api.core.v1.GcePersistentDiskVolumeSource.readOnly",
    "api.core.v1.GlusterfsPersistentVolumeSource.readOnly",
    "api.core.v1.GlusterfsVolumeSource.readOnly",
    "api.core.v1.IscsiPersistentVolumeSource.chapAuthDiscovery",
    "api.core.v1.IscsiPersistentVolumeSource.chapAuthSession",
    "api.core.v1.IscsiPersistentVolumeSource.readOnly",
    "api.core.v1.IscsiVolumeSource.chapAuthDiscovery",
    "api.core.v1.IscsiVolumeSource.chapAuthSession",
    "api.core.v1.IscsiVolumeSource.readOnly",
    "api.core.v1.NfsVolumeSource.readOnly",
    "api.core.v1.NodeSpec.unschedulable",
    "api.core.v1.PersistentVolumeClaimVolumeSource.readOnly",
    "api.core.v1.PodCondition.observedGeneration",
    "api.core.v1.PodSpec.hostIPC",
    "api.core.v1.PodSpec.hostNetwork",
    "api.core.v1.PodSpec.hostPID",
    "api.core.v1.PodStatus.observedGeneration",
    "api.core.v1.PortworxVolumeSource.readOnly",
    "api.core.v1.Probe.failureThreshold",
    "api.core.v1.Probe.initialDelaySeconds",
    "api.core.v1.Probe.periodSeconds",
    "api.core.v1.Probe.successThreshold",
    "api.core.v1.Probe.timeoutSeconds",
    "api.core.v1.QuobyteVolumeSource.readOnly",
    "api.core.v1.RbdPersistentVolumeSource.readOnly",
    "api.core.v1.RbdVolumeSource.readOnly",
    "api.core.v1.ReplicationControllerSpec.minReadySeconds",
    "api.core.v1.ReplicationControllerStatus.availableReplicas",
    "api.core.v1.ReplicationControllerStatus.fullyLabeledReplicas",
    "api.core.v1.ReplicationControllerStatus.observedGeneration",
    "api.core.v1.ReplicationControllerStatus.readyReplicas",
    "api.core.v1.ScaleIoPersistentVolumeSource.readOnly",
    "api.core.v1.ScaleIoPersistentVolumeSource.sslEnabled",
    "api.core.v1.ScaleIoVolumeSource.readOnly",
    "api.core.v1.ScaleIoVolumeSource.sslEnabled",
    "api.core.v1.ServicePort.nodePort",
    "api.core.v1.ServiceSpec.healthCheckNodePort",
    "api.core.v1.ServiceSpec.publishNotReadyAddresses",
    "api.core.v1.StorageOsPersistentVolumeSource.readOnly",
    "api.core.v1.StorageOsVolumeSource.readOnly",
    "api.core.v1.VolumeMount.readOnly",
    "api.core.v1.VolumeMountStatus.readOnly",
    "api.policy.v1.PodDisruptionBudgetStatus.observedGeneration",
    "api.scheduling.v1.PriorityClass.globalDefault",
];

/// Go `*string` fields where `""` is a choice: no storage class rather than the default one, a
/// released lease, a resolver option written without a value.
pub const POINTER_STRINGS_KEPT_WHEN_EMPTY: &[&str] = &[
    "api.coordination.v1.LeaseSpec.holderIdentity",
    "api.core.v1.PersistentVolumeClaimSpec.storageClassName",
    "api.core.v1.PersistentVolumeClaimSpec.volumeAttributesClassName",
    "api.core.v1.PersistentVolumeSpec.volumeAttributesClassName",
    "api.core.v1.PodDnsConfigOption.value",
];
