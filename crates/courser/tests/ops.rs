//! Operations through the real binary: the CLI over RPC, metrics, health and
//! readiness, reset under load, SIGHUP, drain before shutdown, `courser stop`.

mod common;

use common::*;
use std::collections::HashSet;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Ops {
    s: Server,
    rpc: u16,
    metrics: u16,
    status: u16,
}

fn start(drain: &str) -> Ops {
    let (rpc, metrics, status) = (free_port(), free_port(), free_port());
    let worker = worker_script();
    let drain = drain.to_string();
    let s = Server::from_yaml(
        move |port, _| {
            format!(
                "version: \"3\"\nrpc:\n  listen: tcp://127.0.0.1:{rpc}\nserver:\n  command: \"php {}\"\nhttp:\n  address: 127.0.0.1:{port}\n  pool:\n    num_workers: 2\n    destroy_timeout: 2s\nmetrics:\n  address: 127.0.0.1:{metrics}\nstatus:\n  address: 127.0.0.1:{status}\n  drain_delay: {drain}\nlogs:\n  level: info\nendure:\n  grace_period: 5s\n",
                worker.display()
            )
        },
        &[],
        None,
    );
    Ops {
        s,
        rpc,
        metrics,
        status,
    }
}

fn worker_pids(o: &Ops) -> HashSet<String> {
    let (ok, text) = o.s.cli(&["workers"]);
    assert!(ok, "{text}");
    text.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.bytes().all(|b| b.is_ascii_digit()))
        .map(str::to_string)
        .collect()
}

fn status_code(port: u16, path: &str) -> u16 {
    get(port, path).map(|r| r.0).unwrap_or(0)
}

#[test]
fn workers_cli_metrics_health_and_reset_under_load() {
    let o = start("0s");
    // `courser workers` lists exactly the pids PHP reports.
    let pids = worker_pids(&o);
    assert_eq!(pids.len(), 2, "{pids:?}");
    let seen: HashSet<String> = (0..20).map(|_| body_text(&get(o.s.port, "/pid"))).collect();
    assert!(seen.is_subset(&pids), "PHP pids {seen:?} not in {pids:?}");
    // Metrics and status.
    let m = body_text(&get(o.metrics, "/metrics"));
    assert!(
        m.contains("courser_workers{pool=\"http\",state=\"ready\"}")
            || m.contains("courser_workers{state=\"ready\",pool=\"http\"}"),
        "{m}"
    );
    assert!(
        m.lines()
            .any(|l| l.starts_with("courser_http_requests_total")
                && l.contains("2xx")
                && !l.ends_with(" 0")),
        "{m}"
    );
    assert!(
        m.contains("courser_pool_wait_seconds_count{pool=\"http\"}"),
        "no wait-time histogram:\n{m}"
    );
    assert_eq!(status_code(o.status, "/health?plugin=http"), 200);
    assert_eq!(status_code(o.status, "/ready?plugin=http"), 200);
    assert_eq!(status_code(o.status, "/ready?plugin=nope"), 404);
    // Reset while four clients send requests: none fails, every worker is new.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let port = o.s.port;
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(20);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    match get(port, "/pid") {
                        Some(r) if r.0 == 200 => ok.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    assert!(wait_for(Duration::from_secs(5), || ok
        .load(Ordering::Relaxed)
        > 50));
    let (reset_ok, text) = o.s.cli(&["reset"]);
    assert!(
        reset_ok && text.contains("http: workers replaced"),
        "{text}"
    );
    let after_reset = ok.load(Ordering::Relaxed);
    assert!(wait_for(Duration::from_secs(5), || ok
        .load(Ordering::Relaxed)
        > after_reset + 50));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.join();
    }
    let (sent_ok, sent_failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!(
        "reset under load: {} requests, {} failed",
        sent_ok + sent_failed,
        sent_failed
    );
    assert_eq!(sent_failed, 0, "requests failed during the reset");
    let new_pids = worker_pids(&o);
    assert!(
        new_pids.is_disjoint(&pids),
        "reset kept {pids:?} / {new_pids:?}"
    );
    // SIGHUP replaces the workers too.
    o.s.signal("HUP");
    assert!(
        wait_for(Duration::from_secs(10), || worker_pids(&o)
            .is_disjoint(&new_pids)),
        "SIGHUP did not replace the workers"
    );
}

#[test]
fn ready_turns_unavailable_before_the_listener_closes() {
    let mut o = start("1500ms");
    assert_eq!(status_code(o.status, "/ready"), 200);
    o.s.signal("TERM");
    // During the drain delay: /ready is 503, /health still 200, requests still served.
    assert!(
        wait_for(Duration::from_secs(2), || status_code(o.status, "/ready")
            == 503),
        "/ready did not flip"
    );
    assert_eq!(status_code(o.status, "/health"), 200);
    assert_eq!(
        get(o.s.port, "/pid").map(|r| r.0),
        Some(200),
        "the listener closed before the drain delay ended"
    );
    assert!(
        wait_for(Duration::from_secs(10), || matches!(
            o.s.child.try_wait(),
            Ok(Some(_))
        )),
        "did not exit"
    );
}

#[test]
fn stop_command_and_errors_without_a_server() {
    let mut o = start("0s");
    let (ok, text) = o.s.cli(&["stop"]);
    assert!(ok, "{text}");
    assert!(
        wait_for(Duration::from_secs(10), || matches!(
            o.s.child.try_wait(),
            Ok(Some(_))
        )),
        "courser stop did not stop it"
    );
    // Now nothing listens on rpc.listen: the CLI says so.
    let (ok, text) = o.s.cli(&["workers"]);
    assert!(!ok && text.contains(&o.rpc.to_string()), "{text}");
    let _ = o.metrics;
    // A config without an rpc section explains what to add.
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("c.yaml");
    std::fs::write(&p, "version: \"3\"\nserver:\n  command: php w.php\n").expect("write");
    let out = Command::new(courser())
        .args(["workers", "-c"])
        .arg(&p)
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("no rpc section"),
        "{err}"
    );
}

