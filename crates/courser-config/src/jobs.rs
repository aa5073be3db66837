//! The `jobs` section (RoadRunner's jobs plugin) and the broker connection
//! sections it reads (`amqp`, `nats`, `redis`, `beanstalk`).
//!
//! Driver-specific keys (`jobs.pipelines.<name>.config.*`) stay untyped here:
//! each driver reads its own through [`DriverOptions`], whose errors name the
//! full key path, so this crate does not need to know every broker.

use std::time::Duration;

use serde_yaml::{Mapping, Value};

use crate::error::{ConfigError, Warning};
use crate::pool::{parse_pool, PoolConfig};
use crate::section::{invalid, Section};
use crate::tree::{key_text, scalar_text, untag};

/// Drivers Courser implements.
pub const JOB_DRIVERS: &[&str] = &["memory", "boltdb", "amqp", "nats", "beanstalk", "redis"];

/// The `config` keys each driver reads (RoadRunner's names, plus Courser's
/// own where noted in the driver docs). Others get an "unknown key" warning.
pub const DRIVER_KEYS: &[(&str, &[&str])] = &[
    ("memory", &["priority", "prefetch"]),
    ("boltdb", &["file", "priority", "prefetch", "permissions"]),
    (
        "amqp",
        &[
            "addr",
            "queue",
            "exchange",
            "exchange_type",
            "routing_key",
            "durable",
            "exclusive",
            "prefetch",
            "priority",
            "delete_queue_on_stop",
            "multiple_ack",
            "requeue_on_fail",
            "consumer_id",
            "redial_timeout",
            "exchange_durable",
            "exchange_auto_delete",
            "queue_auto_delete",
            "queue_headers",
        ],
    ),
    (
        "nats",
        &[
            "addr",
            "subject",
            "stream",
            "prefetch",
            "priority",
            "deliver_new",
            "rate_limit",
            "delete_stream_on_stop",
            "delete_after_ack",
            "ack_wait",
        ],
    ),
    (
        "beanstalk",
        &[
            "addr",
            "tube",
            "tube_priority",
            "reserve_timeout",
            "priority",
            "ttr",
            "prefetch",
        ],
    ),
    (
        "redis",
        &[
            "addrs",
            "stream",
            "group",
            "prefetch",
            "priority",
            "consumer",
            "claim_idle",
        ],
    ),
];

/// Warns about `config` keys the driver does not read, naming the nearest one.
fn check_driver_keys(driver: &str, opts: &DriverOptions, warnings: &mut Vec<Warning>) {
    let Some((_, known)) = DRIVER_KEYS.iter().find(|(d, _)| *d == driver) else {
        return;
    };
    for k in opts.unknown_keys(known) {
        let key = opts.key(&k);
        let near = known
            .iter()
            .filter(|c| strsim::levenshtein(&k, c) <= 3 || strsim::jaro_winkler(&k, c) >= 0.9)
            .min_by_key(|c| strsim::levenshtein(&k, c));
        let message = match near {
            Some(n) => format!(
                "unknown key {key} for the {driver} driver; did you mean {}?",
                opts.key(n)
            ),
            None => format!(
                "unknown key {key} for the {driver} driver; it is ignored (the {driver} driver reads {})",
                known.join(", ")
            ),
        };
        warnings.push(Warning::new(&key, message));
    }
}

/// RoadRunner drivers Courser does not implement (no server installable here).
const UNSUPPORTED_DRIVERS: &[&str] = &["kafka", "sqs", "gcp_pubsub", "googlepubsub"];

/// The `jobs` section.
#[derive(Debug, Clone, PartialEq)]
pub struct JobsConfig {
    /// `jobs.pool`: the workers that consume (started with `RR_MODE=jobs`).
    pub pool: PoolConfig,
    /// `jobs.num_pollers`: jobs handed to workers at once (default: the pool's
    /// `num_workers` + 2, as RoadRunner, which also ignores a configured value;
    /// Courser honours it).
    pub num_pollers: usize,
    /// `jobs.pipeline_size`: jobs held ready in memory across pipelines
    /// before drivers wait (default 1,000,000 as RoadRunner).
    pub pipeline_size: usize,
    /// `jobs.timeout`: how long a push may take against a broker (seconds, default 60).
    pub timeout: Duration,
    /// `jobs.consume`: pipelines consumed from start.
    pub consume: Vec<String>,
    /// `jobs.pipelines.*`, in file order.
    pub pipelines: Vec<PipelineConfig>,
    /// The top-level broker connections.
    pub connections: Connections,
}

