//! The HTTP payload shapes a PHP worker sees (spec section 3): the request
//! context in both codecs, the response context the worker answers with, the
//! form data tree and streamed multipart uploads.
//!
//! Invariants:
//! - Output is deterministic: protobuf maps and JSON objects are written with
//!   sorted keys, so the same request always gives the same bytes (RoadRunner
//!   writes protobuf maps in random order; PHP does not care).
//! - JSON is written the way Go's `encoding/json` writes it (sorted keys, `<`,
//!   `>` and `&` escaped as `\u003c`…), so PHP sees what RoadRunner would send.
//! - An uploaded file is never held whole in memory: each part streams to its
//!   own temp file, and [`TempFiles`] deletes the files when it is dropped,
//!   including when parsing fails half way.
//! - Nothing here does network I/O; multipart reads the body stream it is given.

mod headers;
mod json;
mod multipart;
mod proto;
mod request;
mod tree;

pub use headers::{canonical_header_name, cookies_from_header};
pub use json::to_go_json;
pub use multipart::{
    multipart_boundary, parse_multipart, Multipart, TempFiles, UploadOptions,
    DEFAULT_MAX_PART_FIELDS_BYTES, MAX_PARTS,
};
pub use request::request_meta;
pub use tree::{parse_urlencoded, DataTree, MAX_DEPTH};

use courser_frame::flags;
use std::fmt;
use std::str::FromStr;

/// Names with their values, in order.
type HeaderList = Vec<(String, Vec<String>)>;

/// Everything about a request that goes into its context (spec 3.2 and 3.3).
///
/// The HTTP front fills it; [`encode_context`] writes it in either codec.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RequestMeta {
    /// Client IP without the port (IPv6 without brackets).
    pub remote_addr: String,
    /// `HTTP/1.1`, `HTTP/2.0` or `HTTP/1.0`.
    pub protocol: &'static str,
    /// Request method.
    pub method: String,
    /// Absolute URI (`http://host/path?query`), CR and LF removed.
    pub uri: String,
    /// Headers with canonical Go names, Host and Transfer-Encoding removed.
    /// Order does not matter: encoders sort by name and merge repeated names.
    pub headers: Vec<(String, Vec<String>)>,
    /// Cookies, URL-unescaped (see [`cookies_from_header`]). When a name repeats
    /// the encoders keep the last value.
    pub cookies: Vec<(String, String)>,
    /// The query string as received, CR and LF removed.
    pub raw_query: String,
    /// True when the body is the JSON data tree of a form (spec 3.4).
    pub parsed: bool,
    /// The upload tree (spec 3.5): `Some(multipart.uploads)` for a parsed
    /// multipart request (`{}` when it had no files), `None` otherwise.
    pub uploads: Option<serde_json::Value>,
    /// Values set by middleware; normally empty.
    pub attributes: Vec<(String, Vec<String>)>,
}

/// The status and headers a worker answered with (spec 3.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseContext {
    /// HTTP status, 100..=599.
    pub status: u16,
    /// Headers in the order the worker sent them, each with all its values.
    pub headers: Vec<(String, Vec<String>)>,
}

/// How request contexts are encoded (`http.codec` in Courser's config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// JSON, as RoadRunner up to 2023.3 sends (frame flag `CODEC_JSON`).
    Json,
    /// Protobuf `http.v1.Request`, as RoadRunner 2024.1 and later sends
    /// (frame flag `CODEC_PROTO`).
    Proto,
}

