//! A small HTTP/1.1 listener for operational endpoints (`/metrics`, `/health`,
//! `/ready`): bind `host:port` (or `:port` for every interface), answer each
//! request with a synchronous handler, stop on a watch flag and let open
//! requests finish for a few seconds.
//!
//! It exists so the metrics and status plugins share one accept loop without
//! depending on each other or on the HTTP front.

use bytes::Bytes;
use http::{Request, Response};
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

/// How long open requests may finish after shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// `:2112` means every interface, as in RoadRunner.
pub fn listen_address(address: &str) -> String {
    if address.starts_with(':') {
        format!("0.0.0.0{address}")
    } else {
        address.to_string()
    }
}

/// Binds `address`; `:port` means every interface.
pub async fn bind(address: &str) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(listen_address(address)).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// Resolves once the flag is true or its sender is gone.
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|&stop| stop).await;
}

/// Serves `handler` on `listener` until `shutdown` turns true (or its sender is
/// dropped), then lets open requests finish for up to 5 s. Accept errors are
/// logged and retried. `name` labels the log lines.
pub async fn serve<F>(
    listener: TcpListener,
    name: &'static str,
    handler: F,
    mut shutdown: watch::Receiver<bool>,
) where
    F: Fn(&Request<Incoming>) -> Response<Full<Bytes>> + Clone + Send + Sync + 'static,
{
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let handler = handler.clone();
                    let svc = service_fn(move |req| {
                        let res = handler(&req);
                        async move { Ok::<_, Infallible>(res) }
                    });
                    let conn = http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(Duration::from_secs(10))
                        .serve_connection(TokioIo::new(stream), svc);
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!(endpoint = name, peer = %peer, error = %e, "connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(endpoint = name, error = %e, "accepting a connection failed; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = stopped(&mut shutdown) => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            endpoint = name,
            "connections still open after 5 s; closing them"
        );
    }
    tracing::debug!(endpoint = name, "stopped");
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
