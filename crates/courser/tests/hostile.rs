//! Hostile HTTP input against the real `courser` binary and a real PHP worker
//! (`tests/php/hostile_worker.php`), which appends every request it is given
//! to a log file. Each case checks three things: the status (or that the
//! connection is closed), that the request never reached PHP (its marker is
//! not in the worker's log), and that the server still answers a normal
//! request afterwards.
//!
//! The cases and what they found are summed up in RELIABILITY.md
//! ("Hostile HTTP input").

mod common;

use common::Server;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `http.max_request_size` of 1 MB, for the `extra` of most tests.
const ONE_MB: &str = "  max_request_size: 1\n";

/// A server on the hostile worker, one PHP process, one second for heads and
/// for bodies, two for idle connections. Size limits are left at their
/// defaults unless `extra` sets them. `extra` is more `http` lines (two-space
/// indent, `{dir}` is the server's temp dir); `setup` runs on the temp dir
/// before the server starts.
struct Hostile {
    s: Server,
    php_log: PathBuf,
}

impl Hostile {
    fn start(extra: &str, setup: impl FnOnce(&Path)) -> Hostile {
        let worker = common::php_script("hostile_worker.php");
        let s = Server::from_yaml(
            |port, dir| {
                setup(dir);
                format!(
                    "version: \"3\"\nserver:\n  command: \"php {w}\"\n  env:\n    HOSTILE_LOG: \"{d}/php.log\"\n\
                     http:\n  address: 127.0.0.1:{port}\n  read_header_timeout: 1s\n  read_timeout: 1s\n  idle_timeout: 2s\n{extra}\
                     \x20 pool:\n    num_workers: 1\n    allocate_timeout: 5s\n    destroy_timeout: 2s\n\
                     logs:\n  level: info\nendure:\n  grace_period: 2s\n",
                    w = worker.display(),
                    d = dir.display(),
                    extra = extra.replace("{dir}", &dir.display().to_string()),
                )
            },
            &[],
            None,
        );
        let php_log = s.dir.path().join("php.log");
        Hostile { s, php_log }
    }

    fn port(&self) -> u16 {
        self.s.port
    }

    /// Every request PHP has been given so far, one JSON line each.
    fn php_log(&self) -> String {
        std::fs::read_to_string(&self.php_log).unwrap_or_default()
    }

    /// The requests PHP has been given, parsed.
    fn php_requests(&self) -> Vec<serde_json::Value> {
        self.php_log()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    }

    /// A normal request still gets PHP's answer, quickly.
    fn assert_serving(&self, case: &str) {
        let t = Instant::now();
        let r = exchange(
            self.port(),
            b"GET /alive HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        );
        let rs = responses(&r);
        assert!(
            rs.len() == 1 && rs[0].0 == 200 && rs[0].2.starts_with(b"php GET /alive"),
            "{case}: the server stopped serving normal requests: {:?}\nlog:\n{}",
            String::from_utf8_lossy(&r),
            self.s.log_text()
        );
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "{case}: a normal request took {:?}",
            t.elapsed()
        );
    }

    /// Asserts that nothing PHP was given mentions `marker`.
    fn assert_not_in_php(&self, case: &str, marker: &str) {
        let log = self.php_log();
        assert!(
            !log.contains(marker),
            "{case}: {marker} reached PHP:\n{log}"
        );
    }
}

/// Writes `raw` on a new connection (write errors are ignored: the server may
/// close early) and reads until the server closes it, or 5 s pass.
fn exchange(port: u16, raw: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let _ = s.write_all(raw);
    read_until_closed(&mut s, Duration::from_secs(5)).0
}

/// Reads until EOF, a reset or `limit`; says whether the peer closed.
fn read_until_closed(s: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    let deadline = Instant::now() + limit;
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (out, false);
        }
        s.set_read_timeout(Some(left)).expect("read timeout");
        match s.read(&mut buf) {
            Ok(0) => return (out, true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return (out, false)
            }
            Err(_) => return (out, true),
        }
    }
}

/// Every complete response in `buf`: status, head, body (bodies framed by
/// Content-Length or chunked; a response without either runs to the end).
fn responses(mut buf: &[u8]) -> Vec<(u16, String, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some(split) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&buf[..split]).into_owned();
        let Some(status) = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()) else {
            break;
        };
        let rest = &buf[split + 4..];
        let lower = head.to_ascii_lowercase();
        let (body, used) = if let Some(len) =
            common::header_value(&head, "content-length").and_then(|v| v.parse::<usize>().ok())
        {
            let len = len.min(rest.len());
            (rest[..len].to_vec(), len)
        } else if lower.contains("transfer-encoding: chunked") {
            dechunk_prefix(rest)
        } else {
            (rest.to_vec(), rest.len())
        };
        out.push((status, head, body));
        buf = &rest[used..];
    }
    out
}

