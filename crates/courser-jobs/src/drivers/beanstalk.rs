//! beanstalkd (RoadRunner's `beanstalk` driver keys). See `DRIVERS.md`.
//!
//! Two connections: a producer (`use <tube>`; puts and `stats-tube`) and a
//! consumer owned by one task. beanstalkd ties a reservation to the
//! connection that reserved it, so `delete` (ack), `release` (nack requeue)
//! and `touch` are sent by that task on that connection: ackers send it
//! commands over a channel. When that connection dies, beanstalkd itself
//! makes its reserved jobs ready again, which gives at-least-once for free.

mod client;

use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, Mutex};
use tokio::task::JoinHandle;

use crate::driver::{Acker, Delivery, Driver, OpenArgs, QueueStat, Sink};
use crate::job::Job;
use crate::JobsError;
use client::{Conn, Reserve};

const KIND: &str = "beanstalk";
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Polling pace while jobs are out (a blocking reserve would hold up their acks).
const POLL_MIN: Duration = Duration::from_millis(5);
const POLL_MAX: Duration = Duration::from_millis(100);

/// Opens a beanstalk pipeline.
pub async fn open(args: OpenArgs<'_>) -> Result<Arc<dyn Driver>, JobsError> {
    let p = args.pipeline;
    let c = &p.config;
    let raw = args
        .connections
        .beanstalk_addr
        .clone()
        .unwrap_or_else(|| "tcp://127.0.0.1:11300".to_string());
    let addr = raw
        .strip_prefix("tcp://")
        .unwrap_or(&raw)
        .trim_end_matches('/')
        .to_string();
    let tube_priority = match c.uint("tube_priority")? {
        Some(n) => u32::try_from(n).map_err(|_| {
            JobsError::broker(
                KIND,
                &p.name,
                format!("reading {}", c.key("tube_priority")),
                format!("{n} is over beanstalkd's largest priority {}", u32::MAX),
            )
        })?,
        None => 10,
    };
    let s = Arc::new(Settings {
        pipeline: p.name.clone(),
        addr,
        tube: c.string("tube")?.unwrap_or_else(|| p.name.clone()),
        tube_priority,
        ttr: c.seconds("ttr")?.map(|d| d.as_secs().max(1)).unwrap_or(60),
        reserve_timeout: c
            .seconds("reserve_timeout")?
            .map(|d| d.as_secs().max(1))
            .unwrap_or(5),
        prefetch: c.uint("prefetch")?.filter(|n| *n > 0).unwrap_or(10) as usize,
        timeout: args.timeout,
    });
    let producer = s
        .bounded(
            "connecting; is beanstalkd running there?",
            connect_producer(&s),
        )
        .await?;
    let (tx, rx) = mpsc::unbounded_channel();
    let consumer = Consumer {
        s: s.clone(),
        rx,
        tx: tx.downgrade(),
        conn: None,
        generation: 0,
        inflight: HashMap::new(),
        sink: None,
        outage: false,
        backoff: BACKOFF_MIN,
    };
    let task = tokio::spawn(consumer.run());
    Ok(Arc::new(BeanstalkDriver {
        s,
        producer: Mutex::new(Some(producer)),
        ctl: tx,
        task: StdMutex::new(Some(task)),
    }))
}

struct Settings {
    pipeline: String,
    addr: String,
    tube: String,
    tube_priority: u32,
    ttr: u64,
    reserve_timeout: u64,
    prefetch: usize,
    timeout: Duration,
}

impl Settings {
    fn err(&self, what: &str, e: impl std::fmt::Display) -> JobsError {
        JobsError::broker(
            KIND,
            &self.pipeline,
            format!("{what} (beanstalkd {}, tube {})", self.addr, self.tube),
            e,
        )
    }

    fn timeout_err(&self, what: &str) -> JobsError {
        JobsError::Timeout {
            driver: KIND,
            pipeline: self.pipeline.clone(),
            what: format!("{what} (beanstalkd {})", self.addr),
            secs: self.timeout.as_secs(),
        }
    }

    async fn bounded<T>(
        &self,
        what: &str,
        fut: impl std::future::Future<Output = std::io::Result<T>>,
    ) -> Result<T, JobsError> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.err(what, e)),
            Err(_) => Err(self.timeout_err(what)),
        }
    }
}

async fn connect_producer(s: &Settings) -> std::io::Result<Conn> {
    let mut c = Conn::connect(&s.addr, s.timeout).await?;
    c.use_tube(&s.tube).await?;
    Ok(c)
}

