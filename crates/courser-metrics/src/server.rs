//! The `/metrics` listener: HTTP/1.1 on its own port, shut down by a watch flag.

use crate::{Metrics, MetricsError, CONTENT_TYPE};
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How long open scrapes may finish after shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A bound `/metrics` listener, not yet serving.
pub struct MetricsServer {
    listener: TcpListener,
    local: SocketAddr,
    metrics: Metrics,
}

impl std::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer")
            .field("local_addr", &self.local)
            .finish_non_exhaustive()
    }
}

/// Binds `address` (`host:port`, or `:port` for every interface) for `metrics`.
/// Errors name `metrics.address`.
pub async fn bind(address: &str, metrics: Metrics) -> Result<MetricsServer, MetricsError> {
    let err = |source| MetricsError::Bind {
        address: address.to_string(),
        source,
    };
    let listener = TcpListener::bind(listen_address(address))
        .await
        .map_err(err)?;
    let local = listener.local_addr().map_err(err)?;
    tracing::info!(address = %local, "serving metrics at /metrics");
    Ok(MetricsServer {
        listener,
        local,
        metrics,
    })
}

/// `:2112` means every interface, as in RoadRunner.
fn listen_address(address: &str) -> String {
    if address.starts_with(':') {
        format!("0.0.0.0{address}")
    } else {
        address.to_string()
    }
}

impl MetricsServer {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Serves until `shutdown` turns true or its sender is dropped, then lets open
    /// scrapes finish for up to 5 s. Accept errors (e.g. out of file descriptors)
    /// are logged and retried, never fatal.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let graceful = GracefulShutdown::new();
        loop {
            tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let metrics = self.metrics.clone();
                        let svc = service_fn(move |req| {
                            let res = respond(&metrics, &req);
                            async move { Ok::<_, Infallible>(res) }
                        });
                        let conn = http1::Builder::new()
                            .timer(TokioTimer::new())
                            .header_read_timeout(Duration::from_secs(10))
                            .serve_connection(TokioIo::new(stream), svc);
                        let conn = graceful.watch(conn);
                        tokio::spawn(async move {
                            if let Err(e) = conn.await {
                                tracing::debug!(peer = %peer, error = %e, "metrics connection ended with an error");
                            }
                        });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accepting a metrics connection failed; retrying");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                () = stopped(&mut shutdown) => break,
            }
        }
        drop(self.listener);
        if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("metrics connections still open after 5 s; closing them");
        }
        tracing::debug!("metrics endpoint stopped");
    }
}

/// Resolves once the flag is true or its sender is gone. The guard `wait_for`
/// returns is dropped here, so the `run` future stays `Send`.
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|&stop| stop).await;
}

fn respond(metrics: &Metrics, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    match req.uri().path() {
        "/metrics" => match *req.method() {
            Method::GET | Method::HEAD => {
                reply(StatusCode::OK, CONTENT_TYPE, Bytes::from(metrics.render()))
            }
            _ => {
                let mut res = text(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "only GET and HEAD are allowed on /metrics\n",
                );
                res.headers_mut()
                    .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
                res
            }
        },
        "/" => {
            let mut res = text(StatusCode::FOUND, "metrics are at /metrics\n");
            res.headers_mut().insert(
                header::LOCATION,
                header::HeaderValue::from_static("/metrics"),
            );
            res
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; metrics are at /metrics\n",
        ),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    reply(
        status,
        "text/plain; charset=utf-8",
        Bytes::from_static(body.as_bytes()),
    )
}

fn reply(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(body));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::listen_address;

    #[test]
    fn port_only_means_every_interface() {
        for (given, bound) in [
            (":2112", "0.0.0.0:2112"),
            ("127.0.0.1:2112", "127.0.0.1:2112"),
            ("[::1]:2112", "[::1]:2112"),
        ] {
            assert_eq!(listen_address(given), bound, "{given}");
        }
    }
}
