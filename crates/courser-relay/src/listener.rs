//! The socket relay: workers connect to us over TCP or a unix socket; we send the
//! PID request on each connection and file it under the PID the worker reports, so
//! the spawner can claim the connection of the process it started.

use crate::{handshake, FrameReader, FrameWriter, RelayError};
use courser_frame::Limits;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Where a socket relay listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketAddress {
    /// `tcp://host:port`
    Tcp(String),
    /// `unix:///path.sock`
    Unix(PathBuf),
}

/// How long a worker has to answer the PID request on a fresh connection.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections nobody claimed are dropped after this long.
const UNCLAIMED_TTL: Duration = Duration::from_secs(120);

type Conn = (FrameReader, FrameWriter, Instant);

/// A bound relay socket.
enum Bound {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

impl Bound {
    /// The next connection, split into its read and write halves.
    async fn accept(&self) -> std::io::Result<(crate::BoxRead, crate::BoxWrite)> {
        match self {
            Bound::Tcp(l) => {
                let (sock, _) = l.accept().await?;
                let _ = sock.set_nodelay(true);
                let (r, w) = sock.into_split();
                Ok((Box::pin(r), Box::pin(w)))
            }
            Bound::Unix(l) => {
                let (sock, _) = l.accept().await?;
                let (r, w) = sock.into_split();
                Ok((Box::pin(r), Box::pin(w)))
            }
        }
    }
}

struct Shared {
    pending: Mutex<HashMap<u32, Conn>>,
    notify: Notify,
}

/// A listening socket relay shared by every pool of the server.
#[derive(Clone)]
pub struct SocketListener {
    shared: Arc<Shared>,
    address: SocketAddress,
    accept_task: Arc<AbortOnDrop>,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);
impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl SocketListener {
    /// Binds the address and starts accepting. A stale unix socket file is removed first.
    pub async fn bind(
        address: SocketAddress,
        limits: Limits,
    ) -> Result<SocketListener, RelayError> {
        let shared = Arc::new(Shared {
            pending: Mutex::new(HashMap::new()),
            notify: Notify::new(),
        });
        let bound = match &address {
            SocketAddress::Tcp(addr) => {
                Bound::Tcp(tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                    RelayError::Io(std::io::Error::new(
                        e.kind(),
                        format!("cannot listen on tcp://{addr} for worker relays: {e}"),
                    ))
                })?)
            }
            SocketAddress::Unix(path) => {
                if path.exists() {
                    let _ = std::fs::remove_file(path);
                }
                Bound::Unix(tokio::net::UnixListener::bind(path).map_err(|e| {
                    RelayError::Io(std::io::Error::new(
                        e.kind(),
                        format!(
                            "cannot listen on unix://{} for worker relays: {e}",
                            path.display()
                        ),
                    ))
                })?)
            }
        };
        let s = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                match bound.accept().await {
                    Ok((r, w)) => file(s.clone(), FrameReader::new(r, limits), FrameWriter::new(w)),
                    Err(e) => {
                        tracing::warn!(error = %e, "accepting a worker relay connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        });
        Ok(SocketListener {
            shared,
            address,
            accept_task: Arc::new(AbortOnDrop(task)),
        })
    }

    /// The address this listener serves.
    pub fn address(&self) -> &SocketAddress {
        &self.address
    }

    /// Waits until the worker with `pid` has connected and answered the handshake.
    pub async fn claim(&self, pid: u32, deadline: Instant) -> Option<(FrameReader, FrameWriter)> {
        loop {
            let notified = self.shared.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some((r, w, _)) = lock(&self.shared).remove(&pid) {
                return Some((r, w));
            }
            if tokio::time::timeout_at(deadline.into(), notified)
                .await
                .is_err()
            {
                return None;
            }
        }
    }
}

impl Drop for SocketListener {
    fn drop(&mut self) {
        // The last clone removes the unix socket file it created.
        if Arc::strong_count(&self.accept_task) == 1 {
            if let SocketAddress::Unix(p) = &self.address {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, HashMap<u32, Conn>> {
    s.pending.lock().unwrap_or_else(|p| p.into_inner())
}

fn file(shared: Arc<Shared>, mut r: FrameReader, mut w: FrameWriter) {
    tokio::spawn(async move {
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&mut r, &mut w)).await {
            Ok(Ok(pid)) => {
                let mut map = lock(&shared);
                map.retain(|_, (_, _, at)| at.elapsed() < UNCLAIMED_TTL);
                map.insert(pid, (r, w, Instant::now()));
                drop(map);
                shared.notify.notify_waiters();
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "a worker relay connection failed the PID handshake; closing it")
            }
            Err(_) => tracing::warn!(
                "a worker relay connection did not answer the PID handshake within 30s; closing it"
            ),
        }
    });
}
