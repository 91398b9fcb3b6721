//! Microversion headers, as every OpenStack service with microversions reads them:
//! `OpenStack-API-Version: <service> X.Y` (several services may share one header, comma
//! separated, or come in several headers), and for compute also Nova's own
//! `X-OpenStack-Nova-API-Version: X.Y`. Each service negotiates its own range
//! (`placement::microversion`, `compute::microversion`).

use http::HeaderMap;

/// The version text a request asks of `service` (`"2.96"`, `"latest"`), if any: the
/// service's entry of `OpenStack-API-Version`, else the value of `legacy_header`.
pub fn requested_text(
    headers: &HeaderMap,
    service: &str,
    legacy_header: Option<&str>,
) -> Option<String> {
    headers
        .get_all("openstack-api-version")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .find_map(|entry| {
            let mut parts = entry.split_whitespace();
            let name = parts.next()?;
            name.eq_ignore_ascii_case(service)
                .then(|| parts.collect::<Vec<_>>().join(" "))
        })
        .or_else(|| {
            let value = headers.get(legacy_header?)?.to_str().ok()?;
            Some(value.trim().to_owned())
        })
}

/// `X.Y` as numbers; `None` when it is not two plain decimal numbers.
pub fn parse(text: &str) -> Option<(u32, u32)> {
    let (major, minor) = text.split_once('.')?;
    let number = |part: &str| -> Option<u32> {
        (!part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
            .then(|| part.parse().ok())
            .flatten()
    };
    Some((number(major)?, number(minor)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_str(value).expect("a header value"));
        }
        headers
    }

    #[test]
    fn the_service_entry_wins_over_the_legacy_header() {
        let asked = headers(&[
            ("openstack-api-version", "placement 1.2, compute 2.61"),
            ("x-openstack-nova-api-version", "2.1"),
        ]);
        let legacy = Some("x-openstack-nova-api-version");
        assert_eq!(
            requested_text(&asked, "compute", legacy).as_deref(),
            Some("2.61")
        );
        let asked = headers(&[("x-openstack-nova-api-version", "2.10")]);
        assert_eq!(
            requested_text(&asked, "compute", legacy).as_deref(),
            Some("2.10")
        );
        assert_eq!(requested_text(&asked, "placement", None), None);
    }

    #[test]
    fn versions_are_two_decimal_numbers() {
        assert_eq!(parse("2.96"), Some((2, 96)));
        assert_eq!(parse("1.0"), Some((1, 0)));
        for bad in ["pony.horse", "1.2.3", "1", "1.", "1.-1", "latest", " 1.2"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
