//! Neutron's list semantics over rendered views: a filter on any top-level attribute
//! (repeated values mean any of them; `fixed_ips=ip_address=X`; tags), `fields=`,
//! `sort_key`/`sort_dir`, and `limit`/`marker` paging with `<collection>_links`.

use std::cmp::Ordering;

use serde_json::{Map, Value, json};

use super::fault::{NeutronFault, NeutronResult};

/// Query parameters that are not filters.
const NOT_FILTERS: &[&str] = &[
    "fields",
    "limit",
    "marker",
    "sort_key",
    "sort_dir",
    "page_reverse",
    "all_tenants",
    "tags",
    "tags-any",
    "not-tags",
    "not-tags-any",
    "verbose",
];

/// The query string of a request, in order, repeated keys kept.
#[derive(Clone, Debug, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub fn parse(raw: Option<&str>) -> Self {
        let pairs = raw
            .map(|raw| {
                form_urlencoded::parse(raw.as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        Self { pairs }
    }

    pub fn first(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, comma-separated lists split (as Neutron does for `fields`).
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn split(&self, key: &str) -> Vec<&str> {
        self.all(key)
            .into_iter()
            .flat_map(|v| v.split(','))
            .filter(|v| !v.is_empty())
            .collect()
    }

    /// Whether the pairs other than `key` are kept for the next link.
    fn without(&self, keys: &[&str]) -> Vec<(String, String)> {
        self.pairs
            .iter()
            .filter(|(k, _)| !keys.contains(&k.as_str()))
            .cloned()
            .collect()
    }
}

/// Whether a request value names a view's value.
fn value_matches(value: &Value, wanted: &str) -> bool {
    match value {
        Value::String(text) => text == wanted,
        Value::Bool(flag) => match wanted.to_ascii_lowercase().as_str() {
            "true" | "1" => *flag,
            "false" | "0" => !*flag,
            _ => false,
        },
        Value::Number(number) => number.to_string() == wanted,
        Value::Null => wanted.is_empty() || wanted.eq_ignore_ascii_case("none"),
        Value::Array(items) => items.iter().any(|item| match item {
            // `fixed_ips=ip_address=10.0.0.5`, `fixed_ips=subnet_id=X`.
            Value::Object(member) => match wanted.split_once('=') {
                Some(("ip_address_substr", part)) => member
                    .get("ip_address")
                    .and_then(Value::as_str)
                    .is_some_and(|a| a.contains(part)),
                Some((key, expected)) => member.get(key).and_then(Value::as_str) == Some(expected),
                None => false,
            },
            other => value_matches(other, wanted),
        }),
        Value::Object(_) => false,
    }
}

fn tags_of(view: &Value) -> Vec<&str> {
    view.get("tags")
        .and_then(Value::as_array)
        .map(|tags| tags.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Keeps the views every filter of the query accepts. Filters naming attributes the views
/// do not have are ignored, as Neutron without filter validation does.
pub fn filter(views: Vec<Value>, query: &Query) -> Vec<Value> {
    let mut filters: Vec<(&str, Vec<&str>)> = Vec::new();
    for (key, _) in &query.pairs {
        if NOT_FILTERS.contains(&key.as_str()) || filters.iter().any(|(k, _)| k == key) {
            continue;
        }
        filters.push((key.as_str(), query.all(key)));
    }
    let (all_tags, any_tags) = (query.split("tags"), query.split("tags-any"));
    let (not_all, not_any) = (query.split("not-tags"), query.split("not-tags-any"));
    views
        .into_iter()
        .filter(|view| {
            filters.iter().all(|(key, wanted)| match view.get(*key) {
                None => true,
                Some(value) => wanted.iter().any(|w| value_matches(value, w)),
            })
        })
        .filter(|view| {
            let tags = tags_of(view);
            all_tags.iter().all(|t| tags.contains(t))
                && (any_tags.is_empty() || any_tags.iter().any(|t| tags.contains(t)))
                && (not_all.is_empty() || !not_all.iter().all(|t| tags.contains(t)))
                && !not_any.iter().any(|t| tags.contains(t))
        })
        .collect()
}

fn compare(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Less,
        (_, Value::Null) => Ordering::Greater,
        (x, y) => x.to_string().cmp(&y.to_string()),
    }
}

/// Orders views by `sort_key`/`sort_dir` (each key with its direction), then by creation
/// and id so that paging is stable.
pub fn sort(views: &mut [Value], query: &Query) -> NeutronResult<()> {
    let keys = query.all("sort_key");
    let directions = query.all("sort_dir");
    for direction in &directions {
        if !["asc", "desc"].contains(direction) {
            return Err(NeutronFault::bad_request(format!(
                "Invalid input for operation: sort_dir must be 'asc' or 'desc', not '{direction}'."
            )));
        }
    }
    views.sort_by(|a, b| {
        for (index, key) in keys.iter().enumerate() {
            let order = compare(
                a.get(*key).unwrap_or(&Value::Null),
                b.get(*key).unwrap_or(&Value::Null),
            );
            let order = if directions.get(index).copied() == Some("desc") {
                order.reverse()
            } else {
                order
            };
            if order != Ordering::Equal {
                return order;
            }
        }
        let created = |v: &Value| v.get("created_at").cloned().unwrap_or(Value::Null);
        compare(&created(a), &created(b)).then_with(|| {
            compare(
                a.get("id").unwrap_or(&Value::Null),
                b.get("id").unwrap_or(&Value::Null),
            )
        })
    });
    Ok(())
}

/// Keeps only the attributes `fields=` names (all when none).
pub fn select_fields(view: Value, query: &Query) -> Value {
    let fields = query.split("fields");
    if fields.is_empty() {
        return view;
    }
    match view {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(k, _)| fields.contains(&k.as_str()))
                .collect::<Map<String, Value>>(),
        ),
        other => other,
    }
}

/// Where a collection lives, for paging links.
pub struct Collection<'a> {
    /// The JSON key of the list (`networks`, `security_groups`).
    pub key: &'a str,
    /// Its URL (`https://host:port/networking/v2.0/networks`).
    pub url: String,
}

