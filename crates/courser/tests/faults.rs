//! The fault suite (issue 6): the real `courser` binary, real `php` workers
//! (`tests/php/fault_*.php`) and an in-test load generator (kept-alive HTTP/1.1
//! clients on loopback). Each scenario is bounded in time and load, prints
//! `fault <name>: sent N, ok N, failed N, <what the client saw>` (run with
//! `--nocapture` to collect the figures in RELIABILITY.md) and asserts what
//! Courser promises under that fault.
//!
//! Load scenarios take a lock so that their figures (and CPU measurements) do
//! not depend on which other scenario happens to run beside them.

mod common;

use common::*;
use std::collections::HashSet;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Serializes the scenarios that put load on the machine.
static LOAD: Mutex<()> = Mutex::new(());

fn load_lock() -> std::sync::MutexGuard<'static, ()> {
    LOAD.lock().unwrap_or_else(|p| p.into_inner())
}

/// A server for one scenario: `pool` is the YAML under `http.pool` (indented
/// by four spaces), `env` goes to `server.env`.
struct Fault {
    s: Server,
    metrics: u16,
}

fn start(script: &str, env: &[(&str, &str)], pool: &str) -> Fault {
    let metrics = free_port();
    let rpc = free_port();
    let script = php_script(script);
    let env: String = env
        .iter()
        .map(|(k, v)| format!("    {k}: \"{v}\"\n"))
        .collect();
    let pool = pool.to_string();
    let s = Server::from_yaml(
        move |port, _| {
            format!(
                "version: \"3\"\nrpc:\n  listen: tcp://127.0.0.1:{rpc}\nserver:\n  command: \"php {}\"\n  env:\n    FAULT: \"1\"\n{env}http:\n  address: 127.0.0.1:{port}\n  pool:\n{pool}\nmetrics:\n  address: 127.0.0.1:{metrics}\nlogs:\n  level: info\nendure:\n  grace_period: 2s\n",
                script.display()
            )
        },
        &[],
        None,
    );
    Fault { s, metrics }
}

impl Fault {
    fn pid(&self) -> u32 {
        self.s.child.id()
    }
    fn workers(&self) -> Vec<u32> {
        children(self.pid())
    }
    fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        let text = body_text(&get(self.metrics, "/metrics"));
        metric(&text, name, labels).unwrap_or(0.0)
    }
    /// Waits until the pool has exactly `n` worker processes and answers.
    fn back_to(&self, n: usize, within: Duration) -> bool {
        wait_for(within, || {
            self.workers().len() == n && get(self.s.port, "/pid").is_some_and(|r| r.0 == 200)
        })
    }
}

