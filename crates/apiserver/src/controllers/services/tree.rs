//! A Service's load balancer kept in step with it: per service port a listener on the
//! port, its pool (source-IP persistence for `sessionAffinity: ClientIP`) with a health
//! monitor (TCP, or UDP-CONNECT), and a member per ready endpoint, shaped by the cloud
//! provider's annotations (`crate::kinds::core::service::annotations`: HTTP or
//! TERMINATED_HTTPS listeners, PROXY pools, the algorithm, timeouts, connection limits,
//! the monitors' timings or none). Every child carries the Service's name in a label and
//! is named after its load balancer, protocol and port (a listener after its own protocol,
//! a pool, its monitor and members after the pool's protocol too, as neither protocol can
//! change: a new object replaces the old), so a pass finds what it made and removes what
//! is no longer wanted.

use std::collections::{BTreeMap, BTreeSet};

use ronghe_api_types::loadbalancing as lb;
use serde_json::{Value, json};

use super::endpoints::Backend;
use crate::engine::{Engine, ListOptions, PatchKind, Selectors, Target, WriteOptions};
use crate::error::ApiResult;
use crate::kinds::core::service::annotations::Asked;
use crate::kinds::core::service::{self, SERVICE_LABEL};
use crate::object;

/// The listener protocols a TCP Service port may have, and its pool protocols.
const TCP_LISTENERS: &[&str] = &["TCP", "HTTP", "TERMINATED_HTTPS"];
const TCP_POOLS: &[&str] = &["TCP", "HTTP", "PROXY", "PROXYV2"];

/// The children of one kind a Service's load balancer has, by name.
struct Children {
    kind: &'static str,
    by_name: BTreeMap<String, Value>,
}

async fn children(
    engine: &Engine,
    namespace: &str,
    service: &str,
    kind: &'static str,
) -> ApiResult<Children> {
    let spec = engine.kind(lb::API_VERSION, kind)?;
    let options = ListOptions {
        selectors: Selectors::parse(&spec, Some(&format!("{SERVICE_LABEL}={service}")), None)?,
        ..ListOptions::default()
    };
    let by_name = engine
        .list(&spec, Some(namespace), &options)
        .await?
        .items
        .into_iter()
        .map(|o| (object::name(&o).unwrap_or_default().to_owned(), o))
        .collect();
    Ok(Children { kind, by_name })
}

/// Whether every field of `desired` is as stored in `stored`'s spec.
fn spec_holds(stored: &Value, desired: &Value) -> bool {
    desired
        .as_object()
        .into_iter()
        .flatten()
        .all(|(key, value)| stored["spec"].get(key).unwrap_or(&Value::Null) == value)
}

impl Children {
    /// The child named `name` with `spec`: made, or patched where its spec differs.
    async fn ensure(
        &self,
        engine: &Engine,
        namespace: &str,
        service: &str,
        name: &str,
        mut spec: Value,
    ) -> ApiResult<Value> {
        let kind = engine.kind(lb::API_VERSION, self.kind)?;
        if let Some(stored) = self.by_name.get(name) {
            if spec_holds(stored, &spec) {
                return Ok(stored.clone());
            }
            return Ok(engine
                .patch(
                    &kind,
                    Some(namespace),
                    name,
                    PatchKind::Merge,
                    json!({"spec": spec}),
                    Target::Main,
                    &WriteOptions::default(),
                )
                .await?
                .object);
        }
        // Nulls only take values away from a stored spec; a new one goes without them.
        if let Some(fields) = spec.as_object_mut() {
            fields.retain(|_, value| !value.is_null());
        }
        let body = json!({
            "apiVersion": lb::API_VERSION,
            "kind": self.kind,
            "metadata": {"name": name, "namespace": namespace, "labels": {SERVICE_LABEL: service}},
            "spec": spec,
        });
        Ok(engine
            .create(&kind, Some(namespace), body, &WriteOptions::default())
            .await?
            .object)
    }

    /// Deletes the child named `name`, if there is one.
    async fn remove(&self, engine: &Engine, namespace: &str, name: &str) -> ApiResult<()> {
        if !self.by_name.contains_key(name) {
            return Ok(());
        }
        let kind = engine.kind(lb::API_VERSION, self.kind)?;
        crate::controllers::delete_if_present(engine, &kind, Some(namespace), name).await
    }