#[test]
fn logs_go_to_a_file_as_json_with_per_plugin_levels() {
    let worker = worker_script();
    let logfile = tempfile::NamedTempFile::new().expect("tmp");
    let path = logfile.path().display().to_string();
    let p2 = path.clone();
    let s = Server::from_yaml(
        move |port, _| {
            format!(
                "version: \"3\"\nserver:\n  command: \"php {}\"\nhttp:\n  address: 127.0.0.1:{port}\n  access_logs: true\n  pool:\n    num_workers: 1\nlogs:\n  level: info\n  encoding: json\n  output: {p2}\n  channels:\n    http:\n      level: error\n",
                worker.display()
            )
        },
        &[],
        None,
    );
    // Echo in PHP goes to stderr, which Courser logs with the worker's pid.
    let _ = request(s.port, "POST", "/echo", b"x");
    let pid = body_text(&get(s.port, "/pid"));
    assert!(
        wait_for(Duration::from_secs(5), || std::fs::read_to_string(&path)
            .unwrap_or_default()
            .contains("this echo must go to stderr")),
        "worker stderr not in the log file"
    );
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let line = text
        .lines()
        .find(|l| l.contains("this echo must go to stderr"))
        .unwrap_or("");
    let v: serde_json::Value = serde_json::from_str(line).expect("the log line is JSON");
    assert_eq!(v["fields"]["pid"].to_string(), pid, "{line}");
    // logs.channels.http.level=error silences the (info) access log.
    assert!(
        !text.contains("http request"),
        "access log written despite channel level error:\n{text}"
    );
}

#[test]
fn live_workers_view_in_a_real_terminal() {
    let o = start("0s");
    let pids = worker_pids(&o);
    let session = format!("courser-live-{}", o.s.port);
    let cfg = o.s.dir.path().join(".rr.yaml");
    let cmd = format!("{} workers -i -c {}", courser(), cfg.display());
    let started = Command::new("tmux")
        .args([
            "new-session",
            "-d",
            "-s",
            &session,
            "-x",
            "100",
            "-y",
            "20",
            &cmd,
        ])
        .status()
        .expect("tmux is installed (.ci/run installs it)");
    assert!(started.success());
    let capture = || {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &session])
            .output()
            .expect("tmux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let shown = wait_for(Duration::from_secs(10), || {
        pids.iter().all(|p| capture().contains(p.as_str()))
    });
    let screen = capture();
    let _ = Command::new("tmux")
        .args(["send-keys", "-t", &session, "q"])
        .status();
    let quit = wait_for(Duration::from_secs(5), || {
        !Command::new("tmux")
            .args(["has-session", "-t", &session])
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    });
    if !quit {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &session])
            .status();
    }
    assert!(
        shown,
        "the live view does not show the workers {pids:?}:\n{screen}"
    );
    assert!(
        screen.contains("STATUS") && screen.contains("ready"),
        "{screen}"
    );
    assert!(quit, "q did not quit the live view");
}

