//! `/security-group-rules` over the SecurityGroupRule kind: list, show, create, delete
//! (rules do not change). A rule lives in its group's project; duplicates are refused by
//! the kind's claims (`SecurityGroupRuleExists`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::{Extension, Json};
use bytes::Bytes;
use http::StatusCode;
use ronghe_api_types::network::ipam;
use ronghe_api_types::network::{SecurityGroupRuleSpec, spec_of, validate};
use ronghe_apiserver::auth::User;
use ronghe_apiserver::object;
use serde_json::{Value, json};

use super::body::Attributes;
use super::fault::{NeutronFault, NeutronResult};
use super::query::Query;
use super::security_groups::{ensure_default, is_default};
use super::{Ctx, SECURITY_GROUP, SECURITY_GROUP_RULE, answer, canonical_id, no_content, uid_of};
use crate::OpenStack;

const CREATE: &[&str] = &[
    "security_group_id",
    "direction",
    "ethertype",
    "protocol",
    "port_range_min",
    "port_range_max",
    "remote_ip_prefix",
    "remote_group_id",
    "remote_address_group_id",
    "description",
    "project_id",
    "tenant_id",
];

/// A rule as Neutron shows it; `in_default` says whether its group is `default`.
pub(crate) fn view(ctx: &Ctx, rule: &Value, in_default: bool) -> Value {
    let spec: SecurityGroupRuleSpec = spec_of(rule);
    let mut view = ctx.standard(rule);
    view.remove("name");
    view.remove("tags");
    let normalized = spec
        .remote_ip_prefix
        .as_deref()
        .map(|prefix| ipam::parse_prefix(prefix).map_or(prefix.to_owned(), |n| n.to_string()));
    let ethertype = if spec.ethertype.is_empty() {
        "IPv4".to_owned()
    } else {
        spec.ethertype.clone()
    };
    for (key, value) in [
        ("security_group_id", json!(spec.security_group_id)),
        ("direction", json!(spec.direction)),
        ("ethertype", json!(ethertype)),
        ("protocol", json!(spec.protocol)),
        ("port_range_min", json!(spec.port_range_min)),
        ("port_range_max", json!(spec.port_range_max)),
        ("remote_ip_prefix", json!(spec.remote_ip_prefix)),
        ("remote_group_id", json!(spec.remote_group_id)),
        ("remote_address_group_id", Value::Null),
        ("normalized_cidr", json!(normalized)),
        ("belongs_to_default_sg", json!(in_default)),
    ] {
        view.insert(key.into(), value);
    }
    Value::Object(view)
}

/// Whether the group a rule belongs to is `default`.
async fn in_default(ctx: &Ctx, rule: &Value) -> NeutronResult<bool> {
    let group_id = spec_of::<SecurityGroupRuleSpec>(rule).security_group_id;
    Ok(ctx
        .fetch(&SECURITY_GROUP, &group_id)
        .await?
        .is_some_and(|group| is_default(&group)))
}

/// `GET /security-group-rules`.
pub async fn list(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    RawQuery(raw): RawQuery,
) -> NeutronResult<Json<Value>> {
    let ctx = Ctx::new(state, &user)?;
    ctx.check_own("get_security_group_rule")?;
    ensure_default(&ctx).await?;
    let query = Query::parse(raw.as_deref());
    let defaults: HashMap<String, bool> = ctx
        .list_owned(&SECURITY_GROUP)
        .await?
        .iter()
        .map(|group| (uid_of(group), is_default(group)))
        .collect();
    let views = ctx
        .list_owned(&SECURITY_GROUP_RULE)
        .await?
        .iter()
        .map(|rule| {
            let group = spec_of::<SecurityGroupRuleSpec>(rule).security_group_id;
            view(&ctx, rule, defaults.get(&group).copied().unwrap_or(false))
        })
        .collect();
    ctx.list_answer(&SECURITY_GROUP_RULE, views, &query)
}

/// `GET /security-group-rules/{id}`.
pub async fn show(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> NeutronResult<Json<Value>> {
    let ctx = Ctx::new(state, &user)?;
    let rule = ctx.fetch_owned(&SECURITY_GROUP_RULE, &id).await?;
    let default = in_default(&ctx, &rule).await?;
    ctx.show_answer(
        &SECURITY_GROUP_RULE,
        view(&ctx, &rule, default),
        raw.as_deref(),
    )
}

/// A protocol as a request gives it: a name, a number, or nothing.
fn protocol_of(attributes: &Attributes) -> NeutronResult<Option<String>> {
    match attributes.raw("protocol") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(name)) if name.is_empty() || name == "any" => Ok(None),
        Some(Value::String(name)) => Ok(Some(name.to_ascii_lowercase())),
        Some(Value::Number(number)) => Ok(Some(number.to_string())),
        Some(other) => Err(NeutronFault::bad_request(format!(
            "Invalid input for protocol. Reason: '{other}' is not a valid protocol."
        ))),
    }
}

/// `POST /security-group-rules`.
pub async fn create(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    body: Bytes,
) -> NeutronResult<Response> {
    let ctx = Ctx::new(state, &user)?;
    let attributes = Attributes::parse(&body, "security_group_rule", CREATE)?;
    let group_id = attributes.string("security_group_id")?.ok_or_else(|| {
        NeutronFault::bad_request("Invalid input for operation: security_group_id is required.")
    })?;
    let group = ctx.fetch_owned(&SECURITY_GROUP, &group_id).await?;
    let namespace = object::namespace(&group).unwrap_or_default().to_owned();
    ctx.check("create_security_group_rule", Some(&namespace))?;
    if attributes
        .raw("remote_address_group_id")
        .is_some_and(|v| !v.is_null())
    {
        return Err(NeutronFault::bad_request(
            "Invalid input for operation: remote_address_group_id is not supported.",
        ));
    }
    let remote_group_id = match attributes.nullable_string("remote_group_id")?.flatten() {
        None => None,
        Some(id) => Some(uid_of(&ctx.fetch_owned(&SECURITY_GROUP, &id).await?)),
    };
    let spec = SecurityGroupRuleSpec {
        security_group_id: uid_of(&group),
        direction: attributes.string("direction")?.unwrap_or_default(),
        ethertype: attributes
            .string("ethertype")?
            .unwrap_or_else(|| "IPv4".into()),
        protocol: protocol_of(&attributes)?,
        port_range_min: attributes.small_integer("port_range_min")?,
        port_range_max: attributes.small_integer("port_range_max")?,
        remote_ip_prefix: attributes.nullable_string("remote_ip_prefix")?.flatten(),
        remote_group_id,
        description: attributes.string("description")?.unwrap_or_default(),
    };
    if let Some(problem) = validate::security_group_rule(&spec).into_iter().next() {
        return Err(NeutronFault::bad_request(problem.message));
    }
    let spec_value = serde_json::to_value(&spec).unwrap_or_else(|_| json!({}));
    let rule = ctx
        .create(&SECURITY_GROUP_RULE, &namespace, "", spec_value, None)
        .await?;
    let default = is_default(&group);
    Ok(answer(
        StatusCode::CREATED,
        json!({"security_group_rule": view(&ctx, &rule, default)}),
    ))
}

/// `DELETE /security-group-rules/{id}`.
pub async fn delete(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
) -> NeutronResult<Response> {
    let ctx = Ctx::new(state, &user)?;
    let rule = ctx
        .fetch_owned(&SECURITY_GROUP_RULE, &canonical_id(&id))
        .await?;
    ctx.check_on("delete_security_group_rule", &rule)?;
    ctx.delete(&SECURITY_GROUP_RULE, &rule).await?;
    Ok(no_content())
}
