//! The one conformance suite for the `Store` trait, run against every backend.
//!
//! Each case is a public async function that takes a fresh, empty store and panics with a
//! message naming what broke. [`CASES`] lists them all and [`run_all`] runs them in turn on
//! fresh stores from a factory; a backend's test target should rather stamp out one test
//! per case (see `tests/conformance.rs`) so that a failure names its case. The suite is
//! built in normal builds so that any crate with a `Store` (a fake, a wrapper, a new
//! backend) can run it.

mod basic;
mod compaction;
mod concurrency;
mod list;
mod txn;
mod watch;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};

use crate::{Event, Store, StoreError, WatchStream};

/// One case of the suite.
pub struct Case {
    pub name: &'static str,
    pub run: fn(Arc<dyn Store>) -> BoxFuture<'static, ()>,
}

macro_rules! cases {
    ($($module:ident :: $name:ident),* $(,)?) => {
        $(pub use $module::$name;)*

        /// Every case of the suite, in the order [`run_all`] runs them.
        pub const CASES: &[Case] = &[
            $(Case { name: stringify!($name), run: |store| Box::pin($module::$name(store)) },)*
        ];
    };
}

cases! {
    basic::create_then_get,
    basic::create_of_an_existing_key_fails,
    basic::update_compares_the_mod_revision,
    basic::delete_without_precondition,
    basic::delete_with_precondition,
    basic::revisions_step_by_one_and_only_on_success,
    basic::create_revision_survives_updates_and_resets_on_recreate,
    basic::values_round_trip_as_bytes,
    list::list_prefix_is_a_plain_byte_prefix,
    list::list_at_an_old_revision_sees_the_old_snapshot,
    list::list_pages_with_start_after_and_limit,
    list::list_pages_at_a_fixed_revision_while_writes_continue,
    list::list_at_a_future_revision_fails,
    watch::watch_replays_history_then_follows_live,
    watch::watch_filters_by_prefix,
    watch::quiet_watch_reports_progress,
    watch::replay_of_a_quiet_prefix_reports_progress,
    watch::watch_events_carry_prev_values,
    watch::watch_from_the_current_revision_is_live_only,
    watch::watch_from_a_future_revision_waits_for_it,
    watch::unread_watch_stays_ordered_or_reports_lag,
    compaction::compaction_keeps_what_later_revisions_need,
    compaction::list_at_a_compacted_revision_fails,
    compaction::watch_from_a_compacted_revision_fails,
    compaction::compaction_bounds_and_idempotence,
    compaction::recreate_after_compacted_delete,
    concurrency::concurrent_updates_at_one_revision_have_one_winner,
    concurrency::concurrent_creates_of_one_key_have_one_winner,
    concurrency::concurrent_creates_get_distinct_consecutive_revisions,
    concurrency::no_lost_updates_under_contention,
    concurrency::watch_sees_every_concurrent_write_in_order,
    txn::txn_applies_every_op_at_consecutive_revisions,
    txn::failed_txn_writes_nothing,
    txn::txn_ops_see_earlier_ops,
    txn::watch_sees_each_op_of_a_txn_as_its_own_event,
    txn::concurrent_txns_are_all_or_nothing,
    txn::empty_txn_does_nothing,
}

/// Runs every case, each on a fresh store from `fresh_store`. Panics naming the first case
/// that fails.
pub async fn run_all<F, Fut>(mut fresh_store: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Arc<dyn Store>>,
{
    for case in CASES {
        let store = fresh_store().await;
        if let Err(panic) = AssertUnwindSafe((case.run)(store)).catch_unwind().await {
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)");
            panic!("conformance case {} failed: {message}", case.name);
        }
    }
}

/// How long a case waits for an event that should arrive promptly.
const EVENT_DEADLINE: Duration = Duration::from_secs(10);

fn value(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

/// The next change of a watch (progress events skipped), failing the case on an error, the
/// end of the stream, or a missed deadline.
async fn next_event(stream: &mut WatchStream) -> Event {
    loop {
        let event = next_event_or_progress(stream).await;
        if event.kind != crate::EventKind::Progress {
            return event;
        }
    }
}

/// The next event of a watch, progress included.
async fn next_event_or_progress(stream: &mut WatchStream) -> Event {
    match tokio::time::timeout(EVENT_DEADLINE, stream.next()).await {
        Ok(Some(Ok(event))) => event,
        Ok(Some(Err(error))) => panic!("the watch failed: {error}"),
        Ok(None) => panic!("the watch ended"),
        Err(_) => panic!("no event within {EVENT_DEADLINE:?}"),
    }
}

/// The next `count` events of a watch.
async fn next_events(stream: &mut WatchStream, count: usize) -> Vec<Event> {
    let mut events = Vec::with_capacity(count);
    for _ in 0..count {
        events.push(next_event(stream).await);
    }
    events
}

fn expect_compacted<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) {
    match result {
        Err(StoreError::Compacted { .. }) => {}
        other => panic!("{what}: expected Compacted, got {other:?}"),
    }
}
