//! Connection slots for the servers the agent runs for tenant workloads (metadata, DNS):
//! a bound on open connections in all (the next waits in the kernel's backlog) and per
//! peer address (the next is closed as soon as accepted).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub(crate) struct ConnectionSlots {
    slots: Arc<Semaphore>,
    peers: Arc<Mutex<HashMap<IpAddr, usize>>>,
    per_peer: usize,
}

impl ConnectionSlots {
    pub fn new(connections: usize, per_peer: usize) -> ConnectionSlots {
        ConnectionSlots {
            slots: Arc::new(Semaphore::new(connections)),
            peers: Arc::default(),
            per_peer,
        }
    }

    /// Waits until a connection may be accepted at all.
    pub async fn reserve(&self) -> OwnedSemaphorePermit {
        Arc::clone(&self.slots)
            .acquire_owned()
            .await
            .expect("the connection semaphore is never closed")
    }

    /// The place of a connection accepted from `ip` with `permit`, or None when `ip`
    /// holds its share already (the permit goes back).
    pub fn take(&self, ip: IpAddr, permit: OwnedSemaphorePermit) -> Option<Slot> {
        let ip = ip.to_canonical();
        let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        let open = peers.entry(ip).or_default();
        if *open >= self.per_peer {
            return None;
        }
        *open += 1;
        Some(Slot {
            peers: Arc::clone(&self.peers),
            ip,
            _permit: permit,
        })
    }
}

/// A connection's place in the limits, given back when it is dropped.
pub(crate) struct Slot {
    peers: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(open) = peers.get_mut(&self.ip) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                peers.remove(&self.ip);
            }
        }
    }
}
