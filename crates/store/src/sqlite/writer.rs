//! The single writer of the SQLite backend: a dedicated thread that owns the read-write
//! connection and applies queued writes in group commits.
//!
//! Each batch is everything queued (up to a cap), applied in arrival order in ONE
//! transaction, so one fsync covers many writes. Preconditions are checked inside that
//! transaction, so each op sees the effects of the ops before it; an op whose precondition
//! fails gets its own error, consumes no revision and does not disturb the others. Only
//! after the commit returns are the revisions published, the changes broadcast to
//! watchers and the callers answered, so nothing is acknowledged or observed before it is
//! durable. A batch is all-or-nothing on disk, so a crash never leaves half of one behind.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::{mpsc, oneshot};

use super::Shared;
use super::checkpoint::Checkpointer;
use super::schema::{Meta, read_meta};
use crate::watch::EventSender;
use crate::{Deleted, Event, EventKind, KeyValue, Result, Revision, StoreError};

pub(super) enum WriteOp {
    Create {
        key: String,
        value: Bytes,
    },
    Update {
        key: String,
        value: Bytes,
        expected: Revision,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
    /// Compact through this revision. Large compactions are split into several of these by
    /// the caller, so that writes queued meanwhile are not held up for long.
    Compact {
        through: Revision,
    },
}

impl WriteOp {
    /// Roughly how many bytes applying this op adds to the WAL.
    fn size(&self) -> usize {
        // Index and table entries, page headers.
        const OVERHEAD: usize = 256;
        match self {
            WriteOp::Create { key, value } | WriteOp::Update { key, value, .. } => {
                OVERHEAD + 3 * key.len() + value.len()
            }
            WriteOp::Delete { key, .. } => OVERHEAD + 3 * key.len(),
            WriteOp::Compact { .. } => 0,
        }
    }
}

pub(super) enum WriteReply {
    Put(KeyValue),
    Deleted(Deleted),
    /// The compaction point after the request.
    Compacted(Revision),
}

pub(super) struct WriteRequest {
    pub op: WriteOp,
    pub reply: oneshot::Sender<Result<WriteReply>>,
}

/// What applying one op inside the batch transaction did.
enum Applied {
    Written {
        revision: Revision,
        create_revision: Revision,
        /// For updates and deletes: the row that was replaced.
        prev: Option<(Revision, Bytes)>,
    },
    Compacted(Revision),
}

pub(super) struct Writer {
    pub checkpointer: Checkpointer,
    pub conn: Connection,
    pub requests: mpsc::Receiver<WriteRequest>,
    pub events: EventSender,
    pub shared: Arc<Shared>,
    pub meta: Meta,
    pub max_batch: usize,
}

impl Writer {
    /// Serves requests until every sender is gone.
    pub fn run(mut self) {
        let mut batch = Vec::with_capacity(self.max_batch);
        while let Some(first) = self.requests.blocking_recv() {
            batch.push(first);
            while batch.len() < self.max_batch {
                match self.requests.try_recv() {
                    Ok(request) => batch.push(request),
                    Err(_) => break,
                }
            }
            self.apply(&mut batch);
            // Writes that arrive meanwhile make up the next batch.
            self.checkpointer.catch_up(&self.conn);
        }
        tracing::debug!(revision = self.meta.current, "sqlite writer stopped");
    }

