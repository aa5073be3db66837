//! FastCGI front (`http.fcgi.address`): nginx's `fastcgi_pass` talks to Courser
//! as it would to php-fpm. Each FastCGI request becomes an HTTP request for the
//! same pipeline as the HTTP listener; the response goes back as CGI output.
//!
//! Supported: the responder role, `FCGI_KEEP_CONN` (requests one after another
//! on one connection), `FCGI_GET_VALUES`, request bodies streamed from `STDIN`
//! records, `FCGI_ABORT_REQUEST`. Multiplexed requests on one connection are
//! refused with `FCGI_CANT_MPX_CONN`, as php-fpm does.

use crate::handler::{self, State};
use crate::server::ConnInfo;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Record types.
pub(crate) mod rec {
    pub const BEGIN_REQUEST: u8 = 1;
    pub const ABORT_REQUEST: u8 = 2;
    pub const END_REQUEST: u8 = 3;
    pub const PARAMS: u8 = 4;
    pub const STDIN: u8 = 5;
    pub const STDOUT: u8 = 6;
    pub const GET_VALUES: u8 = 9;
    pub const GET_VALUES_RESULT: u8 = 10;
    pub const UNKNOWN_TYPE: u8 = 11;
}

/// Protocol status of END_REQUEST.
pub(crate) mod status {
    pub const REQUEST_COMPLETE: u8 = 0;
    pub const CANT_MPX_CONN: u8 = 1;
    pub const UNKNOWN_ROLE: u8 = 3;
}

/// The responder role.
pub(crate) const ROLE_RESPONDER: u16 = 1;
/// BEGIN_REQUEST flag: keep the connection open after the request.
pub(crate) const KEEP_CONN: u8 = 1;
/// Largest content of one record.
const MAX_CONTENT: usize = 65535;

/// One FastCGI record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) kind: u8,
    pub(crate) id: u16,
    pub(crate) content: Bytes,
}

/// Why bytes are not FastCGI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FcgiError {
    /// Wrong protocol version.
    #[error("FastCGI record with version {0}; only version 1 exists")]
    Version(u8),
    /// Malformed name-value pairs.
    #[error("malformed FastCGI name-value pairs")]
    Params,
    /// Params over the limit.
    #[error("FastCGI params larger than {0} bytes")]
    ParamsTooLarge(usize),
}

/// Decodes one record from the front of `buf` (sans-IO).
pub(crate) fn decode(buf: &mut BytesMut) -> Result<Option<Record>, FcgiError> {
    if buf.len() < 8 {
        return Ok(None);
    }
    if buf[0] != 1 {
        return Err(FcgiError::Version(buf[0]));
    }
    let kind = buf[1];
    let id = u16::from_be_bytes([buf[2], buf[3]]);
    let len = u16::from_be_bytes([buf[4], buf[5]]) as usize;
    let pad = buf[6] as usize;
    if buf.len() < 8 + len + pad {
        buf.reserve(8 + len + pad - buf.len());
        return Ok(None);
    }
    buf.advance(8);
    let content = buf.split_to(len).freeze();
    buf.advance(pad);
    Ok(Some(Record { kind, id, content }))
}

/// Appends records of `kind` carrying `data` (split at 64 KiB; an empty `data`
/// gives one empty record, which ends a stream).
pub(crate) fn encode(kind: u8, id: u16, mut data: &[u8], out: &mut BytesMut) {
    loop {
        let n = data.len().min(MAX_CONTENT);
        let pad = (8 - n % 8) % 8;
        out.reserve(8 + n + pad);
        out.put_u8(1);
        out.put_u8(kind);
        out.put_u16(id);
        out.put_u16(n as u16);
        out.put_u8(pad as u8);
        out.put_u8(0);
        out.put_slice(&data[..n]);
        out.put_bytes(0, pad);
        data = &data[n..];
        if data.is_empty() {
            break;
        }
    }
}

/// END_REQUEST with an application and protocol status.
pub(crate) fn end_request(id: u16, app_status: u32, protocol_status: u8, out: &mut BytesMut) {
    let mut body = [0u8; 8];
    body[..4].copy_from_slice(&app_status.to_be_bytes());
    body[4] = protocol_status;
    encode(rec::END_REQUEST, id, &body, out);
}

fn read_len(b: &mut &[u8]) -> Result<usize, FcgiError> {
    let first = *b.first().ok_or(FcgiError::Params)?;
    if first & 0x80 == 0 {
        b.advance(1);
        return Ok(first as usize);
    }
    if b.len() < 4 {
        return Err(FcgiError::Params);
    }
    let v = u32::from_be_bytes([b[0] & 0x7f, b[1], b[2], b[3]]) as usize;
    b.advance(4);
    Ok(v)
}

