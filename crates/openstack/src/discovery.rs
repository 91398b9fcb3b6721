//! Version discovery for the services beyond identity: what clients GET, unauthenticated,
//! before they call a service (compute and block-storage) or to list what it offers.
//! Microversions advertised are only those served: the base version of each API.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde_json::{Value, json};

use crate::OpenStack;

/// The newest compute microversion served (see `compute::microversion::MAX`).
pub const COMPUTE_MAX_MICROVERSION: &str = "2.96";
/// Cinder's base microversion.
pub const VOLUME_MAX_MICROVERSION: &str = "3.0";

pub fn router(state: Arc<OpenStack>) -> Router {
    Router::new()
        .route("/compute", get(compute_versions))
        .route("/compute/", get(compute_versions))
        .route("/compute/v2.1", get(compute_version))
        .route("/compute/v2.1/", get(compute_version))
        .route("/volume", get(volume_versions))
        .route("/volume/", get(volume_versions))
        .route("/volume/v3", get(volume_version))
        .route("/volume/v3/", get(volume_version))
        .route("/networking", get(network_versions))
        .route("/networking/", get(network_versions))
        .route("/networking/v2.0", get(network_resources))
        .route("/networking/v2.0/", get(network_resources))
        .route("/load-balancer", get(load_balancer_versions))
        .route("/load-balancer/", get(load_balancer_versions))
        .with_state(state)
}

fn compute_document(state: &OpenStack) -> Value {
    json!({
        "id": "v2.1",
        "status": "CURRENT",
        "version": COMPUTE_MAX_MICROVERSION,
        "min_version": "2.1",
        "updated": "2013-07-23T11:33:21Z",
        "links": [{"rel": "self", "href": format!("{}/compute/v2.1/", state.public_url)}],
        "media-types": [{"base": "application/json", "type": "application/vnd.openstack.compute+json;version=2.1"}],
    })
}

async fn compute_versions(State(state): State<Arc<OpenStack>>) -> Json<Value> {
    Json(json!({"versions": [compute_document(&state)]}))
}

async fn compute_version(State(state): State<Arc<OpenStack>>) -> Json<Value> {
    Json(json!({"version": compute_document(&state)}))
}

fn volume_document(state: &OpenStack) -> Value {
    json!({
        "id": "v3.0",
        "status": "CURRENT",
        "version": VOLUME_MAX_MICROVERSION,
        "min_version": "3.0",
        "updated": "2023-01-01T00:00:00Z",
        "links": [{"rel": "self", "href": format!("{}/volume/v3/", state.public_url)}],
        "media-types": [{"base": "application/json", "type": "application/vnd.openstack.volume+json;version=3"}],
    })
}

async fn volume_versions(State(state): State<Arc<OpenStack>>) -> Json<Value> {
    Json(json!({"versions": [volume_document(&state)]}))
}

async fn volume_version(State(state): State<Arc<OpenStack>>) -> Json<Value> {
    Json(json!({"version": volume_document(&state)}))
}

async fn network_versions(State(state): State<Arc<OpenStack>>) -> Json<Value> {
    Json(json!({"versions": [{
        "id": "v2.0",
        "status": "CURRENT",
        "links": [{"rel": "self", "href": format!("{}/networking/v2.0/", state.public_url)}],
    }]}))
}

/// The Neutron resources served (see `network::COLLECTIONS`).
async fn network_resources(State(state): State<Arc<OpenStack>>) -> Json<Value> {
    let resources: Vec<Value> = crate::network::COLLECTIONS
        .iter()
        .map(|(name, collection)| {
            json!({
                "name": name,
                "collection": collection,
                "links": [{"rel": "self", "href": format!("{}/networking/v2.0/{collection}", state.public_url)}],
            })
        })
        .collect();
    Json(json!({"resources": resources}))
}

async fn load_balancer_versions(State(state): State<Arc<OpenStack>>) -> Json<Value> {
    Json(json!({"versions": [{
        "id": "v2.0",
        "status": "CURRENT",
        "updated": "2018-04-20T00:00:00Z",
        "links": [{"rel": "self", "href": format!("{}/load-balancer/v2", state.public_url)}],
    }]}))
}
