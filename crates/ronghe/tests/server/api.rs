//! The API's semantics and its answers to bad input, through raw HTTPS requests: every
//! failure is a `metav1.Status` with the right code, and nothing is written.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use http_body_util::BodyExt;
use ronghe_testkit::{ServerProcess, raw_request};
use serde_json::{Value, json};

use super::{BINARY, server};

const CM: &str = "/api/v1/namespaces/default/configmaps";

fn cm(name: &str) -> Vec<u8> {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}})
        .to_string()
        .into_bytes()
}

/// Asserts a response is a Status with `code` and `reason`.
fn assert_status(response: &(u16, Value, http::HeaderMap), code: u16, reason: &str) {
    let (status, body, _) = response;
    assert_eq!(*status, code, "{body}");
    assert_eq!(body["kind"], "Status", "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["reason"], reason, "{body}");
}

async fn count_configmaps(client: &kube::Client) -> anyhow::Result<usize> {
    let (_, list, _) = raw_request(client, "GET", CM, None, Vec::new()).await?;
    Ok(list["items"].as_array().map_or(0, Vec::len))
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_statuses_and_write_nothing() -> anyhow::Result<()> {
    let server = server().await?;
    let client = server.client().await?;
    let json = Some("application/json");

    let anonymous = server.anonymous_client().await?;
    assert_status(
        &raw_request(&anonymous, "GET", CM, None, Vec::new()).await?,
        401,
        "Unauthorized",
    );
    // Health and version are public.
    assert_eq!(
        raw_request(&anonymous, "GET", "/readyz", None, Vec::new())
            .await?
            .0,
        200
    );
    assert_eq!(
        raw_request(&anonymous, "GET", "/version", None, Vec::new())
            .await?
            .0,
        200
    );

    assert_status(
        &raw_request(&client, "POST", CM, json, b"{\"metadata\":".to_vec()).await?,
        400,
        "BadRequest",
    );
    assert_status(
        &raw_request(
            &client,
            "POST",
            CM,
            Some("application/yaml"),
            b"metadata: [".to_vec(),
        )
        .await?,
        400,
        "BadRequest",
    );
    assert_status(
        &raw_request(&client, "POST", CM, Some("text/plain"), cm("x")).await?,
        415,
        "UnsupportedMediaType",
    );

    let unknown = json!({"metadata": {"name": "strict"}, "data": {}, "bogus": 1}).to_string();
    let strict = raw_request(
        &client,
        "POST",
        &format!("{CM}?fieldValidation=Strict"),
        json,
        unknown.clone().into_bytes(),
    )
    .await?;
    assert_status(&strict, 400, "BadRequest");
    assert!(
        strict.1["message"]
            .as_str()
            .is_some_and(|m| m.contains("unknown field \"bogus\"")),
        "{}",
        strict.1
    );

    let bad_name = raw_request(&client, "POST", CM, json, cm("Not_A_Name")).await?;
    assert_status(&bad_name, 422, "Invalid");
    assert_eq!(
        bad_name.1["details"]["causes"][0]["field"], "metadata.name",
        "{}",
        bad_name.1
    );

    let wrong_kind =
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "wrong"}}).to_string();
    assert_status(
        &raw_request(&client, "POST", CM, json, wrong_kind.into_bytes()).await?,
        400,
        "BadRequest",
    );

    let huge = json!({"metadata": {"name": "huge"}, "data": {"k": "x".repeat(4 * 1024 * 1024)}})
        .to_string();
    assert_status(
        &raw_request(&client, "POST", CM, json, huge.into_bytes()).await?,
        413,
        "RequestEntityTooLarge",
    );

    assert_status(
        &raw_request(
            &client,
            "GET",
            "/api/v1/namespaces/default/widgets",
            None,
            Vec::new(),
        )
        .await?,
        404,
        "NotFound",
    );
    let missing = raw_request(&client, "GET", &format!("{CM}/nope"), None, Vec::new()).await?;
    assert_status(&missing, 404, "NotFound");
    assert_eq!(missing.1["message"], "configmaps \"nope\" not found");
    assert_status(
        &raw_request(
            &client,
            "POST",
            "/api/v1/namespaces/no-such-ns/configmaps",
            json,
            cm("x"),
        )
        .await?,
        404,
        "NotFound",
    );
    assert_status(
        &raw_request(
            &client,
            "GET",
            &format!("{CM}?labelSelector=a%20in%20(b"),
            None,
            Vec::new(),
        )
        .await?,
        400,
        "BadRequest",
    );
    assert_status(
        &raw_request(
            &client,
            "GET",
            &format!("{CM}?fieldSelector=spec.foo%3Dx"),
            None,
            Vec::new(),
        )
        .await?,
        400,
        "BadRequest",
    );
    assert_status(
        &raw_request(
            &client,
            "PATCH",
            &format!("{CM}/nope"),
            Some("application/strategic-merge-patch+json"),
            b"{}".to_vec(),
        )
        .await?,
        404,
        "NotFound",
    );
    ensure!(
        count_configmaps(&client).await? == 0,
        "a rejected request wrote something"
    );

    // Optimistic concurrency: a stale resourceVersion is a 409 Conflict.
    let created = raw_request(&client, "POST", CM, json, cm("cas")).await?;
    assert_eq!(created.0, 201, "{}", created.1);
    let mut object = created.1.clone();
    object["data"]["k"] = json!("w");
    let updated = raw_request(
        &client,
        "PUT",
        &format!("{CM}/cas"),
        json,
        object.to_string().into_bytes(),
    )
    .await?;
    assert_eq!(updated.0, 200, "{}", updated.1);
    object["data"]["k"] = json!("stale");
    let stale = raw_request(
        &client,
        "PUT",
        &format!("{CM}/cas"),
        json,
        object.to_string().into_bytes(),
    )
    .await?;
    assert_status(&stale, 409, "Conflict");
    assert_status(
        &raw_request(&client, "POST", CM, json, cm("cas")).await?,
        409,
        "AlreadyExists",
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn write_semantics() -> anyhow::Result<()> {
    let server = server().await?;
    let client = server.client().await?;
    let json = Some("application/json");

    // generateName, dryRun, Warn validation.
    let generated = json!({"metadata": {"generateName": "gen-"}, "data": {}}).to_string();
    let (code, object, _) = raw_request(&client, "POST", CM, json, generated.into_bytes()).await?;
    assert_eq!(code, 201);
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");
    let (code, _, _) = raw_request(
        &client,
        "POST",
        &format!("{CM}?dryRun=All"),
        json,
        cm("dry"),
    )
    .await?;
    assert_eq!(code, 201);
    assert_eq!(code_of(&client, "GET", &format!("{CM}/dry")).await?, 404);
    let warned = json!({"metadata": {"name": "warned"}, "bogus": 1}).to_string();
    let (code, object, headers) = raw_request(
        &client,
        "POST",
        &format!("{CM}?fieldValidation=Warn"),
        json,
        warned.into_bytes(),
    )
    .await?;
    assert_eq!(code, 201);
    assert!(object.get("bogus").is_none());
    let warning = headers
        .get("warning")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        warning.starts_with("299 - ") && warning.contains("bogus"),
        "{warning:?}"
    );

    // A no-op patch keeps the resourceVersion.
    let (_, before, _) =
        raw_request(&client, "GET", &format!("{CM}/warned"), None, Vec::new()).await?;
    let (_, after, _) = raw_request(
        &client,
        "PATCH",
        &format!("{CM}/warned"),
        Some("application/merge-patch+json"),
        b"{\"metadata\":{}}".to_vec(),
    )
    .await?;
    assert_eq!(
        before["metadata"]["resourceVersion"],
        after["metadata"]["resourceVersion"]
    );

    // Finalizers hold a deleted object until they are removed.
    let held =
        json!({"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}).to_string();
    raw_request(&client, "POST", CM, json, held.into_bytes()).await?;
    let (code, marked, _) =
        raw_request(&client, "DELETE", &format!("{CM}/held"), None, Vec::new()).await?;
    assert_eq!(code, 200);
    assert!(
        marked["metadata"]["deletionTimestamp"].is_string(),
        "{marked}"
    );
    let (code, still, _) =
        raw_request(&client, "GET", &format!("{CM}/held"), None, Vec::new()).await?;
    assert_eq!(code, 200, "{still}");
    let adding = raw_request(
        &client,
        "PATCH",
        &format!("{CM}/held"),
        Some("application/merge-patch+json"),
        br#"{"metadata":{"finalizers":["example.com/hold","example.com/more"]}}"#.to_vec(),
    )
    .await?;
    assert_status(&adding, 422, "Invalid");
    raw_request(
        &client,
        "PATCH",
        &format!("{CM}/held"),
        Some("application/json-patch+json"),
        br#"[{"op":"remove","path":"/metadata/finalizers"}]"#.to_vec(),
    )
    .await?;
    assert_eq!(code_of(&client, "GET", &format!("{CM}/held")).await?, 404);

    // Background garbage collection of dependents.
    let (_, owner, _) = raw_request(&client, "POST", CM, json, cm("owner")).await?;
    let dependent = json!({"metadata": {"name": "dependent", "ownerReferences": [{
        "apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"],
    }]}})
    .to_string();
    assert_eq!(
        raw_request(&client, "POST", CM, json, dependent.into_bytes())
            .await?
            .0,
        201
    );
    delete_with_policy(&client, &format!("{CM}/owner"), "Background").await?;
    wait_gone(&client, &format!("{CM}/dependent")).await?;

    // Status subresource: the object endpoint ignores status; /status changes only status.
    let ns = "/api/v1/namespaces/default";
    let (_, namespace, _) = raw_request(&client, "GET", ns, None, Vec::new()).await?;
    assert_eq!(namespace["status"]["phase"], "Active");
    let (_, after, _) = raw_request(
        &client,
        "PATCH",
        ns,
        Some("application/merge-patch+json"),
        br#"{"status":{"phase":"Weird"}}"#.to_vec(),
    )
    .await?;
    assert_eq!(after["status"]["phase"], "Active");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn lists_select_and_page() -> anyhow::Result<()> {
    let server = server().await?;
    let client = server.client().await?;
    for (name, tier) in [
        ("a", "web"),
        ("b", "db"),
        ("c", "web"),
        ("d", "cache"),
        ("e", ""),
    ] {
        let labels = if tier.is_empty() {
            json!({})
        } else {
            json!({"tier": tier})
        };
        let body = json!({"metadata": {"name": name, "labels": labels}}).to_string();
        raw_request(
            &client,
            "POST",
            CM,
            Some("application/json"),
            body.into_bytes(),
        )
        .await?;
    }
    let names = async |query: &str| -> anyhow::Result<Vec<String>> {
        let (code, list, _) =
            raw_request(&client, "GET", &format!("{CM}?{query}"), None, Vec::new()).await?;
        ensure!(code == 200, "{list}");
        Ok(list["items"]
            .as_array()
            .context("items")?
            .iter()
            .filter_map(|i| i["metadata"]["name"].as_str().map(str::to_owned))
            .collect())
    };
    assert_eq!(names("labelSelector=tier%3Dweb").await?, ["a", "c"]);
    assert_eq!(
        names("labelSelector=tier%20in%20(web,db)").await?,
        ["a", "b", "c"]
    );
    assert_eq!(
        names("labelSelector=tier%20notin%20(web)").await?,
        ["b", "d", "e"]
    );
    assert_eq!(names("labelSelector=!tier").await?, ["e"]);
    assert_eq!(
        names("labelSelector=tier,tier!%3Dcache").await?,
        ["a", "b", "c"]
    );
    assert_eq!(names("fieldSelector=metadata.name%3Dd").await?, ["d"]);
    assert_eq!(
        names("fieldSelector=metadata.name!%3Dd").await?,
        ["a", "b", "c", "e"]
    );

    // Pages of two, from one snapshot.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let query = if token.is_empty() {
            "limit=2".to_owned()
        } else {
            format!("limit=2&continue={token}")
        };
        let (_, page, _) =
            raw_request(&client, "GET", &format!("{CM}?{query}"), None, Vec::new()).await?;
        let items = page["items"].as_array().context("items")?;
        ensure!(items.len() <= 2, "{page}");
        seen.extend(
            items
                .iter()
                .filter_map(|i| i["metadata"]["name"].as_str().map(str::to_owned)),
        );
        match page["metadata"]["continue"].as_str() {
            Some(next) if !next.is_empty() => token = next.to_owned(),
            _ => break,
        }
    }
    assert_eq!(seen, ["a", "b", "c", "d", "e"]);
    Ok(())
}

