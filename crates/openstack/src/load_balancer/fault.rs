//! Octavia's errors: `{"faultcode": "Client"|"Server", "faultstring", "debuginfo": null}`,
//! and the engine's errors in them: admission's Octavia-worded 400/404/409 as they are,
//! claim conflicts with their message, validation causes (422) as a 400 whose string is
//! Octavia's words after Kubernetes' `Invalid value: ...:` prefix.

use http::StatusCode;
use ronghe_apiserver::error::ApiError;

use crate::fault::{Fault, Style};
use crate::network::NeutronFault;

pub type OctaviaFault = Fault;
pub type OctaviaResult<T> = Result<T, Fault>;

pub fn bad(message: impl Into<String>) -> Fault {
    Fault::bad_request(message).styled(Style::Octavia)
}

pub fn conflict(message: impl Into<String>) -> Fault {
    Fault::conflict(message).styled(Style::Octavia)
}

pub fn not_found(what: &str, id: &str) -> Fault {
    Fault::new(StatusCode::NOT_FOUND, format!("{what} {id} not found.")).styled(Style::Octavia)
}

/// Octavia's words for a policy refusal.
pub fn forbidden() -> Fault {
    Fault::new(
        StatusCode::FORBIDDEN,
        "Policy does not allow this request to be performed.",
    )
    .styled(Style::Octavia)
}

/// The text after `Invalid value: <value>: ` in a Kubernetes cause message.
fn strip_invalid_value(message: &str) -> &str {
    message
        .strip_prefix("Invalid value: ")
        .and_then(|rest| {
            // The value is JSON: a quoted string, a number, null.
            let end = if let Some(quoted) = rest.strip_prefix('"') {
                quoted.find("\": ").map(|i| i + 4)
            } else {
                rest.find(": ").map(|i| i + 2)
            };
            end.map(|i| &rest[i..])
        })
        .unwrap_or(message)
}

pub fn from_api(error: ApiError) -> Fault {
    let status = &error.status;
    let cause_messages = || -> Vec<String> {
        status
            .details
            .as_ref()
            .map(|details| {
                details
                    .causes
                    .iter()
                    .map(|c| strip_invalid_value(&c.message).to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    match error.code() {
        422 => {
            let messages = cause_messages();
            if messages.is_empty() {
                bad(status.message.clone())
            } else {
                bad(messages.join(" "))
            }
        }
        409 => {
            let cause = status
                .details
                .as_ref()
                .and_then(|details| details.causes.first())
                .map(|c| c.message.clone());
            conflict(cause.unwrap_or_else(|| status.message.clone()))
        }
        _ => Fault::from_api(error).styled(Style::Octavia),
    }
}

/// A fault of the shared Neutron helpers (list queries) in Octavia's shape.
pub fn from_neutron(fault: NeutronFault) -> Fault {
    Fault::new(fault.code, fault.message).styled(Style::Octavia)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_lose_their_kubernetes_prefix() {
        assert_eq!(
            strip_invalid_value("Invalid value: 5: Validation failure: too long"),
            "Validation failure: too long"
        );
        assert_eq!(
            strip_invalid_value("Invalid value: \"a: b\": Validation failure: x"),
            "Validation failure: x"
        );
        assert_eq!(strip_invalid_value("plain"), "plain");
    }
}