#[test]
fn a_php_file_change_resets_the_pool_once() {
    let app = tempfile::tempdir().expect("tempdir");
    let worker = worker_script();
    let a = app.path().display().to_string();
    let s = Server::from_yaml(
        move |port, _| {
            format!(
                "version: \"3\"\nserver:\n  command: \"php {}\"\nhttp:\n  address: 127.0.0.1:{port}\n  pool:\n    num_workers: 1\nreload:\n  debounce: 300ms\n  dirs: [\"{a}\"]\n  patterns: [\".php\"]\nlogs:\n  level: info\n",
                worker.display()
            )
        },
        &[],
        None,
    );
    let before = body_text(&get(s.port, "/pid"));
    std::fs::write(app.path().join("notes.txt"), "not php").expect("write");
    for i in 0..3 {
        std::fs::write(app.path().join("changed.php"), format!("<?php // {i}\n")).expect("write");
    }
    assert!(
        wait_for(Duration::from_secs(10), || body_text(&get(s.port, "/pid"))
            != before),
        "the pool was not reset after a .php change"
    );
    assert!(wait_for(Duration::from_secs(5), || s
        .log_text()
        .contains("changed.php changed")));
    let lines = s
        .log_text()
        .lines()
        .filter(|l| l.contains("reload: ") && l.contains("changed; resetting"))
        .count();
    assert_eq!(lines, 1, "{}", s.log_text());
}

#[test]
fn reset_picks_up_a_flipped_current_symlink() {
    let root = tempfile::tempdir().expect("tempdir");
    let sdk = sdk_file("autoload.php");
    for v in ["1", "2"] {
        let dir = root.path().join("releases").join(v);
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(
            dir.join("worker.php"),
            format!(
                "<?php\nrequire '{}';\n$h = Courser\\Http\\HttpWorker::create();\nwhile ($r = $h->waitRequest()) {{ $h->respond(200, 'release {v}'); }}\n",
                sdk.display()
            ),
        )
        .expect("worker");
    }
    let current = root.path().join("current");
    std::os::unix::fs::symlink("releases/1", &current).expect("symlink");
    let (port, rpc) = (free_port(), free_port());
    let cfg = format!(
        "version: \"3\"\nrpc:\n  listen: tcp://127.0.0.1:{rpc}\nserver:\n  command: \"php worker.php\"\nhttp:\n  address: 127.0.0.1:{port}\n  pool:\n    num_workers: 1\n"
    );
    for v in ["1", "2"] {
        std::fs::write(root.path().join("releases").join(v).join(".rr.yaml"), &cfg)
            .expect("config");
    }
    let mut child = Command::new(courser())
        .args(["serve", "-c"])
        .arg(current.join(".rr.yaml"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start");
    let result = std::panic::catch_unwind(|| {
        assert!(wait_for(Duration::from_secs(20), || body_text(&get(
            port, "/"
        )) == "release 1"));
        // Deploy: flip the symlink atomically, then reset.
        let tmp = root.path().join("current.new");
        std::os::unix::fs::symlink("releases/2", &tmp).expect("symlink");
        std::fs::rename(&tmp, &current).expect("flip");
        let out = Command::new(courser())
            .args(["reset", "-c"])
            .arg(current.join(".rr.yaml"))
            .output()
            .expect("reset");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            body_text(&get(port, "/")),
            "release 2",
            "the reset did not pick up the new release"
        );
    });
    let _ = child.kill();
    let _ = child.wait();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

#[test]
fn a_slow_request_logs_its_php_stack() {
    let worker = worker_script();
    let s = Server::from_yaml(
        move |port, _| {
            format!(
                "version: \"3\"\nserver:\n  command: \"php {}\"\nhttp:\n  address: 127.0.0.1:{port}\n  pool:\n    num_workers: 1\n    slowlog_timeout: 200ms\nlogs:\n  level: info\n",
                worker.display()
            )
        },
        &[],
        None,
    );
    let r = get(s.port, "/sleep?ms=1000");
    assert_eq!(r.as_ref().map(|r| r.0), Some(200));
    assert!(
        wait_for(Duration::from_secs(5), || s
            .log_text()
            .contains("slow request")),
        "no slow log:\n{}",
        s.log_text()
    );
    let log = s.log_text();
    assert!(
        log.contains("GET /sleep?ms=1000"),
        "the slow log does not name the request:\n{log}"
    );
    assert!(
        log.contains("http_worker.php:"),
        "the slow log has no PHP frame of the handler:\n{log}"
    );
    // A fast request logs nothing new.
    let before = log.matches("slow request").count();
    assert_eq!(get(s.port, "/pid").map(|r| r.0), Some(200));
    assert_eq!(s.log_text().matches("slow request").count(), before);
}
