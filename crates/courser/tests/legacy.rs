//! End-to-end tests of legacy PHP behaviour in worker mode (issue 4): the real
//! `courser` binary, real `php` workers, real HTTP over loopback.
//!
//! * `tests/php/legacy_exit_worker.php`: an `HttpWorker` whose handler calls
//!   `exit()` or dies of a fatal error mid-request.
//! * `tests/php/legacy_plain_worker.php`: `ScriptWorker` running
//!   `tests/php/legacy_script.php`, a classic script, once per request.

mod common;

use common::{php_script, send_raw, wait_for, Resp, Server};
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

/// Starts courser on `worker` with one worker; rewritten scripts go to the
/// server's temp dir.
fn start(worker: PathBuf) -> Server {
    Server::from_yaml(
        |port, dir| {
            format!(
                "version: \"3\"\nserver:\n  command: \"php {w}\"\n  env:\n    COURSER_LEGACY_CACHE: \"{cache}\"\nhttp:\n  address: 127.0.0.1:{port}\n  pool:\n    num_workers: 1\n    allocate_timeout: 10s\n    destroy_timeout: 2s\nlogs:\n  level: info\nendure:\n  grace_period: 2s\n",
                w = worker.display(),
                cache = dir.join("cache").display(),
            )
        },
        &[],
        None,
    )
}

