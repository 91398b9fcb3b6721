//! The network lab: its hosts reach each other over the underlay and nothing lands in the
//! root namespace, its relays carry bytes exactly both ways, and dropping it (after a panic
//! too) removes its namespaces, processes and relays. Needs root, `ip` and busybox.

use std::collections::BTreeSet;
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use ronghe_testkit::NetLab;

/// Whether the lab can run here; prints why a test is skipped when it cannot.
fn lab_available(test: &str) -> bool {
    let reason = match NetLab::available() {
        Ok(()) if Path::new("/bin/busybox").exists() => return true,
        Ok(()) => "/bin/busybox is missing".to_owned(),
        Err(reason) => reason,
    };
    eprintln!("skipping {test}: {reason}");
    false
}

/// Checks `condition` until it holds, for at most `timeout`.
fn wait_until(
    what: &str,
    timeout: Duration,
    mut condition: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if condition()? {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what}: not within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Bytes that show a dropped, doubled or reordered chunk.
fn pattern(length: usize) -> Vec<u8> {
    (0..length).map(|index| (index % 251) as u8).collect()
}

/// Sends `payload`, half-closes, and returns everything that comes back until the far end
/// closes.
fn round_trip(stream: TcpStream, payload: &[u8]) -> anyhow::Result<Vec<u8>> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut writer = stream.try_clone()?;
    let to_send = payload.to_vec();
    let sender = std::thread::spawn(move || -> std::io::Result<()> {
        writer.write_all(&to_send)?;
        writer.shutdown(Shutdown::Write)
    });
    let mut reader = stream;
    let mut received = Vec::new();
    reader
        .read_to_end(&mut received)
        .context("reading the echo")?;
    sender
        .join()
        .map_err(|_| anyhow::anyhow!("the sending thread panicked"))?
        .context("sending")?;
    Ok(received)
}

/// Echoes `connections` connections on `listener`, one after the other.
fn serve_echo(listener: std::net::TcpListener, connections: usize) -> std::io::Result<()> {
    for _ in 0..connections {
        let (mut stream, _) = listener.accept()?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut reader = stream.try_clone()?;
        std::io::copy(&mut reader, &mut stream)?;
        stream.shutdown(Shutdown::Write)?;
    }
    Ok(())
}

fn root_ip(args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("ip").args(args).output()?;
    ensure!(output.status.success(), "ip {args:?} failed: {output:?}");
    Ok(String::from_utf8(output.stdout)?)
}

/// The names of the root namespace's links.
fn root_link_names() -> anyhow::Result<BTreeSet<String>> {
    Ok(root_ip(&["-o", "link", "show"])?
        .lines()
        .filter_map(|line| line.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name).to_owned())
        .collect())
}

/// The root namespace's IPv4 addresses.
fn root_ipv4_addresses() -> anyhow::Result<BTreeSet<Ipv4Addr>> {
    Ok(root_ip(&["-o", "-4", "addr", "show"])?
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            words.find(|word| *word == "inet")?;
            words.next()?.split('/').next()?.parse().ok()
        })
        .collect())
}

fn lab_netns(prefix: &str) -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    match std::fs::read_dir("/run/netns") {
        Ok(entries) => {
            for entry in entries {
                let name = entry?.file_name().to_string_lossy().into_owned();
                if name.starts_with(prefix) {
                    names.push(name);
                }
            }
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error.into()),
    }
    names.sort();
    Ok(names)
}

