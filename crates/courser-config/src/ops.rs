//! Typed `metrics` and `status` sections.

use std::time::Duration;

use serde_yaml::Value;

use crate::error::{ConfigError, Warning};
use crate::section::{invalid, Section};
use crate::tree::untag;

/// The `metrics` section: Prometheus metrics over HTTP.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsConfig {
    /// `host:port` of the `/metrics` endpoint (default `127.0.0.1:2112`).
    pub address: String,
    /// Application metrics declared at startup (`metrics.collect.<name>`), by
    /// name, in file order.
    pub collect: Vec<(String, CollectSpec)>,
}

/// One `metrics.collect.<name>` entry: an application metric that exists from
/// startup, as if PHP had declared it with `metrics.Declare`.
///
/// The metric's full name is `namespace_subsystem_name` (empty parts left out).
/// Names, labels and numbers are checked here, so `--check` reports them.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectSpec {
    /// `counter`, `gauge`, `histogram` or `summary` (lower-cased; required).
    pub kind: String,
    /// `namespace` (default empty).
    pub namespace: String,
    /// `subsystem` (default empty).
    pub subsystem: String,
    /// `help` (default empty).
    pub help: String,
    /// `labels`: label names; updates give the values in this order.
    pub labels: Vec<String>,
    /// `buckets`: histogram upper bounds (empty means the default buckets).
    pub buckets: Vec<f64>,
    /// `objectives`: summary quantiles and their allowed errors, written as a
    /// mapping `{0.5: 0.05, 0.99: 0.001}` or as RoadRunner's sample does, a
    /// list of one-entry mappings `[{0.5: 0.05}, {0.99: 0.001}]`.
    pub objectives: Vec<(f64, f64)>,
}

const COLLECT_TYPES: &str = "one of counter, gauge, histogram, summary";

/// A Prometheus metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn metric_name_ok(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// A Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__`.
pub fn label_name_ok(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with("__")
}

