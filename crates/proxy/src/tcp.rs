//! Layer 4 TCP proxying (TCP listeners, and HTTPS listeners, whose TLS passes through
//! untouched): connect the client to a member and relay bytes both ways until both sides
//! are done or the connection sits idle too long.
//!
//! Idle time: `timeout_client_data` and `timeout_member_data` are inactivity limits on
//! each side, and as haproxy counts them, a side is active while bytes are read from it
//! or written to it. Every relayed byte is read from one side and written to the other,
//! so both sides are idle exactly when the connection is: the connection closes after the
//! shorter of the two timeouts passes with no byte moving in either direction.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::listener::ListenerRuntime;
use crate::pool::Origin;
use crate::stats::Counters;

/// Serves one accepted connection of a TCP or HTTPS (passthrough) listener.
pub(crate) async fn serve_connection(
    listener: &ListenerRuntime,
    client: TcpStream,
    origin: Origin,
) {
    let Some(pool) = &listener.default_pool else {
        tracing::debug!("no default pool, closing");
        return;
    };
    let config = listener.config();
    let connect_timeout = Duration::from_millis(config.timeout_member_connect);
    let connection = match pool.connect(origin, None, connect_timeout).await {
        Ok(connection) => connection,
        Err(error) => {
            tracing::warn!(%error, "no member for connection");
            listener.stats.add_request_error();
            return;
        }
    };
    let member = &pool.members[connection.member];
    let _member_connection = member.stats.open_connection();
    let idle = Duration::from_millis(config.timeout_client_data.min(config.timeout_member_data));
    let counters = [&*listener.stats, &*member.stats];
    match relay(client, connection.stream, idle, &counters).await {
        Ok(RelayEnd::Closed) => {}
        Ok(RelayEnd::Idle) => {
            tracing::debug!(member = member.config.id, "idle connection closed");
        }
        Err(error) => {
            tracing::debug!(member = member.config.id, %error, "connection ended with an error");
        }
    }
}

/// How a relay ended without an I/O error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RelayEnd {
    /// Both directions reached end of stream.
    Closed,
    /// No byte moved for the idle timeout.
    Idle,
}

/// Relays bytes between `client` and `member` until both directions end (a half close is
/// passed on), either side fails, or nothing moves for `idle`. Bytes from the client
/// count as `bytes_in`, bytes from the member as `bytes_out`, in every `counters`.
pub(crate) async fn relay<C, M>(
    client: C,
    member: M,
    idle: Duration,
    counters: &[&Counters],
) -> std::io::Result<RelayEnd>
where
    C: AsyncRead + AsyncWrite,
    M: AsyncRead + AsyncWrite,
{
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut member_read, mut member_write) = tokio::io::split(member);
    let start = Instant::now();
    // Milliseconds since `start` of the last byte moved.
    let last_activity = AtomicU64::new(0);
    let touch = || {
        let elapsed = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
        last_activity.store(elapsed, Ordering::Relaxed);
    };
    let upstream = copy_one_way(&mut client_read, &mut member_write, &touch, |bytes| {
        counters
            .iter()
            .for_each(|counter| counter.add_bytes_in(bytes));
    });
    let downstream = copy_one_way(&mut member_read, &mut client_write, &touch, |bytes| {
        counters
            .iter()
            .for_each(|counter| counter.add_bytes_out(bytes));
    });
    let idle_watch = async {
        loop {
            let last = Duration::from_millis(last_activity.load(Ordering::Relaxed));
            let deadline = start + last + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    };
    tokio::select! {
        result = async { tokio::try_join!(upstream, downstream) } => result.map(|_| RelayEnd::Closed),
        () = idle_watch => Ok(RelayEnd::Idle),
    }
}

/// Copies until end of stream, then shuts the writer down to pass the half close on.
async fn copy_one_way<R, W>(
    reader: &mut R,
    writer: &mut W,
    touch: &impl Fn(),
    count: impl Fn(u64),
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = reader.read(&mut buffer).await?;
        if read == 0 {
            break;
        }
        touch();
        writer.write_all(&buffer[..read]).await?;
        // A TLS member's stream buffers what it could not send yet.
        writer.flush().await?;
        touch();
        count(read as u64);
    }
    writer.shutdown().await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::io::duplex;

    use super::*;

    #[tokio::test]
    async fn relay_copies_both_ways_passes_half_close_and_counts() {
        let (client, mut client_peer) = duplex(64);
        let (member, mut member_peer) = duplex(64);
        let counters = Arc::new(Counters::default());
        let relayed = {
            let counters = Arc::clone(&counters);
            tokio::spawn(async move {
                let counters = [&*counters];
                relay(client, member, Duration::from_secs(60), &counters).await
            })
        };
        client_peer.write_all(b"hello member").await.unwrap();
        client_peer.shutdown().await.unwrap();
        let mut received = Vec::new();
        member_peer.read_to_end(&mut received).await.unwrap();
        assert_eq!(
            received, b"hello member",
            "the client's half close reached the member"
        );

        member_peer.write_all(b"hello client, bye").await.unwrap();
        member_peer.shutdown().await.unwrap();
        let mut answer = Vec::new();
        client_peer.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer, b"hello client, bye");

        assert_eq!(relayed.await.unwrap().unwrap(), RelayEnd::Closed);
        let snapshot = counters.snapshot();
        assert_eq!((snapshot.bytes_in, snapshot.bytes_out), (12, 17));
    }

    #[tokio::test(start_paused = true)]
    async fn relay_ends_an_idle_connection_but_not_a_busy_one() {
        let (client, mut client_peer) = duplex(64);
        let (member, mut member_peer) = duplex(64);
        let counters = Counters::default();
        let all_counters = [&counters];
        let relay = relay(client, member, Duration::from_secs(10), &all_counters);
        tokio::pin!(relay);
        // Traffic every 6 s keeps a 10 s idle timeout from firing (time is paused, so
        // these sleeps are virtual and the test does not depend on the machine's speed).
        for _ in 0..5 {
            tokio::select! {
                _ = &mut relay => panic!("the relay ended while traffic flowed"),
                () = async {
                    tokio::time::sleep(Duration::from_secs(6)).await;
                    client_peer.write_all(b"x").await.unwrap();
                    let mut byte = [0u8; 1];
                    member_peer.read_exact(&mut byte).await.unwrap();
                } => {}
            }
        }
        assert_eq!(relay.await.unwrap(), RelayEnd::Idle);
        assert_eq!(counters.snapshot().bytes_in, 5);
    }
}