fn kill9(pid: u32) -> bool {
    Command::new("kill")
        .args(["-9", &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// A small xorshift generator: which worker to kill need not be secure.
struct Rng(u64);
impl Rng {
    fn new() -> Rng {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(42);
        Rng(seed | 1)
    }
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

fn report(name: &str, r: &LoadReport, extra: &str) {
    println!(
        "fault {name}: sent {}, ok {}, failed {}, {}{extra}",
        r.sent,
        r.ok,
        r.failed(),
        r.seen()
    );
}

/// What one request on its own kept-alive connection saw, and how long it took.
fn timed(conn: &mut KeepAlive, path: &str) -> (Seen, Duration) {
    let t = Instant::now();
    let seen = conn.get(path);
    (seen, t.elapsed())
}

fn status_of(seen: &Seen) -> u16 {
    match seen {
        Seen::Status(s, _) => *s,
        Seen::Dropped(_) => 0,
    }
}

#[test]
fn kill_9_random_workers_every_100ms_under_load() {
    let _l = load_lock();
    let f = start(
        "fault_worker.php",
        &[],
        "    num_workers: 4\n    allocate_timeout: 20s\n    destroy_timeout: 2s\n",
    );
    // What a client sees when the worker running its POST is killed: a clear
    // 500 on a connection that stays usable.
    let pidfile = f.s.dir.path().join("busy.pid");
    let path = format!("/sleep?ms=5000&pidfile={}", pidfile.display());
    let mut conn = KeepAlive::new(f.s.port);
    let killer = |pidfile: std::path::PathBuf| {
        std::thread::spawn(move || {
            let pid = wait_for(Duration::from_secs(10), || pidfile.exists())
                .then(|| std::fs::read_to_string(&pidfile).ok())
                .flatten()
                .and_then(|s| s.trim().parse::<u32>().ok());
            (pid, Instant::now(), pid.is_some_and(kill9))
        })
    };
    // A GET (a safe method) whose worker is killed is run again on another
    // worker: the client gets its 200 from the second worker.
    let get_pidfile = f.s.dir.path().join("busy-get.pid");
    let get_killer = killer(get_pidfile.clone());
    let retried = conn.get(&format!("/sleep?ms=1500&pidfile={}", get_pidfile.display()));
    let (first, _, killed) = get_killer.join().expect("killer thread");
    assert!(killed, "could not kill the busy worker {first:?}");
    let second = std::fs::read_to_string(&get_pidfile)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok());
    assert_eq!(
        status_of(&retried),
        200,
        "a killed GET was not re-run: {retried:?}"
    );
    assert!(
        second.is_some() && second != first,
        "the GET was not re-run on another worker ({first:?} then {second:?})"
    );
    println!(
        "fault kill-busy-worker (GET): worker {first:?} killed mid-request, the request ran again on worker {second:?} and the client got 200"
    );
    assert!(f.back_to(4, Duration::from_secs(15)), "pool not back to 4");

    let killer = killer(pidfile.clone());
    let seen = conn.send("POST", &path);
    let answered = Instant::now();
    let (pid, killed_at, killed) = killer.join().expect("killer thread");
    assert!(killed, "could not kill the busy worker {pid:?}");
    assert_eq!(
        status_of(&seen),
        500,
        "the client of a killed worker saw {seen:?}"
    );
    let lag = answered.duration_since(killed_at);
    assert!(
        lag < Duration::from_secs(2),
        "the 500 came {lag:?} after the kill"
    );
    assert_eq!(
        status_of(&conn.get("/pid")),
        200,
        "the connection is not usable after the 500"
    );
    let body = match &seen {
        Seen::Status(_, b) => String::from_utf8_lossy(b).trim().to_string(),
        Seen::Dropped(e) => e.clone(),
    };
    println!(
        "fault kill-busy-worker (POST): the client saw {} {body:?} {lag:.1?} after kill -9, and its connection stayed usable",
        status_of(&seen)
    );
    assert!(f.back_to(4, Duration::from_secs(15)), "pool not back to 4");

    // kill -9 a random worker every 100 ms during a 10 s load of 8 clients.
    let load = Load::start(f.s.port, 8, Duration::from_secs(10), false, |_, _| {
        "/sleep?ms=2".to_string()
    });
    let mut rng = Rng::new();
    let mut kills = 0u64;
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
        let w = f.workers();
        if !w.is_empty() && kill9(w[rng.below(w.len())]) {
            kills += 1;
        }
    }
    let r = load.join();
    let back = f.back_to(4, Duration::from_secs(15));
    let retried = f.metric("courser_jobs_total", &["result=\"retried\""]);
    report(
        "kill-9-every-100ms",
        &r,
        &format!(
            "; {kills} workers killed, {retried} jobs re-run on another worker, pool back to {} workers",
            f.workers().len()
        ),
    );
    assert!(r.ok > 500, "too little load to mean anything: {}", r.ok);
    assert_eq!(r.dropped, 0, "dropped connections: {:?}", r.drop_reasons);
    assert!(
        r.statuses.keys().all(|s| *s == 200 || *s == 500),
        "unexpected statuses {:?}",
        r.statuses
    );
    assert!(
        r.failed() <= kills,
        "{} requests failed but only {kills} workers were killed",
        r.failed()
    );
    assert!(
        back,
        "the pool did not return to 4 workers: {:?}",
        f.workers()
    );
}

#[test]
fn a_leaking_worker_is_replaced_before_it_leaves() {
    let _l = load_lock();
    let f = start(
        "fault_worker.php",
        &[],
        "    num_workers: 2\n    allocate_timeout: 20s\n    supervisor:\n      watch_tick: 100ms\n      max_worker_memory: 48\n",
    );
    let before: HashSet<u32> = f.workers().into_iter().collect();
    let load = Load::start(f.s.port, 4, Duration::from_secs(5), true, |_, _| {
        "/leak?kb=128&ms=2".to_string()
    });
    let r = load.join();
    let replaced = f.metric("courser_worker_restarts_total", &["reason=\"memory\""]);
    let pids: HashSet<&str> = r.bodies.iter().map(String::as_str).collect();
    report(
        "leak-max-worker-memory",
        &r,
        &format!(
            "; {replaced} workers replaced for memory (limit 48 MB, +128 KB per request), {} worker pids answered",
            pids.len()
        ),
    );
    assert_eq!(r.failed(), 0, "{:?} {:?}", r.statuses, r.drop_reasons);
    assert!(replaced >= 2.0, "no worker was replaced for memory");
    assert!(pids.len() > 2, "the answers came from {pids:?} only");
    let log = f.s.log_text();
    assert!(
        log.contains("replacing worker (make-before-break)") && log.contains("memory"),
        "{log}"
    );
    assert!(f.back_to(2, Duration::from_secs(10)));
    assert!(
        f.workers().iter().all(|p| !before.contains(p)),
        "a leaking worker was kept: {before:?} / {:?}",
        f.workers()
    );
}

#[test]
fn max_jobs_1_under_load_fails_nothing() {
    let _l = load_lock();
    let f = start(
        "fault_worker.php",
        &[],
        "    num_workers: 4\n    max_jobs: 1\n    allocate_timeout: 20s\n",
    );
    let r = Load::start(f.s.port, 4, Duration::from_secs(5), true, |_, _| {
        "/pid".to_string()
    })
    .join();
    let pids: HashSet<&str> = r.bodies.iter().map(String::as_str).collect();
    report(
        "max-jobs-1",
        &r,
        &format!("; {} distinct worker pids for {} answers", pids.len(), r.ok),
    );
    assert_eq!(r.failed(), 0, "{:?} {:?}", r.statuses, r.drop_reasons);
    assert!(r.ok >= 20, "only {} requests in 5 s", r.ok);
    assert_eq!(pids.len() as u64, r.ok, "a worker ran more than one job");
    assert!(f.back_to(4, Duration::from_secs(10)));
}

#[test]
fn exec_ttl_kills_a_hung_handler_and_only_it() {
    let _l = load_lock();
    let f = start(
        "fault_worker.php",
        &[],
        "    num_workers: 2\n    allocate_timeout: 20s\n    supervisor:\n      watch_tick: 500ms\n      exec_ttl: 1s\n",
    );
    let load = Load::start(f.s.port, 2, Duration::from_secs(4), false, |_, _| {
        "/sleep?ms=5".to_string()
    });
    assert!(wait_for(Duration::from_secs(5), || load.answered() > 20));
    let pidfile = f.s.dir.path().join("hung.pid");
    let mut conn = KeepAlive::new(f.s.port);
    let (seen, took) = timed(&mut conn, &format!("/hang?pidfile={}", pidfile.display()));
    let r = load.join();
    let hung: u32 = std::fs::read_to_string(&pidfile)
        .ok()
        .and_then(|p| p.trim().parse().ok())
        .expect("the hung worker's pid");
    report(
        "exec-ttl",
        &r,
        &format!(
            "; the hung request got {} after {took:.2?} (exec_ttl 1s, watch_tick 500ms)",
            status_of(&seen)
        ),
    );
    assert_eq!(status_of(&seen), 504, "{seen:?}");
    assert!(
        took >= Duration::from_millis(950) && took <= Duration::from_millis(1500),
        "504 after {took:?}"
    );
    assert_eq!(r.failed(), 0, "{:?} {:?}", r.statuses, r.drop_reasons);
    assert!(
        wait_for(Duration::from_secs(5), || !f.workers().contains(&hung)),
        "the hung worker {hung} still runs"
    );
    assert!(f.back_to(2, Duration::from_secs(10)));
    assert!(
        f.s.log_text()
            .contains("the job ran longer than supervisor.exec_ttl"),
        "{}",
        f.s.log_text()
    );
}

#[test]
fn reset_under_load_fails_nothing() {
    let _l = load_lock();
    let f = start(
        "fault_worker.php",
        &[],
        "    num_workers: 4\n    allocate_timeout: 20s\n",
    );
    let before: HashSet<u32> = f.workers().into_iter().collect();
    let load = Load::start(f.s.port, 8, Duration::from_secs(4), false, |_, _| {
        "/sleep?ms=2".to_string()
    });
    assert!(wait_for(Duration::from_secs(5), || load.answered() > 100));
    let mut resets = 0;
    for _ in 0..2 {
        let (ok, text) = f.s.cli(&["reset"]);
        assert!(ok && text.contains("workers replaced"), "{text}");
        resets += 1;
    }
    let r = load.join();
    report(
        "reset-under-load",
        &r,
        &format!("; {resets} resets (`courser reset`) of 4 workers during the load"),
    );
    assert_eq!(r.failed(), 0, "{:?} {:?}", r.statuses, r.drop_reasons);
    assert!(f.back_to(4, Duration::from_secs(10)));
    let after: HashSet<u32> = f.workers().into_iter().collect();
    assert!(after.is_disjoint(&before), "{before:?} / {after:?}");
}

#[test]
fn garbage_on_stdout_fails_only_that_request() {
    let _l = load_lock();
    let f = start(
        "fault_worker.php",
        &[],
        "    num_workers: 2\n    allocate_timeout: 20s\n",
    );
    let load = Load::start(f.s.port, 2, Duration::from_secs(3), false, |_, _| {
        "/sleep?ms=2".to_string()
    });
    let mut conn = KeepAlive::new(f.s.port);
    let mut garbage = Vec::new();
    for _ in 0..5 {
        garbage.push(status_of(&conn.get("/garbage")));
    }
    let r = load.join();
    report(
        "garbage-on-stdout",
        &r,
        &format!("; 5 requests whose worker wrote garbage got {garbage:?}"),
    );
    assert!(garbage.iter().all(|s| *s == 500), "{garbage:?}");
    assert_eq!(r.failed(), 0, "{:?} {:?}", r.statuses, r.drop_reasons);
    let log = f.s.log_text();
    assert!(
        log.contains("that are not a protocol frame")
            && log.contains("Hello from a stray echo")
            && log.contains("write logs to STDERR"),
        "{log}"
    );
    assert!(f.back_to(2, Duration::from_secs(10)));

    // Garbage before the handshake: no worker can start, so the server refuses
    // to start and says why.
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join(".rr.yaml");
    std::fs::write(
        &cfg,
        format!(
            "version: \"3\"\nserver:\n  command: \"php {}\"\n  env:\n    FAULT_BOOT_GARBAGE: \"1\"\nhttp:\n  address: 127.0.0.1:{}\n  pool:\n    num_workers: 1\n",
            php_script("fault_worker.php").display(),
            free_port()
        ),
    )
    .expect("config");
    let mut child = Command::new(courser())
        .args(["serve", "-c"])
        .arg(&cfg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start courser");
    let exited = wait_for(Duration::from_secs(20), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    if !exited {
        let _ = child.kill();
    }
    let out = child.wait_with_output().expect("courser output");
    let err = String::from_utf8_lossy(&out.stderr);
    println!(
        "fault garbage-at-boot: courser exited with {} saying: {}",
        out.status,
        err.lines()
            .find(|l| l.contains("not a protocol frame"))
            .unwrap_or("")
            .trim()
    );
    assert!(exited && !out.status.success(), "{err}");
    assert!(
        err.contains("Warning: stray output at boot")
            && err.contains("PHP code must not write to stdout"),
        "{err}"
    );
}

/// The server's own CPU use, as a fraction of one core, over `window`.
fn cpu_share(pid: u32, window: Duration) -> f64 {
    let (c0, t0) = (cpu_seconds(pid).unwrap_or(0.0), Instant::now());
    std::thread::sleep(window);
    let c1 = cpu_seconds(pid).unwrap_or(0.0);
    (c1 - c0) / t0.elapsed().as_secs_f64()
}

#[test]
fn a_worker_that_cannot_boot_backs_off_while_the_others_serve() {
    let _l = load_lock();
    let dir = tempfile::tempdir().expect("tempdir");
    let flag = dir.path().join("broken");
    let flag_s = flag.display().to_string();
    let f = start(
        "fault_worker.php",
        &[("FAULT_BOOT_FAIL_FILE", &flag_s)],
        "    num_workers: 2\n    allocate_timeout: 5s\n",
    );
    std::fs::write(&flag, b"x").expect("flag");
    // One worker dies; its replacements cannot boot. The other keeps serving.
    let victim = f.workers()[0];
    assert!(kill9(victim));
    // The load starts once the server has reaped it: a request sent to a worker
    // as it dies is the kill scenario's subject, not this one's.
    assert!(wait_for(Duration::from_secs(5), || !f
        .workers()
        .contains(&victim)));
    let r = Load::start(f.s.port, 2, Duration::from_secs(3), false, |_, _| {
        "/sleep?ms=2".to_string()
    })
    .join();
    // Then, without load, the server keeps trying to boot the second worker.
    let failed_before = f.metric("courser_worker_spawns_total", &["result=\"failed\""]);
    let cpu = cpu_share(f.pid(), Duration::from_secs(3));
    let failed = f.metric("courser_worker_spawns_total", &["result=\"failed\""]);
    let attempts = failed - failed_before;
    report(
        "worker-exits-during-boot",
        &r,
        &format!(
            "; 1 of 2 workers killed and unable to boot again: {failed} failed boots in 6 s ({attempts} in the last 3 s), server CPU {:.1}% of a core while backing off",
            cpu * 100.0
        ),
    );
    assert_eq!(r.failed(), 0, "{:?} {:?}", r.statuses, r.drop_reasons);
    assert!(cpu < 0.2, "the server used {:.0}% of a core", cpu * 100.0);
    assert!(
        attempts <= 4.0,
        "{attempts} boot attempts in 3 s: the backoff does not hold"
    );
    let log = f.s.log_text();
    assert!(
        log.contains("exited during boot (exit code 3)")
            && log.contains("cannot boot: the database is unreachable")
            && log.contains("backing off"),
        "{log}"
    );
    // Fixed: the pool recovers.
    std::fs::remove_file(&flag).expect("rm flag");
    assert!(
        f.back_to(2, Duration::from_secs(15)),
        "the pool did not recover"
    );
}

#[test]
fn workers_that_exit_after_a_few_requests_fail_nothing() {
    let _l = load_lock();
    let f = start(
        "fault_worker.php",
        &[("FAULT_DIE_AFTER", "5")],
        "    num_workers: 4\n    allocate_timeout: 20s\n",
    );
    let r = Load::start(f.s.port, 4, Duration::from_secs(4), false, |_, _| {
        "/pid".to_string()
    })
    .join();
    let retried = f.metric("courser_jobs_total", &["result=\"retried\""]);
    let crashes = f.metric("courser_worker_restarts_total", &["reason=\"crash\""]);
    report(
        "worker-exits-after-5-requests",
        &r,
        &format!("; {crashes} workers exited on their own, {retried} jobs re-run because their worker had provably not read them"),
    );
    assert_eq!(r.failed(), 0, "{:?} {:?}", r.statuses, r.drop_reasons);
    assert!(crashes > 10.0, "workers did not exit: {crashes}");
    let log = f.s.log_text();
    assert!(
        log.contains("worker exited while idle; replacing it") && log.contains("exit code 0"),
        "{log}"
    );
}

#[test]
fn a_crash_loop_after_the_handshake_backs_off_cheaply() {
    let _l = load_lock();
    let f = start(
        "fault_handshake_then_die.php",
        &[],
        "    num_workers: 2\n    allocate_timeout: 1s\n",
    );
    let load = Load::start(f.s.port, 2, Duration::from_secs(4), false, |_, _| {
        "/pid".to_string()
    });
    let spawns_before = f.metric("courser_worker_spawns_total", &["result=\"ok\""]);
    let cpu = cpu_share(f.pid(), Duration::from_secs(3));
    let spawns = f.metric("courser_worker_spawns_total", &["result=\"ok\""]) - spawns_before;
    let r = load.join();
    report(
        "crash-loop-after-handshake",
        &r,
        &format!(
            "; every worker dies right after its handshake: {spawns} spawns in 3 s, server CPU {:.1}% of a core",
            cpu * 100.0
        ),
    );
    assert!(cpu < 0.2, "the server used {:.0}% of a core", cpu * 100.0);
    assert!(spawns <= 10.0, "{spawns} spawns in 3 s: no backoff");
    assert_eq!(r.dropped, 0, "{:?}", r.drop_reasons);
    assert!(
        r.statuses.keys().all(|s| *s == 503 || *s == 500),
        "{:?}",
        r.statuses
    );
    assert!(
        r.quantile(1.0) < Duration::from_millis(2500),
        "a request hung for {:?}",
        r.quantile(1.0)
    );
    let log = f.s.log_text();
    assert!(
        log.contains("worker exited while idle; replacing it")
            && log.contains("exit code 7")
            && log.contains("giving up right after the handshake"),
        "{log}"
    );
}

#[test]
fn a_full_pool_answers_503_at_once() {
    let _l = load_lock();
    let f = start(
        "fault_worker.php",
        &[],
        "    num_workers: 2\n    max_queue_size: 2\n    allocate_timeout: 20s\n",
    );
    // Two slow requests run, two wait in the queue.
    let port = f.s.port;
    let slow: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = KeepAlive::new(port);
                timed(&mut c, "/sleep?ms=1500")
            })
        })
        .collect();
    assert!(
        wait_for(Duration::from_secs(5), || f
            .metric("courser_pool_queue_depth", &["pool=\"http\""])
            == 2.0),
        "the queue never filled"
    );
    let mut beyond = LoadReport::default();
    for _ in 0..20 {
        let mut c = KeepAlive::new(port);
        let (seen, took) = timed(&mut c, "/pid");
        beyond.sent += 1;
        beyond.latencies.push(took);
        match seen {
            Seen::Status(s, _) => {
                *beyond.statuses.entry(s).or_default() += 1;
                if s == 200 {
                    beyond.ok += 1;
                }
            }
            Seen::Dropped(_) => beyond.dropped += 1,
        }
    }
    beyond.elapsed = beyond.latencies.iter().sum();
    let slow: Vec<(Seen, Duration)> = slow
        .into_iter()
        .map(|h| h.join().expect("slow client"))
        .collect();
    let slow_statuses: Vec<u16> = slow.iter().map(|(s, _)| status_of(s)).collect();
    let slow_max = slow.iter().map(|(_, t)| *t).max().unwrap_or_default();
    report(
        "full-pool",
        &beyond,
        &format!("; 2 workers busy and 2 requests queued (max_queue_size 2): the queued ones got {slow_statuses:?} within {slow_max:.2?}"),
    );
    assert_eq!(
        beyond.statuses.get(&503),
        Some(&20),
        "{:?}",
        beyond.statuses
    );
    assert!(
        beyond.quantile(1.0) < Duration::from_millis(200),
        "a 503 took {:?}",
        beyond.quantile(1.0)
    );
    assert_eq!(slow_statuses, [200, 200, 200, 200]);
    assert!(slow_max < Duration::from_secs(5), "{slow_max:?}");
}

