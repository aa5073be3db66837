//! Goridge v3 frame codec, the wire format RoadRunner speaks with its PHP workers
//! and RPC clients (`docs/protocol.md`, frames).
//!
//! The crate is sans-IO: [`decode`] takes bytes and returns a frame and the
//! number of bytes it used, or says that more bytes are needed; [`Frame::encode_into`]
//! appends a frame's bytes to a buffer. It never panics on any input, and it
//! bounds the payload and option counts it accepts ([`Limits`]).
//!
//! Invariants:
//! - No I/O and no async runtime here; relays wrap this codec.
//! - Decoding never allocates more than `Limits::max_payload` bytes for one frame.
//! - `decode(encode(f)) == f` and, for any frame whose header CRC is valid and whose
//!   reserved byte is zero, `encode(decode(bytes)) == bytes`.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Flag bits of byte 1.
pub mod flags {
    /// Control message: the JSON payload is a command (`pid`, `stop`).
    pub const CONTROL: u8 = 0x01;
    /// The payload is raw bytes.
    pub const CODEC_RAW: u8 = 0x04;
    /// The payload is JSON.
    pub const CODEC_JSON: u8 = 0x08;
    /// The payload is msgpack (RPC only).
    pub const CODEC_MSGPACK: u8 = 0x10;
    /// The payload is Go gob (RPC only).
    pub const CODEC_GOB: u8 = 0x20;
    /// The payload is an error message.
    pub const ERROR: u8 = 0x40;
    /// The payload is protobuf.
    pub const CODEC_PROTO: u8 = 0x80;
}

/// Bits of byte 10 (streaming control).
pub mod stream {
    /// This response frame is one chunk of a stream and more follow.
    pub const STREAM: u8 = 0x01;
    /// Server to worker: cancel the stream now.
    pub const STOP: u8 = 0x02;
    /// Worker to server: answer with a PONG.
    pub const PING: u8 = 0x04;
    /// Server to worker: the answer to a PING.
    pub const PONG: u8 = 0x08;
}

/// Protocol version carried in the high nibble of byte 0.
pub const VERSION: u8 = 1;
/// Length of the fixed header, without options.
pub const HEADER_LEN: usize = 12;
/// Most options a frame may carry. RoadRunner's Go code panics past 10 (spec 8.16);
/// we reject such a frame with an error instead.
pub const MAX_OPTIONS: usize = 10;

/// Bounds that protect the decoder from hostile or broken peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest payload accepted, in bytes.
    pub max_payload: usize,
}

impl Default for Limits {
    fn default() -> Self {
        // 128 MiB: far above any sane PHP response, far below the u32 ceiling.
        Limits {
            max_payload: 128 * 1024 * 1024,
        }
    }
}

/// Why a byte sequence is not a valid frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The version nibble is not 1: the bytes are almost certainly not a frame.
    #[error(
        "protocol version {found} in byte 0 (0x{byte0:02x}); Goridge v3 frames carry version 1"
    )]
    Version { found: u8, byte0: u8 },
    /// The header length nibble is outside 3..=13.
    #[error("header length of {hl} words in byte 0 (0x{byte0:02x}); a frame has 3 to {} words", 3 + MAX_OPTIONS)]
    HeaderLength { hl: u8, byte0: u8 },
    /// The header CRC does not match bytes 0..5.
    #[error("header CRC mismatch: stored 0x{stored:08x}, computed 0x{computed:08x}")]
    Crc { stored: u32, computed: u32 },
    /// The payload is larger than the configured limit.
    #[error("payload of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
}

impl FrameError {
    /// True when the bytes were most likely never meant to be a frame (for example
    /// text that PHP code echoed to stdout), as opposed to a frame over a limit.
    pub fn is_garbage(&self) -> bool {
        !matches!(self, FrameError::TooLarge { .. })
    }
}

/// One Goridge v3 frame.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Frame {
    /// Byte 1: see [`flags`].
    pub flags: u8,
    /// Byte 10: see [`stream`].
    pub byte10: u8,
    /// Option words (at most [`MAX_OPTIONS`]).
    pub options: Options,
    /// The payload; for worker jobs it is context followed by body.
    pub payload: Bytes,
}

/// Up to [`MAX_OPTIONS`] option words, stored inline (no allocation).
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Options {
    len: u8,
    words: [u32; MAX_OPTIONS],
}

