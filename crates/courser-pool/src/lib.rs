//! A supervised pool of PHP workers and the API every plugin uses to run a job.
//!
//! A caller takes an idle worker out of the pool by ownership (waiting at most
//! `allocate_timeout`), runs one job on it, and gives it back. A maintainer task
//! keeps the pool at size: it replaces workers that die, recycles workers that hit
//! a limit make-before-break, scales between `num_workers` and the dynamic maximum,
//! and backs off exponentially when workers cannot start.
//!
//! Invariants:
//! - The pool knows nothing about HTTP: jobs are opaque context and body bytes.
//! - No lock is held across an `.await`; the idle stack and worker map are behind
//!   short std mutexes, counts are atomics.
//! - The number of permits in `free` never exceeds the number of workers on the
//!   idle stack, so a caller holding a permit always finds a worker.
//! - Recycling for ttl, idle_ttl, memory and reset is make-before-break: a worker
//!   marked draining keeps serving until its replacement has answered the handshake.
//!   A worker on its last `max_jobs` job has its replacement spawned while it runs it.
//! - A job's timers cost nothing without `exec_ttl` and `slowlog_timeout`; with
//!   them, the reply read races one deadline at a time (`JobClock`), and
//!   a slow job's worker is asked for its PHP stack at most once.

mod error;
mod supervise;

pub use courser_config::PoolConfig;
pub use courser_worker::{JobError, Payload, Reply, Response, SpawnError, SpawnSpec, State};
pub use error::{PoolError, Source};

use courser_worker::{KillReason, Worker, WorkerInfo};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{mpsc, Notify, Semaphore};

/// Why a worker was replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartReason {
    /// It reached `max_jobs`.
    MaxJobs,
    /// It lived longer than `supervisor.ttl`.
    Ttl,
    /// It sat idle longer than `supervisor.idle_ttl`.
    IdleTtl,
    /// Its RSS passed `supervisor.max_worker_memory`.
    Memory,
    /// A job ran past `supervisor.exec_ttl`.
    ExecTtl,
    /// It died or broke the protocol.
    Crash,
    /// The pool was reset.
    Reset,
    /// It asked to stop.
    StopRequested,
}

impl RestartReason {
    /// All reasons, in a fixed order.
    pub const ALL: [RestartReason; 8] = [
        RestartReason::MaxJobs,
        RestartReason::Ttl,
        RestartReason::IdleTtl,
        RestartReason::Memory,
        RestartReason::ExecTtl,
        RestartReason::Crash,
        RestartReason::Reset,
        RestartReason::StopRequested,
    ];
    /// Label value for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            RestartReason::MaxJobs => "max_jobs",
            RestartReason::Ttl => "ttl",
            RestartReason::IdleTtl => "idle_ttl",
            RestartReason::Memory => "memory",
            RestartReason::ExecTtl => "exec_ttl",
            RestartReason::Crash => "crash",
            RestartReason::Reset => "reset",
            RestartReason::StopRequested => "stop_requested",
        }
    }
}

/// Counters kept by a pool.
#[derive(Debug, Default)]
pub struct Stats {
    /// Jobs that got a final response.
    pub jobs_ok: AtomicU64,
    /// Jobs that failed.
    pub jobs_failed: AtomicU64,
    /// Jobs re-run on another worker because the first never started them.
    pub jobs_retried: AtomicU64,
    /// Callers turned away (no free worker in time, or queue full).
    pub rejected: AtomicU64,
    /// Workers spawned successfully.
    pub spawned: AtomicU64,
    /// Spawns that failed.
    pub spawn_failures: AtomicU64,
    restarts: [AtomicU64; 8],
}

