//! Prometheus metrics for Courser, in the OpenMetrics text format that
//! `prometheus-client` writes, served at `GET /metrics` on their own listener
//! (`metrics.address`, default `127.0.0.1:2112`).
//!
//! Two kinds of metric live here:
//! - **Pool metrics** are read at scrape time by a collector from each pool added
//!   with [`Metrics::add_pool`]: worker counts by state, memory, queue depth and
//!   the pool's job, spawn and restart counters. Nothing is copied on the request
//!   path; a scrape reads the pool's atomics and its worker table.
//! - **Event metrics** are recorded as things happen: [`Metrics::observe_http`]
//!   for each HTTP response, [`Metrics::observe_wait`] for the time a job waited
//!   for a free worker.
//!
//! Every name is defined once, in [`names`]; see that module for the full list
//! with labels.
//!
//! - **Application metrics** are declared and updated by the application itself
//!   (RoadRunner's `metrics.collect` section and the RPC
//!   `metrics.Declare/Add/Sub/Set/Observe/Unregister` methods):
//!   [`Metrics::declare`], [`Metrics::add`], [`Metrics::sub`], [`Metrics::set`],
//!   [`Metrics::observe`], [`Metrics::unregister`]. They live in one table that a
//!   single collector encodes at scrape time, because the `prometheus_client`
//!   registry cannot unregister; see [`app`] for names, kinds and how a summary
//!   is written.
//!
//! Extension point: other Courser families register into the same registry
//! through [`Metrics::with_registry`]; they appear in [`Metrics::render`] and on
//! `/metrics` with no further wiring.
//!
//! Invariants:
//! - The metrics crate knows pools only through `courser-pool`'s public API and
//!   knows nothing about the HTTP front: `observe_http` takes a status number.
//! - Recording an event takes no lock other than `prometheus-client`'s family
//!   map lock; no lock is held across an `.await`.
//! - A pool name appears once: adding a pool with a name already present
//!   replaces the old one, so the exposition never has duplicate series.

pub mod app;
mod pools;
mod server;

pub use app::{AppCollector, AppKind};
/// The metrics library, re-exported for code that registers through
/// [`Metrics::with_registry`].
pub use prometheus_client;
pub use server::{bind, MetricsServer};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// The metric names Courser exposes, defined once. Counter families are named
/// without `_total` and histograms without their unit, because the OpenMetrics
/// encoder appends those suffixes; the comments give the sample names.
pub mod names {
    /// `courser_workers{pool,state}` gauge: workers by state (every state is
    /// reported, zero included).
    pub const WORKERS: &str = "courser_workers";
    /// `courser_worker_memory_bytes{pool}` gauge: resident memory of all the
    /// pool's workers, summed.
    pub const WORKER_MEMORY: &str = "courser_worker_memory";
    /// `courser_pool_queue_depth{pool}` gauge: callers waiting for a free worker.
    pub const POOL_QUEUE_DEPTH: &str = "courser_pool_queue_depth";
    /// `courser_jobs_total{pool,result="ok|failed|retried|rejected"}` counter.
    pub const JOBS: &str = "courser_jobs";
    /// `courser_worker_spawns_total{pool,result="ok|failed"}` counter.
    pub const WORKER_SPAWNS: &str = "courser_worker_spawns";
    /// `courser_worker_restarts_total{pool,reason}` counter, one series per
    /// `RestartReason`.
    pub const WORKER_RESTARTS: &str = "courser_worker_restarts";
    /// `courser_http_requests_total{class="1xx".."5xx"}` counter.
    pub const HTTP_REQUESTS: &str = "courser_http_requests";
    /// `courser_http_request_duration_seconds{class}` histogram.
    pub const HTTP_REQUEST_DURATION: &str = "courser_http_request_duration";
    /// `courser_pool_wait_seconds{pool}` histogram: how long a job waited for a
    /// free worker.
    pub const POOL_WAIT: &str = "courser_pool_wait";
}

/// The content type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Histogram buckets in seconds, 1 ms to 10 s.
const BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// Label set of the HTTP families.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabels {
    class: &'static str,
}

