//! `GET /allocation_candidates` (1.10): the ways a request could be placed now, computed
//! from inventories minus what the ledger holds (capacity `(total - reserved) *
//! allocation_ratio`, each amount within `min_unit`, `max_unit` and `step_size`).
//!
//! A request is groups: the unnumbered one (`resources`, `required`, `member_of`), whose
//! classes may each come from any provider of one tree, and from 1.25 numbered ones
//! (`resources1`, ...), each wholly from one provider of that tree, kept apart under
//! `group_policy=isolate`. From 1.29 trees are searched whole (nested providers); before,
//! only root providers serve, as Placement excluded nested ones. The search is a pure
//! function of the pool.

use std::collections::{BTreeMap, BTreeSet};

use axum::response::Response;
use http::StatusCode;
use serde_json::{Map, Value, json};

use super::microversion::Microversion;
use super::model::{Pool, capacity};
use super::query::{self, Params};
use super::{Call, answer, bad_request};
use crate::fault::FaultResult;

/// The most candidates computed for one request when it sets no `limit`.
const MAX_CANDIDATES: usize = 1000;

/// One request group.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Group {
    /// `""` for the unnumbered group.
    pub suffix: String,
    pub resources: BTreeMap<String, i64>,
    pub required: BTreeSet<String>,
    pub forbidden: BTreeSet<String>,
    /// Each set: the provider must be in one of its aggregates.
    pub member_of: Vec<BTreeSet<String>>,
}

/// A whole request.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Request {
    pub groups: Vec<Group>,
    /// `group_policy=isolate`: numbered groups on distinct providers.
    pub isolate: bool,
    pub limit: Option<usize>,
    /// 1.29: nested providers serve too.
    pub nested: bool,
}

/// One allocation request: amounts by provider (index in the pool) and class.
pub(super) type Candidate = BTreeMap<usize, BTreeMap<String, i64>>;

/// One choice to make: a numbered group (all of it on one provider) or one class of the
/// unnumbered group.
struct Slot<'a> {
    group: &'a Group,
    /// The class, for a slot of the unnumbered group.
    class: Option<(&'a str, i64)>,
    options: Vec<usize>,
}

/// The candidates for a request, tree after tree in pool order.
pub(super) fn search(pool: &Pool, request: &Request) -> Vec<Candidate> {
    let cap = request.limit.unwrap_or(MAX_CANDIDATES).min(MAX_CANDIDATES);
    let mut found: Vec<Candidate> = Vec::new();
    let mut seen: BTreeSet<Candidate> = BTreeSet::new();
    for root in pool.roots() {
        if found.len() >= cap {
            break;
        }
        let members = if request.nested {
            pool.tree(root)
        } else {
            vec![root]
        };
        let slots = slots(pool, request, &members);
        if slots.iter().any(|slot| slot.options.is_empty()) {
            continue;
        }
        let mut search = Search {
            pool,
            request,
            slots: &slots,
            chosen: Vec::with_capacity(slots.len()),
            amounts: Candidate::new(),
            found: &mut found,
            seen: &mut seen,
            cap,
        };
        search.step(0);
    }
    found
}

/// The slots of a request within one tree, each with the providers that could take it
/// on their own.
fn slots<'a>(pool: &Pool, request: &'a Request, members: &[usize]) -> Vec<Slot<'a>> {
    let mut slots = Vec::new();
    for group in &request.groups {
        let eligible = |index: &usize| {
            let provider = &pool.providers[*index];
            provider.member_of_all(&group.member_of)
                && !group.forbidden.iter().any(|t| provider.traits.contains(t))
        };
        if group.suffix.is_empty() {
            for (class, amount) in &group.resources {
                let options = members
                    .iter()
                    .filter(|index| eligible(index))
                    .filter(|index| pool.providers[**index].fits(class, *amount, 0))
                    .copied()
                    .collect();
                slots.push(Slot {
                    group,
                    class: Some((class, *amount)),
                    options,
                });
            }
        } else {
            let options = members
                .iter()
                .filter(|index| eligible(index))
                .filter(|index| {
                    let provider = &pool.providers[**index];
                    group.required.iter().all(|t| provider.traits.contains(t))
                        && group
                            .resources
                            .iter()
                            .all(|(class, amount)| provider.fits(class, *amount, 0))
                })
                .copied()
                .collect();
            slots.push(Slot {
                group,
                class: None,
                options,
            });
        }
    }
    slots
}

