//! The protobuf wire format for `http.v1.Request` and `http.v1.Response`
//! (spec 3.2 and 3.6), written by hand.
//!
//! A hand-written codec rather than `prost`: Go writes every map entry with
//! both key and value even when they are empty, which prost's map encoding
//! skips, and we want map entries sorted for deterministic bytes. The messages
//! are three small ones, so the whole codec is this file.
//!
//! ```text
//! message HeaderValue { repeated bytes value = 1; }
//! message Request  { string remote_addr = 1; string protocol = 2; string method = 3;
//!                    string uri = 4; map<string, HeaderValue> header = 5;
//!                    map<string, HeaderValue> cookies = 6; string raw_query = 7;
//!                    bool parsed = 8; bytes uploads = 9;
//!                    map<string, HeaderValue> attributes = 10; }
//! message Response { int64 status = 1; map<string, HeaderValue> headers = 2; }
//! ```

use super::headers::{sorted_groups, sorted_last};
use super::json::to_go_json;
use super::{HeaderList, PayloadError, RequestMeta, ResponseContext};

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint_len(v: u64) -> usize {
    // 1 byte per started group of 7 bits; 0 takes one byte.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

fn put_tag(out: &mut Vec<u8>, field: u32, wire: u8) {
    put_varint(out, (u64::from(field) << 3) | u64::from(wire));
}

fn put_bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    put_tag(out, field, LEN);
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// A string field, left out when empty (proto3 default).
fn put_string(out: &mut Vec<u8>, field: u32, s: &str) {
    if !s.is_empty() {
        put_bytes(out, field, s.as_bytes());
    }
}

/// Size of a length-delimited field with a one-byte tag (fields 1..=15).
fn field_len(payload: usize) -> usize {
    1 + varint_len(payload as u64) + payload
}

/// One `map<string, HeaderValue>` entry: key (1) and value (2), always both.
fn put_map_entry<'a>(
    out: &mut Vec<u8>,
    field: u32,
    key: &str,
    values: impl Iterator<Item = &'a str> + Clone,
) {
    let header_value_len: usize = values.clone().map(|v| field_len(v.len())).sum();
    let entry_len = field_len(key.len()) + field_len(header_value_len);
    put_tag(out, field, LEN);
    put_varint(out, entry_len as u64);
    put_bytes(out, 1, key.as_bytes());
    put_tag(out, 2, LEN);
    put_varint(out, header_value_len as u64);
    for v in values {
        put_bytes(out, 1, v.as_bytes());
    }
}

fn put_multi_map(out: &mut Vec<u8>, field: u32, pairs: &[(String, Vec<String>)]) {
    for group in sorted_groups(pairs) {
        put_map_entry(out, field, group.name, group.values());
    }
}

pub(super) fn encode_request(meta: &RequestMeta, out: &mut Vec<u8>) {
    put_string(out, 1, &meta.remote_addr);
    put_string(out, 2, meta.protocol);
    put_string(out, 3, &meta.method);
    put_string(out, 4, &meta.uri);
    put_multi_map(out, 5, &meta.headers);
    for (name, value) in sorted_last(&meta.cookies) {
        put_map_entry(out, 6, name, std::iter::once(value));
    }
    put_string(out, 7, &meta.raw_query);
    if meta.parsed {
        put_tag(out, 8, VARINT);
        out.push(1);
    }
    if let Some(tree) = &meta.uploads {
        let mut json = Vec::new();
        to_go_json(tree, &mut json);
        put_bytes(out, 9, &json);
    }
    put_multi_map(out, 10, &meta.attributes);
}

pub(super) fn encode_response(resp: &ResponseContext, out: &mut Vec<u8>) {
    put_tag(out, 1, VARINT);
    put_varint(out, u64::from(resp.status));
    for (name, values) in &resp.headers {
        put_map_entry(out, 2, name, values.iter().map(String::as_str));
    }
}

/// A cursor over one message's bytes.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Offset of `buf` inside the whole context, for error messages.
    base: usize,
    message: &'static str,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], message: &'static str) -> Reader<'a> {
        Reader {
            buf,
            pos: 0,
            base: 0,
            message,
        }
    }

    fn error(&self, problem: &'static str) -> PayloadError {
        PayloadError::Proto {
            message: self.message,
            problem,
            offset: self.base + self.pos,
        }
    }

    fn varint(&mut self) -> Result<u64, PayloadError> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(self.error("the message ends inside a varint"));
            };
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.error("a varint is longer than 10 bytes"))
    }

    /// The next field's number and wire type; `None` at the end.
    fn tag(&mut self) -> Result<Option<(u64, u8)>, PayloadError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let tag = self.varint()?;
        let field = tag >> 3;
        if field == 0 {
            return Err(self.error("field number 0"));
        }
        Ok(Some((field, (tag & 7) as u8)))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], PayloadError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| self.error("a length runs past the end of the message"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn bytes(&mut self, wire: u8) -> Result<&'a [u8], PayloadError> {
        if wire != LEN {
            return Err(self.error("expected a length-delimited field"));
        }
        let n = self.varint()?;
        let n = usize::try_from(n).map_err(|_| self.error("a length is too large"))?;
        self.take(n)
    }

    /// A nested message: a reader over its bytes that reports whole-context offsets.
    fn message(&mut self, wire: u8) -> Result<Reader<'a>, PayloadError> {
        let bytes = self.bytes(wire)?;
        Ok(Reader {
            buf: bytes,
            pos: 0,
            base: self.base + self.pos - bytes.len(),
            message: self.message,
        })
    }

    fn string(&mut self, wire: u8) -> Result<String, PayloadError> {
        let b = self.bytes(wire)?;
        std::str::from_utf8(b)
            .map(str::to_string)
            .map_err(|_| self.error("a string field is not UTF-8"))
    }

    fn uint(&mut self, wire: u8) -> Result<u64, PayloadError> {
        if wire != VARINT {
            return Err(self.error("expected a varint field"));
        }
        self.varint()
    }

    fn skip(&mut self, wire: u8) -> Result<(), PayloadError> {
        match wire {
            VARINT => self.varint().map(drop),
            FIXED64 => self.take(8).map(drop),
            LEN => self.bytes(wire).map(drop),
            FIXED32 => self.take(4).map(drop),
            _ => Err(self.error("unsupported wire type (groups are not used by http.v1)")),
        }
    }

    /// One `map<string, HeaderValue>` entry. Header bytes that are not UTF-8
    /// become U+FFFD; the key must be UTF-8.
    fn map_entry(&mut self, wire: u8) -> Result<(String, Vec<String>), PayloadError> {
        let mut entry = self.message(wire)?;
        let mut key = String::new();
        let mut values = Vec::new();
        while let Some((field, wire)) = entry.tag()? {
            match field {
                1 => key = entry.string(wire)?,
                2 => {
                    values.clear();
                    let mut hv = entry.message(wire)?;
                    while let Some((field, wire)) = hv.tag()? {
                        if field == 1 {
                            values.push(String::from_utf8_lossy(hv.bytes(wire)?).into_owned());
                        } else {
                            hv.skip(wire)?;
                        }
                    }
                }
                _ => entry.skip(wire)?,
            }
        }
        Ok((key, values))
    }
}

