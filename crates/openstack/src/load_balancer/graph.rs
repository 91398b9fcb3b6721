//! Octavia's fully populated create: a load balancer request that carries `listeners`
//! (each with a `default_pool` and `l7policies` with their `rules` and `redirect_pool`)
//! and `pools` (each with its `members` and `healthmonitor`) makes the whole graph in one
//! call, as cloud-provider-openstack does for a Service.
//!
//! As in Octavia (`_graph_create`): pools are named; an inline pool with more than its
//! name is a definition, moved to the request's pools, and one with its name only is a
//! reference to a pool defined somewhere in the request; names are unique and every
//! reference must resolve. The request is read whole first ([`plan`], no I/O), so a
//! malformed one makes nothing. Then the load balancer is made, all pools (with members and
//! monitors), the listeners, their policies and rules, each checked by its kind's
//! admission; if one is refused, the load balancer is deleted again with all under it and
//! the refusal is the answer. That runs in a task of its own, so a client that hangs up
//! half way leaves no half-made graph behind.

use std::collections::{HashMap, HashSet};

use ronghe_api_types::loadbalancing::{API_VERSION, Tree, uid};
use ronghe_apiserver::engine::{DeleteOptions, WriteOptions};
use ronghe_apiserver::object;
use serde_json::{Map, Value, json};

use super::attributes;
use super::fault::{OctaviaResult, bad, from_api};
use super::{
    HEALTH_MONITOR, L7_POLICY, L7_RULE, LISTENER, LOAD_BALANCER, MEMBER, POOL, Resource, check,
    defaults, make, views,
};
use crate::fault::Fault;
use crate::network::Ctx;

/// The members of a load balancer request that make it a graph.
const GRAPH: [&str; 2] = ["listeners", "pools"];

/// Whether a load balancer request asks for a fully populated create.
pub(super) fn is_graph(request: &Map<String, Value>) -> bool {
    GRAPH.iter().any(|key| request.contains_key(*key))
}

/// A graph read from a request: each object's spec (attributes checked and converted),
/// links between them by pool name.
#[derive(Debug, Default)]
pub(super) struct Plan {
    load_balancer: Map<String, Value>,
    /// Every pool defined, the request's `pools` first, then inline ones in order.
    pools: Vec<PoolPlan>,
    listeners: Vec<ListenerPlan>,
}

#[derive(Debug)]
struct PoolPlan {
    name: Option<String>,
    spec: Map<String, Value>,
    members: Vec<Map<String, Value>>,
    monitor: Option<Map<String, Value>>,
}

#[derive(Debug)]
struct ListenerPlan {
    spec: Map<String, Value>,
    default_pool: Option<String>,
    policies: Vec<PolicyPlan>,
}

#[derive(Debug)]
struct PolicyPlan {
    spec: Map<String, Value>,
    redirect_pool: Option<String>,
    rules: Vec<Map<String, Value>>,
}

/// Reads a graph request whole, or says what is wrong with it in Octavia's words.
pub(super) fn plan(request: &Map<String, Value>) -> OctaviaResult<Plan> {
    let mut plan = Plan {
        load_balancer: spec(&LOAD_BALANCER, request, &GRAPH)?,
        ..Plan::default()
    };
    for pool in entries(request, "pools")? {
        plan.pools.push(pool_plan(pool)?);
    }
    // Pools referenced by name only, which a definition must provide.
    let mut required = HashSet::new();
    let mut inline = |pool: Option<&Value>, key: &str| -> OctaviaResult<Option<String>> {
        let Some(pool) = pool.filter(|p| !p.is_null()) else {
            return Ok(None);
        };
        let pool = object_of(pool, key)?;
        let name = pool
            .get("name")
            .and_then(Value::as_str)
            .filter(|name| !name.is_empty())
            .ok_or_else(|| {
                bad("Pools must be named when creating a fully populated loadbalancer.")
            })?
            .to_owned();
        if pool.len() > 1 {
            plan.pools.push(pool_plan(pool)?);
        } else {
            required.insert(name.clone());
        }
        Ok(Some(name))
    };
    let mut listeners = Vec::new();
    for listener in entries(request, "listeners")? {
        let default_pool = inline(listener.get("default_pool"), "default_pool")?;
        let mut policies = Vec::new();
        for policy in entries(listener, "l7policies")? {
            let redirect_pool = inline(policy.get("redirect_pool"), "redirect_pool")?;
            let rules = entries(policy, "rules")?
                .into_iter()
                .map(|rule| spec(&L7_RULE, rule, &[]))
                .collect::<OctaviaResult<_>>()?;
            policies.push(PolicyPlan {
                spec: spec(&L7_POLICY, policy, &["redirect_pool", "rules"])?,
                redirect_pool,
                rules,
            });
        }
        listeners.push(ListenerPlan {
            spec: spec(&LISTENER, listener, &["default_pool", "l7policies"])?,
            default_pool,
            policies,
        });
    }
    plan.listeners = listeners;
    let mut names = HashSet::new();
    for name in plan.pools.iter().filter_map(|p| p.name.as_deref()) {
        if !names.insert(name) {
            return Err(bad(
                "Pool names must be unique when creating a fully populated loadbalancer.",
            ));
        }
    }
    let mut required: Vec<&String> = required.iter().collect();
    required.sort();
    if let Some(missing) = required
        .into_iter()
        .find(|name| !names.contains(name.as_str()))
    {
        return Err(bad(format!(
            "Pool '{missing}' was referenced but no full definition was found."
        )));
    }
    Ok(plan)
}

