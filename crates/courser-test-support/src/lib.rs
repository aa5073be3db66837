//! Helpers for tests: the path of the fake worker binary and polling with a deadline.

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Path of the `fake-worker` binary, built (once per test process) next to the
/// test executable. Cargo does not build a dev-dependency's binaries, so this asks
/// cargo to; it is a no-op when the binary is fresh.
pub fn fake_worker() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().unwrap_or_default();
            let mut dir = exe.parent().map(PathBuf::from).unwrap_or_default();
            if dir.ends_with("deps") {
                dir.pop();
            }
            let release = dir.ends_with("release");
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut cmd = std::process::Command::new(cargo);
            cmd.args([
                "build",
                "-q",
                "-p",
                "courser-test-support",
                "--bin",
                "fake-worker",
            ]);
            if release {
                cmd.arg("--release");
            }
            let status = cmd.status();
            assert!(
                status.as_ref().is_ok_and(|s| s.success()),
                "building the fake worker failed: {status:?}"
            );
            dir.join("fake-worker")
        })
        .clone()
}

/// Polls `f` every 10 ms until it returns true or `timeout` passes.
pub async fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