impl Stats {
    /// Restarts for a reason.
    pub fn restarts(&self, r: RestartReason) -> u64 {
        self.restarts[r as usize].load(Ordering::Relaxed)
    }
    fn restart(&self, r: RestartReason) {
        self.restarts[r as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// A worker as `courser workers` shows it.
#[derive(Debug, Clone)]
pub struct WorkerSnapshot {
    /// Process id.
    pub pid: u32,
    /// State.
    pub state: State,
    /// Jobs run.
    pub jobs: u64,
    /// Resident memory in bytes.
    pub rss: u64,
    /// When it was spawned.
    pub created: SystemTime,
}

/// A pool of workers; cheap to clone.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) name: String,
    pub(crate) cfg: PoolConfig,
    spec: SpawnSpec,
    idle: Mutex<Vec<Worker>>,
    free: Semaphore,
    waiting: AtomicUsize,
    pub(crate) workers: Mutex<HashMap<u32, Arc<WorkerInfo>>>,
    spawning: AtomicUsize,
    base_target: usize,
    pub(crate) extra: AtomicUsize,
    last_scale: Mutex<Option<Instant>>,
    fail_streak: AtomicU32,
    /// When the current failure streak began: only a job completed by a worker
    /// spawned since then shows that workers start again.
    streak_began: Mutex<Option<Instant>>,
    pub(crate) kick: Notify,
    stopping: AtomicBool,
    in_flight: AtomicUsize,
    settled: Notify,
    /// Counters for metrics.
    pub stats: Stats,
    /// Told how long each caller waited for a free worker (metrics).
    wait_observer: std::sync::OnceLock<WaitObserver>,
}

/// Receives the time each job waited for a free worker.
pub type WaitObserver = Arc<dyn Fn(Duration) + Send + Sync>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Least number of tries of a job whose workers provably did not start it
/// (a pool allows one more than it has workers); the wait for a free worker
/// (`allocate_timeout`) bounds them too.
const MAX_ATTEMPTS: usize = 3;

/// Set to "1" in the workers' environment when the pool has a `slowlog_timeout`:
/// the PHP SDK then answers SIGPROF with its stack.
pub const SLOWLOG_ENV: &str = "COURSER_SLOWLOG";

impl Pool {
    /// Starts a pool and its first workers. Fails when not a single worker can
    /// start, with the reason the last one gave (e.g. PHP's parse error).
    pub async fn start(
        name: &str,
        cfg: PoolConfig,
        mut spec: SpawnSpec,
    ) -> Result<Pool, PoolError> {
        let (exit_tx, exit_rx) = mpsc::unbounded_channel();
        spec.on_exit = Some(exit_tx);
        if cfg.slowlog_timeout.is_some() {
            // Asks the PHP SDK to install its SIGPROF stack-trace handler. First, so
            // that the pool's own env can still turn it off (COURSER_SLOWLOG=0).
            spec.env
                .insert(0, (SLOWLOG_ENV.to_string(), "1".to_string()));
        }
        spec.boot_timeout = cfg.allocate_timeout;
        spec.pool = name.to_string();
        let base_target = if cfg.debug { 0 } else { cfg.num_workers };
        let inner = Arc::new(Inner {
            name: name.to_string(),
            cfg,
            spec,
            idle: Mutex::new(Vec::with_capacity(base_target)),
            free: Semaphore::new(0),
            waiting: AtomicUsize::new(0),
            workers: Mutex::new(HashMap::new()),
            spawning: AtomicUsize::new(0),
            base_target,
            extra: AtomicUsize::new(0),
            last_scale: Mutex::new(None),
            fail_streak: AtomicU32::new(0),
            streak_began: Mutex::new(None),
            kick: Notify::new(),
            stopping: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            settled: Notify::new(),
            stats: Stats::default(),
            wait_observer: std::sync::OnceLock::new(),
        });
        // The first workers start together; if none can, the pool cannot run.
        let mut boots = Vec::with_capacity(base_target);
        for _ in 0..base_target {
            let spec = inner.spec.clone();
            boots.push(tokio::spawn(async move { Worker::spawn(&spec).await }));
        }
        let mut last_err = None;
        let mut ok = 0;
        for b in boots {
            match b.await {
                Ok(Ok(w)) => {
                    ok += 1;
                    inner.stats.spawned.fetch_add(1, Ordering::Relaxed);
                    lock(&inner.workers).insert(w.pid(), w.info().clone());
                    inner.push_idle(w);
                }
                Ok(Err(e)) => {
                    tracing::error!(pool = %name, error = %e, "a worker failed to start");
                    last_err = Some(e);
                }
                Err(e) => tracing::error!(pool = %name, error = %e, "a worker spawn task failed"),
            }
        }
        if ok == 0 {
            if let Some(e) = last_err {
                return Err(PoolError::Spawn(e));
            }
        }
        tracing::info!(pool = %name, workers = ok, "pool started");
        tokio::spawn(supervise::maintain(inner.clone(), exit_rx));
        Ok(Pool { inner })
    }

    /// The pool's name (the plugin it serves).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The pool's settings.
    pub fn config(&self) -> &PoolConfig {
        &self.inner.cfg
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// Callers waiting for a worker right now.
    pub fn queue_depth(&self) -> usize {
        self.inner.waiting.load(Ordering::Relaxed)
    }

    /// The workers, as a table shows them.
    pub fn workers(&self) -> Vec<WorkerSnapshot> {
        let mut v: Vec<WorkerSnapshot> = lock(&self.inner.workers)
            .values()
            .map(|w| WorkerSnapshot {
                pid: w.pid,
                state: w.state(),
                jobs: w.jobs(),
                rss: w.rss_bytes().unwrap_or(0),
                created: w.created,
            })
            .collect();
        v.sort_by_key(|w| w.created);
        v
    }

    /// Number of workers able to take jobs (ready or working).
    pub fn ready_workers(&self) -> usize {
        self.inner.count_active()
    }

    /// Runs a job and returns its whole response; a streamed response is joined.
    pub async fn exec(&self, payload: Payload) -> Result<Response, PoolError> {
        let mut job = self.start_job(payload).await?;
        let first = match job.next().await {
            Some(Ok(Reply::Final(r))) => return Ok(r),
            Some(Ok(Reply::Chunk(r))) => r,
            Some(Err(e)) => return Err(e),
            None => return Err(PoolError::EmptyPayload),
        };
        // A streamed response: join the chunks (only then is the body copied).
        let mut body = bytes::BytesMut::from(&first.body[..]);
        while let Some(r) = job.next().await {
            match r? {
                Reply::Chunk(r) | Reply::Final(r) => body.extend_from_slice(&r.body),
            }
        }
        Ok(Response {
            body: body.freeze(),
            ..first
        })
    }

    /// Starts a job: waits for a free worker (bounded by `allocate_timeout`), sends
    /// the payload and reads the first reply. Jobs a worker provably never started
    /// (it died before reading, or asked to stop) run again on another worker.
    pub async fn start_job(&self, payload: Payload) -> Result<Job, PoolError> {
        self.run_job(payload, None, false).await
    }

    /// As [`Pool::start_job`], for a job that `label` describes ("GET /uri") in the
    /// log record of a slow job (`slowlog_timeout`). `label` is called only when the
    /// pool has a `slowlog_timeout`, so describing costs nothing otherwise.
    pub async fn start_job_labeled(
        &self,
        payload: Payload,
        label: impl FnOnce() -> String,
    ) -> Result<Job, PoolError> {
        let label = self.inner.cfg.slowlog_timeout.map(|_| label());
        self.run_job(payload, label, false).await
    }

    /// As [`Pool::start_job_labeled`], for a job that may run twice without
    /// harm (an HTTP request with a safe method): when its worker crashes
    /// before answering anything, the job runs once more on another worker
    /// instead of failing. A worker the pool itself killed (exec_ttl, destroy)
    /// does not count as a crash here.
    pub async fn start_repeatable_job_labeled(
        &self,
        payload: Payload,
        label: impl FnOnce() -> String,
    ) -> Result<Job, PoolError> {
        let label = self.inner.cfg.slowlog_timeout.map(|_| label());
        self.run_job(payload, label, true).await
    }

    async fn run_job(
        &self,
        payload: Payload,
        label: Option<String>,
        repeatable: bool,
    ) -> Result<Job, PoolError> {
        if payload.context.is_empty() && payload.body.is_empty() {
            return Err(PoolError::EmptyPayload);
        }
        let inner = &self.inner;
        let deadline = Instant::now() + inner.cfg.allocate_timeout;
        let mut attempt = 0;
        let mut crash_retries = u8::from(repeatable);
        loop {
            attempt += 1;
            let mut taken = Taken {
                inner,
                worker: Some(inner.acquire(deadline).await?),
                sent: false,
            };
            let mut clock = JobClock::start(&inner.cfg);
            let first = match taken.worker().start_job(&payload).await {
                Ok(()) => {
                    taken.sent = true;
                    read_reply(taken.worker(), &mut clock, &inner.name, label.as_deref()).await
                }
                Err(e) => Err(e),
            };
            let w = taken.hand_back();
            match first {
                Ok(reply) => {
                    let mut job = Job {
                        inner: inner.clone(),
                        worker: None,
                        first: None,
                        clock,
                        label,
                    };
                    match reply {
                        Reply::Chunk(_) => job.worker = Some(w),
                        Reply::Final(_) => {
                            inner.stats.jobs_ok.fetch_add(1, Ordering::Relaxed);
                            inner.release(w, true);
                        }
                    }
                    job.first = Some(reply);
                    return Ok(job);
                }
                Err(e) => {
                    let reusable = e.worker_reusable();
                    // A crash the pool did not cause (it kills for exec_ttl, destroy, ...).
                    let crash_retry = crash_retries > 0
                        && matches!(e, JobError::Crashed { .. })
                        && matches!(w.info().kill_reason(), KillReason::None)
                        && !inner.is_stopping()
                        && Instant::now() < deadline;
                    if crash_retry {
                        crash_retries -= 1;
                        inner.stats.restart(RestartReason::Crash);
                        inner.stats.jobs_retried.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(pool = %inner.name, pid = e.pid(), error = %e, "the worker crashed before answering; running this repeatable job (a safe HTTP method) once more on another worker");
                        inner.release(w, reusable);
                        continue;
                    }
                    inner.note_failure(&e);
                    if matches!(e, JobError::NotDelivered { .. })
                        && w.info().jobs() <= 1
                        && w.info().started.elapsed() < supervise::QUICK_DEATH
                    {
                        // It died right after boot without reading its first job:
                        // part of a crash loop, even though a job was waiting for it.
                        inner.note_crash_loop();
                    }
                    inner.release(w, reusable);
                    // Workers that die together (e.g. each after N jobs) may each be
                    // handed this job in turn: allow one try per worker and more.
                    let max_attempts = MAX_ATTEMPTS.max(inner.target() + 1);
                    if e.retry_safe() && attempt < max_attempts && Instant::now() < deadline {
                        inner.stats.jobs_retried.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(pool = %inner.name, error = %e, "re-running the job on another worker");
                        continue;
                    }
                    inner.stats.jobs_failed.fetch_add(1, Ordering::Relaxed);
                    return Err(PoolError::Job(e));
                }
            }
        }
    }

    /// Replaces every worker, make-before-break, and waits until none of the old
    /// ones serves (at most `reset_timeout`). Returns how many were replaced.
    pub async fn reset(&self) -> usize {
        let inner = &self.inner;
        let old: Vec<Arc<WorkerInfo>> = lock(&inner.workers).values().cloned().collect();
        let mut n = 0;
        for w in &old {
            if matches!(w.state(), State::Ready | State::Working) {
                w.set_state(State::Draining);
                inner.stats.restart(RestartReason::Reset);
                n += 1;
            }
        }
        tracing::info!(pool = %inner.name, workers = n, "resetting the pool: replacing every worker");
        inner.kick.notify_one();
        let deadline = Instant::now() + inner.cfg.reset_timeout;
        while Instant::now() < deadline {
            if old
                .iter()
                .all(|w| !matches!(w.state(), State::Ready | State::Working | State::Draining))
            {
                break;
            }
            let settled = inner.settled.notified();
            let _ = tokio::time::timeout(Duration::from_millis(50), settled).await;
        }
        n
    }

    /// Reports how long every job waits for a free worker (set once, at startup).
    pub fn set_wait_observer(&self, observe: WaitObserver) {
        let _ = self.inner.wait_observer.set(observe);
    }

    /// Kills every worker's process group at once (forced exit).
    pub fn kill_all(&self) {
        for w in lock(&self.inner.workers).values() {
            w.kill(KillReason::Destroy);
        }
    }

    /// Stops the pool: no new jobs; running jobs may finish until `grace` ends;
    /// then every worker gets the stop frame (and SIGKILL after `destroy_timeout`).
    pub async fn stop(&self, grace: Duration) {
        let inner = &self.inner;
        inner.stopping.store(true, Ordering::Release);
        inner.free.close();
        inner.kick.notify_one();
        let deadline = Instant::now() + grace;
        while inner.in_flight.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            let settled = inner.settled.notified();
            let _ = tokio::time::timeout(Duration::from_millis(50), settled).await;
        }
        let idle: Vec<Worker> = std::mem::take(&mut *lock(&inner.idle));
        let destroy = inner.cfg.destroy_timeout;
        let stops: Vec<_> = idle
            .into_iter()
            .map(|w| tokio::spawn(w.stop(destroy)))
            .collect();
        for s in stops {
            let _ = s.await;
        }
        // Jobs still running past the grace period lose their workers now.
        let left: Vec<Arc<WorkerInfo>> = lock(&inner.workers).values().cloned().collect();
        for w in &left {
            if w.exit().is_none() {
                tracing::warn!(pool = %inner.name, pid = w.pid, "worker still busy after the grace period; killing it");
                w.kill(KillReason::Destroy);
            }
        }
        for w in left {
            w.wait_exit(Duration::from_secs(5)).await;
        }
        tracing::info!(pool = %inner.name, "pool stopped");
    }
}

/// The deadlines of one job on one worker.
#[derive(Debug, Clone, Copy)]
struct JobClock {
    /// When `exec_ttl` kills the worker.
    exec_deadline: Option<Instant>,
    /// When to ask for the PHP stack (`slowlog_timeout`), and when the job
    /// started; cleared once asked, so it happens once per job. Only set when it
    /// comes before the exec deadline.
    slowlog: Option<(Instant, Instant)>,
}

impl JobClock {
    fn start(cfg: &PoolConfig) -> JobClock {
        let (ttl, slow) = (cfg.supervisor.exec_ttl, cfg.slowlog_timeout);
        if ttl.is_none() && slow.is_none() {
            return JobClock {
                exec_deadline: None,
                slowlog: None,
            };
        }
        let now = Instant::now();
        // A limit too far away to represent is no limit.
        let exec_deadline = ttl.and_then(|t| now.checked_add(t));
        let slowlog = match (slow.and_then(|t| now.checked_add(t)), exec_deadline) {
            // exec_ttl ends the job first: no stack.
            (Some(at), Some(d)) if at >= d => None,
            (at, _) => at.map(|at| (at, now)),
        };
        JobClock {
            exec_deadline,
            slowlog,
        }
    }
}

/// Reads the next reply within the job's deadlines: past `exec_ttl` the worker is
/// killed; past `slowlog_timeout` it is asked once for its PHP stack (the read
/// goes on: the same future is polled again, so no frame is lost).
async fn read_reply(
    w: &mut Worker,
    clock: &mut JobClock,
    pool: &str,
    label: Option<&str>,
) -> Result<Reply, JobError> {
    let Some((at, started)) = clock.slowlog else {
        return read_within(w, clock.exec_deadline).await;
    };
    let info = w.info().clone();
    let read = w.next_reply();
    tokio::pin!(read);
    tokio::select! {
        biased;
        r = &mut read => return r,
        () = tokio::time::sleep_until(at.into()) => {}
    }
    clock.slowlog = None;
    info.report_slow_job(pool, started.elapsed(), label);
    match clock.exec_deadline {
        None => read.await,
        Some(d) => match tokio::time::timeout_at(d.into(), read).await {
            Ok(r) => r,
            Err(_) => {
                info.kill(KillReason::ExecTtl);
                Err(JobError::ExecTtl { pid: info.pid })
            }
        },
    }
}

async fn read_within(w: &mut Worker, exec_deadline: Option<Instant>) -> Result<Reply, JobError> {
    match exec_deadline {
        None => w.next_reply().await,
        Some(d) => match tokio::time::timeout_at(d.into(), w.next_reply()).await {
            Ok(r) => r,
            Err(_) => {
                w.info().kill(KillReason::ExecTtl);
                Err(JobError::ExecTtl { pid: w.pid() })
            }
        },
    }
}

/// A worker taken for a job whose first reply the caller awaits. If the caller's
/// future is dropped before that (the HTTP client went away), the worker is not
/// killed with it: a job it never received leaves it as it was (a half-written
/// frame would not: it is disposed of); a job it received is finished in the
/// background, its reply read and dropped (a stream cancelled), before the
/// worker goes back to the idle stack. A worker that does not finish within
/// `stream_timeout` (or `exec_ttl`, when shorter) is disposed of.
struct Taken<'a> {
    inner: &'a Arc<Inner>,
    worker: Option<Worker>,
    /// The job frame was written completely.
    sent: bool,
}

impl Taken<'_> {
    fn worker(&mut self) -> &mut Worker {
        self.worker
            .as_mut()
            .expect("a taken worker stays until it is handed back")
    }

