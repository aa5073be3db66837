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

mod http;
mod rpc;

use courser_config::{Config, PoolConfig, Relay};
use courser_frame::Limits;
use courser_plugin::{Factory, Plugin, PluginError};
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
    #[error("nothing to serve: the config has neither an http nor a jobs section (add `http: {{address: ..., pool: ...}}` or `jobs: {{pipelines: ...}}`)")]
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
    /// A plugin could not be built or started.
    #[error(transparent)]
    Plugin(#[from] PluginError),
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

/// What the composition root gives plugins while they are built: the config,
/// and pools started with the server's relay, environment and user.
struct ServerHost<'a> {
    cfg: &'a Config,
    run: &'a RunOptions,
    relay: RelayMode,
    limits: Limits,
    uid: Option<u32>,
    gid: Option<u32>,
}

#[async_trait::async_trait]
impl courser_plugin::Host for ServerHost<'_> {
    fn config(&self) -> &Config {
        self.cfg
    }

    async fn start_pool(
        &self,
        name: &str,
        mode: &str,
        pool_cfg: &PoolConfig,
    ) -> Result<Pool, PluginError> {
        let command = pool_cfg
            .command
            .clone()
            .unwrap_or_else(|| self.cfg.server.command.clone());
        if command.is_empty() {
            return Err(PluginError::Other {
                plugin: "server",
                message: ServerError::NoCommand.to_string(),
            });
        }
        let spec = SpawnSpec {
            command,
            env: worker_env(self.cfg, self.run, pool_cfg, mode),
            cwd: self.run.workdir.clone(),
            relay: self.relay.clone(),
            limits: self.limits,
            boot_timeout: pool_cfg.allocate_timeout,
            pool: name.into(),
            uid: self.uid,
            gid: self.gid,
            on_exit: None,
        };
        Pool::start(name, pool_cfg.clone(), spec)
            .await
            .map_err(|source| PluginError::Pool {
                pool: name.into(),
                source,
            })
    }
}

/// Every plugin that serves something, in start order. **Adding a plugin is
/// one line here** (and a crate implementing `courser_plugin::Factory`); the
/// rest below treats all of them alike.
fn factories(metrics: Option<&courser_metrics::Metrics>) -> Vec<Box<dyn Factory>> {
    vec![
        Box::new(http::HttpFactory {
            metrics: metrics.cloned(),
        }),
        Box::new(courser_jobs::JobsFactory),
        Box::new(courser_kv::KvFactory),
    ]
}

/// A running server.
pub struct Server {
    plugins: Vec<Box<dyn Plugin>>,
    pools: Vec<Pool>,
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

async fn stop_all(plugins: &mut [Box<dyn Plugin>]) {
    for p in plugins.iter_mut() {
        p.stop(Instant::now()).await;
        for pool in p.pools() {
            pool.stop(Duration::ZERO).await;
        }
    }
}

impl Server {
    /// Starts every configured plugin and the operations services (rpc,
    /// metrics, status, reload). Fails when a pool cannot start a single
    /// worker (the error carries the worker's stderr, e.g. a PHP parse error).
    pub async fn start(cfg: &Config, run: &RunOptions) -> Result<Server, ServerError> {
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
        let host = ServerHost {
            cfg,
            run,
            relay,
            limits,
            uid,
            gid,
        };
        let metrics = cfg
            .metrics
            .as_ref()
            .map(|_| courser_metrics::Metrics::new());

        // 1. Build: each plugin reads its section and starts its pools.
        let mut plugins: Vec<Box<dyn Plugin>> = Vec::new();
        for f in factories(metrics.as_ref()) {
            match f.build(&host).await {
                Ok(Some(p)) => plugins.push(p),
                Ok(None) => {}
                Err(e) => {
                    stop_all(&mut plugins).await;
                    return Err(e.into());
                }
            }
        }
        if plugins.is_empty() {
            return Err(ServerError::NothingToServe);
        }
        let pools: Vec<Pool> = plugins.iter().flat_map(|p| p.pools()).collect();

        // 2. Register: pools, RPC methods and metric families of every plugin.
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        let started = Self::start_ops(cfg, run, &plugins, &pools, metrics, &shutdown_rx).await;
        let (status, stop_rx) = match started {
            Ok((status, stop_rx, t)) => {
                tasks.extend(t);
                (status, stop_rx)
            }
            Err(e) => {
                stop_all(&mut plugins).await;
                return Err(e);
            }
        };

        // 3. Serve.
        for i in 0..plugins.len() {
            if let Err(e) = plugins[i].serve(shutdown_rx.clone()).await {
                shutdown.send_replace(true);
                stop_all(&mut plugins).await;
                return Err(e.into());
            }
        }
        Ok(Server {
            plugins,
            pools,
            shutdown,
            grace: cfg.endure.grace_period,
            status,
            tasks,
            stop_rx,
            _relay: listener,
        })
    }

