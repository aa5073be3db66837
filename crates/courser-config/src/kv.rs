//! The `kv` section (RoadRunner's kv plugin): user-named storages, each with a
//! `driver` and the driver's own `config`.
//!
//! ```yaml
//! kv:
//!   local: { driver: memory, config: { max_size: 134217728 } }
//!   disk:  { driver: boltdb, config: { file: kv.db } }
//!   cache: { driver: redis, config: { addrs: ["127.0.0.1:6379"] } }
//!   mc:    { driver: memcached, config: { addr: ["127.0.0.1:11211"] } }
//! ```
//!
//! The driver keys are read here, once, into [`KvDriver`], so `serve --check`
//! rejects a bad storage and the kv plugin never reads raw config.

use std::path::PathBuf;
use std::time::Duration;

use serde_yaml::{Mapping, Value};

use crate::error::{ConfigError, Warning};
use crate::jobs::DriverOptions;
use crate::section::{invalid, Section};
use crate::tree::key_text;

/// Drivers Courser implements for `kv.<name>.driver`.
pub const KV_DRIVERS: &[&str] = &["memory", "boltdb", "redis", "memcached"];

/// Default `config.max_size` of a memory storage: 128 MiB of keys and values.
pub const DEFAULT_MEMORY_MAX_SIZE: u64 = 128 * 1024 * 1024;
/// Default `config.max_entries` of a memory storage.
pub const DEFAULT_MEMORY_MAX_ENTRIES: u64 = 1_000_000;

/// The `kv` section.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct KvConfig {
    /// `kv.*`, in file order.
    pub storages: Vec<StorageConfig>,
}

/// One storage, `kv.<name>`.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageConfig {
    /// The user's name for it (what `kv.v1.Request.storage` names).
    pub name: String,
    /// One of [`KV_DRIVERS`].
    pub driver: String,
    /// The driver's raw keys (`kv.<name>.config`).
    pub config: DriverOptions,
    /// The driver's keys, validated.
    pub settings: KvDriver,
}

/// A storage's driver settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvDriver {
    /// In-process map shared by every worker and RPC connection.
    Memory {
        /// `config.max_size`: bytes of keys + values kept before the oldest
        /// written entries are evicted (default [`DEFAULT_MEMORY_MAX_SIZE`]).
        max_size: u64,
        /// `config.max_entries`: entries kept before eviction (default
        /// [`DEFAULT_MEMORY_MAX_ENTRIES`]).
        max_entries: u64,
        /// `config.interval`: how often expired keys are swept (default 1 s;
        /// expired keys are never returned in between).
        interval: Duration,
    },
    /// A redb file (RoadRunner's boltdb driver keeps the same keys).
    Boltdb {
        /// `config.file` (default `rr.db`, relative to the working directory).
        file: PathBuf,
        /// `config.bucket`: the table the keys live in (default `rr`).
        bucket: String,
        /// `config.interval`: how often expired keys are swept (default 60 s).
        interval: Duration,
    },
    /// One Redis node (the first of `config.addrs`).
    Redis {
        /// `config.addrs` (default `["127.0.0.1:6379"]`).
        addrs: Vec<String>,
        /// `config.username`.
        username: Option<String>,
        /// `config.password`.
        password: Option<String>,
        /// `config.db` (default 0).
        db: i64,
    },
    /// Memcached servers; keys are spread over them by CRC-32 of the key.
    Memcached {
        /// `config.addr`, a list of `host:port` (default `["127.0.0.1:11211"]`).
        addrs: Vec<String>,
    },
}

