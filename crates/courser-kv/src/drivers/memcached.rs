//! `memcached`: a small client for memcached's text protocol (and the meta
//! commands `mg` of memcached ≥ 1.6 for `Has` and `TTL`), on tokio.
//!
//! Keys are spread over `config.addr` by CRC-32 of the key modulo the number
//! of servers, as Go's gomemcache (which RoadRunner uses) does. Each server
//! keeps a few idle connections; a connection that fails is dropped, so a
//! server that is down gives errors naming it and the next call tries again.
//! Commands to one server are pipelined in one write.

use async_trait::async_trait;
use bytes::Bytes;
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::ttl::now_ms;
use crate::{Entry, KvError, Storage};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
const IDLE_PER_SERVER: usize = 8;
/// memcached reads an exptime above 30 days as an absolute Unix time.
const RELATIVE_LIMIT_SECS: i64 = 30 * 24 * 3600;

type Conn = BufReader<TcpStream>;

struct Server {
    addr: String,
    idle: Mutex<Vec<Conn>>,
}

/// The memcached driver.
pub struct Memcached {
    name: String,
    servers: Vec<Server>,
}

/// One command's answer, as far as the driver needs it.
#[derive(Debug, PartialEq)]
enum Answer {
    /// `STORED`, `DELETED`, `TOUCHED`, `OK`, `HD` (with its flags).
    Done(String),
    /// `NOT_FOUND`, `EN`, `NOT_STORED`.
    Missing,
    /// `get`'s values, up to `END`.
    Values(Vec<(String, Bytes)>),
}

fn bad_key(key: &str) -> Option<String> {
    if key.len() > 250 {
        Some(format!(
            "key {:?}… is {} bytes; memcached keys are at most 250 bytes",
            &key[..key.char_indices().nth(20).map_or(key.len(), |(i, _)| i)],
            key.len()
        ))
    } else if key.bytes().any(|b| b <= b' ' || b == 0x7f) {
        Some(format!(
            "key {key:?} has spaces or control characters, which memcached keys cannot hold"
        ))
    } else {
        None
    }
}

/// memcached's exptime for an absolute expiry; `None` when it has passed.
fn exptime(at: Option<i64>, now: i64) -> Option<i64> {
    let Some(at) = at else { return Some(0) };
    if at <= now {
        return None;
    }
    let secs = (at - now + 999) / 1000;
    Some(if secs > RELATIVE_LIMIT_SECS {
        (at + 999) / 1000
    } else {
        secs
    })
}

async fn read_line(c: &mut Conn) -> std::io::Result<String> {
    let mut line = String::new();
    if c.read_line(&mut line).await? == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the server closed the connection",
        ));
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

async fn read_answer(c: &mut Conn) -> Result<Answer, String> {
    let mut values = Vec::new();
    loop {
        let line = read_line(c).await.map_err(|e| e.to_string())?;
        let mut parts = line.split(' ');
        match parts.next().unwrap_or_default() {
            "VALUE" => {
                let key = parts.next().unwrap_or_default().to_string();
                let _flags = parts.next();
                let len: usize = parts
                    .next()
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| format!("malformed reply {line:?}"))?;
                let mut data = vec![0; len + 2];
                c.read_exact(&mut data).await.map_err(|e| e.to_string())?;
                data.truncate(len);
                values.push((key, Bytes::from(data)));
            }
            "END" => return Ok(Answer::Values(values)),
            "STORED" | "DELETED" | "TOUCHED" | "OK" | "HD" => return Ok(Answer::Done(line)),
            "NOT_FOUND" | "EN" | "NOT_STORED" => return Ok(Answer::Missing),
            _ => return Err(format!("the server answered {line:?}")),
        }
    }
}

impl Memcached {
    /// A storage over `addrs` (`host:port` each); does not connect yet.
    pub(crate) fn new(name: &str, addrs: &[String]) -> Memcached {
        Memcached {
            name: name.to_string(),
            servers: addrs
                .iter()
                .map(|a| Server {
                    addr: a.clone(),
                    idle: Mutex::new(Vec::new()),
                })
                .collect(),
        }
    }

