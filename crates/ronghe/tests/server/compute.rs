//! Nova at `/compute/v2.1`: the real openstack CLI on flavors, keypairs, server groups,
//! hypervisors and availability zones; servers seen from both faces, scoped to their
//! project, with Nova's answers to bad input and to actions in the wrong state.

use std::time::Duration;

use anyhow::Context;
use ronghe_testkit::{AgentProcess, Openstack};
use serde_json::{Value, json};

use super::identity::{World, expect};
use super::{BINARY, server, wait_for};

const LATEST: (&str, &str) = ("x-openstack-nova-api-version", "2.96");

fn cli(data_dir: &std::path::Path) -> anyhow::Result<Openstack> {
    Openstack::for_data_dir(data_dir)
}

#[tokio::test(flavor = "multi_thread")]
async fn openstack_cli_manages_flavors_keypairs_groups_and_sees_hosts() -> anyhow::Result<()> {
    let server = server().await?;
    let os = cli(server.data_dir())?;
    let _agent = AgentProcess::start(
        std::path::Path::new(BINARY),
        &server,
        &["--node-name", "sim", "--simulate", "2", "--vcpus", "8"],
    )?;

    // Flavors: the id is the name; properties are extra specs.
    let flavor = os.json(&[
        "flavor", "create", "--vcpus", "2", "--ram", "512", "--disk", "1", "m1.small",
    ])?;
    assert_eq!(flavor["id"], "m1.small", "{flavor}");
    assert_eq!(flavor["vcpus"], 2, "{flavor}");
    os.ok(&[
        "flavor",
        "set",
        "--property",
        "hw:cpu_policy=shared",
        "m1.small",
    ])?;
    let shown = os.json(&["flavor", "show", "m1.small"])?;
    assert_eq!(shown["properties"]["hw:cpu_policy"], "shared", "{shown}");
    let listed = os.json(&["flavor", "list"])?;
    assert!(
        listed
            .as_array()
            .is_some_and(|rows| rows.iter().any(|r| r["Name"] == "m1.small")),
        "{listed}"
    );
    let (ok, _, stderr) =
        os.run(&["flavor", "create", "--vcpus", "1", "--ram", "1", "m1.small"])?;
    assert!(!ok && stderr.contains("already exists"), "{stderr}");

    // Keypairs: imported, and generated with the private key printed once.
    let key_file = server.data_dir().join("test-key.pub");
    std::fs::write(
        &key_file,
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGdBH7AaHxgyMhtBMwWkwSRDS30T5sZfvwtlnxOwRWwV test\n",
    )?;
    let imported = os.json(&[
        "keypair",
        "create",
        "--public-key",
        key_file.to_str().context("utf-8 path")?,
        "imported",
    ])?;
    assert_eq!(imported["name"], "imported", "{imported}");
    assert_eq!(
        imported["fingerprint"].as_str().map(str::len),
        Some(47),
        "{imported}"
    );
    let generated = os.ok(&["keypair", "create", "generated"])?;
    assert!(
        generated.contains("OPENSSH PRIVATE KEY"),
        "the private key is printed once: {generated}"
    );
    let keypairs = os.json(&["keypair", "list"])?;
    assert_eq!(keypairs.as_array().map(Vec::len), Some(2), "{keypairs}");
    os.ok(&["keypair", "delete", "generated"])?;
    let (ok, _, stderr) = os.run(&["keypair", "show", "generated"])?;
    assert!(!ok, "a deleted keypair is gone: {stderr}");

    // Server groups.
    let group = os.json(&[
        "server",
        "group",
        "create",
        "--policy",
        "anti-affinity",
        "spread",
    ])?;
    assert_eq!(group["policy"], "anti-affinity", "{group}");
    let groups = os.json(&["server", "group", "list"])?;
    assert_eq!(groups.as_array().map(Vec::len), Some(1), "{groups}");
    os.ok(&["server", "group", "delete", "spread"])?;

    // Hosts: the simulated ones, up, in Nova's default zone.
    let hosts = wait_for(Duration::from_secs(20), "both hypervisors up", || async {
        let hosts = os.json(&["hypervisor", "list"])?;
        let up = hosts
            .as_array()
            .map_or(0, |rows| rows.iter().filter(|r| r["State"] == "up").count());
        Ok((up == 2).then_some(hosts))
    })
    .await?;
    assert!(
        hosts
            .as_array()
            .is_some_and(|rows| rows.iter().all(|r| r["Hypervisor Type"] == "QEMU")),
        "{hosts}"
    );
    let zones = os.json(&["availability", "zone", "list", "--compute"])?;
    assert!(
        zones
            .as_array()
            .is_some_and(|rows| rows.iter().any(|r| r["Zone Name"] == "nova")),
        "{zones}"
    );
    Ok(())
}

