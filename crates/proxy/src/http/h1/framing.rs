//! Where an HTTP/1.1 body ends (RFC 9112 section 6): a Content-Length, chunked transfer
//! coding, or the connection's close. The proxy finds the end without copying the body,
//! so its bytes go on as they came (or, for an HTTP/1.0 client that cannot take chunks,
//! as the plain data), and whatever follows it (a pipelined request) stays for later.

use std::ops::Range;

/// How a message's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body at all.
    Empty,
    Length(u64),
    Chunked,
    /// Everything until the sender closes (responses only).
    UntilClose,
}

/// A body that breaks its framing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FramingError {
    #[error("invalid chunk size line")]
    ChunkSize,
    #[error("chunk data not followed by CRLF")]
    ChunkEnd,
    #[error("chunk size line or trailers too long")]
    TooLong,
    #[error("the connection closed before the body ended")]
    Truncated,
}

/// Longest chunk size line, and longest trailer section, taken.
const MAX_LINE: usize = 4096;
const MAX_TRAILERS: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Waiting for a chunk size line.
    Size,
    /// Inside a chunk's data, this many bytes left.
    Data(u64),
    /// After a chunk's data: its CRLF.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one; bytes of them so far.
    Trailers(usize),
}

/// How far a body has come.
#[derive(Debug)]
pub(crate) struct BodyProgress {
    framing: Framing,
    /// Bytes left of a Content-Length body.
    remaining: u64,
    chunk: Chunk,
    done: bool,
}

