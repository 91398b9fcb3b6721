//! Watch-fed caches (kube's reflectors): one per kind, each change waking the loop that
//! reads them. The host network's wiring loop and the node ports keep theirs this way.

use std::sync::Arc;

use futures::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::discovery::ApiResource;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::Value;
use tokio::sync::{Notify, watch};

/// Starts a cache of `resource` fed by its watch (retried with back-off); each change
/// notifies `wake`, until `stop` flips. With `optional`, a server that does not serve the
/// kind (404) is waited for quietly instead of warned about on every try. `what` names the
/// reader in logs.
pub(crate) fn cache(
    client: &kube::Client,
    resource: ApiResource,
    wake: &Arc<Notify>,
    stop: &watch::Receiver<bool>,
    what: &'static str,
    optional: bool,
) -> Store<DynamicObject> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
    let writer = reflector::store::Writer::new(resource.clone());
    let store = writer.as_reader();
    let stream = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default()).default_backoff(),
    );
    let (wake, mut stop) = (wake.clone(), stop.clone());
    tokio::spawn(async move {
        let kind = &resource.kind;
        let mut stream = std::pin::pin!(stream);
        let mut absent = false;
        loop {
            tokio::select! {
                event = stream.next() => match event {
                    Some(Ok(_)) => {
                        absent = false;
                        wake.notify_one();
                    }
                    Some(Err(error)) if optional && is_not_found(&error) => {
                        if !absent {
                            tracing::info!(kind, what, "the server does not serve this kind; watching for it to appear");
                        }
                        absent = true;
                    }
                    Some(Err(error)) => {
                        tracing::warn!(kind, what, %error, "a watch failed; retrying");
                    }
                    None => return,
                },
                _ = stop.changed() => return,
            }
        }
    });
    store
}

/// The cached objects as JSON, in a stable order (by namespace, then name): a cache filled
/// in another order (after a restart) must give the same result.
pub(crate) fn values(store: &Store<DynamicObject>) -> Vec<Value> {
    let mut objects = store.state();
    objects.sort_by(|a, b| {
        (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name))
    });
    objects
        .iter()
        .filter_map(|object| serde_json::to_value(&**object).ok())
        .collect()
}

/// Whether a watch failed because the server has no such resource.
fn is_not_found(error: &watcher::Error) -> bool {
    let api_error = match error {
        watcher::Error::InitialListFailed(error)
        | watcher::Error::WatchStartFailed(error)
        | watcher::Error::WatchFailed(error) => error,
        _ => return false,
    };
    matches!(api_error, kube::Error::Api(status) if status.code == 404)
}
