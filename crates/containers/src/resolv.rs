//! A pod's `/etc/resolv.conf`, as kubelet writes it (pure): the pod's `dnsPolicy` picks
//! the base — `ClusterFirst` (the default) the cluster's resolver on the pod's network
//! with Kubernetes' search list and `ndots:5`, falling back to the host's file when the
//! pod has no cluster resolver (host-network pods, networks without DHCP); `Default` the
//! host's file; `None` nothing — and `dnsConfig` adds nameservers, search domains and
//! options on top.
//!
//! A subnet's `dnsNameservers` are not listed for pods: they are what DHCP gives VMs
//! instead of the cluster's resolver (Neutron's meaning). A pod that wants them names
//! them in `dnsConfig`; listing them after the cluster's resolver would only make answers
//! depend on which server replied (glibc moves on after SERVFAIL, musl asks all at once).

use k8s_openapi::api::core::v1::Pod;
use ronghe_agent::network::ClusterDns;

/// Kubernetes' limits on what a pod's resolv.conf holds (kubelet's validation).
const MAX_NAMESERVERS: usize = 3;
const MAX_SEARCHES: usize = 32;

/// What a resolv.conf says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Resolv {
    nameservers: Vec<String>,
    searches: Vec<String>,
    /// `name` or `name:value`.
    options: Vec<String>,
}

fn parse(text: &str) -> Resolv {
    let mut resolv = Resolv::default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => resolv.nameservers.extend(words.next().map(str::to_owned)),
            // The last search or domain line wins, as in the resolver.
            Some("search" | "domain") => resolv.searches = words.map(str::to_owned).collect(),
            Some("options") => resolv.options.extend(words.map(str::to_owned)),
            _ => {}
        }
    }
    resolv
}

fn option_name(option: &str) -> &str {
    option.split(':').next().unwrap_or(option)
}

fn push_unique(list: &mut Vec<String>, items: impl IntoIterator<Item = String>) {
    for item in items {
        if !item.is_empty() && !list.contains(&item) {
            list.push(item);
        }
    }
}

/// The resolv.conf of `pod`, whose cluster resolver is `cluster` (None when it has none),
/// on a host whose own resolv.conf is `host`.
pub fn render(pod: &Pod, cluster: Option<&ClusterDns>, host: &str) -> String {
    let spec = pod.spec.as_ref();
    let policy = spec
        .and_then(|s| s.dns_policy.as_deref())
        .unwrap_or("ClusterFirst");
    let mut resolv = match (policy, cluster) {
        ("None", _) => Resolv::default(),
        ("ClusterFirst" | "ClusterFirstWithHostNet", Some(cluster)) => Resolv {
            nameservers: vec![cluster.nameserver.to_string()],
            searches: cluster.searches.clone(),
            options: vec!["ndots:5".to_owned()],
        },
        // `Default`, or a cluster-first pod with no cluster resolver: the host's, as
        // kubelet falls back when it has no cluster DNS.
        _ => parse(host),
    };
    if let Some(config) = spec.and_then(|s| s.dns_config.as_ref()) {
        push_unique(
            &mut resolv.nameservers,
            config.nameservers.iter().flatten().cloned(),
        );
        push_unique(
            &mut resolv.searches,
            config.searches.iter().flatten().cloned(),
        );
        for option in config.options.iter().flatten() {
            let Some(name) = option.name.as_deref().filter(|n| !n.is_empty()) else {
                continue;
            };
            resolv
                .options
                .retain(|existing| option_name(existing) != name);
            resolv.options.push(match option.value.as_deref() {
                Some(value) => format!("{name}:{value}"),
                None => name.to_owned(),
            });
        }
    }
    resolv.nameservers.truncate(MAX_NAMESERVERS);
    resolv.searches.truncate(MAX_SEARCHES);
    let mut out = String::new();
    for nameserver in &resolv.nameservers {
        out.push_str(&format!("nameserver {nameserver}\n"));
    }
    if !resolv.searches.is_empty() {
        out.push_str(&format!("search {}\n", resolv.searches.join(" ")));
    }
    if !resolv.options.is_empty() {
        out.push_str(&format!("options {}\n", resolv.options.join(" ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "# generated\nnameserver 10.255.255.53\nnameserver 10.255.255.54\nsearch corp.example\noptions edns0\n";

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "team"},
            "spec": spec,
        }))
        .unwrap()
    }

    fn cluster() -> ClusterDns {
        ClusterDns {
            nameserver: "10.0.0.2".parse().unwrap(),
            searches: vec![
                "team.svc.cluster.local".into(),
                "svc.cluster.local".into(),
                "cluster.local".into(),
                "openstacklocal".into(),
            ],
        }
    }

    #[test]
    fn cluster_first_uses_only_the_cluster_resolver() {
        let pod = pod(serde_json::json!({"containers": []}));
        assert_eq!(
            render(&pod, Some(&cluster()), HOST),
            "nameserver 10.0.0.2\n\
             search team.svc.cluster.local svc.cluster.local cluster.local openstacklocal\n\
             options ndots:5\n"
        );
        // No resolver on the pod's network: the host's file, as it was.
        assert_eq!(
            render(&pod, None, HOST),
            "nameserver 10.255.255.53\nnameserver 10.255.255.54\nsearch corp.example\noptions edns0\n"
        );
    }

    #[test]
    fn default_and_none_policies_and_dns_config_on_top() {
        let default = pod(serde_json::json!({"containers": [], "dnsPolicy": "Default"}));
        assert_eq!(
            render(&default, Some(&cluster()), HOST),
            render(&pod(serde_json::json!({"containers": []})), None, HOST)
        );
        let none = pod(serde_json::json!({
            "containers": [],
            "dnsPolicy": "None",
            "dnsConfig": {"nameservers": ["1.1.1.1"], "searches": ["a.example"], "options": [{"name": "ndots", "value": "2"}, {"name": "rotate"}]},
        }));
        assert_eq!(
            render(&none, Some(&cluster()), HOST),
            "nameserver 1.1.1.1\nsearch a.example\noptions ndots:2 rotate\n"
        );
        let merged = pod(serde_json::json!({
            "containers": [],
            "dnsConfig": {
                "nameservers": ["10.0.0.2", "192.0.2.53", "192.0.2.54", "192.0.2.55"],
                "searches": ["cluster.local", "extra.example"],
                "options": [{"name": "ndots", "value": "1"}],
            },
        }));
        assert_eq!(
            render(&merged, Some(&cluster()), HOST),
            "nameserver 10.0.0.2\nnameserver 192.0.2.53\nnameserver 192.0.2.54\n\
             search team.svc.cluster.local svc.cluster.local cluster.local openstacklocal extra.example\n\
             options ndots:1\n"
        );
    }
}
