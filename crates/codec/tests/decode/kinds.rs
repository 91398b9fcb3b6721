//! Kinds beyond the kubectl generators, encoded from k8s-pb typed messages the way any Go
//! client could send them, decoded, and read back through the k8s-openapi types: Pod (with
//! inline volume sources, IntOrString probes, quantities, pointer zeros and times), Node,
//! Endpoints, Event, ReplicaSet, StatefulSet, DaemonSet, Lease, Job and CronJob.

use std::collections::BTreeMap;

use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::batch::v1 as batch;
use k8s_pb::api::coordination::v1 as coordination;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, MicroTime, ObjectMeta, OwnerReference, Time,
};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::json;

use crate::kubectl_commands::{go_container, go_pod_spec};
use crate::support::{decode, decode_as, envelope, labels, some};

const NOV_22_2024: i64 = 1_732_238_400;

fn meta(name: &str) -> Option<ObjectMeta> {
    Some(ObjectMeta {
        name: some(name),
        namespace: some("default"),
        ..ObjectMeta::default()
    })
}

fn time(seconds: i64) -> Option<Time> {
    Some(Time {
        seconds: Some(seconds),
        nanos: Some(0),
    })
}

fn quantities(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    pairs
        .iter()
        .map(|(key, value)| {
            (
                (*key).to_owned(),
                Quantity {
                    string: some(value),
                },
            )
        })
        .collect()
}

fn local_reference(name: &str) -> Option<core::LocalObjectReference> {
    Some(core::LocalObjectReference { name: some(name) })
}

fn rich_pod() -> core::Pod {
    let mut container = go_container("app", "registry.example/app:1");
    container.command = vec!["/app".to_owned(), "--serve".to_owned()];
    container.env = vec![
        core::EnvVar {
            name: some("PLAIN"),
            value: some("1"),
            value_from: None,
        },
        core::EnvVar {
            name: some("FROM_SECRET"),
            value: some(""),
            value_from: Some(core::EnvVarSource {
                secret_key_ref: Some(core::SecretKeySelector {
                    local_object_reference: local_reference("creds"),
                    key: some("token"),
                    optional: None,
                }),
                ..core::EnvVarSource::default()
            }),
        },
    ];
    container.resources = Some(core::ResourceRequirements {
        limits: quantities(&[("cpu", "500m"), ("memory", "128Mi")]),
        requests: quantities(&[("cpu", "250m")]),
        claims: Vec::new(),
    });
    container.liveness_probe = Some(core::Probe {
        handler: Some(core::ProbeHandler {
            http_get: Some(core::HttpGetAction {
                path: some("/healthz"),
                port: Some(IntOrString {
                    r#type: Some(1),
                    int_val: Some(0),
                    str_val: some("http"),
                }),
                host: some(""),
                scheme: some("HTTP"),
                http_headers: Vec::new(),
            }),
            ..core::ProbeHandler::default()
        }),
        initial_delay_seconds: Some(5),
        timeout_seconds: Some(0),
        period_seconds: Some(0),
        success_threshold: Some(0),
        failure_threshold: Some(0),
        termination_grace_period_seconds: None,
    });
    container.security_context = Some(core::SecurityContext {
        run_as_user: Some(0),
        allow_privilege_escalation: Some(false),
        capabilities: Some(core::Capabilities {
            add: Vec::new(),
            drop: vec!["ALL".to_owned()],
        }),
        ..core::SecurityContext::default()
    });
    container.volume_mounts = vec![core::VolumeMount {
        name: some("config"),
        read_only: Some(true),
        mount_path: some("/etc/app"),
        sub_path: some(""),
        ..core::VolumeMount::default()
    }];
    let mut spec = go_pod_spec(vec![container]);
    spec.volumes = vec![
        core::Volume {
            name: some("config"),
            volume_source: Some(core::VolumeSource {
                config_map: Some(core::ConfigMapVolumeSource {
                    local_object_reference: local_reference("app-config"),
                    items: vec![core::KeyToPath {
                        key: some("app.yaml"),
                        path: some("app.yaml"),
                        mode: Some(0o400),
                    }],
                    default_mode: Some(0o644),
                    optional: Some(false),
                }),
                ..core::VolumeSource::default()
            }),
        },
        core::Volume {
            name: some("scratch"),
            volume_source: Some(core::VolumeSource {
                empty_dir: Some(core::EmptyDirVolumeSource {
                    medium: some(""),
                    size_limit: Some(Quantity {
                        string: some("1Gi"),
                    }),
                }),
                ..core::VolumeSource::default()
            }),
        },
    ];
    spec.termination_grace_period_seconds = Some(0);
    spec.automount_service_account_token = Some(false);
    spec.node_selector = labels(&[("kubernetes.io/os", "linux")]);
    spec.tolerations = vec![core::Toleration {
        key: some("node.kubernetes.io/unreachable"),
        operator: some("Exists"),
        value: some(""),
        effect: some("NoExecute"),
        toleration_seconds: Some(300),
    }];
    core::Pod {
        metadata: Some(ObjectMeta {
            name: some("app-0"),
            namespace: some("default"),
            uid: some("3f1d"),
            generation: Some(0),
            creation_timestamp: time(NOV_22_2024),
            labels: labels(&[("app", "app")]),
            annotations: labels(&[("note", "")]),
            owner_references: vec![OwnerReference {
                api_version: some("apps/v1"),
                kind: some("ReplicaSet"),
                name: some("app-5d"),
                uid: some("9a2c"),
                controller: Some(true),
                block_owner_deletion: Some(false),
            }],
            ..ObjectMeta::default()
        }),
        spec: Some(spec),
        status: Some(core::PodStatus {
            phase: some("Running"),
            conditions: vec![core::PodCondition {
                r#type: some("Ready"),
                status: some("True"),
                last_probe_time: Some(Time::default()),
                last_transition_time: time(NOV_22_2024 + 60),
                ..core::PodCondition::default()
            }],
            pod_ip: some("10.0.0.5"),
            pod_ips: vec![core::PodIp {
                ip: some("10.0.0.5"),
            }],
            start_time: time(NOV_22_2024 + 1),
            container_statuses: vec![core::ContainerStatus {
                name: some("app"),
                state: Some(core::ContainerState {
                    running: Some(core::ContainerStateRunning {
                        started_at: time(NOV_22_2024 + 30),
                    }),
                    ..core::ContainerState::default()
                }),
                ready: Some(true),
                restart_count: Some(0),
                image: some("registry.example/app:1"),
                image_id: some(""),
                ..core::ContainerStatus::default()
            }],
            ..core::PodStatus::default()
        }),
    }
}

