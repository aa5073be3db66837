//! The pool section (`http.pool`, later `jobs.pool`, ...): spec section 5.2.

use std::time::Duration;

use serde_yaml::Value;

use crate::error::{ConfigError, Warning};
use crate::section::{invalid, Section};

/// The most workers a pool may have.
pub const MAX_WORKERS: usize = 500;
/// The fastest the dynamic allocator may spawn workers per tick.
pub const MAX_SPAWN_RATE: usize = 100;
/// The shortest idle timeout of the dynamic allocator.
pub const MIN_IDLE_TIMEOUT: Duration = Duration::from_secs(1);

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// A worker pool's settings, with RoadRunner's defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// The pool's own worker command; `None` means `server.command`.
    pub command: Option<Vec<String>>,
    /// Debug mode: a new worker for every job.
    pub debug: bool,
    /// Number of workers; `0` in the file means the number of CPUs. At most 500.
    pub num_workers: usize,
    /// Jobs a worker runs before it is replaced; 0 = unlimited.
    pub max_jobs: u64,
    /// Requests that may wait for a worker; 0 = unlimited.
    pub max_queue_size: usize,
    /// Limit on getting a worker, spawn and PID handshake included.
    pub allocate_timeout: Duration,
    /// Limit on resetting (replacing) the pool's workers.
    pub reset_timeout: Duration,
    /// Limit on waiting for the next chunk of a streamed response.
    pub stream_timeout: Duration,
    /// Limit on a worker's graceful stop before it is killed.
    pub destroy_timeout: Duration,
    /// Per-worker limits checked every `watch_tick`.
    pub supervisor: SupervisorConfig,
    /// Extra workers spawned under load, if configured.
    pub dynamic_allocator: Option<DynamicAllocatorConfig>,
    /// Extra environment for this pool's workers (keys upper-cased).
    pub env: Vec<(String, String)>,
    /// When a job runs longer than this, ask the worker for its PHP stack trace
    /// and log it with the request (`slowlog_timeout`, a Courser key).
    pub slowlog_timeout: Option<Duration>,
}

/// The pool supervisor's limits. Each limit is `None` when off (0 in the file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupervisorConfig {
    /// How often the limits are checked (default 5s).
    pub watch_tick: Duration,
    /// Maximum lifetime of a worker.
    pub ttl: Option<Duration>,
    /// Maximum time a worker may stay idle.
    pub idle_ttl: Option<Duration>,
    /// Maximum time one job may run.
    pub exec_ttl: Option<Duration>,
    /// Maximum memory of a worker, in megabytes.
    pub max_worker_memory: Option<u64>,
}

/// The dynamic allocator: spawns extra workers when no worker is free.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamicAllocatorConfig {
    /// Most extra workers (default 10).
    pub max_workers: usize,
    /// Extra workers spawned at a time (default 5, at most 100).
    pub spawn_rate: usize,
    /// Idle time after which extra workers are stopped (default 1m, at least 1s).
    pub idle_timeout: Duration,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        SupervisorConfig {
            watch_tick: Duration::from_secs(5),
            ttl: None,
            idle_ttl: None,
            exec_ttl: None,
            max_worker_memory: None,
        }
    }
}

impl Default for DynamicAllocatorConfig {
    fn default() -> Self {
        DynamicAllocatorConfig {
            max_workers: 10,
            spawn_rate: 5,
            idle_timeout: Duration::from_secs(60),
        }
    }
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            command: None,
            debug: false,
            num_workers: cpu_count(),
            max_jobs: 0,
            max_queue_size: 0,
            allocate_timeout: DEFAULT_TIMEOUT,
            reset_timeout: DEFAULT_TIMEOUT,
            stream_timeout: DEFAULT_TIMEOUT,
            destroy_timeout: DEFAULT_TIMEOUT,
            supervisor: SupervisorConfig::default(),
            dynamic_allocator: None,
            env: Vec::new(),
            slowlog_timeout: None,
        }
    }
}

/// The number of workers that `num_workers: 0` stands for: the CPUs
/// available to this process, at most [`MAX_WORKERS`].
pub fn cpu_count() -> usize {
    std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(1)
        .min(MAX_WORKERS)
}

fn to_usize(key: &str, n: u64, expected: &str) -> Result<usize, ConfigError> {
    usize::try_from(n).map_err(|_| invalid(key, &Value::from(n), expected))
}

