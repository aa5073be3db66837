//! Queue drivers, one module each, and the table that opens them by name.

pub mod amqp;
pub mod beanstalk;
pub mod local;
pub mod nats;
pub mod redis;

use std::sync::Arc;

use crate::driver::{Driver, OpenArgs};
use crate::JobsError;

/// Opens the driver a pipeline names (`courser_config::JOB_DRIVERS`).
pub async fn open(args: OpenArgs<'_>) -> Result<Arc<dyn Driver>, JobsError> {
    match args.pipeline.driver.as_str() {
        "memory" => local::open_memory(args).await,
        "boltdb" => local::open_boltdb(args).await,
        "redis" => redis::open(args).await,
        "amqp" => amqp::open(args).await,
        "beanstalk" => beanstalk::open(args).await,
        "nats" => nats::open(args).await,
        other => Err(JobsError::Other(format!(
            "jobs.pipelines.{}.driver: the {other} driver is not built into this Courser",
            args.pipeline.name
        ))),
    }
}
