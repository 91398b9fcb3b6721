//! The on-disk layout of the SQLite backend, and how its writer and reader connections are
//! opened and configured.
//!
//! Layout (kine's):
//! - `log`: one row per successful write, keyed by its revision, append-only apart from
//!   compaction. A delete is a row with `deleted = 1` and an empty value.
//!   `prev_revision` is the row this one supersedes (0 for a create); replays join on it
//!   to fill in `prev_value`, and compaction deletes what it names.
//! - `log_key_revision`: an index on `(key, revision)`. A key's state at any revision is
//!   its newest row at or before it, one index seek away; `get`, preconditions and lists
//!   (latest or historical) all read through it, and compaction keeps it short.
//! - `meta`: one row with the current and compacted revisions, written in the same
//!   transaction as the writes that move them, so they survive a crash exactly.
//!
//! There is deliberately no separate table of latest rows: every table or index ordered
//! by key dirties about one page per write, and pages written per commit are what a group
//! commit pays for (in the WAL and again at checkpoints). Tables ordered by revision only
//! ever append, and cost little.
//!
//! Keys are stored as BLOBs of their UTF-8 bytes so that comparisons and prefix ranges are
//! plain byte comparisons.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::{Result, Revision, StoreError};

/// Bumped whenever the layout changes; a file from a newer version is refused.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS log (
    revision INTEGER PRIMARY KEY,
    key BLOB NOT NULL,
    value BLOB NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision INTEGER NOT NULL,
    deleted INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS log_key_revision ON log (key, revision);
CREATE TABLE IF NOT EXISTS meta (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    current_revision INTEGER NOT NULL,
    compacted_revision INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta (id, current_revision, compacted_revision) VALUES (0, 0, 0);
";

/// How long a connection waits for a lock held by another before failing. Only opening
/// (WAL recovery) and checkpoints contend here; the single writer never waits on readers.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The size the WAL file is cut back to when SQLite rewinds it.
const WAL_SIZE_LIMIT: i64 = 64 << 20;

/// Page cache per connection, in KiB (SQLite's negative `cache_size`).
const WRITER_CACHE_KIB: i64 = 64 * 1024;
const READER_CACHE_KIB: i64 = 16 * 1024;

/// The revisions recorded in `meta`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Meta {
    pub current: Revision,
    pub compacted: Revision,
}

pub(super) fn read_meta(conn: &Connection) -> rusqlite::Result<Meta> {
    conn.prepare_cached("SELECT current_revision, compacted_revision FROM meta WHERE id = 0")?
        .query_row([], |row| {
            Ok(Meta {
                current: row.get(0)?,
                compacted: row.get(1)?,
            })
        })
}

/// Opens (creating if needed) the database for the one writer: WAL journal, `synchronous =
/// FULL` so a commit returns only once it is durable, and the schema in place. Returns the
/// revisions recorded on disk, which are the truth after any crash.
pub(super) fn open_writer(path: &Path) -> Result<(Connection, Meta)> {
    let context = || format!("open sqlite store {}", path.display());
    let fail = |source: rusqlite::Error| StoreError::backend(context(), source);
    let mut conn = Connection::open(path).map_err(fail)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(fail)?;
    let journal_mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(fail)?;
    if !journal_mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::backend(
            context(),
            format!("the journal mode stayed {journal_mode:?} instead of wal"),
        ));
    }
    // Checkpoints run on their own thread (see `checkpoint`), not inside commits.
    conn.execute_batch(&format!(
        "PRAGMA synchronous = FULL;
         PRAGMA cache_size = -{WRITER_CACHE_KIB};
         PRAGMA wal_autocheckpoint = 0;
         PRAGMA journal_size_limit = {WAL_SIZE_LIMIT};"
    ))
    .map_err(fail)?;
    conn.set_prepared_statement_cache_capacity(32);

    let found_version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(fail)?;
    if found_version > SCHEMA_VERSION {
        return Err(StoreError::backend(
            context(),
            format!(
                "the file has schema version {found_version}; this build knows up to {SCHEMA_VERSION}"
            ),
        ));
    }
    let setup = conn.transaction().map_err(fail)?;
    setup.execute_batch(SCHEMA).map_err(fail)?;
    setup
        .execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))
        .map_err(fail)?;
    setup.commit().map_err(fail)?;

    let mut meta = read_meta(&conn).map_err(fail)?;
    // `meta` is written with every batch, so this only matters for a file whose meta row
    // was lost some other way; never hand out a revision that the log already holds.
    let newest_logged: Option<Revision> = conn
        .query_row("SELECT MAX(revision) FROM log", [], |row| row.get(0))
        .map_err(fail)?;
    meta.current = meta.current.max(newest_logged.unwrap_or(0));
    Ok((conn, meta))
}

/// Opens a read-only connection. In WAL mode it reads the last committed snapshot and never
/// blocks the writer.
pub(super) fn open_reader(path: &Path) -> Result<Connection> {
    let fail = |source: rusqlite::Error| {
        StoreError::backend(format!("open sqlite reader {}", path.display()), source)
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(fail)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(fail)?;
    conn.execute_batch(&format!("PRAGMA cache_size = -{READER_CACHE_KIB};"))
        .map_err(fail)?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

/// Opens the connection that runs checkpoints. It must sync the database file before the
/// WAL is rewound, hence `synchronous = FULL` here too.
pub(super) fn open_checkpointer(path: &Path) -> Result<Connection> {
    let fail = |source: rusqlite::Error| {
        StoreError::backend(
            format!("open sqlite checkpointer {}", path.display()),
            source,
        )
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(fail)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(fail)?;
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA wal_autocheckpoint = 0;")
        .map_err(fail)?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_file_starts_at_revision_zero_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let (conn, meta) = open_writer(&path).unwrap();
        assert_eq!(
            meta,
            Meta {
                current: 0,
                compacted: 0
            }
        );
        conn.execute(
            "UPDATE meta SET current_revision = 7, compacted_revision = 3",
            [],
        )
        .unwrap();
        drop(conn);
        let (_conn, meta) = open_writer(&path).unwrap();
        assert_eq!(
            meta,
            Meta {
                current: 7,
                compacted: 3
            }
        );
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA user_version = 99").unwrap();
        drop(conn);
        assert!(open_writer(&path).is_err());
    }
}
