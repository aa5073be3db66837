//! Pool behaviour against real processes (the fake worker binary), over each relay.

use courser_config::{DynamicAllocatorConfig, PoolConfig};
use courser_frame::flags;
use courser_pool::{JobError, Payload, Pool, PoolError, Reply};
use courser_test_support::{self as support, eventually, fake_worker, relays};
use courser_worker::{RelayMode, SpawnSpec};
use std::time::{Duration, Instant};

fn spec(relay: RelayMode, env: &[(&str, &str)]) -> SpawnSpec {
    support::spec(vec![fake_worker().display().to_string()], relay, env)
}

fn cfg(workers: usize) -> PoolConfig {
    support::pool_config(workers)
}

fn job(body: &str) -> Payload {
    support::job(body)
}

async fn pid_of(pool: &Pool) -> u32 {
    let r = pool.exec(job("pid")).await.expect("pid job");
    String::from_utf8_lossy(&r.body)
        .parse()
        .expect("pid number")
}

async fn full(pool: &Pool, n: usize) -> bool {
    eventually(Duration::from_secs(10), || pool.ready_workers() == n).await
}

#[tokio::test]
async fn echo_crash_error_garbage_stream_over_every_relay() {
    for (name, relay, _dir) in relays().await {
        let pool = Pool::start("test", cfg(2), spec(relay, &[("APP_MARK", "m-42")]))
            .await
            .expect(name);
        // Echo keeps the codec, context and body.
        let r = pool.exec(job("hello")).await.expect(name);
        assert_eq!(
            (r.flags, &r.context[..], &r.body[..]),
            (flags::CODEC_JSON, &b"{\"k\":1}"[..], &b"hello"[..]),
            "{name}"
        );
        // The environment reaches the worker.
        assert_eq!(
            &pool.exec(job("env:APP_MARK")).await.expect(name).body[..],
            b"m-42",
            "{name}"
        );
        assert_eq!(
            &pool.exec(job("env:RR_MODE")).await.expect(name).body[..],
            b"test",
            "{name}"
        );
        // An error frame fails the job but keeps the worker.
        match pool.exec(job("error:boom")).await {
            Err(PoolError::Job(JobError::Worker { message, .. })) => {
                assert_eq!(message, "boom", "{name}")
            }
            other => panic!("{name}: expected a worker error, got {other:?}"),
        }
        // A crash fails only that job, with the exit code, and the pool refills.
        match pool.exec(job("crash:7")).await {
            Err(PoolError::Job(JobError::Crashed { exit: Some(e), .. })) => {
                assert_eq!(e.code, Some(7), "{name}")
            }
            other => panic!("{name}: expected a crash, got {other:?}"),
        }
        assert!(
            full(&pool, 2).await,
            "{name}: pool did not return to 2 workers"
        );
        // Garbage on the relay names the bytes and the fix.
        match pool.exec(job("garbage")).await {
            Err(PoolError::Job(e @ JobError::Garbage { .. })) => {
                let msg = e.to_string();
                assert!(
                    msg.contains("Hello from PHP") && msg.contains("STDERR"),
                    "{name}: {msg}"
                );
            }
            other => panic!("{name}: expected garbage, got {other:?}"),
        }
        // A stream of 8 chunks passes a PING (answered with PONG) and ends with "end".
        let mut j = pool.start_job(job("stream:8")).await.expect(name);
        let mut chunks = Vec::new();
        while let Some(r) = j.next().await {
            match r.expect(name) {
                Reply::Chunk(c) => chunks.push(String::from_utf8_lossy(&c.body).into_owned()),
                Reply::Final(f) => {
                    chunks.push(format!("final:{}", String::from_utf8_lossy(&f.body)))
                }
            }
        }
        assert_eq!(chunks.len(), 9, "{name}: {chunks:?}");
        assert_eq!(
            chunks.last().map(String::as_str),
            Some("final:end"),
            "{name}"
        );
        assert!(full(&pool, 2).await, "{name}");
        assert_eq!(
            &pool.exec(job("after")).await.expect(name).body[..],
            b"after",
            "{name}"
        );
        pool.stop(Duration::from_secs(2)).await;
    }
}

