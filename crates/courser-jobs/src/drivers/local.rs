//! The `memory` and `boltdb` drivers: a queue inside Courser.
//!
//! Both keep ready jobs in a priority heap and delayed jobs in a heap by
//! ready time, and hand at most `prefetch` unsettled jobs to the plugin.
//! `boltdb` also writes every job to an embedded store ([redb], one file,
//! crash-safe transactions) before `push` returns and deletes it on ack, so
//! jobs pushed and not acked before a crash (even `kill -9`) are delivered
//! after the restart. RoadRunner's boltdb driver uses bbolt; the key is the
//! same, the file format is redb's (a RoadRunner `.db` file is not read).
//!
//! Disk writes go through one writer thread that commits whatever is queued
//! in one transaction, so a batch of pushes or a burst of acks costs one
//! fsync, not one each.

use async_trait::async_trait;
use redb::{ReadableTable, TableDefinition};
use std::collections::BinaryHeap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{oneshot, Notify};

use crate::driver::{Acker, Delivery, Driver, OpenArgs, QueueStat, Sink};
use crate::job::Job;
use crate::JobsError;

const TABLE: TableDefinition<u64, &[u8]> = TableDefinition::new("jobs");

/// Opens a `memory` pipeline.
pub async fn open_memory(args: OpenArgs<'_>) -> Result<Arc<dyn Driver>, JobsError> {
    Ok(Arc::new(Local::new("memory", &args, None)?))
}

/// Opens a `boltdb` pipeline: `config.file` (default `rr.db`, as RoadRunner;
/// relative to the working directory).
pub async fn open_boltdb(args: OpenArgs<'_>) -> Result<Arc<dyn Driver>, JobsError> {
    let file = args
        .pipeline
        .config
        .string("file")?
        .unwrap_or_else(|| "rr.db".to_string());
    let path = PathBuf::from(&file);
    let name = args.pipeline.name.clone();
    let (store, rows) = tokio::task::spawn_blocking(move || Store::open(path))
        .await
        .map_err(|e| JobsError::broker("boltdb", &name, format!("opening {file}"), e))?
        .map_err(|e| {
            JobsError::broker(
                "boltdb",
                &args.pipeline.name,
                format!("opening {file} (config.file)"),
                e,
            )
        })?;
    let local = Local::new("boltdb", &args, Some(store))?;
    let restored = rows.len();
    {
        let mut st = local.inner.state();
        for (key, not_before, job) in rows {
            st.seq = st.seq.max(key + 1);
            st.insert(key, job, not_before, local.inner.priority);
        }
    }
    if restored > 0 {
        tracing::info!(
            pipeline = %local.inner.name,
            jobs = restored,
            "boltdb: jobs from before the last stop are queued again"
        );
    }
    Ok(Arc::new(local))
}

struct Ready {
    priority: i64,
    key: u64,
    job: Job,
}

impl PartialEq for Ready {
    fn eq(&self, o: &Self) -> bool {
        self.priority == o.priority && self.key == o.key
    }
}
impl Eq for Ready {}
impl PartialOrd for Ready {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Ready {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        o.priority
            .cmp(&self.priority)
            .then_with(|| o.key.cmp(&self.key))
    }
}

struct Delayed {
    at: Instant,
    key: u64,
    job: Job,
}

impl PartialEq for Delayed {
    fn eq(&self, o: &Self) -> bool {
        self.at == o.at && self.key == o.key
    }
}
impl Eq for Delayed {}
impl PartialOrd for Delayed {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Delayed {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        o.at.cmp(&self.at).then_with(|| o.key.cmp(&self.key))
    }
}

#[derive(Default)]
struct State {
    ready: BinaryHeap<Ready>,
    delayed: BinaryHeap<Delayed>,
    in_flight: usize,
    seq: u64,
    /// The feeder task of the current `resume`; `None` while paused.
    feeder: Option<tokio::task::JoinHandle<()>>,
}

impl State {
    /// Queues a job that becomes ready at `not_before_ms` (unix ms; 0 = now).
    fn insert(&mut self, key: u64, job: Job, not_before_ms: u64, pipeline_priority: i64) {
        let now_ms = unix_ms();
        if not_before_ms > now_ms {
            let at = Instant::now() + Duration::from_millis(not_before_ms - now_ms);
            self.delayed.push(Delayed { at, key, job });
        } else {
            let priority = match job.options.priority {
                0 => pipeline_priority,
                p => p,
            };
            self.ready.push(Ready { priority, key, job });
        }
    }

    /// Moves delayed jobs whose time has come to the ready heap.
    fn promote(&mut self, now: Instant, pipeline_priority: i64) {
        while self.delayed.peek().is_some_and(|d| d.at <= now) {
            if let Some(d) = self.delayed.pop() {
                self.insert(d.key, d.job, 0, pipeline_priority);
            }
        }
    }
}

