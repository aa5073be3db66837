//! `pool-roundtrip`: job round trips through real `php` workers over pipes.
//!
//! One round trip sends one job frame (a small JSON context and a short body) and
//! reads the response frame. Scenarios:
//!
//! - `worker-direct`: one `courser_worker::Worker` driven in a loop, no pool (the floor);
//! - `worker-direct-2w`: two workers, each driven directly by its own task (the floor
//!   for `pool-2w-c2`);
//! - `pool-1w-c1`: a pool of 1 worker, 1 caller task;
//! - `pool-2w-c2`: a pool of 2 workers, 2 caller tasks;
//! - `pool-2w-c8`: a pool of 2 workers, 8 caller tasks (callers queue for workers).
//!
//! For each it reports round trips per second, mean and p99 latency, and the CPU
//! time per round trip of this process (the server side: pool, worker, relay, frame
//! code plus the caller loop) and of the PHP workers, read from
//! `/proc/<pid>/schedstat` (nanoseconds on CPU) before and after the measurement.
//! Every scenario runs `--runs` times, interleaved; the table shows the median of
//! each column. Results also go to `bench/results/pool-roundtrip-<UTC date>.json`.

use anyhow::{bail, ensure, Context, Result};
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use courser_frame::{flags, Limits};
use courser_pool::{Payload, Pool, PoolConfig, Reply};
use courser_worker::{RelayMode, SpawnSpec, Worker};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The job context: what the HTTP front would send for `GET /`, trimmed.
const CONTEXT: &[u8] = br#"{"method":"GET","uri":"/"}"#;
/// The job body.
const BODY: &[u8] = b"Hello, World!";
/// The context both PHP workers answer with.
const REPLY_CONTEXT: &[u8] = br#"{"status":200,"headers":{}}"#;

#[derive(Parser, Debug)]
#[command(
    name = "pool-roundtrip",
    about = "Job round trips through real php workers over pipes: a worker driven directly, and pools of 1 and 2 workers."
)]
struct Args {
    /// Measured seconds per scenario and run.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Warm-up seconds before each measurement (not counted).
    #[arg(long, default_value_t = 0.5)]
    warmup: f64,
    /// Runs of every scenario (interleaved); the table shows the median of each column.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Tokio runtime worker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Repository root (holds php/ and bench/); defaults to the one this binary was built from.
    #[arg(long)]
    root: Option<PathBuf>,
    /// The PHP binary.
    #[arg(long, default_value = "php")]
    php: String,
    /// Scenarios to run, comma separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "worker-direct,pool-1w-c1,worker-direct-2w,pool-2w-c2,pool-2w-c8"
    )]
    scenario: Vec<Scenario>,
    /// PHP workers to run them with, comma separated: `echo` (bench/php/echo.php, on the SDK)
    /// and `echo-raw` (bench/php/echo-raw.php, a bare protocol loop).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "echo-raw,echo"
    )]
    worker: Vec<PhpWorker>,
    /// Where to write the JSON results (default: <root>/bench/results/pool-roundtrip-<UTC date>.json).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Do not write the JSON results.
    #[arg(long)]
    no_json: bool,
    /// Before each measurement, wait up to this many seconds for the machine to be
    /// quiet (other processes using under 0.1 CPU over one second). 0: do not wait.
    #[arg(long, default_value_t = 0.0)]
    wait_quiet: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
