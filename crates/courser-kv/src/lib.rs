//! The kv plugin: RoadRunner's `kv.v1` RPC (`kv.Has`, `kv.Set`, `kv.MGet`,
//! `kv.MExpire`, `kv.TTL`, `kv.Delete`, `kv.Clear`, always protobuf) over
//! user-named storages, each on one driver: `memory` (in-process, bounded,
//! shared by every worker and connection), `boltdb` (a redb file),
//! `redis` (one node) and `memcached` (a small text/meta-protocol client).
//!
//! Invariants: the plugin runs no PHP workers; a storage whose server is down
//! answers each call with an error naming the storage and its address, and
//! the other storages keep serving; no lock is held across an `.await`.

pub mod drivers;
mod error;
mod metrics;
mod plugin;
pub mod proto;
mod storage;
pub mod ttl;

pub use error::KvError;
pub use plugin::{KvFactory, KvPlugin};
pub use storage::{Entry, Storage};