struct Inner {
    kind: &'static str,
    name: String,
    priority: i64,
    prefetch: usize,
    state: Mutex<State>,
    wake: Notify,
    store: Option<Store>,
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn settle(&self, key: u64, requeue: Option<Job>) {
        let mut st = self.state();
        st.in_flight = st.in_flight.saturating_sub(1);
        match requeue {
            Some(job) => {
                let prio = self.priority;
                st.insert(key, job, 0, prio);
            }
            None => {
                if let Some(store) = &self.store {
                    store.delete(key);
                }
            }
        }
        drop(st);
        self.wake.notify_one();
    }
}

/// See the module docs.
pub struct Local {
    inner: Arc<Inner>,
}

impl Local {
    fn new(
        kind: &'static str,
        args: &OpenArgs<'_>,
        store: Option<Store>,
    ) -> Result<Local, JobsError> {
        let prefetch = args
            .pipeline
            .config
            .uint("prefetch")?
            .filter(|n| *n > 0)
            .map(|n| n as usize)
            .unwrap_or(100_000);
        Ok(Local {
            inner: Arc::new(Inner {
                kind,
                name: args.pipeline.name.clone(),
                priority: args.pipeline.priority,
                prefetch,
                state: Mutex::new(State::default()),
                wake: Notify::new(),
                store,
            }),
        })
    }

    async fn store_rows(&self, jobs: &[(u64, Job)]) -> Result<(), JobsError> {
        let Some(store) = &self.inner.store else {
            return Ok(());
        };
        let rows = jobs
            .iter()
            .map(|(key, job)| {
                let not_before = match job.options.delay {
                    d if d > 0 => unix_ms() + (d as u64).saturating_mul(1000),
                    _ => 0,
                };
                let mut v = not_before.to_be_bytes().to_vec();
                v.extend_from_slice(&job.encode());
                (*key, v)
            })
            .collect();
        store.insert(rows).await.map_err(|e| {
            JobsError::broker(self.inner.kind, &self.inner.name, "writing jobs to disk", e)
        })
    }

    async fn push_all(&self, jobs: Vec<Job>) -> Result<(), JobsError> {
        let keyed: Vec<(u64, Job)> = {
            let mut st = self.inner.state();
            jobs.into_iter()
                .map(|j| {
                    let k = st.seq;
                    st.seq += 1;
                    (k, j)
                })
                .collect()
        };
        self.store_rows(&keyed).await?;
        let mut st = self.inner.state();
        for (key, job) in keyed {
            let not_before = match job.options.delay {
                d if d > 0 => unix_ms() + (d as u64).saturating_mul(1000),
                _ => 0,
            };
            st.insert(key, job, not_before, self.inner.priority);
        }
        drop(st);
        self.inner.wake.notify_one();
        Ok(())
    }
}

/// Settles one job. Dropped unsettled (the delivery was lost inside the
/// plugin, e.g. a pause aborted it mid-hand-over), it puts the job back.
struct LocalAcker {
    inner: Arc<Inner>,
    key: u64,
    job: Option<Job>,
}

impl Drop for LocalAcker {
    fn drop(&mut self) {
        if let Some(job) = self.job.take() {
            self.inner.settle(self.key, Some(job));
        }
    }
}

#[async_trait]
impl Acker for LocalAcker {
    async fn ack(mut self: Box<Self>) -> Result<(), JobsError> {
        if self.job.take().is_some() {
            self.inner.settle(self.key, None);
        }
        Ok(())
    }

    async fn nack(mut self: Box<Self>, requeue: bool) -> Result<(), JobsError> {
        if let Some(job) = self.job.take() {
            self.inner.settle(self.key, requeue.then_some(job));
        }
        Ok(())
    }
}

async fn feed(inner: Arc<Inner>, sink: Sink) {
    loop {
        let (next, wait_until) = {
            let mut st = inner.state();
            st.promote(Instant::now(), inner.priority);
            if st.in_flight < inner.prefetch {
                match st.ready.pop() {
                    Some(r) => {
                        st.in_flight += 1;
                        (Some(r), None)
                    }
                    None => (None, st.delayed.peek().map(|d| d.at)),
                }
            } else {
                (None, None)
            }
        };
        match next {
            Some(r) => {
                let mut job = r.job.clone();
                job.options.pipeline = inner.name.clone();
                let d = Delivery {
                    job,
                    queue: Some(inner.name.clone()),
                    acker: Box::new(LocalAcker {
                        inner: inner.clone(),
                        key: r.key,
                        job: Some(r.job),
                    }),
                };
                if sink.deliver(d).await.is_err() {
                    // The plugin is closing; the dropped acker put the job back.
                    return;
                }
            }
            None => {
                let notified = inner.wake.notified();
                match wait_until {
                    Some(at) => {
                        tokio::select! {
                            _ = notified => {}
                            _ = tokio::time::sleep_until(at.into()) => {}
                        }
                    }
                    None => notified.await,
                }
            }
        }
    }
}

