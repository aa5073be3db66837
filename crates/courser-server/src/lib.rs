//! The composition root: turns a validated [`courser_config::Config`] into running
//! pools and plugins, and runs them until a signal says stop.
//!
//! Signal contract (stated first, as the guarantee users rely on):
//! - SIGTERM or SIGINT: graceful stop. No new connections are accepted; requests in
//!   flight finish within `endure.grace_period`; then every worker gets the stop
//!   frame and is killed after `destroy_timeout` if it does not leave.
//! - A second SIGTERM or SIGINT: immediate exit with status 1 (workers are killed).
//!
//! Only this crate knows every plugin; plugins never depend on each other.

mod rpc;

use courser_config::{Config, PoolConfig, Relay};
use courser_frame::Limits;
use courser_http::{HttpOptions, HttpServer};
use courser_pool::Pool;
use courser_relay::{SocketAddress, SocketListener};
use courser_worker::{RelayMode, SpawnSpec};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

/// The RoadRunner version workers are told (`RR_VERSION`): the release line whose
/// protocol Courser speaks.
pub const RR_VERSION: &str = "2025.1.15";

/// Why the server could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Nothing in the config asks for a pool or a listener.
    #[error("nothing to serve: the config has no http section (add `http: {{address: ..., pool: ...}}`)")]
    NothingToServe,
    /// The worker command is missing.
    #[error(
        "server.command is required: the command that starts a PHP worker, e.g. \"php worker.php\""
    )]
    NoCommand,
    /// A socket relay could not be opened.
    #[error("server.relay: {0}")]
    Relay(#[from] courser_relay::RelayError),
    /// A pool could not start (no worker could boot).
    #[error("the {pool} pool could not start: {source}")]
    Pool {
        /// The plugin.
        pool: String,
        /// Why.
        source: courser_pool::PoolError,
    },
    /// The HTTP listener could not start.
    #[error(transparent)]
    Http(#[from] courser_http::HttpError),
    /// `server.user` or `server.group` does not exist.
    #[error("server.{key}: {name:?} is not a known {key} on this machine")]
    NoSuchUser {
        /// `user` or `group`.
        key: &'static str,
        /// The name.
        name: String,
    },
    /// The metrics endpoint could not start.
    #[error(transparent)]
    Metrics(#[from] courser_metrics::MetricsError),
    /// The status endpoint could not start.
    #[error(transparent)]
    Status(#[from] courser_status::StatusError),
    /// The RPC server could not start.
    #[error(transparent)]
    Rpc(#[from] courser_rpc::RpcError),
    /// The file watcher could not start.
    #[error(transparent)]
    Reload(#[from] courser_reload::ReloadError),
    /// Installing the signal handlers failed.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
}

/// Extra inputs that do not come from the YAML file.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Variables from `--dotenv`, passed to workers.
    pub dotenv: Vec<(String, String)>,
    /// Working directory for workers.
    pub workdir: Option<PathBuf>,
}

/// Builds the worker environment in RoadRunner's order (spec 2.1): our own
/// environment (inherited), `COURSER_SDK` (see [`bundled_sdk`]), dotenv,
/// `RR_RELAY`, `RR_RPC`, `server.env`, `RR_VERSION`, then the plugin's
/// `RR_MODE`.
fn worker_env(
    cfg: &Config,
    run: &RunOptions,
    pool: &PoolConfig,
    mode: &str,
) -> Vec<(String, String)> {
    let mut env = Vec::new();
    if std::env::var_os("COURSER_SDK").is_none() {
        if let Some(sdk) = bundled_sdk() {
            env.push(("COURSER_SDK".into(), sdk.to_string_lossy().into_owned()));
        }
    }
    env.extend(run.dotenv.iter().cloned());
    env.push(("RR_RELAY".into(), cfg.server.relay.to_string()));
    if let Some(rpc) = &cfg.rpc {
        env.push(("RR_RPC".into(), rpc.listen.clone()));
    }
    env.extend(cfg.server.env.iter().cloned());
    env.extend(pool.env.iter().cloned());
    env.push(("RR_VERSION".into(), RR_VERSION.into()));
    env.push(("RR_MODE".into(), mode.into()));
    env
}

/// The PHP SDK's `autoload.php` shipped next to this binary, so that workers
/// can `require getenv('COURSER_SDK')` wherever their app lives: in a source
/// checkout the binary is `target/<profile>/courser` and the SDK `php/`; an
/// installed binary looks in `../share/courser/php/`. `None` when neither
/// exists (apps then load the SDK from Composer's `vendor/`).
fn bundled_sdk() -> Option<PathBuf> {
    static SDK: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    SDK.get_or_init(|| {
        let exe = std::env::current_exe().ok()?.canonicalize().ok()?;
        let dir = exe.parent()?;
        let candidates = [
            dir.join("../share/courser/php/autoload.php"),
            dir.join("../../php/autoload.php"),
        ];
        candidates
            .into_iter()
            .find(|p| p.is_file())
            .and_then(|p| p.canonicalize().ok())
    })
    .clone()
}

/// The uid and gid workers run as. `server.user` alone also switches to that
/// user's primary group (as RoadRunner does): keeping the server's group would
/// leave a worker of a root server in group root. Supplementary groups are
/// dropped whenever the uid changes (std calls `setgroups(0)` before `setuid`).
fn resolve_ids(cfg: &Config) -> Result<(Option<u32>, Option<u32>), ServerError> {
    let user = match &cfg.server.user {
        None => None,
        Some(name) => Some(
            nix::unistd::User::from_name(name)
                .ok()
                .flatten()
                .ok_or_else(|| ServerError::NoSuchUser {
                    key: "user",
                    name: name.clone(),
                })?,
        ),
    };
    let uid = user.as_ref().map(|u| u.uid.as_raw());
    let gid = match &cfg.server.group {
        None => user.as_ref().map(|u| u.gid.as_raw()),
        Some(name) => Some(
            nix::unistd::Group::from_name(name)
                .ok()
                .flatten()
                .ok_or_else(|| ServerError::NoSuchUser {
                    key: "group",
                    name: name.clone(),
                })?
                .gid
                .as_raw(),
        ),
    };
    Ok((uid, gid))
}

/// A running server.
pub struct Server {
    pools: Vec<Pool>,
    http: Option<tokio::task::JoinHandle<()>>,
    shutdown: watch::Sender<bool>,
    grace: Duration,
    /// Readiness and how long to advertise draining before closing listeners.
    status: Option<(courser_status::Status, Duration)>,
    /// Metrics, status and RPC servers.
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Told when a client calls `courser.Stop` over RPC.
    stop_rx: tokio::sync::mpsc::UnboundedReceiver<()>,
    _relay: Option<SocketListener>,
}

impl Server {
    /// Starts every configured pool and plugin. Fails when a pool cannot start a
    /// single worker (the error carries the worker's stderr, e.g. a PHP parse error).
    pub async fn start(cfg: &Config, run: &RunOptions) -> Result<Server, ServerError> {
        let Some(http_cfg) = &cfg.http else {
            return Err(ServerError::NothingToServe);
        };
        let (uid, gid) = resolve_ids(cfg)?;
        let limits = Limits {
            max_payload: usize::try_from(cfg.server.max_frame_size).unwrap_or(usize::MAX),
        };
        let (relay, listener) = match &cfg.server.relay {
            Relay::Pipes => (RelayMode::Pipes, None),
            Relay::Tcp(a) => {
                let l = SocketListener::bind(SocketAddress::Tcp(a.clone()), limits).await?;
                (RelayMode::Socket(l.clone()), Some(l))
            }
            Relay::Unix(p) => {
                let l = SocketListener::bind(SocketAddress::Unix(p.clone()), limits).await?;
                (RelayMode::Socket(l.clone()), Some(l))
            }
        };
        let pool_cfg = http_cfg.pool.clone();
        let command = pool_cfg
            .command
            .clone()
            .unwrap_or_else(|| cfg.server.command.clone());
        if command.is_empty() {
            return Err(ServerError::NoCommand);
        }
        let spec = SpawnSpec {
            command,
            env: worker_env(cfg, run, &pool_cfg, "http"),
            cwd: run.workdir.clone(),
            relay,
            limits,
            boot_timeout: pool_cfg.allocate_timeout,
            pool: "http".into(),
            uid,
            gid,
            on_exit: None,
        };
        let pool = Pool::start("http", pool_cfg.clone(), spec)
            .await
            .map_err(|source| ServerError::Pool {
                pool: "http".into(),
                source,
            })?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let pools = vec![pool.clone()];
        let mut tasks = Vec::new();
        let metrics = match &cfg.metrics {
            Some(m) => {
                let metrics = courser_metrics::Metrics::new();
                for p in &pools {
                    metrics.add_pool(p.clone());
                }
                for p in &pools {
                    let m = metrics.clone();
                    let name = p.name().to_string();
                    p.set_wait_observer(std::sync::Arc::new(move |waited| {
                        m.observe_wait(&name, waited)
                    }));
                }
                metrics.declare_configured(m)?;
                let server = courser_metrics::bind(&m.address, metrics.clone()).await?;
                tasks.push(tokio::spawn(server.run(shutdown_rx.clone())));
                Some(metrics)
            }
            None => None,
        };
        let status = match &cfg.status {
            Some(st) => {
                let status = courser_status::Status::new(st.unavailable_status_code);
                for p in &pools {
                    status.add_pool(p.clone());
                }
                let server = courser_status::bind(&st.address, status.clone()).await?;
                tasks.push(tokio::spawn(server.run(shutdown_rx.clone())));
                Some((status, st.drain_delay))
            }
            None => None,
        };
        if let Some(reload) = &cfg.reload {
            let base = run
                .workdir
                .clone()
                .or_else(|| std::env::current_dir().ok())
                .unwrap_or_else(|| PathBuf::from("."));
            let reloader = courser_reload::Reloader::start(reload, &base, pools.clone())?;
            tracing::info!(debounce = ?reload.debounce, "reload: watching for PHP file changes");
            tasks.push(tokio::spawn(reloader.run(shutdown_rx.clone())));
        }
        let (stop_tx, stop_rx) = tokio::sync::mpsc::unbounded_channel();
        if let Some(rpc) = &cfg.rpc {
            let registry = rpc::registry(
                pools.clone(),
                cfg.server.command.join(" "),
                stop_tx,
                metrics.clone(),
            );
            let server = courser_rpc::RpcServer::bind(&rpc.listen, registry).await?;
            tasks.push(tokio::spawn(server.run(shutdown_rx.clone())));
        }
        let http = match http_cfg.address.is_some()
            || http_cfg.extras.ssl.is_some()
            || http_cfg.extras.fcgi.is_some()
        {
            true => {
                let opts = HttpOptions {
                    address: http_cfg.address.clone(),
                    ssl: http_cfg.extras.ssl.clone(),
                    fcgi: http_cfg.extras.fcgi.clone(),
                    middleware: http_cfg.middleware.clone(),
                    static_files: http_cfg.extras.static_files.clone(),
                    headers: http_cfg.extras.headers.clone(),
                    uploads: http_cfg.extras.uploads.clone(),
                    trusted_subnets: http_cfg.trusted_subnets.clone(),
                    raw_body: http_cfg.raw_body,
                    observer: metrics.clone().map(|m| {
                        let f: courser_http::RequestObserver =
                            std::sync::Arc::new(move |status, elapsed| {
                                m.observe_http(status, elapsed)
                            });
                        f
                    }),
                    internal_error_code: http_cfg.internal_error_code,
                    max_request_size: http_cfg.max_request_size,
                    debug: pool_cfg.debug,
                    access_logs: http_cfg.access_logs,
                    codec: http_cfg.extras.codec,
                    compression: http_cfg
                        .middleware
                        .iter()
                        .any(|m| m == "gzip" || m == "compression"),
                    limits: http_cfg.extras.limits.clone(),
                    max_concurrent_streams: http_cfg.extras.http2.max_concurrent_streams,
                };
                let server = match HttpServer::bind(opts, pool.clone()).await {
                    Ok(s) => s,
                    Err(e) => {
                        pool.stop(Duration::ZERO).await;
                        return Err(e.into());
                    }
                };
                Some(tokio::spawn(server.run(shutdown_rx)))
            }
            false => None,
        };
        Ok(Server {
            pools,
            http,
            shutdown,
            grace: cfg.endure.grace_period,
            status,
            tasks,
            stop_rx,
            _relay: listener,
        })
    }

    /// The pools, for RPC and metrics.
    pub fn pools(&self) -> &[Pool] {
        &self.pools
    }

    /// Graceful stop: stop accepting, let requests finish within the grace period,
    /// then stop the workers.
    pub async fn stop(self) {
        // First /ready turns unavailable, and load balancers get drain_delay to notice.
        if let Some((status, delay)) = &self.status {
            status.set_draining(true);
            if !delay.is_zero() {
                tracing::info!(delay = ?delay, "draining: /ready is unavailable; waiting before closing the listeners");
                tokio::time::sleep(*delay).await;
            }
        }
        let deadline = Instant::now() + self.grace;
        self.shutdown.send_replace(true);
        if let Some(h) = self.http {
            if tokio::time::timeout_at(deadline.into(), h).await.is_err() {
                tracing::warn!("requests still running after the grace period; stopping anyway");
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        for p in &self.pools {
            p.stop(left).await;
        }
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
        }
    }

    /// Replaces every pool's workers, make-before-break (SIGHUP, `courser reset`).
    pub async fn reset_all(&self) {
        for p in &self.pools {
            let n = p.reset().await;
            tracing::info!(plugin = p.name(), workers = n, "reset");
        }
    }
}

/// Runs the server until SIGTERM or SIGINT, then stops it gracefully; a second
/// signal during the stop exits at once with status 1.
pub async fn serve(cfg: &Config, run: &RunOptions) -> Result<(), ServerError> {
    let mut term = signal(SignalKind::terminate()).map_err(ServerError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(ServerError::Signals)?;
    let mut hup = signal(SignalKind::hangup()).map_err(ServerError::Signals)?;
    let mut server = Server::start(cfg, run).await?;
    tracing::info!(
        "courser is serving; SIGTERM or SIGINT stops it gracefully, SIGHUP replaces the workers"
    );
    let which = loop {
        tokio::select! {
            _ = term.recv() => break "SIGTERM",
            _ = int.recv() => break "SIGINT",
            Some(()) = server.stop_rx.recv() => break "courser stop",
            _ = hup.recv() => {
                tracing::info!("SIGHUP: replacing every worker");
                server.reset_all().await;
            }
        }
    };
    tracing::info!(signal = which, grace_period = ?cfg.endure.grace_period, "stopping gracefully; send the signal again to stop at once");
    let pools = server.pools().to_vec();
    let stop = server.stop();
    tokio::select! {
        _ = stop => {}
        _ = term.recv() => force(&pools),
        _ = int.recv() => force(&pools),
    }
    tracing::info!("stopped");
    Ok(())
}

fn force(pools: &[Pool]) {
    tracing::warn!("second signal: exiting now");
    // Workers are in their own process groups and destructors do not run on
    // process::exit, so kill every worker's group explicitly.
    for p in pools {
        p.kill_all();
    }
    std::process::exit(1);
}