struct BeanstalkDriver {
    s: Arc<Settings>,
    producer: Mutex<Option<Conn>>,
    ctl: mpsc::UnboundedSender<Ctl>,
    task: StdMutex<Option<JoinHandle<()>>>,
}

impl BeanstalkDriver {
    fn task(&self) -> MutexGuard<'_, Option<JoinHandle<()>>> {
        self.task.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the producer connection (connecting first when needed),
    /// bounded by `jobs.timeout`; a failed connection is dropped so the next
    /// call reconnects.
    async fn produce<T>(
        &self,
        what: &str,
        f: impl for<'c> FnOnce(
            &'c mut Conn,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = std::io::Result<T>> + Send + 'c>,
        >,
    ) -> Result<T, JobsError> {
        let s = &self.s;
        let deadline = tokio::time::Instant::now() + s.timeout;
        let Ok(mut guard) = tokio::time::timeout_at(deadline, self.producer.lock()).await else {
            return Err(s.timeout_err(what));
        };
        let r = tokio::time::timeout_at(deadline, async {
            if guard.is_none() {
                *guard = Some(connect_producer(s).await?);
            }
            match guard.as_mut() {
                Some(c) => f(c).await,
                None => Err(std::io::Error::other("not connected")),
            }
        })
        .await;
        match r {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                *guard = None;
                Err(s.err(what, e))
            }
            Err(_) => {
                *guard = None;
                Err(s.timeout_err(what))
            }
        }
    }
}

impl Drop for BeanstalkDriver {
    fn drop(&mut self) {
        if let Some(h) = self.task().take() {
            h.abort();
        }
    }
}

#[async_trait]
impl Driver for BeanstalkDriver {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn push(&self, job: Job) -> Result<(), JobsError> {
        self.push_batch(vec![job]).await
    }

    /// Pipelined puts: all written, then all replies read.
    async fn push_batch(&self, jobs: Vec<Job>) -> Result<(), JobsError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let what = match jobs.as_slice() {
            [one] => format!("putting job {}", one.id),
            many => format!("putting {} jobs", many.len()),
        };
        let (pri, ttr) = (self.s.tube_priority, self.s.ttr);
        let bodies: Vec<(u64, Vec<u8>)> = jobs
            .iter()
            .map(|j| (j.delay().as_secs(), j.encode()))
            .collect();
        self.produce(&what, move |c| {
            Box::pin(async move {
                for (delay, body) in &bodies {
                    c.send_put(pri, *delay, ttr, body).await?;
                }
                c.flush().await?;
                for _ in &bodies {
                    c.put_reply().await?;
                }
                Ok(())
            })
        })
        .await
    }

    async fn resume(&self, sink: Sink) -> Result<(), JobsError> {
        self.ctl
            .send(Ctl::Resume(sink))
            .map_err(|_| self.s.err("resuming", "the driver is stopped"))
    }

    async fn pause(&self) -> Result<(), JobsError> {
        // Wait until the consumer task has let go of the sink, so that no
        // job pushed after `pause` returns is delivered (a reserve already in
        // flight is released back to the tube).
        let (tx, rx) = oneshot::channel();
        self.ctl
            .send(Ctl::Pause(tx))
            .map_err(|_| self.s.err("pausing", "the driver is stopped"))?;
        match tokio::time::timeout(self.s.timeout, rx).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(self.s.err("pausing", "the driver stopped meanwhile")),
            Err(_) => Err(self
                .s
                .err("pausing", "the consumer did not answer within jobs.timeout")),
        }
    }

    async fn stop(&self) -> Result<(), JobsError> {
        let (tx, rx) = oneshot::channel();
        if self.ctl.send(Ctl::Stop(tx)).is_ok() {
            let _ = tokio::time::timeout(self.s.timeout, rx).await;
        }
        let handle = self.task().take();
        if let Some(h) = handle {
            h.abort();
            let _ = h.await;
        }
        *self.producer.lock().await = None;
        Ok(())
    }

    async fn stat(&self) -> Result<QueueStat, JobsError> {
        let tube = self.s.tube.clone();
        let stats = self
            .produce("reading stats-tube", move |c| {
                Box::pin(async move { c.stats_tube(&tube).await })
            })
            .await?
            .unwrap_or_default();
        let get = |k: &str| {
            stats
                .iter()
                .find(|(key, _)| key == k)
                .and_then(|(_, v)| v.parse::<i64>().ok())
                .unwrap_or(0)
        };
        Ok(QueueStat {
            queue: self.s.tube.clone(),
            ready_jobs: get("current-jobs-ready"),
            delayed: get("current-jobs-delayed"),
            reserved: get("current-jobs-reserved"),
        })
    }
}

