//! Application metrics: the ones PHP declares and updates itself, over RPC
//! (`metrics.Declare/Add/Sub/Set/Observe/Unregister`) or in the config
//! (`metrics.collect.<name>`), as RoadRunner's metrics plugin offers them.
//!
//! `prometheus-client`'s registry cannot unregister a metric, so application
//! metrics are not registered there one by one. They live in one table
//! (`AppMetrics`) that a single [`Collector`] encodes at scrape time; declaring
//! and unregistering only change the table.
//!
//! Exposition (OpenMetrics text, like the rest of `/metrics`):
//! - The full name is `namespace_subsystem_name`, empty parts left out (as Go's
//!   `prometheus.BuildFQName` does).
//! - A **counter** is exposed as `<full>_total` (the OpenMetrics suffix); a name
//!   that already ends in `_total` is not suffixed twice. RoadRunner, which writes
//!   the older text format, exposes a counter `foo` as `foo`; Prometheus stores
//!   the OpenMetrics sample as `foo_total`.
//! - A **gauge** is `<full>`; a **histogram** is `<full>_bucket{le}`, `_sum` and
//!   `_count` (default buckets are Go's `prometheus.DefBuckets`).
//! - A **summary** cannot be written with `prometheus-client`'s encoder (it has no
//!   summary type), so it is exposed as three gauge families with the sample names
//!   a real summary has: `<full>{quantile="0.5"}` (one sample per objective),
//!   `<full>_sum` and `<full>_count`. The series are the same as RoadRunner's, so
//!   queries work unchanged; only the `# TYPE` metadata says gauge. Quantiles are
//!   exact over a sliding window: the last [`SUMMARY_WINDOW`] observations of each
//!   label set that are at most [`SUMMARY_MAX_AGE`] old (Go's default `MaxAge` is
//!   also 10 minutes); the objectives' error margins are accepted and unused. A
//!   quantile over an empty window is `NaN`, as in Go. `_sum` and `_count` cover
//!   every observation since the label set was first used.
//! - A family is left out until it has a series: a labelled metric appears with
//!   its first update; an unlabelled one at 0 from the moment it is declared.
//!
//! Invariants:
//! - A value that is not a finite number is refused, so the exposition never
//!   holds `inf` (which OpenMetrics would not parse) outside a histogram's `+Inf`.
//! - Two application metrics never expose the same sample name, and none starts
//!   with `courser_` (Courser's own families).
//! - A metric keeps at most [`MAX_SERIES`] label sets, so a label fed from
//!   unbounded input fails its updates instead of exhausting memory.

use crate::lock;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Observations kept per label set of a summary.
pub const SUMMARY_WINDOW: usize = 1024;

/// Oldest observation a summary's quantiles include.
pub const SUMMARY_MAX_AGE: Duration = Duration::from_secs(600);

/// Label sets one application metric may hold.
pub const MAX_SERIES: usize = 10_000;

/// Histogram buckets when none are declared: Go's `prometheus.DefBuckets`.
pub const DEFAULT_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Full names with this prefix belong to Courser's own metrics.
const RESERVED_PREFIX: &str = "courser_";

/// The four kinds of application metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AppKind {
    /// Only goes up: `Add` (with a value ≥ 0).
    Counter,
    /// Goes up and down: `Add`, `Sub`, `Set`.
    Gauge,
    /// Counts observations into buckets: `Observe`.
    Histogram,
    /// Quantiles over recent observations: `Observe`.
    Summary,
}

impl AppKind {
    /// The name RoadRunner's config and RPC use: `counter`, `gauge`, `histogram`, `summary`.
    pub fn as_str(self) -> &'static str {
        match self {
            AppKind::Counter => "counter",
            AppKind::Gauge => "gauge",
            AppKind::Histogram => "histogram",
            AppKind::Summary => "summary",
        }
    }
}

impl fmt::Display for AppKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AppKind {
    type Err = String;