/// One pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineConfig {
    /// The user's name for it.
    pub name: String,
    /// One of [`JOB_DRIVERS`].
    pub driver: String,
    /// `config.priority` (or the pipeline-level `priority`), default 10.
    pub priority: i64,
    /// The driver's own keys.
    pub config: DriverOptions,
}

/// Top-level broker sections, as RoadRunner reads them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Connections {
    /// `amqp.addr` (default `amqp://guest:guest@127.0.0.1:5672/`).
    pub amqp_addr: Option<String>,
    /// `nats.addr` (default `nats://127.0.0.1:4222`).
    pub nats_addr: Option<String>,
    /// `redis.addrs` (default `["127.0.0.1:6379"]`).
    pub redis_addrs: Vec<String>,
    /// `beanstalk.addr` (default `tcp://127.0.0.1:11300`).
    pub beanstalk_addr: Option<String>,
}

/// A driver's `config` mapping, with typed reads whose errors name the full key.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DriverOptions {
    path: String,
    map: Mapping,
}

impl DriverOptions {
    /// Options at `path` (for messages) from `map`.
    pub fn new(path: impl Into<String>, map: Mapping) -> Self {
        DriverOptions {
            path: path.into(),
            map,
        }
    }

    /// The full key path of `name`.
    pub fn key(&self, name: &str) -> String {
        format!("{}.{name}", self.path)
    }

    fn section(&self) -> Section<'_> {
        Section::from_map(&self.path, &self.map)
    }

    /// Whether `name` is set (and not null).
    pub fn has(&self, name: &str) -> bool {
        self.map.get(name).map(untag).is_some_and(|v| !v.is_null())
    }

    /// A string; numbers and booleans are taken as written.
    pub fn string(&self, name: &str) -> Result<Option<String>, ConfigError> {
        self.section().non_empty_string(name)
    }

    /// A non-negative integer.
    pub fn uint(&self, name: &str) -> Result<Option<u64>, ConfigError> {
        self.section().uint(name, "a non-negative whole number")
    }

    /// A signed integer.
    pub fn int(&self, name: &str) -> Result<Option<i64>, ConfigError> {
        let Some(v) = self.map.get(name).map(untag).filter(|v| !v.is_null()) else {
            return Ok(None);
        };
        let parsed = match v {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse::<i64>().ok(),
            _ => None,
        };
        parsed
            .map(Some)
            .ok_or_else(|| invalid(&self.key(name), v, "a whole number"))
    }

    /// A boolean (`true`/`false`, also as strings).
    pub fn boolean(&self, name: &str) -> Result<Option<bool>, ConfigError> {
        self.section().boolean(name)
    }

    /// A list of strings (a single string is a one-item list).
    pub fn string_list(&self, name: &str) -> Result<Option<Vec<String>>, ConfigError> {
        self.section().string_list(name)
    }

    /// A duration (`"10s"`, or a bare number as nanoseconds, as RoadRunner).
    pub fn duration(&self, name: &str) -> Result<Option<Duration>, ConfigError> {
        let mut w = Vec::new();
        self.section().duration(name, &mut w)
    }

    /// A whole number of seconds, or a duration string (`"10s"`).
    pub fn seconds(&self, name: &str) -> Result<Option<Duration>, ConfigError> {
        seconds(&self.section(), name)
    }

    /// Keys set here that `known` does not list (for "unknown key" warnings).
    pub fn unknown_keys(&self, known: &[&str]) -> Vec<String> {
        self.map
            .keys()
            .map(key_text)
            .filter(|k| !known.contains(&k.as_str()))
            .collect()
    }
}

/// A whole number of seconds (RoadRunner's `jobs.timeout` is an int), or a duration string.
fn seconds(sec: &Section<'_>, name: &str) -> Result<Option<Duration>, ConfigError> {
    let Some(v) = sec.get(name) else {
        return Ok(None);
    };
    if let Some(n) = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    } {
        return Ok(Some(Duration::from_secs(n)));
    }
    match scalar_text(v).map(|s| crate::duration::parse_duration(&s)) {
        Some(Ok(d)) => Ok(Some(d)),
        _ => Err(invalid(
            &sec.key(name),
            v,
            "a whole number of seconds (e.g. 60) or a duration such as \"60s\"",
        )),
    }
}

