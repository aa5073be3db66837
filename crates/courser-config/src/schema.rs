//! The known keys of `.rr.yaml` and what Courser does with each.
//!
//! [`KEYS`] is the one table of every key from sections 5.1 and 5.2 of the
//! compatibility spec (plus the top-level sections of other RoadRunner
//! plugins). [`POOL_KEYS`] is the pool section, which appears under every
//! pool-owning plugin listed in [`POOL_SECTIONS`].
//!
//! A `*` part stands for a name the user chooses (`kv.<name>`,
//! `jobs.pipelines.<name>`, `logs.channels.<plugin>`). A key of kind
//! [`Kind::Open`] accepts anything below it (maps of headers, env variables,
//! driver options).
//!
//! The check walks the loaded tree and warns:
//! * once for each key that Courser does not support yet (only at the top of
//!   such a subtree: `http.ssl`, not also `http.ssl.cert`);
//! * for each removed key;
//! * for each unknown key, naming the nearest known key when one is close.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_yaml::Value;

use crate::error::Warning;
use crate::tree::{key_text, untag};

/// What Courser does with a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Read into the typed [`crate::Config`].
    Supported,
    /// A RoadRunner key Courser accepts and ignores for now (with a warning).
    NotYetSupported,
    /// A key RoadRunner no longer has; the text says why and what replaces it.
    Removed(&'static str),
}

/// The shape of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A scalar or a list; nothing below it is checked.
    Value,
    /// A mapping whose children are listed in the table.
    Section,
    /// A mapping whose children are free (names and values chosen by the user).
    Open,
}

use Kind::{Open, Section, Value as Val};
use Status::{NotYetSupported as Nys, Supported as Sup};

const RELAY_TIMEOUT_REMOVED: &str = "was removed in RoadRunner 2024.1 and is ignored; \
    the worker spawn is limited by the pool's allocate_timeout (e.g. http.pool.allocate_timeout)";

