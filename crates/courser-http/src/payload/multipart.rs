//! Streaming `multipart/form-data` (spec 3.4 and 3.5): form values go into
//! the data tree, each file streams to its own temp file.
//!
//! Memory per request stays bounded: values are capped by
//! [`UploadOptions::max_part_fields_bytes`], and file data is written chunk by
//! chunk. `multer` pulls every chunk its input has ready into one buffer before
//! it hands out field data, so the body is fed to it through [`Throttle`],
//! which pauses after [`THROTTLE_BYTES`]; without it a fast client (or a body
//! already in memory) would be buffered whole (the streaming test sees 5 MB
//! buffered without it, under 150 KiB with it). `Throttle` also fails the body
//! when more than [`MAX_UNCONSUMED`] bytes arrive without multer handing out
//! anything: part headers or a preamble that never end would otherwise be
//! buffered up to the request size limit.
//!
//! # Extension filter
//!
//! RoadRunner refuses a file when `strings.ToLower(path.Ext(name))` is in
//! `forbid`, or `allow` is non-empty and does not contain it. Courser refuses
//! everything RoadRunner refuses, and also closes the usual bypasses:
//! - the extension is compared lower-cased (`evil.PHP` is `.php`);
//! - the name is also checked with trailing dots and whitespace removed
//!   (`evil.php.`, `evil.php ` are `.php`: Windows and some tools drop them);
//! - every inner extension is checked against `forbid` (`evil.php.jpg` is
//!   refused when `.php` is forbidden: Apache's multi-extension handlers would
//!   run it);
//! - with a filter configured, a name holding a control character (NUL
//!   included: `evil.php\0.jpg`) is refused. A literal `%00` is not decoded
//!   in multipart file names, so `evil.php%00.jpg` has the extension `.jpg`
//!   and is a harmless name;
//! - configured entries are lower-cased and given a leading dot if they lack
//!   one (`PHP` means `.php`; RoadRunner would silently never match it).
//!
//! The name PHP sees is exactly the name that was checked: Go's
//! `filepath.Base` of the `filename` (or RFC 2231 `filename*`) parameter.

use super::tree::{Repeat, Tree};
use super::PayloadError;
use bytes::Bytes;
use futures_util::Stream;
use serde_json::{Map, Value};
use std::fs::Permissions;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tempfile::TempPath;
use tokio::io::AsyncWriteExt;

/// Go's default limit on the parts of one multipart body (`multipartmaxparts`).
pub const MAX_PARTS: usize = courser_config::DEFAULT_MAX_PARTS;

/// Go's limit for non-file values with RoadRunner's 32 MiB `ReadForm`: the
/// memory budget plus 10 MiB.
pub const DEFAULT_MAX_PART_FIELDS_BYTES: usize = (32 + 10) << 20;

/// How many body bytes multer may take in one go before [`Throttle`] pauses.
const THROTTLE_BYTES: usize = 64 << 10;

/// How many bytes may arrive while multer hands out no field or field data:
/// the most that one part's headers (or the preamble) may take.
const MAX_UNCONSUMED: usize = 1 << 20;

/// Upload error codes (spec 3.5; PHP's `UPLOAD_ERR_*`).
const UPLOAD_OK: u8 = 0;
const UPLOAD_NO_TMP_DIR: u8 = 6;
const UPLOAD_CANT_WRITE: u8 = 7;
const UPLOAD_EXTENSION: u8 = 8;

/// Settings for file uploads (`http.uploads`).
#[derive(Debug, Clone)]
pub struct UploadOptions {
    /// Directory for the temp files.
    pub dir: PathBuf,
    /// Refused extensions, with the dot (`.php`). Wins over `allow`.
    pub forbid: Vec<String>,
    /// If non-empty, only these extensions are accepted.
    pub allow: Vec<String>,
    /// Cap on the total size of the non-file fields (names and values) held
    /// in memory; going over fails the request.
    pub max_part_fields_bytes: usize,
    /// Most parts in one body (`http.uploads.max_parts`).
    pub max_parts: usize,
}

