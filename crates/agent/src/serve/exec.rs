//! One `exec` session over an upgraded WebSocket: the client's stdin and resizes go to the
//! driver, the command's stdout and stderr come back as channel messages, and when the
//! command ends its exit code travels on the error stream before a normal close (which
//! client-go needs to see its streams end cleanly).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use bytes::Bytes;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;

use super::channel::{self, ClientFrame};
use crate::pods::{ExecRequest, PodDriver, PodRef};

/// How many messages may wait in each direction before the other side is slowed down.
const STREAM_BUFFER: usize = 16;
/// How long the client has to answer the closing handshake.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// The WebSocket close code for a normal end.
const NORMAL_CLOSURE: u16 = 1000;

/// What the client asked to run, and where.
#[derive(Clone, Debug)]
pub(super) struct ExecSession {
    pub pod: PodRef,
    pub container: String,
    pub command: Vec<String>,
    pub tty: bool,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

/// Runs `session` over `socket`, whose subprotocol is `protocol` ([`channel::V5`] or
/// [`channel::V4`]), until the command ends or the client goes away (which cancels the
/// command).
pub(super) async fn run(
    socket: WebSocket,
    protocol: &'static str,
    driver: Arc<dyn PodDriver>,
    session: ExecSession,
) {
    let (mut sink, stream) = socket.split();
    let (stdin_sender, stdin) = optional_channel::<Bytes>(session.stdin);
    let (resize_sender, resize) = optional_channel::<(u16, u16)>(session.tty);
    let (stdout_sender, mut stdout) = optional_channel::<Bytes>(session.stdout);
    // With a terminal, the command's stderr is its stdout.
    let (stderr_sender, mut stderr) = optional_channel::<Bytes>(session.stderr && !session.tty);
    let mut reader = tokio::spawn(read_client(stream, protocol, stdin_sender, resize_sender));
    let request = ExecRequest {
        command: session.command.clone(),
        tty: session.tty,
        stdin,
        stdout: stdout_sender,
        stderr: stderr_sender,
        resize,
    };
    let command = driver.exec(&session.pod, &session.container, request);
    tokio::pin!(command);
    let mut exit: Option<anyhow::Result<i32>> = None;
    let mut reader_done = false;
    loop {
        if exit.is_some() && stdout.is_none() && stderr.is_none() {
            break;
        }
        let outcome = tokio::select! {
            result = &mut command, if exit.is_none() => {
                exit = Some(result);
                Ok(())
            }
            data = receive(&mut stdout), if stdout.is_some() => {
                forward(&mut sink, &mut stdout, channel::STDOUT, data).await
            }
            data = receive(&mut stderr), if stderr.is_some() => {
                forward(&mut sink, &mut stderr, channel::STDERR, data).await
            }
            _ = &mut reader, if !reader_done => {
                reader_done = true;
                // The client left: a command still running has no one to answer to.
                if exit.is_none() {
                    Err(())
                } else {
                    Ok(())
                }
            }
        };
        if outcome.is_err() {
            tracing::debug!(pod = %session.pod.name, container = %session.container, "exec client went away; command cancelled");
            reader.abort();
            return;
        }
    }
    let status = match exit {
        Some(Ok(code)) => channel::exit_status(code),
        Some(Err(error)) => {
            tracing::warn!(pod = %session.pod.name, container = %session.container,
                error = %format!("{error:#}"), "exec failed");
            channel::failure_status(&error.to_string())
        }
        None => channel::failure_status("the command did not finish"),
    };
    let closing = async {
        sink.send(Message::Binary(channel::status_frame(&status)))
            .await?;
        sink.send(Message::Close(Some(CloseFrame {
            code: NORMAL_CLOSURE,
            reason: "".into(),
        })))
        .await
    };
    if closing.await.is_ok() && !reader_done {
        // The reader ends when the client answers the close; closing the socket before
        // that could reset the connection under data the client has not read yet.
        let _ = tokio::time::timeout(CLOSE_GRACE, &mut reader).await;
    }
    reader.abort();
}

/// A channel, or none when the client did not ask for the stream.
fn optional_channel<T>(wanted: bool) -> (Option<mpsc::Sender<T>>, Option<mpsc::Receiver<T>>) {
    if wanted {
        let (sender, receiver) = mpsc::channel(STREAM_BUFFER);
        (Some(sender), Some(receiver))
    } else {
        (None, None)
    }
}

async fn receive(receiver: &mut Option<mpsc::Receiver<Bytes>>) -> Option<Bytes> {
    match receiver {
        Some(receiver) => receiver.recv().await,
        None => None,
    }
}

/// Sends one chunk of output on `stream`; a finished output stream is forgotten. Fails
/// only when the client cannot be written to.
async fn forward(
    sink: &mut SplitSink<WebSocket, Message>,
    receiver: &mut Option<mpsc::Receiver<Bytes>>,
    stream: u8,
    data: Option<Bytes>,
) -> Result<(), ()> {
    match data {
        Some(data) if data.is_empty() => Ok(()),
        Some(data) => sink
            .send(Message::Binary(channel::frame(stream, &data)))
            .await
            .map_err(|_| ()),
        None => {
            *receiver = None;
            Ok(())
        }
    }
}

/// Reads the client's messages until it closes: stdin to the command (dropping the sender
/// closes the command's stdin), resizes to the terminal.
async fn read_client(
    mut stream: SplitStream<WebSocket>,
    protocol: &'static str,
    mut stdin: Option<mpsc::Sender<Bytes>>,
    resize: Option<mpsc::Sender<(u16, u16)>>,
) {
    while let Some(message) = stream.next().await {
        let data = match message {
            Ok(Message::Binary(data)) => data,
            Ok(Message::Close(_)) | Err(_) => return,
            // Pings are answered by the WebSocket layer; the protocol has no text messages.
            Ok(_) => continue,
        };
        match channel::parse_client_frame(protocol, &data) {
            Ok(ClientFrame::Stdin(bytes)) => {
                if let Some(sender) = &stdin
                    && sender.send(bytes).await.is_err()
                {
                    // The command no longer reads its input.
                    stdin = None;
                }
            }
            Ok(ClientFrame::Resize(columns, rows)) => {
                if let Some(sender) = &resize {
                    // A resize that finds the queue full is superseded by the next one.
                    let _ = sender.try_send((columns, rows));
                }
            }
            Ok(ClientFrame::Close(channel::STDIN)) => stdin = None,
            Ok(ClientFrame::Close(_) | ClientFrame::Empty) => {}
            Err(error) => tracing::debug!(%error, "ignoring an exec message"),
        }
    }
}
