//! `GET /v2/images`'s query: Glance's filters (`name`, `id=in:...`, `status`, `tag`,
//! `owner`, formats, sizes, `protected`, `os_hidden`; `visibility` and `member_status`
//! are the caller's business, in `images`), sorting (`sort=name:asc,created_at` or
//! `sort_key`/`sort_dir`; newest first by default) and marker paging. Pure.

use std::cmp::Ordering;

use serde_json::Value;

use super::bad_request;
use super::view::Image;
use crate::fault::FaultResult;

/// Glance's default and largest page sizes.
pub(super) const DEFAULT_LIMIT: usize = 25;
pub(super) const MAX_LIMIT: usize = 1000;

const SORT_KEYS: &[&str] = &[
    "name",
    "status",
    "container_format",
    "disk_format",
    "size",
    "id",
    "created_at",
    "updated_at",
    "visibility",
    "min_disk",
    "min_ram",
];

#[derive(Debug, Default)]
pub(super) struct ListQuery {
    pub limit: usize,
    pub marker: Option<String>,
    pub names: Option<Vec<String>>,
    pub ids: Option<Vec<String>>,
    /// `public`, `private`, `shared`, `community` or `all`.
    pub visibility: Option<String>,
    /// `pending`, `accepted` (the default), `rejected` or `all`.
    pub member_status: String,
    /// A project id or name.
    pub owner: Option<String>,
    pub statuses: Option<Vec<String>>,
    pub tags: Vec<String>,
    pub hidden: Option<bool>,
    pub disk_formats: Option<Vec<String>>,
    pub container_formats: Option<Vec<String>>,
    pub protected: Option<bool>,
    pub size_min: Option<u64>,
    pub size_max: Option<u64>,
    /// (key, descending)
    pub sort: Vec<(String, bool)>,
    /// The query as given, for the `next` link.
    pairs: Vec<(String, String)>,
}

impl ListQuery {
    pub fn parse(pairs: Vec<(String, String)>) -> FaultResult<ListQuery> {
        let mut query = ListQuery {
            limit: DEFAULT_LIMIT,
            member_status: "accepted".into(),
            ..ListQuery::default()
        };
        let mut sort_keys = Vec::new();
        let mut sort_dirs = Vec::new();
        for (key, value) in &pairs {
            match key.as_str() {
                "limit" => {
                    let limit: usize = value.parse().map_err(|_| {
                        bad_request(format!("limit param must be an integer: {value}"))
                    })?;
                    query.limit = limit.min(MAX_LIMIT);
                }
                "marker" => query.marker = Some(value.clone()),
                "name" => query.names = Some(values(value)),
                "id" => query.ids = Some(values(value)),
                "visibility" => {
                    if !["public", "private", "shared", "community", "all"]
                        .contains(&value.as_str())
                    {
                        return Err(bad_request(format!("Invalid visibility value: {value}")));
                    }
                    query.visibility = Some(value.clone());
                }
                "member_status" => {
                    if !["pending", "accepted", "rejected", "all"].contains(&value.as_str()) {
                        return Err(bad_request(format!("Invalid status value: {value}")));
                    }
                    query.member_status = value.clone();
                }
                "owner" => query.owner = Some(value.clone()),
                "status" => query.statuses = Some(values(value)),
                "tag" => query.tags.push(value.clone()),
                "os_hidden" => query.hidden = Some(boolean(key, value)?),
                "protected" => query.protected = Some(boolean(key, value)?),
                "disk_format" => query.disk_formats = Some(values(value)),
                "container_format" => query.container_formats = Some(values(value)),
                "size_min" => query.size_min = Some(number(key, value)?),
                "size_max" => query.size_max = Some(number(key, value)?),
                "sort" => {
                    for item in value.split(',').filter(|i| !i.is_empty()) {
                        let (sort_key, direction) = item.split_once(':').unwrap_or((item, "desc"));
                        query
                            .sort
                            .push((sort_key.trim().to_owned(), descending(direction.trim())?));
                    }
                }
                "sort_key" => sort_keys.push(value.clone()),
                "sort_dir" => sort_dirs.push(descending(value)?),
                // Glance ignores what it does not know (clients send e.g. `paginated`).
                _ => {}
            }
        }
        for (index, key) in sort_keys.into_iter().enumerate() {
            let descending = sort_dirs
                .get(index)
                .or(sort_dirs.first())
                .copied()
                .unwrap_or(true);
            query.sort.push((key, descending));
        }
        if let Some((key, _)) = query
            .sort
            .iter()
            .find(|(k, _)| !SORT_KEYS.contains(&k.as_str()))
        {
            return Err(bad_request(format!("Invalid sort key: {key}.")));
        }
        query.pairs = pairs;
        Ok(query)
    }

