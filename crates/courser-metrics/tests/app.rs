//! Application metrics (RoadRunner's `metrics.Declare/Add/Sub/Set/Observe/
//! Unregister`) through the public API, checked on the rendered exposition.

use courser_metrics::{AppCollector, AppKind, Metrics};

const NONE: &[&str] = &[];

fn collector(kind: AppKind, labels: &[&str]) -> AppCollector {
    AppCollector {
        labels: labels.iter().map(|l| l.to_string()).collect(),
        help: format!("test {kind}"),
        ..AppCollector::new(kind)
    }
}

/// The sample lines of `name` (and its suffixed samples), without metadata.
fn lines(text: &str, prefix: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && l.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

fn has(text: &str, line: &str) {
    assert!(
        text.lines().any(|l| l == line),
        "no line {line:?} in:\n{text}"
    );
}

#[test]
fn counter_with_a_label() {
    let m = Metrics::new();
    m.declare("app_requests", collector(AppKind::Counter, &["route"]))
        .unwrap();
    // A labelled family has no series until it is used: it is left out.
    assert!(!m.render().contains("app_requests"), "{}", m.render());
    m.add("app_requests", 1.0, &["home"]).unwrap();
    m.add("app_requests", 2.5, &["home"]).unwrap();
    m.add("app_requests", 1.0, &["about"]).unwrap();
    let text = m.render();
    has(&text, "# HELP app_requests test counter");
    has(&text, "# TYPE app_requests counter");
    assert_eq!(
        lines(&text, "app_requests"),
        [
            "app_requests_total{route=\"about\"} 1.0",
            "app_requests_total{route=\"home\"} 3.5",
        ]
    );
    assert!(text.ends_with("# EOF\n"));
}

#[test]
fn counter_named_total_is_not_suffixed_twice_and_unlabelled_starts_at_zero() {
    let m = Metrics::new();
    m.declare("jobs_done_total", collector(AppKind::Counter, &[]))
        .unwrap();
    let text = m.render();
    has(&text, "# TYPE jobs_done counter");
    has(&text, "jobs_done_total 0.0");
    m.add("jobs_done_total", 2.0, NONE).unwrap();
    has(&m.render(), "jobs_done_total 2.0");
}

#[test]
fn gauge_add_sub_set_with_namespace_and_subsystem() {
    let m = Metrics::new();
    let c = AppCollector {
        namespace: "app".into(),
        subsystem: "jobs".into(),
        ..collector(AppKind::Gauge, &[])
    };
    m.declare("queue_size", c).unwrap();
    m.add("queue_size", 5.0, NONE).unwrap();
    m.sub("queue_size", 2.0, NONE).unwrap();
    has(&m.render(), "app_jobs_queue_size 3.0");
    m.set("queue_size", -1.5, NONE).unwrap();
    let text = m.render();
    has(&text, "# TYPE app_jobs_queue_size gauge");
    has(&text, "app_jobs_queue_size -1.5");
    // Label values given to a metric without labels are ignored, as in RoadRunner.
    m.add("queue_size", 1.0, &["ignored"]).unwrap();
    has(&m.render(), "app_jobs_queue_size -0.5");
}

#[test]
fn histogram_buckets_are_sorted_and_cumulative() {
    let m = Metrics::new();
    let c = AppCollector {
        buckets: vec![1.0, 0.1, 0.5, f64::INFINITY, 0.5],
        ..collector(AppKind::Histogram, &["type"])
    };
    m.declare("app_latency", c).unwrap();
    for v in [0.05, 0.3, 0.3, 0.7, 3.0] {
        m.observe("app_latency", v, &["db"]).unwrap();
    }
    let text = m.render();
    has(&text, "# TYPE app_latency histogram");
    assert_eq!(
        lines(&text, "app_latency"),
        [
            "app_latency_sum{type=\"db\"} 4.35",
            "app_latency_count{type=\"db\"} 5",
            "app_latency_bucket{le=\"0.1\",type=\"db\"} 1",
            "app_latency_bucket{le=\"0.5\",type=\"db\"} 3",
            "app_latency_bucket{le=\"1.0\",type=\"db\"} 4",
            "app_latency_bucket{le=\"+Inf\",type=\"db\"} 5",
        ]
    );
}

#[test]
fn histogram_default_buckets() {
    let m = Metrics::new();
    m.declare("h", collector(AppKind::Histogram, &[])).unwrap();
    m.observe("h", 0.2, NONE).unwrap();
    let text = m.render();
    has(&text, "h_bucket{le=\"0.005\"} 0");
    has(&text, "h_bucket{le=\"0.25\"} 1");
    has(&text, "h_bucket{le=\"10.0\"} 1");
    has(&text, "h_bucket{le=\"+Inf\"} 1");
    has(&text, "h_count 1");
}

#[test]
fn summary_quantiles_sum_and_count() {
    let m = Metrics::new();
    let c = AppCollector {
        objectives: vec![(0.9, 0.01), (0.5, 0.05)],
        ..collector(AppKind::Summary, &["route"])
    };
    m.declare("app_duration", c).unwrap();
    for v in 1..=100 {
        m.observe("app_duration", f64::from(v), &["home"]).unwrap();
    }
    let text = m.render();
    assert_eq!(
        lines(&text, "app_duration"),
        [
            "app_duration{route=\"home\",quantile=\"0.5\"} 50.0",
            "app_duration{route=\"home\",quantile=\"0.9\"} 90.0",
            "app_duration_sum{route=\"home\"} 5050.0",
            "app_duration_count{route=\"home\"} 100.0",
        ]
    );
    // Written as gauges with a summary's sample names (see the app module docs).
    has(&text, "# TYPE app_duration gauge");
    has(&text, "# TYPE app_duration_sum gauge");
    has(&text, "# TYPE app_duration_count gauge");
}

#[test]
fn summary_without_objectives_has_only_sum_and_count() {
    let m = Metrics::new();
    m.declare("s", collector(AppKind::Summary, &[])).unwrap();
    m.observe("s", 2.0, NONE).unwrap();
    let text = m.render();
    assert_eq!(lines(&text, "s"), ["s_sum 2.0", "s_count 1.0"]);
}

#[test]
fn update_errors_say_what_is_wrong() {
    let m = Metrics::new();
    m.declare("c", collector(AppKind::Counter, &["a", "b"]))
        .unwrap();
    m.declare("g", collector(AppKind::Gauge, &[])).unwrap();
    m.declare("h", collector(AppKind::Histogram, &[])).unwrap();
    let err = |r: Result<(), String>| r.unwrap_err();

    let e = err(m.add("nope", 1.0, NONE));
    assert!(
        e.contains("undefined collector \"nope\"") && e.contains("declare it first"),
        "{e}"
    );
    assert_eq!(
        err(m.add("c", 1.0, &["x"])),
        "metric c has labels [a, b]; got 1 value [x]"
    );
    assert_eq!(
        err(m.add("c", 1.0, NONE)),
        "metric c has labels [a, b]; got 0 values"
    );
    let e = err(m.sub("c", 1.0, &["x", "y"]));
    assert!(
        e.contains("c is a counter") && e.contains("Sub works on gauges only"),
        "{e}"
    );
    let e = err(m.set("c", 1.0, &["x", "y"]));
    assert!(
        e.contains("c is a counter") && e.contains("Set works on gauges only"),
        "{e}"
    );
    let e = err(m.add("c", -1.0, &["x", "y"]));
    assert!(e.contains("cannot go down"), "{e}");
    let e = err(m.observe("c", 1.0, &["x", "y"]));
    assert!(
        e.contains("c is a counter") && e.contains("Observe works on histograms and summaries"),
        "{e}"
    );
    let e = err(m.observe("g", 1.0, NONE));
    assert!(e.contains("g is a gauge") && e.contains("Observe"), "{e}");
    let e = err(m.add("h", 1.0, NONE));
    assert!(
        e.contains("h is a histogram") && e.contains("use Observe"),
        "{e}"
    );
    let e = err(m.set("g", f64::NAN, NONE));
    assert!(e.contains("not a finite number"), "{e}");
    m.set("g", f64::MAX, NONE).unwrap();
    let e = err(m.add("g", f64::MAX, NONE));
    assert!(e.contains("overflow"), "{e}");
    // Nothing failed changed anything.
    assert!(!m.render().contains("c_total"), "{}", m.render());
}

#[test]
fn declare_errors_and_idempotence() {
    let m = Metrics::new();
    let c = collector(AppKind::Counter, &["a"]);
    m.declare("x", c.clone()).unwrap();
    // Every worker declares at boot: the same definition again is fine, even with
    // other help text.
    m.declare(
        "x",
        AppCollector {
            help: "other".into(),
            ..c.clone()
        },
    )
    .unwrap();
    let e = m
        .declare("x", collector(AppKind::Gauge, &["a"]))
        .unwrap_err();
    assert!(
        e.contains("already declared differently") && e.contains("counter") && e.contains("gauge"),
        "{e}"
    );
    let e = m
        .declare("x", collector(AppKind::Counter, &["b"]))
        .unwrap_err();
    assert!(e.contains("already declared differently"), "{e}");

    let bad = [
        ("", collector(AppKind::Gauge, &[]), "needs a name"),
        (
            "a-b",
            collector(AppKind::Gauge, &[]),
            "not a valid Prometheus metric name",
        ),
        (
            "ok",
            AppCollector {
                namespace: "1x".into(),
                ..collector(AppKind::Gauge, &[])
            },
            "\"1x_ok\"",
        ),
        (
            "ok",
            collector(AppKind::Gauge, &["a-b"]),
            "not a valid label name",
        ),
        (
            "ok",
            collector(AppKind::Gauge, &["__a"]),
            "not a valid label name",
        ),
        ("ok", collector(AppKind::Gauge, &["a", "a"]), "listed twice"),
        (
            "ok",
            collector(AppKind::Histogram, &["le"]),
            "label named \"le\"",
        ),
        (
            "ok",
            collector(AppKind::Summary, &["quantile"]),
            "label named \"quantile\"",
        ),
        ("courser_jobs", collector(AppKind::Gauge, &[]), "reserved"),
        (
            "ok",
            AppCollector {
                objectives: vec![(1.5, 0.1)],
                ..collector(AppKind::Summary, &[])
            },
            "objective 1.5",
        ),
        // Sample-name clashes: x exposes x_total.
        (
            "x_total",
            collector(AppKind::Gauge, &[]),
            "would expose x_total",
        ),
    ];
    for (name, c, want) in bad {
        let e = m.declare(name, c).unwrap_err();
        assert!(e.contains(want), "{name}: {e}");
    }
    m.declare("h", collector(AppKind::Histogram, &[])).unwrap();
    let e = m
        .declare("h_count", collector(AppKind::Gauge, &[]))
        .unwrap_err();
    assert!(e.contains("would expose h_count"), "{e}");
    assert_eq!(m.app_metrics(), ["h", "x"]);
}

#[test]
fn unregister_removes_the_family_and_allows_redeclaring() {
    let m = Metrics::new();
    m.declare("x", collector(AppKind::Counter, &[])).unwrap();
    m.add("x", 3.0, NONE).unwrap();
    has(&m.render(), "x_total 3.0");
    assert!(m.unregister("x"));
    assert!(!m.unregister("x"));
    assert!(!m.render().contains("x_total"), "{}", m.render());
    assert!(m.add("x", 1.0, NONE).is_err());
    m.declare("x", collector(AppKind::Gauge, &[])).unwrap();
    has(&m.render(), "x 0.0");
}

#[test]
fn label_values_and_help_are_escaped() {
    let m = Metrics::new();
    let c = AppCollector {
        help: "line one\nsays \"hi\" \\ bye".into(),
        ..collector(AppKind::Gauge, &["v"])
    };
    m.declare("esc", c).unwrap();
    m.set("esc", 1.0, &["a\"b\\c\nd"]).unwrap();
    let text = m.render();
    has(&text, "# HELP esc line one\\nsays \\\"hi\\\" \\\\ bye");
    has(&text, "esc{v=\"a\\\"b\\\\c\\nd\"} 1.0");
}

#[test]
fn too_many_label_sets_are_refused() {
    let m = Metrics::new();
    m.declare("wide", collector(AppKind::Gauge, &["id"]))
        .unwrap();
    for i in 0..courser_metrics::app::MAX_SERIES {
        m.set("wide", 1.0, &[i.to_string()]).unwrap();
    }
    let e = m.set("wide", 1.0, &["one more"]).unwrap_err();
    assert!(e.contains("label sets"), "{e}");
    // An existing label set still updates.
    m.set("wide", 2.0, &["0"]).unwrap();
}

#[test]
fn configured_metrics_are_declared() {
    let text = "version: \"3\"\nmetrics:\n  collect:\n    app_metric:\n      type: histogram\n      help: \"Custom\"\n      labels: [\"type\"]\n      buckets: [0.1, 1]\n    queue_size:\n      type: gauge\n      namespace: app\n      subsystem: jobs\n";
    let loaded = courser_config::parse_str(
        text,
        &courser_config::LoadOptions {
            env: Some(Default::default()),
            ..courser_config::LoadOptions::new("t.yaml")
        },
    )
    .unwrap();
    let cfg = loaded.config.metrics.unwrap();
    let m = Metrics::new();
    m.declare_configured(&cfg).unwrap();
    assert_eq!(m.app_metrics(), ["app_metric", "queue_size"]);
    has(&m.render(), "app_jobs_queue_size 0.0");
    m.observe("app_metric", 0.5, &["x"]).unwrap();
    has(&m.render(), "app_metric_bucket{le=\"1.0\",type=\"x\"} 1");
    // Declaring the same config again (e.g. a second server in one process) is fine.
    m.declare_configured(&cfg).unwrap();
}
