//! The kv plugin on the plugin seam: storages by name, the `kv.*` RPC methods,
//! metrics and stop. It runs no PHP workers.

use async_trait::async_trait;
use bytes::Bytes;
use courser_config::KvConfig;
use courser_frame::flags;
use courser_plugin::{Factory, Host, Plugin, PluginError};
use courser_rpc::{Call, Registry};
use futures_util::FutureExt;
use prost::Message;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::watch;

use crate::metrics::{KvMetrics, StorageMetrics};
use crate::proto::{Item, Request, Response};
use crate::{ttl, Entry, KvError, Storage};

/// Builds the kv plugin from the `kv` section.
pub struct KvFactory;

#[async_trait]
impl Factory for KvFactory {
    fn section(&self) -> &'static str {
        "kv"
    }

    async fn build(&self, host: &dyn Host) -> Result<Option<Box<dyn Plugin>>, PluginError> {
        let Some(cfg) = host.config().kv.clone() else {
            return Ok(None);
        };
        let p = KvPlugin::new(&cfg).await.map_err(|e| PluginError::Other {
            plugin: "kv",
            message: e.to_string(),
        })?;
        Ok(Some(Box::new(p)))
    }
}

struct Store {
    storage: Arc<dyn Storage>,
    metrics: StorageMetrics,
}

type Stores = Arc<HashMap<String, Store>>;

/// The running plugin.
pub struct KvPlugin {
    stores: Stores,
    metrics: KvMetrics,
}

impl KvPlugin {
    /// Opens every storage (Redis and memcached connect on first use).
    pub async fn new(cfg: &KvConfig) -> Result<KvPlugin, KvError> {
        let metrics = KvMetrics::default();
        let mut stores = HashMap::new();
        for s in &cfg.storages {
            let m = metrics.storage(&s.name);
            let storage = crate::drivers::open(s, m.clone()).await?;
            tracing::info!(storage = %s.name, driver = %s.driver, "kv storage ready");
            stores.insert(
                s.name.clone(),
                Store {
                    storage,
                    metrics: m,
                },
            );
        }
        Ok(KvPlugin {
            stores: Arc::new(stores),
            metrics,
        })
    }
}

/// The methods, as RoadRunner's `kv` RPC service names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    Has,
    Set,
    MGet,
    MExpire,
    Ttl,
    Delete,
    Clear,
}

impl Method {
    const ALL: [Method; 7] = [
        Method::Has,
        Method::Set,
        Method::MGet,
        Method::MExpire,
        Method::Ttl,
        Method::Delete,
        Method::Clear,
    ];

    fn name(self) -> &'static str {
        match self {
            Method::Has => "kv.Has",
            Method::Set => "kv.Set",
            Method::MGet => "kv.MGet",
            Method::MExpire => "kv.MExpire",
            Method::Ttl => "kv.TTL",
            Method::Delete => "kv.Delete",
            Method::Clear => "kv.Clear",
        }
    }
}

fn keys(items: &[Item]) -> Result<Vec<String>, KvError> {
    if items.is_empty() {
        return Err(KvError::NoKeys);
    }
    items
        .iter()
        .map(|i| {
            if i.key.trim().is_empty() {
                Err(KvError::EmptyKey)
            } else {
                Ok(i.key.clone())
            }
        })
        .collect()
}

fn invalid(m: Method, storage: &str, message: String) -> KvError {
    KvError::Invalid {
        method: m.name().into(),
        storage: storage.into(),
        message,
    }
}

fn encode(items: Vec<Item>) -> Bytes {
    if items.is_empty() {
        return Bytes::new();
    }
    Bytes::from(Response { items }.encode_to_vec())
}

