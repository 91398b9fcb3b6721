//! The index from API objects, and the server over real sockets on 127.0.0.1: VM "web-1"
//! has 127.0.0.1 on network "net-a" (so the test client is it), VM "db-1" has 10.0.0.9.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::serve::{Limits, serve_with};
use super::*;

const WEB: &str = "0b5e7c3a-1111-4c4c-9e9e-000000000001";
const DB: &str = "9f00d1e2-2222-4c4c-9e9e-000000000002";
const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleExampleExampleExampleExampleExa alice@laptop";
/// `#!/bin/sh\necho hi\n`, base64.
const USER_DATA: &str = "IyEvYmluL3NoCmVjaG8gaGkK";

fn vm(uid: &str, name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "compute.ronghe.io/v1", "kind": "VirtualMachine",
        "metadata": {"name": name, "namespace": "demo", "uid": uid,
                     "annotations": {USER_ANNOTATION: "alice-id"}},
        "spec": spec,
    })
}

fn port(uid: &str, vm: &str, network: &str, ip: &str, nic: &str) -> Value {
    json!({
        "apiVersion": "network.ronghe.io/v1", "kind": "Port",
        "metadata": {"name": uid, "namespace": "demo", "uid": uid,
                     "annotations": {annotation::NIC_INDEX: nic}},
        "spec": {"networkId": network, "macAddress": format!("fa:16:3e:00:00:{nic:0>2}"),
                 "fixedIps": [{"subnetId": "subnet", "ipAddress": ip}],
                 "deviceOwner": owner::VM, "deviceId": vm, "securityGroups": ["sg-default"]},
    })
}

fn keypair(name: &str, user: &str, key: &str) -> Value {
    json!({
        "apiVersion": "compute.ronghe.io/v1", "kind": "Keypair",
        "metadata": {"name": format!("{user}-{name}"), "namespace": "demo"},
        "spec": {"name": name, "userId": user, "publicKey": key, "fingerprint": "00", "type": "ssh"},
    })
}

fn index() -> MetadataIndex {
    let vms = [
        vm(
            WEB,
            "web-1",
            json!({
                "flavorRef": "m1.small", "flavor": {"name": "m1.small", "vcpus": 1, "ram": 512},
                "imageRef": "debian-12", "keyName": "laptop", "availabilityZone": "zone-a",
                "userData": USER_DATA, "metadata": {"role": "web"},
            }),
        ),
        vm(DB, "db_1.Primary", json!({"flavorRef": "m1.large"})),
    ];
    let ports = [
        port("port-web-a", WEB, "net-a", "127.0.0.1", "0"),
        port("port-web-b", WEB, "net-b", "10.1.0.5", "1"),
        port("port-db", DB, "net-a", "10.0.0.9", "0"),
        // A port of another project naming web-1 as its device learns nothing.
        json!({"metadata": {"name": "spy", "namespace": "other", "uid": "spy"},
               "spec": {"networkId": "net-a", "fixedIps": [{"ipAddress": "10.0.0.66"}],
                        "deviceOwner": owner::VM, "deviceId": WEB}}),
        // Nor does the network's DHCP port.
        json!({"metadata": {"name": "dhcp", "namespace": "demo", "uid": "dhcp"},
               "spec": {"networkId": "net-a", "fixedIps": [{"ipAddress": "10.0.0.2"}],
                        "deviceOwner": owner::DHCP, "deviceId": "dhcp-net-a"}}),
    ];
    let keypairs = [
        keypair("laptop", "bob-id", "ssh-ed25519 BOBS"),
        keypair("laptop", "alice-id", KEY),
    ];
    let floating_ips = [json!({
        "metadata": {"name": "fip", "namespace": "demo", "uid": "fip"},
        "spec": {"floatingNetworkId": "public", "floatingIpAddress": "203.0.113.7",
                 "portId": "port-web-a", "fixedIpAddress": "127.0.0.1"},
    })];
    MetadataIndex::build(&ports, &vms, &keypairs, &floating_ips)
}

