//! The jobs plugin through the real binary: jobs pushed over RPC (`jobs.v1`,
//! protobuf) are consumed by real `php` workers (`tests/php/jobs_worker.php`,
//! which speaks the frames itself), on the `memory` and `boltdb` drivers.
//! The broker drivers have their own tests against the real brokers in
//! `crates/courser-jobs/tests/`.

mod common;

use common::{courser, free_port, php_script, wait_for};
use courser_jobs::proto;
use prost::Message;
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PROTO: u8 = 0x80;

struct Jobs {
    child: Child,
    dir: tempfile::TempDir,
    rpc: u16,
    metrics: u16,
    status: u16,
    rt: tokio::runtime::Runtime,
}

impl Drop for Jobs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(rpc: u16, metrics: u16, status: u16, dir: &std::path::Path, jobs: &str) -> String {
    format!(
        "version: \"3\"\nrpc:\n  listen: tcp://127.0.0.1:{rpc}\nstatus:\n  address: 127.0.0.1:{status}\nserver:\n  command: \"php {}\"\n  env:\n    JOBS_LOG: {}\nmetrics:\n  address: 127.0.0.1:{metrics}\nlogs:\n  level: info\nendure:\n  grace_period: 10s\njobs:\n{jobs}\n",
        php_script("jobs_worker.php").display(),
        dir.join("jobs.log").display(),
    )
}

