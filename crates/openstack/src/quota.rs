//! Quotas on the OpenStack face: Nova's `os-quota-sets`, Cinder's `os-quota-sets`,
//! Neutron's `quotas` and Octavia's `lbaas/quotas`, all over the one ledger the Kubernetes
//! face shows as ResourceQuotas (see `ronghe_apiserver::quota`).
//!
//! Each OpenStack quota name maps onto a Kubernetes resource name (`instances` →
//! `count/virtualmachines.compute.ronghe.io`, `cores` → `requests.cpu`, `ram` →
//! `requests.memory`, ...), so a VM or a pod counts the same whichever face made it. A
//! project's limit for a name is the smallest among its namespace's quotas (every quota
//! must hold, as in Kubernetes); `-1` when none limits it. Setting limits here writes the
//! ResourceQuota named `openstack` in the namespace; deleting them deletes it. Ronghe has no
//! default quotas: a project is unlimited until an admin sets one.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json};
use bytes::Bytes;
use http::StatusCode;
use ronghe_apiserver::auth::User;
use ronghe_apiserver::engine::{DeleteOptions, PatchKind, Target as EngineTarget, WriteOptions};
use ronghe_apiserver::error::ApiResult;
use ronghe_apiserver::quota::{Milli, ONE, Usage};
use ronghe_identity::policy::{Rule, Target};
use serde_json::{Map, Value, json};

use crate::OpenStack;
use crate::fault::{Fault, FaultResult, Style};
use crate::identity::{allow, principal_of, sync};

/// The ResourceQuota the OpenStack quota APIs write.
pub const QUOTA_NAME: &str = "openstack";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Service {
    Compute,
    Volume,
    Network,
    LoadBalancer,
}

impl Service {
    fn style(self) -> Style {
        match self {
            Service::Compute | Service::Volume => Style::Nova,
            Service::Network => Style::Neutron,
            Service::LoadBalancer => Style::Octavia,
        }
    }

    /// The body's wrapper key.
    fn wrapper(self) -> &'static str {
        match self {
            Service::Compute | Service::Volume => "quota_set",
            Service::Network | Service::LoadBalancer => "quota",
        }
    }

    /// The key of the amount in use in a detailed answer.
    fn in_use_key(self) -> &'static str {
        match self {
            Service::Network => "used",
            _ => "in_use",
        }
    }

    /// Whether the service checks a new limit against what is in use (Nova unless
    /// `force`, Neutron when `check_limit`, Cinder always).
    fn checks_limit(self, set: &Map<String, Value>) -> bool {
        let flag = |key: &str| set.get(key).and_then(Value::as_bool);
        match self {
            Service::Compute => !flag("force").unwrap_or(false),
            Service::Network => flag("check_limit").unwrap_or(false),
            Service::Volume => true,
            Service::LoadBalancer => false,
        }
    }
}

/// The largest limit (Nova's and Cinder's), or less where the ledger's thousandths of the
/// unit would not fit (`gigabytes`).
const MAX_LIMIT: i64 = i32::MAX as i64;

/// Refuses per-user quotas (Nova's `?user_id=`): Ronghe's quotas are per project.
fn refuse_per_user(query: &HashMap<String, String>, style: Style) -> FaultResult<()> {
    if query.contains_key("user_id") {
        return Err(Fault::bad_request(
            "Per-user quotas are not supported; quotas are per project.",
        )
        .styled(style));
    }
    Ok(())
}

/// Keys a body may carry besides quota names.
const NOT_QUOTAS: &[&str] = &["force", "check_limit", "id", "tenant_id", "project_id"];

#[derive(Clone, Copy, Debug)]
enum Unit {
    Count,
    MiB,
    GiB,
}

impl Unit {
    /// Thousandths of the Kubernetes resource per unit of the OpenStack quota.
    fn milli(self) -> Milli {
        match self {
            Unit::Count => ONE,
            Unit::MiB => ONE << 20,
            Unit::GiB => ONE << 30,
        }
    }

