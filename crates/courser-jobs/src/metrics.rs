//! Per-pipeline Prometheus families (`pipeline="…"` on every series).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use std::time::Duration;

/// The label set.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct PipelineLabels {
    pub(crate) pipeline: String,
}

const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

type HistogramFamily = Family<PipelineLabels, Histogram, fn() -> Histogram>;

/// The families; cheap to clone.
#[derive(Clone)]
pub(crate) struct JobsMetrics {
    pub(crate) pushed: Family<PipelineLabels, Counter>,
    pub(crate) push_errors: Family<PipelineLabels, Counter>,
    pub(crate) consumed: Family<PipelineLabels, Counter>,
    pub(crate) acked: Family<PipelineLabels, Counter>,
    pub(crate) nacked: Family<PipelineLabels, Counter>,
    pub(crate) requeued: Family<PipelineLabels, Counter>,
    pub(crate) failed: Family<PipelineLabels, Counter>,
    pub(crate) active: Family<PipelineLabels, Gauge>,
    pub(crate) ready: Family<PipelineLabels, Gauge>,
    pub(crate) delayed: Family<PipelineLabels, Gauge>,
    pub(crate) reserved: Family<PipelineLabels, Gauge>,
    pub(crate) duration: HistogramFamily,
    pub(crate) latency: HistogramFamily,
}

impl JobsMetrics {
    pub(crate) fn new() -> JobsMetrics {
        JobsMetrics {
            pushed: Family::default(),
            push_errors: Family::default(),
            consumed: Family::default(),
            acked: Family::default(),
            nacked: Family::default(),
            requeued: Family::default(),
            failed: Family::default(),
            active: Family::default(),
            ready: Family::default(),
            delayed: Family::default(),
            reserved: Family::default(),
            duration: Family::new_with_constructor(histogram as fn() -> Histogram),
            latency: Family::new_with_constructor(histogram as fn() -> Histogram),
        }
    }

    /// Creates every series of `pipeline` at zero, so it shows from the start.
    pub(crate) fn add_pipeline(&self, pipeline: &str) {
        let l = labels(pipeline);
        let _ = self.pushed.get_or_create(&l);
        let _ = self.push_errors.get_or_create(&l);
        let _ = self.consumed.get_or_create(&l);
        let _ = self.acked.get_or_create(&l);
        let _ = self.nacked.get_or_create(&l);
        let _ = self.requeued.get_or_create(&l);
        let _ = self.failed.get_or_create(&l);
        let _ = self.active.get_or_create(&l);
        let _ = self.ready.get_or_create(&l);
        let _ = self.delayed.get_or_create(&l);
        let _ = self.reserved.get_or_create(&l);
        let _ = self.duration.get_or_create(&l);
        let _ = self.latency.get_or_create(&l);
    }

    pub(crate) fn remove_pipeline(&self, pipeline: &str) {
        let l = labels(pipeline);
        self.pushed.remove(&l);
        self.push_errors.remove(&l);
        self.consumed.remove(&l);
        self.acked.remove(&l);
        self.nacked.remove(&l);
        self.requeued.remove(&l);
        self.failed.remove(&l);
        self.active.remove(&l);
        self.ready.remove(&l);
        self.delayed.remove(&l);
        self.reserved.remove(&l);
        self.duration.remove(&l);
        self.latency.remove(&l);
    }

    pub(crate) fn inc(family: &Family<PipelineLabels, Counter>, pipeline: &str, n: u64) {
        family.get_or_create(&labels(pipeline)).inc_by(n);
    }

    pub(crate) fn observe(family: &HistogramFamily, pipeline: &str, d: Duration) {
        family
            .get_or_create(&labels(pipeline))
            .observe(d.as_secs_f64());
    }

    pub(crate) fn register(&self, r: &mut Registry) {
        r.register(
            "courser_jobs_pushed",
            "Jobs accepted by jobs.Push/PushBatch",
            self.pushed.clone(),
        );
        r.register(
            "courser_jobs_push_errors",
            "Pushes refused or failed against the broker",
            self.push_errors.clone(),
        );
        r.register(
            "courser_jobs_consumed",
            "Jobs handed to a PHP worker",
            self.consumed.clone(),
        );
        r.register("courser_jobs_acked", "Jobs acked", self.acked.clone());
        r.register(
            "courser_jobs_nacked",
            "Jobs nacked (by the worker, or because the worker failed)",
            self.nacked.clone(),
        );
        r.register(
            "courser_jobs_requeued",
            "Jobs put back with a delay or new headers",
            self.requeued.clone(),
        );
        r.register(
            "courser_jobs_failed",
            "Jobs whose worker crashed, timed out or answered an error frame",
            self.failed.clone(),
        );
        r.register(
            "courser_jobs_active",
            "Jobs being run by PHP workers now",
            self.active.clone(),
        );
        r.register(
            "courser_jobs_ready",
            "Jobs waiting in the broker, ready to run (as the driver last reported)",
            self.ready.clone(),
        );
        r.register(
            "courser_jobs_delayed",
            "Jobs waiting for their delay (as the driver last reported)",
            self.delayed.clone(),
        );
        r.register(
            "courser_jobs_reserved",
            "Jobs taken from the broker and not yet settled",
            self.reserved.clone(),
        );
        r.register_with_unit(
            "courser_jobs_duration",
            "Time a PHP worker spent on a job",
            Unit::Seconds,
            self.duration.clone(),
        );
        r.register_with_unit(
            "courser_jobs_consume_latency",
            "Time from taking a job from the broker to settling it (queue wait + run)",
            Unit::Seconds,
            self.latency.clone(),
        );
    }
}

pub(crate) fn labels(pipeline: &str) -> PipelineLabels {
    PipelineLabels {
        pipeline: pipeline.to_string(),
    }
}
