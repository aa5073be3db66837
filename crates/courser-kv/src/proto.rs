//! RoadRunner's `kv.v1` protobuf messages (spec §4.3), written with prost's
//! derive so no protoc is needed. Field numbers are RoadRunner's.

/// `kv.v1.Request`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Request {
    /// The storage's name (`kv.<name>` in the config).
    #[prost(string, tag = "1")]
    pub storage: String,
    /// The keys (with values and timeouts for Set/MExpire).
    #[prost(message, repeated, tag = "2")]
    pub items: Vec<Item>,
}

/// `kv.v1.Item`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Item {
    /// The key.
    #[prost(string, tag = "1")]
    pub key: String,
    /// The value (PHP's `serialize()` output by default).
    #[prost(bytes = "bytes", tag = "2")]
    pub value: bytes::Bytes,
    /// An absolute RFC 3339 time; empty means no expiry.
    #[prost(string, tag = "3")]
    pub timeout: String,
}

/// `kv.v1.Response`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Response {
    /// The items found.
    #[prost(message, repeated, tag = "1")]
    pub items: Vec<Item>,
}