    fn quantity(self, value: i64) -> String {
        match self {
            Unit::Count => value.to_string(),
            Unit::MiB => format!("{value}Mi"),
            Unit::GiB => format!("{value}Gi"),
        }
    }
}

/// One OpenStack quota name and the resource it counts (`""`: one Ronghe does not limit,
/// shown as unlimited and refused when set).
struct Name {
    service: Service,
    name: &'static str,
    resource: &'static str,
    unit: Unit,
}

impl Name {
    fn max_limit(&self) -> i64 {
        MAX_LIMIT.min(Milli::MAX / self.unit.milli())
    }
}

/// A quota name the service shows but Ronghe does not limit.
const fn unlimited(service: Service, name: &'static str) -> Name {
    self::name(service, name, "", Unit::Count)
}

const fn name(service: Service, name: &'static str, resource: &'static str, unit: Unit) -> Name {
    Name {
        service,
        name,
        resource,
        unit,
    }
}

/// The OpenStack quota names and the ledger's resources behind them.
const NAMES: &[Name] = &[
    name(
        Service::Compute,
        "instances",
        "count/virtualmachines.compute.ronghe.io",
        Unit::Count,
    ),
    name(Service::Compute, "cores", "requests.cpu", Unit::Count),
    name(Service::Compute, "ram", "requests.memory", Unit::MiB),
    name(
        Service::Compute,
        "key_pairs",
        "count/keypairs.compute.ronghe.io",
        Unit::Count,
    ),
    name(
        Service::Compute,
        "server_groups",
        "count/servergroups.compute.ronghe.io",
        Unit::Count,
    ),
    // Nova before 2.36 shows the network quotas too: the same ledger entries.
    name(
        Service::Compute,
        "floating_ips",
        "count/floatingips.network.ronghe.io",
        Unit::Count,
    ),
    name(
        Service::Compute,
        "networks",
        "count/networks.network.ronghe.io",
        Unit::Count,
    ),
    name(
        Service::Compute,
        "security_groups",
        "count/securitygroups.network.ronghe.io",
        Unit::Count,
    ),
    name(
        Service::Compute,
        "security_group_rules",
        "count/securitygrouprules.network.ronghe.io",
        Unit::Count,
    ),
    unlimited(Service::Compute, "fixed_ips"),
    unlimited(Service::Compute, "metadata_items"),
    unlimited(Service::Compute, "injected_files"),
    unlimited(Service::Compute, "injected_file_content_bytes"),
    unlimited(Service::Compute, "injected_file_path_bytes"),
    unlimited(Service::Compute, "server_group_members"),
    name(
        Service::Volume,
        "volumes",
        "count/volumes.storage.ronghe.io",
        Unit::Count,
    ),
    name(Service::Volume, "gigabytes", "requests.storage", Unit::GiB),
    name(
        Service::Volume,
        "snapshots",
        "count/volumesnapshots.storage.ronghe.io",
        Unit::Count,
    ),
    unlimited(Service::Volume, "backups"),
    unlimited(Service::Volume, "backup_gigabytes"),
    unlimited(Service::Volume, "groups"),
    unlimited(Service::Volume, "per_volume_gigabytes"),
    name(
        Service::Network,
        "network",
        "count/networks.network.ronghe.io",
        Unit::Count,
    ),
    name(
        Service::Network,
        "subnet",
        "count/subnets.network.ronghe.io",
        Unit::Count,
    ),
    name(
        Service::Network,
        "port",
        "count/ports.network.ronghe.io",
        Unit::Count,
    ),
    name(
        Service::Network,
        "router",
        "count/routers.network.ronghe.io",
        Unit::Count,
    ),
    name(
        Service::Network,
        "floatingip",
        "count/floatingips.network.ronghe.io",
        Unit::Count,
    ),
    name(
        Service::Network,
        "security_group",
        "count/securitygroups.network.ronghe.io",
        Unit::Count,
    ),
    name(
        Service::Network,
        "security_group_rule",
        "count/securitygrouprules.network.ronghe.io",
        Unit::Count,
    ),
    name(
        Service::LoadBalancer,
        "load_balancer",
        "count/loadbalancers.loadbalancing.ronghe.io",
        Unit::Count,
    ),
    name(
        Service::LoadBalancer,
        "listener",
        "count/listeners.loadbalancing.ronghe.io",
        Unit::Count,
    ),
    name(
        Service::LoadBalancer,
        "pool",
        "count/pools.loadbalancing.ronghe.io",
        Unit::Count,
    ),
    name(
        Service::LoadBalancer,
        "member",
        "count/members.loadbalancing.ronghe.io",
        Unit::Count,
    ),
    name(
        Service::LoadBalancer,
        "health_monitor",
        "count/healthmonitors.loadbalancing.ronghe.io",
        Unit::Count,
    ),
];

