//! The listener on `rpc.listen` and one task per connection.

use crate::listen::Listen;
use crate::registry::error_frame;
use crate::{reply_codec, Registry, RpcError};
use courser_frame::{FrameError, Limits, HEADER_LEN};
use courser_relay::{BoxRead, BoxWrite, FrameReader, FrameWriter, RelayError};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The largest request accepted by default: 16 MiB of method name and argument.
pub const DEFAULT_MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// After refusing an oversize request, at most this many of its bytes are read
/// and thrown away so that the client, which is still writing it, gets to read
/// the error reply. A larger request just has its connection closed.
const DRAIN_MAX: usize = 256 * 1024 * 1024;
/// How long the rest of an oversize request may take to arrive.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The RPC server, bound and ready to [`run`](RpcServer::run).
pub struct RpcServer {
    listener: Bound,
    listen: String,
    registry: Arc<Registry>,
    limits: Limits,
}

impl std::fmt::Debug for RpcServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcServer")
            .field("listen", &self.listen)
            .field("max_message", &self.limits.max_payload)
            .finish()
    }
}

enum Bound {
    Tcp(TcpListener),
    /// The file is removed after the listener closes (fields drop in order).
    Unix {
        listener: UnixListener,
        _file: SocketFile,
    },
}

/// Removes the unix socket file we created when the server goes away.
struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Bound {
    async fn accept(&self) -> io::Result<(BoxRead, BoxWrite, String)> {
        match self {
            Bound::Tcp(l) => {
                let (sock, peer) = l.accept().await?;
                let _ = sock.set_nodelay(true);
                let (r, w) = sock.into_split();
                Ok((Box::pin(r), Box::pin(w), peer.to_string()))
            }
            Bound::Unix { listener: l, .. } => {
                let (sock, _) = l.accept().await?;
                let (r, w) = sock.into_split();
                Ok((Box::pin(r), Box::pin(w), "unix".to_string()))
            }
        }
    }
}

impl RpcServer {
    /// Listens on `listen` (`tcp://host:port` or `unix:///path`). A stale unix
    /// socket file is replaced; one a live server still answers on is not.
    pub async fn bind(listen: &str, registry: Registry) -> Result<RpcServer, RpcError> {
        let bind_err = |source| RpcError::Bind {
            listen: listen.to_string(),
            source,
        };
        let listener = match Listen::parse(listen)? {
            Listen::Tcp { host, port } => Bound::Tcp(
                TcpListener::bind(Listen::bind_addr(&host, port))
                    .await
                    .map_err(bind_err)?,
            ),
            Listen::Unix(path) => {
                clear_stale_socket(&path).await.map_err(bind_err)?;
                let l = UnixListener::bind(&path).map_err(bind_err)?;
                Bound::Unix {
                    listener: l,
                    _file: SocketFile(path),
                }
            }
        };
        Ok(RpcServer {
            listener,
            listen: listen.to_string(),
            registry: Arc::new(registry),
            limits: Limits {
                max_payload: DEFAULT_MAX_MESSAGE,
            },
        })
    }

    /// Sets the largest request payload (method name and argument) accepted;
    /// larger ones get an error reply. Default [`DEFAULT_MAX_MESSAGE`].
    pub fn max_message_size(mut self, bytes: usize) -> RpcServer {
        self.limits.max_payload = bytes;
        self
    }

    /// The bound TCP address (useful with port 0); `None` for a unix socket.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.listener {
            Bound::Tcp(l) => l.local_addr().ok(),
            Bound::Unix { .. } => None,
        }
    }

    /// The address as configured.
    pub fn listen(&self) -> &str {
        &self.listen
    }

    /// Serves until `shutdown` turns true (or its sender is dropped): then stops
    /// accepting, closes idle connections, lets calls in progress finish and
    /// returns. Dropping the future aborts every connection.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let RpcServer {
            listener,
            listen,
            registry,
            limits,
        } = self;
        tracing::info!(address = %listen, methods = ?registry.methods(), "rpc: listening");
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                _ = wait_true(&mut shutdown) => break,
                Some(done) = conns.join_next(), if !conns.is_empty() => {
                    if let Err(e) = done {
                        tracing::error!(error = %e, "rpc: a connection task failed");
                    }
                }
                accepted = listener.accept() => match accepted {
                    Ok((r, w, peer)) => {
                        conns.spawn(serve_connection(registry.clone(), r, w, peer, shutdown.clone(), limits));
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: back off briefly.
                        tracing::warn!(error = %e, "rpc: accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                },
            }
        }
        drop(listener);
        while let Some(done) = conns.join_next().await {
            if let Err(e) = done {
                tracing::error!(error = %e, "rpc: a connection task failed");
            }
        }
        tracing::debug!(address = %listen, "rpc: stopped");
    }
}

