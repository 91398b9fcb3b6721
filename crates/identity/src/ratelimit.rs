//! The failed-login limiter: slows password guessing against one user from one source, and
//! name spraying from one source, without any I/O (the caller passes the clock).
//!
//! Behaviour, for each counter:
//! - The window opens at the first failure counted; failures within `window` of it add up.
//!   A failure after the window has passed starts a new window.
//! - Reaching the threshold locks the counter out for `lockout` from that failure. While
//!   locked, `check` returns the remaining time and further failures are not counted (the
//!   caller should not have attempted them). When the lockout ends the count starts afresh.
//!
//! Two counters apply to each attempt:
//! - per (user name, source), with threshold `max_failures`;
//! - per source alone, with threshold `10 × max_failures`, so spraying many user names from
//!   one address is throttled too, while many users behind one NAT still get room.
//!
//! A success clears only the (user, source) counter: letting it clear the per-source counter
//! would let an attacker holding one valid account reset the spraying limit at will.
//!
//! Sources are compared by address, except that IPv6 addresses count per /64 (one host
//! commonly owns a whole /64, so per-address counting would not limit it) and IPv4-mapped
//! IPv6 addresses count as their IPv4 address.
//!
//! Memory is bounded: each map holds at most `MAX_TRACKED_KEYS` keys. When a new key would
//! exceed that, stale counters (window passed, not locked) are dropped; if every counter is
//! still live, the one whose state ends soonest is evicted. User names are truncated to
//! `MAX_USER_KEY_BYTES` before being stored.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// The per-source threshold is this multiple of the per-user threshold.
pub const SOURCE_THRESHOLD_FACTOR: u32 = 10;
/// The most keys each of the two maps holds.
pub const MAX_TRACKED_KEYS: usize = 10_000;
/// Longer user names share a counter with their 256-byte prefix; names that long are junk, and
/// storing them whole would let a sprayer spend our memory.
pub const MAX_USER_KEY_BYTES: usize = 256;

/// Failed-login limiter keyed per (user name, source address) and per source; see the module
/// documentation for the exact behaviour. `Send + Sync`; share one per process.
#[derive(Debug)]
pub struct LoginLimiter {
    max_failures: u32,
    source_max_failures: u32,
    window: Duration,
    lockout: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    per_user: HashMap<(String, IpAddr), Counter>,
    per_source: HashMap<IpAddr, Counter>,
}

#[derive(Debug, Clone, Copy)]
struct Counter {
    failures: u32,
    window_start: Instant,
    locked_at: Option<Instant>,
}

impl Counter {
    fn new(now: Instant) -> Self {
        Counter {
            failures: 0,
            window_start: now,
            locked_at: None,
        }
    }

    /// Remaining lockout, if locked at `now`. Saturating arithmetic keeps a clock that goes
    /// backwards, or a huge duration, from panicking.
    fn locked_for(&self, now: Instant, lockout: Duration) -> Option<Duration> {
        let locked_at = self.locked_at?;
        let remaining = lockout.saturating_sub(now.saturating_duration_since(locked_at));
        (!remaining.is_zero()).then_some(remaining)
    }

    /// How long this counter still matters: until its lockout ends or its window passes.
    fn live_for(&self, now: Instant, window: Duration, lockout: Duration) -> Duration {
        let window_left = window.saturating_sub(now.saturating_duration_since(self.window_start));
        let locked_left = self.locked_for(now, lockout).unwrap_or_default();
        window_left.max(locked_left)
    }

    /// Counts one failure; true when it locked the counter.
    fn record_failure(
        &mut self,
        now: Instant,
        threshold: u32,
        window: Duration,
        lockout: Duration,
    ) -> bool {
        if self.locked_for(now, lockout).is_some() {
            return false;
        }
        if self.locked_at.is_some() || now.saturating_duration_since(self.window_start) >= window {
            *self = Counter::new(now);
        }
        self.failures = self.failures.saturating_add(1);
        if self.failures >= threshold {
            self.locked_at = Some(now);
            return true;
        }
        false
    }
}