/// Runs one call against the storages: decode, look up, do, encode.
async fn handle(stores: &Stores, m: Method, call: Call) -> Result<Bytes, KvError> {
    if call.flags != flags::CODEC_PROTO {
        return Err(invalid(
            m,
            "",
            "the argument must be a protobuf kv.v1.Request (flag 0x80), as RoadRunner's kv plugin takes".into(),
        ));
    }
    let req = Request::decode(call.body.as_ref())
        .map_err(|e| invalid(m, "", format!("the argument is not a kv.v1.Request: {e}")))?;
    if req.storage.is_empty() {
        return Err(KvError::NoStorage);
    }
    let Some(store) = stores.get(&req.storage) else {
        return Err(KvError::NoSuchStorage(req.storage));
    };
    let s = &store.storage;
    let name = req.storage.as_str();
    let r = match m {
        Method::Has => {
            let keys = keys(&req.items)?;
            let found = s.has(&keys).await?;
            store.metrics.hits.inc_by(found.len() as u64);
            store
                .metrics
                .misses
                .inc_by((keys.len() - found.len().min(keys.len())) as u64);
            encode(
                found
                    .into_iter()
                    .map(|key| Item {
                        key,
                        ..Item::default()
                    })
                    .collect(),
            )
        }
        Method::MGet => {
            let keys = keys(&req.items)?;
            let found = s.mget(&keys).await?;
            store.metrics.hits.inc_by(found.len() as u64);
            store
                .metrics
                .misses
                .inc_by((keys.len() - found.len().min(keys.len())) as u64);
            encode(
                found
                    .into_iter()
                    .map(|(key, value)| Item {
                        key,
                        value,
                        timeout: String::new(),
                    })
                    .collect(),
            )
        }
        Method::Set => {
            keys(&req.items)?;
            let mut entries = Vec::with_capacity(req.items.len());
            for i in req.items {
                let expires_ms = ttl::parse(&i.timeout)
                    .map_err(|e| invalid(m, name, format!("key {:?}: {e}", i.key)))?;
                entries.push(Entry {
                    key: i.key,
                    value: i.value,
                    expires_ms,
                });
            }
            let n = entries.len() as u64;
            s.set(entries).await?;
            store.metrics.sets.inc_by(n);
            Bytes::new()
        }
        Method::MExpire => {
            keys(&req.items)?;
            let mut list = Vec::with_capacity(req.items.len());
            for i in req.items {
                let at = ttl::parse(&i.timeout)
                    .map_err(|e| invalid(m, name, format!("key {:?}: {e}", i.key)))?
                    .ok_or_else(|| {
                        invalid(
                            m,
                            name,
                            format!(
                                "key {:?}: the timeout is empty; MExpire needs an RFC 3339 time",
                                i.key
                            ),
                        )
                    })?;
                list.push((i.key, at));
            }
            s.mexpire(list).await?;
            Bytes::new()
        }
        Method::Ttl => {
            let keys = keys(&req.items)?;
            encode(
                s.ttl(&keys)
                    .await?
                    .into_iter()
                    .map(|(key, at)| Item {
                        key,
                        value: Bytes::new(),
                        timeout: at.map(ttl::format).unwrap_or_default(),
                    })
                    .collect(),
            )
        }
        Method::Delete => {
            let keys = keys(&req.items)?;
            s.delete(&keys).await?;
            Bytes::new()
        }
        Method::Clear => {
            s.clear().await?;
            Bytes::new()
        }
    };
    Ok(r)
}

fn register(stores: &Stores, rpc: &mut Registry) {
    for m in Method::ALL {
        let stores = stores.clone();
        rpc.register(m.name(), move |call: Call| {
            let stores = stores.clone();
            async move {
                match handle(&stores, m, call).await {
                    Ok(b) => Ok(b),
                    Err(e) => {
                        if let KvError::Store { storage, .. } = &e {
                            if let Some(s) = stores.get(storage) {
                                s.metrics.errors.inc();
                            }
                            tracing::warn!(method = m.name(), "{e}");
                        }
                        Err(e.to_string())
                    }
                }
            }
            .boxed()
        });
    }
}

