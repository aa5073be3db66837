//! End-to-end tests of the HTTP front (spec section 3 and `http.*` keys):
//! the real `courser` binary, real `php` workers, real HTTP over loopback.
//!
//! Most tests use `tests/php/front_worker.php`, which answers `/dump` with the
//! request context as the server encoded it (first line) and the body exactly
//! as PHP received it, so the assertions are on what PHP really sees.

mod common;

use common::{
    body_text, get, header_value, php_script, read_one_response, request, sdk_file, send_raw, sh,
    wait_for, Resp, Server,
};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One worker, generous waits: the default pool of these tests.
const ONE_WORKER: &str = "    num_workers: 1\n    allocate_timeout: 5s\n    destroy_timeout: 2s\n";

/// Starts courser on `worker` with `http` lines (indented two spaces, `{dir}`
/// replaced by the server's temp dir) and `pool` lines (indented four).
fn start(worker: PathBuf, http: &str, pool: &str) -> Server {
    Server::from_yaml(
        |port, dir| {
            format!(
                "version: \"3\"\nserver:\n  command: \"php {w}\"\nhttp:\n  address: 127.0.0.1:{port}\n{http}  pool:\n{pool}logs:\n  level: info\nendure:\n  grace_period: 2s\n",
                w = worker.display(),
                http = http.replace("{dir}", &dir.display().to_string()),
            )
        },
        &[],
        None,
    )
}

fn front(http: &str, pool: &str) -> Server {
    start(php_script("front_worker.php"), http, pool)
}

/// A request with extra header lines; `Connection: close`, and a
/// `Content-Length` when there is a body.
fn req(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (n, v) in headers {
        raw.push_str(&format!("{n}: {v}\r\n"));
    }
    if !body.is_empty() {
        raw.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    raw.push_str("\r\n");
    let mut raw = raw.into_bytes();
    raw.extend_from_slice(body);
    send_raw(port, &raw).unwrap_or_else(|| panic!("no answer to {method} {path}"))
}

/// Splits a `/dump` answer into the context JSON and the body PHP received.
fn dump(r: &Resp) -> (String, Vec<u8>) {
    assert_eq!(r.0, 200, "{}\n{}", r.1, String::from_utf8_lossy(&r.2));
    let nl = r.2.iter().position(|&b| b == b'\n').expect("context line");
    (
        String::from_utf8_lossy(&r.2[..nl]).into_owned(),
        r.2[nl + 1..].to_vec(),
    )
}

/// Deterministic pseudo-random bytes.
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) as u8
        })
        .collect()
}