    fn apply(&mut self, batch: &mut Vec<WriteRequest>) {
        match apply_batch(&mut self.conn, self.meta, batch) {
            Ok((outcomes, meta)) => {
                self.checkpointer
                    .committed(batch.iter().map(|request| request.op.size()).sum());
                self.meta = meta;
                self.shared
                    .compacted
                    .store(meta.compacted, Ordering::Release);
                self.shared.current.store(meta.current, Ordering::Release);
                for (request, outcome) in batch.drain(..).zip(outcomes) {
                    let reply = outcome.map(|applied| finish(request.op, applied, &self.events));
                    // The caller may have given up waiting; the write stands regardless.
                    let _ = request.reply.send(reply);
                }
            }
            Err(error) => {
                let error = Arc::new(error);
                tracing::error!(error = %error, ops = batch.len(), "sqlite write batch failed");
                for request in batch.drain(..) {
                    let _ = request.reply.send(Err(StoreError::backend(
                        "sqlite write batch failed",
                        Arc::clone(&error),
                    )));
                }
                // A failed commit may still have reached the disk; trust only the file.
                match read_meta(&self.conn) {
                    Ok(meta) => self.meta = meta,
                    Err(error) => tracing::error!(%error, "sqlite writer cannot reread revisions"),
                }
                self.shared
                    .compacted
                    .store(self.meta.compacted, Ordering::Release);
                self.shared
                    .current
                    .store(self.meta.current, Ordering::Release);
            }
        }
    }
}

/// Applies every op of the batch in one transaction and commits it. Returns each op's
/// outcome and the revisions after the batch.
fn apply_batch(
    conn: &mut Connection,
    mut meta: Meta,
    batch: &[WriteRequest],
) -> rusqlite::Result<(Vec<Result<Applied>>, Meta)> {
    let started = Instant::now();
    let transaction = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut outcomes = Vec::with_capacity(batch.len());
    for request in batch {
        let next = meta.current + 1;
        let outcome = match &request.op {
            WriteOp::Create { key, value } => create(&transaction, key, value, next)?,
            WriteOp::Update {
                key,
                value,
                expected,
            } => update(&transaction, key, value, *expected, next)?,
            WriteOp::Delete { key, expected } => delete(&transaction, key, *expected, next)?,
            WriteOp::Compact { through } => compact(&transaction, meta, *through)?,
        };
        match &outcome {
            Ok(Applied::Written { revision, .. }) => meta.current = *revision,
            Ok(Applied::Compacted(through)) => meta.compacted = *through,
            Err(_) => {}
        }
        outcomes.push(outcome);
    }
    transaction
        .prepare_cached(
            "UPDATE meta SET current_revision = ?1, compacted_revision = ?2 WHERE id = 0",
        )?
        .execute([meta.current, meta.compacted])?;
    let applied = started.elapsed();
    transaction.commit()?;
    tracing::trace!(
        ops = batch.len(),
        revision = meta.current,
        apply_us = applied.as_micros() as u64,
        commit_us = (started.elapsed() - applied).as_micros() as u64,
        "write batch committed"
    );
    Ok((outcomes, meta))
}

const INSERT_ROW: &str = "INSERT INTO log
    (revision, key, value, create_revision, prev_revision, deleted)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

// A one-key range, not `=`: see `read::GET` for why.
const NEWEST_ROW: &str = "SELECT revision, create_revision, deleted FROM log
    WHERE key >= ?1 AND key <= ?1 ORDER BY key DESC, revision DESC LIMIT 1";
const VALUE_AT: &str = "SELECT value FROM log WHERE revision = ?1";

/// A precondition's verdict, or a failure of the database itself (which fails the batch).
type Checked = rusqlite::Result<Result<Applied>>;

/// The live row of `key`: its revision and create revision, if the key exists.
fn live_row(conn: &Connection, key: &str) -> rusqlite::Result<Option<(Revision, Revision)>> {
    let newest = conn
        .prepare_cached(NEWEST_ROW)?
        .query_row([key.as_bytes()], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get::<_, bool>(2)?))
        })
        .optional()?;
    Ok(newest
        .filter(|(_, _, deleted)| !deleted)
        .map(|(revision, create_revision, _)| (revision, create_revision)))
}

fn value_at(conn: &Connection, revision: Revision) -> rusqlite::Result<Bytes> {
    conn.prepare_cached(VALUE_AT)?.query_row([revision], |row| {
        let value = row.get_ref(0)?.as_blob_or_null()?.unwrap_or_default();
        Ok(Bytes::copy_from_slice(value))
    })
}