impl LoginLimiter {
    /// `max_failures` failures for one user from one source within `window` lock that pair out
    /// for `lockout`; `10 × max_failures` failures from one source within `window` lock the
    /// source out for `lockout`. A `max_failures` of 0 is treated as 1.
    pub fn new(max_failures: u32, window: Duration, lockout: Duration) -> Self {
        let max_failures = max_failures.max(1);
        LoginLimiter {
            max_failures,
            source_max_failures: max_failures.saturating_mul(SOURCE_THRESHOLD_FACTOR),
            window,
            lockout,
            state: Mutex::new(State::default()),
        }
    }

    /// Whether an attempt may proceed now; `Err(retry_after)` while the (user, source) pair or
    /// the source is locked out, with the longer of the remaining lockouts.
    pub fn check(&self, user: &str, source: IpAddr, now: Instant) -> Result<(), Duration> {
        let source = source_key(source);
        let state = self.state();
        let user_lock = state
            .per_user
            .get(&(user_key(user), source))
            .and_then(|counter| counter.locked_for(now, self.lockout));
        let source_lock = state
            .per_source
            .get(&source)
            .and_then(|counter| counter.locked_for(now, self.lockout));
        match user_lock.max(source_lock) {
            Some(retry_after) => Err(retry_after),
            None => Ok(()),
        }
    }

    pub fn record_failure(&self, user: &str, source: IpAddr, now: Instant) {
        let source = source_key(source);
        let mut state = self.state();
        let State {
            per_user,
            per_source,
        } = &mut *state;

        let user_locked = counter_for(per_user, (user_key(user), source), now, self)
            .record_failure(now, self.max_failures, self.window, self.lockout);
        let source_locked = counter_for(per_source, source, now, self).record_failure(
            now,
            self.source_max_failures,
            self.window,
            self.lockout,
        );
        if user_locked {
            tracing::warn!(%source, lockout = ?self.lockout, "login locked out for user from source");
        }
        if source_locked {
            tracing::warn!(%source, lockout = ?self.lockout, "logins locked out for source");
        }
    }

    /// Clears the (user, source) counter; the per-source counter stays (see the module
    /// documentation).
    pub fn record_success(&self, user: &str, source: IpAddr) {
        let source = source_key(source);
        self.state().per_user.remove(&(user_key(user), source));
    }

    /// The counters stay consistent even if a holder panicked, so a poisoned lock is used
    /// as is rather than taking every later login down with it.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for LoginLimiter {
    /// 5 failures in 60 s lock out for 60 s (and 50 from one source in 60 s lock it out).
    fn default() -> Self {
        LoginLimiter::new(5, Duration::from_secs(60), Duration::from_secs(60))
    }
}

/// The counter for `key`, made room for and created if absent.
fn counter_for<'map, K: Eq + Hash + Clone>(
    map: &'map mut HashMap<K, Counter>,
    key: K,
    now: Instant,
    limiter: &LoginLimiter,
) -> &'map mut Counter {
    if !map.contains_key(&key) && map.len() >= MAX_TRACKED_KEYS {
        make_room(map, now, limiter.window, limiter.lockout);
    }
    map.entry(key).or_insert_with(|| Counter::new(now))
}

fn make_room<K: Eq + Hash + Clone>(
    map: &mut HashMap<K, Counter>,
    now: Instant,
    window: Duration,
    lockout: Duration,
) {
    map.retain(|_, counter| !counter.live_for(now, window, lockout).is_zero());
    while map.len() >= MAX_TRACKED_KEYS {
        let soonest = map
            .iter()
            .min_by_key(|(_, counter)| counter.live_for(now, window, lockout))
            .map(|(key, _)| key.clone());
        match soonest {
            Some(key) => map.remove(&key),
            None => break,
        };
    }
}

fn source_key(source: IpAddr) -> IpAddr {
    match source {
        IpAddr::V4(_) => source,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(v6.to_bits() & !u128::from(u64::MAX))),
        },
    }
}

