//! Kubernetes Services as load balancers end to end on a `LabCluster` (two host
//! namespaces, an agent each, real runc, kubectl): a Deployment of three pods behind a
//! ClusterIP Service answers a client pod on its name (`web.admin.svc.cluster.local`,
//! through the cluster DNS) from all three; a deleted pod
//! leaves the rotation and its replacement joins it; scaling to five adds members; the
//! Service turned LoadBalancer answers from the external namespace on its floating IP
//! (until `loadBalancerSourceRanges` leave the outside out, and again once they take it
//! in), and on its node port at either host's address from either host (on the host running
//! its load balancer, and relayed from the other); a NodePort Service asking for the PROXY
//! protocol (`loadbalancer.openstack.org/proxy-protocol`) tells its pod of each client
//! as it is, through either host's node port and over its ClusterIP, and annotated for
//! `X-Forwarded-For` instead, tells it in that header; deleting the Service takes its load
//! balancer away.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use ronghe_testkit::{LabCluster, NetLab};
use serde_json::{Value, json};

use super::{BINARY, require_real_drivers, wait_for};

/// What the whois pod runs for each connection: a PROXY protocol header (or any first
/// line that is not HTTP) is echoed; an HTTP request is answered with its
/// X-Forwarded-For line.
const WHOIS_SCRIPT: &str = r#"while read -r line; do
  case "$line" in
    [Xx]-[Ff]orwarded-[Ff]or:*) printf 'HTTP/1.0 200 OK\r\n\r\n%s\n' "$line"; exit ;;
    GET\ *|[A-Za-z]*:*) ;;
    *) echo "$line"; exit ;;
  esac
done"#;

