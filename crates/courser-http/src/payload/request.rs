//! The request context of one HTTP request: what PHP learns about it (spec
//! 3.2 and 3.3), taken from the parsed request head.
//!
//! A pure function of the head, the peer and the transport, so it can be
//! tested and fuzzed without a server (`fuzz/fuzz_targets/request_context.rs`).

use super::{canonical_header_name, cookies_from_header, RequestMeta};

/// What the worker learns about a request (spec 3.2/3.3): method, the
/// absolute URI (`http://` or `https://` by `tls`, the host from the URI's
/// authority or the `Host` header), headers with Go's canonical names (`Host`
/// and `Transfer-Encoding` left out, values that are not visible ASCII
/// dropped), cookies and the raw query; CR and LF never reach the URI or the
/// query. The body fields (`parsed`, `uploads`) are left for the caller.
pub fn request_meta(
    parts: &http::request::Parts,
    peer: std::net::SocketAddr,
    tls: bool,
) -> RequestMeta {
    let protocol = match parts.version {
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        _ => "HTTP/1.1",
    };
    let mut headers: Vec<(String, Vec<String>)> = Vec::with_capacity(parts.headers.keys_len());
    let mut cookie_values: Vec<&str> = Vec::new();
    for name in parts.headers.keys() {
        if name == http::header::HOST || name == http::header::TRANSFER_ENCODING {
            continue;
        }
        let values: Vec<String> = parts
            .headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_string)
            .collect();
        if name == http::header::COOKIE {
            cookie_values.extend(
                parts
                    .headers
                    .get_all(name)
                    .iter()
                    .filter_map(|v| v.to_str().ok()),
            );
        }
        headers.push((canonical_header_name(name.as_str()), values));
    }
    let host = parts
        .uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| {
            parts
                .headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
        })
        .unwrap_or("");
    let path_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut uri = String::with_capacity(host.len() + path_query.len() + 8);
    uri.push_str(if tls { "https://" } else { "http://" });
    uri.push_str(host);
    uri.push_str(path_query);
    uri.retain(|c| c != '\r' && c != '\n');
    let mut raw_query = parts.uri.query().unwrap_or("").to_string();
    raw_query.retain(|c| c != '\r' && c != '\n');
    RequestMeta {
        remote_addr: peer.ip().to_string(),
        protocol,
        method: parts.method.as_str().to_string(),
        uri,
        headers,
        cookies: cookies_from_header(&cookie_values),
        raw_query,
        parsed: false,
        uploads: None,
        attributes: Vec::new(),
    }
}
