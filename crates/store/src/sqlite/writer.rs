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
//!
//! A multi-key transaction is one op of a batch whose writes are applied under a SAVEPOINT
//! of the batch transaction: if one of its writes fails its precondition, the writer rolls
//! back to the savepoint, so the transaction leaves no row behind and takes no revision,
//! and the batch goes on with the next op. Its writes are committed, published and answered
//! together with the rest of the batch.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use rusqlite::{
    Connection, DropBehavior, OptionalExtension, Transaction, TransactionBehavior, params,
};
use tokio::sync::{mpsc, oneshot};

use super::Shared;
use super::checkpoint::Checkpointer;
use super::schema::{Meta, read_meta};
use crate::watch::EventSender;
use crate::{Deleted, Event, EventKind, KeyValue, Result, Revision, StoreError, TxnOp, TxnOutcome};

pub(super) enum WriteOp {
    /// One write on its own.
    Write(TxnOp),
    /// Writes applied all or none, in order, at consecutive revisions.
    Txn(Vec<TxnOp>),
    /// Compact through this revision. Large compactions are split into several of these by
    /// the caller, so that writes queued meanwhile are not held up for long.
    Compact { through: Revision },
}

impl WriteOp {
    /// Roughly how many bytes applying this op adds to the WAL.
    fn size(&self) -> usize {
        match self {
            WriteOp::Write(op) => write_size(op),
            WriteOp::Txn(ops) => ops.iter().map(write_size).sum(),
            WriteOp::Compact { .. } => 0,
        }
    }
}

/// Roughly how many bytes one write adds to the WAL.
fn write_size(op: &TxnOp) -> usize {
    // Index and table entries, page headers.
    const OVERHEAD: usize = 256;
    match op {
        TxnOp::Create { key, value } | TxnOp::Update { key, value, .. } => {
            OVERHEAD + 3 * key.len() + value.len()
        }
        TxnOp::Delete { key, .. } => OVERHEAD + 3 * key.len(),
    }
}

pub(super) enum WriteReply {
    Written(TxnOutcome),
    Txn(Vec<TxnOutcome>),
    /// The compaction point after the request.
    Compacted(Revision),
}

pub(super) struct WriteRequest {
    pub op: WriteOp,
    pub reply: oneshot::Sender<Result<WriteReply>>,
}

/// What applying one op inside the batch transaction did. The changes are published and
/// the outcomes answered only after the batch commits.
enum Applied {
    Written(Change),
    /// One change per write of the transaction, in order.
    Txn(Vec<Change>),
    Compacted(Revision),
}

/// One write applied inside the batch transaction: the change watchers will see and what
/// the caller will be told.
struct Change {
    event: Event,
    outcome: TxnOutcome,
}

impl Change {
    /// A create (when there is no previous value) or an update.
    fn put(
        key: &str,
        value: &Bytes,
        revision: Revision,
        create_revision: Revision,
        prev_value: Option<Bytes>,
    ) -> Self {
        let kind = if prev_value.is_some() {
            EventKind::Update
        } else {
            EventKind::Create
        };
        Change {
            event: Event {
                kind,
                key: key.to_owned(),
                revision,
                create_revision,
                value: Some(value.clone()),
                prev_value,
            },
            outcome: TxnOutcome::Put(KeyValue {
                key: key.to_owned(),
                value: value.clone(),
                create_revision,
                mod_revision: revision,
            }),
        }
    }

    fn delete(
        key: &str,
        revision: Revision,
        create_revision: Revision,
        prev_revision: Revision,
        prev_value: Bytes,
    ) -> Self {
        Change {
            event: Event {
                kind: EventKind::Delete,
                key: key.to_owned(),
                revision,
                create_revision,
                value: None,
                prev_value: Some(prev_value.clone()),
            },
            outcome: TxnOutcome::Deleted(Deleted {
                revision,
                prev: KeyValue {
                    key: key.to_owned(),
                    value: prev_value,
                    create_revision,
                    mod_revision: prev_revision,
                },
            }),
        }
    }