    /// Case-insensitive; surrounding spaces are ignored.
    fn from_str(s: &str) -> Result<AppKind, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "counter" => Ok(AppKind::Counter),
            "gauge" => Ok(AppKind::Gauge),
            "histogram" => Ok(AppKind::Histogram),
            "summary" => Ok(AppKind::Summary),
            _ => Err(format!(
                "unknown collector type \"{s}\": use counter, gauge, histogram or summary"
            )),
        }
    }
}

/// The definition of an application metric: RoadRunner's `Collector`
/// (`metrics.Declare`'s `collector`, or one `metrics.collect.<name>` entry).
#[derive(Debug, Clone, PartialEq)]
pub struct AppCollector {
    /// Counter, gauge, histogram or summary.
    pub kind: AppKind,
    /// First part of the full name (may be empty).
    pub namespace: String,
    /// Second part of the full name (may be empty).
    pub subsystem: String,
    /// The `# HELP` text (when empty: "Application `kind` `full_name`.").
    pub help: String,
    /// Label names; updates give the values in this order.
    pub labels: Vec<String>,
    /// Histogram bucket upper bounds (`+Inf` is implied); empty means
    /// [`DEFAULT_BUCKETS`]. Ignored by the other kinds.
    pub buckets: Vec<f64>,
    /// Summary objectives as (quantile, allowed error); the quantiles are
    /// reported. Ignored by the other kinds.
    pub objectives: Vec<(f64, f64)>,
}

impl AppCollector {
    /// A metric of `kind` with no namespace, help, labels, buckets or objectives.
    pub fn new(kind: AppKind) -> AppCollector {
        AppCollector {
            kind,
            namespace: String::new(),
            subsystem: String::new(),
            help: String::new(),
            labels: Vec::new(),
            buckets: Vec::new(),
            objectives: Vec::new(),
        }
    }
}

/// The values of one label set.
#[derive(Debug)]
enum Series {
    /// A counter or gauge.
    Value(f64),
    Histogram {
        /// Observations per bucket (not cumulative); the last is `+Inf`.
        counts: Vec<u64>,
        sum: f64,
        count: u64,
    },
    Summary {
        /// Recent observations, oldest first.
        window: VecDeque<(Instant, f64)>,
        sum: f64,
        count: u64,
    },
}

/// One declared metric.
#[derive(Debug)]
struct AppMetric {
    /// As declared, normalised (buckets sorted, objectives sorted by quantile).
    def: AppCollector,
    /// `namespace_subsystem_name`.
    full: String,
    /// The descriptor name: `full` without a counter's `_total`.
    family: String,
    series: BTreeMap<Vec<String>, Series>,
}

impl AppMetric {
    fn new_series(&self) -> Series {
        match self.def.kind {
            AppKind::Counter | AppKind::Gauge => Series::Value(0.0),
            AppKind::Histogram => Series::Histogram {
                counts: vec![0; self.def.buckets.len() + 1],
                sum: 0.0,
                count: 0,
            },
            AppKind::Summary => Series::Summary {
                window: VecDeque::new(),
                sum: 0.0,
                count: 0,
            },
        }
    }
}

/// The sample names a metric of `kind` named `full` exposes (and its family name).
fn exposed_names(kind: AppKind, full: &str) -> Vec<String> {
    match kind {
        AppKind::Counter => {
            let family = counter_family(full);
            vec![family.to_string(), format!("{family}_total")]
        }
        AppKind::Gauge => vec![full.to_string()],
        AppKind::Histogram => ["", "_bucket", "_sum", "_count"]
            .iter()
            .map(|s| format!("{full}{s}"))
            .collect(),
        AppKind::Summary => ["", "_sum", "_count"]
            .iter()
            .map(|s| format!("{full}{s}"))
            .collect(),
    }
}

/// A counter's descriptor name: the encoder appends `_total`, so a name that
/// already has it loses it here.
fn counter_family(full: &str) -> &str {
    match full.strip_suffix("_total") {
        Some(base) if !base.is_empty() => base,
        _ => full,
    }
}

