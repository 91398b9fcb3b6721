//! HTTP/1.x heads on the fast path: a client's request head and a member's response head
//! read with httparse, the framing of the body each declares (RFC 9112 section 6), and
//! heads written out again.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Uri, Version};

use super::framing::Framing;

/// Most header fields taken in one head (hyper's default too).
pub(crate) const MAX_HEADERS: usize = 100;
/// Largest head taken, in bytes.
pub(crate) const MAX_HEAD: usize = 64 * 1024;

/// A head that cannot be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HeadError {
    #[error("malformed head: {0}")]
    Malformed(&'static str),
    #[error("head larger than {MAX_HEAD} bytes or with more than {MAX_HEADERS} fields")]
    TooLarge,
    #[error("a transfer coding other than chunked last")]
    UnsupportedCoding,
    #[error("invalid or conflicting Content-Length")]
    ContentLength,
}

impl HeadError {
    /// The status a client is answered with for its request head.
    pub fn status(&self) -> StatusCode {
        match self {
            HeadError::TooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// A client's request head.
#[derive(Debug)]
pub(crate) struct RequestHead {
    pub parts: http::request::Parts,
    pub framing: Framing,
    /// The Transfer-Encoding as sent, to go on with the body it frames.
    pub transfer_encoding: Option<HeaderValue>,
    /// Whether the client wants the connection kept after the answer.
    pub keep_alive: bool,
    /// `Expect: 100-continue`: the client waits for a 100 before sending its body.
    pub expects_continue: bool,
}

/// A member's response head.
#[derive(Debug)]
pub(crate) struct ResponseHead {
    pub status: StatusCode,
    pub reason: Vec<u8>,
    pub headers: HeaderMap,
    pub framing: Framing,
    pub transfer_encoding: Option<HeaderValue>,
    /// Whether the member keeps the connection after this answer.
    pub keep_alive: bool,
}

fn too_large_or(error: httparse::Error, otherwise: &'static str) -> HeadError {
    match error {
        httparse::Error::TooManyHeaders => HeadError::TooLarge,
        _ => HeadError::Malformed(otherwise),
    }
}

fn version(minor: Option<u8>) -> Version {
    if minor == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    }
}

fn header_map(fields: &[httparse::Header<'_>]) -> Result<HeaderMap, HeadError> {
    let mut headers = HeaderMap::with_capacity(fields.len());
    for field in fields {
        let name = HeaderName::from_bytes(field.name.as_bytes())
            .map_err(|_| HeadError::Malformed("invalid header name"))?;
        let value = HeaderValue::from_bytes(field.value)
            .map_err(|_| HeadError::Malformed("invalid header value"))?;
        headers.append(name, value);
    }
    Ok(headers)
}

/// Whether any `Connection` field lists `token`.
pub(crate) fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|listed| listed.trim().eq_ignore_ascii_case(token))
}

fn keep_alive(version: Version, headers: &HeaderMap) -> bool {
    if version == Version::HTTP_10 {
        connection_has(headers, "keep-alive")
    } else {
        !connection_has(headers, "close")
    }
}

/// The Transfer-Encoding fields joined, and whether chunked is the last coding.
fn transfer_encoding(headers: &HeaderMap) -> Option<(HeaderValue, bool)> {
    let mut fields = headers.get_all(header::TRANSFER_ENCODING).iter().peekable();
    fields.peek()?;
    let joined: Vec<&[u8]> = fields.map(HeaderValue::as_bytes).collect();
    let joined = joined.join(&b", "[..]);
    let last = joined
        .rsplit(|byte| *byte == b',')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    let chunked = last.eq_ignore_ascii_case(b"chunked");
    HeaderValue::from_bytes(&joined)
        .ok()
        .map(|value| (value, chunked))
}

/// The one Content-Length of a message (repeated identical values are one), if any.
fn content_length(headers: &HeaderMap) -> Result<Option<u64>, HeadError> {
    let mut length = None;
    for field in headers.get_all(header::CONTENT_LENGTH) {
        for value in field.as_bytes().split(|byte| *byte == b',') {
            let value = value.trim_ascii();
            if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
                return Err(HeadError::ContentLength);
            }
            let parsed: u64 = std::str::from_utf8(value)
                .ok()
                .and_then(|text| text.parse().ok())
                .ok_or(HeadError::ContentLength)?;
            if length.is_some_and(|seen| seen != parsed) {
                return Err(HeadError::ContentLength);
            }
            length = Some(parsed);
        }
    }
    Ok(length)
}