impl Options {
    /// Options from a slice; `None` if there are more than [`MAX_OPTIONS`].
    pub fn from_slice(words: &[u32]) -> Option<Options> {
        if words.len() > MAX_OPTIONS {
            return None;
        }
        let mut o = Options::default();
        o.words[..words.len()].copy_from_slice(words);
        o.len = words.len() as u8;
        Some(o)
    }
    /// One option word.
    pub fn one(word: u32) -> Options {
        let mut o = Options::default();
        o.words[0] = word;
        o.len = 1;
        o
    }
    /// The option words.
    pub fn as_slice(&self) -> &[u32] {
        &self.words[..self.len as usize]
    }
    /// Number of option words.
    pub fn len(&self) -> usize {
        self.len as usize
    }
    /// True when there are no options.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

/// The 12 fixed header bytes, parsed and validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Number of option words (HL - 3).
    pub options: usize,
    /// Byte 1.
    pub flags: u8,
    /// Payload length in bytes.
    pub payload_len: usize,
    /// Byte 10.
    pub byte10: u8,
}

impl Header {
    /// Total frame size: header, options and payload.
    pub fn frame_len(&self) -> usize {
        HEADER_LEN + 4 * self.options + self.payload_len
    }
}

/// CRC-32/IEEE of the first six header bytes.
pub fn header_crc(first6: &[u8]) -> u32 {
    crc32fast::hash(first6)
}

/// Validates the first [`HEADER_LEN`] bytes of a frame.
pub fn decode_header(h: &[u8; HEADER_LEN], limits: &Limits) -> Result<Header, FrameError> {
    let byte0 = h[0];
    let version = byte0 >> 4;
    if version != VERSION {
        return Err(FrameError::Version {
            found: version,
            byte0,
        });
    }
    let hl = byte0 & 0x0f;
    if !(3..=(3 + MAX_OPTIONS as u8)).contains(&hl) {
        return Err(FrameError::HeaderLength { hl, byte0 });
    }
    let stored = u32::from_le_bytes([h[6], h[7], h[8], h[9]]);
    let computed = header_crc(&h[..6]);
    if stored != computed {
        return Err(FrameError::Crc { stored, computed });
    }
    let payload_len = u32::from_le_bytes([h[2], h[3], h[4], h[5]]) as usize;
    if payload_len > limits.max_payload {
        return Err(FrameError::TooLarge {
            len: payload_len,
            max: limits.max_payload,
        });
    }
    Ok(Header {
        options: (hl - 3) as usize,
        flags: h[1],
        payload_len,
        byte10: h[10],
    })
}

/// Decodes one frame from the front of `buf`.
///
/// Returns `Ok(None)` when `buf` holds only part of a frame (read more and call
/// again), `Ok(Some(frame))` after splitting the frame's bytes off `buf`, or an
/// error when the bytes cannot be a frame. On error `buf` is left untouched so the
/// caller can show what was received.
pub fn decode(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Frame>, FrameError> {
    let Some(head) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let mut h = [0u8; HEADER_LEN];
    h.copy_from_slice(head);
    let header = decode_header(&h, limits)?;
    if buf.len() < header.frame_len() {
        buf.reserve(header.frame_len() - buf.len());
        return Ok(None);
    }
    buf.advance(HEADER_LEN);
    let mut options = Options::default();
    for i in 0..header.options {
        options.words[i] = buf.get_u32_le();
    }
    options.len = header.options as u8;
    let payload = buf.split_to(header.payload_len).freeze();
    Ok(Some(Frame {
        flags: header.flags,
        byte10: header.byte10,
        options,
        payload,
    }))
}

/// Decodes exactly one frame from a complete byte slice (tests and tools).
pub fn decode_exact(bytes: &[u8], limits: &Limits) -> Result<Frame, DecodeExactError> {
    let mut buf = BytesMut::from(bytes);
    match decode(&mut buf, limits)? {
        None => Err(DecodeExactError::Truncated),
        Some(_) if !buf.is_empty() => Err(DecodeExactError::Trailing(buf.len())),
        Some(f) => Ok(f),
    }
}

/// Why [`decode_exact`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeExactError {
    /// The bytes are not a frame.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The bytes end before the frame does.
    #[error("the bytes end before the frame does")]
    Truncated,
    /// Bytes follow the frame.
    #[error("{0} bytes follow the frame")]
    Trailing(usize),
}

