//! Spawning a worker process, its reaper and its stderr forwarder.

use crate::{ExitInfo, SpawnError, State, Tail, Worker, WorkerInfo};
use courser_frame::Limits;
use courser_relay::{FrameReader, FrameWriter, RelayError, SocketListener};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::{mpsc, oneshot, watch};

/// How the worker talks to us.
#[derive(Clone)]
pub enum RelayMode {
    /// Frames over the child's stdin and stdout.
    Pipes,
    /// The child connects to this listener.
    Socket(SocketListener),
}

/// Everything needed to start one worker.
#[derive(Clone)]
pub struct SpawnSpec {
    /// Program and arguments.
    pub command: Vec<String>,
    /// Variables added to the inherited environment, in order (later wins).
    pub env: Vec<(String, String)>,
    /// Working directory (`None`: ours).
    pub cwd: Option<PathBuf>,
    /// The relay.
    pub relay: RelayMode,
    /// Frame size limits.
    pub limits: Limits,
    /// Limit for spawn plus handshake (`allocate_timeout`).
    pub boot_timeout: Duration,
    /// Name of the pool, for log lines.
    pub pool: String,
    /// Switch to this uid/gid (needs root).
    pub uid: Option<u32>,
    /// See `uid`.
    pub gid: Option<u32>,
    /// Told the PID of every worker whose exit the reaper observed.
    pub on_exit: Option<mpsc::UnboundedSender<u32>>,
}

