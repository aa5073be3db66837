//! RoadRunner's status plugin for Courser: `GET /health` and `GET /ready` on their
//! own listener (`status.address`), answering per pool ("plugin").
//!
//! Semantics (RoadRunner's, with one improvement):
//! - **health**: a pool is healthy when at least one worker can serve, that is
//!   one is ready, working, or draining (a draining worker still serves until
//!   its replacement is up).
//! - **ready**: a pool is ready when at least one worker is *ready*, i.e. idle
//!   and able to take a job right now. A pool whose workers are all busy is
//!   healthy but not ready, as in RoadRunner: readiness is the "send me more
//!   traffic" signal.
//! - A pool in debug mode spawns a worker per job and keeps none, so it counts
//!   as healthy and ready (a stopping server still fails `/ready` by draining).
//! - **draining** ([`Status::set_draining`], after SIGTERM): every `/ready`
//!   answers the unavailable code so load balancers stop sending traffic, while
//!   `/health` keeps reporting the workers (RoadRunner answers 200 "service is
//!   shutting down" on `/health`; we keep the real check there).
//!
//! `?plugin=http&plugin=jobs` names the pools to check; without it every pool is
//! checked. The answer is 200 when every named pool passes, the configured
//! `unavailable_status_code` (default 503) when one fails, and 404 when one is
//! unknown. The body is RoadRunner's JSON list,
//! `[{"plugin_name":"http","error_message":"","status_code":200}]`.
//! `/jobs` (the jobs plugin's pipeline report) answers 404 until that plugin exists.
//!
//! [`Status::check`] gives the same answers without HTTP, for the RPC
//! `status.Status`/`status.Ready` methods.
//!
//! Invariants:
//! - A check reads the pools' worker tables only; it never runs a job, so it
//!   answers at once (`status.check_timeout` has nothing to bound here).
//! - The status crate knows nothing about the HTTP front; it sees pools by name.

mod server;

pub use server::{bind, StatusServer};

use courser_pool::{Pool, State};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Which question a check answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// `/health`: can the pool serve at all?
    Health,
    /// `/ready`: should it get more traffic now?
    Ready,
}

/// One pool's answer, serialized as RoadRunner's status JSON.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PluginStatus {
    /// The pool's name (`http`, `jobs`, ...).
    pub plugin_name: String,
    /// Empty when the check passed; otherwise what failed, for a person.
    pub error_message: String,
    /// 200, the unavailable code, or 404 for an unknown plugin.
    pub status_code: u16,
}

/// The answer to one check of one or more pools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The overall status: 404 if a plugin is unknown, else the unavailable code
    /// if one failed, else 200.
    pub status_code: u16,
    /// Each plugin asked about, in the order asked, duplicates removed.
    pub plugins: Vec<PluginStatus>,
}

/// Health and readiness of Courser's pools; cheap to clone (every clone sees the
/// same pools and draining flag).
#[derive(Clone)]
pub struct Status {
    inner: Arc<Inner>,
}

struct Inner {
    unavailable: u16,
    pools: Mutex<Vec<Pool>>,
    draining: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl std::fmt::Debug for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pools: Vec<String> = lock(&self.inner.pools)
            .iter()
            .map(|p| p.name().to_string())
            .collect();
        f.debug_struct("Status")
            .field("unavailable_status_code", &self.inner.unavailable)
            .field("pools", &pools)
            .field("draining", &self.is_draining())
            .finish()
    }
}

impl Default for Status {
    fn default() -> Self {
        Status::new(503)
    }
}

/// The default of `status.unavailable_status_code`.
const DEFAULT_UNAVAILABLE: u16 = 503;

impl Status {
    /// No pools yet, not draining. `unavailable_status_code` is what a failed
    /// check answers (RoadRunner's default is 503); the config has validated it,
    /// and a code outside 200..=599 falls back to 503 with a warning.
    pub fn new(unavailable_status_code: u16) -> Status {
        let unavailable = match unavailable_status_code {
            200..=599 => unavailable_status_code,
            other => {
                tracing::warn!(
                    code = other,
                    "status.unavailable_status_code must be from 200 to 599; using 503"
                );
                DEFAULT_UNAVAILABLE
            }
        };
        Status {
            inner: Arc::new(Inner {
                unavailable,
                pools: Mutex::new(Vec::new()),
                draining: AtomicBool::new(false),
            }),
        }
    }

    /// Reports on a pool under its name. A pool with the same name as one already
    /// added replaces it.
    pub fn add_pool(&self, pool: Pool) {
        let mut pools = lock(&self.inner.pools);
        match pools.iter_mut().find(|p| p.name() == pool.name()) {
            Some(old) => *old = pool,
            None => pools.push(pool),
        }
    }

    /// Marks the server as draining (shutting down): `/ready` fails from now on,
    /// `/health` is unchanged.
    pub fn set_draining(&self, draining: bool) {
        self.inner.draining.store(draining, Ordering::Release);
    }

