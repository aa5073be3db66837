//! The `static` middleware (`http.static.*`, spec section 5.1): serves files
//! from one directory before a request reaches PHP.
//!
//! [`StaticFiles::serve`] answers `Some(response)` when a GET or HEAD request
//! names a regular file under `dir` that may be served, and `None` to pass the
//! request on to PHP, as RoadRunner does for a path that does not exist, is a
//! directory, has no extension, or has a forbidden (or not allowed) extension.
//! A forbidden file is never served: PHP gets the request and decides (a
//! front controller usually answers 404), which is RoadRunner's behaviour.
//!
//! Invariants:
//! - Nothing outside the canonical `dir` is ever opened for reading. The path
//!   is percent-decoded exactly once (`%252e%252e` names a file called
//!   `%2e%2e`), split on `/`, and every segment is checked: `..` is answered
//!   403 with no body (RoadRunner answers 403 for `..` too); a backslash, NUL or
//!   other control character passes the request to PHP. The joined path is
//!   then canonicalized, so a symlink that leads outside `dir` is refused, and
//!   the canonical path is what gets opened.
//! - The extension filter looks at both the requested name and the name the
//!   symlinks resolve to, lower-cased and with trailing dots and spaces
//!   removed, so `x.PHP`, `x.php.` and `link.txt -> x.php` all count as `.php`.
//! - Files are streamed in 64 KiB frames, never read whole into memory. A
//!   strong ETag needs one pass over the content; it is cached per path, size
//!   and modification time.
//!
//! Differences from RoadRunner, each stricter or more standard:
//! - Only a `..` *segment* is refused; RoadRunner refuses any path containing
//!   `..`, even `a..b.txt`.
//! - A non-empty `allow` stays a whitelist even when `forbid` removes every
//!   entry from it (RoadRunner would then serve every extension).
//! - A file with an unknown extension is `application/octet-stream`; Go
//!   sniffs the content.
//! - Several ranges in one `Range` header are answered with the whole file
//!   (200) instead of `multipart/byteranges`; a malformed `Range` is ignored
//!   (200) rather than answered 416; ranges on an empty file are ignored.
//!
//! Like RoadRunner, dot files with an extension (`.env`, `.htaccess`) are
//! served unless their extension is forbidden: list them in `forbid`.

use crate::Body;
use bytes::Bytes;
use futures_util::TryStreamExt;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use std::collections::{HashMap, HashSet};
use std::io::{self, Read, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

/// Size of one body frame when a file is streamed.
const CHUNK: usize = 64 * 1024;

/// How many strong ETags are remembered before the cache starts over.
const ETAG_CACHE_ENTRIES: usize = 4096;

/// Settings of the `static` middleware, validated from `http.static.*`.
#[derive(Debug, Clone, Default)]
pub struct StaticOptions {
    /// The directory files are served from (`http.static.dir`, default `.`).
    pub dir: PathBuf,
    /// Extensions never served, with the dot (`.php`); compared lower-cased.
    /// Forbid wins over allow.
    pub forbid: Vec<String>,
    /// When not empty, the only extensions served (a whitelist).
    pub allow: Vec<String>,
    /// Send an `ETag` (`http.static.calculate_etag`).
    pub calculate_etag: bool,
    /// Send a weak `W/"..."` ETag made from size and modification time
    /// instead of a strong one made from the content (`http.static.weak`).
    pub weak: bool,
    /// Headers added to every static response (`http.static.response`).
    pub response_headers: Vec<(String, String)>,
    /// `http.static.request`. RoadRunner adds these to the request before it
    /// serves a file, where nothing reads them; a served file never reaches
    /// PHP, so they are accepted and ignored here.
    pub request_headers: Vec<(String, String)>,
}

/// Why the `static` middleware could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum StaticError {
    /// The directory is missing or unreadable.
    #[error(
        "http.static.dir {dir:?} cannot be used: {source}; create the directory or fix the path"
    )]
    Dir {
        /// The configured directory.
        dir: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The path exists but is not a directory.
    #[error("http.static.dir {dir:?} is not a directory")]
    NotADirectory {
        /// The configured directory.
        dir: PathBuf,
    },
    /// A configured response header has an invalid name.
    #[error("http.static.response: {name:?} is not a valid header name")]
    HeaderName {
        /// The name as configured.
        name: String,
    },
    /// A configured response header has an invalid value.
    #[error("http.static.response.{name}: {value:?} is not a valid header value (control characters are not allowed)")]
    HeaderValue {
        /// The header name.
        name: String,
        /// The value as configured.
        value: String,
    },
}

