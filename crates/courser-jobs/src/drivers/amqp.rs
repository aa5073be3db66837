//! The `amqp` driver: RabbitMQ (AMQP 0-9-1) with [lapin].
//!
//! - **Topology**: an exchange (`exchange`, default `amqp.default`, of
//!   `exchange_type`), a queue (`queue`, default the pipeline name) bound to it
//!   with `routing_key` (default the queue name), declared at open and again
//!   after every reconnect.
//! - **Push** publishes persistent messages (delivery mode 2) on a channel in
//!   confirm mode and returns only once RabbitMQ confirmed the message. The
//!   body is the `jobs.v1.Job` protobuf, so headers, priority and options
//!   survive; the AMQP `message_id` is the job id.
//! - **Delay**, as RoadRunner: the message goes to a queue
//!   `<queue>.delay.<ms>` with `x-message-ttl` = the delay and a dead-letter
//!   exchange/routing key leading back to the pipeline's queue; it is
//!   redeclared on each use and expires (`x-expires`) well after its last
//!   message has.
//! - **Consume** with `basic_qos(prefetch)`; ack = `basic.ack`, nack(requeue)
//!   = `basic.nack` with requeue, nack(false) = without (dropped or
//!   dead-lettered by the queue's policy). Unacked messages of a consumer that
//!   goes away (its connection closes: a crash, a `kill -9`) are redelivered
//!   by RabbitMQ to the other consumers — the scale-out path.
//! - **Pause** cancels the consumer; messages that were already on their way
//!   are nacked back with requeue. A lost connection is redialled with
//!   backoff (100 ms doubling to 5 s), one warning per outage; pushes in the
//!   meantime fail with an error naming the address.

use async_trait::async_trait;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions,
    BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;
use tokio::sync::{Mutex, Semaphore};

use crate::driver::{Acker, Delivery, Driver, OpenArgs, QueueStat, Sink};
use crate::job::Job;
use crate::JobsError;

const KIND: &str = "amqp";
const DEFAULT_ADDR: &str = "amqp://guest:guest@127.0.0.1:5672/";

/// Opens an `amqp` pipeline: connects, declares the exchange, queue and binding.
pub async fn open(args: OpenArgs<'_>) -> Result<Arc<dyn Driver>, JobsError> {
    let c = &args.pipeline.config;
    let name = args.pipeline.name.clone();
    let queue = c.string("queue")?.unwrap_or_else(|| name.clone());
    let exchange_type = c
        .string("exchange_type")?
        .unwrap_or_else(|| "direct".into());
    let kind = match exchange_type.as_str() {
        "direct" => ExchangeKind::Direct,
        "fanout" => ExchangeKind::Fanout,
        "topic" => ExchangeKind::Topic,
        "headers" => ExchangeKind::Headers,
        other => {
            return Err(JobsError::Other(format!(
                "{}: {other:?} is not an exchange type; use direct, fanout, topic or headers",
                c.key("exchange_type")
            )))
        }
    };
    let mut addr = c
        .string("addr")?
        .or_else(|| args.connections.amqp_addr.clone())
        .unwrap_or_else(|| DEFAULT_ADDR.into());
    // `amqp://host:5672/` means the default vhost "/" (RoadRunner's sample
    // writes it so); lapin reads an empty path segment as the vhost "".
    if addr.ends_with(":5672/") || addr.matches('/').count() == 3 && addr.ends_with('/') {
        addr.push_str("%2f");
    }
    let durable = c.boolean("durable")?.unwrap_or(false);
    let d = Amqp {
        inner: Arc::new(Inner {
            routing_key: c.string("routing_key")?.unwrap_or_else(|| queue.clone()),
            exchange: c
                .string("exchange")?
                .unwrap_or_else(|| "amqp.default".into()),
            kind,
            durable,
            exchange_durable: c.boolean("exchange_durable")?.unwrap_or(durable),
            exchange_auto_delete: c.boolean("exchange_auto_delete")?.unwrap_or(false),
            queue_auto_delete: c.boolean("queue_auto_delete")?.unwrap_or(false),
            exclusive: c.boolean("exclusive")?.unwrap_or(false),
            delete_queue_on_stop: c.boolean("delete_queue_on_stop")?.unwrap_or(false),
            prefetch: c
                .uint("prefetch")?
                .filter(|n| *n > 0)
                .map(|n| n.min(u64::from(u16::MAX)) as u16)
                .unwrap_or(10),
            consumer_id: c
                .string("consumer_id")?
                .unwrap_or_else(|| format!("courser-{name}-{}", std::process::id())),
            queue,
            name,
            shown_addr: redact(&addr),
            addr,
            timeout: args.timeout,
            conn: Mutex::new(None),
            consumer: StdMutex::new(None),
            paused: Arc::new(AtomicBool::new(true)),
            reserved: Arc::new(AtomicI64::new(0)),
            tags: AtomicU64::new(0),
        }),
    };
    d.inner.connection().await?;
    Ok(Arc::new(d))
}