#[test]
fn pod_decodes_to_kubernetes_json() {
    let body = envelope("v1", "Pod", &rich_pod());
    assert_eq!(
        decode(&body),
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "app-0",
                "namespace": "default",
                "uid": "3f1d",
                "creationTimestamp": "2024-11-22T01:20:00Z",
                "labels": {"app": "app"},
                "annotations": {"note": ""},
                "ownerReferences": [{
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "app-5d",
                    "uid": "9a2c",
                    "controller": true,
                    "blockOwnerDeletion": false
                }]
            },
            "spec": {
                "volumes": [
                    {
                        "name": "config",
                        "configMap": {
                            "name": "app-config",
                            "items": [{"key": "app.yaml", "path": "app.yaml", "mode": 256}],
                            "defaultMode": 420,
                            "optional": false
                        }
                    },
                    {"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}}
                ],
                "containers": [{
                    "name": "app",
                    "image": "registry.example/app:1",
                    "command": ["/app", "--serve"],
                    "env": [
                        {"name": "PLAIN", "value": "1"},
                        {"name": "FROM_SECRET", "valueFrom": {
                            "secretKeyRef": {"name": "creds", "key": "token"}
                        }}
                    ],
                    "resources": {
                        "limits": {"cpu": "500m", "memory": "128Mi"},
                        "requests": {"cpu": "250m"}
                    },
                    "volumeMounts": [
                        {"name": "config", "readOnly": true, "mountPath": "/etc/app"}
                    ],
                    "livenessProbe": {
                        "httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"},
                        "initialDelaySeconds": 5
                    },
                    "securityContext": {
                        "capabilities": {"drop": ["ALL"]},
                        "runAsUser": 0,
                        "allowPrivilegeEscalation": false
                    }
                }],
                "terminationGracePeriodSeconds": 0,
                "nodeSelector": {"kubernetes.io/os": "linux"},
                "automountServiceAccountToken": false,
                "tolerations": [{
                    "key": "node.kubernetes.io/unreachable",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300
                }]
            },
            "status": {
                "phase": "Running",
                "conditions": [{
                    "type": "Ready",
                    "status": "True",
                    "lastTransitionTime": "2024-11-22T01:21:00Z"
                }],
                "podIP": "10.0.0.5",
                "startTime": "2024-11-22T01:20:01Z",
                "containerStatuses": [{
                    "name": "app",
                    "state": {"running": {"startedAt": "2024-11-22T01:20:30Z"}},
                    "ready": true,
                    "restartCount": 0,
                    "image": "registry.example/app:1",
                    "imageID": ""
                }],
                "podIPs": [{"ip": "10.0.0.5"}]
            }
        })
    );
}

