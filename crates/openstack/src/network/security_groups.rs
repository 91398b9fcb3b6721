//! `/security-groups` over the SecurityGroup kind, each shown with its rules. The
//! project's `default` group is made when the project lists or creates groups (clients
//! look it up by name); it cannot be renamed, and only admins remove it. A new group gets
//! Neutron's two egress rules; a group ports use cannot be deleted.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::{Extension, Json};
use bytes::Bytes;
use http::StatusCode;
use ronghe_api_types::network::{PortSpec, SecurityGroupRuleSpec, SecurityGroupSpec, spec_of};
use ronghe_apiserver::auth::User;
use ronghe_apiserver::kinds::network::default_security_group;
use ronghe_apiserver::object;
use serde_json::{Value, json};

use super::body::Attributes;
use super::fault::{NeutronFault, NeutronResult};
use super::networks::fresh;
use super::query::Query;
use super::{
    Ctx, PORT, SECURITY_GROUP, SECURITY_GROUP_RULE, answer, neutron_name, no_content, rules, text,
    uid_of,
};
use crate::OpenStack;

const CREATE: &[&str] = &[
    "name",
    "description",
    "stateful",
    "tags",
    "project_id",
    "tenant_id",
];

const UPDATE: &[&str] = &["name", "description", "stateful"];

/// Makes sure the caller's project has its `default` group.
pub(crate) async fn ensure_default(ctx: &Ctx) -> NeutronResult<()> {
    if let Some(namespace) = ctx.own_namespace() {
        let namespace = namespace.to_owned();
        default_security_group(ctx.engine(), &namespace).await?;
    }
    Ok(())
}

pub(crate) fn is_default(group: &Value) -> bool {
    neutron_name(group) == "default"
}

/// A group with its rules (`rules`: views of every rule of the group).
pub(crate) fn view(ctx: &Ctx, group: &Value, rules: Vec<Value>) -> Value {
    let spec: SecurityGroupSpec = spec_of(group);
    let mut view = ctx.standard(group);
    view.insert("stateful".into(), json!(spec.stateful));
    view.insert("shared".into(), json!(false));
    view.insert("security_group_rules".into(), json!(rules));
    Value::Object(view)
}

/// The rules of one group, as views.
async fn rules_of(ctx: &Ctx, group: &Value) -> NeutronResult<Vec<Value>> {
    let selector = format!("spec.securityGroupId={}", uid_of(group));
    let default = is_default(group);
    Ok(ctx
        .list(
            &SECURITY_GROUP_RULE,
            object::namespace(group),
            Some(&selector),
        )
        .await?
        .iter()
        .map(|rule| rules::view(ctx, rule, default))
        .collect())
}

/// `GET /security-groups`.
pub async fn list(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    RawQuery(raw): RawQuery,
) -> NeutronResult<Json<Value>> {
    let ctx = Ctx::new(state, &user)?;
    ctx.check_own("get_security_group")?;
    ensure_default(&ctx).await?;
    let query = Query::parse(raw.as_deref());
    let groups = ctx.list_owned(&SECURITY_GROUP).await?;
    let defaults: HashMap<String, bool> =
        groups.iter().map(|g| (uid_of(g), is_default(g))).collect();
    let mut by_group: HashMap<String, Vec<Value>> = HashMap::new();
    for rule in ctx.list_owned(&SECURITY_GROUP_RULE).await? {
        let group = text(&rule, "/spec/securityGroupId").to_owned();
        let default = defaults.get(&group).copied().unwrap_or(false);
        by_group
            .entry(group)
            .or_default()
            .push(rules::view(&ctx, &rule, default));
    }
    let views = groups
        .iter()
        .map(|group| {
            let rules = by_group.remove(&uid_of(group)).unwrap_or_default();
            view(&ctx, group, rules)
        })
        .collect();
    ctx.list_answer(&SECURITY_GROUP, views, &query)
}

