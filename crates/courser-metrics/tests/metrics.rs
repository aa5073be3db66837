//! The exposition against a real pool (the fake worker), and the `/metrics`
//! listener over a raw TCP client.

use courser_metrics::{Metrics, MetricsError, CONTENT_TYPE};
use courser_pool::Pool;
use courser_test_support::{self as support, eventually, fake_worker};
use courser_worker::RelayMode;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One sample line: `name{k="v",...} value`.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A tiny parser for the sample lines of the text format; panics on a line it
/// cannot read, so a malformed exposition fails the test.
fn parse(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a space before the value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("closing brace");
                let mut labels = BTreeMap::new();
                let mut chars = body.chars().peekable();
                while chars.peek().is_some() {
                    let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
                    assert_eq!(chars.next(), Some('"'), "quote in {line:?}");
                    let mut val = String::new();
                    loop {
                        match chars.next().expect("unterminated label value") {
                            '\\' => val.push(chars.next().expect("escaped char")),
                            '"' => break,
                            c => val.push(c),
                        }
                    }
                    labels.insert(key, val);
                    if chars.peek() == Some(&',') {
                        chars.next();
                    }
                }
                (name.to_string(), labels)
            }
        };
        out.push(Sample {
            name,
            labels,
            value,
        });
    }
    out
}

/// The value of the one sample named `name` whose labels include `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert!(found.len() <= 1, "{name} {labels:?} matches {found:?}");
    found.first().map(|s| s.value)
}

