//! Spawning a worker process, its reaper and its stderr forwarder.

use crate::{ExitInfo, SpawnError, State, Tail, Worker, WorkerInfo};
use courser_frame::Limits;
use courser_relay::{FrameReader, FrameWriter, RelayError, SocketListener};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, AtomicU8};
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
            let _ = info.exit.set(exit);
            info.exited.send_replace(true);
            // Stop any stray children of the worker left in its group.
            kill_group(info.pid);
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
                let mut r = FrameReader::new(Box::pin(stdout), spec.limits);
                let mut w = FrameWriter::new(Box::pin(stdin));
                courser_relay::handshake(&mut r, &mut w)
                    .await
                    .map_err(BootFail::Relay)?;
                Ok((r, w))
            }
            RelayMode::Socket(l) => {
                // Stdout is not the relay here: forward anything printed to the log.
                if let Some(out) = stdout {
                    forward_lines(out, info.clone(), span_pool.clone(), Stream::Stdout);
                }
                drop(stdin);
                let mut exit_rx = info.exited.subscribe();
                tokio::select! {
                    c = l.claim(pid, deadline) => c.ok_or(BootFail::Timeout),
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
        Ok((reader, writer)) => {
            info.set_state(State::Ready);
            tracing::debug!(pid, pool = %spec.pool, "worker ready");
            Ok(Worker {
                info,
                reader,
                writer,
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

fn forward_lines(
    pipe: impl AsyncRead + Send + Unpin + 'static,
    info: Arc<WorkerInfo>,
    pool: String,
    which: Stream,
) {
    tokio::spawn(async move {
        let mut r = BufReader::with_capacity(MAX_LINE, pipe);
        let mut line = Vec::with_capacity(256);
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
            if let Ok(mut t) = info.stderr_tail.lock() {
                t.push(&line);
            }
            let text = String::from_utf8_lossy(&line);
            match which {
                Stream::Stderr => {
                    tracing::info!(target: "courser::worker", pid = info.pid, pool = %pool, "{text}")
                }
                Stream::Stdout => {
                    tracing::warn!(target: "courser::worker", pid = info.pid, pool = %pool, "worker wrote to stdout (socket relay): {text}")
                }
            }
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
