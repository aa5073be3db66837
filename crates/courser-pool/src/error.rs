use courser_worker::{JobError, SpawnError};
use std::time::Duration;

/// Who caused a failed job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The PHP worker (crash, error frame, protocol violation).
    Worker,
    /// The server (no free worker, queue full, shutting down).
    Server,
}

/// Why the pool could not run a job.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// No worker became free within `allocate_timeout`.
    #[error("no free worker in pool {pool} within {waited:?} (allocate_timeout); all {workers} workers are busy")]
    NoFreeWorker {
        /// The pool's name.
        pool: String,
        /// How long the caller waited.
        waited: Duration,
        /// How many workers the pool has.
        workers: usize,
    },
    /// More callers are waiting than `max_queue_size` allows.
    #[error("pool {pool} has {limit} jobs waiting already (max_queue_size); try again later")]
    QueueFull {
        /// The pool's name.
        pool: String,
        /// The configured limit.
        limit: usize,
    },
    /// The pool is stopping and takes no new jobs.
    #[error("pool {pool} is stopping and takes no new jobs")]
    Stopped {
        /// The pool's name.
        pool: String,
    },
    /// The payload has neither context nor body (PHP treats that as "stop").
    #[error("a job must have a context or a body; an empty payload tells a PHP worker to stop")]
    EmptyPayload,
    /// A worker could not be started for this job (debug mode).
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    /// The worker failed the job.
    #[error(transparent)]
    Job(#[from] JobError),
}

impl PoolError {
    /// Who caused it.
    pub fn source_kind(&self) -> Source {
        match self {
            PoolError::Job(_) | PoolError::Spawn(_) => Source::Worker,
            _ => Source::Server,
        }
    }
    /// True when the job never reached a worker, so the caller may retry it.
    pub fn retry_safe(&self) -> bool {
        match self {
            PoolError::Job(j) => j.retry_safe(),
            PoolError::Spawn(_) | PoolError::EmptyPayload => false,
            _ => true,
        }
    }
    /// True when the caller should be told to come back later (HTTP 503).
    pub fn is_overload(&self) -> bool {
        matches!(
            self,
            PoolError::NoFreeWorker { .. }
                | PoolError::QueueFull { .. }
                | PoolError::Stopped { .. }
        )
    }
}
