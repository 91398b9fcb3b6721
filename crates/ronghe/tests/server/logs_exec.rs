//! `kubectl logs` and `kubectl exec` through the server to the agent of the pod's host
//! (a simulated host with the fake driver, whose containers log `fake log of NAME` and
//! echo the commands they are given), kube-apiserver's errors, the agent's own endpoint
//! (node token only, VM consoles), and who may read logs and who may exec.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, ensure};
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, PostParams};
use ronghe_testkit::{AgentProcess, Kubectl, ServerProcess};
use serde_json::{Value, json};

use super::{BINARY, wait_for};

/// A server, one simulated host joined to it, and kubectl as the admin; `None` (said
/// loudly) without kubectl.
async fn setup() -> anyhow::Result<Option<(ServerProcess, AgentProcess, Kubectl)>> {
    let Some(kubectl) = Kubectl::find() else {
        eprintln!(
            "SKIPPED: kubectl is not installed on this machine (looked for kubectl.1.32 and kubectl)"
        );
        return Ok(None);
    };
    let server = ServerProcess::start(Path::new(BINARY), &[]).await?;
    let agent = AgentProcess::start(
        Path::new(BINARY),
        &server,
        &["--node-name", "logs", "--simulate", "1", "--vcpus", "8"],
    )?;
    let kubectl = Kubectl::new(kubectl, &server.kubeconfig_path())?;
    Ok(Some((server, agent, kubectl)))
}

fn pod(name: &str, containers: &[&str], cpu: &str) -> anyhow::Result<Pod> {
    let containers: Vec<Value> = containers
        .iter()
        .map(|container| {
            json!({"name": container, "image": "busybox",
                "resources": {"requests": {"cpu": cpu, "memory": "16Mi"}}})
        })
        .collect();
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"containers": containers},
    }))?)
}

async fn create_running(pods: &Api<Pod>, pod: Pod) -> anyhow::Result<()> {
    let name = pod.metadata.name.clone().context("a name")?;
    pods.create(&PostParams::default(), &pod).await?;
    wait_for(
        Duration::from_secs(30),
        &format!("{name} running"),
        || async {
            let pod = pods.get(&name).await?;
            let phase = pod.status.and_then(|s| s.phase);
            Ok((phase.as_deref() == Some("Running")).then_some(()))
        },
    )
    .await
}

/// The port the simulated host's agent reports (the same for all hosts it simulates).
async fn agent_port(client: &kube::Client) -> anyhow::Result<u16> {
    let nodes: Api<Node> = Api::all(client.clone());
    wait_for(Duration::from_secs(30), "the node's agent port", || async {
        let node = nodes.get_opt("logs-00000").await?;
        let port = node
            .and_then(|n| n.status)
            .and_then(|s| s.daemon_endpoints)
            .and_then(|d| d.kubelet_endpoint)
            .map(|e| e.port)
            .filter(|port| *port != 0);
        Ok(port.map(u16::try_from).transpose()?)
    })
    .await
}