/// Label set of per-pool families recorded as events.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pool: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Courser's metrics; cheap to clone (every clone records into the same registry).
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Mutex<Registry>,
    pools: pools::Pools,
    app: app::AppMetrics,
    http_requests: Family<ClassLabels, Counter>,
    http_duration: HistogramFamily<ClassLabels>,
    pool_wait: HistogramFamily<PoolLabels>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("pools", &self.inner.pools.names())
            .field("app", &self.inner.app.names())
            .finish_non_exhaustive()
    }
}

impl Metrics {
    /// A registry with Courser's families and no pools yet.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let pools = pools::Pools::default();
        registry.register_collector(Box::new(pools.collector()));
        let app = app::AppMetrics::default();
        registry.register_collector(Box::new(app.collector()));

        let http_requests = Family::<ClassLabels, Counter>::default();
        registry.register(
            names::HTTP_REQUESTS,
            "HTTP responses sent, by status class",
            http_requests.clone(),
        );
        // The common classes start at zero so rate() works from the first scrape.
        for class in ["2xx", "3xx", "4xx", "5xx"] {
            let _ = http_requests.get_or_create(&ClassLabels { class });
        }
        let http_duration: HistogramFamily<ClassLabels> =
            Family::new_with_constructor(histogram as fn() -> Histogram);
        registry.register_with_unit(
            names::HTTP_REQUEST_DURATION,
            "Time from reading the request head to sending the response head, by status class",
            Unit::Seconds,
            http_duration.clone(),
        );
        let pool_wait: HistogramFamily<PoolLabels> =
            Family::new_with_constructor(histogram as fn() -> Histogram);
        registry.register_with_unit(
            names::POOL_WAIT,
            "Time a job waited for a free worker",
            Unit::Seconds,
            pool_wait.clone(),
        );
        Metrics {
            inner: Arc::new(Inner {
                registry: Mutex::new(registry),
                pools,
                app,
                http_requests,
                http_duration,
                pool_wait,
            }),
        }
    }

    /// Reports a pool's metrics from now on, read at each scrape. A pool with the
    /// same name as one already added replaces it.
    pub fn add_pool(&self, pool: courser_pool::Pool) {
        self.inner.pools.add(pool);
    }

    /// Records one HTTP response: its status and how long it took.
    pub fn observe_http(&self, status: u16, elapsed: Duration) {
        let labels = ClassLabels {
            class: status_class(status),
        };
        self.inner.http_requests.get_or_create(&labels).inc();
        self.inner
            .http_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// Records how long a job of `pool` waited for a free worker.
    pub fn observe_wait(&self, pool: &str, waited: Duration) {
        self.inner
            .pool_wait
            .get_or_create(&PoolLabels {
                pool: pool.to_string(),
            })
            .observe(waited.as_secs_f64());
    }

    /// Declares an application metric (RoadRunner's `metrics.Declare`). Declaring
    /// a name again with the same definition succeeds and changes nothing (every
    /// worker declares its metrics when it boots); with a different kind, labels,
    /// buckets, objectives or full name it fails until the old one is
    /// unregistered. The error says what is wrong: an invalid name or label, a
    /// name reserved for Courser, or a sample name another metric already has.
    pub fn declare(&self, name: &str, collector: AppCollector) -> Result<(), String> {
        self.inner.app.declare(name, collector)
    }

    /// Declares the metrics of the config's `metrics.collect` section, in order.
    pub fn declare_configured(
        &self,
        config: &courser_config::MetricsConfig,
    ) -> Result<(), MetricsError> {
        for (name, spec) in &config.collect {
            let fail = |reason: String| MetricsError::Collect {
                name: name.clone(),
                reason,
            };
            let collector = AppCollector {
                kind: spec.kind.parse().map_err(fail)?,
                namespace: spec.namespace.clone(),
                subsystem: spec.subsystem.clone(),
                help: spec.help.clone(),
                labels: spec.labels.clone(),
                buckets: spec.buckets.clone(),
                objectives: spec.objectives.clone(),
            };
            self.declare(name, collector).map_err(fail)?;
        }
        Ok(())
    }

    /// Adds `value` to a counter (`value` ≥ 0) or gauge; `labels` are the label
    /// values in declared order (ignored for a metric without labels, as
    /// RoadRunner does).
    pub fn add<S: AsRef<str>>(&self, name: &str, value: f64, labels: &[S]) -> Result<(), String> {
        self.inner.app.update(app::Op::Add, name, value, labels)
    }

    /// Subtracts `value` from a gauge.
    pub fn sub<S: AsRef<str>>(&self, name: &str, value: f64, labels: &[S]) -> Result<(), String> {
        self.inner.app.update(app::Op::Sub, name, value, labels)
    }

    /// Sets a gauge to `value`.
    pub fn set<S: AsRef<str>>(&self, name: &str, value: f64, labels: &[S]) -> Result<(), String> {
        self.inner.app.update(app::Op::Set, name, value, labels)
    }

    /// Records one observation of a histogram or summary.
    pub fn observe<S: AsRef<str>>(
        &self,
        name: &str,
        value: f64,
        labels: &[S],
    ) -> Result<(), String> {
        self.inner.app.update(app::Op::Observe, name, value, labels)
    }

    /// Removes an application metric and its series; `false` when no metric has
    /// that name.
    pub fn unregister(&self, name: &str) -> bool {
        self.inner.app.unregister(name)
    }

    /// The names of the declared application metrics, sorted.
    pub fn app_metrics(&self) -> Vec<String> {
        self.inner.app.names()
    }

    /// The extension point for Courser families defined elsewhere: runs `f` with
    /// the registry that [`Metrics::render`] encodes. (Application metrics go
    /// through [`Metrics::declare`] instead, so that they can be unregistered.) Register metrics and keep
    /// their handles; they are cheap to clone and record without this lock.
    pub fn with_registry<R>(&self, f: impl FnOnce(&mut Registry) -> R) -> R {
        f(&mut lock(&self.inner.registry))
    }

    /// Every metric in the OpenMetrics text format (see [`CONTENT_TYPE`]), ending
    /// with `# EOF`.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        let registry = lock(&self.inner.registry);
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
            // Writing to a String cannot fail; an error would come from a metric's
            // own encoder, and a partial exposition is worse than an empty one.
            tracing::error!(error = %e, "encoding the metrics failed");
            out.clear();
            out.push_str("# EOF\n");
        }
        out
    }

    /// Binds `address` (`host:port`, or `:port` for every interface). Errors name
    /// `metrics.address`.
    pub async fn bind(&self, address: &str) -> Result<MetricsServer, MetricsError> {
        bind(address, self.clone()).await
    }

    /// Binds `address` and serves `/metrics` until `shutdown` turns true (or its
    /// sender is dropped).
    pub async fn serve(
        &self,
        address: &str,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), MetricsError> {
        self.bind(address).await?.run(shutdown).await;
        Ok(())
    }
}