#[test]
fn pod_fits_k8s_openapi() {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString as OpenapiIntOrString;
    let pod: k8s_openapi::api::core::v1::Pod = decode_as(&envelope("v1", "Pod", &rich_pod()));
    let spec = pod.spec.expect("spec");
    assert_eq!(spec.termination_grace_period_seconds, Some(0));
    let container = &spec.containers[0];
    let security = container
        .security_context
        .as_ref()
        .expect("securityContext");
    assert_eq!(security.run_as_user, Some(0));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    let probe = container.liveness_probe.as_ref().expect("probe");
    let http = probe.http_get.as_ref().expect("httpGet");
    assert_eq!(http.port, OpenapiIntOrString::String("http".to_owned()));
    assert_eq!(probe.period_seconds, None);
    let limits = container
        .resources
        .as_ref()
        .and_then(|resources| resources.limits.as_ref())
        .expect("limits");
    assert_eq!(limits["memory"].0, "128Mi");
    let volumes = spec.volumes.expect("volumes");
    assert_eq!(
        volumes[0].config_map.as_ref().map(|cm| cm.name.as_str()),
        Some("app-config")
    );
    let status = pod.status.expect("status");
    assert_eq!(
        status.start_time.expect("startTime").0.as_second(),
        NOV_22_2024 + 1
    );
    assert_eq!(
        pod.metadata
            .creation_timestamp
            .expect("created")
            .0
            .as_second(),
        NOV_22_2024
    );
}

#[test]
fn node_capacity_and_conditions() {
    let node = core::Node {
        metadata: Some(ObjectMeta {
            name: some("worker-1"),
            ..ObjectMeta::default()
        }),
        spec: Some(core::NodeSpec {
            pod_cidr: some("10.244.1.0/24"),
            unschedulable: Some(false),
            taints: vec![core::Taint {
                key: some("dedicated"),
                value: some("gpu"),
                effect: some("NoSchedule"),
                time_added: None,
            }],
            ..core::NodeSpec::default()
        }),
        status: Some(core::NodeStatus {
            capacity: quantities(&[("cpu", "4"), ("memory", "16Gi"), ("pods", "110")]),
            allocatable: quantities(&[("cpu", "3800m")]),
            conditions: vec![core::NodeCondition {
                r#type: some("Ready"),
                status: some("True"),
                last_heartbeat_time: time(NOV_22_2024),
                last_transition_time: time(NOV_22_2024),
                reason: some("KubeletReady"),
                message: some(""),
            }],
            addresses: vec![core::NodeAddress {
                r#type: some("InternalIP"),
                address: some("192.168.1.10"),
            }],
            ..core::NodeStatus::default()
        }),
    };
    let body = envelope("v1", "Node", &node);
    let decoded = decode(&body);
    assert_eq!(
        decoded["spec"],
        json!({
            "podCIDR": "10.244.1.0/24",
            "taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]
        })
    );
    assert_eq!(decoded["status"]["capacity"]["memory"], "16Gi");
    let node: k8s_openapi::api::core::v1::Node = decode_as(&body);
    let status = node.status.expect("status");
    assert_eq!(status.allocatable.expect("allocatable")["cpu"].0, "3800m");
    assert_eq!(
        status.conditions.expect("conditions")[0].reason.as_deref(),
        Some("KubeletReady")
    );
}

#[test]
fn endpoints() {
    let endpoints = core::Endpoints {
        metadata: meta("web"),
        subsets: vec![core::EndpointSubset {
            addresses: vec![core::EndpointAddress {
                ip: some("10.0.0.5"),
                hostname: some(""),
                node_name: some("worker-1"),
                target_ref: Some(core::ObjectReference {
                    kind: some("Pod"),
                    namespace: some("default"),
                    name: some("web-1"),
                    ..core::ObjectReference::default()
                }),
            }],
            not_ready_addresses: Vec::new(),
            ports: vec![core::EndpointPort {
                name: some("http"),
                port: Some(8080),
                protocol: some("TCP"),
                app_protocol: None,
            }],
        }],
    };
    let body = envelope("v1", "Endpoints", &endpoints);
    assert_eq!(
        decode(&body)["subsets"],
        json!([{
            "addresses": [{
                "ip": "10.0.0.5",
                "nodeName": "worker-1",
                "targetRef": {"kind": "Pod", "namespace": "default", "name": "web-1"}
            }],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
        }])
    );
    let decoded: k8s_openapi::api::core::v1::Endpoints = decode_as(&body);
    assert_eq!(
        decoded.subsets.expect("subsets")[0]
            .ports
            .as_ref()
            .expect("ports")[0]
            .port,
        8080
    );
}