pub(crate) async fn spawn(spec: &SpawnSpec) -> Result<Worker, SpawnError> {
    let Some((prog, args)) = spec.command.split_first() else {
        return Err(SpawnError::Exec {
            command: String::new(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "the command is empty"),
        });
    };
    let mut cmd = tokio::process::Command::new(prog);
    cmd.args(args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(d) = &spec.cwd {
        cmd.current_dir(d);
    }
    if let Some(g) = spec.gid {
        cmd.gid(g);
    }
    if let Some(u) = spec.uid {
        cmd.uid(u);
    }
    let mut child = cmd.spawn().map_err(|source| SpawnError::Exec {
        command: spec.command.join(" "),
        source,
    })?;
    let pid = child.id().unwrap_or(0);
    let (exited_tx, _) = watch::channel(false);
    let (stderr_done, _) = watch::channel(false);
    let now = Instant::now();
    let info = Arc::new(WorkerInfo {
        pid,
        created: SystemTime::now(),
        started: now,
        state: AtomicU8::new(State::Starting as u8),
        jobs: AtomicU64::new(0),
        last_used_ms: AtomicU64::new(0),
        job_started_ms: AtomicU64::new(0),
        kill_reason: AtomicU8::new(0),
        exit: OnceLock::new(),
        exited: exited_tx,
        stderr_tail: Mutex::new(Tail::default()),
        stderr_done,
        slowlog_ready: AtomicBool::new(false),
        slowlog_pending: Mutex::new(None),
    });
    let span_pool = spec.pool.clone();
    if let Some(err) = child.stderr.take() {
        forward_lines(err, info.clone(), span_pool.clone(), Stream::Stderr);
    }
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    // The reaper owns the child: it records the exit once, or kills the group when
    // the Worker is dropped.
    let (kill_tx, kill_rx) = oneshot::channel::<()>();
    {
        let info = info.clone();
        let on_exit = spec.on_exit.clone();
        tokio::spawn(async move {
            let status = tokio::select! {
                s = child.wait() => s,
                _ = kill_rx => {
                    if info.exit.get().is_none() {
                        kill_group(info.pid);
                    }
                    child.wait().await
                }
            };
            let exit = match status {
                Ok(s) => {
                    use std::os::unix::process::ExitStatusExt;
                    ExitInfo {
                        code: s.code(),
                        signal: s.signal(),
                    }
                }
                Err(_) => ExitInfo {
                    code: None,
                    signal: None,
                },
            };
            // Stop any stray children of the worker left in its group first, so
            // that once the exit is recorded nothing of the worker can still read
            // its job pipe (see `Worker::job_unread`).
            kill_group(info.pid);
            let _ = info.exit.set(exit);
            info.exited.send_replace(true);
            if let Some(tx) = on_exit {
                let _ = tx.send(info.pid);
            }
        });
    }
    let deadline = Instant::now() + spec.boot_timeout;
    let boot = async {
        match &spec.relay {
            RelayMode::Pipes => {
                let (Some(stdin), Some(stdout)) = (stdin, stdout) else {
                    return Err(BootFail::Relay(RelayError::Closed { partial: 0 }));
                };
                // A second handle on the job pipe tells, after a crash, whether the
                // worker read the job at all (see `Worker::job_unread`).
                let probe = stdin.as_fd().try_clone_to_owned().ok();
                let mut r = FrameReader::new(Box::pin(stdout), spec.limits);
                let mut w = FrameWriter::new(Box::pin(stdin));
                courser_relay::handshake(&mut r, &mut w)
                    .await
                    .map_err(BootFail::Relay)?;
                Ok((r, w, probe))
            }
            RelayMode::Socket(l) => {
                // Stdout is not the relay here: forward anything printed to the log.
                if let Some(out) = stdout {
                    forward_lines(out, info.clone(), span_pool.clone(), Stream::Stdout);
                }
                drop(stdin);
                let mut exit_rx = info.exited.subscribe();
                tokio::select! {
                    c = l.claim(pid, deadline) => c.map(|(r, w)| (r, w, None)).ok_or(BootFail::Timeout),
                    _ = exit_rx.wait_for(|&e| e) => Err(BootFail::Relay(RelayError::Closed { partial: 0 })),
                }
            }
        }
    };
    let result = match tokio::time::timeout_at(deadline.into(), boot).await {
        Ok(r) => r,
        Err(_) => Err(BootFail::Timeout),
    };
    match result {
        Ok((reader, writer, probe)) => {
            info.set_state(State::Ready);
            tracing::debug!(pid, pool = %spec.pool, "worker ready");
            Ok(Worker {
                info,
                reader,
                writer,
                probe,
                job_pending: 0,
                _kill: kill_tx,
            })
        }
        Err(fail) => {
            let socket = matches!(spec.relay, RelayMode::Socket(_));
            drop(kill_tx);
            let exit = info.wait_exit(Duration::from_secs(2)).await;
            info.wait_stderr_closed(Duration::from_millis(500)).await;
            let stderr = info.stderr_tail();
            Err(match fail {
                BootFail::Timeout => SpawnError::Timeout {
                    pid,
                    timeout: spec.boot_timeout,
                    socket,
                    stderr,
                },
                BootFail::Relay(RelayError::Garbage { preview, .. }) => SpawnError::Protocol {
                    pid,
                    detail: if preview.starts_with("Could not op") {
                        format!("PHP could not open the worker script (\"{preview}\"); check server.command and the working directory")
                    } else {
                        format!("it wrote bytes that are not a protocol frame to stdout (\"{preview}\"); PHP code must not write to stdout in worker mode — write logs to STDERR")
                    },
                    stderr,
                },
                BootFail::Relay(RelayError::Handshake(detail)) => SpawnError::Protocol {
                    pid,
                    detail,
                    stderr,
                },
                BootFail::Relay(_) => SpawnError::Boot { pid, exit, stderr },
            })
        }
    }
}

enum BootFail {
    Timeout,
    Relay(RelayError),
}

#[derive(Clone, Copy)]
enum Stream {
    Stderr,
    Stdout,
}

/// Longest line forwarded as one log record; longer output is split.
const MAX_LINE: usize = 64 * 1024;

/// Most lines and bytes of one PHP stack kept for its log record.
const MAX_STACK_LINES: usize = 256;
const MAX_STACK_BYTES: usize = 64 * 1024;

/// The lines by which the PHP SDK's slowlog handler talks to us on stderr.
struct Markers {
    ready: Vec<u8>,
    begin: Vec<u8>,
    end: Vec<u8>,
    idle: Vec<u8>,
}

impl Markers {
    fn new(pid: u32) -> Markers {
        let m = |what: &str| format!("courser-slowlog-{what} {pid}").into_bytes();
        Markers {
            ready: m("ready"),
            begin: m("begin"),
            end: m("end"),
            idle: m("idle"),
        }
    }
}

/// A PHP stack being collected between its begin and end markers.
#[derive(Default)]
struct Stack {
    text: String,
    lines: usize,
    dropped: usize,
}

impl Stack {
    fn push(&mut self, line: &[u8]) {
        if self.lines >= MAX_STACK_LINES || self.text.len() + line.len() > MAX_STACK_BYTES {
            self.dropped += 1;
            return;
        }
        self.text.push('\n');
        self.text.push_str(&String::from_utf8_lossy(line));
        self.lines += 1;
    }
}

/// Logs a stack the worker wrote, with the slow job it was asked for.
fn log_stack(info: &WorkerInfo, pool: &str, mut stack: Stack, complete: bool) {
    if stack.dropped > 0 {
        stack.text += &format!("\n... {} more lines not logged", stack.dropped);
    }
    if !complete {
        stack
            .text
            .push_str("\n... (the stack ended without its end marker)");
    }
    let head = match info.take_slow_job() {
        Some(job) => job.describe(info.pid),
        None => format!(
            "worker {} wrote a PHP stack not asked for by the server",
            info.pid
        ),
    };
    tracing::warn!(target: "courser::worker", pid = info.pid, pool = %pool, "{head}; PHP stack:{}", stack.text);
}

/// Takes a stderr line apart from the slowlog protocol: marker lines and the
/// lines of a stack are consumed (the stack is logged as one record at its end
/// marker). Returns what is left to forward as an ordinary line: all of it, the
/// output the worker left without a newline before a marker, or nothing.
fn slowlog_line<'a>(
    line: &'a [u8],
    m: &Markers,
    stack: &mut Option<Stack>,
    info: &WorkerInfo,
    pool: &str,
) -> Option<&'a [u8]> {
    if let Some(s) = stack.as_mut() {
        if line == m.end {
            if let Some(s) = stack.take() {
                log_stack(info, pool, s, true);
            }
        } else if let Some(prefix) = line.strip_suffix(&m.begin[..]) {
            // A new stack before the end of the last one: log what we have.
            if !prefix.is_empty() {
                s.push(prefix);
            }
            if let Some(s) = stack.replace(Stack::default()) {
                log_stack(info, pool, s, false);
            }
        } else {
            s.push(line);
        }
        return None;
    }
    let rest = if let Some(prefix) = line.strip_suffix(&m.begin[..]) {
        *stack = Some(Stack::default());
        prefix
    } else if let Some(prefix) = line.strip_suffix(&m.ready[..]) {
        info.slowlog_ready.store(true, Ordering::Release);
        tracing::debug!(target: "courser::worker", pid = info.pid, pool = %pool, "the worker answers SIGPROF with its PHP stack");
        prefix
    } else if let Some(prefix) = line.strip_suffix(&m.idle[..]) {
        if let Some(job) = info.take_slow_job() {
            tracing::warn!(target: "courser::worker", pid = info.pid, pool = %pool, "{}; no PHP stack: the job ended before the worker handled the signal", job.describe(info.pid));
        }
        prefix
    } else {
        return Some(line);
    };
    (!rest.is_empty()).then_some(rest)
}

