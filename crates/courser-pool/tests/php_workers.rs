//! The pool against real `php` workers built on the Courser SDK
//! (`tests/workers/*.php`), over every relay.

use bytes::Bytes;
use courser_config::PoolConfig;
use courser_pool::{JobError, Payload, Pool, PoolError, Reply, RestartReason};
use courser_test_support::{self as support, eventually, php_worker, relays, spec};
use courser_worker::{RelayMode, SpawnSpec};
use std::time::Duration;

fn php(script: &str, relay: RelayMode, env: &[(&str, &str)]) -> SpawnSpec {
    spec(
        vec!["php".into(), php_worker(script).display().to_string()],
        relay,
        env,
    )
}

fn cfg(workers: usize) -> PoolConfig {
    support::pool_config(workers)
}

fn job(body: &str) -> Payload {
    support::job(body)
}

#[tokio::test]
async fn php_worker_suite_over_every_relay() {
    for (name, relay, _dir) in relays().await {
        let pool = Pool::start(
            "test",
            cfg(2),
            php("worker.php", relay, &[("APP_MARK", "m-7")]),
        )
        .await
        .expect(name);
        let r = pool.exec(job("plain body")).await.expect(name);
        assert_eq!(
            (&r.context[..], &r.body[..]),
            (&b"{\"k\":1}"[..], &b"plain body"[..]),
            "{name}"
        );
        assert_eq!(
            &pool.exec(job("env:APP_MARK")).await.expect(name).body[..],
            b"m-7",
            "{name}"
        );
        // echo in PHP code goes to STDERR, not into the relay.
        assert_eq!(
            &pool.exec(job("echo-stdout")).await.expect(name).body[..],
            b"ok",
            "{name}"
        );
        assert_eq!(
            &pool.exec(job("sleep:50")).await.expect(name).body[..],
            b"slept",
            "{name}"
        );
        match pool.exec(job("error:bad input")).await {
            Err(PoolError::Job(JobError::Worker { message, .. })) => {
                assert_eq!(message, "bad input", "{name}")
            }
            other => panic!("{name}: {other:?}"),
        }
        match pool.exec(job("crash:3")).await {
            Err(PoolError::Job(JobError::Crashed { exit: Some(e), .. })) => {
                assert_eq!(e.code, Some(3), "{name}")
            }
            other => panic!("{name}: {other:?}"),
        }
        match pool.exec(job("kill")).await {
            Err(PoolError::Job(JobError::Crashed { exit: Some(e), .. })) => {
                assert_eq!(e.signal, Some(9), "{name}")
            }
            other => panic!("{name}: {other:?}"),
        }
        if name == "pipes" {
            // Only the pipe relay carries stdout; over sockets stdout goes to the log.
            match pool.exec(job("garbage")).await {
                Err(PoolError::Job(e @ JobError::Garbage { .. })) => {
                    assert!(e.to_string().contains("Hello from PHP"), "{e}")
                }
                other => panic!("{name}: {other:?}"),
            }
        }
        let mut j = pool.start_job(job("stream:12")).await.expect(name);
        let mut n = 0;
        let mut last = Bytes::new();
        while let Some(r) = j.next().await {
            match r.expect(name) {
                Reply::Chunk(_) => n += 1,
                Reply::Final(f) => last = f.body,
            }
        }
        assert_eq!(
            (n, &last[..]),
            (12, &b"end"[..]),
            "{name}: chunks through two PING/PONG rounds"
        );
        let big = pool.exec(job("big:2048")).await.expect(name);
        assert_eq!(big.body.len(), 2048 * 1024, "{name}");
        assert!(
            eventually(Duration::from_secs(10), || pool.ready_workers() == 2).await,
            "{name}: pool back to size"
        );
        pool.stop(Duration::from_secs(2)).await;
    }
}

#[tokio::test]
async fn php_stop_request_reruns_and_leaks_are_recycled() {
    let mut c = cfg(2);
    c.supervisor.max_worker_memory = Some(30);
    let pool = Pool::start("test", c, php("worker.php", RelayMode::Pipes, &[]))
        .await
        .expect("start");
    // A worker that asks to stop: the job runs again on another worker, which also stops...
    // so the pool gives up after its attempts, with a clear error, and refills.
    match pool.exec(job("stop")).await {
        Err(PoolError::Job(JobError::StopRequested { .. })) => {}
        other => panic!("{other:?}"),
    }
    assert!(eventually(Duration::from_secs(10), || pool.ready_workers() == 2).await);
    // A leak past max_worker_memory gets the worker replaced without failing a job.
    let pid: u32 = String::from_utf8_lossy(&pool.exec(job("pid")).await.expect("pid").body)
        .parse()
        .expect("pid");
    for _ in 0..4 {
        pool.exec(job("leak:16384")).await.expect("leak job");
    }
    let p = pool.clone();
    assert!(
        eventually(Duration::from_secs(10), || p
            .stats()
            .restarts(RestartReason::Memory)
            >= 1
            && p.ready_workers() == 2)
        .await,
        "leaky worker not recycled"
    );
    let _ = pid;
    pool.stop(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn php_boot_failures_show_stderr() {
    for (script, needle) in [
        ("bootfail.php", "PHP Parse error"),
        ("exit_at_boot.php", "boot failed: missing APP_KEY"),
    ] {
        match Pool::start("test", cfg(1), php(script, RelayMode::Pipes, &[])).await {
            Err(e) => assert!(e.to_string().contains(needle), "{script}: {e}"),
            Ok(_) => panic!("{script} must not start"),
        }
    }
}