/// A strong ETag remembered for one file version.
#[derive(Debug, Clone)]
struct CachedTag {
    len: u64,
    modified: SystemTime,
    tag: String,
}

/// The `static` middleware. Built once at startup; [`StaticFiles::serve`] is
/// called for every request.
#[derive(Debug)]
pub struct StaticFiles {
    root: PathBuf,
    forbid: HashSet<String>,
    /// `None`: every extension that is not forbidden.
    allow: Option<HashSet<String>>,
    calculate_etag: bool,
    weak: bool,
    response_headers: Vec<(HeaderName, HeaderValue)>,
    etags: Mutex<HashMap<PathBuf, CachedTag>>,
}

/// What the request path turned into.
#[derive(Debug, PartialEq, Eq)]
enum RequestPath {
    /// A path relative to the root, made of plain segments only.
    Relative(PathBuf),
    /// A `..` segment: refused with 403.
    Traversal,
    /// Cannot name a file here (bad encoding, backslash, control character).
    Unservable,
}

/// A byte range of the file to send, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RangeRequest {
    /// No usable `Range`: send everything.
    Full,
    /// One satisfiable range.
    Part { start: u64, end: u64 },
    /// A single range that lies beyond the end of the file.
    Unsatisfiable,
}

impl StaticFiles {
    /// Checks the options: canonicalizes `dir` (it must exist and be a
    /// directory) and validates the response headers.
    pub fn new(opts: StaticOptions) -> Result<StaticFiles, StaticError> {
        let dir = if opts.dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            opts.dir.clone()
        };
        let root = std::fs::canonicalize(&dir).map_err(|source| StaticError::Dir {
            dir: dir.clone(),
            source,
        })?;
        let meta = std::fs::metadata(&root).map_err(|source| StaticError::Dir {
            dir: dir.clone(),
            source,
        })?;
        if !meta.is_dir() {
            return Err(StaticError::NotADirectory { dir });
        }
        let forbid: HashSet<String> = opts
            .forbid
            .iter()
            .filter_map(|e| normalize_ext(e))
            .collect();
        let allow = if opts.allow.iter().any(|e| normalize_ext(e).is_some()) {
            Some(
                opts.allow
                    .iter()
                    .filter_map(|e| normalize_ext(e))
                    .filter(|e| !forbid.contains(e))
                    .collect(),
            )
        } else {
            None
        };
        let mut response_headers = Vec::with_capacity(opts.response_headers.len());
        for (name, value) in &opts.response_headers {
            let n = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| StaticError::HeaderName { name: name.clone() })?;
            let v = HeaderValue::from_str(value).map_err(|_| StaticError::HeaderValue {
                name: name.clone(),
                value: value.clone(),
            })?;
            response_headers.push((n, v));
        }
        Ok(StaticFiles {
            root,
            forbid,
            allow,
            calculate_etag: opts.calculate_etag,
            weak: opts.weak,
            response_headers,
            etags: Mutex::new(HashMap::new()),
        })
    }

    /// The canonical directory files are served from.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Some(response) when the request names a file under dir that may be
    /// served; None to pass the request on to PHP.
    pub async fn serve(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
    ) -> Option<Response<Body>> {
        let head = if method == Method::GET {
            false
        } else if method == Method::HEAD {
            true
        } else {
            return None;
        };
        let rel = match request_path(uri.path()) {
            RequestPath::Relative(rel) => rel,
            RequestPath::Traversal => {
                tracing::debug!(uri = %uri, "static: the path has a .. segment; refused");
                return Some(self.empty(StatusCode::FORBIDDEN));
            }
            RequestPath::Unservable => return None,
        };
        if !self.name_allowed(&rel) {
            return None;
        }
        let full = self.root.join(&rel);
        let canonical = match tokio::fs::canonicalize(&full).await {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(path = %full.display(), error = %e, "static: no such file; passed to PHP");
                return None;
            }
        };
        if !canonical.starts_with(&self.root) {
            tracing::warn!(path = %full.display(), target = %canonical.display(), "static: the path leads outside http.static.dir; passed to PHP");
            return None;
        }
        if canonical != full && !self.name_allowed(&canonical) {
            return None;
        }
        // Stat before opening: opening a FIFO would block until a writer comes.
        let meta = tokio::fs::metadata(&canonical).await.ok()?;
        if !meta.is_file() {
            return None;
        }
        let mut file = tokio::fs::File::open(&canonical).await.ok()?;
        let meta = file.metadata().await.ok()?;
        if !meta.is_file() {
            return None;
        }
        let len = meta.len();
        let modified = meta.modified().ok().filter(|m| {
            m.duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs() > 0)
                .unwrap_or(false)
        });
        let etag = if self.calculate_etag {
            Some(self.etag(&canonical, len, modified).await?)
        } else {
            None
        };

        let mut resp = Response::new(empty_body());
        self.add_configured(resp.headers_mut());
        let h = resp.headers_mut();
        if let Some(tag) = &etag {
            if let Ok(v) = HeaderValue::from_str(tag) {
                h.insert(header::ETAG, v);
            }
        }
        if let Some(m) = modified {
            if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(m)) {
                h.insert(header::LAST_MODIFIED, v);
            }
        }

        if let Some(status) = preconditions(headers, etag.as_deref(), modified) {
            *resp.status_mut() = status;
            if status == StatusCode::PRECONDITION_FAILED {
                resp.headers_mut().remove(header::ETAG);
                resp.headers_mut().remove(header::LAST_MODIFIED);
            }
            return Some(resp);
        }

        let h = resp.headers_mut();
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        let range = if if_range_holds(headers, etag.as_deref(), modified) {
            headers
                .get(header::RANGE)
                .and_then(|v| v.to_str().ok())
                .map(|v| parse_range(v, len))
                .unwrap_or(RangeRequest::Full)
        } else {
            RangeRequest::Full
        };
        let (start, count) = match range {
            RangeRequest::Full => (0, len),
            RangeRequest::Part { start, end } => {
                *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
                let cr = format!("bytes {start}-{end}/{len}");
                if let Ok(v) = HeaderValue::from_str(&cr) {
                    resp.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                (start, end - start + 1)
            }
            RangeRequest::Unsatisfiable => {
                *resp.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
                let cr = format!("bytes */{len}");
                let h = resp.headers_mut();
                h.remove(header::ETAG);
                h.remove(header::LAST_MODIFIED);
                if let Ok(v) = HeaderValue::from_str(&cr) {
                    h.insert(header::CONTENT_RANGE, v);
                }
                h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
                return Some(resp);
            }
        };
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, content_type(&canonical));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
        if !head && count > 0 {
            if start > 0 && file.seek(SeekFrom::Start(start)).await.is_err() {
                return None;
            }
            let stream = ReaderStream::with_capacity(file.take(count), CHUNK).map_ok(Frame::data);
            *resp.body_mut() = BodyExt::boxed(StreamBody::new(stream));
        }
        Some(resp)
    }

    /// Whether the file name's extension may be served.
    fn name_allowed(&self, path: &Path) -> bool {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            return false;
        };
        let Some(ext) = extension(name) else {
            tracing::debug!(file = name, "static: no extension; passed to PHP");
            return false;
        };
        if self.forbid.contains(&ext) {
            tracing::debug!(file = name, ext = %ext, "static: the extension is forbidden; passed to PHP");
            return false;
        }
        match &self.allow {
            Some(allow) if !allow.contains(&ext) => {
                tracing::debug!(file = name, ext = %ext, "static: the extension is not allowed; passed to PHP");
                false
            }
            _ => true,
        }
    }

    fn add_configured(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.response_headers {
            headers.insert(name.clone(), value.clone());
        }
    }

    fn empty(&self, status: StatusCode) -> Response<Body> {
        let mut resp = Response::new(empty_body());
        *resp.status_mut() = status;
        self.add_configured(resp.headers_mut());
        resp
    }

    /// The ETag of one file version: weak from metadata, strong from content.
    /// `None` only when the file cannot be read.
    async fn etag(&self, path: &Path, len: u64, modified: Option<SystemTime>) -> Option<String> {
        let mtime = modified.unwrap_or(UNIX_EPOCH);
        if self.weak {
            let d = mtime.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
            return Some(format!(
                "W/\"{len:x}-{:x}.{:x}\"",
                d.as_secs(),
                d.subsec_nanos()
            ));
        }
        if let Ok(cache) = self.etags.lock() {
            if let Some(c) = cache.get(path) {
                if c.len == len && c.modified == mtime {
                    return Some(c.tag.clone());
                }
            }
        }
        let owned = path.to_path_buf();
        let crc = tokio::task::spawn_blocking(move || content_crc(&owned))
            .await
            .ok()?
            .ok()?;
        let tag = format!("\"{len:x}-{crc:08x}\"");
        if let Ok(mut cache) = self.etags.lock() {
            if cache.len() >= ETAG_CACHE_ENTRIES {
                cache.clear();
            }
            cache.insert(
                path.to_path_buf(),
                CachedTag {
                    len,
                    modified: mtime,
                    tag: tag.clone(),
                },
            );
        }
        Some(tag)
    }
}

