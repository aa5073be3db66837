//! Typed sub-sections of `http`: uploads, static, headers (with CORS), ssl,
//! http2, fcgi, and Courser's own limits and timeouts.

use std::path::PathBuf;
use std::time::Duration;

use serde_yaml::Value;

use crate::error::{ConfigError, Warning};
use crate::section::{invalid, Section};
use crate::tree::{key_text, scalar_text, untag};

/// `http.uploads`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadsConfig {
    /// Where uploaded files are streamed (default: the OS temp dir).
    pub dir: PathBuf,
    /// Refused extensions, lower-case with the dot (".php").
    pub forbid: Vec<String>,
    /// When not empty, the only accepted extensions.
    pub allow: Vec<String>,
    /// Most parts (fields and files) in one multipart body (Courser's
    /// `http.uploads.max_parts`, default 1000); more get 400 with the reason.
    pub max_parts: usize,
}

/// Default of `http.uploads.max_parts`.
pub const DEFAULT_MAX_PARTS: usize = 1000;

/// `http.static` (with `static` in `http.middleware`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticConfig {
    /// The directory served (default ".").
    pub dir: PathBuf,
    /// Extensions never served as files.
    pub forbid: Vec<String>,
    /// When not empty, the only extensions served.
    pub allow: Vec<String>,
    /// Send an ETag.
    pub calculate_etag: bool,
    /// Make the ETag weak.
    pub weak: bool,
    /// Headers added to the request (kept for compatibility).
    pub request: Vec<(String, String)>,
    /// Headers added to every static response.
    pub response: Vec<(String, String)>,
}

/// `http.headers.cors`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsConfig {
    /// "*" or a comma-separated list of origins.
    pub allowed_origin: String,
    /// A regular expression for allowed origins.
    pub allowed_origin_regex: Option<String>,
    /// Allowed request headers.
    pub allowed_headers: String,
    /// Allowed methods.
    pub allowed_methods: String,
    /// Allow credentials.
    pub allow_credentials: bool,
    /// Headers exposed to scripts.
    pub exposed_headers: String,
    /// Preflight cache time in seconds.
    pub max_age: u32,
    /// Status of a successful preflight (default 200).
    pub options_success_status: u16,
    /// Log CORS decisions.
    pub debug: bool,
}

impl Default for CorsConfig {
    fn default() -> Self {
        CorsConfig {
            allowed_origin: String::new(),
            allowed_origin_regex: None,
            allowed_headers: String::new(),
            allowed_methods: String::new(),
            allow_credentials: false,
            exposed_headers: String::new(),
            max_age: 0,
            options_success_status: 200,
            debug: false,
        }
    }
}

/// `http.headers` (with `headers` in `http.middleware`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeadersConfig {
    /// Headers added to every request before PHP sees it.
    pub request: Vec<(String, String)>,
    /// Headers added to every response.
    pub response: Vec<(String, String)>,
    /// CORS handling.
    pub cors: Option<CorsConfig>,
}

/// `http.ssl.client_auth_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client certificate asked for.
    None,
    /// Asked for, not required, not verified.
    Request,
    /// Required, not verified.
    RequireAny,
    /// Verified when given.
    VerifyIfGiven,
    /// Required and verified (mTLS).
    RequireAndVerify,
}

/// `http.ssl`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SslConfig {
    /// `host:port` for HTTPS (default 127.0.0.1:443).
    pub address: String,
    /// Redirect plain HTTP to HTTPS (308) and send HSTS.
    pub redirect: bool,
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
    /// CA bundle for client certificates.
    pub root_ca: Option<PathBuf>,
    /// Client certificate policy.
    pub client_auth: ClientAuth,
}

/// `http.http2`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Http2Config {
    /// Cleartext HTTP/2 (prior knowledge) on `http.address`.
    pub h2c: bool,
    /// Streams per connection.
    pub max_concurrent_streams: u32,
}

/// How the request context is encoded for PHP (`http.codec`, a Courser key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpCodec {
    /// JSON context (RoadRunner up to 2023.3; every PHP library reads it).
    Json,
    /// protobuf `http.v1.Request` (RoadRunner 2024.1+).
    Proto,
}

/// Courser's own limits on the HTTP edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLimits {
    /// Time allowed to receive a request's headers (slowloris guard).
    pub read_header_timeout: Duration,
    /// Time allowed to receive a request's whole body, counted from the end
    /// of its headers (`http.read_timeout`; slow-body guard). RoadRunner's Go
    /// server has a fixed 5 minute read timeout; this is the same default.
    pub read_timeout: Duration,
    /// How long an idle keep-alive connection stays open.
    pub idle_timeout: Duration,
    /// Most request headers accepted.
    pub max_header_count: usize,
    /// Largest request head (request line + headers) in bytes.
    pub max_header_size: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            read_header_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(300),
            idle_timeout: Duration::from_secs(75),
            max_header_count: 100,
            max_header_size: 64 * 1024,
        }
    }
}