impl From<&courser_config::UploadsConfig> for UploadOptions {
    /// The validated `http.uploads` section, with Go's cap on form values.
    fn from(c: &courser_config::UploadsConfig) -> UploadOptions {
        UploadOptions {
            dir: c.dir.clone(),
            forbid: c.forbid.clone(),
            allow: c.allow.clone(),
            max_part_fields_bytes: DEFAULT_MAX_PART_FIELDS_BYTES,
            max_parts: c.max_parts,
        }
    }
}

/// A parsed multipart body.
#[derive(Debug)]
pub struct Multipart {
    /// The data tree of the non-file fields (a JSON object).
    pub data: Value,
    /// The upload tree (a JSON object; empty when there were no files). Leaves
    /// are `{"name","mime","size","error","tmpName"}` objects.
    pub uploads: Value,
    /// The temp files behind the uploads; dropping this deletes them, so keep
    /// it until the response is finished.
    pub files: TempFiles,
}

/// Temp files that are deleted when this is dropped.
#[derive(Debug, Default)]
pub struct TempFiles {
    paths: Vec<TempPath>,
}

impl TempFiles {
    /// No files.
    pub fn new() -> TempFiles {
        TempFiles::default()
    }

    /// Number of files.
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    /// True when there are no files.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// The files' paths.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.paths.iter().map(|p| p.as_ref())
    }
}

impl Drop for TempFiles {
    fn drop(&mut self) {
        for path in self.paths.drain(..) {
            let shown = path.display().to_string();
            if let Err(e) = path.close() {
                // PHP may have moved the file away (UploadedFile::moveTo).
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %shown, error = %e, "Could not delete an upload's temp file.");
                }
            }
        }
    }
}

/// The boundary from a `multipart/form-data` Content-Type; `None` for other
/// types or when it has no boundary. Pass the header as received: the type is
/// matched case-insensitively but the boundary is case-sensitive.
pub fn multipart_boundary(content_type: &str) -> Option<String> {
    multer::parse_boundary(content_type).ok()
}

/// One upload leaf, RoadRunner's `FileUpload`.
struct Leaf {
    name: String,
    mime: String,
    size: u64,
    error: u8,
    tmp_name: String,
}

impl Leaf {
    fn into_value(self) -> Value {
        let mut m = Map::new();
        m.insert("name".into(), Value::String(self.name));
        m.insert("mime".into(), Value::String(self.mime));
        m.insert("size".into(), Value::from(self.size));
        m.insert("error".into(), Value::from(self.error));
        m.insert("tmpName".into(), Value::String(self.tmp_name));
        Value::Object(m)
    }
}

