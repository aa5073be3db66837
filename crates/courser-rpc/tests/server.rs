//! The server and client over real sockets: round trips, errors, concurrency,
//! ordering, hostile input, size limits, shutdown and bind/connect errors.

use bytes::Bytes;
use courser_frame::{decode_exact, flags, Frame, Limits, Options};
use courser_rpc::informer::{WorkerInfo, WorkerList};
use courser_rpc::{Registry, RpcClient, RpcError, RpcServer};
use futures_util::FutureExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{watch, Barrier};
use tokio::task::JoinHandle;

const T: Duration = Duration::from_secs(10);

fn registry() -> Registry {
    let mut r = Registry::default();
    r.register_json("informer.Workers", |plugin: String| async move {
        Ok(WorkerList {
            workers: vec![WorkerInfo {
                pid: 1,
                status: 1,
                num_execs: 0,
                created: 0,
                memory_usage: 0,
                cpu_percent: 0.0,
                command: format!("php {plugin}.php"),
                status_str: "ready".into(),
            }],
        })
    });
    r.register_json("test.Sleep", |ms: u64| async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(ms)
    });
    r.register("test.Echo", |call| async move { Ok(call.body) }.boxed());
    r.register("test.Len", |call| {
        async move { Ok(Bytes::from(call.body.len().to_string())) }.boxed()
    });
    r.register("test.Panic", |_| {
        async move { panic!("handler bug") }.boxed()
    });
    r
}

struct Running {
    listen: String,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

async fn start(registry: Registry) -> Running {
    start_with(
        RpcServer::bind("tcp://127.0.0.1:0", registry)
            .await
            .expect("bind"),
    )
    .await
}

async fn start_with(server: RpcServer) -> Running {
    let listen = match server.local_addr() {
        Some(a) => format!("tcp://{a}"),
        None => server.listen().to_string(),
    };
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(server.run(rx));
    Running { listen, stop, task }
}

impl Running {
    async fn client(&self) -> RpcClient {
        RpcClient::connect(&self.listen, T).await.expect("connect")
    }
    async fn raw(&self) -> TcpStream {
        TcpStream::connect(self.listen.trim_start_matches("tcp://"))
            .await
            .expect("connect")
    }
    async fn shutdown(self) {
        self.stop.send(true).expect("stop");
        tokio::time::timeout(T, self.task)
            .await
            .expect("run returns")
            .expect("server task");
    }
}

fn request(seq: u32, method: &str, flags: u8, body: &[u8]) -> Vec<u8> {
    let mut payload = method.as_bytes().to_vec();
    payload.extend_from_slice(body);
    Frame::new(
        flags,
        Options::from_slice(&[seq, method.len() as u32]).expect("options"),
        Bytes::from(payload),
    )
    .to_bytes()
}

/// Reads one whole frame from a raw stream.
async fn read_frame(s: &mut TcpStream) -> Frame {
    let mut head = [0u8; 12];
    tokio::time::timeout(T, s.read_exact(&mut head))
        .await
        .expect("in time")
        .expect("header");
    let words = usize::from(head[0] & 0x0f) - 3;
    let len = u32::from_le_bytes([head[2], head[3], head[4], head[5]]) as usize;
    let mut rest = vec![0u8; 4 * words + len];
    s.read_exact(&mut rest).await.expect("rest");
    let mut all = head.to_vec();
    all.extend(rest);
    decode_exact(&all, &Limits::default()).expect("a frame")
}

/// True when the server closed the stream (EOF or reset) within the deadline.
async fn closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 64];
    matches!(
        tokio::time::timeout(T, s.read(&mut b)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test]
async fn json_round_trip_with_the_client() {
    let s = start(registry()).await;
    let mut c = s.client().await;
    let list: WorkerList = c
        .call_json("informer.Workers", &"http")
        .await
        .expect("call");
    assert_eq!(list.workers[0].command, "php http.php");
    // The seq goes on counting on the same connection.
    let n: u64 = c.call_json("test.Sleep", &1u64).await.expect("call");
    assert_eq!(n, 1);
    let raw = c
        .call("test.Echo", flags::CODEC_RAW, b"\x00\x01raw")
        .await
        .expect("raw call");
    assert_eq!(&raw[..], b"\x00\x01raw");
    s.shutdown().await;
}

#[tokio::test]
async fn round_trip_over_a_unix_socket_and_the_file_is_removed_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("rpc.sock");
    let listen = format!("unix://{}", path.display());
    let s = start_with(RpcServer::bind(&listen, registry()).await.expect("bind")).await;
    let mut c = s.client().await;
    let list: WorkerList = c
        .call_json("informer.Workers", &"jobs")
        .await
        .expect("call");
    assert_eq!(list.workers[0].command, "php jobs.php");
    drop(c);
    s.shutdown().await;
    assert!(!path.exists(), "socket file left behind");
}