/// Reads `kv` when the file has it.
pub(crate) fn parse_kv(
    root: &Section<'_>,
    warnings: &mut Vec<Warning>,
) -> Result<Option<KvConfig>, ConfigError> {
    let Some(v) = root.get("kv") else {
        return Ok(None);
    };
    let Value::Mapping(map) = v else {
        return Err(invalid(
            "kv",
            v,
            "a section with one entry per storage, e.g. `kv: {local: {driver: memory}}`",
        ));
    };
    let mut storages = Vec::new();
    for (k, sv) in map {
        let name = key_text(k);
        let path = format!("kv.{name}");
        let s = Section::new(&path, Some(sv))?;
        let driver = s
            .non_empty_string("driver")?
            .ok_or_else(|| ConfigError::Missing {
                key: format!("{path}.driver"),
                hint: format!("the storage driver, one of {}", KV_DRIVERS.join(", ")),
            })?;
        if !KV_DRIVERS.contains(&driver.as_str()) {
            return Err(invalid(
                &format!("{path}.driver"),
                &Value::from(driver.as_str()),
                format!("one of {}", KV_DRIVERS.join(", ")),
            ));
        }
        let config_map = match s.get("config") {
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
        let (settings, known) = driver_settings(&driver, &config)?;
        for k in config.unknown_keys(known) {
            let key = config.key(&k);
            warnings.push(Warning::new(
                key.clone(),
                format!(
                    "unknown key {key}; the {driver} driver reads {}; it is ignored",
                    known.join(", ")
                ),
            ));
        }
        storages.push(StorageConfig {
            name,
            driver,
            config,
            settings,
        });
    }
    Ok(Some(KvConfig { storages }))
}

fn list_or(config: &DriverOptions, name: &str, default: &str) -> Result<Vec<String>, ConfigError> {
    let list = config.string_list(name)?.unwrap_or_default();
    if list.iter().any(|a| a.trim().is_empty()) {
        return Err(invalid(
            &config.key(name),
            &Value::from(""),
            "a list of host:port addresses",
        ));
    }
    Ok(if list.is_empty() {
        vec![default.to_string()]
    } else {
        list
    })
}

fn driver_settings(
    driver: &str,
    config: &DriverOptions,
) -> Result<(KvDriver, &'static [&'static str]), ConfigError> {
    Ok(match driver {
        "memory" => (
            KvDriver::Memory {
                max_size: config
                    .uint("max_size")?
                    .filter(|n| *n > 0)
                    .unwrap_or(DEFAULT_MEMORY_MAX_SIZE),
                max_entries: config
                    .uint("max_entries")?
                    .filter(|n| *n > 0)
                    .unwrap_or(DEFAULT_MEMORY_MAX_ENTRIES),
                interval: config
                    .seconds("interval")?
                    .filter(|d| !d.is_zero())
                    .unwrap_or(Duration::from_secs(1)),
            },
            &["max_size", "max_entries", "interval"],
        ),
        "boltdb" => (
            KvDriver::Boltdb {
                file: PathBuf::from(config.string("file")?.unwrap_or_else(|| "rr.db".into())),
                bucket: config.string("bucket")?.unwrap_or_else(|| "rr".into()),
                interval: config
                    .seconds("interval")?
                    .filter(|d| !d.is_zero())
                    .unwrap_or(Duration::from_secs(60)),
            },
            &["file", "bucket", "interval", "permissions"],
        ),
        "redis" => (
            KvDriver::Redis {
                addrs: list_or(config, "addrs", "127.0.0.1:6379")?,
                username: config.string("username")?,
                password: config.string("password")?,
                db: config.int("db")?.unwrap_or(0),
            },
            &["addrs", "username", "password", "db"],
        ),
        _ => (
            KvDriver::Memcached {
                addrs: list_or(config, "addr", "127.0.0.1:11211")?,
            },
            &["addr"],
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse_str, LoadOptions};

    fn load(yaml: &str) -> Result<crate::Loaded, crate::ConfigError> {
        let opts = LoadOptions {
            env: Some(Default::default()),
            ..LoadOptions::new(".rr.yaml")
        };
        parse_str(
            &format!("version: '3'\nrpc: {{listen: 'tcp://127.0.0.1:6001'}}\n{yaml}\n"),
            &opts,
        )
    }

    #[test]
    fn reads_every_driver_with_defaults() {
        let l = load(
            "kv:\n  mem: {driver: memory, config: {}}\n  bolt: {driver: boltdb, config: {file: /tmp/x.db}}\n  \
             red: {driver: redis, config: {addrs: ['h:1']}}\n  mc: {driver: memcached, config: {addr: 'h:2'}}\n  \
             bare: {driver: memory}\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let kv = l.config.kv.unwrap_or_else(|| panic!("no kv"));
        let names: Vec<&str> = kv.storages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["mem", "bolt", "red", "mc", "bare"]);
        assert_eq!(
            kv.storages[0].settings,
            KvDriver::Memory {
                max_size: DEFAULT_MEMORY_MAX_SIZE,
                max_entries: DEFAULT_MEMORY_MAX_ENTRIES,
                interval: Duration::from_secs(1)
            }
        );
        assert!(
            matches!(&kv.storages[1].settings, KvDriver::Boltdb { file, bucket, .. } if file.to_str() == Some("/tmp/x.db") && bucket == "rr")
        );
        assert!(
            matches!(&kv.storages[2].settings, KvDriver::Redis { addrs, db: 0, .. } if addrs == &["h:1"])
        );
        assert!(
            matches!(&kv.storages[3].settings, KvDriver::Memcached { addrs } if addrs == &["h:2"])
        );
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    }

    #[test]
    fn errors_name_the_key() {
        for (yaml, key) in [
            ("kv: {a: {driver: sqlite}}", "kv.a.driver"),
            ("kv: {a: {config: {}}}", "kv.a.driver"),
            ("kv: {a: {driver: memory, config: 3}}", "kv.a.config"),
            (
                "kv: {a: {driver: memory, config: {max_size: -1}}}",
                "kv.a.config.max_size",
            ),
            (
                "kv: {a: {driver: redis, config: {db: x}}}",
                "kv.a.config.db",
            ),
            ("kv: [a]", "kv"),
        ] {
            let e = load(yaml).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains(key), "{yaml}: {e}");
        }
    }

    #[test]
    fn unknown_driver_keys_warn() {
        let l = load("kv: {a: {driver: memory, config: {colour: red}}}")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            l.warnings.iter().any(|w| w.key == "kv.a.config.colour"),
            "{:?}",
            l.warnings
        );
    }
}