#[tokio::test]
async fn dropping_a_stream_stops_it_and_keeps_the_worker() {
    let pool = Pool::start("test", cfg(1), spec(RelayMode::Pipes, &[]))
        .await
        .expect("start");
    let pid = pid_of(&pool).await;
    let mut j = pool.start_job(job("stream:500")).await.expect("stream");
    assert!(matches!(j.next().await, Some(Ok(Reply::Chunk(_)))));
    drop(j);
    // The same worker serves again once it has closed the stream.
    assert_eq!(pid_of(&pool).await, pid);
    pool.stop(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn a_caller_that_gives_up_mid_job_does_not_cost_the_worker() {
    let pool = Pool::start("test", cfg(1), spec(RelayMode::Pipes, &[]))
        .await
        .expect("start");
    let pid = pid_of(&pool).await;
    // The caller (an HTTP client that went away) drops the job while the worker runs it.
    let gave_up =
        tokio::time::timeout(Duration::from_millis(100), pool.exec(job("sleep:300"))).await;
    assert!(gave_up.is_err(), "the job should still have been running");
    // The worker finishes the job in the background and serves the next one.
    assert_eq!(pid_of(&pool).await, pid);
    // Nothing is left in flight: a graceful stop does not wait out its grace period.
    let t = Instant::now();
    pool.stop(Duration::from_secs(5)).await;
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "stop took {:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn worker_initiated_stop_reruns_the_job_elsewhere() {
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = dir.path().join("stopped");
    let pool = Pool::start("test", cfg(2), spec(RelayMode::Pipes, &[]))
        .await
        .expect("start");
    let r = pool
        .exec(job(&format!("stoponce:{}", marker.display())))
        .await
        .expect("re-run succeeds");
    assert!(marker.exists(), "the first worker did ask to stop");
    assert!(!r.body.is_empty());
    assert_eq!(
        pool.stats()
            .jobs_retried
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert!(full(&pool, 2).await);
    pool.stop(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn bounded_wait_and_queue_limit() {
    let mut c = cfg(1);
    c.allocate_timeout = Duration::from_millis(300);
    c.max_queue_size = 1;
    let pool = Pool::start("test", c, spec(RelayMode::Pipes, &[]))
        .await
        .expect("start");
    let p1 = pool.clone();
    let busy = tokio::spawn(async move { p1.exec(job("sleep:1500")).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let p2 = pool.clone();
    let waiter = tokio::spawn(async move {
        let t = Instant::now();
        (p2.exec(job("x")).await, t.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t = Instant::now();
    let third = pool.exec(job("y")).await;
    assert!(
        matches!(third, Err(PoolError::QueueFull { limit: 1, .. })),
        "{third:?}"
    );
    assert!(
        t.elapsed() < Duration::from_millis(100),
        "queue-full must answer at once"
    );
    let (second, waited) = waiter.await.expect("join");
    assert!(
        matches!(second, Err(PoolError::NoFreeWorker { .. })),
        "{second:?}"
    );
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(1),
        "{waited:?}"
    );
    assert!(busy.await.expect("join").is_ok());
    pool.stop(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn exec_ttl_kills_a_hung_job_only() {
    let mut c = cfg(2);
    c.supervisor.exec_ttl = Some(Duration::from_millis(300));
    let pool = Pool::start("test", c, spec(RelayMode::Pipes, &[]))
        .await
        .expect("start");
    let p = pool.clone();
    let hung = tokio::spawn(async move {
        let t = Instant::now();
        (p.exec(job("hang")).await, t.elapsed())
    });
    for i in 0..5 {
        assert_eq!(
            &pool
                .exec(job(&format!("ok{i}")))
                .await
                .expect("other jobs")
                .body[..],
            format!("ok{i}").as_bytes()
        );
    }
    let (r, took) = hung.await.expect("join");
    assert!(
        matches!(r, Err(PoolError::Job(JobError::ExecTtl { .. }))),
        "{r:?}"
    );
    assert!(took < Duration::from_millis(900), "{took:?}");
    assert!(full(&pool, 2).await);
    pool.stop(Duration::from_secs(2)).await;
}

async fn load(pool: &Pool, tasks: usize, per_task: usize, body: &'static str) -> (usize, usize) {
    let mut hs = Vec::new();
    for _ in 0..tasks {
        let p = pool.clone();
        hs.push(tokio::spawn(async move {
            let mut ok = 0;
            let mut failed = 0;
            for _ in 0..per_task {
                match p.exec(job(body)).await {
                    Ok(_) => ok += 1,
                    Err(e) => {
                        eprintln!("failed: {e}");
                        failed += 1
                    }
                }
            }
            (ok, failed)
        }));
    }
    let mut t = (0, 0);
    for h in hs {
        let (o, f) = h.await.expect("join");
        t.0 += o;
        t.1 += f;
    }
    t
}

#[tokio::test]
async fn max_jobs_one_under_load_loses_nothing() {
    let mut c = cfg(2);
    c.max_jobs = 1;
    let pool = Pool::start("test", c, spec(RelayMode::Pipes, &[]))
        .await
        .expect("start");
    let (ok, failed) = load(&pool, 4, 25, "pid").await;
    assert_eq!((ok, failed), (100, 0));
    let spawned = pool
        .stats()
        .spawned
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        spawned >= 100,
        "each job needs its own worker: spawned {spawned}"
    );
    pool.stop(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn ttl_and_reset_replace_workers_make_before_break() {
    let mut c = cfg(2);
    c.supervisor.ttl = Some(Duration::from_millis(200));
    let pool = Pool::start("test", c, spec(RelayMode::Pipes, &[]))
        .await
        .expect("start");
    let first = pool.workers().iter().map(|w| w.pid).collect::<Vec<_>>();
    let (ok, failed) = load(&pool, 4, 150, "sleep:2").await;
    assert_eq!((ok, failed), (600, 0));
    let restarts = pool.stats().restarts(courser_pool::RestartReason::Ttl);
    assert!(restarts >= 2, "ttl restarts: {restarts}");
    assert!(pool.workers().iter().all(|w| !first.contains(&w.pid)));
    pool.stop(Duration::from_secs(2)).await;

    let pool = Pool::start("test", cfg(2), spec(RelayMode::Pipes, &[]))
        .await
        .expect("start");
    let before = pool.workers().iter().map(|w| w.pid).collect::<Vec<_>>();
    let p = pool.clone();
    let traffic = tokio::spawn(async move { load(&p, 4, 100, "sleep:1").await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(pool.reset().await, 2);
    let (ok, failed) = traffic.await.expect("join");
    assert_eq!((ok, failed), (400, 0));
    assert!(full(&pool, 2).await);
    assert!(
        pool.workers().iter().all(|w| !before.contains(&w.pid)),
        "reset replaced every worker"
    );
    pool.stop(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn memory_limit_replaces_a_leaky_worker() {
    let mut c = cfg(1);
    c.supervisor.max_worker_memory = Some(20);
    let pool = Pool::start("test", c, spec(RelayMode::Pipes, &[]))
        .await
        .expect("start");
    let pid = pid_of(&pool).await;
    pool.exec(job("leak:40960")).await.expect("leak");
    let p = pool.clone();
    assert!(
        eventually(Duration::from_secs(5), || p
            .workers()
            .iter()
            .all(|w| w.pid != pid)
            && p.ready_workers() == 1)
        .await,
        "leaky worker was not replaced"
    );
    assert_eq!(
        pool.stats().restarts(courser_pool::RestartReason::Memory),
        1
    );
    pool.stop(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn boot_failure_is_reported_with_stderr() {
    match Pool::start(
        "test",
        cfg(2),
        spec(RelayMode::Pipes, &[("FAKE_BOOT", "fail")]),
    )
    .await
    {
        Err(e) => {
            let m = e.to_string();
            assert!(
                m.contains("fake boot failure") && m.contains("exit code 255"),
                "{m}"
            );
        }
        Ok(_) => panic!("a pool whose workers cannot boot must not start"),
    }
    match Pool::start(
        "test",
        cfg(1),
        spec(RelayMode::Pipes, &[("FAKE_BOOT", "garbage")]),
    )
    .await
    {
        Err(e) => assert!(e.to_string().contains("Hello from PHP"), "{e}"),
        Ok(_) => panic!("garbage at boot must fail"),
    }
}

#[tokio::test]
async fn dynamic_allocator_adds_workers_when_all_are_busy() {
    let mut c = cfg(1);
    c.dynamic_allocator = Some(DynamicAllocatorConfig {
        max_workers: 3,
        spawn_rate: 3,
        idle_timeout: Duration::from_millis(300),
    });
    let pool = Pool::start("test", c, spec(RelayMode::Pipes, &[]))
        .await
        .expect("start");
    let (ok, failed) = load(&pool, 4, 3, "sleep:200").await;
    assert_eq!((ok, failed), (12, 0));
    assert!(pool.workers().len() > 1, "no dynamic worker was added");
    let p = pool.clone();
    assert!(
        eventually(Duration::from_secs(5), || p.workers().len() == 1).await,
        "idle dynamic workers were not removed"
    );
    pool.stop(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn debug_mode_uses_a_fresh_worker_per_job() {
    let mut c = cfg(4);
    c.debug = true;
    let pool = Pool::start("test", c, spec(RelayMode::Pipes, &[]))
        .await
        .expect("start");
    assert_eq!(pool.workers().len(), 0);
    let a = pid_of(&pool).await;
    let b = pid_of(&pool).await;
    assert_ne!(a, b);
    pool.stop(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn crash_loops_back_off_and_recover() {
    for var in ["FAKE_BOOT_FAIL_IF", "FAKE_DIE_AFTER_HANDSHAKE_IF"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("broken");
        let marker_s = marker.display().to_string();
        let pool = Pool::start(
            "test",
            cfg(2),
            spec(RelayMode::Pipes, &[(var, marker_s.as_str())]),
        )
        .await
        .expect("start");
        std::fs::write(&marker, b"x").expect("marker");
        for _ in 0..2 {
            let _ = pool.exec(job("crash:1")).await;
        }
        let stats = pool.stats();
        let spawned_before = stats.spawned.load(std::sync::atomic::Ordering::Relaxed)
            + stats
                .spawn_failures
                .load(std::sync::atomic::Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(1600)).await;
        let attempts = stats.spawned.load(std::sync::atomic::Ordering::Relaxed)
            + stats
                .spawn_failures
                .load(std::sync::atomic::Ordering::Relaxed)
            - spawned_before;
        // 100 + 200 + 400 + 800 ms of backoff: about 4-5 attempts, never a spin.
        assert!(
            (3..=8).contains(&attempts),
            "{var}: {attempts} spawn attempts in 1.6 s"
        );
        std::fs::remove_file(&marker).expect("rm marker");
        assert!(
            eventually(Duration::from_secs(15), || pool.ready_workers() == 2).await,
            "{var}: pool did not recover after the fault was fixed"
        );
        assert!(pool.exec(job("ok")).await.is_ok());
        pool.stop(Duration::from_secs(2)).await;
    }
}