    /// The worker, for the caller to release; disarms the guard.
    fn hand_back(mut self) -> Worker {
        self.worker
            .take()
            .expect("a taken worker stays until it is handed back")
    }
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        let Some(mut w) = self.worker.take() else {
            return;
        };
        let inner = self.inner.clone();
        let writing = w.info().job_running_for().is_some() && !self.sent;
        if writing {
            // Cancelled in the middle of writing the job frame: the relay is out of step.
            w.info().set_state(State::Invalid);
            inner.release(w, false);
            return;
        }
        if !self.sent {
            inner.release(w, true);
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            inner.release(w, false);
            return;
        };
        let limit = match inner.cfg.supervisor.exec_ttl {
            Some(ttl) => ttl.min(inner.cfg.stream_timeout),
            None => inner.cfg.stream_timeout,
        };
        rt.spawn(async move {
            let finish = async {
                match w.next_reply().await {
                    Ok(Reply::Final(_)) => true,
                    Ok(Reply::Chunk(_)) => w.cancel_stream(limit).await.is_ok(),
                    // An error frame leaves the worker fine; anything else does not.
                    Err(e) => e.worker_reusable(),
                }
            };
            let ok = tokio::time::timeout(limit, finish).await.unwrap_or(false);
            if !ok {
                tracing::warn!(pool = %inner.name, pid = w.pid(), "a worker did not finish a job its caller gave up on; replacing it");
            }
            inner.release(w, ok);
        });
    }
}