enum Scenario {
    #[value(name = "worker-direct")]
    WorkerDirect,
    #[value(name = "pool-1w-c1")]
    Pool1wC1,
    #[value(name = "worker-direct-2w")]
    WorkerDirect2w,
    #[value(name = "pool-2w-c2")]
    Pool2wC2,
    #[value(name = "pool-2w-c8")]
    Pool2wC8,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::WorkerDirect => "worker-direct",
            Scenario::Pool1wC1 => "pool-1w-c1",
            Scenario::WorkerDirect2w => "worker-direct-2w",
            Scenario::Pool2wC2 => "pool-2w-c2",
            Scenario::Pool2wC8 => "pool-2w-c8",
        }
    }
    /// Whether a pool is used, the number of workers, and caller tasks (without a
    /// pool, one task per worker).
    fn shape(self) -> (bool, usize, usize) {
        match self {
            Scenario::WorkerDirect => (false, 1, 1),
            Scenario::Pool1wC1 => (true, 1, 1),
            Scenario::WorkerDirect2w => (false, 2, 2),
            Scenario::Pool2wC2 => (true, 2, 2),
            Scenario::Pool2wC8 => (true, 2, 8),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
enum PhpWorker {
    /// bench/php/echo-raw.php: a bare loop speaking the protocol.
    #[value(name = "echo-raw")]
    Raw,
    /// bench/php/echo.php: Courser's PHP SDK.
    #[value(name = "echo")]
    Sdk,
}

impl PhpWorker {
    fn script(self) -> &'static str {
        match self {
            PhpWorker::Raw => "echo-raw.php",
            PhpWorker::Sdk => "echo.php",
        }
    }
    fn label(self) -> &'static str {
        match self {
            PhpWorker::Raw => "echo-raw.php (bare loop)",
            PhpWorker::Sdk => "echo.php (SDK)",
        }
    }
}

/// One measurement of one scenario.
#[derive(Clone, Debug)]
struct Sample {
    round_trips: u64,
    wall: Duration,
    mean_us: f64,
    p50_us: f64,
    p99_us: f64,
    server_cpu_ns: u64,
    php_cpu_ns: u64,
    /// Coarse cross-check of `server_cpu_ns` from /proc/self/stat (clock ticks), in ns.
    server_cpu_stat_ns: u64,
    /// CPU time used by everything else on the machine meanwhile (from /proc/stat), in ns.
    background_cpu_ns: u64,
    /// Time the hypervisor ran something else on our CPUs (steal), in ns.
    steal_ns: u64,
    jobs_per_worker: Vec<u64>,
}

impl Sample {
    fn per_rt_us(&self, ns: u64) -> f64 {
        ns as f64 / 1000.0 / self.round_trips.max(1) as f64
    }
    fn metrics(&self) -> BTreeMap<&'static str, f64> {
        let wall = self.wall.as_secs_f64();
        let mut m = BTreeMap::new();
        m.insert("round_trips_per_s", self.round_trips as f64 / wall);
        m.insert("mean_us", self.mean_us);
        m.insert("p50_us", self.p50_us);
        m.insert("p99_us", self.p99_us);
        m.insert("server_cpu_us_per_rt", self.per_rt_us(self.server_cpu_ns));
        m.insert("php_cpu_us_per_rt", self.per_rt_us(self.php_cpu_ns));
        m.insert(
            "total_cpu_us_per_rt",
            self.per_rt_us(self.server_cpu_ns + self.php_cpu_ns),
        );
        m.insert(
            "server_cpu_us_per_rt_stat",
            self.per_rt_us(self.server_cpu_stat_ns),
        );
        m.insert("server_cores_busy", self.server_cpu_ns as f64 / 1e9 / wall);
        m.insert("php_cores_busy", self.php_cpu_ns as f64 / 1e9 / wall);
        m.insert(
            "background_cores_busy",
            self.background_cpu_ns as f64 / 1e9 / wall,
        );
        m.insert("steal_cores", self.steal_ns as f64 / 1e9 / wall);
        m
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(args.seconds > 0.0, "--seconds must be positive");
    ensure!(args.warmup >= 0.0, "--warmup must not be negative");
    ensure!(args.runs > 0, "--runs must be at least 1");
    ensure!(args.threads > 0, "--threads must be at least 1");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    rt.block_on(run(args))
}

