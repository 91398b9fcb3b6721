//! `SqliteStore`: the embedded default backend, a kine-style append-only log in one SQLite
//! file (see `schema` for the layout), written by one thread in group commits (`writer`),
//! read through a pool of read-only connections (`read`), watched by replaying the log and
//! then following the writer's broadcast (`watch`).

mod checkpoint;
mod read;
mod schema;
#[cfg(test)]
mod tests;
mod watch;
mod writer;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::thread::JoinHandle;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::{
    Deleted, Event, KeyValue, ListOptions, ListResult, Result, Revision, Store, StoreError, TxnOp,
    TxnOutcome, WatchStream,
};
use read::Readers;
use writer::{WriteOp, WriteReply, WriteRequest, Writer};

/// Tuning for [`SqliteStore::open_with`]. The defaults suit the API server.
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    /// The most writes committed in one transaction.
    pub max_batch: usize,
    /// How many writes may wait for the writer before callers are made to wait to enqueue.
    pub queue_depth: usize,
    /// How many live changes a watcher may fall behind by before its stream ends with
    /// `WatcherLagged`.
    pub watch_buffer: usize,
    /// How many reads run at once, each on its own read-only connection (kept open for
    /// reuse); further reads wait for one to finish.
    pub max_readers: usize,
    /// The most revisions one compaction step covers; between steps the writer serves the
    /// writes that queued up, so a large compaction does not stall writes.
    pub compaction_step: Revision,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            max_batch: 512,
            queue_depth: 4096,
            watch_buffer: 8192,
            max_readers: 8,
            compaction_step: 1_000,
        }
    }
}

/// A store in one SQLite file. Every acknowledged write has been committed with
/// `synchronous = FULL` in WAL mode, so it survives a crash of the process or the machine.
///
/// Dropping the store lets the writer finish the writes already queued, then waits for
/// its thread to exit and ends every watch with `Closed`.
pub struct SqliteStore {
    requests: Option<mpsc::Sender<WriteRequest>>,
    writer: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
    compaction_step: Revision,
}

/// What the writer, readers and watchers share.
struct Shared {
    readers: Arc<Readers>,
    /// The revision of the newest committed write, published after its commit.
    current: AtomicI64,
    /// The newest compacted revision, published after its commit.
    compacted: AtomicI64,
    /// For watchers to subscribe; weak so that the channel closes when the writer stops.
    events: broadcast::WeakSender<Arc<Event>>,
}

impl SqliteStore {
    /// Opens the store at `path`, creating the file if needed, with default options.
    ///
    /// This is a synchronous call that does file I/O (creating the schema, or SQLite's WAL
    /// recovery after a crash); call it at startup, or from `spawn_blocking`. It starts the
    /// writer thread and needs no runtime, but the store's methods must be called from
    /// within a Tokio runtime.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, SqliteOptions::default())
    }

    /// Opens the store at `path` with the given tuning.
    pub fn open_with(path: &Path, options: SqliteOptions) -> Result<Self> {
        let (conn, meta) = schema::open_writer(path)?;
        let (events, _) = broadcast::channel(options.watch_buffer.max(1));
        let shared = Arc::new(Shared {
            readers: Arc::new(Readers::new(path.to_path_buf(), options.max_readers)),
            current: AtomicI64::new(meta.current),
            compacted: AtomicI64::new(meta.compacted),
            events: events.downgrade(),
        });
        let (requests, receiver) = mpsc::channel(options.queue_depth.max(1));
        let writer = Writer {
            checkpointer: checkpoint::Checkpointer::start(path)?,
            conn,
            requests: receiver,
            events,
            shared: Arc::clone(&shared),
            meta,
            max_batch: options.max_batch.max(1),
        };
        let writer = std::thread::Builder::new()
            .name("ronghe-store-writer".to_owned())
            .spawn(move || writer.run())
            .map_err(|error| StoreError::backend("start the sqlite writer thread", error))?;
        tracing::info!(
            path = %path.display(),
            revision = meta.current,
            compacted = meta.compacted,
            "opened sqlite store"
        );
        Ok(SqliteStore {
            requests: Some(requests),
            writer: Some(writer),
            shared,
            compaction_step: options.compaction_step.max(1),
        })
    }

    async fn submit(&self, op: WriteOp) -> Result<WriteReply> {
        let requests = self.requests.as_ref().ok_or(StoreError::Closed)?;
        let (reply, answer) = oneshot::channel();
        requests
            .send(WriteRequest { op, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn write(&self, op: TxnOp) -> Result<TxnOutcome> {
        match self.submit(WriteOp::Write(op)).await? {
            WriteReply::Written(outcome) => Ok(outcome),
            _ => Err(unexpected_reply()),
        }
    }

    async fn put(&self, op: TxnOp) -> Result<KeyValue> {
        match self.write(op).await? {
            TxnOutcome::Put(key_value) => Ok(key_value),
            TxnOutcome::Deleted(_) => Err(unexpected_reply()),
        }
    }
}

fn unexpected_reply() -> StoreError {
    StoreError::backend(
        "sqlite writer",
        "the writer answered with a reply of the wrong kind",
    )
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Closing the queue lets the writer drain it and return.
        drop(self.requests.take());
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!("the sqlite writer thread panicked");
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let key = key.to_owned();
        self.shared
            .readers
            .run(move |conn| read::get(conn, &key))
            .await
    }

    async fn list(&self, options: ListOptions) -> Result<ListResult> {
        self.shared
            .readers
            .run(move |conn| read::list(conn, &options))
            .await
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        self.put(TxnOp::Create {
            key: key.to_owned(),
            value,
        })
        .await
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected_mod_revision: Revision,
    ) -> Result<KeyValue> {
        self.put(TxnOp::Update {
            key: key.to_owned(),
            value,
            expected_mod_revision,
        })
        .await
    }

    async fn delete(&self, key: &str, expected_mod_revision: Option<Revision>) -> Result<Deleted> {
        let op = TxnOp::Delete {
            key: key.to_owned(),
            expected_mod_revision,
        };
        match self.write(op).await? {
            TxnOutcome::Deleted(deleted) => Ok(deleted),
            TxnOutcome::Put(_) => Err(unexpected_reply()),
        }
    }

    async fn txn(&self, ops: Vec<TxnOp>) -> Result<Vec<TxnOutcome>> {
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        match self.submit(WriteOp::Txn(ops)).await? {
            WriteReply::Txn(outcomes) => Ok(outcomes),
            _ => Err(unexpected_reply()),
        }
    }

    async fn watch(&self, prefix: &str, after_revision: Revision) -> Result<WatchStream> {
        watch::watch(Arc::clone(&self.shared), prefix.to_owned(), after_revision).await
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.shared.current.load(Ordering::Acquire))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let current = self.shared.current.load(Ordering::Acquire);
        if revision > current {
            return Err(StoreError::FutureRevision {
                requested: revision,
                current,
            });
        }
        let mut compacted = self.shared.compacted.load(Ordering::Acquire);
        while compacted < revision {
            let through = revision.min(compacted.saturating_add(self.compaction_step));
            match self.submit(WriteOp::Compact { through }).await? {
                WriteReply::Compacted(now) if now >= through => compacted = now,
                _ => return Err(unexpected_reply()),
            }
        }
        Ok(())
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        Ok(self.shared.compacted.load(Ordering::Acquire))
    }
}