/// Reads a request head from the start of `buffer`: `None` while it is incomplete, else
/// the head and its length in bytes.
pub(crate) fn parse_request(buffer: &[u8]) -> Result<Option<(RequestHead, usize)>, HeadError> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut fields);
    let length = match request.parse(buffer) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) if buffer.len() > MAX_HEAD => {
            return Err(HeadError::TooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(error) => return Err(too_large_or(error, "invalid request head")),
    };
    if length > MAX_HEAD {
        return Err(HeadError::TooLarge);
    }
    let method = Method::from_bytes(request.method.unwrap_or_default().as_bytes())
        .map_err(|_| HeadError::Malformed("invalid method"))?;
    let uri: Uri = request
        .path
        .unwrap_or_default()
        .parse()
        .map_err(|_| HeadError::Malformed("invalid request target"))?;
    let version = version(request.version);
    let headers = header_map(request.headers)?;
    let (framing, transfer_encoding) = match transfer_encoding(&headers) {
        // A request must say where its body ends: chunked last, no Content-Length
        // beside it (a smuggling attempt), and no transfer coding in HTTP/1.0.
        Some(_) if version == Version::HTTP_10 => return Err(HeadError::UnsupportedCoding),
        Some(_) if headers.contains_key(header::CONTENT_LENGTH) => {
            return Err(HeadError::ContentLength);
        }
        Some((value, true)) => (Framing::Chunked, Some(value)),
        Some((_, false)) => return Err(HeadError::UnsupportedCoding),
        None => match content_length(&headers)? {
            Some(0) | None => (Framing::Empty, None),
            Some(length) => (Framing::Length(length), None),
        },
    };
    let expects_continue = headers
        .get(header::EXPECT)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let keep_alive = keep_alive(version, &headers);
    let mut builder = http::Request::builder()
        .method(method)
        .uri(uri)
        .version(version);
    if let Some(slot) = builder.headers_mut() {
        *slot = headers;
    }
    let (parts, ()) = builder
        .body(())
        .map_err(|_| HeadError::Malformed("invalid request"))?
        .into_parts();
    Ok(Some((
        RequestHead {
            parts,
            framing,
            transfer_encoding,
            keep_alive,
            expects_continue,
        },
        length,
    )))
}

/// Reads a member's response head (to a request of `method`) from the start of `buffer`.
pub(crate) fn parse_response(
    buffer: &[u8],
    method: &Method,
) -> Result<Option<(ResponseHead, usize)>, HeadError> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut fields);
    let length = match response.parse(buffer) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) if buffer.len() > MAX_HEAD => {
            return Err(HeadError::TooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(error) => return Err(too_large_or(error, "invalid response head")),
    };
    let status = StatusCode::from_u16(response.code.unwrap_or_default())
        .map_err(|_| HeadError::Malformed("invalid status code"))?;
    let version = version(response.version);
    let mut headers = header_map(response.headers)?;
    let bodiless = *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let (framing, transfer_encoding) = if bodiless {
        (Framing::Empty, None)
    } else {
        match transfer_encoding(&headers) {
            Some((value, chunked)) => {
                // The coding decides; a Content-Length beside it is wrong and goes.
                headers.remove(header::CONTENT_LENGTH);
                let framing = if chunked {
                    Framing::Chunked
                } else {
                    Framing::UntilClose
                };
                (framing, Some(value))
            }
            None => match content_length(&headers)? {
                Some(length) => (Framing::Length(length), None),
                None => (Framing::UntilClose, None),
            },
        }
    };
    let keep_alive = keep_alive(version, &headers) && framing != Framing::UntilClose;
    Ok(Some((
        ResponseHead {
            status,
            reason: response.reason.unwrap_or_default().as_bytes().to_vec(),
            headers,
            framing,
            transfer_encoding,
            keep_alive,
        },
        length,
    )))
}

