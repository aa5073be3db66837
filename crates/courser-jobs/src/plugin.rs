//! The jobs plugin on the plugin seam: pipelines, pollers, RPC, metrics, stop.
//!
//! Flow of one job: `jobs.Push` → [`Driver::push`] (the broker holds it) → the
//! driver's consumer hands a [`Delivery`] to the shared priority queue →
//! one of `num_pollers` pollers runs it on the `jobs` pool (`RR_MODE=jobs`, a
//! RAW frame: JSON context + payload) → the answer settles it: ack, nack
//! (requeue or drop), or requeue with a delay / new headers (pushed as a copy,
//! then the original acked). A worker that crashes, times out or answers an
//! ERROR frame nacks the job with requeue, so the broker delivers it again.
//!
//! Stop (SIGTERM): drivers stop consuming, deliveries still waiting in the
//! queue are nacked back, jobs running finish within the grace period, and
//! whatever is still unsettled then is left to the broker to redeliver.

use async_trait::async_trait;
use bytes::Bytes;
use courser_config::{DriverOptions, JobsConfig, PipelineConfig};
use courser_frame::flags;
use courser_plugin::{Factory, Host, Plugin, PluginError};
use courser_pool::Pool;
use courser_rpc::{Call, Registry};
use courser_worker::Payload;
use futures_util::FutureExt;
use prost::Message;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::watch;

use crate::driver::{Delivery, Driver, OpenArgs, Sink};
use crate::job::{Answer, Job};
use crate::metrics::{labels, JobsMetrics};
use crate::proto;
use crate::queue::PriorityQueue;
use crate::JobsError;

/// Builds the jobs plugin from the `jobs` section.
pub struct JobsFactory;

#[async_trait]
impl Factory for JobsFactory {
    fn section(&self) -> &'static str {
        "jobs"
    }

    async fn build(&self, host: &dyn Host) -> Result<Option<Box<dyn Plugin>>, PluginError> {
        let Some(cfg) = host.config().jobs.clone() else {
            return Ok(None);
        };
        let pool = host.start_pool("jobs", "jobs", &cfg.pool).await?;
        match JobsPlugin::new(cfg, pool.clone()).await {
            Ok(p) => Ok(Some(Box::new(p))),
            Err(e) => {
                pool.stop(Duration::ZERO).await;
                Err(PluginError::Other {
                    plugin: "jobs",
                    message: e.to_string(),
                })
            }
        }
    }
}

struct Pipeline {
    cfg: PipelineConfig,
    driver: Arc<dyn Driver>,
    consuming: AtomicBool,
    active: AtomicI64,
}

struct Core {
    cfg: JobsConfig,
    pool: Pool,
    queue: Arc<PriorityQueue>,
    pipelines: RwLock<BTreeMap<String, Arc<Pipeline>>>,
    metrics: JobsMetrics,
    stopping: AtomicBool,
}

/// The running plugin.
pub struct JobsPlugin {
    core: Arc<Core>,
    pollers: Vec<tokio::task::JoinHandle<()>>,
    refresher: Option<tokio::task::JoinHandle<()>>,
}

impl JobsPlugin {
    /// Opens every pipeline's driver (a broker that is down is an error naming
    /// its address) and returns the plugin, not yet consuming.
    pub async fn new(cfg: JobsConfig, pool: Pool) -> Result<JobsPlugin, JobsError> {
        let core = Arc::new(Core {
            queue: Arc::new(PriorityQueue::new(cfg.pipeline_size)),
            pool,
            pipelines: RwLock::new(BTreeMap::new()),
            metrics: JobsMetrics::new(),
            stopping: AtomicBool::new(false),
            cfg,
        });
        let pipelines = core.cfg.pipelines.clone();
        for p in pipelines {
            core.declare(p).await?;
        }
        Ok(JobsPlugin {
            core,
            pollers: Vec::new(),
            refresher: None,
        })
    }
}

