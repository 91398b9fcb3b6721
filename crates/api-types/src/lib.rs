//! Wire types and pure logic for Ronghe's Kubernetes API face: no I/O, like kube-core.
//!
//! Everything here mirrors what `k8s.io/apimachinery` (v0.32, the release matching the
//! `minor: "32"` we report from `/version`) puts on the wire, down to the wording of error
//! messages, because kubectl and kube-rs print those messages verbatim.
//!
//! * [`selector`]: label and field selector parsing, canonical printing and matching.
//! * [`status`]: `metav1.Status` and constructors for the conventional failure reasons.
//! * [`table`]: `meta.k8s.io/v1` `Table` and `PartialObjectMetadata` for `kubectl get`.
//! * [`duration`]: `HumanDuration` ages (`45s`, `5m30s`, `3h2m`, `2d`).
//! * [`quantity`]: resource quantities (`500m`, `1Gi`) as exact thousandths.
//! * [`validation`]: name, label and annotation validation returning apimachinery messages.
//! * [`watch`]: the one-line-per-event watch wire type.

mod quote;

pub mod duration;
pub mod loadbalancing;
pub mod network;
pub mod quantity;
pub mod selector;
pub mod status;
pub mod table;
pub mod validation;
pub mod watch;
