//! The search: visit hosts in rotated order, filter, score, stop once enough feasible
//! hosts are found (kube-scheduler's `percentageOfNodesToScore`), and pick the best; and
//! [`place`], which applies a decision to an in-memory snapshot.

use std::collections::BTreeMap;

use crate::filter::{Fit, Prepared, Reason};
use crate::model::{Config, Decision, Host, Workload};
use crate::score::score;
use crate::unschedulable::Unschedulable;

#[cfg(test)]
mod tests;

/// The share of the pool the adaptive percentage never goes under, as in kube-scheduler.
const MIN_PERCENTAGE_TO_FIND: usize = 5;

/// How many feasible hosts to find in a pool of `hosts` before choosing, with
/// kube-scheduler's `numFeasibleNodesToFind`: all of a pool smaller than
/// `min_feasible_to_find`; otherwise `hosts * percentage / 100` but at least
/// `min_feasible_to_find`, where the adaptive percentage is `50 - hosts / 125`, at least 5.
pub fn num_feasible_to_find(hosts: usize, config: &Config) -> usize {
    if hosts < config.min_feasible_to_find {
        return hosts;
    }
    let percentage = match config.percentage_of_hosts_to_score {
        Some(percentage) if percentage > 0 => percentage as usize,
        _ => 50usize
            .saturating_sub(hosts / 125)
            .max(MIN_PERCENTAGE_TO_FIND),
    };
    if percentage >= 100 {
        return hosts;
    }
    (hosts * percentage / 100)
        .max(config.min_feasible_to_find)
        .clamp(1, hosts.max(1))
}

/// Chooses a host for `workload` among `hosts`, visiting them from `start % hosts.len()`
/// round the pool and stopping once [`num_feasible_to_find`] feasible hosts are found.
/// The best score wins; a tie goes to the host visited first. A pure function of its
/// arguments: the same snapshot gives the same decision.
///
/// On failure every host has been visited, and [`Unschedulable`] counts each host's first
/// failing reason. [`Snapshot::schedule`](crate::Snapshot::schedule) gives the same answers
/// faster when the same pool serves many decisions.
pub fn schedule(
    hosts: &[Host],
    workload: &Workload,
    config: &Config,
    start: usize,
) -> Result<Decision, Unschedulable> {
    let prepared = Prepared::new(hosts, workload);
    search(hosts, &prepared, config, start, |host_index, host| {
        prepared.check(host_index, host)
    })
}

/// The search itself, with `check` filtering the host at an index.
pub(crate) fn search<'a>(
    hosts: &'a [Host],
    prepared: &Prepared<'a>,
    config: &Config,
    start: usize,
    mut check: impl FnMut(usize, &'a Host) -> Result<Fit, Reason<'a>>,
) -> Result<Decision, Unschedulable> {
    let count = hosts.len();
    if count == 0 {
        return Err(Unschedulable {
            reasons: BTreeMap::new(),
            hosts: 0,
        });
    }
    let to_find = num_feasible_to_find(count, config).max(1);
    let start = start % count;

    let mut best: Option<(usize, f64)> = None;
    let mut feasible = 0;
    let mut visited = 0;
    // Reasons are only needed when nothing fits, so counting stops at the first fit.
    let mut rejected: BTreeMap<Reason<'_>, usize> = BTreeMap::new();
    for offset in 0..count {
        let index = if start + offset < count {
            start + offset
        } else {
            start + offset - count
        };
        let host = &hosts[index];
        visited = offset + 1;
        match check(index, host) {
            Ok(fit) => {
                let score = score(prepared, index, host, fit, config.strategy);
                if best.is_none_or(|(_, best_score)| score > best_score) {
                    best = Some((index, score));
                }
                feasible += 1;
                if feasible >= to_find {
                    break;
                }
            }
            Err(reason) if feasible == 0 => *rejected.entry(reason).or_insert(0) += 1,
            Err(_) => {}
        }
    }

    let Some((index, _)) = best else {
        let mut reasons = BTreeMap::new();
        for (reason, hosts) in rejected {
            *reasons.entry(reason.to_string()).or_insert(0) += hosts;
        }
        return Err(Unschedulable {
            reasons,
            hosts: count,
        });
    };
    Ok(Decision {
        host: hosts[index].name.clone(),
        allocation: prepared.workload.allocation(),
        next_start: (start + visited) % count,
    })
}

/// A decision named a host that the snapshot does not hold.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("host {host} is not in the snapshot")]
pub struct UnknownHost {
    pub host: String,
}

/// Applies `decision` for `workload` to the snapshot: charges the allocation to the chosen
/// host and records the workload as placed there, so the next [`schedule`] sees it.
pub fn place(
    hosts: &mut [Host],
    workload: &Workload,
    decision: &Decision,
) -> Result<(), UnknownHost> {
    let host = hosts
        .iter_mut()
        .find(|host| host.name == decision.host)
        .ok_or_else(|| UnknownHost {
            host: decision.host.clone(),
        })?;
    host.allocate(workload, &decision.allocation);
    Ok(())
}
