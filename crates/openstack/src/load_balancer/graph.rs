//! Octavia's fully populated create: a load balancer request that carries `listeners`
//! (each with a `default_pool`, its `members` and `healthmonitor`, and `l7policies` with
//! their `rules` and `redirect_pool`) and `pools` makes the whole graph in one call, as
//! cloud-provider-openstack does for a Service. A listener's default pool or a policy's
//! redirect pool given by the name of one of the request's `pools` is that pool; any other
//! is made. Objects are made parent first, each checked by its kind's admission; if one is
//! refused, the load balancer is deleted again with everything made under it, and the
//! refusal is the answer: nothing is left half made.

use std::collections::HashMap;

use ronghe_api_types::loadbalancing::{Tree, uid};
use ronghe_apiserver::engine::{DeleteOptions, WriteOptions};
use ronghe_apiserver::object;
use serde_json::{Map, Value, json};

use super::fault::{OctaviaResult, bad, from_api};
use super::{
    HEALTH_MONITOR, L7_POLICY, L7_RULE, LISTENER, LOAD_BALANCER, MEMBER, POOL, Resource, check,
    defaults, make, views,
};
use crate::network::Ctx;

/// The members of a load balancer request that make it a graph.
const GRAPH: [&str; 2] = ["listeners", "pools"];

/// Whether a load balancer request asks for a fully populated create.
pub(super) fn is_graph(request: &Map<String, Value>) -> bool {
    GRAPH.iter().any(|key| request.contains_key(*key))
}

/// Makes the load balancer of `request` and its graph in `namespace`; returns the load
/// balancer.
pub(super) async fn create(
    ctx: &Ctx,
    namespace: &str,
    request: &Map<String, Value>,
) -> OctaviaResult<Value> {
    let load_balancer = make_entry(ctx, &LOAD_BALANCER, namespace, request, &GRAPH, &[]).await?;
    let populated = Graph {
        ctx,
        namespace,
        load_balancer: uid(&load_balancer).to_owned(),
        named_pools: HashMap::new(),
    }
    .populate(request)
    .await;
    if let Err(fault) = populated {
        let kind = ctx
            .engine()
            .kind(ronghe_api_types::loadbalancing::API_VERSION, "LoadBalancer")
            .map_err(from_api)?;
        if let Err(error) = ctx
            .engine()
            .delete(
                &kind,
                object::namespace(&load_balancer),
                object::name(&load_balancer).unwrap_or_default(),
                &DeleteOptions::default(),
            )
            .await
        {
            tracing::warn!(%error, "removing a load balancer whose graph was refused failed");
        }
        return Err(fault);
    }
    Ok(load_balancer)
}