/// Reads a pool section. `value` is the section (null for an absent one, which
/// gives the defaults); `key_prefix` is its path, e.g. `http.pool`, used in
/// messages. Returns the pool and the warnings about its values (bare-number
/// durations, clamped limits). Unknown keys are not reported here: the
/// schema check does that for the whole file.
pub fn parse_pool(
    value: &Value,
    key_prefix: &str,
) -> Result<(PoolConfig, Vec<Warning>), ConfigError> {
    let mut warnings = Vec::new();
    let pool = Section::new(key_prefix, Some(value))?;
    let mut out = PoolConfig::default();

    if let Some(command) = pool.command("command")? {
        if !command.is_empty() {
            out.command = Some(command);
        }
    }
    out.debug = pool.boolean("debug")?.unwrap_or(false);

    let workers_expected = "a non-negative integer (0 = number of CPUs)";
    if let Some(n) = pool.uint("num_workers", workers_expected)? {
        let key = pool.key("num_workers");
        let n = to_usize(&key, n, workers_expected)?;
        if n > MAX_WORKERS {
            return Err(invalid(
                &key,
                &Value::from(n as u64),
                format!("at most {MAX_WORKERS} workers (0 = number of CPUs)"),
            ));
        }
        out.num_workers = if n == 0 { cpu_count() } else { n };
    }
    if let Some(n) = pool.uint("max_jobs", "a non-negative integer (0 = unlimited)")? {
        out.max_jobs = n;
    }
    let queue_expected = "a non-negative integer (0 = unlimited)";
    if let Some(n) = pool.uint("max_queue_size", queue_expected)? {
        out.max_queue_size = to_usize(&pool.key("max_queue_size"), n, queue_expected)?;
    }

    for (name, slot) in [
        ("allocate_timeout", &mut out.allocate_timeout),
        ("reset_timeout", &mut out.reset_timeout),
        ("stream_timeout", &mut out.stream_timeout),
        ("destroy_timeout", &mut out.destroy_timeout),
    ] {
        if let Some(d) = pool.duration(name, &mut warnings)? {
            // As in RoadRunner, 0 means the default.
            if !d.is_zero() {
                *slot = d;
            }
        }
    }

    out.env = pool.env("env")?;
    out.slowlog_timeout = pool
        .duration("slowlog_timeout", &mut warnings)?
        .filter(|d| !d.is_zero());

    let supervisor_path = pool.key("supervisor");
    let supervisor = Section::new(&supervisor_path, pool.raw("supervisor"))?;
    if let Some(d) = supervisor.duration("watch_tick", &mut warnings)? {
        if !d.is_zero() {
            out.supervisor.watch_tick = d;
        }
    }
    let off_if_zero = |d: Option<Duration>| d.filter(|d| !d.is_zero());
    out.supervisor.ttl = off_if_zero(supervisor.duration("ttl", &mut warnings)?);
    out.supervisor.idle_ttl = off_if_zero(supervisor.duration("idle_ttl", &mut warnings)?);
    out.supervisor.exec_ttl = off_if_zero(supervisor.duration("exec_ttl", &mut warnings)?);
    out.supervisor.max_worker_memory = supervisor
        .uint(
            "max_worker_memory",
            "a non-negative integer of megabytes (0 = no limit)",
        )?
        .filter(|mb| *mb > 0);

    let dynamic_path = pool.key("dynamic_allocator");
    if pool.get("dynamic_allocator").is_some() {
        let dynamic = Section::new(&dynamic_path, pool.raw("dynamic_allocator"))?;
        let mut alloc = DynamicAllocatorConfig::default();
        let max_expected = "a non-negative integer (0 = the default, 10)";
        if let Some(n) = dynamic.uint("max_workers", max_expected)? {
            if n > 0 {
                alloc.max_workers = to_usize(&dynamic.key("max_workers"), n, max_expected)?;
            }
        }
        let rate_expected = "a non-negative integer (0 = the default, 5)";
        if let Some(n) = dynamic.uint("spawn_rate", rate_expected)? {
            let key = dynamic.key("spawn_rate");
            let n = to_usize(&key, n, rate_expected)?;
            if n > MAX_SPAWN_RATE {
                warnings.push(Warning::new(
                    &key,
                    format!("{key}: {n} is above the limit of {MAX_SPAWN_RATE}; {MAX_SPAWN_RATE} is used"),
                ));
                alloc.spawn_rate = MAX_SPAWN_RATE;
            } else if n > 0 {
                alloc.spawn_rate = n;
            }
        }
        if let Some(d) = dynamic.duration("idle_timeout", &mut warnings)? {
            let key = dynamic.key("idle_timeout");
            if d.is_zero() {
                // 0 means the default.
            } else if d < MIN_IDLE_TIMEOUT {
                warnings.push(Warning::new(
                    &key,
                    format!("{key}: {d:?} is below the minimum of 1s; 1s is used"),
                ));
                alloc.idle_timeout = MIN_IDLE_TIMEOUT;
            } else {
                alloc.idle_timeout = d;
            }
        }
        out.dynamic_allocator = Some(alloc);
    }

    Ok((out, warnings))
}