#[tokio::test]
async fn unknown_methods_and_services_get_go_net_rpc_errors() {
    let s = start(registry()).await;
    let mut c = s.client().await;
    let cases = [
        ("informer.Nope", "rpc: can't find method informer.Nope"),
        ("nope.Method", "rpc: can't find service nope.Method"),
        ("nodot", "rpc: service/method request ill-formed: nodot"),
    ];
    for (method, want) in cases {
        match c.call_json::<_, bool>(method, &"x").await {
            Err(RpcError::Remote(m)) => assert_eq!(m, want),
            other => panic!("{method}: expected a remote error, got {other:?}"),
        }
    }
    // A wrong argument is an error reply too, and the connection stays usable.
    match c.call_json::<_, u64>("test.Sleep", &"not a number").await {
        Err(RpcError::Remote(m)) => assert!(m.starts_with("test.Sleep: the argument"), "{m}"),
        other => panic!("expected a remote error, got {other:?}"),
    }
    let n: u64 = c.call_json("test.Sleep", &0u64).await.expect("still works");
    assert_eq!(n, 0);
    s.shutdown().await;
}

#[tokio::test]
async fn a_panicking_handler_fails_only_its_call() {
    let s = start(registry()).await;
    let mut c = s.client().await;
    match c.call("test.Panic", flags::CODEC_JSON, b"").await {
        Err(RpcError::Remote(m)) => assert!(m.contains("internal error"), "{m}"),
        other => panic!("expected a remote error, got {other:?}"),
    }
    let n: u64 = c
        .call_json("test.Sleep", &0u64)
        .await
        .expect("same connection");
    assert_eq!(n, 0);
    s.shutdown().await;
}

#[tokio::test]
async fn many_clients_are_served_concurrently() {
    const N: usize = 8;
    let barrier = Arc::new(Barrier::new(N));
    let mut r = registry();
    r.register("test.Meet", move |_| {
        let b = barrier.clone();
        async move {
            // Completes only when all N calls are in progress at once.
            b.wait().await;
            Ok(Bytes::from_static(b"true"))
        }
        .boxed()
    });
    let s = start(r).await;
    let mut calls = Vec::new();
    for _ in 0..N {
        let mut c = s.client().await;
        calls.push(tokio::spawn(async move {
            c.call_json::<_, bool>("test.Meet", &()).await
        }));
    }
    for call in calls {
        let ok = tokio::time::timeout(T, call)
            .await
            .expect("all calls meet")
            .expect("join")
            .expect("call");
        assert!(ok);
    }
    s.shutdown().await;
}

#[tokio::test]
async fn pipelined_requests_on_one_connection_are_answered_in_order() {
    let s = start(registry()).await;
    let mut sock = s.raw().await;
    let mut bytes = request(1, "test.Sleep", flags::CODEC_JSON, b"100");
    bytes.extend(request(2, "test.Sleep", flags::CODEC_JSON, b"0"));
    bytes.extend(request(3, "test.Echo", flags::CODEC_RAW, b"third"));
    sock.write_all(&bytes).await.expect("write");
    for (seq, body) in [(1, &b"100"[..]), (2, b"0"), (3, b"third")] {
        let f = read_frame(&mut sock).await;
        assert_eq!(f.options.as_slice()[0], seq);
        let m = f.options.as_slice()[1] as usize;
        assert_eq!(&f.payload[m..], body, "seq {seq}");
    }
    s.shutdown().await;
}

#[tokio::test]
async fn garbage_closes_that_connection_only() {
    let s = start(registry()).await;
    let mut c = s.client().await;
    for junk in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"\x15\x08\x00\x00\x00\x00\xde\xad\xbe\xef\x00\x00", // bad CRC
        b"\x1f\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", // HL 15
        b"hi",
    ] {
        let mut sock = s.raw().await;
        sock.write_all(junk).await.expect("write");
        sock.shutdown().await.expect("half close");
        assert!(closed(&mut sock).await, "{junk:?}: connection not closed");
    }
    // A connection that goes away mid-frame, too.
    let mut sock = s.raw().await;
    sock.write_all(&request(1, "test.Echo", 0x04, b"abcdef")[..20])
        .await
        .expect("write");
    drop(sock);
    let n: u64 = c
        .call_json("test.Sleep", &0u64)
        .await
        .expect("server alive");
    assert_eq!(n, 0);
    let mut fresh = s.client().await;
    let n: u64 = fresh
        .call_json("test.Sleep", &0u64)
        .await
        .expect("accepts new connections");
    assert_eq!(n, 0);
    s.shutdown().await;
}

