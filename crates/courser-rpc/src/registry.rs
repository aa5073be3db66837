//! Methods by name, and the sans-IO step that turns one request frame into its
//! reply frame.

use bytes::{Bytes, BytesMut};
use courser_frame::{flags, preview, Frame, Options};
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

/// One RPC call as a handler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// `Service.Method`, as the client sent it.
    pub method: String,
    /// The codec of the argument: one of the `courser_frame::flags::CODEC_*` bits,
    /// chosen from the request's flags as RoadRunner does (see [`reply_codec`]).
    /// The reply is sent with the same bit.
    pub flags: u8,
    /// The encoded argument (may be empty).
    pub body: Bytes,
}

impl Call {
    /// Decodes a JSON argument; an error names the method and what went wrong.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, String> {
        if self.flags != flags::CODEC_JSON {
            return Err(format!(
                "{} takes a JSON argument (flag 0x08), got codec {}; Courser's RPC speaks JSON and protobuf, not Go gob or msgpack",
                self.method,
                codec_name(self.flags)
            ));
        }
        serde_json::from_slice(&self.body).map_err(|e| {
            format!(
                "{}: the argument \"{}\" is not valid: {e}",
                self.method,
                preview(&self.body, 80)
            )
        })
    }
}

/// Encodes a JSON reply body.
pub fn json_reply<T: Serialize>(value: &T) -> Reply {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| format!("encoding the reply failed: {e}"))
}

/// A handler's answer: `Ok(body)` is sent with the request's codec flag;
/// `Err(message)` becomes an error frame (codec | `ERROR`) with the message as body.
pub type Reply = Result<Bytes, String>;

/// A registered method.
pub type Handler = Arc<dyn Fn(Call) -> BoxFuture<'static, Reply> + Send + Sync>;

/// The codec RoadRunner's goridge server codec picks for a request's flags, in
/// this order: PROTO, JSON, RAW, MSGPACK, GOB, and GOB when no codec bit is set.
/// RoadRunner's own CLI sends gob|proto (0xA0), which therefore means PROTO.
pub fn reply_codec(request_flags: u8) -> u8 {
    [
        flags::CODEC_PROTO,
        flags::CODEC_JSON,
        flags::CODEC_RAW,
        flags::CODEC_MSGPACK,
        flags::CODEC_GOB,
    ]
    .into_iter()
    .find(|&bit| request_flags & bit != 0)
    .unwrap_or(flags::CODEC_GOB)
}

fn codec_name(codec: u8) -> &'static str {
    match codec {
        flags::CODEC_PROTO => "protobuf (0x80)",
        flags::CODEC_JSON => "JSON (0x08)",
        flags::CODEC_RAW => "raw (0x04)",
        flags::CODEC_MSGPACK => "msgpack (0x10)",
        _ => "gob (0x20)",
    }
}

/// The methods the RPC server offers, by `Service.Method` name.
///
/// Cloning is cheap (handlers are shared). Plugins register their methods at
/// startup; the server then answers from a frozen copy.
#[derive(Default, Clone)]
pub struct Registry {
    methods: HashMap<String, Handler>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("methods", &self.methods())
            .finish()
    }
}

impl Registry {
    /// Adds (or replaces) the handler of `method`, which should be written
    /// `Service.Method` (e.g. `informer.Workers`) as RoadRunner's clients call it.
    pub fn register(
        &mut self,
        method: &str,
        h: impl Fn(Call) -> BoxFuture<'static, Reply> + Send + Sync + 'static,
    ) {
        self.methods.insert(method.to_string(), Arc::new(h));
    }