impl Codec {
    /// The name used in the config: `json` or `proto`.
    pub fn as_str(self) -> &'static str {
        match self {
            Codec::Json => "json",
            Codec::Proto => "proto",
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Codec {
    type Err = PayloadError;

    fn from_str(s: &str) -> Result<Codec, PayloadError> {
        match s {
            "json" => Ok(Codec::Json),
            "proto" | "protobuf" => Ok(Codec::Proto),
            other => Err(PayloadError::UnknownCodec(other.to_string())),
        }
    }
}

impl From<courser_config::HttpCodec> for Codec {
    fn from(c: courser_config::HttpCodec) -> Codec {
        match c {
            courser_config::HttpCodec::Json => Codec::Json,
            courser_config::HttpCodec::Proto => Codec::Proto,
        }
    }
}

/// The frame flags byte for a request encoded with `codec`.
pub fn frame_flags(codec: Codec) -> u8 {
    match codec {
        Codec::Json => flags::CODEC_JSON,
        Codec::Proto => flags::CODEC_PROTO,
    }
}

/// Appends the request context for `meta` to `out` in the given codec.
///
/// JSON follows spec 3.3 (keys in RoadRunner's order, `uploads` null without
/// uploads, `attributes` null when empty); protobuf is `http.v1.Request` with
/// fields in number order, defaults left out and map entries sorted by key.
pub fn encode_context(meta: &RequestMeta, codec: Codec, out: &mut Vec<u8>) {
    match codec {
        Codec::Json => json::encode_request(meta, out),
        Codec::Proto => proto::encode_request(meta, out),
    }
}

/// Decodes a request context (the other direction of [`encode_context`]; used
/// by tests and tools). The codec is taken from the frame flags.
pub fn decode_request(frame_flags: u8, context: &[u8]) -> Result<RequestMeta, PayloadError> {
    if frame_flags & flags::CODEC_PROTO != 0 {
        proto::decode_request(context)
    } else {
        json::decode_request(context)
    }
}

/// Decodes a worker's response context.
///
/// With `CODEC_PROTO` in the flags it is protobuf `http.v1.Response`; otherwise
/// JSON (`{"status":N,"headers":{…}}`, flags `CODEC_JSON` from current PHP
/// libraries or 0 from legacy ones). An empty context means "no status or
/// headers in this frame" and gives `Ok(None)`.
pub fn decode_response(
    frame_flags: u8,
    context: &[u8],
) -> Result<Option<ResponseContext>, PayloadError> {
    if context.is_empty() {
        return Ok(None);
    }
    let (status, headers) = if frame_flags & flags::CODEC_PROTO != 0 {
        proto::decode_response(context)?
    } else {
        json::decode_response(context)?
    };
    let status = match u16::try_from(status) {
        Ok(s) if (100..=599).contains(&s) => s,
        _ => return Err(PayloadError::Status(status)),
    };
    Ok(Some(ResponseContext {
        status,
        headers: headers::dedup_last(headers),
    }))
}

/// Appends a response context to `out` (what a PHP worker sends; for tests and
/// fake workers). Headers are written in the given order.
pub fn encode_response(resp: &ResponseContext, codec: Codec, out: &mut Vec<u8>) {
    match codec {
        Codec::Json => json::encode_response(resp, out),
        Codec::Proto => proto::encode_response(resp, out),
    }
}

/// Why a payload could not be encoded, decoded or parsed.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// A codec name in the config is not known.
    #[error("unknown codec {0:?}; use \"json\" or \"proto\" (or \"protobuf\")")]
    UnknownCodec(String),
    /// A protobuf context is malformed.
    #[error("the {message} context is not valid protobuf: {problem} at byte {offset}; is the worker using a matching spiral/roadrunner-http version?")]
    Proto {
        /// `http.v1.Request` or `http.v1.Response`.
        message: &'static str,
        /// What is wrong.
        problem: &'static str,
        /// Where, counted from the start of the context.
        offset: usize,
    },
    /// A JSON context is malformed.
    #[error("the {what} context is not valid JSON: {source}")]
    Json {
        /// `request` or `response`.
        what: &'static str,
        /// The parser's complaint.
        source: serde_json::Error,
    },
    /// A context decoded but a field has the wrong shape.
    #[error("the {what} context has a bad {field:?} field: {problem}")]
    Field {
        /// `request` or `response`.
        what: &'static str,
        /// The field name.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The worker's status is not an HTTP status.
    #[error("unknown status code from worker: {0}; a status must be between 100 and 599")]
    Status(i64),
    /// The request names a protocol this server does not speak.
    #[error(
        "unknown protocol {0:?} in the request context; expected HTTP/1.0, HTTP/1.1 or HTTP/2.0"
    )]
    Protocol(String),
    /// A form field name is used both for a value and for a group of fields.
    #[error("invalid multiple values to key {key:?}: the form uses this name both for a value and for a group of fields (like `a=1` together with `a[b]=2`)")]
    MultipleValues {
        /// The field name as the client sent it.
        key: String,
    },
    /// The multipart body is malformed or could not be read.
    #[error("cannot read the multipart/form-data body: {}", error_chain(.0))]
    Multipart(#[from] multer::Error),
    /// The non-file fields of a multipart body are too large.
    #[error("the multipart form's non-file fields exceed {limit} bytes; send large values as file parts")]
    FieldsTooLarge {
        /// The limit in bytes (names and values together).
        limit: usize,
    },
    /// The multipart body has too many parts.
    #[error("the multipart body has more than {limit} parts; raise http.uploads.max_parts to accept more")]
    TooManyParts {
        /// The limit.
        limit: usize,
    },
}

/// An error and its sources, joined with ": " (multer's messages leave the
/// cause out, e.g. the I/O error behind "failed to read stream").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
