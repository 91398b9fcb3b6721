//! `MemoryStore`: the in-memory backend, with the whole semantics of the trait (history for
//! reads at old revisions, watches from past revisions, compaction), for fast tests and
//! simulated hosts. Nothing is persisted.

use std::collections::{BTreeMap, HashMap, VecDeque};
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
    StoreError, TxnOp, TxnOutcome, WatchStream,
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

impl Version {
    fn written_by(event: &Event) -> Self {
        Version {
            revision: event.revision,
            create_revision: event.create_revision,
            value: event.value.clone(),
        }
    }
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
        self.revision = event.revision;
        self.keys
            .entry(event.key.clone())
            .or_default()
            .push(Version::written_by(&event));
        let event = Arc::new(event);
        self.changes.push_back(Arc::clone(&event));
        // An error only means nobody is watching.
        let _ = events.send(event);
    }

    /// Checks the ops of a transaction in order, each against the state the ops before it
    /// leave behind, without changing anything: the changes they would make, one per op at
    /// consecutive revisions after the current one, or the first op's error.
    fn plan_txn(&self, ops: Vec<TxnOp>) -> Result<Vec<(Event, TxnOutcome)>> {
        // The newest version of each key an earlier op of the transaction wrote.
        let mut written: HashMap<String, Version> = HashMap::new();
        let mut changes = Vec::with_capacity(ops.len());
        for (offset, op) in (1..).zip(ops) {
            let revision = self.revision + offset;
            let current = match written.get(op.key()) {
                Some(version) => Some(version).filter(|version| version.value.is_some()),
                None => self.live(op.key()),
            };
            let (event, outcome) = match op {
                TxnOp::Create { key, value } => {
                    let (event, created) = plan_create(&key, value, current, revision)?;
                    (event, TxnOutcome::Put(created))
                }
                TxnOp::Update {
                    key,
                    value,
                    expected_mod_revision,
                } => {
                    let (event, updated) =
                        plan_update(&key, value, expected_mod_revision, current, revision)?;
                    (event, TxnOutcome::Put(updated))
                }
                TxnOp::Delete {
                    key,
                    expected_mod_revision,
                } => {
                    let (event, deleted) =
                        plan_delete(&key, expected_mod_revision, current, revision)?;
                    (event, TxnOutcome::Deleted(deleted))
                }
            };
            written.insert(event.key.clone(), Version::written_by(&event));
            changes.push((event, outcome));
        }
        Ok(changes)
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

/// The change a create makes at `revision`, given the key's live version, if any.
fn plan_create(
    key: &str,
    value: Bytes,
    current: Option<&Version>,
    revision: Revision,
) -> Result<(Event, KeyValue)> {
    if current.is_some() {
        return Err(StoreError::AlreadyExists {
            key: key.to_owned(),
        });
    }
    let event = Event {
        kind: EventKind::Create,
        key: key.to_owned(),
        revision,
        create_revision: revision,
        value: Some(value.clone()),
        prev_value: None,
    };
    let created = KeyValue {
        key: key.to_owned(),
        value,
        create_revision: revision,
        mod_revision: revision,
    };
    Ok((event, created))
}

/// The change an update makes at `revision`, given the key's live version, if any.
fn plan_update(
    key: &str,
    value: Bytes,
    expected: Revision,
    current: Option<&Version>,
    revision: Revision,
) -> Result<(Event, KeyValue)> {
    let current = check_expected(key, Some(expected), current)?;
    let event = Event {
        kind: EventKind::Update,
        key: key.to_owned(),
        revision,
        create_revision: current.create_revision,
        value: Some(value.clone()),
        prev_value: current.value.clone(),
    };
    let updated = KeyValue {
        key: key.to_owned(),
        value,
        create_revision: current.create_revision,
        mod_revision: revision,
    };
    Ok((event, updated))
}

/// The change a delete makes at `revision`, given the key's live version, if any.
fn plan_delete(
    key: &str,
    expected: Option<Revision>,
    current: Option<&Version>,
    revision: Revision,
) -> Result<(Event, Deleted)> {
    let current = check_expected(key, expected, current)?;
    let prev = KeyValue {
        key: key.to_owned(),
        value: current.value.clone().unwrap_or_default(),
        create_revision: current.create_revision,
        mod_revision: current.revision,
    };
    let event = Event {
        kind: EventKind::Delete,
        key: key.to_owned(),
        revision,
        create_revision: prev.create_revision,
        value: None,
        prev_value: Some(prev.value.clone()),
    };
    Ok((event, Deleted { revision, prev }))
}

/// The live version of `key`, if it exists and (when `expected` is given) was last
/// modified at `expected`.
fn check_expected<'a>(
    key: &str,
    expected: Option<Revision>,
    current: Option<&'a Version>,
) -> Result<&'a Version> {
    let Some(current) = current else {
        return Err(StoreError::NotFound {
            key: key.to_owned(),
        });
    };
    if let Some(expected) = expected
        && current.revision != expected
    {
        return Err(StoreError::Conflict {
            key: key.to_owned(),
            expected,
            actual: current.revision,
        });
    }
    Ok(current)
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
        let (event, created) = plan_create(key, value, state.live(key), state.revision + 1)?;
        state.append(&self.events, event);
        Ok(created)
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected_mod_revision: Revision,
    ) -> Result<KeyValue> {
        let mut state = self.lock();
        let (event, updated) = plan_update(
            key,
            value,
            expected_mod_revision,
            state.live(key),
            state.revision + 1,
        )?;
        state.append(&self.events, event);
        Ok(updated)
    }

    async fn delete(&self, key: &str, expected_mod_revision: Option<Revision>) -> Result<Deleted> {
        let mut state = self.lock();
        let (event, deleted) = plan_delete(
            key,
            expected_mod_revision,
            state.live(key),
            state.revision + 1,
        )?;
        state.append(&self.events, event);
        Ok(deleted)
    }

    async fn txn(&self, ops: Vec<TxnOp>) -> Result<Vec<TxnOutcome>> {
        let mut state = self.lock();
        // Nothing is recorded or published until every op has passed its check, and the
        // lock is held throughout, so no reader or watcher sees part of the transaction.
        let changes = state.plan_txn(ops)?;
        let mut outcomes = Vec::with_capacity(changes.len());
        for (event, outcome) in changes {
            state.append(&self.events, event);
            outcomes.push(outcome);
        }
        Ok(outcomes)
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