fn pool_plan(pool: &Map<String, Value>) -> OctaviaResult<PoolPlan> {
    let name = pool.get("name").and_then(Value::as_str).map(str::to_owned);
    for required in ["protocol", "lb_algorithm"] {
        if !pool.contains_key(required) {
            return Err(bad(format!(
                "Pool definition for '{}' missing required attribute: {required}",
                name.as_deref().unwrap_or_default()
            )));
        }
    }
    let members = entries(pool, "members")?
        .into_iter()
        .map(|member| spec(&MEMBER, member, &[]))
        .collect::<OctaviaResult<_>>()?;
    let monitor = match pool.get("healthmonitor").filter(|m| !m.is_null()) {
        Some(monitor) => Some(spec(
            &HEALTH_MONITOR,
            object_of(monitor, "healthmonitor")?,
            &[],
        )?),
        None => None,
    };
    Ok(PoolPlan {
        name,
        spec: spec(&POOL, pool, &["members", "healthmonitor"])?,
        members,
        monitor,
    })
}

/// The spec of one object of the graph from its `entry`, without its `nested` members;
/// references to other objects are the graph's to set, not the entry's.
fn spec(
    resource: &Resource,
    entry: &Map<String, Value>,
    nested: &[&str],
) -> OctaviaResult<Map<String, Value>> {
    let linked = [
        "loadbalancer_id",
        "listener_id",
        "pool_id",
        "default_pool_id",
        "redirect_pool_id",
    ];
    let own: Map<String, Value> = entry
        .iter()
        .filter(|(key, _)| !nested.contains(&key.as_str()))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    if resource.kind != "LoadBalancer"
        && let Some(key) = own.keys().find(|key| linked.contains(&key.as_str()))
    {
        return Err(bad(format!(
            "Unknown attribute for argument {}: {key}",
            resource.singular
        )));
    }
    let mut spec = Map::new();
    attributes::apply(
        &mut spec,
        &own,
        resource.attributes,
        true,
        resource.singular,
    )?;
    defaults(resource, &mut spec);
    Ok(spec)
}

/// Makes the graph of `plan` in `namespace`; returns the load balancer. The caller must
/// be allowed to create each kind of object in it.
pub(super) async fn create(ctx: &Ctx, namespace: &str, plan: Plan) -> OctaviaResult<Value> {
    let kinds: [(&Resource, bool); 7] = [
        (&LOAD_BALANCER, true),
        (&POOL, !plan.pools.is_empty()),
        (&MEMBER, plan.pools.iter().any(|p| !p.members.is_empty())),
        (
            &HEALTH_MONITOR,
            plan.pools.iter().any(|p| p.monitor.is_some()),
        ),
        (&LISTENER, !plan.listeners.is_empty()),
        (
            &L7_POLICY,
            plan.listeners.iter().any(|l| !l.policies.is_empty()),
        ),
        (
            &L7_RULE,
            plan.listeners
                .iter()
                .flat_map(|l| &l.policies)
                .any(|p| !p.rules.is_empty()),
        ),
    ];
    for (resource, present) in kinds {
        if present {
            check(ctx, &resource.rule("post"), Some(namespace))?;
        }
    }
    let (ctx, namespace) = (ctx.clone(), namespace.to_owned());
    tokio::spawn(async move { build(&ctx, &namespace, plan).await })
        .await
        .map_err(|error| {
            Fault::new(
                http::StatusCode::INTERNAL_SERVER_ERROR,
                format!("Making the load balancer failed: {error}"),
            )
            .styled(crate::fault::Style::Octavia)
        })?
}

