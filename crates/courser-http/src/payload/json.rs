//! JSON the way Go's `encoding/json` writes it, and the JSON contexts
//! (spec 3.3 and 3.6).

use super::headers::{sorted_groups, sorted_last};
use super::{HeaderList, PayloadError, RequestMeta, ResponseContext};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::fmt;

/// Writes `v` as Go's `json.Marshal` would write the same data to `out`.
///
/// Object keys are sorted (Go sorts map keys), and strings are escaped like
/// Go: `<`, `>` and `&` as `\u003c`, `\u003e`, `\u0026`, U+2028 and U+2029 as
/// `\u2028`/`\u2029`, control characters as `\n`, `\r`, `\t`, `\b`, `\f` or
/// `\u00XX`; `/` is not escaped.
///
/// One exception to sorting: an object whose keys are exactly `name`, `mime`,
/// `size`, `error` and `tmpName` (strings and numbers) is an upload leaf, a Go
/// struct in RoadRunner, and is written in that field order (spec 3.5). No
/// data-tree object can look like that: data-tree leaves are strings.
pub fn to_go_json(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => out.extend_from_slice(n.to_string().as_bytes()),
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                to_go_json(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            if let Some(leaf) = upload_leaf(map) {
                write_object(out, leaf.iter().map(|(k, v)| (*k, *v)));
            } else if map.keys().zip(map.keys().skip(1)).all(|(a, b)| a < b) {
                write_object(out, map.iter().map(|(k, v)| (k.as_str(), v)));
            } else {
                // Only with serde_json's `preserve_order` feature.
                let mut entries: Vec<(&str, &Value)> =
                    map.iter().map(|(k, v)| (k.as_str(), v)).collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                write_object(out, entries.into_iter());
            }
        }
    }
}

/// The key order of RoadRunner's `FileUpload` struct.
const LEAF_KEYS: [&str; 5] = ["name", "mime", "size", "error", "tmpName"];

fn upload_leaf(map: &Map<String, Value>) -> Option<[(&'static str, &Value); 5]> {
    if map.len() != 5 {
        return None;
    }
    let get = |i: usize| map.get(LEAF_KEYS[i]).map(|v| (LEAF_KEYS[i], v));
    let leaf = [get(0)?, get(1)?, get(2)?, get(3)?, get(4)?];
    let shape_ok = leaf[0].1.is_string()
        && leaf[1].1.is_string()
        && leaf[2].1.is_number()
        && leaf[3].1.is_number()
        && leaf[4].1.is_string();
    shape_ok.then_some(leaf)
}

fn write_object<'a>(out: &mut Vec<u8>, entries: impl Iterator<Item = (&'a str, &'a Value)>) {
    out.push(b'{');
    for (i, (k, v)) in entries.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, k);
        out.push(b':');
        to_go_json(v, out);
    }
    out.push(b'}');
}

/// Writes a JSON string with Go's HTML-safe escaping.
pub(super) fn write_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let escape: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            0x08 => Some(b"\\b"),
            0x0c => Some(b"\\f"),
            b'<' | b'>' | b'&' | 0x00..=0x1f => Some(b""),
            // U+2028 and U+2029 are E2 80 A8 and E2 80 A9.
            0xe2 if bytes.get(i + 1) == Some(&0x80)
                && matches!(bytes.get(i + 2), Some(0xa8 | 0xa9)) =>
            {
                Some(b"")
            }
            _ => None,
        };
        let Some(escape) = escape else {
            i += 1;
            continue;
        };
        out.extend_from_slice(&bytes[start..i]);
        if !escape.is_empty() {
            out.extend_from_slice(escape);
            i += 1;
        } else if b == 0xe2 {
            out.extend_from_slice(if bytes[i + 2] == 0xa8 {
                b"\\u2028"
            } else {
                b"\\u2029"
            });
            i += 3;
        } else {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
            i += 1;
        }
        start = i;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Spec 3.3: RoadRunner's JSON request context, keys in its struct order.
pub(super) fn encode_request(meta: &RequestMeta, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"remoteAddr\":");
    write_str(out, &meta.remote_addr);
    out.extend_from_slice(b",\"protocol\":");
    write_str(out, meta.protocol);
    out.extend_from_slice(b",\"method\":");
    write_str(out, &meta.method);
    out.extend_from_slice(b",\"uri\":");
    write_str(out, &meta.uri);
    out.extend_from_slice(b",\"headers\":");
    write_groups(out, &meta.headers, false);
    out.extend_from_slice(b",\"cookies\":{");
    for (i, (name, value)) in sorted_last(&meta.cookies).into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, name);
        out.push(b':');
        write_str(out, value);
    }
    out.extend_from_slice(b"},\"rawQuery\":");
    write_str(out, &meta.raw_query);
    out.extend_from_slice(if meta.parsed {
        b",\"parsed\":true"
    } else {
        b",\"parsed\":false"
    });
    out.extend_from_slice(b",\"uploads\":");
    match &meta.uploads {
        Some(tree) => to_go_json(tree, out),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"attributes\":");
    if meta.attributes.is_empty() {
        out.extend_from_slice(b"null");
    } else {
        write_groups(out, &meta.attributes, true);
    }
    out.push(b'}');
}

