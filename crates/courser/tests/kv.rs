//! The kv plugin through the real binary: a config with `rpc` + `kv` and no
//! `http` or `server` runs; kv.v1 calls over RPC on memory, boltdb, Redis
//! (127.0.0.1:6379) and a memcached the test starts; RoadRunner's error
//! texts; a storage whose server is down fails alone; boltdb keeps its keys
//! across a kill -9; per-storage metrics.

mod common;

use common::{courser, free_port, wait_for};
use courser_kv::proto::{Item, Request, Response};
use prost::Message;
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const PROTO: u8 = 0x80;

struct Daemon(Child);
impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Kv {
    child: Child,
    dir: tempfile::TempDir,
    rpc: u16,
    metrics: u16,
    rt: tokio::runtime::Runtime,
    _memcached: Daemon,
}

impl Drop for Kv {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Kv {
    fn start() -> Kv {
        let dir = tempfile::tempdir().expect("tempdir");
        let (rpc, metrics, mc, down) = (free_port(), free_port(), free_port(), free_port());
        let memcached = Daemon(
            Command::new("memcached")
                .args([
                    "-l",
                    "127.0.0.1",
                    "-p",
                    &mc.to_string(),
                    "-U",
                    "0",
                    "-u",
                    "nobody",
                ])
                .spawn()
                .expect("memcached is installed"),
        );
        assert!(wait_for(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", mc)).is_ok()
        }));
        std::fs::write(
            dir.path().join(".rr.yaml"),
            format!(
                "version: \"3\"\nrpc:\n  listen: tcp://127.0.0.1:{rpc}\nmetrics:\n  address: 127.0.0.1:{metrics}\nlogs:\n  level: info\n\
                 kv:\n  mem: {{driver: memory, config: {{max_size: 1000}}}}\n  bolt: {{driver: boltdb, config: {{file: {}}}}}\n  \
                 red: {{driver: redis, config: {{addrs: ['127.0.0.1:6379']}}}}\n  mc: {{driver: memcached, config: {{addr: ['127.0.0.1:{mc}']}}}}\n  \
                 down: {{driver: memcached, config: {{addr: ['127.0.0.1:{down}']}}}}\n",
                dir.path().join("kv.db").display()
            ),
        )
        .expect("write config");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let child = Self::spawn(dir.path());
        let kv = Kv {
            child,
            dir,
            rpc,
            metrics,
            rt,
            _memcached: memcached,
        };
        kv.wait_ready();
        kv
    }

    fn spawn(dir: &std::path::Path) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("courser.log"))
            .expect("log");
        Command::new(courser())
            .args(["serve", "-c"])
            .arg(dir.join(".rr.yaml"))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn courser")
    }

    fn wait_ready(&self) {
        let ok = wait_for(Duration::from_secs(20), || {
            self.call("Has", "mem", &[("probe", "", "")]).is_ok()
        });
        assert!(ok, "kv RPC never answered; log:\n{}", self.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("courser.log")).unwrap_or_default()
    }

    /// Calls `kv.<method>` and returns the items by key (key → (value, timeout)).
    fn call(
        &self,
        method: &str,
        storage: &str,
        items: &[(&str, &str, &str)],
    ) -> Result<BTreeMap<String, (String, String)>, String> {
        let req = Request {
            storage: storage.into(),
            items: items
                .iter()
                .map(|(k, v, t)| Item {
                    key: k.to_string(),
                    value: v.as_bytes().to_vec().into(),
                    timeout: t.to_string(),
                })
                .collect(),
        };
        let listen = format!("tcp://127.0.0.1:{}", self.rpc);
        let body = self.rt.block_on(async {
            let mut c = courser_rpc::RpcClient::connect(&listen, Duration::from_secs(2))
                .await
                .map_err(|e| e.to_string())?;
            c.call(&format!("kv.{method}"), PROTO, &req.encode_to_vec())
                .await
                .map_err(|e| e.to_string())
        })?;
        let resp = Response::decode(body.as_ref()).map_err(|e| e.to_string())?;
        Ok(resp
            .items
            .into_iter()
            .map(|i| {
                (
                    i.key,
                    (String::from_utf8_lossy(&i.value).into_owned(), i.timeout),
                )
            })
            .collect())
    }

    fn keys(&self, method: &str, storage: &str, keys: &[&str]) -> Vec<String> {
        let items: Vec<(&str, &str, &str)> = keys.iter().map(|k| (*k, "", "")).collect();
        self.call(method, storage, &items)
            .unwrap_or_else(|e| panic!("kv.{method} on {storage}: {e}"))
            .into_keys()
            .collect()
    }
}