/// The bodies of `count` GETs of `url` from pod `from` (`FAILED` for each that failed).
fn answers(
    cluster: &LabCluster,
    from: &str,
    url: &str,
    count: usize,
) -> anyhow::Result<Vec<String>> {
    let script =
        format!("for i in $(seq {count}); do timeout 5 wget -q -O - {url} || echo FAILED; done");
    let (_, out) = cluster.exec(from, &["sh", "-c", &script])?;
    Ok(out
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}

fn web_pods(cluster: &LabCluster) -> anyhow::Result<BTreeSet<String>> {
    let listed: Value = serde_json::from_str(
        &cluster
            .kubectl
            .ok(&["get", "pods", "-n", "admin", "-l", "app=web", "-o", "json"])?,
    )?;
    Ok(listed["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_owned))
        .collect())
}

/// Waits until the web pods are as `settled` wants and 30 requests all succeed and reach
/// exactly them.
async fn wait_for_rotation(
    cluster: &LabCluster,
    url: &str,
    what: &str,
    settled: impl Fn(&BTreeSet<String>) -> bool,
) -> anyhow::Result<()> {
    wait_for(Duration::from_secs(120), what, || async {
        let wanted = web_pods(cluster)?;
        if !settled(&wanted) {
            return Ok(None);
        }
        let got = answers(cluster, "client", url, 30)?;
        let seen: BTreeSet<String> = got.iter().cloned().collect();
        Ok((got.len() == 30 && seen == wanted).then_some(()))
    })
    .await
}

/// Merge-patches Service `web` with `patch`.
fn patch_web(cluster: &LabCluster, patch: &str) -> anyhow::Result<()> {
    cluster
        .kubectl
        .ok(&["patch", "service", "web", "-n", "admin", "-p", patch])?;
    Ok(())
}

/// A field of Service `web`, by JSONPath, trimmed.
fn web_service(cluster: &LabCluster, path: &str) -> anyhow::Result<String> {
    let jsonpath = format!("jsonpath={path}");
    let value = cluster
        .kubectl
        .ok(&["get", "service", "web", "-n", "admin", "-o", &jsonpath])?;
    Ok(value.trim().to_owned())
}

/// Prints what the API says about the routing of the service subnet, for a failed wait.
fn diagnose(cluster: &LabCluster) {
    for args in [
        &["router", "show", "services", "-f", "json"][..],
        &["floating", "ip", "list", "--long", "-f", "json"],
        &["port", "list", "--long", "-f", "json"],
        &["security", "group", "rule", "list", "--long", "-f", "json"],
    ] {
        match cluster.os.ok(args) {
            Ok(out) => eprintln!("--- {args:?}:\n{out}"),
            Err(error) => eprintln!("--- {args:?}: {error:#}"),
        }
    }
    for index in 0..2 {
        let log = cluster.agent_log(index);
        let relevant: Vec<&str> = log
            .lines()
            .filter(|l| {
                ["WARN", "ERROR", "router", "node port", "node-port"]
                    .iter()
                    .any(|word| l.contains(word))
            })
            .collect();
        eprintln!("--- agent {index}:\n{}", relevant.join("\n"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deployment_behind_a_service_is_balanced_follows_its_pods_and_gets_a_floating_ip()
-> anyhow::Result<()> {
    require_real_drivers!(
        "a_deployment_behind_a_service_is_balanced_follows_its_pods_and_gets_a_floating_ip"
    );
    if let Err(why) = NetLab::available() {
        eprintln!(
            "SKIPPED a_deployment_behind_a_service_is_balanced_follows_its_pods_and_gets_a_floating_ip: {why}"
        );
        return Ok(());
    }
    let cluster =
        LabCluster::start(Path::new(BINARY), 2, &["--physical-network", "public=eth1"]).await?;
    cluster.create_public_network()?;
    let deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "admin"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{
                    "name": "web",
                    "image": "busybox",
                    "command": ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"],
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1},
                }]},
            },
        },
    });
    let service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "admin"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]},
    });
    cluster
        .kubectl
        .with_stdin(&["apply", "-f", "-"], &deployment.to_string())?;
    cluster
        .kubectl
        .with_stdin(&["apply", "-f", "-"], &service.to_string())?;
    // A pod answering each connection with the first line it reads (busybox nc), behind
    // a NodePort Service asking for the PROXY protocol: that line is the header naming
    // the client; or, to an HTTP request, with its X-Forwarded-For line. Started now, so
    // it is up by the time it is asked.
    let whois = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "whois", "namespace": "admin"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "whois"}},
            "template": {
                "metadata": {"labels": {"app": "whois"}},
                "spec": {"containers": [{
                    "name": "whois",
                    "image": "busybox",
                    "command": ["nc", "-ll", "-p", "7000", "-e", "sh", "-c", WHOIS_SCRIPT],
                }]},
            },
        },
    });
    let whois_service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "whois", "namespace": "admin",
            "annotations": {"loadbalancer.openstack.org/proxy-protocol": "true"}},
        "spec": {"type": "NodePort", "selector": {"app": "whois"}, "ports": [{"port": 7000}]},
    });
    for object in [&whois, &whois_service] {
        cluster
            .kubectl
            .with_stdin(&["apply", "-f", "-"], &object.to_string())?;
    }
    let shown: Value = serde_json::from_str(
        &cluster
            .kubectl
            .ok(&["get", "service", "web", "-n", "admin", "-o", "json"])?,
    )?;
    let cluster_ip = shown["spec"]["clusterIP"]
        .as_str()
        .context("a ClusterIP at once")?
        .to_owned();
    assert!(cluster_ip.starts_with("10.96."), "{shown}");
    let listed = cluster.kubectl.ok(&["get", "svc", "-n", "admin"])?;
    assert!(
        listed.contains(&cluster_ip) && listed.contains("80/TCP"),
        "{listed}"
    );

    // The client waits for the default network the Deployment's pods made.
    wait_for(Duration::from_secs(120), "3 web pods", || async {
        Ok((web_pods(&cluster)?.len() == 3).then_some(()))
    })
    .await?;
    cluster.web_pod("client", 1, "default", "client").await?;
    // By the Service's name, through the cluster DNS (the client's search path).
    let url = "http://web.admin.svc.cluster.local/".to_owned();
    wait_for_rotation(
        &cluster,
        &url,
        "all 3 pods answering on the Service's name",
        |pods| pods.len() == 3,
    )
    .await?;
    let endpoints = cluster.kubectl.ok(&[
        "get",
        "endpoints",
        "web",
        "-n",
        "admin",
        "-o",
        "jsonpath={.subsets[*].addresses[*].ip}",
    ])?;
    assert_eq!(endpoints.split_whitespace().count(), 3, "{endpoints}");
    let slices = cluster.kubectl.ok(&[
        "get",
        "endpointslices",
        "-n",
        "admin",
        "-l",
        "kubernetes.io/service-name=web",
        "-o",
        "json",
    ])?;
    assert!(slices.contains("8080"), "{slices}");

    // A deleted pod leaves the rotation; its replacement joins it.
    let victim = web_pods(&cluster)?.into_iter().next().context("a pod")?;
    cluster
        .kubectl
        .ok(&["delete", "pod", &victim, "-n", "admin", "--wait=false"])?;
    wait_for_rotation(
        &cluster,
        &url,
        "the deleted pod out, its replacement in",
        |pods| pods.len() == 3 && !pods.contains(&victim),
    )
    .await?;

    // Scaling to five adds members.
    cluster.kubectl.ok(&[
        "scale",
        "deployment",
        "web",
        "-n",
        "admin",
        "--replicas",
        "5",
    ])?;
    wait_for_rotation(&cluster, &url, "5 pods answering", |pods| pods.len() == 5).await?;

    // A LoadBalancer Service gets a floating IP that answers from outside.
    patch_web(&cluster, r#"{"spec":{"type":"LoadBalancer"}}"#)?;
    let floating = wait_for(
        Duration::from_secs(60),
        "a floating IP in the status",
        || async {
            let ip = web_service(&cluster, "{.status.loadBalancer.ingress[0].ip}")?;
            Ok((!ip.is_empty()).then_some(ip))
        },
    )
    .await?;
    assert!(floating.starts_with("172.24.4."), "{floating}");
    let pods = web_pods(&cluster)?;
    // Whether one of the pods answers on the floating IP from outside.
    let from_outside = || async {
        let answer = cluster.get_from_outside(&format!("http://{floating}/"))?;
        anyhow::Ok(answer.is_some_and(|a| pods.contains(a.trim())))
    };
    wait_for(
        Duration::from_secs(60),
        "the floating IP answering",
        || async { Ok(from_outside().await?.then_some(())) },
    )
    .await
    .inspect_err(|_| diagnose(&cluster))?;
    let listed = cluster.kubectl.ok(&["get", "svc", "web", "-n", "admin"])?;
    assert!(listed.contains(&floating), "{listed}");

    // `loadBalancerSourceRanges` keep other sources away from the floating IP (its router
    // drops them); a range holding the outside lets it back in.
    let refused = cluster.kubectl.run(
        &[
            "patch",
            "service",
            "web",
            "-n",
            "admin",
            "-p",
            r#"{"spec":{"loadBalancerSourceRanges":["everywhere"]}}"#,
        ],
        None,
    )?;
    assert!(
        !refused.success && refused.stderr.contains("must be a valid CIDR"),
        "a source range that is no CIDR refused: {refused:?}"
    );
    patch_web(
        &cluster,
        r#"{"spec":{"loadBalancerSourceRanges":["192.0.2.0/24"]}}"#,
    )?;
    wait_for(
        Duration::from_secs(30),
        "the floating IP closed to the outside",
        || async { Ok((!from_outside().await?).then_some(())) },
    )
    .await
    .inspect_err(|_| diagnose(&cluster))?;
    for _ in 0..2 {
        assert!(
            !from_outside().await?,
            "the floating IP answered the outside, outside its source ranges"
        );
    }
    patch_web(
        &cluster,
        r#"{"spec":{"loadBalancerSourceRanges":["192.0.2.0/24","172.24.4.0/24"]}}"#,
    )?;
    wait_for(
        Duration::from_secs(30),
        "the floating IP open to the outside's range",
        || async { Ok(from_outside().await?.then_some(())) },
    )
    .await
    .inspect_err(|_| diagnose(&cluster))?;

    // Its node port answers at both hosts' addresses, from both hosts.
    let node_port = web_service(&cluster, "{.spec.ports[0].nodePort}")?;
    let node_port: u16 = node_port
        .parse()
        .with_context(|| format!("a node port: {node_port:?}"))?;
    for from in 0..2 {
        for to in 0..2 {
            let url = format!("http://{}:{node_port}/", cluster.host(to).underlay_ip);
            wait_for(
                Duration::from_secs(60),
                &format!("{url} answering from host {from}"),
                || async {
                    let answer = cluster.get_from_host(from, &url)?;
                    Ok(answer.filter(|a| pods.contains(a.trim())).map(|_| ()))
                },
            )
            .await
            .inspect_err(|_| diagnose(&cluster))?;
        }
    }
    // The PROXY protocol Service's pod is told of each client as it is: a host connecting
    // to either host's node port (here, or relayed), and a pod over the ClusterIP.
    let whois_of = |path: &str| -> anyhow::Result<String> {
        let jsonpath = format!("jsonpath={path}");
        let value = cluster
            .kubectl
            .ok(&["get", "service", "whois", "-n", "admin", "-o", &jsonpath])?;
        Ok(value.trim().to_owned())
    };
    let (whois_port, whois_ip) = (
        whois_of("{.spec.ports[0].nodePort}")?,
        whois_of("{.spec.clusterIP}")?,
    );
    // `PROXY TCP4 client destination client-port destination-port`, as the pod echoed it.
    let header_in = |output: &str| {
        output
            .lines()
            .map(str::trim)
            .find(|line| line.starts_with("PROXY TCP4 "))
            .map(|line| line.split(' ').map(str::to_owned).collect::<Vec<_>>())
    };
    for from in 0..2 {
        for to in 0..2 {
            let to_ip = cluster.host(to).underlay_ip;
            let script = format!("printf 'hello\\n' | timeout 5 busybox nc {to_ip} {whois_port}");
            let header = wait_for(
                Duration::from_secs(90),
                &format!("the whois pod answering host {from} through host {to}'s node port"),
                || async {
                    let output = cluster
                        .lab()
                        .exec(&cluster.host(from).netns, &["sh", "-c", &script])?;
                    Ok(header_in(&String::from_utf8_lossy(&output.stdout)))
                },
            )
            .await
            .inspect_err(|_| diagnose(&cluster))?;
            let client = cluster.host(from).underlay_ip.to_string();
            assert_eq!(
                (header[2].as_str(), header[3].as_str(), header[5].as_str()),
                (client.as_str(), whois_ip.as_str(), "7000"),
                "host {from} through host {to}: {header:?}"
            );
        }
    }
    let client_ip = cluster.kubectl.ok(&[
        "get",
        "pod",
        "client",
        "-n",
        "admin",
        "-o",
        "jsonpath={.status.podIP}",
    ])?;
    let (_, output) = cluster.exec(
        "client",
        &[
            "sh",
            "-c",
            &format!("printf 'hello\\n' | timeout 5 nc {whois_ip} 7000"),
        ],
    )?;
    let header = header_in(&output).with_context(|| format!("no PROXY header: {output:?}"))?;
    assert_eq!(
        header[2],
        client_ip.trim(),
        "over the ClusterIP: {header:?}"
    );
    // Annotated for X-Forwarded-For instead, the Service's port becomes an HTTP listener
    // (a new one: a listener's protocol cannot change) that tells the pod of its client
    // in that header.
    cluster.kubectl.ok(&[
        "annotate",
        "service",
        "whois",
        "-n",
        "admin",
        "loadbalancer.openstack.org/proxy-protocol-",
        "loadbalancer.openstack.org/x-forwarded-for=true",
    ])?;
    let forwarded_for = wait_for(
        Duration::from_secs(60),
        "the whois pod told of its client in X-Forwarded-For",
        || async {
            let (_, output) = cluster.exec(
                "client",
                &[
                    "sh",
                    "-c",
                    &format!("timeout 5 wget -qO- http://{whois_ip}:7000/"),
                ],
            )?;
            Ok(output
                .lines()
                .map(str::trim)
                .find(|line| line.to_ascii_lowercase().starts_with("x-forwarded-for:"))
                .map(str::to_owned))
        },
    )
    .await
    .inspect_err(|_| diagnose(&cluster))?;
    assert_eq!(
        forwarded_for.split_once(':').map(|(_, value)| value.trim()),
        Some(client_ip.trim()),
        "{forwarded_for}"
    );

    // With `externalTrafficPolicy: Local`, only the host running the load balancer answers
    // on the node port; the other refuses.
    patch_web(&cluster, r#"{"spec":{"externalTrafficPolicy":"Local"}}"#)?;
    let lb_host = cluster.kubectl.ok(&[
        "get",
        "loadbalancer",
        "svc-web",
        "-n",
        "admin",
        "-o",
        "jsonpath={.status.host}",
    ])?;
    let running = (0..2)
        .find(|&index| cluster.host(index).netns == lb_host.trim())
        .with_context(|| format!("the load balancer's host {lb_host:?} is not a lab host"))?;
    let url_of = |index: usize| format!("http://{}:{node_port}/", cluster.host(index).underlay_ip);
    wait_for(
        Duration::from_secs(30),
        "the node port closed on the host without the load balancer",
        || async {
            Ok(cluster
                .get_from_host(running, &url_of(1 - running))?
                .is_none()
                .then_some(()))
        },
    )
    .await?;
    let answer = cluster.get_from_host(1 - running, &url_of(running))?;
    assert!(
        answer.as_deref().is_some_and(|a| pods.contains(a.trim())),
        "the load balancer's host answers on its node port: {answer:?}"
    );
    // Its health-check node port says so: 200 there, 503 (which wget fails on) elsewhere.
    let health_port = web_service(&cluster, "{.spec.healthCheckNodePort}")?;
    let health_port: u16 = health_port
        .parse()
        .with_context(|| format!("a health-check node port: {health_port:?}"))?;
    let health_of = |index: usize| {
        format!(
            "http://{}:{health_port}/healthz",
            cluster.host(index).underlay_ip
        )
    };
    let healthy = wait_for(
        Duration::from_secs(30),
        "the health-check node port healthy on the load balancer's host",
        || async { cluster.get_from_host(1 - running, &health_of(running)) },
    )
    .await?;
    assert!(healthy.contains(r#""localEndpoints":1"#), "{healthy}");
    assert_eq!(
        cluster.get_from_host(running, &health_of(1 - running))?,
        None,
        "the other host is not healthy for the Service"
    );

    // Deleting the Service takes its load balancer, VIP and floating IP away.
    cluster
        .kubectl
        .ok(&["delete", "service", "web", "-n", "admin"])?;
    wait_for(
        Duration::from_secs(60),
        "the load balancer gone",
        || async {
            let left =
                cluster
                    .kubectl
                    .ok(&["get", "loadbalancers", "-n", "admin", "-o", "name"])?;
            Ok((!left.contains("svc-web")).then_some(()))
        },
    )
    .await?;
    let url = format!("http://{cluster_ip}/");
    wait_for(Duration::from_secs(30), "the ClusterIP silent", || async {
        let got = answers(&cluster, "client", &url, 1)?;
        Ok((got == ["FAILED"]).then_some(()))
    })
    .await?;
    Ok(())
}