    #[allow(clippy::type_complexity)]
    async fn start_ops(
        cfg: &Config,
        run: &RunOptions,
        plugins: &[Box<dyn Plugin>],
        pools: &[Pool],
        metrics: Option<courser_metrics::Metrics>,
        shutdown_rx: &watch::Receiver<bool>,
    ) -> Result<
        (
            Option<(courser_status::Status, Duration)>,
            tokio::sync::mpsc::UnboundedReceiver<()>,
            Vec<tokio::task::JoinHandle<()>>,
        ),
        ServerError,
    > {
        let mut tasks = Vec::new();
        if let (Some(m), Some(metrics)) = (&cfg.metrics, &metrics) {
            for p in pools {
                metrics.add_pool(p.clone());
                let mm = metrics.clone();
                let name = p.name().to_string();
                p.set_wait_observer(std::sync::Arc::new(move |waited| {
                    mm.observe_wait(&name, waited)
                }));
            }
            for p in plugins {
                metrics.with_registry(|r| p.register_metrics(r));
            }
            metrics.declare_configured(m)?;
            let server = courser_metrics::bind(&m.address, metrics.clone()).await?;
            tasks.push(tokio::spawn(server.run(shutdown_rx.clone())));
        }
        let status = match &cfg.status {
            Some(st) => {
                let status = courser_status::Status::new(st.unavailable_status_code);
                for p in pools {
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
            let reloader = courser_reload::Reloader::start(reload, &base, pools.to_vec())?;
            tracing::info!(debounce = ?reload.debounce, "reload: watching for PHP file changes");
            tasks.push(tokio::spawn(reloader.run(shutdown_rx.clone())));
        }
        let (stop_tx, stop_rx) = tokio::sync::mpsc::unbounded_channel();
        if let Some(rpc) = &cfg.rpc {
            let mut registry = rpc::registry(
                pools.to_vec(),
                cfg.server.command.join(" "),
                stop_tx,
                metrics.clone(),
            );
            for p in plugins {
                p.register_rpc(&mut registry);
            }
            let server = courser_rpc::RpcServer::bind(&rpc.listen, registry).await?;
            tasks.push(tokio::spawn(server.run(shutdown_rx.clone())));
        }
        Ok((status, stop_rx, tasks))
    }

    /// The pools, for RPC and metrics.
    pub fn pools(&self) -> &[Pool] {
        &self.pools
    }

    /// Graceful stop: stop accepting, let requests and jobs finish within the
    /// grace period, then stop the workers.
    pub async fn stop(mut self) {
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
        futures_util::future::join_all(self.plugins.iter_mut().map(|p| p.stop(deadline))).await;
        let left = deadline.saturating_duration_since(Instant::now());
        for p in &self.pools {
            p.stop(left).await;
        }
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
        }
    }

    /// Replaces every plugin's workers, make-before-break (SIGHUP, `courser reset`).
    pub async fn reset_all(&self) {
        for p in &self.plugins {
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
