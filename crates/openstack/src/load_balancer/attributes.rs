//! Request bodies as Octavia reads them: each resource's attributes, which a create and
//! an update may carry, their types (Octavia's clients send `connection_limit` and other
//! integers as strings at times), and their place in the kind's spec. One table per
//! resource; the handlers are generic over it.

use serde_json::{Map, Value, json};

use super::fault::{OctaviaResult, bad};

/// The type of an attribute's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Type {
    Text,
    Bool,
    Integer,
    Texts,
    /// `insert_headers`: header name → "true"/"false".
    Headers,
    /// `session_persistence`: an object with snake_case keys.
    Persistence,
}

/// One attribute of a resource.
#[derive(Clone, Copy, Debug)]
pub struct Attribute {
    /// Octavia's name (`loadbalancer_id`).
    pub name: &'static str,
    /// The spec field (`loadBalancerId`).
    pub field: &'static str,
    pub kind: Type,
    pub on_create: bool,
    pub on_update: bool,
    /// May be `null` (cleared).
    pub nullable: bool,
}

const fn attr(name: &'static str, field: &'static str, kind: Type, on_update: bool) -> Attribute {
    Attribute {
        name,
        field,
        kind,
        on_create: true,
        on_update,
        nullable: false,
    }
}

const fn nullable(name: &'static str, field: &'static str, kind: Type) -> Attribute {
    Attribute {
        name,
        field,
        kind,
        on_create: true,
        on_update: true,
        nullable: true,
    }
}

const NAME: Attribute = nullable("name", "name", Type::Text);
const DESCRIPTION: Attribute = nullable("description", "description", Type::Text);
const ADMIN: Attribute = attr("admin_state_up", "adminStateUp", Type::Bool, true);
const TAGS: Attribute = attr("tags", "tags", Type::Texts, true);

pub const LOAD_BALANCER: &[Attribute] = &[
    NAME,
    DESCRIPTION,
    ADMIN,
    TAGS,
    attr("vip_subnet_id", "vipSubnetId", Type::Text, false),
    attr("vip_network_id", "vipNetworkId", Type::Text, false),
    attr("vip_port_id", "vipPortId", Type::Text, false),
    attr("vip_address", "vipAddress", Type::Text, false),
    attr("provider", "provider", Type::Text, false),
    attr("flavor_id", "flavorId", Type::Text, false),
    attr("availability_zone", "availabilityZone", Type::Text, false),
];

pub const LISTENER: &[Attribute] = &[
    NAME,
    DESCRIPTION,
    ADMIN,
    TAGS,
    attr("loadbalancer_id", "loadBalancerId", Type::Text, false),
    attr("protocol", "protocol", Type::Text, false),
    attr("protocol_port", "protocolPort", Type::Integer, false),
    attr("connection_limit", "connectionLimit", Type::Integer, true),
    nullable("default_pool_id", "defaultPoolId", Type::Text),
    nullable(
        "default_tls_container_ref",
        "defaultTlsContainerRef",
        Type::Text,
    ),
    nullable("sni_container_refs", "sniContainerRefs", Type::Texts),
    // Null takes the default back, as in Octavia: every TLS version, cipher suite and
    // ALPN protocol the proxy offers, and NONE.
    nullable("tls_versions", "tlsVersions", Type::Texts),
    nullable("tls_ciphers", "tlsCiphers", Type::Text),
    nullable("alpn_protocols", "alpnProtocols", Type::Texts),
    nullable("client_authentication", "clientAuthentication", Type::Text),
    nullable(
        "client_ca_tls_container_ref",
        "clientCaTlsContainerRef",
        Type::Text,
    ),
    nullable(
        "client_crl_container_ref",
        "clientCrlContainerRef",
        Type::Text,
    ),
    nullable("insert_headers", "insertHeaders", Type::Headers),
    nullable("timeout_client_data", "timeoutClientData", Type::Integer),
    nullable(
        "timeout_member_connect",
        "timeoutMemberConnect",
        Type::Integer,
    ),
    nullable("timeout_member_data", "timeoutMemberData", Type::Integer),
    nullable("timeout_tcp_inspect", "timeoutTcpInspect", Type::Integer),
    nullable("allowed_cidrs", "allowedCidrs", Type::Texts),
];

