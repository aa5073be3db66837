//! The `headers` middleware (`http.headers.*`, spec section 5.1): fixed
//! request and response headers, and CORS.
//!
//! RoadRunner builds this middleware on the `rs/cors` Go package; this module
//! follows its behaviour:
//! - A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`)
//!   is answered here with `options_success_status` (default 200) and never
//!   reaches PHP, also when the origin, method or headers are not allowed (the
//!   answer then carries no `Access-Control-Allow-*` headers, so the browser
//!   blocks the call). An allowed preflight echoes the requested method and
//!   headers, and sends `Max-Age` when `max_age > 0`.
//! - `allowed_origin` is a comma list; `*` allows every origin, and an entry
//!   may hold one `*` wildcard (`https://*.example.com`). Origins compare
//!   case-insensitively. `allowed_origin_regex` allows the origins it
//!   matches too. With neither set, every origin is allowed.
//! - `allowed_methods` defaults to `GET,POST,HEAD`; `allowed_headers`
//!   defaults to `Accept, Content-Type, X-Requested-With`; `Origin` is always
//!   allowed and `*` allows every header.
//! - A disallowed origin gets no CORS headers.
//!
//! One deliberate difference: with `allow_credentials`, an allowed origin is
//! echoed even when `allowed_origin` is `*`, because browsers reject
//! `Access-Control-Allow-Origin: *` on a credentialed response (`rs/cors`
//! sends `*`, which breaks such calls). `Vary: Origin` is added to every
//! response whose CORS headers depend on the origin, i.e. unless the answer
//! is a plain `*`.
//!
//! Request headers are appended (RoadRunner's `Header.Add`). Response headers
//! are set before PHP's own, as RoadRunner does: a configured header comes
//! first and PHP's values for the same name follow it.

pub use crate::Body;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body_util::{BodyExt, Empty};

/// `http.headers.*`, as validated by the config crate.
pub use courser_config::HeadersConfig as HeadersOptions;

/// `http.headers.cors.*`, as validated by the config crate.
pub use courser_config::CorsConfig as CorsOptions;

/// Why the `headers` middleware could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum HeadersError {
    /// A configured header name is invalid.
    #[error("http.headers.{section}: {name:?} is not a valid header name")]
    HeaderName {
        /// `request` or `response`.
        section: &'static str,
        /// The name as configured.
        name: String,
    },
    /// A configured header value is invalid.
    #[error("http.headers.{section}.{name}: {value:?} is not a valid header value (control characters are not allowed)")]
    HeaderValue {
        /// `request` or `response`.
        section: &'static str,
        /// The header name.
        name: String,
        /// The value as configured.
        value: String,
    },
    /// The origin regex does not compile.
    #[error("http.headers.cors.allowed_origin_regex {pattern:?} is not a valid regular expression: {source}")]
    OriginRegex {
        /// The pattern as configured.
        pattern: String,
        /// What the regex compiler said.
        source: regex::Error,
    },
    /// The preflight status is not a usable HTTP status.
    #[error("http.headers.cors.options_success_status {status} is not an HTTP status code between 200 and 299")]
    Status {
        /// The configured status.
        status: u16,
    },
    /// A CORS list cannot be sent as a header value.
    #[error("http.headers.cors.{key}: {value:?} cannot be sent as a header value")]
    CorsValue {
        /// The key under `http.headers.cors`.
        key: &'static str,
        /// The value as configured.
        value: String,
    },
}

/// One `allowed_origin` entry.
#[derive(Debug)]
enum OriginRule {
    Exact(String),
    Wildcard { prefix: String, suffix: String },
}

impl OriginRule {
    fn matches(&self, origin: &str) -> bool {
        match self {
            OriginRule::Exact(o) => o == origin,
            OriginRule::Wildcard { prefix, suffix } => {
                origin.len() >= prefix.len() + suffix.len()
                    && origin.starts_with(prefix.as_str())
                    && origin.ends_with(suffix.as_str())
            }
        }
    }
}

/// CORS settings compiled once.
#[derive(Debug)]
struct Cors {
    any_origin: bool,
    origins: Vec<OriginRule>,
    regex: Option<regex::Regex>,
    /// Upper-cased; `None` allows every method.
    methods: Option<Vec<String>>,
    /// Lower-cased; `None` allows every header.
    headers: Option<Vec<String>>,
    credentials: bool,
    exposed: Option<HeaderValue>,
    max_age: Option<HeaderValue>,
    status: StatusCode,
    debug: bool,
}