    fn revision(&self) -> Revision {
        self.event.revision
    }
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
                    let reply = outcome.map(|applied| finish(applied, &self.events));
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
    let mut transaction = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut outcomes = Vec::with_capacity(batch.len());
    for request in batch {
        let next = meta.current + 1;
        let outcome = match &request.op {
            WriteOp::Write(op) => write(&transaction, op, next)?.map(Applied::Written),
            WriteOp::Txn(ops) => apply_txn(&mut transaction, ops, next)?.map(Applied::Txn),
            WriteOp::Compact { through } => {
                compact(&transaction, meta, *through)?.map(Applied::Compacted)
            }
        };
        match &outcome {
            Ok(Applied::Written(change)) => meta.current = change.revision(),
            Ok(Applied::Txn(changes)) => {
                if let Some(last) = changes.last() {
                    meta.current = last.revision();
                }
            }
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
type Checked<T = Change> = rusqlite::Result<Result<T>>;

/// Applies the writes of a transaction in order, at consecutive revisions from `first`,
/// under a savepoint of the batch transaction. If one fails its precondition, everything
/// since the savepoint is rolled back and that write's error is the transaction's: the
/// batch goes on as if the transaction had not been queued. A database error is returned
/// as such and fails the whole batch, as for any other op.
fn apply_txn(
    transaction: &mut Transaction<'_>,
    ops: &[TxnOp],
    first: Revision,
) -> Checked<Vec<Change>> {
    let mut savepoint = transaction.savepoint()?;
    // Also what happens if a database error below returns early; the batch transaction is
    // then rolled back as a whole anyway.
    savepoint.set_drop_behavior(DropBehavior::Rollback);
    let mut changes = Vec::with_capacity(ops.len());
    for (offset, op) in (0..).zip(ops) {
        match write(&savepoint, op, first + offset)? {
            Ok(change) => changes.push(change),
            Err(error) => {
                // ROLLBACK TO the savepoint, then RELEASE it.
                savepoint.finish()?;
                return Ok(Err(error));
            }
        }
    }
    savepoint.commit()?;
    Ok(Ok(changes))
}

/// Applies one write at `revision`.
fn write(conn: &Connection, op: &TxnOp, revision: Revision) -> Checked {
    match op {
        TxnOp::Create { key, value } => create(conn, key, value, revision),
        TxnOp::Update {
            key,
            value,
            expected_mod_revision,
        } => update(conn, key, value, *expected_mod_revision, revision),
        TxnOp::Delete {
            key,
            expected_mod_revision,
        } => delete(conn, key, *expected_mod_revision, revision),
    }
}

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
    Ok(Ok(Change::put(key, value, revision, revision, None)))
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
    Ok(Ok(Change::put(
        key,
        value,
        revision,
        create_revision,
        Some(prev_value),
    )))
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
    Ok(Ok(Change::delete(
        key,
        revision,
        create_revision,
        actual,
        prev_value,
    )))
}

/// Deletes every row at or before `through` that a newer row at or before `through`
/// replaced, and every delete row at or before `through`: what is left is, for each key
/// alive at `through`, its row then, plus all later history. Rows before the previous
/// compaction point were handled by earlier compactions, so only the rows in between are
/// looked at.
fn compact(conn: &Connection, meta: Meta, through: Revision) -> Checked<Revision> {
    if through > meta.current {
        return Ok(Err(StoreError::FutureRevision {
            requested: through,
            current: meta.current,
        }));
    }
    if through <= meta.compacted {
        return Ok(Ok(meta.compacted));
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
    Ok(Ok(through))
}

/// Turns a committed op into its reply, publishing its changes to watchers in order.
fn finish(applied: Applied, events: &EventSender) -> WriteReply {
    match applied {
        Applied::Written(change) => WriteReply::Written(publish(change, events)),
        Applied::Txn(changes) => WriteReply::Txn(
            changes
                .into_iter()
                .map(|change| publish(change, events))
                .collect(),
        ),
        Applied::Compacted(through) => WriteReply::Compacted(through),
    }
}

fn publish(change: Change, events: &EventSender) -> TxnOutcome {
    // An error only means nobody is watching right now; a watcher that subscribes later
    // reads this change from the log, which already holds it.
    let _ = events.send(Arc::new(change.event));
    change.outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::schema::open_writer;

    fn request(op: WriteOp) -> WriteRequest {
        let (reply, _) = oneshot::channel();
        WriteRequest { op, reply }
    }

    fn create_op(key: &str) -> TxnOp {
        TxnOp::Create {
            key: key.to_owned(),
            value: Bytes::from_static(b"v"),
        }
    }

    fn update_op(key: &str, expected: Revision) -> TxnOp {
        TxnOp::Update {
            key: key.to_owned(),
            value: Bytes::from_static(b"w"),
            expected_mod_revision: expected,
        }
    }

    fn delete_op(key: &str, expected: Option<Revision>) -> TxnOp {
        TxnOp::Delete {
            key: key.to_owned(),
            expected_mod_revision: expected,
        }
    }

    fn create(key: &str) -> WriteRequest {
        request(WriteOp::Write(create_op(key)))
    }

    fn summary(outcomes: &[Result<Applied>]) -> Vec<String> {
        outcomes
            .iter()
            .map(|outcome| match outcome {
                Ok(Applied::Written(change)) => format!("rev {}", change.revision()),
                Ok(Applied::Txn(changes)) => {
                    let revisions: Vec<String> = changes
                        .iter()
                        .map(|change| change.revision().to_string())
                        .collect();
                    format!("txn {}", revisions.join(","))
                }
                Ok(Applied::Compacted(through)) => format!("compacted {through}"),
                Err(StoreError::AlreadyExists { .. }) => "exists".to_owned(),
                Err(StoreError::Conflict { actual, .. }) => format!("conflict {actual}"),
                Err(StoreError::NotFound { .. }) => "not found".to_owned(),
                Err(StoreError::FutureRevision { .. }) => "future".to_owned(),
                Err(other) => format!("{other}"),
            })
            .collect()
    }

    fn row_count(conn: &Connection) -> i64 {
        conn.query_row("SELECT COUNT(*) FROM log", [], |row| row.get(0))
            .unwrap()
    }

    /// Ops in one batch see each other's effects in order; a failed precondition fails
    /// only its own op and takes no revision.
    #[test]
    fn ops_in_one_batch_apply_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (mut conn, meta) = open_writer(&dir.path().join("store.db")).unwrap();
        let batch = vec![
            create("/a"),
            request(WriteOp::Write(update_op("/a", 1))),
            create("/a"),
            request(WriteOp::Write(delete_op("/a", Some(1)))),
            request(WriteOp::Write(delete_op("/a", Some(2)))),
            create("/a"),
            request(WriteOp::Write(update_op("/b", 1))),
            request(WriteOp::Compact { through: 2 }),
            request(WriteOp::Compact { through: 9 }),
        ];
        let (outcomes, after) = apply_batch(&mut conn, meta, &batch).unwrap();
        assert_eq!(
            summary(&outcomes),
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
        assert_eq!(
            row_count(&conn),
            3,
            "the row replaced at revision 2 was compacted away"
        );
    }

    /// A transaction whose precondition fails partway rolls back to its savepoint: its
    /// earlier writes vanish and take no revision, while the ops before and after it in the
    /// same batch apply, and later transactions in the batch still work.
    #[test]
    fn a_failed_txn_in_a_batch_rolls_back_only_itself() {
        let dir = tempfile::tempdir().unwrap();
        let (mut conn, meta) = open_writer(&dir.path().join("store.db")).unwrap();
        let batch = vec![
            create("/a"),
            // Creates /b and updates /a, then fails: /a is no longer at revision 1.
            request(WriteOp::Txn(vec![
                create_op("/b"),
                update_op("/a", 1),
                delete_op("/a", Some(1)),
            ])),
            // Sees neither /b nor the update of /a from the failed transaction.
            create("/b"),
            request(WriteOp::Write(update_op("/a", 1))),
            // A transaction that sees its own earlier writes.
            request(WriteOp::Txn(vec![
                create_op("/c"),
                update_op("/c", 4),
                delete_op("/b", Some(2)),
            ])),
            request(WriteOp::Txn(Vec::new())),
            create("/d"),
        ];
        let (outcomes, after) = apply_batch(&mut conn, meta, &batch).unwrap();
        assert_eq!(
            summary(&outcomes),
            [
                "rev 1",
                "conflict 3",
                "rev 2",
                "rev 3",
                "txn 4,5,6",
                "txn ",
                "rev 7"
            ]
        );
        assert_eq!(
            after,
            Meta {
                current: 7,
                compacted: 0
            }
        );
        assert_eq!(read_meta(&conn).unwrap(), after);
        assert_eq!(
            row_count(&conn),
            7,
            "one row per revision, none from the failed transaction"
        );
        let Ok(Applied::Txn(changes)) = &outcomes[4] else {
            panic!("the second transaction applied");
        };
        let events: Vec<(EventKind, &str, Revision, Revision)> = changes
            .iter()
            .map(|change| {
                let event = &change.event;
                (
                    event.kind,
                    event.key.as_str(),
                    event.revision,
                    event.create_revision,
                )
            })
            .collect();
        assert_eq!(
            events,
            [
                (EventKind::Create, "/c", 4, 4),
                (EventKind::Update, "/c", 5, 4),
                (EventKind::Delete, "/b", 6, 2),
            ]
        );
    }
}