/// Everything under `http` besides the basics and the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpExtras {
    /// Uploads.
    pub uploads: UploadsConfig,
    /// Static files, when configured.
    pub static_files: Option<StaticConfig>,
    /// Header and CORS rules, when configured.
    pub headers: Option<HeadersConfig>,
    /// HTTPS, when configured.
    pub ssl: Option<SslConfig>,
    /// HTTP/2 settings.
    pub http2: Http2Config,
    /// FastCGI listen address (`tcp://…` or `unix://…`), when configured.
    pub fcgi: Option<String>,
    /// Context codec.
    pub codec: HttpCodec,
    /// Edge limits.
    pub limits: HttpLimits,
}

fn extensions(s: &Section<'_>, name: &str) -> Result<Vec<String>, ConfigError> {
    let list = s.string_list(name)?.unwrap_or_default();
    let mut out = Vec::with_capacity(list.len());
    for e in list {
        let e = e.trim().to_ascii_lowercase();
        if e.is_empty() {
            continue;
        }
        out.push(if e.starts_with('.') {
            e
        } else {
            format!(".{e}")
        });
    }
    Ok(out)
}

fn header_map(s: &Section<'_>, name: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let Some(value) = s.get(name) else {
        return Ok(Vec::new());
    };
    let key = s.key(name);
    let Value::Mapping(map) = value else {
        return Err(invalid(
            &key,
            value,
            "a mapping of header names to values, e.g. {X-Frame-Options: DENY}",
        ));
    };
    let mut out = Vec::with_capacity(map.len());
    for (k, v) in map {
        let name = key_text(k);
        let valid_name = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !valid_name {
            return Err(invalid(
                &format!("{key}.{name}"),
                k,
                "a valid HTTP header name",
            ));
        }
        let val = scalar_text(untag(v))
            .ok_or_else(|| invalid(&format!("{key}.{name}"), v, "a string"))?;
        if val.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(invalid(
                &format!("{key}.{name}"),
                v,
                "a header value without line breaks",
            ));
        }
        out.push((name, val));
    }
    Ok(out)
}

fn path_of(s: &Section<'_>, name: &str) -> Result<Option<PathBuf>, ConfigError> {
    Ok(s.non_empty_string(name)?.map(PathBuf::from))
}

