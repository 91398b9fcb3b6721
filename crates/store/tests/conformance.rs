//! Runs the store conformance suite against every backend, one test per backend and case,
//! so that a failure names both.

use std::sync::Arc;

use ronghe_store::conformance::{self, CASES};
use ronghe_store::{MemoryStore, SqliteStore, Store};
use tempfile::TempDir;

/// A fresh SQLite store in its own temporary directory, removed when the guard drops.
fn fresh_sqlite() -> (Arc<dyn Store>, TempDir) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SqliteStore::open(&dir.path().join("store.db")).expect("open sqlite store");
    (Arc::new(store), dir)
}

fn fresh_memory() -> (Arc<dyn Store>, ()) {
    (Arc::new(MemoryStore::new()), ())
}

macro_rules! stamp_cases {
    ($backend:ident, $fresh:path, [$($case:ident),* $(,)?]) => {
        mod $backend {
            use super::*;

            pub const STAMPED: &[&str] = &[$(stringify!($case)),*];

            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (store, _guard) = $fresh();
                    conformance::$case(store).await;
                }
            )*
        }
    };
}

macro_rules! stamp_backends {
    ($cases:tt) => {
        stamp_cases!(memory, fresh_memory, $cases);
        stamp_cases!(sqlite, fresh_sqlite, $cases);
    };
}

stamp_backends!([
    create_then_get,
    create_of_an_existing_key_fails,
    update_compares_the_mod_revision,
    delete_without_precondition,
    delete_with_precondition,
    revisions_step_by_one_and_only_on_success,
    create_revision_survives_updates_and_resets_on_recreate,
    values_round_trip_as_bytes,
    list_prefix_is_a_plain_byte_prefix,
    list_at_an_old_revision_sees_the_old_snapshot,
    list_pages_with_start_after_and_limit,
    list_pages_at_a_fixed_revision_while_writes_continue,
    list_at_a_future_revision_fails,
    watch_replays_history_then_follows_live,
    watch_filters_by_prefix,
    quiet_watch_reports_progress,
    replay_of_a_quiet_prefix_reports_progress,
    watch_events_carry_prev_values,
    watch_from_the_current_revision_is_live_only,
    watch_from_a_future_revision_waits_for_it,
    unread_watch_stays_ordered_or_reports_lag,
    compaction_keeps_what_later_revisions_need,
    list_at_a_compacted_revision_fails,
    watch_from_a_compacted_revision_fails,
    compaction_bounds_and_idempotence,
    recreate_after_compacted_delete,
    concurrent_updates_at_one_revision_have_one_winner,
    concurrent_creates_of_one_key_have_one_winner,
    concurrent_creates_get_distinct_consecutive_revisions,
    no_lost_updates_under_contention,
    watch_sees_every_concurrent_write_in_order,
    txn_applies_every_op_at_consecutive_revisions,
    failed_txn_writes_nothing,
    txn_ops_see_earlier_ops,
    watch_sees_each_op_of_a_txn_as_its_own_event,
    concurrent_txns_are_all_or_nothing,
    empty_txn_does_nothing,
]);

#[test]
fn every_case_of_the_suite_is_stamped() {
    let suite: Vec<&str> = CASES.iter().map(|case| case.name).collect();
    assert_eq!(memory::STAMPED, suite.as_slice());
    assert_eq!(sqlite::STAMPED, suite.as_slice());
}

/// `run_all` itself works with a factory, as other crates would call it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_all_on_memory() {
    conformance::run_all(|| async { Arc::new(MemoryStore::new()) as Arc<dyn Store> }).await;
}