/// Parses a multipart body as it streams in.
///
/// Non-file fields go into [`Multipart::data`] (last value wins for a repeated
/// plain name); files stream to temp files in `opts.dir` named `upload` plus a
/// random suffix, created exclusively (`O_EXCL`) with mode 0600, and are
/// described in [`Multipart::uploads`]. Several files under one plain name
/// keep only the first; the others are read past without being stored.
///
/// A file whose temp file cannot be created gets error 6, one whose write
/// fails gets error 7, and a refused extension gets error 8 (size 0, empty
/// `tmpName`); the request goes on. A malformed body, a read error, too many
/// parts or too large values fail the whole request, and any temp files
/// written so far are deleted before this returns.
///
/// The caller limits the body's total size (`http.max_request_size`) on the
/// stream it passes in; this function bounds what it holds in memory.
pub async fn parse_multipart<S, E>(
    body: S,
    boundary: &str,
    opts: &UploadOptions,
) -> Result<Multipart, PayloadError>
where
    S: Stream<Item = Result<Bytes, E>> + Send,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let filter = ExtFilter::new(&opts.forbid, &opts.allow);
    let progress = Arc::new(Progress::default());
    let mut reader = multer::Multipart::new(Throttle::new(body, progress.clone()), boundary);
    let mut data: Tree<String> = Tree::new(Repeat::Last);
    let mut uploads: Tree<usize> = Tree::new(Repeat::First);
    let mut leaves: Vec<Leaf> = Vec::new();
    let mut files = TempFiles::new();
    let mut field_bytes = 0usize;
    let mut parts = 0usize;
    let too_large = || PayloadError::FieldsTooLarge {
        limit: opts.max_part_fields_bytes,
    };

    while let Some(mut field) = reader.next_field().await? {
        progress.consumed();
        let mut field = Part {
            field: &mut field,
            progress: &progress,
        };
        parts += 1;
        if parts > opts.max_parts {
            return Err(PayloadError::TooManyParts {
                limit: opts.max_parts,
            });
        }
        let disposition = field
            .field
            .headers()
            .get(http::header::CONTENT_DISPOSITION)
            .and_then(|v| parse_disposition(v.as_bytes()));
        let Some(Disposition { name, filename }) = disposition else {
            field.drain().await?;
            continue;
        };
        if name.is_empty() {
            field.drain().await?;
            continue;
        }
        let Some(filename) = filename.filter(|f| !f.is_empty()) else {
            // A form value.
            field_bytes = field_bytes.saturating_add(name.len());
            let mut value = Vec::new();
            while let Some(chunk) = field.chunk().await? {
                field_bytes = field_bytes.saturating_add(chunk.len());
                if field_bytes > opts.max_part_fields_bytes {
                    return Err(too_large());
                }
                value.extend_from_slice(&chunk);
            }
            if field_bytes > opts.max_part_fields_bytes {
                return Err(too_large());
            }
            let value = match String::from_utf8(value) {
                Ok(s) => s,
                Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
            };
            data.push(&name, value)?;
            continue;
        };

        // A file.
        if !uploads.push(&name, leaves.len())? {
            field.drain().await?;
            continue;
        }
        let mime = field
            .field
            .headers()
            .get(http::header::CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_string())
            .unwrap_or_default();
        let mut leaf = Leaf {
            name: go_base(&filename).to_string(),
            mime,
            size: 0,
            error: UPLOAD_OK,
            tmp_name: String::new(),
        };
        if filter.refuses(&leaf.name) {
            leaf.error = UPLOAD_EXTENSION;
            field.drain().await?;
        } else {
            stream_to_file(&mut field, &opts.dir, &mut leaf, &mut files).await?;
        }
        leaves.push(leaf);
    }

    let mut leaves: Vec<Option<Leaf>> = leaves.into_iter().map(Some).collect();
    let uploads = uploads.into_value(&mut |i: usize| {
        leaves
            .get_mut(i)
            .and_then(Option::take)
            .map_or(Value::Null, Leaf::into_value)
    });
    Ok(Multipart {
        data: data.into_value(&mut Value::String),
        uploads,
        files,
    })
}

/// A field being read; every chunk handed out counts as progress.
struct Part<'a, 'r> {
    field: &'a mut multer::Field<'r>,
    progress: &'a Progress,
}

impl Part<'_, '_> {
    async fn chunk(&mut self) -> Result<Option<Bytes>, PayloadError> {
        let chunk = self.field.chunk().await?;
        self.progress.consumed();
        Ok(chunk)
    }

    async fn drain(&mut self) -> Result<(), PayloadError> {
        while self.chunk().await?.is_some() {}
        Ok(())
    }
}

/// Copies one file part into a new temp file, recording the outcome in `leaf`.
async fn stream_to_file(
    field: &mut Part<'_, '_>,
    dir: &Path,
    leaf: &mut Leaf,
    files: &mut TempFiles,
) -> Result<(), PayloadError> {
    let created = tempfile::Builder::new()
        .prefix("upload")
        .rand_bytes(16)
        .permissions(Permissions::from_mode(0o600))
        .tempfile_in(dir);
    let (file, path) = match created {
        Ok(named) => named.into_parts(),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "Could not create a temp file for an upload; check http.uploads.dir.");
            leaf.error = UPLOAD_NO_TMP_DIR;
            return field.drain().await;
        }
    };
    leaf.tmp_name = path.to_string_lossy().into_owned();
    files.paths.push(path);
    let mut file = tokio::fs::File::from_std(file);
    let mut write_error = None;
    while let Some(chunk) = field.chunk().await? {
        if write_error.is_some() {
            continue;
        }
        match file.write_all(&chunk).await {
            Ok(()) => leaf.size += chunk.len() as u64,
            Err(e) => write_error = Some(e),
        }
    }
    if write_error.is_none() {
        // tokio writes in the background; flush waits for the last write.
        write_error = file.flush().await.err();
    }
    if let Some(e) = write_error {
        tracing::warn!(path = %leaf.tmp_name, error = %e, "Could not write an upload to its temp file.");
        leaf.error = UPLOAD_CANT_WRITE;
    }
    Ok(())
}

