//! The `/scale` subresource of kinds that have replicas (Deployments, ReplicaSets): an
//! `autoscaling/v1` Scale over `.spec.replicas`, `.status.replicas` and the label selector,
//! read with GET and written with PUT or PATCH (what `kubectl scale` sends).

use axum::body::Body;
use axum::response::Response;
use http::{Method, StatusCode, header};
use ronghe_api_types::validation::FieldCause;
use serde_json::{Value, json};

use super::resource::Parts;
use super::{ApiState, body, json_response};
use crate::engine::{PatchKind, Target, WriteOptions};
use crate::error::{ApiError, ApiResult};
use crate::object;
use crate::registry::KindSpec;

pub(super) async fn serve(
    state: &ApiState,
    kind: &KindSpec,
    namespace: Option<&str>,
    name: &str,
    request: Parts,
    options: WriteOptions,
) -> ApiResult<Response> {
    let current = state.engine.get(kind, namespace, name).await?;
    let desired = match request.method {
        Method::GET => return Ok(json_response(StatusCode::OK, &scale_of(&current))),
        Method::PUT => read(request.body, &request.headers).await?,
        Method::PATCH => {
            let media_type = body::media_type(
                request
                    .headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok()),
            );
            let bytes = body::read(request.body).await?;
            let patch = body::decode_patch(&media_type, &bytes)?;
            let mut scale = scale_of(&current);
            match PatchKind::from_content_type(&media_type) {
                Some(PatchKind::Json) => ronghe_patch::json_patch(&mut scale, &patch)
                    .map_err(|error| ApiError::bad_request(error.to_string()))?,
                Some(_) => ronghe_patch::merge_patch(&mut scale, &patch),
                None => {
                    return Err(ApiError::unsupported_media_type(&[
                        "application/json-patch+json",
                        "application/merge-patch+json",
                        "application/strategic-merge-patch+json",
                    ]));
                }
            }
            scale
        }
        _ => {
            return Err(ApiError::method_not_allowed(
                &format!("{}/scale", kind.qualified_plural()),
                request.method.as_str(),
            ));
        }
    };
    let replicas = desired
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .filter(|r| *r >= 0)
        .ok_or_else(|| {
            ApiError::invalid(
                kind,
                name,
                vec![FieldCause::invalid(
                    "spec.replicas",
                    desired
                        .pointer("/spec/replicas")
                        .cloned()
                        .unwrap_or(Value::Null),
                    "must be greater than or equal to 0",
                )],
            )
        })?;
    // A resourceVersion in the Scale is a precondition on the object, as in Kubernetes.
    let version = object::resource_version(&desired)
        .or(object::resource_version(&current))
        .map(str::to_owned);
    let patch = json!({"metadata": {"resourceVersion": version}, "spec": {"replicas": replicas}});
    let written = state
        .engine
        .patch(
            kind,
            namespace,
            name,
            PatchKind::Merge,
            patch,
            Target::Main,
            &options,
        )
        .await?;
    Ok(json_response(StatusCode::OK, &scale_of(&written.object)))
}

async fn read(body: Body, headers: &http::HeaderMap) -> ApiResult<Value> {
    let media_type = body::media_type(
        headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
    );
    let bytes = body::read(body).await?;
    body::decode_object(&media_type, &bytes)
}

/// The Scale of an object with replicas.
fn scale_of(object: &Value) -> Value {
    let metadata = object::metadata(object).cloned().unwrap_or_default();
    let keep = [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ];
    let metadata: serde_json::Map<String, Value> = metadata
        .into_iter()
        .filter(|(key, _)| keep.contains(&key.as_str()))
        .collect();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata,
        "spec": {"replicas": object.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0)},
        "status": {
            "replicas": object.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0),
            "selector": selector_text(object.pointer("/spec/selector")),
        },
    })
}

/// A label selector in its text form (`app=web,tier in (a,b)`).
fn selector_text(selector: Option<&Value>) -> String {
    let Some(selector) = selector else {
        return String::new();
    };
    let mut parts: Vec<String> = selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(key, value)| format!("{key}={}", value.as_str().unwrap_or_default()))
        .collect();
    for expression in selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = expression["key"].as_str().unwrap_or_default();
        let values = object::strings_at(expression, &["values"]).join(",");
        parts.push(match expression["operator"].as_str().unwrap_or_default() {
            "In" => format!("{key} in ({values})"),
            "NotIn" => format!("{key} notin ({values})"),
            "Exists" => key.to_owned(),
            _ => format!("!{key}"),
        });
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_carry_replicas_and_the_selector() {
        let deployment = json!({"metadata": {"name": "web", "namespace": "n", "resourceVersion": "7", "labels": {"a": "b"}},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]}},
            "status": {"replicas": 2}});
        let scale = scale_of(&deployment);
        assert_eq!(scale["spec"]["replicas"], 3);
        assert_eq!(scale["status"]["replicas"], 2);
        assert_eq!(scale["status"]["selector"], "app=web,tier in (a,b)");
        assert_eq!(scale["metadata"]["resourceVersion"], "7");
        assert!(scale["metadata"].get("labels").is_none());
    }
}