/// A running job. Yields the first reply, then further chunks of a streamed
/// response. Dropping it mid-stream cancels the stream on the worker (STOP) and
/// gives the worker back once it has closed the stream.
pub struct Job {
    inner: Arc<Inner>,
    worker: Option<Worker>,
    first: Option<Reply>,
    clock: JobClock,
    /// What the caller said the job is, for the slow-job record.
    label: Option<String>,
}

impl Job {
    /// The next reply; `None` after the final one.
    pub async fn next(&mut self) -> Option<Result<Reply, PoolError>> {
        if let Some(r) = self.first.take() {
            return Some(Ok(r));
        }
        let w = self.worker.as_mut()?;
        let read = read_reply(w, &mut self.clock, &self.inner.name, self.label.as_deref());
        match read.await {
            Ok(Reply::Chunk(r)) => Some(Ok(Reply::Chunk(r))),
            Ok(Reply::Final(r)) => {
                if let Some(w) = self.worker.take() {
                    self.inner.stats.jobs_ok.fetch_add(1, Ordering::Relaxed);
                    self.inner.release(w, true);
                }
                Some(Ok(Reply::Final(r)))
            }
            Err(e) => {
                if let Some(w) = self.worker.take() {
                    self.inner.note_failure(&e);
                    self.inner.stats.jobs_failed.fetch_add(1, Ordering::Relaxed);
                    self.inner.release(w, e.worker_reusable());
                }
                Some(Err(PoolError::Job(e)))
            }
        }
    }

