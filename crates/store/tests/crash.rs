//! Crash test of the SQLite store: a child process (this test binary, re-executed) writes
//! as fast as it can from several tasks and prints each write it got acknowledged; the
//! parent SIGKILLs it mid-stream, several rounds over the same file, then checks that
//! every acknowledged write is there with exactly the bytes written, that revisions have no
//! holes, and that the store still takes writes.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::StreamExt;
use ronghe_store::{ListOptions, Revision, SqliteStore, Store};

/// Set in the child's environment: the database file to write to.
const CHILD_DB_ENV: &str = "RONGHE_STORE_CRASH_CHILD_DB";
/// Set in the child's environment: the round number, which keeps keys distinct.
const CHILD_ROUND_ENV: &str = "RONGHE_STORE_CRASH_CHILD_ROUND";
const CHILD_TEST: &str = "crash_child_writer";
const ROUNDS: u32 = 4;
const CHILD_TASKS: usize = 8;
/// How long the parent waits for the child's next line before giving up on it.
const STALL_DEADLINE: Duration = Duration::from_secs(30);

// ---- Self-checking values ----

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A value of 1.5–6 KB that names its key and generation and ends with a checksum of
/// everything before it, so a torn, mixed-up or misplaced value is detected.
fn make_value(key: &str, generation: u32) -> Bytes {
    let seed = fnv1a(format!("{key}#{generation}").as_bytes());
    let length = 1500 + (seed % 4500) as usize;
    let mut body = format!("{key}|{generation}|").into_bytes();
    let mut state = seed | 1;
    while body.len() < length {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        body.push(b'a' + (state % 26) as u8);
    }
    let checksum = fnv1a(&body);
    body.extend_from_slice(format!("|{checksum:016x}").as_bytes());
    Bytes::from(body)
}

/// The key and generation a value names, if it is whole.
fn check_value(value: &[u8]) -> Result<(String, u32), String> {
    let text = std::str::from_utf8(value).map_err(|_| "not utf-8".to_owned())?;
    let (body, checksum) = text.rsplit_once('|').ok_or("no checksum")?;
    if format!("{:016x}", fnv1a(body.as_bytes())) != checksum {
        return Err(format!(
            "checksum mismatch in a value of {} bytes",
            value.len()
        ));
    }
    let mut fields = body.splitn(3, '|');
    let key = fields.next().ok_or("no key")?.to_owned();
    let generation = fields
        .next()
        .and_then(|field| field.parse().ok())
        .ok_or("no generation")?;
    if make_value(&key, generation) != value {
        return Err(format!("value of {key} differs from what was written"));
    }
    Ok((key, generation))
}

// ---- The child ----

#[test]
#[ignore = "the child half of sqlite_survives_sigkill, which runs it"]
fn crash_child_writer() {
    let (Ok(path), Ok(round)) = (std::env::var(CHILD_DB_ENV), std::env::var(CHILD_ROUND_ENV))
    else {
        eprintln!("{CHILD_TEST}: not started by sqlite_survives_sigkill; nothing to do");
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let store = Arc::new(SqliteStore::open(Path::new(&path)).expect("open the store"));
        let mut tasks = tokio::task::JoinSet::new();
        for task in 0..CHILD_TASKS {
            let store = Arc::clone(&store);
            let round = round.clone();
            tasks.spawn(async move {
                for i in 0.. {
                    let key = format!("/crash/r{round}/t{task}/{i:06}");
                    let created = store
                        .create(&key, make_value(&key, 0))
                        .await
                        .expect("create");
                    acknowledge(&key, created.mod_revision, 0);
                    if i % 4 == 0 {
                        let updated = store
                            .update(&key, make_value(&key, 1), created.mod_revision)
                            .await
                            .expect("update");
                        acknowledge(&key, updated.mod_revision, 1);
                    }
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.expect("writer task");
        }
    });
}

/// One line per acknowledged write, in one `write` call (atomic on a pipe), flushed.
fn acknowledge(key: &str, revision: Revision, generation: u32) {
    let line = format!("ack {key} {revision} {generation}\n");
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(line.as_bytes()).expect("write to stdout");
    stdout.flush().expect("flush stdout");
}

// ---- The parent ----

#[derive(Default)]
struct Acknowledged {
    /// Per key: the revision and generation of its newest acknowledged write.
    latest: BTreeMap<String, (Revision, u32)>,
    /// Per key: the revision of its acknowledged create.
    created: BTreeMap<String, Revision>,
    revisions: BTreeSet<Revision>,
}

impl Acknowledged {
    /// Records an `ack` line; returns its revision, or `None` for any other line.
    fn record(&mut self, line: &str) -> Option<Revision> {
        let mut fields = line.strip_prefix("ack ")?.split(' ');
        let key = fields.next()?.to_owned();
        let revision: Revision = fields.next()?.parse().ok()?;
        let generation: u32 = fields.next()?.parse().ok()?;
        assert!(
            self.revisions.insert(revision),
            "revision {revision} acknowledged twice"
        );
        if generation == 0 {
            self.created.insert(key.clone(), revision);
        }
        let latest = self.latest.entry(key).or_insert((revision, generation));
        if revision > latest.0 {
            *latest = (revision, generation);
        }
        Some(revision)
    }
}

/// A small xorshift generator seeded from the clock; the seed is printed so that a
/// failing run can be told apart.
fn kill_points() -> Vec<usize> {
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_nanos() as u64)
        .unwrap_or(7)
        | 1;
    println!("crash test seed {seed}");
    let mut state = seed;
    (0..ROUNDS)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            200 + (state % 400) as usize
        })
        .collect()
}