impl Cors {
    fn new(o: &CorsOptions) -> Result<Cors, HeadersError> {
        let entries = list(&o.allowed_origin);
        let regex = match o.allowed_origin_regex.as_deref().map(str::trim) {
            Some(p) if !p.is_empty() => {
                Some(
                    regex::Regex::new(p).map_err(|source| HeadersError::OriginRegex {
                        pattern: p.to_string(),
                        source,
                    })?,
                )
            }
            _ => None,
        };
        let any_origin =
            entries.iter().any(|e| e == "*") || (entries.is_empty() && regex.is_none());
        let origins = entries
            .iter()
            .filter(|e| e.as_str() != "*")
            .map(|e| {
                let e = e.to_lowercase();
                match e.split_once('*') {
                    Some((prefix, suffix)) => OriginRule::Wildcard {
                        prefix: prefix.to_string(),
                        suffix: suffix.to_string(),
                    },
                    None => OriginRule::Exact(e),
                }
            })
            .collect();
        let methods = list(&o.allowed_methods);
        let methods = if methods.iter().any(|m| m == "*") {
            None
        } else if methods.is_empty() {
            Some(vec!["GET".into(), "POST".into(), "HEAD".into()])
        } else {
            Some(methods.iter().map(|m| m.to_uppercase()).collect())
        };
        let headers = list(&o.allowed_headers);
        let headers = if headers.iter().any(|h| h == "*") {
            None
        } else {
            let mut h: Vec<String> = if headers.is_empty() {
                vec![
                    "accept".into(),
                    "content-type".into(),
                    "x-requested-with".into(),
                ]
            } else {
                headers.iter().map(|h| h.to_lowercase()).collect()
            };
            h.push("origin".into());
            Some(h)
        };
        let exposed = list(&o.exposed_headers);
        let exposed = if exposed.is_empty() {
            None
        } else {
            let joined = exposed.join(", ");
            Some(
                HeaderValue::from_str(&joined).map_err(|_| HeadersError::CorsValue {
                    key: "exposed_headers",
                    value: o.exposed_headers.clone(),
                })?,
            )
        };
        let status = if o.options_success_status == 0 {
            StatusCode::OK
        } else {
            match StatusCode::from_u16(o.options_success_status) {
                Ok(s) if s.is_success() => s,
                _ => {
                    return Err(HeadersError::Status {
                        status: o.options_success_status,
                    })
                }
            }
        };
        Ok(Cors {
            any_origin,
            origins,
            regex,
            methods,
            headers,
            credentials: o.allow_credentials,
            exposed,
            max_age: (o.max_age > 0).then(|| HeaderValue::from(o.max_age)),
            status,
            debug: o.debug,
        })
    }

    /// Whether the `Access-Control-Allow-Origin` answer depends on the origin.
    fn varies(&self) -> bool {
        !self.any_origin || self.credentials
    }

    fn origin_allowed(&self, origin: &str) -> bool {
        if self.any_origin {
            return true;
        }
        let lower = origin.to_lowercase();
        self.origins.iter().any(|r| r.matches(&lower))
            || self.regex.as_ref().is_some_and(|r| r.is_match(origin))
    }

    fn method_allowed(&self, method: &str) -> bool {
        let method = method.trim();
        if method.eq_ignore_ascii_case("OPTIONS") {
            return true;
        }
        match &self.methods {
            None => true,
            Some(m) => m.iter().any(|a| a.eq_ignore_ascii_case(method)),
        }
    }

    fn headers_allowed(&self, requested: &str) -> bool {
        let Some(allowed) = &self.headers else {
            return true;
        };
        requested
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .all(|h| allowed.iter().any(|a| a.eq_ignore_ascii_case(h)))
    }

    /// The `Access-Control-Allow-Origin` value for an allowed origin.
    fn allow_origin(&self, origin: &HeaderValue) -> HeaderValue {
        if self.any_origin && !self.credentials {
            HeaderValue::from_static("*")
        } else {
            origin.clone()
        }
    }
}

/// The `headers` middleware, built once at startup.
#[derive(Debug)]
pub struct Headers {
    request: Vec<(HeaderName, HeaderValue)>,
    response: Vec<(HeaderName, HeaderValue)>,
    cors: Option<Cors>,
}

impl Headers {
    /// Validates header names and values and compiles the origin regex.
    pub fn new(opts: HeadersOptions) -> Result<Headers, HeadersError> {
        Ok(Headers {
            request: header_pairs("request", &opts.request)?,
            response: header_pairs("response", &opts.response)?,
            cors: opts.cors.as_ref().map(Cors::new).transpose()?,
        })
    }

    /// Adds the configured request headers (`http.headers.request`), after
    /// any the client sent with the same name.
    pub fn apply_request(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.request {
            headers.append(name.clone(), value.clone());
        }
    }

