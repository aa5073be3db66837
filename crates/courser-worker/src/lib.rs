//! One PHP worker process (spec section 2): spawned in its own process group with
//! the RoadRunner environment, greeted with the PID handshake, fed one job at a
//! time, stopped with a control frame and killed if it does not leave.
//!
//! Invariants:
//! - Every child has exactly one owner, its reaper task, which waits for it and
//!   records its exit once ([`WorkerInfo::exit`]). Dropping a [`Worker`] kills the
//!   child's whole process group; nothing else sends signals to it except
//!   [`WorkerInfo::kill`].
//! - A [`Worker`] is owned by exactly one task while it runs a job, so job I/O
//!   needs no locks.
//! - This crate knows nothing about pools or HTTP.
//! - Slow-job traces: a worker whose stderr announced the Courser SDK's SIGPROF
//!   handler (`courser-slowlog-ready PID`) may be sent SIGPROF by
//!   [`WorkerInfo::report_slow_job`], at most once per job; the stderr forwarder
//!   turns the stack block it writes back into one log record. Any other worker is
//!   never sent SIGPROF, whose default action would end it.

mod error;
mod process;

pub use error::{ExitInfo, JobError, SpawnError};
pub use process::{RelayMode, SpawnSpec};

use bytes::Bytes;
use courser_frame::{flags, preview, stream, Frame};
use courser_relay::{FrameReader, FrameWriter, RelayError};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{oneshot, watch};

/// Where a worker is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    /// Spawned, handshake not yet answered.
    Starting = 0,
    /// Waiting for a job.
    Ready = 1,
    /// Running a job.
    Working = 2,
    /// Still serving, but due for replacement once its successor is ready.
    Draining = 3,
    /// Being stopped.
    Stopping = 4,
    /// Its process has exited.
    Exited = 5,
    /// Broken (protocol violation, crash): will be killed, never reused.
    Invalid = 6,
}

impl State {
    fn from_u8(v: u8) -> State {
        match v {
            0 => State::Starting,
            1 => State::Ready,
            2 => State::Working,
            3 => State::Draining,
            4 => State::Stopping,
            5 => State::Exited,
            _ => State::Invalid,
        }
    }
    /// Lower-case name, as shown by `courser workers`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Ready => "ready",
            State::Working => "working",
            State::Draining => "draining",
            State::Stopping => "stopping",
            State::Exited => "exited",
            State::Invalid => "invalid",
        }
    }
}

/// Why a worker was killed by the server; used to classify the job's error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum KillReason {
    /// Not killed by us.
    None = 0,
    /// A job ran past `exec_ttl`.
    ExecTtl = 1,
    /// The server is stopping and the worker did not leave within `destroy_timeout`.
    Destroy = 2,
    /// A streamed response could not be cancelled within `stream_timeout`.
    StreamTimeout = 3,
    /// The worker broke the protocol.
    Protocol = 4,
}

/// What the rest of the server can see of a worker, shared with its reaper.
#[derive(Debug)]
pub struct WorkerInfo {
    /// The process id.
    pub pid: u32,
    /// When it was spawned (wall clock, for display).
    pub created: SystemTime,
    /// When it was spawned (monotonic, for TTLs).
    pub started: Instant,
    state: AtomicU8,
    jobs: AtomicU64,
    /// Milliseconds after `started` at which the last job ended.
    last_used_ms: AtomicU64,
    /// Milliseconds after `started` at which the running job began, plus one; 0 when idle.
    job_started_ms: AtomicU64,
    kill_reason: AtomicU8,
    exit: OnceLock<ExitInfo>,
    exited: watch::Sender<bool>,
    stderr_tail: Mutex<Tail>,
    stderr_done: watch::Sender<bool>,
    /// Set when the worker announced its stack-trace handler on stderr.
    slowlog_ready: AtomicBool,
    /// The slow job whose stack was asked for, until the worker's answer is logged.
    slowlog_pending: Mutex<Option<SlowJob>>,
}

/// A slow job whose PHP stack the worker was asked for.
#[derive(Debug)]
pub(crate) struct SlowJob {
    /// How long the job had run when the stack was asked for.
    pub(crate) ran_for: Duration,
    /// What the job is, as the caller described it ("GET /uri").
    pub(crate) label: Option<String>,
}