/// A request with extra header lines and `Connection: close`.
fn req(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (n, v) in headers {
        raw.push_str(&format!("{n}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        raw.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    raw.push_str("\r\n");
    let mut raw = raw.into_bytes();
    raw.extend_from_slice(body);
    send_raw(port, &raw).unwrap_or_else(|| panic!("no answer to {method} {path}"))
}

fn get(port: u16, path: &str) -> Resp {
    req(port, "GET", path, &[], b"")
}

fn text(r: &Resp) -> String {
    String::from_utf8_lossy(&r.2).into_owned()
}

/// The values of header `name` (case-insensitive), in order.
fn header_values(head: &str, name: &str) -> Vec<String> {
    head.lines()
        .skip(1)
        .filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
        .collect()
}

fn wait_for_log(s: &Server, needle: &str) -> String {
    wait_for(Duration::from_secs(5), || s.plain_log().contains(needle));
    let log = s.plain_log();
    assert!(log.contains(needle), "{needle:?} not in the log:\n{log}");
    log
}

fn pid(port: u16) -> u32 {
    let r = get(port, "/pid");
    assert_eq!(r.0, 200, "{}", text(&r));
    text(&r).parse().expect("pid")
}

/// A `legacy_script.php` dump, decoded.
fn dump(r: &Resp) -> Value {
    assert_eq!(r.0, 200, "{}\n{}", r.1, text(r));
    serde_json::from_slice(&r.2).unwrap_or_else(|e| panic!("{e}: {}", text(r)))
}

// 1. exit() and fatal errors in a framework-free handler ---------------------

#[test]
fn exit_mid_request_gives_500_and_the_next_request_a_new_worker() {
    let s = start(php_script("legacy_exit_worker.php"));
    let before = pid(s.port);

    let r = get(s.port, "/exit?token=secret");
    assert_eq!(r.0, 500, "{}", r.1);
    assert_eq!(text(&r), "Internal Server Error\n");
    let line = "courser: exit() or die() was called while handling GET /exit; the response is 500 and this worker will be replaced";
    let log = wait_for_log(&s, line);
    assert!(!log.contains("secret"), "the query stays out of the log");
    assert!(
        log.contains("never sent"),
        "buffered output goes to the log"
    );

    // The very next request, sent at once, is served (by a new worker).
    let after = pid(s.port);
    assert_ne!(before, after);
    assert_eq!(pid(s.port), after, "the new worker stays");
}

#[test]
fn a_fatal_error_gives_500_names_the_error_and_the_worker_is_replaced() {
    let s = start(php_script("legacy_exit_worker.php"));
    let before = pid(s.port);

    let r = get(s.port, "/fatal");
    assert_eq!(r.0, 500, "{}", r.1);
    assert_eq!(text(&r), "Internal Server Error\n", "no PHP details");
    let log = wait_for_log(
        &s,
        "courser: a fatal error: Uncaught Error: Call to undefined function courser_e2e_no_such_function()",
    );
    assert!(
        log.contains(
            ", while handling GET /fatal; the response is 500 and this worker will be replaced"
        ),
        "{log}"
    );

    let after = pid(s.port);
    assert_ne!(before, after);
}

#[test]
fn back_to_back_exits_never_lose_a_request() {
    let s = start(php_script("legacy_exit_worker.php"));
    let mut pids = Vec::new();
    for _ in 0..5 {
        assert_eq!(get(s.port, "/exit").0, 500);
        pids.push(pid(s.port));
    }
    pids.dedup();
    assert_eq!(pids.len(), 5, "each exit replaced the worker: {pids:?}");
    let log = s.plain_log();
    let lines = log
        .lines()
        .filter(|l| {
            l.contains(
                "courser::worker: courser: exit() or die() was called while handling GET /exit",
            )
        })
        .count();
    assert_eq!(lines, 5, "one line per exit:\n{log}");
}

// 2. Plain mode: a classic script per request --------------------------------

#[test]
fn plain_mode_echo_is_the_body_and_header_setcookie_status_reach_the_client() {
    let s = start(php_script("legacy_plain_worker.php"));

    let r = get(s.port, "/page?do=headers");
    assert_eq!(r.0, 201, "{}\n{}", r.1, text(&r));
    assert_eq!(text(&r), "hello from echo\nstatus=201\n");
    assert_eq!(header_values(&r.1, "x-legacy"), ["yes"]);
    assert_eq!(header_values(&r.1, "cache-control"), ["no-store"]);
    assert_eq!(
        header_values(&r.1, "set-cookie"),
        ["first=one%20two; path=/; HttpOnly", "second=2"],
        "two Set-Cookie lines:\n{}",
        r.1
    );
    assert_eq!(
        header_values(&r.1, "content-type"),
        ["text/html; charset=UTF-8"],
        "PHP's default Content-Type"
    );
}

#[test]
fn plain_mode_superglobals_match_the_request_and_do_not_carry_over() {
    let s = start(php_script("legacy_plain_worker.php"));
    let script = php_script("legacy_script.php")
        .canonicalize()
        .expect("script path");
    let script = script.to_string_lossy();

    // GET: query, cookies (the harness-style Cookie header), a custom header.
    let d = dump(&req(
        s.port,
        "GET",
        "/app/page?a=1&list[]=x&list[]=y",
        &[
            ("Cookie", "sid=abc123; theme=dark%20mode"),
            ("X-Test", "hello"),
        ],
        b"",
    ));
    assert_eq!(d["carried"], "no");
    assert_eq!(d["get"], serde_json::json!({"a": "1", "list": ["x", "y"]}));
    assert_eq!(
        d["cookie"],
        serde_json::json!({"sid": "abc123", "theme": "dark mode"})
    );
    assert_eq!(
        d["request"],
        serde_json::json!({"a": "1", "list": ["x", "y"]})
    );
    assert_eq!(d["post"], serde_json::json!([]));
    let server = &d["server"];
    assert_eq!(server["REQUEST_METHOD"], "GET");
    assert_eq!(server["REQUEST_URI"], "/app/page?a=1&list[]=x&list[]=y");
    assert_eq!(server["QUERY_STRING"], "a=1&list[]=x&list[]=y");
    assert_eq!(server["REMOTE_ADDR"], "127.0.0.1");
    assert_eq!(server["HTTP_X_TEST"], "hello");
    assert_eq!(server["HTTPS"], Value::Null);
    assert_eq!(server["SCRIPT_NAME"], "/legacy_script.php");
    assert_eq!(server["PHP_SELF"], "/legacy_script.php");
    assert_eq!(server["SCRIPT_FILENAME"], script.as_ref());
    let first_pid = d["pid"].clone();

    // POST, urlencoded.
    let d = dump(&req(
        s.port,
        "POST",
        "/form?a=from-query",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"a=from-post&b[]=1&b[]=2",
    ));
    assert_eq!(d["carried"], "no", "the script's variables are gone");
    assert_eq!(d["server"]["REQUEST_METHOD"], "POST");
    assert_eq!(
        d["server"]["CONTENT_TYPE"],
        "application/x-www-form-urlencoded"
    );
    assert_eq!(d["get"], serde_json::json!({"a": "from-query"}));
    assert_eq!(
        d["post"],
        serde_json::json!({"a": "from-post", "b": ["1", "2"]})
    );
    assert_eq!(
        d["request"],
        serde_json::json!({"a": "from-post", "b": ["1", "2"]}),
        "request_order GP"
    );
    assert_eq!(d["cookie"], serde_json::json!([]), "no cookie this time");

    // POST, multipart with a file.
    let boundary = "courserboundary";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nmy notes\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"doc\"; filename=\"notes.txt\"\r\nContent-Type: text/plain\r\n\r\nline one\nline two\n\r\n\
         --{boundary}--\r\n"
    );
    let d = dump(&req(
        s.port,
        "POST",
        "/upload",
        &[(
            "Content-Type",
            &format!("multipart/form-data; boundary={boundary}"),
        )],
        body.as_bytes(),
    ));
    assert_eq!(d["post"], serde_json::json!({"title": "my notes"}));
    assert_eq!(
        d["files"],
        serde_json::json!({"doc": ["notes.txt", "text/plain", 18, 0, "line one\nline two\n"]})
    );

    // The next request sees none of it.
    let d = dump(&get(s.port, "/"));
    assert_eq!(d["carried"], "no");
    assert_eq!(d["get"], serde_json::json!([]));
    assert_eq!(d["post"], serde_json::json!([]));
    assert_eq!(d["cookie"], serde_json::json!([]));
    assert_eq!(d["files"], serde_json::json!([]));
    assert_eq!(d["server"]["REQUEST_METHOD"], "GET");
    assert_eq!(d["server"]["HTTP_X_TEST"], Value::Null);
    assert_eq!(d["pid"], first_pid, "one worker served them all");
}

#[test]
fn plain_mode_exit_after_a_redirect_sends_it_and_replaces_the_worker() {
    let s = start(php_script("legacy_plain_worker.php"));
    let before = dump(&get(s.port, "/"))["pid"].clone();

    let r = get(s.port, "/?do=redirect");
    assert_eq!(r.0, 302, "{}", r.1);
    assert_eq!(header_values(&r.1, "location"), ["/after-redirect"]);
    let script = php_script("legacy_script.php")
        .canonicalize()
        .expect("script path");
    wait_for_log(
        &s,
        &format!(
            "courser: exit() or die() was called at {}:20 while handling GET /; the response it produced (302) was sent and this worker will be replaced",
            script.display()
        ),
    );

    let after = dump(&get(s.port, "/"))["pid"].clone();
    assert_ne!(before, after);
}

#[test]
fn plain_mode_fatal_error_sends_the_output_so_far_with_500() {
    let s = start(php_script("legacy_plain_worker.php"));
    let before = dump(&get(s.port, "/"))["pid"].clone();

    let r = get(s.port, "/?do=fatal");
    assert_eq!(r.0, 500, "{}", r.1);
    assert_eq!(
        text(&r),
        "half a page;",
        "as PHP-FPM with display_errors off"
    );
    wait_for_log(
        &s,
        "courser: a fatal error: Cannot redeclare courser_e2e_twice()",
    );

    let after = dump(&get(s.port, "/"))["pid"].clone();
    assert_ne!(before, after);
}

// 3. The bundled example ------------------------------------------------------

#[test]
fn the_legacy_example_serves_its_pages() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let port = common::free_port();
    let mut child = std::process::Command::new(common::courser())
        .args(["serve", "-c"])
        .arg(root.join("examples/legacy/.rr.yaml"))
        .args(["-o", &format!("http.address=127.0.0.1:{port}")])
        // The examples' rpc ports are fixed; tests run side by side.
        .args([
            "-o",
            &format!(
                "rpc.listen=tcp://127.0.0.1:{}",
                std::net::TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .expect("port")
                    .port()
            ),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start courser");
    let up = wait_for(Duration::from_secs(20), || {
        common::get(port, "/?name=Ada").is_some_and(|r| r.0 == 200)
    });
    let result = std::panic::catch_unwind(|| {
        assert!(up, "examples/legacy never answered");
        let r = get(port, "/?name=Ada");
        assert!(text(&r).contains("<h1>Hello, Ada</h1>"), "{}", text(&r));
        assert_eq!(
            header_values(&r.1, "set-cookie"),
            ["visits=1; path=/; SameSite=Lax"]
        );
        assert_eq!(header_values(&r.1, "x-example"), ["legacy"]);

        let r = req(
            port,
            "POST",
            "/?name=Ada",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            b"note=hi+there",
        );
        assert_eq!(r.0, 302, "{}", r.1);
        assert_eq!(header_values(&r.1, "location"), ["/?name=Ada"]);
        assert_eq!(
            header_values(&r.1, "set-cookie"),
            ["note=hi%20there; path=/; HttpOnly; SameSite=Lax"]
        );

        let r = req(
            port,
            "GET",
            "/?name=Ada",
            &[("Cookie", "visits=2; note=hi%20there")],
            b"",
        );
        assert!(text(&r).contains("Visit number 3"), "{}", text(&r));
        assert!(text(&r).contains("Your note: hi there"), "{}", text(&r));

        let r = get(port, "/about.php");
        assert!(text(&r).starts_with("This is /about.php"), "{}", text(&r));
        assert_eq!(get(port, "/missing.php").0, 404);
        assert!(text(&get(port, "/style.css")).contains("font-family"));
    });
    let _ = child.kill();
    let _ = child.wait();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}