/// `namespace_subsystem_name` with empty parts left out.
fn full_name(namespace: &str, subsystem: &str, name: &str) -> String {
    [namespace, subsystem, name]
        .iter()
        .filter(|p| !p.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("_")
}

// Name rules are shared with the config checks of `metrics.collect`.
use courser_config::{label_name_ok as valid_label_name, metric_name_ok as valid_metric_name};

/// Checks a definition and puts it in canonical form; the error says what to fix.
fn normalise(name: &str, mut c: AppCollector) -> Result<(AppCollector, String), String> {
    if name.is_empty() {
        return Err("a metric needs a name".into());
    }
    let full = full_name(&c.namespace, &c.subsystem, name);
    if !valid_metric_name(&full) {
        return Err(format!(
            "metric \"{name}\": \"{full}\" (namespace_subsystem_name) is not a valid Prometheus metric name; \
             use letters, digits, _ and :, not starting with a digit"
        ));
    }
    if full.starts_with(RESERVED_PREFIX) {
        return Err(format!(
            "metric \"{name}\": the name \"{full}\" starts with \"{RESERVED_PREFIX}\", which is reserved for Courser's own metrics"
        ));
    }
    if c.help.trim().is_empty() {
        // An empty `# HELP` is valid but reads like a mistake.
        c.help = format!("Application {} {full}.", c.kind);
    }
    let mut seen = BTreeSet::new();
    for l in &c.labels {
        if !valid_label_name(l) {
            return Err(format!(
                "metric \"{name}\": \"{l}\" is not a valid label name; use letters, digits and _, \
                 not starting with a digit or __"
            ));
        }
        let reserved = match c.kind {
            AppKind::Histogram => l == "le",
            AppKind::Summary => l == "quantile",
            _ => false,
        };
        if reserved {
            return Err(format!(
                "metric \"{name}\": a {} cannot have a label named \"{l}\"; the exposition uses it",
                c.kind
            ));
        }
        if !seen.insert(l.as_str()) {
            return Err(format!(
                "metric \"{name}\": the label \"{l}\" is listed twice"
            ));
        }
    }
    if c.kind == AppKind::Histogram {
        if let Some(b) = c.buckets.iter().find(|b| b.is_nan()) {
            return Err(format!("metric \"{name}\": bucket {b} is not a number"));
        }
        // +Inf is always there; a listed one would be a duplicate bucket.
        c.buckets.retain(|b| b.is_finite());
        c.buckets.sort_by(f64::total_cmp);
        c.buckets.dedup();
        if c.buckets.is_empty() {
            c.buckets = DEFAULT_BUCKETS.to_vec();
        }
    } else {
        c.buckets.clear();
    }
    if c.kind == AppKind::Summary {
        if let Some((q, _)) = c
            .objectives
            .iter()
            .find(|(q, e)| !(0.0..=1.0).contains(q) || !(0.0..=1.0).contains(e))
        {
            return Err(format!(
                "metric \"{name}\": objective {q} is not valid; a quantile and its error are numbers from 0 to 1, e.g. {{0.5: 0.05, 0.99: 0.001}}"
            ));
        }
        c.objectives.sort_by(|a, b| a.0.total_cmp(&b.0));
        c.objectives.dedup_by(|a, b| a.0 == b.0);
    } else {
        c.objectives.clear();
    }
    Ok((c, full))
}

/// The application metrics, shared by [`crate::Metrics`] and the collector.
#[derive(Clone, Default)]
pub(crate) struct AppMetrics(Arc<Mutex<BTreeMap<String, AppMetric>>>);

impl AppMetrics {
    pub(crate) fn collector(&self) -> AppCollectorEncoder {
        AppCollectorEncoder(self.clone())
    }

    pub(crate) fn names(&self) -> Vec<String> {
        lock(&self.0).keys().cloned().collect()
    }

    pub(crate) fn declare(&self, name: &str, c: AppCollector) -> Result<(), String> {
        let (def, full) = normalise(name, c)?;
        let mut table = lock(&self.0);
        if let Some(old) = table.get(name) {
            // Every worker declares its metrics when it boots: the same definition
            // again is fine. (Help text may differ; the first one stays.)
            let same = AppCollector {
                help: old.def.help.clone(),
                ..def.clone()
            };
            if same == old.def {
                return Ok(());
            }
            return Err(format!(
                "metric \"{name}\" is already declared differently: it is a {} named {} with labels {}, \
                 this declaration a {} named {} with labels {} (or other buckets or objectives); \
                 unregister it first (metrics.Unregister) or restart the server",
                old.def.kind,
                old.full,
                show_list(&old.def.labels),
                def.kind,
                full,
                show_list(&def.labels),
            ));
        }
        let mine = exposed_names(def.kind, &full);
        for (other_name, other) in table.iter() {
            let theirs = exposed_names(other.def.kind, &other.full);
            if let Some(clash) = mine.iter().find(|n| theirs.contains(n)) {
                return Err(format!(
                    "metric \"{name}\": the {} {full} would expose {clash}, as the {} \"{other_name}\" ({}) already does; choose another name",
                    def.kind, other.def.kind, other.full
                ));
            }
        }
        let family = match def.kind {
            AppKind::Counter => counter_family(&full).to_string(),
            _ => full.clone(),
        };
        let mut metric = AppMetric {
            def,
            full,
            family,
            series: BTreeMap::new(),
        };
        if metric.def.labels.is_empty() {
            let s = metric.new_series();
            metric.series.insert(Vec::new(), s);
        }
        table.insert(name.to_string(), metric);
        Ok(())
    }

    pub(crate) fn unregister(&self, name: &str) -> bool {
        lock(&self.0).remove(name).is_some()
    }

    /// Applies `op` to the series of `labels`, creating it when new.
    pub(crate) fn update<S: AsRef<str>>(
        &self,
        op: Op,
        name: &str,
        value: f64,
        labels: &[S],
    ) -> Result<(), String> {
        if !value.is_finite() {
            return Err(format!("metric \"{name}\": {value} is not a finite number"));
        }
        let mut table = lock(&self.0);
        let Some(metric) = table.get_mut(name) else {
            return Err(format!(
                "undefined collector \"{name}\": declare it first (metrics.Declare, or metrics.collect.{name} in the config)"
            ));
        };
        check_op(op, name, metric.def.kind, value)?;
        let key: Vec<String> = if metric.def.labels.is_empty() {
            // RoadRunner ignores label values given to a metric without labels.
            Vec::new()
        } else if labels.len() != metric.def.labels.len() {
            let n = labels.len();
            return Err(format!(
                "metric {name} has labels {}; got {n} value{}{}",
                show_list(&metric.def.labels),
                if n == 1 { "" } else { "s" },
                if n == 0 {
                    String::new()
                } else {
                    format!(
                        " {}",
                        show_list(&labels.iter().map(|l| l.as_ref()).collect::<Vec<_>>())
                    )
                }
            ));
        } else {
            labels.iter().map(|l| l.as_ref().to_string()).collect()
        };
        if !metric.series.contains_key(&key) {
            if metric.series.len() >= MAX_SERIES {
                return Err(format!(
                    "metric {name} already has {MAX_SERIES} label sets, the most Courser keeps per metric; \
                     a label probably takes unbounded values (ids, URLs): use fewer distinct values"
                ));
            }
            let s = metric.new_series();
            metric.series.insert(key.clone(), s);
        }
        let buckets = &metric.def.buckets;
        let Some(series) = metric.series.get_mut(&key) else {
            return Err(format!("metric {name}: the label set vanished"));
        };
        apply(op, series, buckets, value).map_err(|why| format!("metric {name}: {why}"))
    }
}

fn show_list<S: AsRef<str>>(items: &[S]) -> String {
    let inner: Vec<&str> = items.iter().map(|s| s.as_ref()).collect();
    format!("[{}]", inner.join(", "))
}

/// An update an application metric can get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Add,
    Sub,
    Set,
    Observe,
}