fn md5sum(p: &Path) -> String {
    let out = sh(&format!("md5sum '{}'", p.display()));
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("md5")
        .to_string()
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn pid_of(port: u16) -> u32 {
    body_text(&get(port, "/pid")).parse().expect("pid")
}

// 1. Request shapes ---------------------------------------------------------

#[test]
fn forms_json_head_query_cookies_and_headers_reach_php() {
    let s = front("", ONE_WORKER);
    let p = s.port;
    let form = [("Content-Type", "application/x-www-form-urlencoded")];

    // An urlencoded form is parsed into Go's data tree (sorted keys, lists,
    // nesting, a repeated plain key keeps its last value).
    let r = req(p, "POST", "/dump", &form, b"a=1&b[]=x&b[]=y&c[d]=e&k=1&k=2");
    let (ctx, body) = dump(&r);
    assert!(ctx.contains("\"parsed\":true"), "{ctx}");
    assert_eq!(
        String::from_utf8_lossy(&body),
        r#"{"a":"1","b":["x","y"],"c":{"d":"e"},"k":"2"}"#
    );

    // A JSON body is passed through raw.
    let json = br#"{"k":[1,2],"s":"<&>"}"#;
    let r = req(
        p,
        "POST",
        "/dump",
        &[("Content-Type", "application/json")],
        json,
    );
    let (ctx, body) = dump(&r);
    assert!(ctx.contains("\"parsed\":false"), "{ctx}");
    assert_eq!(body, json.to_vec());

    // HEAD: the status and headers, never a body (PHP wrote one).
    let r = req(p, "HEAD", "/dump", &[], b"");
    assert_eq!(r.0, 200, "{}", r.1);
    assert!(r.2.is_empty(), "HEAD answered with a body: {:?}", r.2);
    // OPTIONS: the body is not read and not parsed (spec 3.4).
    let r = req(p, "OPTIONS", "/dump", &form, b"a=1");
    let (ctx, body) = dump(&r);
    assert!(
        ctx.contains("\"method\":\"OPTIONS\"") && ctx.contains("\"parsed\":false"),
        "{ctx}"
    );
    assert!(body.is_empty(), "{body:?}");

    // Query string, cookies (URL-unescaped), repeated and lower-case request headers.
    let r = req(
        p,
        "GET",
        "/dump?x=1&y%5B%5D=2&z=a+b",
        &[
            ("Cookie", "sid=abc123; theme=dark%20mode"),
            ("X-Multi", "one"),
            ("X-Multi", "two"),
            ("x-lower-case", "v"),
        ],
        b"",
    );
    let (ctx, body) = dump(&r);
    for needle in [
        "\"method\":\"GET\"",
        "\"uri\":\"http://localhost/dump?x=1&y%5B%5D=2&z=a+b\"",
        "\"rawQuery\":\"x=1&y%5B%5D=2&z=a+b\"",
        "\"cookies\":{\"sid\":\"abc123\",\"theme\":\"dark mode\"}",
        "\"X-Multi\":[\"one\",\"two\"]",
        "\"X-Lower-Case\":[\"v\"]",
        "\"Cookie\":[\"sid=abc123; theme=dark%20mode\"]",
        "\"protocol\":\"HTTP/1.1\"",
        "\"remoteAddr\":\"127.0.0.1\"",
    ] {
        assert!(ctx.contains(needle), "{needle} not in {ctx}");
    }
    assert!(
        !ctx.contains("\"Host\""),
        "Host must not be a header: {ctx}"
    );
    assert!(body.is_empty());

    // Two Set-Cookie values stay two header lines.
    let r = req(p, "GET", "/cookies", &[], b"");
    let lines: Vec<&str> =
        r.1.lines()
            .filter(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
            .collect();
    assert_eq!(
        lines,
        ["set-cookie: a=1; Path=/", "set-cookie: b=2; HttpOnly"],
        "{}",
        r.1
    );
}

// 2. Uploads ------------------------------------------------------------------

#[test]
fn multipart_uploads_are_intact_filtered_private_and_removed() {
    let s = front(
        "  uploads:\n    dir: \"{dir}/uploads\"\n    forbid: [\".php\"]\n",
        ONE_WORKER,
    );
    let up = s.dir.path().join("uploads");
    std::fs::create_dir(&up).expect("uploads dir");
    let big = s.dir.path().join("big.bin");
    std::fs::write(&big, noise(300_000, 7)).expect("write");
    let small = s.dir.path().join("small.txt");
    let small_text = "<?php echo 'pwned';\n";
    std::fs::write(&small, small_text).expect("write");
    let (b, sm) = (big.display(), small.display());
    assert!(files_in(&up).is_empty());

    let out = sh(&format!(
        "curl -s --max-time 10 -F 'doc=@{b}' -F 'list[]=@{sm};filename=notes.txt' \
         -F 'e1=@{sm};filename=evil.php' -F 'e2=@{sm};filename=evil.PHP' \
         -F 'e3=@{sm};filename=evil.php.' -F 'name=val' {}/uploads",
        s.url()
    ));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains("\"parsed\":true") && text.contains(r#""form":"{\"name\":\"val\"}""#),
        "{text}"
    );
    // Delivered intact, in the configured dir, readable by PHP, mode 0600.
    let tmp = format!("\"tmpName\":\"{}/upload", up.display());
    for (field, name, size, md5) in [
        ("doc", "big.bin", 300_000, md5sum(&big)),
        ("list[0]", "notes.txt", small_text.len(), md5sum(&small)),
    ] {
        let leaf = format!(
            "{{\"field\":\"{field}\",\"name\":\"{name}\",\"size\":{size},\"error\":0,{tmp}"
        );
        let at = text
            .find(&leaf)
            .unwrap_or_else(|| panic!("{leaf} not in {text}"));
        let rest = &text[at..];
        let rest = &rest[..rest.find('}').expect("leaf end")];
        assert!(
            rest.ends_with(&format!(
                "\"exists\":true,\"mode\":\"600\",\"md5\":\"{md5}\""
            )),
            "{field}: {rest}"
        );
    }
    // A forbidden extension (any case, trailing dot) is error 8 with no file.
    for (field, name) in [("e1", "evil.php"), ("e2", "evil.PHP"), ("e3", "evil.php.")] {
        let leaf = format!(
            "{{\"field\":\"{field}\",\"name\":\"{name}\",\"size\":0,\"error\":8,\"tmpName\":\"\",\"exists\":false"
        );
        assert!(text.contains(&leaf), "{leaf} not in {text}");
    }
    // The temp files are gone once the response is out.
    assert!(
        wait_for(Duration::from_secs(2), || files_in(&up).is_empty()),
        "upload temp files left behind: {:?}",
        files_in(&up)
    );
}

// 3. Request size limit ---------------------------------------------------------

#[test]
fn bodies_over_max_request_size_get_413_and_never_reach_php() {
    let s = front("  max_request_size: 1\n", ONE_WORKER);
    let before: u32 = body_text(&get(s.port, "/count")).parse().expect("count");
    let big = s.dir.path().join("big.bin");
    std::fs::write(&big, noise(2 << 20, 3)).expect("write");
    let small = s.dir.path().join("small.bin");
    std::fs::write(&small, noise(512 << 10, 4)).expect("write");
    let curl = |extra: &str, file: &Path| {
        sh(&format!(
            "curl -s --max-time 10 -o /dev/null -w '%{{http_code}}' -H 'Content-Type: application/octet-stream' {extra} --data-binary @{} {}/count",
            file.display(),
            s.url()
        ))
    };
    // With Content-Length (and no Expect, so the body is really sent).
    assert_eq!(curl("-H 'Expect:'", &big).stdout, b"413");
    // Chunked: no length up front, the limit trips while reading.
    assert_eq!(
        curl("-H 'Expect:' -H 'Transfer-Encoding: chunked'", &big).stdout,
        b"413"
    );
    // Under the limit it works, both ways.
    assert_eq!(curl("-H 'Expect:'", &small).stdout, b"200");
    assert_eq!(
        curl("-H 'Transfer-Encoding: chunked'", &small).stdout,
        b"200"
    );
    let after: u32 = body_text(&get(s.port, "/count")).parse().expect("count");
    assert_eq!(
        after,
        before + 3,
        "only the two small bodies and this request may reach PHP"
    );
}

// 4. Codecs and the SDK's example workers ----------------------------------------

#[test]
fn proto_codec_with_psr7_workers() {
    // The shipped PSR-7 example.
    let s = start(
        sdk_file("examples/psr7-worker.php"),
        "  codec: proto\n",
        ONE_WORKER,
    );
    let r = get(s.port, "/").expect("answer");
    assert_eq!(
        (r.0, String::from_utf8_lossy(&r.2).as_ref()),
        (200, "Hello, World!"),
        "{}",
        r.1
    );
    let r = req(
        s.port,
        "POST",
        "/json?x=1",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Cookie", "sid=abc123"),
        ],
        b"f=v&l[]=1",
    );
    let text = String::from_utf8_lossy(&r.2).into_owned();
    assert_eq!(r.0, 200, "{text}");
    for needle in [
        "\"method\": \"POST\"",
        "\"path\": \"/json\"",
        "\"x\": \"1\"",
        "\"sid\": \"abc123\"",
        "\"f\": \"v\"",
        "\"protocol\": \"1.1\"",
        "\"remoteAddr\": \"127.0.0.1\"",
    ] {
        assert!(text.contains(needle), "{needle} not in {text}");
    }
    drop(s);

    // The SDK really chose protobuf (it would read a JSON context as JSON).
    let s = start(
        php_script("psr7_codec_worker.php"),
        "  codec: proto\n",
        ONE_WORKER,
    );
    let r = req(
        s.port,
        "POST",
        "/p?q=1",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("X-Multi", "one"),
            ("X-Multi", "two"),
        ],
        b"a[b]=c",
    );
    let text = String::from_utf8_lossy(&r.2).into_owned();
    assert_eq!(
        header_value(&r.1, "x-codec").as_deref(),
        Some("proto"),
        "{}",
        r.1
    );
    assert!(
        text.starts_with(r#"{"codec":"proto","method":"POST","path":"/p","query":{"q":"1"},"#)
            && text.contains(r#""parsedBody":{"a":{"b":"c"}},"multi":["one","two"]"#),
        "{text}"
    );
}

#[test]
fn json_codec_with_the_plain_example_worker() {
    let s = start(sdk_file("examples/plain-worker.php"), "", ONE_WORKER);
    let r = get(s.port, "/").expect("answer");
    assert_eq!(
        (r.0, String::from_utf8_lossy(&r.2).as_ref()),
        (200, "Hello, World!")
    );
    let r = req(
        s.port,
        "POST",
        "/form",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"name=ann&tags[]=a&tags[]=b",
    );
    let text = String::from_utf8_lossy(&r.2).into_owned();
    assert!(
        r.0 == 200
            && text.contains("\"name\": \"ann\"")
            && text.contains("\"tags\": [\n            \"a\",\n            \"b\"\n        ]"),
        "{text}"
    );
    let legacy = body_text(&get(s.port, "/legacy?name=zed"));
    assert_eq!(legacy, "GET /legacy?name=zed from 127.0.0.1, name=zed\n");
    assert_eq!(get(s.port, "/nope").map(|r| r.0), Some(404));
    drop(s);

    // Default codec: the PSR-7 side detects JSON.
    let s = start(php_script("psr7_codec_worker.php"), "", ONE_WORKER);
    let r = get(s.port, "/j").expect("answer");
    assert_eq!(
        header_value(&r.1, "x-codec").as_deref(),
        Some("json"),
        "{}",
        r.1
    );
    assert!(
        body_text(&Some(r)).contains(r#""cookies":{"sid":"abc123","theme":"dark mode"}"#),
        "cookies lost"
    );
}

// 5. Overload -------------------------------------------------------------------------

/// Starts `GET /sleep?ms=..` in a thread and returns once PHP is running it.
fn occupy(s: &Server, ms: u64) -> std::thread::JoinHandle<Option<Resp>> {
    let mark = s.dir.path().join("started");
    let _ = std::fs::remove_file(&mark);
    let port = s.port;
    let path = format!("/sleep?ms={ms}&mark={}", mark.display());
    let h = std::thread::spawn(move || get(port, &path));
    assert!(
        wait_for(Duration::from_secs(5), || mark.exists()),
        "the slow request never started"
    );
    h
}

/// A request in its own thread; (status, head, elapsed).
fn timed_get(port: u16, path: &str) -> std::thread::JoinHandle<(u16, String, Duration)> {
    let path = path.to_string();
    std::thread::spawn(move || {
        let t = Instant::now();
        let r = get(port, &path).expect("answer");
        (r.0, r.1, t.elapsed())
    })
}

#[test]
fn no_free_worker_within_allocate_timeout_is_503_with_retry_after() {
    let s = front(
        "",
        "    num_workers: 1\n    allocate_timeout: 300ms\n    destroy_timeout: 2s\n",
    );
    let slow = occupy(&s, 1500);
    let (status, head, elapsed) = timed_get(s.port, "/pid").join().expect("join");
    assert_eq!(status, 503, "{head}");
    assert!(
        header_value(&head, "retry-after").is_some(),
        "no Retry-After: {head}"
    );
    assert!(
        elapsed >= Duration::from_millis(250) && elapsed < Duration::from_millis(1200),
        "503 after {elapsed:?}, expected about allocate_timeout (300ms)"
    );
    assert_eq!(slow.join().expect("join").map(|r| r.0), Some(200));
    assert_eq!(get(s.port, "/pid").map(|r| r.0), Some(200));
}

#[test]
fn a_full_queue_rejects_at_once() {
    let s = front(
        "",
        "    num_workers: 1\n    max_queue_size: 1\n    allocate_timeout: 5s\n    destroy_timeout: 2s\n",
    );
    let slow = occupy(&s, 1500);
    // Two more at the same time: one waits in the queue (and is served when
    // the worker is free), the other finds the queue full.
    let b = timed_get(s.port, "/pid");
    let c = timed_get(s.port, "/pid");
    let mut results = [b.join().expect("join"), c.join().expect("join")];
    results.sort_by_key(|r| r.0);
    let (served, rejected) = (&results[0], &results[1]);
    assert_eq!(
        (served.0, rejected.0),
        (200, 503),
        "{}\n{}",
        served.1,
        rejected.1
    );
    assert!(
        rejected.2 < Duration::from_millis(500),
        "queue-full 503 took {:?}",
        rejected.2
    );
    assert!(
        header_value(&rejected.1, "retry-after").is_some(),
        "{}",
        rejected.1
    );
    assert_eq!(slow.join().expect("join").map(|r| r.0), Some(200));
}

// 6. exec_ttl ------------------------------------------------------------------------

#[test]
fn exec_ttl_turns_a_hung_request_into_504_and_replaces_the_worker() {
    let s = front(
        "",
        "    num_workers: 1\n    allocate_timeout: 5s\n    destroy_timeout: 1s\n    supervisor:\n      watch_tick: 100ms\n      exec_ttl: 500ms\n",
    );
    let old = pid_of(s.port);
    let t = Instant::now();
    let r = get(s.port, "/sleep?ms=20000").expect("answer");
    let elapsed = t.elapsed();
    assert_eq!(r.0, 504, "{}", r.1);
    assert!(
        elapsed >= Duration::from_millis(450) && elapsed < Duration::from_millis(1500),
        "504 after {elapsed:?}; exec_ttl is 500ms"
    );
    // The next request is served, by a new worker; the hung one is gone.
    let t = Instant::now();
    let new = pid_of(s.port);
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "next request took {:?}",
        t.elapsed()
    );
    assert_ne!(old, new);
    assert!(
        wait_for(Duration::from_secs(3), || !Path::new(&format!(
            "/proc/{old}"
        ))
        .exists()),
        "hung worker {old} still alive"
    );
}

// 7. Edge protections ------------------------------------------------------------------

/// `n` extra headers named X-H0.. on a GET.
fn many_headers(n: usize) -> String {
    (0..n).map(|i| format!("X-H{i}: v\r\n")).collect()
}

fn get_with(port: u16, extra_head: &str) -> Option<Resp> {
    send_raw(
        port,
        format!("GET /count HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{extra_head}\r\n")
            .as_bytes(),
    )
}

#[test]
fn too_many_headers_get_431() {
    // hyper answers "431 Request Header Fields Too Large" (empty body,
    // Connection: close) when httparse runs out of header slots.
    let s = front("  max_header_count: 20\n", ONE_WORKER);
    let r = get_with(s.port, &many_headers(30)).expect("an answer, not a reset");
    assert_eq!(r.0, 431, "{}", r.1);
    // Host + Connection + 15 fit.
    let r = get_with(s.port, &many_headers(15)).expect("answer");
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(get(s.port, "/pid").map(|r| r.0), Some(200));
}

#[test]
fn oversized_heads_get_431() {
    let s = front("  max_header_size: 16\n", ONE_WORKER);
    let head = |kb: usize| format!("X-Big: {}\r\n", "a".repeat(kb << 10));
    assert_eq!(get_with(s.port, &head(12)).map(|r| r.0), Some(200));
    let r = get_with(s.port, &head(20)).expect("an answer, not a reset");
    assert_eq!(r.0, 431, "{}", r.1);
    drop(s);
    // Below hyper's 8 KiB minimum buffer the configured limit still holds.
    let s = front("  max_header_size: 4\n", ONE_WORKER);
    assert_eq!(get_with(s.port, &head(2)).map(|r| r.0), Some(200));
    let r = get_with(s.port, &head(6)).expect("an answer, not a reset");
    assert_eq!(
        r.0, 431,
        "a 6 KiB head passed max_header_size: 4 (KB)\n{}",
        r.1
    );
}

#[test]
fn a_slowloris_client_is_cut_off_after_read_header_timeout() {
    let s = front("  read_header_timeout: 1s\n", ONE_WORKER);
    let mut conn = TcpStream::connect(("127.0.0.1", s.port)).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writer = conn.try_clone().expect("clone");
    let stop2 = stop.clone();
    // One header byte every 100 ms: the head would take ~6 s to complete.
    let trickle = std::thread::spawn(move || {
        let _ = writer.write_all(b"GET /count HTTP/1.1\r\nHost: localhost\r\n");
        for b in format!("X-Slow: {}\r\n\r\n", "a".repeat(50)).bytes() {
            if stop2.load(Ordering::Acquire) || writer.write_all(&[b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    // Others are served meanwhile.
    let t = Instant::now();
    assert_eq!(get(s.port, "/pid").map(|r| r.0), Some(200));
    assert!(t.elapsed() < Duration::from_secs(1));
    // hyper closes the connection without an answer when the head timer fires.
    let mut got = Vec::new();
    let res = conn.read_to_end(&mut got);
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Release);
    trickle.join().expect("join");
    assert!(
        res.is_ok() || elapsed < Duration::from_secs(4),
        "still open after {elapsed:?}: {res:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(800) && elapsed < Duration::from_millis(2500),
        "slow client cut off after {elapsed:?}; read_header_timeout is 1s"
    );
    let text = String::from_utf8_lossy(&got);
    assert!(
        got.is_empty() || text.starts_with("HTTP/1.1 408"),
        "unexpected answer to a slow head: {text}"
    );
    assert_eq!(get(s.port, "/pid").map(|r| r.0), Some(200));
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_idle_timeout() {
    let s = front("  idle_timeout: 1s\n", ONE_WORKER);
    let mut conn = TcpStream::connect(("127.0.0.1", s.port)).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    // Two requests on one connection: keep-alive works.
    for _ in 0..2 {
        conn.write_all(b"GET /count HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .expect("write");
        let r = read_one_response(&mut conn).expect("response on the kept-alive connection");
        assert_eq!(r.0, 200, "{}", r.1);
    }
    let idle_since = Instant::now();
    let mut rest = Vec::new();
    let res = conn.read_to_end(&mut rest);
    let elapsed = idle_since.elapsed();
    assert!(res.is_ok() && rest.is_empty(), "{res:?} {rest:?}");
    assert!(
        elapsed >= Duration::from_millis(800) && elapsed < Duration::from_millis(2500),
        "idle connection closed after {elapsed:?}; idle_timeout is 1s"
    );
}

// 8. Trailers -----------------------------------------------------------------------------

#[test]
fn trailer_headers_are_sent_after_the_body() {
    let s = front("", ONE_WORKER);
    let u = s.url();
    // HTTP/1.1, chunked, as on the wire.
    let out = sh(&format!(
        "curl -s --max-time 10 --raw -i --http1.1 -H 'TE: trailers' {u}/trailer"
    ));
    let wire = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = wire.split_once("\r\n\r\n").expect("head");
    let head_lc = head.to_ascii_lowercase();
    assert!(
        head_lc.contains("trailer: x-checksum") && !head_lc.contains("x-checksum: abc"),
        "{wire}"
    );
    assert!(head_lc.contains("transfer-encoding: chunked"), "{wire}");
    assert_eq!(
        body.to_ascii_lowercase(),
        "13\r\nbody-before-trailer\r\n0\r\nx-checksum: abc\r\n\r\n",
        "{wire}"
    );
    // HTTP/2 (h2c): a trailing HEADERS frame; curl lists it after the header block.
    let dump = s.dir.path().join("h2.head");
    let out = sh(&format!(
        "curl -s --max-time 10 --http2-prior-knowledge -D {} {u}/trailer",
        dump.display()
    ));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "body-before-trailer");
    let d = std::fs::read_to_string(&dump).expect("dump");
    let (head, after) = d.split_once("\r\n\r\n").expect("header block");
    assert!(
        head.starts_with("HTTP/2 200") && !head.to_ascii_lowercase().contains("x-checksum: abc"),
        "{d}"
    );
    assert!(
        after.to_ascii_lowercase().contains("x-checksum: abc"),
        "no trailer: {d}"
    );
}

// 9. Access log -----------------------------------------------------------------------------

#[test]
fn access_logs_write_one_line_per_request() {
    let s = front("  access_logs: true\n", ONE_WORKER);
    let pid = pid_of(s.port);
    assert_eq!(get(s.port, "/one?x=1").map(|r| r.0), Some(200));
    assert_eq!(
        request(s.port, "POST", "/two", b"body").map(|r| r.0),
        Some(200)
    );
    assert_eq!(get(s.port, "/three").map(|r| r.0), Some(200));
    let line_for = |log: &str, uri: &str| -> Vec<String> {
        log.lines()
            .filter(|l| l.contains("http request") && l.contains(&format!("uri={uri} ")))
            .map(str::to_string)
            .collect()
    };
    assert!(
        wait_for(Duration::from_secs(3), || !line_for(
            &s.plain_log(),
            "/three"
        )
        .is_empty()),
        "no access log line:\n{}",
        s.plain_log()
    );
    let log = s.plain_log();
    for (method, uri) in [("GET", "/one?x=1"), ("POST", "/two"), ("GET", "/three")] {
        let lines = line_for(&log, uri);
        assert_eq!(lines.len(), 1, "{uri}:\n{log}");
        let l = &lines[0];
        for needle in [
            format!("method={method} "),
            "status=200 ".to_string(),
            format!("pid={pid}"),
            "remote=127.0.0.1".to_string(),
        ] {
            assert!(l.contains(&needle), "{needle} not in {l}");
        }
    }
}

// 10. proxy_ip_parser -------------------------------------------------------------------------

fn remote_addr(s: &Server, xff: Option<&str>) -> String {
    let headers: Vec<(&str, &str)> = xff.map(|v| ("X-Forwarded-For", v)).into_iter().collect();
    let (ctx, _) = dump(&req(s.port, "GET", "/dump", &headers, b""));
    let key = "\"remoteAddr\":\"";
    let at = ctx.find(key).expect("remoteAddr") + key.len();
    ctx[at..at + ctx[at..].find('"').expect("end")].to_string()
}

#[test]
fn proxy_ip_parser_takes_the_client_from_x_forwarded_for() {
    let s = front(
        "  middleware: [proxy_ip_parser]\n  trusted_subnets: [\"127.0.0.0/8\"]\n",
        ONE_WORKER,
    );
    assert_eq!(remote_addr(&s, Some("203.0.113.7")), "203.0.113.7");
    assert_eq!(
        remote_addr(&s, Some("203.0.113.7, 127.0.0.2")),
        "203.0.113.7"
    );
    assert_eq!(remote_addr(&s, None), "127.0.0.1");
    drop(s);
    // Without the middleware the header is just a header.
    let s = front("  trusted_subnets: [\"127.0.0.0/8\"]\n", ONE_WORKER);
    assert_eq!(remote_addr(&s, Some("203.0.113.7")), "127.0.0.1");
    drop(s);
    // A peer outside the trusted subnets cannot set its address.
    let s = front(
        "  middleware: [proxy_ip_parser]\n  trusted_subnets: [\"10.0.0.0/8\"]\n",
        ONE_WORKER,
    );
    assert_eq!(remote_addr(&s, Some("203.0.113.7")), "127.0.0.1");
}
