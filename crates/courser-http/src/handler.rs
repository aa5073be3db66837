//! One request: limits, body, context, the pool, and the response (whole or
//! streamed), with every failure turned into a status code and a log line.

use crate::headers::Headers;
use crate::payload::{self, Codec, ResponseContext, TempFiles, UploadOptions};
use crate::server::ConnInfo;
use crate::static_files::{StaticFiles, StaticOptions};
use crate::{Body, HttpError, HttpOptions, TrustedProxies};
use bytes::Bytes;
use courser_pool::{JobError, Payload, Pool, PoolError, Reply};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::Frame;
use std::sync::Arc;
use std::time::Instant;

/// Shared, read-only state of the HTTP front.
pub(crate) struct State {
    pub(crate) opts: HttpOptions,
    pub(crate) pool: Pool,
    /// With `ssl.redirect`: the HTTPS port plain requests are sent to.
    redirect_to: Option<u16>,
    static_files: Option<StaticFiles>,
    headers: Option<Headers>,
    proxies: Option<TrustedProxies>,
    codec: Codec,
    upload_opts: UploadOptions,
}

impl State {
    pub(crate) fn new(
        opts: HttpOptions,
        pool: Pool,
        https_port: Option<u16>,
    ) -> Result<State, HttpError> {
        let redirect_to = if opts.ssl.as_ref().is_some_and(|s| s.redirect) {
            https_port
        } else {
            None
        };
        let enabled = |name: &str| opts.middleware.iter().any(|m| m == name);
        let static_files = match (&opts.static_files, enabled("static")) {
            (Some(c), true) => Some(StaticFiles::new(StaticOptions {
                dir: c.dir.clone(),
                forbid: c.forbid.clone(),
                allow: c.allow.clone(),
                calculate_etag: c.calculate_etag,
                weak: c.weak,
                response_headers: c.response.clone(),
                request_headers: c.request.clone(),
            })?),
            (None, true) => {
                tracing::warn!("http.middleware lists static but there is no http.static section; no files are served");
                None
            }
            _ => None,
        };
        let headers = match (&opts.headers, enabled("headers")) {
            (Some(c), true) => Some(Headers::new(c.clone())?),
            _ => None,
        };
        let proxies = if enabled("proxy_ip_parser") && !opts.trusted_subnets.is_empty() {
            Some(TrustedProxies::new(&opts.trusted_subnets).map_err(HttpError::TrustedSubnets)?)
        } else {
            None
        };
        Ok(State {
            codec: Codec::from(opts.codec),
            upload_opts: UploadOptions::from(&opts.uploads),
            opts,
            pool,
            redirect_to,
            static_files,
            headers,
            proxies,
        })
    }
}

/// 308 to the same host and path on HTTPS.
fn redirect<B>(req: &Request<B>, port: u16) -> Response<Body> {
    let host = req
        .uri()
        .host()
        .map(str::to_string)
        .or_else(|| {
            req.headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(|h| {
                    h.rsplit_once(':')
                        .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
                        .map_or(h, |(h, _)| h)
                        .to_string()
                })
        })
        .unwrap_or_else(|| "localhost".into());
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let location = if port == 443 {
        format!("https://{host}{pq}")
    } else {
        format!("https://{host}:{port}{pq}")
    };
    let mut r = plain(StatusCode::PERMANENT_REDIRECT, "moved to HTTPS\n");
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(http::header::LOCATION, v);
    }
    r
}

/// What the access log needs to know beyond the response itself.
#[derive(Default)]
struct Served {
    pid: Option<u32>,
}

/// A request body the pipeline accepts: hyper's `Incoming`, or a buffered body
/// from the FastCGI front.
pub(crate) trait ReqBody:
    hyper::body::Body<Data = Bytes, Error = Self::E> + Send + 'static
{
    /// The body's error type.
    type E: Into<Box<dyn std::error::Error + Send + Sync>> + Send;
}

impl<B> ReqBody for B
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send,
{
    type E = B::Error;
}