/// Decodes a chunked body at the start of `b`; returns it and the bytes used.
fn dechunk_prefix(b: &[u8]) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let Some(end) = b[at..].windows(2).position(|w| w == b"\r\n") else {
            return (out, b.len());
        };
        let line = String::from_utf8_lossy(&b[at..at + end]).into_owned();
        let size =
            usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
        at += end + 2;
        if size == 0 {
            // Trailers end with an empty line.
            let tail = b[at..]
                .windows(2)
                .position(|w| w == b"\r\n")
                .map_or(b.len(), |p| at + p + 2);
            return (out, tail);
        }
        let stop = (at + size).min(b.len());
        out.extend_from_slice(&b[at..stop]);
        at = (stop + 2).min(b.len());
    }
}

/// The statuses of the responses in `buf`.
fn statuses(buf: &[u8]) -> Vec<u16> {
    responses(buf).iter().map(|r| r.0).collect()
}

/// One row for the RELIABILITY.md table (case, what was sent, what came
/// back), printed for `--nocapture` runs.
fn report(case: &str, sent: &str, seen: &str) {
    eprintln!("| {case} | {sent} | {seen} |");
}

// 1. Malformed request lines and heads --------------------------------------------

#[test]
fn malformed_request_lines_and_heads_get_400_and_never_reach_php() {
    let h = Hostile::start(ONE_MB, |_| {});
    let cases: &[(&str, &[u8], u16)] = &[
        (
            "TLS ClientHello on the plain port",
            b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03marker-tls\r\n\r\n",
            400,
        ),
        ("garbage line", b"marker-garbage\r\n\r\n", 400),
        (
            "bad method token",
            b"G(T /marker-method HTTP/1.1\r\nHost: x\r\n\r\n",
            400,
        ),
        (
            "HTTP/1.2",
            b"GET /marker-v12 HTTP/1.2\r\nHost: x\r\n\r\n",
            400,
        ),
        (
            "HTTP/2.0 on an HTTP/1 request line",
            b"GET /marker-v2 HTTP/2.0\r\nHost: x\r\n\r\n",
            400,
        ),
        (
            "HTTX version",
            b"GET /marker-httx HTTX/1.1\r\nHost: x\r\n\r\n",
            400,
        ),
        (
            "HTTP/0.9 request line (no version)",
            b"GET /marker-v09\r\n\r\n",
            400,
        ),
        (
            "NUL in the request target",
            b"GET /marker-nul\0x HTTP/1.1\r\nHost: x\r\n\r\n",
            400,
        ),
        (
            "space in the request target",
            b"GET /marker-sp ace HTTP/1.1\r\nHost: x\r\n\r\n",
            400,
        ),
        (
            "NUL in a header value",
            b"GET /marker-hnul HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n",
            400,
        ),
        (
            "bare CR in a header value",
            b"GET /marker-cr HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n",
            400,
        ),
        (
            "obs-fold (continuation line)",
            b"GET /marker-fold HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n",
            400,
        ),
        (
            "space before the colon",
            b"GET /marker-colon HTTP/1.1\r\nHost : x\r\n\r\n",
            400,
        ),
        (
            "header line without a colon",
            b"GET /marker-nocolon HTTP/1.1\r\nHost x\r\n\r\n",
            400,
        ),
    ];
    for (case, raw, want) in cases {
        let r = exchange(h.port(), raw);
        let got = statuses(&r);
        assert_eq!(
            got,
            vec![*want],
            "{case}: {:?}",
            String::from_utf8_lossy(&r)
        );
        report(
            case,
            &format!("{:?}", String::from_utf8_lossy(raw)),
            &want.to_string(),
        );
    }
    // The markers are checked once all cases ran: none reached PHP.
    for (case, raw, _) in cases {
        let text = String::from_utf8_lossy(raw);
        let marker = text
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .find(|w| w.starts_with("marker-"))
            .expect("every case has a marker");
        h.assert_not_in_php(case, marker);
    }
    h.assert_serving("malformed request lines");
}

#[test]
fn sizes_of_heads_and_bodies_are_bounded_by_default() {
    // No size limits configured: the defaults (64 KB heads, 100 headers,
    // 1000 MB bodies) hold.
    let h = Hostile::start("", |_| {});
    let long_uri = format!(
        "GET /marker-uri{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "a".repeat(100 << 10)
    );
    let r = statuses(&exchange(h.port(), long_uri.as_bytes()));
    assert!(r == [414] || r == [431], "100 KB URI: {r:?}");
    report("overlong URI", "100 KB request target", &format!("{r:?}"));

    let huge = format!(
        "GET /marker-huge HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "b".repeat(100 << 10)
    );
    let r = statuses(&exchange(h.port(), huge.as_bytes()));
    assert_eq!(r, [431], "one 100 KB header");
    report("huge header", "one 100 KB header", "431");

    // Just under the default limit still works (the limit is not too tight).
    let fits = format!(
        "GET /fits HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "c".repeat(60 << 10)
    );
    assert_eq!(statuses(&exchange(h.port(), fits.as_bytes())), [200]);

    let many: String = (0..1000).map(|i| format!("X-H{i}: v\r\n")).collect();
    let many = format!("GET /marker-many HTTP/1.1\r\nHost: x\r\n{many}Connection: close\r\n\r\n");
    let r = statuses(&exchange(h.port(), many.as_bytes()));
    assert_eq!(r, [431], "1000 headers");
    report("many headers", "1000 headers of 8 bytes", "431");
    let some: String = (0..90).map(|i| format!("X-H{i}: v\r\n")).collect();
    let some = format!("GET /fits HTTP/1.1\r\nHost: x\r\n{some}Connection: close\r\n\r\n");
    assert_eq!(statuses(&exchange(h.port(), some.as_bytes())), [200]);

    // No max_request_size either: RoadRunner's default, 1000 MB, holds.
    let r = exchange(
        h.port(),
        b"POST /marker-default-body HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576001\r\n\r\n",
    );
    assert_eq!(statuses(&r), [413], "{}", String::from_utf8_lossy(&r));
    report(
        "body over the default limit",
        "Content-Length: 1000 MB + 1",
        "413",
    );

    for m in [
        "marker-uri",
        "marker-huge",
        "marker-many",
        "marker-default-body",
    ] {
        h.assert_not_in_php(m, m);
    }
    h.assert_serving("oversized heads");
}