/// Parses name-value pairs (PARAMS or GET_VALUES content).
pub(crate) fn parse_pairs(mut b: &[u8]) -> Result<Vec<(String, String)>, FcgiError> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let nl = read_len(&mut b)?;
        let vl = read_len(&mut b)?;
        if b.len() < nl + vl {
            return Err(FcgiError::Params);
        }
        let name = String::from_utf8_lossy(&b[..nl]).into_owned();
        let value = String::from_utf8_lossy(&b[nl..nl + vl]).into_owned();
        b.advance(nl + vl);
        out.push((name, value));
    }
    Ok(out)
}

fn put_len(n: usize, out: &mut Vec<u8>) {
    if n < 128 {
        out.push(n as u8);
    } else {
        out.extend_from_slice(&((n as u32) | 0x8000_0000).to_be_bytes());
    }
}

/// Encodes name-value pairs.
pub(crate) fn encode_pairs(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, v) in pairs {
        put_len(n.len(), &mut out);
        put_len(v.len(), &mut out);
        out.extend_from_slice(n.as_bytes());
        out.extend_from_slice(v.as_bytes());
    }
    out
}

/// Largest PARAMS block accepted (nginx sends a few KB).
const MAX_PARAMS: usize = 1024 * 1024;

struct Pending {
    id: u16,
    keep: bool,
    params: BytesMut,
    params_done: bool,
    body: BytesMut,
    too_large: bool,
}

async fn fill<S: AsyncRead + Unpin>(io: &mut S, buf: &mut BytesMut) -> std::io::Result<bool> {
    if buf.capacity() - buf.len() < 8192 {
        buf.reserve(64 * 1024);
    }
    Ok(io.read_buf(buf).await? > 0)
}

/// Serves one FastCGI connection: requests one after another while the web
/// server asks to keep the connection.
pub(crate) async fn serve_connection<S>(state: Arc<State>, mut io: S, local_peer: SocketAddr)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut out = BytesMut::with_capacity(64 * 1024);
    let limit = state.opts.max_request_size;
    let limits = &state.opts.limits;
    loop {
        let mut pending: Option<Pending> = None;
        // Between requests the connection may idle for idle_timeout; once a
        // request begins, all of its records must arrive within
        // read_header_timeout + read_timeout, so a stalled peer cannot hold
        // the connection task for ever.
        let mut deadline = tokio::time::Instant::now() + limits.idle_timeout;
        // Read records until a request is complete (params and stdin both ended).
        let req = loop {
            let record = match decode(&mut buf) {
                Ok(Some(r)) => r,
                Ok(None) => {
                    match tokio::time::timeout_at(deadline, fill(&mut io, &mut buf)).await {
                        Ok(Ok(true)) => continue,
                        Ok(_) => return,
                        Err(_) => {
                            tracing::debug!(
                                in_request = pending.is_some(),
                                "fcgi: closing a connection that sent nothing in time"
                            );
                            return;
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "fcgi: closing a connection that does not speak FastCGI");
                    return;
                }
            };
            match record.kind {
                rec::GET_VALUES => {
                    let asked = parse_pairs(&record.content).unwrap_or_default();
                    let mut pairs = Vec::new();
                    for (name, _) in &asked {
                        match name.as_str() {
                            "FCGI_MAX_CONNS" | "FCGI_MAX_REQS" => {
                                pairs.push((name.as_str(), "1024"))
                            }
                            "FCGI_MPXS_CONNS" => pairs.push((name.as_str(), "0")),
                            _ => {}
                        }
                    }
                    out.clear();
                    encode(rec::GET_VALUES_RESULT, 0, &encode_pairs(&pairs), &mut out);
                    if io.write_all(&out).await.is_err() {
                        return;
                    }
                }
                rec::BEGIN_REQUEST => {
                    let c = &record.content;
                    let role = if c.len() >= 3 {
                        u16::from_be_bytes([c[0], c[1]])
                    } else {
                        0
                    };
                    let flags = c.get(2).copied().unwrap_or(0);
                    out.clear();
                    if pending.is_some() {
                        end_request(record.id, 0, status::CANT_MPX_CONN, &mut out);
                    } else if role != ROLE_RESPONDER {
                        end_request(record.id, 0, status::UNKNOWN_ROLE, &mut out);
                    } else {
                        deadline = tokio::time::Instant::now()
                            + limits.read_header_timeout
                            + limits.read_timeout;
                        pending = Some(Pending {
                            id: record.id,
                            keep: flags & KEEP_CONN != 0,
                            params: BytesMut::new(),
                            params_done: false,
                            body: BytesMut::new(),
                            too_large: false,
                        });
                    }
                    if !out.is_empty() && io.write_all(&out).await.is_err() {
                        return;
                    }
                }
                rec::ABORT_REQUEST => {
                    if let Some(p) = pending.take().filter(|p| p.id == record.id) {
                        out.clear();
                        end_request(p.id, 0, status::REQUEST_COMPLETE, &mut out);
                        if io.write_all(&out).await.is_err() || !p.keep {
                            return;
                        }
                    }
                }
                rec::PARAMS => {
                    let Some(p) = pending.as_mut().filter(|p| p.id == record.id) else {
                        continue;
                    };
                    if record.content.is_empty() {
                        p.params_done = true;
                    } else if p.params.len() + record.content.len() > MAX_PARAMS {
                        tracing::warn!("fcgi: {}", FcgiError::ParamsTooLarge(MAX_PARAMS));
                        return;
                    } else {
                        p.params.extend_from_slice(&record.content);
                    }
                }
                rec::STDIN => {
                    let Some(p) = pending.as_mut().filter(|p| p.id == record.id) else {
                        continue;
                    };
                    if record.content.is_empty() {
                        if p.params_done {
                            break pending.take();
                        }
                    } else if (p.body.len() + record.content.len()) as u64 > limit {
                        // Keep reading (and dropping) so the web server can finish sending.
                        p.too_large = true;
                        p.body.clear();
                    } else if !p.too_large {
                        p.body.extend_from_slice(&record.content);
                    }
                }
                other => {
                    out.clear();
                    let mut body = [0u8; 8];
                    body[0] = other;
                    encode(rec::UNKNOWN_TYPE, 0, &body, &mut out);
                    if io.write_all(&out).await.is_err() {
                        return;
                    }
                }
            }
        };
        let Some(p) = req else { return };
        let keep = p.keep;
        if respond(&state, &mut io, p, local_peer).await.is_err() || !keep {
            let _ = io.shutdown().await;
            return;
        }
    }
}