    /// The PID of the worker still streaming this job, if any.
    pub fn worker_pid(&self) -> Option<u32> {
        self.worker.as_ref().map(|w| w.pid())
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        let Some(mut w) = self.worker.take() else {
            return;
        };
        let inner = self.inner.clone();
        let timeout = inner.cfg.stream_timeout;
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn(async move {
                    let ok = w.cancel_stream(timeout).await.is_ok();
                    inner.release(w, ok);
                });
            }
            Err(_) => inner.release(w, false),
        }
    }
}

impl Inner {
    pub(crate) fn count_active(&self) -> usize {
        lock(&self.workers)
            .values()
            .filter(|w| matches!(w.state(), State::Ready | State::Working))
            .count()
    }

    pub(crate) fn target(&self) -> usize {
        self.base_target + self.extra.load(Ordering::Relaxed)
    }

    fn max_jobs_for(&self, pid: u32) -> u64 {
        let m = self.cfg.max_jobs;
        if m == 0 {
            return 0;
        }
        // Up to ~14% jitter per worker (as RoadRunner), so a pool does not recycle all at once.
        let spread = m * 14 / 100;
        m + if spread == 0 {
            0
        } else {
            (pid as u64).wrapping_mul(2_654_435_761) % (spread + 1)
        }
    }

