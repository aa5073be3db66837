//! The `static` middleware against real files, directories and symlinks in a
//! temp dir: traversal attempts, extension filters, validators, ranges,
//! streaming.

use courser_http::static_files::{StaticError, StaticFiles, StaticOptions};
use courser_http::Body;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};
use tempfile::TempDir;

/// Request headers of a case.
type Pairs<'a> = Vec<(&'a str, &'a str)>;
/// A conditional-request case: which server, request headers, status.
type Conditional<'a> = (&'a StaticFiles, Vec<(&'a str, String)>, u16);

/// A public root (served) next to a secret file outside it.
struct Site {
    _tmp: TempDir,
    root: std::path::PathBuf,
}

const SECRET: &str = "TOP-SECRET-CONTENT";
const HELLO: &str = "hello, static world\n";

fn site() -> Site {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("public");
    fs::create_dir_all(root.join("sub/deeper")).expect("mkdir");
    fs::create_dir_all(root.join("dir.d")).expect("mkdir");
    fs::write(tmp.path().join("secret.txt"), SECRET).expect("write");
    fs::write(tmp.path().join("secret.php"), SECRET).expect("write");
    fs::write(root.join("hello.txt"), HELLO).expect("write");
    fs::write(root.join("index.php"), "<?php echo 'source';").expect("write");
    fs::write(root.join("UPPER.PHP"), "<?php echo 'source';").expect("write");
    fs::write(root.join("style.css"), "body{}").expect("write");
    fs::write(root.join("app.js"), "let a;").expect("write");
    fs::write(root.join("page.html"), "<p>hi</p>").expect("write");
    fs::write(root.join("pic.png"), [0x89, b'P', b'N', b'G']).expect("write");
    fs::write(root.join("data.json"), "{}").expect("write");
    fs::write(root.join("blob.weird-ext"), "x").expect("write");
    fs::write(root.join("README"), "no extension").expect("write");
    fs::write(root.join("sub/deeper/nested.txt"), "nested").expect("write");
    fs::write(root.join("a..b.txt"), "dots").expect("write");
    fs::write(root.join("with space.txt"), "space").expect("write");
    fs::write(root.join("%2e%2e.txt"), "literal name").expect("write");
    fs::write(root.join("digits.txt"), "0123456789").expect("write");
    fs::write(root.join("empty.txt"), "").expect("write");
    // Symlinks: out of the root (file and directory), and inside it.
    std::os::unix::fs::symlink(tmp.path().join("secret.txt"), root.join("escape.txt"))
        .expect("symlink");
    std::os::unix::fs::symlink(tmp.path(), root.join("updir")).expect("symlink");
    std::os::unix::fs::symlink(root.join("hello.txt"), root.join("alias.txt")).expect("symlink");
    std::os::unix::fs::symlink(root.join("index.php"), root.join("source.txt")).expect("symlink");
    std::os::unix::fs::symlink("/etc/passwd", root.join("passwd.txt")).expect("symlink");
    Site { _tmp: tmp, root }
}

fn opts(root: &Path) -> StaticOptions {
    StaticOptions {
        dir: root.to_path_buf(),
        forbid: vec![".php".into()],
        ..StaticOptions::default()
    }
}

/// What a request should come back as.
#[derive(Debug, Clone, PartialEq)]
enum Want {
    /// Passed on to PHP.
    Php,
    /// Answered here with this status and body.
    Served(u16, &'static str),
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
    frames: usize,
}

async fn read(resp: Response<Body>) -> Answer {
    let (parts, mut body) = resp.into_parts();
    let mut out = Vec::new();
    let mut frames = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.expect("body frame");
        if let Ok(data) = frame.into_data() {
            frames += 1;
            out.extend_from_slice(&data);
        }
    }
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: out,
        frames,
    }
}

async fn request(
    sf: &StaticFiles,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
) -> Option<Answer> {
    let uri: Uri = path.parse().expect("uri");
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.append(
            http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
            HeaderValue::from_str(v).expect("value"),
        );
    }
    match sf.serve(&method, &uri, &map).await {
        Some(resp) => Some(read(resp).await),
        None => None,
    }
}

