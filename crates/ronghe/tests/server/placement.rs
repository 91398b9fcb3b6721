//! Placement at `/placement`: the real osc-placement CLI over hosts registered by a real
//! `ronghe agent --simulate` and pods placed by the scheduler (providers, inventories,
//! usages, allocation candidates, traits, resource classes), and Placement's answers to
//! bad input in its own error shape.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use ronghe_testkit::{AgentProcess, Openstack};
use serde_json::{Value, json};

use super::identity::{Response, World, expect};
use super::{BINARY, server, wait_for};

/// The values of one column of a `-f json` listing.
fn column(rows: &Value, name: &str) -> Vec<String> {
    rows.as_array()
        .map(|rows| {
            rows.iter()
                .filter_map(|row| match &row[name] {
                    Value::String(text) => Some(text.clone()),
                    Value::Null => None,
                    other => Some(other.to_string()),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The row of a listing whose `key` column is `value`.
fn row<'a>(rows: &'a Value, key: &str, value: &str) -> anyhow::Result<&'a Value> {
    rows.as_array()
        .and_then(|rows| rows.iter().find(|row| row[key] == value))
        .with_context(|| format!("no row with {key} = {value} in {rows}"))
}

fn pod(name: &str, cpu: &str) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "main", "image": "busybox",
            "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}}}]},
    }))?)
}

/// The CLI, or a loud failure when osc-placement is not in it.
fn placement_cli(data_dir: &std::path::Path) -> anyhow::Result<Openstack> {
    let Some(cli) = Openstack::find() else {
        bail!(
            "the openstack CLI is missing: run ./scripts/test, which installs it into target/openstack-venv"
        );
    };
    let os = Openstack::new(cli, data_dir)?;
    let (_, _, stderr) = os.run(&["resource", "class", "list", "--help"])?;
    if stderr.contains("Unknown command") || stderr.contains("is not an openstack command") {
        bail!(
            "osc-placement is missing from the openstack CLI: run target/openstack-venv/bin/pip install osc-placement"
        );
    }
    Ok(os)
}