#[tokio::test]
async fn malformed_frames_get_an_error_reply_and_the_connection_goes_on() {
    let s = start(registry()).await;
    let mut sock = s.raw().await;
    // One option only.
    let one = Frame::new(flags::CODEC_JSON, Options::one(5), Bytes::from_static(b"x"));
    sock.write_all(&one.to_bytes()).await.expect("write");
    let f = read_frame(&mut sock).await;
    assert_eq!(f.flags, flags::CODEC_JSON | flags::ERROR);
    assert_eq!(f.options.as_slice(), &[5, 0]);
    // Method length past the payload.
    let long = Frame::new(
        flags::CODEC_PROTO,
        Options::from_slice(&[6, 500]).expect("options"),
        Bytes::from_static(b"kv.Set"),
    );
    sock.write_all(&long.to_bytes()).await.expect("write");
    let f = read_frame(&mut sock).await;
    assert_eq!(f.flags, flags::CODEC_PROTO | flags::ERROR);
    assert_eq!(f.options.as_slice(), &[6, 0]);
    // Still in step.
    sock.write_all(&request(7, "test.Echo", flags::CODEC_RAW, b"ok"))
        .await
        .expect("write");
    let f = read_frame(&mut sock).await;
    assert_eq!(
        (f.flags, f.options.as_slice()),
        (flags::CODEC_RAW, &[7, 9][..])
    );
    assert_eq!(&f.payload[..], b"test.Echook");
    s.shutdown().await;
}

#[tokio::test]
async fn an_oversize_request_is_refused_and_the_connection_recovers() {
    let s = start(registry()).await;
    let mut c = s.client().await;
    let big = vec![b'a'; courser_rpc::DEFAULT_MAX_MESSAGE + 1];
    match c.call("test.Len", flags::CODEC_RAW, &big).await {
        Err(RpcError::Remote(m)) => assert!(
            m.contains("to test.Len") && m.contains("over the server's limit of 16777216 bytes"),
            "{m}"
        ),
        other => panic!("expected a remote error, got {:?}", other.map(|b| b.len())),
    }
    // The rest of the big frame was skipped: the next call is in step.
    let len = c
        .call("test.Len", flags::CODEC_RAW, &big[..1000])
        .await
        .expect("next call");
    assert_eq!(&len[..], b"1000");
    s.shutdown().await;
}

#[tokio::test]
async fn a_huge_announced_request_gets_an_error_then_the_connection_closes() {
    let s = start_with(
        RpcServer::bind("tcp://127.0.0.1:0", registry())
            .await
            .expect("bind")
            .max_message_size(1024),
    )
    .await;
    let mut sock = s.raw().await;
    // A header that announces 3 GB, with seq and method, and nothing more.
    let f = Frame::new(
        flags::CODEC_JSON,
        Options::from_slice(&[42, 9]).expect("options"),
        Bytes::from_static(b"test.Echo"),
    );
    let mut bytes = f.to_bytes();
    let len = 3_000_000_000u32.to_le_bytes();
    bytes[2..6].copy_from_slice(&len);
    let crc = crc32(&bytes[..6]);
    bytes[6..10].copy_from_slice(&crc.to_le_bytes());
    sock.write_all(&bytes).await.expect("write");
    let reply = read_frame(&mut sock).await;
    assert_eq!(reply.flags, flags::CODEC_JSON | flags::ERROR);
    assert_eq!(reply.options.as_slice(), &[42, 9]);
    let text = String::from_utf8_lossy(&reply.payload[9..]).into_owned();
    assert!(
        text.contains("3000000000 bytes, over the server's limit of 1024"),
        "{text}"
    );
    assert!(closed(&mut sock).await);
    s.shutdown().await;
}

fn crc32(b: &[u8]) -> u32 {
    courser_frame::header_crc(b)
}