    /// Adds a method that takes and returns JSON: the argument is decoded into
    /// `A` (a call with another codec or an undecodable argument gets an error
    /// reply) and the handler's value is encoded as the reply.
    pub fn register_json<A, R, F, Fut>(&mut self, method: &str, f: F)
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize,
        F: Fn(A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, String>> + Send + 'static,
    {
        self.register(method, move |call: Call| match call.json::<A>() {
            Ok(arg) => {
                let fut = f(arg);
                async move { json_reply(&fut.await?) }.boxed()
            }
            Err(e) => async move { Err(e) }.boxed(),
        });
    }

    /// The registered method names, sorted.
    pub fn methods(&self) -> Vec<String> {
        let mut m: Vec<String> = self.methods.keys().cloned().collect();
        m.sort();
        m
    }

    /// Runs one call. Unknown names get Go `net/rpc`'s error texts; a handler
    /// that panics fails only this call.
    pub async fn dispatch(&self, call: Call) -> Reply {
        let Some(h) = self.methods.get(&call.method) else {
            return Err(self.not_found(&call.method));
        };
        let method = call.method.clone();
        let fut = match std::panic::catch_unwind(AssertUnwindSafe(|| h(call))) {
            Ok(fut) => fut,
            Err(panic) => return Err(panicked(&method, panic.as_ref())),
        };
        match AssertUnwindSafe(fut).catch_unwind().await {
            Ok(reply) => reply,
            Err(panic) => Err(panicked(&method, panic.as_ref())),
        }
    }

    /// The error text Go's `net/rpc` gives for a name no handler serves.
    fn not_found(&self, method: &str) -> String {
        let Some((service, _)) = method.rsplit_once('.') else {
            return format!("rpc: service/method request ill-formed: {method}");
        };
        let prefix = format!("{service}.");
        let known_service = self.methods.keys().any(|m| {
            m.strip_prefix(&prefix)
                .is_some_and(|rest| !rest.contains('.'))
        });
        if known_service {
            format!("rpc: can't find method {method}")
        } else {
            format!("rpc: can't find service {method}")
        }
    }

    /// Answers one request frame (sans-IO): checks its framing, runs the method
    /// and builds the reply frame with the seq and method echoed.
    pub async fn answer(&self, request: Frame) -> Frame {
        let codec = reply_codec(request.flags);
        let opts = request.options.as_slice();
        let seq = opts.first().copied().unwrap_or(0);
        if opts.len() != 2 {
            return error_frame(
                codec,
                seq,
                b"",
                &format!(
                    "rpc: a request frame carries 2 options [seq, method name length], this one has {}",
                    opts.len()
                ),
            );
        }
        let method_len = opts[1] as usize;
        if method_len > request.payload.len() {
            return error_frame(
                codec,
                seq,
                b"",
                &format!(
                    "rpc: the method name length {method_len} exceeds the {}-byte payload",
                    request.payload.len()
                ),
            );
        }
        let method_bytes = request.payload.slice(..method_len);
        let call = Call {
            method: String::from_utf8_lossy(&method_bytes).into_owned(),
            flags: codec,
            body: request.payload.slice(method_len..),
        };
        match self.dispatch(call).await {
            Ok(body) if method_len + body.len() <= u32::MAX as usize => Frame::new(
                codec,
                options(seq, method_len),
                concat(&method_bytes, &body),
            ),
            Ok(body) => error_frame(
                codec,
                seq,
                &method_bytes,
                &format!(
                    "rpc: the {}-byte reply is too large for one frame",
                    body.len()
                ),
            ),
            Err(message) => error_frame(codec, seq, &method_bytes, &message),
        }
    }
}

fn panicked(method: &str, panic: &(dyn std::any::Any + Send)) -> String {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_string());
    tracing::error!(method, panic = %what, "rpc: a method handler panicked");
    format!("rpc: {method} failed with an internal error in the server (see its log)")
}

fn options(seq: u32, method_len: usize) -> Options {
    // Two words always fit; method_len came from a u32 option or was checked.
    Options::from_slice(&[seq, method_len as u32]).unwrap_or_default()
}

fn concat(a: &[u8], b: &[u8]) -> Bytes {
    let mut p = BytesMut::with_capacity(a.len() + b.len());
    p.extend_from_slice(a);
    p.extend_from_slice(b);
    p.freeze()
}