    async fn acquire(self: &Arc<Self>, deadline: Instant) -> Result<Worker, PoolError> {
        if self.cfg.debug {
            return self.acquire_fresh().await;
        }
        let observer = self.wait_observer.get();
        loop {
            let permit = match self.free.try_acquire() {
                Ok(p) => {
                    if let Some(observe) = observer {
                        observe(Duration::ZERO);
                    }
                    p
                }
                Err(tokio::sync::TryAcquireError::Closed) => {
                    return Err(PoolError::Stopped {
                        pool: self.name.clone(),
                    })
                }
                Err(tokio::sync::TryAcquireError::NoPermits) => {
                    let limit = self.cfg.max_queue_size;
                    let waiting = self.waiting.fetch_add(1, Ordering::AcqRel);
                    let _guard = Decrement(&self.waiting);
                    if limit > 0 && waiting >= limit {
                        self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                        return Err(PoolError::QueueFull {
                            pool: self.name.clone(),
                            limit,
                        });
                    }
                    self.maybe_scale_up();
                    let started = Instant::now();
                    match tokio::time::timeout_at(deadline.into(), self.free.acquire()).await {
                        Ok(Ok(p)) => {
                            if let Some(observe) = observer {
                                observe(started.elapsed());
                            }
                            p
                        }
                        Ok(Err(_)) => {
                            return Err(PoolError::Stopped {
                                pool: self.name.clone(),
                            })
                        }
                        Err(_) => {
                            self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                            return Err(PoolError::NoFreeWorker {
                                pool: self.name.clone(),
                                waited: started.elapsed(),
                                workers: lock(&self.workers).len(),
                            });
                        }
                    }
                }
            };
            permit.forget();
            let Some(w) = lock(&self.idle).pop() else {
                // Cannot happen while the permit invariant holds; retry rather than fail.
                continue;
            };
            match w.info().state() {
                State::Ready | State::Draining => {
                    let limit = self.max_jobs_for(w.pid());
                    if limit > 0 && w.info().jobs() + 1 >= limit {
                        // Its last job: start the replacement now, while it runs it.
                        w.info().set_state(State::Stopping);
                        self.stats.restart(RestartReason::MaxJobs);
                        self.kick.notify_one();
                    }
                    self.in_flight.fetch_add(1, Ordering::AcqRel);
                    return Ok(w);
                }
                _ => self.dispose(w),
            }
        }
    }

