//! The client side of Goridge RPC, for the CLI (`courser workers`, `reset`, ...).

use crate::listen::Listen;
use crate::RpcError;
use bytes::{Bytes, BytesMut};
use courser_frame::{flags, preview, Frame, Limits, Options};
use courser_relay::{FrameReader, FrameWriter, RelayError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;

/// One connection to an RPC server. Calls are sequential; `seq` counts from 1.
pub struct RpcClient {
    listen: String,
    reader: FrameReader,
    writer: FrameWriter,
    seq: u32,
    call_timeout: Option<Duration>,
    broken: bool,
}

impl std::fmt::Debug for RpcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcClient")
            .field("listen", &self.listen)
            .field("seq", &self.seq)
            .finish()
    }
}

impl RpcClient {
    /// Connects to `listen` (`tcp://host:port` or `unix:///path`, as in
    /// `rpc.listen`), giving up after `timeout`. Calls have no time limit unless
    /// one is set with [`RpcClient::set_call_timeout`].
    pub async fn connect(listen: &str, timeout: Duration) -> Result<RpcClient, RpcError> {
        let fail = |reason: String| RpcError::Connect {
            listen: listen.to_string(),
            reason,
        };
        let connecting = async {
            match Listen::parse(listen)? {
                Listen::Tcp { host, port } => {
                    let s = tokio::net::TcpStream::connect(Listen::connect_addr(&host, port))
                        .await
                        .map_err(|e| fail(e.to_string()))?;
                    let _ = s.set_nodelay(true);
                    let (r, w) = s.into_split();
                    Ok::<_, RpcError>((
                        Box::pin(r) as courser_relay::BoxRead,
                        Box::pin(w) as courser_relay::BoxWrite,
                    ))
                }
                Listen::Unix(path) => {
                    let s = tokio::net::UnixStream::connect(&path)
                        .await
                        .map_err(|e| fail(e.to_string()))?;
                    let (r, w) = s.into_split();
                    Ok((
                        Box::pin(r) as courser_relay::BoxRead,
                        Box::pin(w) as courser_relay::BoxWrite,
                    ))
                }
            }
        };
        let (r, w) = tokio::time::timeout(timeout, connecting)
            .await
            .map_err(|_| fail(format!("no connection within {}s", timeout.as_secs_f64())))??;
        Ok(RpcClient {
            listen: listen.to_string(),
            reader: FrameReader::new(r, Limits::default()),
            writer: FrameWriter::new(w),
            seq: 1,
            call_timeout: None,
            broken: false,
        })
    }

    /// Limits how long each later call waits for its reply (`None`: no limit).
    pub fn set_call_timeout(&mut self, timeout: Option<Duration>) {
        self.call_timeout = timeout;
    }

    /// Calls `method` with an argument already encoded in the codec `flags`
    /// (e.g. `flags::CODEC_JSON`) and returns the reply body. An `ERROR` reply is
    /// [`RpcError::Remote`] with the server's message.
    pub async fn call(&mut self, method: &str, flags: u8, body: &[u8]) -> Result<Bytes, RpcError> {
        if self.broken {
            return Err(RpcError::Broken {
                listen: self.listen.clone(),
            });
        }
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        let request = request_frame(seq, method, flags, body).ok_or_else(|| {
            self.protocol(
                method,
                format!(
                    "the {}-byte request does not fit in one frame",
                    method.len() + body.len()
                ),
            )
        })?;
        // Until the reply is in, a failure leaves the connection out of step.
        self.broken = true;
        let exchange = async {
            self.writer.write_frame(&request).await?;
            self.reader.read_frame().await
        };
        let reply = match self.call_timeout {
            None => exchange.await,
            Some(t) => tokio::time::timeout(t, exchange)
                .await
                .map_err(|_| RpcError::Timeout {
                    listen: self.listen.clone(),
                    method: method.to_string(),
                    timeout: t,
                })?,
        }
        .map_err(|source: RelayError| RpcError::Relay {
            listen: self.listen.clone(),
            method: method.to_string(),
            source,
        })?;
        let body = self.check_reply(method, seq, &reply)?;
        self.broken = false;
        if reply.is_error() {
            return Err(RpcError::Remote(
                String::from_utf8_lossy(&body).into_owned(),
            ));
        }
        Ok(body)
    }

    /// Calls `method` with `arg` encoded as JSON and decodes the JSON reply.
    pub async fn call_json<T: Serialize, R: DeserializeOwned>(
        &mut self,
        method: &str,
        arg: &T,
    ) -> Result<R, RpcError> {
        let body = serde_json::to_vec(arg).map_err(|source| RpcError::Json {
            method: method.to_string(),
            what: "encoding the argument",
            source,
        })?;
        let reply = self.call(method, flags::CODEC_JSON, &body).await?;
        serde_json::from_slice(&reply).map_err(|source| RpcError::Json {
            method: method.to_string(),
            what: "decoding the reply",
            source,
        })
    }

    /// Checks the reply's framing and returns its body (after the method name).
    fn check_reply(&self, method: &str, seq: u32, reply: &Frame) -> Result<Bytes, RpcError> {
        let &[got_seq, method_len] = reply.options.as_slice() else {
            return Err(self.protocol(
                method,
                format!(
                    "expected 2 options [seq, method length], got {:?} (payload \"{}\")",
                    reply.options,
                    preview(&reply.payload, 80)
                ),
            ));
        };
        if got_seq != seq {
            return Err(self.protocol(
                method,
                format!("sequence mismatch: sent {seq}, the reply has {got_seq}"),
            ));
        }
        let method_len = method_len as usize;
        if method_len > reply.payload.len() {
            return Err(self.protocol(
                method,
                format!(
                    "method name length {method_len} exceeds the {}-byte payload",
                    reply.payload.len()
                ),
            ));
        }
        Ok(reply.payload.slice(method_len..))
    }

    fn protocol(&self, method: &str, detail: String) -> RpcError {
        RpcError::Protocol {
            listen: self.listen.clone(),
            method: method.to_string(),
            detail,
        }
    }
}

/// A request frame: options `[seq, len(method)]`, payload = method + body.
fn request_frame(seq: u32, method: &str, flags: u8, body: &[u8]) -> Option<Frame> {
    let method_len = u32::try_from(method.len()).ok()?;
    u32::try_from(method.len() + body.len()).ok()?;
    let mut payload = BytesMut::with_capacity(method.len() + body.len());
    payload.extend_from_slice(method.as_bytes());
    payload.extend_from_slice(body);
    Some(Frame::new(
        flags,
        Options::from_slice(&[seq, method_len])?,
        payload.freeze(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_frames_match_the_php_vector() {
        // rpc_request_resetter_Reset: seq 2, JSON, "resetter.Reset" + "\"http\"".
        let f = request_frame(2, "resetter.Reset", flags::CODEC_JSON, b"\"http\"").expect("fits");
        let hex: String = f.to_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "15081400000082b9d20d0000020000000e00000072657365747465722e5265736574226874747022"
        );
    }
}