pub const POOL: &[Attribute] = &[
    NAME,
    DESCRIPTION,
    ADMIN,
    TAGS,
    attr("loadbalancer_id", "loadBalancerId", Type::Text, false),
    attr("listener_id", "listenerId", Type::Text, false),
    attr("protocol", "protocol", Type::Text, false),
    attr("lb_algorithm", "lbAlgorithm", Type::Text, true),
    nullable(
        "session_persistence",
        "sessionPersistence",
        Type::Persistence,
    ),
    attr("tls_enabled", "tlsEnabled", Type::Bool, true),
    nullable("tls_container_ref", "tlsContainerRef", Type::Text),
    nullable("ca_tls_container_ref", "caTlsContainerRef", Type::Text),
    nullable("crl_container_ref", "crlContainerRef", Type::Text),
    nullable("tls_versions", "tlsVersions", Type::Texts),
    nullable("tls_ciphers", "tlsCiphers", Type::Text),
    nullable("alpn_protocols", "alpnProtocols", Type::Texts),
];

pub const MEMBER: &[Attribute] = &[
    NAME,
    ADMIN,
    TAGS,
    attr("address", "address", Type::Text, false),
    attr("protocol_port", "protocolPort", Type::Integer, false),
    attr("weight", "weight", Type::Integer, true),
    attr("backup", "backup", Type::Bool, true),
    attr("subnet_id", "subnetId", Type::Text, false),
    nullable("monitor_address", "monitorAddress", Type::Text),
    nullable("monitor_port", "monitorPort", Type::Integer),
];

pub const HEALTH_MONITOR: &[Attribute] = &[
    NAME,
    ADMIN,
    TAGS,
    attr("pool_id", "poolId", Type::Text, false),
    attr("type", "type", Type::Text, false),
    attr("delay", "delay", Type::Integer, true),
    attr("timeout", "timeout", Type::Integer, true),
    attr("max_retries", "maxRetries", Type::Integer, true),
    attr("max_retries_down", "maxRetriesDown", Type::Integer, true),
    nullable("http_method", "httpMethod", Type::Text),
    nullable("http_version", "httpVersion", Type::Text),
    nullable("domain_name", "domainName", Type::Text),
    nullable("url_path", "urlPath", Type::Text),
    nullable("expected_codes", "expectedCodes", Type::Text),
];

pub const L7_POLICY: &[Attribute] = &[
    NAME,
    DESCRIPTION,
    ADMIN,
    TAGS,
    attr("listener_id", "listenerId", Type::Text, false),
    attr("action", "action", Type::Text, true),
    attr("position", "position", Type::Integer, true),
    nullable("redirect_pool_id", "redirectPoolId", Type::Text),
    nullable("redirect_url", "redirectUrl", Type::Text),
    nullable("redirect_prefix", "redirectPrefix", Type::Text),
    nullable("redirect_http_code", "redirectHttpCode", Type::Integer),
];

pub const L7_RULE: &[Attribute] = &[
    ADMIN,
    TAGS,
    attr("type", "type", Type::Text, true),
    attr("compare_type", "compareType", Type::Text, true),
    nullable("key", "key", Type::Text),
    attr("value", "value", Type::Text, true),
    attr("invert", "invert", Type::Bool, true),
];

/// Attributes every create may carry besides the resource's own (the project is the
/// namespace; admins may name another).
pub const PROJECT: &[&str] = &["project_id", "tenant_id"];

fn invalid(attribute: &str, value: &Value, reason: &str) -> super::fault::OctaviaFault {
    let shown = match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    bad(format!(
        "Invalid input for field/attribute {attribute}. Value: '{shown}'. {reason}"
    ))
}

