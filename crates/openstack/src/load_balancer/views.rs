//! What Octavia shows of each resource, from its object and its load balancer's tree (a
//! load balancer lists its listeners and pools, a pool its members and monitor, a policy
//! its rules), and the status tree.

use ronghe_api_types::loadbalancing::proxy::{
    LISTENER_ALPN_PROTOCOLS, SUPPORTED_CIPHERS, TlsVersion, default_pool_of, policies_in_order,
};
use ronghe_api_types::loadbalancing::{
    ChildStatus, HealthMonitorSpec, L7PolicySpec, L7RuleSpec, ListenerSpec, LoadBalancerSpec,
    LoadBalancerStatus, MemberSpec, PoolSpec, Tree, operating, provisioning, spec_of, status_of,
    uid,
};
use ronghe_apiserver::object;
use serde_json::{Map, Value, json};

use crate::network::Ctx;

/// Octavia's timestamps: seconds, no zone.
fn octavia_time(rfc3339: &str) -> String {
    rfc3339
        .parse::<jiff::Timestamp>()
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%S").to_string())
        .unwrap_or_else(|_| rfc3339.to_owned())
}

fn ids<'a>(objects: impl Iterator<Item = &'a Value>) -> Value {
    Value::Array(objects.map(|o| json!({"id": uid(o)})).collect())
}

fn live(object: &&Value) -> bool {
    object::deletion_timestamp(object).is_none()
}

/// The attributes every resource has.
fn common(ctx: &Ctx, object: &Value) -> Map<String, Value> {
    let project = ctx.project_id(object::namespace(object).unwrap_or_default());
    let created = object::meta_str(object, "creationTimestamp")
        .map(octavia_time)
        .unwrap_or_default();
    let mut view = Map::new();
    view.insert("id".into(), json!(uid(object)));
    view.insert("project_id".into(), json!(project));
    view.insert("tenant_id".into(), json!(project));
    view.insert("created_at".into(), json!(created));
    view.insert("updated_at".into(), Value::Null);
    view.insert(
        "admin_state_up".into(),
        json!(
            object
                .pointer("/spec/adminStateUp")
                .and_then(Value::as_bool)
                .unwrap_or(true)
        ),
    );
    view.insert(
        "tags".into(),
        object
            .pointer("/spec/tags")
            .cloned()
            .filter(Value::is_array)
            .unwrap_or_else(|| json!([])),
    );
    view
}