impl SlowJob {
    /// "slow request: worker 42 has run a job for 1.500s (GET /uri)".
    pub(crate) fn describe(&self, pid: u32) -> String {
        let mut s = format!(
            "slow request: worker {pid} has run a job for {}",
            show_elapsed(self.ran_for)
        );
        if let Some(l) = &self.label {
            s.push_str(" (");
            s.push_str(l);
            s.push(')');
        }
        s
    }
}

/// "850ms" below a second, "1.500s" from there on.
fn show_elapsed(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.3}s", d.as_secs_f64())
    }
}

impl WorkerInfo {
    /// Current state.
    pub fn state(&self) -> State {
        if self.exit.get().is_some() {
            return State::Exited;
        }
        State::from_u8(self.state.load(Ordering::Acquire))
    }
    /// The state the pool last set, even after the exit was observed (so the
    /// pool can tell a planned stop from a crash).
    pub fn last_state(&self) -> State {
        State::from_u8(self.state.load(Ordering::Acquire))
    }
    /// Sets the state (the pool marks workers draining or invalid).
    pub fn set_state(&self, s: State) {
        self.state.store(s as u8, Ordering::Release);
    }
    /// Jobs completed or started.
    pub fn jobs(&self) -> u64 {
        self.jobs.load(Ordering::Relaxed)
    }
    /// Time since the last job ended (or since spawn).
    pub fn idle_for(&self) -> Duration {
        let now = self.started.elapsed();
        now.saturating_sub(Duration::from_millis(
            self.last_used_ms.load(Ordering::Relaxed),
        ))
    }
    /// How long the running job has run, if one is running.
    pub fn job_running_for(&self) -> Option<Duration> {
        match self.job_started_ms.load(Ordering::Relaxed) {
            0 => None,
            t => Some(
                self.started
                    .elapsed()
                    .saturating_sub(Duration::from_millis(t - 1)),
            ),
        }
    }
    /// Resident memory in bytes, read from `/proc`; `None` once the process is gone.
    pub fn rss_bytes(&self) -> Option<u64> {
        process::rss_bytes(self.pid)
    }
    /// The exit, once observed.
    pub fn exit(&self) -> Option<ExitInfo> {
        self.exit.get().cloned()
    }
    /// The last lines the worker wrote to stderr.
    pub fn stderr_tail(&self) -> String {
        self.stderr_tail
            .lock()
            .map(|t| t.text())
            .unwrap_or_default()
    }
    /// Why we killed it, if we did.
    pub fn kill_reason(&self) -> KillReason {
        match self.kill_reason.load(Ordering::Acquire) {
            1 => KillReason::ExecTtl,
            2 => KillReason::Destroy,
            3 => KillReason::StreamTimeout,
            4 => KillReason::Protocol,
            _ => KillReason::None,
        }
    }
    /// Kills the worker's process group with SIGKILL and records why. A no-op once
    /// the exit has been observed (the PID may have been reused).
    pub fn kill(&self, reason: KillReason) {
        let _ = self.kill_reason.compare_exchange(
            KillReason::None as u8,
            reason as u8,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        if self.exit.get().is_none() {
            process::kill_group(self.pid);
        }
    }
    /// Whether the worker announced the Courser SDK's stack-trace handler, so it
    /// may be sent SIGPROF.
    pub fn slowlog_ready(&self) -> bool {
        self.slowlog_ready.load(Ordering::Acquire)
    }
    /// Reports that the running job has run for `ran_for` (past the pool's
    /// `slowlog_timeout`); `label` describes the job ("GET /uri"). Call it once per
    /// job. A worker that announced the SDK's handler is sent SIGPROF (to its PID
    /// only, not its group) and the record is logged when its stack arrives on
    /// stderr: `slow request: worker <pid> has run a job for <elapsed>
    /// (<label>); PHP stack:` and the frames, at WARN. Any other worker is not
    /// signalled (SIGPROF would end it); the record is logged at once, without a
    /// stack. A no-op once the exit has been observed (the PID may be reused).
    pub fn report_slow_job(&self, pool: &str, ran_for: Duration, label: Option<&str>) {
        if self.exit.get().is_some() {
            return;
        }
        let job = SlowJob {
            ran_for,
            label: label.map(str::to_owned),
        };
        if self.slowlog_ready() {
            // Recorded before the signal, so the stack never arrives before its job.
            if let Ok(mut p) = self.slowlog_pending.lock() {
                *p = Some(job);
            }
            if let Err(e) = process::signal_stack_trace(self.pid) {
                if let Some(job) = self.take_slow_job() {
                    tracing::warn!(target: "courser::worker", pid = self.pid, pool = %pool, "{}; no PHP stack: sending SIGPROF failed: {e}", job.describe(self.pid));
                }
            }
            return;
        }
        tracing::warn!(
            target: "courser::worker",
            pid = self.pid,
            pool = %pool,
            "{}; no PHP stack: the worker did not install the Courser SDK's SIGPROF handler (it needs Courser\\Worker::create() and ext-pcntl)",
            job.describe(self.pid)
        );
    }
    /// Takes the slow job whose stack was asked for, if any.
    pub(crate) fn take_slow_job(&self) -> Option<SlowJob> {
        self.slowlog_pending.lock().ok().and_then(|mut p| p.take())
    }
    /// Waits until the exit has been observed, at most `timeout`.
    pub async fn wait_exit(&self, timeout: Duration) -> Option<ExitInfo> {
        let mut rx = self.exited.subscribe();
        let _ = tokio::time::timeout(timeout, rx.wait_for(|&e| e)).await;
        self.exit()
    }
    async fn wait_stderr_closed(&self, timeout: Duration) {
        let mut rx = self.stderr_done.subscribe();
        let _ = tokio::time::timeout(timeout, rx.wait_for(|&e| e)).await;
    }
    fn mark_job_start(&self) {
        self.jobs.fetch_add(1, Ordering::Relaxed);
        let t = self.started.elapsed().as_millis() as u64 + 1;
        self.job_started_ms.store(t, Ordering::Relaxed);
    }
    fn mark_job_end(&self) {
        self.job_started_ms.store(0, Ordering::Relaxed);
        self.last_used_ms
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

/// The last bytes a worker wrote to stderr, kept for error messages.
#[derive(Debug, Default)]
struct Tail {
    buf: std::collections::VecDeque<u8>,
}

const TAIL_BYTES: usize = 4096;

impl Tail {
    fn push(&mut self, line: &[u8]) {
        self.buf.extend(line);
        self.buf.push_back(b'\n');
        while self.buf.len() > TAIL_BYTES {
            self.buf.pop_front();
        }
    }
    fn text(&self) -> String {
        let v: Vec<u8> = self.buf.iter().copied().collect();
        String::from_utf8_lossy(&v).trim_end().to_string()
    }
}

/// A job for a worker: the codec flags, the context and the body.
#[derive(Debug, Clone)]
pub struct Payload {
    /// Frame flags (the payload codec, e.g. `CODEC_JSON`).
    pub flags: u8,
    /// The context (request metadata).
    pub context: Bytes,
    /// The body.
    pub body: Bytes,
}

/// One response frame from a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The worker that sent it.
    pub pid: u32,
    /// The frame flags (the codec the worker answered in).
    pub flags: u8,
    /// The response context (status and headers for HTTP).
    pub context: Bytes,
    /// The body (or this chunk of it).
    pub body: Bytes,
}

/// What [`Worker::next_reply`] read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A chunk of a streamed response; more follow.
    Chunk(Response),
    /// The final (or only) response frame; the worker is free again.
    Final(Response),
}

/// A live worker process and its relay.
pub struct Worker {
    info: Arc<WorkerInfo>,
    reader: FrameReader,
    writer: FrameWriter,
    /// A second handle on the job pipe (pipes relay only), to ask the kernel how
    /// many bytes the worker has not read.
    probe: Option<std::os::fd::OwnedFd>,
    /// Bytes of the running job's frame, until the worker sends any frame back.
    job_pending: usize,
    // Dropping this sender tells the reaper to kill the process group.
    _kill: oneshot::Sender<()>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("pid", &self.info.pid)
            .finish()
    }
}

