//! Listening, accepting and serving connections: HTTP/1.1 keep-alive and HTTP/2
//! (h2c by prior knowledge), with header limits, a header-read timeout, an idle
//! timeout and graceful shutdown.

use crate::conn::{Activity, TrackedIo};
use crate::handler::{self, State};
use crate::{HttpError, HttpOptions};
use courser_pool::Pool;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// A bound HTTP server; [`HttpServer::run`] serves until shutdown is signalled.
pub struct HttpServer {
    listener: TcpListener,
    state: Arc<State>,
}

/// Resolves once the watched flag is true (or its sender is gone).
pub(crate) async fn wait_true(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|&s| s).await;
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
            state: Arc::new(State::new(opts, pool)),
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
        let open = Arc::new(AtomicUsize::new(0));
        let (closed_tx, mut closed_rx) = watch::channel(0u64);
        loop {
            tokio::select! {
                _ = wait_true(&mut shutdown) => break,
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
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
                        serve_connection(state, stream, peer, sd).await;
                        open.fetch_sub(1, Ordering::AcqRel);
                        closed.send_modify(|n| *n += 1);
                    });
                }
            }
        }
        drop(listener);
        // In-flight connections finish (the caller bounds this with its grace period).
        while open.load(Ordering::Acquire) > 0 {
            if closed_rx.changed().await.is_err() {
                break;
            }
        }
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

async fn serve_connection(
    state: Arc<State>,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) {
    let activity = Activity::new();
    let io = TokioIo::new(TrackedIo::new(stream, activity.clone()));
    let svc_state = state.clone();
    let svc_activity = activity.clone();
    let compress = state.opts.compression;
    let inner = tower::service_fn(move |req| {
        let state = svc_state.clone();
        let activity = svc_activity.clone();
        async move {
            let _busy = activity.busy();
            Ok::<_, std::convert::Infallible>(handler::handle(state, req, peer).await)
        }
    });
    // gzip, brotli and zstd by Accept-Encoding (RoadRunner's `gzip` middleware has gzip only).
    let layer = tower_http::compression::CompressionLayer::new()
        .gzip(compress)
        .br(compress)
        .zstd(compress);
    let svc = hyper_util::service::TowerToHyperService::new(tower::Layer::layer(&layer, inner));
    let b = builder(&state.opts);
    let conn = b.serve_connection(io, svc);
    tokio::pin!(conn);
    let idle_timeout = state.opts.limits.idle_timeout;
    let mut tick = tokio::time::interval(
        idle_timeout
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
