//! End-to-end tests: the real `courser` binary, real `php` workers, real HTTP.

mod common;

use common::{body_text, courser, free_port, get, make_certs, request, sh, wait_for, Server};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn version_prints() {
    let out = Command::new(courser())
        .arg("--version")
        .output()
        .expect("run");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("courser "));
}

fn check(yaml: &str) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("c.yaml");
    std::fs::write(&p, yaml).expect("write");
    let out = Command::new(courser())
        .args(["serve", "--check", "-c"])
        .arg(&p)
        .output()
        .expect("run");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn check_validates_and_names_the_key() {
    let base = "version: \"3\"\nserver:\n  command: php w.php\nhttp:\n  address: 127.0.0.1:1\n  pool:\n    num_workers: 2\n";
    let cases: &[(&str, bool, &[&str])] = &[
        (base, true, &["valid"]),
        (
            &base.replace("num_workers: 2", "num_workers: many"),
            false,
            &["http.pool.num_workers", "many"],
        ),
        (
            &base.replace("num_workers: 2", "num_worker: 2"),
            true,
            &["unknown key http.pool.num_worker", "num_workers"],
        ),
        (
            &base.replace("num_workers: 2", "allocate_timeout: soon"),
            false,
            &["http.pool.allocate_timeout", "soon"],
        ),
        (
            &format!("{base}  http3:\n    address: 127.0.0.1:443\n"),
            true,
            &["http.http3 is not supported by Courser yet"],
        ),
        (
            &format!("{base}  ssl:\n    address: 127.0.0.1:443\n"),
            false,
            &["http.ssl.cert is required"],
        ),
        (
            &format!("{base}  codec: yaml\n"),
            false,
            &["http.codec", "yaml", "json (default) or proto"],
        ),
        (&base.replace("version: \"3\"\n", ""), false, &["version"]),
    ];
    for (yaml, ok, needles) in cases {
        let (got_ok, out) = check(yaml);
        assert_eq!(got_ok, *ok, "{yaml}\n{out}");
        for n in *needles {
            assert!(out.contains(n), "expected {n:?} in:\n{out}");
        }
    }
}

#[test]
fn boot_failure_exits_non_zero_with_php_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("broken.php"), "<?php\n$x = ;\n").expect("write");
    let port = free_port();
    std::fs::write(
        dir.path().join(".rr.yaml"),
        format!("version: \"3\"\nserver:\n  command: php broken.php\nhttp:\n  address: 127.0.0.1:{port}\n  pool:\n    num_workers: 2\n"),
    )
    .expect("write");
    let out = Command::new(courser())
        .args(["serve", "-c"])
        .arg(dir.path().join(".rr.yaml"))
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("PHP Parse error") && err.contains("exit code 255"),
        "{err}"
    );
}

fn relay_cases(dir: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("pipes", String::new()),
        (
            "unix",
            format!("  relay: unix://{}\n", dir.join("r.sock").display()),
        ),
        ("tcp", format!("  relay: tcp://127.0.0.1:{}\n", free_port())),
    ]
}

#[test]
fn serves_php_over_every_relay() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for (name, relay) in relay_cases(tmp.path()) {
        let s = Server::start(&relay);
        let env = body_text(&get(s.port, "/env"));
        assert!(
            env.contains("\"RR_MODE\":\"http\"")
                && env.contains("\"APP_MARK\":\"mark-42\"")
                && env.contains("\"RR_VERSION\""),
            "{name}: {env}"
        );
        let r = request(s.port, "POST", "/echo", b"payload-bytes");
        assert_eq!(r.as_ref().map(|r| r.0), Some(200), "{name}");
        assert_eq!(
            body_text(&r),
            "payload-bytes",
            "{name}: echo went to stderr, not into the body"
        );
        let c = get(s.port, "/cookies");
        let head = c.as_ref().map(|c| c.1.clone()).unwrap_or_default();
        assert_eq!(head.matches("set-cookie:").count(), 2, "{name}: {head}");
        assert_eq!(
            body_text(&c),
            r#"{"sid":"abc123","theme":"dark mode"}"#,
            "{name}"
        );
        assert!(
            wait_for(Duration::from_secs(5), || s
                .log_text()
                .contains("this echo must go to stderr")),
            "{name}: echo not in the log"
        );
    }
}