/// Body bytes taken by multer, and how many had been taken the last time it
/// handed out a field or a chunk. Both sides run in one task.
#[derive(Default)]
struct Progress {
    pulled: AtomicUsize,
    at_last_output: AtomicUsize,
}

impl Progress {
    fn consumed(&self) {
        self.at_last_output
            .store(self.pulled.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

/// Why [`Throttle`] stopped the body.
#[derive(Debug, thiserror::Error)]
#[error("more than {MAX_UNCONSUMED} bytes arrived without a complete part header or boundary")]
struct Unconsumed;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Hands multer the body but returns `Pending` (and wakes itself at once)
/// after every [`THROTTLE_BYTES`], so multer's buffer never takes more than
/// about that much before field data is handed out; and fails the body when
/// [`MAX_UNCONSUMED`] bytes go in with nothing coming out.
struct Throttle<S> {
    inner: Pin<Box<S>>,
    since_pause: usize,
    progress: Arc<Progress>,
}

impl<S> Throttle<S> {
    fn new(inner: S, progress: Arc<Progress>) -> Throttle<S> {
        Throttle {
            inner: Box::pin(inner),
            since_pause: 0,
            progress,
        }
    }
}

impl<S, E> Stream for Throttle<S>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: Into<BoxError>,
{
    type Item = Result<Bytes, BoxError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.since_pause >= THROTTLE_BYTES {
            self.since_pause = 0;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                self.since_pause += chunk.len();
                let p = &self.progress;
                let pulled = p.pulled.load(Ordering::Relaxed).saturating_add(chunk.len());
                p.pulled.store(pulled, Ordering::Relaxed);
                if pulled - p.at_last_output.load(Ordering::Relaxed) > MAX_UNCONSUMED {
                    return Poll::Ready(Some(Err(Box::new(Unconsumed))));
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                self.since_pause = 0;
                Poll::Pending
            }
        }
    }
}

/// The parts of a `Content-Disposition: form-data` header a form needs.
#[derive(Debug, PartialEq, Eq)]
struct Disposition {
    name: String,
    filename: Option<String>,
}

/// Parses `Content-Disposition` like Go's `mime.ParseMediaType` does for
/// multipart parts: the type must be `form-data`; parameter names are
/// case-insensitive; values are tokens or quoted strings (a backslash escapes
/// only a special character, so MSIE's `C:\dir\f.txt` survives); `filename*`
/// (RFC 2231, UTF-8 or US-ASCII) wins over `filename`. A malformed header or a
/// repeated parameter gives `None`, and the part is skipped, as in Go.
fn parse_disposition(raw: &[u8]) -> Option<Disposition> {
    let s = std::str::from_utf8(raw).ok()?;
    let (kind, mut rest) = s.split_at(s.find(';').unwrap_or(s.len()));
    if !kind.trim().eq_ignore_ascii_case("form-data") {
        return None;
    }
    let mut params: Vec<(String, String)> = Vec::new();
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            break;
        }
        if rest == ";" {
            break; // A trailing semicolon is allowed.
        }
        let (key, value, tail) = media_param(rest)?;
        if params.iter().any(|(k, _)| *k == key) {
            return None;
        }
        params.push((key, value));
        rest = tail;
    }
    let get = |k: &str| params.iter().find(|(pk, _)| pk == k).map(|(_, v)| v);
    let name = get("name*")
        .and_then(|v| decode_2231(v))
        .or_else(|| get("name").cloned())
        .unwrap_or_default();
    let filename = get("filename*")
        .and_then(|v| decode_2231(v))
        .or_else(|| get("filename").cloned());
    Some(Disposition { name, filename })
}

