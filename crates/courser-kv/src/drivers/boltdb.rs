//! `boltdb`: keys in one redb file (RoadRunner's boltdb driver, a different
//! file format: a RoadRunner `.db` file is not read).
//!
//! Every `Set`/`MExpire`/`Delete`/`Clear` commits before it answers, so a key
//! the client was told is stored survives a `kill -9`. A value is stored as
//! 8 bytes of expiry (Unix ms, big-endian, 0 = none) followed by the bytes.
//! Expired keys are never returned and are swept every `interval`.

use async_trait::async_trait;
use bytes::Bytes;
use redb::{ReadableTable, TableDefinition};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::ttl::now_ms;
use crate::{Entry, KvError, Storage};

/// The boltdb driver.
pub struct Bolt {
    name: String,
    file: PathBuf,
    bucket: Arc<str>,
    db: Arc<redb::Database>,
    sweeper: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

fn encode(expires: Option<i64>, value: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + value.len());
    v.extend_from_slice(&expires.unwrap_or(0).to_be_bytes());
    v.extend_from_slice(value);
    v
}

/// (expiry, value) of a stored row; a row shorter than 8 bytes has no expiry.
fn decode(row: &[u8]) -> (Option<i64>, &[u8]) {
    match row.split_first_chunk::<8>() {
        Some((e, v)) => {
            let e = i64::from_be_bytes(*e);
            ((e != 0).then_some(e), v)
        }
        None => (None, row),
    }
}

fn live(expires: Option<i64>, now: i64) -> bool {
    expires.is_none_or(|e| e > now)
}

type Op<T> =
    Box<dyn FnOnce(&redb::Database, TableDefinition<'_, &str, &[u8]>) -> Result<T, String> + Send>;

impl Bolt {
    /// Opens (or creates) `file` with table `bucket` and starts the sweeper.
    pub(crate) async fn open(
        name: &str,
        file: &Path,
        bucket: &str,
        interval: Duration,
    ) -> Result<Arc<dyn Storage>, KvError> {
        let err = |message: String| KvError::Store {
            storage: name.to_string(),
            driver: "boltdb",
            addr: file.display().to_string(),
            message,
        };
        let path = file.to_path_buf();
        let table: Arc<str> = Arc::from(bucket);
        let t = table.clone();
        let db = tokio::task::spawn_blocking(move || -> Result<redb::Database, String> {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("cannot create the directory {}: {e}", dir.display()))?;
            }
            let db = redb::Database::create(&path).map_err(|e| {
                format!(
                    "cannot open the file: {e}; check the path and that no other process holds it"
                )
            })?;
            let w = db.begin_write().map_err(|e| e.to_string())?;
            w.open_table(TableDefinition::<&str, &[u8]>::new(&t))
                .map_err(|e| e.to_string())?;
            w.commit().map_err(|e| e.to_string())?;
            Ok(db)
        })
        .await
        .map_err(|e| err(e.to_string()))?
        .map_err(err)?;
        let b = Arc::new(Bolt {
            name: name.to_string(),
            file: file.to_path_buf(),
            bucket: table,
            db: Arc::new(db),
            sweeper: std::sync::Mutex::new(None),
        });
        let weak = Arc::downgrade(&b);
        let h = tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(b) = weak.upgrade() else { return };
                if let Err(e) = b.sweep().await {
                    tracing::warn!(storage = %b.name, "sweeping expired keys failed: {e}");
                }
            }
        });
        *b.sweeper.lock().unwrap_or_else(|p| p.into_inner()) = Some(h);
        Ok(b)
    }

    async fn run<T: Send + 'static>(&self, op: Op<T>) -> Result<T, KvError> {
        let db = self.db.clone();
        let bucket = self.bucket.clone();
        let r = tokio::task::spawn_blocking(move || op(&db, TableDefinition::new(&bucket)))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r);
        r.map_err(|message| KvError::Store {
            storage: self.name.clone(),
            driver: "boltdb",
            addr: self.file.display().to_string(),
            message,
        })
    }

    async fn sweep(&self) -> Result<usize, KvError> {
        self.run(Box::new(|db, t| {
            let now = now_ms();
            let w = db.begin_write().map_err(|e| e.to_string())?;
            let n = {
                let mut table = w.open_table(t).map_err(|e| e.to_string())?;
                let mut expired = Vec::new();
                for row in table.iter().map_err(|e| e.to_string())? {
                    let (k, v) = row.map_err(|e| e.to_string())?;
                    if !live(decode(v.value()).0, now) {
                        expired.push(k.value().to_string());
                    }
                }
                for k in &expired {
                    table.remove(k.as_str()).map_err(|e| e.to_string())?;
                }
                expired.len()
            };
            w.commit().map_err(|e| e.to_string())?;
            Ok(n)
        }))
        .await
    }

    async fn read<T: Send + 'static>(
        &self,
        keys: &[String],
        pick: fn(String, Option<i64>, &[u8]) -> T,
    ) -> Result<Vec<T>, KvError> {
        let keys = keys.to_vec();
        self.run(Box::new(move |db, t| {
            let now = now_ms();
            let r = db.begin_read().map_err(|e| e.to_string())?;
            let table = r.open_table(t).map_err(|e| e.to_string())?;
            let mut out = Vec::new();
            for k in keys {
                if let Some(v) = table.get(k.as_str()).map_err(|e| e.to_string())? {
                    let (e, value) = decode(v.value());
                    if live(e, now) {
                        out.push(pick(k, e, value));
                    }
                }
            }
            Ok(out)
        }))
        .await
    }
}

