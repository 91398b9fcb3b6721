//! Images end to end: the real `openstack image` CLI against the Glance face (create with
//! a file, list, show, save, set properties, delete, a checksum mismatch refused with
//! nothing stored, visibility between two projects, sharing), Glance's answers to bad
//! input, `ronghe images bootstrap` (twice: the second run keeps what the first uploaded),
//! and an agent's image cache resolving, downloading and unpacking what a project may use.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail, ensure};
use http_body_util::BodyExt;
use ronghe_agent::images::{ImageCache, ImageCacheError};
use ronghe_testkit::{Openstack, ServerProcess};
use serde_json::{Value, json};

use super::identity::World;
use super::{BINARY, server};

/// The CLI, or a loud failure when it is missing.
fn cli() -> anyhow::Result<PathBuf> {
    Openstack::find().context(
        "the openstack CLI is missing: run ./scripts/test, which installs it into target/openstack-venv",
    )
}

/// The CLI acting as `user` in `project` (a clouds.yaml of its own beside the server's).
fn cli_as(
    server: &ServerProcess,
    dir: &Path,
    user: &str,
    password: &str,
    project: &str,
) -> anyhow::Result<Openstack> {
    let text = std::fs::read_to_string(server.data_dir().join("clouds.yaml"))?;
    let mut clouds: Value = serde_yaml_ng::from_str(&text)?;
    let auth = &mut clouds["clouds"]["ronghe"]["auth"];
    auth["username"] = json!(user);
    auth["password"] = json!(password);
    auth["project_name"] = json!(project);
    let home = dir.join(user);
    std::fs::create_dir_all(&home)?;
    std::fs::write(home.join("clouds.yaml"), serde_yaml_ng::to_string(&clouds)?)?;
    Openstack::new(cli()?, &home)
}