/// Refuses an update the kind does not have, before anything changes.
fn check_op(op: Op, name: &str, kind: AppKind, value: f64) -> Result<(), String> {
    let refused = match (op, kind) {
        (Op::Add, AppKind::Counter) if value < 0.0 => Some(format!(
            "metric {name} is a counter, which cannot go down: Add got {value}; declare it as a gauge to subtract"
        )),
        (Op::Add, AppKind::Counter | AppKind::Gauge) => None,
        (Op::Sub, AppKind::Counter) => Some(format!(
            "metric {name} is a counter, which cannot go down: Sub works on gauges only; declare it as a gauge to subtract"
        )),
        (Op::Set, AppKind::Counter) => Some(format!(
            "metric {name} is a counter: Set works on gauges only; use Add, or declare it as a gauge"
        )),
        (Op::Sub | Op::Set, AppKind::Gauge) => None,
        (Op::Observe, AppKind::Histogram | AppKind::Summary) => None,
        (Op::Observe, AppKind::Counter | AppKind::Gauge) => Some(format!(
            "metric {name} is a {kind}: Observe works on histograms and summaries only; use {}",
            if kind == AppKind::Counter { "Add" } else { "Add, Sub or Set" }
        )),
        (Op::Add | Op::Sub | Op::Set, AppKind::Histogram | AppKind::Summary) => Some(format!(
            "metric {name} is a {kind}: {op:?} works on counters and gauges only; use Observe"
        )),
    };
    refused.map_or(Ok(()), Err)
}