#[test]
fn crashes_errors_and_stdout_garbage_fail_one_request_only() {
    let s = Server::start("");
    assert_eq!(get(s.port, "/crash").map(|r| r.0), Some(500));
    assert_eq!(get(s.port, "/error").map(|r| r.0), Some(500));
    let g = get(s.port, "/stdout");
    assert_eq!(g.as_ref().map(|r| r.0), Some(500));
    assert!(
        !body_text(&g).contains("Hello from PHP"),
        "PHP detail must not reach the client"
    );
    for _ in 0..10 {
        assert_eq!(get(s.port, "/").map(|r| r.0), Some(200));
    }
    let log = s.log_text();
    assert!(
        log.contains("crashed while running the job (exit code 9)"),
        "{log}"
    );
    // A GET whose worker crashed runs once more on another worker, and only once.
    assert_eq!(
        log.matches("the worker crashed before answering; running this repeatable job")
            .count(),
        1,
        "{log}"
    );
    assert!(log.contains("deliberate failure"), "{log}");
    assert!(
        log.contains("Hello from PHP") && log.contains("STDERR"),
        "{log}"
    );
}

/// Issue 18, item 7: too many multipart parts get 400 with the reason and the
/// key that raises the limit, in the answer and in the log.
#[test]
fn too_many_multipart_parts_say_why_and_the_limit_is_a_key() {
    let s = Server::start("");
    let multipart = |n: usize| {
        let mut body = String::new();
        for i in 0..n {
            body.push_str(&format!(
                "--XyZ\r\nContent-Disposition: form-data; name=\"v{i}\"\r\n\r\n{i}\r\n"
            ));
        }
        body.push_str("--XyZ--\r\n");
        format!(
            "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let r = common::send_raw(s.port, multipart(1001).as_bytes());
    assert_eq!(r.as_ref().map(|r| r.0), Some(400));
    let text = body_text(&r);
    assert!(
        text.contains("more than 1000 parts") && text.contains("http.uploads.max_parts"),
        "{text}"
    );
    assert!(wait_for(Duration::from_secs(5), || s
        .log_text()
        .contains("more than 1000 parts")));
    let r = common::send_raw(s.port, multipart(1000).as_bytes());
    assert_eq!(r.as_ref().map(|r| r.0), Some(200), "1000 parts are fine");
    drop(s);
    let s = Server::start_with("", "m", &["-o", "http.uploads.max_parts=5"], None);
    let r = common::send_raw(s.port, multipart(6).as_bytes());
    assert!(body_text(&r).contains("more than 5 parts"), "{r:?}");
    let r = common::send_raw(s.port, multipart(5).as_bytes());
    assert_eq!(r.as_ref().map(|r| r.0), Some(200));
}

/// Issue 18, item 6: one failure, one log line (the pool no longer logs what
/// its caller logs with the request it belonged to).
#[test]
fn a_worker_failure_is_logged_once_with_its_request() {
    let s = Server::start("");
    assert_eq!(
        common::request(s.port, "POST", "/crash", b"x").map(|r| r.0),
        Some(500)
    );
    assert_eq!(get(s.port, "/error").map(|r| r.0), Some(500));
    assert!(wait_for(Duration::from_secs(5), || s
        .log_text()
        .contains("deliberate failure")));
    let log = s.plain_log();
    let crash: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("crashed while running the job"))
        .collect();
    assert_eq!(crash.len(), 1, "{log}");
    assert!(
        crash[0].contains("/crash"),
        "the line names the request: {}",
        crash[0]
    );
    let error: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("reported an error"))
        .collect();
    assert_eq!(error.len(), 1, "{log}");
    assert!(error[0].contains("/error"), "{}", error[0]);
}

