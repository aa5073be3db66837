//! The bundled example app (the README's first command) serves its routes.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn curl(args: &[&str]) -> (bool, String) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Starts an example from examples/NAME on a free port.
fn start_example(name: &str) -> (std::process::Child, String) {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_courser"))
        .args(["serve", "-c"])
        .arg(root.join(format!("examples/{name}/.rr.yaml")))
        .args(["-o", &format!("http.address=127.0.0.1:{port}")])
        // The examples' rpc ports are fixed; tests run side by side.
        .args([
            "-o",
            &format!(
                "rpc.listen=tcp://127.0.0.1:{}",
                std::net::TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .expect("port")
                    .port()
            ),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start courser");
    (child, format!("http://127.0.0.1:{port}"))
}

/// The Debian package an example needs, by the directory it installs.
fn require_package(name: &str) {
    let (dir, package) = match name {
        "slim" => ("/usr/share/php/Slim", "php-slim"),
        "symfony" => (
            "/usr/share/php/Symfony/Component/HttpKernel",
            "php-symfony-http-kernel php-symfony-routing php-symfony-event-dispatcher",
        ),
        _ => return,
    };
    assert!(
        std::path::Path::new(dir).is_dir(),
        "examples/{name} needs Debian's {package}: apt-get install -y {package} (scripts/test installs it)"
    );
}

fn framework_example(name: &str, hello: &str) {
    require_package(name);
    let (mut child, u) = start_example(name);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut up = false;
    while Instant::now() < deadline && !up {
        up = curl(&[&format!("{u}/")]).1.contains(hello);
        if !up {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let result = std::panic::catch_unwind(|| {
        assert!(up, "examples/{name} never answered GET /");
        assert!(curl(&[&format!("{u}/hello/Ada")]).1.contains("Hello, Ada"));
        let items = curl(&[&format!("{u}/items")]).1;
        assert!(
            items.starts_with('[') && items.contains("\"Item 20\""),
            "{items}"
        );
        let codes: Vec<String> = (0..20)
            .map(|i| {
                curl(&[
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    &format!("{u}/hello/n{i}"),
                ])
                .1
            })
            .collect();
        assert!(codes.iter().all(|c| c == "200"), "{codes:?}");
    });
    let _ = child.kill();
    let _ = child.wait();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

#[test]
fn slim_example_serves_its_routes() {
    framework_example("slim", "Hello from Slim");
}

#[test]
fn symfony_example_serves_its_routes() {
    framework_example("symfony", "Hello from Symfony");
}

#[test]
fn hello_example_serves_its_routes() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let rpc = format!(
        "rpc.listen=tcp://127.0.0.1:{}",
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port()
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_courser"))
        .args(["serve", "-c"])
        .arg(root.join("examples/hello/.rr.yaml"))
        .args(["-o", &format!("http.address=127.0.0.1:{port}")])
        // The examples' rpc ports are fixed; tests run side by side.
        .args(["-o", &rpc])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start courser");
    let u = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut up = false;
    while Instant::now() < deadline && !up {
        up = curl(&[&format!("{u}/")]).1 == "Hello, World!\n";
        if !up {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let result = std::panic::catch_unwind(|| {
        assert!(up, "the example never answered");
        let info = curl(&[&format!("{u}/info")]).1;
        assert!(
            info.contains("\"app\": \"hello\"") && info.contains("served_by_this_worker"),
            "{info}"
        );
        let form = curl(&["-F", "x=1", &format!("{u}/form")]).1;
        assert!(form.contains("\"x\": \"1\""), "{form}");
        assert_eq!(
            curl(&[&format!("{u}/stream")]).1,
            "line 1\nline 2\nline 3\nline 4\nline 5\n"
        );
        assert!(curl(&[&format!("{u}/robots.txt")])
            .1
            .contains("static middleware"));
        assert!(
            curl(&[
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &format!("{u}/nope")
            ])
            .1 == "404"
        );
        // The example's rpc section lets the CLI reach it (issue 18, item 4).
        let out = Command::new(env!("CARGO_BIN_EXE_courser"))
            .args(["workers", "-c"])
            .arg(root.join("examples/hello/.rr.yaml"))
            .args(["-o", &rpc])
            .output()
            .expect("courser workers");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("Workers of [http]"),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
    let _ = child.kill();
    let _ = child.wait();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}