async fn check(sf: &StaticFiles, method: Method, path: &str, want: Want) {
    let got = request(sf, method.clone(), path, &[]).await;
    let got = got.map(|a| {
        let body = String::from_utf8_lossy(&a.body).to_string();
        assert!(!body.contains(SECRET), "{method} {path} leaked the secret");
        assert!(!body.contains("<?php"), "{method} {path} leaked PHP source");
        (a.status.as_u16(), body)
    });
    let want = match want {
        Want::Php => None,
        Want::Served(s, b) => Some((s, b.to_string())),
    };
    assert_eq!(got, want, "{method} {path}");
}

#[tokio::test]
async fn traversal_attempts_never_leave_the_root() {
    let s = site();
    let sf = StaticFiles::new(opts(&s.root)).expect("static");
    let forbidden = Want::Served(403, "");
    let cases: &[(&str, Want)] = &[
        ("/../secret.txt", forbidden.clone()),
        ("/sub/../../secret.txt", forbidden.clone()),
        ("/sub/deeper/../../../secret.txt", forbidden.clone()),
        ("/%2e%2e/secret.txt", forbidden.clone()),
        ("/%2E%2E/secret.txt", forbidden.clone()),
        ("/.%2e/secret.txt", forbidden.clone()),
        ("/sub/%2e%2e/%2e%2e/secret.txt", forbidden.clone()),
        ("/..%2fsecret.txt", forbidden.clone()),
        ("/sub%2f..%2f..%2fsecret.txt", forbidden.clone()),
        // Double-encoded: decoded once, it is a literal name that does not exist.
        ("/%252e%252e/secret.txt", Want::Php),
        ("/%252e%252e%252fsecret.txt", Want::Php),
        // A file that really has that literal name is what it names.
        ("/%252e%252e.txt", Want::Served(200, "literal name")),
        // Backslashes, raw and encoded.
        ("/..%5csecret.txt", Want::Php),
        ("/sub%5c..%5c..%5csecret.txt", Want::Php),
        ("/%5c..%5csecret.txt", Want::Php),
        // NUL and other control bytes.
        ("/hello.txt%00.png", Want::Php),
        ("/secret.txt%00", Want::Php),
        ("/hello%0a.txt", Want::Php),
        // Invalid UTF-8 after decoding.
        ("/%ff%fe.txt", Want::Php),
        // Absolute paths stay inside the root.
        ("//etc/passwd", Want::Php),
        ("/%2fetc%2fpasswd", Want::Php),
        ("/%2f%2fetc/hosts.txt", Want::Php),
        ("http://example.com/../secret.txt", forbidden.clone()),
        // Symlinks leading outside the root.
        ("/escape.txt", Want::Php),
        ("/updir/secret.txt", Want::Php),
        ("/passwd.txt", Want::Php),
        // A symlink inside the root is fine; one that lands on a .php is not.
        ("/alias.txt", Want::Served(200, HELLO)),
        ("/source.txt", Want::Php),
        // Dots that are not a `..` segment are plain names.
        ("/a..b.txt", Want::Served(200, "dots")),
        ("/./hello.txt", Want::Served(200, HELLO)),
        ("/sub/./deeper/nested.txt", Want::Served(200, "nested")),
        ("//hello.txt", Want::Served(200, HELLO)),
        ("/with%20space.txt", Want::Served(200, "space")),
    ];
    for (path, want) in cases {
        check(&sf, Method::GET, path, want.clone()).await;
    }
}

#[tokio::test]
async fn what_goes_to_php() {
    let s = site();
    let sf = StaticFiles::new(opts(&s.root)).expect("static");
    let cases: &[(Method, &str, Want)] = &[
        (Method::GET, "/missing.txt", Want::Php),
        (Method::GET, "/", Want::Php),
        (Method::GET, "/sub", Want::Php),
        (Method::GET, "/dir.d", Want::Php),
        (Method::GET, "/sub/", Want::Php),
        (Method::GET, "/README", Want::Php),
        (Method::GET, "/hello.txt/extra", Want::Php),
        (Method::POST, "/hello.txt", Want::Php),
        (Method::PUT, "/hello.txt", Want::Php),
        (Method::DELETE, "/hello.txt", Want::Php),
        (Method::OPTIONS, "/hello.txt", Want::Php),
        (Method::GET, "/hello.txt?x=1", Want::Served(200, HELLO)),
        (
            Method::GET,
            "/sub/deeper/nested.txt",
            Want::Served(200, "nested"),
        ),
    ];
    for (method, path, want) in cases {
        check(&sf, method.clone(), path, want.clone()).await;
    }
}

