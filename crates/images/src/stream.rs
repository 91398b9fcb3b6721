//! Feeding a blob from async code: the request or response body arrives as chunks on a
//! tokio task while a blocking task writes and hashes them ([`crate::blob::BlobStore::put`]
//! reads a [`ChunkReader`]). The sender must say the stream ended cleanly; a sender
//! dropped without [`ChunkSender::finish`] (a client gone, a task cancelled) makes the
//! reader fail, so a cut-off stream is never stored as if it were whole.

use std::io::{self, Read};

use bytes::Bytes;
use tokio::sync::mpsc;

enum Chunk {
    Data(Bytes),
    Failed(io::Error),
    End,
}

/// The async end: send chunks, then finish (or fail).
pub struct ChunkSender {
    sender: mpsc::Sender<Chunk>,
}

/// The blocking end: a `Read` over the chunks.
pub struct ChunkReader {
    receiver: mpsc::Receiver<Chunk>,
    current: Bytes,
    ended: bool,
}

/// A channel holding at most `capacity` chunks in flight.
pub fn chunk_channel(capacity: usize) -> (ChunkSender, ChunkReader) {
    let (sender, receiver) = mpsc::channel(capacity.max(1));
    (
        ChunkSender { sender },
        ChunkReader {
            receiver,
            current: Bytes::new(),
            ended: false,
        },
    )
}

impl ChunkSender {
    /// Sends a chunk; false when the reader has stopped (its own error says why).
    pub async fn send(&self, bytes: Bytes) -> bool {
        self.sender.send(Chunk::Data(bytes)).await.is_ok()
    }

    /// Ends the stream with an error the reader returns.
    pub async fn fail(self, error: io::Error) {
        let _ = self.sender.send(Chunk::Failed(error)).await;
    }

    /// Ends the stream cleanly.
    pub async fn finish(self) {
        let _ = self.sender.send(Chunk::End).await;
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        loop {
            if !self.current.is_empty() {
                let count = buffer.len().min(self.current.len());
                buffer[..count].copy_from_slice(&self.current.split_to(count));
                return Ok(count);
            }
            if self.ended {
                return Ok(0);
            }
            match self.receiver.blocking_recv() {
                Some(Chunk::Data(bytes)) => self.current = bytes,
                Some(Chunk::Failed(error)) => return Err(error),
                Some(Chunk::End) => self.ended = true,
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the stream was cut off",
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }

    #[test]
    fn a_finished_stream_reads_whole() {
        let (sender, mut reader) = chunk_channel(2);
        let writer = std::thread::spawn(move || {
            runtime().block_on(async move {
                for part in ["he", "ll", "o"] {
                    assert!(sender.send(Bytes::from(part)).await);
                }
                sender.finish().await;
            });
        });
        let mut text = String::new();
        reader.read_to_string(&mut text).unwrap();
        writer.join().unwrap();
        assert_eq!(text, "hello");
    }

    #[test]
    fn a_dropped_sender_is_a_cut_off_stream() {
        let (sender, mut reader) = chunk_channel(2);
        let writer = std::thread::spawn(move || {
            runtime().block_on(async move {
                assert!(sender.send(Bytes::from("part")).await);
                drop(sender);
            });
        });
        let mut bytes = Vec::new();
        let error = reader.read_to_end(&mut bytes).unwrap_err();
        writer.join().unwrap();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
    }
}