/// Reads `jobs` when the file has it.
pub(crate) fn parse_jobs(
    root: &Section<'_>,
    warnings: &mut Vec<Warning>,
) -> Result<Option<JobsConfig>, ConfigError> {
    if root.get("jobs").is_none() {
        return Ok(None);
    }
    let jobs = Section::new("jobs", root.raw("jobs"))?;
    let pool = match jobs.get("pool") {
        Some(v) => {
            let (pool, w) = parse_pool(v, "jobs.pool")?;
            warnings.extend(w);
            pool
        }
        None => PoolConfig::default(),
    };
    let num_pollers = jobs
        .uint("num_pollers", "a positive whole number")?
        .filter(|n| *n > 0)
        .map(|n| n as usize)
        .unwrap_or(pool.num_workers.max(1) + 2);
    let pipeline_size = jobs
        .uint("pipeline_size", "a positive whole number")?
        .filter(|n| *n > 0)
        .map(|n| n as usize)
        .unwrap_or(1_000_000);
    let timeout = seconds(&jobs, "timeout")?
        .filter(|d| !d.is_zero())
        .unwrap_or(Duration::from_secs(60));

    let mut pipelines = Vec::new();
    if let Some(v) = jobs.get("pipelines") {
        let Value::Mapping(map) = v else {
            return Err(invalid(
                "jobs.pipelines",
                v,
                "a section with one entry per pipeline, e.g. `pipelines: {emails: {driver: memory}}`",
            ));
        };
        for (k, pv) in map {
            let name = key_text(k);
            let path = format!("jobs.pipelines.{name}");
            let p = Section::new(&path, Some(pv))?;
            let driver = p
                .non_empty_string("driver")?
                .ok_or_else(|| ConfigError::Missing {
                    key: format!("{path}.driver"),
                    hint: format!("the queue driver, one of {}", JOB_DRIVERS.join(", ")),
                })?;
            if UNSUPPORTED_DRIVERS.contains(&driver.as_str()) {
                warnings.push(Warning::new(
                    format!("{path}.driver"),
                    format!(
                        "{path}.driver: {driver} is a RoadRunner driver Courser does not support yet; \
                         pipeline {name} is skipped (supported: {})",
                        JOB_DRIVERS.join(", ")
                    ),
                ));
                continue;
            }
            if !JOB_DRIVERS.contains(&driver.as_str()) {
                return Err(invalid(
                    &format!("{path}.driver"),
                    &Value::from(driver.as_str()),
                    format!("one of {}", JOB_DRIVERS.join(", ")),
                ));
            }
            let config_map = match p.get("config") {
                None => Mapping::new(),
                Some(Value::Mapping(m)) => m.clone(),
                Some(other) => {
                    return Err(invalid(
                        &format!("{path}.config"),
                        other,
                        "a section of driver keys",
                    ))
                }
            };
            let config = DriverOptions::new(format!("{path}.config"), config_map);
            check_driver_keys(&driver, &config, warnings);
            // RoadRunner 2.x wrote priority at the pipeline level; 3.x under config.
            let priority = match config.int("priority")? {
                Some(p) => p,
                None => DriverOptions::new(
                    path.clone(),
                    match pv {
                        Value::Mapping(m) => m.clone(),
                        _ => Mapping::new(),
                    },
                )
                .int("priority")?
                .unwrap_or(10),
            };
            pipelines.push(PipelineConfig {
                name,
                driver,
                priority,
                config,
            });
        }
    }
    let consume = jobs.string_list("consume")?.unwrap_or_default();
    for (i, c) in consume.iter().enumerate() {
        if !pipelines.iter().any(|p| &p.name == c) {
            return Err(invalid(
                &format!("jobs.consume[{i}]"),
                &Value::from(c.as_str()),
                format!(
                    "the name of a pipeline under jobs.pipelines ({})",
                    if pipelines.is_empty() {
                        "none is declared".to_string()
                    } else {
                        pipelines
                            .iter()
                            .map(|p| p.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ),
            ));
        }
    }
    Ok(Some(JobsConfig {
        pool,
        num_pollers,
        pipeline_size,
        timeout,
        consume,
        pipelines,
        connections: parse_connections(root)?,
    }))
}

fn parse_connections(root: &Section<'_>) -> Result<Connections, ConfigError> {
    let amqp = Section::new("amqp", root.raw("amqp"))?;
    let nats = Section::new("nats", root.raw("nats"))?;
    let redis = Section::new("redis", root.raw("redis"))?;
    let beanstalk = Section::new("beanstalk", root.raw("beanstalk"))?;
    Ok(Connections {
        amqp_addr: amqp.non_empty_string("addr")?,
        nats_addr: nats.non_empty_string("addr")?,
        redis_addrs: redis.string_list("addrs")?.unwrap_or_default(),
        beanstalk_addr: beanstalk.non_empty_string("addr")?,
    })
}

#[cfg(test)]
mod tests {
    use crate::{parse_str, LoadOptions};

    fn load(yaml: &str) -> Result<crate::Loaded, crate::ConfigError> {
        let opts = LoadOptions {
            env: Some(Default::default()),
            ..LoadOptions::new(".rr.yaml")
        };
        parse_str(yaml, &opts)
    }

    #[test]
    fn reads_pipelines_consume_and_connections() {
        let l = load(
            "version: '3'\nserver: {command: php w.php}\namqp: {addr: 'amqp://x'}\nredis: {addrs: ['h:1']}\n\
             jobs:\n  num_pollers: 3\n  timeout: 30\n  pool: {num_workers: 2}\n  consume: [a]\n  pipelines:\n    \
             a: {driver: memory, config: {priority: 3, prefetch: 7}}\n    b: {driver: amqp, priority: 5}\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let j = l.config.jobs.unwrap_or_else(|| panic!("no jobs"));
        assert_eq!(j.num_pollers, 3);
        assert_eq!(j.timeout.as_secs(), 30);
        assert_eq!(j.pool.num_workers, 2);
        assert_eq!(j.consume, vec!["a"]);
        assert_eq!(j.pipelines.len(), 2);
        assert_eq!(j.pipelines[0].priority, 3);
        assert_eq!(
            j.pipelines[0].config.uint("prefetch").ok().flatten(),
            Some(7)
        );
        assert_eq!(j.pipelines[1].priority, 5);
        assert_eq!(j.connections.amqp_addr.as_deref(), Some("amqp://x"));
        assert_eq!(j.connections.redis_addrs, vec!["h:1"]);
    }

    #[test]
    fn errors_name_the_key() {
        for (yaml, key) in [
            (
                "jobs: {consume: [nope], pipelines: {a: {driver: memory}}}",
                "jobs.consume[0]",
            ),
            (
                "jobs: {pipelines: {a: {driver: rabbit}}}",
                "jobs.pipelines.a.driver",
            ),
            (
                "jobs: {pipelines: {a: {config: {}}}}",
                "jobs.pipelines.a.driver",
            ),
        ] {
            let y = format!("version: '3'\nserver: {{command: php w.php}}\n{yaml}\n");
            let e = load(&y).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains(key), "{yaml}: {e}");
        }
    }

    #[test]
    fn misspelled_driver_keys_are_warned_with_the_nearest() {
        let l = load("version: '3'\nserver: {command: php w.php}\njobs: {pipelines: {a: {driver: amqp, config: {prefech: 3, queue: q}}}}\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let w: Vec<String> = l.warnings.iter().map(|w| w.to_string()).collect();
        assert!(
            w.iter()
                .any(|w| w.contains("jobs.pipelines.a.config.prefech")
                    && w.contains("did you mean jobs.pipelines.a.config.prefetch")),
            "{w:?}"
        );
        assert_eq!(w.len(), 1, "{w:?}");
    }

    #[test]
    fn kafka_is_skipped_with_a_warning() {
        let l = load(
            "version: '3'\nserver: {command: php w.php}\njobs: {pipelines: {k: {driver: kafka}}}\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(l.config.jobs.is_some_and(|j| j.pipelines.is_empty()));
        assert!(l.warnings.iter().any(|w| w.to_string().contains("kafka")));
    }
}