/// One `; key=value` parameter: the lower-cased key, the value and the rest.
fn media_param(s: &str) -> Option<(String, String, &str)> {
    let s = s.strip_prefix(';')?.trim_start();
    let key_len = s
        .bytes()
        .take_while(|&b| super::headers::is_token_byte(b))
        .count();
    if key_len == 0 {
        return None;
    }
    let key = s[..key_len].to_ascii_lowercase();
    let s = s[key_len..].trim_start().strip_prefix('=')?.trim_start();
    if let Some(quoted) = s.strip_prefix('"') {
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => return Some((key, value, &quoted[i + 1..])),
                '\\' if quoted[i + 1..].starts_with(|n: char| is_tspecial(n)) => {
                    if let Some((_, n)) = chars.next() {
                        value.push(n);
                    }
                }
                '\r' | '\n' => return None,
                c => value.push(c),
            }
        }
        None
    } else {
        let len = s
            .bytes()
            .take_while(|&b| super::headers::is_token_byte(b))
            .count();
        if len == 0 {
            return None;
        }
        Some((key, s[..len].to_string(), &s[len..]))
    }
}

/// RFC 2045 `tspecials`.
fn is_tspecial(c: char) -> bool {
    "()<>@,;:\\\"/[]?=".contains(c)
}

