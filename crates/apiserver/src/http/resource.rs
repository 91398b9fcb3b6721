//! The handler for every resource URL: resolves the path to a kind through the registry
//! and dispatches on method and subresource to the engine.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta;
use ronghe_api_types::table::{PartialObjectMetadata, PartialObjectMetadataList};
use serde_json::{Map, Value, json};

use super::path::{self, ApiPath, ResourcePath};
use super::query::Query;
use super::{ApiState, body, json_response};
use crate::auth::{Attributes, Decision, User};
use crate::engine::{
    DeleteOptions, FieldValidation, ListOptions, PatchKind, Propagation, Selectors, Target,
    WatchOptions, WriteOptions, Written,
};
use crate::error::{ApiError, ApiResult};
use crate::registry::KindSpec;
use crate::table::{self, Rendering};

pub async fn handle(State(state): State<Arc<ApiState>>, request: Request) -> Response {
    match dispatch(state, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn dispatch(state: Arc<ApiState>, request: Request) -> ApiResult<Response> {
    let (parts, body) = request.into_parts();
    let uri_path = parts.uri.path().to_owned();
    let mut query = Query::parse(parts.uri.query());
    match path::parse(&uri_path) {
        Some(ApiPath::GroupVersion { group, version }) if parts.method == Method::GET => state
            .discovery
            .resource_list(group, version)
            .map(|list| json_response(StatusCode::OK, list))
            .ok_or_else(|| ApiError::no_such_resource(&uri_path)),
        Some(ApiPath::Group { group }) if parts.method == Method::GET => state
            .discovery
            .group(group)
            .map(|g| json_response(StatusCode::OK, g))
            .ok_or_else(|| ApiError::no_such_resource(&uri_path)),
        Some(ApiPath::Resource(resource)) => {
            let kind = resolve(&state, &resource, &uri_path)?;
            let user = parts.extensions.get::<User>().cloned();
            query.visible = authorize(
                &state,
                user.as_ref(),
                &kind,
                &resource,
                &parts.method,
                &query,
            )?;
            if kind.group.is_empty()
                && kind.plural == "pods"
                && let (Some(namespace), Some(name), Some(subresource)) =
                    (resource.namespace, resource.name, resource.subresource)
                && super::node_proxy::serves(subresource)
            {
                return super::node_proxy::serve(
                    &state,
                    namespace,
                    name,
                    subresource,
                    &query,
                    parts,
                )
                .await;
            }
            let request = Parts {
                method: parts.method,
                headers: parts.headers,
                query,
                body,
            };
            serve(&state, kind, &resource, request).await
        }
        Some(_) => Err(ApiError::method_not_allowed(
            &uri_path,
            parts.method.as_str(),
        )),
        None => Err(ApiError::no_such_resource(&uri_path)),
    }
}

/// Asks the authorizer whether the user may do what the request asks; a list or watch may
/// be allowed over only some projects' objects.
fn authorize(
    state: &ApiState,
    user: Option<&User>,
    kind: &KindSpec,
    resource: &ResourcePath<'_>,
    method: &Method,
    query: &Query,
) -> ApiResult<Option<Arc<[String]>>> {
    let watching = query.get("watch").is_some_and(|w| w == "true" || w == "1");
    let verb = match (method, resource.name) {
        (&Method::GET, _) if watching => "watch",
        (&Method::GET, None) => "list",
        (&Method::GET, Some(_)) => "get",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, None) => "deletecollection",
        (&Method::DELETE, Some(_)) => "delete",
        _ => "unknown",
    };
    // Streams into a container are `create` whatever the method, as Kubernetes 1.32
    // checks a WebSocket GET: a reader may not get a shell by asking with GET.
    let verb = match resource.subresource {
        Some("exec" | "attach" | "portforward") => "create",
        _ => verb,
    };
    let attributes = Attributes {
        verb,
        group: kind.group,
        resource: kind.plural,
        namespaced: kind.namespaced(),
        subresource: resource.subresource,
        namespace: resource.namespace,
        name: resource.name,
    };
    let decision = user.map(|user| state.authorizer.authorize(user, &attributes));
    match (user, decision) {
        (Some(_), Some(Decision::Allow)) => Ok(None),
        (Some(_), Some(Decision::AllowWithin(projects))) => Ok(Some(projects)),
        (Some(user), _) => {
            let scope = match resource.namespace {
                Some(namespace) => format!(" in the namespace \"{namespace}\""),
                None => " at the cluster scope".to_owned(),
            };
            let named = match resource.subresource {
                Some(subresource) => format!("{}/{subresource}", kind.plural),
                None => kind.plural.to_owned(),
            };
            Err(ApiError::forbidden(
                &kind.qualified_plural(),
                resource.name.unwrap_or_default(),
                format!(
                    "User \"{}\" cannot {verb} resource \"{named}\" in API group \"{}\"{scope}",
                    user.name, kind.group
                ),
            ))
        }
        (None, _) => Err(ApiError::unauthorized()),
    }
}

pub(super) struct Parts {
    pub(super) method: Method,
    pub(super) headers: HeaderMap,
    pub(super) query: Query,
    pub(super) body: Body,
}

/// Finds the kind a resource path names, checking its scope.
fn resolve(
    state: &ApiState,
    resource: &ResourcePath<'_>,
    uri_path: &str,
) -> ApiResult<Arc<KindSpec>> {
    let kind = state
        .engine
        .registry()
        .lookup(resource.group, resource.version, resource.plural)
        .cloned()
        .ok_or_else(|| ApiError::no_such_resource(uri_path))?;
    let scoped_right = match (kind.namespaced(), resource.namespace, resource.name) {
        (false, Some(_), _) => false,
        // A namespaced kind's objects are addressed inside a namespace; without one only
        // the all-namespaces collection exists.
        (true, None, Some(_)) => false,
        _ => true,
    };
    if scoped_right {
        Ok(kind)
    } else {
        Err(ApiError::no_such_resource(uri_path))
    }
}

async fn serve(
    state: &ApiState,
    kind: Arc<KindSpec>,
    resource: &ResourcePath<'_>,
    request: Parts,
) -> ApiResult<Response> {
    let namespace = resource.namespace;
    let rendering = table::negotiate(
        header_str(&request.headers, header::ACCEPT),
        request.query.get("includeObject"),
    );
    if resource.subresource == Some("scale")
        && kind.subresources.scale
        && let Some(name) = resource.name
    {
        let options = write_options(&request.query)?;
        return super::scale::serve(state, &kind, namespace, name, request, options).await;
    }
    let target = match resource.subresource {
        None => Target::Main,
        Some("status") if kind.subresources.status => Target::Status,
        Some("finalize") if kind.spec_finalizers => Target::Finalize,
        Some(other) => {
            return Err(ApiError::no_such_resource(&format!(
                "{}/{}",
                kind.plural, other
            )));
        }
    };
    if target == Target::Finalize && request.method != Method::PUT {
        return Err(ApiError::method_not_allowed(
            &format!("{}/finalize", kind.qualified_plural()),
            request.method.as_str(),
        ));
    }
    match (&request.method, resource.name) {
        (&Method::GET, None) if request.query.flag("watch")? => {
            super::watch::serve(state, kind, namespace, &request.query, rendering, None).await
        }
        (&Method::GET, None) => list(state, &kind, namespace, &request.query, rendering).await,
        (&Method::POST, None) => {
            let object = read_object(&request.headers, request.body).await?;
            let written = state
                .engine
                .create(&kind, namespace, object, &write_options(&request.query)?)
                .await?;
            Ok(written_response(&kind, written, rendering))
        }
        (&Method::DELETE, None) => delete_collection(state, &kind, namespace, request).await,
        (&Method::GET, Some(name)) if request.query.flag("watch")? => {
            super::watch::serve(
                state,
                kind,
                namespace,
                &request.query,
                rendering,
                Some(name),
            )
            .await
        }
        (&Method::GET, Some(name)) => {
            let object = state.engine.get(&kind, namespace, name).await?;
            Ok(render_one(&kind, object, rendering, StatusCode::OK))
        }
        (&Method::PUT, Some(name)) => {
            let object = read_object(&request.headers, request.body).await?;
            let written = state
                .engine
                .replace(
                    &kind,
                    namespace,
                    name,
                    object,
                    target,
                    &write_options(&request.query)?,
                )
                .await?;
            Ok(written_response(&kind, written, rendering))
        }
        (&Method::PATCH, Some(name)) => {
            let media_type = body::media_type(header_str(&request.headers, header::CONTENT_TYPE));
            let Some(mut patch_kind) = PatchKind::from_content_type(&media_type) else {
                return Err(ApiError::unsupported_media_type(PatchKind::accepted(&kind)));
            };
            if let PatchKind::Apply { force } = &mut patch_kind {
                *force = request.query.flag("force")?;
                if request.query.get("fieldManager").is_none_or(str::is_empty) {
                    return Err(ApiError::bad_request(
                        "PATCH requests with an apply patch must have a fieldManager",
                    ));
                }
            }
            let bytes = body::read(request.body).await?;
            let patch = body::decode_patch(&media_type, &bytes)?;
            let written = state
                .engine
                .patch(
                    &kind,
                    namespace,
                    name,
                    patch_kind,
                    patch,
                    target,
                    &write_options(&request.query)?,
                )
                .await?;
            Ok(written_response(&kind, written, rendering))
        }
        (&Method::DELETE, Some(name)) if target == Target::Main => {
            let options = delete_options(&request.query, request.body, &request.headers).await?;
            let outcome = state
                .engine
                .delete(&kind, namespace, name, &options)
                .await?;
            Ok(render_one(
                &kind,
                outcome.object,
                Rendering::Objects,
                StatusCode::OK,
            ))
        }
        _ => Err(ApiError::method_not_allowed(
            &kind.qualified_plural(),
            request.method.as_str(),
        )),
    }
}

async fn read_object(headers: &HeaderMap, body: Body) -> ApiResult<Value> {
    let media_type = body::media_type(header_str(headers, header::CONTENT_TYPE));
    let bytes = body::read(body).await?;
    body::decode_object(&media_type, &bytes)
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn write_options(query: &Query) -> ApiResult<WriteOptions> {
    Ok(WriteOptions {
        dry_run: query.dry_run()?,
        field_manager: query.get("fieldManager").map(str::to_owned),
        field_validation: FieldValidation::parse(query.get("fieldValidation").unwrap_or(""))?,
    })
}

async fn list(
    state: &ApiState,
    kind: &KindSpec,
    namespace: Option<&str>,
    query: &Query,
    rendering: Rendering,
) -> ApiResult<Response> {
    let options = ListOptions {
        selectors: Selectors::parse(kind, query.get("labelSelector"), query.get("fieldSelector"))?
            .within(query.visible.clone()),
        limit: query.number("limit")?.map(|l| l as usize),
        continue_token: query
            .get("continue")
            .filter(|c| !c.is_empty())
            .map(str::to_owned),
        resource_version: query.get("resourceVersion").map(str::to_owned),
        resource_version_match: query.get("resourceVersionMatch").map(str::to_owned),
    };
    let list = state.engine.list(kind, namespace, &options).await?;
    let metadata = ListMeta {
        resource_version: Some(list.resource_version.to_string()),
        continue_: list.continue_token,
        remaining_item_count: list.remaining_item_count,
        self_link: None,
    };
    Ok(match rendering {
        Rendering::Table { include } => json_response(
            StatusCode::OK,
            &table::render(kind, &list.items, include, metadata, true),
        ),
        Rendering::Metadata => json_response(
            StatusCode::OK,
            &PartialObjectMetadataList {
                metadata,
                items: list
                    .items
                    .iter()
                    .map(PartialObjectMetadata::from_object)
                    .collect(),
            },
        ),
        Rendering::Objects => json_response(
            StatusCode::OK,
            &json!({
                "kind": format!("{}List", kind.kind),
                "apiVersion": kind.api_version(),
                "metadata": metadata,
                "items": list.items,
            }),
        ),
    })
}

async fn delete_collection(
    state: &ApiState,
    kind: &KindSpec,
    namespace: Option<&str>,
    request: Parts,
) -> ApiResult<Response> {
    let selectors = Selectors::parse(
        kind,
        request.query.get("labelSelector"),
        request.query.get("fieldSelector"),
    )?
    .within(request.query.visible.clone());
    let options = delete_options(&request.query, request.body, &request.headers).await?;
    let list = state
        .engine
        .list(
            kind,
            namespace,
            &ListOptions {
                selectors,
                ..ListOptions::default()
            },
        )
        .await?;
    let mut deleted = Vec::new();
    for object in list.items {
        let name = crate::object::name(&object).unwrap_or_default().to_owned();
        let object_namespace = crate::object::namespace(&object).map(str::to_owned);
        match state
            .engine
            .delete(kind, object_namespace.as_deref(), &name, &options)
            .await
        {
            Ok(outcome) => deleted.push(outcome.object),
            // Gone meanwhile: that is what was asked.
            Err(error) if error.code() == 404 => {}
            Err(error) => return Err(error),
        }
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "kind": format!("{}List", kind.kind),
            "apiVersion": kind.api_version(),
            "metadata": {"resourceVersion": list.resource_version.to_string()},
            "items": deleted,
        }),
    ))
}