#[tokio::test(flavor = "multi_thread")]
async fn osc_placement_sees_hosts_usage_and_candidates() -> anyhow::Result<()> {
    let server = server().await?;
    let os = placement_cli(server.data_dir())?;
    let _agent = AgentProcess::start(
        std::path::Path::new(BINARY),
        &server,
        &[
            "--node-name",
            "sim",
            "--simulate",
            "2",
            "--vcpus",
            "4",
            "--memory-mb",
            "4096",
        ],
    )?;

    // Both hosts are providers.
    let providers = wait_for(
        Duration::from_secs(30),
        "two resource providers",
        || async {
            let rows = os.json(&["resource", "provider", "list"])?;
            Ok((column(&rows, "name").len() == 2).then_some(rows))
        },
    )
    .await?;
    let mut names = column(&providers, "name");
    names.sort();
    ensure!(names == ["sim-00000", "sim-00001"], "{providers}");
    let uuid_of = |name: &str| -> anyhow::Result<String> {
        Ok(row(&providers, "name", name)?["uuid"]
            .as_str()
            .context("uuid")?
            .to_owned())
    };
    let (first, second) = (uuid_of("sim-00000")?, uuid_of("sim-00001")?);
    let shown = os.json(&["resource", "provider", "show", &first])?;
    ensure!(shown["name"] == "sim-00000", "{shown}");
    ensure!(shown["root_provider_uuid"] == first.as_str(), "{shown}");

    // Two pods, half a CPU and one, are placed and show in the usages.
    let client = server.client().await?;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    for (name, cpu) in [("half", "500m"), ("whole", "1")] {
        pods.create(&PostParams::default(), &pod(name, cpu)?)
            .await?;
    }
    let mut milli_cpu: BTreeMap<String, i64> = BTreeMap::new();
    let mut count: BTreeMap<String, i64> = BTreeMap::new();
    for (name, milli) in [("half", 500), ("whole", 1000)] {
        let node = wait_for(
            Duration::from_secs(30),
            &format!("{name} bound"),
            || async {
                let pod = pods.get(name).await?;
                Ok(pod.spec.and_then(|s| s.node_name).filter(|n| !n.is_empty()))
            },
        )
        .await?;
        *milli_cpu.entry(node.clone()).or_default() += milli;
        *count.entry(node).or_default() += 1;
    }

    let inventory = os.json(&["resource", "provider", "inventory", "list", &first])?;
    let vcpu = row(&inventory, "resource_class", "VCPU")?;
    ensure!(vcpu["total"] == 4, "{inventory}");
    ensure!(
        row(&inventory, "resource_class", "MEMORY_MB")?["total"] == 4096,
        "{inventory}"
    );
    for (name, uuid) in [("sim-00000", &first), ("sim-00001", &second)] {
        let usage = os.json(&["resource", "provider", "usage", "show", uuid])?;
        let cpu = milli_cpu.get(name).copied().unwrap_or(0);
        // A fraction of a VCPU counts as a whole one.
        let expected_vcpu = (cpu + 999) / 1000;
        ensure!(
            row(&usage, "resource_class", "VCPU")?["usage"] == expected_vcpu,
            "{name}: {usage}"
        );
        ensure!(
            row(&usage, "resource_class", "MEMORY_MB")?["usage"]
                == 64 * count.get(name).copied().unwrap_or(0),
            "{name}: {usage}"
        );
    }
    // The project of the pods' namespace uses what they hold.
    let project = os.json(&["project", "show", "default"])?;
    let project_id = project["id"].as_str().context("project id")?;
    let total = os.json(&["resource", "usage", "show", project_id])?;
    ensure!(
        row(&total, "resource_class", "VCPU")?["usage"] == 2
            && row(&total, "resource_class", "MEMORY_MB")?["usage"] == 128,
        "{total}"
    );

    // Both hosts have room for one more VCPU.
    let candidates = os.json(&["allocation", "candidate", "list", "--resource", "VCPU=1"])?;
    let mut offered = column(&candidates, "resource provider");
    offered.sort();
    let mut both = vec![first.clone(), second.clone()];
    both.sort();
    ensure!(offered == both, "{candidates}");

    // A custom trait, set on one host, narrows the candidates to it.
    os.ok(&["trait", "create", "CUSTOM_FAST_DISK"])?;
    let traits = column(&os.json(&["trait", "list"])?, "name");
    for wanted in ["CUSTOM_FAST_DISK", "HW_CPU_X86_AVX2", "COMPUTE_NODE"] {
        ensure!(
            traits.iter().any(|t| t == wanted),
            "{wanted} not in {traits:?}"
        );
    }
    os.ok(&[
        "resource",
        "provider",
        "trait",
        "set",
        "--trait",
        "CUSTOM_FAST_DISK",
        "--trait",
        "COMPUTE_NODE",
        &first,
    ])?;
    let on_first = column(
        &os.json(&["resource", "provider", "trait", "list", &first])?,
        "name",
    );
    ensure!(
        on_first == ["COMPUTE_NODE", "CUSTOM_FAST_DISK"],
        "{on_first:?}"
    );
    let narrowed = os.json(&[
        "allocation",
        "candidate",
        "list",
        "--resource",
        "VCPU=1",
        "--required",
        "CUSTOM_FAST_DISK",
    ])?;
    ensure!(
        column(&narrowed, "resource provider") == [first.clone()],
        "{narrowed}"
    );
    let (refused, _, stderr) = os.run(&["trait", "delete", "CUSTOM_FAST_DISK"])?;
    ensure!(!refused && stderr.contains("in use"), "{stderr}");

    // A custom resource class, on a provider made through Placement.
    os.ok(&["resource", "class", "create", "CUSTOM_FPGA_X"])?;
    let classes = column(&os.json(&["resource", "class", "list"])?, "name");
    for wanted in ["VCPU", "MEMORY_MB", "CUSTOM_FPGA_X"] {
        ensure!(
            classes.iter().any(|c| c == wanted),
            "{wanted} not in {classes:?}"
        );
    }
    let extra = os.json(&[
        "resource",
        "provider",
        "create",
        "--parent-provider",
        &second,
        "fpga-card",
    ])?;
    let extra_uuid = extra["uuid"].as_str().context("uuid")?.to_owned();
    ensure!(extra["parent_provider_uuid"] == second.as_str(), "{extra}");
    ensure!(extra["root_provider_uuid"] == second.as_str(), "{extra}");
    os.ok(&[
        "resource",
        "provider",
        "inventory",
        "set",
        &extra_uuid,
        "--resource",
        "CUSTOM_FPGA_X=2",
    ])?;
    let nested = os.json(&[
        "allocation",
        "candidate",
        "list",
        "--resource",
        "VCPU=1",
        "--resource",
        "CUSTOM_FPGA_X=1",
    ])?;
    let mut used = column(&nested, "resource provider");
    used.sort();
    let mut expected = vec![second.clone(), extra_uuid.clone()];
    expected.sort();
    ensure!(used == expected, "{nested}");
    let renamed = os.json(&[
        "resource",
        "provider",
        "set",
        "--name",
        "FPGA card 0",
        &extra_uuid,
    ])?;
    ensure!(renamed["name"] == "FPGA card 0", "{renamed}");
    // A host holding allocations stays.
    let (refused, _, stderr) = os.run(&["resource", "provider", "delete", &second])?;
    ensure!(!refused && stderr.contains("has allocations"), "{stderr}");
    os.ok(&["resource", "provider", "delete", &extra_uuid])?;
    os.ok(&["resource", "class", "delete", "CUSTOM_FPGA_X"])?;
    let classes = column(&os.json(&["resource", "class", "list"])?, "name");
    ensure!(!classes.iter().any(|c| c == "CUSTOM_FPGA_X"), "{classes:?}");
    Ok(())
}

