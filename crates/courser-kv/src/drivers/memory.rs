//! `memory`: one map in the Courser process, shared by every worker and RPC
//! connection, bounded by bytes and entries.
//!
//! Expired keys are never returned (every read checks the expiry) and a
//! sweeper removes them every `interval` through an expiry index, so the
//! sweep costs only the keys that expire. When a write would go over
//! `max_size` (bytes of keys + values) or `max_entries`, expired keys go
//! first, then the oldest written keys (FIFO by write), each eviction
//! counted in `courser_kv_evictions`.

use async_trait::async_trait;
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::metrics::StorageMetrics;
use crate::ttl::now_ms;
use crate::{Entry, KvError, Storage};

/// Bounds of a memory storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of keys + values.
    pub max_bytes: u64,
    /// Number of keys.
    pub max_entries: u64,
}

struct Slot {
    value: Bytes,
    expires: Option<i64>,
    seq: u64,
}

impl Slot {
    fn live(&self, now: i64) -> bool {
        self.expires.is_none_or(|e| e > now)
    }
}

#[derive(Default)]
struct Inner {
    map: HashMap<String, Slot>,
    /// Write order: seq → key (eviction order).
    order: BTreeMap<u64, String>,
    /// Expiry index: (expires, seq).
    expiry: BTreeSet<(i64, u64)>,
    seq: u64,
    bytes: u64,
}

fn cost(key: &str, value: &Bytes) -> u64 {
    (key.len() + value.len()) as u64
}

impl Inner {
    fn remove(&mut self, key: &str) -> bool {
        let Some(slot) = self.map.remove(key) else {
            return false;
        };
        self.order.remove(&slot.seq);
        if let Some(e) = slot.expires {
            self.expiry.remove(&(e, slot.seq));
        }
        self.bytes -= cost(key, &slot.value);
        true
    }

    fn insert(&mut self, key: String, value: Bytes, expires: Option<i64>) {
        self.remove(&key);
        self.seq += 1;
        let seq = self.seq;
        self.bytes += cost(&key, &value);
        self.order.insert(seq, key.clone());
        if let Some(e) = expires {
            self.expiry.insert((e, seq));
        }
        self.map.insert(
            key,
            Slot {
                value,
                expires,
                seq,
            },
        );
    }

    /// Removes every key whose expiry has passed; returns how many.
    fn sweep(&mut self, now: i64) -> usize {
        let mut n = 0;
        while let Some(&(e, seq)) = self.expiry.first() {
            if e > now {
                break;
            }
            match self.order.get(&seq).cloned() {
                Some(key) => {
                    self.remove(&key);
                }
                None => {
                    self.expiry.remove(&(e, seq));
                }
            }
            n += 1;
        }
        n
    }

    /// Evicts the oldest written keys until the bounds hold; returns how many.
    fn evict(&mut self, limits: Limits) -> u64 {
        let mut n = 0;
        while self.bytes > limits.max_bytes || self.map.len() as u64 > limits.max_entries {
            let Some((_, key)) = self.order.pop_first() else {
                break;
            };
            // `remove` looks the seq up again; it is already gone from `order`.
            if let Some(slot) = self.map.remove(&key) {
                if let Some(e) = slot.expires {
                    self.expiry.remove(&(e, slot.seq));
                }
                self.bytes -= cost(&key, &slot.value);
                n += 1;
            }
        }
        n
    }
}

/// The memory driver.
pub struct Memory {
    name: String,
    inner: Mutex<Inner>,
    limits: Limits,
    metrics: StorageMetrics,
    sweeper: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Memory {
    /// A storage named `name` with its sweeper running every `interval`
    /// (must be called inside a tokio runtime).
    pub(crate) fn start(
        name: &str,
        limits: Limits,
        interval: Duration,
        metrics: StorageMetrics,
    ) -> Arc<dyn Storage> {
        let m = Arc::new(Memory {
            name: name.to_string(),
            inner: Mutex::new(Inner::default()),
            limits,
            metrics,
            sweeper: Mutex::new(None),
        });
        let weak = Arc::downgrade(&m);
        let handle = tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(m) = weak.upgrade() else { return };
                let n = m.lock().sweep(now_ms());
                m.publish();
                if n > 0 {
                    tracing::debug!(storage = %m.name, expired = n, "expired keys removed");
                }
            }
        });
        *m.sweeper.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
        m
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish(&self) {
        let b = self.lock().bytes;
        self.metrics.bytes.set(i64::try_from(b).unwrap_or(i64::MAX));
    }
}