impl Core {
    fn get(&self, name: &str) -> Option<Arc<Pipeline>> {
        self.pipelines
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    fn all(&self) -> Vec<Arc<Pipeline>> {
        self.pipelines
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    async fn declare(&self, cfg: PipelineConfig) -> Result<(), JobsError> {
        if self.get(&cfg.name).is_some() {
            return Err(JobsError::Exists(cfg.name));
        }
        let args = OpenArgs {
            pipeline: &cfg,
            connections: &self.cfg.connections,
            timeout: self.cfg.timeout,
        };
        let driver = match tokio::time::timeout(self.cfg.timeout, crate::drivers::open(args)).await
        {
            Ok(r) => r?,
            Err(_) => {
                return Err(JobsError::Timeout {
                    driver: "jobs",
                    pipeline: cfg.name.clone(),
                    what: format!("opening the {} driver", cfg.driver),
                    secs: self.cfg.timeout.as_secs(),
                })
            }
        };
        self.metrics.add_pipeline(&cfg.name);
        let name = cfg.name.clone();
        let p = Arc::new(Pipeline {
            cfg,
            driver,
            consuming: AtomicBool::new(false),
            active: AtomicI64::new(0),
        });
        self.pipelines
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name, p);
        Ok(())
    }

    fn sink(&self, p: &Pipeline) -> Sink {
        Sink {
            queue: self.queue.clone(),
            priority: p.cfg.priority,
        }
    }

    async fn resume(&self, p: &Pipeline) -> Result<(), JobsError> {
        if self.stopping.load(Ordering::Acquire) {
            return Err(JobsError::Stopping);
        }
        p.driver.resume(self.sink(p)).await?;
        p.consuming.store(true, Ordering::Release);
        Ok(())
    }

    async fn pause(&self, p: &Pipeline) -> Result<(), JobsError> {
        p.consuming.store(false, Ordering::Release);
        let r = p.driver.pause().await;
        // Deliveries already queued go back to the broker.
        for d in self.queue.drain_pipeline(&p.cfg.name) {
            let _ = d.acker.nack(true).await;
        }
        r
    }

    fn validate(&self, j: &proto::Job) -> Result<Arc<Pipeline>, JobsError> {
        let pipeline = j
            .options
            .as_ref()
            .map(|o| o.pipeline.as_str())
            .unwrap_or_default();
        if j.id.is_empty() {
            return Err(JobsError::EmptyId {
                name: j.job.clone(),
                pipeline: pipeline.to_string(),
            });
        }
        self.get(pipeline)
            .ok_or_else(|| JobsError::NoSuchPipeline(pipeline.to_string()))
    }

    async fn push_to(&self, p: &Pipeline, jobs: Vec<Job>) -> Result<(), JobsError> {
        if self.stopping.load(Ordering::Acquire) {
            return Err(JobsError::Stopping);
        }
        let n = jobs.len() as u64;
        let r = match tokio::time::timeout(self.cfg.timeout, p.driver.push_batch(jobs)).await {
            Ok(r) => r,
            Err(_) => Err(JobsError::Timeout {
                driver: p.driver.kind(),
                pipeline: p.cfg.name.clone(),
                what: format!("pushing {n} job(s)"),
                secs: self.cfg.timeout.as_secs(),
            }),
        };
        match &r {
            Ok(()) => JobsMetrics::inc(&self.metrics.pushed, &p.cfg.name, n),
            Err(_) => JobsMetrics::inc(&self.metrics.push_errors, &p.cfg.name, n),
        }
        r
    }

    /// Runs one delivery on a worker and settles it.
    async fn run(&self, d: Delivery) {
        let Some(p) = self.get(&d.job.options.pipeline) else {
            // Destroyed meanwhile: leave it to the broker.
            let _ = d.acker.nack(true).await;
            return;
        };
        if !p.consuming.load(Ordering::Acquire) {
            let _ = d.acker.nack(true).await;
            return;
        }
        let name = p.cfg.name.as_str();
        let taken = Instant::now();
        let Delivery { job, queue, acker } = d;
        let mut acker = Some(acker);
        if job.options.auto_ack {
            if let Some(a) = acker.take() {
                if let Err(e) = a.ack().await {
                    tracing::warn!(pipeline = name, job = %job.id, "auto_ack failed: {e}");
                }
                JobsMetrics::inc(&self.metrics.acked, name, 1);
            }
        }
        let payload = Payload {
            flags: flags::CODEC_RAW,
            context: Bytes::from(job.context(p.driver.kind(), queue.as_deref())),
            body: job.payload.clone(),
        };
        JobsMetrics::inc(&self.metrics.consumed, name, 1);
        p.active.fetch_add(1, Ordering::AcqRel);
        self.metrics.active.get_or_create(&labels(name)).inc();
        let started = Instant::now();
        let result = self.pool.exec(payload).await;
        p.active.fetch_sub(1, Ordering::AcqRel);
        self.metrics.active.get_or_create(&labels(name)).dec();
        JobsMetrics::observe(&self.metrics.duration, name, started.elapsed());
        let Some(acker) = acker else {
            if let Err(e) = result {
                tracing::warn!(pipeline = name, job = %job.id, name = %job.name, "auto-acked job failed and is not retried: {e}");
            }
            return;
        };
        let answer = match result {
            // An empty answer acks, as RoadRunner does.
            Ok(r) if r.body.is_empty() => Answer::Ack,
            Ok(r) => match Answer::parse(&r.body) {
                Ok(a) => a,
                Err(e) => {
                    tracing::error!(pipeline = name, job = %job.id, name = %job.name, pid = r.pid, "job malformed: {}; the job is acked (it is not run again)", e.0);
                    Answer::Ack
                }
            },
            Err(e) => {
                JobsMetrics::inc(&self.metrics.failed, name, 1);
                tracing::warn!(pipeline = name, job = %job.id, name = %job.name, "job failed: {e}; it is nacked and will be delivered again");
                Answer::Nack {
                    message: e.to_string(),
                    requeue: true,
                    delay: Duration::ZERO,
                }
            }
        };
        let settled = match answer {
            Answer::Ack => {
                JobsMetrics::inc(&self.metrics.acked, name, 1);
                acker.ack().await
            }
            Answer::Nack { requeue, delay, .. } if requeue && !delay.is_zero() => {
                JobsMetrics::inc(&self.metrics.nacked, name, 1);
                self.requeue(&p, job.clone(), acker, delay, Default::default())
                    .await
            }
            Answer::Nack { requeue, .. } => {
                JobsMetrics::inc(&self.metrics.nacked, name, 1);
                acker.nack(requeue).await
            }
            Answer::Requeue { delay, headers, .. } => {
                JobsMetrics::inc(&self.metrics.requeued, name, 1);
                self.requeue(&p, job.clone(), acker, delay, headers).await
            }
        };
        if let Err(e) = settled {
            tracing::warn!(pipeline = name, job = %job.id, "settling the job on the broker failed (it may be delivered again): {e}");
        }
        JobsMetrics::observe(&self.metrics.latency, name, taken.elapsed());
    }

    /// Pushes a copy (delay, merged headers) and then acks the original: a
    /// crash in between gives a duplicate, never a loss.
    async fn requeue(
        &self,
        p: &Pipeline,
        mut job: Job,
        acker: Box<dyn crate::Acker>,
        delay: Duration,
        headers: crate::Headers,
    ) -> Result<(), JobsError> {
        for (k, v) in headers {
            job.headers.insert(k, v);
        }
        job.options.delay = i64::try_from(delay.as_secs()).unwrap_or(i64::MAX);
        match tokio::time::timeout(self.cfg.timeout, p.driver.push(job)).await {
            Ok(Ok(())) => acker.ack().await,
            Ok(Err(e)) => {
                let _ = acker.nack(true).await;
                Err(e)
            }
            Err(_) => {
                let _ = acker.nack(true).await;
                Err(JobsError::Timeout {
                    driver: p.driver.kind(),
                    pipeline: p.cfg.name.clone(),
                    what: "requeueing a job".into(),
                    secs: self.cfg.timeout.as_secs(),
                })
            }
        }
    }

    async fn stats(&self) -> Vec<proto::Stat> {
        let mut out = Vec::new();
        for p in self.all() {
            let s = tokio::time::timeout(self.cfg.timeout, p.driver.stat())
                .await
                .unwrap_or_else(|_| Err(JobsError::Other("stat timed out".into())));
            let s = match s {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(pipeline = %p.cfg.name, "stat failed: {e}");
                    crate::QueueStat::default()
                }
            };
            let l = labels(&p.cfg.name);
            self.metrics.ready.get_or_create(&l).set(s.ready_jobs);
            self.metrics.delayed.get_or_create(&l).set(s.delayed);
            self.metrics.reserved.get_or_create(&l).set(s.reserved);
            out.push(proto::Stat {
                pipeline: p.cfg.name.clone(),
                driver: p.driver.kind().to_string(),
                queue: s.queue,
                active: p.active.load(Ordering::Acquire),
                delayed: s.delayed,
                reserved: s.reserved,
                ready: p.consuming.load(Ordering::Acquire),
                priority: u64::try_from(p.cfg.priority).unwrap_or(0),
            });
        }
        out
    }
}