/// An error reply: codec | ERROR, options `[seq, len(method)]`, payload =
/// method name + message.
pub(crate) fn error_frame(codec: u8, seq: u32, method: &[u8], message: &str) -> Frame {
    Frame::new(
        codec | flags::ERROR,
        options(seq, method.len()),
        concat(method, message.as_bytes()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Registry {
        let mut r = Registry::default();
        r.register("informer.Workers", |c| {
            async move { Ok(Bytes::from(format!("got {}", c.body.len()))) }.boxed()
        });
        r.register("boom.Now", |_| panic!("sync boom"));
        r.register("boom.Later", |_| {
            async move {
                if true {
                    panic!("async boom");
                }
                Ok(Bytes::new())
            }
            .boxed()
        });
        r.register_json("echo.Add", |(a, b): (i64, i64)| async move {
            Ok::<_, String>(a + b)
        });
        r
    }

    fn call(method: &str, flags: u8, body: &'static [u8]) -> Call {
        Call {
            method: method.into(),
            flags,
            body: Bytes::from_static(body),
        }
    }

    #[tokio::test]
    async fn dispatch_cases() {
        let r = registry();
        let cases: &[(&str, u8, &[u8], Reply)] = &[
            ("informer.Workers", 0x08, b"\"http\"", Ok("got 6".into())),
            (
                "informer.Nope",
                0x08,
                b"",
                Err("rpc: can't find method informer.Nope".into()),
            ),
            (
                "nope.Workers",
                0x08,
                b"",
                Err("rpc: can't find service nope.Workers".into()),
            ),
            (
                "informer",
                0x08,
                b"",
                Err("rpc: service/method request ill-formed: informer".into()),
            ),
            ("echo.Add", 0x08, b"[2,3]", Ok("5".into())),
            (
                "boom.Now",
                0x08,
                b"",
                Err(
                    "rpc: boom.Now failed with an internal error in the server (see its log)"
                        .into(),
                ),
            ),
            (
                "boom.Later",
                0x08,
                b"",
                Err(
                    "rpc: boom.Later failed with an internal error in the server (see its log)"
                        .into(),
                ),
            ),
        ];
        for (method, flags, body, want) in cases {
            let got = r.dispatch(call(method, *flags, body)).await;
            assert_eq!(&got, want, "{method}");
        }
        let e = r
            .dispatch(call("echo.Add", 0x20, b""))
            .await
            .expect_err("gob");
        assert!(e.contains("JSON") && e.contains("gob"), "{e}");
        let e = r
            .dispatch(call("echo.Add", 0x08, b"{"))
            .await
            .expect_err("bad json");
        assert!(
            e.starts_with("echo.Add: the argument \"{\" is not valid"),
            "{e}"
        );
    }

    #[test]
    fn codec_priority_matches_goridge() {
        for (flags, want) in [
            (0x08, 0x08),
            (0x80, 0x80),
            (0xa0, 0x80),
            (0x28, 0x08),
            (0x04, 0x04),
            (0x10, 0x10),
            (0x00, 0x20),
            (0x40, 0x20),
        ] {
            assert_eq!(reply_codec(flags), want, "0x{flags:02x}");
        }
    }

    #[tokio::test]
    async fn malformed_frames_get_error_replies() {
        let r = registry();
        let f = Frame::new(0x08, Options::one(7), Bytes::from_static(b"x"));
        let reply = r.answer(f).await;
        assert_eq!(reply.flags, 0x48);
        assert_eq!(reply.options.as_slice(), &[7, 0]);
        assert!(String::from_utf8_lossy(&reply.payload).contains("2 options"));

        let f = Frame::new(
            0x80,
            Options::from_slice(&[3, 99]).expect("opts"),
            Bytes::from_static(b"short"),
        );
        let reply = r.answer(f).await;
        assert_eq!(reply.flags, 0xc0);
        assert_eq!(reply.options.as_slice(), &[3, 0]);
        assert!(String::from_utf8_lossy(&reply.payload).contains("exceeds"));
    }

    #[test]
    fn methods_are_sorted() {
        assert_eq!(
            registry().methods(),
            ["boom.Later", "boom.Now", "echo.Add", "informer.Workers"]
        );
    }
}
