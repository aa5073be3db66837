//! Typed, classified worker errors. Messages say what happened, to which worker,
//! and what to do.

use std::fmt;
use std::time::Duration;

/// How a worker process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitInfo {
    /// Exit code, when it exited normally.
    pub code: Option<i32>,
    /// Signal number, when a signal ended it.
    pub signal: Option<i32>,
}

impl fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code, self.signal) {
            (Some(c), _) => write!(f, "exit code {c}"),
            (None, Some(s)) => {
                let name = nix::sys::signal::Signal::try_from(s)
                    .map(|s| s.as_str())
                    .unwrap_or("unknown");
                write!(f, "signal {s} ({name})")
            }
            (None, None) => write!(f, "unknown status"),
        }
    }
}

fn with_stderr(stderr: &str) -> String {
    if stderr.trim().is_empty() {
        String::new()
    } else {
        format!("; its stderr said:\n{stderr}")
    }
}

/// Why a worker could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The command could not be executed at all.
    #[error("cannot start worker command `{command}`: {source}; check server.command (or the pool's command) and the working directory")]
    Exec {
        /// The command line.
        command: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The process exited (or closed its relay) before answering the PID handshake.
    #[error("worker {pid} exited during boot ({}) before answering the PID handshake{}", .exit.map(|e| e.to_string()).unwrap_or_else(|| "still running, relay closed".into()), with_stderr(.stderr))]
    Boot {
        /// The process id.
        pid: u32,
        /// How it ended, if it did.
        exit: Option<super::ExitInfo>,
        /// What it wrote to stderr.
        stderr: String,
    },
    /// The process did not answer the PID handshake in time.
    #[error("worker {pid} did not answer the PID handshake within {timeout:?} (allocate_timeout){}{}", if *.socket { "; with a socket relay the command must exec php directly, a wrapper shell reports a different PID" } else { "" }, with_stderr(.stderr))]
    Timeout {
        /// The process id.
        pid: u32,
        /// The limit.
        timeout: Duration,
        /// Whether a socket relay was used.
        socket: bool,
        /// What it wrote to stderr.
        stderr: String,
    },
    /// The handshake answer was wrong, or bytes that are not a frame arrived.
    #[error("worker {pid} broke the protocol during the PID handshake: {detail}{}", with_stderr(.stderr))]
    Protocol {
        /// The process id.
        pid: u32,
        /// What was wrong.
        detail: String,
        /// What it wrote to stderr.
        stderr: String,
    },
}

/// Why a job failed. Every variant knows whether the job may run again elsewhere.
#[derive(Debug, Clone, thiserror::Error)]
pub enum JobError {
    /// The worker never received the job: writing it failed, or (pipes relay)
    /// the worker exited with the whole job still unread in its pipe.
    #[error("worker {pid} could not receive the job ({detail})")]
    NotDelivered {
        /// The process id.
        pid: u32,
        /// The I/O failure.
        detail: String,
    },
    /// The worker answered with an ERROR frame; the worker itself is fine.
    #[error("worker {pid} reported an error: {message}")]
    Worker {
        /// The process id.
        pid: u32,
        /// The worker's message.
        message: String,
    },
    /// The worker died while running the job.
    #[error("worker {pid} crashed while running the job ({}){}", .exit.map(|e| e.to_string()).unwrap_or_else(|| "relay closed".into()), with_stderr(.stderr))]
    Crashed {
        /// The process id.
        pid: u32,
        /// How it ended.
        exit: Option<ExitInfo>,
        /// The last lines of its stderr.
        stderr: String,
    },
    /// The job ran past `supervisor.exec_ttl` and the worker was killed.
    #[error("worker {pid} was killed: the job ran longer than supervisor.exec_ttl")]
    ExecTtl {
        /// The process id.
        pid: u32,
    },
    /// A stream could not be cancelled in time and the worker was killed.
    #[error(
        "worker {pid} did not end its stream within stream_timeout ({timeout:?}) and was killed"
    )]
    StreamTimeout {
        /// The process id.
        pid: u32,
        /// The limit.
        timeout: Duration,
    },
    /// The worker wrote bytes that are not a frame to its relay (usually PHP output on stdout).
    #[error("worker {pid} wrote {len} bytes that are not a protocol frame (\"{preview}\") to its relay; PHP code must not write to stdout in worker mode — write logs to STDERR (the Courser SDK redirects echo for you)")]
    Garbage {
        /// The process id.
        pid: u32,
        /// How many bytes were buffered.
        len: usize,
        /// The first bytes, escaped.
        preview: String,
    },
    /// The worker broke the protocol in another way.
    #[error("worker {pid} broke the protocol: {detail}")]
    Protocol {
        /// The process id.
        pid: u32,
        /// What was wrong.
        detail: String,
    },
    /// The worker asked to stop instead of answering (spec 2.7).
    #[error("worker {pid} asked to stop instead of running the job")]
    StopRequested {
        /// The process id.
        pid: u32,
    },
}

impl JobError {
    /// True when the worker provably never started the job (it never received
    /// it, or asked to stop instead), so it may run elsewhere.
    pub fn retry_safe(&self) -> bool {
        matches!(
            self,
            JobError::NotDelivered { .. } | JobError::StopRequested { .. }
        )
    }
    /// True when the worker is still usable after this error.
    pub fn worker_reusable(&self) -> bool {
        matches!(self, JobError::Worker { .. })
    }
    /// The worker's process id.
    pub fn pid(&self) -> u32 {
        match self {
            JobError::NotDelivered { pid, .. }
            | JobError::Worker { pid, .. }
            | JobError::Crashed { pid, .. }
            | JobError::ExecTtl { pid }
            | JobError::StreamTimeout { pid, .. }
            | JobError::Garbage { pid, .. }
            | JobError::Protocol { pid, .. }
            | JobError::StopRequested { pid } => *pid,
        }
    }
    /// A short machine-readable kind, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            JobError::NotDelivered { .. } => "not_delivered",
            JobError::Worker { .. } => "worker_error",
            JobError::Crashed { .. } => "crash",
            JobError::ExecTtl { .. } => "exec_ttl",
            JobError::StreamTimeout { .. } => "stream_timeout",
            JobError::Garbage { .. } => "garbage",
            JobError::Protocol { .. } => "protocol",
            JobError::StopRequested { .. } => "stop_requested",
        }
    }
}