    /// Whether the server is draining.
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::Acquire)
    }

    /// The code a failed check answers.
    pub fn unavailable_status_code(&self) -> u16 {
        self.inner.unavailable
    }

    /// Binds `address` (`host:port`, or `:port` for every interface). Errors name
    /// `status.address`.
    pub async fn bind(&self, address: &str) -> Result<StatusServer, StatusError> {
        bind(address, self.clone()).await
    }

    /// Checks the named pools (all of them when `plugins` is empty).
    pub fn check<S: AsRef<str>>(&self, probe: Probe, plugins: &[S]) -> Report {
        let pools: Vec<Pool> = lock(&self.inner.pools).clone();
        let mut names: Vec<&str> = Vec::new();
        if plugins.is_empty() {
            names.extend(pools.iter().map(|p| p.name()));
        } else {
            for p in plugins {
                if !names.contains(&p.as_ref()) {
                    names.push(p.as_ref());
                }
            }
        }
        let draining = self.is_draining();
        let unavailable = self.inner.unavailable;
        let mut status_code = 200;
        let plugins: Vec<PluginStatus> = names
            .iter()
            .map(|&name| {
                let (code, error_message) = match pools.iter().find(|p| p.name() == name) {
                    None => {
                        status_code = 404;
                        let known: Vec<&str> = pools.iter().map(|p| p.name()).collect();
                        (
                            404,
                            format!(
                                "no plugin named {name:?} reports status; known: {}",
                                if known.is_empty() {
                                    "none".to_string()
                                } else {
                                    known.join(", ")
                                }
                            ),
                        )
                    }
                    Some(pool) => match pool_problem(pool, probe, draining) {
                        None => (200, String::new()),
                        Some(problem) => {
                            if status_code == 200 {
                                status_code = unavailable;
                            }
                            (unavailable, problem)
                        }
                    },
                };
                PluginStatus {
                    plugin_name: name.to_string(),
                    error_message,
                    status_code: code,
                }
            })
            .collect();
        Report {
            status_code,
            plugins,
        }
    }
}

/// What keeps a pool from passing `probe`, or `None` when it passes.
fn pool_problem(pool: &Pool, probe: Probe, draining: bool) -> Option<String> {
    if probe == Probe::Ready && draining {
        return Some("the server is shutting down and takes no new traffic".into());
    }
    if pool.config().debug {
        // A debug pool keeps no workers: it spawns one per job.
        return None;
    }
    let workers = pool.workers();
    let serving = |s: State| match probe {
        Probe::Health => matches!(s, State::Ready | State::Working | State::Draining),
        Probe::Ready => s == State::Ready,
    };
    if workers.iter().any(|w| serving(w.state)) {
        return None;
    }
    let busy = workers
        .iter()
        .filter(|w| matches!(w.state, State::Working | State::Draining))
        .count();
    Some(match probe {
        Probe::Ready if busy > 0 => {
            format!("no worker is ready: all {busy} are busy")
        }
        _ => format!(
            "no worker is ready or working ({} in the pool)",
            workers.len()
        ),
    })
}

/// Why the status endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The listen address is taken or invalid.
    #[error("cannot listen on status.address {address}: {source}; use a free host:port such as 127.0.0.1:2114, or :2114 for every interface")]
    Bind {
        /// The address as configured.
        address: String,
        /// The OS error.
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks against a status with no pools: only the shape of the answer.
    fn check(probe: Probe, plugins: &[&str], draining: bool, want: (u16, &[(&str, u16)])) {
        let status = Status::new(503);
        status.set_draining(draining);
        let report = status.check(probe, plugins);
        let got: Vec<(&str, u16)> = report
            .plugins
            .iter()
            .map(|p| (p.plugin_name.as_str(), p.status_code))
            .collect();
        assert_eq!(
            (report.status_code, &got[..]),
            want,
            "{probe:?} {plugins:?} draining={draining}"
        );
    }

    #[test]
    fn checks_without_pools() {
        // Nothing to check passes; unknown plugins are 404, deduplicated, in order.
        check(Probe::Health, &[], false, (200, &[]));
        check(Probe::Ready, &[], true, (200, &[]));
        check(Probe::Health, &["http"], false, (404, &[("http", 404)]));
        check(
            Probe::Ready,
            &["http", "jobs", "http"],
            false,
            (404, &[("http", 404), ("jobs", 404)]),
        );
    }

    #[test]
    fn unknown_plugin_message_names_the_known_ones() {
        let report = Status::default().check(Probe::Health, &["htp"]);
        assert_eq!(
            report.plugins[0].error_message,
            "no plugin named \"htp\" reports status; known: none"
        );
    }

    #[test]
    fn unavailable_code_is_kept_or_defaulted() {
        for (given, kept) in [(503, 503), (500, 500), (200, 200), (0, 503), (999, 503)] {
            assert_eq!(
                Status::new(given).unavailable_status_code(),
                kept,
                "{given}"
            );
        }
    }

    #[test]
    fn json_shape_is_roadrunners() {
        let s = PluginStatus {
            plugin_name: "http".into(),
            error_message: String::new(),
            status_code: 200,
        };
        assert_eq!(
            serde_json::to_string(&[s]).ok().as_deref(),
            Some(r#"[{"plugin_name":"http","error_message":"","status_code":200}]"#)
        );
    }
}
