//! Regression tests for the faults found by the end-to-end fault suite
//! (`crates/courser/tests/faults.rs`, issue 6).

use courser_pool::{Payload, Pool};
use courser_test_support::{self as support, eventually, fake_worker, repo_root};
use courser_worker::{RelayMode, SpawnSpec};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

fn fake(env: &[(&str, &str)]) -> SpawnSpec {
    support::spec(
        vec![fake_worker().display().to_string()],
        RelayMode::Pipes,
        env,
    )
}

fn job(body: &str) -> Payload {
    support::job(body)
}

fn attempts(pool: &Pool) -> u64 {
    let s = pool.stats();
    s.spawned.load(Ordering::Relaxed) + s.spawn_failures.load(Ordering::Relaxed)
}

/// A worker that answers one job, then exits 300 ms later without reading
/// anything more: a job sent to it meanwhile sits unread in its pipe.
fn answers_once_then_exits() -> SpawnSpec {
    let autoload = repo_root().join("php/autoload.php");
    let code = format!(
        "require '{}'; $w = Courser\\Worker::create(); $p = $w->waitPayload(); \
         $w->respond(new Courser\\Payload((string) getmypid(), $p->context), Courser\\Frame::CODEC_JSON); \
         usleep(300000); exit(0);",
        autoload.display()
    );
    support::spec(vec!["php".into(), "-r".into(), code], RelayMode::Pipes, &[])
}

/// Before: the job failed as a crash ("worker crashed while running the job
/// (exit code 0)"), although the worker never read it.
#[tokio::test]
async fn a_job_its_worker_exited_without_reading_runs_elsewhere() {
    let pool = Pool::start("test", support::pool_config(1), answers_once_then_exits())
        .await
        .expect("start");
    let first = pool.exec(job("one")).await.expect("first job");
    // The worker is idle again, but on its way out: this job goes into its pipe.
    let second = pool.exec(job("two")).await.expect("second job re-run");
    assert_ne!(first.body, second.body, "the same worker answered twice");
    let s = pool.stats();
    assert_eq!(s.jobs_retried.load(Ordering::Relaxed), 1);
    assert_eq!(s.jobs_failed.load(Ordering::Relaxed), 0);
    pool.stop(Duration::from_secs(2)).await;
}

/// Before: every job completed by the healthy worker cleared the failure
/// streak, so the replacement that could not boot was retried every 100 ms.
#[tokio::test]
async fn a_worker_that_cannot_boot_backs_off_while_another_serves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = dir.path().join("broken");
    let marker_s = marker.display().to_string();
    let pool = Pool::start(
        "test",
        support::pool_config(2),
        fake(&[("FAKE_BOOT_FAIL_IF", marker_s.as_str())]),
    )
    .await
    .expect("start");
    std::fs::write(&marker, b"x").expect("marker");
    assert!(pool.exec(job("crash:1")).await.is_err());
    let before = attempts(&pool);
    let until = Instant::now() + Duration::from_millis(1600);
    let mut served = 0;
    while Instant::now() < until {
        if pool.exec(job("pid")).await.is_ok() {
            served += 1;
        }
    }
    let tried = attempts(&pool) - before;
    assert!(served > 20, "the healthy worker served only {served} jobs");
    // 100 + 200 + 400 + 800 ms of backoff: about 4 attempts.
    assert!(
        (2..=6).contains(&tried),
        "{tried} boot attempts in 1.6 s while the other worker served"
    );
    std::fs::remove_file(&marker).expect("rm marker");
    assert!(
        eventually(Duration::from_secs(15), || pool.ready_workers() == 2).await,
        "the pool did not recover"
    );
    pool.stop(Duration::from_secs(2)).await;
}

/// Before: a worker that died right after its handshake with a job already
/// sent to it counted as busy, not as a failed start, so with jobs waiting
/// a crash loop respawned workers as fast as they died.
#[tokio::test]
async fn a_crash_loop_with_jobs_waiting_backs_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = dir.path().join("broken");
    let marker_s = marker.display().to_string();
    let mut cfg = support::pool_config(2);
    cfg.allocate_timeout = Duration::from_millis(300);
    let pool = Pool::start(
        "test",
        cfg,
        fake(&[("FAKE_DIE_AFTER_HANDSHAKE_IF", marker_s.as_str())]),
    )
    .await
    .expect("start");
    std::fs::write(&marker, b"x").expect("marker");
    for _ in 0..2 {
        let _ = pool.exec(job("crash:1")).await;
    }
    let before = attempts(&pool);
    let until = Instant::now() + Duration::from_millis(1600);
    let mut tries = 0;
    while Instant::now() < until {
        let _ = pool.exec(job("pid")).await;
        tries += 1;
    }
    let spawned = attempts(&pool) - before;
    assert!(tries > 2, "{tries}");
    assert!(
        spawned <= 8,
        "{spawned} spawns in 1.6 s of a crash loop with {tries} jobs waiting"
    );
    std::fs::remove_file(&marker).expect("rm marker");
    assert!(
        eventually(Duration::from_secs(15), || pool.ready_workers() == 2).await,
        "the pool did not recover"
    );
    pool.stop(Duration::from_secs(2)).await;
}
