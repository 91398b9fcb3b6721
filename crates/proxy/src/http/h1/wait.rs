//! Time limits on the waits of one HTTP/1 connection, with a timer armed lazily.
//!
//! A connection waits many times (for each request head, each answer head, each body
//! read), each within a limit of tens of seconds, and nearly every wait ends long before
//! its limit. Registering a timer for each wait and taking it out again was a measurable
//! part of the CPU a request costs (`ronghe bench lb`). A [`Wait`] keeps one timer
//! instead, and only moves it when it fires: then, if the wait in progress has time
//! left, the timer is set to that wait's deadline; otherwise the wait has timed out. A
//! wait with an earlier deadline than the timer's moves the timer at once. So a wait
//! times out exactly at its deadline, as `tokio::time::timeout_at` would, and a busy
//! connection's timer fires about once per limit rather than being set for every wait.

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::task::Poll;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// A wait that reached its deadline with its future still pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimedOut;

/// One lazily armed timer, for waits that happen one after another.
#[derive(Debug, Default)]
pub(crate) struct Wait {
    timer: Option<Pin<Box<Sleep>>>,
}

impl Wait {
    /// Runs `future` until it completes, or `limit` from now passes first.
    pub async fn within<F: Future>(
        &mut self,
        limit: Duration,
        future: F,
    ) -> Result<F::Output, TimedOut> {
        self.until(Instant::now() + limit, future).await
    }

    /// Runs `future` until it completes, or `deadline` passes first. The future is polled
    /// before the timer, so one that is ready at the deadline still completes.
    pub async fn until<F: Future>(
        &mut self,
        deadline: Instant,
        future: F,
    ) -> Result<F::Output, TimedOut> {
        let timer = match &mut self.timer {
            Some(timer) => {
                if timer.deadline() > deadline {
                    timer.as_mut().reset(deadline);
                }
                timer
            }
            None => self
                .timer
                .insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        let mut future = pin!(future);
        poll_fn(|context| {
            if let Poll::Ready(output) = future.as_mut().poll(context) {
                return Poll::Ready(Ok(output));
            }
            while timer.as_mut().poll(context).is_ready() {
                if timer.deadline() >= deadline {
                    return Poll::Ready(Err(TimedOut));
                }
                // The deadline of an earlier wait passed: this one's is later.
                timer.as_mut().reset(deadline);
            }
            Poll::Pending
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn each_wait_times_out_at_its_own_deadline() {
        let mut wait = Wait::default();
        let started = Instant::now();
        // A wait that ends early leaves the timer set at its deadline (10 s)...
        assert_eq!(
            wait.within(Duration::from_secs(10), async { 1 }).await,
            Ok(1)
        );
        tokio::time::advance(Duration::from_secs(8)).await;
        // ...and a later wait with a later deadline (8 + 10 s) outlasts it.
        let pending = wait
            .within(Duration::from_secs(10), std::future::pending::<()>())
            .await;
        assert_eq!(pending, Err(TimedOut));
        assert_eq!(started.elapsed(), Duration::from_secs(18));

        // A shorter limit than the timer's moves it earlier.
        let started = Instant::now();
        let ready_late = async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            "late"
        };
        assert_eq!(
            wait.within(Duration::from_secs(2), ready_late).await,
            Err(TimedOut)
        );
        assert_eq!(started.elapsed(), Duration::from_secs(2));

        // A future that completes before the deadline is not cut.
        let started = Instant::now();
        let ready_soon = async {
            tokio::time::sleep(Duration::from_secs(4)).await;
            "soon"
        };
        assert_eq!(
            wait.within(Duration::from_secs(5), ready_soon).await,
            Ok("soon")
        );
        assert_eq!(started.elapsed(), Duration::from_secs(4));
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_after_the_timer_fired_unnoticed_gets_its_full_limit() {
        let mut wait = Wait::default();
        assert_eq!(wait.within(Duration::from_secs(1), async {}).await, Ok(()));
        // The timer's deadline passes while nothing waits.
        tokio::time::advance(Duration::from_secs(5)).await;
        let started = Instant::now();
        let result = wait
            .within(Duration::from_secs(3), std::future::pending::<()>())
            .await;
        assert_eq!(result, Err(TimedOut));
        assert_eq!(started.elapsed(), Duration::from_secs(3));
    }
}
