//! The kv vectors captured from RoadRunner's PHP library (`rpc_*_kv_*`):
//! every message decodes into Courser's kv.v1 types and encodes back byte for
//! byte, and Courser's RPC registry, given the captured request frames in
//! order (Set, MGet, Has, Delete on `local-memory`), answers with the
//! captured reply frames, byte for byte.

use bytes::BytesMut;
use courser_config::{DriverOptions, KvConfig, KvDriver, StorageConfig};
use courser_frame::{decode_exact, Frame, Limits};
use courser_kv::proto::{Request, Response};
use courser_kv::KvPlugin;
use courser_plugin::Plugin;
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

fn bytes_of(f: &Frame) -> Vec<u8> {
    let mut out = BytesMut::new();
    f.encode_into(&mut out);
    out.to_vec()
}

fn body(f: &Frame) -> (String, Vec<u8>) {
    let mlen = f.options.as_slice()[1] as usize;
    (
        String::from_utf8_lossy(&f.payload[..mlen]).into_owned(),
        f.payload[mlen..].to_vec(),
    )
}

const METHODS: [&str; 4] = ["Set", "MGet", "Has", "Delete"];

#[test]
fn messages_decode_and_reencode() {
    for m in METHODS {
        let req = frame(&format!("rpc_request_kv_{m}"));
        assert_eq!(bytes_of(&req), vector(&format!("rpc_request_kv_{m}")));
        let (method, b) = body(&req);
        assert_eq!(method, format!("kv.{m}"));
        let r = Request::decode(b.as_slice()).expect("kv.v1.Request");
        assert_eq!(r.storage, "local-memory");
        assert_eq!(r.items.len(), 1);
        assert_eq!(r.items[0].key, "greeting");
        assert_eq!(
            r.encode_to_vec(),
            b,
            "{m}: Request re-encodes byte for byte"
        );

        let (_, b) = body(&frame(&format!("rpc_response_kv_{m}")));
        let resp = Response::decode(b.as_slice()).expect("kv.v1.Response");
        assert_eq!(
            resp.encode_to_vec(),
            b,
            "{m}: Response re-encodes byte for byte"
        );
    }
    let (_, b) = body(&frame("rpc_request_kv_Set"));
    let set = Request::decode(b.as_slice()).expect("Request");
    assert_eq!(set.items[0].value.as_ref(), b"s:5:\"hello\";");
    assert_eq!(set.items[0].timeout, "");
}

#[tokio::test]
async fn registry_answers_the_captured_replies() {
    let cfg = KvConfig {
        storages: vec![StorageConfig {
            name: "local-memory".into(),
            driver: "memory".into(),
            config: DriverOptions::default(),
            settings: KvDriver::Memory {
                max_size: 1 << 20,
                max_entries: 1000,
                interval: std::time::Duration::from_secs(1),
            },
        }],
    };
    let plugin = KvPlugin::new(&cfg).await.expect("plugin");
    let mut rpc = courser_rpc::Registry::default();
    plugin.register_rpc(&mut rpc);
    for m in METHODS {
        let reply = rpc.answer(frame(&format!("rpc_request_kv_{m}"))).await;
        assert_eq!(
            bytes_of(&reply),
            vector(&format!("rpc_response_kv_{m}")),
            "kv.{m}: the reply frame differs from RoadRunner's"
        );
    }
}
