//! The cloud provider's Service annotations through the real kubectl (no agent: only what
//! the API and the services controller make): a Service annotated as for
//! cloud-provider-openstack gets the listeners, pools and health monitors that provider
//! would have made in Octavia, changes of them replace what cannot change, an internal
//! LoadBalancer Service shows its VIP, and values that cannot be built are refused with
//! Kubernetes' field errors.

use std::time::Duration;

use base64::Engine as _;
use ronghe_testkit::Kubectl;
use serde_json::{Value, json};

use super::services::{apply, json_of, service};
use super::{server, wait_for};

/// What the controller made for Service `name`, in short: per listener its name,
/// protocol, connection limit, inserted headers, client timeout and certificate; per pool
/// its name, protocol and algorithm; per monitor its name and timings.
fn shape(kubectl: &Kubectl, name: &str) -> anyhow::Result<Value> {
    let label = format!("loadbalancing.ronghe.io/service={name}");
    let live = |kind: &str| -> anyhow::Result<Vec<Value>> {
        let mut items: Vec<Value> = json_of(kubectl, &["get", kind, "-l", &label])?["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|o| o["metadata"]["deletionTimestamp"].is_null())
            .cloned()
            .collect();
        items.sort_by_key(|o| {
            o["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        });
        Ok(items)
    };
    let pick = |items: Vec<Value>, fields: &[&str]| -> Vec<Value> {
        items
            .iter()
            .map(|item| {
                let mut picked = vec![item["metadata"]["name"].clone()];
                picked.extend(fields.iter().map(|field| item["spec"][field].clone()));
                Value::Array(picked)
            })
            .collect()
    };
    Ok(json!({
        "listeners": pick(live("listeners")?, &["protocol", "connectionLimit", "insertHeaders", "timeoutClientData", "defaultTlsContainerRef"]),
        "pools": pick(live("pools")?, &["protocol", "lbAlgorithm"]),
        "monitors": pick(live("healthmonitors")?, &["delay", "timeout", "maxRetries", "maxRetriesDown"]),
    }))
}

async fn shape_becomes(
    kubectl: &Kubectl,
    name: &str,
    wanted: Value,
    what: &str,
) -> anyhow::Result<()> {
    wait_for(Duration::from_secs(30), what, || async {
        Ok((shape(kubectl, name)? == wanted).then_some(()))
    })
    .await
    .map_err(|error| {
        anyhow::anyhow!(
            "{error}; found {}",
            shape(kubectl, name).unwrap_or_default()
        )
    })
}

fn tls_secret(name: &str) -> anyhow::Result<Value> {
    let generated = rcgen::generate_simple_self_signed(vec!["web.example".into()])?;
    let encode = |text: String| base64::engine::general_purpose::STANDARD.encode(text);
    Ok(json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": name, "namespace": "default"},
        "data": {
            "tls.crt": encode(generated.cert.pem()),
            "tls.key": encode(generated.signing_key.serialize_pem()),
        },
    }))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cloud_providers_annotations_shape_a_services_load_balancer() -> anyhow::Result<()> {
    let server = server().await?;
    let kubectl = Kubectl::for_server(&server)?;
    apply(&kubectl, &tls_secret("web-tls")?)?;
    let mut shaped = service(
        "shaped",
        json!({"selector": {"app": "shaped"}, "ports": [
            {"name": "web", "port": 80, "targetPort": 8080},
            {"name": "dns", "port": 53, "protocol": "UDP"},
        ]}),
    );
    shaped["metadata"]["annotations"] = json!({
        "loadbalancer.openstack.org/x-forwarded-for": "true",
        "loadbalancer.openstack.org/connection-limit": "100",
        "loadbalancer.openstack.org/timeout-client-data": "60000",
        "loadbalancer.openstack.org/lb-method": "LEAST_CONNECTIONS",
        "loadbalancer.openstack.org/health-monitor-delay": "10",
        "loadbalancer.openstack.org/health-monitor-timeout": "4",
        "loadbalancer.openstack.org/health-monitor-max-retries": "3",
        "loadbalancer.openstack.org/health-monitor-max-retries-down": "5",
    });
    apply(&kubectl, &shaped)?;
    // X-Forwarded-For makes the TCP port's listener and pool HTTP; limits, timeouts, the
    // algorithm and the monitors' timings hold for both ports.
    let xff = json!({"X-Forwarded-For": "true"});
    shape_becomes(
        &kubectl,
        "shaped",
        json!({
            "listeners": [
                ["svc-shaped-http-80", "HTTP", 100, xff, 60000, null],
                ["svc-shaped-udp-53", "UDP", 100, null, 60000, null],
            ],
            "pools": [
                ["svc-shaped-http-80", "HTTP", "LEAST_CONNECTIONS"],
                ["svc-shaped-udp-53", "UDP", "LEAST_CONNECTIONS"],
            ],
            "monitors": [
                ["svc-shaped-http-80", 10, 4, 3, 5],
                ["svc-shaped-udp-53", 10, 4, 3, 5],
            ],
        }),
        "HTTP listeners with the annotated settings",
    )
    .await?;

    // A certificate instead: a TERMINATED_HTTPS listener replaces the HTTP one (a
    // listener's protocol cannot change), with an HTTP pool; no monitors when they are
    // turned off.
    kubectl.ok(&[
        "annotate",
        "--overwrite",
        "service",
        "shaped",
        "loadbalancer.openstack.org/x-forwarded-for-",
        "loadbalancer.openstack.org/default-tls-container-ref=web-tls",
        "loadbalancer.openstack.org/enable-health-monitor=false",
        "loadbalancer.openstack.org/timeout-client-data-",
    ])?;
    shape_becomes(
        &kubectl,
        "shaped",
        json!({
            "listeners": [
                ["svc-shaped-terminated-https-80", "TERMINATED_HTTPS", 100, null, null, "web-tls"],
                ["svc-shaped-udp-53", "UDP", 100, null, null, null],
            ],
            "pools": [
                ["svc-shaped-terminated-https-80-http", "HTTP", "LEAST_CONNECTIONS"],
                ["svc-shaped-udp-53", "UDP", "LEAST_CONNECTIONS"],
            ],
            "monitors": [],
        }),
        "a TERMINATED_HTTPS listener and no monitors",
    )
    .await?;

    // Without annotations: TCP, round robin, the default monitors.
    let stored = json_of(&kubectl, &["get", "service", "shaped"])?;
    let mut removals: Vec<String> = stored["metadata"]["annotations"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(key, _)| key.clone())
        .filter(|key| key.starts_with("loadbalancer.openstack.org/"))
        .map(|key| format!("{key}-"))
        .collect();
    removals.sort();
    let mut args = vec!["annotate", "service", "shaped"];
    args.extend(removals.iter().map(String::as_str));
    kubectl.ok(&args)?;
    shape_becomes(
        &kubectl,
        "shaped",
        json!({
            "listeners": [
                ["svc-shaped-tcp-80", "TCP", -1, null, null, null],
                ["svc-shaped-udp-53", "UDP", -1, null, null, null],
            ],
            "pools": [
                ["svc-shaped-tcp-80", "TCP", "ROUND_ROBIN"],
                ["svc-shaped-udp-53", "UDP", "ROUND_ROBIN"],
            ],
            "monitors": [
                ["svc-shaped-tcp-80", 1, 1, 1, 2],
                ["svc-shaped-udp-53", 1, 1, 1, 2],
            ],
        }),
        "the defaults again",
    )
    .await?;

    // What cannot be built is refused, and nothing changes.
    for (annotation, expected) in [
        (
            "loadbalancer.openstack.org/lb-method=SOURCE_IP_PORT",
            "metadata.annotations[loadbalancer.openstack.org/lb-method]: Unsupported value: \"SOURCE_IP_PORT\"",
        ),
        (
            "loadbalancer.openstack.org/health-monitor-timeout=5",
            "metadata.annotations[loadbalancer.openstack.org/health-monitor-timeout]: Invalid value: 5: Validation failure: The health monitor timeout (5) must not be longer than its delay (1).",
        ),
    ] {
        let refused = kubectl.run(&["annotate", "service", "shaped", annotation], None)?;
        assert!(
            !refused.success && refused.stderr.contains(expected),
            "{annotation}: {refused:?}"
        );
    }
    let stored = json_of(&kubectl, &["get", "service", "shaped"])?;
    assert!(
        stored["metadata"]["annotations"]
            .as_object()
            .is_none_or(|a| a
                .keys()
                .all(|k| !k.starts_with("loadbalancer.openstack.org/"))),
        "{stored}"
    );

    // An internal LoadBalancer Service gets no floating IP and shows its VIP.
    let mut internal = service(
        "inside",
        json!({"type": "LoadBalancer", "selector": {"app": "inside"}, "ports": [{"port": 80}]}),
    );
    internal["metadata"]["annotations"] =
        json!({"service.beta.kubernetes.io/openstack-internal-load-balancer": "true"});
    apply(&kubectl, &internal)?;
    let ingress = wait_for(Duration::from_secs(30), "the VIP as ingress", || async {
        let stored = json_of(&kubectl, &["get", "service", "inside"])?;
        let ip = stored["status"]["loadBalancer"]["ingress"][0]["ip"].clone();
        Ok((!ip.is_null()).then(|| (ip, stored["spec"]["clusterIP"].clone())))
    })
    .await?;
    assert_eq!(ingress.0, ingress.1);
    let fips = json_of(
        &kubectl,
        &[
            "get",
            "floatingips",
            "-l",
            "loadbalancing.ronghe.io/service=inside",
        ],
    )?;
    assert_eq!(fips["items"], json!([]), "{fips}");

    // A certificate Secret that is not there yet: the Service tells why its load balancer
    // lags in an Event, and catches up once the Secret comes.
    let mut early = service(
        "early",
        json!({"selector": {"app": "early"}, "ports": [{"port": 443}]}),
    );
    early["metadata"]["annotations"] =
        json!({"loadbalancer.openstack.org/default-tls-container-ref": "late-tls"});
    apply(&kubectl, &early)?;
    let told = wait_for(
        Duration::from_secs(30),
        "an event on the Service",
        || async {
            let events = json_of(
                &kubectl,
                &[
                    "get",
                    "events",
                    "--field-selector",
                    "involvedObject.name=early",
                ],
            )?;
            Ok(events["items"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|e| e["reason"] == "SyncLoadBalancerFailed")
                .cloned())
        },
    )
    .await?;
    assert_eq!(told["type"], "Warning", "{told}");
    assert_eq!(told["involvedObject"]["kind"], "Service", "{told}");
    let message = told["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("Could not retrieve certificate") && message.contains("late-tls"),
        "{told}"
    );
    let described = kubectl.ok(&["describe", "service", "early"])?;
    assert!(described.contains("SyncLoadBalancerFailed"), "{described}");
    apply(&kubectl, &tls_secret("late-tls")?)?;
    shape_becomes(
        &kubectl,
        "early",
        json!({
            "listeners": [["svc-early-terminated-https-443", "TERMINATED_HTTPS", -1, null, null, "late-tls"]],
            "pools": [["svc-early-terminated-https-443-http", "HTTP", "ROUND_ROBIN"]],
            "monitors": [["svc-early-terminated-https-443-http", 1, 1, 1, 2]],
        }),
        "the listener once its Secret is there",
    )
    .await?;
    Ok(())
}
