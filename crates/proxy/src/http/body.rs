//! Bodies on their way through the proxy: an idle timeout on request and response
//! bodies, so a client or member trickling a body cannot hold a member connection, a task
//! and a connection slot forever, and the hold on a request's share of the connection
//! limit until its answer has been passed on.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Sleep};

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A body that sat waiting for its next frame longer than its idle timeout.
#[derive(Debug, thiserror::Error)]
#[error("the {sender} sent nothing of the body for {timeout:?}")]
pub(crate) struct BodyIdle {
    /// `client` or `member`.
    pub sender: &'static str,
    pub timeout: Duration,
}

/// One request in flight on a client connection, holding its share of the listener's
/// connection limit (when it needed one) until dropped.
#[derive(Debug)]
pub(crate) struct RequestSlot {
    in_flight: Arc<AtomicUsize>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl RequestSlot {
    /// Admits one more request among the `in_flight` ones of a client connection. The
    /// connection's own slot under the listener's limit covers one request at a time
    /// (always so for HTTP/1.1); a concurrent HTTP/2 stream opens one more member
    /// connection and so needs a slot of its own from `limit`, and is refused (`None`)
    /// when none is free.
    pub fn admit(
        in_flight: &Arc<AtomicUsize>,
        limit: Option<&Arc<tokio::sync::Semaphore>>,
    ) -> Option<RequestSlot> {
        let others = in_flight.fetch_add(1, Ordering::AcqRel);
        let mut slot = RequestSlot {
            in_flight: Arc::clone(in_flight),
            _permit: None,
        };
        if others > 0
            && let Some(limit) = limit
        {
            // Dropping `slot` on refusal takes the request back out of `in_flight`.
            slot._permit = Some(Arc::clone(limit).try_acquire_owned().ok()?);
        }
        Some(slot)
    }
}

impl Drop for RequestSlot {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Passes a body on, failing it once it has waited `timeout` for its next frame. The
/// clock runs only while the body is asked for a frame and has none: a reader that stops
/// asking (backpressure from a slow receiver) does not count against the sender. The
/// timer is made the first time the body has to wait, so a body that never waits (most
/// are small, or empty) costs no timer.
pub(crate) struct IdleTimeoutBody<B> {
    inner: B,
    timeout: Duration,
    sender: &'static str,
    deadline: Option<Pin<Box<Sleep>>>,
    waiting: bool,
    /// Released when the body is done with (answered, or dropped by hyper).
    _slot: Option<RequestSlot>,
}

impl<B> IdleTimeoutBody<B> {
    pub fn new(inner: B, timeout: Duration, sender: &'static str) -> IdleTimeoutBody<B> {
        IdleTimeoutBody {
            inner,
            timeout,
            sender,
            deadline: None,
            waiting: false,
            _slot: None,
        }
    }

    /// Holds `slot` for as long as the body lives.
    pub fn holding(mut self, slot: Option<RequestSlot>) -> IdleTimeoutBody<B> {
        self._slot = slot;
        self
    }
}

impl<B> Body for IdleTimeoutBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(context) {
            Poll::Ready(frame) => {
                this.waiting = false;
                Poll::Ready(frame.map(|frame| frame.map_err(Into::into)))
            }
            Poll::Pending => {
                let deadline = match &mut this.deadline {
                    Some(deadline) => {
                        if !this.waiting {
                            deadline.as_mut().reset(Instant::now() + this.timeout);
                        }
                        deadline
                    }
                    None => this
                        .deadline
                        .insert(Box::pin(tokio::time::sleep(this.timeout))),
                };
                this.waiting = true;
                match deadline.as_mut().poll(context) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyIdle {
                        sender: this.sender,
                        timeout: this.timeout,
                    })))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http_body_util::{BodyExt, StreamBody};
    use tokio::sync::{Semaphore, mpsc};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_idle_body_fails_but_a_trickling_one_does_not() {
        let (sender, receiver) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(1);
        let frames = futures::stream::unfold(receiver, |mut receiver| async move {
            let frame = receiver.recv().await?;
            Some((frame, receiver))
        });
        let mut body = IdleTimeoutBody::new(
            StreamBody::new(Box::pin(frames)),
            Duration::from_secs(10),
            "client",
        );
        // A frame every 6 s keeps a 10 s idle timeout from firing (virtual time).
        for _ in 0..5 {
            let send = async {
                tokio::time::sleep(Duration::from_secs(6)).await;
                sender
                    .send(Ok(Frame::data(Bytes::from("x"))))
                    .await
                    .unwrap();
            };
            let (frame, ()) = tokio::join!(body.frame(), send);
            assert_eq!(frame.unwrap().unwrap().into_data().unwrap(), "x");
        }
        let error = body.frame().await.unwrap().unwrap_err();
        assert_eq!(
            error.to_string(),
            "the client sent nothing of the body for 10s"
        );
    }

    #[test]
    fn concurrent_requests_beyond_the_first_take_a_slot_of_the_limit() {
        let in_flight = Arc::new(AtomicUsize::new(0));
        let limit = Arc::new(Semaphore::new(1));
        let first = RequestSlot::admit(&in_flight, Some(&limit)).unwrap();
        assert_eq!(
            limit.available_permits(),
            1,
            "the connection's slot covers it"
        );
        let second = RequestSlot::admit(&in_flight, Some(&limit)).unwrap();
        assert_eq!(limit.available_permits(), 0);
        assert!(RequestSlot::admit(&in_flight, Some(&limit)).is_none());
        assert_eq!(
            in_flight.load(Ordering::Acquire),
            2,
            "a refusal is not counted"
        );
        drop(second);
        assert_eq!(limit.available_permits(), 1);
        drop(first);
        assert_eq!(in_flight.load(Ordering::Acquire), 0);
        let _alone = RequestSlot::admit(&in_flight, Some(&limit)).unwrap();
        assert_eq!(limit.available_permits(), 1);
        let _unlimited = RequestSlot::admit(&in_flight, None).unwrap();
    }
}
