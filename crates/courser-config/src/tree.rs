//! Small helpers over `serde_yaml::Value` trees: showing values in messages,
//! merging included files, setting a key path.

use serde_yaml::{Mapping, Value};

/// Looks through YAML tags (`!tag value`) to the value itself.
pub(crate) fn untag(value: &Value) -> &Value {
    match value {
        Value::Tagged(tagged) => untag(&tagged.value),
        other => other,
    }
}

/// A mapping key as text (keys are almost always strings; numbers and
/// booleans are shown as written).
pub(crate) fn key_text(key: &Value) -> String {
    match untag(key) {
        Value::String(s) => s.clone(),
        other => show(other),
    }
}

/// A scalar as the string a string-typed setting receives: numbers and
/// booleans are accepted the way RoadRunner's weakly typed decoding does.
pub(crate) fn scalar_text(value: &Value) -> Option<String> {
    match untag(value) {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A value as a person should see it in an error: strings in double quotes,
/// numbers and booleans bare, lists and maps in JSON flow style.
pub(crate) fn show(value: &Value) -> String {
    match untag(value) {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => quote(s),
        other => serde_json::to_string(other).unwrap_or_else(|_| match other {
            Value::Sequence(_) => "a list".to_string(),
            _ => "a mapping".to_string(),
        }),
    }
}

/// A string in double quotes, with JSON escapes.
pub(crate) fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

/// Merges `low` under `high`: where both hold a mapping the merge goes
/// deeper, anywhere else `high` wins. Keys keep `high`'s order, followed by
/// keys found only in `low`.
pub(crate) fn merge(low: Value, high: Value) -> Value {
    match (low, high) {
        (Value::Mapping(low), Value::Mapping(mut high)) => {
            for (key, low_value) in low {
                match high.get_mut(&key) {
                    Some(high_value) => {
                        if matches!(high_value, Value::Mapping(_))
                            && matches!(low_value, Value::Mapping(_))
                        {
                            let taken = std::mem::take(high_value);
                            *high_value = merge(low_value, taken);
                        }
                    }
                    None => {
                        high.insert(key, low_value);
                    }
                }
            }
            Value::Mapping(high)
        }
        (_, high) => high,
    }
}

/// Sets `path` in `root` to `value`, creating mappings on the way. Fails
/// (returning the prefix that is in the way and what it holds) when a part
/// of the path already holds something other than a mapping or null.
pub(crate) fn set_path(
    root: &mut Value,
    path: &[String],
    value: Value,
) -> Result<(), (String, String)> {
    let mut node = root;
    for (i, part) in path.iter().enumerate() {
        if node.is_null() {
            *node = Value::Mapping(Mapping::new());
        }
        let Value::Mapping(map) = node else {
            return Err((path[..i].join("."), show(node)));
        };
        let key = Value::String(part.clone());
        if i + 1 == path.len() {
            map.insert(key, value);
            return Ok(());
        }
        if !map.contains_key(&key) {
            map.insert(key.clone(), Value::Null);
        }
        match map.get_mut(&key) {
            Some(next) => node = next,
            None => return Ok(()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(s: &str) -> Value {
        serde_yaml::from_str(s).expect("ok")
    }

    #[test]
    fn merge_keeps_high_and_goes_deep() {
        let low = yaml("a: 1\nb: {x: 1, y: 2}\nc: [1]\nonly_low: z");
        let high = yaml("b: {y: 3, z: 4}\na: 2\nc: [2]");
        let want = yaml("b: {y: 3, z: 4, x: 1}\na: 2\nc: [2]\nonly_low: z");
        assert_eq!(merge(low, high), want);
    }

    #[test]
    fn set_path_creates_and_refuses() {
        let mut root = yaml("http: {pool: 3}");
        set_path(&mut root, &["a".into(), "b".into()], Value::from(1)).expect("ok");
        assert_eq!(root["a"]["b"], Value::from(1));
        let err = set_path(
            &mut root,
            &["http".into(), "pool".into(), "debug".into()],
            Value::from(true),
        )
        .expect_err("an error");
        assert_eq!(err, ("http.pool".to_string(), "3".to_string()));
    }

    #[test]
    fn show_values() {
        assert_eq!(show(&yaml("many")), "\"many\"");
        assert_eq!(show(&yaml("-1")), "-1");
        assert_eq!(show(&yaml("1.5")), "1.5");
        assert_eq!(show(&yaml("[a, 1]")), "[\"a\",1]");
    }
}