#[test]
fn the_index_answers_each_vm_on_its_own_addresses() {
    let index = index();
    assert_eq!(index.len(), 3, "{index:?}");
    let web = index
        .lookup("net-a", "127.0.0.1".parse().unwrap())
        .expect("web-1 on net-a");
    assert_eq!(web.uuid, WEB);
    assert_eq!(web.fixed_ips, ["127.0.0.1".parse::<IpAddr>().unwrap()]);
    assert_eq!(web.floating_ip, Some("203.0.113.7".parse().unwrap()));
    assert_eq!(
        web.public_keys,
        [PublicKey {
            name: "laptop".into(),
            kind: "ssh".into(),
            data: KEY.into()
        }],
        "alice's laptop key, not bob's"
    );
    assert_eq!(web.user_data.as_deref(), Some(&b"#!/bin/sh\necho hi\n"[..]));
    assert_eq!(web.meta["role"], "web");
    assert_eq!(web.interfaces.len(), 2);
    assert_eq!(web.interfaces[0].port_id, "port-web-a", "NIC order");
    let on_b = index
        .lookup("net-b", "10.1.0.5".parse().unwrap())
        .expect("web-1 on net-b");
    assert_eq!(on_b.uuid, WEB);
    assert_eq!(on_b.fixed_ips, ["10.1.0.5".parse::<IpAddr>().unwrap()]);
    assert_eq!(
        on_b.floating_ip,
        Some("203.0.113.7".parse().unwrap()),
        "the VM's floating IP when this network's port has none"
    );
    let db = index
        .lookup("net-a", "10.0.0.9".parse().unwrap())
        .expect("db-1");
    assert_eq!(db.uuid, DB);
    assert_eq!(db.hostname, "db-1-primary");
    assert_eq!(db.availability_zone, DEFAULT_AVAILABILITY_ZONE);
    assert_eq!(db.instance_type, "m1.large", "the flavorRef without a copy");
    assert!(db.public_keys.is_empty() && db.user_data.is_none());
    assert!(
        index
            .lookup("net-a", "10.0.0.66".parse().unwrap())
            .is_none()
    );
    assert!(index.lookup("net-a", "10.0.0.2".parse().unwrap()).is_none());
    assert!(index.lookup("net-b", "10.0.0.9".parse().unwrap()).is_none());
    assert!(
        index
            .lookup("net-a", "::ffff:127.0.0.1".parse().unwrap())
            .is_some(),
        "an IPv4-mapped caller is its IPv4 address"
    );
    let debug = format!("{web:?}");
    assert!(
        !debug.contains("echo hi") && !debug.contains("AAAAC3"),
        "{debug}"
    );
}

#[test]
fn an_address_two_vms_claim_answers_neither() {
    let vms = [vm(WEB, "web-1", json!({})), vm(DB, "db-1", json!({}))];
    let ports = [
        port("p1", WEB, "net-a", "10.0.0.5", "0"),
        port("p2", DB, "net-a", "10.0.0.5", "0"),
    ];
    let index = MetadataIndex::build(&ports, &vms, &[], &[]);
    assert!(index.is_empty(), "{index:?}");
}

#[test]
fn hostnames_are_sanitized_as_nova_does() {
    assert_eq!(sanitize_hostname("My Server_1", "u"), "my-server-1");
    assert_eq!(sanitize_hostname("--ok--", "u"), "ok");
    assert_eq!(sanitize_hostname("***", "u"), "server-u");
    assert_eq!(sanitize_hostname(&"a".repeat(80), "u").len(), 63);
}

/// A server on 127.0.0.1:0 for `network`, stopped (and awaited) on drop.
struct Server {
    address: SocketAddr,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Server {
    fn start(network: &str, index: MetadataIndex, limits: Limits) -> anyhow::Result<Server> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let address = listener.local_addr()?;
        let (_index_sender, index_receiver) = watch::channel(Arc::new(index));
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(serve_with(
            listener,
            network.to_owned(),
            index_receiver,
            stopped,
            limits,
        ));
        Ok(Server {
            address,
            stop,
            task: Some(task),
        })
    }