fn names_of(service: Service) -> impl Iterator<Item = &'static Name> {
    NAMES.iter().filter(move |n| n.service == service)
}

pub fn router(state: Arc<OpenStack>) -> Router {
    let mut routes = Router::new();
    for (service, base, defaults, detail) in [
        (
            Service::Compute,
            "/compute/v2.1/os-quota-sets/{project}",
            "/defaults",
            Some("/detail"),
        ),
        (
            Service::Volume,
            "/volume/v3/os-quota-sets/{project}",
            "/defaults",
            None,
        ),
        (
            Service::Volume,
            "/volume/v3/{tenant}/os-quota-sets/{project}",
            "/defaults",
            None,
        ),
        (
            Service::Network,
            "/networking/v2.0/quotas/{project}",
            "/default",
            Some("/details"),
        ),
        (
            Service::LoadBalancer,
            "/load-balancer/v2/lbaas/quotas/{project}",
            "",
            None,
        ),
        (
            Service::LoadBalancer,
            "/load-balancer/v2.0/lbaas/quotas/{project}",
            "",
            None,
        ),
    ] {
        routes = routes.route(
            base,
            get(move |state, user, path, query| show(service, state, user, path, query, false))
                .put(move |state, user, path, query, body| {
                    update(service, state, user, path, query, body)
                })
                .delete(move |state, user, path, query| reset(service, state, user, path, query)),
        );
        if !defaults.is_empty() {
            routes = routes.route(
                &format!("{base}{defaults}"),
                get(move |user| self::defaults(service, user)),
            );
        }
        if let Some(detail) = detail {
            routes = routes.route(
                &format!("{base}{detail}"),
                get(move |state, user, path, query| show(service, state, user, path, query, true)),
            );
        }
    }
    for base in ["/load-balancer/v2", "/load-balancer/v2.0"] {
        routes = routes.route(
            &format!("{base}/lbaas/quotas/defaults"),
            get(|user| defaults(Service::LoadBalancer, user)),
        );
    }
    routes
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::authenticate,
        ))
        .with_state(state)
}

/// The limits and use of one project.
struct Ledger {
    /// The smallest hard limit per resource among the namespace's quotas.
    limits: HashMap<String, Milli>,
    used: Usage,
}

impl Ledger {
    async fn read(state: &OpenStack, namespace: &str, with_use: bool) -> ApiResult<Ledger> {
        let (quotas, revision) = state.engine.quotas_in(namespace, None).await?;
        let mut limits: HashMap<String, Milli> = HashMap::new();
        for (resource, hard) in quotas.iter().flat_map(|q| q.hard.iter()) {
            let limit = limits.entry(resource.clone()).or_insert(*hard);
            *limit = (*limit).min(*hard);
        }
        let used = if with_use {
            state.engine.usage_in(namespace, revision).await?
        } else {
            Usage::new()
        };
        Ok(Ledger { limits, used })
    }