#[test]
fn hosts_share_an_underlay_and_an_external_network_and_the_root_namespace_is_untouched()
-> anyhow::Result<()> {
    if !lab_available(
        "hosts_share_an_underlay_and_an_external_network_and_the_root_namespace_is_untouched",
    ) {
        return Ok(());
    }
    let links_before = root_link_names()?;
    let addresses_before = root_ipv4_addresses()?;
    let lab = NetLab::new(2)?;
    let (host0, host1) = (lab.host(0), lab.host(1));

    let peer = host1.underlay_ip.to_string();
    wait_until(
        "host 0 pings host 1 over the underlay",
        Duration::from_secs(15),
        || {
            let output = lab.exec(
                &host0.netns,
                &["busybox", "ping", "-c", "1", "-W", "1", &peer],
            )?;
            Ok(output.status.success())
        },
    )?;

    let external = lab.external();
    let bridge = lab.exec(
        &external.netns,
        &["ip", "-o", "-4", "addr", "show", "dev", &external.bridge],
    )?;
    let bridge = String::from_utf8(bridge.stdout)?;
    assert!(
        bridge.contains("inet 172.24.4.1/24"),
        "the external bridge: {bridge}"
    );
    for host in lab.hosts() {
        let eth0 = lab.exec(
            &host.netns,
            &["ip", "-o", "-4", "addr", "show", "dev", "eth0"],
        )?;
        let eth0 = String::from_utf8(eth0.stdout)?;
        assert!(
            eth0.contains(&format!("inet {}/24", host.underlay_ip)),
            "{} eth0: {eth0}",
            host.netns
        );
        let eth1_addresses = lab.exec(&host.netns, &["ip", "-o", "addr", "show", "dev", "eth1"])?;
        assert!(eth1_addresses.status.success());
        assert_eq!(
            String::from_utf8(eth1_addresses.stdout)?,
            "",
            "{} eth1 has an address",
            host.netns
        );
        let eth1 = lab.exec(&host.netns, &["ip", "-o", "link", "show", "dev", "eth1"])?;
        let eth1 = String::from_utf8(eth1.stdout)?;
        assert!(
            eth1.contains(",UP"),
            "{} eth1 is not up: {eth1}",
            host.netns
        );
    }
    // The external network is reachable from a host only through eth1 once something
    // (the agent) addresses it; here the host has no route to it.
    let unreachable = lab.exec(
        &host0.netns,
        &["busybox", "ping", "-c", "1", "-W", "1", "172.24.4.1"],
    )?;
    assert!(!unreachable.status.success());

    let lab_links = ["eth0", "eth1", "h0", "h1", "br-ul", "br-ext"];
    let new_links: Vec<String> = root_link_names()?
        .difference(&links_before)
        .filter(|name| lab_links.contains(&name.as_str()))
        .cloned()
        .collect();
    assert!(
        new_links.is_empty(),
        "the lab made root links: {new_links:?}"
    );
    let (underlay, _) = lab.underlay_subnet();
    let new_addresses: Vec<Ipv4Addr> = root_ipv4_addresses()?
        .difference(&addresses_before)
        .filter(|address| {
            address.octets()[..3] == underlay.octets()[..3] || address.octets()[..3] == [172, 24, 4]
        })
        .copied()
        .collect();
    assert!(
        new_addresses.is_empty(),
        "the lab gave the root namespace addresses: {new_addresses:?}"
    );

    assert!(lab.exec("not-a-lab-namespace", &["true"]).is_err());
    assert_eq!(
        lab_netns(lab.prefix())?,
        vec![
            format!("{}ext", lab.prefix()),
            format!("{}h0", lab.prefix()),
            format!("{}h1", lab.prefix()),
            format!("{}ul", lab.prefix()),
        ]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_into_root_carries_a_hosts_connections_to_a_root_listener() -> anyhow::Result<()> {
    if !lab_available("relay_into_root_carries_a_hosts_connections_to_a_root_listener") {
        return Ok(());
    }
    let lab = NetLab::new(1)?;
    let host = lab.host(0).netns.clone();
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let root_address = echo.local_addr()?;
    let echo_task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = echo.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let (mut reader, mut writer) = stream.into_split();
                let _ = tokio::io::copy(&mut reader, &mut writer).await;
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut writer).await;
            });
        }
    });

    // The host's loopback is its own: the root listener's port is free there until the
    // relay takes it.
    assert!(
        tokio::task::block_in_place(|| lab.tcp_connect_in(&host, root_address)).is_err(),
        "{root_address} answered inside {host} before any relay"
    );
    lab.relay_into_root(&host, root_address.port(), root_address)?;

    let payload = pattern(1 << 20);
    let stream = tokio::task::block_in_place(|| lab.tcp_connect_in(&host, root_address))?;
    let to_send = payload.clone();
    let echoed = tokio::task::spawn_blocking(move || round_trip(stream, &to_send)).await??;
    assert!(
        echoed == payload,
        "{} of {} bytes came back, or different ones",
        echoed.len(),
        payload.len()
    );

    let script = format!(
        "printf 'through the relay' | busybox nc 127.0.0.1 {}",
        root_address.port()
    );
    let output = tokio::task::block_in_place(|| lab.exec(&host, &["sh", "-c", &script]))?;
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8(output.stdout)?, "through the relay");

    drop(lab);
    echo_task.abort();
    Ok(())
}

