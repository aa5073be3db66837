//! NATS JetStream with a durable pull consumer (RoadRunner's `nats` driver
//! keys). See `DRIVERS.md` for the keys and how jobs map onto JetStream.
//!
//! - open: connect, `get_or_create` the stream on `subject` (file storage) and
//!   the durable pull consumer `courser-<pipeline>` (explicit ack, `ack_wait`,
//!   `max_ack_pending = prefetch + 1000`, room for delayed jobs). Every Courser node on the pipeline binds
//!   the same durable consumer, so each message goes to one of them.
//! - push: JetStream publish, `Ok` once the PubAck came back (bounded by
//!   `jobs.timeout`); push_batch publishes all, then awaits all the acks.
//! - consume: pull batches of at most the free prefetch permits; one permit
//!   per unsettled delivery, released on settle or drop.
//! - ack: double ack (the server confirms); `delete_after_ack` also deletes
//!   the message from the stream. nack(true): NAK (redelivered at once);
//!   nack(false): TERM. An acker dropped unsettled NAKs its message.
//! - delay: the not-before unix time (ms) rides in the `Courser-Not-Before`
//!   header; a message delivered early is NAKed with the remaining delay
//!   instead of being handed on.

use async_nats::jetstream::{self, consumer, stream, AckKind};
use async_nats::HeaderMap;
use async_trait::async_trait;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use crate::driver::{Acker, Delivery, Driver, OpenArgs, QueueStat, Sink};
use crate::job::Job;
use crate::JobsError;

const KIND: &str = "nats";
/// Header holding the unix time (ms) before which a delayed job must not run.
pub const NOT_BEFORE: &str = "Courser-Not-Before";
/// The longest one pull request waits for messages.
const PULL_EXPIRES: Duration = Duration::from_secs(1);
/// Server-side ack-pending room above `prefetch` for delayed jobs waiting in
/// a NAK timer (default of the `max_ack_pending` key is `prefetch` + this).
const DELAY_SLOTS: usize = 1000;
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Opens a NATS JetStream pipeline.
pub async fn open(args: OpenArgs<'_>) -> Result<Arc<dyn Driver>, JobsError> {
    let p = args.pipeline;
    let c = &p.config;
    let addr = match c.string("addr")? {
        Some(a) if !a.is_empty() => a,
        _ => args
            .connections
            .nats_addr
            .clone()
            .unwrap_or_else(|| "nats://127.0.0.1:4222".to_string()),
    };
    let prefetch = c.uint("prefetch")?.filter(|n| *n > 0).unwrap_or(10) as usize;
    let ack_wait = c
        .seconds("ack_wait")?
        .filter(|d| !d.is_zero())
        .unwrap_or(Duration::from_secs(30));
    // Delayed jobs waiting in a NAK timer stay ack-pending on the server, so
    // the server bound needs room above `prefetch` or they would stall the
    // consumer; `prefetch` itself is enforced per node by the permits.
    let max_ack_pending = c
        .uint("max_ack_pending")?
        .filter(|n| *n > 0)
        .map(|n| n as usize)
        .unwrap_or(prefetch + DELAY_SLOTS)
        .max(prefetch);
    if c.uint("rate_limit")?.is_some_and(|r| r > 0) {
        tracing::warn!(
            pipeline = %p.name,
            "jobs.pipelines.{}.config.rate_limit is ignored: JetStream pull consumers have no rate limit",
            p.name
        );
    }
    let s = Settings {
        pipeline: p.name.clone(),
        addr: addr.clone(),
        subject: c.string("subject")?.unwrap_or_else(|| p.name.clone()),
        stream: c.string("stream")?.unwrap_or_else(|| p.name.clone()),
        durable: format!("courser-{}", p.name),
        prefetch,
        ack_wait,
        deliver_new: c.boolean("deliver_new")?.unwrap_or(false),
        delete_stream_on_stop: c.boolean("delete_stream_on_stop")?.unwrap_or(false),
        delete_after_ack: c.boolean("delete_after_ack")?.unwrap_or(false),
        timeout: args.timeout,
    };

    let pipeline = s.pipeline.clone();
    let outage = Arc::new(AtomicBool::new(false));
    let opts = async_nats::ConnectOptions::new()
        .name(format!("courser-jobs {}", s.pipeline))
        .connection_timeout(s.timeout)
        .request_timeout(Some(s.timeout))
        .reconnect_delay_callback(|attempt| {
            let shift = attempt.min(6) as u32;
            (BACKOFF_MIN * 2u32.pow(shift)).min(BACKOFF_MAX)
        })
        .event_callback({
            let addr = addr.clone();
            let outage = outage.clone();
            move |ev| {
                let (addr, pipeline, outage) = (addr.clone(), pipeline.clone(), outage.clone());
                async move {
                    match ev {
                        async_nats::Event::Disconnected => {
                            if !outage.swap(true, Ordering::SeqCst) {
                                tracing::warn!(
                                    pipeline = %pipeline,
                                    "lost the connection to NATS {addr}; reconnecting (every {} ms up to {} s); pushes fail meanwhile",
                                    BACKOFF_MIN.as_millis(),
                                    BACKOFF_MAX.as_secs()
                                );
                            }
                        }
                        async_nats::Event::Connected => {
                            if outage.swap(false, Ordering::SeqCst) {
                                tracing::info!(pipeline = %pipeline, "reconnected to NATS {addr}");
                            }
                        }
                        other => tracing::debug!(pipeline = %pipeline, "NATS {addr}: {other}"),
                    }
                }
            }
        });
    let connecting = "connecting; is nats-server (with -js) running there?";
    let client = match tokio::time::timeout(
        s.timeout,
        async_nats::connect_with_options(addr.as_str(), opts),
    )
    .await
    {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Err(s.err(connecting, e)),
        Err(_) => return Err(s.timeout_err(connecting)),
    };
    let js = jetstream::ContextBuilder::new()
        .timeout(s.timeout)
        .build(client.clone());
    let stream_cfg = stream::Config {
        name: s.stream.clone(),
        subjects: vec![s.subject.clone()],
        storage: stream::StorageType::File,
        ..Default::default()
    };
    let jstream = s
        .bounded(
            &format!("creating stream {} on subject {}", s.stream, s.subject),
            js.get_or_create_stream(stream_cfg),
        )
        .await?;
    let consumer_cfg = consumer::pull::Config {
        durable_name: Some(s.durable.clone()),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: s.ack_wait,
        max_ack_pending: max_ack_pending as i64,
        deliver_policy: if s.deliver_new {
            consumer::DeliverPolicy::New
        } else {
            consumer::DeliverPolicy::All
        },
        ..Default::default()
    };
    let consumer: consumer::PullConsumer = s
        .bounded(
            &format!("creating durable consumer {}", s.durable),
            jstream.get_or_create_consumer(&s.durable, consumer_cfg),
        )
        .await?;
    let shared = Arc::new(Shared {
        s,
        js,
        jstream,
        consumer,
        permits: Arc::new(Semaphore::new(prefetch)),
        delayed: Mutex::new(HashMap::new()),
    });
    Ok(Arc::new(NatsDriver {
        shared,
        client,
        task: Mutex::new(None),
    }))
}