#[test]
fn sigterm_lets_in_flight_requests_finish() {
    let mut s = Server::start("");
    let port = s.port;
    let slow = std::thread::spawn(move || get(port, "/sleep?ms=800"));
    std::thread::sleep(Duration::from_millis(200));
    s.signal("TERM");
    let r = slow.join().expect("join");
    assert_eq!(
        r.as_ref().map(|r| r.0),
        Some(200),
        "in-flight request was dropped"
    );
    assert!(
        wait_for(Duration::from_secs(10), || matches!(
            s.child.try_wait(),
            Ok(Some(_))
        )),
        "courser did not exit"
    );
    let status = s.child.try_wait().ok().flatten().expect("exited");
    assert!(status.success(), "exit status {status:?}\n{}", s.log_text());
    assert!(get(port, "/").is_none(), "still accepting after SIGTERM");
}

#[test]
fn overrides_and_dotenv_reach_the_workers() {
    let s = Server::start_with(
        "",
        "${DOT_MARK:-unset}",
        &["-o", "http.pool.num_workers=1"],
        Some("# app settings\nDOT_MARK=from-dotenv\n"),
    );
    let env = body_text(&get(s.port, "/env"));
    assert!(env.contains("\"APP_MARK\":\"from-dotenv\""), "{env}");
    // One worker only: every request is served by the same pid.
    let pids: std::collections::HashSet<String> =
        (0..6).map(|_| body_text(&get(s.port, "/pid"))).collect();
    assert_eq!(pids.len(), 1, "{pids:?}");
}

#[test]
fn a_second_signal_stops_at_once_and_kills_workers() {
    let mut s = Server::start("");
    let worker_pid: i32 = body_text(&get(s.port, "/pid")).parse().expect("pid");
    let port = s.port;
    let _slow = std::thread::spawn(move || get(port, "/sleep?ms=20000"));
    std::thread::sleep(Duration::from_millis(300));
    s.signal("TERM");
    std::thread::sleep(Duration::from_millis(200));
    s.signal("INT");
    assert!(
        wait_for(Duration::from_secs(5), || matches!(
            s.child.try_wait(),
            Ok(Some(_))
        )),
        "courser ignored the second signal"
    );
    let status = s.child.try_wait().ok().flatten().expect("exited");
    assert_eq!(status.code(), Some(1));
    let gone = wait_for(Duration::from_secs(5), || {
        !Path::new(&format!("/proc/{worker_pid}")).exists()
    });
    assert!(gone, "worker {worker_pid} outlived a forced stop");
}

#[test]
fn https_with_http2_mtls_and_redirect() {
    let certs = tempfile::tempdir().expect("tempdir");
    make_certs(certs.path());
    let c = certs.path().display();
    let tls_port = free_port();
    let s = Server::start_with(
        "",
        "mark-42",
        &[
            "-o",
            &format!("http.ssl.address=127.0.0.1:{tls_port}"),
            "-o",
            &format!("http.ssl.cert={c}/server.crt"),
            "-o",
            &format!("http.ssl.key={c}/server.key"),
            "-o",
            &format!("http.ssl.root_ca={c}/ca.crt"),
            "-o",
            "http.ssl.client_auth_type=require_and_verify_client_cert",
            "-o",
            "http.ssl.redirect=true",
        ],
        None,
    );
    let base = format!(
        "curl -s --max-time 10 --resolve localhost:{tls_port}:127.0.0.1 --cacert {c}/ca.crt"
    );
    let ok = sh(&format!("{base} --cert {c}/client.crt --key {c}/client.key -w ' %{{http_version}}' https://localhost:{tls_port}/uri"));
    let text = String::from_utf8_lossy(&ok.stdout).into_owned();
    assert!(
        text.starts_with(&format!("https://localhost:{tls_port}/uri HTTP/2.0")),
        "{text}"
    );
    assert!(text.ends_with(" 2"), "HTTP/2 over ALPN expected: {text}");
    let h1 = sh(&format!("{base} --http1.1 --cert {c}/client.crt --key {c}/client.key -D - https://localhost:{tls_port}/"));
    let h1 = String::from_utf8_lossy(&h1.stdout).to_lowercase();
    assert!(
        h1.starts_with("http/1.1 200") && h1.contains("strict-transport-security"),
        "{h1}"
    );
    let refused = sh(&format!("{base} https://localhost:{tls_port}/"));
    assert!(
        !refused.status.success() || refused.stdout.is_empty(),
        "a client without a certificate was served"
    );
    let plain = get(s.port, "/path?q=1").expect("plain answer");
    assert_eq!(plain.0, 308, "{}", plain.1);
    assert!(
        plain
            .1
            .to_lowercase()
            .contains(&format!("location: https://localhost:{tls_port}/path?q=1")),
        "{}",
        plain.1
    );
}

