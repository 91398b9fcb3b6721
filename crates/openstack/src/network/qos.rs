//! `/qos/policies` over the QosPolicy kind, its rules (`bandwidth_limit_rules`,
//! `dscp_marking_rules`, `minimum_bandwidth_rules`) kept inline in `spec.rules` and
//! changed by one read-modify-write of the policy each, and `/qos/rule-types`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Json};
use bytes::Bytes;
use http::StatusCode;
use ronghe_api_types::network::{
    FloatingIpSpec, NetworkSpec, PortSpec, QosPolicySpec, QosRule, spec_of, validate,
};
use ronghe_apiserver::auth::User;
use serde_json::{Map, Value, json};

use super::body::Attributes;
use super::fault::{NeutronFault, NeutronResult};
use super::networks::fresh;
use super::query::Query;
use super::{Ctx, FLOATING_IP, NETWORK, PORT, QOS_POLICY, answer, no_content, uid_of};
use crate::OpenStack;

/// A type of QoS rule and the attributes it takes.
#[derive(Debug)]
pub(crate) struct RuleKind {
    /// Neutron's type name (`bandwidth_limit`), also the URL's `<type>_rules`.
    pub name: &'static str,
    pub attributes: &'static [&'static str],
    /// Whether a policy holds one rule of the type per direction (else one in all).
    pub per_direction: bool,
}

pub(crate) const RULE_KINDS: &[RuleKind] = &[
    RuleKind {
        name: "bandwidth_limit",
        attributes: &["max_kbps", "max_burst_kbps", "direction"],
        per_direction: true,
    },
    RuleKind {
        name: "dscp_marking",
        attributes: &["dscp_mark"],
        per_direction: false,
    },
    RuleKind {
        name: "minimum_bandwidth",
        attributes: &["min_kbps", "direction"],
        per_direction: true,
    },
];

const CREATE: &[&str] = &[
    "name",
    "description",
    "shared",
    "is_default",
    "tags",
    "project_id",
    "tenant_id",
];

const UPDATE: &[&str] = &["name", "description", "shared", "is_default"];

pub(crate) fn routes(mut routes: Router<Arc<OpenStack>>) -> Router<Arc<OpenStack>> {
    routes = routes
        .route("/networking/v2.0/qos/policies", get(list).post(create))
        .route(
            "/networking/v2.0/qos/policies/{id}",
            get(show).put(update).delete(delete),
        )
        .route("/networking/v2.0/qos/rule-types", get(rule_types))
        .route("/networking/v2.0/qos/rule-types/{kind}", get(rule_type));
    for kind in RULE_KINDS {
        let collection = format!("/networking/v2.0/qos/policies/{{id}}/{}_rules", kind.name);
        routes = routes
            .route(
                &collection,
                get(move |state, user, path| list_rules(kind, state, user, path)).post(
                    move |state, user, path, body| create_rule(kind, state, user, path, body),
                ),
            )
            .route(
                &format!("{collection}/{{rule}}"),
                get(move |state, user, path| show_rule(kind, state, user, path))
                    .put(move |state, user, path, body| update_rule(kind, state, user, path, body))
                    .delete(move |state, user, path| delete_rule(kind, state, user, path)),
            );
    }
    routes
}

/// A rule as its own endpoint shows it.
fn rule_view(rule: &QosRule) -> Value {
    let mut view = Map::new();
    view.insert("id".into(), json!(rule.id));
    match rule.kind.as_str() {
        "bandwidth_limit" => {
            view.insert("max_kbps".into(), json!(rule.max_kbps));
            view.insert(
                "max_burst_kbps".into(),
                json!(rule.max_burst_kbps.unwrap_or(0)),
            );
            view.insert("direction".into(), json!(direction(rule)));
        }
        "dscp_marking" => {
            view.insert("dscp_mark".into(), json!(rule.dscp_mark));
        }
        _ => {
            view.insert("min_kbps".into(), json!(rule.min_kbps));
            view.insert("direction".into(), json!(direction(rule)));
        }
    }
    Value::Object(view)
}

fn direction(rule: &QosRule) -> &str {
    if rule.direction.is_empty() {
        "egress"
    } else {
        &rule.direction
    }
}

