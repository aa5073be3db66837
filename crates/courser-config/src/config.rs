//! The typed configuration and how it is read from the tree.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde_yaml::Value;

use crate::error::{ConfigError, Warning};
use crate::pool::{parse_pool, PoolConfig};
use crate::section::{invalid, Section};

/// The whole configuration, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Always `"3"`.
    pub version: String,
    /// The RPC server; on only when the file has an `rpc` section.
    pub rpc: Option<RpcConfig>,
    pub server: ServerConfig,
    pub logs: LogsConfig,
    /// The HTTP plugin; on only when the file has an `http` section.
    pub http: Option<HttpConfig>,
    /// Prometheus metrics; on only when the file has a `metrics` section.
    pub metrics: Option<crate::MetricsConfig>,
    /// Health and readiness endpoints; on only with a `status` section.
    pub status: Option<crate::StatusConfig>,
    /// Reset pools when PHP files change; on only with a `reload` section.
    pub reload: Option<crate::ReloadConfig>,
    /// Queues consumed by PHP workers; on only with a `jobs` section.
    pub jobs: Option<crate::JobsConfig>,
    /// Key-value storages served over RPC; on only with a `kv` section.
    pub kv: Option<crate::KvConfig>,
    pub endure: EndureConfig,
    /// The merged, expanded and overridden tree, for plugins that read their
    /// sections later. Values that came from `${VAR}` expansion are strings.
    pub raw: Value,
}

/// The `rpc` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcConfig {
    /// `tcp://host:port` or `unix:///path.sock` (default `tcp://127.0.0.1:6001`).
    pub listen: String,
}

/// The default `rpc.listen`.
pub const DEFAULT_RPC_LISTEN: &str = "tcp://127.0.0.1:6001";

/// The `server` section: how workers are started.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerConfig {
    /// The worker command, split on whitespace when written as a string.
    /// Empty when the file has none (allowed when no pool runs).
    pub command: Vec<String>,
    pub user: Option<String>,
    pub group: Option<String>,
    /// Extra worker environment: keys upper-cased, values expanded, in file order.
    pub env: Vec<(String, String)>,
    pub relay: Relay,
    /// Largest frame payload accepted from a worker, in bytes (Courser extension
    /// `server.max_frame_size`, in MB; default 128). A worker that sends more is
    /// replaced and its job fails.
    pub max_frame_size: u64,
    /// A command run once before workers are allocated.
    pub on_init: Option<OnInitConfig>,
}

/// Default of `server.max_frame_size`, in MB.
pub const DEFAULT_MAX_FRAME_MB: u64 = 128;

/// How the server talks to a worker (`server.relay`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Relay {
    /// The worker's stdin and stdout (`pipes`, `pipes://stdin:stdout`).
    #[default]
    Pipes,
    /// A TCP socket the server listens on: `host:port`.
    Tcp(String),
    /// A unix socket the server listens on. A relative path stays relative
    /// (to the working directory).
    Unix(PathBuf),
}

impl fmt::Display for Relay {
    /// The relay as `RR_RELAY` gives it to the worker.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Relay::Pipes => f.write_str("pipes"),
            Relay::Tcp(addr) => write!(f, "tcp://{addr}"),
            Relay::Unix(path) => write!(f, "unix://{}", path.display()),
        }
    }
}

impl FromStr for Relay {
    type Err = String;

    /// Parses `pipes`, `pipes://stdin:stdout`, `tcp://host:port`,
    /// `unix:///abs.sock` or `unix://relative.sock`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s == "pipes" || s == "pipes://stdin:stdout" {
            return Ok(Relay::Pipes);
        }
        if let Some(addr) = s.strip_prefix("tcp://") {
            return match split_host_port(addr) {
                Some((host, _)) if !host.is_empty() => Ok(Relay::Tcp(addr.to_string())),
                Some(_) => Err("the tcp relay needs a host, e.g. tcp://127.0.0.1:7000".to_string()),
                None => Err("the tcp relay needs host:port, e.g. tcp://127.0.0.1:7000".to_string()),
            };
        }
        if let Some(path) = s.strip_prefix("unix://") {
            if path.is_empty() {
                return Err(
                    "the unix relay needs a socket path, e.g. unix:///tmp/rr.sock".to_string(),
                );
            }
            return Ok(Relay::Unix(PathBuf::from(path)));
        }
        Err("unknown relay".to_string())
    }
}