async fn run(args: Args) -> Result<()> {
    let root = match &args.root {
        Some(r) => r.clone(),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."),
    };
    let root = root
        .canonicalize()
        .with_context(|| format!("repository root {}", root.display()))?;
    for w in &args.worker {
        let script = root.join("bench/php").join(w.script());
        ensure!(
            script.is_file(),
            "{} is missing; pass --root <repository root>",
            script.display()
        );
    }
    let php_version = php_version(&args.php)?;
    let clk_tck = clock_ticks();
    let payload = Payload {
        flags: flags::CODEC_JSON,
        context: Bytes::from_static(CONTEXT),
        body: Bytes::from_static(BODY),
    };
    eprintln!(
        "pool-roundtrip: {} s per measurement after {} s warm-up, {} run(s), {} tokio worker thread(s), {php_version}",
        args.seconds, args.warmup, args.runs, args.threads
    );

    let mut results: BTreeMap<(PhpWorker, Scenario), Vec<Sample>> = BTreeMap::new();
    for run in 1..=args.runs {
        for &worker in &args.worker {
            for &scenario in &args.scenario {
                if args.wait_quiet > 0.0 {
                    wait_quiet(Duration::from_secs_f64(args.wait_quiet), clk_tck).await?;
                }
                let s = measure(&args, &root, worker, scenario, &payload, clk_tck)
                    .await
                    .with_context(|| {
                        format!("{} with {}, run {run}", scenario.name(), worker.script())
                    })?;
                let m = s.metrics();
                eprintln!(
                    "run {run}/{}  {:<16} {:<13} {:>9.0} rt/s  mean {:>6.1} µs  p99 {:>6.1} µs  CPU/rt server {:>5.2} + php {:>5.2} = {:>5.2} µs  (others {:.2} cores)",
                    args.runs,
                    scenario.name(),
                    worker.script(),
                    m["round_trips_per_s"],
                    m["mean_us"],
                    m["p99_us"],
                    m["server_cpu_us_per_rt"],
                    m["php_cpu_us_per_rt"],
                    m["total_cpu_us_per_rt"],
                    m["background_cores_busy"],
                );
                results.entry((worker, scenario)).or_default().push(s);
                // Let the stopped workers leave before the next scenario starts.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    let (date, time) = utc_now();
    println!("{}", table(&results, args.runs));
    if !args.no_json {
        let out = args.out.clone().unwrap_or_else(|| {
            root.join("bench/results")
                .join(format!("pool-roundtrip-{date}.json"))
        });
        let doc = json!({
            "benchmark": "pool-roundtrip",
            "utc": format!("{date}T{time}Z"),
            "machine": machine(),
            "php": php_version,
            "settings": {
                "seconds": args.seconds,
                "warmup_seconds": args.warmup,
                "runs": args.runs,
                "tokio_worker_threads": args.threads,
                "relay": "pipes",
                "context": String::from_utf8_lossy(CONTEXT),
                "body": String::from_utf8_lossy(BODY),
                "summary": "median of each metric over the runs",
                "wait_quiet_seconds": args.wait_quiet,
            },
            "results": results.iter().map(|((w, s), samples)| json!({
                "scenario": s.name(),
                "php_worker": w.script(),
                "median": medians(samples),
                "runs": samples.iter().map(sample_json).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        });
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let text = serde_json::to_string_pretty(&doc).context("encoding the results")?;
        std::fs::write(&out, text + "\n").with_context(|| format!("writing {}", out.display()))?;
        eprintln!("results written to {}", out.display());
    }
    Ok(())
}

fn spawn_spec(args: &Args, root: &Path, worker: PhpWorker) -> SpawnSpec {
    let dir = root.join("bench/php");
    SpawnSpec {
        command: vec![
            args.php.clone(),
            dir.join(worker.script()).display().to_string(),
        ],
        env: vec![
            ("RR_RELAY".into(), "pipes".into()),
            ("RR_MODE".into(), "http".into()),
        ],
        cwd: Some(dir),
        relay: RelayMode::Pipes,
        limits: Limits::default(),
        boot_timeout: Duration::from_secs(10),
        pool: "bench".into(),
        uid: None,
        gid: None,
        on_exit: None,
    }
}

fn check_reply(context: &[u8], body: &[u8]) -> Result<()> {
    ensure!(
        context == REPLY_CONTEXT && body == BODY,
        "unexpected reply: context {:?}, body {:?}",
        String::from_utf8_lossy(context),
        String::from_utf8_lossy(body)
    );
    Ok(())
}

/// CPU time of this process and of the workers, sampled together.
struct CpuSnapshot {
    server_ns: u64,
    server_stat_ticks: u64,
    php_ns: u64,
    system: SystemTicks,
}

fn snapshot(worker_pids: &[u32]) -> Result<CpuSnapshot> {
    let mut php_ns = 0;
    for &pid in worker_pids {
        php_ns += schedstat_ns(&format!("/proc/{pid}/schedstat"))?;
    }
    Ok(CpuSnapshot {
        server_ns: process_cpu_ns()?,
        server_stat_ticks: stat_ticks()?,
        php_ns,
        system: system_ticks()?,
    })
}

async fn measure(
    args: &Args,
    root: &Path,
    worker: PhpWorker,
    scenario: Scenario,
    payload: &Payload,
    clk_tck: u64,
) -> Result<Sample> {
    let spec = spawn_spec(args, root, worker);
    let warmup = Duration::from_secs_f64(args.warmup);
    let secs = Duration::from_secs_f64(args.seconds);
    let (pooled, n, callers) = scenario.shape();
    let (before, after, started, wall, mut lat, jobs_per_worker);
    if !pooled {
        let mut workers = Vec::with_capacity(n);
        for _ in 0..n {
            let mut w = Worker::spawn(&spec).await.context("starting a worker")?;
            w.start_job(payload)
                .await
                .context("sending the first job")?;
            match w.next_reply().await.context("reading the first reply")? {
                Reply::Final(r) => check_reply(&r.context, &r.body)?,
                Reply::Chunk(_) => bail!("the worker streamed its reply"),
            }
            workers.push(w);
        }
        let pids: Vec<u32> = workers.iter().map(Worker::pid).collect();
        (workers, _) = direct_loops(workers, payload, Instant::now() + warmup).await?;
        before = snapshot(&pids)?;
        started = Instant::now();
        (workers, lat) = direct_loops(workers, payload, started + secs).await?;
        wall = started.elapsed();
        after = snapshot(&pids)?;
        jobs_per_worker = workers.iter().map(|w| w.info().jobs()).collect();
        for w in workers {
            w.stop(Duration::from_secs(5)).await;
        }
    } else {
        let cfg = PoolConfig {
            num_workers: n,
            allocate_timeout: Duration::from_secs(60),
            destroy_timeout: Duration::from_secs(5),
            ..Default::default()
        };
        let pool = Pool::start("bench", cfg, spec)
            .await
            .context("starting the pool")?;
        let r = pool
            .exec(payload.clone())
            .await
            .context("the first job failed")?;
        check_reply(&r.context, &r.body)?;
        let pids: Vec<u32> = pool.workers().iter().map(|w| w.pid).collect();
        ensure!(
            pids.len() == n,
            "the pool has {} workers, expected {n}",
            pids.len()
        );
        pool_callers(&pool, callers, payload, Instant::now() + warmup).await?;
        let jobs_before: Vec<u64> = pool.workers().iter().map(|w| w.jobs).collect();
        before = snapshot(&pids)?;
        started = Instant::now();
        lat = pool_callers(&pool, callers, payload, started + secs).await?;
        wall = started.elapsed();
        after = snapshot(&pids)?;
        let now = pool.workers();
        let now_pids: Vec<u32> = now.iter().map(|w| w.pid).collect();
        ensure!(
            now_pids == pids,
            "the pool replaced workers during the measurement ({pids:?} -> {now_pids:?})"
        );
        jobs_per_worker = now
            .iter()
            .zip(&jobs_before)
            .map(|(w, b)| w.jobs - b)
            .collect();
        pool.stop(Duration::from_secs(5)).await;
    }
    ensure!(!lat.is_empty(), "no round trip completed");
    let tick_ns = |t: u64| t * 1_000_000_000 / clk_tck;
    let server_cpu_ns = after.server_ns.saturating_sub(before.server_ns);
    let php_cpu_ns = after.php_ns.saturating_sub(before.php_ns);
    let busy_ns = tick_ns(after.system.busy.saturating_sub(before.system.busy));
    let n = lat.len();
    let sum: u64 = lat.iter().sum();
    let p99_idx = ((n as f64 * 0.99).ceil() as usize).clamp(1, n) - 1;
    let p99 = *lat.select_nth_unstable(p99_idx).1;
    let p50_idx = n / 2;
    let p50 = *lat.select_nth_unstable(p50_idx).1;
    Ok(Sample {
        round_trips: n as u64,
        wall,
        mean_us: sum as f64 / n as f64 / 1000.0,
        p50_us: p50 as f64 / 1000.0,
        p99_us: p99 as f64 / 1000.0,
        server_cpu_ns,
        php_cpu_ns,
        server_cpu_stat_ns: tick_ns(
            after
                .server_stat_ticks
                .saturating_sub(before.server_stat_ticks),
        ),
        background_cpu_ns: busy_ns.saturating_sub(server_cpu_ns + php_cpu_ns),
        steal_ns: tick_ns(after.system.steal.saturating_sub(before.system.steal)),
        jobs_per_worker,
    })
}

fn capacity(until: Instant, callers: usize) -> usize {
    // Room for ~150k round trips per second, so the latency log rarely grows mid-run.
    let secs = until
        .saturating_duration_since(Instant::now())
        .as_secs_f64();
    ((secs * 150_000.0) as usize / callers.max(1)).min(4_000_000) + 1024
}

/// Drives each worker directly from its own task until `until`; returns the
/// workers and every round trip's latency in nanoseconds.
async fn direct_loops(
    workers: Vec<Worker>,
    payload: &Payload,
    until: Instant,
) -> Result<(Vec<Worker>, Vec<u64>)> {
    let tasks: Vec<_> = workers
        .into_iter()
        .map(|w| tokio::spawn(direct_loop(w, payload.clone(), until)))
        .collect();
    let mut workers = Vec::with_capacity(tasks.len());
    let mut all = Vec::new();
    for t in tasks {
        let (w, lat) = t.await.context("a driving task panicked")??;
        workers.push(w);
        all.extend(lat);
    }
    Ok((workers, all))
}

/// Drives one worker directly: send a job, read the reply, until `until`.
async fn direct_loop(
    mut w: Worker,
    payload: Payload,
    until: Instant,
) -> Result<(Worker, Vec<u64>)> {
    let mut lat = Vec::with_capacity(capacity(until, 1));
    while Instant::now() < until {
        let t0 = Instant::now();
        w.start_job(&payload).await.context("sending a job")?;
        match w.next_reply().await.context("reading a reply")? {
            Reply::Final(_) => {}
            Reply::Chunk(_) => bail!("the worker streamed its reply"),
        }
        lat.push(t0.elapsed().as_nanos() as u64);
    }
    Ok((w, lat))
}

/// Runs `callers` tasks that each call `pool.exec` in a loop until `until`;
/// returns every round trip's latency in nanoseconds.
async fn pool_callers(
    pool: &Pool,
    callers: usize,
    payload: &Payload,
    until: Instant,
) -> Result<Vec<u64>> {
    let mut tasks = Vec::with_capacity(callers);
    for _ in 0..callers {
        let pool = pool.clone();
        let payload = payload.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(capacity(until, callers));
            while Instant::now() < until {
                let t0 = Instant::now();
                pool.exec(payload.clone())
                    .await
                    .context("a pool job failed")?;
                lat.push(t0.elapsed().as_nanos() as u64);
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.context("a caller task panicked")??);
    }
    Ok(all)
}

/// Field 1 of a schedstat file: nanoseconds spent on a CPU.
fn schedstat_ns(path: &str) -> Result<u64> {
    let s = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    s.split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("unexpected contents of {path}: {s:?}"))
}

/// CPU time of every live thread of this process, in nanoseconds.
fn process_cpu_ns() -> Result<u64> {
    let mut total = 0;
    let dir = std::fs::read_dir("/proc/self/task").context("listing /proc/self/task")?;
    for e in dir {
        let e = e.context("listing /proc/self/task")?;
        let path = e.path().join("schedstat");
        match schedstat_ns(&path.display().to_string()) {
            Ok(ns) => total += ns,
            // A thread that ended between listing and reading.
            Err(_) if !e.path().exists() => {}
            Err(err) => return Err(err),
        }
    }
    Ok(total)
}

/// utime + stime of this process from /proc/self/stat, in clock ticks (includes ended threads).
fn stat_ticks() -> Result<u64> {
    let s = std::fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?;
    // The command name (field 2) may hold spaces; fields after it start past the last ')'.
    let rest = s
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("unexpected /proc/self/stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime field 15.
    let get = |i: usize| -> Result<u64> {
        f.get(i - 3)
            .and_then(|v| v.parse().ok())
            .context("unexpected /proc/self/stat")
    };
    Ok(get(14)? + get(15)?)
}

/// Machine-wide CPU time from the first line of /proc/stat, in clock ticks.
#[derive(Clone, Copy)]
struct SystemTicks {
    /// Everything but idle, iowait and steal.
    busy: u64,
    /// Time the hypervisor gave our virtual CPUs to someone else.
    steal: u64,
}

fn system_ticks() -> Result<SystemTicks> {
    let s = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let line = s
        .lines()
        .next()
        .filter(|l| l.starts_with("cpu "))
        .context("unexpected /proc/stat")?;
    // user nice system idle iowait irq softirq steal guest guest_nice
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    let get = |i: usize| f.get(i).copied().unwrap_or(0);
    Ok(SystemTicks {
        busy: get(0) + get(1) + get(2) + get(5) + get(6),
        steal: get(7),
    })
}

/// Waits until other processes use less than 0.1 CPU over one second, at most `limit`.
async fn wait_quiet(limit: Duration, clk_tck: u64) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let a = system_ticks()?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let b = system_ticks()?;
        let cores = (b.busy.saturating_sub(a.busy)) as f64 / clk_tck as f64;
        if cores < 0.1 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            eprintln!(
                "the machine is still busy ({cores:.2} cores used by others); measuring anyway"
            );
            return Ok(());
        }
    }
}

fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

fn php_version(php: &str) -> Result<String> {
    let out = std::process::Command::new(php)
        .arg("-v")
        .output()
        .with_context(|| format!("running `{php} -v`; is php-cli installed?"))?;
    ensure!(out.status.success(), "`{php} -v` failed: {}", out.status);
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string())
}

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_default();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let allowed = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(|v| v.trim().to_string())
        .unwrap_or_default();
    json!({
        // Usable by this process (affinity-aware, e.g. 1 under `taskset -c 0`).
        "cpus": std::thread::available_parallelism().map(usize::from).unwrap_or(0),
        "cpus_online": cpuinfo.lines().filter(|l| l.starts_with("processor")).count(),
        "cpus_allowed": allowed,
        "cpu_model": model,
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn medians(samples: &[Sample]) -> BTreeMap<&'static str, f64> {
    let all: Vec<_> = samples.iter().map(Sample::metrics).collect();
    let mut out = BTreeMap::new();
    if let Some(first) = all.first() {
        for &k in first.keys() {
            out.insert(k, median(all.iter().map(|m| m[k]).collect()));
        }
    }
    out
}

fn sample_json(s: &Sample) -> Value {
    json!({
        "round_trips": s.round_trips,
        "wall_s": s.wall.as_secs_f64(),
        "metrics": s.metrics(),
        "server_cpu_ns": s.server_cpu_ns,
        "php_cpu_ns": s.php_cpu_ns,
        "background_cpu_ns": s.background_cpu_ns,
        "steal_ns": s.steal_ns,
        "jobs_per_worker": s.jobs_per_worker,
    })
}

fn table(results: &BTreeMap<(PhpWorker, Scenario), Vec<Sample>>, runs: usize) -> String {
    let mut t = String::new();
    let what = if runs == 1 {
        "one run".to_string()
    } else {
        format!("median of {runs} runs, each column separately")
    };
    let _ = writeln!(
        t,
        "\nJob round trips over pipes ({what}); CPU is µs per round trip.\n"
    );
    let _ = writeln!(
        t,
        "| scenario | PHP worker | round trips/s | mean µs | p99 µs | server CPU µs | PHP CPU µs | total CPU µs |"
    );
    let _ = writeln!(t, "|---|---|--:|--:|--:|--:|--:|--:|");
    for ((w, s), samples) in results {
        let m = medians(samples);
        let _ = writeln!(
            t,
            "| {} | {} | {:.0} | {:.1} | {:.1} | {:.2} | {:.2} | {:.2} |",
            s.name(),
            w.label(),
            m["round_trips_per_s"],
            m["mean_us"],
            m["p99_us"],
            m["server_cpu_us_per_rt"],
            m["php_cpu_us_per_rt"],
            m["total_cpu_us_per_rt"],
        );
    }
    t
}

/// The UTC date (`YYYY-MM-DD`) and time (`HH:MM:SS`) now.
fn utc_now() -> (String, String) {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        format!("{y:04}-{m:02}-{d:02}"),
        format!("{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60),
    )
}