/// The listening TCP sockets of `pid`, as (address, port).
fn listening(pid: u32) -> Vec<(String, u16)> {
    let inodes: HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .filter_map(|l| {
                    l.to_str()?
                        .strip_prefix("socket:[")?
                        .strip_suffix(']')
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    let mut out = Vec::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for l in text.lines().skip(1) {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 10 || f[3] != "0A" || !inodes.contains(f[9]) {
                continue;
            }
            let Some((addr, port)) = f[1].split_once(':') else {
                continue;
            };
            // An IPv4 address in /proc is its bytes in host order (little-endian
            // here): 0100007F is 127.0.0.1.
            let ip = match u32::from_str_radix(addr, 16) {
                Ok(v) if addr.len() == 8 => std::net::Ipv4Addr::from(v.swap_bytes()).to_string(),
                _ => addr.to_string(),
            };
            out.push((ip, u16::from_str_radix(port, 16).unwrap_or(0)));
        }
    }
    out
}

#[test]
fn the_rpc_listener_defaults_to_loopback() {
    assert!(
        courser_config::DEFAULT_RPC_LISTEN.starts_with("tcp://127.0.0.1:"),
        "{}",
        courser_config::DEFAULT_RPC_LISTEN
    );
    // Through the binary: with `rpc: {}` every socket it listens on is loopback.
    if std::net::TcpListener::bind("127.0.0.1:6001").is_err() {
        println!(
            "fault rpc-default: port 6001 is taken on this machine; checked the default value only"
        );
        return;
    }
    let worker = php_script("fault_worker.php");
    let s = Server::from_yaml(
        move |port, _| {
            format!(
                "version: \"3\"\nrpc: {{}}\nserver:\n  command: \"php {}\"\nhttp:\n  address: 127.0.0.1:{port}\n  pool:\n    num_workers: 1\n",
                worker.display()
            )
        },
        &[],
        None,
    );
    let socks = listening(s.child.id());
    println!("fault rpc-default: with `rpc: {{}}` the server listens on {socks:?}");
    assert!(
        socks.iter().any(|(_, p)| *p == 6001),
        "no rpc listener on 6001: {socks:?}"
    );
    assert!(
        socks.iter().all(|(a, _)| a == "127.0.0.1"),
        "a listener is not on 127.0.0.1: {socks:?}"
    );
}

fn status_ids(pid: u32) -> (String, String, String) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    (field("Uid:"), field("Gid:"), field("Groups:"))
}