async fn poll(core: Arc<Core>) {
    while let Some(d) = core.queue.pop().await {
        core.run(d).await;
    }
}

fn names(call: &Call) -> Result<Vec<String>, String> {
    proto::Pipelines::decode(call.body.as_ref())
        .map(|p| p.pipelines)
        .map_err(|e| {
            format!(
                "{}: the argument is not a jobs.v1.Pipelines message: {e}",
                call.method
            )
        })
}

fn proto_only(call: &Call) -> Result<(), String> {
    if call.flags == flags::CODEC_PROTO {
        Ok(())
    } else {
        Err(format!(
            "{} takes a protobuf argument (flag 0x80, jobs.v1 messages), as RoadRunner's jobs plugin",
            call.method
        ))
    }
}

fn encode<M: Message>(m: &M) -> Result<Bytes, String> {
    Ok(Bytes::from(m.encode_to_vec()))
}

/// A pipeline from `jobs.Declare`'s map: `name`, `driver`, `priority`, driver keys.
fn declared(map: std::collections::HashMap<String, String>) -> Result<PipelineConfig, String> {
    let name = map
        .get("name")
        .filter(|n| !n.is_empty())
        .cloned()
        .ok_or("jobs.Declare: the pipeline needs a \"name\"")?;
    let driver = map
        .get("driver")
        .cloned()
        .ok_or_else(|| format!("jobs.Declare: pipeline {name} needs a \"driver\""))?;
    if !courser_config::JOB_DRIVERS.contains(&driver.as_str()) {
        return Err(format!(
            "jobs.Declare: pipeline {name}: driver {driver:?} is not one of {}",
            courser_config::JOB_DRIVERS.join(", ")
        ));
    }
    let priority = match map.get("priority") {
        Some(p) => p.parse::<i64>().map_err(|_| {
            format!("jobs.Declare: pipeline {name}: priority {p:?} is not a whole number")
        })?,
        None => 10,
    };
    let mut m = serde_yaml::Mapping::new();
    for (k, v) in &map {
        if k != "name" && k != "driver" {
            m.insert(
                serde_yaml::Value::from(k.as_str()),
                serde_yaml::Value::from(v.as_str()),
            );
        }
    }
    Ok(PipelineConfig {
        config: DriverOptions::new(format!("jobs.Declare({name})"), m),
        name,
        driver,
        priority,
    })
}

