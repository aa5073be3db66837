//! A small async beanstalkd client: the commands the driver needs, on one TCP
//! connection (see beanstalkd's protocol.txt). Replies are read in order, so
//! several commands may be written before their replies are read.

use std::io;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufStream};
use tokio::net::TcpStream;

/// Longest reply line accepted (replies are short words and numbers).
const MAX_LINE: usize = 1024;

/// One reply: the line's words, and the body for `RESERVED` / `OK`.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) words: Vec<String>,
    pub(crate) body: Option<Vec<u8>>,
}

impl Reply {
    /// The first word (`INSERTED`, `RESERVED`, `NOT_FOUND`, …).
    pub(crate) fn status(&self) -> &str {
        self.words.first().map(String::as_str).unwrap_or("")
    }

    /// Word `i` as a number.
    pub(crate) fn num(&self, i: usize) -> io::Result<u64> {
        self.words
            .get(i)
            .and_then(|w| w.parse().ok())
            .ok_or_else(|| bad(format!("reply {:?} lacks a number", self.words.join(" "))))
    }

    /// An error for a reply that is not the expected one.
    pub(crate) fn unexpected(&self, command: &str) -> io::Error {
        bad(format!(
            "beanstalkd answered {:?} to {command}",
            self.words.join(" ")
        ))
    }
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// One connection.
pub(crate) struct Conn {
    io: BufStream<TcpStream>,
}

impl Conn {
    /// Connects to `host:port` within `timeout`.
    pub(crate) async fn connect(addr: &str, timeout: Duration) -> io::Result<Conn> {
        let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        tcp.set_nodelay(true)?;
        Ok(Conn {
            io: BufStream::new(tcp),
        })
    }

    /// Writes a command (and its body) without flushing.
    pub(crate) async fn send(&mut self, line: &str, body: Option<&[u8]>) -> io::Result<()> {
        self.io.write_all(line.as_bytes()).await?;
        self.io.write_all(b"\r\n").await?;
        if let Some(b) = body {
            self.io.write_all(b).await?;
            self.io.write_all(b"\r\n").await?;
        }
        Ok(())
    }

    /// Sends buffered commands.
    pub(crate) async fn flush(&mut self) -> io::Result<()> {
        self.io.flush().await
    }

