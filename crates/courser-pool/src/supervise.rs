//! The maintainer task: keeps the pool at size, supervises limits every
//! `watch_tick`, and reacts to worker exits.

use crate::{lock, Inner, RestartReason, State};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::mpsc;

pub(crate) async fn maintain(inner: Arc<Inner>, mut exits: mpsc::UnboundedReceiver<u32>) {
    let mut tick = tokio::time::interval(inner.cfg.supervisor.watch_tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = inner.kick.notified() => {}
            _ = tick.tick() => supervise(&inner),
            pid = exits.recv() => match pid {
                Some(pid) => on_exit(&inner, pid),
                None => return,
            },
        }
        if inner.is_stopping() {
            // Drain exit notices so stopped workers leave the table.
            while let Ok(pid) = exits.try_recv() {
                on_exit(&inner, pid);
            }
            if lock(&inner.workers).is_empty() {
                return;
            }
            continue;
        }
        ensure(&inner);
    }
}

fn on_exit(inner: &Arc<Inner>, pid: u32) {
    let Some(w) = lock(&inner.workers).remove(&pid) else {
        return;
    };
    // A worker that died during a job is counted by the job's failure path.
    let busy = w.job_running_for().is_some() || w.last_state() == State::Working;
    let expected =
        busy || matches!(w.last_state(), State::Stopping | State::Invalid) || inner.is_stopping();
    if !expected {
        let exit = w
            .exit()
            .map(|e| e.to_string())
            .unwrap_or_else(|| "unknown status".into());
        let stderr = w.stderr_tail();
        inner.restart(RestartReason::Crash);
        if w.jobs() == 0 && w.started.elapsed() < QUICK_DEATH {
            // Died right after boot without running a job: part of a crash loop.
            inner.note_crash_loop();
        }
        tracing::warn!(pool = %inner.name, pid, exit = %exit, stderr = %last_line(&stderr), "worker exited while idle; replacing it");
    }
    inner.sweep_idle();
    inner.settled.notify_waiters();
}

/// A worker that dies this soon after spawning, without running a job, counts as a
/// failed start for the crash-loop backoff.
pub(crate) const QUICK_DEATH: std::time::Duration = std::time::Duration::from_secs(2);

fn last_line(s: &str) -> &str {
    s.lines().last().unwrap_or("")
}

/// Spawns workers until active + spawning reaches the target. While workers keep
/// failing to start, only one spawn runs at a time (each after a backoff).
pub(crate) fn ensure(inner: &Arc<Inner>) {
    let target = inner.target();
    let active = inner.count_active();
    let spawning = inner.spawning();
    let mut need = target.saturating_sub(active + spawning);
    if inner.failing() {
        need = need.min(usize::from(spawning == 0));
    }
    for _ in 0..need {
        inner.spawn_one();
    }
}

/// Marks workers past ttl, idle_ttl or the memory limit as draining (their
/// replacement is spawned first), and removes idle dynamic workers.
fn supervise(inner: &Arc<Inner>) {
    let sup = &inner.cfg.supervisor;
    let workers: Vec<_> = lock(&inner.workers).values().cloned().collect();
    for w in &workers {
        let state = w.state();
        if !matches!(state, State::Ready | State::Working) {
            continue;
        }
        let reason = if sup.ttl.is_some_and(|t| w.started.elapsed() >= t) {
            Some(RestartReason::Ttl)
        } else if state == State::Ready && sup.idle_ttl.is_some_and(|t| w.idle_for() >= t) {
            Some(RestartReason::IdleTtl)
        } else if sup
            .max_worker_memory
            .is_some_and(|mb| w.rss_bytes().unwrap_or(0) > mb * 1024 * 1024)
        {
            Some(RestartReason::Memory)
        } else {
            None
        };
        if let Some(r) = reason {
            w.set_state(State::Draining);
            inner.restart(r);
            tracing::info!(pool = %inner.name, pid = w.pid, reason = r.as_str(), rss = w.rss_bytes().unwrap_or(0), "replacing worker (make-before-break)");
        }
    }
    if let Some(d) = &inner.cfg.dynamic_allocator {
        let extra = inner.extra.load(Ordering::Relaxed);
        if extra > 0 {
            let mut removed = 0;
            for w in &workers {
                if removed == extra {
                    break;
                }
                if w.state() == State::Ready && w.idle_for() >= d.idle_timeout {
                    w.set_state(State::Stopping);
                    removed += 1;
                }
            }
            if removed > 0 {
                inner.extra.fetch_sub(removed, Ordering::Relaxed);
                tracing::info!(pool = %inner.name, removed, "removed idle dynamic workers");
                inner.sweep_idle();
            }
        }
    }
    inner.sweep_idle();
}
