//! What the HTTP/1 path must hold whatever bytes a client sends, checked by the fuzz
//! target (`fuzz/fuzz_targets/proxy_http1.rs`) and by property tests.

use bytes::{Buf, BytesMut};

use super::framing::{BodyProgress, Framing, FramingError};
use super::head;
use crate::http::fields::{FieldSink, Fields, RequestView};

/// Reads `data` as a client's bytes on an HTTP/1 connection the way this path does, and
/// checks what must hold whatever the bytes: heads parse or fail without panicking; a
/// head taken is written for the member as a head that reads back the same; a body's
/// framing never takes more than it is given, and takes the same whether the bytes come
/// whole or in pieces. Pipelined requests are followed. For the fuzz target
/// (`fuzz/fuzz_targets/proxy_http1.rs`) and property tests; panics on a violation.
pub(crate) fn check_client_bytes(data: &[u8]) {
    let mut rest = BytesMut::from(data);
    while let Ok(Some(request)) = head::parse_request(&mut rest) {
        let mut written = Vec::new();
        head::write_request_line(&mut written, &request.method, request.path_and_query());
        for (name, value) in request.fields.each() {
            written.push_field(name, value);
        }
        head::end_head(&mut written);
        let mut again = BytesMut::from(&written[..]);
        let reread = head::parse_request(&mut again)
            .unwrap_or_else(|error| panic!("the written head {written:?} fails: {error}"))
            .unwrap_or_else(|| panic!("the written head {written:?} is incomplete"));
        assert!(again.is_empty(), "the written head reads back shorter");
        assert_eq!(reread.method, request.method);
        assert_eq!(reread.path_and_query(), request.path_and_query());
        assert!(
            reread.fields.each().eq(request.fields.each()),
            "the written head's fields read back differently"
        );
        assert_eq!(reread.framing, request.framing);
        let whole = take_body(request.framing, &rest, rest.len().max(1));
        for step in [1, 7] {
            assert_eq!(
                take_body(request.framing, &rest, step),
                whole,
                "the body reads differently in pieces of {step}"
            );
        }
        match whole {
            Ok((taken, _, true)) => rest.advance(taken),
            _ => return,
        }
    }
}

/// Feeds `input` to a body's framing in pieces of `step` bytes, keeping what was not
/// taken as the connection's buffer does: the bytes taken, the data, whether it ended.
fn take_body(
    framing: Framing,
    input: &[u8],
    step: usize,
) -> Result<(usize, Vec<u8>, bool), FramingError> {
    let mut progress = BodyProgress::new(framing);
    let mut buffer = Vec::new();
    let mut taken_total = 0;
    let mut data = Vec::new();
    for piece in input.chunks(step) {
        if progress.is_done() {
            break;
        }
        buffer.extend_from_slice(piece);
        let taken = progress.advance(&buffer, |range| data.extend_from_slice(&buffer[range]))?;
        assert!(
            taken <= buffer.len(),
            "the framing took more than it was given"
        );
        buffer.drain(..taken);
        taken_total += taken;
    }
    Ok((taken_total, data, progress.is_done()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Request-ish bytes: pieces of heads and bodies, and any byte.
    fn client_bytes() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        prop::collection::vec(
            prop_oneof![
                Just(b"GET / HTTP/1.1\r\n".to_vec()),
                Just(b"POST /a?b HTTP/1.0\r\n".to_vec()),
                Just(b"Host: x\r\n".to_vec()),
                Just(b"Content-Length: 3\r\n".to_vec()),
                Just(b"Transfer-Encoding: chunked\r\n".to_vec()),
                Just(b"\r\n".to_vec()),
                Just(b"3\r\nabc\r\n".to_vec()),
                Just(b"0\r\n\r\n".to_vec()),
                Just(b"a;x=y\r\n".to_vec()),
                prop::collection::vec(any::<u8>(), 1..6),
            ],
            0..16,
        )
        .prop_map(|pieces| pieces.concat())
    }

    proptest::proptest! {
        #[test]
        fn client_bytes_hold_the_fast_paths_invariants(data in client_bytes()) {
            check_client_bytes(&data);
        }
    }

    #[test]
    fn pipelined_requests_with_bodies_hold_the_invariants() {
        check_client_bytes(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nPUT /x HTTP/1.1\r\nContent-Length: 2\r\n\r\nhiGET http://h/p?q HTTP/1.1\r\n\r\n",
        );
    }
}
