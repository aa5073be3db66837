//! The plugin seam. Every feature Courser serves — the HTTP front, jobs, and
//! later kv, grpc, tcp, websockets — is a [`Plugin`] built by a [`Factory`]
//! from its config section. `courser-server` holds the one list of factories
//! and does the rest the same way for all of them:
//!
//! 1. **build**: [`Factory::build`] reads the typed config and starts the
//!    plugin's worker pools through [`Host::start_pool`] (so relays, worker
//!    environment, `RR_MODE` and uid/gid are decided in one place). A plugin
//!    whose section is absent returns `None`.
//! 2. **register**: every plugin's [`Plugin::pools`] go to `informer`,
//!    `resetter`, `/metrics`, `/health` and `/ready?plugin=<pool>`;
//!    [`Plugin::register_rpc`] adds its RPC methods; [`Plugin::register_metrics`]
//!    adds its Prometheus families.
//! 3. **serve**: [`Plugin::serve`] starts listeners and consumers.
//! 4. **stop**: on SIGTERM, [`Plugin::stop`] is given the grace deadline:
//!    stop taking work, finish what is in flight, hand back the rest.
//! 5. **reset**: SIGHUP / `courser reset` calls [`Plugin::reset`] (by default it
//!    replaces the workers of the plugin's pools).
//!
//! Invariant: plugins never depend on each other; what they share comes
//! through this crate's types (pools, the RPC registry, the metrics registry).

use async_trait::async_trait;
use courser_config::{Config, PoolConfig};
use courser_pool::Pool;
use std::time::Instant;
use tokio::sync::watch;

/// Why a plugin could not be built or started.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// A pool could not start (no worker could boot).
    #[error("the {pool} pool could not start: {source}")]
    Pool {
        /// The pool's name.
        pool: String,
        /// Why.
        source: courser_pool::PoolError,
    },
    /// Anything else, already worded for a person.
    #[error("{plugin}: {message}")]
    Other {
        /// The plugin.
        plugin: &'static str,
        /// What failed, where, what to do.
        message: String,
    },
}

/// What the composition root offers a plugin while it is built.
#[async_trait]
pub trait Host: Send + Sync {
    /// The whole validated config.
    fn config(&self) -> &Config;

    /// Starts a worker pool named `name` whose workers get `RR_MODE=mode`,
    /// with the server's relay, environment and user.
    async fn start_pool(
        &self,
        name: &str,
        mode: &str,
        pool: &PoolConfig,
    ) -> Result<Pool, PluginError>;
}

/// Builds one plugin from its config section.
#[async_trait]
pub trait Factory: Send + Sync {
    /// The config section that turns the plugin on (`http`, `jobs`, …).
    fn section(&self) -> &'static str;

    /// The plugin, or `None` when its section is absent.
    async fn build(&self, host: &dyn Host) -> Result<Option<Box<dyn Plugin>>, PluginError>;
}

/// A running plugin.
#[async_trait]
pub trait Plugin: Send + Sync {
    /// Its name, as `/ready?plugin=` and logs use it.
    fn name(&self) -> &'static str;

    /// The worker pools it owns (none for a plugin without PHP workers).
    fn pools(&self) -> Vec<Pool> {
        Vec::new()
    }

    /// Adds its RPC methods.
    fn register_rpc(&self, _rpc: &mut courser_rpc::Registry) {}

    /// Adds its Prometheus families.
    fn register_metrics(&self, _registry: &mut prometheus_client::registry::Registry) {}

    /// Starts serving (listeners, consumers). `shutdown` turns true when the
    /// server stops; long-running work should watch it.
    async fn serve(&mut self, shutdown: watch::Receiver<bool>) -> Result<(), PluginError>;

    /// Stops taking work and finishes what is in flight by `deadline`.
    /// Pools are stopped by the host afterwards.
    async fn stop(&mut self, deadline: Instant);

    /// Replaces its workers (SIGHUP, `courser reset`); returns how many.
    async fn reset(&self) -> usize {
        let mut n = 0;
        for p in self.pools() {
            n += p.reset().await;
        }
        n
    }
}
