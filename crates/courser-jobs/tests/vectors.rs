//! The jobs vectors captured from RoadRunner's PHP library (`jobs_*`,
//! `rpc_*_jobs_*`): every message decodes into Courser's types and encodes
//! back byte for byte; the worker context Courser writes for the same job
//! is the captured one.

use bytes::BytesMut;
use courser_frame::{decode_exact, Frame, Limits, Options};
use courser_jobs::{proto, Answer, Job};
use prost::Message;
use std::path::PathBuf;

fn vector(name: &str) -> Vec<u8> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dirs = [root.join("tests/vectors")];
    for d in &dirs {
        if let Ok(text) = std::fs::read_to_string(d.join(format!("{name}.hex"))) {
            let t: String = text.split_whitespace().collect();
            return (0..t.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&t[i..i + 2], 16).expect("hex"))
                .collect();
        }
    }
    panic!("vector {name} not found in {dirs:?}");
}

fn frame(name: &str) -> Frame {
    decode_exact(&vector(name), &Limits::default()).expect("a frame")
}

fn reencode(f: &Frame) -> Vec<u8> {
    let mut out = BytesMut::new();
    f.encode_into(&mut out);
    out.to_vec()
}

/// An RPC frame's method and body (options `[seq, len(method)]`).
fn rpc_body(f: &Frame) -> (String, Vec<u8>) {
    let mlen = f.options.as_slice()[1] as usize;
    (
        String::from_utf8_lossy(&f.payload[..mlen]).into_owned(),
        f.payload[mlen..].to_vec(),
    )
}

#[test]
fn rpc_messages_roundtrip() {
    let f = frame("rpc_request_jobs_Pause");
    assert_eq!(reencode(&f), vector("rpc_request_jobs_Pause"));
    let (method, body) = rpc_body(&f);
    assert_eq!(method, "jobs.Pause");
    let p = proto::Pipelines::decode(body.as_slice()).expect("Pipelines");
    assert_eq!(p.pipelines, vec!["emails"]);
    assert_eq!(p.encode_to_vec(), body);

    let f = frame("rpc_response_jobs_Pause");
    assert!(rpc_body(&f).1.is_empty(), "Pause answers Empty");

    let f = frame("rpc_request_jobs_Stat");
    let (method, body) = rpc_body(&f);
    assert_eq!(method, "jobs.Stat");
    assert!(body.is_empty());

    let f = frame("rpc_response_jobs_Stat");
    assert_eq!(reencode(&f), vector("rpc_response_jobs_Stat"));
    let (_, body) = rpc_body(&f);
    let s = proto::Stats::decode(body.as_slice()).expect("Stats");
    assert_eq!(s.stats.len(), 1);
    let st = &s.stats[0];
    assert_eq!(
        (
            st.pipeline.as_str(),
            st.driver.as_str(),
            st.queue.as_str(),
            st.active,
            st.ready
        ),
        ("emails", "memory", "emails", 3, true)
    );
    assert_eq!(s.encode_to_vec(), body, "Stats re-encodes byte for byte");
}

#[test]
fn the_worker_context_is_the_captured_one() {
    let f = frame("jobs_request_ok");
    assert_eq!(f.flags, courser_frame::flags::CODEC_RAW);
    let clen = f.options.as_slice()[0] as usize;
    let ctx: serde_json::Value = serde_json::from_slice(&f.payload[..clen]).expect("json");
    let mut job = Job {
        name: ctx["job"].as_str().unwrap_or_default().into(),
        id: ctx["id"].as_str().unwrap_or_default().into(),
        payload: f.payload.slice(clen..),
        ..Job::default()
    };
    job.options.pipeline = "emails".into();
    job.headers.insert("x-trace".into(), vec!["t1".into()]);
    let ours = job.context("memory", None);
    assert_eq!(ours, f.payload[..clen].to_vec(), "context bytes");
    let again = Frame {
        flags: courser_frame::flags::CODEC_RAW,
        byte10: 0,
        options: Options::one(ours.len() as u32),
        payload: [ours.as_slice(), &job.payload[..]].concat().into(),
    };
    assert_eq!(reencode(&again), vector("jobs_request_ok"));

    let f = frame("jobs_request_fail");
    let clen = f.options.as_slice()[0] as usize;
    let ctx: serde_json::Value = serde_json::from_slice(&f.payload[..clen]).expect("json");
    assert!(ctx["headers"].is_null());
    let mut job = Job {
        name: "fail".into(),
        id: ctx["id"].as_str().unwrap_or_default().into(),
        ..Job::default()
    };
    job.options.pipeline = ctx["pipeline"].as_str().unwrap_or_default().into();
    assert_eq!(job.context("memory", None), f.payload[..clen].to_vec());
}

#[test]
fn the_captured_answers_parse() {
    let f = frame("jobs_response_ok");
    let clen = f.options.as_slice()[0] as usize;
    assert_eq!(Answer::parse(&f.payload[clen..]), Ok(Answer::Ack));
    let f = frame("jobs_response_fail");
    let clen = f.options.as_slice()[0] as usize;
    match Answer::parse(&f.payload[clen..]) {
        Ok(Answer::Requeue {
            message,
            delay,
            headers,
        }) => {
            assert_eq!(message, "bad thing");
            assert_eq!(delay.as_secs(), 5);
            assert_eq!(headers.get("attempt"), Some(&vec!["2".to_string()]));
        }
        other => panic!("{other:?}"),
    }
}
