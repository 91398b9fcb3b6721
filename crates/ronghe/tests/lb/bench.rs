//! `ronghe bench lb` runs end to end with tiny durations: both sides measured, the
//! control plane's create → ACTIVE and failover where a lab can run, the ratio last. Figures are not checked (a benchmark prints them; it does not assert them).

use std::process::Command;

use crate::BINARY;

/// The first of `programs` not on the PATH.
fn missing(programs: &[&'static str]) -> Option<&'static str> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    programs.iter().copied().find(|program| {
        !std::env::split_paths(&path).any(|directory| directory.join(program).is_file())
    })
}

#[test]
fn the_lb_bench_measures_both_proxies_and_ends_with_the_ratio() {
    if let Some(program) = missing(&["wrk", "haproxy"]) {
        eprintln!(
            "SKIPPED the_lb_bench_measures_both_proxies_and_ends_with_the_ratio: {program} is not \
             installed (scripts/test installs Debian's wrk and haproxy)"
        );
        return;
    }
    let output = Command::new(BINARY)
        .args([
            "bench",
            "lb",
            "--duration",
            "1",
            "--runs",
            "1",
            "--warm-up",
            "0",
            "--connections",
            "8",
            "--creates",
            "2",
        ])
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run ronghe bench lb");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "ronghe bench lb failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for side in [
        "lb run 1 ronghe :",
        "lb run 1 haproxy:",
        "lb run 1 relay  :",
    ] {
        let line = stdout
            .lines()
            .find(|line| line.starts_with(side))
            .unwrap_or_else(|| panic!("no {side:?} line in {stdout}"));
        assert!(
            line.contains("requests/s") && line.contains("p99") && line.contains("CPU/request"),
            "{line}"
        );
        assert!(!line.contains("not 2xx"), "every answer is a 200: {line}");
    }
    assert!(
        stdout
            .lines()
            .any(|line| line.starts_with("lb pairs: ratios ") && line.contains("(median ")),
        "no pair ratios in {stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|line| line.starts_with("lb reference: HAProxy relaying TCP")),
        "no reference in {stdout}"
    );
    // The control plane runs on a lab of two hosts where this machine has one (root,
    // runc, network namespaces) and says why not otherwise.
    let skipped = stdout.contains("lb control plane: skipped");
    if skipped {
        eprintln!("the control-plane half was skipped: {stdout}");
    } else {
        for figure in [
            "lb create → ACTIVE (2 load balancers",
            "lb failover: the VIP answered again",
        ] {
            assert!(stdout.contains(figure), "no {figure:?} in {stdout}");
        }
    }
    let last = stdout.lines().last().unwrap_or_default();
    let ratio: f64 = last
        .strip_prefix("lb: ratio ")
        .and_then(|ratio| ratio.parse().ok())
        .unwrap_or_else(|| panic!("the last line is not `lb: ratio R`: {stdout}"));
    assert!(ratio > 0.0, "{last}");
}
