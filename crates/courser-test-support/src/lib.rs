//! Helpers for tests: the fake worker binary, spawn specs over each relay, the
//! repository's PHP test workers, and polling with a deadline.

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

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A PHP test worker from `tests/workers/`.
pub fn php_worker(name: &str) -> PathBuf {
    repo_root().join("tests/workers").join(name)
}

/// A spawn spec for `command` over `relay`, with `RR_RELAY`, `RR_MODE=test` and `env`.
pub fn spec(
    command: Vec<String>,
    relay: courser_worker::RelayMode,
    env: &[(&str, &str)],
) -> courser_worker::SpawnSpec {
    use courser_relay::SocketAddress;
    use courser_worker::RelayMode;
    let relay_env = match &relay {
        RelayMode::Pipes => "pipes".to_string(),
        RelayMode::Socket(l) => match l.address() {
            SocketAddress::Tcp(a) => format!("tcp://{a}"),
            SocketAddress::Unix(p) => format!("unix://{}", p.display()),
        },
    };
    let mut e: Vec<(String, String)> = vec![
        ("RR_RELAY".into(), relay_env),
        ("RR_MODE".into(), "test".into()),
    ];
    e.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    courser_worker::SpawnSpec {
        command,
        env: e,
        cwd: None,
        relay,
        limits: courser_frame::Limits::default(),
        boot_timeout: Duration::from_secs(10),
        pool: "test".into(),
        uid: None,
        gid: None,
        on_exit: None,
    }
}

/// One relay of each kind: pipes, a unix socket (in a temp dir kept alive by the
/// returned guard) and a TCP socket on a free loopback port.
pub async fn relays() -> Vec<(
    &'static str,
    courser_worker::RelayMode,
    Option<tempfile::TempDir>,
)> {
    use courser_relay::{SocketAddress, SocketListener};
    use courser_worker::RelayMode;
    let limits = courser_frame::Limits::default();
    let dir = tempfile::tempdir().expect("tempdir");
    let unix = SocketListener::bind(SocketAddress::Unix(dir.path().join("relay.sock")), limits)
        .await
        .expect("bind unix relay");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let tcp = SocketListener::bind(SocketAddress::Tcp(format!("127.0.0.1:{port}")), limits)
        .await
        .expect("bind tcp relay");
    vec![
        ("pipes", RelayMode::Pipes, None),
        ("unix", RelayMode::Socket(unix), Some(dir)),
        ("tcp", RelayMode::Socket(tcp), None),
    ]
}

/// A pool config for tests: `workers` workers, short timeouts, a 50 ms watch tick.
pub fn pool_config(workers: usize) -> courser_config::PoolConfig {
    let mut c = courser_config::PoolConfig {
        num_workers: workers,
        allocate_timeout: Duration::from_secs(10),
        destroy_timeout: Duration::from_secs(2),
        ..Default::default()
    };
    c.supervisor.watch_tick = Duration::from_millis(50);
    c
}

/// A JSON-codec job with a small context and `body`.
pub fn job(body: &str) -> courser_worker::Payload {
    courser_worker::Payload {
        flags: courser_frame::flags::CODEC_JSON,
        context: bytes::Bytes::from_static(b"{\"k\":1}"),
        body: bytes::Bytes::from(body.to_string()),
    }
}
