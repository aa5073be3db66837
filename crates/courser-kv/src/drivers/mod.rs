//! Storage drivers, one module each, and the table that opens them.

pub mod boltdb;
pub mod memcached;
pub mod memory;
pub mod redis;

use std::sync::Arc;

use courser_config::{KvDriver, StorageConfig};

use crate::metrics::StorageMetrics;
use crate::{KvError, Storage};

/// Opens the storage a `kv.<name>` section describes. Network stores connect
/// lazily, so a server that is down does not stop Courser from starting.
pub(crate) async fn open(
    cfg: &StorageConfig,
    metrics: StorageMetrics,
) -> Result<Arc<dyn Storage>, KvError> {
    Ok(match &cfg.settings {
        KvDriver::Memory {
            max_size,
            max_entries,
            interval,
        } => memory::Memory::start(
            &cfg.name,
            memory::Limits {
                max_bytes: *max_size,
                max_entries: *max_entries,
            },
            *interval,
            metrics,
        ),
        KvDriver::Boltdb {
            file,
            bucket,
            interval,
        } => boltdb::Bolt::open(&cfg.name, file, bucket, *interval).await?,
        KvDriver::Redis {
            addrs,
            username,
            password,
            db,
        } => Arc::new(redis::Redis::new(
            &cfg.name,
            addrs,
            username.clone(),
            password.clone(),
            *db,
        )?),
        KvDriver::Memcached { addrs } => Arc::new(memcached::Memcached::new(&cfg.name, addrs)),
    })
}