/// Reads watch lines until `count` lines or the deadline.
async fn watch_lines(
    client: &kube::Client,
    path: &str,
    count: usize,
    within: Duration,
) -> anyhow::Result<Vec<Value>> {
    let request = http::Request::get(path).body(kube::client::Body::empty())?;
    let response = client.send(request).await?;
    ensure!(
        response.status() == 200,
        "watch answered {}",
        response.status()
    );
    let mut body = response.into_body();
    let mut buffer = Vec::new();
    let mut lines = Vec::new();
    let deadline = Instant::now() + within;
    while lines.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(frame) = tokio::time::timeout(left, body.frame()).await else {
            break;
        };
        let Some(frame) = frame else { break };
        if let Ok(data) = frame?.into_data() {
            buffer.extend_from_slice(&data);
        }
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            lines.push(serde_json::from_slice(&line)?);
        }
    }
    Ok(lines)
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_compaction_bookmarks_and_timeouts() -> anyhow::Result<()> {
    let server = ServerProcess::start(
        Path::new(BINARY),
        &[
            "--history-seconds",
            "0",
            "--compaction-interval-seconds",
            "1",
            "--bookmark-interval-seconds",
            "1",
        ],
    )
    .await?;
    let client = server.client().await?;
    for name in ["w1", "w2", "w3"] {
        raw_request(&client, "POST", CM, Some("application/json"), cm(name)).await?;
    }
    let (_, first, _) = raw_request(&client, "GET", &format!("{CM}/w1"), None, Vec::new()).await?;
    let old = first["metadata"]["resourceVersion"]
        .as_str()
        .context("rv")?
        .to_owned();
    // Writes after `old`, then compaction past them.
    raw_request(&client, "DELETE", &format!("{CM}/w2"), None, Vec::new()).await?;
    raw_request(&client, "POST", CM, Some("application/json"), cm("w4")).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let lines = watch_lines(
        &client,
        &format!("{CM}?watch=true&resourceVersion={old}"),
        1,
        Duration::from_secs(10),
    )
    .await?;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["type"], "ERROR", "{lines:?}");
    assert_eq!(lines[0]["object"]["code"], 410, "{lines:?}");

    // From "now": synthetic ADDED for what exists, then bookmarks when asked.
    let lines = watch_lines(
        &client,
        &format!("{CM}?watch=true&allowWatchBookmarks=true&timeoutSeconds=5"),
        4,
        Duration::from_secs(10),
    )
    .await?;
    let types: Vec<&str> = lines.iter().filter_map(|l| l["type"].as_str()).collect();
    assert_eq!(&types[..3], ["ADDED", "ADDED", "ADDED"], "{lines:?}");
    assert_eq!(types.get(3), Some(&"BOOKMARK"), "{lines:?}");

    // timeoutSeconds ends the stream.
    let started = Instant::now();
    let lines = watch_lines(
        &client,
        &format!("{CM}?watch=true&resourceVersion=0&timeoutSeconds=1"),
        100,
        Duration::from_secs(15),
    )
    .await?;
    assert!(
        started.elapsed() < Duration::from_secs(14),
        "the watch did not end at its timeout"
    );
    assert_eq!(lines.len(), 3, "{lines:?}");

    // A watch on a quiet kind still moves its bookmarks along with the store.
    let secrets = "/api/v1/namespaces/default/secrets";
    let (_, list, _) = raw_request(&client, "GET", secrets, None, Vec::new()).await?;
    let listed = list["metadata"]["resourceVersion"]
        .as_str()
        .context("list rv")?
        .to_owned();
    let watch = {
        let client = client.clone();
        let path = format!(
            "{secrets}?watch=1&allowWatchBookmarks=true&resourceVersion={listed}&timeoutSeconds=4"
        );
        tokio::spawn(async move { watch_lines(&client, &path, 10, Duration::from_secs(8)).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, written, _) = raw_request(
        &client,
        "POST",
        CM,
        Some("application/json"),
        cm("elsewhere"),
    )
    .await?;
    let written: i64 = written["metadata"]["resourceVersion"]
        .as_str()
        .context("rv")?
        .parse()?;
    let lines = watch.await??;
    let newest = lines
        .iter()
        .filter(|l| l["type"] == "BOOKMARK")
        .filter_map(|l| {
            l["object"]["metadata"]["resourceVersion"]
                .as_str()?
                .parse::<i64>()
                .ok()
        })
        .max();
    assert!(
        newest.is_some_and(|rv| rv >= written),
        "bookmarks {lines:?} stayed behind revision {written}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn events_expire_after_their_ttl() -> anyhow::Result<()> {
    let server = ServerProcess::start(Path::new(BINARY), &["--event-ttl-seconds", "5"]).await?;
    let client = server.client().await?;
    let core = "/api/v1/namespaces/default/events";
    let events = "/apis/events.k8s.io/v1/namespaces/default/events";
    let now = || {
        jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    };
    let regarding = json!({"kind": "ConfigMap", "namespace": "default", "name": "web"});
    let core_event = |name: &str| {
        json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": name},
               "involvedObject": regarding, "reason": "Checked", "message": name,
               "type": "Normal", "count": 1, "lastTimestamp": now()})
    };
    let new_form = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
           "metadata": {"name": "new-form"},
           "eventTime": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
           "regarding": regarding, "reason": "Checked", "note": "new form", "type": "Normal",
           "action": "Check", "reportingController": "test", "reportingInstance": "test-1"});
    for (path, body) in [
        (core, core_event("once")),
        (events, new_form),
        (core, core_event("repeated")),
    ] {
        let body = body.to_string().into_bytes();
        let (code, answer, _) =
            raw_request(&client, "POST", path, Some("application/json"), body).await?;
        ensure!(code == 201, "POST {path}: {answer}");
    }
    raw_request(&client, "POST", CM, Some("application/json"), cm("lasting")).await?;
    // A recorder raising the count of the repeated Event keeps it; the others expire.
    let mut count = 1;
    wait_until(
        Duration::from_secs(30),
        "the Events seen once to expire",
        async || {
            count += 1;
            let patch = json!({"count": count, "lastTimestamp": now()});
            let (code, answer, _) = raw_request(
                &client,
                "PATCH",
                &format!("{core}/repeated"),
                Some("application/merge-patch+json"),
                patch.to_string().into_bytes(),
            )
            .await?;
            ensure!(code == 200, "the repeated Event: {answer}");
            tokio::time::sleep(Duration::from_millis(400)).await;
            Ok(
                code_of(&client, "GET", &format!("{core}/once")).await? == 404
                    && code_of(&client, "GET", &format!("{events}/new-form")).await? == 404,
            )
        },
    )
    .await?;
    let (code, repeated, _) = raw_request(
        &client,
        "GET",
        &format!("{core}/repeated"),
        None,
        Vec::new(),
    )
    .await?;
    assert_eq!(code, 200, "{repeated}");
    assert!(repeated["count"].as_u64() > Some(1), "{repeated}");
    assert_eq!(
        code_of(&client, "GET", &format!("{CM}/lasting")).await?,
        200
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn discovery_openapi_tables_and_metrics() -> anyhow::Result<()> {
    let server = server().await?;
    let client = server.client().await?;
    let (_, groups, _) = raw_request(&client, "GET", "/apis", None, Vec::new()).await?;
    assert!(
        groups["groups"]
            .as_array()
            .context("groups")?
            .iter()
            .any(|g| g["name"] == "coordination.k8s.io"),
        "{groups}"
    );
    let (_, root, _) = raw_request(&client, "GET", "/openapi/v3", None, Vec::new()).await?;
    let url = root["paths"]["api/v1"]["serverRelativeURL"]
        .as_str()
        .context("api/v1 in the openapi root")?;
    let (code, document, headers) = raw_request(&client, "GET", url, None, Vec::new()).await?;
    assert_eq!(code, 200);
    assert_eq!(
        headers.get("cache-control").and_then(|v| v.to_str().ok()),
        Some("public, immutable")
    );
    let patch = &document["paths"]["/api/v1/namespaces/{namespace}/configmaps/{name}"]["patch"];
    assert_eq!(
        patch["x-kubernetes-group-version-kind"]["kind"],
        "ConfigMap"
    );
    assert!(
        patch["parameters"]
            .as_array()
            .context("parameters")?
            .iter()
            .any(|p| p["name"] == "fieldValidation")
    );
    assert_eq!(code_of(&client, "GET", "/openapi/v2").await?, 404);

    let request = http::Request::get(CM)
        .header(
            "accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )
        .body(kube::client::Body::empty())?;
    let response = client.send(request).await?;
    let table: Value = serde_json::from_slice(&response.into_body().collect().await?.to_bytes())?;
    assert_eq!(table["kind"], "Table");
    let columns: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .context("columns")?
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(columns, ["Name", "Data", "Age"]);

    let (code, metrics, _) = raw_request(&client, "GET", "/metrics", None, Vec::new()).await?;
    assert_eq!(code, 200);
    assert!(
        metrics
            .as_str()
            .is_some_and(|m| m.contains("ronghe_apiserver_requests_total")),
        "{metrics}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn lifecycle_rules() -> anyhow::Result<()> {
    let server = server().await?;
    let client = server.client().await?;
    let json = Some("application/json");
    let merge = Some("application/merge-patch+json");

    // System namespaces cannot be deleted; a namespace's own finalizers change only
    // through /finalize.
    assert_status(
        &raw_request(
            &client,
            "DELETE",
            "/api/v1/namespaces/kube-system",
            None,
            Vec::new(),
        )
        .await?,
        403,
        "Forbidden",
    );
    let ns = "/api/v1/namespaces/default";
    let (_, patched, _) = raw_request(
        &client,
        "PATCH",
        ns,
        merge,
        br#"{"spec":{"finalizers":[]}}"#.to_vec(),
    )
    .await?;
    assert_eq!(
        patched["spec"]["finalizers"],
        json!(["kubernetes"]),
        "{patched}"
    );

    assert_status(
        &raw_request(
            &client,
            "PATCH",
            &format!("{ns}/finalize"),
            merge,
            b"{}".to_vec(),
        )
        .await?,
        405,
        "MethodNotAllowed",
    );
    let mut finalizing = patched.clone();
    finalizing["spec"]["finalizers"] = json!(["kubernetes", "not-qualified"]);
    assert_status(
        &raw_request(
            &client,
            "PUT",
            &format!("{ns}/finalize"),
            json,
            finalizing.to_string().into_bytes(),
        )
        .await?,
        422,
        "Invalid",
    );

    // A server-side dry run of a create answers as the create would.
    raw_request(&client, "POST", CM, json, cm("exists")).await?;
    assert_status(
        &raw_request(
            &client,
            "POST",
            &format!("{CM}?dryRun=All"),
            json,
            cm("exists"),
        )
        .await?,
        409,
        "AlreadyExists",
    );

    // Immutable ConfigMaps keep their data.
    raw_request(
        &client,
        "PATCH",
        &format!("{CM}/exists"),
        merge,
        br#"{"immutable":true}"#.to_vec(),
    )
    .await?;
    assert_status(
        &raw_request(
            &client,
            "PATCH",
            &format!("{CM}/exists"),
            merge,
            br#"{"data":{"k":"changed"}}"#.to_vec(),
        )
        .await?,
        422,
        "Invalid",
    );

    // Owner references must name their owner; finalizers must be qualified names.
    let bad_owner = json!({"metadata": {"name": "bad-owner", "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "x"}]}}).to_string();
    assert_status(
        &raw_request(&client, "POST", CM, json, bad_owner.into_bytes()).await?,
        422,
        "Invalid",
    );
    let bad_finalizer =
        json!({"metadata": {"name": "bad-finalizer", "finalizers": ["not a name!"]}}).to_string();
    assert_status(
        &raw_request(&client, "POST", CM, json, bad_finalizer.into_bytes()).await?,
        422,
        "Invalid",
    );

    // A resourceVersion from the future is refused, not answered with older data.
    assert_status(
        &raw_request(
            &client,
            "GET",
            &format!("{CM}?resourceVersion=999999&resourceVersionMatch=NotOlderThan"),
            None,
            Vec::new(),
        )
        .await?,
        504,
        "Timeout",
    );

    // Streaming lists: the state, then a bookmark marking its end.
    let lines = watch_lines(
        &client,
        &format!("{CM}?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&resourceVersion=1"),
        2,
        Duration::from_secs(10),
    )
    .await?;
    assert_eq!(lines[0]["type"], "ADDED", "{lines:?}");
    assert_eq!(lines[1]["type"], "BOOKMARK", "{lines:?}");
    assert_eq!(
        lines[1]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"], "true",
        "{lines:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_collection_policies() -> anyhow::Result<()> {
    let server = server().await?;
    let client = server.client().await?;
    let json = Some("application/json");
    let owner_ref = |owner: &Value, name: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "name": name, "uid": owner["metadata"]["uid"]});
    let (_, a, _) = raw_request(&client, "POST", CM, json, cm("owner-a")).await?;
    let (_, b, _) = raw_request(&client, "POST", CM, json, cm("owner-b")).await?;
    let shared = json!({"metadata": {"name": "shared", "ownerReferences": [owner_ref(&a, "owner-a"), owner_ref(&b, "owner-b")]}});
    let only_b =
        json!({"metadata": {"name": "only-b", "ownerReferences": [owner_ref(&b, "owner-b")]}});
    for body in [&shared, &only_b] {
        assert_eq!(
            raw_request(&client, "POST", CM, json, body.to_string().into_bytes())
                .await?
                .0,
            201
        );
    }
    // Foreground: only-b goes, shared stays (owner-a still holds it), then owner-b goes.
    delete_with_policy(&client, &format!("{CM}/owner-b"), "Foreground").await?;
    wait_gone(&client, &format!("{CM}/owner-b")).await?;
    assert_eq!(code_of(&client, "GET", &format!("{CM}/only-b")).await?, 404);
    let (code, kept, _) =
        raw_request(&client, "GET", &format!("{CM}/shared"), None, Vec::new()).await?;
    assert_eq!(code, 200, "a dependent with a live owner was deleted");
    assert_eq!(
        kept["metadata"]["ownerReferences"].as_array().map(Vec::len),
        Some(1),
        "{kept}"
    );

    // Orphan: the dependent stays, without the reference.
    delete_with_policy(&client, &format!("{CM}/owner-a"), "Orphan").await?;
    wait_gone(&client, &format!("{CM}/owner-a")).await?;
    let (code, orphan, _) =
        raw_request(&client, "GET", &format!("{CM}/shared"), None, Vec::new()).await?;
    assert_eq!(code, 200);
    assert!(orphan["metadata"]["ownerReferences"].is_null(), "{orphan}");

    // A cluster-scoped object naming a namespaced owner kind is never collected.
    let namespace = json!({"metadata": {"name": "kept", "ownerReferences": [{
        "apiVersion": "v1", "kind": "ConfigMap", "name": "nothing", "uid": "00000000-0000-0000-0000-000000000000"}]}});
    raw_request(
        &client,
        "POST",
        "/api/v1/namespaces",
        json,
        namespace.to_string().into_bytes(),
    )
    .await?;
    // Wake the collector with a deletion, then give it time to (not) act.
    raw_request(&client, "DELETE", &format!("{CM}/shared"), None, Vec::new()).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        code_of(&client, "GET", "/api/v1/namespaces/kept").await?,
        200
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn abandoned_watches_are_closed() -> anyhow::Result<()> {
    let server = server().await?;
    let client = server.client().await?;
    let open_watches = async || -> anyhow::Result<f64> {
        let (_, metrics, _) = raw_request(&client, "GET", "/metrics", None, Vec::new()).await?;
        let text = metrics.as_str().context("metrics text")?.to_owned();
        text.lines()
            .find_map(|l| l.strip_prefix("ronghe_apiserver_watches "))
            .and_then(|v| v.trim().parse().ok())
            .context("no watches gauge")
    };
    let before = open_watches().await?;
    for _ in 0..5 {
        // A narrow watch that sees no events, dropped by its client.
        let lines = watch_lines(
            &client,
            &format!("{CM}?watch=1&fieldSelector=metadata.name%3Dnobody"),
            1,
            Duration::from_millis(300),
        )
        .await?;
        assert!(lines.iter().all(|l| l["type"] != "ERROR"), "{lines:?}");
    }
    wait_until(
        Duration::from_secs(10),
        "abandoned watches to close",
        async || Ok(open_watches().await? <= before),
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn client_commands_find_the_server_through_a_kubeconfig() -> anyhow::Result<()> {
    let server = server().await?;
    let output = std::process::Command::new(BINARY)
        .arg("version")
        .arg("--kubeconfig")
        .arg(server.kubeconfig_path())
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.success(),
        "ronghe version failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("Kubernetes API 1.32"), "{stdout}");
    let without = std::process::Command::new(BINARY)
        .arg("version")
        .env("KUBECONFIG", server.kubeconfig_path())
        .output()?;
    ensure!(without.status.success(), "KUBECONFIG was not used");
    Ok(())
}

/// Deletes with a propagation policy (`Background`, `Foreground`, `Orphan`).
async fn delete_with_policy(client: &kube::Client, path: &str, policy: &str) -> anyhow::Result<()> {
    let body = json!({"propagationPolicy": policy})
        .to_string()
        .into_bytes();
    let (code, answer, _) =
        raw_request(client, "DELETE", path, Some("application/json"), body).await?;
    ensure!(code == 200, "delete {path}: {answer}");
    Ok(())
}

/// The status code of a request without a body.
async fn code_of(client: &kube::Client, method: &str, path: &str) -> anyhow::Result<u16> {
    Ok(raw_request(client, method, path, None, Vec::new()).await?.0)
}

/// Waits until `path` answers 404.
async fn wait_gone(client: &kube::Client, path: &str) -> anyhow::Result<()> {
    wait_until(
        Duration::from_secs(20),
        &format!("{path} to be gone"),
        async || Ok(code_of(client, "GET", path).await? == 404),
    )
    .await
}

/// Polls `check` until it is true or the time is up.
async fn wait_until(
    within: Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        if check().await? {
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
