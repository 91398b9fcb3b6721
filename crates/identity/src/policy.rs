//! Authorization policy as data: tables from an operation (a Kubernetes verb on a
//! resource, or an OpenStack operation) to a rule, and the rules' meaning for a subject.
//!
//! The model: cloud admins (the `admin` role on the system scope) may do everything, cloud
//! readers may read everything; in a project, readers read, members also write, admins
//! also manage the project; anyone authenticated may read the cluster-wide kinds meant for
//! everyone. A token scoped to a project acts only in that project (Keystone's rule).

/// What a set of roles allows, ordered by power.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Reader,
    Member,
    Admin,
}

/// Who is asking, as far as policy cares.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Subject {
    /// The user's name.
    pub user: String,
    /// The level the user holds cloud-wide.
    pub cloud: Option<Level>,
    /// The project the credential is scoped to, and the level held there.
    pub project: Option<(String, Level)>,
}

impl Subject {
    pub fn is_cloud_admin(&self) -> bool {
        self.cloud == Some(Level::Admin)
    }

    /// The level the subject holds on a project.
    pub fn level_in(&self, project: &str) -> Option<Level> {
        let own = match &self.project {
            Some((name, level)) if name == project => Some(*level),
            _ => None,
        };
        own.max(self.cloud.map(|level| level.min(Level::Reader)))
            .max(self.cloud.filter(|level| *level == Level::Admin))
    }

    /// The one project whose objects the subject may see beyond cloud-wide reading, if any.
    pub fn visible_project(&self) -> Option<&str> {
        self.project.as_ref().map(|(name, _)| name.as_str())
    }
}

/// A rule an operation requires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// Any authenticated caller.
    Authenticated,
    CloudReader,
    CloudAdmin,
    /// At least this level on the target project (cloud admins and, for reading, cloud
    /// readers pass too).
    Project(Level),
    /// The target user is the caller, or the caller is a cloud reader.
    SelfOrCloudReader,
    /// The target user is the caller, or the caller is a cloud admin.
    SelfOrCloudAdmin,
}

/// What an operation acts on.
#[derive(Clone, Copy, Debug, Default)]
pub struct Target<'a> {
    pub project: Option<&'a str>,
    pub user: Option<&'a str>,
}

impl Rule {
    pub fn allows(self, subject: &Subject, target: &Target<'_>) -> bool {
        let cloud = subject.cloud;
        match self {
            Rule::Authenticated => true,
            Rule::CloudReader => cloud.is_some(),
            Rule::CloudAdmin => cloud == Some(Level::Admin),
            Rule::Project(needed) => target
                .project
                .and_then(|project| subject.level_in(project))
                .is_some_and(|held| held >= needed),
            Rule::SelfOrCloudReader => {
                target.user == Some(subject.user.as_str()) || cloud.is_some()
            }
            Rule::SelfOrCloudAdmin => {
                target.user == Some(subject.user.as_str()) || cloud == Some(Level::Admin)
            }
        }
    }
}

/// Reading or writing, for the Kubernetes face.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

impl Access {
    pub fn of_verb(verb: &str) -> Access {
        match verb {
            "get" | "list" | "watch" => Access::Read,
            _ => Access::Write,
        }
    }
}

/// One row of the Kubernetes table: a resource (by group and plural; `*` matches any) and
/// the rules for reading and writing it.
#[derive(Clone, Copy, Debug)]
pub struct KubernetesRule {
    pub group: &'static str,
    pub resource: &'static str,
    pub read: Rule,
    pub write: Rule,
    /// Whether an object of the resource *is* a project (namespaces, projects): its own
    /// name is the project the rules are checked against, and lists show only the
    /// projects the caller may see.
    pub names_project: bool,
}

const fn row(
    group: &'static str,
    resource: &'static str,
    read: Rule,
    write: Rule,
) -> KubernetesRule {
    KubernetesRule {
        group,
        resource,
        read,
        write,
        names_project: false,
    }
}

