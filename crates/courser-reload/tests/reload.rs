//! Hot reload against real directories, real files and real pools of the fake worker.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use courser_config::{ReloadConfig, ReloadTarget};
use courser_pool::{Pool, RestartReason};
use courser_reload::{ReloadError, Reloader};
use courser_test_support::{eventually, fake_worker, pool_config, spec};
use courser_worker::RelayMode;
use tokio::sync::watch;

const DEBOUNCE: Duration = Duration::from_millis(300);
/// Long enough that a reload would have fired: the debounce window plus room for
/// a slow machine.
const QUIET: Duration = Duration::from_millis(1200);
const DEADLINE: Duration = Duration::from_secs(10);

/// Log lines written while a test runs.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    /// The reloader's one-per-reload lines.
    fn reloads(&self) -> Vec<String> {
        let all = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        String::from_utf8_lossy(&all)
            .lines()
            .filter(|l| l.contains("changed; resetting"))
            .map(str::to_string)
            .collect()
    }
}

fn target(plugin: &str, dirs: &[&str]) -> ReloadTarget {
    ReloadTarget {
        plugin: plugin.into(),
        dirs: dirs.iter().map(PathBuf::from).collect(),
        recursive: true,
        patterns: vec![".php".into()],
        ignore: vec!["vendor".into(), ".git".into()],
    }
}

async fn pool(name: &str, workers: usize) -> Pool {
    let s = spec(
        vec![fake_worker().display().to_string()],
        RelayMode::Pipes,
        &[],
    );
    Pool::start(name, pool_config(workers), s)
        .await
        .expect("pool start")
}

fn pids(pool: &Pool) -> HashSet<u32> {
    pool.workers().iter().map(|w| w.pid).collect()
}

fn resets(pool: &Pool) -> u64 {
    pool.stats().restarts(RestartReason::Reset)
}

fn write(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(path, text).expect("write");
}

/// A running reloader over a temp dir (with `app/` in it) and its pools.
struct Fixture {
    dir: tempfile::TempDir,
    pools: Vec<Pool>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    logs: Logs,
    _guard: tracing::subscriber::DefaultGuard,
}

impl Fixture {
    async fn start(targets: Vec<ReloadTarget>, pools: &[(&str, usize)]) -> Fixture {
        Self::start_in(tempfile::tempdir().expect("tempdir"), targets, pools).await
    }

    async fn start_in(
        dir: tempfile::TempDir,
        targets: Vec<ReloadTarget>,
        pools: &[(&str, usize)],
    ) -> Fixture {
        let logs = Logs::default();
        let sink = logs.clone();
        // The test runtime has one thread, so the reloader's task logs here too.
        let guard = tracing::subscriber::set_default(
            tracing_subscriber::fmt()
                .with_ansi(false)
                .with_writer(move || sink.clone())
                .finish(),
        );
        std::fs::create_dir_all(dir.path().join("app")).expect("mkdir app");
        let mut ps = Vec::new();
        for (name, n) in pools {
            ps.push(pool(name, *n).await);
        }
        let cfg = ReloadConfig {
            debounce: DEBOUNCE,
            targets,
        };
        let reloader = Reloader::start(&cfg, dir.path(), ps.clone()).expect("reloader start");
        let (shutdown, rx) = watch::channel(false);
        let task = tokio::spawn(reloader.run(rx));
        Fixture {
            dir,
            pools: ps,
            shutdown,
            task,
            logs,
            _guard: guard,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Waits until `pool` has been reset once: every worker replaced and the
    /// pool full again.
    async fn reset_once(&self, pool: &Pool, before: &HashSet<u32>) -> bool {
        let n = before.len();
        eventually(DEADLINE, || {
            let now = pids(pool);
            resets(pool) == n as u64
                && pool.ready_workers() == n
                && now.len() == n
                && now.is_disjoint(before)
        })
        .await
    }

    /// Waits out a reload that must not happen, then proves the watcher was
    /// listening all along: a PHP change still resets the pool.
    async fn quiet_then_control(&self, pool: &Pool) {
        let before = pids(pool);
        tokio::time::sleep(QUIET).await;
        assert_eq!(
            resets(pool),
            0,
            "nothing may reload: {:?}",
            self.logs.reloads()
        );
        assert_eq!(pids(pool), before);
        assert!(self.logs.reloads().is_empty(), "{:?}", self.logs.reloads());
        write(&self.path("app/Control.php"), "<?php // control");
        assert!(
            self.reset_once(pool, &before).await,
            "the control change did not reload"
        );
    }

    async fn stop(self) {
        let _ = self.shutdown.send(true);
        let stopped = tokio::time::timeout(DEADLINE, self.task).await;
        assert!(
            matches!(stopped, Ok(Ok(()))),
            "run did not stop: {stopped:?}"
        );
        for p in &self.pools {
            p.stop(Duration::from_secs(2)).await;
        }
    }
}

#[tokio::test]
async fn a_burst_of_php_writes_resets_the_pool_once() {
    let f = Fixture::start(vec![target("*", &["app"])], &[("http", 2)]).await;
    let http = f.pools[0].clone();
    let before = pids(&http);
    assert_eq!(before.len(), 2);
    let file = f.path("app/Controller.php");
    // Five writes, 30 ms apart: well inside one 300 ms debounce window.
    for i in 0..5 {
        write(&file, &format!("<?php // v{i}"));
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert!(f.reset_once(&http, &before).await, "the pool was not reset");
    let after = pids(&http);
    // Wait out more windows: the burst must not cause a second reset.
    tokio::time::sleep(QUIET).await;
    assert_eq!(resets(&http), 2, "one reset replaces both workers, once");
    assert_eq!(pids(&http), after);
    let lines = f.logs.reloads();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("reload: app/Controller.php changed; resetting http"),
        "{}",
        lines[0]
    );
    f.stop().await;
}

#[tokio::test]
async fn a_txt_change_does_nothing() {
    let f = Fixture::start(vec![target("*", &["app"])], &[("http", 1)]).await;
    write(&f.path("app/notes.txt"), "hello");
    write(&f.path("app/sub/readme.md"), "hello");
    f.quiet_then_control(&f.pools[0].clone()).await;
    f.stop().await;
}

#[tokio::test]
async fn changes_under_vendor_and_editor_temp_files_do_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    // One vendor tree exists before the start, one appears after it.
    write(&dir.path().join("app/vendor/acme/Old.php"), "<?php");
    let f = Fixture::start_in(dir, vec![target("*", &["app"])], &[("http", 1)]).await;
    write(&f.path("app/vendor/acme/Old.php"), "<?php // changed");
    write(&f.path("app/vendor/acme/New.php"), "<?php");
    write(&f.path("app/src/vendor/Lib.php"), "<?php");
    write(&f.path("app/Controller.php~"), "<?php");
    write(&f.path("app/.Controller.php.swp"), "x");
    write(&f.path("app/.Controller.php.swx"), "x");
    write(&f.path("app/4913"), "");
    f.quiet_then_control(&f.pools[0].clone()).await;
    f.stop().await;
}

#[tokio::test]
async fn a_star_target_resets_every_pool() {
    let f = Fixture::start(vec![target("*", &["app"])], &[("http", 1), ("jobs", 2)]).await;
    let (http, jobs) = (f.pools[0].clone(), f.pools[1].clone());
    let (h, j) = (pids(&http), pids(&jobs));
    write(&f.path("app/Model.php"), "<?php");
    assert!(f.reset_once(&http, &h).await, "http was not reset");
    assert!(f.reset_once(&jobs, &j).await, "jobs was not reset");
    let lines = f.logs.reloads();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("reload: app/Model.php changed; resetting http, jobs"),
        "{}",
        lines[0]
    );
    f.stop().await;
}

