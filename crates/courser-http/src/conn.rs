//! A connection wrapper that records when bytes last moved and whether a request
//! is being served, for the idle keep-alive timeout.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Last activity and requests in flight on one connection.
///
/// Moving bytes only sets a flag (no clock read on the I/O path); the idle
/// check, run on the connection's tick, turns it into a time. Idle time is
/// thus counted from the first tick that saw no activity: up to two ticks
/// late (see the tick in `server.rs`: a quarter of `idle_timeout`, at most 1 s).
#[derive(Clone)]
pub(crate) struct Activity(Arc<Inner>);

struct Inner {
    start: Instant,
    last_ms: AtomicU64,
    moved: AtomicBool,
    busy: AtomicUsize,
}

impl Activity {
    pub(crate) fn new() -> Activity {
        Activity(Arc::new(Inner {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            moved: AtomicBool::new(false),
            busy: AtomicUsize::new(0),
        }))
    }
    fn touch(&self) {
        self.0.moved.store(true, Ordering::Relaxed);
    }
    /// Time since bytes last moved (as seen by the previous call); zero while a
    /// request is being served.
    pub(crate) fn idle_for(&self) -> Duration {
        let now = self.0.start.elapsed();
        if self.0.moved.swap(false, Ordering::Relaxed) || self.0.busy.load(Ordering::Acquire) > 0 {
            self.0
                .last_ms
                .store(now.as_millis() as u64, Ordering::Relaxed);
            return Duration::ZERO;
        }
        now.saturating_sub(Duration::from_millis(
            self.0.last_ms.load(Ordering::Relaxed),
        ))
    }
    /// Marks a request in flight until the guard drops.
    pub(crate) fn busy(&self) -> BusyGuard {
        self.0.busy.fetch_add(1, Ordering::AcqRel);
        BusyGuard(self.clone())
    }
}

pub(crate) struct BusyGuard(Activity);
impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.touch();
        self.0 .0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An I/O stream that reports activity.
pub(crate) struct TrackedIo<T> {
    inner: T,
    activity: Activity,
}

impl<T> TrackedIo<T> {
    pub(crate) fn new(inner: T, activity: Activity) -> Self {
        TrackedIo { inner, activity }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for TrackedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TrackedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A plain TCP connection whose write half is shared, so a handler can send a
/// 1xx interim response (103 Early Hints) on HTTP/1.1 while hyper waits for the
/// final one. Hyper writes nothing on an HTTP/1.1 connection while its service
/// future is pending and the request body has been read, so the bytes cannot mix.
pub(crate) struct SharedTcp {
    read: tokio::net::tcp::OwnedReadHalf,
    write: Arc<std::sync::Mutex<tokio::net::tcp::OwnedWriteHalf>>,
}

/// The handle a handler uses to send interim responses.
#[derive(Clone)]
pub(crate) struct Interim {
    write: Arc<std::sync::Mutex<tokio::net::tcp::OwnedWriteHalf>>,
}

impl std::fmt::Debug for Interim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Interim")
    }
}

impl SharedTcp {
    pub(crate) fn new(stream: tokio::net::TcpStream) -> (SharedTcp, Interim) {
        let (read, write) = stream.into_split();
        let write = Arc::new(std::sync::Mutex::new(write));
        (
            SharedTcp {
                read,
                write: write.clone(),
            },
            Interim { write },
        )
    }
}

fn with_write<R>(
    m: &std::sync::Mutex<tokio::net::tcp::OwnedWriteHalf>,
    f: impl FnOnce(Pin<&mut tokio::net::tcp::OwnedWriteHalf>) -> R,
) -> R {
    let mut g = m.lock().unwrap_or_else(|p| p.into_inner());
    f(Pin::new(&mut *g))
}

impl AsyncRead for SharedTcp {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.read).poll_read(cx, buf)
    }
}

impl AsyncWrite for SharedTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        with_write(&self.write, |w| w.poll_write(cx, buf))
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        with_write(&self.write, |w| w.poll_write_vectored(cx, bufs))
    }
    fn is_write_vectored(&self) -> bool {
        true
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        with_write(&self.write, |w| w.poll_flush(cx))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        with_write(&self.write, |w| w.poll_shutdown(cx))
    }
}

impl Interim {
    /// Writes a complete interim response head.
    pub(crate) async fn send(&self, bytes: &[u8]) -> std::io::Result<()> {
        let mut off = 0;
        while off < bytes.len() {
            let n = std::future::poll_fn(|cx| {
                with_write(&self.write, |w| w.poll_write(cx, &bytes[off..]))
            })
            .await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            off += n;
        }
        std::future::poll_fn(|cx| with_write(&self.write, |w| w.poll_flush(cx))).await
    }
}