const RELAY_EXPECTED: &str =
    "\"pipes\", \"tcp://host:port\" (e.g. \"tcp://127.0.0.1:7000\") or \"unix:///path/to/relay.sock\"";

/// `server.on_init`: a command run once before the workers start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnInitConfig {
    pub command: Vec<String>,
    /// The command is killed after this (default 60s).
    pub exec_timeout: Duration,
    /// Stop the server when the command fails (default false).
    pub exit_on_error: bool,
    /// Extra environment (keys upper-cased).
    pub env: Vec<(String, String)>,
    /// Run as this user (needs root).
    pub user: Option<String>,
}

/// How log lines are shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogMode {
    #[default]
    Development,
    Production,
    Raw,
    /// `off` or `none`.
    Off,
}

/// The least severe level that is logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum LogLevel {
    Panic,
    Error,
    Warn,
    Info,
    #[default]
    Debug,
}

/// The format of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogEncoding {
    #[default]
    Console,
    Json,
}

impl LogMode {
    fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "development" => Some(LogMode::Development),
            "production" => Some(LogMode::Production),
            "raw" => Some(LogMode::Raw),
            "off" | "none" => Some(LogMode::Off),
            _ => None,
        }
    }
}

impl LogLevel {
    fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "panic" => Some(LogLevel::Panic),
            "error" => Some(LogLevel::Error),
            "warn" | "warning" => Some(LogLevel::Warn),
            "info" => Some(LogLevel::Info),
            "debug" => Some(LogLevel::Debug),
            _ => None,
        }
    }
}

impl LogEncoding {
    fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "console" => Some(LogEncoding::Console),
            "json" => Some(LogEncoding::Json),
            _ => None,
        }
    }
}

/// The `logs` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogsConfig {
    pub mode: LogMode,
    pub level: LogLevel,
    pub encoding: LogEncoding,
    /// `stdout`, `stderr` (default) or a file path.
    pub output: String,
    /// `stdout`, `stderr` (default) or a file path.
    pub err_output: String,
    /// Per-plugin overrides, by plugin name.
    pub channels: BTreeMap<String, LogChannel>,
}

impl Default for LogsConfig {
    fn default() -> Self {
        LogsConfig {
            mode: LogMode::default(),
            level: LogLevel::default(),
            encoding: LogEncoding::default(),
            output: "stderr".to_string(),
            err_output: "stderr".to_string(),
            channels: BTreeMap::new(),
        }
    }
}

/// `logs.channels.<plugin>`: what differs from the main `logs` settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LogChannel {
    pub level: Option<LogLevel>,
    pub mode: Option<LogMode>,
    pub encoding: Option<LogEncoding>,
}

/// The `http` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// `host:port` to listen on (`:port` for all interfaces).
    pub address: Option<String>,
    /// The status sent when a worker fails (default 500).
    pub internal_error_code: u16,
    /// Largest accepted request body, in bytes (the file gives megabytes;
    /// 0 means 1000 MB).
    pub max_request_size: u64,
    /// Pass the body to the worker unparsed.
    pub raw_body: bool,
    /// Log every request.
    pub access_logs: bool,
    /// Middleware names, in order.
    pub middleware: Vec<String>,
    /// Proxies whose forwarding headers are trusted (CIDR ranges).
    pub trusted_subnets: Vec<String>,
    pub pool: PoolConfig,
    /// Uploads, static files, headers, TLS, HTTP/2, FastCGI, codec and limits.
    pub extras: crate::HttpExtras,
}

/// The default `http.trusted_subnets`: private and loopback ranges.
pub const DEFAULT_TRUSTED_SUBNETS: &[&str] = &[
    "10.0.0.0/8",
    "127.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
];