#[test]
fn streams_compresses_and_speaks_h2c() {
    let s = Server::start_with("", "mark-42", &["-o", "http.middleware=[gzip]"], None);
    let u = format!("http://127.0.0.1:{}", s.port);
    // A streamed response arrives whole, chunked.
    let out = sh(&format!("curl -s --max-time 10 -D - {u}/stream?n=5"));
    let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(text.contains("transfer-encoding: chunked"), "{text}");
    assert!(
        text.contains("chunk1\nchunk2\nchunk3\nchunk4\nchunk5\n"),
        "{text}"
    );
    // Compression by Accept-Encoding: gzip, brotli and zstd.
    for enc in ["gzip", "br", "zstd"] {
        let out = sh(&format!(
            "curl -s --max-time 10 -D - -o /dev/null -H 'Accept-Encoding: {enc}' {u}/big?kb=64"
        ));
        let head = String::from_utf8_lossy(&out.stdout).to_lowercase();
        assert!(
            head.contains(&format!("content-encoding: {enc}")),
            "{enc}: {head}"
        );
    }
    let out = sh(&format!(
        "curl -s --max-time 10 --compressed {u}/big?kb=64 | wc -c"
    ));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        (64 * 1024 / 17 * 17).to_string()
    );
    // Cleartext HTTP/2 with prior knowledge.
    let out = sh(&format!(
        "curl -s --max-time 10 --http2-prior-knowledge -w ' %{{http_version}}' {u}/uri"
    ));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("HTTP/2.0") && text.ends_with(" 2"), "{text}");
}

#[test]
fn a_client_leaving_mid_stream_stops_the_worker_stream() {
    let s = Server::start("");
    // 200 chunks at 20 ms each would take 4 s; the client leaves after 0.3 s.
    let _ = sh(&format!(
        "curl -s --max-time 0.3 http://127.0.0.1:{}/stream?n=200 > /dev/null",
        s.port
    ));
    // Both workers keep serving quickly afterwards.
    let t = Instant::now();
    for _ in 0..6 {
        assert_eq!(get(s.port, "/pid").map(|r| r.0), Some(200));
    }
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "the cancelled stream kept a worker busy: {:?}",
        t.elapsed()
    );
}

#[test]
fn static_files_headers_and_cors() {
    let public = tempfile::tempdir().expect("tempdir");
    std::fs::write(public.path().join("file.txt"), "static-ok\n").expect("write");
    std::fs::write(public.path().join("x.php"), "<?php secret").expect("write");
    let p = public.path().display().to_string();
    let s = Server::start_with(
        "",
        "mark-42",
        &[
            "-o",
            "http.middleware=[static, headers]",
            "-o",
            &format!("http.static.dir={p}"),
            "-o",
            "http.static.forbid=[.php]",
            "-o",
            "http.static.calculate_etag=true",
            "-o",
            "http.headers.response.X-Served-By=courser",
            "-o",
            "http.headers.cors.allowed_origin=https://app.example",
            "-o",
            "http.headers.cors.allowed_methods=GET,POST",
            "-o",
            "http.headers.cors.allowed_headers=Content-Type",
        ],
        None,
    );
    let u = format!("http://127.0.0.1:{}", s.port);
    let r = get(s.port, "/file.txt").expect("static");
    assert_eq!(
        (r.0, String::from_utf8_lossy(&r.2).as_ref()),
        (200, "static-ok\n")
    );
    assert!(
        r.1.to_lowercase().contains("etag:") && r.1.to_lowercase().contains("x-served-by: courser"),
        "{}",
        r.1
    );
    // A forbidden extension is never served as a file; PHP gets the request.
    let php = body_text(&get(s.port, "/x.php"));
    assert!(
        !php.contains("secret") && php.contains("GET /x.php"),
        "{php}"
    );
    for path in [
        "/../file.txt",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/..%2f..%2fetc/passwd",
    ] {
        let r = get(s.port, path);
        assert!(
            !body_text(&r).contains("root:"),
            "{path} escaped the static dir"
        );
    }
    // CORS preflight is answered without PHP; simple requests get the CORS headers.
    let out = sh(&format!("curl -s -D - -o /dev/null -X OPTIONS -H 'Origin: https://app.example' -H 'Access-Control-Request-Method: POST' {u}/api"));
    let head = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(
        head.starts_with("http/1.1 200")
            && head.contains("access-control-allow-origin: https://app.example"),
        "{head}"
    );
    let out = sh(&format!(
        "curl -s -D - -o /dev/null -H 'Origin: https://evil.example' {u}/api"
    ));
    assert!(!String::from_utf8_lossy(&out.stdout)
        .to_lowercase()
        .contains("access-control-allow-origin"));
}

