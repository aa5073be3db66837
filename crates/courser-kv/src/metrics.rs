//! Per-storage Prometheus families (`storage="…"` on every series).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

/// The label set.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StorageLabels {
    pub(crate) storage: String,
}

/// The families; cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct KvMetrics {
    pub(crate) hits: Family<StorageLabels, Counter>,
    pub(crate) misses: Family<StorageLabels, Counter>,
    pub(crate) sets: Family<StorageLabels, Counter>,
    pub(crate) evictions: Family<StorageLabels, Counter>,
    pub(crate) errors: Family<StorageLabels, Counter>,
    pub(crate) bytes: Family<StorageLabels, Gauge>,
}

/// The series of one storage.
#[derive(Clone, Default)]
pub(crate) struct StorageMetrics {
    pub(crate) hits: Counter,
    pub(crate) misses: Counter,
    pub(crate) sets: Counter,
    pub(crate) evictions: Counter,
    pub(crate) errors: Counter,
    pub(crate) bytes: Gauge,
}

impl KvMetrics {
    /// Creates every series of `storage` at zero, so it shows from the start.
    pub(crate) fn storage(&self, storage: &str) -> StorageMetrics {
        let l = StorageLabels {
            storage: storage.to_string(),
        };
        StorageMetrics {
            hits: self.hits.get_or_create(&l).clone(),
            misses: self.misses.get_or_create(&l).clone(),
            sets: self.sets.get_or_create(&l).clone(),
            evictions: self.evictions.get_or_create(&l).clone(),
            errors: self.errors.get_or_create(&l).clone(),
            bytes: self.bytes.get_or_create(&l).clone(),
        }
    }

    pub(crate) fn register(&self, r: &mut Registry) {
        r.register(
            "courser_kv_hits",
            "Keys found by kv.MGet/kv.Has",
            self.hits.clone(),
        );
        r.register(
            "courser_kv_misses",
            "Keys asked for by kv.MGet/kv.Has that do not exist",
            self.misses.clone(),
        );
        r.register(
            "courser_kv_sets",
            "Keys written by kv.Set",
            self.sets.clone(),
        );
        r.register(
            "courser_kv_evictions",
            "Keys a memory storage dropped to stay within max_size/max_entries",
            self.evictions.clone(),
        );
        r.register(
            "courser_kv_errors",
            "kv calls that failed against the storage",
            self.errors.clone(),
        );
        r.register_with_unit(
            "courser_kv",
            "Bytes of keys and values a memory storage holds",
            Unit::Bytes,
            self.bytes.clone(),
        );
    }
}