pub(crate) fn parse_extras(
    s: &Section<'_>,
    warnings: &mut Vec<Warning>,
) -> Result<HttpExtras, ConfigError> {
    let up_path = s.key("uploads");
    let up = Section::new(&up_path, s.raw("uploads"))?;
    let uploads = UploadsConfig {
        dir: path_of(&up, "dir")?.unwrap_or_else(std::env::temp_dir),
        forbid: extensions(&up, "forbid")?,
        allow: extensions(&up, "allow")?,
        max_parts: up
            .uint("max_parts", "a positive whole number of parts")?
            .filter(|n| *n > 0)
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
            .unwrap_or(DEFAULT_MAX_PARTS),
    };

    let static_files = if s.get("static").is_some() {
        let p = s.key("static");
        let st = Section::new(&p, s.raw("static"))?;
        Some(StaticConfig {
            dir: path_of(&st, "dir")?.unwrap_or_else(|| PathBuf::from(".")),
            forbid: extensions(&st, "forbid")?,
            allow: extensions(&st, "allow")?,
            calculate_etag: st.boolean("calculate_etag")?.unwrap_or(false),
            weak: st.boolean("weak")?.unwrap_or(false),
            request: header_map(&st, "request")?,
            response: header_map(&st, "response")?,
        })
    } else {
        None
    };

    let headers = if s.get("headers").is_some() {
        let p = s.key("headers");
        let h = Section::new(&p, s.raw("headers"))?;
        let cors = if h.get("cors").is_some() {
            let cp = h.key("cors");
            let c = Section::new(&cp, h.raw("cors"))?;
            let status_expected = "an HTTP status code from 200 to 299 (default 200)";
            Some(CorsConfig {
                allowed_origin: c.string("allowed_origin")?.unwrap_or_default(),
                allowed_origin_regex: c.non_empty_string("allowed_origin_regex")?,
                allowed_headers: c.string("allowed_headers")?.unwrap_or_default(),
                allowed_methods: c.string("allowed_methods")?.unwrap_or_default(),
                allow_credentials: c.boolean("allow_credentials")?.unwrap_or(false),
                exposed_headers: c.string("exposed_headers")?.unwrap_or_default(),
                max_age: match c.uint("max_age", "a number of seconds")? {
                    Some(v) => u32::try_from(v).map_err(|_| {
                        invalid(&c.key("max_age"), &Value::from(v), "a number of seconds")
                    })?,
                    None => 0,
                },
                options_success_status: match c.uint("options_success_status", status_expected)? {
                    None | Some(0) => 200,
                    Some(v @ 200..=299) => v as u16,
                    Some(v) => {
                        return Err(invalid(
                            &c.key("options_success_status"),
                            &Value::from(v),
                            status_expected,
                        ))
                    }
                },
                debug: c.boolean("debug")?.unwrap_or(false),
            })
        } else {
            None
        };
        Some(HeadersConfig {
            request: header_map(&h, "request")?,
            response: header_map(&h, "response")?,
            cors,
        })
    } else {
        None
    };

    let ssl = if s.get("ssl").is_some() {
        let p = s.key("ssl");
        let t = Section::new(&p, s.raw("ssl"))?;
        let need = |name: &str, hint: &str| -> Result<PathBuf, ConfigError> {
            path_of(&t, name)?.ok_or_else(|| ConfigError::Missing {
                key: t.key(name),
                hint: hint.to_string(),
            })
        };
        let auth_expected = "one of no_client_cert, request_client_cert, require_any_client_cert, verify_client_cert_if_given, require_and_verify_client_cert";
        let client_auth = match t.string("client_auth_type")?.as_deref().map(str::trim) {
            None | Some("") | Some("no_client_cert") | Some("no_client_certs") => ClientAuth::None,
            Some("request_client_cert") => ClientAuth::Request,
            Some("require_any_client_cert") => ClientAuth::RequireAny,
            Some("verify_client_cert_if_given") => ClientAuth::VerifyIfGiven,
            Some("require_and_verify_client_cert") => ClientAuth::RequireAndVerify,
            Some(other) => {
                return Err(invalid(
                    &t.key("client_auth_type"),
                    &Value::from(other),
                    auth_expected,
                ))
            }
        };
        let root_ca = path_of(&t, "root_ca")?;
        if matches!(
            client_auth,
            ClientAuth::VerifyIfGiven | ClientAuth::RequireAndVerify
        ) && root_ca.is_none()
        {
            return Err(ConfigError::Missing {
                key: t.key("root_ca"),
                hint: "the CA bundle (PEM) that signs client certificates; verifying them needs it"
                    .into(),
            });
        }
        Some(SslConfig {
            address: t
                .non_empty_string("address")?
                .unwrap_or_else(|| "127.0.0.1:443".into()),
            redirect: t.boolean("redirect")?.unwrap_or(false),
            cert: need("cert", "the certificate chain file (PEM) for HTTPS")?,
            key: need("key", "the private key file (PEM) for HTTPS")?,
            root_ca,
            client_auth,
        })
    } else {
        None
    };

    let h2p = s.key("http2");
    let h2 = Section::new(&h2p, s.raw("http2"))?;
    let http2 = Http2Config {
        h2c: h2.boolean("h2c")?.unwrap_or(false),
        max_concurrent_streams: match h2
            .uint("max_concurrent_streams", "a positive integer (default 128)")?
        {
            None | Some(0) => 128,
            Some(v) => u32::try_from(v).unwrap_or(u32::MAX),
        },
    };

    let fcgi = if s.get("fcgi").is_some() {
        let p = s.key("fcgi");
        let f = Section::new(&p, s.raw("fcgi"))?;
        let addr = f.non_empty_string("address")?.ok_or_else(|| ConfigError::Missing {
            key: f.key("address"),
            hint: "where to accept FastCGI, e.g. \"tcp://127.0.0.1:9000\" or \"unix:///run/courser.sock\"".into(),
        })?;
        if !(addr.starts_with("tcp://") || addr.starts_with("unix://")) {
            return Err(invalid(
                &f.key("address"),
                &Value::from(addr.as_str()),
                "\"tcp://host:port\" or \"unix:///path.sock\"",
            ));
        }
        Some(addr)
    } else {
        None
    };

    let codec = match s.string("codec")?.as_deref().map(str::trim) {
        None | Some("") | Some("json") => HttpCodec::Json,
        Some("proto") | Some("protobuf") => HttpCodec::Proto,
        Some(other) => {
            return Err(invalid(
                &s.key("codec"),
                &Value::from(other),
                "json (default) or proto",
            ))
        }
    };

    let d = HttpLimits::default();
    let positive = "a positive integer";
    let limits = HttpLimits {
        read_header_timeout: s
            .duration("read_header_timeout", warnings)?
            .filter(|t| !t.is_zero())
            .unwrap_or(d.read_header_timeout),
        read_timeout: s
            .duration("read_timeout", warnings)?
            .filter(|t| !t.is_zero())
            .unwrap_or(d.read_timeout),
        idle_timeout: s
            .duration("idle_timeout", warnings)?
            .filter(|t| !t.is_zero())
            .unwrap_or(d.idle_timeout),
        max_header_count: s
            .uint("max_header_count", positive)?
            .filter(|&v| v > 0)
            .map_or(d.max_header_count, |v| v as usize),
        max_header_size: s
            .uint("max_header_size", "a positive number of kilobytes")?
            .filter(|&v| v > 0)
            .map_or(d.max_header_size, |kb| (kb as usize).saturating_mul(1024)),
    };

    Ok(HttpExtras {
        uploads,
        static_files,
        headers,
        ssl,
        http2,
        fcgi,
        codec,
        limits,
    })
}