/// The address without its password, for messages.
fn redact(addr: &str) -> String {
    match (addr.find("://"), addr.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &addr[s + 3..at];
            let user = creds.split(':').next().unwrap_or_default();
            format!("{}{user}:…@{}", &addr[..s + 3], &addr[at + 1..])
        }
        _ => addr.to_string(),
    }
}

struct Conn {
    connection: Arc<Connection>,
    publish: Channel,
}

struct Consuming {
    task: tokio::task::JoinHandle<()>,
    /// The current session's channel and consumer tag, for the cancel.
    session: Option<(Channel, String)>,
}

struct Inner {
    name: String,
    addr: String,
    shown_addr: String,
    queue: String,
    exchange: String,
    kind: ExchangeKind,
    routing_key: String,
    durable: bool,
    exchange_durable: bool,
    exchange_auto_delete: bool,
    queue_auto_delete: bool,
    exclusive: bool,
    delete_queue_on_stop: bool,
    prefetch: u16,
    consumer_id: String,
    timeout: Duration,
    conn: Mutex<Option<Conn>>,
    consumer: StdMutex<Option<Consuming>>,
    paused: Arc<AtomicBool>,
    reserved: Arc<AtomicI64>,
    tags: AtomicU64,
}

impl Inner {
    fn err(&self, what: impl Into<String>, e: impl std::fmt::Display) -> JobsError {
        JobsError::broker(KIND, &self.name, what, e)
    }

    fn timeout_err(&self, what: &str) -> JobsError {
        JobsError::Timeout {
            driver: KIND,
            pipeline: self.name.clone(),
            what: format!("{what} at {}", self.shown_addr),
            secs: self.timeout.as_secs(),
        }
    }

