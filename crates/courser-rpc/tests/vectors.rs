//! Every `rpc_*` vector: the request frame captured from the official PHP client,
//! dispatched through a registry whose handlers give the documented replies,
//! must produce the reply vector byte for byte (seq echo, options, flags, CRC),
//! both in process and through a real server over TCP and a unix socket.

use bytes::Bytes;
use courser_frame::{decode_exact, flags, Limits};
use courser_rpc::informer::{self, WorkerInfo, WorkerList};
use courser_rpc::{resetter, Call, Registry, RpcServer};
use futures_util::FutureExt;
use std::path::PathBuf;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn vectors_dir() -> PathBuf {
    if let Ok(d) = std::env::var("COURSER_VECTORS") {
        return PathBuf::from(d);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors")
}

fn load(name: &str) -> Vec<u8> {
    let p = vectors_dir().join(format!("{name}.hex"));
    let hex = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let hex = hex.trim();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex digit"))
        .collect()
}

/// The body of a vector: its payload after the method name (`options[1]`).
fn body_of(name: &str) -> Bytes {
    let f = decode_exact(&load(name), &Limits::default()).expect("vector decodes");
    let method_len = f.options.as_slice()[1] as usize;
    f.payload.slice(method_len..)
}

/// The vectors in the order the PHP client sent them (seq 1..9).
const CASES: [&str; 9] = [
    "informer_Workers",
    "resetter_Reset",
    "kv_Set",
    "kv_MGet",
    "kv_Has",
    "kv_Delete",
    "jobs_Pause",
    "jobs_Stat",
    "informer_Nope",
];

/// A registry that answers as the scripted server that recorded the vectors did.
fn registry() -> Registry {
    let mut r = Registry::default();
    r.register_json(informer::WORKERS, |plugin: String| async move {
        if plugin != "http" {
            return Err(format!("unexpected plugin {plugin}"));
        }
        Ok(WorkerList {
            workers: vec![WorkerInfo {
                pid: 4242,
                status: 1,
                num_execs: 7,
                created: 1_700_000_000_000_000_000,
                memory_usage: 20_971_520,
                cpu_percent: 0.5,
                command: String::new(),
                status_str: informer::status_str(1).into(),
            }],
        })
    });
    r.register_json(resetter::RESET, |plugin: String| async move {
        match plugin.as_str() {
            "http" => Ok(true),
            other => Err(format!("unexpected plugin {other}")),
        }
    });
    // The protobuf methods check that they got exactly the PHP argument and
    // answer with the recorded protobuf reply.
    for name in [
        "kv_Set",
        "kv_MGet",
        "kv_Has",
        "kv_Delete",
        "jobs_Pause",
        "jobs_Stat",
    ] {
        let method = name.replacen('_', ".", 1);
        let want = body_of(&format!("rpc_request_{name}"));
        let reply = body_of(&format!("rpc_response_{name}"));
        r.register(&method, move |call: Call| {
            let ok = call.flags == flags::CODEC_PROTO && call.body == want;
            let reply = reply.clone();
            let got = format!("flags 0x{:02x}, body {:02x?}", call.flags, call.body);
            async move {
                if ok {
                    Ok(reply)
                } else {
                    Err(format!("unexpected argument: {got}"))
                }
            }
            .boxed()
        });
    }
    r
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn every_rpc_vector_is_answered_byte_for_byte_in_process() {
    let r = registry();
    for name in CASES {
        let request = decode_exact(&load(&format!("rpc_request_{name}")), &Limits::default())
            .expect("request decodes");
        let want = load(&format!("rpc_response_{name}"));
        let got = r.answer(request).await.to_bytes();
        assert_eq!(hex(&got), hex(&want), "{name}");
    }
}

#[tokio::test]
async fn every_rpc_vector_is_answered_byte_for_byte_over_tcp_and_unix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let unix = format!("unix://{}", dir.path().join("rpc.sock").display());
    for listen in ["tcp://127.0.0.1:0", unix.as_str()] {
        let server = RpcServer::bind(listen, registry()).await.expect("bind");
        let addr = server.local_addr();
        let (stop, rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(server.run(rx));
        let (mut r, mut w): (
            Box<dyn tokio::io::AsyncRead + Unpin + Send>,
            Box<dyn tokio::io::AsyncWrite + Unpin + Send>,
        ) = match addr {
            Some(a) => {
                let (r, w) = tokio::net::TcpStream::connect(a)
                    .await
                    .expect("connect")
                    .into_split();
                (Box::new(r), Box::new(w))
            }
            None => {
                let path = listen.trim_start_matches("unix://");
                let (r, w) = tokio::net::UnixStream::connect(path)
                    .await
                    .expect("connect")
                    .into_split();
                (Box::new(r), Box::new(w))
            }
        };
        // One connection, the PHP client's order: seq 1..9.
        for name in CASES {
            w.write_all(&load(&format!("rpc_request_{name}")))
                .await
                .expect("write");
            let want = load(&format!("rpc_response_{name}"));
            let mut got = vec![0u8; want.len()];
            r.read_exact(&mut got).await.expect("reply");
            assert_eq!(hex(&got), hex(&want), "{name} over {listen}");
        }
        stop.send(true).expect("stop");
        task.await.expect("server task");
    }
}
