//! The `informer` service's wire shapes (spec 4.2): `informer.List` takes `true`
//! and returns plugin names; `informer.Workers` takes a plugin name (`"http"`) and
//! returns a [`WorkerList`]. Field names and order follow RoadRunner's JSON
//! exactly (vector `rpc_response_informer_Workers`).

use serde::{Deserialize, Serialize};

/// `informer.List`: names of the plugins that have workers.
pub const LIST: &str = "informer.List";
/// `informer.Workers`: the workers of one plugin.
pub const WORKERS: &str = "informer.Workers";

/// One worker process, as `informer.Workers` reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// The process id.
    pub pid: i64,
    /// RoadRunner's numeric state (see [`status_str`]).
    pub status: i64,
    /// Jobs the worker has run.
    #[serde(rename = "numExecs")]
    pub num_execs: u64,
    /// When the worker was started, in nanoseconds since the Unix epoch.
    pub created: i64,
    /// Resident memory in bytes.
    #[serde(rename = "memoryUsage")]
    pub memory_usage: u64,
    /// CPU use in percent.
    #[serde(rename = "CPUPercent")]
    pub cpu_percent: f64,
    /// The worker command line.
    pub command: String,
    /// The state as text (`ready`, `working`, ...).
    #[serde(rename = "statusStr")]
    pub status_str: String,
}

/// The reply of `informer.Workers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct WorkerList {
    /// The workers, in the pool's order.
    pub workers: Vec<WorkerInfo>,
}

/// RoadRunner's text for a numeric worker state (spec 4.2). RoadRunner v2025
/// has no text for 12 and prints "undefined"; Courser names it.
pub fn status_str(status: i64) -> &'static str {
    match status {
        0 => "inactive",
        1 => "ready",
        2 => "working",
        3 => "invalid",
        4 => "stopping",
        5 => "stopped",
        6 => "destroyed",
        7 => "maxJobsReached",
        8 => "errored",
        9 => "idleTTLReached",
        10 => "ttlReached",
        11 => "maxMemoryReached",
        12 => "execTTLReached",
        _ => "undefined",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape_matches_roadrunner() {
        let list = WorkerList {
            workers: vec![WorkerInfo {
                pid: 4242,
                status: 1,
                num_execs: 7,
                created: 1_700_000_000_000_000_000,
                memory_usage: 20_971_520,
                cpu_percent: 0.5,
                command: String::new(),
                status_str: status_str(1).into(),
            }],
        };
        let json = serde_json::to_string(&list).expect("encode");
        assert_eq!(
            json,
            r#"{"workers":[{"pid":4242,"status":1,"numExecs":7,"created":1700000000000000000,"memoryUsage":20971520,"CPUPercent":0.5,"command":"","statusStr":"ready"}]}"#
        );
        let back: WorkerList = serde_json::from_str(&json).expect("decode");
        assert_eq!(back, list);
    }

    #[test]
    fn status_texts() {
        assert_eq!(status_str(2), "working");
        assert_eq!(status_str(9), "idleTTLReached");
        assert_eq!(status_str(99), "undefined");
    }
}