#[async_trait]
impl Driver for Local {
    fn kind(&self) -> &'static str {
        self.inner.kind
    }

    async fn push(&self, job: Job) -> Result<(), JobsError> {
        self.push_all(vec![job]).await
    }

    async fn push_batch(&self, jobs: Vec<Job>) -> Result<(), JobsError> {
        self.push_all(jobs).await
    }

    async fn resume(&self, sink: Sink) -> Result<(), JobsError> {
        let mut st = self.inner.state();
        if st.feeder.as_ref().is_some_and(|h| !h.is_finished()) {
            return Ok(());
        }
        st.feeder = Some(tokio::spawn(feed(self.inner.clone(), sink)));
        Ok(())
    }

    async fn pause(&self) -> Result<(), JobsError> {
        if let Some(h) = self.inner.state().feeder.take() {
            h.abort();
        }
        Ok(())
    }

    async fn stop(&self) -> Result<(), JobsError> {
        self.pause().await?;
        if let Some(store) = &self.inner.store {
            store.flush().await;
        }
        Ok(())
    }

    async fn stat(&self) -> Result<QueueStat, JobsError> {
        let st = self.inner.state();
        Ok(QueueStat {
            queue: self.inner.name.clone(),
            ready_jobs: st.ready.len() as i64,
            delayed: st.delayed.len() as i64,
            reserved: st.in_flight as i64,
        })
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

enum Op {
    Insert(Vec<(u64, Vec<u8>)>, oneshot::Sender<Result<(), String>>),
    Delete(u64),
    Flush(oneshot::Sender<()>),
}

/// The redb file and its writer thread.
struct Store {
    tx: std::sync::mpsc::Sender<Op>,
}

type Rows = Vec<(u64, u64, Job)>;

impl Store {
    /// Opens (or creates) the file and reads every stored job.
    fn open(path: PathBuf) -> Result<(Store, Rows), String> {
        let db = redb::Database::create(&path).map_err(|e| e.to_string())?;
        let mut rows = Vec::new();
        {
            let w = db.begin_write().map_err(|e| e.to_string())?;
            {
                let t = w.open_table(TABLE).map_err(|e| e.to_string())?;
                for entry in t.iter().map_err(|e| e.to_string())? {
                    let (k, v) = entry.map_err(|e| e.to_string())?;
                    let v = v.value();
                    if v.len() < 8 {
                        continue;
                    }
                    let mut nb = [0u8; 8];
                    nb.copy_from_slice(&v[..8]);
                    match Job::decode(&v[8..]) {
                        Ok(job) => rows.push((k.value(), u64::from_be_bytes(nb), job)),
                        Err(e) => tracing::warn!(
                            file = %path.display(),
                            key = k.value(),
                            "boltdb: a stored job cannot be read and is skipped: {e}"
                        ),
                    }
                }
            }
            w.commit().map_err(|e| e.to_string())?;
        }
        let (tx, rx) = std::sync::mpsc::channel::<Op>();
        std::thread::Builder::new()
            .name("courser-boltdb".into())
            .spawn(move || writer(db, rx))
            .map_err(|e| format!("cannot start the writer thread: {e}"))?;
        Ok((Store { tx }, rows))
    }

    async fn insert(&self, rows: Vec<(u64, Vec<u8>)>) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Op::Insert(rows, tx))
            .map_err(|_| "the boltdb writer has stopped".to_string())?;
        rx.await
            .map_err(|_| "the boltdb writer has stopped".to_string())?
    }

    fn delete(&self, key: u64) {
        let _ = self.tx.send(Op::Delete(key));
    }

    async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Op::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

fn writer(db: redb::Database, rx: std::sync::mpsc::Receiver<Op>) {
    while let Ok(first) = rx.recv() {
        let mut ops = vec![first];
        while let Ok(more) = rx.try_recv() {
            ops.push(more);
        }
        let result = (|| -> Result<(), String> {
            let w = db.begin_write().map_err(|e| e.to_string())?;
            {
                let mut t = w.open_table(TABLE).map_err(|e| e.to_string())?;
                for op in &ops {
                    match op {
                        Op::Insert(rows, _) => {
                            for (k, v) in rows {
                                t.insert(*k, v.as_slice()).map_err(|e| e.to_string())?;
                            }
                        }
                        Op::Delete(k) => {
                            t.remove(*k).map_err(|e| e.to_string())?;
                        }
                        Op::Flush(_) => {}
                    }
                }
            }
            w.commit().map_err(|e| e.to_string())
        })();
        if let Err(e) = &result {
            tracing::error!("boltdb: writing to the job store failed: {e}");
        }
        for op in ops {
            match op {
                Op::Insert(_, done) => {
                    let _ = done.send(result.clone());
                }
                Op::Flush(done) => {
                    let _ = done.send(());
                }
                Op::Delete(_) => {}
            }
        }
    }
}
