//! The revisioned key-value store every Ronghe object lives in: the `Store` trait, its
//! types and errors, and the backends that implement it (SQLite, in-memory).
//!
//! The model is etcd's: one global revision counter that every write bumps by one; each key
//! remembers the revision that created it and the one that last modified it; writes can be
//! made conditional on the modification revision (compare-and-swap), alone or several
//! together in an all-or-nothing transaction (`Store::txn`); a watch replays every
//! change after a revision, in order, with no gaps; compaction forgets history older than a
//! revision, after which reading or watching from before it fails with `Compacted`.
//! An etcd backend fits this trait with no change to callers.

use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

pub mod conformance;
pub mod memory;
mod rules;
pub mod sqlite;
mod watch;

pub use memory::MemoryStore;
pub use sqlite::{SqliteOptions, SqliteStore};

/// A store revision. Revisions start at 1 for the first write; 0 means "before any write".
pub type Revision = i64;

/// One key as stored at some revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    /// The revision of the write that created this key (unchanged by later updates).
    pub create_revision: Revision,
    /// The revision of the write that produced this value.
    pub mod_revision: Revision,
}

/// What to list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Only keys that start with this prefix.
    pub prefix: String,
    /// Read the keys as they were at this revision; `None` reads the latest. A revision
    /// newer than the current one fails with `FutureRevision`; one at or before the
    /// compacted revision fails with `Compacted` (revision 0 reads the empty store until
    /// something is compacted).
    pub revision: Option<Revision>,
    /// Only keys strictly greater than this one (for paging).
    pub start_after: Option<String>,
    /// At most this many keys; `None` or `Some(0)` means no limit.
    pub limit: Option<usize>,
}

/// The answer to a list: keys in ascending order, read from one snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListResult {
    pub items: Vec<KeyValue>,
    /// The revision of the snapshot the keys were read from.
    pub revision: Revision,
    /// Whether more keys matched beyond `limit`.
    pub more: bool,
}

/// The kind of a change seen by a watch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Create,
    Update,
    Delete,
    /// Nothing under the watched prefix changed up to `revision` (like etcd's progress
    /// notifications): sent when a watcher has caught up with changes elsewhere in the
    /// store, so it can remember a recent revision (for bookmarks) even when its own keys
    /// are quiet. Carries no key or values.
    Progress,
}

/// One change, as seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub key: String,
    /// The revision of this change.
    pub revision: Revision,
    /// The revision that created the key (for a delete: of the key that was deleted).
    pub create_revision: Revision,
    /// The new value; `None` for a delete.
    pub value: Option<Bytes>,
    /// The value before the change; `None` for a create.
    pub prev_value: Option<Bytes>,
}

/// The result of a delete: the revision of the delete and the key as it was just before.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deleted {
    pub revision: Revision,
    pub prev: KeyValue,
}

/// One write in a transaction (see [`Store::txn`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnOp {
    /// Create the key; fails with `AlreadyExists` if it exists.
    Create { key: String, value: Bytes },
    /// Replace the value if the key's modification revision is `expected_mod_revision`.
    Update {
        key: String,
        value: Bytes,
        expected_mod_revision: Revision,
    },
    /// Delete the key, if given only when its modification revision is as expected.
    Delete {
        key: String,
        expected_mod_revision: Option<Revision>,
    },
}

impl TxnOp {
    pub(crate) fn key(&self) -> &str {
        match self {
            TxnOp::Create { key, .. } | TxnOp::Update { key, .. } | TxnOp::Delete { key, .. } => {
                key
            }
        }
    }
}

/// What one op of a committed transaction did, in the order of the ops.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnOutcome {
    Put(KeyValue),
    Deleted(Deleted),
}