fn finite(v: f64) -> Result<f64, String> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err("the value would overflow".into())
    }
}

fn apply(op: Op, series: &mut Series, buckets: &[f64], value: f64) -> Result<(), String> {
    match series {
        Series::Value(v) => {
            *v = match op {
                Op::Add => finite(*v + value)?,
                Op::Sub => finite(*v - value)?,
                Op::Set => value,
                Op::Observe => return Err("Observe does not apply".into()),
            };
        }
        Series::Histogram { counts, sum, count } => {
            let new_sum = finite(*sum + value)?;
            let i = buckets
                .iter()
                .position(|b| value <= *b)
                .unwrap_or(buckets.len());
            if let Some(c) = counts.get_mut(i) {
                *c += 1;
            }
            *sum = new_sum;
            *count += 1;
        }
        Series::Summary { window, sum, count } => {
            let new_sum = finite(*sum + value)?;
            let now = Instant::now();
            prune(window, now);
            if window.len() >= SUMMARY_WINDOW {
                window.pop_front();
            }
            window.push_back((now, value));
            *sum = new_sum;
            *count += 1;
        }
    }
    Ok(())
}

/// Drops observations older than [`SUMMARY_MAX_AGE`].
fn prune(window: &mut VecDeque<(Instant, f64)>, now: Instant) {
    while window
        .front()
        .is_some_and(|(t, _)| now.saturating_duration_since(*t) > SUMMARY_MAX_AGE)
    {
        window.pop_front();
    }
}

/// The `q` quantile (nearest rank) of sorted values; `NaN` when there are none.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Escapes `# HELP` text as OpenMetrics wants (the encoder writes it as given).
fn escape_help(help: &str) -> String {
    let mut out = String::with_capacity(help.len());
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' => out.push_str("\\\""),
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// Label pairs of one series, with an extra pair when given.
fn pairs<'a>(
    names: &'a [String],
    values: &'a [String],
    extra: Option<(&'a str, &'a str)>,
) -> Vec<(&'a str, &'a str)> {
    names
        .iter()
        .map(String::as_str)
        .zip(values.iter().map(String::as_str))
        .chain(extra)
        .collect()
}

