//! Header fields as both HTTP paths see them. The HTTP/1 path keeps each head as the
//! bytes it read, with the spans of its fields ([`h1::head`](super::h1)); hyper's HTTP/2
//! path has `http::HeaderMap`s. Routing, persistence and the rewriting of a message on
//! its way through the proxy ([`forward`](super::forward)) read either through
//! [`Fields`] and [`RequestView`], and write through [`FieldSink`]: into the bytes of
//! an HTTP/1 head, or into a new `HeaderMap`. So that logic is written once, and the
//! HTTP/1 path builds no map, hashes no name and copies no value it passes on.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Uri, Version};

/// The fields of a head, in order.
pub(crate) trait Fields {
    /// Every field: its name as sent, and its value.
    fn each(&self) -> impl Iterator<Item = (&[u8], &[u8])>;

    /// The values of the fields named `name`, in order.
    fn all<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a [u8]>;

    fn first<'a>(&'a self, name: &'a HeaderName) -> Option<&'a [u8]> {
        self.all(name).next()
    }

    fn has(&self, name: &HeaderName) -> bool {
        self.first(name).is_some()
    }
}

impl Fields for HeaderMap {
    fn each(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.iter()
            .map(|(name, value)| (name.as_str().as_bytes(), value.as_bytes()))
    }

    fn all<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a [u8]> {
        self.get_all(name).iter().map(HeaderValue::as_bytes)
    }
}

/// What routing and forwarding read of a client's request.
pub(crate) trait RequestView {
    type Fields: Fields;

    fn fields(&self) -> &Self::Fields;

    /// The request target as parsed.
    fn uri(&self) -> &Uri;

    fn version(&self) -> Version;

    /// The request target's path, without the query.
    fn path(&self) -> &str {
        self.uri().path()
    }

    /// The request target in origin form (path and query), as the member gets it.
    fn path_and_query(&self) -> &str {
        origin_form(self.uri())
    }

    /// The authority of the target (HTTP/2, or an HTTP/1 absolute-form target).
    fn authority(&self) -> Option<&str> {
        self.uri().authority().map(http::uri::Authority::as_str)
    }
}

impl RequestView for Parts {
    type Fields = HeaderMap;

    fn fields(&self) -> &HeaderMap {
        &self.headers
    }

    fn uri(&self) -> &Uri {
        &self.uri
    }

    fn version(&self) -> Version {
        self.version
    }
}

/// A URI's path and query, `/` when it has none (an authority-form or `*` target).
pub(crate) fn origin_form(uri: &Uri) -> &str {
    uri.path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str)
}

/// Where the fields of a rewritten head go.
pub(crate) trait FieldSink {
    /// Adds a field. Names and values come from a parsed head or from the proxy, so
    /// they are valid.
    fn push_field(&mut self, name: &[u8], value: &[u8]);
}

/// The bytes of an HTTP/1 head: `name: value` lines.
impl FieldSink for Vec<u8> {
    fn push_field(&mut self, name: &[u8], value: &[u8]) {
        self.extend_from_slice(name);
        self.extend_from_slice(b": ");
        self.extend_from_slice(value);
        self.extend_from_slice(b"\r\n");
    }
}

impl FieldSink for HeaderMap {
    fn push_field(&mut self, name: &[u8], value: &[u8]) {
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            self.append(name, value);
        }
    }
}

/// Whether any `Connection` field lists `token`.
pub(crate) fn connection_has(fields: &impl Fields, token: &str) -> bool {
    connection_tokens(fields).any(|listed| listed.eq_ignore_ascii_case(token.as_bytes()))
}

/// The tokens the `Connection` fields list, trimmed.
pub(crate) fn connection_tokens(fields: &impl Fields) -> impl Iterator<Item = &[u8]> {
    fields
        .all(&http::header::CONNECTION)
        .flat_map(|value| value.split(|byte| *byte == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|token| !token.is_empty())
}

/// A `HeaderMap` of `fields` (name, value), in order, for tests.
#[cfg(test)]
pub(crate) fn header_map(fields: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in fields {
        map.push_field(name.as_bytes(), value.as_bytes());
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_maps_are_read_and_written_as_fields() {
        let mut map = header_map(&[
            ("Connection", "close, X-Secret"),
            ("x-a", "1"),
            ("X-A", "2"),
        ]);
        map.push_field(b"bad name", b"ignored");
        assert_eq!(map.len(), 3);
        assert_eq!(
            map.all(&HeaderName::from_static("x-a")).collect::<Vec<_>>(),
            [b"1", b"2"]
        );
        assert!(connection_has(&map, "x-secret"));
        assert!(!connection_has(&map, "keep-alive"));
        assert_eq!(
            connection_tokens(&map).collect::<Vec<_>>(),
            [&b"close"[..], b"X-Secret"]
        );
        let mut bytes = Vec::new();
        for (name, value) in map.each() {
            bytes.push_field(name, value);
        }
        assert_eq!(
            bytes,
            b"connection: close, X-Secret\r\nx-a: 1\r\nx-a: 2\r\n"
        );
    }
}