struct Search<'a, 'b> {
    pool: &'a Pool,
    request: &'a Request,
    slots: &'a [Slot<'a>],
    /// The provider chosen for each slot so far.
    chosen: Vec<usize>,
    amounts: Candidate,
    found: &'b mut Vec<Candidate>,
    seen: &'b mut BTreeSet<Candidate>,
    cap: usize,
}

impl Search<'_, '_> {
    fn step(&mut self, slot_index: usize) {
        if self.found.len() >= self.cap {
            return;
        }
        let Some(slot) = self.slots.get(slot_index) else {
            self.finish();
            return;
        };
        let wants: Vec<(&str, i64)> = match slot.class {
            Some(one) => vec![one],
            None => slot
                .group
                .resources
                .iter()
                .map(|(class, amount)| (class.as_str(), *amount))
                .collect(),
        };
        for &provider in &slot.options {
            if self.request.isolate
                && slot.class.is_none()
                && self
                    .chosen
                    .iter()
                    .zip(self.slots)
                    .any(|(&other, other_slot)| other == provider && other_slot.class.is_none())
            {
                continue;
            }
            let held = self.amounts.get(&provider);
            let fits = wants.iter().all(|(class, amount)| {
                let already = held.and_then(|h| h.get(*class)).copied().unwrap_or(0);
                self.pool.providers[provider].fits(class, *amount, already.saturating_mul(1000))
            });
            if !fits {
                continue;
            }
            for (class, amount) in &wants {
                *self
                    .amounts
                    .entry(provider)
                    .or_default()
                    .entry((*class).to_owned())
                    .or_default() += amount;
            }
            self.chosen.push(provider);
            self.step(slot_index + 1);
            self.chosen.pop();
            if let Some(held) = self.amounts.get_mut(&provider) {
                for (class, amount) in &wants {
                    if let Some(total) = held.get_mut(*class) {
                        *total -= amount;
                        if *total == 0 {
                            held.remove(*class);
                        }
                    }
                }
                if held.is_empty() {
                    self.amounts.remove(&provider);
                }
            }
        }
    }

    /// A full choice: the unnumbered group's traits must be somewhere among the providers
    /// it uses.
    fn finish(&mut self) {
        for group in self.request.groups.iter().filter(|g| g.suffix.is_empty()) {
            let used: BTreeSet<usize> = self
                .chosen
                .iter()
                .zip(self.slots)
                .filter(|(_, slot)| slot.class.is_some())
                .map(|(&provider, _)| provider)
                .collect();
            let has = |name: &String| {
                used.iter()
                    .any(|&index| self.pool.providers[index].traits.contains(name))
            };
            if !group.required.iter().all(has) {
                return;
            }
        }
        if self.seen.insert(self.amounts.clone()) {
            self.found.push(self.amounts.clone());
        }
    }
}

/// The query keys of a request group: (`resources`, `required`, `member_of`) with the
/// group's suffix.
fn group_key(key: &str) -> Option<(&'static str, &str)> {
    ["resources", "required", "member_of"]
        .into_iter()
        .find_map(|base| key.strip_prefix(base).map(|suffix| (base, suffix)))
}

/// Whether a suffix names a numbered group (`1`, `2`, ...; 1.25).
fn is_group_number(suffix: &str) -> bool {
    let bytes = suffix.as_bytes();
    !bytes.is_empty() && bytes[0] != b'0' && bytes.iter().all(u8::is_ascii_digit)
}