fn empty_body() -> Body {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed()
}

/// CRC-32 of a file's content, read in chunks.
fn content_crc(path: &Path) -> io::Result<u32> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize())
}

/// Lower-cases a configured extension and makes sure it starts with a dot.
fn normalize_ext(ext: &str) -> Option<String> {
    let ext = ext.trim().to_lowercase();
    if ext.is_empty() || ext == "." {
        None
    } else if ext.starts_with('.') {
        Some(ext)
    } else {
        Some(format!(".{ext}"))
    }
}

/// The lower-cased extension of a file name, with the dot, as Go's
/// `path.Ext` finds it after trailing dots and whitespace are removed (they
/// do not change which handler a file is meant for). `None` for no extension.
fn extension(name: &str) -> Option<String> {
    let name = name.trim_end_matches(|c: char| c == '.' || c.is_whitespace());
    let dot = name.rfind('.')?;
    Some(name[dot..].to_lowercase())
}

/// Percent-decodes the URI path once and checks each segment.
fn request_path(raw: &str) -> RequestPath {
    let decoded: Vec<u8> = percent_encoding::percent_decode_str(raw).collect();
    // A `..` anywhere is a traversal attempt, whatever else the path holds.
    if decoded.split(|&b| b == b'/').any(|s| s == b"..") {
        return RequestPath::Traversal;
    }
    let Ok(decoded) = String::from_utf8(decoded) else {
        return RequestPath::Unservable;
    };
    let mut rel = PathBuf::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => continue,
            s if s.contains(|c: char| c == '\\' || c.is_control()) => {
                return RequestPath::Unservable
            }
            s => rel.push(s),
        }
    }
    RequestPath::Relative(rel)
}

