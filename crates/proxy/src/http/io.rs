//! I/O plumbing of the HTTP path: a stream wrapper that counts the bytes it carries into
//! the listener's or member's counters, and the executor that runs hyper's background
//! tasks (HTTP/2 streams, upstream connections) as tracked connection tasks, so shutdown
//! ends and waits for them too.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tracing::Instrument;

use crate::listener::ServeContext;
use crate::stats::Counters;

/// Which way the bytes read from a wrapped stream flow through the load balancer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// A client's stream: reads are requests (`bytes_in`), writes responses.
    Client,
    /// A member's stream: reads are responses (`bytes_out`), writes requests.
    Member,
}

/// A stream that counts what passes through it.
#[derive(Debug)]
pub(crate) struct CountingIo<T> {
    inner: T,
    counters: Arc<Counters>,
    side: Side,
    /// Bytes read so far on this stream alone.
    read_total: Arc<AtomicU64>,
}

impl<T> CountingIo<T> {
    pub fn new(inner: T, counters: Arc<Counters>, side: Side) -> CountingIo<T> {
        CountingIo {
            inner,
            counters,
            side,
            read_total: Arc::new(AtomicU64::new(0)),
        }
    }

    /// A handle on the count of bytes read, which outlives moving the stream into hyper.
    pub fn read_total(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.read_total)
    }

    fn count_read(&self, bytes: usize) {
        let bytes = bytes as u64;
        self.read_total.fetch_add(bytes, Ordering::Relaxed);
        match self.side {
            Side::Client => self.counters.add_bytes_in(bytes),
            Side::Member => self.counters.add_bytes_out(bytes),
        }
    }

    fn count_written(&self, bytes: usize) {
        let bytes = bytes as u64;
        match self.side {
            Side::Client => self.counters.add_bytes_out(bytes),
            Side::Member => self.counters.add_bytes_in(bytes),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for CountingIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buffer.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(context, buffer);
        if let Poll::Ready(Ok(())) = result {
            let read = buffer.filled().len() - before;
            self.count_read(read);
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for CountingIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(context, data);
        if let Poll::Ready(Ok(written)) = result {
            self.count_written(written);
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffers: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(context, buffers);
        if let Poll::Ready(Ok(written)) = result {
            self.count_written(written);
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(context)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(context)
    }
}

/// A stream whose first bytes were read already: they are read again first.
#[derive(Debug)]
pub(crate) struct Prefixed<T> {
    prefix: bytes::Bytes,
    inner: T,
}

impl<T> Prefixed<T> {
    pub fn new(prefix: bytes::Bytes, inner: T) -> Prefixed<T> {
        Prefixed { prefix, inner }
    }

    pub fn get_ref(&self) -> &T {
        &self.inner
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Prefixed<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.prefix.is_empty() {
            return Pin::new(&mut self.inner).poll_read(context, buffer);
        }
        let taken = self.prefix.len().min(buffer.remaining());
        let prefix = self.prefix.split_to(taken);
        buffer.put_slice(&prefix);
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Prefixed<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(context, bytes)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffers: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(context, buffers)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(context)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(context)
    }
}

/// Runs hyper's background futures as tracked connection tasks.
#[derive(Debug, Clone)]
pub(crate) struct TrackedExecutor(pub ServeContext);

impl<F> hyper::rt::Executor<F> for TrackedExecutor
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, future: F) {
        // hyper spawns from within the connection's task: keep its span.
        self.0
            .tracker
            .spawn_connection(&self.0.shutdown, future.in_current_span());
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    use super::*;

    #[tokio::test]
    async fn counting_io_counts_each_direction_by_side() {
        let client_counters = Arc::new(Counters::default());
        let member_counters = Arc::new(Counters::default());
        let (client_end, mut far_client) = duplex(64);
        let (member_end, mut far_member) = duplex(64);
        let mut client = CountingIo::new(client_end, Arc::clone(&client_counters), Side::Client);
        let mut member = CountingIo::new(member_end, Arc::clone(&member_counters), Side::Member);
        let read_total = client.read_total();

        far_client.write_all(b"request").await.unwrap();
        let mut buffer = [0u8; 7];
        client.read_exact(&mut buffer).await.unwrap();
        member.write_all(&buffer).await.unwrap();
        far_member.write_all(b"response!").await.unwrap();
        let mut answer = [0u8; 9];
        member.read_exact(&mut answer).await.unwrap();
        client.write_all(&answer).await.unwrap();

        let client_snapshot = client_counters.snapshot();
        let member_snapshot = member_counters.snapshot();
        assert_eq!(
            (client_snapshot.bytes_in, client_snapshot.bytes_out),
            (7, 9)
        );
        assert_eq!(
            (member_snapshot.bytes_in, member_snapshot.bytes_out),
            (7, 9)
        );
        assert_eq!(read_total.load(Ordering::Relaxed), 7);
    }
}