pub(crate) fn view(ctx: &Ctx, policy: &Value) -> Value {
    let spec: QosPolicySpec = spec_of(policy);
    let mut view = ctx.standard(policy);
    let rules: Vec<Value> = spec
        .rules
        .iter()
        .map(|rule| {
            let mut shown = rule_view(rule);
            shown["type"] = json!(rule.kind);
            shown["qos_policy_id"] = json!(uid_of(policy));
            shown
        })
        .collect();
    view.insert("shared".into(), json!(spec.shared));
    view.insert("is_default".into(), json!(spec.is_default));
    view.insert("rules".into(), json!(rules));
    Value::Object(view)
}

fn is_shared(policy: &Value) -> bool {
    spec_of::<QosPolicySpec>(policy).shared
}

/// A policy the caller may see (its own or a shared one).
async fn find_visible(ctx: &Ctx, id: &str) -> NeutronResult<Value> {
    match ctx.fetch(&QOS_POLICY, id).await? {
        Some(policy) if ctx.owns(&policy) || is_shared(&policy) => {
            ctx.check_own("get_policy")?;
            Ok(policy)
        }
        _ => Err(QOS_POLICY.missing(id)),
    }
}

async fn find_writable(ctx: &Ctx, id: &str, rule: &str) -> NeutronResult<Value> {
    let policy = find_visible(ctx, id).await?;
    if !ctx.owns(&policy) {
        return Err(NeutronFault::forbidden(rule));
    }
    ctx.check_on(rule, &policy)?;
    Ok(policy)
}

/// `GET /qos/policies`.
pub async fn list(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    RawQuery(raw): RawQuery,
) -> NeutronResult<Json<Value>> {
    let ctx = Ctx::new(state, &user)?;
    ctx.check_own("get_policy")?;
    let views = ctx
        .list(&QOS_POLICY, None, None)
        .await?
        .iter()
        .filter(|policy| ctx.owns(policy) || is_shared(policy))
        .map(|policy| view(&ctx, policy))
        .collect();
    ctx.list_answer(&QOS_POLICY, views, &Query::parse(raw.as_deref()))
}

/// `GET /qos/policies/{id}`.
pub async fn show(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
) -> NeutronResult<Json<Value>> {
    let ctx = Ctx::new(state, &user)?;
    let policy = find_visible(&ctx, &id).await?;
    Ok(Json(json!({"policy": view(&ctx, &policy)})))
}

fn apply(spec: &mut QosPolicySpec, attributes: &Attributes) -> NeutronResult<()> {
    if let Some(name) = attributes.string("name")? {
        spec.name = name;
    }
    if let Some(description) = attributes.string("description")? {
        spec.description = description;
    }
    if let Some(shared) = attributes.boolean("shared")? {
        spec.shared = shared;
    }
    if let Some(default) = attributes.boolean("is_default")? {
        spec.is_default = default;
    }
    if let Some(tags) = attributes.strings("tags")? {
        spec.tags = tags;
    }
    Ok(())
}

/// `POST /qos/policies`.
pub async fn create(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    body: Bytes,
) -> NeutronResult<Response> {
    let ctx = Ctx::new(state, &user)?;
    let attributes = Attributes::parse(&body, "policy", CREATE)?;
    let namespace = ctx.create_namespace(&attributes)?;
    ctx.check("create_policy", Some(&namespace))?;
    if attributes.boolean("shared")? == Some(true) {
        ctx.check("create_policy:shared", Some(&namespace))?;
    }
    let mut spec: QosPolicySpec = fresh(json!({}));
    apply(&mut spec, &attributes)?;
    let spec_value = serde_json::to_value(&spec).unwrap_or_else(|_| json!({}));
    let policy = ctx
        .create(&QOS_POLICY, &namespace, &spec.name, spec_value, None)
        .await?;
    Ok(answer(
        StatusCode::CREATED,
        json!({"policy": view(&ctx, &policy)}),
    ))
}

/// `PUT /qos/policies/{id}`.
pub async fn update(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
    body: Bytes,
) -> NeutronResult<Json<Value>> {
    let ctx = Ctx::new(state, &user)?;
    let policy = find_writable(&ctx, &id, "update_policy").await?;
    let attributes = Attributes::parse(&body, "policy", UPDATE)?;
    if attributes
        .boolean("shared")?
        .is_some_and(|s| s != is_shared(&policy))
    {
        ctx.check_on("update_policy:shared", &policy)?;
    }
    let updated = ctx
        .update_spec(&QOS_POLICY, &policy, |spec: &mut QosPolicySpec| {
            apply(spec, &attributes)
        })
        .await?;
    Ok(Json(json!({"policy": view(&ctx, &updated)})))
}

