//! `ronghe bench lb`: load balancing. The data plane: Ronghe's proxy (a `ronghe
//! proxy` process) side by side with HAProxy (Debian's 2.6), both on one HTTP listener
//! with round robin over the same 3 members (a `ronghe bench lb-backend` process), loaded
//! by `wrk` on loopback. For each: requests/s, latency p50 and p99, and CPU per request
//! (the proxy process's user + system time over a run, divided by the requests served).
//!
//! Fairness: the same worker threads (`--proxy-threads`: Ronghe's runtime workers,
//! HAProxy's `nbthread`), nothing logged per request (Ronghe at `RUST_LOG=warn`, HAProxy
//! without a `log` line), both reusing idle member connections (HAProxy's `http-reuse
//! always`, what it does in production; Ronghe's proxy always does), the same timeouts,
//! no health checks, no inserted headers. Runs alternate
//! (Ronghe, HAProxy, relay, Ronghe, HAProxy, relay, ...; the relay is the reference
//! below) after a warm-up of each; every run is printed,
//! and each side's summary is its best run by requests/s (other work on the machine only
//! ever slows a run down), followed by each pair's ratio and their median (a pair's runs
//! are close in time, so the median moves less with the machine's other load). The last
//! line is `lb: ratio R`, Ronghe's best requests/s over HAProxy's.
//!
//! A reference: each round also measures HAProxy relaying TCP to the same members (`mode
//! tcp`), which reads no HTTP at all but makes the same socket calls per request (two
//! reads, two writes) and shares the machine with wrk and the members just as the HTTP
//! proxies do. Its requests/s over HAProxy's HTTP ones (`lb reference:`) is what HAProxy
//! gains by leaving its HTTP work out: on a small machine, where most of each request's
//! CPU is the kernel's TCP and the load generator's and members' share, a few percent,
//! which puts the size of any HTTP proxy's lead over HAProxy in proportion.
//!
//! Then the control plane (`control.rs`): create → ACTIVE and failover on a lab of two
//! hosts (root, runc; `--no-control-plane` leaves it out).
//!
//! Needs `wrk` and `haproxy` (`scripts/test` installs them).

mod backend;
mod control;
mod sides;
mod wrk;

use std::time::Duration;

use anyhow::Context;

pub use backend::{BackendArgs, run as run_backend};
use sides::Started;
use wrk::{Load, WrkReport};

#[derive(clap::Args, Debug)]
pub struct LbBenchArgs {
    /// Seconds of load in each measured run.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Connections wrk keeps open.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// wrk's threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Worker threads of each proxy (Ronghe's runtime workers, HAProxy's nbthread).
    #[arg(long, default_value_t = 1)]
    proxy_threads: usize,
    /// Measured runs of each side, alternated.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Seconds of unmeasured load on each side first (0: none).
    #[arg(long, default_value_t = 2)]
    warm_up: u64,
    /// Bytes in each member answer's body.
    #[arg(long, default_value_t = 64)]
    body_bytes: usize,
    /// Load balancers created one after another for create → ACTIVE.
    #[arg(long, default_value_t = 10)]
    creates: usize,
    /// Leave out the control plane (create → ACTIVE and failover on a lab of two hosts).
    #[arg(long)]
    no_control_plane: bool,
}

/// The members behind both proxies.
const MEMBERS: usize = 3;

pub async fn run(args: LbBenchArgs) -> anyhow::Result<()> {
    let data_plane = data_plane(&args).await?;
    if !args.no_control_plane {
        control::measure(args.creates).await?;
    }
    println!("lb: ratio {:.2}", data_plane.ratio());
    Ok(())
}

/// One measured run of one side.
#[derive(Debug, Clone, Copy)]
pub struct RunFigures {
    pub wrk: WrkReport,
    pub cpu: Duration,
}

impl RunFigures {
    pub fn cpu_per_request(&self) -> Duration {
        let requests = u32::try_from(self.wrk.requests.max(1)).unwrap_or(u32::MAX);
        self.cpu / requests
    }

