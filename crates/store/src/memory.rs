//! `MemoryStore`: the in-memory backend, with the whole semantics of the trait (history for
//! reads at old revisions, watches from past revisions, compaction), for fast tests and
//! simulated hosts. Nothing is persisted.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::broadcast;

use crate::rules::{check_readable, check_watchable};
use crate::watch::{EventSender, live_stream};
use crate::{
    Deleted, Event, EventKind, KeyValue, ListOptions, ListResult, Result, Revision, Store,
    StoreError, WatchStream,
};

/// How many live events a watcher may fall behind by before its stream ends with
/// `WatcherLagged`, unless set with [`MemoryStore::with_watch_buffer`].
pub const DEFAULT_WATCH_BUFFER: usize = 8192;

/// A store held in memory. Every write is applied under one lock, so writes are totally
/// ordered and each is visible to every later read.
pub struct MemoryStore {
    state: Mutex<State>,
    events: EventSender,
}

#[derive(Default)]
struct State {
    revision: Revision,
    compacted: Revision,
    /// Every retained version of every key, oldest first; the last one is the key's current
    /// state. A key whose versions were all compacted away is removed.
    keys: BTreeMap<String, Vec<Version>>,
    /// Every change after `compacted`, one per revision, oldest first.
    changes: VecDeque<Arc<Event>>,
}

