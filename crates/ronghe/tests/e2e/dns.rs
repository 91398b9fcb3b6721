//! Cluster DNS end to end on a two-host `LabCluster`: the resolver the agents serve on a
//! network's DHCP port reaches a pod through its resolv.conf and a VM through DHCP, and
//! each finds the other by name across hosts.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use ronghe_testkit::{LabCluster, NetLab};

use super::{BINARY, require_real_drivers, wait_for};

/// busybox nslookup's answer lines (`Address: 10.1.0.7`) after the server's own.
fn answered_addresses(output: &str) -> Vec<String> {
    output
        .split_once("Name:")
        .map(|(_, answers)| answers)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.trim().strip_prefix("Address:"))
        .map(|address| address.trim().to_owned())
        .collect()
}

/// The IPv4 addresses pod `web` finds for `name` once it finds any, with nslookup's
/// output.
async fn resolve_in_pod(cluster: &LabCluster, name: &str) -> anyhow::Result<(Vec<String>, String)> {
    let output = wait_for(
        Duration::from_secs(60),
        &format!("the pod resolving {name}"),
        || async {
            // busybox nslookup asks under every search domain and fails when any misses:
            // the answer is what counts.
            let (_, out) = cluster.exec("web", &["timeout", "10", "nslookup", "-type=a", name])?;
            Ok(out.contains("Name:").then_some(out))
        },
    )
    .await?;
    Ok((answered_addresses(&output), output))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_and_a_vm_resolve_each_other_through_the_cluster_dns() -> anyhow::Result<()> {
    let test = "a_pod_and_a_vm_resolve_each_other_through_the_cluster_dns";
    require_real_drivers!(test);
    if let Err(why) = NetLab::available() {
        eprintln!("SKIPPED {test}: {why}");
        return Ok(());
    }
    let cluster = LabCluster::start(Path::new(BINARY), 2, &[]).await?;
    cluster.create_network("net1", "sub1", "10.1.0.0/24", None)?;
    cluster.create_tiny_flavor()?;
    let dhcp = cluster.os.json(&[
        "port",
        "list",
        "--network",
        "net1",
        "--device-owner",
        "network:dhcp",
    ])?;
    let resolver = dhcp
        .pointer("/0/Fixed IP Addresses")
        .map(ToString::to_string)
        .and_then(|ips| {
            ips.split(|c: char| !(c.is_ascii_digit() || c == '.'))
                .find(|part| part.starts_with("10.1.0."))
                .map(str::to_owned)
        })
        .with_context(|| format!("the DHCP port's address: {dhcp}"))?;

    let pod_ip = cluster.web_pod("web", 0, "net1", "hi").await?;
    let pod_name = format!("host-{}", pod_ip.replace('.', "-"));
    // The VM prints its resolv.conf (from DHCP), then looks up the pod's port by its
    // short name (the search list from DHCP) and itself by its full name.
    let user_data = format!(
        "#!/bin/sh
echo \"ronghe-test: resolv $(tr '\\n' ';' < /etc/resolv.conf)\"
i=0
while [ $i -lt 60 ]; do
    i=$((i + 1))
    pod=$(timeout 10 nslookup -type=a {pod_name} 2>&1)
    vm=$(timeout 10 nslookup -type=a dns-vm.openstacklocal 2>&1)
    case \"$pod $vm\" in *Name:*Name:*)
        echo \"ronghe-test: pod $(echo \"$pod\" | tr '\\n' ';')\"
        echo \"ronghe-test: vm $(echo \"$vm\" | tr '\\n' ';')\"
        break;;
    esac
    sleep 2
done
echo ronghe-test: done"
    );
    let vm_ip = cluster
        .guest_with("dns-vm", 1, "net1", Some(&user_data))
        .await?;

    // The pod: the cluster's resolver and Kubernetes' search list, then the VM on the
    // other host by its short name and by its full one.
    let (code, resolv) = cluster.exec("web", &["cat", "/etc/resolv.conf"])?;
    assert_eq!(code, 0);
    assert_eq!(
        resolv,
        format!(
            "nameserver {resolver}\n\
             search admin.svc.cluster.local svc.cluster.local cluster.local openstacklocal\n\
             options ndots:5\n"
        )
    );
    for name in ["dns-vm", "dns-vm.openstacklocal"] {
        let (addresses, output) = resolve_in_pod(&cluster, name).await?;
        assert_eq!(addresses, [vm_ip.as_str()], "{name}: {output}");
    }
    let (_, output) = cluster.exec(
        "web",
        &[
            "timeout",
            "10",
            "nslookup",
            "-type=a",
            "nobody.openstacklocal",
        ],
    )?;
    assert!(
        output.contains("NXDOMAIN") && !output.contains("Name:"),
        "{output}"
    );

    // Services: a ClusterIP Service by its full and short names and its named port's SRV
    // record, a headless one by its ready endpoint (the pod), which ordinary programs
    // find through the search list too, and an ExternalName one naming the first (its
    // CNAME followed to the ClusterIP).
    cluster
        .kubectl
        .ok(&["label", "pod", "web", "-n", "admin", "app=dnsweb"])?;
    for service in [
        serde_json::json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "dnsweb", "namespace": "admin"},
            "spec": {"selector": {"app": "dnsweb"},
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
        }),
        serde_json::json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "dnshead", "namespace": "admin"},
            "spec": {"clusterIP": "None", "selector": {"app": "dnsweb"},
                     "ports": [{"name": "http", "port": 8080}]},
        }),
        serde_json::json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "dnsalias", "namespace": "admin"},
            "spec": {"type": "ExternalName",
                     "externalName": "dnsweb.admin.svc.cluster.local"},
        }),
    ] {
        cluster
            .kubectl
            .with_stdin(&["apply", "-f", "-"], &service.to_string())?;
    }
    let cluster_ip = cluster.kubectl.ok(&[
        "get",
        "service",
        "dnsweb",
        "-n",
        "admin",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ])?;
    for (name, expected) in [
        ("dnsweb.admin.svc.cluster.local", &cluster_ip),
        ("dnsweb", &cluster_ip),
        ("dnshead.admin.svc.cluster.local", &pod_ip),
        ("dnsalias", &cluster_ip),
    ] {
        let (addresses, output) = resolve_in_pod(&cluster, name).await?;
        assert_eq!(addresses, [expected.as_str()], "{name}: {output}");
    }
    let (_, output) = resolve_in_pod(&cluster, "dnsalias.admin.svc.cluster.local").await?;
    assert!(
        output.contains("canonical name = dnsweb.admin.svc.cluster.local"),
        "{output}"
    );
    let (_, srv) = cluster.exec(
        "web",
        &[
            "timeout",
            "10",
            "nslookup",
            "-type=srv",
            "_http._tcp.dnsweb.admin.svc.cluster.local",
        ],
    )?;
    assert!(srv.contains("80 dnsweb.admin.svc.cluster.local"), "{srv}");
    let (code, body) = cluster.exec(
        "web",
        &[
            "timeout",
            "10",
            "wget",
            "-q",
            "-O",
            "-",
            "http://dnshead:8080/",
        ],
    )?;
    assert_eq!(
        (code, body.trim()),
        (0, "hi"),
        "wget through the search list"
    );

    // The VM: the resolver and search list came by DHCP, and both names resolve.
    let console = wait_for(Duration::from_secs(300), "the VM's lookups", || async {
        let console = cluster.console("dns-vm")?;
        Ok(console.contains("ronghe-test: done").then_some(console))
    })
    .await?;
    let line = |prefix: &str| {
        console
            .lines()
            .find_map(|line| {
                line.split_once(prefix)
                    .map(|(_, rest)| rest.replace(';', "\n"))
            })
            .with_context(|| {
                let tail: Vec<_> = console.lines().rev().take(30).collect();
                let tail: Vec<_> = tail.into_iter().rev().collect();
                format!(
                    "no {prefix:?} on the VM's console, which ends:\n{}",
                    tail.join("\n")
                )
            })
    };
    let vm_resolv = line("ronghe-test: resolv ")?;
    assert!(
        vm_resolv.contains(&format!("nameserver {resolver}"))
            && vm_resolv.contains(
                "search openstacklocal admin.svc.cluster.local svc.cluster.local cluster.local"
            ),
        "{vm_resolv}"
    );
    let (pod_answer, vm_answer) = (line("ronghe-test: pod ")?, line("ronghe-test: vm ")?);
    assert_eq!(
        answered_addresses(&pod_answer),
        [pod_ip.as_str()],
        "{pod_answer}"
    );
    assert_eq!(
        answered_addresses(&vm_answer),
        [vm_ip.as_str()],
        "{vm_answer}"
    );
    Ok(())
}