pub(crate) async fn handle<B: ReqBody>(
    state: Arc<State>,
    req: Request<B>,
    conn: ConnInfo,
) -> Response<Body> {
    if !conn.tls {
        if let Some(port) = state.redirect_to {
            return redirect(&req, port);
        }
    }
    let started = Instant::now();
    let peer = conn.peer;
    let method = req.method().clone();
    let uri = req.uri().clone();
    let mut served = Served::default();
    let mut req = req;
    let req_headers = match &state.headers {
        Some(h) => {
            if let Some(pre) = h.preflight(req.method(), req.headers()) {
                return pre;
            }
            h.apply_request(req.headers_mut());
            Some(req.headers().clone())
        }
        None => None,
    };
    // Framing hyper lets through but PHP must never see (request smuggling):
    // refused before anything else, and logged like any other answer.
    let refused = crate::guard::framing_error(&req);
    let static_resp = match (&refused, &state.static_files) {
        (None, Some(st)) => st.serve(req.method(), req.uri(), req.headers()).await,
        _ => None,
    };
    let mut resp = match (refused, static_resp) {
        (Some(r), _) | (None, Some(r)) => r,
        (None, None) => serve(&state, req, &conn, &mut served).await,
    };
    if let (Some(h), Some(rh)) = (&state.headers, &req_headers) {
        h.apply_response(rh, resp.headers_mut());
    }
    if conn.tls && state.redirect_to.is_some() {
        resp.headers_mut().insert(
            http::header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    if let Some(observe) = &state.opts.observer {
        observe(resp.status().as_u16(), started.elapsed());
    }
    if !state.opts.access_logs {
        return resp;
    }
    // Streamed bodies have no size yet when the line is written.
    let bytes = hyper::body::Body::size_hint(resp.body())
        .exact()
        .map_or_else(|| "-".to_string(), |n| n.to_string());
    tracing::info!(
        target: "courser::http::access",
        method = %method,
        uri = %uri,
        status = resp.status().as_u16(),
        bytes = %bytes,
        remote = %peer.ip(),
        elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
        pid = served.pid.unwrap_or(0),
        "http request"
    );
    resp
}

pub(crate) fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed()
}

pub(crate) fn plain(status: StatusCode, text: &str) -> Response<Body> {
    let mut r = Response::new(full(text.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Size of the request line and headers as received (hyper's own buffer limit
/// cannot go below 8 KB, so smaller limits are checked here).
fn head_size<B>(req: &Request<B>) -> usize {
    let uri = req.uri();
    let line = req.method().as_str().len()
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.path_and_query().map_or(1, |p| p.as_str().len())
        + 12;
    req.headers()
        .iter()
        .fold(line, |n, (k, v)| n + k.as_str().len() + v.len() + 4)
}

/// A body that could not be read: over the limit (413) or broken (400). Both
/// close an HTTP/1 connection: the rest of the body is never read, so the
/// next bytes on it cannot be trusted to start a request.
fn body_error(limit: u64, err: &(dyn std::error::Error + 'static)) -> Response<Body> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if e.is::<http_body_util::LengthLimitError>()
            || e.to_string().contains("length limit exceeded")
        {
            return too_large(limit);
        }
        cur = e.source();
    }
    let detail = err.to_string();
    tracing::debug!(error = %detail, "http: reading the request body failed");
    crate::guard::closing(StatusCode::BAD_REQUEST, "could not read the request body\n")
}

/// The body did not arrive within `http.read_timeout` (a slow or stalled
/// client); no worker was taken for it.
fn body_timeout(timeout: std::time::Duration) -> Response<Body> {
    tracing::debug!(
        timeout_ms = timeout.as_millis() as u64,
        "http: the request body did not arrive in time; answering 408"
    );
    crate::guard::closing(
        StatusCode::REQUEST_TIMEOUT,
        "the request body did not arrive within http.read_timeout\n",
    )
}

fn too_large(limit: u64) -> Response<Body> {
    crate::guard::closing(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("request body larger than the limit of {limit} bytes (http.max_request_size)\n"),
    )
}

async fn serve<B: ReqBody>(
    state: &State,
    req: Request<B>,
    conn: &ConnInfo,
    served: &mut Served,
) -> Response<Body> {
    if head_size(&req) > state.opts.limits.max_header_size {
        return plain(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "request head larger than the limit (http.max_header_size)\n",
        );
    }
    let limit = state.opts.max_request_size;
    let declared = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit) {
        return too_large(limit);
    }
    let (parts, body) = req.into_parts();
    let peer = match &state.proxies {
        Some(p) => std::net::SocketAddr::new(
            p.client_ip(conn.peer.ip(), &parts.headers),
            conn.peer.port(),
        ),
        None => conn.peer,
    };
    let mut meta = payload::request_meta(&parts, peer, conn.tls);
    let raw_content_type = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let content_type = raw_content_type.to_ascii_lowercase();
    let skip_body = parts.method == http::Method::HEAD || parts.method == http::Method::OPTIONS;
    let limited = Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX));
    // The whole body is read before a worker is taken, under one deadline: a
    // client trickling its body ties up only its own connection.
    let read_timeout = state.opts.limits.read_timeout;
    let deadline = tokio::time::Instant::now() + read_timeout;
    // Temp files of uploads live until the response is complete.
    let mut uploads: Option<TempFiles> = None;
    let body = if skip_body {
        Bytes::new()
    } else if !state.opts.raw_body && content_type.contains("multipart/form-data") {
        // The boundary is case-sensitive (browsers send `----WebKitFormBoundary…`).
        let Some(boundary) = payload::multipart_boundary(raw_content_type) else {
            return plain(
                StatusCode::BAD_REQUEST,
                "multipart body without a boundary\n",
            );
        };
        let stream = limited.into_data_stream();
        let parsed = tokio::time::timeout_at(
            deadline,
            payload::parse_multipart(stream, &boundary, &state.upload_opts),
        )
        .await;
        let Ok(parsed) = parsed else {
            return body_timeout(read_timeout);
        };
        match parsed {
            Ok(m) => {
                let mut out = Vec::with_capacity(256);
                payload::to_go_json(&m.data, &mut out);
                meta.parsed = true;
                meta.uploads = Some(m.uploads);
                uploads = Some(m.files);
                Bytes::from(out)
            }
            Err(e @ payload::PayloadError::TooManyParts { .. }) => {
                tracing::warn!(error = %e, uri = %meta.uri, "http: refused a multipart body");
                return crate::guard::closing(StatusCode::BAD_REQUEST, &format!("{e}\n"));
            }
            Err(e) => return body_error(limit, &e),
        }
    } else {
        let raw = match tokio::time::timeout_at(deadline, limited.collect()).await {
            Ok(Ok(b)) => b.to_bytes(),
            Ok(Err(e)) => return body_error(limit, e.as_ref()),
            Err(_) => return body_timeout(read_timeout),
        };
        if !state.opts.raw_body && content_type.contains("application/x-www-form-urlencoded") {
            match payload::parse_urlencoded(&raw) {
                Ok(tree) => {
                    meta.parsed = true;
                    let mut out = Vec::with_capacity(raw.len() + 16);
                    if !tree.as_object().is_some_and(|o| o.is_empty()) {
                        payload::to_go_json(&tree, &mut out);
                    }
                    Bytes::from(out)
                }
                Err(e) => {
                    tracing::debug!(error = %e, "http: the form body cannot be parsed");
                    return plain(
                        StatusCode::BAD_REQUEST,
                        &format!("invalid form body: {e}\n"),
                    );
                }
            }
        } else {
            raw
        }
    };
    let mut context = Vec::with_capacity(512);
    payload::encode_context(&meta, state.codec, &mut context);
    let payload = Payload {
        flags: payload::frame_flags(state.codec),
        context: Bytes::from(context),
        body,
    };
    // A request with a safe method (GET, HEAD, OPTIONS: RFC 9110 9.2.1) whose
    // worker crashed before answering anything runs once more on another
    // worker, as nginx's proxy_next_upstream does: it cannot have changed
    // anything the client relies on. Any other method gets the error.
    let label = || format!("{} {}", parts.method, parts.uri);
    let started = if matches!(
        parts.method,
        http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
    ) {
        state
            .pool
            .start_repeatable_job_labeled(payload, label)
            .await
    } else {
        state.pool.start_job_labeled(payload, label).await
    };
    let mut job = match started {
        Ok(j) => j,
        Err(e) => return pool_error(state, &parts.uri, e),
    };
    // Interim (1xx) frames come first; the first other frame carries the head.
    loop {
        let reply = match job.next().await {
            Some(Ok(r)) => r,
            Some(Err(e)) => return pool_error(state, &parts.uri, e),
            None => return error_response(state, "the worker ended the job without a response"),
        };
        let (resp, more) = match reply {
            Reply::Final(r) => (r, false),
            Reply::Chunk(r) => (r, true),
        };
        served.pid = Some(resp.pid);
        let ctx = match payload::decode_response(resp.flags, &resp.context) {
            Ok(Some(c)) => c,
            Ok(None) => ResponseContext {
                status: 200,
                headers: Vec::new(),
            },
            Err(e) => {
                tracing::error!(pid = resp.pid, error = %e, uri = %parts.uri, "http: the worker's response context is invalid");
                return error_response(
                    state,
                    &format!("invalid response context from worker {}: {e}", resp.pid),
                );
            }
        };
        if (100..200).contains(&ctx.status) {
            if ctx.status == 101 {
                tracing::warn!(pid = resp.pid, "http: a worker answered 101 Switching Protocols, which Courser does not support; ignored");
            } else {
                send_interim(conn, parts.version, &ctx).await;
            }
            if !more {
                return error_response(state, "the worker sent only an interim (1xx) response");
            }
            continue;
        }
        let (status, headers, trailers) = match head(&ctx) {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(pid = resp.pid, error = %e, "http: the worker's response head is invalid");
                return error_response(state, &e);
            }
        };
        let body = if more {
            streamed(job, resp.body, trailers, uploads.take())
        } else if trailers.is_empty() {
            full(resp.body)
        } else {
            let frames = vec![Ok(Frame::data(resp.body)), Ok(Frame::trailers(trailers))];
            StreamBody::new(futures_util::stream::iter(frames)).boxed()
        };
        let mut r = Response::new(body);
        *r.status_mut() = status;
        *r.headers_mut() = headers;
        return r;
    }
}

/// Sends a 1xx interim response (e.g. 103 Early Hints) with its own headers.
/// Possible on plain HTTP/1.1; elsewhere (HTTP/2, TLS, FastCGI, HTTP/1.0) it is
/// skipped, because hyper has no server API for interim responses yet.
async fn send_interim(conn: &ConnInfo, version: http::Version, ctx: &ResponseContext) {
    let Some(interim) = conn
        .interim
        .as_ref()
        .filter(|_| version == http::Version::HTTP_11)
    else {
        tracing::debug!(
            status = ctx.status,
            "http: interim response not forwarded on this connection type"
        );
        return;
    };
    let reason = StatusCode::from_u16(ctx.status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Informational");
    let mut head = format!("HTTP/1.1 {} {reason}\r\n", ctx.status);
    for (name, values) in &ctx.headers {
        if HeaderName::from_bytes(name.as_bytes()).is_err() {
            continue;
        }
        for v in values {
            if HeaderValue::from_str(v).is_ok() {
                head.push_str(name);
                head.push_str(": ");
                head.push_str(v);
                head.push_str("\r\n");
            }
        }
    }
    head.push_str("\r\n");
    if let Err(e) = interim.send(head.as_bytes()).await {
        tracing::debug!(error = %e, "http: sending an interim response failed");
    }
}

/// Status, headers and trailers (headers named in `Trailer`, sent after the body).
fn head(ctx: &ResponseContext) -> Result<(StatusCode, HeaderMap, HeaderMap), String> {
    let status = StatusCode::from_u16(ctx.status)
        .map_err(|_| format!("unknown status code from worker: {}", ctx.status))?;
    let trailer_names: Vec<String> = ctx
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("trailer"))
        .flat_map(|(_, v)| {
            v.iter()
                .flat_map(|s| s.split(','))
                .map(|s| s.trim().to_ascii_lowercase())
        })
        .filter(|s| !s.is_empty())
        .collect();
    let mut headers = HeaderMap::with_capacity(ctx.headers.len());
    let mut trailers = HeaderMap::new();
    for (name, values) in &ctx.headers {
        let Ok(hn) = HeaderName::from_bytes(name.as_bytes()) else {
            tracing::warn!(header = %name, "http: the worker sent an invalid header name; dropped");
            continue;
        };
        let target = if trailer_names.iter().any(|t| t == hn.as_str()) {
            &mut trailers
        } else {
            &mut headers
        };
        for v in values {
            match HeaderValue::from_str(v) {
                Ok(v) => {
                    target.append(hn.clone(), v);
                }
                Err(_) => {
                    tracing::warn!(header = %name, "http: the worker sent an invalid header value; dropped")
                }
            }
        }
    }
    Ok((status, headers, trailers))
}

/// A streamed response: the first chunk, then every further chunk as the client
/// takes it (backpressure reaches the worker through the relay). A client that
/// goes away drops the body, which drops the job, which sends the worker STOP.
fn streamed(
    job: courser_pool::Job,
    first: Bytes,
    trailers: HeaderMap,
    uploads: Option<TempFiles>,
) -> Body {
    struct St {
        job: courser_pool::Job,
        _uploads: Option<TempFiles>,
        first: Option<Bytes>,
        trailers: Option<HeaderMap>,
        done: bool,
    }
    let st = St {
        job,
        _uploads: uploads,
        first: Some(first),
        trailers: Some(trailers).filter(|t| !t.is_empty()),
        done: false,
    };
    let stream = futures_util::stream::unfold(st, |mut st| async move {
        if let Some(b) = st.first.take() {
            return Some((Ok(Frame::data(b)), st));
        }
        if st.done {
            return st.trailers.take().map(|t| (Ok(Frame::trailers(t)), st));
        }
        match st.job.next().await {
            Some(Ok(Reply::Chunk(r))) => Some((Ok(Frame::data(r.body)), st)),
            Some(Ok(Reply::Final(r))) => {
                st.done = true;
                Some((Ok(Frame::data(r.body)), st))
            }
            Some(Err(e)) => {
                tracing::error!(error = %e, "http: the worker failed in the middle of a streamed response; aborting it");
                st.done = true;
                st.trailers = None;
                Some((Err(std::io::Error::other(e.to_string())), st))
            }
            None => {
                st.done = true;
                st.trailers.take().map(|t| (Ok(Frame::trailers(t)), st))
            }
        }
    });
    StreamBody::new(stream).boxed()
}

fn pool_error(state: &State, uri: &http::Uri, e: PoolError) -> Response<Body> {
    if e.is_overload() {
        tracing::warn!(error = %e, uri = %uri, "http: no worker for the request");
        let mut r = plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "no free worker, try again later\n",
        );
        r.headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
        return r;
    }
    tracing::error!(error = %e, uri = %uri, "http: the worker failed the request");
    if matches!(e, PoolError::Job(JobError::ExecTtl { .. })) {
        return plain(
            StatusCode::GATEWAY_TIMEOUT,
            "the request took longer than exec_ttl\n",
        );
    }
    error_response(state, &e.to_string())
}

fn error_response(state: &State, detail: &str) -> Response<Body> {
    let status = StatusCode::from_u16(state.opts.internal_error_code)
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if state.opts.debug {
        plain(status, &format!("{detail}\n"))
    } else {
        plain(status, "Internal Server Error\n")
    }
}