#[async_trait]
impl Plugin for KvPlugin {
    fn name(&self) -> &'static str {
        "kv"
    }

    fn register_rpc(&self, rpc: &mut Registry) {
        register(&self.stores, rpc);
    }

    fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.metrics.register(registry);
    }

    async fn serve(&mut self, _shutdown: watch::Receiver<bool>) -> Result<(), PluginError> {
        Ok(())
    }

    async fn stop(&mut self, _deadline: Instant) {
        for s in self.stores.values() {
            s.storage.stop().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use courser_config::{DriverOptions, KvDriver, StorageConfig};

    async fn plugin() -> KvPlugin {
        let cfg = KvConfig {
            storages: vec![StorageConfig {
                name: "mem".into(),
                driver: "memory".into(),
                config: DriverOptions::default(),
                settings: KvDriver::Memory {
                    max_size: 1 << 20,
                    max_entries: 100,
                    interval: std::time::Duration::from_secs(1),
                },
            }],
        };
        KvPlugin::new(&cfg).await.unwrap()
    }

    fn call(req: &Request) -> Call {
        Call {
            method: String::new(),
            flags: flags::CODEC_PROTO,
            body: Bytes::from(req.encode_to_vec()),
        }
    }

    fn item(k: &str, v: &str, t: &str) -> Item {
        Item {
            key: k.into(),
            value: Bytes::from(v.to_string()),
            timeout: t.into(),
        }
    }

    #[tokio::test]
    async fn errors_are_roadrunners() {
        let p = plugin().await;
        let req = |storage: &str, items: Vec<Item>| Request {
            storage: storage.into(),
            items,
        };
        for (m, r, want) in [
            (
                Method::Has,
                req("", vec![item("k", "", "")]),
                "no storage provided",
            ),
            (
                Method::Has,
                req("nope", vec![item("k", "", "")]),
                "no such storage: nope",
            ),
            (Method::MGet, req("mem", vec![]), "no keys provided"),
            (
                Method::Delete,
                req("mem", vec![item(" ", "", "")]),
                "empty key",
            ),
            (
                Method::Set,
                req("mem", vec![item("k", "v", "tomorrow")]),
                "kv.Set on storage mem: key \"k\": timeout \"tomorrow\" is not an RFC 3339 time",
            ),
            (
                Method::MExpire,
                req("mem", vec![item("k", "", "")]),
                "kv.MExpire on storage mem: key \"k\": the timeout is empty",
            ),
        ] {
            let e = handle(&p.stores, m, call(&r))
                .await
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(want), "{m:?}: {e}");
        }
        let mut json = call(&req("mem", vec![item("k", "", "")]));
        json.flags = flags::CODEC_JSON;
        assert!(handle(&p.stores, Method::Has, json).await.is_err());
    }

    #[tokio::test]
    async fn set_then_read_back() {
        let p = plugin().await;
        let at = ttl::format(ttl::now_ms() + 3_600_000);
        let set = Request {
            storage: "mem".into(),
            items: vec![item("a", "1", ""), item("b", "2", &at)],
        };
        assert!(handle(&p.stores, Method::Set, call(&set))
            .await
            .unwrap()
            .is_empty());
        let ask = Request {
            storage: "mem".into(),
            items: vec![item("a", "", ""), item("b", "", ""), item("c", "", "")],
        };
        let got =
            Response::decode(handle(&p.stores, Method::MGet, call(&ask)).await.unwrap()).unwrap();
        assert_eq!(got.items, vec![item("a", "1", ""), item("b", "2", "")]);
        let got =
            Response::decode(handle(&p.stores, Method::Ttl, call(&ask)).await.unwrap()).unwrap();
        assert_eq!(got.items, vec![item("a", "", ""), item("b", "", &at)]);
        let got =
            Response::decode(handle(&p.stores, Method::Has, call(&ask)).await.unwrap()).unwrap();
        assert_eq!(got.items, vec![item("a", "", ""), item("b", "", "")]);
        let st = &p.stores["mem"].metrics;
        assert_eq!((st.hits.get(), st.misses.get(), st.sets.get()), (4, 2, 2));
        let clear = Request {
            storage: "mem".into(),
            items: vec![],
        };
        handle(&p.stores, Method::Clear, call(&clear))
            .await
            .unwrap();
        assert!(handle(&p.stores, Method::Has, call(&ask))
            .await
            .unwrap()
            .is_empty());
    }
}
