//! The bodies of the five main kubectl generators, built from k8s-pb typed messages the way
//! kubectl 1.32 builds them (every Go value field written, even when empty). Each must encode
//! to the very bytes kubectl sent (tests/fixtures) and decode to the expected JSON.

use k8s_pb::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStatus, DeploymentStrategy};
use k8s_pb::api::core::v1::{
    ConfigMap, Container, ContainerPort, LoadBalancerStatus, Namespace, NamespaceSpec,
    NamespaceStatus, PodSpec, PodTemplateSpec, ResourceRequirements, Secret, Service, ServicePort,
    ServiceSpec, ServiceStatus,
};
use k8s_pb::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::json;

use crate::support::{decode, envelope, fixture_body, go_object_meta, labels, some};

fn assert_same_as_kubectl(body: &[u8], fixture: &str) {
    assert_eq!(
        body,
        fixture_body(fixture).as_slice(),
        "{fixture}: typed message encodes differently from what kubectl sent"
    );
}

#[test]
fn create_namespace() {
    let namespace = Namespace {
        metadata: Some(go_object_meta("ns1", &[])),
        spec: Some(NamespaceSpec::default()),
        status: Some(NamespaceStatus {
            phase: some(""),
            ..NamespaceStatus::default()
        }),
    };
    let body = envelope("v1", "Namespace", &namespace);
    assert_same_as_kubectl(&body, "create_namespace");
    assert_eq!(
        decode(&body),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns1"},
               "spec": {}, "status": {}})
    );
}

#[test]
fn create_configmap() {
    let configmap = ConfigMap {
        metadata: Some(go_object_meta("cm1", &[])),
        data: labels(&[("a", "b"), ("c", "d")]),
        ..ConfigMap::default()
    };
    let body = envelope("v1", "ConfigMap", &configmap);
    assert_same_as_kubectl(&body, "create_configmap");
    assert_eq!(
        decode(&body),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm1"},
               "data": {"a": "b", "c": "d"}})
    );
}

#[test]
fn create_secret_generic() {
    let secret = Secret {
        metadata: Some(go_object_meta("s1", &[])),
        data: [("password".to_owned(), b"x".to_vec())].into(),
        r#type: some(""),
        ..Secret::default()
    };
    let body = envelope("v1", "Secret", &secret);
    assert_same_as_kubectl(&body, "create_secret_generic");
    assert_eq!(
        decode(&body),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s1"},
               "data": {"password": "eA=="}})
    );
}

/// A container as kubectl's generators build it: Go's zero values written out.
pub fn go_container(name: &str, image: &str) -> Container {
    Container {
        name: some(name),
        image: some(image),
        working_dir: some(""),
        resources: Some(ResourceRequirements::default()),
        termination_message_path: some(""),
        image_pull_policy: some(""),
        stdin: Some(false),
        stdin_once: Some(false),
        tty: Some(false),
        termination_message_policy: some(""),
        ..Container::default()
    }
}

/// A pod spec as kubectl's generators build it: Go's zero values written out.
pub fn go_pod_spec(containers: Vec<Container>) -> PodSpec {
    PodSpec {
        containers,
        restart_policy: some(""),
        dns_policy: some(""),
        service_account_name: some(""),
        service_account: some(""),
        node_name: some(""),
        host_network: Some(false),
        host_pid: Some(false),
        host_ipc: Some(false),
        hostname: some(""),
        subdomain: some(""),
        scheduler_name: some(""),
        priority_class_name: some(""),
        ..PodSpec::default()
    }
}

#[test]
fn create_deployment() {
    let app = [("app", "web")];
    let mut container = go_container("nginx", "nginx:1.27");
    container.ports = vec![ContainerPort {
        name: some(""),
        host_port: Some(0),
        container_port: Some(80),
        protocol: some(""),
        host_ip: some(""),
    }];
    let deployment = Deployment {
        metadata: Some(go_object_meta("web", &app)),
        spec: Some(DeploymentSpec {
            replicas: Some(3),
            selector: Some(LabelSelector {
                match_labels: labels(&app),
                ..LabelSelector::default()
            }),
            template: Some(PodTemplateSpec {
                metadata: Some(go_object_meta("", &app)),
                spec: Some(go_pod_spec(vec![container])),
            }),
            strategy: Some(DeploymentStrategy {
                r#type: some(""),
                rolling_update: None,
            }),
            min_ready_seconds: Some(0),
            paused: Some(false),
            ..DeploymentSpec::default()
        }),
        status: Some(DeploymentStatus {
            observed_generation: Some(0),
            replicas: Some(0),
            updated_replicas: Some(0),
            available_replicas: Some(0),
            unavailable_replicas: Some(0),
            ready_replicas: Some(0),
            ..DeploymentStatus::default()
        }),
    };
    let body = envelope("apps/v1", "Deployment", &deployment);
    assert_same_as_kubectl(&body, "create_deployment");
    assert_eq!(
        decode(&body),
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{
                        "name": "nginx",
                        "image": "nginx:1.27",
                        "ports": [{"containerPort": 80}],
                        "resources": {}
                    }]}
                },
                "strategy": {}
            },
            "status": {}
        })
    );
}

#[test]
fn create_service_clusterip() {
    let app = [("app", "web")];
    let service = Service {
        metadata: Some(go_object_meta("web", &app)),
        spec: Some(ServiceSpec {
            ports: vec![ServicePort {
                name: some("80-8080"),
                protocol: some("TCP"),
                port: Some(80),
                target_port: Some(IntOrString {
                    r#type: Some(0),
                    int_val: Some(8080),
                    str_val: some(""),
                }),
                node_port: Some(0),
                app_protocol: None,
            }],
            selector: labels(&app),
            cluster_ip: some(""),
            r#type: some("ClusterIP"),
            session_affinity: some(""),
            load_balancer_ip: some(""),
            external_name: some(""),
            external_traffic_policy: some(""),
            health_check_node_port: Some(0),
            publish_not_ready_addresses: Some(false),
            ..ServiceSpec::default()
        }),
        status: Some(ServiceStatus {
            load_balancer: Some(LoadBalancerStatus::default()),
            conditions: Vec::new(),
        }),
    };
    let body = envelope("v1", "Service", &service);
    assert_same_as_kubectl(&body, "create_service_clusterip");
    assert_eq!(
        decode(&body),
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "ports": [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080}],
                "selector": {"app": "web"},
                "type": "ClusterIP"
            },
            "status": {"loadBalancer": {}}
        })
    );
}