/// The whole list answer: filtered, sorted, paged, with `fields=` applied.
pub fn respond(
    collection: Collection<'_>,
    views: Vec<Value>,
    query: &Query,
) -> NeutronResult<Value> {
    let mut views = filter(views, query);
    sort(&mut views, query)?;
    if let Some(marker) = query.first("marker") {
        let at = views
            .iter()
            .position(|v| v.get("id").and_then(Value::as_str) == Some(marker))
            .ok_or_else(|| {
                NeutronFault::not_found(
                    "HTTPNotFound",
                    format!("Marker {marker} could not be found."),
                )
            })?;
        views.drain(..=at);
    }
    let mut links = Vec::new();
    if let Some(limit) = query.first("limit") {
        let limit: usize = limit.parse().map_err(|_| {
            NeutronFault::bad_request(format!(
                "Bad limit request: Limit must be an integer 0 or greater and not '{limit}'."
            ))
        })?;
        if limit > 0 && views.len() > limit {
            views.truncate(limit);
            if let Some(last) = views
                .last()
                .and_then(|v| v.get("id"))
                .and_then(Value::as_str)
            {
                let mut pairs = query.without(&["marker"]);
                pairs.push(("marker".into(), last.to_owned()));
                let encoded: String = form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(pairs)
                    .finish();
                links.push(json!({"rel": "next", "href": format!("{}?{encoded}", collection.url)}));
            }
        }
    }
    let views: Vec<Value> = views.into_iter().map(|v| select_fields(v, query)).collect();
    let mut answer = Map::new();
    answer.insert(collection.key.to_owned(), Value::Array(views));
    if !links.is_empty() {
        answer.insert(format!("{}_links", collection.key), Value::Array(links));
    }
    Ok(Value::Object(answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn views() -> Vec<Value> {
        vec![
            json!({"id": "a", "name": "one", "shared": false, "created_at": "1",
                   "fixed_ips": [{"subnet_id": "s", "ip_address": "10.0.0.5"}], "tags": ["x"]}),
            json!({"id": "b", "name": "two", "shared": true, "created_at": "2",
                   "fixed_ips": [], "tags": ["x", "y"]}),
            json!({"id": "c", "name": "three", "shared": false, "created_at": "3",
                   "fixed_ips": [], "tags": []}),
        ]
    }

    fn ids(answer: &Value) -> Vec<&str> {
        answer["networks"]
            .as_array()
            .map(|items| items.iter().filter_map(|v| v["id"].as_str()).collect())
            .unwrap_or_default()
    }

    fn list(raw: &str) -> Value {
        let collection = Collection {
            key: "networks",
            url: "https://h/networking/v2.0/networks".into(),
        };
        respond(collection, views(), &Query::parse(Some(raw))).expect("answer")
    }

    #[test]
    fn filters() {
        assert_eq!(ids(&list("name=one&name=three")), ["a", "c"]);
        assert_eq!(ids(&list("shared=True")), ["b"]);
        assert_eq!(ids(&list("fixed_ips=ip_address%3D10.0.0.5")), ["a"]);
        assert_eq!(ids(&list("tags=x,y")), ["b"]);
        assert_eq!(ids(&list("not-tags-any=y")), ["a", "c"]);
        assert_eq!(ids(&list("unknown=1")), ["a", "b", "c"]);
    }

    #[test]
    fn paging_sorting_and_fields() {
        let page = list("limit=2&sort_key=name&sort_dir=desc");
        assert_eq!(ids(&page), ["b", "c"]);
        let next = page["networks_links"][0]["href"]
            .as_str()
            .unwrap_or_default();
        assert!(next.contains("marker=c"), "{next}");
        assert_eq!(ids(&list("marker=c&sort_key=name&sort_dir=desc")), ["a"]);
        let narrow = list("fields=id&fields=name");
        assert_eq!(narrow["networks"][0], json!({"id": "a", "name": "one"}));
    }
}
