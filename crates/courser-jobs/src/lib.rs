//! The jobs plugin (RoadRunner's `jobs`): pipelines on queue drivers, fed over
//! RPC (`jobs.v1`) and consumed by a pool of PHP workers (`RR_MODE=jobs`).

pub mod driver;
pub mod drivers;
mod error;
pub mod job;
pub mod proto;
mod queue;

pub use driver::{sink_pair, Acker, Delivery, Driver, OpenArgs, QueueStat, Sink, SinkReader};
pub use error::JobsError;
pub use job::{Answer, Headers, Job, JobOptions};
mod metrics;
mod plugin;

pub use plugin::{JobsFactory, JobsPlugin};
