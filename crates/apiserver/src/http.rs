//! The HTTP face of the Kubernetes API: the router, the shared request state, and the
//! cross-cutting layers every request passes (authentication, metrics, tracing).

mod body;
mod node_proxy;
mod path;
mod query;
mod resource;
mod scale;
mod watch;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;

use crate::auth::{Authenticator, Authorizer, User};
use crate::discovery::Discovery;
use crate::engine::Engine;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::openapi::OpenApi;

pub use body::{MAX_BODY_BYTES, decode_object};
pub use node_proxy::{AgentAccess, console_output};

/// What every request handler shares.
pub struct ApiState {
    pub engine: Engine,
    pub discovery: Discovery,
    pub openapi: OpenApi,
    pub authenticator: Arc<dyn Authenticator>,
    pub authorizer: Arc<dyn Authorizer>,
    pub metrics: Arc<Metrics>,
    /// Flips to true when the server shuts down, ending watches.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Interval between bookmarks on watches that ask for them.
    pub bookmark_interval: std::time::Duration,
    /// How the server reaches node agents (pod logs and exec).
    pub agents: AgentAccess,
}

/// The router for the whole Kubernetes face.
pub fn router(state: Arc<ApiState>) -> Router {
    let authenticated = Router::new()
        .route("/api", get(crate::discovery::api_versions))
        .route("/apis", get(crate::discovery::api_group_list))
        .route("/api/{*rest}", any(resource::handle))
        .route("/apis/{*rest}", any(resource::handle))
        .route("/openapi/v3", get(crate::openapi::root))
        .route("/openapi/v3/{*path}", get(crate::openapi::group_version))
        .route("/openapi/v2", get(crate::openapi::v2))
        .route("/metrics", get(crate::metrics::render))
        .fallback(not_found)
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .route("/version", get(crate::discovery::version))
        .route("/healthz", get(health))
        .route("/livez", get(health))
        .route("/readyz", get(health))
        .merge(authenticated)
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

async fn health() -> &'static str {
    "ok"
}

async fn not_found(request: Request) -> ApiError {
    ApiError::no_such_resource(request.uri().path())
}

/// Authenticates every request that reaches the API; the user travels in the request's
/// extensions to the handlers (and to authorization, when identity lands).
async fn authenticate(
    State(state): State<Arc<ApiState>>,
    mut request: Request,
    next: Next,
) -> Response {
    match state.authenticator.authenticate(request.headers()) {
        Some(user) => {
            request.extensions_mut().insert::<User>(user);
            next.run(request).await
        }
        None => ApiError::unauthorized().into_response(),
    }
}

/// One span and one metrics sample per request. Query strings are not logged: they may
/// carry nothing secret today, but tokens never travel there either.
async fn observe(State(state): State<Arc<ApiState>>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let started = Instant::now();
    let span = tracing::debug_span!("request", %method, %path);
    let response = tracing::Instrument::instrument(next.run(request), span).await;
    let code = response.status().as_u16();
    state
        .metrics
        .observe_request(method.as_str(), code, started.elapsed());
    tracing::debug!(%method, %path, code, elapsed_ms = started.elapsed().as_millis() as u64, "served");
    response
}

/// A JSON response with the given status.
pub fn json_response<T: Serialize>(code: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => {
            let mut response = Response::new(Body::from(bytes));
            *response.status_mut() = code;
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(error) => {
            tracing::error!(%error, "encoding a response failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
