//! Frames over byte streams: the stdin/stdout pipes of a worker, or a unix or TCP
//! connection the worker opened to us (spec section 2.2), plus the PID handshake
//! (spec 2.3) and the socket listener that files connections by the PID a worker
//! reports.
//!
//! Invariants:
//! - A [`FrameReader`] never hands out a partial frame, and on bytes that are not a
//!   frame it returns [`RelayError::Garbage`] with a readable preview of them.
//! - Nothing here knows about pools, HTTP or config files.

mod listener;

pub use listener::{SocketAddress, SocketListener};

use bytes::BytesMut;
use courser_frame::{decode, flags, preview, Frame, FrameError, Limits};
use std::io;
use std::pin::Pin;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A boxed readable byte stream (a pipe or a socket half).
pub type BoxRead = Pin<Box<dyn AsyncRead + Send + Sync>>;
/// A boxed writable byte stream.
pub type BoxWrite = Pin<Box<dyn AsyncWrite + Send + Sync>>;

/// What went wrong while talking to a worker over its relay.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The peer closed the stream.
    #[error("the relay closed (end of stream){}", if *.partial > 0 { format!(" after {} bytes of an incomplete frame", .partial) } else { String::new() })]
    Closed {
        /// Bytes of an unfinished frame that were received before the end.
        partial: usize,
    },
    /// Reading or writing failed.
    #[error("relay I/O failed: {0}")]
    Io(#[from] io::Error),
    /// The peer sent bytes that are not a frame.
    #[error("{len} bytes that are not a protocol frame (\"{preview}\"): {error}")]
    Garbage {
        /// Why the bytes are not a frame.
        error: FrameError,
        /// The first bytes, escaped for display.
        preview: String,
        /// How many unexpected bytes were buffered.
        len: usize,
    },
    /// A frame over the configured size limit.
    #[error("{0}")]
    TooLarge(FrameError),
    /// The PID handshake got an answer that is not a PID control frame.
    #[error("bad PID handshake answer: {0}")]
    Handshake(String),
}

impl RelayError {
    /// True when the worker wrote something that is not a frame.
    pub fn is_garbage(&self) -> bool {
        matches!(self, RelayError::Garbage { .. })
    }
}

/// Reads whole frames from a byte stream, reusing one buffer.
pub struct FrameReader {
    inner: BoxRead,
    buf: BytesMut,
    limits: Limits,
}

impl FrameReader {
    /// Wraps a byte stream.
    pub fn new(inner: BoxRead, limits: Limits) -> FrameReader {
        FrameReader {
            inner,
            buf: BytesMut::with_capacity(16 * 1024),
            limits,
        }
    }

    /// Reads the next frame.
    ///
    /// Cancel-safe: a frame partly read when the future is dropped stays buffered.
    pub async fn read_frame(&mut self) -> Result<Frame, RelayError> {
        loop {
            match decode(&mut self.buf, &self.limits) {
                Ok(Some(f)) => return Ok(f),
                Ok(None) => {}
                Err(e @ FrameError::TooLarge { .. }) => return Err(RelayError::TooLarge(e)),
                Err(error) => {
                    return Err(RelayError::Garbage {
                        error,
                        preview: preview(&self.buf, 120),
                        len: self.buf.len(),
                    })
                }
            }
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(16 * 1024);
            }
            let n = self.inner.read_buf(&mut self.buf).await?;
            if n == 0 {
                // Fewer than 12 bytes that cannot start a frame are still garbage worth showing.
                if !self.buf.is_empty() && self.buf[0] >> 4 != courser_frame::VERSION {
                    return Err(RelayError::Garbage {
                        error: FrameError::Version {
                            found: self.buf[0] >> 4,
                            byte0: self.buf[0],
                        },
                        preview: preview(&self.buf, 120),
                        len: self.buf.len(),
                    });
                }
                return Err(RelayError::Closed {
                    partial: self.buf.len(),
                });
            }
        }
    }

    /// Bytes received but not yet decoded (for diagnostics).
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }
}

/// Writes frames to a byte stream. Small frames go out in one write; large
/// payloads are written after the header without being copied.
pub struct FrameWriter {
    inner: BoxWrite,
    buf: Vec<u8>,
}

/// Payloads up to this size are copied next to the header so the frame goes out in one write.
const COALESCE_LIMIT: usize = 64 * 1024;

impl FrameWriter {
    /// Wraps a byte stream.
    pub fn new(inner: BoxWrite) -> FrameWriter {
        FrameWriter {
            inner,
            buf: Vec::with_capacity(1024),
        }
    }

    /// Writes one frame and flushes it.
    pub async fn write_frame(&mut self, f: &Frame) -> Result<(), RelayError> {
        f.check_len().map_err(RelayError::TooLarge)?;
        self.buf.clear();
        f.encode_header_into(&mut self.buf);
        if f.payload.len() <= COALESCE_LIMIT {
            self.buf.extend_from_slice(&f.payload);
            self.inner.write_all(&self.buf).await?;
        } else {
            self.inner.write_all(&self.buf).await?;
            self.inner.write_all(&f.payload).await?;
        }
        self.inner.flush().await?;
        Ok(())
    }