/// Encodes `metric` into `m` for each series (`f` writes one series).
fn for_each_series(
    m: &mut MetricEncoder<'_>,
    metric: &AppMetric,
    mut f: impl FnMut(&Series, MetricEncoder<'_>) -> fmt::Result,
) -> fmt::Result {
    for (values, s) in &metric.series {
        let labels = pairs(&metric.def.labels, values, None);
        f(s, m.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Writes one metric whose series are single values of one kind.
fn encode_simple(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    ty: MetricType,
    metric: &AppMetric,
    value: impl Fn(&Series) -> Option<f64>,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, ty)?;
    let write = |s: &Series, e: MetricEncoder<'_>| -> fmt::Result {
        let Some(v) = value(s) else { return Ok(()) };
        match ty {
            MetricType::Counter => ConstCounter::new(v).encode(e),
            _ => ConstGauge::new(v).encode(e),
        }
    };
    if metric.def.labels.is_empty() {
        // No braces at all for an unlabelled series (not `name{} 1`).
        match metric.series.get(&Vec::new()) {
            Some(s) => write(s, m),
            None => Ok(()),
        }
    } else {
        for_each_series(&mut m, metric, write)
    }
}

/// Writes every application metric at scrape time.
pub(crate) struct AppCollectorEncoder(AppMetrics);

impl fmt::Debug for AppCollectorEncoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("AppCollectorEncoder")
            .field(&self.0.names())
            .finish()
    }
}