fn create(conn: &Connection, key: &str, value: &Bytes, revision: Revision) -> Checked {
    if live_row(conn, key)?.is_some() {
        return Ok(Err(StoreError::AlreadyExists {
            key: key.to_owned(),
        }));
    }
    conn.prepare_cached(INSERT_ROW)?.execute(params![
        revision,
        key.as_bytes(),
        value.as_ref(),
        revision,
        0,
        false
    ])?;
    Ok(Ok(Applied::Written {
        revision,
        create_revision: revision,
        prev: None,
    }))
}

fn update(
    conn: &Connection,
    key: &str,
    value: &Bytes,
    expected: Revision,
    revision: Revision,
) -> Checked {
    let Some((actual, create_revision)) = live_row(conn, key)? else {
        return Ok(Err(StoreError::NotFound {
            key: key.to_owned(),
        }));
    };
    if actual != expected {
        return Ok(Err(StoreError::Conflict {
            key: key.to_owned(),
            expected,
            actual,
        }));
    }
    let prev_value = value_at(conn, actual)?;
    conn.prepare_cached(INSERT_ROW)?.execute(params![
        revision,
        key.as_bytes(),
        value.as_ref(),
        create_revision,
        actual,
        false
    ])?;
    Ok(Ok(Applied::Written {
        revision,
        create_revision,
        prev: Some((actual, prev_value)),
    }))
}

fn delete(conn: &Connection, key: &str, expected: Option<Revision>, revision: Revision) -> Checked {
    let Some((actual, create_revision)) = live_row(conn, key)? else {
        return Ok(Err(StoreError::NotFound {
            key: key.to_owned(),
        }));
    };
    if let Some(expected) = expected
        && actual != expected
    {
        return Ok(Err(StoreError::Conflict {
            key: key.to_owned(),
            expected,
            actual,
        }));
    }
    let prev_value = value_at(conn, actual)?;
    conn.prepare_cached(INSERT_ROW)?.execute(params![
        revision,
        key.as_bytes(),
        &[] as &[u8],
        create_revision,
        actual,
        true
    ])?;
    Ok(Ok(Applied::Written {
        revision,
        create_revision,
        prev: Some((actual, prev_value)),
    }))
}

/// Deletes every row at or before `through` that a newer row at or before `through`
/// replaced, and every delete row at or before `through`: what is left is, for each key
/// alive at `through`, its row then, plus all later history. Rows before the previous
/// compaction point were handled by earlier compactions, so only the rows in between are
/// looked at.
fn compact(conn: &Connection, meta: Meta, through: Revision) -> Checked {
    if through > meta.current {
        return Ok(Err(StoreError::FutureRevision {
            requested: through,
            current: meta.current,
        }));
    }
    if through <= meta.compacted {
        return Ok(Ok(Applied::Compacted(meta.compacted)));
    }
    let replaced = conn
        .prepare_cached(
            "DELETE FROM log WHERE revision IN (SELECT prev_revision FROM log
             WHERE revision > ?1 AND revision <= ?2 AND prev_revision > 0)",
        )?
        .execute([meta.compacted, through])?;
    let deletes = conn
        .prepare_cached("DELETE FROM log WHERE revision > ?1 AND revision <= ?2 AND deleted = 1")?
        .execute([meta.compacted, through])?;
    tracing::debug!(
        from = meta.compacted,
        through,
        replaced,
        deletes,
        "compacted"
    );
    Ok(Ok(Applied::Compacted(through)))
}