impl Jobs {
    /// Starts `courser serve` with `jobs:` set to `jobs` (indented by two).
    fn start(jobs: &str) -> Jobs {
        let dir = tempfile::tempdir().expect("tempdir");
        let (rpc, metrics, status) = (free_port(), free_port(), free_port());
        let jobs = jobs.replace("$DIR", &dir.path().display().to_string());
        std::fs::write(
            dir.path().join(".rr.yaml"),
            config(rpc, metrics, status, dir.path(), &jobs),
        )
        .expect("write config");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let child = Self::spawn(dir.path());
        let j = Jobs {
            child,
            dir,
            rpc,
            metrics,
            status,
            rt,
        };
        j.wait_ready();
        j
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
            self.call("jobs.List", &[]).is_ok()
        });
        assert!(ok, "jobs RPC never answered; log:\n{}", self.log());
    }

    fn restart(&mut self) {
        self.child = Self::spawn(self.dir.path());
        self.wait_ready();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("courser.log")).unwrap_or_default()
    }

    fn call(&self, method: &str, body: &[u8]) -> Result<Vec<u8>, String> {
        self.call_flags(method, PROTO, body)
    }

    fn call_flags(&self, method: &str, flags: u8, body: &[u8]) -> Result<Vec<u8>, String> {
        let listen = format!("tcp://127.0.0.1:{}", self.rpc);
        self.rt.block_on(async {
            let mut c = courser_rpc::RpcClient::connect(&listen, Duration::from_secs(2))
                .await
                .map_err(|e| e.to_string())?;
            c.call(method, flags, body)
                .await
                .map(|b| b.to_vec())
                .map_err(|e| e.to_string())
        })
    }

    fn push(&self, jobs: Vec<proto::Job>) -> Result<(), String> {
        self.call(
            "jobs.PushBatch",
            &proto::PushBatchRequest { jobs }.encode_to_vec(),
        )
        .map(|_| ())
    }

    fn pipelines(&self, method: &str, names: &[&str]) -> Result<Vec<String>, String> {
        let msg = proto::Pipelines {
            pipelines: names.iter().map(|s| s.to_string()).collect(),
        };
        let reply = self.call(method, &msg.encode_to_vec())?;
        proto::Pipelines::decode(reply.as_slice())
            .map(|p| p.pipelines)
            .map_err(|e| e.to_string())
    }

    fn stats(&self) -> HashMap<String, proto::Stat> {
        let reply = self.call("jobs.Stat", &[]).expect("jobs.Stat");
        proto::Stats::decode(reply.as_slice())
            .expect("Stats")
            .stats
            .into_iter()
            .map(|s| (s.pipeline.clone(), s))
            .collect()
    }

    /// Every line the worker logged.
    fn events(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join("jobs.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    fn acked(&self) -> HashMap<String, usize> {
        let mut m = HashMap::new();
        for e in self.events() {
            if e["event"] == "ack" {
                *m.entry(e["id"].as_str().unwrap_or_default().to_string())
                    .or_default() += 1;
            }
        }
        m
    }

    fn wait_acked(&self, ids: &[String], secs: u64) {
        let ok = wait_for(Duration::from_secs(secs), || {
            let a = self.acked();
            ids.iter().all(|i| a.contains_key(i))
        });
        let a = self.acked();
        let missing: Vec<&String> = ids.iter().filter(|i| !a.contains_key(*i)).collect();
        assert!(
            ok,
            "{} of {} jobs never acked (first {:?}); log:\n{}",
            missing.len(),
            ids.len(),
            missing.first(),
            self.log()
        );
    }

    fn metrics(&self) -> String {
        let out = Command::new("curl")
            .args(["-s", &format!("http://127.0.0.1:{}/metrics", self.metrics)])
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn cli(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new(courser())
            .args(args)
            .arg("-c")
            .arg(self.dir.path().join(".rr.yaml"))
            .output()
            .expect("run courser");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }
}

fn job(name: &str, pipeline: &str, payload: &str) -> proto::Job {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    proto::Job {
        job: name.into(),
        id: format!("{name}-{n}-{}", std::process::id()),
        payload: payload.as_bytes().to_vec().into(),
        headers: HashMap::new(),
        options: Some(proto::Options {
            priority: 10,
            pipeline: pipeline.into(),
            ..Default::default()
        }),
    }
}

const MEM: &str = "  num_pollers: 2\n  pool:\n    num_workers: 2\n    destroy_timeout: 2s\n  consume: [mem]\n  pipelines:\n    mem: {driver: memory, config: {priority: 10, prefetch: 100}}\n";

#[test]
fn memory_jobs_reach_php_with_their_context_and_are_acked() {
    let j = Jobs::start(MEM);
    let mut batch: Vec<proto::Job> = (0..200)
        .map(|i| job("ok", "mem", &format!("p{i}")))
        .collect();
    batch[0].headers.insert(
        "x-trace".into(),
        proto::HeaderValue {
            value: vec!["t1".into(), "t2".into()],
        },
    );
    let first = batch[0].id.clone();
    let ids: Vec<String> = batch.iter().map(|b| b.id.clone()).collect();
    j.push(batch).expect("push");
    j.wait_acked(&ids, 30);
    let events = j.events();
    let e = events
        .iter()
        .find(|e| e["id"] == first.as_str())
        .expect("first job");
    assert_eq!(e["job"], "ok");
    assert_eq!(e["pipeline"], "mem");
    assert_eq!(e["driver"], "memory");
    assert_eq!(e["payload"], "p0");
    assert_eq!(e["flags"], 4, "a job frame is RAW (0x04)");
    assert_eq!(e["headers"]["x-trace"], serde_json::json!(["t1", "t2"]));
    let others = events
        .iter()
        .find(|e| e["id"] != first.as_str())
        .expect("another");
    assert!(others["headers"].is_null(), "no headers is null: {others}");
    // Each job once: no duplicates on the happy path.
    assert!(j.acked().values().all(|n| *n == 1));
    // Metrics count them per pipeline.
    let m = j.metrics();
    assert!(
        m.contains("courser_jobs_pushed_total{pipeline=\"mem\"} 200"),
        "{m}"
    );
    assert!(wait_for(Duration::from_secs(5), || j
        .metrics()
        .contains("courser_jobs_acked_total{pipeline=\"mem\"} 200")));
}

#[test]
fn nack_requeue_crash_and_error_frames_redeliver_and_drops_do_not() {
    let j = Jobs::start(MEM);
    let jobs = vec![
        job("nack-once", "mem", ""),
        job("crash-once", "mem", ""),
        job("error-once", "mem", ""),
        job("requeue-once", "mem", "1"),
        job("complete", "mem", ""),
    ];
    let ids: Vec<String> = jobs.iter().map(|b| b.id.clone()).collect();
    let drop = job("nack-drop", "mem", "");
    let garbage = job("garbage", "mem", "");
    let (drop_id, garbage_id) = (drop.id.clone(), garbage.id.clone());
    j.push(jobs).expect("push");
    j.push(vec![drop, garbage]).expect("push");
    j.wait_acked(&ids, 30);
    let events = j.events();
    let of = |id: &str| -> Vec<&Value> { events.iter().filter(|e| e["id"] == id).collect() };
    // The requeued copy carries the merged header and came after its delay.
    let rq = of(&ids[3]);
    assert_eq!(rq.len(), 2, "{rq:?}");
    assert_eq!(rq[1]["headers"]["attempt"], serde_json::json!(["2"]));
    let waited = rq[1]["t"].as_f64().unwrap_or(0.0) - rq[0]["t"].as_f64().unwrap_or(0.0);
    assert!(
        waited >= 0.9,
        "requeued with delay 1 s came after {waited:.2} s"
    );
    // A dropped nack is not delivered again; garbage is logged with the job id and acked.
    assert!(wait_for(Duration::from_secs(5), || j
        .log()
        .contains("job malformed")
        && j.log().contains(&garbage_id)));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        of(&drop_id).len(),
        1,
        "a nack without requeue was delivered again"
    );
    assert_eq!(
        j.events()
            .iter()
            .filter(|e| e["id"] == garbage_id.as_str())
            .count(),
        1
    );
    let log = j.log();
    assert!(log.contains("crashed while running the job"), "{log}");
    assert!(log.contains("something broke in PHP"), "{log}");
}