/// Cluster-scoped resources. Anything cluster-scoped and not listed is for cloud readers
/// and cloud admins only.
pub const KUBERNETES_CLUSTER_RULES: &[KubernetesRule] = &[
    KubernetesRule {
        names_project: true,
        ..row(
            "",
            "namespaces",
            Rule::Project(Level::Reader),
            Rule::CloudAdmin,
        )
    },
    KubernetesRule {
        names_project: true,
        ..row(
            "identity.ronghe.io",
            "projects",
            Rule::Project(Level::Reader),
            Rule::CloudAdmin,
        )
    },
    row(
        "identity.ronghe.io",
        "users",
        Rule::CloudReader,
        Rule::CloudAdmin,
    ),
    row(
        "identity.ronghe.io",
        "roles",
        Rule::Authenticated,
        Rule::CloudAdmin,
    ),
    row(
        "identity.ronghe.io",
        "roleassignments",
        Rule::CloudReader,
        Rule::CloudAdmin,
    ),
    row(
        "identity.ronghe.io",
        "applicationcredentials",
        Rule::CloudAdmin,
        Rule::CloudAdmin,
    ),
    row(
        "identity.ronghe.io",
        "tokenrevocations",
        Rule::CloudAdmin,
        Rule::CloudAdmin,
    ),
    // Kinds every tenant reads and only admins change (nodes, flavors, public images)
    // join here as they are served.
    row("", "nodes", Rule::Authenticated, Rule::CloudAdmin),
    row(
        "compute.ronghe.io",
        "flavors",
        Rule::Authenticated,
        Rule::CloudAdmin,
    ),
];

/// Namespaced resources: project readers read, members write, unless a row says otherwise.
pub const KUBERNETES_NAMESPACED_RULES: &[KubernetesRule] = &[
    // Quotas are set by cloud admins; project members only read them.
    row(
        "",
        "resourcequotas",
        Rule::Project(Level::Reader),
        Rule::CloudAdmin,
    ),
    row(
        "*",
        "*",
        Rule::Project(Level::Reader),
        Rule::Project(Level::Member),
    ),
];

const CLUSTER_DEFAULT: KubernetesRule = row("*", "*", Rule::CloudReader, Rule::CloudAdmin);

/// The row that governs a resource.
pub fn kubernetes_rule(group: &str, resource: &str, namespaced: bool) -> &'static KubernetesRule {
    let table = if namespaced {
        KUBERNETES_NAMESPACED_RULES
    } else {
        KUBERNETES_CLUSTER_RULES
    };
    table
        .iter()
        .find(|r| {
            (r.group == "*" || r.group == group) && (r.resource == "*" || r.resource == resource)
        })
        .unwrap_or(&CLUSTER_DEFAULT)
}

