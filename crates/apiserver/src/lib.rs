//! Ronghe's API server: the kind registry, the generic resource engine over the
//! revisioned store, and the HTTPS face that speaks the Kubernetes API well enough for the
//! real kubectl and kube-rs, plus the controllers that run inside the server process.

pub mod auth;
pub mod controllers;
pub mod discovery;
pub mod engine;
pub mod error;
pub mod http;
pub mod identity;
pub mod kinds;
pub mod metrics;
pub mod object;
pub mod openapi;
pub mod quota;
pub mod registry;
pub mod table;
