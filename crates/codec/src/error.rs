//! The codec's error type: what was wrong with a request body, precise enough for a 400/415
//! message, with the low-level protobuf problem as the `#[source]`.

/// Why a Kubernetes protobuf request body could not be turned into JSON.
///
/// [`CodecError::is_unsupported_media`] tells which errors mean "this server cannot read that
/// encoding" (HTTP 415) rather than "the body is malformed" (HTTP 400).
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The body does not start with the 4-byte magic `k8s\0` of the Kubernetes protobuf envelope.
    #[error("body does not start with the Kubernetes protobuf magic \"k8s\\x00\"")]
    MissingMagic,

    /// The `runtime.Unknown` envelope after the magic is not valid protobuf.
    #[error("malformed runtime.Unknown protobuf envelope")]
    InvalidEnvelope(#[source] WireProblem),

    /// The envelope has no `typeMeta.apiVersion` or no `typeMeta.kind`.
    #[error("protobuf envelope has no apiVersion or kind")]
    MissingTypeMeta,

    /// The envelope says the object is compressed (`contentEncoding`), which is not supported.
    #[error("protobuf envelope content encoding {encoding:?} is not supported")]
    UnsupportedContentEncoding { encoding: String },

    /// The envelope says the raw object is in a format other than protobuf.
    #[error("protobuf envelope content type {content_type:?} is not supported")]
    UnsupportedContentType { content_type: String },

    /// No protobuf schema for this apiVersion and kind.
    #[error("no protobuf decoding for apiVersion {api_version:?} kind {kind:?}")]
    UnknownKind { api_version: String, kind: String },

    /// The object inside the envelope is not a valid protobuf encoding of its kind.
    #[error("invalid protobuf {api_version} {kind} at {path}")]
    InvalidObject {
        api_version: String,
        kind: String,
        /// JSON path of the offending field, like `spec.template.spec.containers[0]`, or `.`
        /// for the object itself.
        path: String,
        #[source]
        problem: WireProblem,
    },

    /// The built-in schema table failed to load; a bug in this crate, not in the request.
    #[error("protobuf schema table is invalid: {0}")]
    SchemaTable(String),
}

impl CodecError {
    /// True when the server should answer 415 Unsupported Media Type (the body may be fine but
    /// this server cannot decode it); false when the body itself is malformed (400).
    pub fn is_unsupported_media(&self) -> bool {
        matches!(
            self,
            CodecError::UnsupportedContentEncoding { .. }
                | CodecError::UnsupportedContentType { .. }
                | CodecError::UnknownKind { .. }
        )
    }
}

/// A low-level problem found while reading protobuf bytes.
#[derive(Debug, thiserror::Error)]
pub enum WireProblem {
    #[error("data ends in the middle of a field")]
    Truncated,
    #[error("varint longer than 64 bits")]
    VarintOverflow,
    #[error("field number {0} is out of range")]
    InvalidFieldNumber(u64),
    #[error("field {tag} uses wire type {wire_type}, which is not supported")]
    UnsupportedWireType { tag: u32, wire_type: u8 },
    #[error("field {tag} has wire type {found}, expected {expected}")]
    WrongWireType { tag: u32, expected: u8, found: u8 },
    #[error("string is not valid UTF-8")]
    InvalidUtf8,
    #[error("number is NaN or infinite")]
    NonFiniteNumber,
    #[error("IntOrString has impossible type {0}")]
    InvalidIntOrStringType(u64),
    #[error("time {seconds}s is outside years 0 to 9999")]
    TimeOutOfRange { seconds: i64 },
    #[error("quantity is empty")]
    EmptyQuantity,
    #[error("embedded raw object is not valid JSON")]
    InvalidEmbeddedJson(#[source] serde_json::Error),
    #[error("embedded Kubernetes protobuf object is invalid")]
    InvalidEmbeddedObject(#[source] Box<CodecError>),
    #[error("objects nested more than {0} levels deep")]
    TooDeep(usize),
}