/// The OpenStack face's operations and their rules: Keystone's named as in its policy
/// file, quotas (one ledger behind the compute, block-storage, network and load-balancer
/// quota APIs) as `quota:*`, Placement's as in its policy file (`placement:*`). Where the
/// target can be checked (a project, a user), the
/// handler passes it.
pub const OPENSTACK_RULES: &[(&str, Rule)] = &[
    // The target user is the subject token's: one's own tokens, or anyone's for readers.
    ("identity:validate_token", Rule::SelfOrCloudReader),
    ("identity:revoke_token", Rule::SelfOrCloudReader),
    ("identity:get_auth_catalog", Rule::Authenticated),
    ("identity:get_auth_projects", Rule::Authenticated),
    // Projects are shown to those holding any role on them (or reading the cloud), in
    // lists and one by one; the handlers filter by that.
    ("identity:get_project", Rule::Authenticated),
    ("identity:list_projects", Rule::Authenticated),
    ("identity:list_user_projects", Rule::SelfOrCloudReader),
    ("identity:create_project", Rule::CloudAdmin),
    ("identity:update_project", Rule::CloudAdmin),
    ("identity:delete_project", Rule::CloudAdmin),
    ("identity:get_user", Rule::SelfOrCloudReader),
    ("identity:list_users", Rule::CloudReader),
    ("identity:create_user", Rule::CloudAdmin),
    ("identity:update_user", Rule::CloudAdmin),
    ("identity:delete_user", Rule::CloudAdmin),
    ("identity:change_password", Rule::SelfOrCloudAdmin),
    ("identity:get_role", Rule::Authenticated),
    ("identity:list_roles", Rule::Authenticated),
    ("identity:create_role", Rule::CloudAdmin),
    ("identity:update_role", Rule::CloudAdmin),
    ("identity:delete_role", Rule::CloudAdmin),
    ("identity:list_role_assignments", Rule::Authenticated),
    ("identity:check_grant", Rule::CloudReader),
    ("identity:list_grants", Rule::CloudReader),
    ("identity:create_grant", Rule::CloudAdmin),
    ("identity:revoke_grant", Rule::CloudAdmin),
    ("identity:get_domain", Rule::Authenticated),
    ("identity:list_domains", Rule::Authenticated),
    (
        "identity:get_application_credential",
        Rule::SelfOrCloudReader,
    ),
    (
        "identity:list_application_credentials",
        Rule::SelfOrCloudReader,
    ),
    (
        "identity:create_application_credential",
        Rule::SelfOrCloudAdmin,
    ),
    (
        "identity:delete_application_credential",
        Rule::SelfOrCloudAdmin,
    ),
    // A project's quotas are read by its readers, set and reset by cloud admins.
    ("quota:show", Rule::Project(Level::Reader)),
    ("quota:defaults", Rule::Authenticated),
    ("quota:update", Rule::CloudAdmin),
    ("quota:delete", Rule::CloudAdmin),
    // Nova: a project's readers read its servers, members act on them; flavors are read
    // by everyone and managed by cloud admins; keypairs are each user's own; hosts
    // (hypervisors, zone details) are for cloud readers.
    ("os_compute_api:servers:index", Rule::Project(Level::Reader)),
    (
        "os_compute_api:servers:detail",
        Rule::Project(Level::Reader),
    ),
    ("os_compute_api:servers:show", Rule::Project(Level::Reader)),
    (
        "os_compute_api:servers:index:get_all_tenants",
        Rule::CloudReader,
    ),
    (
        "os_compute_api:servers:create",
        Rule::Project(Level::Member),
    ),
    (
        "os_compute_api:servers:update",
        Rule::Project(Level::Member),
    ),
    (
        "os_compute_api:servers:delete",
        Rule::Project(Level::Member),
    ),
    ("os_compute_api:servers:start", Rule::Project(Level::Member)),
    ("os_compute_api:servers:stop", Rule::Project(Level::Member)),
    (
        "os_compute_api:servers:reboot",
        Rule::Project(Level::Member),
    ),
    (
        "os_compute_api:os-pause-server:pause",
        Rule::Project(Level::Member),
    ),
    (
        "os_compute_api:os-pause-server:unpause",
        Rule::Project(Level::Member),
    ),
    (
        "os_compute_api:os-suspend-server:suspend",
        Rule::Project(Level::Member),
    ),
    (
        "os_compute_api:os-suspend-server:resume",
        Rule::Project(Level::Member),
    ),
    (
        "os_compute_api:os-console-output",
        Rule::Project(Level::Member),
    ),
    ("os_compute_api:flavors:list", Rule::Authenticated),
    ("os_compute_api:flavors:show", Rule::Authenticated),
    ("os_compute_api:os-flavor-manage:create", Rule::CloudAdmin),
    ("os_compute_api:os-flavor-manage:update", Rule::CloudAdmin),
    ("os_compute_api:os-flavor-manage:delete", Rule::CloudAdmin),
    (
        "os_compute_api:os-flavor-extra-specs:index",
        Rule::Authenticated,
    ),
    (
        "os_compute_api:os-flavor-extra-specs:show",
        Rule::Authenticated,
    ),
    (
        "os_compute_api:os-flavor-extra-specs:create",
        Rule::CloudAdmin,
    ),
    (
        "os_compute_api:os-flavor-extra-specs:update",
        Rule::CloudAdmin,
    ),
    (
        "os_compute_api:os-flavor-extra-specs:delete",
        Rule::CloudAdmin,
    ),
    (
        "os_compute_api:os-keypairs:index",
        Rule::Project(Level::Reader),
    ),
    (
        "os_compute_api:os-keypairs:show",
        Rule::Project(Level::Reader),
    ),
    (
        "os_compute_api:os-keypairs:create",
        Rule::Project(Level::Reader),
    ),
    (
        "os_compute_api:os-keypairs:delete",
        Rule::Project(Level::Reader),
    ),
    ("os_compute_api:os-keypairs:other_user", Rule::CloudAdmin),
    (
        "os_compute_api:os-server-groups:index",
        Rule::Project(Level::Reader),
    ),
    (
        "os_compute_api:os-server-groups:index:all_projects",
        Rule::CloudReader,
    ),
    (
        "os_compute_api:os-server-groups:show",
        Rule::Project(Level::Reader),
    ),
    (
        "os_compute_api:os-server-groups:create",
        Rule::Project(Level::Member),
    ),
    (
        "os_compute_api:os-server-groups:delete",
        Rule::Project(Level::Member),
    ),
    ("os_compute_api:os-hypervisors:list", Rule::CloudReader),
    (
        "os_compute_api:os-hypervisors:list-detail",
        Rule::CloudReader,
    ),
    ("os_compute_api:os-hypervisors:show", Rule::CloudReader),
    (
        "os_compute_api:os-availability-zone:list",
        Rule::Authenticated,
    ),
    (
        "os_compute_api:os-availability-zone:detail",
        Rule::CloudReader,
    ),
    ("os_compute_api:limits", Rule::Project(Level::Reader)),
    // Octavia (its policy names, `os_load-balancer_api:<resource>:<action>`): a project's
    // readers read its load balancers and their statistics, members change them; a
    // failover and the provider list are as Octavia has them (admins; everyone).
    (
        "os_load-balancer_api:loadbalancer:get",
        Rule::Project(Level::Reader),
    ),
    (
        "os_load-balancer_api:loadbalancer:post",
        Rule::Project(Level::Member),
    ),
    (
        "os_load-balancer_api:loadbalancer:put",
        Rule::Project(Level::Member),
    ),
    (
        "os_load-balancer_api:loadbalancer:delete",
        Rule::Project(Level::Member),
    ),
    (
        "os_load-balancer_api:loadbalancer:get_stats",
        Rule::Project(Level::Reader),
    ),
    (
        "os_load-balancer_api:loadbalancer:get_status",
        Rule::Project(Level::Reader),
    ),
    (
        "os_load-balancer_api:loadbalancer:put_failover",
        Rule::CloudAdmin,
    ),
    (
        "os_load-balancer_api:listener:get",
        Rule::Project(Level::Reader),
    ),
    (
        "os_load-balancer_api:listener:post",
        Rule::Project(Level::Member),
    ),
    (
        "os_load-balancer_api:listener:put",
        Rule::Project(Level::Member),
    ),
    (
        "os_load-balancer_api:listener:delete",
        Rule::Project(Level::Member),
    ),
    (
        "os_load-balancer_api:listener:get_stats",
        Rule::Project(Level::Reader),
    ),
    (
        "os_load-balancer_api:pool:get",
        Rule::Project(Level::Reader),
    ),
    (
        "os_load-balancer_api:pool:post",
        Rule::Project(Level::Member),
    ),
    (
        "os_load-balancer_api:pool:put",
        Rule::Project(Level::Member),
    ),
    (
        "os_load-balancer_api:pool:delete",
        Rule::Project(Level::Member),
    ),
    (
        "os_load-balancer_api:member:get",
        Rule::Project(Level::Reader),
    ),
    (
        "os_load-balancer_api:member:post",
        Rule::Project(Level::Member),
    ),
    (
        "os_load-balancer_api:member:put",
        Rule::Project(Level::Member),
    ),
    (
        "os_load-balancer_api:member:delete",
        Rule::Project(Level::Member),
    ),
    (
        "os_load-balancer_api:healthmonitor:get",
        Rule::Project(Level::Reader),
    ),
    (
        "os_load-balancer_api:healthmonitor:post",
        Rule::Project(Level::Member),
    ),
    (
        "os_load-balancer_api:healthmonitor:put",
        Rule::Project(Level::Member),
    ),
    (
        "os_load-balancer_api:healthmonitor:delete",
        Rule::Project(Level::Member),
    ),
    (
        "os_load-balancer_api:l7policy:get",
        Rule::Project(Level::Reader),
    ),
    (
        "os_load-balancer_api:l7policy:post",
        Rule::Project(Level::Member),
    ),
    (
        "os_load-balancer_api:l7policy:put",
        Rule::Project(Level::Member),
    ),
    (
        "os_load-balancer_api:l7policy:delete",
        Rule::Project(Level::Member),
    ),
    (
        "os_load-balancer_api:l7rule:get",
        Rule::Project(Level::Reader),
    ),
    (
        "os_load-balancer_api:l7rule:post",
        Rule::Project(Level::Member),
    ),
    (
        "os_load-balancer_api:l7rule:put",
        Rule::Project(Level::Member),
    ),
    (
        "os_load-balancer_api:l7rule:delete",
        Rule::Project(Level::Member),
    ),
    ("os_load-balancer_api:provider:get_all", Rule::Authenticated),
    // Neutron: a project's readers read its network objects, members write them; what
    // reaches beyond a project (shared and external networks, provider segments, host
    // bindings) is for cloud admins. Shared and external networks are readable by all:
    // the handlers let them through.
    ("get_network", Rule::Project(Level::Reader)),
    ("create_network", Rule::Project(Level::Member)),
    ("update_network", Rule::Project(Level::Member)),
    ("delete_network", Rule::Project(Level::Member)),
    ("get_subnet", Rule::Project(Level::Reader)),
    ("create_subnet", Rule::Project(Level::Member)),
    ("update_subnet", Rule::Project(Level::Member)),
    ("delete_subnet", Rule::Project(Level::Member)),
    ("get_port", Rule::Project(Level::Reader)),
    ("create_port", Rule::Project(Level::Member)),
    ("update_port", Rule::Project(Level::Member)),
    ("delete_port", Rule::Project(Level::Member)),
    ("get_router", Rule::Project(Level::Reader)),
    ("create_router", Rule::Project(Level::Member)),
    ("update_router", Rule::Project(Level::Member)),
    ("delete_router", Rule::Project(Level::Member)),
    ("get_security_group", Rule::Project(Level::Reader)),
    ("create_security_group", Rule::Project(Level::Member)),
    ("update_security_group", Rule::Project(Level::Member)),
    ("delete_security_group", Rule::Project(Level::Member)),
    ("get_security_group_rule", Rule::Project(Level::Reader)),
    ("create_security_group_rule", Rule::Project(Level::Member)),
    ("delete_security_group_rule", Rule::Project(Level::Member)),
    ("get_floatingip", Rule::Project(Level::Reader)),
    ("create_floatingip", Rule::Project(Level::Member)),
    ("update_floatingip", Rule::Project(Level::Member)),
    ("delete_floatingip", Rule::Project(Level::Member)),
    (
        "get_floatingip_port_forwarding",
        Rule::Project(Level::Reader),
    ),
    (
        "create_floatingip_port_forwarding",
        Rule::Project(Level::Member),
    ),
    (
        "update_floatingip_port_forwarding",
        Rule::Project(Level::Member),
    ),
    (
        "delete_floatingip_port_forwarding",
        Rule::Project(Level::Member),
    ),
    ("get_policy", Rule::Project(Level::Reader)),
    ("create_policy", Rule::Project(Level::Member)),
    ("update_policy", Rule::Project(Level::Member)),
    ("delete_policy", Rule::Project(Level::Member)),
    ("create_network:shared", Rule::CloudAdmin),
    ("create_network:router:external", Rule::CloudAdmin),
    ("create_network:provider:network_type", Rule::CloudAdmin),
    ("create_network:provider:physical_network", Rule::CloudAdmin),
    ("create_network:provider:segmentation_id", Rule::CloudAdmin),
    ("create_network:is_default", Rule::CloudAdmin),
    ("create_port:binding:host_id", Rule::CloudAdmin),
    ("create_port:binding:profile", Rule::CloudAdmin),
    ("create_port:mac_address", Rule::Project(Level::Member)),
    (
        "create_router:external_gateway_info:enable_snat",
        Rule::CloudAdmin,
    ),
    (
        "create_router:external_gateway_info:external_fixed_ips",
        Rule::CloudAdmin,
    ),
    ("create_policy:shared", Rule::CloudAdmin),
    ("update_network:shared", Rule::CloudAdmin),
    ("update_network:router:external", Rule::CloudAdmin),
    ("update_network:provider:network_type", Rule::CloudAdmin),
    ("update_network:provider:physical_network", Rule::CloudAdmin),
    ("update_network:provider:segmentation_id", Rule::CloudAdmin),
    ("update_network:is_default", Rule::CloudAdmin),
    ("update_port:binding:host_id", Rule::CloudAdmin),
    ("update_port:binding:profile", Rule::CloudAdmin),
    ("update_port:mac_address", Rule::Project(Level::Member)),
    (
        "update_router:external_gateway_info:enable_snat",
        Rule::CloudAdmin,
    ),
    (
        "update_router:external_gateway_info:external_fixed_ips",
        Rule::CloudAdmin,
    ),
    ("update_policy:shared", Rule::CloudAdmin),
    (
        "create_floatingip:floating_ip_address",
        Rule::Project(Level::Member),
    ),
    ("add_router_interface", Rule::Project(Level::Member)),
    ("remove_router_interface", Rule::Project(Level::Member)),
    ("get_rule_type", Rule::Authenticated),
    (
        "get_policy_bandwidth_limit_rule",
        Rule::Project(Level::Reader),
    ),
    (
        "create_policy_bandwidth_limit_rule",
        Rule::Project(Level::Member),
    ),
    (
        "update_policy_bandwidth_limit_rule",
        Rule::Project(Level::Member),
    ),
    (
        "delete_policy_bandwidth_limit_rule",
        Rule::Project(Level::Member),
    ),
    ("get_policy_dscp_marking_rule", Rule::Project(Level::Reader)),
    (
        "create_policy_dscp_marking_rule",
        Rule::Project(Level::Member),
    ),
    (
        "update_policy_dscp_marking_rule",
        Rule::Project(Level::Member),
    ),
    (
        "delete_policy_dscp_marking_rule",
        Rule::Project(Level::Member),
    ),
    (
        "get_policy_minimum_bandwidth_rule",
        Rule::Project(Level::Reader),
    ),
    (
        "create_policy_minimum_bandwidth_rule",
        Rule::Project(Level::Member),
    ),
    (
        "update_policy_minimum_bandwidth_rule",
        Rule::Project(Level::Member),
    ),
    (
        "delete_policy_minimum_bandwidth_rule",
        Rule::Project(Level::Member),
    ),
    // Placement is an admin API: cloud readers read, cloud admins write; a project's
    // total usage is also for its readers (as in Placement).
    ("placement:resource_providers:list", Rule::CloudReader),
    ("placement:resource_providers:show", Rule::CloudReader),
    ("placement:resource_providers:create", Rule::CloudAdmin),
    ("placement:resource_providers:update", Rule::CloudAdmin),
    ("placement:resource_providers:delete", Rule::CloudAdmin),
    (
        "placement:resource_providers:inventories:list",
        Rule::CloudReader,
    ),
    (
        "placement:resource_providers:inventories:show",
        Rule::CloudReader,
    ),
    (
        "placement:resource_providers:inventories:create",
        Rule::CloudAdmin,
    ),
    (
        "placement:resource_providers:inventories:update",
        Rule::CloudAdmin,
    ),
    (
        "placement:resource_providers:inventories:delete",
        Rule::CloudAdmin,
    ),
    ("placement:resource_providers:usages", Rule::CloudReader),
    (
        "placement:resource_providers:aggregates:list",
        Rule::CloudReader,
    ),
    (
        "placement:resource_providers:aggregates:update",
        Rule::CloudAdmin,
    ),
    (
        "placement:resource_providers:traits:list",
        Rule::CloudReader,
    ),
    (
        "placement:resource_providers:traits:update",
        Rule::CloudAdmin,
    ),
    (
        "placement:resource_providers:traits:delete",
        Rule::CloudAdmin,
    ),
    (
        "placement:resource_providers:allocations:list",
        Rule::CloudReader,
    ),
    ("placement:allocations:list", Rule::CloudReader),
    ("placement:allocation_candidates:list", Rule::CloudReader),
    ("placement:usages", Rule::Project(Level::Reader)),
    ("placement:traits:list", Rule::CloudReader),
    ("placement:traits:show", Rule::CloudReader),
    ("placement:traits:update", Rule::CloudAdmin),
    ("placement:traits:delete", Rule::CloudAdmin),
    ("placement:resource_classes:list", Rule::CloudReader),
    ("placement:resource_classes:show", Rule::CloudReader),
    ("placement:resource_classes:create", Rule::CloudAdmin),
    ("placement:resource_classes:update", Rule::CloudAdmin),
    ("placement:resource_classes:delete", Rule::CloudAdmin),
];