fn forward_lines(
    pipe: impl AsyncRead + Send + Unpin + 'static,
    info: Arc<WorkerInfo>,
    pool: String,
    which: Stream,
) {
    tokio::spawn(async move {
        let mut r = BufReader::with_capacity(MAX_LINE, pipe);
        let mut line = Vec::with_capacity(256);
        let markers = Markers::new(info.pid);
        // A stack between its markers: its lines become one record, not one each.
        let mut stack: Option<Stack> = None;
        loop {
            line.clear();
            // A read error ends forwarding like end of stream does.
            let n = (&mut r)
                .take(MAX_LINE as u64)
                .read_until(b'\n', &mut line)
                .await
                .unwrap_or_default();
            if n == 0 {
                break;
            }
            while line.last().is_some_and(|&b| b == b'\n' || b == b'\r') {
                line.pop();
            }
            let out = match which {
                Stream::Stderr => slowlog_line(&line, &markers, &mut stack, &info, &pool),
                Stream::Stdout => Some(&line[..]),
            };
            let Some(out) = out else { continue };
            if let Ok(mut t) = info.stderr_tail.lock() {
                t.push(out);
            }
            let text = String::from_utf8_lossy(out);
            match which {
                Stream::Stderr => {
                    tracing::info!(target: "courser::worker", pid = info.pid, pool = %pool, "{text}")
                }
                Stream::Stdout => {
                    tracing::warn!(target: "courser::worker", pid = info.pid, pool = %pool, "worker wrote to stdout (socket relay): {text}")
                }
            }
        }
        if let Some(s) = stack.take() {
            log_stack(&info, &pool, s, false);
        }
        if matches!(which, Stream::Stderr) {
            info.stderr_done.send_replace(true);
        }
    });
}

use tokio::io::AsyncReadExt as _;

/// SIGKILL to the whole process group of `pid` (the worker and anything it forked).
pub(crate) fn kill_group(pid: u32) {
    if pid == 0 {
        return;
    }
    let Ok(p) = i32::try_from(pid) else { return };
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(p),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// Bytes written to a pipe and not yet read from it; `None` if the kernel
/// cannot tell.
pub(crate) fn unread_bytes(fd: &std::os::fd::OwnedFd) -> Option<u64> {
    rustix::io::ioctl_fionread(fd).ok()
}

/// SIGPROF to the worker itself (not its group: a child without a handler would
/// die of it), asking the PHP SDK's handler for the stack.
pub(crate) fn signal_stack_trace(pid: u32) -> Result<(), nix::Error> {
    let p = i32::try_from(pid)
        .ok()
        .filter(|&p| p > 0)
        .ok_or(nix::Error::ESRCH)?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(p),
        nix::sys::signal::Signal::SIGPROF,
    )
}

