//! Health checking of pool members and the operating status the host agent reports.
//!
//! Each pool with a monitor gets one checker task that probes every admin-up member each
//! `delay_ms`, a probe taking at most `timeout_ms` (the probes are in `health/probe.rs`). A member
//! goes from ONLINE to ERROR after `max_retries_down` consecutive failures and back after
//! `max_retries` consecutive successes.
//!
//! Statuses, as Octavia names them:
//! - OFFLINE: the member is admin down (never checked, never chosen);
//! - NO_MONITOR: the pool has no monitor, so the member is taken as up;
//! - ONLINE / ERROR: the monitor's verdict.
//!
//! A monitored member starts ONLINE, before its first check: a new load balancer serves at
//! once rather than waiting `max_retries` checks, and a dead member is taken out after
//! `max_retries_down` failures, as haproxy does with servers it has not yet checked.
//! Octavia's API would show such a member as NO_MONITOR until the first report; here the
//! proxy already acts on it, so it reports what it acts on. Across a reconfigure that
//! keeps a member (same pool, id, address and ports) its status is kept too.
//!
//! PING monitors: this proxy opens no ICMP sockets (raw sockets need CAP_NET_RAW and
//! unprivileged ping sockets need `net.ipv4.ping_group_range`, neither of which a proxy in
//! a VIP namespace should depend on), so PING is checked as a TCP connect to the member's
//! monitor port, as Octavia's amphora does where ICMP is filtered. On a UDP pool that port
//! is usually UDP only, so there PING is checked as UDP-CONNECT instead.

pub(crate) mod probe;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::config::HealthMonitor;
use probe::Probe;

/// A member's operating status, as Octavia reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OperatingStatus {
    Online,
    Error,
    NoMonitor,
    Offline,
}

impl OperatingStatus {
    /// Whether the balancer may send new connections to a member in this status.
    pub fn is_up(self) -> bool {
        matches!(self, OperatingStatus::Online | OperatingStatus::NoMonitor)
    }

    fn to_u8(self) -> u8 {
        match self {
            OperatingStatus::Online => 0,
            OperatingStatus::Error => 1,
            OperatingStatus::NoMonitor => 2,
            OperatingStatus::Offline => 3,
        }
    }

    fn from_u8(value: u8) -> OperatingStatus {
        match value {
            0 => OperatingStatus::Online,
            1 => OperatingStatus::Error,
            2 => OperatingStatus::NoMonitor,
            _ => OperatingStatus::Offline,
        }
    }
}

/// Every configured member's status: by pool id, then member id.
pub type MemberStatuses = BTreeMap<String, BTreeMap<String, OperatingStatus>>;

/// One member's status as the data path reads it on every choice.
#[derive(Debug)]
pub(crate) struct MemberHealth(AtomicU8);

impl MemberHealth {
    pub fn new(status: OperatingStatus) -> MemberHealth {
        MemberHealth(AtomicU8::new(status.to_u8()))
    }

    pub fn status(&self) -> OperatingStatus {
        OperatingStatus::from_u8(self.0.load(Ordering::Relaxed))
    }

    pub fn set(&self, status: OperatingStatus) {
        self.0.store(status.to_u8(), Ordering::Relaxed);
    }

    pub fn is_up(&self) -> bool {
        self.status().is_up()
    }
}

/// Publishes member statuses to whoever watches them (the host agent).
#[derive(Debug)]
pub(crate) struct StatusBoard(watch::Sender<MemberStatuses>);

impl StatusBoard {
    pub fn new() -> StatusBoard {
        StatusBoard(watch::Sender::new(MemberStatuses::new()))
    }

    pub fn subscribe(&self) -> watch::Receiver<MemberStatuses> {
        self.0.subscribe()
    }

    /// Records one member's new status; a member no longer configured is ignored.
    fn publish(&self, pool_id: &str, member_id: &str, status: OperatingStatus) {
        self.0.send_if_modified(|statuses| {
            match statuses
                .get_mut(pool_id)
                .and_then(|members| members.get_mut(member_id))
            {
                Some(current) if *current != status => {
                    *current = status;
                    true
                }
                _ => false,
            }
        });
    }