#[async_trait]
impl Storage for Memory {
    fn driver(&self) -> &'static str {
        "memory"
    }

    async fn has(&self, keys: &[String]) -> Result<Vec<String>, KvError> {
        let now = now_ms();
        let g = self.lock();
        Ok(keys
            .iter()
            .filter(|k| g.map.get(k.as_str()).is_some_and(|s| s.live(now)))
            .cloned()
            .collect())
    }

    async fn mget(&self, keys: &[String]) -> Result<Vec<(String, Bytes)>, KvError> {
        let now = now_ms();
        let g = self.lock();
        Ok(keys
            .iter()
            .filter_map(|k| {
                g.map
                    .get(k.as_str())
                    .filter(|s| s.live(now))
                    .map(|s| (k.clone(), s.value.clone()))
            })
            .collect())
    }

    async fn set(&self, entries: Vec<Entry>) -> Result<(), KvError> {
        for e in &entries {
            let c = cost(&e.key, &e.value);
            if c > self.limits.max_bytes {
                return Err(KvError::Invalid {
                    method: "kv.Set".into(),
                    storage: self.name.clone(),
                    message: format!(
                        "key {:?} with its value is {c} bytes, more than the storage's max_size of {} bytes; raise kv.{}.config.max_size",
                        e.key, self.limits.max_bytes, self.name
                    ),
                });
            }
        }
        let now = now_ms();
        let evicted = {
            let mut g = self.lock();
            for e in entries {
                if e.expires_ms.is_some_and(|t| t <= now) {
                    g.remove(&e.key);
                    continue;
                }
                // A copy, so a small value does not pin the whole request buffer.
                g.insert(e.key, Bytes::copy_from_slice(&e.value), e.expires_ms);
            }
            let over =
                g.bytes > self.limits.max_bytes || g.map.len() as u64 > self.limits.max_entries;
            if over {
                g.sweep(now);
                g.evict(self.limits)
            } else {
                0
            }
        };
        if evicted > 0 {
            self.metrics.evictions.inc_by(evicted);
            tracing::debug!(storage = %self.name, evicted, "oldest keys evicted to stay within max_size/max_entries");
        }
        self.publish();
        Ok(())
    }

    async fn mexpire(&self, keys: Vec<(String, i64)>) -> Result<(), KvError> {
        let now = now_ms();
        let mut g = self.lock();
        for (key, at) in keys {
            let Some(slot) = g.map.get(&key).filter(|s| s.live(now)) else {
                continue;
            };
            if at <= now {
                g.remove(&key);
                continue;
            }
            let (old, seq) = (slot.expires, slot.seq);
            if let Some(e) = old {
                g.expiry.remove(&(e, seq));
            }
            g.expiry.insert((at, seq));
            if let Some(s) = g.map.get_mut(&key) {
                s.expires = Some(at);
            }
        }
        Ok(())
    }

    async fn ttl(&self, keys: &[String]) -> Result<Vec<(String, Option<i64>)>, KvError> {
        let now = now_ms();
        let g = self.lock();
        Ok(keys
            .iter()
            .filter_map(|k| {
                g.map
                    .get(k.as_str())
                    .filter(|s| s.live(now))
                    .map(|s| (k.clone(), s.expires))
            })
            .collect())
    }

    async fn delete(&self, keys: &[String]) -> Result<(), KvError> {
        {
            let mut g = self.lock();
            for k in keys {
                g.remove(k);
            }
        }
        self.publish();
        Ok(())
    }

    async fn clear(&self) -> Result<(), KvError> {
        *self.lock() = Inner::default();
        self.publish();
        Ok(())
    }

    fn bytes(&self) -> Option<u64> {
        Some(self.lock().bytes)
    }

    async fn stop(&self) {
        if let Some(h) = self
            .sweeper
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            h.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(k: &str, v: &str, expires_ms: Option<i64>) -> Entry {
        Entry {
            key: k.into(),
            value: Bytes::from(v.to_string()),
            expires_ms,
        }
    }

    fn keys(k: &[&str]) -> Vec<String> {
        k.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn set_get_expire_evict() {
        let metrics = StorageMetrics::default();
        let m = Memory::start(
            "t",
            Limits {
                max_bytes: 10,
                max_entries: 3,
            },
            Duration::from_millis(20),
            metrics.clone(),
        );
        let now = now_ms();
        m.set(vec![
            entry("a", "1", None),
            entry("b", "2", Some(now + 60_000)),
            entry("c", "3", Some(now + 50)),
        ])
        .await
        .unwrap();
        assert_eq!(
            m.has(&keys(&["a", "b", "c", "z"])).await.unwrap(),
            keys(&["a", "b", "c"])
        );
        assert_eq!(
            m.ttl(&keys(&["a", "b"])).await.unwrap(),
            vec![("a".into(), None), ("b".into(), Some(now + 60_000))]
        );
        // The sweeper removes c, and the bytes go down with it.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while m.bytes() != Some(4) {
            assert!(
                std::time::Instant::now() < deadline,
                "c never swept: {:?}",
                m.bytes()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(metrics.bytes.get(), 4);
        // A fourth key pushes out the oldest (a).
        m.set(vec![entry("d", "4", None), entry("e", "5", None)])
            .await
            .unwrap();
        assert_eq!(
            m.has(&keys(&["a", "b", "d", "e"])).await.unwrap(),
            keys(&["b", "d", "e"])
        );
        assert_eq!(metrics.evictions.get(), 1);
        // Bytes bound: a 9-byte value evicts everything older.
        m.set(vec![entry("f", "12345678", None)]).await.unwrap();
        assert_eq!(
            m.has(&keys(&["b", "d", "e", "f"])).await.unwrap(),
            keys(&["f"])
        );
        assert!(m.set(vec![entry("g", "1234567890", None)]).await.is_err());
        // MExpire in the past removes; on a missing key it does nothing.
        m.mexpire(vec![("f".into(), now - 1), ("zz".into(), now + 1000)])
            .await
            .unwrap();
        assert!(m.has(&keys(&["f", "zz"])).await.unwrap().is_empty());
        m.set(vec![entry("x", "1", None)]).await.unwrap();
        m.mexpire(vec![("x".into(), now_ms() + 30)]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert!(m.mget(&keys(&["x"])).await.unwrap().is_empty());
        m.set(vec![entry("y", "1", None)]).await.unwrap();
        m.clear().await.unwrap();
        assert!(m.has(&keys(&["y"])).await.unwrap().is_empty());
        assert_eq!(m.bytes(), Some(0));
        m.stop().await;
    }
}