const STOP_REQUEST: &[u8] = b"{\"stop\":true}";

impl Worker {
    /// Spawns a worker and completes the PID handshake within `spec.boot_timeout`.
    pub async fn spawn(spec: &SpawnSpec) -> Result<Worker, SpawnError> {
        process::spawn(spec).await
    }

    /// Shared view of this worker.
    pub fn info(&self) -> &Arc<WorkerInfo> {
        &self.info
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.info.pid
    }

    /// Sends a job. An error here means the worker never received it, so the job
    /// may safely run elsewhere.
    pub async fn start_job(&mut self, p: &Payload) -> Result<(), JobError> {
        // A draining worker keeps its state while it serves; only a ready one turns working.
        let _ = self.info.state.compare_exchange(
            State::Ready as u8,
            State::Working as u8,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        self.info.mark_job_start();
        self.job_pending = 0;
        if let Err(e) = self.writer.write_job(p.flags, &p.context, &p.body).await {
            self.info.set_state(State::Invalid);
            self.info.mark_job_end();
            return Err(JobError::NotDelivered {
                pid: self.info.pid,
                detail: e.to_string(),
            });
        }
        self.job_pending = courser_frame::HEADER_LEN + 4 + p.context.len() + p.body.len();
        Ok(())
    }

    /// Whether the worker provably never read any byte of the job it was sent:
    /// the pipe still holds at least the whole job frame. Only meaningful once
    /// the worker has exited (and its process group was killed), when nothing
    /// can read the pipe any more. The pipe is first in, first out, so if at
    /// least the job's length is unread, whatever the worker consumed came before
    /// the job. Always false for socket relays and once the worker has answered.
    fn job_unread(&self) -> bool {
        match (&self.probe, self.job_pending) {
            (Some(fd), n) if n > 0 => {
                process::unread_bytes(fd).is_some_and(|unread| unread >= n as u64)
            }
            _ => false,
        }
    }

    /// Reads the next response frame of the running job, answering PINGs.
    pub async fn next_reply(&mut self) -> Result<Reply, JobError> {
        loop {
            let f = match self.reader.read_frame().await {
                Ok(f) => f,
                Err(e) => return Err(self.classify(e).await),
            };
            // Any frame back means the worker read the job.
            self.job_pending = 0;
            if f.byte10 & stream::PING != 0 {
                let pong = Frame::stream_control(stream::PONG);
                if let Err(e) = self.writer.write_frame(&pong).await {
                    return Err(self.classify(e).await);
                }
            }
            if f.is_control() {
                // A late PID answer (we use PID requests as pings) is harmless.
                continue;
            }
            if f.is_error() {
                self.finish_job();
                return Err(JobError::Worker {
                    pid: self.info.pid,
                    message: String::from_utf8_lossy(&f.payload).into_owned(),
                });
            }
            let Some((context, body)) = f.split_context() else {
                self.info.set_state(State::Invalid);
                self.info.kill(KillReason::Protocol);
                return Err(JobError::Protocol {
                    pid: self.info.pid,
                    detail: format!(
                        "response frame has {} options (expected 1: the context length) or a context length past its {}-byte payload",
                        f.options.len(),
                        f.payload.len()
                    ),
                });
            };
            let resp = Response {
                pid: self.info.pid,
                flags: f.flags,
                context,
                body,
            };
            if f.is_stream() {
                return Ok(Reply::Chunk(resp));
            }
            if resp.flags & !flags::CODEC_JSON == 0
                && resp.body.is_empty()
                && &resp.context[..] == STOP_REQUEST
            {
                // Worker-initiated stop (spec 2.7): the job must run elsewhere.
                self.info.set_state(State::Invalid);
                self.info.mark_job_end();
                return Err(JobError::StopRequested { pid: self.info.pid });
            }
            self.finish_job();
            return Ok(Reply::Final(resp));
        }
    }

    /// Cancels a streamed response (spec 2.6): sends STOP, then discards frames
    /// until the final one, within `timeout`. On failure the worker is killed.
    pub async fn cancel_stream(&mut self, timeout: Duration) -> Result<(), JobError> {
        let pid = self.info.pid;
        let run = async {
            self.writer
                .write_frame(&Frame::stream_control(stream::STOP))
                .await
                .map_err(|e| e.to_string())?;
            loop {
                let f = self.reader.read_frame().await.map_err(|e| e.to_string())?;
                if !f.is_stream() {
                    return Ok::<(), String>(());
                }
            }
        };
        match tokio::time::timeout(timeout, run).await {
            Ok(Ok(())) => {
                self.finish_job();
                Ok(())
            }
            Ok(Err(detail)) => {
                self.info.set_state(State::Invalid);
                self.info.kill(KillReason::StreamTimeout);
                Err(JobError::Protocol {
                    pid,
                    detail: format!("cancelling a stream failed: {detail}"),
                })
            }
            Err(_) => {
                self.info.set_state(State::Invalid);
                self.info.kill(KillReason::StreamTimeout);
                Err(JobError::StreamTimeout { pid, timeout })
            }
        }
    }

    fn finish_job(&self) {
        self.info.mark_job_end();
        // Only a working worker turns ready; draining or stopping marks set meanwhile stay.
        let _ = self.info.state.compare_exchange(
            State::Working as u8,
            State::Ready as u8,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// Turns a relay failure during a job into a classified error, waiting briefly
    /// for the exit status so a crash is reported with its code or signal.
    async fn classify(&mut self, e: RelayError) -> JobError {
        let pid = self.info.pid;
        self.info.set_state(State::Invalid);
        self.info.mark_job_end();
        match e {
            RelayError::Garbage { preview, len, .. } => {
                self.info.kill(KillReason::Protocol);
                JobError::Garbage { pid, len, preview }
            }
            RelayError::TooLarge(e) => {
                self.info.kill(KillReason::Protocol);
                JobError::Protocol {
                    pid,
                    detail: e.to_string(),
                }
            }
            RelayError::Handshake(d) => JobError::Protocol { pid, detail: d },
            RelayError::Closed { .. } | RelayError::Io(_) => {
                let exit = self.info.wait_exit(Duration::from_millis(500)).await;
                match self.info.kill_reason() {
                    KillReason::ExecTtl => JobError::ExecTtl { pid },
                    KillReason::StreamTimeout => JobError::StreamTimeout {
                        pid,
                        timeout: Duration::ZERO,
                    },
                    // It died between jobs, after the job was written into the pipe
                    // but before it read any of it: the job may run elsewhere.
                    KillReason::None if exit.is_some() && self.job_unread() => {
                        self.job_pending = 0;
                        JobError::NotDelivered {
                            pid,
                            detail: format!(
                                "it exited ({}) before reading it",
                                exit.map(|e| e.to_string()).unwrap_or_default()
                            ),
                        }
                    }
                    _ => {
                        self.info
                            .wait_stderr_closed(Duration::from_millis(100))
                            .await;
                        JobError::Crashed {
                            pid,
                            exit,
                            stderr: last_lines(&self.info.stderr_tail(), 5),
                        }
                    }
                }
            }
        }
    }

    /// Sends a PID request and waits for the answer: a cheap liveness check.
    pub async fn ping(&mut self, timeout: Duration) -> Result<(), JobError> {
        let pid = self.info.pid;
        let run = courser_relay::handshake(&mut self.reader, &mut self.writer);
        match tokio::time::timeout(timeout, run).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(self.classify(e).await),
            Err(_) => Err(JobError::Protocol {
                pid,
                detail: "no answer to a PID request".into(),
            }),
        }
    }

    /// Stops the worker: the stop control frame, then SIGKILL to its process group
    /// if it has not exited within `destroy_timeout`. Returns how it ended.
    pub async fn stop(mut self, destroy_timeout: Duration) -> Option<ExitInfo> {
        self.info.set_state(State::Stopping);
        let stop = Frame::control(STOP_REQUEST);
        let sent = tokio::time::timeout(destroy_timeout, self.writer.write_frame(&stop)).await;
        if matches!(sent, Ok(Ok(()))) {
            if let Some(exit) = self.info.wait_exit(destroy_timeout).await {
                return Some(exit);
            }
            tracing::warn!(pid = self.info.pid, timeout = ?destroy_timeout, "worker did not exit after the stop request; killing it");
        }
        self.info.kill(KillReason::Destroy);
        self.info.wait_exit(Duration::from_secs(5)).await
    }
}

fn last_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Escaped preview of bytes, re-exported for messages elsewhere.
pub fn show(bytes: &[u8]) -> String {
    preview(bytes, 120)
}