#[tokio::test]
async fn forbid_and_allow() {
    let s = site();
    fs::write(s.root.join("shell.php."), "<?php x").expect("write");
    fs::write(s.root.join("shell.php. . "), "<?php x").expect("write");
    fs::write(s.root.join("Mixed.PhP"), "<?php x").expect("write");
    fs::write(s.root.join("config.inc"), "<?php x").expect("write");

    // forbid only
    let sf = StaticFiles::new(StaticOptions {
        forbid: vec![".php".into(), ".INC".into()],
        ..opts(&s.root)
    })
    .expect("static");
    let cases: &[(&str, Want)] = &[
        ("/index.php", Want::Php),
        ("/UPPER.PHP", Want::Php),
        ("/Mixed.PhP", Want::Php),
        ("/shell.php.", Want::Php),
        ("/shell.php.%20.%20", Want::Php),
        ("/config.inc", Want::Php),
        ("/hello.txt", Want::Served(200, HELLO)),
        ("/style.css", Want::Served(200, "body{}")),
    ];
    for (path, want) in cases {
        check(&sf, Method::GET, path, want.clone()).await;
    }

    // allow is a whitelist, forbid wins over it
    let sf = StaticFiles::new(StaticOptions {
        forbid: vec![".php".into()],
        allow: vec![".txt".into(), "CSS".into(), ".php".into()],
        ..opts(&s.root)
    })
    .expect("static");
    let cases: &[(&str, Want)] = &[
        ("/hello.txt", Want::Served(200, HELLO)),
        ("/style.css", Want::Served(200, "body{}")),
        ("/app.js", Want::Php),
        ("/index.php", Want::Php),
        ("/source.txt", Want::Php),
    ];
    for (path, want) in cases {
        check(&sf, Method::GET, path, want.clone()).await;
    }

    // allow that forbid empties entirely serves nothing
    let sf = StaticFiles::new(StaticOptions {
        forbid: vec![".php".into()],
        allow: vec![".php".into()],
        ..opts(&s.root)
    })
    .expect("static");
    check(&sf, Method::GET, "/hello.txt", Want::Php).await;
    check(&sf, Method::GET, "/index.php", Want::Php).await;
}

#[tokio::test]
async fn construction_errors() {
    let s = site();
    let missing = StaticFiles::new(StaticOptions {
        dir: s.root.join("nope"),
        ..StaticOptions::default()
    });
    assert!(
        matches!(missing, Err(StaticError::Dir { .. })),
        "{missing:?}"
    );
    let file = StaticFiles::new(StaticOptions {
        dir: s.root.join("hello.txt"),
        ..StaticOptions::default()
    });
    assert!(
        matches!(file, Err(StaticError::NotADirectory { .. })),
        "{file:?}"
    );
    let bad_name = StaticFiles::new(StaticOptions {
        response_headers: vec![("bad name".into(), "x".into())],
        ..opts(&s.root)
    });
    assert!(matches!(bad_name, Err(StaticError::HeaderName { .. })));
    let bad_value = StaticFiles::new(StaticOptions {
        response_headers: vec![("x-a".into(), "a\nb".into())],
        ..opts(&s.root)
    });
    assert!(matches!(bad_value, Err(StaticError::HeaderValue { .. })));
    // A relative dir is canonicalized.
    let sf = StaticFiles::new(StaticOptions {
        dir: s.root.join("sub/../sub"),
        ..StaticOptions::default()
    })
    .expect("static");
    assert_eq!(
        sf.root(),
        fs::canonicalize(s.root.join("sub")).expect("canon")
    );
}

