//! The nats driver against a real NATS JetStream: the one on 127.0.0.1:4222,
//! else a `nats-server -js` started on a free loopback port, else the tests
//! say what to install and pass.

use std::sync::Arc;
use std::time::{Duration, Instant};

use courser_config::{Connections, DriverOptions, PipelineConfig};
use courser_jobs::drivers::nats::open;
use courser_jobs::{sink_pair, Delivery, Driver, Job, OpenArgs, SinkReader};

struct Broker {
    addr: String,
    _child: Option<std::process::Child>,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(c) = self._child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn broker() -> Option<Broker> {
    if std::net::TcpStream::connect("127.0.0.1:4222").is_ok() {
        return Some(Broker {
            addr: "nats://127.0.0.1:4222".into(),
            _child: None,
            _dir: None,
        });
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let dir = tempfile::tempdir().ok()?;
    let child = std::process::Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    let Ok(child) = child else {
        eprintln!(
            "skipping: no NATS on 127.0.0.1:4222 and no nats-server; apt-get install nats-server"
        );
        return None;
    };
    let hostport = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(&hostport).is_err() {
        if Instant::now() > deadline {
            eprintln!("skipping: nats-server did not listen on {hostport}");
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(Broker {
        addr: format!("nats://{hostport}"),
        _child: Some(child),
        _dir: Some(dir),
    })
}

fn unique(prefix: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{n}", std::process::id())
}

fn pipeline(name: &str, yaml: &str) -> PipelineConfig {
    let map: serde_yaml::Mapping = serde_yaml::from_str(if yaml.is_empty() { "{}" } else { yaml })
        .unwrap_or_else(|e| panic!("{yaml}: {e}"));
    PipelineConfig {
        name: name.to_string(),
        driver: "nats".into(),
        priority: 10,
        config: DriverOptions::new(format!("jobs.pipelines.{name}.config"), map),
    }
}

async fn open_with(b: &Broker, name: &str, yaml: &str) -> Arc<dyn Driver> {
    let p = pipeline(name, yaml);
    let conns = Connections {
        nats_addr: Some(b.addr.clone()),
        ..Connections::default()
    };
    open(OpenArgs {
        pipeline: &p,
        connections: &conns,
        timeout: Duration::from_secs(5),
    })
    .await
    .unwrap_or_else(|e| panic!("open: {e}"))
}

/// Deletes the test's stream (and with it its consumer).
async fn cleanup(b: &Broker, stream: &str) {
    let client = async_nats::connect(b.addr.as_str()).await.expect("connect");
    let js = async_nats::jetstream::new(client);
    let _ = js.delete_stream(stream).await;
}

fn job(id: &str) -> Job {
    let mut j = Job {
        name: "ping".into(),
        id: id.into(),
        payload: bytes::Bytes::from(format!("payload-{id}")),
        ..Job::default()
    };
    j.headers.insert("h".into(), vec!["1".into(), "two".into()]);
    j
}

async fn next_within(r: &SinkReader, d: Duration) -> Option<Delivery> {
    tokio::time::timeout(d, r.next()).await.ok().flatten()
}

async fn expect_next(r: &SinkReader) -> Delivery {
    next_within(r, Duration::from_secs(10))
        .await
        .unwrap_or_else(|| panic!("no delivery within 10 s"))
}

/// Polls stat until `f` holds.
async fn stat_until(d: &Arc<dyn Driver>, f: impl Fn(&courser_jobs::QueueStat) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = d.stat().await.expect("stat");
        if f(&s) {
            return;
        }
        assert!(Instant::now() < deadline, "stat never matched: {s:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn push_consume_ack_and_nothing_comes_back() {
    let Some(b) = broker() else { return };
    let name = unique("rt");
    let d = open_with(&b, &name, "").await;
    d.push(job("a")).await.expect("push");
    stat_until(&d, |s| s.ready_jobs == 1 && s.queue == name).await;
    let (sink, r) = sink_pair(100, 10);
    d.resume(sink).await.expect("resume");
    let got = expect_next(&r).await;
    assert_eq!(got.job.id, "a");
    assert_eq!(got.job.name, "ping");
    assert_eq!(&got.job.payload[..], b"payload-a");
    assert_eq!(got.job.headers["h"], vec!["1", "two"]);
    assert_eq!(got.job.options.pipeline, name);
    assert_eq!(got.queue.as_deref(), Some(name.as_str()));
    stat_until(&d, |s| s.reserved == 1 && s.ready_jobs == 0).await;
    got.acker.ack().await.expect("ack");
    stat_until(&d, |s| s.reserved == 0 && s.ready_jobs == 0).await;
    d.stop().await.expect("stop");
    drop(d);

    let d = open_with(&b, &name, "{ack_wait: 1s}").await;
    let (sink, r) = sink_pair(100, 10);
    d.resume(sink).await.expect("resume");
    assert!(next_within(&r, Duration::from_millis(1500)).await.is_none());
    d.stop().await.expect("stop");
    cleanup(&b, &name).await;
}

#[tokio::test]
async fn nack_requeue_redelivers_and_nack_false_drops() {
    let Some(b) = broker() else { return };
    let name = unique("nack");
    let d = open_with(&b, &name, "{ack_wait: 1s}").await;
    let (sink, r) = sink_pair(100, 10);
    d.resume(sink).await.expect("resume");
    d.push(job("n")).await.expect("push");
    let first = expect_next(&r).await;
    let t = Instant::now();
    first.acker.nack(true).await.expect("nack requeue");
    let again = expect_next(&r).await;
    println!("NAK redelivered after {:?}", t.elapsed());
    assert!(
        t.elapsed() < Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(again.job.id, "n");
    assert_eq!(&again.job.payload[..], b"payload-n");
    again.acker.nack(false).await.expect("nack drop");
    // Past ack_wait: a TERMed message does not come back.
    assert!(next_within(&r, Duration::from_millis(1800)).await.is_none());
    stat_until(&d, |s| s.reserved == 0 && s.ready_jobs == 0).await;
    d.stop().await.expect("stop");
    cleanup(&b, &name).await;
}

#[tokio::test]
async fn unacked_comes_back_after_the_driver_is_dropped_without_stop() {
    let Some(b) = broker() else { return };
    let name = unique("kill");
    let cfg = "{ack_wait: 1s}";
    let d = open_with(&b, &name, cfg).await;
    let (sink, r) = sink_pair(100, 10);
    d.resume(sink).await.expect("resume");
    d.push(job("u")).await.expect("push");
    let got = expect_next(&r).await;
    // kill -9: no stop(), no NAK from the acker's drop.
    drop(d);
    std::mem::forget(got);
    let t = Instant::now();
    let d = open_with(&b, &name, cfg).await;
    let (sink, r) = sink_pair(100, 10);
    d.resume(sink).await.expect("resume");
    let back = expect_next(&r).await;
    println!(
        "unsettled delivery back after {:?} (ack_wait 1 s)",
        t.elapsed()
    );
    assert_eq!(back.job.id, "u");
    back.acker.ack().await.expect("ack");
    d.stop().await.expect("stop");
    cleanup(&b, &name).await;
}

#[tokio::test]
async fn a_dropped_acker_naks_at_once() {
    let Some(b) = broker() else { return };
    let name = unique("drop");
    let d = open_with(&b, &name, "{ack_wait: 30s}").await;
    let (sink, r) = sink_pair(100, 10);
    d.resume(sink).await.expect("resume");
    d.push(job("x")).await.expect("push");
    let got = expect_next(&r).await;
    drop(got);
    // Well before ack_wait (30 s): the drop NAKed it.
    let back = next_within(&r, Duration::from_secs(3))
        .await
        .expect("redelivered after the drop");
    assert_eq!(back.job.id, "x");
    back.acker.ack().await.expect("ack");
    d.stop().await.expect("stop");
    cleanup(&b, &name).await;
}

#[tokio::test]
async fn delay_holds_a_job_back() {
    let Some(b) = broker() else { return };
    let name = unique("delay");
    let d = open_with(&b, &name, "").await;
    let (sink, r) = sink_pair(100, 10);
    d.resume(sink).await.expect("resume");
    let mut j = job("late");
    j.options.delay = 2;
    let t = Instant::now();
    d.push(j).await.expect("push");
    d.push(job("now")).await.expect("push");
    let first = expect_next(&r).await;
    assert_eq!(first.job.id, "now", "the undelayed job is not held up");
    first.acker.ack().await.expect("ack");
    stat_until(&d, |s| s.delayed == 1 || !r.is_empty()).await;
    let got = expect_next(&r).await;
    let waited = t.elapsed();
    println!("delay 2 s delivered after {waited:?}");
    assert_eq!(got.job.id, "late");
    assert!(waited >= Duration::from_secs(2), "{waited:?}");
    assert!(waited < Duration::from_secs(4), "{waited:?}");
    assert_eq!(got.job.options.delay, 2);
    got.acker.ack().await.expect("ack");
    stat_until(&d, |s| s.delayed == 0 && s.reserved == 0).await;
    d.stop().await.expect("stop");
    cleanup(&b, &name).await;
}

#[tokio::test]
async fn prefetch_bounds_unsettled_deliveries() {
    let Some(b) = broker() else { return };
    let name = unique("prefetch");
    let d = open_with(&b, &name, "{prefetch: 3}").await;
    let jobs = (0..5).map(|i| job(&format!("p{i}"))).collect();
    d.push_batch(jobs).await.expect("push");
    let (sink, r) = sink_pair(100, 10);
    d.resume(sink).await.expect("resume");
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(expect_next(&r).await);
    }
    assert!(next_within(&r, Duration::from_millis(1200)).await.is_none());
    stat_until(&d, |s| s.reserved == 3 && s.ready_jobs == 2).await;
    held.pop().expect("one").acker.ack().await.expect("ack");
    held.push(expect_next(&r).await);
    assert!(next_within(&r, Duration::from_millis(1200)).await.is_none());
    for h in held {
        h.acker.ack().await.expect("ack");
    }
    let last = expect_next(&r).await;
    last.acker.ack().await.expect("ack");
    d.stop().await.expect("stop");
    cleanup(&b, &name).await;
}

#[tokio::test]
async fn pause_stops_and_resume_restarts() {
    let Some(b) = broker() else { return };
    let name = unique("pause");
    let d = open_with(&b, &name, "").await;
    let (sink, r) = sink_pair(100, 10);
    d.resume(sink.clone()).await.expect("resume");
    d.push(job("1")).await.expect("push");
    let one = expect_next(&r).await;
    d.pause().await.expect("pause");
    d.push(job("2")).await.expect("push");
    assert!(next_within(&r, Duration::from_millis(1200)).await.is_none());
    // Deliveries out before the pause stay ackable.
    one.acker.ack().await.expect("ack after pause");
    d.resume(sink).await.expect("resume again");
    let two = expect_next(&r).await;
    assert_eq!(two.job.id, "2");
    two.acker.ack().await.expect("ack");
    d.stop().await.expect("stop");
    cleanup(&b, &name).await;
}

#[tokio::test]
async fn two_drivers_share_the_consumer() {
    let Some(b) = broker() else { return };
    let name = unique("share");
    let d1 = open_with(&b, &name, "{prefetch: 4}").await;
    let d2 = open_with(&b, &name, "{prefetch: 4}").await;
    let (s1, r1) = sink_pair(100, 10);
    let (s2, r2) = sink_pair(100, 10);
    d1.resume(s1).await.expect("resume");
    d2.resume(s2).await.expect("resume");
    let n = 40;
    d1.push_batch((0..n).map(|i| job(&format!("s{i}"))).collect())
        .await
        .expect("push");
    let mut seen = std::collections::HashSet::new();
    let (mut c1, mut c2) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.len() < n {
        assert!(Instant::now() < deadline, "only {} of {n}", seen.len());
        tokio::select! {
            Some(d) = r1.next() => { c1 += 1; seen.insert(d.job.id.clone()); tokio::time::sleep(Duration::from_millis(5)).await; d.acker.ack().await.expect("ack"); }
            Some(d) = r2.next() => { c2 += 1; seen.insert(d.job.id.clone()); tokio::time::sleep(Duration::from_millis(5)).await; d.acker.ack().await.expect("ack"); }
        }
    }
    println!("driver 1 took {c1}, driver 2 took {c2}");
    assert_eq!(c1 + c2, n, "duplicates");
    assert!(c1 > 0 && c2 > 0, "{c1} / {c2}");
    d1.stop().await.expect("stop");
    d2.stop().await.expect("stop");
    cleanup(&b, &name).await;
}

#[tokio::test]
async fn delete_after_ack_removes_the_message_from_the_stream() {
    let Some(b) = broker() else { return };
    let name = unique("dela");
    let d = open_with(&b, &name, "{delete_after_ack: true}").await;
    let (sink, r) = sink_pair(100, 10);
    d.resume(sink).await.expect("resume");
    d.push(job("z")).await.expect("push");
    expect_next(&r).await.acker.ack().await.expect("ack");
    let client = async_nats::connect(b.addr.as_str()).await.expect("connect");
    let js = async_nats::jetstream::new(client);
    let mut st = js.get_stream(&name).await.expect("stream");
    assert_eq!(st.info().await.expect("info").state.messages, 0);
    d.stop().await.expect("stop");
    cleanup(&b, &name).await;
}

#[tokio::test]
async fn broker_down_at_open_names_the_address() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let addr = format!("nats://127.0.0.1:{port}");
    let p = pipeline("down", &format!("{{addr: '{addr}'}}"));
    let t = Instant::now();
    let r = open(OpenArgs {
        pipeline: &p,
        connections: &Connections::default(),
        timeout: Duration::from_secs(2),
    })
    .await;
    let e = r.err().expect("open must fail").to_string();
    println!("{e} (after {:?})", t.elapsed());
    assert!(e.contains(&addr), "{e}");
    assert!(t.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn throughput_10k() {
    let Some(b) = broker() else { return };
    let name = unique("bench");
    let d = open_with(&b, &name, "{prefetch: 100}").await;
    let (sink, r) = sink_pair(10_000, 10);
    d.resume(sink).await.expect("resume");
    let n = 10_000usize;
    let start = Instant::now();
    let base = std::time::SystemTime::UNIX_EPOCH;
    let pusher = {
        let d = d.clone();
        tokio::spawn(async move {
            for chunk in 0..(n / 500) {
                let jobs = (0..500)
                    .map(|i| {
                        let mut j = job(&format!("b{}", chunk * 500 + i));
                        let now = std::time::SystemTime::now()
                            .duration_since(base)
                            .map(|d| d.as_nanos())
                            .unwrap_or(0);
                        j.payload = bytes::Bytes::from(now.to_string());
                        j
                    })
                    .collect();
                d.push_batch(jobs).await.expect("push");
            }
        })
    };
    let mut lat = Vec::with_capacity(n);
    let mut acks = Vec::with_capacity(n);
    for _ in 0..n {
        let got = expect_next(&r).await;
        let sent: u128 = std::str::from_utf8(&got.job.payload)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        // Acked concurrently, as the plugin's workers do (prefetch bounds it).
        acks.push(tokio::spawn(async move {
            got.acker.ack().await.expect("ack");
            let now = std::time::SystemTime::now()
                .duration_since(base)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            now.saturating_sub(sent)
        }));
    }
    for a in acks {
        lat.push(a.await.expect("ack task"));
    }
    pusher.await.expect("pusher");
    let el = start.elapsed();
    lat.sort_unstable();
    println!(
        "nats: {n} jobs pushed (push_batch of 500) and consumed+acked in {el:?}: {:.0} jobs/s; push→ack p50 {:.2} ms, p99 {:.2} ms",
        n as f64 / el.as_secs_f64(),
        lat[n / 2] as f64 / 1e6,
        lat[n * 99 / 100] as f64 / 1e6
    );
    stat_until(&d, |s| s.reserved == 0 && s.ready_jobs == 0).await;

    // Unloaded: one job at a time, push → delivered → acked.
    let mut one = Vec::new();
    for i in 0..200 {
        let t = Instant::now();
        d.push(job(&format!("l{i}"))).await.expect("push");
        expect_next(&r).await.acker.ack().await.expect("ack");
        one.push(t.elapsed());
    }
    one.sort_unstable();
    println!("unloaded push→ack: p50 {:?}, p99 {:?}", one[100], one[198]);
    d.stop().await.expect("stop");
    cleanup(&b, &name).await;
}

#[tokio::test]
async fn delayed_jobs_do_not_take_prefetch_slots() {
    let Some(b) = broker() else { return };
    let name = unique("dpend");
    let d = open_with(&b, &name, "{prefetch: 2}").await;
    let (sink, r) = sink_pair(100, 10);
    d.resume(sink).await.expect("resume");
    for i in 0..2 {
        let mut j = job(&format!("late{i}"));
        j.options.delay = 3;
        d.push(j).await.expect("push");
    }
    stat_until(&d, |s| s.delayed == 2).await;
    println!("{:?}", d.stat().await.expect("stat"));
    let t = Instant::now();
    d.push(job("now")).await.expect("push");
    let got = expect_next(&r).await;
    println!(
        "undelayed job behind 2 delayed (prefetch 2) after {:?}: {}",
        t.elapsed(),
        got.job.id
    );
    assert_eq!(
        got.job.id, "now",
        "delayed jobs must not stall the consumer"
    );
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    got.acker.ack().await.expect("ack");
    for _ in 0..2 {
        expect_next(&r).await.acker.ack().await.expect("ack");
    }
    d.stop().await.expect("stop");
    cleanup(&b, &name).await;
}

/// A server of our own, killed mid-run: pushes fail within the timeout,
/// and work again once it is back on the same port and store.
#[tokio::test]
async fn push_fails_within_the_timeout_while_the_server_is_down() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let dir = tempfile::tempdir().expect("dir");
    let start = || {
        std::process::Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
    };
    let Ok(child) = start() else {
        eprintln!("skipping: no nats-server; apt-get install nats-server");
        return;
    };
    let hostport = format!("127.0.0.1:{port}");
    let wait_up = || {
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(&hostport).is_err() {
            assert!(Instant::now() < deadline, "nats-server not up");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_up();
    let mut b = Broker {
        addr: format!("nats://{hostport}"),
        _child: Some(child),
        _dir: None,
    };
    let p = pipeline("outage", "");
    let conns = Connections {
        nats_addr: Some(b.addr.clone()),
        ..Connections::default()
    };
    let d = open(OpenArgs {
        pipeline: &p,
        connections: &conns,
        timeout: Duration::from_secs(2),
    })
    .await
    .expect("open");
    d.push(job("before")).await.expect("push");
    if let Some(c) = b._child.as_mut() {
        let _ = c.kill();
        let _ = c.wait();
    }
    let t = Instant::now();
    let e = d.push(job("during")).await.expect_err("push must fail");
    println!("push during the outage: {e} (after {:?})", t.elapsed());
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert!(e.to_string().contains(&hostport), "{e}");
    b._child = Some(start().expect("restart"));
    wait_up();
    let deadline = Instant::now() + Duration::from_secs(15);
    while d.push(job("after")).await.is_err() {
        assert!(Instant::now() < deadline, "pushes never recovered");
    }
    let (sink, r) = sink_pair(100, 10);
    d.resume(sink).await.expect("resume");
    let mut ids = Vec::new();
    while ids.len() < 2 {
        let got = expect_next(&r).await;
        ids.push(got.job.id.clone());
        got.acker.ack().await.expect("ack");
    }
    assert!(
        ids.contains(&"before".to_string()) && ids.contains(&"after".to_string()),
        "{ids:?}"
    );
    d.stop().await.expect("stop");
}