    async fn acquire_fresh(self: &Arc<Self>) -> Result<Worker, PoolError> {
        if self.stopping.load(Ordering::Acquire) {
            return Err(PoolError::Stopped {
                pool: self.name.clone(),
            });
        }
        let w = Worker::spawn(&self.spec).await?;
        self.stats.spawned.fetch_add(1, Ordering::Relaxed);
        lock(&self.workers).insert(w.pid(), w.info().clone());
        w.info().set_state(State::Stopping);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        Ok(w)
    }

    fn maybe_scale_up(&self) {
        let Some(dyn_cfg) = &self.cfg.dynamic_allocator else {
            return;
        };
        let mut last = lock(&self.last_scale);
        if last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            return;
        }
        let extra = self.extra.load(Ordering::Relaxed);
        let add = dyn_cfg
            .spawn_rate
            .min(dyn_cfg.max_workers.saturating_sub(extra));
        if add == 0 {
            return;
        }
        *last = Some(Instant::now());
        self.extra.fetch_add(add, Ordering::Relaxed);
        tracing::info!(pool = %self.name, added = add, "all workers busy; adding dynamic workers");
        self.kick.notify_one();
    }

    /// Gives a worker back after a job.
    fn release(&self, w: Worker, reusable: bool) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        if reusable && self.fail_streak.load(Ordering::Relaxed) != 0 {
            self.end_streak_if_new(&w);
        }
        if !reusable {
            self.dispose(w);
        } else {
            match w.info().state() {
                State::Ready | State::Draining | State::Working => self.push_idle(w),
                _ => self.dispose(w),
            }
        }
        self.settled.notify_waiters();
    }

    pub(crate) fn push_idle(&self, w: Worker) {
        if self.stopping.load(Ordering::Acquire) {
            w.info().set_state(State::Stopping);
            self.dispose(w);
            return;
        }
        lock(&self.idle).push(w);
        self.free.add_permits(1);
    }

    /// Ends a worker that will not serve again: a stopping one gets the stop frame,
    /// a broken one is killed (by dropping it).
    pub(crate) fn dispose(&self, w: Worker) {
        let info = w.info().clone();
        let was_running = matches!(info.state(), State::Stopping) && info.exit().is_none();
        if was_running {
            let t = self.cfg.destroy_timeout;
            tokio::spawn(async move {
                w.stop(t).await;
            });
        } else {
            info.set_state(State::Invalid);
            drop(w);
        }
        self.kick.notify_one();
    }

    /// Removes workers that will not serve again from the idle stack.
    pub(crate) fn sweep_idle(&self) {
        let mut gone = Vec::new();
        {
            let mut idle = lock(&self.idle);
            let mut i = 0;
            while i < idle.len() {
                if matches!(idle[i].info().state(), State::Ready | State::Draining) {
                    i += 1;
                    continue;
                }
                match self.free.try_acquire() {
                    Ok(p) => {
                        p.forget();
                        gone.push(idle.remove(i));
                    }
                    Err(_) => break,
                }
            }
        }
        for w in gone {
            self.dispose(w);
        }
    }

    fn note_failure(&self, e: &JobError) {
        let reason = match e {
            JobError::Worker { .. } => return,
            JobError::ExecTtl { .. } => RestartReason::ExecTtl,
            JobError::StopRequested { .. } => RestartReason::StopRequested,
            _ => RestartReason::Crash,
        };
        self.stats.restart(reason);
        // The caller logs a failed job once, with what the job was (the HTTP
        // request, the jobs job id); the pool only counts it.
        match e {
            JobError::StopRequested { .. } | JobError::NotDelivered { .. } => {
                tracing::info!(pool = %self.name, error = %e, "worker left before running the job")
            }
            _ => {
                tracing::debug!(pool = %self.name, pid = e.pid(), kind = e.kind(), error = %e, "job failed")
            }
        }
    }

    pub(crate) fn spawn_one(self: &Arc<Self>) {
        self.spawning.fetch_add(1, Ordering::AcqRel);
        let inner = self.clone();
        tokio::spawn(async move {
            let streak = inner.fail_streak.load(Ordering::Acquire);
            if streak > 0 {
                // Exponential backoff for crash loops: 100 ms doubling to 10 s.
                let ms = 100u64
                    .saturating_mul(1 << streak.min(8).saturating_sub(1))
                    .min(10_000);
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            if inner.stopping.load(Ordering::Acquire) {
                inner.spawning.fetch_sub(1, Ordering::AcqRel);
                return;
            }
            match Worker::spawn(&inner.spec).await {
                Ok(w) => {
                    // The failure streak is not cleared here: a worker that boots and
                    // then dies at once is still a crash loop. A completed job clears it.
                    inner.stats.spawned.fetch_add(1, Ordering::Relaxed);
                    lock(&inner.workers).insert(w.pid(), w.info().clone());
                    tracing::debug!(pool = %inner.name, pid = w.pid(), "worker added");
                    inner.push_idle(w);
                    inner.retire_replaced();
                }
                Err(e) => {
                    let n = inner.note_crash_loop();
                    inner.stats.spawn_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(pool = %inner.name, failures_in_a_row = n, error = %e, "a worker failed to start; backing off");
                }
            }
            inner.spawning.fetch_sub(1, Ordering::AcqRel);
            inner.kick.notify_one();
            inner.settled.notify_waiters();
        });
    }

    /// After a spawn: while the pool has its full count of active workers, draining
    /// ones have been replaced and leave (make-before-break).
    fn retire_replaced(&self) {
        let target = self.target();
        let mut retired = false;
        {
            let workers = lock(&self.workers);
            let mut active = workers
                .values()
                .filter(|w| matches!(w.state(), State::Ready | State::Working))
                .count();
            let mut draining: Vec<&Arc<WorkerInfo>> = workers
                .values()
                .filter(|w| w.state() == State::Draining)
                .collect();
            draining.sort_by_key(|w| w.started);
            for w in draining {
                if active < target {
                    break;
                }
                w.set_state(State::Stopping);
                retired = true;
                active = active.saturating_sub(0);
            }
        }
        if retired {
            self.sweep_idle();
        }
    }

    pub(crate) fn spawning(&self) -> usize {
        self.spawning.load(Ordering::Acquire)
    }
    /// Counts one more failure in a row (spawn failed, or a worker died at once);
    /// returns the length of the streak.
    pub(crate) fn note_crash_loop(&self) -> u32 {
        let mut began = lock(&self.streak_began);
        let n = self.fail_streak.fetch_add(1, Ordering::AcqRel) + 1;
        if n == 1 {
            *began = Some(Instant::now());
        }
        n
    }

    /// Ends the failure streak when `w`, which just completed a job, was spawned
    /// after the streak began. A job completed by an older worker proves nothing
    /// about whether new ones can start: with one healthy worker serving, a
    /// replacement that cannot boot would otherwise be retried every 100 ms.
    fn end_streak_if_new(&self, w: &Worker) {
        let mut began = lock(&self.streak_began);
        if began.is_some_and(|t| w.info().started >= t) {
            *began = None;
            self.fail_streak.store(0, Ordering::Release);
        }
    }
    pub(crate) fn failing(&self) -> bool {
        self.fail_streak.load(Ordering::Acquire) > 0
    }
    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }
    pub(crate) fn restart(&self, r: RestartReason) {
        self.stats.restart(r);
    }
}

