//! Loads a RoadRunner `.rr.yaml` once at startup and turns it into typed,
//! validated values, with clear errors.
//!
//! The steps, in order (see `docs/protocol.md`, configuration):
//!
//! 1. **Dotenv.** `--dotenv FILE` (or `DOTENV_PATH` from the environment when
//!    no file is given) is read into the variables used for expansion.
//!    Variables already set in the process environment win over the file, as
//!    with RoadRunner (which uses godotenv's `Load`): the file provides
//!    defaults, it never overrides what the operator exported. The entries that
//!    took effect are returned in [`Loaded::dotenv`] so the server can pass
//!    them on to workers.
//! 2. **Parse** the YAML (YAML merge keys `<<:` are applied).
//! 3. **Expand** `${VAR}`, `$VAR` and `${VAR:-default}` in every string value
//!    (see [`expand_str`]).
//! 4. **Include** the files listed in `include` (relative to the config's
//!    directory). They sit under the main file: the main file wins, and a
//!    later include wins over an earlier one. Each must have the same version.
//! 5. **Override** keys with `-o key.path=value` ([`parse_override`]).
//! 6. **Check** the version and every key against the known-keys table
//!    ([`schema`]): unsupported, removed and unknown keys give [`Warning`]s.
//! 7. **Type** the sections Courser runs ([`Config`]); a bad value is a
//!    [`ConfigError`] naming the full key path, the value and what is accepted.
//!
//! ```
//! use courser_config::{parse_str, LoadOptions};
//!
//! let yaml = "version: '3'\nserver:\n  command: php worker.php\nhttp:\n  address: 127.0.0.1:8080\n";
//! let opts = LoadOptions {
//!     overrides: vec!["http.pool.num_workers=4".into()],
//!     env: Some(Default::default()), // tests pass their own environment
//!     ..LoadOptions::new(".rr.yaml")
//! };
//! let loaded = parse_str(yaml, &opts)?;
//! assert_eq!(loaded.config.http.map(|http| http.pool.num_workers), Some(4));
//! for warning in &loaded.warnings {
//!     eprintln!("{warning}");
//! }
//! # Ok::<(), courser_config::ConfigError>(())
//! ```
//!
//! Invariants: this crate does no I/O besides reading the config, the files it
//! includes and the dotenv file, and it never logs; warnings are returned for
//! the caller to print. Nothing here is used on the request path.

mod config;
mod duration;
mod env;
mod error;
mod http;
mod jobs;
mod kv;
mod ops;
mod overrides;
mod pool;
pub mod schema;
mod section;
mod tree;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_yaml::Value;

pub use config::{
    Config, EndureConfig, HttpConfig, LogChannel, LogEncoding, LogLevel, LogMode, LogsConfig,
    OnInitConfig, Relay, RpcConfig, ServerConfig, DEFAULT_RPC_LISTEN, DEFAULT_TRUSTED_SUBNETS,
};
pub use duration::parse_duration;
pub use env::{expand_str, parse_dotenv};
pub use error::{ConfigError, Warning};
pub use http::{
    ClientAuth, CorsConfig, HeadersConfig, Http2Config, HttpCodec, HttpExtras, HttpLimits,
    SslConfig, StaticConfig, UploadsConfig, DEFAULT_MAX_PARTS,
};
pub use jobs::{Connections, DriverOptions, JobsConfig, PipelineConfig, JOB_DRIVERS};
pub use kv::{
    KvConfig, KvDriver, StorageConfig, DEFAULT_MEMORY_MAX_ENTRIES, DEFAULT_MEMORY_MAX_SIZE,
    KV_DRIVERS,
};
pub use ops::{
    label_name_ok, metric_name_ok, CollectSpec, MetricsConfig, ReloadConfig, ReloadTarget,
    StatusConfig,
};
pub use overrides::{parse_override, Override};
pub use pool::{
    cpu_count, parse_pool, DynamicAllocatorConfig, PoolConfig, SupervisorConfig, MAX_SPAWN_RATE,
    MAX_WORKERS, MIN_IDLE_TIMEOUT,
};

