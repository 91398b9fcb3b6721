//! Container logs as files in the CRI format (one `<RFC 3339 time> stdout|stderr F|P
//! <text>` line per line the container wrote, `P` for the pieces of an over-long line), as
//! kubelet keeps them: written while an instance runs, read back for `kubectl logs` with
//! its options (`--follow`, `--tail`, `--since`, `--timestamps`, `--limit-bytes`).

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use jiff::Timestamp;
use ronghe_agent::LogOptions;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::error::{Error, Result};

/// Longer lines are split into pieces of this size (containerd's default).
const MAX_LINE: usize = 16 * 1024;

/// How far an instance's log has been written, for readers that follow it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub written: u64,
    /// The instance's output has closed: nothing more will be written.
    pub ended: bool,
}

/// One line (or piece) read from a container's output.
struct Line {
    stream: &'static str,
    text: Vec<u8>,
    complete: bool,
    at: Timestamp,
}

/// Copies an instance's standard output and error into the log file at `path` until both
/// close. The task ends when everything is written; the receiver follows its progress.
pub fn capture(
    path: &Path,
    stdout: impl AsyncRead + Unpin + Send + 'static,
    stderr: impl AsyncRead + Unpin + Send + 'static,
) -> Result<(JoinHandle<()>, watch::Receiver<Progress>)> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(Error::io("create", path))?;
    let (progress, follow) = watch::channel(Progress::default());
    let (lines, mut received) = mpsc::channel::<Line>(64);
    tokio::spawn(read_lines(stdout, "stdout", lines.clone()));
    tokio::spawn(read_lines(stderr, "stderr", lines));
    let shown = path.display().to_string();
    let writer = tokio::spawn(async move {
        while let Some(line) = received.recv().await {
            let tag = if line.complete { "F" } else { "P" };
            let mut record = format!("{} {} {tag} ", line.at, line.stream).into_bytes();
            record.extend_from_slice(&line.text);
            record.push(b'\n');
            // Appending a line to a local file does not block long enough to need a thread.
            if let Err(error) = file.write_all(&record) {
                tracing::warn!(log = %shown, %error, "writing a container log failed");
                continue;
            }
            progress.send_modify(|p| p.written += record.len() as u64);
        }
        progress.send_modify(|p| p.ended = true);
    });
    Ok((writer, follow))
}

/// Reads one stream line by line (pieces of at most [`MAX_LINE`]).
async fn read_lines(
    reader: impl AsyncRead + Unpin,
    stream: &'static str,
    lines: mpsc::Sender<Line>,
) {
    let mut reader = BufReader::with_capacity(MAX_LINE, reader);
    let mut line = Vec::new();
    while let Ok(buffer) = reader.fill_buf().await {
        if buffer.is_empty() {
            break;
        }
        let window = &buffer[..buffer.len().min(MAX_LINE - line.len())];
        let (taken, complete) = match window.iter().position(|b| *b == b'\n') {
            Some(end) => {
                line.extend_from_slice(&window[..end]);
                (end + 1, true)
            }
            None => {
                line.extend_from_slice(window);
                (window.len(), false)
            }
        };
        reader.consume(taken);
        if complete || line.len() >= MAX_LINE {
            let text = std::mem::take(&mut line);
            let piece = Line {
                stream,
                text,
                complete,
                at: Timestamp::now(),
            };
            if lines.send(piece).await.is_err() {
                return;
            }
        }
    }
    if !line.is_empty() {
        let _ = lines
            .send(Line {
                stream,
                text: line,
                complete: true,
                at: Timestamp::now(),
            })
            .await;
    }
}

/// A log file as `kubectl logs` shows it. With `follow` and a `progress` of an instance
/// still running, the stream goes on until the instance's output closes.
pub async fn read(
    path: PathBuf,
    options: &LogOptions,
    progress: Option<watch::Receiver<Progress>>,
) -> Result<BoxStream<'static, std::io::Result<Bytes>>> {
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(Error::io("open", &path))?;
    let options = options.clone();
    let (sender, receiver) = mpsc::channel::<std::io::Result<Bytes>>(16);
    tokio::spawn(async move {
        if let Err(error) = stream_file(file, &options, progress, &sender).await {
            let _ = sender.send(Err(error)).await;
        }
    });
    Ok(
        futures::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|item| (item, receiver))
        })
        .boxed(),
    )
}