#[async_trait]
impl Storage for Bolt {
    fn driver(&self) -> &'static str {
        "boltdb"
    }

    async fn has(&self, keys: &[String]) -> Result<Vec<String>, KvError> {
        self.read(keys, |k, _, _| k).await
    }

    async fn mget(&self, keys: &[String]) -> Result<Vec<(String, Bytes)>, KvError> {
        self.read(keys, |k, _, v| (k, Bytes::copy_from_slice(v)))
            .await
    }

    async fn set(&self, entries: Vec<Entry>) -> Result<(), KvError> {
        self.run(Box::new(move |db, t| {
            let w = db.begin_write().map_err(|e| e.to_string())?;
            {
                let mut table = w.open_table(t).map_err(|e| e.to_string())?;
                for e in entries {
                    table
                        .insert(e.key.as_str(), encode(e.expires_ms, &e.value).as_slice())
                        .map_err(|e| e.to_string())?;
                }
            }
            w.commit().map_err(|e| e.to_string())
        }))
        .await
    }

    async fn mexpire(&self, keys: Vec<(String, i64)>) -> Result<(), KvError> {
        self.run(Box::new(move |db, t| {
            let now = now_ms();
            let w = db.begin_write().map_err(|e| e.to_string())?;
            {
                let mut table = w.open_table(t).map_err(|e| e.to_string())?;
                for (k, at) in keys {
                    let current = table.get(k.as_str()).map_err(|e| e.to_string())?.map(|v| {
                        let (e, value) = decode(v.value());
                        (e, value.to_vec())
                    });
                    let Some((e, value)) = current.filter(|(e, _)| live(*e, now)) else {
                        continue;
                    };
                    let _ = e;
                    if at <= now {
                        table.remove(k.as_str()).map_err(|e| e.to_string())?;
                    } else {
                        table
                            .insert(k.as_str(), encode(Some(at), &value).as_slice())
                            .map_err(|e| e.to_string())?;
                    }
                }
            }
            w.commit().map_err(|e| e.to_string())
        }))
        .await
    }

    async fn ttl(&self, keys: &[String]) -> Result<Vec<(String, Option<i64>)>, KvError> {
        self.read(keys, |k, e, _| (k, e)).await
    }

    async fn delete(&self, keys: &[String]) -> Result<(), KvError> {
        let keys = keys.to_vec();
        self.run(Box::new(move |db, t| {
            let w = db.begin_write().map_err(|e| e.to_string())?;
            {
                let mut table = w.open_table(t).map_err(|e| e.to_string())?;
                for k in keys {
                    table.remove(k.as_str()).map_err(|e| e.to_string())?;
                }
            }
            w.commit().map_err(|e| e.to_string())
        }))
        .await
    }

    async fn clear(&self) -> Result<(), KvError> {
        self.run(Box::new(|db, t| {
            let w = db.begin_write().map_err(|e| e.to_string())?;
            w.delete_table(t).map_err(|e| e.to_string())?;
            w.open_table(t).map_err(|e| e.to_string())?;
            w.commit().map_err(|e| e.to_string())
        }))
        .await
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

    fn keys(k: &[&str]) -> Vec<String> {
        k.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn keys_survive_reopen_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sub/kv.db");
        let b = Bolt::open("b", &file, "rr", Duration::from_millis(50))
            .await
            .unwrap();
        let now = now_ms();
        b.set(vec![
            Entry {
                key: "a".into(),
                value: Bytes::from_static(b"1"),
                expires_ms: None,
            },
            Entry {
                key: "t".into(),
                value: Bytes::from_static(b"2"),
                expires_ms: Some(now + 60_000),
            },
            Entry {
                key: "gone".into(),
                value: Bytes::from_static(b"3"),
                expires_ms: Some(now - 1),
            },
        ])
        .await
        .unwrap();
        assert_eq!(
            b.has(&keys(&["a", "t", "gone", "z"])).await.unwrap(),
            keys(&["a", "t"])
        );
        assert_eq!(
            b.ttl(&keys(&["a", "t"])).await.unwrap(),
            vec![("a".into(), None), ("t".into(), Some(now + 60_000))]
        );
        b.mexpire(vec![("t".into(), now - 1)]).await.unwrap();
        b.delete(&keys(&["nothing"])).await.unwrap();
        b.stop().await;
        drop(b);
        let b = Bolt::open("b", &file, "rr", Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(
            b.mget(&keys(&["a", "t"])).await.unwrap(),
            vec![("a".into(), Bytes::from_static(b"1"))]
        );
        b.clear().await.unwrap();
        assert!(b.has(&keys(&["a"])).await.unwrap().is_empty());
        b.stop().await;
    }
}
