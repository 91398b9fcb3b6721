//! Store compaction: keeps a window of history (for watches that resume and lists that
//! page) and forgets what is older, as the Kubernetes apiserver does with etcd.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::engine::Engine;

pub(super) async fn run(
    engine: Engine,
    mut stop: watch::Receiver<bool>,
    interval: Duration,
    history: Duration,
) {
    let mut samples: VecDeque<(Instant, i64)> = VecDeque::new();
    loop {
        if super::pause(&mut stop, interval).await {
            return;
        }
        let now = Instant::now();
        match engine.store().current_revision().await {
            Ok(revision) => samples.push_back((now, revision)),
            Err(error) => {
                tracing::warn!(%error, "reading the store revision failed");
                continue;
            }
        }
        // The newest sample older than the history window is the compaction point.
        let mut target = None;
        while let Some((at, revision)) = samples.front().copied() {
            if now.duration_since(at) < history {
                break;
            }
            target = Some(revision);
            samples.pop_front();
        }
        let Some(target) = target else { continue };
        match engine.store().compacted_revision().await {
            Ok(compacted) if compacted >= target => continue,
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, "reading the compacted revision failed");
                continue;
            }
        }
        match engine.store().compact(target).await {
            Ok(()) => tracing::debug!(revision = target, "compacted the store"),
            Err(error) => tracing::warn!(%error, revision = target, "compacting the store failed"),
        }
    }
}