impl BodyProgress {
    pub fn new(framing: Framing) -> BodyProgress {
        let (remaining, done) = match framing {
            Framing::Empty => (0, true),
            Framing::Length(length) => (length, length == 0),
            Framing::Chunked | Framing::UntilClose => (0, false),
        };
        BodyProgress {
            framing,
            remaining,
            chunk: Chunk::Size,
            done,
        }
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The sender closed: fine for a body delimited by the close, an error otherwise.
    pub fn end_of_input(&mut self) -> Result<(), FramingError> {
        if self.done {
            return Ok(());
        }
        if self.framing == Framing::UntilClose {
            self.done = true;
            return Ok(());
        }
        Err(FramingError::Truncated)
    }

    /// Takes from the start of `input` what belongs to the body: returns how many bytes,
    /// and calls `data` with the ranges of them that are the body's data (not chunk
    /// framing). Stops at the body's end or where a framing line is incomplete.
    pub fn advance(
        &mut self,
        input: &[u8],
        mut data: impl FnMut(Range<usize>),
    ) -> Result<usize, FramingError> {
        if self.done {
            return Ok(0);
        }
        match self.framing {
            Framing::Empty => Ok(0),
            Framing::UntilClose => {
                if !input.is_empty() {
                    data(0..input.len());
                }
                Ok(input.len())
            }
            Framing::Length(_) => {
                let taken = usize::try_from(self.remaining)
                    .unwrap_or(usize::MAX)
                    .min(input.len());
                if taken > 0 {
                    data(0..taken);
                }
                self.remaining -= taken as u64;
                self.done = self.remaining == 0;
                Ok(taken)
            }
            Framing::Chunked => self.advance_chunked(input, data),
        }
    }

    fn advance_chunked(
        &mut self,
        input: &[u8],
        mut data: impl FnMut(Range<usize>),
    ) -> Result<usize, FramingError> {
        let mut at = 0;
        while !self.done && at < input.len() {
            let rest = &input[at..];
            match self.chunk {
                Chunk::Size => match httparse::parse_chunk_size(rest) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        at += used;
                        self.chunk = if size == 0 {
                            Chunk::Trailers(0)
                        } else {
                            Chunk::Data(size)
                        };
                    }
                    Ok(httparse::Status::Partial) if rest.len() > MAX_LINE => {
                        return Err(FramingError::TooLong);
                    }
                    Ok(httparse::Status::Partial) => break,
                    Err(_) => return Err(FramingError::ChunkSize),
                },
                Chunk::Data(left) => {
                    let taken = usize::try_from(left).unwrap_or(usize::MAX).min(rest.len());
                    data(at..at + taken);
                    at += taken;
                    let left = left - taken as u64;
                    self.chunk = if left == 0 {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(left)
                    };
                }
                Chunk::DataEnd => {
                    if rest.len() < 2 {
                        if rest != &b"\r"[..rest.len()] {
                            return Err(FramingError::ChunkEnd);
                        }
                        break;
                    }
                    if &rest[..2] != b"\r\n" {
                        return Err(FramingError::ChunkEnd);
                    }
                    at += 2;
                    self.chunk = Chunk::Size;
                }
                Chunk::Trailers(seen) => {
                    let Some(line_end) = rest.windows(2).position(|pair| pair == b"\r\n") else {
                        if seen + rest.len() > MAX_TRAILERS {
                            return Err(FramingError::TooLong);
                        }
                        break;
                    };
                    at += line_end + 2;
                    if line_end == 0 {
                        self.done = true;
                    } else if seen + line_end + 2 > MAX_TRAILERS {
                        return Err(FramingError::TooLong);
                    } else {
                        self.chunk = Chunk::Trailers(seen + line_end + 2);
                    }
                }
            }
        }
        Ok(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes (keeping what was not taken, as the
    /// proxy's buffer does); returns the bytes taken, the data, and whether it ended.
    fn feed(framing: Framing, input: &[u8], step: usize) -> (usize, Vec<u8>, bool) {
        let mut progress = BodyProgress::new(framing);
        let mut buffer = Vec::new();
        let mut taken_total = 0;
        let mut data = Vec::new();
        for piece in input.chunks(step.max(1)) {
            buffer.extend_from_slice(piece);
            let taken = progress
                .advance(&buffer, |range| data.extend_from_slice(&buffer[range]))
                .unwrap();
            buffer.drain(..taken);
            taken_total += taken;
            if progress.is_done() {
                break;
            }
        }
        (taken_total, data, progress.is_done())
    }

    #[test]
    fn chunked_bodies_end_after_their_trailers_in_any_pieces() {
        let body = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 1\r\n\r\nGET /next";
        let end = body.len() - b"GET /next".len();
        for step in 1..body.len() {
            let (taken, data, done) = feed(Framing::Chunked, body, step);
            assert!(done, "step {step}");
            assert_eq!(taken, end, "step {step}");
            assert_eq!(data, b"hello world");
        }
    }

    #[test]
    fn lengths_stop_at_their_end_and_close_takes_everything() {
        assert_eq!(
            feed(Framing::Length(5), b"helloGET", 3),
            (5, b"hello".to_vec(), true)
        );
        assert!(BodyProgress::new(Framing::Length(0)).is_done());
        assert!(BodyProgress::new(Framing::Empty).is_done());
        let (taken, data, done) = feed(Framing::UntilClose, b"all of it", 4);
        assert_eq!(
            (taken, data.as_slice(), done),
            (9, &b"all of it"[..], false)
        );
        let mut progress = BodyProgress::new(Framing::UntilClose);
        assert_eq!(progress.end_of_input(), Ok(()));
        assert!(progress.is_done());
        assert_eq!(
            BodyProgress::new(Framing::Length(3)).end_of_input(),
            Err(FramingError::Truncated)
        );
    }

    #[test]
    fn broken_chunks_are_refused() {
        let mut progress = BodyProgress::new(Framing::Chunked);
        assert_eq!(
            progress.advance(b"zz\r\n", |_| {}),
            Err(FramingError::ChunkSize)
        );
        let mut progress = BodyProgress::new(Framing::Chunked);
        assert_eq!(
            progress.advance(b"2\r\nabXY", |_| {}),
            Err(FramingError::ChunkEnd)
        );
        let mut progress = BodyProgress::new(Framing::Chunked);
        let endless_extension = [&b"1;"[..], &[b'a'; MAX_LINE]].concat();
        assert_eq!(
            progress.advance(&endless_extension, |_| {}),
            Err(FramingError::TooLong)
        );
        let mut progress = BodyProgress::new(Framing::Chunked);
        let huge = b"ffffffffffffffff\r\n";
        assert_eq!(progress.advance(huge, |_| {}), Ok(huge.len()));
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_in_any_pieces_never_panic_and_never_overrun(
            input in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            step in 1usize..40,
        ) {
            for framing in [Framing::Chunked, Framing::Length(17), Framing::UntilClose] {
                let mut progress = BodyProgress::new(framing);
                let mut buffer = Vec::new();
                for piece in input.chunks(step) {
                    buffer.extend_from_slice(piece);
                    let Ok(taken) = progress.advance(&buffer, |range| assert!(range.end <= buffer.len())) else {
                        break;
                    };
                    proptest::prop_assert!(taken <= buffer.len());
                    buffer.drain(..taken);
                }
            }
        }
    }
}