/// Every known key, as (path, status, kind). Parents come before children.
pub const KEYS: &[(&str, Status, Kind)] = &[
    ("version", Sup, Val),
    ("include", Sup, Val),
    ("envfile", Nys, Val),
    // rpc
    ("rpc", Sup, Section),
    ("rpc.listen", Sup, Val),
    // server
    ("server", Sup, Section),
    ("server.command", Sup, Val),
    ("server.user", Sup, Val),
    ("server.group", Sup, Val),
    ("server.env", Sup, Open),
    ("server.relay", Sup, Val),
    ("server.max_frame_size", Sup, Val),
    (
        "server.relay_timeout",
        Status::Removed(RELAY_TIMEOUT_REMOVED),
        Val,
    ),
    ("server.on_init", Nys, Section),
    ("server.on_init.command", Nys, Val),
    ("server.on_init.exec_timeout", Nys, Val),
    ("server.on_init.exit_on_error", Nys, Val),
    ("server.on_init.env", Nys, Open),
    ("server.on_init.user", Nys, Val),
    // logs
    ("logs", Sup, Section),
    ("logs.mode", Sup, Val),
    ("logs.level", Sup, Val),
    ("logs.encoding", Sup, Val),
    ("logs.line_ending", Nys, Val),
    ("logs.output", Sup, Val),
    ("logs.err_output", Sup, Val),
    ("logs.file_logger_options", Nys, Section),
    ("logs.file_logger_options.log_output", Nys, Val),
    ("logs.file_logger_options.max_size", Nys, Val),
    ("logs.file_logger_options.max_age", Nys, Val),
    ("logs.file_logger_options.max_backups", Nys, Val),
    ("logs.file_logger_options.compress", Nys, Val),
    ("logs.channels", Sup, Section),
    ("logs.channels.*", Sup, Section),
    ("logs.channels.*.mode", Sup, Val),
    ("logs.channels.*.level", Sup, Val),
    ("logs.channels.*.encoding", Sup, Val),
    ("logs.channels.*.line_ending", Nys, Val),
    ("logs.channels.*.output", Nys, Val),
    ("logs.channels.*.err_output", Nys, Val),
    ("logs.channels.*.file_logger_options", Nys, Open),
    // http
    ("http", Sup, Section),
    ("http.address", Sup, Val),
    ("http.internal_error_code", Sup, Val),
    ("http.max_request_size", Sup, Val),
    ("http.raw_body", Sup, Val),
    ("http.access_logs", Sup, Val),
    ("http.middleware", Sup, Val),
    ("http.trusted_subnets", Sup, Val),
    ("http.codec", Sup, Val),
    ("http.read_header_timeout", Sup, Val),
    ("http.read_timeout", Sup, Val),
    ("http.idle_timeout", Sup, Val),
    ("http.max_header_count", Sup, Val),
    ("http.max_header_size", Sup, Val),
    ("http.pool", Sup, Section),
    ("http.uploads", Sup, Section),
    ("http.uploads.dir", Sup, Val),
    ("http.uploads.forbid", Sup, Val),
    ("http.uploads.allow", Sup, Val),
    ("http.uploads.max_parts", Sup, Val),
    ("http.headers", Sup, Section),
    ("http.headers.cors", Sup, Section),
    ("http.headers.cors.allowed_origin", Sup, Val),
    ("http.headers.cors.allowed_origin_regex", Sup, Val),
    ("http.headers.cors.allowed_headers", Sup, Val),
    ("http.headers.cors.allowed_methods", Sup, Val),
    ("http.headers.cors.allow_credentials", Sup, Val),
    ("http.headers.cors.exposed_headers", Sup, Val),
    ("http.headers.cors.max_age", Sup, Val),
    ("http.headers.cors.options_success_status", Sup, Val),
    ("http.headers.cors.debug", Sup, Val),
    ("http.headers.request", Sup, Open),
    ("http.headers.response", Sup, Open),
    ("http.static", Sup, Section),
    ("http.static.dir", Sup, Val),
    ("http.static.forbid", Sup, Val),
    ("http.static.allow", Sup, Val),
    ("http.static.calculate_etag", Sup, Val),
    ("http.static.weak", Sup, Val),
    ("http.static.request", Sup, Open),
    ("http.static.response", Sup, Open),
    ("http.ssl", Sup, Section),
    ("http.ssl.address", Sup, Val),
    ("http.ssl.redirect", Sup, Val),
    ("http.ssl.cert", Sup, Val),
    ("http.ssl.key", Sup, Val),
    ("http.ssl.root_ca", Sup, Val),
    ("http.ssl.client_auth_type", Sup, Val),
    ("http.ssl.acme", Nys, Section),
    ("http.ssl.acme.email", Nys, Val),
    ("http.ssl.acme.domains", Nys, Val),
    ("http.ssl.acme.cache_dir", Nys, Val),
    ("http.ssl.acme.alt_http_port", Nys, Val),
    ("http.ssl.acme.alt_tlsalpn_port", Nys, Val),
    ("http.ssl.acme.challenge_type", Nys, Val),
    ("http.ssl.acme.use_production_endpoint", Nys, Val),
    ("http.fcgi", Sup, Section),
    ("http.fcgi.address", Sup, Val),
    ("http.http2", Sup, Section),
    ("http.http2.h2c", Sup, Val),
    ("http.http2.max_concurrent_streams", Sup, Val),
    ("http.http3", Nys, Section),
    ("http.http3.address", Nys, Val),
    ("http.http3.cert", Nys, Val),
    ("http.http3.key", Nys, Val),
    // metrics
    ("metrics", Sup, Section),
    ("metrics.address", Sup, Val),
    ("metrics.collect", Sup, Section),
    ("metrics.collect.*", Sup, Section),
    ("metrics.collect.*.type", Sup, Val),
    ("metrics.collect.*.help", Sup, Val),
    ("metrics.collect.*.labels", Sup, Val),
    ("metrics.collect.*.buckets", Sup, Val),
    ("metrics.collect.*.objectives", Sup, Val),
    ("metrics.collect.*.namespace", Sup, Val),
    ("metrics.collect.*.subsystem", Sup, Val),
    // status
    ("status", Sup, Section),
    ("status.address", Sup, Val),
    ("status.drain_delay", Sup, Val),
    ("status.unavailable_status_code", Sup, Val),
    ("status.check_timeout", Sup, Val),
    // kv
    ("kv", Sup, Section),
    ("kv.*", Sup, Section),
    ("kv.*.driver", Sup, Val),
    ("kv.*.config", Sup, Open),
    // jobs
    ("jobs", Sup, Section),
    ("jobs.num_pollers", Sup, Val),
    ("jobs.timeout", Sup, Val),
    ("jobs.pipeline_size", Sup, Val),
    ("jobs.options", Nys, Section),
    ("jobs.options.parallelism", Nys, Val),
    ("jobs.pool", Sup, Section),
    ("jobs.pipelines", Sup, Section),
    ("jobs.pipelines.*", Sup, Section),
    ("jobs.pipelines.*.driver", Sup, Val),
    ("jobs.pipelines.*.config", Sup, Open),
    ("jobs.pipelines.*.priority", Sup, Val),
    ("jobs.consume", Sup, Val),
    // The reload plugin left RoadRunner in 2023, but its section still
    // appears in samples; RoadRunner ignores it and so do we.
    ("reload", Sup, Open),
    // endure
    ("endure", Sup, Section),
    ("endure.grace_period", Sup, Val),
    ("endure.log_level", Nys, Val),
    ("endure.print_graph", Nys, Val),
    ("endure.watchdog_sec", Nys, Val),
    // Other RoadRunner plugins' top-level sections.
    ("grpc", Nys, Open),
    ("temporal", Nys, Open),
    ("tcp", Nys, Open),
    ("centrifuge", Nys, Open),
    ("service", Nys, Open),
    ("fileserver", Nys, Open),
    ("otel", Nys, Open),
    ("amqp", Sup, Open),
    ("beanstalk", Sup, Open),
    ("boltdb", Nys, Open),
    ("kafka", Nys, Open),
    ("nats", Sup, Open),
    ("sqs", Nys, Open),
    ("redis", Sup, Open),
];