#[tokio::test]
async fn a_plugin_target_resets_only_its_pool() {
    let f = Fixture::start(vec![target("jobs", &["app"])], &[("http", 1), ("jobs", 1)]).await;
    let (http, jobs) = (f.pools[0].clone(), f.pools[1].clone());
    let (h, j) = (pids(&http), pids(&jobs));
    write(&f.path("app/Job.php"), "<?php");
    assert!(f.reset_once(&jobs, &j).await, "jobs was not reset");
    tokio::time::sleep(QUIET).await;
    assert_eq!(
        (resets(&http), pids(&http)),
        (0, h),
        "http must keep its worker"
    );
    let lines = f.logs.reloads();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("reload: app/Job.php changed; resetting jobs file="),
        "{}",
        lines[0]
    );
    f.stop().await;
}

#[tokio::test]
async fn a_directory_made_after_the_start_is_watched() {
    let f = Fixture::start(vec![target("*", &["app"])], &[("http", 1)]).await;
    let http = f.pools[0].clone();
    let before = pids(&http);
    write(&f.path("app/Http/Controllers/Home.php"), "<?php");
    assert!(f.reset_once(&http, &before).await, "first reload");
    // Let the first reload's window close, then change a file in the new tree.
    tokio::time::sleep(QUIET).await;
    let before = pids(&http);
    write(&f.path("app/Http/Controllers/Home.php"), "<?php // v2");
    assert!(
        eventually(DEADLINE, || resets(&http) == 2
            && pids(&http).is_disjoint(&before))
        .await,
        "a change in the new directory did not reload"
    );
    let lines = f.logs.reloads();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[1].contains("reload: app/Http/Controllers/Home.php changed"),
        "{}",
        lines[1]
    );
    f.stop().await;
}

#[tokio::test]
async fn a_missing_dir_is_an_error_naming_the_key_and_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(&dir.path().join("file.php"), "<?php");
    let check = |t: ReloadTarget, key: &str, path: &str| {
        let cfg = ReloadConfig {
            debounce: DEBOUNCE,
            targets: vec![t],
        };
        let err = Reloader::start(&cfg, dir.path(), Vec::new()).expect_err("must fail");
        let msg = err.to_string();
        let want = dir.path().join(path);
        assert!(
            msg.contains(key) && msg.contains(&want.display().to_string()),
            "{msg}"
        );
        err
    };
    let err = check(target("*", &["missing"]), "reload.dirs", "missing");
    assert!(matches!(err, ReloadError::MissingDir { .. }), "{err:?}");
    let err = check(
        target("http", &[".", "src/app"]),
        "reload.services.http.dirs",
        "src/app",
    );
    assert!(matches!(err, ReloadError::MissingDir { .. }), "{err:?}");
    let err = check(target("*", &["file.php"]), "reload.dirs", "file.php");
    assert!(matches!(err, ReloadError::NotADirectory { .. }), "{err:?}");
}
