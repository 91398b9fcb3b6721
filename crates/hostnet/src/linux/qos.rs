//! Ingress QoS (toward the workload): a tbf qdisc at the root of the port's host-side
//! device, whose egress is the workload's ingress. Egress QoS (from the workload) is a
//! `limit` in the nftables ruleset instead: this kernel has no police action for an
//! ingress qdisc.

use std::path::Path;

use crate::error::HostNetError;
use crate::plan::Bandwidth;
use crate::run::run;
use crate::{Action, Applied};

/// The root qdisc as `tc -j qdisc show` reports it.
#[derive(Debug, PartialEq, Eq)]
struct RootQdisc {
    kind: String,
    rate: Option<u64>,
    burst: Option<u64>,
}

/// tbf's rate in bytes per second and burst in bytes; the bucket holds at least two
/// full frames, or frames larger than it would never pass.
fn tbf_parameters(bandwidth: Bandwidth, mtu: u32) -> (u64, u64) {
    let rate = u64::from(bandwidth.max_kbps) * 125;
    let burst = (u64::from(bandwidth.burst_kbit) * 125).max(2 * (u64::from(mtu) + 14));
    (rate, burst)
}

fn parse_root(json: &str) -> Option<RootQdisc> {
    let qdiscs: Vec<serde_json::Value> = serde_json::from_str(json).ok()?;
    let root = qdiscs
        .iter()
        .find(|q| q.get("root").and_then(serde_json::Value::as_bool) == Some(true))?;
    let options = root.get("options");
    let number = |key: &str| {
        options
            .and_then(|o| o.get(key))
            .and_then(serde_json::Value::as_u64)
    };
    Some(RootQdisc {
        kind: root.get("kind")?.as_str()?.to_string(),
        rate: number("rate"),
        burst: number("burst"),
    })
}

pub(crate) async fn ensure_ingress_shaping(
    netns: Option<&Path>,
    device: &str,
    bandwidth: Option<Bandwidth>,
    mtu: u32,
    applied: &mut Applied,
) -> Result<(), HostNetError> {
    let shown = run(netns, "tc", &["-j", "qdisc", "show", "dev", device], None).await?;
    let root = parse_root(&shown);
    let is_tbf = root.as_ref().is_some_and(|q| q.kind == "tbf");
    match bandwidth {
        None => {
            if is_tbf {
                run(netns, "tc", &["qdisc", "del", "dev", device, "root"], None).await?;
                applied.record(Action::Removed, format!("tbf on {device}"));
            }
        }
        Some(bandwidth) => {
            let (rate, burst) = tbf_parameters(bandwidth, mtu);
            let matches = root
                .as_ref()
                .is_some_and(|q| q.kind == "tbf" && q.rate == Some(rate) && q.burst == Some(burst));
            if !matches {
                let rate_arg = format!("{rate}bps");
                let burst_arg = burst.to_string();
                run(
                    netns,
                    "tc",
                    &[
                        "qdisc", "replace", "dev", device, "root", "tbf", "rate", &rate_arg,
                        "burst", &burst_arg, "latency", "50ms",
                    ],
                    None,
                )
                .await?;
                let action = if is_tbf {
                    Action::Repaired
                } else {
                    Action::Created
                };
                applied.record(action, format!("tbf on {device}"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_tc_json() {
        let json = r#"[{"kind":"tbf","handle":"8001:","root":true,"refcnt":3,"options":{"rate":125000,"burst":15000,"lat":50000}}]"#;
        assert_eq!(
            parse_root(json),
            Some(RootQdisc {
                kind: "tbf".into(),
                rate: Some(125000),
                burst: Some(15000)
            })
        );
        assert_eq!(parse_root("[]"), None);
        assert_eq!(
            tbf_parameters(
                Bandwidth {
                    max_kbps: 1000,
                    burst_kbit: 100
                },
                1450
            ),
            (125000, 12500)
        );
        assert_eq!(
            tbf_parameters(
                Bandwidth {
                    max_kbps: 1000,
                    burst_kbit: 0
                },
                1500
            ),
            (125000, 3028)
        );
    }
}