    /// Whether an image passes the attribute filters. `owner_id` is its owner project's id.
    pub fn matches(&self, image: &Image, owner_id: &str) -> bool {
        let spec = &image.spec;
        let one_of = |wanted: &Option<Vec<String>>, actual: &str| {
            wanted
                .as_ref()
                .is_none_or(|w| w.iter().any(|v| v == actual))
        };
        one_of(&self.names, &spec.name)
            && one_of(&self.ids, &image.id)
            && one_of(&self.statuses, &image.status.status)
            && one_of(&self.disk_formats, spec.disk_format.as_deref().unwrap_or(""))
            && one_of(
                &self.container_formats,
                spec.container_format.as_deref().unwrap_or(""),
            )
            && self.tags.iter().all(|t| spec.tags.contains(t))
            && self
                .owner
                .as_ref()
                .is_none_or(|o| o == owner_id || *o == image.namespace)
            && self.protected.is_none_or(|p| p == spec.protected)
            // Hidden images are listed only when asked for.
            && self.hidden.unwrap_or(false) == spec.hidden
            && self.size_min.is_none_or(|min| image.status.size.unwrap_or(0) >= min)
            && self.size_max.is_none_or(|max| image.status.size.unwrap_or(0) <= max)
    }

    /// Sorts images by the keys asked for, then newest first, then by id.
    pub fn sort(&self, images: &mut [Image]) {
        let mut keys = self.sort.clone();
        if keys.is_empty() {
            keys.push(("created_at".into(), true));
        }
        keys.push(("id".into(), true));
        images.sort_by(|a, b| {
            for (key, descending) in &keys {
                let order = compare(&sort_value(a, key), &sort_value(b, key));
                let order = if *descending { order.reverse() } else { order };
                if order != Ordering::Equal {
                    return order;
                }
            }
            Ordering::Equal
        });
    }

    /// The page to answer, and the `next` link when more follow.
    pub fn page(&self, images: Vec<Image>) -> FaultResult<(Vec<Image>, Option<String>)> {
        let start = match &self.marker {
            None => 0,
            Some(marker) => {
                images
                    .iter()
                    .position(|image| image.id == *marker)
                    .ok_or_else(|| {
                        bad_request(format!(
                            "Invalid marker. Image {marker} could not be found."
                        ))
                    })?
                    + 1
            }
        };
        let total = images.len();
        let page: Vec<Image> = images.into_iter().skip(start).take(self.limit).collect();
        let next = (start + page.len() < total && !page.is_empty()).then(|| {
            let last = page.last().map(|i| i.id.clone()).unwrap_or_default();
            let mut pairs: Vec<(String, String)> = self
                .pairs
                .iter()
                .filter(|(k, _)| k != "marker")
                .cloned()
                .collect();
            pairs.push(("marker".into(), last));
            let query: Vec<String> = pairs
                .iter()
                .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
                .collect();
            format!("/v2/images?{}", query.join("&"))
        });
        Ok((page, next))
    }
}

/// Glance's `in:` lists: `in:a,b` or `in:"a,b","c"`; anything else is one value.
fn values(text: &str) -> Vec<String> {
    let Some(list) = text.strip_prefix("in:") else {
        return vec![text.to_owned()];
    };
    let mut items = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in list.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => items.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    items.push(current);
    items
}