/// `GET /security-groups/{id}`.
pub async fn show(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> NeutronResult<Json<Value>> {
    let ctx = Ctx::new(state, &user)?;
    let group = ctx.fetch_owned(&SECURITY_GROUP, &id).await?;
    let rules = rules_of(&ctx, &group).await?;
    ctx.show_answer(&SECURITY_GROUP, view(&ctx, &group, rules), raw.as_deref())
}

fn apply(spec: &mut SecurityGroupSpec, attributes: &Attributes) -> NeutronResult<()> {
    if let Some(name) = attributes.string("name")? {
        spec.name = name;
    }
    if let Some(description) = attributes.string("description")? {
        spec.description = description;
    }
    if let Some(stateful) = attributes.boolean("stateful")? {
        spec.stateful = stateful;
    }
    if let Some(tags) = attributes.strings("tags")? {
        spec.tags = tags;
    }
    Ok(())
}

/// `POST /security-groups`: the group and its two egress rules, or nothing.
pub async fn create(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    body: Bytes,
) -> NeutronResult<Response> {
    let ctx = Ctx::new(state, &user)?;
    let attributes = Attributes::parse(&body, "security_group", CREATE)?;
    let namespace = ctx.create_namespace(&attributes)?;
    ctx.check("create_security_group", Some(&namespace))?;
    default_security_group(ctx.engine(), &namespace).await?;
    let mut spec: SecurityGroupSpec = fresh(json!({}));
    apply(&mut spec, &attributes)?;
    let spec_value = serde_json::to_value(&spec).unwrap_or_else(|_| json!({}));
    let group = ctx
        .create(&SECURITY_GROUP, &namespace, &spec.name, spec_value, None)
        .await?;
    let mut made = Vec::new();
    for ethertype in ["IPv4", "IPv6"] {
        let rule = SecurityGroupRuleSpec {
            security_group_id: uid_of(&group),
            direction: "egress".into(),
            ethertype: ethertype.into(),
            ..SecurityGroupRuleSpec::default()
        };
        let rule_value = serde_json::to_value(&rule).unwrap_or_else(|_| json!({}));
        match ctx
            .create(&SECURITY_GROUP_RULE, &namespace, "", rule_value, None)
            .await
        {
            Ok(rule) => made.push(rule),
            Err(fault) => {
                for rule in &made {
                    ctx.delete_quietly(&SECURITY_GROUP_RULE, rule).await;
                }
                ctx.delete_quietly(&SECURITY_GROUP, &group).await;
                return Err(fault);
            }
        }
    }
    let rules = made.iter().map(|r| rules::view(&ctx, r, false)).collect();
    Ok(answer(
        StatusCode::CREATED,
        json!({"security_group": view(&ctx, &group, rules)}),
    ))
}

/// `PUT /security-groups/{id}`.
pub async fn update(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
    body: Bytes,
) -> NeutronResult<Json<Value>> {
    let ctx = Ctx::new(state, &user)?;
    let group = ctx.fetch_owned(&SECURITY_GROUP, &id).await?;
    ctx.check_on("update_security_group", &group)?;
    let attributes = Attributes::parse(&body, "security_group", UPDATE)?;
    if is_default(&group)
        && attributes
            .string("name")?
            .is_some_and(|name| name != "default")
    {
        return Err(NeutronFault::conflict(
            "SecurityGroupCannotUpdateDefault",
            "Updating default security group not allowed.",
        ));
    }
    let updated = ctx
        .update_spec(&SECURITY_GROUP, &group, |spec: &mut SecurityGroupSpec| {
            apply(spec, &attributes)
        })
        .await?;
    let rules = rules_of(&ctx, &updated).await?;
    Ok(Json(json!({"security_group": view(&ctx, &updated, rules)})))
}

/// `DELETE /security-groups/{id}`: refused for `default` (unless an admin asks) and while
/// ports use the group; its rules, and rules naming it as their remote, go with it.
pub async fn delete(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
) -> NeutronResult<Response> {
    let ctx = Ctx::new(state, &user)?;
    let group = ctx.fetch_owned(&SECURITY_GROUP, &id).await?;
    ctx.check_on("delete_security_group", &group)?;
    let uid = uid_of(&group);
    if is_default(&group) && !ctx.is_admin() {
        return Err(NeutronFault::conflict(
            "SecurityGroupCannotRemoveDefault",
            "Insufficient rights for removing default security group.",
        ));
    }
    let namespace = object::namespace(&group).map(str::to_owned);
    let ports = ctx.list(&PORT, namespace.as_deref(), None).await?;
    if ports.iter().any(|port| {
        spec_of::<PortSpec>(port)
            .security_groups
            .is_some_and(|groups| groups.contains(&uid))
    }) {
        return Err(NeutronFault::conflict(
            "SecurityGroupInUse",
            format!("Security Group {uid} in use."),
        ));
    }
    for rule in ctx
        .list(&SECURITY_GROUP_RULE, namespace.as_deref(), None)
        .await?
    {
        let spec: SecurityGroupRuleSpec = spec_of(&rule);
        if spec.security_group_id == uid || spec.remote_group_id.as_deref() == Some(uid.as_str()) {
            ctx.delete_quietly(&SECURITY_GROUP_RULE, &rule).await;
        }
    }
    ctx.delete(&SECURITY_GROUP, &group).await?;
    Ok(no_content())
}
