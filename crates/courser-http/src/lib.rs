//! The HTTP front: accepts HTTP/1.1 and HTTP/2 (h2c), turns each request into a
//! RoadRunner worker payload (spec section 3), runs it on the `http` pool and
//! writes the worker's response back.
//!
//! Invariants:
//! - Every error becomes a status code and one log line; no connection is dropped
//!   without an answer. Overload (no free worker, queue full) is 503 with
//!   `Retry-After`; a worker failure is `internal_error_code` without PHP detail.
//! - This crate defines the HTTP payload shapes; the pool sees only bytes.

pub mod headers;
pub mod payload;
pub mod static_files;

mod conn;
mod fcgi;
mod guard;
mod handler;
mod proxy;
mod server;
mod tls;

pub use proxy::TrustedProxies;
pub use server::HttpServer;
pub use tls::TlsError;

use courser_config::{HttpCodec, HttpLimits};

/// Called once per request with its status and how long producing the head took.
pub type RequestObserver = std::sync::Arc<dyn Fn(u16, std::time::Duration) + Send + Sync>;

/// The response body type of every handler in this crate.
pub type Body = http_body_util::combinators::BoxBody<bytes::Bytes, std::io::Error>;

/// HTTP front settings, validated from `http.*` once at startup.
#[derive(Clone)]
pub struct HttpOptions {
    /// `host:port` to listen on for plain HTTP (none: HTTPS only).
    pub address: Option<String>,
    /// Status for worker failures (`http.internal_error_code`).
    pub internal_error_code: u16,
    /// Largest request body in bytes (`http.max_request_size`).
    pub max_request_size: u64,
    /// Show worker error details in responses (`http.pool.debug`).
    pub debug: bool,
    /// Log one line per request.
    pub access_logs: bool,
    /// Context codec sent to PHP.
    pub codec: HttpCodec,
    /// Compress responses (`gzip` in `http.middleware`): gzip, brotli or zstd.
    pub compression: bool,
    /// Header, body and idle limits.
    pub limits: HttpLimits,
    /// HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
    /// HTTPS listener, when configured.
    pub ssl: Option<courser_config::SslConfig>,
    /// FastCGI listener (`tcp://host:port` or `unix:///path`), when configured.
    pub fcgi: Option<String>,
    /// `http.middleware`, in order.
    pub middleware: Vec<String>,
    /// `http.static` (used when `static` is in the middleware).
    pub static_files: Option<courser_config::StaticConfig>,
    /// `http.headers` (used when `headers` is in the middleware).
    pub headers: Option<courser_config::HeadersConfig>,
    /// `http.uploads`.
    pub uploads: courser_config::UploadsConfig,
    /// `http.trusted_subnets` (used when `proxy_ip_parser` is in the middleware).
    pub trusted_subnets: Vec<String>,
    /// `http.raw_body`: never parse form bodies.
    pub raw_body: bool,
    /// Told the status and duration of every request (metrics).
    pub observer: Option<RequestObserver>,
}

/// Why the HTTP front could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The listen address is taken or invalid.
    #[error("cannot listen on http.address {address}: {source}")]
    Bind {
        /// The address.
        address: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// TLS could not be set up.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The static middleware is misconfigured.
    #[error(transparent)]
    Static(#[from] static_files::StaticError),
    /// The headers middleware is misconfigured.
    #[error(transparent)]
    Headers(#[from] headers::HeadersError),
    /// `http.trusted_subnets` holds something that is not an IP range.
    #[error("{0}")]
    TrustedSubnets(String),
}
