//! A small QMP client: JSON lines over QEMU's monitor socket. It reads the greeting,
//! negotiates capabilities, matches answers to commands by `id` and hands events
//! (SHUTDOWN, RESET, STOP, RESUME, POWERDOWN ...) to subscribers. The connection is one
//! reader task; a QEMU that exits closes it, which fails the commands in flight.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{broadcast, oneshot};

/// How long a command may take before it is given up on (migration runs in the
/// background, so no command here takes long).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// Events kept for a slow subscriber.
const EVENT_BUFFER: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    #[error("cannot connect to QMP at {}", path.display())]
    Connect {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("QMP at {} sent no greeting: {line:?}", path.display())]
    Greeting { path: PathBuf, line: String },
    #[error("the QMP connection is closed (QEMU exited)")]
    Closed,
    #[error("QMP I/O failed")]
    Io(#[source] io::Error),
    #[error("QMP command {command} failed: {class}: {description}")]
    Command {
        command: String,
        class: String,
        description: String,
    },
    #[error("QMP command {command} got no answer in {timeout:?}")]
    Timeout { command: String, timeout: Duration },
}

/// An asynchronous event QEMU sent.
#[derive(Clone, Debug, PartialEq)]
pub struct QmpEvent {
    pub event: String,
    pub data: Value,
}

type Answer = Result<Value, (String, String)>;
type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Answer>>>>;

/// One QMP connection.
pub struct Qmp {
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    pending: Pending,
    next_id: AtomicU64,
    events: broadcast::Sender<QmpEvent>,
    closed: Arc<AtomicBool>,
}