fn content_type(path: &Path) -> HeaderValue {
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let text =
        mime.type_() == mime_guess::mime::TEXT || mime.essence_str() == "application/javascript";
    let value = if text && mime.get_param("charset").is_none() {
        format!("{}; charset=utf-8", mime.essence_str())
    } else {
        mime.to_string()
    };
    HeaderValue::from_str(&value)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"))
}

/// One entity tag from a list: whether it is weak, and the quoted opaque part.
#[derive(Debug, PartialEq, Eq)]
enum TagItem<'a> {
    Any,
    Tag { weak: bool, opaque: &'a str },
}

/// Parses an `If-Match` / `If-None-Match` list. Stops at the first malformed
/// entry (what came before it still counts).
fn tag_list(value: &str) -> Vec<TagItem<'_>> {
    let mut out = Vec::new();
    let mut rest = value;
    loop {
        rest = rest.trim_start_matches([',', ' ', '\t']);
        if rest.is_empty() {
            break;
        }
        if let Some(r) = rest.strip_prefix('*') {
            out.push(TagItem::Any);
            rest = r;
            continue;
        }
        let (weak, r) = match rest.strip_prefix("W/") {
            Some(r) => (true, r),
            None => (false, rest),
        };
        if !r.starts_with('"') {
            break;
        }
        let Some(close) = r[1..].find('"') else {
            break;
        };
        out.push(TagItem::Tag {
            weak,
            opaque: &r[..close + 2],
        });
        rest = &r[close + 2..];
    }
    out
}

