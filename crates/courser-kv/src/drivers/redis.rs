//! `redis`: one Redis node (the first of `config.addrs`), over a multiplexed
//! connection opened on first use and opened again after a failure, so a
//! Redis that is down gives errors naming it and Courser keeps serving.

use async_trait::async_trait;
use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use std::sync::Mutex;
use std::time::Duration;

use crate::ttl::now_ms;
use crate::{Entry, KvError, Storage};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The redis driver.
pub struct Redis {
    name: String,
    addr: String,
    client: redis::Client,
    conn: Mutex<Option<MultiplexedConnection>>,
}

impl Redis {
    /// A storage on the first of `addrs` (`host:port`); does not connect yet.
    pub(crate) fn new(
        name: &str,
        addrs: &[String],
        username: Option<String>,
        password: Option<String>,
        db: i64,
    ) -> Result<Redis, KvError> {
        let addr = addrs
            .first()
            .cloned()
            .unwrap_or_else(|| "127.0.0.1:6379".into());
        let bad = |message: String| KvError::Store {
            storage: name.to_string(),
            driver: "redis",
            addr: addr.clone(),
            message,
        };
        if addrs.len() > 1 {
            tracing::warn!(storage = name, "kv.{name}.config.addrs lists {} addresses; Courser talks to one Redis node, {addr}", addrs.len());
        }
        let (host, port) = addr
            .rsplit_once(':')
            .and_then(|(h, p)| {
                p.parse::<u16>()
                    .ok()
                    .map(|p| (h.trim_start_matches("redis://"), p))
            })
            .ok_or_else(|| bad(format!("kv.{name}.config.addrs: {addr:?} is not host:port")))?;
        let redis = redis::RedisConnectionInfo {
            db,
            username,
            password,
            ..Default::default()
        };
        let info = redis::ConnectionInfo {
            addr: redis::ConnectionAddr::Tcp(host.to_string(), port),
            redis,
        };
        let client = redis::Client::open(info).map_err(|e| bad(e.to_string()))?;
        Ok(Redis {
            name: name.to_string(),
            addr,
            client,
            conn: Mutex::new(None),
        })
    }

    fn err(&self, message: impl std::fmt::Display) -> KvError {
        KvError::Store {
            storage: self.name.clone(),
            driver: "redis",
            addr: self.addr.clone(),
            message: message.to_string(),
        }
    }

    async fn conn(&self) -> Result<MultiplexedConnection, KvError> {
        if let Some(c) = self.conn.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Ok(c);
        }
        let c = tokio::time::timeout(
            CONNECT_TIMEOUT,
            self.client.get_multiplexed_async_connection(),
        )
        .await
        .map_err(|_| {
            self.err(format!(
                "no connection within {}s; check that Redis runs there",
                CONNECT_TIMEOUT.as_secs()
            ))
        })?
        .map_err(|e| self.err(format!("cannot connect: {e}; check that Redis runs there")))?;
        *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = Some(c.clone());
        Ok(c)
    }

    /// Runs `cmd` (a command or pipeline), dropping the connection after an
    /// I/O failure so the next call connects again.
    async fn query<T: redis::FromRedisValue>(&self, q: Q) -> Result<T, KvError> {
        let mut c = self.conn().await?;
        let call = async {
            match &q {
                Q::Cmd(cmd) => cmd.query_async(&mut c).await,
                Q::Pipe(p) => p.query_async(&mut c).await,
            }
        };
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                if e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() {
                    *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = None;
                }
                Err(self.err(e))
            }
            Err(_) => {
                *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = None;
                Err(self.err(format!("no answer within {}s", CALL_TIMEOUT.as_secs())))
            }
        }
    }
}

/// A command or a pipeline.
enum Q {
    Cmd(redis::Cmd),
    Pipe(redis::Pipeline),
}