impl std::fmt::Debug for Qmp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qmp")
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Qmp {
    /// Connects to the socket at `path` (once: the caller retries while QEMU starts),
    /// reads the greeting and leaves capabilities negotiation. The receiver gets every
    /// event from the first on.
    pub async fn connect(path: &Path) -> Result<(Qmp, broadcast::Receiver<QmpEvent>), QmpError> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|source| QmpError::Connect {
                path: path.to_path_buf(),
                source,
            })?;
        let (read, write) = stream.into_split();
        let mut reader = BufReader::new(read);
        let mut greeting = String::new();
        tokio::time::timeout(COMMAND_TIMEOUT, reader.read_line(&mut greeting))
            .await
            .map_err(|_| QmpError::Greeting {
                path: path.to_path_buf(),
                line: String::new(),
            })?
            .map_err(QmpError::Io)?;
        let parsed: Value = serde_json::from_str(&greeting).unwrap_or(Value::Null);
        if parsed.get("QMP").is_none() {
            return Err(QmpError::Greeting {
                path: path.to_path_buf(),
                line: greeting.trim().to_owned(),
            });
        }
        let (events, first) = broadcast::channel(EVENT_BUFFER);
        let qmp = Qmp {
            writer: tokio::sync::Mutex::new(write),
            pending: Arc::new(Mutex::new(HashMap::new())),
            next_id: AtomicU64::new(1),
            events: events.clone(),
            closed: Arc::new(AtomicBool::new(false)),
        };
        tokio::spawn(read_loop(
            reader,
            qmp.pending.clone(),
            events,
            qmp.closed.clone(),
        ));
        qmp.execute("qmp_capabilities", None).await?;
        Ok((qmp, first))
    }

    /// Events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<QmpEvent> {
        self.events.subscribe()
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Runs a command; its `return` value.
    pub async fn execute(
        &self,
        command: &str,
        arguments: Option<Value>,
    ) -> Result<Value, QmpError> {
        if self.is_closed() {
            return Err(QmpError::Closed);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (answer, answered) = oneshot::channel();
        lock(&self.pending).insert(id, answer);
        let mut message = json!({"execute": command, "id": id});
        if let Some(arguments) = arguments {
            message["arguments"] = arguments;
        }
        tracing::debug!(%command, id, "QMP command");
        let mut line = message.to_string();
        line.push('\n');
        let written = self.writer.lock().await.write_all(line.as_bytes()).await;
        if let Err(error) = written {
            lock(&self.pending).remove(&id);
            return Err(if error.kind() == io::ErrorKind::BrokenPipe {
                QmpError::Closed
            } else {
                QmpError::Io(error)
            });
        }
        match tokio::time::timeout(COMMAND_TIMEOUT, answered).await {
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err((class, description)))) => Err(QmpError::Command {
                command: command.to_owned(),
                class,
                description,
            }),
            // The reader dropped the sender: the connection closed.
            Ok(Err(_)) => Err(QmpError::Closed),
            Err(_) => {
                lock(&self.pending).remove(&id);
                Err(QmpError::Timeout {
                    command: command.to_owned(),
                    timeout: COMMAND_TIMEOUT,
                })
            }
        }
    }

    /// QEMU's run state (`running`, `paused`, `inmigrate`, `postmigrate`, `shutdown` ...).
    pub async fn status(&self) -> Result<String, QmpError> {
        let value = self.execute("query-status", None).await?;
        Ok(value["status"].as_str().unwrap_or_default().to_owned())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn read_loop(
    mut reader: BufReader<OwnedReadHalf>,
    pending: Pending,
    events: broadcast::Sender<QmpEvent>,
    closed: Arc<AtomicBool>,
) {
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line).await {
            Ok(0) => break,
            Ok(_) => {}
            Err(error) => {
                tracing::debug!(%error, "reading QMP failed");
                break;
            }
        }
        let message: Value = match serde_json::from_str(&line) {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(%error, line = %line.trim(), "QMP sent something that is not JSON");
                continue;
            }
        };
        if let Some(event) = message["event"].as_str() {
            tracing::debug!(%event, "QMP event");
            // Nobody listening is fine.
            let _ = events.send(QmpEvent {
                event: event.to_owned(),
                data: message["data"].clone(),
            });
            continue;
        }
        let Some(id) = message["id"].as_u64() else {
            continue;
        };
        let Some(answer) = lock(&pending).remove(&id) else {
            continue;
        };
        let result = match message.get("error") {
            Some(error) => Err((
                error["class"].as_str().unwrap_or("GenericError").to_owned(),
                error["desc"].as_str().unwrap_or_default().to_owned(),
            )),
            None => Ok(message["return"].clone()),
        };
        // A caller that gave up (timed out) is fine.
        let _ = answer.send(result);
    }
    closed.store(true, Ordering::SeqCst);
    // Dropping the senders fails every command in flight with `Closed`.
    lock(&pending).clear();
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::UnixListener;

    /// A fake QEMU that greets, answers commands in order (echoing their ids), sends an
    /// event, then hangs up.
    #[tokio::test]
    async fn negotiates_answers_by_id_and_reports_events_and_close() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let (read, mut write) = stream.into_split();
            let mut reader = BufReader::new(read);
            write
                .write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\n")
                .await
                .unwrap();
            for answer in [json!({}), json!({"status": "running", "running": true})] {
                let mut line = String::new();
                reader.read_line(&mut line).await.unwrap();
                let command: Value = serde_json::from_str(&line).unwrap();
                let reply = json!({"return": answer, "id": command["id"]});
                write
                    .write_all(format!("{reply}\n").as_bytes())
                    .await
                    .unwrap();
            }
            let mut line = String::new();
            reader.read_line(&mut line).await.unwrap();
            let command: Value = serde_json::from_str(&line).unwrap();
            assert_eq!(command["execute"], "stop");
            write
                .write_all(b"{\"event\": \"STOP\", \"data\": {}}\n")
                .await
                .unwrap();
            let reply =
                json!({"error": {"class": "GenericError", "desc": "nope"}, "id": command["id"]});
            write
                .write_all(format!("{reply}\n").as_bytes())
                .await
                .unwrap();
            let mut rest = Vec::new();
            let _ = reader.read_to_end(&mut rest).await;
        });
        let (qmp, mut events) = Qmp::connect(&path).await.unwrap();
        assert_eq!(qmp.status().await.unwrap(), "running");
        let error = qmp.execute("stop", None).await.unwrap_err();
        assert!(
            matches!(error, QmpError::Command { ref description, .. } if description == "nope")
        );
        assert_eq!(events.recv().await.unwrap().event, "STOP");
        server.abort();
        let _ = server.await;
        // The server task is gone and its socket with it.
        tokio::time::timeout(Duration::from_secs(5), async {
            while !qmp.is_closed() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap();
        assert!(matches!(
            qmp.execute("cont", None).await,
            Err(QmpError::Closed)
        ));
    }
}
