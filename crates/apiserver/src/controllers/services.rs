//! The services controller (the job kube-proxy's control half, the endpoints and
//! EndpointSlice controllers and kuryr-kubernetes' load-balancer handler do together):
//!
//! * each Service with a selector gets an Endpoints object and EndpointSlices listing the
//!   pods — and the VMs — its selector matches, ready or not (`endpoints.rs`);
//! * each Service with a VIP has its load balancer (made at admission, see
//!   `crate::kinds::core::service`) kept in step: one listener, pool and health monitor
//!   per port, one member per ready endpoint (`tree.rs`);
//! * each project with such Services has its service subnet routed to its tenant
//!   subnets by a `services` router, with a host route on each of them so pods (and VMs,
//!   through DHCP) send service traffic to it (`routing.rs`);
//! * a LoadBalancer Service gets a floating IP on an external network for its VIP, shown
//!   in `status.loadBalancer.ingress`, open to its `loadBalancerSourceRanges` only when it
//!   has them (the floating IP's router drops other sources, as kube-proxy does for a
//!   load balancer's address; node ports and the ClusterIP are not limited).

mod endpoints;
mod routing;
#[cfg(test)]
mod tests;
mod tree;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{Notify, watch};

use super::events;
use crate::engine::{Engine, ListOptions};
use crate::error::ApiResult;
use crate::kinds::compute;
use crate::kinds::core::service;
use crate::object;

/// How often a pass runs without a wake-up.
const RESYNC: Duration = Duration::from_secs(10);
/// How soon a Service whose objects could not all be written is tried again.
const RETRY: Duration = Duration::from_secs(2);

pub(super) async fn run(engine: Engine, wake: Arc<Notify>, stop: watch::Receiver<bool>) {
    super::run_requeuing("services", wake, stop, RESYNC, || Box::pin(pass(&engine))).await;
}

/// What one pass reads once for every Service.
pub(super) struct World {
    pub pods: Vec<Value>,
    pub vms: Vec<Value>,
    pub ports: Vec<Value>,
}

async fn list_all(engine: &Engine, api_version: &str, kind: &str) -> ApiResult<Vec<Value>> {
    let kind = engine.kind(api_version, kind)?;
    Ok(engine
        .list(&kind, None, &ListOptions::default())
        .await?
        .items)
}

pub(super) async fn pass(engine: &Engine) -> ApiResult<Option<Duration>> {
    let services = list_all(engine, "v1", "Service").await?;
    let world = World {
        pods: list_all(engine, "v1", "Pod").await?,
        vms: list_all(engine, compute::API_VERSION, "VirtualMachine").await?,
        ports: list_all(engine, ronghe_api_types::network::API_VERSION, "Port").await?,
    };
    let mut requeue = None;
    let live: Vec<&Value> = services
        .iter()
        .filter(|s| object::deletion_timestamp(s).is_none())
        .collect();
    let projects: BTreeSet<&str> = live
        .iter()
        .filter(|s| service::has_vip(s))
        .filter_map(|s| object::namespace(s))
        .collect();
    for project in projects {
        if let Err(error) = routing::route_services(engine, project).await {
            tracing::warn!(%error, project, "routing the service subnet failed");
            requeue = Some(RETRY);
        }
    }
    for svc in live {
        let name = object::name(svc).unwrap_or_default();
        let namespace = object::namespace(svc).unwrap_or_default();
        let backends = endpoints::backends(svc, &world);
        if let Err(error) = endpoints::write(engine, svc, &backends).await {
            tracing::warn!(%error, namespace, name, "writing endpoints failed");
            requeue = Some(RETRY);
        }
        if !service::has_vip(svc) {
            // An ExternalName Service (maybe a ClusterIP or LoadBalancer one before).
            let removed = match tree::remove(engine, svc).await {
                Ok(()) => routing::external_address(engine, svc).await,
                Err(error) => Err(error),
            };
            if let Err(error) = removed {
                tracing::warn!(%error, namespace, name, "removing the load balancer failed");
                requeue = Some(RETRY);
            }
            continue;
        }
        let synced = [
            tree::sync(engine, svc, &backends).await,
            routing::external_address(engine, svc).await,
        ];
        for error in synced.into_iter().filter_map(Result::err) {
            tracing::warn!(%error, namespace, name, "keeping the load balancer in step failed");
            requeue = Some(RETRY);
            // What the user can act on (a missing certificate, a VIP port gone) is told
            // on the Service, as Kubernetes' service controller tells its cloud's errors;
            // a write that raced another is not worth telling.
            if error.code() != 409 {
                let message = format!("Error syncing load balancer: {error}");
                let told = events::warn(
                    engine,
                    "service-controller",
                    svc,
                    ("v1", "Service"),
                    "SyncLoadBalancerFailed",
                    &message,
                )
                .await;
                if let Err(error) = told {
                    tracing::warn!(%error, namespace, name, "recording an event failed");
                }
            }
        }
    }
    Ok(requeue)
}