struct Decrement<'a>(&'a AtomicUsize);
impl Drop for Decrement<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock(exec_ttl_ms: Option<u64>, slowlog_ms: Option<u64>) -> JobClock {
        let mut cfg = PoolConfig::default();
        cfg.supervisor.exec_ttl = exec_ttl_ms.map(Duration::from_millis);
        cfg.slowlog_timeout = slowlog_ms.map(Duration::from_millis);
        JobClock::start(&cfg)
    }

    #[test]
    fn job_clock_deadlines() {
        let c = clock(None, None);
        assert!(c.exec_deadline.is_none() && c.slowlog.is_none());
        let c = clock(None, Some(200));
        let (at, started) = c.slowlog.expect("slowlog deadline");
        assert_eq!(at - started, Duration::from_millis(200));
        assert!(c.exec_deadline.is_none());
        let c = clock(Some(600), Some(200));
        assert!(c.exec_deadline.is_some() && c.slowlog.is_some());
        // exec_ttl kills the job first: no stack is asked for.
        let c = clock(Some(200), Some(200));
        assert!(c.exec_deadline.is_some() && c.slowlog.is_none());
        // A limit too far away to represent is no limit.
        let mut cfg = PoolConfig::default();
        cfg.supervisor.exec_ttl = Some(Duration::MAX);
        cfg.slowlog_timeout = Some(Duration::from_millis(200));
        let c = JobClock::start(&cfg);
        assert!(c.exec_deadline.is_none() && c.slowlog.is_some());
    }
}
