//! Parsing Kubernetes resource URLs:
//! `/api/v1/[namespaces/{ns}/]{plural}[/{name}[/{sub}]]` and
//! `/apis/{group}/{version}/[namespaces/{ns}/]{plural}[/{name}[/{sub}]]`.

/// What a request path names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiPath<'a> {
    /// `/api/v1` or `/apis/{group}/{version}`: the group-version's resource list.
    GroupVersion { group: &'a str, version: &'a str },
    /// `/apis/{group}`: one API group.
    Group { group: &'a str },
    /// A resource collection, object or subresource.
    Resource(ResourcePath<'a>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourcePath<'a> {
    pub group: &'a str,
    pub version: &'a str,
    pub namespace: Option<&'a str>,
    pub plural: &'a str,
    pub name: Option<&'a str>,
    pub subresource: Option<&'a str>,
}

/// Parses a path below `/api` or `/apis`; `None` if it cannot name anything.
pub fn parse(path: &str) -> Option<ApiPath<'_>> {
    let path = path.trim_end_matches('/');
    let (group, version, rest) = if let Some(rest) = path.strip_prefix("/api/") {
        let (version, rest) = split_first(rest);
        ("", version, rest)
    } else if let Some(rest) = path.strip_prefix("/apis/") {
        let (group, rest) = split_first(rest);
        if rest.is_empty() {
            return Some(ApiPath::Group { group });
        }
        let (version, rest) = split_first(rest);
        (group, version, rest)
    } else {
        return None;
    };
    if version.is_empty() {
        return None;
    }
    if rest.is_empty() {
        return Some(ApiPath::GroupVersion { group, version });
    }
    let segments: Vec<&str> = rest.split('/').collect();
    if segments.iter().any(|s| s.is_empty()) {
        return None;
    }
    // `namespaces/{ns}/{plural}...` is namespaced; `namespaces`, `namespaces/{name}` and
    // `namespaces/{name}/{sub}` for the core group's Namespace kind itself are not. A
    // subresource of a namespace is told apart by the registry (see `resolve`).
    let (namespace, tail) = match segments.as_slice() {
        ["namespaces", namespace, plural, tail @ ..]
            if !is_namespace_subresource(group, plural) =>
        {
            (
                Some(*namespace),
                std::iter::once(*plural)
                    .chain(tail.iter().copied())
                    .collect::<Vec<_>>(),
            )
        }
        other => (None, other.to_vec()),
    };
    let (plural, name, subresource) = match tail.as_slice() {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(*name), None),
        [plural, name, subresource] => (*plural, Some(*name), Some(*subresource)),
        _ => return None,
    };
    Some(ApiPath::Resource(ResourcePath {
        group,
        version,
        namespace,
        plural,
        name,
        subresource,
    }))
}

/// `/api/v1/namespaces/{name}/status` and `/finalize` are subresources of a Namespace,
/// not a namespaced collection called "status".
fn is_namespace_subresource(group: &str, segment: &str) -> bool {
    group.is_empty() && matches!(segment, "status" | "finalize")
}

fn split_first(path: &str) -> (&str, &str) {
    match path.split_once('/') {
        Some((first, rest)) => (first, rest),
        None => (path, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(path: &str) -> ResourcePath<'_> {
        match parse(path) {
            Some(ApiPath::Resource(r)) => r,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn core_paths() {
        let r = resource("/api/v1/namespaces/default/configmaps/x");
        assert_eq!(
            (r.group, r.version, r.namespace, r.plural, r.name),
            ("", "v1", Some("default"), "configmaps", Some("x"))
        );
        let r = resource("/api/v1/configmaps");
        assert_eq!((r.namespace, r.plural, r.name), (None, "configmaps", None));
        let r = resource("/api/v1/namespaces");
        assert_eq!((r.plural, r.name), ("namespaces", None));
        let r = resource("/api/v1/namespaces/default");
        assert_eq!(
            (r.namespace, r.plural, r.name),
            (None, "namespaces", Some("default"))
        );
        let r = resource("/api/v1/namespaces/default/status");
        assert_eq!(
            (r.namespace, r.plural, r.name, r.subresource),
            (None, "namespaces", Some("default"), Some("status"))
        );
        let r = resource("/api/v1/namespaces/default/pods/web/log");
        assert_eq!(
            (r.namespace, r.plural, r.name, r.subresource),
            (Some("default"), "pods", Some("web"), Some("log"))
        );
    }

    #[test]
    fn group_paths() {
        assert_eq!(parse("/apis/apps"), Some(ApiPath::Group { group: "apps" }));
        assert_eq!(
            parse("/apis/apps/v1"),
            Some(ApiPath::GroupVersion {
                group: "apps",
                version: "v1"
            })
        );
        assert_eq!(
            parse("/api/v1/"),
            Some(ApiPath::GroupVersion {
                group: "",
                version: "v1"
            })
        );
        let r = resource("/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/node-1");
        assert_eq!(
            (r.group, r.namespace, r.plural, r.name),
            (
                "coordination.k8s.io",
                Some("kube-system"),
                "leases",
                Some("node-1")
            )
        );
    }

    #[test]
    fn nonsense_paths() {
        assert_eq!(parse("/api"), None);
        assert_eq!(parse("/api/v1//x"), None);
        assert_eq!(parse("/api/v1/a/b/c/d"), None);
        assert_eq!(parse("/other"), None);
    }
}