fn user_key(user: &str) -> String {
    let mut end = user.len().min(MAX_USER_KEY_BYTES);
    while !user.is_char_boundary(end) {
        end -= 1;
    }
    user[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const ALICE: &str = "alice";
    const WINDOW: Duration = Duration::from_secs(60);
    const LOCKOUT: Duration = Duration::from_secs(300);

    fn address(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
    }

    fn limiter() -> LoginLimiter {
        LoginLimiter::new(3, WINDOW, LOCKOUT)
    }

    #[test]
    fn max_failures_lock_out_the_user_from_that_source() {
        let limiter = limiter();
        let start = Instant::now();
        for attempt in 0..3 {
            let now = start + Duration::from_secs(attempt);
            assert_eq!(limiter.check(ALICE, address(1), now), Ok(()));
            limiter.record_failure(ALICE, address(1), now);
        }
        let now = start + Duration::from_secs(10);
        // Locked at the third failure (t = 2 s) for 300 s.
        assert_eq!(
            limiter.check(ALICE, address(1), now),
            Err(Duration::from_secs(292))
        );
        // Other users from that source, and that user from elsewhere, may still try.
        assert_eq!(limiter.check("bob", address(1), now), Ok(()));
        assert_eq!(limiter.check(ALICE, address(2), now), Ok(()));
    }

    #[test]
    fn the_lockout_expires() {
        let limiter = limiter();
        let start = Instant::now();
        for _ in 0..3 {
            limiter.record_failure(ALICE, address(1), start);
        }
        assert!(
            limiter
                .check(
                    ALICE,
                    address(1),
                    start + LOCKOUT - Duration::from_millis(1)
                )
                .is_err()
        );
        let after = start + LOCKOUT;
        assert_eq!(limiter.check(ALICE, address(1), after), Ok(()));
        // The count started afresh: two more failures do not lock, the third does.
        limiter.record_failure(ALICE, address(1), after);
        limiter.record_failure(ALICE, address(1), after);
        assert_eq!(limiter.check(ALICE, address(1), after), Ok(()));
        limiter.record_failure(ALICE, address(1), after);
        assert_eq!(limiter.check(ALICE, address(1), after), Err(LOCKOUT));
    }

    #[test]
    fn failures_outside_the_window_do_not_add_up() {
        let limiter = limiter();
        let start = Instant::now();
        limiter.record_failure(ALICE, address(1), start);
        limiter.record_failure(ALICE, address(1), start + Duration::from_secs(30));
        // The window opened at the first failure; this one opens a new window.
        let later = start + WINDOW;
        limiter.record_failure(ALICE, address(1), later);
        assert_eq!(limiter.check(ALICE, address(1), later), Ok(()));
        limiter.record_failure(ALICE, address(1), later);
        assert_eq!(limiter.check(ALICE, address(1), later), Ok(()));
        limiter.record_failure(ALICE, address(1), later);
        assert!(limiter.check(ALICE, address(1), later).is_err());
    }

    #[test]
    fn failures_while_locked_do_not_extend_the_lockout() {
        let limiter = limiter();
        let start = Instant::now();
        for _ in 0..3 {
            limiter.record_failure(ALICE, address(1), start);
        }
        limiter.record_failure(ALICE, address(1), start + Duration::from_secs(100));
        assert_eq!(limiter.check(ALICE, address(1), start + LOCKOUT), Ok(()));
    }

    #[test]
    fn success_clears_the_user_counter() {
        let limiter = limiter();
        let now = Instant::now();
        limiter.record_failure(ALICE, address(1), now);
        limiter.record_failure(ALICE, address(1), now);
        limiter.record_success(ALICE, address(1));
        limiter.record_failure(ALICE, address(1), now);
        limiter.record_failure(ALICE, address(1), now);
        assert_eq!(limiter.check(ALICE, address(1), now), Ok(()));
    }

    #[test]
    fn spraying_user_names_from_one_source_is_throttled() {
        let limiter = limiter();
        let now = Instant::now();
        // The per-source threshold is 10 × 3 = 30.
        for index in 0..29 {
            limiter.record_failure(&format!("user{index}"), address(1), now);
        }
        assert_eq!(limiter.check("fresh", address(1), now), Ok(()));
        // A success does not reset the per-source count.
        limiter.record_success("user0", address(1));
        limiter.record_failure("user29", address(1), now);
        assert_eq!(limiter.check("fresh", address(1), now), Err(LOCKOUT));
        assert_eq!(limiter.check(ALICE, address(1), now), Err(LOCKOUT));
        assert_eq!(limiter.check(ALICE, address(2), now), Ok(()));
        assert_eq!(limiter.check("fresh", address(1), now + LOCKOUT), Ok(()));
    }

    #[test]
    fn ipv6_sources_count_per_64_and_mapped_ipv4_as_ipv4() {
        let limiter = limiter();
        let now = Instant::now();
        for host in 1..=3u16 {
            let source = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, host));
            limiter.record_failure(ALICE, source, now);
        }
        let same_64 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0xffff, 1, 2, 3));
        let other_64 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 2, 0, 0, 0, 1));
        assert!(limiter.check(ALICE, same_64, now).is_err());
        assert_eq!(limiter.check(ALICE, other_64, now), Ok(()));

        for _ in 0..3 {
            limiter.record_failure(ALICE, address(7), now);
        }
        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped());
        assert!(limiter.check(ALICE, mapped, now).is_err());
    }

    #[test]
    fn long_user_names_share_their_prefix_counter() {
        let limiter = limiter();
        let now = Instant::now();
        let prefix = "é".repeat(MAX_USER_KEY_BYTES / 2);
        for suffix in ["a", "b", "c"] {
            limiter.record_failure(&format!("{prefix}{suffix}"), address(1), now);
        }
        assert!(
            limiter
                .check(&format!("{prefix}z"), address(1), now)
                .is_err()
        );
        assert_eq!(
            user_key(&format!("x{prefix}")).len(),
            MAX_USER_KEY_BYTES - 1
        );
    }

    #[test]
    fn stale_counters_are_pruned_when_the_map_is_full() {
        let limiter = limiter();
        let start = Instant::now();
        for index in 0..MAX_TRACKED_KEYS {
            let source = IpAddr::V6(Ipv6Addr::from((index as u128) << 64));
            limiter.record_failure("sprayed", source, start);
        }
        {
            let state = limiter.state();
            assert_eq!(state.per_user.len(), MAX_TRACKED_KEYS);
            assert_eq!(state.per_source.len(), MAX_TRACKED_KEYS);
        }
        limiter.record_failure(ALICE, address(1), start + WINDOW);
        let state = limiter.state();
        assert_eq!(state.per_user.len(), 1);
        assert_eq!(state.per_source.len(), 1);
    }

    #[test]
    fn live_counters_are_evicted_soonest_ending_first_when_the_map_is_full() {
        let limiter = limiter();
        let start = Instant::now();
        for index in 0..MAX_TRACKED_KEYS {
            let now = start + Duration::from_millis(index as u64);
            limiter.record_failure(&format!("user{index}"), address(1), now);
        }
        let now = start + Duration::from_millis(MAX_TRACKED_KEYS as u64);
        for _ in 0..3 {
            limiter.record_failure(ALICE, address(2), now);
        }
        let state = limiter.state();
        assert_eq!(state.per_user.len(), MAX_TRACKED_KEYS);
        assert!(
            !state
                .per_user
                .contains_key(&("user0".to_owned(), address(1)))
        );
        assert!(
            state
                .per_user
                .contains_key(&("user1".to_owned(), address(1)))
        );
        drop(state);
        assert!(limiter.check(ALICE, address(2), now).is_err());
    }

    #[test]
    fn zero_max_failures_behaves_as_one_and_default_is_five_per_minute() {
        let limiter = LoginLimiter::new(0, WINDOW, LOCKOUT);
        let now = Instant::now();
        assert_eq!(limiter.check(ALICE, address(1), now), Ok(()));
        limiter.record_failure(ALICE, address(1), now);
        assert_eq!(limiter.check(ALICE, address(1), now), Err(LOCKOUT));

        let limiter = LoginLimiter::default();
        for _ in 0..4 {
            limiter.record_failure(ALICE, address(1), now);
        }
        assert_eq!(limiter.check(ALICE, address(1), now), Ok(()));
        limiter.record_failure(ALICE, address(1), now);
        assert_eq!(
            limiter.check(ALICE, address(1), now),
            Err(Duration::from_secs(60))
        );
    }

    #[test]
    fn a_clock_going_backwards_does_not_panic() {
        let limiter = limiter();
        let now = Instant::now();
        for _ in 0..3 {
            limiter.record_failure(ALICE, address(1), now + WINDOW);
        }
        assert_eq!(limiter.check(ALICE, address(1), now), Err(LOCKOUT));
        limiter.record_failure(ALICE, address(1), now);
    }

    #[test]
    fn the_limiter_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<LoginLimiter>();
    }
}
