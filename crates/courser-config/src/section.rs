//! Typed reads from one mapping of the tree, with errors that name the full key.

use std::time::Duration;

use serde_yaml::{Mapping, Value};

use crate::duration::parse_duration;
use crate::error::{ConfigError, Warning};
use crate::tree::{key_text, scalar_text, show, untag};

/// A bare number of nanoseconds below this, used for a duration, almost
/// certainly meant seconds: warn about it.
const SUSPICIOUS_NANOS: u64 = 1_000_000;

pub(crate) const DURATION_EXPECTED: &str = "a duration such as \"60s\", \"1m30s\" or \"500ms\"";

/// One mapping of the config tree together with its key path.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Section<'a> {
    path: &'a str,
    map: Option<&'a Mapping>,
}

pub(crate) fn invalid(key: &str, value: &Value, expected: impl Into<String>) -> ConfigError {
    ConfigError::InvalidValue {
        key: key.to_string(),
        value: show(value),
        expected: expected.into(),
    }
}

impl<'a> Section<'a> {
    /// `value` must be a mapping or null (an empty section).
    pub(crate) fn new(path: &'a str, value: Option<&'a Value>) -> Result<Self, ConfigError> {
        match value.map(untag) {
            None | Some(Value::Null) => Ok(Section { path, map: None }),
            Some(Value::Mapping(map)) => Ok(Section {
                path,
                map: Some(map),
            }),
            Some(other) => Err(invalid(
                path,
                other,
                "a section of keys (key: value lines indented below it)",
            )),
        }
    }

    /// A section over an already untagged mapping.
    pub(crate) fn from_map(path: &'a str, map: &'a Mapping) -> Self {
        Section {
            path,
            map: Some(map),
        }
    }

