//! Traffic statistics: atomic counters per listener and per member, and the snapshot the
//! host agent reports (Octavia's listener and member stats).
//!
//! Directions are named from the load balancer's clients: `bytes_in` flowed from clients
//! towards members (requests), `bytes_out` from members back to clients (responses), for
//! listeners and members alike. Counters live as long as their object stays in the
//! configuration, so a reconfigure that keeps a listener or member keeps its totals.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

/// The counters of one listener or one member.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    active_connections: AtomicU64,
    total_connections: AtomicU64,
    request_errors: AtomicU64,
}

impl Counters {
    pub fn add_bytes_in(&self, bytes: u64) {
        self.bytes_in.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn add_bytes_out(&self, bytes: u64) {
        self.bytes_out.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn add_request_error(&self) {
        self.request_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn active_connections(&self) -> u64 {
        self.active_connections.load(Ordering::Relaxed)
    }

    /// Counts a new connection (or UDP session) as open until the guard drops.
    pub fn open_connection(self: &Arc<Self>) -> ConnectionGuard {
        self.total_connections.fetch_add(1, Ordering::Relaxed);
        self.active_connections.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard(Arc::clone(self))
    }

    pub fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            active_connections: self.active_connections.load(Ordering::Relaxed),
            total_connections: self.total_connections.load(Ordering::Relaxed),
            request_errors: self.request_errors.load(Ordering::Relaxed),
        }
    }
}

/// One open connection on a set of counters; dropping it closes the connection there.
#[derive(Debug)]
pub(crate) struct ConnectionGuard(Arc<Counters>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.active_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The counters of one listener or member at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CounterSnapshot {
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub active_connections: u64,
    pub total_connections: u64,
    pub request_errors: u64,
}

/// Every configured listener's and member's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatsSnapshot {
    /// By listener id.
    pub listeners: BTreeMap<String, CounterSnapshot>,
    /// By pool id, then member id.
    pub members: BTreeMap<String, BTreeMap<String, CounterSnapshot>>,
}

impl StatsSnapshot {
    pub fn listener(&self, listener_id: &str) -> CounterSnapshot {
        self.listeners.get(listener_id).copied().unwrap_or_default()
    }

    pub fn member(&self, pool_id: &str, member_id: &str) -> CounterSnapshot {
        self.members
            .get(pool_id)
            .and_then(|members| members.get(member_id))
            .copied()
            .unwrap_or_default()
    }
}

/// Hands out the counters of each listener and member, the same ones across
/// reconfigures while the object stays configured.
///
/// Looking counters up never registers them: a reconfigure gathers the counters of its
/// new objects first and [`StatsRegistry::publish`]es them only once it commits, so a
/// refused configuration leaves no trace in what is reported.
#[derive(Debug, Default)]
pub(crate) struct StatsRegistry {
    listeners: Mutex<HashMap<String, Arc<Counters>>>,
    members: Mutex<HashMap<(String, String), Arc<Counters>>>,
}

impl StatsRegistry {
    /// The reported counters of a listener, or new ones if it is not (yet) reported.
    pub fn listener(&self, listener_id: &str) -> Arc<Counters> {
        let listeners = self
            .listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        listeners.get(listener_id).cloned().unwrap_or_default()
    }

    /// The reported counters of a member, or new ones if it is not (yet) reported.
    pub fn member(&self, pool_id: &str, member_id: &str) -> Arc<Counters> {
        let members = self.members.lock().unwrap_or_else(PoisonError::into_inner);
        members
            .get(&(pool_id.to_owned(), member_id.to_owned()))
            .cloned()
            .unwrap_or_default()
    }

    /// Reports exactly these counters from now on; the ones left out are forgotten
    /// (connections still draining on them keep counting into their own copy, which is
    /// no longer reported).
    pub fn publish(
        &self,
        listeners: HashMap<String, Arc<Counters>>,
        members: HashMap<(String, String), Arc<Counters>>,
    ) {
        *self
            .listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = listeners;
        *self.members.lock().unwrap_or_else(PoisonError::into_inner) = members;
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let listeners = self
            .listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let listeners = listeners
            .iter()
            .map(|(id, counters)| (id.clone(), counters.snapshot()))
            .collect();
        let members_by_key = self.members.lock().unwrap_or_else(PoisonError::into_inner);
        let mut members: BTreeMap<String, BTreeMap<String, CounterSnapshot>> = BTreeMap::new();
        for ((pool_id, member_id), counters) in members_by_key.iter() {
            members
                .entry(pool_id.clone())
                .or_default()
                .insert(member_id.clone(), counters.snapshot());
        }
        StatsSnapshot { listeners, members }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_count_open_and_total_connections() {
        let counters = Arc::new(Counters::default());
        let first = counters.open_connection();
        let second = counters.open_connection();
        counters.add_bytes_in(10);
        counters.add_bytes_out(32);
        counters.add_request_error();
        assert_eq!(
            counters.snapshot(),
            CounterSnapshot {
                bytes_in: 10,
                bytes_out: 32,
                active_connections: 2,
                total_connections: 2,
                request_errors: 1,
            }
        );
        drop(first);
        drop(second);
        assert_eq!(counters.active_connections(), 0);
        assert_eq!(counters.snapshot().total_connections, 2);
    }

    #[test]
    fn registry_reports_published_counters_only() {
        let registry = StatsRegistry::default();
        let l1 = registry.listener("l1");
        let m1 = registry.member("p", "m1");
        let m2 = registry.member("p", "m2");
        l1.add_bytes_in(5);
        m1.add_bytes_out(3);
        m2.add_bytes_out(4);
        assert_eq!(
            registry.snapshot(),
            StatsSnapshot::default(),
            "looking counters up does not report them"
        );
        assert!(!Arc::ptr_eq(&registry.listener("l1"), &l1));

        registry.publish(
            HashMap::from([("l1".to_owned(), Arc::clone(&l1))]),
            HashMap::from([
                (("p".to_owned(), "m1".to_owned()), m1),
                (("p".to_owned(), "m2".to_owned()), Arc::clone(&m2)),
            ]),
        );
        assert!(Arc::ptr_eq(&registry.listener("l1"), &l1), "same counters");
        assert_eq!(registry.snapshot().listener("l1").bytes_in, 5);

        registry.publish(
            HashMap::new(),
            HashMap::from([(("p".to_owned(), "m2".to_owned()), m2)]),
        );
        let snapshot = registry.snapshot();
        assert!(snapshot.listeners.is_empty());
        assert_eq!(snapshot.member("p", "m2").bytes_out, 4);
        assert_eq!(snapshot.member("p", "m1"), CounterSnapshot::default());
        assert!(!snapshot.members["p"].contains_key("m1"));

        let json = serde_json::to_value(&snapshot).unwrap();
        assert_eq!(json["members"]["p"]["m2"]["bytesOut"], 4);
        assert_eq!(json["members"]["p"]["m2"]["activeConnections"], 0);
    }
}
