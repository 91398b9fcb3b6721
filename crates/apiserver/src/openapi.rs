//! OpenAPI v3, derived from the registry once at start-up: `/openapi/v3` indexes one
//! document per group-version, served under a content hash with immutable caching so
//! kubectl fetches each once. The documents list every operation with its
//! group-version-kind and the `fieldValidation` parameter, which is what kubectl checks
//! before it trusts the server with validation; PATCH lists strategic merge patch only for
//! the kinds that take it, which is how kubectl picks its patch type.
//! `/openapi/v2` is 404: kubectl only accepts it as protobuf, and falls back without it.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::{Map, Value, json};

use crate::engine::PatchKind;
use crate::error::ApiError;
use crate::http::{ApiState, json_response};
use crate::registry::{GroupVersion, KindSpec, Registry};

/// One served document and its hash.
#[derive(Clone, Debug)]
struct Document {
    body: bytes::Bytes,
    hash: String,
}

/// Precomputed OpenAPI v3 documents.
#[derive(Clone, Debug)]
pub struct OpenApi {
    root: Value,
    documents: BTreeMap<String, Document>,
}

impl OpenApi {
    pub fn new(registry: &Registry) -> Self {
        let mut documents = BTreeMap::new();
        let mut paths = Map::new();
        for gv in registry.group_versions() {
            let path = if gv.group.is_empty() {
                format!("api/{}", gv.version)
            } else {
                format!("apis/{}/{}", gv.group, gv.version)
            };
            let body = serde_json::to_vec(&document(&gv)).unwrap_or_default();
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            body.hash(&mut hasher);
            let hash = format!("{:016X}", hasher.finish());
            paths.insert(
                path.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={hash}")}),
            );
            documents.insert(
                path,
                Document {
                    body: body.into(),
                    hash,
                },
            );
        }
        Self {
            root: json!({"paths": paths}),
            documents,
        }
    }
}

fn document(gv: &GroupVersion) -> Value {
    let mut paths = Map::new();
    let prefix = if gv.group.is_empty() {
        format!("/api/{}", gv.version)
    } else {
        format!("/apis/{}/{}", gv.group, gv.version)
    };
    for kind in &gv.kinds {
        let collection = if kind.namespaced() {
            format!("{prefix}/namespaces/{{namespace}}/{}", kind.plural)
        } else {
            format!("{prefix}/{}", kind.plural)
        };
        paths.insert(
            collection.clone(),
            json!({
                "get": operation(kind, "list", &[]),
                "post": operation(kind, "post", WRITE_PARAMETERS),
                "delete": operation(kind, "deletecollection", &[]),
            }),
        );
        let item = format!("{collection}/{{name}}");
        paths.insert(item.clone(), item_operations(kind));
        if kind.subresources.status {
            paths.insert(format!("{item}/status"), item_operations(kind));
        }
        if kind.namespaced() {
            paths.insert(
                format!("{prefix}/{}", kind.plural),
                json!({"get": operation(kind, "list", &[])}),
            );
        }
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Ronghe", "version": format!("v{}.{}.0", crate::discovery::KUBERNETES_MAJOR, crate::discovery::KUBERNETES_MINOR)},
        "paths": paths,
        "components": {"schemas": {}},
    })
}

const WRITE_PARAMETERS: &[&str] = &["dryRun", "fieldManager", "fieldValidation"];
const PATCH_PARAMETERS: &[&str] = &["dryRun", "fieldManager", "fieldValidation", "force"];

fn item_operations(kind: &KindSpec) -> Value {
    let mut patch = operation(kind, "patch", PATCH_PARAMETERS);
    let content: Map<String, Value> = PatchKind::accepted(kind)
        .iter()
        .map(|media| ((*media).to_owned(), json!({"schema": {"type": "object"}})))
        .collect();
    patch["requestBody"] = json!({"content": content, "required": true});
    json!({
        "get": operation(kind, "get", &[]),
        "put": operation(kind, "put", WRITE_PARAMETERS),
        "patch": patch,
        "delete": operation(kind, "delete", &["dryRun"]),
    })
}

fn operation(kind: &KindSpec, action: &str, parameters: &[&str]) -> Value {
    let parameters: Vec<Value> = parameters
        .iter()
        .map(|name| {
            let schema = if *name == "force" {
                json!({"type": "boolean"})
            } else {
                json!({"type": "string"})
            };
            json!({"name": name, "in": "query", "schema": schema, "uniqueItems": true})
        })
        .collect();
    json!({
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": kind.group, "version": kind.version, "kind": kind.kind},
        "parameters": parameters,
        "responses": {"200": {"description": "OK"}},
    })
}

pub async fn root(State(state): State<Arc<ApiState>>) -> Response {
    json_response(StatusCode::OK, &state.openapi.root)
}

pub async fn group_version(
    State(state): State<Arc<ApiState>>,
    Path(path): Path<String>,
) -> Response {
    let Some(document) = state.openapi.documents.get(&path) else {
        return ApiError::no_such_resource(&format!("/openapi/v3/{path}")).into_response();
    };
    let mut response = Response::new(axum::body::Body::from(document.body.clone()));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, immutable"),
    );
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", document.hash)) {
        headers.insert(header::ETAG, etag);
    }
    headers.insert(
        header::EXPIRES,
        HeaderValue::from_static("Thu, 01 Jan 2099 00:00:00 GMT"),
    );
    response
}

pub async fn v2() -> Response {
    ApiError::no_such_resource("/openapi/v2").into_response()
}