struct Settings {
    pipeline: String,
    addr: String,
    subject: String,
    stream: String,
    durable: String,
    prefetch: usize,
    ack_wait: Duration,
    deliver_new: bool,
    delete_stream_on_stop: bool,
    delete_after_ack: bool,
    timeout: Duration,
}

impl Settings {
    fn err(&self, what: &str, e: impl std::fmt::Display) -> JobsError {
        JobsError::broker(
            KIND,
            &self.pipeline,
            format!("{what} (nats {}, stream {})", self.addr, self.stream),
            e,
        )
    }

    fn timeout_err(&self, what: &str) -> JobsError {
        JobsError::Timeout {
            driver: KIND,
            pipeline: self.pipeline.clone(),
            what: format!("{what} (nats {})", self.addr),
            secs: self.timeout.as_secs(),
        }
    }

    /// Runs a NATS call bounded by `jobs.timeout`.
    async fn bounded<T, E: std::fmt::Display>(
        &self,
        what: &str,
        fut: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, JobsError> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.err(what, e)),
            Err(_) => Err(self.timeout_err(what)),
        }
    }
}

struct Shared {
    s: Settings,
    js: jetstream::Context,
    jstream: stream::Stream,
    consumer: consumer::PullConsumer,
    /// One permit per unsettled delivery (`prefetch`).
    permits: Arc<Semaphore>,
    /// Stream sequence → when it is due, for messages delivered early and
    /// NAKed with the remaining delay (`stat().delayed`).
    delayed: Mutex<HashMap<u64, Instant>>,
}

