//! The RPC plugin: RoadRunner's Goridge RPC (`docs/protocol.md`, "RPC")
//! served on `rpc.listen`, a registry of methods that other plugins
//! fill (informer, resetter, kv, jobs, metrics), and a client for the CLI.
//!
//! A request is one frame with options `[seq, len(method)]` and a payload of
//! method name followed by the encoded argument; the reply echoes both options
//! and the method name, carries the request's codec flag, and adds `ERROR` (0x40)
//! with the error text as the body when the call failed.
//!
//! Invariants:
//! - Nothing a peer sends makes the server panic or stop: a frame that cannot be
//!   answered closes that one connection with a log line; a handler that panics
//!   fails only its own call.
//! - Requests on one connection are answered in the order they arrived; each
//!   connection is served by its own task.
//! - This crate knows no plugin: handlers are closures that the composition root
//!   registers. It defines only the wire shapes of the RPC edge ([`informer`]).

mod client;
pub mod informer;
mod listen;
mod registry;
pub mod resetter;
mod server;

pub use client::RpcClient;
pub use registry::{json_reply, reply_codec, Call, Handler, Registry, Reply};
pub use server::{RpcServer, DEFAULT_MAX_MESSAGE};

use std::time::Duration;

/// What went wrong in the RPC server or client.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// `rpc.listen` is not an address we can use.
    #[error(
        "rpc.listen \"{listen}\" is not a valid address: expected \"tcp://host:port\" \
         (e.g. \"tcp://127.0.0.1:6001\") or \"unix:///path/to/rpc.sock\""
    )]
    Address {
        /// The address as configured.
        listen: String,
    },
    /// The server could not listen on `rpc.listen`.
    #[error(
        "cannot listen on rpc.listen {listen}: {source}; another server (Courser or RoadRunner) \
         may already be using it: stop it or change rpc.listen"
    )]
    Bind {
        /// The address as configured.
        listen: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The client could not reach a server.
    #[error(
        "the server is not running or not reachable at rpc.listen {listen} ({reason}); \
         start it with `courser serve` using this config (its `rpc` section turns the RPC \
         server on), or point rpc.listen at the running server (-o rpc.listen=...)"
    )]
    Connect {
        /// The address as configured.
        listen: String,
        /// Why connecting failed.
        reason: String,
    },
    /// No reply arrived in time.
    #[error("RPC call {method} to {listen} got no reply within {}s", .timeout.as_secs_f64())]
    Timeout {
        /// The address as configured.
        listen: String,
        /// The method called.
        method: String,
        /// How long the client waited.
        timeout: Duration,
    },
    /// Reading or writing the connection failed.
    #[error("RPC call {method} to {listen} failed: {source}")]
    Relay {
        /// The address as configured.
        listen: String,
        /// The method called.
        method: String,
        /// The relay error.
        source: courser_relay::RelayError,
    },
    /// The peer sent a frame that is not a valid RPC reply.
    #[error("RPC call {method} to {listen} got a malformed reply: {detail}")]
    Protocol {
        /// The address as configured.
        listen: String,
        /// The method called.
        method: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The server answered with an error (an `ERROR` frame); the text is the server's.
    #[error("{0}")]
    Remote(String),
    /// An argument could not be encoded or a reply decoded as JSON.
    #[error("RPC call {method}: {what}: {source}")]
    Json {
        /// The method called.
        method: String,
        /// Which side failed ("encoding the argument" or "decoding the reply").
        what: &'static str,
        /// The serde error.
        source: serde_json::Error,
    },
    /// An earlier call failed midway, so replies on this connection can no longer
    /// be matched to requests.
    #[error(
        "the RPC connection to {listen} is unusable after an earlier failed call; connect again"
    )]
    Broken {
        /// The address as configured.
        listen: String,
    },
}