/// Splits our own ETag into (weak, opaque).
fn split_tag(tag: &str) -> (bool, &str) {
    match tag.strip_prefix("W/") {
        Some(o) => (true, o),
        None => (false, tag),
    }
}

/// Whether a list matches our tag. Strong comparison needs both tags strong.
fn list_matches(value: &str, ours: Option<&str>, strong: bool) -> bool {
    let (our_weak, our_opaque) = match ours {
        Some(t) => split_tag(t),
        None => (true, ""),
    };
    tag_list(value).iter().any(|item| match item {
        TagItem::Any => true,
        TagItem::Tag { weak, opaque } => {
            ours.is_some() && *opaque == our_opaque && !(strong && (*weak || our_weak))
        }
    })
}

fn header_str<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Evaluates the preconditions in RFC 9110 section 13.2.2 order:
/// 412 for a failed If-Match / If-Unmodified-Since, 304 for a matching
/// If-None-Match or an If-Modified-Since that is not older than the file.
fn preconditions(
    headers: &HeaderMap,
    etag: Option<&str>,
    modified: Option<SystemTime>,
) -> Option<StatusCode> {
    if let Some(v) = header_str(headers, &header::IF_MATCH) {
        if !list_matches(v, etag, true) {
            return Some(StatusCode::PRECONDITION_FAILED);
        }
    } else if let (Some(v), Some(m)) = (header_str(headers, &header::IF_UNMODIFIED_SINCE), modified)
    {
        if let Ok(since) = httpdate::parse_http_date(v) {
            if unix_secs(m) > unix_secs(since) {
                return Some(StatusCode::PRECONDITION_FAILED);
            }
        }
    }
    if let Some(v) = header_str(headers, &header::IF_NONE_MATCH) {
        if list_matches(v, etag, false) {
            return Some(StatusCode::NOT_MODIFIED);
        }
    } else if let (Some(v), Some(m)) = (header_str(headers, &header::IF_MODIFIED_SINCE), modified) {
        if let Ok(since) = httpdate::parse_http_date(v) {
            if unix_secs(m) <= unix_secs(since) {
                return Some(StatusCode::NOT_MODIFIED);
            }
        }
    }
    None
}

/// `If-Range`: the range applies only when the validator still matches (a
/// strong ETag, or exactly the Last-Modified date).
fn if_range_holds(headers: &HeaderMap, etag: Option<&str>, modified: Option<SystemTime>) -> bool {
    let Some(v) = header_str(headers, &header::IF_RANGE) else {
        return true;
    };
    let v = v.trim();
    if v.starts_with('"') || v.starts_with("W/") {
        return match etag {
            Some(ours) => !split_tag(ours).0 && v == ours,
            None => false,
        };
    }
    match (httpdate::parse_http_date(v), modified) {
        (Ok(date), Some(m)) => unix_secs(date) == unix_secs(m),
        _ => false,
    }
}