    fn err(&self, addr: &str, message: impl std::fmt::Display) -> KvError {
        KvError::Store {
            storage: self.name.clone(),
            driver: "memcached",
            addr: addr.to_string(),
            message: message.to_string(),
        }
    }

    fn server_of(&self, key: &str) -> usize {
        if self.servers.len() <= 1 {
            return 0;
        }
        (crc32fast::hash(key.as_bytes()) as usize) % self.servers.len()
    }

    /// Groups `keys` by server, checking each key.
    fn by_server<'a, T>(
        &self,
        method: &str,
        items: impl IntoIterator<Item = (&'a str, T)>,
    ) -> Result<Vec<Vec<(&'a str, T)>>, KvError> {
        let mut groups: Vec<Vec<(&str, T)>> = (0..self.servers.len()).map(|_| Vec::new()).collect();
        for (k, t) in items {
            if let Some(m) = bad_key(k) {
                return Err(KvError::Invalid {
                    method: method.into(),
                    storage: self.name.clone(),
                    message: m,
                });
            }
            let i = self.server_of(k);
            groups[i].push((k, t));
        }
        Ok(groups)
    }

    /// Sends `request` to server `i` and reads `answers` replies.
    async fn exchange(
        &self,
        i: usize,
        request: &[u8],
        answers: usize,
    ) -> Result<Vec<Answer>, KvError> {
        let s = &self.servers[i];
        let idle = s.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut conn = match idle {
            Some(c) => c,
            None => {
                let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&s.addr))
                    .await
                    .map_err(|_| {
                        self.err(
                            &s.addr,
                            format!(
                                "no connection within {}s; check that memcached runs there",
                                CONNECT_TIMEOUT.as_secs()
                            ),
                        )
                    })?
                    .map_err(|e| {
                        self.err(
                            &s.addr,
                            format!("cannot connect: {e}; check that memcached runs there"),
                        )
                    })?;
                let _ = tcp.set_nodelay(true);
                BufReader::new(tcp)
            }
        };
        let work = async {
            conn.get_mut()
                .write_all(request)
                .await
                .map_err(|e| e.to_string())?;
            let mut out = Vec::with_capacity(answers);
            for _ in 0..answers {
                out.push(read_answer(&mut conn).await?);
            }
            Ok::<_, String>(out)
        };
        let out = match tokio::time::timeout(CALL_TIMEOUT, work).await {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => return Err(self.err(&s.addr, e)),
            Err(_) => {
                return Err(self.err(
                    &s.addr,
                    format!("no answer within {}s", CALL_TIMEOUT.as_secs()),
                ))
            }
        };
        let mut idle = s.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < IDLE_PER_SERVER {
            idle.push(conn);
        }
        Ok(out)
    }

    /// Sends one line per key (built by `line`) to each key's server, and
    /// returns (key, answer) pairs.
    async fn per_key<'a, T: Copy>(
        &self,
        method: &str,
        items: impl IntoIterator<Item = (&'a str, T)>,
        line: impl Fn(&str, T, &mut Vec<u8>),
    ) -> Result<Vec<(String, Answer)>, KvError> {
        let mut out = Vec::new();
        for (i, group) in self.by_server(method, items)?.into_iter().enumerate() {
            if group.is_empty() {
                continue;
            }
            let mut req = Vec::new();
            for (k, t) in &group {
                line(k, *t, &mut req);
            }
            let answers = self.exchange(i, &req, group.len()).await?;
            out.extend(group.iter().map(|(k, _)| k.to_string()).zip(answers));
        }
        Ok(out)
    }
}