    /// The limit in the OpenStack unit (rounded down), or -1.
    fn limit(&self, name: &Name) -> i64 {
        self.limits
            .get(name.resource)
            .map_or(-1, |hard| hard.div_euclid(name.unit.milli()))
    }

    /// The amount in use in the OpenStack unit (rounded up).
    fn in_use(&self, name: &Name) -> i64 {
        let used = self.used.get(name.resource).copied().unwrap_or(0);
        let unit = name.unit.milli();
        used.div_euclid(unit) + i64::from(used.rem_euclid(unit) != 0)
    }
}

/// The body of a quota answer: limits, or with `detail` limits, use and reservations.
fn quota_body(service: Service, ledger: &Ledger, project_id: Option<&str>, detail: bool) -> Value {
    let mut set = Map::new();
    if let Some(id) = project_id {
        set.insert("id".into(), json!(id));
    }
    for name in names_of(service) {
        let limit = ledger.limit(name);
        let value = if detail {
            json!({service.in_use_key(): ledger.in_use(name), "limit": limit, "reserved": 0})
        } else {
            json!(limit)
        };
        set.insert(name.name.into(), value);
    }
    json!({service.wrapper(): set})
}

/// The namespace of the project a path names by id (or name), for a caller allowed
/// `operation` on it.
async fn project(
    state: &OpenStack,
    user: &User,
    service: Service,
    path: &HashMap<String, String>,
    operation: &str,
) -> FaultResult<(String, String)> {
    let caller = principal_of(user).map_err(|f| f.styled(service.style()))?;
    sync(state).await.map_err(|f| f.styled(service.style()))?;
    let reference = path.get("project").map(String::as_str).unwrap_or_default();
    let (namespace, id) = {
        let directory = state.identity.directory();
        let entry = uuid::Uuid::try_parse(reference)
            .ok()
            .and_then(|uid| directory.project_by_uid(&uid))
            .or_else(|| directory.project(reference));
        match entry {
            Some(entry) => (entry.name.clone(), entry.uid.simple().to_string()),
            None => {
                // Only those who may read every project learn that one does not exist.
                let fault = if Rule::CloudReader.allows(&caller.subject, &Target::default()) {
                    Fault::not_found("project", reference)
                } else {
                    Fault::forbidden(operation)
                };
                return Err(fault.styled(service.style()));
            }
        }
    };
    let target = Target {
        project: Some(&namespace),
        user: None,
    };
    allow(&caller, operation, target).map_err(|f| f.styled(service.style()))?;
    Ok((namespace, id))
}

async fn show(
    service: Service,
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(path): Path<HashMap<String, String>>,
    Query(query): Query<HashMap<String, String>>,
    detail: bool,
) -> FaultResult<Response> {
    let style = service.style();
    refuse_per_user(&query, style)?;
    let (namespace, id) = project(&state, &user, service, &path, "quota:show").await?;
    // Cinder takes `?usage=True` where the others have a `detail` path.
    let detail = detail
        || query
            .get("usage")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let ledger = Ledger::read(&state, &namespace, detail)
        .await
        .map_err(|e| Fault::from_api(e).styled(style))?;
    let project_id = matches!(service, Service::Compute | Service::Volume).then_some(id.as_str());
    Ok(Json(quota_body(service, &ledger, project_id, detail)).into_response())
}

/// The limits a project has before an admin sets any: none.
async fn defaults(service: Service, Extension(user): Extension<User>) -> FaultResult<Response> {
    let caller = principal_of(&user)?;
    allow(&caller, "quota:defaults", Target::default()).map_err(|f| f.styled(service.style()))?;
    let unlimited = Ledger {
        limits: HashMap::new(),
        used: Usage::new(),
    };
    Ok(Json(quota_body(service, &unlimited, None, false)).into_response())
}

