//! Application metrics through the real binary: PHP declares and updates its
//! own metrics over RPC with the SDK's `Courser\RPC\RPC` (RoadRunner's
//! `metrics.*` methods), the config declares others (`metrics.collect`), and
//! `/metrics` shows them.

mod common;

use common::*;
use std::process::Command;

struct App {
    s: Server,
    rpc: u16,
    metrics: u16,
}

fn start() -> App {
    let (rpc, metrics) = (free_port(), free_port());
    let worker = worker_script();
    let s = Server::from_yaml(
        move |port, _| {
            format!(
                "version: \"3\"\nrpc:\n  listen: tcp://127.0.0.1:{rpc}\nserver:\n  command: \"php {}\"\nhttp:\n  address: 127.0.0.1:{port}\n  pool:\n    num_workers: 1\n    destroy_timeout: 2s\nmetrics:\n  address: 127.0.0.1:{metrics}\n  collect:\n    queue_size:\n      type: gauge\n      help: \"Jobs waiting\"\n      namespace: app\n      subsystem: jobs\n    app_latency:\n      type: histogram\n      help: \"Time per call\"\n      labels: [\"type\"]\n      buckets: [0.1, 1]\nlogs:\n  level: info\nendure:\n  grace_period: 5s\n",
                worker.display()
            )
        },
        &[],
        None,
    );
    App { s, rpc, metrics }
}

/// Runs `body` as a PHP script with the SDK loaded and `$rpc` connected to the
/// server; returns its stdout (and fails the test on a non-zero exit).
fn php(app: &App, body: &str) -> String {
    let script = app.s.dir.path().join("metrics_client.php");
    let text = format!(
        "<?php\ndeclare(strict_types=1);\nrequire '{}';\nuse Courser\\RPC\\RPC;\nuse Courser\\RPC\\ServiceException;\n$rpc = new RPC('tcp://127.0.0.1:{}');\nfunction attempt(callable $f): string {{\n    try {{ return json_encode($f()); }} catch (ServiceException $e) {{ return 'error: ' . $e->getServerMessage(); }}\n}}\n{body}\n",
        sdk_file("autoload.php").display(),
        app.rpc
    );
    std::fs::write(&script, text).expect("write script");
    let out = Command::new("php").arg(&script).output().expect("run php");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "php failed: {stdout}{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        app.s.log_text()
    );
    stdout
}

/// The `/metrics` sample and metadata lines that mention `needle`.
fn scrape(app: &App, needles: &[&str]) -> Vec<String> {
    let text = body_text(&get(app.metrics, "/metrics"));
    assert!(text.ends_with("# EOF\n"), "{text}");
    text.lines()
        .filter(|l| needles.iter().any(|n| l.contains(n)))
        .map(str::to_string)
        .collect()
}

fn has(lines: &[String], line: &str) {
    assert!(
        lines.iter().any(|l| l == line),
        "no line {line:?} in:\n{}",
        lines.join("\n")
    );
}

