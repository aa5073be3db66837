//! Request and response contexts (spec 3.3 and 3.6), JSON form.

use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;

/// Go's canonical header name: `content-type` becomes `Content-Type`.
pub fn canonical_header_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = true;
    for c in name.chars() {
        if upper {
            out.extend(c.to_uppercase());
        } else {
            out.extend(c.to_lowercase());
        }
        upper = c == '-';
    }
    out
}

fn unescape(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let h = b.get(i + 1..i + 3)?;
                let v = u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()?;
                out.push(v);
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
    String::from_utf8(out).ok()
}

#[derive(Serialize)]
struct JsonRequest<'a> {
    #[serde(rename = "remoteAddr")]
    remote_addr: String,
    protocol: &'static str,
    method: &'a str,
    uri: String,
    headers: BTreeMap<String, Vec<&'a str>>,
    cookies: BTreeMap<String, String>,
    #[serde(rename = "rawQuery")]
    raw_query: String,
    parsed: bool,
    uploads: Option<()>,
    attributes: Option<()>,
}

/// The JSON request context RoadRunner up to 2023.3 sends (spec 3.3).
pub fn request_context_json(parts: &http::request::Parts, peer: SocketAddr, tls: bool) -> Vec<u8> {
    let protocol = match parts.version {
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        _ => "HTTP/1.1",
    };
    let mut headers: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    let mut cookies = BTreeMap::new();
    for (name, value) in &parts.headers {
        if name == http::header::HOST || name == http::header::TRANSFER_ENCODING {
            continue;
        }
        let Ok(v) = value.to_str() else { continue };
        if name == http::header::COOKIE {
            for pair in v.split(';') {
                if let Some((k, val)) = pair.trim().split_once('=') {
                    if let Some(val) = unescape(val.trim_matches('"')) {
                        cookies.insert(k.trim().to_string(), val);
                    }
                }
            }
        }
        headers
            .entry(canonical_header_name(name.as_str()))
            .or_default()
            .push(v);
    }
    let host = parts
        .uri
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            parts
                .headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(String::from)
        })
        .unwrap_or_default();
    let path_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut uri = String::with_capacity(host.len() + path_query.len() + 8);
    let _ = write!(
        uri,
        "{}://{}{}",
        if tls { "https" } else { "http" },
        host,
        path_query
    );
    uri.retain(|c| c != '\r' && c != '\n');
    let mut raw_query = parts.uri.query().unwrap_or("").to_string();
    raw_query.retain(|c| c != '\r' && c != '\n');
    let ctx = JsonRequest {
        remote_addr: peer.ip().to_string(),
        protocol,
        method: parts.method.as_str(),
        uri,
        headers,
        cookies,
        raw_query,
        parsed: false,
        uploads: None,
        attributes: None,
    };
    serde_json::to_vec(&ctx).unwrap_or_default()
}

/// Status and headers from a worker's response context.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct ResponseContext {
    /// HTTP status.
    pub status: u16,
    /// Headers, each with one or more values.
    #[serde(default, deserialize_with = "headers_map")]
    pub headers: Vec<(String, Vec<String>)>,
}

fn headers_map<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<(String, Vec<String>)>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Headers {
        Map(serde_json::Map<String, serde_json::Value>),
        List(#[allow(dead_code)] Vec<serde::de::IgnoredAny>),
    }
    Ok(match Headers::deserialize(d)? {
        Headers::List(_) => Vec::new(), // PHP encodes an empty header set as []
        Headers::Map(m) => m
            .into_iter()
            .map(|(k, v)| {
                let vals = match v {
                    serde_json::Value::Array(a) => a
                        .into_iter()
                        .map(|x| match x {
                            serde_json::Value::String(s) => s,
                            other => other.to_string(),
                        })
                        .collect(),
                    serde_json::Value::String(s) => vec![s],
                    other => vec![other.to_string()],
                };
                (k, vals)
            })
            .collect(),
    })
}

use serde::Deserialize as _;

impl ResponseContext {
    /// Parses a response context in the codec the worker chose (JSON for now).
    pub fn parse(frame_flags: u8, ctx: &[u8]) -> Result<ResponseContext, String> {
        if frame_flags & courser_frame::flags::CODEC_PROTO != 0 {
            return Err(
                "protobuf response contexts are not supported yet; use the JSON codec".into(),
            );
        }
        if ctx.is_empty() {
            return Ok(ResponseContext {
                status: 200,
                headers: Vec::new(),
            });
        }
        serde_json::from_slice(ctx).map_err(|e| format!("{e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_names() {
        for (i, o) in [
            ("content-type", "Content-Type"),
            ("x-multi-in", "X-Multi-In"),
            ("accept", "Accept"),
            ("WWW-AUTHENTICATE", "Www-Authenticate"),
        ] {
            assert_eq!(canonical_header_name(i), o);
        }
    }

    #[test]
    fn response_context_json() {
        let c = ResponseContext::parse(0x08, br#"{"status":201,"headers":{"Set-Cookie":["a=1; Path=\/","b=2; HttpOnly"],"X-One":"v"}}"#).expect("parse");
        assert_eq!(c.status, 201);
        assert_eq!(
            c.headers[0],
            (
                "Set-Cookie".to_string(),
                vec!["a=1; Path=/".to_string(), "b=2; HttpOnly".to_string()]
            )
        );
        assert_eq!(c.headers[1].1, vec!["v".to_string()]);
        let empty = ResponseContext::parse(0, br#"{"status":204,"headers":[]}"#).expect("parse");
        assert!(empty.headers.is_empty());
        assert!(ResponseContext::parse(0, b"nope").is_err());
    }

    #[test]
    fn json_request_matches_the_vector_shape() {
        let req = http::Request::builder()
            .uri("http://localhost:8080/hello?name=World&arr%5B%5D=1&arr%5B%5D=2")
            .header("accept", "*/*")
            .header("cookie", "sid=abc123; theme=dark%20mode")
            .header("user-agent", "curl/8.0")
            .header("x-multi-in", "v1")
            .header("x-multi-in", "v2")
            .body(())
            .expect("request");
        let (parts, ()) = req.into_parts();
        let got = request_context_json(&parts, "127.0.0.1:5555".parse().expect("addr"), false);
        let expected = br#"{"remoteAddr":"127.0.0.1","protocol":"HTTP/1.1","method":"GET","uri":"http://localhost:8080/hello?name=World&arr%5B%5D=1&arr%5B%5D=2","headers":{"Accept":["*/*"],"Cookie":["sid=abc123; theme=dark%20mode"],"User-Agent":["curl/8.0"],"X-Multi-In":["v1","v2"]},"cookies":{"sid":"abc123","theme":"dark mode"},"rawQuery":"name=World&arr%5B%5D=1&arr%5B%5D=2","parsed":false,"uploads":null,"attributes":null}"#;
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(expected)
        );
    }
}
