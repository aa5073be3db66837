//! The driver seam: what every storage does.

use async_trait::async_trait;
use bytes::Bytes;

use crate::KvError;

/// One key to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key (never empty).
    pub key: String,
    /// The value.
    pub value: Bytes,
    /// Expiry in Unix milliseconds; `None` keeps it until deleted or evicted.
    pub expires_ms: Option<i64>,
}

/// A storage. Keys given to it are already checked to be non-empty.
#[async_trait]
pub trait Storage: Send + Sync {
    /// The driver's name (`memory`, `boltdb`, `redis`, `memcached`).
    fn driver(&self) -> &'static str;

    /// The keys of `keys` that exist.
    async fn has(&self, keys: &[String]) -> Result<Vec<String>, KvError>;

    /// The keys that exist, with their values.
    async fn mget(&self, keys: &[String]) -> Result<Vec<(String, Bytes)>, KvError>;

    /// Writes every entry (replacing values and expiries).
    async fn set(&self, entries: Vec<Entry>) -> Result<(), KvError>;

    /// Sets the expiry of existing keys (a time in the past removes the key;
    /// missing keys are left alone).
    async fn mexpire(&self, keys: Vec<(String, i64)>) -> Result<(), KvError>;

    /// The keys that exist, with their expiry (`None` for none).
    async fn ttl(&self, keys: &[String]) -> Result<Vec<(String, Option<i64>)>, KvError>;

    /// Removes the keys.
    async fn delete(&self, keys: &[String]) -> Result<(), KvError>;

    /// Removes every key of the storage.
    async fn clear(&self) -> Result<(), KvError>;

    /// Bytes held, when the driver knows it (memory).
    fn bytes(&self) -> Option<u64> {
        None
    }

    /// Stops background work.
    async fn stop(&self) {}
}