#[test]
fn server_user_drops_privileges_for_workers() {
    let root = String::from_utf8_lossy(&sh("id -u").stdout).trim() == "0";
    if !root {
        println!(
            "fault privileges: skipped: not running as root, so server.user cannot switch users"
        );
        return;
    }
    let out = |cmd: &str| String::from_utf8_lossy(&sh(cmd).stdout).trim().to_string();
    if out("id -u nobody").is_empty() {
        sh("groupadd -f nogroup; useradd -r -g nogroup -s /usr/sbin/nologin nobody");
    }
    let (uid, gid) = (out("id -u nobody"), out("id -g nobody"));
    assert!(!uid.is_empty() && !gid.is_empty(), "no user nobody");
    for (label, top) in [
        ("user only", "  user: nobody\n"),
        ("user and group", "  user: nobody\n  group: nogroup\n"),
    ] {
        let nogroup = out("getent group nogroup | cut -d: -f3");
        let want_gid = if top.contains("group:") {
            nogroup
        } else {
            gid.clone()
        };
        let worker = php_script("fault_worker.php");
        let top = top.to_string();
        let s = Server::from_yaml(
            move |port, _| {
                format!(
                    "version: \"3\"\nserver:\n  command: \"php {}\"\n{top}http:\n  address: 127.0.0.1:{port}\n  pool:\n    num_workers: 1\n",
                    worker.display()
                )
            },
            &[],
            None,
        );
        let pid: u32 = body_text(&get(s.port, "/pid")).parse().expect("worker pid");
        let (u, g, groups) = status_ids(pid);
        println!("fault privileges ({label}): worker {pid} runs with Uid {u}, Gid {g}, Groups [{groups}]");
        assert_eq!(u, [uid.as_str(); 4].join(" "), "{label}");
        assert_eq!(g, [want_gid.as_str(); 4].join(" "), "{label}");
        assert!(
            groups.split_whitespace().all(|x| x == want_gid),
            "{label}: supplementary groups kept: {groups}"
        );
        // The server itself is still root.
        let (su, _, _) = status_ids(s.child.id());
        assert!(su.starts_with("0 "), "{su}");
    }
}