const MB: u64 = 1024 * 1024;
const DEFAULT_MAX_REQUEST_MB: u64 = 1000;

/// The `endure` section: lifecycle of the whole server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndureConfig {
    /// How long a graceful stop may take (default 30s).
    pub grace_period: Duration,
}

impl Default for EndureConfig {
    fn default() -> Self {
        EndureConfig {
            grace_period: Duration::from_secs(30),
        }
    }
}

/// Splits `host:port` (`[v6]:port`, `:port`); the port must be a number.
pub(crate) fn split_host_port(s: &str) -> Option<(&str, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    if let Some(inner) = host.strip_prefix('[') {
        inner.strip_suffix(']')?;
    } else if host.contains(':') || host.contains('/') {
        return None;
    }
    Some((host, port))
}

const COMMAND_HINT: &str = "the command that starts a PHP worker, e.g. \"php worker.php\"";

/// Reads the typed sections from the final tree. `version` was checked before.
pub(crate) fn build(
    tree: &Value,
    version: String,
    warnings: &mut Vec<Warning>,
) -> Result<Config, ConfigError> {
    let root = Section::new("", Some(tree))?;

    // As in RoadRunner, a section written with no value (`rpc:`) is off.
    let rpc = if root.get("rpc").is_some() {
        let rpc = Section::new("rpc", root.raw("rpc"))?;
        let listen = match rpc.non_empty_string("listen")? {
            Some(listen) => {
                check_listen(&listen).map_err(|()| {
                    invalid(
                        "rpc.listen",
                        &Value::from(listen.as_str()),
                        "\"tcp://host:port\" (e.g. \"tcp://127.0.0.1:6001\") or \"unix:///path/to/rpc.sock\"",
                    )
                })?;
                listen
            }
            None => DEFAULT_RPC_LISTEN.to_string(),
        };
        Some(RpcConfig { listen })
    } else {
        None
    };

    let server = parse_server(&Section::new("server", root.raw("server"))?, warnings)?;
    let logs = parse_logs(&Section::new("logs", root.raw("logs"))?)?;
    let http = if root.get("http").is_some() {
        Some(parse_http(
            &Section::new("http", root.raw("http"))?,
            warnings,
        )?)
    } else {
        None
    };

    let endure_section = Section::new("endure", root.raw("endure"))?;
    let mut endure = EndureConfig::default();
    if let Some(d) = endure_section.duration("grace_period", warnings)? {
        if !d.is_zero() {
            endure.grace_period = d;
        }
    }

    if let Some(http) = &http {
        if server.command.is_empty() && http.pool.command.is_none() {
            return Err(ConfigError::Missing {
                key: "server.command".to_string(),
                hint: COMMAND_HINT.to_string(),
            });
        }
    }

    let metrics = crate::ops::parse_metrics(&root)?;
    let status = crate::ops::parse_status(&root, warnings)?;
    let reload = crate::ops::parse_reload(&root, warnings)?;
    let jobs = crate::jobs::parse_jobs(&root, warnings)?;
    if let Some(jobs) = &jobs {
        if server.command.is_empty() && jobs.pool.command.is_none() {
            return Err(ConfigError::Missing {
                key: "server.command".to_string(),
                hint: COMMAND_HINT.to_string(),
            });
        }
    }
    let kv = crate::kv::parse_kv(&root, warnings)?;
    Ok(Config {
        reload,
        jobs,
        kv,
        version,
        rpc,
        server,
        logs,
        http,
        metrics,
        status,
        endure,
        raw: tree.clone(),
    })
}

fn check_listen(listen: &str) -> Result<(), ()> {
    if let Some(addr) = listen.strip_prefix("tcp://") {
        return split_host_port(addr).map(|_| ()).ok_or(());
    }
    match listen.strip_prefix("unix://") {
        Some(path) if !path.is_empty() => Ok(()),
        _ => Err(()),
    }
}

