//! `/health` and `/ready` over a raw TCP client, against real pools (the fake
//! worker).

use courser_pool::{Pool, State};
use courser_status::{Status, StatusError};
use courser_test_support::{self as support, eventually, fake_worker};
use courser_worker::RelayMode;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

async fn start_pool(name: &str, cfg: courser_pool::PoolConfig) -> Pool {
    let spec = support::spec(
        vec![fake_worker().display().to_string()],
        RelayMode::Pipes,
        &[],
    );
    let workers = if cfg.debug { 0 } else { cfg.num_workers };
    let pool = Pool::start(name, cfg, spec).await.expect("pool starts");
    assert!(
        eventually(Duration::from_secs(10), || pool.ready_workers() == workers).await,
        "pool {name} did not reach {workers} workers"
    );
    pool
}

/// A status server on a free port; dropping the sender stops it.
async fn serve(status: &Status) -> (SocketAddr, watch::Sender<bool>) {
    let server = status.bind("127.0.0.1:0").await.expect("bind");
    let addr = server.local_addr();
    let (stop, stop_rx) = watch::channel(false);
    tokio::spawn(server.run(stop_rx));
    (addr, stop)
}

/// A raw HTTP/1.1 request; returns the status, the head and the body.
async fn request(addr: SocketAddr, method: &str, path: &str) -> (u16, String, String) {
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

/// GET `path`: the status and the JSON body.
async fn get(addr: SocketAddr, path: &str) -> (u16, Value) {
    let (status, head, body) = request(addr, "GET", path).await;
    assert!(head.contains("content-type: application/json"), "{head}");
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body:?}"));
    (status, v)
}

fn ok(name: &str) -> Value {
    json!({"plugin_name": name, "error_message": "", "status_code": 200})
}

/// The status codes per plugin in a body.
fn codes(body: &Value) -> Vec<(String, u64)> {
    body.as_array()
        .expect("a JSON list")
        .iter()
        .map(|p| {
            (
                p["plugin_name"].as_str().expect("plugin_name").to_string(),
                p["status_code"].as_u64().expect("status_code"),
            )
        })
        .collect()
}

/// A path, the overall status it answers, and each plugin's code.
type Case<'a> = (&'a str, u16, &'a [(&'a str, u64)]);

fn pairs(v: &[(&str, u64)]) -> Vec<(String, u64)> {
    v.iter().map(|(n, c)| (n.to_string(), *c)).collect()
}

#[tokio::test]
async fn healthy_pool_is_healthy_and_ready() {
    let pool = start_pool("http", support::pool_config(2)).await;
    let status = Status::new(503);
    status.add_pool(pool.clone());
    let (addr, _stop) = serve(&status).await;

    for path in [
        "/health?plugin=http",
        "/ready?plugin=http",
        "/health",
        "/ready",
    ] {
        let (code, body) = get(addr, path).await;
        assert_eq!((code, body), (200, json!([ok("http")])), "{path}");
    }
    // The exact bytes RoadRunner sends.
    let (_, _, raw) = request(addr, "GET", "/health?plugin=http").await;
    assert_eq!(
        raw,
        r#"[{"plugin_name":"http","error_message":"","status_code":200}]"#
    );
    let (code, head, body) = request(addr, "HEAD", "/ready?plugin=http").await;
    assert_eq!((code, body.as_str()), (200, ""), "{head}");
    pool.stop(Duration::from_secs(2)).await;
}

