//! Builds an HTTP request from arbitrary bytes, turns it into the request
//! context PHP receives (`courser_http::payload::request_meta`), encodes it in
//! both codecs and checks what a worker would see:
//! - the JSON context is valid JSON and decodes back to the same request;
//! - the protobuf context decodes back to the same request;
//! - the URI and raw query hold no CR or LF; Host and Transfer-Encoding are
//!   never forwarded as headers;
//! - an urlencoded body parses to a data tree whose Go-style JSON is valid.
//!
//! Input layout: 3 control bytes (TLS, IPv4/IPv6, HTTP version, peer), then
//! `method\nuri\nname:value\n…\n\nbody`. The method, URI and headers go
//! through the `http` crate's own constructors, as hyper's do, so everything
//! an `http::Request` can hold is covered (HTTP/2 allows bytes HTTP/1 does not).
#![no_main]

use courser_http::payload::{self, Codec, RequestMeta};
use http::{HeaderName, HeaderValue, Method, Request, Uri, Version};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The parts of a context that survive encoding, in map form.
#[derive(Debug, PartialEq)]
struct Normal {
    remote_addr: String,
    protocol: &'static str,
    method: String,
    uri: String,
    headers: BTreeMap<String, Vec<String>>,
    cookies: BTreeMap<String, String>,
    raw_query: String,
    parsed: bool,
}

fn normal(m: &RequestMeta) -> Normal {
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (n, v) in &m.headers {
        headers
            .entry(n.clone())
            .or_default()
            .extend(v.iter().cloned());
    }
    Normal {
        remote_addr: m.remote_addr.clone(),
        protocol: m.protocol,
        method: m.method.clone(),
        uri: m.uri.clone(),
        headers,
        cookies: m.cookies.iter().cloned().collect(),
        raw_query: m.raw_query.clone(),
        parsed: m.parsed,
    }
}

fn build(data: &[u8]) -> Option<(http::request::Parts, SocketAddr, bool, &[u8])> {
    let (ctl, rest) = data.split_first_chunk::<3>()?;
    let tls = ctl[0] & 1 != 0;
    let ip = if ctl[0] & 2 != 0 {
        IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, u16::from(ctl[1]), 1))
    } else {
        IpAddr::V4(Ipv4Addr::new(10, 0, ctl[1], ctl[2]))
    };
    let version = match (ctl[0] >> 2) & 3 {
        0 => Version::HTTP_10,
        1 => Version::HTTP_2,
        _ => Version::HTTP_11,
    };
    let (head, body) = match rest.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&rest[..i], &rest[i + 2..]),
        None => (rest, &[][..]),
    };
    let mut lines = head.split(|&b| b == b'\n');
    let method = Method::from_bytes(lines.next()?).ok()?;
    let uri = Uri::try_from(lines.next()?).ok()?;
    let mut req = Request::builder().method(method).uri(uri).version(version);
    for line in lines {
        let colon = line.iter().position(|&b| b == b':')?;
        let name = HeaderName::from_bytes(&line[..colon]).ok()?;
        let value = HeaderValue::from_bytes(&line[colon + 1..]).ok()?;
        req = req.header(name, value);
    }
    let (parts, ()) = req.body(()).ok()?.into_parts();
    Some((parts, SocketAddr::new(ip, 40000), tls, body))
}

fuzz_target!(|data: &[u8]| {
    let Some((parts, peer, tls, body)) = build(data) else {
        return;
    };
    let mut meta = payload::request_meta(&parts, peer, tls);
    assert!(!meta.uri.contains(['\r', '\n']), "{:?}", meta.uri);
    assert!(
        !meta.raw_query.contains(['\r', '\n']),
        "{:?}",
        meta.raw_query
    );
    for (name, _) in &meta.headers {
        let lower = name.to_ascii_lowercase();
        assert!(lower != "host" && lower != "transfer-encoding", "{name}");
    }
    if let Ok(tree) = payload::parse_urlencoded(body) {
        let mut out = Vec::new();
        payload::to_go_json(&tree, &mut out);
        let back: serde_json::Value = serde_json::from_slice(&out).expect("form JSON is valid");
        assert!(back.is_object(), "a form tree is an object");
        meta.parsed = true;
    }
    let want = normal(&meta);
    for codec in [Codec::Json, Codec::Proto] {
        let mut ctx = Vec::new();
        payload::encode_context(&meta, codec, &mut ctx);
        if codec == Codec::Json {
            serde_json::from_slice::<serde_json::Value>(&ctx).expect("the JSON context is valid");
        }
        let back = payload::decode_request(payload::frame_flags(codec), &ctx)
            .unwrap_or_else(|e| panic!("{codec} context does not decode: {e}"));
        assert_eq!(normal(&back), want, "{codec} round trip");
    }
});