/// The `class` label of an HTTP status: `1xx` to `5xx`, `other` outside 100..=599.
fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    }
}

/// Why the metrics endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The listen address is taken or invalid.
    #[error("cannot listen on metrics.address {address}: {source}; use a free host:port such as 127.0.0.1:2112, or :2112 for every interface")]
    Bind {
        /// The address as configured.
        address: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A `metrics.collect` entry could not be declared.
    #[error("metrics.collect.{name}: {reason}")]
    Collect {
        /// The metric's name (its key under `metrics.collect`).
        name: String,
        /// What is wrong with it.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        let cases = [
            (100, "1xx"),
            (200, "2xx"),
            (204, "2xx"),
            (301, "3xx"),
            (404, "4xx"),
            (499, "4xx"),
            (500, "5xx"),
            (599, "5xx"),
            (600, "other"),
            (0, "other"),
        ];
        for (status, class) in cases {
            assert_eq!(status_class(status), class, "{status}");
        }
    }

    #[test]
    fn empty_registry_renders_http_families_and_eof() {
        let text = Metrics::new().render();
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(
            text.contains("# TYPE courser_http_requests counter"),
            "{text}"
        );
        assert!(
            text.contains("courser_http_requests_total{class=\"2xx\"} 0"),
            "{text}"
        );
        // No pool: the pool families are left out rather than sent empty.
        assert!(!text.contains("courser_workers"), "{text}");
    }
}