    fn show(&self) -> String {
        let mut line = format!(
            "{:>8.0} requests/s, p50 {}, p99 {}, {:.1} µs CPU/request ({} requests",
            self.wrk.requests_per_second,
            fine(self.wrk.p50),
            fine(self.wrk.p99),
            self.cpu_per_request().as_secs_f64() * 1e6,
            self.wrk.requests,
        );
        if self.wrk.bad_answers > 0 {
            line.push_str(&format!(", {} not 2xx/3xx", self.wrk.bad_answers));
        }
        if self.wrk.socket_errors > 0 {
            line.push_str(&format!(", {} socket errors", self.wrk.socket_errors));
        }
        line.push(')');
        line
    }
}

/// Every side's runs, in the order they ran.
#[derive(Debug, Clone)]
pub struct DataPlaneFigures {
    pub ronghe: Vec<RunFigures>,
    pub haproxy: Vec<RunFigures>,
    /// HAProxy's TCP relay over the same members: the reference (see above).
    pub relay: Vec<RunFigures>,
}

impl DataPlaneFigures {
    /// Each pair of runs' ratio (Ronghe's requests/s over HAProxy's in the run right
    /// after), in order, and their median: steadier than the best of each side when the
    /// machine's other load comes and goes, since a pair's runs are close in time.
    pub fn pair_ratios(&self) -> (Vec<f64>, f64) {
        pair_ratios(&self.ronghe, &self.haproxy)
    }

    /// Ronghe's best requests/s over HAProxy's.
    pub fn ratio(&self) -> f64 {
        best_ratio(&self.ronghe, &self.haproxy)
    }
}

/// The best requests/s of `runs` over the best of `reference`.
fn best_ratio(runs: &[RunFigures], reference: &[RunFigures]) -> f64 {
    best(runs).wrk.requests_per_second
        / best(reference)
            .wrk
            .requests_per_second
            .max(f64::MIN_POSITIVE)
}

/// The requests/s of each run of `runs` over the run of `reference` made beside it, and
/// the median of those ratios.
fn pair_ratios(runs: &[RunFigures], reference: &[RunFigures]) -> (Vec<f64>, f64) {
    let ratios: Vec<f64> = runs
        .iter()
        .zip(reference)
        .map(|(run, beside)| {
            run.wrk.requests_per_second / beside.wrk.requests_per_second.max(f64::MIN_POSITIVE)
        })
        .collect();
    let mut sorted = ratios.clone();
    sorted.sort_by(f64::total_cmp);
    let median = match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    };
    (ratios, median)
}

/// The run with the most requests/s.
fn best(runs: &[RunFigures]) -> RunFigures {
    runs.iter()
        .copied()
        .max_by(|a, b| {
            a.wrk
                .requests_per_second
                .total_cmp(&b.wrk.requests_per_second)
        })
        .expect("at least one run per side")
}

/// A latency with the precision it needs (tens of microseconds on loopback).
fn fine(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1000.0)
}