impl Shared {
    fn delayed(&self) -> MutexGuard<'_, HashMap<u64, Instant>> {
        self.delayed.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct NatsDriver {
    shared: Arc<Shared>,
    client: async_nats::Client,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl NatsDriver {
    fn task(&self) -> MutexGuard<'_, Option<JoinHandle<()>>> {
        self.task.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for NatsDriver {
    fn drop(&mut self) {
        if let Some(h) = self.task().take() {
            h.abort();
        }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl NatsDriver {
    /// Sends one publish; the returned future resolves with the PubAck.
    async fn publish(&self, job: &Job) -> Result<jetstream::context::PublishAckFuture, JobsError> {
        let s = &self.shared.s;
        let what = format!("publishing job {} to subject {}", job.id, s.subject);
        let delay = job.delay();
        let body = bytes::Bytes::from(job.encode());
        let fut = if delay.is_zero() {
            self.shared.js.publish(s.subject.clone(), body).await
        } else {
            let mut h = HeaderMap::new();
            let at = unix_ms() + delay.as_millis() as u64;
            h.insert(NOT_BEFORE, at.to_string().as_str());
            self.shared
                .js
                .publish_with_headers(s.subject.clone(), h, body)
                .await
        };
        fut.map_err(|e| s.err(&what, e))
    }

    fn pub_err(&self, id: &str, e: impl std::fmt::Display) -> JobsError {
        let s = &self.shared.s;
        let what = format!(
            "waiting for JetStream to store job {id} (subject {}); is NATS reachable?",
            s.subject
        );
        self.shared.s.err(&what, e)
    }
}

#[async_trait]
impl Driver for NatsDriver {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn push(&self, job: Job) -> Result<(), JobsError> {
        let s = &self.shared.s;
        let what = format!("pushing job {}", job.id);
        let r = tokio::time::timeout(s.timeout, async {
            let ack = self.publish(&job).await?;
            ack.await.map_err(|e| self.pub_err(&job.id, e))
        })
        .await;
        match r {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(s.timeout_err(&what)),
        }
    }

    async fn push_batch(&self, jobs: Vec<Job>) -> Result<(), JobsError> {
        let s = &self.shared.s;
        let what = format!("pushing {} jobs", jobs.len());
        let r = tokio::time::timeout(s.timeout, async {
            let mut acks = Vec::with_capacity(jobs.len());
            for job in &jobs {
                acks.push((self.publish(job).await?, job.id.as_str()));
            }
            for (ack, id) in acks {
                ack.await.map_err(|e| self.pub_err(id, e))?;
            }
            Ok(())
        })
        .await;
        match r {
            Ok(r) => r,
            Err(_) => Err(s.timeout_err(&what)),
        }
    }

    async fn resume(&self, sink: Sink) -> Result<(), JobsError> {
        let mut task = self.task();
        if task.as_ref().is_some_and(|h| !h.is_finished()) {
            return Ok(());
        }
        *task = Some(tokio::spawn(consume(self.shared.clone(), sink)));
        Ok(())
    }

    async fn pause(&self) -> Result<(), JobsError> {
        let handle = self.task().take();
        if let Some(h) = handle {
            // Messages pulled and not yet handed on are NAKed by their
            // dropped ackers; any still on the wire come back after ack_wait.
            h.abort();
            let _ = h.await;
        }
        Ok(())
    }

    async fn stop(&self) -> Result<(), JobsError> {
        self.pause().await?;
        let s = &self.shared.s;
        if s.delete_stream_on_stop {
            s.bounded(
                &format!("deleting stream {} (delete_stream_on_stop)", s.stream),
                self.shared.js.delete_stream(&s.stream),
            )
            .await?;
        }
        // Flush what is buffered (NAKs of dropped ackers, acks); the client
        // closes when its last handle goes.
        let _ = tokio::time::timeout(s.timeout, self.client.flush()).await;
        Ok(())
    }

    async fn stat(&self) -> Result<QueueStat, JobsError> {
        let s = &self.shared.s;
        let info = s
            .bounded(
                &format!("reading consumer {} info", s.durable),
                self.shared.consumer.get_info(),
            )
            .await?;
        let delayed = {
            let now = Instant::now();
            let mut d = self.shared.delayed();
            d.retain(|_, due| *due > now);
            d.len() as i64
        };
        Ok(QueueStat {
            queue: s.stream.clone(),
            ready_jobs: info.num_pending as i64,
            delayed,
            reserved: (info.num_ack_pending as i64 - delayed).max(0),
        })
    }
}

/// The consumer task: pulls while there are free permits; retries with
/// backoff on errors (the client reconnects by itself), one warning per outage.
async fn consume(shared: Arc<Shared>, sink: Sink) {
    let s = &shared.s;
    let mut backoff = BACKOFF_MIN;
    let mut outage = false;
    loop {
        // With `prefetch` deliveries unsettled, pull nothing.
        let Ok(first) = shared.permits.clone().acquire_owned().await else {
            return;
        };
        let mut permits = vec![first];
        while permits.len() < s.prefetch {
            match shared.permits.clone().try_acquire_owned() {
                Ok(p) => permits.push(p),
                Err(_) => break,
            }
        }
        match pull(&shared, &sink, &mut permits).await {
            Ok(true) => return, // the plugin is closing
            Ok(false) => {
                if outage {
                    tracing::info!(pipeline = %s.pipeline, "pulling from NATS {} again", s.addr);
                }
                backoff = BACKOFF_MIN;
                outage = false;
            }
            Err(e) => {
                if !outage {
                    tracing::warn!(
                        pipeline = %s.pipeline,
                        "{e}; retrying (every {} ms up to {} s)",
                        BACKOFF_MIN.as_millis(),
                        BACKOFF_MAX.as_secs()
                    );
                    outage = true;
                }
                drop(permits);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// One pull request for `permits.len()` messages. `Ok(true)` when the sink is
/// closed.
async fn pull(
    shared: &Arc<Shared>,
    sink: &Sink,
    permits: &mut Vec<OwnedSemaphorePermit>,
) -> Result<bool, JobsError> {
    let s = &shared.s;
    let mut batch = s
        .bounded(
            "pulling messages",
            shared
                .consumer
                .batch()
                .max_messages(permits.len())
                .expires(PULL_EXPIRES)
                .messages(),
        )
        .await?;
    while let Some(m) = batch.next().await {
        let m = m.map_err(|e| s.err("pulling messages", e))?;
        let Some(permit) = permits.pop() else {
            // More than asked for (cannot happen): give it back at once.
            let _ = m.ack_with(AckKind::Nak(None)).await;
            continue;
        };
        if deliver(shared, sink, m, permit).await.is_err() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Hands one message to the sink, or NAKs it with the remaining delay when
/// it came early. `Err` when the sink is closed (the message is NAKed).
async fn deliver(
    shared: &Arc<Shared>,
    sink: &Sink,
    m: jetstream::Message,
    permit: OwnedSemaphorePermit,
) -> Result<(), ()> {
    let s = &shared.s;
    let seq = m.info().map(|i| i.stream_sequence).unwrap_or(0);
    let not_before = m
        .headers
        .as_ref()
        .and_then(|h| h.get(NOT_BEFORE))
        .and_then(|v| v.as_str().parse::<u64>().ok());
    if let Some(at) = not_before {
        let now = unix_ms();
        if at > now {
            let wait = Duration::from_millis(at - now);
            shared.delayed().insert(seq, Instant::now() + wait);
            if let Err(e) = m.ack_with(AckKind::Nak(Some(wait))).await {
                tracing::warn!(pipeline = %s.pipeline, seq, "NAK with delay failed ({e}); the message comes back after ack_wait");
            }
            return Ok(());
        }
    }
    shared.delayed().remove(&seq);
    let mut job = match Job::decode(&m.payload) {
        Ok(j) => j,
        Err(e) => {
            tracing::warn!(
                pipeline = %s.pipeline, stream = %s.stream, seq,
                "terminating a message that is not a jobs.v1 job: {e}"
            );
            let _ = m.ack_with(AckKind::Term).await;
            return Ok(());
        }
    };
    job.options.pipeline = s.pipeline.clone();
    let acker = NatsAcker {
        msg: Some(m),
        shared: shared.clone(),
        seq,
        _permit: permit,
    };
    let d = Delivery {
        job,
        queue: Some(s.subject.clone()),
        acker: Box::new(acker),
    };
    sink.deliver(d).await.map_err(drop)
}

/// One unsettled delivery: holds a prefetch permit until settled or dropped;
/// dropped unsettled, it NAKs the message (redelivered at once).
struct NatsAcker {
    msg: Option<jetstream::Message>,
    shared: Arc<Shared>,
    seq: u64,
    _permit: OwnedSemaphorePermit,
}

impl NatsAcker {
    async fn settle(mut self: Box<Self>, kind: AckKind) -> Result<(), JobsError> {
        let Some(m) = self.msg.take() else {
            return Ok(());
        };
        let s = &self.shared.s;
        let what = match kind {
            AckKind::Ack => format!("acking message {}", self.seq),
            AckKind::Term => format!("terminating message {}", self.seq),
            _ => format!("NAKing message {}", self.seq),
        };
        let is_ack = matches!(kind, AckKind::Ack);
        s.bounded(&what, m.double_ack_with(kind)).await?;
        if is_ack && s.delete_after_ack {
            s.bounded(
                &format!("deleting acked message {} (delete_after_ack)", self.seq),
                self.shared.jstream.delete_message(self.seq),
            )
            .await?;
        }
        Ok(())
    }
}

impl Drop for NatsAcker {
    fn drop(&mut self) {
        if let Some(m) = self.msg.take() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = m.ack_with(AckKind::Nak(None)).await;
                });
            }
        }
    }
}

#[async_trait]
impl Acker for NatsAcker {
    async fn ack(self: Box<Self>) -> Result<(), JobsError> {
        self.settle(AckKind::Ack).await
    }

    async fn nack(self: Box<Self>, requeue: bool) -> Result<(), JobsError> {
        self.settle(if requeue {
            AckKind::Nak(None)
        } else {
            AckKind::Term
        })
        .await
    }
}