fn register(core: &Arc<Core>, rpc: &mut Registry) {
    let c = core.clone();
    rpc.register("jobs.Push", move |call: Call| {
        let c = c.clone();
        async move {
            proto_only(&call)?;
            let req = proto::PushRequest::decode(call.body.as_ref()).map_err(|e| {
                format!("jobs.Push: the argument is not a jobs.v1.PushRequest: {e}")
            })?;
            let j = req.job.ok_or("jobs.Push: the request has no job")?;
            let p = c.validate(&j).map_err(|e| e.to_string())?;
            c.push_to(&p, vec![Job::from_proto(j)])
                .await
                .map_err(|e| e.to_string())?;
            Ok(Bytes::new())
        }
        .boxed()
    });
    let c = core.clone();
    rpc.register("jobs.PushBatch", move |call: Call| {
        let c = c.clone();
        async move {
            proto_only(&call)?;
            let req = proto::PushBatchRequest::decode(call.body.as_ref()).map_err(|e| {
                format!("jobs.PushBatch: the argument is not a jobs.v1.PushBatchRequest: {e}")
            })?;
            // Every job is checked before any is pushed.
            let mut by: BTreeMap<String, (Arc<Pipeline>, Vec<Job>)> = BTreeMap::new();
            for (i, j) in req.jobs.into_iter().enumerate() {
                let p = c
                    .validate(&j)
                    .map_err(|e| format!("jobs.PushBatch: job {i}: {e}; nothing was pushed"))?;
                by.entry(p.cfg.name.clone())
                    .or_insert_with(|| (p.clone(), Vec::new()))
                    .1
                    .push(Job::from_proto(j));
            }
            for (_, (p, jobs)) in by {
                c.push_to(&p, jobs).await.map_err(|e| e.to_string())?;
            }
            Ok(Bytes::new())
        }
        .boxed()
    });
    for (method, resume) in [("jobs.Pause", false), ("jobs.Resume", true)] {
        let c = core.clone();
        rpc.register(method, move |call: Call| {
            let c = c.clone();
            async move {
                proto_only(&call)?;
                let list = names(&call)?;
                let mut found = Vec::new();
                for n in &list {
                    found.push(
                        c.get(n)
                            .ok_or_else(|| format!("{}: no such pipeline: {n:?}", call.method))?,
                    );
                }
                for p in found {
                    let r = if resume { c.resume(&p).await } else { c.pause(&p).await };
                    r.map_err(|e| format!("{}: {e}", call.method))?;
                    tracing::info!(pipeline = %p.cfg.name, "{}", if resume { "pipeline resumed" } else { "pipeline paused" });
                }
                Ok(Bytes::new())
            }
            .boxed()
        });
    }
    let c = core.clone();
    rpc.register("jobs.List", move |call: Call| {
        let c = c.clone();
        async move {
            proto_only(&call)?;
            encode(&proto::Pipelines {
                pipelines: c.all().iter().map(|p| p.cfg.name.clone()).collect(),
            })
        }
        .boxed()
    });
    let c = core.clone();
    rpc.register("jobs.Stat", move |call: Call| {
        let c = c.clone();
        async move {
            proto_only(&call)?;
            encode(&proto::Stats {
                stats: c.stats().await,
            })
        }
        .boxed()
    });
    let c = core.clone();
    rpc.register("jobs.Declare", move |call: Call| {
        let c = c.clone();
        async move {
            proto_only(&call)?;
            let req = proto::DeclareRequest::decode(call.body.as_ref()).map_err(|e| {
                format!("jobs.Declare: the argument is not a jobs.v1.DeclareRequest: {e}")
            })?;
            let cfg = declared(req.pipeline)?;
            let name = cfg.name.clone();
            c.declare(cfg)
                .await
                .map_err(|e| format!("jobs.Declare: {e}"))?;
            if let Some(p) = c.get(&name) {
                c.resume(&p)
                    .await
                    .map_err(|e| format!("jobs.Declare: {e}"))?;
            }
            tracing::info!(pipeline = %name, "pipeline declared over RPC and consuming");
            Ok(Bytes::new())
        }
        .boxed()
    });
    let c = core.clone();
    rpc.register("jobs.Destroy", move |call: Call| {
        let c = c.clone();
        async move {
            proto_only(&call)?;
            let mut done = Vec::new();
            for n in names(&call)? {
                let removed = c
                    .pipelines
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&n);
                let Some(p) = removed else {
                    return Err(format!("jobs.Destroy: no such pipeline: {n:?}"));
                };
                let _ = c.pause(&p).await;
                if let Err(e) = p.driver.stop().await {
                    tracing::warn!(pipeline = %n, "stopping the destroyed pipeline: {e}");
                }
                c.metrics.remove_pipeline(&n);
                done.push(n);
            }
            encode(&proto::Pipelines { pipelines: done })
        }
        .boxed()
    });
    let c = core.clone();
    rpc.register("informer.Jobs", move |call: Call| {
        let c = c.clone();
        async move {
            #[derive(serde::Serialize)]
            struct State {
                pipeline: String,
                driver: String,
                queue: String,
                active: i64,
                delayed: i64,
                reserved: i64,
                ready: bool,
                priority: u64,
            }
            let states: Vec<State> = c
                .stats()
                .await
                .into_iter()
                .map(|s| State {
                    pipeline: s.pipeline,
                    driver: s.driver,
                    queue: s.queue,
                    active: s.active,
                    delayed: s.delayed,
                    reserved: s.reserved,
                    ready: s.ready,
                    priority: s.priority,
                })
                .collect();
            let _ = call;
            courser_rpc::json_reply(&states)
        }
        .boxed()
    });
}

