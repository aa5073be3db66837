//! The HTTP front: accepts HTTP/1.1 and HTTP/2 (h2c), turns each request into a
//! RoadRunner worker payload (spec section 3), runs it on the `http` pool and
//! writes the worker's response back.
//!
//! Invariants:
//! - Every error becomes a status code and one log line; no connection is dropped
//!   without an answer. Overload (no free worker, queue full) is 503 with
//!   `Retry-After`; a worker failure is `internal_error_code` without PHP detail.
//! - This crate defines the HTTP payload shapes; the pool sees only bytes.

mod context;

pub use context::{canonical_header_name, request_context_json, ResponseContext};

use bytes::Bytes;
use courser_frame::flags;
use courser_pool::{Payload, Pool, PoolError};
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// HTTP front settings, validated from `http.*`.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// `host:port` to listen on.
    pub address: String,
    /// Status for worker failures (`http.internal_error_code`).
    pub internal_error_code: u16,
    /// Largest request body in bytes (`http.max_request_size`).
    pub max_request_size: u64,
    /// Show worker error details in responses (`http.pool.debug`).
    pub debug: bool,
    /// Log one line per request.
    pub access_logs: bool,
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
}

struct State {
    pool: Pool,
    opts: HttpOptions,
}

/// A bound HTTP server; [`HttpServer::run`] serves until shutdown is signalled.
pub struct HttpServer {
    listener: TcpListener,
    state: Arc<State>,
}

impl HttpServer {
    /// Binds the listen address. `:8080` means all interfaces.
    pub async fn bind(opts: HttpOptions, pool: Pool) -> Result<HttpServer, HttpError> {
        let addr = if opts.address.starts_with(':') {
            format!("0.0.0.0{}", opts.address)
        } else {
            opts.address.clone()
        };
        let listener = TcpListener::bind(&addr)
            .await
            .map_err(|source| HttpError::Bind {
                address: opts.address.clone(),
                source,
            })?;
        Ok(HttpServer {
            listener,
            state: Arc::new(State { pool, opts }),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `shutdown` turns true, then stops accepting and lets open
    /// connections finish their current request.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let HttpServer { listener, state } = self;
        tracing::info!(address = %state.opts.address, "http: listening");
        let (conn_done_tx, mut conn_done_rx) = watch::channel(0usize);
        let conns = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        loop {
            tokio::select! {
                _ = wait_true(&mut shutdown) => break,
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(x) => x,
                        Err(e) => {
                            tracing::warn!(error = %e, "http: accept failed");
                            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let state = state.clone();
                    let mut sd = shutdown.clone();
                    let conns = conns.clone();
                    let done = conn_done_tx.clone();
                    conns.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                    tokio::spawn(async move {
                        let svc = hyper::service::service_fn(move |req| {
                            let state = state.clone();
                            async move { Ok::<_, std::convert::Infallible>(handle(state, req, peer).await) }
                        });
                        let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                        let conn = builder.serve_connection(TokioIo::new(stream), svc);
                        tokio::pin!(conn);
                        tokio::select! {
                            r = conn.as_mut() => { if let Err(e) = r { tracing::debug!(error = %e, "http: connection ended with an error"); } }
                            _ = wait_true(&mut sd) => {
                                conn.as_mut().graceful_shutdown();
                                let _ = conn.as_mut().await;
                            }
                        }
                        conns.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
                        done.send_modify(|n| *n += 1);
                    });
                }
            }
        }
        drop(listener);
        // Let in-flight connections finish (the caller bounds this with its grace period).
        while conns.load(std::sync::atomic::Ordering::Acquire) > 0 {
            if conn_done_rx.changed().await.is_err() {
                break;
            }
        }
    }
}

/// Resolves once the watched flag is true (or its sender is gone).
async fn wait_true(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|&s| s).await;
}

type Body = Full<Bytes>;

fn plain(status: StatusCode, text: &str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(text.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

async fn handle(state: Arc<State>, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let started = Instant::now();
    let method = req.method().clone();
    let uri = req.uri().clone();
    let resp = serve(&state, req, peer).await;
    if state.opts.access_logs {
        tracing::info!(target: "courser::http::access", method = %method, uri = %uri, status = resp.status().as_u16(), remote = %peer.ip(), elapsed_ms = started.elapsed().as_secs_f64() * 1000.0, "http request");
    }
    resp
}

async fn serve(state: &State, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let limit = state.opts.max_request_size;
    if let Some(len) = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > limit {
            return plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n");
        }
    }
    let (parts, body) = req.into_parts();
    let skip_body = parts.method == http::Method::HEAD || parts.method == http::Method::OPTIONS;
    let body = if skip_body {
        Bytes::new()
    } else {
        match Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX))
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    return plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n");
                }
                return plain(StatusCode::BAD_REQUEST, "could not read the request body\n");
            }
        }
    };
    let context = request_context_json(&parts, peer, false);
    let payload = Payload {
        flags: flags::CODEC_JSON,
        context: Bytes::from(context),
        body,
    };
    match state.pool.exec(payload).await {
        Ok(r) => match ResponseContext::parse(r.flags, &r.context) {
            Ok(ctx) => build_response(ctx, r.body),
            Err(e) => {
                tracing::error!(error = %e, "http: the worker's response context is invalid");
                error_response(state, &format!("invalid response context: {e}"))
            }
        },
        Err(e) if e.is_overload() => {
            tracing::warn!(error = %e, uri = %parts.uri, "http: no worker for the request");
            let mut r = plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "no free worker, try again later\n",
            );
            r.headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
        Err(e @ PoolError::Job(_))
        | Err(e @ PoolError::Spawn(_))
        | Err(e @ PoolError::EmptyPayload) => {
            tracing::error!(error = %e, uri = %parts.uri, "http: the worker failed the request");
            error_response(state, &e.to_string())
        }
        Err(e) => {
            tracing::error!(error = %e, uri = %parts.uri, "http: the request failed");
            error_response(state, &e.to_string())
        }
    }
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

fn build_response(ctx: ResponseContext, body: Bytes) -> Response<Body> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = StatusCode::from_u16(ctx.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = r.headers_mut();
    for (name, values) in ctx.headers {
        let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
            tracing::warn!(header = %name, "http: the worker sent an invalid header name; dropped");
            continue;
        };
        for v in values {
            match HeaderValue::from_str(&v) {
                Ok(v) => {
                    headers.append(name.clone(), v);
                }
                Err(_) => {
                    tracing::warn!(header = %name, "http: the worker sent an invalid header value; dropped")
                }
            }
        }
    }
    r
}