/// Resolves once the watched flag is true (or its sender is gone).
async fn wait_true(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|&s| s).await;
}

/// Removes a socket file left by a server that is gone. Refuses when a server
/// still answers on it, or when the path is not a socket.
async fn clear_stale_socket(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} exists and is not a socket; not replacing it",
                path.display()
            ),
        ));
    }
    if tokio::net::UnixStream::connect(path).await.is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "a running server is listening on this socket",
        ));
    }
    std::fs::remove_file(path)
}

/// A read half that the frame reader and the oversize-request drain share.
#[derive(Clone)]
struct SharedRead(Arc<Mutex<BoxRead>>);

impl AsyncRead for SharedRead {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut inner = self.0.lock().unwrap_or_else(|p| p.into_inner());
        inner.as_mut().poll_read(cx, buf)
    }
}

async fn serve_connection(
    registry: Arc<Registry>,
    r: BoxRead,
    w: BoxWrite,
    peer: String,
    mut shutdown: watch::Receiver<bool>,
    limits: Limits,
) {
    let shared = SharedRead(Arc::new(Mutex::new(r)));
    let mut reader = FrameReader::new(Box::pin(shared.clone()), limits);
    let mut writer = FrameWriter::new(w);
    loop {
        let read = tokio::select! {
            biased;
            _ = wait_true(&mut shutdown) => return,
            f = reader.read_frame() => f,
        };
        let request = match read {
            Ok(f) => f,
            Err(RelayError::TooLarge(FrameError::TooLarge { len, max })) => {
                if refuse_oversize(reader.buffered(), len, max, &shared, &mut writer, &peer).await {
                    // The whole request was read and thrown away: carry on.
                    reader = FrameReader::new(Box::pin(shared.clone()), limits);
                    continue;
                }
                return;
            }
            Err(RelayError::Closed { partial: 0 }) => return,
            Err(e @ RelayError::Garbage { .. }) => {
                tracing::warn!(peer, error = %e, "rpc: a client sent bytes that are not a Goridge frame; closing its connection");
                return;
            }
            Err(e) => {
                tracing::debug!(peer, error = %e, "rpc: connection ended");
                return;
            }
        };
        let reply = registry.answer(request).await;
        if let Err(e) = writer.write_frame(&reply).await {
            tracing::debug!(peer, error = %e, "rpc: writing a reply failed; closing the connection");
            return;
        }
    }
}

/// Answers a request whose payload is over the limit with an error frame (seq
/// and method echoed when they were received), then reads and discards the
/// rest of it. True when the connection is back at a frame boundary.
async fn refuse_oversize(
    buffered: &[u8],
    len: usize,
    max: usize,
    shared: &SharedRead,
    writer: &mut FrameWriter,
    peer: &str,
) -> bool {
    let flags = buffered.get(1).copied().unwrap_or(0);
    let hl = buffered.first().map_or(0, |b| usize::from(b & 0x0f));
    let word = |i: usize| {
        buffered
            .get(HEADER_LEN + 4 * i..HEADER_LEN + 4 * i + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let seq = if hl >= 4 { word(0).unwrap_or(0) } else { 0 };
    let method: &[u8] = match (hl, word(1)) {
        (5, Some(mlen)) => {
            let start = HEADER_LEN + 8;
            buffered
                .get(start..start + (mlen as usize).min(1024))
                .filter(|_| mlen <= 1024)
                .unwrap_or(b"")
        }
        _ => b"",
    };
    let method_text = String::from_utf8_lossy(method).into_owned();
    let message = format!(
        "rpc: the request{} is {len} bytes, over the server's limit of {max} bytes; send smaller arguments",
        if method.is_empty() { String::new() } else { format!(" to {method_text}") }
    );
    tracing::warn!(peer, method = %method_text, len, max, "rpc: refused an oversize request");
    let reply = error_frame(reply_codec(flags), seq, method, &message);
    if let Err(e) = writer.write_frame(&reply).await {
        tracing::debug!(peer, error = %e, "rpc: writing the oversize error failed; closing the connection");
        return false;
    }
    let frame_len = HEADER_LEN + 4 * hl.saturating_sub(3) + len;
    let Some(rest) = frame_len.checked_sub(buffered.len()) else {
        return false;
    };
    if rest > DRAIN_MAX {
        tracing::warn!(
            peer,
            len,
            "rpc: request too large to skip; closing the connection"
        );
        return false;
    }
    let mut r = shared.clone();
    let drain = async {
        let mut sink = tokio::io::sink();
        tokio::io::copy(&mut (&mut r).take(rest as u64), &mut sink).await
    };
    match tokio::time::timeout(DRAIN_TIMEOUT, drain).await {
        Ok(Ok(n)) if n == rest as u64 => true,
        _ => {
            tracing::warn!(
                peer,
                "rpc: the rest of the oversize request did not arrive; closing the connection"
            );
            false
        }
    }
}
