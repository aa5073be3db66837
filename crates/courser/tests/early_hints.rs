//! 103 Early Hints reach an HTTP/1.1 client as an interim response with its own
//! headers, followed by the exact final status and headers.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn early_hints_then_final_response() {
    let dir = tempfile::tempdir().expect("tempdir");
    let worker =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/php/http_worker.php");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let cfg = dir.path().join(".rr.yaml");
    std::fs::write(
        &cfg,
        format!("version: \"3\"\nserver:\n  command: \"php {}\"\nhttp:\n  address: 127.0.0.1:{port}\n  pool:\n    num_workers: 1\n", worker.display()),
    )
    .expect("config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_courser"))
        .args(["serve", "-c"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start");
    let curl = |args: &[&str]| {
        let out = Command::new("curl")
            .args(["-s", "--max-time", "10"])
            .args(args)
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let u = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline && curl(&[&format!("{u}/pid")]).is_empty() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let result = std::panic::catch_unwind(|| {
        let out = curl(&["--http1.1", "-D", "-", &format!("{u}/hints")]);
        let lower = out.to_lowercase();
        let hints = lower.find("http/1.1 103").unwrap_or(usize::MAX);
        let fin = lower.find("http/1.1 201").unwrap_or(0);
        assert!(hints < fin, "expected 103 before 201:\n{out}");
        let (interim, final_part) = lower.split_at(fin);
        assert!(
            interim.contains("link: </app.css>; rel=preload; as=style"),
            "{out}"
        );
        assert!(
            !final_part.contains("link:"),
            "the hint header leaked into the final response:\n{out}"
        );
        assert!(
            final_part.contains("x-final: yes") && out.ends_with("after hints"),
            "{out}"
        );
        // Over HTTP/2 the hint is dropped, never the final status.
        let h2 = curl(&[
            "--http2-prior-knowledge",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("{u}/hints"),
        ]);
        assert_eq!(h2, "201");
        // The worker keeps serving.
        assert!(!curl(&[&format!("{u}/pid")]).is_empty());
    });
    let _ = child.kill();
    let _ = child.wait();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}
