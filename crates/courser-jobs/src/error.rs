//! What can go wrong in the jobs plugin and its drivers.

/// A jobs failure; the message says what, where and what to do.
#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    /// A push or call named a pipeline that does not exist.
    #[error("no such pipeline: {0:?}; declare it under jobs.pipelines or with jobs.Declare")]
    NoSuchPipeline(String),
    /// A job without an id.
    #[error(
        "a job must have an id (PHP sets a uuid4); job {name:?} for pipeline {pipeline:?} has none"
    )]
    EmptyId {
        /// The job's name.
        name: String,
        /// Its pipeline.
        pipeline: String,
    },
    /// A payload over the limit.
    #[error("job {id} is {size} bytes, over the {limit}-byte limit of pipeline {pipeline}")]
    TooLarge {
        /// The job id.
        id: String,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
        /// Its pipeline.
        pipeline: String,
    },
    /// A pipeline is declared twice.
    #[error("pipeline {0:?} already exists")]
    Exists(String),
    /// The config of a pipeline is wrong.
    #[error(transparent)]
    Config(#[from] courser_config::ConfigError),
    /// A broker refused or failed an operation.
    #[error("{driver} pipeline {pipeline}: {what}: {detail}")]
    Broker {
        /// The driver.
        driver: &'static str,
        /// The pipeline.
        pipeline: String,
        /// What was being done ("connecting to amqp://…", "publishing job X").
        what: String,
        /// The broker's error text.
        detail: String,
    },
    /// An operation took longer than `jobs.timeout`.
    #[error("{driver} pipeline {pipeline}: {what} took longer than jobs.timeout ({secs} s); is the broker up?")]
    Timeout {
        /// The driver.
        driver: &'static str,
        /// The pipeline.
        pipeline: String,
        /// What was being done.
        what: String,
        /// The timeout.
        secs: u64,
    },
    /// The plugin is stopping.
    #[error("the jobs plugin is stopping and takes no new jobs")]
    Stopping,
}

impl JobsError {
    /// A broker error for `pipeline`.
    pub fn broker(
        driver: &'static str,
        pipeline: &str,
        what: impl Into<String>,
        detail: impl std::fmt::Display,
    ) -> JobsError {
        JobsError::Broker {
            driver,
            pipeline: pipeline.to_string(),
            what: what.into(),
            detail: detail.to_string(),
        }
    }
}