#[async_trait]
impl Plugin for JobsPlugin {
    fn name(&self) -> &'static str {
        "jobs"
    }

    fn pools(&self) -> Vec<Pool> {
        vec![self.core.pool.clone()]
    }

    fn register_rpc(&self, rpc: &mut Registry) {
        register(&self.core, rpc);
    }

    fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.core.metrics.register(registry);
    }

    async fn serve(&mut self, mut shutdown: watch::Receiver<bool>) -> Result<(), PluginError> {
        for _ in 0..self.core.cfg.num_pollers.max(1) {
            self.pollers.push(tokio::spawn(poll(self.core.clone())));
        }
        for name in self.core.cfg.consume.clone() {
            if let Some(p) = self.core.get(&name) {
                self.core.resume(&p).await.map_err(|e| PluginError::Other {
                    plugin: "jobs",
                    message: e.to_string(),
                })?;
            }
        }
        let core = self.core.clone();
        self.refresher = Some(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(5)) => { core.stats().await; }
                    _ = shutdown.changed() => return,
                }
            }
        }));
        Ok(())
    }

    async fn stop(&mut self, deadline: Instant) {
        let core = &self.core;
        core.stopping.store(true, Ordering::Release);
        for p in core.all() {
            p.consuming.store(false, Ordering::Release);
            if let Err(e) = p.driver.pause().await {
                tracing::warn!(pipeline = %p.cfg.name, "pausing at stop: {e}");
            }
        }
        let waiting = core.queue.close();
        let handed_back = waiting.len();
        for d in waiting {
            let _ = d.acker.nack(true).await;
        }
        let mut unfinished = 0;
        for h in self.pollers.drain(..) {
            let abort = h.abort_handle();
            if tokio::time::timeout_at(deadline.into(), h).await.is_err() {
                abort.abort();
                unfinished += 1;
            }
        }
        if let Some(r) = self.refresher.take() {
            r.abort();
        }
        for p in core.all() {
            if let Err(e) = p.driver.stop().await {
                tracing::warn!(pipeline = %p.cfg.name, "stopping the driver: {e}");
            }
        }
        tracing::info!(
            handed_back,
            unfinished,
            "jobs stopped: queued jobs were handed back to their brokers; jobs still running at the deadline are redelivered by the broker"
        );
    }
}
