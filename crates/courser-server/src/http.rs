//! The HTTP front as a plugin: the `http` pool behind `courser-http`'s listeners.

use async_trait::async_trait;
use courser_http::{HttpOptions, HttpServer};
use courser_plugin::{Factory, Host, Plugin, PluginError};
use courser_pool::Pool;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Builds the HTTP plugin from the `http` section. The metrics plugin, when
/// on, observes every response through a closure (the two never meet).
pub(crate) struct HttpFactory {
    pub(crate) metrics: Option<courser_metrics::Metrics>,
}

pub(crate) struct HttpPlugin {
    pool: Pool,
    server: Option<HttpServer>,
    task: Option<tokio::task::JoinHandle<()>>,
}

#[async_trait]
impl Factory for HttpFactory {
    fn section(&self) -> &'static str {
        "http"
    }

    async fn build(&self, host: &dyn Host) -> Result<Option<Box<dyn Plugin>>, PluginError> {
        let Some(http_cfg) = &host.config().http else {
            return Ok(None);
        };
        let pool_cfg = http_cfg.pool.clone();
        let pool = host.start_pool("http", "http", &pool_cfg).await?;
        let listens = http_cfg.address.is_some()
            || http_cfg.extras.ssl.is_some()
            || http_cfg.extras.fcgi.is_some();
        let server = if listens {
            let opts = HttpOptions {
                address: http_cfg.address.clone(),
                ssl: http_cfg.extras.ssl.clone(),
                fcgi: http_cfg.extras.fcgi.clone(),
                middleware: http_cfg.middleware.clone(),
                static_files: http_cfg.extras.static_files.clone(),
                headers: http_cfg.extras.headers.clone(),
                uploads: http_cfg.extras.uploads.clone(),
                trusted_subnets: http_cfg.trusted_subnets.clone(),
                raw_body: http_cfg.raw_body,
                observer: self.metrics.clone().map(|m| {
                    let f: courser_http::RequestObserver =
                        std::sync::Arc::new(move |status, elapsed| m.observe_http(status, elapsed));
                    f
                }),
                internal_error_code: http_cfg.internal_error_code,
                max_request_size: http_cfg.max_request_size,
                debug: pool_cfg.debug,
                access_logs: http_cfg.access_logs,
                codec: http_cfg.extras.codec,
                compression: http_cfg
                    .middleware
                    .iter()
                    .any(|m| m == "gzip" || m == "compression"),
                limits: http_cfg.extras.limits.clone(),
                max_concurrent_streams: http_cfg.extras.http2.max_concurrent_streams,
            };
            match HttpServer::bind(opts, pool.clone()).await {
                Ok(s) => Some(s),
                Err(e) => {
                    pool.stop(Duration::ZERO).await;
                    return Err(PluginError::Other {
                        plugin: "http",
                        message: e.to_string(),
                    });
                }
            }
        } else {
            None
        };
        Ok(Some(Box::new(HttpPlugin {
            pool,
            server,
            task: None,
        })))
    }
}

#[async_trait]
impl Plugin for HttpPlugin {
    fn name(&self) -> &'static str {
        "http"
    }

    fn pools(&self) -> Vec<Pool> {
        vec![self.pool.clone()]
    }

    async fn serve(&mut self, shutdown: watch::Receiver<bool>) -> Result<(), PluginError> {
        if let Some(server) = self.server.take() {
            self.task = Some(tokio::spawn(server.run(shutdown)));
        }
        Ok(())
    }

    async fn stop(&mut self, deadline: Instant) {
        if let Some(h) = self.task.take() {
            if tokio::time::timeout_at(deadline.into(), h).await.is_err() {
                tracing::warn!("requests still running after the grace period; stopping anyway");
            }
        }
    }
}
