//! Header names, cookies, and the sorted views the encoders write from.

use std::collections::BTreeMap;

/// Go's `textproto.CanonicalMIMEHeaderKey`: `content-type` becomes
/// `Content-Type`.
///
/// The first letter and every letter after a `-` are upper-cased, the others
/// lower-cased (ASCII only). Like Go, a name holding a byte that is not allowed
/// in a header name (a space, say) is returned unchanged.
pub fn canonical_header_name(name: &str) -> String {
    if !name.bytes().all(is_token_byte) {
        return name.to_string();
    }
    let mut out = String::with_capacity(name.len());
    let mut upper = true;
    for c in name.chars() {
        out.push(if upper {
            c.to_ascii_uppercase()
        } else {
            c.to_ascii_lowercase()
        });
        upper = c == '-';
    }
    out
}

/// RFC 7230 `tchar`: the bytes allowed in a header or parameter name.
pub(super) fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Cookies from the `Cookie` header lines, with Go's and RoadRunner's rules.
///
/// Each line is split on `;` and trimmed; a part without `=` is a cookie with
/// an empty value. Names must be tokens; values may be wrapped in double quotes
/// and otherwise hold only printable ASCII other than `"`, `;` and `\`. Invalid
/// cookies are skipped, as Go's `Request.Cookies` does. Values are then
/// URL-unescaped like `url.QueryUnescape` (`+` becomes a space) and a cookie
/// whose value fails to unescape is dropped (RoadRunner). Bytes that do not
/// form UTF-8 after unescaping become U+FFFD.
///
/// The result is in first-seen order; when a name repeats, its entry keeps the
/// position of the first occurrence and takes the value of the last one (the
/// last duplicate wins, as it does in RoadRunner's map).
pub fn cookies_from_header(values: &[&str]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for line in values {
        for part in line.split(';') {
            let part = trim_ascii(part);
            if part.is_empty() {
                continue;
            }
            let (name, raw) = part.split_once('=').unwrap_or((part, ""));
            let name = trim_ascii(name);
            if name.is_empty() || !name.bytes().all(is_token_byte) {
                continue;
            }
            let raw = match raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
                Some(inner) if raw.len() > 1 => inner,
                _ => raw,
            };
            if !raw
                .bytes()
                .all(|b| (0x20..0x7f).contains(&b) && !b"\";\\".contains(&b))
            {
                continue;
            }
            let Some(value) = query_unescape(raw) else {
                continue;
            };
            match seen.get(name) {
                Some(&i) => out[i].1 = value,
                None => {
                    seen.insert(name.to_string(), out.len());
                    out.push((name.to_string(), value));
                }
            }
        }
    }
    out
}

/// Go's `textproto.TrimString`: trims ASCII spaces, tabs, CR and LF.
fn trim_ascii(s: &str) -> &str {
    s.trim_matches(|c| matches!(c, ' ' | '\t' | '\r' | '\n'))
}

/// Go's `url.QueryUnescape`: `%XX` decoded, `+` as space; `None` on a bad escape.
fn query_unescape(s: &str) -> Option<String> {
    if !s.bytes().any(|b| b == b'%' || b == b'+') {
        return Some(s.to_string());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hi = hex_value(*b.get(i + 1)?)?;
                let lo = hex_value(*b.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Some(match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// A name with all its values, possibly gathered from several entries.
pub(super) struct Group<'a> {
    pub name: &'a str,
    parts: Vec<&'a [String]>,
}

impl<'a> Group<'a> {
    /// All values in order.
    pub fn values(&self) -> impl Iterator<Item = &'a str> + Clone + '_ {
        self.parts.iter().flat_map(|p| p.iter().map(String::as_str))
    }
}

/// Multi-valued pairs sorted by name (byte order, like Go's JSON encoder), with
/// repeated names merged into one group in their original order.
pub(super) fn sorted_groups(pairs: &[(String, Vec<String>)]) -> Vec<Group<'_>> {
    let mut refs: Vec<(&str, &[String])> = pairs
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_slice()))
        .collect();
    refs.sort_by(|a, b| a.0.cmp(b.0));
    let mut out: Vec<Group<'_>> = Vec::with_capacity(refs.len());
    for (name, values) in refs {
        match out.last_mut() {
            Some(g) if g.name == name => g.parts.push(values),
            _ => out.push(Group {
                name,
                parts: vec![values],
            }),
        }
    }
    out
}

/// Single-valued pairs sorted by name; when a name repeats the last value wins.
pub(super) fn sorted_last(pairs: &[(String, String)]) -> Vec<(&str, &str)> {
    let mut refs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    refs.sort_by(|a, b| a.0.cmp(b.0));
    let mut out: Vec<(&str, &str)> = Vec::with_capacity(refs.len());
    for (name, value) in refs {
        match out.last_mut() {
            Some(last) if last.0 == name => last.1 = value,
            _ => out.push((name, value)),
        }
    }
    out
}

/// Map semantics for decoded maps: a repeated name replaces the earlier value
/// but keeps the earlier position.
pub(super) fn dedup_last(pairs: Vec<(String, Vec<String>)>) -> Vec<(String, Vec<String>)> {
    if pairs.len() < 2 {
        return pairs;
    }
    let mut out: Vec<(String, Vec<String>)> = Vec::with_capacity(pairs.len());
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (name, values) in pairs {
        match seen.get(&name) {
            Some(&i) => out[i].1 = values,
            None => {
                seen.insert(name.clone(), out.len());
                out.push((name, values));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_names() {
        for (input, want) in [
            ("content-type", "Content-Type"),
            ("x-multi-in", "X-Multi-In"),
            ("ACCEPT", "Accept"),
            ("www-authenticate", "Www-Authenticate"),
            ("x--a", "X--A"),
            ("-x", "-X"),
            ("bad name", "bad name"),
            ("", ""),
        ] {
            assert_eq!(canonical_header_name(input), want, "{input}");
        }
    }

    #[test]
    fn cookies() {
        let check = |lines: &[&str], want: &[(&str, &str)]| {
            let got = cookies_from_header(lines);
            let got: Vec<(&str, &str)> =
                got.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            assert_eq!(got, want, "{lines:?}");
        };
        check(
            &["sid=abc123; theme=dark%20mode"],
            &[("sid", "abc123"), ("theme", "dark mode")],
        );
        check(&["a=1+2; b=%zz; c=\"q\""], &[("a", "1 2"), ("c", "q")]);
        check(&["a=1", "b=2; a=3"], &[("a", "3"), ("b", "2")]);
        check(&["flag; ;x=; bad name=1"], &[("flag", ""), ("x", "")]);
        check(&["a=x\\y; b=\"; c=ok; d=\"\""], &[("c", "ok"), ("d", "")]);
        check(&["  a = 1  "], &[("a", " 1")]);
        check(&["a=%FF"], &[("a", "\u{fffd}")]);
    }
}
