//! Feeds arbitrary bytes as a `multipart/form-data` body, split into chunks of
//! a fuzzer-chosen size, to `courser_http::payload::parse_multipart` with
//! `.php` forbidden, and checks:
//! - a parsed body's form tree and upload tree are valid Go-style JSON;
//! - every upload with error 0 has a temp file in the uploads directory whose
//!   size is the size PHP is told, and its name is not a `.php` name;
//! - every temp file is deleted when the result is dropped or parsing fails.
//!
//! Input layout: 1 control byte (chunk size, boundary), then the body.
#![no_main]

use bytes::Bytes;
use courser_http::payload::{self, UploadOptions};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::path::Path;
use std::sync::OnceLock;

const BOUNDARIES: [&str; 4] = [
    "BOUNDARY",
    "x",
    "----WebKitFormBoundary7MA4YWxkTrZu0gW",
    "a'b(c)d+e",
];

fn dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("tempdir"))
        .path()
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    })
}

/// An independent check for the names the filter must refuse with `.php`
/// forbidden: a `.php` extension anywhere, in any case, trailing dots and
/// spaces ignored, or a control character.
fn php_like(name: &str) -> bool {
    let lower = name.to_lowercase();
    let trimmed = lower.trim_end_matches(|c: char| c == '.' || c.is_whitespace());
    trimmed.ends_with(".php")
        || trimmed.contains(".php.")
        || trimmed.split('.').skip(1).any(|s| s.trim_end() == "php")
        || name.chars().any(char::is_control)
}

/// Checks every upload leaf; returns how many have a temp file.
fn check_leaves(v: &Value, files: &[&Path]) -> usize {
    let map = match v {
        Value::Object(map) => map,
        // `f[]` names make lists.
        Value::Array(items) => return items.iter().map(|i| check_leaves(i, files)).sum(),
        other => panic!("upload tree node is neither an object nor a list: {other}"),
    };
    if let Some(Value::String(tmp)) = map.get("tmpName") {
        let name = map["name"].as_str().expect("name");
        let size = map["size"].as_u64().expect("size");
        let error = map["error"].as_u64().expect("error");
        assert!(
            !name.contains('/'),
            "a file name with a slash reached PHP: {name:?}"
        );
        match error {
            0 => {
                assert!(!php_like(name), "{name:?} passed the .php filter");
                let p = Path::new(tmp);
                assert!(
                    p.starts_with(dir()),
                    "temp file outside the uploads dir: {tmp}"
                );
                assert!(files.contains(&p), "{tmp} is not among the temp files");
                let len = std::fs::metadata(p).expect("temp file exists").len();
                assert_eq!(len, size, "size of {tmp}");
                return 1;
            }
            8 => {
                assert!(tmp.is_empty() && size == 0, "refused upload with data: {v}");
                assert!(php_like(name), "{name:?} refused but not a .php name");
                return 0;
            }
            other => panic!("unexpected upload error {other}: {v}"),
        }
    }
    map.values().map(|child| check_leaves(child, files)).sum()
}

fn leftovers() -> usize {
    std::fs::read_dir(dir()).map(|d| d.count()).unwrap_or(0)
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, body)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(ctl & 0x3f) + 1;
    let boundary = BOUNDARIES[usize::from(ctl >> 6)];
    let opts = UploadOptions {
        dir: dir().to_path_buf(),
        forbid: vec![".php".into()],
        allow: Vec::new(),
        max_part_fields_bytes: 1 << 16,
        max_parts: 1000,
    };
    let chunks: Vec<Result<Bytes, std::io::Error>> = body
        .chunks(chunk)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let stream = futures_util::stream::iter(chunks);
    let res = runtime().block_on(payload::parse_multipart(stream, boundary, &opts));
    if let Ok(m) = &res {
        for tree in [&m.data, &m.uploads] {
            assert!(tree.is_object(), "{tree}");
            let mut out = Vec::new();
            payload::to_go_json(tree, &mut out);
            serde_json::from_slice::<Value>(&out).expect("tree JSON is valid");
        }
        let files: Vec<&Path> = m.files.paths().collect();
        assert_eq!(
            check_leaves(&m.uploads, &files),
            files.len(),
            "{}",
            m.uploads
        );
    }
    drop(res);
    assert_eq!(leftovers(), 0, "temp files left behind");
});
