//! Bodies captured from the real kubectl 1.32 (tests/fixtures/README.md): each must decode to
//! exactly the JSON kubectl itself prints for the same object, and fit the k8s-openapi type.

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::json;

use crate::support::{decode, decode_as, fixture_body, fixture_json};

const FIXTURES_WITH_DRY_RUN_JSON: &[&str] = &[
    "create_namespace",
    "create_configmap",
    "create_secret_generic",
    "create_deployment",
    "create_deployment_zero_replicas",
    "create_service_clusterip",
    "create_service_named_target_port",
    "create_job",
    "create_cronjob",
    "create_configmap_binary",
    "create_deployment_two_images",
    "create_service_nodeport",
    "create_service_loadbalancer",
    "create_service_externalname",
    "create_secret_docker_registry",
    "create_serviceaccount",
    "create_quota",
    "create_role",
    "create_rolebinding",
    "create_pdb",
    "create_priorityclass",
    "create_ingress",
];

#[test]
fn every_fixture_decodes_to_what_kubectl_prints_for_it() {
    for name in FIXTURES_WITH_DRY_RUN_JSON {
        let decoded = decode(&fixture_body(name));
        let expected = fixture_json(name);
        assert_eq!(
            decoded,
            expected,
            "{name}: decoded {}\nexpected {}",
            serde_json::to_string_pretty(&decoded).expect("serializable"),
            serde_json::to_string_pretty(&expected).expect("serializable")
        );
    }
}

/// Deserializes into the k8s-openapi type named by the object's apiVersion and kind.
fn fits_k8s_openapi(object: serde_json::Value) -> Result<(), serde_json::Error> {
    use k8s_openapi::api::{networking, policy, rbac, scheduling};
    fn check<T: serde::de::DeserializeOwned>(
        object: serde_json::Value,
    ) -> Result<(), serde_json::Error> {
        serde_json::from_value::<T>(object).map(drop)
    }
    let kind = (
        object["apiVersion"].as_str().unwrap_or_default().to_owned(),
        object["kind"].as_str().unwrap_or_default().to_owned(),
    );
    match (kind.0.as_str(), kind.1.as_str()) {
        ("v1", "Namespace") => check::<Namespace>(object),
        ("v1", "ConfigMap") => check::<ConfigMap>(object),
        ("v1", "Secret") => check::<Secret>(object),
        ("v1", "Service") => check::<Service>(object),
        ("v1", "ServiceAccount") => check::<k8s_openapi::api::core::v1::ServiceAccount>(object),
        ("v1", "ResourceQuota") => check::<k8s_openapi::api::core::v1::ResourceQuota>(object),
        ("apps/v1", "Deployment") => check::<Deployment>(object),
        ("batch/v1", "Job") => check::<Job>(object),
        ("batch/v1", "CronJob") => check::<CronJob>(object),
        ("rbac.authorization.k8s.io/v1", "Role") => check::<rbac::v1::Role>(object),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => check::<rbac::v1::RoleBinding>(object),
        ("policy/v1", "PodDisruptionBudget") => check::<policy::v1::PodDisruptionBudget>(object),
        ("scheduling.k8s.io/v1", "PriorityClass") => check::<scheduling::v1::PriorityClass>(object),
        ("networking.k8s.io/v1", "Ingress") => check::<networking::v1::Ingress>(object),
        other => panic!("no k8s-openapi type listed for {other:?}"),
    }
}

#[test]
fn every_fixture_fits_its_k8s_openapi_type() {
    for name in FIXTURES_WITH_DRY_RUN_JSON {
        let decoded = decode(&fixture_body(name));
        if let Err(error) = fits_k8s_openapi(decoded) {
            panic!("{name}: {error}");
        }
    }
}

#[test]
fn quota_pdb_and_binary_data() {
    let quota: k8s_openapi::api::core::v1::ResourceQuota = decode_as(&fixture_body("create_quota"));
    let hard = quota.spec.expect("spec").hard.expect("hard");
    assert_eq!(hard["memory"].0, "1G");
    let pdb: k8s_openapi::api::policy::v1::PodDisruptionBudget =
        decode_as(&fixture_body("create_pdb"));
    assert_eq!(
        pdb.spec.expect("spec").min_available,
        Some(IntOrString::Int(0))
    );
    let configmap: ConfigMap = decode_as(&fixture_body("create_configmap_binary"));
    assert_eq!(
        configmap.binary_data.expect("binaryData")["blob"],
        ByteString(b"\x00\xff\x01binary".to_vec())
    );
}