#[test]
fn core_event_times() {
    let event = core::Event {
        metadata: meta("web.1"),
        involved_object: Some(core::ObjectReference {
            kind: some("Pod"),
            name: some("web"),
            ..core::ObjectReference::default()
        }),
        reason: some("Started"),
        message: some("Started container"),
        source: Some(core::EventSource {
            component: some("kubelet"),
            host: some(""),
        }),
        first_timestamp: time(NOV_22_2024),
        last_timestamp: time(NOV_22_2024),
        count: Some(1),
        r#type: some("Normal"),
        event_time: Some(MicroTime {
            seconds: Some(NOV_22_2024),
            nanos: Some(123_456_789),
        }),
        reporting_component: some("kubelet"),
        reporting_instance: some("worker-1"),
        ..core::Event::default()
    };
    let body = envelope("v1", "Event", &event);
    let decoded = decode(&body);
    assert_eq!(decoded["firstTimestamp"], "2024-11-22T01:20:00Z");
    assert_eq!(decoded["eventTime"], "2024-11-22T01:20:00.123456Z");
    assert_eq!(decoded["source"], json!({"component": "kubelet"}));
    let event: k8s_openapi::api::core::v1::Event = decode_as(&body);
    assert_eq!(event.count, Some(1));
    assert_eq!(
        event.event_time.expect("eventTime").0.subsec_microsecond(),
        123_456
    );
}

fn template(app: &str) -> Option<core::PodTemplateSpec> {
    Some(core::PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: labels(&[("app", app)]),
            ..ObjectMeta::default()
        }),
        spec: Some(core::PodSpec {
            containers: vec![core::Container {
                name: some(app),
                image: some("busybox"),
                ..core::Container::default()
            }],
            restart_policy: some(if app == "batch" { "Never" } else { "Always" }),
            ..core::PodSpec::default()
        }),
    })
}

fn selector(app: &str) -> Option<LabelSelector> {
    Some(LabelSelector {
        match_labels: labels(&[("app", app)]),
        ..LabelSelector::default()
    })
}

#[test]
fn replicaset_statefulset_daemonset() {
    let replicaset = apps::ReplicaSet {
        metadata: meta("rs"),
        spec: Some(apps::ReplicaSetSpec {
            replicas: Some(2),
            selector: selector("rs"),
            template: template("rs"),
            min_ready_seconds: Some(0),
        }),
        status: None,
    };
    let decoded: k8s_openapi::api::apps::v1::ReplicaSet =
        decode_as(&envelope("apps/v1", "ReplicaSet", &replicaset));
    let spec = decoded.spec.expect("spec");
    assert_eq!(spec.replicas, Some(2));
    assert_eq!(spec.min_ready_seconds, None);

    let statefulset = apps::StatefulSet {
        metadata: meta("db"),
        spec: Some(apps::StatefulSetSpec {
            replicas: Some(1),
            selector: selector("db"),
            template: template("db"),
            service_name: some("db"),
            volume_claim_templates: vec![core::PersistentVolumeClaim {
                metadata: Some(ObjectMeta {
                    name: some("data"),
                    ..ObjectMeta::default()
                }),
                spec: Some(core::PersistentVolumeClaimSpec {
                    access_modes: vec!["ReadWriteOnce".to_owned()],
                    resources: Some(core::VolumeResourceRequirements {
                        requests: quantities(&[("storage", "10Gi")]),
                        limits: BTreeMap::new(),
                    }),
                    // A pointer string: "" means "no storage class", unlike absent.
                    storage_class_name: some(""),
                    ..core::PersistentVolumeClaimSpec::default()
                }),
                status: None,
            }],
            update_strategy: Some(apps::StatefulSetUpdateStrategy {
                r#type: some("RollingUpdate"),
                rolling_update: Some(apps::RollingUpdateStatefulSetStrategy {
                    partition: Some(0),
                    max_unavailable: Some(IntOrString {
                        r#type: Some(1),
                        int_val: None,
                        str_val: some("25%"),
                    }),
                }),
            }),
            ..apps::StatefulSetSpec::default()
        }),
        status: None,
    };
    let body = envelope("apps/v1", "StatefulSet", &statefulset);
    let claim = &decode(&body)["spec"]["volumeClaimTemplates"][0]["spec"];
    assert_eq!(claim["storageClassName"], "");
    let decoded: k8s_openapi::api::apps::v1::StatefulSet = decode_as(&body);
    let spec = decoded.spec.expect("spec");
    assert_eq!(spec.service_name.as_deref(), Some("db"));
    let rolling = spec
        .update_strategy
        .and_then(|strategy| strategy.rolling_update)
        .expect("rollingUpdate");
    assert_eq!(rolling.partition, Some(0));
    assert_eq!(
        rolling.max_unavailable,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("25%".to_owned()))
    );

    let daemonset = apps::DaemonSet {
        metadata: meta("agent"),
        spec: Some(apps::DaemonSetSpec {
            selector: selector("agent"),
            template: template("agent"),
            revision_history_limit: Some(0),
            ..apps::DaemonSetSpec::default()
        }),
        status: None,
    };
    let decoded: k8s_openapi::api::apps::v1::DaemonSet =
        decode_as(&envelope("apps/v1", "DaemonSet", &daemonset));
    assert_eq!(decoded.spec.expect("spec").revision_history_limit, Some(0));
}

