//! The error and warning types of this crate.

use std::fmt;
use std::path::PathBuf;

/// Something in the configuration that Courser accepts but a person should
/// know about: a key that is ignored, a value that was probably meant
/// differently, a number that should have been quoted.
///
/// The server prints each warning once at startup. `message` is a complete
/// sentence that names `key` in full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The full key path the warning is about, e.g. `http.ssl`.
    pub key: String,
    /// The sentence to show, e.g. `http.ssl is not supported by Courser yet; it is ignored`.
    pub message: String,
}

impl Warning {
    pub(crate) fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Warning {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Why a configuration could not be loaded.
///
/// Every message is a sentence for a person: what is wrong, where (the file,
/// or the full key path such as `http.pool.num_workers`), and what to write
/// instead.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file (the config, an included file or the dotenv file) could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The text is not valid YAML, or its top level is not a mapping.
    /// `message` carries the line and column when the parser knows them.
    #[error("{} is not a valid config file: {message}", path.display())]
    Yaml { path: PathBuf, message: String },

    /// There is no `version` key.
    #[error("version is missing: add version: \"3\" at the top of the config file")]
    MissingVersion,

    /// `version` is there but is not "3".
    #[error("{}", bad_version_message(value))]
    BadVersion { value: String },

    /// A key holds a value of the wrong type or out of range.
    /// `value` is shown as written (strings in quotes).
    #[error("{key}: {value} is not valid; expected {expected}")]
    InvalidValue {
        key: String,
        value: String,
        expected: String,
    },

    /// A required key is missing or empty. `hint` says what to put there.
    #[error("{key} is required: {hint}")]
    Missing { key: String, hint: String },

    /// A `-o key.path=value` override could not be understood or applied.
    #[error("the override -o {text} cannot be used: {reason}; write -o key.path=value, e.g. -o http.pool.num_workers=4")]
    Override { text: String, reason: String },

    /// The dotenv file could not be read. `origin` says where its name came
    /// from (`--dotenv` or `DOTENV_PATH`).
    #[error("cannot read the dotenv file {} ({origin}): {source}", path.display())]
    DotenvIo {
        path: PathBuf,
        origin: &'static str,
        #[source]
        source: std::io::Error,
    },

    /// A line of the dotenv file (`--dotenv` or `DOTENV_PATH`) is not `KEY=VALUE`.
    #[error("{}:{line}: {reason} (dotenv lines are KEY=VALUE, # comments and blank lines)", path.display())]
    Dotenv {
        path: PathBuf,
        line: usize,
        reason: String,
    },

    /// A file named in `include` could not be used.
    #[error("the included file {} {reason}", path.display())]
    Include { path: PathBuf, reason: String },

    /// An error in the typed sections together with the warnings found
    /// before it (an unknown key is often the cause: `comand:` makes
    /// `server.command` missing), so the hint is never lost.
    #[error("{error}{}", hints_text(.warnings))]
    WithWarnings {
        error: Box<ConfigError>,
        warnings: Vec<Warning>,
    },
}

fn hints_text(warnings: &[Warning]) -> String {
    warnings
        .iter()
        .map(|w| format!("\n  warning: {w}"))
        .collect()
}

impl ConfigError {
    /// The error without the warnings attached to it.
    pub fn root(&self) -> &ConfigError {
        match self {
            ConfigError::WithWarnings { error, .. } => error.root(),
            other => other,
        }
    }
}

fn bad_version_message(value: &str) -> String {
    let bare = value.trim_matches('"');
    if bare.starts_with('2') || bare.starts_with("v2") {
        format!(
            "version {value} is a RoadRunner v2 config; Courser reads only version \"3\" configs: \
             upgrade the file to the v3 layout (see RoadRunner's v2 to v3 migration guide) and set version: \"3\""
        )
    } else {
        format!("version {value} is not supported; set version: \"3\"")
    }
}