fn at(secs: i64) -> String {
    courser_kv::ttl::format(courser_kv::ttl::now_ms() + secs * 1000)
}

#[test]
fn every_driver_over_rpc_errors_down_store_kill_9_and_metrics() {
    let mut kv = Kv::start();
    let tag = format!("e2e-{}-", std::process::id());
    let k = |s: &str| format!("{tag}{s}");
    let later = at(3600);
    for s in ["mem", "bolt", "red", "mc"] {
        kv.call(
            "Set",
            s,
            &[(&k("a"), "s:5:\"hello\";", ""), (&k("t"), "soon", &later)],
        )
        .unwrap_or_else(|e| panic!("{s}: {e}"));
        let got = kv
            .call("MGet", s, &[(&k("a"), "", ""), (&k("none"), "", "")])
            .unwrap();
        assert_eq!(got.len(), 1, "{s}: {got:?}");
        assert_eq!(got[&k("a")].0, "s:5:\"hello\";", "{s}");
        assert_eq!(
            kv.keys("Has", s, &[&k("a"), &k("none")]),
            vec![k("a")],
            "{s}"
        );
        let ttl = kv.call("TTL", s, &[(&k("t"), "", "")]).unwrap();
        let t = &ttl[&k("t")].1;
        // Redis and memcached keep seconds remaining, so allow a second of drift.
        assert!(
            t == &later || t == &at(3599) || t == &at(3600),
            "{s}: TTL {t} vs {later}"
        );
        kv.call("MExpire", s, &[(&k("t"), "", &at(-1))]).unwrap();
        kv.call("Delete", s, &[(&k("a"), "", "")]).unwrap();
        assert!(kv.keys("Has", s, &[&k("a"), &k("t")]).is_empty(), "{s}");
    }
    // RoadRunner's error texts; a storage whose server is down fails alone.
    for (storage, want) in [
        ("", "no storage provided"),
        ("nope", "no such storage: nope"),
    ] {
        let e = kv.call("Has", storage, &[("k", "", "")]).unwrap_err();
        assert!(e.contains(want), "{e}");
    }
    let e = kv.call("MGet", "down", &[("k", "", "")]).unwrap_err();
    assert!(
        e.contains("storage down (memcached at 127.0.0.1:") && e.contains("cannot connect"),
        "{e}"
    );
    assert_eq!(
        kv.keys("Has", "mem", &[&k("nothing")]),
        Vec::<String>::new()
    );
    // Memory: max_size 1000 bytes evicts the oldest keys.
    let v = "x".repeat(300);
    for i in 0..5 {
        kv.call("Set", "mem", &[(&format!("ev{i}"), &v, "")])
            .unwrap();
    }
    assert_eq!(
        kv.keys("Has", "mem", &["ev0", "ev1", "ev2", "ev3", "ev4"]),
        vec!["ev2", "ev3", "ev4"]
    );
    let out = Command::new("curl")
        .args(["-s", &format!("http://127.0.0.1:{}/metrics", kv.metrics)])
        .output()
        .expect("curl");
    let m = String::from_utf8_lossy(&out.stdout);
    for line in [
        "courser_kv_evictions_total{storage=\"mem\"} 2",
        "courser_kv_bytes{storage=\"mem\"} 909",
        "courser_kv_errors_total{storage=\"down\"} 1",
        "courser_kv_sets_total{storage=\"bolt\"} 2",
    ] {
        assert!(m.contains(line), "no {line} in:\n{m}");
    }
    // boltdb across kill -9.
    kv.call("Set", "bolt", &[("durable", "kept", "")]).unwrap();
    kv.child.kill().expect("kill -9");
    let _ = kv.child.wait();
    kv.child = Kv::spawn(kv.dir.path());
    kv.wait_ready();
    assert_eq!(
        kv.call("MGet", "bolt", &[("durable", "", "")]).unwrap()["durable"].0,
        "kept"
    );
}