    /// Replaces the whole map, as after a reconfigure, with one read from the health cells while holding the
    /// channel's lock. A checker sets its cell before publishing (which takes that lock),
    /// so a verdict racing with a reconfigure is either read here or published after:
    /// never lost under a stale map. Watchers wake only on a change.
    pub fn replace_with(&self, read_statuses: impl FnOnce() -> MemberStatuses) {
        self.0.send_if_modified(|current| {
            let statuses = read_statuses();
            if *current == statuses {
                return false;
            }
            *current = statuses;
            true
        });
    }
}

/// Consecutive success and failure counting (haproxy's rise and fall).
#[derive(Debug, Clone)]
pub(crate) struct RiseFall {
    rise: u32,
    fall: u32,
    successes: u32,
    failures: u32,
}

impl RiseFall {
    pub fn new(rise: u32, fall: u32) -> RiseFall {
        RiseFall {
            rise: rise.max(1),
            fall: fall.max(1),
            successes: 0,
            failures: 0,
        }
    }

    /// The status after one check that `passed`, from `current` (ONLINE or ERROR).
    pub fn record(&mut self, current: OperatingStatus, passed: bool) -> OperatingStatus {
        if passed {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            if current != OperatingStatus::Online && self.successes >= self.rise {
                return OperatingStatus::Online;
            }
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            if current != OperatingStatus::Error && self.failures >= self.fall {
                return OperatingStatus::Error;
            }
        }
        current
    }
}

/// A member a checker probes, and the cell its verdicts go to.
#[derive(Debug, Clone)]
pub(crate) struct MonitoredMember {
    pub member_id: String,
    pub target: SocketAddr,
    /// Whether checks go where the member serves (not to a monitor address or port),
    /// so a PROXY pool's checks send its header.
    pub at_member: bool,
    pub health: Arc<MemberHealth>,
}

/// Starts checking `members` of `pool_id`; aborting the handle stops every check.
pub(crate) fn spawn_pool_checker(
    pool_id: String,
    monitor: &HealthMonitor,
    probe: Probe,
    members: Vec<MonitoredMember>,
    board: Arc<StatusBoard>,
) -> JoinHandle<()> {
    let probe = Arc::new(probe);
    let delay = Duration::from_millis(monitor.delay_ms);
    let timeout = Duration::from_millis(monitor.timeout_ms);
    let rise_fall = RiseFall::new(monitor.max_retries, monitor.max_retries_down);
    let span = tracing::info_span!("health_check", pool = pool_id.as_str());
    let checking = async move {
        let checks = members.into_iter().map(|member| {
            check_member_forever(
                &pool_id,
                member,
                &probe,
                delay,
                timeout,
                rise_fall.clone(),
                &board,
            )
        });
        futures::future::join_all(checks).await;
    };
    tokio::spawn(checking.instrument(span))
}

async fn check_member_forever(
    pool_id: &str,
    member: MonitoredMember,
    probe: &Probe,
    delay: Duration,
    timeout: Duration,
    mut rise_fall: RiseFall,
    board: &StatusBoard,
) {
    let mut interval = tokio::time::interval(delay);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let verdict =
            match tokio::time::timeout(timeout, probe.check(member.target, member.at_member)).await
            {
                Ok(verdict) => verdict,
                Err(_) if probe.silence_passes() => Ok(()),
                Err(_) => Err(probe::ProbeFailure::TimedOut),
            };
        let current = member.health.status();
        let next = rise_fall.record(current, verdict.is_ok());
        if next != current {
            match &verdict {
                Ok(()) => tracing::info!(
                    member = member.member_id, target = %member.target,
                    "member back online"
                ),
                Err(failure) => tracing::warn!(
                    member = member.member_id, target = %member.target,
                    reason = %failure, "member failed its health checks"
                ),
            }
            member.health.set(next);
            board.publish(pool_id, &member.member_id, next);
        } else if let Err(failure) = &verdict {
            tracing::debug!(
                member = member.member_id, target = %member.target,
                reason = %failure, "health check failed"
            );
        }
    }
}

#[cfg(test)]
mod tests;