/// The keys of a pool section (spec 5.2), relative to the pool.
pub const POOL_KEYS: &[(&str, Status, Kind)] = &[
    ("debug", Sup, Val),
    ("slowlog_timeout", Sup, Val),
    ("command", Sup, Val),
    ("num_workers", Sup, Val),
    ("max_jobs", Sup, Val),
    ("max_queue_size", Sup, Val),
    ("allocate_timeout", Sup, Val),
    ("reset_timeout", Sup, Val),
    ("stream_timeout", Sup, Val),
    ("destroy_timeout", Sup, Val),
    ("env", Sup, Open),
    ("supervisor", Sup, Section),
    ("supervisor.watch_tick", Sup, Val),
    ("supervisor.ttl", Sup, Val),
    ("supervisor.idle_ttl", Sup, Val),
    ("supervisor.exec_ttl", Sup, Val),
    ("supervisor.max_worker_memory", Sup, Val),
    ("dynamic_allocator", Sup, Section),
    ("dynamic_allocator.max_workers", Sup, Val),
    ("dynamic_allocator.spawn_rate", Sup, Val),
    ("dynamic_allocator.idle_timeout", Sup, Val),
];

/// The sections that hold a pool (with the keys of [`POOL_KEYS`]).
pub const POOL_SECTIONS: &[&str] = &["http.pool", "jobs.pool"];

#[derive(Debug)]
struct Node {
    status: Status,
    kind: Kind,
    /// Children by name; `*` is the user-named child.
    children: BTreeMap<&'static str, Node>,
}

impl Node {
    fn new(status: Status, kind: Kind) -> Self {
        Node {
            status,
            kind,
            children: BTreeMap::new(),
        }
    }

    fn child(&self, name: &str) -> Option<&Node> {
        self.children.get(name).or_else(|| self.children.get("*"))
    }
}

fn insert(root: &mut Node, path: &[&'static str], status: Status, kind: Kind) {
    let mut node = root;
    for (i, part) in path.iter().enumerate() {
        let last = i + 1 == path.len();
        node = node
            .children
            .entry(part)
            .or_insert_with(|| Node::new(Status::Supported, Kind::Section));
        if last {
            node.status = status;
            node.kind = kind;
        }
    }
}

fn root() -> &'static Node {
    static ROOT: OnceLock<Node> = OnceLock::new();
    ROOT.get_or_init(|| {
        let mut root = Node::new(Status::Supported, Kind::Section);
        for (path, status, kind) in KEYS {
            let parts: Vec<&'static str> = path.split('.').collect();
            insert(&mut root, &parts, *status, *kind);
        }
        for section in POOL_SECTIONS {
            for (path, status, kind) in POOL_KEYS {
                let parts: Vec<&'static str> = section.split('.').chain(path.split('.')).collect();
                insert(&mut root, &parts, *status, *kind);
            }
        }
        root
    })
}

/// The status of a concrete key path such as `http.ssl.cert` or
/// `kv.local.config.interval`. A key below a not-yet-supported or removed
/// key takes that key's status; a key below an open section takes the
/// section's status. `None` means the key is unknown.
pub fn status(key: &str) -> Option<Status> {
    let mut node = root();
    let mut inherited: Option<Status> = None;
    for part in key.split('.') {
        if node.kind != Kind::Section {
            return Some(inherited.unwrap_or(node.status));
        }
        node = node.child(part)?;
        if inherited.is_none() && node.status != Status::Supported {
            inherited = Some(node.status);
        }
    }
    Some(inherited.unwrap_or(node.status))
}

/// Every known key with its status, user-named parts written as `*`.
pub fn known_keys() -> Vec<(String, Status)> {
    fn walk(node: &Node, prefix: &str, out: &mut Vec<(String, Status)>) {
        for (name, child) in &node.children {
            let path = join(prefix, name);
            out.push((path.clone(), child.status));
            walk(child, &path, out);
        }
    }
    let mut out = Vec::new();
    walk(root(), "", &mut out);
    out
}