async fn build(ctx: &Ctx, namespace: &str, plan: Plan) -> OctaviaResult<Value> {
    let load_balancer = make(
        ctx,
        &LOAD_BALANCER,
        namespace,
        plan.load_balancer.clone(),
        &WriteOptions::default(),
    )
    .await?;
    if let Err(fault) = populate(ctx, namespace, uid(&load_balancer), plan).await {
        remove(ctx, &load_balancer).await;
        return Err(fault);
    }
    Ok(load_balancer)
}

/// Makes everything under load balancer `lb`.
async fn populate(ctx: &Ctx, namespace: &str, lb: &str, plan: Plan) -> OctaviaResult<()> {
    let made = async |resource: &Resource, mut spec: Map<String, Value>, links: &[(&str, &str)]| {
        for (field, id) in links {
            spec.insert((*field).to_owned(), json!(id));
        }
        let object = make(ctx, resource, namespace, spec, &WriteOptions::default()).await?;
        OctaviaResult::Ok(uid(&object).to_owned())
    };
    let mut pools: HashMap<String, String> = HashMap::new();
    for pool in plan.pools {
        let id = made(&POOL, pool.spec, &[("loadBalancerId", lb)]).await?;
        for member in pool.members {
            made(&MEMBER, member, &[("poolId", &id)]).await?;
        }
        if let Some(monitor) = pool.monitor {
            made(&HEALTH_MONITOR, monitor, &[("poolId", &id)]).await?;
        }
        if let Some(name) = pool.name {
            pools.insert(name, id);
        }
    }
    let pool_named = |name: &Option<String>| name.as_ref().and_then(|name| pools.get(name));
    for listener in plan.listeners {
        let mut links = vec![("loadBalancerId", lb)];
        if let Some(pool) = pool_named(&listener.default_pool) {
            links.push(("defaultPoolId", pool));
        }
        let listener_id = made(&LISTENER, listener.spec, &links).await?;
        for policy in listener.policies {
            let mut links = vec![("listenerId", listener_id.as_str())];
            if let Some(pool) = pool_named(&policy.redirect_pool) {
                links.push(("redirectPoolId", pool));
            }
            let policy_id = made(&L7_POLICY, policy.spec, &links).await?;
            for rule in policy.rules {
                made(&L7_RULE, rule, &[("l7PolicyId", &policy_id)]).await?;
            }
        }
    }
    Ok(())
}

/// Deletes a load balancer whose graph was refused, with all made under it.
async fn remove(ctx: &Ctx, load_balancer: &Value) {
    let deleted = async {
        let kind = ctx.engine().kind(API_VERSION, "LoadBalancer")?;
        ctx.engine()
            .delete(
                &kind,
                object::namespace(load_balancer),
                object::name(load_balancer).unwrap_or_default(),
                &DeleteOptions::default(),
            )
            .await
    };
    if let Err(error) = deleted.await
        && error.code() != 404
    {
        tracing::error!(
            uid = uid(load_balancer),
            error = %from_api(error).message,
            "a load balancer whose graph was refused could not be removed"
        );
    }
}

/// The view of a load balancer made with its graph: its listeners and pools in full, as
/// Octavia answers a fully populated create.
pub(super) fn view(ctx: &Ctx, tree: &Tree) -> Value {
    let mut view = views::load_balancer(ctx, tree);
    let child_of = |field: &str, parent: &Value| {
        let (pointer, id) = (format!("/spec/{field}"), json!(uid(parent)));
        move |object: &&Value| object.pointer(&pointer) == Some(&id)
    };
    let listeners: Vec<Value> = tree
        .listeners
        .iter()
        .map(|listener| {
            let mut shown = views::listener(ctx, listener, tree);
            let policies: Vec<Value> = tree
                .policies
                .iter()
                .filter(child_of("listenerId", listener))
                .map(|policy| {
                    let mut shown = views::l7_policy(ctx, policy, tree);
                    let rules: Vec<Value> = tree
                        .rules
                        .iter()
                        .filter(child_of("l7PolicyId", policy))
                        .map(|rule| views::l7_rule(ctx, rule))
                        .collect();
                    shown["rules"] = json!(rules);
                    shown
                })
                .collect();
            shown["l7policies"] = json!(policies);
            shown
        })
        .collect();
    let pools: Vec<Value> = tree
        .pools
        .iter()
        .map(|pool| {
            let mut shown = views::pool(ctx, pool, tree);
            let members: Vec<Value> = tree
                .members
                .iter()
                .filter(child_of("poolId", pool))
                .map(|member| views::member(ctx, member))
                .collect();
            shown["members"] = json!(members);
            shown["healthmonitor"] = tree
                .monitors
                .iter()
                .find(child_of("poolId", pool))
                .map_or(Value::Null, |monitor| views::health_monitor(ctx, monitor));
            shown
        })
        .collect();
    view["listeners"] = json!(listeners);
    view["pools"] = json!(pools);
    view
}