async fn update(
    service: Service,
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(path): Path<HashMap<String, String>>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> FaultResult<Response> {
    let style = service.style();
    refuse_per_user(&query, style)?;
    let (namespace, _) = project(&state, &user, service, &path, "quota:update").await?;
    let body = crate::identity::parse_body(&body).map_err(|f| f.styled(style))?;
    let wrapper = service.wrapper();
    let set = body
        .get(wrapper)
        .and_then(Value::as_object)
        .ok_or_else(|| {
            Fault::bad_request(format!("'{wrapper}' is a required property")).styled(style)
        })?;
    let mut changes: Vec<(&Name, i64)> = Vec::new();
    let mut unknown: Vec<&str> = Vec::new();
    for (key, value) in set {
        if NOT_QUOTAS.contains(&key.as_str()) {
            continue;
        }
        let Some(name) = names_of(service).find(|n| n.name == key) else {
            unknown.push(key);
            continue;
        };
        let limit = value
            .as_i64()
            .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
            .filter(|limit| (-1..=name.max_limit()).contains(limit))
            .ok_or_else(|| {
                Fault::bad_request(format!(
                    "Invalid input for field/attribute {key}. Value: {value}. It must be an integer from -1 to {}.",
                    name.max_limit()
                ))
                .styled(style)
            })?;
        if name.resource.is_empty() {
            if limit == -1 {
                continue;
            }
            return Err(Fault::bad_request(format!(
                "Ronghe does not limit {key}; it is always unlimited (-1)."
            ))
            .styled(style));
        }
        changes.push((name, limit));
    }
    if !unknown.is_empty() {
        return Err(
            Fault::bad_request(format!("Bad key(s) {} in {wrapper}", unknown.join(", ")))
                .styled(style),
        );
    }
    if service.checks_limit(set) {
        let ledger = Ledger::read(&state, &namespace, true)
            .await
            .map_err(|e| Fault::from_api(e).styled(style))?;
        if let Some((name, limit, used)) = changes
            .iter()
            .map(|(name, limit)| (name, *limit, ledger.in_use(name)))
            .find(|(_, limit, used)| *limit >= 0 && used > limit)
        {
            return Err(Fault::bad_request(format!(
                "Quota limit {limit} for {} must be greater than or equal to already used and reserved {used}.",
                name.name
            ))
            .styled(style));
        }
    }
    set_limits(&state, &namespace, &changes)
        .await
        .map_err(|e| Fault::from_api(e).styled(style))?;
    let ledger = Ledger::read(&state, &namespace, false)
        .await
        .map_err(|e| Fault::from_api(e).styled(style))?;
    Ok(Json(quota_body(service, &ledger, None, false)).into_response())
}

/// Writes limits into the namespace's `openstack` ResourceQuota (creating it); -1 removes
/// a limit, and the quota goes when it has none left.
async fn set_limits(state: &OpenStack, namespace: &str, changes: &[(&Name, i64)]) -> ApiResult<()> {
    let kind = state.engine.kind("v1", "ResourceQuota")?;
    let hard: Map<String, Value> = changes
        .iter()
        .map(|(name, limit)| {
            let value = if *limit < 0 {
                Value::Null
            } else {
                json!(name.unit.quantity(*limit))
            };
            (name.resource.to_owned(), value)
        })
        .collect();
    let options = WriteOptions::default();
    let patch = json!({"spec": {"hard": hard}});
    let clears_only = hard.values().all(Value::is_null);
    for _ in 0..4 {
        let patched = state
            .engine
            .patch(
                &kind,
                Some(namespace),
                QUOTA_NAME,
                PatchKind::Merge,
                patch.clone(),
                EngineTarget::Main,
                &options,
            )
            .await;
        match patched {
            // Nothing to clear.
            Err(error) if error.code() == 404 && clears_only => return Ok(()),
            Err(error) if error.code() == 404 => {}
            Ok(written) => {
                let empty = written.object["spec"]["hard"]
                    .as_object()
                    .is_none_or(Map::is_empty);
                if empty {
                    // No limit left: the quota goes, as after `openstack quota delete`.
                    let deleted = state
                        .engine
                        .delete(
                            &kind,
                            Some(namespace),
                            QUOTA_NAME,
                            &DeleteOptions::default(),
                        )
                        .await;
                    return match deleted {
                        Err(error) if error.code() != 404 => Err(error),
                        _ => Ok(()),
                    };
                }
                return Ok(());
            }
            Err(error) => return Err(error),
        }
        let limits: Map<String, Value> = hard
            .iter()
            .filter(|(_, value)| !value.is_null())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let body = json!({
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": QUOTA_NAME, "labels": {"app.kubernetes.io/managed-by": "ronghe-openstack"}},
            "spec": {"hard": limits},
        });
        match state
            .engine
            .create(&kind, Some(namespace), body, &options)
            .await
        {
            // Someone else created it meanwhile: patch theirs.
            Err(error) if error.code() == 409 => continue,
            other => return other.map(drop),
        }
    }
    Err(ronghe_apiserver::error::ApiError::conflict(
        &kind, QUOTA_NAME,
    ))
}

/// `DELETE`: the project's limits of this service set here go back to the defaults (none);
/// the other services' stay.
async fn reset(
    service: Service,
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(path): Path<HashMap<String, String>>,
    Query(query): Query<HashMap<String, String>>,
) -> FaultResult<Response> {
    let style = service.style();
    refuse_per_user(&query, style)?;
    let (namespace, _) = project(&state, &user, service, &path, "quota:delete").await?;
    let cleared: Vec<(&Name, i64)> = names_of(service)
        .filter(|name| !name.resource.is_empty())
        .map(|name| (name, -1))
        .collect();
    set_limits(&state, &namespace, &cleared)
        .await
        .map_err(|e| Fault::from_api(e).styled(style))?;
    let status = match service {
        Service::Compute | Service::LoadBalancer => StatusCode::ACCEPTED,
        Service::Volume => StatusCode::OK,
        Service::Network => StatusCode::NO_CONTENT,
    };
    Ok(status.into_response())
}

/// Nova's absolute limits (`GET /compute/v2.1/limits`) of a project: its limits and use
/// of instances, cores, RAM, keypairs and server groups (-1: unlimited), and the limits
/// Ronghe does not keep as unlimited.
pub(crate) async fn compute_limits(state: &OpenStack, namespace: &str) -> ApiResult<Value> {
    let ledger = Ledger::read(state, namespace, true).await?;
    let by_name = |quota: &str| {
        names_of(Service::Compute)
            .find(|n| n.name == quota)
            .map_or((-1, 0), |n| (ledger.limit(n), ledger.in_use(n)))
    };
    let mut absolute = Map::new();
    for (quota, max, total) in [
        ("instances", "maxTotalInstances", Some("totalInstancesUsed")),
        ("cores", "maxTotalCores", Some("totalCoresUsed")),
        ("ram", "maxTotalRAMSize", Some("totalRAMUsed")),
        ("key_pairs", "maxTotalKeypairs", None),
        (
            "server_groups",
            "maxServerGroups",
            Some("totalServerGroupsUsed"),
        ),
        ("server_group_members", "maxServerGroupMembers", None),
        ("metadata_items", "maxServerMeta", None),
        ("metadata_items", "maxImageMeta", None),
        ("injected_files", "maxPersonality", None),
        ("injected_file_content_bytes", "maxPersonalitySize", None),
    ] {
        let (limit, used) = by_name(quota);
        absolute.insert(max.into(), json!(limit));
        if let Some(total) = total {
            absolute.insert(total.into(), json!(used));
        }
    }
    Ok(Value::Object(absolute))
}
