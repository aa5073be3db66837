//! Listening, accepting and serving connections: HTTP/1.1 keep-alive and HTTP/2
//! (h2c by prior knowledge), with header limits, a header-read timeout, an idle
//! timeout, framing checks against request smuggling (`guard.rs`) and graceful
//! shutdown. The body-read timeout is applied where the body is read
//! (`handler.rs`), before a worker is taken.

use crate::conn::{Activity, TrackedIo};
use crate::handler::{self, State};
use crate::{HttpError, HttpOptions};
use courser_pool::Pool;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// A bound HTTP server (plain and/or TLS listeners); [`HttpServer::run`] serves
/// until shutdown is signalled.
pub struct HttpServer {
    plain: Option<TcpListener>,
    tls: Option<(TcpListener, TlsAcceptor)>,
    fcgi: Option<FcgiListener>,
    state: Arc<State>,
}

/// Where FastCGI connections arrive.
enum FcgiListener {
    Tcp(TcpListener),
    Unix(tokio::net::UnixListener, std::path::PathBuf),
}

impl Drop for FcgiListener {
    fn drop(&mut self) {
        if let FcgiListener::Unix(_, p) = self {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// A FastCGI connection, TCP or unix.
enum FcgiStream {
    Tcp(TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn accept_fcgi(l: Option<&FcgiListener>) -> std::io::Result<(FcgiStream, SocketAddr)> {
    let unspecified = SocketAddr::from(([127, 0, 0, 1], 0));
    match l {
        Some(FcgiListener::Tcp(l)) => l.accept().await.map(|(s, a)| (FcgiStream::Tcp(s), a)),
        Some(FcgiListener::Unix(l, _)) => l
            .accept()
            .await
            .map(|(s, _)| (FcgiStream::Unix(s), unspecified)),
        None => std::future::pending().await,
    }
}

async fn bind_fcgi(address: &str) -> Result<FcgiListener, HttpError> {
    let err = |source| HttpError::Bind {
        address: address.to_string(),
        source,
    };
    if let Some(a) = address.strip_prefix("tcp://") {
        return Ok(FcgiListener::Tcp(bind(a).await?));
    }
    let path = std::path::PathBuf::from(address.strip_prefix("unix://").unwrap_or(address));
    if path.exists() {
        let _ = std::fs::remove_file(&path);
    }
    let l = tokio::net::UnixListener::bind(&path).map_err(err)?;
    Ok(FcgiListener::Unix(l, path))
}

/// Resolves once the watched flag is true (or its sender is gone).
pub(crate) async fn wait_true(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|&s| s).await;
}

async fn bind(address: &str) -> Result<TcpListener, HttpError> {
    let addr = if address.starts_with(':') {
        format!("0.0.0.0{address}")
    } else {
        address.to_string()
    };
    TcpListener::bind(&addr)
        .await
        .map_err(|source| HttpError::Bind {
            address: address.to_string(),
            source,
        })
}

/// How a connection reached us.
#[derive(Debug, Clone)]
pub(crate) struct ConnInfo {
    pub(crate) peer: SocketAddr,
    pub(crate) tls: bool,
    /// Sends 1xx interim responses on plain HTTP/1.1 connections.
    pub(crate) interim: Option<crate::conn::Interim>,
}

impl HttpServer {
    /// Binds the configured listeners. `:8080` means all interfaces.
    pub async fn bind(opts: HttpOptions, pool: Pool) -> Result<HttpServer, HttpError> {
        let plain = match &opts.address {
            Some(a) => Some(bind(a).await?),
            None => None,
        };
        let tls = match &opts.ssl {
            Some(ssl) => {
                let acceptor = TlsAcceptor::from(crate::tls::server_config(ssl)?);
                Some((bind(&ssl.address).await?, acceptor))
            }
            None => None,
        };
        let fcgi = match &opts.fcgi {
            Some(a) => Some(bind_fcgi(a).await?),
            None => None,
        };
        let https_port = tls
            .as_ref()
            .and_then(|(l, _)| l.local_addr().ok())
            .map(|a| a.port());
        Ok(HttpServer {
            plain,
            tls,
            fcgi,
            state: Arc::new(State::new(opts, pool, https_port)?),
        })
    }

    /// The bound plain HTTP address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.plain.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The bound HTTPS address.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// Serves until `shutdown` turns true, then stops accepting and lets open
    /// connections finish their current request.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let HttpServer {
            plain,
            tls,
            fcgi,
            state,
        } = self;
        if let Some(a) = &state.opts.fcgi {
            tracing::info!(address = %a, "fcgi: listening");
        }
        if let Some(a) = plain.as_ref().and_then(|l| l.local_addr().ok()) {
            tracing::info!(address = %a, "http: listening");
        }
        if let Some(a) = tls.as_ref().and_then(|(l, _)| l.local_addr().ok()) {
            tracing::info!(address = %a, "https: listening");
        }
        let open = Arc::new(AtomicUsize::new(0));
        let (closed_tx, mut closed_rx) = watch::channel(0u64);
        loop {
            let accepted = tokio::select! {
                _ = wait_true(&mut shutdown) => break,
                a = accept_fcgi(fcgi.as_ref()) => {
                    match a {
                        Ok((stream, peer)) => {
                            open.fetch_add(1, Ordering::AcqRel);
                            let state = state.clone();
                            let open = open.clone();
                            let closed = closed_tx.clone();
                            tokio::spawn(async move {
                                match stream {
                                    FcgiStream::Tcp(s) => crate::fcgi::serve_connection(state, s, peer).await,
                                    FcgiStream::Unix(s) => crate::fcgi::serve_connection(state, s, peer).await,
                                }
                                open.fetch_sub(1, Ordering::AcqRel);
                                closed.send_modify(|n| *n += 1);
                            });
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "fcgi: accept failed");
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                    continue;
                }
                a = accept(plain.as_ref()) => a.map(|(s, p)| (s, p, None)),
                a = accept(tls.as_ref().map(|(l, _)| l)) => a.map(|(s, p)| (s, p, tls.as_ref().map(|(_, acc)| acc.clone()))),
            };
            let (stream, peer, acceptor) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off briefly.
                    tracing::warn!(error = %e, "http: accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            open.fetch_add(1, Ordering::AcqRel);
            let state = state.clone();
            let sd = shutdown.clone();
            let open = open.clone();
            let closed = closed_tx.clone();
            tokio::spawn(async move {
                match acceptor {
                    None => {
                        let (io, interim) = crate::conn::SharedTcp::new(stream);
                        let conn = ConnInfo {
                            peer,
                            tls: false,
                            interim: Some(interim),
                        };
                        serve_connection(state, io, conn, sd).await
                    }
                    Some(acc) => {
                        let hs = tokio::time::timeout(
                            state.opts.limits.read_header_timeout,
                            acc.accept(stream),
                        )
                        .await;
                        match hs {
                            Ok(Ok(s)) => {
                                serve_connection(
                                    state,
                                    s,
                                    ConnInfo {
                                        peer,
                                        tls: true,
                                        interim: None,
                                    },
                                    sd,
                                )
                                .await
                            }
                            Ok(Err(e)) => {
                                tracing::debug!(peer = %peer, error = %e, "https: TLS handshake failed")
                            }
                            Err(_) => {
                                tracing::debug!(peer = %peer, "https: TLS handshake timed out")
                            }
                        }
                    }
                }
                open.fetch_sub(1, Ordering::AcqRel);
                closed.send_modify(|n| *n += 1);
            });
        }
        drop(plain);
        drop(tls);
        drop(fcgi);
        // In-flight connections finish (the caller bounds this with its grace period).
        while open.load(Ordering::Acquire) > 0 {
            if closed_rx.changed().await.is_err() {
                break;
            }
        }
    }
}

async fn accept(l: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match l {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

fn builder(opts: &HttpOptions) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(opts.limits.read_header_timeout)
        .max_headers(opts.limits.max_header_count)
        .max_buf_size(opts.limits.max_header_size.max(8192))
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(opts.max_concurrent_streams)
        .max_header_list_size(u32::try_from(opts.limits.max_header_size).unwrap_or(u32::MAX));
    b
}

async fn serve_connection<S>(
    state: Arc<State>,
    stream: S,
    conn: ConnInfo,
    mut shutdown: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let peer = conn.peer;
    let activity = Activity::new();
    let io = TokioIo::new(TrackedIo::new(stream, activity.clone()));
    let svc_state = state.clone();
    let svc_activity = activity.clone();
    let compress = state.opts.compression;
    let inner = tower::service_fn(move |req| {
        let state = svc_state.clone();
        let activity = svc_activity.clone();
        let conn = conn.clone();
        async move {
            let _busy = activity.busy();
            Ok::<_, std::convert::Infallible>(handler::handle(state, req, conn).await)
        }
    });
    // gzip, brotli and zstd by Accept-Encoding (RoadRunner's `gzip` middleware has gzip only).
    // Without compression the layer is left out: it would only inspect headers
    // and wrap every response body (bench/README.md).
    let svc = if compress {
        let layer = tower_http::compression::CompressionLayer::new()
            .gzip(true)
            .br(true)
            .zstd(true);
        let compressed = tower::ServiceExt::map_response(
            tower::Layer::layer(&layer, inner),
            |r: http::Response<_>| r.map(|b| b.map_err(std::io::Error::other).boxed()),
        );
        tower::util::Either::Left(compressed)
    } else {
        tower::util::Either::Right(inner)
    };
    let svc = hyper_util::service::TowerToHyperService::new(svc);
    let b = builder(&state.opts);
    let conn = b.serve_connection(io, svc);
    tokio::pin!(conn);
    let idle_timeout = state.opts.limits.idle_timeout;
    // Idle time is seen up to two ticks late (activity is only a flag that a
    // tick turns into a time, and tick gaps can measure a hair under the
    // period), so a tick is a quarter of the timeout: a connection closes
    // within 1.5 × idle_timeout (at most idle_timeout + 2 s).
    let mut tick = tokio::time::interval(
        (idle_timeout / 4)
            .min(Duration::from_secs(1))
            .max(Duration::from_millis(100)),
    );
    let mut closing = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, peer = %peer, "http: connection ended with an error");
                }
                return;
            }
            _ = wait_true(&mut shutdown), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = tick.tick(), if !closing => {
                if activity.idle_for() >= idle_timeout {
                    tracing::debug!(peer = %peer, "http: closing an idle keep-alive connection");
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}
