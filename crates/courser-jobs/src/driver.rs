//! The seam between the jobs plugin and a queue driver.
//!
//! A driver owns one pipeline's queue on its broker. The plugin calls
//! [`Driver::push`] for every job pushed over RPC, [`Driver::resume`] to start
//! consuming (handing each message to the [`Sink`] as a [`Delivery`]),
//! [`Driver::pause`] to stop taking new messages, and [`Driver::stop`] at
//! shutdown once in-flight jobs are settled. Each delivery carries an
//! [`Acker`] that settles that one message on the broker.
//!
//! Contract every driver keeps (at-least-once):
//! - `push` returns `Ok` only once the broker (or disk) holds the job.
//! - A delivery that is neither acked nor nacked (the server died) is
//!   delivered again later: unacked broker messages, pending stream entries,
//!   reserved beanstalk jobs and stored boltdb rows all come back.
//! - `nack(requeue = true)` makes the message deliverable again soon;
//!   `nack(false)` drops it (or dead-letters it where the broker does).
//! - Requeue with a delay or new headers is done by the plugin as
//!   `push(copy with delay)` then `ack(original)`: a crash in between gives a
//!   duplicate, never a loss.

use async_trait::async_trait;
use std::sync::Arc;

use crate::job::Job;
use crate::queue::PriorityQueue;
use crate::JobsError;

/// One message taken from a broker, on its way to a PHP worker.
pub struct Delivery {
    /// The job, with `options.pipeline` set to the pipeline it came from.
    pub job: Job,
    /// `queue` in the worker context (the queue, stream, tube or subject), if any.
    pub queue: Option<String>,
    /// Settles this message on the broker.
    pub acker: Box<dyn Acker>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("job", &self.job)
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

/// Settles one delivered message.
#[async_trait]
pub trait Acker: Send + Sync {
    /// The job is done: remove it from the broker.
    async fn ack(self: Box<Self>) -> Result<(), JobsError>;
    /// The job failed: deliver it again (`requeue`) or drop it.
    async fn nack(self: Box<Self>, requeue: bool) -> Result<(), JobsError>;
}

/// Counts a driver reports for `jobs.Stat` (spec §4.4).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueStat {
    /// The broker-side name (queue, stream, tube, subject).
    pub queue: String,
    /// Jobs waiting in the broker and ready to run (where the broker tells).
    pub ready_jobs: i64,
    /// Jobs waiting for their delay.
    pub delayed: i64,
    /// Jobs taken from the broker and not yet settled.
    pub reserved: i64,
}

/// One pipeline's queue on a broker.
#[async_trait]
pub trait Driver: Send + Sync + 'static {
    /// RoadRunner's name of the driver (`memory`, `amqp`, …), as `jobs.Stat` reports it.
    fn kind(&self) -> &'static str;

    /// Stores one job; `Ok` once the broker holds it.
    async fn push(&self, job: Job) -> Result<(), JobsError>;

    /// Stores several jobs; the default pushes them one by one.
    async fn push_batch(&self, jobs: Vec<Job>) -> Result<(), JobsError> {
        for j in jobs {
            self.push(j).await?;
        }
        Ok(())
    }

    /// Starts (or restarts) handing messages to `sink`. Idempotent.
    async fn resume(&self, sink: Sink) -> Result<(), JobsError>;

    /// Stops taking new messages; deliveries already handed out stay ackable.
    async fn pause(&self) -> Result<(), JobsError>;

    /// Final stop at shutdown or `jobs.Destroy`: pause and release the
    /// connection. Called after in-flight jobs were settled (or given up on:
    /// the broker then redelivers them).
    async fn stop(&self) -> Result<(), JobsError>;

    /// Queue counts for `jobs.Stat`.
    async fn stat(&self) -> Result<QueueStat, JobsError>;
}

/// Where a driver hands its messages: the plugin's priority queue that the
/// pollers take from. Cheap to clone.
#[derive(Clone)]
pub struct Sink {
    pub(crate) queue: Arc<PriorityQueue>,
    pub(crate) priority: i64,
}

impl Sink {
    /// Hands one message over; waits while the queue is full
    /// (`jobs.pipeline_size`). Fails when the plugin is stopping, giving the
    /// delivery back so the driver can leave it unacked.
    pub async fn deliver(&self, d: Delivery) -> Result<(), Delivery> {
        let prio = match d.job.options.priority {
            0 => self.priority,
            p => p,
        };
        self.queue.push(prio, d).await
    }
}

/// The reading end of [`sink_pair`].
pub struct SinkReader {
    queue: Arc<PriorityQueue>,
}

impl SinkReader {
    /// The next delivery, highest priority first; `None` after [`SinkReader::close`].
    pub async fn next(&self) -> Option<Delivery> {
        self.queue.pop().await
    }

    /// Deliveries waiting.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether none is waiting.
    pub fn is_empty(&self) -> bool {
        self.queue.len() == 0
    }

    /// Closes the queue and returns what was waiting.
    pub fn close(&self) -> Vec<Delivery> {
        self.queue.close()
    }
}

/// A sink and its reader holding up to `capacity` deliveries, for driver tests
/// and tools; the plugin makes its own. `priority` stands in for a job's 0.
pub fn sink_pair(capacity: usize, priority: i64) -> (Sink, SinkReader) {
    let queue = Arc::new(PriorityQueue::new(capacity));
    (
        Sink {
            queue: queue.clone(),
            priority,
        },
        SinkReader { queue },
    )
}

/// Everything a driver's `open` gets.
#[derive(Debug, Clone)]
pub struct OpenArgs<'a> {
    /// The pipeline's config (name, driver, priority, driver keys).
    pub pipeline: &'a courser_config::PipelineConfig,
    /// The top-level broker sections.
    pub connections: &'a courser_config::Connections,
    /// `jobs.timeout`: the bound on every broker operation the plugin awaits.
    pub timeout: std::time::Duration,
}