#[test]
fn namespace() {
    let body = fixture_body("create_namespace");
    assert_eq!(
        decode(&body),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns1"},
               "spec": {}, "status": {}})
    );
    let namespace: Namespace = decode_as(&body);
    assert_eq!(namespace.metadata.name.as_deref(), Some("ns1"));
}

#[test]
fn configmap() {
    let body = fixture_body("create_configmap");
    assert_eq!(
        decode(&body),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm1"},
               "data": {"a": "b", "c": "d"}})
    );
    let configmap: ConfigMap = decode_as(&body);
    let data = configmap.data.expect("data");
    assert_eq!(data.get("c").map(String::as_str), Some("d"));
}

#[test]
fn secret_data_is_base64() {
    let body = fixture_body("create_secret_generic");
    assert_eq!(
        decode(&body),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s1"},
               "data": {"password": "eA=="}})
    );
    let secret: Secret = decode_as(&body);
    assert_eq!(
        secret.data.expect("data").get("password"),
        Some(&ByteString(b"x".to_vec()))
    );
}

#[test]
fn deployment() {
    let body = fixture_body("create_deployment");
    let deployment: Deployment = decode_as(&body);
    assert_eq!(deployment.metadata.name.as_deref(), Some("web"));
    let spec = deployment.spec.expect("spec");
    assert_eq!(spec.replicas, Some(3));
    let labels = spec.selector.match_labels.expect("matchLabels");
    assert_eq!(labels.get("app").map(String::as_str), Some("web"));
    let pod = spec.template.spec.expect("pod spec");
    let container = &pod.containers[0];
    assert_eq!(container.name, "nginx");
    assert_eq!(container.image.as_deref(), Some("nginx:1.27"));
    let port = &container.ports.as_ref().expect("ports")[0];
    assert_eq!(port.container_port, 80);
    // Go value fields that kubectl wrote as zero stay absent, as in Go's JSON.
    assert_eq!(port.host_port, None);
    assert_eq!(pod.host_network, None);
    assert_eq!(pod.restart_policy, None);
}

#[test]
fn zero_replicas_survive() {
    let deployment: Deployment = decode_as(&fixture_body("create_deployment_zero_replicas"));
    assert_eq!(deployment.spec.expect("spec").replicas, Some(0));
}

#[test]
fn service_target_ports_are_int_or_string() {
    let service: Service = decode_as(&fixture_body("create_service_clusterip"));
    let spec = service.spec.expect("spec");
    assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
    let port = &spec.ports.expect("ports")[0];
    assert_eq!(port.port, 80);
    assert_eq!(port.name.as_deref(), Some("80-8080"));
    assert_eq!(port.target_port, Some(IntOrString::Int(8080)));
    assert_eq!(port.node_port, None);

    let named: Service = decode_as(&fixture_body("create_service_named_target_port"));
    let port = &named.spec.expect("spec").ports.expect("ports")[0];
    assert_eq!(
        port.target_port,
        Some(IntOrString::String("http".to_owned()))
    );
}

#[test]
fn job_and_cronjob() {
    let job: Job = decode_as(&fixture_body("create_job"));
    let template = job.spec.expect("spec").template.spec.expect("pod spec");
    assert_eq!(template.restart_policy.as_deref(), Some("Never"));
    assert_eq!(
        template.containers[0].command,
        Some(vec!["echo".to_owned(), "hi".to_owned()])
    );

    let cronjob: CronJob = decode_as(&fixture_body("create_cronjob"));
    let spec = cronjob.spec.expect("spec");
    assert_eq!(spec.schedule, "*/5 * * * *");
    assert_eq!(
        spec.job_template
            .metadata
            .expect("metadata")
            .name
            .as_deref(),
        Some("tick")
    );
}

#[test]
fn token_request() {
    let mut decoded = decode(&fixture_body("create_token"));
    assert_eq!(
        decoded,
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
               "metadata": {}, "spec": {"audiences": []}, "status": {"token": ""}})
    );
    // Go's zero status has no expirationTimestamp, which k8s-openapi requires; a server
    // ignores the status of a create anyway.
    decoded.as_object_mut().expect("object").remove("status");
    let request: k8s_openapi::api::authentication::v1::TokenRequest =
        serde_json::from_value(decoded).expect("fits k8s-openapi");
    assert_eq!(request.spec.audiences, Vec::<String>::new());
}
