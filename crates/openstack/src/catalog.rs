//! The service catalog tokens carry: every OpenStack service this server answers, at
//! public, internal and admin interfaces, with both `region` and `region_id` (Tempest reads
//! `region`, keystoneauth either).

use serde_json::{Value, json};
use uuid::Uuid;

/// The services served today: (type, name, path under the server URL). Compute, block
/// storage, network and load balancer serve their quota APIs (and discovery) so far.
pub const SERVICES: &[(&str, &str, &str)] = &[
    ("identity", "keystone", "/identity"),
    ("compute", "nova", "/compute/v2.1"),
    ("block-storage", "cinder", "/volume/v3"),
    ("volumev3", "cinderv3", "/volume/v3"),
    ("network", "neutron", "/networking"),
    ("load-balancer", "octavia", "/load-balancer"),
    ("placement", "placement", "/placement"),
    ("image", "glance", "/image"),
];

/// The catalog for tokens and `GET /v3/auth/catalog`.
pub fn catalog(public_url: &str, region: &str) -> Vec<Value> {
    SERVICES
        .iter()
        .map(|(service_type, name, path)| {
            let endpoints: Vec<Value> = ["public", "internal", "admin"]
                .iter()
                .map(|interface| {
                    json!({
                        "id": stable_id(&format!("{service_type}/{interface}")),
                        "interface": interface,
                        "region_id": region,
                        "region": region,
                        "url": format!("{public_url}{path}"),
                    })
                })
                .collect();
            json!({
                "id": stable_id(service_type),
                "type": service_type,
                "name": name,
                "endpoints": endpoints,
            })
        })
        .collect()
}

/// An id that stays the same across restarts (derived from the name).
fn stable_id(name: &str) -> String {
    Uuid::new_v5(
        &Uuid::NAMESPACE_URL,
        format!("ronghe:catalog:{name}").as_bytes(),
    )
    .simple()
    .to_string()
}