fn spawn_line_reader(stdout: std::process::ChildStdout) -> Receiver<String> {
    let (lines, received) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    received
}

/// Runs one child until it has acknowledged `kill_after` writes, SIGKILLs it, and records
/// every line it got out before dying.
fn run_round(db: &Path, round: u32, kill_after: usize, acked: &mut Acknowledged) {
    let before = acked.revisions.last().copied().unwrap_or(0);
    let mut child = Command::new(std::env::current_exe().expect("own path"))
        .args(["--exact", CHILD_TEST, "--ignored", "--nocapture"])
        .args(["--test-threads", "1"])
        .env(CHILD_DB_ENV, db)
        .env(CHILD_ROUND_ENV, round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the child");
    let lines = spawn_line_reader(child.stdout.take().expect("piped stdout"));
    let started = Instant::now();
    let mut count = 0;
    let mut killed = false;
    loop {
        match lines.recv_timeout(STALL_DEADLINE) {
            Ok(line) => {
                if let Some(revision) = acked.record(&line) {
                    assert!(
                        revision > before,
                        "revision {revision} reused after a crash"
                    );
                    count += 1;
                }
                if count >= kill_after && !killed {
                    child.kill().expect("SIGKILL the child");
                    killed = true;
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                panic!("round {round}: the child stalled after {count} acknowledgements");
            }
        }
    }
    let status = child.wait().expect("reap the child");
    assert!(
        killed,
        "round {round}: the child exited ({status}) after only {count} acknowledgements"
    );
    println!(
        "round {round}: killed after {count} acknowledged writes in {:?}",
        started.elapsed()
    );
}

#[test]
fn sqlite_survives_sigkill() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let db = dir.path().join("store.db");
    let mut acked = Acknowledged::default();
    for (round, kill_after) in (0..ROUNDS).zip(kill_points()) {
        run_round(&db, round, kill_after, &mut acked);
    }
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(verify(&db, &acked));
}

async fn verify(db: &Path, acked: &Acknowledged) {
    let store = SqliteStore::open(db).expect("reopen after the crashes");
    let current = store.current_revision().await.expect("current revision");
    let newest_acked = acked.revisions.last().copied().unwrap_or(0);
    assert!(
        current >= newest_acked,
        "revision {current} < acknowledged {newest_acked}"
    );

    for (key, (revision, generation)) in &acked.latest {
        let stored = store
            .get(key)
            .await
            .expect("get")
            .unwrap_or_else(|| panic!("acknowledged key {key} is missing"));
        let (named_key, stored_generation) =
            check_value(&stored.value).unwrap_or_else(|error| panic!("{key}: {error}"));
        assert_eq!(&named_key, key, "a value landed under another key");
        assert!(stored.mod_revision >= *revision, "{key} went back in time");
        if stored.mod_revision == *revision {
            assert_eq!(stored_generation, *generation, "{key}: wrong value");
        }
        if let Some(created) = acked.created.get(key) {
            assert_eq!(stored.create_revision, *created, "{key}: create revision");
        }
    }

    // Every committed write, acknowledged or not, is whole, and revisions have no holes.
    let listed = store
        .list(ListOptions {
            prefix: "/crash/".to_owned(),
            ..Default::default()
        })
        .await
        .expect("list");
    for item in &listed.items {
        let (named_key, _) =
            check_value(&item.value).unwrap_or_else(|error| panic!("{}: {error}", item.key));
        assert_eq!(named_key, item.key);
    }
    let mut history = store.watch("", 0).await.expect("watch from the start");
    for expected in 1..=current {
        let event = tokio::time::timeout(Duration::from_secs(10), history.next())
            .await
            .expect("the replay stalled")
            .expect("the replay ended early")
            .expect("the replay failed");
        assert_eq!(event.revision, expected, "a hole in the revisions");
        if let Some(value) = &event.value {
            check_value(value).unwrap_or_else(|error| panic!("{}: {error}", event.key));
        }
    }

    let after = store
        .create("/crash/after", make_value("/crash/after", 0))
        .await
        .expect("the store still takes writes");
    assert_eq!(after.mod_revision, current + 1);
    println!(
        "verified {} acknowledged writes over {} keys; {} revisions on disk",
        acked.revisions.len(),
        acked.latest.len(),
        current
    );
}
