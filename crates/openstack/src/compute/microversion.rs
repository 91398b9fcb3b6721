//! Nova's microversions: `OpenStack-API-Version: compute 2.X` or
//! `X-OpenStack-Nova-API-Version: 2.X`, negotiated once per request by a middleware that
//! refuses a version out of range (406, naming the range, as Nova words it), answers a
//! malformed one with 400, and echoes the version served in both headers with `Vary`.
//!
//! A version is the minor number of major version 2.

use std::fmt;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode};

use crate::fault::{Fault, Style};

/// The base version.
pub const MIN: Microversion = Microversion(1);

/// The newest version served: 2.96 (`pinned_availability_zone` on servers). Every shape the
/// served routes have up to it is produced (the embedded flavor from 2.47, `locked` 2.9,
/// `host_status` 2.16, `description` 2.19, `tags` 2.26, server group `policy`/`rules` 2.64,
/// flavor `description` 2.55 and `extra_specs` 2.61, integer `swap` 2.75, hypervisor UUIDs
/// 2.53 and the slimmer hypervisor 2.88, keypair generation refused from 2.92).
pub const MAX: Microversion = Microversion(96);

/// A compute microversion `2.minor`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Microversion(pub u16);

impl Microversion {
    /// Whether this version is `2.minor` or later.
    pub fn at_least(self, minor: u16) -> bool {
        self.0 >= minor
    }
}

impl fmt::Display for Microversion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "2.{}", self.0)
    }
}

const LEGACY_HEADER: &str = "x-openstack-nova-api-version";

/// The version a request asks for (the base version when it names none).
fn requested(headers: &http::HeaderMap) -> Result<Microversion, Fault> {
    let Some(text) = crate::microversion::requested_text(headers, "compute", Some(LEGACY_HEADER))
    else {
        return Ok(MIN);
    };
    if text.eq_ignore_ascii_case("latest") {
        return Ok(MAX);
    }
    let Some((major, minor)) = crate::microversion::parse(&text) else {
        return Err(Fault::bad_request(format!(
            "Invalid API version request: {text}"
        )));
    };
    match u16::try_from(minor) {
        Ok(minor) if major == 2 && (MIN.0..=MAX.0).contains(&minor) => Ok(Microversion(minor)),
        _ => Err(Fault::new(
            StatusCode::NOT_ACCEPTABLE,
            format!(
                "Version {text} is not supported by the API. Minimum is {MIN} and maximum is {MAX}."
            ),
        )),
    }
}

/// Negotiates the version of every compute request and hands it to the handlers as a
/// request extension.
pub async fn negotiate(mut request: Request, next: Next) -> Response {
    let version = match requested(request.headers()) {
        Ok(version) => version,
        Err(fault) => return fault.styled(Style::Nova).into_response(),
    };
    request.extensions_mut().insert(version);
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&format!("compute {version}")) {
        headers.insert("openstack-api-version", value);
    }
    if let Ok(value) = HeaderValue::from_str(&version.to_string()) {
        headers.insert(LEGACY_HEADER, value);
    }
    headers.insert(
        http::header::VARY,
        HeaderValue::from_static("OpenStack-API-Version, X-OpenStack-Nova-API-Version"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked(pairs: &[(&'static str, &str)]) -> Result<Microversion, u16> {
        let mut headers = http::HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_str(value).expect("a header value"));
        }
        requested(&headers).map_err(|fault| fault.code.as_u16())
    }

    #[test]
    fn versions_come_from_either_header() {
        assert_eq!(asked(&[]), Ok(MIN));
        assert_eq!(
            asked(&[("openstack-api-version", "compute 2.61")]),
            Ok(Microversion(61))
        );
        assert_eq!(asked(&[(LEGACY_HEADER, "2.37")]), Ok(Microversion(37)));
        assert_eq!(asked(&[(LEGACY_HEADER, "latest")]), Ok(MAX));
    }

    #[test]
    fn versions_out_of_range_are_406_and_malformed_ones_400() {
        assert_eq!(asked(&[(LEGACY_HEADER, "2.200")]), Err(406));
        assert_eq!(asked(&[(LEGACY_HEADER, "3.0")]), Err(406));
        assert_eq!(asked(&[(LEGACY_HEADER, "2.0")]), Err(406));
        assert_eq!(asked(&[(LEGACY_HEADER, "two")]), Err(400));
    }
}