fn parse_server(s: &Section<'_>, warnings: &mut Vec<Warning>) -> Result<ServerConfig, ConfigError> {
    let command = s.command("command")?.unwrap_or_default();
    let relay = match s.string("relay")? {
        Some(text) if !text.trim().is_empty() => text
            .parse::<Relay>()
            .map_err(|_| invalid(&s.key("relay"), &Value::from(text.as_str()), RELAY_EXPECTED))?,
        _ => Relay::Pipes,
    };
    let on_init = if s.get("on_init").is_some() {
        let path = s.key("on_init");
        let init = Section::new(&path, s.raw("on_init"))?;
        let command = init.command("command")?.unwrap_or_default();
        if command.is_empty() {
            return Err(ConfigError::Missing {
                key: init.key("command"),
                hint: "the command to run once before the workers start, e.g. \"php init.php\"; \
                       or remove server.on_init"
                    .to_string(),
            });
        }
        Some(OnInitConfig {
            command,
            exec_timeout: init
                .duration("exec_timeout", warnings)?
                .filter(|d| !d.is_zero())
                .unwrap_or(Duration::from_secs(60)),
            exit_on_error: init.boolean("exit_on_error")?.unwrap_or(false),
            env: init.env("env")?,
            user: init.non_empty_string("user")?,
        })
    } else {
        None
    };
    Ok(ServerConfig {
        command,
        user: s.non_empty_string("user")?,
        group: s.non_empty_string("group")?,
        env: s.env("env")?,
        relay,
        max_frame_size: match s.uint(
            "max_frame_size",
            "a positive number of megabytes (default 128)",
        )? {
            None | Some(0) => DEFAULT_MAX_FRAME_MB,
            Some(mb) => mb.min(4095),
        } * 1024
            * 1024,
        on_init,
    })
}

const MODE_EXPECTED: &str = "one of development, production, raw, off";
const LEVEL_EXPECTED: &str = "one of panic, error, warn, info, debug";
const ENCODING_EXPECTED: &str = "console or json";

fn enum_value<T>(
    s: &Section<'_>,
    name: &str,
    parse: fn(&str) -> Option<T>,
    expected: &str,
) -> Result<Option<T>, ConfigError> {
    match s.string(name)? {
        None => Ok(None),
        Some(text) if text.trim().is_empty() => Ok(None),
        Some(text) => parse(&text)
            .map(Some)
            .ok_or_else(|| invalid(&s.key(name), &Value::from(text.as_str()), expected)),
    }
}

fn parse_logs(s: &Section<'_>) -> Result<LogsConfig, ConfigError> {
    let mut logs = LogsConfig::default();
    if let Some(mode) = enum_value(s, "mode", LogMode::parse, MODE_EXPECTED)? {
        logs.mode = mode;
    }
    if let Some(level) = enum_value(s, "level", LogLevel::parse, LEVEL_EXPECTED)? {
        logs.level = level;
    }
    if let Some(encoding) = enum_value(s, "encoding", LogEncoding::parse, ENCODING_EXPECTED)? {
        logs.encoding = encoding;
    }
    if let Some(output) = s.non_empty_string("output")? {
        logs.output = output;
    }
    if let Some(err_output) = s.non_empty_string("err_output")? {
        logs.err_output = err_output;
    }
    let channels_path = s.key("channels");
    let channels = Section::new(&channels_path, s.raw("channels"))?;
    if let Some(Value::Mapping(map)) = s.get("channels") {
        for name in map.keys().map(crate::tree::key_text) {
            let path = channels.key(&name);
            let channel = Section::new(&path, channels.raw(&name))?;
            logs.channels.insert(
                name,
                LogChannel {
                    level: enum_value(&channel, "level", LogLevel::parse, LEVEL_EXPECTED)?,
                    mode: enum_value(&channel, "mode", LogMode::parse, MODE_EXPECTED)?,
                    encoding: enum_value(
                        &channel,
                        "encoding",
                        LogEncoding::parse,
                        ENCODING_EXPECTED,
                    )?,
                },
            );
        }
    }
    Ok(logs)
}

