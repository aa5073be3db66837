//! The Laravel bridge end to end: the real binary, the example app in
//! `examples/laravel`, real `php` workers, raw HTTP clients that keep their
//! own cookies.

mod common;

use common::{send_raw, Resp, Server};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

fn laravel_installed() -> bool {
    std::path::Path::new("/usr/share/php/Illuminate/autoload.php").is_file()
}

fn example_worker() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/laravel/worker.php")
}

/// The Laravel example with one worker (so every request meets the state the
/// previous one left) and the given leak-check mode; `None` (the test is
/// skipped) without Debian's php-laravel-framework.
fn laravel(leak_check: &str) -> Option<Server> {
    if !laravel_installed() {
        eprintln!("skipped: php-laravel-framework is not installed");
        return None;
    }
    Some(Server::from_yaml(
        |port, dir| {
            format!(
                "version: \"3\"\nserver:\n  command: \"php {}\"\n  env:\n    APP_STORAGE: \"{}\"\n    COURSER_LEAK_CHECK: \"{leak_check}\"\nhttp:\n  address: 127.0.0.1:{port}\n  pool:\n    num_workers: 1\n    allocate_timeout: 10s\n    destroy_timeout: 2s\nlogs:\n  level: info\n",
                example_worker().display(),
                dir.join("storage").display(),
            )
        },
        &[],
        None,
    ))
}

/// A client with its own cookie jar.
#[derive(Default)]
struct Client {
    jar: BTreeMap<String, String>,
}

impl Client {
    fn get(&mut self, port: u16, path: &str) -> Resp {
        let mut head = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\nConnection: close\r\n"
        );
        if !self.jar.is_empty() {
            let cookies: Vec<String> = self.jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
            head.push_str(&format!("Cookie: {}\r\n", cookies.join("; ")));
        }
        head.push_str("\r\n");
        let resp = send_raw(port, head.as_bytes()).unwrap_or_else(|| panic!("no answer to {path}"));
        for line in resp.1.lines() {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            if name.eq_ignore_ascii_case("set-cookie") {
                let pair = value.trim().split(';').next().unwrap_or_default();
                if let Some((k, v)) = pair.split_once('=') {
                    self.jar.insert(k.to_string(), v.to_string());
                }
            }
        }
        resp
    }

    fn json(&mut self, port: u16, path: &str) -> serde_json::Value {
        let (status, head, body) = self.get(port, path);
        assert_eq!(
            status,
            200,
            "{path}: {head}\n{}",
            String::from_utf8_lossy(&body)
        );
        serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("{path}: {e}: {}", String::from_utf8_lossy(&body)))
    }
}

#[test]
fn laravel_users_in_a_row_never_see_each_others_auth_session_or_cookies() {
    let Some(s) = laravel("memory") else { return };
    let mut anon = Client::default();
    let (status, _, body) = anon.get(s.port, "/");
    assert_eq!(
        (status, body.as_slice()),
        (200, &b"Hello from Laravel\n"[..])
    );
    assert_eq!(anon.get(s.port, "/hello/Ada").2, b"Hello, Ada\n");
    let items = anon.json(s.port, "/items");
    assert_eq!(items.as_array().map(Vec::len), Some(20));

    let mut alice = Client::default();
    let mut bob = Client::default();
    assert_eq!(
        alice.json(s.port, "/login/alice?note=for-alice&flavor=vanilla")["user"],
        "alice"
    );
    assert_eq!(
        bob.json(s.port, "/login/bob?note=for-bob&flavor=chocolate")["user"],
        "bob"
    );
    assert!(alice.jar.contains_key("laravel_session") && bob.jar.contains_key("laravel_session"));
    assert_ne!(alice.jar["laravel_session"], bob.jar["laravel_session"]);

    for _ in 0..3 {
        let a = alice.json(s.port, "/whoami");
        assert_eq!(
            (&a["user"], &a["note"], &a["flavor"]),
            (&"alice".into(), &"for-alice".into(), &"vanilla".into()),
            "{a}"
        );
        let b = bob.json(s.port, "/whoami");
        assert_eq!(
            (&b["user"], &b["note"], &b["flavor"]),
            (&"bob".into(), &"for-bob".into(), &"chocolate".into()),
            "{b}"
        );
        let mut stranger = Client::default();
        let n = stranger.json(s.port, "/whoami");
        assert!(
            n["user"].is_null() && n["note"].is_null() && n["flavor"].is_null(),
            "{n}"
        );
        assert!(
            !stranger.jar.contains_key("flavor"),
            "a stranger got another user's cookie"
        );
        assert_eq!(
            stranger.get(s.port, "/private").0,
            401,
            "a stranger was let in"
        );
    }

    // A request's locale, config, view data and queued cookies end with it.
    assert_eq!(anon.json(s.port, "/dirty")["dirty"], true);
    let after = Client::default().json(s.port, "/whoami");
    assert_eq!(after["locale"], "en", "{after}");
    assert_eq!(after["app_name"], "Courser Laravel example", "{after}");
    assert_eq!(after["shared"], serde_json::json!(["errors"]), "{after}");
    assert_eq!(after["queued"], serde_json::json!([]), "{after}");
}