/// What the consumer task is told.
enum Ctl {
    Resume(Sink),
    Pause(oneshot::Sender<()>),
    Stop(oneshot::Sender<()>),
    Settle {
        id: u64,
        generation: u64,
        op: Op,
        reply: Option<oneshot::Sender<Result<(), String>>>,
    },
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Delete,
    Release,
}

/// Owns the consumer connection and its reservations.
struct Consumer {
    s: Arc<Settings>,
    rx: mpsc::UnboundedReceiver<Ctl>,
    tx: mpsc::WeakUnboundedSender<Ctl>,
    conn: Option<Conn>,
    /// Bumped per connection: reservations do not outlive theirs.
    generation: u64,
    /// Reserved and not settled: id → last touched.
    inflight: HashMap<u64, Instant>,
    /// `Some` while consuming.
    sink: Option<Sink>,
    outage: bool,
    backoff: Duration,
}

/// Whether the task goes on.
#[derive(PartialEq)]
enum Flow {
    Go,
    Exit,
}

impl Consumer {
    async fn run(mut self) {
        let mut poll = POLL_MIN;
        loop {
            while let Ok(c) = self.rx.try_recv() {
                if self.handle(c).await == Flow::Exit {
                    return;
                }
            }
            if self.conn.is_none() {
                if self.sink.is_none() {
                    // Paused with nothing to settle: wait to be told.
                    let Some(c) = self.rx.recv().await else {
                        return;
                    };
                    if self.handle(c).await == Flow::Exit {
                        return;
                    }
                    continue;
                }
                if let Err(e) = self.connect().await {
                    if !self.outage {
                        tracing::warn!(
                            pipeline = %self.s.pipeline,
                            "{}; reconnecting (retrying every {} ms up to {} s)",
                            self.s.err("connecting the consumer", e),
                            BACKOFF_MIN.as_millis(),
                            BACKOFF_MAX.as_secs()
                        );
                        self.outage = true;
                    }
                    let wait = self.backoff;
                    self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                    if self.wait_ctl(wait).await == Flow::Exit {
                        return;
                    }
                    continue;
                }
            }
            if let Err(e) = self.touch_due().await {
                self.lose("touching reserved jobs", e);
                continue;
            }
            let room = self.sink.is_some() && self.inflight.len() < self.s.prefetch;
            if !room {
                if self.wait_ctl(self.next_touch()).await == Flow::Exit {
                    return;
                }
                continue;
            }
            let Some(conn) = self.conn.as_mut() else {
                continue;
            };
            let reserved = if self.inflight.is_empty() {
                // Nothing out, so no ack can be waiting: block, but give up
                // the reserve (and the connection, which holds nothing) when
                // told something.
                let r = tokio::select! {
                    r = conn.reserve(self.s.reserve_timeout) => Ok(r),
                    c = self.rx.recv() => Err(c),
                };
                match r {
                    Ok(r) => r.map(|r| vec![r]),
                    Err(c) => {
                        self.conn = None;
                        self.generation += 1;
                        let Some(c) = c else { return };
                        if self.handle(c).await == Flow::Exit {
                            return;
                        }
                        continue;
                    }
                }
            } else {
                // Jobs are out: never block (their acks use this connection);
                // take what is ready, several reserves per round trip.
                let room = self.s.prefetch - self.inflight.len();
                conn.reserve_now(room.min(16)).await
            };
            let got = match reserved {
                Ok(got) => got,
                Err(e) => {
                    self.lose("reserving", e);
                    continue;
                }
            };
            let mut any = false;
            let generation = self.generation;
            for r in got {
                if self.generation != generation {
                    break; // that connection (and these reservations) died meanwhile
                }
                if let Reserve::Job(id, body) = r {
                    any = true;
                    if self.take(id, body).await == Flow::Exit {
                        return;
                    }
                }
            }
            if any {
                poll = POLL_MIN;
            } else if !self.inflight.is_empty() {
                let wait = poll.min(self.next_touch());
                poll = (poll * 2).min(POLL_MAX);
                if self.wait_ctl(wait).await == Flow::Exit {
                    return;
                }
            }
        }
    }