/// The only accepted config version.
pub const VERSION: &str = "3";

/// What to load and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOptions {
    /// The config file (`-c`). With [`parse_str`] it is used only in messages
    /// and to find included files.
    pub path: PathBuf,
    /// `-o key.path=value` overrides, applied in order.
    pub overrides: Vec<String>,
    /// `--dotenv FILE`. When `None`, `DOTENV_PATH` from the environment is used if set.
    pub dotenv: Option<PathBuf>,
    /// The environment to expand from; `None` means the process environment.
    pub env: Option<HashMap<String, String>>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            path: PathBuf::from(".rr.yaml"),
            overrides: Vec::new(),
            dotenv: None,
            env: None,
        }
    }
}

impl LoadOptions {
    /// Options for loading `path` with the process environment and nothing else.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        LoadOptions {
            path: path.into(),
            ..LoadOptions::default()
        }
    }
}

/// A loaded configuration and what a person should be told about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    pub config: Config,
    /// To print once at startup, in file order.
    pub warnings: Vec<Warning>,
    /// The dotenv entries that took effect (those not already set in the
    /// environment), in file order. The server adds them to the workers'
    /// environment.
    pub dotenv: Vec<(String, String)>,
}

/// Reads and loads the file at `opts.path`.
pub fn load(opts: &LoadOptions) -> Result<Loaded, ConfigError> {
    let text = read(&opts.path)?;
    parse_str(&text, opts)
}