async fn stream_file(
    file: tokio::fs::File,
    options: &LogOptions,
    mut progress: Option<watch::Receiver<Progress>>,
    sender: &mpsc::Sender<std::io::Result<Bytes>>,
) -> std::io::Result<()> {
    let cutoff = options.since_seconds.and_then(|seconds| {
        Timestamp::now()
            .checked_sub(jiff::SignedDuration::from_secs(seconds))
            .ok()
    });
    let mut out = Output {
        sender,
        timestamps: options.timestamps,
        cutoff,
        remaining: options.limit_bytes.unwrap_or(usize::MAX),
    };
    let mut reader = BufReader::new(file);
    let mut line = Vec::new();
    if let Some(tail) = options.tail_lines {
        let mut last: VecDeque<Vec<u8>> = VecDeque::with_capacity(tail.min(4096));
        loop {
            line.clear();
            let read = reader.read_until(b'\n', &mut line).await?;
            if read == 0 || !line.ends_with(b"\n") {
                break;
            }
            if tail > 0 {
                if last.len() == tail {
                    last.pop_front();
                }
                last.push_back(line.clone());
            }
        }
        for record in &last {
            if !out.emit(record).await {
                return Ok(());
            }
        }
    }
    loop {
        let read = reader.read_until(b'\n', &mut line).await?;
        if line.ends_with(b"\n") {
            if !out.emit(&line).await {
                return Ok(());
            }
            line.clear();
            continue;
        }
        if read > 0 {
            continue;
        }
        // At the end of what is written so far.
        let Some(watching) = progress.as_mut().filter(|_| options.follow) else {
            return Ok(());
        };
        if watching.borrow_and_update().ended {
            // One more pass picks up what was written before the end.
            let read = reader.read_until(b'\n', &mut line).await?;
            if read == 0 {
                return Ok(());
            }
            continue;
        }
        tokio::select! {
            changed = watching.changed() => if changed.is_err() { progress = None; },
            () = sender.closed() => return Ok(()),
        }
    }
}

/// Formats and sends log records as the options ask.
struct Output<'a> {
    sender: &'a mpsc::Sender<std::io::Result<Bytes>>,
    timestamps: bool,
    cutoff: Option<Timestamp>,
    remaining: usize,
}

impl Output<'_> {
    /// Sends one record; false once nothing more should be sent.
    async fn emit(&mut self, record: &[u8]) -> bool {
        let Some(parsed) = parse(record) else {
            return true;
        };
        if let Some(cutoff) = self.cutoff
            && parsed.at.parse::<Timestamp>().is_ok_and(|at| at < cutoff)
        {
            return true;
        }
        let mut text = Vec::with_capacity(parsed.text.len() + 40);
        if self.timestamps {
            text.extend_from_slice(parsed.at.as_bytes());
            text.push(b' ');
        }
        text.extend_from_slice(parsed.text);
        if parsed.complete {
            text.push(b'\n');
        }
        let last = text.len() >= self.remaining;
        text.truncate(self.remaining);
        self.remaining -= text.len();
        self.sender.send(Ok(Bytes::from(text))).await.is_ok() && !last
    }
}

struct Record<'a> {
    at: &'a str,
    text: &'a [u8],
    complete: bool,
}

/// Splits a CRI log line (`TIME STREAM TAG TEXT\n`).
fn parse(record: &[u8]) -> Option<Record<'_>> {
    let record = record.strip_suffix(b"\n").unwrap_or(record);
    let mut parts = record.splitn(4, |b| *b == b' ');
    let at = std::str::from_utf8(parts.next()?).ok()?;
    let _stream = parts.next()?;
    let tag = parts.next()?;
    let text = parts.next().unwrap_or_default();
    Some(Record {
        at,
        text,
        complete: tag != b"P",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;

    async fn collect(path: &Path, options: LogOptions) -> String {
        let stream = read(path.to_path_buf(), &options, None)
            .await
            .expect("read");
        let chunks: Vec<Bytes> = stream.try_collect().await.expect("chunks");
        String::from_utf8(chunks.concat()).expect("utf-8")
    }

    #[tokio::test]
    async fn captured_output_reads_back_with_the_options() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("0.log");
        let (stdout, stdout_writer) = tokio::io::simplex(1024);
        let (stderr, stderr_writer) = tokio::io::simplex(1024);
        let (writer, _) = capture(&path, stdout, stderr).expect("capture");
        {
            use tokio::io::AsyncWriteExt;
            let mut out = stdout_writer;
            out.write_all(b"one\ntwo\nthree\nno newline")
                .await
                .expect("write");
            out.shutdown().await.expect("close");
            let mut err = stderr_writer;
            err.shutdown().await.expect("close");
        }
        writer.await.expect("writer");
        let raw = std::fs::read_to_string(&path).expect("log");
        assert!(raw.lines().all(|l| l.contains(" stdout F ")), "{raw}");
        assert_eq!(
            collect(&path, LogOptions::default()).await,
            "one\ntwo\nthree\nno newline\n"
        );
        let tail = LogOptions {
            tail_lines: Some(2),
            ..LogOptions::default()
        };
        assert_eq!(collect(&path, tail).await, "three\nno newline\n");
        let limit = LogOptions {
            limit_bytes: Some(5),
            ..LogOptions::default()
        };
        assert_eq!(collect(&path, limit).await, "one\nt");
        let stamped = collect(
            &path,
            LogOptions {
                timestamps: true,
                tail_lines: Some(1),
                ..LogOptions::default()
            },
        )
        .await;
        assert!(stamped.ends_with("Z no newline\n"), "{stamped}");
        let recent = LogOptions {
            since_seconds: Some(60),
            ..LogOptions::default()
        };
        assert_eq!(collect(&path, recent).await.lines().count(), 4);
    }

    #[test]
    fn long_lines_are_split_into_pieces() {
        let record = b"2024-01-01T00:00:00Z stdout P abc\n";
        let parsed = parse(record).expect("a record");
        assert!(!parsed.complete);
        assert_eq!(parsed.text, b"abc");
    }
}