#[test]
fn relay_from_root_reaches_listeners_inside_the_hosts() -> anyhow::Result<()> {
    if !lab_available("relay_from_root_reaches_listeners_inside_the_hosts") {
        return Ok(());
    }
    let lab = NetLab::new(2)?;
    let (host0, host1) = (lab.host(0), lab.host(1));
    let listener = lab.tcp_listen_in(&host1.netns, SocketAddr::from((host1.underlay_ip, 0)))?;
    let target = listener.local_addr()?;
    let echo = std::thread::spawn(move || serve_echo(listener, 2));

    let payload = pattern(1 << 20);
    // From the listener's own host, and from the other across the underlay bridge.
    for via in [&host1.netns, &host0.netns] {
        let root_address = lab.relay_from_root(via, target)?;
        assert!(root_address.ip().is_loopback());
        let echoed = round_trip(TcpStream::connect(root_address)?, &payload)?;
        assert!(
            echoed == payload,
            "via {via}: {} of {} bytes came back, or different ones",
            echoed.len(),
            payload.len()
        );
    }
    echo.join()
        .map_err(|_| anyhow::anyhow!("the echo thread panicked"))??;

    // A process the lab spawned in host 1, reached from the root through host 0.
    let mut netcat = Command::new("busybox");
    netcat
        .args(["nc", "-l", "-p", "9000", "-e", "busybox", "cat"])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    lab.spawn(&host1.netns, netcat)?;
    let root_address =
        lab.relay_from_root(&host0.netns, SocketAddr::from((host1.underlay_ip, 9000)))?;
    // Until nc listens, the relay's inner connection is refused and it closes ours.
    wait_until(
        "nc in host 1 echoes through the relay",
        Duration::from_secs(15),
        || {
            let Ok(stream) = TcpStream::connect(root_address) else {
                return Ok(false);
            };
            Ok(round_trip(stream, b"ping").is_ok_and(|echoed| echoed == b"ping"))
        },
    )?;
    Ok(())
}

#[test]
fn dropping_the_lab_removes_its_namespaces_processes_and_relays() -> anyhow::Result<()> {
    if !lab_available("dropping_the_lab_removes_its_namespaces_processes_and_relays") {
        return Ok(());
    }
    let lab = NetLab::new(2)?;
    let prefix = lab.prefix().to_owned();
    let mut sleeper = Command::new("busybox");
    sleeper.args(["sleep", "600"]);
    let sleeper = lab.spawn(&lab.host(0).netns, sleeper)?;
    assert!(Path::new(&format!("/proc/{sleeper}")).exists());
    // What an agent on host 0 would name one of its pods' namespaces.
    let pod_netns = format!("{}pod1", lab.prefix_for_host(0));
    let status = Command::new("ip")
        .args(["netns", "add", &pod_netns])
        .status()?;
    ensure!(status.success(), "ip netns add {pod_netns}: {status}");
    let relay = lab.relay_from_root(
        &lab.host(0).netns,
        SocketAddr::from((lab.host(1).underlay_ip, 9)),
    )?;
    assert_eq!(lab_netns(&prefix)?.len(), 5, "{:?}", lab_netns(&prefix)?);

    drop(lab);

    assert_eq!(lab_netns(&prefix)?, Vec::<String>::new());
    assert!(
        !Path::new(&format!("/proc/{sleeper}")).exists(),
        "the spawned process {sleeper} is still there"
    );
    assert!(
        TcpStream::connect(relay).is_err(),
        "the relay on {relay} still accepts"
    );
    Ok(())
}

#[test]
fn a_panicking_test_still_deletes_its_lab() -> anyhow::Result<()> {
    if !lab_available("a_panicking_test_still_deletes_its_lab") {
        return Ok(());
    }
    let (prefix_sender, prefix) = std::sync::mpsc::channel();
    let outcome = std::panic::catch_unwind(move || {
        let lab = NetLab::new(1).expect("a lab");
        prefix_sender
            .send(lab.prefix().to_owned())
            .expect("the test waits for the prefix");
        panic!("this test panics on purpose with a lab alive");
    });
    assert!(outcome.is_err());
    let prefix = prefix.recv()?;
    assert_eq!(lab_netns(&prefix)?, Vec::<String>::new());
    Ok(())
}

/// Tests share a lab between tasks and threads (`Arc<NetLab>`).
#[test]
fn a_lab_can_be_shared_between_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<NetLab>();
}
