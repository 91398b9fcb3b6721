//! Checkpoints of the write-ahead log, moved off the writer's commit path.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its threshold, which
//! stalls that batch (and every caller in it) for a copy of the WAL plus an fsync of the
//! database file. Instead the writer turns automatic checkpoints off and nudges this
//! thread, which runs PASSIVE checkpoints on its own connection concurrently with writes.
//!
//! A passive checkpoint never blocks the writer, but under sustained writes it may never
//! catch up with the end of the WAL, and SQLite only rewinds the WAL once a checkpoint has
//! caught up. So when the WAL grows past a limit, the checkpointer marks the checkpoint as
//! overdue, and the writer finishes it between two batches.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::schema::open_checkpointer;
use crate::{Result, StoreError};

/// Wake the checkpointer after roughly this much was written (about 250 WAL pages).
const WAKE_AFTER_BYTES: usize = 1 << 20;
/// Checkpoint what is there at least this often, so an idle store's WAL drains.
const IDLE_INTERVAL: Duration = Duration::from_secs(1);
/// Past this many WAL pages (64 MiB at 4 KiB pages), the WAL must be rewound.
const OVERDUE_FRAMES: i64 = 16_384;
/// How many times the writer tries a non-blocking checkpoint before a blocking one.
const PASSIVE_CATCH_UPS: u32 = 8;

/// The writer's handle on the checkpointer thread. Dropping it stops the thread.
pub(super) struct Checkpointer {
    wake: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
    /// Set by the checkpointer thread when the WAL is past `OVERDUE_FRAMES`, cleared by the
    /// writer once it has finished a checkpoint.
    overdue: Arc<AtomicBool>,
    bytes_since_wake: usize,
    failed_catch_ups: u32,
}

impl Checkpointer {
    pub fn start(path: &Path) -> Result<Self> {
        let conn = open_checkpointer(path)?;
        let (wake, woken) = sync_channel(1);
        let overdue = Arc::new(AtomicBool::new(false));
        let thread_overdue = Arc::clone(&overdue);
        let thread = std::thread::Builder::new()
            .name("ronghe-store-checkpoint".to_owned())
            .spawn(move || run(conn, woken, &thread_overdue))
            .map_err(|error| StoreError::backend("start the sqlite checkpoint thread", error))?;
        Ok(Checkpointer {
            wake: Some(wake),
            thread: Some(thread),
            overdue,
            bytes_since_wake: 0,
            failed_catch_ups: 0,
        })
    }

    /// Notes that a batch of about `bytes` was committed.
    pub fn committed(&mut self, bytes: usize) {
        self.bytes_since_wake += bytes;
        if self.bytes_since_wake < WAKE_AFTER_BYTES {
            return;
        }
        self.bytes_since_wake = 0;
        if let Some(wake) = &self.wake {
            match wake.try_send(()) {
                // Full: a wake-up is already pending, which covers this one.
                Ok(()) | Err(TrySendError::Full(())) => {}
                Err(TrySendError::Disconnected(())) => {
                    tracing::error!("the sqlite checkpoint thread is gone");
                }
            }
        }
    }

    /// When the WAL has grown too long, checkpoints on the writer's own connection right
    /// after a batch: the background passes copied most of the WAL, so this copies the
    /// rest, and the next batch rewinds the WAL. PASSIVE first, so it waits on neither a
    /// background pass nor readers still on older snapshots, and is simply tried again
    /// after the next batch; if that keeps failing (steady reads can keep some old snapshot
    /// open at every attempt), FULL, which waits for them.
    pub fn catch_up(&mut self, writer: &Connection) {
        if !self.overdue.load(Ordering::Acquire) {
            return;
        }
        let mode = if self.failed_catch_ups < PASSIVE_CATCH_UPS {
            "PASSIVE"
        } else {
            "FULL"
        };
        let started = Instant::now();
        match checkpoint(writer, mode) {
            Ok((busy, frames, copied)) => {
                let caught_up = !busy && copied == frames;
                if caught_up {
                    self.overdue.store(false, Ordering::Release);
                    self.failed_catch_ups = 0;
                } else {
                    self.failed_catch_ups += 1;
                }
                tracing::debug!(
                    mode,
                    caught_up,
                    frames,
                    copied,
                    micros = started.elapsed().as_micros() as u64,
                    "writer checkpointed a long wal"
                );
            }
            Err(error) => {
                self.failed_catch_ups += 1;
                tracing::warn!(mode, %error, "writer checkpoint failed");
            }
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.wake.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the sqlite checkpoint thread panicked");
        }
    }
}

/// Runs `PRAGMA wal_checkpoint(mode)`: whether it was blocked, the WAL's length in pages,
/// and how many of them are now in the database file.
fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<(bool, i64, i64)> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
        Ok((row.get(0)?, row.get(1)?, row.get(2)?))
    })
}

fn run(conn: Connection, woken: Receiver<()>, overdue: &AtomicBool) {
    // Until the writer hangs up: each wake-up, or each idle interval, is one pass.
    while let Ok(()) | Err(RecvTimeoutError::Timeout) = woken.recv_timeout(IDLE_INTERVAL) {
        match checkpoint(&conn, "PASSIVE") {
            Ok((_, frames, copied)) => {
                tracing::trace!(frames, copied, "wal checkpoint");
                // Even a pass that copied every page leaves a long WAL if the writer appended
                // to it meanwhile, as it does under steady load: only a checkpoint that
                // catches up between two batches lets SQLite rewind the WAL.
                if frames > OVERDUE_FRAMES {
                    overdue.store(true, Ordering::Release);
                }
            }
            Err(error) => tracing::warn!(%error, "wal checkpoint failed"),
        }
    }
}