fn sum(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

async fn start_pool(name: &str, workers: usize) -> Pool {
    let spec = support::spec(
        vec![fake_worker().display().to_string()],
        RelayMode::Pipes,
        &[],
    );
    let pool = Pool::start(name, support::pool_config(workers), spec)
        .await
        .expect("pool starts");
    assert!(
        eventually(Duration::from_secs(10), || pool.ready_workers() == workers).await,
        "pool {name} did not reach {workers} workers"
    );
    pool
}

/// A raw HTTP/1.1 request; returns the status, the head and the body.
async fn get(addr: std::net::SocketAddr, method: &str, path: &str) -> (u16, String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("response within 10 s")
        .expect("read");
    let text = String::from_utf8(buf).expect("utf-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    (status, head.to_ascii_lowercase(), body.to_string())
}

#[tokio::test]
async fn pool_families_follow_a_real_pool() {
    let pool = start_pool("http", 2).await;
    let metrics = Metrics::new();
    metrics.add_pool(pool.clone());

    let s = parse(&metrics.render());
    let p = ("pool", "http");
    assert_eq!(sum(&s, "courser_workers", &[p]), 2.0);
    assert_eq!(
        value(&s, "courser_workers", &[p, ("state", "ready")]),
        Some(2.0)
    );
    for state in [
        "starting", "working", "draining", "stopping", "exited", "invalid",
    ] {
        assert_eq!(
            value(&s, "courser_workers", &[p, ("state", state)]),
            Some(0.0),
            "{state}"
        );
    }
    assert!(
        value(&s, "courser_worker_memory_bytes", &[p]).is_some_and(|v| v > 0.0),
        "{s:?}"
    );
    assert_eq!(value(&s, "courser_pool_queue_depth", &[p]), Some(0.0));
    for result in ["ok", "failed", "retried", "rejected"] {
        assert_eq!(
            value(&s, "courser_jobs_total", &[p, ("result", result)]),
            Some(0.0),
            "{result}"
        );
    }
    assert_eq!(
        value(&s, "courser_worker_spawns_total", &[p, ("result", "ok")]),
        Some(2.0)
    );
    assert_eq!(
        value(
            &s,
            "courser_worker_spawns_total",
            &[p, ("result", "failed")]
        ),
        Some(0.0)
    );
    for reason in courser_pool::RestartReason::ALL {
        assert_eq!(
            value(
                &s,
                "courser_worker_restarts_total",
                &[p, ("reason", reason.as_str())]
            ),
            Some(0.0),
            "{}",
            reason.as_str()
        );
    }

    // One job that succeeds, one the worker fails, one crash.
    pool.exec(support::job("hello")).await.expect("echo");
    assert!(pool.exec(support::job("error:boom")).await.is_err());
    assert!(pool.exec(support::job("crash:3")).await.is_err());
    let s = parse(&metrics.render());
    assert_eq!(
        value(&s, "courser_jobs_total", &[p, ("result", "ok")]),
        Some(1.0)
    );
    assert_eq!(
        value(&s, "courser_jobs_total", &[p, ("result", "failed")]),
        Some(2.0)
    );
    // Exactly one: a crash during a job is counted once, by the job's failure.
    assert_eq!(
        value(
            &s,
            "courser_worker_restarts_total",
            &[p, ("reason", "crash")]
        ),
        Some(1.0),
        "{s:?}"
    );
    // The crashed worker is replaced; the counters and states catch up.
    assert!(
        eventually(Duration::from_secs(10), || {
            let s = parse(&metrics.render());
            value(&s, "courser_worker_spawns_total", &[p, ("result", "ok")]) == Some(3.0)
                && value(&s, "courser_workers", &[p, ("state", "ready")]) == Some(2.0)
        })
        .await,
        "{}",
        metrics.render()
    );

    // While a job runs, one worker is working.
    let busy = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.exec(support::job("sleep:800")).await })
    };
    assert!(
        eventually(Duration::from_secs(5), || {
            let s = parse(&metrics.render());
            value(&s, "courser_workers", &[p, ("state", "working")]) == Some(1.0)
        })
        .await,
        "{}",
        metrics.render()
    );
    busy.await.expect("join").expect("sleep job");
    pool.stop(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn two_pools_and_a_replaced_name() {
    let http = start_pool("http", 1).await;
    let jobs = start_pool("jobs", 2).await;
    let metrics = Metrics::new();
    metrics.add_pool(http.clone());
    metrics.add_pool(jobs.clone());
    // The same name again replaces, so no series is duplicated (value() asserts).
    metrics.add_pool(jobs.clone());
    let s = parse(&metrics.render());
    assert_eq!(sum(&s, "courser_workers", &[("pool", "http")]), 1.0);
    assert_eq!(sum(&s, "courser_workers", &[("pool", "jobs")]), 2.0);
    assert_eq!(
        value(
            &s,
            "courser_worker_spawns_total",
            &[("pool", "jobs"), ("result", "ok")]
        ),
        Some(2.0)
    );
    http.stop(Duration::from_secs(2)).await;
    jobs.stop(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn http_and_wait_histograms() {
    let metrics = Metrics::new();
    metrics.observe_http(200, Duration::from_millis(3));
    metrics.observe_http(201, Duration::from_millis(30));
    metrics.observe_http(404, Duration::from_micros(500));
    metrics.observe_http(503, Duration::from_secs(2));
    metrics.observe_wait("http", Duration::from_millis(7));
    let s = parse(&metrics.render());
    let requests = "courser_http_requests_total";
    assert_eq!(value(&s, requests, &[("class", "2xx")]), Some(2.0));
    assert_eq!(value(&s, requests, &[("class", "3xx")]), Some(0.0));
    assert_eq!(value(&s, requests, &[("class", "4xx")]), Some(1.0));
    assert_eq!(value(&s, requests, &[("class", "5xx")]), Some(1.0));

    let bucket = "courser_http_request_duration_seconds_bucket";
    let cases = [
        ("2xx", "0.001", 0.0),
        ("2xx", "0.005", 1.0),
        ("2xx", "0.05", 2.0),
        ("2xx", "+Inf", 2.0),
        ("4xx", "0.001", 1.0),
        ("5xx", "1.0", 0.0),
        ("5xx", "2.5", 1.0),
        ("5xx", "10.0", 1.0),
    ];
    for (class, le, want) in cases {
        assert_eq!(
            value(&s, bucket, &[("class", class), ("le", le)]),
            Some(want),
            "{class} le={le}"
        );
    }
    assert_eq!(
        value(
            &s,
            "courser_http_request_duration_seconds_count",
            &[("class", "2xx")]
        ),
        Some(2.0)
    );
    let total = value(
        &s,
        "courser_http_request_duration_seconds_sum",
        &[("class", "2xx")],
    )
    .expect("sum");
    assert!((total - 0.033).abs() < 1e-9, "{total}");

    assert_eq!(
        value(&s, "courser_pool_wait_seconds_count", &[("pool", "http")]),
        Some(1.0)
    );
    assert_eq!(
        value(
            &s,
            "courser_pool_wait_seconds_bucket",
            &[("pool", "http"), ("le", "0.01")]
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn app_metrics_register_through_the_extension_point() {
    use prometheus_client::metrics::counter::Counter;
    let metrics = Metrics::new();
    let c: Counter = Counter::default();
    metrics.with_registry(|r| {
        r.sub_registry_with_prefix("app")
            .register("orders", "Orders placed", c.clone())
    });
    c.inc_by(3);
    let s = parse(&metrics.render());
    assert_eq!(value(&s, "app_orders_total", &[]), Some(3.0));
}

#[tokio::test]
async fn serves_metrics_over_http_and_stops() {
    let pool = start_pool("http", 1).await;
    let metrics = Metrics::new();
    metrics.add_pool(pool.clone());
    metrics.observe_http(200, Duration::from_millis(1));
    let server = metrics.bind("127.0.0.1:0").await.expect("bind");
    let addr = server.local_addr();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(server.run(stop_rx));

    let (status, head, body) = get(addr, "GET", "/metrics").await;
    assert_eq!(status, 200, "{head}");
    assert!(
        head.contains(&format!("content-type: {CONTENT_TYPE}")),
        "{head}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");
    let s = parse(&body);
    assert_eq!(
        value(
            &s,
            "courser_workers",
            &[("pool", "http"), ("state", "ready")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&s, "courser_http_requests_total", &[("class", "2xx")]),
        Some(1.0)
    );

    let (status, head, body) = get(addr, "HEAD", "/metrics").await;
    assert_eq!((status, body.as_str()), (200, ""), "{head}");
    let (status, head, _) = get(addr, "GET", "/").await;
    assert_eq!(status, 302, "{head}");
    assert!(head.contains("location: /metrics"), "{head}");
    let (status, _, _) = get(addr, "GET", "/health").await;
    assert_eq!(status, 404);
    let (status, head, _) = get(addr, "POST", "/metrics").await;
    assert_eq!(status, 405, "{head}");
    assert!(head.contains("allow: get, head"), "{head}");

    stop.send(true).expect("server listening for shutdown");
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("server stops within 10 s")
        .expect("join");
    // (Connecting again is no proof either way: another test may reuse the port.)
    pool.stop(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn serve_stops_when_the_shutdown_sender_is_dropped() {
    let metrics = Metrics::new();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    drop(stop);
    tokio::time::timeout(
        Duration::from_secs(10),
        metrics.serve("127.0.0.1:0", stop_rx),
    )
    .await
    .expect("serve returns")
    .expect("bind");
}

#[tokio::test]
async fn bind_errors_name_the_key() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let metrics = Metrics::new();
    for address in [addr.as_str(), "not-an-address"] {
        match metrics.bind(address).await {
            Err(e @ MetricsError::Bind { .. }) => {
                let msg = e.to_string();
                assert!(
                    msg.contains("metrics.address") && msg.contains(address),
                    "{msg}"
                );
            }
            Err(e) => panic!("{address}: {e}"),
            Ok(s) => panic!("{address}: bound {:?}", s.local_addr()),
        }
    }
}