/// Parses the query of `GET /allocation_candidates` at a version.
pub(super) fn parse(params: &Params, version: Microversion) -> FaultResult<Request> {
    params.only(|key| match key {
        "resources" => true,
        "limit" => version.at_least(16),
        "required" => version.at_least(17),
        "member_of" => version.at_least(21),
        "group_policy" => version.at_least(25),
        _ => {
            version.at_least(25)
                && group_key(key).is_some_and(|(_, suffix)| is_group_number(suffix))
        }
    })?;
    let suffixes: BTreeSet<&str> = params
        .0
        .iter()
        .filter_map(|(key, _)| group_key(key).map(|(_, suffix)| suffix))
        .collect();
    let mut groups = Vec::new();
    for suffix in suffixes {
        let resources_key = format!("resources{suffix}");
        let Some(resources) = params.one(&resources_key)? else {
            let orphans: Vec<String> = ["required", "member_of"]
                .iter()
                .map(|base| format!("{base}{suffix}"))
                .filter(|key| !params.all(key).is_empty())
                .collect();
            return Err(bad_request(format!(
                "All traits and member_of parameters must be associated with resources. Found the following orphaned keys: {}",
                orphans.join(", ")
            )));
        };
        let (required, forbidden) = params
            .one(&format!("required{suffix}"))?
            .map(|text| query::traits(text, version))
            .transpose()?
            .unwrap_or_default();
        let member_key = format!("member_of{suffix}");
        groups.push(Group {
            suffix: suffix.to_owned(),
            resources: query::resources(resources)?,
            required,
            forbidden,
            member_of: query::member_of(&params.all(&member_key), &member_key, version)?,
        });
    }
    if groups.is_empty() {
        return Err(bad_request(
            "Invalid query string parameters: 'resources' is a required property",
        ));
    }
    let isolate = match params.one("group_policy")? {
        None => {
            if groups.iter().filter(|g| !g.suffix.is_empty()).count() > 1 {
                return Err(bad_request(
                    "The \"group_policy\" parameter is required when specifying more than one \"resources{N}\" parameter.",
                ));
            }
            false
        }
        Some("none") => false,
        Some("isolate") => true,
        Some(other) => {
            return Err(bad_request(format!(
                "Invalid query string parameters: '{other}' is not one of ['none', 'isolate']"
            )));
        }
    };
    let limit =
        params
            .one("limit")?
            .map(|text| {
                text.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
                bad_request(format!(
                    "Invalid query string parameters: '{text}' does not match '^[1-9][0-9]*$'"
                ))
            })
            })
            .transpose()?;
    Ok(Request {
        groups,
        isolate,
        limit,
        nested: version.at_least(29),
    })
}

/// The answer at a version: allocation requests (a list per provider before 1.12, a map
/// after) and summaries of the providers involved (only the classes asked for before 1.27;
/// traits from 1.17; from 1.29 every provider of the trees, with parent and root).
fn render(pool: &Pool, request: &Request, found: &[Candidate], version: Microversion) -> Value {
    let requests: Vec<Value> = found
        .iter()
        .map(|candidate| {
            if version.at_least(12) {
                let allocations: Map<String, Value> = candidate
                    .iter()
                    .map(|(&index, amounts)| {
                        (
                            pool.providers[index].uuid.clone(),
                            json!({"resources": amounts}),
                        )
                    })
                    .collect();
                json!({"allocations": allocations})
            } else {
                let allocations: Vec<Value> = candidate
                    .iter()
                    .map(|(&index, amounts)| {
                        json!({
                            "resource_provider": {"uuid": pool.providers[index].uuid},
                            "resources": amounts,
                        })
                    })
                    .collect();
                json!({"allocations": allocations})
            }
        })
        .collect();
    let mut summarized: BTreeSet<usize> = found.iter().flat_map(|c| c.keys().copied()).collect();
    if request.nested {
        let roots: BTreeSet<usize> = summarized.iter().map(|&i| pool.root_index(i)).collect();
        summarized = roots.into_iter().flat_map(|root| pool.tree(root)).collect();
    }
    let asked: BTreeSet<&str> = request
        .groups
        .iter()
        .flat_map(|g| g.resources.keys().map(String::as_str))
        .collect();
    let summaries: Map<String, Value> = summarized
        .into_iter()
        .map(|index| {
            let provider = &pool.providers[index];
            let resources: Map<String, Value> = provider
                .inventories
                .iter()
                .filter(|(class, _)| version.at_least(27) || asked.contains(class.as_str()))
                .map(|(class, inventory)| {
                    (
                        class.clone(),
                        json!({"capacity": capacity(inventory), "used": provider.used_units(class)}),
                    )
                })
                .collect();
            let mut summary = json!({"resources": resources});
            if version.at_least(17) {
                summary["traits"] = json!(provider.traits);
            }
            if version.at_least(29) {
                summary["parent_provider_uuid"] = json!(pool.parent_uuid(index));
                summary["root_provider_uuid"] = json!(pool.root_uuid(index));
            }
            (provider.uuid.clone(), summary)
        })
        .collect();
    json!({"allocation_requests": requests, "provider_summaries": summaries})
}