#[test]
fn priority_orders_jobs_and_delay_holds_them_back() {
    let j = Jobs::start(
        "  num_pollers: 1\n  pool:\n    num_workers: 1\n  consume: [mem]\n  pipelines:\n    mem: {driver: memory, config: {prefetch: 1}}\n",
    );
    j.pipelines("jobs.Pause", &["mem"]).expect("pause");
    let mut jobs = Vec::new();
    for (name, prio) in [("ok", 50), ("ok", 1), ("ok", 20)] {
        let mut b = job(name, "mem", &prio.to_string());
        if let Some(o) = b.options.as_mut() {
            o.priority = prio;
        }
        jobs.push(b);
    }
    let ids: Vec<String> = jobs.iter().map(|b| b.id.clone()).collect();
    j.push(jobs).expect("push");
    j.pipelines("jobs.Resume", &["mem"]).expect("resume");
    j.wait_acked(&ids, 20);
    let order: Vec<String> = j
        .events()
        .iter()
        .map(|e| e["payload"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(order, vec!["1", "20", "50"], "lower priority first");

    let mut d = job("ok", "mem", "delayed");
    if let Some(o) = d.options.as_mut() {
        o.delay = 2;
    }
    let id = d.id.clone();
    let pushed = Instant::now();
    j.push(vec![d]).expect("push");
    std::thread::sleep(Duration::from_millis(1200));
    assert!(!j.acked().contains_key(&id), "a 2 s delay ran after 1.2 s");
    assert_eq!(j.stats()["mem"].delayed, 1);
    j.wait_acked(std::slice::from_ref(&id), 10);
    assert!(pushed.elapsed() >= Duration::from_secs(2));
}

#[test]
fn bad_pushes_are_errors_and_nothing_of_a_bad_batch_is_pushed() {
    let j = Jobs::start(MEM);
    let e = j
        .push(vec![job("ok", "nope", "")])
        .err()
        .unwrap_or_default();
    assert!(e.contains("no such pipeline") && e.contains("nope"), "{e}");
    let mut no_id = job("ok", "mem", "");
    no_id.id.clear();
    let e = j.push(vec![no_id]).err().unwrap_or_default();
    assert!(e.contains("must have an id"), "{e}");
    let good = job("ok", "mem", "");
    let good_id = good.id.clone();
    let e = j
        .push(vec![good, job("ok", "nope", "")])
        .err()
        .unwrap_or_default();
    assert!(
        e.contains("job 1") && e.contains("nothing was pushed"),
        "{e}"
    );
    let e = j
        .call_flags("jobs.Push", 0x08, b"{}")
        .err()
        .unwrap_or_default();
    assert!(e.contains("protobuf"), "{e}");
    let e = j.call("jobs.Push", b"\xff\xff").err().unwrap_or_default();
    assert!(e.contains("jobs.v1.PushRequest"), "{e}");
    let e = j
        .pipelines("jobs.Pause", &["nope"])
        .err()
        .unwrap_or_default();
    assert!(e.contains("no such pipeline"), "{e}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(!j.acked().contains_key(&good_id));
    // And the server still serves.
    let ok = job("ok", "mem", "");
    let id = ok.id.clone();
    j.push(vec![ok]).expect("push");
    j.wait_acked(&[id], 10);
}

#[test]
fn list_stat_declare_destroy_and_the_cli() {
    let j = Jobs::start(MEM);
    assert_eq!(j.pipelines("jobs.List", &[]).expect("list"), vec!["mem"]);
    let decl = proto::DeclareRequest {
        pipeline: [
            ("name", "extra"),
            ("driver", "memory"),
            ("priority", "3"),
            ("prefetch", "5"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
    };
    j.call("jobs.Declare", &decl.encode_to_vec())
        .expect("declare");
    let e = j
        .call("jobs.Declare", &decl.encode_to_vec())
        .err()
        .unwrap_or_default();
    assert!(e.contains("already exists"), "{e}");
    let b = job("ok", "extra", "");
    let id = b.id.clone();
    j.push(vec![b]).expect("push to declared");
    j.wait_acked(&[id], 10);
    let st = j.stats();
    assert_eq!(st["extra"].driver, "memory");
    assert_eq!(st["extra"].priority, 3);
    assert!(st["extra"].ready);
    j.pipelines("jobs.Pause", &["extra"]).expect("pause");
    assert!(!j.stats()["extra"].ready);
    let (ok, out) = j.cli(&["jobs", "list"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("mem") && out.contains("extra") && out.contains("paused"),
        "{out}"
    );
    let (ok, out) = j.cli(&["jobs", "resume", "extra"]);
    assert!(ok, "{out}");
    assert!(j.stats()["extra"].ready);
    assert_eq!(
        j.pipelines("jobs.Destroy", &["extra"]).expect("destroy"),
        vec!["extra"]
    );
    assert_eq!(j.pipelines("jobs.List", &[]).expect("list"), vec!["mem"]);
    let (_, out) = j.cli(&["workers", "jobs"]);
    assert!(out.contains("Workers of [jobs]"), "{out}");
    let ready = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("http://127.0.0.1:{}/ready?plugin=jobs", j.status),
        ])
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&ready.stdout), "200");
}

#[test]
fn boltdb_jobs_survive_kill_9_of_courser() {
    let mut j = Jobs::start(
        "  pool:\n    num_workers: 2\n  consume: [bolt]\n  pipelines:\n    bolt: {driver: boltdb, config: {file: $DIR/jobs.db, prefetch: 50}}\n",
    );
    j.pipelines("jobs.Pause", &["bolt"]).expect("pause");
    let jobs: Vec<proto::Job> = (0..300)
        .map(|i| job("ok", "bolt", &i.to_string()))
        .collect();
    let ids: Vec<String> = jobs.iter().map(|b| b.id.clone()).collect();
    j.push(jobs).expect("push");
    let mut delayed = job("ok", "bolt", "late");
    if let Some(o) = delayed.options.as_mut() {
        o.delay = 3;
    }
    let late = delayed.id.clone();
    j.push(vec![delayed]).expect("push");
    let _ = j.child.kill(); // SIGKILL
    let _ = j.child.wait();
    assert!(j.acked().is_empty(), "paused jobs ran");
    j.restart();
    j.wait_acked(&ids, 60);
    j.wait_acked(std::slice::from_ref(&late), 20);
    assert!(
        j.acked().values().all(|n| *n == 1),
        "duplicates after restart"
    );
    // Acked jobs are gone from the file: another restart delivers nothing again.
    let _ = j.child.kill();
    let _ = j.child.wait();
    let before = j.events().len();
    j.restart();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        j.events().len(),
        before,
        "acked jobs came back after a restart"
    );
}

#[test]
fn sigterm_lets_a_running_job_finish_and_jobs_without_http_run() {
    let j = Jobs::start(
        "  pool:\n    num_workers: 1\n  consume: [bolt]\n  pipelines:\n    bolt: {driver: boltdb, config: {file: $DIR/jobs.db}}\n",
    );
    let slow = job("slow", "bolt", "2");
    let id = slow.id.clone();
    j.push(vec![slow]).expect("push");
    assert!(wait_for(Duration::from_secs(10), || j
        .events()
        .iter()
        .any(|e| e["event"] == "start")));
    let t = Instant::now();
    let ok = Command::new("kill")
        .args(["-TERM", &j.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(ok.success());
    let mut j = j;
    let status = j.child.wait().expect("wait");
    assert!(status.success(), "exit {status}; log:\n{}", j.log());
    assert!(t.elapsed() < Duration::from_secs(10));
    assert_eq!(
        j.acked().get(&id),
        Some(&1),
        "the running job finished before the exit"
    );
    let log = j.log();
    assert!(log.contains("jobs stopped"), "{log}");
    let _: PathBuf = j.dir.path().join("jobs.db");
}