/// The view of a load balancer made with its graph: its listeners and pools in full, as
/// Octavia answers a fully populated create.
pub(super) fn view(ctx: &Ctx, tree: &Tree) -> Value {
    let mut view = views::load_balancer(ctx, tree);
    let listeners: Vec<Value> = tree
        .listeners
        .iter()
        .map(|listener| {
            let mut shown = views::listener(ctx, listener, tree);
            let policies: Vec<Value> = tree
                .policies
                .iter()
                .filter(|p| p.pointer("/spec/listenerId") == Some(&json!(uid(listener))))
                .map(|policy| {
                    let mut shown = views::l7_policy(ctx, policy, tree);
                    let rules: Vec<Value> = tree
                        .rules
                        .iter()
                        .filter(|r| r.pointer("/spec/l7PolicyId") == Some(&json!(uid(policy))))
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
            let of_pool =
                |object: &&Value| object.pointer("/spec/poolId") == Some(&json!(uid(pool)));
            shown["members"] = json!(
                tree.members
                    .iter()
                    .filter(of_pool)
                    .map(|member| views::member(ctx, member))
                    .collect::<Vec<_>>()
            );
            shown["healthmonitor"] = tree
                .monitors
                .iter()
                .find(of_pool)
                .map_or(Value::Null, |monitor| views::health_monitor(ctx, monitor));
            shown
        })
        .collect();
    view["listeners"] = json!(listeners);
    view["pools"] = json!(pools);
    view
}

/// A graph being made under one load balancer.
struct Graph<'a> {
    ctx: &'a Ctx,
    namespace: &'a str,
    load_balancer: String,
    /// The pools of the request's `pools`, by their names.
    named_pools: HashMap<String, String>,
}

impl Graph<'_> {
    async fn populate(&mut self, request: &Map<String, Value>) -> OctaviaResult<()> {
        for pool in entries(request, "pools")? {
            let made = self.pool(pool, None).await?;
            if let Some(name) = pool.get("name").and_then(Value::as_str) {
                self.named_pools.insert(name.to_owned(), made);
            }
        }
        for listener in entries(request, "listeners")? {
            let lb = self.load_balancer.clone();
            let default_pool = listener.get("default_pool").filter(|p| !p.is_null());
            let referenced = default_pool.and_then(|pool| self.reference(pool));
            let mut links = vec![("loadBalancerId", lb)];
            if let Some(pool) = &referenced {
                links.push(("defaultPoolId", pool.clone()));
            }
            let nested = ["default_pool", "l7policies"];
            let made = make_entry(
                self.ctx,
                &LISTENER,
                self.namespace,
                listener,
                &nested,
                &links,
            )
            .await?;
            let listener_id = uid(&made).to_owned();
            if let (Some(pool), None) = (default_pool, &referenced) {
                self.pool(object_of(pool, "default_pool")?, Some(&listener_id))
                    .await?;
            }
            for policy in entries(listener, "l7policies")? {
                let mut links = vec![("listenerId", listener_id.clone())];
                if let Some(pool) = policy.get("redirect_pool").filter(|p| !p.is_null()) {
                    let pool = match self.reference(pool) {
                        Some(pool) => pool,
                        None => self.pool(object_of(pool, "redirect_pool")?, None).await?,
                    };
                    links.push(("redirectPoolId", pool));
                }
                let nested = ["redirect_pool", "rules"];
                let made = make_entry(
                    self.ctx,
                    &L7_POLICY,
                    self.namespace,
                    policy,
                    &nested,
                    &links,
                )
                .await?;
                let policy_id = uid(&made).to_owned();
                for rule in entries(policy, "rules")? {
                    let links = [("l7PolicyId", policy_id.clone())];
                    make_entry(self.ctx, &L7_RULE, self.namespace, rule, &[], &links).await?;
                }
            }
        }
        Ok(())
    }

    /// A pool of the request's `pools` that `pool` names (and nothing more).
    fn reference(&self, pool: &Value) -> Option<String> {
        let pool = pool.as_object()?;
        let name = pool.get("name")?.as_str()?;
        (pool.len() == 1)
            .then(|| self.named_pools.get(name).cloned())
            .flatten()
    }

    /// Makes a pool on the load balancer (the default of `listener`, if given), its
    /// members and its health monitor; returns its uid.
    async fn pool(
        &self,
        pool: &Map<String, Value>,
        listener: Option<&str>,
    ) -> OctaviaResult<String> {
        let mut links = vec![("loadBalancerId", self.load_balancer.clone())];
        if let Some(listener) = listener {
            links.push(("listenerId", listener.to_owned()));
        }
        let nested = ["members", "healthmonitor"];
        let made = make_entry(self.ctx, &POOL, self.namespace, pool, &nested, &links).await?;
        let pool_id = uid(&made).to_owned();
        for member in entries(pool, "members")? {
            let links = [("poolId", pool_id.clone())];
            make_entry(self.ctx, &MEMBER, self.namespace, member, &[], &links).await?;
        }
        if let Some(monitor) = pool.get("healthmonitor").filter(|m| !m.is_null()) {
            let links = [("poolId", pool_id.clone())];
            let monitor = object_of(monitor, "healthmonitor")?;
            make_entry(
                self.ctx,
                &HEALTH_MONITOR,
                self.namespace,
                monitor,
                &[],
                &links,
            )
            .await?;
        }
        Ok(pool_id)
    }
}

/// Makes one object of the graph from its `entry` (without its `nested` members), linked
/// to the objects made before it by `links` (spec field, uid); the caller must be allowed
/// to create it.
async fn make_entry(
    ctx: &Ctx,
    resource: &Resource,
    namespace: &str,
    entry: &Map<String, Value>,
    nested: &[&str],
    links: &[(&str, String)],
) -> OctaviaResult<Value> {
    check(ctx, &resource.rule("post"), Some(namespace))?;
    let own: Map<String, Value> = entry
        .iter()
        .filter(|(key, _)| !nested.contains(&key.as_str()))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    let mut spec = Map::new();
    super::attributes::apply(
        &mut spec,
        &own,
        resource.attributes,
        true,
        resource.singular,
    )?;
    for (field, id) in links {
        spec.insert((*field).to_owned(), json!(id));
    }
    defaults(resource, &mut spec);
    make(ctx, resource, namespace, spec, &WriteOptions::default()).await
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

fn invalid(key: &str, value: &Value) -> crate::fault::Fault {
    bad(format!(
        "Invalid input for field/attribute {key}. Value: '{value}'. Value should be an object or a list of objects."
    ))
}
