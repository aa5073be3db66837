//! Typed `metrics` and `status` sections.

use std::time::Duration;

use serde_yaml::Value;

use crate::error::{ConfigError, Warning};
use crate::section::{invalid, Section};

/// The `metrics` section: Prometheus metrics over HTTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    /// `host:port` of the `/metrics` endpoint (default `127.0.0.1:2112`).
    pub address: String,
}

/// The `status` section: `/health` and `/ready`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusConfig {
    /// `host:port` of the endpoints (required).
    pub address: String,
    /// Status code when a check fails (default 503).
    pub unavailable_status_code: u16,
    /// How long a check may take (default 60s).
    pub check_timeout: Duration,
    /// After SIGTERM, how long `/ready` reports unavailable before the listeners
    /// close, so load balancers stop sending traffic (Courser key, default 0s).
    pub drain_delay: Duration,
}

fn address(
    s: &Section<'_>,
    name: &str,
    default: Option<&str>,
    hint: &str,
) -> Result<String, ConfigError> {
    let v = match s.non_empty_string(name)? {
        Some(v) => v,
        None => match default {
            Some(d) => return Ok(d.to_string()),
            None => {
                return Err(ConfigError::Missing {
                    key: s.key(name),
                    hint: hint.to_string(),
                })
            }
        },
    };
    let ok = v
        .rsplit_once(':')
        .is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if !ok {
        return Err(invalid(
            &s.key(name),
            &Value::from(v.as_str()),
            "host:port, e.g. \"127.0.0.1:2112\" or \":2112\"",
        ));
    }
    Ok(v)
}

pub(crate) fn parse_metrics(root: &Section<'_>) -> Result<Option<MetricsConfig>, ConfigError> {
    if root.get("metrics").is_none() {
        return Ok(None);
    }
    let m = Section::new("metrics", root.raw("metrics"))?;
    Ok(Some(MetricsConfig {
        address: address(&m, "address", Some("127.0.0.1:2112"), "")?,
    }))
}

pub(crate) fn parse_status(
    root: &Section<'_>,
    warnings: &mut Vec<Warning>,
) -> Result<Option<StatusConfig>, ConfigError> {
    if root.get("status").is_none() {
        return Ok(None);
    }
    let s = Section::new("status", root.raw("status"))?;
    let code_expected = "an HTTP status code from 200 to 599 (default 503)";
    Ok(Some(StatusConfig {
        address: address(
            &s,
            "address",
            None,
            "where to serve /health and /ready, e.g. \"127.0.0.1:2114\"",
        )?,
        unavailable_status_code: match s.uint("unavailable_status_code", code_expected)? {
            None | Some(0) => 503,
            Some(c @ 200..=599) => c as u16,
            Some(c) => {
                return Err(invalid(
                    &s.key("unavailable_status_code"),
                    &Value::from(c),
                    code_expected,
                ))
            }
        },
        // RoadRunner reads a bare number here as seconds.
        check_timeout: match s.get("check_timeout") {
            Some(Value::Number(n)) => n
                .as_u64()
                .filter(|&v| v > 0)
                .map_or(Duration::from_secs(60), Duration::from_secs),
            _ => s
                .duration("check_timeout", warnings)?
                .filter(|d| !d.is_zero())
                .unwrap_or(Duration::from_secs(60)),
        },
        drain_delay: s
            .duration("drain_delay", warnings)?
            .unwrap_or(Duration::ZERO),
    }))
}

/// The `reload` section: reset pools when PHP files change (development).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadConfig {
    /// Changes closer together than this make one reload (`interval` or `debounce`, default 1s).
    pub debounce: Duration,
    /// What to watch, per plugin.
    pub targets: Vec<ReloadTarget>,
}

/// One watched set of directories and the plugin it resets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadTarget {
    /// The plugin (pool) to reset, e.g. `http`; `*` means every pool.
    pub plugin: String,
    /// Directories to watch (default ".").
    pub dirs: Vec<std::path::PathBuf>,
    /// Watch subdirectories too (default true).
    pub recursive: bool,
    /// File name endings that count (default [".php"]).
    pub patterns: Vec<String>,
    /// Path components to ignore (e.g. "vendor", ".git").
    pub ignore: Vec<String>,
}

fn target(
    s: &Section<'_>,
    plugin: &str,
    default_patterns: &[String],
) -> Result<ReloadTarget, ConfigError> {
    let dirs = s.string_list("dirs")?.unwrap_or_else(|| vec![".".into()]);
    Ok(ReloadTarget {
        plugin: plugin.to_string(),
        dirs: dirs.into_iter().map(std::path::PathBuf::from).collect(),
        recursive: s.boolean("recursive")?.unwrap_or(true),
        patterns: s
            .string_list("patterns")?
            .unwrap_or_else(|| default_patterns.to_vec()),
        ignore: s
            .string_list("ignore")?
            .unwrap_or_else(|| vec!["vendor".into(), ".git".into(), "node_modules".into()]),
    })
}

pub(crate) fn parse_reload(
    root: &Section<'_>,
    warnings: &mut Vec<Warning>,
) -> Result<Option<ReloadConfig>, ConfigError> {
    if root.get("reload").is_none() {
        return Ok(None);
    }
    let r = Section::new("reload", root.raw("reload"))?;
    let debounce = match r.duration("debounce", warnings)? {
        Some(d) => Some(d),
        None => r.duration("interval", warnings)?,
    }
    .filter(|d| !d.is_zero())
    .unwrap_or(Duration::from_secs(1));
    let patterns = r
        .string_list("patterns")?
        .unwrap_or_else(|| vec![".php".into()]);
    let mut targets = Vec::new();
    // RoadRunner's form: reload.services.<plugin>.{dirs, recursive, patterns, ignore}.
    if let Some(Value::Mapping(services)) = r.get("services") {
        for (name, _) in services {
            let plugin = crate::tree::key_text(name);
            let path = format!("reload.services.{plugin}");
            let sec = Section::new(&path, services.get(name))?;
            targets.push(target(&sec, &plugin, &patterns)?);
        }
    }
    // Courser's flat form: reload.{dirs, patterns, ignore, recursive} for every pool.
    if targets.is_empty() || r.get("dirs").is_some() {
        targets.push(target(&r, "*", &patterns)?);
    }
    Ok(Some(ReloadConfig { debounce, targets }))
}