/// `{"Name":["v1","v2"]}`, sorted. With `scalar_single`, a name with exactly
/// one value is written as a plain string: RoadRunner's JSON attributes are
/// `map[string]any`, and PHP hands each value to `withAttribute` as is.
fn write_groups(out: &mut Vec<u8>, pairs: &[(String, Vec<String>)], scalar_single: bool) {
    out.push(b'{');
    for (i, group) in sorted_groups(pairs).iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, group.name);
        out.push(b':');
        let mut values = group.values();
        match (scalar_single, values.next(), values.next()) {
            (true, Some(only), None) => write_str(out, only),
            _ => {
                out.push(b'[');
                for (j, v) in group.values().enumerate() {
                    if j > 0 {
                        out.push(b',');
                    }
                    write_str(out, v);
                }
                out.push(b']');
            }
        }
    }
    out.push(b'}');
}

/// `{"status":N,"headers":{…}}` as PHP writes it (without PHP's `\/`).
pub(super) fn encode_response(resp: &ResponseContext, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"status\":");
    out.extend_from_slice(resp.status.to_string().as_bytes());
    out.extend_from_slice(b",\"headers\":{");
    for (i, (name, values)) in resp.headers.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, name);
        out.extend_from_slice(b":[");
        for (j, v) in values.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            write_str(out, v);
        }
        out.push(b']');
    }
    out.extend_from_slice(b"}}");
}

fn request_field(field: &'static str, problem: impl Into<String>) -> PayloadError {
    PayloadError::Field {
        what: "request",
        field,
        problem: problem.into(),
    }
}

/// Reads a spec 3.3 context back into a [`RequestMeta`] (tests and tools).
pub(super) fn decode_request(context: &[u8]) -> Result<RequestMeta, PayloadError> {
    let v: Value = serde_json::from_slice(context).map_err(|source| PayloadError::Json {
        what: "request",
        source,
    })?;
    let Value::Object(mut obj) = v else {
        return Err(request_field("(root)", "not an object"));
    };
    let mut string = |field: &'static str| match obj.remove(field) {
        Some(Value::String(s)) => Ok(s),
        None | Some(Value::Null) => Ok(String::new()),
        Some(other) => Err(request_field(field, format!("not a string: {other}"))),
    };
    let remote_addr = string("remoteAddr")?;
    let protocol = super::proto::protocol(&string("protocol")?)?;
    let method = string("method")?;
    let uri = string("uri")?;
    let raw_query = string("rawQuery")?;
    let headers = multi_map("headers", obj.remove("headers"))?;
    let attributes = multi_map("attributes", obj.remove("attributes"))?;
    let cookies = match obj.remove("cookies") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(m)) => m
            .into_iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k, s)),
                other => Err(request_field("cookies", format!("{k} is {other}"))),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(request_field("cookies", format!("not an object: {other}"))),
    };
    let parsed = match obj.remove("parsed") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => b,
        Some(other) => return Err(request_field("parsed", format!("not a bool: {other}"))),
    };
    let uploads = match obj.remove("uploads") {
        None | Some(Value::Null) => None,
        Some(tree) => Some(tree),
    };
    Ok(RequestMeta {
        remote_addr,
        protocol,
        method,
        uri,
        headers,
        cookies,
        raw_query,
        parsed,
        uploads,
        attributes,
    })
}

/// An object of string arrays (or single strings), or null.
fn multi_map(
    field: &'static str,
    v: Option<Value>,
) -> Result<Vec<(String, Vec<String>)>, PayloadError> {
    let m = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Object(m)) => m,
        Some(other) => return Err(request_field(field, format!("not an object: {other}"))),
    };
    m.into_iter()
        .map(|(k, v)| {
            let values = match v {
                Value::String(s) => vec![s],
                Value::Array(items) => items
                    .into_iter()
                    .map(|x| match x {
                        Value::String(s) => Ok(s),
                        other => Err(request_field(field, format!("{k} holds {other}"))),
                    })
                    .collect::<Result<_, _>>()?,
                other => return Err(request_field(field, format!("{k} is {other}"))),
            };
            Ok((k, values))
        })
        .collect()
}