/// `DeleteOptions` from the body (if any) and the query, the query winning.
async fn delete_options(
    query: &Query,
    body: Body,
    headers: &HeaderMap,
) -> ApiResult<DeleteOptions> {
    let bytes = body::read(body).await?;
    let from_body = if bytes.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Map::new())
    } else {
        let media_type = body::media_type(header_str(headers, header::CONTENT_TYPE));
        body::decode_object(&media_type, &bytes)?
    };
    let text = |key: &str| {
        from_body
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let propagation = match query
        .get("propagationPolicy")
        .map(str::to_owned)
        .or_else(|| text("propagationPolicy"))
    {
        Some(policy) => Some(Propagation::parse(&policy)?),
        None => match query.get("orphanDependents").or_else(|| {
            from_body
                .get("orphanDependents")
                .and_then(Value::as_bool)
                .map(|b| if b { "true" } else { "false" })
        }) {
            Some("true") => Some(Propagation::Orphan),
            _ => None,
        },
    };
    let dry_run = query.dry_run()?
        || from_body
            .get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|values| values.iter().any(|v| v == "All"));
    let preconditions = from_body.get("preconditions");
    Ok(DeleteOptions {
        propagation,
        precondition_uid: preconditions
            .and_then(|p| p.get("uid"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        precondition_resource_version: preconditions
            .and_then(|p| p.get("resourceVersion"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        grace_period_seconds: query
            .number("gracePeriodSeconds")?
            .map(|s| s as i64)
            .or_else(|| from_body.get("gracePeriodSeconds").and_then(Value::as_i64)),
        dry_run,
    })
}

fn written_response(kind: &KindSpec, written: Written, rendering: Rendering) -> Response {
    let code = if written.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut response = render_one(kind, written.object, rendering, code);
    for warning in written.warnings {
        // `Warning: 299 - "text"`, with inner quotes escaped or client-go drops it.
        let text = format!(
            "299 - \"{}\"",
            warning.replace('\\', "\\\\").replace('"', "\\\"")
        );
        if let Ok(value) = HeaderValue::from_str(&text) {
            response.headers_mut().append(header::WARNING, value);
        }
    }
    response
}

fn render_one(kind: &KindSpec, object: Value, rendering: Rendering, code: StatusCode) -> Response {
    match rendering {
        Rendering::Table { include } => {
            let metadata = ListMeta {
                resource_version: crate::object::resource_version(&object).map(str::to_owned),
                ..ListMeta::default()
            };
            json_response(
                code,
                &table::render(kind, &[object], include, metadata, true),
            )
        }
        Rendering::Metadata => json_response(code, &PartialObjectMetadata::from_object(&object)),
        Rendering::Objects => json_response(code, &object),
    }
}

/// Parses a watch request's options; shared with the watch module.
pub(super) fn watch_options(
    kind: &KindSpec,
    query: &Query,
    name: Option<&str>,
) -> ApiResult<WatchOptions> {
    let field_selector = match (query.get("fieldSelector").filter(|s| !s.is_empty()), name) {
        (Some(fields), Some(name)) => Some(format!("{fields},metadata.name={name}")),
        (None, Some(name)) => Some(format!("metadata.name={name}")),
        (fields, None) => fields.map(str::to_owned),
    };
    Ok(WatchOptions {
        selectors: Selectors::parse(kind, query.get("labelSelector"), field_selector.as_deref())?
            .within(query.visible.clone()),
        resource_version: query.get("resourceVersion").map(str::to_owned),
    })
}