fn write_fields(out: &mut Vec<u8>, headers: &HeaderMap) {
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes a request head (always HTTP/1.1, the request target as in `parts.uri`).
pub(crate) fn write_request_head(out: &mut Vec<u8>, parts: &http::request::Parts) {
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    let target = parts
        .uri
        .path_and_query()
        .map_or("/", |path_and_query| path_and_query.as_str());
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    write_fields(out, &parts.headers);
}

/// Writes a response head (always HTTP/1.1).
pub(crate) fn write_response_head(
    out: &mut Vec<u8>,
    status: StatusCode,
    reason: &[u8],
    headers: &HeaderMap,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason);
    out.extend_from_slice(b"\r\n");
    write_fields(out, headers);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(text: &str) -> Result<Option<(RequestHead, usize)>, HeadError> {
        parse_request(text.as_bytes())
    }

    #[test]
    fn request_heads_declare_their_framing_and_keep_alive() {
        let text = "POST /a?b=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
        let (head, length) = request(text).unwrap().unwrap();
        assert_eq!(length, text.len() - 5);
        assert_eq!(head.framing, Framing::Length(5));
        assert!(head.keep_alive);
        assert_eq!(head.parts.uri, "/a?b=1");
        assert_eq!(head.parts.headers["host"], "x");

        let (head, _) = request("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert_eq!(head.parts.version, Version::HTTP_10);
        assert!(!head.keep_alive);
        assert_eq!(head.framing, Framing::Empty);
        let (head, _) = request("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(head.keep_alive);
        let (head, _) = request("GET / HTTP/1.1\r\nConnection: foo, close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!head.keep_alive);

        let (head, _) = request(
            "PUT / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(head.framing, Framing::Chunked);
        assert_eq!(head.transfer_encoding.unwrap(), "gzip, chunked");
        assert!(head.expects_continue);
        assert!(request("GET / HTTP/1.1\r\nHost: x\r\n").unwrap().is_none());
    }

    #[test]
    fn ambiguous_or_broken_request_heads_are_refused() {
        for (text, error) in [
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
                HeadError::ContentLength,
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
                HeadError::ContentLength,
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
                HeadError::ContentLength,
            ),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
                HeadError::UnsupportedCoding,
            ),
            (
                "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
                HeadError::UnsupportedCoding,
            ),
            (
                "GET / HTTP/1.1\r\nbad header line\r\n\r\n",
                HeadError::Malformed("invalid request head"),
            ),
        ] {
            assert_eq!(request(text).unwrap_err(), error, "{text:?}");
        }
        let (head, _) = request("POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(head.framing, Framing::Length(3));
        let many: String = (0..=MAX_HEADERS).map(|n| format!("x{n}: y\r\n")).collect();
        assert_eq!(
            request(&format!("GET / HTTP/1.1\r\n{many}\r\n")).unwrap_err(),
            HeadError::TooLarge
        );
        let long = format!("GET /{} HTTP/1.1\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(request(&long).unwrap_err(), HeadError::TooLarge);
    }

    #[test]
    fn response_framing_follows_the_method_status_and_fields() {
        let get = Method::GET;
        let parse = |text: &str, method: &Method| {
            parse_response(text.as_bytes(), method).unwrap().unwrap().0
        };
        let head = parse("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n", &get);
        assert_eq!((head.framing, head.keep_alive), (Framing::Length(4), true));
        assert_eq!(head.reason, b"OK");
        let head = parse(
            "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n",
            &Method::HEAD,
        );
        assert_eq!(head.framing, Framing::Empty);
        let head = parse("HTTP/1.1 304 Not Modified\r\n\r\n", &get);
        assert_eq!(head.framing, Framing::Empty);
        let head = parse(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n",
            &get,
        );
        assert_eq!(head.framing, Framing::Chunked);
        assert!(!head.headers.contains_key(header::CONTENT_LENGTH));
        let head = parse("HTTP/1.1 200 OK\r\n\r\n", &get);
        assert_eq!(
            (head.framing, head.keep_alive),
            (Framing::UntilClose, false)
        );
        let head = parse("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", &get);
        assert!(!head.keep_alive);
        let head = parse(
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
            &get,
        );
        assert!(!head.keep_alive);
    }

    #[test]
    fn heads_are_written_back() {
        let (head, _) = request("GET /p?q HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n\r\n")
            .unwrap()
            .unwrap();
        let mut out = Vec::new();
        write_request_head(&mut out, &head.parts);
        assert_eq!(out, b"GET /p?q HTTP/1.1\r\nhost: h\r\nx-a: 1\r\n\r\n");
        let mut out = Vec::new();
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
        write_response_head(&mut out, StatusCode::NOT_FOUND, b"Gone Fishing", &headers);
        assert_eq!(
            out,
            b"HTTP/1.1 404 Gone Fishing\r\ncontent-length: 0\r\n\r\n"
        );
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_parse_or_fail_without_panicking(
            input in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
        ) {
            let _ = parse_request(&input);
            let _ = parse_response(&input, &Method::GET);
        }
    }
}