    /// Writes a job frame (`options = [len(context)]`, payload = context ‖ body)
    /// without building the payload first: header, context and a small body are
    /// copied once into the reused buffer and sent in one write; a large body is
    /// written straight from its own buffer.
    pub async fn write_job(
        &mut self,
        flags: u8,
        context: &[u8],
        body: &[u8],
    ) -> Result<(), RelayError> {
        let len = context.len() + body.len();
        if len > u32::MAX as usize {
            return Err(RelayError::TooLarge(courser_frame::FrameError::TooLarge {
                len,
                max: u32::MAX as usize,
            }));
        }
        self.buf.clear();
        courser_frame::encode_job_header(flags, context.len() as u32, len as u32, &mut self.buf);
        self.buf.extend_from_slice(context);
        if body.len() <= COALESCE_LIMIT {
            self.buf.extend_from_slice(body);
            self.inner.write_all(&self.buf).await?;
        } else {
            self.inner.write_all(&self.buf).await?;
            self.inner.write_all(body).await?;
        }
        self.inner.flush().await?;
        Ok(())
    }

    /// Shuts the write side down (closes the worker's stdin for pipes).
    pub async fn shutdown(&mut self) -> Result<(), RelayError> {
        self.inner.shutdown().await?;
        Ok(())
    }
}

/// The server's half of the PID handshake (spec 2.3): sends `{"pid":<ours>}` and
/// returns the PID the worker reports.
pub async fn handshake(r: &mut FrameReader, w: &mut FrameWriter) -> Result<u32, RelayError> {
    let ours = format!("{{\"pid\":{}}}", std::process::id());
    let req = Frame::new(
        flags::CONTROL | flags::CODEC_JSON,
        Default::default(),
        bytes::Bytes::from(ours),
    );
    w.write_frame(&req).await?;
    let answer = r.read_frame().await?;
    parse_pid_answer(&answer)
}

/// Checks a PID handshake answer and extracts the PID.
pub fn parse_pid_answer(f: &Frame) -> Result<u32, RelayError> {
    #[derive(serde::Deserialize)]
    struct Pid {
        pid: i64,
    }
    if !f.is_control() {
        return Err(RelayError::Handshake(format!(
            "expected a control frame with the worker's PID, got flags 0x{:02x} and payload \"{}\"",
            f.flags,
            preview(&f.payload, 80)
        )));
    }
    let p: Pid = serde_json::from_slice(&f.payload).map_err(|e| {
        RelayError::Handshake(format!(
            "payload \"{}\" is not {{\"pid\":N}}: {e}",
            preview(&f.payload, 80)
        ))
    })?;
    u32::try_from(p.pid)
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| RelayError::Handshake(format!("PID {} is not a positive process id", p.pid)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use courser_frame::Options;

    fn pair() -> (FrameReader, FrameWriter) {
        let (a, b) = tokio::io::duplex(1 << 20);
        (
            FrameReader::new(Box::pin(a), Limits::default()),
            FrameWriter::new(Box::pin(b)),
        )
    }

    #[tokio::test]
    async fn frames_cross_a_stream_small_and_large() {
        let (mut r, mut w) = pair();
        let small = Frame::job(0x08, b"{}", b"hi");
        let large = Frame::job(0x04, b"", &vec![42u8; 300 * 1024]);
        let t = tokio::spawn(async move {
            w.write_frame(&small).await.expect("write");
            w.write_frame(&large).await.expect("write");
            (small, large)
        });
        let a = r.read_frame().await.expect("first");
        let b = r.read_frame().await.expect("second");
        let (small, large) = t.await.expect("join");
        assert_eq!(a, small);
        assert_eq!(b, large);
    }

    #[tokio::test]
    async fn garbage_is_reported_with_text() {
        let (a, mut b) = tokio::io::duplex(1024);
        let mut r = FrameReader::new(Box::pin(a), Limits::default());
        b.write_all(b"Hello from PHP, a long line")
            .await
            .expect("write");
        drop(b);
        match r.read_frame().await {
            Err(RelayError::Garbage { preview, .. }) => {
                assert!(preview.starts_with("Hello from PHP"))
            }
            other => panic!("expected garbage, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn short_garbage_then_eof_is_garbage_not_eof() {
        let (a, mut b) = tokio::io::duplex(1024);
        let mut r = FrameReader::new(Box::pin(a), Limits::default());
        b.write_all(b"oops\n").await.expect("write");
        drop(b);
        assert!(r.read_frame().await.expect_err("garbage").is_garbage());
    }

    #[tokio::test]
    async fn eof_mid_frame_counts_partial_bytes() {
        let (a, mut b) = tokio::io::duplex(1024);
        let mut r = FrameReader::new(Box::pin(a), Limits::default());
        let bytes = Frame::job(0x08, b"ctx", b"body").to_bytes();
        b.write_all(&bytes[..15]).await.expect("write");
        drop(b);
        match r.read_frame().await {
            Err(RelayError::Closed { partial }) => assert_eq!(partial, 15),
            other => panic!("expected closed, got {other:?}"),
        }
    }

    #[test]
    fn pid_answers() {
        let ok = Frame::new(
            flags::CONTROL,
            Options::default(),
            Bytes::from_static(b"{\"pid\":1692}"),
        );
        assert_eq!(parse_pid_answer(&ok).expect("pid"), 1692);
        for bad in [
            Frame::new(0, Options::default(), Bytes::from_static(b"{\"pid\":1}")),
            Frame::new(
                flags::CONTROL,
                Options::default(),
                Bytes::from_static(b"{\"pid\":0}"),
            ),
            Frame::new(
                flags::CONTROL,
                Options::default(),
                Bytes::from_static(b"nope"),
            ),
        ] {
            assert!(matches!(
                parse_pid_answer(&bad),
                Err(RelayError::Handshake(_))
            ));
        }
    }
}
