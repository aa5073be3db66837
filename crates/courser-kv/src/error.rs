//! What can go wrong in a kv call.

/// A kv call's failure; the text is what the PHP client's `ServiceException` shows.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KvError {
    /// `Request.storage` is empty (RoadRunner's text).
    #[error("no storage provided")]
    NoStorage,
    /// No `kv.<name>` section has that name (RoadRunner's text).
    #[error("no such storage: {0}")]
    NoSuchStorage(String),
    /// The request has no items where keys are needed.
    #[error("no keys provided")]
    NoKeys,
    /// A key is empty or blank.
    #[error("empty key")]
    EmptyKey,
    /// The request is malformed (bad timeout, key the store cannot hold, …).
    #[error("{method} on storage {storage}: {message}")]
    Invalid {
        /// The RPC method.
        method: String,
        /// The storage.
        storage: String,
        /// What is wrong and what to send instead.
        message: String,
    },
    /// The store's server cannot be reached or answered with an error.
    #[error("storage {storage} ({driver} at {addr}): {message}")]
    Store {
        /// The storage's name.
        storage: String,
        /// Its driver.
        driver: &'static str,
        /// The address or file.
        addr: String,
        /// What failed.
        message: String,
    },
}