/// Runs one request through the pipeline and writes the CGI response.
async fn respond<S: AsyncWrite + Unpin>(
    state: &Arc<State>,
    io: &mut S,
    p: Pending,
    local_peer: SocketAddr,
) -> std::io::Result<()> {
    let id = p.id;
    let params = match parse_pairs(&p.params) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "fcgi: bad params");
            return write_simple(io, id, 400, "bad FastCGI params\n").await;
        }
    };
    if p.too_large {
        return write_simple(
            io,
            id,
            413,
            "request body too large (http.max_request_size)\n",
        )
        .await;
    }
    let (req, conn) = match build_request(&params, p.body.freeze(), local_peer) {
        Ok(x) => x,
        Err(e) => {
            tracing::warn!(error = %e, "fcgi: cannot build a request from the params");
            return write_simple(io, id, 400, "bad request\n").await;
        }
    };
    let resp = handler::handle(state.clone(), req, conn).await;
    let (parts, mut body) = resp.into_parts();
    let mut head = format!(
        "Status: {} {}\r\n",
        parts.status.as_u16(),
        parts.status.canonical_reason().unwrap_or("")
    );
    for (name, value) in &parts.headers {
        if let Ok(v) = value.to_str() {
            head.push_str(name.as_str());
            head.push_str(": ");
            head.push_str(v);
            head.push_str("\r\n");
        }
    }
    head.push_str("\r\n");
    let mut out = BytesMut::with_capacity(head.len() + 64);
    encode(rec::STDOUT, id, head.as_bytes(), &mut out);
    io.write_all(&out).await?;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Ok(data) = f.into_data() {
                    if data.is_empty() {
                        continue;
                    }
                    out.clear();
                    encode(rec::STDOUT, id, &data, &mut out);
                    io.write_all(&out).await?;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "fcgi: the response body failed midway; ending the request");
                break;
            }
        }
    }
    out.clear();
    encode(rec::STDOUT, id, b"", &mut out);
    end_request(id, 0, status::REQUEST_COMPLETE, &mut out);
    io.write_all(&out).await?;
    io.flush().await
}