    /// Answers a CORS preflight without PHP. `None` when CORS is off or the
    /// request is not a preflight (OPTIONS with `Origin` and
    /// `Access-Control-Request-Method`). The response already carries the
    /// configured response headers: do not pass it to
    /// [`Headers::apply_response`].
    pub fn preflight(&self, method: &Method, headers: &HeaderMap) -> Option<Response<Body>> {
        let cors = self.cors.as_ref()?;
        if method != Method::OPTIONS {
            return None;
        }
        let origin = headers.get(header::ORIGIN)?;
        let requested_method = headers.get(header::ACCESS_CONTROL_REQUEST_METHOD)?;
        let mut resp = Response::new(
            Empty::<Bytes>::new()
                .map_err(|never| match never {})
                .boxed(),
        );
        *resp.status_mut() = cors.status;
        let h = resp.headers_mut();
        self.set_response_headers(h);
        for v in [
            "Origin",
            "Access-Control-Request-Method",
            "Access-Control-Request-Headers",
        ] {
            h.append(header::VARY, HeaderValue::from_static(v));
        }
        let origin_str = origin.to_str().unwrap_or("");
        if !cors.origin_allowed(origin_str) {
            if cors.debug {
                tracing::debug!(
                    origin = origin_str,
                    "cors: preflight refused, the origin is not allowed"
                );
            }
            return Some(resp);
        }
        let method_str = requested_method.to_str().unwrap_or("");
        if !cors.method_allowed(method_str) {
            if cors.debug {
                tracing::debug!(
                    origin = origin_str,
                    method = method_str,
                    "cors: preflight refused, the method is not allowed"
                );
            }
            return Some(resp);
        }
        let requested_headers = headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS);
        let requested_str = requested_headers
            .map(|v| v.to_str().unwrap_or("\u{0}"))
            .unwrap_or("");
        if !cors.headers_allowed(requested_str) {
            if cors.debug {
                tracing::debug!(
                    origin = origin_str,
                    headers = requested_str,
                    "cors: preflight refused, a header is not allowed"
                );
            }
            return Some(resp);
        }
        h.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            cors.allow_origin(origin),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            requested_method.clone(),
        );
        if let Some(v) = requested_headers.filter(|v| !v.is_empty()) {
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v.clone());
        }
        if cors.credentials {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        if let Some(age) = &cors.max_age {
            h.insert(header::ACCESS_CONTROL_MAX_AGE, age.clone());
        }
        if cors.debug {
            tracing::debug!(
                origin = origin_str,
                method = method_str,
                "cors: preflight allowed"
            );
        }
        Some(resp)
    }

    /// Adds the configured response headers and, for an allowed `Origin`,
    /// the CORS headers (they replace any PHP sent).
    pub fn apply_response(&self, req_headers: &HeaderMap, resp_headers: &mut HeaderMap) {
        self.set_response_headers(resp_headers);
        let Some(cors) = &self.cors else {
            return;
        };
        if cors.varies() && !vary_has(resp_headers, "origin") {
            resp_headers.append(header::VARY, HeaderValue::from_static("Origin"));
        }
        let Some(origin) = req_headers.get(header::ORIGIN) else {
            return;
        };
        let origin_str = origin.to_str().unwrap_or("");
        if !cors.origin_allowed(origin_str) {
            if cors.debug {
                tracing::debug!(
                    origin = origin_str,
                    "cors: the origin is not allowed; no CORS headers"
                );
            }
            return;
        }
        resp_headers.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            cors.allow_origin(origin),
        );
        if let Some(exposed) = &cors.exposed {
            resp_headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, exposed.clone());
        }
        if cors.credentials {
            resp_headers.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        if cors.debug {
            tracing::debug!(origin = origin_str, "cors: the origin is allowed");
        }
    }

    /// Puts each configured response header first, keeping any values
    /// already present after it (RoadRunner sets them before PHP answers).
    fn set_response_headers(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.response {
            let existing: Vec<HeaderValue> = headers
                .get_all(name)
                .iter()
                .filter(|v| *v != value)
                .cloned()
                .collect();
            headers.insert(name.clone(), value.clone());
            for v in existing {
                headers.append(name.clone(), v);
            }
        }
    }
}

fn vary_has(headers: &HeaderMap, name: &str) -> bool {
    headers.get_all(header::VARY).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',')
                .any(|p| p.trim() == "*" || p.trim().eq_ignore_ascii_case(name))
        })
    })
}

/// Splits a comma list, trimming entries and dropping empty ones.
fn list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::to_string)
        .collect()
}

fn header_pairs(
    section: &'static str,
    pairs: &[(String, String)],
) -> Result<Vec<(HeaderName, HeaderValue)>, HeadersError> {
    pairs
        .iter()
        .map(|(name, value)| {
            let n =
                HeaderName::from_bytes(name.as_bytes()).map_err(|_| HeadersError::HeaderName {
                    section,
                    name: name.clone(),
                })?;
            let v = HeaderValue::from_str(value).map_err(|_| HeadersError::HeaderValue {
                section,
                name: name.clone(),
                value: value.clone(),
            })?;
            Ok((n, v))
        })
        .collect()
}
