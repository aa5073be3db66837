//! The amqp driver against the real RabbitMQ on 127.0.0.1:5672 (guest/guest),
//! or one started from Debian's `rabbitmq-server` is not attempted here (it
//! takes tens of seconds to boot): without a broker the tests say what to
//! install and pass.

use std::sync::Arc;
use std::time::{Duration, Instant};

use courser_config::{Connections, DriverOptions, PipelineConfig};
use courser_jobs::drivers::amqp::open;
use courser_jobs::{sink_pair, Delivery, Driver, Job, OpenArgs, SinkReader};

const ADDR: &str = "amqp://guest:guest@127.0.0.1:5672/";

fn broker() -> bool {
    if std::net::TcpStream::connect("127.0.0.1:5672").is_ok() {
        return true;
    }
    eprintln!("skipping: no RabbitMQ on 127.0.0.1:5672; apt-get install rabbitmq-server && rabbitmq-server -detached");
    false
}

fn unique(prefix: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{n}", std::process::id())
}

fn pipeline(name: &str, yaml: &str) -> PipelineConfig {
    let map: serde_yaml::Mapping =
        serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"));
    PipelineConfig {
        name: name.to_string(),
        driver: "amqp".into(),
        priority: 10,
        config: DriverOptions::new(format!("jobs.pipelines.{name}.config"), map),
    }
}