impl Collector for AppCollectorEncoder {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let mut table = lock(&(self.0).0);
        let now = Instant::now();
        for metric in table.values_mut() {
            if metric.series.is_empty() {
                continue;
            }
            let help = escape_help(&metric.def.help);
            match metric.def.kind {
                AppKind::Counter => {
                    encode_simple(
                        &mut enc,
                        &metric.family,
                        &help,
                        MetricType::Counter,
                        metric,
                        |s| match s {
                            Series::Value(v) => Some(*v),
                            _ => None,
                        },
                    )?;
                }
                AppKind::Gauge => {
                    encode_simple(
                        &mut enc,
                        &metric.family,
                        &help,
                        MetricType::Gauge,
                        metric,
                        |s| match s {
                            Series::Value(v) => Some(*v),
                            _ => None,
                        },
                    )?;
                }
                AppKind::Histogram => {
                    let buckets = &metric.def.buckets;
                    let mut m =
                        enc.encode_descriptor(&metric.family, &help, None, MetricType::Histogram)?;
                    let write = |s: &Series, mut e: MetricEncoder<'_>| -> fmt::Result {
                        let Series::Histogram { counts, sum, count } = s else {
                            return Ok(());
                        };
                        let b: Vec<(f64, u64)> = buckets
                            .iter()
                            .copied()
                            .chain(std::iter::once(f64::INFINITY))
                            .zip(counts.iter().copied())
                            .collect();
                        e.encode_histogram::<NoLabelSet>(*sum, *count, &b, None)
                    };
                    if metric.def.labels.is_empty() {
                        if let Some(s) = metric.series.get(&Vec::new()) {
                            write(s, m)?;
                        }
                    } else {
                        for_each_series(&mut m, metric, write)?;
                    }
                }
                AppKind::Summary => {
                    for s in metric.series.values_mut() {
                        if let Series::Summary { window, .. } = s {
                            prune(window, now);
                        }
                    }
                    let metric = &*metric;
                    if !metric.def.objectives.is_empty() {
                        let qs: Vec<(f64, String)> = metric
                            .def
                            .objectives
                            .iter()
                            .map(|(q, _)| (*q, format!("{q}")))
                            .collect();
                        let mut m =
                            enc.encode_descriptor(&metric.family, &help, None, MetricType::Gauge)?;
                        for (values, s) in &metric.series {
                            let Series::Summary { window, .. } = s else {
                                continue;
                            };
                            let mut sorted: Vec<f64> = window.iter().map(|(_, v)| *v).collect();
                            sorted.sort_by(f64::total_cmp);
                            for (q, label) in &qs {
                                let labels =
                                    pairs(&metric.def.labels, values, Some(("quantile", label)));
                                ConstGauge::new(quantile(&sorted, *q))
                                    .encode(m.encode_family(&labels)?)?;
                            }
                        }
                    }
                    let sum_name = format!("{}_sum", metric.family);
                    let sum_help = format!("{help} (sum of the observations)");
                    encode_simple(
                        &mut enc,
                        &sum_name,
                        &sum_help,
                        MetricType::Gauge,
                        metric,
                        |s| match s {
                            Series::Summary { sum, .. } => Some(*sum),
                            _ => None,
                        },
                    )?;
                    let count_name = format!("{}_count", metric.family);
                    let count_help = format!("{help} (number of observations)");
                    encode_simple(
                        &mut enc,
                        &count_name,
                        &count_help,
                        MetricType::Gauge,
                        metric,
                        |s| match s {
                            Series::Summary { count, .. } => Some(*count as f64),
                            _ => None,
                        },
                    )?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_case_insensitively() {
        assert_eq!("Counter".parse::<AppKind>(), Ok(AppKind::Counter));
        assert_eq!(" gauge ".parse::<AppKind>(), Ok(AppKind::Gauge));
        assert_eq!("HISTOGRAM".parse::<AppKind>(), Ok(AppKind::Histogram));
        assert_eq!("summary".parse::<AppKind>(), Ok(AppKind::Summary));
        let e = "meter".parse::<AppKind>().unwrap_err();
        assert!(e.contains("counter, gauge, histogram or summary"), "{e}");
    }

    #[test]
    fn full_names_skip_empty_parts() {
        assert_eq!(full_name("", "", "x"), "x");
        assert_eq!(full_name("app", "", "x"), "app_x");
        assert_eq!(full_name("", "jobs", "x"), "jobs_x");
        assert_eq!(full_name("app", "jobs", "x"), "app_jobs_x");
    }

    #[test]
    fn name_rules() {
        for ok in ["a", "_a", "a:b", "A_1"] {
            assert!(valid_metric_name(ok), "{ok}");
        }
        for bad in ["", "1a", "a-b", "a.b", "a b", "ä"] {
            assert!(!valid_metric_name(bad), "{bad}");
        }
        for ok in ["a", "_a", "a_1"] {
            assert!(valid_label_name(ok), "{ok}");
        }
        for bad in ["", "1a", "a:b", "__a", "a-b"] {
            assert!(!valid_label_name(bad), "{bad}");
        }
    }

    #[test]
    fn quantiles_by_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 50.0);
        assert_eq!(quantile(&v, 0.9), 90.0);
        assert_eq!(quantile(&v, 0.99), 99.0);
        assert_eq!(quantile(&v, 0.0), 1.0);
        assert_eq!(quantile(&v, 1.0), 100.0);
        assert!(quantile(&[], 0.5).is_nan());
    }

    #[test]
    fn summary_window_is_bounded() {
        let mut s = Series::Summary {
            window: VecDeque::new(),
            sum: 0.0,
            count: 0,
        };
        for i in 0..(SUMMARY_WINDOW + 10) {
            apply(Op::Observe, &mut s, &[], i as f64).unwrap();
        }
        let Series::Summary { window, count, .. } = &s else {
            unreachable!()
        };
        assert_eq!(window.len(), SUMMARY_WINDOW);
        assert_eq!(*count, (SUMMARY_WINDOW + 10) as u64);
        assert_eq!(window.front().map(|w| w.1), Some(10.0));
    }

    #[test]
    fn old_observations_leave_the_window() {
        let now = Instant::now();
        let Some(old) = now.checked_sub(SUMMARY_MAX_AGE + Duration::from_secs(1)) else {
            return; // the clock started too recently to go back that far
        };
        let mut w: VecDeque<(Instant, f64)> = [(old, 1.0), (now, 2.0)].into_iter().collect();
        prune(&mut w, now);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].1, 2.0);
    }

    #[test]
    fn help_is_escaped() {
        assert_eq!(escape_help("a\\b\n\"c\""), "a\\\\b\\n\\\"c\\\"");
    }
}
