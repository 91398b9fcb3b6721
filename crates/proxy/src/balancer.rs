//! Member selection, with no I/O: given a pool's members as they are now (health, admin
//! state, weight, open connections), the algorithm, the client and any persisted choice,
//! which member takes the next connection. Also the stickiness table that remembers
//! persisted choices; its clock is passed in.
//!
//! Rules shared by every algorithm:
//! - a member takes new connections only while admin up, healthy and of weight above 0;
//! - backup members are considered only while no non-backup member takes connections;
//! - a persisted member is honoured while it takes new connections and belongs to the
//!   tier (normal or backup) in use; otherwise the algorithm chooses afresh.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::config::LbAlgorithm;

/// One member as the balancer sees it at the moment of a choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate<'a> {
    pub id: &'a str,
    pub weight: u16,
    pub backup: bool,
    pub admin_state_up: bool,
    pub healthy: bool,
    pub active_connections: u64,
}

impl Candidate<'_> {
    /// Whether the member may be given a new connection at all.
    pub fn takes_new_connections(&self) -> bool {
        self.admin_state_up && self.healthy && self.weight > 0
    }
}

/// The selection state of one pool (round-robin weights, the least-connections tie
/// cursor). A new member list of a different length resets it.
#[derive(Debug, Clone)]
pub struct Balancer {
    algorithm: LbAlgorithm,
    /// nginx's smooth weighted round robin: each member's current weight.
    current_weights: Vec<i64>,
    /// Where the least-connections scan starts, so ties rotate.
    tie_cursor: usize,
}

impl Balancer {
    pub fn new(algorithm: LbAlgorithm) -> Balancer {
        Balancer {
            algorithm,
            current_weights: Vec::new(),
            tie_cursor: 0,
        }
    }

    pub fn algorithm(&self) -> LbAlgorithm {
        self.algorithm
    }

    /// The index in `members` of the member for a new connection, or `None` when no
    /// member may take one.
    pub fn choose(
        &mut self,
        members: &[Candidate<'_>],
        client_ip: IpAddr,
        persisted_member: Option<&str>,
    ) -> Option<usize> {
        if self.current_weights.len() != members.len() {
            self.current_weights = vec![0; members.len()];
            self.tie_cursor = 0;
        }
        let normal_tier_up = members
            .iter()
            .any(|member| !member.backup && member.takes_new_connections());
        let eligible = |member: &Candidate<'_>| {
            member.takes_new_connections() && member.backup != normal_tier_up
        };
        if let Some(id) = persisted_member
            && let Some(index) = members.iter().position(|member| member.id == id)
            && eligible(&members[index])
        {
            return Some(index);
        }
        match self.algorithm {
            LbAlgorithm::RoundRobin => self.smooth_weighted_round_robin(members, eligible),
            LbAlgorithm::LeastConnections => self.least_connections(members, eligible),
            LbAlgorithm::SourceIp => source_ip_hash(members, client_ip, eligible),
        }
    }