    /// The full path of a key of this section.
    pub(crate) fn key(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.path)
        }
    }

    /// The raw value of a key, present even when null.
    pub(crate) fn raw(&self, name: &str) -> Option<&'a Value> {
        self.map.and_then(|m| m.get(name))
    }

    /// Whether the key is written at all (even as `key:` with no value).
    pub(crate) fn has(&self, name: &str) -> bool {
        self.raw(name).is_some()
    }

    /// The value of a key; a missing key and a null value are both `None`.
    pub(crate) fn get(&self, name: &str) -> Option<&'a Value> {
        self.raw(name).map(untag).filter(|v| !v.is_null())
    }

    /// A non-negative integer. Strings of digits are accepted (they come from
    /// `${VAR}` expansion).
    pub(crate) fn uint(&self, name: &str, expected: &str) -> Result<Option<u64>, ConfigError> {
        let Some(value) = self.get(name) else {
            return Ok(None);
        };
        let parsed = match value {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse::<u64>().ok(),
            _ => None,
        };
        parsed
            .map(Some)
            .ok_or_else(|| invalid(&self.key(name), value, expected))
    }

    /// `true` or `false` (also as the strings "true" and "false").
    pub(crate) fn boolean(&self, name: &str) -> Result<Option<bool>, ConfigError> {
        let Some(value) = self.get(name) else {
            return Ok(None);
        };
        match value {
            Value::Bool(b) => Ok(Some(*b)),
            Value::String(s) if s.trim() == "true" => Ok(Some(true)),
            Value::String(s) if s.trim() == "false" => Ok(Some(false)),
            _ => Err(invalid(&self.key(name), value, "true or false")),
        }
    }

    /// A string; numbers and booleans are taken as written.
    pub(crate) fn string(&self, name: &str) -> Result<Option<String>, ConfigError> {
        let Some(value) = self.get(name) else {
            return Ok(None);
        };
        scalar_text(value)
            .map(Some)
            .ok_or_else(|| invalid(&self.key(name), value, "a string"))
    }

    /// A string that must not be empty to count; `""` is `None`.
    pub(crate) fn non_empty_string(&self, name: &str) -> Result<Option<String>, ConfigError> {
        Ok(self.string(name)?.filter(|s| !s.trim().is_empty()))
    }

    /// A duration (see [`parse_duration`]). A bare number below 1 000 000
    /// (other than 0) is taken as nanoseconds, as RoadRunner does, with a warning.
    pub(crate) fn duration(
        &self,
        name: &str,
        warnings: &mut Vec<Warning>,
    ) -> Result<Option<Duration>, ConfigError> {
        let Some(value) = self.get(name) else {
            return Ok(None);
        };
        let key = self.key(name);
        let bare = match value {
            Value::Number(n) => match n.as_u64() {
                Some(n) => n,
                None => {
                    let why = if n.as_i64().is_some() {
                        "a duration cannot be negative"
                    } else {
                        "a number with a fraction has no unit"
                    };
                    return Err(invalid(&key, value, format!("{DURATION_EXPECTED}: {why}")));
                }
            },
            Value::String(s) => {
                let trimmed = s.trim();
                if trimmed.is_empty() || !trimmed.bytes().all(|b| b.is_ascii_digit()) {
                    return parse_duration(s).map(Some).map_err(|why| {
                        invalid(&key, value, format!("{DURATION_EXPECTED}: {why}"))
                    });
                }
                trimmed
                    .parse::<u64>()
                    .map_err(|_| invalid(&key, value, DURATION_EXPECTED))?
            }
            _ => return Err(invalid(&key, value, DURATION_EXPECTED)),
        };
        if bare > 0 && bare < SUSPICIOUS_NANOS {
            warnings.push(Warning::new(
                &key,
                format!(
                    "{key}: {bare} is {bare} nanoseconds; write \"{bare}s\" if you meant {bare} seconds \
                     (a bare number is read as nanoseconds, as RoadRunner does)"
                ),
            ));
        }
        Ok(Some(Duration::from_nanos(bare)))
    }

    /// A list of strings; a single string is a one-item list.
    pub(crate) fn string_list(&self, name: &str) -> Result<Option<Vec<String>>, ConfigError> {
        let Some(value) = self.get(name) else {
            return Ok(None);
        };
        let key = self.key(name);
        match value {
            Value::Sequence(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    scalar_text(item)
                        .ok_or_else(|| invalid(&format!("{key}[{i}]"), item, "a string"))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            other => scalar_text(other)
                .map(|s| Some(vec![s]))
                .ok_or_else(|| invalid(&key, other, "a list of strings, e.g. [\"a\", \"b\"]")),
        }
    }

    /// A command: a string split on ASCII whitespace (no shell, no quoting),
    /// or a list used as given. An empty command is `Some(vec![])`.
    pub(crate) fn command(&self, name: &str) -> Result<Option<Vec<String>>, ConfigError> {
        let Some(value) = self.get(name) else {
            return Ok(None);
        };
        let key = self.key(name);
        match value {
            Value::Sequence(_) => self.string_list(name),
            Value::String(s) => Ok(Some(
                s.split_ascii_whitespace().map(str::to_string).collect(),
            )),
            other => Err(invalid(
                &key,
                other,
                "a command line such as \"php worker.php\", or a list such as [\"php\", \"worker.php\"]",
            )),
        }
    }

    /// Environment variables: a mapping, or a list of one-key mappings (the
    /// form of RoadRunner's sample) or of `KEY=VALUE` strings. Keys are
    /// upper-cased; a later duplicate replaces the earlier value in place.
    pub(crate) fn env(&self, name: &str) -> Result<Vec<(String, String)>, ConfigError> {
        let mut out: Vec<(String, String)> = Vec::new();
        let Some(value) = self.get(name) else {
            return Ok(out);
        };
        let key = self.key(name);
        let expected = "environment variables: a mapping such as {APP_ENV: prod}, \
                        or a list such as [APP_ENV: prod]";
        let mut add = |var: String, val: String| match out.iter_mut().find(|(k, _)| *k == var) {
            Some(entry) => entry.1 = val,
            None => out.push((var, val)),
        };
        let mut add_map = |map: &Mapping| -> Result<(), ConfigError> {
            for (k, v) in map {
                let var = key_text(k).to_uppercase();
                let var_key = format!("{key}.{var}");
                if var.trim().is_empty() {
                    return Err(invalid(
                        &key,
                        &Value::Mapping(map.clone()),
                        "non-empty variable names",
                    ));
                }
                let val = match untag(v) {
                    Value::Null => String::new(),
                    other => {
                        scalar_text(other).ok_or_else(|| invalid(&var_key, other, "a string"))?
                    }
                };
                add(var, val);
            }
            Ok(())
        };
        match value {
            Value::Mapping(map) => add_map(map)?,
            Value::Sequence(items) => {
                for item in items {
                    match untag(item) {
                        Value::Mapping(map) => add_map(map)?,
                        Value::String(s) => match s.split_once('=') {
                            Some((k, v)) if !k.trim().is_empty() => {
                                let mut single = Mapping::new();
                                single.insert(Value::from(k.trim()), Value::from(v));
                                add_map(&single)?;
                            }
                            _ => return Err(invalid(&key, item, expected)),
                        },
                        other => return Err(invalid(&key, other, expected)),
                    }
                }
            }
            other => return Err(invalid(&key, other, expected)),
        }
        Ok(out)
    }
}