/// The data-plane comparison: starts the backends and both proxies, checks that both
/// balance over every member, then alternates measured runs; prints as it goes.
pub async fn data_plane(args: &LbBenchArgs) -> anyhow::Result<DataPlaneFigures> {
    let binary = std::env::current_exe().context("locating the ronghe binary")?;
    let directory = tempfile::tempdir().context("a temporary directory")?;
    let (_backends, members) = sides::start_backends(&binary, MEMBERS, args.body_bytes)?;
    let threads = args.proxy_threads.max(1);
    let (ronghe, ronghe_address) =
        sides::start_ronghe(&binary, directory.path(), &members, threads).await?;
    let (haproxy, haproxy_addresses) =
        sides::start_haproxy(directory.path(), &members, threads).await?;
    let haproxy_address = haproxy_addresses.http;
    sides::check_balancing("ronghe", ronghe_address, MEMBERS).await?;
    sides::check_balancing("haproxy", haproxy_address, MEMBERS).await?;
    sides::check_balancing("haproxy's relay", haproxy_addresses.relay, MEMBERS).await?;

    let load = Load {
        threads: args.threads.max(1),
        connections: args.connections.max(1),
        duration: Duration::from_secs(args.duration.max(1)),
    };
    println!(
        "lb data plane: HTTP, round robin over {MEMBERS} members ({} B bodies, one backend process), \
         {} proxy thread(s) each; wrk {} thread(s), {} connections, {} s per run, {} runs per side \
         alternated after {} s of warm-up each; CPU is the proxy process's user + system time; \
         \"relay\" is HAProxy relaying TCP to the same members without reading HTTP \
         (the reference)",
        args.body_bytes,
        threads,
        load.threads,
        load.connections,
        load.duration.as_secs(),
        args.runs.max(1),
        args.warm_up,
    );
    if args.warm_up > 0 {
        let warm_up = Load {
            duration: Duration::from_secs(args.warm_up),
            ..load
        };
        wrk::run(ronghe_address, warm_up).await?;
        wrk::run(haproxy_address, warm_up).await?;
        wrk::run(haproxy_addresses.relay, warm_up).await?;
    }
    let mut figures = DataPlaneFigures {
        ronghe: Vec::new(),
        haproxy: Vec::new(),
        relay: Vec::new(),
    };
    for run in 1..=args.runs.max(1) {
        let figure = measure(&ronghe, ronghe_address, load).await?;
        println!("lb run {run} ronghe : {}", figure.show());
        figures.ronghe.push(figure);
        let figure = measure(&haproxy, haproxy_address, load).await?;
        println!("lb run {run} haproxy: {}", figure.show());
        figures.haproxy.push(figure);
        let figure = measure(&haproxy, haproxy_addresses.relay, load).await?;
        println!("lb run {run} relay  : {}", figure.show());
        figures.relay.push(figure);
    }
    println!(
        "lb ronghe  (best of {}): {}",
        figures.ronghe.len(),
        best(&figures.ronghe).show()
    );
    println!(
        "lb haproxy (best of {}): {}",
        figures.haproxy.len(),
        best(&figures.haproxy).show()
    );
    println!(
        "lb relay   (best of {}): {}",
        figures.relay.len(),
        best(&figures.relay).show()
    );
    let (ratios, median) = figures.pair_ratios();
    let shown: Vec<String> = ratios.iter().map(|ratio| format!("{ratio:.2}")).collect();
    println!("lb pairs: ratios {} (median {median:.2})", shown.join(" "));
    let (_, relay_median) = pair_ratios(&figures.relay, &figures.haproxy);
    println!(
        "lb reference: HAProxy relaying TCP without reading HTTP reached {:.2}x its HTTP \
         requests/s (best over best; pairs median {relay_median:.2}): what leaving all HTTP work \
         out gains on this machine",
        best_ratio(&figures.relay, &figures.haproxy)
    );
    drop(ronghe);
    drop(haproxy);
    Ok(figures)
}

async fn measure(
    proxy: &Started,
    address: std::net::SocketAddr,
    load: Load,
) -> anyhow::Result<RunFigures> {
    let before = proxy.cpu_time()?;
    let wrk = wrk::run(address, load).await?;
    let cpu = proxy.cpu_time()?.saturating_sub(before);
    Ok(RunFigures { wrk, cpu })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(rates: &[f64]) -> Vec<RunFigures> {
        rates
            .iter()
            .map(|&requests_per_second| RunFigures {
                wrk: WrkReport {
                    requests: 1,
                    requests_per_second,
                    p50: Duration::ZERO,
                    p99: Duration::ZERO,
                    bad_answers: 0,
                    socket_errors: 0,
                },
                cpu: Duration::ZERO,
            })
            .collect()
    }

    #[test]
    fn the_ratio_is_best_over_best_and_pairs_have_a_median() {
        let figures = DataPlaneFigures {
            ronghe: runs(&[110.0, 90.0, 120.0]),
            haproxy: runs(&[100.0, 100.0, 60.0]),
            relay: runs(&[130.0, 100.0, 70.0]),
        };
        assert!((figures.ratio() - 1.2).abs() < 1e-9);
        let (ratios, median) = figures.pair_ratios();
        assert_eq!(ratios.len(), 3);
        assert!((median - 1.1).abs() < 1e-9, "{ratios:?} {median}");
        let even = DataPlaneFigures {
            ronghe: runs(&[110.0, 90.0]),
            haproxy: runs(&[100.0, 100.0]),
            relay: Vec::new(),
        };
        assert!((even.pair_ratios().1 - 1.0).abs() < 1e-9);
        // The reference (the relay), over the same HAProxy runs.
        assert!((best_ratio(&figures.relay, &figures.haproxy) - 1.3).abs() < 1e-9);
        let (relay, relay_median) = pair_ratios(&figures.relay, &figures.haproxy);
        assert_eq!(relay.len(), 3);
        assert!((relay_median - 1.1666).abs() < 1e-3, "{relay:?}");
    }
}