    /// nginx's smooth weighted round robin: every eligible member gains its weight, the
    /// richest is chosen and pays the total. Weights 5,1,1 give a a b a c a a.
    fn smooth_weighted_round_robin(
        &mut self,
        members: &[Candidate<'_>],
        eligible: impl Fn(&Candidate<'_>) -> bool,
    ) -> Option<usize> {
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        for (index, member) in members.iter().enumerate() {
            if !eligible(member) {
                continue;
            }
            let weight = i64::from(member.weight);
            self.current_weights[index] += weight;
            total += weight;
            if best.is_none_or(|best| self.current_weights[index] > self.current_weights[best]) {
                best = Some(index);
            }
        }
        let best = best?;
        self.current_weights[best] -= total;
        Some(best)
    }

    /// The member with the fewest open connections per unit of weight; ties rotate.
    fn least_connections(
        &mut self,
        members: &[Candidate<'_>],
        eligible: impl Fn(&Candidate<'_>) -> bool,
    ) -> Option<usize> {
        let count = members.len();
        let mut best: Option<usize> = None;
        for offset in 0..count {
            let index = (self.tie_cursor + offset) % count;
            let member = &members[index];
            if !eligible(member) {
                continue;
            }
            // a/wa < b/wb without division: a*wb < b*wa.
            let fewer = |best: usize| {
                let other = &members[best];
                u128::from(member.active_connections) * u128::from(other.weight)
                    < u128::from(other.active_connections) * u128::from(member.weight)
            };
            if best.is_none_or(fewer) {
                best = Some(index);
            }
        }
        let best = best?;
        self.tie_cursor = (best + 1) % count;
        Some(best)
    }
}

/// Weighted rendezvous hashing of the client address over the eligible members: the same
/// client goes to the same member while that member stays eligible, and a member leaving
/// or joining moves only the clients that hash to it. The hash is our own (FNV-1a then a
/// splitmix64 finaliser), so choices are stable across restarts and Rust versions.
fn source_ip_hash(
    members: &[Candidate<'_>],
    client_ip: IpAddr,
    eligible: impl Fn(&Candidate<'_>) -> bool,
) -> Option<usize> {
    let client_bytes = match client_ip {
        IpAddr::V4(address) => address.octets().to_vec(),
        IpAddr::V6(address) => address.octets().to_vec(),
    };
    let mut best: Option<(usize, f64)> = None;
    for (index, member) in members.iter().enumerate() {
        if !eligible(member) {
            continue;
        }
        let hash = stable_hash(&client_bytes, member.id.as_bytes());
        // A uniform draw in (0, 1) from the top 53 bits; the score w / -ln(u) makes a
        // member win in proportion to its weight.
        let uniform = ((hash >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let score = f64::from(member.weight) / -uniform.ln();
        if best.is_none_or(|(_, best_score)| score > best_score) {
            best = Some((index, score));
        }
    }
    best.map(|(index, _)| index)
}

fn stable_hash(first: &[u8], second: &[u8]) -> u64 {
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0100_0000_01b3;
    let mut hash = FNV_OFFSET;
    for byte in first.iter().chain([0xffu8].iter()).chain(second) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash ^= hash >> 30;
    hash = hash.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash ^= hash >> 27;
    hash = hash.wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

/// Remembers which member a persistence key (a client address, an application cookie's
/// value) was sent to, for as long as the key keeps being used within `timeout`.
#[derive(Debug, Clone)]
pub struct PersistenceTable<K> {
    entries: HashMap<K, (String, Instant)>,
    timeout: Duration,
    capacity: usize,
    /// No entry can have expired before this moment, so a full table is not swept until
    /// then: sweeping scans every entry, and new clients of a full table (spoofed UDP
    /// sources, say) must not each pay for a scan that frees nothing.
    no_expiry_before: Option<Instant>,
    /// How many sweeps ran (what the tests check instead of timing).
    sweeps: u64,
}

/// The least time between two sweeps of a full table, even when entries expire sooner.
const MIN_SWEEP_INTERVAL: Duration = Duration::from_secs(1);

impl<K: Hash + Eq> PersistenceTable<K> {
    pub fn new(timeout: Duration, capacity: usize) -> PersistenceTable<K> {
        PersistenceTable {
            entries: HashMap::new(),
            timeout,
            capacity,
            no_expiry_before: None,
            sweeps: 0,
        }
    }

    /// The member `key` is stuck to, refreshing the entry; `None` once it expired.
    pub fn get(&mut self, key: &K, now: Instant) -> Option<&str> {
        let timeout = self.timeout;
        let expired = match self.entries.get(key) {
            Some((_, last_used)) => now.saturating_duration_since(*last_used) > timeout,
            None => return None,
        };
        if expired {
            self.entries.remove(key);
            return None;
        }
        let entry = self.entries.get_mut(key)?;
        entry.1 = now;
        Some(entry.0.as_str())
    }

    /// Sticks `key` to `member`. When the table is full of live entries the key is not
    /// remembered: the client loses stickiness rather than the proxy growing unbounded.
    /// A full table is swept at most once per [`MIN_SWEEP_INTERVAL`], and only once an
    /// entry can have expired.
    pub fn insert(&mut self, key: K, member: &str, now: Instant) {
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            if self.no_expiry_before.is_some_and(|moment| now <= moment) {
                return;
            }
            self.sweep(now);
            if self.entries.len() >= self.capacity {
                return;
            }
        }
        self.entries.insert(key, (member.to_owned(), now));
    }

    /// Drops expired entries and notes when the oldest survivor can expire (entries are
    /// only ever refreshed, so that moment stays a lower bound).
    fn sweep(&mut self, now: Instant) {
        self.sweeps += 1;
        let timeout = self.timeout;
        self.entries
            .retain(|_, (_, last_used)| now.saturating_duration_since(*last_used) <= timeout);
        let oldest = self.entries.values().map(|(_, last_used)| *last_used).min();
        let earliest_expiry = oldest.map_or(now, |oldest| oldest + timeout);
        self.no_expiry_before = Some(earliest_expiry.max(now + MIN_SWEEP_INTERVAL));
    }

    /// Changes how long idle entries live, keeping the entries.
    pub fn set_timeout(&mut self, timeout: Duration) {
        if timeout != self.timeout {
            self.no_expiry_before = None;
        }
        self.timeout = timeout;
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests;