#[async_trait]
impl Storage for Redis {
    fn driver(&self) -> &'static str {
        "redis"
    }

    async fn has(&self, keys: &[String]) -> Result<Vec<String>, KvError> {
        let mut p = redis::pipe();
        for k in keys {
            p.exists(k);
        }
        let found: Vec<i64> = self.query(Q::Pipe(p)).await?;
        Ok(keys
            .iter()
            .zip(found)
            .filter(|(_, n)| *n > 0)
            .map(|(k, _)| k.clone())
            .collect())
    }

    async fn mget(&self, keys: &[String]) -> Result<Vec<(String, Bytes)>, KvError> {
        let mut cmd = redis::cmd("MGET");
        cmd.arg(keys);
        let values: Vec<Option<Vec<u8>>> = self.query(Q::Cmd(cmd)).await?;
        Ok(keys
            .iter()
            .zip(values)
            .filter_map(|(k, v)| v.map(|v| (k.clone(), Bytes::from(v))))
            .collect())
    }

    async fn set(&self, entries: Vec<Entry>) -> Result<(), KvError> {
        let now = now_ms();
        let mut p = redis::pipe();
        p.atomic();
        for e in &entries {
            match e.expires_ms {
                None => {
                    p.cmd("SET").arg(&e.key).arg(e.value.as_ref()).ignore();
                }
                Some(at) if at > now => {
                    p.cmd("SET")
                        .arg(&e.key)
                        .arg(e.value.as_ref())
                        .arg("PX")
                        .arg(at - now)
                        .ignore();
                }
                Some(_) => {
                    p.del(&e.key).ignore();
                }
            }
        }
        self.query::<()>(Q::Pipe(p)).await
    }

    async fn mexpire(&self, keys: Vec<(String, i64)>) -> Result<(), KvError> {
        let mut p = redis::pipe();
        for (k, at) in &keys {
            p.cmd("PEXPIREAT").arg(k).arg(*at).ignore();
        }
        self.query::<()>(Q::Pipe(p)).await
    }

    async fn ttl(&self, keys: &[String]) -> Result<Vec<(String, Option<i64>)>, KvError> {
        let mut p = redis::pipe();
        for k in keys {
            p.cmd("PTTL").arg(k);
        }
        let now = now_ms();
        let ttls: Vec<i64> = self.query(Q::Pipe(p)).await?;
        Ok(keys
            .iter()
            .zip(ttls)
            .filter(|(_, t)| *t != -2)
            .map(|(k, t)| (k.clone(), (t >= 0).then_some(now + t)))
            .collect())
    }

    async fn delete(&self, keys: &[String]) -> Result<(), KvError> {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(keys);
        self.query::<()>(Q::Cmd(cmd)).await
    }

    async fn clear(&self) -> Result<(), KvError> {
        let cmd = redis::cmd("FLUSHDB");
        self.query::<()>(Q::Cmd(cmd)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(prefix: &str, k: &[&str]) -> Vec<String> {
        k.iter().map(|s| format!("{prefix}{s}")).collect()
    }

    /// Against the local Redis (127.0.0.1:6379), on keys of this test only.
    #[tokio::test]
    async fn against_local_redis() {
        let r = Redis::new("red", &["127.0.0.1:6379".into()], None, None, 0).unwrap();
        let p = format!("courser-kv-test-{}-", std::process::id());
        let now = now_ms();
        let k = |s: &str| format!("{p}{s}");
        r.set(vec![
            Entry {
                key: k("a"),
                value: Bytes::from_static(b"1"),
                expires_ms: None,
            },
            Entry {
                key: k("t"),
                value: Bytes::from_static(b"2"),
                expires_ms: Some(now + 60_000),
            },
            Entry {
                key: k("gone"),
                value: Bytes::from_static(b"3"),
                expires_ms: Some(now - 1),
            },
        ])
        .await
        .unwrap();
        assert_eq!(
            r.has(&keys(&p, &["a", "t", "gone", "z"])).await.unwrap(),
            keys(&p, &["a", "t"])
        );
        assert_eq!(
            r.mget(&keys(&p, &["a", "z"])).await.unwrap(),
            vec![(k("a"), Bytes::from_static(b"1"))]
        );
        let ttl = r.ttl(&keys(&p, &["a", "t", "z"])).await.unwrap();
        assert_eq!(ttl.len(), 2);
        assert_eq!(ttl[0], (k("a"), None));
        let t = ttl[1].1.unwrap();
        assert!((now + 58_000..=now + 61_000).contains(&t), "{t} vs {now}");
        r.mexpire(vec![(k("a"), now - 1)]).await.unwrap();
        r.delete(&keys(&p, &["t"])).await.unwrap();
        assert!(r.has(&keys(&p, &["a", "t"])).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn down_names_storage_and_address() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let r = Redis::new("red", &[format!("127.0.0.1:{port}")], None, None, 0).unwrap();
        let e = r.has(&["k".into()]).await.unwrap_err().to_string();
        assert!(
            e.contains("storage red (redis at 127.0.0.1:") && e.contains("cannot connect"),
            "{e}"
        );
    }
}