fn parse_http(s: &Section<'_>, warnings: &mut Vec<Warning>) -> Result<HttpConfig, ConfigError> {
    let address = s.non_empty_string("address")?;
    if let Some(address) = &address {
        if split_host_port(address).is_none() {
            return Err(invalid(
                &s.key("address"),
                &Value::from(address.as_str()),
                "host:port, e.g. \"127.0.0.1:8080\" or \":8080\"",
            ));
        }
    } else if !(s.has("ssl") || s.has("fcgi") || s.has("http3")) {
        return Err(ConfigError::Missing {
            key: s.key("address"),
            hint: "the host:port to serve HTTP on, e.g. \"127.0.0.1:8080\"".to_string(),
        });
    }

    let code_expected = "an HTTP status code from 100 to 599 (default 500)";
    let internal_error_code = match s.uint("internal_error_code", code_expected)? {
        None | Some(0) => 500,
        Some(code @ 100..=599) => code as u16,
        Some(code) => {
            return Err(invalid(
                &s.key("internal_error_code"),
                &Value::from(code),
                code_expected,
            ))
        }
    };

    let size_expected = "a non-negative integer of megabytes (0 = 1000)";
    let max_request_size = match s.uint("max_request_size", size_expected)? {
        None | Some(0) => DEFAULT_MAX_REQUEST_MB * MB,
        Some(mb) => mb
            .checked_mul(MB)
            .ok_or_else(|| invalid(&s.key("max_request_size"), &Value::from(mb), size_expected))?,
    };

    let pool_path = s.key("pool");
    let (pool, pool_warnings) = parse_pool(s.raw("pool").unwrap_or(&Value::Null), &pool_path)?;
    warnings.extend(pool_warnings);

    Ok(HttpConfig {
        address,
        internal_error_code,
        max_request_size,
        raw_body: s.boolean("raw_body")?.unwrap_or(false),
        access_logs: s.boolean("access_logs")?.unwrap_or(false),
        middleware: s.string_list("middleware")?.unwrap_or_default(),
        trusted_subnets: s.string_list("trusted_subnets")?.unwrap_or_else(|| {
            DEFAULT_TRUSTED_SUBNETS
                .iter()
                .map(|s| (*s).to_string())
                .collect()
        }),
        pool,
        extras: crate::http::parse_extras(s, warnings)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relays() {
        let ok: &[(&str, Relay, &str)] = &[
            ("pipes", Relay::Pipes, "pipes"),
            ("pipes://stdin:stdout", Relay::Pipes, "pipes"),
            (
                "tcp://127.0.0.1:7000",
                Relay::Tcp("127.0.0.1:7000".into()),
                "tcp://127.0.0.1:7000",
            ),
            (
                "unix:///tmp/rr.sock",
                Relay::Unix("/tmp/rr.sock".into()),
                "unix:///tmp/rr.sock",
            ),
            (
                "unix://rr.sock",
                Relay::Unix("rr.sock".into()),
                "unix://rr.sock",
            ),
        ];
        for (text, relay, shown) in ok {
            assert_eq!(text.parse::<Relay>().as_ref(), Ok(relay), "{text}");
            assert_eq!(relay.to_string(), *shown);
        }
        for bad in [
            "ftp://x",
            "tcp://:7000",
            "tcp://host",
            "unix://",
            "pipes://x",
        ] {
            assert!(bad.parse::<Relay>().is_err(), "{bad}");
        }
    }

    #[test]
    fn host_ports() {
        assert_eq!(split_host_port("127.0.0.1:8080"), Some(("127.0.0.1", 8080)));
        assert_eq!(split_host_port(":8080"), Some(("", 8080)));
        assert_eq!(split_host_port("[::1]:8080"), Some(("[::1]", 8080)));
        assert_eq!(split_host_port("::1:8080"), None);
        assert_eq!(split_host_port("localhost"), None);
        assert_eq!(split_host_port("localhost:http"), None);
    }
}
