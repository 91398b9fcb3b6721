//! Placement's microversions: the `OpenStack-API-Version: placement X.Y` request header,
//! negotiated once per request by a middleware that refuses a version out of range (406,
//! with the range in the body, which is how osc-placement discovers it), answers a
//! malformed one with 400, and echoes the version served with `Vary`.
//!
//! Placement has only major version 1, so a version is its minor number.

use std::fmt;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

use crate::fault::{Fault, Style};

/// The oldest version served.
pub const MIN: Microversion = Microversion(0);

/// The newest version served: 1.29, nested providers in allocation candidates. Every shape
/// of every version up to it is honoured on the routes served (the higher ones change the
/// candidates' request language and answers: `in_tree`, forbidden aggregates, suffixes,
/// mappings, `root_required`, `same_subtree`, re-parenting, consumer types, `in:` traits).
/// It is also the version osc-placement asks for first, so it never needs to fall back.
pub const MAX: Microversion = Microversion(29);

/// A Placement microversion `1.minor`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Microversion(pub u16);

impl Microversion {
    /// Whether this version is `1.minor` or later.
    pub fn at_least(self, minor: u16) -> bool {
        self.0 >= minor
    }
}

impl fmt::Display for Microversion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "1.{}", self.0)
    }
}

/// Why a requested version is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not `X.Y` (400).
    Malformed(String),
    /// Well formed but not served (406).
    Unacceptable(String),
}

/// The version a request asks for: the `placement` entry of its `OpenStack-API-Version`
/// headers (`latest` is the newest), or the oldest when there is none.
pub fn requested(headers: &HeaderMap) -> Result<Microversion, Refusal> {
    let Some(text) = crate::microversion::requested_text(headers, "placement", None) else {
        return Ok(MIN);
    };
    if text.eq_ignore_ascii_case("latest") {
        return Ok(MAX);
    }
    let (major, minor) =
        crate::microversion::parse(&text).ok_or_else(|| Refusal::Malformed(text.clone()))?;
    match u16::try_from(minor) {
        Ok(minor) if major == 1 && (MIN.0..=MAX.0).contains(&minor) => Ok(Microversion(minor)),
        _ => Err(Refusal::Unacceptable(text)),
    }
}

/// Negotiates the version of every Placement request: refuses what is not served, hands
/// the version to the handlers (as a request extension), and says on the answer which
/// version it followed.
pub async fn negotiate(mut request: Request, next: Next) -> Response {
    let version = match requested(request.headers()) {
        Ok(version) => version,
        Err(Refusal::Malformed(text)) => {
            return Fault::bad_request(format!("invalid version string: {text}"))
                .styled(Style::PLACEMENT)
                .into_response();
        }
        Err(Refusal::Unacceptable(text)) => {
            return Fault::new(
                StatusCode::NOT_ACCEPTABLE,
                format!("Unacceptable version header: {text}"),
            )
            .styled(Style::PLACEMENT)
            .into_response();
        }
    };
    let is_get = request.method() == Method::GET;
    request.extensions_mut().insert(version);
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&format!("placement {version}")) {
        headers.insert(HeaderName::from_static("openstack-api-version"), value);
    }
    headers.insert(
        http::header::VARY,
        HeaderValue::from_static("openstack-api-version"),
    );
    if !headers.contains_key("openstack-request-id")
        && let Ok(value) = HeaderValue::from_str(&format!("req-{}", uuid::Uuid::new_v4()))
    {
        headers.insert(HeaderName::from_static("openstack-request-id"), value);
    }
    // 1.15: answers to reads say they are not to be cached without asking again.
    if version.at_least(15) && is_get && response.status() == StatusCode::OK {
        let now = jiff::Timestamp::now()
            .strftime("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        let headers = response.headers_mut();
        headers.insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache"),
        );
        if let Ok(value) = HeaderValue::from_str(&now) {
            headers.insert(http::header::LAST_MODIFIED, value);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked(values: &[&str]) -> Result<Microversion, Refusal> {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(
                "openstack-api-version",
                HeaderValue::from_str(value).expect("a header value"),
            );
        }
        requested(&headers)
    }

    #[test]
    fn versions_are_read_from_the_placement_entry() {
        assert_eq!(asked(&[]), Ok(MIN));
        assert_eq!(asked(&["placement 1.29"]), Ok(Microversion(29)));
        assert_eq!(
            asked(&["compute 2.1, placement 1.14"]),
            Ok(Microversion(14))
        );
        assert_eq!(
            asked(&["compute 2.1", "Placement 1.2"]),
            Ok(Microversion(2))
        );
        assert_eq!(asked(&["placement latest"]), Ok(MAX));
        assert_eq!(asked(&["compute 2.96"]), Ok(MIN));
    }

    #[test]
    fn bad_versions_are_refused() {
        assert_eq!(
            asked(&["placement 1.99"]),
            Err(Refusal::Unacceptable("1.99".into()))
        );
        assert_eq!(
            asked(&["placement 0.5"]),
            Err(Refusal::Unacceptable("0.5".into()))
        );
        assert_eq!(
            asked(&["placement 2.0"]),
            Err(Refusal::Unacceptable("2.0".into()))
        );
        for bad in ["pony.horse", "1.2.3", "1", "1.", "1.-1"] {
            assert_eq!(
                asked(&[&format!("placement {bad}")]),
                Err(Refusal::Malformed(bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn versions_print_as_placement_does() {
        assert_eq!(MAX.to_string(), "1.29");
        assert_eq!(MIN.to_string(), "1.0");
    }
}
