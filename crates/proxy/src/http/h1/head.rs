//! HTTP/1.x heads on the fast path: a client's request head and a member's response head
//! read with httparse and kept as the bytes read, with the spans of their fields (no map
//! is built and no value copied); the framing of the body each declares (RFC 9112
//! section 6); and the start lines of heads written out again.

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderName};
use http::{Method, StatusCode, Uri, Version};
use smallvec::SmallVec;

use super::framing::Framing;
use crate::http::fields::{self, Fields, RequestView};

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

/// Where a field's name and value lie in its head's bytes (a head is at most
/// [`MAX_HEAD`] bytes, so offsets fit in 16 bits).
#[derive(Debug, Clone, Copy)]
struct Span {
    name: (u16, u16),
    value: (u16, u16),
}

/// The fields of a head as read: its bytes, and where each field lies in them. httparse
/// checked the names (tokens) and values (no control bytes but tab) as `http`'s types
/// would.
#[derive(Debug)]
pub(crate) struct RawFields {
    bytes: Bytes,
    spans: SmallVec<[Span; 12]>,
}

impl RawFields {
    /// The spans of `fields`, which httparse read from `head`.
    fn spans(
        head: &[u8],
        fields: &[httparse::Header<'_>],
    ) -> Result<SmallVec<[Span; 12]>, HeadError> {
        fields
            .iter()
            .map(|field| {
                Ok(Span {
                    name: span(head, field.name.as_bytes())?,
                    value: span(head, field.value)?,
                })
            })
            .collect()
    }

    fn slice(&self, (start, length): (u16, u16)) -> &[u8] {
        &self.bytes[usize::from(start)..usize::from(start) + usize::from(length)]
    }
}

impl Fields for RawFields {
    fn each(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.spans
            .iter()
            .map(|span| (self.slice(span.name), self.slice(span.value)))
    }

    fn all<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a [u8]> {
        // Field names are case-insensitive; `name`, a HeaderName, is lower-case.
        let name = name.as_str().as_bytes();
        self.each()
            .filter(move |(field, _)| field.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    }
}

/// Where `part`, a slice httparse gave of `head`, lies in it (an empty part, which may
/// point anywhere, lies at the start).
fn span(head: &[u8], part: &[u8]) -> Result<(u16, u16), HeadError> {
    if part.is_empty() {
        return Ok((0, 0));
    }
    let start = (part.as_ptr() as usize).wrapping_sub(head.as_ptr() as usize);
    match (u16::try_from(start), u16::try_from(part.len())) {
        (Ok(start), Ok(length)) if usize::from(start) + part.len() <= head.len() => {
            Ok((start, length))
        }
        _ => Err(HeadError::TooLarge),
    }
}

/// A client's request head.
#[derive(Debug)]
pub(crate) struct RequestHead {
    pub method: Method,
    /// The request target, parsed from the head's own bytes.
    pub uri: Uri,
    pub version: Version,
    pub fields: RawFields,
    /// How the body ends; `Chunked` when (and only when) the request has a
    /// Transfer-Encoding, whose fields go on with the body.
    pub framing: Framing,
    /// Whether the client wants the connection kept after the answer.
    pub keep_alive: bool,
    /// `Expect: 100-continue`: the client waits for a 100 before sending its body.
    pub expects_continue: bool,
}

impl RequestView for RequestHead {
    type Fields = RawFields;

    fn fields(&self) -> &RawFields {
        &self.fields
    }

    fn uri(&self) -> &Uri {
        &self.uri
    }

