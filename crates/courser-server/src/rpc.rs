//! The RPC services this server offers (spec section 4): `informer` (workers per
//! plugin), `resetter` (replace a plugin's workers) and `courser.Stop`.

use bytes::Bytes;
use courser_pool::{Pool, State};
use courser_rpc::informer::{WorkerInfo, WorkerList};
use courser_rpc::{Call, Registry};
use futures_util::FutureExt;
use std::sync::Arc;
use std::time::UNIX_EPOCH;
use tokio::sync::mpsc;

/// RoadRunner's numeric worker states, as `informer.Workers` reports them.
fn rr_status(s: State) -> i64 {
    match s {
        State::Starting => 0,
        State::Ready | State::Draining => 1,
        State::Working => 2,
        State::Invalid => 3,
        State::Stopping => 4,
        State::Exited => 5,
    }
}

/// CPU use of a process over its life, in percent, from `/proc`.
fn cpu_percent(pid: u32, age_secs: f64) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may contain spaces) start after ')'.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15; `rest` starts at field 3.
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    if age_secs <= 0.0 {
        0.0
    } else {
        (cpu / age_secs * 100.0 * 100.0).round() / 100.0
    }
}

fn workers(pool: &Pool, command: &str) -> WorkerList {
    let now = std::time::SystemTime::now();
    WorkerList {
        workers: pool
            .workers()
            .into_iter()
            .map(|w| {
                let age = now
                    .duration_since(w.created)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0);
                WorkerInfo {
                    pid: i64::from(w.pid),
                    status: rr_status(w.state),
                    num_execs: w.jobs,
                    created: w
                        .created
                        .duration_since(UNIX_EPOCH)
                        .map(|d| d.as_nanos() as i64)
                        .unwrap_or(0),
                    memory_usage: w.rss,
                    cpu_percent: cpu_percent(w.pid, age),
                    command: command.to_string(),
                    status_str: w.state.as_str().to_string(),
                }
            })
            .collect(),
    }
}

fn json<T: serde::Serialize>(v: &T) -> Result<Bytes, String> {
    serde_json::to_vec(v)
        .map(Bytes::from)
        .map_err(|e| e.to_string())
}

fn plugin_arg(call: &Call) -> Result<String, String> {
    serde_json::from_slice::<String>(&call.body).map_err(|e| {
        format!(
            "{}: the argument must be a plugin name as a JSON string: {e}",
            call.method
        )
    })
}

/// Builds the registry for the running pools. `stop` is told when a client
/// calls `courser.Stop`.
pub(crate) fn registry(
    pools: Vec<Pool>,
    command: String,
    stop: mpsc::UnboundedSender<()>,
) -> Registry {
    let pools = Arc::new(pools);
    let mut r = Registry::default();
    let find = |pools: &Arc<Vec<Pool>>, name: &str| -> Result<Pool, String> {
        pools
            .iter()
            .find(|p| p.name() == name)
            .cloned()
            .ok_or_else(|| {
                format!(
                    "no such plugin: {name} (plugins with workers: {})",
                    pools
                        .iter()
                        .map(|p| p.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
    };
    {
        let pools = pools.clone();
        r.register("informer.List", move |_call| {
            let names: Vec<String> = pools.iter().map(|p| p.name().to_string()).collect();
            async move { json(&names) }.boxed()
        });
    }
    {
        let pools = pools.clone();
        let command = command.clone();
        r.register("informer.Workers", move |call| {
            let result = plugin_arg(&call)
                .and_then(|name| find(&pools, &name))
                .map(|p| workers(&p, &command));
            async move { json(&result?) }.boxed()
        });
    }
    {
        let pools = pools.clone();
        r.register("resetter.List", move |_call| {
            let names: Vec<String> = pools.iter().map(|p| p.name().to_string()).collect();
            async move { json(&names) }.boxed()
        });
    }
    {
        let pools = pools.clone();
        r.register("resetter.Reset", move |call| {
            let pool = plugin_arg(&call).and_then(|name| find(&pools, &name));
            async move {
                let pool = pool?;
                let n = pool.reset().await;
                tracing::info!(plugin = pool.name(), workers = n, "reset over RPC");
                json(&true)
            }
            .boxed()
        });
    }
    r.register("courser.Stop", move |_call| {
        let _ = stop.send(());
        async move { json(&true) }.boxed()
    });
    r
}