#[test]
fn lease_micro_times() {
    let lease = coordination::Lease {
        metadata: meta("controller"),
        spec: Some(coordination::LeaseSpec {
            holder_identity: some("pod-a"),
            lease_duration_seconds: Some(15),
            acquire_time: Some(MicroTime {
                seconds: Some(NOV_22_2024),
                nanos: Some(5_000),
            }),
            renew_time: Some(MicroTime {
                seconds: Some(NOV_22_2024 + 10),
                nanos: Some(0),
            }),
            lease_transitions: Some(0),
            ..coordination::LeaseSpec::default()
        }),
    };
    let body = envelope("coordination.k8s.io/v1", "Lease", &lease);
    assert_eq!(
        decode(&body)["spec"],
        json!({
            "holderIdentity": "pod-a",
            "leaseDurationSeconds": 15,
            "acquireTime": "2024-11-22T01:20:00.000005Z",
            "renewTime": "2024-11-22T01:20:10.000000Z",
            "leaseTransitions": 0
        })
    );
    let decoded: k8s_openapi::api::coordination::v1::Lease = decode_as(&body);
    assert_eq!(decoded.spec.expect("spec").lease_transitions, Some(0));
}

#[test]
fn job_and_cronjob() {
    let job_spec = batch::JobSpec {
        parallelism: Some(1),
        completions: Some(1),
        backoff_limit: Some(0),
        suspend: Some(false),
        template: template("batch"),
        ..batch::JobSpec::default()
    };
    let job = batch::Job {
        metadata: meta("once"),
        spec: Some(job_spec.clone()),
        status: None,
    };
    let decoded: k8s_openapi::api::batch::v1::Job = decode_as(&envelope("batch/v1", "Job", &job));
    let spec = decoded.spec.expect("spec");
    assert_eq!(spec.backoff_limit, Some(0));
    assert_eq!(spec.suspend, Some(false));

    let cronjob = batch::CronJob {
        metadata: meta("nightly"),
        spec: Some(batch::CronJobSpec {
            schedule: some("0 3 * * *"),
            time_zone: some("Etc/UTC"),
            concurrency_policy: some("Forbid"),
            suspend: Some(true),
            job_template: Some(batch::JobTemplateSpec {
                metadata: None,
                spec: Some(job_spec),
            }),
            successful_jobs_history_limit: Some(0),
            ..batch::CronJobSpec::default()
        }),
        status: Some(batch::CronJobStatus {
            last_schedule_time: time(NOV_22_2024),
            ..batch::CronJobStatus::default()
        }),
    };
    let body = envelope("batch/v1", "CronJob", &cronjob);
    assert_eq!(
        decode(&body)["status"],
        json!({"lastScheduleTime": "2024-11-22T01:20:00Z"})
    );
    let decoded: k8s_openapi::api::batch::v1::CronJob = decode_as(&body);
    let spec = decoded.spec.expect("spec");
    assert_eq!(spec.schedule, "0 3 * * *");
    assert_eq!(spec.successful_jobs_history_limit, Some(0));
    assert_eq!(spec.suspend, Some(true));
}
