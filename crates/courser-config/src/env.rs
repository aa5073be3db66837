//! `${VAR}` expansion and dotenv files.
//!
//! Expansion rules (the same in config values and in dotenv values):
//! * `${NAME}` and `$NAME` give the variable's value, or nothing when it is unset.
//! * `${NAME:-default}` gives `default` when the variable is unset or empty;
//!   the default may itself contain `${...}`.
//! * `$$` gives a literal `$`. A `$` not followed by a name or `{` stays as it is,
//!   and so does an unterminated `${` or a `${...}` whose content is not a name.
//!
//! Names are `[A-Za-z_][A-Za-z0-9_]*`.

use std::collections::HashMap;
use std::path::Path;

use serde_yaml::Value;

use crate::error::ConfigError;

/// Expands `${VAR}`, `$VAR` and `${VAR:-default}` in `input` using `lookup`.
pub fn expand_str<F>(input: &str, lookup: &F) -> String
where
    F: Fn(&str) -> Option<String>,
{
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
            continue;
        }
        if let Some(inner_and_rest) = after.strip_prefix('{') {
            if let Some(end) = closing_brace(inner_and_rest) {
                let inner = &inner_and_rest[..end];
                let (name, default) = match inner.find(":-") {
                    Some(i) => (&inner[..i], Some(&inner[i + 2..])),
                    None => (inner, None),
                };
                if is_name(name) {
                    let value = lookup(name).unwrap_or_default();
                    match default {
                        Some(d) if value.is_empty() => out.push_str(&expand_str(d, lookup)),
                        _ => out.push_str(&value),
                    }
                } else {
                    out.push_str("${");
                    out.push_str(inner);
                    out.push('}');
                }
                rest = &inner_and_rest[end + 1..];
                continue;
            }
            out.push('$');
            rest = after;
            continue;
        }
        let len = name_len(after);
        if len > 0 {
            out.push_str(&lookup(&after[..len]).unwrap_or_default());
            rest = &after[len..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Expands every string value of a YAML tree in place. Mapping keys are left alone.
pub(crate) fn expand_tree<F>(value: &mut Value, lookup: &F)
where
    F: Fn(&str) -> Option<String>,
{
    match value {
        Value::String(s) => {
            if s.contains('$') {
                *s = expand_str(s, lookup);
            }
        }
        Value::Sequence(items) => items.iter_mut().for_each(|v| expand_tree(v, lookup)),
        Value::Mapping(map) => map.values_mut().for_each(|v| expand_tree(v, lookup)),
        Value::Tagged(tagged) => expand_tree(&mut tagged.value, lookup),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Index of the `}` that closes a `${`, allowing nested `${...}` in defaults.
fn closing_brace(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 2;
                continue;
            }
            b'}' => {
                if depth == 0 {
                    return Some(i);
                }
                depth -= 1;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

fn name_len(s: &str) -> usize {
    let bytes = s.as_bytes();
    match bytes.first() {
        Some(b) if b.is_ascii_alphabetic() || *b == b'_' => {}
        _ => return 0,
    }
    bytes
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
        .count()
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && name_len(s) == s.len()
}

/// Parses a dotenv file.
///
/// Accepted lines: `KEY=VALUE`, `export KEY=VALUE`, blank lines and `#`
/// comments. A value may be unquoted (a ` #` starts a comment; surrounding
/// spaces are trimmed), single-quoted (taken literally) or double-quoted
/// (`\n`, `\r`, `\t`, `\"`, `\\` and `\$` escapes). Unquoted and double-quoted
/// values are expanded like config values, looking first at `base_env` and
/// then at the lines above.
///
/// Returns the entries in file order; a repeated key keeps its first
/// position and takes the last value.
pub fn parse_dotenv(
    text: &str,
    path: &Path,
    base_env: &HashMap<String, String>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut entries: Vec<(String, String)> = Vec::new();
    for (index, raw_line) in text.lines().enumerate() {
        let line_no = index + 1;
        let err = |reason: String| ConfigError::Dotenv {
            path: path.to_path_buf(),
            line: line_no,
            reason,
        };
        let line = raw_line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = match line.strip_prefix("export") {
            Some(rest) if rest.starts_with([' ', '\t']) => rest.trim_start(),
            _ => line,
        };
        let Some((key, value)) = line.split_once('=') else {
            return Err(err(format!("{line:?} has no '='")));
        };
        let key = key.trim();
        if !is_dotenv_key(key) {
            return Err(err(format!(
                "{key:?} is not a variable name (letters, digits, '_' and '.', not starting with a digit)"
            )));
        }
        let lookup = |name: &str| {
            base_env.get(name).cloned().or_else(|| {
                entries
                    .iter()
                    .rev()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            })
        };
        let value = parse_dotenv_value(value.trim_start(), &lookup).map_err(err)?;
        match entries.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value,
            None => entries.push((key.to_string(), value)),
        }
    }
    Ok(entries)
}

fn is_dotenv_key(key: &str) -> bool {
    let mut chars = key.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

fn parse_dotenv_value<F>(value: &str, lookup: &F) -> Result<String, String>
where
    F: Fn(&str) -> Option<String>,
{
    if let Some(body) = value.strip_prefix('\'') {
        let Some(end) = body.find('\'') else {
            return Err("the single-quoted value has no closing quote".to_string());
        };
        check_trailing(&body[end + 1..])?;
        return Ok(body[..end].to_string());
    }
    if let Some(body) = value.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = body.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    check_trailing(&body[i + 1..])?;
                    return Ok(expand_str(&out, lookup));
                }
                '\\' => match chars.next() {
                    Some((_, 'n')) => out.push('\n'),
                    Some((_, 'r')) => out.push('\r'),
                    Some((_, 't')) => out.push('\t'),
                    Some((_, '"')) => out.push('"'),
                    Some((_, '\\')) => out.push('\\'),
                    // Kept as `$$`, which expansion turns into one literal `$`.
                    Some((_, '$')) => out.push_str("$$"),
                    Some((_, other)) => {
                        out.push('\\');
                        out.push(other);
                    }
                    None => out.push('\\'),
                },
                _ => out.push(c),
            }
        }
        return Err(
            "the double-quoted value has no closing quote (values cannot span lines)".to_string(),
        );
    }
    let unquoted = match value.find(" #").or_else(|| value.find("\t#")) {
        Some(i) => &value[..i],
        None => value,
    };
    Ok(expand_str(unquoted.trim_end(), lookup))
}

fn check_trailing(rest: &str) -> Result<(), String> {
    let rest = rest.trim_start();
    if rest.is_empty() || rest.starts_with('#') {
        Ok(())
    } else {
        Err(format!("unexpected text {rest:?} after the closing quote"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn expansion_cases() {
        let vars = env(&[("A", "alpha"), ("EMPTY", ""), ("N", "4")]);
        let lookup = |k: &str| vars.get(k).cloned();
        let cases: &[(&str, &str)] = &[
            ("plain", "plain"),
            ("${A}", "alpha"),
            ("$A", "alpha"),
            ("$A-x", "alpha-x"),
            ("x${A}y", "xalphay"),
            ("${MISSING}", ""),
            ("$MISSING/x", "/x"),
            ("${MISSING:-def}", "def"),
            ("${EMPTY:-def}", "def"),
            ("${A:-def}", "alpha"),
            ("${MISSING:-${A}}", "alpha"),
            ("${MISSING:-}", ""),
            ("$$A", "$A"),
            ("cost $5", "cost $5"),
            ("end$", "end$"),
            ("${unterminated", "${unterminated"),
            ("${not a name}", "${not a name}"),
            ("tcp://127.0.0.1:${N}000", "tcp://127.0.0.1:4000"),
        ];
        for (input, expected) in cases {
            assert_eq!(expand_str(input, &lookup), *expected, "input {input:?}");
        }
    }

    #[test]
    fn dotenv_cases() {
        let text = "\
# comment
A=1

export B = two words  # trailing comment
C='single $A # kept'
D=\"double ${A}\\n\\\"q\\\" \\$A\"
E=${A}-${HOME:-nohome}
A=3
F=
G=x#not-a-comment
";
        let base = env(&[("HOME", "/home/me")]);
        let got = parse_dotenv(text, Path::new(".env"), &base).expect("ok");
        let want: Vec<(String, String)> = [
            ("A", "3"),
            ("B", "two words"),
            ("C", "single $A # kept"),
            ("D", "double 1\n\"q\" $A"),
            ("E", "1-/home/me"),
            ("F", ""),
            ("G", "x#not-a-comment"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn dotenv_errors_name_the_line() {
        let cases: &[(&str, usize, &str)] = &[
            ("A=1\nnoequals\n", 2, "has no '='"),
            ("1A=x", 1, "not a variable name"),
            ("A=\"open", 1, "no closing quote"),
            ("A='open", 1, "no closing quote"),
            ("A='x' y", 1, "after the closing quote"),
        ];
        for (text, line, needle) in cases {
            let err =
                parse_dotenv(text, Path::new("app.env"), &HashMap::new()).expect_err("an error");
            let msg = err.to_string();
            assert!(msg.contains(&format!("app.env:{line}:")), "{msg}");
            assert!(msg.contains(needle), "{msg}");
        }
    }
}