#[async_trait]
impl Storage for Memcached {
    fn driver(&self) -> &'static str {
        "memcached"
    }

    async fn has(&self, keys: &[String]) -> Result<Vec<String>, KvError> {
        let r = self
            .per_key(
                "kv.Has",
                keys.iter().map(|k| (k.as_str(), ())),
                |k, _, req| req.extend_from_slice(format!("mg {k}\r\n").as_bytes()),
            )
            .await?;
        Ok(r.into_iter()
            .filter(|(_, a)| matches!(a, Answer::Done(_)))
            .map(|(k, _)| k)
            .collect())
    }

    async fn mget(&self, keys: &[String]) -> Result<Vec<(String, Bytes)>, KvError> {
        let mut out = Vec::new();
        for (i, group) in self
            .by_server("kv.MGet", keys.iter().map(|k| (k.as_str(), ())))?
            .into_iter()
            .enumerate()
        {
            if group.is_empty() {
                continue;
            }
            let mut req = b"get".to_vec();
            for (k, _) in &group {
                req.push(b' ');
                req.extend_from_slice(k.as_bytes());
            }
            req.extend_from_slice(b"\r\n");
            for a in self.exchange(i, &req, 1).await? {
                if let Answer::Values(v) = a {
                    out.extend(v);
                }
            }
        }
        // In the order asked.
        Ok(keys
            .iter()
            .filter_map(|k| out.iter().find(|(f, _)| f == k).cloned())
            .collect())
    }

    async fn set(&self, entries: Vec<Entry>) -> Result<(), KvError> {
        let now = now_ms();
        let r = self
            .per_key(
                "kv.Set",
                entries.iter().map(|e| (e.key.as_str(), e)),
                |k, e, req| match exptime(e.expires_ms, now) {
                    Some(t) => {
                        req.extend_from_slice(
                            format!("set {k} 0 {t} {}\r\n", e.value.len()).as_bytes(),
                        );
                        req.extend_from_slice(&e.value);
                        req.extend_from_slice(b"\r\n");
                    }
                    None => req.extend_from_slice(format!("delete {k}\r\n").as_bytes()),
                },
            )
            .await?;
        match r.iter().find(|(_, a)| matches!(a, Answer::Missing)) {
            Some((k, _))
                if entries
                    .iter()
                    .any(|e| &e.key == k && exptime(e.expires_ms, now).is_some()) =>
            {
                Err(KvError::Invalid {
                    method: "kv.Set".into(),
                    storage: self.name.clone(),
                    message: format!("memcached did not store key {k:?}"),
                })
            }
            _ => Ok(()),
        }
    }

    async fn mexpire(&self, keys: Vec<(String, i64)>) -> Result<(), KvError> {
        let now = now_ms();
        self.per_key(
            "kv.MExpire",
            keys.iter().map(|(k, at)| (k.as_str(), *at)),
            |k, at, req| match exptime(Some(at), now) {
                Some(t) => req.extend_from_slice(format!("touch {k} {t}\r\n").as_bytes()),
                None => req.extend_from_slice(format!("delete {k}\r\n").as_bytes()),
            },
        )
        .await?;
        Ok(())
    }

    async fn ttl(&self, keys: &[String]) -> Result<Vec<(String, Option<i64>)>, KvError> {
        let now = now_ms();
        let r = self
            .per_key(
                "kv.TTL",
                keys.iter().map(|k| (k.as_str(), ())),
                |k, _, req| req.extend_from_slice(format!("mg {k} t\r\n").as_bytes()),
            )
            .await?;
        Ok(r.into_iter()
            .filter_map(|(k, a)| match a {
                Answer::Done(line) => {
                    let t = line
                        .split(' ')
                        .find_map(|f| f.strip_prefix('t'))
                        .and_then(|t| t.parse::<i64>().ok())
                        .unwrap_or(-1);
                    Some((k, (t >= 0).then_some(now + t * 1000)))
                }
                _ => None,
            })
            .collect())
    }

    async fn delete(&self, keys: &[String]) -> Result<(), KvError> {
        self.per_key(
            "kv.Delete",
            keys.iter().map(|k| (k.as_str(), ())),
            |k, _, req| req.extend_from_slice(format!("delete {k}\r\n").as_bytes()),
        )
        .await?;
        Ok(())
    }

    async fn clear(&self) -> Result<(), KvError> {
        for i in 0..self.servers.len() {
            self.exchange(i, b"flush_all\r\n", 1).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exptime_is_relative_under_30_days() {
        let now = 1_700_000_000_000;
        assert_eq!(exptime(None, now), Some(0));
        assert_eq!(exptime(Some(now - 1), now), None);
        assert_eq!(exptime(Some(now + 1500), now), Some(2));
        assert_eq!(
            exptime(Some(now + 31 * 86_400_000), now),
            Some(1_700_000_000 + 31 * 86_400)
        );
        assert!(bad_key("a b").is_some());
        assert!(bad_key(&"x".repeat(251)).is_some());
        assert!(bad_key("ok:key").is_none());
    }
}

#[cfg(test)]
mod live {
    use super::*;

    struct Daemon(std::process::Child, u16);
    impl Drop for Daemon {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    async fn memcached() -> Daemon {
        let port = free_port();
        let child = std::process::Command::new("memcached")
            .args([
                "-l",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "0",
                "-u",
                "nobody",
            ])
            .spawn()
            .expect("memcached is installed");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "memcached did not listen"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Daemon(child, port)
    }

    fn keys(k: &[&str]) -> Vec<String> {
        k.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn against_two_memcached_servers() {
        let (a, b) = (memcached().await, memcached().await);
        let m = Memcached::new(
            "mc",
            &[format!("127.0.0.1:{}", a.1), format!("127.0.0.1:{}", b.1)],
        );
        let now = now_ms();
        let big = Bytes::from(vec![7u8; 256 * 1024]);
        let mut entries: Vec<Entry> = (0..20)
            .map(|i| Entry {
                key: format!("k{i}"),
                value: Bytes::from(format!("v{i}")),
                expires_ms: None,
            })
            .collect();
        entries.push(Entry {
            key: "big".into(),
            value: big.clone(),
            expires_ms: Some(now + 60_000),
        });
        m.set(entries).await.unwrap();
        let all: Vec<String> = (0..20)
            .map(|i| format!("k{i}"))
            .chain(["big".to_string(), "none".to_string()])
            .collect();
        let got = m.mget(&all).await.unwrap();
        assert_eq!(got.len(), 21);
        assert_eq!(got[3], ("k3".to_string(), Bytes::from_static(b"v3")));
        assert_eq!(got[20], ("big".to_string(), big));
        assert_eq!(m.has(&keys(&["k1", "none"])).await.unwrap(), keys(&["k1"]));
        let ttl = m.ttl(&keys(&["k1", "big", "none"])).await.unwrap();
        assert_eq!(ttl[0], ("k1".to_string(), None));
        assert!(ttl[1].1.is_some_and(|t| t > now + 55_000), "{ttl:?}");
        assert_eq!(ttl.len(), 2);
        m.mexpire(vec![("k1".into(), now - 1), ("k2".into(), now + 1000)])
            .await
            .unwrap();
        m.delete(&keys(&["k3"])).await.unwrap();
        assert_eq!(
            m.has(&keys(&["k1", "k2", "k3"])).await.unwrap(),
            keys(&["k2"])
        );
        tokio::time::sleep(Duration::from_millis(2100)).await;
        assert!(m.has(&keys(&["k2"])).await.unwrap().is_empty());
        assert!(m.has(&keys(&["bad key"])).await.is_err());
        m.clear().await.unwrap();
        assert!(m.has(&keys(&["k4", "k5"])).await.unwrap().is_empty());
        // Both servers got keys.
        let one = Memcached::new("mc", &[format!("127.0.0.1:{}", a.1)]);
        m.set(
            (0..20)
                .map(|i| Entry {
                    key: format!("k{i}"),
                    value: Bytes::from_static(b"x"),
                    expires_ms: None,
                })
                .collect(),
        )
        .await
        .unwrap();
        let on_a = one
            .has(&(0..20).map(|i| format!("k{i}")).collect::<Vec<_>>())
            .await
            .unwrap()
            .len();
        assert!(
            on_a > 0 && on_a < 20,
            "{on_a} of 20 keys on the first server"
        );
    }

    #[tokio::test]
    async fn down_names_storage_and_address() {
        let port = free_port();
        let m = Memcached::new("mc", &[format!("127.0.0.1:{port}")]);
        let e = m.mget(&keys(&["k"])).await.unwrap_err().to_string();
        assert!(
            e.starts_with(&format!(
                "storage mc (memcached at 127.0.0.1:{port}): cannot connect"
            )),
            "{e}"
        );
    }
}
