//! `rpc.listen` addresses: `tcp://host:port` or `unix:///path`.

use crate::RpcError;
use std::path::PathBuf;

/// A parsed `rpc.listen`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Listen {
    /// Host (possibly empty, or `[v6]`) and port.
    Tcp { host: String, port: u16 },
    /// A unix socket path.
    Unix(PathBuf),
}

impl Listen {
    pub(crate) fn parse(listen: &str) -> Result<Listen, RpcError> {
        let bad = || RpcError::Address {
            listen: listen.to_string(),
        };
        if let Some(addr) = listen.strip_prefix("tcp://") {
            let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
            let port: u16 = port.parse().map_err(|_| bad())?;
            let bracketed = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
            if bracketed.is_none() && (host.contains(':') || host.contains('/')) {
                return Err(bad());
            }
            return Ok(Listen::Tcp {
                host: host.to_string(),
                port,
            });
        }
        match listen.strip_prefix("unix://") {
            Some(path) if !path.is_empty() => Ok(Listen::Unix(PathBuf::from(path))),
            _ => Err(bad()),
        }
    }

    /// The address to bind: an empty host means every interface, as in Go.
    pub(crate) fn bind_addr(host: &str, port: u16) -> String {
        if host.is_empty() {
            format!("0.0.0.0:{port}")
        } else {
            format!("{host}:{port}")
        }
    }

    /// The address to connect to: an empty or unspecified host means this machine.
    pub(crate) fn connect_addr(host: &str, port: u16) -> String {
        match host {
            "" | "0.0.0.0" => format!("127.0.0.1:{port}"),
            "[::]" => format!("[::1]:{port}"),
            h => format!("{h}:{port}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Option<Listen>) {
        assert_eq!(Listen::parse(input).ok(), expected, "{input}");
    }

    #[test]
    fn parses_tcp_and_unix_and_rejects_the_rest() {
        let tcp = |h: &str, p| {
            Some(Listen::Tcp {
                host: h.into(),
                port: p,
            })
        };
        check("tcp://127.0.0.1:6001", tcp("127.0.0.1", 6001));
        check("tcp://localhost:7000", tcp("localhost", 7000));
        check("tcp://:6001", tcp("", 6001));
        check("tcp://[::1]:6001", tcp("[::1]", 6001));
        check(
            "unix:///tmp/rpc.sock",
            Some(Listen::Unix("/tmp/rpc.sock".into())),
        );
        check("unix://rel.sock", Some(Listen::Unix("rel.sock".into())));
        for bad in [
            "",
            "127.0.0.1:6001",
            "http://x",
            "tcp://127.0.0.1",
            "tcp://127.0.0.1:70000",
            "tcp://::1:6001",
            "tcp://a/b:1",
            "unix://",
        ] {
            check(bad, None);
        }
        let msg = Listen::parse("http://x").expect_err("bad").to_string();
        assert!(
            msg.contains("rpc.listen \"http://x\"") && msg.contains("tcp://host:port"),
            "{msg}"
        );
    }

    #[test]
    fn empty_host_binds_everywhere_and_connects_locally() {
        assert_eq!(Listen::bind_addr("", 1), "0.0.0.0:1");
        assert_eq!(Listen::connect_addr("", 1), "127.0.0.1:1");
        assert_eq!(Listen::connect_addr("[::1]", 1), "[::1]:1");
    }
}