#[tokio::test]
async fn shutdown_lets_a_call_in_progress_finish_and_closes_idle_connections() {
    let started = Arc::new(tokio::sync::Notify::new());
    let mut r = registry();
    let s2 = started.clone();
    r.register("test.Hold", move |_| {
        let started = s2.clone();
        async move {
            started.notify_one();
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok(Bytes::from_static(b"200"))
        }
        .boxed()
    });
    let s = start(r).await;
    let mut idle = s.raw().await;
    let mut busy = s.client().await;
    let call = tokio::spawn(async move { busy.call_json::<_, u64>("test.Hold", &()).await });
    tokio::time::timeout(T, started.notified())
        .await
        .expect("the call started");
    s.stop.send(true).expect("stop");
    assert_eq!(
        tokio::time::timeout(T, call)
            .await
            .expect("in time")
            .expect("join")
            .expect("reply"),
        200
    );
    assert!(closed(&mut idle).await);
    tokio::time::timeout(T, s.task)
        .await
        .expect("run returns")
        .expect("task");
}

#[tokio::test]
async fn bind_and_connect_errors_say_what_to_do() {
    let e = RpcServer::bind("http://127.0.0.1:6001", Registry::default())
        .await
        .expect_err("bad address")
        .to_string();
    assert!(e.contains("rpc.listen \"http://127.0.0.1:6001\""), "{e}");

    let s = start(registry()).await;
    let e = RpcServer::bind(&s.listen, Registry::default())
        .await
        .expect_err("port taken")
        .to_string();
    assert!(
        e.starts_with(&format!("cannot listen on rpc.listen {}", s.listen)),
        "{e}"
    );
    let listen = s.listen.clone();
    s.shutdown().await;

    // Nothing listens there any more.
    let e = RpcClient::connect(&listen, T)
        .await
        .expect_err("not running")
        .to_string();
    assert!(
        e.contains("not running or not reachable at rpc.listen") && e.contains("courser serve"),
        "{e}"
    );
}

#[tokio::test]
async fn a_stale_unix_socket_is_replaced_but_a_live_one_is_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("rpc.sock");
    let listen = format!("unix://{}", path.display());
    // A socket file whose server is gone.
    drop(std::os::unix::net::UnixListener::bind(&path).expect("stale"));
    assert!(path.exists());
    let live = start_with(
        RpcServer::bind(&listen, registry())
            .await
            .expect("replaces stale"),
    )
    .await;
    let e = RpcServer::bind(&listen, Registry::default())
        .await
        .expect_err("in use")
        .to_string();
    assert!(e.contains("a running server is listening"), "{e}");
    live.shutdown().await;

    let file = dir.path().join("plain");
    std::fs::write(&file, "keep me").expect("write");
    let e = RpcServer::bind(&format!("unix://{}", file.display()), Registry::default())
        .await
        .expect_err("not a socket")
        .to_string();
    assert!(e.contains("is not a socket"), "{e}");
    assert_eq!(std::fs::read_to_string(&file).expect("kept"), "keep me");
}

#[tokio::test]
async fn the_client_rejects_a_reply_with_the_wrong_seq_and_then_refuses_calls() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let listen = format!("tcp://{}", listener.local_addr().expect("addr"));
    let fake = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.expect("accept");
        let _ = read_frame(&mut s).await;
        s.write_all(&request(99, "x.Y", flags::CODEC_JSON, b"true"))
            .await
            .expect("write");
        s
    });
    let mut c = RpcClient::connect(&listen, T).await.expect("connect");
    match c.call_json::<_, bool>("x.Y", &()).await {
        Err(RpcError::Protocol { detail, .. }) => {
            assert!(
                detail.contains("sequence mismatch: sent 1, the reply has 99"),
                "{detail}"
            )
        }
        other => panic!("expected a protocol error, got {other:?}"),
    }
    assert!(matches!(
        c.call_json::<_, bool>("x.Y", &()).await,
        Err(RpcError::Broken { .. })
    ));
    drop(fake.await);
}

#[tokio::test]
async fn a_call_timeout_marks_the_client_broken() {
    let s = start(registry()).await;
    let mut c = s.client().await;
    c.set_call_timeout(Some(Duration::from_millis(50)));
    match c.call_json::<_, u64>("test.Sleep", &300u64).await {
        Err(e @ RpcError::Timeout { .. }) => assert!(e.to_string().contains("test.Sleep"), "{e}"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(matches!(
        c.call_json::<_, u64>("test.Sleep", &0u64).await,
        Err(RpcError::Broken { .. })
    ));
    drop(c);
    s.shutdown().await;
}
