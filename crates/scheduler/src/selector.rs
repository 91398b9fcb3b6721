//! Matching labels against selector requirements and taints against tolerations, with
//! apimachinery's and kube-scheduler's semantics. Nothing here allocates.

use std::collections::BTreeMap;

use crate::ledger::find;
use crate::model::{
    NodeSelectorTerm, SelectorOperator, SelectorRequirement, Taint, TaintEffect, Toleration,
    TolerationOperator,
};

impl SelectorRequirement {
    /// Whether `labels` satisfy this requirement. `NotIn` and `DoesNotExist` hold when the
    /// key is absent; `Gt` and `Lt` need the label and the single value to be integers.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = find(labels, &self.key);
        match self.operator {
            SelectorOperator::In => value.is_some_and(|value| self.values.contains(value)),
            SelectorOperator::NotIn => !value.is_some_and(|value| self.values.contains(value)),
            SelectorOperator::Exists => value.is_some(),
            SelectorOperator::DoesNotExist => value.is_none(),
            SelectorOperator::Gt | SelectorOperator::Lt => {
                let (Some(value), [bound]) = (value, self.values.as_slice()) else {
                    return false;
                };
                let (Ok(value), Ok(bound)) = (value.parse::<i64>(), bound.parse::<i64>()) else {
                    return false;
                };
                if self.operator == SelectorOperator::Gt {
                    value > bound
                } else {
                    value < bound
                }
            }
        }
    }
}

/// Whether `labels` satisfy every requirement (an empty list matches everything).
pub fn matches_all(
    requirements: &[SelectorRequirement],
    labels: &BTreeMap<String, String>,
) -> bool {
    requirements
        .iter()
        .all(|requirement| requirement.matches(labels))
}

impl NodeSelectorTerm {
    /// Whether a node with `labels` matches this term; an empty term matches no node.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        !self.match_expressions.is_empty() && matches_all(&self.match_expressions, labels)
    }
}

impl Toleration {
    /// kube's `ToleratesTaint`: the effects agree (or the toleration names none), the keys
    /// agree (or the toleration's is empty), and `Exists`, or `Equal` with the same value.
    pub fn tolerates(&self, taint: &Taint) -> bool {
        if self.effect.is_some_and(|effect| effect != taint.effect) {
            return false;
        }
        if !self.key.is_empty() && self.key != taint.key {
            return false;
        }
        match self.operator {
            TolerationOperator::Exists => true,
            TolerationOperator::Equal => self.value == taint.value,
        }
    }
}

/// Whether any of `tolerations` tolerates `taint`.
pub fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations
        .iter()
        .any(|toleration| toleration.tolerates(taint))
}

/// The first taint that forbids scheduling (`NoSchedule` or `NoExecute`) and that no
/// toleration tolerates.
pub fn first_untolerated<'a>(taints: &'a [Taint], tolerations: &[Toleration]) -> Option<&'a Taint> {
    taints.iter().find(|taint| {
        taint.effect != TaintEffect::PreferNoSchedule && !tolerated(tolerations, taint)
    })
}

/// How many `PreferNoSchedule` taints no toleration tolerates (a scoring penalty).
pub fn untolerated_preferences(taints: &[Taint], tolerations: &[Toleration]) -> usize {
    taints
        .iter()
        .filter(|taint| {
            taint.effect == TaintEffect::PreferNoSchedule && !tolerated(tolerations, taint)
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }

    fn requirement(key: &str, operator: SelectorOperator, values: &[&str]) -> SelectorRequirement {
        SelectorRequirement::new(key, operator, values.iter().copied())
    }

    #[test]
    fn requirements_follow_apimachinery() {
        use SelectorOperator::*;
        let node = labels(&[("disk", "ssd"), ("cores", "16")]);
        assert!(requirement("disk", In, &["ssd", "nvme"]).matches(&node));
        assert!(!requirement("disk", In, &["hdd"]).matches(&node));
        assert!(!requirement("absent", In, &["x"]).matches(&node));
        assert!(requirement("disk", NotIn, &["hdd"]).matches(&node));
        assert!(!requirement("disk", NotIn, &["ssd"]).matches(&node));
        assert!(requirement("absent", NotIn, &["x"]).matches(&node));
        assert!(requirement("disk", Exists, &[]).matches(&node));
        assert!(!requirement("absent", Exists, &[]).matches(&node));
        assert!(requirement("absent", DoesNotExist, &[]).matches(&node));
        assert!(!requirement("disk", DoesNotExist, &[]).matches(&node));
        assert!(requirement("cores", Gt, &["8"]).matches(&node));
        assert!(!requirement("cores", Gt, &["16"]).matches(&node));
        assert!(requirement("cores", Lt, &["17"]).matches(&node));
        assert!(!requirement("cores", Lt, &["16"]).matches(&node));
        // Non-integers, missing labels and anything but one value never compare.
        assert!(!requirement("disk", Gt, &["1"]).matches(&node));
        assert!(!requirement("absent", Lt, &["1"]).matches(&node));
        assert!(!requirement("cores", Gt, &["1", "2"]).matches(&node));
    }

    #[test]
    fn an_empty_node_selector_term_matches_nothing() {
        let term = NodeSelectorTerm {
            match_expressions: Vec::new(),
        };
        assert!(!term.matches(&labels(&[("a", "b")])));
        assert!(matches_all(&[], &labels(&[])));
    }

    #[test]
    fn tolerations_follow_kubernetes() {
        let taint = Taint::new("dedicated", "gpu", TaintEffect::NoSchedule);
        assert!(Toleration::equal("dedicated", "gpu", None).tolerates(&taint));
        assert!(
            Toleration::equal("dedicated", "gpu", Some(TaintEffect::NoSchedule)).tolerates(&taint)
        );
        assert!(
            !Toleration::equal("dedicated", "gpu", Some(TaintEffect::NoExecute)).tolerates(&taint)
        );
        assert!(!Toleration::equal("dedicated", "cpu", None).tolerates(&taint));
        assert!(Toleration::exists("dedicated", None).tolerates(&taint));
        assert!(Toleration::exists("", None).tolerates(&taint));
        assert!(!Toleration::exists("other", None).tolerates(&taint));
    }

    #[test]
    fn prefer_no_schedule_never_blocks_but_is_counted() {
        let taints = [
            Taint::new("soft", "", TaintEffect::PreferNoSchedule),
            Taint::new("hard", "x", TaintEffect::NoExecute),
        ];
        assert_eq!(
            first_untolerated(&taints, &[]).map(|t| t.key.as_str()),
            Some("hard")
        );
        assert_eq!(untolerated_preferences(&taints, &[]), 1);
        let tolerate_all = [Toleration::exists("", None)];
        assert_eq!(first_untolerated(&taints, &tolerate_all), None);
        assert_eq!(untolerated_preferences(&taints, &tolerate_all), 0);
    }
}