/// Readiness means "a worker is idle now": a pool whose workers are all busy is
/// healthy but not ready, and ready again once one is free.
#[tokio::test]
async fn busy_pool_is_healthy_but_not_ready() {
    let pool = start_pool("http", support::pool_config(1)).await;
    let status = Status::new(503);
    status.add_pool(pool.clone());
    let (addr, _stop) = serve(&status).await;

    let busy = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.exec(support::job("sleep:1500")).await })
    };
    assert!(
        eventually(Duration::from_secs(5), || {
            pool.workers().iter().all(|w| w.state == State::Working)
        })
        .await,
        "the worker never turned busy"
    );
    let (code, body) = get(addr, "/health?plugin=http").await;
    assert_eq!((code, body), (200, json!([ok("http")])));
    let (code, body) = get(addr, "/ready?plugin=http").await;
    assert_eq!(
        (code, body),
        (
            503,
            json!([{
                "plugin_name": "http",
                "error_message": "no worker is ready: all 1 are busy",
                "status_code": 503
            }])
        )
    );

    busy.await.expect("join").expect("sleep job");
    let (code, body) = get(addr, "/ready?plugin=http").await;
    assert_eq!((code, body), (200, json!([ok("http")])));
    pool.stop(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn draining_fails_ready_but_not_health() {
    let pool = start_pool("http", support::pool_config(1)).await;
    let status = Status::new(503);
    status.add_pool(pool.clone());
    let (addr, _stop) = serve(&status).await;

    status.set_draining(true);
    let (code, body) = get(addr, "/ready?plugin=http").await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(codes(&body), pairs(&[("http", 503)]));
    assert!(
        body[0]["error_message"]
            .as_str()
            .is_some_and(|m| m.contains("shutting down")),
        "{body}"
    );
    let (code, body) = get(addr, "/health?plugin=http").await;
    assert_eq!((code, body), (200, json!([ok("http")])));

    status.set_draining(false);
    let (code, _) = get(addr, "/ready?plugin=http").await;
    assert_eq!(code, 200);
    pool.stop(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn several_plugins_and_unknown_ones() {
    let http = start_pool("http", support::pool_config(1)).await;
    let jobs = start_pool("jobs", support::pool_config(1)).await;
    let status = Status::new(503);
    status.add_pool(http.clone());
    status.add_pool(jobs.clone());
    let (addr, _stop) = serve(&status).await;

    let cases: [Case; 6] = [
        (
            "/health?plugin=http&plugin=jobs",
            200,
            &[("http", 200), ("jobs", 200)],
        ),
        // Order as asked; duplicates once.
        (
            "/ready?plugin=jobs&plugin=http&plugin=jobs",
            200,
            &[("jobs", 200), ("http", 200)],
        ),
        // No plugin parameter: every pool.
        ("/health", 200, &[("http", 200), ("jobs", 200)]),
        ("/health?plugin=nope", 404, &[("nope", 404)]),
        (
            "/ready?plugin=http&plugin=nope",
            404,
            &[("http", 200), ("nope", 404)],
        ),
        // Other parameters are ignored.
        ("/health?x=1&plugin=jobs", 200, &[("jobs", 200)]),
    ];
    for (path, want_code, want) in cases {
        let (code, body) = get(addr, path).await;
        assert_eq!((code, codes(&body)), (want_code, pairs(want)), "{path}");
    }
    let (_, body) = get(addr, "/health?plugin=nope").await;
    assert_eq!(
        body[0]["error_message"],
        json!("no plugin named \"nope\" reports status; known: http, jobs")
    );

    // One busy pool fails /ready for itself only.
    let busy = {
        let jobs = jobs.clone();
        tokio::spawn(async move { jobs.exec(support::job("sleep:1000")).await })
    };
    assert!(
        eventually(Duration::from_secs(5), || {
            jobs.workers().iter().all(|w| w.state == State::Working)
        })
        .await
    );
    let (code, body) = get(addr, "/ready?plugin=http&plugin=jobs").await;
    assert_eq!(
        (code, codes(&body)),
        (503, pairs(&[("http", 200), ("jobs", 503)]))
    );
    busy.await.expect("join").expect("sleep job");
    http.stop(Duration::from_secs(2)).await;
    jobs.stop(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn stopped_pool_answers_the_configured_code() {
    let pool = start_pool("http", support::pool_config(1)).await;
    let status = Status::new(500);
    status.add_pool(pool.clone());
    let (addr, _stop) = serve(&status).await;
    pool.stop(Duration::from_secs(2)).await;

    for path in ["/health?plugin=http", "/ready?plugin=http"] {
        let (code, body) = get(addr, path).await;
        assert_eq!(code, 500, "{path}: {body}");
        assert_eq!(codes(&body), pairs(&[("http", 500)]), "{path}");
        assert!(
            body[0]["error_message"]
                .as_str()
                .is_some_and(|m| m.starts_with("no worker is ready or working")),
            "{path}: {body}"
        );
    }
}

#[tokio::test]
async fn debug_pool_keeps_no_workers_but_is_ready() {
    let mut cfg = support::pool_config(2);
    cfg.debug = true;
    let pool = start_pool("http", cfg).await;
    assert!(pool.workers().is_empty());
    let status = Status::new(503);
    status.add_pool(pool.clone());
    let (addr, _stop) = serve(&status).await;
    for path in ["/health?plugin=http", "/ready?plugin=http"] {
        let (code, body) = get(addr, path).await;
        assert_eq!((code, body), (200, json!([ok("http")])), "{path}");
    }
    pool.stop(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn other_endpoints_and_methods() {
    let status = Status::new(503);
    let (addr, _stop) = serve(&status).await;
    let (code, body) = get(addr, "/jobs").await;
    assert_eq!(code, 404);
    assert_eq!(codes(&body), pairs(&[("jobs", 404)]));
    let (code, body) = get(addr, "/metrics").await;
    assert_eq!(code, 404, "{body}");
    let (code, head, _) = request(addr, "POST", "/health").await;
    assert_eq!(code, 405, "{head}");
    assert!(head.contains("allow: get, head"), "{head}");
}

#[tokio::test]
async fn stops_on_shutdown_and_bind_errors_name_the_key() {
    let status = Status::default();
    let server = courser_status::bind("127.0.0.1:0", status.clone())
        .await
        .expect("bind");
    let addr = server.local_addr();
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(server.run(stop_rx));
    let (code, _) = get(addr, "/health").await;
    assert_eq!(code, 200);

    // The address is taken while the server runs.
    match status.bind(&addr.to_string()).await {
        Err(e @ StatusError::Bind { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("status.address") && msg.contains(&addr.to_string()),
                "{msg}"
            );
        }
        Ok(s) => panic!("bound {:?} twice", s.local_addr()),
    }

    stop.send(true).expect("server listening for shutdown");
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("server stops within 10 s")
        .expect("join");
    // (Connecting again is no proof either way: another test may reuse the port.)
    let _ = addr;
}