struct Version {
    revision: Revision,
    create_revision: Revision,
    /// `None` marks a delete.
    value: Option<Bytes>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::with_watch_buffer(DEFAULT_WATCH_BUFFER)
    }

    /// A store whose watchers may fall `capacity` live events behind before they are ended
    /// with `WatcherLagged`.
    pub fn with_watch_buffer(capacity: usize) -> Self {
        let (events, _) = broadcast::channel(capacity.max(1));
        MemoryStore {
            state: Mutex::new(State::default()),
            events,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every mutation below completes before it can panic, so a poisoned state is whole.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl State {
    /// The current version of `key`, if the key exists.
    fn live(&self, key: &str) -> Option<&Version> {
        self.keys
            .get(key)
            .and_then(|versions| versions.last())
            .filter(|version| version.value.is_some())
    }

    /// Records one successful write as the next revision and publishes its change.
    fn append(&mut self, events: &EventSender, event: Event) {
        let version = Version {
            revision: event.revision,
            create_revision: event.create_revision,
            value: event.value.clone(),
        };
        self.revision = event.revision;
        self.keys
            .entry(event.key.clone())
            .or_default()
            .push(version);
        let event = Arc::new(event);
        self.changes.push_back(Arc::clone(&event));
        // An error only means nobody is watching.
        let _ = events.send(event);
    }

    fn list(&self, options: &ListOptions) -> Result<ListResult> {
        let at = match options.revision {
            None => self.revision,
            Some(requested) => {
                check_readable(requested, self.revision, self.compacted)?;
                requested
            }
        };
        let prefix = options.prefix.as_str();
        let lower = match options.start_after.as_deref() {
            Some(start_after) if start_after >= prefix => Bound::Excluded(start_after),
            _ => Bound::Included(prefix),
        };
        let limit = options.limit.filter(|limit| *limit > 0);
        let mut items = Vec::new();
        let mut more = false;
        for (key, versions) in self.keys.range::<str, _>((lower, Bound::Unbounded)) {
            if !key.starts_with(prefix) {
                break;
            }
            let visible = versions.partition_point(|version| version.revision <= at);
            let Some(version) = visible.checked_sub(1).map(|index| &versions[index]) else {
                continue;
            };
            let Some(value) = &version.value else {
                continue;
            };
            if limit.is_some_and(|limit| items.len() >= limit) {
                more = true;
                break;
            }
            items.push(KeyValue {
                key: key.clone(),
                value: value.clone(),
                create_revision: version.create_revision,
                mod_revision: version.revision,
            });
        }
        Ok(ListResult {
            items,
            revision: at,
            more,
        })
    }

    fn compact(&mut self, revision: Revision) -> Result<()> {
        if revision > self.revision {
            return Err(StoreError::FutureRevision {
                requested: revision,
                current: self.revision,
            });
        }
        if revision <= self.compacted {
            return Ok(());
        }
        self.keys.retain(|_, versions| {
            let at_or_before = versions.partition_point(|version| version.revision <= revision);
            // The newest version at or before the compaction point is still the key's state
            // for reads after it, unless it is a delete.
            let keep_from = match at_or_before.checked_sub(1) {
                Some(newest) if versions[newest].value.is_some() => newest,
                _ => at_or_before,
            };
            versions.drain(..keep_from);
            !versions.is_empty()
        });
        while self
            .changes
            .front()
            .is_some_and(|event| event.revision <= revision)
        {
            self.changes.pop_front();
        }
        self.compacted = revision;
        Ok(())
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let state = self.lock();
        Ok(state.live(key).map(|version| KeyValue {
            key: key.to_owned(),
            value: version.value.clone().unwrap_or_default(),
            create_revision: version.create_revision,
            mod_revision: version.revision,
        }))
    }

    async fn list(&self, options: ListOptions) -> Result<ListResult> {
        self.lock().list(&options)
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        let mut state = self.lock();
        if state.live(key).is_some() {
            return Err(StoreError::AlreadyExists {
                key: key.to_owned(),
            });
        }
        let revision = state.revision + 1;
        state.append(
            &self.events,
            Event {
                kind: EventKind::Create,
                key: key.to_owned(),
                revision,
                create_revision: revision,
                value: Some(value.clone()),
                prev_value: None,
            },
        );
        Ok(KeyValue {
            key: key.to_owned(),
            value,
            create_revision: revision,
            mod_revision: revision,
        })
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected_mod_revision: Revision,
    ) -> Result<KeyValue> {
        let mut state = self.lock();
        let Some(current) = state.live(key) else {
            return Err(StoreError::NotFound {
                key: key.to_owned(),
            });
        };
        if current.revision != expected_mod_revision {
            return Err(StoreError::Conflict {
                key: key.to_owned(),
                expected: expected_mod_revision,
                actual: current.revision,
            });
        }
        let create_revision = current.create_revision;
        let prev_value = current.value.clone();
        let revision = state.revision + 1;
        state.append(
            &self.events,
            Event {
                kind: EventKind::Update,
                key: key.to_owned(),
                revision,
                create_revision,
                value: Some(value.clone()),
                prev_value,
            },
        );
        Ok(KeyValue {
            key: key.to_owned(),
            value,
            create_revision,
            mod_revision: revision,
        })
    }

    async fn delete(&self, key: &str, expected_mod_revision: Option<Revision>) -> Result<Deleted> {
        let mut state = self.lock();
        let Some(current) = state.live(key) else {
            return Err(StoreError::NotFound {
                key: key.to_owned(),
            });
        };
        if let Some(expected) = expected_mod_revision
            && current.revision != expected
        {
            return Err(StoreError::Conflict {
                key: key.to_owned(),
                expected,
                actual: current.revision,
            });
        }
        let prev = KeyValue {
            key: key.to_owned(),
            value: current.value.clone().unwrap_or_default(),
            create_revision: current.create_revision,
            mod_revision: current.revision,
        };
        let revision = state.revision + 1;
        state.append(
            &self.events,
            Event {
                kind: EventKind::Delete,
                key: key.to_owned(),
                revision,
                create_revision: prev.create_revision,
                value: None,
                prev_value: Some(prev.value.clone()),
            },
        );
        Ok(Deleted { revision, prev })
    }

    async fn watch(&self, prefix: &str, after_revision: Revision) -> Result<WatchStream> {
        let state = self.lock();
        check_watchable(after_revision, state.compacted)?;
        // Subscribing under the lock that every write holds while publishing means the
        // replay below and the live events that follow meet exactly.
        let receiver = self.events.subscribe();
        let first = state
            .changes
            .partition_point(|event| event.revision <= after_revision);
        let mut replay: Vec<Result<Event>> = state
            .changes
            .range(first..)
            .filter(|event| event.key.starts_with(prefix))
            .map(|event| Ok(Event::clone(event)))
            .collect();
        let last_seen = after_revision.max(state.revision);
        let replayed_through = replay
            .last()
            .and_then(|event| event.as_ref().ok())
            .map_or(after_revision, |event| event.revision);
        if last_seen > replayed_through {
            // The replay covered changes elsewhere beyond its last event: say how far, as
            // the SQLite backend does.
            replay.push(Ok(crate::watch::progress(last_seen)));
        }
        drop(state);
        let live = live_stream(receiver, prefix.to_owned(), last_seen);
        Ok(futures::stream::iter(replay).chain(live).boxed())
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.lock().revision)
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.lock().compact(revision)
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        Ok(self.lock().compacted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn compaction_keeps_only_the_newest_version_at_or_before_the_mark() {
        let store = MemoryStore::new();
        let a = store.create("/a", Bytes::from_static(b"1")).await.unwrap();
        store
            .update("/a", Bytes::from_static(b"2"), a.mod_revision)
            .await
            .unwrap();
        store.create("/b", Bytes::from_static(b"x")).await.unwrap();
        store.delete("/b", None).await.unwrap();
        store.compact(4).await.unwrap();
        let state = store.lock();
        assert_eq!(state.keys.len(), 1, "the deleted key is forgotten");
        assert_eq!(state.keys["/a"].len(), 1);
        assert!(state.changes.is_empty());
    }

    #[tokio::test]
    async fn a_watcher_that_falls_behind_the_live_buffer_ends_with_lagged() {
        let store = MemoryStore::with_watch_buffer(4);
        let mut stream = store.watch("/", 0).await.unwrap();
        for i in 0..20 {
            store.create(&format!("/k{i}"), Bytes::new()).await.unwrap();
        }
        match stream.next().await {
            Some(Err(StoreError::WatcherLagged { last_seen })) => assert_eq!(last_seen, 0),
            other => panic!("expected WatcherLagged, got {other:?}"),
        }
        assert!(stream.next().await.is_none());
    }

    #[tokio::test]
    async fn dropping_the_store_ends_watches_with_closed() {
        let store = MemoryStore::new();
        let mut stream = store.watch("/", 0).await.unwrap();
        drop(store);
        assert!(matches!(stream.next().await, Some(Err(StoreError::Closed))));
        assert!(stream.next().await.is_none());
    }
}
