//! Kubernetes Services through the real kubectl (no agent: nothing is served, only what
//! the API and the controllers make): a Service gets a ClusterIP from its project's
//! service subnet at once, which is its load balancer's VIP; its load balancer has a
//! listener, pool and health monitor per port; its Endpoints and EndpointSlice list the
//! pods its selector matches; a headless Service gets no VIP; bad Services get
//! Kubernetes' field errors and make nothing.

use std::time::Duration;

use ronghe_testkit::Kubectl;
use serde_json::{Value, json};

use super::{server, wait_for};

pub(super) fn apply(kubectl: &Kubectl, object: &Value) -> anyhow::Result<String> {
    kubectl.with_stdin(&["apply", "-f", "-"], &object.to_string())
}

pub(super) fn json_of(kubectl: &Kubectl, args: &[&str]) -> anyhow::Result<Value> {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    Ok(serde_json::from_str(&kubectl.ok(&all)?)?)
}

pub(super) fn service(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"}, "spec": spec})
}

#[tokio::test(flavor = "multi_thread")]
async fn a_service_is_a_load_balancer_with_endpoints_and_bad_ones_are_refused() -> anyhow::Result<()>
{
    let server = server().await?;
    let kubectl = Kubectl::for_server(&server)?;
    apply(
        &kubectl,
        &service(
            "web",
            json!({"selector": {"app": "web"}, "ports": [
                {"name": "http", "port": 80, "targetPort": "http"},
                {"name": "dns", "port": 53, "protocol": "UDP"},
            ]}),
        ),
    )?;
    let web = json_of(&kubectl, &["get", "service", "web"])?;
    let cluster_ip = web["spec"]["clusterIP"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(cluster_ip.starts_with("10.96."), "{web}");
    assert_eq!(web["spec"]["type"], "ClusterIP", "{web}");
    assert_eq!(web["spec"]["ports"][1]["targetPort"], 53, "{web}");
    let table = kubectl.ok(&["get", "svc", "web"])?;
    assert!(
        table.contains(&cluster_ip) && table.contains("80/TCP,53/UDP"),
        "{table}"
    );

    // Its load balancer: the VIP is the ClusterIP; a listener, pool and monitor per port.
    let lb = json_of(&kubectl, &["get", "loadbalancer", "svc-web"])?;
    assert_eq!(lb["spec"]["vipAddress"], cluster_ip.as_str(), "{lb}");
    let listed = wait_for(Duration::from_secs(30), "listeners per port", || async {
        let listeners = json_of(
            &kubectl,
            &[
                "get",
                "listeners",
                "-l",
                "loadbalancing.ronghe.io/service=web",
            ],
        )?;
        let monitors = json_of(
            &kubectl,
            &[
                "get",
                "healthmonitors",
                "-l",
                "loadbalancing.ronghe.io/service=web",
            ],
        )?;
        let count = |v: &Value| v["items"].as_array().map_or(0, Vec::len);
        Ok((count(&listeners) == 2 && count(&monitors) == 2).then_some(listeners))
    })
    .await?;
    let mut protocols: Vec<&str> = listed["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["spec"]["protocol"].as_str())
        .collect();
    protocols.sort();
    assert_eq!(protocols, ["TCP", "UDP"], "{listed}");

    // Endpoints from the pods the selector matches (not scheduled here: not ready yet).
    apply(
        &kubectl,
        &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1", "namespace": "default", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "busybox", "ports": [{"name": "http", "containerPort": 8080}]}]}}),
    )?;
    kubectl.ok(&[
        "patch", "pod", "web-1", "--subresource", "status", "--type", "merge", "-p",
        r#"{"status":{"phase":"Running","podIP":"10.0.0.42","conditions":[{"type":"Ready","status":"True"}]}}"#,
    ])?;
    let endpoints = wait_for(
        Duration::from_secs(30),
        "the pod in the endpoints",
        || async {
            let endpoints = kubectl.ok(&["get", "endpoints", "web"]);
            Ok(endpoints.ok().filter(|e| e.contains("10.0.0.42:8080")))
        },
    )
    .await?;
    assert!(endpoints.contains("10.0.0.42:53"), "{endpoints}");
    let slices = json_of(
        &kubectl,
        &[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=web",
        ],
    )?;
    let slice = &slices["items"][0];
    assert_eq!(slice["addressType"], "IPv4", "{slices}");
    assert_eq!(
        slice["endpoints"][0]["addresses"][0], "10.0.0.42",
        "{slices}"
    );
    assert_eq!(
        slice["endpoints"][0]["conditions"]["ready"], true,
        "{slices}"
    );

    // Headless: no VIP, no load balancer.
    apply(
        &kubectl,
        &service(
            "db",
            json!({"clusterIP": "None", "selector": {"app": "db"}}),
        ),
    )?;
    let db = json_of(&kubectl, &["get", "service", "db"])?;
    assert_eq!(db["spec"]["clusterIP"], "None", "{db}");
    let gone = kubectl.run(&["get", "loadbalancer", "svc-db"], None)?;
    assert!(
        !gone.success && gone.stderr.contains("NotFound"),
        "{gone:?}"
    );

    // Bad Services: Kubernetes' field errors, nothing made.
    let taken = service(
        "copy",
        json!({"clusterIP": cluster_ip, "ports": [{"port": 80}]}),
    );
    let outside = service(
        "far",
        json!({"clusterIP": "192.168.7.7", "ports": [{"port": 80}]}),
    );
    let no_ports = service("bare", json!({"selector": {"app": "x"}}));
    let bad_protocol = service("icmp", json!({"ports": [{"port": 80, "protocol": "ICMP"}]}));
    for (object, words) in [
        (&taken, "provided IP is already allocated"),
        (&outside, "provided IP is not in the valid range"),
        (&no_ports, "spec.ports: Required value"),
        (&bad_protocol, "Unsupported value: \"ICMP\""),
    ] {
        let output = kubectl.run(&["apply", "-f", "-"], Some(&object.to_string()))?;
        assert!(!output.success, "{object} was accepted");
        assert!(
            output.stderr.contains(words),
            "{words:?} not in {}",
            output.stderr
        );
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        let lb = kubectl.run(&["get", "loadbalancer", &format!("svc-{name}")], None)?;
        assert!(!lb.success, "a load balancer was left for {name}");
    }

    // `kubectl expose` makes a Service from a Deployment's selector.
    kubectl.ok(&[
        "create",
        "deployment",
        "api",
        "--image=busybox",
        "--",
        "httpd",
        "-f",
        "-p",
        "8080",
    ])?;
    kubectl.ok(&[
        "expose",
        "deployment",
        "api",
        "--port",
        "80",
        "--target-port",
        "8080",
    ])?;
    let api = json_of(&kubectl, &["get", "service", "api"])?;
    assert_eq!(api["spec"]["selector"]["app"], "api", "{api}");
    assert_eq!(api["spec"]["ports"][0]["targetPort"], 8080, "{api}");
    assert!(
        api["spec"]["clusterIP"]
            .as_str()
            .is_some_and(|ip| ip.starts_with("10.96.")),
        "{api}"
    );

    // Deleting the Service takes its load balancer with it.
    kubectl.ok(&["delete", "service", "web"])?;
    wait_for(
        Duration::from_secs(30),
        "the load balancer gone",
        || async {
            let lb = kubectl.run(&["get", "loadbalancer", "svc-web"], None)?;
            Ok((!lb.success).then_some(()))
        },
    )
    .await?;
    Ok(())
}

/// The ports in the default namespace, by name.
fn port_names(kubectl: &Kubectl) -> anyhow::Result<Vec<String>> {
    let ports = json_of(kubectl, &["get", "ports.network.ronghe.io"])?;
    Ok(ports["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|port| port["metadata"]["name"].as_str().map(str::to_owned))
        .collect())
}

/// Merge-patches Service `name`; answers it as stored.
fn patch_service(kubectl: &Kubectl, name: &str, patch: &str) -> anyhow::Result<Value> {
    kubectl.ok(&["patch", "service", name, "-p", patch])?;
    json_of(kubectl, &["get", "service", name])
}

#[tokio::test(flavor = "multi_thread")]
async fn a_service_changes_type_and_a_dry_run_makes_nothing() -> anyhow::Result<()> {
    let server = server().await?;
    let kubectl = Kubectl::for_server(&server)?;
    kubectl.ok(&["create", "service", "clusterip", "first", "--tcp=80:8080"])?;
    let ports_before = port_names(&kubectl)?;

    // A server-side dry run answers a ClusterIP and makes no load balancer and no port.
    let dry = json_of(
        &kubectl,
        &[
            "create",
            "service",
            "clusterip",
            "dry",
            "--tcp=80:8080",
            "--dry-run=server",
        ],
    )?;
    assert!(
        dry["spec"]["clusterIP"]
            .as_str()
            .is_some_and(|ip| ip.starts_with("10.96.")),
        "{dry}"
    );
    for kind in ["service", "loadbalancer"] {
        let name = if kind == "service" { "dry" } else { "svc-dry" };
        let found = kubectl.run(&["get", kind, name], None)?;
        assert!(
            !found.success && found.stderr.contains("NotFound"),
            "{found:?}"
        );
    }
    assert_eq!(port_names(&kubectl)?, ports_before, "a dry run left a port");

    // NodePort to ClusterIP: the node port goes (Kubernetes drops it), the ClusterIP stays.
    kubectl.ok(&["create", "service", "nodeport", "np", "--tcp=80:8080"])?;
    let np = json_of(&kubectl, &["get", "service", "np"])?;
    let cluster_ip = np["spec"]["clusterIP"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(np["spec"]["ports"][0]["nodePort"].is_u64(), "{np}");
    let np = patch_service(&kubectl, "np", r#"{"spec":{"type":"ClusterIP"}}"#)?;
    assert!(np["spec"]["ports"][0].get("nodePort").is_none(), "{np}");
    assert!(np["spec"].get("externalTrafficPolicy").is_none(), "{np}");
    assert_eq!(np["spec"]["clusterIP"], cluster_ip.as_str(), "{np}");

    // To ExternalName: the ClusterIP goes, and the load balancer with it.
    let np = patch_service(
        &kubectl,
        "np",
        r#"{"spec":{"type":"ExternalName","externalName":"db.example.com"}}"#,
    )?;
    assert!(np["spec"].get("clusterIP").is_none(), "{np}");
    assert!(np["spec"].get("clusterIPs").is_none(), "{np}");
    let table = kubectl.ok(&["get", "service", "np"])?;
    assert!(table.contains("db.example.com"), "{table}");
    wait_for(
        Duration::from_secs(30),
        "the ExternalName Service's load balancer gone",
        || async {
            let lb = kubectl.run(&["get", "loadbalancer", "svc-np"], None)?;
            Ok((!lb.success && lb.stderr.contains("NotFound")).then_some(()))
        },
    )
    .await?;

    // And back: a new ClusterIP and load balancer.
    let np = patch_service(&kubectl, "np", r#"{"spec":{"type":"ClusterIP"}}"#)?;
    let again = np["spec"]["clusterIP"].as_str().unwrap_or_default();
    assert!(again.starts_with("10.96."), "{np}");
    let lb = json_of(&kubectl, &["get", "loadbalancer", "svc-np"])?;
    assert_eq!(lb["spec"]["vipAddress"], again, "{lb}");

    // An ExternalName Service may not name a ClusterIP.
    let bad = service(
        "ext",
        json!({"type": "ExternalName", "externalName": "db.example.com", "clusterIP": "10.96.5.5"}),
    );
    let output = kubectl.run(&["apply", "-f", "-"], Some(&bad.to_string()))?;
    assert!(
        !output.success
            && output
                .stderr
                .contains("may not be set for ExternalName services"),
        "{output:?}"
    );
    Ok(())
}

/// The live (not deleting) pools of Service `name`'s load balancer: name → (protocol,
/// member addresses).
fn pools_of(kubectl: &Kubectl, name: &str) -> anyhow::Result<Vec<(String, String, Vec<String>)>> {
    let label = format!("loadbalancing.ronghe.io/service={name}");
    let live = |list: &Value| -> Vec<Value> {
        list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|o| o["metadata"]["deletionTimestamp"].is_null())
            .cloned()
            .collect()
    };
    let pools = live(&json_of(kubectl, &["get", "pools", "-l", &label])?);
    let members = live(&json_of(kubectl, &["get", "members", "-l", &label])?);
    let monitors = live(&json_of(kubectl, &["get", "healthmonitors", "-l", &label])?);
    let mut found: Vec<(String, String, Vec<String>)> = pools
        .iter()
        .filter(|pool| {
            // Every pool has its monitor.
            monitors
                .iter()
                .any(|m| m["spec"]["poolId"] == pool["metadata"]["uid"])
        })
        .map(|pool| {
            let mut addresses: Vec<String> = members
                .iter()
                .filter(|m| m["spec"]["poolId"] == pool["metadata"]["uid"])
                .filter_map(|m| m["spec"]["address"].as_str().map(str::to_owned))
                .collect();
            addresses.sort();
            (
                pool["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                pool["spec"]["protocol"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                addresses,
            )
        })
        .collect();
    found.sort();
    Ok(found)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_services_proxy_protocol_annotation_makes_its_tcp_pools_speak_it() -> anyhow::Result<()> {
    const ANNOTATION: &str = "loadbalancer.openstack.org/proxy-protocol";
    let server = server().await?;
    let kubectl = Kubectl::for_server(&server)?;
    let mut pp = service(
        "pp",
        json!({"selector": {"app": "pp"}, "ports": [
            {"name": "web", "port": 80, "targetPort": 8080},
            {"name": "dns", "port": 53, "protocol": "UDP"},
        ]}),
    );
    pp["metadata"]["annotations"] = json!({ ANNOTATION: "v2" });
    apply(&kubectl, &pp)?;
    apply(
        &kubectl,
        &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pp-1", "namespace": "default", "labels": {"app": "pp"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
    )?;
    kubectl.ok(&[
        "patch", "pod", "pp-1", "--subresource", "status", "--type", "merge", "-p",
        r#"{"status":{"phase":"Running","podIP":"10.0.0.43","conditions":[{"type":"Ready","status":"True"}]}}"#,
    ])?;
    let member = vec!["10.0.0.43".to_owned()];
    let pools_become = |wanted: Vec<(&'static str, &'static str)>, what: &'static str| {
        let (kubectl, member) = (&kubectl, &member);
        async move {
            let wanted: Vec<(String, String, Vec<String>)> = wanted
                .into_iter()
                .map(|(name, protocol)| (name.to_owned(), protocol.to_owned(), member.clone()))
                .collect();
            wait_for(Duration::from_secs(30), what, || async {
                let found = pools_of(kubectl, "pp")?;
                Ok((found == wanted).then_some(()))
            })
            .await
            .map_err(|error| anyhow::anyhow!("{error}; pools: {:?}", pools_of(kubectl, "pp").ok()))
        }
    };
    // Version 2 on the TCP port's pool; the UDP port's is UDP.
    pools_become(
        vec![
            ("svc-pp-tcp-80-proxyv2", "PROXYV2"),
            ("svc-pp-udp-53", "UDP"),
        ],
        "a PROXYV2 pool",
    )
    .await?;
    // A pool's protocol cannot change: another annotation value replaces the pool, with
    // its monitor and members.
    kubectl.ok(&[
        "annotate",
        "--overwrite",
        "service",
        "pp",
        &format!("{ANNOTATION}=true"),
    ])?;
    pools_become(
        vec![("svc-pp-tcp-80-proxy", "PROXY"), ("svc-pp-udp-53", "UDP")],
        "a PROXY pool",
    )
    .await?;
    kubectl.ok(&["annotate", "service", "pp", &format!("{ANNOTATION}-")])?;
    pools_become(
        vec![("svc-pp-tcp-80", "TCP"), ("svc-pp-udp-53", "UDP")],
        "a TCP pool again",
    )
    .await?;

    // A value the cloud provider does not know: Kubernetes' field error, nothing changed.
    let refused = kubectl.run(
        &["annotate", "service", "pp", &format!("{ANNOTATION}=v3")],
        None,
    )?;
    assert!(!refused.success, "v3 was taken");
    assert!(
        refused.stderr.contains(&format!(
            "metadata.annotations[{ANNOTATION}]: Unsupported value: \"v3\""
        )),
        "{}",
        refused.stderr
    );
    let stored = json_of(&kubectl, &["get", "service", "pp"])?;
    assert!(
        stored["metadata"]["annotations"][ANNOTATION].is_null(),
        "{stored}"
    );
    let mut bad = service("bad-pp", json!({"ports": [{"port": 80}]}));
    bad["metadata"]["annotations"] = json!({ ANNOTATION: "yes" });
    let output = kubectl.run(&["apply", "-f", "-"], Some(&bad.to_string()))?;
    assert!(
        !output.success && output.stderr.contains("Unsupported value: \"yes\""),
        "{output:?}"
    );
    Ok(())
}