#[tokio::test]
async fn content_types() {
    let s = site();
    let sf = StaticFiles::new(opts(&s.root)).expect("static");
    let cases: &[(&str, &str)] = &[
        ("/hello.txt", "text/plain; charset=utf-8"),
        ("/style.css", "text/css; charset=utf-8"),
        ("/page.html", "text/html; charset=utf-8"),
        ("/pic.png", "image/png"),
        ("/data.json", "application/json"),
        ("/blob.weird-ext", "application/octet-stream"),
    ];
    for (path, want) in cases {
        let a = request(&sf, Method::GET, path, &[]).await.expect(path);
        assert_eq!(a.headers["content-type"], *want, "{path}");
    }
    let a = request(&sf, Method::GET, "/app.js", &[]).await.expect("js");
    let ct = a.headers["content-type"].to_str().expect("ascii");
    assert!(
        ct.contains("javascript") && ct.ends_with("charset=utf-8"),
        "{ct}"
    );
}

#[tokio::test]
async fn get_and_head_headers() {
    let s = site();
    let sf = StaticFiles::new(StaticOptions {
        response_headers: vec![
            ("Cache-Control".into(), "public, max-age=60".into()),
            ("X-Served-By".into(), "courser".into()),
        ],
        request_headers: vec![("X-Ignored".into(), "1".into())],
        ..opts(&s.root)
    })
    .expect("static");
    let get = request(&sf, Method::GET, "/hello.txt", &[])
        .await
        .expect("get");
    assert_eq!(get.status, StatusCode::OK);
    assert_eq!(get.body, HELLO.as_bytes());
    assert_eq!(
        get.headers["content-length"],
        HELLO.len().to_string().as_str()
    );
    assert_eq!(get.headers["accept-ranges"], "bytes");
    assert_eq!(get.headers["cache-control"], "public, max-age=60");
    assert_eq!(get.headers["x-served-by"], "courser");
    assert!(get.headers.get("etag").is_none(), "no etag unless asked");
    let lm = get.headers["last-modified"].to_str().expect("ascii");
    let mtime = fs::metadata(s.root.join("hello.txt"))
        .and_then(|m| m.modified())
        .expect("mtime");
    assert_eq!(lm, httpdate::fmt_http_date(mtime));

    let head = request(&sf, Method::HEAD, "/hello.txt", &[])
        .await
        .expect("head");
    assert_eq!(head.status, StatusCode::OK);
    assert!(head.body.is_empty());
    assert_eq!(head.frames, 0);
    for h in [
        "content-length",
        "content-type",
        "last-modified",
        "accept-ranges",
        "cache-control",
    ] {
        assert_eq!(head.headers.get(h), get.headers.get(h), "{h}");
    }

    // Configured headers also ride on the 403.
    let f = request(&sf, Method::GET, "/../x.txt", &[])
        .await
        .expect("403");
    assert_eq!(f.status, StatusCode::FORBIDDEN);
    assert_eq!(f.headers["x-served-by"], "courser");

    let empty = request(&sf, Method::GET, "/empty.txt", &[])
        .await
        .expect("empty");
    assert_eq!(empty.status, StatusCode::OK);
    assert_eq!(empty.headers["content-length"], "0");
    assert!(empty.body.is_empty());
}

