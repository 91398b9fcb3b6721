//! The read side of the SQLite backend: a small pool of read-only connections used from
//! blocking tasks, and the queries behind `get`, `list` and watch replays. Every multi-
//! statement read runs in one read transaction, so it sees one committed snapshot.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, Row, params};
use tokio::sync::Semaphore;

use super::schema::{Meta, open_reader, read_meta};
use crate::rules::{check_readable, check_watchable};
use crate::{Event, EventKind, KeyValue, ListOptions, ListResult, Result, Revision, StoreError};

/// Read-only connections, opened on demand and kept for reuse. At most `max_readers`
/// reads run at once, so the pool never opens more connections than that and never has to
/// close one for want of room.
pub(super) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
}

impl Readers {
    pub fn new(path: PathBuf, max_readers: usize) -> Self {
        Readers {
            path,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(max_readers.max(1))),
        }
    }

    /// Runs `read` on a pooled connection in a blocking task, so that the async caller's
    /// thread never waits on disk.
    pub async fn run<T, F>(self: &Arc<Self>, read: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|closed| StoreError::backend("sqlite read pool", closed))?;
        let readers = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let mut conn = readers.take()?;
            let result = read(&mut conn);
            readers.lock_idle().push(conn);
            drop(permit);
            result
        })
        .await
        .map_err(|join| StoreError::backend("sqlite read task failed", join))?
    }

    fn lock_idle(&self) -> MutexGuard<'_, Vec<Connection>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn take(&self) -> Result<Connection> {
        let pooled = self.lock_idle().pop();
        match pooled {
            Some(conn) => Ok(conn),
            None => open_reader(&self.path),
        }
    }
}

fn sql_error(context: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| StoreError::backend(context, source)
}

/// The keys a list or watch covers, as a half-open range of byte strings.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct KeyRange {
    /// Inclusive.
    lower: Vec<u8>,
    /// Exclusive; `None` means no upper bound (the empty prefix).
    upper: Option<Vec<u8>>,
}

impl KeyRange {
    /// The keys under `prefix` that sort after `start_after`; `None` if there are none.
    pub fn new(prefix: &str, start_after: Option<&str>) -> Option<Self> {
        let upper = prefix_end(prefix.as_bytes());
        let lower = match start_after {
            Some(start_after) if start_after.as_bytes() >= prefix.as_bytes() => {
                // The smallest byte string greater than `start_after`.
                let mut lower = Vec::with_capacity(start_after.len() + 1);
                lower.extend_from_slice(start_after.as_bytes());
                lower.push(0);
                lower
            }
            _ => prefix.as_bytes().to_vec(),
        };
        if upper.as_ref().is_some_and(|upper| lower >= *upper) {
            return None;
        }
        Some(KeyRange { lower, upper })
    }
}

/// The smallest byte string greater than every string that starts with `prefix`.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

fn key_at(row: &Row<'_>, index: usize) -> rusqlite::Result<String> {
    let bytes = row.get_ref(index)?.as_blob()?;
    String::from_utf8(bytes.to_vec()).map_err(|error| {
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Blob, error.into())
    })
}

fn bytes_at(row: &Row<'_>, index: usize) -> rusqlite::Result<Bytes> {
    let bytes = row.get_ref(index)?.as_blob_or_null()?.unwrap_or_default();
    Ok(Bytes::copy_from_slice(bytes))
}

// The newest row of a key, through the (key, revision) index walked backwards. The key is
// matched as a one-key range rather than with `=`: SQLite (built with STAT4, as the bundled
// one is) re-prepares an `=` lookup that orders on the index's next column at every step,
// which cost a sixth of the server's CPU under write load.
const GET: &str = "SELECT revision, create_revision, value, deleted FROM log
    WHERE key >= ?1 AND key <= ?1 ORDER BY key DESC, revision DESC LIMIT 1";

pub(super) fn get(conn: &mut Connection, key: &str) -> Result<Option<KeyValue>> {
    let read = || {
        conn.prepare_cached(GET)?
            .query_row([key.as_bytes()], |row| {
                if row.get::<_, bool>(3)? {
                    return Ok(None);
                }
                Ok(Some(KeyValue {
                    key: key.to_owned(),
                    mod_revision: row.get(0)?,
                    create_revision: row.get(1)?,
                    value: bytes_at(row, 2)?,
                }))
            })
            .optional()
    };
    read().map(Option::flatten).map_err(sql_error("sqlite get"))
}

// For each key in the range, its newest row at or before the revision, found by a walk of
// the (key, revision) index alone; then that row is fetched, unless it is a delete.
const NEWEST_AT: &str = "SELECT key, MAX(revision) FROM log
    WHERE key >= ?1 AND revision <= ?2 GROUP BY key ORDER BY key";
