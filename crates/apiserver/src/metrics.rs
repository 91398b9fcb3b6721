//! Prometheus metrics for the API server, served at `/metrics` in the text format.

use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::http::ApiState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: String,
}

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<MethodLabels, Histogram>,
    watches: Gauge<i64, AtomicI64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("ronghe_apiserver");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "API requests by method and status code",
            requests.clone(),
        );
        let latency = Family::<MethodLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        registry.register(
            "request_duration_seconds",
            "Time to the response head, by method (watch streams count until their first byte)",
            latency.clone(),
        );
        let watches = Gauge::<i64, AtomicI64>::default();
        registry.register("watches", "Watch streams open now", watches.clone());
        Self {
            registry,
            requests,
            latency,
            watches,
        }
    }

    pub fn observe_request(&self, method: &str, code: u16, elapsed: Duration) {
        // Anyone can send any method name; only the standard ones get series of their own.
        let method = match method {
            "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS" => method,
            _ => "OTHER",
        };
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_owned(),
                code,
            })
            .inc();
        self.latency
            .get_or_create(&MethodLabels {
                method: method.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Counts a watch stream as open until the returned guard is dropped.
    pub fn watch_started(self: &Arc<Self>) -> WatchGuard {
        self.watches.inc();
        WatchGuard {
            metrics: self.clone(),
        }
    }

    pub fn encode(&self) -> String {
        let mut text = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::error!(%error, "encoding metrics failed");
        }
        text
    }
}

/// Keeps the open-watches gauge up while a watch runs.
pub struct WatchGuard {
    metrics: Arc<Metrics>,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.metrics.watches.dec();
    }
}

pub async fn render(State(state): State<Arc<ApiState>>) -> Response {
    let mut response = (StatusCode::OK, state.metrics.encode()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}