    async fn request(&self, method: &str, path: &str) -> anyhow::Result<Answer> {
        let stream = tokio::net::TcpStream::connect(self.address).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let request = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, "169.254.169.254")
            .body(Empty::<Bytes>::new())?;
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Answer {
            status,
            content_type,
            body: String::from_utf8(body.to_vec()).context("a text body")?,
        })
    }

    async fn get(&self, path: &str) -> anyhow::Result<Answer> {
        self.request("GET", path).await
    }

    /// Asks the server to stop and waits (boundedly) for it to return.
    async fn shut_down(mut self) -> anyhow::Result<()> {
        self.stop.send_replace(true);
        let task = self.task.take().context("not yet stopped")?;
        tokio::time::timeout(Duration::from_secs(20), task)
            .await
            .context("the server stops")???;
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[derive(Debug)]
struct Answer {
    status: u16,
    content_type: String,
    body: String,
}

impl Answer {
    fn ok(self) -> anyhow::Result<String> {
        ensure!(self.status == 200, "{self:?}");
        Ok(self.body)
    }
}

#[tokio::test]
async fn the_openstack_tree_tells_the_caller_about_itself() -> anyhow::Result<()> {
    let server = Server::start("net-a", index(), Limits::default())?;
    let versions = server.get("/openstack").await?.ok()?;
    assert!(versions.lines().any(|v| v == "2018-08-27"), "{versions}");
    assert_eq!(versions.lines().last(), Some("latest"));
    let files = server.get("/openstack/latest/").await?.ok()?;
    for file in [
        "meta_data.json",
        "network_data.json",
        "user_data",
        "vendor_data.json",
    ] {
        assert!(files.lines().any(|f| f == file), "{file} in {files}");
    }
    for version in ["latest", "2018-08-27"] {
        let answer = server
            .get(&format!("/openstack/{version}/meta_data.json"))
            .await?;
        assert_eq!(answer.content_type, "application/json");
        let meta: Value = serde_json::from_str(&answer.ok()?)?;
        assert_eq!(meta["uuid"], WEB, "the caller's own VM, not db-1");
        assert_eq!(meta["name"], "web-1");
        assert_eq!(meta["hostname"], "web-1");
        assert_eq!(meta["availability_zone"], "zone-a");
        assert_eq!(meta["project_id"], "demo");
        assert_eq!(meta["launch_index"], 0);
        assert_eq!(meta["meta"], json!({"role": "web"}));
        assert_eq!(meta["devices"], json!([]));
        assert_eq!(meta["public_keys"], json!({"laptop": KEY}));
        assert_eq!(
            meta["keys"],
            json!([{"name": "laptop", "type": "ssh", "data": KEY}])
        );
    }
    let network: Value = serde_json::from_str(
        &server
            .get("/openstack/latest/network_data.json")
            .await?
            .ok()?,
    )?;
    assert_eq!(
        network["links"][0]["ethernet_mac_address"],
        "fa:16:3e:00:00:00"
    );
    assert_eq!(network["links"][0]["vif_id"], "port-web-a");
    assert_eq!(network["links"][1]["vif_id"], "port-web-b");
    assert_eq!(network["networks"][0]["type"], "ipv4_dhcp");
    assert_eq!(network["networks"][0]["link"], network["links"][0]["id"]);
    assert_eq!(network["networks"][1]["network_id"], "net-b");
    assert_eq!(network["services"], json!([]));
    assert_eq!(
        server
            .get("/openstack/latest/vendor_data.json")
            .await?
            .ok()?,
        "{}"
    );
    assert_eq!(
        server.get("/openstack/latest/user_data").await?.ok()?,
        "#!/bin/sh\necho hi\n"
    );
    let old = server.get("/openstack/2012-08-10").await?.ok()?;
    assert!(
        !old.contains("network_data.json"),
        "network data came in 2015-10-15: {old}"
    );
    assert_eq!(
        server
            .get("/openstack/2012-08-10/network_data.json")
            .await?
            .status,
        404
    );
    assert_eq!(
        server
            .get("/openstack/1999-01-01/meta_data.json")
            .await?
            .status,
        404
    );
    server.shut_down().await
}

#[tokio::test]
async fn the_ec2_tree_has_its_leaves() -> anyhow::Result<()> {
    let server = Server::start("net-a", index(), Limits::default())?;
    let versions = server.get("/").await?.ok()?;
    assert!(versions.lines().any(|v| v == "2009-04-04"), "{versions}");
    assert_eq!(versions.lines().last(), Some("latest"));
    assert_eq!(server.get("/latest").await?.ok()?, "meta-data/\nuser-data");
    let listing = server.get("/latest/meta-data/").await?.ok()?;
    for entry in [
        "ami-id",
        "ami-launch-index",
        "hostname",
        "instance-id",
        "instance-type",
        "local-hostname",
        "local-ipv4",
        "placement/",
        "public-hostname",
        "public-ipv4",
        "public-keys/",
        "reservation-id",
        "security-groups",
    ] {
        assert!(listing.lines().any(|l| l == entry), "{entry} in {listing}");
    }
    for version in ["latest", "2009-04-04"] {
        let leaf = |name: &str| format!("/{version}/meta-data/{name}");
        let expected = [
            ("ami-id", "debian-12"),
            ("ami-launch-index", "0"),
            ("hostname", "web-1"),
            ("local-hostname", "web-1"),
            ("public-hostname", "web-1"),
            ("instance-id", "i-0b5e7c3a"),
            ("reservation-id", "r-0b5e7c3a"),
            ("instance-type", "m1.small"),
            ("local-ipv4", "127.0.0.1"),
            ("public-ipv4", "203.0.113.7"),
            ("security-groups", "sg-default"),
            ("placement/availability-zone", "zone-a"),
            ("public-keys/", "0=laptop"),
            ("public-keys/0/", "openssh-key"),
            ("public-keys/0/openssh-key", KEY),
        ];
        for (name, value) in expected {
            let answer = server.get(&leaf(name)).await?;
            assert!(answer.content_type.starts_with("text/plain"), "{answer:?}");
            assert_eq!(answer.ok()?, value, "{name}");
        }
    }
    assert_eq!(
        server.get("/latest/user-data").await?.ok()?,
        "#!/bin/sh\necho hi\n"
    );
    assert_eq!(server.get("/latest/meta-data/nothing").await?.status, 404);
    assert_eq!(
        server
            .get("/latest/meta-data/public-keys/1/openssh-key")
            .await?
            .status,
        404
    );
    assert_eq!(server.get("/2010-01-01/meta-data/").await?.status, 404);
    server.shut_down().await
}

#[tokio::test]
async fn methods_other_than_get_and_head_are_refused() -> anyhow::Result<()> {
    let server = Server::start("net-a", index(), Limits::default())?;
    let head = server.request("HEAD", "/latest/meta-data/hostname").await?;
    assert_eq!((head.status, head.body.as_str()), (200, ""));
    for method in ["POST", "PUT", "DELETE"] {
        let answer = server.request(method, "/openstack/latest/password").await?;
        assert_eq!(answer.status, 405, "{method}");
    }
    server.shut_down().await
}

#[tokio::test]
async fn a_vm_without_user_data_or_keys_gets_404_for_them() -> anyhow::Result<()> {
    // db-1 at 127.0.0.1 this time.
    let vms = [vm(DB, "db-1", json!({"flavorRef": "m1.large"}))];
    let ports = [port("port-db", DB, "net-a", "127.0.0.1", "0")];
    let server = Server::start(
        "net-a",
        MetadataIndex::build(&ports, &vms, &[], &[]),
        Limits::default(),
    )?;
    assert_eq!(server.get("/latest/user-data").await?.status, 404);
    assert_eq!(server.get("/openstack/latest/user_data").await?.status, 404);
    assert_eq!(server.get("/latest").await?.ok()?, "meta-data/");
    let files = server.get("/openstack/latest").await?.ok()?;
    assert!(!files.contains("user_data"), "{files}");
    let listing = server.get("/latest/meta-data/").await?.ok()?;
    assert!(!listing.contains("public-keys"), "{listing}");
    assert_eq!(
        server.get("/latest/meta-data/public-keys/").await?.status,
        404
    );
    assert_eq!(server.get("/latest/meta-data/public-ipv4").await?.ok()?, "");
    let meta: Value =
        serde_json::from_str(&server.get("/openstack/latest/meta_data.json").await?.ok()?)?;
    assert_eq!(meta["uuid"], DB);
    assert!(meta.get("public_keys").is_none() && meta.get("keys").is_none());
    server.shut_down().await
}

#[tokio::test]
async fn a_caller_that_is_no_vm_of_the_network_gets_404() -> anyhow::Result<()> {
    // The same VMs, served for net-b: 127.0.0.1 is web-1's address on net-a only.
    let other_network = Server::start("net-b", index(), Limits::default())?;
    // And on net-a, with web-1 gone: 127.0.0.1 is nobody.
    let vms = [vm(DB, "db-1", json!({}))];
    let ports = [port("port-db", DB, "net-a", "10.0.0.9", "0")];
    let unknown = Server::start(
        "net-a",
        MetadataIndex::build(&ports, &vms, &[], &[]),
        Limits::default(),
    )?;
    for server in [&other_network, &unknown] {
        for path in [
            "/",
            "/openstack",
            "/openstack/latest/meta_data.json",
            "/latest/meta-data/instance-id",
            "/latest/user-data",
        ] {
            let answer = server.get(path).await?;
            assert_eq!(answer.status, 404, "{path}: {answer:?}");
            assert!(!answer.body.contains(DB) && !answer.body.contains(WEB));
        }
    }
    other_network.shut_down().await?;
    unknown.shut_down().await
}

#[tokio::test]
async fn the_index_is_read_at_each_request() -> anyhow::Result<()> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    let (index_sender, index_receiver) = watch::channel(Arc::new(MetadataIndex::default()));
    let (stop, stopped) = watch::channel(false);
    let server = Server {
        address,
        stop,
        task: Some(tokio::spawn(serve_with(
            listener,
            "net-a".into(),
            index_receiver,
            stopped,
            Limits::default(),
        ))),
    };
    assert_eq!(server.get("/openstack").await?.status, 404);
    index_sender.send_replace(Arc::new(index()));
    assert_eq!(server.get("/openstack").await?.status, 200);
    server.shut_down().await
}