const NEWEST_AT_BOUNDED: &str = "SELECT key, MAX(revision) FROM log
    WHERE key >= ?1 AND key < ?3 AND revision <= ?2 GROUP BY key ORDER BY key";
const ROW_AT: &str = "SELECT create_revision, value, deleted FROM log WHERE revision = ?1";

pub(super) fn list(conn: &mut Connection, options: &ListOptions) -> Result<ListResult> {
    let snapshot = conn
        .transaction()
        .map_err(sql_error("sqlite list: begin"))?;
    let meta = read_meta(&snapshot).map_err(sql_error("sqlite list: read revisions"))?;
    let at = match options.revision {
        None => meta.current,
        Some(requested) => {
            check_readable(requested, meta.current, meta.compacted)?;
            requested
        }
    };
    let limit = options.limit.filter(|limit| *limit > 0);
    let mut items = Vec::new();
    if let Some(range) = KeyRange::new(&options.prefix, options.start_after.as_deref()) {
        // One row beyond the limit tells whether there are more.
        let wanted = limit.map_or(usize::MAX, |limit| limit.saturating_add(1));
        list_at(&snapshot, &range, at, wanted, &mut items).map_err(sql_error("sqlite list"))?;
    }
    let more = limit.is_some_and(|limit| items.len() > limit);
    if let Some(limit) = limit {
        items.truncate(limit);
    }
    Ok(ListResult {
        items,
        revision: at,
        more,
    })
}

fn list_at(
    conn: &Connection,
    range: &KeyRange,
    at: Revision,
    wanted: usize,
    items: &mut Vec<KeyValue>,
) -> rusqlite::Result<()> {
    let mut row_at = conn.prepare_cached(ROW_AT)?;
    let mut statement;
    let mut newest = match &range.upper {
        Some(upper) => {
            statement = conn.prepare_cached(NEWEST_AT_BOUNDED)?;
            statement.query(params![range.lower, at, upper])?
        }
        None => {
            statement = conn.prepare_cached(NEWEST_AT)?;
            statement.query(params![range.lower, at])?
        }
    };
    while items.len() < wanted {
        let Some(row) = newest.next()? else {
            break;
        };
        let revision: Revision = row.get(1)?;
        let (create_revision, value, deleted) = row_at.query_row([revision], |row| {
            Ok((row.get(0)?, bytes_at(row, 1)?, row.get::<_, bool>(2)?))
        })?;
        if deleted {
            continue;
        }
        items.push(KeyValue {
            key: key_at(row, 0)?,
            value,
            create_revision,
            mod_revision: revision,
        });
    }
    Ok(())
}

// Replays walk the log in revision order; the unary `+` keeps SQLite from trading that
// walk for the key index, which would need a sort of every matching row.
const REPLAY: &str = "SELECT l.revision, l.key, l.value, l.create_revision, l.deleted, p.value
    FROM log AS l LEFT JOIN log AS p ON p.revision = l.prev_revision AND l.prev_revision > 0
    WHERE l.revision > ?1 AND +l.key >= ?2 ORDER BY l.revision LIMIT ?3";
const REPLAY_BOUNDED: &str =
    "SELECT l.revision, l.key, l.value, l.create_revision, l.deleted, p.value
    FROM log AS l LEFT JOIN log AS p ON p.revision = l.prev_revision AND l.prev_revision > 0
    WHERE l.revision > ?1 AND +l.key >= ?2 AND +l.key < ?4 ORDER BY l.revision LIMIT ?3";

/// Up to `limit` changes under `prefix` after `after`, oldest first, with the revision the
/// snapshot they were read from had reached. Fails with `Compacted` if changes after
/// `after` may have been compacted away.
pub(super) fn replay_page(
    conn: &mut Connection,
    prefix: &str,
    after: Revision,
    limit: usize,
) -> Result<(Vec<Event>, Meta)> {
    let snapshot = conn
        .transaction()
        .map_err(sql_error("sqlite watch replay: begin"))?;
    let meta = read_meta(&snapshot).map_err(sql_error("sqlite watch replay: read revisions"))?;
    check_watchable(after, meta.compacted)?;
    let Some(range) = KeyRange::new(prefix, None) else {
        return Ok((Vec::new(), meta));
    };
    let mut events = Vec::new();
    let mut read = || -> rusqlite::Result<()> {
        let sql_limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut statement;
        let mut rows = match &range.upper {
            Some(upper) => {
                statement = snapshot.prepare_cached(REPLAY_BOUNDED)?;
                statement.query(params![after, range.lower, sql_limit, upper])?
            }
            None => {
                statement = snapshot.prepare_cached(REPLAY)?;
                statement.query(params![after, range.lower, sql_limit])?
            }
        };
        while let Some(row) = rows.next()? {
            events.push(event_from_row(row)?);
        }
        Ok(())
    };
    read().map_err(sql_error("sqlite watch replay"))?;
    Ok((events, meta))
}