/// A number; strings of digits are accepted (they come from `${VAR}` expansion).
fn number(key: &str, v: &Value, expected: &str) -> Result<f64, ConfigError> {
    let n = match untag(v) {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    n.filter(|n| !n.is_nan())
        .ok_or_else(|| invalid(key, v, expected))
}

fn objectives(s: &Section<'_>) -> Result<Vec<(f64, f64)>, ConfigError> {
    let Some(value) = s.get("objectives") else {
        return Ok(Vec::new());
    };
    let key = s.key("objectives");
    let expected = "quantiles and their allowed errors, numbers from 0 to 1: \
                    {0.5: 0.05, 0.99: 0.001} or [{0.5: 0.05}, {0.99: 0.001}]";
    let mut maps: Vec<&serde_yaml::Mapping> = Vec::new();
    match value {
        Value::Mapping(m) => maps.push(m),
        Value::Sequence(items) => {
            for item in items {
                match untag(item) {
                    Value::Mapping(m) => maps.push(m),
                    _ => return Err(invalid(&key, value, expected)),
                }
            }
        }
        _ => return Err(invalid(&key, value, expected)),
    }
    let mut out = Vec::new();
    for m in maps {
        for (q, e) in m {
            let entry = format!("{key}.{}", crate::tree::key_text(q));
            let q = number(&entry, q, expected)?;
            let e = number(&entry, e, expected)?;
            if !(0.0..=1.0).contains(&q) || !(0.0..=1.0).contains(&e) {
                return Err(invalid(&entry, &Value::from(q), expected));
            }
            out.push((q, e));
        }
    }
    Ok(out)
}

fn collect_spec(s: &Section<'_>, path: &str, name: &str) -> Result<CollectSpec, ConfigError> {
    let kind = match s.non_empty_string("type")? {
        Some(t) => {
            let lower = t.trim().to_ascii_lowercase();
            if !["counter", "gauge", "histogram", "summary"].contains(&lower.as_str()) {
                return Err(invalid(&s.key("type"), &Value::from(t), COLLECT_TYPES));
            }
            lower
        }
        None => {
            return Err(ConfigError::Missing {
                key: s.key("type"),
                hint: COLLECT_TYPES.to_string(),
            })
        }
    };
    let namespace = s.string("namespace")?.unwrap_or_default();
    let subsystem = s.string("subsystem")?.unwrap_or_default();
    let full = [namespace.as_str(), subsystem.as_str(), name]
        .iter()
        .filter(|p| !p.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("_");
    if !metric_name_ok(&full) {
        return Err(invalid(
            path,
            &Value::from(full),
            "a valid Prometheus metric name as namespace_subsystem_name: letters, digits, _ and :, \
             not starting with a digit",
        ));
    }
    let labels = s.string_list("labels")?.unwrap_or_default();
    for (i, l) in labels.iter().enumerate() {
        if !label_name_ok(l) {
            return Err(invalid(
                &format!("{}[{i}]", s.key("labels")),
                &Value::from(l.as_str()),
                "a label name: letters, digits and _, not starting with a digit or __",
            ));
        }
    }
    let buckets = match s.get("buckets") {
        None => Vec::new(),
        Some(Value::Sequence(items)) => items
            .iter()
            .enumerate()
            .map(|(i, b)| number(&format!("{}[{i}]", s.key("buckets")), b, "a number"))
            .collect::<Result<Vec<_>, _>>()?,
        Some(other) => {
            return Err(invalid(
                &s.key("buckets"),
                other,
                "a list of bucket upper bounds, e.g. [0.1, 0.5, 1]",
            ))
        }
    };
    Ok(CollectSpec {
        kind,
        namespace,
        subsystem,
        help: s.string("help")?.unwrap_or_default(),
        labels,
        buckets,
        objectives: objectives(s)?,
    })
}

fn parse_collect(m: &Section<'_>) -> Result<Vec<(String, CollectSpec)>, ConfigError> {
    let mut out = Vec::new();
    match m.get("collect") {
        None => {}
        Some(Value::Mapping(entries)) => {
            for (k, v) in entries {
                let name = crate::tree::key_text(k);
                let path = format!("metrics.collect.{name}");
                let sec = Section::new(&path, Some(v))?;
                out.push((name.clone(), collect_spec(&sec, &path, &name)?));
            }
        }
        Some(other) => {
            return Err(invalid(
                &m.key("collect"),
                other,
                "a section of metrics by name, e.g. collect: {app_requests: {type: counter}}",
            ))
        }
    }
    Ok(out)
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
        collect: parse_collect(&m)?,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse_str, LoadOptions};
    use std::collections::HashMap;

    fn metrics(yaml: &str) -> Result<MetricsConfig, ConfigError> {
        let text = format!("version: \"3\"\nmetrics:\n{yaml}");
        let opts = LoadOptions {
            env: Some(HashMap::new()),
            ..LoadOptions::new("t.yaml")
        };
        parse_str(&text, &opts).map(|l| {
            assert!(l.warnings.is_empty(), "{:?}", l.warnings);
            l.config.metrics.unwrap_or_else(|| panic!("no metrics"))
        })
    }

    #[test]
    fn collect_entries_in_file_order() {
        let m = metrics(
            "  address: :2112\n  collect:\n    app_metric:\n      type: Histogram\n      help: \"Custom\"\n      labels: [\"type\"]\n      buckets: [0.1, 0.2, \"1\"]\n    queue_size:\n      type: gauge\n      namespace: app\n      subsystem: jobs\n    latency:\n      type: summary\n      objectives:\n        - 0.5: 0.05\n        - 0.99: 0.001\n    lat2:\n      type: summary\n      objectives: {0.9: 0.01}\n",
        )
        .unwrap();
        let names: Vec<&str> = m.collect.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["app_metric", "queue_size", "latency", "lat2"]);
        let h = &m.collect[0].1;
        assert_eq!(h.kind, "histogram");
        assert_eq!(h.help, "Custom");
        assert_eq!(h.labels, ["type"]);
        assert_eq!(h.buckets, [0.1, 0.2, 1.0]);
        let g = &m.collect[1].1;
        assert_eq!(
            (g.namespace.as_str(), g.subsystem.as_str()),
            ("app", "jobs")
        );
        assert!(g.labels.is_empty() && g.buckets.is_empty());
        assert_eq!(m.collect[2].1.objectives, [(0.5, 0.05), (0.99, 0.001)]);
        assert_eq!(m.collect[3].1.objectives, [(0.9, 0.01)]);
    }

    #[test]
    fn no_collect_is_empty() {
        assert!(metrics("  address: :2112\n").unwrap().collect.is_empty());
    }

    #[test]
    fn collect_errors_name_the_key() {
        let cases = [
            (
                "    x:\n      help: h\n",
                "metrics.collect.x.type is required",
            ),
            (
                "    x:\n      type: meter\n",
                "metrics.collect.x.type: \"meter\" is not valid",
            ),
            (
                "    x-y:\n      type: gauge\n",
                "metrics.collect.x-y: \"x-y\" is not valid",
            ),
            (
                "    x:\n      type: gauge\n      namespace: 1a\n",
                "metrics.collect.x: \"1a_x\" is not valid",
            ),
            (
                "    x:\n      type: gauge\n      labels: [ok, \"bad-label\"]\n",
                "metrics.collect.x.labels[1]",
            ),
            (
                "    x:\n      type: histogram\n      buckets: [0.1, fast]\n",
                "metrics.collect.x.buckets[1]",
            ),
            (
                "    x:\n      type: histogram\n      buckets: 0.1\n",
                "metrics.collect.x.buckets",
            ),
            (
                "    x:\n      type: summary\n      objectives: {1.5: 0.1}\n",
                "metrics.collect.x.objectives.1.5",
            ),
            (
                "    x:\n      type: summary\n      objectives: [0.5]\n",
                "metrics.collect.x.objectives",
            ),
            ("    x: 1\n", "metrics.collect.x: 1 is not valid"),
        ];
        for (yaml, want) in cases {
            let e = metrics(&format!("  collect:\n{yaml}"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{yaml}: {e}");
        }
        let e = metrics("  collect: [a]\n").unwrap_err().to_string();
        assert!(e.contains("metrics.collect:"), "{e}");
    }
}