/// Reads until the server closes the connection, within a deadline.
async fn closed_by_server(stream: &mut tokio::net::TcpStream) -> anyhow::Result<()> {
    let mut buffer = [0u8; 64];
    tokio::time::timeout(Duration::from_secs(20), async {
        for _ in 0..1000 {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return Ok(()),
                Ok(_) => {}
            }
        }
        anyhow::bail!("the server kept sending")
    })
    .await
    .context("the server closes the connection")?
}

#[tokio::test]
async fn a_vm_cannot_hold_connections_open() -> anyhow::Result<()> {
    let limits = Limits {
        connections: 64,
        connections_per_peer: 2,
        connection_lifetime: Duration::from_millis(300),
    };
    let server = Server::start("net-a", index(), limits)?;
    // Two connections that never finish their request...
    let mut first = tokio::net::TcpStream::connect(server.address).await?;
    let mut second = tokio::net::TcpStream::connect(server.address).await?;
    tokio::io::AsyncWriteExt::write_all(&mut first, b"GET / HTTP/1.1\r\n").await?;
    // ...and a third from the same address, closed as soon as accepted.
    let mut third = tokio::net::TcpStream::connect(server.address).await?;
    closed_by_server(&mut third).await?;
    // The first two end with their lifetime, and the address may connect again.
    closed_by_server(&mut first).await?;
    closed_by_server(&mut second).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let answer = server.get("/latest/meta-data/hostname").await;
        if let Ok(answer) = answer
            && answer.status == 200
        {
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the slots were never given back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.shut_down().await
}

#[tokio::test]
async fn stop_ends_the_server() -> anyhow::Result<()> {
    let server = Server::start("net-a", index(), Limits::default())?;
    // An idle keep-alive connection does not hold the stop up.
    let stream = tokio::net::TcpStream::connect(server.address).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request = http::Request::get("/latest/meta-data/hostname")
        .header(http::header::HOST, "169.254.169.254")
        .body(Empty::<Bytes>::new())?;
    assert_eq!(sender.send_request(request).await?.status(), 200);
    server.shut_down().await
}