pub(super) async fn list(call: Call, params: Params) -> FaultResult<Response> {
    call.since(10)?;
    call.allow("placement:allocation_candidates:list")?;
    let request = parse(&params, call.version)?;
    let pool = call.pool().await?;
    let classes = call.known_classes(&pool).await?;
    if let Some(class) = request
        .groups
        .iter()
        .flat_map(|g| g.resources.keys())
        .find(|class| !classes.contains(*class))
    {
        return Err(bad_request(format!(
            "Invalid resource class in resources parameter: No such resource class {class}."
        )));
    }
    let traits = call.known_traits(&pool).await?;
    let unknown: BTreeSet<&str> = request
        .groups
        .iter()
        .flat_map(|g| g.required.iter().chain(&g.forbidden))
        .filter(|name| !traits.contains(*name))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        return Err(bad_request(format!(
            "No such trait(s): {}.",
            unknown.into_iter().collect::<Vec<_>>().join(", ")
        )));
    }
    let found = search(&pool, &request);
    Ok(answer(
        StatusCode::OK,
        render(&pool, &request, &found, call.version),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::model::tests::object;

    fn pool() -> Pool {
        let host = |name: &str, uid: &str, vcpus: i64, traits: Value, used: &str| {
            object(
                name,
                uid,
                1,
                json!({"inventories": {"VCPU": {"total": vcpus}, "MEMORY_MB": {"total": 4096}},
                    "traits": traits}),
                json!({"allocations": {"c": {"kind": "Pod", "namespace": "n", "name": "p",
                    "resources": {"VCPU": used}}}}),
            )
        };
        let gpu = |name: &str, uid: &str, parent: &str| {
            object(
                name,
                uid,
                1,
                json!({"parent": parent, "inventories": {"VGPU": {"total": 2}}, "traits": ["CUSTOM_FAST"]}),
                Value::Null,
            )
        };
        Pool::from_objects(&[
            host("a", "ua", 4, json!(["HW_CPU_X86_AVX2"]), "3500m"),
            host("b", "ub", 4, json!([]), "0"),
            gpu("b-gpu0", "ub0", "b"),
            gpu("b-gpu1", "ub1", "b"),
        ])
    }

    fn params(query: &[(&str, &str)]) -> Params {
        Params(
            query
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    fn uuids(pool: &Pool, candidate: &Candidate) -> Vec<String> {
        candidate
            .keys()
            .map(|&i| pool.providers[i].uuid.clone())
            .collect()
    }

    #[test]
    fn room_is_what_capacity_leaves() {
        let pool = pool();
        let request = parse(&params(&[("resources", "VCPU:1")]), Microversion(29)).expect("parse");
        let found = search(&pool, &request);
        // a has 4 - 3.5 = 0.5 of a VCPU left: not one.
        assert_eq!(
            found.iter().map(|c| uuids(&pool, c)).collect::<Vec<_>>(),
            [["ub"]]
        );
        let request = parse(&params(&[("resources", "VCPU:4")]), Microversion(29)).expect("parse");
        assert_eq!(search(&pool, &request).len(), 1);
        let request = parse(&params(&[("resources", "VCPU:5")]), Microversion(29)).expect("parse");
        assert!(search(&pool, &request).is_empty());
    }

    #[test]
    fn nested_providers_serve_from_1_29() {
        let pool = pool();
        let query = params(&[("resources", "VCPU:1,VGPU:1")]);
        let found = search(&pool, &parse(&query, Microversion(29)).expect("parse"));
        let mut trees: Vec<Vec<String>> = found.iter().map(|c| uuids(&pool, c)).collect();
        trees.sort();
        assert_eq!(trees, [["ub", "ub0"], ["ub", "ub1"]]);
        let before = search(&pool, &parse(&query, Microversion(28)).expect("parse"));
        assert!(
            before.is_empty(),
            "nested providers are not searched before 1.29"
        );
        let rendered = render(
            &pool,
            &parse(&query, Microversion(29)).expect("parse"),
            &found,
            Microversion(29),
        );
        assert_eq!(
            rendered["provider_summaries"]["ub1"]["parent_provider_uuid"],
            "ub"
        );
        assert_eq!(
            rendered["provider_summaries"]["ub"]["resources"]["VCPU"],
            json!({"capacity": 4, "used": 0})
        );
        assert_eq!(
            rendered["allocation_requests"][0]["allocations"]["ub0"]["resources"]["VGPU"],
            1
        );
    }

    #[test]
    fn older_versions_get_older_shapes() {
        let pool = pool();
        let v = Microversion(10);
        let request = parse(&params(&[("resources", "VCPU:1")]), v).expect("parse");
        let found = search(&pool, &request);
        let rendered = render(&pool, &request, &found, v);
        assert_eq!(
            rendered["allocation_requests"],
            json!([{"allocations": [{"resource_provider": {"uuid": "ub"}, "resources": {"VCPU": 1}}]}])
        );
        // Only the classes asked for, no traits, no tree.
        assert_eq!(
            rendered["provider_summaries"],
            json!({"ub": {"resources": {"VCPU": {"capacity": 4, "used": 0}}}})
        );
        let v = Microversion(27);
        let rendered = render(&pool, &request, &found, v);
        assert_eq!(
            rendered["provider_summaries"]["ub"],
            json!({"resources": {"VCPU": {"capacity": 4, "used": 0},
                "MEMORY_MB": {"capacity": 4096, "used": 0}}, "traits": []})
        );
    }

    #[test]
    fn traits_groups_and_isolation() {
        let pool = pool();
        let v = Microversion(29);
        let found = search(
            &pool,
            &parse(
                &params(&[("resources", "VCPU:1"), ("required", "!HW_CPU_X86_AVX2")]),
                v,
            )
            .expect("parse"),
        );
        assert_eq!(found.len(), 1);
        let found = search(
            &pool,
            &parse(
                &params(&[
                    ("resources", "MEMORY_MB:1"),
                    ("required", "HW_CPU_X86_AVX2"),
                ]),
                v,
            )
            .expect("parse"),
        );
        assert_eq!(
            found.iter().map(|c| uuids(&pool, c)).collect::<Vec<_>>(),
            [["ua"]]
        );
        // Two numbered groups of one VGPU each: both on one device, or one on each.
        let granular = [
            ("resources1", "VGPU:1"),
            ("resources2", "VGPU:1"),
            ("group_policy", "none"),
        ];
        let found = search(&pool, &parse(&params(&granular), v).expect("parse"));
        assert_eq!(found.len(), 3, "{found:?}");
        let isolated = [
            ("resources1", "VGPU:1"),
            ("resources2", "VGPU:1"),
            ("group_policy", "isolate"),
        ];
        let found = search(&pool, &parse(&params(&isolated), v).expect("parse"));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(uuids(&pool, &found[0]), ["ub0", "ub1"]);
        let limited =
            parse(&params(&[("resources", "MEMORY_MB:1"), ("limit", "1")]), v).expect("parse");
        assert_eq!(search(&pool, &limited).len(), 1);
    }

    #[test]
    fn bad_queries_are_refused() {
        let v = Microversion(29);
        for bad in [
            vec![("resources", "VCPU")],
            vec![("required", "X")],
            vec![("resources", "VCPU:1"), ("bogus", "1")],
            vec![("resources1", "VCPU:1"), ("resources2", "VCPU:1")],
            vec![("resources", "VCPU:1"), ("limit", "0")],
            vec![("resources", "VCPU:1"), ("group_policy", "maybe")],
            vec![("resources", "VCPU:1"), ("resources", "VCPU:2")],
            vec![("resources0", "VCPU:1")],
            vec![],
        ] {
            assert!(parse(&params(&bad), v).is_err(), "{bad:?}");
        }
        assert!(
            parse(
                &params(&[("resources", "VCPU:1"), ("limit", "1")]),
                Microversion(15)
            )
            .is_err()
        );
        assert!(parse(&params(&[("resources1", "VCPU:1")]), Microversion(24)).is_err());
    }
}