    async fn bounded<T>(
        &self,
        what: &str,
        f: impl std::future::Future<Output = Result<T, lapin::Error>>,
    ) -> Result<T, JobsError> {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.err(format!("{what} at {}", self.shown_addr), e)),
            Err(_) => Err(self.timeout_err(what)),
        }
    }

    /// Declares the exchange, the queue and the binding on `ch`.
    async fn declare(&self, ch: &Channel) -> Result<(), JobsError> {
        self.bounded(
            &format!("declaring exchange {}", self.exchange),
            ch.exchange_declare(
                self.exchange.as_str().into(),
                self.kind.clone(),
                ExchangeDeclareOptions {
                    durable: self.exchange_durable,
                    auto_delete: self.exchange_auto_delete,
                    ..Default::default()
                },
                FieldTable::default(),
            ),
        )
        .await?;
        self.bounded(
            &format!("declaring queue {}", self.queue),
            ch.queue_declare(
                self.queue.as_str().into(),
                QueueDeclareOptions {
                    durable: self.durable,
                    exclusive: self.exclusive,
                    auto_delete: self.queue_auto_delete,
                    ..Default::default()
                },
                FieldTable::default(),
            ),
        )
        .await?;
        self.bounded(
            &format!("binding queue {} to {}", self.queue, self.exchange),
            ch.queue_bind(
                self.queue.as_str().into(),
                self.exchange.as_str().into(),
                self.routing_key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            ),
        )
        .await
    }

    /// The live connection and its publishing channel, dialling (and
    /// declaring) when there is none or it broke.
    async fn connection(&self) -> Result<(Arc<Connection>, Channel), JobsError> {
        let mut guard = self.conn.lock().await;
        if let Some(c) = guard.as_ref() {
            if c.connection.status().connected() && c.publish.status().connected() {
                return Ok((c.connection.clone(), c.publish.clone()));
            }
        }
        *guard = None;
        let connection = Arc::new(
            self.bounded(
                "connecting",
                Connection::connect(&self.addr, ConnectionProperties::default()),
            )
            .await?,
        );
        let publish = self
            .bounded("opening a channel", connection.create_channel())
            .await?;
        self.declare(&publish).await?;
        self.bounded(
            "enabling publisher confirms",
            publish.confirm_select(ConfirmSelectOptions::default()),
        )
        .await?;
        *guard = Some(Conn {
            connection: connection.clone(),
            publish: publish.clone(),
        });
        Ok((connection, publish))
    }

    async fn forget_connection(&self) {
        *self.conn.lock().await = None;
    }

    async fn publish(&self, job: &Job) -> Result<(), JobsError> {
        let (_, ch) = self.connection().await?;
        let body = job.encode();
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_message_id(job.id.as_str().into());
        let (exchange, routing_key): (ShortString, ShortString) = if job.options.delay > 0 {
            let ms = (job.options.delay as u64).saturating_mul(1000);
            let q = format!("{}.delay.{ms}", self.queue);
            let mut args = FieldTable::default();
            args.insert(
                "x-dead-letter-exchange".into(),
                AMQPValue::LongString(self.exchange.as_str().into()),
            );
            args.insert(
                "x-dead-letter-routing-key".into(),
                AMQPValue::LongString(self.routing_key.as_str().into()),
            );
            args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ms as i64));
            args.insert(
                "x-expires".into(),
                AMQPValue::LongLongInt((ms * 2 + 60_000) as i64),
            );
            self.bounded(
                &format!("declaring the delay queue {q}"),
                ch.queue_declare(
                    q.as_str().into(),
                    QueueDeclareOptions {
                        durable: self.durable,
                        ..Default::default()
                    },
                    args,
                ),
            )
            .await?;
            ("".into(), q.into())
        } else {
            (
                self.exchange.as_str().into(),
                self.routing_key.as_str().into(),
            )
        };
        let confirm = self
            .bounded(
                &format!("publishing job {}", job.id),
                ch.basic_publish(
                    exchange,
                    routing_key,
                    BasicPublishOptions::default(),
                    &body,
                    props,
                ),
            )
            .await;
        let confirm = match confirm {
            Ok(c) => c,
            Err(e) => {
                self.forget_connection().await;
                return Err(e);
            }
        };
        let confirmation = self
            .bounded(
                &format!("waiting for RabbitMQ to confirm job {}", job.id),
                confirm,
            )
            .await?;
        if confirmation.is_nack() {
            return Err(self.err(
                format!("publishing job {}", job.id),
                "RabbitMQ refused the message (negative publisher confirm)",
            ));
        }
        Ok(())
    }

    /// One consumer session: a channel, qos, basic.consume; deliveries go to
    /// the sink until the consumer is cancelled or the connection breaks.
    async fn consume_once(self: &Arc<Self>, sink: &Sink) -> Result<(), JobsError> {
        let (connection, _) = self.connection().await?;
        let ch = self
            .bounded("opening the consumer channel", connection.create_channel())
            .await?;
        self.bounded(
            "setting prefetch",
            ch.basic_qos(self.prefetch, BasicQosOptions::default()),
        )
        .await?;
        let n = self.tags.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{}-{n}", self.consumer_id);
        let mut consumer = self
            .bounded(
                &format!("consuming queue {}", self.queue),
                ch.basic_consume(
                    self.queue.as_str().into(),
                    tag.as_str().into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                ),
            )
            .await?;
        if let Ok(mut g) = self.consumer.lock() {
            if let Some(c) = g.as_mut() {
                c.session = Some((ch.clone(), tag.clone()));
            }
        }
        // basic_qos bounds unacked messages on the broker; this bounds what
        // is handed to the plugin, also across a reconnect.
        let slots = Arc::new(Semaphore::new(usize::from(self.prefetch)));
        while let Some(next) = consumer.next().await {
            let d = next.map_err(|e| self.err(format!("consuming queue {}", self.queue), e))?;
            if self.paused.load(Ordering::Acquire) {
                // On its way before the cancel: back to the queue.
                let _ = d
                    .acker
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..Default::default()
                    })
                    .await;
                continue;
            }
            let Ok(permit) = slots.clone().acquire_owned().await else {
                break;
            };
            let mut job = match Job::decode(&d.data) {
                Ok(j) => j,
                Err(_) => Job {
                    // Published by something else: the raw body is the payload.
                    id: d
                        .properties
                        .message_id()
                        .as_ref()
                        .map(|s| s.as_str().to_string())
                        .unwrap_or_else(|| format!("amqp-{}", d.delivery_tag)),
                    name: "amqp".into(),
                    payload: d.data.clone().into(),
                    ..Job::default()
                },
            };
            job.options.pipeline = self.name.clone();
            self.reserved.fetch_add(1, Ordering::AcqRel);
            let delivery = Delivery {
                job,
                queue: Some(self.queue.clone()),
                acker: Box::new(AmqpAcker {
                    acker: Some(d.acker),
                    _channel: ch.clone(),
                    reserved: self.reserved.clone(),
                    _permit: permit,
                }),
            };
            if let Err(d) = sink.deliver(delivery).await {
                let _ = d.acker.nack(true).await;
                return Ok(());
            }
        }
        if self.paused.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(self.err(
                format!("consuming queue {}", self.queue),
                "the consumer was closed by the broker or the connection",
            ))
        }
    }
}