/// A stream of changes. It ends with an `Err` when the watcher fell too far behind to be
/// served without a gap (then the caller must list again), or when the store shuts down.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<Event, StoreError>> + Send>>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("key {key:?} already exists")]
    AlreadyExists { key: String },
    #[error("key {key:?} not found")]
    NotFound { key: String },
    #[error("key {key:?} was modified at revision {actual}, not {expected}")]
    Conflict {
        key: String,
        expected: Revision,
        actual: Revision,
    },
    #[error("revision {requested} has been compacted; the oldest available is {compacted}")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    #[error("revision {requested} is newer than the current revision {current}")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    #[error("the watcher fell behind and missed changes after revision {last_seen}")]
    WatcherLagged { last_seen: Revision },
    #[error("the store is closed")]
    Closed,
    #[error("store backend failed: {context}")]
    Backend {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl StoreError {
    pub fn backend(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        StoreError::Backend {
            context: context.into(),
            source: source.into(),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A revisioned key-value store. Every acknowledged write is durable (for backends that
/// persist) and atomic: it is either wholly visible after a crash or not at all.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The latest value of `key`, if it exists.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// Keys under a prefix, from one snapshot.
    async fn list(&self, options: ListOptions) -> Result<ListResult>;

    /// Create `key`; fails with `AlreadyExists` if it exists.
    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue>;

    /// Replace the value of `key` if its modification revision is `expected_mod_revision`;
    /// fails with `NotFound` or `Conflict` otherwise.
    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected_mod_revision: Revision,
    ) -> Result<KeyValue>;

    /// Delete `key`, if given only when its modification revision is `expected_mod_revision`.
    async fn delete(&self, key: &str, expected_mod_revision: Option<Revision>) -> Result<Deleted>;

    /// Applies every op or none. The ops apply in order (each sees the effects of those before
    /// it) at consecutive revisions, one per op, and are committed together: no reader, watcher
    /// or crash ever observes some of them without the others. If an op's precondition fails,
    /// nothing is written, no revision is consumed, and the error is that op's (`AlreadyExists`,
    /// `NotFound`, `Conflict`). An empty transaction does nothing and returns no outcomes.
    ///
    /// In the SQLite and in-memory backends each op is its own change: a watch sees one
    /// event per op, in order, each with its own revision, as if the ops had been written
    /// one by one with nothing in between (and a list at a revision inside that run sees the
    /// ops up to it).
    ///
    /// Callers must rely only on "all or none, in order", not on how the ops are numbered:
    /// an etcd backend would map this onto one etcd transaction, which gives all the ops one
    /// shared revision (its watch reports them as events sharing it). For the same reason an
    /// op should not name, as its expected revision, the revision an earlier op of the same
    /// transaction will get; etcd also checks every compare before any write, so such a
    /// backend would have to fold ops on a repeated key into one.
    async fn txn(&self, ops: Vec<TxnOp>) -> Result<Vec<TxnOutcome>>;

    /// Every change to keys under `prefix` with a revision greater than `after_revision`,
    /// in revision order, then live changes as they happen. Fails with `Compacted` when
    /// changes after `after_revision` are no longer retained, that is when it is below the
    /// compacted revision (watching from exactly the compacted revision is fine). An
    /// `after_revision` beyond the current revision is allowed, as in etcd: the stream
    /// starts once revisions pass it.
    ///
    /// The prefix is a plain byte prefix: `"/a/b"` matches `"/a/bc"`, so callers that mean
    /// a directory pass `"/a/b/"`. The same holds for `ListOptions::prefix`.
    async fn watch(&self, prefix: &str, after_revision: Revision) -> Result<WatchStream>;

    /// The revision of the latest write (0 for an empty store).
    async fn current_revision(&self) -> Result<Revision>;

    /// Forget history at and before `revision`, keeping the latest value of every live key.
    /// Fails with `FutureRevision` beyond the current revision; compacting at or before
    /// the compacted revision does nothing.
    async fn compact(&self, revision: Revision) -> Result<()>;

    /// The newest revision that has been compacted away (0 if none).
    async fn compacted_revision(&self) -> Result<Revision>;
}