/// A request with `X-Auth-Token: token` and a raw body.
async fn call(
    client: &kube::Client,
    token: &str,
    method: &str,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> anyhow::Result<(u16, Value, Vec<u8>)> {
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("x-auth-token", token)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(kube::client::Body::from(body))?;
    let response = client.send(request).await?;
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await?.to_bytes().to_vec();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Ok((status, value, bytes))
}

async fn call_json(
    client: &kube::Client,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<(u16, Value)> {
    let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let (status, value, _) = call(client, token, method, path, "application/json", bytes).await?;
    Ok((status, value))
}

fn blobs(server: &ServerProcess) -> anyhow::Result<Vec<String>> {
    let dir = server.data_dir().join("blobs/sha256");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .map(|entry| Ok(entry?.file_name().to_string_lossy().into_owned()))
        .collect::<anyhow::Result<_>>()?;
    names.sort();
    Ok(names)
}

fn names(listing: &Value) -> Vec<String> {
    listing
        .as_array()
        .map(|rows| {
            rows.iter()
                .filter_map(|row| row["Name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn openstack_cli_creates_lists_saves_sets_and_deletes_images() -> anyhow::Result<()> {
    let server = server().await?;
    let os = Openstack::new(cli()?, server.data_dir())?;
    let work = tempfile::tempdir()?;
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let file = work.path().join("disk.qcow2");
    std::fs::write(&file, &data)?;
    let file = file.to_str().context("path")?;

    let created = os.json(&[
        "image",
        "create",
        "--file",
        file,
        "--disk-format",
        "qcow2",
        "--container-format",
        "bare",
        "cirros",
    ])?;
    ensure!(created["status"] == "active", "{created}");
    ensure!(created["size"] == 3_000_000, "{created}");
    let id = created["id"].as_str().context("id")?.to_owned();
    ensure!(blobs(&server)?.len() == 1, "one blob stored");

    let listing = os.json(&["image", "list"])?;
    ensure!(names(&listing) == ["cirros"], "{listing}");
    let shown = os.json(&["image", "show", "cirros"])?;
    ensure!(
        shown["id"] == id.as_str() && shown["disk_format"] == "qcow2",
        "{shown}"
    );

    let saved = work.path().join("saved");
    os.ok(&[
        "image",
        "save",
        "--file",
        saved.to_str().context("path")?,
        "cirros",
    ])?;
    ensure!(
        std::fs::read(&saved)? == data,
        "the saved image is what was uploaded"
    );

    os.ok(&[
        "image",
        "set",
        "--property",
        "hw_disk_bus=virtio",
        "--tag",
        "small",
        "--name",
        "cirros-2",
        &id,
    ])?;
    let shown = os.json(&["image", "show", &id])?;
    ensure!(shown["name"] == "cirros-2", "{shown}");
    ensure!(shown["properties"]["hw_disk_bus"] == "virtio", "{shown}");
    ensure!(shown["tags"] == json!(["small"]), "{shown}");

    // The same data under an expected sha256 that is not its own: refused, nothing stored.
    let zeros = "0".repeat(64);
    let (ok, _, stderr) = os.run(&[
        "image",
        "create",
        "--file",
        file,
        "--disk-format",
        "qcow2",
        "--container-format",
        "bare",
        "--property",
        "os_hash_algo=sha256",
        "--property",
        &format!("os_hash_value={zeros}"),
        "mismatch",
    ])?;
    ensure!(!ok, "a mismatching upload must fail");
    ensure!(
        stderr.contains("400")
            && stderr.contains("sha256")
            && stderr.contains("nothing was stored"),
        "{stderr}"
    );
    ensure!(blobs(&server)?.len() == 1, "the refused data is not stored");
    ensure!(
        std::fs::read_dir(server.data_dir().join("blobs/tmp"))?.count() == 0,
        "no temporary file is left behind"
    );

    // The right sha256 is accepted.
    let digest = ronghe_images::blob::hash_file(Path::new(file))?
        .digest
        .hex()
        .to_owned();
    let right = os.json(&[
        "image",
        "create",
        "--file",
        file,
        "--disk-format",
        "raw",
        "--container-format",
        "bare",
        "--property",
        "os_hash_algo=sha256",
        "--property",
        &format!("os_hash_value={digest}"),
        "verified",
    ])?;
    ensure!(right["status"] == "active", "{right}");
    ensure!(
        blobs(&server)? == [digest.clone()],
        "the same data is one blob"
    );

    // Deleting one image keeps the blob the other still uses; deleting both removes it.
    os.ok(&["image", "delete", &id])?;
    ensure!(blobs(&server)? == [digest], "the blob is still in use");
    os.ok(&["image", "delete", "verified"])?;
    ensure!(blobs(&server)?.is_empty(), "the unused blob is deleted");
    let listing = os.json(&["image", "list"])?;
    ensure!(names(&listing).is_empty(), "{listing}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn images_are_visible_by_glances_rules_between_projects() -> anyhow::Result<()> {
    let server = server().await?;
    let world = World::new(&server).await?;
    let work = tempfile::tempdir()?;
    let admin = Openstack::new(cli()?, server.data_dir())?;
    let alice = cli_as(&server, work.path(), "alice", "pw-alice", "team-a")?;
    let bob = cli_as(&server, work.path(), "bob", "pw-bob", "team-b")?;
    let carol = cli_as(&server, work.path(), "carol", "pw-carol", "team-a")?;
    let file = work.path().join("data");
    std::fs::write(&file, b"image data")?;
    let file = file.to_str().context("path")?;
    let create = |cli: &Openstack, name: &str, visibility: &str| -> anyhow::Result<Value> {
        cli.json(&[
            "image",
            "create",
            "--file",
            file,
            "--disk-format",
            "raw",
            "--container-format",
            "bare",
            visibility,
            name,
        ])
    };

    let private = create(&alice, "alice-private", "--private")?;
    let shared = create(&alice, "alice-shared", "--shared")?;
    let community = create(&alice, "alice-community", "--community")?;
    create(&admin, "everyone", "--public")?;
    let shared_id = shared["id"].as_str().context("id")?.to_owned();

    // Only cloud admins publish; readers read but do not create.
    let (ok, _, stderr) = alice.run(&[
        "image",
        "create",
        "--disk-format",
        "raw",
        "--container-format",
        "bare",
        "--public",
        "alice-public",
    ])?;
    ensure!(!ok && stderr.contains("403"), "{stderr}");
    let (ok, _, stderr) = carol.run(&[
        "image",
        "create",
        "--disk-format",
        "raw",
        "--container-format",
        "bare",
        "nope",
    ])?;
    ensure!(!ok && stderr.contains("403"), "{stderr}");

    let mut seen = names(&carol.json(&["image", "list"])?);
    seen.sort();
    ensure!(
        seen == [
            "alice-community",
            "alice-private",
            "alice-shared",
            "everyone"
        ],
        "team-a sees its own and public images: {seen:?}"
    );
    ensure!(
        names(&bob.json(&["image", "list"])?) == ["everyone"],
        "team-b sees only the public image"
    );
    let community_listed = names(&bob.json(&["image", "list", "--community"])?);
    ensure!(
        community_listed == ["alice-community"],
        "{community_listed:?}"
    );
    let private_id = private["id"].as_str().context("id")?;
    let (ok, _, _) = bob.run(&["image", "show", private_id])?;
    ensure!(!ok, "another project's private image is not found");
    let community_id = community["id"].as_str().context("id")?;
    ensure!(bob.json(&["image", "show", community_id])?["name"] == "alice-community");

    // Sharing: the owner adds a member project by id (through the API: `openstack image
    // add project` run by a project member first looks the project up in Keystone, which
    // a member may not do); the member sees the image by id at once, and lists it once it
    // accepts.
    let client = server.anonymous_client().await?;
    let alice_token = world.face.token("alice", "pw-alice", "team-a").await?;
    let team_b = world.team_b_id().to_owned();
    let (status, member) = call_json(
        &client,
        &alice_token,
        "POST",
        &format!("/image/v2/images/{shared_id}/members"),
        Some(json!({"member": team_b})),
    )
    .await?;
    ensure!(
        status == 200 && member["status"] == "pending",
        "{status} {member}"
    );
    ensure!(member["member_id"] == team_b.as_str(), "{member}");
    ensure!(bob.json(&["image", "show", &shared_id])?["name"] == "alice-shared");
    ensure!(!names(&bob.json(&["image", "list"])?).contains(&"alice-shared".to_owned()));
    bob.ok(&["image", "set", "--accept", &shared_id])?;
    let mut listed = names(&bob.json(&["image", "list"])?);
    listed.sort();
    ensure!(listed == ["alice-shared", "everyone"], "{listed:?}");
    // A member downloads but does not change or delete it.
    let saved = work.path().join("saved");
    bob.ok(&[
        "image",
        "save",
        "--file",
        saved.to_str().context("path")?,
        &shared_id,
    ])?;
    ensure!(std::fs::read(&saved)? == b"image data");
    let (ok, _, stderr) = bob.run(&["image", "set", "--name", "mine", &shared_id])?;
    ensure!(!ok && stderr.contains("403"), "{stderr}");
    let (ok, _, _) = bob.run(&["image", "delete", &shared_id])?;
    ensure!(!ok, "a member cannot delete a shared image");
    // A cloud admin may manage any image's members with the CLI.
    admin.ok(&["image", "remove", "project", &shared_id, &team_b])?;
    let (ok, _, _) = bob.run(&["image", "show", &shared_id])?;
    ensure!(!ok, "no longer shared");

    // The raw API: Glance's fault shape and status codes.
    let (status, body) = call_json(
        &client,
        &alice_token,
        "GET",
        "/image/v2/images/00000000-0000-0000-0000-000000000000",
        None,
    )
    .await?;
    ensure!(status == 404, "{status} {body}");
    ensure!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("00000000-0000-0000-0000-000000000000")),
        "{body}"
    );
    ensure!(body["code"] == "404 Not Found", "{body}");
    for (body, code) in [
        (json!({"name": "x", "status": "active"}), 403),
        (json!({"name": "x", "disk_format": "floppy"}), 400),
        (
            json!({"name": "x", "os_hash_algo": "sha256", "os_hash_value": "abc"}),
            400,
        ),
        (json!({"name": "x", "id": "not-a-uuid"}), 400),
    ] {
        let (status, answer) = call_json(
            &client,
            &alice_token,
            "POST",
            "/image/v2/images",
            Some(body.clone()),
        )
        .await?;
        ensure!(status == code, "{body}: {status} {answer}");
    }
    let (status, answer) = call_json(
        &client,
        &alice_token,
        "POST",
        "/image/v2/images",
        Some(json!({"id": shared_id, "name": "again"})),
    )
    .await?;
    ensure!(status == 409, "a taken id: {status} {answer}");

    // A mismatching upload leaves the image queued and stores nothing.
    let before = blobs(&server)?;
    let (status, queued) = call_json(
        &client,
        &alice_token,
        "POST",
        "/image/v2/images",
        Some(
            json!({"name": "checked", "disk_format": "raw", "container_format": "bare",
                    "os_hash_algo": "sha256", "os_hash_value": "1".repeat(64)}),
        ),
    )
    .await?;
    ensure!(status == 201, "{status} {queued}");
    let queued_id = queued["id"].as_str().context("id")?;
    let file_path = format!("/image/v2/images/{queued_id}/file");
    let (status, answer, _) = call(
        &client,
        &alice_token,
        "PUT",
        &file_path,
        "application/octet-stream",
        b"other data".to_vec(),
    )
    .await?;
    ensure!(status == 400, "{status} {answer}");
    let (_, after) = call_json(
        &client,
        &alice_token,
        "GET",
        &format!("/image/v2/images/{queued_id}"),
        None,
    )
    .await?;
    ensure!(after["status"] == "queued", "{after}");
    ensure!(blobs(&server)? == before, "nothing stored");
    let (status, _, _) = call(
        &client,
        &alice_token,
        "GET",
        &file_path,
        "application/json",
        Vec::new(),
    )
    .await?;
    ensure!(status == 204, "a queued image has no data: {status}");
    // Patches: Glance's media type only, read-only attributes refused.
    let (status, _, _) = call(
        &client,
        &alice_token,
        "PATCH",
        &format!("/image/v2/images/{queued_id}"),
        "application/openstack-images-v2.1-json-patch",
        json!([{"op": "replace", "path": "/status", "value": "active"}])
            .to_string()
            .into_bytes(),
    )
    .await?;
    ensure!(status == 403, "status is read-only: {status}");
    Ok(())
}

/// Runs `ronghe images bootstrap` against a server; its stdout.
fn bootstrap(server: &ServerProcess) -> anyhow::Result<String> {
    let output = Command::new(BINARY)
        .args(["images", "bootstrap", "--data-dir"])
        .arg(server.data_dir())
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success() {
        bail!("ronghe images bootstrap failed:\nstdout:\n{stdout}\nstderr:\n{stderr}");
    }
    eprintln!("{stderr}");
    Ok(stdout)
}

#[tokio::test(flavor = "multi_thread")]
async fn bootstrap_images_reach_an_agents_cache() -> anyhow::Result<()> {
    let server = server().await?;
    let first = bootstrap(&server)?;
    for name in [
        "busybox",
        "test-guest-kernel",
        "test-guest-initramfs",
        "test-guest",
    ] {
        ensure!(
            first.contains(&format!("{name}: uploaded image")),
            "{first}"
        );
    }
    let second = bootstrap(&server)?;
    ensure!(second.contains("busybox: kept image"), "{second}");

    let os = Openstack::new(cli()?, server.data_dir())?;
    let busybox = os.json(&["image", "show", "busybox"])?;
    ensure!(
        busybox["visibility"] == "public" && busybox["status"] == "active",
        "{busybox}"
    );
    ensure!(busybox["container_format"] == "docker", "{busybox}");

    // A project's private qcow2 image, for the VM path and for visibility.
    let work = tempfile::tempdir()?;
    let disk = work.path().join("disk.qcow2");
    std::fs::write(&disk, b"QFI\xfb not really a qcow2 image")?;
    World::new(&server).await?;
    let bob = cli_as(&server, work.path(), "bob", "pw-bob", "team-b")?;
    bob.json(&[
        "image",
        "create",
        "--file",
        disk.to_str().context("path")?,
        "--disk-format",
        "qcow2",
        "--container-format",
        "bare",
        "--private",
        "bob-disk",
    ])?;

    let cache = ImageCache::new(server.client().await?, &work.path().join("agent"))?;
    // Several pods asking at once get the same image, downloaded and unpacked once.
    let references = [
        "busybox",
        "busybox:latest",
        "docker.io/library/busybox",
        "busybox",
    ];
    let images = futures::future::try_join_all(
        references
            .iter()
            .map(|reference| cache.container_image("team-a", reference)),
    )
    .await?;
    ensure!(
        images.windows(2).all(|pair| pair[0] == pair[1]),
        "{images:?}"
    );
    let image = &images[0];
    ensure!(image.layers.len() == 1, "{image:?}");
    ensure!(image.layers[0].join("bin/busybox").is_file(), "{image:?}");
    ensure!(image.config.cmd == ["sh"], "{image:?}");
    ensure!(cache.blobs().list()?.len() == 1, "one download");

    let vm = cache.vm_image("team-b", "bob-disk").await?;
    let vm_disk = vm.disk.context("a disk")?;
    ensure!(vm_disk.format == "qcow2", "{vm_disk:?}");
    ensure!(std::fs::read(&vm_disk.path)? == std::fs::read(&disk)?);
    match cache.vm_image("team-a", "bob-disk").await {
        Err(ImageCacheError::NotFound { reference }) => ensure!(reference == "bob-disk"),
        other => bail!("team-a must not find team-b's private image: {other:?}"),
    }
    let error = cache
        .container_image("team-a", "nonexistent")
        .await
        .err()
        .context("an unknown image fails")?;
    ensure!(
        error.to_string() == "image \"nonexistent\" not found",
        "{error}"
    );

    // test-guest: a kernel and an initramfs, named by the machine image.
    ensure!(second.contains("test-guest: kept image"), "{second}");
    let guest = cache.vm_image("team-a", "test-guest").await?;
    let kernel = guest.kernel.context("a kernel")?;
    let initrd = guest.initrd.context("an initrd")?;
    ensure!(guest.disk.is_none(), "{:?}", guest.disk);
    let kernel_header = std::fs::read(&kernel)?;
    ensure!(
        kernel_header.get(0x202..0x206) == Some(b"HdrS".as_slice()),
        "a bzImage"
    );
    ensure!(
        std::fs::read(&initrd)?.starts_with(&[0x1f, 0x8b]),
        "a gzipped initramfs"
    );
    Ok(())
}
