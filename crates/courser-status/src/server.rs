//! The `/health` and `/ready` listener: HTTP/1.1 on its own port, shut down by a
//! watch flag.

use crate::{PluginStatus, Probe, Status, StatusError};
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use std::net::SocketAddr;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// A bound status listener, not yet serving.
pub struct StatusServer {
    listener: TcpListener,
    local: SocketAddr,
    status: Status,
}

impl std::fmt::Debug for StatusServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusServer")
            .field("local_addr", &self.local)
            .finish_non_exhaustive()
    }
}

/// Binds `address` (`host:port`, or `:port` for every interface) for `status`.
/// Errors name `status.address`.
pub async fn bind(address: &str, status: Status) -> Result<StatusServer, StatusError> {
    let (listener, local) =
        courser_endpoint::bind(address)
            .await
            .map_err(|source| StatusError::Bind {
                address: address.to_string(),
                source,
            })?;
    tracing::info!(address = %local, "serving /health and /ready");
    Ok(StatusServer {
        listener,
        local,
        status,
    })
}

impl StatusServer {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Serves until `shutdown` turns true or its sender is dropped, then lets open
    /// checks finish for up to 5 s. Accept errors are logged and retried.
    ///
    /// Draining is separate: the server calls [`Status::set_draining`] first, keeps
    /// this running while load balancers notice `/ready` failing, then shuts down.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let status = self.status;
        courser_endpoint::serve(
            self.listener,
            "status",
            move |req| respond(&status, req),
            shutdown,
        )
        .await;
    }
}

fn respond(status: &Status, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let probe = match req.uri().path() {
        "/health" => Probe::Health,
        "/ready" => Probe::Ready,
        "/jobs" => {
            return error(
                StatusCode::NOT_FOUND,
                "jobs",
                "the jobs plugin is not available in this build",
            )
        }
        path => {
            return error(
                StatusCode::NOT_FOUND,
                "",
                &format!("no endpoint at {path}; use /health or /ready with ?plugin=NAME"),
            )
        }
    };
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        let mut res = error(
            StatusCode::METHOD_NOT_ALLOWED,
            "",
            "only GET and HEAD are allowed",
        );
        res.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return res;
    }
    let plugins: Vec<String> = form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .filter(|(k, _)| k == "plugin")
        .map(|(_, v)| v.into_owned())
        .collect();
    let report = status.check(probe, &plugins);
    let code = StatusCode::from_u16(report.status_code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    if code != StatusCode::OK {
        tracing::debug!(probe = ?probe, status = report.status_code, "status check failed");
    }
    json(code, &report.plugins)
}

/// A one-entry list in RoadRunner's shape, for errors that are not a pool's.
fn error(code: StatusCode, plugin: &str, message: &str) -> Response<Full<Bytes>> {
    json(
        code,
        &[PluginStatus {
            plugin_name: plugin.to_string(),
            error_message: message.to_string(),
            status_code: code.as_u16(),
        }],
    )
}

fn json(code: StatusCode, body: &[PluginStatus]) -> Response<Full<Bytes>> {
    // Serializing plain strings and numbers cannot fail; an empty list is the
    // fallback rather than a panic. No trailing newline, as RoadRunner.
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"[]".to_vec());
    let mut res = Response::new(Full::new(Bytes::from(bytes)));
    *res.status_mut() = code;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    res
}