fn convert(attribute: &Attribute, value: &Value) -> OctaviaResult<Value> {
    if value.is_null() {
        return if attribute.nullable {
            Ok(Value::Null)
        } else {
            Err(invalid(attribute.name, value, "Value should not be null"))
        };
    }
    match attribute.kind {
        Type::Text => match value {
            Value::String(_) => Ok(value.clone()),
            _ => Err(invalid(attribute.name, value, "Value should be a string")),
        },
        Type::Bool => match value {
            Value::Bool(_) => Ok(value.clone()),
            Value::String(text) => match text.to_ascii_lowercase().as_str() {
                "true" => Ok(json!(true)),
                "false" => Ok(json!(false)),
                _ => Err(invalid(attribute.name, value, "Value should be a boolean")),
            },
            _ => Err(invalid(attribute.name, value, "Value should be a boolean")),
        },
        Type::Integer => {
            let number = match value {
                Value::Number(n) => n.as_i64(),
                Value::String(text) => text.trim().parse::<i64>().ok(),
                _ => None,
            };
            number
                .map(|n| json!(n))
                .ok_or_else(|| invalid(attribute.name, value, "Value should be an integer"))
        }
        Type::Texts => match value {
            Value::Array(items) if items.iter().all(Value::is_string) => Ok(value.clone()),
            _ => Err(invalid(
                attribute.name,
                value,
                "Value should be a list of strings",
            )),
        },
        Type::Headers => match value {
            Value::Object(headers) => Ok(Value::Object(
                headers
                    .iter()
                    .map(|(k, v)| {
                        let text = match v {
                            Value::String(text) => text.clone(),
                            other => other.to_string(),
                        };
                        (k.clone(), json!(text))
                    })
                    .collect(),
            )),
            _ => Err(invalid(attribute.name, value, "Value should be a dict")),
        },
        Type::Persistence => {
            let Value::Object(object) = value else {
                return Err(invalid(attribute.name, value, "Value should be a dict"));
            };
            let mut converted = Map::new();
            for (key, item) in object {
                let field = match key.as_str() {
                    "type" => "type",
                    "cookie_name" => "cookieName",
                    "persistence_timeout" => "persistenceTimeout",
                    "persistence_granularity" => "persistenceGranularity",
                    other => {
                        return Err(bad(format!(
                            "Invalid input for field/attribute session_persistence. Unknown attribute {other}."
                        )));
                    }
                };
                if !item.is_null() {
                    converted.insert(field.into(), item.clone());
                }
            }
            if !converted.contains_key("type") {
                return Err(bad(
                    "Invalid input for field/attribute session_persistence. Mandatory field missing: type",
                ));
            }
            Ok(Value::Object(converted))
        }
    }
}

/// The resource member of a body (`{"listener": {...}}`).
pub fn member<'a>(body: &'a Value, key: &str) -> OctaviaResult<&'a Map<String, Value>> {
    body.get(key).and_then(Value::as_object).ok_or_else(|| {
        bad(format!(
            "Invalid input for field/attribute {key}. Value: 'None'. Mandatory field missing."
        ))
    })
}

/// Writes a request's attributes into `spec` (a JSON object in the kind's camelCase),
/// refusing unknown ones and those the operation may not set.
pub fn apply(
    spec: &mut Map<String, Value>,
    request: &Map<String, Value>,
    table: &[Attribute],
    creating: bool,
    singular: &str,
) -> OctaviaResult<()> {
    for (key, value) in request {
        if creating && PROJECT.contains(&key.as_str()) {
            continue;
        }
        let attribute = table
            .iter()
            .find(|a| a.name == key && if creating { a.on_create } else { a.on_update })
            .ok_or_else(|| bad(format!("Unknown attribute for argument {singular}: {key}")))?;
        match convert(attribute, value)? {
            Value::Null => {
                spec.remove(attribute.field);
            }
            converted => {
                spec.insert(attribute.field.into(), converted);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_convert_as_octavias_clients_send_them() {
        let mut spec = Map::new();
        let request = json!({
            "connection_limit": "100", "protocol": "HTTP", "protocol_port": 80,
            "insert_headers": {"X-Forwarded-For": true}, "admin_state_up": "True",
            "project_id": "x",
        });
        apply(
            &mut spec,
            request.as_object().unwrap(),
            LISTENER,
            true,
            "listener",
        )
        .unwrap();
        assert_eq!(spec["connectionLimit"], 100);
        assert_eq!(spec["insertHeaders"]["X-Forwarded-For"], "true");
        assert_eq!(spec["adminStateUp"], true);
        assert!(!spec.contains_key("project_id"));

        let unknown = json!({"bogus": 1});
        let error = apply(
            &mut spec,
            unknown.as_object().unwrap(),
            LISTENER,
            true,
            "listener",
        )
        .unwrap_err();
        assert!(
            error.message.contains("Unknown attribute"),
            "{}",
            error.message
        );
        // The protocol is fixed at create.
        let change = json!({"protocol": "TCP"});
        assert!(
            apply(
                &mut spec,
                change.as_object().unwrap(),
                LISTENER,
                false,
                "listener"
            )
            .is_err()
        );
        // null clears what may be cleared.
        let clear = json!({"default_pool_id": null, "timeout_client_data": null});
        spec.insert("defaultPoolId".into(), json!("p"));
        apply(
            &mut spec,
            clear.as_object().unwrap(),
            LISTENER,
            false,
            "listener",
        )
        .unwrap();
        assert!(!spec.contains_key("defaultPoolId"));
        let bad_port = json!({"protocol_port": "eighty"});
        assert!(
            apply(
                &mut spec,
                bad_port.as_object().unwrap(),
                LISTENER,
                true,
                "listener"
            )
            .is_err()
        );
    }
}
