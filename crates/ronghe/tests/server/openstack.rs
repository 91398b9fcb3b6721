//! The real `openstack` CLI against a real `ronghe server`, through the `clouds.yaml` the
//! server writes: tokens, projects, users, roles and assignments, a member's scoped token,
//! and the same identity on the Kubernetes face (kubectl with an openstack token; a
//! namespace made with kubectl is a project).

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use ronghe_testkit::{Kubectl, Openstack};
use serde_json::Value;

use super::server;

/// Polls `check` until it holds or `deadline` passes.
async fn eventually(
    what: &str,
    mut check: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if check()? {
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn names(rows: &Value, column: &str) -> Vec<String> {
    rows.as_array()
        .map(|rows| {
            rows.iter()
                .filter_map(|row| row[column].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn openstack_cli_manages_identity_and_tokens_work_on_both_faces() -> anyhow::Result<()> {
    let Some(cli) = Openstack::find() else {
        anyhow::bail!(
            "the openstack CLI is missing: run ./scripts/test, which installs it into target/openstack-venv"
        );
    };
    let Some(kubectl) = Kubectl::find() else {
        eprintln!("SKIPPED: kubectl is not installed on this machine");
        return Ok(());
    };
    let server = server().await?;
    let os = Openstack::new(cli, server.data_dir())?;
    let kubectl = Kubectl::new(kubectl, &server.kubeconfig_path())?;

    // The admin's token, from clouds.yaml as written.
    let token = os.json(&["token", "issue"])?;
    ensure!(
        token["id"].as_str().is_some_and(|t| !t.is_empty()),
        "{token}"
    );
    ensure!(token["project_id"].as_str().is_some(), "{token}");

    // Projects, users, roles and assignments.
    let project = os.json(&["project", "create", "--description", "Team A", "team-a"])?;
    let project_id = project["id"].as_str().context("project id")?.to_owned();
    ensure!(names(&os.json(&["project", "list"])?, "Name").contains(&"team-a".to_owned()));
    os.json(&[
        "user",
        "create",
        "--password",
        "pw-alice",
        "--project",
        "team-a",
        "alice",
    ])?;
    ensure!(names(&os.json(&["user", "list"])?, "Name").contains(&"alice".to_owned()));
    os.ok(&[
        "role",
        "add",
        "--project",
        "team-a",
        "--user",
        "alice",
        "member",
    ])?;
    let roles = names(&os.json(&["role", "list"])?, "Name");
    for role in ["admin", "member", "reader"] {
        ensure!(roles.contains(&role.to_owned()), "{roles:?}");
    }
    let assignments = os.json(&[
        "role",
        "assignment",
        "list",
        "--project",
        "team-a",
        "--names",
    ])?;
    ensure!(
        assignments.as_array().is_some_and(|rows| rows
            .iter()
            .any(|row| row["User"] == "alice@Default" && row["Role"] == "member")),
        "{assignments}"
    );
    os.ok(&["user", "set", "--disable", "alice"])?;
    let (success, _, _) = os.run(&[
        "--os-username",
        "alice",
        "--os-password",
        "pw-alice",
        "--os-project-name",
        "team-a",
        "token",
        "issue",
    ])?;
    ensure!(!success, "a disabled user got a token");
    os.ok(&["user", "set", "--enable", "alice"])?;

    // A member's token is scoped to its project.
    let alice = os.json(&[
        "--os-username",
        "alice",
        "--os-password",
        "pw-alice",
        "--os-project-name",
        "team-a",
        "token",
        "issue",
    ])?;
    ensure!(alice["project_id"] == project_id.as_str(), "{alice}");
    let (success, _, _) = os.run(&[
        "--os-username",
        "alice",
        "--os-password",
        "wrong",
        "--os-project-name",
        "team-a",
        "token",
        "issue",
    ])?;
    ensure!(!success, "a wrong password got a token");

    // The same token works on the Kubernetes face, within the project only.
    let alice_token = alice["id"].as_str().context("token id")?;
    eventually("team-a's namespace exists", || {
        Ok(kubectl.run(&["get", "namespace", "team-a"], None)?.success)
    })
    .await?;
    kubectl.ok(&[
        "--token",
        alice_token,
        "-n",
        "team-a",
        "create",
        "configmap",
        "c1",
        "--from-literal=a=b",
    ])?;
    let listed = kubectl.ok(&[
        "--token",
        alice_token,
        "-n",
        "team-a",
        "get",
        "configmaps",
        "-o",
        "name",
    ])?;
    ensure!(listed.contains("configmap/c1"), "{listed}");
    let refused = kubectl.run(
        &["--token", alice_token, "-n", "admin", "get", "configmaps"],
        None,
    )?;
    ensure!(
        !refused.success && refused.stderr.contains("Forbidden"),
        "{refused:?}"
    );

    // A namespace made with kubectl is a project.
    kubectl.ok(&["create", "namespace", "from-kubectl"])?;
    eventually("the namespace appears as a project", || {
        Ok(names(&os.json(&["project", "list"])?, "Name").contains(&"from-kubectl".to_owned()))
    })
    .await?;

    // Removing the role ends access; deleting the project deletes its namespace.
    os.ok(&[
        "role",
        "remove",
        "--project",
        "team-a",
        "--user",
        "alice",
        "member",
    ])?;
    let refused = kubectl.run(
        &["--token", alice_token, "-n", "team-a", "get", "configmaps"],
        None,
    )?;
    ensure!(!refused.success, "a token outlived its role: {refused:?}");
    os.ok(&["user", "delete", "alice"])?;
    ensure!(!names(&os.json(&["user", "list"])?, "Name").contains(&"alice".to_owned()));
    os.ok(&["project", "delete", "team-a"])?;
    eventually("team-a's namespace is gone", || {
        Ok(!kubectl.run(&["get", "namespace", "team-a"], None)?.success)
    })
    .await?;
    Ok(())
}

/// One cell of `openstack quota show -f json` (rows of `Resource` and columns).
fn cell(rows: &Value, resource: &str, column: &str) -> Value {
    rows.as_array()
        .and_then(|rows| rows.iter().find(|row| row["Resource"] == resource))
        .map_or(Value::Null, |row| row[column].clone())
}

#[tokio::test(flavor = "multi_thread")]
async fn openstack_quotas_and_resource_quotas_are_one_ledger() -> anyhow::Result<()> {
    let Some(cli) = Openstack::find() else {
        anyhow::bail!(
            "the openstack CLI is missing: run ./scripts/test, which installs it into target/openstack-venv"
        );
    };
    let Some(kubectl) = Kubectl::find() else {
        eprintln!("SKIPPED: kubectl is not installed on this machine");
        return Ok(());
    };
    let server = server().await?;
    let os = Openstack::new(cli, server.data_dir())?;
    let kubectl = Kubectl::new(kubectl, &server.kubeconfig_path())?;
    os.ok(&["project", "create", "team"])?;
    os.ok(&["user", "create", "--password", "pw-alice", "alice"])?;
    os.ok(&[
        "role",
        "add",
        "--project",
        "team",
        "--user",
        "alice",
        "member",
    ])?;
    eventually("team's namespace exists", || {
        Ok(kubectl.run(&["get", "namespace", "team"], None)?.success)
    })
    .await?;

    // Limits set with `openstack quota set` are a ResourceQuota on the Kubernetes face.
    os.ok(&[
        "quota",
        "set",
        "--instances",
        "5",
        "--cores",
        "8",
        "--ram",
        "4096",
        "--ports",
        "20",
        "--floating-ips",
        "3",
        "--volumes",
        "4",
        "--gigabytes",
        "100",
        "team",
    ])?;
    let shown = os.json(&["quota", "show", "team"])?;
    for (resource, limit) in [
        ("instances", 5),
        ("cores", 8),
        ("ram", 4096),
        ("ports", 20),
        ("floating_ips", 3),
        ("volumes", 4),
        ("gigabytes", 100),
        ("routers", -1),
    ] {
        ensure!(
            cell(&shown, resource, "Limit") == limit,
            "{resource} should be {limit}: {shown}"
        );
    }
    let quota: Value = serde_json::from_str(&kubectl.ok(&[
        "get",
        "resourcequota",
        "openstack",
        "-n",
        "team",
        "-o",
        "json",
    ])?)?;
    let hard = &quota["spec"]["hard"];
    ensure!(
        hard["count/virtualmachines.compute.ronghe.io"] == "5",
        "{hard}"
    );
    ensure!(
        hard["requests.memory"] == "4096Mi" && hard["requests.cpu"] == "8",
        "{hard}"
    );

    // A quota made with kubectl counts on the OpenStack face: the smaller limit holds.
    kubectl.ok(&[
        "create",
        "quota",
        "k8s-limits",
        "-n",
        "team",
        "--hard=requests.cpu=4,count/configmaps=1",
    ])?;
    let compute = os.json(&["quota", "show", "--compute", "--usage", "team"])?;
    ensure!(
        cell(&compute, "cores", "Limit") == 4 && cell(&compute, "cores", "In Use") == 0,
        "{compute}"
    );

    // A member works within the quota, is refused past it, and cannot change it.
    let alice = os.json(&[
        "--os-username",
        "alice",
        "--os-password",
        "pw-alice",
        "--os-project-name",
        "team",
        "token",
        "issue",
    ])?;
    let alice = alice["id"].as_str().context("alice's token")?;
    kubectl.ok(&["--token", alice, "-n", "team", "create", "configmap", "c1"])?;
    let refused = kubectl.run(
        &["--token", alice, "-n", "team", "create", "configmap", "c2"],
        None,
    )?;
    ensure!(
        !refused.success && refused.stderr.contains("exceeded quota: k8s-limits"),
        "{refused:?}"
    );
    let created = kubectl.run(&["-n", "team", "get", "configmap", "c2"], None)?;
    ensure!(!created.success, "a refused create left an object");
    eventually("the quota's status counts the configmap", || {
        let used = kubectl.ok(&[
            "get",
            "quota",
            "k8s-limits",
            "-n",
            "team",
            "-o",
            "jsonpath={.status.used.count/configmaps}",
        ])?;
        Ok(used.trim() == "1")
    })
    .await?;
    let member = |args: &[&str]| {
        let mut all = vec![
            "--os-username",
            "alice",
            "--os-password",
            "pw-alice",
            "--os-project-name",
            "team",
        ];
        all.extend_from_slice(args);
        os.run(&all)
    };
    let (ok, stdout, stderr) = member(&["quota", "show", "--compute", "-f", "json"])?;
    ensure!(ok, "a member reads its quota: {stderr}");
    let own: Value = serde_json::from_str(&stdout)?;
    ensure!(cell(&own, "instances", "Limit") == 5, "{own}");
    let (ok, _, stderr) = member(&["quota", "set", "--instances", "50", "team"])?;
    ensure!(
        !ok && stderr.contains("403"),
        "a member must not raise its quota: {stderr}"
    );
    let refused = kubectl.run(
        &[
            "--token",
            alice,
            "-n",
            "team",
            "delete",
            "quota",
            "k8s-limits",
        ],
        None,
    )?;
    ensure!(
        !refused.success && refused.stderr.contains("Forbidden"),
        "{refused:?}"
    );

    // `quota delete` drops the limits set here; the kubectl quota stays.
    os.ok(&["quota", "delete", "team"])?;
    let shown = os.json(&["quota", "show", "--compute", "team"])?;
    ensure!(
        cell(&shown, "instances", "Limit") == -1 && cell(&shown, "cores", "Limit") == 4,
        "{shown}"
    );
    Ok(())
}