// 2. Bodies over max_request_size ---------------------------------------------------

/// Sends `head` then `body` from another thread while this one reads the
/// answer (the server may answer and close before the body is all sent).
fn send_streaming(port: u16, head: &[u8], body: Vec<u8>) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let _ = s.write_all(head);
    let mut w = s.try_clone().expect("clone");
    let writer = std::thread::spawn(move || {
        for chunk in body.chunks(64 << 10) {
            if w.write_all(chunk).is_err() {
                return;
            }
        }
    });
    let (got, _) = read_until_closed(&mut s, Duration::from_secs(10));
    drop(s);
    let _ = writer.join();
    got
}

fn chunked(body: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / chunk * 8 + 8);
    for c in body.chunks(chunk) {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

#[test]
fn bodies_over_max_request_size_get_413_and_never_reach_php() {
    let h = Hostile::start(ONE_MB, |_| {});
    let two_mb = vec![b'z'; 2 << 20];
    // Declared too large: refused from the head, before any body byte.
    let r = exchange(
        h.port(),
        b"POST /marker-cl-head HTTP/1.1\r\nHost: x\r\nContent-Length: 2097152\r\n\r\n",
    );
    assert_eq!(statuses(&r), [413], "{}", String::from_utf8_lossy(&r));
    report(
        "body over limit (Content-Length, head only)",
        "Content-Length: 2 MB, no body",
        "413",
    );
    // The same with Expect: 100-continue: 413 instead of 100.
    let r = exchange(
        h.port(),
        b"POST /marker-expect HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2097152\r\n\r\n",
    );
    assert_eq!(statuses(&r), [413], "{}", String::from_utf8_lossy(&r));
    report(
        "body over limit with Expect: 100-continue",
        "Content-Length: 2 MB",
        "413 (no 100)",
    );
    // Declared and sent.
    let r = send_streaming(
        h.port(),
        b"POST /marker-cl-body HTTP/1.1\r\nHost: x\r\nContent-Length: 2097152\r\n\r\n",
        two_mb.clone(),
    );
    assert_eq!(statuses(&r), [413], "{}", String::from_utf8_lossy(&r));
    report("body over limit (Content-Length, sent)", "2 MB body", "413");
    // Chunked: no length up front; the limit trips while reading.
    let r = send_streaming(
        h.port(),
        b"POST /marker-chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
        chunked(&two_mb, 16 << 10),
    );
    assert_eq!(statuses(&r), [413], "{}", String::from_utf8_lossy(&r));
    report("body over limit (chunked)", "2 MB in 16 KB chunks", "413");
    // One chunk that claims 2 MB.
    let mut one = b"200000\r\n".to_vec();
    one.extend_from_slice(&two_mb);
    one.extend_from_slice(b"\r\n0\r\n\r\n");
    let r = send_streaming(
        h.port(),
        b"POST /marker-bigchunk HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
        one,
    );
    assert_eq!(statuses(&r), [413], "{}", String::from_utf8_lossy(&r));
    report(
        "body over limit (one 2 MB chunk)",
        "chunk size 200000 hex",
        "413",
    );
    // A multipart upload over the limit.
    let mut mp =
        b"--B\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.bin\"\r\n\r\n".to_vec();
    mp.extend_from_slice(&two_mb);
    mp.extend_from_slice(b"\r\n--B--\r\n");
    let r = send_streaming(
        h.port(),
        format!("POST /marker-multipart HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=B\r\nContent-Length: {}\r\n\r\n", mp.len()).as_bytes(),
        mp,
    );
    assert_eq!(statuses(&r), [413], "{}", String::from_utf8_lossy(&r));
    report("multipart upload over limit", "2 MB file part", "413");

    for m in [
        "marker-cl-head",
        "marker-expect",
        "marker-cl-body",
        "marker-chunked",
        "marker-bigchunk",
        "marker-multipart",
    ] {
        h.assert_not_in_php(m, m);
    }
    // Just under the limit is fine, both ways.
    let ok = vec![b'o'; 1000 << 10];
    let r = send_streaming(
        h.port(),
        format!(
            "POST /under HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            ok.len()
        )
        .as_bytes(),
        ok.clone(),
    );
    assert_eq!(
        responses(&r).first().map(|r| r.2.clone()),
        Some(format!("php POST /under {}", ok.len()).into_bytes())
    );
    let r = send_streaming(
        h.port(),
        b"POST /under HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n",
        chunked(&ok, 4096),
    );
    assert_eq!(
        responses(&r).first().map(|r| r.2.clone()),
        Some(format!("php POST /under {}", ok.len()).into_bytes())
    );
    h.assert_serving("bodies over the limit");
}

// 3. Slowloris ----------------------------------------------------------------------------

/// Sends `head`, then `trickle` one byte every `every` until the server closes
/// the connection or 6 s pass. Returns what came back and when the connection
/// was closed, counted from the end of the head.
fn trickle(
    port: u16,
    head: &[u8],
    trickle: Vec<u8>,
    every: Duration,
) -> (Vec<u8>, Option<Duration>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.write_all(head).expect("head");
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let mut w = s.try_clone().expect("clone");
    let stop2 = stop.clone();
    let writer = std::thread::spawn(move || {
        for b in trickle.iter().cycle() {
            if stop2.load(Ordering::Acquire) || w.write_all(&[*b]).is_err() {
                return;
            }
            std::thread::sleep(every);
        }
    });
    let (got, closed) = read_until_closed(&mut s, Duration::from_secs(6));
    let at = closed.then(|| started.elapsed());
    stop.store(true, Ordering::Release);
    let _ = s.shutdown(Shutdown::Both);
    let _ = writer.join();
    (got, at)
}

#[test]
fn slow_heads_and_slow_bodies_are_cut_off_without_holding_the_worker() {
    let h = Hostile::start(
        &format!("{ONE_MB}  uploads:\n    dir: \"{{dir}}/uploads\"\n"),
        |d| std::fs::create_dir(d.join("uploads")).expect("uploads dir"),
    );
    let port = h.port();
    let tick = Duration::from_millis(100);
    type Case = (&'static str, Vec<u8>, Vec<u8>);
    let cases: Vec<Case> = vec![
        (
            "slow head",
            b"GET /marker-slowhead HTTP/1.1\r\nHost: x\r\n".to_vec(),
            b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".to_vec(),
        ),
        (
            "slow body (Content-Length)",
            b"POST /marker-slowcl HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n".to_vec(),
            b"a".to_vec(),
        ),
        (
            "slow body (chunked)",
            b"POST /marker-slowchunk HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
            b"1\r\na\r\n".to_vec(),
        ),
        (
            "slow body (urlencoded form)",
            b"POST /marker-slowform HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100000\r\n\r\nfield=".to_vec(),
            b"v".to_vec(),
        ),
        (
            "slow body (multipart upload)",
            b"POST /marker-slowupload HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=B\r\nContent-Length: 100000\r\n\r\n--B\r\nContent-Disposition: form-data; name=\"f\"; filename=\"slow.bin\"\r\n\r\n".to_vec(),
            b"u".to_vec(),
        ),
        (
            "stalled body (half sent, then silence)",
            b"POST /marker-stalled HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nhalf".to_vec(),
            Vec::new(),
        ),
    ];
    // All at once, against one PHP worker.
    let handles: Vec<_> = cases
        .into_iter()
        .map(|(case, head, slow)| {
            std::thread::spawn(move || {
                let (got, closed) = if slow.is_empty() {
                    // Nothing more is ever sent.
                    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
                    s.write_all(&head).expect("head");
                    let started = Instant::now();
                    let (got, closed) = read_until_closed(&mut s, Duration::from_secs(6));
                    (got, closed.then(|| started.elapsed()))
                } else {
                    trickle(port, &head, slow, tick)
                };
                (case, got, closed)
            })
        })
        .collect();
    // Meanwhile the one worker answers others at once.
    for _ in 0..5 {
        h.assert_serving("during slow clients");
    }
    for handle in handles {
        let (case, got, closed) = handle.join().expect("join");
        let closed = closed.unwrap_or_else(|| panic!("{case}: still open after 6 s"));
        assert!(
            closed >= Duration::from_millis(800) && closed < Duration::from_millis(3000),
            "{case}: closed after {closed:?}; the timeouts are 1 s"
        );
        let st = statuses(&got);
        if case == "slow head" {
            // hyper closes a head that times out, with 408 or without a word.
            assert!(st.is_empty() || st == [408], "{case}: {st:?}");
        } else {
            assert_eq!(st, [408], "{case}: {}", String::from_utf8_lossy(&got));
        }
        report(
            case,
            "one byte every 100 ms",
            &format!("{st:?} after {closed:.1?}"),
        );
    }
    for m in [
        "marker-slowhead",
        "marker-slowcl",
        "marker-slowchunk",
        "marker-slowform",
        "marker-slowupload",
        "marker-stalled",
    ] {
        h.assert_not_in_php(m, m);
    }
    // The slow upload's temp file is gone.
    let uploads = h.s.dir.path().join("uploads");
    assert!(
        common::wait_for(Duration::from_secs(2), || std::fs::read_dir(&uploads)
            .map(|d| d.count() == 0)
            .unwrap_or(false)),
        "temp files left by a slow upload"
    );
    h.assert_serving("after slow clients");
}

#[test]
fn a_silent_connection_is_closed() {
    let h = Hostile::start(ONE_MB, |_| {});
    let mut s = TcpStream::connect(("127.0.0.1", h.port())).expect("connect");
    let started = Instant::now();
    let (got, closed) = read_until_closed(&mut s, Duration::from_secs(6));
    let elapsed = started.elapsed();
    assert!(
        closed,
        "a connection that never sends a byte is still open after 6 s"
    );
    assert!(
        elapsed < Duration::from_millis(3000),
        "closed after {elapsed:?}; read_header_timeout is 1 s, idle_timeout 2 s"
    );
    let st = statuses(&got);
    assert!(st.is_empty() || st == [408], "{st:?}");
    report(
        "silent connection",
        "connect, send nothing",
        &format!("closed after {elapsed:.1?}"),
    );
    h.assert_serving("silent connection");
}

// 4. Request smuggling ----------------------------------------------------------------------

#[test]
fn smuggling_attempts_are_refused_and_nothing_hidden_reaches_php() {
    let h = Hostile::start(ONE_MB, |_| {});
    // Every case hides `GET /smuggled-N` after what a lenient parser would
    // take as the end of the first request.
    let hidden =
        |n: usize| format!("GET /smuggled-{n} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    // Content-Length together with Transfer-Encoding: hyper drops the length,
    // frames the body by the chunks alone (RFC 9112 6.3) and closes the
    // connection after the answer, so what follows the chunks is never read
    // as a request. (Courser's own check, guard.rs, would answer 400 should a
    // request ever reach the handler with both.)
    let both: Vec<(&str, String, usize)> = vec![
        (
            "CL.TE: Content-Length 6 and chunked (body 0)",
            format!("POST /marker-clte HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{}", hidden(1)),
            0,
        ),
        (
            "TE.CL: chunked (body 8) and Content-Length 3",
            format!("POST /marker-tecl HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n{}", hidden(2)),
            8,
        ),
    ];
    for (case, raw, len) in &both {
        let r = exchange(h.port(), raw.as_bytes());
        let rs = responses(&r);
        assert_eq!(rs.len(), 1, "{case}: {}", String::from_utf8_lossy(&r));
        let path = raw.split_whitespace().nth(1).expect("path");
        assert_eq!(rs[0].0, 200, "{case}");
        assert_eq!(
            rs[0].2,
            format!("php POST {path} {len}").into_bytes(),
            "{case}"
        );
        assert_eq!(
            common::header_value(&rs[0].1, "connection").as_deref(),
            Some("close"),
            "{case}: the connection must close after a request with both framings"
        );
        report(
            case,
            "see hostile.rs",
            "200, framed by the chunks, connection closed",
        );
    }
    for m in ["/marker-clte", "/marker-tecl"] {
        let seen: Vec<serde_json::Value> = h
            .php_requests()
            .into_iter()
            .filter(|r| r["uri"].as_str().is_some_and(|u| u.ends_with(m)))
            .collect();
        assert_eq!(seen.len(), 1, "{m}: {seen:?}");
        assert!(
            seen[0]["contentLength"].is_null(),
            "{m}: PHP saw a Content-Length: {seen:?}"
        );
    }
    let cases: Vec<(&str, String, u16)> = vec![
        (
            "two different Content-Length headers",
            format!("POST /marker-cl2 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 44\r\n\r\n{}", hidden(3)),
            400,
        ),
        (
            "Content-Length list with different values",
            format!("POST /marker-cllist HTTP/1.1\r\nHost: x\r\nContent-Length: 0, 44\r\n\r\n{}", hidden(4)),
            400,
        ),
        (
            "Content-Length with a sign",
            format!("POST /marker-clsign HTTP/1.1\r\nHost: x\r\nContent-Length: +0\r\n\r\n{}", hidden(5)),
            400,
        ),
        (
            "Content-Length in hex",
            format!("POST /marker-clhex HTTP/1.1\r\nHost: x\r\nContent-Length: 0x0\r\n\r\n{}", hidden(6)),
            400,
        ),
        (
            "Transfer-Encoding: chunked, identity",
            format!("POST /marker-teident HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n{}", hidden(7)),
            400,
        ),
        (
            "Transfer-Encoding with a space before the colon",
            format!("POST /marker-tespace HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n{}", hidden(8)),
            400,
        ),
        (
            "Transfer-Encoding: xchunked",
            format!("POST /marker-tex HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n{}", hidden(9)),
            400,
        ),
        (
            "Transfer-Encoding: identity, chunked",
            format!("POST /marker-teic HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n{}", hidden(10)),
            501,
        ),
        (
            "Transfer-Encoding: gzip, chunked",
            format!("POST /marker-tegzip HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n{}", hidden(11)),
            501,
        ),
        (
            "two Transfer-Encoding headers",
            format!("POST /marker-te2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{}", hidden(12)),
            501,
        ),
        (
            "Transfer-Encoding with a vertical tab",
            format!("POST /marker-tevt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n{}", hidden(13)),
            400,
        ),
        (
            "Transfer-Encoding on HTTP/1.0",
            format!("POST /marker-te10 HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{}", hidden(14)),
            400,
        ),
        (
            "chunk size that is not hex",
            format!("POST /marker-chz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n{}", hidden(15)),
            400,
        ),
        (
            "negative chunk size",
            format!("POST /marker-chneg HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\na\r\n0\r\n\r\n{}", hidden(16)),
            400,
        ),
        (
            "chunk size overflowing 64 bits",
            format!("POST /marker-chover HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000001\r\na\r\n0\r\n\r\n{}", hidden(17)),
            400,
        ),
        (
            "chunk data longer than its size",
            format!("POST /marker-chlong HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n0\r\n\r\n{}", hidden(18)),
            400,
        ),
        (
            "chunk size with a bare LF and a space",
            format!("POST /marker-chlf HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3 x\nabc\r\n0\r\n\r\n{}", hidden(19)),
            400,
        ),
    ];
    for (case, raw, want) in &cases {
        let r = exchange(h.port(), raw.as_bytes());
        assert_eq!(
            statuses(&r),
            vec![*want],
            "{case}: {}",
            String::from_utf8_lossy(&r)
        );
        report(case, "see hostile.rs", &want.to_string());
    }
    h.assert_serving("smuggling");
    let log = h.php_log();
    assert!(
        !log.contains("smuggled-"),
        "a hidden request reached PHP:\n{log}"
    );
    for (case, raw, _) in &cases {
        let path = raw.split_whitespace().nth(1).expect("path");
        assert!(
            !log.contains(path),
            "{case}: a refused request reached PHP:\n{log}"
        );
    }

    // A request hidden inside a body with a correct length stays body bytes:
    // PHP sees one request carrying it, never the hidden one.
    let inner = hidden(99);
    let raw = format!(
        "POST /carrier HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{inner}",
        inner.len()
    );
    let r = exchange(h.port(), raw.as_bytes());
    let rs = responses(&r);
    assert_eq!(rs.len(), 1, "{}", String::from_utf8_lossy(&r));
    assert_eq!(
        rs[0].2,
        format!("php POST /carrier {}", inner.len()).into_bytes()
    );
    report(
        "request hidden in a body",
        "Content-Length covering a GET",
        "200 (one request)",
    );
    // Pipelined requests on one connection are answered in order, each once.
    let raw = "GET /p1 HTTP/1.1\r\nHost: x\r\n\r\nPOST /p2 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /p3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let r = exchange(h.port(), raw.as_bytes());
    let bodies: Vec<String> = responses(&r)
        .iter()
        .map(|r| String::from_utf8_lossy(&r.2).into_owned())
        .collect();
    assert_eq!(bodies, ["php GET /p1 0", "php POST /p2 5", "php GET /p3 0"]);
    let log = h.php_log();
    assert!(!log.contains("smuggled-99"), "{log}");
    assert_eq!(log.matches("/carrier").count(), 1, "{log}");
}

// 5. Static files: path traversal ----------------------------------------------------------

const SECRET: &str = "TOP-SECRET-OUTSIDE-ROOT";

#[test]
fn static_paths_never_leave_the_root() {
    let h = Hostile::start(
        "  middleware: [\"static\"]\n  static:\n    dir: \"{dir}/public\"\n    forbid: [\".php\"]\n",
        |d| {
            let public = d.join("public");
            std::fs::create_dir_all(public.join("sub")).expect("public");
            std::fs::write(public.join("hello.txt"), "hello static").expect("write");
            std::fs::write(public.join("app.php"), format!("<?php // {SECRET}-php")).expect("write");
            std::fs::write(d.join("secret.txt"), SECRET).expect("write");
            std::os::unix::fs::symlink(d.join("secret.txt"), public.join("link.txt")).expect("symlink");
            std::os::unix::fs::symlink(d, public.join("up")).expect("symlink");
            std::os::unix::fs::symlink("/etc", public.join("etc")).expect("symlink");
        },
    );
    let ok = exchange(
        h.port(),
        b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(
        responses(&ok).first().map(|r| r.2.clone()),
        Some(b"hello static".to_vec())
    );
    let dir = h.s.dir.path().display().to_string();
    let abs = format!("/{dir}/secret.txt");
    let abs_enc = format!("/%2f{}/secret.txt", dir.trim_start_matches('/'));
    // (case, target, expected status) — 403 for a `..` segment, otherwise the
    // request goes on to PHP (200 "php GET …"), which is RoadRunner's way.
    let cases: Vec<(&str, String, u16)> = vec![
        ("../", "/../secret.txt".into(), 403),
        ("../ deeper", "/sub/../../secret.txt".into(), 403),
        ("%2e%2e%2f", "/%2e%2e%2fsecret.txt".into(), 403),
        ("%2E%2E/ upper case", "/%2E%2E/secret.txt".into(), 403),
        ("..%2f", "/..%2fsecret.txt".into(), 403),
        (
            "double-encoded %252e%252e%252f",
            "/%252e%252e%252fsecret.txt".into(),
            200,
        ),
        ("backslash ..\\", "/..\\secret.txt".into(), 200),
        ("encoded backslash ..%5c", "/..%5csecret.txt".into(), 200),
        ("NUL %00", "/hello.txt%00.php".into(), 200),
        ("NUL before ../", "/%00/../secret.txt".into(), 403),
        ("absolute path //", format!("/{abs}"), 200),
        ("absolute path encoded %2f", abs_enc, 200),
        (
            "absolute-form target with ../",
            "http://x/../secret.txt".into(),
            403,
        ),
        ("symlink to a file outside", "/link.txt".into(), 200),
        (
            "symlink to a directory outside",
            "/up/secret.txt".into(),
            200,
        ),
        ("symlink to /etc", "/etc/passwd.txt".into(), 200),
        ("forbidden extension in the root", "/app.php".into(), 200),
        ("forbidden extension, upper case", "/APP.PHP".into(), 200),
        ("forbidden extension, trailing dot", "/app.php.".into(), 200),
        (
            "overlong UTF-8 dot %c0%ae",
            "/%c0%ae%c0%ae/secret.txt".into(),
            200,
        ),
    ];
    for (case, target, want) in &cases {
        let raw = format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let r = exchange(h.port(), raw.as_bytes());
        let text = String::from_utf8_lossy(&r).into_owned();
        assert!(
            !text.contains(SECRET),
            "{case}: a file outside the root was served:\n{text}"
        );
        assert!(!text.contains("root:"), "{case}: /etc was served:\n{text}");
        let rs = responses(&r);
        assert_eq!(rs.len(), 1, "{case}: {text}");
        assert_eq!(rs[0].0, *want, "{case}: {text}");
        if *want == 200 {
            assert!(
                rs[0].2.starts_with(b"php GET "),
                "{case}: not PHP's answer: {text}"
            );
        }
        report(
            &format!("static: {case}"),
            target,
            &if *want == 200 {
                "200 from PHP (not served)".to_string()
            } else {
                want.to_string()
            },
        );
    }
    // The 403s never reached PHP.
    let log = h.php_log();
    assert!(!log.contains("\"uri\":\"http://x/../secret.txt\""), "{log}");
    assert!(!log.contains("/sub/../../"), "{log}");
    h.assert_serving("static traversal");
}

// 6. Upload extension bypasses ----------------------------------------------------------------

/// A multipart body with one file part per name (content `data-<i>`), boundary `B`.
fn multipart(names: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, name) in names.iter().enumerate() {
        out.extend_from_slice(
            format!("--B\r\nContent-Disposition: form-data; name=\"f{i}\"; filename=\"").as_bytes(),
        );
        out.extend_from_slice(name);
        out.extend_from_slice(
            format!("\"\r\nContent-Type: application/octet-stream\r\n\r\ndata-{i}\r\n").as_bytes(),
        );
    }
    out.extend_from_slice(b"--B--\r\n");
    out
}

fn post_multipart(port: u16, body: &[u8]) -> Vec<u8> {
    let mut raw = format!(
        "POST /uploads HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: multipart/form-data; boundary=B\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    exchange(port, &raw)
}

#[test]
fn upload_extension_bypasses_get_error_8_and_uploads_are_private() {
    let h = Hostile::start(
        "  uploads:\n    dir: \"{dir}/uploads\"\n    forbid: [\".php\", \".phtml\"]\n",
        |d| std::fs::create_dir(d.join("uploads")).expect("uploads dir"),
    );
    // (name sent, name PHP sees, error code)
    let cases: &[(&[u8], &str, u64)] = &[
        (b"ok.jpg", "ok.jpg", 0),
        (b"shell.php", "shell.php", 8),
        (b"shell.php.jpg", "shell.php.jpg", 8),
        (b"x.php.", "x.php.", 8),
        (b"x.php..", "x.php..", 8),
        (b"X.PHP", "X.PHP", 8),
        (b"x.pHp", "x.pHp", 8),
        (b"x.php ", "x.php ", 8),
        (b"x.php\t", "x.php\t", 8),
        (b"x.php .jpg", "x.php .jpg", 8),
        (b"x.phtml", "x.phtml", 8),
        (b"x.php%00.jpg", "x.php%00.jpg", 0),
        (b"../../x.php", "x.php", 8),
        (b"../../../etc/cron.d/evil.jpg", "evil.jpg", 0),
        (b"C:\\\\temp\\\\x.php", "C:\\temp\\x.php", 8),
        (b".php", ".php", 8),
        (b"php", "php", 0),
        (b"x.php5", "x.php5", 0),
    ];
    let names: Vec<&[u8]> = cases.iter().map(|c| c.0).collect();
    let r = post_multipart(h.port(), &multipart(&names));
    let rs = responses(&r);
    assert_eq!(rs.len(), 1, "{}", String::from_utf8_lossy(&r));
    assert_eq!(rs[0].0, 200, "{}", String::from_utf8_lossy(&r));
    let leaves: serde_json::Value = serde_json::from_slice(&rs[0].2).expect("JSON leaves");
    let leaves = leaves.as_array().expect("array");
    assert_eq!(leaves.len(), cases.len(), "{leaves:?}");
    let uploads = h.s.dir.path().join("uploads");
    let mut tmp_names = Vec::new();
    for (i, (sent, seen, error)) in cases.iter().enumerate() {
        let leaf = leaves
            .iter()
            .find(|l| l["field"] == format!("f{i}"))
            .unwrap_or_else(|| panic!("no leaf for {sent:?}: {leaves:?}"));
        let case = String::from_utf8_lossy(sent);
        assert_eq!(leaf["name"], *seen, "{case}");
        assert_eq!(leaf["error"], *error, "{case}: {leaf}");
        if *error == 8 {
            assert_eq!(leaf["tmpName"], "", "{case}: a refused file was stored");
            assert_eq!(leaf["size"], 0, "{case}");
        } else {
            let tmp = leaf["tmpName"].as_str().expect("tmpName");
            assert!(Path::new(tmp).starts_with(&uploads), "{case}: {tmp}");
            assert_eq!(leaf["exists"], true, "{case}");
            assert_eq!(leaf["mode"], "600", "{case}: temp file mode");
            assert_eq!(leaf["size"], format!("data-{i}").len(), "{case}");
            tmp_names.push(tmp.to_string());
        }
        report(
            &format!("upload: {case:?}"),
            "multipart filename",
            &format!("error {error}"),
        );
    }
    // Temp names are unpredictable: `upload` + 16 random characters, all different.
    for t in &tmp_names {
        let base = Path::new(t)
            .file_name()
            .and_then(|n| n.to_str())
            .expect("name");
        assert!(base.starts_with("upload") && base.len() >= 6 + 16, "{base}");
    }
    let mut unique = tmp_names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), tmp_names.len(), "{tmp_names:?}");
    // A NUL or a line break in the name.
    for (case, name) in [("NUL", &b"x.php\0.jpg"[..]), ("LF", &b"x.php\n.jpg"[..])] {
        let r = post_multipart(h.port(), &multipart(&[name]));
        let rs = responses(&r);
        assert_eq!(rs.len(), 1, "{case}: {}", String::from_utf8_lossy(&r));
        let text = String::from_utf8_lossy(&rs[0].2).into_owned();
        // Either the part header is refused as a whole (400, no PHP) or the
        // file is refused with error 8.
        match rs[0].0 {
            400 => report(
                &format!("upload: {case} in the name"),
                "multipart filename",
                "400",
            ),
            200 => {
                assert!(
                    text.contains("\"error\":8") && !text.contains("\"error\":0"),
                    "{case}: {text}"
                );
                report(
                    &format!("upload: {case} in the name"),
                    "multipart filename",
                    "error 8",
                );
            }
            other => panic!("{case}: {other} {text}"),
        }
    }
    assert!(
        common::wait_for(Duration::from_secs(2), || std::fs::read_dir(&uploads)
            .map(|d| d.count() == 0)
            .unwrap_or(false)),
        "upload temp files left behind"
    );
    h.assert_serving("uploads");
}

// 7. A stalled FastCGI peer --------------------------------------------------------------------

/// One FastCGI record.
fn fcgi_record(kind: u8, id: u16, content: &[u8]) -> Vec<u8> {
    let len = u16::try_from(content.len()).expect("short record");
    let mut out = vec![1, kind];
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(content);
    out
}

#[test]
fn a_stalled_fastcgi_peer_is_disconnected() {
    let fcgi_port = common::free_port();
    let h = Hostile::start(
        &format!("  fcgi:\n    address: tcp://127.0.0.1:{fcgi_port}\n"),
        |_| {},
    );
    let before = h.php_requests().len();
    // A request that begins (BEGIN_REQUEST, keep-conn) and never goes on:
    // cut after read_header_timeout + read_timeout (2 s).
    let mut s = TcpStream::connect(("127.0.0.1", fcgi_port)).expect("connect");
    s.write_all(&fcgi_record(1, 1, &[0, 1, 1, 0, 0, 0, 0, 0]))
        .expect("begin");
    let started = Instant::now();
    let (got, closed) = read_until_closed(&mut s, Duration::from_secs(6));
    let elapsed = started.elapsed();
    assert!(
        closed && got.is_empty(),
        "stalled request: {got:?} closed={closed}"
    );
    assert!(
        elapsed >= Duration::from_millis(1800) && elapsed < Duration::from_millis(4000),
        "stalled FastCGI request cut after {elapsed:?}; expected about 2 s"
    );
    report(
        "stalled FastCGI request",
        "BEGIN_REQUEST, then nothing",
        &format!("closed after {elapsed:.1?}"),
    );
    // A connection that sends nothing: cut after idle_timeout (2 s).
    let mut s = TcpStream::connect(("127.0.0.1", fcgi_port)).expect("connect");
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut s, Duration::from_secs(6));
    let elapsed = started.elapsed();
    assert!(
        closed,
        "a silent FastCGI connection is still open after 6 s"
    );
    assert!(
        elapsed >= Duration::from_millis(1800) && elapsed < Duration::from_millis(4000),
        "silent FastCGI connection cut after {elapsed:?}; idle_timeout is 2 s"
    );
    report(
        "silent FastCGI connection",
        "connect, send nothing",
        &format!("closed after {elapsed:.1?}"),
    );
    assert_eq!(
        h.php_requests().len(),
        before,
        "a stalled FastCGI request reached PHP: {}",
        h.php_log()
    );
    h.assert_serving("stalled FastCGI");
}