/// Turns a committed op into its reply, publishing its change to watchers.
fn finish(op: WriteOp, applied: Applied, events: &EventSender) -> WriteReply {
    let (revision, create_revision, prev) = match applied {
        Applied::Written {
            revision,
            create_revision,
            prev,
        } => (revision, create_revision, prev),
        Applied::Compacted(through) => return WriteReply::Compacted(through),
    };
    let prev_value = prev.as_ref().map(|(_, value)| value.clone());
    let (event, reply) = match op {
        WriteOp::Create { key, value } | WriteOp::Update { key, value, .. } => {
            let kind = if prev.is_some() {
                EventKind::Update
            } else {
                EventKind::Create
            };
            let event = Event {
                kind,
                key: key.clone(),
                revision,
                create_revision,
                value: Some(value.clone()),
                prev_value,
            };
            let reply = WriteReply::Put(KeyValue {
                key,
                value,
                create_revision,
                mod_revision: revision,
            });
            (event, reply)
        }
        WriteOp::Delete { key, .. } => {
            let (prev_revision, prev_bytes) = prev.unwrap_or_default();
            let event = Event {
                kind: EventKind::Delete,
                key: key.clone(),
                revision,
                create_revision,
                value: None,
                prev_value,
            };
            let reply = WriteReply::Deleted(Deleted {
                revision,
                prev: KeyValue {
                    key,
                    value: prev_bytes,
                    create_revision,
                    mod_revision: prev_revision,
                },
            });
            (event, reply)
        }
        WriteOp::Compact { .. } => return WriteReply::Compacted(revision),
    };
    // An error only means nobody is watching right now; a watcher that subscribes later
    // reads this change from the log, which already holds it.
    let _ = events.send(Arc::new(event));
    reply
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::schema::open_writer;

    fn request(op: WriteOp) -> WriteRequest {
        let (reply, _) = oneshot::channel();
        WriteRequest { op, reply }
    }

    fn create(key: &str) -> WriteRequest {
        request(WriteOp::Create {
            key: key.to_owned(),
            value: Bytes::from_static(b"v"),
        })
    }

    /// Ops in one batch see each other's effects in order; a failed precondition fails
    /// only its own op and takes no revision.
    #[test]
    fn ops_in_one_batch_apply_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (mut conn, meta) = open_writer(&dir.path().join("store.db")).unwrap();
        let batch = vec![
            create("/a"),
            request(WriteOp::Update {
                key: "/a".to_owned(),
                value: Bytes::from_static(b"w"),
                expected: 1,
            }),
            create("/a"),
            request(WriteOp::Delete {
                key: "/a".to_owned(),
                expected: Some(1),
            }),
            request(WriteOp::Delete {
                key: "/a".to_owned(),
                expected: Some(2),
            }),
            create("/a"),
            request(WriteOp::Update {
                key: "/b".to_owned(),
                value: Bytes::new(),
                expected: 1,
            }),
            request(WriteOp::Compact { through: 2 }),
            request(WriteOp::Compact { through: 9 }),
        ];
        let (outcomes, after) = apply_batch(&mut conn, meta, &batch).unwrap();
        let summary: Vec<String> = outcomes
            .iter()
            .map(|outcome| match outcome {
                Ok(Applied::Written { revision, .. }) => format!("rev {revision}"),
                Ok(Applied::Compacted(through)) => format!("compacted {through}"),
                Err(StoreError::AlreadyExists { .. }) => "exists".to_owned(),
                Err(StoreError::Conflict { actual, .. }) => format!("conflict {actual}"),
                Err(StoreError::NotFound { .. }) => "not found".to_owned(),
                Err(StoreError::FutureRevision { .. }) => "future".to_owned(),
                Err(other) => format!("{other}"),
            })
            .collect();
        assert_eq!(
            summary,
            [
                "rev 1",
                "rev 2",
                "exists",
                "conflict 2",
                "rev 3",
                "rev 4",
                "not found",
                "compacted 2",
                "future",
            ]
        );
        assert_eq!(
            after,
            Meta {
                current: 4,
                compacted: 2
            }
        );
        assert_eq!(
            read_meta(&conn).unwrap(),
            after,
            "meta is committed with the batch"
        );
        let rows: i64 = conn
            .query_row("SELECT COUNT(*) FROM log", [], |row| row.get(0))
            .unwrap();
        assert_eq!(rows, 3, "the row replaced at revision 2 was compacted away");
    }
}
