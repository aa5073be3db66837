//! Slow-job traces (`slowlog_timeout`) against real `php` workers built on the
//! Courser SDK: the worker is sent SIGPROF once per slow job, and the PHP stack it
//! writes to stderr is logged as one record.

use courser_config::PoolConfig;
use courser_pool::{JobError, Pool, PoolError, Reply, RestartReason};
use courser_test_support::{self as support, eventually, fake_worker, php_worker, relays};
use courser_worker::{RelayMode, SpawnSpec};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Everything logged while a test runs (the test runtime has one thread, so the
/// stderr forwarders log here too).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let sink = logs.clone();
        let guard = tracing::subscriber::set_default(
            tracing_subscriber::fmt()
                .with_ansi(false)
                .with_max_level(tracing::Level::INFO)
                .with_writer(move || sink.clone())
                .finish(),
        );
        (logs, guard)
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log buffer")).into_owned()
    }
    /// How many slow-job records name worker `pid`.
    fn slow_records(&self, pid: u32) -> usize {
        self.text()
            .matches(&format!("slow request: worker {pid} has run a job for "))
            .count()
    }
}

fn cfg(slowlog_ms: u64, exec_ttl_ms: Option<u64>) -> PoolConfig {
    let mut c = support::pool_config(1);
    c.slowlog_timeout = Some(Duration::from_millis(slowlog_ms));
    c.supervisor.exec_ttl = exec_ttl_ms.map(Duration::from_millis);
    c
}

fn slowlog_worker() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/workers/slowlog.php")
        .canonicalize()
        .expect("tests/workers/slowlog.php")
}

fn php(script: &Path, relay: RelayMode, env: &[(&str, &str)]) -> SpawnSpec {
    support::spec(vec!["php".into(), script.display().to_string()], relay, env)
}

/// The 1-based number of the first line of `file` that contains `needle`.
fn line_of(file: &Path, needle: &str) -> usize {
    let text = std::fs::read_to_string(file).expect("read worker script");
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .expect("line in the worker script")
}

async fn pid_of(pool: &Pool) -> u32 {
    let r = pool.exec(support::job("pid")).await.expect("pid job");
    String::from_utf8_lossy(&r.body)
        .parse()
        .expect("pid number")
}

/// Runs one labeled job to its final reply.
async fn run_labeled(pool: &Pool, body: &str, label: &str) -> Result<Vec<u8>, PoolError> {
    let mut job = pool
        .start_job_labeled(support::job(body), || label.to_string())
        .await?;
    let mut out = Vec::new();
    while let Some(r) = job.next().await {
        match r? {
            Reply::Chunk(r) | Reply::Final(r) => out.extend_from_slice(&r.body),
        }
    }
    Ok(out)
}

#[tokio::test]
async fn a_slow_job_logs_one_php_stack_over_every_relay() {
    let script = php_worker("worker.php").canonicalize().expect("worker.php");
    // PHP handles the signal once usleep() has returned: at the usleep() line or,
    // on PHP 8.2, at the next operation (the next line).
    let usleep_line = line_of(&script, "usleep((int) $argument * 1000);");
    let frames = [
        format!("[0x0000] {{signal}}() {}:{usleep_line}", script.display()),
        format!(
            "[0x0000] {{signal}}() {}:{}",
            script.display(),
            usleep_line + 1
        ),
    ];
    for (name, relay, _dir) in relays().await {
        let (logs, _guard) = Logs::capture();
        let pool = Pool::start("test", cfg(200, None), php(&script, relay, &[]))
            .await
            .expect(name);
        let pid = pid_of(&pool).await;
        let started = Instant::now();
        let body = run_labeled(&pool, "sleep:1500", "GET /slow").await;
        let took = started.elapsed();
        // The signal ends PHP's usleep() early (documented): the job completes, sooner.
        assert_eq!(body.expect(name), b"slept", "{name}");
        assert!(
            took >= Duration::from_millis(200) && took < Duration::from_millis(1400),
            "{name}: usleep(1.5 s) should end at the signal, after {took:?}"
        );
        assert!(
            eventually(Duration::from_secs(5), || logs.slow_records(pid) == 1).await,
            "{name}: no slow-job record:\n{}",
            logs.text()
        );
        let text = logs.text();
        eprintln!("--- {name} ---\n{text}");
        let head = format!("slow request: worker {pid} has run a job for ");
        let record = &text[text.find(&head).expect("record")..];
        assert!(
            record.contains(" (GET /slow); PHP stack:\n[0x0000] {signal}() "),
            "{name}: {record}"
        );
        let top = record.lines().nth(1).unwrap_or_default();
        assert!(
            frames.iter().any(|f| top.starts_with(f.as_str())),
            "{name}: the top frame is where usleep() was interrupted ({frames:?}): {record}"
        );
        assert!(text.contains(" WARN "), "{name}: logged at WARN: {text}");
        assert!(
            !text.contains("courser-slowlog-"),
            "{name}: markers are not logged as lines: {text}"
        );
        // The worker survived the signal and still serves; one record per job.
        assert_eq!(pid_of(&pool).await, pid, "{name}");
        assert_eq!(logs.slow_records(pid), 1, "{name}");
        pool.stop(Duration::from_secs(2)).await;
    }
}