    fn version(&self) -> Version {
        self.version
    }
}

/// A member's response head.
#[derive(Debug)]
pub(crate) struct ResponseHead {
    pub status: StatusCode,
    reason: (u16, u16),
    pub fields: RawFields,
    pub framing: Framing,
    /// Whether it has a Transfer-Encoding (then any Content-Length beside it is wrong).
    pub transfer_encoding: bool,
    /// Whether the member keeps the connection after this answer.
    pub keep_alive: bool,
}

impl ResponseHead {
    pub fn reason(&self) -> &[u8] {
        self.fields.slice(self.reason)
    }
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

fn keep_alive(version: Version, fields: &RawFields) -> bool {
    if version == Version::HTTP_10 {
        fields::connection_has(fields, "keep-alive")
    } else {
        !fields::connection_has(fields, "close")
    }
}

/// Whether there is a Transfer-Encoding, and whether chunked is its last coding (over
/// all its fields).
fn transfer_encoding(fields: &RawFields) -> Option<bool> {
    let last = fields.all(&header::TRANSFER_ENCODING).last()?;
    let coding = last
        .rsplit(|byte| *byte == b',')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    Some(coding.eq_ignore_ascii_case(b"chunked"))
}

/// The one Content-Length of a message (repeated identical values are one), if any.
fn content_length(fields: &RawFields) -> Result<Option<u64>, HeadError> {
    let mut length = None;
    for field in fields.all(&header::CONTENT_LENGTH) {
        for value in field.split(|byte| *byte == b',') {
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

/// Takes a request head from the start of `buffer`: `None` while it is incomplete (the
/// buffer is left as it is), else the head, its bytes split off the buffer.
pub(crate) fn parse_request(buffer: &mut BytesMut) -> Result<Option<RequestHead>, HeadError> {
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
    let version = version(request.version);
    let spans = RawFields::spans(buffer, request.headers)?;
    let (start, target_length) = span(buffer, request.path.unwrap_or_default().as_bytes())?;
    let bytes = buffer.split_to(length).freeze();
    let start = usize::from(start);
    let uri = Uri::from_maybe_shared(bytes.slice(start..start + usize::from(target_length)))
        .map_err(|_| HeadError::Malformed("invalid request target"))?;
    let fields = RawFields { bytes, spans };
    let framing = match transfer_encoding(&fields) {
        // A request must say where its body ends: chunked last, no Content-Length
        // beside it (a smuggling attempt), and no transfer coding in HTTP/1.0.
        Some(_) if version == Version::HTTP_10 => return Err(HeadError::UnsupportedCoding),
        Some(_) if fields.has(&header::CONTENT_LENGTH) => return Err(HeadError::ContentLength),
        Some(true) => Framing::Chunked,
        Some(false) => return Err(HeadError::UnsupportedCoding),
        None => match content_length(&fields)? {
            Some(0) | None => Framing::Empty,
            Some(length) => Framing::Length(length),
        },
    };
    let expects_continue = fields
        .first(&header::EXPECT)
        .is_some_and(|value| value.eq_ignore_ascii_case(b"100-continue"));
    let keep_alive = keep_alive(version, &fields);
    Ok(Some(RequestHead {
        method,
        uri,
        version,
        fields,
        framing,
        keep_alive,
        expects_continue,
    }))
}

/// Takes a member's response head (to a request of `method`) from the start of
/// `buffer`, as [`parse_request`] does.
pub(crate) fn parse_response(
    buffer: &mut BytesMut,
    method: &Method,
) -> Result<Option<ResponseHead>, HeadError> {
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
    if length > MAX_HEAD {
        return Err(HeadError::TooLarge);
    }
    let status = StatusCode::from_u16(response.code.unwrap_or_default())
        .map_err(|_| HeadError::Malformed("invalid status code"))?;
    let version = version(response.version);
    let spans = RawFields::spans(buffer, response.headers)?;
    let reason = span(buffer, response.reason.unwrap_or_default().as_bytes())?;
    let fields = RawFields {
        bytes: buffer.split_to(length).freeze(),
        spans,
    };
    let bodiless = *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let coded = transfer_encoding(&fields);
    let framing = match coded {
        _ if bodiless => Framing::Empty,
        // The coding decides; a Content-Length beside it is wrong (and does not go on).
        Some(true) => Framing::Chunked,
        Some(false) => Framing::UntilClose,
        None => match content_length(&fields)? {
            Some(length) => Framing::Length(length),
            None => Framing::UntilClose,
        },
    };
    let keep_alive = keep_alive(version, &fields) && framing != Framing::UntilClose;
    Ok(Some(ResponseHead {
        status,
        reason,
        fields,
        framing,
        transfer_encoding: coded.is_some() && !bodiless,
        keep_alive,
    }))
}

/// Writes a request line (always HTTP/1.1); the fields follow, then [`end_head`].
pub(crate) fn write_request_line(out: &mut Vec<u8>, method: &Method, target: &str) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
}

/// Writes a status line (always HTTP/1.1); the fields follow, then [`end_head`].
pub(crate) fn write_status_line(out: &mut Vec<u8>, status: StatusCode, reason: &[u8]) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason);
    out.extend_from_slice(b"\r\n");
}

/// Ends a head after its fields.
pub(crate) fn end_head(out: &mut Vec<u8>) {
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(text: &str) -> Result<Option<RequestHead>, HeadError> {
        parse_request(&mut BytesMut::from(text))
    }

    fn field(fields: &RawFields, name: &'static str) -> Option<Vec<u8>> {
        fields
            .first(&HeaderName::from_static(name))
            .map(<[u8]>::to_vec)
    }

    #[test]
    fn request_heads_declare_their_framing_and_keep_alive() {
        let text = "POST /a?b=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
        let mut buffer = BytesMut::from(text);
        let head = parse_request(&mut buffer).unwrap().unwrap();
        assert_eq!(
            &buffer[..],
            b"hello",
            "the head is split off, the body stays"
        );
        assert_eq!(head.framing, Framing::Length(5));
        assert!(head.keep_alive);
        assert_eq!(head.uri, "/a?b=1");
        assert_eq!((head.path(), head.path_and_query()), ("/a", "/a?b=1"));
        assert_eq!(field(&head.fields, "host").as_deref(), Some(&b"x"[..]));
        assert_eq!(head.fields.each().count(), 2);

        let head = request("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert_eq!(head.version, Version::HTTP_10);
        assert!(!head.keep_alive);
        assert_eq!(head.framing, Framing::Empty);
        let head = request("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(head.keep_alive);
        let head = request("GET / HTTP/1.1\r\nConnection: foo, close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!head.keep_alive);

        let head = request(
            "PUT / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(head.framing, Framing::Chunked);
        assert!(head.expects_continue);
        let head = request("GET http://h:8/p?q HTTP/1.1\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            (head.authority(), head.path_and_query()),
            (Some("h:8"), "/p?q")
        );

        let mut partial = BytesMut::from("GET / HTTP/1.1\r\nHost: x\r\n");
        assert!(parse_request(&mut partial).unwrap().is_none());
        assert_eq!(partial.len(), 25, "an incomplete head stays in the buffer");
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
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
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
        let head = request("POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\n")
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
        let value = "v".repeat(MAX_HEAD - 40);
        let largest = format!("GET / HTTP/1.1\r\nX-Big: {value}\r\nX-Last: 1\r\n\r\n");
        let head = request(&largest).unwrap().unwrap();
        assert_eq!(
            field(&head.fields, "x-big").as_deref(),
            Some(value.as_bytes())
        );
        assert_eq!(field(&head.fields, "x-last").as_deref(), Some(&b"1"[..]));
    }

    #[test]
    fn response_framing_follows_the_method_status_and_fields() {
        let get = Method::GET;
        let parse = |text: &str, method: &Method| {
            parse_response(&mut BytesMut::from(text), method)
                .unwrap()
                .unwrap()
        };
        let head = parse("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n", &get);
        assert_eq!((head.framing, head.keep_alive), (Framing::Length(4), true));
        assert_eq!(head.reason(), b"OK");
        let head = parse(
            "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n",
            &Method::HEAD,
        );
        assert_eq!(head.framing, Framing::Empty);
        let head = parse("HTTP/1.1 304 Not Modified\r\n\r\n", &get);
        assert_eq!(head.framing, Framing::Empty);
        assert_eq!(head.reason(), b"Not Modified");
        let head = parse("HTTP/1.1 204\r\n\r\n", &get);
        assert_eq!(head.reason(), b"");
        let head = parse(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n",
            &get,
        );
        assert_eq!(head.framing, Framing::Chunked);
        assert!(head.transfer_encoding);
        let head = parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", &get);
        assert_eq!(
            (head.framing, head.keep_alive),
            (Framing::UntilClose, false)
        );
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
        let mut buffer = BytesMut::from("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n");
        let head = parse_response(&mut buffer, &get).unwrap().unwrap();
        assert_eq!(head.status, StatusCode::CONTINUE);
        assert_eq!(&buffer[..], b"HTTP/1.1 200 OK\r\n");
    }

    #[test]
    fn start_lines_are_written() {
        let mut out = Vec::new();
        write_request_line(&mut out, &Method::GET, "/p?q");
        end_head(&mut out);
        assert_eq!(out, b"GET /p?q HTTP/1.1\r\n\r\n");
        let mut out = Vec::new();
        write_status_line(&mut out, StatusCode::NOT_FOUND, b"Gone Fishing");
        assert_eq!(out, b"HTTP/1.1 404 Gone Fishing\r\n");
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_parse_or_fail_without_panicking(
            input in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
        ) {
            if let Ok(Some(head)) = parse_request(&mut BytesMut::from(&input[..])) {
                for (name, value) in head.fields.each() {
                    proptest::prop_assert!(HeaderName::from_bytes(name).is_ok());
                    proptest::prop_assert!(http::HeaderValue::from_bytes(value).is_ok());
                }
            }
            let _ = parse_response(&mut BytesMut::from(&input[..]), &Method::GET);
        }
    }
}
