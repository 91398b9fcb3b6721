//! The real kubectl against a real `ronghe server`: the commands users run every day, on a
//! fresh discovery cache, and the data surviving restarts.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use ronghe_testkit::{Kubectl, ServerProcess};
use serde_json::{Value, json};

use super::BINARY;

/// Starts a server and a kubectl for it; `None` (with a loud message) if kubectl is absent.
async fn setup() -> anyhow::Result<Option<(ServerProcess, Kubectl)>> {
    let Some(kubectl) = Kubectl::find() else {
        eprintln!(
            "SKIPPED: kubectl is not installed on this machine (looked for kubectl.1.32 and kubectl)"
        );
        return Ok(None);
    };
    let server = ServerProcess::start(Path::new(BINARY), &[]).await?;
    let kubectl = Kubectl::new(kubectl, &server.kubeconfig_path())?;
    Ok(Some((server, kubectl)))
}

fn json_of(text: &str) -> anyhow::Result<Value> {
    serde_json::from_str(text).with_context(|| format!("kubectl printed no JSON: {text}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn version_and_api_resources() -> anyhow::Result<()> {
    let Some((_server, kubectl)) = setup().await? else {
        return Ok(());
    };
    let version = kubectl.ok(&["version", "-o", "json"])?;
    let version = json_of(&version)?;
    assert_eq!(version["serverVersion"]["major"], "1");
    assert_eq!(version["serverVersion"]["minor"], "32");

    let resources = kubectl.ok(&["api-resources"])?;
    for line in [
        ["configmaps", "cm", "v1", "true", "ConfigMap"],
        ["namespaces", "ns", "v1", "false", "Namespace"],
        ["leases", "", "coordination.k8s.io/v1", "true", "Lease"],
    ] {
        let found = resources.lines().any(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let want: Vec<&str> = line.iter().copied().filter(|w| !w.is_empty()).collect();
            words == want
        });
        assert!(found, "api-resources lacks {line:?}:\n{resources}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn imperative_create_get_label_patch_describe_delete() -> anyhow::Result<()> {
    let Some((_server, kubectl)) = setup().await? else {
        return Ok(());
    };
    // The imperative generators send protobuf bodies.
    kubectl.ok(&["create", "namespace", "team-a"])?;
    kubectl.ok(&[
        "create",
        "configmap",
        "settings",
        "-n",
        "team-a",
        "--from-literal=color=blue",
        "--from-literal=size=9",
    ])?;
    kubectl.ok(&[
        "create",
        "secret",
        "generic",
        "creds",
        "-n",
        "team-a",
        "--from-literal=password=hunter2",
    ])?;
    kubectl.with_stdin(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-file\n  namespace: team-a\ndata:\n  a: \"1\"\n",
    )?;

    // Server-rendered table with the kind's columns.
    let table = kubectl.ok(&["get", "configmaps", "-n", "team-a"])?;
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(header, ["NAME", "DATA", "AGE"], "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("settings ") && l.split_whitespace().nth(1) == Some("2")),
        "{table}"
    );
    let all = kubectl.ok(&["get", "cm", "-A"])?;
    assert!(
        all.lines()
            .any(|l| l.starts_with("team-a ") && l.contains("from-file")),
        "{all}"
    );
    let secrets = kubectl.ok(&["get", "secrets", "-n", "team-a"])?;
    assert!(
        secrets.contains("creds") && secrets.contains("Opaque"),
        "{secrets}"
    );
    let namespaces = kubectl.ok(&["get", "ns"])?;
    assert!(
        namespaces
            .lines()
            .any(|l| l.starts_with("team-a ") && l.contains("Active")),
        "{namespaces}"
    );

    let object = json_of(&kubectl.ok(&["get", "cm", "settings", "-n", "team-a", "-o", "json"])?)?;
    assert_eq!(object["data"], json!({"color": "blue", "size": "9"}));
    assert!(
        object["metadata"]["uid"]
            .as_str()
            .is_some_and(|u| !u.is_empty())
    );
    assert!(object["metadata"]["resourceVersion"].as_str().is_some());
    assert!(
        object["metadata"]["creationTimestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    let secret = json_of(&kubectl.ok(&["get", "secret", "creds", "-n", "team-a", "-o", "json"])?)?;
    assert_eq!(secret["data"]["password"], "aHVudGVyMg==");

    kubectl.ok(&["label", "cm", "settings", "-n", "team-a", "tier=frontend"])?;
    let labelled = kubectl.ok(&[
        "get",
        "cm",
        "-n",
        "team-a",
        "-l",
        "tier=frontend",
        "-o",
        "name",
    ])?;
    assert_eq!(labelled.trim(), "configmap/settings");
    let shown = kubectl.ok(&["get", "cm", "-n", "team-a", "--show-labels"])?;
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("settings") && l.contains("tier=frontend")),
        "{shown}"
    );

    kubectl.ok(&[
        "patch",
        "cm",
        "settings",
        "-n",
        "team-a",
        "--type=merge",
        "-p",
        r#"{"data":{"color":"green"}}"#,
    ])?;
    kubectl.ok(&[
        "patch",
        "cm",
        "settings",
        "-n",
        "team-a",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/data/size"}]"#,
    ])?;
    let patched = json_of(&kubectl.ok(&["get", "cm", "settings", "-n", "team-a", "-o", "json"])?)?;
    assert_eq!(patched["data"], json!({"color": "green"}));
    // A failing JSON patch test changes nothing.
    let failed = kubectl.run(
        &["patch", "cm", "settings", "-n", "team-a", "--type=json", "-p", r#"[{"op":"test","path":"/data/color","value":"red"},{"op":"remove","path":"/data/color"}]"#],
        None,
    )?;
    ensure!(!failed.success, "a failed test op must fail the patch");
    let unchanged =
        json_of(&kubectl.ok(&["get", "cm", "settings", "-n", "team-a", "-o", "json"])?)?;
    assert_eq!(unchanged["data"], json!({"color": "green"}));

    let described = kubectl.ok(&["describe", "cm", "settings", "-n", "team-a"])?;
    assert!(
        described.contains("Name:") && described.contains("settings"),
        "{described}"
    );
    assert!(described.contains("tier=frontend"), "{described}");

    kubectl.ok(&["delete", "cm", "settings", "-n", "team-a"])?;
    let gone = kubectl.run(&["get", "cm", "settings", "-n", "team-a"], None)?;
    ensure!(
        !gone.success && gone.stderr.contains("NotFound"),
        "{gone:?}"
    );

    // Deleting the namespace deletes what is in it, then the namespace itself.
    kubectl.ok(&["delete", "namespace", "team-a", "--timeout=60s"])?;
    let left = kubectl.run(&["get", "ns", "team-a"], None)?;
    ensure!(!left.success, "namespace still there: {left:?}");
    Ok(())
}

const DEPLOYMENT_LIKE: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: app-config
  namespace: default
  labels:
    app: web
data:
  replicas: "2"
  mode: fast
"#;

#[tokio::test(flavor = "multi_thread")]
async fn apply_client_side_and_server_side() -> anyhow::Result<()> {
    let Some((_server, kubectl)) = setup().await? else {
        return Ok(());
    };
    let created = kubectl.with_stdin(&["apply", "-f", "-"], DEPLOYMENT_LIKE)?;
    assert!(
        created.contains("configmap/app-config created"),
        "{created}"
    );
    let unchanged = kubectl.with_stdin(&["apply", "-f", "-"], DEPLOYMENT_LIKE)?;
    assert!(unchanged.contains("unchanged"), "{unchanged}");
    let changed_manifest = DEPLOYMENT_LIKE
        .replace("replicas: \"2\"", "replicas: \"3\"")
        .replace("  mode: fast\n", "");
    let configured = kubectl.with_stdin(&["apply", "-f", "-"], &changed_manifest)?;
    assert!(configured.contains("configured"), "{configured}");
    let object = json_of(&kubectl.ok(&["get", "cm", "app-config", "-o", "json"])?)?;
    // Client-side apply removes what the manifest no longer has.
    assert_eq!(object["data"], json!({"replicas": "3"}));

    let ssa = DEPLOYMENT_LIKE.replace("app-config", "ssa-config");
    let applied = kubectl.with_stdin(&["apply", "--server-side", "-f", "-"], &ssa)?;
    assert!(applied.contains("serverside-applied"), "{applied}");
    let changed = ssa.replace("mode: fast", "mode: slow");
    kubectl.with_stdin(&["apply", "--server-side", "-f", "-"], &changed)?;
    let object = json_of(&kubectl.ok(&["get", "cm", "ssa-config", "-o", "json"])?)?;
    assert_eq!(object["data"]["mode"], "slow");
    assert_eq!(object["metadata"]["labels"]["app"], "web");

    // Strict validation (kubectl's default) rejects unknown fields, and nothing is written.
    let bad = DEPLOYMENT_LIKE
        .replace("app-config", "bad-config")
        .replace("\ndata:", "\nbogus: 1\ndata:");
    let rejected = kubectl.run(&["apply", "-f", "-"], Some(&bad))?;
    ensure!(
        !rejected.success && rejected.stderr.contains("unknown field"),
        "{rejected:?}"
    );
    ensure!(
        !kubectl.run(&["get", "cm", "bad-config"], None)?.success,
        "a rejected object was stored"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn get_watch_sees_added_modified_deleted() -> anyhow::Result<()> {
    let Some((server, kubectl)) = setup().await? else {
        return Ok(());
    };
    let client = server.client().await?;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let mut watcher =
        kubectl.spawn(&["get", "cm", "-w", "--output-watch-events", "-n", "default"])?;
    let stdout = watcher.stdout.take().context("kubectl stdout")?;
    let (lines_tx, lines) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let wait_for = |want: &str| -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = lines
                .recv_timeout(left)
                .with_context(|| format!("no {want} line from kubectl get -w"))?;
            if line.split_whitespace().next() == Some(want) && line.contains("watched") {
                return Ok(());
            }
        }
    };
    // Give kubectl its list before the first change, so the change arrives as an event.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "watched"}, "data": {"a": "1"}}))?;
    api.create(&PostParams::default(), &cm).await?;
    wait_for("ADDED")?;
    api.patch(
        "watched",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"a": "2"}})),
    )
    .await?;
    wait_for("MODIFIED")?;
    api.delete("watched", &DeleteParams::default()).await?;
    wait_for("DELETED")?;
    let _ = watcher.kill();
    let _ = watcher.wait();
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn data_survives_restart_and_kill() -> anyhow::Result<()> {
    let Some((mut server, kubectl)) = setup().await? else {
        return Ok(());
    };
    kubectl.ok(&[
        "create",
        "configmap",
        "before-restart",
        "--from-literal=k=v",
    ])?;
    server.restart().await?;
    // The restarted server listens on a new port; kubectl reads the rewritten kubeconfig.
    let kubectl = Kubectl::new(
        Kubectl::find().context("kubectl")?,
        &server.kubeconfig_path(),
    )?;
    let object = json_of(&kubectl.ok(&["get", "cm", "before-restart", "-o", "json"])?)?;
    assert_eq!(object["data"]["k"], "v");
    kubectl.ok(&["create", "configmap", "before-kill", "--from-literal=k=w"])?;
    server.kill()?;
    server.restart().await?;
    let kubectl = Kubectl::new(
        Kubectl::find().context("kubectl")?,
        &server.kubeconfig_path(),
    )?;
    let names = kubectl.ok(&["get", "cm", "-o", "name"])?;
    assert!(
        names.contains("configmap/before-restart") && names.contains("configmap/before-kill"),
        "{names}"
    );
    Ok(())
}

const EVENT_AND_LEASE: &str = r#"apiVersion: v1
kind: Event
metadata:
  name: web.1
  namespace: default
involvedObject:
  kind: ConfigMap
  name: web
  namespace: default
reason: Checked
message: all good
type: Normal
---
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata:
  name: node-1
  namespace: default
spec:
  holderIdentity: node-1
"#;

#[tokio::test(flavor = "multi_thread")]
async fn events_and_leases_print_their_columns() -> anyhow::Result<()> {
    let Some((_server, kubectl)) = setup().await? else {
        return Ok(());
    };
    kubectl.with_stdin(&["create", "-f", "-"], EVENT_AND_LEASE)?;
    let events = kubectl.ok(&["get", "events"])?;
    let mut lines = events.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
        "{events}"
    );
    let row: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        &row[1..],
        ["Normal", "Checked", "configmap/web", "all", "good"],
        "{events}"
    );
    let selected = kubectl.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=web",
        "-o",
        "name",
    ])?;
    assert_eq!(selected.trim(), "event/web.1");
    let leases = kubectl.ok(&["get", "leases"])?;
    assert!(
        leases
            .lines()
            .next()
            .is_some_and(|h| h.split_whitespace().eq(["NAME", "HOLDER", "AGE"])),
        "{leases}"
    );
    assert!(
        leases
            .lines()
            .any(|l| l.split_whitespace().take(2).eq(["node-1", "node-1"])),
        "{leases}"
    );
    Ok(())
}