/// One plain HTTP/1.0 GET to the agent on loopback (so the body is not chunked); its
/// status code and body.
fn agent_get(port: u16, path: &str, token: Option<&str>) -> anyhow::Result<(u16, String)> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let authorization = token
        .map(|token| format!("Authorization: Bearer {token}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: agent\r\n{authorization}\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let code = response
        .split_whitespace()
        .nth(1)
        .context("no status line")?
        .parse()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((code, body))
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_logs_and_exec_reach_the_agent() -> anyhow::Result<()> {
    let Some((server, _agent, kubectl)) = setup().await? else {
        return Ok(());
    };
    let client = server.client().await?;
    agent_port(&client).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    create_running(&pods, pod("web", &["main"], "100m")?).await?;

    ensure!(kubectl.ok(&["logs", "web"])? == "fake log of main\n");
    ensure!(kubectl.ok(&["logs", "-f", "web"])? == "fake log of main\n");
    ensure!(kubectl.ok(&["logs", "--tail=1", "web", "-c", "main"])? == "fake log of main\n");
    ensure!(kubectl.ok(&["logs", "--limit-bytes=4", "web"])? == "fake");
    ensure!(kubectl.ok(&["logs", "--since=1h", "--timestamps", "web"])? == "fake log of main\n");

    // exec over WebSocket (v5.channel.k8s.io): output and exit codes.
    let echoed = kubectl.run(&["exec", "web", "--", "echo", "hi"], None)?;
    ensure!(echoed.success, "{echoed:?}");
    ensure!(echoed.stdout == "echo hi\n", "{echoed:?}");
    let failed = kubectl.run(&["exec", "web", "--", "exit", "3"], None)?;
    ensure!(failed.code == Some(3), "{failed:?}");
    ensure!(
        failed
            .stderr
            .contains("command terminated with exit code 3"),
        "{failed:?}"
    );
    let with_stdin = kubectl.run(&["exec", "-i", "web", "--", "cat"], Some("ignored\n"))?;
    ensure!(
        with_stdin.success && with_stdin.stdout == "cat\n",
        "{with_stdin:?}"
    );

    // Several containers: kubectl names one; the API asks for one; unknown ones are refused.
    create_running(&pods, pod("pair", &["a", "b"], "100m")?).await?;
    ensure!(kubectl.ok(&["logs", "pair", "-c", "b"])? == "fake log of b\n");
    let exec_b = kubectl.run(&["exec", "pair", "-c", "b", "--", "ls", "/"], None)?;
    ensure!(exec_b.stdout == "ls /\n", "{exec_b:?}");
    let (code, body, _) = ronghe_testkit::raw_request(
        &client,
        "GET",
        "/api/v1/namespaces/default/pods/pair/log",
        None,
        Vec::new(),
    )
    .await?;
    ensure!(code == 400, "{code} {body}");
    ensure!(
        body["message"] == "a container name must be specified for pod pair, choose one of: [a b]",
        "{body}"
    );
    // kubectl checks the name itself; the API says the same.
    let unknown = kubectl.run(&["logs", "pair", "-c", "c"], None)?;
    ensure!(
        !unknown.success
            && unknown
                .stderr
                .contains("container c is not valid for pod pair"),
        "{unknown:?}"
    );
    let (code, body, _) = ronghe_testkit::raw_request(
        &client,
        "GET",
        "/api/v1/namespaces/default/pods/pair/log?container=c",
        None,
        Vec::new(),
    )
    .await?;
    ensure!(
        code == 400 && body["message"] == "container c is not valid for pod pair",
        "{code} {body}"
    );
    let unknown = kubectl.run(&["exec", "pair", "-c", "c", "--", "ls"], None)?;
    ensure!(
        !unknown.success
            && unknown
                .stderr
                .contains("container c is not valid for pod pair"),
        "{unknown:?}"
    );

    // No such pod.
    // kubectl looks the pod up before asking for its log, and words the 404 its own way.
    let missing = kubectl.run(&["logs", "nope"], None)?;
    ensure!(
        !missing.success
            && missing
                .stderr
                .contains("(NotFound): pods \"nope\" not found"),
        "{missing:?}"
    );
    let missing = kubectl.run(&["exec", "nope", "--", "ls"], None)?;
    ensure!(
        missing.stderr.contains("pods \"nope\" not found"),
        "{missing:?}"
    );
    let (code, body, _) = ronghe_testkit::raw_request(
        &client,
        "GET",
        "/api/v1/namespaces/default/pods/nope/log",
        None,
        Vec::new(),
    )
    .await?;
    ensure!(code == 404 && body["reason"] == "NotFound", "{code} {body}");

    // A pod no host can take has nothing to show yet.
    pods.create(&PostParams::default(), &pod("stuck", &["main"], "64")?)
        .await?;
    let waiting = kubectl.run(&["logs", "stuck"], None)?;
    ensure!(
        waiting.stderr.contains(
            "Error from server (BadRequest): container \"main\" in pod \"stuck\" is waiting to start: ContainerCreating"
        ),
        "{waiting:?}"
    );

    // attach is refused, clearly.
    let attach = kubectl.run(&["attach", "web"], None)?;
    ensure!(
        !attach.success && attach.stderr.contains("pods/attach is not supported"),
        "{attach:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_agent_endpoint_wants_the_node_token() -> anyhow::Result<()> {
    let server = ServerProcess::start(Path::new(BINARY), &[]).await?;
    let _agent = AgentProcess::start(
        Path::new(BINARY),
        &server,
        &[
            "--node-name",
            "logs",
            "--simulate",
            "1",
            "--vcpus",
            "8",
            "--memory-mb",
            "8192",
        ],
    )?;
    let client = server.client().await?;
    let port = agent_port(&client).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    create_running(&pods, pod("web", &["main"], "100m")?).await?;
    let token = std::fs::read_to_string(server.data_dir().join("node-token"))?;
    let token = token.trim();

    let path = "/containerLogs/default/web/main";
    ensure!(agent_get(port, path, None)?.0 == 401);
    ensure!(agent_get(port, path, Some("not-the-token"))?.0 == 401);
    let admin = std::fs::read_to_string(server.data_dir().join("admin-token"))?;
    ensure!(
        agent_get(port, path, Some(admin.trim()))?.0 == 401,
        "a user's token is not the node token"
    );
    ensure!(agent_get(port, path, Some(token))? == (200, "fake log of main\n".to_owned()));
    ensure!(agent_get(port, "/containerLogs/default/nope/main", Some(token))?.0 == 404);

    // A VM's console comes from the agent of its host (the fake VM writes nothing).
    let flavor = json!({"apiVersion": "compute.ronghe.io/v1", "kind": "Flavor",
        "metadata": {"name": "m1.tiny"}, "spec": {"vcpus": 1, "ram": 512, "disk": 1}});
    let vm = json!({"apiVersion": "compute.ronghe.io/v1", "kind": "VirtualMachine",
        "metadata": {"name": "box"}, "spec": {"flavorRef": "m1.tiny"}});
    for (path, body) in [
        ("/apis/compute.ronghe.io/v1/flavors", flavor),
        (
            "/apis/compute.ronghe.io/v1/namespaces/default/virtualmachines",
            vm,
        ),
    ] {
        let (code, answer, _) = ronghe_testkit::raw_request(
            &client,
            "POST",
            path,
            Some("application/json"),
            body.to_string().into_bytes(),
        )
        .await?;
        ensure!(code == 201, "{answer}");
    }
    wait_for(Duration::from_secs(30), "box ACTIVE", || async {
        let (_, body, _) = ronghe_testkit::raw_request(
            &client,
            "GET",
            "/apis/compute.ronghe.io/v1/namespaces/default/virtualmachines/box",
            None,
            Vec::new(),
        )
        .await?;
        Ok((body["status"]["status"] == "ACTIVE").then_some(()))
    })
    .await?;
    ensure!(
        agent_get(port, "/vms/default/box/console?lines=5", Some(token))? == (200, String::new())
    );
    ensure!(agent_get(port, "/vms/default/box/console", None)?.0 == 401);
    ensure!(agent_get(port, "/vms/default/nope/console", Some(token))?.0 == 404);
    Ok(())
}

/// Requests with explicit credentials through a client that has none of its own.
async fn send(
    client: &kube::Client,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> anyhow::Result<(u16, Value, http::HeaderMap)> {
    let mut builder = http::Request::builder().method(method).uri(path);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    if body.is_some() {
        builder = builder.header(http::header::CONTENT_TYPE, "application/json");
    }
    let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let response = client
        .send(builder.body(kube::client::Body::from(bytes))?)
        .await?;
    let code = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await?.to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Ok((code, value, headers))
}

/// A password login scoped to `project`; the token.
async fn login(
    client: &kube::Client,
    user: &str,
    password: &str,
    project: &str,
) -> anyhow::Result<String> {
    let body = json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": user, "domain": {"name": "Default"}, "password": password}}},
        "scope": {"project": {"name": project, "domain": {"name": "Default"}}}}});
    let (code, answer, headers) =
        send(client, "POST", "/identity/v3/auth/tokens", &[], Some(&body)).await?;
    ensure!(code == 201, "login of {user}: {code} {answer}");
    Ok(headers
        .get("x-subject-token")
        .context("no X-Subject-Token")?
        .to_str()?
        .to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn readers_read_logs_and_only_members_exec() -> anyhow::Result<()> {
    let Some((server, _agent, kubectl)) = setup().await? else {
        return Ok(());
    };
    let anonymous = server.anonymous_client().await?;
    let password = std::fs::read_to_string(server.data_dir().join("admin-password"))?;
    let admin = login(&anonymous, "admin", password.trim(), "admin").await?;
    let keystone = |method: &'static str, path: String, body: Option<Value>| {
        let (anonymous, admin) = (anonymous.clone(), admin.clone());
        async move {
            send(
                &anonymous,
                method,
                &path,
                &[("x-auth-token", &admin)],
                body.as_ref(),
            )
            .await
        }
    };
    let (code, project, _) = keystone(
        "POST",
        "/identity/v3/projects".into(),
        Some(json!({"project": {"name": "shop"}})),
    )
    .await?;
    ensure!(code == 201, "{project}");
    let project_id = project["project"]["id"]
        .as_str()
        .context("project id")?
        .to_owned();
    for (user, role) in [("rita", "reader"), ("max", "member")] {
        let (code, created, _) = keystone(
            "POST",
            "/identity/v3/users".into(),
            Some(json!({"user": {"name": user, "password": format!("pw-{user}")}})),
        )
        .await?;
        ensure!(code == 201, "{created}");
        let user_id = created["user"]["id"]
            .as_str()
            .context("user id")?
            .to_owned();
        let (_, roles, _) =
            keystone("GET", format!("/identity/v3/roles?name={role}"), None).await?;
        let role_id = roles["roles"][0]["id"]
            .as_str()
            .context("role id")?
            .to_owned();
        let grant = format!("/identity/v3/projects/{project_id}/users/{user_id}/roles/{role_id}");
        let (code, answer, _) = keystone("PUT", grant, None).await?;
        ensure!(code == 204, "{answer}");
    }
    let client = server.client().await?;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    wait_for(Duration::from_secs(20), "the shop namespace", || async {
        Ok(namespaces.get_opt("shop").await?.map(|_| ()))
    })
    .await?;
    agent_port(&client).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "shop");
    create_running(&pods, pod("web", &["main"], "100m")?).await?;

    let reader = login(&anonymous, "rita", "pw-rita", "shop").await?;
    let member = login(&anonymous, "max", "pw-max", "shop").await?;
    let as_reader = ["--token", reader.as_str(), "-n", "shop"];
    let as_member = ["--token", member.as_str(), "-n", "shop"];

    let logs = kubectl.run(&[&as_reader[..], &["logs", "web"]].concat(), None)?;
    ensure!(
        logs.success && logs.stdout == "fake log of main\n",
        "{logs:?}"
    );
    let refused = kubectl.run(
        &[&as_reader[..], &["exec", "web", "--", "ls"]].concat(),
        None,
    )?;
    ensure!(!refused.success, "{refused:?}");
    ensure!(
        refused.stderr.contains(
            "Error from server (Forbidden): pods \"web\" is forbidden: User \"rita\" cannot create resource \"pods/exec\""
        ),
        "{refused:?}"
    );
    let allowed = kubectl.run(
        &[&as_member[..], &["exec", "web", "--", "ls"]].concat(),
        None,
    )?;
    ensure!(allowed.success && allowed.stdout == "ls\n", "{allowed:?}");
    Ok(())
}
