//! Every frame in `tests/vectors` (captured from RoadRunner's PHP libraries; see `docs/protocol.md`) decodes, passes its CRC check, splits into
//! its parts, and re-encodes to the identical bytes.

use courser_frame::{decode_exact, flags, stream, Limits};
use std::path::PathBuf;

fn vectors_dir() -> PathBuf {
    if let Ok(d) = std::env::var("COURSER_VECTORS") {
        return PathBuf::from(d);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors")
}

fn unhex(s: &str) -> Vec<u8> {
    let s = s.trim();
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

fn load(name: &str) -> Vec<u8> {
    let p = vectors_dir().join(format!("{name}.hex"));
    unhex(&std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
}

#[test]
fn every_vector_round_trips_byte_for_byte() {
    let dir = vectors_dir();
    let mut n = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "hex"))
        .collect();
    entries.sort();
    for p in entries {
        let bytes = unhex(&std::fs::read_to_string(&p).expect("read vector"));
        let f = decode_exact(&bytes, &Limits::default())
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert_eq!(
            f.to_bytes(),
            bytes,
            "{} re-encodes differently",
            p.display()
        );
        n += 1;
    }
    assert!(n >= 57, "expected at least 57 vectors, found {n}");
}

struct Expect {
    name: &'static str,
    flags: u8,
    byte10: u8,
    options: &'static [u32],
    context: Option<&'static [u8]>,
    body_prefix: &'static [u8],
}

#[test]
fn vectors_decode_to_their_documented_parts() {
    let cases = [
        Expect {
            name: "pid_request",
            flags: 0x09,
            byte10: 0,
            options: &[],
            context: None,
            body_prefix: b"{\"pid\":1651}",
        },
        Expect {
            name: "pid_response",
            flags: flags::CONTROL,
            byte10: 0,
            options: &[],
            context: None,
            body_prefix: b"{\"pid\":",
        },
        Expect {
            name: "stop",
            flags: 0x09,
            byte10: 0,
            options: &[],
            context: None,
            body_prefix: b"{\"stop\":true}",
        },
        Expect {
            name: "worker_stop_request",
            flags: 0,
            byte10: 0,
            options: &[13],
            context: Some(b"{\"stop\":true}"),
            body_prefix: b"",
        },
        Expect {
            name: "pong",
            flags: 0,
            byte10: stream::PONG,
            options: &[],
            context: None,
            body_prefix: b"",
        },
        Expect {
            name: "stream_stop",
            flags: 0,
            byte10: stream::STOP,
            options: &[],
            context: None,
            body_prefix: b"",
        },
        Expect {
            name: "stream_stop_ack",
            flags: 0,
            byte10: 0,
            options: &[0],
            context: Some(b""),
            body_prefix: b"",
        },
        Expect {
            name: "http_response_error",
            flags: flags::ERROR,
            byte10: 0,
            options: &[],
            context: None,
            body_prefix: b"boom: worker error",
        },
        Expect {
            name: "http_response_stream_06",
            flags: flags::CODEC_PROTO,
            byte10: stream::STREAM | stream::PING,
            options: &[],
            context: None,
            body_prefix: b"",
        },
        Expect {
            name: "http_response_legacy_get",
            flags: 0,
            byte10: 0,
            options: &[],
            context: None,
            body_prefix: b"",
        },
        Expect {
            name: "http_response_json_get",
            flags: flags::CODEC_JSON,
            byte10: 0,
            options: &[],
            context: None,
            body_prefix: b"",
        },
        Expect {
            name: "jobs_request_ok",
            flags: flags::CODEC_RAW,
            byte10: 0,
            options: &[],
            context: None,
            body_prefix: b"",
        },
        Expect {
            name: "rpc_request_resetter_Reset",
            flags: flags::CODEC_JSON,
            byte10: 0,
            options: &[2, 14],
            context: None,
            body_prefix: b"resetter.Reset\"http\"",
        },
        Expect {
            name: "rpc_response_informer_Nope",
            flags: flags::CODEC_JSON | flags::ERROR,
            byte10: 0,
            options: &[],
            context: None,
            body_prefix: b"",
        },
    ];
    for c in cases {
        let f = decode_exact(&load(c.name), &Limits::default()).expect(c.name);
        assert_eq!(f.flags, c.flags, "{}: flags", c.name);
        assert_eq!(f.byte10, c.byte10, "{}: byte10", c.name);
        if !c.options.is_empty() || c.context.is_some() {
            assert_eq!(f.options.as_slice(), c.options, "{}: options", c.name);
        }
        if let Some(ctx) = c.context {
            let (got_ctx, body) = f.split_context().expect(c.name);
            assert_eq!(&got_ctx[..], ctx, "{}: context", c.name);
            assert!(body.starts_with(c.body_prefix), "{}: body", c.name);
        } else {
            assert!(
                f.payload.starts_with(c.body_prefix),
                "{}: payload {:?}",
                c.name,
                f.payload
            );
        }
    }
}

#[test]
fn response_vectors_carry_one_context_option_in_range() {
    for name in [
        "http_response_get",
        "http_response_form",
        "http_response_multipart",
        "http_response_json_body",
        "http_response_head",
        "http_response_stream_01",
        "http_response_stream_08",
        "http_response_early_hints_01",
        "http_response_early_hints_02",
        "jobs_response_ok",
        "jobs_response_fail",
    ] {
        let f = decode_exact(&load(name), &Limits::default()).expect(name);
        assert_eq!(f.options.len(), 1, "{name}");
        assert!(
            f.split_context().is_some(),
            "{name}: context length out of range"
        );
    }
}

/// The vectors are a copy of the team's shared capture (`../shared/spec/vectors`
/// beside this repository, when it is there): they must not drift apart.
#[test]
fn the_copied_vectors_match_the_shared_capture() {
    let shared = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/spec/vectors");
    if !shared.is_dir() {
        eprintln!(
            "skipping: {} is not there (a checkout outside the team workspace)",
            shared.display()
        );
        return;
    }
    let names = |d: &PathBuf| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .expect("read dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let ours = vectors_dir();
    assert_eq!(
        names(&ours),
        names(&shared),
        "tests/vectors and {} list different files",
        shared.display()
    );
    for n in names(&ours) {
        let a = std::fs::read(ours.join(&n)).expect("read ours");
        let b = std::fs::read(shared.join(&n)).expect("read shared");
        assert!(
            a == b,
            "tests/vectors/{n} differs from the shared capture; copy it again"
        );
    }
}