impl Frame {
    /// A frame with the given flags, options and payload, byte10 zero.
    pub fn new(flags: u8, options: Options, payload: Bytes) -> Frame {
        Frame {
            flags,
            byte10: 0,
            options,
            payload,
        }
    }

    /// A worker job: `options = [len(context)]`, payload = context ‖ body.
    pub fn job(flags: u8, context: &[u8], body: &[u8]) -> Frame {
        let mut p = BytesMut::with_capacity(context.len() + body.len());
        p.extend_from_slice(context);
        p.extend_from_slice(body);
        Frame::new(flags, Options::one(context.len() as u32), p.freeze())
    }

    /// A control frame as the server sends it (`CONTROL|CODEC_JSON`, no options).
    pub fn control(json: &'static [u8]) -> Frame {
        Frame::new(
            flags::CONTROL | flags::CODEC_JSON,
            Options::default(),
            Bytes::from_static(json),
        )
    }

    /// A stream control frame (PONG or STOP): no flags, options or payload.
    pub fn stream_control(bit: u8) -> Frame {
        Frame {
            byte10: bit,
            ..Frame::default()
        }
    }

    /// Splits the payload into context and body using `options[0]`.
    ///
    /// `None` when the frame has no context-length option or the length is out of range.
    pub fn split_context(&self) -> Option<(Bytes, Bytes)> {
        let &cl = self.options.as_slice().first()?;
        let cl = cl as usize;
        if cl > self.payload.len() {
            return None;
        }
        Some((self.payload.slice(..cl), self.payload.slice(cl..)))
    }

    /// Size of the encoded frame in bytes.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + 4 * self.options.len() + self.payload.len()
    }

    /// Appends the encoded header and options (not the payload) to `out`.
    ///
    /// Relays write the payload separately to avoid copying large bodies.
    ///
    /// # Panics
    /// Never: the payload length is checked by [`Frame::check_len`] callers; a payload
    /// over `u32::MAX` is truncated to the low 32 bits by design of the format and
    /// must be rejected before (see [`Frame::check_len`]).
    pub fn encode_header_into(&self, out: &mut impl BufMut) {
        let mut h = [0u8; HEADER_LEN];
        h[0] = (VERSION << 4) | (3 + self.options.len() as u8);
        h[1] = self.flags;
        h[2..6].copy_from_slice(&(self.payload.len() as u32).to_le_bytes());
        let crc = header_crc(&h[..6]);
        h[6..10].copy_from_slice(&crc.to_le_bytes());
        h[10] = self.byte10;
        out.put_slice(&h);
        for &o in self.options.as_slice() {
            out.put_u32_le(o);
        }
    }

    /// Fails when the payload cannot be described by the u32 length field.
    pub fn check_len(&self) -> Result<(), FrameError> {
        if self.payload.len() > u32::MAX as usize {
            return Err(FrameError::TooLarge {
                len: self.payload.len(),
                max: u32::MAX as usize,
            });
        }
        Ok(())
    }

    /// Appends the whole encoded frame to `out`.
    pub fn encode_into(&self, out: &mut impl BufMut) {
        self.encode_header_into(out);
        out.put_slice(&self.payload);
    }

    /// The whole encoded frame.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut v);
        v
    }

    /// True when byte10 has the STREAM bit: more frames of this response follow.
    pub fn is_stream(&self) -> bool {
        self.byte10 & stream::STREAM != 0
    }
    /// True when the CONTROL flag is set.
    pub fn is_control(&self) -> bool {
        self.flags & flags::CONTROL != 0
    }
    /// True when the ERROR flag is set.
    pub fn is_error(&self) -> bool {
        self.flags & flags::ERROR != 0
    }
}

/// Appends the header of a job frame (one option: the context length) for a
/// payload of `payload_len` bytes, so a writer can send context and body from
/// their own buffers. Same bytes as `Frame::job(..).encode_header_into`.
pub fn encode_job_header(flags: u8, context_len: u32, payload_len: u32, out: &mut impl BufMut) {
    let mut h = [0u8; HEADER_LEN];
    h[0] = (VERSION << 4) | 4;
    h[1] = flags;
    h[2..6].copy_from_slice(&payload_len.to_le_bytes());
    let crc = header_crc(&h[..6]);
    h[6..10].copy_from_slice(&crc.to_le_bytes());
    out.put_slice(&h);
    out.put_u32_le(context_len);
}