fn boolean(key: &str, value: &str) -> FaultResult<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(bad_request(format!("Invalid value for {key}: {value}"))),
    }
}

fn number(key: &str, value: &str) -> FaultResult<u64> {
    value
        .parse()
        .map_err(|_| bad_request(format!("Invalid value for {key}: {value}")))
}

fn descending(direction: &str) -> FaultResult<bool> {
    match direction {
        "desc" => Ok(true),
        "asc" => Ok(false),
        other => Err(bad_request(format!("Invalid sort direction: {other}"))),
    }
}

fn sort_value(image: &Image, key: &str) -> Value {
    let spec = &image.spec;
    match key {
        "name" => Value::from(spec.name.clone()),
        "status" => Value::from(image.status.status.clone()),
        "container_format" => Value::from(spec.container_format.clone().unwrap_or_default()),
        "disk_format" => Value::from(spec.disk_format.clone().unwrap_or_default()),
        "size" => Value::from(image.status.size.unwrap_or(0)),
        "created_at" => Value::from(image.created_at.clone()),
        "updated_at" => Value::from(image.updated_at().to_owned()),
        "visibility" => Value::from(spec.visibility.clone()),
        "min_disk" => Value::from(spec.min_disk),
        "min_ram" => Value::from(spec.min_ram),
        _ => Value::from(image.id.clone()),
    }
}

fn compare(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(a), Value::Number(b)) => a
            .as_f64()
            .unwrap_or(0.0)
            .total_cmp(&b.as_f64().unwrap_or(0.0)),
        _ => a.as_str().unwrap_or("").cmp(b.as_str().unwrap_or("")),
    }
}

/// Percent-encodes a query component.
fn encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~:".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn image(id: &str, name: &str, created: &str, size: u64) -> Image {
        Image::from_object(json!({
            "metadata": {"name": id, "namespace": "a", "creationTimestamp": created},
            "spec": {"name": name, "tags": ["t"]},
            "status": {"status": "active", "size": size},
        }))
    }

    fn pairs(query: &[(&str, &str)]) -> Vec<(String, String)> {
        query
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn filters_sort_and_pages() {
        let images = vec![
            image("i1", "b", "2026-01-01T00:00:00Z", 5),
            image("i2", "a", "2026-01-03T00:00:00Z", 50),
            image("i3", "c", "2026-01-02T00:00:00Z", 500),
        ];
        let mut all = images;
        let query = ListQuery::parse(pairs(&[("limit", "2")])).unwrap();
        query.sort(&mut all);
        let ids: Vec<&str> = all.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["i2", "i3", "i1"], "newest first");
        let (page, next) = query.page(all).unwrap();
        assert_eq!(page.len(), 2);
        assert_eq!(next.as_deref(), Some("/v2/images?limit=2&marker=i3"));

        let mut by_name = vec![image("i1", "b", "x", 5), image("i2", "a", "x", 50)];
        ListQuery::parse(pairs(&[("sort", "name:asc")]))
            .unwrap()
            .sort(&mut by_name);
        assert_eq!(by_name[0].id, "i2");

        let filtered = ListQuery::parse(pairs(&[
            ("name", "in:\"a,x\",b"),
            ("tag", "t"),
            ("size_min", "10"),
        ]))
        .unwrap();
        assert_eq!(
            filtered.names.as_deref(),
            Some(&["a,x".to_owned(), "b".to_owned()][..])
        );
        assert!(!filtered.matches(&image("i1", "b", "x", 5), "p"));
        assert!(filtered.matches(&image("i1", "b", "x", 50), "p"));
        assert!(!filtered.matches(&image("i1", "a", "x", 50), "p"));

        for bad in [
            ("limit", "x"),
            ("sort", "name:sideways"),
            ("sort_key", "colour"),
            ("visibility", "everyone"),
        ] {
            assert!(ListQuery::parse(pairs(&[bad])).is_err(), "{bad:?}");
        }
        let marker = ListQuery::parse(pairs(&[("marker", "nope")])).unwrap();
        assert_eq!(marker.page(Vec::new()).err().unwrap().code.as_u16(), 400);
    }
}
