//! Loading `.rr.yaml` end to end, the cases as data.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use courser_config::{
    load, parse_str, Config, ConfigError, EndureConfig, Http2Config, HttpCodec, HttpConfig,
    HttpExtras, HttpLimits, LoadOptions, Loaded, LogChannel, LogEncoding, LogLevel, LogMode,
    LogsConfig, PoolConfig, Relay, RpcConfig, SupervisorConfig, UploadsConfig,
    DEFAULT_TRUSTED_SUBNETS,
};

const MB: u64 = 1024 * 1024;

/// A minimal valid config with an http section, to which cases add lines.
const BASE: &str =
    "version: \"3\"\nserver:\n  command: php worker.php\nhttp:\n  address: 127.0.0.1:8080\n";

fn opts(env: &[(&str, &str)], overrides: &[&str]) -> LoadOptions {
    LoadOptions {
        path: PathBuf::from("/nowhere/.rr.yaml"),
        overrides: overrides.iter().map(|s| s.to_string()).collect(),
        dotenv: None,
        env: Some(
            env.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
    }
}

fn parse(yaml: &str) -> Result<Loaded, ConfigError> {
    parse_str(yaml, &opts(&[], &[]))
}

fn ok(yaml: &str) -> Loaded {
    match parse(yaml) {
        Ok(loaded) => loaded,
        Err(e) => panic!("expected the config to load, got: {e}\n---\n{yaml}"),
    }
}

fn err(yaml: &str) -> String {
    match parse(yaml) {
        Ok(loaded) => panic!("expected an error, got {:?}\n---\n{yaml}", loaded.config),
        Err(e) => e.to_string(),
    }
}

fn messages(loaded: &Loaded) -> Vec<String> {
    loaded.warnings.iter().map(ToString::to_string).collect()
}

fn pool(loaded: &Loaded) -> &PoolConfig {
    &loaded.config.http.as_ref().expect("http section").pool
}

/// Asserts that `text` contains every needle.
fn check_contains(case: &str, text: &str, needles: &[&str]) {
    for needle in needles {
        assert!(
            text.contains(needle),
            "{case}: {text:?} does not contain {needle:?}"
        );
    }
}

#[test]
fn minimal_config_gets_roadrunner_defaults() {
    let loaded = ok(BASE);
    assert_eq!(messages(&loaded), Vec::<String>::new());
    let config = &loaded.config;
    assert_eq!(config.version, "3");
    assert_eq!(config.rpc, None);
    assert_eq!(config.server.command, vec!["php", "worker.php"]);
    assert_eq!(config.server.relay, Relay::Pipes);
    assert_eq!(config.server.user, None);
    assert_eq!(config.server.env, vec![]);
    assert_eq!(config.server.on_init, None);
    assert_eq!(config.logs, LogsConfig::default());
    assert_eq!(config.logs.mode, LogMode::Development);
    assert_eq!(config.logs.level, LogLevel::Debug);
    assert_eq!(config.logs.encoding, LogEncoding::Console);
    assert_eq!(config.logs.output, "stderr");
    assert_eq!(
        config.endure,
        EndureConfig {
            grace_period: Duration::from_secs(30)
        }
    );
    let cpus = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(500);
    assert_eq!(
        config.http,
        Some(HttpConfig {
            address: Some("127.0.0.1:8080".into()),
            internal_error_code: 500,
            max_request_size: 1000 * MB,
            raw_body: false,
            access_logs: false,
            middleware: vec![],
            trusted_subnets: DEFAULT_TRUSTED_SUBNETS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            pool: PoolConfig {
                command: None,
                debug: false,
                num_workers: cpus,
                max_jobs: 0,
                max_queue_size: 0,
                allocate_timeout: Duration::from_secs(60),
                reset_timeout: Duration::from_secs(60),
                stream_timeout: Duration::from_secs(60),
                destroy_timeout: Duration::from_secs(60),
                supervisor: SupervisorConfig {
                    watch_tick: Duration::from_secs(5),
                    ttl: None,
                    idle_ttl: None,
                    exec_ttl: None,
                    max_worker_memory: None,
                },
                dynamic_allocator: None,
                env: vec![],
                slowlog_timeout: None,
            },
            extras: HttpExtras {
                uploads: UploadsConfig {
                    dir: std::env::temp_dir(),
                    forbid: vec![],
                    allow: vec![],
                    max_parts: courser_config::DEFAULT_MAX_PARTS,
                },
                static_files: None,
                headers: None,
                ssl: None,
                http2: Http2Config {
                    h2c: false,
                    max_concurrent_streams: 128,
                },
                fcgi: None,
                codec: HttpCodec::Json,
                limits: HttpLimits::default(),
            },
        })
    );
    assert_eq!(pool(&loaded), &PoolConfig::default());
}

#[test]
fn typed_values() {
    type Check = fn(&Config);
    let cases: &[(&str, &str, Check)] = &[
        ("rpc section gets the default listen", "rpc: {}\n", |c| {
            assert_eq!(c.rpc, Some(RpcConfig { listen: "tcp://127.0.0.1:6001".into() }))
        }),
        ("an rpc section with no value is off, as in RoadRunner", "rpc:\n", |c| assert_eq!(c.rpc, None)),
        ("command as a list", "server:\n  command: [php, -d, 'memory_limit=1G', w.php]\n", |c| {
            assert_eq!(c.server.command, vec!["php", "-d", "memory_limit=1G", "w.php"])
        }),
        ("server env as a map, keys upper-cased", "server:\n  command: php w.php\n  env:\n    app_env: prod\n    Count: 3\n    empty:\n", |c| {
            assert_eq!(
                c.server.env,
                vec![("APP_ENV".into(), "prod".into()), ("COUNT".into(), "3".into()), ("EMPTY".into(), String::new())]
            )
        }),
        ("server env as RoadRunner's list of maps", "server:\n  command: php w.php\n  env:\n    - A: 1\n    - b: two\n    - A: 3\n", |c| {
            assert_eq!(c.server.env, vec![("A".into(), "3".into()), ("B".into(), "two".into())])
        }),
        ("tcp relay", "server:\n  command: php w.php\n  relay: tcp://127.0.0.1:7000\n", |c| {
            assert_eq!(c.server.relay, Relay::Tcp("127.0.0.1:7000".into()));
            assert_eq!(c.server.relay.to_string(), "tcp://127.0.0.1:7000");
        }),
        ("relative unix relay stays relative", "server:\n  command: php w.php\n  relay: unix://rr.sock\n", |c| {
            assert_eq!(c.server.relay, Relay::Unix("rr.sock".into()))
        }),
        ("absolute unix relay", "server:\n  command: php w.php\n  relay: unix:///run/rr.sock\n", |c| {
            assert_eq!(c.server.relay.to_string(), "unix:///run/rr.sock")
        }),
        ("max_request_size in MB", "http:\n  address: :8080\n  max_request_size: 1\n", |c| {
            assert_eq!(c.http.as_ref().map(|h| h.max_request_size), Some(MB))
        }),
        ("max_request_size 0 is 1000 MB", "http:\n  address: :8080\n  max_request_size: 0\n", |c| {
            assert_eq!(c.http.as_ref().map(|h| h.max_request_size), Some(1000 * MB))
        }),
        ("pool values", "http:\n  address: :8080\n  pool:\n    command: php other.php\n    debug: true\n    num_workers: 7\n    max_jobs: 100\n    max_queue_size: 20\n    env:\n      x: y\n    supervisor:\n      ttl: 1h\n      idle_ttl: 0\n      max_worker_memory: 256\n    dynamic_allocator:\n      max_workers: 25\n", |c| {
            let p = &c.http.as_ref().map(|h| h.pool.clone()).unwrap_or_default();
            assert_eq!(p.command, Some(vec!["php".to_string(), "other.php".to_string()]));
            assert!(p.debug);
            assert_eq!((p.num_workers, p.max_jobs, p.max_queue_size), (7, 100, 20));
            assert_eq!(p.env, vec![("X".to_string(), "y".to_string())]);
            assert_eq!(p.supervisor.ttl, Some(Duration::from_secs(3600)));
            assert_eq!(p.supervisor.idle_ttl, None);
            assert_eq!(p.supervisor.max_worker_memory, Some(256));
            let d = p.dynamic_allocator.clone().unwrap_or_default();
            assert_eq!((d.max_workers, d.spawn_rate, d.idle_timeout), (25, 5, Duration::from_secs(60)));
        }),
        ("num_workers 0 means the CPUs", "http:\n  address: :8080\n  pool:\n    num_workers: 0\n", |c| {
            assert_eq!(c.http.as_ref().map(|h| h.pool.num_workers), Some(courser_config::cpu_count()))
        }),
        ("logs and channels", "logs:\n  mode: off\n  level: warning\n  encoding: json\n  output: /var/log/rr.log\n  channels:\n    http:\n      level: error\n      mode: none\n", |c| {
            assert_eq!((c.logs.mode, c.logs.level, c.logs.encoding), (LogMode::Off, LogLevel::Warn, LogEncoding::Json));
            assert_eq!(c.logs.output, "/var/log/rr.log");
            assert_eq!(
                c.logs.channels.get("http"),
                Some(&LogChannel { level: Some(LogLevel::Error), mode: Some(LogMode::Off), encoding: None })
            );
        }),
        ("http with no value is off: no command needed", "server: {}\nhttp: ~\n", |c| assert_eq!(c.http, None)),
        ("endure grace period", "endure:\n  grace_period: 10s\n", |c| {
            assert_eq!(c.endure.grace_period, Duration::from_secs(10))
        }),
        ("yaml merge keys", "x-pool: &pool\n  num_workers: 3\nhttp:\n  address: :80\n  pool:\n    <<: *pool\n", |c| {
            assert_eq!(c.http.as_ref().map(|h| h.pool.num_workers), Some(3))
        }),
    ];
    for (name, extra, check) in cases {
        // Cases that define their own server/http replace BASE's.
        let yaml = if extra.contains("server:") {
            format!("version: \"3\"\n{extra}")
        } else if extra.contains("http:") {
            format!("version: \"3\"\nserver:\n  command: php w.php\n{extra}")
        } else {
            format!("{BASE}{extra}")
        };
        let loaded = parse(&yaml).unwrap_or_else(|e| panic!("{name}: {e}"));
        let unexpected: Vec<_> = messages(&loaded)
            .into_iter()
            .filter(|m| !(m.starts_with("unknown key x-pool")))
            .collect();
        assert_eq!(unexpected, Vec::<String>::new(), "{name}");
        check(&loaded.config);
    }
    // The no-http case really has no http.
    assert_eq!(ok("version: \"3\"\nserver: {}\n").config.http, None);
}

#[test]
fn durations() {
    // (value as written in YAML, expected duration, expected warning)
    let cases: &[(&str, Duration, Option<&str>)] = &[
        ("60s", Duration::from_secs(60), None),
        ("1m30s", Duration::from_secs(90), None),
        ("500ms", Duration::from_millis(500), None),
        ("1.5h", Duration::from_secs(5400), None),
        ("300us", Duration::from_micros(300), None),
        ("300µs", Duration::from_micros(300), None),
        ("10ns", Duration::from_nanos(10), None),
        ("\"2m\"", Duration::from_secs(120), None),
        ("60000000000", Duration::from_secs(60), None),
        ("\"60000000000\"", Duration::from_secs(60), None),
        (
            "60",
            Duration::from_nanos(60),
            Some("http.pool.allocate_timeout: 60 is 60 nanoseconds; write \"60s\""),
        ),
        (
            "\"45\"",
            Duration::from_nanos(45),
            Some("http.pool.allocate_timeout: 45 is 45 nanoseconds; write \"45s\""),
        ),
        // 0 means the default.
        ("0", Duration::from_secs(60), None),
        ("0s", Duration::from_secs(60), None),
    ];
    for (written, want, warning) in cases {
        let yaml = format!("{BASE}  pool:\n    allocate_timeout: {written}\n");
        let loaded = parse(&yaml).unwrap_or_else(|e| panic!("{written}: {e}"));
        assert_eq!(pool(&loaded).allocate_timeout, *want, "{written}");
        let warnings = messages(&loaded);
        match warning {
            Some(w) => {
                assert_eq!(warnings.len(), 1, "{written}: {warnings:?}");
                check_contains(written, &warnings[0], &[w]);
                assert_eq!(loaded.warnings[0].key, "http.pool.allocate_timeout");
            }
            None => assert!(warnings.is_empty(), "{written}: {warnings:?}"),
        }
    }
}

#[test]
fn env_expansion() {
    let yaml = "\
version: \"3\"
server:
  command: \"php ${APP_DIR}/worker.php\"
  env:
    home: $APP_DIR/home
    mode: ${APP_MODE:-production}
    empty_default: ${EMPTY:-fallback}
    unset: ${NOT_SET}
    set_wins: ${APP_MODE2:-unused}
    literal: cost $$5 and $5
http:
  address: \"${HOST:-127.0.0.1}:${PORT}\"
  pool:
    num_workers: ${WORKERS:-3}
    debug: ${DEBUG}
";
    let env = [
        ("APP_DIR", "/srv/app"),
        ("EMPTY", ""),
        ("APP_MODE2", "dev"),
        ("PORT", "9000"),
        ("DEBUG", "true"),
    ];
    let loaded = parse_str(yaml, &opts(&env, &[])).unwrap_or_else(|e| panic!("{e}"));
    let c = &loaded.config;
    assert_eq!(c.server.command, vec!["php", "/srv/app/worker.php"]);
    let env_of = |k: &str| {
        c.server
            .env
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(env_of("HOME"), Some("/srv/app/home"));
    assert_eq!(env_of("MODE"), Some("production"));
    assert_eq!(env_of("EMPTY_DEFAULT"), Some("fallback"));
    assert_eq!(env_of("UNSET"), Some(""));
    assert_eq!(env_of("SET_WINS"), Some("dev"));
    assert_eq!(env_of("LITERAL"), Some("cost $5 and $5"));
    let http = c.http.as_ref().expect("http");
    assert_eq!(http.address.as_deref(), Some("127.0.0.1:9000"));
    assert_eq!(http.pool.num_workers, 3);
    assert!(http.pool.debug);
    // The raw tree is expanded too.
    assert_eq!(c.raw["http"]["address"].as_str(), Some("127.0.0.1:9000"));
}

#[test]
fn dotenv_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dotenv = dir.path().join("app.env");
    std::fs::write(
        &dotenv,
        "# settings\nexport PORT=9100\nCMD='php app.php'\nSHARED=from-file\nGREETING=\"hi ${PORT}\"\n",
    )
    .expect("write");
    let yaml = "version: \"3\"\nserver:\n  command: ${CMD}\n  env:\n    shared: ${SHARED}\n    greeting: ${GREETING}\nhttp:\n  address: :${PORT}\n";

    let mut options = opts(&[("SHARED", "from-process")], &[]);
    options.dotenv = Some(dotenv.clone());
    let loaded = parse_str(yaml, &options).unwrap_or_else(|e| panic!("{e}"));
    let c = &loaded.config;
    assert_eq!(c.server.command, vec!["php", "app.php"]);
    assert_eq!(
        c.http.as_ref().and_then(|h| h.address.clone()),
        Some(":9100".into())
    );
    // The process environment wins over the file.
    assert_eq!(
        c.server.env,
        vec![
            ("SHARED".into(), "from-process".into()),
            ("GREETING".into(), "hi 9100".into())
        ]
    );
    // Only the entries that took effect are handed on.
    assert_eq!(
        loaded.dotenv,
        vec![
            ("PORT".to_string(), "9100".to_string()),
            ("CMD".to_string(), "php app.php".to_string()),
            ("GREETING".to_string(), "hi 9100".to_string()),
        ]
    );

    // DOTENV_PATH is used when no --dotenv is given.
    let path_text = dotenv.to_string_lossy().to_string();
    let via_env = parse_str(yaml, &opts(&[("DOTENV_PATH", &path_text)], &[]))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(via_env.config.server.command, vec!["php", "app.php"]);

    // A missing file and a bad line are errors naming the file.
    let mut missing = opts(&[], &[]);
    missing.dotenv = Some(dir.path().join("nope.env"));
    let e = parse_str(yaml, &missing).expect_err("missing dotenv");
    check_contains(
        "missing dotenv",
        &e.to_string(),
        &["cannot read the dotenv file", "nope.env", "--dotenv"],
    );
    std::fs::write(&dotenv, "A=1\nthis line is wrong\n").expect("write");
    let e = parse_str(yaml, &options).expect_err("bad dotenv");
    assert!(matches!(e, ConfigError::Dotenv { line: 2, .. }), "{e:?}");
    check_contains("bad dotenv", &e.to_string(), &["app.env:2:", "has no '='"]);
}

#[test]
fn overrides() {
    type Check = fn(&Loaded);
    let cases: &[(&[&str], Check)] = &[
        (&["http.pool.num_workers=7"], |l| {
            assert_eq!(pool(l).num_workers, 7)
        }),
        (&["http.pool.debug=true"], |l| assert!(pool(l).debug)),
        (&["http.address=\"0.0.0.0:9000\""], |l| {
            assert_eq!(
                l.config.http.as_ref().and_then(|h| h.address.clone()),
                Some("0.0.0.0:9000".into())
            )
        }),
        (&["server.env.count='5'"], |l| {
            assert_eq!(
                l.config.server.env,
                vec![("COUNT".to_string(), "5".to_string())]
            );
            assert_eq!(l.config.raw["server"]["env"]["count"].as_str(), Some("5"));
        }),
        (&["server.env.count=5"], |l| {
            assert_eq!(l.config.raw["server"]["env"]["count"].as_u64(), Some(5));
        }),
        (&["rpc.listen=tcp://127.0.0.1:7000"], |l| {
            assert_eq!(
                l.config.rpc,
                Some(RpcConfig {
                    listen: "tcp://127.0.0.1:7000".into()
                })
            )
        }),
        (&["http.pool.supervisor.max_worker_memory=64"], |l| {
            assert_eq!(pool(l).supervisor.max_worker_memory, Some(64))
        }),
        (&["http.middleware=[gzip, static]"], |l| {
            assert_eq!(
                l.config.http.as_ref().map(|h| h.middleware.clone()),
                Some(vec!["gzip".into(), "static".into()])
            )
        }),
        (
            &["http.pool.num_workers=2", "http.pool.num_workers=5"],
            |l| assert_eq!(pool(l).num_workers, 5),
        ),
        (&["server.command=php other.php"], |l| {
            assert_eq!(l.config.server.command, vec!["php", "other.php"])
        }),
    ];
    for (overrides, check) in cases {
        let loaded =
            parse_str(BASE, &opts(&[], overrides)).unwrap_or_else(|e| panic!("{overrides:?}: {e}"));
        assert!(
            loaded.warnings.is_empty(),
            "{overrides:?}: {:?}",
            loaded.warnings
        );
        check(&loaded);
    }

    let bad: &[(&str, &[&str])] = &[
        ("http.address", &["http.address", "no '='"]),
        ("=5", &["=5", "key is empty"]),
        ("http..address=x", &["empty part"]),
        (
            "http.address.port=1",
            &["http.address holds a value (\"127.0.0.1:8080\")"],
        ),
        (
            "http.pool.num_workers=many",
            &["http.pool.num_workers: \"many\" is not valid"],
        ),
    ];
    for (text, needles) in bad {
        let e = parse_str(BASE, &opts(&[], &[text])).expect_err(text);
        check_contains(text, &e.to_string(), needles);
    }
    let e = parse_str(BASE, &opts(&[], &["nokey"])).expect_err("override");
    assert!(matches!(e, ConfigError::Override { .. }), "{e:?}");
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

#[test]
fn includes() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "common.yaml",
        "version: \"3\"\nlogs:\n  level: info\nhttp:\n  address: 127.0.0.1:1111\n  pool:\n    num_workers: 2\n    max_jobs: 10\n",
    );
    write(
        dir.path(),
        "later.yaml",
        "version: '3'\nhttp:\n  pool:\n    max_jobs: 20\n",
    );
    let main = write(
        dir.path(),
        ".rr.yaml",
        "version: \"3\"\ninclude: [common.yaml, later.yaml]\nserver:\n  command: php w.php\nhttp:\n  address: 127.0.0.1:2222\n",
    );
    let loaded = load(&LoadOptions {
        env: Some(HashMap::new()),
        ..LoadOptions::new(&main)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let c = &loaded.config;
    assert_eq!(c.logs.level, LogLevel::Info);
    let http = c.http.as_ref().expect("http");
    assert_eq!(
        http.address.as_deref(),
        Some("127.0.0.1:2222"),
        "the main file wins"
    );
    assert_eq!(http.pool.num_workers, 2, "included values fill in");
    assert_eq!(
        http.pool.max_jobs, 20,
        "a later include wins over an earlier one"
    );

    let cases: &[(&str, &[&str])] = &[
        (
            "version: \"3\"\ninclude: [missing.yaml]\n",
            &["missing.yaml", "cannot be read"],
        ),
        (
            "version: \"3\"\ninclude: [v2.yaml]\n",
            &["v2.yaml", "has version \"2.7\"", "same version"],
        ),
        (
            "version: \"3\"\ninclude: [noversion.yaml]\n",
            &["noversion.yaml", "has no version"],
        ),
        (
            "version: \"3\"\ninclude: [broken.yaml]\n",
            &["broken.yaml", "line 3"],
        ),
    ];
    write(dir.path(), "v2.yaml", "version: \"2.7\"\n");
    write(dir.path(), "noversion.yaml", "logs: {}\n");
    write(dir.path(), "broken.yaml", "version: \"3\"\nlogs: [\n");
    for (yaml, needles) in cases {
        let e = parse_str(
            yaml,
            &LoadOptions {
                env: Some(HashMap::new()),
                ..LoadOptions::new(&main)
            },
        )
        .expect_err(yaml);
        check_contains(yaml, &e.to_string(), needles);
    }
}

#[test]
fn warnings() {
    // (lines added to BASE, the exact warnings expected, in order)
    let cases: &[(&str, &[&str])] = &[
        (
            "  pool:\n    num_worker: 2\n",
            &["unknown key http.pool.num_worker; did you mean http.pool.num_workers?"],
        ),
        (
            "  pool:\n    supervisor:\n      max_worker_memroy: 2\n",
            &["unknown key http.pool.supervisor.max_worker_memroy; did you mean http.pool.supervisor.max_worker_memory?"],
        ),
        (
            "  num_workers: 2\n",
            &["unknown key http.num_workers; did you mean http.pool.num_workers?"],
        ),
        ("htpp:\n  address: x\n", &["unknown key htpp; did you mean http?"]),
        ("frobnicate: 1\n", &["unknown key frobnicate; it is ignored"]),
        (
            "  ssl:\n    address: :443\n    cert: a.crt\n    key: a.key\n    acme:\n      email: a@b.c\n",
            &["http.ssl.acme is not supported by Courser yet; it is ignored"],
        ),
        (
            "  ssl:\n    cert: a.crt\n    key: a.key\n    certt: a.crt\n",
            &["unknown key http.ssl.certt; did you mean http.ssl.cert?"],
        ),
        (
            "metrics:\n  address: :2112\n  collect:\n    app_x:\n      type: counter\nstatus:\n  address: :2114\n",
            &[],
        ),
        (
            "kv:\n  a:\n    driver: memory\n    config: {anything: 1}\n  b:\n    driver: memory\n",
            &["unknown key kv.a.config.anything; the memory driver reads max_size, max_entries, interval; it is ignored"],
        ),
        (
            "logs:\n  channels:\n    http:\n      level: info\n      output: stdout\n",
            &["logs.channels.http.output is not supported by Courser yet; it is ignored"],
        ),
        (
            "endure:\n  grace_period: 5s\n  print_graph: true\n",
            &["endure.print_graph is not supported by Courser yet; it is ignored"],
        ),
        (
            "  headers:\n    request:\n      X-Anything: 1\n",
            &[],
        ),
        (
            "  pool:\n    env:\n      ANY_NAME: 1\n",
            &[],
        ),
    ];
    for (extra, want) in cases {
        let loaded = ok(&format!("{BASE}{extra}"));
        assert_eq!(messages(&loaded), *want, "{extra}");
    }

    // Removed key, in the server section (which BASE already has).
    let loaded = ok("version: \"3\"\nserver:\n  command: php w.php\n  relay_timeout: 60s\n");
    assert_eq!(loaded.warnings.len(), 1);
    assert_eq!(loaded.warnings[0].key, "server.relay_timeout");
    check_contains(
        "relay_timeout",
        &loaded.warnings[0].message,
        &[
            "server.relay_timeout was removed in RoadRunner 2024.1",
            "allocate_timeout",
        ],
    );
}

#[test]
fn bad_values() {
    // (lines added to BASE, what the message must contain)
    let cases: &[(&str, &[&str])] = &[
        (
            "  pool:\n    num_workers: many\n",
            &["http.pool.num_workers: \"many\" is not valid; expected a non-negative integer (0 = number of CPUs)"],
        ),
        ("  pool:\n    num_workers: -1\n", &["http.pool.num_workers", "-1", "non-negative integer"]),
        ("  pool:\n    num_workers: 1.5\n", &["http.pool.num_workers", "1.5"]),
        ("  pool:\n    num_workers: 501\n", &["http.pool.num_workers", "501", "at most 500"]),
        ("  pool:\n    num_workers: true\n", &["http.pool.num_workers", "true"]),
        ("  pool:\n    allocate_timeout: abc\n", &["http.pool.allocate_timeout", "\"abc\"", "duration"]),
        ("  pool:\n    allocate_timeout: -5s\n", &["http.pool.allocate_timeout", "\"-5s\"", "negative"]),
        ("  pool:\n    reset_timeout: 1.5\n", &["http.pool.reset_timeout", "1.5"]),
        ("  pool:\n    reset_timeout: 10x\n", &["http.pool.reset_timeout", "\"10x\"", "not a unit"]),
        ("  pool:\n    debug: yes\n", &["http.pool.debug: \"yes\" is not valid; expected true or false"]),
        ("  pool:\n    supervisor:\n      ttl: forever\n", &["http.pool.supervisor.ttl", "\"forever\""]),
        ("  pool:\n    supervisor: 5\n", &["http.pool.supervisor: 5 is not valid", "section"]),
        ("  pool:\n    command: {a: b}\n", &["http.pool.command", "command line"]),
        ("  max_request_size: big\n", &["http.max_request_size: \"big\"", "megabytes"]),
        ("  internal_error_code: 700\n", &["http.internal_error_code: 700", "100 to 599"]),
        ("  middleware: {a: b}\n", &["http.middleware", "list of strings"]),
        ("  raw_body: 1\n", &["http.raw_body: 1", "true or false"]),
        ("logs:\n  level: loud\n", &["logs.level: \"loud\"", "panic, error, warn, info, debug"]),
        ("logs:\n  mode: fancy\n", &["logs.mode: \"fancy\""]),
        ("logs:\n  channels:\n    http:\n      encoding: xml\n", &["logs.channels.http.encoding: \"xml\"", "console or json"]),
        ("rpc:\n  listen: http://x\n", &["rpc.listen: \"http://x\"", "tcp://host:port"]),
        ("endure:\n  grace_period: soon\n", &["endure.grace_period: \"soon\""]),
        ("server:\n  command: php w.php\n  relay: ftp://x\n", &["server.relay: \"ftp://x\" is not valid", "pipes", "tcp://host:port", "unix://"]),
        ("server:\n  command: php w.php\n  relay: tcp://nohost\n", &["server.relay: \"tcp://nohost\""]),
        ("server:\n  command: php w.php\n  env: [1, 2]\n", &["server.env", "environment variables"]),
        ("server:\n  command: php w.php\n  env:\n    A: [1]\n", &["server.env.A", "a string"]),
        ("http:\n  address: nope\n", &["http.address: \"nope\"", "host:port"]),
        ("http:\n  pool: {}\n", &["http.address is required"]),
        ("http: 5\n", &["http: 5 is not valid", "section"]),
    ];
    for (extra, needles) in cases {
        // Later sections replace BASE's when they repeat a top-level key.
        let yaml = if extra.starts_with("server:") {
            format!("version: \"3\"\n{extra}http:\n  address: :80\n")
        } else if extra.starts_with("http:") {
            format!("version: \"3\"\nserver:\n  command: php w.php\n{extra}")
        } else {
            format!("{BASE}{extra}")
        };
        let e = err(&yaml);
        check_contains(extra, &e, needles);
    }
}

#[test]
fn server_command_required_only_with_a_pool() {
    let hint =
        "server.command is required: the command that starts a PHP worker, e.g. \"php worker.php\"";
    for yaml in [
        "version: \"3\"\nhttp:\n  address: :80\n",
        "version: \"3\"\nserver:\n  command: \"\"\nhttp:\n  address: :80\n",
        "version: \"3\"\nserver:\n  command: []\nhttp:\n  address: :80\n",
        "version: \"3\"\nserver:\n  command: \"   \"\nhttp:\n  address: :80\n  pool:\n    command: \"\"\n",
    ] {
        assert_eq!(err(yaml), hint, "{yaml}");
    }
    for yaml in [
        "version: \"3\"\n",
        "version: \"3\"\nserver:\n  relay: pipes\n",
        "version: \"3\"\nhttp:\n  address: :80\n  pool:\n    command: php w.php\n",
    ] {
        ok(yaml);
    }
}

#[test]
fn versions() {
    assert!(matches!(
        parse("server: {}\n"),
        Err(ConfigError::MissingVersion)
    ));
    assert!(matches!(parse(""), Err(ConfigError::MissingVersion)));
    assert!(matches!(
        parse("version:\n"),
        Err(ConfigError::MissingVersion)
    ));
    check_contains(
        "missing",
        &err("server: {}\n"),
        &["version is missing", "version: \"3\""],
    );

    let cases: &[(&str, &[&str])] = &[
        (
            "version: \"2.7\"\n",
            &[
                "version \"2.7\"",
                "RoadRunner v2 config",
                "upgrade",
                "version: \"3\"",
            ],
        ),
        ("version: 2.7\n", &["version 2.7", "v2 config"]),
        (
            "version: \"4\"\n",
            &["version \"4\" is not supported", "version: \"3\""],
        ),
        ("version: [3]\n", &["version [3]"]),
    ];
    for (yaml, needles) in cases {
        let e = parse(yaml).expect_err(yaml);
        assert!(matches!(e, ConfigError::BadVersion { .. }), "{e:?}");
        check_contains(yaml, &e.to_string(), needles);
    }

    let loaded = ok("version: 3\n");
    assert_eq!(loaded.config.version, "3");
    assert_eq!(loaded.warnings.len(), 1);
    assert_eq!(loaded.warnings[0].key, "version");
    check_contains(
        "number",
        &loaded.warnings[0].to_string(),
        &["version: 3 is a number", "\"3\""],
    );
    assert!(ok("version: '3'\n").warnings.is_empty());
}

#[test]
fn yaml_errors_say_where() {
    let e = err("version: \"3\"\nserver:\n  command: php w.php\n   relay: pipes\n");
    check_contains("bad indent", &e, &["/nowhere/.rr.yaml", "line 4"]);
    let e = err("- a\n- b\n");
    check_contains("list", &e, &["top level", "mapping"]);
    let e = load(&LoadOptions::new("/nowhere/at/all.yaml")).expect_err("missing file");
    assert!(matches!(e, ConfigError::Io { .. }));
    check_contains(
        "missing file",
        &e.to_string(),
        &["cannot read /nowhere/at/all.yaml"],
    );
}

#[test]
fn roadrunner_sample_loads_with_only_unsupported_warnings() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/rr-sample.yaml");
    let loaded = load(&LoadOptions {
        env: Some(HashMap::new()),
        ..LoadOptions::new(&path)
    })
    .unwrap_or_else(|e| panic!("{e}"));

    let keys: Vec<&str> = loaded.warnings.iter().map(|w| w.key.as_str()).collect();
    assert_eq!(
        keys,
        vec![
            "server.on_init",
            "logs.line_ending",
            "logs.file_logger_options",
            "logs.channels.server.output",
            "jobs.options",
            "endure.print_graph",
            "endure.log_level",
        ]
    );
    for w in &loaded.warnings {
        assert_eq!(
            w.message,
            format!("{} is not supported by Courser yet; it is ignored", w.key)
        );
    }

    let c = &loaded.config;
    assert_eq!(
        c.rpc,
        Some(RpcConfig {
            listen: "tcp://127.0.0.1:6001".into()
        })
    );
    assert_eq!(
        c.server.command,
        vec!["php", "-d", "opcache.enable_cli=1", "public/index.php"]
    );
    assert_eq!(c.server.user, None);
    assert_eq!(
        c.server.env,
        vec![
            (
                "APP_RUNTIME".to_string(),
                "Baldinof\\RoadRunnerBundle\\Runtime\\Runtime".to_string()
            ),
            ("APP_ENV".to_string(), "prod".to_string()),
        ]
    );
    let init = c.server.on_init.as_ref().expect("on_init");
    assert_eq!(init.exec_timeout, Duration::from_secs(20));
    assert!(init.exit_on_error);
    assert_eq!(
        (c.logs.mode, c.logs.level, c.logs.encoding),
        (LogMode::Production, LogLevel::Info, LogEncoding::Json)
    );
    assert_eq!(c.logs.channels.len(), 2);
    let http = c.http.as_ref().expect("http");
    assert_eq!(http.address.as_deref(), Some("0.0.0.0:8080"));
    assert_eq!(http.internal_error_code, 505);
    assert_eq!(http.max_request_size, 256 * MB);
    assert_eq!(http.middleware, vec!["headers", "static", "gzip"]);
    assert_eq!(http.pool.command, None);
    assert_eq!(http.pool.num_workers, 4);
    assert_eq!(http.pool.max_jobs, 64);
    assert_eq!(http.pool.supervisor.watch_tick, Duration::from_secs(1));
    assert_eq!(http.pool.supervisor.ttl, None);
    assert_eq!(http.pool.supervisor.idle_ttl, Some(Duration::from_secs(10)));
    assert_eq!(http.pool.supervisor.exec_ttl, Some(Duration::from_secs(60)));
    assert_eq!(http.pool.supervisor.max_worker_memory, Some(128));
    assert_eq!(c.endure.grace_period, Duration::from_secs(30));
    assert_eq!(c.raw["jobs"]["pool"]["num_workers"].as_u64(), Some(2));
}

/// Issue 18, item 5: the hint for a misspelled key comes with the error it causes.
#[test]
fn a_typo_that_causes_an_error_comes_with_its_hint() {
    let e = parse_str(
        "version: '3'\nserver:\n  comand: php worker.php\nhttp:\n  address: 127.0.0.1:8080\n",
        &LoadOptions {
            env: Some(HashMap::new()),
            ..LoadOptions::new(".rr.yaml")
        },
    )
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(e.contains("server.command is required"), "{e}");
    assert!(
        e.contains("unknown key server.comand; did you mean server.command?"),
        "{e}"
    );
}