/// Parses a `Range` header for a file of `len` bytes.
fn parse_range(value: &str, len: u64) -> RangeRequest {
    let value = value.trim();
    let Some(unit_end) = value.find('=') else {
        return RangeRequest::Full;
    };
    if !value[..unit_end].trim().eq_ignore_ascii_case("bytes") || len == 0 {
        return RangeRequest::Full;
    }
    let specs: Vec<&str> = value[unit_end + 1..]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let [spec] = specs.as_slice() else {
        return RangeRequest::Full;
    };
    let Some((first, last)) = spec.split_once('-') else {
        return RangeRequest::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if first.is_empty() {
        if !digits(last) {
            return RangeRequest::Full;
        }
        return match last.parse::<u64>() {
            Ok(0) => RangeRequest::Unsatisfiable,
            Ok(n) => RangeRequest::Part {
                start: len.saturating_sub(n),
                end: len - 1,
            },
            // More digits than fit: the whole file.
            Err(_) => RangeRequest::Part {
                start: 0,
                end: len - 1,
            },
        };
    }
    if !digits(first) || !(last.is_empty() || digits(last)) {
        return RangeRequest::Full;
    }
    let Ok(start) = first.parse::<u64>() else {
        return RangeRequest::Unsatisfiable;
    };
    let end = if last.is_empty() {
        len - 1
    } else {
        match last.parse::<u64>() {
            Ok(e) if e < start => return RangeRequest::Full,
            Ok(e) => e.min(len - 1),
            Err(_) => len - 1,
        }
    };
    if start >= len {
        return RangeRequest::Unsatisfiable;
    }
    RangeRequest::Part { start, end }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_paths() {
        let rel = |s: &str| RequestPath::Relative(PathBuf::from(s));
        let cases: &[(&str, RequestPath)] = &[
            ("/a/b.txt", rel("a/b.txt")),
            ("//a/./b.txt", rel("a/b.txt")),
            ("/a%20b.txt", rel("a b.txt")),
            ("/../x", RequestPath::Traversal),
            ("/%2e%2e/x", RequestPath::Traversal),
            ("/a%2f..%2fx", RequestPath::Traversal),
            ("/%252e%252e/x", rel("%2e%2e/x")),
            ("/a\\b", RequestPath::Unservable),
            ("/a%5cb", RequestPath::Unservable),
            ("/a%00.txt", RequestPath::Unservable),
            ("/a%0a.txt", RequestPath::Unservable),
            ("/%ff.txt", RequestPath::Unservable),
            ("/a..b.txt", rel("a..b.txt")),
            // A `..` wins over an unservable segment before it.
            ("/%00/../x", RequestPath::Traversal),
            ("/a\\b/../x", RequestPath::Traversal),
            ("/%ff/../x", RequestPath::Traversal),
        ];
        for (input, want) in cases {
            assert_eq!(&request_path(input), want, "{input}");
        }
    }

    #[test]
    fn extensions() {
        let cases: &[(&str, Option<&str>)] = &[
            ("a.php", Some(".php")),
            ("a.PHP", Some(".php")),
            ("a.php.", Some(".php")),
            ("a.php. . ", Some(".php")),
            ("a.tar.gz", Some(".gz")),
            (".htaccess", Some(".htaccess")),
            ("README", None),
            ("README.", None),
        ];
        for (input, want) in cases {
            assert_eq!(extension(input).as_deref(), *want, "{input}");
        }
    }

    #[test]
    fn ranges() {
        use RangeRequest::*;
        let cases: &[(&str, u64, RangeRequest)] = &[
            ("bytes=0-9", 100, Part { start: 0, end: 9 }),
            ("bytes=90-", 100, Part { start: 90, end: 99 }),
            ("bytes=-10", 100, Part { start: 90, end: 99 }),
            ("bytes=-1000", 100, Part { start: 0, end: 99 }),
            ("bytes=50-1000", 100, Part { start: 50, end: 99 }),
            ("bytes=100-", 100, Unsatisfiable),
            ("bytes=-0", 100, Unsatisfiable),
            ("bytes=99999999999999999999999-", 100, Unsatisfiable),
            ("bytes=0-1,5-6", 100, Full),
            ("bytes=9-1", 100, Full),
            ("bytes=a-b", 100, Full),
            ("items=0-1", 100, Full),
            ("bytes=0-", 0, Full),
        ];
        for (input, len, want) in cases {
            assert_eq!(parse_range(input, *len), *want, "{input} of {len}");
        }
    }

    #[test]
    fn tag_lists() {
        assert_eq!(
            tag_list(r#""a", W/"b,c" ,*"#),
            vec![
                TagItem::Tag {
                    weak: false,
                    opaque: "\"a\""
                },
                TagItem::Tag {
                    weak: true,
                    opaque: "\"b,c\""
                },
                TagItem::Any
            ]
        );
        assert!(list_matches(r#"W/"x""#, Some("\"x\""), false));
        assert!(!list_matches(r#"W/"x""#, Some("\"x\""), true));
        assert!(list_matches(r#""y", "x""#, Some("\"x\""), true));
        assert!(!list_matches(r#""x""#, None, false));
    }
}
