//! kube-rs against a real `ronghe server`: the watcher sees creates, updates and deletes,
//! and a Controller that server-side-applies its own objects settles instead of looping
//! (no-op writes change nothing and emit no event).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use ronghe_testkit::ServerProcess;
use serde_json::json;

use super::BINARY;

fn config_map(name: &str, value: &str) -> anyhow::Result<ConfigMap> {
    Ok(serde_json::from_value(
        json!({"metadata": {"name": name}, "data": {"v": value}}),
    )?)
}

#[tokio::test(flavor = "multi_thread")]
async fn watcher_sees_every_change() -> anyhow::Result<()> {
    let server = ServerProcess::start(Path::new(BINARY), &[]).await?;
    let api: Api<ConfigMap> = Api::namespaced(server.client().await?, "default");
    let mut events = watcher(api.clone(), watcher::Config::default()).boxed();
    let mut next = async || -> anyhow::Result<watcher::Event<ConfigMap>> {
        tokio::time::timeout(Duration::from_secs(20), events.next())
            .await
            .context("watcher stalled")?
            .context("watcher ended")?
            .map_err(Into::into)
    };
    // The initial list: Init, InitDone (the namespace is empty).
    loop {
        if let watcher::Event::InitDone = next().await? {
            break;
        }
    }
    api.create(&PostParams::default(), &config_map("one", "1")?)
        .await?;
    match next().await? {
        watcher::Event::Apply(cm) => assert_eq!(cm.metadata.name.as_deref(), Some("one")),
        other => panic!("expected Apply, got {other:?}"),
    }
    api.patch(
        "one",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "2"}})),
    )
    .await?;
    match next().await? {
        watcher::Event::Apply(cm) => {
            assert_eq!(
                cm.data.and_then(|d| d.get("v").cloned()).as_deref(),
                Some("2")
            );
        }
        other => panic!("expected Apply, got {other:?}"),
    }
    api.delete("one", &DeleteParams::default()).await?;
    match next().await? {
        watcher::Event::Delete(cm) => assert_eq!(cm.metadata.name.as_deref(), Some("one")),
        other => panic!("expected Delete, got {other:?}"),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn controller_applying_its_own_objects_does_not_hot_loop() -> anyhow::Result<()> {
    let server = ServerProcess::start(Path::new(BINARY), &[]).await?;
    let api: Api<ConfigMap> = Api::namespaced(server.client().await?, "default");
    api.create(&PostParams::default(), &config_map("managed", "1")?)
        .await?;

    let reconciles = Arc::new(AtomicUsize::new(0));
    let context = Arc::new((api.clone(), reconciles.clone()));
    let controller = Controller::new(api.clone(), watcher::Config::default())
        .run(
            |object: Arc<ConfigMap>, context: Arc<(Api<ConfigMap>, Arc<AtomicUsize>)>| async move {
                let (api, reconciles) = &*context;
                reconciles.fetch_add(1, Ordering::SeqCst);
                let name = object.metadata.name.clone().unwrap_or_default();
                let patch = json!({
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": name, "annotations": {"example.com/reconciled": "yes"}},
                });
                api.patch(
                    &name,
                    &PatchParams::apply("smoke-controller").force(),
                    &Patch::Apply(patch),
                )
                .await?;
                Ok::<_, kube::Error>(Action::await_change())
            },
            |_object, _error: &kube::Error, _context| Action::requeue(Duration::from_secs(1)),
            context,
        )
        .for_each(|_| async {});
    let running = tokio::spawn(controller);

    // Wait until the controller's write is visible, then give a loop time to show itself.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let current = api.get("managed").await?;
        if current
            .metadata
            .annotations
            .is_some_and(|a| a.contains_key("example.com/reconciled"))
        {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "the controller never reconciled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let settled = reconciles.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = reconciles.load(Ordering::SeqCst);
    running.abort();
    // One reconcile for the object, one for the change the first made; the second's write
    // is a no-op and triggers nothing.
    assert!(
        later <= 3,
        "the controller reconciled {later} times (hot loop)"
    );
    assert_eq!(
        settled, later,
        "reconciles kept coming after the object settled"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn metadata_only_lists_and_watches() -> anyhow::Result<()> {
    let server = ServerProcess::start(Path::new(BINARY), &[]).await?;
    let api: Api<ConfigMap> = Api::namespaced(server.client().await?, "default");
    api.create(&PostParams::default(), &config_map("meta", "1")?)
        .await?;
    let list = api.list_metadata(&Default::default()).await?;
    let names: Vec<_> = list
        .items
        .iter()
        .filter_map(|m| m.metadata.name.clone())
        .collect();
    assert_eq!(names, ["meta"]);
    let one = api.get_metadata("meta").await?;
    assert!(one.metadata.uid.is_some());

    let metadata: Api<kube::core::PartialObjectMeta<ConfigMap>> =
        Api::namespaced(server.client().await?, "default");
    let mut events = watcher(metadata, watcher::Config::default()).boxed();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let event = tokio::time::timeout(Duration::from_secs(20), events.next())
            .await
            .context("metadata watcher stalled")?
            .context("metadata watcher ended")??;
        if let watcher::Event::InitApply(object) = event {
            assert_eq!(object.metadata.name.as_deref(), Some("meta"));
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no InitApply for the existing object"
        );
    }
    Ok(())
}