/// The JSON response context; unknown keys are ignored.
#[derive(Deserialize)]
struct JsonResponse {
    status: Option<i64>,
    #[serde(default)]
    headers: JsonHeaders,
}

/// Headers as PHP sends them: an object of name → values, or `[]` for none.
#[derive(Default)]
struct JsonHeaders(Vec<(String, Vec<String>)>);

impl<'de> Deserialize<'de> for JsonHeaders {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = JsonHeaders;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of header name to values")
            }
            fn visit_unit<E: de::Error>(self) -> Result<JsonHeaders, E> {
                Ok(JsonHeaders::default())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<JsonHeaders, A::Error> {
                // PHP encodes an empty array as `[]`; a non-empty list has no names.
                match seq.next_element::<de::IgnoredAny>()? {
                    None => Ok(JsonHeaders::default()),
                    Some(_) => Err(de::Error::custom(
                        "headers must be an object of name to values, not a list",
                    )),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JsonHeaders, A::Error> {
                let mut out = Vec::new();
                while let Some((name, values)) = map.next_entry::<String, HeaderValues>()? {
                    out.push((name, values.0));
                }
                Ok(JsonHeaders(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// One header's values: a list, or a bare string as a single value. Numbers
/// become their decimal text (PHP may pass ints through).
struct HeaderValues(Vec<String>);

impl<'de> Deserialize<'de> for HeaderValues {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = HeaderValues;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a header value or a list of header values")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<HeaderValues, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = seq.next_element::<OneValue>()? {
                    out.push(v.0);
                }
                Ok(HeaderValues(out))
            }
            fn visit_unit<E: de::Error>(self) -> Result<HeaderValues, E> {
                Ok(HeaderValues(Vec::new()))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<HeaderValues, E> {
                Ok(HeaderValues(vec![s.to_string()]))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<HeaderValues, E> {
                Ok(HeaderValues(vec![s]))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<HeaderValues, E> {
                Ok(HeaderValues(vec![n.to_string()]))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<HeaderValues, E> {
                Ok(HeaderValues(vec![n.to_string()]))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<HeaderValues, E> {
                Ok(HeaderValues(vec![n.to_string()]))
            }
        }
        d.deserialize_any(V)
    }
}

struct OneValue(String);

impl<'de> Deserialize<'de> for OneValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = OneValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a header value (a string)")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<OneValue, E> {
                Ok(OneValue(s.to_string()))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<OneValue, E> {
                Ok(OneValue(s))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<OneValue, E> {
                Ok(OneValue(n.to_string()))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<OneValue, E> {
                Ok(OneValue(n.to_string()))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<OneValue, E> {
                Ok(OneValue(n.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// Spec 3.6, JSON form: status and headers (not yet range-checked).
pub(super) fn decode_response(context: &[u8]) -> Result<(i64, HeaderList), PayloadError> {
    let r: JsonResponse = serde_json::from_slice(context).map_err(|source| PayloadError::Json {
        what: "response",
        source,
    })?;
    let status = r.status.ok_or_else(|| PayloadError::Field {
        what: "response",
        field: "status",
        problem: "missing; the worker must send a status".into(),
    })?;
    Ok((status, r.headers.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_string_escaping() {
        for (input, want) in [
            ("plain", r#""plain""#),
            ("a<b>&c", r#""a\u003cb\u003e\u0026c""#),
            ("q\"\\/", r#""q\"\\/""#),
            ("\n\r\t\u{8}\u{c}\u{1}\u{1f}", r#""\n\r\t\b\f\u0001\u001f""#),
            (
                "\u{7f}é\u{2028}\u{2029}\u{2027}",
                "\"\u{7f}é\\u2028\\u2029\u{2027}\"",
            ),
        ] {
            let mut out = Vec::new();
            write_str(&mut out, input);
            assert_eq!(String::from_utf8_lossy(&out), want, "{input:?}");
        }
    }

    #[test]
    fn sorted_objects_and_leaves() {
        let v: Value = serde_json::from_str(
            r#"{"b":[1,"x"],"a":{"z":null,"y":true},"f":{"tmpName":"/t","error":0,"size":3,"mime":"m","name":"n"}}"#,
        )
        .expect("json");
        let mut out = Vec::new();
        to_go_json(&v, &mut out);
        assert_eq!(
            String::from_utf8_lossy(&out),
            r#"{"a":{"y":true,"z":null},"b":[1,"x"],"f":{"name":"n","mime":"m","size":3,"error":0,"tmpName":"/t"}}"#
        );
    }
}
