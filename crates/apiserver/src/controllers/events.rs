//! Events the controllers write about the objects they act on (core/v1 Event, what
//! `kubectl describe` and `kubectl get events` show). The same reason and message about
//! the same object is one Event whose count goes up, as client-go's event recorder
//! aggregates repeats.

use std::hash::{DefaultHasher, Hash, Hasher};

use serde_json::{Value, json};

use crate::engine::{Engine, PatchKind, Target, WriteOptions};
use crate::error::ApiResult;
use crate::object;

/// Records a Warning Event about `regarding` (an object of `api_version` and `kind`) from
/// `component`.
pub async fn warn(
    engine: &Engine,
    component: &str,
    regarding: &Value,
    (api_version, kind): (&str, &str),
    reason: &str,
    message: &str,
) -> ApiResult<()> {
    let events = engine.kind("v1", "Event")?;
    let namespace = object::namespace(regarding).unwrap_or("default");
    let name = object::name(regarding).unwrap_or_default();
    let uid = object::uid(regarding).unwrap_or_default();
    let mut hasher = DefaultHasher::new();
    (uid, reason, message).hash(&mut hasher);
    let event_name = format!("{name}.{:016x}", hasher.finish());
    let now = object::now_rfc3339();
    match engine.get(&events, Some(namespace), &event_name).await {
        Ok(seen) => {
            let count = seen["count"].as_u64().unwrap_or(1) + 1;
            engine
                .patch(
                    &events,
                    Some(namespace),
                    &event_name,
                    PatchKind::Merge,
                    json!({"count": count, "lastTimestamp": now}),
                    Target::Main,
                    &WriteOptions::default(),
                )
                .await?;
        }
        Err(error) if error.code() == 404 => {
            let body = json!({
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": event_name, "namespace": namespace},
                "involvedObject": {
                    "apiVersion": api_version,
                    "kind": kind,
                    "namespace": namespace,
                    "name": name,
                    "uid": uid,
                    "resourceVersion": object::resource_version(regarding).unwrap_or_default(),
                },
                "reason": reason,
                "message": message,
                "type": "Warning",
                "count": 1,
                "firstTimestamp": now,
                "lastTimestamp": now,
                "source": {"component": component},
                "reportingComponent": component,
            });
            engine
                .create(&events, Some(namespace), body, &WriteOptions::default())
                .await?;
        }
        Err(error) => return Err(error),
    }
    Ok(())
}