/// Walks the loaded tree and collects the schema warnings.
pub(crate) fn check(tree: &Value, warnings: &mut Vec<Warning>) {
    walk(root(), tree, "", false, warnings);
}

fn walk(node: &Node, value: &Value, path: &str, ignored: bool, warnings: &mut Vec<Warning>) {
    if node.kind != Kind::Section {
        return;
    }
    let Value::Mapping(map) = untag(value) else {
        return;
    };
    for (key, child_value) in map {
        let name = key_text(key);
        let child_path = join(path, &name);
        let Some(child) = node.child(&name) else {
            warnings.push(unknown_key(node, path, &name, &child_path));
            continue;
        };
        match child.status {
            Status::Removed(reason) => {
                warnings.push(Warning::new(&child_path, format!("{child_path} {reason}")));
            }
            Status::NotYetSupported if !ignored => {
                warnings.push(Warning::new(
                    &child_path,
                    format!("{child_path} is not supported by Courser yet; it is ignored"),
                ));
                walk(child, child_value, &child_path, true, warnings);
            }
            _ => walk(child, child_value, &child_path, ignored, warnings),
        }
    }
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

fn unknown_key(parent: &Node, parent_path: &str, name: &str, path: &str) -> Warning {
    let message = match suggest(parent, parent_path, name) {
        Some(known) => format!("unknown key {path}; did you mean {known}?"),
        None => format!("unknown key {path}; it is ignored"),
    };
    Warning::new(path, message)
}

/// The nearest known key: first a sibling with a close spelling, then a key
/// of the same name elsewhere in the same top-level section (a key put at
/// the wrong depth), then anywhere.
fn suggest(parent: &Node, parent_path: &str, name: &str) -> Option<String> {
    let close = |candidate: &str| {
        let distance = strsim::levenshtein(name, candidate);
        let similar = strsim::jaro_winkler(name, candidate);
        (distance <= 3 && distance * 2 < name.len().max(candidate.len())) || similar >= 0.9
    };
    let sibling = parent
        .children
        .keys()
        .filter(|candidate| **candidate != "*" && close(candidate))
        .min_by(|a, b| {
            strsim::levenshtein(name, a)
                .cmp(&strsim::levenshtein(name, b))
                .then_with(|| {
                    strsim::jaro_winkler(name, b).total_cmp(&strsim::jaro_winkler(name, a))
                })
        });
    if let Some(sibling) = sibling {
        return Some(join(parent_path, sibling));
    }
    let top = parent_path.split('.').next().unwrap_or_default();
    let same_name: Vec<String> = known_keys()
        .into_iter()
        .map(|(key, _)| key)
        .filter(|key| !key.contains('*') && key.rsplit('.').next() == Some(name))
        .collect();
    same_name
        .iter()
        .find(|key| !top.is_empty() && key.split('.').next() == Some(top))
        .or_else(|| same_name.first())
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_parent_is_listed() {
        let listed: Vec<&str> = KEYS.iter().map(|(path, _, _)| *path).collect();
        for (path, _, _) in KEYS {
            if let Some((parent, _)) = path.rsplit_once('.') {
                assert!(listed.contains(&parent), "{path} has no parent entry");
            }
        }
        for section in POOL_SECTIONS {
            assert!(listed.contains(section), "{section} is not in KEYS");
        }
        let pool: Vec<&str> = POOL_KEYS.iter().map(|(path, _, _)| *path).collect();
        for (path, _, _) in POOL_KEYS {
            if let Some((parent, _)) = path.rsplit_once('.') {
                assert!(
                    pool.contains(&parent),
                    "pool key {path} has no parent entry"
                );
            }
        }
    }

    #[test]
    fn statuses() {
        let cases: &[(&str, Option<Status>)] = &[
            ("http.pool.num_workers", Some(Sup)),
            ("http.pool.supervisor.ttl", Some(Sup)),
            ("http.pool.env.ANYTHING", Some(Sup)),
            ("server.env.FOO", Some(Sup)),
            ("http.ssl", Some(Sup)),
            ("http.ssl.cert", Some(Sup)),
            ("http.ssl.acme", Some(Nys)),
            ("http.ssl.acme.email", Some(Nys)),
            ("http.http3.address", Some(Nys)),
            ("jobs.pool.num_workers", Some(Sup)),
            ("jobs.pipelines.mine.config.prefetch", Some(Sup)),
            ("kv.local.config.interval", Some(Sup)),
            ("logs.channels.http.level", Some(Sup)),
            ("logs.channels.http.output", Some(Nys)),
            (
                "server.relay_timeout",
                Some(Status::Removed(RELAY_TIMEOUT_REMOVED)),
            ),
            ("http.pool.num_worker", None),
            ("nonsense", None),
        ];
        for (key, want) in cases {
            assert_eq!(status(key), *want, "{key}");
        }
    }
}