/// Renders the first bytes of unexpected output for an error message: printable
/// ASCII as is, everything else escaped, at most `max` input bytes.
pub fn preview(bytes: &[u8], max: usize) -> String {
    let shown = &bytes[..bytes.len().min(max)];
    let mut s: String = shown.escape_ascii().to_string();
    if bytes.len() > max {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    type Parts<'a> = (u8, u8, &'a [u32], &'a [u8]);

    fn check(bytes: &[u8], expected: Result<Option<Parts<'_>>, FrameError>) {
        let mut buf = BytesMut::from(bytes);
        let got = decode(&mut buf, &Limits::default()).map(|o| {
            o.map(|f| {
                (
                    f.flags,
                    f.byte10,
                    f.options.as_slice().to_vec(),
                    f.payload.to_vec(),
                )
            })
        });
        let expected = expected.map(|o| o.map(|(a, b, c, d)| (a, b, c.to_vec(), d.to_vec())));
        assert_eq!(got, expected, "input {:02x?}", bytes);
    }

    #[test]
    fn decodes_and_rejects() {
        let stop = Frame::control(b"{\"stop\":true}").to_bytes();
        check(&stop, Ok(Some((0x09, 0, &[], b"{\"stop\":true}"))));
        check(&stop[..5], Ok(None));
        check(&stop[..13], Ok(None));
        check(
            b"Hello, World!",
            Err(FrameError::Version {
                found: 4,
                byte0: b'H',
            }),
        );
        let mut bad_hl = stop.clone();
        bad_hl[0] = 0x1e;
        check(
            &bad_hl,
            Err(FrameError::HeaderLength {
                hl: 14,
                byte0: 0x1e,
            }),
        );
        let mut bad_crc = stop.clone();
        bad_crc[6] ^= 0xff;
        assert!(matches!(
            decode(&mut BytesMut::from(&bad_crc[..]), &Limits::default()),
            Err(FrameError::Crc { .. })
        ));
        let big = Frame::job(0, b"", &[7u8; 100]).to_bytes();
        let mut buf = BytesMut::from(&big[..]);
        assert_eq!(
            decode(&mut buf, &Limits { max_payload: 99 }),
            Err(FrameError::TooLarge {
                len: 104 - 4,
                max: 99
            })
        );
    }

    #[test]
    fn split_context_checks_range() {
        let f = Frame::job(0x08, b"ctx", b"body");
        assert_eq!(
            f.split_context(),
            Some((Bytes::from_static(b"ctx"), Bytes::from_static(b"body")))
        );
        let bad = Frame::new(0, Options::one(99), Bytes::from_static(b"x"));
        assert_eq!(bad.split_context(), None);
        let none = Frame::new(0x40, Options::default(), Bytes::from_static(b"x"));
        assert_eq!(none.split_context(), None);
    }

    #[test]
    fn two_frames_in_one_buffer() {
        let mut v = Frame::control(b"{\"pid\":1}").to_bytes();
        v.extend(Frame::stream_control(stream::PONG).to_bytes());
        let mut buf = BytesMut::from(&v[..]);
        let a = decode(&mut buf, &Limits::default()).unwrap().unwrap();
        let b = decode(&mut buf, &Limits::default()).unwrap().unwrap();
        assert_eq!(a.payload, Bytes::from_static(b"{\"pid\":1}"));
        assert_eq!(b.byte10, stream::PONG);
        assert!(buf.is_empty());
    }

    #[test]
    fn job_header_matches_frame_encoding() {
        for (ctx, body) in [(&b"{}"[..], &b"hello"[..]), (b"", b""), (b"ctx", b"")] {
            let f = Frame::job(0x08, ctx, body);
            let mut want = Vec::new();
            f.encode_header_into(&mut want);
            let mut got = Vec::new();
            encode_job_header(
                0x08,
                ctx.len() as u32,
                (ctx.len() + body.len()) as u32,
                &mut got,
            );
            assert_eq!(got, want);
        }
    }

    #[test]
    fn preview_escapes() {
        assert_eq!(preview(b"Hi\n\x00", 10), "Hi\\n\\x00");
        assert_eq!(preview(b"abcdef", 3), "abc…");
    }
}