#[test]
fn laravel_full_leak_check_names_the_static_a_route_grows() {
    let Some(s) = laravel("full") else { return };
    let mut c = Client::default();
    for path in [
        "/", "/hello/a", "/items", "/whoami", "/dirty", "/hello/b", "/", "/whoami", "/dirty",
        "/leak", "/leak", "/leak",
    ] {
        assert_eq!(c.get(s.port, path).0, 200, "{path}");
    }
    let ok = common::wait_for(Duration::from_secs(5), || {
        s.log_text().contains("request 3 of this route")
    });
    let log = s.log_text();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("courser leak-check:"))
        .collect();
    for l in &lines {
        println!("{l}");
    }
    assert!(ok, "no leak report; log:\n{log}");
    assert_eq!(
        lines.len(),
        2,
        "only /leak's 2nd and 3rd requests leak: {lines:#?}"
    );
    assert!(lines[0].contains("courser leak-check: GET /leak (request 2 of this route) left state behind: static App\\Support\\LeakyCache::$items grew from 1 to 2 entries; memory +"), "{}", lines[0]);
    assert!(
        lines[1].contains("LeakyCache::$items grew from 2 to 3 entries"),
        "{}",
        lines[1]
    );
}

#[test]
fn laravel_memory_leak_check_names_the_route_that_grows() {
    let Some(s) = laravel("memory") else { return };
    let mut c = Client::default();
    for i in 0..80 {
        assert_eq!(c.get(s.port, "/leak").0, 200);
        assert_eq!(c.get(s.port, &format!("/hello/n{i}")).0, 200);
    }
    let found = common::wait_for(Duration::from_secs(5), || {
        s.log_text().contains("has grown this worker's memory")
    });
    let log = s.log_text();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("courser leak-check:"))
        .collect();
    for l in &lines {
        println!("{l}");
    }
    assert!(found, "no memory report; log:\n{log}");
    assert!(
        lines
            .iter()
            .all(|l| l.contains("route GET /leak has grown this worker's memory by")),
        "{lines:#?}"
    );
    assert!(lines[0].contains("COURSER_LEAK_CHECK=full"), "{}", lines[0]);
}

#[test]
fn laravel_exit_in_a_request_gives_500_and_a_new_worker_serves_the_next() {
    let Some(s) = laravel("off") else { return };
    let mut c = Client::default();
    let before = String::from_utf8_lossy(&c.get(s.port, "/pid").2).into_owned();
    let (status, head, _) = c.get(s.port, "/exit");
    assert_eq!(status, 500, "{head}");
    let mut after = String::new();
    assert!(common::wait_for(Duration::from_secs(10), || {
        let (status, _, body) = c.get(s.port, "/pid");
        after = String::from_utf8_lossy(&body).into_owned();
        status == 200
    }));
    assert_ne!(
        before, after,
        "the worker that called exit() was not replaced"
    );
    assert_eq!(c.get(s.port, "/hello/again").2, b"Hello, again\n");
}

#[test]
fn laravel_streamed_response_reaches_the_client_while_it_runs() {
    use std::io::{Read, Write};
    let Some(s) = laravel("off") else { return };
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", s.port)).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    conn.write_all(b"GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .expect("send");
    // Read until the first line has arrived: the later ones are still being
    // written (300 ms apart), so a buffered response would bring all three at once.
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("line 1") {
        let n = conn.read(&mut buf).expect("read");
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(
        !String::from_utf8_lossy(&seen).contains("line 3"),
        "the whole stream came at once: {}",
        String::from_utf8_lossy(&seen)
    );
    conn.read_to_end(&mut seen).expect("read the rest");
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let body =
        common::dechunk(&seen[text.find("\r\n\r\n").expect("head") + 4..]).expect("chunked body");
    assert_eq!(String::from_utf8_lossy(&body), "line 1\nline 2\nline 3\n");
}