    /// Deletes the children not in `wanted`.
    async fn prune(
        &self,
        engine: &Engine,
        namespace: &str,
        wanted: &BTreeSet<String>,
    ) -> ApiResult<()> {
        let kind = engine.kind(lb::API_VERSION, self.kind)?;
        for name in self.by_name.keys().filter(|n| !wanted.contains(*n)) {
            crate::controllers::delete_if_present(engine, &kind, Some(namespace), name).await?;
        }
        Ok(())
    }
}

fn uid(object: &Value) -> String {
    object::uid(object).unwrap_or_default().to_owned()
}

/// Deletes the load balancer of `svc` (one that has no VIP any more), if it has one.
pub async fn remove(engine: &Engine, svc: &Value) -> ApiResult<()> {
    let namespace = object::namespace(svc).unwrap_or_default();
    let lbs = engine.kind(lb::API_VERSION, "LoadBalancer")?;
    let lb_name = service::load_balancer_name(object::name(svc).unwrap_or_default());
    let balancer = match engine.get(&lbs, Some(namespace), &lb_name).await {
        Ok(balancer) => balancer,
        Err(error) if error.code() == 404 => return Ok(()),
        Err(error) => return Err(error),
    };
    let owned = balancer["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|owner| owner["uid"].as_str() == object::uid(svc));
    if !owned || object::deletion_timestamp(&balancer).is_some() {
        return Ok(());
    }
    crate::controllers::delete_if_present(engine, &lbs, Some(namespace), &lb_name).await
}

/// Keeps the load balancer of `svc` in step with its ports and `backends` (`None`: the
/// Service has no selector, so its members are left as they are).
pub async fn sync(engine: &Engine, svc: &Value, backends: &Option<Vec<Backend>>) -> ApiResult<()> {
    let namespace = object::namespace(svc).unwrap_or_default();
    let name = object::name(svc).unwrap_or_default();
    let lbs = engine.kind(lb::API_VERSION, "LoadBalancer")?;
    let lb_name = service::load_balancer_name(name);
    let balancer = match engine.get(&lbs, Some(namespace), &lb_name).await {
        Ok(balancer) => balancer,
        // Deleted from under the Service: made again with the same VIP.
        Err(error) if error.code() == 404 => {
            service::make_load_balancer(engine, svc, &WriteOptions::default()).await?;
            engine.get(&lbs, Some(namespace), &lb_name).await?
        }
        Err(error) => return Err(error),
    };
    if object::deletion_timestamp(&balancer).is_some() {
        return Ok(());
    }
    let lb_uid = uid(&balancer);
    let listeners = children(engine, namespace, name, "Listener").await?;
    let pools = children(engine, namespace, name, "Pool").await?;
    let monitors = children(engine, namespace, name, "HealthMonitor").await?;
    let members = children(engine, namespace, name, "Member").await?;
    let affinity = svc["spec"]["sessionAffinity"].as_str() == Some("ClientIP");
    let asked = Asked::of(svc);
    let mut wanted = BTreeSet::new();
    let mut wanted_pools = BTreeSet::new();
    let mut wanted_monitors = BTreeSet::new();
    let mut wanted_members = BTreeSet::new();
    let ports = svc["spec"]["ports"].as_array().cloned().unwrap_or_default();
    for (index, port) in ports.iter().enumerate() {
        let protocol = port["protocol"].as_str().unwrap_or("TCP");
        let number = port["port"].as_u64().unwrap_or_default();
        let display = port["name"]
            .as_str()
            .filter(|n| !n.is_empty())
            .map_or_else(|| format!("{protocol}:{number}"), str::to_owned);
        let (listener_family, pool_family): (&[&str], &[&str]) = if protocol == "TCP" {
            (TCP_LISTENERS, TCP_POOLS)
        } else {
            (&[], &[])
        };
        let mut listener_spec = asked.listener(protocol, u16::try_from(number).unwrap_or(0));
        listener_spec.name = format!("{name}/{display}");
        listener_spec.load_balancer_id = lb_uid.clone();
        let listener_protocol = listener_spec.protocol.clone();
        // A listener of another protocol on the port goes first: a listener's protocol
        // cannot change, and two cannot share the port. (Its pool goes in the pruning.)
        for other in listener_family.iter().filter(|p| **p != listener_protocol) {
            listeners
                .remove(engine, namespace, &listener_name(&lb_name, other, number))
                .await?;
        }
        let child = listener_name(&lb_name, &listener_protocol, number);
        wanted.insert(child.clone());
        let listener = listeners
            .ensure(
                engine,
                namespace,
                name,
                &child,
                listener_json(&listener_spec),
            )
            .await?;
        let persistence = if affinity {
            json!({"type": "SOURCE_IP"})
        } else {
            Value::Null
        };
        let pool_protocol = asked.pool_protocol(protocol);
        // A pool of another protocol goes first (its monitor and members with it, as
        // they are the pool's): the listener's default pool is the one on it, and a
        // pool's protocol cannot change.
        let pool_name = pool_name(&child, &listener_protocol, pool_protocol);
        for other in pool_family.iter().filter(|other| **other != pool_protocol) {
            let stale = self::pool_name(&child, &listener_protocol, other);
            pools.remove(engine, namespace, &stale).await?;
        }
        wanted_pools.insert(pool_name.clone());
        let pool = pools
            .ensure(
                engine,
                namespace,
                name,
                &pool_name,
                json!({
                    "name": format!("{name}/{display}"),
                    "loadBalancerId": lb_uid,
                    "listenerId": uid(&listener),
                    "protocol": pool_protocol,
                    "lbAlgorithm": asked.lb_algorithm,
                    "sessionPersistence": persistence,
                }),
            )
            .await?;
        if let Some(monitor) = asked.monitor {
            let monitor_type = if protocol == "UDP" {
                "UDP-CONNECT"
            } else {
                "TCP"
            };
            wanted_monitors.insert(pool_name.clone());
            monitors
                .ensure(
                    engine,
                    namespace,
                    name,
                    &pool_name,
                    json!({
                        "poolId": uid(&pool),
                        "type": monitor_type,
                        "delay": monitor.delay,
                        "timeout": monitor.timeout,
                        "maxRetries": monitor.max_retries,
                        "maxRetriesDown": monitor.max_retries_down,
                    }),
                )
                .await?;
        }
        let Some(backends) = backends else {
            // Without a selector the members are not ours to keep.
            wanted_members.extend(
                members
                    .by_name
                    .keys()
                    .filter(|n| n.starts_with(&format!("{pool_name}-")))
                    .cloned(),
            );
            continue;
        };
        for backend in backends.iter().filter(|b| b.ready) {
            let Some(Some(target)) = backend.ports.get(index) else {
                continue;
            };
            let member = format!(
                "{pool_name}-{}-{target}",
                backend.ip.replace(['.', ':'], "-")
            );
            wanted_members.insert(member.clone());
            members
                .ensure(
                    engine,
                    namespace,
                    name,
                    &member,
                    json!({
                        "name": format!("{}/{}", backend.kind, backend.name),
                        "poolId": uid(&pool),
                        "address": backend.ip,
                        "protocolPort": target,
                    }),
                )
                .await?;
        }
    }
    members.prune(engine, namespace, &wanted_members).await?;
    monitors.prune(engine, namespace, &wanted_monitors).await?;
    pools.prune(engine, namespace, &wanted_pools).await?;
    listeners.prune(engine, namespace, &wanted).await?;
    Ok(())
}

/// The name of the listener of a Service port numbered `port` when the listener speaks
/// `protocol`: `svc-web-tcp-80`, `svc-web-http-80`, `svc-web-terminated-https-443`.
fn listener_name(lb_name: &str, protocol: &str, port: u64) -> String {
    format!("{lb_name}-{}-{port}", slug(protocol))
}

/// A protocol as it appears in a name.
fn slug(protocol: &str) -> String {
    protocol.to_ascii_lowercase().replace('_', "-")
}

/// The stored form of what a listener of a Service should hold: the fields the annotations
/// decide are there even when empty (`null`), so taking an annotation away takes its value
/// away.
fn listener_json(spec: &lb::ListenerSpec) -> Value {
    let mut desired = json!(spec);
    if let Some(fields) = desired.as_object_mut() {
        for field in [
            "timeoutClientData",
            "timeoutMemberConnect",
            "timeoutMemberData",
            "timeoutTcpInspect",
            "insertHeaders",
            "defaultTlsContainerRef",
        ] {
            fields.entry(field).or_insert(Value::Null);
        }
    }
    desired
}

/// The name of the pool of a Service port whose listener is `listener` (of `protocol`),
/// when the pool speaks `pool_protocol`: the listener's own name for a pool of its
/// protocol, else with the pool's protocol after it.
fn pool_name(listener: &str, protocol: &str, pool_protocol: &str) -> String {
    if pool_protocol == protocol {
        listener.to_owned()
    } else {
        format!("{listener}-{}", slug(pool_protocol))
    }
}