async fn write_simple<S: AsyncWrite + Unpin>(
    io: &mut S,
    id: u16,
    status_code: u16,
    text: &str,
) -> std::io::Result<()> {
    let mut out = BytesMut::new();
    let reason = http::StatusCode::from_u16(status_code)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let msg = format!(
        "Status: {status_code} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}"
    );
    encode(rec::STDOUT, id, msg.as_bytes(), &mut out);
    encode(rec::STDOUT, id, b"", &mut out);
    end_request(id, 0, status::REQUEST_COMPLETE, &mut out);
    io.write_all(&out).await?;
    io.flush().await
}

/// Maps CGI params (as nginx's `fastcgi_params` sends them) to an HTTP request.
fn build_request(
    params: &[(String, String)],
    body: Bytes,
    local_peer: SocketAddr,
) -> Result<(http::Request<Full<Bytes>>, ConnInfo), String> {
    let get = |k: &str| {
        params
            .iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    };
    let method = get("REQUEST_METHOD").unwrap_or("GET");
    let https = get("HTTPS").is_some_and(|v| !v.is_empty() && !v.eq_ignore_ascii_case("off"));
    let path = get("REQUEST_URI").map(str::to_string).unwrap_or_else(|| {
        let script = get("SCRIPT_NAME").unwrap_or("/");
        match get("QUERY_STRING").filter(|q| !q.is_empty()) {
            Some(q) => format!("{script}?{q}"),
            None => script.to_string(),
        }
    });
    let version = match get("SERVER_PROTOCOL") {
        Some("HTTP/1.0") => http::Version::HTTP_10,
        Some("HTTP/2.0") | Some("HTTP/2") => http::Version::HTTP_2,
        _ => http::Version::HTTP_11,
    };
    let mut b = http::Request::builder()
        .method(method)
        .uri(path.as_str())
        .version(version);
    for (name, value) in params {
        let header = if let Some(rest) = name.strip_prefix("HTTP_") {
            rest.replace('_', "-").to_ascii_lowercase()
        } else if name == "CONTENT_TYPE" || name == "CONTENT_LENGTH" {
            name.replace('_', "-").to_ascii_lowercase()
        } else {
            continue;
        };
        if value.is_empty() && header.starts_with("content-") {
            continue;
        }
        b = b.header(header, value.as_str());
    }
    if get("HTTP_HOST").is_none() {
        if let Some(host) = get("SERVER_NAME") {
            let host = match get("SERVER_PORT") {
                Some(p) if p != "80" && p != "443" => format!("{host}:{p}"),
                _ => host.to_string(),
            };
            b = b.header(http::header::HOST, host);
        }
    }
    let req = b.body(Full::new(body)).map_err(|e| e.to_string())?;
    let ip: IpAddr = get("REMOTE_ADDR")
        .and_then(|a| a.parse().ok())
        .unwrap_or(local_peer.ip());
    let port: u16 = get("REMOTE_PORT").and_then(|p| p.parse().ok()).unwrap_or(0);
    Ok((
        req,
        ConnInfo {
            interim: None,
            peer: SocketAddr::new(ip, port),
            tls: https,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_split() {
        let mut out = BytesMut::new();
        encode(rec::STDOUT, 7, &vec![b'x'; 70_000], &mut out);
        encode(rec::STDOUT, 7, b"", &mut out);
        let a = decode(&mut out).expect("ok").expect("record");
        let b = decode(&mut out).expect("ok").expect("record");
        let c = decode(&mut out).expect("ok").expect("record");
        assert_eq!((a.kind, a.id, a.content.len()), (rec::STDOUT, 7, 65535));
        assert_eq!(b.content.len(), 70_000 - 65535);
        assert!(c.content.is_empty());
        assert!(out.is_empty());
        let mut partial = BytesMut::from(&[1u8, 5, 0, 1, 0, 10, 0, 0, 1, 2][..]);
        assert_eq!(decode(&mut partial), Ok(None));
        let mut bad = BytesMut::from(&[2u8, 5, 0, 1, 0, 0, 0, 0][..]);
        assert_eq!(decode(&mut bad), Err(FcgiError::Version(2)));
    }

    #[test]
    fn pairs_round_trip_with_long_values() {
        let long = "v".repeat(300);
        let enc = encode_pairs(&[
            ("REQUEST_METHOD", "GET"),
            ("HTTP_X_LONG", &long),
            ("EMPTY", ""),
        ]);
        let got = parse_pairs(&enc).expect("pairs");
        assert_eq!(got[0], ("REQUEST_METHOD".into(), "GET".into()));
        assert_eq!(got[1].1.len(), 300);
        assert_eq!(got[2], ("EMPTY".into(), String::new()));
        assert_eq!(parse_pairs(&[5, 1, b'a']), Err(FcgiError::Params));
    }
}