fn named(view: &mut Map<String, Value>, object: &Value, description: bool) {
    let text = |field: &str| {
        object
            .pointer(&format!("/spec/{field}"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    view.insert("name".into(), json!(text("name")));
    if description {
        view.insert("description".into(), json!(text("description")));
    }
}

/// A child's statuses as the controller mirrored them (PENDING_CREATE/OFFLINE before).
fn statuses(view: &mut Map<String, Value>, object: &Value) {
    let status: ChildStatus = status_of(object);
    let or = |value: String, default: &str| {
        if value.is_empty() {
            default.to_owned()
        } else {
            value
        }
    };
    view.insert(
        "provisioning_status".into(),
        json!(or(status.provisioning_status, provisioning::PENDING_CREATE)),
    );
    view.insert(
        "operating_status".into(),
        json!(or(status.operating_status, operating::OFFLINE)),
    );
}

pub fn load_balancer(ctx: &Ctx, tree: &Tree) -> Value {
    let object = &tree.load_balancer;
    let spec: LoadBalancerSpec = spec_of(object);
    let status: LoadBalancerStatus = status_of(object);
    let mut view = common(ctx, object);
    named(&mut view, object, true);
    let or = |value: &str, default: &str| {
        if value.is_empty() {
            default.to_owned()
        } else {
            value.to_owned()
        }
    };
    view.insert(
        "provisioning_status".into(),
        json!(or(
            &status.provisioning_status,
            provisioning::PENDING_CREATE
        )),
    );
    view.insert(
        "operating_status".into(),
        json!(or(&status.operating_status, operating::OFFLINE)),
    );
    view.insert("vip_address".into(), json!(spec.vip_address));
    view.insert("vip_port_id".into(), json!(spec.vip_port_id));
    view.insert("vip_subnet_id".into(), json!(spec.vip_subnet_id));
    view.insert("vip_network_id".into(), json!(spec.vip_network_id));
    view.insert("vip_qos_policy_id".into(), Value::Null);
    view.insert("vip_vnic_type".into(), json!("normal"));
    view.insert("additional_vips".into(), json!([]));
    view.insert("provider".into(), json!(spec.provider));
    view.insert("flavor_id".into(), json!(spec.flavor_id));
    view.insert("availability_zone".into(), json!(spec.availability_zone));
    view.insert("listeners".into(), ids(tree.listeners.iter().filter(live)));
    view.insert("pools".into(), ids(tree.pools.iter().filter(live)));
    Value::Object(view)
}

pub fn listener(ctx: &Ctx, object: &Value, tree: &Tree) -> Value {
    let spec: ListenerSpec = spec_of(object);
    let mut view = common(ctx, object);
    named(&mut view, object, true);
    statuses(&mut view, object);
    view.insert("protocol".into(), json!(spec.protocol));
    view.insert("protocol_port".into(), json!(spec.protocol_port));
    view.insert("connection_limit".into(), json!(spec.connection_limit));
    view.insert(
        "default_pool_id".into(),
        json!(default_pool_of(object, &tree.pools)),
    );
    view.insert(
        "default_tls_container_ref".into(),
        json!(spec.default_tls_container_ref),
    );
    view.insert("sni_container_refs".into(), json!(spec.sni_container_refs));
    view.insert("insert_headers".into(), json!(spec.insert_headers));
    view.insert(
        "timeout_client_data".into(),
        json!(spec.timeout_client_data.unwrap_or(50_000)),
    );
    view.insert(
        "timeout_member_connect".into(),
        json!(spec.timeout_member_connect.unwrap_or(5_000)),
    );
    view.insert(
        "timeout_member_data".into(),
        json!(spec.timeout_member_data.unwrap_or(50_000)),
    );
    view.insert(
        "timeout_tcp_inspect".into(),
        json!(spec.timeout_tcp_inspect.unwrap_or(0)),
    );
    view.insert(
        "allowed_cidrs".into(),
        if spec.allowed_cidrs.is_empty() {
            Value::Null
        } else {
            json!(spec.allowed_cidrs)
        },
    );
    view.insert(
        "loadbalancers".into(),
        json!([{"id": spec.load_balancer_id}]),
    );
    view.insert(
        "l7policies".into(),
        ids(policies_in_order(uid(object), &tree.policies).into_iter()),
    );
    // What TERMINATED_HTTPS listeners offer unless told otherwise; other listeners have
    // none.
    let terminated = spec.protocol == "TERMINATED_HTTPS";
    tls_settings(
        &mut view,
        (&spec.tls_versions, &spec.tls_ciphers),
        terminated,
    );
    view.insert(
        "alpn_protocols".into(),
        match &spec.alpn_protocols {
            Some(protocols) => json!(protocols),
            None if terminated => json!(LISTENER_ALPN_PROTOCOLS),
            None => Value::Null,
        },
    );
    view.insert(
        "client_authentication".into(),
        json!(spec.client_authentication.as_deref().unwrap_or("NONE")),
    );
    view.insert(
        "client_ca_tls_container_ref".into(),
        json!(spec.client_ca_tls_container_ref),
    );
    view.insert(
        "client_crl_container_ref".into(),
        json!(spec.client_crl_container_ref),
    );
    Value::Object(view)
}

pub fn pool(ctx: &Ctx, object: &Value, tree: &Tree) -> Value {
    let spec: PoolSpec = spec_of(object);
    let id = uid(object);
    let mut view = common(ctx, object);
    named(&mut view, object, true);
    statuses(&mut view, object);
    view.insert("protocol".into(), json!(spec.protocol));
    view.insert("lb_algorithm".into(), json!(spec.lb_algorithm));
    view.insert(
        "session_persistence".into(),
        match &spec.session_persistence {
            Some(p) => json!({
                "type": p.persistence_type,
                "cookie_name": p.cookie_name,
                "persistence_timeout": p.persistence_timeout,
                "persistence_granularity": p.persistence_granularity,
            }),
            None => Value::Null,
        },
    );
    view.insert(
        "loadbalancers".into(),
        json!([{"id": spec.load_balancer_id}]),
    );
    let listeners = tree
        .listeners
        .iter()
        .filter(live)
        .filter(|l| default_pool_of(l, &tree.pools).as_deref() == Some(id));
    view.insert("listeners".into(), ids(listeners));
    let members = tree
        .members
        .iter()
        .filter(live)
        .filter(|m| spec_of::<MemberSpec>(m).pool_id == id);
    view.insert("members".into(), ids(members));
    view.insert(
        "healthmonitor_id".into(),
        json!(
            tree.monitors
                .iter()
                .filter(live)
                .find(|m| spec_of::<HealthMonitorSpec>(m).pool_id == id)
                .map(uid)
        ),
    );
    view.insert("tls_enabled".into(), json!(spec.tls_enabled));
    view.insert("tls_container_ref".into(), json!(spec.tls_container_ref));
    view.insert(
        "ca_tls_container_ref".into(),
        json!(spec.ca_tls_container_ref),
    );
    view.insert("crl_container_ref".into(), json!(spec.crl_container_ref));
    // A TLS pool offers its members no ALPN protocol unless told to.
    tls_settings(
        &mut view,
        (&spec.tls_versions, &spec.tls_ciphers),
        spec.tls_enabled,
    );
    view.insert("alpn_protocols".into(), json!(spec.alpn_protocols));
    Value::Object(view)
}

/// The TLS versions and ciphers of a listener or pool: those set, else, where TLS is
/// spoken (`tls`), what the proxy offers by default (every version and cipher suite it
/// has; Octavia shows its defaults too), else null.
fn tls_settings(
    view: &mut Map<String, Value>,
    (versions, ciphers): (&Option<Vec<String>>, &Option<String>),
    tls: bool,
) {
    let shown = |set: Option<Value>, default: Value| match set {
        Some(set) => set,
        None if tls => default,
        None => Value::Null,
    };
    view.insert(
        "tls_versions".into(),
        shown(
            versions.as_ref().map(|versions| json!(versions)),
            json!(TlsVersion::ALL.map(TlsVersion::name)),
        ),
    );
    view.insert(
        "tls_ciphers".into(),
        shown(
            ciphers.as_ref().map(|ciphers| json!(ciphers)),
            json!(SUPPORTED_CIPHERS.join(":")),
        ),
    );
}

pub fn member(ctx: &Ctx, object: &Value) -> Value {
    let spec: MemberSpec = spec_of(object);
    let mut view = common(ctx, object);
    named(&mut view, object, false);
    statuses(&mut view, object);
    view.insert("address".into(), json!(spec.address));
    view.insert("protocol_port".into(), json!(spec.protocol_port));
    view.insert("weight".into(), json!(spec.weight));
    view.insert("backup".into(), json!(spec.backup));
    view.insert("subnet_id".into(), json!(spec.subnet_id));
    view.insert("monitor_address".into(), json!(spec.monitor_address));
    view.insert("monitor_port".into(), json!(spec.monitor_port));
    view.insert("vnic_type".into(), json!("normal"));
    Value::Object(view)
}

pub fn health_monitor(ctx: &Ctx, object: &Value) -> Value {
    let spec: HealthMonitorSpec = spec_of(object);
    let mut view = common(ctx, object);
    named(&mut view, object, false);
    statuses(&mut view, object);
    view.insert("type".into(), json!(spec.monitor_type));
    view.insert("delay".into(), json!(spec.delay));
    view.insert("timeout".into(), json!(spec.timeout));
    view.insert("max_retries".into(), json!(spec.max_retries));
    view.insert(
        "max_retries_down".into(),
        json!(spec.max_retries_down.unwrap_or(3)),
    );
    view.insert("http_method".into(), json!(spec.http_method));
    view.insert("http_version".into(), json!(spec.http_version));
    view.insert("domain_name".into(), json!(spec.domain_name));
    view.insert("url_path".into(), json!(spec.url_path));
    view.insert("expected_codes".into(), json!(spec.expected_codes));
    view.insert("pools".into(), json!([{"id": spec.pool_id}]));
    Value::Object(view)
}

pub fn l7_policy(ctx: &Ctx, object: &Value, tree: &Tree) -> Value {
    let spec: L7PolicySpec = spec_of(object);
    let mut view = common(ctx, object);
    named(&mut view, object, true);
    statuses(&mut view, object);
    let position = policies_in_order(&spec.listener_id, &tree.policies)
        .iter()
        .position(|p| uid(p) == uid(object))
        .map_or(spec.position.unwrap_or(1), |i| i as u32 + 1);
    view.insert("action".into(), json!(spec.action));
    view.insert("listener_id".into(), json!(spec.listener_id));
    view.insert("position".into(), json!(position));
    view.insert("redirect_pool_id".into(), json!(spec.redirect_pool_id));
    view.insert("redirect_url".into(), json!(spec.redirect_url));
    view.insert("redirect_prefix".into(), json!(spec.redirect_prefix));
    view.insert("redirect_http_code".into(), json!(spec.redirect_http_code));
    let rules = tree
        .rules
        .iter()
        .filter(live)
        .filter(|r| spec_of::<L7RuleSpec>(r).l7_policy_id == uid(object));
    view.insert("rules".into(), ids(rules));
    Value::Object(view)
}

pub fn l7_rule(ctx: &Ctx, object: &Value) -> Value {
    let spec: L7RuleSpec = spec_of(object);
    let mut view = common(ctx, object);
    statuses(&mut view, object);
    view.insert("type".into(), json!(spec.rule_type));
    view.insert("compare_type".into(), json!(spec.compare_type));
    view.insert("key".into(), json!(spec.key));
    view.insert("value".into(), json!(spec.value));
    view.insert("invert".into(), json!(spec.invert));
    Value::Object(view)
}

/// `GET /loadbalancers/{id}/status`: the tree of statuses.
pub fn status_tree(tree: &Tree) -> Value {
    let lb_status: LoadBalancerStatus = status_of(&tree.load_balancer);
    let name = |o: &Value| {
        o.pointer("/spec/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let statuses = |o: &Value| {
        let s: ChildStatus = status_of(o);
        (s.provisioning_status, s.operating_status)
    };
    let pool_view = |pool: &Value| {
        let id = uid(pool);
        let (p, o) = statuses(pool);
        let members: Vec<Value> = tree
            .members
            .iter()
            .filter(live)
            .filter(|m| spec_of::<MemberSpec>(m).pool_id == id)
            .map(|m| {
                let spec: MemberSpec = spec_of(m);
                let (p, o) = statuses(m);
                json!({"id": uid(m), "name": name(m), "provisioning_status": p,
                       "operating_status": o, "address": spec.address,
                       "protocol_port": spec.protocol_port})
            })
            .collect();
        let mut view = json!({"id": id, "name": name(pool), "provisioning_status": p,
                              "operating_status": o, "members": members});
        if let Some(monitor) = tree
            .monitors
            .iter()
            .filter(live)
            .find(|m| spec_of::<HealthMonitorSpec>(m).pool_id == id)
        {
            let (p, o) = statuses(monitor);
            view["health_monitor"] = json!({"id": uid(monitor), "name": name(monitor),
                "type": spec_of::<HealthMonitorSpec>(monitor).monitor_type,
                "provisioning_status": p, "operating_status": o});
        }
        view
    };
    let listeners: Vec<Value> = tree
        .listeners
        .iter()
        .filter(live)
        .map(|listener| {
            let (p, o) = statuses(listener);
            let pools: Vec<Value> = tree
                .pools
                .iter()
                .filter(live)
                .filter(|pool| {
                    let id = uid(pool);
                    default_pool_of(listener, &tree.pools).as_deref() == Some(id)
                        || policies_in_order(uid(listener), &tree.policies)
                            .iter()
                            .any(|p| {
                                spec_of::<L7PolicySpec>(p).redirect_pool_id.as_deref() == Some(id)
                            })
                })
                .map(pool_view)
                .collect();
            json!({"id": uid(listener), "name": name(listener), "provisioning_status": p,
                   "operating_status": o, "pools": pools})
        })
        .collect();
    let pools: Vec<Value> = tree.pools.iter().filter(live).map(pool_view).collect();
    json!({"statuses": {"loadbalancer": {
        "id": uid(&tree.load_balancer),
        "name": name(&tree.load_balancer),
        "provisioning_status": lb_status.provisioning_status,
        "operating_status": lb_status.operating_status,
        "listeners": listeners,
        "pools": pools,
    }}})
}