    /// Reads the next reply.
    pub(crate) async fn read(&mut self) -> io::Result<Reply> {
        let mut line = Vec::new();
        let n = (&mut self.io)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "beanstalkd closed the connection",
            ));
        }
        if !line.ends_with(b"\r\n") {
            return Err(bad(format!(
                "reply line {:?} is not CRLF-terminated",
                String::from_utf8_lossy(&line)
            )));
        }
        let words: Vec<String> = String::from_utf8_lossy(&line[..line.len() - 2])
            .split(' ')
            .filter(|w| !w.is_empty())
            .map(str::to_string)
            .collect();
        let mut reply = Reply { words, body: None };
        if matches!(reply.status(), "RESERVED" | "OK" | "FOUND") {
            let len = reply.num(reply.words.len().saturating_sub(1))? as usize;
            let mut body = vec![0u8; len + 2];
            self.io.read_exact(&mut body).await?;
            if !body.ends_with(b"\r\n") {
                return Err(bad("job body is not CRLF-terminated".into()));
            }
            body.truncate(len);
            reply.body = Some(body);
        }
        Ok(reply)
    }

    /// Sends one command and reads its reply.
    pub(crate) async fn call(&mut self, line: &str, body: Option<&[u8]>) -> io::Result<Reply> {
        self.send(line, body).await?;
        self.flush().await?;
        self.read().await
    }

    /// `call`, failing unless the reply's status is `want`.
    pub(crate) async fn expect(&mut self, line: &str, want: &str) -> io::Result<Reply> {
        let r = self.call(line, None).await?;
        if r.status() != want {
            return Err(r.unexpected(line));
        }
        Ok(r)
    }

    /// `use <tube>`: where puts go.
    pub(crate) async fn use_tube(&mut self, tube: &str) -> io::Result<()> {
        self.expect(&format!("use {tube}"), "USING").await.map(drop)
    }

    /// `watch <tube>`, then `ignore default` unless it is the tube.
    pub(crate) async fn watch_only(&mut self, tube: &str) -> io::Result<()> {
        self.expect(&format!("watch {tube}"), "WATCHING").await?;
        if tube != "default" {
            self.expect("ignore default", "WATCHING").await?;
        }
        Ok(())
    }

    /// Writes a `put` (read its reply with [`put_reply`]).
    pub(crate) async fn send_put(
        &mut self,
        pri: u32,
        delay: u64,
        ttr: u64,
        body: &[u8],
    ) -> io::Result<()> {
        self.send(
            &format!("put {pri} {delay} {ttr} {}", body.len()),
            Some(body),
        )
        .await
    }

    /// Reads a `put` reply: the job id.
    pub(crate) async fn put_reply(&mut self) -> io::Result<u64> {
        let r = self.read().await?;
        match r.status() {
            "INSERTED" => r.num(1),
            _ => Err(r.unexpected("put")),
        }
    }

    /// `reserve-with-timeout <secs>`: `Ok(Reserved)`, or `TimedOut` /
    /// `DeadlineSoon`.
    pub(crate) async fn reserve(&mut self, secs: u64) -> io::Result<Reserve> {
        let r = self
            .call(&format!("reserve-with-timeout {secs}"), None)
            .await?;
        match r.status() {
            "RESERVED" => Ok(Reserve::Job(r.num(1)?, r.body.unwrap_or_default())),
            "TIMED_OUT" => Ok(Reserve::TimedOut),
            "DEADLINE_SOON" => Ok(Reserve::DeadlineSoon),
            _ => Err(r.unexpected("reserve-with-timeout")),
        }
    }

    /// `k` pipelined `reserve-with-timeout 0`: whatever is ready, at most `k` jobs.
    pub(crate) async fn reserve_now(&mut self, k: usize) -> io::Result<Vec<Reserve>> {
        for _ in 0..k {
            self.send("reserve-with-timeout 0", None).await?;
        }
        self.flush().await?;
        let mut out = Vec::with_capacity(k);
        for _ in 0..k {
            let r = self.read().await?;
            out.push(match r.status() {
                "RESERVED" => Reserve::Job(r.num(1)?, r.body.unwrap_or_default()),
                "TIMED_OUT" => Reserve::TimedOut,
                "DEADLINE_SOON" => Reserve::DeadlineSoon,
                _ => return Err(r.unexpected("reserve-with-timeout 0")),
            });
        }
        Ok(out)
    }

    /// `release <id> <pri> <delay>`: false when NOT_FOUND.
    pub(crate) async fn release(&mut self, id: u64, pri: u32, delay: u64) -> io::Result<bool> {
        self.found(&format!("release {id} {pri} {delay}"), "RELEASED")
            .await
    }

    /// `bury <id> <pri>`: false when NOT_FOUND.
    pub(crate) async fn bury(&mut self, id: u64, pri: u32) -> io::Result<bool> {
        self.found(&format!("bury {id} {pri}"), "BURIED").await
    }

    /// `touch <id>`: false when NOT_FOUND.
    pub(crate) async fn touch(&mut self, id: u64) -> io::Result<bool> {
        self.found(&format!("touch {id}"), "TOUCHED").await
    }

    async fn found(&mut self, line: &str, ok: &str) -> io::Result<bool> {
        let r = self.call(line, None).await?;
        match r.status() {
            s if s == ok => Ok(true),
            "NOT_FOUND" => Ok(false),
            _ => Err(r.unexpected(line)),
        }
    }

    /// `stats-tube <tube>` as key/value pairs; `None` when the tube does not
    /// exist (no job and no watcher).
    pub(crate) async fn stats_tube(
        &mut self,
        tube: &str,
    ) -> io::Result<Option<Vec<(String, String)>>> {
        let line = format!("stats-tube {tube}");
        let r = self.call(&line, None).await?;
        match r.status() {
            "OK" => Ok(Some(parse_yaml_map(r.body.as_deref().unwrap_or_default()))),
            "NOT_FOUND" => Ok(None),
            _ => Err(r.unexpected(&line)),
        }
    }
}

/// What `reserve-with-timeout` gave.
pub(crate) enum Reserve {
    /// A job: id and body.
    Job(u64, Vec<u8>),
    /// Nothing within the timeout.
    TimedOut,
    /// A job this connection holds is about to reach its TTR.
    DeadlineSoon,
}

/// The flat `key: value` YAML beanstalkd's stats commands answer.
fn parse_yaml_map(body: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(body)
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches('"').to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn yaml_map() {
        let m = super::parse_yaml_map(b"---\nname: \"t\"\ncurrent-jobs-ready: 3\n");
        assert_eq!(
            m,
            vec![
                ("name".to_string(), "t".to_string()),
                ("current-jobs-ready".to_string(), "3".to_string())
            ]
        );
    }
}