/// `DELETE /qos/policies/{id}`: refused while a network, port or floating IP uses it.
pub async fn delete(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
) -> NeutronResult<Response> {
    let ctx = Ctx::new(state, &user)?;
    let policy = find_writable(&ctx, &id, "delete_policy").await?;
    let uid = uid_of(&policy);
    let uses = |kind: &str, object: &Value| {
        NeutronFault::conflict(
            "QosPolicyInUse",
            format!("QoS Policy {uid} is used by {kind} {}.", uid_of(object)),
        )
    };
    let wanted = Some(uid.clone());
    if let Some(network) = ctx
        .list(&NETWORK, None, None)
        .await?
        .iter()
        .find(|n| spec_of::<NetworkSpec>(n).qos_policy_id == wanted)
    {
        return Err(uses("network", network));
    }
    if let Some(port) = ctx
        .list(&PORT, None, None)
        .await?
        .iter()
        .find(|p| spec_of::<PortSpec>(p).qos_policy_id == wanted)
    {
        return Err(uses("port", port));
    }
    if let Some(fip) = ctx
        .list(&FLOATING_IP, None, None)
        .await?
        .iter()
        .find(|f| spec_of::<FloatingIpSpec>(f).qos_policy_id == wanted)
    {
        return Err(uses("floatingip", fip));
    }
    ctx.delete(&QOS_POLICY, &policy).await?;
    Ok(no_content())
}

fn rule_missing(rule: &str, policy: &str) -> NeutronFault {
    NeutronFault::not_found(
        "QosRuleNotFound",
        format!("QoS rule {rule} for policy {policy} could not be found."),
    )
}

/// The rule of `kind` with id `rule` in a policy.
fn rule_in(policy: &Value, kind: &RuleKind, rule: &str) -> NeutronResult<QosRule> {
    spec_of::<QosPolicySpec>(policy)
        .rules
        .into_iter()
        .find(|r| r.id == rule && r.kind == kind.name)
        .ok_or_else(|| rule_missing(rule, &uid_of(policy)))
}

/// Applies a request's attributes to a rule.
fn apply_rule(rule: &mut QosRule, attributes: &Attributes) -> NeutronResult<()> {
    if let Some(kbps) = attributes.integer("max_kbps")? {
        rule.max_kbps = Some(kbps);
    }
    if let Some(kbps) = attributes.integer("max_burst_kbps")? {
        rule.max_burst_kbps = Some(kbps);
    }
    if let Some(kbps) = attributes.integer("min_kbps")? {
        rule.min_kbps = Some(kbps);
    }
    if let Some(mark) = attributes.integer("dscp_mark")? {
        rule.dscp_mark = Some(u8::try_from(mark).map_err(|_| {
            NeutronFault::bad_request(format!(
                "Invalid input for dscp_mark. Reason: {mark} is not a valid DSCP mark."
            ))
        })?);
    }
    if let Some(direction) = attributes.string("direction")? {
        rule.direction = direction;
    }
    Ok(())
}

/// The rules of a policy after a change, checked: Neutron's validation and one rule of a
/// type per direction.
fn checked(
    spec: &QosPolicySpec,
    kind: &RuleKind,
    changed: &QosRule,
    policy: &str,
) -> NeutronResult<()> {
    if let Some(other) = spec.rules.iter().find(|r| {
        r.id != changed.id
            && r.kind == kind.name
            && (!kind.per_direction || direction(r) == direction(changed))
    }) {
        return Err(NeutronFault::conflict(
            "QoSRulesConflict",
            format!(
                "Rule {} conflicts with rule {} which already exists in QoS Policy {policy}.",
                kind.name, other.id
            ),
        ));
    }
    let single = QosPolicySpec {
        rules: vec![changed.clone()],
        ..QosPolicySpec::default()
    };
    if let Some(problem) = validate::qos_policy(&single).into_iter().next() {
        return Err(NeutronFault::bad_request(problem.message));
    }
    Ok(())
}

async fn list_rules(
    kind: &'static RuleKind,
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
) -> NeutronResult<Json<Value>> {
    let ctx = Ctx::new(state, &user)?;
    let policy = find_visible(&ctx, &id).await?;
    let rules: Vec<Value> = spec_of::<QosPolicySpec>(&policy)
        .rules
        .iter()
        .filter(|rule| rule.kind == kind.name)
        .map(rule_view)
        .collect();
    Ok(Json(json!({format!("{}_rules", kind.name): rules})))
}

