//! The shared end-to-end harness: the real `courser` binary with real `php`
//! workers, a raw HTTP/1.1 client, polling and shell helpers.
//!
//! Each test file that uses it declares `mod common;`; not every file uses
//! every helper.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The server binary under test.
pub fn courser() -> &'static str {
    env!("CARGO_BIN_EXE_courser")
}

/// A PHP worker script under `tests/php/`.
pub fn php_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/php")
        .join(name)
}

/// The general-purpose test worker (`tests/php/http_worker.php`).
pub fn worker_script() -> PathBuf {
    php_script("http_worker.php")
}

/// A file of the PHP SDK (`php/…` at the repository root).
pub fn sdk_file(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../php")
        .join(rel)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A running `courser serve`, killed when dropped.
pub struct Server {
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
    /// Holds the config, the log and anything a test puts there.
    pub dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// The standard config with `tests/php/http_worker.php`; `extra` goes at
    /// the top level of the YAML.
    pub fn start(extra: &str) -> Server {
        Server::start_with(extra, "mark-42", &[], None)
    }

    pub fn start_with(extra: &str, mark: &str, args: &[&str], dotenv: Option<&str>) -> Server {
        Server::from_yaml(
            |port, _| {
                format!(
                    "version: \"3\"\nserver:\n  command: \"php {}\"\n  env:\n    APP_MARK: \"{mark}\"\n{extra}\nhttp:\n  address: 127.0.0.1:{port}\n  pool:\n    num_workers: 2\n    allocate_timeout: 5s\n    destroy_timeout: 2s\nlogs:\n  level: info\nendure:\n  grace_period: 5s\n",
                    worker_script().display()
                )
            },
            args,
            dotenv,
        )
    }

    /// Starts courser with the config `yaml(port, dir)` returns (`port` is free
    /// for `http.address`, `dir` is the server's temp dir) and waits until
    /// `GET /pid` gets any HTTP answer.
    pub fn from_yaml(
        yaml: impl FnOnce(u16, &Path) -> String,
        args: &[&str],
        dotenv: Option<&str>,
    ) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let cfg = dir.path().join(".rr.yaml");
        std::fs::write(&cfg, yaml(port, dir.path())).expect("write config");
        let log = dir.path().join("courser.log");
        let mut cmd = Command::new(courser());
        cmd.args(["serve", "-c"]).arg(&cfg).args(args);
        if let Some(text) = dotenv {
            let p = dir.path().join("app.env");
            std::fs::write(&p, text).expect("write dotenv");
            cmd.arg("--dotenv").arg(p);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn courser");
        let mut s = Server {
            child,
            port,
            log,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if get(s.port, "/pid").is_some() {
                return s;
            }
            if let Ok(Some(status)) = s.child.try_wait() {
                panic!("courser exited with {status}; log:\n{}", s.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("courser did not answer; log:\n{}", s.log_text());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs `courser ARGS -c <this server's config>` (`workers`, `reset`,
    /// `stop`, ...): whether it succeeded, and its stdout and stderr.
    pub fn cli(&self, args: &[&str]) -> (bool, String) {
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

    /// The log without ANSI colour sequences.
    pub fn plain_log(&self) -> String {
        let text = self.log_text();
        let mut out = String::with_capacity(text.len());
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args(["-s", sig, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(ok.success());
    }

    /// `http://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// Status, head (status line and headers) and decoded body.
pub type Resp = (u16, String, Vec<u8>);

/// A minimal HTTP/1.1 client: returns (status, headers, body).
pub fn request(port: u16, method: &str, path: &str, body: &[u8]) -> Option<Resp> {
    let head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nCookie: sid=abc123; theme=dark%20mode\r\nContent-Length: {}\r\n\r\n", body.len());
    let mut raw = head.into_bytes();
    raw.extend_from_slice(body);
    send_raw(port, &raw)
}

/// Writes `raw` (a whole request, which should say `Connection: close`) and
/// reads the answer until the server closes the connection.
pub fn send_raw(port: u16, raw: &[u8]) -> Option<Resp> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    s.write_all(raw).ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    parse_response(&buf)
}

/// Splits a complete HTTP/1.1 response; a chunked body is decoded.
pub fn parse_response(buf: &[u8]) -> Option<Resp> {
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let mut body = buf[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body)?;
    }
    Some((status, head, body))
}

/// Reads exactly one response with a `Content-Length` body from a kept-alive
/// connection.
pub fn read_one_response(s: &mut TcpStream) -> Option<Resp> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf[..buf.len() - 4]).into_owned();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let len: usize = header_value(&head, "content-length")?.parse().ok()?;
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).ok()?;
    Some((status, head, body))
}

/// The first value of header `name` (case-insensitive) in a response head.
pub fn header_value(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// Decodes a chunked HTTP/1.1 body.
pub fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = b.windows(2).position(|w| w == b"\r\n")?;
        let size = usize::from_str_radix(
            std::str::from_utf8(&b[..line_end])
                .ok()?
                .split(';')
                .next()?
                .trim(),
            16,
        )
        .ok()?;
        b = &b[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}

pub fn get(port: u16, path: &str) -> Option<Resp> {
    request(port, "GET", path, b"")
}

pub fn body_text(r: &Option<Resp>) -> String {
    r.as_ref()
        .map(|r| String::from_utf8_lossy(&r.2).into_owned())
        .unwrap_or_default()
}

pub fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

pub fn sh(cmd: &str) -> std::process::Output {
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .output()
        .expect("run sh")
}

/// A CA, a server certificate for localhost/127.0.0.1 and a client certificate.
pub fn make_certs(dir: &Path) {
    let d = dir.display();
    let script = format!(
        "cd {d} && \
         openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=courser-test-ca 2>/dev/null && \
         openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=localhost 2>/dev/null && \
         printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > san.ext && \
         openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 2 -extfile san.ext 2>/dev/null && \
         openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr -subj /CN=client 2>/dev/null && \
         printf 'extendedKeyUsage=clientAuth\\n' > client.ext && \
         openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out client.crt -days 2 -extfile client.ext 2>/dev/null"
    );
    let out = sh(&script);
    assert!(
        out.status.success(),
        "openssl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------
// Load generation and process inspection for the fault suite (tests/faults.rs).

/// One kept-alive HTTP/1.1 connection; reconnects after the server closes it.
pub struct KeepAlive {
    port: u16,
    conn: Option<std::io::BufReader<TcpStream>>,
}

/// How one request ended, as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// A complete response with this status.
    Status(u16, Vec<u8>),
    /// The connection failed or closed before a complete response.
    Dropped(String),
}

impl KeepAlive {
    pub fn new(port: u16) -> KeepAlive {
        KeepAlive { port, conn: None }
    }

    /// Sends `GET path` on the connection (opening one if needed) and reads
    /// the whole response.
    pub fn get(&mut self, path: &str) -> Seen {
        self.send("GET", path)
    }

    /// Sends `METHOD path` with an empty body on the connection (opening one
    /// if needed) and reads the whole response.
    pub fn send(&mut self, method: &str, path: &str) -> Seen {
        match self.try_get(method, path) {
            Ok((status, body, keep)) => {
                if !keep {
                    self.conn = None;
                }
                Seen::Status(status, body)
            }
            Err(e) => {
                self.conn = None;
                Seen::Dropped(e.to_string())
            }
        }
    }

    fn try_get(&mut self, method: &str, path: &str) -> std::io::Result<(u16, Vec<u8>, bool)> {
        use std::io::BufRead;
        if self.conn.is_none() {
            let s = TcpStream::connect(("127.0.0.1", self.port))?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(Duration::from_secs(30)))?;
            self.conn = Some(std::io::BufReader::new(s));
        }
        let bad =
            |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
        let Some(r) = self.conn.as_mut() else {
            return Err(bad("no connection"));
        };
        let req = if method == "GET" {
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        } else {
            format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n")
        };
        r.get_mut().write_all(req.as_bytes())?;
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed before a response",
            ));
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("bad status line"))?;
        let (mut len, mut chunked, mut keep) = (None, false, true);
        loop {
            line.clear();
            if r.read_line(&mut line)? == 0 {
                return Err(bad("connection closed in the head"));
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((n, v)) = l.split_once(':') {
                let (n, v) = (n.trim().to_ascii_lowercase(), v.trim().to_ascii_lowercase());
                match n.as_str() {
                    "content-length" => len = v.parse::<usize>().ok(),
                    "transfer-encoding" => chunked = v.contains("chunked"),
                    "connection" => keep = !v.contains("close"),
                    _ => {}
                }
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                r.read_line(&mut line)?;
                let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                    .map_err(|_| bad("bad chunk size"))?;
                let mut chunk = vec![0u8; size + 2];
                r.read_exact(&mut chunk)?;
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        } else if let Some(n) = len {
            body.resize(n, 0);
            r.read_exact(&mut body)?;
        } else {
            r.read_to_end(&mut body)?;
            keep = false;
        }
        Ok((status, body, keep))
    }
}

/// What a load run's clients saw.
#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    /// Requests sent.
    pub sent: u64,
    /// Requests answered 200.
    pub ok: u64,
    /// Responses by status.
    pub statuses: std::collections::BTreeMap<u16, u64>,
    /// Requests whose connection failed or closed without a response.
    pub dropped: u64,
    /// The first few reasons for dropped connections.
    pub drop_reasons: Vec<String>,
    /// Latency of every request.
    pub latencies: Vec<Duration>,
    /// Bodies of 200 responses, when the run kept them.
    pub bodies: Vec<String>,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl LoadReport {
    pub fn failed(&self) -> u64 {
        self.sent - self.ok
    }

    fn merge(&mut self, o: LoadReport) {
        self.sent += o.sent;
        self.ok += o.ok;
        for (k, v) in o.statuses {
            *self.statuses.entry(k).or_default() += v;
        }
        self.dropped += o.dropped;
        for r in o.drop_reasons {
            if self.drop_reasons.len() < 5 {
                self.drop_reasons.push(r);
            }
        }
        self.latencies.extend(o.latencies);
        self.bodies.extend(o.bodies);
    }

    /// The `q` quantile (0..=1) of the latencies.
    pub fn quantile(&self, q: f64) -> Duration {
        let mut v = self.latencies.clone();
        v.sort();
        if v.is_empty() {
            return Duration::ZERO;
        }
        let i = ((v.len() - 1) as f64 * q).round() as usize;
        v[i.min(v.len() - 1)]
    }

    /// Requests per second over the run.
    pub fn throughput(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// "statuses 200×1200 500×2, 0 dropped connections, p50 1.2ms p99 4.0ms max 9.1ms".
    pub fn seen(&self) -> String {
        let statuses: Vec<String> = self
            .statuses
            .iter()
            .map(|(k, v)| format!("{k}×{v}"))
            .collect();
        format!(
            "statuses {}, {} dropped connections, p50 {:.1?} p99 {:.1?} max {:.1?}, {:.0} req/s",
            statuses.join(" "),
            self.dropped,
            self.quantile(0.5),
            self.quantile(0.99),
            self.quantile(1.0),
            self.throughput()
        )
    }
}

/// A running load: `clients` threads, each sending `path(client, n)` on its own
/// kept-alive connection until `finish` or until `max` has passed.
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    answered: std::sync::Arc<std::sync::atomic::AtomicU64>,
    clients: Vec<std::thread::JoinHandle<LoadReport>>,
    started: Instant,
}

impl Load {
    pub fn start(
        port: u16,
        clients: usize,
        max: Duration,
        keep_bodies: bool,
        path: impl Fn(usize, u64) -> String + Send + Sync + 'static,
    ) -> Load {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        use std::sync::Arc;
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicU64::new(0));
        let path = Arc::new(path);
        let started = Instant::now();
        let deadline = started + max;
        let clients = (0..clients)
            .map(|c| {
                let (stop, answered, path) = (stop.clone(), answered.clone(), path.clone());
                std::thread::spawn(move || {
                    let mut conn = KeepAlive::new(port);
                    let mut rep = LoadReport::default();
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                        let t = Instant::now();
                        let seen = conn.get(&path(c, n));
                        rep.latencies.push(t.elapsed());
                        rep.sent += 1;
                        n += 1;
                        match seen {
                            Seen::Status(s, body) => {
                                *rep.statuses.entry(s).or_default() += 1;
                                if s == 200 {
                                    rep.ok += 1;
                                    answered.fetch_add(1, Ordering::Relaxed);
                                    if keep_bodies {
                                        rep.bodies
                                            .push(String::from_utf8_lossy(&body).into_owned());
                                    }
                                }
                            }
                            Seen::Dropped(why) => {
                                rep.dropped += 1;
                                if rep.drop_reasons.len() < 5 {
                                    rep.drop_reasons.push(why);
                                }
                            }
                        }
                    }
                    rep
                })
            })
            .collect();
        Load {
            stop,
            answered,
            clients,
            started,
        }
    }

    /// Requests answered 200 so far.
    pub fn answered(&self) -> u64 {
        self.answered.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Runs until every client has passed its deadline, then reports.
    pub fn join(self) -> LoadReport {
        let mut all = LoadReport::default();
        for c in self.clients {
            if let Ok(r) = c.join() {
                all.merge(r);
            }
        }
        all.elapsed = self.started.elapsed();
        all
    }

    /// Stops the clients now and reports.
    pub fn finish(self) -> LoadReport {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.join()
    }
}

/// The fields of `/proc/<pid>/stat` after the command name (index 0 is the
/// state, 1 the parent pid, 11 utime, 12 stime).
pub fn proc_stat(pid: u32) -> Option<Vec<String>> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// Live (not zombie) children of `pid`.
pub fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(child) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if let Some(f) = proc_stat(child) {
            if f.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(pid)
                && f.first().map(String::as_str) != Some("Z")
            {
                out.push(child);
            }
        }
    }
    out.sort_unstable();
    out
}

/// CPU time (user + system) `pid` has used itself, in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    static TCK: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    let tck = *TCK.get_or_init(|| {
        String::from_utf8_lossy(&sh("getconf CLK_TCK").stdout)
            .trim()
            .parse()
            .unwrap_or(100.0)
    });
    let f = proc_stat(pid)?;
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / tck)
}

/// The value of the Prometheus sample `name` whose labels include every
/// `key="value"` in `labels`.
pub fn metric(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines().find_map(|l| {
        let (series, value) = l.rsplit_once(' ')?;
        let (n, rest) = series.split_once('{').unwrap_or((series, ""));
        (n == name && labels.iter().all(|p| rest.contains(p)))
            .then(|| value.parse().ok())
            .flatten()
    })
}