#[test]
fn fastcgi_front_behind_real_nginx() {
    if Command::new("nginx").arg("-v").output().is_err() {
        panic!("nginx is not installed (apt-get install nginx-light); .ci/run installs it");
    }
    let fcgi_port = free_port();
    let s = Server::start_with(
        "",
        "mark-42",
        &[
            "-o",
            &format!("http.fcgi.address=tcp://127.0.0.1:{fcgi_port}"),
        ],
        None,
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().display();
    let nginx_port = free_port();
    let conf = format!(
        "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{ worker_connections 64; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body; fastcgi_temp_path {d}/fcgi; proxy_temp_path {d}/proxy; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
         upstream courser {{ server 127.0.0.1:{fcgi_port}; keepalive 4; }}\n\
         server {{\n    listen 127.0.0.1:{nginx_port};\n    location / {{\n      include /etc/nginx/fastcgi_params;\n      fastcgi_keep_conn on;\n      fastcgi_pass courser;\n    }}\n  }}\n}}\n"
    );
    std::fs::write(dir.path().join("nginx.conf"), conf).expect("write nginx.conf");
    let mut nginx = Command::new("nginx")
        .args(["-p"])
        .arg(dir.path())
        .arg("-c")
        .arg(dir.path().join("nginx.conf"))
        .stderr(Stdio::null())
        .spawn()
        .expect("start nginx");
    let ok = wait_for(Duration::from_secs(10), || {
        get(nginx_port, "/uri").is_some_and(|r| r.0 == 200)
    });
    let result = std::panic::catch_unwind(|| {
        assert!(
            ok,
            "nginx never answered through Courser: {}",
            std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default()
        );
        let uri = body_text(&get(nginx_port, "/uri?x=1"));
        assert!(uri.contains("/uri?x=1"), "{uri}");
        let echo = request(nginx_port, "POST", "/echo", b"through-nginx");
        assert_eq!(body_text(&echo), "through-nginx");
        let cookies = get(nginx_port, "/cookies").expect("cookies");
        assert_eq!(
            cookies.1.to_lowercase().matches("set-cookie:").count(),
            2,
            "{}",
            cookies.1
        );
        // Many requests over nginx's kept-alive FastCGI connections.
        for i in 0..20 {
            assert_eq!(get(nginx_port, &format!("/n{i}")).map(|r| r.0), Some(200));
        }
        let streamed = body_text(&get(nginx_port, "/stream?n=3"));
        assert_eq!(streamed, "chunk1\nchunk2\nchunk3\n");
    });
    // SIGTERM lets the nginx master stop its workers too (SIGKILL would orphan them).
    let _ = Command::new("kill")
        .args(["-TERM", &nginx.id().to_string()])
        .status();
    if !wait_for(Duration::from_secs(5), || {
        matches!(nginx.try_wait(), Ok(Some(_)))
    }) {
        let _ = nginx.kill();
    }
    let _ = nginx.wait();
    drop(s);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}