async fn show_rule(
    kind: &'static RuleKind,
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path((id, rule)): Path<(String, String)>,
) -> NeutronResult<Json<Value>> {
    let ctx = Ctx::new(state, &user)?;
    let policy = find_visible(&ctx, &id).await?;
    let found = rule_in(&policy, kind, &rule)?;
    Ok(Json(
        json!({format!("{}_rule", kind.name): rule_view(&found)}),
    ))
}

async fn create_rule(
    kind: &'static RuleKind,
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
    body: Bytes,
) -> NeutronResult<Response> {
    let ctx = Ctx::new(state, &user)?;
    let rule_name = format!("create_policy_{}_rule", kind.name);
    let policy = find_writable(&ctx, &id, &rule_name).await?;
    let attributes = Attributes::parse(&body, &format!("{}_rule", kind.name), kind.attributes)?;
    let mut rule = QosRule {
        id: uuid::Uuid::new_v4().to_string(),
        kind: kind.name.into(),
        ..QosRule::default()
    };
    apply_rule(&mut rule, &attributes)?;
    let policy_id = uid_of(&policy);
    ctx.update_spec(&QOS_POLICY, &policy, |spec: &mut QosPolicySpec| {
        checked(spec, kind, &rule, &policy_id)?;
        spec.rules.push(rule.clone());
        Ok(())
    })
    .await?;
    Ok(answer(
        StatusCode::CREATED,
        json!({format!("{}_rule", kind.name): rule_view(&rule)}),
    ))
}

async fn update_rule(
    kind: &'static RuleKind,
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path((id, rule)): Path<(String, String)>,
    body: Bytes,
) -> NeutronResult<Json<Value>> {
    let ctx = Ctx::new(state, &user)?;
    let rule_name = format!("update_policy_{}_rule", kind.name);
    let policy = find_writable(&ctx, &id, &rule_name).await?;
    rule_in(&policy, kind, &rule)?;
    let attributes = Attributes::parse(&body, &format!("{}_rule", kind.name), kind.attributes)?;
    let policy_id = uid_of(&policy);
    let updated = ctx
        .update_spec(&QOS_POLICY, &policy, |spec: &mut QosPolicySpec| {
            let Some(at) = spec.rules.iter().position(|r| r.id == rule) else {
                return Err(rule_missing(&rule, &policy_id));
            };
            let mut changed = spec.rules[at].clone();
            apply_rule(&mut changed, &attributes)?;
            checked(spec, kind, &changed, &policy_id)?;
            spec.rules[at] = changed;
            Ok(())
        })
        .await?;
    let found = rule_in(&updated, kind, &rule)?;
    Ok(Json(
        json!({format!("{}_rule", kind.name): rule_view(&found)}),
    ))
}

async fn delete_rule(
    kind: &'static RuleKind,
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path((id, rule)): Path<(String, String)>,
) -> NeutronResult<Response> {
    let ctx = Ctx::new(state, &user)?;
    let rule_name = format!("delete_policy_{}_rule", kind.name);
    let policy = find_writable(&ctx, &id, &rule_name).await?;
    rule_in(&policy, kind, &rule)?;
    ctx.update_spec(&QOS_POLICY, &policy, |spec: &mut QosPolicySpec| {
        spec.rules.retain(|r| r.id != rule);
        Ok(())
    })
    .await?;
    Ok(no_content())
}

/// `GET /qos/rule-types`.
pub async fn rule_types(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
) -> NeutronResult<Json<Value>> {
    let ctx = Ctx::new(state, &user)?;
    ctx.check_own("get_rule_type")?;
    let types: Vec<Value> = RULE_KINDS
        .iter()
        .map(|kind| json!({"type": kind.name}))
        .collect();
    Ok(Json(json!({"rule_types": types})))
}

/// `GET /qos/rule-types/{kind}`.
pub async fn rule_type(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(name): Path<String>,
) -> NeutronResult<Json<Value>> {
    let ctx = Ctx::new(state, &user)?;
    ctx.check_own("get_rule_type")?;
    let kind = RULE_KINDS
        .iter()
        .find(|kind| kind.name == name)
        .ok_or_else(|| {
            NeutronFault::not_found(
                "QosRuleTypeNotFound",
                format!("QoS rule type {name} could not be found."),
            )
        })?;
    let parameters: Vec<Value> = kind
        .attributes
        .iter()
        .map(|attribute| json!({"parameter_name": attribute, "parameter_type": "range", "parameter_values": {"start": 0, "end": 2147483647}}))
        .collect();
    Ok(Json(json!({"rule_type": {
        "type": kind.name,
        "drivers": [{"name": "ronghe", "supported_parameters": parameters}],
    }})))
}