/// RFC 2231 `charset'lang'percent-encoded`, for UTF-8 and US-ASCII only.
fn decode_2231(v: &str) -> Option<String> {
    let mut parts = v.splitn(3, '\'');
    let charset = parts.next()?;
    let _lang = parts.next()?;
    let encoded = parts.next()?;
    if !charset.eq_ignore_ascii_case("utf-8") && !charset.eq_ignore_ascii_case("us-ascii") {
        return None;
    }
    let mut out = Vec::with_capacity(encoded.len());
    let b = encoded.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Go's `filepath.Base` on Unix: the last element, trailing slashes removed.
fn go_base(name: &str) -> &str {
    if name.is_empty() {
        return ".";
    }
    let trimmed = name.trim_end_matches('/');
    if trimmed.is_empty() {
        return "/";
    }
    match trimmed.rfind('/') {
        Some(i) => &trimmed[i + 1..],
        None => trimmed,
    }
}

/// Go's `path.Ext`: from the last dot of the last element, or empty.
fn go_ext(name: &str) -> &str {
    for (i, b) in name.bytes().enumerate().rev() {
        match b {
            b'/' => break,
            b'.' => return &name[i..],
            _ => {}
        }
    }
    ""
}

/// The extension filter, with entries normalised once per request.
struct ExtFilter {
    forbid: Vec<String>,
    allow: Vec<String>,
}

impl ExtFilter {
    fn new(forbid: &[String], allow: &[String]) -> ExtFilter {
        fn normalise(list: &[String]) -> Vec<String> {
            list.iter()
                .map(|e| {
                    let e = e.trim().to_lowercase();
                    if e.is_empty() || e.starts_with('.') {
                        e
                    } else {
                        format!(".{e}")
                    }
                })
                .collect()
        }
        ExtFilter {
            forbid: normalise(forbid),
            allow: normalise(allow),
        }
    }

    /// See the module docs for the rules.
    fn refuses(&self, name: &str) -> bool {
        if self.forbid.is_empty() && self.allow.is_empty() {
            return false;
        }
        if name.chars().any(char::is_control) {
            return true;
        }
        let forbidden = |ext: &str| self.forbid.iter().any(|f| f == ext);
        let allowed = |ext: &str| self.allow.iter().any(|a| a == ext);
        // RoadRunner's check.
        let raw = go_ext(name).to_lowercase();
        // Without trailing dots and spaces.
        let trimmed = name.trim_end_matches(|c: char| c == '.' || c.is_whitespace());
        let effective = go_ext(trimmed).to_lowercase();
        if forbidden(&raw) || forbidden(&effective) {
            return true;
        }
        // Inner extensions: `evil.php.jpg`.
        let inner = trimmed
            .split('.')
            .skip(1)
            .any(|seg| forbidden(&format!(".{}", seg.trim_end().to_lowercase())));
        if inner {
            return true;
        }
        let whitelisted = self.allow.is_empty() || (allowed(&raw) && allowed(&effective));
        !whitelisted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispositions() {
        let d = |s: &str| parse_disposition(s.as_bytes());
        let some = |name: &str, filename: Option<&str>| {
            Some(Disposition {
                name: name.into(),
                filename: filename.map(Into::into),
            })
        };
        assert_eq!(d(r#"form-data; name="a""#), some("a", None));
        assert_eq!(
            d(r#"Form-Data; NAME=a; filename="x.txt""#),
            some("a", Some("x.txt"))
        );
        assert_eq!(
            d(r#"form-data; name="f"; filename="""#),
            some("f", Some(""))
        );
        assert_eq!(
            d(r#"form-data; name="f"; filename="a.jpg"; filename*=UTF-8''evil%2Ephp"#),
            some("f", Some("evil.php"))
        );
        assert_eq!(
            d(r#"form-data; filename*=utf-8''%E2%82%AC.txt; name=f"#),
            some("f", Some("€.txt"))
        );
        assert_eq!(
            d(r#"form-data; name="f"; filename="C:\dir\a\"b.txt""#),
            some("f", Some(r#"C:\dir\a"b.txt"#))
        );
        assert_eq!(d(r#"form-data; name="a";"#), some("a", None));
        assert_eq!(d(r#"attachment; name="a""#), None);
        assert_eq!(d(r#"form-data; name="a"; name="b""#), None);
        assert_eq!(d(r#"form-data; name="a"#), None);
        assert_eq!(d(r#"form-data; name"#), None);
        assert_eq!(d("form-data"), some("", None));
    }

    #[test]
    fn boundaries_keep_their_case() {
        assert_eq!(
            multipart_boundary(
                "Multipart/Form-Data; boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW"
            )
            .as_deref(),
            Some("----WebKitFormBoundary7MA4YWxkTrZu0gW")
        );
        assert_eq!(
            multipart_boundary("multipart/form-data; boundary=\"A b\"").as_deref(),
            Some("A b")
        );
        assert_eq!(multipart_boundary("text/plain; boundary=x"), None);
        assert_eq!(multipart_boundary("multipart/form-data"), None);
    }

    #[test]
    fn base_and_ext() {
        for (name, base, ext) in [
            ("a.txt", "a.txt", ".txt"),
            ("../../x/evil.php", "evil.php", ".php"),
            ("dir/", "dir", ""),
            ("/", "/", ""),
            ("archive.tar.gz", "archive.tar.gz", ".gz"),
            ("evil.php.", "evil.php.", "."),
            ("noext", "noext", ""),
            (".htaccess", ".htaccess", ".htaccess"),
        ] {
            assert_eq!(go_base(name), base, "{name}");
            assert_eq!(go_ext(go_base(name)), ext, "{name}");
        }
    }

    #[test]
    fn extension_filter() {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let forbid = ExtFilter::new(&strings(&[".php", "PHTML"]), &[]);
        for (name, refused) in [
            ("ok.txt", false),
            ("archive.tar.gz", false),
            ("evil.php", true),
            ("evil.PHP", true),
            ("evil.pHp", true),
            ("evil.php.", true),
            ("evil.php..", true),
            ("evil.php ", true),
            ("evil.php. .", true),
            ("evil.php.jpg", true),
            ("evil.php .jpg", true),
            ("evil.phtml", true),
            ("evil.php%00.jpg", false),
            ("evil.php\0.jpg", true),
            ("evil\n.txt", true),
            ("php", false),
            (".php", true),
        ] {
            assert_eq!(forbid.refuses(name), refused, "forbid: {name:?}");
        }
        let allow = ExtFilter::new(&strings(&[".php"]), &strings(&[".jpg", "PNG"]));
        for (name, refused) in [
            ("a.jpg", false),
            ("a.JPG", false),
            ("a.png", false),
            ("a.gif", true),
            ("noext", true),
            ("a.jpg.", true),
            ("a.php", true),
            ("a.php.jpg", true),
        ] {
            assert_eq!(allow.refuses(name), refused, "allow: {name:?}");
        }
        let none = ExtFilter::new(&[], &[]);
        assert!(!none.refuses("evil.php\0"));
    }
}
