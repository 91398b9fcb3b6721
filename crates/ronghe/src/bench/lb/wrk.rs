//! Running `wrk` (Debian's package) against one address and reading its report.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};

/// What one wrk run reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WrkReport {
    pub requests: u64,
    pub requests_per_second: f64,
    pub p50: Duration,
    pub p99: Duration,
    /// Answers that were not 2xx or 3xx.
    pub bad_answers: u64,
    /// Connect, read, write and timeout errors together.
    pub socket_errors: u64,
}

/// How wrk loads the target.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub threads: usize,
    pub connections: usize,
    pub duration: Duration,
}

/// Runs wrk against `http://ADDRESS/` and parses its report.
pub async fn run(address: SocketAddr, load: Load) -> anyhow::Result<WrkReport> {
    let output = tokio::process::Command::new("wrk")
        .arg("--threads")
        .arg(load.threads.max(1).to_string())
        .arg("--connections")
        .arg(load.connections.max(load.threads).max(1).to_string())
        .arg("--duration")
        .arg(format!("{}s", load.duration.as_secs().max(1)))
        .arg("--latency")
        .arg(format!("http://{address}/"))
        .kill_on_drop(true)
        .output()
        .await
        .context("running wrk (Debian's wrk package)")?;
    let report = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "wrk failed ({}): {report}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    parse(&report).with_context(|| format!("reading wrk's report:\n{report}"))
}

/// Reads wrk 4's report (`--latency`).
pub fn parse(report: &str) -> anyhow::Result<WrkReport> {
    let mut requests = None;
    let mut requests_per_second = None;
    let mut p50 = None;
    let mut p99 = None;
    let mut bad_answers = 0;
    let mut socket_errors = 0;
    for line in report.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", value] => p50 = Some(duration(value)?),
            ["99%", value] => p99 = Some(duration(value)?),
            ["Requests/sec:", value] => requests_per_second = Some(value.parse::<f64>()?),
            [count, "requests", "in", ..] => requests = Some(count.parse::<u64>()?),
            ["Non-2xx", "or", "3xx", "responses:", count] => bad_answers = count.parse()?,
            ["Socket", "errors:", rest @ ..] => {
                // "connect 0, read 0, write 0, timeout 0"
                socket_errors = rest
                    .iter()
                    .filter_map(|word| word.trim_end_matches(',').parse::<u64>().ok())
                    .sum();
            }
            _ => {}
        }
    }
    Ok(WrkReport {
        requests: requests.context("no request count")?,
        requests_per_second: requests_per_second.context("no Requests/sec")?,
        p50: p50.context("no 50% latency (--latency)")?,
        p99: p99.context("no 99% latency (--latency)")?,
        bad_answers,
        socket_errors,
    })
}

/// wrk's durations: `635.00us`, `1.20ms`, `2.01s`, `1.50m`.
fn duration(text: &str) -> anyhow::Result<Duration> {
    let split = text
        .find(|character: char| character.is_ascii_alphabetic())
        .with_context(|| format!("no unit in {text:?}"))?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .with_context(|| format!("not a number in {text:?}"))?;
    let seconds = match unit {
        "us" => number / 1e6,
        "ms" => number / 1e3,
        "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => bail!("unknown unit in {text:?}"),
    };
    Ok(Duration::from_nanos((seconds * 1e9).round() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_report() {
        let report = "\
Running 1s test @ http://127.0.0.1:40000/
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   325.51us  112.48us   3.10ms   90.43%
    Req/Sec    24.43k     1.21k   25.87k    72.73%
  Latency Distribution
     50%  301.00us
     75%  338.00us
     90%  408.00us
     99%    1.20ms
  26736 requests in 1.10s, 3.52MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:  24305.02
Transfer/sec:      3.20MB
";
        let parsed = parse(report).unwrap();
        assert_eq!(parsed.requests, 26736);
        assert!((parsed.requests_per_second - 24305.02).abs() < 1e-6);
        assert_eq!(parsed.p50, Duration::from_micros(301));
        assert_eq!(parsed.p99, Duration::from_micros(1200));
        assert_eq!(parsed.bad_answers, 4);
        assert_eq!(parsed.socket_errors, 3);
        assert!(parse("nothing").is_err());
    }
}