/// The objects of list member `key` of `request` (none when absent).
fn entries<'a>(
    request: &'a Map<String, Value>,
    key: &str,
) -> OctaviaResult<Vec<&'a Map<String, Value>>> {
    match request.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items.iter().map(|item| object_of(item, key)).collect(),
        Some(other) => Err(invalid(key, other)),
    }
}

fn object_of<'a>(value: &'a Value, key: &str) -> OctaviaResult<&'a Map<String, Value>> {
    value.as_object().ok_or_else(|| invalid(key, value))
}

fn invalid(key: &str, value: &Value) -> Fault {
    bad(format!(
        "Invalid input for field/attribute {key}. Value: '{value}'. Value should be an object or a list of objects."
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    fn refusal(value: Value) -> String {
        plan(&request(value)).unwrap_err().message
    }

    #[test]
    fn inline_pools_are_definitions_or_references_by_name_as_in_octavia() {
        let planned = plan(&request(json!({
            "vip_subnet_id": "s",
            "pools": [{"name": "api", "protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN"}],
            "listeners": [
                {"protocol": "HTTP", "protocol_port": 80,
                 "default_pool": {"name": "web", "protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN",
                                  "members": [{"address": "10.0.0.5", "protocol_port": 8080}],
                                  "healthmonitor": {"type": "HTTP", "delay": 5, "timeout": 3, "max_retries": 2}},
                 "l7policies": [{"action": "REDIRECT_TO_POOL", "redirect_pool": {"name": "api"},
                                 "rules": [{"type": "PATH", "compare_type": "STARTS_WITH", "value": "/api"}]}]},
                {"protocol": "TCP", "protocol_port": 81, "default_pool": {"name": "web"}},
            ],
        })))
        .unwrap();
        let names: Vec<_> = planned.pools.iter().map(|p| p.name.as_deref()).collect();
        assert_eq!(names, [Some("api"), Some("web")]);
        assert_eq!(planned.pools[1].members.len(), 1);
        assert_eq!(planned.pools[1].monitor.as_ref().unwrap()["urlPath"], "/");
        assert_eq!(planned.listeners[0].default_pool.as_deref(), Some("web"));
        assert_eq!(planned.listeners[1].default_pool.as_deref(), Some("web"));
        let policy = &planned.listeners[0].policies[0];
        assert_eq!(policy.redirect_pool.as_deref(), Some("api"));
        assert_eq!(policy.rules[0]["value"], "/api");
        assert_eq!(planned.load_balancer["vipSubnetId"], "s");
    }

    #[test]
    fn a_malformed_graph_is_refused_whole() {
        let pool =
            |name: &str| json!({"name": name, "protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN"});
        for (graph, words) in [
            (
                json!({"pools": [pool("a"), pool("a")]}),
                "Pool names must be unique",
            ),
            (
                json!({"listeners": [{"protocol": "HTTP", "protocol_port": 80, "default_pool": {"name": "gone"}}]}),
                "Pool 'gone' was referenced but no full definition was found.",
            ),
            (
                json!({"listeners": [{"protocol": "HTTP", "protocol_port": 80, "default_pool": {"protocol": "HTTP"}}]}),
                "Pools must be named",
            ),
            (
                json!({"pools": [{"name": "p", "protocol": "HTTP"}]}),
                "Pool definition for 'p' missing required attribute: lb_algorithm",
            ),
            (
                json!({"pools": {"name": "p"}}),
                "Invalid input for field/attribute pools",
            ),
            (
                json!({"listeners": [{"protocol": "HTTP", "protocol_port": 80, "loadbalancer_id": "x"}]}),
                "Unknown attribute for argument listener: loadbalancer_id",
            ),
            (
                json!({"pools": [{"name": "p", "protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN",
                                  "members": [{"address": "10.0.0.5", "bogus": 1}]}]}),
                "Unknown attribute for argument member: bogus",
            ),
        ] {
            let message = refusal(graph.clone());
            assert!(message.contains(words), "{graph}: {message}");
        }
    }
}