/// A public, active image in the admin project, made on the Kubernetes face (its data does
/// not matter to the compute API); returns its Glance id.
async fn public_image(
    face: &super::identity::Face,
    admin: &str,
    name: &str,
) -> anyhow::Result<String> {
    let id = uuid::Uuid::new_v4().to_string();
    let image = json!({"apiVersion": "image.ronghe.io/v1", "kind": "Image",
        "metadata": {"name": id},
        "spec": {"name": name, "diskFormat": "raw", "containerFormat": "bare", "visibility": "public"}});
    let made = face
        .kube(
            admin,
            "POST",
            "/apis/image.ronghe.io/v1/namespaces/admin/images",
            Some(&image),
        )
        .await?;
    expect(&made, 201, "create an image");
    let status = json!({"status": {"status": "active", "size": 0}});
    let path = format!("/apis/image.ronghe.io/v1/namespaces/admin/images/{id}/status");
    expect(
        &face.kube(admin, "PATCH", &path, Some(&status)).await?,
        200,
        "activate the image",
    );
    Ok(id)
}

#[tokio::test(flavor = "multi_thread")]
async fn servers_are_scoped_to_their_project_and_refuse_bad_input() -> anyhow::Result<()> {
    let server = server().await?;
    let world = World::new(&server).await?;
    let face = &world.face;
    let admin = world.admin.as_str();
    let _agent = AgentProcess::start(
        std::path::Path::new(BINARY),
        &server,
        &["--node-name", "sim", "--simulate", "1"],
    )?;
    let body = json!({"flavor": {"name": "m1.tiny", "vcpus": 1, "ram": 128, "disk": 1}});
    expect(
        &face
            .keystone(admin, "POST", "/compute/v2.1/flavors", Some(&body))
            .await?,
        200,
        "create flavor",
    );
    let image = public_image(face, admin, "cirros").await?;
    let alice = face.token("alice", "pw-alice", "team-a").await?;
    let carol = face.token("carol", "pw-carol", "team-a").await?;
    let limits = face
        .send(
            "GET",
            "/compute/v2.1/limits",
            &[("x-auth-token", &alice)],
            None,
        )
        .await?;
    expect(&limits, 200, "limits");
    assert_eq!(
        limits.1["limits"]["absolute"]["maxTotalInstances"], -1,
        "{}",
        limits.1
    );
    let bob = face.token("bob", "pw-bob", "team-b").await?;
    let nova = |token: &str, method: &str, path: &str, body: Option<Value>| {
        let token = token.to_owned();
        let (method, path) = (method.to_owned(), format!("/compute/v2.1{path}"));
        async move {
            face.send(
                &method,
                &path,
                &[("x-auth-token", &token), LATEST],
                body.as_ref(),
            )
            .await
        }
    };

    // Bad input, in Nova's shape, and nothing created.
    let create = |server: Value| Some(json!({"server": server}));
    let cases = [
        (
            json!({"name": "vm", "flavorRef": "m1.tiny", "imageRef": "nope", "networks": "none"}),
            "Image nope could not be found",
        ),
        (
            json!({"name": "vm", "flavorRef": "nope", "imageRef": image, "networks": "none"}),
            "Flavor nope could not be found",
        ),
        (
            json!({"name": "vm", "flavorRef": "m1.tiny", "imageRef": image}),
            "'networks' is a required property",
        ),
        (
            json!({"name": "vm", "flavorRef": "m1.tiny", "imageRef": image, "networks": [{"uuid": "no-such-network"}]}),
            "Network no-such-network could not be found",
        ),
        (
            json!({"name": "vm", "flavorRef": "m1.tiny", "imageRef": image, "networks": [{"uuid": "x", "fixed_ip": "10.0.0.999"}]}),
            "fixed_ip",
        ),
        (
            json!({"name": "vm", "flavorRef": "m1.tiny", "imageRef": image, "networks": "none", "key_name": "nokey"}),
            "Invalid key_name",
        ),
        (
            json!({"name": "vm", "flavorRef": "m1.tiny", "imageRef": image, "networks": "none", "min_count": 2}),
            "min_count",
        ),
        (
            json!({"name": "vm", "flavorRef": "m1.tiny", "imageRef": image, "networks": "none", "bogus": 1}),
            "'bogus' was unexpected",
        ),
        (
            json!({"flavorRef": "m1.tiny", "imageRef": image, "networks": "none"}),
            "'name' is a required property",
        ),
    ];
    for (server, message) in cases {
        let response = nova(&alice, "POST", "/servers", create(server.clone())).await?;
        expect(&response, 400, &format!("create {server}"));
        let text = response.1["badRequest"]["message"]
            .as_str()
            .unwrap_or_default();
        assert!(text.contains(message), "{server}: {}", response.1);
    }
    let response = face
        .send(
            "GET",
            "/compute/v2.1/servers",
            &[
                ("x-auth-token", &alice),
                ("x-openstack-nova-api-version", "2.200"),
            ],
            None,
        )
        .await?;
    expect(&response, 406, "an unserved microversion");
    assert!(
        response.1["computeFault"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("maximum is 2.96")),
        "{}",
        response.1
    );

    // The Kubernetes face refuses unknown images and server groups the same way.
    for (spec, message) in [
        (
            json!({"flavorRef": "m1.tiny", "imageRef": "nope"}),
            "Image nope could not be found",
        ),
        (
            json!({"flavorRef": "m1.tiny", "imageRef": image, "serverGroup": "nope"}),
            "Server group nope could not be found",
        ),
    ] {
        let vm = json!({"apiVersion": "compute.ronghe.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": "refused"}, "spec": spec});
        let refused = face
            .kube(
                &alice,
                "POST",
                "/apis/compute.ronghe.io/v1/namespaces/team-a/virtualmachines",
                Some(&vm),
            )
            .await?;
        expect(&refused, 400, "a VM with a missing reference");
        assert!(
            refused.1["message"]
                .as_str()
                .is_some_and(|m| m.contains(message)),
            "{}",
            refused.1
        );
    }

    // A VM made on the Kubernetes face is a server on Nova's, in its project only.
    let vm = json!({"apiVersion": "compute.ronghe.io/v1", "kind": "VirtualMachine",
        "metadata": {"name": "web"}, "spec": {"flavorRef": "m1.tiny", "imageRef": image}});
    let made = face
        .kube(
            &alice,
            "POST",
            "/apis/compute.ronghe.io/v1/namespaces/team-a/virtualmachines",
            Some(&vm),
        )
        .await?;
    expect(&made, 201, "create a VM on the Kubernetes face");
    let id = made.1["metadata"]["uid"]
        .as_str()
        .context("uid")?
        .to_owned();
    let shown = wait_for(Duration::from_secs(20), "the server ACTIVE", || async {
        let shown = nova(&alice, "GET", &format!("/servers/{id}"), None).await?;
        Ok((shown.1["server"]["status"] == "ACTIVE").then_some(shown.1))
    })
    .await?;
    let server_view = &shown["server"];
    assert_eq!(server_view["name"], "web");
    assert_eq!(
        server_view["flavor"]["original_name"], "m1.tiny",
        "{server_view}"
    );
    assert_eq!(server_view["image"]["id"], image, "{server_view}");
    assert_eq!(
        server_view["OS-EXT-STS:vm_state"], "active",
        "{server_view}"
    );
    assert!(
        server_view.get("OS-EXT-SRV-ATTR:host").is_none(),
        "hosts are for admins"
    );
    let listed = nova(&carol, "GET", "/servers/detail", None).await?;
    expect(&listed, 200, "a reader lists");
    assert_eq!(listed.1["servers"].as_array().map(Vec::len), Some(1));
    expect(
        &nova(&bob, "GET", &format!("/servers/{id}"), None).await?,
        404,
        "another project's server",
    );
    let as_admin = nova(admin, "GET", &format!("/servers/{id}"), None).await?;
    assert_eq!(
        as_admin.1["server"]["OS-EXT-SRV-ATTR:host"], "sim-00000",
        "{}",
        as_admin.1
    );
    assert_eq!(
        server_view["OS-EXT-STS:task_state"],
        Value::Null,
        "{server_view}"
    );

    // Actions: readers may not, wrong states are 409, unknown actions 400.
    let stop = Some(json!({"os-stop": null}));
    let path = format!("/servers/{id}/action");
    expect(
        &nova(&carol, "POST", &path, stop.clone()).await?,
        403,
        "a reader stops",
    );
    expect(
        &nova(&alice, "POST", &path, Some(json!({"os-start": null}))).await?,
        409,
        "start an active server",
    );
    expect(
        &nova(&alice, "POST", &path, Some(json!({"os-fly": null}))).await?,
        400,
        "an unknown action",
    );
    expect(
        &nova(&alice, "POST", &path, stop.clone()).await?,
        202,
        "stop",
    );
    let after = nova(&alice, "GET", &format!("/servers/{id}"), None).await?;
    let task = &after.1["server"]["OS-EXT-STS:task_state"];
    assert!(
        task == "powering-off" || after.1["server"]["status"] == "SHUTOFF",
        "{}",
        after.1
    );

    // Deleting through Nova removes the VM on both faces.
    expect(
        &nova(&alice, "DELETE", &format!("/servers/{id}"), None).await?,
        204,
        "delete",
    );
    wait_for(Duration::from_secs(20), "the server gone", || async {
        let shown = nova(&alice, "GET", &format!("/servers/{id}"), None).await?;
        Ok((shown.0 == 404).then_some(()))
    })
    .await?;
    Ok(())
}
