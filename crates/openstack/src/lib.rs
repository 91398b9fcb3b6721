//! The OpenStack face: OpenStack's REST APIs translated onto the same objects the
//! Kubernetes face serves. It owns no state: an OpenStack `id` is an object's uid (without
//! dashes), a `project_id` is the project paired with a namespace. Today it serves
//! Keystone v3 (`/identity`), Nova (`/compute/v2.1`), Glance (`/image/v2`), Neutron
//! (`/networking/v2.0`), Placement, and the quota APIs of compute, block storage,
//! networking and load balancing (one ledger, `quota`); each further service joins
//! `router` and `catalog`.

pub mod catalog;
pub mod compute;
pub mod discovery;
pub mod fault;
pub mod identity;
pub mod image;
pub mod load_balancer;
pub mod microversion;
pub mod network;
pub mod placement;
pub mod quota;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ronghe_apiserver::auth::{Authenticator, User};
use ronghe_apiserver::engine::Engine;
use ronghe_apiserver::identity::IdentityService;

use crate::fault::Fault;

/// What every OpenStack handler shares.
pub struct OpenStack {
    pub engine: Engine,
    pub identity: Arc<IdentityService>,
    /// The URL clients reach this server at (`https://host:port`), for links and the
    /// service catalog.
    pub public_url: String,
    pub region: String,
    /// Where image data is kept (`DIR/blobs`); without one, the image API serves no data.
    pub images: Option<Arc<ronghe_images::blob::BlobStore>>,
    /// How the server reaches the agents on the hosts (VM consoles).
    pub agents: ronghe_apiserver::http::AgentAccess,
}

/// The peer address of a connection, put into each request's extensions by the server
/// (for failed-login limiting).
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub SocketAddr);

impl ClientAddr {
    pub fn ip_of(request_extensions: &http::Extensions) -> IpAddr {
        request_extensions
            .get::<ClientAddr>()
            .map_or(IpAddr::from([0, 0, 0, 0]), |addr| addr.0.ip())
    }
}

/// Every OpenStack route.
pub fn router(state: Arc<OpenStack>) -> Router {
    identity::router(state.clone())
        .merge(compute::router(state.clone()))
        .merge(discovery::router(state.clone()))
        .merge(image::router(state.clone()))
        .merge(load_balancer::router(state.clone()))
        .merge(network::router(state.clone()))
        .merge(placement::router(state.clone()))
        .merge(quota::router(state))
}

/// Authenticates an OpenStack request by its `X-Auth-Token` (or bearer token); refuses it
/// with a Keystone-style 401 otherwise.
pub(crate) async fn authenticate(
    axum::extract::State(state): axum::extract::State<Arc<OpenStack>>,
    request: Request,
    next: Next,
) -> Response {
    authenticate_as(&state, request, next, fault::Style::Keystone).await
}

/// Authenticates a request, refusing it with a 401 in `style`.
pub(crate) async fn authenticate_as(
    state: &OpenStack,
    mut request: Request,
    next: Next,
    style: fault::Style,
) -> Response {
    match state.identity.authenticate(request.headers()) {
        Some(user) => {
            request.extensions_mut().insert::<User>(user);
            next.run(request).await
        }
        None => Fault::unauthorized().styled(style).into_response(),
    }
}