/// A request to Placement at a microversion.
async fn placement(
    world: &World,
    token: &str,
    method: &str,
    path: &str,
    version: &str,
    body: Option<&Value>,
) -> anyhow::Result<Response> {
    let version = format!("placement {version}");
    world
        .face
        .send(
            method,
            &format!("/placement{path}"),
            &[("x-auth-token", token), ("openstack-api-version", &version)],
            body,
        )
        .await
}

/// A Placement error: its status and error code in `{"errors": [...]}`.
fn expect_error(response: &Response, status: u16, code: &str, what: &str) {
    expect(response, status, what);
    let error = &response.1["errors"][0];
    assert_eq!(error["status"], status, "{what}: {}", response.1);
    assert_eq!(error["code"], code, "{what}: {}", response.1);
    assert!(
        error["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{what}: {}",
        response.1
    );
    assert!(
        error["request_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("req-")),
        "{what}: {}",
        response.1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn placement_refuses_bad_input_in_its_own_shape() -> anyhow::Result<()> {
    let server = server().await?;
    let world = World::new(&server).await?;
    let admin = world.admin.as_str();

    // Discovery, with the version echoed.
    let root = placement(&world, admin, "GET", "/", "1.29", None).await?;
    expect(&root, 200, "root");
    assert_eq!(root.1["versions"][0]["max_version"], "1.29", "{}", root.1);
    assert_eq!(root.2["openstack-api-version"], "placement 1.29");
    assert!(root.2["vary"].to_str()?.contains("openstack-api-version"));
    let latest = placement(&world, admin, "GET", "/resource_providers", "latest", None).await?;
    assert_eq!(latest.2["openstack-api-version"], "placement 1.29");

    // Too new a version: 406 with the range, which clients fall back to.
    let too_new = placement(&world, admin, "GET", "/", "1.99", None).await?;
    expect_error(&too_new, 406, "placement.undefined_code", "too new");
    assert_eq!(
        too_new.1["errors"][0]["max_version"], "1.29",
        "{}",
        too_new.1
    );
    assert_eq!(
        too_new.1["errors"][0]["min_version"], "1.0",
        "{}",
        too_new.1
    );
    let malformed = placement(&world, admin, "GET", "/", "one.two", None).await?;
    expect_error(
        &malformed,
        400,
        "placement.undefined_code",
        "malformed version",
    );

    // A provider with an inventory, through Placement.
    let created = placement(
        &world,
        admin,
        "POST",
        "/resource_providers",
        "1.29",
        Some(&json!({"name": "Rack 7 Host"})),
    )
    .await?;
    expect(&created, 200, "create provider");
    let uuid = created.1["uuid"].as_str().context("uuid")?.to_owned();
    let generation = created.1["generation"].as_i64().context("generation")?;
    // At 1.0 a provider has no tree and fewer links.
    let old_shape = placement(
        &world,
        admin,
        "GET",
        &format!("/resource_providers/{uuid}"),
        "1.0",
        None,
    )
    .await?;
    expect(&old_shape, 200, "show at 1.0");
    assert_eq!(old_shape.1["name"], "Rack 7 Host", "{}", old_shape.1);
    assert!(
        old_shape.1.get("root_provider_uuid").is_none(),
        "{}",
        old_shape.1
    );
    assert_eq!(
        old_shape.1["links"].as_array().map(Vec::len),
        Some(3),
        "{}",
        old_shape.1
    );
    let duplicate = placement(
        &world,
        admin,
        "POST",
        "/resource_providers",
        "1.29",
        Some(&json!({"name": "Rack 7 Host"})),
    )
    .await?;
    expect_error(
        &duplicate,
        409,
        "placement.duplicate_name",
        "duplicate name",
    );
    let inventories = format!("/resource_providers/{uuid}/inventories");
    let body = json!({"resource_provider_generation": generation,
        "inventories": {"VCPU": {"total": 8, "allocation_ratio": 4.0}}});
    let set = placement(&world, admin, "PUT", &inventories, "1.29", Some(&body)).await?;
    expect(&set, 200, "set inventories");
    // Placement's defaults for what the body leaves out.
    assert_eq!(
        set.1["inventories"]["VCPU"],
        json!({"total": 8, "reserved": 0, "min_unit": 1, "max_unit": 2_147_483_647,
            "step_size": 1, "allocation_ratio": 4.0}),
        "{}",
        set.1
    );
    assert_ne!(
        set.1["resource_provider_generation"], generation,
        "{}",
        set.1
    );

    // The same generation again is stale now.
    let stale = placement(&world, admin, "PUT", &inventories, "1.29", Some(&body)).await?;
    expect_error(
        &stale,
        409,
        "placement.concurrent_update",
        "stale generation",
    );

    // Unknown providers, bad queries and bad bodies.
    let missing = placement(
        &world,
        admin,
        "GET",
        "/resource_providers/7d1d3f6a-0000-4000-8000-000000000000",
        "1.29",
        None,
    )
    .await?;
    expect_error(
        &missing,
        404,
        "placement.undefined_code",
        "unknown provider",
    );
    for query in [
        "resources=VCPU",
        "resources=VCPU:0",
        "resources=VCPU:1&bogus=1",
        "resources=NO_SUCH_CLASS:1",
        "resources=VCPU:1&required=NO_SUCH_TRAIT",
        "resources1=VCPU:1&resources2=VCPU:1",
    ] {
        let bad = placement(
            &world,
            admin,
            "GET",
            &format!("/allocation_candidates?{query}"),
            "1.29",
            None,
        )
        .await?;
        expect_error(&bad, 400, "placement.undefined_code", query);
    }
    let candidates = placement(
        &world,
        admin,
        "GET",
        "/allocation_candidates?resources=VCPU:32",
        "1.29",
        None,
    )
    .await?;
    expect(&candidates, 200, "candidates");
    assert_eq!(
        candidates.1["allocation_requests"][0]["allocations"][&uuid]["resources"]["VCPU"], 32,
        "{}",
        candidates.1
    );
    assert_eq!(
        candidates.1["provider_summaries"][&uuid]["resources"]["VCPU"],
        json!({"capacity": 32, "used": 0}),
        "{}",
        candidates.1
    );
    let too_much = json!({"resource_provider_generation": set.1["resource_provider_generation"],
        "inventories": {"VCPU": {"total": 4, "reserved": 5}}});
    let refused = placement(&world, admin, "PUT", &inventories, "1.29", Some(&too_much)).await?;
    expect_error(
        &refused,
        400,
        "placement.undefined_code",
        "reserved above total",
    );
    let unknown_trait = json!({"resource_provider_generation": set.1["resource_provider_generation"],
        "traits": ["CUSTOM_NOBODY_MADE_THIS"]});
    let refused = placement(
        &world,
        admin,
        "PUT",
        &format!("/resource_providers/{uuid}/traits"),
        "1.29",
        Some(&unknown_trait),
    )
    .await?;
    expect_error(&refused, 400, "placement.undefined_code", "unknown trait");
    let nested_before = placement(
        &world,
        admin,
        "GET",
        "/resource_providers/x/traits",
        "1.5",
        None,
    )
    .await?;
    expect_error(
        &nested_before,
        404,
        "placement.undefined_code",
        "traits before 1.6",
    );
    let not_served = placement(
        &world,
        admin,
        "PUT",
        "/allocations/x",
        "1.29",
        Some(&json!({})),
    )
    .await?;
    expect_error(
        &not_served,
        405,
        "placement.undefined_code",
        "allocation writes",
    );

    // Before 1.20 a create answers 201 with only a Location.
    let old = placement(
        &world,
        admin,
        "POST",
        "/resource_providers",
        "1.10",
        Some(&json!({"name": "old-style"})),
    )
    .await?;
    expect(&old, 201, "create at 1.10");
    assert!(
        old.2["location"]
            .to_str()?
            .contains("/placement/resource_providers/"),
        "{:?}",
        old.2
    );

    // A project member is not a cloud reader; no token is no entry.
    let alice = world.face.token("alice", "pw-alice", "team-a").await?;
    let refused = placement(&world, &alice, "GET", "/resource_providers", "1.29", None).await?;
    expect_error(
        &refused,
        403,
        "placement.undefined_code",
        "member lists providers",
    );
    let refused = placement(&world, &alice, "PUT", "/traits/CUSTOM_MINE", "1.29", None).await?;
    expect_error(
        &refused,
        403,
        "placement.undefined_code",
        "member creates a trait",
    );
    let anonymous = world
        .face
        .send("GET", "/placement/resource_providers", &[], None)
        .await?;
    expect_error(&anonymous, 401, "placement.undefined_code", "no token");

    // A parent stays while it has children.
    let child = placement(
        &world,
        admin,
        "POST",
        "/resource_providers",
        "1.29",
        Some(&json!({"name": "rack-7-host-nic", "parent_provider_uuid": uuid})),
    )
    .await?;
    expect(&child, 200, "create child");
    assert_eq!(child.1["root_provider_uuid"], uuid.as_str(), "{}", child.1);
    let child_path = format!(
        "/resource_providers/{}",
        child.1["uuid"].as_str().context("uuid")?
    );
    let refused = placement(
        &world,
        admin,
        "DELETE",
        &format!("/resource_providers/{uuid}"),
        "1.29",
        None,
    )
    .await?;
    expect_error(
        &refused,
        409,
        "placement.resource_provider.cannot_delete_parent",
        "delete parent",
    );
    let reparent = json!({"name": "rack-7-host-nic", "parent_provider_uuid": null});
    let refused = placement(&world, admin, "PUT", &child_path, "1.29", Some(&reparent)).await?;
    expect_error(
        &refused,
        400,
        "placement.undefined_code",
        "un-parenting before 1.37",
    );
    expect(
        &placement(&world, admin, "DELETE", &child_path, "1.29", None).await?,
        204,
        "delete child",
    );

    // The provider goes; then it is unknown.
    let path = format!("/resource_providers/{uuid}");
    expect(
        &placement(&world, admin, "DELETE", &path, "1.29", None).await?,
        204,
        "delete",
    );
    let gone = placement(&world, admin, "DELETE", &path, "1.29", None).await?;
    expect_error(&gone, 404, "placement.undefined_code", "deleted twice");
    Ok(())
}
