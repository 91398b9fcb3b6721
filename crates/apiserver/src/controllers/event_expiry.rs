//! Events expire: an Event (core/v1 or events.k8s.io/v1) is deleted once `ttl` has passed
//! since it was last seen, as kube-apiserver's `--event-ttl` (an hour by default) lets
//! etcd drop them. Kubernetes starts that clock at each write of the Event; Ronghe reads
//! it from the Event itself: the latest of its creation time and the times its writers
//! give for its last occurrence (`lastTimestamp`, `series.lastObservedTime`,
//! `eventTime`), so a recorder raising a repeated Event's count keeps it. The delete is
//! conditional on the resource version read, so an Event written again meanwhile stays.

use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;

use crate::engine::{DeleteOptions, Engine};
use crate::error::ApiResult;
use crate::object;

/// An Event kind (both are `Event`) and where it keeps the times of the occurrence it
/// records.
struct EventKind {
    api_version: &'static str,
    times: &'static [&'static [&'static str]],
}

const KINDS: [EventKind; 2] = [
    EventKind {
        api_version: "v1",
        times: &[
            &["lastTimestamp"],
            &["firstTimestamp"],
            &["eventTime"],
            &["series", "lastObservedTime"],
        ],
    },
    EventKind {
        api_version: "events.k8s.io/v1",
        times: &[
            &["eventTime"],
            &["series", "lastObservedTime"],
            &["deprecatedLastTimestamp"],
            &["deprecatedFirstTimestamp"],
        ],
    },
];

/// How often the Events are looked over: a tenth of their time to live, within a second
/// and a minute, so an Event outlives its time by at most that.
fn sweep_interval(ttl: Duration) -> Duration {
    (ttl / 10).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

pub(super) async fn run(engine: Engine, mut stop: watch::Receiver<bool>, ttl: Duration) {
    loop {
        if super::pause(&mut stop, sweep_interval(ttl)).await {
            return;
        }
        match sweep(&engine, ttl).await {
            Ok(0) => {}
            Ok(expired) => tracing::debug!(expired, "expired Events"),
            Err(error) => tracing::warn!(%error, "expiring Events failed"),
        }
    }
}

/// Deletes every Event last seen more than `ttl` ago; returns how many went.
async fn sweep(engine: &Engine, ttl: Duration) -> ApiResult<usize> {
    let now = jiff::Timestamp::now();
    let ttl = jiff::SignedDuration::try_from(ttl).unwrap_or(jiff::SignedDuration::MAX);
    let mut expired = 0;
    for EventKind { api_version, times } in KINDS {
        let kind = engine.kind(api_version, "Event")?;
        let list = engine.list(&kind, None, &Default::default()).await?;
        for event in &list.items {
            let Some(seen) = last_seen(event, times) else {
                continue;
            };
            if now.duration_since(seen) <= ttl {
                continue;
            }
            let options = DeleteOptions {
                precondition_resource_version: object::resource_version(event).map(str::to_owned),
                ..DeleteOptions::default()
            };
            let name = object::name(event).unwrap_or_default();
            match engine
                .delete(&kind, object::namespace(event), name, &options)
                .await
            {
                Ok(_) => expired += 1,
                // Gone already, or written again since it was read: left for the next sweep.
                Err(error) if matches!(error.code(), 404 | 409) => {}
                Err(error) => return Err(error),
            }
        }
    }
    Ok(expired)
}

/// When `event` was last seen: the latest of its creation and the occurrence times at
/// `times`. None when it has no time that parses (never expired: nothing says it is old).
fn last_seen(event: &Value, times: &[&[&str]]) -> Option<jiff::Timestamp> {
    std::iter::once(&["metadata", "creationTimestamp"][..])
        .chain(times.iter().copied())
        .filter_map(|path| object::value_at(event, path)?.as_str()?.parse().ok())
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_event_is_as_recent_as_its_latest_time() {
        let core = KINDS[0].times;
        let event = json!({
            "metadata": {"creationTimestamp": "2026-01-01T00:00:00Z"},
            "firstTimestamp": "2026-01-01T00:00:00Z",
            "lastTimestamp": "2026-01-01T02:00:00Z",
            "eventTime": null,
        });
        assert_eq!(
            last_seen(&event, core),
            Some("2026-01-01T02:00:00Z".parse().unwrap())
        );
        let series = json!({
            "metadata": {"creationTimestamp": "2026-01-01T00:00:00Z"},
            "eventTime": "2026-01-01T00:00:00.000000Z",
            "series": {"count": 4, "lastObservedTime": "2026-01-01T03:00:00.123456Z"},
        });
        assert_eq!(
            last_seen(&series, KINDS[1].times),
            Some("2026-01-01T03:00:00.123456Z".parse().unwrap())
        );
        // Written long after the occurrence it tells of: as recent as its creation.
        let late = json!({
            "metadata": {"creationTimestamp": "2026-06-01T00:00:00Z"},
            "lastTimestamp": "2026-01-01T00:00:00Z",
        });
        assert_eq!(
            last_seen(&late, core),
            Some("2026-06-01T00:00:00Z".parse().unwrap())
        );
        assert_eq!(
            last_seen(&json!({"lastTimestamp": "yesterday"}), core),
            None
        );
    }

    #[test]
    fn sweeps_come_at_a_tenth_of_the_ttl_within_bounds() {
        assert_eq!(
            sweep_interval(Duration::from_secs(3600)),
            Duration::from_secs(60)
        );
        assert_eq!(
            sweep_interval(Duration::from_secs(100)),
            Duration::from_secs(10)
        );
        assert_eq!(
            sweep_interval(Duration::from_secs(2)),
            Duration::from_secs(1)
        );
    }
}