    async fn connect(&mut self) -> std::io::Result<()> {
        let s = &self.s;
        let mut c = Conn::connect(&s.addr, s.timeout).await?;
        tokio::time::timeout(s.timeout, c.watch_only(&s.tube))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "watch timed out"))??;
        if self.outage {
            tracing::info!(pipeline = %s.pipeline, addr = %s.addr, "beanstalkd is back");
        }
        self.conn = Some(c);
        self.outage = false;
        self.backoff = BACKOFF_MIN;
        Ok(())
    }

    /// The connection failed: its reservations are beanstalkd's again.
    fn lose(&mut self, what: &str, e: std::io::Error) {
        if !self.outage {
            tracing::warn!(
                pipeline = %self.s.pipeline,
                "{}; {} reserved jobs go back to the tube; reconnecting",
                self.s.err(what, e),
                self.inflight.len()
            );
            self.outage = true;
        }
        self.conn = None;
        self.generation += 1;
        self.inflight.clear();
    }

    /// Waits up to `d` for a command and handles it.
    async fn wait_ctl(&mut self, d: Duration) -> Flow {
        tokio::select! {
            c = self.rx.recv() => match c {
                Some(c) => self.handle(c).await,
                None => Flow::Exit,
            },
            _ = tokio::time::sleep(d) => Flow::Go,
        }
    }

    /// Until the next in-flight job needs a touch (at most 1 s).
    fn next_touch(&self) -> Duration {
        let half = Duration::from_millis(self.s.ttr * 500);
        self.inflight
            .values()
            .map(|t| half.saturating_sub(t.elapsed()))
            .min()
            .unwrap_or(Duration::from_secs(1))
            .clamp(Duration::from_millis(1), Duration::from_secs(1))
    }

    /// Touches reservations half-way to their TTR: a job runs as long as
    /// the plugin holds it (the pool bounds its run time), not until TTR.
    async fn touch_due(&mut self) -> std::io::Result<()> {
        let half = Duration::from_millis(self.s.ttr * 500);
        let due: Vec<u64> = self
            .inflight
            .iter()
            .filter(|(_, t)| t.elapsed() >= half)
            .map(|(id, _)| *id)
            .collect();
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        for id in due {
            if conn.touch(id).await? {
                self.inflight.insert(id, Instant::now());
            } else {
                self.inflight.remove(&id);
            }
        }
        Ok(())
    }

    /// A reserved job: deliver it (release it if paused, bury it if it is not a job).
    async fn take(&mut self, id: u64, body: Vec<u8>) -> Flow {
        let Some(sink) = self.sink.clone() else {
            if let Some(c) = self.conn.as_mut() {
                if let Err(e) = c.release(id, self.s.tube_priority, 0).await {
                    self.lose("releasing a job reserved while pausing", e);
                }
            }
            return Flow::Go;
        };
        let mut job = match Job::decode(&body) {
            Ok(j) => j,
            Err(e) => {
                tracing::warn!(
                    pipeline = %self.s.pipeline, tube = %self.s.tube, id,
                    "burying beanstalk job {id}: it is not a jobs.v1 job ({e}); kick it once fixed"
                );
                if let Some(c) = self.conn.as_mut() {
                    if let Err(e) = c.bury(id, self.s.tube_priority).await {
                        self.lose("burying a malformed job", e);
                    }
                }
                return Flow::Go;
            }
        };
        let Some(tx) = self.tx.upgrade() else {
            return Flow::Exit;
        };
        job.options.pipeline = self.s.pipeline.clone();
        self.inflight.insert(id, Instant::now());
        let d = Delivery {
            job,
            queue: Some(self.s.tube.clone()),
            acker: Box::new(BeanstalkAcker {
                id,
                generation: self.generation,
                ctl: tx,
                s: self.s.clone(),
                settled: false,
            }),
        };
        // Settle commands are served while the sink is full.
        let deliver = sink.deliver(d);
        tokio::pin!(deliver);
        loop {
            tokio::select! {
                r = &mut deliver => {
                    if r.is_err() {
                        // The plugin is closing; the dropped acker releases it.
                        self.sink = None;
                    }
                    return Flow::Go;
                }
                c = self.rx.recv() => match c {
                    Some(c) => if self.handle(c).await == Flow::Exit { return Flow::Exit },
                    None => return Flow::Exit,
                },
            }
        }
    }

    async fn handle(&mut self, c: Ctl) -> Flow {
        match c {
            Ctl::Resume(sink) => self.sink = Some(sink),
            Ctl::Pause(done) => {
                self.sink = None;
                let _ = done.send(());
            }
            Ctl::Stop(done) => {
                self.conn = None;
                let _ = done.send(());
                return Flow::Exit;
            }
            Ctl::Settle {
                id,
                generation,
                op,
                reply,
            } => {
                // Take every settle already queued and pipeline them.
                let mut batch = vec![(id, generation, op, reply)];
                let mut other = None;
                while batch.len() < 256 {
                    match self.rx.try_recv() {
                        Ok(Ctl::Settle {
                            id,
                            generation,
                            op,
                            reply,
                        }) => batch.push((id, generation, op, reply)),
                        Ok(c) => {
                            other = Some(c);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                self.settle(batch).await;
                if let Some(c) = other {
                    return Box::pin(self.handle(c)).await;
                }
            }
        }
        Flow::Go
    }

    /// Sends the deletes/releases of `batch` in one write, then reads their replies.
    async fn settle(&mut self, batch: Vec<Settle>) {
        let lost = |id: u64| {
            format!(
                "the connection that reserved job {id} was lost; beanstalkd made it ready again and will deliver it again"
            )
        };
        let mut sent = Vec::with_capacity(batch.len());
        for (id, generation, op, reply) in batch {
            if generation != self.generation
                || self.conn.is_none()
                || self.inflight.remove(&id).is_none()
            {
                if let Some(r) = reply {
                    let _ = r.send(Err(lost(id)));
                }
                continue;
            }
            sent.push((id, op, reply));
        }
        if sent.is_empty() {
            return;
        }
        let pri = self.s.tube_priority;
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let r: std::io::Result<Vec<client::Reply>> = async {
            for (id, op, _) in &sent {
                let line = match op {
                    Op::Delete => format!("delete {id}"),
                    Op::Release => format!("release {id} {pri} 0"),
                };
                conn.send(&line, None).await?;
            }
            conn.flush().await?;
            let mut replies = Vec::with_capacity(sent.len());
            for _ in &sent {
                replies.push(conn.read().await?);
            }
            Ok(replies)
        }
        .await;
        match r {
            Ok(replies) => {
                for ((id, op, reply), rep) in sent.into_iter().zip(replies) {
                    let res = match (op, rep.status()) {
                        (Op::Delete, "DELETED") | (Op::Release, "RELEASED") => Ok(()),
                        (_, "NOT_FOUND") => Err(format!(
                            "beanstalkd no longer holds job {id} as reserved (NOT_FOUND)"
                        )),
                        _ => Err(rep.unexpected(&format!("{op:?} {id}")).to_string()),
                    };
                    if let Some(reply) = reply {
                        let _ = reply.send(res);
                    }
                }
            }
            Err(e) => {
                let msg = e.to_string();
                self.lose("settling jobs", e);
                for (id, op, reply) in sent {
                    if let Some(reply) = reply {
                        let _ = reply.send(Err(format!("{op:?} of job {id}: {msg}")));
                    }
                }
            }
        }
    }
}

type Settle = (u64, u64, Op, Option<oneshot::Sender<Result<(), String>>>);

struct BeanstalkAcker {
    id: u64,
    generation: u64,
    ctl: mpsc::UnboundedSender<Ctl>,
    s: Arc<Settings>,
    settled: bool,
}

impl BeanstalkAcker {
    async fn settle(mut self: Box<Self>, op: Op) -> Result<(), JobsError> {
        self.settled = true;
        let what = match op {
            Op::Delete => format!("deleting job {}", self.id),
            Op::Release => format!("releasing job {}", self.id),
        };
        let (tx, rx) = oneshot::channel();
        let sent = self.ctl.send(Ctl::Settle {
            id: self.id,
            generation: self.generation,
            op,
            reply: Some(tx),
        });
        if sent.is_err() {
            return Err(self.s.err(
                &what,
                "the driver is stopped; beanstalkd released the job and will deliver it again",
            ));
        }
        match tokio::time::timeout(self.s.timeout, rx).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(self.s.err(&what, e)),
            Ok(Err(_)) => Err(self.s.err(&what, "the consumer connection closed")),
            Err(_) => Err(self.s.timeout_err(&what)),
        }
    }
}

impl Drop for BeanstalkAcker {
    fn drop(&mut self) {
        if !self.settled {
            // Given up without an answer: make it ready again now.
            let _ = self.ctl.send(Ctl::Settle {
                id: self.id,
                generation: self.generation,
                op: Op::Release,
                reply: None,
            });
        }
    }
}

#[async_trait]
impl Acker for BeanstalkAcker {
    async fn ack(self: Box<Self>) -> Result<(), JobsError> {
        self.settle(Op::Delete).await
    }

    async fn nack(self: Box<Self>, requeue: bool) -> Result<(), JobsError> {
        self.settle(if requeue { Op::Release } else { Op::Delete })
            .await
    }
}