async fn open_q(q: &str, extra: &str) -> Arc<dyn Driver> {
    let p = pipeline(
        "p",
        &format!("{{queue: {q}, exchange: {q}, routing_key: {q}, durable: true{extra}}}"),
    );
    let conns = Connections {
        amqp_addr: Some(ADDR.into()),
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

/// Deletes the queue (and its exchange) at the end of a test.
async fn cleanup(q: &str) {
    let d = open_q(q, ", delete_queue_on_stop: true").await;
    let _ = d.stop().await;
}

fn job(id: &str) -> Job {
    let mut j = Job {
        name: "ping".into(),
        id: id.into(),
        payload: bytes::Bytes::from(format!("payload-{id}")),
        ..Job::default()
    };
    j.options.pipeline = "p".into();
    j
}

async fn next(r: &SinkReader, secs: u64) -> Option<Delivery> {
    tokio::time::timeout(Duration::from_secs(secs), r.next())
        .await
        .ok()
        .flatten()
}

#[tokio::test]
async fn push_consume_ack_and_nothing_comes_back() {
    if !broker() {
        return;
    }
    let q = unique("cj-amqp-rt");
    let d = open_q(&q, "").await;
    let mut j = job("a1");
    j.headers.insert("x-trace".into(), vec!["t1".into()]);
    d.push(j.clone()).await.expect("push");
    let (sink, r) = sink_pair(100, 10);
    d.resume(sink).await.expect("resume");
    let got = next(&r, 5).await.expect("delivered");
    assert_eq!(got.job.id, "a1");
    assert_eq!(got.job.name, "ping");
    assert_eq!(got.job.payload, j.payload);
    assert_eq!(got.job.headers, j.headers);
    assert_eq!(got.job.options.pipeline, "p");
    assert_eq!(got.queue.as_deref(), Some(q.as_str()));
    got.acker.ack().await.expect("ack");
    d.stop().await.expect("stop");
    // Reopened: the acked message is gone.
    let d = open_q(&q, "").await;
    let (sink, r) = sink_pair(100, 10);
    d.resume(sink).await.expect("resume");
    assert!(next(&r, 1).await.is_none(), "an acked job came back");
    d.stop().await.expect("stop");
    cleanup(&q).await;
}

#[tokio::test]
async fn nack_requeue_redelivers_and_nack_drop_does_not() {
    if !broker() {
        return;
    }
    let q = unique("cj-amqp-nack");
    let d = open_q(&q, "").await;
    d.push_batch(vec![job("keep"), job("drop")])
        .await
        .expect("push");
    let (sink, r) = sink_pair(100, 10);
    d.resume(sink).await.expect("resume");
    for _ in 0..2 {
        let got = next(&r, 5).await.expect("delivered");
        let requeue = got.job.id == "keep";
        got.acker.nack(requeue).await.expect("nack");
    }
    let again = next(&r, 5).await.expect("redelivered");
    assert_eq!(again.job.id, "keep");
    again.acker.ack().await.expect("ack");
    assert!(next(&r, 1).await.is_none(), "the dropped job came back");
    d.stop().await.expect("stop");
    cleanup(&q).await;
}

#[tokio::test]
async fn unacked_deliveries_of_a_dead_consumer_go_to_the_other() {
    if !broker() {
        return;
    }
    let q = unique("cj-amqp-loss");
    let a = open_q(&q, ", prefetch: 5").await;
    let b = open_q(&q, ", prefetch: 5").await;
    let ids: Vec<String> = (0..5).map(|i| format!("j{i}")).collect();
    a.push_batch(ids.iter().map(|i| job(i)).collect())
        .await
        .expect("push");
    let (sa, ra) = sink_pair(100, 10);
    a.resume(sa).await.expect("resume a");
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(next(&ra, 5).await.expect("a got it"));
    }
    // A's connection goes away with five unacked messages (as with kill -9).
    a.stop().await.expect("stop a");
    std::mem::forget(held); // not nacked: the broker must redeliver them
    let (sb, rb) = sink_pair(100, 10);
    b.resume(sb).await.expect("resume b");
    let mut got = Vec::new();
    while got.len() < 5 {
        let d = next(&rb, 10).await.expect("b got A's jobs");
        got.push(d.job.id.clone());
        d.acker.ack().await.expect("ack");
    }
    got.sort();
    assert_eq!(got, ids);
    b.stop().await.expect("stop b");
    cleanup(&q).await;
}

#[tokio::test]
async fn delay_prefetch_pause_and_two_consumers_share() {
    if !broker() {
        return;
    }
    let q = unique("cj-amqp-misc");
    let d = open_q(&q, ", prefetch: 3").await;
    let mut late = job("late");
    late.options.delay = 2;
    let t = Instant::now();
    d.push(late).await.expect("push delayed");
    d.push_batch((0..6).map(|i| job(&format!("n{i}"))).collect())
        .await
        .expect("push");
    let (sink, r) = sink_pair(100, 10);
    d.resume(sink.clone()).await.expect("resume");
    // Prefetch 3: three arrive, the fourth waits for a settle.
    let mut first = Vec::new();
    for _ in 0..3 {
        first.push(next(&r, 5).await.expect("delivered"));
    }
    assert!(
        next(&r, 1).await.is_none(),
        "more than prefetch were handed out"
    );
    for f in first {
        assert_ne!(f.job.id, "late");
        f.acker.ack().await.expect("ack");
    }
    // Pause: nothing more arrives; resume: the rest do.
    d.pause().await.expect("pause");
    while let Some(x) = next(&r, 1).await {
        x.acker.nack(true).await.expect("nack back");
    }
    assert!(next(&r, 1).await.is_none());
    d.resume(sink).await.expect("resume again");
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let x = next(&r, 10).await.expect("after resume");
        if x.job.id == "late" {
            assert!(t.elapsed() >= Duration::from_secs(2), "delay not held");
        }
        seen.push(x.job.id.clone());
        x.acker.ack().await.expect("ack");
    }
    assert!(seen.contains(&"late".to_string()), "{seen:?}");
    let st = d.stat().await.expect("stat");
    assert_eq!(st.queue, q);
    d.stop().await.expect("stop");

    // Two consumers on one queue share 40 jobs.
    let a = open_q(&q, ", prefetch: 2").await;
    let b = open_q(&q, ", prefetch: 2").await;
    let (sa, ra) = sink_pair(100, 10);
    let (sb, rb) = sink_pair(100, 10);
    a.resume(sa).await.expect("a");
    b.resume(sb).await.expect("b");
    a.push_batch((0..40).map(|i| job(&format!("s{i}"))).collect())
        .await
        .expect("push");
    let (mut na, mut nb) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    while na + nb < 40 && Instant::now() < deadline {
        tokio::select! {
            Some(x) = ra.next() => { na += 1; x.acker.ack().await.expect("ack"); }
            Some(x) = rb.next() => { nb += 1; x.acker.ack().await.expect("ack"); }
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
    assert_eq!(na + nb, 40);
    assert!(na > 0 && nb > 0, "one consumer got everything: {na}/{nb}");
    a.stop().await.expect("stop");
    b.stop().await.expect("stop");
    cleanup(&q).await;
}

#[tokio::test]
async fn a_broker_that_is_down_is_an_error_naming_the_address() {
    let p = pipeline("p", "{queue: x}");
    let conns = Connections {
        amqp_addr: Some("amqp://guest:guest@127.0.0.1:1/".into()),
        ..Connections::default()
    };
    let t = Instant::now();
    let e = open(OpenArgs {
        pipeline: &p,
        connections: &conns,
        timeout: Duration::from_secs(3),
    })
    .await
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(e.contains("127.0.0.1:1") && e.contains("connecting"), "{e}");
    assert!(
        !e.contains("guest:guest"),
        "the password is in the message: {e}"
    );
    assert!(t.elapsed() < Duration::from_secs(5));
}
