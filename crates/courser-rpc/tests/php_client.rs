//! The PHP SDK's RPC client (`php/src/RPC`) against the real server, over TCP
//! and a unix socket, with the address taken from `RR_RPC` as in a worker.

use bytes::Bytes;
use courser_rpc::informer::{WorkerInfo, WorkerList};
use courser_rpc::{Registry, RpcServer};
use futures_util::FutureExt;
use std::path::PathBuf;
use std::time::Duration;

fn registry() -> Registry {
    let mut r = Registry::default();
    r.register_json("informer.Workers", |plugin: String| async move {
        Ok(WorkerList {
            workers: vec![WorkerInfo {
                pid: 7,
                status: 2,
                num_execs: 3,
                created: 1,
                memory_usage: 2,
                cpu_percent: 1.25,
                command: format!("php {plugin}.php"),
                status_str: "working".into(),
            }],
        })
    });
    r.register_json("resetter.Reset", |_plugin: String| async move { Ok(true) });
    r.register("kv.MGet", |call| {
        async move {
            let mut reply = b"proto:".to_vec();
            reply.extend_from_slice(&call.body);
            Ok(Bytes::from(reply))
        }
        .boxed()
    });
    r
}

const SCRIPT: &str = r#"
require getenv('COURSER_PHP_SDK') . '/autoload.php';
$rpc = new Courser\RPC\RPC();
echo json_encode($rpc->call('informer.Workers', 'http')), "\n";
var_export($rpc->withServicePrefix('resetter')->call('reset', 'http'));
echo "\n", $rpc->call('kv.MGet', "\x0a\x01k", Courser\RPC\RPC::PROTO) === "proto:\x0a\x01k" ? 'proto ok' : 'proto bad', "\n";
try {
    $rpc->call('informer.Nope', 'x');
} catch (Courser\RPC\ServiceException $e) {
    echo $e->getServerMessage(), "\n";
}
"#;

#[tokio::test]
async fn the_php_sdk_client_talks_to_the_server() {
    let sdk = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../php");
    let dir = tempfile::tempdir().expect("tempdir");
    let unix = format!("unix://{}", dir.path().join("rpc.sock").display());
    for listen in ["tcp://127.0.0.1:0", unix.as_str()] {
        let server = RpcServer::bind(listen, registry()).await.expect("bind");
        let rr_rpc = match server.local_addr() {
            Some(a) => format!("tcp://{a}"),
            None => listen.to_string(),
        };
        let (stop, rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(server.run(rx));
        let out = tokio::time::timeout(
            Duration::from_secs(30),
            tokio::process::Command::new("php")
                .arg("-r")
                .arg(SCRIPT)
                .env("RR_RPC", &rr_rpc)
                .env("COURSER_PHP_SDK", &sdk)
                .output(),
        )
        .await
        .expect("php finished in time")
        .expect("php runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{listen}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            stdout,
            "{\"workers\":[{\"pid\":7,\"status\":2,\"numExecs\":3,\"created\":1,\"memoryUsage\":2,\"CPUPercent\":1.25,\"command\":\"php http.php\",\"statusStr\":\"working\"}]}\n\
             true\n\
             proto ok\n\
             rpc: can't find method informer.Nope\n",
            "{listen}"
        );
        stop.send(true).expect("stop");
        task.await.expect("server task");
    }
}
