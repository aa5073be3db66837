//! `-o key.path=value` command-line overrides.

use serde_yaml::Value;

use crate::error::ConfigError;

/// One parsed override: the key path split on dots, and the value.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// The key path, e.g. `["http", "pool", "num_workers"]`.
    pub path: Vec<String>,
    /// The value: a YAML scalar (`3` is an integer, `true` a boolean), a
    /// flow list such as `[gzip, static]`, or a string when the text was
    /// quoted or is not a plain scalar.
    pub value: Value,
}

/// Parses `key.path=value`.
///
/// The value is read as a YAML scalar, so `3` becomes an integer and `true`
/// a boolean; surrounding single or double quotes are stripped and make it a
/// string (`-o 'version="3"'`). `[a, b]` gives a list. An empty value gives
/// an empty string. Anything YAML would read as a mapping, or cannot read,
/// is kept as the string written.
pub fn parse_override(text: &str) -> Result<Override, ConfigError> {
    let fail = |reason: &str| ConfigError::Override {
        text: text.to_string(),
        reason: reason.to_string(),
    };
    let Some((key, raw)) = text.split_once('=') else {
        return Err(fail("there is no '=' between the key and the value"));
    };
    let key = key.trim();
    if key.is_empty() {
        return Err(fail("the key is empty"));
    }
    let path: Vec<String> = key.split('.').map(|p| p.trim().to_string()).collect();
    if path.iter().any(String::is_empty) {
        return Err(fail(
            "the key has an empty part (a dot at the start or end, or two dots in a row)",
        ));
    }
    Ok(Override {
        path,
        value: override_value(raw.trim()),
    })
}

fn override_value(raw: &str) -> Value {
    let quoted = raw.len() >= 2
        && ((raw.starts_with('"') && raw.ends_with('"'))
            || (raw.starts_with('\'') && raw.ends_with('\'')));
    if quoted {
        return Value::String(raw[1..raw.len() - 1].to_string());
    }
    if raw.is_empty() {
        return Value::String(String::new());
    }
    match serde_yaml::from_str::<Value>(raw) {
        Ok(v @ (Value::Bool(_) | Value::Number(_) | Value::String(_))) => v,
        Ok(Value::Null) if matches!(raw, "null" | "Null" | "NULL" | "~") => Value::Null,
        Ok(v @ Value::Sequence(_)) if raw.starts_with('[') => v,
        _ => Value::String(raw.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        let cases: &[(&str, Value)] = &[
            ("a=3", Value::from(3)),
            ("a=true", Value::from(true)),
            ("a=1.5", Value::from(1.5)),
            ("a=\"3\"", Value::from("3")),
            ("a='true'", Value::from("true")),
            (
                "a=tcp://127.0.0.1:6001",
                Value::from("tcp://127.0.0.1:6001"),
            ),
            ("a=x=y", Value::from("x=y")),
            ("a=", Value::from("")),
            ("a=null", Value::Null),
            ("a=#hash", Value::from("#hash")),
            ("a=k: v", Value::from("k: v")),
            ("a=\"", Value::from("\"")),
            (
                "a=[gzip, static]",
                Value::Sequence(vec![Value::from("gzip"), Value::from("static")]),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(
                &parse_override(text).expect("ok").value,
                want,
                "override {text:?}"
            );
        }
        assert_eq!(
            parse_override(" http.pool.num_workers = 4")
                .expect("ok")
                .path,
            vec!["http", "pool", "num_workers"]
        );
    }

    #[test]
    fn bad_syntax() {
        for (text, needle) in [
            ("http.address", "no '='"),
            ("=3", "key is empty"),
            ("http..address=x", "empty part"),
            (".http=x", "empty part"),
            ("http.=x", "empty part"),
        ] {
            let msg = parse_override(text).expect_err("an error").to_string();
            assert!(msg.contains(needle) && msg.contains(text), "{text}: {msg}");
        }
    }
}
