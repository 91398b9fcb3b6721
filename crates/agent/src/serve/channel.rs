//! The Kubernetes channel protocol that `kubectl exec` speaks over WebSocket
//! (`v4.channel.k8s.io`, `v5.channel.k8s.io`): every binary message starts with the number
//! of the stream it belongs to. Pure framing, no I/O.
//!
//! Channels: 0 stdin, 1 stdout, 2 stderr, 3 error (one `metav1.Status` as JSON when the
//! command ends), 4 resize (`{"Width":..,"Height":..}`). Version 5 adds channel 255, the
//! close signal: `[255, n]` says the client is done writing stream `n` (half-close of stdin).

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{Value, json};

/// The subprotocol with the close signal, preferred.
pub const V5: &str = "v5.channel.k8s.io";
/// The subprotocol before the close signal.
pub const V4: &str = "v4.channel.k8s.io";
/// What the endpoint speaks, best first.
pub const PROTOCOLS: [&str; 2] = [V5, V4];

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const ERROR: u8 = 3;
pub const RESIZE: u8 = 4;
pub const CLOSE: u8 = 255;

/// The exit code kubectl can carry (`strconv.ParseUint(message, 10, 8)` on its side).
const MAX_EXIT_CODE: i32 = 255;

/// What a client's binary message means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientFrame {
    /// Bytes for the command's standard input.
    Stdin(Bytes),
    /// The terminal's new size: columns, rows.
    Resize(u16, u16),
    /// The client will write no more to this stream (`v5` only).
    Close(u8),
    /// An empty message (clients may send one per stream when it opens).
    Empty,
}

/// Why a client's message is not understood.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("stream {0} cannot be written by the client")]
    UnknownStream(u8),
    #[error("the close signal names no stream")]
    CloseWithoutStream,
    #[error("the close signal is not part of {V4}")]
    CloseInV4,
    #[error("a resize message is not {{\"Width\":N,\"Height\":N}}")]
    BadResize,
}

/// Reads one binary message from the client under `protocol` ([`V4`] or [`V5`]).
pub fn parse_client_frame(protocol: &str, message: &[u8]) -> Result<ClientFrame, FrameError> {
    let Some((&stream, payload)) = message.split_first() else {
        return Ok(ClientFrame::Empty);
    };
    match stream {
        STDIN if payload.is_empty() => Ok(ClientFrame::Empty),
        STDIN => Ok(ClientFrame::Stdin(Bytes::copy_from_slice(payload))),
        RESIZE if payload.is_empty() => Ok(ClientFrame::Empty),
        RESIZE => parse_resize(payload),
        CLOSE if protocol != V5 => Err(FrameError::CloseInV4),
        CLOSE => payload
            .first()
            .map(|&closed| ClientFrame::Close(closed))
            .ok_or(FrameError::CloseWithoutStream),
        other => Err(FrameError::UnknownStream(other)),
    }
}

/// client-go's `TerminalSize` has no JSON tags, so its fields travel capitalised.
fn parse_resize(payload: &[u8]) -> Result<ClientFrame, FrameError> {
    let size: Value = serde_json::from_slice(payload).map_err(|_| FrameError::BadResize)?;
    let dimension = |name: &str| {
        size.get(name)
            .and_then(Value::as_u64)
            .and_then(|n| u16::try_from(n).ok())
            .ok_or(FrameError::BadResize)
    };
    Ok(ClientFrame::Resize(
        dimension("Width")?,
        dimension("Height")?,
    ))
}

/// One message for the client: `stream` followed by `data`.
pub fn frame(stream: u8, data: &[u8]) -> Bytes {
    let mut message = BytesMut::with_capacity(data.len() + 1);
    message.put_u8(stream);
    message.put_slice(data);
    message.freeze()
}

/// The `metav1.Status` the kubelet writes on the error stream when a command ends, as
/// client-go decodes it: `Success` for exit code 0; otherwise `Failure` with reason
/// `NonZeroExitCode` and the code as the message of a cause of type `ExitCode` (which
/// kubectl turns into its own exit code).
pub fn exit_status(exit_code: i32) -> Value {
    if exit_code == 0 {
        return json!({"metadata": {}, "status": "Success"});
    }
    let code = exit_code.clamp(1, MAX_EXIT_CODE);
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("command terminated with non-zero exit code: exit status {code}"),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

/// The status for a command that could not be run at all: client-go prints its message.
pub fn failure_status(message: &str) -> Value {
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("error executing command in container: {message}"),
        "reason": "InternalError",
        "code": 500,
    })
}

/// The error-stream message carrying `status`.
pub fn status_frame(status: &Value) -> Bytes {
    frame(ERROR, status.to_string().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_frames_by_stream() {
        assert_eq!(
            parse_client_frame(V5, b"\x00hello"),
            Ok(ClientFrame::Stdin(Bytes::from_static(b"hello")))
        );
        assert_eq!(parse_client_frame(V5, b""), Ok(ClientFrame::Empty));
        assert_eq!(parse_client_frame(V4, b"\x00"), Ok(ClientFrame::Empty));
        let mut resize = vec![RESIZE];
        resize.extend_from_slice(br#"{"Width":120,"Height":40}"#);
        assert_eq!(
            parse_client_frame(V4, &resize),
            Ok(ClientFrame::Resize(120, 40))
        );
        assert_eq!(
            parse_client_frame(V5, &[RESIZE, b'{', b'}']),
            Err(FrameError::BadResize)
        );
        assert_eq!(
            parse_client_frame(V5, &[STDOUT, b'x']),
            Err(FrameError::UnknownStream(STDOUT))
        );
    }

    #[test]
    fn the_close_signal_is_v5_only() {
        assert_eq!(
            parse_client_frame(V5, &[CLOSE, STDIN]),
            Ok(ClientFrame::Close(STDIN))
        );
        assert_eq!(
            parse_client_frame(V5, &[CLOSE]),
            Err(FrameError::CloseWithoutStream)
        );
        assert_eq!(
            parse_client_frame(V4, &[CLOSE, STDIN]),
            Err(FrameError::CloseInV4)
        );
    }

    #[test]
    fn server_frames_start_with_their_stream() {
        assert_eq!(frame(STDOUT, b"hi\n").as_ref(), b"\x01hi\n");
        assert_eq!(frame(STDERR, b"").as_ref(), b"\x02");
        let message = status_frame(&exit_status(0));
        assert_eq!(message[0], ERROR);
        let status: Value = serde_json::from_slice(&message[1..]).expect("JSON");
        assert_eq!(status, json!({"metadata": {}, "status": "Success"}));
    }

    #[test]
    fn exit_codes_travel_as_client_go_reads_them() {
        let status = exit_status(3);
        assert_eq!(status["status"], "Failure");
        assert_eq!(status["reason"], "NonZeroExitCode");
        assert_eq!(
            status["details"]["causes"],
            json!([{"reason": "ExitCode", "message": "3"}])
        );
        // Codes a byte cannot hold are clamped rather than refused by the client.
        assert_eq!(exit_status(300)["details"]["causes"][0]["message"], "255");
        assert_eq!(exit_status(-9)["details"]["causes"][0]["message"], "1");
        let failed = failure_status("no such container");
        assert_eq!(failed["status"], "Failure");
        assert_eq!(
            failed["message"],
            "error executing command in container: no such container"
        );
    }
}
