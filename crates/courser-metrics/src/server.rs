//! The `/metrics` listener: HTTP/1.1 on its own port, shut down by a watch flag.

use crate::{Metrics, MetricsError, CONTENT_TYPE};
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use std::net::SocketAddr;
use tokio::net::TcpListener;
use tokio::sync::watch;

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
    let (listener, local) =
        courser_endpoint::bind(address)
            .await
            .map_err(|source| MetricsError::Bind {
                address: address.to_string(),
                source,
            })?;
    tracing::info!(address = %local, "serving metrics at /metrics");
    Ok(MetricsServer {
        listener,
        local,
        metrics,
    })
}

impl MetricsServer {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Serves until `shutdown` turns true or its sender is dropped, then lets open
    /// scrapes finish for up to 5 s. Accept errors (e.g. out of file descriptors)
    /// are logged and retried, never fatal.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let metrics = self.metrics;
        courser_endpoint::serve(
            self.listener,
            "metrics",
            move |req| respond(&metrics, req),
            shutdown,
        )
        .await;
    }
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