#[tokio::test]
async fn a_job_that_goes_on_sleeping_completes_after_its_stack_is_logged() {
    let (logs, _guard) = Logs::capture();
    let script = slowlog_worker();
    let pool = Pool::start("test", cfg(200, None), php(&script, RelayMode::Pipes, &[]))
        .await
        .expect("start");
    let pid = pid_of(&pool).await;
    let started = Instant::now();
    let r = pool.exec(support::job("nap:1500")).await.expect("nap job");
    assert_eq!(&r.body[..], b"napped");
    assert!(started.elapsed() >= Duration::from_millis(1500));
    assert!(eventually(Duration::from_secs(5), || logs.slow_records(pid) == 1).await);
    let text = logs.text();
    eprintln!("{text}");
    let path = script.display().to_string();
    // The signal is handled where usleep() returns to: the loop's condition.
    let want = [
        format!(
            "[0x0000] {{signal}}() {path}:{}",
            line_of(&script, "while (($left = $until")
        ),
        format!(
            "[0x0001] napUntil() {path}:{}",
            line_of(&script, "napUntil(microtime(true)")
        ),
        format!(
            "[0x0002] handle() {path}:{}",
            line_of(&script, "$worker->respond(new Payload(handle(")
        ),
    ];
    let record = &text[text.find("slow request:").expect("record")..];
    let frames: Vec<&str> = record.lines().skip(1).take(3).collect();
    assert_eq!(frames.len(), 3, "{text}");
    for (got, want) in frames.iter().zip(&want) {
        assert!(
            got.starts_with(want.as_str()),
            "{got:?} vs {want:?}\n{text}"
        );
    }
    // No label: the head line has none.
    let head = record.lines().next().unwrap_or_default();
    assert!(
        head.starts_with(&format!("slow request: worker {pid} has run a job for 2"))
            && head.ends_with("ms; PHP stack:"),
        "{head}"
    );
    pool.stop(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn a_job_shorter_than_the_timeout_logs_nothing() {
    let (logs, _guard) = Logs::capture();
    let pool = Pool::start(
        "test",
        cfg(200, None),
        php(&slowlog_worker(), RelayMode::Pipes, &[]),
    )
    .await
    .expect("start");
    let pid = pid_of(&pool).await;
    for _ in 0..3 {
        let body = run_labeled(&pool, "nap:50", "GET /fast")
            .await
            .expect("job");
        assert_eq!(body, b"napped");
    }
    // Past the timeout of every job above: no late signal either.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(pid_of(&pool).await, pid);
    let text = logs.text();
    assert_eq!(logs.slow_records(pid), 0, "{text}");
    assert!(!text.contains("PHP stack"), "{text}");
    pool.stop(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn exec_ttl_still_kills_the_slow_job_after_its_stack_was_logged() {
    let (logs, _guard) = Logs::capture();
    let pool = Pool::start(
        "test",
        cfg(200, Some(600)),
        php(&slowlog_worker(), RelayMode::Pipes, &[]),
    )
    .await
    .expect("start");
    let pid = pid_of(&pool).await;
    let started = Instant::now();
    match run_labeled(&pool, "nap:1500", "POST /hang").await {
        Err(PoolError::Job(JobError::ExecTtl { pid: p })) => assert_eq!(p, pid),
        other => panic!("{other:?}"),
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(600) && took < Duration::from_millis(1400),
        "{took:?}"
    );
    // The stack was logged before the kill.
    let text = logs.text();
    eprintln!("{text}");
    assert_eq!(logs.slow_records(pid), 1, "{text}");
    // (The pool reports the kill as the job's error above, not as a log line of
    // its own: the caller logs it once, with its request.)
    assert!(text.contains("(POST /hang); PHP stack:"), "{text}");
    assert_eq!(pool.stats().restarts(RestartReason::ExecTtl), 1);
    assert!(eventually(Duration::from_secs(10), || pool.ready_workers() == 1).await);
    pool.stop(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn a_worker_without_the_handler_is_not_signalled() {
    // The fake worker (no PHP SDK) and an SDK worker told not to install the handler:
    // SIGPROF would end them, so they get a record without a stack and live on.
    let (logs, _guard) = Logs::capture();
    let specs = [
        (
            "fake",
            support::spec(
                vec![fake_worker().display().to_string()],
                RelayMode::Pipes,
                &[],
            ),
        ),
        (
            "php, COURSER_SLOWLOG=0",
            php(
                &slowlog_worker(),
                RelayMode::Pipes,
                &[("COURSER_SLOWLOG", "0")],
            ),
        ),
    ];
    for (name, spec) in specs {
        let pool = Pool::start("test", cfg(100, None), spec).await.expect(name);
        let pid = pid_of(&pool).await;
        let body = if name == "fake" {
            "sleep:400"
        } else {
            "nap:400"
        };
        run_labeled(&pool, body, "GET /x").await.expect(name);
        assert_eq!(pid_of(&pool).await, pid, "{name}: the worker lives on");
        let text = logs.text();
        assert_eq!(logs.slow_records(pid), 1, "{name}: {text}");
        let head = format!("slow request: worker {pid} has run a job for ");
        let record = &text[text.find(&head).expect("record")..];
        let line = record.lines().next().unwrap_or_default();
        assert!(
            line.contains("ms (GET /x); no PHP stack: the worker did not install the Courser SDK's SIGPROF handler"),
            "{name}: {line}"
        );
        pool.stop(Duration::from_secs(2)).await;
    }
    eprintln!("{}", logs.text());
}