/// Maps the protocol string to the names this server uses.
pub(super) fn protocol(p: &str) -> Result<&'static str, PayloadError> {
    match p {
        "HTTP/1.1" => Ok("HTTP/1.1"),
        "HTTP/2.0" => Ok("HTTP/2.0"),
        "HTTP/1.0" => Ok("HTTP/1.0"),
        other => Err(PayloadError::Protocol(other.to_string())),
    }
}

pub(super) fn decode_request(context: &[u8]) -> Result<RequestMeta, PayloadError> {
    let mut r = Reader::new(context, "http.v1.Request");
    let mut meta = RequestMeta::default();
    let mut protocol_name = String::new();
    let mut cookies = Vec::new();
    while let Some((field, wire)) = r.tag()? {
        match field {
            1 => meta.remote_addr = r.string(wire)?,
            2 => protocol_name = r.string(wire)?,
            3 => meta.method = r.string(wire)?,
            4 => meta.uri = r.string(wire)?,
            5 => meta.headers.push(r.map_entry(wire)?),
            6 => cookies.push(r.map_entry(wire)?),
            7 => meta.raw_query = r.string(wire)?,
            8 => meta.parsed = r.uint(wire)? != 0,
            9 => {
                let json = r.bytes(wire)?;
                let tree = serde_json::from_slice(json).map_err(|source| PayloadError::Json {
                    what: "uploads field of the request",
                    source,
                })?;
                meta.uploads = Some(tree);
            }
            10 => meta.attributes.push(r.map_entry(wire)?),
            _ => r.skip(wire)?,
        }
    }
    meta.protocol = protocol(&protocol_name)?;
    meta.headers = super::headers::dedup_last(meta.headers);
    meta.attributes = super::headers::dedup_last(meta.attributes);
    // PHP joins repeated cookie values with ','.
    meta.cookies = super::headers::dedup_last(cookies)
        .into_iter()
        .map(|(k, v)| (k, v.join(",")))
        .collect();
    Ok(meta)
}

/// Status and headers of an `http.v1.Response` (not yet range-checked).
pub(super) fn decode_response(context: &[u8]) -> Result<(i64, HeaderList), PayloadError> {
    let mut r = Reader::new(context, "http.v1.Response");
    let mut status = 0i64;
    let mut headers = Vec::new();
    while let Some((field, wire)) = r.tag()? {
        match field {
            // int64 is a two's-complement varint.
            1 => status = r.uint(wire)? as i64,
            2 => headers.push(r.map_entry(wire)?),
            _ => r.skip(wire)?,
        }
    }
    Ok((status, headers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints() {
        for (v, want) in [
            (0u64, &[0u8][..]),
            (1, &[1]),
            (127, &[0x7f]),
            (128, &[0x80, 1]),
            (201, &[0xc9, 1]),
            (
                u64::MAX,
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1],
            ),
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out, want, "{v}");
            assert_eq!(varint_len(v), want.len(), "{v}");
            assert_eq!(Reader::new(&out, "t").varint().ok(), Some(v));
        }
    }

    #[test]
    fn empty_map_values_are_written() {
        let mut out = Vec::new();
        put_map_entry(&mut out, 5, "X", std::iter::empty());
        assert_eq!(out, [0x2a, 5, 0x0a, 1, b'X', 0x12, 0]);
        let mut out = Vec::new();
        put_map_entry(&mut out, 5, "", std::iter::once(""));
        assert_eq!(out, [0x2a, 6, 0x0a, 0, 0x12, 2, 0x0a, 0]);
    }

    #[test]
    fn malformed_contexts_name_the_problem() {
        for (bytes, want) in [
            (&[0x08][..], "ends inside a varint"),
            (&[0x12, 5, 1], "runs past the end"),
            (&[0x1b], "unsupported wire type"),
            (&[0x0a, 0], "expected a varint"),
            (&[0x00], "field number 0"),
        ] {
            let err = decode_response(bytes).expect_err("must fail");
            assert!(err.to_string().contains(want), "{err}");
        }
    }
}