async fn consume(inner: Arc<Inner>, sink: Sink) {
    let mut backoff = Duration::from_millis(100);
    let mut warned = false;
    loop {
        let started = std::time::Instant::now();
        let r = inner.consume_once(&sink).await;
        if inner.paused.load(Ordering::Acquire) {
            return;
        }
        if let Err(e) = r {
            if !warned {
                tracing::warn!(pipeline = %inner.name, "{e}; reconnecting with backoff");
                warned = true;
            }
            inner.forget_connection().await;
        }
        if started.elapsed() > Duration::from_secs(10) {
            backoff = Duration::from_millis(100);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
        if inner.connection().await.is_ok() && warned {
            tracing::info!(pipeline = %inner.name, addr = %inner.shown_addr, "reconnected to RabbitMQ");
            warned = false;
        }
    }
}

/// Settles one message on the channel it came from. Dropped unsettled, it
/// nacks with requeue.
struct AmqpAcker {
    acker: Option<lapin::Acker>,
    /// Keeps the channel open until every message it delivered is settled
    /// (lapin closes a channel when its last handle goes; RabbitMQ would then
    /// redeliver messages PHP is still working on).
    _channel: Channel,
    reserved: Arc<AtomicI64>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl AmqpAcker {
    fn take(&mut self) -> Option<lapin::Acker> {
        let a = self.acker.take();
        if a.is_some() {
            self.reserved.fetch_sub(1, Ordering::AcqRel);
        }
        a
    }
}

impl Drop for AmqpAcker {
    fn drop(&mut self) {
        if let Some(a) = self.take() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = a
                        .nack(BasicNackOptions {
                            requeue: true,
                            ..Default::default()
                        })
                        .await;
                });
            }
        }
    }
}

fn settle_err(e: lapin::Error) -> JobsError {
    JobsError::broker(
        KIND,
        "",
        "settling a message",
        format!("{e}; RabbitMQ will deliver it again"),
    )
}

#[async_trait]
impl Acker for AmqpAcker {
    async fn ack(mut self: Box<Self>) -> Result<(), JobsError> {
        match self.take() {
            Some(a) => a
                .ack(BasicAckOptions::default())
                .await
                .map(|_| ())
                .map_err(settle_err),
            None => Ok(()),
        }
    }