pub(crate) fn rss_bytes(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = s.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

fn page_size() -> u64 {
    static PS: OnceLock<u64> = OnceLock::new();
    *PS.get_or_init(|| {
        nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .and_then(|v| u64::try_from(v).ok())
            .unwrap_or(4096)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SlowJob;

    fn info(pid: u32) -> WorkerInfo {
        WorkerInfo {
            pid,
            created: SystemTime::now(),
            started: Instant::now(),
            state: AtomicU8::new(State::Working as u8),
            jobs: AtomicU64::new(1),
            last_used_ms: AtomicU64::new(0),
            job_started_ms: AtomicU64::new(1),
            kill_reason: AtomicU8::new(0),
            exit: OnceLock::new(),
            exited: watch::channel(false).0,
            stderr_tail: Mutex::new(Tail::default()),
            stderr_done: watch::channel(false).0,
            slowlog_ready: AtomicBool::new(false),
            slowlog_pending: Mutex::new(None),
        }
    }

    fn pending(info: &WorkerInfo) {
        if let Ok(mut p) = info.slowlog_pending.lock() {
            *p = Some(SlowJob {
                ran_for: Duration::from_millis(1500),
                label: Some("GET /x".into()),
            });
        }
    }

    /// Feeds lines through the slowlog filter; returns what is forwarded as lines.
    fn feed(info: &WorkerInfo, stack: &mut Option<Stack>, lines: &[&str]) -> Vec<String> {
        let m = Markers::new(info.pid);
        lines
            .iter()
            .filter_map(|l| {
                slowlog_line(l.as_bytes(), &m, stack, info, "p")
                    .map(|b| String::from_utf8_lossy(b).into_owned())
            })
            .collect()
    }

    #[test]
    fn ready_marks_the_worker_and_is_not_forwarded() {
        let w = info(42);
        let mut stack = None;
        assert!(!w.slowlog_ready());
        let out = feed(
            &w,
            &mut stack,
            &[
                "courser-slowlog-ready 7",
                "boot",
                "courser-slowlog-ready 42",
            ],
        );
        // Another PID's marker is an ordinary line (a child process, a wrapper).
        assert_eq!(out, ["courser-slowlog-ready 7", "boot"]);
        assert!(w.slowlog_ready());
    }

    #[test]
    fn a_stack_between_markers_is_consumed_and_answers_the_request() {
        let w = info(42);
        pending(&w);
        let mut stack = None;
        let out = feed(
            &w,
            &mut stack,
            &[
                "no newline yetcourser-slowlog-begin 42",
                "[0x0000] {signal}() /a.php:3",
                "[0x0001] f() /a.php:9",
            ],
        );
        assert_eq!(out, ["no newline yet"]);
        let s = stack.as_ref().map(|s| s.text.clone()).unwrap_or_default();
        assert_eq!(s, "\n[0x0000] {signal}() /a.php:3\n[0x0001] f() /a.php:9");
        assert!(feed(&w, &mut stack, &["courser-slowlog-end 42"]).is_empty());
        assert!(stack.is_none());
        assert!(w.take_slow_job().is_none(), "the request was answered");
        assert_eq!(feed(&w, &mut stack, &["after"]), ["after"]);
    }

    #[test]
    fn idle_answers_the_request_without_a_stack() {
        let w = info(42);
        pending(&w);
        let mut stack = None;
        assert!(feed(&w, &mut stack, &["courser-slowlog-idle 42"]).is_empty());
        assert!(stack.is_none());
        assert!(w.take_slow_job().is_none());
    }

    #[test]
    fn a_stack_is_bounded() {
        let mut s = Stack::default();
        for _ in 0..MAX_STACK_LINES + 3 {
            s.push(b"[0x0000] f() /a.php:1");
        }
        assert_eq!((s.lines, s.dropped), (MAX_STACK_LINES, 3));
        let mut s = Stack::default();
        s.push(&vec![b'x'; MAX_STACK_BYTES + 1]);
        assert_eq!((s.lines, s.dropped), (0, 1));
    }

    #[test]
    fn the_head_names_the_job() {
        let job = SlowJob {
            ran_for: Duration::from_millis(201),
            label: None,
        };
        assert_eq!(
            job.describe(9),
            "slow request: worker 9 has run a job for 201ms"
        );
        let job = SlowJob {
            ran_for: Duration::from_millis(1500),
            label: Some("GET /x".into()),
        };
        assert_eq!(
            job.describe(9),
            "slow request: worker 9 has run a job for 1.500s (GET /x)"
        );
    }
}