/// Loads a config from text; `opts.path` names it in messages and is the
/// base for relative `include` paths.
pub fn parse_str(yaml: &str, opts: &LoadOptions) -> Result<Loaded, ConfigError> {
    let mut warnings = Vec::new();

    let mut env: HashMap<String, String> = match &opts.env {
        Some(env) => env.clone(),
        None => std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect(),
    };
    let dotenv_path = match &opts.dotenv {
        Some(path) => Some((path.clone(), "given with --dotenv")),
        None => env
            .get("DOTENV_PATH")
            .filter(|p| !p.trim().is_empty())
            .map(|p| (PathBuf::from(p), "named by DOTENV_PATH")),
    };
    let dotenv = match dotenv_path {
        Some((path, origin)) => {
            let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::DotenvIo {
                path: path.clone(),
                origin,
                source,
            })?;
            let entries = parse_dotenv(&text, &path, &env)?;
            let fresh: Vec<(String, String)> = entries
                .into_iter()
                .filter(|(k, _)| !env.contains_key(k))
                .collect();
            env.extend(fresh.iter().cloned());
            fresh
        }
        None => Vec::new(),
    };
    let lookup = |name: &str| env.get(name).cloned();

    let mut tree = parse_yaml(yaml, &opts.path)?;
    env::expand_tree(&mut tree, &lookup);
    apply_includes(&mut tree, &opts.path, &lookup, &mut warnings)?;

    for text in &opts.overrides {
        let Override { path, mut value } = parse_override(text)?;
        env::expand_tree(&mut value, &lookup);
        tree::set_path(&mut tree, &path, value).map_err(|(prefix, held)| ConfigError::Override {
            text: text.clone(),
            reason: format!("{prefix} holds a value ({held}), not a section, so nothing can be set inside it"),
        })?;
    }

    let version = check_version(&tree, &mut warnings)?;
    schema::check(&tree, &mut warnings);
    let config = match config::build(&tree, version, &mut warnings) {
        Ok(c) => c,
        Err(error) if !warnings.is_empty() => {
            return Err(ConfigError::WithWarnings {
                error: Box::new(error),
                warnings,
            })
        }
        Err(error) => return Err(error),
    };
    Ok(Loaded {
        config,
        warnings,
        dotenv,
    })
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Parses one file; its top level must be a mapping (an empty file is an
/// empty mapping).
fn parse_yaml(text: &str, path: &Path) -> Result<Value, ConfigError> {
    let yaml_error = |message: String| ConfigError::Yaml {
        path: path.to_path_buf(),
        message,
    };
    let mut value: Value = serde_yaml::from_str(text).map_err(|e| {
        let mut message = e.to_string();
        if let Some(location) = e.location() {
            if !message.contains("line") {
                message = format!(
                    "{message} at line {} column {}",
                    location.line(),
                    location.column()
                );
            }
        }
        yaml_error(message)
    })?;
    value
        .apply_merge()
        .map_err(|e| yaml_error(format!("a YAML merge key (<<) cannot be applied: {e}")))?;
    match value {
        Value::Null => Ok(Value::Mapping(serde_yaml::Mapping::new())),
        Value::Mapping(_) => Ok(value),
        other => Err(yaml_error(format!(
            "the top level is {}, but it must be a mapping of sections such as version: \"3\" and server:",
            tree::show(&other)
        ))),
    }
}

/// The version as text, for comparing files: `"3"` and `3` are both "3".
fn version_text(tree: &Value) -> Option<String> {
    tree.get("version").and_then(tree::scalar_text)
}

fn check_version(tree: &Value, warnings: &mut Vec<Warning>) -> Result<String, ConfigError> {
    match tree.get("version").map(tree::untag) {
        None | Some(Value::Null) => Err(ConfigError::MissingVersion),
        Some(Value::String(s)) if s.trim() == VERSION => Ok(VERSION.to_string()),
        Some(Value::Number(n)) if n.as_u64() == Some(3) || n.as_f64() == Some(3.0) => {
            warnings.push(Warning::new(
                "version",
                "version: 3 is a number; write version: \"3\" (a quoted string), as RoadRunner requires",
            ));
            Ok(VERSION.to_string())
        }
        Some(other) => Err(ConfigError::BadVersion {
            value: tree::show(other),
        }),
    }
}

fn apply_includes<F>(
    tree: &mut Value,
    main_path: &Path,
    lookup: &F,
    warnings: &mut Vec<Warning>,
) -> Result<(), ConfigError>
where
    F: Fn(&str) -> Option<String>,
{
    let files: Vec<String> = match tree.get("include").map(tree::untag) {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Sequence(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match tree::untag(item) {
                Value::String(s) => Ok(s.clone()),
                other => Err(section::invalid(
                    &format!("include[{i}]"),
                    other,
                    "a file path",
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(section::invalid(
                "include",
                other,
                "a list of file paths, e.g. [\"common.yaml\"]",
            ))
        }
    };
    let base_dir = main_path.parent().unwrap_or(Path::new(""));
    let main_version = version_text(tree);
    let mut merged: Option<Value> = None;
    for file in files.iter().filter(|f| !f.trim().is_empty()) {
        let path = base_dir.join(file.trim());
        let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::Include {
            path: path.clone(),
            reason: format!(
                "cannot be read: {e} (include paths are relative to the directory of {})",
                main_path.display()
            ),
        })?;
        let mut included = parse_yaml(&text, &path)?;
        env::expand_tree(&mut included, lookup);
        let included_version = version_text(&included);
        if let Some(expected) = &main_version {
            match &included_version {
                None => {
                    return Err(ConfigError::Include {
                        path,
                        reason: format!(
                            "has no version; add version: \"{expected}\" as in {}",
                            main_path.display()
                        ),
                    })
                }
                Some(found) if found != expected => {
                    return Err(ConfigError::Include {
                        path,
                        reason: format!(
                            "has version \"{found}\" but {} has version \"{expected}\"; every included file needs the same version",
                            main_path.display()
                        ),
                    })
                }
                Some(_) => {}
            }
        }
        if let Value::Mapping(map) = &mut included {
            if map.remove("include").is_some() {
                warnings.push(Warning::new(
                    "include",
                    format!(
                        "the include in {} is ignored: included files cannot include others; list every file in the include of {}",
                        path.display(),
                        main_path.display()
                    ),
                ));
            }
        }
        merged = Some(match merged {
            Some(low) => tree::merge(low, included),
            None => included,
        });
    }
    if let Some(low) = merged {
        let main = std::mem::take(tree);
        *tree = tree::merge(low, main);
    }
    Ok(())
}
