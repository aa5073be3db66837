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