#[test]
fn php_declares_and_updates_metrics_over_rpc() {
    let app = start();

    // Declared from the config: there from startup.
    let lines = scrape(&app, &["app_jobs_queue_size", "app_latency"]);
    has(&lines, "# TYPE app_jobs_queue_size gauge");
    has(&lines, "app_jobs_queue_size 0.0");
    // A labelled metric has no series before its first update.
    assert!(
        !lines.iter().any(|l| l.starts_with("app_latency_")),
        "{lines:?}"
    );

    let out = php(
        &app,
        r#"
$counter = ['name' => 'app_requests', 'collector' => [
    'namespace' => '', 'subsystem' => '', 'type' => 'counter',
    'help' => 'Requests by route', 'labels' => ['route'], 'buckets' => [],
]];
echo 'declare: ', attempt(fn () => $rpc->call('metrics.Declare', $counter)), "\n";
// Every worker declares at boot: the same declaration again is accepted.
echo 'declare again: ', attempt(fn () => $rpc->call('metrics.Declare', $counter)), "\n";
echo 'add: ', attempt(fn () => $rpc->call('metrics.Add', ['name' => 'app_requests', 'value' => 1.0, 'labels' => ['home']])), "\n";
echo 'add: ', attempt(fn () => $rpc->call('metrics.Add', ['name' => 'app_requests', 'value' => 2.5, 'labels' => ['home']])), "\n";
echo 'add: ', attempt(fn () => $rpc->call('metrics.Add', ['name' => 'app_requests', 'value' => 1, 'labels' => ['about']])), "\n";
echo 'set: ', attempt(fn () => $rpc->call('metrics.Set', ['name' => 'queue_size', 'value' => 7, 'labels' => []])), "\n";
echo 'sub: ', attempt(fn () => $rpc->call('metrics.Sub', ['name' => 'queue_size', 'value' => 2])), "\n";
echo 'observe: ', attempt(fn () => $rpc->call('metrics.Observe', ['name' => 'app_latency', 'value' => 0.5, 'labels' => ['db']])), "\n";
echo 'sub counter: ', attempt(fn () => $rpc->call('metrics.Sub', ['name' => 'app_requests', 'value' => 1, 'labels' => ['home']])), "\n";
echo 'labels: ', attempt(fn () => $rpc->call('metrics.Add', ['name' => 'app_requests', 'value' => 1, 'labels' => []])), "\n";
echo 'unknown: ', attempt(fn () => $rpc->call('metrics.Add', ['name' => 'nope', 'value' => 1])), "\n";
echo 'redeclare: ', attempt(fn () => $rpc->call('metrics.Declare', ['name' => 'app_requests', 'collector' => ['type' => 'gauge', 'labels' => ['route']]])), "\n";
"#,
    );
    let expect = [
        "declare: true",
        "declare again: true",
        "add: true",
        "add: true",
        "add: true",
        "set: true",
        "sub: true",
        "observe: true",
    ];
    let got: Vec<&str> = out.lines().collect();
    assert_eq!(&got[..expect.len()], expect, "{out}");
    let errors = &got[expect.len()..];
    assert!(
        errors[0].starts_with("sub counter: error: metric app_requests is a counter"),
        "{out}"
    );
    assert_eq!(
        errors[1], "labels: error: metric app_requests has labels [route]; got 0 values",
        "{out}"
    );
    assert!(
        errors[2].starts_with("unknown: error: undefined collector \"nope\""),
        "{out}"
    );
    assert!(
        errors[3].starts_with(
            "redeclare: error: metric \"app_requests\" is already declared differently"
        ),
        "{out}"
    );

    let lines = scrape(
        &app,
        &["app_requests", "app_jobs_queue_size", "app_latency"],
    );
    eprintln!("/metrics after the PHP calls:\n{}", lines.join("\n"));
    has(&lines, "# HELP app_requests Requests by route");
    has(&lines, "# TYPE app_requests counter");
    has(&lines, "app_requests_total{route=\"about\"} 1.0");
    has(&lines, "app_requests_total{route=\"home\"} 3.5");
    has(&lines, "app_jobs_queue_size 5.0");
    has(&lines, "# TYPE app_latency histogram");
    has(&lines, "app_latency_sum{type=\"db\"} 0.5");
    has(&lines, "app_latency_count{type=\"db\"} 1");
    has(&lines, "app_latency_bucket{le=\"0.1\",type=\"db\"} 0");
    has(&lines, "app_latency_bucket{le=\"1.0\",type=\"db\"} 1");
    has(&lines, "app_latency_bucket{le=\"+Inf\",type=\"db\"} 1");

    // Unregister: the family leaves /metrics, and a second try is an error.
    let out = php(
        &app,
        r#"
echo 'unregister: ', attempt(fn () => $rpc->call('metrics.Unregister', 'app_requests')), "\n";
echo 'again: ', attempt(fn () => $rpc->call('metrics.Unregister', 'app_requests')), "\n";
"#,
    );
    let got: Vec<&str> = out.lines().collect();
    assert_eq!(got[0], "unregister: true", "{out}");
    assert!(
        got[1].starts_with("again: error: undefined collector \"app_requests\""),
        "{out}"
    );
    assert!(scrape(&app, &["app_requests"]).is_empty());
    // The rest is untouched.
    has(
        &scrape(&app, &["app_jobs_queue_size"]),
        "app_jobs_queue_size 5.0",
    );
}

#[test]
fn an_invalid_collect_entry_stops_startup_with_its_key() {
    let cases = [
        // Caught when the config is loaded.
        (
            "    bad-name:\n      type: counter\n",
            "metrics.collect.bad-name: \"bad-name\" is not valid",
        ),
        // Caught when the metrics are declared: x exposes x_total already.
        (
            "    x:\n      type: counter\n    x_total:\n      type: gauge\n",
            "metrics.collect.x_total: metric \"x_total\": the gauge x_total would expose x_total",
        ),
        (
            "    courser_jobs:\n      type: gauge\n",
            "metrics.collect.courser_jobs: metric \"courser_jobs\": the name \"courser_jobs\" starts with \"courser_\", which is reserved",
        ),
    ];
    for (collect, want) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join(".rr.yaml");
        std::fs::write(
            &cfg,
            format!(
                "version: \"3\"\nserver:\n  command: \"php {}\"\nhttp:\n  address: 127.0.0.1:{}\n  pool:\n    num_workers: 1\nmetrics:\n  address: 127.0.0.1:{}\n  collect:\n{collect}",
                worker_script().display(),
                free_port(),
                free_port()
            ),
        )
        .expect("write config");
        let out = Command::new(courser())
            .args(["serve", "-c"])
            .arg(&cfg)
            .output()
            .expect("run courser");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert!(err.contains(want), "want {want:?} in:\n{err}");
    }
}
