//! Tenant networks end to end, on hosts simulated by network namespaces (`NetLab`): a
//! server in this machine's namespace, one `ronghe agent` per host namespace wiring its
//! pods (runc) and VMs (QEMU) with the real Linux data plane, the real kubectl and
//! openstack CLIs. Test traffic never leaves the lab's namespaces.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use ronghe_testkit::{LabCluster, NetLab};

use super::{BINARY, require_real_drivers, wait_for};

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_and_a_vm_on_two_hosts_reach_each_other_over_vxlan() -> anyhow::Result<()> {
    require_real_drivers!("a_pod_and_a_vm_on_two_hosts_reach_each_other_over_vxlan");
    if let Err(why) = NetLab::available() {
        eprintln!("SKIPPED a_pod_and_a_vm_on_two_hosts_reach_each_other_over_vxlan: {why}");
        return Ok(());
    }
    let cluster = LabCluster::start(Path::new(BINARY), 2, &[]).await?;
    let os = &cluster.os;
    cluster.create_network("net1", "sub1", "10.1.0.0/24", None)?;
    cluster.create_tiny_flavor()?;

    let pod_ip = cluster.web_pod("web", 0, "net1", "pod-says-hi").await?;
    assert!(
        pod_ip.starts_with("10.1.0."),
        "the pod's IP {pod_ip} is on net1"
    );
    let vm_ip = cluster.guest("guest", 1, "net1").await?;
    assert!(
        vm_ip.starts_with("10.1.0."),
        "the VM's IP {vm_ip} is on net1"
    );

    // The guest takes its address by DHCP once booted (TCG is slow), then serves its
    // hostname on port 80.
    let url = format!("http://{vm_ip}/");
    let body = wait_for(
        Duration::from_secs(240),
        "the VM answering the pod",
        || async {
            // (Debian's busybox 1.35 wget crashes with `-T`: `timeout` bounds it instead.)
            let (code, out) =
                cluster.exec("web", &["timeout", "5", "wget", "-q", "-O", "-", &url])?;
            Ok((code == 0).then_some(out))
        },
    )
    .await?;
    assert!(
        body.contains("guest"),
        "the VM answers with its hostname: {body:?}"
    );
    let (code, out) = cluster.exec("web", &["ping", "-c", "3", "-W", "2", &vm_ip])?;
    assert_eq!(code, 0, "the pod pings the VM across hosts: {out}");

    // Both ports are bound to their hosts and ACTIVE.
    let ports = os.json(&["port", "list", "--network", "net1", "--long"])?;
    let ports = ports.as_array().context("a port list")?;
    for ip in [&pod_ip, &vm_ip] {
        let port = ports
            .iter()
            .find(|p| p["Fixed IP Addresses"].to_string().contains(ip.as_str()))
            .with_context(|| format!("no port has {ip}: {ports:?}"))?;
        assert_eq!(port["Status"], "ACTIVE", "{port}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn routers_floating_ips_port_forwardings_and_security_groups_work_from_outside()
-> anyhow::Result<()> {
    let test = "routers_floating_ips_port_forwardings_and_security_groups_work_from_outside";
    require_real_drivers!(test);
    if let Err(why) = NetLab::available() {
        eprintln!("SKIPPED {test}: {why}");
        return Ok(());
    }
    let cluster =
        LabCluster::start(Path::new(BINARY), 2, &["--physical-network", "public=eth1"]).await?;
    let os = &cluster.os;
    cluster.create_public_network()?;
    cluster.create_network("net1", "sub1", "10.1.0.0/24", None)?;
    cluster.create_router("r1", "sub1")?;
    cluster.create_tiny_flavor()?;
    let pod_ip = cluster.web_pod("web", 0, "net1", "pod-says-hi").await?;
    // The VMs' user data asks the metadata service about themselves, and `guest` then
    // calls the external network (where a listener waits) until it gets through.
    let external_ip = cluster.lab().external().gateway_ip;
    let vm_listener = cluster.lab().tcp_listen_in(
        &cluster.lab().external().netns,
        SocketAddr::from((external_ip, 8001)),
    )?;
    let vm_calling = answer_one(vm_listener, "from-outside-to-vm");
    let vm_ip = cluster
        .guest_with(
            "guest",
            1,
            "net1",
            Some(&format!(
                "{ASK_METADATA}\n{}",
                call_until_answered(&format!("http://{external_ip}:8001/"))
            )),
        )
        .await?;
    cluster
        .guest_with("guest2", 0, "net1", Some(ASK_METADATA))
        .await?;

    // Port forwarding: FIP:8080 → the pod's 8080, allowed by a rule for 8080.
    os.ok(&[
        "security",
        "group",
        "rule",
        "create",
        "--protocol",
        "tcp",
        "--dst-port",
        "8080",
        "--remote-ip",
        "0.0.0.0/0",
        "default",
    ])?;
    let forwarded = cluster.create_floating_ip()?;
    let pod_port = cluster.port_with(&pod_ip)?;
    os.ok(&[
        "floating",
        "ip",
        "port",
        "forwarding",
        "create",
        "--internal-ip-address",
        &pod_ip,
        "--port",
        &pod_port,
        "--internal-protocol-port",
        "8080",
        "--external-protocol-port",
        "8080",
        "--protocol",
        "tcp",
        &forwarded,
    ])?;
    let url = format!("http://{forwarded}:8080/");
    let body = wait_for(
        Duration::from_secs(120),
        "the pod through its port forwarding",
        || async { cluster.get_from_outside(&url) },
    )
    .await?;
    assert!(body.contains("pod-says-hi"), "{body:?}");

    // SNAT: the pod and the VM reach the external network from the router's gateway
    // address.
    let listener = cluster.lab().tcp_listen_in(
        &cluster.lab().external().netns,
        SocketAddr::from((external_ip, 8000)),
    )?;
    let pod_calling = answer_one(listener, "outside");
    let outside = format!("http://{external_ip}:8000/");
    let (code, out) = cluster.exec("web", &["timeout", "10", "wget", "-q", "-O", "-", &outside])?;
    assert_eq!(code, 0, "the pod reaches the external network: {out}");
    assert_eq!(out, "outside");
    let console = wait_for(
        Duration::from_secs(240),
        "the VM's user data reporting the answer from outside",
        || async {
            let console = cluster.console("guest")?;
            Ok(console
                .contains("ronghe-test: outside said from-outside-to-vm")
                .then_some(console))
        },
    )
    .await
    .map_err(|error| {
        let console = cluster.console("guest").unwrap_or_default();
        error.context(format!("the VM's console:\n{console}"))
    })?;
    let gateway = os.json(&["router", "show", "r1"])?["external_gateway_info"].to_string();
    for (who, calling) in [("the pod", pod_calling), ("the VM", vm_calling)] {
        let seen = calling
            .join()
            .map_err(|_| anyhow::anyhow!("the listener panicked"))??;
        assert!(
            gateway.contains(&seen.to_string()),
            "the external network saw {seen} from {who}, not the router's gateway address: {gateway}"
        );
    }

    // The metadata service tells each VM about itself only, and a pod nothing.
    let ids = [
        os.json(&["server", "show", "guest"])?["id"].to_string(),
        os.json(&["server", "show", "guest2"])?["id"].to_string(),
    ];
    let console2 = wait_for(
        Duration::from_secs(180),
        "guest2's user data asking the metadata service",
        || async {
            let console = cluster.console("guest2")?;
            Ok(console
                .contains("ronghe-test: metadata ")
                .then_some(console))
        },
    )
    .await?;
    for (own, other, console) in [(0, 1, &console), (1, 0, &console2)] {
        let metadata = console
            .lines()
            .find_map(|line| line.split_once("ronghe-test: metadata ").map(|(_, m)| m))
            .with_context(|| format!("no metadata line on the console:\n{console}"))?;
        assert!(
            metadata.contains(&format!("\"uuid\": {}", ids[own]))
                || metadata.contains(&format!("\"uuid\":{}", ids[own])),
            "the VM learns its own id {}: {metadata}",
            ids[own]
        );
        assert!(
            !metadata.contains(ids[other].trim_matches('"')),
            "the VM learnt the other VM's id: {metadata}"
        );
    }
    let (code, out) = cluster.exec(
        "web",
        &[
            "sh",
            "-c",
            &format!("timeout 5 wget -q -O - {METADATA_URL} 2>&1"),
        ],
    )?;
    // (Pods get no route to it: the request dies at the router.)
    assert!(
        code != 0 && !out.contains("uuid"),
        "a pod asking the metadata service learns nothing: {code} {out}"
    );

    // A floating IP on the VM, and a pod in another security group: port 80 is closed to
    // both by the default group until a rule opens it, and closed again once the rule is
    // removed; a pod in the VM's own group gets through all along.
    let floating = cluster.create_floating_ip()?;
    let vm_port = cluster.port_with(&vm_ip)?;
    os.ok(&["floating", "ip", "set", "--port", &vm_port, &floating])?;
    let vm_url = format!("http://{floating}/");
    let outsider_ip = cluster.web_pod("outsider", 0, "net1", "outsider").await?;
    os.ok(&["security", "group", "create", "others"])?;
    os.ok(&[
        "port",
        "set",
        "--no-security-group",
        "--security-group",
        "others",
        &cluster.port_with(&outsider_ip)?,
    ])?;
    let pod_to_vm = format!("http://{vm_ip}/");
    let from_pod = |pod: &'static str| {
        let pod_to_vm = pod_to_vm.clone();
        let cluster = &cluster;
        move || -> anyhow::Result<Option<String>> {
            let (code, out) =
                cluster.exec(pod, &["timeout", "5", "wget", "-q", "-O", "-", &pod_to_vm])?;
            Ok((code == 0).then_some(out))
        }
    };
    let (outsider, web) = (from_pod("outsider"), from_pod("web"));
    wait_for(
        Duration::from_secs(60),
        "the other group's pod shut out of the VM",
        || async { Ok(outsider()?.is_none().then_some(())) },
    )
    .await?;
    assert_eq!(
        cluster.get_from_outside(&vm_url)?,
        None,
        "no rule allows port 80 from outside yet"
    );
    assert!(web()?.is_some(), "a pod in the VM's group reaches it");
    let rule = os.json(&[
        "security",
        "group",
        "rule",
        "create",
        "--protocol",
        "tcp",
        "--dst-port",
        "80",
        "default",
    ])?;
    let rule_id = rule["id"].as_str().context("a rule id")?.to_owned();
    let body = wait_for(
        Duration::from_secs(240),
        "the VM through its floating IP",
        || async { cluster.get_from_outside(&vm_url) },
    )
    .await?;
    assert!(body.contains("guest"), "{body:?}");
    let body = wait_for(
        Duration::from_secs(60),
        "the other group's pod reaching the VM",
        || async { outsider() },
    )
    .await?;
    assert!(body.contains("guest"), "{body:?}");
    os.ok(&["security", "group", "rule", "delete", &rule_id])?;
    wait_for(Duration::from_secs(60), "port 80 closed again", || async {
        Ok(cluster.get_from_outside(&vm_url)?.is_none().then_some(()))
    })
    .await?;
    assert_eq!(
        cluster.get_from_outside(&vm_url)?,
        None,
        "port 80 stays closed"
    );
    assert_eq!(
        outsider()?,
        None,
        "port 80 closed to the other group's pod again"
    );
    assert!(web()?.is_some(), "the VM's own group still gets through");
    // The forwarding to the pod, under its own rule, is untouched.
    assert!(
        cluster
            .get_from_outside(&url)?
            .is_some_and(|b| b.contains("pod-says-hi"))
    );
    Ok(())
}

/// The metadata service's answer about the caller, as a VM asks it.
const METADATA_URL: &str = "http://169.254.169.254/openstack/latest/meta_data.json";

/// User data that prints the VM's metadata on one console line.
const ASK_METADATA: &str = "#!/bin/sh
echo \"ronghe-test: metadata $(timeout 10 wget -q -O - http://169.254.169.254/openstack/latest/meta_data.json | tr -d '\\n')\"";

/// User-data lines that GET `url` every 2 s (for up to 3 minutes) until it answers, then
/// print the answer on the console.
fn call_until_answered(url: &str) -> String {
    format!(
        "i=0
while [ $i -lt 90 ]; do
    i=$((i + 1))
    if out=$(timeout 5 wget -q -O - {url}); then
        echo \"ronghe-test: outside said $out\"
        break
    fi
    sleep 2
done"
    )
}

/// Accepts one HTTP connection on `listener` (within 5 minutes) in a thread, answers
/// `body`, and returns the caller's address.
fn answer_one(
    listener: std::net::TcpListener,
    body: &'static str,
) -> std::thread::JoinHandle<anyhow::Result<std::net::IpAddr>> {
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        listener.set_nonblocking(true)?;
        let deadline = std::time::Instant::now() + Duration::from_secs(300);
        let (mut stream, peer) = loop {
            match listener.accept() {
                Ok(accepted) => break accepted,
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                    anyhow::ensure!(
                        std::time::Instant::now() < deadline,
                        "nobody called within 5 minutes"
                    );
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(error) => return Err(error.into()),
            }
        };
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut request = [0u8; 1024];
        let _ = stream.read(&mut request)?;
        write!(
            stream,
            "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )?;
        Ok(peer.ip())
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn tenants_with_one_cidr_stay_apart_and_a_spoofing_pod_is_contained() -> anyhow::Result<()> {
    let test = "tenants_with_one_cidr_stay_apart_and_a_spoofing_pod_is_contained";
    require_real_drivers!(test);
    if let Err(why) = NetLab::available() {
        eprintln!("SKIPPED {test}: {why}");
        return Ok(());
    }
    let cluster = LabCluster::start(Path::new(BINARY), 2, &[]).await?;
    let os = &cluster.os;
    os.ok(&["project", "create", "other"])?;
    cluster.create_network("net-a", "sub-a", "10.5.0.0/24", None)?;
    cluster.create_network("net-b", "sub-b", "10.5.0.0/24", Some("other"))?;
    wait_for(
        Duration::from_secs(30),
        "the other project's namespace",
        || async {
            Ok(cluster
                .kubectl
                .ok(&["get", "namespace", "other"])
                .is_ok()
                .then_some(()))
        },
    )
    .await?;
    let a1 = cluster.web_pod("a1", 0, "net-a", "pod-a1").await?;
    let a2 = cluster.web_pod("a2", 1, "net-a", "pod-a2").await?;
    let b1 = cluster
        .web_pod_in("other", "b1", 1, "net-b", "pod-b1")
        .await?;
    for ip in [&a1, &a2, &b1] {
        assert!(ip.starts_with("10.5.0."), "{ip} is on 10.5.0.0/24");
    }

    // Same tenant, across hosts: through.
    let url = format!("http://{a2}:8080/");
    let body = wait_for(Duration::from_secs(60), "a1 reaching a2", || async {
        let (code, out) = cluster.exec("a1", &["timeout", "5", "wget", "-q", "-O", "-", &url])?;
        Ok((code == 0).then_some(out))
    })
    .await?;
    assert!(body.contains("pod-a2"), "{body:?}");

    // The other tenant's pod, by its address on the same CIDR: never the other tenant's
    // answer (the address is either free on net-a, or another net-a port's).
    let url = format!("http://{b1}:8080/");
    for _ in 0..3 {
        let (_, out) = cluster.exec("a1", &["timeout", "3", "wget", "-q", "-O", "-", &url])?;
        assert!(
            !out.contains("pod-b1"),
            "a1 reached the other tenant's pod: {out:?}"
        );
    }

    // a1 sends from an address not its own (added behind its back, in its namespace):
    // nothing gets through, while its own address still does.
    let netns = cluster.pod_netns(0, "admin", "a1")?;
    let lab = cluster.lab();
    let spoofed = "10.5.0.250";
    lab.exec(
        &netns,
        &["ip", "addr", "add", &format!("{spoofed}/24"), "dev", "eth0"],
    )
    .and_then(|output| {
        anyhow::ensure!(output.status.success(), "adding {spoofed}: {output:?}");
        Ok(())
    })?;
    let own = lab.exec(&netns, &["busybox", "ping", "-c", "2", "-W", "2", &a2])?;
    assert!(
        own.status.success(),
        "a1 pings a2 from its own address: {own:?}"
    );
    let spoof = lab.exec(
        &netns,
        &["busybox", "ping", "-c", "2", "-W", "2", "-I", spoofed, &a2],
    )?;
    assert!(
        !spoof.status.success(),
        "a1's spoofed pings got through: {spoof:?}"
    );
    Ok(())
}