#[tokio::test]
async fn etags_and_conditional_requests() {
    let s = site();
    let strong = StaticFiles::new(StaticOptions {
        calculate_etag: true,
        ..opts(&s.root)
    })
    .expect("static");
    let weak = StaticFiles::new(StaticOptions {
        calculate_etag: true,
        weak: true,
        ..opts(&s.root)
    })
    .expect("static");

    let a = request(&strong, Method::GET, "/hello.txt", &[])
        .await
        .expect("get");
    let stag = a.headers["etag"].to_str().expect("ascii").to_string();
    assert!(stag.starts_with('"') && stag.ends_with('"'), "{stag}");
    // Same content elsewhere: same strong tag; different content: different.
    let b = request(&strong, Method::GET, "/alias.txt", &[])
        .await
        .expect("get");
    assert_eq!(b.headers["etag"], stag.as_str());
    let c = request(&strong, Method::GET, "/style.css", &[])
        .await
        .expect("get");
    assert_ne!(c.headers["etag"], stag.as_str());

    let w = request(&weak, Method::GET, "/hello.txt", &[])
        .await
        .expect("get");
    let wtag = w.headers["etag"].to_str().expect("ascii").to_string();
    assert!(wtag.starts_with("W/\""), "{wtag}");

    let lm = a.headers["last-modified"]
        .to_str()
        .expect("ascii")
        .to_string();
    let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(3600));
    let earlier = httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000));
    let cases: Vec<Conditional> = vec![
        (&strong, vec![("if-none-match", stag.clone())], 304),
        (
            &strong,
            vec![("if-none-match", format!("\"nope\", {stag}"))],
            304,
        ),
        (&strong, vec![("if-none-match", format!("W/{stag}"))], 304),
        (&strong, vec![("if-none-match", "*".into())], 304),
        (&strong, vec![("if-none-match", "\"nope\"".into())], 200),
        (&weak, vec![("if-none-match", wtag.clone())], 304),
        (
            &weak,
            vec![("if-none-match", wtag.trim_start_matches("W/").into())],
            304,
        ),
        (&weak, vec![("if-none-match", stag.clone())], 200),
        (&strong, vec![("if-modified-since", lm.clone())], 304),
        (&strong, vec![("if-modified-since", later.clone())], 304),
        (&strong, vec![("if-modified-since", earlier.clone())], 200),
        (&strong, vec![("if-modified-since", "garbage".into())], 200),
        // If-None-Match wins over If-Modified-Since.
        (
            &strong,
            vec![
                ("if-none-match", "\"nope\"".into()),
                ("if-modified-since", later.clone()),
            ],
            200,
        ),
        (&strong, vec![("if-match", stag.clone())], 200),
        (&strong, vec![("if-match", "\"nope\"".into())], 412),
        (&weak, vec![("if-match", wtag.clone())], 412),
        (&strong, vec![("if-unmodified-since", earlier.clone())], 412),
        (&strong, vec![("if-unmodified-since", lm.clone())], 200),
    ];
    for (sf, headers, want) in cases {
        let hs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        for method in [Method::GET, Method::HEAD] {
            let got = request(sf, method.clone(), "/hello.txt", &hs)
                .await
                .expect("served");
            assert_eq!(got.status.as_u16(), want, "{method} {hs:?}");
            if want != 200 {
                assert!(got.body.is_empty(), "{hs:?}");
                assert!(got.headers.get("content-length").is_none(), "{hs:?}");
            }
            if want == 304 {
                assert!(got.headers.get("etag").is_some());
                assert!(got.headers.get("last-modified").is_some());
            }
        }
    }

    // A changed file gets a new strong tag (the cache is keyed by size and mtime).
    fs::write(
        s.root.join("hello.txt"),
        "changed content, longer than before\n",
    )
    .expect("write");
    let d = request(
        &strong,
        Method::GET,
        "/hello.txt",
        &[("if-none-match", stag.as_str())],
    )
    .await
    .expect("get");
    assert_eq!(d.status, StatusCode::OK);
    assert_ne!(d.headers["etag"], stag.as_str());
}