fn event_from_row(row: &Row<'_>) -> rusqlite::Result<Event> {
    let revision: Revision = row.get(0)?;
    let create_revision: Revision = row.get(3)?;
    let deleted: bool = row.get(4)?;
    let kind = if deleted {
        EventKind::Delete
    } else if revision == create_revision {
        EventKind::Create
    } else {
        EventKind::Update
    };
    let prev_value = match kind {
        EventKind::Create | EventKind::Progress => None,
        EventKind::Update | EventKind::Delete => row
            .get_ref(5)?
            .as_blob_or_null()?
            .map(Bytes::copy_from_slice),
    };
    Ok(Event {
        kind,
        key: key_at(row, 1)?,
        revision,
        create_revision,
        value: (!deleted).then(|| bytes_at(row, 2)).transpose()?,
        prev_value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ranges() {
        let range = KeyRange::new("/a/b/", None).unwrap();
        assert_eq!(range.lower, b"/a/b/");
        assert_eq!(range.upper.as_deref(), Some(&b"/a/b0"[..]));

        let everything = KeyRange::new("", None).unwrap();
        assert_eq!(everything.lower, b"");
        assert_eq!(everything.upper, None);

        let paged = KeyRange::new("/a/", Some("/a/x")).unwrap();
        assert_eq!(paged.lower, b"/a/x\0");

        let before_prefix = KeyRange::new("/a/", Some("/0")).unwrap();
        assert_eq!(before_prefix.lower, b"/a/");

        assert_eq!(KeyRange::new("/a/", Some("/b")), None);
    }

    #[test]
    fn prefix_end_carries_past_max_bytes() {
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
        assert_eq!(prefix_end(b""), None);
    }
}

#[cfg(test)]
mod query_plans {
    use super::*;
    use crate::sqlite::schema::open_writer;

    fn plan(conn: &Connection, sql: &str) -> String {
        let mut statement = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let zeros = vec![0; statement.parameter_count()];
        let rows = statement
            .query_map(rusqlite::params_from_iter(zeros), |row| {
                row.get::<_, String>(3)
            })
            .unwrap();
        rows.map(Result::unwrap).collect::<Vec<_>>().join(" | ")
    }

    /// The read paths stay index seeks and ordered walks: no full scans, no sorts.
    #[test]
    fn point_reads_are_not_reprepared() {
        let dir = tempfile::tempdir().unwrap();
        let (conn, _) = open_writer(&dir.path().join("store.db")).unwrap();
        for n in 1..=20 {
            conn.execute(
                "INSERT INTO log (revision, key, value, create_revision, prev_revision, deleted)
                 VALUES (?1, ?2, x'00', ?1, 0, 0)",
                rusqlite::params![n, format!("/k/{n}").as_bytes()],
            )
            .unwrap();
        }
        let mut statement = conn.prepare_cached(GET).unwrap();
        for n in 1..=20 {
            let found: i64 = statement
                .query_row([format!("/k/{n}").as_bytes()], |row| row.get(0))
                .unwrap();
            assert_eq!(found, n);
        }
        assert_eq!(
            statement.get_status(rusqlite::StatementStatus::RePrepare),
            0
        );
    }

    #[test]
    fn reads_use_the_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let (conn, _) = open_writer(&dir.path().join("store.db")).unwrap();
        let expectations = [
            (GET, "USING INDEX log_key_revision (key>? AND key<?)"),
            (NEWEST_AT, "USING COVERING INDEX log_key_revision (key>?)"),
            (
                NEWEST_AT_BOUNDED,
                "USING COVERING INDEX log_key_revision (key>? AND key<?)",
            ),
            (ROW_AT, "USING INTEGER PRIMARY KEY (rowid=?)"),
            (REPLAY, "SEARCH l USING INTEGER PRIMARY KEY (rowid>?)"),
            (
                REPLAY_BOUNDED,
                "SEARCH l USING INTEGER PRIMARY KEY (rowid>?)",
            ),
        ];
        for (sql, expected) in expectations {
            let plan = plan(&conn, sql);
            assert!(plan.contains(expected), "{sql}\n  => {plan}");
            assert!(!plan.contains("TEMP B-TREE"), "{sql}\n  => {plan}");
            assert!(!plan.contains("SCAN"), "{sql}\n  => {plan}");
        }
    }
}