    async fn nack(mut self: Box<Self>, requeue: bool) -> Result<(), JobsError> {
        match self.take() {
            Some(a) => a
                .nack(BasicNackOptions {
                    requeue,
                    ..Default::default()
                })
                .await
                .map(|_| ())
                .map_err(settle_err),
            None => Ok(()),
        }
    }
}

/// See the module docs.
pub struct Amqp {
    inner: Arc<Inner>,
}

#[async_trait]
impl Driver for Amqp {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn push(&self, job: Job) -> Result<(), JobsError> {
        self.inner.publish(&job).await
    }

    async fn push_batch(&self, jobs: Vec<Job>) -> Result<(), JobsError> {
        // Publish all, then wait for every confirm: one round trip per batch.
        let (_, ch) = self.inner.connection().await?;
        let mut confirms = Vec::with_capacity(jobs.len());
        for job in &jobs {
            if job.options.delay > 0 {
                self.inner.publish(job).await?;
                continue;
            }
            let props = BasicProperties::default()
                .with_delivery_mode(2)
                .with_message_id(job.id.as_str().into());
            let c = self
                .inner
                .bounded(
                    &format!("publishing job {}", job.id),
                    ch.basic_publish(
                        self.inner.exchange.as_str().into(),
                        self.inner.routing_key.as_str().into(),
                        BasicPublishOptions::default(),
                        &job.encode(),
                        props,
                    ),
                )
                .await;
            match c {
                Ok(c) => confirms.push((job.id.as_str(), c)),
                Err(e) => {
                    self.inner.forget_connection().await;
                    return Err(e);
                }
            }
        }
        for (id, c) in confirms {
            let conf = self
                .inner
                .bounded(&format!("waiting for RabbitMQ to confirm job {id}"), c)
                .await?;
            if conf.is_nack() {
                return Err(self.inner.err(
                    format!("publishing job {id}"),
                    "RabbitMQ refused the message (negative publisher confirm)",
                ));
            }
        }
        Ok(())
    }

    async fn resume(&self, sink: Sink) -> Result<(), JobsError> {
        self.inner.connection().await?;
        let mut g = self
            .inner
            .consumer
            .lock()
            .map_err(|_| JobsError::Other("amqp consumer state poisoned".into()))?;
        if g.as_ref().is_some_and(|c| !c.task.is_finished()) {
            return Ok(());
        }
        self.inner.paused.store(false, Ordering::Release);
        *g = Some(Consuming {
            task: tokio::spawn(consume(self.inner.clone(), sink)),
            session: None,
        });
        Ok(())
    }

    async fn pause(&self) -> Result<(), JobsError> {
        self.inner.paused.store(true, Ordering::Release);
        let c = self.inner.consumer.lock().ok().and_then(|mut g| g.take());
        if let Some(c) = c {
            if let Some((channel, tag)) = &c.session {
                let _ = tokio::time::timeout(
                    self.inner.timeout,
                    channel.basic_cancel(tag.as_str().into(), BasicCancelOptions::default()),
                )
                .await;
            }
            // The session drains what was on its way (nacked back) and ends;
            // don't wait forever for a broken connection.
            let abort = c.task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(2), c.task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        Ok(())
    }

    async fn stop(&self) -> Result<(), JobsError> {
        self.pause().await?;
        let conn = self.inner.conn.lock().await.take();
        if let Some(c) = conn {
            if self.inner.delete_queue_on_stop {
                let _ = tokio::time::timeout(
                    self.inner.timeout,
                    c.publish.queue_delete(
                        self.inner.queue.as_str().into(),
                        QueueDeleteOptions::default(),
                    ),
                )
                .await;
            }
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                c.connection.close(200, "courser stopping".into()),
            )
            .await;
        }
        Ok(())
    }

    async fn stat(&self) -> Result<QueueStat, JobsError> {
        let (_, ch) = self.inner.connection().await?;
        let q = self
            .inner
            .bounded(
                "reading the queue's size",
                ch.queue_declare(
                    self.inner.queue.as_str().into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                ),
            )
            .await?;
        Ok(QueueStat {
            queue: self.inner.queue.clone(),
            ready_jobs: i64::from(q.message_count()),
            delayed: 0,
            reserved: self.inner.reserved.load(Ordering::Acquire),
        })
    }
}