#[tokio::test]
async fn ranges() {
    let s = site();
    let sf = StaticFiles::new(StaticOptions {
        calculate_etag: true,
        ..opts(&s.root)
    })
    .expect("static");
    let full = request(&sf, Method::GET, "/digits.txt", &[])
        .await
        .expect("get");
    let tag = full.headers["etag"].to_str().expect("ascii").to_string();
    let lm = full.headers["last-modified"]
        .to_str()
        .expect("ascii")
        .to_string();
    // (headers, status, body, content-range)
    let cases: Vec<(Pairs, u16, &str, Option<&str>)> = vec![
        (
            vec![("range", "bytes=0-3")],
            206,
            "0123",
            Some("bytes 0-3/10"),
        ),
        (
            vec![("range", "bytes=7-")],
            206,
            "789",
            Some("bytes 7-9/10"),
        ),
        (vec![("range", "bytes=-2")], 206, "89", Some("bytes 8-9/10")),
        (
            vec![("range", "bytes=-50")],
            206,
            "0123456789",
            Some("bytes 0-9/10"),
        ),
        (
            vec![("range", "bytes=5-100")],
            206,
            "56789",
            Some("bytes 5-9/10"),
        ),
        (vec![("range", "bytes=4-4")], 206, "4", Some("bytes 4-4/10")),
        (vec![("range", "bytes=10-")], 416, "", Some("bytes */10")),
        (vec![("range", "bytes=10-20")], 416, "", Some("bytes */10")),
        (vec![("range", "bytes=-0")], 416, "", Some("bytes */10")),
        (vec![("range", "bytes=0-1,4-5")], 200, "0123456789", None),
        (vec![("range", "bytes=5-2")], 200, "0123456789", None),
        (vec![("range", "lines=1-2")], 200, "0123456789", None),
        (
            vec![("range", "bytes=0-3"), ("if-range", tag.as_str())],
            206,
            "0123",
            Some("bytes 0-3/10"),
        ),
        (
            vec![("range", "bytes=0-3"), ("if-range", lm.as_str())],
            206,
            "0123",
            Some("bytes 0-3/10"),
        ),
        (
            vec![("range", "bytes=0-3"), ("if-range", "\"stale\"")],
            200,
            "0123456789",
            None,
        ),
        (
            vec![
                ("range", "bytes=0-3"),
                ("if-range", "Mon, 01 Jan 2001 00:00:00 GMT"),
            ],
            200,
            "0123456789",
            None,
        ),
    ];
    for (headers, status, body, range) in cases {
        let a = request(&sf, Method::GET, "/digits.txt", &headers)
            .await
            .expect("served");
        assert_eq!(a.status.as_u16(), status, "{headers:?}");
        assert_eq!(String::from_utf8_lossy(&a.body), body, "{headers:?}");
        assert_eq!(
            a.headers
                .get("content-range")
                .map(|v| v.to_str().expect("ascii")),
            range,
            "{headers:?}"
        );
        assert_eq!(
            a.headers["content-length"],
            body.len().to_string().as_str(),
            "{headers:?}"
        );
        assert_eq!(a.headers["accept-ranges"], "bytes");
    }
    // HEAD with a range: the 206 headers, no body.
    let h = request(&sf, Method::HEAD, "/digits.txt", &[("range", "bytes=2-5")])
        .await
        .expect("head");
    assert_eq!(h.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(h.headers["content-length"], "4");
    assert_eq!(h.headers["content-range"], "bytes 2-5/10");
    assert!(h.body.is_empty());
    // An empty file ignores ranges.
    let e = request(&sf, Method::GET, "/empty.txt", &[("range", "bytes=0-")])
        .await
        .expect("empty");
    assert_eq!(e.status, StatusCode::OK);
}

#[tokio::test]
async fn large_file_is_streamed() {
    let s = site();
    let len: usize = 20 * 1024 * 1024;
    let content: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    fs::write(s.root.join("big.bin"), &content).expect("write");
    let sf = StaticFiles::new(StaticOptions {
        calculate_etag: true,
        ..opts(&s.root)
    })
    .expect("static");
    let a = request(&sf, Method::GET, "/big.bin", &[])
        .await
        .expect("get");
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.headers["content-length"], len.to_string().as_str());
    assert_eq!(a.body.len(), len);
    assert!(a.body == content, "the streamed body differs from the file");
    assert!(a.frames >= 100, "expected many frames, got {}", a.frames);

    // A range in the middle of the big file streams just that part.
    let start = 5 * 1024 * 1024 + 7;
    let end = 9 * 1024 * 1024;
    let r = format!("bytes={start}-{end}");
    let p = request(&sf, Method::GET, "/big.bin", &[("range", r.as_str())])
        .await
        .expect("range");
    assert_eq!(p.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(p.body.len(), end - start + 1);
    assert!(p.body == content[start..=end], "the range body differs");
    assert!(p.frames > 1);
}
