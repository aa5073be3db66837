//! RoadRunner's `jobs.v1` protobuf messages (spec §4.4), written with prost's
//! derive so no protoc is needed. Field numbers are RoadRunner's.

use std::collections::HashMap;

/// `jobs.v1.PushRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PushRequest {
    /// The job.
    #[prost(message, optional, tag = "1")]
    pub job: Option<Job>,
}

/// `jobs.v1.PushBatchRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PushBatchRequest {
    /// The jobs.
    #[prost(message, repeated, tag = "1")]
    pub jobs: Vec<Job>,
}

/// `jobs.v1.Pipelines`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Pipelines {
    /// Pipeline names.
    #[prost(string, repeated, tag = "1")]
    pub pipelines: Vec<String>,
}

/// `jobs.v1.DeclareRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DeclareRequest {
    /// `name`, `driver`, `priority` and the driver's keys.
    #[prost(map = "string, string", tag = "1")]
    pub pipeline: HashMap<String, String>,
}

/// `jobs.v1.Job`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Job {
    /// The job's name.
    #[prost(string, tag = "1")]
    pub job: String,
    /// Its id.
    #[prost(string, tag = "2")]
    pub id: String,
    /// The payload.
    #[prost(bytes = "bytes", tag = "3")]
    pub payload: bytes::Bytes,
    /// Headers.
    #[prost(map = "string, message", tag = "4")]
    pub headers: HashMap<String, HeaderValue>,
    /// Options.
    #[prost(message, optional, tag = "5")]
    pub options: Option<Options>,
}

/// `jobs.v1.HeaderValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HeaderValue {
    /// The values.
    #[prost(string, repeated, tag = "1")]
    pub value: Vec<String>,
}

/// `jobs.v1.Options`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Options {
    /// Priority.
    #[prost(int64, tag = "1")]
    pub priority: i64,
    /// Pipeline.
    #[prost(string, tag = "2")]
    pub pipeline: String,
    /// Delay in seconds.
    #[prost(int64, tag = "3")]
    pub delay: i64,
    /// Auto-ack.
    #[prost(bool, tag = "6")]
    pub auto_ack: bool,
    /// Kafka topic.
    #[prost(string, tag = "7")]
    pub topic: String,
    /// Kafka metadata.
    #[prost(string, tag = "8")]
    pub metadata: String,
    /// Kafka offset.
    #[prost(int64, tag = "9")]
    pub offset: i64,
    /// Kafka partition.
    #[prost(int32, tag = "10")]
    pub partition: i32,
}

/// `jobs.v1.Stats`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Stats {
    /// One per pipeline.
    #[prost(message, repeated, tag = "1")]
    pub stats: Vec<Stat>,
}

/// `jobs.v1.Stat`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Stat {
    /// Pipeline name.
    #[prost(string, tag = "1")]
    pub pipeline: String,
    /// Driver name.
    #[prost(string, tag = "2")]
    pub driver: String,
    /// Queue (or stream, tube, subject).
    #[prost(string, tag = "3")]
    pub queue: String,
    /// Jobs being run by workers.
    #[prost(int64, tag = "4")]
    pub active: i64,
    /// Jobs waiting for their delay.
    #[prost(int64, tag = "5")]
    pub delayed: i64,
    /// Jobs reserved from the broker, not yet acked.
    #[prost(int64, tag = "6")]
    pub reserved: i64,
    /// Whether the pipeline is consuming.
    #[prost(bool, tag = "7")]
    pub ready: bool,
    /// Pipeline priority.
    #[prost(uint64, tag = "8")]
    pub priority: u64,
}