/// The rule of an OpenStack operation; one missing from the table is for cloud admins.
pub fn openstack_rule(operation: &str) -> Rule {
    OPENSTACK_RULES
        .iter()
        .find(|(name, _)| *name == operation)
        .map_or(Rule::CloudAdmin, |(_, rule)| *rule)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member_of(project: &str) -> Subject {
        Subject {
            user: "alice".into(),
            cloud: None,
            project: Some((project.into(), Level::Member)),
        }
    }

    #[test]
    fn members_write_only_their_project() {
        let alice = member_of("a");
        let rule = kubernetes_rule("", "configmaps", true);
        let in_a = Target {
            project: Some("a"),
            user: None,
        };
        let in_b = Target {
            project: Some("b"),
            user: None,
        };
        assert!(rule.read.allows(&alice, &in_a));
        assert!(rule.write.allows(&alice, &in_a));
        assert!(!rule.read.allows(&alice, &in_b));
        assert!(!rule.write.allows(&alice, &in_b));
    }

    #[test]
    fn readers_only_read() {
        let bob = Subject {
            user: "bob".into(),
            cloud: None,
            project: Some(("a".into(), Level::Reader)),
        };
        let rule = kubernetes_rule("", "secrets", true);
        let in_a = Target {
            project: Some("a"),
            user: None,
        };
        assert!(rule.read.allows(&bob, &in_a));
        assert!(!rule.write.allows(&bob, &in_a));
    }

    #[test]
    fn cloud_levels() {
        let admin = Subject {
            user: "admin".into(),
            cloud: Some(Level::Admin),
            project: None,
        };
        let auditor = Subject {
            user: "audit".into(),
            cloud: Some(Level::Reader),
            project: None,
        };
        let anywhere = Target {
            project: Some("z"),
            user: None,
        };
        let rule = kubernetes_rule("", "configmaps", true);
        assert!(rule.write.allows(&admin, &anywhere));
        assert!(rule.read.allows(&auditor, &anywhere));
        assert!(!rule.write.allows(&auditor, &anywhere));
        let users = kubernetes_rule("identity.ronghe.io", "users", false);
        assert!(!users.read.allows(&member_of("a"), &Target::default()));
        assert!(users.write.allows(&admin, &Target::default()));
        // Unlisted cluster kinds are for cloud readers and admins.
        let unknown = kubernetes_rule("example.com", "widgets", false);
        assert!(!unknown.read.allows(&member_of("a"), &Target::default()));
    }

    #[test]
    fn neutron_readers_read_members_write_admins_share() {
        let alice = member_of("a");
        let carol = Subject {
            user: "carol".into(),
            cloud: None,
            project: Some(("a".into(), Level::Reader)),
        };
        let in_a = Target {
            project: Some("a"),
            user: None,
        };
        assert!(openstack_rule("create_network").allows(&alice, &in_a));
        assert!(openstack_rule("add_router_interface").allows(&alice, &in_a));
        assert!(!openstack_rule("create_network:shared").allows(&alice, &in_a));
        assert!(!openstack_rule("create_port:binding:host_id").allows(&alice, &in_a));
        assert!(openstack_rule("get_port").allows(&carol, &in_a));
        assert!(!openstack_rule("create_port").allows(&carol, &in_a));
        let in_b = Target {
            project: Some("b"),
            user: None,
        };
        assert!(!openstack_rule("get_network").allows(&alice, &in_b));
    }

    #[test]
    fn keystone_unknown_operations_need_admin() {
        assert_eq!(openstack_rule("identity:nonsense"), Rule::CloudAdmin);
        let alice = member_of("a");
        let own = Target {
            project: None,
            user: Some("alice"),
        };
        assert!(openstack_rule("identity:get_user").allows(&alice, &own));
        let other = Target {
            project: None,
            user: Some("bob"),
        };
        assert!(!openstack_rule("identity:get_user").allows(&alice, &other));
    }
}
