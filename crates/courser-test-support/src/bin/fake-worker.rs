//! A fast fake PHP worker for pool tests, speaking the worker protocol over pipes
//! or a socket (`RR_RELAY`). Each job's body selects a behaviour:
//! `pid`, `sleep:MS`, `crash:CODE`, `garbage`, `stop`, `error:MSG`, `stream:N`,
//! `leak:KB`, `env:NAME`, `hang`, `stoponce:FILE` (asks to stop if FILE does not exist, creating it); anything else is echoed back with its context.
//! `FAKE_BOOT=fail` exits at boot after writing to stderr; `FAKE_BOOT=garbage`
//! prints text to stdout instead of answering the handshake. `FAKE_BOOT_FAIL_IF=FILE`
//! fails at boot while FILE exists; `FAKE_DIE_AFTER_HANDSHAKE_IF=FILE` exits right
//! after the handshake while FILE exists (crash loops).

use bytes::{Bytes, BytesMut};
use courser_frame::{decode, flags, stream, Frame, Limits, Options};
use std::io::{Read, Write};

struct Io {
    r: Box<dyn Read>,
    w: Box<dyn Write>,
    buf: BytesMut,
}

impl Io {
    fn read(&mut self) -> Option<Frame> {
        loop {
            match decode(&mut self.buf, &Limits::default()) {
                Ok(Some(f)) => return Some(f),
                Ok(None) => {}
                Err(e) => {
                    eprintln!("fake-worker: bad frame: {e}");
                    std::process::exit(3);
                }
            }
            let mut chunk = [0u8; 65536];
            match self.r.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
    fn write(&mut self, f: &Frame) {
        if self
            .w
            .write_all(&f.to_bytes())
            .and_then(|_| self.w.flush())
            .is_err()
        {
            std::process::exit(4);
        }
    }
}

fn main() {
    match std::env::var("FAKE_BOOT").as_deref() {
        Ok("fail") => {
            eprintln!("PHP Fatal error:  fake boot failure in worker.php on line 3");
            std::process::exit(255);
        }
        Ok("garbage") => {
            print!("Hello from PHP");
            let _ = std::io::stdout().flush();
            std::thread::sleep(std::time::Duration::from_secs(30));
            return;
        }
        _ => {}
    }
    let exists = |var: &str| std::env::var(var).is_ok_and(|f| std::path::Path::new(&f).exists());
    if exists("FAKE_BOOT_FAIL_IF") {
        eprintln!("PHP Fatal error:  boot failure (marker file present)");
        std::process::exit(255);
    }
    let die_after_handshake = exists("FAKE_DIE_AFTER_HANDSHAKE_IF");
    let relay = std::env::var("RR_RELAY").unwrap_or_else(|_| "pipes".into());
    let mut io = if let Some(addr) = relay.strip_prefix("tcp://") {
        let s = std::net::TcpStream::connect(addr).unwrap_or_else(|e| {
            eprintln!("fake-worker: connect {addr}: {e}");
            std::process::exit(2)
        });
        let r = s.try_clone().unwrap_or_else(|_| std::process::exit(2));
        Io {
            r: Box::new(r),
            w: Box::new(s),
            buf: BytesMut::new(),
        }
    } else if let Some(path) = relay.strip_prefix("unix://") {
        let s = std::os::unix::net::UnixStream::connect(path).unwrap_or_else(|e| {
            eprintln!("fake-worker: connect {path}: {e}");
            std::process::exit(2)
        });
        let r = s.try_clone().unwrap_or_else(|_| std::process::exit(2));
        Io {
            r: Box::new(r),
            w: Box::new(s),
            buf: BytesMut::new(),
        }
    } else {
        Io {
            r: Box::new(std::io::stdin()),
            w: Box::new(std::io::stdout()),
            buf: BytesMut::new(),
        }
    };
    let mut leak: Vec<Vec<u8>> = Vec::new();
    while let Some(f) = io.read() {
        if f.is_control() {
            if f.payload.windows(4).any(|w| w == b"stop") {
                std::process::exit(0);
            }
            let pid = format!("{{\"pid\":{}}}", std::process::id());
            io.write(&Frame::new(
                flags::CONTROL,
                Options::default(),
                Bytes::from(pid),
            ));
            if die_after_handshake {
                std::process::exit(1);
            }
            continue;
        }
        if f.byte10 != 0 {
            continue; // stray PONG or STOP outside a stream
        }
        let (ctx, body) = f.split_context().unwrap_or_default();
        let text = String::from_utf8_lossy(&body).into_owned();
        let (cmd, arg) = text.split_once(':').unwrap_or((text.as_str(), ""));
        let reply = |b: &[u8]| Frame::job(flags::CODEC_JSON, b"{}", b);
        match cmd {
            "pid" => io.write(&reply(std::process::id().to_string().as_bytes())),
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_millis(arg.parse().unwrap_or(100)));
                io.write(&reply(b"slept"));
            }
            "hang" => std::thread::sleep(std::time::Duration::from_secs(3600)),
            "crash" => std::process::exit(arg.parse().unwrap_or(1)),
            "garbage" => {
                let _ = io.w.write_all(b"Hello from PHP");
                let _ = io.w.flush();
            }
            "stoponce" if !std::path::Path::new(arg).exists() => {
                let _ = std::fs::write(arg, b"stopped");
                io.write(&Frame::job(0, b"{\"stop\":true}", b""));
                std::process::exit(0);
            }
            "stoponce" => io.write(&reply(std::process::id().to_string().as_bytes())),
            "stop" => {
                io.write(&Frame::job(0, b"{\"stop\":true}", b""));
                std::process::exit(0);
            }
            "error" => io.write(&Frame::new(
                flags::ERROR,
                Options::default(),
                Bytes::from(arg.to_string()),
            )),
            "stream" => {
                let n: usize = arg.parse().unwrap_or(3);
                let mut sent = 0;
                let mut stopped = false;
                for i in 1..=n {
                    let mut chunk =
                        Frame::job(flags::CODEC_JSON, b"{}", format!("chunk{i}").as_bytes());
                    chunk.byte10 = stream::STREAM;
                    sent += 1;
                    if sent == 6 {
                        chunk.byte10 |= stream::PING;
                        sent = 0;
                    }
                    io.write(&chunk);
                    if chunk.byte10 & stream::PING != 0 {
                        match io.read() {
                            Some(g) if g.byte10 & stream::PONG != 0 => {}
                            Some(g) if g.byte10 & stream::STOP != 0 => {
                                io.write(&Frame::job(0, b"", b""));
                                stopped = true;
                                break;
                            }
                            _ => std::process::exit(5),
                        }
                    }
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                if !stopped {
                    io.write(&reply(b"end"));
                }
            }
            "leak" => {
                let kb: usize = arg.parse().unwrap_or(1024);
                leak.push(vec![1u8; kb * 1024]);
                io.write(&reply(b"leaked"));
            }
            "env" => {
                let v = std::env::var(arg).unwrap_or_default();
                io.write(&reply(v.as_bytes()));
            }
            _ => io.write(&Frame::job(f.flags, &ctx, &body)),
        }
    }
}
