//! The scrape-time collector of pool metrics.

use crate::{lock, names};
use courser_pool::{Pool, RestartReason, State};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

/// Every worker state, in the order they are reported.
const STATES: [State; 7] = [
    State::Starting,
    State::Ready,
    State::Working,
    State::Draining,
    State::Stopping,
    State::Exited,
    State::Invalid,
];

/// Index of a state in [`STATES`]. The match is exhaustive, so a new state fails
/// to compile here instead of going unreported.
fn state_index(s: State) -> usize {
    match s {
        State::Starting => 0,
        State::Ready => 1,
        State::Working => 2,
        State::Draining => 3,
        State::Stopping => 4,
        State::Exited => 5,
        State::Invalid => 6,
    }
}

/// The pools being reported, shared between [`crate::Metrics`] and the collector.
#[derive(Clone, Default)]
pub(crate) struct Pools(Arc<Mutex<Vec<Pool>>>);

impl Pools {
    pub(crate) fn add(&self, pool: Pool) {
        let mut pools = lock(&self.0);
        match pools.iter_mut().find(|p| p.name() == pool.name()) {
            Some(old) => {
                tracing::warn!(pool = %pool.name(), "a pool with this name was already reporting metrics; replacing it");
                *old = pool;
            }
            None => pools.push(pool),
        }
    }

    pub(crate) fn names(&self) -> Vec<String> {
        lock(&self.0).iter().map(|p| p.name().to_string()).collect()
    }

    pub(crate) fn collector(&self) -> PoolCollector {
        PoolCollector(self.clone())
    }
}

/// Reads every pool at scrape time.
pub(crate) struct PoolCollector(Pools);

impl fmt::Debug for PoolCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PoolCollector")
            .field(&self.0.names())
            .finish()
    }
}

/// One pool, read once per scrape so every family sees the same worker table.
struct Reading {
    pool: Pool,
    by_state: [u64; STATES.len()],
    rss: u64,
}

fn saturating_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn gauge(n: u64) -> ConstGauge<i64> {
    ConstGauge::new(saturating_i64(n))
}

impl Collector for PoolCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        // Clone the handles and let go of the lock before reading the pools.
        let pools: Vec<Pool> = lock(&(self.0).0).clone();
        if pools.is_empty() {
            return Ok(());
        }
        let readings: Vec<Reading> = pools
            .into_iter()
            .map(|pool| {
                let mut by_state = [0u64; STATES.len()];
                let mut rss = 0u64;
                for w in pool.workers() {
                    by_state[state_index(w.state)] += 1;
                    rss = rss.saturating_add(w.rss);
                }
                Reading {
                    pool,
                    by_state,
                    rss,
                }
            })
            .collect();

        let mut m =
            enc.encode_descriptor(names::WORKERS, "Workers by state.", None, MetricType::Gauge)?;
        for r in &readings {
            for (state, n) in STATES.iter().zip(r.by_state) {
                let labels = [("pool", r.pool.name()), ("state", state.as_str())];
                gauge(n).encode(m.encode_family(&labels)?)?;
            }
        }

        let mut m = enc.encode_descriptor(
            names::WORKER_MEMORY,
            "Resident memory of the pool's workers, summed.",
            Some(&Unit::Bytes),
            MetricType::Gauge,
        )?;
        for r in &readings {
            gauge(r.rss).encode(m.encode_family(&[("pool", r.pool.name())])?)?;
        }

        let mut m = enc.encode_descriptor(
            names::POOL_QUEUE_DEPTH,
            "Callers waiting for a free worker.",
            None,
            MetricType::Gauge,
        )?;
        for r in &readings {
            let depth = u64::try_from(r.pool.queue_depth()).unwrap_or(u64::MAX);
            gauge(depth).encode(m.encode_family(&[("pool", r.pool.name())])?)?;
        }

        let mut m = enc.encode_descriptor(
            names::JOBS,
            "Jobs by result: ok (a final response), failed, retried (re-run on another worker because the first never started it), rejected (no free worker in time, or the queue was full).",
            None,
            MetricType::Counter,
        )?;
        for r in &readings {
            let s = r.pool.stats();
            for (result, v) in [
                ("ok", &s.jobs_ok),
                ("failed", &s.jobs_failed),
                ("retried", &s.jobs_retried),
                ("rejected", &s.rejected),
            ] {
                let labels = [("pool", r.pool.name()), ("result", result)];
                ConstCounter::new(v.load(Ordering::Relaxed)).encode(m.encode_family(&labels)?)?;
            }
        }

        let mut m = enc.encode_descriptor(
            names::WORKER_SPAWNS,
            "Worker processes started (ok) or that failed to start (failed).",
            None,
            MetricType::Counter,
        )?;
        for r in &readings {
            let s = r.pool.stats();
            for (result, v) in [("ok", &s.spawned), ("failed", &s.spawn_failures)] {
                let labels = [("pool", r.pool.name()), ("result", result)];
                ConstCounter::new(v.load(Ordering::Relaxed)).encode(m.encode_family(&labels)?)?;
            }
        }

        let mut m = enc.encode_descriptor(
            names::WORKER_RESTARTS,
            "Workers replaced, by reason.",
            None,
            MetricType::Counter,
        )?;
        for r in &readings {
            for reason in RestartReason::ALL {
                let labels = [("pool", r.pool.name()), ("reason", reason.as_str())];
                ConstCounter::new(r.pool.stats().restarts(reason))
                    .encode(m.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_in_index_order() {
        for (i, s) in STATES.iter().enumerate() {
            assert_eq!(state_index(*s), i, "{}", s.as_str());
        }
    }
}
